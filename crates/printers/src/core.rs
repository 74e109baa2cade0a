//! Printers of the core ("") group: pods, services, endpoints, nodes, namespaces, events,
//! configmaps, secrets and serviceaccounts.

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::docs;
use crate::format::{age, format_labels, since, time_at};
use crate::json::{at, bool_at, int_at, len_at, list_at, map_at, str_at};
use crate::prune::Keep;
use crate::{Column, age_column, column, name_cell, name_column, wide};

// ---------------------------------------------------------------- pods

pub(crate) fn pod_columns() -> Vec<Column> {
    vec![
        name_column(),
        column(
            "Ready",
            "string",
            "The aggregate readiness state of this pod for accepting traffic.",
        ),
        column(
            "Status",
            "string",
            "The aggregate status of the containers in this pod.",
        ),
        column(
            "Restarts",
            "string",
            "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
        ),
        age_column(),
        wide("IP", "string", docs::POD_IP),
        wide("Node", "string", docs::POD_NODE_NAME),
        wide("Nominated Node", "string", docs::POD_NOMINATED_NODE_NAME),
        wide("Readiness Gates", "string", docs::POD_READINESS_GATES),
    ]
}

/// Everything [`pod_cells`] and [`pod_row_conditions`] read, plus `metadata` for the row's
/// object. Of `spec`, whose containers (env, resources, probes, mounts) are most of a pod, only
/// the containers' count, the init containers' names and restart policies, the readiness gates
/// and the node name. A new read in those functions must be added here: the
/// `streamed_table_equals_table` property test fails otherwise.
pub(crate) const POD_ROW_READS: Keep = Keep::Fields(&[
    ("metadata", Keep::All),
    (
        "spec",
        Keep::Fields(&[
            ("containers", Keep::Fields(&[])),
            (
                "initContainers",
                Keep::Fields(&[("name", Keep::All), ("restartPolicy", Keep::All)]),
            ),
            ("readinessGates", Keep::All),
            ("nodeName", Keep::All),
        ]),
    ),
    ("status", Keep::All),
]);

/// `status.reason` the node lifecycle controller sets on pods of an unreachable node.
const NODE_UNREACHABLE_POD_REASON: &str = "NodeLost";

/// The latest of two restart times (`metav1.Time.Before`; an unset time is never later).
fn later(current: Option<Timestamp>, candidate: Option<Timestamp>) -> Option<Timestamp> {
    match (current, candidate) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// When the container last terminated, if its previous run is recorded.
fn last_termination(container_status: &Value) -> Option<Timestamp> {
    map_at(container_status, &["lastState", "terminated"])?;
    time_at(container_status, &["lastState", "terminated", "finishedAt"])
}

/// "Signal:9" or "ExitCode:1" for a terminated state without a reason.
fn exit_description(terminated: &Value) -> String {
    let signal = int_at(terminated, &["signal"]);
    if signal != 0 {
        format!("Signal:{signal}")
    } else {
        format!("ExitCode:{}", int_at(terminated, &["exitCode"]))
    }
}

fn has_condition(pod: &Value, condition_type: &str) -> bool {
    list_at(pod, &["status", "conditions"])
        .iter()
        .any(|c| str_at(c, &["type"]) == condition_type && str_at(c, &["status"]) == "True")
}

/// `isPodInitializedConditionTrue`: the first `Initialized` condition decides.
fn is_initialized(pod: &Value) -> bool {
    list_at(pod, &["status", "conditions"])
        .iter()
        .find(|c| str_at(c, &["type"]) == "Initialized")
        .is_some_and(|c| str_at(c, &["status"]) == "True")
}

/// Upstream `printPod`: READY counts ready regular and started sidecar containers; STATUS walks
/// the init containers (the first unfinished one decides), then the regular containers from last
/// to first (so the first container's state wins), then deletion; RESTARTS appends how long ago
/// the most recent restart was.
pub(crate) fn pod_cells(pod: &Value, now: Timestamp) -> Vec<Value> {
    let phase = str_at(pod, &["status", "phase"]);
    let status_reason = str_at(pod, &["status", "reason"]);
    let mut reason = if status_reason.is_empty() {
        phase.to_string()
    } else {
        status_reason.to_string()
    };
    for condition in list_at(pod, &["status", "conditions"]) {
        if str_at(condition, &["type"]) == "PodScheduled"
            && str_at(condition, &["reason"]) == "SchedulingGated"
        {
            reason = "SchedulingGated".to_string();
        }
    }

    let init_specs = list_at(pod, &["spec", "initContainers"]);
    // Sidecars: init containers with restartPolicy Always keep running and count as containers.
    let is_sidecar = |name: &str| {
        init_specs
            .iter()
            .any(|c| str_at(c, &["name"]) == name && str_at(c, &["restartPolicy"]) == "Always")
    };
    let sidecar_count = init_specs
        .iter()
        .filter(|c| str_at(c, &["restartPolicy"]) == "Always")
        .count();
    let total_containers = list_at(pod, &["spec", "containers"]).len() + sidecar_count;

    let mut ready_containers = 0usize;
    let mut restarts = 0i64;
    let mut last_restart: Option<Timestamp> = None;
    let mut sidecar_restarts = 0i64;
    let mut last_sidecar_restart: Option<Timestamp> = None;
    let mut initializing = false;
    for (index, status) in list_at(pod, &["status", "initContainerStatuses"])
        .iter()
        .enumerate()
    {
        let restart_count = int_at(status, &["restartCount"]);
        restarts += restart_count;
        last_restart = later(last_restart, last_termination(status));
        let sidecar = is_sidecar(str_at(status, &["name"]));
        if sidecar {
            sidecar_restarts += restart_count;
            last_sidecar_restart = later(last_sidecar_restart, last_termination(status));
        }
        let terminated = at(status, &["state", "terminated"]).filter(|t| t.is_object());
        let waiting_reason = map_at(status, &["state", "waiting"])
            .map(|_| str_at(status, &["state", "waiting", "reason"]));
        match (terminated, waiting_reason) {
            (Some(t), _) if int_at(t, &["exitCode"]) == 0 => continue,
            _ if sidecar && bool_at(status, &["started"]) => {
                if bool_at(status, &["ready"]) {
                    ready_containers += 1;
                }
                continue;
            }
            (Some(t), _) => {
                let terminated_reason = str_at(t, &["reason"]);
                reason = if terminated_reason.is_empty() {
                    format!("Init:{}", exit_description(t))
                } else {
                    format!("Init:{terminated_reason}")
                };
            }
            (None, Some(waiting)) if !waiting.is_empty() && waiting != "PodInitializing" => {
                reason = format!("Init:{waiting}");
            }
            _ => reason = format!("Init:{index}/{}", init_specs.len()),
        }
        initializing = true;
        break;
    }

    if !initializing || is_initialized(pod) {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for status in list_at(pod, &["status", "containerStatuses"]).iter().rev() {
            restarts += int_at(status, &["restartCount"]);
            last_restart = later(last_restart, last_termination(status));
            let waiting_reason = str_at(status, &["state", "waiting", "reason"]);
            let terminated = at(status, &["state", "terminated"]).filter(|t| t.is_object());
            if map_at(status, &["state", "waiting"]).is_some() && !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(t) = terminated {
                let terminated_reason = str_at(t, &["reason"]);
                reason = if terminated_reason.is_empty() {
                    exit_description(t)
                } else {
                    terminated_reason.to_string()
                };
            } else if bool_at(status, &["ready"]) && map_at(status, &["state", "running"]).is_some()
            {
                has_running = true;
                ready_containers += 1;
            }
        }
        // A pod whose last container finished but another still runs is not "Completed".
        if reason == "Completed" && has_running {
            reason = if has_condition(pod, "Ready") {
                "Running".to_string()
            } else {
                "NotReady".to_string()
            };
        }
    }

    // Any deletionTimestamp counts: upstream tests the pointer, not the time.
    let deleting = at(pod, &["metadata", "deletionTimestamp"]).is_some();
    if deleting && status_reason == NODE_UNREACHABLE_POD_REASON {
        reason = "Unknown".to_string();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_string();
    }

    let restarts_cell = match last_restart {
        Some(when) if restarts != 0 => format!("{restarts} ({} ago)", since(Some(when), now)),
        _ => restarts.to_string(),
    };

    // The internal PodStatus has only podIPs; conversion from v1 fills it from podIP.
    let pod_ip = list_at(pod, &["status", "podIPs"])
        .first()
        .map(|ip| str_at(ip, &["ip"]))
        .unwrap_or_else(|| str_at(pod, &["status", "podIP"]));
    let readiness_gates = list_at(pod, &["spec", "readinessGates"]);
    let readiness_cell = if readiness_gates.is_empty() {
        "<none>".to_string()
    } else {
        let conditions = list_at(pod, &["status", "conditions"]);
        let satisfied = readiness_gates
            .iter()
            .filter(|gate| {
                let wanted = str_at(gate, &["conditionType"]);
                conditions
                    .iter()
                    .find(|c| str_at(c, &["type"]) == wanted)
                    .is_some_and(|c| str_at(c, &["status"]) == "True")
            })
            .count();
        format!("{satisfied}/{}", readiness_gates.len())
    };

    vec![
        name_cell(pod),
        Value::from(format!("{ready_containers}/{total_containers}")),
        Value::from(reason),
        Value::from(restarts_cell),
        Value::from(age(pod, now)),
        Value::from(or_none(pod_ip)),
        Value::from(or_none(str_at(pod, &["spec", "nodeName"]))),
        Value::from(or_none(str_at(pod, &["status", "nominatedNodeName"]))),
        Value::from(readiness_cell),
    ]
}

/// Finished pods carry a `Completed` row condition.
pub(crate) fn pod_row_conditions(pod: &Value) -> Option<Value> {
    let (reason, message) = match str_at(pod, &["status", "phase"]) {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return None,
    };
    Some(json!([{
        "type": "Completed",
        "status": "True",
        "reason": reason,
        "message": message,
    }]))
}

fn or_none(text: &str) -> String {
    if text.is_empty() {
        "<none>".to_string()
    } else {
        text.to_string()
    }
}

// ---------------------------------------------------------------- services

pub(crate) fn service_columns() -> Vec<Column> {
    vec![
        name_column(),
        column("Type", "string", docs::SERVICE_TYPE),
        column("Cluster-IP", "string", docs::SERVICE_CLUSTER_IP),
        column("External-IP", "string", docs::SERVICE_EXTERNAL_IPS),
        column("Port(s)", "string", docs::SERVICE_PORTS),
        age_column(),
        wide("Selector", "string", docs::SERVICE_SELECTOR),
    ]
}

/// The API default of `spec.type`; a stored Service without one is a ClusterIP Service.
fn service_type(service: &Value) -> &str {
    match str_at(service, &["spec", "type"]) {
        "" => "ClusterIP",
        other => other,
    }
}

pub(crate) fn service_cells(service: &Value, now: Timestamp) -> Vec<Value> {
    // Upstream reads clusterIPs[0]; a Service that only has the older clusterIP field means the same.
    let cluster_ip = list_at(service, &["spec", "clusterIPs"])
        .first()
        .and_then(Value::as_str)
        .unwrap_or_else(|| str_at(service, &["spec", "clusterIP"]));
    let ports: Vec<String> = list_at(service, &["spec", "ports"])
        .iter()
        .map(|port| {
            let protocol = match str_at(port, &["protocol"]) {
                "" => "TCP",
                other => other,
            };
            let number = int_at(port, &["port"]);
            let node_port = int_at(port, &["nodePort"]);
            if node_port > 0 {
                format!("{number}:{node_port}/{protocol}")
            } else {
                format!("{number}/{protocol}")
            }
        })
        .collect();
    let ports = if ports.is_empty() {
        "<none>".to_string()
    } else {
        ports.join(",")
    };
    vec![
        name_cell(service),
        Value::from(service_type(service)),
        Value::from(or_none(cluster_ip)),
        Value::from(service_external_ip(service)),
        Value::from(ports),
        Value::from(age(service, now)),
        Value::from(format_labels(map_at(service, &["spec", "selector"]))),
    ]
}

/// Upstream `getServiceExternalIP` with wide output (the server never clips the list).
fn service_external_ip(service: &Value) -> String {
    let external_ips: Vec<&str> = list_at(service, &["spec", "externalIPs"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match service_type(service) {
        "ClusterIP" | "NodePort" => {
            if external_ips.is_empty() {
                "<none>".to_string()
            } else {
                external_ips.join(",")
            }
        }
        "LoadBalancer" => {
            let mut ingress: Vec<&str> = list_at(service, &["status", "loadBalancer", "ingress"])
                .iter()
                .map(|entry| match str_at(entry, &["ip"]) {
                    "" => str_at(entry, &["hostname"]),
                    ip => ip,
                })
                .filter(|address| !address.is_empty())
                .collect();
            ingress.sort_unstable();
            ingress.dedup();
            let mut all = ingress;
            all.extend(external_ips);
            if all.is_empty() {
                "<pending>".to_string()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => str_at(service, &["spec", "externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    }
}

// ---------------------------------------------------------------- endpoints

pub(crate) fn endpoints_columns() -> Vec<Column> {
    vec![
        name_column(),
        column("Endpoints", "string", docs::ENDPOINTS_SUBSETS),
        age_column(),
    ]
}

pub(crate) fn endpoints_cells(endpoints: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name_cell(endpoints),
        Value::from(format_endpoints(endpoints)),
        Value::from(age(endpoints, now)),
    ]
}

/// How many addresses an ENDPOINTS or PORTS cell lists before "+ N more...".
const LISTED_AT_MOST: usize = 3;

/// Upstream `formatEndpoints`: "ip:port" for every port of every subset (bare IPs for a subset
/// without ports), the first three listed, the rest counted.
fn format_endpoints(endpoints: &Value) -> String {
    let subsets = list_at(endpoints, &["subsets"]);
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    let mut listed: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0usize;
    for subset in subsets {
        let addresses = list_at(subset, &["addresses"]);
        let ports = list_at(subset, &["ports"]);
        let mut add = |address: &Value, port: Option<i64>| -> bool {
            if listed.len() == LISTED_AT_MOST {
                more = true;
                return false;
            }
            let ip = str_at(address, &["ip"]);
            listed.push(match port {
                None => ip.to_string(),
                Some(port) if ip.contains(':') => format!("[{ip}]:{port}"),
                Some(port) => format!("{ip}:{port}"),
            });
            true
        };
        if ports.is_empty() {
            // Headless services may have no ports.
            count += addresses.len();
            for address in addresses {
                if !add(address, None) {
                    break;
                }
            }
            continue;
        }
        for port in ports {
            count += addresses.len();
            for address in addresses {
                if !add(address, Some(int_at(port, &["port"]))) {
                    break;
                }
            }
        }
    }
    let joined = listed.join(",");
    if more {
        format!("{joined} + {} more...", count - LISTED_AT_MOST)
    } else {
        joined
    }
}

// ---------------------------------------------------------------- nodes

pub(crate) fn node_columns() -> Vec<Column> {
    vec![
        name_column(),
        column("Status", "string", "The status of the node"),
        column("Roles", "string", "The roles of the node"),
        age_column(),
        column("Version", "string", docs::NODE_KUBELET_VERSION),
        wide("Internal-IP", "string", docs::NODE_ADDRESSES),
        wide("External-IP", "string", docs::NODE_ADDRESSES),
        wide("OS-Image", "string", docs::NODE_OS_IMAGE),
        wide("Kernel-Version", "string", docs::NODE_KERNEL_VERSION),
        wide(
            "Container-Runtime",
            "string",
            docs::NODE_CONTAINER_RUNTIME_VERSION,
        ),
    ]
}

const NODE_ROLE_LABEL_PREFIX: &str = "node-role.kubernetes.io/";
/// The older role label, `kubernetes.io/role=<role>`.
const NODE_ROLE_LABEL: &str = "kubernetes.io/role";

pub(crate) fn node_cells(node: &Value, now: Timestamp) -> Vec<Value> {
    // Only the Ready condition is shown; a repeated type counts its last entry, like upstream's map.
    let ready = list_at(node, &["status", "conditions"])
        .iter()
        .rfind(|c| str_at(c, &["type"]) == "Ready");
    let mut status = vec![match ready {
        Some(c) if str_at(c, &["status"]) == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if bool_at(node, &["spec", "unschedulable"]) {
        status.push("SchedulingDisabled");
    }

    let mut roles: Vec<&str> = map_at(node, &["metadata", "labels"])
        .into_iter()
        .flatten()
        .filter_map(|(key, value)| {
            if let Some(role) = key.strip_prefix(NODE_ROLE_LABEL_PREFIX) {
                (!role.is_empty()).then_some(role)
            } else if key == NODE_ROLE_LABEL {
                value.as_str().filter(|role| !role.is_empty())
            } else {
                None
            }
        })
        .collect();
    roles.sort_unstable();
    roles.dedup();
    let roles = if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    };

    let address = |kind: &str| {
        list_at(node, &["status", "addresses"])
            .iter()
            .find(|a| str_at(a, &["type"]) == kind)
            .map(|a| str_at(a, &["address"]).to_string())
            .unwrap_or_else(|| "<none>".to_string())
    };
    let node_info = |field: &str| match str_at(node, &["status", "nodeInfo", field]) {
        "" => "<unknown>".to_string(),
        value => value.to_string(),
    };
    vec![
        name_cell(node),
        Value::from(status.join(",")),
        Value::from(roles),
        Value::from(age(node, now)),
        Value::from(str_at(node, &["status", "nodeInfo", "kubeletVersion"])),
        Value::from(address("InternalIP")),
        Value::from(address("ExternalIP")),
        Value::from(node_info("osImage")),
        Value::from(node_info("kernelVersion")),
        Value::from(node_info("containerRuntimeVersion")),
    ]
}

// ---------------------------------------------------------------- namespaces

pub(crate) fn namespace_columns() -> Vec<Column> {
    vec![
        name_column(),
        column("Status", "string", "The status of the namespace"),
        age_column(),
    ]
}

pub(crate) fn namespace_cells(namespace: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name_cell(namespace),
        Value::from(str_at(namespace, &["status", "phase"])),
        Value::from(age(namespace, now)),
    ]
}

// ---------------------------------------------------------------- events

pub(crate) fn event_columns() -> Vec<Column> {
    vec![
        column("Last Seen", "string", docs::EVENT_LAST_TIMESTAMP),
        column("Type", "string", docs::EVENT_TYPE),
        column("Reason", "string", docs::EVENT_REASON),
        column("Object", "string", docs::EVENT_INVOLVED_OBJECT),
        wide("Subobject", "string", docs::OBJECT_REFERENCE_FIELD_PATH),
        wide("Source", "string", docs::EVENT_SOURCE),
        column("Message", "string", docs::EVENT_MESSAGE),
        wide("First Seen", "string", docs::EVENT_FIRST_TIMESTAMP),
        wide("Count", "string", docs::EVENT_COUNT),
        Column {
            priority: 1,
            ..name_column()
        },
    ]
}

/// A core/v1 Event's row. events.k8s.io/v1 Events are first mapped onto the same fields, as the
/// apiserver prints both from one internal type.
pub(crate) fn event_cells(event: &Value, now: Timestamp) -> Vec<Value> {
    let first_seen = match time_at(event, &["firstTimestamp"]) {
        Some(first) => since(Some(first), now),
        None => since(time_at(event, &["eventTime"]), now),
    };
    let mut last_seen = match time_at(event, &["lastTimestamp"]) {
        Some(last) => since(Some(last), now),
        None => first_seen.clone(),
    };
    let mut count = int_at(event, &["count"]);
    if map_at(event, &["series"]).is_some() {
        last_seen = since(time_at(event, &["series", "lastObservedTime"]), now);
        count = int_at(event, &["series", "count"]);
    } else if count == 0 {
        // Singleton events of the new API have no count.
        count = 1;
    }

    let kind = str_at(event, &["involvedObject", "kind"]).to_lowercase();
    let involved_name = str_at(event, &["involvedObject", "name"]);
    let object = if involved_name.is_empty() {
        kind
    } else {
        format!("{kind}/{involved_name}")
    };

    let component = first_non_empty(
        str_at(event, &["source", "component"]),
        str_at(event, &["reportingComponent"]),
    );
    let instance = first_non_empty(
        str_at(event, &["source", "host"]),
        str_at(event, &["reportingInstance"]),
    );
    let source = if instance.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {instance}")
    };

    vec![
        Value::from(last_seen),
        Value::from(str_at(event, &["type"])),
        Value::from(str_at(event, &["reason"])),
        Value::from(object),
        Value::from(str_at(event, &["involvedObject", "fieldPath"])),
        Value::from(source),
        Value::from(str_at(event, &["message"]).trim()),
        Value::from(first_seen),
        Value::from(count),
        name_cell(event),
    ]
}

/// events.k8s.io/v1 renames the core fields (`regarding`, `note`, `deprecated*`); map them back.
pub(crate) fn events_v1_cells(event: &Value, now: Timestamp) -> Vec<Value> {
    let field = |name: &str| at(event, &[name]).cloned().unwrap_or(Value::Null);
    let core = json!({
        "metadata": field("metadata"),
        "involvedObject": field("regarding"),
        "reason": field("reason"),
        "message": field("note"),
        "source": field("deprecatedSource"),
        "firstTimestamp": field("deprecatedFirstTimestamp"),
        "lastTimestamp": field("deprecatedLastTimestamp"),
        "count": field("deprecatedCount"),
        "type": field("type"),
        "eventTime": field("eventTime"),
        "series": field("series"),
        "reportingComponent": field("reportingController"),
        "reportingInstance": field("reportingInstance"),
    });
    event_cells(&core, now)
}

fn first_non_empty<'a>(first: &'a str, second: &'a str) -> &'a str {
    if first.is_empty() { second } else { first }
}

// ---------------------------------------------------------------- configmaps, secrets, serviceaccounts

pub(crate) fn config_map_columns() -> Vec<Column> {
    vec![
        name_column(),
        column("Data", "string", docs::CONFIG_MAP_DATA),
        age_column(),
    ]
}

pub(crate) fn config_map_cells(config_map: &Value, now: Timestamp) -> Vec<Value> {
    let entries = len_at(config_map, &["data"]) + len_at(config_map, &["binaryData"]);
    vec![
        name_cell(config_map),
        Value::from(entries),
        Value::from(age(config_map, now)),
    ]
}

pub(crate) fn secret_columns() -> Vec<Column> {
    vec![
        name_column(),
        column("Type", "string", docs::SECRET_TYPE),
        column("Data", "string", docs::SECRET_DATA),
        age_column(),
    ]
}

pub(crate) fn secret_cells(secret: &Value, now: Timestamp) -> Vec<Value> {
    // The API defaults an absent type to Opaque.
    let secret_type = match str_at(secret, &["type"]) {
        "" => "Opaque",
        other => other,
    };
    vec![
        name_cell(secret),
        Value::from(secret_type),
        Value::from(len_at(secret, &["data"])),
        Value::from(age(secret, now)),
    ]
}

pub(crate) fn service_account_columns() -> Vec<Column> {
    vec![
        name_column(),
        column("Secrets", "string", docs::SERVICE_ACCOUNT_SECRETS),
        age_column(),
    ]
}

pub(crate) fn service_account_cells(account: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name_cell(account),
        Value::from(len_at(account, &["secrets"])),
        Value::from(age(account, now)),
    ]
}
