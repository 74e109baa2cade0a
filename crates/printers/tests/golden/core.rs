//! Core group: pods, services, endpoints, nodes, namespaces, events, configmaps, secrets,
//! serviceaccounts.

use serde_json::{Value, json};

use crate::{ago, check, render};

fn meta(name: &str, age_seconds: i64) -> Value {
    json!({"name": name, "namespace": "default", "creationTimestamp": ago(age_seconds)})
}

fn running(name: &str, restarts: i64) -> Value {
    json!({
        "name": name, "image": "nginx", "ready": true, "started": true, "restartCount": restarts,
        "state": {"running": {"startedAt": ago(300)}}
    })
}

fn pod(name: &str, spec: Value, status: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta(name, 300), "spec": spec, "status": status})
}

fn one_container() -> Value {
    json!({"nodeName": "kube-2", "containers": [{"name": "nginx", "image": "nginx"}]})
}

#[test]
fn pods() {
    let pods = vec![
        pod(
            "web-running",
            one_container(),
            json!({
                "phase": "Running", "podIP": "10.244.2.7", "podIPs": [{"ip": "10.244.2.7"}],
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [running("nginx", 0)]
            }),
        ),
        pod(
            "web-creating",
            one_container(),
            json!({
                "phase": "Pending",
                "containerStatuses": [{"name": "nginx", "ready": false, "restartCount": 0,
                    "state": {"waiting": {"reason": "ContainerCreating"}}}]
            }),
        ),
        pod(
            "web-unscheduled",
            json!({"containers": [{"name": "nginx", "image": "nginx"}]}),
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}),
        ),
        pod(
            "web-crashing",
            one_container(),
            json!({
                "phase": "Running", "podIPs": [{"ip": "10.244.2.8"}],
                "containerStatuses": [{"name": "nginx", "ready": false, "restartCount": 5,
                    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 2m40s"}},
                    "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(150)}}}]
            }),
        ),
        {
            let mut p = pod(
                "web-terminating",
                one_container(),
                json!({"phase": "Running", "podIPs": [{"ip": "10.244.2.9"}],
                    "containerStatuses": [running("nginx", 0)]}),
            );
            p["metadata"]["deletionTimestamp"] = json!(ago(-30));
            p
        },
        pod(
            "job-done",
            one_container(),
            json!({"phase": "Succeeded", "podIPs": [{"ip": "10.244.2.10"}],
                "containerStatuses": [{"name": "nginx", "ready": false, "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
        ),
        pod(
            "job-killed",
            one_container(),
            json!({"phase": "Failed",
                "containerStatuses": [{"name": "nginx", "ready": false, "restartCount": 0,
                    "state": {"terminated": {"exitCode": 137, "signal": 0}}}]}),
        ),
        pod(
            "job-signalled",
            one_container(),
            json!({"phase": "Failed",
                "containerStatuses": [{"name": "nginx", "ready": false, "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0, "signal": 9}}}]}),
        ),
        pod(
            "init-running",
            json!({"nodeName": "kube-1", "initContainers": [{"name": "setup", "image": "busybox"}],
                "containers": [{"name": "app", "image": "nginx"}]}),
            json!({"phase": "Pending",
                "initContainerStatuses": [{"name": "setup", "ready": false, "restartCount": 0,
                    "state": {"running": {"startedAt": ago(10)}}}],
                "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0,
                    "state": {"waiting": {"reason": "PodInitializing"}}}]}),
        ),
        pod(
            "init-crashing",
            json!({"initContainers": [{"name": "a"}, {"name": "b"}], "containers": [{"name": "app"}]}),
            json!({"phase": "Pending",
                "initContainerStatuses": [
                    {"name": "a", "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                    {"name": "b", "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                     "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(40)}}}]}),
        ),
        pod(
            "init-failed",
            json!({"initContainers": [{"name": "a"}], "containers": [{"name": "app"}]}),
            json!({"phase": "Pending",
                "initContainerStatuses": [{"name": "a", "restartCount": 0,
                    "state": {"terminated": {"exitCode": 2, "reason": "Error"}}}]}),
        ),
        pod(
            "sidecar",
            json!({"initContainers": [{"name": "proxy", "restartPolicy": "Always"}],
                "containers": [{"name": "app"}]}),
            json!({"phase": "Running",
                "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
                "initContainerStatuses": [{"name": "proxy", "ready": true, "started": true, "restartCount": 1,
                    "state": {"running": {}}, "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(3600)}}}],
                "containerStatuses": [running("app", 0)]}),
        ),
        pod(
            "one-finished",
            json!({"containers": [{"name": "a"}, {"name": "b"}]}),
            json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [
                    {"name": "a", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                    running("b", 0)]}),
        ),
        {
            let mut p = pod(
                "node-lost",
                one_container(),
                json!({"phase": "Running", "reason": "NodeLost", "containerStatuses": [running("nginx", 0)]}),
            );
            p["metadata"]["deletionTimestamp"] = json!(ago(10));
            p
        },
        pod(
            "gated",
            json!({"containers": [{"name": "a"}], "schedulingGates": [{"name": "wait"}]}),
            json!({"phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
        ),
        pod(
            "gates-and-nomination",
            json!({"containers": [{"name": "a"}],
                "readinessGates": [{"conditionType": "example.com/lb"}, {"conditionType": "example.com/dns"}]}),
            json!({"phase": "Pending", "nominatedNodeName": "kube-3", "podIP": "10.244.3.3",
                "conditions": [{"type": "example.com/lb", "status": "True"}, {"type": "example.com/dns", "status": "False"}]}),
        ),
        json!({}),
    ];
    check("pods", &render("", "pods", &pods));
}

fn service(name: &str, spec: Value, status: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": meta(name, 7200), "spec": spec, "status": status})
}

#[test]
fn services() {
    let services = vec![
        service(
            "kubernetes",
            json!({"type": "ClusterIP", "clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"],
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}),
            json!({}),
        ),
        service(
            "web",
            json!({"type": "NodePort", "clusterIP": "10.96.120.7", "clusterIPs": ["10.96.120.7"],
                "selector": {"app": "nginx"},
                "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80, "nodePort": 32015}]}),
            json!({}),
        ),
        service(
            "lb-pending",
            json!({"type": "LoadBalancer", "clusterIPs": ["10.96.3.4"],
                "selector": {"app": "web", "tier": "front"},
                "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080},
                          {"port": 53, "protocol": "UDP", "nodePort": 30053}]}),
            json!({"loadBalancer": {}}),
        ),
        service(
            "lb-ready",
            json!({"type": "LoadBalancer", "clusterIPs": ["10.96.3.5"], "externalIPs": ["192.0.2.10"],
                "ports": [{"port": 443, "protocol": "TCP", "nodePort": 30443}]}),
            json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}, {"hostname": "lb.example.com"}, {"ip": "203.0.113.9"}]}}),
        ),
        service(
            "db",
            json!({"type": "ExternalName", "externalName": "db.example.com"}),
            json!({}),
        ),
        service(
            "headless",
            json!({"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"], "selector": {"app": "redis"},
                "ports": [{"port": 6379}]}),
            json!({}),
        ),
        service(
            "legacy-fields",
            json!({"clusterIP": "10.96.9.9", "externalIPs": ["198.51.100.1", "198.51.100.2"]}),
            json!({}),
        ),
        json!({}),
    ];
    check("services", &render("", "services", &services));
}

#[test]
fn endpoints() {
    let endpoints = |name: &str, subsets: Value| json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": meta(name, 60), "subsets": subsets});
    let addresses = |ips: &[&str]| -> Value { ips.iter().map(|ip| json!({"ip": ip})).collect() };
    let all = vec![
        endpoints(
            "kubernetes",
            json!([{"addresses": addresses(&["192.168.56.10"]), "ports": [{"name": "https", "port": 6443}]}]),
        ),
        endpoints(
            "web",
            json!([{"addresses": addresses(&["10.244.1.4", "10.244.2.7"]), "ports": [{"port": 80}]}]),
        ),
        endpoints(
            "many",
            json!([{"addresses": addresses(&["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"]), "ports": [{"port": 80}]}]),
        ),
        endpoints(
            "two-ports",
            json!([{"addresses": addresses(&["10.0.0.1", "10.0.0.2"]), "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]}]),
        ),
        endpoints(
            "headless-no-ports",
            json!([{"addresses": addresses(&["10.0.0.7", "10.0.0.8"])}]),
        ),
        endpoints(
            "ipv6",
            json!([{"addresses": addresses(&["fd00::1"]), "ports": [{"port": 8080}]}]),
        ),
        endpoints(
            "not-ready-only",
            json!([{"notReadyAddresses": addresses(&["10.0.0.9"]), "ports": [{"port": 80}]}]),
        ),
        endpoints("empty", json!([])),
    ];
    check("endpoints", &render("", "endpoints", &all));
}

#[test]
fn nodes() {
    let node = |name: &str, labels: Value, spec: Value, status: Value| {
        json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels, "creationTimestamp": ago(86_400 * 3 + 3600 * 5)},
            "spec": spec, "status": status})
    };
    let info = json!({"kubeletVersion": "v1.33.1", "osImage": "Ubuntu 24.04 LTS",
        "kernelVersion": "6.8.0-31-generic", "containerRuntimeVersion": "containerd://1.7.12"});
    let nodes = vec![
        node(
            "kube-1",
            json!({"kubernetes.io/hostname": "kube-1", "node-role.kubernetes.io/control-plane": ""}),
            json!({}),
            json!({"conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                "addresses": [{"type": "Hostname", "address": "kube-1"}, {"type": "InternalIP", "address": "192.168.56.10"}],
                "nodeInfo": info}),
        ),
        node(
            "kube-2",
            json!({"node-role.kubernetes.io/worker": "", "node-role.kubernetes.io/": "", "kubernetes.io/role": "ingress"}),
            json!({"unschedulable": true}),
            json!({"conditions": [{"type": "Ready", "status": "Unknown"}],
                "addresses": [{"type": "InternalIP", "address": "192.168.56.11"}, {"type": "ExternalIP", "address": "203.0.113.11"}],
                "nodeInfo": info}),
        ),
        node("kube-3", json!({}), json!({}), json!({})),
    ];
    check("nodes", &render("", "nodes", &nodes));
}

#[test]
fn namespaces() {
    let namespaces = vec![
        json!({"metadata": meta("default", 86_400 * 30), "status": {"phase": "Active"}}),
        json!({"metadata": meta("old-lab", 45), "status": {"phase": "Terminating"}}),
        json!({"metadata": {"name": "no-status"}}),
    ];
    check("namespaces", &render("", "namespaces", &namespaces));
}

#[test]
fn events() {
    let events = vec![
        json!({"apiVersion": "v1", "kind": "Event", "metadata": meta("web-1.17c0a", 600),
            "involvedObject": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{nginx}"},
            "reason": "Pulled", "message": "Successfully pulled image \"nginx\"\n", "type": "Normal",
            "source": {"component": "kubelet", "host": "kube-2"},
            "firstTimestamp": ago(600), "lastTimestamp": ago(30), "count": 3}),
        json!({"apiVersion": "v1", "kind": "Event", "metadata": meta("web.17c0b", 90),
            "involvedObject": {"kind": "Deployment", "name": "web"},
            "reason": "ScalingReplicaSet", "message": "Scaled up replica set web-7c5ddbdf54 from 0 to 1",
            "type": "Normal", "eventTime": "2024-05-01T11:58:30.000000Z",
            "reportingComponent": "deployment-controller", "reportingInstance": ""}),
        json!({"apiVersion": "v1", "kind": "Event", "metadata": meta("web-1.17c0c", 900),
            "involvedObject": {"kind": "Pod", "name": "web-1"}, "reason": "BackOff", "type": "Warning",
            "message": "Back-off restarting failed container", "eventTime": "2024-05-01T11:45:00.000000Z",
            "series": {"count": 12, "lastObservedTime": "2024-05-01T11:59:50.000000Z"},
            "reportingComponent": "kubelet", "reportingInstance": "kube-2"}),
        json!({"metadata": {"name": "cluster.1"}, "involvedObject": {"kind": "Node"}, "reason": "RegisteredNode"}),
    ];
    check("events", &render("", "events", &events));

    let events_v1 = vec![json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": meta("web-1.17c0a", 600),
        "regarding": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{nginx}"},
        "reason": "Pulled", "note": "Successfully pulled image \"nginx\"", "type": "Normal",
        "deprecatedSource": {"component": "kubelet", "host": "kube-2"},
        "deprecatedFirstTimestamp": ago(600), "deprecatedLastTimestamp": ago(30), "deprecatedCount": 3,
        "eventTime": null, "reportingController": "kubelet", "reportingInstance": "kube-2"})];
    check("events_v1", &render("events.k8s.io", "events", &events_v1));
}

#[test]
fn configmaps_secrets_serviceaccounts() {
    let config_maps = vec![
        json!({"metadata": meta("kube-root-ca.crt", 3600), "data": {"ca.crt": "-----BEGIN CERTIFICATE-----"}}),
        json!({"metadata": meta("mixed", 3600), "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}}),
        json!({"metadata": meta("empty", 3600)}),
    ];
    check("configmaps", &render("", "configmaps", &config_maps));

    let secrets = vec![
        json!({"metadata": meta("db-credentials", 3600), "type": "Opaque", "data": {"user": "YQ==", "password": "Yg=="}}),
        json!({"metadata": meta("tls", 3600), "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}}),
        json!({"metadata": meta("untyped", 3600)}),
    ];
    check("secrets", &render("", "secrets", &secrets));

    let accounts = vec![
        json!({"metadata": meta("default", 86_400)}),
        json!({"metadata": meta("builder", 86_400), "secrets": [{"name": "builder-token"}]}),
    ];
    check("serviceaccounts", &render("", "serviceaccounts", &accounts));
}
