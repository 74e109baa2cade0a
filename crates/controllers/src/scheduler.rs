//! kube-scheduler's `default-scheduler`: binds each pending pod (no `spec.nodeName`, our
//! scheduler name, not being deleted) to a node through `POST pods/<name>/binding`.
//!
//! The pure core mirrors upstream's default plugins that matter without volumes:
//! filters in upstream's order — NodeUnschedulable, TaintToleration (with the not-ready and
//! unreachable taints a node's Ready condition implies, so a node the node lifecycle controller
//! has not tainted yet is treated as if it had), NodeAffinity (nodeSelector and required node
//! affinity incl. `matchFields metadata.name`), NodePorts, NodeResourcesFit (cpu, memory, pod
//! count) — then a score that spreads one owner's replicas (fewest pods of the same controller
//! first), avoids untolerated PreferNoSchedule taints, honours preferred node affinity and
//! prefers the least requested node; ties are broken at random like upstream's `selectHost`.
//! A pod that fits nowhere gets `PodScheduled=False` reason `Unschedulable` with upstream's
//! `0/N nodes are available: ...` message and a `FailedScheduling` event.
//!
//! The loop keeps an in-memory cache of nodes and of where every pod is, fed by two watches,
//! so scheduling a pod costs no API call but its binding. A pod counts on its node as soon as
//! its binding is sent (upstream's "assumed" pods); a failed binding takes it back. Bindings run
//! concurrently (bounded). Unschedulable pods wait until a node or a placed pod changes (with
//! upstream's 1 s..10 s backoff) or a minute passes. Nothing here cannot be rebuilt from the API.
//!
//! Not implemented: preemption (the message says so as upstream's does when no victim exists),
//! pod (anti-)affinity, topology spread constraints, volumes, scheduling gates, extended
//! resources.

use crate::Config;
use crate::events::{Recorder, object_reference};
use crate::util::{first_untolerated, node_matches_term, node_matches_terms, quantity_milli};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    Binding, Container, Node, ObjectReference, Pod, PodCondition, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore};

/// The scheduler name pods ask for by default (`spec.schedulerName`).
pub const SCHEDULER_NAME: &str = "default-scheduler";

/// Taint keys the node lifecycle controller manages (`node.kubernetes.io/...`).
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// Requests a pod without any get counted as for scoring (upstream's non-zero defaults), so
/// request-less pods still spread.
const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// Amounts the scheduler adds up per node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    /// Bytes.
    pub memory: i64,
    /// Number of pods.
    pub pods: i64,
}

impl Resources {
    fn plus(self, other: Resources) -> Resources {
        Resources {
            milli_cpu: self.milli_cpu.saturating_add(other.milli_cpu),
            memory: self.memory.saturating_add(other.memory),
            pods: self.pods.saturating_add(other.pods),
        }
    }

    fn minus(self, other: Resources) -> Resources {
        Resources {
            milli_cpu: self.milli_cpu.saturating_sub(other.milli_cpu),
            memory: self.memory.saturating_sub(other.memory),
            pods: self.pods.saturating_sub(other.pods),
        }
    }

    fn max(self, other: Resources) -> Resources {
        Resources {
            milli_cpu: self.milli_cpu.max(other.milli_cpu),
            memory: self.memory.max(other.memory),
            pods: self.pods.max(other.pods),
        }
    }
}

/// A host port a container claims. An empty or `0.0.0.0` IP claims the port on every address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub protocol: String,
    pub ip: String,
    pub port: i32,
}

impl HostPort {
    fn conflicts_with(&self, other: &HostPort) -> bool {
        let wildcard = |ip: &str| ip.is_empty() || ip == "0.0.0.0";
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || wildcard(&self.ip) || wildcard(&other.ip))
    }
}

/// What one pod takes from the node it is placed on.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodUsage {
    /// Declared requests (pods = 1), for the fit filter.
    pub requests: Resources,
    /// Requests with upstream's defaults for containers that declare none, for scoring.
    pub nonzero: Resources,
    pub host_ports: Vec<HostPort>,
    /// UID of the pod's controller (ReplicaSet, DaemonSet, ...), whose replicas are spread.
    pub owner_uid: Option<String>,
}

impl PodUsage {
    /// Upstream's effective requests: the containers' sum plus sidecars, or the largest init
    /// container if that is more (init containers run one at a time), plus the pod overhead.
    pub fn of(pod: &Pod) -> PodUsage {
        let spec = pod.spec.as_ref();
        let containers = spec.map(|s| s.containers.as_slice()).unwrap_or(&[]);
        let init_containers = spec
            .and_then(|s| s.init_containers.as_deref())
            .unwrap_or(&[]);
        let effective = |nonzero: bool| {
            let mut sum = Resources::default();
            for c in containers {
                sum = sum.plus(container_requests(c, nonzero));
            }
            let mut sidecars = Resources::default();
            let mut init_peak = Resources::default();
            for c in init_containers {
                let r = container_requests(c, nonzero);
                if c.restart_policy.as_deref() == Some("Always") {
                    sidecars = sidecars.plus(r);
                    init_peak = init_peak.max(sidecars);
                } else {
                    init_peak = init_peak.max(sidecars.plus(r));
                }
            }
            let mut total = sum.plus(sidecars).max(init_peak);
            if let Some(overhead) = spec.and_then(|s| s.overhead.as_ref()) {
                total = total.plus(resource_list(overhead));
            }
            total.pods = 1;
            total
        };
        let host_ports = containers
            .iter()
            .chain(init_containers)
            .flat_map(|c| c.ports.iter().flatten())
            .filter(|p| p.host_port.is_some_and(|h| h > 0))
            .map(|p| HostPort {
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                ip: p.host_ip.clone().unwrap_or_default(),
                port: p.host_port.unwrap_or_default(),
            })
            .collect();
        PodUsage {
            requests: effective(false),
            nonzero: effective(true),
            host_ports,
            owner_uid: crate::util::controller_of(pod).map(|r| r.uid.clone()),
        }
    }
}

fn resource_list(
    list: &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
) -> Resources {
    let milli = |name: &str| list.get(name).and_then(|q| quantity_milli(&q.0));
    Resources {
        milli_cpu: clamp(milli("cpu")),
        memory: clamp(milli("memory").map(|m| (m + 999).div_euclid(1000))),
        pods: clamp(milli("pods").map(|m| (m + 999).div_euclid(1000))),
    }
}

fn clamp(v: Option<i128>) -> i64 {
    v.map(|v| v.clamp(0, i64::MAX as i128) as i64)
        .unwrap_or_default()
}

/// One container's requests; a resource with a limit but no request requests its limit (as
/// the API server's defaulting makes it); `nonzero` fills in upstream's scoring defaults.
fn container_requests(c: &Container, nonzero: bool) -> Resources {
    let resources = c.resources.as_ref();
    let quantity = |name: &str| {
        resources
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get(name))
            .or_else(|| {
                resources
                    .and_then(|r| r.limits.as_ref())
                    .and_then(|l| l.get(name))
            })
            .and_then(|q| quantity_milli(&q.0))
    };
    let cpu = quantity("cpu");
    let memory = quantity("memory").map(|m| (m + 999).div_euclid(1000));
    Resources {
        milli_cpu: match cpu {
            None if nonzero => DEFAULT_MILLI_CPU_REQUEST,
            v => clamp(v),
        },
        memory: match memory {
            None if nonzero => DEFAULT_MEMORY_REQUEST,
            v => clamp(v),
        },
        pods: 0,
    }
}

/// What the pods placed on one node take, summed.
#[derive(Clone, Debug, Default)]
pub struct Placed {
    pub requested: Resources,
    pub nonzero: Resources,
    host_ports: HashMap<HostPort, u32>,
    owners: HashMap<String, u32>,
}

impl Placed {
    pub fn add(&mut self, usage: &PodUsage) {
        self.requested = self.requested.plus(usage.requests);
        self.nonzero = self.nonzero.plus(usage.nonzero);
        for p in &usage.host_ports {
            *self.host_ports.entry(p.clone()).or_default() += 1;
        }
        if let Some(owner) = &usage.owner_uid {
            *self.owners.entry(owner.clone()).or_default() += 1;
        }
    }

    pub fn remove(&mut self, usage: &PodUsage) {
        self.requested = self.requested.minus(usage.requests);
        self.nonzero = self.nonzero.minus(usage.nonzero);
        for p in &usage.host_ports {
            if let Some(n) = self.host_ports.get_mut(p) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.host_ports.remove(p);
                }
            }
        }
        if let Some(owner) = &usage.owner_uid
            && let Some(n) = self.owners.get_mut(owner)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.owners.remove(owner);
            }
        }
    }

    /// How many placed pods the controller with this UID owns.
    pub fn pods_of_owner(&self, owner_uid: &str) -> u32 {
        self.owners.get(owner_uid).copied().unwrap_or_default()
    }

    fn port_taken(&self, wanted: &HostPort) -> bool {
        self.host_ports.keys().any(|p| p.conflicts_with(wanted))
    }
}

/// A pod being scheduled, with what it asks for worked out once rather than per node.
pub struct Incoming<'a> {
    pub pod: &'a Pod,
    pub usage: PodUsage,
}

impl<'a> Incoming<'a> {
    pub fn new(pod: &'a Pod) -> Incoming<'a> {
        Incoming {
            pod,
            usage: PodUsage::of(pod),
        }
    }

    fn tolerations(&self) -> &'a [Toleration] {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.as_deref())
            .unwrap_or(&[])
    }
}

/// A resource a node has too little of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shortage {
    Pods,
    Cpu,
    Memory,
}

/// Why a node cannot take a pod (the first filter that failed, as upstream stops there).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// `spec.unschedulable` (cordoned) and the pod does not tolerate it.
    NodeUnschedulable,
    /// A NoSchedule/NoExecute taint the pod does not tolerate.
    UntoleratedTaint { key: String, value: String },
    /// nodeSelector or required node affinity.
    NodeAffinity,
    /// A requested host port is taken.
    HostPorts,
    /// Not enough allocatable left, per resource in upstream's order.
    Insufficient(Vec<Shortage>),
}

impl Reason {
    /// The histogram entries upstream counts for this failure.
    pub fn messages(&self) -> Vec<String> {
        match self {
            Reason::NodeUnschedulable => vec!["node(s) were unschedulable".into()],
            Reason::UntoleratedTaint { key, value } => {
                vec![format!("node(s) had untolerated taint {{{key}: {value}}}")]
            }
            Reason::NodeAffinity => {
                vec!["node(s) didn't match Pod's node affinity/selector".into()]
            }
            Reason::HostPorts => {
                vec!["node(s) didn't have free ports for the requested pod ports".into()]
            }
            Reason::Insufficient(shortages) => shortages
                .iter()
                .map(|s| match s {
                    Shortage::Pods => "Too many pods".to_string(),
                    Shortage::Cpu => "Insufficient cpu".to_string(),
                    Shortage::Memory => "Insufficient memory".to_string(),
                })
                .collect(),
        }
    }

    /// Whether evicting pods from the node could make room (upstream's `Unschedulable`
    /// rather than `UnschedulableAndUnresolvable`).
    pub fn preemption_might_help(&self) -> bool {
        matches!(self, Reason::HostPorts | Reason::Insufficient(_))
    }
}

/// The taints a node effectively has: its own, plus the NoSchedule taint its Ready condition
/// implies when the node lifecycle controller has not added it yet (a node without a Ready
/// condition is not ready, as the kubelet registers it tainted).
pub fn effective_taints(node: &Node) -> Vec<Taint> {
    let mut taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let implied = match ready_status(node) {
        Some("True") => None,
        Some("Unknown") => Some(TAINT_UNREACHABLE),
        _ => Some(TAINT_NOT_READY),
    };
    if let Some(key) = implied
        && !taints
            .iter()
            .any(|t| t.key == key && t.effect == "NoSchedule")
    {
        taints.push(Taint {
            key: key.into(),
            effect: "NoSchedule".into(),
            value: None,
            time_added: None,
        });
    }
    taints
}

/// The status of the node's Ready condition, if it has one.
pub fn ready_status(node: &Node) -> Option<&str> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.as_str())
}

/// The node's allocatable resources (capacity when allocatable is unset, as the API server's
/// defaulting copies it).
pub fn allocatable(node: &Node) -> Resources {
    let status = node.status.as_ref();
    status
        .and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()))
        .map(resource_list)
        .unwrap_or_default()
}

/// Whether `node` can take the pod given what is already `placed` on it. Filters run in
/// upstream's order and the first failure is the reason.
pub fn filter(pod: &Incoming, node: &Node, placed: &Placed) -> Result<(), Reason> {
    let tolerations = pod.tolerations();
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        let cordon = Taint {
            key: TAINT_UNSCHEDULABLE.into(),
            effect: "NoSchedule".into(),
            value: None,
            time_added: None,
        };
        if !tolerations
            .iter()
            .any(|t| crate::util::tolerates(t, &cordon))
        {
            return Err(Reason::NodeUnschedulable);
        }
    }
    let taints = effective_taints(node);
    if let Some(t) = first_untolerated(&taints, tolerations, &["NoSchedule", "NoExecute"]) {
        return Err(Reason::UntoleratedTaint {
            key: t.key.clone(),
            value: t.value.clone().unwrap_or_default(),
        });
    }
    if !matches_node_selector_and_affinity(pod.pod, node) {
        return Err(Reason::NodeAffinity);
    }
    if pod.usage.host_ports.iter().any(|p| placed.port_taken(p)) {
        return Err(Reason::HostPorts);
    }
    let free = allocatable(node).minus(placed.requested);
    let wanted = pod.usage.requests;
    let mut short = Vec::new();
    if wanted.pods > free.pods {
        short.push(Shortage::Pods);
    }
    if wanted.milli_cpu > 0 && wanted.milli_cpu > free.milli_cpu {
        short.push(Shortage::Cpu);
    }
    if wanted.memory > 0 && wanted.memory > free.memory {
        short.push(Shortage::Memory);
    }
    if short.is_empty() {
        Ok(())
    } else {
        Err(Reason::Insufficient(short))
    }
}

fn matches_node_selector_and_affinity(pod: &Pod, node: &Node) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    if let Some(selector) = &spec.node_selector {
        let labels = node.metadata.labels.as_ref();
        if !selector
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        {
            return false;
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    match required {
        Some(selector) => node_matches_terms(node, &selector.node_selector_terms),
        None => true,
    }
}

/// How much a node is preferred; bigger is better, compared field by field in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Score {
    /// Minus the pods of the same controller already on the node: replicas spread first.
    pub spread: i64,
    /// Minus the PreferNoSchedule taints the pod does not tolerate.
    pub taint_preference: i64,
    /// Sum of the weights of the preferred node affinity terms the node matches.
    pub node_affinity: i64,
    /// Upstream's LeastAllocated (0..=100): free share of cpu and memory after placing the pod.
    pub least_requested: i64,
}

/// Scores a node that passed [`filter`].
pub fn score(pod: &Incoming, node: &Node, placed: &Placed) -> Score {
    let spread = pod
        .usage
        .owner_uid
        .as_deref()
        .map(|owner| -i64::from(placed.pods_of_owner(owner)))
        .unwrap_or_default();
    let tolerations: Vec<Toleration> = pod
        .tolerations()
        .iter()
        .filter(|t| {
            t.effect
                .as_deref()
                .is_none_or(|e| e.is_empty() || e == "PreferNoSchedule")
        })
        .cloned()
        .collect();
    let taint_preference = -(node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .map(|taints| {
            taints
                .iter()
                .filter(|t| t.effect == "PreferNoSchedule")
                .filter(|t| !tolerations.iter().any(|tol| crate::util::tolerates(tol, t)))
                .count()
        })
        .unwrap_or_default() as i64);
    let node_affinity = pod
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|terms| {
            terms
                .iter()
                .filter(|t| node_matches_term(node, &t.preference))
                .map(|t| i64::from(t.weight))
                .sum()
        })
        .unwrap_or_default();
    let capacity = allocatable(node);
    let used = placed.nonzero.plus(pod.usage.nonzero);
    let free_share = |cap: i64, used: i64| {
        if cap <= 0 || used > cap {
            0
        } else {
            (cap - used).saturating_mul(100) / cap
        }
    };
    let least_requested = (free_share(capacity.milli_cpu, used.milli_cpu)
        + free_share(capacity.memory, used.memory))
        / 2;
    Score {
        spread,
        taint_preference,
        node_affinity,
        least_requested,
    }
}

/// Why a pod fits no node: the failure of each node, for the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FitError {
    pub num_nodes: usize,
    pub reasons: Vec<Reason>,
}

impl fmt::Display for FitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&unschedulable_message(self.num_nodes, &self.reasons))
    }
}

/// Picks a node for the pod: the best scored of those that pass [`filter`]; `pick(n)` chooses
/// among `n` equally good nodes (random in the loop, fixed in tests).
pub fn schedule<'n>(
    pod: &Incoming,
    nodes: impl IntoIterator<Item = (&'n Node, &'n Placed)>,
    pick: impl FnOnce(usize) -> usize,
) -> Result<String, FitError> {
    let mut best: Option<Score> = None;
    let mut tied: Vec<&str> = Vec::new();
    let mut reasons = Vec::new();
    let mut num_nodes = 0;
    for (node, placed) in nodes {
        num_nodes += 1;
        if let Err(reason) = filter(pod, node, placed) {
            reasons.push(reason);
            continue;
        }
        let s = score(pod, node, placed);
        let name = node.metadata.name.as_deref().unwrap_or_default();
        match best {
            Some(b) if s < b => {}
            Some(b) if s == b => tied.push(name),
            _ => {
                best = Some(s);
                tied.clear();
                tied.push(name);
            }
        }
    }
    if tied.is_empty() {
        return Err(FitError { num_nodes, reasons });
    }
    let chosen = pick(tied.len()).min(tied.len() - 1);
    Ok(tied[chosen].to_string())
}

/// Upstream's FitError text: `0/N nodes are available: <sorted histogram>. preemption: 0/N
/// nodes are available: <what preemption found>.` Preemption could only help on nodes short
/// of resources or ports, and finds no victim there (we never preempt; upstream finds none
/// among pods of equal priority either).
pub fn unschedulable_message(num_nodes: usize, reasons: &[Reason]) -> String {
    if num_nodes == 0 {
        return "no nodes available to schedule pods".into();
    }
    let mut histogram: BTreeMap<String, usize> = BTreeMap::new();
    for r in reasons {
        for m in r.messages() {
            *histogram.entry(m).or_default() += 1;
        }
    }
    let mut message = format!("0/{num_nodes} nodes are available:");
    if !histogram.is_empty() {
        message.push_str(&format!(" {}.", sorted_counts(&histogram)));
    }
    let resolvable = reasons.iter().filter(|r| r.preemption_might_help()).count();
    let mut preemption = BTreeMap::new();
    if resolvable > 0 {
        preemption.insert(
            "No preemption victims found for incoming pod".to_string(),
            resolvable,
        );
    }
    if num_nodes > resolvable {
        preemption.insert(
            "Preemption is not helpful for scheduling".to_string(),
            num_nodes - resolvable,
        );
    }
    message.push_str(&format!(
        " preemption: 0/{num_nodes} nodes are available: {}.",
        sorted_counts(&preemption)
    ));
    message
}

/// `"<count> <reason>"` entries sorted as strings and joined, like upstream's histogram.
fn sorted_counts(histogram: &BTreeMap<String, usize>) -> String {
    let mut entries: Vec<String> = histogram
        .iter()
        .map(|(reason, count)| format!("{count} {reason}"))
        .collect();
    entries.sort();
    entries.join(", ")
}

/// Whether this scheduler should place the pod: unbound, ours, alive.
pub fn wants_scheduling(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    spec.node_name.as_deref().unwrap_or_default().is_empty()
        && spec.scheduler_name.as_deref().unwrap_or(SCHEDULER_NAME) == SCHEDULER_NAME
        && pod.metadata.deletion_timestamp.is_none()
        && !matches!(phase, Some("Succeeded" | "Failed"))
        && spec.scheduling_gates.as_ref().is_none_or(|g| g.is_empty())
}

// ---------------------------------------------------------------------------------------------
// The loop.

/// How many bindings may be in flight at once.
const MAX_CONCURRENT_WRITES: usize = 64;
/// Upstream's pod backoff after a failed attempt: 1 s doubling to 10 s.
const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// An unschedulable pod is retried after this long even if nothing seems to have changed.
const UNSCHEDULABLE_RETRY: Duration = Duration::from_secs(60);

/// Where a pod is (bound) or is being bound (assumed).
struct Placement {
    node: String,
    usage: PodUsage,
    /// The binding was sent but the watch has not shown the pod bound yet.
    assumed: bool,
}

struct Waiting {
    last_attempt: Instant,
    attempts: u32,
    /// Something changed since the last attempt, so a retry after the backoff may succeed.
    cluster_changed: bool,
}

#[derive(Default)]
struct State {
    nodes: BTreeMap<String, Arc<Node>>,
    /// What makes a node fit or not, to tell a heartbeat from a change worth a retry.
    node_fingerprints: HashMap<String, String>,
    placed: HashMap<String, Placed>,
    placements: HashMap<String, Placement>,
    /// Latest version of every pod waiting for us, by UID.
    pending: HashMap<String, Arc<Pod>>,
    queue: VecDeque<String>,
    queued: HashSet<String>,
    unschedulable: HashMap<String, Waiting>,
    /// Pods with a status write in flight: not retried until it lands, so a late "failed"
    /// write cannot follow a successful binding.
    writing: HashSet<String>,
    nodes_listing: Option<HashSet<String>>,
    pods_listing: Option<HashSet<String>>,
    nodes_synced: bool,
    pods_synced: bool,
    last_promotion: Option<Instant>,
}

impl State {
    fn upsert_node(&mut self, node: Node) {
        let name = node.name_any();
        if let Some(seen) = self.nodes_listing.as_mut() {
            seen.insert(name.clone());
        }
        let fingerprint = node_fingerprint(&node);
        if self.node_fingerprints.get(&name) != Some(&fingerprint) {
            self.node_fingerprints.insert(name.clone(), fingerprint);
            self.cluster_changed();
        }
        self.nodes.insert(name, Arc::new(node));
    }

    fn remove_node(&mut self, name: &str) {
        self.nodes.remove(name);
        self.node_fingerprints.remove(name);
    }

    fn upsert_pod(&mut self, pod: Pod) {
        let Some(uid) = pod.uid() else { return };
        if let Some(seen) = self.pods_listing.as_mut() {
            seen.insert(uid.clone());
        }
        let node_name = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        let terminal = matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        if !node_name.is_empty() {
            self.pending.remove(&uid);
            if terminal {
                self.unplace(&uid);
                return;
            }
            match self.placements.get_mut(&uid) {
                Some(p) if p.node == node_name => p.assumed = false,
                _ => {
                    self.unplace(&uid);
                    let usage = PodUsage::of(&pod);
                    self.placed
                        .entry(node_name.clone())
                        .or_default()
                        .add(&usage);
                    self.placements.insert(
                        uid,
                        Placement {
                            node: node_name,
                            usage,
                            assumed: false,
                        },
                    );
                }
            }
            return;
        }
        if self.placements.contains_key(&uid) {
            // Being bound: the watch has not caught up with our binding yet.
            return;
        }
        if wants_scheduling(&pod) {
            self.pending.insert(uid.clone(), Arc::new(pod));
            if !self.unschedulable.contains_key(&uid) && self.queued.insert(uid.clone()) {
                self.queue.push_back(uid);
            }
        } else {
            self.pending.remove(&uid);
            self.unschedulable.remove(&uid);
        }
    }

    fn remove_pod(&mut self, uid: &str) {
        self.pending.remove(uid);
        self.unschedulable.remove(uid);
        self.unplace(uid);
    }

    /// Takes a pod off its node; freed room may let waiting pods fit.
    fn unplace(&mut self, uid: &str) {
        if let Some(p) = self.placements.remove(uid) {
            if let Some(placed) = self.placed.get_mut(&p.node) {
                placed.remove(&p.usage);
            }
            self.cluster_changed();
        }
    }

    fn cluster_changed(&mut self) {
        for w in self.unschedulable.values_mut() {
            w.cluster_changed = true;
        }
    }

    /// Moves waiting pods whose time has come back to the queue.
    fn promote_due(&mut self, now: Instant) {
        if self
            .last_promotion
            .is_some_and(|t| now.duration_since(t) < Duration::from_millis(100))
        {
            return;
        }
        self.last_promotion = Some(now);
        let due: Vec<String> = self
            .unschedulable
            .iter()
            .filter(|(uid, w)| {
                let wait = if w.cluster_changed {
                    backoff(w.attempts)
                } else {
                    UNSCHEDULABLE_RETRY
                };
                !self.writing.contains(*uid) && now.duration_since(w.last_attempt) >= wait
            })
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in due {
            if self.queued.insert(uid.clone()) {
                self.queue.push_back(uid);
            }
        }
    }

    fn failed_attempt(&mut self, uid: &str, now: Instant) {
        let attempts = self
            .unschedulable
            .get(uid)
            .map(|w| w.attempts)
            .unwrap_or_default()
            + 1;
        self.unschedulable.insert(
            uid.to_string(),
            Waiting {
                last_attempt: now,
                attempts,
                cluster_changed: false,
            },
        );
    }
}

fn backoff(attempts: u32) -> Duration {
    INITIAL_BACKOFF
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(5))
        .min(MAX_BACKOFF)
}

/// The parts of a node that decide whether pods fit on it (not its heartbeats).
fn node_fingerprint(node: &Node) -> String {
    let spec = node.spec.as_ref();
    let status = node.status.as_ref();
    serde_json::json!([
        node.metadata.labels,
        spec.and_then(|s| s.taints.as_ref()),
        spec.and_then(|s| s.unschedulable),
        status.and_then(|s| s.allocatable.as_ref()),
        status.and_then(|s| s.capacity.as_ref()),
        ready_status(node),
    ])
    .to_string()
}

struct Scheduler {
    client: Client,
    state: Mutex<State>,
    wake: Notify,
    writes: Arc<Semaphore>,
    recorder: Recorder,
}

impl Scheduler {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the cache worse than stale; carry on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs the scheduler until dropped.
pub async fn run(client: Client, _config: Config) {
    let scheduler = Arc::new(Scheduler {
        recorder: Recorder::new(client.clone(), SCHEDULER_NAME, None),
        client,
        state: Mutex::new(State::default()),
        wake: Notify::new(),
        writes: Arc::new(Semaphore::new(MAX_CONCURRENT_WRITES)),
    });
    tokio::join!(
        watch_nodes(scheduler.clone()),
        watch_pods(scheduler.clone()),
        schedule_loop(scheduler)
    );
}

async fn watch_nodes(s: Arc<Scheduler>) {
    let api: Api<Node> = Api::all(s.client.clone());
    let mut events = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "scheduler: watching nodes");
                continue;
            }
        };
        let mut st = s.state();
        match event {
            watcher::Event::Init => st.nodes_listing = Some(HashSet::new()),
            watcher::Event::InitApply(n) | watcher::Event::Apply(n) => st.upsert_node(n),
            watcher::Event::Delete(n) => st.remove_node(&n.name_any()),
            watcher::Event::InitDone => {
                if let Some(seen) = st.nodes_listing.take() {
                    let gone: Vec<String> = st
                        .nodes
                        .keys()
                        .filter(|n| !seen.contains(*n))
                        .cloned()
                        .collect();
                    for n in gone {
                        st.remove_node(&n);
                    }
                }
                st.nodes_synced = true;
            }
        }
        drop(st);
        s.wake.notify_one();
    }
}

async fn watch_pods(s: Arc<Scheduler>) {
    let api: Api<Pod> = Api::all(s.client.clone());
    let mut events = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "scheduler: watching pods");
                continue;
            }
        };
        let mut st = s.state();
        match event {
            watcher::Event::Init => st.pods_listing = Some(HashSet::new()),
            watcher::Event::InitApply(p) | watcher::Event::Apply(p) => st.upsert_pod(p),
            watcher::Event::Delete(p) => {
                if let Some(uid) = p.uid() {
                    st.remove_pod(&uid);
                }
            }
            watcher::Event::InitDone => {
                if let Some(seen) = st.pods_listing.take() {
                    let gone: Vec<String> = st
                        .placements
                        .iter()
                        .filter(|(uid, p)| !p.assumed && !seen.contains(*uid))
                        .map(|(uid, _)| uid.clone())
                        .chain(st.pending.keys().filter(|u| !seen.contains(*u)).cloned())
                        .collect();
                    for uid in gone {
                        st.remove_pod(&uid);
                    }
                }
                st.pods_synced = true;
            }
        }
        drop(st);
        s.wake.notify_one();
    }
}

/// What one scheduling attempt decided.
enum Decision {
    Bind { pod: Arc<Pod>, node: String },
    Unschedulable { pod: Arc<Pod>, message: String },
}

async fn schedule_loop(s: Arc<Scheduler>) {
    loop {
        let next = {
            let mut st = s.state();
            if st.nodes_synced && st.pods_synced {
                st.promote_due(Instant::now());
                st.queue.pop_front().inspect(|uid| {
                    st.queued.remove(uid);
                })
            } else {
                None
            }
        };
        let Some(uid) = next else {
            tokio::select! {
                _ = s.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            continue;
        };
        // Bounded concurrency: wait for a free slot before deciding, so the decision sees
        // the placements of every binding sent so far.
        let Ok(permit) = s.writes.clone().acquire_owned().await else {
            return;
        };
        let Some(decision) = decide(&s, &uid) else {
            continue;
        };
        let s2 = s.clone();
        tokio::spawn(async move {
            match decision {
                Decision::Bind { pod, node } => bind(&s2, &uid, &pod, &node).await,
                Decision::Unschedulable { pod, message } => {
                    record_unschedulable(&s2, &pod, &message).await;
                    s2.state().writing.remove(&uid);
                }
            }
            drop(permit);
            s2.wake.notify_one();
        });
    }
}

/// One scheduling attempt against the cache; assumes the pod onto its node at once.
fn decide(s: &Scheduler, uid: &str) -> Option<Decision> {
    let mut guard = s.state();
    let st = &mut *guard;
    let pod = st.pending.get(uid)?.clone();
    if st.placements.contains_key(uid) {
        return None;
    }
    if st.writing.contains(uid) {
        st.failed_attempt(uid, Instant::now());
        return None;
    }
    let incoming = Incoming::new(&pod);
    let empty = Placed::default();
    let nodes = st
        .nodes
        .iter()
        .map(|(name, node)| (node.as_ref(), st.placed.get(name).unwrap_or(&empty)));
    let result = schedule(&incoming, nodes, |n| {
        use rand::Rng;
        rand::rng().random_range(0..n.max(1))
    });
    match result {
        Ok(node) => {
            st.unschedulable.remove(uid);
            st.placed
                .entry(node.clone())
                .or_default()
                .add(&incoming.usage);
            st.placements.insert(
                uid.to_string(),
                Placement {
                    node: node.clone(),
                    usage: incoming.usage,
                    assumed: true,
                },
            );
            Some(Decision::Bind { pod, node })
        }
        Err(fit) => {
            st.failed_attempt(uid, Instant::now());
            st.writing.insert(uid.to_string());
            Some(Decision::Unschedulable {
                pod,
                message: fit.to_string(),
            })
        }
    }
}

async fn bind(s: &Scheduler, uid: &str, pod: &Pod, node: &str) {
    let namespace = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let api: Api<Pod> = Api::namespaced(s.client.clone(), &namespace);
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.clone()),
            uid: pod.uid(),
            ..Default::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.to_string()),
            ..Default::default()
        },
    };
    let result: Result<serde_json::Value, kube::Error> = api
        .create_subresource("binding", &name, &PostParams::default(), &binding)
        .await;
    match result {
        Ok(_) => {
            s.state().pending.remove(uid);
            s.recorder
                .normal(
                    &object_reference(pod),
                    "Scheduled",
                    &format!("Successfully assigned {namespace}/{name} to {node}"),
                )
                .await;
        }
        Err(e) => {
            let mut st = s.state();
            if st.placements.get(uid).is_some_and(|p| p.assumed) {
                st.unplace(uid);
            }
            match &e {
                // Gone, or bound by someone else meanwhile: the watch tells the rest.
                kube::Error::Api(status) if status.code == 404 || status.code == 409 => {
                    st.pending.remove(uid);
                }
                _ => {
                    tracing::warn!(pod = %format!("{namespace}/{name}"), node, error = %e, "binding failed; will retry");
                    if st.pending.contains_key(uid) {
                        st.failed_attempt(uid, Instant::now());
                        if let Some(w) = st.unschedulable.get_mut(uid) {
                            w.cluster_changed = true;
                        }
                    }
                }
            }
        }
    }
}

/// Writes PodScheduled=False (only when it says something new) and a FailedScheduling event.
async fn record_unschedulable(s: &Scheduler, pod: &Pod, message: &str) {
    let namespace = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let current = pod
        .status
        .as_ref()
        .and_then(|st| st.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
    let unchanged = current.is_some_and(|c| {
        c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
            && c.message.as_deref() == Some(message)
    });
    if !unchanged {
        let transition = match current {
            Some(c) if c.status == "False" => c.last_transition_time.clone(),
            _ => None,
        }
        .unwrap_or_else(|| Time(jiff::Timestamp::now()));
        let condition = PodCondition {
            type_: "PodScheduled".into(),
            status: "False".into(),
            reason: Some("Unschedulable".into()),
            message: Some(message.to_string()),
            last_transition_time: Some(transition),
            ..Default::default()
        };
        let patch = serde_json::json!({"status": {"conditions": [condition]}});
        let api: Api<Pod> = Api::namespaced(s.client.clone(), &namespace);
        if let Err(e) = api
            .patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
        {
            tracing::debug!(pod = %format!("{namespace}/{name}"), error = %e, "could not write PodScheduled=False");
        }
    }
    s.recorder
        .warning(&object_reference(pod), "FailedScheduling", message)
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::{quantity_milli, quantity_value, tolerates};
    use serde_json::json;

    fn node(v: serde_json::Value) -> Node {
        serde_json::from_value(v).expect("node")
    }

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).expect("pod")
    }

    /// A Ready worker with 2 CPUs, 4 GiB and room for 110 pods.
    fn worker(name: &str) -> Node {
        node(json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {
                "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}]
            }
        }))
    }

    fn control_plane(name: &str) -> Node {
        let mut n = worker(name);
        n.metadata.labels.as_mut().map(|l| {
            l.insert(
                "node-role.kubernetes.io/control-plane".into(),
                String::new(),
            )
        });
        n.spec = serde_json::from_value(json!({"taints": [
            {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
        ]}))
        .ok();
        n
    }

    fn nginx(name: &str, owner: Option<&str>) -> Pod {
        let mut p = pod(json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
            "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}
        }));
        if let Some(owner) = owner {
            p.metadata.owner_references = serde_json::from_value(json!([{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs",
                "uid": owner, "controller": true
            }]))
            .ok();
        }
        p
    }

    fn with_spec(mut p: Pod, spec: serde_json::Value) -> Pod {
        let mut v = serde_json::to_value(p.spec.take()).expect("spec");
        if let (Some(base), Some(extra)) = (v.as_object_mut(), spec.as_object()) {
            for (k, x) in extra {
                base.insert(k.clone(), x.clone());
            }
        }
        p.spec = serde_json::from_value(v).ok();
        p
    }

    #[test]
    fn quantities_parse_like_upstream() {
        let cases = [
            ("100m", Some(100)),
            ("1", Some(1000)),
            ("0.5", Some(500)),
            ("1.5k", Some(1_500_000)),
            ("128Mi", Some(128 * 1024 * 1024 * 1000)),
            ("1e3", Some(1_000_000)),
            ("1E-3", Some(1)),
            ("1n", Some(1)), // rounded up
            ("2Gi", Some(2 * 1024 * 1024 * 1024 * 1000)),
            ("-1", Some(-1000)),
            ("", None),
            ("abc", None),
            ("1.2.3", None),
            ("5Qi", None),
        ];
        for (input, want) in cases {
            assert_eq!(quantity_milli(input), want, "{input}");
        }
        assert_eq!(quantity_value("1500m"), Some(2));
        assert_eq!(quantity_value("4Gi"), Some(4 << 30));
    }

    #[test]
    fn toleration_matching_follows_upstream() {
        let taint = |key: &str, value: Option<&str>, effect: &str| Taint {
            key: key.into(),
            value: value.map(str::to_string),
            effect: effect.into(),
            time_added: None,
        };
        let tol = |v: serde_json::Value| -> Toleration { serde_json::from_value(v).expect("tol") };
        let cases = [
            (
                json!({"operator": "Exists"}),
                taint("a", Some("b"), "NoSchedule"),
                true,
            ),
            (
                json!({"key": "a", "operator": "Exists"}),
                taint("a", Some("x"), "NoExecute"),
                true,
            ),
            (
                json!({"key": "a", "value": "b"}),
                taint("a", Some("b"), "NoSchedule"),
                true,
            ),
            (
                json!({"key": "a", "value": "c"}),
                taint("a", Some("b"), "NoSchedule"),
                false,
            ),
            (
                json!({"key": "a", "operator": "Exists", "effect": "NoExecute"}),
                taint("a", None, "NoSchedule"),
                false,
            ),
            (
                json!({"key": "b", "operator": "Exists"}),
                taint("a", None, "NoSchedule"),
                false,
            ),
            (
                json!({"key": "a", "operator": "Equal"}),
                taint("a", None, "NoSchedule"),
                true,
            ),
        ];
        for (t, taint, want) in cases {
            assert_eq!(tolerates(&tol(t.clone()), &taint), want, "{t} vs {taint:?}");
        }
    }

    #[test]
    fn filters_reject_with_upstream_reasons() {
        let placed = Placed::default();
        let cordoned = {
            let mut n = worker("w");
            n.spec = serde_json::from_value(json!({"unschedulable": true})).ok();
            n
        };
        let not_ready = node(json!({
            "metadata": {"name": "nr"},
            "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "False"}]}
        }));
        let unknown = node(json!({
            "metadata": {"name": "u"},
            "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "Unknown"}]}
        }));
        let small = node(json!({
            "metadata": {"name": "s"},
            "status": {"allocatable": {"cpu": "100m", "memory": "64Mi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True"}]}
        }));
        let big_pod = with_spec(
            nginx("big", None),
            json!({"containers": [{"name": "c", "image": "i",
                "resources": {"requests": {"cpu": "500m", "memory": "128Mi"}}}]}),
        );
        let selector_pod = with_spec(nginx("sel", None), json!({"nodeSelector": {"disk": "ssd"}}));
        let daemon_pod = with_spec(
            nginx("ds", None),
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchFields": [
                    {"key": "metadata.name", "operator": "In", "values": ["w"]}]}]}}}}),
        );
        let tolerate_all = with_spec(
            nginx("tol", None),
            json!({"tolerations": [{"operator": "Exists"}]}),
        );
        let plain = nginx("plain", None);
        let cases: Vec<(&str, &Pod, Node, Result<(), Reason>)> = vec![
            ("ready worker", &plain, worker("w"), Ok(())),
            (
                "cordoned",
                &plain,
                cordoned.clone(),
                Err(Reason::NodeUnschedulable),
            ),
            ("cordoned but tolerated", &tolerate_all, cordoned, Ok(())),
            (
                "control plane taint",
                &plain,
                control_plane("cp"),
                Err(Reason::UntoleratedTaint {
                    key: "node-role.kubernetes.io/control-plane".into(),
                    value: String::new(),
                }),
            ),
            (
                "not ready implies taint",
                &plain,
                not_ready,
                Err(Reason::UntoleratedTaint {
                    key: TAINT_NOT_READY.into(),
                    value: String::new(),
                }),
            ),
            (
                "unknown implies unreachable",
                &plain,
                unknown.clone(),
                Err(Reason::UntoleratedTaint {
                    key: TAINT_UNREACHABLE.into(),
                    value: String::new(),
                }),
            ),
            ("tolerates everything", &tolerate_all, unknown, Ok(())),
            (
                "selector mismatch",
                &selector_pod,
                worker("w"),
                Err(Reason::NodeAffinity),
            ),
            ("matchFields name", &daemon_pod, worker("w"), Ok(())),
            (
                "matchFields other name",
                &daemon_pod,
                worker("x"),
                Err(Reason::NodeAffinity),
            ),
            (
                "too small",
                &big_pod,
                small,
                Err(Reason::Insufficient(vec![Shortage::Cpu, Shortage::Memory])),
            ),
        ];
        for (what, p, n, want) in cases {
            assert_eq!(filter(&Incoming::new(p), &n, &placed), want, "{what}");
        }
    }

    #[test]
    fn placed_pods_use_up_room_and_ports() {
        let n = node(json!({
            "metadata": {"name": "n"},
            "status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "2"},
                       "conditions": [{"type": "Ready", "status": "True"}]}
        }));
        let web = with_spec(
            nginx("web", None),
            json!({"containers": [{"name": "c", "image": "i",
                "ports": [{"containerPort": 80, "hostPort": 8080}],
                "resources": {"requests": {"cpu": "600m"}}}]}),
        );
        let mut placed = Placed::default();
        assert_eq!(filter(&Incoming::new(&web), &n, &placed), Ok(()));
        placed.add(&PodUsage::of(&web));
        assert_eq!(
            filter(&Incoming::new(&web), &n, &placed),
            Err(Reason::HostPorts)
        );
        let other = with_spec(
            nginx("other", None),
            json!({"containers": [{"name": "c", "image": "i",
                "resources": {"requests": {"cpu": "600m"}}}]}),
        );
        assert_eq!(
            filter(&Incoming::new(&other), &n, &placed),
            Err(Reason::Insufficient(vec![Shortage::Cpu]))
        );
        placed.add(&PodUsage::of(&nginx("x", None)));
        assert_eq!(
            filter(&Incoming::new(&nginx("y", None)), &n, &placed),
            Err(Reason::Insufficient(vec![Shortage::Pods]))
        );
        placed.remove(&PodUsage::of(&web));
        assert_eq!(filter(&Incoming::new(&other), &n, &placed), Ok(()));
        assert_eq!(filter(&Incoming::new(&web), &n, &placed), Ok(()));
    }

    #[test]
    fn init_containers_and_sidecars_count_like_upstream() {
        let p = with_spec(
            nginx("p", None),
            json!({
                "containers": [{"name": "a", "image": "i", "resources": {"requests": {"cpu": "100m"}}}],
                "initContainers": [
                    {"name": "init", "image": "i", "resources": {"requests": {"cpu": "500m"}}},
                    {"name": "side", "image": "i", "restartPolicy": "Always",
                     "resources": {"requests": {"cpu": "50m"}}}
                ]
            }),
        );
        assert_eq!(PodUsage::of(&p).requests.milli_cpu, 500);
        assert_eq!(PodUsage::of(&nginx("q", None)).requests.milli_cpu, 0);
        assert_eq!(PodUsage::of(&nginx("q", None)).nonzero.milli_cpu, 100);
    }

    /// Places `count` replicas one after the other, as the loop does, and returns the nodes.
    fn place_replicas(nodes: &[Node], count: usize) -> Vec<String> {
        let mut placed: HashMap<String, Placed> = HashMap::new();
        let empty = Placed::default();
        let mut chosen = Vec::new();
        for i in 0..count {
            let p = nginx(&format!("nginx-{i}"), Some("rs-uid"));
            let incoming = Incoming::new(&p);
            let name = schedule(
                &incoming,
                nodes
                    .iter()
                    .map(|n| (n, placed.get(&n.name_any()).unwrap_or(&empty))),
                |_| 0,
            )
            .expect("fits");
            placed.entry(name.clone()).or_default().add(&incoming.usage);
            chosen.push(name);
        }
        chosen
    }

    #[test]
    fn replicas_spread_over_workers_and_avoid_the_control_plane() {
        let nodes = [control_plane("kube-0"), worker("kube-1"), worker("kube-2")];
        let mut chosen = place_replicas(&nodes, 3);
        chosen.sort();
        assert_eq!(chosen, ["kube-1", "kube-1", "kube-2"]);
        let mut six = place_replicas(&nodes, 6);
        six.sort();
        assert_eq!(six.iter().filter(|n| *n == "kube-1").count(), 3);
        assert_eq!(six.iter().filter(|n| *n == "kube-2").count(), 3);
    }

    #[test]
    fn spreading_beats_emptier_nodes_and_ties_go_to_pick() {
        let nodes = [worker("a"), worker("b")];
        let mut placed_a = Placed::default();
        // Node a is busier with unrelated pods, but b already has one of our replicas.
        for i in 0..5 {
            placed_a.add(&PodUsage::of(&nginx(&format!("other-{i}"), None)));
        }
        let mut placed_b = Placed::default();
        placed_b.add(&PodUsage::of(&nginx("mine", Some("rs-uid"))));
        let p = nginx("new", Some("rs-uid"));
        let got = schedule(
            &Incoming::new(&p),
            [(&nodes[0], &placed_a), (&nodes[1], &placed_b)],
            |_| 0,
        );
        assert_eq!(got.as_deref(), Ok("a"));
        let empty = Placed::default();
        for (pick, want) in [(0, "a"), (1, "b")] {
            let got = schedule(
                &Incoming::new(&p),
                [(&nodes[0], &empty), (&nodes[1], &empty)],
                |n| {
                    assert_eq!(n, 2);
                    pick
                },
            );
            assert_eq!(got.as_deref(), Ok(want));
        }
    }

    #[test]
    fn preferred_affinity_and_prefer_no_schedule_steer_the_choice() {
        let mut ssd = worker("ssd");
        ssd.metadata
            .labels
            .as_mut()
            .map(|l| l.insert("disk".into(), "ssd".into()));
        let mut soft_tainted = worker("soft");
        soft_tainted.spec = serde_json::from_value(json!({"taints": [
            {"key": "k", "effect": "PreferNoSchedule"}]}))
        .ok();
        let empty = Placed::default();
        let wants_ssd = with_spec(
            nginx("p", None),
            json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 10, "preference": {"matchExpressions": [
                    {"key": "disk", "operator": "In", "values": ["ssd"]}]}}]}}}),
        );
        let plain = worker("plain");
        let got = schedule(
            &Incoming::new(&wants_ssd),
            [(&plain, &empty), (&ssd, &empty)],
            |_| 0,
        );
        assert_eq!(got.as_deref(), Ok("ssd"));
        let got = schedule(
            &Incoming::new(&nginx("q", None)),
            [(&soft_tainted, &empty), (&plain, &empty)],
            |_| 0,
        );
        assert_eq!(got.as_deref(), Ok("plain"));
    }

    #[test]
    fn unschedulable_messages_match_upstream() {
        let taint = Reason::UntoleratedTaint {
            key: "node-role.kubernetes.io/control-plane".into(),
            value: String::new(),
        };
        let cases = [
            (
                3,
                vec![taint.clone(), Reason::NodeAffinity, Reason::NodeAffinity],
                "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
            ),
            (
                3,
                vec![
                    taint.clone(),
                    Reason::Insufficient(vec![Shortage::Cpu]),
                    Reason::Insufficient(vec![Shortage::Cpu]),
                ],
                "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod.",
            ),
            (
                2,
                vec![
                    Reason::Insufficient(vec![Shortage::Cpu, Shortage::Memory]),
                    Reason::Insufficient(vec![Shortage::Memory]),
                ],
                "0/2 nodes are available: 1 Insufficient cpu, 2 Insufficient memory. preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod.",
            ),
            (0, vec![], "no nodes available to schedule pods"),
        ];
        for (n, reasons, want) in cases {
            assert_eq!(unschedulable_message(n, &reasons), want);
        }
    }

    #[test]
    fn only_unbound_live_pods_of_ours_are_scheduled() {
        assert!(wants_scheduling(&nginx("a", None)));
        assert!(!wants_scheduling(&with_spec(
            nginx("b", None),
            json!({"nodeName": "kube-1"})
        )));
        assert!(!wants_scheduling(&with_spec(
            nginx("c", None),
            json!({"schedulerName": "other"})
        )));
        let mut deleting = nginx("d", None);
        deleting.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        assert!(!wants_scheduling(&deleting));
    }

    #[test]
    fn cache_assumes_binds_and_forgets_deleted_pods() {
        let mut st = State {
            nodes_synced: true,
            pods_synced: true,
            ..Default::default()
        };
        st.upsert_node(worker("kube-1"));
        st.upsert_pod(nginx("a", Some("rs")));
        assert_eq!(st.queue.len(), 1);
        // The same pod seen again is not queued twice.
        st.upsert_pod(nginx("a", Some("rs")));
        assert_eq!(st.queue.len(), 1);
        let bound = with_spec(nginx("a", Some("rs")), json!({"nodeName": "kube-1"}));
        st.upsert_pod(bound.clone());
        assert!(st.pending.is_empty());
        assert_eq!(st.placed["kube-1"].pods_of_owner("rs"), 1);
        st.upsert_pod(bound);
        assert_eq!(st.placed["kube-1"].requested.pods, 1);
        st.remove_pod("uid-a");
        assert_eq!(st.placed["kube-1"].requested.pods, 0);
    }

    #[test]
    fn waiting_pods_retry_after_backoff_once_the_cluster_changes() {
        let mut st = State::default();
        let start = Instant::now();
        st.upsert_pod(nginx("a", None));
        st.queue.clear();
        st.queued.clear();
        st.failed_attempt("uid-a", start);
        st.promote_due(start + Duration::from_secs(5));
        assert!(
            st.queue.is_empty(),
            "nothing changed: waits for the periodic retry"
        );
        st.upsert_node(worker("kube-1"));
        st.last_promotion = None;
        st.promote_due(start + Duration::from_millis(500));
        assert!(st.queue.is_empty(), "still backing off");
        st.last_promotion = None;
        st.promote_due(start + Duration::from_secs(2));
        assert_eq!(st.queue.len(), 1);
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(4));
        assert_eq!(backoff(30), MAX_BACKOFF);
    }
}
