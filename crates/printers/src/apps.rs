//! Printers of the apps group: deployments, replicasets and daemonsets.

use jiff::Timestamp;
use serde_json::Value;

use crate::docs;
use crate::format::{
    InvalidSelector, age, format_label_selector, format_labels, label_selector_string,
};
use crate::json::{at, int_at, list_at, map_at, opt_int_at, str_at};
use crate::{Column, age_column, column, name_cell, name_column, wide};

const CONTAINERS_DESCRIPTION: &str = "Names of each container in the template.";
const IMAGES_DESCRIPTION: &str = "Images referenced by each container in the template.";

/// The API default of `spec.replicas` for Deployments and ReplicaSets: a stored object without
/// it was defaulted to 1 before upstream's printer saw it.
fn desired_replicas(obj: &Value) -> i64 {
    opt_int_at(obj, &["spec", "replicas"]).unwrap_or(1)
}

/// Upstream `layoutContainerCells`: container names and images, each joined by ",".
fn container_cells(obj: &Value) -> [Value; 2] {
    let containers = list_at(obj, &["spec", "template", "spec", "containers"]);
    let join = |field: &str| {
        containers
            .iter()
            .map(|c| str_at(c, &[field]))
            .collect::<Vec<_>>()
            .join(",")
    };
    [Value::from(join("name")), Value::from(join("image"))]
}

pub(crate) fn deployment_columns() -> Vec<Column> {
    vec![
        name_column(),
        column("Ready", "string", "Number of the pod with ready state"),
        column("Up-to-date", "string", docs::DEPLOYMENT_UPDATED_REPLICAS),
        column("Available", "string", docs::DEPLOYMENT_AVAILABLE_REPLICAS),
        age_column(),
        wide("Containers", "string", CONTAINERS_DESCRIPTION),
        wide("Images", "string", IMAGES_DESCRIPTION),
        wide("Selector", "string", docs::DEPLOYMENT_SPEC_SELECTOR),
    ]
}

pub(crate) fn deployment_cells(deployment: &Value, now: Timestamp) -> Vec<Value> {
    let ready = int_at(deployment, &["status", "readyReplicas"]);
    // Unlike the other workloads, the deployment printer shows an empty selector as "" and an
    // invalid one as "<invalid>".
    let selector = match label_selector_string(at(deployment, &["spec", "selector"])) {
        Ok(text) => text,
        Err(InvalidSelector) => "<invalid>".to_string(),
    };
    let [containers, images] = container_cells(deployment);
    vec![
        name_cell(deployment),
        Value::from(format!("{ready}/{}", desired_replicas(deployment))),
        Value::from(int_at(deployment, &["status", "updatedReplicas"])),
        Value::from(int_at(deployment, &["status", "availableReplicas"])),
        Value::from(age(deployment, now)),
        containers,
        images,
        Value::from(selector),
    ]
}

pub(crate) fn replica_set_columns() -> Vec<Column> {
    vec![
        name_column(),
        column("Desired", "integer", docs::REPLICA_SET_SPEC_REPLICAS),
        column("Current", "integer", docs::REPLICA_SET_STATUS_REPLICAS),
        column("Ready", "integer", docs::REPLICA_SET_STATUS_READY_REPLICAS),
        age_column(),
        wide("Containers", "string", CONTAINERS_DESCRIPTION),
        wide("Images", "string", IMAGES_DESCRIPTION),
        wide("Selector", "string", docs::REPLICA_SET_SPEC_SELECTOR),
    ]
}

pub(crate) fn replica_set_cells(replica_set: &Value, now: Timestamp) -> Vec<Value> {
    let [containers, images] = container_cells(replica_set);
    vec![
        name_cell(replica_set),
        Value::from(desired_replicas(replica_set)),
        Value::from(int_at(replica_set, &["status", "replicas"])),
        Value::from(int_at(replica_set, &["status", "readyReplicas"])),
        Value::from(age(replica_set, now)),
        containers,
        images,
        Value::from(format_label_selector(at(
            replica_set,
            &["spec", "selector"],
        ))),
    ]
}

pub(crate) fn daemon_set_columns() -> Vec<Column> {
    vec![
        name_column(),
        column(
            "Desired",
            "integer",
            docs::DAEMON_SET_DESIRED_NUMBER_SCHEDULED,
        ),
        column(
            "Current",
            "integer",
            docs::DAEMON_SET_CURRENT_NUMBER_SCHEDULED,
        ),
        column("Ready", "integer", docs::DAEMON_SET_NUMBER_READY),
        column(
            "Up-to-date",
            "integer",
            docs::DAEMON_SET_UPDATED_NUMBER_SCHEDULED,
        ),
        column("Available", "integer", docs::DAEMON_SET_NUMBER_AVAILABLE),
        column("Node Selector", "string", docs::POD_NODE_SELECTOR),
        age_column(),
        wide("Containers", "string", CONTAINERS_DESCRIPTION),
        wide("Images", "string", IMAGES_DESCRIPTION),
        wide("Selector", "string", docs::DAEMON_SET_SPEC_SELECTOR),
    ]
}

pub(crate) fn daemon_set_cells(daemon_set: &Value, now: Timestamp) -> Vec<Value> {
    let status = |field: &str| Value::from(int_at(daemon_set, &["status", field]));
    let node_selector = map_at(daemon_set, &["spec", "template", "spec", "nodeSelector"]);
    let [containers, images] = container_cells(daemon_set);
    vec![
        name_cell(daemon_set),
        status("desiredNumberScheduled"),
        status("currentNumberScheduled"),
        status("numberReady"),
        status("updatedNumberScheduled"),
        status("numberAvailable"),
        Value::from(format_labels(node_selector)),
        Value::from(age(daemon_set, now)),
        containers,
        images,
        Value::from(format_label_selector(at(daemon_set, &["spec", "selector"]))),
    ]
}
