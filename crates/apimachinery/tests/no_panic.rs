//! Property: defaulting, admission, preparation, validation and selectors accept any JSON and
//! any selector string without panicking. Objects are generated from the field names the code
//! reads, so the random values land in the deep paths, not just at the top level.

use apimachinery::defaults::{
    apply_defaults, node_admission_defaults, pod_admission_defaults, prepare_for_create,
    prepare_for_update,
};
use apimachinery::selectors::{
    FieldSelector, LabelSelector, label_selector_from_json, object_fields, selector_string,
};
use apimachinery::validation::{validate_create, validate_node_port_range, validate_update};
use apimachinery::{ApiError, FieldError};
use proptest::prelude::*;
use serde_json::{Map, Value};

const KEYS: &[&str] = &[
    "metadata",
    "name",
    "namespace",
    "generateName",
    "labels",
    "annotations",
    "finalizers",
    "generation",
    "uid",
    "ownerReferences",
    "apiVersion",
    "kind",
    "spec",
    "status",
    "containers",
    "initContainers",
    "ephemeralContainers",
    "ports",
    "containerPort",
    "hostPort",
    "protocol",
    "image",
    "imagePullPolicy",
    "selector",
    "matchLabels",
    "matchExpressions",
    "key",
    "operator",
    "values",
    "template",
    "strategy",
    "updateStrategy",
    "rollingUpdate",
    "maxSurge",
    "maxUnavailable",
    "type",
    "clusterIP",
    "clusterIPs",
    "targetPort",
    "port",
    "nodePort",
    "replicas",
    "tolerations",
    "volumes",
    "volumeMounts",
    "mountPath",
    "emptyDir",
    "secret",
    "env",
    "data",
    "binaryData",
    "addressType",
    "endpoints",
    "addresses",
    "subsets",
    "taints",
    "podCIDRs",
    "hostNetwork",
    "restartPolicy",
    "dnsPolicy",
    "sessionAffinity",
    "sessionAffinityConfig",
    "clientIP",
    "timeoutSeconds",
    "ipFamilies",
    "ipFamilyPolicy",
    "livenessProbe",
    "httpGet",
    "exec",
    "command",
    "externalTrafficPolicy",
    "internalTrafficPolicy",
    "priority",
    "priorityClassName",
    "preemptionPolicy",
    "serviceAccountName",
    "involvedObject",
    "leaseDurationSeconds",
    "immutable",
    "activeDeadlineSeconds",
    "terminationGracePeriodSeconds",
    "effect",
    "tolerationSeconds",
    "value",
    "resources",
    "limits",
    "requests",
    "cpu",
    "memory",
    "capacity",
    "allocatable",
    "loadBalancerSourceRanges",
    "externalIPs",
    "schedulingGates",
    "healthCheckNodePort",
    "allocateLoadBalancerNodePorts",
    "externalName",
    "progressDeadlineSeconds",
    "minReadySeconds",
    "nodeName",
    "podIPs",
    "ip",
    "phase",
    "unschedulable",
    "kubernetes.io/metadata.name",
    "app",
];

const STRINGS: &[&str] = &[
    "",
    "None",
    "RollingUpdate",
    "Recreate",
    "OnDelete",
    "Always",
    "Never",
    "TCP",
    "UDP",
    "ClusterIP",
    "NodePort",
    "LoadBalancer",
    "ExternalName",
    "10.96.0.1",
    "::1",
    "10.0.0.0/8",
    "25%",
    "0%",
    "101%",
    "abc-",
    "-",
    "web",
    "a/b/c",
    "In",
    "NotIn",
    "Exists",
    "DoesNotExist",
    "SingleStack",
    "IPv4",
    "IPv6",
    "NoExecute",
    "é",
    "\u{0}",
    "nginx:latest",
    "x@sha256:",
    "system-node-critical",
    "kubernetes",
    "orphan",
    "foregroundDeletion",
    "1Gi",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        prop_oneof![
            Just(i64::MIN),
            Just(i64::MAX),
            Just(-1i64),
            Just(0),
            Just(65536)
        ]
        .prop_map(Value::from),
        Just(Value::from(u64::MAX)),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
        proptest::sample::select(STRINGS).prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(6, 96, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((proptest::sample::select(KEYS), inner), 0..6).prop_map(
                |entries| {
                    let mut m = Map::new();
                    for (k, v) in entries {
                        m.insert(k.to_string(), v);
                    }
                    Value::Object(m)
                }
            ),
        ]
    })
}

const KINDS: &[(&str, &str, &str)] = &[
    ("", "Pod", "pods"),
    ("", "Service", "services"),
    ("", "Namespace", "namespaces"),
    ("", "ConfigMap", "configmaps"),
    ("", "Secret", "secrets"),
    ("", "ServiceAccount", "serviceaccounts"),
    ("", "Endpoints", "endpoints"),
    ("", "Node", "nodes"),
    ("", "Event", "events"),
    ("apps", "Deployment", "deployments"),
    ("apps", "ReplicaSet", "replicasets"),
    ("apps", "DaemonSet", "daemonsets"),
    ("discovery.k8s.io", "EndpointSlice", "endpointslices"),
    ("coordination.k8s.io", "Lease", "leases"),
    ("example.com", "Unknown", "unknowns"),
];

fn render(errs: &[FieldError], group: &str, kind: &str) {
    for e in errs {
        let _ = e.message();
    }
    let _ = ApiError::invalid(group, kind, "x", errs).to_status();
}

proptest! {
    // At least 384 cases; PROPTEST_CASES raises it for a longer soak.
    #![proptest_config(ProptestConfig {
        cases: ProptestConfig::default().cases.max(384),
        ..ProptestConfig::default()
    })]

    #[test]
    fn write_path_never_panics(kind_index in 0..KINDS.len(), mut obj in json_value(), mut other in json_value()) {
        let (group, kind, resource) = KINDS[kind_index];
        let old = other.clone();
        apply_defaults(group, kind, &mut obj);
        if kind == "Pod" {
            let _ = pod_admission_defaults(&mut obj);
        }
        if kind == "Node" {
            node_admission_defaults(&mut obj);
        }
        prepare_for_create(group, kind, &mut obj);
        render(&validate_create(group, kind, &obj), group, kind);
        apply_defaults(group, kind, &mut other);
        prepare_for_update(group, kind, &mut other, &obj);
        render(&validate_update(group, kind, &other, &obj), group, kind);
        render(&validate_update(group, kind, &old, &old), group, kind);
        let _ = validate_node_port_range(&obj, 30000, 32767);
        let _ = object_fields(group, resource, &obj);
    }

    #[test]
    fn selectors_never_panic(text in ".{0,40}", spicy in "[a-z!=(),<> in]{0,24}", v in json_value()) {
        for s in [&text, &spicy] {
            if let Ok(sel) = LabelSelector::parse(s) {
                let _ = sel.to_string();
                let reparsed = LabelSelector::parse(&sel.to_string());
                prop_assert!(reparsed.is_ok(), "canonical form {:?} of {:?} does not parse", sel.to_string(), s);
            }
            if let Ok(f) = FieldSelector::parse(s) {
                let _ = f.convert_for("", "pods");
                let _ = f.to_string();
            }
        }
        let _ = label_selector_from_json(Some(&v));
        let _ = selector_string(&v);
    }
}
