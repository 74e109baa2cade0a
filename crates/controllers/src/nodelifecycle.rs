//! The node lifecycle controller of kube-controller-manager, with its two companions: the
//! taint eviction controller (upstream's NoExecuteTaintManager) and the pod garbage
//! collector's orphan pass.
//!
//! Kubelets heartbeat by renewing their Lease in `kube-node-lease` and by posting node status.
//! A node silent for longer than `node_monitor_grace_period` gets its Ready (and pressure)
//! conditions set to `Unknown` / `NodeStatusUnknown` / `Kubelet stopped posting node status.`
//! and the `node.kubernetes.io/unreachable` taints; a node reporting Ready=False gets the
//! `node.kubernetes.io/not-ready` taints; pressure conditions and `spec.unschedulable` become
//! their NoSchedule taints; all are removed once the node is Ready again. Pods on a node that
//! is not ready are marked not Ready (so Services stop sending them traffic). Pods on a node
//! with a NoExecute taint they do not tolerate are deleted; pods that tolerate it for
//! `tolerationSeconds` are deleted that long after the taint's `timeAdded`. Pods bound to a
//! node that no longer exists are force-deleted, so their controllers re-create them elsewhere.
//!
//! Pure core: [`node_health`], [`unknown_conditions`], [`desired_taints`],
//! [`eviction_deadline`], [`pods_to_mark_not_ready`]. The loop re-evaluates every node once a
//! second from reflector caches, and a node's taints also as soon as the node changes; it
//! writes with resourceVersion preconditions, so a write that raced a kubelet fails with 409
//! and is redone from fresher state.
//!
//! Deviations from upstream: no per-zone eviction rate limiting or disruption modes (every
//! node is tainted at once); the orphan pass confirms a node's absence with a GET instead of a
//! 40 s quarantine; a restarted controller gives every node a full grace period from its start,
//! as upstream's fresh probe timestamps do.

use crate::Config;
use crate::events::{Recorder, object_reference};
use crate::util::tolerates;
use futures::{Stream, StreamExt};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, PodCondition, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where kubelets keep their heartbeat Leases (named after the node).
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
pub const TAINT_NOT_READY: &str = crate::scheduler::TAINT_NOT_READY;
pub const TAINT_UNREACHABLE: &str = crate::scheduler::TAINT_UNREACHABLE;
pub const TAINT_UNSCHEDULABLE: &str = crate::scheduler::TAINT_UNSCHEDULABLE;

/// Condition types the controller sets to Unknown when the kubelet goes silent
/// (upstream's Ready plus `remainingNodeConditionTypes`).
const WATCHED_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// Conditions that, when True, taint the node NoSchedule.
const CONDITION_TAINTS: [(&str, &str); 4] = [
    ("MemoryPressure", "node.kubernetes.io/memory-pressure"),
    ("DiskPressure", "node.kubernetes.io/disk-pressure"),
    ("PIDPressure", "node.kubernetes.io/pid-pressure"),
    (
        "NetworkUnavailable",
        "node.kubernetes.io/network-unavailable",
    ),
];

/// How often every node is re-evaluated.
const RESYNC: Duration = Duration::from_secs(1);
/// A write that was sent is not repeated for this long, so a lagging cache does not cause a
/// storm of duplicate deletions or events.
const WRITE_MEMORY: Duration = Duration::from_secs(10);

/// What the controller concludes about a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Heartbeats are fresh and the kubelet reports Ready=True.
    Ready,
    /// Heartbeats are fresh and the kubelet reports Ready=False.
    NotReady,
    /// No heartbeat within the grace period (or the conditions already read Unknown).
    Unknown,
    /// A new node that has not posted a Ready condition yet, still within its grace period.
    Registering,
}

/// The newest heartbeat a node shows: its Lease's renewTime or its Ready condition's
/// lastHeartbeatTime.
pub fn last_heartbeat(node: &Node, lease: Option<&Lease>) -> Option<Timestamp> {
    let renewed = lease
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.renew_time.as_ref())
        .map(|t| t.0);
    let posted = condition(node, "Ready")
        .and_then(|c| c.last_heartbeat_time.as_ref())
        .map(|t| t.0);
    renewed.max(posted)
}

/// Judges a node at `now`. Heartbeats older than `watching_since` count as made then, so a
/// controller that just started gives every node a full grace period.
pub fn node_health(
    node: &Node,
    lease: Option<&Lease>,
    now: Timestamp,
    grace: Duration,
    watching_since: Timestamp,
) -> Health {
    let ready = condition(node, "Ready");
    let heartbeat = match ready {
        Some(_) => last_heartbeat(node, lease),
        None => {
            last_heartbeat(node, lease).max(node.metadata.creation_timestamp.as_ref().map(|t| t.0))
        }
    }
    .map_or(watching_since, |t| t.max(watching_since));
    let grace = SignedDuration::try_from(grace).unwrap_or(SignedDuration::MAX);
    let stale = now.duration_since(heartbeat) > grace;
    match ready.map(|c| c.status.as_str()) {
        _ if stale => Health::Unknown,
        None => Health::Registering,
        Some("True") => Health::Ready,
        Some("False") => Health::NotReady,
        Some(_) => Health::Unknown,
    }
}

fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// The node's conditions after the kubelet went silent: Ready and the pressure conditions
/// Unknown (added as `NodeStatusNeverUpdated` if the kubelet never posted them); `None` if they
/// already say so.
pub fn unknown_conditions(node: &Node, now: Timestamp) -> Option<Vec<NodeCondition>> {
    let mut conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut changed = false;
    for type_ in WATCHED_CONDITIONS {
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(c) if c.status == "Unknown" => {}
            Some(c) => {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(Time(now));
                changed = true;
            }
            None => {
                conditions.push(NodeCondition {
                    type_: type_.into(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                    last_transition_time: Some(Time(now)),
                });
                changed = true;
            }
        }
    }
    changed.then_some(conditions)
}

fn is_managed(taint: &Taint) -> bool {
    let condition_key = taint.key == TAINT_NOT_READY
        || taint.key == TAINT_UNREACHABLE
        || CONDITION_TAINTS.iter().any(|(_, k)| *k == taint.key);
    match taint.effect.as_str() {
        "NoSchedule" => condition_key || taint.key == TAINT_UNSCHEDULABLE,
        "NoExecute" => taint.key == TAINT_NOT_READY || taint.key == TAINT_UNREACHABLE,
        _ => false,
    }
}

/// The node's taints as they should be: others' taints untouched and in place, ours (the
/// not-ready/unreachable NoSchedule+NoExecute pair for the node's health, NoSchedule for True
/// pressure conditions and for `spec.unschedulable`) added or removed. A taint that stays keeps
/// its `timeAdded`; a new NoExecute taint gets `now`, from which evictions count.
pub fn desired_taints(node: &Node, health: Health, now: Timestamp) -> Vec<Taint> {
    let current = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let mut wanted: Vec<(&str, &str)> = Vec::new();
    match health {
        Health::Ready => {}
        Health::NotReady => {
            wanted.extend([
                (TAINT_NOT_READY, "NoSchedule"),
                (TAINT_NOT_READY, "NoExecute"),
            ]);
        }
        Health::Unknown => {
            wanted.extend([
                (TAINT_UNREACHABLE, "NoSchedule"),
                (TAINT_UNREACHABLE, "NoExecute"),
            ]);
        }
        Health::Registering => {
            // No Ready condition yet: leave whatever the kubelet registered with.
            for t in &current {
                if (t.key == TAINT_NOT_READY || t.key == TAINT_UNREACHABLE) && is_managed(t) {
                    wanted.push((t.key.as_str(), t.effect.as_str()));
                }
            }
        }
    }
    if health != Health::Unknown {
        for (type_, key) in CONDITION_TAINTS {
            if condition(node, type_).is_some_and(|c| c.status == "True") {
                wanted.push((key, "NoSchedule"));
            }
        }
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        wanted.push((TAINT_UNSCHEDULABLE, "NoSchedule"));
    }
    let mut taints: Vec<Taint> = current
        .iter()
        .filter(|t| !is_managed(t) || wanted.contains(&(t.key.as_str(), t.effect.as_str())))
        .cloned()
        .collect();
    for (key, effect) in wanted {
        if !taints.iter().any(|t| t.key == key && t.effect == effect) {
            taints.push(Taint {
                key: key.into(),
                effect: effect.into(),
                value: None,
                time_added: (effect == "NoExecute").then_some(Time(now)),
            });
        }
    }
    taints
}

/// When the taint eviction controller deletes a pod from a node with these taints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eviction {
    /// No NoExecute taint, or every one is tolerated forever.
    Never,
    /// A NoExecute taint is not tolerated (or only for 0 s).
    Now,
    /// The shortest `tolerationSeconds` among the tolerations used runs out then, counted
    /// from the earliest NoExecute taint's `timeAdded` (`untimed_since` for taints without).
    At(Timestamp),
}

/// Upstream's NoExecuteTaintManager decision for one pod.
pub fn eviction_deadline(pod: &Pod, taints: &[Taint], untimed_since: Timestamp) -> Eviction {
    let no_execute: Vec<&Taint> = taints.iter().filter(|t| t.effect == "NoExecute").collect();
    if no_execute.is_empty() {
        return Eviction::Never;
    }
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[]);
    let mut shortest: Option<i64> = None;
    for taint in &no_execute {
        // Like upstream, the first toleration that tolerates a taint is the one used.
        let Some(used) = tolerations.iter().find(|tol| tolerates(tol, taint)) else {
            return Eviction::Now;
        };
        if let Some(seconds) = used.toleration_seconds {
            shortest = Some(shortest.map_or(seconds, |s| s.min(seconds)));
        }
    }
    let Some(seconds) = shortest else {
        return Eviction::Never;
    };
    if seconds <= 0 {
        return Eviction::Now;
    }
    let since = no_execute
        .iter()
        .map(|t| t.time_added.as_ref().map_or(untimed_since, |t| t.0))
        .min()
        .unwrap_or(untimed_since);
    since
        .checked_add(SignedDuration::from_secs(seconds))
        .map_or(Eviction::Never, Eviction::At)
}

impl Eviction {
    pub fn is_due(self, now: Timestamp) -> bool {
        match self {
            Eviction::Never => false,
            Eviction::Now => true,
            Eviction::At(t) => now >= t,
        }
    }
}

/// The pods on a node that is not ready whose Ready condition still says True and has not
/// changed since the node went not ready (so a kubelet that re-readies a pod afterwards is not
/// fought), each with its conditions as they should be written.
pub fn pods_to_mark_not_ready<'p>(
    node: &Node,
    pods: impl IntoIterator<Item = &'p Pod>,
    now: Timestamp,
) -> Vec<(&'p Pod, Vec<PodCondition>)> {
    let Some(node_ready) = condition(node, "Ready") else {
        return Vec::new();
    };
    if node_ready.status == "True" {
        return Vec::new();
    }
    let node_since = node_ready.last_transition_time.as_ref().map(|t| t.0);
    let mut out = Vec::new();
    for pod in pods {
        let Some(conditions) = pod.status.as_ref().and_then(|s| s.conditions.as_ref()) else {
            continue;
        };
        let Some(ready) = conditions.iter().find(|c| c.type_ == "Ready") else {
            continue;
        };
        let pod_since = ready.last_transition_time.as_ref().map(|t| t.0);
        let stale = match (pod_since, node_since) {
            (Some(p), Some(n)) => p <= n,
            _ => true,
        };
        if ready.status != "True" || !stale {
            continue;
        }
        let updated = conditions
            .iter()
            .map(|c| {
                let mut c = c.clone();
                if c.type_ == "Ready" {
                    c.status = "False".into();
                    c.last_transition_time = Some(Time(now));
                }
                c
            })
            .collect();
        out.push((pod, updated));
    }
    out
}

/// Parses a duration as the lab's environment knobs take it: `40s`, `500ms`, `2m`, `1m30s`,
/// `1h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (number, tail) = rest.split_at(number_end);
        let value: f64 = number.parse().ok()?;
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let seconds_per_unit = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total = total.checked_add(Duration::try_from_secs_f64(value * seconds_per_unit).ok()?)?;
        rest = tail;
    }
    Some(total)
}

// ---------------------------------------------------------------------------------------------
// The loop.

/// Runs the controller until dropped.
pub async fn run(client: Client, config: Config) {
    let (nodes, nodes_writer) = reflector::store::<Node>();
    let (leases, leases_writer) = reflector::store::<Lease>();
    let (pods, pods_writer) = reflector::store::<Pod>();
    let node_events = watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(nodes_writer);
    let lease_events = watcher(
        Api::<Lease>::namespaced(client.clone(), LEASE_NAMESPACE),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(leases_writer);
    let pod_events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(pods_writer);
    // Node changes also drive an immediate taint pass (upstream's event-driven NoSchedule
    // tainting), so a node that turns Ready is schedulable at once, not at the next resync.
    let (changed_tx, changed_rx) = tokio::sync::mpsc::unbounded_channel();
    let node_events = node_events.inspect(move |event| {
        if let Ok(watcher::Event::Apply(node) | watcher::Event::InitApply(node)) = event {
            let _ = changed_tx.send(node.name_any());
        }
    });
    let controller = Controller {
        nodes_api: Api::all(client.clone()),
        node_events: Recorder::new(client.clone(), "node-controller", None),
        eviction_events: Recorder::new(client.clone(), "taint-eviction-controller", None),
        client,
        config,
        nodes,
        leases,
        pods,
        memory: Memory::default(),
    };
    tokio::join!(
        drain(node_events, "nodes"),
        drain(lease_events, "leases"),
        drain(pod_events, "pods"),
        controller.run(changed_rx)
    );
}

async fn drain<K>(
    events: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    what: &str,
) {
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        if let Err(e) = event {
            tracing::warn!(error = %e, "node lifecycle: watching {what}");
        }
    }
}

/// Writes sent recently, by key, so a cache that has not caught up does not repeat them.
#[derive(Default)]
struct Memory {
    sent: HashMap<String, Instant>,
    registered: HashSet<String>,
    /// When a NoExecute taint without `timeAdded` was first seen, by node and key.
    untimed_taints: HashMap<(String, String), Timestamp>,
}

impl Memory {
    /// Whether to send the write named `key` now (remembering it if so).
    fn should_send(&mut self, key: String) -> bool {
        let now = Instant::now();
        match self.sent.get(&key) {
            Some(at) if now.duration_since(*at) < WRITE_MEMORY => false,
            _ => {
                self.sent.insert(key, now);
                true
            }
        }
    }

    fn forget_old(&mut self) {
        let now = Instant::now();
        self.sent
            .retain(|_, at| now.duration_since(*at) < WRITE_MEMORY);
    }
}

struct Controller {
    client: Client,
    config: Config,
    nodes_api: Api<Node>,
    node_events: Recorder,
    eviction_events: Recorder,
    nodes: Store<Node>,
    leases: Store<Lease>,
    pods: Store<Pod>,
    memory: Memory,
}

impl Controller {
    async fn run(mut self, mut changed: tokio::sync::mpsc::UnboundedReceiver<String>) {
        for (what, ready) in [
            ("nodes", self.nodes.wait_until_ready().await),
            ("leases", self.leases.wait_until_ready().await),
            ("pods", self.pods.wait_until_ready().await),
        ] {
            if ready.is_err() {
                tracing::warn!("node lifecycle: the {what} cache went away");
                return;
            }
        }
        let watching_since = Timestamp::now();
        let mut ticks = tokio::time::interval(RESYNC);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {
                    self.sync(watching_since).await;
                    self.memory.forget_old();
                }
                Some(name) = changed.recv() => {
                    let mut names = HashSet::from([name]);
                    while let Ok(name) = changed.try_recv() {
                        names.insert(name);
                    }
                    for name in names {
                        if let Some(node) = self.nodes.get(&ObjectRef::new(&name)) {
                            let now = Timestamp::now();
                            let health = self.health(&node, now, watching_since);
                            self.update_taints(&node, health, now).await;
                        }
                    }
                }
            }
        }
    }

    fn health(&self, node: &Node, now: Timestamp, watching_since: Timestamp) -> Health {
        let lease = self
            .leases
            .get(&ObjectRef::new(&node.name_any()).within(LEASE_NAMESPACE));
        node_health(
            node,
            lease.as_deref(),
            now,
            self.config.node_monitor_grace_period,
            watching_since,
        )
    }

    /// Writes the taints the node's health calls for, if they differ; returns the node's
    /// taints as they now stand.
    async fn update_taints(&mut self, node: &Node, health: Health, now: Timestamp) -> Vec<Taint> {
        let name = node.name_any();
        let current = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        let taints = desired_taints(node, health, now);
        if taints == current {
            return current;
        }
        let patch = json!({
            "metadata": {"resourceVersion": node.resource_version()},
            "spec": {"taints": if taints.is_empty() { None } else { Some(&taints) }},
        });
        match self
            .nodes_api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(updated) => {
                tracing::info!(node = %name, ?health, "node taints updated");
                updated.spec.and_then(|s| s.taints).unwrap_or_default()
            }
            Err(e) => {
                tracing::debug!(node = %name, error = %e, "could not update node taints");
                current
            }
        }
    }

    async fn sync(&mut self, watching_since: Timestamp) {
        let mut pods_by_node: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
        for pod in self.pods.state() {
            let node = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default();
            if !node.is_empty() {
                pods_by_node.entry(node).or_default().push(pod);
            }
        }
        let nodes = self.nodes.state();
        let mut untimed_seen = HashSet::new();
        for node in &nodes {
            let pods = pods_by_node.remove(&node.name_any()).unwrap_or_default();
            self.sync_node(node.clone(), &pods, watching_since, &mut untimed_seen)
                .await;
        }
        self.memory
            .untimed_taints
            .retain(|k, _| untimed_seen.contains(k));
        self.memory
            .registered
            .retain(|n| nodes.iter().any(|node| node.name_any() == *n));
        // Whatever is left is bound to nodes the cache does not know.
        for (node, pods) in pods_by_node {
            self.collect_orphans(&node, &pods).await;
        }
    }

    async fn sync_node(
        &mut self,
        node: Arc<Node>,
        pods: &[Arc<Pod>],
        watching_since: Timestamp,
        untimed_seen: &mut HashSet<(String, String)>,
    ) {
        let name = node.name_any();
        let now = Timestamp::now();
        if self.memory.registered.insert(name.clone()) {
            self.node_events
                .normal(
                    &object_reference(node.as_ref()),
                    "RegisteredNode",
                    &format!("Node {name} event: Registered Node {name} in Controller"),
                )
                .await;
        }
        let health = self.health(&node, now, watching_since);
        let mut node = node;
        if health == Health::Unknown
            && let Some(conditions) = unknown_conditions(&node, now)
        {
            let patch = json!({
                "metadata": {"resourceVersion": node.resource_version()},
                "status": {"conditions": conditions},
            });
            match self
                .nodes_api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(updated) => {
                    tracing::info!(node = %name, "node stopped posting status: marked Unknown");
                    self.node_events
                        .normal(
                            &object_reference(&updated),
                            "NodeNotReady",
                            &format!("Node {name} status is now: NodeNotReady"),
                        )
                        .await;
                    node = Arc::new(updated);
                }
                Err(e) => {
                    tracing::debug!(node = %name, error = %e, "could not mark node Unknown");
                    return;
                }
            }
        }
        let taints = self.update_taints(&node, health, now).await;
        if matches!(health, Health::NotReady | Health::Unknown) {
            self.mark_pods_not_ready(&node, pods, now).await;
        }
        for t in taints
            .iter()
            .filter(|t| t.effect == "NoExecute" && t.time_added.is_none())
        {
            let key = (name.clone(), t.key.clone());
            untimed_seen.insert(key.clone());
            self.memory.untimed_taints.entry(key).or_insert(now);
        }
        let untimed_since = taints
            .iter()
            .filter_map(|t| {
                self.memory
                    .untimed_taints
                    .get(&(name.clone(), t.key.clone()))
            })
            .min()
            .copied()
            .unwrap_or(now);
        for pod in pods {
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            if eviction_deadline(pod, &taints, untimed_since).is_due(now) {
                self.evict(pod).await;
            }
        }
    }

    async fn mark_pods_not_ready(&mut self, node: &Node, pods: &[Arc<Pod>], now: Timestamp) {
        for (pod, conditions) in pods_to_mark_not_ready(node, pods.iter().map(|p| p.as_ref()), now)
        {
            let uid = pod.uid().unwrap_or_default();
            if !self.memory.should_send(format!("not-ready/{uid}")) {
                continue;
            }
            let api: Api<Pod> =
                Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
            let patch = json!({
                "metadata": {"resourceVersion": pod.resource_version()},
                "status": {"conditions": conditions},
            });
            match api
                .patch_status(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(_) => {
                    self.node_events
                        .warning(&object_reference(pod), "NodeNotReady", "Node is not ready")
                        .await;
                }
                Err(e) => {
                    // Retried from fresher state next second.
                    self.memory.sent.remove(&format!("not-ready/{uid}"));
                    tracing::debug!(pod = %pod.name_any(), error = %e, "could not mark pod not ready");
                }
            }
        }
    }

    /// Deletes a pod for a NoExecute taint (gracefully, as upstream: its kubelet, if alive,
    /// finishes the deletion), first noting why in a DisruptionTarget condition.
    async fn evict(&mut self, pod: &Pod) {
        let uid = pod.uid().unwrap_or_default();
        if !self.memory.should_send(format!("evict/{uid}")) {
            return;
        }
        let namespace = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        self.eviction_events
            .normal(
                &object_reference(pod),
                "TaintManagerEviction",
                &format!("Marking for deletion Pod {namespace}/{name}"),
            )
            .await;
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let condition = disruption_condition(
            "DeletionByTaintManager",
            "Taint manager: deleting due to NoExecute taint",
        );
        let patch = json!({"status": {"conditions": [condition]}});
        if let Err(e) = api
            .patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
        {
            tracing::debug!(pod = %name, error = %e, "could not add DisruptionTarget");
        }
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => {
                tracing::info!(pod = %format!("{namespace}/{name}"), "evicted for a NoExecute taint")
            }
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => tracing::warn!(pod = %name, error = %e, "eviction failed; will retry"),
        }
    }

    /// Upstream's pod GC orphan pass: pods bound to a node that does not exist are marked
    /// Failed and force-deleted (their kubelet is gone, nobody else would finish them).
    async fn collect_orphans(&mut self, node: &str, pods: &[Arc<Pod>]) {
        if !self.memory.should_send(format!("orphans/{node}")) {
            return;
        }
        // The cache may lag a node that was just created: ask the API server.
        match self.nodes_api.get_opt(node).await {
            Ok(None) => {}
            Ok(Some(_)) => return,
            Err(e) => {
                tracing::debug!(node, error = %e, "could not check node");
                self.memory.sent.remove(&format!("orphans/{node}"));
                return;
            }
        }
        for pod in pods {
            let namespace = pod.namespace().unwrap_or_default();
            let name = pod.name_any();
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
            let terminal = matches!(
                pod.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            );
            let condition = disruption_condition("DeletionByPodGC", "PodGC: node no longer exists");
            let mut status = json!({"conditions": [condition]});
            if !terminal {
                status["phase"] = json!("Failed");
            }
            let patch = json!({ "status": status });
            if let Err(e) = api
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch))
                .await
            {
                tracing::debug!(pod = %name, error = %e, "could not mark orphan Failed");
            }
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: pod.uid(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match api.delete(&name, &params).await {
                Ok(_) => {
                    tracing::info!(pod = %format!("{namespace}/{name}"), node, "deleted pod of a deleted node")
                }
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => {
                    tracing::warn!(pod = %name, error = %e, "could not delete orphaned pod");
                    self.memory.sent.remove(&format!("orphans/{node}"));
                }
            }
        }
    }
}

fn disruption_condition(reason: &str, message: &str) -> PodCondition {
    PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_transition_time: Some(Time(Timestamp::now())),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).expect("timestamp")
    }

    fn node(v: serde_json::Value) -> Node {
        serde_json::from_value(v).expect("node")
    }

    fn ready_node(status: &str, heartbeat: i64) -> Node {
        node(json!({
            "metadata": {"name": "kube-1", "creationTimestamp": ts(-1000)},
            "status": {"conditions": [
                {"type": "Ready", "status": status, "reason": "KubeletReady",
                 "lastHeartbeatTime": ts(heartbeat), "lastTransitionTime": ts(-500)},
                {"type": "MemoryPressure", "status": "False",
                 "lastHeartbeatTime": ts(heartbeat), "lastTransitionTime": ts(-500)}
            ]}
        }))
    }

    fn lease(renewed: i64) -> Lease {
        serde_json::from_value(json!({
            "metadata": {"name": "kube-1", "namespace": LEASE_NAMESPACE},
            "spec": {"holderIdentity": "kube-1", "renewTime": "2023-11-14T22:13:20.000000Z"}
        }))
        .map(|mut l: Lease| {
            if let Some(spec) = l.spec.as_mut() {
                spec.renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
                    ts(renewed),
                ));
            }
            l
        })
        .expect("lease")
    }

    const GRACE: Duration = Duration::from_secs(40);

    #[test]
    fn health_follows_heartbeats_and_the_ready_condition() {
        let long_ago = ts(-10_000);
        let cases = [
            ("fresh ready", ready_node("True", -5), None, Health::Ready),
            (
                "stale ready",
                ready_node("True", -41),
                None,
                Health::Unknown,
            ),
            (
                "stale status, fresh lease",
                ready_node("True", -100),
                Some(lease(-3)),
                Health::Ready,
            ),
            (
                "stale both",
                ready_node("True", -100),
                Some(lease(-50)),
                Health::Unknown,
            ),
            (
                "reports not ready",
                ready_node("False", -1),
                None,
                Health::NotReady,
            ),
            (
                "already unknown",
                ready_node("Unknown", -1),
                Some(lease(-1)),
                Health::Unknown,
            ),
            (
                "exactly at grace",
                ready_node("True", -40),
                None,
                Health::Ready,
            ),
            (
                "never posted, young",
                node(json!({"metadata": {"name": "n", "creationTimestamp": ts(-10)}})),
                None,
                Health::Registering,
            ),
            (
                "never posted, old",
                node(json!({"metadata": {"name": "n", "creationTimestamp": ts(-100)}})),
                None,
                Health::Unknown,
            ),
        ];
        for (what, n, l, want) in cases {
            assert_eq!(
                node_health(&n, l.as_ref(), ts(0), GRACE, long_ago),
                want,
                "{what}"
            );
        }
        // A controller that just started waits a full grace period.
        assert_eq!(
            node_health(&ready_node("True", -1000), None, ts(0), GRACE, ts(-10)),
            Health::Ready
        );
    }

    #[test]
    fn silent_node_conditions_become_unknown() {
        let n = ready_node("True", -100);
        let conditions = unknown_conditions(&n, ts(0)).expect("changes");
        let ready = conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .expect("Ready");
        assert_eq!(ready.status, "Unknown");
        assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(
            ready.message.as_deref(),
            Some("Kubelet stopped posting node status.")
        );
        assert_eq!(ready.last_heartbeat_time, Some(Time(ts(-100))));
        assert_eq!(ready.last_transition_time, Some(Time(ts(0))));
        let disk = conditions
            .iter()
            .find(|c| c.type_ == "DiskPressure")
            .expect("added");
        assert_eq!(disk.reason.as_deref(), Some("NodeStatusNeverUpdated"));
        assert_eq!(
            disk.message.as_deref(),
            Some("Kubelet never posted node status.")
        );
        let mut marked = n.clone();
        if let Some(s) = marked.status.as_mut() {
            s.conditions = Some(conditions);
        }
        assert_eq!(unknown_conditions(&marked, ts(5)), None);
    }

    fn keys(taints: &[Taint]) -> Vec<String> {
        taints
            .iter()
            .map(|t| format!("{}:{}", t.key, t.effect))
            .collect()
    }

    #[test]
    fn taints_follow_health_and_keep_others() {
        let mut n = ready_node("True", 0);
        n.spec = serde_json::from_value(json!({"taints": [
            {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"},
            {"key": TAINT_UNREACHABLE, "effect": "NoExecute", "timeAdded": ts(-30)},
            {"key": TAINT_UNREACHABLE, "effect": "NoSchedule"}
        ]}))
        .ok();
        assert_eq!(
            keys(&desired_taints(&n, Health::Ready, ts(0))),
            ["node-role.kubernetes.io/control-plane:NoSchedule"]
        );
        let unknown = desired_taints(&n, Health::Unknown, ts(0));
        assert_eq!(
            unknown,
            n.spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default()
        );
        let not_ready = desired_taints(&n, Health::NotReady, ts(0));
        assert_eq!(
            keys(&not_ready),
            [
                "node-role.kubernetes.io/control-plane:NoSchedule",
                "node.kubernetes.io/not-ready:NoSchedule",
                "node.kubernetes.io/not-ready:NoExecute"
            ]
        );
        let added = not_ready
            .iter()
            .find(|t| t.effect == "NoExecute")
            .expect("NoExecute");
        assert_eq!(added.time_added, Some(Time(ts(0))));
        let mut cordoned = ready_node("True", 0);
        cordoned.spec = serde_json::from_value(json!({"unschedulable": true})).ok();
        if let Some(c) = cordoned
            .status
            .as_mut()
            .and_then(|s| s.conditions.as_mut())
            .and_then(|c| c.iter_mut().find(|c| c.type_ == "MemoryPressure"))
        {
            c.status = "True".into();
        }
        assert_eq!(
            keys(&desired_taints(&cordoned, Health::Ready, ts(0))),
            [
                "node.kubernetes.io/memory-pressure:NoSchedule",
                "node.kubernetes.io/unschedulable:NoSchedule"
            ]
        );
        let registering = node(json!({"metadata": {"name": "n"}, "spec": {"taints": [
            {"key": TAINT_NOT_READY, "effect": "NoSchedule"}]}}));
        assert_eq!(
            keys(&desired_taints(&registering, Health::Registering, ts(0))),
            ["node.kubernetes.io/not-ready:NoSchedule"]
        );
    }

    fn pod_with_tolerations(tolerations: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "i"}], "tolerations": tolerations}
        }))
        .expect("pod")
    }

    #[test]
    fn evictions_follow_tolerations() {
        let taints: Vec<Taint> = serde_json::from_value(json!([
            {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"},
            {"key": TAINT_UNREACHABLE, "effect": "NoExecute", "timeAdded": ts(100)}
        ]))
        .expect("taints");
        let default_tolerations = json!([
            {"key": TAINT_NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
        ]);
        let cases = [
            ("no tolerations", json!([]), Eviction::Now),
            ("default 300 s", default_tolerations, Eviction::At(ts(400))),
            (
                "forever",
                json!([{"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}]),
                Eviction::Never,
            ),
            (
                "zero seconds",
                json!([{"key": TAINT_UNREACHABLE, "operator": "Exists", "tolerationSeconds": 0, "effect": "NoExecute"}]),
                Eviction::Now,
            ),
            (
                "tolerate everything",
                json!([{"operator": "Exists"}]),
                Eviction::Never,
            ),
            (
                "other key only",
                json!([{"key": TAINT_NOT_READY, "operator": "Exists", "effect": "NoExecute"}]),
                Eviction::Now,
            ),
        ];
        for (what, tolerations, want) in cases {
            let pod = pod_with_tolerations(tolerations);
            assert_eq!(eviction_deadline(&pod, &taints, ts(0)), want, "{what}");
        }
        let no_execute_free: Vec<Taint> = taints[..1].to_vec();
        assert_eq!(
            eviction_deadline(&pod_with_tolerations(json!([])), &no_execute_free, ts(0)),
            Eviction::Never
        );
        let untimed: Vec<Taint> = serde_json::from_value(json!([
            {"key": TAINT_UNREACHABLE, "effect": "NoExecute"}]))
        .expect("taints");
        let pod = pod_with_tolerations(json!([
            {"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}]));
        assert_eq!(
            eviction_deadline(&pod, &untimed, ts(7)),
            Eviction::At(ts(12))
        );
        assert!(Eviction::At(ts(12)).is_due(ts(12)));
        assert!(!Eviction::At(ts(12)).is_due(ts(11)));
        assert!(!Eviction::Never.is_due(ts(11)));
    }

    #[test]
    fn pods_on_a_not_ready_node_lose_readiness_once() {
        let mut n = ready_node("Unknown", -100);
        let pod = |ready: &str, since: i64| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": format!("p-{ready}-{since}"), "namespace": "default"},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
                "status": {"conditions": [
                    {"type": "PodScheduled", "status": "True"},
                    {"type": "Ready", "status": ready, "lastTransitionTime": ts(since)}
                ]}
            }))
            .expect("pod")
        };
        let pods = [pod("True", -600), pod("False", -600), pod("True", 10)];
        let marked = pods_to_mark_not_ready(&n, &pods, ts(20));
        assert_eq!(marked.len(), 1);
        assert_eq!(marked[0].0.name_any(), "p-True--600");
        let ready = marked[0]
            .1
            .iter()
            .find(|c| c.type_ == "Ready")
            .expect("Ready");
        assert_eq!(
            (ready.status.as_str(), ready.last_transition_time.clone()),
            ("False", Some(Time(ts(20))))
        );
        assert_eq!(marked[0].1.len(), 2);
        n = ready_node("True", 0);
        assert!(pods_to_mark_not_ready(&n, &pods, ts(20)).is_empty());
    }

    #[test]
    fn durations_parse() {
        let cases = [
            ("40s", Some(Duration::from_secs(40))),
            ("3", Some(Duration::from_secs(3))),
            ("1.5", Some(Duration::from_millis(1500))),
            ("500ms", Some(Duration::from_millis(500))),
            ("1m30s", Some(Duration::from_secs(90))),
            ("2h", Some(Duration::from_secs(7200))),
            ("", None),
            ("-1", None),
            ("5x", None),
            ("s", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), want, "{text}");
        }
    }
}
