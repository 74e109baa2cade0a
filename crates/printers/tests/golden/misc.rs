//! EndpointSlices, Leases, resources without a printer, ages, and the whole Table object.

use serde_json::{Value, json};

use crate::{ago, check, now, render};
use printers::{IncludeObject, human_duration, table};

#[test]
fn endpointslices() {
    let slice = |name: &str, ports: Value, endpoints: Value| {
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "creationTimestamp": ago(700)},
            "addressType": "IPv4", "ports": ports, "endpoints": endpoints})
    };
    let endpoint = |ip: &str| json!({"addresses": [ip], "conditions": {"ready": true}});
    let slices = vec![
        slice(
            "web-x7k2p",
            json!([{"name": "", "port": 80, "protocol": "TCP"}]),
            json!([endpoint("10.244.1.4"), endpoint("10.244.2.7")]),
        ),
        slice(
            "many-4bq9z",
            json!([{"port": 80}, {"port": 443}, {"name": "metrics", "port": 9090}, {"port": 9091}]),
            json!([
                endpoint("10.0.0.1"),
                endpoint("10.0.0.2"),
                endpoint("10.0.0.3"),
                endpoint("10.0.0.4"),
                endpoint("10.0.0.5")
            ]),
        ),
        slice("odd-ports", json!([{"name": "http"}, {}]), json!([])),
        slice("empty", json!(null), json!(null)),
    ];
    check(
        "endpointslices",
        &render("discovery.k8s.io", "endpointslices", &slices),
    );
}

#[test]
fn leases() {
    let leases = vec![
        json!({"metadata": {"name": "kube-1", "namespace": "kube-node-lease", "creationTimestamp": ago(86_400 * 2)},
            "spec": {"holderIdentity": "kube-1", "leaseDurationSeconds": 40}}),
        json!({"metadata": {"name": "unheld", "creationTimestamp": ago(20)}, "spec": {}}),
    ];
    check("leases", &render("coordination.k8s.io", "leases", &leases));
}

#[test]
fn resources_without_a_printer_get_name_and_age() {
    let objects = vec![
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1", "creationTimestamp": ago(4000)}}),
        json!({"metadata": {"name": "no-timestamp"}}),
        json!({"metadata": {"name": "zero-timestamp", "creationTimestamp": "0001-01-01T00:00:00Z"}}),
        json!({"metadata": {"name": "garbage-timestamp", "creationTimestamp": "soon"}}),
    ];
    let columns = printers::columns("example.com", "widgets");
    assert_eq!(
        columns
            .iter()
            .map(|c| (c.name, c.kind, c.format))
            .collect::<Vec<_>>(),
        [("Name", "string", "name"), ("Age", "date", "")]
    );
    check(
        "unknown_resource",
        &render("example.com", "widgets", &objects),
    );
}

#[test]
fn human_durations() {
    let cases: &[(i64, i64)] = &[
        // (seconds, nanoseconds)
        (-3, 0),
        (-2, 0),
        (-1, -500_000_000),
        (-1, 0),
        (0, 0),
        (0, 999_000_000),
        (45, 0),
        (119, 0),
        (120, 0),
        (150, 0),
        (599, 0),
        (600, 0),
        (179 * 60 + 59, 0),
        (3 * 3600, 0),
        (3 * 3600 + 5 * 60, 0),
        (8 * 3600 - 1, 0),
        (8 * 3600, 0),
        (47 * 3600 + 3599, 0),
        (48 * 3600, 0),
        (50 * 3600, 0),
        (8 * 86_400 - 1, 0),
        (8 * 86_400, 0),
        (729 * 86_400, 0),
        (730 * 86_400, 0),
        (775 * 86_400, 0),
        (8 * 365 * 86_400 - 1, 0),
        (8 * 365 * 86_400, 0),
        (30 * 365 * 86_400, 0),
    ];
    let mut out = String::new();
    for &(seconds, nanos) in cases {
        let nanos = i32::try_from(nanos).expect("fits");
        let d = jiff::SignedDuration::new(seconds, nanos);
        out.push_str(&format!("{d:#}\t{}\n", human_duration(d)));
    }
    check("human_duration", &out);
}

fn config_map(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default", "uid": "5c1f0a3e-0000-4000-8000-000000000001",
            "resourceVersion": "42", "creationTimestamp": ago(60), "labels": {"app": "web"}},
        "data": {"index.html": "hello"}})
}

fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("serializable");
    text.push('\n');
    text
}

#[test]
fn table_with_each_include_object_mode() {
    let objects = [config_map("web-content")];
    let list_metadata = json!({"resourceVersion": "42"});
    for (include, name) in [
        (IncludeObject::None, "table_include_none"),
        (IncludeObject::Metadata, "table_include_metadata"),
        (IncludeObject::Object, "table_include_object"),
    ] {
        let table = table(
            "",
            "configmaps",
            &objects,
            now(),
            include,
            list_metadata.clone(),
        );
        check(name, &pretty(&table));
    }
}

#[test]
fn table_marks_finished_pods_and_defaults_metadata() {
    let pods = [
        json!({"metadata": {"name": "done", "creationTimestamp": ago(10)}, "status": {"phase": "Succeeded"}}),
        json!({"metadata": {"name": "failed", "creationTimestamp": ago(10)}, "status": {"phase": "Failed"}}),
        json!({"metadata": {"name": "running", "creationTimestamp": ago(10)}, "status": {"phase": "Running"}}),
    ];
    let table = table("", "pods", &pods, now(), IncludeObject::None, Value::Null);
    assert_eq!(table["metadata"], json!({}));
    let conditions: Vec<&Value> = table["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| &row["conditions"])
        .collect();
    assert_eq!(
        conditions,
        [
            &json!([{"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}]),
            &json!([{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]),
            &Value::Null,
        ]
    );
    assert!(
        table["rows"][2].get("conditions").is_none(),
        "no conditions key for a running pod"
    );
}

#[test]
fn column_definitions() {
    let resources = [
        ("", "pods"),
        ("", "services"),
        ("", "endpoints"),
        ("", "nodes"),
        ("", "namespaces"),
        ("", "events"),
        ("", "configmaps"),
        ("", "secrets"),
        ("", "serviceaccounts"),
        ("apps", "deployments"),
        ("apps", "replicasets"),
        ("apps", "daemonsets"),
        ("discovery.k8s.io", "endpointslices"),
        ("coordination.k8s.io", "leases"),
    ];
    let mut out = String::new();
    for (group, resource) in resources {
        let group = if group.is_empty() { "core" } else { group };
        out.push_str(&format!("{group}/{resource}\n"));
        for c in printers::columns(group, resource) {
            let description: String = c.description.chars().take(60).collect();
            out.push_str(&format!(
                "  {:<18} {:<8} {:<5} {} {description}\n",
                c.name, c.kind, c.format, c.priority
            ));
        }
    }
    check("column_definitions", &out);
}

/// Whatever the JSON, every printer answers one cell per column and never panics.
#[test]
fn malformed_objects_give_full_rows() {
    let malformed = [
        json!(null),
        json!("a string"),
        json!([1, 2]),
        json!({"metadata": 5, "spec": "x", "status": [1]}),
        json!({"metadata": {"name": 7, "creationTimestamp": 12, "deletionTimestamp": "x", "labels": [1]},
            "spec": {"containers": "no", "ports": [null, 3, {"port": "80"}], "replicas": "three",
                "selector": {"matchLabels": {"a": 1}, "matchExpressions": [null]},
                "readinessGates": [null], "initContainers": [5]},
            "status": {"containerStatuses": [null, {"state": {"terminated": "yes"}}],
                "initContainerStatuses": [{"state": {"waiting": 1}, "restartCount": 1e30}],
                "conditions": "none", "podIPs": [null], "loadBalancer": {"ingress": [1]}},
            "subsets": [{"addresses": [null], "ports": [null]}],
            "endpoints": [{"addresses": [3]}], "involvedObject": "pod", "series": {},
            "data": "text", "secrets": {}}),
    ];
    let resources = [
        ("", "pods"),
        ("", "services"),
        ("", "endpoints"),
        ("", "nodes"),
        ("", "namespaces"),
        ("", "events"),
        ("events.k8s.io", "events"),
        ("", "configmaps"),
        ("", "secrets"),
        ("", "serviceaccounts"),
        ("apps", "deployments"),
        ("apps", "replicasets"),
        ("apps", "daemonsets"),
        ("discovery.k8s.io", "endpointslices"),
        ("coordination.k8s.io", "leases"),
        ("example.com", "widgets"),
    ];
    for (group, resource) in resources {
        let width = printers::columns(group, resource).len();
        for obj in &malformed {
            let cells = printers::row(group, resource, obj, now());
            assert_eq!(cells.len(), width, "{group}/{resource} for {obj}");
        }
    }
}

#[test]
fn watch_events_after_the_first_carry_no_column_definitions() {
    let objects = [config_map("web-content")];
    let with = table(
        "",
        "configmaps",
        &objects,
        now(),
        IncludeObject::Metadata,
        json!({}),
    );
    let without = printers::table_without_headers(
        "",
        "configmaps",
        &objects,
        now(),
        IncludeObject::Metadata,
        json!({}),
    );
    assert_eq!(without["columnDefinitions"], Value::Null);
    assert_eq!(without["rows"], with["rows"]);
    assert_eq!(with["columnDefinitions"].as_array().map(Vec::len), Some(3));
}
