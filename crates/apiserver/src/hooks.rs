//! What happens right after a write, in-process, where upstream runs a small controller:
//! a new namespace gets its `default` ServiceAccount and `kube-root-ca.crt` ConfigMap
//! (serviceaccount and root-ca-cert-publisher controllers), and a deleted Service frees its
//! ClusterIP and NodePorts.

use crate::registry::{self, ResourceInfo};
use crate::server::State;
use crate::{object, rest, services};
use futures::future::BoxFuture;
use serde_json::{Value, json};

/// Runs after an object was created, given its stored bytes (parsed only by the resources
/// that need it: creates of other kinds pay nothing). Boxed because it creates objects itself.
pub fn after_create<'a>(
    state: &'a State,
    info: &'a ResourceInfo,
    stored: &'a [u8],
) -> BoxFuture<'a, ()> {
    Box::pin(async move {
        if info.group.is_empty() && info.plural == "namespaces" {
            let obj = object::parse(stored);
            populate_namespace(state, object::name(&obj)).await;
        }
    })
}

/// Runs after `obj` was removed from the store.
pub fn after_delete(state: &State, info: &ResourceInfo, obj: &Value) {
    if info.group.is_empty() && info.plural == "services" {
        services::release_service(state, obj);
    }
}

/// Creates the per-namespace objects every namespace has; existing ones are left alone.
pub async fn populate_namespace(state: &State, ns: &str) {
    let sa = registry::find("", "v1", "serviceaccounts").expect("served");
    let cm = registry::find("", "v1", "configmaps").expect("served");
    let wanted = [
        (
            sa,
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": ns}}),
        ),
        (
            cm,
            json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": "kube-root-ca.crt",
                    "namespace": ns,
                    "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."},
                },
                "data": {"ca.crt": state.pki.ca_cert_pem},
            }),
        ),
    ];
    for (info, obj) in wanted {
        if state
            .store
            .get(&object::key(info, Some(ns), object::name(&obj)))
            .is_some()
        {
            continue;
        }
        if let Err(e) = rest::create_object(state, info, obj, false).await
            && e.reason != "AlreadyExists"
        {
            tracing::warn!(namespace = ns, error = %e, "could not populate namespace");
        }
    }
}
