//! Create and update validation of the kinds kubelab serves, after upstream's
//! `pkg/apis/*/validation` and the registry strategies' `Validate`/`ValidateUpdate`: the same
//! field paths, the same checks in the same order, the same messages (bad values printed as Go
//! prints them). Input is the defaulted object as JSON ([`crate::defaults`] runs first); parts
//! of the wrong JSON type are skipped, since decoding rejects them separately.
//!
//! Approximations, all in rarely-hit corners: resource quantities, security contexts, affinity
//! and topology spread are not checked; the pod-update `Forbidden` message carries a compact
//! diff rather than go-cmp's; Go pointer addresses in struct renderings are not reproduced.

mod apps;
mod meta;
mod misc;
mod pod;
mod service;

use serde_json::Value;

use crate::errors::FieldError;
use crate::names::NameRule;

pub use meta::{validate_object_meta, validate_object_meta_update};
pub(crate) use pod::VOLUME_SOURCES;

/// Scope and name rule of each kind served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KindRules {
    pub namespaced: bool,
    pub name_rule: NameRule,
}

/// What the API server needs to know to validate `kind`'s metadata. Unknown kinds are treated
/// as namespaced with DNS-1123 subdomain names, the most common rule.
pub fn kind_rules(group: &str, kind: &str) -> KindRules {
    let (namespaced, name_rule) = match (group, kind) {
        ("", "Namespace") => (false, NameRule::Dns1123Label),
        ("", "Node") => (false, NameRule::Dns1123Subdomain),
        ("", "Service") => (true, NameRule::Dns1035Label),
        // Calico's IPAM kinds are cluster-scoped custom resources.
        ("crd.projectcalico.org", _) => (false, NameRule::Dns1123Subdomain),
        _ => (true, NameRule::Dns1123Subdomain),
    };
    KindRules {
        namespaced,
        name_rule,
    }
}

/// Validation of a new object (upstream's `Validate` of the kind's strategy plus the generic
/// metadata checks). Expects defaults, [`crate::defaults::prepare_for_create`] and name
/// generation (`names::generate_name`) to have run, as upstream's `BeforeCreate` orders them.
pub fn validate_create(group: &str, kind: &str, obj: &Value) -> Vec<FieldError> {
    let rules = kind_rules(group, kind);
    let mut errs = validate_object_meta(obj, rules.namespaced, rules.name_rule, "metadata");
    match (group, kind) {
        ("", "Pod") => errs.extend(pod::validate_pod_create(obj)),
        ("", "Service") => errs.extend(service::validate_service(obj)),
        ("", "Namespace") => errs.extend(misc::validate_namespace(obj)),
        ("", "ConfigMap") => errs.extend(misc::validate_config_map(obj)),
        ("", "Secret") => errs.extend(misc::validate_secret(obj)),
        ("", "Endpoints") => errs.extend(misc::validate_endpoints(obj)),
        ("", "Node") => errs.extend(misc::validate_node(obj)),
        ("", "Event") => errs.extend(misc::validate_event(obj)),
        ("apps", "Deployment") => errs.extend(apps::validate_deployment_spec(obj)),
        ("apps", "ReplicaSet") => errs.extend(apps::validate_replica_set_spec(obj)),
        ("apps", "DaemonSet") => errs.extend(apps::validate_daemon_set_spec(obj)),
        ("discovery.k8s.io", "EndpointSlice") => errs.extend(misc::validate_endpoint_slice(obj)),
        ("coordination.k8s.io", "Lease") => errs.extend(misc::validate_lease(obj)),
        // ServiceAccount: metadata only.
        _ => {}
    }
    errs
}

/// Validation of an update (upstream's `ValidateUpdate`): metadata immutability, the kind's
/// update rules, then the new object's own validity. Expects defaults and
/// [`crate::defaults::prepare_for_update`] to have run on `new`.
pub fn validate_update(group: &str, kind: &str, new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(new, old, "metadata");
    match (group, kind) {
        ("", "Pod") => errs.extend(pod::validate_pod_update(new, old)),
        ("", "Service") => {
            errs.extend(service::validate_service_update(new, old));
            errs.extend(service::validate_service(new));
        }
        ("", "Namespace") => errs.extend(misc::validate_namespace(new)),
        ("", "ConfigMap") => {
            errs.extend(misc::validate_immutable_data(new, old));
            errs.extend(misc::validate_config_map(new));
        }
        ("", "Secret") => {
            errs.extend(misc::validate_secret_update(new, old));
            errs.extend(misc::validate_immutable_data(new, old));
            errs.extend(misc::validate_secret(new));
        }
        ("", "Endpoints") => errs.extend(misc::validate_endpoints(new)),
        ("", "Node") => {
            errs.extend(misc::validate_node(new));
            errs.extend(misc::validate_node_update(new, old));
        }
        ("", "Event") => errs.extend(misc::validate_event(new)),
        ("apps", "Deployment") => {
            errs.extend(apps::validate_deployment_spec(new));
            errs.extend(apps::validate_selector_unchanged(new, old));
        }
        ("apps", "ReplicaSet") => {
            errs.extend(apps::validate_replica_set_spec(new));
            errs.extend(apps::validate_selector_unchanged(new, old));
        }
        ("apps", "DaemonSet") => {
            errs.extend(apps::validate_daemon_set_spec(new));
            errs.extend(apps::validate_selector_unchanged(new, old));
        }
        ("discovery.k8s.io", "EndpointSlice") => {
            errs.extend(misc::validate_endpoint_slice(new));
            errs.extend(misc::validate_endpoint_slice_update(new, old));
        }
        ("coordination.k8s.io", "Lease") => errs.extend(misc::validate_lease(new)),
        _ => {}
    }
    errs
}

/// The node-port allocator's refusal for a port outside the cluster's range (checked where
/// the range is known, after validation), e.g. `spec.ports[0].nodePort: Invalid value: 80:
/// provided port is not in the valid range. The range of valid ports is 30000-32767`.
pub fn validate_node_port_range(service: &Value, low: i64, high: i64) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let ports = service
        .get("spec")
        .map(|s| crate::access::array_at(s, "ports"))
        .unwrap_or(&[]);
    for (i, p) in ports.iter().enumerate() {
        if let Some(node_port) = crate::access::int_at(p, "nodePort")
            && node_port != 0
            && !(low..=high).contains(&node_port)
        {
            errs.push(FieldError::invalid(
                format!("spec.ports[{i}].nodePort"),
                node_port,
                format!("provided port is not in the valid range. The range of valid ports is {low}-{high}"),
            ));
        }
    }
    errs
}

#[cfg(test)]
mod tests;
