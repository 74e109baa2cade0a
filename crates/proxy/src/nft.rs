//! The thin effectful shell: sends a transaction to the kernel, in the caller's network
//! namespace or in a chosen one, either as one nf_tables netlink batch ([`Nft::send_batch`],
//! built by [`crate::netlink::BatchSink`]) or through the `nft` binary ([`Nft::apply`], one
//! process per script: the fallback, and what tests and debugging read).

use std::io::Write as _;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use dataplane::netns::NsFds;

use crate::error::ProxyError;
use crate::ruleset::TABLE;

/// Which path a transaction took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// One nf_tables netlink batch.
    Netlink,
    /// An `nft -f` script (the fallback).
    Script,
}

/// Runs `nft` against table `ip kube-proxy`.
#[derive(Debug, Clone, Default)]
pub struct Nft {
    /// Where to run; `None` means the namespace of the calling thread.
    netns: Option<NsFds>,
    /// The same namespace by path, for opening the netlink socket inside it.
    netns_path: Option<PathBuf>,
    /// The `NETLINK_NETFILTER` socket, opened on first use and kept (opening one inside
    /// another namespace takes a thread); closed after a socket error, reopened next time.
    /// Shared by clones, one batch at a time.
    socket: Arc<Mutex<Option<OwnedFd>>>,
}

impl Nft {
    /// `nft` in the calling thread's network namespace (the node agent runs inside its node).
    pub fn new() -> Nft {
        Nft::default()
    }

    /// `nft` inside the network namespace mounted at `netns` (e.g. `/run/netns/NAME`); only the
    /// child process enters it, the caller stays where it is.
    pub fn in_netns(netns: &Path) -> Result<Nft, ProxyError> {
        let fds = NsFds::open(netns, None).map_err(ProxyError::Netns)?;
        Ok(Nft {
            netns: Some(fds),
            netns_path: Some(netns.to_path_buf()),
            socket: Arc::default(),
        })
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("nft");
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(fds) = &self.netns {
            fds.apply_to(&mut cmd);
        }
        cmd
    }

    /// Applies `script` as one atomic transaction (`nft -f -`): all of it or nothing.
    pub fn apply(&self, script: &str) -> Result<(), ProxyError> {
        let mut cmd = self.command(&["-f", "-"]);
        cmd.stdin(Stdio::piped());
        let mut child = cmd.spawn().map_err(ProxyError::Spawn)?;
        let written = match child.stdin.take() {
            Some(mut stdin) => stdin.write_all(script.as_bytes()),
            None => Ok(()),
        };
        // Wait even when writing failed (nft exited early on a parse error): its stderr says why.
        let output = child.wait_with_output().map_err(ProxyError::Spawn)?;
        check("-f -", &output)?;
        written.map_err(ProxyError::Spawn)
    }

    /// `nft list table ip kube-proxy`.
    pub fn list_table(&self) -> Result<String, ProxyError> {
        let output = self
            .command(&["list", "table", "ip", "kube-proxy"])
            .output()
            .map_err(ProxyError::Spawn)?;
        check(&format!("list table {TABLE}"), &output)?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `nft -j list table ip kube-proxy` (what `kubelab trace` reads).
    pub fn list_table_json(&self) -> Result<String, ProxyError> {
        let output = self
            .command(&["-j", "list", "table", "ip", "kube-proxy"])
            .output()
            .map_err(ProxyError::Spawn)?;
        check(&format!("-j list table {TABLE}"), &output)?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `nft list ruleset` (every table of the namespace, not only ours).
    pub fn list_ruleset(&self) -> Result<String, ProxyError> {
        let output = self
            .command(&["list", "ruleset"])
            .output()
            .map_err(ProxyError::Spawn)?;
        check("list ruleset", &output)?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Removes table `ip kube-proxy` and everything in it; fine when it does not exist.
    pub fn delete_table(&self) -> Result<(), ProxyError> {
        // "add" first makes the transaction succeed when the table is absent, without having to
        // recognise nft's "No such file or directory" message.
        self.apply(&format!("add table {TABLE}\ndelete table {TABLE}\n"))
    }
}

impl Nft {
    /// Replaces table `ip kube-proxy` with `ruleset` in one transaction: as one netlink batch,
    /// or through `nft -f` when the batch cannot be encoded (a rule shape the encoder does not
    /// know: [`ProxyError::Unsupported`]). Returns which way it went.
    pub fn replace_table(&self, ruleset: &crate::Ruleset) -> Result<Applied, ProxyError> {
        self.send(&ruleset.full_table()?)
    }

    /// Sends a prepared transaction; returns which way it went.
    pub fn send(&self, table: &crate::Prepared) -> Result<Applied, ProxyError> {
        match table {
            crate::Prepared::Batch(batch) => self.send_batch(batch).map(|()| Applied::Netlink),
            crate::Prepared::Script(script) => self.apply(script).map(|()| Applied::Script),
        }
    }

    /// Sends `batch` (a whole transaction from [`crate::netlink::BatchSink::finish`]) to the
    /// kernel on a fresh `NETLINK_NETFILTER` socket: applied entirely or not at all. The kernel
    /// handles the batch inside `sendmsg`, so every error is queued by the time it returns;
    /// no message asks for an acknowledgement, so only errors come back.
    pub fn send_batch(&self, batch: &[u8]) -> Result<(), ProxyError> {
        // A refused batch leaves the socket as good as new; anything else closes it.
        self.with_socket(
            |result| matches!(result, Ok(()) | Err(ProxyError::Kernel { .. })),
            |socket| send_and_check(socket, batch),
        )
    }

    /// The handle of table `ip kube-proxy` (`None` if there is none), asked over netlink for
    /// that one table: `nft list tables` first dumps every rule into its cache, which takes
    /// seconds of kernel time at 10,000 Services, while this answers at once. A new handle
    /// means the table was replaced.
    pub fn table_handle(&self) -> Result<Option<u64>, ProxyError> {
        self.with_socket(Result::is_ok, query_table_handle)
    }

    /// Runs `f` on the kept socket (opened in the namespace first if there is none), and keeps
    /// the socket for next time if `keep` says its outcome left it usable.
    fn with_socket<T>(
        &self,
        keep: impl FnOnce(&Result<T, ProxyError>) -> bool,
        f: impl FnOnce(&OwnedFd) -> Result<T, ProxyError>,
    ) -> Result<T, ProxyError> {
        let mut socket = self
            .socket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let open = match socket.take() {
            Some(open) => open,
            None => match &self.netns_path {
                None => open_netfilter_socket()?,
                Some(path) => dataplane::netns::in_netns(path, open_netfilter_socket)
                    .map_err(ProxyError::Netns)??,
            },
        };
        let result = f(&open);
        if keep(&result) {
            *socket = Some(open);
        }
        result
    }
}

/// NFT_MSG_GETTABLE for `ip kube-proxy`; the answer is one NFT_MSG_NEWTABLE or an error.
fn query_table_handle(socket: &OwnedFd) -> Result<Option<u64>, ProxyError> {
    const GETTABLE: u16 = (10 << 8) | 1;
    const NEWTABLE: u16 = 10 << 8;
    const NFTA_TABLE_NAME: u16 = 1;
    const NFTA_TABLE_HANDLE: u16 = 4;
    const SEQ: u32 = 0x6b6c_7462;
    let name = b"kube-proxy\0";
    let attr_len = 4 + name.len();
    let len = 16 + 4 + attr_len.div_ceil(4) * 4;
    let mut message = Vec::with_capacity(len);
    message.extend_from_slice(&(len as u32).to_ne_bytes());
    message.extend_from_slice(&GETTABLE.to_ne_bytes());
    message.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    message.extend_from_slice(&SEQ.to_ne_bytes());
    message.extend_from_slice(&0u32.to_ne_bytes());
    message.extend_from_slice(&[libc::NFPROTO_IPV4 as u8, 0, 0, 0]);
    message.extend_from_slice(&(attr_len as u16).to_ne_bytes());
    message.extend_from_slice(&NFTA_TABLE_NAME.to_ne_bytes());
    message.extend_from_slice(name);
    message.resize(len, 0);
    send_to_kernel(socket, &message)?;
    let mut buffer = vec![0u8; 8192];
    loop {
        let received = receive(socket, &mut buffer, 0).map_err(ProxyError::Socket)?;
        let mut at = 0usize;
        while at + 16 <= received {
            let word = |i: usize| {
                u32::from_ne_bytes([buffer[i], buffer[i + 1], buffer[i + 2], buffer[i + 3]])
            };
            let len = word(at) as usize;
            let kind = u16::from_ne_bytes([buffer[at + 4], buffer[at + 5]]);
            let seq = word(at + 8);
            if len < 16 || at + len > received {
                break;
            }
            if seq == SEQ && kind == libc::NLMSG_ERROR as u16 && len >= 20 {
                let code = word(at + 16) as i32;
                return match -code {
                    0 | libc::ENOENT => Ok(None),
                    errno => Err(ProxyError::Kernel {
                        seq,
                        error: std::io::Error::from_raw_os_error(errno),
                    }),
                };
            }
            if seq == SEQ && kind == NEWTABLE {
                let mut a = at + 20;
                while a + 4 <= at + len {
                    let alen = u16::from_ne_bytes([buffer[a], buffer[a + 1]]) as usize;
                    let atype = u16::from_ne_bytes([buffer[a + 2], buffer[a + 3]]) & 0x3fff;
                    if alen < 4 || a + alen > at + len {
                        break;
                    }
                    if atype == NFTA_TABLE_HANDLE && alen == 12 {
                        let mut handle = [0u8; 8];
                        handle.copy_from_slice(&buffer[a + 4..a + 12]);
                        return Ok(Some(u64::from_be_bytes(handle)));
                    }
                    a += alen.div_ceil(4) * 4;
                }
                return Ok(None);
            }
            // Anything else (a late error of an earlier batch) is not ours.
            at += len.div_ceil(4) * 4;
        }
    }
}

/// One `recv` into `buffer`: how many bytes arrived.
fn receive(socket: &OwnedFd, buffer: &mut [u8], flags: i32) -> std::io::Result<usize> {
    // SAFETY: `buffer` is writable for its length.
    let received = unsafe {
        libc::recv(
            socket.as_raw_fd(),
            buffer.as_mut_ptr().cast(),
            buffer.len(),
            flags,
        )
    };
    usize::try_from(received).map_err(|_| std::io::Error::last_os_error())
}

/// One `sendto` of `bytes` to the kernel (netlink port 0).
fn send_to_kernel(socket: &OwnedFd, bytes: &[u8]) -> Result<(), ProxyError> {
    // SAFETY: zeroed sockaddr_nl addresses the kernel (port 0).
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: the buffer and address are valid for the call.
    let sent = unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            bytes.as_ptr().cast(),
            bytes.len(),
            0,
            (&raw const kernel).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(last_os_error());
    }
    Ok(())
}

fn last_os_error() -> ProxyError {
    ProxyError::Socket(std::io::Error::last_os_error())
}

fn open_netfilter_socket() -> Result<OwnedFd, ProxyError> {
    // SAFETY: plain socket(2); the descriptor is owned right away.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_NETFILTER,
        )
    };
    if fd < 0 {
        return Err(last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // Errors echo only their header, not the (possibly huge) failed message.
    set_int_option(&socket, libc::SOL_NETLINK, libc::NETLINK_CAP_ACK, 1)?;
    set_int_option(&socket, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 4 << 20)?;
    // SAFETY: a zeroed sockaddr_nl is valid; the kernel assigns the port id.
    let mut address: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    address.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: `address` is a valid sockaddr_nl of the given length.
    let bound = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&raw const address).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if bound < 0 {
        return Err(last_os_error());
    }
    Ok(socket)
}

fn set_int_option(socket: &OwnedFd, level: i32, name: i32, value: i32) -> Result<(), ProxyError> {
    // SAFETY: `value` outlives the call and its size is passed.
    let done = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if done < 0 {
        return Err(last_os_error());
    }
    Ok(())
}

fn send_and_check(socket: &OwnedFd, batch: &[u8]) -> Result<(), ProxyError> {
    // The kernel takes a netlink message only if it fits the send buffer (which it doubles).
    let wanted = i32::try_from(batch.len() / 2 + 65_536).unwrap_or(i32::MAX);
    set_int_option(socket, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, wanted)?;
    send_to_kernel(socket, batch)?;
    let mut buffer = vec![0u8; 64 * 1024];
    let mut first_error: Option<ProxyError> = None;
    loop {
        let received = match receive(socket, &mut buffer, libc::MSG_DONTWAIT) {
            Ok(received) => received,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
            // ENOBUFS: errors were lost; the batch failed either way.
            Err(error) => return Err(first_error.unwrap_or(ProxyError::Socket(error))),
        };
        let mut at = 0usize;
        while at + 16 <= received {
            let header = &buffer[at..at + 16];
            let len = u32::from_ne_bytes([header[0], header[1], header[2], header[3]]) as usize;
            let kind = u16::from_ne_bytes([header[4], header[5]]);
            let seq = u32::from_ne_bytes([header[8], header[9], header[10], header[11]]);
            if kind == libc::NLMSG_ERROR as u16 && at + 20 <= received {
                let code = i32::from_ne_bytes([
                    buffer[at + 16],
                    buffer[at + 17],
                    buffer[at + 18],
                    buffer[at + 19],
                ]);
                if code != 0 && first_error.is_none() {
                    first_error = Some(ProxyError::Kernel {
                        seq,
                        error: std::io::Error::from_raw_os_error(-code),
                    });
                }
            }
            if len < 16 {
                break;
            }
            at += len.div_ceil(4) * 4;
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

fn check(args: &str, output: &std::process::Output) -> Result<(), ProxyError> {
    if output.status.success() {
        return Ok(());
    }
    Err(ProxyError::Nft {
        args: args.to_string(),
        status: output.status,
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
    })
}
