//! Test vectors built the way client-go builds them: typed messages encoded with prost
//! (k8s-pb), wrapped in `runtime.Unknown` behind the `k8s\x00` magic, then decoded and
//! compared with the JSON a Go kube-apiserver would have marshalled.
//!
//! Go's marshaller writes every non-pointer field, zero or not, so the builders below set
//! those fields to `Some(zero)` explicitly (prost would otherwise leave them out).

use std::collections::BTreeMap;

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::core::v1 as core;
use k8s_pb::api::discovery::v1 as discovery;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::{Value, json};

fn body(api_version: &str, kind: &str, object: &impl Message) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(object.encode_to_vec()),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut out = b"k8s\x00".to_vec();
    out.extend(unknown.encode_to_vec());
    out
}

fn decode(api_version: &str, kind: &str, object: &impl Message) -> Value {
    kubeproto::decode(&body(api_version, kind, object)).unwrap()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn s(text: &str) -> Option<String> {
    Some(text.to_string())
}

/// ObjectMeta as Go writes it: every non-pointer field present, a zero creationTimestamp as an
/// empty message.
fn go_meta(name: &str, labels: &[(&str, &str)]) -> meta::ObjectMeta {
    meta::ObjectMeta {
        name: s(name),
        generate_name: s(""),
        namespace: s(""),
        self_link: s(""),
        uid: s(""),
        resource_version: s(""),
        generation: Some(0),
        creation_timestamp: Some(meta::Time::default()),
        labels: map(labels),
        ..Default::default()
    }
}

/// A Container as Go writes it after `kubectl create deployment --image`.
fn go_container(name: &str, image: &str) -> core::Container {
    core::Container {
        name: s(name),
        image: s(image),
        working_dir: s(""),
        resources: Some(core::ResourceRequirements::default()),
        termination_message_path: s(""),
        image_pull_policy: s(""),
        stdin: Some(false),
        stdin_once: Some(false),
        tty: Some(false),
        termination_message_policy: s(""),
        ..Default::default()
    }
}

/// PodSpec non-pointer scalars, all zero, as Go writes them.
fn go_pod_spec(containers: Vec<core::Container>) -> core::PodSpec {
    core::PodSpec {
        containers,
        restart_policy: s(""),
        dns_policy: s(""),
        service_account_name: s(""),
        service_account: s(""),
        node_name: s(""),
        host_network: Some(false),
        host_pid: Some(false),
        host_ipc: Some(false),
        hostname: s(""),
        subdomain: s(""),
        scheduler_name: s(""),
        priority_class_name: s(""),
        ..Default::default()
    }
}

#[test]
fn kubectl_create_deployment() {
    let labels = [("app", "redis")];
    let deployment = apps::Deployment {
        metadata: Some(go_meta("redis", &labels)),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(1),
            selector: Some(meta::LabelSelector {
                match_labels: map(&labels),
                match_expressions: vec![],
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(go_meta("", &labels)),
                spec: Some(go_pod_spec(vec![go_container("redis", "redis")])),
            }),
            strategy: Some(apps::DeploymentStrategy {
                r#type: s(""),
                rolling_update: None,
            }),
            min_ready_seconds: Some(0),
            paused: Some(false),
            ..Default::default()
        }),
        status: Some(apps::DeploymentStatus {
            observed_generation: Some(0),
            replicas: Some(0),
            updated_replicas: Some(0),
            ready_replicas: Some(0),
            available_replicas: Some(0),
            unavailable_replicas: Some(0),
            ..Default::default()
        }),
    };
    assert_eq!(
        decode("apps/v1", "Deployment", &deployment),
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "redis", "labels": {"app": "redis"}},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "redis"}},
                "template": {
                    "metadata": {"labels": {"app": "redis"}},
                    "spec": {"containers": [{"name": "redis", "image": "redis", "resources": {}}]}
                },
                "strategy": {}
            },
            "status": {}
        })
    );
}

#[test]
fn explicit_zero_replicas_survives_because_the_go_field_is_a_pointer() {
    let deployment = apps::Deployment {
        metadata: Some(go_meta("idle", &[])),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(0),
            revision_history_limit: Some(0),
            min_ready_seconds: Some(0),
            ..Default::default()
        }),
        status: None,
    };
    assert_eq!(
        decode("apps/v1", "Deployment", &deployment),
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "idle"},
            "spec": {"replicas": 0, "revisionHistoryLimit": 0}
        })
    );
}

fn go_service_port(
    name: &str,
    port: i32,
    target: IntOrString,
    node_port: i32,
) -> core::ServicePort {
    core::ServicePort {
        name: s(name),
        protocol: s("TCP"),
        port: Some(port),
        target_port: Some(target),
        node_port: Some(node_port),
        app_protocol: None,
    }
}

fn go_service_spec(
    service_type: &str,
    ports: Vec<core::ServicePort>,
    selector: &[(&str, &str)],
) -> core::ServiceSpec {
    core::ServiceSpec {
        ports,
        selector: map(selector),
        cluster_ip: s(""),
        r#type: s(service_type),
        session_affinity: s(""),
        load_balancer_ip: s(""),
        external_name: s(""),
        external_traffic_policy: s(""),
        health_check_node_port: Some(0),
        publish_not_ready_addresses: Some(false),
        ..Default::default()
    }
}

#[test]
fn kubectl_create_service_nodeport() {
    let int_8080 = IntOrString {
        r#type: Some(0),
        int_val: Some(8080),
        str_val: s(""),
    };
    let service = core::Service {
        metadata: Some(go_meta("web", &[("app", "web")])),
        spec: Some(go_service_spec(
            "NodePort",
            vec![go_service_port("80-8080", 80, int_8080, 30080)],
            &[("app", "web")],
        )),
        status: Some(core::ServiceStatus {
            load_balancer: Some(core::LoadBalancerStatus::default()),
            conditions: vec![],
        }),
    };
    assert_eq!(
        decode("v1", "Service", &service),
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080, "nodePort": 30080}],
                "selector": {"app": "web"},
                "type": "NodePort"
            },
            "status": {"loadBalancer": {}}
        })
    );
}

#[test]
fn service_with_named_and_unset_target_ports() {
    let named = IntOrString {
        r#type: Some(1),
        int_val: Some(0),
        str_val: s("http"),
    };
    let unset = IntOrString {
        r#type: Some(0),
        int_val: Some(0),
        str_val: s(""),
    };
    let service = core::Service {
        metadata: Some(go_meta("api", &[])),
        spec: Some(go_service_spec(
            "ClusterIP",
            vec![
                go_service_port("web", 80, named, 0),
                go_service_port("metrics", 9090, unset, 0),
            ],
            &[],
        )),
        status: None,
    };
    let decoded = decode("v1", "Service", &service);
    assert_eq!(
        decoded["spec"],
        json!({
            "ports": [
                {"name": "web", "protocol": "TCP", "port": 80, "targetPort": "http"},
                {"name": "metrics", "protocol": "TCP", "port": 9090}
            ],
            "type": "ClusterIP"
        })
    );
}

#[test]
fn kubectl_create_namespace() {
    let namespace = core::Namespace {
        metadata: Some(go_meta("team-a", &[])),
        spec: Some(core::NamespaceSpec::default()),
        status: Some(core::NamespaceStatus {
            phase: s(""),
            conditions: vec![],
        }),
    };
    assert_eq!(
        decode("v1", "Namespace", &namespace),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}, "spec": {}, "status": {}})
    );
}

#[test]
fn configmap_with_data_and_binary_data() {
    let configmap = core::ConfigMap {
        metadata: Some(go_meta("settings", &[])),
        immutable: None,
        data: map(&[("mode", "fast"), ("empty", "")]),
        binary_data: [("blob".to_string(), vec![0u8, 1, 2, 255])]
            .into_iter()
            .collect(),
    };
    assert_eq!(
        decode("v1", "ConfigMap", &configmap),
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings"},
            "data": {"empty": "", "mode": "fast"},
            "binaryData": {"blob": "AAEC/w=="}
        })
    );
    let frozen = core::ConfigMap {
        immutable: Some(false),
        ..configmap
    };
    assert_eq!(
        decode("v1", "ConfigMap", &frozen)["immutable"],
        json!(false)
    );
}

#[test]
fn kubectl_create_serviceaccount() {
    let account = core::ServiceAccount {
        metadata: Some(go_meta("robot", &[])),
        ..Default::default()
    };
    assert_eq!(
        decode("v1", "ServiceAccount", &account),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "robot"}})
    );
}

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Quantity { string: s(v) }))
        .collect()
}

#[test]
fn pod_with_times_tolerations_quantities_probes_and_volumes() {
    let mut container = go_container("app", "nginx:1.27");
    container.resources = Some(core::ResourceRequirements {
        limits: quantities(&[("cpu", "500m"), ("memory", "128Mi")]),
        requests: quantities(&[("cpu", "250m")]),
        claims: vec![],
    });
    container.ports = vec![core::ContainerPort {
        name: s(""),
        host_port: Some(0),
        container_port: Some(80),
        protocol: s("TCP"),
        host_ip: s(""),
    }];
    container.env = vec![core::EnvVar {
        name: s("MODE"),
        value: s(""),
        value_from: Some(core::EnvVarSource {
            config_map_key_ref: Some(core::ConfigMapKeySelector {
                local_object_reference: Some(core::LocalObjectReference {
                    name: s("settings"),
                }),
                key: s("mode"),
                optional: Some(false),
            }),
            ..Default::default()
        }),
    }];
    container.liveness_probe = Some(core::Probe {
        handler: Some(core::ProbeHandler {
            http_get: Some(core::HttpGetAction {
                path: s("/healthz"),
                port: Some(IntOrString {
                    r#type: Some(0),
                    int_val: Some(8080),
                    str_val: s(""),
                }),
                host: s(""),
                scheme: s(""),
                http_headers: vec![],
            }),
            ..Default::default()
        }),
        initial_delay_seconds: Some(0),
        timeout_seconds: Some(0),
        period_seconds: Some(10),
        success_threshold: Some(0),
        failure_threshold: Some(0),
        termination_grace_period_seconds: None,
    });
    container.security_context = Some(core::SecurityContext {
        privileged: Some(false),
        run_as_user: Some(0),
        run_as_non_root: Some(false),
        ..Default::default()
    });
    let mut spec = go_pod_spec(vec![container]);
    spec.termination_grace_period_seconds = Some(0);
    spec.enable_service_links = Some(false);
    spec.tolerations = vec![core::Toleration {
        key: s("node.kubernetes.io/not-ready"),
        operator: s("Exists"),
        value: s(""),
        effect: s("NoExecute"),
        toleration_seconds: Some(300),
    }];
    spec.volumes = vec![core::Volume {
        name: s("config"),
        volume_source: Some(core::VolumeSource {
            config_map: Some(core::ConfigMapVolumeSource {
                local_object_reference: Some(core::LocalObjectReference {
                    name: s("settings"),
                }),
                items: vec![],
                default_mode: Some(420),
                optional: None,
            }),
            ..Default::default()
        }),
    }];
    spec.security_context = Some(core::PodSecurityContext {
        // Unpacked repeated int64 (k8s-pb marks it packed = "false", like Go's gogo output).
        supplemental_groups: vec![1000, 2000],
        ..Default::default()
    });
    let mut metadata = go_meta("web-0", &[]);
    metadata.namespace = s("default");
    metadata.uid = s("0b7a4a5e-1111-2222-3333-444455556666");
    metadata.creation_timestamp = Some(meta::Time {
        seconds: Some(1_795_692_600),
        nanos: Some(0),
    });
    metadata.managed_fields = vec![meta::ManagedFieldsEntry {
        manager: s("kubectl-create"),
        operation: s("Update"),
        api_version: s("v1"),
        time: Some(meta::Time {
            seconds: Some(1_795_692_600),
            nanos: Some(0),
        }),
        fields_type: s("FieldsV1"),
        fields_v1: Some(meta::FieldsV1 {
            raw: Some(br#"{"f:spec":{"f:containers":{}}}"#.to_vec()),
        }),
        subresource: s(""),
    }];
    let pod = core::Pod {
        metadata: Some(metadata),
        spec: Some(spec),
        status: Some(core::PodStatus::default()),
    };

    assert_eq!(
        decode("v1", "Pod", &pod),
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "web-0",
                "namespace": "default",
                "uid": "0b7a4a5e-1111-2222-3333-444455556666",
                "creationTimestamp": "2026-11-26T11:30:00Z",
                "managedFields": [{
                    "manager": "kubectl-create",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": "2026-11-26T11:30:00Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:spec": {"f:containers": {}}}
                }]
            },
            "spec": {
                "volumes": [{"name": "config", "configMap": {"name": "settings", "defaultMode": 420}}],
                "containers": [{
                    "name": "app",
                    "image": "nginx:1.27",
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "env": [{"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode", "optional": false}}}],
                    "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "250m"}},
                    "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 10},
                    "securityContext": {"privileged": false, "runAsUser": 0, "runAsNonRoot": false}
                }],
                "terminationGracePeriodSeconds": 0,
                "securityContext": {"supplementalGroups": [1000, 2000]},
                "tolerations": [{
                    "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300
                }],
                "enableServiceLinks": false
            },
            "status": {}
        })
    );
}

#[test]
fn packed_and_unpacked_repeated_scalars_decode_alike() {
    // PodSecurityContext.supplementalGroups is field 4 of PodSecurityContext (field 14 of
    // PodSpec, field 2 of Pod). Build the packed encoding by hand.
    let packed_groups = [0x22, 0x04, 0xe8, 0x07, 0xd0, 0x0f]; // field 4, len 4: 1000, 2000
    let security_context = [&[0x72, packed_groups.len() as u8][..], &packed_groups].concat();
    let pod_raw = [&[0x12, security_context.len() as u8][..], &security_context].concat();
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: s("v1"),
            kind: s("Pod"),
        }),
        raw: Some(pod_raw),
        content_encoding: None,
        content_type: None,
    };
    let mut packed_body = b"k8s\x00".to_vec();
    packed_body.extend(unknown.encode_to_vec());

    let unpacked = core::Pod {
        spec: Some(core::PodSpec {
            security_context: Some(core::PodSecurityContext {
                supplemental_groups: vec![1000, 2000],
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let expected = json!({"apiVersion": "v1", "kind": "Pod", "spec": {"securityContext": {"supplementalGroups": [1000, 2000]}}});
    assert_eq!(kubeproto::decode(&packed_body).unwrap(), expected);
    assert_eq!(decode("v1", "Pod", &unpacked), expected);
}

#[test]
fn endpointslice_keeps_pointer_zero_values() {
    let slice = discovery::EndpointSlice {
        metadata: Some(go_meta("web-abc", &[("kubernetes.io/service-name", "web")])),
        address_type: s("IPv4"),
        endpoints: vec![discovery::Endpoint {
            addresses: vec!["10.244.0.5".into()],
            conditions: Some(discovery::EndpointConditions {
                ready: Some(true),
                serving: Some(true),
                terminating: Some(false),
            }),
            node_name: s("node-1"),
            ..Default::default()
        }],
        ports: vec![discovery::EndpointPort {
            name: s(""),
            protocol: s("TCP"),
            port: Some(80),
            app_protocol: None,
        }],
    };
    assert_eq!(
        decode("discovery.k8s.io/v1", "EndpointSlice", &slice),
        json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": "web-abc", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [{
                "addresses": ["10.244.0.5"],
                "conditions": {"ready": true, "serving": true, "terminating": false},
                "nodeName": "node-1"
            }],
            "ports": [{"name": "", "protocol": "TCP", "port": 80}]
        })
    );
}

#[test]
fn lease_with_micro_times() {
    let lease = k8s_pb::api::coordination::v1::Lease {
        metadata: Some(go_meta("node-1", &[])),
        spec: Some(k8s_pb::api::coordination::v1::LeaseSpec {
            holder_identity: s("node-1"),
            lease_duration_seconds: Some(40),
            renew_time: Some(meta::MicroTime {
                seconds: Some(1_795_692_600),
                nanos: Some(123_456_789),
            }),
            ..Default::default()
        }),
    };
    assert_eq!(
        decode("coordination.k8s.io/v1", "Lease", &lease)["spec"],
        json!({"holderIdentity": "node-1", "leaseDurationSeconds": 40, "renewTime": "2026-11-26T11:30:00.123456Z"})
    );
}

#[test]
fn scale_and_binding_and_event() {
    let scale = k8s_pb::api::autoscaling::v1::Scale {
        metadata: Some(go_meta("web", &[])),
        spec: Some(k8s_pb::api::autoscaling::v1::ScaleSpec { replicas: Some(0) }),
        status: Some(k8s_pb::api::autoscaling::v1::ScaleStatus {
            replicas: Some(0),
            selector: s(""),
        }),
    };
    // ScaleSpec.replicas is a non-pointer omitempty int32 (dropped); ScaleStatus.replicas has
    // no omitempty (kept).
    assert_eq!(
        decode("autoscaling/v1", "Scale", &scale),
        json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "web"}, "spec": {}, "status": {"replicas": 0}})
    );

    let binding = core::Binding {
        metadata: Some(go_meta("web-0", &[])),
        target: Some(core::ObjectReference {
            kind: s("Node"),
            name: s("node-1"),
            ..Default::default()
        }),
    };
    assert_eq!(
        decode("v1", "Binding", &binding),
        json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "web-0"}, "target": {"kind": "Node", "name": "node-1"}})
    );

    let event = core::Event {
        metadata: Some(go_meta("web-0.1", &[])),
        involved_object: Some(core::ObjectReference {
            kind: s("Pod"),
            name: s("web-0"),
            ..Default::default()
        }),
        reason: s("Scheduled"),
        count: Some(1),
        event_time: Some(meta::MicroTime::default()),
        first_timestamp: Some(meta::Time {
            seconds: Some(1_795_692_600),
            nanos: Some(0),
        }),
        reporting_component: s(""),
        reporting_instance: s(""),
        ..Default::default()
    };
    assert_eq!(
        decode("v1", "Event", &event),
        json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "web-0.1"},
            "involvedObject": {"kind": "Pod", "name": "web-0"},
            "reason": "Scheduled",
            "firstTimestamp": "2026-11-26T11:30:00Z",
            "count": 1,
            "reportingComponent": "",
            "reportingInstance": ""
        })
    );
}

#[test]
fn node_with_capacity_and_addresses() {
    let node = core::Node {
        metadata: Some(go_meta("node-1", &[])),
        spec: Some(core::NodeSpec {
            pod_cidr: s("10.244.0.0/24"),
            pod_cid_rs: vec!["10.244.0.0/24".into()],
            unschedulable: Some(false),
            taints: vec![core::Taint {
                key: s("node-role.kubernetes.io/control-plane"),
                value: s(""),
                effect: s("NoSchedule"),
                time_added: None,
            }],
            ..Default::default()
        }),
        status: Some(core::NodeStatus {
            capacity: quantities(&[("cpu", "2"), ("pods", "110")]),
            addresses: vec![core::NodeAddress {
                r#type: s("InternalIP"),
                address: s("172.18.0.2"),
            }],
            ..Default::default()
        }),
    };
    let decoded = decode("v1", "Node", &node);
    assert_eq!(
        decoded["spec"],
        json!({
            "podCIDR": "10.244.0.0/24",
            "podCIDRs": ["10.244.0.0/24"],
            "taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]
        })
    );
    assert_eq!(
        decoded["status"],
        json!({"capacity": {"cpu": "2", "pods": "110"}, "addresses": [{"type": "InternalIP", "address": "172.18.0.2"}]})
    );
}

#[test]
fn replicaset_and_daemonset() {
    let labels = [("app", "agent")];
    let template = core::PodTemplateSpec {
        metadata: Some(go_meta("", &labels)),
        spec: Some(go_pod_spec(vec![go_container("agent", "agent:1")])),
    };
    let daemonset = apps::DaemonSet {
        metadata: Some(go_meta("agent", &labels)),
        spec: Some(apps::DaemonSetSpec {
            selector: Some(meta::LabelSelector {
                match_labels: BTreeMap::new(),
                match_expressions: vec![meta::LabelSelectorRequirement {
                    key: s("app"),
                    operator: s("In"),
                    values: vec!["agent".into()],
                }],
            }),
            template: Some(template.clone()),
            update_strategy: Some(apps::DaemonSetUpdateStrategy {
                r#type: s("RollingUpdate"),
                rolling_update: Some(apps::RollingUpdateDaemonSet {
                    max_unavailable: Some(IntOrString {
                        r#type: Some(1),
                        int_val: Some(0),
                        str_val: s("10%"),
                    }),
                    max_surge: None,
                }),
            }),
            min_ready_seconds: Some(0),
            revision_history_limit: None,
        }),
        status: None,
    };
    assert_eq!(
        decode("apps/v1", "DaemonSet", &daemonset)["spec"],
        json!({
            "selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["agent"]}]},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "agent", "image": "agent:1", "resources": {}}]}
            },
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}}
        })
    );

    let replicaset = apps::ReplicaSet {
        metadata: Some(go_meta("agent-1", &labels)),
        spec: Some(apps::ReplicaSetSpec {
            replicas: Some(3),
            min_ready_seconds: Some(0),
            selector: Some(meta::LabelSelector {
                match_labels: map(&labels),
                match_expressions: vec![],
            }),
            template: Some(template),
        }),
        status: Some(apps::ReplicaSetStatus {
            replicas: Some(0),
            ..Default::default()
        }),
    };
    let decoded = decode("apps/v1", "ReplicaSet", &replicaset);
    assert_eq!(decoded["spec"]["replicas"], json!(3));
    assert_eq!(
        decoded["status"],
        json!({"replicas": 0}),
        "ReplicaSetStatus.replicas has no omitempty"
    );
}

#[test]
fn unknown_fields_from_a_newer_client_are_reported() {
    let mut raw = core::Namespace {
        metadata: Some(go_meta("n", &[])),
        ..Default::default()
    }
    .encode_to_vec();
    raw.extend([0xa0, 0x06, 0x01]); // field 100, varint 1
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: s("v1"),
            kind: s("Namespace"),
        }),
        raw: Some(raw),
        content_encoding: None,
        content_type: None,
    };
    let mut body = b"k8s\x00".to_vec();
    body.extend(unknown.encode_to_vec());
    let decoded = kubeproto::decode_with_unknown_fields(&body).unwrap();
    assert_eq!(
        decoded.object,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}})
    );
    assert_eq!(
        decoded.unknown_fields,
        vec![kubeproto::UnknownField {
            message: "k8s.io.api.core.v1.Namespace",
            field_number: 100
        }]
    );
}
