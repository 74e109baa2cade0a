//! Root test: the rules really steer traffic. Two namespaces joined by a veth pair; the client
//! namespace gets our table, the server namespace runs a tiny TCP server.
//!
//! Fails (never skips) when not root: CI runs as root.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use proxy::{Nft, ProxyState, Ruleset};

/// Deletes the namespaces (and with them the veth pair) however the test ends.
struct Namespaces {
    names: Vec<String>,
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = dataplane::netns::delete(name);
        }
    }
}

fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

const CLIENT_IP: &str = "10.250.0.1";
const SERVER_IP: &str = "10.250.0.2";
const CLUSTER_IP: &str = "10.96.5.5";
const NODE_PORT: i32 = 30080;

fn state(with_endpoints: bool) -> ProxyState {
    let services = vec![common::service(
        "default",
        "echo",
        "NodePort",
        CLUSTER_IP,
        &[("http", "TCP", 8080, 80, Some(NODE_PORT))],
    )];
    let ips: &[&str] = if with_endpoints { &[SERVER_IP] } else { &[] };
    let slices = vec![common::slice(
        "default",
        "echo",
        ips,
        &[("http", "TCP", 80)],
    )];
    ProxyState::from_objects(&services, &slices, &common::config())
}

/// Connects from inside `netns` and returns the server's greeting.
fn fetch(netns: &Path, addr: &str) -> std::io::Result<String> {
    let addr: SocketAddr = addr.parse().expect("socket address");
    dataplane::netns::in_netns(netns, move || {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
        stream.set_read_timeout(Some(Duration::from_secs(3)))?;
        stream.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    })
    .expect("enter client namespace")
}

#[test]
fn rules_steer_clusterip_and_nodeport_traffic_and_reject_without_endpoints() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test needs root (network namespaces and nftables)"
    );
    let prefix = format!("kltest-proxy-{}-", std::process::id());
    let client = format!("{prefix}client");
    let server = format!("{prefix}server");
    let _guard = Namespaces {
        names: vec![client.clone(), server.clone()],
    };
    let client_ns = dataplane::netns::create(&client).expect("create client netns");
    let server_ns = dataplane::netns::create(&server).expect("create server netns");
    // The veth is created inside the client namespace, so its names never touch the host's.
    ip(&[
        "-n", &client, "link", "add", "veth-c", "type", "veth", "peer", "name", "veth-s", "netns",
        &server,
    ]);
    ip(&[
        "-n",
        &client,
        "addr",
        "add",
        &format!("{CLIENT_IP}/24"),
        "dev",
        "veth-c",
    ]);
    ip(&[
        "-n",
        &server,
        "addr",
        "add",
        &format!("{SERVER_IP}/24"),
        "dev",
        "veth-s",
    ]);
    ip(&["-n", &client, "link", "set", "veth-c", "up"]);
    ip(&["-n", &server, "link", "set", "veth-s", "up"]);
    // Like a node: the Service range is routed (here straight onto the veth) so that a socket
    // can pick a source address before DNAT rewrites the destination.
    ip(&[
        "-n",
        &client,
        "route",
        "add",
        "10.96.0.0/12",
        "dev",
        "veth-c",
    ]);

    let listener = dataplane::netns::in_netns(&server_ns, || TcpListener::bind((SERVER_IP, 80)))
        .expect("enter server namespace")
        .expect("bind server");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let peer = stream
                .peer_addr()
                .map(|p| p.ip().to_string())
                .unwrap_or_default();
            let mut buf = [0u8; 256];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.0 200 OK\r\n\r\nhello from server, you are {peer}\n"
            );
        }
    });

    let nft = Nft::in_netns(&client_ns).expect("open client netns");
    let with_endpoints = Ruleset::render(&state(true));
    let script = with_endpoints.to_nft_script();
    nft.apply(&script).expect("apply full script");
    // Idempotent: the full script replaces whatever is there.
    nft.apply(&script).expect("apply full script again");
    let listed = nft.list_table().expect("list table");
    assert!(listed.contains("service-ips"), "{listed}");

    let answer =
        fetch(&client_ns, &format!("{CLUSTER_IP}:8080")).expect("ClusterIP reaches server");
    assert!(
        answer.contains("hello from server, you are 10.250.0.1"),
        "{answer}"
    );
    let answer =
        fetch(&client_ns, &format!("{CLIENT_IP}:{NODE_PORT}")).expect("NodePort reaches server");
    assert!(answer.contains("hello from server"), "{answer}");

    let without_endpoints = Ruleset::render(&state(false));
    let update = Ruleset::update_script(&with_endpoints, &without_endpoints).expect("a change");
    nft.apply(&update).expect("apply update");
    for target in [
        format!("{CLUSTER_IP}:8080"),
        format!("{CLIENT_IP}:{NODE_PORT}"),
    ] {
        let started = Instant::now();
        let refused =
            fetch(&client_ns, &target).expect_err("no endpoints: the connection must fail");
        assert!(
            matches!(
                refused.raw_os_error(),
                Some(libc::ECONNREFUSED | libc::EHOSTUNREACH)
            ),
            "{target}: {refused:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{target}: rejected, not timed out"
        );
    }

    // And back: the proportional update restores service.
    let back = Ruleset::update_script(&without_endpoints, &with_endpoints).expect("a change");
    nft.apply(&back).expect("apply update back");
    let answer = fetch(&client_ns, &format!("{CLUSTER_IP}:8080")).expect("ClusterIP works again");
    assert!(answer.contains("hello from server"), "{answer}");

    let bad = nft
        .apply("add rule ip kube-proxy no-such-chain drop\n")
        .expect_err("nft refuses");
    assert!(
        bad.to_string().contains("no-such-chain") || bad.to_string().contains("No such file"),
        "{bad}"
    );

    // Per-Service rules read back from the kernel exactly as rendered (the load-balancing
    // cascade included), so what a student lists is what the goldens show.
    let course = Ruleset::render(&ProxyState::from_objects(
        &common::course_services(),
        &common::course_slices(),
        &common::config(),
    ));
    nft.apply(&course.to_nft_script())
        .expect("apply course ruleset");
    let listed = nft.list_table().expect("list table");
    let listed_rules: std::collections::BTreeSet<&str> = listed.lines().map(str::trim).collect();
    let per_service = course.chains.iter().filter(|(chain, _)| {
        ["service-", "endpoint-", "external-"]
            .iter()
            .any(|p| chain.starts_with(p))
    });
    let mut checked = 0;
    for (chain, rules) in per_service {
        for rule in rules {
            assert!(
                listed_rules.contains(rule.as_str()),
                "{chain}: {rule:?} not listed as is:\n{listed}"
            );
            checked += 1;
        }
    }
    assert!(checked > 30, "only {checked} rules compared");

    nft.delete_table().expect("delete table");
    nft.delete_table()
        .expect("deleting an absent table is fine");
    assert_eq!(nft.list_ruleset().expect("list ruleset").trim(), "");
}
