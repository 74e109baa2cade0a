//! Root test of the userspace IPIP tunnel: two node namespaces joined by a veth, a TCP connection
//! between their tunnel addresses, protocol-4 packets on the wire, peer filtering, and survival of
//! the device and its routes across an agent restart.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use common::{Cleanup, require_root};
use dataplane::ipip::{self, IpipTunnel};
use dataplane::{ip, netns};

const NODE_A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const NODE_B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const TUNNEL_A: Ipv4Addr = Ipv4Addr::new(192, 168, 145, 64);
const TUNNEL_B: Ipv4Addr = Ipv4Addr::new(192, 168, 126, 64);

/// Opens (or re-attaches) `tunl0` inside `ns` and runs it on a tokio task.
fn start_tunnel(
    ns: &str,
    peer_block: Ipv4Addr,
    peer_node: Ipv4Addr,
) -> (
    tokio::task::JoinHandle<dataplane::Result<()>>,
    std::sync::Arc<ipip::IpipCounters>,
    ipip::PeerTable,
) {
    let tunnel = netns::in_netns(&netns::path(ns), || {
        IpipTunnel::open(ipip::DEVICE, ipip::MTU)
    })
    .expect("in_netns")
    .expect("open tunnel");
    let peers = tunnel.peers();
    peers.set(vec![(peer_block, 26, peer_node)]);
    let counters = tunnel.counters();
    (tokio::spawn(tunnel.run()), counters, peers)
}

/// An AF_PACKET socket in `ns` that sees every IPv4 packet on `ifname` (as IP, without the
/// Ethernet header). Non-blocking, so the test can drain it afterwards.
fn capture(ns: &str, ifname: &str) -> OwnedFd {
    let ifname = ifname.to_string();
    netns::in_netns(&netns::path(ns), move || {
        let proto = (libc::ETH_P_IP as u16).to_be();
        // SAFETY: plain syscalls; the fd is wrapped immediately.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK,
                i32::from(proto),
            )
        };
        assert!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let name = std::ffi::CString::new(ifname).expect("name");
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        assert!(index > 0, "no such interface");
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = proto;
        addr.sll_ifindex = index as i32;
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(rc, 0, "bind AF_PACKET: {}", std::io::Error::last_os_error());
        fd
    })
    .expect("in_netns")
}

/// Drains the capture and returns the captured packets.
fn drain(fd: &OwnedFd) -> Vec<Vec<u8>> {
    let mut packets = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        // SAFETY: buffer valid for its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            return packets;
        }
        packets.push(buf[..n as usize].to_vec());
    }
}

/// TCP from A's tunnel address to a listener on B's: `size` bytes A→B, echoed back B→A.
fn tcp_through_tunnel(a: &str, b: &str, port: u16, size: usize) {
    let addr = SocketAddr::from((TUNNEL_B, port));
    let listener = netns::in_netns(&netns::path(b), || TcpListener::bind(addr))
        .expect("in_netns")
        .expect("bind on tunnel address");
    let server = std::thread::spawn(move || -> std::io::Result<SocketAddr> {
        let (mut conn, peer) = listener.accept()?;
        conn.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut data = vec![0u8; size];
        conn.read_exact(&mut data)?;
        conn.write_all(&data)?;
        Ok(peer)
    });
    let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let local = netns::in_netns(&netns::path(a), || -> std::io::Result<SocketAddr> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(&payload)?;
        let mut back = vec![0u8; size];
        s.read_exact(&mut back)?;
        assert!(back == payload, "echo differs");
        s.local_addr()
    })
    .expect("in_netns")
    .expect("client exchange");
    assert_eq!(local.ip(), TUNNEL_A, "source is A's tunnel address");
    let peer = server
        .join()
        .expect("server thread")
        .expect("server exchange");
    assert_eq!(peer.ip(), TUNNEL_A);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_between_tunnel_addresses_goes_over_real_ipip() {
    require_root();
    let mut cleanup = Cleanup::default();
    let a = cleanup.netns("nodea");
    let b = cleanup.netns("nodeb");
    cleanup.devices.push((a.clone(), "tunl0".into()));
    cleanup.devices.push((b.clone(), "tunl0".into()));
    ip::batch(
        Some(&a),
        &format!("link add eth0 type veth peer name eth0 netns {b}\naddr add {NODE_A}/24 dev eth0\nlink set eth0 up\n"),
    )
    .await
    .expect("wire a");
    ip::batch(
        Some(&b),
        &format!("addr add {NODE_B}/24 dev eth0\nlink set eth0 up\n"),
    )
    .await
    .expect("wire b");

    let (task_a, counters_a, peers_a) = start_tunnel(&a, Ipv4Addr::new(192, 168, 126, 64), NODE_B);
    let (task_b, counters_b, peers_b) = start_tunnel(&b, Ipv4Addr::new(192, 168, 145, 64), NODE_A);
    ip::batch(
        Some(&a),
        &format!(
            "addr replace {TUNNEL_A}/32 dev tunl0\nroute replace 192.168.126.64/26 via {NODE_B} dev tunl0 onlink\n\
             route replace 192.168.200.0/24 dev tunl0\n"
        ),
    )
    .await
    .expect("tunnel routes a");
    ip::batch(
        Some(&b),
        &format!("addr replace {TUNNEL_B}/32 dev tunl0\nroute replace 192.168.145.64/26 via {NODE_A} dev tunl0 onlink\n"),
    )
    .await
    .expect("tunnel routes b");
    let tunl0 = ip::link(&a, "tunl0")
        .await
        .expect("q")
        .expect("tunl0 exists");
    assert_eq!(
        (tunl0.kind.as_deref(), tunl0.mtu, tunl0.up),
        (Some("tun"), 1480, true)
    );

    let wire = capture(&b, "eth0");
    tokio::task::spawn_blocking({
        let (a, b) = (a.clone(), b.clone());
        move || tcp_through_tunnel(&a, &b, 7000, 256 * 1024)
    })
    .await
    .expect("exchange");

    // On the wire between the nodes: IP protocol 4, outer A→B, inner TCP between tunnel addresses.
    let packets = drain(&wire);
    let ipip_packets: Vec<&Vec<u8>> = packets
        .iter()
        .filter(|p| p.len() > 40 && p[9] == 4)
        .collect();
    assert!(
        !ipip_packets.is_empty(),
        "no protocol-4 packets among {} captured",
        packets.len()
    );
    for p in &ipip_packets {
        let (outer_src, inner) = ipip::decapsulate(p).expect("well-formed IPIP");
        assert!(outer_src == NODE_A || outer_src == NODE_B);
        assert_eq!(inner[9], 6, "inner is TCP");
        let inner_src = Ipv4Addr::new(inner[12], inner[13], inner[14], inner[15]);
        assert!(inner_src == TUNNEL_A || inner_src == TUNNEL_B);
    }
    assert!(
        !packets.iter().any(|p| p[9] == 6),
        "no TCP may travel unencapsulated between the nodes"
    );
    let (sa, sb) = (counters_a.snapshot(), counters_b.snapshot());
    assert!(sa.encapsulated > 100 && sa.decapsulated > 10, "{sa:?}");
    assert!(sb.encapsulated > 10 && sb.decapsulated > 100, "{sb:?}");

    // Inner destination without a peer: dropped at A.
    let send_udp = |ns: &str, to: Ipv4Addr| {
        netns::in_netns(&netns::path(ns), || {
            let s = UdpSocket::bind("0.0.0.0:0")?;
            s.send_to(b"x", (to, 9))
        })
        .expect("in_netns")
        .expect("udp send")
    };
    send_udp(&a, Ipv4Addr::new(192, 168, 200, 1));
    // Outer source that is no longer a peer: dropped at B.
    peers_b.set(vec![]);
    send_udp(&a, TUNNEL_B);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        counters_a.snapshot().dropped_no_peer >= 1,
        "{:?}",
        counters_a.snapshot()
    );
    assert!(
        counters_b.snapshot().dropped_unknown_source >= 1,
        "{:?}",
        counters_b.snapshot()
    );
    peers_b.set(vec![(Ipv4Addr::new(192, 168, 145, 64), 26, NODE_A)]);
    let _ = peers_a;

    // Agent restart on A: the device and its routes outlive the process's fds; re-attach.
    task_a.abort();
    let _ = task_a.await;
    let routes = ip::route_text(&a).await.expect("routes");
    assert!(
        routes.contains("192.168.126.64/26 via 10.0.0.2 dev tunl0 onlink"),
        "{routes}"
    );
    let (task_a, counters_a2, _) = start_tunnel(&a, Ipv4Addr::new(192, 168, 126, 64), NODE_B);
    tokio::task::spawn_blocking({
        let (a, b) = (a.clone(), b.clone());
        move || tcp_through_tunnel(&a, &b, 7001, 4096)
    })
    .await
    .expect("exchange after restart");
    assert!(counters_a2.snapshot().encapsulated > 0);

    task_a.abort();
    task_b.abort();
    assert!(
        task_b.await.err().is_some_and(|e| e.is_cancelled()),
        "tunnel B ran until aborted"
    );
}
