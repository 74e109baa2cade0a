//! Services on a lab of real nodes (`kubelab up --workers 2`, as root): how fast a change
//! reaches every node's `ip kube-proxy` table, how long a node takes to load 10,000 Services,
//! and what a ClusterIP costs in requests/s against dialling the pod directly.
//!
//! - **latency** (network programming latency, upstream's SLI): on one lab, selector-less
//!   ClusterIP Services (namespace `svcbench`, port 80 → 8080 named `http`), each with one
//!   EndpointSlice of 2 ready endpoints at made-up pod IPs (192.168.128.0/17: no pods, nothing
//!   is ever sent to them), are created from `BENCH_CLIENTS` concurrent clients up to each size
//!   of `BENCH_SVC_SIZES`, and the benchmark waits until every node's table holds them all.
//!   Then `BENCH_SVC_CHANGES` changes of each kind, one at a time: (1) a new Service and its
//!   slice, present once its ClusterIP element is in map `service-ips`; (2) one endpoint added
//!   to an existing slice (a JSON patch), present once its `endpoint-…__<ip>/8080` chain exists.
//!   Latency runs from the acknowledgement of the (last) API write until the rule is present on
//!   all three nodes. Presence is seen, not polled: an `nft monitor new` runs in each node's
//!   namespace for the whole case and every line is timestamped as it arrives (nft flushes each
//!   event; the kernel sends them once the transaction has committed).
//! - **full sync**: on a fresh lab, `BENCH_SVC_FULL` Services × 5 endpoints created from
//!   `BENCH_CLIENTS` clients (creation rate reported), then the time until every node's table
//!   holds all of them (counted in `nft -j list map ip kube-proxy service-ips`, polled). Then
//!   kube-1's agent is killed (SIGKILL; `lab-run` restarts it) and the benchmark times, from the
//!   new agent's pid appearing in `pids.json`, until kube-1's table has been replaced (a new
//!   table handle: the agent re-applies the whole table in one atomic transaction) and holds
//!   every Service. Cut at `BENCH_CASE_TIMEOUT` with what was reached. The agents send
//!   nf_tables netlink batches; `KUBELAB_PROXY_BACKEND=nft` (inherited by the lab) makes them
//!   run `nft -f` instead, for the figures before.
//! - **wrk**: on a fresh lab, a Deployment of one nginx pod pinned to kube-2 and a ClusterIP
//!   Service 8080 → 80; `wrk -t2 -c32 -d<BENCH_WRK_SECS>s` runs in kube-1 (`kubelab ssh`) against
//!   the pod IP and the ClusterIP alternately, with keep-alive and with `Connection: close`,
//!   `BENCH_WRK_RUNS` times; the medians give the ClusterIP / pod IP ratio. TcpExt counters
//!   (TCPSynRetrans, PAWS*) of kube-1 and of the pod's namespace are read around each run.
//!   `BENCH_TCP_TIMESTAMPS=1` first writes `net.ipv4.tcp_timestamps=1` into every namespace of
//!   that lab (and only of that lab), to show the figures before the lab's fix (it sets 2).
//!
//! Run as root: `cargo bench -p kubelab --bench services`. Knobs (defaults in brackets):
//! `BENCH_SVC_SIZES` [1,100,1000], `BENCH_SVC_CHANGES` [30], `BENCH_SVC_FULL` [10000; 0 skips],
//! `BENCH_CLIENTS` [16], `BENCH_WRK_RUNS` [3], `BENCH_WRK_SECS` [5], `BENCH_TCP_TIMESTAMPS`
//! [unset: the lab's own setting], `BENCH_CASE_TIMEOUT` [300] seconds, `BENCH_SECTIONS`
//! [latency,full,wrk], `BENCH_DIR` parent of the temporary state directories, `BENCH_KEEP_LOGS=DIR`
//! copies each lab's logs to `DIR/<lab>/` before it goes down. Labs are named
//! `bench-<pid>-svc…` and brought `down` on drop, also on failure and Ctrl-C.

mod common;

use anyhow::{Context, Result, bail};
use common::real_lab::Lab;
use common::{Api, JSON, cpu_model, env_count, loadavg, ms, percentile, running_and_ready, secs};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::BufRead as _;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ----- settings -------------------------------------------------------------------------------

struct Settings {
    sizes: Vec<usize>,
    changes: usize,
    full: usize,
    clients: usize,
    wrk_runs: usize,
    wrk_secs: usize,
    tcp_timestamps: Option<String>,
    case_timeout: Duration,
    run_latency: bool,
    run_full: bool,
    run_wrk: bool,
    dir: Option<PathBuf>,
}

impl Settings {
    fn from_env() -> Result<Settings> {
        let sizes = match std::env::var("BENCH_SVC_SIZES") {
            Ok(s) => s
                .split(',')
                .map(|n| {
                    n.trim()
                        .parse::<usize>()
                        .with_context(|| format!("BENCH_SVC_SIZES={s:?}"))
                })
                .collect::<Result<Vec<_>>>()?,
            Err(_) => vec![1, 100, 1000],
        };
        if sizes.windows(2).any(|w| w[0] > w[1]) {
            bail!("BENCH_SVC_SIZES must grow: the lab keeps the Services of the smaller sizes");
        }
        let sections =
            std::env::var("BENCH_SECTIONS").unwrap_or_else(|_| "latency,full,wrk".into());
        let sections: Vec<&str> = sections.split(',').map(str::trim).collect();
        if let Some(bad) = sections
            .iter()
            .find(|s| !["latency", "full", "wrk"].contains(s))
        {
            bail!("BENCH_SECTIONS: unknown section {bad:?} (latency, full, wrk)");
        }
        let tcp_timestamps = std::env::var("BENCH_TCP_TIMESTAMPS").ok();
        if let Some(v) = &tcp_timestamps
            && !["0", "1", "2"].contains(&v.as_str())
        {
            bail!("BENCH_TCP_TIMESTAMPS={v:?}: 0, 1 or 2");
        }
        Ok(Settings {
            sizes,
            changes: env_count("BENCH_SVC_CHANGES", 30)?,
            full: env_count("BENCH_SVC_FULL", 10_000)?,
            clients: env_count("BENCH_CLIENTS", 16)?.max(1),
            wrk_runs: env_count("BENCH_WRK_RUNS", 3)?.max(1),
            wrk_secs: env_count("BENCH_WRK_SECS", 5)?.max(1),
            tcp_timestamps,
            case_timeout: Duration::from_secs(env_count("BENCH_CASE_TIMEOUT", 300)? as u64),
            run_latency: sections.contains(&"latency"),
            run_full: sections.contains(&"full"),
            run_wrk: sections.contains(&"wrk"),
            dir: std::env::var_os("BENCH_DIR").map(PathBuf::from),
        })
    }
}

/// Set on Ctrl-C.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    Ok(())
}

// ----- objects --------------------------------------------------------------------------------

/// The namespace of the made-up Services.
const NAMESPACE: &str = "svcbench";
const SERVICE_PORT: u16 = 80;
const TARGET_PORT: u16 = 8080;
const PORT_NAME: &str = "http";
const JSON_PATCH: &str = "application/json-patch+json";

/// A made-up pod IP for background endpoint `n`, in 192.168.128.0/17 (pods of a lab get their
/// blocks from the bottom of 192.168.0.0/16; these are never dialled anyway).
fn background_ip(n: usize) -> Ipv4Addr {
    let n = n % (1 << 15);
    Ipv4Addr::new(192, 168, 128 + (n >> 8) as u8, (n & 0xff) as u8)
}

/// A made-up pod IP for measured endpoint `n`, in 192.168.64.0/18, apart from the background.
fn measured_ip(n: usize) -> Ipv4Addr {
    let n = n % (1 << 14);
    Ipv4Addr::new(192, 168, 64 + (n >> 8) as u8, (n & 0xff) as u8)
}

fn service(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "type": "ClusterIP",
            "ports": [{"name": PORT_NAME, "protocol": "TCP", "port": SERVICE_PORT, "targetPort": TARGET_PORT}],
        },
    })
}

fn endpoint(ip: Ipv4Addr) -> Value {
    json!({"addresses": [ip.to_string()], "conditions": {"ready": true}})
}

/// The slice a user writes for a selector-less Service: labelled with the Service's name.
fn slice(service: &str, ips: &[Ipv4Addr]) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": format!("{service}-1"),
            "namespace": NAMESPACE,
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "endpoints": ips.iter().map(|ip| endpoint(*ip)).collect::<Vec<_>>(),
        "ports": [{"name": PORT_NAME, "protocol": "TCP", "port": TARGET_PORT}],
    })
}

fn services_path() -> String {
    format!("/api/v1/namespaces/{NAMESPACE}/services")
}

fn slices_path() -> String {
    format!("/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices")
}

/// What `nft monitor` prints for the Service's ClusterIP element in `service-ips`.
fn service_key(cluster_ip: &str) -> String {
    format!("svc {cluster_ip} . tcp . {SERVICE_PORT}")
}

/// The readable part of the endpoint chain's name (after `endpoint-HASH-`).
fn endpoint_key(service: &str, ip: Ipv4Addr) -> String {
    format!("ep {NAMESPACE}/{service}/tcp/{PORT_NAME}__{ip}/{TARGET_PORT}")
}

async fn create_namespace(api: &Api) -> Result<()> {
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}});
    api.expect(reqwest::Method::POST, "/api/v1/namespaces", JSON, Some(&ns))
        .await
        .context("create namespace")?;
    Ok(())
}

/// Creates Service `name` and its slice; returns the ClusterIP and when the slice was
/// acknowledged.
async fn create_service_with_slice(
    api: &Api,
    name: &str,
    ips: &[Ipv4Addr],
) -> Result<(String, Instant)> {
    let created = api
        .expect(
            reqwest::Method::POST,
            &services_path(),
            JSON,
            Some(&service(name)),
        )
        .await?;
    let cluster_ip = created["spec"]["clusterIP"]
        .as_str()
        .with_context(|| format!("Service {name} came back without a clusterIP"))?
        .to_string();
    api.expect(
        reqwest::Method::POST,
        &slices_path(),
        JSON,
        Some(&slice(name, ips)),
    )
    .await?;
    Ok((cluster_ip, Instant::now()))
}

/// What a burst of background creates produced.
struct Created {
    /// Service index → ClusterIP.
    cluster_ips: BTreeMap<usize, String>,
    errors: usize,
    first_error: Option<String>,
    took: Duration,
    /// Acknowledgement of the last slice.
    last_ack: Instant,
}

/// Creates Services `bg-<n>` for every n in `range`, each with a slice of `endpoints` ready
/// endpoints, from `clients` concurrent clients; stops starting new ones at `deadline`.
async fn create_background(
    lab: &Lab,
    range: std::ops::Range<usize>,
    endpoints: usize,
    clients: usize,
    deadline: Instant,
) -> Result<Created> {
    let start = Instant::now();
    let next = Arc::new(AtomicUsize::new(range.start));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let api = lab.client(Some(Duration::from_secs(60)))?;
        let next = next.clone();
        let end = range.end;
        tasks.push(tokio::spawn(async move {
            let mut made = Vec::new();
            let mut errors = Vec::new();
            let mut last_ack = None;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= end || Instant::now() >= deadline || INTERRUPTED.load(Ordering::Relaxed) {
                    break;
                }
                let ips: Vec<Ipv4Addr> = (0..endpoints)
                    .map(|e| background_ip(n * endpoints + e))
                    .collect();
                match create_service_with_slice(&api, &background_name(n), &ips).await {
                    Ok((ip, at)) => {
                        made.push((n, ip));
                        last_ack = Some(at);
                    }
                    Err(e) => errors.push(format!("{e:#}")),
                }
            }
            (made, errors, last_ack)
        }));
    }
    let mut created = Created {
        cluster_ips: BTreeMap::new(),
        errors: 0,
        first_error: None,
        took: Duration::ZERO,
        last_ack: start,
    };
    for task in tasks {
        let (made, errors, last_ack) = task.await?;
        created.cluster_ips.extend(made);
        created.errors += errors.len();
        if created.first_error.is_none() {
            created.first_error = errors.into_iter().next();
        }
        if let Some(at) = last_ack {
            created.last_ack = created.last_ack.max(at);
        }
    }
    created.took = start.elapsed();
    check_interrupted()?;
    Ok(created)
}

fn background_name(n: usize) -> String {
    format!("bg-{n:05}")
}

// ----- nft in the nodes -----------------------------------------------------------------------

/// `nft monitor new` in one node's namespace: every ClusterIP element of `service-ips` and
/// every endpoint chain it reports, with when its line arrived.
struct Monitor {
    node: String,
    child: Child,
    seen: Arc<Mutex<HashMap<String, Instant>>>,
    /// Set when nft said it lost events (its socket buffer overflowed).
    lost: Arc<AtomicBool>,
}

impl Monitor {
    fn start(node: &str, netns: &str) -> Result<Monitor> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", netns, "nft", "monitor", "new"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("start nft monitor")?;
        let stdout = child.stdout.take().context("nft monitor stdout")?;
        let seen = Arc::new(Mutex::new(HashMap::new()));
        let lost = Arc::new(AtomicBool::new(false));
        let (seen_w, lost_w) = (seen.clone(), lost.clone());
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let now = Instant::now();
                if line.contains("lost some netlink events") {
                    lost_w.store(true, Ordering::Relaxed);
                }
                let keys = monitor_keys(&line);
                if keys.is_empty() {
                    continue;
                }
                let Ok(mut seen) = seen_w.lock() else { break };
                for key in keys {
                    seen.entry(key).or_insert(now);
                }
            }
        });
        Ok(Monitor {
            node: node.to_string(),
            child,
            seen,
            lost,
        })
    }

    fn seen(&self, key: &str) -> Option<Instant> {
        self.seen.lock().ok()?.get(key).copied()
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        // Our own child (`ip netns exec` execs nft, so this pid is nft).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The keys an `nft monitor` line announces: `svc IP . tcp . PORT` for elements added to
/// `service-ips`, `ep NS/SVC/tcp/PORTNAME__IP/PORT` for an endpoint chain added.
fn monitor_keys(line: &str) -> Vec<String> {
    if let Some(rest) = line.strip_prefix("add element ip kube-proxy service-ips { ") {
        let body = rest.trim_end().trim_end_matches('}');
        return body
            .split(", ")
            .filter_map(|elem| elem.split_once(" : ").map(|(key, _)| key.trim()))
            .map(|key| format!("svc {key}"))
            .collect();
    }
    if let Some(rest) = line.strip_prefix("add chain ip kube-proxy endpoint-") {
        let name = rest.split_whitespace().next().unwrap_or_default();
        // HASH (8 characters) and a hyphen, then the readable part.
        if let Some(readable) = name.get(9..) {
            return vec![format!("ep {readable}")];
        }
    }
    Vec::new()
}

/// When `key` is present on every node (the latest of the monitors' times), or None at
/// `deadline`.
async fn present_everywhere(
    monitors: &mut [Monitor],
    key: &str,
    deadline: Instant,
) -> Result<Option<Instant>> {
    loop {
        let times: Vec<Option<Instant>> = monitors.iter().map(|m| m.seen(key)).collect();
        if times.iter().all(Option::is_some) {
            return Ok(times.into_iter().flatten().max());
        }
        for m in monitors.iter_mut() {
            if !m.alive() {
                bail!("nft monitor in {} stopped", m.node);
            }
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        // Only the wait is polled; the times come from the monitors' own timestamps.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// `nft ARGS` inside `netns`; its stdout.
fn nft_in(netns: &str, args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", netns, "nft"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("run nft")?;
    if !out.status.success() {
        bail!(
            "nft {} in {netns}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The pid `pids.json` in `state_dir` gives for `role`.
fn role_pid(state_dir: &std::path::Path, role: &str) -> Option<u32> {
    let text = std::fs::read_to_string(state_dir.join("pids.json")).ok()?;
    let pids: BTreeMap<String, Option<u32>> = serde_json::from_str(&text).ok()?;
    pids.get(role).copied().flatten()
}

/// Whether `parent` has a child process whose command name is `comm`.
fn has_child(parent: u32, comm: &str) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .any(|e| {
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            // `pid (comm) state ppid …`
            let Some((head, rest)) = stat.rsplit_once(") ") else {
                return false;
            };
            let name = head.split_once(" (").map(|(_, n)| n).unwrap_or_default();
            let ppid = rest
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u32>().ok());
            name == comm && ppid == Some(parent)
        })
}

/// The handle of table `ip kube-proxy` in the namespace, if it exists: one netlink GETTABLE
/// (`nft list tables` would dump all 160,000 rules of a 10,000-Service table first, seconds of
/// kernel time that slowed the very agent being measured and delayed each poll).
fn table_handle(nft: &proxy::Nft) -> Result<Option<u64>> {
    nft.table_handle().context("GETTABLE ip kube-proxy")
}

/// The ClusterIPs with an element in `service-ips` in `netns` (empty when there is no table).
fn service_ips(netns: &str) -> Result<HashSet<String>> {
    let text = match nft_in(
        netns,
        &["-j", "list", "map", "ip", "kube-proxy", "service-ips"],
    ) {
        Ok(t) => t,
        Err(e) if e.to_string().contains("No such file") => return Ok(HashSet::new()),
        Err(e) => return Err(e),
    };
    let doc: Value = serde_json::from_str(&text).context("nft -j list map")?;
    let mut ips = HashSet::new();
    for item in doc["nftables"].as_array().into_iter().flatten() {
        for elem in item["map"]["elem"].as_array().into_iter().flatten() {
            // [ {"concat": [IP, "tcp", PORT]}, {"goto": …} ]
            if let Some(ip) = elem[0]["concat"][0].as_str() {
                ips.insert(ip.to_string());
            }
        }
    }
    Ok(ips)
}

/// How many of `want` each node's `service-ips` holds.
fn counts(nodes: &[(String, String)], want: &HashSet<&str>) -> Result<Vec<usize>> {
    nodes
        .iter()
        .map(|(_, netns)| {
            Ok(service_ips(netns)?
                .iter()
                .filter(|ip| want.contains(ip.as_str()))
                .count())
        })
        .collect()
}

/// (node name, namespace) of every node of the lab.
fn nodes(lab: &Lab) -> Result<Vec<(String, String)>> {
    Ok(lab
        .record()?
        .nodes
        .into_iter()
        .map(|n| (n.name, n.netns))
        .collect())
}

// ----- (a) network programming latency --------------------------------------------------------

/// The latencies of one kind of change at one size.
struct Latencies {
    services: usize,
    kind: &'static str,
    sorted: Vec<Duration>,
    missed: usize,
}

impl Latencies {
    fn row(&self) -> String {
        format!(
            "| {} | {} | {}/{} | {:.1} | {:.1} | {:.1} | {:.1} |",
            self.services,
            self.kind,
            self.sorted.len(),
            self.sorted.len() + self.missed,
            ms(percentile(&self.sorted, 0.5)),
            ms(percentile(&self.sorted, 0.9)),
            ms(percentile(&self.sorted, 0.99)),
            ms(self.sorted.last().copied().unwrap_or_default()),
        )
    }
}

const LATENCY_HEADER: &str = "| background Services | change | seen on all 3 nodes | p50 ms | p90 ms | p99 ms | max ms |\n|---|---|---|---|---|---|---|";

/// How long one change may take to reach every node before it counts as missed.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(10);

async fn latency_lab(settings: &Settings, rows: &mut Vec<String>) -> Result<()> {
    let name = format!("bench-{}-svclat", std::process::id());
    println!("\n== network programming latency, kube-0 + 2 workers ==");
    let (lab, took) = Lab::up(settings.dir.as_deref(), &name, 2)?;
    let nodes = nodes(&lab)?;
    println!(
        "  up in {}; nodes {:?}; agents' backend {}; loadavg {}",
        secs(took),
        nodes.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        proxy_backend(),
        loadavg()
    );
    let mut monitors = nodes
        .iter()
        .map(|(node, netns)| Monitor::start(node, netns))
        .collect::<Result<Vec<_>>>()?;
    let api = lab.client(Some(Duration::from_secs(60)))?;
    create_namespace(&api).await?;

    let mut background: BTreeMap<usize, String> = BTreeMap::new();
    let mut measured_endpoints = 0usize;
    let mut new_services = 0usize;
    for &size in &settings.sizes {
        check_interrupted()?;
        // Grow the background to `size` Services, then wait until every node holds them.
        let deadline = Instant::now() + settings.case_timeout;
        let created =
            create_background(&lab, background.len()..size, 2, settings.clients, deadline).await?;
        if let Some(e) = &created.first_error {
            bail!("{} background creates failed, first: {e}", created.errors);
        }
        let added = created.cluster_ips.len();
        background.extend(created.cluster_ips);
        let mut loaded_at = created.last_ack;
        for ip in background.values() {
            match present_everywhere(&mut monitors, &service_key(ip), deadline).await? {
                Some(t) => loaded_at = loaded_at.max(t),
                None => bail!(
                    "{size} Services: {ip} not on every node within {:?}\n--- logs ---\n{}",
                    settings.case_timeout,
                    lab.logs()
                ),
            }
        }
        println!(
            "  {size} background Services: {added} created in {} ({:.0} Services/s from {} clients), on every node {} after the last; loadavg {}",
            secs(created.took),
            added as f64 / created.took.as_secs_f64().max(1e-9),
            settings.clients,
            secs(loaded_at.saturating_duration_since(created.last_ack)),
            loadavg()
        );

        let mut new_service = Vec::new();
        let mut new_endpoint = Vec::new();
        let (mut missed_service, mut missed_endpoint) = (0, 0);
        for k in 0..settings.changes {
            check_interrupted()?;
            // (1) A new Service and its slice.
            let svc = format!("new-{new_services:05}");
            new_services += 1;
            let ips = [
                measured_ip(measured_endpoints),
                measured_ip(measured_endpoints + 1),
            ];
            measured_endpoints += 2;
            let (cluster_ip, acked) = create_service_with_slice(&api, &svc, &ips).await?;
            match present_everywhere(
                &mut monitors,
                &service_key(&cluster_ip),
                acked + CHANGE_TIMEOUT,
            )
            .await?
            {
                Some(t) => new_service.push(t.saturating_duration_since(acked)),
                None => missed_service += 1,
            }

            // (2) One more endpoint in an existing slice, spread over the background.
            let target = background_name(k * background.len().max(1) / settings.changes.max(1));
            let ip = measured_ip(measured_endpoints);
            measured_endpoints += 1;
            let patch = json!([{"op": "add", "path": "/endpoints/-", "value": endpoint(ip)}]);
            api.expect(
                reqwest::Method::PATCH,
                &format!("{}/{target}-1", slices_path()),
                JSON_PATCH,
                Some(&patch),
            )
            .await?;
            let acked = Instant::now();
            match present_everywhere(
                &mut monitors,
                &endpoint_key(&target, ip),
                acked + CHANGE_TIMEOUT,
            )
            .await?
            {
                Some(t) => new_endpoint.push(t.saturating_duration_since(acked)),
                None => missed_endpoint += 1,
            }
        }
        new_service.sort();
        new_endpoint.sort();
        for case in [
            Latencies {
                services: size,
                kind: "new Service + EndpointSlice (ClusterIP element in `service-ips`)",
                sorted: new_service,
                missed: missed_service,
            },
            Latencies {
                services: size,
                kind: "endpoint added to a slice (its `endpoint-…` chain)",
                sorted: new_endpoint,
                missed: missed_endpoint,
            },
        ] {
            println!("{}", case.row());
            rows.push(case.row());
        }
    }
    for m in &monitors {
        if m.lost.load(Ordering::Relaxed) {
            println!("  WARNING: nft monitor in {} lost netlink events", m.node);
        }
    }
    drop(monitors);
    drop(lab);
    Ok(())
}

/// How the lab's agents program their tables: `KUBELAB_PROXY_BACKEND=nft` (inherited by the
/// lab's processes) makes them run `nft -f` as before the netlink encoder.
fn proxy_backend() -> &'static str {
    match std::env::var("KUBELAB_PROXY_BACKEND").as_deref() {
        Ok("nft") => "nft -f",
        _ => "netlink",
    }
}

// ----- (b) full sync --------------------------------------------------------------------------

async fn full_lab(settings: &Settings, lines: &mut Vec<String>) -> Result<()> {
    let n = settings.full;
    let name = format!("bench-{}-svcfull", std::process::id());
    println!(
        "\n== full sync of {n} Services × 5 endpoints, kube-0 + 2 workers (agents' backend: {}) ==",
        proxy_backend()
    );
    let (lab, took) = Lab::up(settings.dir.as_deref(), &name, 2)?;
    let nodes = nodes(&lab)?;
    println!("  up in {}; loadavg {}", secs(took), loadavg());
    let api = lab.client(Some(Duration::from_secs(60)))?;
    create_namespace(&api).await?;

    let start = Instant::now();
    let deadline = start + settings.case_timeout;
    let created = create_background(&lab, 0..n, 5, settings.clients, deadline).await?;
    let made = created.cluster_ips.len();
    let rate = made as f64 / created.took.as_secs_f64().max(1e-9);
    let line = format!(
        "created {made}/{n} Services + {made} EndpointSlices in {} from {} clients: {rate:.0} Services/s ({:.0} API writes/s){}",
        secs(created.took),
        settings.clients,
        2.0 * rate,
        if created.errors > 0 {
            format!(
                "; {} failed, first: {}",
                created.errors,
                created.first_error.as_deref().unwrap_or("")
            )
        } else {
            String::new()
        }
    );
    println!("  {line}; loadavg {}", loadavg());
    lines.push(line);
    if made == 0 {
        bail!("no Service could be created");
    }

    // The initial load: the agents applied the creates as they came; when does every node
    // hold all of them?
    let want: HashSet<&str> = created.cluster_ips.values().map(String::as_str).collect();
    let load_deadline = Instant::now() + settings.case_timeout;
    let mut reached = vec![0; nodes.len()];
    let mut loaded_at = None;
    while Instant::now() < load_deadline {
        check_interrupted()?;
        reached = counts(&nodes, &want)?;
        if reached.iter().all(|&c| c == want.len()) {
            loaded_at = Some(Instant::now());
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let line = match loaded_at {
        Some(t) => format!(
            "initial load (applied incrementally while they were created): every node held all {made} {} after the last create, {} after the first (polled every 0.25 s)",
            secs(t.saturating_duration_since(created.last_ack)),
            secs(t.saturating_duration_since(start)),
        ),
        None => format!(
            "initial load: NOT complete {} after the last create; nodes hold {reached:?} of {made}",
            secs(settings.case_timeout)
        ),
    };
    println!("  {line}; loadavg {}", loadavg());
    lines.push(line);

    // A restarted agent re-applies the whole table at once.
    let (node, netns) = nodes
        .iter()
        .find(|(n, _)| n == "kube-1")
        .context("no node kube-1")?
        .clone();
    let role = format!("agent {node}");
    let old_pid = lab
        .pids()
        .get(&role)
        .copied()
        .flatten()
        .with_context(|| format!("no pid for {role:?} in pids.json"))?;
    let argv = lab::process::cmdline(old_pid).unwrap_or_default();
    if argv.get(1).map(String::as_str) != Some("agent") || !lab.processes().contains(&old_pid) {
        bail!("pid {old_pid} is not this lab's agent: {argv:?}");
    }
    let handle_query = proxy::Nft::in_netns(&PathBuf::from("/run/netns").join(&netns))
        .context("open the node's namespace")?;
    let old_handle = table_handle(&handle_query)?;
    // When the new agent's `nft -f` starts, watched apart from the table: `nft list` waits
    // while a big transaction is being committed.
    let watching = Arc::new(AtomicBool::new(true));
    let nft_watch = {
        let (watching, state_dir, role) = (watching.clone(), lab.state_dir(), role.clone());
        std::thread::spawn(move || {
            while watching.load(Ordering::Relaxed) {
                if let Some(agent) = role_pid(&state_dir, &role)
                    && agent != old_pid
                    && has_child(agent, "nft")
                {
                    return Some(Instant::now());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            None
        })
    };
    let killed = Instant::now();
    // SAFETY: kill has no memory preconditions; the pid was checked to be this lab's agent.
    if unsafe { libc::kill(old_pid as i32, libc::SIGKILL) } != 0 {
        bail!("kill {old_pid}: {}", std::io::Error::last_os_error());
    }
    let restart_deadline = killed + settings.case_timeout;
    let (restarted, new_pid) = loop {
        check_interrupted()?;
        if let Some(Some(pid)) = lab.pids().get(&role)
            && *pid != old_pid
        {
            break (Instant::now(), *pid);
        }
        if Instant::now() >= restart_deadline {
            bail!(
                "{role} was not restarted within {:?}",
                settings.case_timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let mut replaced = None;
    // Every pid the role had since the kill (more than one if the new agent died too).
    let mut agents = std::collections::BTreeSet::from([new_pid]);
    let mut held = 0;
    while Instant::now() < restart_deadline {
        check_interrupted()?;
        if let Some(agent) = lab.pids().get(&role).copied().flatten() {
            agents.insert(agent);
        }
        let handle = table_handle(&handle_query)?;
        if handle.is_some() && handle != old_handle {
            let t = Instant::now();
            replaced.get_or_insert(t);
            held = service_ips(&netns)?
                .iter()
                .filter(|ip| want.contains(ip.as_str()))
                .count();
            if held == want.len() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    watching.store(false, Ordering::Relaxed);
    let nft_started = nft_watch.join().ok().flatten();
    let line = match replaced {
        Some(t) if held == want.len() => format!(
            "{node}'s agent SIGKILLed and restarted by lab-run after {}; from the restart until its table was replaced holding all {made} Services: **{}** (kill → full table {}; {}; table handle asked over netlink every 10 ms, processes watched every 5 ms)",
            secs(restarted.saturating_duration_since(killed)),
            secs(t.saturating_duration_since(restarted)),
            secs(t.saturating_duration_since(killed)),
            match nft_started {
                Some(n) => format!(
                    "restart → the agent's `nft -f` started {}, `nft -f` → table replaced {}",
                    secs(n.saturating_duration_since(restarted)),
                    secs(t.saturating_duration_since(n))
                ),
                None => "no `nft -f` process: the agent sent a netlink batch".into(),
            }
        ),
        Some(t) => format!(
            "{node}'s agent restarted; its table was replaced {} after the restart but held only {held} of {made} Services at the deadline",
            secs(t.saturating_duration_since(restarted))
        ),
        None => format!(
            "{node}'s agent restarted; its table was NOT replaced within {}",
            secs(settings.case_timeout)
        ),
    };
    println!("  {line}; loadavg {}", loadavg());
    lines.push(line);
    if agents.len() > 1 {
        println!("  WARNING: {role} had pids {agents:?} after the kill (it was restarted again)");
    }
    // What the agents said beyond info (failed applies, restarts).
    let log = std::fs::read_to_string(lab.state_dir().join(format!("logs/agent-{node}.log")))
        .unwrap_or_default();
    for l in log
        .lines()
        .filter(|l| {
            l.contains("WARN") || l.contains("ERROR") || l.contains("full sync of Service rules")
        })
        .take(20)
    {
        println!("  agent-{node}.log: {l}");
    }
    drop(lab);
    Ok(())
}

// ----- (c) wrk --------------------------------------------------------------------------------

const WEB: &str = "svcbench-web";

fn web_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": WEB, "namespace": "default"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": WEB}},
            "template": {
                "metadata": {"labels": {"app": WEB}},
                "spec": {
                    // On another node than wrk's kube-1, so the path crosses the underlay.
                    "nodeSelector": {"kubernetes.io/hostname": "kube-2"},
                    "containers": [{"name": "nginx", "image": "nginx", "ports": [{"containerPort": 80}]}],
                },
            },
        },
    })
}

fn web_service() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": WEB, "namespace": "default"},
        "spec": {
            "type": "ClusterIP",
            "selector": {"app": WEB},
            "ports": [{"protocol": "TCP", "port": 8080, "targetPort": 80}],
        },
    })
}

/// TcpExt counters of `netns` (from its /proc/net/netstat).
fn tcp_ext(netns: &str) -> Result<HashMap<String, u64>> {
    let out = Command::new("ip")
        .args(["netns", "exec", netns, "cat", "/proc/net/netstat"])
        .stdin(Stdio::null())
        .output()
        .context("read /proc/net/netstat")?;
    if !out.status.success() {
        bail!("/proc/net/netstat in {netns}: {}", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    let mut counters = HashMap::new();
    for pair in lines.chunks(2) {
        let [names, values] = pair else { continue };
        let Some(names) = names.strip_prefix("TcpExt:") else {
            continue;
        };
        let values = values.strip_prefix("TcpExt:").unwrap_or(values);
        for (name, value) in names.split_whitespace().zip(values.split_whitespace()) {
            counters.insert(name.to_string(), value.parse().unwrap_or(0));
        }
    }
    Ok(counters)
}

/// The TcpExt counters the report shows: SYN retransmits and PAWS rejections.
#[derive(Default, Clone, Copy)]
struct TcpCounts {
    syn_retrans: u64,
    paws: u64,
}

impl TcpCounts {
    fn of(counters: &HashMap<String, u64>) -> TcpCounts {
        TcpCounts {
            syn_retrans: counters.get("TCPSynRetrans").copied().unwrap_or(0),
            paws: counters
                .iter()
                .filter(|(k, _)| k.starts_with("PAWS"))
                .map(|(_, v)| v)
                .sum(),
        }
    }

    fn since(self, before: TcpCounts) -> TcpCounts {
        TcpCounts {
            syn_retrans: self.syn_retrans.saturating_sub(before.syn_retrans),
            paws: self.paws.saturating_sub(before.paws),
        }
    }
}

/// One wrk run.
struct WrkRun {
    requests_per_sec: f64,
    /// wrk's "Socket errors" and "Non-2xx" lines, if any.
    errors: String,
    client: TcpCounts,
    server: TcpCounts,
}

fn wrk_run(
    lab: &Lab,
    url: &str,
    close: bool,
    seconds: usize,
    client_netns: &str,
    server_netns: &str,
) -> Result<WrkRun> {
    let client_before = TcpCounts::of(&tcp_ext(client_netns)?);
    let server_before = TcpCounts::of(&tcp_ext(server_netns)?);
    let duration = format!("-d{seconds}s");
    let mut args = vec![
        "ssh", "--name", &lab.name, "kube-1", "--", "wrk", "-t2", "-c32", &duration,
    ];
    if close {
        args.extend(["-H", "Connection: close"]);
    }
    args.push(url);
    let out = lab.kubelab_ok(&args)?;
    let client = TcpCounts::of(&tcp_ext(client_netns)?).since(client_before);
    let server = TcpCounts::of(&tcp_ext(server_netns)?).since(server_before);
    let requests_per_sec = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .with_context(|| format!("no Requests/sec in wrk's output:\n{out}"))?;
    let errors = out
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("Socket errors") || l.starts_with("Non-2xx"))
        .collect::<Vec<_>>()
        .join("; ");
    Ok(WrkRun {
        requests_per_sec,
        errors,
        client,
        server,
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Waits until `curl` from kube-1 gets a 200 from `url`.
async fn wait_http(lab: &Lab, url: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let out = Lab::kubelab(
            lab.root.path(),
            &[
                "ssh",
                "--name",
                &lab.name,
                "kube-1",
                "--",
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "2",
                url,
            ],
        )?;
        if String::from_utf8_lossy(&out.stdout).trim() == "200" {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{url} did not answer 200 from kube-1 within {timeout:?}\n--- logs ---\n{}",
                lab.logs()
            );
        }
        check_interrupted()?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wrk_lab(
    settings: &Settings,
    rows: &mut Vec<String>,
    notes: &mut Vec<String>,
) -> Result<()> {
    let name = format!("bench-{}-svcwrk", std::process::id());
    println!("\n== wrk from kube-1 to an nginx pod on kube-2 ==");
    let (lab, took) = Lab::up(settings.dir.as_deref(), &name, 2)?;
    println!("  up in {}; loadavg {}", secs(took), loadavg());
    let api = lab.client(Some(Duration::from_secs(60)))?;
    api.expect(
        reqwest::Method::POST,
        "/apis/apps/v1/namespaces/default/deployments",
        JSON,
        Some(&web_deployment()),
    )
    .await?;
    let svc = api
        .expect(
            reqwest::Method::POST,
            "/api/v1/namespaces/default/services",
            JSON,
            Some(&web_service()),
        )
        .await?;
    let cluster_ip = svc["spec"]["clusterIP"]
        .as_str()
        .context("the Service has no clusterIP")?
        .to_string();
    let deadline = Instant::now() + settings.case_timeout;
    let pod = loop {
        check_interrupted()?;
        let pods = api
            .expect(
                reqwest::Method::GET,
                &format!("/api/v1/namespaces/default/pods?labelSelector=app%3D{WEB}"),
                JSON,
                None,
            )
            .await?;
        if let Some(p) = pods["items"]
            .as_array()
            .and_then(|items| items.iter().find(|p| running_and_ready(p)))
        {
            break p.clone();
        }
        if Instant::now() >= deadline {
            bail!(
                "the nginx pod never became Ready\n--- logs ---\n{}",
                lab.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let pod_ip = pod["status"]["podIP"]
        .as_str()
        .context("the pod has no IP")?
        .to_string();
    let uid = pod["metadata"]["uid"].as_str().context("pod uid")?;
    let pod_node = pod["spec"]["nodeName"].as_str().unwrap_or("?");
    if pod_node != "kube-2" {
        bail!("the nginx pod landed on {pod_node}, not kube-2");
    }
    let pod_netns = format!("{}{uid}", lab::topology::pod_netns_prefix(&lab.name));
    let kube1 = nodes(&lab)?
        .into_iter()
        .find(|(n, _)| n == "kube-1")
        .context("no node kube-1")?
        .1;
    let direct = format!("http://{pod_ip}:80/");
    let through = format!("http://{cluster_ip}:8080/");
    wait_http(&lab, &direct, Duration::from_secs(60)).await?;
    wait_http(&lab, &through, Duration::from_secs(60)).await?;

    let lab_setting =
        dataplane::sysctl::get(&dataplane::netns::path(&kube1), "net.ipv4.tcp_timestamps")
            .unwrap_or_else(|e| format!("? ({e})"));
    let timestamps = match &settings.tcp_timestamps {
        Some(value) => {
            // Every namespace of this lab, and only of this lab: its name, then a dot.
            let namespaces =
                dataplane::netns::list_with_prefix(&lab::topology::netns_prefix(&lab.name));
            for ns in &namespaces {
                dataplane::sysctl::set(
                    &dataplane::netns::path(ns),
                    "net.ipv4.tcp_timestamps",
                    value,
                )
                .with_context(|| format!("tcp_timestamps in {ns}"))?;
            }
            println!(
                "  net.ipv4.tcp_timestamps={value} written into the lab's {} namespaces (the lab had set {lab_setting})",
                namespaces.len()
            );
            format!("tcp_timestamps={value} (BENCH_TCP_TIMESTAMPS; the lab sets {lab_setting})")
        }
        None => format!("tcp_timestamps={lab_setting} (the lab's setting)"),
    };
    println!(
        "  pod {pod_ip} on kube-2, ClusterIP {cluster_ip}:8080; {timestamps}; loadavg {}",
        loadavg()
    );

    // Warm-up, not counted: the first seconds of a fresh nginx and conntrack are slower.
    for url in [&direct, &through] {
        wrk_run(&lab, url, false, 1, &kube1, &pod_netns)?;
    }
    for close in [false, true] {
        let mode = if close {
            "`Connection: close` (a connection per request)"
        } else {
            "keep-alive"
        };
        let (mut direct_rps, mut through_rps) = (Vec::new(), Vec::new());
        let mut details = Vec::new();
        for run in 0..settings.wrk_runs {
            for (label, url) in [("pod IP", &direct), ("ClusterIP", &through)] {
                check_interrupted()?;
                let r = wrk_run(&lab, url, close, settings.wrk_secs, &kube1, &pod_netns)?;
                let detail = format!(
                    "{mode}, run {run}, {label}: {:.0} req/s; SYN retransmits (kube-1) {}, PAWS (kube-1 / pod) {} / {}{}",
                    r.requests_per_sec,
                    r.client.syn_retrans,
                    r.client.paws,
                    r.server.paws,
                    if r.errors.is_empty() {
                        String::new()
                    } else {
                        format!("; {}", r.errors)
                    }
                );
                println!("  {detail}");
                details.push(detail);
                if label == "pod IP" {
                    direct_rps.push(r.requests_per_sec);
                } else {
                    through_rps.push(r.requests_per_sec);
                }
            }
        }
        let (d, t) = (median(direct_rps), median(through_rps));
        let ratio = if d > 0.0 { t / d } else { 0.0 };
        let target = if close { 0.8 } else { 0.95 };
        let row = format!(
            "| {mode} | {timestamps} | {d:.0} | {t:.0} | **{ratio:.2}** | ≥ {target} | {} |",
            if ratio >= target {
                "met"
            } else {
                "**not met**"
            }
        );
        println!("{row}");
        rows.push(row);
        notes.extend(details);
    }
    drop(lab);
    Ok(())
}

const WRK_HEADER: &str = "| wrk -t2 -c32 from kube-1, pod on kube-2 | TCP timestamps | pod IP req/s (median) | ClusterIP req/s (median) | ratio | target | verdict |\n|---|---|---|---|---|---|---|";

// ----- main -----------------------------------------------------------------------------------

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
    let mut latency_rows = Vec::new();
    let mut full_lines = Vec::new();
    let mut wrk_rows = Vec::new();
    let mut wrk_notes = Vec::new();
    let outcome = runtime.block_on(async {
        // On Ctrl-C the work future is dropped, and with it its lab (Drop runs `kubelab down`)
        // and its nft monitors (Drop kills them).
        let interrupt_rx = common::interrupt_on_ctrl_c(&INTERRUPTED);
        let work = async {
            if settings.run_latency && !settings.sizes.is_empty() {
                latency_lab(&settings, &mut latency_rows).await?;
            }
            if settings.run_full && settings.full > 0 {
                full_lab(&settings, &mut full_lines).await?;
            }
            if settings.run_wrk {
                wrk_lab(&settings, &mut wrk_rows, &mut wrk_notes).await?;
            }
            anyhow::Ok(())
        };
        tokio::select! {
            r = work => r,
            Ok(()) = interrupt_rx => Err(anyhow::anyhow!("interrupted")),
        }
    });

    println!(
        "\n## Services (network namespaces, kube-0 + 2 workers)\n\nMachine: nproc {nproc}, {}; loadavg (1/5/15 min) before {load_before}, after {}.\n",
        cpu_model(),
        loadavg()
    );
    if !latency_rows.is_empty() {
        println!("{LATENCY_HEADER}");
        for row in &latency_rows {
            println!("{row}");
        }
        println!(
            "\nTarget: p99 under 100 ms. Anchor: kube-proxy's default minimum sync period is 1 s (a change waits up to 1 s); its iptables mode re-writes whole chains.\n"
        );
    }
    if !full_lines.is_empty() {
        for line in &full_lines {
            println!("- {line}");
        }
        println!("\nTarget: a 10,000-Service sync under 1 s.\n");
    }
    if !wrk_rows.is_empty() {
        println!("{WRK_HEADER}");
        for row in &wrk_rows {
            println!("{row}");
        }
        println!();
        for note in &wrk_notes {
            println!("- {note}");
        }
    }
    outcome
}
