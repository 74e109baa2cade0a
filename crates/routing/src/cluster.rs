//! The cluster as routing sees it, read from the API objects Calico's Kubernetes datastore keeps.
//!
//! This module turns JSON of Kubernetes Nodes and Pods and Calico IPPools and IPAMBlocks into a
//! small [`Cluster`] value. It never fails: an object with a missing or malformed field that
//! routing needs is left out (a node without a usable `projectcalico.org/IPv4Address`, a block
//! without an IPv4 `spec.cidr`, a pod without a node or IPv4 address), and an optional field that
//! is malformed reads as absent.

use std::net::Ipv4Addr;

use serde_json::Value;
use sha1::{Digest, Sha1};

use crate::route::Destination;

/// How traffic to another node's pods travels, decided by the IP pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encapsulation {
    /// IP-in-IP through `tunl0` to every other node (`ipipMode: Always`, Calico's default).
    Ipip,
    /// VXLAN through `vxlan.calico` to every other node (`vxlanMode: Always`).
    Vxlan,
    /// Plain routing over the underlay (`Never`, or no mode set).
    None,
    /// `ipipMode: CrossSubnet`: plain routing to nodes on this node's subnet, IPIP to the rest.
    CrossSubnet,
    /// `vxlanMode: CrossSubnet`: plain routing to nodes on this node's subnet, VXLAN to the
    /// rest. Kept apart from [`Encapsulation::CrossSubnet`] because Calico encapsulates these
    /// with VXLAN, not IPIP.
    VxlanCrossSubnet,
}

impl Encapsulation {
    /// The pod interface MTU Calico picks for a 1500-byte underlay: 20 bytes less for IPIP, 50
    /// for VXLAN.
    pub fn pod_mtu(self) -> u32 {
        match self {
            Encapsulation::Ipip | Encapsulation::CrossSubnet => 1480,
            Encapsulation::Vxlan | Encapsulation::VxlanCrossSubnet => 1450,
            Encapsulation::None => 1500,
        }
    }
}

/// Reads the encapsulation of one `crd.projectcalico.org/v1` IPPool from `spec.ipipMode` and
/// `spec.vxlanMode` (`Always` | `CrossSubnet` | `Never`, matched without regard to case; the
/// Calico v1 spelling `cross-subnet` is accepted too). Calico refuses a pool with both modes
/// enabled; should one arrive anyway, IPIP wins. Anything unreadable means no encapsulation.
pub fn encapsulation_of_pool(pool: &Value) -> Encapsulation {
    let mode = |key: &str| -> Mode {
        let text = pool
            .pointer(&format!("/spec/{key}"))
            .and_then(Value::as_str)
            .unwrap_or("");
        if text.eq_ignore_ascii_case("always") {
            Mode::Always
        } else if text.eq_ignore_ascii_case("crosssubnet")
            || text.eq_ignore_ascii_case("cross-subnet")
        {
            Mode::CrossSubnet
        } else {
            Mode::Never
        }
    };
    match (mode("ipipMode"), mode("vxlanMode")) {
        (Mode::Always, _) => Encapsulation::Ipip,
        (Mode::CrossSubnet, _) => Encapsulation::CrossSubnet,
        (Mode::Never, Mode::Always) => Encapsulation::Vxlan,
        (Mode::Never, Mode::CrossSubnet) => Encapsulation::VxlanCrossSubnet,
        (Mode::Never, Mode::Never) => Encapsulation::None,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Always,
    CrossSubnet,
    Never,
}

/// A node as routing needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    /// The node's underlay address (on `eth0`).
    pub ip: Ipv4Addr,
    /// Prefix length of the node's underlay subnet: gives the connected route and, under
    /// CrossSubnet, which nodes are reached without encapsulation.
    pub prefix_len: u8,
    /// The underlay's default gateway, if the lab gave the node one.
    pub gateway: Option<Ipv4Addr>,
    /// Address of the node's `tunl0`.
    pub ipip_tunnel: Option<Ipv4Addr>,
    /// Address of the node's `vxlan.calico`.
    pub vxlan_tunnel: Option<Ipv4Addr>,
    /// MAC of the node's `vxlan.calico`, lower case `aa:bb:cc:dd:ee:ff`.
    pub vxlan_mac: Option<String>,
    /// The node's BGP AS number when it runs BIRD (`--routing bgp`): its blackholes and its
    /// routes to other BGP nodes' blocks are then BIRD's, not Felix's.
    pub bgp_as: Option<u32>,
}

/// An IPAM block: a prefix of the pool, usually affine to (claimed by) one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub network: Ipv4Addr,
    pub prefix_len: u8,
    /// The node the block is affine to; `None` for a block without a host affinity.
    pub node: Option<String>,
}

impl Block {
    /// The block as a route destination; `None` when the prefix length is impossible.
    pub fn destination(&self) -> Option<Destination> {
        Destination::new(self.network, self.prefix_len)
    }
}

/// A pod with an IPv4 address, running on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub node: String,
    pub ip: Ipv4Addr,
}

/// Everything a node's routing table depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    pub encapsulation: Encapsulation,
    pub nodes: Vec<NodeInfo>,
    pub blocks: Vec<Block>,
    pub pods: Vec<PodInfo>,
}

impl Cluster {
    /// The node called `name`; the first one if the list names it twice.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.iter().find(|node| node.name == name)
    }
}

/// Calico's node annotations in the Kubernetes datastore (libcalico-go `k8s/conversion`).
const NODE_ADDRESS_ANNOTATION: &str = "projectcalico.org/IPv4Address";
const IPIP_TUNNEL_ANNOTATION: &str = "projectcalico.org/IPv4IPIPTunnelAddr";
const VXLAN_TUNNEL_ANNOTATION: &str = "projectcalico.org/IPv4VXLANTunnelAddr";
const VXLAN_MAC_ANNOTATION: &str = "projectcalico.org/IPv4VXLANTunnelMACAddr";
/// The node's BGP AS number, as libcalico-go keeps a node's `spec.bgp.asNumber`. kubelab's
/// agent writes it on every node that runs BIRD, so its presence says "this node speaks BGP".
pub const AS_NUMBER_ANNOTATION: &str = "projectcalico.org/ASNumber";
/// kubelab's own: the underlay's default gateway of the node.
const GATEWAY_ANNOTATION: &str = "kubelab.dev/gateway";
/// Calico CNI's pod address annotation; set to "" once CNI has torn the network down.
const POD_IP_ANNOTATION: &str = "cni.projectcalico.org/podIP";

/// Builds a [`Cluster`] from API objects (each slice holds the `items` of a list):
///
/// - Nodes: the name, and `projectcalico.org/IPv4Address` (`"10.10.95.205/20"`: address and
///   subnet prefix) which is required; the tunnel addresses, the VXLAN MAC,
///   `projectcalico.org/ASNumber` and `kubelab.dev/gateway` are optional.
/// - IPAMBlocks: `spec.cidr` (IPv4, host bits cleared) and `spec.affinity` (`"host:<node>"`;
///   anything else means no affinity). Blocks with `spec.deleted: true` are on their way out
///   (libcalico-go marks a block before deleting it) and are left out.
/// - IPPools: the first pool in the given order that is not `spec.disabled` and has an IPv4
///   `spec.cidr` decides the encapsulation; with none, there is none.
/// - Pods: `spec.nodeName` and the first IPv4 address of `status.podIPs`, else `status.podIP`,
///   else Calico CNI's `cni.projectcalico.org/podIP` annotation. Left out, as Calico leaves
///   them out (libcalico-go `IsFinished`, `IsValidCalicoWorkloadEndpoint`): host-network pods,
///   unscheduled pods, pods without an address, pods in phase `Succeeded`, `Failed` or
///   `Completed`, and terminating pods whose podIP annotation CNI has emptied. A terminating
///   pod that still has its address keeps it: the agent drops it when the sandbox is torn down.
pub fn cluster_from_objects(
    nodes: &[Value],
    blocks: &[Value],
    pools: &[Value],
    pods: &[Value],
) -> Cluster {
    let encapsulation = pools
        .iter()
        .find(|pool| is_enabled_ipv4_pool(pool))
        .map_or(Encapsulation::None, encapsulation_of_pool);
    Cluster {
        encapsulation,
        nodes: nodes.iter().filter_map(node_info).collect(),
        blocks: blocks.iter().filter_map(block).collect(),
        pods: pods.iter().filter_map(pod_info).collect(),
    }
}

fn is_enabled_ipv4_pool(pool: &Value) -> bool {
    let disabled = pool.pointer("/spec/disabled").and_then(Value::as_bool) == Some(true);
    let ipv4 = pool
        .pointer("/spec/cidr")
        .and_then(Value::as_str)
        .and_then(parse_cidr)
        .is_some();
    ipv4 && !disabled
}

fn annotation<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object
        .pointer("/metadata/annotations")
        .and_then(|annotations| annotations.get(key))
        .and_then(Value::as_str)
}

fn name_of(object: &Value) -> Option<&str> {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|name| !name.is_empty())
}

/// `a.b.c.d/len` with `len` at most 32; the address is returned as written (host bits kept).
fn parse_cidr(text: &str) -> Option<(Ipv4Addr, u8)> {
    let (address, prefix_len) = text.split_once('/')?;
    let prefix_len = prefix_len.parse::<u8>().ok().filter(|len| *len <= 32)?;
    Some((address.parse().ok()?, prefix_len))
}

/// An IPv4 address, also accepted in the `a.b.c.d/32` form Calico uses for tunnel addresses.
fn parse_address(text: &str) -> Option<Ipv4Addr> {
    match text.split_once('/') {
        Some((address, "32")) => address.parse().ok(),
        Some(_) => None,
        None => text.parse().ok(),
    }
}

/// Six colon-separated hex pairs, returned in lower case; anything else is refused so that it
/// can never reach an `ip -batch` line.
fn parse_mac(text: &str) -> Option<String> {
    let pairs: Vec<&str> = text.split(':').collect();
    let valid = pairs.len() == 6
        && pairs
            .iter()
            .all(|pair| pair.len() == 2 && pair.chars().all(|c| c.is_ascii_hexdigit()));
    valid.then(|| text.to_ascii_lowercase())
}

fn node_info(node: &Value) -> Option<NodeInfo> {
    let name = name_of(node)?;
    let (ip, prefix_len) = parse_cidr(annotation(node, NODE_ADDRESS_ANNOTATION)?)?;
    Some(NodeInfo {
        name: name.to_owned(),
        ip,
        prefix_len,
        gateway: annotation(node, GATEWAY_ANNOTATION).and_then(parse_address),
        ipip_tunnel: annotation(node, IPIP_TUNNEL_ANNOTATION).and_then(parse_address),
        vxlan_tunnel: annotation(node, VXLAN_TUNNEL_ANNOTATION).and_then(parse_address),
        vxlan_mac: annotation(node, VXLAN_MAC_ANNOTATION).and_then(parse_mac),
        bgp_as: annotation(node, AS_NUMBER_ANNOTATION).and_then(|text| text.parse().ok()),
    })
}

fn block(block: &Value) -> Option<Block> {
    if block.pointer("/spec/deleted").and_then(Value::as_bool) == Some(true) {
        return None;
    }
    let (address, prefix_len) = parse_cidr(block.pointer("/spec/cidr")?.as_str()?)?;
    let destination = Destination::new(address, prefix_len)?;
    let node = block
        .pointer("/spec/affinity")
        .and_then(Value::as_str)
        .and_then(|affinity| affinity.strip_prefix("host:"))
        .filter(|node| !node.is_empty())
        .map(str::to_owned);
    Some(Block {
        network: destination.network(),
        prefix_len,
        node,
    })
}

fn pod_info(pod: &Value) -> Option<PodInfo> {
    if pod.pointer("/spec/hostNetwork").and_then(Value::as_bool) == Some(true) {
        return None;
    }
    let phase = pod.pointer("/status/phase").and_then(Value::as_str);
    if matches!(phase, Some("Succeeded" | "Failed" | "Completed")) {
        return None;
    }
    let terminating = pod
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|timestamp| !timestamp.is_null());
    if terminating && annotation(pod, POD_IP_ANNOTATION) == Some("") {
        return None;
    }
    let namespace = pod
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|namespace| !namespace.is_empty())?;
    let node = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|node| !node.is_empty())?;
    Some(PodInfo {
        namespace: namespace.to_owned(),
        name: name_of(pod)?.to_owned(),
        node: node.to_owned(),
        ip: pod_ipv4(pod)?,
    })
}

fn pod_ipv4(pod: &Value) -> Option<Ipv4Addr> {
    let from_list = pod
        .pointer("/status/podIPs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.get("ip").and_then(Value::as_str))
        .find_map(|text| text.parse::<Ipv4Addr>().ok());
    from_list
        .or_else(|| {
            pod.pointer("/status/podIP")
                .and_then(Value::as_str)
                .and_then(|text| text.parse().ok())
        })
        .or_else(|| annotation(pod, POD_IP_ANNOTATION).and_then(parse_address))
}

/// Host-side name of a pod's veth: `cali` + the first 11 hex digits of SHA-1 over
/// `"<namespace>.<pod>"` (libcalico-go `VethNameForWorkload`), 15 characters, the kernel's
/// limit for interface names.
pub fn veth_name(namespace: &str, pod: &str) -> String {
    let digest = Sha1::digest(format!("{namespace}.{pod}").as_bytes());
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("cali{}", &hex[..11])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn veth_names_match_python_hashlib() {
        // python3 -c 'import hashlib;print(hashlib.sha1(b"default.nginx-x").hexdigest()[:11])'
        assert_eq!(veth_name("default", "nginx-x"), "calieec4eba6b2b");
        // The course's own pod on kube-1, whose route reads `dev cali2d894f7a3f6`.
        assert_eq!(
            veth_name("default", "nginx-deployment-69df458bc5-cg4mk"),
            "cali2d894f7a3f6"
        );
        assert_eq!(veth_name("kube-system", "coredns-1"), "cali5adc4ab58e2");
    }

    #[test]
    fn pool_modes_decide_the_encapsulation() {
        let pool =
            |ipip: Value, vxlan: Value| json!({"spec": {"ipipMode": ipip, "vxlanMode": vxlan}});
        let cases = [
            (pool(json!("Always"), json!("Never")), Encapsulation::Ipip),
            (pool(json!("Never"), json!("Always")), Encapsulation::Vxlan),
            (
                pool(json!("CrossSubnet"), json!("Never")),
                Encapsulation::CrossSubnet,
            ),
            (
                pool(json!("Never"), json!("CrossSubnet")),
                Encapsulation::VxlanCrossSubnet,
            ),
            (pool(json!("Never"), json!("Never")), Encapsulation::None),
            (pool(json!(null), json!(null)), Encapsulation::None),
            (pool(json!(3), json!(["Always"])), Encapsulation::None),
            (
                pool(json!("cross-subnet"), json!(null)),
                Encapsulation::CrossSubnet,
            ),
            (
                json!({"spec": {"vxlanMode": "always"}}),
                Encapsulation::Vxlan,
            ),
            (json!("garbage"), Encapsulation::None),
        ];
        for (pool, expected) in cases {
            assert_eq!(encapsulation_of_pool(&pool), expected, "{pool}");
        }
    }

    #[test]
    fn first_enabled_ipv4_pool_wins() {
        let pools = [
            json!({"spec": {"cidr": "192.170.0.0/16", "ipipMode": "Always", "disabled": true}}),
            json!({"spec": {"cidr": "fd00::/48", "ipipMode": "Always"}}),
            json!({"spec": {"cidr": "192.168.0.0/16", "vxlanMode": "Always"}}),
            json!({"spec": {"cidr": "192.169.0.0/16", "ipipMode": "Always"}}),
        ];
        assert_eq!(
            cluster_from_objects(&[], &[], &pools, &[]).encapsulation,
            Encapsulation::Vxlan
        );
        assert_eq!(
            cluster_from_objects(&[], &[], &[], &[]).encapsulation,
            Encapsulation::None
        );
    }

    #[test]
    fn nodes_read_calicos_annotations() {
        let nodes = [
            json!({"metadata": {"name": "kube-1", "annotations": {
                "projectcalico.org/IPv4Address": "10.10.95.205/20",
                "projectcalico.org/IPv4IPIPTunnelAddr": "192.168.126.64",
                "projectcalico.org/IPv4VXLANTunnelAddr": "192.168.126.65",
                "projectcalico.org/IPv4VXLANTunnelMACAddr": "66:AA:bb:cc:dd:ee",
                "kubelab.dev/gateway": "10.10.80.1"}}}),
            json!({"metadata": {"name": "bad-tunnels", "annotations": {
                "projectcalico.org/IPv4Address": "10.10.95.206/20",
                "projectcalico.org/IPv4IPIPTunnelAddr": "nonsense",
                "projectcalico.org/IPv4VXLANTunnelMACAddr": "66:aa:bb:cc:dd:ee\nroute del default",
                "kubelab.dev/gateway": 7}}}),
            json!({"metadata": {"name": "no-address"}}),
            json!({"metadata": {"name": "v6", "annotations": {"projectcalico.org/IPv4Address": "fd00::1/64"}}}),
            json!({"metadata": {"annotations": {"projectcalico.org/IPv4Address": "10.0.0.1/8"}}}),
            json!([]),
        ];
        let cluster = cluster_from_objects(&nodes, &[], &[], &[]);
        assert_eq!(
            cluster.nodes,
            [
                NodeInfo {
                    name: "kube-1".into(),
                    ip: Ipv4Addr::new(10, 10, 95, 205),
                    prefix_len: 20,
                    gateway: Some(Ipv4Addr::new(10, 10, 80, 1)),
                    ipip_tunnel: Some(Ipv4Addr::new(192, 168, 126, 64)),
                    vxlan_tunnel: Some(Ipv4Addr::new(192, 168, 126, 65)),
                    vxlan_mac: Some("66:aa:bb:cc:dd:ee".into()),
                    bgp_as: None,
                },
                NodeInfo {
                    name: "bad-tunnels".into(),
                    ip: Ipv4Addr::new(10, 10, 95, 206),
                    prefix_len: 20,
                    gateway: None,
                    ipip_tunnel: None,
                    vxlan_tunnel: None,
                    vxlan_mac: None,
                    bgp_as: None,
                },
            ]
        );
    }

    #[test]
    fn blocks_read_cidr_and_host_affinity() {
        let blocks = [
            json!({"spec": {"cidr": "192.168.145.64/26", "affinity": "host:kube-0"}}),
            json!({"spec": {"cidr": "192.168.145.100/26", "affinity": "virtual:x"}}),
            json!({"spec": {"cidr": "192.168.1.0/26", "affinity": "host:kube-9", "deleted": true}}),
            json!({"spec": {"cidr": "fd00::/122", "affinity": "host:kube-0"}}),
            json!({"spec": {"cidr": "192.168.2.0/99"}}),
            json!({"spec": {}}),
            json!(null),
        ];
        let cluster = cluster_from_objects(&[], &blocks, &[], &[]);
        assert_eq!(
            cluster.blocks,
            [
                Block {
                    network: Ipv4Addr::new(192, 168, 145, 64),
                    prefix_len: 26,
                    node: Some("kube-0".into())
                },
                Block {
                    network: Ipv4Addr::new(192, 168, 145, 64),
                    prefix_len: 26,
                    node: None
                },
            ]
        );
    }

    #[test]
    fn pods_follow_calicos_workload_rules() {
        let pod = |name: &str, extra: Value| {
            let mut pod = json!({
                "metadata": {"namespace": "default", "name": name},
                "spec": {"nodeName": "kube-0"},
                "status": {"phase": "Running", "podIP": "192.168.145.65"}
            });
            merge(&mut pod, extra);
            pod
        };
        let pods = [
            pod("plain", json!({})),
            pod("host-network", json!({"spec": {"hostNetwork": true}})),
            pod("unscheduled", json!({"spec": {"nodeName": null}})),
            pod("no-ip", json!({"status": {"podIP": null}})),
            pod("succeeded", json!({"status": {"phase": "Succeeded"}})),
            pod("failed", json!({"status": {"phase": "Failed"}})),
            pod(
                "terminating",
                json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}}),
            ),
            pod(
                "torn-down",
                json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z",
                                    "annotations": {"cni.projectcalico.org/podIP": ""}}}),
            ),
            pod(
                "dual-stack",
                json!({"status": {"podIP": "fd00::1", "podIPs": [{"ip": "fd00::1"}, {"ip": "192.168.145.70"}]}}),
            ),
            pod(
                "annotation-only",
                json!({"status": {"podIP": null},
                       "metadata": {"annotations": {"cni.projectcalico.org/podIP": "192.168.145.71/32"}}}),
            ),
            pod("garbage-ip", json!({"status": {"podIP": "1.2.3"}})),
            json!({"metadata": {"name": "no-namespace"}, "spec": {"nodeName": "kube-0"},
                   "status": {"podIP": "192.168.145.72"}}),
        ];
        let cluster = cluster_from_objects(&[], &[], &[], &pods);
        let kept: Vec<(&str, String)> = cluster
            .pods
            .iter()
            .map(|pod| (pod.name.as_str(), pod.ip.to_string()))
            .collect();
        assert_eq!(
            kept,
            [
                ("plain", "192.168.145.65".to_owned()),
                ("terminating", "192.168.145.65".to_owned()),
                ("dual-stack", "192.168.145.70".to_owned()),
                ("annotation-only", "192.168.145.71".to_owned()),
            ]
        );
    }

    /// Overlays `extra` onto `target`, object by object; `null` removes a key.
    fn merge(target: &mut Value, extra: Value) {
        match (target, extra) {
            (Value::Object(target), Value::Object(extra)) => {
                for (key, value) in extra {
                    if value.is_null() {
                        target.remove(&key);
                    } else {
                        merge(target.entry(key).or_insert(Value::Null), value);
                    }
                }
            }
            (target, extra) => *target = extra,
        }
    }
}
