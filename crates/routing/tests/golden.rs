//! Golden tables for the course's own topology ("Routing Traffic with Calico"): kube-0
//! 10.10.68.222/20 owning 192.168.145.64/26, kube-1 10.10.95.205/20 owning 192.168.126.64/26,
//! in every encapsulation, built from API object JSON as the agent receives it. The expected
//! veth names were computed independently with Python's hashlib; `cali2d894f7a3f6` is the one
//! the course itself prints for pod `nginx-deployment-69df458bc5-cg4mk`.

use routing::{
    Cluster, Destination, Encapsulation, Protocol, Route, Scope, VxlanPeer, agent_plan,
    cluster_from_objects, diff, ipip_peers, node_table, plan, render, vxlan_peers, vxlan_plan,
};
use serde_json::{Value, json};
use std::net::Ipv4Addr;

/// Compares a table with the expected `ip route` text; expected lines may be indented and
/// trailing spaces (which `ip route` prints) are ignored.
#[track_caller]
fn check(routes: &[Route], expected: &str) {
    let expected: String = expected
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| format!("{line}\n"))
        .collect();
    let actual = render(routes);
    assert_eq!(
        actual, expected,
        "\n--- actual ---\n{actual}--- expected ---\n{expected}"
    );
}

fn node(name: &str, address: &str, gateway: &str, tunnel: &str, mac: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "annotations": {
            "projectcalico.org/IPv4Address": address,
            "projectcalico.org/IPv4IPIPTunnelAddr": tunnel,
            "projectcalico.org/IPv4VXLANTunnelAddr": tunnel,
            "projectcalico.org/IPv4VXLANTunnelMACAddr": mac,
            "kubelab.dev/gateway": gateway,
        }},
    })
}

fn block(cidr: &str, node: &str) -> Value {
    json!({
        "apiVersion": "crd.projectcalico.org/v1", "kind": "IPAMBlock",
        "metadata": {"name": cidr.replace(['.', '/'], "-")},
        "spec": {"cidr": cidr, "affinity": format!("host:{node}"), "allocations": [], "unallocated": []},
    })
}

fn pod(name: &str, node: &str, ip: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": "default", "name": name},
        "spec": {"nodeName": node, "containers": [{"name": "nginx", "image": "nginx:1.7.9"}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    })
}

fn pool(ipip: &str, vxlan: &str) -> Value {
    json!({
        "apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool",
        "metadata": {"name": "default-ipv4-ippool"},
        "spec": {"cidr": "192.168.0.0/16", "blockSize": 26, "ipipMode": ipip, "vxlanMode": vxlan,
                 "natOutgoing": true, "nodeSelector": "all()"},
    })
}

/// The course's two nodes and five nginx pods, under `pool`.
fn course(pool: Value) -> Cluster {
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
    let pods = [
        pod(
            "nginx-deployment-69df458bc5-2xq7d",
            "kube-0",
            "192.168.145.65",
        ),
        pod(
            "nginx-deployment-69df458bc5-p8r4w",
            "kube-0",
            "192.168.145.66",
        ),
        pod(
            "nginx-deployment-69df458bc5-hx2kz",
            "kube-1",
            "192.168.126.78",
        ),
        pod(
            "nginx-deployment-69df458bc5-vn6bt",
            "kube-1",
            "192.168.126.79",
        ),
        pod(
            "nginx-deployment-69df458bc5-cg4mk",
            "kube-1",
            "192.168.126.80",
        ),
    ];
    cluster_from_objects(&nodes, &blocks, &[pool], &pods)
}

/// The course's cluster plus kube-2, on kube-0's subnet, owning 192.168.200.0/26.
fn three_nodes(pool: Value) -> Cluster {
    let mut cluster = course(pool);
    let more = cluster_from_objects(
        &[node(
            "kube-2",
            "10.10.70.10/20",
            "10.10.64.1",
            "192.168.200.0",
            "66:c2:00:00:00:02",
        )],
        &[block("192.168.200.0/26", "kube-2")],
        &[],
        &[pod("web-2", "kube-2", "192.168.200.1")],
    );
    cluster.nodes.extend(more.nodes);
    cluster.blocks.extend(more.blocks);
    cluster.pods.extend(more.pods);
    cluster
}

fn ip(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

#[test]
fn ipip_matches_the_course() {
    let cluster = course(pool("Always", "Never"));
    assert_eq!(cluster.encapsulation, Encapsulation::Ipip);
    // The course's kube-0 table, less docker0, with Felix's `proto 80` for BIRD's `proto bird`.
    check(
        &node_table(&cluster, "kube-0"),
        "
        default via 10.10.64.1 dev eth0
        10.10.64.0/20 dev eth0 proto kernel scope link src 10.10.68.222
        192.168.126.64/26 via 10.10.95.205 dev tunl0 proto 80 onlink
        blackhole 192.168.145.64/26 proto 80
        192.168.145.65 dev calib00a7814dc1 scope link
        192.168.145.66 dev calic2d8e8d0a26 scope link
        ",
    );
    check(
        &node_table(&cluster, "kube-1"),
        "
        default via 10.10.80.1 dev eth0
        10.10.80.0/20 dev eth0 proto kernel scope link src 10.10.95.205
        blackhole 192.168.126.64/26 proto 80
        192.168.126.78 dev cali4a52bee02a7 scope link
        192.168.126.79 dev cali01d6a6d662c scope link
        192.168.126.80 dev cali2d894f7a3f6 scope link
        192.168.145.64/26 via 10.10.68.222 dev tunl0 proto 80 onlink
        ",
    );
}

#[test]
fn vxlan_routes_via_the_peers_tunnel_address() {
    let cluster = course(pool("Never", "Always"));
    assert_eq!(cluster.encapsulation, Encapsulation::Vxlan);
    check(
        &node_table(&cluster, "kube-0"),
        "
        default via 10.10.64.1 dev eth0
        10.10.64.0/20 dev eth0 proto kernel scope link src 10.10.68.222
        192.168.126.64/26 via 192.168.126.64 dev vxlan.calico onlink
        blackhole 192.168.145.64/26 proto 80
        192.168.145.65 dev calib00a7814dc1 scope link
        192.168.145.66 dev calic2d8e8d0a26 scope link
        ",
    );
    check(
        &node_table(&cluster, "kube-1"),
        "
        default via 10.10.80.1 dev eth0
        10.10.80.0/20 dev eth0 proto kernel scope link src 10.10.95.205
        blackhole 192.168.126.64/26 proto 80
        192.168.126.78 dev cali4a52bee02a7 scope link
        192.168.126.79 dev cali01d6a6d662c scope link
        192.168.126.80 dev cali2d894f7a3f6 scope link
        192.168.145.64/26 via 192.168.145.64 dev vxlan.calico onlink
        ",
    );
    assert_eq!(
        vxlan_peers(&cluster, "kube-0"),
        [VxlanPeer {
            node: "kube-1".into(),
            node_ip: ip("10.10.95.205"),
            tunnel_ip: ip("192.168.126.64"),
            mac: "66:c1:00:00:00:01".into(),
        }]
    );
    let commands = vxlan_plan(&cluster, "kube-1");
    assert_eq!(
        commands.ip_batch,
        ["neigh replace 192.168.145.64 lladdr 66:c0:00:00:00:00 dev vxlan.calico nud permanent"]
    );
    assert_eq!(
        commands.bridge_batch,
        ["fdb replace 66:c0:00:00:00:00 dev vxlan.calico dst 10.10.68.222 self permanent"]
    );
    assert!(ipip_peers(&cluster, "kube-0").is_empty());
}

#[test]
fn vxlan_skips_peers_without_a_tunnel_address() {
    let mut cluster = course(pool("Never", "Always"));
    for node in &mut cluster.nodes {
        node.vxlan_tunnel = None;
    }
    check(
        &node_table(&cluster, "kube-0"),
        "
        default via 10.10.64.1 dev eth0
        10.10.64.0/20 dev eth0 proto kernel scope link src 10.10.68.222
        blackhole 192.168.145.64/26 proto 80
        192.168.145.65 dev calib00a7814dc1 scope link
        192.168.145.66 dev calic2d8e8d0a26 scope link
        ",
    );
    assert!(vxlan_peers(&cluster, "kube-0").is_empty());
}

#[test]
fn no_encapsulation_routes_over_eth0() {
    let cluster = course(pool("Never", "Never"));
    assert_eq!(cluster.encapsulation, Encapsulation::None);
    check(
        &node_table(&cluster, "kube-0"),
        "
        default via 10.10.64.1 dev eth0
        10.10.64.0/20 dev eth0 proto kernel scope link src 10.10.68.222
        192.168.126.64/26 via 10.10.95.205 dev eth0 proto 80 onlink
        blackhole 192.168.145.64/26 proto 80
        192.168.145.65 dev calib00a7814dc1 scope link
        192.168.145.66 dev calic2d8e8d0a26 scope link
        ",
    );
    check(
        &node_table(&cluster, "kube-1"),
        "
        default via 10.10.80.1 dev eth0
        10.10.80.0/20 dev eth0 proto kernel scope link src 10.10.95.205
        blackhole 192.168.126.64/26 proto 80
        192.168.126.78 dev cali4a52bee02a7 scope link
        192.168.126.79 dev cali01d6a6d662c scope link
        192.168.126.80 dev cali2d894f7a3f6 scope link
        192.168.145.64/26 via 10.10.68.222 dev eth0 proto 80 onlink
        ",
    );
    assert!(vxlan_peers(&cluster, "kube-0").is_empty());
}

#[test]
fn cross_subnet_encapsulates_only_across_subnets() {
    // The course's nodes sit on different /20s, so CrossSubnet tunnels between them...
    let cluster = course(pool("CrossSubnet", "Never"));
    assert_eq!(cluster.encapsulation, Encapsulation::CrossSubnet);
    assert_eq!(
        node_table(&cluster, "kube-0"),
        node_table(&course(pool("Always", "Never")), "kube-0")
    );
    // ...while kube-2, on kube-0's subnet, is reached directly.
    let cluster = three_nodes(pool("CrossSubnet", "Never"));
    check(
        &node_table(&cluster, "kube-0"),
        "
        default via 10.10.64.1 dev eth0
        10.10.64.0/20 dev eth0 proto kernel scope link src 10.10.68.222
        192.168.126.64/26 via 10.10.95.205 dev tunl0 proto 80 onlink
        blackhole 192.168.145.64/26 proto 80
        192.168.145.65 dev calib00a7814dc1 scope link
        192.168.145.66 dev calic2d8e8d0a26 scope link
        192.168.200.0/26 via 10.10.70.10 dev eth0 proto 80 onlink
        ",
    );
    check(
        &node_table(&cluster, "kube-1"),
        "
        default via 10.10.80.1 dev eth0
        10.10.80.0/20 dev eth0 proto kernel scope link src 10.10.95.205
        blackhole 192.168.126.64/26 proto 80
        192.168.126.78 dev cali4a52bee02a7 scope link
        192.168.126.79 dev cali01d6a6d662c scope link
        192.168.126.80 dev cali2d894f7a3f6 scope link
        192.168.145.64/26 via 10.10.68.222 dev tunl0 proto 80 onlink
        192.168.200.0/26 via 10.10.70.10 dev tunl0 proto 80 onlink
        ",
    );
    assert_eq!(
        ipip_peers(&cluster, "kube-0"),
        [(ip("192.168.126.64"), 26, ip("10.10.95.205"))]
    );
    assert_eq!(
        ipip_peers(&cluster, "kube-1"),
        [
            (ip("192.168.145.64"), 26, ip("10.10.68.222")),
            (ip("192.168.200.0"), 26, ip("10.10.70.10")),
        ]
    );
}

#[test]
fn vxlan_cross_subnet_encapsulates_with_vxlan() {
    let cluster = three_nodes(pool("Never", "CrossSubnet"));
    assert_eq!(cluster.encapsulation, Encapsulation::VxlanCrossSubnet);
    check(
        &node_table(&cluster, "kube-2"),
        "
        default via 10.10.64.1 dev eth0
        10.10.64.0/20 dev eth0 proto kernel scope link src 10.10.70.10
        192.168.126.64/26 via 192.168.126.64 dev vxlan.calico onlink
        192.168.145.64/26 via 10.10.68.222 dev eth0 proto 80 onlink
        blackhole 192.168.200.0/26 proto 80
        192.168.200.1 dev cali9fb0db7f13e scope link
        ",
    );
    let peers: Vec<String> = vxlan_peers(&cluster, "kube-2")
        .into_iter()
        .map(|peer| peer.node)
        .collect();
    assert_eq!(peers, ["kube-0", "kube-1"]);
}

#[test]
fn borrowed_addresses_get_host_routes_everywhere() {
    // kube-0 ran out of its block and borrowed 192.168.126.90 from kube-1's block.
    let mut cluster = three_nodes(pool("Always", "Never"));
    cluster.pods.extend(
        cluster_from_objects(
            &[],
            &[],
            &[],
            &[pod("borrower", "kube-0", "192.168.126.90")],
        )
        .pods,
    );
    // The borrower's own node: its /32 to the veth beats kube-1's block route.
    check(
        &node_table(&cluster, "kube-0"),
        "
        default via 10.10.64.1 dev eth0
        10.10.64.0/20 dev eth0 proto kernel scope link src 10.10.68.222
        192.168.126.64/26 via 10.10.95.205 dev tunl0 proto 80 onlink
        192.168.126.90 dev cali78f8bf1c0b4 scope link
        blackhole 192.168.145.64/26 proto 80
        192.168.145.65 dev calib00a7814dc1 scope link
        192.168.145.66 dev calic2d8e8d0a26 scope link
        192.168.200.0/26 via 10.10.70.10 dev tunl0 proto 80 onlink
        ",
    );
    // The lender: the /32 back to kube-0 beats its own blackhole.
    check(
        &node_table(&cluster, "kube-1"),
        "
        default via 10.10.80.1 dev eth0
        10.10.80.0/20 dev eth0 proto kernel scope link src 10.10.95.205
        blackhole 192.168.126.64/26 proto 80
        192.168.126.78 dev cali4a52bee02a7 scope link
        192.168.126.79 dev cali01d6a6d662c scope link
        192.168.126.80 dev cali2d894f7a3f6 scope link
        192.168.126.90 via 10.10.68.222 dev tunl0 proto 80 onlink
        192.168.145.64/26 via 10.10.68.222 dev tunl0 proto 80 onlink
        192.168.200.0/26 via 10.10.70.10 dev tunl0 proto 80 onlink
        ",
    );
    // A bystander: the /32 to kube-0 beats the block route to kube-1.
    let bystander = node_table(&cluster, "kube-2");
    assert!(
        bystander.contains(
            &Route::to(Destination::host(ip("192.168.126.90")))
                .via(ip("10.10.68.222"))
                .dev("tunl0")
                .proto(Protocol::FELIX)
                .onlink()
        ),
        "{}",
        render(&bystander)
    );
    assert!(ipip_peers(&cluster, "kube-2").contains(&(
        ip("192.168.126.90"),
        32,
        ip("10.10.68.222")
    )));
}

#[test]
fn unknown_owners_and_nodes_get_no_routes() {
    let mut cluster = course(pool("Always", "Never"));
    cluster
        .blocks
        .extend(cluster_from_objects(&[], &[block("192.168.7.0/26", "gone")], &[], &[]).blocks);
    cluster
        .pods
        .extend(cluster_from_objects(&[], &[], &[], &[pod("orphan", "gone", "192.168.9.9")]).pods);
    assert_eq!(
        node_table(&cluster, "kube-0"),
        node_table(&course(pool("Always", "Never")), "kube-0")
    );
    // A node the cluster does not know keeps its Calico routes but has no underlay.
    check(
        &node_table(&cluster, "gone"),
        "
        blackhole 192.168.7.0/26 proto 80
        192.168.9.9 dev cali999947ee736 scope link
        192.168.126.64/26 via 10.10.95.205 dev tunl0 proto 80 onlink
        192.168.145.64/26 via 10.10.68.222 dev tunl0 proto 80 onlink
        ",
    );
}

#[test]
fn a_destination_holds_one_route() {
    // A /32 block whose only address is a local pod: the pod's route wins over the blackhole.
    let cluster = cluster_from_objects(
        &[node(
            "kube-0",
            "10.10.68.222/20",
            "10.10.64.1",
            "192.168.145.64",
            "66:c0:00:00:00:00",
        )],
        &[block("192.168.50.7/32", "kube-0")],
        &[pool("Always", "Never")],
        &[pod("single", "kube-0", "192.168.50.7")],
    );
    let table = node_table(&cluster, "kube-0");
    let at_pod: Vec<&Route> = table
        .iter()
        .filter(|route| route.destination == Destination::host(ip("192.168.50.7")))
        .collect();
    assert_eq!(at_pod.len(), 1, "{}", render(&table));
    assert_eq!(at_pod[0].scope, Scope::LINK);
}

#[test]
fn diff_and_plan_touch_only_managed_routes() {
    let cluster = course(pool("Always", "Never"));
    let desired = node_table(&cluster, "kube-0");
    assert!(diff(&desired, &desired).is_empty());
    assert!(plan(&desired, &desired).is_empty());

    // The kernel lacks one pod route and the default route, has a stray managed route, an
    // unmanaged docker0 route, and the remote block through the wrong device.
    let mut actual: Vec<Route> = desired
        .iter()
        .filter(|route| {
            let text = route.to_string();
            !text.starts_with("default")
                && !text.starts_with("192.168.145.66")
                && !text.starts_with("192.168.126.64/26")
        })
        .cloned()
        .collect();
    actual.push(
        Route::to("172.17.0.0/16".parse().unwrap())
            .dev("docker0")
            .proto(Protocol::KERNEL)
            .scope(Scope::LINK)
            .src(ip("172.17.0.1")),
    );
    actual.push(
        Route::to(Destination::host(ip("192.168.145.70")))
            .dev("cali0123456789a")
            .scope(Scope::LINK),
    );
    actual.push(
        Route::to("192.168.126.64/26".parse().unwrap())
            .via(ip("10.10.95.205"))
            .dev("eth0")
            .proto(Protocol::FELIX)
            .onlink(),
    );

    assert_eq!(
        diff(&desired, &actual).to_string(),
        "+ default via 10.10.64.1 dev eth0\n\
         - 172.17.0.0/16 dev docker0 proto kernel scope link src 172.17.0.1\n\
         - 192.168.126.64/26 via 10.10.95.205 dev eth0 proto 80 onlink\n\
         + 192.168.126.64/26 via 10.10.95.205 dev tunl0 proto 80 onlink\n\
         + 192.168.145.66 dev calic2d8e8d0a26 scope link\n\
         - 192.168.145.70 dev cali0123456789a scope link\n"
    );
    // Deletes first; the wrong-device block route is overwritten by its replace rather than
    // deleted; the default route and docker0 are the underlay's business.
    assert_eq!(
        plan(&desired, &actual),
        [
            "route del 192.168.145.70 dev cali0123456789a proto boot scope link",
            "route replace 192.168.126.64/26 via 10.10.95.205 dev tunl0 proto 80 onlink",
            "route replace 192.168.145.66 dev calic2d8e8d0a26 scope link",
        ]
    );
    // The agent's plan adds workload routes but leaves a stray one to its veth's teardown.
    assert_eq!(
        agent_plan(&desired, &actual),
        [
            "route replace 192.168.126.64/26 via 10.10.95.205 dev tunl0 proto 80 onlink",
            "route replace 192.168.145.66 dev calic2d8e8d0a26 scope link",
        ]
    );
}

#[test]
fn plan_writes_the_briefs_example_commands() {
    let cluster = course(pool("Always", "Never"));
    let lines = plan(&node_table(&cluster, "kube-0"), &[]);
    assert_eq!(
        lines,
        [
            "route replace 192.168.126.64/26 via 10.10.95.205 dev tunl0 proto 80 onlink",
            "route replace blackhole 192.168.145.64/26 proto 80",
            "route replace 192.168.145.65 dev calib00a7814dc1 scope link",
            "route replace 192.168.145.66 dev calic2d8e8d0a26 scope link",
        ]
    );
}

/// Marks every node of `cluster` as running BIRD in AS 64512 (`--routing bgp`), except `skip`.
fn with_bird(cluster: &mut Cluster, skip: &str) {
    for node in &mut cluster.nodes {
        if node.name != skip {
            node.bgp_as = Some(64512);
        }
    }
}

#[test]
fn bgp_routes_are_birds() {
    // kube-0 and kube-2 share 10.10.64.0/20; kube-1 is on its own subnet.
    let mut cluster = three_nodes(pool("Never", "Never"));
    with_bird(&mut cluster, "");
    check(
        &node_table(&cluster, "kube-0"),
        "
        default via 10.10.64.1 dev eth0
        10.10.64.0/20 dev eth0 proto kernel scope link src 10.10.68.222
        192.168.126.64/26 via 10.10.64.1 dev eth0 proto bird
        blackhole 192.168.145.64/26 proto bird
        192.168.145.65 dev calib00a7814dc1 scope link
        192.168.145.66 dev calic2d8e8d0a26 scope link
        192.168.200.0/26 via 10.10.70.10 dev eth0 proto bird
        ",
    );
    // A node without BIRD advertises nothing: kube-0 has no route to kube-2's block.
    let mut cluster = three_nodes(pool("Never", "Never"));
    with_bird(&mut cluster, "kube-2");
    let table = render(&node_table(&cluster, "kube-0"));
    assert!(!table.contains("192.168.200.0/26"), "{table}");
    // ... and kube-2 itself, without BIRD, is programmed by Felix as before.
    assert!(
        render(&node_table(&cluster, "kube-2"))
            .contains("192.168.145.64/26 via 10.10.68.222 dev eth0 proto 80 onlink")
    );
}

#[test]
fn the_agent_never_touches_birds_routes() {
    let mut cluster = three_nodes(pool("Never", "Never"));
    with_bird(&mut cluster, "");
    let desired = node_table(&cluster, "kube-0");
    // The kernel has BIRD's routes but a stale one too, and lacks a pod route.
    let mut actual: Vec<Route> = desired
        .iter()
        .filter(|route| !route.to_string().starts_with("192.168.145.66"))
        .cloned()
        .collect();
    actual.push(
        Route::to("192.168.7.0/26".parse().unwrap())
            .via(ip("10.10.70.11"))
            .dev("eth0")
            .proto(Protocol::BIRD),
    );
    assert_eq!(
        agent_plan(&desired, &actual),
        ["route replace 192.168.145.66 dev calic2d8e8d0a26 scope link"]
    );
    // `routes --check` still sees every difference.
    assert_eq!(
        diff(&desired, &actual).to_string(),
        "- 192.168.7.0/26 via 10.10.70.11 dev eth0 proto bird\n\
         + 192.168.145.66 dev calic2d8e8d0a26 scope link\n"
    );
    // The AS number is read from Calico's node annotation.
    let parsed = cluster_from_objects(
        &[json!({"metadata": {"name": "n", "annotations": {
            "projectcalico.org/IPv4Address": "10.0.0.1/24",
            "projectcalico.org/ASNumber": "64512"}}})],
        &[],
        &[],
        &[],
    );
    assert_eq!(parsed.nodes[0].bgp_as, Some(64512));
}
