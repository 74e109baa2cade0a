//! API-server benchmark: latency (p50 / p99 / max) and throughput of create, get, list and
//! update at 1, 10 and 100 concurrent clients, lists of 10,000 pods (JSON and Table), and the
//! server's memory with 10,000 pods stored, against a real `kubelab server` process over HTTPS
//! (HTTP/2, bearer token), first on its durable SQLite store and then on the hidden
//! `--in-memory` store, whose difference is what durability (fsync per group commit) costs.
//!
//! Run: `cargo bench -p kubelab --bench apiserver`. It prints a report and writes nothing into
//! the repository; the server's data directory is a temporary directory (under `BENCH_DIR` if
//! set: put it on the disk you care about, fsync latency sets the floor for durable writes).
//!
//! Every client is a closed loop on its own connection (it sends its next request when the
//! previous one has been answered), like independent controllers; latency is measured in the
//! client, from sending the request to having read the whole response body. A closed loop
//! saturates the server, so its latency is mostly queueing (clients / throughput); the paced
//! cases (open loop, a fixed total rate from all clients) show the latency below saturation.
//!
//! Sizes (environment variables, defaults in brackets): `BENCH_CLIENTS` [1,10,100],
//! `BENCH_WRITES` [3000] creates and updates per client count, `BENCH_READS` [5000] gets per
//! client count, `BENCH_PAGES` [200] list pages (limit=500) per client count, `BENCH_FULL_LISTS`
//! [10] unpaginated lists of each kind, `BENCH_PODS` [10000] pods stored before reads and lists,
//! `BENCH_PACED_RATE` [1000] requests/s of the paced write cases (all clients together),
//! `BENCH_SKIP_MEMORY=1` skips the in-memory server, `BENCH_SERVER_BIN` runs another `kubelab`
//! binary (say, a build of the previous commit) instead of the one built with the bench. The server runs with `--no-controllers`
//! (the API server alone) unless `BENCH_CONTROLLERS=1`.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The namespace every benchmark pod lives in.
const NAMESPACE: &str = "bench";
/// What `kubectl get` sends: a server-side printed Table.
const TABLE_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

struct Settings {
    clients: Vec<usize>,
    writes: usize,
    reads: usize,
    pages: usize,
    full_lists: usize,
    pods: usize,
    dir: Option<PathBuf>,
    skip_memory: bool,
    controllers: bool,
    /// Requests per second, in all, of the open-loop write cases.
    paced_rate: f64,
}

impl Settings {
    fn from_env() -> Result<Settings> {
        let clients = match std::env::var("BENCH_CLIENTS") {
            Ok(s) => s
                .split(',')
                .map(|c| c.trim().parse::<usize>().context("BENCH_CLIENTS"))
                .collect::<Result<Vec<_>>>()?,
            Err(_) => vec![1, 10, 100],
        };
        if clients.is_empty() || clients.contains(&0) {
            bail!("BENCH_CLIENTS must list positive client counts");
        }
        Ok(Settings {
            clients,
            writes: env_count("BENCH_WRITES", 3000)?,
            reads: env_count("BENCH_READS", 5000)?,
            pages: env_count("BENCH_PAGES", 200)?,
            full_lists: env_count("BENCH_FULL_LISTS", 10)?,
            pods: env_count("BENCH_PODS", 10_000)?,
            dir: std::env::var_os("BENCH_DIR").map(PathBuf::from),
            skip_memory: std::env::var_os("BENCH_SKIP_MEMORY").is_some(),
            controllers: std::env::var_os("BENCH_CONTROLLERS").is_some(),
            paced_rate: env_count("BENCH_PACED_RATE", 1000)?.max(1) as f64,
        })
    }

    fn max_clients(&self) -> usize {
        self.clients.iter().copied().max().unwrap_or(1)
    }
}

fn env_count(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(s) => s.trim().parse().with_context(|| format!("{name}={s:?}")),
        Err(_) => Ok(default),
    }
}

/// The `kubelab` built with this bench, or `BENCH_SERVER_BIN`: another build of it, to measure
/// two versions of the server with the same client in one sitting.
fn server_binary() -> PathBuf {
    std::env::var_os("BENCH_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_kubelab")))
}

/// A `kubelab server` child process with its own data directory; killed on drop.
struct Server {
    child: Child,
    data_dir: PathBuf,
    log: PathBuf,
    url: String,
    token: String,
    ca_pem: Vec<u8>,
}

impl Server {
    fn start(root: &Path, in_memory: bool, controllers: bool) -> Result<Server> {
        let data_dir = root.join("data");
        let kubeconfig = root.join("kubeconfig");
        let log = root.join("server.log");
        std::fs::create_dir_all(root).context("server directory")?;
        let mut cmd = Command::new(server_binary());
        cmd.args(["server", "--data-dir"])
            .arg(&data_dir)
            .args(["--listen", "127.0.0.1:0", "--write-kubeconfig"])
            .arg(&kubeconfig)
            // The default level, stated so a caller's KUBELAB_LOG does not change the figures.
            .env("KUBELAB_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).context("server log")?);
        if in_memory {
            cmd.arg("--in-memory");
        }
        if !controllers {
            // The API server alone: controllers (ReplicaSet, scheduler, ...) would react to
            // every benchmark pod and fight the benchmark over the ReplicaSet's pods.
            cmd.arg("--no-controllers");
        }
        let mut child = cmd.spawn().context("spawn kubelab server")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !kubeconfig.exists() {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "kubelab server exited ({status}):\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("kubelab server did not write its kubeconfig within 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let url = std::fs::read_to_string(&kubeconfig)?
            .lines()
            .find_map(|l| l.trim().strip_prefix("server: ").map(str::to_string))
            .context("no server: line in the kubeconfig")?;
        let token = std::fs::read_to_string(data_dir.join("pki/admin.token"))?
            .trim()
            .to_string();
        let ca_pem = std::fs::read(data_dir.join("pki/ca.crt"))?;
        Ok(Server {
            child,
            data_dir,
            log,
            url,
            token,
            ca_pem,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn ensure_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "kubelab server died ({status}); log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
        Ok(())
    }

    fn client(&self) -> Result<Api> {
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&self.ca_pem)?)
            .timeout(Duration::from_secs(120))
            .build()?;
        Ok(Api {
            http,
            base: self.url.clone(),
            token: self.token.clone(),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One client: its own connection (HTTP/2 over TLS), the admin token.
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// One answered request.
struct Reply {
    status: u16,
    body: bytes::Bytes,
    version: reqwest::Version,
}

impl Api {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        accept: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Reply> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header(reqwest::header::ACCEPT, accept);
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let version = resp.version();
        let body = resp.bytes().await?;
        Ok(Reply {
            status,
            body,
            version,
        })
    }

    async fn get(&self, path: &str) -> Result<Reply> {
        self.send(reqwest::Method::GET, path, "application/json", None)
            .await
    }
}

fn pods_path() -> String {
    format!("/api/v1/namespaces/{NAMESPACE}/pods")
}

fn pod_name(n: usize) -> String {
    format!("web-7c5d8f9b6d-{n:05}")
}

/// The ReplicaSet the pods name as their controller. It must exist: the server's garbage
/// collector deletes pods whose owners are gone, as upstream's does.
fn replica_set(replicas: usize) -> Value {
    let labels = json!({"app": "web", "pod-template-hash": "7c5d8f9b6d"});
    json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "web-7c5d8f9b6d", "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "web", "image": "registry.example.com/team/web:1.27.3"}]},
            },
        },
    })
}

/// A pod as a ReplicaSet controller creates it from a defaulted template: labels, owner
/// reference, one container with ports, env, resources, probes and a volume. About 2 KB sent,
/// about 2.5 KB stored after defaulting.
fn pod(n: usize, owner_uid: &str) -> Value {
    let mut env: Vec<Value> = (0..10)
        .map(|i| json!({"name": format!("WEB_SETTING_{i}"), "value": format!("setting-value-{i}")}))
        .collect();
    env.push(json!({"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}}));
    env.push(json!({"name": "POD_IP", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}}));
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(n),
            "generateName": "web-7c5d8f9b6d-",
            "namespace": NAMESPACE,
            "labels": {"app": "web", "pod-template-hash": "7c5d8f9b6d", "tier": "frontend", "track": "stable"},
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z"},
            "ownerReferences": [{
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "web-7c5d8f9b6d",
                "uid": owner_uid,
                "controller": true,
                "blockOwnerDeletion": true,
            }],
        },
        "spec": {
            "containers": [{
                "name": "web",
                "image": "registry.example.com/team/web:1.27.3",
                "ports": [
                    {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                    {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
                ],
                "env": env,
                "resources": {
                    "requests": {"cpu": "100m", "memory": "128Mi"},
                    "limits": {"cpu": "500m", "memory": "256Mi"},
                },
                "readinessProbe": {
                    "httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"},
                    "periodSeconds": 5, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3,
                },
                "volumeMounts": [{"name": "config", "mountPath": "/etc/web", "readOnly": true}],
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent",
            }],
            "volumes": [{"name": "config", "configMap": {"name": "web-config", "defaultMode": 420}}],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "securityContext": {},
            "schedulerName": "default-scheduler",
        },
    })
}

/// What one measured case sends.
#[derive(Clone, Copy, PartialEq)]
enum Op {
    /// POST a new pod; names come from a shared counter so they never collide.
    Create,
    /// GET one stored pod, spread over all of them.
    Get,
    /// GET the namespace's pods with limit=500 (the first page).
    Page,
    /// GET all pods of the namespace, as JSON.
    ListAll,
    /// GET all pods of the namespace, as a Table.
    ListTable,
    /// PUT the client's own pod with its current resourceVersion (an annotation changes).
    Update,
}

/// The latencies of one case, sorted, and how long the whole case took.
struct Sample {
    latencies: Vec<Duration>,
    elapsed: Duration,
    errors: usize,
    first_error: Option<String>,
    server_cpu: Duration,
    client_cpu: Duration,
    response_bytes: usize,
}

impl Sample {
    fn percentile(&self, fraction: f64) -> Duration {
        let index = ((self.latencies.len() as f64 - 1.0) * fraction).round() as usize;
        self.latencies.get(index).copied().unwrap_or_default()
    }
}

/// State the clients of one server share.
struct Shared {
    /// The next pod number to create.
    next_pod: AtomicUsize,
    /// How many pods exist (gets pick among them).
    stored: usize,
    /// The uid of the pods' ReplicaSet.
    owner_uid: String,
}

/// One client's closed loop: `count` requests, each sent when the previous was answered.
async fn client_loop(
    api: Api,
    op: Op,
    client: usize,
    count: usize,
    shared: Arc<Shared>,
    pace: Option<(tokio::time::Instant, Duration)>,
) -> Result<(Vec<Duration>, usize, Option<String>, usize)> {
    let mut latencies = Vec::with_capacity(count);
    let mut errors = 0;
    let mut first_error = None;
    let mut bytes = 0;
    // Update: the client's own pod, as last answered by the server.
    let mut current = if op == Op::Update {
        let reply = api
            .get(&format!("{}/{}", pods_path(), pod_name(client)))
            .await?;
        if reply.status != 200 {
            bail!(
                "GET pod {} for update: HTTP {}",
                pod_name(client),
                reply.status
            );
        }
        Some(serde_json::from_slice::<Value>(&reply.body)?)
    } else {
        None
    };
    for i in 0..count {
        let (method, path, accept, body, expect) = match op {
            Op::Create => {
                let n = shared.next_pod.fetch_add(1, Ordering::Relaxed);
                let body = serde_json::to_vec(&pod(n, &shared.owner_uid))?;
                (
                    reqwest::Method::POST,
                    pods_path(),
                    "application/json",
                    Some(body),
                    201,
                )
            }
            Op::Get => {
                let n = (client * 7919 + i * 104_729) % shared.stored.max(1);
                let path = format!("{}/{}", pods_path(), pod_name(n));
                (reqwest::Method::GET, path, "application/json", None, 200)
            }
            Op::Page => {
                let path = format!("{}?limit=500", pods_path());
                (reqwest::Method::GET, path, "application/json", None, 200)
            }
            Op::ListAll => (
                reqwest::Method::GET,
                pods_path(),
                "application/json",
                None,
                200,
            ),
            Op::ListTable => (reqwest::Method::GET, pods_path(), TABLE_ACCEPT, None, 200),
            Op::Update => {
                let obj = current.as_mut().context("no current object")?;
                obj["metadata"]["annotations"]["bench.kubelab.io/iteration"] = json!(i.to_string());
                let path = format!("{}/{}", pods_path(), pod_name(client));
                let body = serde_json::to_vec(obj)?;
                (
                    reqwest::Method::PUT,
                    path,
                    "application/json",
                    Some(body),
                    200,
                )
            }
        };
        if let Some((first, interval)) = pace {
            tokio::time::sleep_until(first + interval * i as u32).await;
        }
        let started = Instant::now();
        let result = api.send(method, &path, accept, body).await;
        latencies.push(started.elapsed());
        match result {
            Ok(reply) if reply.status == expect => {
                bytes += reply.body.len();
                if op == Op::Update {
                    current = Some(serde_json::from_slice(&reply.body)?);
                }
            }
            Ok(reply) => {
                errors += 1;
                first_error.get_or_insert_with(|| {
                    format!(
                        "HTTP {}: {}",
                        reply.status,
                        String::from_utf8_lossy(&reply.body[..reply.body.len().min(300)])
                    )
                });
                if op == Op::Update {
                    // A conflict or failure: start again from what is stored.
                    let reply = api.get(&path).await?;
                    current = Some(serde_json::from_slice(&reply.body)?);
                }
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    Ok((latencies, errors, first_error, bytes))
}

/// Runs `total` requests of `op` spread over the first `clients` of `pool`.
async fn run_case(
    server: &mut Server,
    pool: &[Api],
    shared: &Arc<Shared>,
    op: Op,
    clients: usize,
    total: usize,
    rate: Option<f64>,
) -> Result<Sample> {
    server.ensure_running()?;
    let per_client = total.div_ceil(clients).max(1);
    // Open loop: each client sends on its own schedule, the clients' schedules staggered,
    // `rate` requests per second in all.
    let interval = rate.map(|r| Duration::from_secs_f64(clients as f64 / r));
    let now = tokio::time::Instant::now();
    let server_cpu = cpu_time(&format!("/proc/{}/stat", server.pid()));
    let client_cpu = cpu_time("/proc/self/stat");
    let started = Instant::now();
    let loops = pool[..clients].iter().enumerate().map(|(client, api)| {
        let pace = interval.map(|i| (now + i.mul_f64(client as f64 / clients as f64), i));
        client_loop(api.clone(), op, client, per_client, shared.clone(), pace)
    });
    let results = futures::future::join_all(loops).await;
    let elapsed = started.elapsed();
    let mut sample = Sample {
        latencies: Vec::with_capacity(per_client * clients),
        elapsed,
        errors: 0,
        first_error: None,
        server_cpu: cpu_time(&format!("/proc/{}/stat", server.pid())).saturating_sub(server_cpu),
        client_cpu: cpu_time("/proc/self/stat").saturating_sub(client_cpu),
        response_bytes: 0,
    };
    for result in results {
        let (latencies, errors, first_error, bytes) = result?;
        sample.latencies.extend(latencies);
        sample.errors += errors;
        sample.response_bytes += bytes;
        if sample.first_error.is_none() {
            sample.first_error = first_error;
        }
    }
    sample.latencies.sort();
    server.ensure_running()?;
    Ok(sample)
}

/// utime + stime of a process from /proc/<pid>/stat (clock ticks, assumed 100 per second).
fn cpu_time(stat_path: &str) -> Duration {
    let stat = std::fs::read_to_string(stat_path).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Report {
    rows: Vec<String>,
}

impl Report {
    fn header() -> String {
        format!(
            "{:<28} {:>7} {:>7} {:>4} {:>9} {:>9} {:>9} {:>9} {:>11} {:>11}",
            "case",
            "clients",
            "reqs",
            "err",
            "p50 ms",
            "p99 ms",
            "max ms",
            "req/s",
            "srv CPU/req",
            "cli CPU/req"
        )
    }

    fn add(&mut self, case: &str, clients: usize, s: &Sample) {
        let n = s.latencies.len().max(1) as f64;
        let row = format!(
            "{:<28} {:>7} {:>7} {:>4} {:>9.2} {:>9.2} {:>9.2} {:>9.0} {:>9.0}us {:>9.0}us",
            case,
            clients,
            s.latencies.len(),
            s.errors,
            ms(s.percentile(0.50)),
            ms(s.percentile(0.99)),
            ms(s.latencies.last().copied().unwrap_or_default()),
            s.latencies.len() as f64 / s.elapsed.as_secs_f64(),
            s.server_cpu.as_secs_f64() * 1e6 / n,
            s.client_cpu.as_secs_f64() * 1e6 / n,
        );
        println!("{row}");
        if let Some(e) = &s.first_error {
            println!("    first error: {e}");
        }
        self.rows.push(row);
    }
}

/// Memory of the server process, from /proc/<pid>/status (kB).
fn memory(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| -> f64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or(0.0)
            / 1024.0
    };
    format!(
        "VmRSS {:.1} MB (anon {:.1}, file {:.1}), VmHWM {:.1} MB",
        field("VmRSS:"),
        field("RssAnon:"),
        field("RssFile:"),
        field("VmHWM:")
    )
}

/// The data directory's size in MB, and its top-level files (state.db, its WAL) by size.
fn disk_usage(dir: &Path) -> String {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| {
                    let size = e.metadata().map(|m| m.len()).unwrap_or(0);
                    format!(
                        "{} {:.1}",
                        e.file_name().to_string_lossy(),
                        size as f64 / 1e6
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    format!(
        "data dir {:.1} MB ({})",
        dir_size(dir) as f64 / 1e6,
        files.join(", ")
    )
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

/// Connects every client (TLS handshake outside the measurements) and creates the namespace
/// and the pods' ReplicaSet; returns the clients and the ReplicaSet's uid.
async fn prepare(server: &Server, clients: usize, pods: usize) -> Result<(Vec<Api>, String)> {
    let pool = (0..clients)
        .map(|_| server.client())
        .collect::<Result<Vec<_>>>()?;
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}});
    let reply = pool[0]
        .send(
            reqwest::Method::POST,
            "/api/v1/namespaces",
            "application/json",
            Some(serde_json::to_vec(&ns)?),
        )
        .await?;
    if reply.status != 201 {
        bail!(
            "creating namespace {NAMESPACE}: HTTP {}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
    }
    let rs = pool[0]
        .send(
            reqwest::Method::POST,
            &format!("/apis/apps/v1/namespaces/{NAMESPACE}/replicasets"),
            "application/json",
            Some(serde_json::to_vec(&replica_set(pods))?),
        )
        .await?;
    if rs.status != 201 {
        bail!(
            "creating the ReplicaSet: HTTP {}: {}",
            rs.status,
            String::from_utf8_lossy(&rs.body)
        );
    }
    let owner_uid = serde_json::from_slice::<Value>(&rs.body)?["metadata"]["uid"]
        .as_str()
        .context("ReplicaSet without uid")?
        .to_string();
    let ns_path = format!("/api/v1/namespaces/{NAMESPACE}");
    let warmups = pool.iter().map(|api| api.get(&ns_path));
    for reply in futures::future::join_all(warmups).await {
        let reply = reply?;
        if reply.status != 200 {
            bail!("warm-up GET: HTTP {}", reply.status);
        }
    }
    let version = pool[0].get("/version").await?.version;
    println!("  {} client connections, {version:?}", pool.len());
    Ok((pool, owner_uid))
}

/// Creates pods (100 clients, unmeasured except for the total) until `pods` exist.
async fn fill(
    server: &mut Server,
    pool: &[Api],
    shared: &Arc<Shared>,
    pods: usize,
) -> Result<usize> {
    let have = shared.next_pod.load(Ordering::Relaxed);
    if have < pods {
        let clients = pool.len().min(pods - have);
        let s = run_case(server, pool, shared, Op::Create, clients, pods - have, None).await?;
        println!(
            "  loaded {} more pods in {:.1} s ({:.0} creates/s, {} errors)",
            s.latencies.len(),
            s.elapsed.as_secs_f64(),
            s.latencies.len() as f64 / s.elapsed.as_secs_f64(),
            s.errors
        );
    }
    Ok(shared.next_pod.load(Ordering::Relaxed))
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{} CPUs ({cpu}), {}, kernel {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        mem.split_whitespace().collect::<Vec<_>>().join(" "),
        kernel.trim()
    )
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string()
}

async fn durable(settings: &Settings, root: &Path, report: &mut Report) -> Result<()> {
    println!("\n== SQLite store (durable) ==");
    let mut server = Server::start(root, false, settings.controllers)?;
    let (pool, owner_uid) = prepare(&server, settings.max_clients(), settings.pods).await?;
    let shared = Arc::new(Shared {
        next_pod: AtomicUsize::new(0),
        stored: 0,
        owner_uid: owner_uid.clone(),
    });
    println!(
        "  pod body {} bytes",
        serde_json::to_vec(&pod(0, &owner_uid))?.len()
    );
    println!("{}", Report::header());
    for &c in &settings.clients {
        let s = run_case(
            &mut server,
            &pool,
            &shared,
            Op::Create,
            c,
            settings.writes,
            None,
        )
        .await?;
        report.add("create (SQLite)", c, &s);
    }
    let stored = fill(&mut server, &pool, &shared, settings.pods).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!(
        "  memory with {stored} pods stored: {}; {}",
        memory(server.pid()),
        disk_usage(&server.data_dir)
    );
    let shared = Arc::new(Shared {
        next_pod: AtomicUsize::new(stored),
        stored,
        owner_uid: owner_uid.clone(),
    });
    let one = pool[0]
        .get(&format!("{}/{}", pods_path(), pod_name(0)))
        .await?;
    println!("  stored pod {} bytes", one.body.len());
    for &c in &settings.clients {
        let s = run_case(
            &mut server,
            &pool,
            &shared,
            Op::Get,
            c,
            settings.reads,
            None,
        )
        .await?;
        report.add("get", c, &s);
    }
    for &c in &settings.clients {
        let s = run_case(
            &mut server,
            &pool,
            &shared,
            Op::Page,
            c,
            settings.pages,
            None,
        )
        .await?;
        report.add("list limit=500", c, &s);
    }
    let s = run_case(
        &mut server,
        &pool,
        &shared,
        Op::ListAll,
        1,
        settings.full_lists,
        None,
    )
    .await?;
    report.add(&format!("list all {stored} (JSON)"), 1, &s);
    let reply = pool[0].get(&pods_path()).await?;
    let items = serde_json::from_slice::<Value>(&reply.body)?["items"]
        .as_array()
        .map_or(0, Vec::len);
    println!(
        "    ({items} items, {:.1} MB per response)",
        reply.body.len() as f64 / 1e6
    );
    println!("  memory after JSON lists: {}", memory(server.pid()));
    let s = run_case(
        &mut server,
        &pool,
        &shared,
        Op::ListTable,
        1,
        settings.full_lists,
        None,
    )
    .await?;
    report.add(&format!("list all {stored} (Table)"), 1, &s);
    println!(
        "    ({:.1} MB per response)",
        s.response_bytes as f64 / s.latencies.len().max(1) as f64 / 1e6
    );
    println!(
        "  memory after JSON and Table lists: {}",
        memory(server.pid())
    );
    for &c in &settings.clients {
        let s = run_case(
            &mut server,
            &pool,
            &shared,
            Op::Update,
            c,
            settings.writes,
            None,
        )
        .await?;
        report.add("update (SQLite)", c, &s);
    }
    paced_writes(settings, &mut server, &pool, &shared, "SQLite", report).await?;
    println!(
        "  memory at the end: {}; {}",
        memory(server.pid()),
        disk_usage(&server.data_dir)
    );
    Ok(())
}

/// Creates and updates from all clients at a steady total rate below saturation: the latency a
/// write sees when the server is busy but not overloaded.
async fn paced_writes(
    settings: &Settings,
    server: &mut Server,
    pool: &[Api],
    shared: &Arc<Shared>,
    store: &str,
    report: &mut Report,
) -> Result<()> {
    let clients = settings.max_clients();
    let rate = settings.paced_rate;
    for (op, verb) in [(Op::Create, "create"), (Op::Update, "update")] {
        let s = run_case(
            server,
            pool,
            shared,
            op,
            clients,
            settings.writes,
            Some(rate),
        )
        .await?;
        report.add(&format!("{verb} at {rate:.0}/s ({store})"), clients, &s);
    }
    Ok(())
}

async fn in_memory(settings: &Settings, root: &Path, report: &mut Report) -> Result<()> {
    println!("\n== in-memory store (--in-memory, not durable) ==");
    let mut server = Server::start(root, true, settings.controllers)?;
    let (pool, owner_uid) = prepare(&server, settings.max_clients(), settings.pods).await?;
    let shared = Arc::new(Shared {
        next_pod: AtomicUsize::new(0),
        stored: 0,
        owner_uid: owner_uid.clone(),
    });
    println!("{}", Report::header());
    for &c in &settings.clients {
        let s = run_case(
            &mut server,
            &pool,
            &shared,
            Op::Create,
            c,
            settings.writes,
            None,
        )
        .await?;
        report.add("create (memory)", c, &s);
    }
    let stored = fill(&mut server, &pool, &shared, settings.pods).await?;
    for &c in &settings.clients {
        let s = run_case(
            &mut server,
            &pool,
            &shared,
            Op::Update,
            c,
            settings.writes,
            None,
        )
        .await?;
        report.add("update (memory)", c, &s);
    }
    paced_writes(settings, &mut server, &pool, &shared, "memory", report).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!(
        "  memory with {stored} pods stored: {}",
        memory(server.pid())
    );
    Ok(())
}

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; there is nothing to filter.
    let settings = Settings::from_env()?;
    println!("kubelab API server benchmark");
    println!("  machine: {}", machine());
    println!("  server: {}", server_binary().display());
    println!("  loadavg at start: {}", loadavg());
    let temp = match &settings.dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    };
    println!("  data under {}", temp.path().display());
    // The client side is one thread, so the server keeps as much of the machine as possible.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut report = Report { rows: Vec::new() };
    let started = Instant::now();
    runtime.block_on(durable(&settings, &temp.path().join("sqlite"), &mut report))?;
    if !settings.skip_memory {
        runtime.block_on(in_memory(
            &settings,
            &temp.path().join("memory"),
            &mut report,
        ))?;
    }
    println!("\n== summary ==");
    println!("{}", Report::header());
    for row in &report.rows {
        println!("{row}");
    }
    println!(
        "\nfinished in {:.0} s; loadavg at end: {}",
        started.elapsed().as_secs_f64(),
        loadavg()
    );
    Ok(())
}
