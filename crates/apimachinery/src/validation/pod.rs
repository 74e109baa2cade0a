//! Pod and pod-template validation (`ValidatePodSpec` and friends in core validation), and the
//! rules for updating a running Pod.

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::access::{array_at, at, child, index, int_at, str_at, str_or_empty};
use crate::errors::FieldError;
use crate::gosyntax;
use crate::names::{
    NameRule, inclusive_range_error, is_dns1123_label, is_env_var_name, is_valid_label_value,
    is_valid_port_name, is_valid_port_num,
};

use super::meta::{validate_annotations, validate_label_name, validate_labels};

/// Whether the spec belongs to a Pod (stricter) or to a template inside a controller.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum SpecOwner {
    Pod,
    Template,
}

/// The `Volume` source fields (one of them must be set); defaulting uses the same list.
pub(crate) const VOLUME_SOURCES: &[&str] = &[
    "hostPath",
    "emptyDir",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
];

fn dns_label_errors(value: &str, path: &str) -> Vec<FieldError> {
    is_dns1123_label(value)
        .into_iter()
        .map(|m| FieldError::invalid(path, value, m))
        .collect()
}

/// Pod create: metadata is done by the caller; here the spec plus the Pod-only container rules.
pub(crate) fn validate_pod_create(pod: &Value) -> Vec<FieldError> {
    let empty = Value::Object(Map::new());
    let spec = pod.get("spec").filter(|s| s.is_object()).unwrap_or(&empty);
    let mut errs = validate_pod_spec(spec, "spec", SpecOwner::Pod);
    for list in ["containers", "initContainers"] {
        let list_path = child("spec", list);
        for (i, c) in array_at(spec, list).iter().enumerate() {
            let image = str_or_empty(c, "image");
            if image.trim() != image {
                errs.push(FieldError::invalid(
                    child(&index(&list_path, i), "image"),
                    image,
                    "must not have leading or trailing whitespace",
                ));
            }
        }
    }
    if !array_at(spec, "ephemeralContainers").is_empty() {
        errs.push(FieldError::forbidden(
            "spec.ephemeralContainers",
            "cannot be set on create",
        ));
    }
    errs
}

/// `ValidatePodTemplateSpec` at `path` (`spec.template`).
pub(crate) fn validate_pod_template(template: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let meta = template.get("metadata");
    let meta_path = child(path, "metadata");
    errs.extend(validate_labels(
        meta.and_then(|m| m.get("labels")),
        &child(&meta_path, "labels"),
    ));
    errs.extend(validate_annotations(
        meta.and_then(|m| m.get("annotations")),
        &child(&meta_path, "annotations"),
    ));
    let empty = Value::Object(Map::new());
    let spec = template
        .get("spec")
        .filter(|s| s.is_object())
        .unwrap_or(&empty);
    errs.extend(validate_pod_spec(
        spec,
        &child(path, "spec"),
        SpecOwner::Template,
    ));
    if !array_at(spec, "ephemeralContainers").is_empty() {
        errs.push(FieldError::forbidden(
            child(&child(path, "spec"), "ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        ));
    }
    errs
}

/// `ValidatePodSpec`, in upstream's order.
pub(crate) fn validate_pod_spec(spec: &Value, path: &str, owner: SpecOwner) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let volumes = validate_volumes(spec, &child(path, "volumes"), &mut errs);
    errs.extend(validate_containers(spec, &volumes, path));
    errs.extend(validate_init_containers(spec, &volumes, path));
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        errs.extend(validate_host_network_ports(spec, path, owner));
    }
    errs.extend(validate_restart_policy(
        spec.get("restartPolicy"),
        &child(path, "restartPolicy"),
    ));
    errs.extend(validate_dns_policy(
        spec.get("dnsPolicy"),
        &child(path, "dnsPolicy"),
    ));
    errs.extend(validate_labels(
        spec.get("nodeSelector"),
        &child(path, "nodeSelector"),
    ));
    if let Some(dns_config) = spec.get("dnsConfig").filter(|d| d.is_object()) {
        if str_at(spec, "dnsPolicy") == Some("None")
            && array_at(dns_config, "nameservers").is_empty()
        {
            errs.push(FieldError::required(
                child(&child(path, "dnsConfig"), "nameservers"),
                "must provide at least one DNS nameserver when `dnsPolicy` is None",
            ));
        }
    } else if str_at(spec, "dnsPolicy") == Some("None") {
        errs.push(FieldError::required(
            child(path, "dnsConfig"),
            "must provide `dnsConfig` when `dnsPolicy` is None",
        ));
    }
    for (field, rule) in [
        ("serviceAccountName", NameRule::Dns1123Subdomain),
        ("nodeName", NameRule::Dns1123Subdomain),
    ] {
        let value = str_or_empty(spec, field);
        if !value.is_empty() {
            for msg in rule.check(value, false) {
                errs.push(FieldError::invalid(child(path, field), value, msg));
            }
        }
    }
    if let Some(deadline) = int_at(spec, "activeDeadlineSeconds")
        && !(1..=i64::from(i32::MAX)).contains(&deadline)
    {
        errs.push(FieldError::invalid(
            child(path, "activeDeadlineSeconds"),
            deadline,
            inclusive_range_error(1, i64::from(i32::MAX)),
        ));
    }
    for field in ["hostname", "subdomain"] {
        let value = str_or_empty(spec, field);
        if !value.is_empty() {
            errs.extend(dns_label_errors(value, &child(path, field)));
        }
    }
    errs.extend(validate_tolerations(
        array_at(spec, "tolerations"),
        &child(path, "tolerations"),
    ));
    let class = str_or_empty(spec, "priorityClassName");
    if !class.is_empty() {
        for msg in NameRule::Dns1123Subdomain.check(class, false) {
            errs.push(FieldError::invalid(
                child(path, "priorityClassName"),
                class,
                msg,
            ));
        }
    }
    if let Some(policy) = str_at(spec, "preemptionPolicy") {
        let p = child(path, "preemptionPolicy");
        match policy {
            "PreemptLowerPriority" | "Never" => {}
            "" => errs.push(FieldError::required(p, "")),
            other => errs.push(FieldError::not_supported(
                p,
                other,
                &["PreemptLowerPriority", "Never"],
            )),
        }
    }
    errs
}

fn validate_volumes(spec: &Value, path: &str, errs: &mut Vec<FieldError>) -> HashSet<String> {
    let mut names = HashSet::new();
    for (i, vol) in array_at(spec, "volumes").iter().enumerate() {
        let vol_path = index(path, i);
        let mut local = Vec::new();
        let mut sources = 0;
        for source in VOLUME_SOURCES {
            if vol.get(*source).is_some_and(|s| !s.is_null()) {
                sources += 1;
                if sources > 1 {
                    local.push(FieldError::forbidden(
                        child(&vol_path, source),
                        "may not specify more than 1 volume type",
                    ));
                }
            }
        }
        if sources == 0 {
            local.push(FieldError::required(
                &vol_path,
                "must specify a volume type",
            ));
        }
        let name = str_or_empty(vol, "name");
        let name_path = child(&vol_path, "name");
        if name.is_empty() {
            local.push(FieldError::required(&name_path, ""));
        } else {
            local.extend(dns_label_errors(name, &name_path));
        }
        if names.contains(name) {
            local.push(FieldError::duplicate(&name_path, name));
        }
        if local.is_empty() {
            names.insert(name.to_string());
        } else {
            errs.extend(local);
        }
    }
    names
}

/// Checks every container kind shares (`validateContainerCommon`).
fn validate_container_common(c: &Value, volumes: &HashSet<String>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = str_or_empty(c, "name");
    let name_path = child(path, "name");
    if name.is_empty() {
        errs.push(FieldError::required(&name_path, ""));
    } else {
        errs.extend(dns_label_errors(name, &name_path));
    }
    if str_or_empty(c, "image").is_empty() {
        errs.push(FieldError::required(child(path, "image"), ""));
    }
    let tmp = child(path, "terminationMessagePolicy");
    match str_or_empty(c, "terminationMessagePolicy") {
        "File" | "FallbackToLogsOnError" => {}
        "" => errs.push(FieldError::required(&tmp, "")),
        other => errs.push(FieldError::not_supported(
            &tmp,
            other,
            &["File", "FallbackToLogsOnError"],
        )),
    }
    errs.extend(validate_container_ports(
        array_at(c, "ports"),
        &child(path, "ports"),
    ));
    for (i, env) in array_at(c, "env").iter().enumerate() {
        let env_name = str_or_empty(env, "name");
        let env_path = child(&index(&child(path, "env"), i), "name");
        if env_name.is_empty() {
            errs.push(FieldError::required(&env_path, ""));
        } else {
            for msg in is_env_var_name(env_name) {
                errs.push(FieldError::invalid(&env_path, env_name, msg));
            }
        }
    }
    let mut mount_points = HashSet::new();
    for (i, m) in array_at(c, "volumeMounts").iter().enumerate() {
        let m_path = index(&child(path, "volumeMounts"), i);
        let mount_name = str_or_empty(m, "name");
        if mount_name.is_empty() {
            errs.push(FieldError::required(child(&m_path, "name"), ""));
        }
        if !volumes.contains(mount_name) {
            errs.push(FieldError::not_found(child(&m_path, "name"), mount_name));
        }
        let mount_path = str_or_empty(m, "mountPath");
        if mount_path.is_empty() {
            errs.push(FieldError::required(child(&m_path, "mountPath"), ""));
        }
        if !mount_points.insert(mount_path.to_string()) {
            errs.push(FieldError::invalid(
                child(&m_path, "mountPath"),
                mount_path,
                "must be unique",
            ));
        }
    }
    let pull = child(path, "imagePullPolicy");
    match str_or_empty(c, "imagePullPolicy") {
        "Always" | "IfNotPresent" | "Never" => {}
        "" => errs.push(FieldError::required(&pull, "")),
        other => errs.push(FieldError::not_supported(
            &pull,
            other,
            &["Always", "IfNotPresent", "Never"],
        )),
    }
    errs
}

fn validate_container_ports(ports: &[Value], path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let p_path = index(path, i);
        let name = str_or_empty(p, "name");
        if !name.is_empty() {
            let msgs = is_valid_port_name(name);
            if !msgs.is_empty() {
                for msg in msgs {
                    errs.push(FieldError::invalid(child(&p_path, "name"), name, msg));
                }
            } else if !names.insert(name.to_string()) {
                errs.push(FieldError::duplicate(child(&p_path, "name"), name));
            }
        }
        let container_port = int_at(p, "containerPort").unwrap_or(0);
        if container_port == 0 {
            errs.push(FieldError::required(child(&p_path, "containerPort"), ""));
        } else {
            for msg in is_valid_port_num(container_port) {
                errs.push(FieldError::invalid(
                    child(&p_path, "containerPort"),
                    container_port,
                    msg,
                ));
            }
        }
        let host_port = int_at(p, "hostPort").unwrap_or(0);
        if host_port != 0 {
            for msg in is_valid_port_num(host_port) {
                errs.push(FieldError::invalid(
                    child(&p_path, "hostPort"),
                    host_port,
                    msg,
                ));
            }
        }
        errs.extend(validate_protocol(p, &child(&p_path, "protocol")));
    }
    errs
}

/// Required, then one of SCTP/TCP/UDP (sorted, as upstream lists a set).
pub(crate) fn validate_protocol(port: &Value, path: &str) -> Option<FieldError> {
    match str_or_empty(port, "protocol") {
        "TCP" | "UDP" | "SCTP" => None,
        "" => Some(FieldError::required(path, "")),
        other => Some(FieldError::not_supported(
            path,
            other,
            &["SCTP", "TCP", "UDP"],
        )),
    }
}

fn validate_probe(probe: Option<&Value>, path: &str, liveness: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(probe) = probe.filter(|p| p.is_object()) else {
        return errs;
    };
    let mut handlers = 0;
    for handler in ["exec", "httpGet", "tcpSocket", "grpc"] {
        let Some(h) = probe.get(handler).filter(|h| !h.is_null()) else {
            continue;
        };
        if handlers > 0 {
            errs.push(FieldError::forbidden(
                child(path, handler),
                "may not specify more than 1 handler type",
            ));
            continue;
        }
        handlers += 1;
        match handler {
            "exec" if array_at(h, "command").is_empty() => errs.push(FieldError::required(
                child(&child(path, handler), "command"),
                "",
            )),
            "httpGet" | "tcpSocket" => errs.extend(validate_port_num_or_name(
                h.get("port"),
                &child(&child(path, handler), "port"),
            )),
            _ => {}
        }
    }
    if handlers == 0 {
        errs.push(FieldError::required(path, "must specify a handler type"));
    }
    for field in [
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ] {
        if let Some(v) = int_at(probe, field)
            && v < 0
        {
            errs.push(FieldError::invalid(
                child(path, field),
                v,
                "must be greater than or equal to 0",
            ));
        }
    }
    if liveness
        && let Some(threshold) = int_at(probe, "successThreshold")
        && threshold != 1
    {
        errs.push(FieldError::invalid(
            child(path, "successThreshold"),
            threshold,
            "must be 1",
        ));
    }
    errs
}

/// Port number, or IANA service name when a string (`ValidatePortNumOrName`).
pub(crate) fn validate_port_num_or_name(port: Option<&Value>, path: &str) -> Vec<FieldError> {
    match port {
        Some(Value::String(name)) => is_valid_port_name(name)
            .into_iter()
            .map(|m| FieldError::invalid(path, name.as_str(), m))
            .collect(),
        Some(Value::Number(n)) => {
            let v = n.as_i64().unwrap_or(0);
            is_valid_port_num(v)
                .into_iter()
                .map(|m| FieldError::invalid(path, v, m))
                .collect()
        }
        None | Some(Value::Null) => is_valid_port_num(0)
            .into_iter()
            .map(|m| FieldError::invalid(path, 0, m))
            .collect(),
        _ => Vec::new(),
    }
}

fn validate_containers(spec: &Value, volumes: &HashSet<String>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let list_path = child(path, "containers");
    let containers = array_at(spec, "containers");
    if containers.is_empty() {
        errs.push(FieldError::required(&list_path, ""));
        return errs;
    }
    let mut names = HashSet::new();
    for (i, c) in containers.iter().enumerate() {
        let c_path = index(&list_path, i);
        errs.extend(validate_container_common(c, volumes, &c_path));
        let name = str_or_empty(c, "name");
        if !names.insert(name.to_string()) {
            errs.push(FieldError::duplicate(child(&c_path, "name"), name));
        }
        errs.extend(validate_probe(
            c.get("livenessProbe"),
            &child(&c_path, "livenessProbe"),
            true,
        ));
        errs.extend(validate_probe(
            c.get("readinessProbe"),
            &child(&c_path, "readinessProbe"),
            false,
        ));
        errs.extend(validate_probe(
            c.get("startupProbe"),
            &child(&c_path, "startupProbe"),
            true,
        ));
        if c.get("restartPolicy").is_some_and(|r| !r.is_null()) {
            errs.push(FieldError::forbidden(
                child(&c_path, "restartPolicy"),
                "may not be set for non-init containers",
            ));
        }
    }
    errs.extend(check_host_port_conflicts(containers, &list_path));
    errs
}

fn validate_init_containers(
    spec: &Value,
    volumes: &HashSet<String>,
    path: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let list_path = child(path, "initContainers");
    let mut names: HashSet<String> = array_at(spec, "containers")
        .iter()
        .map(|c| str_or_empty(c, "name").to_string())
        .collect();
    for (i, c) in array_at(spec, "initContainers").iter().enumerate() {
        let c_path = index(&list_path, i);
        errs.extend(validate_container_common(c, volumes, &c_path));
        let name = str_or_empty(c, "name");
        if !names.insert(name.to_string()) {
            errs.push(FieldError::duplicate(child(&c_path, "name"), name));
        }
        if let Some(policy) = str_at(c, "restartPolicy")
            && policy != "Always"
        {
            errs.push(FieldError::not_supported(
                child(&c_path, "restartPolicy"),
                policy,
                &["Always"],
            ));
        }
    }
    errs.extend(check_host_port_conflicts(
        array_at(spec, "initContainers"),
        &list_path,
    ));
    errs
}

fn check_host_port_conflicts(containers: &[Value], path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut seen = HashSet::new();
    for (ci, c) in containers.iter().enumerate() {
        for (pi, p) in array_at(c, "ports").iter().enumerate() {
            let host_port = int_at(p, "hostPort").unwrap_or(0);
            if host_port == 0 {
                continue;
            }
            let key = format!(
                "{}/{}/{host_port}",
                str_or_empty(p, "protocol"),
                str_or_empty(p, "hostIP")
            );
            if !seen.insert(key.clone()) {
                let p_path = index(&child(&index(path, ci), "ports"), pi);
                errs.push(FieldError::duplicate(child(&p_path, "hostPort"), key));
            }
        }
    }
    errs
}

fn validate_host_network_ports(spec: &Value, path: &str, owner: SpecOwner) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (ci, c) in array_at(spec, "containers").iter().enumerate() {
        for (pi, p) in array_at(c, "ports").iter().enumerate() {
            let host_port = int_at(p, "hostPort").unwrap_or(0);
            let container_port = int_at(p, "containerPort").unwrap_or(0);
            if (owner == SpecOwner::Pod || host_port != 0) && host_port != container_port {
                let p_path = index(&child(&index(&child(path, "containers"), ci), "ports"), pi);
                errs.push(FieldError::invalid(
                    child(&p_path, "hostPort"),
                    host_port,
                    "must match `containerPort` when `hostNetwork` is true",
                ));
            }
        }
    }
    errs
}

fn validate_restart_policy(policy: Option<&Value>, path: &str) -> Option<FieldError> {
    match policy.and_then(Value::as_str).unwrap_or("") {
        "Always" | "OnFailure" | "Never" => None,
        "" => Some(FieldError::required(path, "")),
        other => Some(FieldError::not_supported(
            path,
            other,
            &["Always", "OnFailure", "Never"],
        )),
    }
}

fn validate_dns_policy(policy: Option<&Value>, path: &str) -> Option<FieldError> {
    match policy.and_then(Value::as_str).unwrap_or("") {
        "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None" => None,
        "" => Some(FieldError::required(path, "")),
        other => Some(FieldError::not_supported(
            path,
            other,
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        )),
    }
}

pub(crate) fn validate_tolerations(tolerations: &[Value], path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, t) in tolerations.iter().enumerate() {
        let t_path = index(path, i);
        let t_key = str_or_empty(t, "key");
        let operator = str_or_empty(t, "operator");
        let effect = str_or_empty(t, "effect");
        if !t_key.is_empty() {
            errs.extend(validate_label_name(t_key, &child(&t_path, "key")));
        }
        if t_key.is_empty() && operator != "Exists" {
            errs.push(FieldError::invalid(
                child(&t_path, "operator"),
                operator,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if t.get("tolerationSeconds").is_some_and(|s| !s.is_null()) && effect != "NoExecute" {
            errs.push(FieldError::invalid(
                child(&t_path, "effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match operator {
            "Equal" | "" => {
                let value = str_or_empty(t, "value");
                let msgs = is_valid_label_value(value);
                if !msgs.is_empty() {
                    errs.push(FieldError::invalid(
                        child(&t_path, "operator"),
                        value,
                        msgs.join(";"),
                    ));
                }
            }
            "Exists" => {
                if !str_or_empty(t, "value").is_empty() {
                    errs.push(
                        FieldError::invalid(
                            child(&t_path, "operator"),
                            t.clone(),
                            "value must be empty when `operator` is 'Exists'",
                        )
                        .rendered_as(gosyntax::toleration(t)),
                    );
                }
            }
            other => errs.push(FieldError::not_supported(
                child(&t_path, "operator"),
                other,
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() && !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute")
        {
            errs.push(FieldError::not_supported(
                child(&t_path, "effect"),
                effect,
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            ));
        }
    }
    errs
}

/// Fields a Pod update may change, as upstream lists them in its refusal.
const UPDATABLE_POD_SPEC_FIELDS: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// `ValidatePodUpdate` minus metadata (done by the caller).
pub(crate) fn validate_pod_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let empty = Value::Object(Map::new());
    let new_spec = new.get("spec").filter(|s| s.is_object()).unwrap_or(&empty);
    let old_spec = old.get("spec").filter(|s| s.is_object()).unwrap_or(&empty);
    let mut errs = validate_pod_spec(new_spec, "spec", SpecOwner::Pod);
    for list in ["containers", "initContainers"] {
        let new_list = array_at(new_spec, list);
        let old_list = array_at(old_spec, list);
        let list_path = child("spec", list);
        if new_list.len() != old_list.len() {
            errs.push(FieldError::forbidden(
                list_path,
                "pod updates may not add or remove containers",
            ));
            return errs;
        }
        for (i, c) in new_list.iter().enumerate() {
            let image = str_or_empty(c, "image");
            let image_path = child(&index(&list_path, i), "image");
            if image.is_empty() {
                errs.push(FieldError::required(&image_path, ""));
            }
            if image.trim() != image {
                errs.push(FieldError::invalid(
                    &image_path,
                    image,
                    "must not have leading or trailing whitespace",
                ));
            }
        }
    }
    let deadline_path = "spec.activeDeadlineSeconds";
    match (
        int_at(new_spec, "activeDeadlineSeconds"),
        int_at(old_spec, "activeDeadlineSeconds"),
    ) {
        (Some(new_deadline), old_deadline) => {
            if !(0..=i64::from(i32::MAX)).contains(&new_deadline) {
                errs.push(FieldError::invalid(
                    deadline_path,
                    new_deadline,
                    inclusive_range_error(0, i64::from(i32::MAX)),
                ));
                return errs;
            }
            if old_deadline.is_some_and(|o| o < new_deadline) {
                errs.push(FieldError::invalid(
                    deadline_path,
                    new_deadline,
                    "must be less than or equal to previous value",
                ));
                return errs;
            }
        }
        (None, Some(_)) => errs.push(FieldError::invalid(
            deadline_path,
            Value::Null,
            "must not update from a positive integer to nil value",
        )),
        (None, None) => {}
    }
    errs.extend(validate_only_added_tolerations(new_spec, old_spec));
    if new_spec == old_spec {
        return errs;
    }
    let munged = munge_updatable_fields(new_spec, old_spec);
    if munged != *old_spec {
        errs.push(FieldError::forbidden(
            "spec",
            format!(
                "pod updates may not change fields other than {UPDATABLE_POD_SPEC_FIELDS}\n{}",
                spec_diff(old_spec, &munged)
            ),
        ));
    }
    errs
}

fn validate_only_added_tolerations(new_spec: &Value, old_spec: &Value) -> Vec<FieldError> {
    // A toleration is its fields but tolerationSeconds; a set keeps a pod with thousands of
    // tolerations from costing thousands squared comparisons.
    let identity = |t: &Value| -> String {
        let mut t = t.clone();
        if let Some(m) = t.as_object_mut() {
            m.remove("tolerationSeconds");
            m.sort_keys();
        }
        t.to_string()
    };
    let new_set: std::collections::HashSet<String> = array_at(new_spec, "tolerations")
        .iter()
        .map(identity)
        .collect();
    for old in array_at(old_spec, "tolerations") {
        if !new_set.contains(&identity(old)) {
            return vec![FieldError::forbidden(
                "spec.tolerations",
                "existing toleration can not be modified except its tolerationSeconds",
            )];
        }
    }
    Vec::new()
}

/// The new spec with every field an update may change set back to the old value.
fn munge_updatable_fields(new_spec: &Value, old_spec: &Value) -> Value {
    let mut munged = new_spec.clone();
    let Some(map) = munged.as_object_mut() else {
        return munged;
    };
    for list in ["containers", "initContainers"] {
        let old_list = array_at(old_spec, list);
        if let Some(items) = map.get_mut(list).and_then(Value::as_array_mut) {
            for (item, old_item) in items.iter_mut().zip(old_list) {
                if let (Some(obj), Some(old_image)) = (item.as_object_mut(), old_item.get("image"))
                {
                    obj.insert("image".into(), old_image.clone());
                }
            }
        }
    }
    for field in ["activeDeadlineSeconds", "tolerations", "schedulingGates"] {
        match old_spec.get(field) {
            Some(v) => map.insert(field.into(), v.clone()),
            None => map.remove(field),
        };
    }
    let old_grace = int_at(old_spec, "terminationGracePeriodSeconds");
    if old_grace.is_some_and(|g| g < 0)
        && map
            .get("terminationGracePeriodSeconds")
            .and_then(Value::as_i64)
            == Some(1)
    {
        map.insert(
            "terminationGracePeriodSeconds".into(),
            Value::from(old_grace.unwrap_or(0)),
        );
    }
    munged
}

/// A compact stand-in for go-cmp's diff: one `-`/`+` pair per changed top-level field.
fn spec_diff(old: &Value, new: &Value) -> String {
    let mut lines = vec!["  core.PodSpec{".to_string()];
    let empty = Map::new();
    let old_map = old.as_object().unwrap_or(&empty);
    let new_map = new.as_object().unwrap_or(&empty);
    let mut fields: Vec<&String> = old_map.keys().chain(new_map.keys()).collect();
    fields.sort();
    fields.dedup();
    for f in fields {
        let (o, n) = (old_map.get(f), new_map.get(f));
        if o == n {
            continue;
        }
        if let Some(o) = o {
            lines.push(format!("- \t{f}: {o},"));
        }
        if let Some(n) = n {
            lines.push(format!("+ \t{f}: {n},"));
        }
    }
    lines.push("  }".to_string());
    lines.join("\n") + "\n"
}

/// The label map at `template.metadata.labels`, for controller checks.
pub(crate) fn template_labels(obj: &Value) -> Option<&Value> {
    at(obj, &["spec", "template", "metadata", "labels"])
}
