//! The scheduler and the node lifecycle controller against a real `kubelab server`, with Node
//! objects and heartbeat Leases written by the test as kubelets would write them (no kubelet
//! runs here). kube-0 is the tainted control plane, kube-1 and kube-2 are workers.

mod support;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{ApiClient, TestServer, eventually, fixture_str};

/// Short enough that a silent node is noticed within seconds.
const GRACE: &str = "3s";

fn start() -> TestServer {
    TestServer::start_with_env(&[("KUBELAB_NODE_MONITOR_GRACE_PERIOD", GRACE)])
}

fn now_time() -> Value {
    serde_json::to_value(Time(Timestamp::now())).expect("time")
}

fn now_micro() -> Value {
    serde_json::to_value(MicroTime(Timestamp::now())).expect("time")
}

fn merge_patch(api: &ApiClient, path: &str, body: &Value) -> support::HttpReply {
    api.send(
        "PATCH",
        path,
        Some("application/merge-patch+json"),
        Some(body.to_string().into_bytes()),
    )
}

fn ready_status(index: u32) -> Value {
    let resources = json!({"cpu": "2", "memory": "4Gi", "pods": "110"});
    json!({
        "capacity": resources,
        "allocatable": resources,
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "kubelet is posting ready status",
            "lastHeartbeatTime": now_time(), "lastTransitionTime": now_time()
        }],
        "addresses": [
            {"type": "InternalIP", "address": format!("10.10.95.{}", 200 + index)},
            {"type": "Hostname", "address": format!("kube-{index}")}
        ]
    })
}

/// Registers node kube-`index` as a kubelet does: the Node with a Ready status, then its Lease.
fn register_node(api: &ApiClient, index: u32) {
    let name = format!("kube-{index}");
    let mut labels = json!({
        "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"
    });
    let mut spec = json!({});
    if index == 0 {
        labels["node-role.kubernetes.io/control-plane"] = json!("");
        spec["taints"] =
            json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]);
    }
    let node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
        "status": ready_status(index),
    });
    let created = api.send_json("POST", "/api/v1/nodes", &node);
    assert_eq!(created.status, 201, "create node: {}", created.text());
    // The kubelet posts its status again right away; also covers a server that drops status
    // on create.
    let patched = merge_patch(
        api,
        &format!("/api/v1/nodes/{name}/status"),
        &json!({"status": ready_status(index)}),
    );
    assert_eq!(patched.status, 200, "node status: {}", patched.text());
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": name},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now_micro()}
    });
    let created = api.send_json(
        "POST",
        "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
        &lease,
    );
    assert_eq!(created.status, 201, "create lease: {}", created.text());
}

/// Renews the Leases of the nodes in `alive` every 500 ms, as kubelets do, until dropped.
struct Heartbeats {
    alive: Arc<Mutex<HashSet<String>>>,
    stop: Arc<AtomicBool>,
}

impl Heartbeats {
    fn start(api: ApiClient, nodes: &[&str]) -> Heartbeats {
        let alive = Arc::new(Mutex::new(
            nodes.iter().map(|n| n.to_string()).collect::<HashSet<_>>(),
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (alive.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let names: Vec<String> = a.lock().expect("alive").iter().cloned().collect();
                for name in names {
                    let _ = api.try_send(
                        "PATCH",
                        &format!(
                            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}"
                        ),
                        Some("application/merge-patch+json"),
                        Some(
                            json!({"spec": {"renewTime": now_micro()}})
                                .to_string()
                                .into_bytes(),
                        ),
                    );
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        Heartbeats { alive, stop }
    }

    fn silence(&self, node: &str) {
        self.alive.lock().expect("alive").remove(node);
    }

    fn resume(&self, node: &str) {
        self.alive.lock().expect("alive").insert(node.to_string());
    }
}

impl Drop for Heartbeats {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A cluster of kube-0 (control plane), kube-1 and kube-2, all heartbeating.
fn cluster() -> (TestServer, Heartbeats) {
    let s = start();
    let api = s.api();
    for i in 0..3 {
        register_node(&api, i);
    }
    let beats = Heartbeats::start(api, &["kube-0", "kube-1", "kube-2"]);
    (s, beats)
}

fn get_json(s: &TestServer, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = s.ok(&all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

fn pod_json(s: &TestServer, name: &str) -> Option<Value> {
    let out = s.kubectl(&["get", "pod", name, "-o", "json"]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).expect("pod JSON"))
}

fn node_of(pod: &Value) -> Option<String> {
    pod.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// Waits until every pod matching `selector` is bound, and returns pod name → node.
fn placements(s: &TestServer, selector: &str, count: usize) -> BTreeMap<String, String> {
    eventually(Duration::from_secs(30), || {
        let list = get_json(s, &["get", "pods", "-l", selector]);
        let items = list["items"].as_array()?.clone();
        let live: Vec<&Value> = items
            .iter()
            .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
            .collect();
        if live.len() != count {
            return None;
        }
        live.iter()
            .map(|p| Some((p["metadata"]["name"].as_str()?.to_string(), node_of(p)?)))
            .collect()
    })
    .unwrap_or_else(|| {
        panic!(
            "pods {selector} were not all scheduled:\n{}\nserver log:\n{}",
            s.ok(&["get", "pods", "-o", "wide"]),
            s.log()
        )
    })
}

fn per_node(placements: &BTreeMap<String, String>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for node in placements.values() {
        *counts.entry(node.clone()).or_default() += 1;
    }
    counts
}

#[test]
fn pods_go_to_ready_workers_spread_and_the_impossible_one_is_reported() {
    let (s, _beats) = cluster();
    for i in 0..3 {
        s.ok(&[
            "run",
            &format!("web-{i}"),
            "--image=nginx:1.7.9",
            "--labels=app=web",
        ]);
    }
    let placed = placements(&s, "app=web", 3);
    let counts = per_node(&placed);
    assert!(
        !counts.contains_key("kube-0"),
        "control plane got a pod: {placed:?}"
    );
    let mut spread: Vec<usize> = counts.values().copied().collect();
    spread.sort();
    assert_eq!(spread, [1, 2], "3 pods on 2 workers go 2+1: {placed:?}");

    let pod = pod_json(&s, "web-0").expect("web-0");
    let scheduled = condition(&pod, "PodScheduled").expect("PodScheduled");
    assert_eq!(scheduled["status"], "True", "{pod:#}");
    let node = node_of(&pod).expect("bound");
    let describe = eventually(Duration::from_secs(10), || {
        let d = s.ok(&["describe", "pod", "web-0"]);
        d.contains("Scheduled").then_some(d)
    })
    .unwrap_or_else(|| s.ok(&["describe", "pod", "web-0"]));
    let expected = format!("Successfully assigned default/web-0 to {node}");
    let line = describe
        .lines()
        .find(|l| l.contains(&expected))
        .unwrap_or_else(|| panic!("no Scheduled event in:\n{describe}"));
    let cells: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&cells[..2], ["Normal", "Scheduled"], "{line}");
    assert!(line.contains("default-scheduler"), "{line}");

    // A pod no node can take.
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "picky"},
            "spec": {"nodeSelector": {"disktype": "nvme"},
                     "containers": [{"name": "c", "image": "nginx:1.7.9"}]}}"#,
    );
    let message = "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.";
    let pod = eventually(Duration::from_secs(15), || {
        let p = pod_json(&s, "picky")?;
        (condition(&p, "PodScheduled")?["status"] == "False").then_some(p)
    })
    .unwrap_or_else(|| panic!("picky never reported unschedulable; log:\n{}", s.log()));
    let cond = condition(&pod, "PodScheduled").expect("condition");
    assert_eq!(cond["reason"], "Unschedulable", "{cond}");
    assert_eq!(cond["message"], message, "{cond}");
    assert_eq!(node_of(&pod), None);
    let describe = eventually(Duration::from_secs(10), || {
        let d = s.ok(&["describe", "pod", "picky"]);
        d.contains("FailedScheduling").then_some(d)
    })
    .unwrap_or_else(|| {
        panic!(
            "no FailedScheduling event:\n{}",
            s.ok(&["describe", "pod", "picky"])
        )
    });
    let line = describe
        .lines()
        .find(|l| l.contains("FailedScheduling"))
        .expect("event line");
    assert!(line.trim_start().starts_with("Warning"), "{line}");
    assert!(line.contains("default-scheduler"), "{line}");
    assert!(line.contains(message), "{line}");
    assert!(describe.contains("Status:           Pending"), "{describe}");

    // Labelling a node is a change worth a retry: the pod lands there.
    s.ok(&["label", "node", "kube-2", "disktype=nvme"]);
    let landed = eventually(Duration::from_secs(20), || node_of(&pod_json(&s, "picky")?));
    assert_eq!(landed.as_deref(), Some("kube-2"), "log:\n{}", s.log());
}

#[test]
fn course_deployment_spreads_and_a_deleted_nodes_pods_come_back_elsewhere() {
    let (s, _beats) = cluster();
    s.ok(&["create", "-f", &fixture_str("deployment.yaml")]);
    let placed = placements(&s, "app=nginx", 3);
    let counts = per_node(&placed);
    let mut spread: Vec<usize> = counts.values().copied().collect();
    spread.sort();
    assert_eq!(spread, [1, 2], "{placed:?}");
    assert!(!counts.contains_key("kube-0"), "{placed:?}");

    // The node holding one or two replicas goes away: pod GC deletes its pods and the
    // ReplicaSet re-creates them on the remaining worker.
    let victim = if counts.contains_key("kube-2") {
        "kube-2"
    } else {
        "kube-1"
    };
    let survivor = if victim == "kube-2" {
        "kube-1"
    } else {
        "kube-2"
    };
    let doomed: Vec<String> = placed
        .iter()
        .filter(|(_, n)| n.as_str() == victim)
        .map(|(p, _)| p.clone())
        .collect();
    s.ok(&["delete", "node", victim]);
    let gone = eventually(Duration::from_secs(20), || {
        doomed
            .iter()
            .all(|p| pod_json(&s, p).is_none())
            .then_some(())
    });
    assert!(
        gone.is_some(),
        "pods of {victim} not deleted:\n{}",
        s.ok(&["get", "pods", "-o", "wide"])
    );
    let replaced = eventually(Duration::from_secs(30), || {
        let now = placements(&s, "app=nginx", 3);
        now.values().all(|n| n == survivor).then_some(now)
    });
    assert!(
        replaced.is_some(),
        "replicas not re-created on {survivor}:\n{}",
        s.ok(&["get", "pods", "-o", "wide"])
    );
}

#[test]
fn a_silent_node_goes_unknown_is_tainted_and_its_pods_are_evicted_by_toleration() {
    let s = start();
    let api = s.api();
    register_node(&api, 1);
    register_node(&api, 2);
    let beats = Heartbeats::start(api.clone(), &["kube-1", "kube-2"]);
    // Pods bound to kube-2 directly (spec.nodeName): one tolerates unreachable for 2 s, one
    // forever, one is Ready.
    let bound_pod = |name: &str, tolerations: Value| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
               "spec": {"nodeName": "kube-2", "tolerations": tolerations,
                        "containers": [{"name": "c", "image": "nginx:1.7.9"}]}})
    };
    let unreachable = |seconds: Option<i64>| {
        let mut t = json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"});
        if let Some(s) = seconds {
            t["tolerationSeconds"] = json!(s);
        }
        json!([t])
    };
    s.ok_stdin(
        &["apply", "-f", "-"],
        &bound_pod("short", unreachable(Some(2))).to_string(),
    );
    s.ok_stdin(
        &["apply", "-f", "-"],
        &bound_pod("forever", unreachable(None)).to_string(),
    );
    s.ok_stdin(
        &["apply", "-f", "-"],
        &bound_pod("serving", json!([])).to_string(),
    );
    let ready = merge_patch(
        &api,
        "/api/v1/namespaces/default/pods/serving/status",
        &json!({"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": now_time()}]}}),
    );
    assert_eq!(ready.status, 200, "{}", ready.text());

    // Healthy: no taints while heartbeats flow, for longer than the grace period.
    std::thread::sleep(Duration::from_secs(5));
    let node = get_json(&s, &["get", "node", "kube-2"]);
    assert_eq!(
        condition(&node, "Ready").expect("Ready")["status"],
        "True",
        "{node:#}"
    );
    assert!(
        node.pointer("/spec/taints")
            .is_none_or(|t| t.as_array().is_some_and(Vec::is_empty)),
        "{node:#}"
    );

    beats.silence("kube-2");
    let node = eventually(Duration::from_secs(15), || {
        let n = get_json(&s, &["get", "node", "kube-2"]);
        (condition(&n, "Ready")?["status"] == "Unknown").then_some(n)
    })
    .unwrap_or_else(|| panic!("kube-2 never went Unknown; log:\n{}", s.log()));
    let cond = condition(&node, "Ready").expect("Ready");
    assert_eq!(cond["reason"], "NodeStatusUnknown", "{cond}");
    assert_eq!(
        cond["message"], "Kubelet stopped posting node status.",
        "{cond}"
    );
    let taints = eventually(Duration::from_secs(5), || {
        let n = get_json(&s, &["get", "node", "kube-2"]);
        let t = n.pointer("/spec/taints")?.as_array()?.clone();
        let has = |effect: &str| {
            t.iter()
                .any(|x| x["key"] == "node.kubernetes.io/unreachable" && x["effect"] == effect)
        };
        (has("NoExecute") && has("NoSchedule")).then_some(t)
    })
    .unwrap_or_else(|| {
        panic!(
            "no unreachable taints:\n{}",
            s.ok(&["get", "node", "kube-2", "-o", "yaml"])
        )
    });
    let no_execute = taints
        .iter()
        .find(|t| t["effect"] == "NoExecute")
        .expect("NoExecute");
    assert!(no_execute.get("timeAdded").is_some(), "{no_execute}");
    let nodes = s.ok(&["get", "nodes"]);
    let kube2 = nodes
        .lines()
        .find(|l| l.starts_with("kube-2 "))
        .unwrap_or_else(|| panic!("{nodes}"));
    assert_eq!(kube2.split_whitespace().nth(1), Some("NotReady"), "{nodes}");
    let kube1 = nodes
        .lines()
        .find(|l| l.starts_with("kube-1 "))
        .expect("kube-1");
    assert_eq!(kube1.split_whitespace().nth(1), Some("Ready"), "{nodes}");

    // The Ready pod is no longer Ready.
    let serving = eventually(Duration::from_secs(10), || {
        let p = pod_json(&s, "serving")?;
        (condition(&p, "Ready")?["status"] == "False").then_some(p)
    });
    assert!(
        serving.is_some(),
        "serving still Ready:\n{:#}",
        pod_json(&s, "serving").unwrap_or_default()
    );

    // 2 s after the taint, `short` is deleted (gracefully: it waits for its kubelet);
    // `forever` stays.
    // No kubelet finishes the deletion here, so the pod stays Terminating and shows why.
    let short = eventually(Duration::from_secs(10), || {
        let p = pod_json(&s, "short")?;
        p.pointer("/metadata/deletionTimestamp").map(|_| p.clone())
    })
    .unwrap_or_else(|| panic!("short was not evicted; log:\n{}", s.log()));
    let disruption = condition(&short, "DisruptionTarget").expect("DisruptionTarget");
    assert_eq!(
        disruption["reason"], "DeletionByTaintManager",
        "{disruption}"
    );
    let events = s.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=short",
    ]);
    assert!(events.contains("TaintManagerEviction"), "{events}");
    assert!(
        events.contains("Marking for deletion Pod default/short"),
        "{events}"
    );
    std::thread::sleep(Duration::from_secs(2));
    let forever = pod_json(&s, "forever").expect("forever exists");
    assert!(
        forever.pointer("/metadata/deletionTimestamp").is_none(),
        "{forever:#}"
    );

    // The kubelet comes back and posts Ready: the taints go away.
    beats.resume("kube-2");
    let posted = merge_patch(
        &api,
        "/api/v1/nodes/kube-2/status",
        &json!({"status": {"conditions": [{
            "type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "kubelet is posting ready status",
            "lastHeartbeatTime": now_time(), "lastTransitionTime": now_time()}]}}),
    );
    assert_eq!(posted.status, 200, "{}", posted.text());
    let untainted = eventually(Duration::from_secs(10), || {
        let n = get_json(&s, &["get", "node", "kube-2"]);
        n.pointer("/spec/taints")
            .is_none_or(|t| t.as_array().is_some_and(Vec::is_empty))
            .then_some(())
    });
    assert!(
        untainted.is_some(),
        "{}",
        s.ok(&["get", "node", "kube-2", "-o", "yaml"])
    );
}
