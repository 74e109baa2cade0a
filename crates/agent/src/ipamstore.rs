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
use kube::api::{DeleteParams, GetParams, ListParams, PostParams, Preconditions};
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

    /// Requests for one kind. Objects travel as JSON values both ways, as the IPAM core keeps
    /// them: going through `DynamicObject` cost a parse and a serialisation per object, and an
    /// allocation lists every BlockAffinity of the cluster.
    fn request(kind: Kind) -> kube::core::Request {
        kube::core::Request::new(format!("/apis/{GROUP}/v1/{}", kind.plural()))
    }

    /// Sends `request` on the client's runtime and waits for its JSON answer on this thread.
    fn send(
        &self,
        request: Result<http::Request<Vec<u8>>, kube::core::request::Error>,
    ) -> Result<Result<Value, kube::Error>, StoreError> {
        let request = request.map_err(|e| StoreError::Invalid(e.to_string()))?;
        let client = self.client.clone();
        self.block_on(async move { client.request::<Value>(request).await })
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

fn body(kind: Kind, value: &Value) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Invalid(format!("{}: {e}", kind.as_str())))
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
        match self.send(Self::request(kind).get(name, &GetParams::default()))? {
            Ok(o) => Ok(Some(o)),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
            Err(e) => Err(store_error(kind, name, e, Conflict::Stale)),
        }
    }

    fn list(&self, kind: Kind) -> Result<Vec<Value>, StoreError> {
        let mut list = self
            .send(Self::request(kind).list(&ListParams::default()))?
            .map_err(|e| store_error(kind, "", e, Conflict::Stale))?;
        let mut values = match list.get_mut("items").map(Value::take) {
            Some(Value::Array(items)) => items,
            Some(Value::Null) | None => Vec::new(),
            Some(_) => {
                return Err(StoreError::Invalid(format!(
                    "{} list: items is not a list",
                    kind.as_str()
                )));
            }
        };
        let name = |v: &Value| {
            v.pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        values.sort_by_cached_key(name);
        Ok(values)
    }

    fn create(&self, kind: Kind, object: Value) -> Result<Value, StoreError> {
        let name = object_name(kind, &object)?;
        let data = body(kind, &object)?;
        match self.send(Self::request(kind).create(&PostParams::default(), data))? {
            Ok(o) => Ok(o),
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
        let data = body(kind, &object)?;
        match self.send(Self::request(kind).replace(&name, &PostParams::default(), data))? {
            Ok(o) => Ok(o),
            Err(e) => Err(store_error(kind, &name, e, Conflict::Stale)),
        }
    }

    fn delete(&self, kind: Kind, name: &str, resource_version: &str) -> Result<(), StoreError> {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: Some(resource_version.to_string()),
                uid: None,
            }),
            ..Default::default()
        };
        match self.send(Self::request(kind).delete(name, &params))? {
            Ok(_) => Ok(()),
            Err(e) => Err(store_error(kind, name, e, Conflict::Stale)),
        }
    }
}
