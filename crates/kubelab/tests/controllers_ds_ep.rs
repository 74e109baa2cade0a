//! The DaemonSet, Endpoints and EndpointSlice controllers inside `kubelab server`, driven and
//! read with the real kubectl. No kubelet runs here: nodes are created as Node objects, and the
//! test stands in for a kubelet by writing pod status (IP, Ready) through pods/status.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::{TestServer, eventually, table};

const WAIT: Duration = Duration::from_secs(20);

fn json_of(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}):\n{s}"))
}

/// A Ready node; `control_plane` adds the role label and the NoSchedule taint kubeadm sets.
fn add_node(s: &TestServer, name: &str, control_plane: bool) {
    let mut node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}},
        "spec": {}
    });
    if control_plane {
        node["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] = json!("");
        node["spec"]["taints"] =
            json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]);
    }
    s.ok_stdin(&["create", "-f", "-"], &node.to_string());
    let status = json!({"status": {
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "message": "kubelet is posting ready status"}],
        "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
        "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
        "addresses": [{"type": "InternalIP", "address": "10.10.0.1"}, {"type": "Hostname", "address": name}]
    }});
    s.ok(&[
        "patch",
        "node",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &status.to_string(),
    ]);
}

/// The course's rng workload turned into a DaemonSet (what `deploy-rng.yaml` becomes).
fn rng_daemonset() -> String {
    json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "rng", "labels": {"app": "rng"}},
        "spec": {
            "selector": {"matchLabels": {"app": "rng"}},
            "template": {
                "metadata": {"labels": {"app": "rng"}},
                "spec": {"containers": [{"name": "dockercoins-rng", "image": "training/dockercoins-rng:1.0"}]}
            }
        }
    })
    .to_string()
}

/// The `kubectl get daemonset` row of `name`, with the header checked.
fn ds_row(s: &TestServer, name: &str) -> Vec<String> {
    let t = table(&s.ok(&["get", "daemonset", name]));
    assert_eq!(
        t[0],
        [
            "NAME",
            "DESIRED",
            "CURRENT",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "NODE",
            "SELECTOR",
            "AGE"
        ]
    );
    t[1].clone()
}

fn pods_json(s: &TestServer, selector: &str) -> Vec<Value> {
    json_of(&s.ok(&["get", "pods", "-l", selector, "-o", "json"]))["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The node a daemon pod is meant for: the node affinity the controller pins it with.
fn pinned_node(pod: &Value) -> String {
    let terms = &pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"];
    assert_eq!(
        terms[0]["matchFields"][0]["key"], "metadata.name",
        "daemon pods are pinned by matchFields: {pod}"
    );
    assert_eq!(terms[0]["matchFields"][0]["operator"], "In");
    terms[0]["matchFields"][0]["values"][0]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn mark_ready(s: &TestServer, pod: &str, ip: &str, ready: bool) {
    let status = json!({"status": {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "conditions": [
            {"type": "Ready", "status": if ready { "True" } else { "False" },
             "lastTransitionTime": "2025-01-01T00:00:00Z"},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2025-01-01T00:00:00Z"}
        ]
    }});
    s.ok(&[
        "patch",
        "pod",
        pod,
        "--subresource=status",
        "--type=merge",
        "-p",
        &status.to_string(),
    ]);
}

#[test]
fn daemonset_runs_one_pod_per_worker_and_follows_nodes() {
    let s = TestServer::start();
    add_node(&s, "kube-0", true);
    add_node(&s, "kube-1", false);
    add_node(&s, "kube-2", false);

    assert_eq!(
        s.ok_stdin(&["apply", "-f", "-"], &rng_daemonset()).trim(),
        "daemonset.apps/rng created"
    );
    // DESIRED = the workers: the control-plane taint keeps rng off kube-0.
    let row = eventually(WAIT, || {
        let r = ds_row(&s, "rng");
        (r[1] == "2" && r[2] == "2").then_some(r)
    })
    .unwrap_or_else(|| panic!("DESIRED/CURRENT never 2/2: {:?}", ds_row(&s, "rng")));
    assert_eq!(row[0], "rng");
    assert_eq!(row[6], "<none>");

    let pods = pods_json(&s, "app=rng");
    assert_eq!(pods.len(), 2, "{pods:?}");
    let mut targets: Vec<String> = pods.iter().map(pinned_node).collect();
    targets.sort();
    assert_eq!(targets, ["kube-1", "kube-2"]);
    let ds = json_of(&s.ok(&["get", "ds", "rng", "-o", "json"]));
    for pod in &pods {
        let name = pod["metadata"]["name"].as_str().unwrap();
        let suffix = name.strip_prefix("rng-").expect("named <ds>-xxxxx");
        assert_eq!(suffix.len(), 5, "{name}");
        let labels = &pod["metadata"]["labels"];
        assert_eq!(labels["app"], "rng");
        assert_eq!(labels["pod-template-generation"], "1");
        assert!(
            labels["controller-revision-hash"]
                .as_str()
                .is_some_and(|h| !h.is_empty()),
            "{labels}"
        );
        let owner = &pod["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "DaemonSet");
        assert_eq!(owner["name"], "rng");
        assert_eq!(owner["uid"], ds["metadata"]["uid"]);
        assert_eq!(owner["controller"], true);
        // The daemon tolerations: NoExecute ones without tolerationSeconds (never evicted).
        let tolerations = pod["spec"]["tolerations"].as_array().unwrap();
        for (key, effect) in [
            ("node.kubernetes.io/not-ready", "NoExecute"),
            ("node.kubernetes.io/unreachable", "NoExecute"),
            ("node.kubernetes.io/disk-pressure", "NoSchedule"),
            ("node.kubernetes.io/memory-pressure", "NoSchedule"),
            ("node.kubernetes.io/pid-pressure", "NoSchedule"),
            ("node.kubernetes.io/unschedulable", "NoSchedule"),
        ] {
            let t = tolerations
                .iter()
                .find(|t| t["key"] == key && t["effect"] == effect)
                .unwrap_or_else(|| panic!("no {key}:{effect} toleration in {tolerations:?}"));
            assert_eq!(t["operator"], "Exists");
            assert!(t.get("tolerationSeconds").is_none(), "{t}");
        }
    }
    // The scheduler binds each pod to its pinned node: NODE in `get pods -o wide`.
    let wide = eventually(WAIT, || {
        let t = table(&s.ok(&["get", "pods", "-l", "app=rng", "-o", "wide"]));
        let node_col = t[0].iter().position(|c| c == "NODE")?;
        let mut nodes: Vec<String> = t[1..].iter().map(|r| r[node_col].clone()).collect();
        nodes.sort();
        (nodes == ["kube-1", "kube-2"]).then_some(t)
    });
    assert!(
        wide.is_some(),
        "daemon pods not bound to their nodes:\n{}",
        s.ok(&["get", "pods", "-o", "wide"])
    );
    let describe = s.ok(&["describe", "ds", "rng"]);
    assert!(
        describe.contains("SuccessfulCreate") && describe.contains("Created pod: rng-"),
        "{describe}"
    );
    assert!(
        describe.contains("daemonset-controller"),
        "events come from daemonset-controller:\n{describe}"
    );

    // Kubelets report the pods ready: READY and AVAILABLE follow.
    for (i, pod) in pods.iter().enumerate() {
        mark_ready(
            &s,
            pod["metadata"]["name"].as_str().unwrap(),
            &format!("192.168.{i}.2"),
            true,
        );
    }
    let row = eventually(WAIT, || {
        let r = ds_row(&s, "rng");
        (r[3] == "2" && r[5] == "2").then_some(r)
    })
    .unwrap_or_else(|| panic!("READY/AVAILABLE never 2: {:?}", ds_row(&s, "rng")));
    assert_eq!(&row[1..6], ["2", "2", "2", "2", "2"]);
    let status = &json_of(&s.ok(&["get", "ds", "rng", "-o", "json"]))["status"];
    assert_eq!(status["observedGeneration"], 1, "{status}");
    assert_eq!(status["numberMisscheduled"], 0, "{status}");
    assert!(status.get("numberUnavailable").is_none(), "{status}");

    // A node that joins later gets its pod.
    add_node(&s, "kube-3", false);
    eventually(WAIT, || {
        let r = ds_row(&s, "rng");
        (r[1] == "3" && r[2] == "3").then_some(())
    })
    .unwrap_or_else(|| panic!("kube-3 got no pod: {:?}", ds_row(&s, "rng")));
    assert!(
        pods_json(&s, "app=rng")
            .iter()
            .any(|p| pinned_node(p) == "kube-3")
    );

    // A node that becomes ineligible (cordon is tolerated; an untolerated NoExecute taint is
    // not) loses its pod; so does a node that is deleted.
    s.ok(&["taint", "node", "kube-3", "dedicated=db:NoExecute"]);
    eventually(WAIT, || {
        let r = ds_row(&s, "rng");
        let gone = !pods_json(&s, "app=rng").iter().any(|p| {
            pinned_node(p) == "kube-3" && p["metadata"].get("deletionTimestamp").is_none()
        });
        (r[1] == "2" && gone).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "kube-3 kept its pod: {:?}\n{}",
            ds_row(&s, "rng"),
            s.ok(&["get", "pods", "-o", "wide"])
        )
    });
    let describe = s.ok(&["describe", "ds", "rng"]);
    assert!(describe.contains("SuccessfulDelete"), "{describe}");

    s.ok(&["delete", "node", "kube-2"]);
    eventually(WAIT, || {
        let r = ds_row(&s, "rng");
        let left = pods_json(&s, "app=rng")
            .iter()
            .filter(|p| pinned_node(p) == "kube-2")
            .count();
        (r[1] == "1" && left == 0).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "kube-2's pod outlived its node: {:?}\n{}",
            ds_row(&s, "rng"),
            s.ok(&["get", "pods", "-o", "wide"])
        )
    });
}

#[test]
fn endpoints_and_slices_follow_ready_pods() {
    let s = TestServer::start();
    add_node(&s, "kube-1", false);
    add_node(&s, "kube-2", false);
    for (pod, node) in [("web-a", "kube-1"), ("web-b", "kube-2")] {
        let manifest = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod, "labels": {"app": "web"}},
            "spec": {"nodeName": node, "containers": [{"name": "nginx", "image": "nginx:1.25",
                     "ports": [{"name": "http", "containerPort": 8080}]}]}
        });
        s.ok_stdin(&["create", "-f", "-"], &manifest.to_string());
    }
    // A named target port, resolved against each pod's container ports.
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}
    });
    s.ok_stdin(&["create", "-f", "-"], &service.to_string());

    // Pods without an IP yet: the Endpoints exist, with no addresses.
    let row = eventually(WAIT, || {
        let t = table(&s.kubectl_ok_or_empty(&["get", "endpoints", "web"]));
        (t.len() == 2).then(|| t[1].clone())
    })
    .expect("no Endpoints for web");
    assert_eq!(row[..2], ["web", "<none>"]);

    mark_ready(&s, "web-a", "192.168.1.10", true);
    mark_ready(&s, "web-b", "192.168.2.10", false);
    let t = eventually(WAIT, || {
        let t = table(&s.ok(&["get", "endpoints", "web"]));
        (t[1][1] == "192.168.1.10:8080").then_some(t)
    })
    .unwrap_or_else(|| panic!("{}", s.ok(&["get", "endpoints", "web", "-o", "yaml"])));
    assert_eq!(t[0][..3], ["NAME", "ENDPOINTS", "AGE"]);

    let ep = json_of(&s.ok(&["get", "endpoints", "web", "-o", "json"]));
    assert_eq!(ep["metadata"]["labels"]["app"], "web");
    let subset = &ep["subsets"][0];
    let ready = &subset["addresses"][0];
    assert_eq!(ready["ip"], "192.168.1.10");
    assert_eq!(ready["nodeName"], "kube-1");
    assert_eq!(ready["targetRef"]["kind"], "Pod");
    assert_eq!(ready["targetRef"]["name"], "web-a");
    assert_eq!(ready["targetRef"]["namespace"], "default");
    let pod_a = json_of(&s.ok(&["get", "pod", "web-a", "-o", "json"]));
    assert_eq!(ready["targetRef"]["uid"], pod_a["metadata"]["uid"]);
    assert_eq!(subset["notReadyAddresses"][0]["ip"], "192.168.2.10");
    assert_eq!(subset["ports"], json!([{"port": 8080, "protocol": "TCP"}]));

    let describe = s.ok(&["describe", "service", "web"]);
    let endpoints_line = describe
        .lines()
        .find(|l| l.starts_with("Endpoints:"))
        .unwrap_or_else(|| panic!("no Endpoints line:\n{describe}"));
    assert!(
        endpoints_line.contains("192.168.1.10:8080") && !endpoints_line.contains("192.168.2.10"),
        "{describe}"
    );

    // The EndpointSlice: generated name, labels, owner, conditions, resolved port.
    let slices = json_of(&s.ok(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=web",
        "-o",
        "json",
    ]));
    let items = slices["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{slices}");
    let slice = &items[0];
    let name = slice["metadata"]["name"].as_str().unwrap();
    assert_eq!(name.strip_prefix("web-").map(str::len), Some(5), "{name}");
    assert_eq!(
        slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(slice["metadata"]["labels"]["app"], "web");
    let svc = json_of(&s.ok(&["get", "service", "web", "-o", "json"]));
    let owner = &slice["metadata"]["ownerReferences"][0];
    assert_eq!(
        (&owner["kind"], &owner["name"], &owner["uid"]),
        (&json!("Service"), &json!("web"), &svc["metadata"]["uid"])
    );
    assert_eq!(slice["addressType"], "IPv4");
    assert_eq!(
        slice["ports"],
        json!([{"name": "", "port": 8080, "protocol": "TCP"}])
    );
    let endpoint = |ip: &str| -> Value {
        slice["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["addresses"][0] == ip)
            .cloned()
            .unwrap_or_else(|| panic!("{ip} not in {slice}"))
    };
    let a = endpoint("192.168.1.10");
    assert_eq!(
        a["conditions"],
        json!({"ready": true, "serving": true, "terminating": false})
    );
    assert_eq!(a["nodeName"], "kube-1");
    assert_eq!(a["targetRef"]["name"], "web-a");
    assert_eq!(endpoint("192.168.2.10")["conditions"]["ready"], false);
    let t = table(&s.ok(&["get", "endpointslices", name]));
    assert_eq!(t[1][..3], [name, "IPv4", "8080"]);

    // Both ready: both listed.
    mark_ready(&s, "web-b", "192.168.2.10", true);
    eventually(WAIT, || {
        let t = table(&s.ok(&["get", "endpoints", "web"]));
        (t[1][1] == "192.168.1.10:8080,192.168.2.10:8080").then_some(())
    })
    .unwrap_or_else(|| panic!("{}", s.ok(&["get", "endpoints", "web", "-o", "yaml"])));

    // Quiet at rest: no rewrites of Endpoints or slices without a change.
    std::thread::sleep(Duration::from_millis(500));
    let versions = |s: &TestServer| {
        (
            s.ok(&[
                "get",
                "endpoints",
                "web",
                "-o",
                "jsonpath={.metadata.resourceVersion}",
            ]),
            s.ok(&[
                "get",
                "endpointslices",
                "-l",
                "kubernetes.io/service-name=web",
                "-o",
                "jsonpath={.items[*].metadata.resourceVersion}",
            ]),
        )
    };
    let before = versions(&s);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(versions(&s), before, "objects rewritten at rest");

    // A terminating pod leaves Endpoints but stays in the slice as terminating.
    s.ok(&["delete", "pod", "web-a", "--wait=false"]);
    eventually(WAIT, || {
        let t = table(&s.ok(&["get", "endpoints", "web"]));
        (t[1][1] == "192.168.2.10:8080").then_some(())
    })
    .unwrap_or_else(|| panic!("{}", s.ok(&["get", "endpoints", "web", "-o", "yaml"])));
    let conditions = eventually(WAIT, || {
        let slices = json_of(&s.ok(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "json",
        ]));
        let e = slices["items"][0]["endpoints"]
            .as_array()?
            .iter()
            .find(|e| e["addresses"][0] == "192.168.1.10")?
            .clone();
        (e["conditions"]["terminating"] == true).then_some(e["conditions"].clone())
    });
    // A bound pod stays (terminating) until its kubelet confirms; none runs here.
    assert!(s.kubectl(&["get", "pod", "web-a"]).status.success());
    assert_eq!(
        conditions,
        Some(json!({"ready": false, "serving": true, "terminating": true}))
    );

    // Services without a selector keep the Endpoints their owner writes; the API server's
    // own `kubernetes` Endpoints are left alone too.
    let manual = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "external-db"}, "spec": {"ports": [{"port": 5432}]}});
    s.ok_stdin(&["create", "-f", "-"], &manual.to_string());
    let manual_ep = json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "external-db"},
        "subsets": [{"addresses": [{"ip": "10.1.2.3"}], "ports": [{"port": 5432}]}]});
    s.ok_stdin(&["create", "-f", "-"], &manual_ep.to_string());
    let kubernetes_before = s.ok(&["get", "endpoints", "kubernetes", "-o", "json"]);
    std::thread::sleep(Duration::from_secs(1));
    let t = table(&s.ok(&["get", "endpoints", "external-db"]));
    assert_eq!(t[1][1], "10.1.2.3:5432");
    assert_eq!(
        s.ok(&["get", "endpoints", "kubernetes", "-o", "json"]),
        kubernetes_before
    );
    assert!(
        s.ok(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=external-db",
            "-o",
            "name"
        ])
        .trim()
        .is_empty()
    );

    // Deleting the Service deletes its Endpoints and (through owner references) its slices.
    s.ok(&["delete", "service", "web"]);
    eventually(WAIT, || {
        let ep_gone = !s.kubectl(&["get", "endpoints", "web"]).status.success();
        let slices_gone = s
            .ok(&[
                "get",
                "endpointslices",
                "-l",
                "kubernetes.io/service-name=web",
                "-o",
                "name",
            ])
            .trim()
            .is_empty();
        (ep_gone && slices_gone).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "left behind:\n{}",
            s.ok(&["get", "endpoints,endpointslices"])
        )
    });
}

trait KubectlExt {
    /// stdout of a kubectl run, empty if it failed (for polling objects that may not exist yet).
    fn kubectl_ok_or_empty(&self, args: &[&str]) -> String;
}

impl KubectlExt for TestServer {
    fn kubectl_ok_or_empty(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        if out.status.success() {
            String::from_utf8_lossy(&out.stdout).into_owned()
        } else {
            String::new()
        }
    }
}
