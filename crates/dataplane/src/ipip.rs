//! Userspace IPIP: Calico's `tunl0` for a kernel without the `ipip` module.
//!
//! `tunl0` is a persistent TUN device (`IFF_TUN | IFF_NO_PI`, `TUNSETPERSIST`), so the device, its
//! address and the routes through it (`<block> via <node> dev tunl0 onlink`) survive an agent
//! restart; the next agent re-attaches with `TUNSETIFF`. The kernel routes an inner packet into
//! `tunl0`; we read it, pick the remote node by longest-prefix match on the inner destination
//! ([`PeerTable`]) and send it through a raw `IPPROTO_IPIP` socket, so the kernel adds a real outer
//! IPv4 header with protocol 4: on the wire this is ordinary IP-in-IP, as a kernel `ipip` device
//! would send. Received protocol-4 packets arrive on the same raw socket with their outer header,
//! which we strip (`ihl * 4` bytes) before writing the inner packet into `tunl0`.
//!
//! Like Felix's rule that only known nodes may send IPIP, packets from outer sources that are not
//! current peers are dropped, and so are inner packets with no peer.
//!
//! Approximations: outer packets are sent with DF clear (the kernel fragments rather than
//! reporting EMSGSIZE, and no ICMP "fragmentation needed" goes back to the inner sender); TTL and
//! TOS of the outer header are the kernel's defaults for the socket rather than copied from the
//! inner packet.

use std::collections::HashSet;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::error::{DataplaneError, Result, io_ctx};
use crate::sys;

/// Calico's IPIP device name.
pub const DEVICE: &str = "tunl0";
/// Calico's IPIP MTU: 1500 minus the 20-byte outer header.
pub const MTU: u32 = 1480;
/// IP protocol number of IP-in-IP.
pub const IPPROTO_IPIP: u8 = 4;

/// One route of the peer table: inner destinations inside `network/prefix` go to `remote`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PeerRoute {
    network: u32,
    mask: u32,
    remote: Ipv4Addr,
}

/// The table behind a [`PeerTable`] handle.
#[derive(Debug, Default)]
struct Peers {
    /// Sorted by prefix length, longest first, so the first match is the longest prefix.
    routes: Vec<PeerRoute>,
    /// Outer sources we accept packets from.
    remotes: HashSet<Ipv4Addr>,
}

/// Where to send inner packets: (block network, prefix length) → remote node IP. A cheap clonable
/// handle; the agent updates it while the tunnel runs.
///
/// A std `RwLock` because lookups are per packet, short and never held across an `.await`.
#[derive(Debug, Clone, Default)]
pub struct PeerTable {
    inner: Arc<RwLock<Peers>>,
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl PeerTable {
    /// An empty table: every packet is dropped until [`PeerTable::set`] is called.
    pub fn new() -> PeerTable {
        PeerTable::default()
    }

    /// Replaces the whole table with `(block network, prefix, remote node IP)` entries. Host bits
    /// of the network are ignored; entries with a prefix over 32 are skipped.
    pub fn set(&self, entries: Vec<(Ipv4Addr, u8, Ipv4Addr)>) {
        let mut routes: Vec<(u8, PeerRoute)> = entries
            .into_iter()
            .filter(|&(net, prefix, _)| {
                let ok = prefix <= 32;
                if !ok {
                    tracing::warn!(%net, prefix, "ignoring IPIP peer route with prefix over 32");
                }
                ok
            })
            .map(|(net, prefix, remote)| {
                let mask = mask(prefix);
                (
                    prefix,
                    PeerRoute {
                        network: u32::from(net) & mask,
                        mask,
                        remote,
                    },
                )
            })
            .collect();
        routes.sort_by_key(|(prefix, _)| std::cmp::Reverse(*prefix));
        let peers = Peers {
            remotes: routes.iter().map(|(_, r)| r.remote).collect(),
            routes: routes.into_iter().map(|(_, r)| r).collect(),
        };
        *self.inner.write().unwrap_or_else(|e| e.into_inner()) = peers;
    }

    /// The remote node for inner destination `dst` (longest prefix match), if any.
    pub fn lookup(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        let dst = u32::from(dst);
        let peers = self.inner.read().unwrap_or_else(|e| e.into_inner());
        peers
            .routes
            .iter()
            .find(|r| dst & r.mask == r.network)
            .map(|r| r.remote)
    }

    /// Whether `outer_source` is a current peer (allowed to send us IPIP).
    pub fn is_peer(&self, outer_source: Ipv4Addr) -> bool {
        let peers = self.inner.read().unwrap_or_else(|e| e.into_inner());
        peers.remotes.contains(&outer_source)
    }
}

/// Packet counters of a running tunnel, shared with whoever asked for them.
#[derive(Debug, Default)]
pub struct IpipCounters {
    encapsulated: AtomicU64,
    decapsulated: AtomicU64,
    dropped_no_peer: AtomicU64,
    dropped_unknown_source: AtomicU64,
    dropped_malformed: AtomicU64,
    send_errors: AtomicU64,
}

/// A point-in-time copy of [`IpipCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IpipStats {
    /// Inner packets read from the TUN device and sent as protocol 4.
    pub encapsulated: u64,
    /// Protocol-4 packets received from a peer and written into the TUN device.
    pub decapsulated: u64,
    /// Inner packets whose destination matched no peer route.
    pub dropped_no_peer: u64,
    /// Protocol-4 packets from an outer source that is not a peer.
    pub dropped_unknown_source: u64,
    /// Packets that were not well-formed IPv4 (either direction).
    pub dropped_malformed: u64,
    /// Sends or TUN writes the kernel refused (e.g. no route to the remote node).
    pub send_errors: u64,
}

impl IpipCounters {
    /// Current values.
    pub fn snapshot(&self) -> IpipStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        IpipStats {
            encapsulated: get(&self.encapsulated),
            decapsulated: get(&self.decapsulated),
            dropped_no_peer: get(&self.dropped_no_peer),
            dropped_unknown_source: get(&self.dropped_unknown_source),
            dropped_malformed: get(&self.dropped_malformed),
            send_errors: get(&self.send_errors),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The destination of an IPv4 packet, if `packet` looks like one.
pub fn inner_destination(packet: &[u8]) -> Option<Ipv4Addr> {
    let header = packet.get(..20)?;
    if header[0] >> 4 != 4 {
        return None;
    }
    Some(Ipv4Addr::new(
        header[16], header[17], header[18], header[19],
    ))
}

/// Splits a received IPIP packet (outer header included, as a raw socket delivers it) into the
/// outer source and the inner packet. `None` unless the outer header is a sane IPv4 protocol-4
/// header and the inner packet is IPv4.
pub fn decapsulate(packet: &[u8]) -> Option<(Ipv4Addr, &[u8])> {
    let first = *packet.first()?;
    let header_len = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || header_len < 20 || packet.len() < header_len {
        return None;
    }
    if packet[9] != IPPROTO_IPIP {
        return None;
    }
    let source = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    let inner = &packet[header_len..];
    inner_destination(inner)?;
    Some((source, inner))
}

/// A persistent TUN device plus the raw socket that carries its packets as IP protocol 4.
#[derive(Debug)]
pub struct IpipTunnel {
    name: String,
    tun: OwnedFd,
    raw: OwnedFd,
    peers: PeerTable,
    counters: Arc<IpipCounters>,
}

impl IpipTunnel {
    /// Creates (or re-attaches to) the persistent TUN device `name` in the CURRENT thread's
    /// network namespace, sets its MTU and brings it up, and opens the raw IPIP socket there.
    /// Use [`crate::netns::in_netns`] to do this for another namespace; the fds stay in it.
    ///
    /// Fails with `EBUSY` if another process is still attached to the device.
    pub fn open(name: &str, mtu: u32) -> Result<IpipTunnel> {
        let tun = sys::open(
            std::path::Path::new("/dev/net/tun"),
            libc::O_RDWR | libc::O_NONBLOCK,
            0,
        )
        .map_err(io_ctx(|| "open /dev/net/tun".into()))?;
        let mut req = sys::ifreq(name).map_err(|_| DataplaneError::InvalidArgument {
            what: "interface name",
            value: name.to_string(),
        })?;
        req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
        sys::ioctl_ifreq(&tun, libc::TUNSETIFF, &mut req)
            .map_err(io_ctx(|| format!("TUNSETIFF {name}")))?;
        // SAFETY: TUNSETPERSIST takes its argument by value; the fd is ours.
        if unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETPERSIST, 1 as libc::c_ulong) } < 0 {
            return Err(DataplaneError::io(
                format!("TUNSETPERSIST {name}"),
                io::Error::last_os_error(),
            ));
        }
        sys::set_mtu(name, mtu).map_err(io_ctx(|| format!("set mtu {mtu} on {name}")))?;
        sys::set_link_up(name).map_err(io_ctx(|| format!("set {name} up")))?;

        let raw = sys::socket(
            libc::AF_INET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK,
            libc::c_int::from(IPPROTO_IPIP),
        )
        .map_err(io_ctx(|| "raw IPIP socket".into()))?;
        let dont: libc::c_int = libc::IP_PMTUDISC_DONT;
        // SAFETY: option value points to a c_int of the given size.
        let rc = unsafe {
            libc::setsockopt(
                raw.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                (&dont as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(DataplaneError::io(
                "IP_MTU_DISCOVER on raw IPIP socket",
                io::Error::last_os_error(),
            ));
        }
        Ok(IpipTunnel {
            name: name.to_string(),
            tun,
            raw,
            peers: PeerTable::new(),
            counters: Arc::default(),
        })
    }

    /// The device name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A handle on the peer table this tunnel consults for every packet.
    pub fn peers(&self) -> PeerTable {
        self.peers.clone()
    }

    /// A handle on this tunnel's packet counters.
    pub fn counters(&self) -> Arc<IpipCounters> {
        Arc::clone(&self.counters)
    }

    /// Pumps packets both ways until the future is dropped. Returns only on a fatal error
    /// (e.g. the device was deleted); per-packet problems are counted and the packet dropped.
    pub async fn run(self) -> Result<()> {
        let IpipTunnel {
            name,
            tun,
            raw,
            peers,
            counters,
        } = self;
        let tun = register(tun).map_err(io_ctx(|| format!("register {name} with tokio")))?;
        let raw = register(raw).map_err(io_ctx(|| "register raw IPIP socket with tokio".into()))?;
        let outbound = encapsulate_loop(&tun, &raw, &peers, &counters);
        let inbound = decapsulate_loop(&raw, &tun, &peers, &counters);
        tokio::try_join!(outbound, inbound)
            .map(|_| ())
            .map_err(|e| DataplaneError::io(format!("IPIP tunnel {name}"), e))
    }
}

/// Registers an fd we own with the tokio reactor.
fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an `OwnedFd` stays open and keeps returning the same fd until the `AsyncFd` that
    // owns it is dropped.
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE | Interest::WRITABLE) }
        .map_err(io::Error::from)
}

/// Largest IPv4 packet.
const BUFFER: usize = 65535;

/// Waits until `fd` is readable and runs the non-blocking `op`, retrying on `WouldBlock`.
async fn io_read(
    fd: &AsyncFd<OwnedFd>,
    mut op: impl FnMut(i32) -> io::Result<usize>,
) -> io::Result<usize> {
    loop {
        let mut guard = fd.readable().await?;
        match guard.try_io(|inner| op(inner.get_ref().as_raw_fd())) {
            Ok(result) => return result,
            Err(_would_block) => continue,
        }
    }
}

/// Like [`io_read`] for writability.
async fn io_write(
    fd: &AsyncFd<OwnedFd>,
    mut op: impl FnMut(i32) -> io::Result<usize>,
) -> io::Result<usize> {
    loop {
        let mut guard = fd.writable().await?;
        match guard.try_io(|inner| op(inner.get_ref().as_raw_fd())) {
            Ok(result) => return result,
            Err(_would_block) => continue,
        }
    }
}

fn syscall_len(ret: isize) -> io::Result<usize> {
    usize::try_from(ret).map_err(|_| io::Error::last_os_error())
}

/// Whether a read error is a hiccup (retry) rather than the end of the device or socket.
fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
    )
}

/// TUN → raw socket: inner packets out to their remote node.
async fn encapsulate_loop(
    tun: &AsyncFd<OwnedFd>,
    raw: &AsyncFd<OwnedFd>,
    peers: &PeerTable,
    counters: &IpipCounters,
) -> io::Result<()> {
    let mut buf = vec![0u8; BUFFER];
    loop {
        let read = io_read(tun, |fd| {
            // SAFETY: `buf` is valid for `buf.len()` bytes.
            syscall_len(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })
        })
        .await;
        let len = match read {
            Ok(len) => len,
            Err(e) if transient(&e) => continue,
            Err(e) => return Err(e),
        };
        let packet = &buf[..len];
        let Some(dst) = inner_destination(packet) else {
            bump(&counters.dropped_malformed);
            continue;
        };
        let Some(remote) = peers.lookup(dst) else {
            bump(&counters.dropped_no_peer);
            continue;
        };
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from(remote).to_be(),
            },
            sin_zero: [0; 8],
        };
        let sent = io_write(raw, |fd| {
            // SAFETY: `packet` and `addr` are valid for the lengths given.
            syscall_len(unsafe {
                libc::sendto(
                    fd,
                    packet.as_ptr().cast(),
                    packet.len(),
                    0,
                    (&addr as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            })
        })
        .await;
        match sent {
            Ok(_) => bump(&counters.encapsulated),
            Err(_) => bump(&counters.send_errors),
        }
    }
}

/// Raw socket → TUN: protocol-4 packets from peers, outer header stripped.
async fn decapsulate_loop(
    raw: &AsyncFd<OwnedFd>,
    tun: &AsyncFd<OwnedFd>,
    peers: &PeerTable,
    counters: &IpipCounters,
) -> io::Result<()> {
    let mut buf = vec![0u8; BUFFER];
    loop {
        let received = io_read(raw, |fd| {
            // SAFETY: `buf` is valid for `buf.len()` bytes.
            syscall_len(unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) })
        })
        .await;
        let len = match received {
            Ok(len) => len,
            Err(e) if transient(&e) => continue,
            Err(e) => return Err(e),
        };
        let Some((source, inner)) = decapsulate(&buf[..len]) else {
            bump(&counters.dropped_malformed);
            continue;
        };
        if !peers.is_peer(source) {
            bump(&counters.dropped_unknown_source);
            continue;
        }
        let written = io_write(tun, |fd| {
            // SAFETY: `inner` is valid for its length.
            syscall_len(unsafe { libc::write(fd, inner.as_ptr().cast(), inner.len()) })
        })
        .await;
        match written {
            Ok(_) => bump(&counters.decapsulated),
            Err(_) => bump(&counters.send_errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap_or(Ipv4Addr::UNSPECIFIED)
    }

    #[test]
    fn longest_prefix_wins_and_host_bits_are_ignored() {
        let table = PeerTable::new();
        table.set(vec![
            (ip("192.168.0.0"), 16, ip("10.0.0.9")),
            (ip("192.168.145.99"), 26, ip("10.0.0.2")),
            (ip("192.168.145.70"), 32, ip("10.0.0.3")),
            (ip("1.2.3.4"), 40, ip("10.0.0.4")),
        ]);
        assert_eq!(table.lookup(ip("192.168.145.70")), Some(ip("10.0.0.3")));
        assert_eq!(table.lookup(ip("192.168.145.65")), Some(ip("10.0.0.2")));
        assert_eq!(table.lookup(ip("192.168.1.1")), Some(ip("10.0.0.9")));
        assert_eq!(table.lookup(ip("172.16.0.1")), None);
        assert!(table.is_peer(ip("10.0.0.2")));
        assert!(
            !table.is_peer(ip("10.0.0.4")),
            "invalid entry must be skipped"
        );
        table.set(vec![]);
        assert_eq!(table.lookup(ip("192.168.145.70")), None);
        assert!(!table.is_peer(ip("10.0.0.2")));
    }

    #[test]
    fn default_route_entry_matches_everything() {
        let table = PeerTable::new();
        table.set(vec![(ip("0.0.0.0"), 0, ip("10.0.0.1"))]);
        assert_eq!(table.lookup(ip("8.8.8.8")), Some(ip("10.0.0.1")));
    }

    /// A minimal IPv4 header: version 4, `ihl` words, protocol, source, destination.
    fn header(ihl: u8, proto: u8, src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
        let mut h = vec![0u8; usize::from(ihl) * 4];
        h[0] = 0x40 | ihl;
        h[9] = proto;
        h[12..16].copy_from_slice(&src);
        h[16..20].copy_from_slice(&dst);
        h
    }

    #[test]
    fn decapsulate_strips_the_outer_header_including_options() {
        let inner = header(5, 6, [192, 168, 1, 1], [192, 168, 2, 2]);
        for ihl in [5u8, 6] {
            let mut packet = header(ihl, IPPROTO_IPIP, [10, 0, 0, 1], [10, 0, 0, 2]);
            packet.extend_from_slice(&inner);
            let (src, got) = decapsulate(&packet).expect("valid");
            assert_eq!(src, ip("10.0.0.1"));
            assert_eq!(got, inner.as_slice());
            assert_eq!(inner_destination(got), Some(ip("192.168.2.2")));
        }
    }

    #[test]
    fn malformed_packets_are_refused_without_panicking() {
        let inner = header(5, 6, [1, 1, 1, 1], [2, 2, 2, 2]);
        let mut wrong_proto = header(5, 17, [10, 0, 0, 1], [10, 0, 0, 2]);
        wrong_proto.extend_from_slice(&inner);
        let mut short_ihl = header(5, IPPROTO_IPIP, [10, 0, 0, 1], [10, 0, 0, 2]);
        short_ihl[0] = 0x44;
        let truncated_inner = header(5, IPPROTO_IPIP, [10, 0, 0, 1], [10, 0, 0, 2]);
        let mut ipv6_inner = header(5, IPPROTO_IPIP, [10, 0, 0, 1], [10, 0, 0, 2]);
        ipv6_inner.extend_from_slice(&[0x60; 40]);
        for bad in [
            vec![],
            vec![0x45],
            vec![0xff; 60],
            wrong_proto,
            short_ihl,
            truncated_inner,
            ipv6_inner,
        ] {
            assert_eq!(decapsulate(&bad), None, "{bad:?}");
        }
        assert_eq!(inner_destination(&[0x45; 19]), None);
        assert_eq!(inner_destination(&[0x60; 40]), None);
    }
}
