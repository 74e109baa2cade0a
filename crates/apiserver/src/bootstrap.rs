//! Objects every cluster has from its first second: the namespaces `default`, `kube-system`,
//! `kube-public` and `kube-node-lease` (each with its `default` ServiceAccount), and the
//! `kubernetes` Service at the first ClusterIP with Endpoints and an EndpointSlice pointing at
//! this API server — what kube-apiserver's own bootstrap controllers maintain.

use crate::registry::{self, ResourceInfo};
use crate::server::State;
use crate::{hooks, object, rest};
use apimachinery::ApiError;
use serde_json::{Value, json};
use std::net::IpAddr;

fn info(group: &str, plural: &str) -> &'static ResourceInfo {
    registry::find(group, "v1", plural).expect("bootstrap resources are served")
}

/// Creates `obj` unless it exists; replaces its spec-like content when it differs.
async fn ensure(
    state: &State,
    info: &ResourceInfo,
    obj: Value,
    fields: &[&str],
) -> Result<(), ApiError> {
    let k = object::key(info, object::namespace(&obj), object::name(&obj));
    match state.store.get(&k) {
        None => match rest::create_object(state, info, obj, false).await {
            Ok(_) => Ok(()),
            Err(e) if e.reason == "AlreadyExists" => Ok(()),
            Err(e) => Err(e),
        },
        Some(existing) => {
            let cur = object::parse(&existing.value);
            if fields.iter().all(|f| cur.get(*f) == obj.get(*f)) {
                return Ok(());
            }
            let mut new = cur.clone();
            for f in fields {
                if let Some(v) = obj.get(*f) {
                    new[*f] = v.clone();
                }
            }
            rest::update_object(
                state,
                info,
                &k,
                &existing,
                new,
                rest::Write::main_at(existing.rv),
            )
            .await?;
            Ok(())
        }
    }
}

pub async fn run(state: &State) -> Result<(), ApiError> {
    let ns = info("", "namespaces");
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        ensure(
            state,
            ns,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
            &[],
        )
        .await?;
        hooks::populate_namespace(state, name).await;
    }
    let address: IpAddr = state.config.advertise_address.unwrap_or_else(|| {
        let ip = state.config.listen.ip();
        if ip.is_unspecified() {
            IpAddr::from([127, 0, 0, 1])
        } else {
            ip
        }
    });
    let port = state.port;
    let cluster_ip = state
        .allocators
        .lock()
        .map_err(|_| ApiError::internal("allocator lock poisoned"))?
        .cluster_ips
        .nth(0)
        .to_string();
    let labels = json!({"component": "apiserver", "provider": "kubernetes"});
    let svc_info = info("", "services");
    let svc_key = object::key(svc_info, Some("default"), "kubernetes");
    if state.store.get(&svc_key).is_none() {
        let svc = json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": labels},
            "spec": {
                "type": "ClusterIP",
                "clusterIP": cluster_ip,
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
                "sessionAffinity": "None",
            },
        });
        match rest::create_object(state, svc_info, svc, false).await {
            Ok(_) => {}
            Err(e) if e.reason == "AlreadyExists" => {}
            Err(e) => return Err(e),
        }
    } else {
        let existing = state.store.get(&svc_key).expect("checked");
        let mut cur = object::parse(&existing.value);
        if cur.pointer("/spec/ports/0/targetPort") != Some(&json!(port)) {
            cur["spec"]["ports"] =
                json!([{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]);
            rest::update_object(
                state,
                svc_info,
                &svc_key,
                &existing,
                cur,
                rest::Write::main_at(existing.rv),
            )
            .await?;
        }
    }
    let endpoints = json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": address.to_string()}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
    });
    ensure(state, info("", "endpoints"), endpoints, &["subsets"]).await?;
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": if address.is_ipv4() { "IPv4" } else { "IPv6" },
        "endpoints": [{"addresses": [address.to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    });
    ensure(
        state,
        info("discovery.k8s.io", "endpointslices"),
        slice,
        &["endpoints", "ports"],
    )
    .await?;
    Ok(())
}
