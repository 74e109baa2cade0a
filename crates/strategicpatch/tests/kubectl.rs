//! Patches as kubectl 1.32 and other clients really send them, applied to objects as the API
//! server stores them, through a schema read from k8s-openapi's definitions and our tag table.

mod common;

use common::{OpenApiSchema, openapi_schema};
use serde_json::{Value, json};
use strategicpatch::{merge_patch, strategic_merge};

const DEPLOYMENT: &str = "io.k8s.api.apps.v1.Deployment";
const SERVICE: &str = "io.k8s.api.core.v1.Service";
const POD: &str = "io.k8s.api.core.v1.Pod";

fn apply(schema: &OpenApiSchema, original: &Value, patch: Value, root: &str) -> Value {
    match strategic_merge(original, &patch, schema, root) {
        Ok(merged) => merged,
        Err(error) => panic!("patch {patch} failed: {error}"),
    }
}

/// A Deployment as the API server stores it after `kubectl apply` and defaulting.
fn stored_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "uid": "6f1c7d1e-0000-4000-8000-000000000001",
            "resourceVersion": "42",
            "generation": 1,
            "labels": {"app": "web"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"old\":true}\n"}
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "nginx:1.25",
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                            "resources": {},
                            "terminationMessagePath": "/dev/termination-log",
                            "terminationMessagePolicy": "File",
                            "imagePullPolicy": "IfNotPresent"
                        },
                        {"name": "sidecar", "image": "busybox:1.36", "imagePullPolicy": "IfNotPresent"}
                    ],
                    "restartPolicy": "Always",
                    "terminationGracePeriodSeconds": 30,
                    "dnsPolicy": "ClusterFirst",
                    "securityContext": {},
                    "schedulerName": "default-scheduler"
                }
            }
        },
        "status": {
            "observedGeneration": 1,
            "replicas": 1,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}
            ]
        }
    })
}

/// Applies `edit` to a copy of `value` at the JSON pointer `pointer`.
fn edited(mut value: Value, pointer: &str, edit: impl FnOnce(&mut Value)) -> Value {
    edit(
        value
            .pointer_mut(pointer)
            .unwrap_or_else(|| panic!("no {pointer}")),
    );
    value
}

#[test]
fn apply_changing_image_and_replicas() {
    let schema = openapi_schema();
    let patch = json!({
        "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"new\":true}\n"}},
        "spec": {
            "replicas": 3,
            "template": {"spec": {
                "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
                "containers": [{"image": "nginx:1.27", "name": "web"}]
            }}
        }
    });
    let expected = edited(stored_deployment(), "/spec/replicas", |v| *v = json!(3));
    let expected = edited(expected, "/spec/template/spec/containers/0/image", |v| {
        *v = json!("nginx:1.27")
    });
    let expected = edited(
        expected,
        "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration",
        |v| *v = json!("{\"new\":true}\n"),
    );
    assert_eq!(
        apply(&schema, &stored_deployment(), patch, DEPLOYMENT),
        expected
    );
}

#[test]
fn apply_removing_an_env_var() {
    let schema = openapi_schema();
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
        "containers": [{
            "$setElementOrder/env": [{"name": "A"}],
            "env": [{"$patch": "delete", "name": "B"}],
            "name": "web"
        }]
    }}}});
    let expected = edited(
        stored_deployment(),
        "/spec/template/spec/containers/0/env",
        |v| *v = json!([{"name": "A", "value": "1"}]),
    );
    assert_eq!(
        apply(&schema, &stored_deployment(), patch, DEPLOYMENT),
        expected
    );
}

#[test]
fn apply_adding_an_env_var_in_the_middle() {
    let schema = openapi_schema();
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
        "containers": [{
            "$setElementOrder/env": [{"name": "A"}, {"name": "AB"}, {"name": "B"}],
            "env": [{"name": "AB", "value": "x"}],
            "name": "web"
        }]
    }}}});
    let merged = apply(&schema, &stored_deployment(), patch, DEPLOYMENT);
    assert_eq!(
        merged.pointer("/spec/template/spec/containers/0/env"),
        Some(
            &json!([{"name": "A", "value": "1"}, {"name": "AB", "value": "x"}, {"name": "B", "value": "2"}])
        )
    );
}

#[test]
fn apply_deleting_a_container() {
    let schema = openapi_schema();
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "web"}],
        "containers": [{"$patch": "delete", "name": "sidecar"}]
    }}}});
    let expected = edited(stored_deployment(), "/spec/template/spec/containers", |v| {
        if let Some(containers) = v.as_array_mut() {
            containers.truncate(1);
        }
    });
    assert_eq!(
        apply(&schema, &stored_deployment(), patch, DEPLOYMENT),
        expected
    );
}

#[test]
fn apply_adding_a_container_at_the_end() {
    let schema = openapi_schema();
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}, {"name": "metrics"}],
        "containers": [{"name": "metrics", "image": "prom/exporter", "ports": [{"containerPort": 9100}]}]
    }}}});
    let merged = apply(&schema, &stored_deployment(), patch, DEPLOYMENT);
    let names: Vec<&str> = merged["spec"]["template"]["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|container| container["name"].as_str())
        .collect();
    assert_eq!(names, ["web", "sidecar", "metrics"]);
    assert_eq!(
        merged["spec"]["template"]["spec"]["containers"][2]["ports"],
        json!([{"containerPort": 9100}])
    );
}

#[test]
fn apply_switching_deployment_strategy_to_recreate_clears_rolling_update() {
    let schema = openapi_schema();
    for patch in [
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": null, "type": "Recreate"}}}),
    ] {
        let merged = apply(&schema, &stored_deployment(), patch, DEPLOYMENT);
        assert_eq!(merged["spec"]["strategy"], json!({"type": "Recreate"}));
    }
}

#[test]
fn status_conditions_merge_by_type() {
    let schema = openapi_schema();
    let patch = json!({"status": {"conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}});
    let merged = apply(&schema, &stored_deployment(), patch, DEPLOYMENT);
    assert_eq!(
        merged["status"]["conditions"],
        json!([
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
        ])
    );
}

#[test]
fn adding_a_label_keeps_the_others() {
    let schema = openapi_schema();
    let patch = json!({"metadata": {"labels": {"tier": "frontend"}}});
    let merged = apply(&schema, &stored_deployment(), patch, DEPLOYMENT);
    assert_eq!(
        merged["metadata"]["labels"],
        json!({"app": "web", "tier": "frontend"})
    );
    // kubectl label app-
    let merged = apply(
        &schema,
        &merged,
        json!({"metadata": {"labels": {"app": null}}}),
        DEPLOYMENT,
    );
    assert_eq!(merged["metadata"]["labels"], json!({"tier": "frontend"}));
}

#[test]
fn finalizers_merge_as_a_set() {
    let schema = openapi_schema();
    let original = json!({"metadata": {"name": "x", "finalizers": ["a.example/one"]}});
    let patch = json!({"metadata": {
        "$setElementOrder/finalizers": ["a.example/one", "b.example/two"],
        "finalizers": ["b.example/two", "a.example/one"]
    }});
    let error = strategic_merge(&original, &patch, &schema, DEPLOYMENT).unwrap_err();
    assert!(error.to_string().contains("doesn't match"), "{error}");
    let patch = json!({"metadata": {
        "$setElementOrder/finalizers": ["a.example/one", "b.example/two"],
        "finalizers": ["b.example/two"]
    }});
    let merged = apply(&schema, &original, patch, DEPLOYMENT);
    assert_eq!(
        merged["metadata"]["finalizers"],
        json!(["a.example/one", "b.example/two"])
    );
    let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a.example/one"]}});
    let merged = apply(&schema, &merged, patch, DEPLOYMENT);
    assert_eq!(merged["metadata"]["finalizers"], json!(["b.example/two"]));
}

#[test]
fn apply_changing_a_service_port() {
    let schema = openapi_schema();
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "selector": {"app": "web"},
            "type": "ClusterIP",
            "clusterIP": "10.96.0.10",
            "ports": [
                {"name": "http", "port": 80, "targetPort": 80, "protocol": "TCP"},
                {"name": "metrics", "port": 9100, "targetPort": 9100, "protocol": "TCP"}
            ]
        }
    });
    let patch = json!({"spec": {
        "$setElementOrder/ports": [{"port": 8080}, {"port": 9100}],
        "ports": [{"name": "http", "port": 8080, "targetPort": 8080}, {"$patch": "delete", "port": 80}]
    }});
    let merged = apply(&schema, &service, patch, SERVICE);
    assert_eq!(
        merged["spec"]["ports"],
        json!([
            {"name": "http", "port": 8080, "targetPort": 8080},
            {"name": "metrics", "port": 9100, "targetPort": 9100, "protocol": "TCP"}
        ])
    );
    assert_eq!(merged["spec"]["clusterIP"], json!("10.96.0.10"));
}

#[test]
fn pod_volume_source_switch_uses_retain_keys() {
    let schema = openapi_schema();
    let pod = json!({
        "metadata": {"name": "p"},
        "spec": {
            "containers": [{"name": "c", "image": "busybox", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "emptyDir": {}}, {"name": "tmp", "emptyDir": {"medium": "Memory"}}]
        }
    });
    let patch = json!({"spec": {
        "$setElementOrder/volumes": [{"name": "data"}, {"name": "tmp"}],
        "volumes": [{"$retainKeys": ["configMap", "name"], "configMap": {"name": "cfg"}, "name": "data"}]
    }});
    let merged = apply(&schema, &pod, patch, POD);
    assert_eq!(
        merged["spec"]["volumes"],
        json!([{"name": "data", "configMap": {"name": "cfg"}}, {"name": "tmp", "emptyDir": {"medium": "Memory"}}])
    );
}

#[test]
fn tolerations_are_atomic() {
    let schema = openapi_schema();
    let pod = json!({"spec": {"tolerations": [{"key": "a", "operator": "Exists"}]}});
    let patch = json!({"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}});
    let merged = apply(&schema, &pod, patch, POD);
    assert_eq!(
        merged["spec"]["tolerations"],
        json!([{"key": "b", "operator": "Exists"}])
    );
}

#[test]
fn kubectl_patch_adding_a_container_without_order_prepends_it_like_upstream() {
    let schema = openapi_schema();
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "debug", "image": "busybox"}]}}}});
    let merged = apply(&schema, &stored_deployment(), patch, DEPLOYMENT);
    let names: Vec<&str> = merged["spec"]["template"]["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|container| container["name"].as_str())
        .collect();
    assert_eq!(names, ["debug", "web", "sidecar"]);
}

#[test]
fn kubectl_scale_merge_patch_on_the_scale_subresource() {
    let scale = json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {"name": "web", "namespace": "default", "resourceVersion": "42"},
        "spec": {"replicas": 1},
        "status": {"replicas": 1, "selector": "app=web"}
    });
    let merged = merge_patch(&scale, &json!({"spec": {"replicas": 5}}));
    assert_eq!(merged["spec"], json!({"replicas": 5}));
    assert_eq!(merged["status"], scale["status"]);
}
