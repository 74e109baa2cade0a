//! BIRD in a node of a `--routing bgp` lab: what calico-node's confd and its supervised BIRD do.
//!
//! The agent renders the node's `bird.conf` from the API server's Nodes, IPAMBlocks and IPPools
//! ([`bgp::bird_config`]), writes it into `<state dir>/bird/`, runs `bird -f` in the node's
//! namespace as its own child (it dies with the agent) and runs `birdc configure` whenever the
//! rendered text changes (a node joins or leaves, this node claims or frees a block). BIRD then
//! writes the routes between nodes (`proto bird`); the agent keeps only the workloads' routes.
//!
//! `<state dir>/bird/bird.ctl` is BIRD's control socket: `kubelab ssh NODE -- birdc` finds it
//! at `/run/bird/bird.ctl` because ssh mounts this directory there in its own mount namespace.

use crate::netnode::{AbortOnDrop, AgentConfig, calico, reflect};
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::{reflector, watcher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// What `kubelab agent --routing bgp` is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BgpSettings {
    /// This node's AS number (Calico's default 64512).
    pub as_number: u32,
    /// Peers of every node besides the mesh (Calico's global BGPPeers).
    pub global_peers: Vec<bgp::GlobalPeer>,
}

/// BIRD's directory in a node's state directory: configuration, control socket, pid file, log.
pub fn bird_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("bird")
}

/// BIRD's control socket of the node whose state directory is `state_dir`.
pub fn control_socket(state_dir: &Path) -> PathBuf {
    bird_dir(state_dir).join("bird.ctl")
}

/// Runs BIRD for this node until the future is dropped (which kills BIRD).
pub(crate) async fn run(client: Client, config: Arc<AgentConfig>, settings: BgpSettings) {
    let dir = bird_dir(&config.state_dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        tracing::error!(dir = %dir.display(), error = %e, "cannot create BIRD's directory");
        return;
    }
    let changed = Arc::new(Notify::new());
    let all = watcher::Config::default();
    let watch = |r: ApiResource| reflect(client.clone(), r, all.clone(), changed.clone());
    let (nodes, w1) = watch(ApiResource::erase::<Node>(&()));
    let (blocks, w2) = watch(calico("IPAMBlock", "ipamblocks"));
    let (pools, w3) = watch(calico("IPPool", "ippools"));
    let _watchers = AbortOnDrop(vec![w1, w2, w3]);
    for store in [&nodes, &blocks, &pools] {
        let _ = store.wait_until_ready().await;
    }
    let mut bird = Bird::new(&config.state_dir);
    let mut applied: Option<String> = None;
    loop {
        let values = |s: &reflector::Store<DynamicObject>| -> Vec<serde_json::Value> {
            s.state()
                .iter()
                .filter_map(|o| serde_json::to_value(o.as_ref()).ok())
                .collect()
        };
        let pool_values = values(&pools);
        let mut cluster =
            routing::cluster_from_objects(&values(&nodes), &values(&blocks), &pool_values, &[]);
        // This node speaks BGP from the start, even before its own annotation comes back.
        if let Some(me) = cluster.nodes.iter_mut().find(|n| n.name == config.node) {
            me.bgp_as = Some(settings.as_number);
        }
        let rendered = bgp::bird_config(
            &cluster,
            &config.node,
            &bgp::pool_cidrs(&pool_values),
            &settings.global_peers,
        );
        match rendered {
            Ok(text) if applied.as_ref() != Some(&text) || !bird.is_running() => {
                match bird.apply(&text).await {
                    Ok(()) => applied = Some(text),
                    Err(e) => {
                        applied = None;
                        tracing::warn!(error = %e, "BIRD configuration not applied");
                    }
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "no BIRD configuration yet"),
        }
        tokio::select! {
            _ = changed.notified() => {
                // Let a burst of events settle into one reconfiguration.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // Notice a BIRD that died, and start it again.
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// The node's BIRD process and its files.
struct Bird {
    config_file: PathBuf,
    socket: PathBuf,
    pid_file: PathBuf,
    log_file: PathBuf,
    child: Option<tokio::process::Child>,
}

impl Bird {
    fn new(state_dir: &Path) -> Bird {
        let dir = bird_dir(state_dir);
        Bird {
            config_file: dir.join("bird.conf"),
            socket: control_socket(state_dir),
            pid_file: dir.join("bird.pid"),
            log_file: dir.join("bird.log"),
            child: None,
        }
    }

    fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => match child.try_wait() {
                Ok(None) => true,
                Ok(Some(status)) => {
                    tracing::warn!(%status, "BIRD exited; starting it again");
                    self.child = None;
                    false
                }
                Err(_) => false,
            },
            None => false,
        }
    }

    /// Writes `text` as the configuration and makes BIRD run it: `birdc configure` when BIRD
    /// runs, otherwise a fresh start.
    async fn apply(&mut self, text: &str) -> Result<(), String> {
        let temporary = self.config_file.with_extension("conf.new");
        std::fs::write(&temporary, text).map_err(|e| format!("writing {temporary:?}: {e}"))?;
        std::fs::rename(&temporary, &self.config_file)
            .map_err(|e| format!("writing {:?}: {e}", self.config_file))?;
        if self.is_running() {
            return self.configure().await;
        }
        self.start().await
    }

    async fn configure(&self) -> Result<(), String> {
        let output = tokio::process::Command::new("birdc")
            .arg("-s")
            .arg(&self.socket)
            .arg("configure")
            .output()
            .await
            .map_err(|e| format!("running birdc: {e}"))?;
        let text = String::from_utf8_lossy(&output.stdout);
        if output.status.success() && text.contains("Reconfigur") {
            tracing::info!("BIRD reconfigured");
            Ok(())
        } else {
            Err(format!("birdc configure: {}", text.trim()))
        }
    }

    async fn start(&mut self) -> Result<(), String> {
        self.stop_leftover().await;
        let _ = std::fs::remove_file(&self.socket);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_file)
            .map_err(|e| format!("opening {:?}: {e}", self.log_file))?;
        let mut command = tokio::process::Command::new("bird");
        command
            .arg("-f")
            .arg("-c")
            .arg(&self.config_file)
            .arg("-s")
            .arg(&self.socket)
            .arg("-P")
            .arg(&self.pid_file)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .kill_on_drop(true);
        // SAFETY: prctl is async-signal-safe; the closure touches nothing else.
        unsafe {
            command.pre_exec(|| {
                // BIRD goes when the agent goes, even on SIGKILL.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0);
                Ok(())
            });
        }
        let child = command
            .spawn()
            .map_err(|e| format!("starting bird: {e} (install BIRD 2: `apt-get install bird2`)"))?;
        tracing::info!(pid = child.id(), "BIRD started");
        self.child = Some(child);
        Ok(())
    }

    /// A BIRD of an earlier agent of this node (its pid file names it) is stopped first: two
    /// cannot share the control socket.
    async fn stop_leftover(&self) {
        let Some(pid) = std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok())
        else {
            return;
        };
        let socket = self.socket.to_string_lossy().into_owned();
        let is_ours = |pid: u32| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                let args: Vec<String> = cmdline
                    .split(|b| *b == 0)
                    .map(|arg| String::from_utf8_lossy(arg).into_owned())
                    .collect();
                args.first().is_some_and(|a| a.ends_with("bird")) && args.contains(&socket)
            })
        };
        if !is_ours(pid) {
            return;
        }
        tracing::info!(pid, "stopping the BIRD of an earlier agent");
        crate::netnode::signal(pid, libc::SIGTERM);
        for _ in 0..100 {
            if !is_ours(pid) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        crate::netnode::signal(pid, libc::SIGKILL);
    }
}
