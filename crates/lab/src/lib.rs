//! The lifecycle of a lab: `up` starts it in the background and waits until every node is
//! Ready, `down` stops it and removes what `up` left behind, and [`run`] is the background
//! process itself (the API server, the controllers and the nodes, in one process).
//!
//! A lab is named (default `kubelab`). Its state lives in `$KUBELAB_STATE_DIR/<name>`, else
//! `${XDG_STATE_HOME:-$HOME/.local/state}/kubelab/<name>`:
//! - `data/`: the API server's store and certificates;
//! - `kubeconfig`: an admin kubeconfig whose cluster, user and context are `kubelab-<name>`;
//! - `pid`, `lab.log`: the background process and its log;
//! - `kubeconfig-target`: which user kubeconfig `up` merged the context into, so `down` cleans
//!   the same file even if `$KUBECONFIG` changed in between.
//!
//! For now every node is hollow ([`agent::hollow`]); the namespace-based lab comes later.
//!
//! **Invariant:** `down` signals only a process whose command line is this lab's `lab-run`
//! ([`process::running_lab`]), and edits only the kubeconfig entries named `kubelab-<name>`.

pub mod addons;
pub mod bgpstatus;
pub mod inspect;
pub mod kubeconfig;
pub mod netlab;
pub mod nodeports;
pub mod process;
pub mod status;
pub mod topology;
pub mod trace;

use serde_json::Value;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The lab name when none is given.
pub const DEFAULT_NAME: &str = "kubelab";
/// Calico's default pool, which every lab starts with.
pub const DEFAULT_POOL: &str = "default-ipv4-ippool";

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(
        "invalid lab name {0:?}: use 1 to 40 lower-case letters, digits and '-', starting with a letter or digit"
    )]
    InvalidName(String),
    #[error("cannot tell where lab state lives: set KUBELAB_STATE_DIR, XDG_STATE_HOME or HOME")]
    NoStateDir,
    #[error("lab {name:?} is already running (pid {pid}); run `kubelab down --name {name}` first")]
    AlreadyRunning { name: String, pid: u32 },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Kubeconfig(#[from] kubeconfig::KubeconfigError),
    #[error("lab {name:?} exited during start-up ({status}); see {log}:\n{tail}")]
    ExitedEarly {
        name: String,
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("lab {name:?} was not ready after {waited:?} ({progress}); see {log}:\n{tail}")]
    Timeout {
        name: String,
        waited: Duration,
        progress: String,
        log: PathBuf,
        tail: String,
    },
    #[error("API server: {0}")]
    Server(#[from] apiserver::ServerError),
    #[error("client of the lab's API server: {0}")]
    Client(String),
    #[error("lab kubeconfig: {0}")]
    LabKubeconfig(String),
    #[error("lab network: {0}")]
    Network(String),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LabError + use<> {
    let path = path.to_path_buf();
    move |source| LabError::Io { what, path, source }
}

/// Lab names end up in paths, kubeconfig entries and (later) kernel object names: keep them
/// short DNS labels.
pub fn validate_name(name: &str) -> Result<(), LabError> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(LabError::InvalidName(name.to_string()))
    }
}

/// The kubeconfig cluster, user and context name of a lab.
pub fn context_name(name: &str) -> String {
    format!("kubelab-{name}")
}

/// Where labs live and which kubeconfig they merge into: the process environment, made
/// explicit so tests need not change it.
#[derive(Clone, Debug)]
pub struct LabEnv {
    /// The directory holding one directory per lab.
    pub state_root: PathBuf,
    /// The user's kubeconfig (`$KUBECONFIG`'s first path, else `~/.kube/config`).
    pub user_kubeconfig: PathBuf,
}

impl LabEnv {
    pub fn from_process_env() -> Result<LabEnv, LabError> {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let home = var("HOME");
        let state_root = match (var("KUBELAB_STATE_DIR"), var("XDG_STATE_HOME"), &home) {
            (Some(dir), _, _) => dir,
            (None, Some(xdg), _) => xdg.join("kubelab"),
            (None, None, Some(home)) => home.join(".local/state/kubelab"),
            (None, None, None) => return Err(LabError::NoStateDir),
        };
        let kubeconfig_env = std::env::var("KUBECONFIG").ok();
        let user_kubeconfig = kubeconfig::default_path(
            kubeconfig_env.as_deref(),
            home.as_deref().unwrap_or(Path::new("/")),
        );
        Ok(LabEnv {
            state_root,
            user_kubeconfig,
        })
    }

    pub fn state_dir(&self, name: &str) -> PathBuf {
        self.state_root.join(name)
    }
}

/// Files in a lab's state directory.
#[derive(Clone, Debug)]
pub struct LabPaths {
    pub dir: PathBuf,
}

impl LabPaths {
    pub fn new(dir: PathBuf) -> LabPaths {
        LabPaths { dir }
    }
    pub fn data(&self) -> PathBuf {
        self.dir.join("data")
    }
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }
    pub fn pid(&self) -> PathBuf {
        self.dir.join("pid")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("lab.log")
    }
    pub fn kubeconfig_target(&self) -> PathBuf {
        self.dir.join("kubeconfig-target")
    }
}

/// The last lines of a log, for error messages.
fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ----- up -------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct UpOptions {
    pub name: String,
    /// Worker nodes besides the control plane `kube-0`.
    pub workers: u32,
    /// Write a standalone kubeconfig here instead of merging into the user's.
    pub kubeconfig: Option<PathBuf>,
    /// The `kubelab` binary the background process runs (normally the current executable).
    pub program: PathBuf,
    /// How long to wait for every node to be Ready.
    pub timeout: Duration,
    /// Hollow nodes (in one unprivileged process) instead of namespaces.
    pub hollow: bool,
    /// `--encapsulation` (real labs).
    pub encapsulation: Option<topology::Encapsulation>,
    /// `--routing` (real labs): who programs routes between nodes.
    pub routing: Option<topology::Routing>,
    /// `--config FILE` (real labs), already checked by the caller.
    pub config: Option<PathBuf>,
}

/// What `up` did, for the CLI to print.
#[derive(Clone, Debug)]
pub struct UpReport {
    pub name: String,
    pub context: String,
    pub server: String,
    pub nodes: Vec<String>,
    /// The kubeconfig that now holds the context.
    pub kubeconfig: PathBuf,
    /// Whether it was merged into the user's kubeconfig (else written standalone).
    pub merged: bool,
    pub pid: u32,
    pub state_dir: PathBuf,
    pub elapsed: Duration,
}

/// Starts lab `name` in the background and waits until its API answers and every node is
/// Ready; then merges its context into the user's kubeconfig (or writes `--kubeconfig`).
/// On a timeout the background process is stopped; its state and log stay for inspection.
pub async fn up(env: &LabEnv, options: &UpOptions) -> Result<UpReport, LabError> {
    let started = Instant::now();
    validate_name(&options.name)?;
    let paths = LabPaths::new(env.state_dir(&options.name));
    if let Some(pid) = process::running_lab(&paths.pid(), &options.name, &paths.dir) {
        return Err(LabError::AlreadyRunning {
            name: options.name.clone(),
            pid,
        });
    }
    create_private_dir(&paths.dir)?;
    // A left-over kubeconfig would be taken for the new server's.
    for stale in [paths.kubeconfig(), paths.pid()] {
        match std::fs::remove_file(&stale) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("removing", &stale)(e)),
        }
    }
    let mut child = spawn_background(options, &paths)?;
    let pid = child.id();
    std::fs::write(paths.pid(), format!("{pid}\n")).map_err(io("writing", &paths.pid()))?;

    let deadline = started + options.timeout;
    let expected: Vec<String> = match &options.config {
        Some(path) if !options.hollow => {
            let text = std::fs::read_to_string(path).map_err(io("reading", path))?;
            let config =
                topology::parse_config(&text).map_err(|e| LabError::Network(e.to_string()))?;
            topology::plan(
                &options.name,
                options.workers as usize,
                options.encapsulation,
                &config,
            )
            .map_err(|e| LabError::Network(e.to_string()))?
            .nodes
            .into_iter()
            .map(|n| n.name)
            .collect()
        }
        _ => (0..=options.workers).map(|i| format!("kube-{i}")).collect(),
    };
    let waited = wait_ready(&mut child, options, &paths, &expected, deadline).await;
    let (server, lab_config) = match waited {
        Ok(ok) => ok,
        Err(e) => {
            if matches!(e, LabError::Timeout { .. }) {
                let _ = process::stop(pid, &options.name, &paths.dir, Duration::from_secs(5));
            }
            return Err(e);
        }
    };

    let context = context_name(&options.name);
    let (kubeconfig_path, merged) = match &options.kubeconfig {
        Some(path) => {
            let text = kubeconfig::render(&lab_config)?;
            kubeconfig::write_private(path, &text)?;
            (path.clone(), false)
        }
        None => {
            let path = env.user_kubeconfig.clone();
            // Recorded first, so `down` finds the file even if the merge is interrupted.
            std::fs::write(paths.kubeconfig_target(), path.to_string_lossy().as_bytes())
                .map_err(io("writing", &paths.kubeconfig_target()))?;
            let existing = kubeconfig::read(&path)?;
            let merged = kubeconfig::merge(existing, &lab_config, &context)
                .map_err(LabError::LabKubeconfig)?;
            kubeconfig::write_private(&path, &kubeconfig::render(&merged)?)?;
            (path, true)
        }
    };
    Ok(UpReport {
        name: options.name.clone(),
        context,
        server,
        nodes: expected,
        kubeconfig: kubeconfig_path,
        merged,
        pid,
        state_dir: paths.dir.clone(),
        elapsed: started.elapsed(),
    })
}

fn create_private_dir(dir: &Path) -> Result<(), LabError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io("creating", dir))
}

/// `kubelab lab-run ...` in its own session (a closing terminal does not take it down), with
/// no stdin and its output appended to `lab.log`.
fn spawn_background(
    options: &UpOptions,
    paths: &LabPaths,
) -> Result<std::process::Child, LabError> {
    use std::os::unix::process::CommandExt;
    let log_path = paths.log();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io("opening", &log_path))?;
    let log_err = log.try_clone().map_err(io("opening", &log_path))?;
    let mut command = Command::new(&options.program);
    command
        .arg(process::RUN_SUBCOMMAND)
        .arg("--name")
        .arg(&options.name)
        .arg("--workers")
        .arg(options.workers.to_string())
        .arg("--state-dir")
        .arg(&paths.dir);
    if options.hollow {
        command.arg("--hollow");
    }
    if let Some(e) = options.encapsulation {
        command.arg("--encapsulation").arg(e.as_str());
    }
    if let Some(r) = options.routing {
        command.arg("--routing").arg(r.as_str());
    }
    if let Some(c) = &options.config {
        command.arg("--config").arg(c);
    }
    command
        .env(
            netlab::MARKER_ENV,
            netlab::marker(&options.name, &paths.dir),
        )
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    // SAFETY: setsid(2) is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn().map_err(io("starting", &options.program))
}

/// Waits for the lab's kubeconfig, then for every expected node to be Ready. Returns the API
/// URL and the lab's kubeconfig document.
async fn wait_ready(
    child: &mut std::process::Child,
    options: &UpOptions,
    paths: &LabPaths,
    expected: &[String],
    deadline: Instant,
) -> Result<(String, Value), LabError> {
    let mut progress = "waiting for the API server".to_string();
    let mut client: Option<kube::Client> = None;
    let mut lab_config = Value::Null;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(LabError::ExitedEarly {
                name: options.name.clone(),
                status: status.to_string(),
                log: paths.log(),
                tail: log_tail(&paths.log(), 20),
            });
        }
        if Instant::now() > deadline {
            return Err(LabError::Timeout {
                name: options.name.clone(),
                waited: options.timeout,
                progress,
                log: paths.log(),
                tail: log_tail(&paths.log(), 20),
            });
        }
        if client.is_none()
            && let Ok(text) = std::fs::read_to_string(paths.kubeconfig())
        {
            lab_config = kubeconfig::parse(&text, &paths.kubeconfig())?;
            client = Some(client_from_kubeconfig(&text).await?);
            progress = "waiting for the nodes".into();
        }
        if let Some(c) = &client {
            match ready_nodes(c).await {
                Ok(ready) => {
                    let missing: Vec<&String> =
                        expected.iter().filter(|n| !ready.contains(n)).collect();
                    if missing.is_empty() {
                        let server = lab_config
                            .pointer("/clusters/0/cluster/server")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string();
                        return Ok((server, lab_config));
                    }
                    progress = format!(
                        "{} of {} nodes Ready; waiting for {}",
                        expected.len() - missing.len(),
                        expected.len(),
                        missing
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                Err(e) => progress = format!("API not answering yet: {e}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A kube client for a kubeconfig's current context.
pub async fn client_from_kubeconfig(text: &str) -> Result<kube::Client, LabError> {
    let kc =
        kube::config::Kubeconfig::from_yaml(text).map_err(|e| LabError::Client(e.to_string()))?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| LabError::Client(e.to_string()))?;
    kube::Client::try_from(config).map_err(|e| LabError::Client(e.to_string()))
}

/// Names of the nodes whose Ready condition is True and that no longer carry the
/// `node.kubernetes.io/not-ready` or `unreachable` taint: the node lifecycle controller lifts
/// it just after the kubelet reports Ready, and until then the scheduler would turn pods away
/// (with a FailedScheduling event and a 1 s backoff) from a lab that `up` called ready.
async fn ready_nodes(client: &kube::Client) -> Result<Vec<String>, kube::Error> {
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
    let list = nodes.list(&Default::default()).await?;
    Ok(list
        .items
        .into_iter()
        .filter(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .filter(|n| {
            !n.spec
                .as_ref()
                .and_then(|s| s.taints.as_ref())
                .is_some_and(|ts| {
                    ts.iter().any(|t| {
                        t.key == controllers::nodelifecycle::TAINT_NOT_READY
                            || t.key == controllers::nodelifecycle::TAINT_UNREACHABLE
                    })
                })
        })
        .filter_map(|n| n.metadata.name)
        .collect())
}

// ----- down -----------------------------------------------------------------------------------

/// What `down` found and removed.
#[derive(Clone, Debug)]
pub struct DownReport {
    pub name: String,
    pub stopped: process::Stopped,
    /// Processes of the lab still alive after its `lab-run` stopped (killed now).
    pub leftover_processes: usize,
    /// Namespaces and namespace files removed because `lab-run` had not.
    pub removed_network: Vec<String>,
    /// The kubeconfig the lab's entries were removed from, if any were there.
    pub kubeconfig_cleaned: Option<PathBuf>,
    pub state_removed: bool,
}

impl DownReport {
    /// Nothing of the lab existed.
    pub fn found_nothing(&self) -> bool {
        self.stopped == process::Stopped::NotRunning
            && self.leftover_processes == 0
            && self.removed_network.is_empty()
            && self.kubeconfig_cleaned.is_none()
            && !self.state_removed
    }
}

/// Stops lab `name` (SIGTERM, then SIGKILL after `grace`) if its process runs, removes its
/// kubeconfig entries and its state directory.
pub fn down(env: &LabEnv, name: &str, grace: Duration) -> Result<DownReport, LabError> {
    validate_name(name)?;
    let paths = LabPaths::new(env.state_dir(name));
    let stopped = match process::running_lab(&paths.pid(), name, &paths.dir) {
        Some(pid) => process::stop(pid, name, &paths.dir, grace)
            .map_err(io("stopping the lab process of", &paths.dir))?,
        None => process::Stopped::NotRunning,
    };
    // A lab-run that was killed leaves its processes and namespaces: remove them too.
    let leftover_processes = netlab::kill_marked(name, &paths.dir);
    let removed_network = netlab::teardown(name, &paths.dir);
    let target = std::fs::read_to_string(paths.kubeconfig_target())
        .ok()
        .map(|s| PathBuf::from(s.trim()))
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| env.user_kubeconfig.clone());
    let context = context_name(name);
    let mut kubeconfig_cleaned = None;
    let doc = kubeconfig::read(&target)?;
    if kubeconfig::mentions(&doc, &context) {
        let cleaned = kubeconfig::remove(doc, &context);
        kubeconfig::write_private(&target, &kubeconfig::render(&cleaned)?)?;
        kubeconfig_cleaned = Some(target);
    }
    let state_removed = match std::fs::remove_dir_all(&paths.dir) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(io("removing", &paths.dir)(e)),
    };
    Ok(DownReport {
        name: name.to_string(),
        stopped,
        leftover_processes,
        removed_network,
        kubeconfig_cleaned,
        state_removed,
    })
}

// ----- the background process -----------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub name: String,
    pub workers: u32,
    pub state_dir: PathBuf,
}

/// The lab itself, until `shutdown` completes: the API server on 127.0.0.1 (a free port), the
/// controllers, the default IP pool and `workers + 1` hollow nodes. Writes the kubeconfig last
/// but one thing: `up` reads it as "the API server is listening".
pub async fn run(options: RunOptions, shutdown: impl Future<Output = ()>) -> Result<(), LabError> {
    validate_name(&options.name)?;
    let paths = LabPaths::new(options.state_dir.clone());
    let mut config = apiserver::Config::new(paths.data());
    config.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let server = apiserver::ApiServer::new(config).await?;
    let context = context_name(&options.name);
    let kubeconfig_text = server.kubeconfig(&context);
    tracing::info!(lab = %options.name, address = %server.local_addr(), "serving the Kubernetes API");

    // The controllers and hollow kubelets live in this process: they reach the server
    // through its in-process transport, while kubectl uses HTTPS.
    let client = kube::Client::new(server.local_transport(), "default");
    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let server_task = tokio::spawn(server.run(async move {
        let _ = server_stopped.await;
    }));
    let mut tasks = vec![
        tokio::spawn(controllers::run(
            client.clone(),
            controllers::Config::default(),
        )),
        tokio::spawn(ensure_default_pool(client.clone())),
    ];
    for index in 0..=options.workers {
        tasks.push(tokio::spawn(agent::hollow::run(
            client.clone(),
            agent::hollow::HollowNodeConfig::for_index(index),
        )));
    }
    kubeconfig::write_private(&paths.kubeconfig(), &kubeconfig_text)?;
    tracing::info!(lab = %options.name, nodes = options.workers + 1, "lab running");

    shutdown.await;
    tracing::info!(lab = %options.name, "stopping");
    for t in &tasks {
        t.abort();
    }
    let _ = stop_server.send(());
    let _ = server_task.await;
    Ok(())
}

/// Creates Calico's default pool (192.168.0.0/16, /26 blocks) unless it exists, retrying until
/// the API server takes it.
async fn ensure_default_pool(client: kube::Client) {
    let store = agent::ApiDatastore::new(client, tokio::runtime::Handle::current());
    let ipam = std::sync::Arc::new(ipam::Ipam::new(store, ipam::IpamConfig::default()));
    let mut backoff = Duration::from_millis(100);
    loop {
        let ipam = ipam.clone();
        let result = tokio::task::spawn_blocking(move || {
            ipam.ensure_pool(DEFAULT_POOL, &ipam::IpPoolSpec::default_ipv4())
        })
        .await;
        match result {
            Ok(Ok(created)) => {
                tracing::info!(pool = DEFAULT_POOL, created, "IP pool ready");
                return;
            }
            Ok(Err(e)) => {
                tracing::warn!(pool = DEFAULT_POOL, error = %e, "cannot create the IP pool; retrying")
            }
            Err(e) => {
                tracing::warn!(pool = DEFAULT_POOL, error = %e, "IP pool task failed; retrying")
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["kubelab", "t1", "a-b", "0"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a/b", "a.b", &"x".repeat(41)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        assert_eq!(context_name("t1"), "kubelab-t1");
    }

    #[test]
    fn down_of_an_unknown_lab_finds_nothing_and_keeps_other_entries() {
        let dir = tempfile::tempdir().unwrap();
        let user = dir.path().join("config");
        std::fs::write(
            &user,
            "apiVersion: v1\nkind: Config\ncurrent-context: prod\n",
        )
        .unwrap();
        let env = LabEnv {
            state_root: dir.path().join("state"),
            user_kubeconfig: user.clone(),
        };
        let report = down(&env, "nope", Duration::from_millis(10)).unwrap();
        assert!(report.found_nothing());
        assert!(std::fs::read_to_string(&user).unwrap().contains("prod"));
    }

    #[test]
    fn down_removes_state_and_merged_entries_without_a_process() {
        let dir = tempfile::tempdir().unwrap();
        let env = LabEnv {
            state_root: dir.path().join("state"),
            user_kubeconfig: dir.path().join("config"),
        };
        let paths = LabPaths::new(env.state_dir("t1"));
        std::fs::create_dir_all(paths.data()).unwrap();
        // A pid file naming a process that is not the lab (this test) must not be signalled.
        std::fs::write(paths.pid(), std::process::id().to_string()).unwrap();
        let lab = serde_json::json!({
            "clusters": [{"name": "kubelab-t1", "cluster": {"server": "https://127.0.0.1:1"}}],
            "users": [{"name": "kubelab-t1", "user": {"token": "x"}}],
            "contexts": [{"name": "kubelab-t1", "context": {"cluster": "kubelab-t1", "user": "kubelab-t1"}}],
        });
        let merged = kubeconfig::merge(Value::Null, &lab, "kubelab-t1").unwrap();
        kubeconfig::write_private(&env.user_kubeconfig, &kubeconfig::render(&merged).unwrap())
            .unwrap();
        let report = down(&env, "t1", Duration::from_millis(10)).unwrap();
        assert_eq!(report.stopped, process::Stopped::NotRunning);
        assert!(report.state_removed);
        assert_eq!(
            report.kubeconfig_cleaned.as_deref(),
            Some(env.user_kubeconfig.as_path())
        );
        assert!(!paths.dir.exists());
        let after = kubeconfig::read(&env.user_kubeconfig).unwrap();
        assert!(!kubeconfig::mentions(&after, "kubelab-t1"));
        assert_eq!(after["current-context"], "");
    }
}
