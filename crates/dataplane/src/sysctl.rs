//! Per-namespace sysctls. `/proc/sys/net/...` shows the network namespace of the thread that
//! opens it, so reads and writes happen on a helper thread inside the target namespace
//! ([`crate::netns::in_netns`]); the host's values are never touched.

use std::path::{Path, PathBuf};

use crate::error::{DataplaneError, Result, io_ctx};
use crate::netns::in_netns;

/// Maps a sysctl key to its file under `/proc/sys`, following sysctl(8): `.` separates levels and
/// a `/` in the key stands for a literal `.` in a name (`net.ipv4.conf.eth0/100.forwarding` is
/// `/proc/sys/net/ipv4/conf/eth0.100/forwarding`). Keys that could leave `/proc/sys` are refused.
pub fn proc_path(key: &str) -> Result<PathBuf> {
    let invalid = || DataplaneError::InvalidArgument {
        what: "sysctl key",
        value: key.to_string(),
    };
    let mut path = PathBuf::from("/proc/sys");
    for part in key.split('.') {
        let part = part.replace('/', ".");
        if part.is_empty() || part == "." || part == ".." || part.contains('\0') {
            return Err(invalid());
        }
        path.push(part);
    }
    Ok(path)
}

/// Writes `value` to sysctl `key` inside the network namespace `netns` (a namespace file such as
/// [`crate::netns::path`]`(name)`), e.g. `net.ipv4.conf.cali123.proxy_arp` = `1`.
pub fn set(netns: &Path, key: &str, value: &str) -> Result<()> {
    let file = proc_path(key)?;
    in_netns(netns, || std::fs::write(&file, value))?.map_err(io_ctx(|| {
        format!("sysctl {key}={value} in {}", netns.display())
    }))
}

/// Reads sysctl `key` inside the network namespace `netns`, without the trailing newline.
pub fn get(netns: &Path, key: &str) -> Result<String> {
    let file = proc_path(key)?;
    let text = in_netns(netns, || std::fs::read_to_string(&file))?
        .map_err(io_ctx(|| format!("sysctl {key} in {}", netns.display())))?;
    Ok(text.trim_end_matches('\n').to_string())
}

/// Whether sysctl `key` exists inside `netns` (e.g. `net.ipv6.conf.<if>` when IPv6 is enabled).
pub fn exists(netns: &Path, key: &str) -> Result<bool> {
    let file = proc_path(key)?;
    in_netns(netns, || file.exists())
}

/// `net.ipv4.tcp_timestamps = 2` for every namespace of a lab that opens connections (nodes,
/// the router, pods): timestamps without the random per-destination offset.
///
/// Why: a client derives its timestamp offset (and initial sequence number) from the address
/// it dials, a ClusterIP, while the server keys its TIME_WAIT on the address after DNAT. With a
/// connection per request the server closes first and holds TIME_WAIT; a client port reused
/// for the same backend, once dialled directly and once through the Service, arrives with an
/// unrelated timestamp, PAWS rejects its SYN and the client waits a second for the retransmit
/// (wrk with `Connection: close` fell to 0.1 of direct). Without the offset the timestamps are
/// monotonic per host whatever address was dialled, so TIME_WAIT accepts the reused tuple.
/// Per network namespace; the host's setting is never touched.
pub const TCP_TIMESTAMPS: (&str, &str) = ("net.ipv4.tcp_timestamps", "2");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_become_directories_and_slashes_become_dots() {
        assert_eq!(
            proc_path("net.ipv4.conf.cali1234567890a.proxy_arp").ok(),
            Some(PathBuf::from(
                "/proc/sys/net/ipv4/conf/cali1234567890a/proxy_arp"
            ))
        );
        assert_eq!(
            proc_path("net.ipv4.conf.eth0/100.forwarding").ok(),
            Some(PathBuf::from("/proc/sys/net/ipv4/conf/eth0.100/forwarding"))
        );
    }

    #[test]
    fn keys_escaping_proc_sys_are_refused() {
        for bad in ["", "net..ipv4", "net.//.x", "net./.x", ".net", "net."] {
            assert!(proc_path(bad).is_err(), "{bad:?} accepted");
        }
    }
}
