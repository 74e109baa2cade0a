//! Events as the controllers, the scheduler and kubelets record them: core/v1 `Event` objects
//! (what `kubectl describe` reads), named `<object>.<hex nanoseconds>` like client-go's
//! recorder, with repeats of the same event folded into one object whose `count` and
//! `lastTimestamp` move (client-go's EventCorrelator does the same). Recording never fails the
//! caller: an event that cannot be written is logged and dropped.
//!
//! Recording does not wait for the write either, as client-go's broadcaster does not: a kubelet
//! starting a pod records three events, and three durable writes in its path would triple the
//! pod's start-up time. At most [`MAX_PENDING`] events wait at once; beyond that they are dropped
//! (client-go drops past its 1000-event queue too).

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// Events recorded but not yet written, per recorder, before new ones are dropped.
pub const MAX_PENDING: usize = 1000;
/// Event writes in flight at once, per recorder.
const CONCURRENT_WRITES: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// The reference an event points at, from any typed object.
pub fn object_reference<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: Some(obj.name_any()),
        namespace: obj.namespace(),
        uid: obj.uid(),
        resource_version: obj.resource_version(),
        field_path: None,
    }
}

type FoldKey = (String, String, String, &'static str, String, String);

/// Writes events on behalf of one component (`deployment-controller`, `default-scheduler`,
/// `kubelet` on a host, ...).
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    component: String,
    host: Option<String>,
    /// Recent events by (namespace, object uid, reason, type, message, field path) → (name, count),
    /// so a repeat is folded into the existing object. A std mutex: never held across an await.
    seen: Arc<Mutex<HashMap<FoldKey, (String, i32)>>>,
    /// Events accepted and not yet written.
    pending: Arc<AtomicUsize>,
    writers: Arc<Semaphore>,
}

impl Recorder {
    pub fn new(client: Client, component: &str, host: Option<&str>) -> Recorder {
        Recorder {
            client,
            component: component.to_string(),
            host: host.map(str::to_string),
            seen: Arc::new(Mutex::new(HashMap::new())),
            pending: Arc::new(AtomicUsize::new(0)),
            writers: Arc::new(Semaphore::new(CONCURRENT_WRITES)),
        }
    }

    /// Waits until every event recorded so far has been written (or dropped).
    pub async fn flush(&self) {
        while self.pending.load(Ordering::Acquire) > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }

    pub async fn normal(&self, object: &ObjectReference, reason: &str, message: &str) {
        self.publish(object, EventType::Normal, reason, message)
            .await;
    }

    pub async fn warning(&self, object: &ObjectReference, reason: &str, message: &str) {
        self.publish(object, EventType::Warning, reason, message)
            .await;
    }

    /// Records an event: returns at once, the write happens in the background (see the module
    /// docs). The event's time is the time of this call.
    pub async fn publish(
        &self,
        object: &ObjectReference,
        kind: EventType,
        reason: &str,
        message: &str,
    ) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.pending.fetch_add(1, Ordering::AcqRel) >= MAX_PENDING {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            tracing::debug!(reason, "event queue full; dropping the event");
            return;
        }
        let now = Time(jiff::Timestamp::now());
        let (recorder, object, reason, message) = (
            self.clone(),
            object.clone(),
            reason.to_string(),
            message.to_string(),
        );
        runtime.spawn(async move {
            if let Ok(_permit) = recorder.writers.clone().acquire_owned().await {
                recorder.write(&object, kind, &reason, &message, now).await;
            }
            recorder.pending.fetch_sub(1, Ordering::AcqRel);
        });
    }

    async fn write(
        &self,
        object: &ObjectReference,
        kind: EventType,
        reason: &str,
        message: &str,
        now: Time,
    ) {
        // Events of cluster-scoped objects (nodes) live in `default`, as upstream's do.
        let namespace = object
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let key: FoldKey = (
            namespace.clone(),
            object.uid.clone().unwrap_or_default(),
            reason.to_string(),
            kind.as_str(),
            message.to_string(),
            object.field_path.clone().unwrap_or_default(),
        );
        let previous = self.seen.lock().ok().and_then(|m| m.get(&key).cloned());
        if let Some((name, count)) = previous {
            let patch = serde_json::json!({"count": count + 1, "lastTimestamp": now});
            if api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .is_ok()
            {
                if let Ok(mut m) = self.seen.lock() {
                    m.insert(key, (name, count + 1));
                }
                return;
            }
        }
        let object_name = object.name.clone().unwrap_or_default();
        let nanos = now.0.as_nanosecond();
        let name = format!("{object_name}.{:x}", nanos.max(0));
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace),
                ..Default::default()
            },
            involved_object: object.clone(),
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            type_: Some(kind.as_str().to_string()),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: self.host.clone(),
            }),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.host.clone().unwrap_or_else(|| self.component.clone())),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {
                if let Ok(mut m) = self.seen.lock() {
                    // Bounded: an old entry only costs a fresh event object instead of a fold.
                    if m.len() > 4096 {
                        m.clear();
                    }
                    m.insert(key, (name, 1));
                }
            }
            Err(e) => tracing::debug!(reason, error = %e, "could not record event"),
        }
    }
}
