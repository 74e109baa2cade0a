//! [`ipam::Datastore`] over the API server: IPPools, IPAMBlocks, BlockAffinities and IPAMHandles
//! as cluster-scoped `crd.projectcalico.org/v1` objects, the way Calico's Kubernetes datastore
//! keeps them, with the API server's resourceVersion as the compare-and-swap token.
//!
//! The trait is synchronous (the IPAM core does no I/O of its own), so each call blocks the
//! calling thread on the async client. **Call it only from a blocking thread**
//! (`tokio::task::spawn_blocking`) or a thread outside the runtime, never from an async task,
//! which would tie up a runtime worker while it waits.

use ipam::{Datastore, Kind, StoreError};
use kube::Client;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, PostParams, Preconditions,
};
use serde_json::Value;
use tokio::runtime::Handle;

/// The API group of Calico's IPAM objects.
pub const GROUP: &str = "crd.projectcalico.org";

/// IPAM storage in the API server, for use from blocking threads.
#[derive(Clone)]
pub struct ApiDatastore {
    client: Client,
    runtime: Handle,
}

impl ApiDatastore {
    /// A datastore whose calls run on `runtime` (the client's runtime).
    pub fn new(client: Client, runtime: Handle) -> ApiDatastore {
        ApiDatastore { client, runtime }
    }

    fn api(&self, kind: Kind) -> Api<DynamicObject> {
        let resource = ApiResource {
            group: GROUP.into(),
            version: "v1".into(),
            api_version: ipam::model::API_VERSION.into(),
            kind: kind.as_str().into(),
            plural: kind.plural().into(),
        };
        Api::all_with(self.client.clone(), &resource)
    }

    /// Runs `f` on the client's runtime and waits for it on this thread. Spawning (rather than
    /// `Handle::block_on`) cannot panic when called inside a runtime; it only must not be
    /// called from every worker of a runtime at once, hence the spawn_blocking rule above.
    fn block_on<F>(&self, f: F) -> Result<F::Output, StoreError>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        futures::executor::block_on(self.runtime.spawn(f))
            .map_err(|e| StoreError::Unavailable(format!("API request task failed: {e}")))
    }
}

fn to_object(kind: Kind, value: Value) -> Result<DynamicObject, StoreError> {
    serde_json::from_value(value)
        .map_err(|e| StoreError::Invalid(format!("{}: {e}", kind.as_str())))
}

fn to_value(kind: Kind, object: &DynamicObject) -> Result<Value, StoreError> {
    serde_json::to_value(object).map_err(|e| StoreError::Invalid(format!("{}: {e}", kind.as_str())))
}

fn object_name(kind: Kind, value: &Value) -> Result<String, StoreError> {
    value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .ok_or_else(|| StoreError::Invalid(format!("{} without metadata.name", kind.as_str())))
}

/// Maps an API error to the datastore's vocabulary: 404, 409 and the conflict on a stale
/// resourceVersion drive IPAM's retries; everything else is "unavailable".
fn store_error(kind: Kind, name: &str, error: kube::Error, on_conflict: Conflict) -> StoreError {
    let kind_str = kind.as_str();
    let name = name.to_string();
    match &error {
        kube::Error::Api(status) if status.code == 404 => StoreError::NotFound {
            kind: kind_str,
            name,
        },
        kube::Error::Api(status) if status.code == 409 => match on_conflict {
            Conflict::AlreadyExists if status.reason == "AlreadyExists" => {
                StoreError::AlreadyExists {
                    kind: kind_str,
                    name,
                }
            }
            _ => StoreError::Conflict {
                kind: kind_str,
                name,
            },
        },
        kube::Error::Api(status) if status.code == 422 || status.code == 400 => {
            StoreError::Invalid(status.message.clone())
        }
        _ => StoreError::Unavailable(error.to_string()),
    }
}

#[derive(Clone, Copy)]
enum Conflict {
    AlreadyExists,
    Stale,
}

impl Datastore for ApiDatastore {
    fn get(&self, kind: Kind, name: &str) -> Result<Option<Value>, StoreError> {
        let api = self.api(kind);
        let owned = name.to_string();
        match self.block_on(async move { api.get_opt(&owned).await })? {
            Ok(Some(o)) => Ok(Some(to_value(kind, &o)?)),
            Ok(None) => Ok(None),
            Err(e) => Err(store_error(kind, name, e, Conflict::Stale)),
        }
    }

    fn list(&self, kind: Kind) -> Result<Vec<Value>, StoreError> {
        let api = self.api(kind);
        let list = self
            .block_on(async move { api.list(&ListParams::default()).await })?
            .map_err(|e| store_error(kind, "", e, Conflict::Stale))?;
        let mut values = list
            .items
            .iter()
            .map(|o| to_value(kind, o))
            .collect::<Result<Vec<_>, _>>()?;
        values.sort_by(|a, b| {
            let n = |v: &Value| {
                v.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            n(a).cmp(&n(b))
        });
        Ok(values)
    }

    fn create(&self, kind: Kind, object: Value) -> Result<Value, StoreError> {
        let name = object_name(kind, &object)?;
        let object = to_object(kind, object)?;
        let api = self.api(kind);
        match self.block_on(async move { api.create(&PostParams::default(), &object).await })? {
            Ok(o) => to_value(kind, &o),
            Err(e) => Err(store_error(kind, &name, e, Conflict::AlreadyExists)),
        }
    }

    fn update(&self, kind: Kind, object: Value) -> Result<Value, StoreError> {
        let name = object_name(kind, &object)?;
        if object.pointer("/metadata/resourceVersion").is_none() {
            // An update without a resourceVersion would be unconditional: not a CAS.
            return Err(StoreError::Invalid(format!(
                "{} {name:?} update without metadata.resourceVersion",
                kind.as_str()
            )));
        }
        let object = to_object(kind, object)?;
        let api = self.api(kind);
        let owned = name.clone();
        match self
            .block_on(async move { api.replace(&owned, &PostParams::default(), &object).await })?
        {
            Ok(o) => to_value(kind, &o),
            Err(e) => Err(store_error(kind, &name, e, Conflict::Stale)),
        }
    }

    fn delete(&self, kind: Kind, name: &str, resource_version: &str) -> Result<(), StoreError> {
        let api = self.api(kind);
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: Some(resource_version.to_string()),
                uid: None,
            }),
            ..Default::default()
        };
        let owned = name.to_string();
        match self.block_on(async move { api.delete(&owned, &params).await })? {
            Ok(_) => Ok(()),
            Err(e) => Err(store_error(kind, name, e, Conflict::Stale)),
        }
    }
}
