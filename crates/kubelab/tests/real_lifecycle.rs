//! Containers that live and die like upstream's, on real nodes (root, real kubectl): a crash
//! loop with its back-off and `kubectl logs --previous`, pods that finish (Succeeded, Failed),
//! readiness and liveness probes, and an image that cannot be pulled.
//!
//! These tests need root and network namespaces (CI runs as root). They fail, loudly, when
//! they cannot run: never skipped. All pods run in one lab at once to keep this file short.

mod support;

use std::time::Duration;
use support::eventually;
use support::reallab::Lab;

const PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: crash}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox
    command: ["sh", "-c", "echo run; exit 1"]
---
apiVersion: v1
kind: Pod
metadata: {name: done}
spec:
  restartPolicy: Never
  containers:
  - name: app
    image: docker.io/library/busybox:1.36
    command: ["sh", "-c", "echo done"]
---
apiVersion: v1
kind: Pod
metadata: {name: failed}
spec:
  restartPolicy: Never
  containers:
  - name: app
    image: busybox
    args: ["sh", "-c", "exit 3"]
---
apiVersion: v1
kind: Pod
metadata: {name: unready}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: nginx
    image: nginx
    readinessProbe:
      httpGet: {port: 81, path: /}
      periodSeconds: 2
---
apiVersion: v1
kind: Pod
metadata: {name: ready}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: nginx
    image: nginx
    ports: [{name: http, containerPort: 80}]
    readinessProbe:
      httpGet: {port: http, path: /}
      periodSeconds: 2
---
apiVersion: v1
kind: Pod
metadata: {name: live}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox
    command: ["sleep", "3600"]
    livenessProbe:
      exec: {command: ["false"]}
      periodSeconds: 1
      failureThreshold: 1
---
apiVersion: v1
kind: Pod
metadata: {name: nopull}
spec:
  containers:
  - name: app
    image: kubelab.invalid/no-such-image:1
"#;

/// `kubectl get pods` as name → (READY, STATUS, RESTARTS).
fn pod_rows(lab: &Lab) -> Vec<(String, String, String, String)> {
    lab.kubectl_ok(&["get", "pods", "--no-headers"])
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4).then(|| {
                (
                    f[0].to_string(),
                    f[1].to_string(),
                    f[2].to_string(),
                    f[3].to_string(),
                )
            })
        })
        .collect()
}

fn row(lab: &Lab, pod: &str) -> Option<(String, String, u32)> {
    pod_rows(lab)
        .into_iter()
        .find(|r| r.0 == pod)
        .map(|r| (r.1, r.2, r.3.parse().unwrap_or(0)))
}

fn jsonpath(lab: &Lab, pod: &str, path: &str) -> String {
    lab.kubectl_ok(&["get", "pod", pod, "-o", &format!("jsonpath={path}")])
}

fn events_of(lab: &Lab, pod: &str) -> String {
    lab.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={pod}"),
        "-o",
        "custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message",
    ])
}

/// Waits until `check` holds for pod `pod`'s row, failing with everything a reader needs.
fn wait_row(lab: &Lab, pod: &str, timeout: Duration, check: impl Fn(&str, &str, u32) -> bool) {
    let seen = eventually(timeout, || {
        row(lab, pod).filter(|(ready, status, restarts)| check(ready, status, *restarts))
    });
    if seen.is_none() {
        panic!(
            "pod {pod} never got there: {:?}\n{}\n{}\n{}",
            row(lab, pod),
            lab.kubectl_ok(&["get", "pod", pod, "-o", "yaml"]),
            events_of(lab, pod),
            lab.logs()
        );
    }
}

#[test]
fn containers_crash_restart_finish_and_are_probed() {
    let mut lab = Lab::up("klt-life", &["--workers", "1"]);
    lab.apply(PODS);

    // Pods that finish: Completed/Succeeded and Error/Failed, never restarted.
    wait_row(&lab, "done", Duration::from_secs(30), |ready, status, r| {
        ready == "0/1" && status == "Completed" && r == 0
    });
    assert_eq!(jsonpath(&lab, "done", "{.status.phase}"), "Succeeded");
    assert_eq!(
        jsonpath(
            &lab,
            "done",
            "{.status.containerStatuses[0].state.terminated.exitCode}"
        ),
        "0"
    );
    assert!(lab.kubectl_ok(&["logs", "done"]).contains("done"));
    wait_row(&lab, "failed", Duration::from_secs(10), |_, status, r| {
        status == "Error" && r == 0
    });
    assert_eq!(jsonpath(&lab, "failed", "{.status.phase}"), "Failed");
    assert_eq!(
        jsonpath(
            &lab,
            "failed",
            "{.status.containerStatuses[0].state.terminated.exitCode}"
        ),
        "3"
    );

    // The unknown image: ErrImagePull, then ImagePullBackOff, with the kubelet's events.
    wait_row(
        &lab,
        "nopull",
        Duration::from_secs(20),
        |ready, status, _| {
            ready == "0/1" && (status == "ErrImagePull" || status == "ImagePullBackOff")
        },
    );
    let events = events_of(&lab, "nopull");
    assert!(
        events.contains("Failed") && events.contains("Failed to pull image"),
        "{events}"
    );
    assert!(events.contains("Pulling image"), "{events}");
    assert!(!events.contains("already present"), "{events}");

    // Readiness: the wrong port keeps the pod Running but not ready; the right one makes it
    // ready.
    wait_row(
        &lab,
        "ready",
        Duration::from_secs(20),
        |ready, status, _| ready == "1/1" && status == "Running",
    );
    assert_eq!(
        jsonpath(
            &lab,
            "ready",
            "{.status.conditions[?(@.type==\"Ready\")].status}"
        ),
        "True"
    );
    wait_row(
        &lab,
        "unready",
        Duration::from_secs(20),
        |ready, status, _| ready == "0/1" && status == "Running",
    );
    let unready_events = eventually(Duration::from_secs(20), || {
        let e = events_of(&lab, "unready");
        e.contains("Readiness probe failed").then_some(e)
    })
    .unwrap_or_else(|| panic!("no readiness event: {}", events_of(&lab, "unready")));
    assert!(
        unready_events.contains("connection refused"),
        "{unready_events}"
    );
    assert_eq!(
        jsonpath(
            &lab,
            "unready",
            "{.status.conditions[?(@.type==\"Ready\")].status} {.status.conditions[?(@.type==\"ContainersReady\")].reason}"
        ),
        "False ContainersNotReady"
    );

    // Liveness: `false` fails, the container is killed and restarted.
    wait_row(&lab, "live", Duration::from_secs(30), |_, _, r| r >= 1);
    let live_events = events_of(&lab, "live");
    assert!(
        live_events.contains("Unhealthy") && live_events.contains("Liveness probe failed"),
        "{live_events}"
    );
    assert!(
        live_events.contains("Container app failed liveness probe, will be restarted"),
        "{live_events}"
    );

    // The crash loop: restarted at once, then backed off; RESTARTS counts the restarts.
    wait_row(
        &lab,
        "crash",
        Duration::from_secs(45),
        |ready, status, r| ready == "0/1" && status == "CrashLoopBackOff" && r >= 2,
    );
    let crash = jsonpath(
        &lab,
        "crash",
        "{.status.phase} {.status.containerStatuses[0].lastState.terminated.exitCode} {.status.containerStatuses[0].lastState.terminated.reason} {.status.containerStatuses[0].state.waiting.message}",
    );
    let uid = jsonpath(&lab, "crash", "{.metadata.uid}");
    assert!(
        crash.starts_with("Running 1 Error back-off ")
            && crash.ends_with(&format!(
                "restarting failed container=app pod=crash_default({uid})"
            )),
        "{crash}"
    );
    let previous = lab.kubectl_ok(&["logs", "crash", "--previous"]);
    assert_eq!(previous.trim(), "run");
    let events = events_of(&lab, "crash");
    assert!(
        events.contains(&format!(
            "Back-off restarting failed container app in pod crash_default({uid})"
        )),
        "{events}"
    );
    assert!(events.contains("Started container app"), "{events}");

    // Deleting a crash-looping pod stops it for good.
    lab.kubectl_ok(&[
        "delete",
        "pod",
        "crash",
        "live",
        "--wait=true",
        "--timeout=30s",
    ]);
    assert!(row(&lab, "crash").is_none());
    assert!(lab.down().status.success());
}
