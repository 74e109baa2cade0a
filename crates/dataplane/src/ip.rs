//! iproute2 as the mechanism for links, addresses and routes: `ip [-n NS] -batch -` with the
//! script on stdin to change things, `ip -j ...` JSON to read them back, and plain `ip route` text
//! for showing users exactly what they would see on a real node.
//!
//! `ip -n NS` switches namespaces inside the `ip` child, so nothing here moves our own threads.
//! This module runs commands; it does not decide what they should be.

use std::process::Stdio;

use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::error::{DataplaneError, Result, io_ctx};
use crate::netns::validate_name;

/// The program we run; found on `PATH` like a user's shell would.
const IP: &str = "ip";

/// What a child run produced.
struct Output {
    success: bool,
    status: String,
    stdout: String,
    stderr: String,
}

/// Runs `ip` with `args` (after `-n NS` when given), feeding `stdin` if any.
async fn run_ip(
    netns: Option<&str>,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<(Vec<String>, Output)> {
    let mut full: Vec<String> = Vec::with_capacity(args.len() + 2);
    if let Some(ns) = netns {
        validate_name(ns)?;
        full.push("-n".into());
        full.push(ns.into());
    }
    full.extend(args.iter().map(|a| a.to_string()));
    let mut cmd = Command::new(IP);
    cmd.args(&full)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(io_ctx(|| format!("spawn {IP} {}", full.join(" "))))?;
    if let (Some(script), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A write error (ip exited early) shows up again as ip's own exit status and stderr.
        let _ = pipe.write_all(script.as_bytes()).await;
        drop(pipe);
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(io_ctx(|| format!("wait for {IP} {}", full.join(" "))))?;
    let output = Output {
        success: out.status.success(),
        status: out.status.to_string(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    Ok((full, output))
}

/// Runs `ip [-n NS] ARGS...` and returns its stdout; a non-zero exit is
/// [`DataplaneError::Command`] with ip's stderr.
pub async fn run(netns: Option<&str>, args: &[&str]) -> Result<String> {
    let (full, out) = run_ip(netns, args, None).await?;
    if out.success {
        Ok(out.stdout)
    } else {
        Err(DataplaneError::Command {
            program: IP.into(),
            args: full,
            status: out.status,
            stderr: out.stderr,
        })
    }
}

/// Runs `ip [-n NS] -batch -` with `script` on stdin, one command per line (without the leading
/// `ip`). iproute2 stops at the first failing line; the error names that line and carries ip's
/// stderr. Earlier lines have taken effect, so scripts should be idempotent (`replace`, not `add`).
pub async fn batch(netns: Option<&str>, script: &str) -> Result<()> {
    let (_, out) = run_ip(netns, &["-batch", "-"], Some(script)).await?;
    if out.success {
        return Ok(());
    }
    let line = failed_line(&out.stderr);
    Err(DataplaneError::IpBatch {
        netns: netns.map(str::to_string),
        line,
        command: line.and_then(|n| script.lines().nth(n.checked_sub(1)?).map(str::to_string)),
        stderr: out.stderr,
    })
}

/// Like [`batch`] but with `-force`: every line is tried even after failures. Returns ip's stderr
/// (empty when all lines succeeded); only failing to run `ip` at all is an error. Meant for
/// best-effort cleanup where "already gone" is fine.
pub async fn batch_lenient(netns: Option<&str>, script: &str) -> Result<String> {
    let (_, out) = run_ip(netns, &["-force", "-batch", "-"], Some(script)).await?;
    Ok(out.stderr)
}

/// The line number from iproute2's `Command failed -:N` (the last one, with `-force` there may be
/// several).
fn failed_line(stderr: &str) -> Option<usize> {
    stderr
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Command failed -:"))
        .filter_map(|n| n.trim().parse().ok())
        .next_back()
}

/// The main routing table of `netns` as iproute2 JSON (`ip -n NS -j route show table main`).
pub async fn routes_json(netns: &str) -> Result<String> {
    run(Some(netns), &["-j", "route", "show", "table", "main"]).await
}

/// `ip -n NS route`: the text a user sees on the node.
pub async fn route_text(netns: &str) -> Result<String> {
    run(Some(netns), &["route"]).await
}

/// One network interface as `ip -j -d link` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface name (`ifname`).
    pub name: String,
    /// Index inside its namespace.
    pub ifindex: u32,
    /// `linkinfo.info_kind` (`veth`, `vxlan`, `tun`, ...); `None` for plain devices like `lo`.
    pub kind: Option<String>,
    /// Hardware address; `None` for devices without one (TUN).
    pub mac: Option<String>,
    /// Administratively up (the `UP` flag), whatever the carrier.
    pub up: bool,
    /// Current MTU.
    pub mtu: u32,
    /// For a veth (or any device with a lower link): the peer's ifindex, in the namespace named
    /// by `peer_netnsid` when that is set, else in the same namespace.
    pub peer_ifindex: Option<u32>,
    /// The peer's namespace id as seen from this namespace, when the peer lives elsewhere.
    pub peer_netnsid: Option<i64>,
}

/// The subset of `ip -j -d link` fields we read; the rest is ignored.
#[derive(Deserialize)]
struct RawLink {
    ifname: String,
    ifindex: u32,
    #[serde(default)]
    flags: Vec<String>,
    #[serde(default)]
    mtu: u32,
    address: Option<String>,
    link_type: Option<String>,
    link_index: Option<u32>,
    link_netnsid: Option<i64>,
    linkinfo: Option<RawLinkInfo>,
}

#[derive(Deserialize)]
struct RawLinkInfo {
    info_kind: Option<String>,
}

/// Parses the JSON array printed by `ip -j -d link show`.
pub fn parse_links(json: &str) -> Result<Vec<Link>> {
    let raw: Vec<RawLink> = serde_json::from_str(json).map_err(|e| DataplaneError::Parse {
        what: "ip -j -d link output".into(),
        detail: e.to_string(),
    })?;
    Ok(raw
        .into_iter()
        .map(|r| Link {
            up: r.flags.iter().any(|f| f == "UP"),
            kind: r.linkinfo.and_then(|i| i.info_kind),
            // TUN devices have link_type "none" and no meaningful address.
            mac: r.address.filter(|_| r.link_type.as_deref() != Some("none")),
            name: r.ifname,
            ifindex: r.ifindex,
            mtu: r.mtu,
            peer_ifindex: r.link_index,
            peer_netnsid: r.link_netnsid,
        })
        .collect())
}

/// All interfaces of `netns` (`ip -n NS -j -d link show`).
pub async fn links(netns: &str) -> Result<Vec<Link>> {
    parse_links(&run(Some(netns), &["-j", "-d", "link", "show"]).await?)
}

/// One interface of `netns` by name, or `None` if there is no such interface.
pub async fn link(netns: &str, name: &str) -> Result<Option<Link>> {
    if !crate::netns::is_plain_token(name) {
        return Err(DataplaneError::InvalidArgument {
            what: "interface name",
            value: name.into(),
        });
    }
    let (full, out) = run_ip(
        Some(netns),
        &["-j", "-d", "link", "show", "dev", name],
        None,
    )
    .await?;
    if out.success {
        return Ok(parse_links(&out.stdout)?
            .into_iter()
            .find(|l| l.name == name));
    }
    // iproute2 prints `Device "X" does not exist.`; anything else is a real failure.
    if out.stderr.contains("does not exist") {
        Ok(None)
    } else {
        Err(DataplaneError::Command {
            program: IP.into(),
            args: full,
            status: out.status,
            stderr: out.stderr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_line_is_read_from_iproute2_stderr() {
        let stderr = "Cannot find device \"nonexist\"\nCommand failed -:2\n";
        assert_eq!(failed_line(stderr), Some(2));
        assert_eq!(failed_line("Error: something\n"), None);
        assert_eq!(
            failed_line("Command failed -:1\nCommand failed -:7\n"),
            Some(7)
        );
    }

    #[test]
    fn links_json_maps_veth_tun_and_loopback() {
        let json = r#"[
          {"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"mtu":65536,
           "link_type":"loopback","address":"00:00:00:00:00:00"},
          {"ifindex":2,"link_index":7,"ifname":"cali1234567890a","flags":["BROADCAST","MULTICAST","UP"],
           "mtu":1480,"link_type":"ether","address":"ee:ee:ee:ee:ee:ee","link_netnsid":3,
           "linkinfo":{"info_kind":"veth"}},
          {"ifindex":5,"ifname":"tunl0","flags":["POINTOPOINT","NOARP","UP"],"mtu":1480,
           "link_type":"none","linkinfo":{"info_kind":"tun","info_data":{"type":"tun"}}}
        ]"#;
        let links = parse_links(json).expect("valid json");
        assert_eq!(
            links,
            vec![
                Link {
                    name: "lo".into(),
                    ifindex: 1,
                    kind: None,
                    mac: Some("00:00:00:00:00:00".into()),
                    up: true,
                    mtu: 65536,
                    peer_ifindex: None,
                    peer_netnsid: None,
                },
                Link {
                    name: "cali1234567890a".into(),
                    ifindex: 2,
                    kind: Some("veth".into()),
                    mac: Some("ee:ee:ee:ee:ee:ee".into()),
                    up: true,
                    mtu: 1480,
                    peer_ifindex: Some(7),
                    peer_netnsid: Some(3),
                },
                Link {
                    name: "tunl0".into(),
                    ifindex: 5,
                    kind: Some("tun".into()),
                    mac: None,
                    up: true,
                    mtu: 1480,
                    peer_ifindex: None,
                    peer_netnsid: None,
                },
            ]
        );
    }

    #[test]
    fn garbage_is_a_parse_error() {
        assert!(matches!(
            parse_links("nope"),
            Err(DataplaneError::Parse { .. })
        ));
    }
}
