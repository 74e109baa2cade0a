//! Golden outputs of the BGP control plane for a three-node lab on one subnet (kube-0
//! 10.10.68.222, kube-1 10.10.68.223, kube-2 10.10.68.224, all in 10.10.64.0/20) with the
//! course's blocks, and `birdc` output captured from BIRD 2.0.12 on this machine.

use bgp::{
    BgpError, GlobalPeer, PeerType, bird_config, node_status, parse_protocols, parse_routes,
    peer_router_config, peer_statuses, pool_cidrs, status_table,
};
use routing::{Cluster, cluster_from_objects};
use serde_json::{Value, json};
use std::net::Ipv4Addr;

fn node(name: &str, address: &str, bgp: bool) -> Value {
    let mut annotations = json!({
        "projectcalico.org/IPv4Address": address,
        "kubelab.dev/gateway": "10.10.64.1",
    });
    if bgp {
        annotations["projectcalico.org/ASNumber"] = json!("64512");
    }
    json!({"apiVersion": "v1", "kind": "Node",
           "metadata": {"name": name, "annotations": annotations}})
}

fn block(cidr: &str, node: &str) -> Value {
    json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "IPAMBlock",
           "metadata": {"name": cidr.replace(['.', '/'], "-")},
           "spec": {"cidr": cidr, "affinity": format!("host:{node}")}})
}

fn pools() -> Vec<Value> {
    vec![
        json!({"metadata": {"name": "default-ipv4-ippool"},
               "spec": {"cidr": "192.168.0.0/16", "ipipMode": "Never", "vxlanMode": "Never"}}),
        json!({"metadata": {"name": "off"}, "spec": {"cidr": "10.244.0.0/16", "disabled": true}}),
        json!({"metadata": {"name": "v6"}, "spec": {"cidr": "fd00::/48"}}),
    ]
}

/// kube-0 and kube-1 run BIRD; kube-2 has registered but not yet started BIRD.
fn cluster() -> Cluster {
    cluster_from_objects(
        &[
            node("kube-1", "10.10.68.223/20", true),
            node("kube-0", "10.10.68.222/20", true),
            node("kube-2", "10.10.68.224/20", false),
        ],
        &[
            block("192.168.145.64/26", "kube-0"),
            block("192.168.126.64/26", "kube-1"),
            block("192.168.7.0/26", "kube-0"),
            block("192.168.200.0/26", "kube-2"),
        ],
        &pools(),
        &[],
    )
}

/// Compares `actual` with `tests/golden/<name>`; `BGP_BLESS=1` rewrites the file instead (then
/// review the diff before keeping it).
#[track_caller]
fn golden(name: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("BGP_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        actual,
        expected,
        "\n--- actual ---\n{actual}--- expected ({}) ---\n{expected}",
        path.display()
    );
}

fn ip(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

#[test]
fn global_peers_read_and_print_as_address_and_as() {
    let peer: GlobalPeer = "10.10.64.2:64513".parse().unwrap();
    assert_eq!(
        peer,
        GlobalPeer {
            ip: ip("10.10.64.2"),
            as_number: 64513
        }
    );
    assert_eq!(peer.to_string(), "10.10.64.2:64513");
    for bad in ["10.10.64.2", "x:1", "10.10.64.2:", "10.10.64.2:99999999999"] {
        assert_eq!(
            bad.parse::<GlobalPeer>(),
            Err(BgpError::InvalidPeer(bad.into()))
        );
    }
}

#[test]
fn pools_are_the_enabled_ipv4_ones() {
    let cidrs: Vec<String> = pool_cidrs(&pools()).iter().map(|d| d.to_string()).collect();
    assert_eq!(cidrs, ["192.168.0.0/16"]);
}

#[test]
fn bird_config_of_kube_0() {
    let peers = [GlobalPeer {
        ip: ip("10.10.64.2"),
        as_number: 64513,
    }];
    let text = bird_config(&cluster(), "kube-0", &pool_cidrs(&pools()), &peers).unwrap();
    golden("kube-0.bird.conf", &text);
}

#[test]
fn bird_config_of_a_node_without_blocks_or_global_peers() {
    // kube-2 has not started BIRD itself yet (no AS annotation): it still gets a config, in
    // the default AS, meshing with the two nodes that run BIRD.
    let text = bird_config(&cluster(), "kube-2", &pool_cidrs(&pools()), &[]).unwrap();
    golden("kube-2.bird.conf", &text);
    // A node alone has no mesh peers.
    let alone = cluster_from_objects(&[node("solo", "10.0.0.1/24", true)], &[], &pools(), &[]);
    let text = bird_config(&alone, "solo", &[], &[]).unwrap();
    assert!(text.contains("# No other node runs BIRD yet."), "{text}");
    assert!(!text.contains("protocol bgp "), "{text}");
    assert_eq!(
        bird_config(&alone, "ghost", &[], &[]),
        Err(BgpError::UnknownNode("ghost".into()))
    );
}

#[test]
fn external_router_config() {
    let text = peer_router_config(
        ip("10.10.64.2"),
        64513,
        &[
            (ip("10.10.68.223"), 64512),
            (ip("10.10.68.222"), 64512),
            (ip("10.10.64.2"), 64512),
        ],
        &pool_cidrs(&pools()),
    );
    golden("router.bird.conf", &text);
}

/// `birdc show protocols` of kube-0 while kube-2's BIRD is down (BIRD 2.0.12, this machine).
const PROTOCOLS: &str = "\
BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
kernel1    Kernel     master4    up     2026-11-26 19:03:07  
device1    Device     ---        up     2026-11-26 19:03:07  
direct1    Direct     ---        up     2026-11-26 19:03:07  
static1    Static     master4    up     2026-11-26 19:03:07  
Mesh_10_10_68_223 BGP        ---        up     2026-11-26 19:03:08  Established   
Mesh_10_10_68_224 BGP        ---        start  2026-11-26 19:03:13  Active        Socket: Connection refused
Global_10_10_64_2 BGP        ---        up     2026-11-26 19:03:09  Established   
";

#[test]
fn parses_show_protocols() {
    let protocols = parse_protocols(PROTOCOLS).unwrap();
    assert_eq!(protocols.len(), 7);
    assert_eq!(protocols[0].name, "kernel1");
    assert_eq!(protocols[0].table, "master4");
    assert_eq!(protocols[0].since, "2026-11-26 19:03:07");
    assert_eq!(protocols[0].info, "");
    assert_eq!(protocols[5].state, "start");
    assert_eq!(protocols[5].info, "Active Socket: Connection refused");
    // BIRD's default time format prints only the time of day.
    let short =
        parse_protocols("static1    Static     master4    up     19:03:07.072  \n").unwrap();
    assert_eq!(short[0].since, "19:03:07.072");
    assert_eq!(
        parse_protocols("syntax error, unexpected CF_SYM_UNDEFINED\n"),
        Err(BgpError::Birdc(
            "syntax error, unexpected CF_SYM_UNDEFINED".into()
        ))
    );
    assert!(matches!(
        parse_protocols("BIRD 2.0.12 ready.\nonly three fields\n"),
        Err(BgpError::Unparsable { line: 2, .. })
    ));
}

#[test]
fn status_like_calicoctl() {
    let peers = peer_statuses(&parse_protocols(PROTOCOLS).unwrap());
    assert_eq!(peers.len(), 3);
    assert_eq!(peers[2].peer_type, PeerType::Global);
    assert!(peers[0].is_established() && !peers[1].is_established());
    golden("status.txt", &status_table(&peers));
    let protocols = parse_protocols(PROTOCOLS).unwrap();
    let text = node_status("kube-0", ip("10.10.68.222"), Some(&protocols));
    assert!(text.starts_with("Node kube-0 (10.10.68.222): BIRD is running.\n\nIPv4 BGP status\n+"));
    assert_eq!(
        node_status("kube-0", ip("10.10.68.222"), None),
        "Node kube-0 (10.10.68.222): BIRD is not running.\n"
    );
    assert_eq!(status_table(&[]), "No IPv4 peers found.\n");
}

#[test]
fn parses_show_route() {
    // kube-0's table, then the external router's (`show route` there).
    let text = "\
BIRD 2.0.12 ready.
Table master4:
192.168.126.64/26    unicast [Mesh_10_10_68_223 19:03:08.818] * (100) [i]
\tvia 10.10.68.223 on eth0
192.168.145.64/26    blackhole [static1 19:03:07.072] * (200)
10.10.64.0/20        unicast [direct1 19:03:07.077] * (240)
\tdev eth0
                     unicast [kernel1 19:03:07.077] (10)
\tdev eth0
192.168.200.0/26     unicast [Mesh_10_10_68_224 19:03:20.001] * (100) [i]
\tvia 10.10.68.224 on eth0
\tType: BGP univ
\tBGP.origin: IGP
";
    let routes = parse_routes(text).unwrap();
    let summary: Vec<String> = routes
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {} {:?} {:?}",
                r.prefix, r.kind, r.protocol, r.primary, r.next_hop, r.interface
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            "192.168.126.64/26 unicast Mesh_10_10_68_223 true Some(10.10.68.223) Some(\"eth0\")",
            "192.168.145.64/26 blackhole static1 true None None",
            "10.10.64.0/20 unicast direct1 true None Some(\"eth0\")",
            "10.10.64.0/20 unicast kernel1 false None Some(\"eth0\")",
            "192.168.200.0/26 unicast Mesh_10_10_68_224 true Some(10.10.68.224) Some(\"eth0\")",
        ]
    );
    assert!(matches!(
        parse_routes("not-a-prefix unicast [x]\n"),
        Err(BgpError::Unparsable { line: 1, .. })
    ));
    assert!(matches!(
        parse_routes("\tvia 10.0.0.1 on eth0\n"),
        Err(BgpError::Unparsable { .. })
    ));
    assert!(
        parse_routes("Unable to connect to server control socket (/x): No such file\n").is_err()
    );
}
