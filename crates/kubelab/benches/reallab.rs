//! A lab of real nodes (network namespaces, `kubelab up` without `--hollow`, as root): how fast
//! it comes up, how much memory it holds idle, and how fast its pods get Running and Ready.
//!
//! - **up**: the wall time of `kubelab up --workers N` (it returns once every node is Ready),
//!   for each N of `BENCH_UP_WORKERS`, `BENCH_UP_RUNS` times, each followed by a timed
//!   `kubelab down`. After every `down` the benchmark checks that no process of the lab is left.
//! - **memory**: on a `--workers 2` lab left idle `BENCH_IDLE_SECS`, the sum of VmRSS (from
//!   /proc/PID/status) and of PSS (`Pss:` of /proc/PID/smaps_rollup) over the lab's processes,
//!   per role. A lab's processes are the `lab-run` process of its pid file and every process
//!   whose environment holds `KUBELAB_LAB=<name>@<state dir>`; the role comes from the
//!   `kubelab` subcommand in the command line (lab-run, server, agent, container; anything
//!   else, such as an agent's short-lived `ip` helper, is "other"). RSS counts the shared pages
//!   of the one `kubelab` binary once per process;
//!   PSS divides them among the processes sharing them, so the PSS total is what the lab costs.
//! - **pods**: on that lab, `BENCH_SEQ_PODS` bare pods (image `nginx`, default namespace)
//!   created one after the other, each waited for until Running with Ready=True (a single pod on
//!   an idle lab); then `BENCH_PODS` pods created by `BENCH_CLIENTS` concurrent tasks. A pod's
//!   latency runs from sending its create request to the watch event that shows it Running and
//!   Ready. The watch is opened from a list's resourceVersion before the first request, so no
//!   event is missed. Throughput is pods / (last Ready − first request). The pods are then
//!   removed with one deletecollection request, timed until the watch has reported every pod
//!   DELETED (the agents stop the containers and confirm).
//!
//! Run as root: `cargo bench -p kubelab --bench reallab`. Knobs (environment, defaults in
//! brackets): `BENCH_UP_RUNS` [3], `BENCH_UP_WORKERS` [2,3], `BENCH_IDLE_SECS` [5],
//! `BENCH_PODS` [100], `BENCH_CLIENTS` [10], `BENCH_SEQ_PODS` [20], `BENCH_CASE_TIMEOUT` [120]
//! seconds a pod case may take, `BENCH_SECTIONS` [up,pods] (`pods` includes the memory figures),
//! `BENCH_DIR` parent of the temporary state directories. Every lab is named
//! `bench-<pid>-...`, lives in a temporary state directory and is brought `down` on drop, also
//! when a case fails or the benchmark is interrupted with Ctrl-C.

mod common;

use anyhow::{Context, Result, bail};
use common::real_lab::Lab;
use common::{Api, JSON, cpu_model, env_count, loadavg, ms, percentile, running_and_ready, secs};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ----- settings -------------------------------------------------------------------------------

struct Settings {
    up_runs: usize,
    up_workers: Vec<u32>,
    idle: Duration,
    pods: usize,
    clients: usize,
    seq_pods: usize,
    case_timeout: Duration,
    run_up: bool,
    run_pods: bool,
    dir: Option<PathBuf>,
}

impl Settings {
    fn from_env() -> Result<Settings> {
        let up_workers = match std::env::var("BENCH_UP_WORKERS") {
            Ok(s) => s
                .split(',')
                .map(|w| {
                    w.trim()
                        .parse::<u32>()
                        .with_context(|| format!("BENCH_UP_WORKERS={s:?}"))
                })
                .collect::<Result<Vec<_>>>()?,
            Err(_) => vec![2, 3],
        };
        let sections = std::env::var("BENCH_SECTIONS").unwrap_or_else(|_| "up,pods".into());
        let sections: Vec<&str> = sections.split(',').map(str::trim).collect();
        if let Some(bad) = sections.iter().find(|s| !["up", "pods"].contains(s)) {
            bail!("BENCH_SECTIONS: unknown section {bad:?} (up, pods)");
        }
        Ok(Settings {
            up_runs: env_count("BENCH_UP_RUNS", 3)?,
            up_workers,
            idle: Duration::from_secs(env_count("BENCH_IDLE_SECS", 5)? as u64),
            pods: env_count("BENCH_PODS", 100)?,
            clients: env_count("BENCH_CLIENTS", 10)?.max(1),
            seq_pods: env_count("BENCH_SEQ_PODS", 20)?,
            case_timeout: Duration::from_secs(env_count("BENCH_CASE_TIMEOUT", 120)? as u64),
            run_up: sections.contains(&"up"),
            run_pods: sections.contains(&"pods"),
            dir: std::env::var_os("BENCH_DIR").map(PathBuf::from),
        })
    }
}

// ----- the API --------------------------------------------------------------------------------

const NAMESPACE: &str = "default";
const APP: &str = "bench-real";

/// A bare pod as a user writes it: one nginx container, defaults for everything else.
fn nginx_pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": APP}},
        "spec": {"containers": [{"name": "web", "image": "nginx"}]},
    })
}

/// What the watch saw of one pod, and when.
#[derive(Default, Clone, Copy)]
struct Seen {
    created: Option<Instant>,
    scheduled: Option<Instant>,
    ready: Option<Instant>,
    deleted: Option<Instant>,
}

/// A watch on the benchmark's pods, kept open for the whole lab: it records per pod name when
/// it was first seen, scheduled, Running+Ready and deleted, and bumps `generation` after each
/// chunk so waiters re-check.
struct Tracker {
    seen: Arc<Mutex<HashMap<String, Seen>>>,
    generation: tokio::sync::watch::Receiver<u64>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl Tracker {
    async fn start(api: Api) -> Result<Tracker> {
        let list = api
            .expect(
                reqwest::Method::GET,
                &format!("/api/v1/namespaces/{NAMESPACE}/pods?labelSelector=app%3D{APP}"),
                JSON,
                None,
            )
            .await?;
        if list["items"].as_array().is_some_and(|i| !i.is_empty()) {
            bail!("the lab already has pods labelled app={APP}");
        }
        let version = list["metadata"]["resourceVersion"]
            .as_str()
            .context("list without resourceVersion")?
            .to_string();
        let path = format!(
            "/api/v1/namespaces/{NAMESPACE}/pods?watch=1&labelSelector=app%3D{APP}&resourceVersion={version}&timeoutSeconds=3600&allowWatchBookmarks=true"
        );
        let resp = api
            .http
            .get(format!("{}{path}", api.base))
            .bearer_auth(&api.token)
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("watch: {}", resp.status());
        }
        let seen = Arc::new(Mutex::new(HashMap::new()));
        let (tx, generation) = tokio::sync::watch::channel(0u64);
        let task = tokio::spawn(Tracker::follow(resp, seen.clone(), tx));
        Ok(Tracker {
            seen,
            generation,
            task,
        })
    }

    async fn follow(
        mut resp: reqwest::Response,
        seen: Arc<Mutex<HashMap<String, Seen>>>,
        generation: tokio::sync::watch::Sender<u64>,
    ) -> Result<()> {
        let mut buffer: Vec<u8> = Vec::new();
        while let Some(chunk) = resp.chunk().await? {
            let now = Instant::now();
            buffer.extend_from_slice(&chunk);
            while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let event: Value = serde_json::from_slice(&line).context("watch event")?;
                let kind = event["type"].as_str().unwrap_or_default();
                if kind == "ERROR" {
                    bail!("watch error: {}", event["object"]);
                }
                let pod = &event["object"];
                let Some(name) = pod["metadata"]["name"].as_str() else {
                    continue;
                };
                let mut seen = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                let entry = seen.entry(name.to_string()).or_default();
                match kind {
                    "ADDED" | "MODIFIED" => {
                        entry.created.get_or_insert(now);
                        if pod["spec"]["nodeName"]
                            .as_str()
                            .is_some_and(|n| !n.is_empty())
                        {
                            entry.scheduled.get_or_insert(now);
                        }
                        if entry.ready.is_none() && running_and_ready(pod) {
                            entry.ready = Some(now);
                        }
                    }
                    "DELETED" => {
                        entry.deleted.get_or_insert(now);
                    }
                    _ => {}
                }
            }
            generation.send_modify(|g| *g += 1);
        }
        bail!("the watch ended")
    }

    fn get(&self, name: &str) -> Seen {
        self.seen
            .lock()
            .map(|s| s.get(name).copied().unwrap_or_default())
            .unwrap_or_default()
    }

    /// Waits until `done` holds for the seen pods or the deadline passes; false on timeout.
    async fn wait(
        &mut self,
        deadline: Instant,
        done: impl Fn(&HashMap<String, Seen>) -> bool,
    ) -> Result<bool> {
        loop {
            if self.task.is_finished() {
                bail!("the pod watch stopped");
            }
            let ok = self
                .seen
                .lock()
                .map(|s| done(&s))
                .map_err(|_| anyhow::anyhow!("poisoned"))?;
            if ok {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            // A closed channel means the task ended; the next round reports it.
            let _ = tokio::time::timeout(
                left.min(Duration::from_millis(500)),
                self.generation.changed(),
            )
            .await;
        }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ----- figures --------------------------------------------------------------------------------

/// A `kB` field of a /proc file, in kB.
fn kb_field(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|r| r.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// User+system CPU time of a process and of its children it has reaped (an agent's `ip`
/// helpers), from /proc/<pid>/stat (clock ticks of 10 ms).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some((_, rest)) = stat.rsplit_once(") ") else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command name the state is field 3; utime, stime, cutime and cstime are fields
    // 14 to 17.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((ticks(11) + ticks(12) + ticks(13) + ticks(14)) * 10)
}

/// CPU time per role of the lab's live processes, each with its reaped children.
#[derive(Default, Clone, Copy)]
struct Cpu {
    server: Duration,
    agents: Duration,
    containers: Duration,
    other: Duration,
}

impl Cpu {
    fn of(lab: &Lab) -> Cpu {
        let mut cpu = Cpu::default();
        for pid in lab.processes() {
            let slot = match role(pid) {
                "server" => &mut cpu.server,
                "agents" => &mut cpu.agents,
                "containers" => &mut cpu.containers,
                _ => &mut cpu.other,
            };
            *slot += cpu_time(pid);
        }
        cpu
    }

    fn since(self, before: Cpu) -> Cpu {
        Cpu {
            server: self.server.saturating_sub(before.server),
            agents: self.agents.saturating_sub(before.agents),
            containers: self.containers.saturating_sub(before.containers),
            other: self.other.saturating_sub(before.other),
        }
    }

    fn text(&self) -> String {
        let total = self.server + self.agents + self.containers + self.other;
        format!(
            "{:.2} s ({:.2} / {:.2} / {:.2})",
            total.as_secs_f64(),
            self.server.as_secs_f64(),
            self.agents.as_secs_f64(),
            self.containers.as_secs_f64()
        )
    }
}

/// The role of a lab process, from its `kubelab` subcommand.
fn role(pid: u32) -> &'static str {
    let argv = lab::process::cmdline(pid).unwrap_or_default();
    match argv.get(1).map(String::as_str) {
        Some("lab-run") => "lab-run",
        Some("server") => "server",
        Some("agent") => "agents",
        Some("container") => "containers",
        // A short-lived helper (`ip`), or a child between fork and exec.
        _ => "other",
    }
}

/// How many processes of each role, and the command lines of the "other" ones, for the
/// progress output (transient helpers show up here).
fn describe(pids: &[u32]) -> String {
    let mut roles: BTreeMap<&str, usize> = BTreeMap::new();
    let mut others: BTreeMap<String, usize> = BTreeMap::new();
    for &pid in pids {
        let r = role(pid);
        *roles.entry(r).or_default() += 1;
        if r == "other" {
            let argv = lab::process::cmdline(pid).unwrap_or_default();
            let short: Vec<&str> = argv.iter().take(3).map(String::as_str).collect();
            *others.entry(short.join(" ")).or_default() += 1;
        }
    }
    let mut text: Vec<String> = roles.iter().map(|(r, n)| format!("{r} {n}")).collect();
    text.extend(others.iter().map(|(cmd, n)| format!("[{n}× {cmd}]")));
    text.join(", ")
}

/// Processes, VmRSS and PSS (kB) per role.
#[derive(Default, Clone, Copy)]
struct Usage {
    processes: usize,
    rss_kb: u64,
    pss_kb: u64,
}

fn memory(lab: &Lab) -> BTreeMap<&'static str, Usage> {
    let mut by_role: BTreeMap<&'static str, Usage> = BTreeMap::new();
    for pid in lab.processes() {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let rollup =
            std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
        let usage = by_role.entry(role(pid)).or_default();
        usage.processes += 1;
        usage.rss_kb += kb_field(&status, "VmRSS:");
        usage.pss_kb += kb_field(&rollup, "Pss:");
    }
    by_role
}

fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

fn memory_rows(label: &str, by_role: &BTreeMap<&'static str, Usage>, rows: &mut Vec<String>) {
    let mut total = Usage::default();
    for role in ["lab-run", "server", "agents", "containers", "other"] {
        let Some(u) = by_role.get(role) else { continue };
        total.processes += u.processes;
        total.rss_kb += u.rss_kb;
        total.pss_kb += u.pss_kb;
        rows.push(format!(
            "| {label}: {role} | {} | {} | {} |",
            u.processes,
            mb(u.rss_kb),
            mb(u.pss_kb)
        ));
    }
    rows.push(format!(
        "| **{label}: total** | {} | **{}** | **{}** |",
        total.processes,
        mb(total.rss_kb),
        mb(total.pss_kb)
    ));
}

/// The figures of one pod case.
struct PodCase {
    label: String,
    pods: usize,
    latencies: Vec<Duration>,
    to_created: Vec<Duration>,
    to_scheduled: Vec<Duration>,
    /// First request to last pod Ready.
    elapsed: Duration,
    requests_took: Duration,
    cpu: Cpu,
    errors: usize,
    /// One deletecollection of the case's pods until the watch saw each DELETED.
    deleted: Option<Duration>,
}

impl PodCase {
    fn row(&self) -> String {
        let ready = self.latencies.len();
        let rate = if self.elapsed.is_zero() {
            0.0
        } else {
            ready as f64 / self.elapsed.as_secs_f64()
        };
        let mut row = format!(
            "| {} | {ready}/{} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} / {:.0} | {rate:.0} pods/s ({}) | {} | {} | {} |",
            self.label,
            self.pods,
            ms(percentile(&self.latencies, 0.5)),
            ms(percentile(&self.latencies, 0.9)),
            ms(percentile(&self.latencies, 0.99)),
            ms(self.latencies.last().copied().unwrap_or_default()),
            ms(percentile(&self.to_created, 0.5)),
            ms(percentile(&self.to_scheduled, 0.5)),
            secs(self.elapsed),
            secs(self.requests_took),
            self.cpu.text(),
            self.deleted.map_or("-".into(), secs),
        );
        if self.errors > 0 {
            row += &format!(" ({} create errors)", self.errors);
        }
        row
    }
}

const POD_HEADER: &str = "| pods (image nginx, default namespace) | Ready | p50 ms | p90 ms | p99 ms | max ms | p50 created / scheduled ms | throughput (first create → last Ready) | creates took | lab CPU (server / agents / containers) | delete all → gone |\n|---|---|---|---|---|---|---|---|---|---|---|";

fn summarize(
    label: String,
    tracker: &Tracker,
    sent: &[(String, Instant)],
    start: Instant,
    requests_took: Duration,
    cpu: Cpu,
    errors: usize,
) -> PodCase {
    let pods = sent.len() + errors;
    let mut latencies = Vec::new();
    let mut to_created = Vec::new();
    let mut to_scheduled = Vec::new();
    let mut last = start;
    for (name, at) in sent {
        let s = tracker.get(name);
        if let Some(t) = s.created {
            to_created.push(t.saturating_duration_since(*at));
        }
        if let Some(t) = s.scheduled {
            to_scheduled.push(t.saturating_duration_since(*at));
        }
        if let Some(t) = s.ready {
            latencies.push(t.saturating_duration_since(*at));
            last = last.max(t);
        }
    }
    latencies.sort();
    to_created.sort();
    to_scheduled.sort();
    PodCase {
        label,
        pods,
        latencies,
        to_created,
        to_scheduled,
        elapsed: last.saturating_duration_since(start),
        requests_took,
        cpu,
        errors,
        deleted: None,
    }
}

// ----- the cases ------------------------------------------------------------------------------

/// `up` then `down`, `runs` times, for a lab of `workers` workers.
fn up_runs(settings: &Settings, workers: u32, rows: &mut Vec<String>) -> Result<()> {
    println!(
        "\n== kubelab up --workers {workers} ({} nodes), {} runs ==",
        workers + 1,
        settings.up_runs
    );
    let mut ups = Vec::new();
    let mut downs = Vec::new();
    for run in 0..settings.up_runs {
        if INTERRUPTED.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        let name = format!("bench-{}-up{workers}-{run}", std::process::id());
        let (mut lab, took) = Lab::up(settings.dir.as_deref(), &name, workers)?;
        let processes = describe(&lab.processes());
        let down = lab.down()?;
        println!(
            "  run {run}: up {} (processes right after: {processes}), down {}; loadavg {}",
            secs(took),
            secs(down),
            loadavg()
        );
        if run == 0 {
            print!("{}", lab.steps);
        }
        ups.push(took);
        downs.push(down);
    }
    ups.sort();
    downs.sort();
    let stats = |v: &[Duration]| {
        format!(
            "{} | {} | {}",
            secs(v.first().copied().unwrap_or_default()),
            secs(percentile(v, 0.5)),
            secs(v.last().copied().unwrap_or_default())
        )
    };
    rows.push(format!(
        "| kube-0 + {workers} workers ({} nodes Ready) | {} | {} | {} |",
        workers + 1,
        ups.len(),
        stats(&ups),
        stats(&downs)
    ));
    Ok(())
}

const UP_HEADER: &str = "| `kubelab up` until every node is Ready | runs | up min | up median | up max | down min | down median | down max |\n|---|---|---|---|---|---|---|---|";

/// Creates `settings.pods` pods from `settings.clients` tasks; returns what was sent when.
async fn create_concurrently(
    lab: &Lab,
    settings: &Settings,
) -> Result<(Vec<(String, Instant)>, usize)> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..settings.clients {
        let api = lab.client(Some(Duration::from_secs(60)))?;
        let next = next.clone();
        let pods = settings.pods;
        tasks.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            let mut errors = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= pods {
                    break;
                }
                let name = format!("{APP}-{n:04}");
                let pod = nginx_pod(&name);
                let at = Instant::now();
                let path = format!("/api/v1/namespaces/{NAMESPACE}/pods");
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
    let mut sent = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for task in tasks {
        let (task_sent, task_errors) = task.await?;
        sent.extend(task_sent);
        errors += task_errors.len();
        if first_error.is_none() {
            first_error = task_errors.into_iter().next();
        }
    }
    if let Some(e) = first_error {
        eprintln!("  {errors} creates failed, first: {e}");
    }
    Ok((sent, errors))
}

/// Deletes every benchmark pod with one deletecollection request and waits until the watch has
/// seen each of `names` DELETED; returns how long that took, or None on timeout.
async fn delete_all(
    api: &Api,
    tracker: &mut Tracker,
    names: &[String],
    timeout: Duration,
) -> Result<Option<Duration>> {
    let start = Instant::now();
    api.expect(
        reqwest::Method::DELETE,
        &format!("/api/v1/namespaces/{NAMESPACE}/pods?labelSelector=app%3D{APP}"),
        JSON,
        None,
    )
    .await
    .context("deletecollection")?;
    let gone = tracker
        .wait(start + timeout, |seen| {
            names
                .iter()
                .all(|n| seen.get(n).is_some_and(|s| s.deleted.is_some()))
        })
        .await?;
    if !gone {
        return Ok(None);
    }
    let last = names
        .iter()
        .filter_map(|n| tracker.get(n).deleted)
        .max()
        .unwrap_or(start);
    Ok(Some(last.saturating_duration_since(start)))
}

/// A pod case did not get every pod Ready: what the lab logged, for the report.
fn not_ready(lab: &Lab, tracker: &Tracker, names: &[String], what: &str) -> anyhow::Error {
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| tracker.get(n).ready.is_none())
        .collect();
    anyhow::anyhow!(
        "{what}: {} of {} pods never became Running+Ready (e.g. {:?})\n--- logs ---\n{}",
        missing.len(),
        names.len(),
        missing.iter().take(5).collect::<Vec<_>>(),
        lab.logs()
    )
}

async fn pods_lab(
    settings: &Settings,
    memory_rows_out: &mut Vec<String>,
    pod_rows: &mut Vec<String>,
) -> Result<()> {
    let name = format!("bench-{}-pods", std::process::id());
    println!("\n== pods on kube-0 + 2 workers ==");
    let (mut lab, took) = Lab::up(settings.dir.as_deref(), &name, 2)?;
    println!(
        "  up in {}; idling {} s; loadavg {}",
        secs(took),
        settings.idle.as_secs(),
        loadavg()
    );
    tokio::time::sleep(settings.idle).await;
    let idle = memory(&lab);
    memory_rows(
        &format!("idle, {} s after up", settings.idle.as_secs()),
        &idle,
        memory_rows_out,
    );

    let api = lab.client(Some(Duration::from_secs(60)))?;
    let mut tracker = Tracker::start(lab.client(None)?).await?;

    // One pod at a time on an idle lab.
    if settings.seq_pods > 0 {
        let cpu_before = Cpu::of(&lab);
        let start = Instant::now();
        let mut sent = Vec::new();
        for n in 0..settings.seq_pods {
            let name = format!("{APP}-seq-{n:03}");
            let at = Instant::now();
            api.expect(
                reqwest::Method::POST,
                &format!("/api/v1/namespaces/{NAMESPACE}/pods"),
                JSON,
                Some(&nginx_pod(&name)),
            )
            .await?;
            sent.push((name.clone(), at));
            let ready = tracker
                .wait(at + settings.case_timeout, |seen| {
                    seen.get(&name).is_some_and(|s| s.ready.is_some())
                })
                .await?;
            if !ready {
                let names: Vec<String> = sent.iter().map(|(n, _)| n.clone()).collect();
                return Err(not_ready(&lab, &tracker, &names, "sequential pods"));
            }
        }
        let requests_took = start.elapsed();
        let mut case = summarize(
            format!("{} pods one after the other (idle lab)", settings.seq_pods),
            &tracker,
            &sent,
            start,
            requests_took,
            Cpu::of(&lab).since(cpu_before),
            0,
        );
        let names: Vec<String> = sent.into_iter().map(|(n, _)| n).collect();
        case.deleted = delete_all(&api, &mut tracker, &names, settings.case_timeout).await?;
        println!("{}", case.row());
        pod_rows.push(case.row());
        if case.deleted.is_none() {
            bail!(
                "the sequential pods were not all deleted within {:?}\n--- logs ---\n{}",
                settings.case_timeout,
                lab.logs()
            );
        }
    }

    // Many pods at once.
    if settings.pods > 0 {
        println!("  loadavg before the {} pods: {}", settings.pods, loadavg());
        let cpu_before = Cpu::of(&lab);
        let start = Instant::now();
        let (sent, errors) = create_concurrently(&lab, settings).await?;
        let requests_took = start.elapsed();
        let names: Vec<String> = sent.iter().map(|(n, _)| n.clone()).collect();
        let all_ready = tracker
            .wait(start + settings.case_timeout, |seen| {
                names
                    .iter()
                    .all(|n| seen.get(n).is_some_and(|s| s.ready.is_some()))
            })
            .await?;
        let cpu = Cpu::of(&lab).since(cpu_before);
        let mut case = summarize(
            format!(
                "{} pods from {} concurrent clients",
                settings.pods, settings.clients
            ),
            &tracker,
            &sent,
            start,
            requests_took,
            cpu,
            errors,
        );
        if !all_ready {
            pod_rows.push(case.row());
            return Err(not_ready(&lab, &tracker, &names, "concurrent pods"));
        }
        println!(
            "  processes with the pods Ready: {}",
            describe(&lab.processes())
        );
        memory_rows(
            &format!("with {} nginx pods Ready", names.len()),
            &memory(&lab),
            memory_rows_out,
        );
        case.deleted = delete_all(&api, &mut tracker, &names, settings.case_timeout).await?;
        println!("{}", case.row());
        pod_rows.push(case.row());
        if case.deleted.is_none() {
            bail!(
                "the pods were not all deleted within {:?}\n--- logs ---\n{}",
                settings.case_timeout,
                lab.logs()
            );
        }
        println!("  {} pods deleted; loadavg {}", names.len(), loadavg());
        tokio::time::sleep(Duration::from_secs(1)).await;
        println!(
            "  processes after deleting them: {}",
            describe(&lab.processes())
        );
        memory_rows("after deleting them", &memory(&lab), memory_rows_out);
    }
    drop(tracker);
    let down = lab.down()?;
    println!("  down in {}", secs(down));
    Ok(())
}

/// Set on Ctrl-C, so the synchronous `up` runs stop between labs.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

const MEMORY_HEADER: &str =
    "| lab memory (kube-0 + 2 workers) | processes | sum VmRSS | sum PSS |\n|---|---|---|---|";

fn main() -> Result<()> {
    common::require_root("a lab of real nodes")?;
    let settings = Settings::from_env()?;
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load_before = loadavg();
    println!(
        "machine: nproc {nproc}, {}; loadavg at start {load_before}",
        cpu_model()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut up_rows = Vec::new();
    let mut memory_rows_out = Vec::new();
    let mut pod_rows = Vec::new();
    let outcome = runtime.block_on(async {
        // Ctrl-C is caught from the start: the `up` section runs synchronously and checks the
        // flag between labs; the pods section is dropped at once, and with it its lab, whose
        // Drop runs `kubelab down`.
        let interrupt_rx = common::interrupt_on_ctrl_c(&INTERRUPTED);
        let work = async {
            if settings.run_up {
                for &workers in &settings.up_workers {
                    up_runs(&settings, workers, &mut up_rows)?;
                }
            }
            if settings.run_pods {
                pods_lab(&settings, &mut memory_rows_out, &mut pod_rows).await?;
            }
            anyhow::Ok(())
        };
        tokio::select! {
            r = work => r,
            Ok(()) = interrupt_rx => Err(anyhow::anyhow!("interrupted")),
        }
    });

    println!(
        "\n## Real lab (network namespaces)\n\nMachine: nproc {nproc}, {}; loadavg (1/5/15 min) before {load_before}, after {}.\n",
        cpu_model(),
        loadavg()
    );
    if !up_rows.is_empty() {
        println!("{UP_HEADER}");
        for row in &up_rows {
            println!("{row}");
        }
        println!(
            "\nAnchors (minikube's time-to-k8s benchmark): k3d 19.9 s, kind 33.0 s, minikube 50.8 s. Target: under 2 s.\n"
        );
    }
    if !memory_rows_out.is_empty() {
        println!("{MEMORY_HEADER}");
        for row in &memory_rows_out {
            println!("{row}");
        }
        println!(
            "\nTarget: idle total under 150 MB. Anchor: k3s about 1.4 GB for a server and one agent.\n"
        );
    }
    if !pod_rows.is_empty() {
        println!("{POD_HEADER}");
        for row in &pod_rows {
            println!("{row}");
        }
        println!("\nTarget: p99 under 100 ms (upstream SLO: 5 s).");
    }
    outcome
}
