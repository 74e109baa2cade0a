//! A lab of real nodes for end-to-end tests (root): `kubelab up` in a temp HOME and state dir,
//! `kubectl` against it, `kubelab ssh`, and `down` on drop.
#![allow(dead_code)]

use super::eventually;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

pub fn kubelab_bin() -> &'static str {
    env!("CARGO_BIN_EXE_kubelab")
}

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc_geteuid() };
    assert_eq!(
        uid, 0,
        "the real-lab tests make network namespaces and must run as root (CI does)"
    );
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

pub fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A real lab in a temp dir; `down` runs on drop if the test did not get there.
pub struct Lab {
    pub dir: tempfile::TempDir,
    pub name: String,
    down_done: bool,
}

impl Lab {
    /// Boots lab `<name>-<pid>`: the test process's id keeps two runs of one test on a
    /// machine (two checkouts, CI beside a developer) from sharing, or tearing down, each
    /// other's namespaces. Tests read the name back from `lab.name`.
    pub fn up(name: &str, extra: &[&str]) -> Lab {
        require_root();
        let mut lab = Lab {
            dir: tempfile::tempdir().expect("temp dir"),
            name: format!("{name}-{}", std::process::id()),
            down_done: false,
        };
        let name = lab.name.clone();
        let mut args = vec!["up", "--name", name.as_str()];
        args.extend_from_slice(extra);
        let out = lab.kubelab(&args);
        if !out.status.success() {
            let log = lab.logs();
            lab.down();
            panic!(
                "kubelab up failed: {}\n{}\n--- logs ---\n{log}",
                text(&out),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        lab
    }

    pub fn home(&self) -> &Path {
        self.dir.path()
    }
    pub fn state_dir(&self) -> PathBuf {
        self.home().join("state").join(&self.name)
    }

    pub fn env(&self, c: &mut Command) {
        c.env("HOME", self.home())
            .env("KUBECONFIG", self.home().join("kube/config"))
            .env("KUBELAB_STATE_DIR", self.home().join("state"))
            .env_remove("XDG_STATE_HOME")
            .env("KUBECACHEDIR", self.home().join("kubecache"))
            .env("KUBELAB_LOG", "info")
            .stdin(Stdio::null());
    }

    pub fn kubelab(&self, args: &[&str]) -> Output {
        let mut c = Command::new(kubelab_bin());
        c.args(args);
        self.env(&mut c);
        c.output().expect("run kubelab")
    }

    /// Every log of the lab, for failure messages.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        let dir = self.state_dir();
        let mut files = vec![dir.join("lab.log")];
        if let Ok(entries) = std::fs::read_dir(dir.join("logs")) {
            files.extend(entries.flatten().map(|e| e.path()));
        }
        for f in files {
            let t = std::fs::read_to_string(&f).unwrap_or_default();
            let tail: Vec<&str> = t.lines().rev().take(40).collect();
            all += &format!("== {}\n", f.display());
            for l in tail.into_iter().rev() {
                all += l;
                all.push('\n');
            }
        }
        all
    }

    pub fn ssh(&self, node: &str, cmd: &[&str]) -> Output {
        let mut args = vec!["ssh", "--name", &self.name, node, "--"];
        args.extend_from_slice(cmd);
        self.kubelab(&args)
    }

    pub fn ssh_ok(&self, node: &str, cmd: &[&str]) -> String {
        let out = self.ssh(node, cmd);
        assert!(
            out.status.success(),
            "kubelab ssh {node} -- {cmd:?}: {}\n{}",
            text(&out),
            String::from_utf8_lossy(&out.stderr)
        );
        text(&out)
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        let mut c = Command::new("kubectl");
        c.args(["--context", &format!("kubelab-{}", self.name)]);
        c.args(args);
        self.env(&mut c);
        c.output().expect("run kubectl")
    }

    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}\n{}",
            text(&out),
            String::from_utf8_lossy(&out.stderr)
        );
        text(&out)
    }

    pub fn apply(&self, yaml: &str) {
        let mut c = Command::new("kubectl");
        c.args([
            "--context",
            &format!("kubelab-{}", self.name),
            "apply",
            "-f",
            "-",
        ]);
        self.env(&mut c);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("kubectl apply");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(yaml.as_bytes())
            .expect("write manifest");
        let out = child.wait_with_output().expect("kubectl apply");
        assert!(
            out.status.success(),
            "apply: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `(name, node, ip)` of Running pods with label `selector`.
    pub fn running_pods(&self, selector: &str) -> Vec<(String, String, String)> {
        self.running_pods_with(selector, "{.status.podIP}")
    }

    /// The running (not terminating) pods matching `selector`: name, node and the value of
    /// the JSONPath template `third` (one field, no spaces).
    pub fn running_pods_with(&self, selector: &str, third: &str) -> Vec<(String, String, String)> {
        let out = self.kubectl_ok(&[
            "get",
            "pods",
            "-l",
            selector,
            "-o",
            &format!(
                "jsonpath={{range .items[*]}}{{.metadata.name}} {{.spec.nodeName}} {third} {{.status.phase}} {{.metadata.deletionTimestamp}}{{\"\\n\"}}{{end}}"
            ),
        ]);
        out.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                (f.len() >= 4 && f[3] == "Running" && f.get(4).is_none_or(|d| d.is_empty()))
                    .then(|| (f[0].to_string(), f[1].to_string(), f[2].to_string()))
            })
            .collect()
    }

    pub fn wait_running(
        &self,
        selector: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<(String, String, String)> {
        eventually(timeout, || {
            let pods = self.running_pods(selector);
            (pods.len() == n).then_some(pods)
        })
        .unwrap_or_else(|| {
            panic!(
                "{n} pods {selector} not Running in time: {}\n{}",
                self.kubectl_ok(&["get", "pods", "-o", "wide"]),
                self.logs()
            )
        })
    }

    pub fn routes_check(&self) -> (bool, String) {
        let out = self.kubelab(&["routes", "--name", &self.name, "--check"]);
        (
            out.status.success(),
            format!("{}{}", text(&out), String::from_utf8_lossy(&out.stderr)),
        )
    }

    pub fn pids(&self) -> BTreeMap<String, Option<u32>> {
        let t = std::fs::read_to_string(self.state_dir().join("pids.json")).unwrap_or_default();
        serde_json::from_str(&t).unwrap_or_default()
    }

    pub fn netns(&self) -> Vec<String> {
        std::fs::read_dir("/run/netns")
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().to_str().map(str::to_string))
                    .filter(|n| n.starts_with(&format!("{}.", self.name)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Processes whose environment marks them as this lab's.
    pub fn processes(&self) -> Vec<u32> {
        let want = format!("KUBELAB_LAB={}@{}", self.name, self.state_dir().display());
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == want.as_bytes()))
            })
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| !s.contains(") Z "))
            })
            .collect()
    }

    pub fn down(&mut self) -> Output {
        self.down_done = true;
        self.kubelab(&["down", "--name", &self.name])
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.down_done {
            let _ = self.down();
        }
    }
}

pub fn host_state() -> (String, String, String) {
    let run = |args: &[&str]| {
        let o = Command::new(args[0])
            .args(&args[1..])
            .output()
            .expect(args[0]);
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    (
        run(&["ip", "route", "show", "table", "all"]),
        run(&["ip", "-o", "link", "show"])
            .lines()
            .map(|l| {
                l.split_once('@')
                    .map(|(a, _)| a)
                    .unwrap_or(l)
                    .split(':')
                    .nth(1)
                    .unwrap_or("")
                    .trim()
                    .to_string()
            })
            .collect::<Vec<_>>()
            .join("\n"),
        run(&["nft", "list", "ruleset"]),
    )
}
