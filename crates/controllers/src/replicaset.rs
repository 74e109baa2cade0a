//! The ReplicaSet controller (upstream `pkg/controller/replicaset`): keeps `spec.replicas`
//! active pods that match a ReplicaSet's selector and are controlled by it, and reports what it
//! sees in `status`.
//!
//! The pure core decides from a snapshot: which pods to adopt or release (upstream's
//! ControllerRefManager), how many pods to create or which to delete (upstream's victim
//! ranking), and the status. The loop watches ReplicaSets and Pods, reconciles one key at a
//! time, and carries the decisions out through the API: pods are created in slow-start batches
//! (1, 2, 4, ...), deletions run concurrently, and "expectations" remember writes the watch
//! cache has not shown yet so a stale cache never causes a second round of creates.
//!
//! It must not decide anything from memory alone: expectations only delay a decision until the
//! cache has caught up (or a deadline passes), they never replace the cache.

use crate::events::{Recorder, object_reference};
use crate::util::{self, KeyQueue};
use futures::future::join_all;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The event source and field manager of this controller.
pub const COMPONENT: &str = "replicaset-controller";
/// Upstream's `BurstReplicas`: at most this many creates or deletes per sync.
pub const BURST_REPLICAS: usize = 500;
/// Concurrent workers (kube-controller-manager `--concurrent-replicaset-syncs`).
const WORKERS: usize = 5;
/// Every ReplicaSet is reconciled at least this often, even without events.
const RESYNC: Duration = Duration::from_secs(30);
/// How long unobserved creates/deletes hold back the next decision (upstream: 5 minutes; ours
/// is shorter because a lab would rather redo a create than wait).
const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(60);
/// The annotation a user sets to prefer some pods as scale-down victims.
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// How a ReplicaSet's pods sort under the ControllerRefManager rules. Only active pods take
/// part, as upstream filters them before claiming.
#[derive(Debug, Default, PartialEq)]
pub struct PodClaim<'a> {
    /// Active pods controlled by the ReplicaSet that still match its selector.
    pub owned: Vec<&'a Pod>,
    /// Active orphans that match: adopted by patching in a controller reference.
    pub adopt: Vec<&'a Pod>,
    /// Pods the ReplicaSet controls that no longer match: released by removing the reference.
    pub release: Vec<&'a Pod>,
}

/// `ClaimPods`: sorts `pods` (any pods of the namespace) for `rs`. A ReplicaSet being deleted
/// neither adopts nor releases; pods being deleted are never adopted.
pub fn claim_pods<'a>(
    rs: &ReplicaSet,
    selector: &apimachinery::selectors::LabelSelector,
    pods: impl IntoIterator<Item = &'a Pod>,
) -> PodClaim<'a> {
    let uid = rs.metadata.uid.as_deref().unwrap_or_default();
    let namespace = rs.metadata.namespace.as_deref();
    let rs_deleting = rs.metadata.deletion_timestamp.is_some();
    let mut claim = PodClaim::default();
    for pod in pods {
        if pod.metadata.namespace.as_deref() != namespace || !util::is_pod_active(pod) {
            continue;
        }
        let matches = selector.matches(pod.labels());
        match util::controller_of(pod) {
            Some(owner) if owner.uid == uid => {
                if matches {
                    claim.owned.push(pod);
                } else if !rs_deleting {
                    claim.release.push(pod);
                }
            }
            Some(_) => {}
            None => {
                if matches && !rs_deleting && pod.metadata.deletion_timestamp.is_none() {
                    claim.adopt.push(pod);
                }
            }
        }
    }
    claim
}

/// What a sync does to the number of pods.
#[derive(Debug, PartialEq, Eq)]
pub enum ReplicaChange {
    None,
    /// Create this many pods (already capped at [`BURST_REPLICAS`]).
    Create(usize),
    /// Delete these pods, by name, best victim first (capped at [`BURST_REPLICAS`]).
    Delete(Vec<String>),
}

/// The writes one sync of a ReplicaSet makes to its pods.
#[derive(Debug, PartialEq, Eq)]
pub struct RsActions {
    pub adopt: Vec<String>,
    pub release: Vec<String>,
    pub change: ReplicaChange,
}

/// The pure decision of one sync (`syncReplicaSet` + `manageReplicas`): `pods` are all pods of
/// the namespace; `related` the active pods of every ReplicaSet with the same owner (they rank
/// scale-down victims by co-location). Adopted pods count as owned, released ones do not.
pub fn replicaset_diff(
    rs: &ReplicaSet,
    pods: &[Pod],
    related: &[&Pod],
    now: Timestamp,
) -> Result<RsActions, apimachinery::selectors::SelectorError> {
    let selector = util::label_selector(&rs_selector(rs))?;
    let claim = claim_pods(rs, &selector, pods);
    let mut active: Vec<&Pod> = claim.owned.clone();
    active.extend(claim.adopt.iter().copied());
    let change = if rs.metadata.deletion_timestamp.is_some() {
        ReplicaChange::None
    } else {
        replica_change(desired_replicas(rs), &active, related, now)
    };
    Ok(RsActions {
        adopt: claim.adopt.iter().map(|p| p.name_any()).collect(),
        release: claim.release.iter().map(|p| p.name_any()).collect(),
        change,
    })
}

/// Creates or deletes to go from `active` pods to `desired`.
pub fn replica_change(
    desired: usize,
    active: &[&Pod],
    related: &[&Pod],
    now: Timestamp,
) -> ReplicaChange {
    match active.len().cmp(&desired) {
        Ordering::Equal => ReplicaChange::None,
        Ordering::Less => ReplicaChange::Create((desired - active.len()).min(BURST_REPLICAS)),
        Ordering::Greater => {
            let count = (active.len() - desired).min(BURST_REPLICAS);
            ReplicaChange::Delete(
                pods_to_delete(active, related, count, now)
                    .into_iter()
                    .map(|p| p.name_any())
                    .collect(),
            )
        }
    }
}

/// `getPodsToDelete`: the `count` best victims among `candidates`, ranked like upstream's
/// `ActivePodsWithRanks` (rank = how many `related` active pods share the node).
pub fn pods_to_delete<'a>(
    candidates: &[&'a Pod],
    related: &[&Pod],
    count: usize,
    now: Timestamp,
) -> Vec<&'a Pod> {
    let mut on_node: HashMap<String, usize> = HashMap::new();
    for pod in related.iter().filter(|p| util::is_pod_active(p)) {
        *on_node.entry(node_name(pod).to_string()).or_default() += 1;
    }
    let mut ranked: Vec<(&Pod, usize)> = candidates
        .iter()
        .map(|p| (*p, on_node.get(node_name(p)).copied().unwrap_or(0)))
        .collect();
    ranked.sort_by(|a, b| compare_victims(a.0, a.1, b.0, b.1, now));
    ranked.into_iter().take(count).map(|(p, _)| p).collect()
}

fn node_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

fn phase_ordinal(pod: &Pod) -> u8 {
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 0,
    }
}

fn deletion_cost(pod: &Pod) -> i32 {
    pod.annotations()
        .get(POD_DELETION_COST)
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0)
}

fn ready_since(pod: &Pod) -> Option<Timestamp> {
    util::pod_ready_condition(pod)
        .filter(|c| c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
}

/// Upstream's `afterOrZero`: a missing time sorts first, then the later time.
fn after_or_zero(a: Option<Timestamp>, b: Option<Timestamp>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => b.cmp(&a),
    }
}

/// Upstream's `logarithmicRankDiff`: times within the same power-of-two age bucket compare
/// equal, so scale-down does not always pick the very newest pods (LogarithmicScaleDown).
fn log_age_bucket(t: Timestamp, now: Timestamp) -> i64 {
    let age = now.as_nanosecond() - t.as_nanosecond();
    if age <= 0 {
        -1
    } else {
        // ilog2 is the floor of log2, like Go's int64(math.Log2(x)) for positive x.
        i64::from(age.ilog2())
    }
}

/// Orders by time (newer first), bucketing by logarithmic age and breaking ties by uid.
fn compare_times(a: Option<Timestamp>, b: Option<Timestamp>, now: Timestamp) -> Ordering {
    match (a, b) {
        // Same log2 age bucket: equal here, so later criteria (and finally the uid) decide.
        // Upstream breaks the tie by uid right away, which is not a total order across
        // criteria; Rust's sort requires one.
        (Some(ta), Some(tb)) => (log_age_bucket(ta, now) - log_age_bucket(tb, now)).cmp(&0),
        _ => after_or_zero(a, b),
    }
}

/// The largest restart count among regular containers and among restartable init containers
/// (sidecars).
fn max_restarts(pod: &Pod) -> (i32, i32) {
    let Some(status) = pod.status.as_ref() else {
        return (0, 0);
    };
    let regular = status
        .container_statuses
        .iter()
        .flatten()
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0);
    let sidecars: HashSet<&str> = pod
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .filter(|c| c.restart_policy.as_deref() == Some("Always"))
        .map(|c| c.name.as_str())
        .collect();
    let sidecar = status
        .init_container_statuses
        .iter()
        .flatten()
        .filter(|c| sidecars.contains(c.name.as_str()))
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0);
    (regular, sidecar)
}

/// Upstream's `ActivePodsWithRanks.Less` as an ordering: the smaller pod is deleted first.
/// Unassigned < assigned; Pending < Unknown < Running; not ready < ready; lower
/// pod-deletion-cost first; more co-located pods first; recently ready first; more restarts
/// first; newer first.
pub fn compare_victims(a: &Pod, a_rank: usize, b: &Pod, b_rank: usize, now: Timestamp) -> Ordering {
    let (na, nb) = (node_name(a), node_name(b));
    if na != nb && (na.is_empty() || nb.is_empty()) {
        return if na.is_empty() {
            Ordering::Less
        } else {
            Ordering::Greater
        };
    }
    let by_phase = phase_ordinal(a).cmp(&phase_ordinal(b));
    if by_phase != Ordering::Equal {
        return by_phase;
    }
    let (ra, rb) = (util::is_pod_ready(a), util::is_pod_ready(b));
    if ra != rb {
        return if ra {
            Ordering::Greater
        } else {
            Ordering::Less
        };
    }
    let by_cost = deletion_cost(a).cmp(&deletion_cost(b));
    if by_cost != Ordering::Equal {
        return by_cost;
    }
    if a_rank != b_rank {
        return b_rank.cmp(&a_rank);
    }
    if ra && rb {
        let (ta, tb) = (ready_since(a), ready_since(b));
        if ta != tb {
            let by_ready = compare_times(ta, tb, now);
            if by_ready != Ordering::Equal {
                return by_ready;
            }
        }
    }
    let ((rega, sidea), (regb, sideb)) = (max_restarts(a), max_restarts(b));
    if rega != regb {
        return regb.cmp(&rega);
    }
    if sidea != sideb {
        return sideb.cmp(&sidea);
    }
    let (ca, cb) = (
        a.metadata.creation_timestamp.as_ref().map(|t| t.0),
        b.metadata.creation_timestamp.as_ref().map(|t| t.0),
    );
    if ca != cb {
        let by_age = compare_times(ca, cb, now);
        if by_age != Ordering::Equal {
            return by_age;
        }
    }
    a.metadata
        .uid
        .cmp(&b.metadata.uid)
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// `spec.replicas`, defaulting to 1 as the API does.
pub fn desired_replicas(rs: &ReplicaSet) -> usize {
    rs.spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0) as usize
}

fn rs_selector(rs: &ReplicaSet) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
    rs.spec
        .as_ref()
        .map(|s| s.selector.clone())
        .unwrap_or_default()
}

fn min_ready_seconds(rs: &ReplicaSet) -> i32 {
    rs.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

/// A failed create or delete, reported as the `ReplicaFailure` condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManageError {
    /// `FailedCreate` or `FailedDelete`.
    pub reason: &'static str,
    pub message: String,
}

/// Go's `omitempty` for counters: zero is left out of the JSON.
fn non_zero(n: usize) -> Option<i32> {
    let n = i32::try_from(n).unwrap_or(i32::MAX);
    (n != 0).then_some(n)
}

/// `calculateStatus`: counts over the active pods the ReplicaSet owns; `ReplicaFailure` is set
/// on a failed create/delete and cleared after a clean sync. `observedGeneration` is left as
/// it was: it is set when the status is written.
pub fn calculate_status(
    rs: &ReplicaSet,
    owned_active: &[&Pod],
    manage_error: Option<&ManageError>,
    now: Timestamp,
) -> ReplicaSetStatus {
    let mut status = rs.status.clone().unwrap_or_default();
    let template_labels: BTreeMap<String, String> = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let min_ready = min_ready_seconds(rs);
    let fully_labeled = owned_active
        .iter()
        .filter(|p| {
            let labels = p.labels();
            template_labels
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v))
        })
        .count();
    let ready = owned_active
        .iter()
        .filter(|p| util::is_pod_ready(p))
        .count();
    let available = owned_active
        .iter()
        .filter(|p| util::is_pod_available(p, min_ready, now))
        .count();
    let has_failure = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "ReplicaFailure");
    match manage_error {
        Some(err) if !has_failure => {
            status
                .conditions
                .get_or_insert_with(Vec::new)
                .push(ReplicaSetCondition {
                    type_: "ReplicaFailure".into(),
                    status: "True".into(),
                    reason: Some(err.reason.into()),
                    message: Some(err.message.clone()),
                    last_transition_time: Some(Time(second_precision(now))),
                });
        }
        None if has_failure => {
            if let Some(c) = status.conditions.as_mut() {
                c.retain(|c| c.type_ != "ReplicaFailure");
            }
            if status.conditions.as_ref().is_some_and(Vec::is_empty) {
                status.conditions = None;
            }
        }
        _ => {}
    }
    status.replicas = i32::try_from(owned_active.len()).unwrap_or(i32::MAX);
    status.fully_labeled_replicas = non_zero(fully_labeled);
    status.ready_replicas = non_zero(ready);
    status.available_replicas = non_zero(available);
    status
}

/// `updateReplicaSetStatus`'s test: write only when a count, the conditions or the observed
/// generation changed.
pub fn status_needs_update(rs: &ReplicaSet, new: &ReplicaSetStatus) -> bool {
    let old = rs.status.clone().unwrap_or_default();
    let zero = |n: Option<i32>| n.unwrap_or(0);
    old.replicas != new.replicas
        || zero(old.fully_labeled_replicas) != zero(new.fully_labeled_replicas)
        || zero(old.ready_replicas) != zero(new.ready_replicas)
        || zero(old.available_replicas) != zero(new.available_replicas)
        || old.observed_generation.unwrap_or(0) != rs.metadata.generation.unwrap_or(0)
        || old.conditions.unwrap_or_default() != new.conditions.clone().unwrap_or_default()
}

/// Upstream's `slowStartBatch` sizes: 1, 2, 4, ... until `total` is reached, so a template that
/// cannot be created fails once instead of `total` times.
pub fn slow_start_batches(total: usize) -> Vec<usize> {
    let mut batches = Vec::new();
    let mut remaining = total;
    let mut size = 1usize;
    while remaining > 0 {
        let n = size.min(remaining);
        batches.push(n);
        remaining -= n;
        size = size.saturating_mul(2);
    }
    batches
}

/// API times have second precision; conditions made here match what the server stores.
fn second_precision(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

// ---- Expectations ----

/// Creates and deletes this controller made that the watch cache has not shown yet, per
/// ReplicaSet key (upstream's `ControllerExpectations`, keyed by name instead of counted).
#[derive(Default)]
pub struct Expectations {
    /// A std mutex: held only for map updates, never across an await.
    pending: Mutex<HashMap<String, Pending>>,
}

#[derive(Debug)]
struct Pending {
    /// Names of pods created but not yet seen.
    creates: HashSet<String>,
    /// Uids of pods deleted but still in the cache without a deletionTimestamp.
    deletes: HashSet<String>,
    /// When the expectation stops holding syncs back even if unobserved.
    deadline: Instant,
}

impl Expectations {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn entry<'a>(map: &'a mut HashMap<String, Pending>, key: &str) -> &'a mut Pending {
        let p = map.entry(key.to_string()).or_insert_with(|| Pending {
            creates: HashSet::new(),
            deletes: HashSet::new(),
            deadline: Instant::now() + EXPECTATIONS_TIMEOUT,
        });
        p.deadline = Instant::now() + EXPECTATIONS_TIMEOUT;
        p
    }

    pub fn expect_created(&self, key: &str, pod_name: &str) {
        Self::entry(&mut self.lock(), key)
            .creates
            .insert(pod_name.to_string());
    }

    pub fn expect_deleted(&self, key: &str, pod_uid: &str) {
        Self::entry(&mut self.lock(), key)
            .deletes
            .insert(pod_uid.to_string());
    }

    /// A delete that failed will not be observed.
    pub fn forget_deletion(&self, key: &str, pod_uid: &str) {
        if let Some(p) = self.lock().get_mut(key) {
            p.deletes.remove(pod_uid);
        }
    }

    /// Records a pod event: a pod seen (or seen gone) settles its create; a pod gone or being
    /// deleted settles its delete.
    pub fn observe(&self, key: &str, pod: &Pod, deleted: bool) {
        let mut map = self.lock();
        if let Some(p) = map.get_mut(key) {
            p.creates.remove(&pod.name_any());
            if deleted || pod.metadata.deletion_timestamp.is_some() {
                p.deletes.remove(&pod.uid().unwrap_or_default());
            }
        }
    }

    pub fn clear(&self, key: &str) {
        self.lock().remove(key);
    }

    /// Whether the cache shows every write made for `key` (or the deadline passed). `cached`
    /// answers, for a pod name, the cached pod if any; it settles writes whose events were
    /// folded into a relist.
    pub fn satisfied(&self, key: &str, cached: impl Fn(&str) -> Option<Arc<Pod>>) -> bool {
        let mut map = self.lock();
        let Some(p) = map.get_mut(key) else {
            return true;
        };
        p.creates.retain(|name| cached(name).is_none());
        let expired = Instant::now() >= p.deadline;
        let done = p.creates.is_empty() && p.deletes.is_empty();
        if done || expired {
            map.remove(key);
            return true;
        }
        false
    }
}

// ---- The loop ----

struct Ctx {
    client: Client,
    replicasets: Store<ReplicaSet>,
    pods: Store<Pod>,
    expectations: Arc<Expectations>,
    recorder: Recorder,
}

/// `namespace/name`.
fn key_of<K: kube::Resource>(obj: &K) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

/// The ReplicaSets a pod event concerns: its controller if that is a ReplicaSet, else (an
/// orphan) every ReplicaSet of the namespace whose selector matches it.
fn replicasets_for_pod(pod: &Pod, replicasets: &Store<ReplicaSet>) -> Vec<String> {
    let ns = pod.namespace().unwrap_or_default();
    if let Some(owner) = util::controller_of(pod) {
        if owner.kind == "ReplicaSet" {
            return vec![format!("{ns}/{}", owner.name)];
        }
        return Vec::new();
    }
    replicasets
        .state()
        .iter()
        .filter(|rs| rs.namespace().as_deref() == Some(ns.as_str()))
        .filter(|rs| {
            util::label_selector(&rs_selector(rs))
                .is_ok_and(|s| !s.is_empty() && s.matches(pod.labels()))
        })
        .map(|rs| key_of(rs.as_ref()))
        .collect()
}

/// Runs the controller until dropped.
pub async fn run(client: Client, _config: crate::Config) {
    let queue = KeyQueue::<String>::new();
    let expectations = Arc::new(Expectations::default());

    let rs_queue = queue.clone();
    let rs_expectations = expectations.clone();
    let replicasets = util::watch_into_store(
        Api::<ReplicaSet>::all(client.clone()),
        "replicasets",
        move |event| match event {
            watcher::Event::Apply(rs) | watcher::Event::InitApply(rs) => rs_queue.add(key_of(rs)),
            watcher::Event::Delete(rs) => rs_expectations.clear(&key_of(rs)),
            _ => {}
        },
    );

    let pod_queue = queue.clone();
    let pod_expectations = expectations.clone();
    let rs_store = replicasets.clone();
    let pods = util::watch_into_store(Api::<Pod>::all(client.clone()), "pods", move |event| {
        let (pod, deleted) = match event {
            watcher::Event::Apply(p) | watcher::Event::InitApply(p) => (p, false),
            watcher::Event::Delete(p) => (p, true),
            _ => return,
        };
        for key in replicasets_for_pod(pod, &rs_store) {
            pod_expectations.observe(&key, pod, deleted);
            pod_queue.add(key);
        }
    });

    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), COMPONENT, None),
        client,
        replicasets,
        pods,
        expectations,
    });
    util::run_workers(queue, WORKERS, "replicaset", move |key: String| {
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
    ctx.replicasets
        .wait_until_ready()
        .await
        .map_err(|_| SyncError::CacheStopped)?;
    ctx.pods
        .wait_until_ready()
        .await
        .map_err(|_| SyncError::CacheStopped)?;
    let (ns, name) = split_key(key);
    let Some(rs) = ctx.replicasets.get(&ObjectRef::new(name).within(ns)) else {
        ctx.expectations.clear(key);
        return Ok(None);
    };
    let now = Timestamp::now();
    // Borrowed from the cache: a sync runs on every event of every pod the ReplicaSet owns,
    // and copying the namespace's pods each time made a scale-up quadratic in copies.
    let cached = ctx.pods.state();
    let in_namespace: Vec<&Arc<Pod>> = cached
        .iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
        .collect();
    let pods: Vec<&Pod> = in_namespace.iter().map(|p| p.as_ref()).collect();
    let selector = match util::label_selector(&rs_selector(&rs)) {
        Ok(s) => s,
        Err(e) => {
            // Upstream gives up on an invalid selector until the object changes.
            tracing::warn!(replicaset = key, error = %e.message, "invalid selector");
            return Ok(Some(RESYNC));
        }
    };
    let claim = claim_pods(&rs, &selector, pods.iter().copied());
    let mut owned: Vec<&Pod> = claim.owned.clone();
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    if !claim.adopt.is_empty() && can_adopt(ctx, &rs).await {
        for pod in &claim.adopt {
            if adopt(&pod_api, &rs, pod).await? {
                owned.push(pod);
            }
        }
    }
    for pod in &claim.release {
        release(&pod_api, &rs, pod).await?;
    }

    let related_refs = related_pods(ctx, &rs, &pods);
    let pods_by_name: HashMap<&str, &Arc<Pod>> = in_namespace
        .iter()
        .filter_map(|p| Some((p.metadata.name.as_deref()?, *p)))
        .collect();
    let needs_sync = ctx
        .expectations
        .satisfied(key, |n| pods_by_name.get(n).map(|p| Arc::clone(p)));
    let mut manage_error = None;
    if needs_sync && rs.metadata.deletion_timestamp.is_none() {
        let change = replica_change(desired_replicas(&rs), &owned, &related_refs, now);
        manage_error = manage_replicas(ctx, &rs, key, change, &pods_by_name).await;
    }

    let mut status = calculate_status(&rs, &owned, manage_error.as_ref(), now);
    if status_needs_update(&rs, &status) {
        status.observed_generation = rs.metadata.generation;
        write_status(ctx, &rs, status.clone()).await?;
    }
    if let Some(err) = manage_error {
        return Err(SyncError::Api(err.message));
    }
    let min_ready = min_ready_seconds(&rs);
    if min_ready > 0
        && status.ready_replicas == Some(status.replicas)
        && status.available_replicas != Some(status.replicas)
    {
        return Ok(Some(Duration::from_secs(min_ready as u64)));
    }
    Ok(Some(RESYNC))
}

/// Active pods of every ReplicaSet controlled by the same owner as `rs` (its siblings in a
/// Deployment), or of `rs` alone.
fn related_pods<'a>(ctx: &Ctx, rs: &ReplicaSet, pods: &[&'a Pod]) -> Vec<&'a Pod> {
    let mut uids: HashSet<String> = rs.uid().into_iter().collect();
    if let Some(owner) = util::controller_of(rs) {
        for sibling in ctx.replicasets.state() {
            if sibling.namespace() == rs.namespace()
                && util::controller_of(sibling.as_ref()).is_some_and(|o| o.uid == owner.uid)
            {
                uids.extend(sibling.uid());
            }
        }
    }
    pods.iter()
        .copied()
        .filter(|p| util::is_pod_active(p))
        .filter(|p| util::controller_of(*p).is_some_and(|o| uids.contains(&o.uid)))
        .collect()
}

/// `RecheckDeletionTimestamp`: adoption needs a fresh read showing the ReplicaSet is the same
/// object and not being deleted, since the cache may lag a deletion.
async fn can_adopt(ctx: &Ctx, rs: &ReplicaSet) -> bool {
    let api: Api<ReplicaSet> =
        Api::namespaced(ctx.client.clone(), &rs.namespace().unwrap_or_default());
    match api.get(&rs.name_any()).await {
        Ok(fresh) => {
            fresh.metadata.uid == rs.metadata.uid && fresh.metadata.deletion_timestamp.is_none()
        }
        Err(_) => false,
    }
}

/// Patches a controller reference into an orphan. `false` when the pod went away or changed
/// (404/409/422: the next sync sees the new state).
async fn adopt(api: &Api<Pod>, rs: &ReplicaSet, pod: &Pod) -> Result<bool, SyncError> {
    let patch = serde_json::json!({
        "metadata": {
            "ownerReferences": [util::controller_reference(rs)],
            "uid": pod.uid(),
        }
    });
    match api
        .patch(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Strategic(&patch),
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if matches!(util::api_error_code(&e), Some(404 | 409 | 422)) => Ok(false),
        Err(e) => Err(api_err(&format!("adopting pod {}", pod.name_any()), &e)),
    }
}

/// Removes our controller reference from a pod that no longer matches.
async fn release(api: &Api<Pod>, rs: &ReplicaSet, pod: &Pod) -> Result<(), SyncError> {
    let patch = serde_json::json!({
        "metadata": {
            "ownerReferences": [{"$patch": "delete", "uid": rs.uid()}],
            "uid": pod.uid(),
        }
    });
    match api
        .patch(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Strategic(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if matches!(util::api_error_code(&e), Some(404 | 409 | 422)) => Ok(()),
        Err(e) => Err(api_err(&format!("releasing pod {}", pod.name_any()), &e)),
    }
}

/// Carries out a [`ReplicaChange`]; the first failure is returned for the `ReplicaFailure`
/// condition (upstream's `manageReplicas` error).
async fn manage_replicas(
    ctx: &Ctx,
    rs: &ReplicaSet,
    key: &str,
    change: ReplicaChange,
    pods_by_name: &HashMap<&str, &Arc<Pod>>,
) -> Option<ManageError> {
    let ns = rs.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let reference = object_reference(rs);
    match change {
        ReplicaChange::None => None,
        ReplicaChange::Create(count) => {
            let Some(template) = rs.spec.as_ref().and_then(|s| s.template.as_ref()) else {
                return Some(ManageError {
                    reason: "FailedCreate",
                    message: "the ReplicaSet has no pod template".into(),
                });
            };
            let pod =
                util::pod_from_template(template, util::controller_reference(rs), &rs.name_any());
            let params = PostParams::default();
            for batch in slow_start_batches(count) {
                let results = join_all((0..batch).map(|_| api.create(&params, &pod))).await;
                let mut failure = None;
                for result in results {
                    match result {
                        Ok(created) => {
                            let name = created.name_any();
                            ctx.expectations.expect_created(key, &name);
                            ctx.recorder
                                .normal(
                                    &reference,
                                    "SuccessfulCreate",
                                    &format!("Created pod: {name}"),
                                )
                                .await;
                        }
                        // A namespace being torn down refuses every create; nothing to report.
                        Err(e) if is_namespace_terminating(&e) => {}
                        Err(e) => {
                            let message = util::api_error_message(&e);
                            ctx.recorder
                                .warning(
                                    &reference,
                                    "FailedCreate",
                                    &format!("Error creating: {message}"),
                                )
                                .await;
                            failure.get_or_insert(ManageError {
                                reason: "FailedCreate",
                                message,
                            });
                        }
                    }
                }
                if failure.is_some() {
                    return failure;
                }
            }
            None
        }
        ReplicaChange::Delete(names) => {
            let victims: Vec<&Pod> = names
                .iter()
                .filter_map(|n| pods_by_name.get(n.as_str()).map(|p| p.as_ref()))
                .collect();
            for pod in &victims {
                ctx.expectations
                    .expect_deleted(key, &pod.uid().unwrap_or_default());
            }
            let results = join_all(victims.iter().map(|pod| async {
                let name = pod.name_any();
                let uid = pod.uid().unwrap_or_default();
                let params = DeleteParams {
                    preconditions: Some(kube::api::Preconditions {
                        uid: Some(uid.clone()),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                (name, uid, api.delete(&pod.name_any(), &params).await)
            }))
            .await;
            let mut failure = None;
            for (name, uid, result) in results {
                match result {
                    Ok(_) => {
                        ctx.recorder
                            .normal(
                                &reference,
                                "SuccessfulDelete",
                                &format!("Deleted pod: {name}"),
                            )
                            .await;
                    }
                    Err(e) => {
                        ctx.expectations.forget_deletion(key, &uid);
                        if util::api_error_code(&e) == Some(404) {
                            continue;
                        }
                        let message = util::api_error_message(&e);
                        ctx.recorder
                            .warning(
                                &reference,
                                "FailedDelete",
                                &format!("Error deleting: {message}"),
                            )
                            .await;
                        failure.get_or_insert(ManageError {
                            reason: "FailedDelete",
                            message,
                        });
                    }
                }
            }
            failure
        }
    }
}

fn is_namespace_terminating(err: &kube::Error) -> bool {
    match err {
        kube::Error::Api(s) => {
            s.code == 403 && s.message.contains("because it is being terminated")
        }
        _ => false,
    }
}

/// Writes the status through `/status` with the cached resourceVersion; on a conflict, once
/// more on a fresh read (upstream's `updateReplicaSetStatus` retry).
async fn write_status(
    ctx: &Ctx,
    rs: &ReplicaSet,
    status: ReplicaSetStatus,
) -> Result<(), SyncError> {
    let api: Api<ReplicaSet> =
        Api::namespaced(ctx.client.clone(), &rs.namespace().unwrap_or_default());
    let mut target = rs.clone();
    for attempt in 0..2 {
        target.status = Some(status.clone());
        match api
            .replace_status(&rs.name_any(), &PostParams::default(), &target)
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if util::api_error_code(&e) == Some(404) => return Ok(()),
            Err(e) if util::api_error_code(&e) == Some(409) && attempt == 0 => {
                match api.get(&rs.name_any()).await {
                    Ok(fresh) if fresh.metadata.uid == rs.metadata.uid => target = fresh,
                    Ok(_) => return Ok(()),
                    Err(e) if util::api_error_code(&e) == Some(404) => return Ok(()),
                    Err(e) => return Err(api_err("reading the ReplicaSet", &e)),
                }
            }
            Err(e) => return Err(api_err("updating the ReplicaSet status", &e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
        LabelSelector, ObjectMeta, OwnerReference,
    };

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn rs(replicas: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some("web-abc".into()),
                namespace: Some("default".into()),
                uid: Some("rs-uid".into()),
                generation: Some(1),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                selector: LabelSelector {
                    match_labels: Some(labels(&[("app", "web")])),
                    ..Default::default()
                },
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels(&[("app", "web"), ("tier", "fe")])),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec::default()),
                }),
                min_ready_seconds: None,
            }),
            status: None,
        }
    }

    fn owner(uid: &str) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: "web-abc".into(),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    /// A pod owned by `rs-uid`, created at `created` seconds.
    fn pod(name: &str, created: i64) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                labels: Some(labels(&[("app", "web"), ("tier", "fe")])),
                owner_references: Some(vec![owner("rs-uid")]),
                creation_timestamp: Some(Time(ts(created))),
                ..Default::default()
            },
            spec: Some(PodSpec::default()),
            status: Some(PodStatus {
                phase: Some("Pending".into()),
                ..Default::default()
            }),
        }
    }

    fn on_node(mut p: Pod, node: &str) -> Pod {
        p.spec.get_or_insert_with(Default::default).node_name = Some(node.into());
        p
    }

    fn running(mut p: Pod, ready_since: Option<i64>) -> Pod {
        let status = p.status.get_or_insert_with(Default::default);
        status.phase = Some("Running".into());
        status.conditions = ready_since.map(|t| {
            vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(Time(ts(t))),
                ..Default::default()
            }]
        });
        p
    }

    fn names(pods: &[&Pod]) -> Vec<String> {
        pods.iter().map(|p| p.name_any()).collect()
    }

    #[test]
    fn scale_from_zero_to_fifty_and_back_to_zero() {
        let now = ts(1000);
        let none: Vec<Pod> = Vec::new();
        let up = replicaset_diff(&rs(50), &none, &[], now).unwrap();
        assert_eq!(up.change, ReplicaChange::Create(50));
        assert_eq!(slow_start_batches(50), vec![1, 2, 4, 8, 16, 19]);

        let fifty: Vec<Pod> = (0..50)
            .map(|i| pod(&format!("web-abc-{i:05}"), i))
            .collect();
        let steady = replicaset_diff(&rs(50), &fifty, &[], now).unwrap();
        assert_eq!(steady.change, ReplicaChange::None);

        let down = replicaset_diff(&rs(0), &fifty, &[], now).unwrap();
        let ReplicaChange::Delete(victims) = down.change else {
            panic!("expected deletions, got {:?}", down.change);
        };
        assert_eq!(victims.len(), 50);
        let unique: HashSet<&String> = victims.iter().collect();
        assert_eq!(unique.len(), 50);
    }

    #[test]
    fn creates_and_deletes_are_capped_by_burst_replicas() {
        let none: Vec<Pod> = Vec::new();
        let actions = replicaset_diff(&rs(800), &none, &[], ts(0)).unwrap();
        assert_eq!(actions.change, ReplicaChange::Create(BURST_REPLICAS));
    }

    #[test]
    fn inactive_pods_do_not_count_and_are_replaced() {
        let mut finished = pod("done", 1);
        finished.status.as_mut().unwrap().phase = Some("Succeeded".into());
        let mut terminating = pod("leaving", 2);
        terminating.metadata.deletion_timestamp = Some(Time(ts(5)));
        let pods = vec![finished, terminating, pod("live", 3)];
        let actions = replicaset_diff(&rs(3), &pods, &[], ts(10)).unwrap();
        assert_eq!(actions.change, ReplicaChange::Create(2));
    }

    #[test]
    fn orphans_that_match_are_adopted_and_owned_pods_that_stop_matching_are_released() {
        let mut orphan = pod("orphan", 1);
        orphan.metadata.owner_references = None;
        let mut foreign = pod("foreign", 2);
        foreign.metadata.owner_references = Some(vec![owner("other-uid")]);
        let mut relabelled = pod("relabelled", 3);
        relabelled.metadata.labels = Some(labels(&[("app", "debug")]));
        let mut unmatched_orphan = pod("stranger", 4);
        unmatched_orphan.metadata.owner_references = None;
        unmatched_orphan.metadata.labels = Some(labels(&[("app", "db")]));
        let mut other_ns = pod("elsewhere", 5);
        other_ns.metadata.namespace = Some("kube-system".into());
        other_ns.metadata.owner_references = None;
        let pods = vec![
            orphan,
            foreign,
            relabelled,
            unmatched_orphan,
            other_ns,
            pod("mine", 6),
        ];

        let actions = replicaset_diff(&rs(2), &pods, &[], ts(10)).unwrap();
        assert_eq!(actions.adopt, vec!["orphan"]);
        assert_eq!(actions.release, vec!["relabelled"]);
        // mine + the adopted orphan make two: nothing to create.
        assert_eq!(actions.change, ReplicaChange::None);
    }

    #[test]
    fn a_replicaset_being_deleted_neither_claims_nor_scales() {
        let mut deleting = rs(5);
        deleting.metadata.deletion_timestamp = Some(Time(ts(0)));
        let mut orphan = pod("orphan", 1);
        orphan.metadata.owner_references = None;
        let actions = replicaset_diff(&deleting, &[orphan], &[], ts(10)).unwrap();
        assert!(actions.adopt.is_empty());
        assert_eq!(actions.change, ReplicaChange::None);
    }

    #[test]
    fn victims_unassigned_before_assigned_pending_before_running_not_ready_before_ready() {
        let now = ts(10_000);
        let ready_running = on_node(running(pod("ready", 1), Some(100)), "n1");
        let unready_running = on_node(running(pod("unready", 2), None), "n1");
        let pending_assigned = on_node(pod("pending", 3), "n1");
        let unassigned = pod("unassigned", 4);
        let pods = [
            &ready_running,
            &unready_running,
            &pending_assigned,
            &unassigned,
        ];
        let order = pods_to_delete(&pods, &[], 4, now);
        assert_eq!(
            names(&order),
            vec!["unassigned", "pending", "unready", "ready"]
        );
    }

    /// Regression (issue 3): scaling 60 → 0 panicked because pods ready at different times in
    /// one age bucket were ordered by uid before later criteria, which is not a total order.
    #[test]
    fn victim_order_is_a_total_order() {
        let now = ts(100_000);
        let mut pods = Vec::new();
        for i in 0..24i64 {
            let ready_at = if i % 3 == 0 {
                None
            } else {
                Some(99_000 + (i % 5) * 7)
            };
            let mut p = on_node(
                running(pod(&format!("p{i}"), 50_000 + (i % 4)), ready_at),
                if i % 2 == 0 { "n1" } else { "n2" },
            );
            p.metadata.uid = Some(format!("uid-{}", (i * 7919) % 23));
            pods.push(p);
        }
        for a in &pods {
            for b in &pods {
                for c in &pods {
                    let ab = compare_victims(a, 0, b, 0, now);
                    let bc = compare_victims(b, 0, c, 0, now);
                    if ab == Ordering::Less && bc == Ordering::Less {
                        assert_eq!(compare_victims(a, 0, c, 0, now), Ordering::Less);
                    }
                }
                assert_eq!(
                    compare_victims(a, 0, b, 0, now),
                    compare_victims(b, 0, a, 0, now).reverse()
                );
            }
        }
        let refs: Vec<&Pod> = pods.iter().collect();
        assert_eq!(
            pods_to_delete(&refs, &refs, refs.len(), now).len(),
            refs.len()
        );
    }

    #[test]
    fn victims_by_deletion_cost_then_colocation_then_ready_age_then_restarts_then_creation() {
        let now = ts(100_000);
        // Deletion cost beats everything after readiness.
        let mut cheap = on_node(running(pod("cheap", 1), Some(10)), "n1");
        cheap.metadata.annotations = Some(labels(&[(POD_DELETION_COST, "-5")]));
        let dear = on_node(running(pod("dear", 2), Some(10)), "n2");
        assert_eq!(compare_victims(&cheap, 0, &dear, 0, now), Ordering::Less);

        // Doubled-up pods go first.
        let a = on_node(running(pod("a", 1), Some(10)), "n1");
        let b = on_node(running(pod("b", 2), Some(10)), "n2");
        let related = [&a, &a, &b];
        let order = pods_to_delete(&[&b, &a], &related, 2, now);
        assert_eq!(names(&order), vec!["a", "b"]);

        // Ready for less time first (different log2 buckets: ~16 s vs ~27 h).
        let recent = on_node(running(pod("recent", 1), Some(99_984)), "n1");
        let old = on_node(running(pod("old", 2), Some(0)), "n2");
        assert_eq!(compare_victims(&recent, 0, &old, 0, now), Ordering::Less);

        // More restarts first.
        let mut crashy = on_node(running(pod("crashy", 1), Some(0)), "n1");
        crashy.status.as_mut().unwrap().container_statuses =
            Some(vec![k8s_openapi::api::core::v1::ContainerStatus {
                name: "c".into(),
                restart_count: 3,
                ..Default::default()
            }]);
        let steady = on_node(running(pod("steady", 2), Some(0)), "n2");
        assert_eq!(compare_victims(&crashy, 0, &steady, 0, now), Ordering::Less);

        // Newer first; a pod without a creation time first of all.
        let newer = pod("newer", 99_000);
        let older = pod("older", 0);
        let mut timeless = pod("timeless", 0);
        timeless.metadata.creation_timestamp = None;
        let order = pods_to_delete(&[&older, &newer, &timeless], &[], 3, now);
        assert_eq!(names(&order), vec!["timeless", "newer", "older"]);
    }

    #[test]
    fn pods_in_the_same_log2_age_bucket_tie_break_by_uid() {
        let now = ts(1_000_000);
        // Both about 1000 s old: the same power-of-two bucket of nanoseconds.
        let x = pod("x", 999_000);
        let y = pod("y", 999_010);
        assert_eq!(
            log_age_bucket(ts(999_000), now),
            log_age_bucket(ts(999_010), now)
        );
        assert_eq!(compare_victims(&x, 0, &y, 0, now), Ordering::Less);
        assert_eq!(compare_victims(&y, 0, &x, 0, now), Ordering::Greater);
    }

    #[test]
    fn status_counts_fully_labeled_ready_and_available_pods() {
        let now = ts(1000);
        let mut set = rs(3);
        set.spec.as_mut().unwrap().min_ready_seconds = Some(30);
        let available = running(pod("available", 1), Some(900));
        let just_ready = running(pod("just-ready", 2), Some(990));
        let mut partly_labeled = pod("partly", 3);
        partly_labeled.metadata.labels = Some(labels(&[("app", "web")]));
        let owned = [&available, &just_ready, &partly_labeled];
        let status = calculate_status(&set, &owned, None, now);
        assert_eq!(status.replicas, 3);
        assert_eq!(status.fully_labeled_replicas, Some(2));
        assert_eq!(status.ready_replicas, Some(2));
        assert_eq!(status.available_replicas, Some(1));
        assert!(status.conditions.is_none());
        assert!(status_needs_update(&set, &status));

        // Zero counts are left out, as Go's omitempty does.
        let empty = calculate_status(&rs(0), &[], None, now);
        assert_eq!(empty.replicas, 0);
        assert_eq!(empty.ready_replicas, None);
    }

    #[test]
    fn replica_failure_condition_is_set_on_error_and_cleared_after_a_clean_sync() {
        let now = ts(50);
        let err = ManageError {
            reason: "FailedCreate",
            message: "pods \"x\" is forbidden: quota".into(),
        };
        let mut set = rs(1);
        let failed = calculate_status(&set, &[], Some(&err), now);
        let cond = &failed.conditions.as_ref().unwrap()[0];
        assert_eq!(cond.type_, "ReplicaFailure");
        assert_eq!(cond.reason.as_deref(), Some("FailedCreate"));
        set.status = Some(failed);
        let healed = calculate_status(&set, &[], None, now);
        assert!(healed.conditions.is_none());
    }

    #[test]
    fn status_is_not_rewritten_when_nothing_changed() {
        let now = ts(1000);
        let mut set = rs(1);
        let p = pod("p", 1);
        let mut status = calculate_status(&set, &[&p], None, now);
        status.observed_generation = Some(1);
        set.status = Some(status.clone());
        assert!(!status_needs_update(
            &set,
            &calculate_status(&set, &[&p], None, now)
        ));
        // A new generation must be observed even when the counts stay.
        set.metadata.generation = Some(2);
        assert!(status_needs_update(&set, &status));
    }

    #[test]
    fn expectations_hold_until_created_pods_are_seen_and_deleted_pods_are_gone() {
        let e = Expectations::default();
        assert!(e.satisfied("ns/rs", |_| None));
        e.expect_created("ns/rs", "web-abc-x1");
        assert!(!e.satisfied("ns/rs", |_| None));
        let seen = Arc::new(pod("web-abc-x1", 1));
        assert!(e.satisfied("ns/rs", |n| (n == "web-abc-x1").then(|| seen.clone())));

        e.expect_deleted("ns/rs", "uid-a");
        assert!(!e.satisfied("ns/rs", |_| None));
        let mut a = pod("a", 1);
        a.metadata.uid = Some("uid-a".into());
        e.observe("ns/rs", &a, true);
        assert!(e.satisfied("ns/rs", |_| None));

        e.expect_deleted("ns/rs", "uid-b");
        e.forget_deletion("ns/rs", "uid-b");
        assert!(e.satisfied("ns/rs", |_| None));
    }

    #[test]
    fn pods_are_made_from_the_template_with_a_controller_reference() {
        let set = rs(1);
        let template = set.spec.as_ref().unwrap().template.as_ref().unwrap();
        let p = util::pod_from_template(template, util::controller_reference(&set), "web-abc");
        assert_eq!(p.metadata.generate_name.as_deref(), Some("web-abc-"));
        assert_eq!(
            p.metadata.labels,
            Some(labels(&[("app", "web"), ("tier", "fe")]))
        );
        let refs = p.metadata.owner_references.unwrap();
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].kind, "ReplicaSet");
        assert_eq!(refs[0].uid, "rs-uid");
        assert_eq!(refs[0].controller, Some(true));
        assert_eq!(refs[0].block_owner_deletion, Some(true));
    }
}
