//! The Deployment and ReplicaSet controllers inside `kubelab server`, driven by the real
//! kubectl: the course's nginx Deployment becomes a ReplicaSet and pods, scales, rolls out a new
//! image, and goes away with its dependents. There is no kubelet here, so pods stay Pending
//! unless a test marks them ready itself.

mod support;

use std::time::Duration;
use support::{TestServer, eventually, fixture_str, table};

/// Pods appear within seconds; this bounds every wait.
const WAIT: Duration = Duration::from_secs(30);
/// Upstream's `rand.String` alphabet, which generateName suffixes use.
const NAME_ALPHABET: &str = "bcdfghjklmnpqrstvwxz2456789";

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}):\n{s}"))
}

fn items(s: &TestServer, args: &[&str]) -> Vec<serde_json::Value> {
    let mut full = args.to_vec();
    full.extend(["-o", "json"]);
    json(&s.ok(&full))["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn name(obj: &serde_json::Value) -> String {
    obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn names(objs: &[serde_json::Value]) -> Vec<String> {
    let mut n: Vec<String> = objs.iter().map(name).collect();
    n.sort();
    n
}

/// Waits until the namespace holds exactly `count` pods, returning them.
fn wait_pods(s: &TestServer, count: usize) -> Vec<serde_json::Value> {
    let mut last = Vec::new();
    eventually(WAIT, || {
        last = items(s, &["get", "pods"]);
        (last.len() == count).then(|| last.clone())
    })
    .unwrap_or_else(|| {
        panic!(
            "expected {count} pods, have {:?}\nserver log:\n{}",
            names(&last),
            s.log()
        )
    })
}

fn replicasets(s: &TestServer) -> Vec<serde_json::Value> {
    items(s, &["get", "rs"])
}

fn create_course_deployment(s: &TestServer) -> serde_json::Value {
    assert_eq!(
        s.ok(&["create", "-f", &fixture_str("deployment.yaml")])
            .trim(),
        "deployment.apps/nginx-deployment created"
    );
    let rs = eventually(WAIT, || {
        let rs = replicasets(s);
        (rs.len() == 1).then(|| rs[0].clone())
    })
    .unwrap_or_else(|| panic!("no ReplicaSet appeared\nserver log:\n{}", s.log()));
    wait_pods(s, 3);
    rs
}

#[test]
fn a_deployment_makes_one_replicaset_with_owned_pods_that_scale() {
    let s = TestServer::start();
    let rs = create_course_deployment(&s);
    let rs_name = name(&rs);
    let hash = rs_name
        .strip_prefix("nginx-deployment-")
        .unwrap_or_else(|| panic!("ReplicaSet name {rs_name}"));
    assert!(
        (6..=10).contains(&hash.len()) && hash.chars().all(|c| "456789bcdf".contains(c)),
        "pod-template-hash {hash} is not in upstream's encoding"
    );
    assert_eq!(rs["metadata"]["labels"]["pod-template-hash"], hash);
    assert_eq!(rs["metadata"]["labels"]["app"], "nginx");
    assert_eq!(
        rs["spec"]["selector"]["matchLabels"],
        serde_json::json!({"app": "nginx", "pod-template-hash": hash})
    );
    assert_eq!(
        rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    assert_eq!(
        rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"],
        "3"
    );
    assert_eq!(
        rs["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"],
        "4"
    );
    let owner = &rs["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "Deployment");
    assert_eq!(owner["name"], "nginx-deployment");
    assert_eq!(owner["controller"], true);
    assert_eq!(owner["blockOwnerDeletion"], true);

    for pod in wait_pods(&s, 3) {
        let pod_name = name(&pod);
        let suffix = pod_name
            .strip_prefix(&format!("{rs_name}-"))
            .unwrap_or_else(|| panic!("pod {pod_name} is not named after {rs_name}"));
        assert!(
            suffix.len() == 5 && suffix.chars().all(|c| NAME_ALPHABET.contains(c)),
            "pod name suffix {suffix}"
        );
        assert_eq!(pod["metadata"]["generateName"], format!("{rs_name}-"));
        assert_eq!(pod["metadata"]["labels"]["pod-template-hash"], hash);
        let owner = &pod["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "ReplicaSet");
        assert_eq!(owner["name"], rs_name.as_str());
        assert_eq!(owner["uid"], rs["metadata"]["uid"]);
        assert_eq!(owner["controller"], true);
        assert_eq!(owner["blockOwnerDeletion"], true);
    }

    // `kubectl get rs`: DESIRED 3, CURRENT 3 once the status is written.
    let row = eventually(WAIT, || {
        let rows = table(&s.ok(&["get", "rs"]));
        let row = rows.get(1)?.clone();
        (row.get(2).map(String::as_str) == Some("3")).then_some((rows[0].clone(), row))
    })
    .unwrap_or_else(|| panic!("rs status never showed CURRENT 3: {}", s.ok(&["get", "rs"])));
    assert_eq!(row.0, vec!["NAME", "DESIRED", "CURRENT", "READY", "AGE"]);
    assert_eq!(
        row.1[..4],
        [rs_name.clone(), "3".into(), "3".into(), "0".into()]
    );

    // The ReplicaSet controller's events, as `kubectl describe rs` lists them.
    let events = items(&s, &["get", "events"]);
    let created: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["reason"] == "SuccessfulCreate")
        .collect();
    assert_eq!(created.len(), 3, "{events:#?}");
    for e in &created {
        assert_eq!(e["source"]["component"], "replicaset-controller");
        assert_eq!(e["involvedObject"]["kind"], "ReplicaSet");
        assert_eq!(e["involvedObject"]["name"], rs_name.as_str());
        assert!(
            e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(&format!("Created pod: {rs_name}-"))),
            "{e}"
        );
    }

    assert_eq!(
        s.ok(&["scale", "deployment/nginx-deployment", "--replicas=10"])
            .trim(),
        "deployment.apps/nginx-deployment scaled"
    );
    let pods = wait_pods(&s, 10);
    assert!(
        pods.iter()
            .all(|p| p["metadata"]["ownerReferences"][0]["name"] == rs_name.as_str())
    );
    assert_eq!(replicasets(&s).len(), 1, "scaling makes no new ReplicaSet");

    // Fifty pods come up in slow-start batches within seconds.
    s.ok(&["scale", "deployment/nginx-deployment", "--replicas=50"]);
    wait_pods(&s, 50);

    s.ok(&["scale", "deployment/nginx-deployment", "--replicas=0"]);
    wait_pods(&s, 0);
    let deleted = eventually(WAIT, || {
        let events = items(&s, &["get", "events"]);
        let n = events
            .iter()
            .filter(|e| e["reason"] == "SuccessfulDelete")
            .count();
        (n == 50).then_some(events)
    })
    .expect("fifty SuccessfulDelete events");
    assert!(deleted.iter().any(|e| {
        e["reason"] == "SuccessfulDelete"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(&format!("Deleted pod: {rs_name}-")))
    }));
    let scaling: Vec<String> = deleted
        .iter()
        .filter(|e| e["reason"] == "ScalingReplicaSet")
        .map(|e| {
            assert_eq!(e["source"]["component"], "deployment-controller");
            e["message"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    for expected in [
        format!("Scaled up replica set {rs_name} from 0 to 3"),
        format!("Scaled up replica set {rs_name} from 3 to 10"),
        format!("Scaled up replica set {rs_name} from 10 to 50"),
        format!("Scaled down replica set {rs_name} from 50 to 0"),
    ] {
        assert!(scaling.contains(&expected), "{expected} not in {scaling:?}");
    }
}

#[test]
fn set_image_rolls_out_a_second_revision_and_deleting_the_deployment_removes_everything() {
    let s = TestServer::start();
    let first = name(&create_course_deployment(&s));

    s.ok(&[
        "set",
        "image",
        "deployment/nginx-deployment",
        "nginx=nginx:1.25",
    ]);
    // No pod becomes available without a kubelet: with maxSurge 1 (25% of 3, rounded up) and
    // maxUnavailable 0 (rounded down) the rollout adds one new pod and keeps the old three.
    let second = eventually(WAIT, || {
        replicasets(&s).into_iter().find(|rs| name(rs) != first)
    })
    .unwrap_or_else(|| panic!("no second ReplicaSet\nserver log:\n{}", s.log()));
    let second_name = name(&second);
    assert_eq!(
        second["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );
    assert_eq!(
        second["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.25"
    );
    let pods = wait_pods(&s, 4);
    let on_second = pods
        .iter()
        .filter(|p| p["metadata"]["ownerReferences"][0]["name"] == second_name.as_str())
        .count();
    assert_eq!(on_second, 1);
    let d = eventually(WAIT, || {
        let d = json(&s.ok(&["get", "deployment", "nginx-deployment", "-o", "json"]));
        (d["status"]["updatedReplicas"] == 1 && d["status"]["observedGeneration"] == 2).then_some(d)
    })
    .unwrap_or_else(|| {
        panic!(
            "status never showed the rollout: {}",
            s.ok(&["get", "deployment", "nginx-deployment", "-o", "json"])
        )
    });
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );
    assert_eq!(d["status"]["replicas"], 4);
    assert_eq!(d["status"]["unavailableReplicas"], 4);
    let conditions = d["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let available = conditions
        .iter()
        .find(|c| c["type"] == "Available")
        .expect("Available");
    assert_eq!(available["status"], "False");
    assert_eq!(available["reason"], "MinimumReplicasUnavailable");
    assert_eq!(
        available["message"],
        "Deployment does not have minimum availability."
    );
    let progressing = conditions
        .iter()
        .find(|c| c["type"] == "Progressing")
        .expect("Progressing");
    assert_eq!(progressing["status"], "True");

    let rollout = s.kubectl(&[
        "rollout",
        "status",
        "deployment/nginx-deployment",
        "--timeout=1s",
    ]);
    assert!(!rollout.status.success());
    let stdout = String::from_utf8_lossy(&rollout.stdout);
    assert!(
        stdout.contains(
            "Waiting for deployment \"nginx-deployment\" rollout to finish: 1 out of 3 new replicas have been updated..."
        ),
        "{stdout}"
    );

    let describe = s.ok(&["describe", "deployment", "nginx-deployment"]);
    assert!(
        describe.contains(&format!(
            "NewReplicaSet:   {second_name} (1/1 replicas created)"
        )),
        "{describe}"
    );
    assert!(
        describe.contains(&format!("OldReplicaSets:  {first} (3/3 replicas created)")),
        "{describe}"
    );
    assert!(describe.contains("ScalingReplicaSet"), "{describe}");
    assert!(
        describe.contains(&format!("Scaled up replica set {second_name} from 0 to 1")),
        "{describe}"
    );
    let history = s.ok(&["rollout", "history", "deployment/nginx-deployment"]);
    let revisions: Vec<String> = table(&history)
        .iter()
        .filter_map(|r| r.first().cloned())
        .filter(|c| c.chars().all(|ch| ch.is_ascii_digit()))
        .collect();
    assert_eq!(revisions, vec!["1", "2"], "{history}");

    s.ok(&["delete", "deployment", "nginx-deployment"]);
    eventually(WAIT, || replicasets(&s).is_empty().then_some(())).unwrap_or_else(|| {
        panic!(
            "ReplicaSets outlived their Deployment: {:?}",
            names(&replicasets(&s))
        )
    });
    wait_pods(&s, 0);
}

#[test]
fn rollout_status_succeeds_once_the_pods_report_ready() {
    let s = TestServer::start();
    create_course_deployment(&s);
    // Stand in for a kubelet: mark every pod Running and Ready through pods/status.
    for pod in wait_pods(&s, 3) {
        let patch = serde_json::json!({
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}],
            }
        })
        .to_string();
        s.ok(&[
            "patch",
            "pod",
            &name(&pod),
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch,
        ]);
    }
    let out = s.ok(&[
        "rollout",
        "status",
        "deployment/nginx-deployment",
        "--timeout=30s",
    ]);
    assert!(
        out.contains("deployment \"nginx-deployment\" successfully rolled out"),
        "{out}"
    );
    let d = json(&s.ok(&["get", "deployment", "nginx-deployment", "-o", "json"]));
    assert_eq!(d["status"]["availableReplicas"], 3);
    let conditions = d["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let progressing = conditions
        .iter()
        .find(|c| c["type"] == "Progressing")
        .expect("Progressing");
    assert_eq!(progressing["reason"], "NewReplicaSetAvailable");
    let rs = name(&replicasets(&s)[0]);
    assert_eq!(
        progressing["message"],
        format!("ReplicaSet \"{rs}\" has successfully progressed.")
    );
    let available = conditions
        .iter()
        .find(|c| c["type"] == "Available")
        .expect("Available");
    assert_eq!(available["reason"], "MinimumReplicasAvailable");
    assert_eq!(available["message"], "Deployment has minimum availability.");
    let rows = table(&s.ok(&["get", "deployment"]));
    assert_eq!(rows[1][..4], ["nginx-deployment", "3/3", "3", "3"]);
}
