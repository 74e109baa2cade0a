//! Allocation behaviour of `Ipam` over the in-memory datastore, against Calico's rules.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use ipam::{
    AffinityState, AutoAssignRequest, Cidr, FixedClock, IpPoolSpec, Ipam, IpamConfig, IpamError,
    MemoryDatastore, TunnelType,
};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn cidr(text: &str) -> Cidr {
    text.parse().unwrap()
}

fn ipam_with_pool(pool: IpPoolSpec, config: IpamConfig) -> Ipam<Arc<MemoryDatastore>> {
    let ipam = Ipam::with_clock(
        Arc::new(MemoryDatastore::new()),
        config,
        Box::new(FixedClock(1_700_000_000_000_000_000)),
    );
    assert!(ipam.ensure_pool("default-ipv4-ippool", &pool).unwrap());
    ipam
}

fn default_ipam() -> Ipam<Arc<MemoryDatastore>> {
    ipam_with_pool(IpPoolSpec::default_ipv4(), IpamConfig::default())
}

fn small_pool(text: &str, block_size: u8) -> IpPoolSpec {
    IpPoolSpec {
        cidr: cidr(text),
        block_size: Some(block_size),
        ..IpPoolSpec::default_ipv4()
    }
}

fn assign_one(ipam: &Ipam<Arc<MemoryDatastore>>, node: &str, handle: &str) -> IpAddr {
    let got = ipam
        .auto_assign(&AutoAssignRequest::one(node, handle))
        .unwrap();
    assert_eq!(got.ips.len(), 1, "{got:?}");
    got.ips[0]
}

#[test]
fn kube0_allocates_from_its_first_block_in_order() {
    let ipam = default_ipam();
    let got: Vec<IpAddr> = (0..4)
        .map(|i| assign_one(&ipam, "kube-0", &format!("k8s-pod-network.c{i}")))
        .collect();
    assert_eq!(
        got,
        [
            ip("192.168.145.64"),
            ip("192.168.145.65"),
            ip("192.168.145.66"),
            ip("192.168.145.67")
        ]
    );
    assert_eq!(
        assign_one(&ipam, "kube-1", "k8s-pod-network.d0"),
        ip("192.168.126.64")
    );

    assert_eq!(
        ipam.node_blocks("kube-0").unwrap(),
        [cidr("192.168.145.64/26")]
    );
    let affinities = ipam.affinities().unwrap();
    assert_eq!(affinities.len(), 2);
    assert!(
        affinities
            .iter()
            .all(|a| a.state == AffinityState::Confirmed)
    );
}

#[test]
fn tunnel_address_is_ordinal_zero_and_idempotent() {
    let ipam = default_ipam();
    let tunnel = ipam
        .assign_tunnel_address("kube-0", TunnelType::Ipip)
        .unwrap();
    assert_eq!(tunnel, ip("192.168.145.64"));
    assert_eq!(
        ipam.assign_tunnel_address("kube-0", TunnelType::Ipip)
            .unwrap(),
        tunnel
    );
    assert_eq!(assign_one(&ipam, "kube-0", "pod-a"), ip("192.168.145.65"));
    let block = &ipam.blocks().unwrap()[0];
    let owner = block.owner_of(tunnel).unwrap();
    assert_eq!(owner.handle_id.as_deref(), Some("ipip-tunnel-addr-kube-0"));
    assert_eq!(owner.secondary["type"], "ipipTunnelAddress");
    assert_eq!(owner.secondary["node"], "kube-0");
}

#[test]
fn released_addresses_are_reused_longest_idle_first() {
    let ipam = default_ipam();
    let ips: Vec<IpAddr> = (0..5)
        .map(|i| assign_one(&ipam, "kube-0", &format!("h{i}")))
        .collect();
    // Release .66 then .64: both go to the end of the free list, .66 first.
    assert_eq!(ipam.release_by_handle("h2").unwrap(), 1);
    assert_eq!(ipam.release_ips(&[ips[0]]).unwrap(), Vec::<IpAddr>::new());
    // Fresh ordinals 5..63 come before them.
    let next: Vec<IpAddr> = (0..59)
        .map(|i| assign_one(&ipam, "kube-0", &format!("n{i}")))
        .collect();
    assert_eq!(next[0], ip("192.168.145.69"));
    assert_eq!(next[58], ip("192.168.145.127"));
    assert_eq!(assign_one(&ipam, "kube-0", "r1"), ip("192.168.145.66"));
    assert_eq!(assign_one(&ipam, "kube-0", "r2"), ip("192.168.145.64"));
    // Releasing something twice reports it as not allocated the second time.
    assert_eq!(ipam.release_ips(&[ips[1]]).unwrap(), Vec::<IpAddr>::new());
    assert_eq!(ipam.release_ips(&[ips[1]]).unwrap(), [ips[1]]);
    assert_eq!(ipam.release_by_handle("h1").unwrap(), 0);
}

#[test]
fn full_block_claims_the_next_block_in_random_order() {
    let ipam = default_ipam();
    let mut request = AutoAssignRequest::one("kube-0", "big");
    request.count = 64;
    let first = ipam.auto_assign(&request).unwrap();
    assert_eq!(first.ips.len(), 64);
    assert!(
        first
            .ips
            .iter()
            .all(|ip| cidr("192.168.145.64/26").contains(*ip))
    );
    // The walk from index 581 continues with 582 = 192.168.145.128/26.
    assert_eq!(assign_one(&ipam, "kube-0", "next"), ip("192.168.145.128"));
    assert_eq!(
        ipam.node_blocks("kube-0").unwrap(),
        [cidr("192.168.145.128/26"), cidr("192.168.145.64/26")]
    );
    // A single request spanning blocks gets both, and the handle counts per block.
    let mut spanning = AutoAssignRequest::one("kube-1", "span");
    spanning.count = 70;
    assert_eq!(ipam.auto_assign(&spanning).unwrap().ips.len(), 70);
    let handle = ipam
        .handles()
        .unwrap()
        .into_iter()
        .find(|h| h.handle_id == "span")
        .unwrap();
    assert_eq!(
        handle.block,
        BTreeMap::from([
            ("192.168.126.128/26".to_string(), 6),
            ("192.168.126.64/26".to_string(), 64)
        ])
    );
}

#[test]
fn another_nodes_block_is_skipped_when_claiming() {
    // kube-1 happens to own the block kube-0 would try first; kube-0 takes the next one.
    let ipam = ipam_with_pool(small_pool("10.0.0.0/24", 28), IpamConfig::default());
    // Go: Rand(16) is 5 for kube-0 and 1 for kube-1.
    assert_eq!(assign_one(&ipam, "kube-1", "a"), ip("10.0.0.16"));
    let mut fill = AutoAssignRequest::one("kube-1", "fill");
    fill.count = 15 + 16 * 4;
    ipam.auto_assign(&fill).unwrap();
    // kube-1 now owns blocks 1..=5, so kube-0's walk (5, 6, ...) lands on block 6.
    assert!(
        ipam.node_blocks("kube-1")
            .unwrap()
            .contains(&cidr("10.0.0.80/28"))
    );
    assert_eq!(assign_one(&ipam, "kube-0", "b"), ip("10.0.0.96"));
}

#[test]
fn block_limit_stops_a_node_like_calico() {
    // Calico's autoAssign returns ErrBlockLimit with the addresses assigned so far; it does
    // not borrow in that case (borrowing only follows "no free blocks").
    let config = IpamConfig {
        max_blocks_per_host: 2,
        ..IpamConfig::default()
    };
    let ipam = ipam_with_pool(small_pool("10.0.0.0/24", 28), config);
    let mut request = AutoAssignRequest::one("kube-0", "many");
    request.count = 40;
    match ipam.auto_assign(&request) {
        Err(IpamError::BlockLimitReached {
            limit, assigned, ..
        }) => {
            assert_eq!(limit, 2);
            assert_eq!(assigned.len(), 32);
        }
        other => panic!("expected BlockLimitReached, got {other:?}"),
    }
    assert_eq!(ipam.node_blocks("kube-0").unwrap().len(), 2);
    // The partial assignment belongs to the handle and can be released by it.
    assert_eq!(ipam.release_by_handle("many").unwrap(), 32);
    assert!(ipam.handles().unwrap().is_empty());
}

#[test]
fn exhausted_pool_borrows_from_other_nodes_unless_strict() {
    for strict in [false, true] {
        let config = IpamConfig {
            strict_affinity: strict,
            ..IpamConfig::default()
        };
        // Two /28 blocks: one each.
        let ipam = ipam_with_pool(small_pool("10.0.0.0/27", 28), config);
        let kube1_ip = assign_one(&ipam, "kube-1", "k1");
        let kube1_block = Cidr::containing(kube1_ip, 28).unwrap();
        let mut fill = AutoAssignRequest::one("kube-0", "fill");
        fill.count = 16;
        ipam.auto_assign(&fill).unwrap();

        let extra = ipam
            .auto_assign(&AutoAssignRequest::one("kube-0", "extra"))
            .unwrap();
        if strict {
            assert!(extra.ips.is_empty(), "strict affinity must not borrow");
            assert!(!extra.is_complete());
        } else {
            assert_eq!(extra.ips.len(), 1);
            assert!(kube1_block.contains(extra.ips[0]), "{extra:?}");
            // Lowest free ordinal of kube-1's block: ordinal 1.
            assert_eq!(Some(extra.ips[0]), kube1_block.nth(1));
            // Borrowing does not move the block.
            assert_eq!(ipam.node_blocks("kube-1").unwrap(), [kube1_block]);
        }
    }
}

#[test]
fn deleted_node_loses_affinities_and_its_blocks_drain() {
    let ipam = ipam_with_pool(small_pool("10.0.0.0/24", 28), IpamConfig::default());
    let mut request = AutoAssignRequest::one("kube-0", "pods");
    request.count = 17; // two blocks
    let ips = ipam.auto_assign(&request).unwrap().ips;
    let blocks = ipam.node_blocks("kube-0").unwrap();
    assert_eq!(blocks.len(), 2);
    // Empty the second block before the node goes away.
    let second_block_ips: Vec<IpAddr> = ips
        .iter()
        .copied()
        .filter(|ip| Cidr::containing(*ip, 28).unwrap() != Cidr::containing(ips[0], 28).unwrap())
        .collect();
    assert_eq!(second_block_ips.len(), 1);
    ipam.release_ips(&second_block_ips).unwrap();
    // Empty blocks keep their affinity while the node lives.
    assert_eq!(ipam.node_blocks("kube-0").unwrap().len(), 2);

    ipam.release_host_affinities("kube-0").unwrap();
    assert!(ipam.affinities().unwrap().is_empty());
    let remaining = ipam.blocks().unwrap();
    assert_eq!(remaining.len(), 1, "the empty block is deleted");
    assert_eq!(remaining[0].affinity, None, "the used block is orphaned");
    // Releasing the last addresses deletes the orphaned block.
    ipam.release_by_handle("pods").unwrap();
    assert!(ipam.blocks().unwrap().is_empty());
    assert!(ipam.handles().unwrap().is_empty());
}

#[test]
fn no_pool_and_unsupported_selector_are_errors() {
    let ipam = Ipam::new(Arc::new(MemoryDatastore::new()), IpamConfig::default());
    assert!(matches!(
        ipam.auto_assign(&AutoAssignRequest::one("kube-0", "h")),
        Err(IpamError::NoPools { .. })
    ));
    let selective = IpPoolSpec {
        node_selector: "rack == 'a'".to_string(),
        ..IpPoolSpec::default_ipv4()
    };
    ipam.ensure_pool("p", &selective).unwrap();
    assert!(matches!(
        ipam.auto_assign(&AutoAssignRequest::one("kube-0", "h")),
        Err(IpamError::UnsupportedNodeSelector(_))
    ));
    let bad = small_pool("10.0.0.0/24", 16);
    assert!(matches!(
        ipam.ensure_pool("bad", &bad),
        Err(IpamError::InvalidPool(_))
    ));
}

#[test]
fn malformed_stored_block_is_an_error_not_a_panic() {
    use ipam::{Datastore, Kind};
    let ipam = default_ipam();
    assign_one(&ipam, "kube-0", "h");
    let mut object = ipam
        .store()
        .get(Kind::IpamBlock, "192-168-145-64-26")
        .unwrap()
        .unwrap();
    object["spec"]["allocations"][0] = serde_json::json!(9);
    ipam.store().update(Kind::IpamBlock, object).unwrap();
    // The corrupt block still has room, so the block search returns to it and reports it.
    assert!(matches!(
        ipam.auto_assign(&AutoAssignRequest::one("kube-0", "h2")),
        Err(IpamError::Malformed { .. })
    ));
    assert!(matches!(
        ipam.release_ips(&[ip("192.168.145.64")]),
        Err(IpamError::Malformed { .. })
    ));
}
