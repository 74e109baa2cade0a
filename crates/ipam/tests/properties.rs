//! Property test: random sequences of allocations and releases (by handle, by address, whole
//! nodes) keep the IPAM objects consistent with each other and with a simple model.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use ipam::{
    AffinityState, AutoAssignRequest, Cidr, FixedClock, IpPoolSpec, Ipam, IpamConfig, IpamError,
    MemoryDatastore,
};
use proptest::prelude::*;

const NODES: [&str; 3] = ["kube-0", "kube-1", "kube-2"];
const HANDLES: usize = 12;

#[derive(Debug, Clone)]
enum Op {
    Assign {
        node: usize,
        handle: usize,
        count: usize,
    },
    ReleaseHandle {
        handle: usize,
    },
    /// Releases the `nth` currently allocated address (modulo how many there are).
    ReleaseIp {
        nth: usize,
    },
    RemoveNode {
        node: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..NODES.len(), 0..HANDLES, 1..6usize)
            .prop_map(|(node, handle, count)| Op::Assign { node, handle, count }),
        2 => (0..HANDLES).prop_map(|handle| Op::ReleaseHandle { handle }),
        2 => any::<usize>().prop_map(|nth| Op::ReleaseIp { nth }),
        1 => (0..NODES.len()).prop_map(|node| Op::RemoveNode { node }),
    ]
}

fn handle_id(handle: usize) -> String {
    format!("k8s-pod-network.{handle}")
}

/// Checks every cross-object rule against the store and the model of who holds what.
fn check_invariants(
    ipam: &Ipam<Arc<MemoryDatastore>>,
    model: &BTreeMap<String, BTreeSet<IpAddr>>,
) -> Result<(), TestCaseError> {
    let blocks = ipam.blocks().unwrap();
    let mut from_blocks: BTreeMap<String, BTreeSet<IpAddr>> = BTreeMap::new();
    let mut per_block_handle: BTreeMap<(String, String), usize> = BTreeMap::new();
    for block in &blocks {
        // Allocations and the free list partition the block; attribute indices are valid.
        prop_assert!(block.validate().is_ok(), "{:?}", block.validate());
        let free: BTreeSet<usize> = block.unallocated.iter().copied().collect();
        let used: BTreeSet<usize> = block
            .allocations
            .iter()
            .enumerate()
            .filter_map(|(o, a)| a.map(|_| o))
            .collect();
        prop_assert_eq!(free.len() + used.len(), block.allocations.len());
        prop_assert!(free.is_disjoint(&used));
        // Every attribute entry is in use, and the sequence numbers track exactly the used
        // ordinals.
        let referenced: BTreeSet<usize> = block.allocations.iter().flatten().copied().collect();
        prop_assert_eq!(referenced.len(), block.attributes.len());
        let tracked: BTreeSet<usize> = block
            .sequence_number_for_allocation
            .keys()
            .map(|k| k.parse().unwrap())
            .collect();
        prop_assert_eq!(&tracked, &used);
        // A block nobody owns and nobody uses must have been deleted.
        prop_assert!(block.affinity.is_some() || !block.is_empty());
        for (ip, attribute) in block.allocated() {
            let handle = attribute.handle_id.clone().unwrap();
            prop_assert!(from_blocks.entry(handle.clone()).or_default().insert(ip));
            *per_block_handle
                .entry((handle, block.cidr.to_string()))
                .or_default() += 1;
        }
    }
    // Blocks and the model agree on who holds which address.
    prop_assert_eq!(&from_blocks, model);

    // Handles count exactly their allocations per block, and exist only while they hold some.
    let handles = ipam.handles().unwrap();
    let mut from_handles: BTreeMap<(String, String), usize> = BTreeMap::new();
    for handle in &handles {
        prop_assert!(!handle.block.is_empty());
        for (block, count) in &handle.block {
            prop_assert!(*count > 0);
            from_handles.insert((handle.handle_id.clone(), block.clone()), *count);
        }
    }
    prop_assert_eq!(&from_handles, &per_block_handle);

    // Affinities and block affinities agree, and no claim is left half-done.
    let affinities = ipam.affinities().unwrap();
    for affinity in &affinities {
        prop_assert_eq!(affinity.state, AffinityState::Confirmed);
        let block = blocks.iter().find(|b| b.cidr == affinity.cidr);
        prop_assert!(block.is_some(), "affinity without block: {:?}", affinity);
        prop_assert_eq!(block.and_then(|b| b.host()), Some(affinity.node.as_str()));
    }
    for block in &blocks {
        if let Some(host) = block.host() {
            prop_assert!(
                affinities
                    .iter()
                    .any(|a| a.cidr == block.cidr && a.node == host),
                "block {} affine to {} without an affinity object",
                block.cidr,
                host
            );
        }
    }
    // Per-host cap.
    for node in NODES {
        prop_assert!(ipam.node_blocks(node).unwrap().len() <= 3);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_allocate_release_sequences_keep_invariants(ops in prop::collection::vec(op(), 1..60)) {
        // 8 blocks of 8 addresses, at most 3 per node: both the per-host cap and pool
        // exhaustion (then borrowing) happen.
        let pool = IpPoolSpec {
            cidr: "10.10.0.0/26".parse::<Cidr>().unwrap(),
            block_size: Some(29),
            ..IpPoolSpec::default_ipv4()
        };
        let config = IpamConfig { max_blocks_per_host: 3, ..IpamConfig::default() };
        let ipam = Ipam::with_clock(Arc::new(MemoryDatastore::new()), config, Box::new(FixedClock(5)));
        ipam.ensure_pool("pool", &pool).unwrap();
        let mut model: BTreeMap<String, BTreeSet<IpAddr>> = BTreeMap::new();

        for op in ops {
            match op {
                Op::Assign { node, handle, count } => {
                    let mut request = AutoAssignRequest::one(NODES[node], &handle_id(handle));
                    request.count = count;
                    let ips = match ipam.auto_assign(&request) {
                        Ok(assignment) => assignment.ips,
                        Err(IpamError::BlockLimitReached { assigned, .. }) => assigned,
                        Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
                    };
                    prop_assert!(ips.len() <= count);
                    for ip in ips {
                        let already = model.values().any(|held| held.contains(&ip));
                        prop_assert!(!already, "{} handed out twice", ip);
                        model.entry(handle_id(handle)).or_default().insert(ip);
                    }
                }
                Op::ReleaseHandle { handle } => {
                    let held = model.remove(&handle_id(handle)).unwrap_or_default();
                    prop_assert_eq!(ipam.release_by_handle(&handle_id(handle)).unwrap(), held.len());
                }
                Op::ReleaseIp { nth } => {
                    let all: Vec<(String, IpAddr)> = model
                        .iter()
                        .flat_map(|(h, ips)| ips.iter().map(move |ip| (h.clone(), *ip)))
                        .collect();
                    if all.is_empty() {
                        continue;
                    }
                    let (handle, ip) = all[nth % all.len()].clone();
                    prop_assert!(ipam.release_ips(&[ip]).unwrap().is_empty());
                    let held = model.get_mut(&handle).unwrap();
                    held.remove(&ip);
                    if held.is_empty() {
                        model.remove(&handle);
                    }
                    // Releasing again finds nothing.
                    prop_assert_eq!(ipam.release_ips(&[ip]).unwrap(), vec![ip]);
                }
                Op::RemoveNode { node } => {
                    ipam.release_host_affinities(NODES[node]).unwrap();
                    prop_assert!(ipam.node_blocks(NODES[node]).unwrap().is_empty());
                }
            }
            check_invariants(&ipam, &model)?;
        }

        // Releasing everything leaves no allocation, handle or unowned block behind.
        for handle in model.keys() {
            ipam.release_by_handle(handle).unwrap();
        }
        prop_assert!(ipam.handles().unwrap().is_empty());
        for block in ipam.blocks().unwrap() {
            prop_assert!(block.is_empty());
            prop_assert!(block.affinity.is_some());
        }
    }
}
