//! A lab of real nodes (`kubelab up`, as root) for the benchmarks: booted in its own HOME,
//! KUBECONFIG and KUBELAB_STATE_DIR (a temporary directory), found again through the marker its
//! processes carry, and brought `down` on drop.

use super::Api;
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A real lab started with `kubelab up` in its own HOME, KUBECONFIG and KUBELAB_STATE_DIR
/// (a temporary directory); brought `down` on drop, so a failed case leaves no namespaces or
/// processes behind.
pub struct Lab {
    pub root: tempfile::TempDir,
    pub name: String,
    down_done: bool,
    /// The `kubelab lab-run` process (from the lab's pid file).
    pub pid: u32,
    pub url: String,
    pub token: String,
    pub ca_pem: Vec<u8>,
    /// What `up` printed about its steps (the lines with timings).
    pub steps: String,
}

impl Lab {
    pub fn state_root(root: &Path) -> PathBuf {
        root.join("state")
    }

    pub fn state_dir(&self) -> PathBuf {
        Lab::state_root(self.root.path()).join(&self.name)
    }

    pub fn kubelab(root: &Path, args: &[&str]) -> Result<Output> {
        Command::new(env!("CARGO_BIN_EXE_kubelab"))
            .args(args)
            .env("HOME", root)
            .env("KUBECONFIG", root.join("kube/config"))
            .env("KUBELAB_STATE_DIR", Lab::state_root(root))
            .env_remove("XDG_STATE_HOME")
            // The default level, stated so a caller's KUBELAB_LOG does not change the figures.
            .env("KUBELAB_LOG", "info")
            .stdin(Stdio::null())
            .output()
            .context("run kubelab")
    }

    /// Boots the lab and returns it with how long `up` took (until every node was Ready).
    pub fn up(dir: Option<&Path>, name: &str, workers: u32) -> Result<(Lab, Duration)> {
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
            steps: String::new(),
        };
        let kubeconfig = lab.root.path().join("kubeconfig");
        let workers = workers.to_string();
        let start = Instant::now();
        let out = Lab::kubelab(
            lab.root.path(),
            &[
                "up",
                "--name",
                name,
                "--workers",
                &workers,
                "--kubeconfig",
                kubeconfig.to_str().context("kubeconfig path")?,
            ],
        )?;
        let took = start.elapsed();
        let state = lab.state_dir();
        lab.pid = lab::process::read_pid(&state.join("pid")).unwrap_or(0);
        if !out.status.success() {
            bail!(
                "kubelab up failed ({}):\n{}\n{}\n--- logs ---\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                lab.logs()
            );
        }
        lab.steps = String::from_utf8_lossy(&out.stdout)
            .lines()
            .take_while(|l| !l.starts_with("Lab "))
            .map(|l| format!("    {}\n", l.trim()))
            .collect();
        lab.url = std::fs::read_to_string(&kubeconfig)?
            .lines()
            .find_map(|l| l.trim().strip_prefix("server: ").map(str::to_string))
            .context("no server: line in the lab's kubeconfig")?;
        lab.token = std::fs::read_to_string(state.join("data/pki/admin.token"))
            .context("the admin token")?
            .trim()
            .to_string();
        lab.ca_pem = std::fs::read(state.join("data/pki/ca.crt")).context("the CA")?;
        Ok((lab, took))
    }

    pub fn client(&self, timeout: Option<Duration>) -> Result<Api> {
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

    /// The lab's processes: the lab-run process of the pid file and every marked process.
    pub fn processes(&self) -> Vec<u32> {
        let mut pids = lab::netlab::marked_processes(&self.name, &self.state_dir());
        if self.pid != 0 && lab::process::is_alive(self.pid) && !pids.contains(&self.pid) {
            pids.push(self.pid);
        }
        pids.sort_unstable();
        pids
    }

    /// The tail of every log of the lab, for failure messages.
    pub fn logs(&self) -> String {
        let dir = self.state_dir();
        let mut files = vec![dir.join("lab.log")];
        if let Ok(entries) = std::fs::read_dir(dir.join("logs")) {
            let mut more: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            more.sort();
            files.extend(more);
        }
        let mut all = String::new();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            all += &format!("== {}\n", f.display());
            for l in &lines[lines.len().saturating_sub(30)..] {
                all += l;
                all.push('\n');
            }
        }
        all
    }

    /// `BENCH_KEEP_LOGS=DIR`: copies the lab's logs to `DIR/<lab name>/` before they go.
    fn keep_logs(&self) {
        let Some(dir) = std::env::var_os("BENCH_KEEP_LOGS") else {
            return;
        };
        let to = PathBuf::from(dir).join(&self.name);
        let _ = std::fs::create_dir_all(&to);
        let from = self.state_dir();
        let _ = std::fs::copy(from.join("lab.log"), to.join("lab.log"));
        if let Ok(entries) = std::fs::read_dir(from.join("logs")) {
            for e in entries.flatten() {
                let _ = std::fs::copy(e.path(), to.join(e.file_name()));
            }
        }
    }

    /// Runs `kubelab down` and returns how long it took.
    pub fn down(&mut self) -> Result<Duration> {
        self.down_done = true;
        self.keep_logs();
        let start = Instant::now();
        let out = Lab::kubelab(self.root.path(), &["down", "--name", &self.name])?;
        let took = start.elapsed();
        if !out.status.success() {
            bail!(
                "kubelab down failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let left = lab::netlab::marked_processes(&self.name, &self.state_dir());
        if !left.is_empty() {
            bail!(
                "processes of lab {} still running after down: {left:?}",
                self.name
            );
        }
        Ok(took)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.down_done {
            return;
        }
        self.keep_logs();
        let _ = Lab::kubelab(self.root.path(), &["down", "--name", &self.name]);
        if self.pid != 0 {
            // Last resort: our own lab-run only (stop checks the pid's command line); lab-run
            // takes its namespaces and processes down when it stops.
            let _ = lab::process::stop(
                self.pid,
                &self.name,
                &self.state_dir(),
                Duration::from_secs(5),
            );
        }
    }
}

impl Lab {
    /// `pids.json` of the lab: role (`server`, `agent kube-1`, …) → pid while it runs.
    pub fn pids(&self) -> BTreeMap<String, Option<u32>> {
        let text = std::fs::read_to_string(self.state_dir().join("pids.json")).unwrap_or_default();
        serde_json::from_str(&text).unwrap_or_default()
    }

    /// What `up` recorded about the lab's namespaces and nodes.
    pub fn record(&self) -> Result<lab::netlab::LabRecord> {
        lab::netlab::LabRecord::read(&self.state_dir())
            .map_err(|e| anyhow::anyhow!("the lab's record: {e}"))
    }

    /// Runs `kubelab ARGS` with this lab's environment and fails unless it succeeds; its stdout.
    pub fn kubelab_ok(&self, args: &[&str]) -> Result<String> {
        let out = Lab::kubelab(self.root.path(), args)?;
        if !out.status.success() {
            bail!(
                "kubelab {}: {}\n{}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}
