//! The real BIRD (Debian's `bird2`, which `scripts/setup` installs) accepts every configuration
//! this crate renders: `bird -p` parses a file and exits. Fails, not skips, without BIRD.

use bgp::{GlobalPeer, bird_config, peer_router_config};
use routing::cluster_from_objects;
use serde_json::json;

fn bird_parses(text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bird.conf");
    std::fs::write(&path, text).unwrap();
    let output = std::process::Command::new("bird")
        .arg("-p")
        .arg("-c")
        .arg(&path)
        .output()
        .expect("`bird` must be installed (apt-get install bird2, or scripts/setup)");
    assert!(
        output.status.success(),
        "bird rejects:\n{text}\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn bird_accepts_what_we_render() {
    let node = |name: &str, ip: &str| {
        json!({"metadata": {"name": name, "annotations": {
            "projectcalico.org/IPv4Address": ip, "projectcalico.org/ASNumber": "64512"}}})
    };
    let block = |cidr: &str, node: &str| json!({"spec": {"cidr": cidr, "affinity": format!("host:{node}")}, "metadata": {"name": "b"}});
    let cluster = cluster_from_objects(
        &[node("a", "10.0.0.1/24"), node("b", "10.0.0.2/24")],
        &[block("192.168.0.0/26", "a"), block("192.168.0.64/26", "b")],
        &[],
        &[],
    );
    let pools = ["192.168.0.0/16".parse().unwrap()];
    let peers = [GlobalPeer {
        ip: "10.0.0.250".parse().unwrap(),
        as_number: 64513,
    }];
    bird_parses(&bird_config(&cluster, "a", &pools, &peers).unwrap());
    // No blocks, no pools, no peers: still a valid configuration.
    bird_parses(&bird_config(&cluster, "b", &[], &[]).unwrap());
    bird_parses(&peer_router_config(
        "10.0.0.250".parse().unwrap(),
        64513,
        &[("10.0.0.1".parse().unwrap(), 64512)],
        &pools,
    ));
}
