//! Helpers the controllers share. Append here; keep each helper small and pure.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};

/// The owner reference a controller puts on what it creates: `controller` and
/// `blockOwnerDeletion` set, as upstream's controllers do.
pub fn controller_reference<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.name_any(),
        uid: owner.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The owner reference marked `controller: true`, if any.
pub fn controller_of<K: Resource>(obj: &K) -> Option<&OwnerReference> {
    obj.meta()
        .owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// A work queue of object keys, like client-go's rate-limited workqueue: a key waiting in the
/// queue is held once however often it is added; a key being reconciled is never handed to a
/// second worker — if it is added meanwhile it is queued again when the first run is `done`.
/// Failures back off per key, exponentially.
pub struct KeyQueue<K> {
    /// A std mutex: held only for set/deque operations, never across an await.
    state: std::sync::Mutex<QueueState<K>>,
    wake: tokio::sync::Notify,
}

struct QueueState<K> {
    ready: std::collections::VecDeque<K>,
    queued: std::collections::HashSet<K>,
    in_flight: std::collections::HashSet<K>,
    /// Keys added while in flight: run again once the current run is done.
    dirty: std::collections::HashSet<K>,
    failures: std::collections::HashMap<K, u32>,
}

/// First retry delay after a failure; doubles per consecutive failure of the same key.
const QUEUE_BASE_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);
/// Longest delay between retries of a failing key.
const QUEUE_MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(60);

impl<K> KeyQueue<K>
where
    K: Clone + Eq + std::hash::Hash + Send + 'static,
{
    pub fn new() -> std::sync::Arc<KeyQueue<K>> {
        std::sync::Arc::new(KeyQueue {
            state: std::sync::Mutex::new(QueueState {
                ready: Default::default(),
                queued: Default::default(),
                in_flight: Default::default(),
                dirty: Default::default(),
                failures: Default::default(),
            }),
            wake: tokio::sync::Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState<K>> {
        // A poisoned lock only means another thread panicked mid-update of plain sets; the
        // sets stay usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `key` unless it is already waiting.
    pub fn add(&self, key: K) {
        let mut s = self.lock();
        if s.in_flight.contains(&key) {
            s.dirty.insert(key);
            return;
        }
        if s.queued.insert(key.clone()) {
            s.ready.push_back(key);
            drop(s);
            self.wake.notify_one();
        }
    }

    /// Queues `key` after `delay` (a requeue or a retry).
    pub fn add_after(self: &std::sync::Arc<Self>, key: K, delay: std::time::Duration) {
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(key);
        });
    }

    /// The next key to reconcile; the caller must call [`KeyQueue::done`] after the run.
    pub async fn next(&self) -> K {
        loop {
            {
                let mut s = self.lock();
                if let Some(key) = s.ready.pop_front() {
                    s.queued.remove(&key);
                    s.in_flight.insert(key.clone());
                    // Let another idle worker look for more work.
                    if !s.ready.is_empty() {
                        self.wake.notify_one();
                    }
                    return key;
                }
            }
            self.wake.notified().await;
        }
    }

    /// Ends a run of `key`; queues it again if it was added during the run.
    pub fn done(&self, key: &K) {
        let mut s = self.lock();
        s.in_flight.remove(key);
        if s.dirty.remove(key) && s.queued.insert(key.clone()) {
            s.ready.push_back(key.clone());
            drop(s);
            self.wake.notify_one();
        }
    }

    /// Records a failure of `key` and returns how long to wait before retrying it.
    pub fn backoff(&self, key: &K) -> std::time::Duration {
        let mut s = self.lock();
        let n = s.failures.entry(key.clone()).or_insert(0);
        let delay = QUEUE_BASE_BACKOFF
            .saturating_mul(1u32 << (*n).min(16))
            .min(QUEUE_MAX_BACKOFF);
        *n = n.saturating_add(1);
        delay
    }

    /// Clears the failure count of `key` after a successful run.
    pub fn forget(&self, key: &K) {
        self.lock().failures.remove(key);
    }

    /// How many keys wait (not counting those in flight).
    pub fn len(&self) -> usize {
        self.lock().ready.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Runs `workers` tasks that take keys from `queue` and reconcile them until the future is
/// dropped. `Ok(Some(d))` requeues the key after `d`; `Err` retries it with backoff. One key is
/// never reconciled by two workers at once.
pub async fn run_workers<K, F, Fut, E>(
    queue: std::sync::Arc<KeyQueue<K>>,
    workers: usize,
    name: &'static str,
    reconcile: F,
) where
    K: Clone + Eq + std::hash::Hash + std::fmt::Display + Send + Sync + 'static,
    F: Fn(K) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Option<std::time::Duration>, E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let mut handles = Vec::new();
    for _ in 0..workers.max(1) {
        let queue = queue.clone();
        let reconcile = reconcile.clone();
        handles.push(tokio::spawn(async move {
            loop {
                let key = queue.next().await;
                match reconcile(key.clone()).await {
                    Ok(requeue) => {
                        queue.forget(&key);
                        if let Some(delay) = requeue {
                            queue.add_after(key.clone(), delay);
                        }
                    }
                    Err(e) => {
                        let delay = queue.backoff(&key);
                        tracing::warn!(controller = name, key = %key, error = %e, retry_in = ?delay, "reconcile failed");
                        queue.add_after(key.clone(), delay);
                    }
                }
                queue.done(&key);
            }
        }));
    }
    for h in handles {
        let _ = h.await;
    }
}

/// Starts a reflector for `api` (list, then watch, re-listing with backoff after errors) and
/// returns its store. `on_event` sees every event after the store has applied it, so handlers
/// can read the store and enqueue keys.
pub fn watch_into_store<K>(
    api: kube::Api<K>,
    name: &'static str,
    mut on_event: impl FnMut(&kube::runtime::watcher::Event<K>) + Send + 'static,
) -> kube::runtime::reflector::Store<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    use futures::StreamExt;
    use kube::runtime::WatchStreamExt;
    let (reader, writer) = kube::runtime::reflector::store::<K>();
    let stream = kube::runtime::watcher(api, kube::runtime::watcher::Config::default())
        .default_backoff()
        .reflect(writer);
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            match item {
                Ok(event) => on_event(&event),
                Err(e) => tracing::debug!(watch = name, error = %e, "watch error; retrying"),
            }
        }
    });
    reader
}

/// Whether a resourceVersion is older than one we wrote, so a cache still shows what we
/// replaced. Resource versions are opaque to clients in principle, but both etcd's and ours are
/// increasing integers; anything unparsable counts as fresh.
pub fn resource_version_older(seen: Option<&str>, written: &str) -> bool {
    match (
        seen.and_then(|s| s.parse::<u64>().ok()),
        written.parse::<u64>(),
    ) {
        (Some(seen), Ok(written)) => seen < written,
        _ => false,
    }
}

// ---- Pods and selectors, as the workload controllers (replicaset, deployment, daemonset) see
// them. Upstream: pkg/api/v1/pod (IsPodReady, IsPodAvailable), pkg/controller (IsPodActive,
// GetPodFromTemplate), metav1.LabelSelectorAsSelector.

/// `metav1.LabelSelectorAsSelector` for a typed selector: `{}` selects everything.
pub fn label_selector(
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
) -> Result<apimachinery::selectors::LabelSelector, apimachinery::selectors::SelectorError> {
    let value = serde_json::to_value(selector).unwrap_or(serde_json::Value::Null);
    apimachinery::selectors::label_selector_from_json(Some(&value))
}

/// Whether a pod still counts toward its controller's replicas: not finished and not being
/// deleted (`controller.IsPodActive`).
pub fn is_pod_active(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded") | Some("Failed"))
        && pod.metadata.deletion_timestamp.is_none()
}

/// The pod's `Ready` condition, if it has one.
pub fn pod_ready_condition(
    pod: &k8s_openapi::api::core::v1::Pod,
) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// `podutil.IsPodReady`: the `Ready` condition is `True`.
pub fn is_pod_ready(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    pod_ready_condition(pod).is_some_and(|c| c.status == "True")
}

/// `podutil.IsPodAvailable`: ready for at least `min_ready_seconds` before `now`.
pub fn is_pod_available(
    pod: &k8s_openapi::api::core::v1::Pod,
    min_ready_seconds: i32,
    now: jiff::Timestamp,
) -> bool {
    let Some(ready) = pod_ready_condition(pod).filter(|c| c.status == "True") else {
        return false;
    };
    if min_ready_seconds <= 0 {
        return true;
    }
    ready.last_transition_time.as_ref().is_some_and(|t| {
        t.0.checked_add(jiff::SignedDuration::from_secs(i64::from(
            min_ready_seconds,
        )))
        .is_ok_and(|until| until < now)
    })
}

/// `controller.GetPodFromTemplate`: a pod to create from a controller's template, named by the
/// server from `<owner>-` and owned by `owner`.
pub fn pod_from_template(
    template: &k8s_openapi::api::core::v1::PodTemplateSpec,
    owner: OwnerReference,
    owner_name: &str,
) -> k8s_openapi::api::core::v1::Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    k8s_openapi::api::core::v1::Pod {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            generate_name: Some(format!("{owner_name}-")),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// The HTTP status code of an API error (`None` for transport errors).
pub fn api_error_code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// What client-go's `err.Error()` prints for an API error: the Status message (events quote it).
pub fn api_error_message(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) if !status.message.is_empty() => status.message.clone(),
        other => other.to_string(),
    }
}

use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, Taint, Toleration,
};

/// Whether a toleration tolerates a taint, as upstream's `Toleration.ToleratesTaint`: an empty
/// effect matches every effect, an empty key with `Exists` matches every key, `Exists` ignores
/// the value and `Equal` (or no operator) compares it.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    let operator = toleration.operator.as_deref().unwrap_or("Equal");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match operator {
        "Exists" => true,
        "Equal" | "" => {
            toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

/// The first taint (in the node's order) with an effect `effects` accepts that no toleration
/// tolerates.
pub fn first_untolerated<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    effects: &[&str],
) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| effects.contains(&t.effect.as_str()))
        .find(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
}

/// Whether a node satisfies a node selector's terms (ORed; each term's expressions and fields
/// ANDed; a term with neither matches nothing), as `nodeAffinity` and DaemonSet pods use them.
pub fn node_matches_terms(node: &Node, terms: &[NodeSelectorTerm]) -> bool {
    terms.iter().any(|term| node_matches_term(node, term))
}

/// One node selector term: all its label expressions and field expressions must hold.
pub fn node_matches_term(node: &Node, term: &NodeSelectorTerm) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = node.metadata.labels.as_ref();
    let label = |key: &str| labels.and_then(|l| l.get(key)).map(String::as_str);
    // The only field a node selector may name is metadata.name (validation rejects others).
    let field = |key: &str| match key {
        "metadata.name" => node.metadata.name.as_deref(),
        _ => None,
    };
    expressions
        .iter()
        .all(|r| requirement_holds(r, label(&r.key)))
        && fields.iter().all(|r| requirement_holds(r, field(&r.key)))
}

fn requirement_holds(requirement: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = requirement.values.as_deref().unwrap_or(&[]);
    match requirement.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(actual), [bound]) = (value.and_then(|v| v.parse::<i64>().ok()), values)
            else {
                return false;
            };
            let Ok(bound) = bound.parse::<i64>() else {
                return false;
            };
            if requirement.operator == "Gt" {
                actual > bound
            } else {
                actual < bound
            }
        }
        _ => false,
    }
}

/// A resource quantity (`100m`, `1.5`, `128Mi`, `1e3`, `2k`) in thousandths of its unit,
/// rounded up like upstream's `Quantity.MilliValue()`; `None` if it does not parse or does not
/// fit.
pub fn quantity_milli(quantity: &str) -> Option<i128> {
    let s = quantity.trim();
    let (negative, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let number_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return None;
    }
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.len() + fraction.len() > 30 {
        return None;
    }
    let mantissa: i128 = format!("{whole}{fraction}").parse().ok()?;
    let (power_of_ten, power_of_two): (i32, u32) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        e if e.starts_with(['e', 'E']) => (e[1..].parse::<i32>().ok()?, 0),
        _ => return None,
    };
    let exponent = power_of_ten
        .checked_sub(i32::try_from(fraction.len()).ok()?)?
        .checked_add(3)?;
    let scaled = mantissa.checked_mul(1i128.checked_shl(power_of_two)?)?;
    let magnitude = if exponent >= 0 {
        scaled.checked_mul(10i128.checked_pow(exponent.unsigned_abs())?)?
    } else {
        let divisor = 10i128.checked_pow(exponent.unsigned_abs())?;
        // Rounded up, as upstream rounds a scaled quantity.
        (scaled + divisor - 1) / divisor
    };
    Some(if negative { -magnitude } else { magnitude })
}

/// A quantity in whole units (bytes, pods), rounded up like upstream's `Quantity.Value()`.
pub fn quantity_value(quantity: &str) -> Option<i128> {
    let milli = quantity_milli(quantity)?;
    Some(if milli >= 0 {
        (milli + 999) / 1000
    } else {
        milli / 1000
    })
}

#[cfg(test)]
mod queue_tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_waiting_key_is_held_once_and_an_in_flight_key_is_rerun_after_done() {
        let q = KeyQueue::<String>::new();
        q.add("a".into());
        q.add("a".into());
        q.add("b".into());
        assert_eq!(q.len(), 2);
        let first = q.next().await;
        assert_eq!(first, "a");
        // Added while in flight: not handed out again until done.
        q.add("a".into());
        assert_eq!(q.next().await, "b");
        assert!(q.is_empty());
        q.done(&"a".to_string());
        assert_eq!(q.len(), 1);
        assert_eq!(q.next().await, "a");
    }

    #[tokio::test]
    async fn backoff_doubles_per_failure_up_to_a_cap_and_forget_resets_it() {
        let q = KeyQueue::<u32>::new();
        assert_eq!(q.backoff(&1), Duration::from_millis(100));
        assert_eq!(q.backoff(&1), Duration::from_millis(200));
        assert_eq!(q.backoff(&1), Duration::from_millis(400));
        for _ in 0..30 {
            q.backoff(&1);
        }
        assert_eq!(q.backoff(&1), Duration::from_secs(60));
        q.forget(&1);
        assert_eq!(q.backoff(&1), Duration::from_millis(100));
    }

    #[test]
    fn resource_versions_compare_as_integers_and_unparsable_ones_count_as_fresh() {
        assert!(resource_version_older(Some("9"), "10"));
        assert!(!resource_version_older(Some("10"), "10"));
        assert!(!resource_version_older(Some("x"), "10"));
        assert!(!resource_version_older(None, "10"));
    }
}
