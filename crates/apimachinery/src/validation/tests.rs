//! Table-driven checks of validation messages against upstream's wording.

use serde_json::{Value, json};

use super::*;
use crate::defaults::{apply_defaults, prepare_for_create, prepare_for_update};

fn messages(errs: &[FieldError]) -> Vec<String> {
    errs.iter().map(FieldError::message).collect()
}

/// Defaults and create-preparation first, as the API server does, then validation.
fn create(group: &str, kind: &str, mut obj: Value) -> Vec<String> {
    apply_defaults(group, kind, &mut obj);
    prepare_for_create(group, kind, &mut obj);
    messages(&validate_create(group, kind, &obj))
}

fn update(group: &str, kind: &str, mut old: Value, mut new: Value) -> Vec<String> {
    apply_defaults(group, kind, &mut old);
    prepare_for_create(group, kind, &mut old);
    apply_defaults(group, kind, &mut new);
    prepare_for_update(group, kind, &mut new, &old);
    messages(&validate_update(group, kind, &new, &old))
}

const SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

fn pod(name: &str, containers: Value) -> Value {
    json!({"metadata": {"name": name, "namespace": "default"}, "spec": {"containers": containers}})
}

fn deployment(selector: Value, labels: Value) -> Value {
    json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {
        "selector": selector,
        "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}}})
}

fn service(spec: Value) -> Value {
    json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec})
}

#[test]
fn valid_objects_pass() {
    assert!(
        create(
            "",
            "Pod",
            pod("web-1", json!([{"name": "c", "image": "nginx"}]))
        )
        .is_empty()
    );
    assert!(
        create(
            "apps",
            "Deployment",
            deployment(
                json!({"matchLabels": {"app": "web"}}),
                json!({"app": "web"})
            )
        )
        .is_empty()
    );
    assert!(
        create(
            "",
            "Service",
            service(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}))
        )
        .is_empty()
    );
    assert!(create("", "Namespace", json!({"metadata": {"name": "dev"}})).is_empty());
    assert!(
        create(
            "",
            "ConfigMap",
            json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"a.txt": "x"}})
        )
        .is_empty()
    );
    assert!(create("", "Node", json!({"metadata": {"name": "node-1"}})).is_empty());
    let ds = json!({"metadata": {"name": "rng", "namespace": "d"}, "spec": {"selector": {"matchLabels": {"app": "rng"}},
        "template": {"metadata": {"labels": {"app": "rng"}}, "spec": {"containers": [{"name": "rng", "image": "rng:1"}]}}}});
    assert!(create("apps", "DaemonSet", ds).is_empty());
}

#[test]
fn metadata_rules() {
    let cases: Vec<(&str, Value, Vec<String>)> = vec![
        ("Pod", json!({"metadata": {"namespace": "d"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}),
            vec!["metadata.name: Required value: name or generateName is required".into()]),
        ("Pod", json!({"metadata": {"name": "Web", "namespace": "d"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}),
            vec![format!("metadata.name: Invalid value: \"Web\": {SUBDOMAIN}")]),
        // The handler generates the name before validating; without it, this is what remains.
        ("Pod", json!({"metadata": {"generateName": "web-", "namespace": "d"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}),
            vec!["metadata.name: Required value: name or generateName is required".into()]),
        ("Pod", json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}),
            vec!["metadata.namespace: Required value".into()]),
        ("Namespace", json!({"metadata": {"name": "a.b"}}),
            vec!["metadata.name: Invalid value: \"a.b\": must not contain dots".into()]),
        ("Node", json!({"metadata": {"name": "n", "namespace": "x"}}),
            vec!["metadata.namespace: Forbidden: not allowed on this type".into()]),
        ("ConfigMap", json!({"metadata": {"name": "c", "namespace": "d", "labels": {"app": "a b"}}}),
            vec!["metadata.labels: Invalid value: \"a b\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".into()]),
        ("ConfigMap", json!({"metadata": {"name": "c", "namespace": "d", "annotations": {"-x": "1"}}}),
            vec!["metadata.annotations: Invalid value: \"-x\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".into()]),
        ("ConfigMap", json!({"metadata": {"name": "c", "namespace": "d", "finalizers": ["custom"]}}),
            vec!["metadata.finalizers[0]: Invalid value: \"custom\": name is neither a standard finalizer name nor is it fully qualified".into()]),
    ];
    for (kind, obj, want) in cases {
        assert_eq!(create("", kind, obj.clone()), want, "{obj}");
    }
}

#[test]
fn service_names_are_dns1035_labels() {
    let svc =
        json!({"metadata": {"name": "1web", "namespace": "d"}, "spec": {"ports": [{"port": 80}]}});
    assert_eq!(
        create("", "Service", svc),
        vec!["metadata.name: Invalid value: \"1web\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')".to_string()]
    );
}

#[test]
fn metadata_update_rules() {
    let old = json!({"metadata": {"name": "c", "namespace": "d", "uid": "u1"}});
    let new = json!({"metadata": {"name": "c2", "namespace": "e", "uid": "u1"}});
    assert_eq!(
        update("", "ConfigMap", old, new),
        vec![
            "metadata.name: Invalid value: \"c2\": field is immutable".to_string(),
            "metadata.namespace: Invalid value: \"e\": field is immutable".to_string(),
        ]
    );
}

#[test]
fn pod_rules() {
    let cases: Vec<(Value, Vec<String>)> = vec![
        (json!([]), vec!["spec.containers: Required value".into()]),
        (json!([{"name": "c"}]), vec!["spec.containers[0].image: Required value".into()]),
        (json!([{"name": "C_1", "image": "i"}]), vec![format!("spec.containers[0].name: Invalid value: \"C_1\": {LABEL}")]),
        (json!([{"name": "c", "image": "i"}, {"name": "c", "image": "j"}]), vec!["spec.containers[1].name: Duplicate value: \"c\"".into()]),
        (json!([{"name": "c", "image": "i", "ports": [{"containerPort": 70000}]}]),
            vec!["spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive".into()]),
        (json!([{"name": "c", "image": "i", "ports": [{"containerPort": 80, "protocol": "HTTP"}]}]),
            vec!["spec.containers[0].ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"".into()]),
        (json!([{"name": "c", "image": "i", "ports": [{}]}]), vec!["spec.containers[0].ports[0].containerPort: Required value".into()]),
        (json!([{"name": "c", "image": " nginx"}]),
            vec!["spec.containers[0].image: Invalid value: \" nginx\": must not have leading or trailing whitespace".into()]),
        (json!([{"name": "c", "image": "i", "volumeMounts": [{"name": "data", "mountPath": "/d"}]}]),
            vec!["spec.containers[0].volumeMounts[0].name: Not found: \"data\"".into()]),
    ];
    for (containers, want) in cases {
        assert_eq!(
            create("", "Pod", pod("p", containers.clone())),
            want,
            "{containers}"
        );
    }
    let mut bad_policy = pod("p", json!([{"name": "c", "image": "i"}]));
    bad_policy["spec"]["restartPolicy"] = json!("Sometimes");
    bad_policy["spec"]["nodeName"] = json!("Node_1");
    assert_eq!(
        create("", "Pod", bad_policy),
        vec![
            "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"".to_string(),
            format!("spec.nodeName: Invalid value: \"Node_1\": {SUBDOMAIN}"),
        ]
    );
}

#[test]
fn pod_update_rules() {
    let old = pod("p", json!([{"name": "c", "image": "nginx:1"}]));
    let mut image_change = old.clone();
    image_change["spec"]["containers"][0]["image"] = json!("nginx:2");
    assert!(update("", "Pod", old.clone(), image_change).is_empty());
    let mut port_change = old.clone();
    port_change["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80}]);
    let errs = update("", "Pod", old.clone(), port_change);
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n"), "{}", errs[0]);
    let mut more = old.clone();
    more["spec"]["containers"] =
        json!([{"name": "c", "image": "nginx:1"}, {"name": "d", "image": "x"}]);
    assert_eq!(
        update("", "Pod", old, more),
        vec![
            "spec.containers: Forbidden: pod updates may not add or remove containers".to_string()
        ]
    );
}

#[test]
fn pod_updates_may_only_add_tolerations_or_change_their_seconds() {
    let mut old = pod("p", json!([{"name": "c", "image": "nginx:1"}]));
    old["spec"]["tolerations"] =
        json!([{"key": "a", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10}]);
    let mut added = old.clone();
    added["spec"]["tolerations"] = json!([
        {"tolerationSeconds": 20, "effect": "NoExecute", "operator": "Exists", "key": "a"},
        {"key": "b", "operator": "Exists"},
    ]);
    assert_eq!(update("", "Pod", old.clone(), added), Vec::<String>::new());
    let mut changed = old.clone();
    changed["spec"]["tolerations"][0]["effect"] = json!("NoSchedule");
    let errs = update("", "Pod", old, changed);
    assert!(
        errs.contains(&"spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds".to_string()),
        "{errs:?}"
    );
}

#[test]
fn service_rules() {
    let cases: Vec<(Value, Vec<String>)> = vec![
        (json!({}), vec!["spec.ports: Required value".into()]),
        (json!({"clusterIP": "None"}), vec![]),
        (json!({"type": "ExternalName", "externalName": "example.com"}), vec![]),
        // targetPort defaults to port, so it is reported too.
        (json!({"ports": [{"port": 0}]}), vec!["spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive".into(),
            "spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive".into()]),
        (json!({"ports": [{"port": 80, "name": "http"}, {"port": 80, "name": "web"}]}),
            vec!["spec.ports[1]: Duplicate value: core.ServicePort{Name:\"\", Protocol:\"TCP\", AppProtocol:(*string)(nil), Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}, NodePort:0}".into()]),
        (json!({"ports": [{"port": 80, "name": "http"}, {"port": 81, "name": "http"}]}), vec!["spec.ports[1].name: Duplicate value: \"http\"".into()]),
        (json!({"ports": [{"port": 80}, {"port": 81}]}),
            vec!["spec.ports[0].name: Required value".into(), "spec.ports[1].name: Required value".into()]),
        (json!({"ports": [{"port": 80, "targetPort": "HTTP"}]}),
            vec!["spec.ports[0].targetPort: Invalid value: \"HTTP\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into(),
                 "spec.ports[0].targetPort: Invalid value: \"HTTP\": must contain at least one letter (a-z)".into()]),
        (json!({"ports": [{"port": 80, "targetPort": 70000}]}),
            vec!["spec.ports[0].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive".into()]),
        (json!({"ports": [{"port": 80, "protocol": "ICMP"}]}),
            vec!["spec.ports[0].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"".into()]),
        (json!({"ports": [{"port": 80, "nodePort": 30001}]}),
            vec!["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'".into()]),
        (json!({"type": "Magic", "ports": [{"port": 80}]}),
            vec!["spec.type: Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"".into()]),
        (json!({"ports": [{"port": 80}], "selector": {"app": "a b"}}),
            vec!["spec.selector: Invalid value: \"a b\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".into()]),
        (json!({"ports": [{"port": 80}], "clusterIP": "10.96.0.300"}),
            vec!["spec.clusterIPs[0]: Invalid value: \"10.96.0.300\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".into()]),
    ];
    for (spec, want) in cases {
        assert_eq!(create("", "Service", service(spec.clone())), want, "{spec}");
    }
}

#[test]
fn service_cluster_ip_is_immutable() {
    let old = service(json!({"clusterIP": "10.96.0.5", "ports": [{"port": 80}]}));
    let new = service(json!({"clusterIP": "10.96.0.6", "ports": [{"port": 80}]}));
    assert_eq!(
        update("", "Service", old.clone(), new),
        vec![
            "spec.clusterIPs[0]: Invalid value: []string{\"10.96.0.6\"}: may not change once set"
                .to_string()
        ]
    );
    // Omitting the allocated IP keeps it (kubectl apply of a manifest without clusterIP).
    let omitted = service(json!({"ports": [{"port": 8080}]}));
    assert!(update("", "Service", old, omitted).is_empty());
}

#[test]
fn deployment_rules() {
    let cases: Vec<(Value, Vec<String>)> = vec![
        (deployment(json!({"matchLabels": {"app": "web"}}), json!({"app": "x"})),
            vec!["spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"x\"}: `selector` does not match template `labels`".into()]),
        // A nil selector converts to "nothing", which is not empty and matches no labels.
        (deployment(json!(null), json!({"app": "x"})), vec!["spec.selector: Required value".into(),
            "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"x\"}: `selector` does not match template `labels`".into()]),
        (deployment(json!({}), json!({"app": "x"})),
            vec!["spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment".into()]),
        (deployment(json!({"matchExpressions": [{"key": "app", "operator": "In"}]}), json!({"app": "x"})),
            vec!["spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'".into(),
                 "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement{v1.LabelSelectorRequirement{Key:\"app\", Operator:\"In\", Values:[]string(nil)}}}: invalid label selector".into()]),
    ];
    for (obj, want) in cases {
        assert_eq!(create("apps", "Deployment", obj.clone()), want, "{obj}");
    }
    let mut negative = deployment(
        json!({"matchLabels": {"app": "web"}}),
        json!({"app": "web"}),
    );
    negative["spec"]["replicas"] = json!(-1);
    negative["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
    negative["spec"]["strategy"] =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "0%"}});
    assert_eq!(
        create("apps", "Deployment", negative),
        vec![
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0".to_string(),
            "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"".to_string(),
            "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}: may not be 0 when `maxSurge` is 0".to_string(),
        ]
    );
    let mut bad_type = deployment(
        json!({"matchLabels": {"app": "web"}}),
        json!({"app": "web"}),
    );
    bad_type["spec"]["strategy"] = json!({"type": "BlueGreen"});
    assert_eq!(
        create("apps", "Deployment", bad_type),
        vec!["spec.strategy: Unsupported value: apps.DeploymentStrategy{Type:\"BlueGreen\", RollingUpdate:(*apps.RollingUpdateDeployment)(nil)}: supported values: \"Recreate\", \"RollingUpdate\"".to_string()]
    );
}

#[test]
fn controller_selectors_are_immutable() {
    let old = deployment(
        json!({"matchLabels": {"app": "web"}}),
        json!({"app": "web", "v": "2"}),
    );
    let new = deployment(
        json!({"matchLabels": {"app": "web", "v": "2"}}),
        json!({"app": "web", "v": "2"}),
    );
    assert_eq!(
        update("apps", "Deployment", old.clone(), new),
        vec!["spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web\", \"v\":\"2\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable".to_string()]
    );
    let mut scaled = old.clone();
    scaled["spec"]["replicas"] = json!(5);
    assert!(update("apps", "Deployment", old, scaled).is_empty());
}

#[test]
fn daemon_set_rules() {
    let ds = |strategy: Value| {
        json!({"metadata": {"name": "rng", "namespace": "d"}, "spec": {"updateStrategy": strategy,
        "template": {"metadata": {"labels": {"app": "rng"}}, "spec": {"containers": [{"name": "rng", "image": "rng:1"}]}}}})
    };
    assert_eq!(
        create("apps", "DaemonSet", ds(json!({}))),
        vec!["spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"rng\"}: `selector` does not match template `labels`".to_string()]
    );
    let mut both =
        ds(json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}}));
    both["spec"]["selector"] = json!({"matchLabels": {"app": "rng"}});
    assert_eq!(
        create("apps", "DaemonSet", both),
        vec!["spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: intstr.IntOrString{Type:0, IntVal:1, StrVal:\"\"}: may not be set when maxUnavailable is non-zero".to_string()]
    );
}

#[test]
fn smaller_kinds() {
    assert_eq!(
        create("", "ConfigMap", json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"a/b": "x"}})),
        vec!["data[a/b]: Invalid value: \"a/b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')".to_string()]
    );
    assert_eq!(
        create("discovery.k8s.io", "EndpointSlice", json!({"metadata": {"name": "s", "namespace": "d"}, "addressType": "IPv5"})),
        vec!["addressType: Unsupported value: \"IPv5\": supported values: \"FQDN\", \"IPv4\", \"IPv6\"".to_string()]
    );
    assert_eq!(
        create(
            "coordination.k8s.io",
            "Lease",
            json!({"metadata": {"name": "l", "namespace": "d"}, "spec": {"leaseDurationSeconds": 0}})
        ),
        vec!["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0".to_string()]
    );
    assert_eq!(
        create(
            "",
            "Event",
            json!({"metadata": {"name": "e", "namespace": "d"}, "involvedObject": {"namespace": "other"}})
        ),
        vec![
            "involvedObject.namespace: Invalid value: \"other\": does not match event.namespace"
                .to_string()
        ]
    );
    let old_cm =
        json!({"metadata": {"name": "c", "namespace": "d"}, "immutable": true, "data": {"a": "1"}});
    let new_cm =
        json!({"metadata": {"name": "c", "namespace": "d"}, "immutable": true, "data": {"a": "2"}});
    assert_eq!(
        update("", "ConfigMap", old_cm, new_cm),
        vec!["data: Forbidden: field is immutable when `immutable` is set".to_string()]
    );
    assert_eq!(
        update(
            "discovery.k8s.io",
            "EndpointSlice",
            json!({"metadata": {"name": "s", "namespace": "d"}, "addressType": "IPv4"}),
            json!({"metadata": {"name": "s", "namespace": "d"}, "addressType": "IPv6"})
        ),
        vec!["addressType: Invalid value: \"IPv6\": field is immutable".to_string()]
    );
}

#[test]
fn node_port_range_message() {
    let svc = json!({"spec": {"ports": [{"nodePort": 80}]}});
    assert_eq!(
        messages(&validate_node_port_range(&svc, 30000, 32767)),
        vec!["spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767".to_string()]
    );
}

#[test]
fn api_error_from_field_errors() {
    let errs = validate_create(
        "apps",
        "Deployment",
        &deployment(json!({"matchLabels": {"app": "web"}}), json!({"app": "x"})),
    );
    let api = crate::ApiError::invalid("apps", "Deployment", "web", &errs);
    assert!(
        api.message
            .starts_with("Deployment.apps \"web\" is invalid: ["),
        "{}",
        api.message
    );
}
