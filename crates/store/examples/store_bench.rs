//! Write latency of the SQLite-backed store (WAL, synchronous=FULL) at 1, 10 and 100 concurrent
//! writers, plus the time and memory to load 10,000 pods of about 3 KB at startup.
//!
//! Run: `cargo run --release -p store --example store_bench [DIR]` (DIR defaults to a temp dir;
//! pass one on the disk you care about: fsync latency sets the floor). `BENCH_LATENCY_ONLY=1`
//! skips the load measurement; `BENCH_MEMORY=1` uses the in-memory backend, which shows what is
//! left without SQLite and fsync (on a busy 2-core machine, mostly CPU scheduling delay).

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::{
    Backend, CommitBatch, MemoryBackend, Persisted, SqliteBackend, Store, StoreConfig, StoreError,
};

/// Wraps a backend to record how long each group commit takes and how many writes it carries.
struct Timed<B> {
    inner: B,
    commits: Arc<Mutex<Vec<(Duration, usize)>>>,
}

impl<B: Backend> Backend for Timed<B> {
    fn load(&mut self) -> Result<Persisted, StoreError> {
        self.inner.load()
    }

    fn commit(&mut self, batch: &CommitBatch<'_>) -> Result<(), StoreError> {
        let started = Instant::now();
        let result = self.inner.commit(batch);
        if let Ok(mut commits) = self.commits.lock() {
            commits.push((started.elapsed(), batch.events.len()));
        }
        result
    }
}

const LOAD_OBJECTS: usize = 10_000;

fn pod(writer: usize, i: usize) -> Value {
    let env: Vec<Value> = (0..12)
        .map(|n| json!({"name": format!("VARIABLE_{n}"), "value": format!("value-{n}-{i}")}))
        .collect();
    let conditions: Vec<Value> = ["Initialized", "Ready", "ContainersReady", "PodScheduled"]
        .iter()
        .map(|kind| json!({"type": kind, "status": "True", "lastProbeTime": null, "lastTransitionTime": "2025-01-01T00:00:00Z"}))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": format!("web-{writer}"),
            "namespace": "default",
            "uid": format!("1b4e28ba-2fa1-11d2-883f-{writer:012}"),
            "labels": {"app": "web", "pod-template-hash": "5d8f7c9b6d", "tier": "frontend"},
            "annotations": {"kubelab.io/iteration": i.to_string(), "kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d8f7c9b6d", "uid": "4a7c1e2b-0000-4000-8000-000000000000", "controller": true, "blockOwnerDeletion": true}],
        },
        "spec": {
            "containers": [{
                "name": "web",
                "image": "registry.example/web:1.27.3",
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "env": env,
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 5},
                "terminationMessagePath": "/dev/termination-log",
                "imagePullPolicy": "IfNotPresent",
            }],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "nodeName": "node-1",
            "schedulerName": "default-scheduler",
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            ],
        },
        "status": {
            "phase": "Running",
            "conditions": conditions,
            "hostIP": "10.0.0.1",
            "podIP": format!("10.244.{}.{}", writer / 250, writer % 250),
            "startTime": "2025-01-01T00:00:00Z",
            "containerStatuses": [{"name": "web", "ready": true, "restartCount": 0, "image": "registry.example/web:1.27.3", "imageID": "registry.example/web@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "containerID": "containerd://0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "started": true, "state": {"running": {"startedAt": "2025-01-01T00:00:00Z"}}}],
            "qosClass": "Burstable",
        },
    })
}

/// Each writer creates its pod, then updates it `writes_each - 1` times; returns sorted latencies.
async fn run_writers(
    store: &Store,
    writers: usize,
    writes_each: usize,
) -> (Vec<Duration>, Duration) {
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|writer| {
            let store = store.clone();
            tokio::spawn(async move {
                let key = format!("/registry/pods/default/web-{writer}");
                let mut latencies = Vec::with_capacity(writes_each);
                let mut rv = None;
                for i in 0..writes_each {
                    let object = pod(writer, i);
                    let begun = Instant::now();
                    let entry = match rv {
                        None => store.create(&key, object).await,
                        Some(rv) => store.update(&key, Some(rv), object).await,
                    }
                    .expect("write");
                    latencies.push(begun.elapsed());
                    rv = Some(entry.rv);
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("writer task"));
    }
    let elapsed = started.elapsed();
    all.sort();
    (all, elapsed)
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn latency(dir: &Path) {
    // Other processes on a 2-core machine dominate the tail; print the load with the figures.
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "write latency, {}, ~3 KB pods (create, then CAS updates); loadavg {}",
        if std::env::var_os("BENCH_MEMORY").is_some() {
            "memory backend"
        } else {
            "SQLite WAL synchronous=FULL"
        },
        load.split(' ').next().unwrap_or("?")
    );
    for (writers, writes_each) in [(1, 1000), (10, 300), (100, 100)] {
        let path = dir.join(format!("latency-{writers}.db"));
        let commits = Arc::new(Mutex::new(Vec::new()));
        // BENCH_MEMORY=1 measures the store's own overhead, without SQLite and fsync.
        let store = if std::env::var_os("BENCH_MEMORY").is_some() {
            let backend = Timed {
                inner: MemoryBackend::new(),
                commits: commits.clone(),
            };
            Store::open(backend, StoreConfig::default()).expect("open")
        } else {
            let backend = Timed {
                inner: SqliteBackend::open(&path).expect("open"),
                commits: commits.clone(),
            };
            Store::open(backend, StoreConfig::default()).expect("open")
        };
        // Warm up: the first commit creates the WAL file.
        store
            .create("/warmup", json!({"metadata": {}}))
            .await
            .expect("warm-up write");
        let (latencies, elapsed) = run_writers(&store, writers, writes_each).await;
        println!(
            "  {writers:>3} writers: {:>6} writes  p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>6.2} ms  {:>7.0} writes/s",
            latencies.len(),
            ms(percentile(&latencies, 0.50)),
            ms(percentile(&latencies, 0.99)),
            ms(latencies.last().copied().unwrap_or_default()),
            latencies.len() as f64 / elapsed.as_secs_f64(),
        );
        store.close().await;
        let mut commits = commits
            .lock()
            .map(|commits| commits.clone())
            .unwrap_or_default();
        let writes: usize = commits.iter().map(|(_, writes)| writes).sum();
        let batches = commits.len().max(1);
        commits.sort();
        let durations: Vec<Duration> = commits.iter().map(|(duration, _)| *duration).collect();
        println!(
            "               {batches:>6} commits   {:>5.1} writes each  commit p50 {:>6.2} ms  p99 {:>6.2} ms",
            writes as f64 / batches as f64,
            ms(percentile(&durations, 0.50)),
            ms(percentile(&durations, 0.99)),
        );
    }
}

/// In a fresh process, so the resident-memory figure is only the store's.
async fn load(path: &Path) {
    let before = rss_kib();
    let started = Instant::now();
    let store = Store::open_sqlite(path).expect("open");
    let elapsed = started.elapsed();
    let (_, entries) = store.list("/registry/pods/");
    let bytes: usize = entries.iter().map(|entry| entry.value.len()).sum();
    println!(
        "load: {} objects ({:.1} MB of JSON) and history up to rv {} in {:.0} ms; resident memory +{:.1} MB",
        entries.len(),
        bytes as f64 / 1e6,
        store.revision(),
        ms(elapsed),
        rss_kib().saturating_sub(before) as f64 / 1024.0,
    );
    drop(entries);
    store.close().await;
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    if let (Some(mode), Some(path)) = (args.next(), args.next())
        && mode == "--load"
    {
        load(Path::new(&path)).await;
        return;
    }
    if std::env::var_os("BENCH_LATENCY_ONLY").is_some() {
        let temp = tempfile::tempdir().expect("temp dir");
        latency(temp.path()).await;
        return;
    }
    let temp = tempfile::tempdir().expect("temp dir");
    let dir: PathBuf = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| temp.path().to_path_buf());
    latency(&dir).await;

    let path = dir.join("load.db");
    let store = Store::open_sqlite(&path).expect("open");
    run_writers(&store, LOAD_OBJECTS, 1).await;
    // Updates fill the event log so the load reads a full history as well.
    update_every_pod(&store).await;
    store.close().await;
    let status = std::process::Command::new(std::env::current_exe().expect("own path"))
        .arg("--load")
        .arg(&path)
        .status()
        .expect("run the load measurement");
    if !status.success() {
        eprintln!("load measurement failed: {status}");
    }
}

/// One update of every loaded pod, so that the history holds 20,000 events with values and prevs.
async fn update_every_pod(store: &Store) {
    let tasks: Vec<_> = (0..100)
        .map(|writer| {
            let store = store.clone();
            tokio::spawn(async move {
                for n in (writer..LOAD_OBJECTS).step_by(100) {
                    let key = format!("/registry/pods/default/web-{n}");
                    store.update(&key, None, pod(n, 1)).await.expect("update");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("update task");
    }
}
