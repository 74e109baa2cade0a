//! The prediction against the real kernel (needs root; fails loudly without it).
//!
//! Builds kube-0 of the course as a network namespace (eth0 a veth to a kube-1 namespace, a TUN
//! `tunl0` since this kernel has no ipip module, a real `vxlan.calico`, one `cali*` veth per
//! local pod), then for each encapsulation in turn programs the table with `plan()` through
//! `ip -batch` and checks that `ip route` prints the prediction line for line, that the
//! kernel's JSON parses back to the same set (so a second plan is empty), and that a removed
//! route and a stray one are repaired. Finally it checks that `Route`'s `Ord` is the kernel's
//! dump order on entries that share an address. Namespaces are named `rt-<pid>-...` and removed
//! by a guard, also when the test fails.

use std::io::Write;
use std::process::{Command, Stdio};

use routing::{
    Cluster, Encapsulation, cluster_from_objects, diff, node_table, parse_ip_json, plan, veth_name,
    vxlan_plan,
};
use serde_json::{Value, json};

/// Deletes the namespaces it names when dropped.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// Runs a command and returns its stdout; fails the test with its stderr otherwise.
#[track_caller]
fn run(program: &str, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run {program}: {error}"));
    if let Some(mut pipe) = child.stdin.take() {
        pipe.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{}\nstdin:\n{}",
        String::from_utf8_lossy(&output.stderr),
        stdin.unwrap_or("")
    );
    String::from_utf8(output.stdout).unwrap()
}

#[track_caller]
fn ip(namespace: &str, args: &[&str]) -> String {
    let mut full = vec!["-n", namespace];
    full.extend_from_slice(args);
    run("ip", &full, None)
}

#[track_caller]
fn ip_batch(namespace: &str, lines: &[String]) {
    if !lines.is_empty() {
        run(
            "ip",
            &["-n", namespace, "-batch", "-"],
            Some(&lines.join("\n")),
        );
    }
}

#[track_caller]
fn bridge_batch(namespace: &str, lines: &[String]) {
    if !lines.is_empty() {
        run(
            "ip",
            &["netns", "exec", namespace, "bridge", "-batch", "-"],
            Some(&lines.join("\n")),
        );
    }
}

fn kernel_routes(namespace: &str) -> Vec<routing::Route> {
    parse_ip_json(&ip(namespace, &["-j", "route", "show"])).unwrap()
}

/// `ip route` as lines without the trailing space iproute2 writes, and without the `linkdown`
/// and `dead` flags: they describe the device (here a TUN nobody reads, so without carrier),
/// not the route, and the crate leaves them out of a route's identity.
fn kernel_text(namespace: &str) -> Vec<String> {
    ip(namespace, &["route", "show"])
        .lines()
        .map(|line| {
            line.split_whitespace()
                .filter(|word| !matches!(*word, "linkdown" | "dead"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0")
}

const LOCAL_PODS: [(&str, &str); 3] = [
    ("nginx-deployment-69df458bc5-2xq7d", "192.168.145.65"),
    ("nginx-deployment-69df458bc5-p8r4w", "192.168.145.66"),
    // Ordinal 0 of the block: its /32 and the block's /26 share an address.
    ("edge", "192.168.145.64"),
];

fn course(ipip_mode: &str, vxlan_mode: &str) -> Cluster {
    let node = |name: &str, address: &str, gateway: &str, tunnel: &str, mac: &str| {
        json!({"metadata": {"name": name, "annotations": {
            "projectcalico.org/IPv4Address": address,
            "projectcalico.org/IPv4IPIPTunnelAddr": tunnel,
            "projectcalico.org/IPv4VXLANTunnelAddr": tunnel,
            "projectcalico.org/IPv4VXLANTunnelMACAddr": mac,
            "kubelab.dev/gateway": gateway}}})
    };
    let block = |cidr: &str, node: &str| json!({"spec": {"cidr": cidr, "affinity": format!("host:{node}")}});
    let pod = |name: &str, node: &str, ip: &str| {
        json!({"metadata": {"namespace": "default", "name": name},
               "spec": {"nodeName": node}, "status": {"phase": "Running", "podIP": ip}})
    };
    let nodes = [
        node(
            "kube-0",
            "10.10.68.222/20",
            "10.10.64.1",
            "192.168.145.64",
            "66:c0:00:00:00:00",
        ),
        node(
            "kube-1",
            "10.10.95.205/20",
            "10.10.80.1",
            "192.168.126.64",
            "66:c1:00:00:00:01",
        ),
    ];
    let blocks = [
        block("192.168.145.64/26", "kube-0"),
        block("192.168.126.64/26", "kube-1"),
    ];
    let mut pods: Vec<Value> = LOCAL_PODS
        .iter()
        .map(|(name, address)| pod(name, "kube-0", address))
        .collect();
    pods.push(pod(
        "nginx-deployment-69df458bc5-cg4mk",
        "kube-1",
        "192.168.126.80",
    ));
    // kube-1 borrowed from kube-0's block: kube-0 needs a /32 over its own blackhole.
    pods.push(pod("borrower", "kube-1", "192.168.145.100"));
    let pool =
        json!({"spec": {"cidr": "192.168.0.0/16", "ipipMode": ipip_mode, "vxlanMode": vxlan_mode}});
    cluster_from_objects(&nodes, &blocks, &[pool], &pods)
}

/// Programs `cluster`'s table for kube-0 into `node` and checks the kernel against it.
#[track_caller]
fn converge_and_check(node: &str, cluster: &Cluster) {
    let desired = node_table(cluster, "kube-0");
    ip_batch(node, &plan(&desired, &kernel_routes(node)));
    let commands = vxlan_plan(cluster, "kube-0");
    ip_batch(node, &commands.ip_batch);
    bridge_batch(node, &commands.bridge_batch);

    let predicted: Vec<String> = desired.iter().map(ToString::to_string).collect();
    assert_eq!(
        kernel_text(node),
        predicted,
        "{:?}: `ip route` differs from the prediction",
        cluster.encapsulation
    );
    let actual = kernel_routes(node);
    assert!(
        diff(&desired, &actual).is_empty(),
        "{}",
        diff(&desired, &actual)
    );
    assert_eq!(plan(&desired, &actual), Vec::<String>::new());
}

#[test]
fn kernel_agrees_with_the_prediction() {
    assert!(
        is_root(),
        "this test programs routes in network namespaces and must run as root"
    );
    let prefix = format!("rt-{}", std::process::id());
    let node = format!("{prefix}-k0");
    let peer = format!("{prefix}-k1");
    let _guard = Namespaces(vec![node.clone(), peer.clone()]);
    for namespace in [&node, &peer] {
        run("ip", &["netns", "add", namespace], None);
        ip(namespace, &["link", "set", "lo", "up"]);
    }

    // The underlay, as the lab builds it: this is not the agent's to program.
    ip(
        &node,
        &[
            "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &peer,
        ],
    );
    ip(&node, &["addr", "add", "10.10.68.222/20", "dev", "eth0"]);
    ip(&peer, &["addr", "add", "10.10.95.205/20", "dev", "eth0"]);
    ip(&node, &["link", "set", "eth0", "up"]);
    ip(&peer, &["link", "set", "eth0", "up"]);
    ip(
        &node,
        &[
            "route",
            "add",
            "default",
            "via",
            "10.10.64.1",
            "dev",
            "eth0",
        ],
    );

    // The devices Calico's routes go through.
    ip(&node, &["tuntap", "add", "dev", "tunl0", "mode", "tun"]);
    ip(&node, &["link", "set", "tunl0", "up"]);
    ip(
        &node,
        &[
            "link",
            "add",
            "vxlan.calico",
            "type",
            "vxlan",
            "id",
            "4096",
            "dstport",
            "4789",
            "dev",
            "eth0",
            "nolearning",
        ],
    );
    ip(&node, &["link", "set", "vxlan.calico", "up"]);
    for (index, (pod, _)) in LOCAL_PODS.iter().enumerate() {
        let veth = veth_name("default", pod);
        let pod_end = format!("pod{index}");
        ip(
            &node,
            &[
                "link", "add", &veth, "type", "veth", "peer", "name", &pod_end,
            ],
        );
        ip(&node, &["link", "set", &pod_end, "up"]);
        ip(&node, &["link", "set", &veth, "up"]);
    }

    // Each encapsulation in turn, each converged from the previous one's table.
    let modes = [
        ("Always", "Never", Encapsulation::Ipip),
        ("Never", "Always", Encapsulation::Vxlan),
        ("Never", "Never", Encapsulation::None),
        ("CrossSubnet", "Never", Encapsulation::CrossSubnet),
        ("Never", "CrossSubnet", Encapsulation::VxlanCrossSubnet),
        ("Always", "Never", Encapsulation::Ipip),
    ];
    for (ipip_mode, vxlan_mode, expected) in modes {
        let cluster = course(ipip_mode, vxlan_mode);
        assert_eq!(cluster.encapsulation, expected);
        converge_and_check(&node, &cluster);
    }
    let neighbours = ip(&node, &["neigh", "show", "dev", "vxlan.calico"]);
    assert!(
        neighbours.contains("192.168.126.64 lladdr 66:c1:00:00:00:01 PERMANENT"),
        "{neighbours}"
    );
    let fdb = run(
        "ip",
        &[
            "netns",
            "exec",
            &node,
            "bridge",
            "fdb",
            "show",
            "dev",
            "vxlan.calico",
        ],
        None,
    );
    assert!(
        fdb.contains("66:c1:00:00:00:01 dst 10.10.95.205 self permanent"),
        "{fdb}"
    );

    // Break the table: lose a pod route, gain a stray blackhole and a stray workload route.
    let cluster = course("Always", "Never");
    let desired = node_table(&cluster, "kube-0");
    let lost_pod_veth = veth_name("default", LOCAL_PODS[0].0);
    ip(
        &node,
        &["route", "del", "192.168.145.65", "dev", &lost_pod_veth],
    );
    ip(
        &node,
        &["route", "add", "blackhole", "192.168.1.0/26", "proto", "80"],
    );
    ip(
        &node,
        &[
            "route",
            "add",
            "192.168.145.99",
            "dev",
            &lost_pod_veth,
            "scope",
            "link",
        ],
    );
    let repair = plan(&desired, &kernel_routes(&node));
    assert_eq!(
        repair,
        [
            "route del blackhole 192.168.1.0/26 proto 80".to_owned(),
            format!("route del 192.168.145.99 dev {lost_pod_veth} proto boot scope link"),
            format!("route replace 192.168.145.65 dev {lost_pod_veth} scope link"),
        ]
    );
    converge_and_check(&node, &cluster);

    // The kernel's dump order on entries sharing an address (same prefix: metric ascending;
    // same address: longer prefix first, so 0.0.0.0/8 precedes default) is `Route`'s `Ord`.
    for route in [
        "0.0.0.0/8 via 10.10.64.1 dev eth0",
        "192.168.145.64/28 dev eth0 proto static scope link",
        "192.168.145.64/27 dev eth0 proto static scope link metric 5",
        "192.168.145.64/27 dev eth0 proto static scope link metric 3",
    ] {
        let args: Vec<&str> = route.split(' ').collect();
        let mut full = vec!["route", "add"];
        full.extend(args);
        ip(&node, &full);
    }
    let dumped = kernel_routes(&node);
    let mut sorted = dumped.clone();
    sorted.sort();
    assert_eq!(dumped, sorted, "the kernel dumped another order");
    let text = kernel_text(&node);
    assert_eq!(text[0], "0.0.0.0/8 via 10.10.64.1 dev eth0");
    assert_eq!(text[1], "default via 10.10.64.1 dev eth0");
}
