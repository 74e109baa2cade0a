//! The Deployment controller (upstream `pkg/controller/deployment`): rolls a Deployment's pod
//! template out through ReplicaSets named `<deployment>-<pod-template-hash>`, one per template
//! revision, scaling the new one up and the old ones down within `maxSurge`/`maxUnavailable`
//! (or all old ones to zero first, for `Recreate`), and reports progress in `status`.
//!
//! The pure core, [`plan`], follows upstream's `syncDeployment` step by step on working copies:
//! every write upstream would make in one sync becomes an [`Action`], applied to the copies so
//! later steps see it, and the status it would then write is returned with them. The loop
//! carries a plan out in order, stopping at the first failure (the next sync recomputes).
//!
//! It never touches pods: the ReplicaSet controller creates and deletes them. Pods are only
//! read, to let `Recreate` wait until the old ones are gone.

use crate::events::{Recorder, object_reference};
use crate::util::{self, KeyQueue};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::Value;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// The event source of this controller.
pub const COMPONENT: &str = "deployment-controller";
/// The label (and selector term) that keeps each revision's ReplicaSet apart.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY_ANNOTATION: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/max-replicas";
const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";
const DEPRECATED_ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";
/// Upstream's `maxRevHistoryLengthInChars`.
const MAX_REVISION_HISTORY_CHARS: usize = 2000;
const WORKERS: usize = 5;
/// Every Deployment is reconciled at least this often, even without events.
const RESYNC: Duration = Duration::from_secs(30);

// Condition reasons and messages, as upstream's `deploymentutil`.
pub const REASON_RS_UPDATED: &str = "ReplicaSetUpdated";
pub const REASON_RS_CREATE_ERROR: &str = "ReplicaSetCreateError";
pub const REASON_NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub const REASON_FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub const REASON_NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const REASON_TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub const REASON_PAUSED: &str = "DeploymentPaused";
pub const REASON_RESUMED: &str = "DeploymentResumed";
pub const REASON_MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
pub const REASON_MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";

// ---- Template hash ----

/// Upstream's `rand.SafeEncodeString` alphabet: no vowels (no words) and no look-alikes.
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// `rand.SafeEncodeString`: each byte picks a letter of [`SAFE_ALPHABET`] by its value.
pub fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()] as char)
        .collect()
}

/// FNV-1a, 32 bits (Go's `hash/fnv.New32a`).
fn fnv32a(chunks: &[&[u8]]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for chunk in chunks {
        for b in *chunk {
            hash ^= u32::from(*b);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    }
    hash
}

/// JSON with object keys sorted at every level and nulls dropped: the same template always
/// gives the same bytes, whatever order its maps were built in.
fn canonical_json(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, _)| k)
                .collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical_json(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// `controller.ComputeHash`: FNV-32a of the template (here: of its canonical JSON, where Go
/// hashes its deep-printed struct, so values differ from upstream's) and of the collision count,
/// written in decimal and encoded with [`safe_encode`]: 6 to 10 characters of
/// `[4-9bcdf]`, as upstream's.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let value = serde_json::to_value(template).unwrap_or(Value::Null);
    let mut canonical = String::new();
    canonical_json(&value, &mut canonical);
    let count_bytes = collision_count.map(|c| (c as u32).to_le_bytes());
    let mut chunks: Vec<&[u8]> = vec![canonical.as_bytes()];
    if let Some(b) = count_bytes.as_ref() {
        chunks.push(b);
    }
    safe_encode(&fnv32a(&chunks).to_string())
}

/// Drops nulls, empty objects and empty arrays, so `None` and `Some(empty)` compare equal as Go's
/// semantic equality treats nil and empty.
fn semantic(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, semantic(v)))
                .filter(|(_, v)| !is_empty_value(v))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(semantic).collect()),
        other => other,
    }
}

fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// `EqualIgnoreHash`: the templates are equal once the pod-template-hash label is ignored.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    let strip = |t: &PodTemplateSpec| {
        let mut t = t.clone();
        if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            labels.remove(POD_TEMPLATE_HASH_LABEL);
        }
        semantic(serde_json::to_value(&t).unwrap_or(Value::Null))
    };
    strip(a) == strip(b)
}

// ---- Small accessors ----

fn d_replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn rs_status_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map_or(0, |s| s.replicas)
}

fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

fn rs_ready(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

fn created(obj: &impl kube::Resource) -> Option<Timestamp> {
    obj.meta().creation_timestamp.as_ref().map(|t| t.0)
}

fn template_of(d: &Deployment) -> PodTemplateSpec {
    d.spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default()
}

fn rs_template(rs: &ReplicaSet) -> PodTemplateSpec {
    rs.spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default()
}

fn is_recreate(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        == Some("Recreate")
}

fn is_paused(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false)
}

fn min_ready_seconds(d: &Deployment) -> Option<i32> {
    d.spec.as_ref().and_then(|s| s.min_ready_seconds)
}

/// `HasProgressDeadline`: set and not MaxInt32.
fn progress_deadline(d: &Deployment) -> Option<i32> {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .filter(|s| *s != i32::MAX)
}

fn revision_history_limit(d: &Deployment) -> Option<i32> {
    d.spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .filter(|s| *s != i32::MAX)
}

/// `deploymentutil.Revision`: missing → 0; unparsable → `None` (skipped).
pub fn revision(rs: &ReplicaSet) -> Option<i64> {
    match rs.annotations().get(REVISION_ANNOTATION) {
        None => Some(0),
        Some(v) => v.parse().ok(),
    }
}

fn annotation_i32(rs: &ReplicaSet, key: &str) -> Option<i32> {
    rs.annotations().get(key).and_then(|v| v.parse().ok())
}

/// `ReplicaSetsByCreationTimestamp`: older first, then by name.
fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    created(a)
        .cmp(&created(b))
        .then_with(|| a.name_any().cmp(&b.name_any()))
}

// ---- maxSurge / maxUnavailable ----

/// `intstr.GetScaledValueFromIntOrPercent`: an absolute value, or a percentage of `total`
/// rounded up or down; anything unparsable counts as 0 (upstream ignores the error too).
pub fn scaled_value(v: Option<&IntOrString>, total: i32, round_up: bool) -> i32 {
    match v {
        None => 0,
        Some(IntOrString::Int(i)) => *i,
        Some(IntOrString::String(s)) => {
            let Some(pct) = s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) else {
                return 0;
            };
            let product = pct * i64::from(total);
            let value = if round_up {
                product.div_euclid(100) + i64::from(product.rem_euclid(100) != 0)
            } else {
                product.div_euclid(100)
            };
            i32::try_from(value).unwrap_or(0)
        }
    }
}

/// `ResolveFenceposts`: (maxSurge, maxUnavailable) for the Deployment's replicas, surge rounded
/// up and unavailable rounded down; both zero would stall, so unavailable becomes 1.
pub fn fenceposts(d: &Deployment) -> (i32, i32) {
    let rolling = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let default = IntOrString::String("25%".into());
    let surge_spec = rolling.map_or(Some(&default), |r| r.max_surge.as_ref());
    let unavailable_spec = rolling.map_or(Some(&default), |r| r.max_unavailable.as_ref());
    let replicas = d_replicas(d);
    let surge = scaled_value(surge_spec, replicas, true);
    let unavailable = scaled_value(unavailable_spec, replicas, false);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// `MaxSurge`: 0 unless rolling.
pub fn max_surge(d: &Deployment) -> i32 {
    if is_recreate(d) { 0 } else { fenceposts(d).0 }
}

/// `MaxUnavailable`: 0 unless rolling with replicas, and never above the replicas.
pub fn max_unavailable(d: &Deployment) -> i32 {
    if is_recreate(d) || d_replicas(d) == 0 {
        return 0;
    }
    fenceposts(d).1.min(d_replicas(d))
}

// ---- Conditions ----

fn condition<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
}

fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// `SetDeploymentCondition`: no change when status and reason are the same; the transition
/// time survives a change of reason only.
pub fn set_condition(status: &mut DeploymentStatus, mut cond: DeploymentCondition) {
    if let Some(current) = condition(status, &cond.type_) {
        if current.status == cond.status && current.reason == cond.reason {
            return;
        }
        if current.status == cond.status {
            cond.last_transition_time = current.last_transition_time.clone();
        }
    }
    remove_condition(status, &cond.type_);
    status.conditions.get_or_insert_with(Vec::new).push(cond);
}

fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(c) = status.conditions.as_mut() {
        c.retain(|c| c.type_ != type_);
        if c.is_empty() {
            status.conditions = None;
        }
    }
}

/// Go's `omitempty` for counters.
fn non_zero(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

/// `DeploymentComplete`: every replica updated and available, nothing old left, generation seen.
pub fn deployment_complete(d: &Deployment, status: &DeploymentStatus) -> bool {
    let want = d_replicas(d);
    status.updated_replicas.unwrap_or(0) == want
        && status.replicas.unwrap_or(0) == want
        && status.available_replicas.unwrap_or(0) == want
        && status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// `DeploymentProgressing`: more updated, ready or available pods, or fewer old ones.
fn deployment_progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let old_old = old.replicas.unwrap_or(0) - old.updated_replicas.unwrap_or(0);
    let new_old = new.replicas.unwrap_or(0) - new.updated_replicas.unwrap_or(0);
    new.updated_replicas.unwrap_or(0) > old.updated_replicas.unwrap_or(0)
        || new_old < old_old
        || new.ready_replicas.unwrap_or(0) > old.ready_replicas.unwrap_or(0)
        || new.available_replicas.unwrap_or(0) > old.available_replicas.unwrap_or(0)
}

/// `DeploymentTimedOut`: no progress recorded for `progressDeadlineSeconds`.
fn deployment_timed_out(d: &Deployment, status: &DeploymentStatus, now: Timestamp) -> bool {
    let Some(deadline) = progress_deadline(d) else {
        return false;
    };
    let Some(cond) = condition(status, "Progressing") else {
        return false;
    };
    match cond.reason.as_deref() {
        Some(REASON_NEW_RS_AVAILABLE) => false,
        Some(REASON_TIMED_OUT) => true,
        _ => cond.last_update_time.as_ref().is_some_and(|t| {
            t.0.checked_add(jiff::SignedDuration::from_secs(i64::from(deadline)))
                .is_ok_and(|until| until < now)
        }),
    }
}

// ---- The plan ----

/// One write of a sync, in the order upstream makes it.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Patch a controller reference to the Deployment into an orphan ReplicaSet.
    AdoptReplicaSet { name: String, uid: String },
    /// Remove the Deployment's reference from a ReplicaSet that no longer matches.
    ReleaseReplicaSet { name: String, uid: String },
    /// Create the new ReplicaSet (event `Scaled up ... from 0 to N` when N > 0).
    CreateReplicaSet(Box<ReplicaSet>),
    /// Replace a ReplicaSet (replicas, annotations, minReadySeconds); `scaled_from` is the old
    /// size when the size changes (event `ScalingReplicaSet`).
    UpdateReplicaSet {
        rs: Box<ReplicaSet>,
        scaled_from: Option<i32>,
    },
    /// Delete an old, empty ReplicaSet beyond `revisionHistoryLimit`.
    DeleteReplicaSet { name: String, uid: String },
}

/// An event that is not the result of a write (writes carry their own).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedEvent {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

/// Everything one sync of a Deployment does.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// The status to write, when it differs from the current one.
    pub status: Option<DeploymentStatus>,
    /// The Deployment's new revision annotation, when it changes.
    pub revision: Option<String>,
    pub events: Vec<PlannedEvent>,
    /// Check again this soon (a progress deadline is due), instead of the periodic resync.
    pub requeue_after: Option<Duration>,
}

/// Computes one sync of `d` (upstream `syncDeployment`). `replicasets` and `pods` are those of
/// the Deployment's namespace, as cached; `allow_adoption` is false when a fresh read showed
/// the Deployment is going away.
pub fn plan(
    d: &Deployment,
    replicasets: &[ReplicaSet],
    pods: &[Pod],
    now: Timestamp,
    allow_adoption: bool,
) -> Plan {
    let now = Timestamp::from_second(now.as_second()).unwrap_or(now);
    let mut p = Planner {
        d: d.clone(),
        rses: Vec::new(),
        namespace_rses: replicasets,
        pods,
        now,
        out: Plan::default(),
    };
    p.d.status.get_or_insert_with(Default::default);
    p.sync(allow_adoption);
    let Planner {
        d: working, out, ..
    } = p;
    let mut out = out;
    let before = d.status.clone().unwrap_or_default();
    let after = working.status.clone().unwrap_or_default();
    if before != after {
        out.status = Some(after);
    }
    let old_rev = d.annotations().get(REVISION_ANNOTATION);
    let new_rev = working.annotations().get(REVISION_ANNOTATION);
    if new_rev.is_some() && new_rev != old_rev {
        out.revision = new_rev.cloned();
    }
    out
}

struct Planner<'a> {
    /// Working copy: annotations and status change as upstream's in-memory object does.
    d: Deployment,
    /// Working copies of the ReplicaSets the Deployment owns (after claiming).
    rses: Vec<ReplicaSet>,
    namespace_rses: &'a [ReplicaSet],
    pods: &'a [Pod],
    now: Timestamp,
    out: Plan,
}

impl Planner<'_> {
    fn status(&mut self) -> &mut DeploymentStatus {
        self.d.status.get_or_insert_with(Default::default)
    }

    fn sync(&mut self, allow_adoption: bool) {
        let selector = match util::label_selector(
            &self
                .d
                .spec
                .as_ref()
                .map(|s| s.selector.clone())
                .unwrap_or_default(),
        ) {
            Ok(s) => s,
            Err(_) => return,
        };
        if selector.is_empty() {
            self.out.events.push(PlannedEvent {
                warning: true,
                reason: "SelectingAll",
                message: "This deployment is selecting all pods. A non-empty selector is required."
                    .into(),
            });
            let generation = self.d.metadata.generation;
            let status = self.status();
            if status.observed_generation < generation {
                status.observed_generation = generation;
            }
            return;
        }
        self.claim_replica_sets(&selector, allow_adoption);
        if self.d.metadata.deletion_timestamp.is_some() {
            let (new, old) = self.new_and_old(false);
            self.sync_deployment_status(new, &old);
            return;
        }
        self.check_paused_conditions();
        if is_paused(&self.d) {
            self.sync_scaling(true);
            return;
        }
        if self.is_scaling_event() {
            self.sync_scaling(false);
            return;
        }
        if is_recreate(&self.d) {
            self.rollout_recreate();
        } else {
            self.rollout_rolling();
        }
    }

    /// `ClaimReplicaSets`: own what matches, adopt matching orphans, release what stopped
    /// matching. A Deployment being deleted does neither.
    fn claim_replica_sets(
        &mut self,
        selector: &apimachinery::selectors::LabelSelector,
        allow_adoption: bool,
    ) {
        let uid = self.d.metadata.uid.clone().unwrap_or_default();
        let deleting = self.d.metadata.deletion_timestamp.is_some();
        for rs in self.namespace_rses {
            let matches = selector.matches(rs.labels());
            match util::controller_of(rs) {
                Some(owner) if owner.uid == uid => {
                    if matches {
                        self.rses.push(rs.clone());
                    } else if !deleting {
                        self.out.actions.push(Action::ReleaseReplicaSet {
                            name: rs.name_any(),
                            uid: rs.uid().unwrap_or_default(),
                        });
                    }
                }
                Some(_) => {}
                None => {
                    if matches
                        && allow_adoption
                        && !deleting
                        && rs.metadata.deletion_timestamp.is_none()
                    {
                        self.out.actions.push(Action::AdoptReplicaSet {
                            name: rs.name_any(),
                            uid: rs.uid().unwrap_or_default(),
                        });
                        let mut adopted = rs.clone();
                        adopted
                            .metadata
                            .owner_references
                            .get_or_insert_with(Vec::new)
                            .push(util::controller_reference(&self.d));
                        self.rses.push(adopted);
                    }
                }
            }
        }
    }

    /// `checkPausedConditions`.
    fn check_paused_conditions(&mut self) {
        if progress_deadline(&self.d).is_none() {
            return;
        }
        let current = condition(self.status(), "Progressing").cloned();
        if current.as_ref().and_then(|c| c.reason.as_deref()) == Some(REASON_TIMED_OUT) {
            return;
        }
        let paused_recorded =
            current.as_ref().and_then(|c| c.reason.as_deref()) == Some(REASON_PAUSED);
        let now = self.now;
        if is_paused(&self.d) && !paused_recorded {
            let c = new_condition(
                "Progressing",
                "Unknown",
                REASON_PAUSED,
                "Deployment is paused".into(),
                now,
            );
            set_condition(self.status(), c);
        } else if !is_paused(&self.d) && paused_recorded {
            let c = new_condition(
                "Progressing",
                "Unknown",
                REASON_RESUMED,
                "Deployment is resumed".into(),
                now,
            );
            set_condition(self.status(), c);
        }
    }

    /// Indices of the owned ReplicaSets, oldest first.
    fn sorted_indices(&self, filter: impl Fn(&ReplicaSet) -> bool) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..self.rses.len())
            .filter(|i| filter(&self.rses[*i]))
            .collect();
        idx.sort_by(|a, b| by_creation(&self.rses[*a], &self.rses[*b]));
        idx
    }

    /// `getAllReplicaSetsAndSyncRevision`: finds the new ReplicaSet (the oldest whose template
    /// equals the Deployment's), syncs its revision and annotations, or creates it when
    /// `create` is set. Returns (new, old) as indices into the working copies.
    fn new_and_old(&mut self, create: bool) -> (Option<usize>, Vec<usize>) {
        let template = template_of(&self.d);
        let new = self
            .sorted_indices(|_| true)
            .into_iter()
            .find(|i| equal_ignore_hash(&rs_template(&self.rses[*i]), &template));
        let old: Vec<usize> = (0..self.rses.len()).filter(|i| Some(*i) != new).collect();
        let max_old = old
            .iter()
            .filter_map(|i| revision(&self.rses[*i]))
            .max()
            .unwrap_or(0);
        let new_revision = max_old + 1;
        if let Some(i) = new {
            let mut copy = self.rses[i].clone();
            let annotations_changed =
                set_new_rs_annotations(&self.d, &mut copy, new_revision, true);
            let min_ready = min_ready_seconds(&self.d);
            let min_ready_changed =
                copy.spec.as_ref().and_then(|s| s.min_ready_seconds) != min_ready;
            if annotations_changed || min_ready_changed {
                if let Some(spec) = copy.spec.as_mut() {
                    spec.min_ready_seconds = min_ready;
                }
                self.update_rs(i, copy, None);
                return (Some(i), old);
            }
            let rev = copy
                .annotations()
                .get(REVISION_ANNOTATION)
                .cloned()
                .unwrap_or_default();
            set_deployment_revision(&mut self.d, &rev);
            if progress_deadline(&self.d).is_some()
                && condition(self.status(), "Progressing").is_none()
            {
                let c = new_condition(
                    "Progressing",
                    "True",
                    REASON_FOUND_NEW_RS,
                    format!("Found new replica set {:?}", copy.name_any()),
                    self.now,
                );
                set_condition(self.status(), c);
            }
            return (Some(i), old);
        }
        if !create {
            return (None, old);
        }
        self.create_new_rs(template, new_revision, old)
    }

    fn create_new_rs(
        &mut self,
        template: PodTemplateSpec,
        new_revision: i64,
        old: Vec<usize>,
    ) -> (Option<usize>, Vec<usize>) {
        let collision_count = self.status().collision_count;
        let hash = template_hash(&template, collision_count);
        let name = format!("{}-{hash}", self.d.name_any());
        // A ReplicaSet of that name that is not ours-and-equal is a hash collision: count it and
        // try another name on the next sync (upstream learns this from AlreadyExists).
        if self.namespace_rses.iter().any(|rs| rs.name_any() == name) {
            let status = self.status();
            status.collision_count = Some(status.collision_count.unwrap_or(0).saturating_add(1));
            return (None, old);
        }
        let mut template = template;
        let meta = template.metadata.get_or_insert_with(Default::default);
        meta.labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
        let labels = meta.labels.clone();
        let mut selector: LabelSelector = self
            .d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: self.d.namespace(),
                owner_references: Some(vec![util::controller_reference(&self.d)]),
                labels,
                creation_timestamp: Some(Time(self.now)),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: min_ready_seconds(&self.d),
                selector,
                template: Some(template),
            }),
            status: None,
        };
        self.rses.push(rs.clone());
        let idx = self.rses.len() - 1;
        let all: Vec<usize> = (0..self.rses.len()).collect();
        let replicas = new_rs_new_replicas(&self.d, &self.rses, &all, idx);
        if let Some(spec) = rs.spec.as_mut() {
            spec.replicas = Some(replicas);
        }
        set_new_rs_annotations(&self.d, &mut rs, new_revision, false);
        self.rses[idx] = rs.clone();
        self.out
            .actions
            .push(Action::CreateReplicaSet(Box::new(rs)));
        set_deployment_revision(&mut self.d, &new_revision.to_string());
        if progress_deadline(&self.d).is_some() {
            let c = new_condition(
                "Progressing",
                "True",
                REASON_NEW_RS_CREATED,
                format!("Created new replica set {name:?}"),
                self.now,
            );
            set_condition(self.status(), c);
        }
        (Some(idx), old)
    }

    fn update_rs(&mut self, i: usize, rs: ReplicaSet, scaled_from: Option<i32>) {
        self.rses[i] = rs.clone();
        self.out.actions.push(Action::UpdateReplicaSet {
            rs: Box::new(rs),
            scaled_from,
        });
    }

    /// `scaleReplicaSet`: sets the size and the replicas annotations; true if the size changed.
    fn scale_rs(&mut self, i: usize, new_scale: i32) -> bool {
        let rs = &self.rses[i];
        let old_scale = rs_replicas(rs);
        let desired = d_replicas(&self.d);
        let max = desired + max_surge(&self.d);
        let size_changed = old_scale != new_scale;
        if size_changed || replicas_annotations_need_update(rs, desired, max) {
            let mut copy = rs.clone();
            if let Some(spec) = copy.spec.as_mut() {
                spec.replicas = Some(new_scale);
            }
            set_replicas_annotations(&mut copy, desired, max);
            self.update_rs(i, copy, size_changed.then_some(old_scale));
        }
        size_changed
    }

    /// `scaleReplicaSetAndRecordEvent`.
    fn scale_rs_if_needed(&mut self, i: usize, new_scale: i32) -> bool {
        if rs_replicas(&self.rses[i]) == new_scale {
            return false;
        }
        self.scale_rs(i, new_scale)
    }

    /// `isScalingEvent`: an active ReplicaSet was sized for another replica count.
    fn is_scaling_event(&mut self) -> bool {
        let (new, old) = self.new_and_old(false);
        let want = d_replicas(&self.d);
        new.into_iter()
            .chain(old)
            .map(|i| &self.rses[i])
            .filter(|rs| rs_replicas(rs) > 0)
            .filter_map(|rs| annotation_i32(rs, DESIRED_REPLICAS_ANNOTATION))
            .any(|desired| desired != want)
    }

    /// `sync`: scaling and paused Deployments.
    fn sync_scaling(&mut self, paused: bool) {
        let (new, old) = self.new_and_old(false);
        self.scale(new, &old);
        if paused {
            self.cleanup(&old);
        }
        self.sync_deployment_status(new, &old);
    }

    /// `scale`: one active ReplicaSet takes the whole count; a saturated new one lets the old
    /// ones go; otherwise (rolling) the difference is spread in proportion to sizes.
    fn scale(&mut self, new: Option<usize>, old: &[usize]) {
        let want = d_replicas(&self.d);
        if let Some(i) = self.active_or_latest(new, old) {
            if rs_replicas(&self.rses[i]) != want {
                self.scale_rs_if_needed(i, want);
            }
            return;
        }
        if new.is_some_and(|i| is_saturated(&self.d, &self.rses[i])) {
            for &i in old {
                if rs_replicas(&self.rses[i]) > 0 {
                    self.scale_rs_if_needed(i, 0);
                }
            }
            return;
        }
        if is_recreate(&self.d) {
            return;
        }
        let mut active: Vec<usize> = old
            .iter()
            .copied()
            .chain(new)
            .filter(|i| rs_replicas(&self.rses[*i]) > 0)
            .collect();
        let current: i32 = active.iter().map(|i| rs_replicas(&self.rses[*i])).sum();
        let allowed = if want > 0 {
            want + max_surge(&self.d)
        } else {
            0
        };
        let to_add = allowed - current;
        match to_add.cmp(&0) {
            Ordering::Greater => active.sort_by(|a, b| {
                let (ra, rb) = (&self.rses[*a], &self.rses[*b]);
                rs_replicas(rb)
                    .cmp(&rs_replicas(ra))
                    .then_with(|| by_creation(rb, ra))
            }),
            Ordering::Less => active.sort_by(|a, b| {
                let (ra, rb) = (&self.rses[*a], &self.rses[*b]);
                rs_replicas(rb)
                    .cmp(&rs_replicas(ra))
                    .then_with(|| by_creation(ra, rb))
            }),
            Ordering::Equal => {}
        }
        let mut added = 0;
        let mut sizes: Vec<i32> = Vec::with_capacity(active.len());
        for &i in &active {
            let rs = &self.rses[i];
            if to_add != 0 {
                let proportion = replica_set_proportion(rs, &self.d, to_add, added);
                sizes.push(rs_replicas(rs) + proportion);
                added += proportion;
            } else {
                sizes.push(rs_replicas(rs));
            }
        }
        for (n, &i) in active.iter().enumerate() {
            if n == 0 && to_add != 0 {
                sizes[0] = (sizes[0] + to_add - added).max(0);
            }
            self.scale_rs(i, sizes[n]);
        }
    }

    /// `FindActiveOrLatest`: the only active ReplicaSet, or the newest when none is active.
    fn active_or_latest(&self, new: Option<usize>, old: &[usize]) -> Option<usize> {
        let mut old_sorted: Vec<usize> = old.to_vec();
        old_sorted.sort_by(|a, b| by_creation(&self.rses[*b], &self.rses[*a]));
        let active: Vec<usize> = old_sorted
            .iter()
            .copied()
            .chain(new)
            .filter(|i| rs_replicas(&self.rses[*i]) > 0)
            .collect();
        match active.len() {
            0 => new.or_else(|| old_sorted.first().copied()),
            1 => Some(active[0]),
            _ => None,
        }
    }

    /// `rolloutRolling`.
    fn rollout_rolling(&mut self) {
        let (new, old) = self.new_and_old(true);
        let Some(new) = new else {
            return;
        };
        if self.reconcile_new_rs(new) {
            self.sync_rollout_status(Some(new), &old);
            return;
        }
        let active_old: Vec<usize> = old
            .iter()
            .copied()
            .filter(|i| rs_replicas(&self.rses[*i]) > 0)
            .collect();
        if self.reconcile_old_rses(new, &active_old) {
            self.sync_rollout_status(Some(new), &old);
            return;
        }
        let current = self.d.status.clone().unwrap_or_default();
        if deployment_complete(&self.d, &current) {
            self.cleanup(&old);
        }
        self.sync_rollout_status(Some(new), &old);
    }

    /// `reconcileNewReplicaSet`.
    fn reconcile_new_rs(&mut self, new: usize) -> bool {
        let want = d_replicas(&self.d);
        let have = rs_replicas(&self.rses[new]);
        if have == want {
            return false;
        }
        if have > want {
            return self.scale_rs_if_needed(new, want);
        }
        let all: Vec<usize> = (0..self.rses.len()).collect();
        let count = new_rs_new_replicas(&self.d, &self.rses, &all, new);
        self.scale_rs_if_needed(new, count)
    }

    /// `reconcileOldReplicaSets`: scale old ReplicaSets down as far as `maxUnavailable` allows,
    /// unhealthy replicas first.
    fn reconcile_old_rses(&mut self, new: usize, old_active: &[usize]) -> bool {
        let old_count: i32 = old_active.iter().map(|i| rs_replicas(&self.rses[*i])).sum();
        if old_count == 0 {
            return false;
        }
        let all_count: i32 = self.rses.iter().map(rs_replicas).sum();
        let min_available = d_replicas(&self.d) - max_unavailable(&self.d);
        let new_rs = &self.rses[new];
        let new_unavailable = rs_replicas(new_rs) - rs_available(new_rs);
        let max_scaled_down = all_count - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return false;
        }
        let cleaned = self.cleanup_unhealthy(old_active, max_scaled_down);
        let scaled = self.scale_down_old_for_rolling(old_active);
        cleaned + scaled > 0
    }

    /// `cleanupUnhealthyReplicas`.
    fn cleanup_unhealthy(&mut self, old: &[usize], max_cleanup: i32) -> i32 {
        let mut sorted = old.to_vec();
        sorted.sort_by(|a, b| by_creation(&self.rses[*a], &self.rses[*b]));
        let mut total = 0;
        for i in sorted {
            if total >= max_cleanup {
                break;
            }
            let rs = &self.rses[i];
            let replicas = rs_replicas(rs);
            if replicas == 0 {
                continue;
            }
            let unhealthy = replicas - rs_available(rs);
            if unhealthy <= 0 {
                continue;
            }
            let down = (max_cleanup - total).min(unhealthy);
            self.scale_rs_if_needed(i, replicas - down);
            total += down;
        }
        total
    }

    /// `scaleDownOldReplicaSetsForRollingUpdate`: only as many as are available beyond the
    /// minimum.
    fn scale_down_old_for_rolling(&mut self, old: &[usize]) -> i32 {
        let min_available = d_replicas(&self.d) - max_unavailable(&self.d);
        let available: i32 = self.rses.iter().map(rs_available).sum();
        if available <= min_available {
            return 0;
        }
        let mut sorted = old.to_vec();
        sorted.sort_by(|a, b| by_creation(&self.rses[*a], &self.rses[*b]));
        let budget = available - min_available;
        let mut total = 0;
        for i in sorted {
            if total >= budget {
                break;
            }
            let replicas = rs_replicas(&self.rses[i]);
            if replicas == 0 {
                continue;
            }
            let down = replicas.min(budget - total);
            self.scale_rs_if_needed(i, replicas - down);
            total += down;
        }
        total
    }

    /// `rolloutRecreate`: old ReplicaSets to zero, wait for their pods to go, then the new one
    /// to full size.
    fn rollout_recreate(&mut self) {
        let (mut new, mut old) = self.new_and_old(false);
        let active_old: Vec<usize> = old
            .iter()
            .copied()
            .filter(|i| rs_replicas(&self.rses[*i]) > 0)
            .collect();
        let mut scaled_down = false;
        for i in active_old {
            scaled_down |= self.scale_rs_if_needed(i, 0);
        }
        if scaled_down || self.old_pods_running(new, &old) {
            self.sync_rollout_status(new, &old);
            return;
        }
        if new.is_none() {
            (new, old) = self.new_and_old(true);
        }
        let Some(n) = new else {
            return;
        };
        let want = d_replicas(&self.d);
        self.scale_rs_if_needed(n, want);
        let current = self.d.status.clone().unwrap_or_default();
        if deployment_complete(&self.d, &current) {
            self.cleanup(&old);
        }
        self.sync_rollout_status(new, &old);
    }

    /// `oldPodsRunning`: old ReplicaSets still report pods, or a pod of one of them (even one
    /// being deleted) has not finished.
    fn old_pods_running(&self, new: Option<usize>, old: &[usize]) -> bool {
        if old
            .iter()
            .map(|i| rs_status_replicas(&self.rses[*i]))
            .sum::<i32>()
            > 0
        {
            return true;
        }
        let new_uid = new.and_then(|i| self.rses[i].uid());
        let old_uids: Vec<String> = old.iter().filter_map(|i| self.rses[*i].uid()).collect();
        self.pods.iter().any(|pod| {
            let Some(owner) = util::controller_of(pod) else {
                return false;
            };
            if Some(&owner.uid) == new_uid.as_ref() || !old_uids.contains(&owner.uid) {
                return false;
            }
            !matches!(
                pod.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Failed") | Some("Succeeded")
            )
        })
    }

    /// `cleanupDeployment`: delete the oldest empty ReplicaSets beyond `revisionHistoryLimit`.
    fn cleanup(&mut self, old: &[usize]) {
        let Some(limit) = revision_history_limit(&self.d) else {
            return;
        };
        let mut cleanable: Vec<usize> = old
            .iter()
            .copied()
            .filter(|i| self.rses[*i].metadata.deletion_timestamp.is_none())
            .collect();
        let excess = cleanable.len() as i64 - i64::from(limit);
        if excess <= 0 {
            return;
        }
        cleanable.sort_by(|a, b| {
            let (ra, rb) = (&self.rses[*a], &self.rses[*b]);
            revision(ra)
                .unwrap_or(0)
                .cmp(&revision(rb).unwrap_or(0))
                .then_with(|| by_creation(ra, rb))
        });
        for &i in cleanable.iter().take(excess as usize) {
            let rs = &self.rses[i];
            let observed = rs
                .status
                .as_ref()
                .and_then(|s| s.observed_generation)
                .unwrap_or(0);
            if rs_status_replicas(rs) != 0
                || rs_replicas(rs) != 0
                || rs.metadata.generation.unwrap_or(0) > observed
            {
                continue;
            }
            self.out.actions.push(Action::DeleteReplicaSet {
                name: rs.name_any(),
                uid: rs.uid().unwrap_or_default(),
            });
        }
    }

    /// `calculateStatus`.
    fn calculate_status(&self, new: Option<usize>, old: &[usize]) -> DeploymentStatus {
        let all: Vec<&ReplicaSet> = old
            .iter()
            .chain(new.iter())
            .map(|i| &self.rses[*i])
            .collect();
        let available: i32 = all.iter().map(|rs| rs_available(rs)).sum();
        let total: i32 = all.iter().map(|rs| rs_replicas(rs)).sum();
        let current = self.d.status.clone().unwrap_or_default();
        let mut status = DeploymentStatus {
            observed_generation: self.d.metadata.generation,
            replicas: non_zero(all.iter().map(|rs| rs_status_replicas(rs)).sum()),
            updated_replicas: non_zero(new.map_or(0, |i| rs_status_replicas(&self.rses[i]))),
            ready_replicas: non_zero(all.iter().map(|rs| rs_ready(rs)).sum()),
            available_replicas: non_zero(available),
            unavailable_replicas: non_zero((total - available).max(0)),
            collision_count: current.collision_count,
            conditions: current.conditions.clone(),
            terminating_replicas: current.terminating_replicas,
        };
        let c = if available >= d_replicas(&self.d) - max_unavailable(&self.d) {
            new_condition(
                "Available",
                "True",
                REASON_MIN_AVAILABLE,
                "Deployment has minimum availability.".into(),
                self.now,
            )
        } else {
            new_condition(
                "Available",
                "False",
                REASON_MIN_UNAVAILABLE,
                "Deployment does not have minimum availability.".into(),
                self.now,
            )
        };
        set_condition(&mut status, c);
        status
    }

    /// `syncDeploymentStatus`.
    fn sync_deployment_status(&mut self, new: Option<usize>, old: &[usize]) {
        let status = self.calculate_status(new, old);
        self.d.status = Some(status);
    }

    /// `syncRolloutStatus`: the status plus the Progressing condition.
    fn sync_rollout_status(&mut self, new: Option<usize>, old: &[usize]) {
        let mut status = self.calculate_status(new, old);
        let deadline = progress_deadline(&self.d);
        if deadline.is_none() {
            remove_condition(&mut status, "Progressing");
        }
        let current = self.d.status.clone().unwrap_or_default();
        let current_cond = condition(&current, "Progressing").cloned();
        let complete_before = status.replicas == status.updated_replicas
            && current_cond.as_ref().and_then(|c| c.reason.as_deref())
                == Some(REASON_NEW_RS_AVAILABLE);
        let new_name = new.map(|i| self.rses[i].name_any());
        let subject = |what: &str| match &new_name {
            Some(n) => format!("ReplicaSet {n:?} {what}"),
            None => format!("Deployment {:?} {what}", self.d.name_any()),
        };
        if deadline.is_some() && !complete_before {
            if deployment_complete(&self.d, &status) {
                let c = new_condition(
                    "Progressing",
                    "True",
                    REASON_NEW_RS_AVAILABLE,
                    subject("has successfully progressed."),
                    self.now,
                );
                set_condition(&mut status, c);
            } else if deployment_progressing(&self.d, &status) {
                let mut c = new_condition(
                    "Progressing",
                    "True",
                    REASON_RS_UPDATED,
                    subject("is progressing."),
                    self.now,
                );
                if let Some(cur) = &current_cond {
                    if cur.status == "True" {
                        c.last_transition_time = cur.last_transition_time.clone();
                    }
                    remove_condition(&mut status, "Progressing");
                }
                set_condition(&mut status, c);
            } else if deployment_timed_out(&self.d, &status, self.now) {
                let c = new_condition(
                    "Progressing",
                    "False",
                    REASON_TIMED_OUT,
                    subject("has timed out progressing."),
                    self.now,
                );
                set_condition(&mut status, c);
            }
        }
        // Upstream folds ReplicaSet ReplicaFailure conditions in; ours come from the new one.
        let failure = new
            .map(|i| &self.rses[i])
            .and_then(|rs| rs.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "ReplicaFailure"))
            .cloned();
        match failure {
            Some(f) => set_condition(
                &mut status,
                DeploymentCondition {
                    type_: "ReplicaFailure".into(),
                    status: f.status,
                    reason: f.reason,
                    message: f.message,
                    last_update_time: f.last_transition_time.clone(),
                    last_transition_time: f.last_transition_time,
                },
            ),
            None => remove_condition(&mut status, "ReplicaFailure"),
        }
        if status == current {
            self.out.requeue_after = self.stuck_requeue(&status);
        }
        self.d.status = Some(status);
    }

    /// `requeueStuckDeployment`: when to look again so a deadline is noticed on time.
    fn stuck_requeue(&self, status: &DeploymentStatus) -> Option<Duration> {
        let deadline = progress_deadline(&self.d)?;
        let current = self.d.status.clone().unwrap_or_default();
        let cond = condition(&current, "Progressing")?;
        if deployment_complete(&self.d, status) || cond.reason.as_deref() == Some(REASON_TIMED_OUT)
        {
            return None;
        }
        let due = cond.last_update_time.as_ref()?.0.as_second() + i64::from(deadline);
        let after = due - self.now.as_second();
        Some(Duration::from_secs(
            after.clamp(0, RESYNC.as_secs() as i64 - 1) as u64 + 1,
        ))
    }
}

/// `SetDeploymentRevision`.
fn set_deployment_revision(d: &mut Deployment, revision: &str) {
    d.annotations_mut()
        .insert(REVISION_ANNOTATION.into(), revision.into());
}

/// `SetNewReplicaSetAnnotations`: copies the Deployment's own annotations, raises the revision
/// (keeping the superseded ones in revision-history, bounded), and on creation sets the
/// replicas annotations. True if anything changed.
pub fn set_new_rs_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: i64,
    exists: bool,
) -> bool {
    let mut changed = false;
    let skip = [
        LAST_APPLIED_ANNOTATION,
        REVISION_ANNOTATION,
        REVISION_HISTORY_ANNOTATION,
        DESIRED_REPLICAS_ANNOTATION,
        MAX_REPLICAS_ANNOTATION,
        DEPRECATED_ROLLBACK_TO,
    ];
    let from_deployment: Vec<(String, String)> = d
        .annotations()
        .iter()
        .filter(|(k, _)| !skip.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let annotations = rs.annotations_mut();
    for (k, v) in from_deployment {
        if annotations.get(&k) != Some(&v) {
            annotations.insert(k, v);
            changed = true;
        }
    }
    let old = annotations.get(REVISION_ANNOTATION).cloned();
    let old_int = match old.as_deref() {
        None | Some("") => 0,
        Some(v) => match v.parse::<i64>() {
            Ok(n) => n,
            Err(_) => return false,
        },
    };
    if old_int < new_revision {
        annotations.insert(REVISION_ANNOTATION.into(), new_revision.to_string());
        changed = true;
        if let Some(old) = old.filter(|o| !o.is_empty()) {
            let history = annotations
                .get(REVISION_HISTORY_ANNOTATION)
                .cloned()
                .unwrap_or_default();
            if history.is_empty() {
                annotations.insert(REVISION_HISTORY_ANNOTATION.into(), old);
            } else {
                let mut parts: Vec<&str> = history.split(',').collect();
                let mut total = history.len() + old.len() + 1;
                let mut start = 0;
                while total > MAX_REVISION_HISTORY_CHARS && start < parts.len() {
                    total -= parts[start].len() + 1;
                    start += 1;
                }
                if total <= MAX_REVISION_HISTORY_CHARS {
                    parts = parts.split_off(start);
                    parts.push(&old);
                    annotations.insert(REVISION_HISTORY_ANNOTATION.into(), parts.join(","));
                }
            }
        }
    }
    if !exists {
        let desired = d_replicas(d);
        changed |= set_replicas_annotations(rs, desired, desired + max_surge(d));
    }
    changed
}

/// `SetReplicasAnnotations`: true if either annotation changed.
fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let annotations = rs.annotations_mut();
    let mut changed = false;
    for (key, value) in [
        (DESIRED_REPLICAS_ANNOTATION, desired),
        (MAX_REPLICAS_ANNOTATION, max),
    ] {
        let value = value.to_string();
        if annotations.get(key) != Some(&value) {
            annotations.insert(key.into(), value);
            changed = true;
        }
    }
    changed
}

fn replicas_annotations_need_update(rs: &ReplicaSet, desired: i32, max: i32) -> bool {
    annotation_i32(rs, DESIRED_REPLICAS_ANNOTATION) != Some(desired)
        || annotation_i32(rs, MAX_REPLICAS_ANNOTATION) != Some(max)
}

/// `IsSaturated`: the ReplicaSet is sized, annotated and available for the whole Deployment.
fn is_saturated(d: &Deployment, rs: &ReplicaSet) -> bool {
    let want = d_replicas(d);
    rs_replicas(rs) == want
        && annotation_i32(rs, DESIRED_REPLICAS_ANNOTATION) == Some(want)
        && rs_available(rs) == want
}

/// `NewRSNewReplicas`: how big the new ReplicaSet may be now. Rolling: as much as the surge
/// allows; Recreate: everything.
pub fn new_rs_new_replicas(d: &Deployment, rses: &[ReplicaSet], all: &[usize], new: usize) -> i32 {
    let want = d_replicas(d);
    if is_recreate(d) {
        return want;
    }
    let current: i32 = all.iter().map(|i| rs_replicas(&rses[*i])).sum();
    let max_total = want + max_surge(d);
    let new_replicas = rs_replicas(&rses[new]);
    if current >= max_total {
        return new_replicas;
    }
    new_replicas + (max_total - current).min(want - new_replicas)
}

/// `GetReplicaSetProportion`: this ReplicaSet's share of `to_add`, never overshooting what is
/// left.
fn replica_set_proportion(rs: &ReplicaSet, d: &Deployment, to_add: i32, added: i32) -> i32 {
    if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = replica_set_fraction(rs, d);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// `getReplicaSetFraction`: the change this ReplicaSet would see if every ReplicaSet grew by
/// the Deployment's new maximum over the one it was annotated with.
fn replica_set_fraction(rs: &ReplicaSet, d: &Deployment) -> i32 {
    let want = d_replicas(d);
    if want == 0 {
        return -rs_replicas(rs);
    }
    let max = want + max_surge(d);
    let before = match annotation_i32(rs, MAX_REPLICAS_ANNOTATION).filter(|m| *m != 0) {
        Some(m) => m,
        None => {
            let replicas = d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
            if replicas == 0 {
                return 0;
            }
            replicas
        }
    };
    let size = f64::from(rs_replicas(rs)) * f64::from(max) / f64::from(before);
    // Go's math.Round: halves away from zero, as f64::round.
    size.round() as i32 - rs_replicas(rs)
}

// ---- The loop ----

struct Ctx {
    client: Client,
    deployments: Store<Deployment>,
    replicasets: Store<ReplicaSet>,
    pods: Store<Pod>,
    recorder: Recorder,
}

fn key_of<K: kube::Resource>(obj: &K) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

/// The Deployments a ReplicaSet event concerns: its controller, or for an orphan every
/// Deployment of the namespace that selects it.
fn deployments_for_rs(rs: &ReplicaSet, deployments: &Store<Deployment>) -> Vec<String> {
    let ns = rs.namespace().unwrap_or_default();
    if let Some(owner) = util::controller_of(rs) {
        return if owner.kind == "Deployment" {
            vec![format!("{ns}/{}", owner.name)]
        } else {
            Vec::new()
        };
    }
    deployments
        .state()
        .iter()
        .filter(|d| d.namespace().as_deref() == Some(ns.as_str()))
        .filter(|d| {
            d.spec
                .as_ref()
                .and_then(|s| util::label_selector(&s.selector).ok())
                .is_some_and(|s| !s.is_empty() && s.matches(rs.labels()))
        })
        .map(|d| key_of(d.as_ref()))
        .collect()
}

/// Runs the controller until dropped.
pub async fn run(client: Client, _config: crate::Config) {
    let queue = KeyQueue::<String>::new();

    let d_queue = queue.clone();
    let deployments = util::watch_into_store(
        Api::<Deployment>::all(client.clone()),
        "deployments",
        move |event| {
            if let watcher::Event::Apply(d)
            | watcher::Event::InitApply(d)
            | watcher::Event::Delete(d) = event
            {
                d_queue.add(key_of(d));
            }
        },
    );

    let rs_queue = queue.clone();
    let d_store = deployments.clone();
    let replicasets = util::watch_into_store(
        Api::<ReplicaSet>::all(client.clone()),
        "replicasets",
        move |event| {
            if let watcher::Event::Apply(rs)
            | watcher::Event::InitApply(rs)
            | watcher::Event::Delete(rs) = event
            {
                for key in deployments_for_rs(rs, &d_store) {
                    rs_queue.add(key);
                }
            }
        },
    );

    // Only pod deletions matter here: Recreate waits for the old pods to be gone.
    let pod_queue = queue.clone();
    let rs_store = replicasets.clone();
    let pods = util::watch_into_store(Api::<Pod>::all(client.clone()), "pods", move |event| {
        let watcher::Event::Delete(pod) = event else {
            return;
        };
        let Some(owner) = util::controller_of(pod).filter(|o| o.kind == "ReplicaSet") else {
            return;
        };
        let ns = pod.namespace().unwrap_or_default();
        if let Some(rs) = rs_store.get(&ObjectRef::new(&owner.name).within(&ns))
            && let Some(d) = util::controller_of(rs.as_ref()).filter(|o| o.kind == "Deployment")
        {
            pod_queue.add(format!("{ns}/{}", d.name));
        }
    });

    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), COMPONENT, None),
        client,
        deployments,
        replicasets,
        pods,
    });
    util::run_workers(queue, WORKERS, "deployment", move |key: String| {
        let ctx = ctx.clone();
        async move { reconcile(&ctx, &key).await }
    })
    .await;
}

#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error("the informer caches stopped")]
    CacheStopped,
    #[error("{0}")]
    Api(String),
}

fn api_err(context: &str, err: &kube::Error) -> SyncError {
    SyncError::Api(format!("{context}: {}", util::api_error_message(err)))
}

async fn reconcile(ctx: &Ctx, key: &str) -> Result<Option<Duration>, SyncError> {
    for ready in [
        ctx.deployments.wait_until_ready().await,
        ctx.replicasets.wait_until_ready().await,
        ctx.pods.wait_until_ready().await,
    ] {
        ready.map_err(|_| SyncError::CacheStopped)?;
    }
    let (ns, name) = key.split_once('/').unwrap_or(("", key));
    let Some(d) = ctx.deployments.get(&ObjectRef::new(name).within(ns)) else {
        return Ok(None);
    };
    let replicasets: Vec<ReplicaSet> = ctx
        .replicasets
        .state()
        .iter()
        .filter(|rs| rs.namespace().as_deref() == Some(ns))
        .map(|rs| rs.as_ref().clone())
        .collect();
    let pods: Vec<Pod> = if is_recreate(&d) {
        ctx.pods
            .state()
            .iter()
            .filter(|p| p.namespace().as_deref() == Some(ns))
            .map(|p| p.as_ref().clone())
            .collect()
    } else {
        Vec::new()
    };
    let now = Timestamp::now();
    let mut the_plan = plan(&d, &replicasets, &pods, now, true);
    let adopts = the_plan
        .actions
        .iter()
        .any(|a| matches!(a, Action::AdoptReplicaSet { .. }));
    if adopts && !can_adopt(ctx, &d).await {
        the_plan = plan(&d, &replicasets, &pods, now, false);
    }
    execute(ctx, &d, the_plan).await
}

/// `RecheckDeletionTimestamp` for the Deployment, read fresh.
async fn can_adopt(ctx: &Ctx, d: &Deployment) -> bool {
    let api: Api<Deployment> =
        Api::namespaced(ctx.client.clone(), &d.namespace().unwrap_or_default());
    match api.get(&d.name_any()).await {
        Ok(fresh) => {
            fresh.metadata.uid == d.metadata.uid && fresh.metadata.deletion_timestamp.is_none()
        }
        Err(_) => false,
    }
}

fn owner_patch(reference: Value, uid: &str) -> Value {
    serde_json::json!({"metadata": {"ownerReferences": [reference], "uid": uid}})
}

async fn execute(ctx: &Ctx, d: &Deployment, plan: Plan) -> Result<Option<Duration>, SyncError> {
    let ns = d.namespace().unwrap_or_default();
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
    let reference = object_reference(d);
    for e in &plan.events {
        if e.warning {
            ctx.recorder.warning(&reference, e.reason, &e.message).await;
        } else {
            ctx.recorder.normal(&reference, e.reason, &e.message).await;
        }
    }
    // Resource versions of ReplicaSets written in this sync: a later write of the same one
    // builds on the earlier.
    let mut written: HashMap<String, String> = HashMap::new();
    for action in plan.actions {
        match action {
            Action::AdoptReplicaSet { name, uid } => {
                let reference =
                    serde_json::to_value(util::controller_reference(d)).unwrap_or(Value::Null);
                let patch = owner_patch(reference, &uid);
                match rs_api
                    .patch(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                    .await
                {
                    Ok(rs) => {
                        written.insert(name, rs.resource_version().unwrap_or_default());
                    }
                    Err(e) if matches!(util::api_error_code(&e), Some(404 | 409 | 422)) => {
                        return Ok(Some(Duration::from_secs(1)));
                    }
                    Err(e) => return Err(api_err(&format!("adopting replica set {name}"), &e)),
                }
            }
            Action::ReleaseReplicaSet { name, uid } => {
                let patch = owner_patch(
                    serde_json::json!({"$patch": "delete", "uid": d.uid()}),
                    &uid,
                );
                match rs_api
                    .patch(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                    .await
                {
                    Ok(_) => {}
                    Err(e) if matches!(util::api_error_code(&e), Some(404 | 409 | 422)) => {}
                    Err(e) => return Err(api_err(&format!("releasing replica set {name}"), &e)),
                }
            }
            Action::CreateReplicaSet(rs) => {
                let mut body = (*rs).clone();
                body.metadata.creation_timestamp = None;
                let name = rs.name_any();
                match rs_api.create(&PostParams::default(), &body).await {
                    Ok(created) => {
                        written
                            .insert(name.clone(), created.resource_version().unwrap_or_default());
                        let n = rs_replicas(&created);
                        if n > 0 {
                            ctx.recorder
                                .normal(
                                    &reference,
                                    "ScalingReplicaSet",
                                    &format!("Scaled up replica set {name} from 0 to {n}"),
                                )
                                .await;
                        }
                    }
                    Err(e) if util::api_error_code(&e) == Some(409) => {
                        return created_elsewhere(ctx, d, &rs_api, &name).await;
                    }
                    Err(e) => {
                        let msg = format!(
                            "Failed to create new replica set {name:?}: {}",
                            util::api_error_message(&e)
                        );
                        if progress_deadline(d).is_some() {
                            let mut status = d.status.clone().unwrap_or_default();
                            let c = new_condition(
                                "Progressing",
                                "False",
                                REASON_RS_CREATE_ERROR,
                                msg.clone(),
                                Timestamp::from_second(Timestamp::now().as_second())
                                    .unwrap_or_else(|_| Timestamp::now()),
                            );
                            set_condition(&mut status, c);
                            let _ = write_status(ctx, d, status, None).await;
                        }
                        ctx.recorder
                            .warning(&reference, REASON_RS_CREATE_ERROR, &msg)
                            .await;
                        return Err(SyncError::Api(msg));
                    }
                }
            }
            Action::UpdateReplicaSet { rs, scaled_from } => {
                let mut body = *rs;
                let name = body.name_any();
                if let Some(rv) = written.get(&name) {
                    body.metadata.resource_version = Some(rv.clone());
                }
                match rs_api.replace(&name, &PostParams::default(), &body).await {
                    Ok(updated) => {
                        written
                            .insert(name.clone(), updated.resource_version().unwrap_or_default());
                        if let Some(from) = scaled_from {
                            let to = rs_replicas(&updated);
                            let direction = if from < to { "up" } else { "down" };
                            ctx.recorder
                                .normal(
                                    &reference,
                                    "ScalingReplicaSet",
                                    &format!(
                                        "Scaled {direction} replica set {name} from {from} to {to}"
                                    ),
                                )
                                .await;
                        }
                    }
                    Err(e) => return Err(api_err(&format!("updating replica set {name}"), &e)),
                }
            }
            Action::DeleteReplicaSet { name, uid } => {
                let params = DeleteParams {
                    preconditions: Some(kube::api::Preconditions {
                        uid: Some(uid),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                match rs_api.delete(&name, &params).await {
                    Ok(_) => {}
                    Err(e) if matches!(util::api_error_code(&e), Some(404 | 409)) => {}
                    Err(e) => return Err(api_err(&format!("deleting replica set {name}"), &e)),
                }
            }
        }
    }
    if plan.status.is_some() || plan.revision.is_some() {
        let status = plan
            .status
            .unwrap_or_else(|| d.status.clone().unwrap_or_default());
        write_status(ctx, d, status, plan.revision.as_deref()).await?;
    }
    Ok(Some(plan.requeue_after.unwrap_or(RESYNC)))
}

/// The new ReplicaSet's name was taken: by our own earlier create the cache has not shown yet
/// (wait for it), or by something else (a hash collision: bump `collisionCount` so the next
/// name differs).
async fn created_elsewhere(
    ctx: &Ctx,
    d: &Deployment,
    api: &Api<ReplicaSet>,
    name: &str,
) -> Result<Option<Duration>, SyncError> {
    let existing = api
        .get(name)
        .await
        .map_err(|e| api_err(&format!("reading replica set {name}"), &e))?;
    let ours =
        util::controller_of(&existing).is_some_and(|o| Some(&o.uid) == d.metadata.uid.as_ref());
    if ours && equal_ignore_hash(&template_of(d), &rs_template(&existing)) {
        return Ok(Some(Duration::from_secs(1)));
    }
    let mut status = d.status.clone().unwrap_or_default();
    status.collision_count = Some(status.collision_count.unwrap_or(0).saturating_add(1));
    write_status(ctx, d, status, None).await?;
    Err(SyncError::Api(format!(
        "replica set {name} already exists: pod template hash collision"
    )))
}

/// Writes the status through `/status` at the cached resourceVersion, carrying the revision
/// annotation as upstream does (its status strategy keeps metadata changes other than labels).
/// A server that drops metadata on `/status` gets the annotation by a merge patch instead.
async fn write_status(
    ctx: &Ctx,
    d: &Deployment,
    status: DeploymentStatus,
    revision: Option<&str>,
) -> Result<(), SyncError> {
    let api: Api<Deployment> =
        Api::namespaced(ctx.client.clone(), &d.namespace().unwrap_or_default());
    let mut body = d.clone();
    body.status = Some(status);
    if let Some(r) = revision {
        set_deployment_revision(&mut body, r);
    }
    let written = match api
        .replace_status(&d.name_any(), &PostParams::default(), &body)
        .await
    {
        Ok(w) => w,
        Err(e) if util::api_error_code(&e) == Some(404) => return Ok(()),
        Err(e) => return Err(api_err("updating the deployment status", &e)),
    };
    if let Some(r) = revision
        && written
            .annotations()
            .get(REVISION_ANNOTATION)
            .map(String::as_str)
            != Some(r)
    {
        let patch = serde_json::json!({
            "metadata": {
                "annotations": {REVISION_ANNOTATION: r},
                "resourceVersion": written.resource_version(),
            }
        });
        match api
            .patch(
                &d.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if util::api_error_code(&e) == Some(404) => {}
            Err(e) => return Err(api_err("setting the deployment revision", &e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{
        DeploymentSpec, DeploymentStrategy, ReplicaSetStatus, RollingUpdateDeployment,
    };
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodStatus};

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(labels(&[("app", "nginx")])),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "nginx".into(),
                    image: Some(image.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    fn rolling(surge: IntOrString, unavailable: IntOrString) -> DeploymentStrategy {
        DeploymentStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDeployment {
                max_surge: Some(surge),
                max_unavailable: Some(unavailable),
            }),
        }
    }

    fn pct(s: &str) -> IntOrString {
        IntOrString::String(s.into())
    }

    /// The course's nginx-deployment, as the API server stores it (defaults applied).
    fn deployment(replicas: i32, image: &str, strategy: DeploymentStrategy) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some("nginx-deployment".into()),
                namespace: Some("default".into()),
                uid: Some("d-uid".into()),
                generation: Some(1),
                creation_timestamp: Some(Time(ts(0))),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                selector: LabelSelector {
                    match_labels: Some(labels(&[("app", "nginx")])),
                    ..Default::default()
                },
                template: template(image),
                strategy: Some(strategy),
                revision_history_limit: Some(10),
                progress_deadline_seconds: Some(600),
                ..Default::default()
            }),
            status: None,
        }
    }

    /// An in-memory cluster: the plan's writes applied as the API server would, and pods
    /// coming up as the ReplicaSet controller and kubelets would make them.
    struct World {
        d: Deployment,
        rses: Vec<ReplicaSet>,
        pods: Vec<Pod>,
        now: Timestamp,
        next_uid: u32,
        events: Vec<String>,
    }

    impl World {
        fn new(d: Deployment) -> World {
            World {
                d,
                rses: Vec::new(),
                pods: Vec::new(),
                now: ts(10),
                next_uid: 0,
                events: Vec::new(),
            }
        }

        fn rs(&self, name: &str) -> &ReplicaSet {
            self.rses
                .iter()
                .find(|r| r.name_any() == name)
                .expect("replica set")
        }

        fn sync(&mut self) -> Plan {
            let p = plan(&self.d, &self.rses, &self.pods, self.now, true);
            for a in &p.actions {
                match a {
                    Action::CreateReplicaSet(rs) => {
                        let mut rs = (**rs).clone();
                        self.next_uid += 1;
                        rs.metadata.uid = Some(format!("rs-{}", self.next_uid));
                        rs.metadata.creation_timestamp = Some(Time(self.now));
                        rs.metadata.generation = Some(1);
                        rs.status = Some(ReplicaSetStatus::default());
                        let n = rs_replicas(&rs);
                        if n > 0 {
                            self.events.push(format!(
                                "Scaled up replica set {} from 0 to {n}",
                                rs.name_any()
                            ));
                        }
                        self.rses.push(rs);
                    }
                    Action::UpdateReplicaSet { rs, scaled_from } => {
                        let slot = self
                            .rses
                            .iter_mut()
                            .find(|r| r.name_any() == rs.name_any())
                            .expect("updated rs exists");
                        slot.spec = rs.spec.clone();
                        slot.metadata.annotations = rs.metadata.annotations.clone();
                        if let Some(from) = scaled_from {
                            let to = rs_replicas(rs);
                            let dir = if *from < to { "up" } else { "down" };
                            self.events.push(format!(
                                "Scaled {dir} replica set {} from {from} to {to}",
                                rs.name_any()
                            ));
                        }
                    }
                    Action::DeleteReplicaSet { name, .. } => {
                        self.rses.retain(|r| &r.name_any() != name)
                    }
                    Action::AdoptReplicaSet { name, .. } => {
                        let owner = util::controller_reference(&self.d);
                        let slot = self
                            .rses
                            .iter_mut()
                            .find(|r| &r.name_any() == name)
                            .expect("adopted rs");
                        slot.metadata.owner_references = Some(vec![owner]);
                    }
                    Action::ReleaseReplicaSet { name, .. } => {
                        let slot = self
                            .rses
                            .iter_mut()
                            .find(|r| &r.name_any() == name)
                            .expect("released rs");
                        slot.metadata.owner_references = None;
                    }
                }
            }
            if let Some(s) = &p.status {
                self.d.status = Some(s.clone());
            }
            if let Some(r) = &p.revision {
                set_deployment_revision(&mut self.d, r);
            }
            p
        }

        /// The ReplicaSet controller creates/deletes pods at once; at most `become_ready` new
        /// pods per ReplicaSet become available per step.
        fn settle(&mut self, become_ready: i32) {
            for rs in &mut self.rses {
                let want = rs_replicas(rs);
                let status = rs.status.get_or_insert_with(Default::default);
                let available = status.available_replicas.unwrap_or(0).min(want);
                let available = (available + become_ready).min(want);
                status.replicas = want;
                status.ready_replicas = non_zero(available);
                status.available_replicas = non_zero(available);
                status.observed_generation = rs.metadata.generation;
            }
            self.now = self
                .now
                .checked_add(jiff::SignedDuration::from_secs(5))
                .unwrap();
        }

        fn spec_total(&self) -> i32 {
            self.rses.iter().map(rs_replicas).sum()
        }

        fn available_total(&self) -> i32 {
            self.rses.iter().map(rs_available).sum()
        }

        fn set_template(&mut self, image: &str) {
            let spec = self.d.spec.as_mut().unwrap();
            spec.template = template(image);
            self.d.metadata.generation = Some(self.d.metadata.generation.unwrap() + 1);
        }

        fn complete(&self) -> bool {
            deployment_complete(&self.d, &self.d.status.clone().unwrap_or_default())
        }

        fn run_until_complete(&mut self, become_ready: i32, check: impl Fn(&World)) {
            for _ in 0..100 {
                self.sync();
                check(self);
                self.settle(become_ready);
                check(self);
                if self.complete() {
                    // One more sync settles conditions and cleanup.
                    self.sync();
                    return;
                }
            }
            panic!("rollout did not complete: {:#?}", self.d.status);
        }
    }

    fn cond<'a>(d: &'a Deployment, type_: &str) -> &'a DeploymentCondition {
        condition(d.status.as_ref().unwrap(), type_)
            .unwrap_or_else(|| panic!("no {type_} condition"))
    }

    #[test]
    fn safe_encoding_uses_upstreams_alphabet_for_decimal_digits() {
        assert_eq!(safe_encode("0123456789"), "456789bcdf");
    }

    #[test]
    fn template_hash_is_stable_short_and_changes_with_template_and_collision_count() {
        let t = template("nginx:1.7.9");
        let h = template_hash(&t, None);
        assert_eq!(h, template_hash(&t.clone(), None));
        assert!((6..=10).contains(&h.len()), "{h}");
        assert!(h.chars().all(|c| "456789bcdf".contains(c)), "{h}");
        assert_ne!(h, template_hash(&template("nginx:1.25"), None));
        assert_ne!(h, template_hash(&t, Some(1)));
        assert_ne!(template_hash(&t, Some(1)), template_hash(&t, Some(2)));
    }

    #[test]
    fn templates_compare_equal_ignoring_the_hash_label_and_empty_fields() {
        let a = template("nginx:1.7.9");
        let mut b = a.clone();
        b.metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(POD_TEMPLATE_HASH_LABEL.into(), "abc".into());
        b.spec.as_mut().unwrap().volumes = Some(Vec::new());
        assert!(equal_ignore_hash(&a, &b));
        assert!(!equal_ignore_hash(&a, &template("nginx:1.25")));
    }

    #[test]
    fn percentages_round_surge_up_and_unavailable_down() {
        let d = deployment(3, "x", rolling(pct("25%"), pct("25%")));
        assert_eq!(fenceposts(&d), (1, 0));
        let d = deployment(10, "x", rolling(pct("25%"), pct("25%")));
        assert_eq!(fenceposts(&d), (3, 2));
        let d = deployment(10, "x", rolling(IntOrString::Int(0), IntOrString::Int(0)));
        assert_eq!(fenceposts(&d), (0, 1), "both zero would never progress");
        let d = deployment(2, "x", rolling(IntOrString::Int(0), IntOrString::Int(5)));
        assert_eq!(max_unavailable(&d), 2, "never more than the replicas");
    }

    #[test]
    fn a_new_deployment_creates_one_replicaset_named_by_the_template_hash() {
        let mut w = World::new(deployment(
            3,
            "nginx:1.7.9",
            rolling(pct("25%"), pct("25%")),
        ));
        let p = w.sync();
        let Some(Action::CreateReplicaSet(rs)) = p.actions.first() else {
            panic!("expected a create, got {:?}", p.actions);
        };
        let hash = template_hash(&template("nginx:1.7.9"), None);
        assert_eq!(rs.name_any(), format!("nginx-deployment-{hash}"));
        assert_eq!(rs_replicas(rs), 3);
        assert_eq!(rs.labels().get(POD_TEMPLATE_HASH_LABEL), Some(&hash));
        let spec = rs.spec.as_ref().unwrap();
        assert_eq!(
            spec.selector
                .match_labels
                .as_ref()
                .unwrap()
                .get(POD_TEMPLATE_HASH_LABEL),
            Some(&hash)
        );
        assert_eq!(
            spec.selector
                .match_labels
                .as_ref()
                .unwrap()
                .get("app")
                .map(String::as_str),
            Some("nginx")
        );
        assert_eq!(
            spec.template
                .as_ref()
                .unwrap()
                .metadata
                .as_ref()
                .unwrap()
                .labels
                .as_ref()
                .unwrap()
                .get(POD_TEMPLATE_HASH_LABEL),
            Some(&hash)
        );
        let owner = util::controller_of(rs.as_ref()).unwrap();
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Deployment", "d-uid")
        );
        let a = rs.annotations();
        assert_eq!(a.get(REVISION_ANNOTATION).map(String::as_str), Some("1"));
        assert_eq!(
            a.get(DESIRED_REPLICAS_ANNOTATION).map(String::as_str),
            Some("3")
        );
        assert_eq!(
            a.get(MAX_REPLICAS_ANNOTATION).map(String::as_str),
            Some("4")
        );
        assert_eq!(p.revision.as_deref(), Some("1"));
        assert_eq!(
            w.events,
            vec![format!(
                "Scaled up replica set nginx-deployment-{hash} from 0 to 3"
            )]
        );
        let progressing = cond(&w.d, "Progressing");
        assert_eq!(progressing.reason.as_deref(), Some(REASON_NEW_RS_CREATED));
        assert_eq!(
            progressing.message.as_deref(),
            Some(format!("Created new replica set \"nginx-deployment-{hash}\"").as_str())
        );
        assert_eq!(
            cond(&w.d, "Available").reason.as_deref(),
            Some(REASON_MIN_UNAVAILABLE)
        );
        assert_eq!(w.d.status.as_ref().unwrap().observed_generation, Some(1));

        // A second sync with nothing new writes nothing.
        let again = w.sync();
        assert!(again.actions.is_empty(), "{:?}", again.actions);
    }

    #[test]
    fn rolling_update_with_25_percent_stays_within_surge_and_unavailability_bounds() {
        let mut w = World::new(deployment(
            3,
            "nginx:1.7.9",
            rolling(pct("25%"), pct("25%")),
        ));
        w.run_until_complete(3, |_| {});
        let old_name = w.rses[0].name_any();
        assert_eq!(w.available_total(), 3);
        let ready = w.d.status.clone().unwrap();
        assert_eq!(
            (
                ready.replicas,
                ready.updated_replicas,
                ready.available_replicas
            ),
            (Some(3), Some(3), Some(3))
        );
        assert_eq!(
            cond(&w.d, "Progressing").message.as_deref(),
            Some(format!("ReplicaSet \"{old_name}\" has successfully progressed.").as_str())
        );
        assert_eq!(
            cond(&w.d, "Available").message.as_deref(),
            Some("Deployment has minimum availability.")
        );

        w.events.clear();
        w.set_template("nginx:1.25");
        // maxSurge 25% of 3 → 1 (up), maxUnavailable 25% of 3 → 0 (down).
        w.run_until_complete(1, |w| {
            assert!(w.spec_total() <= 4, "surge exceeded: {}", w.spec_total());
            let pods: i32 = w.rses.iter().map(rs_status_replicas).sum();
            assert!(pods <= 4, "more than 4 pods: {pods}");
            assert!(
                w.available_total() >= 3,
                "availability dropped to {}",
                w.available_total()
            );
        });
        let new_name = format!(
            "nginx-deployment-{}",
            template_hash(&template("nginx:1.25"), None)
        );
        assert_eq!(rs_replicas(w.rs(&new_name)), 3);
        assert_eq!(rs_replicas(w.rs(&old_name)), 0);
        assert_eq!(
            w.rs(&new_name)
                .annotations()
                .get(REVISION_ANNOTATION)
                .map(String::as_str),
            Some("2")
        );
        assert_eq!(
            w.d.annotations()
                .get(REVISION_ANNOTATION)
                .map(String::as_str),
            Some("2")
        );
        assert_eq!(
            w.events,
            vec![
                format!("Scaled up replica set {new_name} from 0 to 1"),
                format!("Scaled down replica set {old_name} from 3 to 2"),
                format!("Scaled up replica set {new_name} from 1 to 2"),
                format!("Scaled down replica set {old_name} from 2 to 1"),
                format!("Scaled up replica set {new_name} from 2 to 3"),
                format!("Scaled down replica set {old_name} from 1 to 0"),
            ]
        );
        assert_eq!(
            cond(&w.d, "Progressing").message.as_deref(),
            Some(format!("ReplicaSet \"{new_name}\" has successfully progressed.").as_str())
        );
    }

    #[test]
    fn a_stalled_rolling_update_keeps_old_pods_while_new_ones_never_become_ready() {
        let mut w = World::new(deployment(
            3,
            "nginx:1.7.9",
            rolling(pct("25%"), pct("25%")),
        ));
        w.run_until_complete(3, |_| {});
        w.set_template("nginx:broken");
        for _ in 0..5 {
            w.sync();
            w.settle(0);
        }
        // The new ReplicaSet got its surge pod; no old pod goes while it is unavailable.
        let spec: Vec<i32> = w.rses.iter().map(rs_replicas).collect();
        assert_eq!(spec, vec![3, 1]);
        let progressing = cond(&w.d, "Progressing");
        assert_eq!(progressing.reason.as_deref(), Some(REASON_RS_UPDATED));

        // Past the progress deadline without progress: ProgressDeadlineExceeded.
        w.now = w
            .now
            .checked_add(jiff::SignedDuration::from_secs(700))
            .unwrap();
        w.sync();
        let progressing = cond(&w.d, "Progressing");
        assert_eq!(progressing.status, "False");
        assert_eq!(progressing.reason.as_deref(), Some(REASON_TIMED_OUT));
        let new_name = w.rses[1].name_any();
        assert_eq!(
            progressing.message.as_deref(),
            Some(format!("ReplicaSet \"{new_name}\" has timed out progressing.").as_str())
        );
    }

    #[test]
    fn recreate_scales_old_to_zero_and_waits_for_old_pods_before_creating_the_new_one() {
        let mut w = World::new(deployment(
            3,
            "nginx:1.7.9",
            DeploymentStrategy {
                type_: Some("Recreate".into()),
                rolling_update: None,
            },
        ));
        w.run_until_complete(3, |_| {});
        let old = w.rses[0].clone();
        w.set_template("nginx:1.25");

        let p = w.sync();
        assert_eq!(p.actions.len(), 1);
        assert_eq!(rs_replicas(&w.rses[0]), 0);
        assert_eq!(w.rses.len(), 1, "no new ReplicaSet while old pods run");

        // The old ReplicaSet reports no pods, but one is still terminating.
        w.settle(0);
        let mut leaving = Pod {
            metadata: ObjectMeta {
                name: Some("old-pod".into()),
                namespace: Some("default".into()),
                owner_references: Some(vec![util::controller_reference(&old)]),
                deletion_timestamp: Some(Time(w.now)),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some("Running".into()),
                ..Default::default()
            }),
        };
        w.pods = vec![leaving.clone()];
        let p = w.sync();
        assert!(p.actions.is_empty(), "{:?}", p.actions);
        leaving.status.as_mut().unwrap().phase = Some("Succeeded".into());
        w.pods = vec![leaving];

        let p = w.sync();
        let Some(Action::CreateReplicaSet(rs)) = p.actions.first() else {
            panic!("expected the new ReplicaSet, got {:?}", p.actions);
        };
        assert_eq!(rs_replicas(rs), 3);
        assert_eq!(
            rs.annotations()
                .get(MAX_REPLICAS_ANNOTATION)
                .map(String::as_str),
            Some("3")
        );
        w.pods.clear();
        w.run_until_complete(3, |_| {});
        assert_eq!(
            w.rses.iter().map(rs_replicas).collect::<Vec<_>>(),
            vec![0, 3]
        );
    }

    #[test]
    fn scaling_resizes_the_only_active_replicaset_and_updates_its_annotations() {
        let mut w = World::new(deployment(
            3,
            "nginx:1.7.9",
            rolling(pct("25%"), pct("25%")),
        ));
        w.run_until_complete(3, |_| {});
        let name = w.rses[0].name_any();
        w.events.clear();
        w.d.spec.as_mut().unwrap().replicas = Some(10);
        w.d.metadata.generation = Some(2);
        w.sync();
        assert_eq!(
            w.events,
            vec![format!("Scaled up replica set {name} from 3 to 10")]
        );
        let a = w.rses[0].annotations();
        assert_eq!(
            a.get(DESIRED_REPLICAS_ANNOTATION).map(String::as_str),
            Some("10")
        );
        assert_eq!(
            a.get(MAX_REPLICAS_ANNOTATION).map(String::as_str),
            Some("13")
        );

        w.events.clear();
        w.d.spec.as_mut().unwrap().replicas = Some(0);
        w.sync();
        assert_eq!(
            w.events,
            vec![format!("Scaled down replica set {name} from 10 to 0")]
        );
    }

    #[test]
    fn scaling_during_a_rollout_is_proportional() {
        let mut d = deployment(
            10,
            "nginx:1.25",
            rolling(IntOrString::Int(3), IntOrString::Int(2)),
        );
        d.status = Some(DeploymentStatus {
            replicas: Some(13),
            ..Default::default()
        });
        let mk = |name: &str, image: &str, replicas: i32, created: i64, rev: &str| {
            let mut rs = ReplicaSet {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    namespace: Some("default".into()),
                    uid: Some(format!("uid-{name}")),
                    labels: Some(labels(&[("app", "nginx")])),
                    owner_references: Some(vec![util::controller_reference(&d)]),
                    creation_timestamp: Some(Time(ts(created))),
                    ..Default::default()
                },
                spec: Some(ReplicaSetSpec {
                    replicas: Some(replicas),
                    template: Some(template(image)),
                    ..Default::default()
                }),
                status: Some(ReplicaSetStatus {
                    replicas,
                    ..Default::default()
                }),
            };
            let a = rs.annotations_mut();
            a.insert(REVISION_ANNOTATION.into(), rev.into());
            a.insert(DESIRED_REPLICAS_ANNOTATION.into(), "10".into());
            a.insert(MAX_REPLICAS_ANNOTATION.into(), "13".into());
            rs
        };
        let old = mk("old", "nginx:1.7.9", 7, 1, "1");
        let new = mk("new", "nginx:1.25", 6, 2, "2");
        d.spec.as_mut().unwrap().replicas = Some(20);
        let p = plan(&d, &[old, new], &[], ts(100), true);
        let sizes: BTreeMap<String, i32> = p
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::UpdateReplicaSet { rs, .. } => Some((rs.name_any(), rs_replicas(rs))),
                _ => None,
            })
            .collect();
        // 23 allowed (20 + surge 3): 7·23/13 ≈ 12 and 6·23/13 ≈ 11.
        assert_eq!(
            sizes,
            BTreeMap::from([("old".to_string(), 12), ("new".to_string(), 11)])
        );
    }

    #[test]
    fn rolling_back_reuses_the_old_replicaset_with_the_next_revision_and_history() {
        let mut w = World::new(deployment(
            2,
            "nginx:1.7.9",
            rolling(pct("25%"), pct("25%")),
        ));
        w.run_until_complete(2, |_| {});
        w.set_template("nginx:1.25");
        w.run_until_complete(2, |_| {});
        w.set_template("nginx:1.7.9");
        w.run_until_complete(2, |_| {});
        assert_eq!(w.rses.len(), 2, "the first ReplicaSet is reused");
        let first = &w.rses[0];
        assert_eq!(
            first
                .annotations()
                .get(REVISION_ANNOTATION)
                .map(String::as_str),
            Some("3")
        );
        assert_eq!(
            first
                .annotations()
                .get(REVISION_HISTORY_ANNOTATION)
                .map(String::as_str),
            Some("1")
        );
        assert_eq!(rs_replicas(first), 2);
        assert_eq!(
            w.d.annotations()
                .get(REVISION_ANNOTATION)
                .map(String::as_str),
            Some("3")
        );
    }

    #[test]
    fn deployment_annotations_are_copied_to_the_new_replicaset_except_bookkeeping_ones() {
        let mut d = deployment(1, "x", rolling(pct("25%"), pct("25%")));
        d.annotations_mut().insert(
            "kubernetes.io/change-cause".into(),
            "kubectl set image".into(),
        );
        d.annotations_mut()
            .insert(LAST_APPLIED_ANNOTATION.into(), "{}".into());
        d.annotations_mut()
            .insert(REVISION_ANNOTATION.into(), "7".into());
        let p = plan(&d, &[], &[], ts(0), true);
        let Some(Action::CreateReplicaSet(rs)) = p.actions.first() else {
            panic!("{:?}", p.actions);
        };
        let a = rs.annotations();
        assert_eq!(
            a.get("kubernetes.io/change-cause").map(String::as_str),
            Some("kubectl set image")
        );
        assert!(!a.contains_key(LAST_APPLIED_ANNOTATION));
        assert_eq!(a.get(REVISION_ANNOTATION).map(String::as_str), Some("1"));
    }

    #[test]
    fn old_empty_replicasets_beyond_the_history_limit_are_deleted_oldest_revision_first() {
        let mut w = World::new(deployment(1, "v1", rolling(pct("25%"), pct("25%"))));
        w.d.spec.as_mut().unwrap().revision_history_limit = Some(1);
        for image in ["v1", "v2", "v3", "v4"] {
            w.set_template(image);
            w.run_until_complete(1, |_| {});
        }
        let left: Vec<String> = w
            .rses
            .iter()
            .map(|r| {
                r.annotations()
                    .get(REVISION_ANNOTATION)
                    .cloned()
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(left, vec!["3", "4"]);
    }

    #[test]
    fn orphans_matching_the_selector_are_adopted_and_mismatching_owned_ones_released() {
        let d = deployment(1, "v1", rolling(pct("25%"), pct("25%")));
        let mut orphan = ReplicaSet {
            metadata: ObjectMeta {
                name: Some("orphan".into()),
                namespace: Some("default".into()),
                uid: Some("uid-orphan".into()),
                labels: Some(labels(&[("app", "nginx")])),
                creation_timestamp: Some(Time(ts(1))),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(1),
                template: Some(template("v1")),
                ..Default::default()
            }),
            status: None,
        };
        let mut strayed = orphan.clone();
        strayed.metadata.name = Some("strayed".into());
        strayed.metadata.uid = Some("uid-strayed".into());
        strayed.metadata.labels = Some(labels(&[("app", "other")]));
        strayed.metadata.owner_references = Some(vec![util::controller_reference(&d)]);
        let p = plan(&d, &[orphan.clone(), strayed.clone()], &[], ts(5), true);
        assert!(p.actions.contains(&Action::AdoptReplicaSet {
            name: "orphan".into(),
            uid: "uid-orphan".into()
        }));
        assert!(p.actions.contains(&Action::ReleaseReplicaSet {
            name: "strayed".into(),
            uid: "uid-strayed".into()
        }));
        // The adopted one has the Deployment's template: it is the new ReplicaSet, no create.
        assert!(
            !p.actions
                .iter()
                .any(|a| matches!(a, Action::CreateReplicaSet(_)))
        );

        // When a fresh read shows the Deployment going away, nothing is adopted.
        orphan.metadata.name = Some("orphan2".into());
        let p = plan(&d, &[orphan], &[], ts(5), false);
        assert!(
            !p.actions
                .iter()
                .any(|a| matches!(a, Action::AdoptReplicaSet { .. }))
        );
    }

    #[test]
    fn an_empty_selector_is_refused_with_a_warning() {
        let mut d = deployment(1, "v1", rolling(pct("25%"), pct("25%")));
        d.spec.as_mut().unwrap().selector = LabelSelector::default();
        let p = plan(&d, &[], &[], ts(0), true);
        assert!(p.actions.is_empty());
        assert_eq!(p.events[0].reason, "SelectingAll");
        assert_eq!(p.status.unwrap().observed_generation, Some(1));
    }

    #[test]
    fn a_name_taken_by_another_object_bumps_the_collision_count() {
        let d = deployment(1, "v1", rolling(pct("25%"), pct("25%")));
        let hash = template_hash(&template("v1"), None);
        let squatter = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(format!("nginx-deployment-{hash}")),
                namespace: Some("default".into()),
                labels: Some(labels(&[("app", "unrelated")])),
                ..Default::default()
            },
            ..Default::default()
        };
        let p = plan(&d, &[squatter], &[], ts(0), true);
        assert!(p.actions.is_empty());
        assert_eq!(p.status.unwrap().collision_count, Some(1));
    }

    #[test]
    fn setting_a_condition_keeps_the_transition_time_when_only_the_reason_changes() {
        let mut status = DeploymentStatus::default();
        set_condition(
            &mut status,
            new_condition(
                "Progressing",
                "True",
                REASON_NEW_RS_CREATED,
                "a".into(),
                ts(0),
            ),
        );
        set_condition(
            &mut status,
            new_condition("Progressing", "True", REASON_RS_UPDATED, "b".into(), ts(10)),
        );
        let c = condition(&status, "Progressing").unwrap();
        assert_eq!(c.last_transition_time, Some(Time(ts(0))));
        assert_eq!(c.last_update_time, Some(Time(ts(10))));
        // Same status and reason: nothing changes, not even the message.
        set_condition(
            &mut status,
            new_condition("Progressing", "True", REASON_RS_UPDATED, "c".into(), ts(20)),
        );
        assert_eq!(
            condition(&status, "Progressing")
                .unwrap()
                .message
                .as_deref(),
            Some("b")
        );
        set_condition(
            &mut status,
            new_condition("Progressing", "False", REASON_TIMED_OUT, "d".into(), ts(30)),
        );
        assert_eq!(
            condition(&status, "Progressing")
                .unwrap()
                .last_transition_time,
            Some(Time(ts(30)))
        );
    }
}
