//! Many threads allocating and releasing at once over the compare-and-swap datastore, with random
//! delays around every datastore call so that reads go stale and writes race.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use ipam::{
    AutoAssignRequest, Datastore, IpPoolSpec, Ipam, IpamConfig, Kind, MemoryDatastore, StoreError,
};
use rand::Rng;
use serde_json::Value;

/// Delegates to the memory datastore after a random pause of up to `max_delay_micros`.
/// Counts the compare-and-swap writes that lost a race.
struct Jittery {
    inner: MemoryDatastore,
    max_delay_micros: u64,
    conflicts: AtomicUsize,
}

impl Jittery {
    fn count<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if matches!(
            result,
            Err(StoreError::Conflict { .. } | StoreError::AlreadyExists { .. })
        ) {
            self.conflicts.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn pause(&self) {
        let micros = rand::rng().random_range(0..=self.max_delay_micros);
        thread::sleep(Duration::from_micros(micros));
    }
}

impl Datastore for Jittery {
    fn get(&self, kind: Kind, name: &str) -> Result<Option<Value>, StoreError> {
        self.pause();
        self.inner.get(kind, name)
    }
    fn list(&self, kind: Kind) -> Result<Vec<Value>, StoreError> {
        self.pause();
        self.inner.list(kind)
    }
    fn create(&self, kind: Kind, object: Value) -> Result<Value, StoreError> {
        self.pause();
        self.count(self.inner.create(kind, object))
    }
    fn update(&self, kind: Kind, object: Value) -> Result<Value, StoreError> {
        self.pause();
        self.count(self.inner.update(kind, object))
    }
    fn delete(&self, kind: Kind, name: &str, resource_version: &str) -> Result<(), StoreError> {
        self.pause();
        self.count(self.inner.delete(kind, name, resource_version))
    }
}

const NODES: [&str; 4] = ["kube-0", "kube-1", "kube-2", "kube-3"];
const THREADS: usize = 16;
const PER_THREAD: usize = 1000 / THREADS + 1;
const TOTAL: usize = 1000;

fn handle_for(n: usize) -> String {
    format!("k8s-pod-network.{n:04}")
}

#[test]
fn thousand_concurrent_allocations_then_release_everything() {
    let store = Arc::new(Jittery {
        inner: MemoryDatastore::new(),
        max_delay_micros: 150,
        conflicts: AtomicUsize::new(0),
    });
    let ipam = Arc::new(Ipam::new(store.clone(), IpamConfig::default()));
    ipam.ensure_pool("default-ipv4-ippool", &IpPoolSpec::default_ipv4())
        .unwrap();

    // Allocate: thread t takes allocations t, t+THREADS, ...; each allocation's node rotates so
    // every node sees contention from every thread.
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let ipam = ipam.clone();
            thread::spawn(move || {
                let mut got = Vec::new();
                for n in (t..TOTAL).step_by(THREADS) {
                    let node = NODES[n % NODES.len()];
                    let request = AutoAssignRequest::one(node, &handle_for(n));
                    let assignment = ipam
                        .auto_assign(&request)
                        .unwrap_or_else(|e| panic!("allocation {n} on {node}: {e}"));
                    assert_eq!(assignment.ips.len(), 1, "allocation {n}");
                    got.push((n, node, assignment.ips[0]));
                }
                assert!(got.len() <= PER_THREAD);
                got
            })
        })
        .collect();
    let mut allocated: Vec<(usize, &str, IpAddr)> = Vec::new();
    for worker in workers {
        allocated.extend(worker.join().expect("allocating thread panicked"));
    }
    assert_eq!(allocated.len(), TOTAL);

    // No address handed out twice.
    let distinct: BTreeSet<IpAddr> = allocated.iter().map(|(_, _, ip)| *ip).collect();
    assert_eq!(distinct.len(), TOTAL, "duplicate addresses were assigned");

    // The writers really raced.
    let conflicts_while_allocating = store.conflicts.load(Ordering::Relaxed);
    assert!(
        conflicts_while_allocating > 0,
        "no lost compare-and-swap: test too gentle"
    );

    // Every handle holds exactly its address, and the stored blocks agree with the handles.
    let blocks = ipam.blocks().unwrap();
    for (n, node, ip) in &allocated {
        assert_eq!(ipam.ips_by_handle(&handle_for(*n)).unwrap(), [*ip]);
        let block = blocks.iter().find(|b| b.cidr.contains(*ip)).unwrap();
        // No pool exhaustion here, so every address comes from a block of its own node.
        assert_eq!(block.host(), Some(*node), "{ip} for {node}");
    }
    let handles = ipam.handles().unwrap();
    assert_eq!(handles.len(), TOTAL);
    let mut per_block_from_handles: BTreeMap<String, usize> = BTreeMap::new();
    for handle in &handles {
        for (block, count) in &handle.block {
            *per_block_from_handles.entry(block.clone()).or_default() += count;
        }
    }
    let mut allocated_in_blocks = 0;
    for block in &blocks {
        block.validate().unwrap();
        let used = block.allocated().len();
        allocated_in_blocks += used;
        assert_eq!(
            per_block_from_handles
                .get(&block.cidr.to_string())
                .copied()
                .unwrap_or(0),
            used,
            "block {}",
            block.cidr
        );
    }
    assert_eq!(allocated_in_blocks, TOTAL);
    // 250 addresses per node need 4 blocks of 64; the race may not waste blocks.
    for node in NODES {
        assert_eq!(ipam.node_blocks(node).unwrap().len(), 4, "{node}");
    }
    assert!(
        ipam.affinities()
            .unwrap()
            .iter()
            .all(|a| a.state == ipam::AffinityState::Confirmed)
    );

    // Release everything concurrently: half by handle, half by address.
    let chunks: Vec<Vec<(usize, IpAddr)>> = (0..THREADS)
        .map(|t| {
            allocated
                .iter()
                .skip(t)
                .step_by(THREADS)
                .map(|(n, _, ip)| (*n, *ip))
                .collect()
        })
        .collect();
    let releasers: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let ipam = ipam.clone();
            thread::spawn(move || {
                for (n, ip) in chunk {
                    if n % 2 == 0 {
                        assert_eq!(ipam.release_by_handle(&handle_for(n)).unwrap(), 1);
                    } else {
                        assert_eq!(ipam.release_ips(&[ip]).unwrap(), Vec::<IpAddr>::new());
                    }
                }
            })
        })
        .collect();
    for releaser in releasers {
        releaser.join().expect("releasing thread panicked");
    }

    for block in ipam.blocks().unwrap() {
        block.validate().unwrap();
        assert!(block.is_empty(), "{} still has allocations", block.cidr);
        assert_eq!(block.num_free(), 64);
        assert!(block.attributes.is_empty());
    }
    assert!(ipam.handles().unwrap().is_empty(), "handles left behind");
    // Blocks stay affine to their (still existing) nodes.
    assert_eq!(ipam.affinities().unwrap().len(), 16);
}
