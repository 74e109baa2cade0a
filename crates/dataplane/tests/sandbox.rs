//! Root test of Calico-style pod wiring: two pods in one node talk over TCP (proving proxy ARP and
//! the routes), a pod reaches the node's own address, and setup converges from broken states.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use common::{Cleanup, require_root};
use dataplane::sandbox::{self, PodNetwork};
use dataplane::{ip, netns, sysctl};

const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);

/// Listens on `addr` inside `listen_ns`, connects from `client_ns`, exchanges a line each way,
/// and returns the source address the listener saw.
fn tcp_exchange(listen_ns: &str, addr: SocketAddr, client_ns: &str) -> SocketAddr {
    let listener = netns::in_netns(&netns::path(listen_ns), || TcpListener::bind(addr))
        .expect("in_netns")
        .expect("bind");
    let server = std::thread::spawn(move || -> std::io::Result<SocketAddr> {
        let (mut conn, peer) = listener.accept()?;
        conn.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut buf = [0u8; 5];
        conn.read_exact(&mut buf)?;
        assert_eq!(&buf, b"ping\n");
        conn.write_all(b"pong\n")?;
        Ok(peer)
    });
    netns::in_netns(&netns::path(client_ns), || -> std::io::Result<()> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"ping\n")?;
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf)?;
        assert_eq!(&buf, b"pong\n");
        Ok(())
    })
    .expect("in_netns")
    .expect("client exchange");
    server
        .join()
        .expect("server thread")
        .expect("server exchange")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pods_and_the_node_reach_each_other_and_setup_converges() {
    require_root();
    let mut cleanup = Cleanup::default();
    // The node, and a "lan" namespace behind its eth0 that gives the node a default route (proxy
    // ARP answers for 169.254.1.1 only when the node can route it elsewhere).
    let node = cleanup.netns("node");
    let lan = cleanup.netns("lan");
    ip::batch(
        Some(&node),
        &format!(
            "link add eth0 type veth peer name eth0 netns {lan}\n\
             addr add {NODE_IP}/24 dev eth0\n\
             link set eth0 up\n\
             route add default via 10.77.0.254\n"
        ),
    )
    .await
    .expect("node uplink");
    ip::batch(
        Some(&lan),
        "addr add 10.77.0.254/24 dev eth0\nlink set eth0 up\n",
    )
    .await
    .expect("lan side");

    let pod_a = PodNetwork {
        node_netns: node.clone(),
        pod_netns: cleanup.will_create("poda"),
        host_if: "cali0000000000a".into(),
        ip: Ipv4Addr::new(192, 168, 145, 65),
        mtu: 1480,
    };
    let pod_b = PodNetwork {
        pod_netns: cleanup.will_create("podb"),
        host_if: "cali0000000000b".into(),
        ip: Ipv4Addr::new(192, 168, 145, 66),
        ..pod_a.clone()
    };
    sandbox::setup(&pod_a).await.expect("setup a");
    sandbox::setup(&pod_b).await.expect("setup b");

    // What a user sees, Calico's shape exactly.
    let pod_routes = ip::route_text(&pod_a.pod_netns).await.expect("routes");
    assert_eq!(
        pod_routes,
        "default via 169.254.1.1 dev eth0 \n169.254.1.1 dev eth0 scope link \n"
    );
    let node_routes = ip::route_text(&node).await.expect("routes");
    assert!(
        node_routes.contains("192.168.145.65 dev cali0000000000a scope link \n"),
        "{node_routes}"
    );
    assert!(
        node_routes.contains("192.168.145.66 dev cali0000000000b scope link \n"),
        "{node_routes}"
    );
    let host = ip::link(&node, "cali0000000000a")
        .await
        .expect("q")
        .expect("host veth");
    assert_eq!(host.mac.as_deref(), Some("ee:ee:ee:ee:ee:ee"));
    assert!(host.up);
    assert_eq!(host.mtu, 1480);
    let eth0 = ip::link(&pod_a.pod_netns, "eth0")
        .await
        .expect("q")
        .expect("pod eth0");
    assert!(eth0.up);
    assert_eq!(eth0.mtu, 1480);
    let node_path = netns::path(&node);
    for (key, value) in [
        ("net.ipv4.conf.cali0000000000a.proxy_arp", "1"),
        ("net.ipv4.neigh.cali0000000000a.proxy_delay", "0"),
        ("net.ipv4.conf.cali0000000000a.forwarding", "1"),
    ] {
        assert_eq!(
            sysctl::get(&node_path, key).expect("sysctl"),
            value,
            "{key}"
        );
    }

    // Pod B → pod A over TCP: ARP for 169.254.1.1 answered by proxy, routed by the node.
    let seen = tcp_exchange(
        &pod_a.pod_netns,
        "192.168.145.65:8080".parse().expect("addr"),
        &pod_b.pod_netns,
    );
    assert_eq!(seen.ip(), pod_b.ip);
    // Pod A → a listener on the node's own address.
    let seen = tcp_exchange(&node, SocketAddr::from((NODE_IP, 10250)), &pod_a.pod_netns);
    assert_eq!(seen.ip(), pod_a.ip);

    // Setup again on a complete sandbox: nothing recreated or duplicated.
    sandbox::setup(&pod_a).await.expect("setup a again");
    let host_again = ip::link(&node, "cali0000000000a")
        .await
        .expect("q")
        .expect("host veth");
    assert_eq!(
        host_again.ifindex, host.ifindex,
        "veth must not be recreated"
    );
    assert_eq!(
        ip::route_text(&pod_a.pod_netns).await.expect("routes"),
        pod_routes
    );
    assert_eq!(ip::route_text(&node).await.expect("routes"), node_routes);

    // Half-done after a "crash": pod routes and address gone, host end down.
    ip::batch(
        Some(&pod_a.pod_netns),
        "route del default\naddr flush dev eth0\n",
    )
    .await
    .expect("break pod");
    ip::batch(Some(&node), "link set dev cali0000000000a down\n")
        .await
        .expect("break host");
    sandbox::setup(&pod_a).await.expect("converge");
    assert_eq!(
        ip::route_text(&pod_a.pod_netns).await.expect("routes"),
        pod_routes
    );
    assert_eq!(ip::route_text(&node).await.expect("routes"), node_routes);
    tcp_exchange(
        &pod_a.pod_netns,
        "192.168.145.65:8081".parse().expect("addr"),
        &pod_b.pod_netns,
    );

    // A stray host interface with that name that is not paired with the pod's eth0.
    sandbox::teardown(&node, &pod_b.pod_netns, &pod_b.host_if)
        .await
        .expect("teardown b");
    ip::batch(
        Some(&node),
        "link add cali0000000000b type veth peer name straypeer\n",
    )
    .await
    .expect("stray");
    sandbox::setup(&pod_b).await.expect("converge from stray");
    let links = ip::links(&node).await.expect("links");
    assert!(
        !links.iter().any(|l| l.name == "straypeer"),
        "stray pair replaced"
    );
    tcp_exchange(
        &pod_a.pod_netns,
        "192.168.145.65:8082".parse().expect("addr"),
        &pod_b.pod_netns,
    );

    // Teardown removes veth, route and namespace; twice is fine.
    sandbox::teardown(&node, &pod_a.pod_netns, &pod_a.host_if)
        .await
        .expect("teardown a");
    assert!(!netns::exists(&pod_a.pod_netns));
    assert_eq!(ip::link(&node, "cali0000000000a").await.expect("q"), None);
    assert!(
        !ip::route_text(&node)
            .await
            .expect("routes")
            .contains("192.168.145.65")
    );
    sandbox::teardown(&node, &pod_a.pod_netns, &pod_a.host_if)
        .await
        .expect("teardown again");
    sandbox::teardown(&node, &pod_b.pod_netns, &pod_b.host_if)
        .await
        .expect("teardown b");
}
