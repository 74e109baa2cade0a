//! apps group: deployments, replicasets, daemonsets.

use serde_json::{Value, json};

use crate::{ago, check, render};

fn template(containers: Value, node_selector: Value) -> Value {
    json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers, "nodeSelector": node_selector}})
}

#[test]
fn deployments() {
    let deployments = vec![
        // `kubectl create deployment web --image=nginx`, rolled out.
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "creationTimestamp": ago(330)},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                "template": template(json!([{"name": "nginx", "image": "nginx"}]), json!(null))},
            "status": {"replicas": 1, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1}}),
        // Scaled to 3 but the controller has not reported yet.
        json!({"metadata": {"name": "worker", "creationTimestamp": ago(5)},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "worker"}},
                "template": template(json!([{"name": "worker", "image": "dockercoins/worker:v0.1"}]), json!(null))}}),
        // replicas absent: the API default is 1.
        json!({"metadata": {"name": "defaulted", "creationTimestamp": ago(7200)},
            "spec": {"selector": {"matchLabels": {"tier": "cache", "app": "redis"},
                    "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]}]},
                "template": template(json!([{"name": "redis", "image": "redis"}, {"name": "exporter", "image": "oliver006/redis_exporter"}]), json!(null))}}),
        json!({"metadata": {"name": "bad-selector", "creationTimestamp": ago(7200)},
            "spec": {"replicas": 0, "selector": {"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}}}),
        json!({"metadata": {"name": "empty-selector"}, "spec": {"replicas": 2, "selector": {}}}),
    ];
    check("deployments", &render("apps", "deployments", &deployments));
}

#[test]
fn replicasets() {
    let replica_sets = vec![
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web-7c5ddbdf54", "creationTimestamp": ago(330)},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "7c5ddbdf54"}},
                "template": template(json!([{"name": "nginx", "image": "nginx"}]), json!(null))},
            "status": {"replicas": 1, "fullyLabeledReplicas": 1, "readyReplicas": 1, "availableReplicas": 1}}),
        json!({"metadata": {"name": "old-5f4d", "creationTimestamp": ago(86_400 * 9)},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}}}, "status": {"replicas": 0}}),
        json!({"metadata": {"name": "no-selector"}}),
    ];
    check("replicasets", &render("apps", "replicasets", &replica_sets));
}

#[test]
fn daemonsets() {
    let daemon_sets = vec![
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "rng", "creationTimestamp": ago(95)},
            "spec": {"selector": {"matchLabels": {"app": "rng"}},
                "template": template(json!([{"name": "rng", "image": "dockercoins/rng:v0.1"}]), json!({"kubernetes.io/os": "linux"}))},
            "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
                "updatedNumberScheduled": 3, "numberAvailable": 2}}),
        json!({"metadata": {"name": "fresh", "creationTimestamp": ago(1)},
            "spec": {"selector": {"matchLabels": {"app": "fresh"}},
                "template": template(json!([{"name": "agent", "image": "busybox"}]), json!({}))}}),
    ];
    check("daemonsets", &render("apps", "daemonsets", &daemon_sets));
}
