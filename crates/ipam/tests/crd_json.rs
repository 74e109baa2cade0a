//! The stored objects have Calico's `crd.projectcalico.org/v1` shapes: field names, value forms
//! (BlockAffinity's string `deleted`), object names, and round trips that lose nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use ipam::model::{Stored, to_object};
use ipam::{
    AutoAssignRequest, BlockAffinitySpec, Datastore, FixedClock, IpPoolSpec, Ipam, IpamBlockSpec,
    IpamConfig, IpamHandleSpec, Kind, MemoryDatastore, TunnelType,
};
use serde_json::{Value, json};

const NOW: i64 = 1_700_000_000_000_000_000;

fn without_resource_version(mut object: Value) -> Value {
    let metadata = object["metadata"].as_object_mut().unwrap();
    assert!(
        metadata.remove("resourceVersion").unwrap().is_string(),
        "resourceVersion is a string"
    );
    object
}

fn stored(ipam: &Ipam<Arc<MemoryDatastore>>, kind: Kind, name: &str) -> Value {
    let object = ipam.store().get(kind, name).unwrap();
    without_resource_version(object.unwrap_or_else(|| panic!("{kind:?} {name} missing")))
}

/// kube-0 with its tunnel address and one pod, then every object compared with the JSON
/// Calico would store.
#[test]
fn objects_written_by_allocation_have_calico_shapes() {
    let ipam = Ipam::with_clock(
        Arc::new(MemoryDatastore::new()),
        IpamConfig::default(),
        Box::new(FixedClock(NOW)),
    );
    ipam.ensure_pool("default-ipv4-ippool", &IpPoolSpec::default_ipv4())
        .unwrap();
    ipam.assign_tunnel_address("kube-0", TunnelType::Ipip)
        .unwrap();
    let mut pod = AutoAssignRequest::one("kube-0", "k8s-pod-network.0123abcd");
    pod.attrs = BTreeMap::from([
        ("namespace".to_string(), "default".to_string()),
        ("node".to_string(), "kube-0".to_string()),
        ("pod".to_string(), "nginx".to_string()),
        (
            "timestamp".to_string(),
            "2025-01-02 03:04:05.06 +0000 UTC".to_string(),
        ),
    ]);
    ipam.auto_assign(&pod).unwrap();

    assert_eq!(
        stored(&ipam, Kind::IpPool, "default-ipv4-ippool"),
        json!({
            "apiVersion": "crd.projectcalico.org/v1",
            "kind": "IPPool",
            "metadata": {"name": "default-ipv4-ippool"},
            "spec": {
                "cidr": "192.168.0.0/16",
                "blockSize": 26,
                "vxlanMode": "Never",
                "ipipMode": "Always",
                "natOutgoing": true,
                "nodeSelector": "all()"
            }
        })
    );

    let mut allocations = vec![Value::Null; 64];
    allocations[0] = json!(0);
    allocations[1] = json!(1);
    let unallocated: Vec<usize> = (2..64).collect();
    let now = NOW as u64;
    assert_eq!(
        stored(&ipam, Kind::IpamBlock, "192-168-145-64-26"),
        json!({
            "apiVersion": "crd.projectcalico.org/v1",
            "kind": "IPAMBlock",
            "metadata": {"name": "192-168-145-64-26"},
            "spec": {
                "cidr": "192.168.145.64/26",
                "affinity": "host:kube-0",
                "allocations": allocations,
                "unallocated": unallocated,
                "attributes": [
                    {
                        "handle_id": "ipip-tunnel-addr-kube-0",
                        "secondary": {"node": "kube-0", "type": "ipipTunnelAddress"}
                    },
                    {
                        "handle_id": "k8s-pod-network.0123abcd",
                        "secondary": {
                            "namespace": "default",
                            "node": "kube-0",
                            "pod": "nginx",
                            "timestamp": "2025-01-02 03:04:05.06 +0000 UTC"
                        }
                    }
                ],
                // Created with the clock's value, then written once per assignment.
                "sequenceNumber": now + 2,
                "sequenceNumberForAllocation": {"0": now, "1": now + 1},
                "deleted": false,
                "strictAffinity": false
            }
        })
    );

    assert_eq!(
        stored(&ipam, Kind::BlockAffinity, "kube-0-192-168-145-64-26"),
        json!({
            "apiVersion": "crd.projectcalico.org/v1",
            "kind": "BlockAffinity",
            "metadata": {"name": "kube-0-192-168-145-64-26"},
            "spec": {
                "state": "confirmed",
                "node": "kube-0",
                "type": "host",
                "cidr": "192.168.145.64/26",
                "deleted": "false"
            }
        })
    );

    assert_eq!(
        stored(&ipam, Kind::IpamHandle, "k8s-pod-network.0123abcd"),
        json!({
            "apiVersion": "crd.projectcalico.org/v1",
            "kind": "IPAMHandle",
            "metadata": {"name": "k8s-pod-network.0123abcd"},
            "spec": {
                "handleID": "k8s-pod-network.0123abcd",
                "block": {"192.168.145.64/26": 1},
                "deleted": false
            }
        })
    );
    assert!(
        ipam.store()
            .get(Kind::IpamHandle, "ipip-tunnel-addr-kube-0")
            .unwrap()
            .is_some()
    );
}

/// Objects as a real Calico writes them (Go's `null` for nil slices, extra metadata from the
/// API server, fields kubelab does not interpret) decode, and an update keeps everything but
/// the spec intact.
#[test]
fn calico_written_objects_decode_and_keep_their_metadata() {
    let block_object = json!({
        "apiVersion": "crd.projectcalico.org/v1",
        "kind": "IPAMBlock",
        "metadata": {
            "name": "10-0-0-0-30",
            "resourceVersion": "812",
            "uid": "5b0c9a4e-1111-2222-3333-444455556666",
            "creationTimestamp": "2025-01-01T00:00:00Z"
        },
        "spec": {
            "affinity": "host:worker-a",
            "affinityClaimTime": "2025-01-01T00:00:00Z",
            "allocations": [0, null, null, null],
            "attributes": [{"handle_id": "k8s-pod-network.x", "secondary": {"node": "worker-a"}}],
            "cidr": "10.0.0.0/30",
            "deleted": false,
            "sequenceNumber": 7,
            "sequenceNumberForAllocation": {"0": 6},
            "strictAffinity": false,
            "unallocated": [1, 2, 3]
        }
    });
    let block: Stored<IpamBlockSpec> = Stored::decode(block_object.clone()).unwrap();
    assert_eq!(block.spec.host(), Some("worker-a"));
    assert_eq!(block.resource_version(), "812");
    block.spec.validate().unwrap();
    // Nothing is lost in a decode/encode round trip.
    assert_eq!(block.with_spec(&block.spec).unwrap(), block_object);

    let empty_block: Stored<IpamBlockSpec> = Stored::decode(json!({
        "metadata": {"name": "10-0-0-4-30"},
        "spec": {
            "cidr": "10.0.0.4/30", "affinity": null, "allocations": [null, null, null, null],
            "unallocated": [0, 1, 2, 3], "attributes": null, "sequenceNumber": 0,
            "sequenceNumberForAllocation": null, "deleted": false, "strictAffinity": false
        }
    }))
    .unwrap();
    assert!(empty_block.spec.attributes.is_empty());
    assert_eq!(empty_block.spec.affinity, None);

    let affinity: Stored<BlockAffinitySpec> = Stored::decode(json!({
        "metadata": {"name": "worker-a-10-0-0-0-30"},
        "spec": {"state": "pendingDeletion", "node": "worker-a", "type": "host",
                 "cidr": "10.0.0.0/30", "deleted": "true"}
    }))
    .unwrap();
    assert!(affinity.spec.deleted);
    let bool_form: Stored<BlockAffinitySpec> = Stored::decode(json!({
        "metadata": {"name": "n"},
        "spec": {"state": "pending", "node": "n", "cidr": "10.0.0.0/30", "deleted": false}
    }))
    .unwrap();
    assert!(!bool_form.spec.deleted);
    assert!(
        Stored::<BlockAffinitySpec>::decode(json!({
            "metadata": {"name": "n"},
            "spec": {"state": "pending", "node": "n", "cidr": "10.0.0.0/30", "deleted": "maybe"}
        }))
        .is_err()
    );

    let handle: Stored<IpamHandleSpec> = Stored::decode(json!({
        "metadata": {"name": "k8s-pod-network.x"},
        "spec": {"handleID": "k8s-pod-network.x", "block": {"10.0.0.0/30": 1}, "deleted": false}
    }))
    .unwrap();
    assert_eq!(handle.spec.block["10.0.0.0/30"], 1);

    let pool: Stored<IpPoolSpec> = Stored::decode(json!({
        "metadata": {"name": "p"},
        "spec": {"cidr": "10.244.0.0/16", "ipipMode": "CrossSubnet", "vxlanMode": "Never",
                 "natOutgoing": true, "disableBGPExport": true, "allowedUses": ["Workload"]}
    }))
    .unwrap();
    assert_eq!(pool.spec.effective_block_size(), 26);
    assert!(pool.spec.disable_bgp_export);
    assert!(!pool.spec.allows(ipam::AllowedUse::Tunnel));
}

/// Every spec survives spec → object → spec unchanged.
#[test]
fn specs_round_trip_through_objects() {
    fn round_trip<T: ipam::model::CalicoSpec + PartialEq + std::fmt::Debug>(spec: T) {
        let object = to_object("x", &spec).unwrap();
        let back: Stored<T> = Stored::decode(object).unwrap();
        assert_eq!(back.spec, spec);
    }
    round_trip(IpPoolSpec::default_ipv4());
    let mut block = IpamBlockSpec::new_empty(
        "192.168.126.64/26".parse().unwrap(),
        Some("host:kube-1".into()),
        3,
    )
    .unwrap();
    block.auto_assign(2, Some("h"), &BTreeMap::from([("pod".into(), "p".into())]));
    round_trip(block);
    round_trip(BlockAffinitySpec {
        state: ipam::AffinityState::Pending,
        node: "kube-1".into(),
        affinity_type: "host".into(),
        cidr: "192.168.126.64/26".parse().unwrap(),
        deleted: false,
    });
    round_trip(IpamHandleSpec {
        handle_id: "h".into(),
        block: BTreeMap::from([("192.168.126.64/26".into(), 2)]),
        deleted: false,
    });
}
