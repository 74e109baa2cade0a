//! Pods on hollow nodes: how fast `kubelab up --hollow` turns created pods into Running, Ready
//! pods. It boots a real lab (API server, controllers and hollow kubelets in one background
//! `kubelab lab-run` process), creates pods two ways and watches them:
//!
//! - **deployment**: a Deployment created with 0 replicas, then scaled to N; each pod's latency
//!   runs from sending the scale request to the watch event showing it Running with Ready=True
//!   (so it includes the Deployment and ReplicaSet controllers creating the pod);
//! - **bare**: N pods created by the benchmark itself from `BENCH_CLIENTS` concurrent client
//!   tasks; each pod's latency runs from sending its create request to that watch event;
//! - **paced**: the same pods, but created on a fixed schedule of `BENCH_PACED_RATE` pods/s
//!   (open loop: pod n is due at n / rate, and its latency runs from when it was due, so a
//!   client that falls behind shows up as latency). The burst cases measure throughput; this
//!   one measures latency while the lab sustains the rate (as clusterloader2 measures pod
//!   startup latency at a set creation rate).
//!
//! Throughput is N / (last pod Running − first request). The watch is opened (from the
//! resourceVersion of a list) before the first request, so no event is missed. The stages
//! columns split the median latency: created (the pod's first watch event), scheduled
//! (`spec.nodeName` set) and Running+Ready. Memory is VmRSS / VmHWM of the lab process (from the
//! lab's pid file) after each case; CPU is that process's user+system time during the case.
//!
//! Run: `cargo bench -p kubelab --bench pods`. Sizes (environment, defaults in brackets):
//! `BENCH_NODES` [10] workers of the first lab, `BENCH_PODS` [1000] pods per case there,
//! `BENCH_BIG_NODES` [100] workers of the second lab (0 skips it), `BENCH_PODS_PER_NODE` [30]
//! pods per worker there, `BENCH_CLIENTS` [20] creating tasks, `BENCH_CASE_TIMEOUT` [90]
//! seconds a case may take, `BENCH_MODES` [deployment,bare,paced], `BENCH_PACED_RATE` [200]
//! pods/s of the paced case; `BENCH_TIMELINE` prints each case's latencies per second,
//! `BENCH_KEEP_LOGS=DIR` copies each lab's log there. The lab's state lives in a temporary
//! directory (under `BENCH_DIR` if set) and the lab is always brought `down`, also on failure.

mod common;

use anyhow::{Context, Result, bail};
use common::{Api, JSON, env_count, ms, percentile, running_and_ready};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

struct Settings {
    nodes: u32,
    pods: usize,
    big_nodes: u32,
    pods_per_node: usize,
    clients: usize,
    case_timeout: Duration,
    modes: Vec<Mode>,
    paced_rate: f64,
    dir: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    Deployment,
    Bare,
    Paced,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Deployment => "deployment",
            Mode::Bare => "bare",
            Mode::Paced => "paced",
        }
    }
}

impl Settings {
    fn from_env() -> Result<Settings> {
        let modes = match std::env::var("BENCH_MODES") {
            Ok(s) => s
                .split(',')
                .map(|m| match m.trim() {
                    "deployment" => Ok(Mode::Deployment),
                    "bare" => Ok(Mode::Bare),
                    "paced" => Ok(Mode::Paced),
                    other => {
                        bail!("BENCH_MODES: unknown mode {other:?} (deployment, bare, paced)")
                    }
                })
                .collect::<Result<Vec<_>>>()?,
            Err(_) => vec![Mode::Deployment, Mode::Bare, Mode::Paced],
        };
        let settings = Settings {
            nodes: env_count("BENCH_NODES", 10)? as u32,
            pods: env_count("BENCH_PODS", 1000)?,
            big_nodes: env_count("BENCH_BIG_NODES", 100)? as u32,
            pods_per_node: env_count("BENCH_PODS_PER_NODE", 30)?,
            clients: env_count("BENCH_CLIENTS", 20)?.max(1),
            case_timeout: Duration::from_secs(env_count("BENCH_CASE_TIMEOUT", 90)? as u64),
            modes,
            paced_rate: env_count("BENCH_PACED_RATE", 200)?.max(1) as f64,
            dir: std::env::var_os("BENCH_DIR").map(PathBuf::from),
        };
        if settings.nodes == 0 {
            bail!("BENCH_NODES must be positive");
        }
        Ok(settings)
    }
}

/// A lab started with `kubelab up --hollow` in its own HOME, KUBECONFIG and KUBELAB_STATE_DIR;
/// brought `down` on drop, so a failed case never leaves a lab-run process behind.
struct Lab {
    root: tempfile::TempDir,
    name: String,
    down_done: bool,
    pid: u32,
    url: String,
    token: String,
    ca_pem: Vec<u8>,
}

impl Lab {
    fn state_dir(root: &Path, name: &str) -> PathBuf {
        root.join("state").join(name)
    }

    fn kubelab(root: &Path, args: &[&str]) -> Result<Output> {
        Command::new(env!("CARGO_BIN_EXE_kubelab"))
            .args(args)
            .env("HOME", root)
            .env("KUBECONFIG", root.join("kube/config"))
            .env("KUBELAB_STATE_DIR", root.join("state"))
            .env_remove("XDG_STATE_HOME")
            // The default level, stated so a caller's KUBELAB_LOG does not change the figures.
            .env("KUBELAB_LOG", "info")
            .stdin(Stdio::null())
            .output()
            .context("run kubelab")
    }

    /// Boots the lab and returns it with how long `up` took (until every node was Ready).
    fn up(dir: Option<&Path>, name: &str, workers: u32) -> Result<(Lab, Duration)> {
        let root = match dir {
            Some(d) => tempfile::tempdir_in(d),
            None => tempfile::tempdir(),
        }
        .context("temp dir")?;
        let mut lab = Lab {
            root,
            name: name.to_string(),
            down_done: false,
            pid: 0,
            url: String::new(),
            token: String::new(),
            ca_pem: Vec::new(),
        };
        let kubeconfig = lab.root.path().join("kubeconfig");
        let wait = (60 + workers / 2).to_string();
        let workers = workers.to_string();
        let start = Instant::now();
        let out = Lab::kubelab(
            lab.root.path(),
            &[
                "up",
                "--hollow",
                "--name",
                name,
                "--workers",
                &workers,
                "--wait",
                &wait,
                "--kubeconfig",
                kubeconfig.to_str().context("kubeconfig path")?,
            ],
        )?;
        let took = start.elapsed();
        if !out.status.success() {
            bail!(
                "kubelab up failed ({}):\n{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let state = Lab::state_dir(lab.root.path(), name);
        lab.pid = lab::process::read_pid(&state.join("pid")).context("lab pid file")?;
        lab.url = std::fs::read_to_string(&kubeconfig)?
            .lines()
            .find_map(|l| l.trim().strip_prefix("server: ").map(str::to_string))
            .context("no server: line in the lab's kubeconfig")?;
        lab.token = std::fs::read_to_string(state.join("data/pki/admin.token"))?
            .trim()
            .to_string();
        lab.ca_pem = std::fs::read(state.join("data/pki/ca.crt"))?;
        Ok((lab, took))
    }

    fn client(&self, timeout: Option<Duration>) -> Result<Api> {
        let mut builder = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&self.ca_pem)?);
        if let Some(t) = timeout {
            builder = builder.timeout(t);
        }
        Ok(Api {
            http: builder.build()?,
            base: self.url.clone(),
            token: self.token.clone(),
        })
    }

    fn ensure_running(&self) -> Result<()> {
        if !lab::process::is_alive(self.pid) {
            bail!(
                "the lab process {} died; log tail:\n{}",
                self.pid,
                self.log_tail()
            );
        }
        Ok(())
    }

    fn log_tail(&self) -> String {
        let log =
            std::fs::read_to_string(Lab::state_dir(self.root.path(), &self.name).join("lab.log"))
                .unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn down(&mut self) -> Result<()> {
        self.down_done = true;
        if let Some(dir) = std::env::var_os("BENCH_KEEP_LOGS") {
            let log = Lab::state_dir(self.root.path(), &self.name).join("lab.log");
            let _ = std::fs::copy(log, PathBuf::from(dir).join(format!("{}.log", self.name)));
        }
        let out = Lab::kubelab(self.root.path(), &["down", "--name", &self.name])?;
        if !out.status.success() {
            bail!(
                "kubelab down failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.down_done {
            return;
        }
        let _ = Lab::kubelab(self.root.path(), &["down", "--name", &self.name]);
        if self.pid != 0 {
            // Last resort: our own lab-run only (stop checks the pid's command line).
            let state = Lab::state_dir(self.root.path(), &self.name);
            let _ = lab::process::stop(self.pid, &self.name, &state, Duration::from_secs(2));
        }
    }
}

const MERGE_PATCH: &str = "application/merge-patch+json";

/// A small pod spec; the hollow kubelet runs no containers, so the image is only a name.
fn pod_template(app: &str) -> Value {
    json!({
        "metadata": {"labels": {"app": app}},
        "spec": {
            "containers": [{"name": "web", "image": "registry.k8s.io/pause:3.10"}],
            "terminationGracePeriodSeconds": 0,
        },
    })
}

/// What the watch saw of one pod.
#[derive(Default, Clone, Copy)]
struct Seen {
    created: Option<Instant>,
    scheduled: Option<Instant>,
    running: Option<Instant>,
}

/// `BENCH_TIMELINE`: per second of origin (due time), how many pods, and their p50 / max
/// latency to scheduled and to Running, to see when slow pods happen.
fn print_timeline(
    seen: &HashMap<String, Seen>,
    origin: impl Fn(&str) -> Option<Instant>,
    start: Instant,
) {
    type Bucket = (Vec<Duration>, Vec<Duration>, Vec<Duration>);
    let mut buckets: std::collections::BTreeMap<u64, Bucket> = Default::default();
    for (name, s) in seen {
        let Some(origin) = origin(name) else { continue };
        let second = origin.saturating_duration_since(start).as_secs();
        let bucket = buckets.entry(second).or_default();
        if let Some(t) = s.created {
            bucket.2.push(t.saturating_duration_since(origin));
        }
        if let Some(t) = s.scheduled {
            bucket.0.push(t.saturating_duration_since(origin));
        }
        if let Some(t) = s.running {
            bucket.1.push(t.saturating_duration_since(origin));
        }
    }
    let ms = |d: &[Duration], q: f64| {
        d.get(((d.len() as f64 - 1.0) * q) as usize)
            .map_or(0, |d| d.as_millis())
    };
    for (second, (mut scheduled, mut running, mut created)) in buckets {
        scheduled.sort();
        running.sort();
        created.sort();
        println!(
            "    t={second:>3}s pods {:>4} created max {:>5} ms scheduled p50/max {:>5}/{:>5} ms running p50/max {:>5}/{:>5} ms",
            running.len(),
            ms(&created, 1.0),
            ms(&scheduled, 0.5),
            ms(&scheduled, 1.0),
            ms(&running, 0.5),
            ms(&running, 1.0),
        );
    }
}

/// Opens a watch on the namespace's pods from `resource_version` and records, per pod name,
/// when it was first seen, scheduled and Running+Ready, until `expected` pods are Running or
/// the deadline passes.
async fn watch_pods(
    api: Api,
    namespace: String,
    resource_version: String,
    expected: usize,
    deadline: Instant,
    opened: tokio::sync::oneshot::Sender<()>,
) -> Result<HashMap<String, Seen>> {
    let path = format!(
        "/api/v1/namespaces/{namespace}/pods?watch=1&resourceVersion={resource_version}&timeoutSeconds=3600&allowWatchBookmarks=true"
    );
    let mut resp = api
        .http
        .get(format!("{}{path}", api.base))
        .bearer_auth(&api.token)
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("watch: {}", resp.status());
    }
    let _ = opened.send(());
    let mut seen: HashMap<String, Seen> = HashMap::new();
    let mut running = 0usize;
    let mut buffer: Vec<u8> = Vec::new();
    while running < expected {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = match tokio::time::timeout(left, resp.chunk()).await {
            Err(_) => break,
            Ok(chunk) => chunk?,
        };
        let Some(chunk) = chunk else {
            bail!("the watch ended early ({running} of {expected} pods Running)");
        };
        let now = Instant::now();
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let event: Value = serde_json::from_slice(&line).context("watch event")?;
            match event["type"].as_str() {
                Some("ADDED" | "MODIFIED") => {}
                Some("ERROR") => bail!("watch error: {}", event["object"]),
                _ => continue,
            }
            let pod = &event["object"];
            let Some(name) = pod["metadata"]["name"].as_str() else {
                continue;
            };
            let entry = seen.entry(name.to_string()).or_default();
            entry.created.get_or_insert(now);
            if pod["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| !n.is_empty())
            {
                entry.scheduled.get_or_insert(now);
            }
            if entry.running.is_none() && running_and_ready(pod) {
                entry.running = Some(now);
                running += 1;
            }
        }
    }
    Ok(seen)
}

/// The figures of one case.
struct CaseResult {
    label: String,
    pods: usize,
    running: usize,
    elapsed: Duration,
    /// How long the creating requests took (bare) or the scale request (deployment).
    request_phase: Duration,
    latencies: Vec<Duration>,
    to_created: Vec<Duration>,
    to_scheduled: Vec<Duration>,
    lab_cpu: Duration,
    memory: String,
    errors: usize,
}

impl CaseResult {
    fn row(&self) -> String {
        let rate = if self.elapsed.is_zero() {
            0.0
        } else {
            self.running as f64 / self.elapsed.as_secs_f64()
        };
        format!(
            "| {} | {}/{} | {:.2} s | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} / {:.0} | {:.2} s | {:.1} s | {} |",
            self.label,
            self.running,
            self.pods,
            self.elapsed.as_secs_f64(),
            rate,
            ms(percentile(&self.latencies, 0.5)),
            ms(percentile(&self.latencies, 0.99)),
            ms(*self.latencies.last().unwrap_or(&Duration::ZERO)),
            ms(percentile(&self.to_created, 0.5)),
            ms(percentile(&self.to_scheduled, 0.5)),
            self.request_phase.as_secs_f64(),
            self.lab_cpu.as_secs_f64(),
            self.memory,
        ) + &if self.errors > 0 {
            format!(" ({} create errors)", self.errors)
        } else {
            String::new()
        }
    }
}

const HEADER: &str = "| case | Running | elapsed | pods/s | p50 ms | p99 ms | max ms | p50 created / scheduled ms | requests took | lab CPU | lab VmRSS / VmHWM |\n|---|---|---|---|---|---|---|---|---|---|---|";

/// User+system CPU time of a process, from /proc/<pid>/stat (clock ticks of 10 ms).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some((_, rest)) = stat.rsplit_once(") ") else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command name: state is field 3, utime 14 and stime 15 (1-based).
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn memory(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| -> f64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    format!("{:.0} / {:.0} MB", field("VmRSS:"), field("VmHWM:"))
}

/// An empty list's resourceVersion, from which the watch starts.
async fn list_version(api: &Api, namespace: &str) -> Result<String> {
    let list = api
        .expect(
            reqwest::Method::GET,
            &format!("/api/v1/namespaces/{namespace}/pods?limit=1"),
            JSON,
            None,
        )
        .await?;
    list["metadata"]["resourceVersion"]
        .as_str()
        .map(str::to_string)
        .context("list without resourceVersion")
}

async fn run_case(
    lab: &Lab,
    settings: &Settings,
    mode: Mode,
    pods: usize,
    label: String,
) -> Result<CaseResult> {
    let api = lab.client(Some(Duration::from_secs(60)))?;
    let namespace = format!("bench-{}", mode.name());
    api.expect(
        reqwest::Method::POST,
        "/api/v1/namespaces",
        JSON,
        Some(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})),
    )
    .await?;
    if mode == Mode::Deployment {
        let mut template = pod_template("web");
        template["metadata"]["labels"] = json!({"app": "web"});
        api.expect(
            reqwest::Method::POST,
            &format!("/apis/apps/v1/namespaces/{namespace}/deployments"),
            JSON,
            Some(&json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web"},
                "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}}, "template": template},
            })),
        )
        .await?;
    }
    let version = list_version(&api, &namespace).await?;
    let deadline = Instant::now() + settings.case_timeout;
    let (opened_tx, opened_rx) = tokio::sync::oneshot::channel();
    let watcher = tokio::spawn(watch_pods(
        lab.client(None)?,
        namespace.clone(),
        version,
        pods,
        deadline,
        opened_tx,
    ));
    opened_rx.await.context("the watch did not open")?;

    let cpu_before = cpu_time(lab.pid);
    let start = Instant::now();
    let mut sent: HashMap<String, Instant> = HashMap::new();
    let mut errors = 0usize;
    let request_phase;
    match mode {
        Mode::Deployment => {
            let scale = json!({"spec": {"replicas": pods}});
            api.expect(
                reqwest::Method::PATCH,
                &format!("/apis/apps/v1/namespaces/{namespace}/deployments/web/scale"),
                MERGE_PATCH,
                Some(&scale),
            )
            .await
            .context("scale the Deployment")?;
            request_phase = start.elapsed();
        }
        Mode::Bare | Mode::Paced => {
            let pace = (mode == Mode::Paced).then_some(settings.paced_rate);
            let next = Arc::new(AtomicUsize::new(0));
            let mut tasks = Vec::new();
            for _ in 0..settings.clients {
                let api = lab.client(Some(Duration::from_secs(60)))?;
                let next = next.clone();
                let namespace = namespace.clone();
                tasks.push(tokio::spawn(async move {
                    let mut sent = Vec::new();
                    let mut errors = Vec::new();
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= pods {
                            break;
                        }
                        let name = format!("bare-{n:05}");
                        let mut pod = pod_template("bare");
                        pod["apiVersion"] = json!("v1");
                        pod["kind"] = json!("Pod");
                        pod["metadata"]["name"] = json!(name);
                        let at = match pace {
                            Some(rate) => {
                                let due = start + Duration::from_secs_f64(n as f64 / rate);
                                tokio::time::sleep_until(due.into()).await;
                                due
                            }
                            None => Instant::now(),
                        };
                        let path = format!("/api/v1/namespaces/{namespace}/pods");
                        match api
                            .send(reqwest::Method::POST, &path, JSON, Some(&pod))
                            .await
                        {
                            Ok((201, _)) => sent.push((name, at)),
                            Ok((status, body)) => errors.push(format!("{status} {body}")),
                            Err(e) => errors.push(e.to_string()),
                        }
                    }
                    (sent, errors)
                }));
            }
            let mut first_error = None;
            for task in tasks {
                let (task_sent, task_errors) = task.await?;
                sent.extend(task_sent);
                errors += task_errors.len();
                if first_error.is_none() {
                    first_error = task_errors.into_iter().next();
                }
            }
            request_phase = start.elapsed();
            if let Some(e) = first_error {
                eprintln!("  {errors} creates failed, first: {e}");
            }
        }
    }
    let seen = watcher.await??;
    let lab_cpu = cpu_time(lab.pid).saturating_sub(cpu_before);
    lab.ensure_running()?;

    let origin = |name: &str| match mode {
        Mode::Deployment => Some(start),
        Mode::Bare | Mode::Paced => sent.get(name).copied(),
    };
    if std::env::var_os("BENCH_TIMELINE").is_some() {
        print_timeline(&seen, origin, start);
    }
    let mut latencies = Vec::new();
    let mut to_created = Vec::new();
    let mut to_scheduled = Vec::new();
    let mut last = start;
    for (name, s) in &seen {
        let Some(origin) = origin(name) else { continue };
        if let Some(t) = s.created {
            to_created.push(t.saturating_duration_since(origin));
        }
        if let Some(t) = s.scheduled {
            to_scheduled.push(t.saturating_duration_since(origin));
        }
        if let Some(t) = s.running {
            latencies.push(t.saturating_duration_since(origin));
            last = last.max(t);
        }
    }
    latencies.sort();
    to_created.sort();
    to_scheduled.sort();
    let result = CaseResult {
        label,
        pods,
        running: latencies.len(),
        elapsed: last.saturating_duration_since(start),
        request_phase,
        latencies,
        to_created,
        to_scheduled,
        lab_cpu,
        memory: memory(lab.pid),
        errors,
    };
    cleanup(&api, &namespace, settings.case_timeout).await;
    Ok(result)
}

/// Deletes the case's namespace and waits (bounded) until its pods are gone, so the next case
/// starts on empty nodes (a node takes at most 110 pods).
async fn cleanup(api: &Api, namespace: &str, timeout: Duration) {
    let started = Instant::now();
    let _ = api
        .send(
            reqwest::Method::DELETE,
            &format!("/api/v1/namespaces/{namespace}"),
            JSON,
            None,
        )
        .await;
    let deadline = started + timeout;
    while Instant::now() < deadline {
        match api
            .send(
                reqwest::Method::GET,
                &format!("/api/v1/namespaces/{namespace}"),
                JSON,
                None,
            )
            .await
        {
            Ok((404, _)) => {
                println!(
                    "  cleanup: namespace {namespace} gone in {:.1} s",
                    started.elapsed().as_secs_f64()
                );
                return;
            }
            Ok(_) | Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    println!("  cleanup: namespace {namespace} still there after {timeout:?}");
}

async fn run_lab(
    settings: &Settings,
    workers: u32,
    pods: usize,
    rows: &mut Vec<String>,
) -> Result<()> {
    let name = format!("bench-pods-{workers}");
    println!("\n== {workers} hollow workers, {pods} pods per case ==");
    let (mut lab, up_took) = Lab::up(settings.dir.as_deref(), &name, workers)?;
    let idle = memory(lab.pid);
    println!(
        "  up: {} nodes Ready in {:.1} s; lab idle {idle}; loadavg {}",
        workers + 1,
        up_took.as_secs_f64(),
        loadavg()
    );
    rows.push(format!(
        "| {workers} workers: `up` until all {} nodes Ready | | {:.1} s | | | | | | | | {idle} |",
        workers + 1,
        up_took.as_secs_f64()
    ));
    for &mode in &settings.modes {
        let label = format!("{workers} nodes, {pods} pods, {}", mode.name());
        let result = run_case(&lab, settings, mode, pods, label).await?;
        let row = result.row();
        println!("{row}");
        rows.push(row);
    }
    lab.down()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn main() -> Result<()> {
    let settings = Settings::from_env()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!("loadavg at start: {}", loadavg());
    let mut rows = Vec::new();
    let outcome = runtime.block_on(async {
        run_lab(&settings, settings.nodes, settings.pods, &mut rows).await?;
        if settings.big_nodes > 0 {
            let pods = settings.big_nodes as usize * settings.pods_per_node;
            run_lab(&settings, settings.big_nodes, pods, &mut rows).await?;
        }
        anyhow::Ok(())
    });
    println!("\nloadavg at end: {}\n\n{HEADER}", loadavg());
    for row in &rows {
        println!("{row}");
    }
    outcome
}
