//! DockerCoins on a lab of real nodes, as root, with the real kubectl: the course's optional
//! section "Deploying DockerCoins onto the Kubernetes Cluster" command for command. The
//! worker fails until the Services exist and then recovers by itself; the hash rate read
//! from webui's `/json` through the NodePort on the host shows the rng bottleneck (one
//! worker ≈ 3.3 hashes/s, ten workers ≈ 10 on one rng, more with rng as a DaemonSet); the
//! webui page draws its chart in headless Chromium; the course's clean-up leaves only
//! `service/kubernetes`.
//!
//! The DaemonSet step is done the way today's kubectl allows (it no longer has `--export`):
//! `kubectl get deploy/rng -o yaml`, edited as the course says plus the fields the server set.
//!
//! This test needs root, network namespaces and Debian's `chromium` (scripts/setup installs
//! it). It fails, loudly, when it cannot run: never skipped.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::reallab::{Lab, text};
use support::{eventually, fixture_str, table};

/// The lab's name: unique among the real-lab tests.
const LAB: &str = "klt-coins";

/// The worker's log lines of a failed work loop (`log.exception` and the retry).
const WORK_LOOP_ERROR: &str = "ERROR:__main__:In work loop:";
const RETRY_LINE: &str = "ERROR:__main__:Waiting 10s and restarting.";

/// How long a hash-rate measurement lasts: long enough that the workers' once-a-second
/// updates of the counter and the random spread of requests over rng pods average out.
const WINDOW: Duration = Duration::from_secs(12);
/// The DaemonSet's figure is compared with a threshold close to what random load
/// balancing over two rng pods gives (≈ 1.8× one rng), so it is measured longer.
const LONG_WINDOW: Duration = Duration::from_secs(20);

/// One answer of webui's `/json`.
#[derive(Clone, Copy, Debug)]
struct Sample {
    /// Hashes that start with `0`, kept in redis's `wallet`.
    coins: i64,
    hashes: i64,
    now: f64,
}

/// `GET /json` from the webui through its NodePort on the host, as the browser does.
fn sample(client: &reqwest::blocking::Client, url: &str) -> Option<Sample> {
    let reply = client.get(url).send().ok()?;
    if !reply.status().is_success() {
        return None;
    }
    let json: serde_json::Value = serde_json::from_slice(&reply.bytes().ok()?).ok()?;
    Some(Sample {
        coins: json["coins"].as_i64()?,
        hashes: json["hashes"].as_i64()?,
        now: json["now"].as_f64()?,
    })
}

/// Each worker pod's log: how many failed work loops it shows, and whether it is working
/// now (no failure, or work done since the last one).
fn worker_states(lab: &Lab) -> BTreeMap<String, (usize, bool)> {
    lab.running_pods("app=worker")
        .into_iter()
        .map(|(pod, _, _)| {
            let logs = text(&lab.kubectl(&["logs", &pod]));
            let failures = logs.matches(RETRY_LINE).count();
            (pod, (failures, failures == 0 || recovered(&logs)))
        })
        .collect()
}

/// Fails the test, with their logs, if workers show more failed work loops than in `before`;
/// returns the workers' states now.
fn assert_no_worker_failed(
    lab: &Lab,
    before: &BTreeMap<String, (usize, bool)>,
    when: &str,
) -> BTreeMap<String, (usize, bool)> {
    let now = worker_states(lab);
    let failed: Vec<String> = now
        .iter()
        .filter(|(pod, (failures, _))| *failures > before.get(*pod).map_or(0, |(b, _)| *b))
        .map(|(pod, _)| format!("{pod}:\n{}", text(&lab.kubectl(&["logs", pod]))))
        .collect();
    assert!(
        failed.is_empty(),
        "workers failed {when}:\n{}",
        failed.join("\n")
    );
    now
}

/// The least-squares slope of hashes over time: the rate, with the workers' batched
/// counter updates smoothed out (two samples alone are off by up to a batch per worker).
fn slope(samples: &[Sample]) -> f64 {
    let n = samples.len() as f64;
    let mean_t = samples.iter().map(|s| s.now).sum::<f64>() / n;
    let mean_h = samples.iter().map(|s| s.hashes as f64).sum::<f64>() / n;
    let (mut covariance, mut variance) = (0.0, 0.0);
    for s in samples {
        covariance += (s.now - mean_t) * (s.hashes as f64 - mean_h);
        variance += (s.now - mean_t) * (s.now - mean_t);
    }
    covariance / variance
}

/// Hashes per second over `window`, from `/json` sampled four times a second, once every worker is
/// working. A worker that fails during the window (and so sleeps 10 s) fails the test: the
/// figure would not be the lesson's.
fn hash_rate(lab: &Lab, client: &reqwest::blocking::Client, url: &str, window: Duration) -> f64 {
    let before = eventually(Duration::from_secs(30), || {
        let states = worker_states(lab);
        states
            .values()
            .all(|(_, working)| *working)
            .then_some(states)
    })
    .unwrap_or_else(|| panic!("workers not all working: {:?}", worker_states(lab)));
    let start = Instant::now();
    let mut samples = Vec::new();
    // Four samples a second: finer than the workers' updates (about 1.2 s apart for one
    // worker), so the fit does not alias with them.
    for quarter in 0..=window.as_secs() * 4 {
        let tick = start + Duration::from_millis(250 * quarter);
        std::thread::sleep(tick.saturating_duration_since(Instant::now()));
        samples.push(
            eventually(Duration::from_secs(5), || sample(client, url))
                .unwrap_or_else(|| panic!("no answer from {url}")),
        );
    }
    let after = assert_no_worker_failed(lab, &before, "while the hash rate was measured");
    let (first, last) = (samples[0], samples[samples.len() - 1]);
    // Coins are a part of the hashes (about 1 in 16), and are never lost.
    assert!(
        first.coins <= last.coins && last.coins <= last.hashes,
        "{first:?} -> {last:?}"
    );
    let rate = slope(&samples);
    println!(
        "  /json {first:?} -> {last:?}: {rate:.2} hashes/s over {:.1} s ({:.2} from the ends), \
         {} workers (failed work loops in their logs: {})",
        last.now - first.now,
        (last.hashes - first.hashes) as f64 / (last.now - first.now),
        after.len(),
        after.values().map(|(failures, _)| failures).sum::<usize>()
    );
    rate
}

/// The worker's log (`kubectl logs deploy/worker`, one of its pods, as the course reads it).
fn worker_logs(lab: &Lab) -> String {
    text(&lab.kubectl(&["logs", "deploy/worker"]))
}

/// Whether the worker's log, after its last failed work loop, shows work done: a line
/// `INFO:__main__:<n> units of work done, updating hash counter` with n > 0.
fn recovered(logs: &str) -> bool {
    let last_error = logs.rfind(RETRY_LINE).map_or(0, |i| i + RETRY_LINE.len());
    logs[last_error..].lines().any(|line| {
        line.strip_prefix("INFO:__main__:")
            .and_then(|l| l.strip_suffix(" units of work done, updating hash counter"))
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n > 0)
    })
}

/// Top-level keys of `kubectl get -o yaml` output a learner deletes, with their blocks.
const DROP_TOP_LEVEL: &[&str] = &["status"];
/// Server-set `metadata` fields that `--export` used to remove.
const DROP_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "managedFields",
    "selfLink",
];
/// The Deployment-only `spec` fields the course removes.
const DROP_SPEC: &[&str] = &["progressDeadlineSeconds", "replicas", "strategy"];

/// The course's edit of `kubectl get deploy/rng -o yaml` into a DaemonSet, line by line as a
/// learner does it in an editor: `kind: DaemonSet`; no `progressDeadlineSeconds`,
/// `replicas`, `strategy` block or `status`; and, since there is no `--export` any more, no
/// server-set metadata (uid, resourceVersion, creationTimestamp, generation, managedFields
/// and the `deployment.kubernetes.io/revision` annotation).
fn deployment_yaml_to_daemonset(yaml: &str) -> String {
    let indent = |line: &str| line.len() - line.trim_start().len();
    let key = |line: &str| {
        line.trim_start()
            .trim_start_matches("- ")
            .split(':')
            .next()
            .unwrap_or("")
            .to_string()
    };
    let mut kept: Vec<String> = Vec::new();
    let mut section = String::new();
    // While Some(n), lines indented deeper than n belong to a dropped block.
    let mut dropping_below: Option<usize> = None;
    for line in yaml.lines() {
        let depth = indent(line);
        if let Some(n) = dropping_below {
            if line.trim().is_empty()
                || depth > n
                || (depth == n && line.trim_start().starts_with("- "))
            {
                continue;
            }
            dropping_below = None;
        }
        if depth == 0 {
            section = key(line);
        }
        let drop = match depth {
            0 => DROP_TOP_LEVEL.contains(&key(line).as_str()),
            2 if section == "metadata" => DROP_METADATA.contains(&key(line).as_str()),
            2 if section == "spec" => DROP_SPEC.contains(&key(line).as_str()),
            4 if section == "metadata" => key(line) == "deployment.kubernetes.io/revision",
            _ => false,
        };
        if drop {
            dropping_below = Some(depth);
            continue;
        }
        if line == "kind: Deployment" {
            kept.push("kind: DaemonSet".to_string());
        } else {
            kept.push(line.to_string());
        }
    }
    // An `annotations:` left without any annotation goes too.
    let mut edited: Vec<&str> = Vec::new();
    for (i, line) in kept.iter().enumerate() {
        let empty_block = line.trim_end().ends_with(':')
            && key(line) == "annotations"
            && kept
                .get(i + 1)
                .is_none_or(|next| indent(next) <= indent(line));
        if !empty_block {
            edited.push(line);
        }
    }
    edited.join("\n") + "\n"
}

/// The running rng pods: name, node and owner kind.
fn rng_pods(lab: &Lab) -> Vec<(String, String, String)> {
    lab.running_pods_with("app=rng", "{.metadata.ownerReferences[0].kind}")
}

/// How many ready endpoints the EndpointSlices of Service `name` list.
fn ready_endpoints(lab: &Lab, name: &str) -> usize {
    lab.kubectl_ok(&[
        "get",
        "endpointslices",
        "-l",
        &format!("kubernetes.io/service-name={name}"),
        "-o",
        "jsonpath={.items[*].endpoints[*].conditions.ready}",
    ])
    .split_whitespace()
    .filter(|r| *r == "true")
    .count()
}

/// What the browser script reports about the page (tests/fixtures/dockercoins-browser.py).
fn open_in_chromium(url: &str, screenshot: &Path) -> serde_json::Value {
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "Debian's chromium is needed (scripts/setup installs it: apt-get install -y chromium)"
    );
    let out = Command::new("python3")
        .arg(fixture_str("dockercoins-browser.py"))
        .arg(url)
        .arg(screenshot)
        .arg("30")
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "headless Chromium on {url}: {}\n{}",
        text(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
}

#[test]
fn course_dockercoins_section_command_for_command() {
    let started = Instant::now();
    let mut lab = Lab::up(LAB, &[]);
    println!("lab up after {:.1} s", started.elapsed().as_secs_f64());
    // The course starts on a booted cluster, whose DNS answers: kubeadm's coredns ready.
    let coredns_ready = eventually(Duration::from_secs(60), || {
        let ready = lab.kubectl_ok(&[
            "get",
            "deploy/coredns",
            "-n",
            "kube-system",
            "-o",
            "jsonpath={.status.readyReplicas}",
        ]);
        (ready.trim() == "2").then_some(())
    });
    assert!(coredns_ready.is_some(), "coredns not ready: {}", lab.logs());
    println!(
        "cluster DNS ready after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // 1-2. Redis, then the loop creating the other four Deployments.
    let out = lab.kubectl_ok(&["create", "deployment", "redis", "--image=redis"]);
    assert_eq!(out.trim(), "deployment.apps/redis created");
    for deployment in ["hasher", "rng", "webui", "worker"] {
        let image = format!("--image=training/dockercoins-{deployment}:1.0");
        let out = lab.kubectl_ok(&["create", "deployment", deployment, &image]);
        assert_eq!(out.trim(), format!("deployment.apps/{deployment} created"));
    }

    // 3. Every pod Running, distributed over the two worker nodes (kube-0 is the tainted
    // control plane).
    let mut nodes = BTreeSet::new();
    for app in ["redis", "hasher", "rng", "webui", "worker"] {
        let pods = lab.wait_running(&format!("app={app}"), 1, Duration::from_secs(60));
        nodes.insert(pods[0].1.clone());
    }
    let wide = lab.kubectl_ok(&["get", "pods", "-o", "wide"]);
    println!("{wide}");
    assert_eq!(
        nodes.iter().map(String::as_str).collect::<Vec<_>>(),
        ["kube-1", "kube-2"],
        "{wide}"
    );

    // 4. rng serves; the worker cannot reach redis: its log shows the failed work loop.
    let rng_logs = eventually(Duration::from_secs(10), || {
        Some(text(&lab.kubectl(&["logs", "deploy/rng"]))).filter(|l| l.contains("Running on"))
    });
    assert!(rng_logs.is_some(), "rng's start-up line");
    let failing = eventually(Duration::from_secs(30), || {
        Some(worker_logs(&lab)).filter(|l| l.contains(RETRY_LINE))
    })
    .unwrap_or_else(|| panic!("no error in the worker's log: {}", worker_logs(&lab)));
    println!("worker before the Services:\n{failing}");
    assert!(failing.contains(WORK_LOOP_ERROR), "{failing}");
    assert!(
        failing.contains("Traceback (most recent call last):"),
        "{failing}"
    );
    // What a real cluster shows: every search step and the bare name are NXDOMAIN.
    assert!(
        failing.contains(
            "redis.exceptions.ConnectionError: Error -2 connecting to redis:6379. \
             Name or service not known."
        ),
        "{failing}"
    );
    assert!(!recovered(&failing), "{failing}");

    // 5. Only the `kubernetes` Service so far.
    let services = table(&lab.kubectl_ok(&["get", "services"]));
    assert_eq!(services.len(), 2, "{services:?}");
    assert_eq!(
        services[1][..5],
        ["kubernetes", "ClusterIP", "10.96.0.1", "<none>", "443/TCP"]
    );

    // 6-7. redis, rng and hasher exposed inside the cluster.
    for (deployment, port) in [("redis", "6379"), ("rng", "80"), ("hasher", "80")] {
        let out = lab.kubectl_ok(&["expose", "deployment", deployment, "--port", port]);
        assert_eq!(out.trim(), format!("service/{deployment} exposed"));
    }
    let exposed = Instant::now();
    let services = table(&lab.kubectl_ok(&["get", "services"]));
    for (name, ports) in [
        ("hasher", "80/TCP"),
        ("kubernetes", "443/TCP"),
        ("redis", "6379/TCP"),
        ("rng", "80/TCP"),
    ] {
        assert!(
            services
                .iter()
                .any(|row| row[0] == name && row[1] == "ClusterIP" && row[4] == ports),
            "{name} {ports}: {services:?}"
        );
    }

    // 8. The worker recovers by itself (its 10 s retry) once the Services exist.
    let recovered_logs = eventually(Duration::from_secs(15), || {
        Some(worker_logs(&lab)).filter(|l| recovered(l))
    })
    .unwrap_or_else(|| {
        panic!(
            "the worker did not recover within 15 s: {}\n{}",
            worker_logs(&lab),
            lab.logs()
        )
    });
    println!(
        "worker recovered {:.1} s after the Services exist:\n{}",
        exposed.elapsed().as_secs_f64(),
        recovered_logs
            .lines()
            .skip(recovered_logs.lines().count().saturating_sub(4))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // 9-10. webui exposed with a NodePort.
    let out = lab.kubectl_ok(&["expose", "deploy/webui", "--type=NodePort", "--port", "80"]);
    assert_eq!(out.trim(), "service/webui exposed");
    let services = table(&lab.kubectl_ok(&["get", "services"]));
    let webui = services
        .iter()
        .find(|row| row[0] == "webui")
        .unwrap_or_else(|| panic!("{services:?}"));
    assert_eq!(webui[1], "NodePort", "{webui:?}");
    let node_port: u16 = webui[4]
        .strip_prefix("80:")
        .and_then(|p| p.strip_suffix("/TCP"))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{webui:?}"));
    assert!((30000..=32767).contains(&node_port), "{webui:?}");

    // 11. The dashboard's data, through the NodePort on the host: one worker ≈ 3.3 hashes/s
    // (0.1 s pause + 0.1 s rng + 0.1 s hasher per hash).
    let json_url = format!("http://127.0.0.1:{node_port}/json");
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("HTTP client");
    let counting = eventually(Duration::from_secs(20), || {
        sample(&client, &json_url).filter(|s| s.hashes > 0)
    });
    assert!(counting.is_some(), "{json_url}: {}", lab.logs());
    let one_worker = hash_rate(&lab, &client, &json_url, WINDOW);

    // 12. Ten workers: rng answers one request at a time (0.1 s each), ≈ 10 hashes/s.
    let out = lab.kubectl_ok(&["scale", "deploy/worker", "--replicas=10"]);
    assert_eq!(out.trim(), "deployment.apps/worker scaled");
    lab.wait_running("app=worker", 10, Duration::from_secs(60));
    // The new workers' first counter updates.
    std::thread::sleep(Duration::from_secs(1));
    let ten_workers = hash_rate(&lab, &client, &json_url, WINDOW);

    // 13-14. The DaemonSet the modern way: `-o yaml` (no `--export`) edited as the course says.
    let deployment_yaml = lab.kubectl_ok(&["get", "deploy/rng", "-o", "yaml"]);
    let daemonset_yaml = deployment_yaml_to_daemonset(&deployment_yaml);
    println!("deploy-rng.yaml:\n{daemonset_yaml}");
    for gone in [
        "kind: Deployment",
        "progressDeadlineSeconds",
        "replicas",
        "strategy",
        "status:",
        "uid:",
        "resourceVersion",
        "deployment.kubernetes.io/revision",
    ] {
        assert!(!daemonset_yaml.contains(gone), "{gone}: {daemonset_yaml}");
    }
    assert!(
        daemonset_yaml.contains("kind: DaemonSet"),
        "{daemonset_yaml}"
    );
    let file = lab.home().join("deploy-rng.yaml");
    std::fs::write(&file, &daemonset_yaml).expect("write deploy-rng.yaml");

    // 15-16. `kubectl apply` creates it: one rng pod on each worker node.
    let out = lab.kubectl_ok(&["apply", "-f", file.to_str().expect("utf-8 path")]);
    assert_eq!(out.trim(), "daemonset.apps/rng created");
    let daemonsets = eventually(Duration::from_secs(60), || {
        let rows = table(&lab.kubectl_ok(&["get", "daemonset"]));
        rows.iter()
            .any(|r| r[..6] == ["rng", "2", "2", "2", "2", "2"] && r[6] == "<none>")
            .then_some(rows)
    })
    .unwrap_or_else(|| panic!("{}", lab.kubectl_ok(&["get", "daemonset", "-o", "wide"])));
    println!("{daemonsets:?}");

    // 17. Deployment and DaemonSet side by side; then the rng Deployment goes.
    let all = lab.kubectl_ok(&["get", "all"]);
    assert!(all.contains("deployment.apps/rng"), "{all}");
    assert!(all.contains("daemonset.apps/rng"), "{all}");
    let failures_before = worker_states(&lab);
    let out = lab.kubectl_ok(&["delete", "deploy/rng"]);
    assert_eq!(out.trim(), "deployment.apps \"rng\" deleted");
    let mut rng = eventually(Duration::from_secs(60), || {
        let pods = rng_pods(&lab);
        // Also the deleted Deployment's pod gone, not only terminating.
        let all_rng_pods = lab.kubectl_ok(&["get", "pods", "-l", "app=rng", "-o", "name"]);
        (pods.len() == 2
            && all_rng_pods.lines().count() == 2
            && pods.iter().all(|(_, _, owner)| owner == "DaemonSet")
            && ready_endpoints(&lab, "rng") == 2)
            .then_some(pods)
    })
    .unwrap_or_else(|| panic!("{}", lab.kubectl_ok(&["get", "pods", "-o", "wide"])));
    // The deleted rng pod drained on SIGTERM: the workers queued on it got their bytes, and
    // none failed and went to sleep for 10 s.
    assert_no_worker_failed(
        &lab,
        &failures_before,
        "when the rng Deployment was deleted",
    );
    rng.sort_by(|a, b| a.1.cmp(&b.1));
    let nodes: Vec<&str> = rng.iter().map(|(_, node, _)| node.as_str()).collect();
    assert_eq!(nodes, ["kube-1", "kube-2"], "{rng:?}");
    // Every node's proxy has the two rng endpoints before the measurement starts.
    std::thread::sleep(Duration::from_secs(1));
    let daemonset = hash_rate(&lab, &client, &json_url, LONG_WINDOW);

    // The webui page in a browser through the host's NodePort: the chart draws non-zero
    // hashes/second.
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{LAB}-webui.png"));
    let page = open_in_chromium(
        &format!("http://127.0.0.1:{node_port}/index.html"),
        &screenshot,
    );
    println!(
        "webui in Chromium: {page}\nscreenshot: {}",
        screenshot.display()
    );

    println!(
        "hash rate: 1 worker {one_worker:.2}/s; 10 workers {ten_workers:.2}/s; \
         10 workers with rng as a DaemonSet on 2 nodes {daemonset:.2}/s ({:.2}x)",
        daemonset / ten_workers
    );
    assert!(
        (2.6..=4.0).contains(&one_worker),
        "one worker: {one_worker:.2} hashes/s, expected ≈ 3.3"
    );
    assert!(
        (8.0..=12.0).contains(&ten_workers),
        "ten workers on one rng: {ten_workers:.2} hashes/s, expected ≈ 10"
    );
    assert!(
        daemonset >= 1.7 * ten_workers,
        "rng as a DaemonSet: {daemonset:.2} hashes/s, expected ≥ 1.7 × {ten_workers:.2}"
    );
    assert_eq!(page["title"], "DockerCoin Miner WebUI", "{page}");
    assert_eq!(page["points"], 249, "{page}");
    assert!(page["nonzero_points"].as_u64().unwrap_or(0) >= 5, "{page}");
    assert!(page["speed"].as_f64().unwrap_or(0.0) > 0.0, "{page}");
    assert!(
        page["speed_text"]
            .as_str()
            .is_some_and(|s| s.ends_with(" hashes/second") && s != "~0.0 hashes/second"),
        "{page}"
    );
    assert!(
        page["blue_pixels_above_zero"].as_u64().unwrap_or(0) > 500,
        "{page}"
    );
    // The screenshot is a real page: the window's width, text, axes and the chart in many
    // colours (a blank page has one).
    assert_eq!(page["screenshot_width"], 1200, "{page}");
    assert!(
        page["screenshot_height"].as_u64().unwrap_or(0) >= 600,
        "{page}"
    );
    assert!(
        page["screenshot_bytes"].as_u64().unwrap_or(0) > 10_000,
        "{page}"
    );
    assert!(
        page["screenshot_colours"].as_u64().unwrap_or(0) > 50,
        "{page}"
    );
    assert!(std::fs::metadata(&screenshot).is_ok_and(|m| m.len() > 10_000));

    // 18. The course's clean-up.
    for service in ["redis", "hasher", "rng", "webui"] {
        let out = lab.kubectl_ok(&["delete", &format!("svc/{service}")]);
        assert_eq!(out.trim(), format!("service \"{service}\" deleted"));
    }
    for deployment in ["redis", "hasher", "webui", "worker"] {
        let out = lab.kubectl_ok(&["delete", &format!("deploy/{deployment}")]);
        assert_eq!(
            out.trim(),
            format!("deployment.apps \"{deployment}\" deleted")
        );
    }
    let out = lab.kubectl_ok(&["delete", "ds/rng"]);
    assert_eq!(out.trim(), "daemonset.apps \"rng\" deleted");

    // 19. Everything cleared: `kubectl get all` shows only the `kubernetes` Service.
    let all = eventually(Duration::from_secs(60), || {
        let rows = table(&lab.kubectl_ok(&["get", "all"]));
        (rows.len() == 2 && rows[1][0] == "service/kubernetes").then_some(rows)
    });
    assert!(all.is_some(), "{}", lab.kubectl_ok(&["get", "all"]));
    lab.down();
    println!("test took {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn the_daemonset_edit_removes_what_the_course_and_the_server_set() {
    let deployment = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  annotations:
    deployment.kubernetes.io/revision: \"1\"
  creationTimestamp: \"2025-01-01T00:00:00Z\"
  generation: 1
  labels:
    app: rng
  managedFields:
  - apiVersion: apps/v1
    fieldsType: FieldsV1
    manager: kubectl-create
  name: rng
  namespace: default
  resourceVersion: \"1234\"
  uid: 0b7c2a4e-0000-4000-8000-000000000000
spec:
  progressDeadlineSeconds: 600
  replicas: 1
  revisionHistoryLimit: 10
  selector:
    matchLabels:
      app: rng
  strategy:
    rollingUpdate:
      maxSurge: 25%
      maxUnavailable: 25%
    type: RollingUpdate
  template:
    metadata:
      creationTimestamp: null
      labels:
        app: rng
    spec:
      containers:
      - image: training/dockercoins-rng:1.0
        imagePullPolicy: IfNotPresent
        name: dockercoins-rng
status:
  availableReplicas: 1
  conditions:
  - lastTransitionTime: \"2025-01-01T00:00:00Z\"
    type: Available
  replicas: 1
";
    let expected = "\
apiVersion: apps/v1
kind: DaemonSet
metadata:
  labels:
    app: rng
  name: rng
  namespace: default
spec:
  revisionHistoryLimit: 10
  selector:
    matchLabels:
      app: rng
  template:
    metadata:
      creationTimestamp: null
      labels:
        app: rng
    spec:
      containers:
      - image: training/dockercoins-rng:1.0
        imagePullPolicy: IfNotPresent
        name: dockercoins-rng
";
    assert_eq!(deployment_yaml_to_daemonset(deployment), expected);
}
