//! The smaller kinds: Namespace, ConfigMap, Secret, Endpoints, EndpointSlice, Node, Event and
//! Lease (ServiceAccount has no rules beyond metadata).

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::access::{array_at, at, child, index, int_at, key, str_at, str_or_empty};
use crate::errors::FieldError;
use crate::names::{
    is_config_map_key, is_dns1123_label, is_dns1123_subdomain, is_valid_label_value,
    is_valid_port_num,
};

use super::meta::{immutable, validate_kube_finalizers, validate_label_name};
use super::pod::validate_protocol;
use super::service::{validate_cidr, validate_ip};

/// Upstream's limit on the summed size of ConfigMap and Secret data (1 MiB).
pub const MAX_DATA_SIZE: usize = 1024 * 1024;

pub(crate) fn validate_namespace(ns: &Value) -> Vec<FieldError> {
    let finalizers: Vec<&str> = at(ns, &["spec", "finalizers"])
        .map(|f| array_at_value(f))
        .unwrap_or_default();
    validate_kube_finalizers(&finalizers, "spec.finalizers")
}

fn array_at_value(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn validate_data_keys(
    obj: &Value,
    field: &str,
    other: &str,
    values_size: impl Fn(&Value) -> usize,
) -> (Vec<FieldError>, usize) {
    let mut errs = Vec::new();
    let mut total = 0usize;
    let Some(map) = obj.get(field).and_then(Value::as_object) else {
        return (errs, 0);
    };
    let other_map = obj.get(other).and_then(Value::as_object);
    for (k, v) in map {
        let path = key(field, k);
        for msg in is_config_map_key(k) {
            errs.push(FieldError::invalid(&path, k.as_str(), msg));
        }
        if field == "data" && other_map.is_some_and(|o| o.contains_key(k)) {
            errs.push(FieldError::invalid(
                &path,
                k.as_str(),
                format!("duplicate of key present in {other}"),
            ));
        }
        total = total.saturating_add(values_size(v));
    }
    (errs, total)
}

pub(crate) fn validate_config_map(cm: &Value) -> Vec<FieldError> {
    let text_len = |v: &Value| v.as_str().map_or(0, str::len);
    // binaryData is base64 on the wire; upstream counts decoded bytes.
    let binary_len = |v: &Value| v.as_str().map_or(0, |s| s.len() / 4 * 3);
    let (mut errs, data_size) = validate_data_keys(cm, "data", "binaryData", text_len);
    let (binary_errs, binary_size) = validate_data_keys(cm, "binaryData", "data", binary_len);
    errs.extend(binary_errs);
    if data_size.saturating_add(binary_size) > MAX_DATA_SIZE {
        errs.push(FieldError::too_long("", MAX_DATA_SIZE));
    }
    errs
}

pub(crate) fn validate_secret(secret: &Value) -> Vec<FieldError> {
    let binary_len = |v: &Value| v.as_str().map_or(0, |s| s.len() / 4 * 3);
    let (mut errs, size) = validate_data_keys(secret, "data", "", binary_len);
    if size > MAX_DATA_SIZE {
        errs.push(FieldError::too_long("data", MAX_DATA_SIZE));
    }
    let has_data = |k: &str| at(secret, &["data", k]).is_some();
    let account_annotation = "kubernetes.io/service-account.name";
    let account =
        at(secret, &["metadata", "annotations", account_annotation]).and_then(Value::as_str);
    match str_or_empty(secret, "type") {
        "kubernetes.io/service-account-token" if account.unwrap_or("").is_empty() => {
            errs.push(FieldError::required(
                key("metadata.annotations", account_annotation),
                "",
            ));
        }
        "kubernetes.io/dockerconfigjson" if !has_data(".dockerconfigjson") => {
            errs.push(FieldError::required("data[.dockerconfigjson]", ""));
        }
        "kubernetes.io/tls" => {
            for k in ["tls.key", "tls.crt"] {
                if at(secret, &["data", k]).is_none() {
                    errs.push(FieldError::required(key("data", k), ""));
                }
            }
        }
        _ => {}
    }
    errs
}

pub(crate) fn validate_secret_update(new: &Value, old: &Value) -> Vec<FieldError> {
    immutable(new.get("type"), old.get("type"), "type")
        .into_iter()
        .collect()
}

/// ConfigMaps and Secrets marked `immutable: true` keep their data and the flag.
pub(crate) fn validate_immutable_data(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return errs;
    }
    if new.get("immutable").and_then(Value::as_bool) != Some(true) {
        errs.push(FieldError::forbidden(
            "immutable",
            "field is immutable when `immutable` is set",
        ));
    }
    for field in ["data", "binaryData", "stringData"] {
        let norm = |v: Option<&Value>| {
            v.filter(|x| !x.is_null() && x.as_object().is_none_or(|m| !m.is_empty()))
                .cloned()
        };
        if field != "stringData" && norm(new.get(field)) != norm(old.get(field)) {
            errs.push(FieldError::forbidden(
                field,
                "field is immutable when `immutable` is set",
            ));
        }
    }
    errs
}

pub(crate) fn validate_endpoints(ep: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, subset) in array_at(ep, "subsets").iter().enumerate() {
        let s_path = index("subsets", i);
        let addresses = array_at(subset, "addresses");
        let not_ready = array_at(subset, "notReadyAddresses");
        if addresses.is_empty() && not_ready.is_empty() {
            errs.push(FieldError::required(
                &s_path,
                "must specify `addresses` or `notReadyAddresses`",
            ));
        }
        for (field, list) in [("addresses", addresses), ("notReadyAddresses", not_ready)] {
            for (j, a) in list.iter().enumerate() {
                let a_path = index(&child(&s_path, field), j);
                errs.extend(validate_ip(str_or_empty(a, "ip"), &child(&a_path, "ip")));
                let hostname = str_or_empty(a, "hostname");
                if !hostname.is_empty() {
                    for msg in is_dns1123_label(hostname) {
                        errs.push(FieldError::invalid(
                            child(&a_path, "hostname"),
                            hostname,
                            msg,
                        ));
                    }
                }
                if let Some(node) = str_at(a, "nodeName").filter(|n| !n.is_empty()) {
                    for msg in is_dns1123_subdomain(node) {
                        errs.push(FieldError::invalid(child(&a_path, "nodeName"), node, msg));
                    }
                }
            }
        }
        let ports = array_at(subset, "ports");
        for (j, p) in ports.iter().enumerate() {
            let p_path = index(&child(&s_path, "ports"), j);
            errs.extend(validate_endpoint_port(p, ports.len() > 1, &p_path));
        }
    }
    errs
}

fn validate_endpoint_port(p: &Value, require_name: bool, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = str_or_empty(p, "name");
    if require_name && name.is_empty() {
        errs.push(FieldError::required(child(path, "name"), ""));
    } else if !name.is_empty() {
        for msg in is_dns1123_label(name) {
            errs.push(FieldError::invalid(child(path, "name"), name, msg));
        }
    }
    let port = int_at(p, "port").unwrap_or(0);
    for msg in is_valid_port_num(port) {
        errs.push(FieldError::invalid(child(path, "port"), port, msg));
    }
    errs.extend(validate_protocol(p, &child(path, "protocol")));
    errs
}

const MAX_SLICE_ENDPOINTS: usize = 1000;
const MAX_SLICE_PORTS: usize = 100;

pub(crate) fn validate_endpoint_slice(slice: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let address_type = str_or_empty(slice, "addressType");
    match address_type {
        "" => errs.push(FieldError::required("addressType", "")),
        "IPv4" | "IPv6" | "FQDN" => {}
        other => errs.push(FieldError::not_supported(
            "addressType",
            other,
            &["FQDN", "IPv4", "IPv6"],
        )),
    }
    let endpoints = array_at(slice, "endpoints");
    if endpoints.len() > MAX_SLICE_ENDPOINTS {
        errs.push(too_many("endpoints", endpoints.len(), MAX_SLICE_ENDPOINTS));
    }
    for (i, e) in endpoints.iter().enumerate() {
        let e_path = index("endpoints", i);
        let addresses = array_at(e, "addresses");
        let a_path = child(&e_path, "addresses");
        if addresses.is_empty() {
            errs.push(FieldError::required(
                &a_path,
                "must contain at least 1 address",
            ));
        } else if addresses.len() > 100 {
            errs.push(too_many(&a_path, addresses.len(), 100));
        }
        for (j, a) in addresses.iter().enumerate() {
            let a = a.as_str().unwrap_or("");
            let path = index(&a_path, j);
            match address_type {
                "IPv4" if a.parse::<std::net::Ipv4Addr>().is_err() => {
                    errs.push(FieldError::invalid(
                        &path,
                        a,
                        "must be a valid IPv4 address",
                    ));
                }
                "IPv6" if a.parse::<std::net::Ipv6Addr>().is_err() => {
                    errs.push(FieldError::invalid(
                        &path,
                        a,
                        "must be a valid IPv6 address",
                    ));
                }
                "FQDN" => {
                    for msg in is_dns1123_subdomain(a) {
                        errs.push(FieldError::invalid(&path, a, msg));
                    }
                }
                _ => {}
            }
        }
        if let Some(node) = str_at(e, "nodeName").filter(|n| !n.is_empty()) {
            for msg in is_dns1123_subdomain(node) {
                errs.push(FieldError::invalid(child(&e_path, "nodeName"), node, msg));
            }
        }
        if let Some(hostname) = str_at(e, "hostname") {
            for msg in is_dns1123_label(hostname) {
                errs.push(FieldError::invalid(
                    child(&e_path, "hostname"),
                    hostname,
                    msg,
                ));
            }
        }
    }
    let ports = array_at(slice, "ports");
    if ports.len() > MAX_SLICE_PORTS {
        errs.push(too_many("ports", ports.len(), MAX_SLICE_PORTS));
    }
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let p_path = index("ports", i);
        let name = str_or_empty(p, "name");
        if !name.is_empty() {
            for msg in is_dns1123_label(name) {
                errs.push(FieldError::invalid(child(&p_path, "name"), name, msg));
            }
        }
        if !names.insert(name.to_string()) {
            errs.push(FieldError::duplicate(child(&p_path, "name"), name));
        }
        if let Some(port) = int_at(p, "port") {
            for msg in is_valid_port_num(port) {
                errs.push(FieldError::invalid(child(&p_path, "port"), port, msg));
            }
        }
        errs.extend(validate_protocol(p, &child(&p_path, "protocol")));
    }
    errs
}

fn too_many(path: &str, actual: usize, max: usize) -> FieldError {
    FieldError::new(
        crate::errors::FieldErrorKind::TooMany,
        path,
        Some(Value::from(actual)),
        format!("must have at most {max} items"),
    )
}

pub(crate) fn validate_endpoint_slice_update(new: &Value, old: &Value) -> Vec<FieldError> {
    immutable(
        new.get("addressType"),
        old.get("addressType"),
        "addressType",
    )
    .into_iter()
    .collect()
}

pub(crate) fn validate_node(node: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let empty = Value::Object(Map::new());
    let spec = node.get("spec").filter(|s| s.is_object()).unwrap_or(&empty);
    let mut unique: HashSet<(String, String)> = HashSet::new();
    for (i, t) in array_at(spec, "taints").iter().enumerate() {
        // Upstream validates taints under this (wrong) path.
        let t_path = index("metadata.taints", i);
        let t_key = str_or_empty(t, "key");
        errs.extend(validate_label_name(t_key, &child(&t_path, "key")));
        let value = str_or_empty(t, "value");
        let msgs = is_valid_label_value(value);
        if !msgs.is_empty() {
            errs.push(FieldError::invalid(
                child(&t_path, "value"),
                value,
                msgs.join(";"),
            ));
        }
        let effect = str_or_empty(t, "effect");
        match effect {
            "" => errs.push(FieldError::required(child(&t_path, "effect"), "")),
            "NoSchedule" | "PreferNoSchedule" | "NoExecute" => {}
            other => errs.push(FieldError::not_supported(
                child(&t_path, "effect"),
                other,
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            )),
        }
        if !unique.insert((effect.to_string(), t_key.to_string())) {
            errs.push(
                FieldError::duplicate(&t_path, t.clone())
                    .with_detail("taints must be unique by key and effect pair")
                    .rendered_as(format!(
                        "core.Taint{{Key:{}, Value:{}, Effect:{}, TimeAdded:<nil>}}",
                        crate::errors::go_quote(t_key),
                        crate::errors::go_quote(value),
                        crate::errors::go_quote(effect)
                    )),
            );
        }
    }
    let cidrs = array_at(spec, "podCIDRs");
    for (i, c) in cidrs.iter().enumerate() {
        errs.extend(validate_cidr(
            c.as_str().unwrap_or(""),
            &index("spec.podCIDRs", i),
        ));
    }
    errs
}

pub(crate) fn validate_node_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let old_cidrs = at(old, &["spec", "podCIDRs"])
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty());
    if let Some(old_cidrs) = old_cidrs
        && at(new, &["spec", "podCIDRs"]).and_then(Value::as_array) != Some(old_cidrs)
    {
        errs.push(FieldError::forbidden(
            "spec.podCIDRs",
            "node updates may not change podCIDR except from \"\" to valid",
        ));
    }
    let old_provider = at(old, &["spec", "providerID"])
        .and_then(Value::as_str)
        .unwrap_or("");
    if !old_provider.is_empty()
        && at(new, &["spec", "providerID"])
            .and_then(Value::as_str)
            .unwrap_or("")
            != old_provider
    {
        errs.push(FieldError::forbidden(
            "spec.providerID",
            "node updates may not change providerID except from \"\" to valid",
        ));
    }
    errs
}

/// core/v1 Events: the involved object's namespace must agree with the Event's.
pub(crate) fn validate_event(event: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let namespace = at(event, &["metadata", "namespace"])
        .and_then(Value::as_str)
        .unwrap_or("");
    let involved_ns = at(event, &["involvedObject", "namespace"])
        .and_then(Value::as_str)
        .unwrap_or("");
    let agree = if involved_ns.is_empty() {
        namespace.is_empty() || namespace == "default"
    } else {
        namespace == involved_ns
    };
    if !agree {
        errs.push(FieldError::invalid(
            "involvedObject.namespace",
            involved_ns,
            "does not match event.namespace",
        ));
    }
    errs
}

pub(crate) fn validate_lease(lease: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let empty = Value::Object(Map::new());
    let spec = lease
        .get("spec")
        .filter(|s| s.is_object())
        .unwrap_or(&empty);
    if let Some(d) = int_at(spec, "leaseDurationSeconds")
        && d <= 0
    {
        errs.push(FieldError::invalid(
            "spec.leaseDurationSeconds",
            d,
            "must be greater than 0",
        ));
    }
    if let Some(t) = int_at(spec, "leaseTransitions")
        && t < 0
    {
        errs.push(FieldError::invalid(
            "spec.leaseTransitions",
            t,
            "must be greater than or equal to 0",
        ));
    }
    errs
}
