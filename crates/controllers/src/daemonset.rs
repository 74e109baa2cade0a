//! The DaemonSet controller (upstream `pkg/controller/daemon`): one pod per eligible node.
//!
//! A node is eligible as upstream's `NodeShouldRunDaemonPod` decides: the template's
//! `nodeName`, `nodeSelector` and required node affinity must match it, and its NoSchedule /
//! NoExecute taints must be tolerated by the template's tolerations plus the ones the controller
//! adds to every daemon pod (not-ready, unreachable, the pressure conditions, unschedulable, and
//! network-unavailable for host-network pods). A node whose only untolerated taints are
//! NoSchedule keeps a pod it already runs but gets no new one.
//!
//! Pods are created as upstream does since v1.12: named by `generateName` (`<ds>-xxxxx`), with
//! the `controller-revision-hash` and `pod-template-generation` labels, an owner reference, and
//! a required node affinity `matchFields metadata.name In [node]` that the default scheduler
//! binds — the controller never sets `spec.nodeName` itself.
//!
//! The pure core ([`desired_daemon_pods`]) decides what to create, delete and report; the loop
//! carries it out and owns nothing but caches and expectations that a restart rebuilds.
//! **Invariant:** this module writes only pods it owns (controller reference to the DaemonSet)
//! and the DaemonSet's status.

use crate::events::{self, Recorder};
use crate::util::{self, KeyQueue};
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, PodTemplateSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::Event;
use kube::{Client, ResourceExt};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The label carrying the hash of the template a pod was made from (`apps/v1`
/// `DefaultDaemonSetUniqueLabelKey`).
pub const REVISION_HASH_LABEL: &str = "controller-revision-hash";
/// The label carrying the DaemonSet's template generation when the pod was made.
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";
/// Where the API server keeps the template generation of an `apps/v1` DaemonSet.
pub const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";
/// The field of a node that daemon pods' node affinity pins (`metav1.ObjectNameField`).
const NODE_NAME_FIELD: &str = "metadata.name";

const COMPONENT: &str = "daemonset-controller";

// ----------------------------------------------------------------------------------------------
// Taints, tolerations and node selection (pure)
// ----------------------------------------------------------------------------------------------

/// The tolerations upstream's DaemonSet controller adds to every daemon pod
/// (`AddOrUpdateDaemonPodTolerations`): daemons keep running through node trouble and on
/// cordoned nodes. `NoExecute` ones carry no `tolerationSeconds`, so they are never evicted.
pub fn default_daemon_tolerations(host_network: bool) -> Vec<Toleration> {
    let exists = |key: &str, effect: &str| Toleration {
        key: Some(key.to_string()),
        operator: Some("Exists".into()),
        effect: Some(effect.to_string()),
        ..Default::default()
    };
    let mut out = vec![
        exists("node.kubernetes.io/not-ready", "NoExecute"),
        exists("node.kubernetes.io/unreachable", "NoExecute"),
        exists("node.kubernetes.io/disk-pressure", "NoSchedule"),
        exists("node.kubernetes.io/memory-pressure", "NoSchedule"),
        exists("node.kubernetes.io/pid-pressure", "NoSchedule"),
        exists("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        out.push(exists(
            "node.kubernetes.io/network-unavailable",
            "NoSchedule",
        ));
    }
    out
}

/// Adds the daemon tolerations to `spec` as `AddOrUpdateTolerationInPodSpec` does: one with
/// the same key, operator, value and effect is replaced, anything else is appended.
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    let host_network = spec.host_network == Some(true);
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for wanted in default_daemon_tolerations(host_network) {
        let same = |t: &Toleration| {
            t.key == wanted.key
                && t.operator.as_deref().unwrap_or("Equal")
                    == wanted.operator.as_deref().unwrap_or("Equal")
                && t.value.as_deref().unwrap_or("") == wanted.value.as_deref().unwrap_or("")
                && t.effect.as_deref().unwrap_or("") == wanted.effect.as_deref().unwrap_or("")
        };
        match tolerations.iter_mut().find(|t| same(t)) {
            Some(existing) => *existing = wanted,
            None => tolerations.push(wanted),
        }
    }
}

/// `nodeaffinity.GetRequiredNodeAffinity(pod).Match(node)`: the `nodeSelector` labels all
/// present with equal values, and (if any) one of the required affinity terms matching.
pub fn node_matches_pod_requirements(spec: &PodSpec, node: &Node) -> bool {
    let labels = node.metadata.labels.as_ref();
    let selector_ok = spec.node_selector.iter().flatten().all(|(k, v)| {
        labels
            .and_then(|l| l.get(k))
            .is_some_and(|actual| actual == v)
    });
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    let affinity_ok =
        required.is_none_or(|sel| util::node_matches_terms(node, &sel.node_selector_terms));
    selector_ok && affinity_ok
}

/// What upstream's `NodeShouldRunDaemonPod` answers for one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeVerdict {
    /// A daemon pod should be created here if none runs.
    pub should_run: bool,
    /// A daemon pod already here may stay (only NoSchedule taints are untolerated).
    pub should_continue_running: bool,
}

/// `NodeShouldRunDaemonPod`: name, selector and affinity first (a mismatch means neither run
/// nor stay), then taints against the template's tolerations plus the daemon defaults.
pub fn node_verdict(template: &PodTemplateSpec, node: &Node) -> NodeVerdict {
    let never = NodeVerdict {
        should_run: false,
        should_continue_running: false,
    };
    let node_name = node.metadata.name.as_deref().unwrap_or_default();
    let mut spec = template.spec.clone().unwrap_or_default();
    if let Some(pinned) = spec.node_name.as_deref().filter(|n| !n.is_empty())
        && pinned != node_name
    {
        return never;
    }
    if !node_matches_pod_requirements(&spec, node) {
        return never;
    }
    add_daemon_tolerations(&mut spec);
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    let blocking = util::first_untolerated(taints, tolerations, &["NoSchedule", "NoExecute"]);
    if blocking.is_none() {
        return NodeVerdict {
            should_run: true,
            should_continue_running: true,
        };
    }
    let evicting = util::first_untolerated(taints, tolerations, &["NoExecute"]);
    NodeVerdict {
        should_run: false,
        should_continue_running: evicting.is_none(),
    }
}

/// Whether a daemon pod of `template` should be created on `node`.
pub fn node_should_run(template: &PodTemplateSpec, node: &Node) -> bool {
    node_verdict(template, node).should_run
}

// ----------------------------------------------------------------------------------------------
// Pods (pure)
// ----------------------------------------------------------------------------------------------

/// `util.GetTargetNodeName`: the bound node, or the one the daemon node affinity pins.
pub fn target_node_name(pod: &Pod) -> Option<&str> {
    if let Some(n) = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
    {
        return Some(n);
    }
    let terms = &pod
        .spec
        .as_ref()?
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|r| r.key == NODE_NAME_FIELD && r.operator == "In")
        .and_then(|r| match r.values.as_deref() {
            Some([one]) => Some(one.as_str()),
            _ => None,
        })
}

fn is_bound(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty())
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// `podByCreationTimestampAndPhase`: bound pods first, then oldest, then by name.
fn sort_oldest_first(pods: &mut [&Pod]) {
    pods.sort_by(|a, b| {
        is_bound(b)
            .cmp(&is_bound(a))
            .then_with(|| {
                let ts = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
                ts(a).cmp(&ts(b))
            })
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

/// The template generation the API server recorded on the DaemonSet (`GetTemplateGeneration`).
pub fn template_generation(ds: &DaemonSet) -> Option<i64> {
    ds.metadata
        .annotations
        .as_ref()?
        .get(TEMPLATE_GENERATION_ANNOTATION)?
        .parse()
        .ok()
}

/// The revision hash of a template, in the form of upstream's `controller.ComputeHash`:
/// FNV-1a (32 bit) over the template, then the collision count, rendered with
/// `rand.SafeEncodeString` of the decimal value. Upstream hashes Go's printed struct, which we
/// cannot reproduce; we hash the canonical JSON, so values differ from a real cluster's but have
/// the same shape and change exactly when the template does.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut hash: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u32::from(*b);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    };
    feed(&serde_json::to_vec(template).unwrap_or_default());
    if let Some(c) = collision_count {
        feed(&c.to_le_bytes());
    }
    hash.to_string()
        .bytes()
        .map(|b| char::from(ALPHABET[usize::from(b) % ALPHABET.len()]))
        .collect()
}

/// `util.IsPodUpdated`: made from the current template, by hash or by template generation.
fn is_pod_updated(pod: &Pod, hash: &str, generation: Option<i64>) -> bool {
    let labels = pod.metadata.labels.as_ref();
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    let by_generation =
        generation.is_some_and(|g| label(TEMPLATE_GENERATION_LABEL) == Some(&g.to_string()));
    let by_hash = !hash.is_empty() && label(REVISION_HASH_LABEL) == Some(hash);
    by_generation || by_hash
}

/// `util.ReplaceDaemonSetPodNodeNameNodeAffinity`: pins the pod to `node` with a required
/// `matchFields metadata.name In [node]` term, replacing any required terms (the controller has
/// already checked those against the node).
pub fn pin_to_node(affinity: Option<Affinity>, node: &str) -> Affinity {
    let required = NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_fields: Some(vec![NodeSelectorRequirement {
                key: NODE_NAME_FIELD.into(),
                operator: "In".into(),
                values: Some(vec![node.to_string()]),
            }]),
            match_expressions: None,
        }],
    };
    let mut affinity = affinity.unwrap_or_default();
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(required);
    affinity
}

/// The pod the DaemonSet creates for `node` (upstream `CreatePodTemplate` +
/// `GetPodFromTemplate`): template labels plus the hash and generation labels, the daemon
/// tolerations, node affinity pinning it to `node`, `generateName` `<ds>-`, a controller owner
/// reference.
pub fn new_daemon_pod(ds: &DaemonSet, node: &str, hash: &str) -> Pod {
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let template_meta = template.metadata.unwrap_or_default();
    let mut labels = template_meta.labels.unwrap_or_default();
    if let Some(g) = template_generation(ds) {
        labels.insert(TEMPLATE_GENERATION_LABEL.into(), g.to_string());
    }
    if !hash.is_empty() {
        labels.insert(REVISION_HASH_LABEL.into(), hash.to_string());
    }
    let mut spec = template.spec.unwrap_or_default();
    add_daemon_tolerations(&mut spec);
    spec.affinity = Some(pin_to_node(spec.affinity.take(), node));
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", ds.name_any())),
            namespace: ds.namespace(),
            labels: Some(labels),
            annotations: template_meta.annotations,
            finalizers: template_meta.finalizers,
            owner_references: Some(vec![util::controller_reference(ds)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// Whether a label selector (typed) matches `labels`; an invalid selector matches nothing.
fn selector_matches(selector: &LabelSelector, labels: Option<&BTreeMap<String, String>>) -> bool {
    util::label_selector(selector).is_ok_and(|s| s.matches(labels.unwrap_or(&BTreeMap::new())))
}

fn is_empty_selector(selector: &LabelSelector) -> bool {
    selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(|e| e.is_empty())
}

/// Whether `pod` belongs to `ds`: its controller reference names the DaemonSet's uid and its
/// labels still match the selector.
pub fn owned_by(pod: &Pod, ds: &DaemonSet) -> bool {
    let uid = ds.metadata.uid.as_deref();
    uid.is_some()
        && pod.metadata.namespace == ds.metadata.namespace
        && util::controller_of(pod).is_some_and(|r| Some(r.uid.as_str()) == uid)
        && ds
            .spec
            .as_ref()
            .is_some_and(|s| selector_matches(&s.selector, pod.metadata.labels.as_ref()))
}

// ----------------------------------------------------------------------------------------------
// The decision (pure)
// ----------------------------------------------------------------------------------------------

/// An event the controller records on the DaemonSet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DsEvent {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

/// What a DaemonSet needs, given the nodes and its pods.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DsActions {
    /// Nodes to create a daemon pod for, in node order.
    pub create_on: Vec<String>,
    /// Names of pods to delete (wrong node, surplus, failed or succeeded, rolling update).
    pub delete: Vec<String>,
    /// Pods bound to nodes that no longer exist. Upstream's pod garbage collector force-deletes
    /// these; we have none, so the loop does it after confirming the node is gone.
    pub orphaned: Vec<String>,
    /// The status to report (computed from the state before these actions, as upstream does).
    pub status: DaemonSetStatus,
    pub events: Vec<DsEvent>,
    /// Look again after this long (a pod becoming available after `minReadySeconds`).
    pub requeue_after: Option<Duration>,
}

/// The revision hash of a DaemonSet's current template.
pub fn current_hash(ds: &DaemonSet) -> String {
    let spec = ds.spec.as_ref();
    template_hash(
        &spec.map(|s| s.template.clone()).unwrap_or_default(),
        ds.status.as_ref().and_then(|s| s.collision_count),
    )
}

/// Decides what `ds` needs: upstream's `manage` (create where a pod should run and none does;
/// delete where none may stay, surplus pods, failed and succeeded ones, unscheduled pods for
/// vanished nodes), then — only when `manage` has nothing to do, as upstream's expectations gate
/// it — the rolling update, and the status. `pods` may hold any pods; only the DaemonSet's own
/// are considered.
pub fn desired_daemon_pods(
    ds: &DaemonSet,
    nodes: &[Node],
    pods: &[Pod],
    now: jiff::Timestamp,
) -> DsActions {
    let mut actions = DsActions::default();
    let Some(spec) = ds.spec.as_ref() else {
        return actions;
    };
    if is_empty_selector(&spec.selector) {
        actions.events.push(DsEvent {
            warning: true,
            reason: "SelectingAll",
            message: "This daemon set is selecting all pods. A non-empty selector is required."
                .into(),
        });
        actions.status = ds.status.clone().unwrap_or_default();
        return actions;
    }
    let hash = current_hash(ds);
    let generation = template_generation(ds);
    let min_ready = spec.min_ready_seconds.unwrap_or(0);

    // Pods by target node (terminal pods being deleted are done with, as upstream skips them).
    let mut by_node: BTreeMap<&str, Vec<&Pod>> = BTreeMap::new();
    for pod in pods.iter().filter(|p| owned_by(p, ds)) {
        let terminal = matches!(phase(pod), "Succeeded" | "Failed");
        if terminal && pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if let Some(node) = target_node_name(pod) {
            by_node.entry(node).or_default().push(pod);
        }
    }
    let verdicts: Vec<(&Node, NodeVerdict)> = nodes
        .iter()
        .map(|n| (n, node_verdict(&spec.template, n)))
        .collect();

    actions.status = daemon_status(ds, &verdicts, &by_node, &hash, generation, now);
    if min_ready > 0 && actions.status.number_ready != actions.status.number_available.unwrap_or(0)
    {
        actions.requeue_after = Some(Duration::from_secs(min_ready.unsigned_abs().into()));
    }

    // manage: per node.
    for (node, verdict) in &verdicts {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        let daemon_pods = by_node.get(name);
        match (verdict, daemon_pods) {
            (v, None) if v.should_run => actions.create_on.push(name.to_string()),
            (v, Some(pods)) if v.should_continue_running => {
                let mut running = Vec::new();
                for pod in pods
                    .iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                {
                    let pod_name = pod.name_any();
                    match phase(pod) {
                        "Failed" => {
                            actions.events.push(DsEvent {
                                warning: true,
                                reason: "FailedDaemonPod",
                                message: format!(
                                    "Found failed daemon pod {}/{pod_name} on node {name}, will try to kill it",
                                    pod.namespace().unwrap_or_default()
                                ),
                            });
                            actions.delete.push(pod_name);
                        }
                        "Succeeded" => {
                            actions.events.push(DsEvent {
                                warning: false,
                                reason: "SucceededDaemonPod",
                                message: format!(
                                    "Found succeeded daemon pod {}/{pod_name} on node {name}, will try to delete it",
                                    pod.namespace().unwrap_or_default()
                                ),
                            });
                            actions.delete.push(pod_name);
                        }
                        _ => running.push(*pod),
                    }
                }
                // Without surge, one pod per node: keep the oldest.
                sort_oldest_first(&mut running);
                actions
                    .delete
                    .extend(running.iter().skip(1).map(|p| p.name_any()));
            }
            (v, Some(pods)) if !v.should_continue_running => actions.delete.extend(
                pods.iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .map(|p| p.name_any()),
            ),
            _ => {}
        }
    }
    // Pods for nodes that are gone: unscheduled ones are ours to delete (upstream
    // getUnscheduledPodsWithoutNode); bound ones would be the pod GC's.
    let node_names: HashSet<&str> = nodes
        .iter()
        .filter_map(|n| n.metadata.name.as_deref())
        .collect();
    for (node, pods) in &by_node {
        if node_names.contains(node) {
            continue;
        }
        for pod in pods {
            if is_bound(pod) {
                actions.orphaned.push(pod.name_any());
            } else {
                actions.delete.push(pod.name_any());
            }
        }
    }

    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";
    if actions.create_on.is_empty() && actions.delete.is_empty() && rolling {
        actions.delete = rolling_update_deletions(ds, &verdicts, &by_node, &hash, generation, now);
    }
    actions
}

/// `intstr.GetScaledValueFromIntOrPercent(value, total, roundUp=true)`; garbage counts as 0.
fn scaled(value: Option<&IntOrString>, total: usize, default: usize) -> usize {
    match value {
        None => default,
        Some(IntOrString::Int(i)) => usize::try_from(*i).unwrap_or(0),
        Some(IntOrString::String(s)) => s
            .strip_suffix('%')
            .and_then(|p| p.parse::<usize>().ok())
            .map(|p| (p * total).div_ceil(100))
            .unwrap_or(0),
    }
}

/// Upstream's `rollingUpdate` without surge: delete old pods while at most `maxUnavailable`
/// nodes lack an available current pod; the next pass of `manage` creates their replacements.
/// Old pods that are not available anyway are always replaced.
fn rolling_update_deletions(
    ds: &DaemonSet,
    verdicts: &[(&Node, NodeVerdict)],
    by_node: &BTreeMap<&str, Vec<&Pod>>,
    hash: &str,
    generation: Option<i64>,
    now: jiff::Timestamp,
) -> Vec<String> {
    let spec = ds.spec.as_ref();
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let rolling = spec
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    // Nodes considered: every node with pods, plus every node that wants one.
    let mut considered: BTreeMap<&str, &[&Pod]> = by_node
        .iter()
        .map(|(n, pods)| (*n, pods.as_slice()))
        .collect();
    let mut desired = 0;
    for (node, verdict) in verdicts {
        if verdict.should_run {
            desired += 1;
            considered
                .entry(node.metadata.name.as_deref().unwrap_or_default())
                .or_insert(&[]);
        }
    }
    let mut max_unavailable = scaled(rolling.and_then(|r| r.max_unavailable.as_ref()), desired, 1);
    if max_unavailable == 0 {
        // Upstream: neither surge nor unavailability configured → accept one unavailable.
        max_unavailable = 1;
    }
    let mut unavailable = 0;
    let mut replace_anyway = Vec::new();
    let mut candidates = Vec::new();
    for pods in considered.values() {
        let mut new_pod = None;
        let mut old_pod = None;
        let mut ambiguous = false;
        for pod in pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
        {
            let slot = if is_pod_updated(pod, hash, generation) {
                &mut new_pod
            } else {
                &mut old_pod
            };
            if slot.is_some() {
                ambiguous = true;
            }
            *slot = Some(*pod);
        }
        if ambiguous {
            unavailable += 1;
            continue;
        }
        match (new_pod, old_pod) {
            (None, None) | (Some(_), Some(_)) => unavailable += 1,
            (Some(new), None) => {
                if !util::is_pod_available(new, min_ready, now) {
                    unavailable += 1;
                }
            }
            (None, Some(old)) => {
                if !util::is_pod_available(old, min_ready, now) {
                    replace_anyway.push(old.name_any());
                } else if unavailable < max_unavailable {
                    candidates.push(old.name_any());
                }
            }
        }
    }
    let room = max_unavailable
        .saturating_sub(unavailable)
        .min(candidates.len());
    replace_anyway.extend(candidates.into_iter().take(room));
    replace_anyway
}

/// Upstream's `updateDaemonSetStatus` counts.
fn daemon_status(
    ds: &DaemonSet,
    verdicts: &[(&Node, NodeVerdict)],
    by_node: &BTreeMap<&str, Vec<&Pod>>,
    hash: &str,
    generation: Option<i64>,
    now: jiff::Timestamp,
) -> DaemonSetStatus {
    let min_ready = ds
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let (mut desired, mut current, mut misscheduled, mut ready, mut updated, mut available) =
        (0, 0, 0, 0, 0, 0);
    for (node, verdict) in verdicts {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        let pods = by_node.get(name).filter(|p| !p.is_empty());
        if !verdict.should_run {
            if pods.is_some() {
                misscheduled += 1;
            }
            continue;
        }
        desired += 1;
        let Some(pods) = pods else { continue };
        current += 1;
        let mut pods = pods.clone();
        sort_oldest_first(&mut pods);
        let pod = pods[0];
        if util::is_pod_ready(pod) {
            ready += 1;
            if util::is_pod_available(pod, min_ready, now) {
                available += 1;
            }
        }
        if is_pod_updated(pod, hash, generation) {
            updated += 1;
        }
    }
    let previous = ds.status.clone().unwrap_or_default();
    DaemonSetStatus {
        desired_number_scheduled: desired,
        current_number_scheduled: current,
        number_misscheduled: misscheduled,
        number_ready: ready,
        updated_number_scheduled: Some(updated),
        number_available: Some(available),
        number_unavailable: Some(desired - available),
        observed_generation: ds.metadata.generation.or(previous.observed_generation),
        collision_count: previous.collision_count,
        conditions: previous.conditions,
    }
}

/// Whether the stored status already says what `want` says (upstream `storeDaemonSetStatus`'s
/// early return). Absent optional counts are zero.
fn status_matches(have: Option<&DaemonSetStatus>, want: &DaemonSetStatus) -> bool {
    let Some(have) = have else { return false };
    have.desired_number_scheduled == want.desired_number_scheduled
        && have.current_number_scheduled == want.current_number_scheduled
        && have.number_misscheduled == want.number_misscheduled
        && have.number_ready == want.number_ready
        && have.updated_number_scheduled.unwrap_or(0) == want.updated_number_scheduled.unwrap_or(0)
        && have.number_available.unwrap_or(0) == want.number_available.unwrap_or(0)
        && have.number_unavailable.unwrap_or(0) == want.number_unavailable.unwrap_or(0)
        && have.observed_generation.unwrap_or(0) >= want.observed_generation.unwrap_or(0)
}

/// The status as a merge patch: Go omits zero `omitempty` counts, so they are removed rather
/// than stored as 0 (`kubectl get ds -o yaml` then reads as upstream's).
fn status_patch(status: &DaemonSetStatus) -> serde_json::Value {
    let omit_zero = |v: Option<i32>| match v {
        Some(n) if n != 0 => serde_json::json!(n),
        _ => serde_json::Value::Null,
    };
    serde_json::json!({"status": {
        "desiredNumberScheduled": status.desired_number_scheduled,
        "currentNumberScheduled": status.current_number_scheduled,
        "numberMisscheduled": status.number_misscheduled,
        "numberReady": status.number_ready,
        "updatedNumberScheduled": omit_zero(status.updated_number_scheduled),
        "numberAvailable": omit_zero(status.number_available),
        "numberUnavailable": omit_zero(status.number_unavailable),
        "observedGeneration": match status.observed_generation {
            Some(g) if g != 0 => serde_json::json!(g),
            _ => serde_json::Value::Null,
        },
    }})
}

// ----------------------------------------------------------------------------------------------
// The loop
// ----------------------------------------------------------------------------------------------

type Key = ObjectRef<DaemonSet>;

/// How long the controller waits for its own creates and deletes to show in its cache before
/// acting on the DaemonSet again regardless (upstream's expectations time out after 5 minutes).
const EXPECTATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Periodic resync of every DaemonSet, as an informer's resync would.
const RESYNC: Duration = Duration::from_secs(300);

/// Creates and deletes the controller made but has not seen in its pod cache yet (upstream's
/// `ControllerExpectations`, keyed by pod name rather than by count).
#[derive(Default)]
struct Expectations {
    by_key: Mutex<HashMap<Key, Pending>>,
}

struct Pending {
    created: HashSet<String>,
    deleted: HashSet<String>,
    since: Instant,
}

impl Expectations {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Pending>> {
        self.by_key.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn expect(&self, key: &Key, created: Vec<String>, deleted: Vec<String>) {
        if created.is_empty() && deleted.is_empty() {
            return;
        }
        self.lock().insert(
            key.clone(),
            Pending {
                created: created.into_iter().collect(),
                deleted: deleted.into_iter().collect(),
                since: Instant::now(),
            },
        );
    }

    /// Whether every expected change is visible in `pods` (the DaemonSet's namespace).
    fn satisfied(&self, key: &Key, pods: &Store<Pod>) -> bool {
        let mut map = self.lock();
        let Some(pending) = map.get_mut(key) else {
            return true;
        };
        let ns = key.namespace.clone().unwrap_or_default();
        let find = |name: &str| pods.get(&ObjectRef::new(name).within(&ns));
        pending.created.retain(|n| find(n).is_none());
        pending
            .deleted
            .retain(|n| find(n).is_some_and(|p| p.metadata.deletion_timestamp.is_none()));
        if (pending.created.is_empty() && pending.deleted.is_empty())
            || pending.since.elapsed() > EXPECTATION_TIMEOUT
        {
            map.remove(key);
            return true;
        }
        false
    }

    fn forget(&self, key: &Key) {
        self.lock().remove(key);
    }
}

struct Ctx {
    client: Client,
    daemonsets: Store<DaemonSet>,
    nodes: Store<Node>,
    pods: Store<Pod>,
    recorder: Recorder,
    expectations: Expectations,
}

/// What about a node can change a DaemonSet's decision; heartbeats change none of it.
fn node_fingerprint(node: &Node) -> String {
    let conditions: Vec<(String, String)> = node
        .status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .map(|c| (c.type_.clone(), c.status.clone()))
        .collect();
    serde_json::json!([node.metadata.labels, node.spec, conditions]).to_string()
}

fn ds_key_of_pod(pod: &Pod) -> Option<Key> {
    let owner = util::controller_of(pod)?;
    (owner.kind == "DaemonSet" && owner.api_version.starts_with("apps/"))
        .then(|| ObjectRef::new(&owner.name).within(&pod.namespace().unwrap_or_default()))
}

/// Runs the controller until dropped.
pub async fn run(client: Client, _config: crate::Config) {
    let queue = KeyQueue::<Key>::new();

    let q = queue.clone();
    let daemonsets = util::watch_into_store(
        Api::<DaemonSet>::all(client.clone()),
        "daemonsets",
        move |event| match event {
            Event::Apply(ds) | Event::InitApply(ds) | Event::Delete(ds) => {
                q.add(ObjectRef::from_obj(ds))
            }
            Event::Init | Event::InitDone => {}
        },
    );

    let q = queue.clone();
    let all_ds = daemonsets.clone();
    let mut seen_nodes: HashMap<String, String> = HashMap::new();
    let nodes = util::watch_into_store(Api::<Node>::all(client.clone()), "nodes", move |event| {
        let changed = match event {
            Event::Apply(n) | Event::InitApply(n) => {
                let fp = node_fingerprint(n);
                seen_nodes.insert(n.name_any(), fp.clone()) != Some(fp)
            }
            Event::Delete(n) => {
                seen_nodes.remove(&n.name_any());
                true
            }
            Event::InitDone => true,
            Event::Init => false,
        };
        if changed {
            for ds in all_ds.state() {
                q.add(ObjectRef::from_obj(&*ds));
            }
        }
    });

    let q = queue.clone();
    let pods = util::watch_into_store(Api::<Pod>::all(client.clone()), "pods", move |event| {
        if let Event::Apply(p) | Event::InitApply(p) | Event::Delete(p) = event
            && let Some(key) = ds_key_of_pod(p)
        {
            q.add(key);
        }
    });

    // Act only on complete caches: a partial node or pod list would create duplicates or
    // delete pods of nodes not yet seen.
    for ready in [
        daemonsets.wait_until_ready().await,
        nodes.wait_until_ready().await,
        pods.wait_until_ready().await,
    ] {
        if ready.is_err() {
            tracing::warn!("daemonset controller: a cache writer stopped before its first list");
            return;
        }
    }

    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), COMPONENT, None),
        client,
        daemonsets,
        nodes,
        pods,
        expectations: Expectations::default(),
    });
    util::run_workers(queue, 2, COMPONENT, move |key: Key| {
        let ctx = ctx.clone();
        async move { reconcile(&ctx, &key).await }
    })
    .await;
}

async fn reconcile(ctx: &Ctx, key: &Key) -> Result<Option<Duration>, kube::Error> {
    let Some(ds) = ctx.daemonsets.get(key) else {
        ctx.expectations.forget(key);
        return Ok(None);
    };
    // Upstream returns here: status cannot be trusted while the garbage collector works.
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(None);
    }
    let ns = ds.namespace().unwrap_or_default();
    let nodes: Vec<Node> = ctx.nodes.state().iter().map(|n| (**n).clone()).collect();
    // Only this DaemonSet's pods are cloned: a namespace may hold thousands of others.
    let uid = ds.metadata.uid.clone().unwrap_or_default();
    let pods: Vec<Pod> = ctx
        .pods
        .state()
        .iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(&ns))
        .filter(|p| util::controller_of(p.as_ref()).is_some_and(|r| r.uid == uid))
        .map(|p| (**p).clone())
        .collect();
    let actions = desired_daemon_pods(&ds, &nodes, &pods, jiff::Timestamp::now());
    let reference = events::object_reference(&*ds);
    let api_ds: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &ns);
    let api_pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);

    if !ctx.expectations.satisfied(key, &ctx.pods) {
        // Our last writes are not in the cache yet: report, but do not act on stale pods.
        write_status(&api_ds, &ds, &actions.status, false).await?;
        return Ok(Some(Duration::from_millis(500)));
    }
    for e in &actions.events {
        let kind = if e.warning {
            events::EventType::Warning
        } else {
            events::EventType::Normal
        };
        ctx.recorder
            .publish(&reference, kind, e.reason, &e.message)
            .await;
    }

    let mut first_error = None;
    let hash = current_hash(&ds);
    let mut created = Vec::new();
    // Slow start as upstream: batches of 1, 2, 4, ...; stop after a batch with a failure.
    let mut batch = 1usize;
    let mut todo = actions.create_on.as_slice();
    while !todo.is_empty() {
        let (now, rest) = todo.split_at(batch.min(todo.len()));
        todo = rest;
        let results = futures::future::join_all(now.iter().map(|node| {
            let pod = new_daemon_pod(&ds, node, &hash);
            let api = api_pods.clone();
            async move { api.create(&PostParams::default(), &pod).await }
        }))
        .await;
        let mut failed = false;
        for r in results {
            match r {
                Ok(pod) => {
                    let name = pod.name_any();
                    ctx.recorder
                        .normal(
                            &reference,
                            "SuccessfulCreate",
                            &format!("Created pod: {name}"),
                        )
                        .await;
                    created.push(name);
                }
                Err(e) => {
                    failed = true;
                    ctx.recorder
                        .warning(
                            &reference,
                            "FailedCreate",
                            &format!("Error creating: {}", util::api_error_message(&e)),
                        )
                        .await;
                    first_error.get_or_insert(e);
                }
            }
        }
        if failed {
            break;
        }
        batch = batch.saturating_mul(2);
    }

    let results = futures::future::join_all(actions.delete.iter().map(|name| {
        let api = api_pods.clone();
        async move { (name, api.delete(name, &DeleteParams::default()).await) }
    }))
    .await;
    let mut deleted = Vec::new();
    for (name, r) in results {
        match r {
            Ok(_) => {
                ctx.recorder
                    .normal(
                        &reference,
                        "SuccessfulDelete",
                        &format!("Deleted pod: {name}"),
                    )
                    .await;
                deleted.push(name.clone());
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                ctx.recorder
                    .warning(
                        &reference,
                        "FailedDelete",
                        &format!("Error deleting: {}", util::api_error_message(&e)),
                    )
                    .await;
                first_error.get_or_insert(e);
            }
        }
    }
    ctx.expectations.expect(key, created, deleted);

    // Stand-in for the pod garbage collector: force-delete pods bound to a node that a fresh
    // read confirms is gone (the cache alone could lag behind a node just created).
    let api_nodes: Api<Node> = Api::all(ctx.client.clone());
    for name in &actions.orphaned {
        let Some(pod) = pods
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(name))
        else {
            continue;
        };
        let Some(node) = target_node_name(pod) else {
            continue;
        };
        if api_nodes.get_opt(node).await?.is_none() {
            match api_pods
                .delete(name, &DeleteParams::default().grace_period(0))
                .await
            {
                Ok(_) | Err(kube::Error::Api(_)) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
    }

    write_status(&api_ds, &ds, &actions.status, true).await?;
    match first_error {
        Some(e) => Err(e),
        None => Ok(Some(actions.requeue_after.unwrap_or(RESYNC))),
    }
}

async fn write_status(
    api: &Api<DaemonSet>,
    ds: &DaemonSet,
    status: &DaemonSetStatus,
    observed: bool,
) -> Result<(), kube::Error> {
    let mut status = status.clone();
    if !observed {
        status.observed_generation = ds.status.as_ref().and_then(|s| s.observed_generation);
    }
    if status_matches(ds.status.as_ref(), &status) {
        return Ok(());
    }
    match api
        .patch_status(
            &ds.name_any(),
            &PatchParams::default(),
            &Patch::Merge(status_patch(&status)),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus, Taint};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::json;

    fn node(name: &str, extra: serde_json::Value) -> Node {
        let mut v = json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}});
        merge(&mut v, extra);
        serde_json::from_value(v).unwrap()
    }

    fn merge(into: &mut serde_json::Value, patch: serde_json::Value) {
        match (into, patch) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (slot, v) => *slot = v,
        }
    }

    fn control_plane() -> Node {
        node(
            "kube-0",
            json!({"metadata": {"labels": {"node-role.kubernetes.io/control-plane": ""}},
                   "spec": {"taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]}}),
        )
    }

    fn cluster() -> Vec<Node> {
        vec![
            control_plane(),
            node("kube-1", json!({})),
            node("kube-2", json!({})),
        ]
    }

    fn rng(template_extra: serde_json::Value) -> DaemonSet {
        let mut v = json!({
            "metadata": {"name": "rng", "namespace": "default", "uid": "ds-uid", "generation": 1,
                         "annotations": {"deprecated.daemonset.template.generation": "1"}},
            "spec": {
                "selector": {"matchLabels": {"app": "rng"}},
                "template": {"metadata": {"labels": {"app": "rng"}},
                             "spec": {"containers": [{"name": "rng", "image": "training/dockercoins-rng:1.0"}]}},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}
            }
        });
        merge(&mut v["spec"]["template"], template_extra);
        serde_json::from_value(v).unwrap()
    }

    fn now() -> jiff::Timestamp {
        "2025-01-01T00:10:00Z".parse().unwrap()
    }

    /// A pod of `ds` bound to `node`, created `age_s` seconds before [`now`], Ready or not.
    fn daemon_pod(ds: &DaemonSet, name: &str, node: &str, ready: bool, age_s: i64) -> Pod {
        let mut pod = new_daemon_pod(ds, node, &current_hash(ds));
        pod.metadata.name = Some(name.into());
        pod.metadata.creation_timestamp =
            Some(Time(now() - jiff::SignedDuration::from_secs(age_s)));
        pod.spec.as_mut().unwrap().node_name = Some(node.into());
        pod.status = Some(PodStatus {
            phase: Some("Running".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                last_transition_time: Some(Time(now() - jiff::SignedDuration::from_secs(age_s))),
                ..Default::default()
            }]),
            ..Default::default()
        });
        pod
    }

    fn taint(key: &str, value: Option<&str>, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: value.map(str::to_string),
            effect: effect.into(),
            time_added: None,
        }
    }

    fn toleration(key: &str, op: &str, value: Option<&str>, effect: &str) -> Toleration {
        Toleration {
            key: Some(key.into()).filter(|k: &String| !k.is_empty()),
            operator: Some(op.into()).filter(|o: &String| !o.is_empty()),
            value: value.map(str::to_string),
            effect: Some(effect.into()).filter(|e: &String| !e.is_empty()),
            toleration_seconds: None,
        }
    }

    #[test]
    fn toleration_matching_table() {
        let cases = [
            // (toleration key, op, value, effect) vs (taint key, value, effect) → tolerated
            (
                ("k", "Exists", None, ""),
                ("k", Some("v"), "NoSchedule"),
                true,
            ),
            (
                ("k", "Exists", None, "NoSchedule"),
                ("k", None, "NoExecute"),
                false,
            ),
            (
                ("k", "Equal", Some("v"), "NoSchedule"),
                ("k", Some("v"), "NoSchedule"),
                true,
            ),
            (
                ("k", "Equal", Some("v"), "NoSchedule"),
                ("k", Some("w"), "NoSchedule"),
                false,
            ),
            // An empty operator means Equal; an absent value equals an empty one.
            (("k", "", None, ""), ("k", None, "NoExecute"), true),
            (("k", "", None, ""), ("k", Some("v"), "NoExecute"), false),
            // An empty key with Exists tolerates everything.
            (
                ("", "Exists", None, ""),
                ("any", Some("x"), "NoExecute"),
                true,
            ),
            (
                ("other", "Exists", None, ""),
                ("k", None, "NoSchedule"),
                false,
            ),
            (
                ("k", "Gt", Some("1"), ""),
                ("k", Some("2"), "NoSchedule"),
                false,
            ),
        ];
        for ((tk, op, tv, te), (k, v, e), want) in cases {
            let got = util::tolerates(&toleration(tk, op, tv, te), &taint(k, v, e));
            assert_eq!(
                got, want,
                "toleration {tk}/{op}/{tv:?}/{te} vs taint {k}={v:?}:{e}"
            );
        }
    }

    #[test]
    fn node_verdicts_follow_taints_selectors_and_affinity() {
        let ds = rng(json!({}));
        let t = &ds.spec.as_ref().unwrap().template;
        let verdict = |n: &Node| {
            let v = node_verdict(t, n);
            (v.should_run, v.should_continue_running)
        };
        // The control-plane taint is NoSchedule: no new pod, but one already there may stay.
        assert_eq!(verdict(&control_plane()), (false, true));
        assert_eq!(verdict(&node("kube-1", json!({}))), (true, true));
        // An untolerated NoExecute taint: neither.
        let evicting = node(
            "kube-3",
            json!({"spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoExecute"}]}}),
        );
        assert_eq!(verdict(&evicting), (false, false));
        // PreferNoSchedule never blocks.
        let soft = node(
            "kube-3",
            json!({"spec": {"taints": [{"key": "x", "effect": "PreferNoSchedule"}]}}),
        );
        assert_eq!(verdict(&soft), (true, true));
        // The daemon defaults tolerate node trouble and cordoning...
        let troubled = node(
            "kube-3",
            json!({"spec": {"taints": [
                {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"},
                {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"},
                {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
                {"key": "node.kubernetes.io/memory-pressure", "effect": "NoSchedule"}]}}),
        );
        assert_eq!(verdict(&troubled), (true, true));
        // ...but network-unavailable only for host-network pods.
        let no_net = node(
            "kube-3",
            json!({"spec": {"taints": [{"key": "node.kubernetes.io/network-unavailable", "effect": "NoSchedule"}]}}),
        );
        assert_eq!(verdict(&no_net), (false, true));
        let host_net = rng(json!({"spec": {"hostNetwork": true}}));
        assert!(node_should_run(&host_net.spec.unwrap().template, &no_net));
        // A toleration for the control-plane taint lets the daemon onto kube-0.
        let everywhere = rng(json!({"spec": {"tolerations": [
            {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}]}}));
        assert!(node_should_run(
            &everywhere.spec.unwrap().template,
            &control_plane()
        ));
        // nodeSelector and required affinity: mismatch means neither run nor stay.
        let selected = rng(json!({"spec": {"nodeSelector": {"disk": "ssd"}}}));
        let t2 = &selected.spec.as_ref().unwrap().template;
        assert_eq!(
            node_verdict(t2, &node("kube-1", json!({}))),
            NodeVerdict {
                should_run: false,
                should_continue_running: false
            }
        );
        assert!(node_should_run(
            t2,
            &node("kube-1", json!({"metadata": {"labels": {"disk": "ssd"}}}))
        ));
        let affine = rng(
            json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "node-role.kubernetes.io/control-plane", "operator": "DoesNotExist"}]},
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["kube-9"]}]}
            ]}}}}}),
        );
        let t3 = &affine.spec.as_ref().unwrap().template;
        assert!(node_should_run(t3, &node("kube-1", json!({}))));
        // Terms are ORed: kube-9 matches the second although it is a control plane.
        assert!(node_should_run(
            t3,
            &node(
                "kube-9",
                json!({"metadata": {"labels": {"node-role.kubernetes.io/control-plane": ""}}})
            )
        ));
        assert!(!node_should_run(
            t3,
            &node(
                "kube-8",
                json!({"metadata": {"labels": {"node-role.kubernetes.io/control-plane": ""}}})
            )
        ));
        // A template pinned to a node name runs only there.
        let pinned = rng(json!({"spec": {"nodeName": "kube-2"}}));
        let t4 = &pinned.spec.as_ref().unwrap().template;
        assert!(!node_should_run(t4, &node("kube-1", json!({}))));
        assert!(node_should_run(t4, &node("kube-2", json!({}))));
    }

    #[test]
    fn daemon_pods_are_pinned_labelled_tolerating_and_owned() {
        let ds = rng(json!({"spec": {"tolerations": [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}]}}));
        let hash = current_hash(&ds);
        let pod = new_daemon_pod(&ds, "kube-1", &hash);
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("rng-"));
        assert_eq!(pod.metadata.name, None);
        let labels = pod.metadata.labels.clone().unwrap();
        assert_eq!(labels["app"], "rng");
        assert_eq!(labels[REVISION_HASH_LABEL], hash);
        assert_eq!(labels[TEMPLATE_GENERATION_LABEL], "1");
        let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("DaemonSet", "rng", "ds-uid")
        );
        assert_eq!(owner.controller, Some(true));
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.node_name, None, "the scheduler binds daemon pods");
        assert_eq!(target_node_name(&pod), Some("kube-1"));
        let tolerations: Vec<(String, String, Option<i64>)> = spec
            .tolerations
            .iter()
            .flatten()
            .map(|t| {
                (
                    t.key.clone().unwrap_or_default(),
                    t.effect.clone().unwrap_or_default(),
                    t.toleration_seconds,
                )
            })
            .collect();
        // The template's not-ready toleration (same key/operator/value/effect) is replaced, so
        // daemon pods are never evicted; the rest are appended in upstream's order.
        let ns = |k: &str, e: &str| (format!("node.kubernetes.io/{k}"), e.to_string(), None);
        assert_eq!(
            tolerations,
            vec![
                ns("not-ready", "NoExecute"),
                ns("unreachable", "NoExecute"),
                ns("disk-pressure", "NoSchedule"),
                ns("memory-pressure", "NoSchedule"),
                ns("pid-pressure", "NoSchedule"),
                ns("unschedulable", "NoSchedule"),
            ]
        );
        // Required terms of the template are replaced by the pin (checked by the controller).
        let affine = rng(
            json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}]}}}}}),
        );
        let pod = new_daemon_pod(&affine, "kube-2", "h");
        let terms = &pod
            .spec
            .unwrap()
            .affinity
            .unwrap()
            .node_affinity
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .unwrap()
            .node_selector_terms;
        assert_eq!(terms.len(), 1);
        assert_eq!(terms[0].match_expressions, None);
    }

    #[test]
    fn template_hash_changes_with_the_template_and_uses_the_safe_alphabet() {
        let a = current_hash(&rng(json!({})));
        let b = current_hash(&rng(
            json!({"spec": {"containers": [{"name": "rng", "image": "rng:2"}]}}),
        ));
        assert_ne!(a, b);
        assert_eq!(a, current_hash(&rng(json!({}))));
        for h in [&a, &b] {
            assert!(!h.is_empty() && h.len() <= 10, "{h}");
            assert!(
                h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
                "{h}"
            );
        }
        let t = rng(json!({})).spec.unwrap().template;
        assert_ne!(template_hash(&t, None), template_hash(&t, Some(1)));
    }

    #[test]
    fn workers_only_get_pods_and_status_counts_them() {
        let ds = rng(json!({}));
        let a = desired_daemon_pods(&ds, &cluster(), &[], now());
        assert_eq!(a.create_on, ["kube-1", "kube-2"]);
        assert!(a.delete.is_empty());
        assert_eq!(a.status.desired_number_scheduled, 2);
        assert_eq!(a.status.current_number_scheduled, 0);
        assert_eq!(a.status.number_unavailable, Some(2));
        assert_eq!(a.status.observed_generation, Some(1));

        let pods = [
            daemon_pod(&ds, "rng-aaaaa", "kube-1", true, 60),
            daemon_pod(&ds, "rng-bbbbb", "kube-2", false, 60),
        ];
        let a = desired_daemon_pods(&ds, &cluster(), &pods, now());
        assert_eq!(a.create_on, Vec::<String>::new());
        assert_eq!(a.delete, Vec::<String>::new());
        let s = &a.status;
        assert_eq!(
            (
                s.desired_number_scheduled,
                s.current_number_scheduled,
                s.number_ready,
                s.updated_number_scheduled,
                s.number_available,
                s.number_unavailable,
                s.number_misscheduled
            ),
            (2, 2, 1, Some(2), Some(1), Some(1), 0)
        );

        // A node that joins later gets its pod.
        let mut bigger = cluster();
        bigger.push(node("kube-3", json!({})));
        let a = desired_daemon_pods(&ds, &bigger, &pods, now());
        assert_eq!(a.create_on, ["kube-3"]);
        assert_eq!(a.status.desired_number_scheduled, 3);
    }

    #[test]
    fn pods_of_other_owners_or_namespaces_are_ignored() {
        let ds = rng(json!({}));
        let mut foreign = daemon_pod(&ds, "rng-other", "kube-1", true, 60);
        foreign.metadata.owner_references.as_mut().unwrap()[0].uid = "someone-else".into();
        let mut elsewhere = daemon_pod(&ds, "rng-ns", "kube-2", true, 60);
        elsewhere.metadata.namespace = Some("kube-system".into());
        let a = desired_daemon_pods(&ds, &cluster(), &[foreign, elsewhere], now());
        assert_eq!(a.create_on, ["kube-1", "kube-2"]);
    }

    #[test]
    fn ineligible_nodes_lose_their_pods_and_noschedule_keeps_them() {
        let ds = rng(json!({"spec": {"nodeSelector": {"role": "worker"}}}));
        let worker = node(
            "kube-1",
            json!({"metadata": {"labels": {"role": "worker"}}}),
        );
        let relabelled = node("kube-2", json!({}));
        let pods = [
            daemon_pod(&ds, "rng-aaaaa", "kube-1", true, 60),
            daemon_pod(&ds, "rng-bbbbb", "kube-2", true, 60),
        ];
        let a = desired_daemon_pods(&ds, &[worker.clone(), relabelled], &pods, now());
        assert_eq!(a.delete, ["rng-bbbbb"]);
        assert_eq!(a.status.number_misscheduled, 1);
        assert_eq!(a.status.desired_number_scheduled, 1);

        // Tainted NoSchedule after the pod started: it stays, counted as misscheduled.
        let tainted = node(
            "kube-1",
            json!({"metadata": {"labels": {"role": "worker"}},
                   "spec": {"taints": [{"key": "maintenance", "effect": "NoSchedule"}]}}),
        );
        let a = desired_daemon_pods(&ds, &[tainted], &pods[..1], now());
        assert!(a.delete.is_empty() && a.create_on.is_empty());
        assert_eq!(a.status.number_misscheduled, 1);
    }

    #[test]
    fn surplus_failed_and_orphaned_pods() {
        let ds = rng(json!({}));
        let old = daemon_pod(&ds, "rng-old00", "kube-1", true, 100);
        let young = daemon_pod(&ds, "rng-young", "kube-1", true, 10);
        let mut failed = daemon_pod(&ds, "rng-fail0", "kube-2", false, 10);
        failed.status.as_mut().unwrap().phase = Some("Failed".into());
        let gone_bound = daemon_pod(&ds, "rng-gone0", "kube-7", true, 10);
        let mut gone_pending = new_daemon_pod(&ds, "kube-8", &current_hash(&ds));
        gone_pending.metadata.name = Some("rng-pend0".into());
        let a = desired_daemon_pods(
            &ds,
            &cluster(),
            &[young, old, failed, gone_bound, gone_pending],
            now(),
        );
        // One per node, the oldest kept; the failed one deleted (re-created next pass).
        assert_eq!(a.delete, ["rng-young", "rng-fail0", "rng-pend0"]);
        assert_eq!(a.orphaned, ["rng-gone0"]);
        assert_eq!(a.events.len(), 1);
        assert_eq!(a.events[0].reason, "FailedDaemonPod");
        assert_eq!(
            a.events[0].message,
            "Found failed daemon pod default/rng-fail0 on node kube-2, will try to kill it"
        );
    }

    #[test]
    fn a_terminating_pod_blocks_its_replacement_until_it_is_gone() {
        let ds = rng(json!({}));
        let mut leaving = daemon_pod(&ds, "rng-aaaaa", "kube-1", true, 60);
        leaving.metadata.deletion_timestamp = Some(Time(now()));
        let a = desired_daemon_pods(&ds, &cluster(), &[leaving], now());
        assert_eq!(a.create_on, ["kube-2"]);
        assert!(a.delete.is_empty());
    }

    #[test]
    fn rolling_update_replaces_one_available_pod_at_a_time() {
        let old_ds = rng(json!({}));
        let mut nodes = cluster();
        nodes.push(node("kube-3", json!({})));
        let old_pods: Vec<Pod> = ["kube-1", "kube-2", "kube-3"]
            .iter()
            .enumerate()
            .map(|(i, n)| daemon_pod(&old_ds, &format!("rng-old{i}0"), n, true, 60))
            .collect();
        let mut new_ds = rng(json!({"spec": {"containers": [{"name": "rng", "image": "rng:2"}]}}));
        new_ds.metadata.annotations =
            Some([(TEMPLATE_GENERATION_ANNOTATION.to_string(), "2".to_string())].into());
        let a = desired_daemon_pods(&new_ds, &nodes, &old_pods, now());
        assert!(a.create_on.is_empty());
        assert_eq!(a.delete, ["rng-old00"]);
        assert_eq!(a.status.updated_number_scheduled, Some(0));

        // kube-1 now runs a new pod that is not ready yet: no further deletion.
        let mut pods = old_pods.clone();
        pods[0] = daemon_pod(&new_ds, "rng-new00", "kube-1", false, 1);
        let a = desired_daemon_pods(&new_ds, &nodes, &pods, now());
        assert!(a.delete.is_empty(), "{:?}", a.delete);
        assert_eq!(a.status.updated_number_scheduled, Some(1));

        // Once it is available, the next old pod goes.
        pods[0] = daemon_pod(&new_ds, "rng-new00", "kube-1", true, 1);
        let a = desired_daemon_pods(&new_ds, &nodes, &pods, now());
        assert_eq!(a.delete, ["rng-old10"]);

        // An old pod that is unavailable anyway is replaced regardless of the budget.
        pods[0] = daemon_pod(&new_ds, "rng-new00", "kube-1", false, 1);
        pods[2] = daemon_pod(&old_ds, "rng-old20", "kube-3", false, 60);
        let a = desired_daemon_pods(&new_ds, &nodes, &pods, now());
        assert_eq!(a.delete, ["rng-old20"]);

        // OnDelete: nothing is replaced.
        let mut on_delete = new_ds.clone();
        on_delete.spec.as_mut().unwrap().update_strategy =
            Some(k8s_openapi::api::apps::v1::DaemonSetUpdateStrategy {
                type_: Some("OnDelete".into()),
                rolling_update: None,
            });
        assert!(
            desired_daemon_pods(&on_delete, &nodes, &old_pods, now())
                .delete
                .is_empty()
        );

        // maxUnavailable 50% of 3 rounds up to 2.
        let mut half = new_ds.clone();
        half.spec.as_mut().unwrap().update_strategy = Some(
            serde_json::from_value(json!(
            {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "50%"}}))
            .unwrap(),
        );
        let a = desired_daemon_pods(&half, &nodes, &old_pods, now());
        assert_eq!(a.delete, ["rng-old00", "rng-old10"]);
    }

    #[test]
    fn min_ready_seconds_gates_availability_and_requeues() {
        let mut ds = rng(json!({}));
        ds.spec.as_mut().unwrap().min_ready_seconds = Some(30);
        let pods = [
            daemon_pod(&ds, "rng-aaaaa", "kube-1", true, 10),
            daemon_pod(&ds, "rng-bbbbb", "kube-2", true, 60),
        ];
        let a = desired_daemon_pods(&ds, &cluster(), &pods, now());
        assert_eq!(a.status.number_ready, 2);
        assert_eq!(a.status.number_available, Some(1));
        assert_eq!(a.requeue_after, Some(Duration::from_secs(30)));
    }

    #[test]
    fn an_empty_selector_selects_nothing_and_warns() {
        let mut ds = rng(json!({}));
        ds.spec.as_mut().unwrap().selector = LabelSelector::default();
        let a = desired_daemon_pods(&ds, &cluster(), &[], now());
        assert!(a.create_on.is_empty());
        assert_eq!(a.events[0].reason, "SelectingAll");
    }

    #[test]
    fn status_patch_omits_zero_omitempty_counts() {
        let status = DaemonSetStatus {
            desired_number_scheduled: 2,
            current_number_scheduled: 0,
            number_misscheduled: 0,
            number_ready: 0,
            updated_number_scheduled: Some(0),
            number_available: Some(0),
            number_unavailable: Some(2),
            observed_generation: Some(1),
            ..Default::default()
        };
        assert_eq!(
            status_patch(&status),
            json!({"status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 0,
                "numberMisscheduled": 0, "numberReady": 0, "updatedNumberScheduled": null,
                "numberAvailable": null, "numberUnavailable": 2, "observedGeneration": 1}})
        );
        assert!(status_matches(Some(&status), &status));
        let mut stale = status.clone();
        stale.observed_generation = None;
        assert!(!status_matches(Some(&stale), &status));
    }
}
