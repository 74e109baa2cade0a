//! The Node object a kubelet registers and keeps fresh, and its Lease heartbeat.
//!
//! The pure half builds the objects ([`node_object`], [`node_status`], [`node_lease`]) from a
//! [`NodeIdentity`] and the host's facts; the thin half ([`register`], [`heartbeat`]) writes them
//! through the API. Shapes follow upstream's kubelet (`pkg/kubelet/kubelet_node_status.go`,
//! `pkg/kubelet/nodestatus/setters.go`, `pkg/kubelet/nodelease`): the labels kubeadm and the
//! kubelet put on a node, the control-plane role and taint on `kube-0`, capacity minus the
//! eviction threshold as allocatable, the four conditions with heartbeat times, and a Lease in
//! `kube-node-lease` owned by the Node.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

/// The Kubernetes release our kubelet reports (the API server serves v1.33).
pub const KUBELET_VERSION: &str = "v1.33.0";
/// Upstream's kubelet port, advertised in `status.daemonEndpoints`.
pub const KUBELET_PORT: i32 = 10250;
/// How long a Lease stays valid without renewal (kubelet `--node-lease-duration-seconds`).
pub const LEASE_DURATION_SECONDS: i32 = 40;
/// Namespace of node heartbeats.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// The label and taint kubeadm puts on control-plane nodes.
pub const CONTROL_PLANE_ROLE: &str = "node-role.kubernetes.io/control-plane";

/// Who a node is: everything that differs between `kube-0`, `kube-1`, ...
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeIdentity {
    pub name: String,
    /// The node's `InternalIP` (for a hollow node an underlay address nothing is sent to).
    pub internal_ip: IpAddr,
    /// Labelled and tainted as a control-plane node, so user pods stay off it.
    pub control_plane: bool,
    /// `status.nodeInfo.containerRuntimeVersion`, e.g. `kubelab://0.1.0`.
    pub runtime_version: String,
    pub capacity: NodeCapacity,
    /// `status.daemonEndpoints.kubeletEndpoint.Port`: where the API server reads logs; 0 for a
    /// node that serves none (a hollow node, whose address must never be dialled).
    pub kubelet_port: i32,
}

/// What the node offers the scheduler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeCapacity {
    pub cpu: String,
    pub memory: String,
    /// `memory` minus the kubelet's default hard eviction threshold (100Mi).
    pub allocatable_memory: String,
    pub pods: String,
    pub ephemeral_storage: String,
    /// `ephemeral_storage` minus the default `nodefs.available` threshold (10 %).
    pub allocatable_ephemeral_storage: String,
}

impl Default for NodeCapacity {
    /// A small VM like the course's: 2 CPUs, 4 GiB, 110 pods, 20 GiB of disk.
    fn default() -> NodeCapacity {
        NodeCapacity {
            cpu: "2".into(),
            memory: "4Gi".into(),
            allocatable_memory: "3996Mi".into(),
            pods: "110".into(),
            ephemeral_storage: "20Gi".into(),
            allocatable_ephemeral_storage: "18Gi".into(),
        }
    }
}

/// Facts about the machine the kubelet runs on, read once ([`HostFacts::detect`]) and
/// injectable in tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostFacts {
    pub kernel_version: String,
    pub os_image: String,
    /// Go's `GOARCH` spelling: `amd64`, `arm64`, ...
    pub architecture: String,
}

impl HostFacts {
    /// The running kernel's release (`uname -r`), `/etc/os-release`'s PRETTY_NAME and the
    /// architecture; unreadable facts become `unknown` rather than failing registration.
    pub fn detect() -> HostFacts {
        let kernel_version = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        let os_image = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|s| pretty_name(&s))
            .unwrap_or_else(|| "Linux".into());
        HostFacts {
            kernel_version,
            os_image,
            architecture: go_arch(std::env::consts::ARCH).to_string(),
        }
    }
}

fn pretty_name(os_release: &str) -> Option<String> {
    os_release.lines().find_map(|l| {
        let v = l.strip_prefix("PRETTY_NAME=")?;
        Some(v.trim().trim_matches('"').to_string())
    })
}

/// Rust's architecture names in Go's spelling, which Kubernetes labels use.
pub fn go_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// A stable 32-hex-digit identifier derived from the node name (machine-id, boot-id and system
/// UUID look like a real host's and do not change across restarts).
fn stable_hex(node: &str, purpose: &str) -> String {
    let digest = Sha256::digest(format!("{purpose}/{node}").as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

fn uuid_from_hex(hex: &str) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The labels a kubelet (and kubeadm, for the control plane) sets on its node.
pub fn node_labels(id: &NodeIdentity, host: &HostFacts) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        ("beta.kubernetes.io/arch".into(), host.architecture.clone()),
        ("beta.kubernetes.io/os".into(), "linux".into()),
        ("kubernetes.io/arch".into(), host.architecture.clone()),
        ("kubernetes.io/hostname".into(), id.name.clone()),
        ("kubernetes.io/os".into(), "linux".into()),
    ]);
    if id.control_plane {
        labels.insert(CONTROL_PLANE_ROLE.into(), String::new());
        labels.insert(
            "node.kubernetes.io/exclude-from-external-load-balancers".into(),
            String::new(),
        );
    }
    labels
}

/// The Node as first registered: metadata and spec (the status is written separately, through
/// the status subresource, as the kubelet does).
pub fn node_object(id: &NodeIdentity, host: &HostFacts) -> Node {
    let taints = id.control_plane.then(|| {
        vec![Taint {
            key: CONTROL_PLANE_ROLE.into(),
            effect: "NoSchedule".into(),
            value: None,
            time_added: None,
        }]
    });
    Node {
        metadata: ObjectMeta {
            name: Some(id.name.clone()),
            labels: Some(node_labels(id, host)),
            annotations: Some(BTreeMap::from([
                ("node.alpha.kubernetes.io/ttl".into(), "0".into()),
                (
                    "volumes.kubernetes.io/controller-managed-attach-detach".into(),
                    "true".into(),
                ),
            ])),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints,
            ..Default::default()
        }),
        status: None,
    }
}

fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: &Time,
    previous: Option<&NodeStatus>,
) -> NodeCondition {
    // The transition time moves only when the status does (upstream's setters do the same).
    let transition = previous
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
        .filter(|c| c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    NodeCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(transition),
    }
}

/// The node's status at `now`: a healthy node with no pressure. `previous` keeps each
/// condition's `lastTransitionTime` while its status stays the same.
pub fn node_status(
    id: &NodeIdentity,
    host: &HostFacts,
    now: &Time,
    previous: Option<&NodeStatus>,
) -> NodeStatus {
    let c = &id.capacity;
    let q = |s: &str| Quantity(s.to_string());
    let capacity = BTreeMap::from([
        ("cpu".into(), q(&c.cpu)),
        ("ephemeral-storage".into(), q(&c.ephemeral_storage)),
        ("hugepages-1Gi".into(), q("0")),
        ("hugepages-2Mi".into(), q("0")),
        ("memory".into(), q(&c.memory)),
        ("pods".into(), q(&c.pods)),
    ]);
    let allocatable = BTreeMap::from([
        ("cpu".into(), q(&c.cpu)),
        (
            "ephemeral-storage".into(),
            q(&c.allocatable_ephemeral_storage),
        ),
        ("hugepages-1Gi".into(), q("0")),
        ("hugepages-2Mi".into(), q("0")),
        ("memory".into(), q(&c.allocatable_memory)),
        ("pods".into(), q(&c.pods)),
    ]);
    let machine = stable_hex(&id.name, "machine-id");
    NodeStatus {
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: id.internal_ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: id.name.clone(),
            },
        ]),
        allocatable: Some(allocatable),
        capacity: Some(capacity),
        conditions: Some(vec![
            condition(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
                now,
                previous,
            ),
            condition(
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
                now,
                previous,
            ),
            condition(
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
                now,
                previous,
            ),
            condition(
                "Ready",
                "True",
                "KubeletReady",
                "kubelet is posting ready status",
                now,
                previous,
            ),
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: id.kubelet_port,
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: host.architecture.clone(),
            boot_id: uuid_from_hex(&stable_hex(&id.name, "boot-id")),
            container_runtime_version: id.runtime_version.clone(),
            kernel_version: host.kernel_version.clone(),
            kube_proxy_version: KUBELET_VERSION.into(),
            kubelet_version: KUBELET_VERSION.into(),
            machine_id: machine.clone(),
            operating_system: "linux".into(),
            os_image: host.os_image.clone(),
            system_uuid: uuid_from_hex(&machine),
            swap: None,
        }),
        ..Default::default()
    }
}

/// The node's heartbeat Lease, owned by the Node so it goes away with it.
pub fn node_lease(node: &str, node_uid: Option<&str>, now: &MicroTime) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(node.into()),
            namespace: Some(NODE_LEASE_NAMESPACE.into()),
            owner_references: node_uid.map(|uid| {
                vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: node.into(),
                    uid: uid.into(),
                    controller: None,
                    block_owner_deletion: None,
                }]
            }),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(node.into()),
            lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
            renew_time: Some(now.clone()),
            ..Default::default()
        }),
    }
}

fn now() -> Time {
    Time(jiff::Timestamp::now())
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// Creates the Node, or brings an existing one's labels up to date (a restarted kubelet
/// re-registers; taints an admin changed are left alone), then writes its status.
/// Returns the Node's uid.
pub async fn register(
    client: &Client,
    id: &NodeIdentity,
    host: &HostFacts,
) -> Result<String, kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let desired = node_object(id, host);
    // Created with its status, as upstream's kubelet does (Node create keeps status): the
    // node lifecycle controller never sees a node without a Ready condition, which it would
    // taint not-ready.
    let with_status = Node {
        status: Some(node_status(id, host, &now(), None)),
        ..desired.clone()
    };
    match nodes.create(&PostParams::default(), &with_status).await {
        Ok(node) if has_ready_condition(&node) => return Ok(node.uid().unwrap_or_default()),
        // A server that dropped the status on create: write it through the subresource.
        Ok(node) => {
            update_status(&nodes, id, host, None).await?;
            return Ok(node.uid().unwrap_or_default());
        }
        Err(e) if is_status(&e, 409) => {}
        Err(e) => return Err(e),
    }
    // Re-registration: labels brought up to date, status refreshed.
    let patch = serde_json::json!({"metadata": {"labels": desired.metadata.labels}});
    let node = nodes
        .patch(&id.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    update_status(&nodes, id, host, node.status.as_ref()).await?;
    Ok(node.uid().unwrap_or_default())
}

fn has_ready_condition(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready"))
}

async fn update_status(
    nodes: &Api<Node>,
    id: &NodeIdentity,
    host: &HostFacts,
    previous: Option<&NodeStatus>,
) -> Result<Node, kube::Error> {
    let status = node_status(id, host, &now(), previous);
    // Strategic merge: conditions merge by type, so a condition another component owns (say
    // NetworkUnavailable) survives.
    let patch = serde_json::json!({ "status": status });
    nodes
        .patch_status(&id.name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
}

/// How often the kubelet writes its heartbeats.
#[derive(Clone, Debug)]
pub struct HeartbeatConfig {
    /// Lease renewal (upstream: a quarter of the lease duration, 10 s).
    pub lease_interval: Duration,
    /// Node status with fresh `lastHeartbeatTime`s.
    pub status_interval: Duration,
}

impl Default for HeartbeatConfig {
    fn default() -> HeartbeatConfig {
        HeartbeatConfig {
            lease_interval: Duration::from_secs(10),
            status_interval: Duration::from_secs(10),
        }
    }
}

/// Renews the Lease and the node status forever. A failed write is logged and retried at the
/// next tick; a Node that was deleted is registered again, as a kubelet does.
pub async fn heartbeat(
    client: Client,
    id: NodeIdentity,
    host: HostFacts,
    mut node_uid: String,
    config: HeartbeatConfig,
) {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), NODE_LEASE_NAMESPACE);
    let mut lease_tick = tokio::time::interval(config.lease_interval);
    let mut status_tick = tokio::time::interval(config.status_interval);
    // The first status tick fires at once; registration has just written the status.
    status_tick.tick().await;
    loop {
        tokio::select! {
            _ = lease_tick.tick() => {
                if let Err(e) = renew_lease(&leases, &id.name, &node_uid).await {
                    tracing::warn!(node = %id.name, error = %e, "lease renewal failed");
                }
            }
            _ = status_tick.tick() => {
                let previous = match nodes.get_opt(&id.name).await {
                    Ok(Some(n)) => n.status,
                    Ok(None) => {
                        match register(&client, &id, &host).await {
                            Ok(uid) => {
                                tracing::info!(node = %id.name, "node was deleted; registered it again");
                                node_uid = uid;
                            }
                            Err(e) => tracing::warn!(node = %id.name, error = %e, "re-registration failed"),
                        }
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(node = %id.name, error = %e, "reading node failed");
                        continue;
                    }
                };
                if let Err(e) = update_status(&nodes, &id, &host, previous.as_ref()).await {
                    tracing::warn!(node = %id.name, error = %e, "node status update failed");
                }
            }
        }
    }
}

/// Creates or renews the node's Lease.
pub async fn renew_lease(
    leases: &Api<Lease>,
    node: &str,
    node_uid: &str,
) -> Result<(), kube::Error> {
    let now = MicroTime(jiff::Timestamp::now());
    let patch = serde_json::json!({"spec": {
        "holderIdentity": node,
        "leaseDurationSeconds": LEASE_DURATION_SECONDS,
        "renewTime": now,
    }});
    match leases
        .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, 404) => {
            let uid = Some(node_uid).filter(|u| !u.is_empty());
            match leases
                .create(&PostParams::default(), &node_lease(node, uid, &now))
                .await
            {
                Ok(_) => Ok(()),
                // Created concurrently: the next tick renews it.
                Err(e) if is_status(&e, 409) => Ok(()),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(name: &str, control_plane: bool) -> NodeIdentity {
        NodeIdentity {
            name: name.into(),
            internal_ip: "10.0.0.11".parse().unwrap(),
            control_plane,
            runtime_version: "kubelab://0.1.0".into(),
            capacity: NodeCapacity::default(),
            kubelet_port: KUBELET_PORT,
        }
    }

    fn host() -> HostFacts {
        HostFacts {
            kernel_version: "6.1.0".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            architecture: "amd64".into(),
        }
    }

    fn at(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    #[test]
    fn control_plane_node_is_labelled_and_tainted() {
        let node = node_object(&identity("kube-0", true), &host());
        let labels = node.metadata.labels.unwrap();
        assert_eq!(labels.get(CONTROL_PLANE_ROLE).map(String::as_str), Some(""));
        assert_eq!(labels["kubernetes.io/hostname"], "kube-0");
        assert_eq!(labels["kubernetes.io/os"], "linux");
        assert_eq!(labels["kubernetes.io/arch"], "amd64");
        let taints = node.spec.unwrap().taints.unwrap();
        assert_eq!(taints.len(), 1);
        assert_eq!(taints[0].key, CONTROL_PLANE_ROLE);
        assert_eq!(taints[0].effect, "NoSchedule");
    }

    #[test]
    fn worker_has_no_role_and_no_taint() {
        let node = node_object(&identity("kube-1", false), &host());
        assert!(
            !node
                .metadata
                .labels
                .unwrap()
                .contains_key(CONTROL_PLANE_ROLE)
        );
        assert_eq!(node.spec.unwrap().taints, None);
    }

    #[test]
    fn status_reports_ready_addresses_and_info() {
        let status = node_status(
            &identity("kube-1", false),
            &host(),
            &at("2025-01-01T00:00:00Z"),
            None,
        );
        let value = serde_json::to_value(&status).unwrap();
        assert_eq!(
            value["addresses"],
            serde_json::json!([
                {"type": "InternalIP", "address": "10.0.0.11"},
                {"type": "Hostname", "address": "kube-1"},
            ])
        );
        assert_eq!(value["capacity"]["memory"], "4Gi");
        assert_eq!(value["allocatable"]["memory"], "3996Mi");
        assert_eq!(value["capacity"]["pods"], "110");
        assert_eq!(value["daemonEndpoints"]["kubeletEndpoint"]["Port"], 10250);
        assert_eq!(value["nodeInfo"]["kubeletVersion"], "v1.33.0");
        assert_eq!(
            value["nodeInfo"]["containerRuntimeVersion"],
            "kubelab://0.1.0"
        );
        assert_eq!(value["nodeInfo"]["kernelVersion"], "6.1.0");
        let ready = status
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "True");
        assert_eq!(ready.reason.as_deref(), Some("KubeletReady"));
        assert_eq!(
            ready.message.as_deref(),
            Some("kubelet is posting ready status")
        );
    }

    #[test]
    fn heartbeat_moves_heartbeat_time_but_keeps_transition_time() {
        let id = identity("kube-1", false);
        let first = node_status(&id, &host(), &at("2025-01-01T00:00:00Z"), None);
        let second = node_status(&id, &host(), &at("2025-01-01T00:00:10Z"), Some(&first));
        for c in second.conditions.unwrap() {
            assert_eq!(c.last_heartbeat_time, Some(at("2025-01-01T00:00:10Z")));
            assert_eq!(c.last_transition_time, Some(at("2025-01-01T00:00:00Z")));
        }
    }

    #[test]
    fn identifiers_are_stable_per_node() {
        let a = node_status(
            &identity("kube-1", false),
            &host(),
            &at("2025-01-01T00:00:00Z"),
            None,
        );
        let b = node_status(
            &identity("kube-1", false),
            &host(),
            &at("2025-02-01T00:00:00Z"),
            None,
        );
        let c = node_status(
            &identity("kube-2", false),
            &host(),
            &at("2025-01-01T00:00:00Z"),
            None,
        );
        let info = |s: &NodeStatus| s.node_info.clone().unwrap();
        assert_eq!(info(&a).machine_id, info(&b).machine_id);
        assert_ne!(info(&a).machine_id, info(&c).machine_id);
        assert_eq!(info(&a).system_uuid.len(), 36);
    }

    #[test]
    fn lease_is_owned_by_the_node() {
        let lease = node_lease(
            "kube-1",
            Some("uid-1"),
            &MicroTime("2025-01-01T00:00:00Z".parse().unwrap()),
        );
        let value = serde_json::to_value(&lease).unwrap();
        assert_eq!(value["metadata"]["namespace"], "kube-node-lease");
        assert_eq!(value["metadata"]["ownerReferences"][0]["kind"], "Node");
        assert_eq!(value["spec"]["holderIdentity"], "kube-1");
        assert_eq!(value["spec"]["leaseDurationSeconds"], 40);
    }

    #[test]
    fn go_architecture_names() {
        assert_eq!(go_arch("x86_64"), "amd64");
        assert_eq!(go_arch("aarch64"), "arm64");
    }

    #[test]
    fn pretty_name_from_os_release() {
        assert_eq!(
            pretty_name("NAME=Debian\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n").as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
    }
}
