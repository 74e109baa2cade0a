//! The storage IPAM needs: five operations on whole API objects with compare-and-swap semantics,
//! the subset of the Kubernetes API that Calico's KDD backend uses (get, list, create, update with
//! `metadata.resourceVersion` as precondition, delete with a resourceVersion precondition).
//!
//! The node agent implements [`Datastore`] against the API server (`crd.projectcalico.org/v1`,
//! [`Kind::plural`] gives the resource); [`MemoryDatastore`] is the in-process implementation used
//! by tests and by anything that wants IPAM without a server.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::model::{Kind, object_name, resource_version};

/// Why a datastore operation failed. `NotFound`, `AlreadyExists` and `Conflict` are the expected
/// outcomes of racing writers and drive IPAM's retry loops.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} {name:?} not found")]
    NotFound { kind: &'static str, name: String },
    #[error("{kind} {name:?} already exists")]
    AlreadyExists { kind: &'static str, name: String },
    #[error("{kind} {name:?} was modified concurrently (stale resourceVersion)")]
    Conflict { kind: &'static str, name: String },
    #[error("invalid object: {0}")]
    Invalid(String),
    #[error("datastore unavailable: {0}")]
    Unavailable(String),
}

/// Object storage with optimistic concurrency. Objects are full API objects
/// (`apiVersion`, `kind`, `metadata`, `spec`); the name is `metadata.name`.
pub trait Datastore: Send + Sync {
    /// The object, or `None` if it does not exist.
    fn get(&self, kind: Kind, name: &str) -> Result<Option<Value>, StoreError>;
    /// All objects of a kind, ordered by name (as the API server lists them).
    fn list(&self, kind: Kind) -> Result<Vec<Value>, StoreError>;
    /// Creates the object; `AlreadyExists` if the name is taken. Returns it as stored.
    fn create(&self, kind: Kind, object: Value) -> Result<Value, StoreError>;
    /// Replaces the object if its `metadata.resourceVersion` is still current, else `Conflict`
    /// (`NotFound` if it is gone). Returns it as stored, with a new resourceVersion.
    fn update(&self, kind: Kind, object: Value) -> Result<Value, StoreError>;
    /// Deletes the object if `resource_version` is still current, else `Conflict`.
    fn delete(&self, kind: Kind, name: &str, resource_version: &str) -> Result<(), StoreError>;
}

impl<D: Datastore + ?Sized> Datastore for Arc<D> {
    fn get(&self, kind: Kind, name: &str) -> Result<Option<Value>, StoreError> {
        (**self).get(kind, name)
    }
    fn list(&self, kind: Kind) -> Result<Vec<Value>, StoreError> {
        (**self).list(kind)
    }
    fn create(&self, kind: Kind, object: Value) -> Result<Value, StoreError> {
        (**self).create(kind, object)
    }
    fn update(&self, kind: Kind, object: Value) -> Result<Value, StoreError> {
        (**self).update(kind, object)
    }
    fn delete(&self, kind: Kind, name: &str, resource_version: &str) -> Result<(), StoreError> {
        (**self).delete(kind, name, resource_version)
    }
}

/// In-memory [`Datastore`]: one mutex over a sorted map, resourceVersions from a global counter
/// like etcd revisions.
#[derive(Debug, Default)]
pub struct MemoryDatastore {
    state: Mutex<MemoryState>,
}

#[derive(Debug, Default)]
struct MemoryState {
    last_revision: u64,
    objects: BTreeMap<(Kind, String), Value>,
}

fn name_of(kind: Kind, object: &Value) -> Result<String, StoreError> {
    object_name(object)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .ok_or_else(|| StoreError::Invalid(format!("{} without metadata.name", kind.as_str())))
}

fn set_resource_version(object: &mut Value, revision: u64) -> Result<(), StoreError> {
    let metadata = object
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| StoreError::Invalid("object without metadata".to_string()))?;
    metadata.insert(
        "resourceVersion".to_string(),
        Value::String(revision.to_string()),
    );
    Ok(())
}

impl MemoryDatastore {
    pub fn new() -> MemoryDatastore {
        MemoryDatastore::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, MemoryState>, StoreError> {
        self.state
            .lock()
            .map_err(|_| StoreError::Unavailable("memory datastore lock poisoned".to_string()))
    }
}

impl Datastore for MemoryDatastore {
    fn get(&self, kind: Kind, name: &str) -> Result<Option<Value>, StoreError> {
        Ok(self.lock()?.objects.get(&(kind, name.to_string())).cloned())
    }

    fn list(&self, kind: Kind) -> Result<Vec<Value>, StoreError> {
        let state = self.lock()?;
        Ok(state
            .objects
            .range((kind, String::new())..)
            .take_while(|((k, _), _)| *k == kind)
            .map(|(_, v)| v.clone())
            .collect())
    }

    fn create(&self, kind: Kind, mut object: Value) -> Result<Value, StoreError> {
        let name = name_of(kind, &object)?;
        let mut state = self.lock()?;
        if state.objects.contains_key(&(kind, name.clone())) {
            return Err(StoreError::AlreadyExists {
                kind: kind.as_str(),
                name,
            });
        }
        state.last_revision += 1;
        set_resource_version(&mut object, state.last_revision)?;
        state.objects.insert((kind, name), object.clone());
        Ok(object)
    }

    fn update(&self, kind: Kind, mut object: Value) -> Result<Value, StoreError> {
        let name = name_of(kind, &object)?;
        let mut state = self.lock()?;
        let current =
            state
                .objects
                .get(&(kind, name.clone()))
                .ok_or_else(|| StoreError::NotFound {
                    kind: kind.as_str(),
                    name: name.clone(),
                })?;
        if resource_version(current) != resource_version(&object) {
            return Err(StoreError::Conflict {
                kind: kind.as_str(),
                name,
            });
        }
        state.last_revision += 1;
        set_resource_version(&mut object, state.last_revision)?;
        state.objects.insert((kind, name), object.clone());
        Ok(object)
    }

    fn delete(&self, kind: Kind, name: &str, version: &str) -> Result<(), StoreError> {
        let mut state = self.lock()?;
        let key = (kind, name.to_string());
        let current = state
            .objects
            .get(&key)
            .ok_or_else(|| StoreError::NotFound {
                kind: kind.as_str(),
                name: name.to_string(),
            })?;
        if resource_version(current) != Some(version) {
            return Err(StoreError::Conflict {
                kind: kind.as_str(),
                name: name.to_string(),
            });
        }
        state.objects.remove(&key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(name: &str) -> Value {
        json!({"metadata": {"name": name}, "spec": {"x": 1}})
    }

    #[test]
    fn compare_and_swap() {
        let store = MemoryDatastore::new();
        let created = store.create(Kind::IpamHandle, object("h")).unwrap();
        assert!(matches!(
            store.create(Kind::IpamHandle, object("h")),
            Err(StoreError::AlreadyExists { .. })
        ));
        let updated = store.update(Kind::IpamHandle, created.clone()).unwrap();
        assert!(matches!(
            store.update(Kind::IpamHandle, created.clone()),
            Err(StoreError::Conflict { .. })
        ));
        let stale = resource_version(&created).unwrap();
        assert!(matches!(
            store.delete(Kind::IpamHandle, "h", stale),
            Err(StoreError::Conflict { .. })
        ));
        store
            .delete(Kind::IpamHandle, "h", resource_version(&updated).unwrap())
            .unwrap();
        assert_eq!(store.get(Kind::IpamHandle, "h").unwrap(), None);
        assert!(matches!(
            store.update(Kind::IpamHandle, updated),
            Err(StoreError::NotFound { .. })
        ));
    }

    #[test]
    fn list_is_per_kind_and_sorted() {
        let store = MemoryDatastore::new();
        store.create(Kind::IpamBlock, object("b")).unwrap();
        store.create(Kind::IpamBlock, object("a")).unwrap();
        store.create(Kind::IpamHandle, object("c")).unwrap();
        let names: Vec<String> = store
            .list(Kind::IpamBlock)
            .unwrap()
            .iter()
            .map(|o| object_name(o).unwrap().to_string())
            .collect();
        assert_eq!(names, ["a", "b"]);
    }
}
