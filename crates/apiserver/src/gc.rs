//! Garbage collection by ownerReferences and namespace finalization, the work kube-controller-
//! manager's garbagecollector and namespace controllers do, run inside the API server over a
//! watch of the whole store:
//! - a dependent whose owners are all gone is deleted (background cascade); one that keeps a
//!   live owner loses the dangling reference;
//! - an owner being deleted with the `foregroundDeletion` finalizer has its dependents deleted
//!   first, and the finalizer is removed once none is left;
//! - an owner with the `orphan` finalizer has the references to it removed from its
//!   dependents, then the finalizer;
//! - a namespace being deleted has its contents deleted, then it is removed.
//!
//! Level-triggered: every event marks the objects it concerns as dirty and each dirty object
//! is examined against the current index; a periodic resync marks everything.

use crate::object;
use crate::registry::{self, ResourceInfo};
use crate::rest::{self, DeleteOptions, Write};
use crate::server::State;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug)]
struct Node {
    key: String,
    namespace: Option<String>,
    deleting: bool,
    finalizers: Vec<String>,
    owners: Vec<String>,
    /// Set for namespaces: their name.
    namespace_name: Option<String>,
}

#[derive(Default)]
struct Index {
    nodes: HashMap<String, Node>,
    uid_of_key: HashMap<String, String>,
    dependents: HashMap<String, HashSet<String>>,
    /// Namespace name → uids of the objects in it.
    members: HashMap<String, HashSet<String>>,
    namespace_uid: HashMap<String, String>,
}

impl Index {
    /// Records the new state of `key` (None: deleted) and returns the uids to re-examine.
    fn observe(&mut self, key: &str, value: Option<&Value>) -> Vec<String> {
        let mut dirty = Vec::new();
        if let Some(old_uid) = self.uid_of_key.remove(key)
            && let Some(old) = self.nodes.remove(&old_uid)
        {
            for o in &old.owners {
                if let Some(d) = self.dependents.get_mut(o) {
                    d.remove(&old_uid);
                }
                dirty.push(o.clone());
            }
            if let Some(ns) = &old.namespace {
                if let Some(m) = self.members.get_mut(ns) {
                    m.remove(&old_uid);
                }
                if let Some(nsuid) = self.namespace_uid.get(ns) {
                    dirty.push(nsuid.clone());
                }
            }
            if let Some(n) = &old.namespace_name {
                self.namespace_uid.remove(n);
            }
            if let Some(deps) = self.dependents.get(&old_uid) {
                dirty.extend(deps.iter().cloned());
            }
        }
        let Some(v) = value else { return dirty };
        let uid = object::uid(v).to_string();
        if uid.is_empty() {
            return dirty;
        }
        let is_namespace = key.starts_with("/registry/core/namespaces/");
        let node = Node {
            key: key.to_string(),
            namespace: object::namespace(v)
                .filter(|n| !n.is_empty())
                .map(str::to_string),
            deleting: object::is_deleting(v),
            finalizers: object::finalizers(v),
            owners: object::owner_refs(v)
                .into_iter()
                .map(|(u, _, _)| u)
                .collect(),
            namespace_name: is_namespace.then(|| object::name(v).to_string()),
        };
        for o in &node.owners {
            self.dependents
                .entry(o.clone())
                .or_default()
                .insert(uid.clone());
            dirty.push(o.clone());
        }
        if let Some(ns) = &node.namespace {
            self.members
                .entry(ns.clone())
                .or_default()
                .insert(uid.clone());
        }
        if let Some(n) = &node.namespace_name {
            self.namespace_uid.insert(n.clone(), uid.clone());
        }
        self.uid_of_key.insert(key.to_string(), uid.clone());
        self.nodes.insert(uid.clone(), node);
        dirty.extend(self.dependents.get(&uid).into_iter().flatten().cloned());
        dirty.push(uid);
        dirty
    }
}

/// The resource a storage key belongs to: `/registry/<group>/<plural>/...`.
fn info_of_key(key: &str) -> Option<&'static ResourceInfo> {
    let mut parts = key.trim_start_matches("/registry/").split('/');
    let group = parts.next()?;
    let plural = parts.next()?;
    let group = if group == "core" { "" } else { group };
    registry::RESOURCES
        .iter()
        .find(|r| r.group == group && r.plural == plural)
}

fn name_of_key(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or("")
}

/// Runs the collector until the task is aborted; restarts itself after errors.
pub async fn run(state: Arc<State>) {
    loop {
        if let Err(e) = run_once(&state).await {
            tracing::warn!(error = %e, "garbage collector restarting");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn run_once(state: &State) -> Result<(), String> {
    let (rv, entries) = state.store.list("/registry/");
    let mut index = Index::default();
    let mut dirty: BTreeSet<String> = BTreeSet::new();
    for e in &entries {
        dirty.extend(index.observe(&e.key, Some(&object::parse_metadata(&e.value))));
    }
    let mut watcher = state
        .store
        .watch("/registry/", Some(rv))
        .map_err(|e| e.to_string())?;
    let mut resync = tokio::time::interval(Duration::from_secs(30));
    loop {
        while let Some(uid) = dirty.pop_first() {
            if examine(state, &index, &uid).await == Examined::MoreToDo {
                dirty.insert(uid);
            }
            // Keep reading while working through a burst: deleting a namespace of thousands of
            // pods queues more events than the store buffers for a watcher that stops reading,
            // and the store drops such a watcher (a restart and a full re-list).
            observe_queued(&mut watcher, &mut index, &mut dirty).await?;
        }
        tokio::select! {
            ev = watcher.next() => {
                let Some(ev) = ev else { return Err("store watch ended".into()) };
                observe_event(&mut index, &mut dirty, &ev);
                // Take whatever else is already queued before acting, so bursts batch up.
                observe_queued(&mut watcher, &mut index, &mut dirty).await?;
            }
            _ = resync.tick() => dirty.extend(index.nodes.keys().cloned()),
        }
    }
}

fn observe_event(index: &mut Index, dirty: &mut BTreeSet<String>, ev: &store::Event) {
    let value = match ev.kind {
        store::EventKind::Deleted => None,
        _ => Some(object::parse_metadata(&ev.value)),
    };
    dirty.extend(index.observe(&ev.key, value.as_ref()));
}

/// Observes every event already waiting, without waiting for more.
async fn observe_queued(
    watcher: &mut store::Watcher,
    index: &mut Index,
    dirty: &mut BTreeSet<String>,
) -> Result<(), String> {
    loop {
        match tokio::time::timeout(Duration::ZERO, watcher.next()).await {
            Ok(Some(ev)) => observe_event(index, dirty, &ev),
            Ok(None) => return Err("store watch ended".into()),
            Err(_) => return Ok(()),
        }
    }
}

/// Deletions one examination sends at most, so that the loop reads its watch in between (a
/// namespace of thousands of pods would otherwise overflow the watch's buffer).
const DELETIONS_PER_EXAMINATION: usize = 100;

#[derive(Debug, PartialEq, Eq)]
enum Examined {
    Done,
    /// Stopped after [`DELETIONS_PER_EXAMINATION`]: examine again once the watch is read.
    MoreToDo,
}

/// Looks at one object and does what the collector owes it.
async fn examine(state: &State, index: &Index, uid: &str) -> Examined {
    let Some(node) = index.nodes.get(uid) else {
        return Examined::Done;
    };
    // Dangling owner references.
    if !node.owners.is_empty() && !node.deleting {
        let live: Vec<&String> = node
            .owners
            .iter()
            .filter(|o| index.nodes.contains_key(*o))
            .collect();
        if live.is_empty() {
            let _ = delete(state, &node.key, None).await;
            return Examined::Done;
        }
        if live.len() < node.owners.len() {
            let gone: HashSet<String> = node
                .owners
                .iter()
                .filter(|o| !index.nodes.contains_key(*o))
                .cloned()
                .collect();
            strip_owner_refs(state, &node.key, &gone).await;
        }
    }
    if node.deleting {
        let deps: Vec<&Node> = index
            .dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|d| index.nodes.get(d))
            .collect();
        if node.finalizers.iter().any(|f| f == "foregroundDeletion") {
            if deps.is_empty() {
                remove_finalizer(state, &node.key, "foregroundDeletion").await;
            } else {
                let mut pending = deps.iter().filter(|d| !d.deleting);
                let mut deleted = false;
                for d in pending.by_ref().take(DELETIONS_PER_EXAMINATION) {
                    let has_own = index
                        .dependents
                        .get(
                            index
                                .uid_of_key
                                .get(&d.key)
                                .map(String::as_str)
                                .unwrap_or(""),
                        )
                        .is_some_and(|s| !s.is_empty());
                    deleted |= delete(state, &d.key, has_own.then_some("Foreground")).await;
                }
                if deleted && pending.next().is_some() {
                    return Examined::MoreToDo;
                }
            }
        }
        if node.finalizers.iter().any(|f| f == "orphan") {
            let me: HashSet<String> = [uid.to_string()].into();
            for d in &deps {
                strip_owner_refs(state, &d.key, &me).await;
            }
            remove_finalizer(state, &node.key, "orphan").await;
        }
        if let Some(ns) = &node.namespace_name {
            let members: Vec<&Node> = index
                .members
                .get(ns)
                .into_iter()
                .flatten()
                .filter_map(|m| index.nodes.get(m))
                .collect();
            if members.is_empty() {
                finalize_namespace(state, &node.key).await;
            } else {
                let mut pending = members.iter().filter(|m| !m.deleting);
                let mut deleted = false;
                for m in pending.by_ref().take(DELETIONS_PER_EXAMINATION) {
                    deleted |= delete(state, &m.key, None).await;
                }
                // When nothing could be deleted, wait for the next event or resync instead.
                if deleted && pending.next().is_some() {
                    return Examined::MoreToDo;
                }
            }
        }
    }
    Examined::Done
}

/// Deletes the object; false if that failed (other than by its being gone already).
async fn delete(state: &State, key: &str, propagation: Option<&str>) -> bool {
    let Some(info) = info_of_key(key) else {
        return false;
    };
    let opts = DeleteOptions {
        propagation: propagation.map(str::to_string),
        ..Default::default()
    };
    match rest::delete_one(state, info, key, name_of_key(key), &opts).await {
        Err(e) if e.code != 404 => {
            tracing::debug!(key, error = %e, "garbage collector could not delete");
            false
        }
        _ => true,
    }
}

/// Applies `change` to the stored object with optimistic concurrency, a few tries.
async fn modify(state: &State, key: &str, change: impl Fn(&mut Value) -> bool) {
    let Some(info) = info_of_key(key) else { return };
    for _ in 0..5 {
        let Some(cur) = state.store.get(key) else {
            return;
        };
        let mut v = object::parse(&cur.value);
        if !change(&mut v) {
            return;
        }
        match rest::update_object(state, info, key, &cur, v, Write::main_at(cur.rv)).await {
            Ok(_) => return,
            Err(e) if e.reason == "Conflict" => continue,
            Err(e) => {
                tracing::debug!(key, error = %e, "garbage collector update failed");
                return;
            }
        }
    }
}

async fn strip_owner_refs(state: &State, key: &str, gone: &HashSet<String>) {
    modify(state, key, |v| {
        let Some(refs) = v
            .pointer_mut("/metadata/ownerReferences")
            .and_then(Value::as_array_mut)
        else {
            return false;
        };
        let before = refs.len();
        refs.retain(|r| {
            !r.get("uid")
                .and_then(Value::as_str)
                .is_some_and(|u| gone.contains(u))
        });
        if refs.is_empty() {
            object::metadata_mut(v).remove("ownerReferences");
        }
        before
            != v.pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .map_or(0, Vec::len)
    })
    .await;
}

async fn remove_finalizer(state: &State, key: &str, finalizer: &str) {
    modify(state, key, |v| {
        let mut f = object::finalizers(v);
        let before = f.len();
        f.retain(|x| x != finalizer);
        object::set_finalizers(v, &f);
        f.len() != before
    })
    .await;
}

/// Removes the namespace once it is empty: its `kubernetes` finalizer is done.
async fn finalize_namespace(state: &State, key: &str) {
    let Some(cur) = state.store.get(key) else {
        return;
    };
    let v = object::parse(&cur.value);
    if !object::finalizers(&v).is_empty() {
        return;
    }
    match state.store.delete(key, Some(cur.rv)).await {
        Ok(_) => {}
        Err(e) => tracing::debug!(key, error = %e, "namespace finalization failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(uid: &str, ns: &str, owners: &[&str]) -> Value {
        let refs: Vec<Value> = owners
            .iter()
            .map(|o| json!({"uid": o, "kind": "ReplicaSet", "name": "rs", "apiVersion": "apps/v1"}))
            .collect();
        json!({"metadata": {"uid": uid, "namespace": ns, "name": uid, "ownerReferences": refs}})
    }

    #[test]
    fn index_tracks_dependents_and_marks_them_when_the_owner_goes() {
        let mut ix = Index::default();
        ix.observe(
            "/registry/apps/replicasets/default/rs",
            Some(&obj("rs", "default", &[])),
        );
        ix.observe(
            "/registry/core/pods/default/p1",
            Some(&obj("p1", "default", &["rs"])),
        );
        assert!(ix.dependents["rs"].contains("p1"));
        let dirty = ix.observe("/registry/apps/replicasets/default/rs", None);
        assert!(dirty.contains(&"p1".to_string()));
        assert!(!ix.nodes.contains_key("rs"));
        assert_eq!(
            info_of_key("/registry/core/pods/default/p1")
                .unwrap()
                .plural,
            "pods"
        );
        assert_eq!(
            info_of_key("/registry/apps/replicasets/default/rs")
                .unwrap()
                .kind,
            "ReplicaSet"
        );
    }
}
