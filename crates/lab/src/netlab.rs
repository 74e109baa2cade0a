//! A lab of real nodes: the background `lab-run` process builds the lab's namespaces from a
//! [`Topology`], starts `kubelab server` inside kube-0 and one `kubelab agent` inside each node,
//! forwards 127.0.0.1 on the host to the API server, restarts what dies (as systemd restarts a
//! kubelet), and on SIGTERM takes all of it down again.
//!
//! `lab-run` is a child subreaper: containers orphaned by a killed agent become its children, so
//! they are reaped (this machine's pid 1 may not) and found again at shutdown.
//!
//! Every process of the lab carries [`MARKER_ENV`] = `<lab>@<state dir>` in its environment, so
//! `down` can find leftovers of a lab whose `lab-run` was killed, and nothing else.

use crate::topology::{self, Encapsulation, LabConfig, Routing, Topology};
use crate::{LabError, LabPaths, context_name, kubeconfig};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Environment variable marking every process of a lab.
pub const MARKER_ENV: &str = "KUBELAB_LAB";
/// The API server's port inside kube-0.
pub const API_PORT: u16 = 6443;
/// The kubelet API port of each agent.
pub const KUBELET_PORT: u16 = 10250;

/// The marker value of lab `name` living in `state_dir`.
pub fn marker(name: &str, state_dir: &Path) -> String {
    format!("{name}@{}", state_dir.display())
}

/// What `lab-run` needs to build a lab of real nodes.
#[derive(Clone, Debug)]
pub struct NetRunOptions {
    pub name: String,
    pub workers: u32,
    pub state_dir: PathBuf,
    pub encapsulation: Option<Encapsulation>,
    /// `--routing` (overrides the config's `routing`).
    pub routing: Option<Routing>,
    pub config: LabConfig,
    /// The `kubelab` binary to run as server, agents and containers.
    pub program: PathBuf,
}

/// Files of a real lab, besides [`LabPaths`].
pub fn topology_file(state_dir: &Path) -> PathBuf {
    state_dir.join("topology.json")
}
pub fn agent_kubeconfig(state_dir: &Path) -> PathBuf {
    state_dir.join("agent.kubeconfig")
}
pub fn node_state_dir(state_dir: &Path, node: &str) -> PathBuf {
    state_dir.join("nodes").join(node)
}

/// What tools outside `lab-run` (ssh, routes, status, down) read about a running lab.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct LabRecord {
    pub name: String,
    pub router_netns: String,
    pub encapsulation: String,
    pub nodes: Vec<NodeRecord>,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct NodeRecord {
    pub name: String,
    pub netns: String,
    pub uts: PathBuf,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
}

impl LabRecord {
    pub fn of(t: &Topology, state_dir: &Path) -> LabRecord {
        LabRecord {
            name: t.lab.clone(),
            router_netns: t.router_netns.clone(),
            encapsulation: t.encapsulation.as_str().to_string(),
            nodes: t
                .nodes
                .iter()
                .map(|n| NodeRecord {
                    name: n.name.clone(),
                    netns: n.netns.clone(),
                    uts: topology::uts_file(state_dir, &n.name),
                    ip: n.ip,
                    prefix_len: n.prefix_len,
                    gateway: n.gateway,
                })
                .collect(),
        }
    }

    pub fn read(state_dir: &Path) -> Result<LabRecord, LabError> {
        let path = topology_file(state_dir);
        let text = std::fs::read_to_string(&path).map_err(crate::io("reading", &path))?;
        serde_json::from_str(&text)
            .map_err(|e| LabError::LabKubeconfig(format!("{}: {e}", path.display())))
    }

    pub fn node(&self, name: &str) -> Option<&NodeRecord> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

/// What tools outside `lab-run` read about a lab's BGP (`bgp.json`, only in `--routing bgp`
/// labs): `kubelab bgp status`, `kubelab ssh bgppeer`, tests.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct BgpRecord {
    pub as_number: u32,
    pub peer_router: Option<PeerRouterRecord>,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PeerRouterRecord {
    pub netns: String,
    pub uts: PathBuf,
    pub ip: Ipv4Addr,
    pub as_number: u32,
    /// Its BIRD's directory (configuration, control socket `bird.ctl`, log).
    pub bird_dir: PathBuf,
}

pub fn bgp_file(state_dir: &Path) -> PathBuf {
    state_dir.join("bgp.json")
}

/// BIRD's directory of the external BGP router.
pub fn peer_router_dir(state_dir: &Path) -> PathBuf {
    state_dir.join(topology::PEER_ROUTER_NAME)
}

impl BgpRecord {
    pub fn of(t: &Topology, state_dir: &Path) -> Option<BgpRecord> {
        (t.routing == Routing::Bgp).then(|| BgpRecord {
            as_number: t.as_number,
            peer_router: t.peer_router.as_ref().map(|peer| PeerRouterRecord {
                netns: peer.netns.clone(),
                uts: topology::uts_file(state_dir, topology::PEER_ROUTER_NAME),
                ip: peer.ip,
                as_number: peer.as_number,
                bird_dir: peer_router_dir(state_dir),
            }),
        })
    }

    /// The lab's BGP record; `None` when the lab does not run BGP.
    pub fn read(state_dir: &Path) -> Option<BgpRecord> {
        let text = std::fs::read_to_string(bgp_file(state_dir)).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// Whether BIRD 2 (`bird` and `birdc`) is installed, as `--routing bgp` needs.
pub fn bird_installed() -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    ["bird", "birdc"]
        .iter()
        .all(|program| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// What `up` says when BIRD is missing.
pub const BIRD_MISSING: &str = "`--routing bgp` runs BIRD 2 in every node, and `bird`/`birdc` are not installed: install them with `sudo apt-get install bird2` (Debian, Ubuntu) or `sudo dnf install bird` (Fedora), then run `kubelab up` again";

fn dp(e: dataplane::DataplaneError) -> LabError {
    LabError::Network(e.to_string())
}

/// Progress lines `up` prints: each step and how long it took.
fn step(state_dir: &Path, started: Instant, what: &str) {
    use std::io::Write;
    let line = format!(
        "{:>6.0} ms  {what}\n",
        started.elapsed().as_secs_f64() * 1000.0
    );
    tracing::info!("{}", line.trim());
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state_dir.join("steps"))
    {
        let _ = f.write_all(line.as_bytes());
    }
}

/// Builds the lab's namespaces and underlay. On error, whatever was made is left for
/// [`teardown`], which the caller runs.
pub async fn build_network(t: &Topology, state_dir: &Path) -> Result<(), LabError> {
    let ns_dir = state_dir.join("ns");
    std::fs::create_dir_all(&ns_dir).map_err(crate::io("creating", &ns_dir))?;
    let mut names = vec![t.router_netns.clone()];
    names.extend(t.nodes.iter().map(|n| n.netns.clone()));
    names.extend(t.peer_router.iter().map(|p| p.netns.clone()));
    // Namespace creation switches threads' namespaces: spread over blocking threads.
    let creations = names.into_iter().map(|name| {
        tokio::task::spawn_blocking(move || dataplane::netns::create(&name).map(|_| ()))
    });
    for r in futures::future::join_all(creations).await {
        r.map_err(|e| LabError::Network(e.to_string()))?
            .map_err(dp)?;
    }
    for n in &t.nodes {
        let file = topology::uts_file(state_dir, &n.name);
        let hostname = n.name.clone();
        tokio::task::spawn_blocking(move || dataplane::netns::create_uts(&file, &hostname))
            .await
            .map_err(|e| LabError::Network(e.to_string()))?
            .map_err(dp)?;
    }
    if t.peer_router.is_some() {
        let file = topology::uts_file(state_dir, topology::PEER_ROUTER_NAME);
        tokio::task::spawn_blocking(move || {
            dataplane::netns::create_uts(&file, topology::PEER_ROUTER_NAME)
        })
        .await
        .map_err(|e| LabError::Network(e.to_string()))?
        .map_err(dp)?;
    }
    dataplane::ip::batch(Some(&t.router_netns), &t.router_script())
        .await
        .map_err(dp)?;
    if let (Some(peer), Some(script)) = (&t.peer_router, t.peer_router_script()) {
        dataplane::ip::batch(Some(&peer.netns), &script)
            .await
            .map_err(dp)?;
    }
    let scripts = t
        .nodes
        .iter()
        .map(|n| async move { dataplane::ip::batch(Some(&n.netns), &t.node_script(n)).await });
    for r in futures::future::join_all(scripts).await {
        r.map_err(dp)?;
    }
    let mut all = vec![t.router_netns.clone()];
    all.extend(t.nodes.iter().map(|n| n.netns.clone()));
    all.extend(t.peer_router.iter().map(|p| p.netns.clone()));
    for ns in all {
        let path = dataplane::netns::path(&ns);
        for (key, value) in [
            ("net.ipv4.ip_forward", "1"),
            // A lab is its own world: no reverse-path filtering between its namespaces.
            ("net.ipv4.conf.all.rp_filter", "0"),
            ("net.ipv4.conf.default.rp_filter", "0"),
            dataplane::sysctl::TCP_TIMESTAMPS,
        ] {
            dataplane::sysctl::set(&path, key, value).map_err(dp)?;
        }
    }
    Ok(())
}

/// Removes every namespace and namespace file of lab `name` (also of a lab whose `lab-run`
/// died). Returns what was removed.
pub fn teardown(name: &str, state_dir: &Path) -> Vec<String> {
    let mut removed = Vec::new();
    // Pods first: deleting a pod namespace removes its veth from the node too.
    let mut namespaces = dataplane::netns::list_with_prefix(&topology::pod_netns_prefix(name));
    let mut rest = dataplane::netns::list_with_prefix(&topology::netns_prefix(name));
    rest.retain(|n| !namespaces.contains(n));
    namespaces.extend(rest);
    for ns in namespaces {
        match dataplane::netns::delete(&ns) {
            Ok(()) => removed.push(ns),
            Err(e) => tracing::warn!(netns = %ns, error = %e, "cannot delete namespace"),
        }
    }
    // Node hostnames and pods' UTS namespaces are bind mounts inside the state directory.
    for mount in mounts_under(state_dir) {
        match dataplane::netns::remove_ns_file(&mount) {
            Ok(()) => removed.push(mount.display().to_string()),
            Err(e) => {
                tracing::warn!(file = %mount.display(), error = %e, "cannot remove namespace file")
            }
        }
    }
    removed
}

/// Mount points at or below `dir` (from /proc/self/mountinfo), deepest first.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut mounts: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        // mountinfo escapes space, tab, newline and backslash as octal.
        .map(|p| {
            PathBuf::from(
                p.replace("\\040", " ")
                    .replace("\\011", "\t")
                    .replace("\\012", "\n")
                    .replace("\\134", "\\"),
            )
        })
        .filter(|p| p.starts_with(dir))
        .collect();
    mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    mounts.dedup();
    mounts
}

/// Pids of processes carrying lab `name`'s marker (never this process).
pub fn marked_processes(name: &str, state_dir: &Path) -> Vec<u32> {
    let want = format!("{MARKER_ENV}={}", marker(name, state_dir));
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == want.as_bytes()))
        })
        .collect()
}

fn kill(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) takes plain integers.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// SIGKILLs every marked process of the lab, waiting until they are gone.
pub fn kill_marked(name: &str, state_dir: &Path) -> usize {
    let mut killed = 0;
    for _ in 0..50 {
        let pids = marked_processes(name, state_dir);
        let alive: Vec<u32> = pids
            .into_iter()
            .filter(|p| crate::process::is_alive(*p))
            .collect();
        if alive.is_empty() {
            break;
        }
        for pid in &alive {
            kill(*pid, libc::SIGKILL);
        }
        killed = killed.max(alive.len());
        std::thread::sleep(Duration::from_millis(20));
    }
    killed
}

/// A child of `lab-run` it keeps running.
struct Supervised {
    role: String,
    /// The program to run, when not `kubelab` itself.
    program: Option<PathBuf>,
    args: Vec<String>,
    netns: String,
    uts: PathBuf,
    log: PathBuf,
    pid: Option<u32>,
    restarts: u32,
    next_start: Instant,
}

impl Supervised {
    fn spawn(&mut self, program: &Path, marker_value: &str) -> Result<(), LabError> {
        let fds =
            dataplane::netns::NsFds::open(&dataplane::netns::path(&self.netns), Some(&self.uts))
                .map_err(dp)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(crate::io("opening", &self.log))?;
        let log_err = log.try_clone().map_err(crate::io("opening", &self.log))?;
        let program = self.program.as_deref().unwrap_or(program);
        let mut cmd = Command::new(program);
        cmd.args(&self.args)
            .env(MARKER_ENV, marker_value)
            .env(
                "KUBELAB_LOG",
                std::env::var("KUBELAB_LOG").unwrap_or("info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        fds.apply_to(&mut cmd);
        let child = cmd.spawn().map_err(crate::io("starting", program))?;
        tracing::info!(role = %self.role, pid = child.id(), "started");
        self.pid = Some(child.id());
        // Reaped by the supervisor's waitpid(-1) loop, not through `Child`.
        std::mem::forget(child);
        Ok(())
    }
}

/// Reaps every exited child; returns their pids.
fn reap() -> Vec<u32> {
    let mut pids = Vec::new();
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid out-pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            break;
        }
        pids.push(pid as u32);
    }
    pids
}

/// The lab, until `shutdown` completes.
pub async fn run(
    options: NetRunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), LabError> {
    let started = Instant::now();
    crate::validate_name(&options.name)?;
    let paths = LabPaths::new(options.state_dir.clone());
    let mut config = options.config.clone();
    config.routing = options.routing.or(config.routing);
    let topology = topology::plan(
        &options.name,
        options.workers as usize,
        options.encapsulation,
        &config,
    )
    .map_err(|e| LabError::Network(e.to_string()))?;
    if topology.routing == Routing::Bgp && !bird_installed() {
        return Err(LabError::Network(BIRD_MISSING.into()));
    }
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
    let _ = std::fs::remove_file(options.state_dir.join("steps"));
    let record = LabRecord::of(&topology, &options.state_dir);
    let record_text = serde_json::to_string_pretty(&record).unwrap_or_default();
    std::fs::write(topology_file(&options.state_dir), record_text)
        .map_err(crate::io("writing", &topology_file(&options.state_dir)))?;
    let bgp_path = bgp_file(&options.state_dir);
    match BgpRecord::of(&topology, &options.state_dir) {
        Some(bgp) => std::fs::write(
            &bgp_path,
            serde_json::to_string_pretty(&bgp).unwrap_or_default(),
        )
        .map_err(crate::io("writing", &bgp_path))?,
        None => {
            let _ = std::fs::remove_file(&bgp_path);
        }
    }

    let result = run_lab(&options, &paths, &topology, started, shutdown).await;
    tracing::info!(lab = %options.name, "taking the lab down");
    let killed = kill_marked(&options.name, &options.state_dir);
    let _ = reap();
    let removed = teardown(&options.name, &options.state_dir);
    tracing::info!(lab = %options.name, killed, removed = removed.len(), "lab removed");
    result
}

async fn run_lab(
    options: &NetRunOptions,
    paths: &LabPaths,
    t: &Topology,
    started: Instant,
    shutdown: impl Future<Output = ()>,
) -> Result<(), LabError> {
    let state_dir = &options.state_dir;
    let marker_value = marker(&options.name, state_dir);
    build_network(t, state_dir).await?;
    step(
        state_dir,
        started,
        &format!("{} node namespaces and their underlay", t.nodes.len()),
    );

    let cp = t.control_plane();
    let server_kubeconfig = state_dir.join("server.kubeconfig");
    let _ = std::fs::remove_file(&server_kubeconfig);
    let logs = state_dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(crate::io("creating", &logs))?;
    let service_cidr = options
        .config
        .service_cidr
        .clone()
        .unwrap_or_else(|| "10.96.0.0/12".into());
    let cluster_dns = crate::addons::cluster_dns_ip(&service_cidr).ok_or_else(|| {
        LabError::Network(format!(
            "serviceCidr {service_cidr:?} is not an IPv4 range with room for the DNS address"
        ))
    })?;
    let mut children: Vec<Supervised> = Vec::new();
    children.push(Supervised {
        role: "server".into(),
        program: None,
        args: vec![
            "server".into(),
            "--data-dir".into(),
            paths.data().display().to_string(),
            "--listen".into(),
            format!("0.0.0.0:{API_PORT}"),
            "--advertise-address".into(),
            cp.ip.to_string(),
            "--service-cidr".into(),
            service_cidr.clone(),
            "--write-kubeconfig".into(),
            server_kubeconfig.display().to_string(),
        ],
        netns: cp.netns.clone(),
        uts: topology::uts_file(state_dir, &cp.name),
        log: logs.join("server.log"),
        pid: None,
        restarts: 0,
        next_start: Instant::now(),
    });
    children[0].spawn(&options.program, &marker_value)?;

    // The forwarder: 127.0.0.1 on the host → the API server inside kube-0.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(crate::io("listening on", Path::new("127.0.0.1")))?;
    let forward_port = listener
        .local_addr()
        .map_err(crate::io("listening on", Path::new("127.0.0.1")))?
        .port();
    let target = SocketAddr::from((cp.ip, API_PORT));
    let forwarder = tokio::spawn(forward(listener, dataplane::netns::path(&cp.netns), target));

    // Wait for the server's kubeconfig, then derive the agents' and the host's.
    let server_text = loop {
        if let Ok(text) = std::fs::read_to_string(&server_kubeconfig) {
            break text;
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err(LabError::Network(
                "the API server did not start; see logs/server.log".into(),
            ));
        }
        for pid in reap() {
            if children[0].pid == Some(pid) {
                return Err(LabError::Network(
                    "the API server exited during start-up; see logs/server.log".into(),
                ));
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let context = context_name(&options.name);
    let server_doc = kubeconfig::parse(&server_text, &server_kubeconfig)?;
    let agent_doc = retarget(
        &server_doc,
        &format!("https://{}:{API_PORT}", cp.ip),
        "kubelab",
    );
    kubeconfig::write_private(
        &agent_kubeconfig(state_dir),
        &kubeconfig::render(&agent_doc)?,
    )?;
    let host_doc = retarget(
        &server_doc,
        &format!("https://127.0.0.1:{forward_port}"),
        &context,
    );
    let host_text = kubeconfig::render(&host_doc)?;
    step(state_dir, started, "API server listening in kube-0");

    let client = crate::client_from_kubeconfig(&host_text).await?;
    ensure_pool(&client, t, &options.config).await?;
    step(
        state_dir,
        started,
        &format!("IP pool with {} encapsulation", t.encapsulation.as_str()),
    );

    for n in &t.nodes {
        let dir = node_state_dir(state_dir, &n.name);
        std::fs::create_dir_all(&dir).map_err(crate::io("creating", &dir))?;
        let mut args = vec![
            "agent".to_string(),
            "--node".into(),
            n.name.clone(),
            "--node-ip".into(),
            n.cidr(),
            "--gateway".into(),
            n.gateway.to_string(),
            "--netns".into(),
            n.netns.clone(),
            "--pod-netns-prefix".into(),
            topology::pod_netns_prefix(&options.name),
            "--kubeconfig".into(),
            agent_kubeconfig(state_dir).display().to_string(),
            "--state-dir".into(),
            dir.display().to_string(),
            "--service-cidr".into(),
            service_cidr.clone(),
            "--cluster-dns".into(),
            cluster_dns.to_string(),
        ];
        if n.control_plane {
            args.push("--control-plane".into());
        }
        if t.routing == Routing::Bgp {
            args.extend([
                "--routing".into(),
                "bgp".into(),
                "--bgp-as".into(),
                t.as_number.to_string(),
            ]);
            if let Some(peer) = &t.peer_router {
                args.extend([
                    "--bgp-peer".into(),
                    format!("{}:{}", peer.ip, peer.as_number),
                ]);
            }
        }
        let mut child = Supervised {
            role: format!("agent {}", n.name),
            program: None,
            args,
            netns: n.netns.clone(),
            uts: topology::uts_file(state_dir, &n.name),
            log: logs.join(format!("agent-{}.log", n.name)),
            pid: None,
            restarts: 0,
            next_start: Instant::now(),
        };
        child.spawn(&options.program, &marker_value)?;
        children.push(child);
    }
    if let Some(peer) = &t.peer_router {
        children.push(peer_router_bird(options, t, peer)?);
        let last = children.len() - 1;
        children[last].spawn(&options.program, &marker_value)?;
        step(
            state_dir,
            started,
            &format!(
                "external BGP router {} (AS {}) started",
                peer.ip, peer.as_number
            ),
        );
    }
    write_pids(state_dir, &children);
    step(state_dir, started, "agents started");
    let nodeports = tokio::spawn(crate::nodeports::run(
        client.clone(),
        dataplane::netns::path(&cp.netns),
        cp.ip,
        state_dir.to_path_buf(),
    ));
    let addons = {
        let client = client.clone();
        let objects = crate::addons::cluster_dns(cluster_dns);
        tokio::spawn(async move { crate::addons::ensure(&client, objects).await })
    };
    // Last: `up` reads the kubeconfig as "the API answers"; it then waits for Ready nodes.
    kubeconfig::write_private(&paths.kubeconfig(), &host_text)?;

    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {}
        }
        let exited = reap();
        let mut changed = false;
        for child in children.iter_mut() {
            if let Some(pid) = child.pid
                && (exited.contains(&pid) || !crate::process::is_alive(pid))
            {
                tracing::warn!(role = %child.role, pid, "exited; restarting");
                child.pid = None;
                child.restarts += 1;
                // Like systemd's Restart=always with a short, growing delay.
                let delay = Duration::from_millis(100 * u64::from(child.restarts.min(50)));
                child.next_start = Instant::now() + delay;
            }
            if child.pid.is_none() && Instant::now() >= child.next_start {
                if let Err(e) = child.spawn(&options.program, &marker_value) {
                    tracing::warn!(role = %child.role, error = %e, "cannot restart");
                    child.next_start = Instant::now() + Duration::from_secs(1);
                }
                changed = true;
            }
        }
        if changed {
            write_pids(state_dir, &children);
        }
    }
    forwarder.abort();
    nodeports.abort();
    addons.abort();
    // Agents and the server first, gently: an agent leaves its pods running on SIGTERM.
    for child in &children {
        if let Some(pid) = child.pid {
            kill(pid, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline
        && children
            .iter()
            .any(|c| c.pid.is_some_and(crate::process::is_alive))
    {
        let _ = reap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// BIRD of the external BGP router, peering with every node of the plan.
fn peer_router_bird(
    options: &NetRunOptions,
    t: &Topology,
    peer: &topology::PeerRouterPlan,
) -> Result<Supervised, LabError> {
    let dir = peer_router_dir(&options.state_dir);
    std::fs::create_dir_all(&dir).map_err(crate::io("creating", &dir))?;
    let pool: routing::Destination = options
        .config
        .pool_cidr
        .as_deref()
        .unwrap_or("192.168.0.0/16")
        .parse()
        .map_err(|_| LabError::Network("poolCidr is not an IPv4 CIDR".into()))?;
    let nodes: Vec<(Ipv4Addr, u32)> = t.nodes.iter().map(|n| (n.ip, t.as_number)).collect();
    let config = bgp::peer_router_config(peer.ip, peer.as_number, &nodes, &[pool]);
    let config_file = dir.join("bird.conf");
    std::fs::write(&config_file, config).map_err(crate::io("writing", &config_file))?;
    let path = |name: &str| dir.join(name).display().to_string();
    Ok(Supervised {
        role: format!("bird {}", topology::PEER_ROUTER_NAME),
        program: Some(PathBuf::from("bird")),
        args: vec![
            "-f".into(),
            "-c".into(),
            path("bird.conf"),
            "-s".into(),
            path("bird.ctl"),
            "-P".into(),
            path("bird.pid"),
        ],
        netns: peer.netns.clone(),
        uts: topology::uts_file(&options.state_dir, topology::PEER_ROUTER_NAME),
        log: dir.join("bird.log"),
        pid: None,
        restarts: 0,
        next_start: Instant::now(),
    })
}

/// `pids.json`: which process is which, for `kubelab status` and tests.
fn write_pids(state_dir: &Path, children: &[Supervised]) {
    let map: HashMap<&str, Option<u32>> =
        children.iter().map(|c| (c.role.as_str(), c.pid)).collect();
    let _ = std::fs::write(
        state_dir.join("pids.json"),
        serde_json::to_string_pretty(&map).unwrap_or_default(),
    );
}

/// A kubeconfig like `doc` whose cluster, user and context are `name` and whose server is `url`.
fn retarget(doc: &Value, url: &str, name: &str) -> Value {
    let first = |key: &str, inner: &str| doc.pointer(&format!("/{key}/0/{inner}")).cloned();
    let mut cluster = first("clusters", "cluster").unwrap_or(json!({}));
    cluster["server"] = json!(url);
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": first("users", "user").unwrap_or(json!({}))}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    })
}

/// Accepts on the host's 127.0.0.1 and connects each client to `target` from inside `netns`.
pub(crate) async fn forward(listener: tokio::net::TcpListener, netns: PathBuf, target: SocketAddr) {
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let netns = netns.clone();
        tokio::spawn(async move {
            let connected = tokio::task::spawn_blocking(move || {
                dataplane::netns::in_netns(&netns, move || {
                    std::net::TcpStream::connect_timeout(&target, Duration::from_secs(5))
                })
            })
            .await;
            let stream = match connected {
                Ok(Ok(Ok(s))) => s,
                _ => return,
            };
            let _ = stream.set_nonblocking(true);
            let _ = stream.set_nodelay(true);
            let _ = client.set_nodelay(true);
            if let Ok(mut upstream) = tokio::net::TcpStream::from_std(stream) {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
        });
    }
}

/// Calico's default pool with the lab's encapsulation (calico-node creates it from
/// `CALICO_IPV4POOL_*` on first start).
async fn ensure_pool(
    client: &kube::Client,
    t: &Topology,
    config: &LabConfig,
) -> Result<(), LabError> {
    let store = agent::ApiDatastore::new(client.clone(), tokio::runtime::Handle::current());
    let ipam = std::sync::Arc::new(ipam::Ipam::new(store, ipam::IpamConfig::default()));
    let mut spec = ipam::IpPoolSpec::default_ipv4();
    if let Some(cidr) = &config.pool_cidr {
        spec.cidr = cidr
            .parse()
            .map_err(|e| LabError::Network(format!("poolCidr {cidr:?}: {e}")))?;
    }
    if let Some(size) = config.block_size {
        spec.block_size = Some(size);
    }
    let mode = |m: &str| match m {
        "Always" => ipam::model::EncapsulationMode::Always,
        "CrossSubnet" => ipam::model::EncapsulationMode::CrossSubnet,
        _ => ipam::model::EncapsulationMode::Never,
    };
    let (ipip, vxlan) = t.encapsulation.pool_modes();
    spec.ipip_mode = Some(mode(ipip));
    spec.vxlan_mode = Some(mode(vxlan));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ipam = ipam.clone();
        let spec = spec.clone();
        let result =
            tokio::task::spawn_blocking(move || ipam.ensure_pool(crate::DEFAULT_POOL, &spec))
                .await
                .map_err(|e| LabError::Network(e.to_string()))?;
        match result {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(LabError::Network(format!("creating the IP pool: {e}")));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
