//! Route convergence of a `--routing bgp` lab (BIRD 2 in every node, iBGP full mesh): how long
//! from a node claiming a block until every other node has the BGP route to it.
//!
//! For each lab size N of `BENCH_BGP_NODES` (nodes in all, control plane included): `kubelab up
//! --routing bgp --workers N-1`, then wait until `kubelab bgp status` shows every session
//! Established. Then, `BENCH_BGP_ROUNDS` times, each on another worker that owns no block yet
//! (at most once per worker): one
//! poller thread per other node runs `ip -n <node> route show proto bird` every 5 ms, looking
//! for a route `via <worker IP>`; a `kubectl get ipamblocks --watch` reports when the worker's
//! block appears; a pod pinned to the worker (`nodeName`) makes its agent claim the block. A
//! round's figure is the time from the watch event of the block until the last node has the
//! route (and the median node). That is the path a block takes in Calico's BGP mode: IPAM
//! claim → the owner's agent re-renders bird.conf and runs `birdc configure` → BIRD's static
//! blackhole → iBGP UPDATE to every peer → each peer's kernel protocol writes the route.
//!
//! Run as root: `cargo bench -p kubelab --bench bgp`. Knobs (environment, defaults in brackets):
//! `BENCH_BGP_NODES` [3,10,30], `BENCH_BGP_ROUNDS` [3], `BENCH_DIR` parent of the temporary
//! state directories. Each lab is named `bgpbench<N>`, lives in a temporary state directory and
//! is brought `down` at the end of its case, also when the case fails.

mod common;

use anyhow::{Context, Result, bail};
use common::{cpu_model, loadavg, ms, percentile};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A `--routing bgp` lab in its own HOME and state directory; `down` on drop.
struct BgpLab {
    root: tempfile::TempDir,
    name: String,
}

impl BgpLab {
    fn run(&self, program: &str, args: &[&str]) -> Result<Output> {
        let root = self.root.path();
        Command::new(program)
            .args(args)
            .env("HOME", root)
            .env("KUBECONFIG", root.join("kube/config"))
            .env("KUBELAB_STATE_DIR", root.join("state"))
            .env_remove("XDG_STATE_HOME")
            .env("KUBECACHEDIR", root.join("kubecache"))
            .env("KUBELAB_LOG", "info")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {program}"))
    }

    fn kubelab(&self, args: &[&str]) -> Result<Output> {
        self.run(env!("CARGO_BIN_EXE_kubelab"), args)
    }

    fn kubectl(&self, args: &[&str]) -> Result<String> {
        let mut all = vec!["--context", self.context()];
        all.extend_from_slice(args);
        let out = self.run("kubectl", &all)?;
        if !out.status.success() {
            bail!(
                "kubectl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn context(&self) -> &'static str {
        // Leaked once per lab: kubectl wants a &str for as long as the lab lives.
        Box::leak(format!("kubelab-{}", self.name).into_boxed_str())
    }

    fn state_dir(&self) -> PathBuf {
        self.root.path().join("state").join(&self.name)
    }

    fn up(dir: Option<&Path>, nodes: usize) -> Result<(BgpLab, Duration)> {
        let root = match dir {
            Some(d) => tempfile::tempdir_in(d),
            None => tempfile::tempdir(),
        }?;
        let lab = BgpLab {
            root,
            name: format!("bgpbench{nodes}"),
        };
        let workers = (nodes - 1).to_string();
        let started = Instant::now();
        let out = lab.kubelab(&[
            "up",
            "--name",
            &lab.name,
            "--routing",
            "bgp",
            "--workers",
            &workers,
            "--wait",
            "300",
        ])?;
        if !out.status.success() {
            bail!(
                "kubelab up: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok((lab, started.elapsed()))
    }

    /// `(name, ip, netns)` of every node.
    fn nodes(&self) -> Result<Vec<(String, String, String)>> {
        let record = lab::netlab::LabRecord::read(&self.state_dir())
            .map_err(|e| anyhow::anyhow!("the lab's record: {e}"))?;
        Ok(record
            .nodes
            .iter()
            .map(|n| (n.name.clone(), n.ip.to_string(), n.netns.clone()))
            .collect())
    }
}

impl Drop for BgpLab {
    fn drop(&mut self) {
        let _ = self.kubelab(&["down", "--name", &self.name]);
    }
}

/// Waits until every BGP session of the lab is Established; how long that took.
fn wait_established(lab: &BgpLab, timeout: Duration) -> Result<Duration> {
    let started = Instant::now();
    loop {
        let out = lab.kubelab(&["bgp", "status", "--name", &lab.name])?;
        if out.status.success() {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            bail!(
                "sessions not Established after {timeout:?}:\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One round: a pod on `worker` makes it claim a block; returns (claim → last node, claim →
/// median node).
fn round(
    lab: &BgpLab,
    nodes: &[(String, String, String)],
    worker: &str,
    pod: &str,
) -> Result<(Duration, Duration)> {
    let worker_ip = nodes
        .iter()
        .find(|n| n.0 == worker)
        .map(|n| n.1.clone())
        .context("no such worker")?;
    let needle = format!("via {worker_ip} dev eth0 proto bird");
    let stop = Arc::new(AtomicBool::new(false));
    let pollers: Vec<_> = nodes
        .iter()
        .filter(|n| n.0 != worker)
        .map(|(_, _, netns)| {
            let (netns, needle, stop) = (netns.clone(), needle.clone(), stop.clone());
            std::thread::spawn(move || -> Option<Instant> {
                while !stop.load(Ordering::Relaxed) {
                    // Not `show proto bird`: iproute2 then leaves `proto bird` out of the lines.
                    let out = Command::new("ip")
                        .args(["-n", &netns, "route", "show"])
                        .output()
                        .ok()?;
                    if String::from_utf8_lossy(&out.stdout).contains(&needle) {
                        return Some(Instant::now());
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                None
            })
        })
        .collect();
    // Watch IPAM blocks: the event of the worker's block is the moment it is claimed.
    let root = lab.root.path();
    let mut watch = Command::new("kubectl")
        .args(["--context", lab.context(), "get", "ipamblocks", "--watch"])
        .args(["-o", "jsonpath={.spec.cidr} {.spec.affinity}{\"\\n\"}"])
        .env("HOME", root)
        .env("KUBECONFIG", root.join("kube/config"))
        .env("KUBECACHEDIR", root.join("kubecache"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = watch.stdout.take().context("watch stdout")?;
    // The list part of the watch comes first: let it pass before the pod exists.
    std::thread::sleep(Duration::from_millis(500));
    lab.kubectl(&[
        "run",
        pod,
        "--image",
        "nginx:1.7.9",
        "--overrides",
        &format!("{{\"spec\":{{\"nodeName\":\"{worker}\"}}}}"),
    ])?;
    let affinity = format!("host:{worker}");
    let claimed = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|line| line.ends_with(&affinity))
        .map(|_| Instant::now());
    let _ = watch.kill();
    let _ = watch.wait();
    let claimed = claimed.context("the watch ended before the block was claimed")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && pollers.iter().any(|p| !p.is_finished()) {
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    let mut seen: Vec<Duration> = Vec::new();
    for poller in pollers {
        match poller.join().ok().flatten() {
            Some(at) => seen.push(at.saturating_duration_since(claimed)),
            None => bail!("a node never got the route to {worker}'s block"),
        }
    }
    seen.sort();
    Ok((
        *seen.last().context("no other node")?,
        percentile(&seen, 0.5),
    ))
}

fn case(dir: Option<&Path>, nodes: usize, rounds: usize) -> Result<()> {
    let (lab, up) = BgpLab::up(dir, nodes)?;
    let established = wait_established(&lab, Duration::from_secs(300))?;
    let all = lab.nodes()?;
    println!(
        "{nodes} nodes: up {:.1} s, every session Established {:.1} s later ({} sessions)",
        up.as_secs_f64(),
        established.as_secs_f64(),
        nodes * (nodes - 1)
    );
    // A worker claims its first block once, so each round takes a worker without a block yet
    // (the cluster DNS pods may already have given some worker one).
    let owners = lab.kubectl(&[
        "get",
        "ipamblocks",
        "-o",
        "jsonpath={range .items[*]}{.spec.affinity}{\"\\n\"}{end}",
    ])?;
    let fresh: Vec<String> = all
        .iter()
        .skip(1)
        .map(|n| n.0.clone())
        .filter(|name| !owners.lines().any(|l| l == format!("host:{name}")))
        .take(rounds)
        .collect();
    let rounds = fresh.len();
    let mut last = Vec::new();
    for (r, worker) in fresh.iter().enumerate() {
        let (slowest, median) = round(&lab, &all, worker, &format!("conv-{r}"))?;
        println!(
            "  round {}: {worker}'s block on every node after {:.0} ms (median node {:.0} ms)",
            r + 1,
            ms(slowest),
            ms(median)
        );
        last.push(slowest);
    }
    last.sort();
    println!(
        "  {nodes} nodes: block claimed -> route on every node: median {:.0} ms, max {:.0} ms over {rounds} rounds",
        ms(percentile(&last, 0.5)),
        ms(*last.last().unwrap_or(&Duration::ZERO))
    );
    Ok(())
}

fn main() -> Result<()> {
    common::require_root("the BGP benchmark")?;
    if !lab::netlab::bird_installed() {
        bail!("{}", lab::netlab::BIRD_MISSING);
    }
    let sizes: Vec<usize> = std::env::var("BENCH_BGP_NODES")
        .unwrap_or_else(|_| "3,10,30".into())
        .split(',')
        .map(|s| s.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .context("BENCH_BGP_NODES")?;
    let rounds = common::env_count("BENCH_BGP_ROUNDS", 3)?;
    let dir = std::env::var_os("BENCH_DIR").map(PathBuf::from);
    println!("BGP route convergence; {}; load {}", cpu_model(), loadavg());
    for nodes in sizes {
        if nodes < 2 {
            bail!("a lab needs at least 2 nodes to converge anything");
        }
        case(dir.as_deref(), nodes, rounds.max(1))?;
    }
    Ok(())
}
