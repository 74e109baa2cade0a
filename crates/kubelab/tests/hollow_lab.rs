//! `kubelab up --hollow` / `kubelab down` end to end, with the real kubectl: the lab boots three
//! hollow nodes, the course's Deployment runs on the workers with Calico-style addresses, and
//! `down` leaves nothing behind. Each test has its own HOME, KUBECONFIG and KUBELAB_STATE_DIR.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::{eventually, fixture_str, table};

fn kubelab_bin() -> &'static str {
    env!("CARGO_BIN_EXE_kubelab")
}

/// A lab in a temp dir; `down` runs on drop if the test did not get there (a failed assertion).
struct Lab {
    dir: tempfile::TempDir,
    name: String,
    down_done: bool,
}

impl Lab {
    fn new(name: &str) -> Lab {
        Lab {
            dir: tempfile::tempdir().expect("temp dir"),
            name: name.to_string(),
            down_done: false,
        }
    }

    fn home(&self) -> &Path {
        self.dir.path()
    }
    fn user_kubeconfig(&self) -> PathBuf {
        self.home().join("kube/config")
    }
    fn state_root(&self) -> PathBuf {
        self.home().join("state")
    }
    fn state_dir(&self) -> PathBuf {
        self.state_root().join(&self.name)
    }

    fn env(&self, c: &mut Command) {
        c.env("HOME", self.home())
            .env("KUBECONFIG", self.user_kubeconfig())
            .env("KUBELAB_STATE_DIR", self.state_root())
            .env_remove("XDG_STATE_HOME")
            .env("KUBECACHEDIR", self.home().join("kubecache"))
            .env("KUBELAB_LOG", "info")
            .stdin(Stdio::null());
    }

    fn kubelab(&self, args: &[&str]) -> Output {
        let mut c = Command::new(kubelab_bin());
        c.args(args);
        self.env(&mut c);
        c.output().expect("run kubelab")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.state_dir().join("lab.log")).unwrap_or_default()
    }

    fn up(&self, extra: &[&str]) -> Output {
        let mut args = vec!["up", "--hollow", "--name", &self.name];
        args.extend_from_slice(extra);
        self.kubelab(&args)
    }

    fn down(&mut self) -> Output {
        self.down_done = true;
        self.kubelab(&["down", "--name", &self.name])
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        let mut c = Command::new("kubectl");
        c.args(args);
        self.env(&mut c);
        c.output().expect("run kubectl")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {} failed: {}\n{}\nlab log (tail):\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout),
            tail(&self.log())
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn pid(&self) -> Option<u32> {
        lab::process::read_pid(&self.state_dir().join("pid"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.down_done {
            return;
        }
        let pid = self.pid();
        let _ = self.kubelab(&["down", "--name", &self.name]);
        // Last resort: our own lab-run, by pid and command line only.
        if let Some(pid) = pid {
            let _ = lab::process::stop(pid, &self.name, &self.state_dir(), Duration::from_secs(2));
        }
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `a.b.c.d` inside `base/len`.
fn in_cidr(ip: &str, base: [u8; 4], len: u32) -> bool {
    let Ok(ip) = ip.parse::<std::net::Ipv4Addr>() else {
        return false;
    };
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(ip) & mask == u32::from(std::net::Ipv4Addr::from(base)) & mask
}

/// The process is gone: no /proc entry, or only a zombie waiting for a parent to reap it (the
/// lab outlives `up`, its parent, so it is reaped by init).
fn process_gone(pid: u32) -> bool {
    !lab::process::is_alive(pid)
}

const USER_CONFIG: &str = "apiVersion: v1
kind: Config
clusters:
- name: prod
  cluster:
    server: https://prod.example:6443
users:
- name: prod-admin
  user:
    token: secret
contexts:
- name: prod
  context:
    cluster: prod
    user: prod-admin
current-context: prod
";

/// Rows of `kubectl get pods -o wide` for pods whose name starts with `prefix`, once all
/// `count` of them are Running with an IP.
fn running_pods(lab: &Lab, prefix: &str, count: usize) -> Option<Vec<Vec<String>>> {
    let out = lab.kubectl(&["get", "pods", "-o", "wide"]);
    let rows = table(&String::from_utf8_lossy(&out.stdout));
    let pods: Vec<Vec<String>> = rows
        .into_iter()
        .skip(1)
        .filter(|r| r[0].starts_with(prefix))
        .collect();
    (pods.len() == count && pods.iter().all(|r| r[2] == "Running" && r[5] != "<none>"))
        .then_some(pods)
}

#[test]
fn hollow_lab_runs_the_course_and_cleans_up() {
    let mut lab = Lab::new("t1");
    std::fs::create_dir_all(lab.user_kubeconfig().parent().unwrap()).unwrap();
    std::fs::write(lab.user_kubeconfig(), USER_CONFIG).unwrap();

    let started = Instant::now();
    let up = lab.up(&["--workers", "2"]);
    assert!(
        up.status.success(),
        "up failed: {}\nlog:\n{}",
        text(&up),
        lab.log()
    );
    let up_out = String::from_utf8_lossy(&up.stdout);
    assert!(
        up_out.contains("kubectl cluster-info --context kubelab-t1"),
        "{up_out}"
    );
    eprintln!("kubelab up took {:?}", started.elapsed());

    // The context was merged and selected; the user's own entries are intact.
    assert_eq!(lab.ok(&["config", "current-context"]).trim(), "kubelab-t1");
    let contexts = lab.ok(&["config", "get-contexts", "-o", "name"]);
    assert!(contexts.lines().any(|l| l == "prod"), "{contexts}");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(lab.user_kubeconfig())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Starting it twice is an error that says so.
    let again = lab.up(&[]);
    assert!(
        !again.status.success(),
        "second up succeeded: {}",
        text(&again)
    );
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already running"),
        "{}",
        text(&again)
    );

    // Nodes: all Ready at once, kube-0 the control plane.
    let nodes = table(&lab.ok(&["get", "nodes"]));
    assert_eq!(nodes[0][..3], ["NAME", "STATUS", "ROLES"]);
    let by_name = |n: &str| nodes.iter().find(|r| r[0] == n).cloned();
    for n in ["kube-0", "kube-1", "kube-2"] {
        let row = by_name(n).unwrap_or_else(|| panic!("{n} missing: {nodes:?}"));
        assert_eq!(row[1], "Ready", "{row:?}");
    }
    assert_eq!(by_name("kube-0").unwrap()[2], "control-plane");
    assert_eq!(by_name("kube-1").unwrap()[2], "<none>");
    let wide = table(&lab.ok(&["get", "node", "kube-1", "-o", "wide"]));
    assert_eq!(wide[0][5], "INTERNAL-IP");
    assert_eq!(wide[1][5], "10.0.0.11");
    // Exactly the control-plane taint (no not-ready taint from the node lifecycle controller).
    let taints = || {
        lab.ok(&[
            "get",
            "node",
            "kube-0",
            "-o",
            "jsonpath={.spec.taints[*].key}:{.spec.taints[*].effect}",
        ])
    };
    let want = "node-role.kubernetes.io/control-plane:NoSchedule";
    assert!(
        eventually(Duration::from_secs(10), || (taints() == want).then_some(())).is_some(),
        "kube-0 taints: {}",
        taints()
    );
    for worker in ["kube-1", "kube-2"] {
        let t = lab.ok(&["get", "node", worker, "-o", "jsonpath={.spec.taints}"]);
        assert!(
            eventually(Duration::from_secs(10), || {
                lab.ok(&["get", "node", worker, "-o", "jsonpath={.spec.taints}"])
                    .is_empty()
                    .then_some(())
            })
            .is_some(),
            "{worker} taints: {t}"
        );
    }
    // Heartbeats.
    let leases = lab.ok(&["get", "leases", "-n", "kube-node-lease", "-o", "name"]);
    for n in ["kube-0", "kube-1", "kube-2"] {
        assert!(
            leases.contains(&format!("lease.coordination.k8s.io/{n}")),
            "{leases}"
        );
    }
    assert!(
        lab.ok(&["get", "ippools", "-o", "name"])
            .contains("default-ipv4-ippool")
    );

    // A pod bound directly to kube-1 runs there with an address of the course's block.
    lab.ok(&[
        "run",
        "direct",
        "--image=nginx:1.7.9",
        "--overrides={\"apiVersion\":\"v1\",\"spec\":{\"nodeName\":\"kube-1\"}}",
    ]);
    let direct = eventually(Duration::from_secs(20), || running_pods(&lab, "direct", 1))
        .unwrap_or_else(|| {
            panic!(
                "pod direct not Running:\n{}",
                lab.ok(&["get", "pods", "-o", "wide"])
            )
        });
    assert_eq!(direct[0][6], "kube-1");
    assert!(
        in_cidr(&direct[0][5], [192, 168, 126, 64], 26),
        "{direct:?}"
    );
    let describe = lab.ok(&["describe", "pod", "direct"]);
    for needle in [
        "Node:             kube-1/10.0.0.11",
        "Status:           Running",
        "Container image \"nginx:1.7.9\" already present on machine",
        "Created container: direct",
        "Started container direct",
    ] {
        assert!(
            describe.contains(needle),
            "missing {needle:?} in:\n{describe}"
        );
    }

    // The course's Deployment (needs the Deployment/ReplicaSet controllers and the scheduler).
    lab.ok(&["apply", "-f", &fixture_str("deployment.yaml")]);
    let pods = eventually(Duration::from_secs(30), || {
        running_pods(&lab, "nginx-deployment-", 3)
    })
    .unwrap_or_else(|| {
        panic!(
            "3 nginx pods not Running:\n{}\nlab log:\n{}",
            lab.ok(&["get", "pods", "-o", "wide"]),
            tail(&lab.log())
        )
    });
    let header = table(&lab.ok(&["get", "pods", "-o", "wide"]))[0].clone();
    assert_eq!(header[5..7], ["IP", "NODE"]);
    for row in &pods {
        assert!(in_cidr(&row[5], [192, 168, 0, 0], 16), "{row:?}");
        assert!(
            row[6] == "kube-1" || row[6] == "kube-2",
            "user pod on {row:?}"
        );
    }
    let mut ips: Vec<&String> = pods.iter().map(|r| &r[5]).chain([&direct[0][5]]).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 4, "duplicate pod addresses: {pods:?} {direct:?}");
    // Every kube-1 pod's address is from kube-1's block.
    for row in pods.iter().filter(|r| r[6] == "kube-1") {
        assert!(in_cidr(&row[5], [192, 168, 126, 64], 26), "{row:?}");
    }
    let on_kube_1 = pods
        .iter()
        .find(|r| r[6] == "kube-1")
        .unwrap_or_else(|| panic!("no replica was spread to kube-1: {pods:?}"));
    let describe = lab.ok(&["describe", "pod", &on_kube_1[0]]);
    for needle in [
        "Node:             kube-1/10.0.0.11",
        &format!("IP:               {}", on_kube_1[5]),
        "Controlled By:  ReplicaSet/nginx-deployment-",
        "Conditions:",
        "PodReadyToStartContainers   True",
        "Ready                       True",
        "ContainersReady             True",
        "PodScheduled                True",
        "Scheduled",
        "default-scheduler",
        "Pulled",
        "Created container: nginx",
        "Started container nginx",
        "Container ID:   kubelab://",
        "Image ID:       docker-pullable://nginx@sha256:",
    ] {
        assert!(
            describe.contains(needle),
            "missing {needle:?} in:\n{describe}"
        );
    }
    let ipam = lab.ok(&["get", "ipamblocks,blockaffinities"]);
    assert!(
        ipam.contains("ipamblock.crd.projectcalico.org/192-168-126-64-26"),
        "{ipam}"
    );
    assert!(
        ipam.contains("blockaffinity.crd.projectcalico.org/kube-1-192-168-126-64-26"),
        "{ipam}"
    );

    // Each node's tunl0 holds the first address of its block, as Calico's IPIP mode does.
    let tunnels = lab.ok(&["get", "ipamhandles", "-o", "name"]);
    for n in 0..3 {
        assert!(
            tunnels.contains(&format!(
                "ipamhandle.crd.projectcalico.org/ipip-tunnel-addr-kube-{n}"
            )),
            "{tunnels}"
        );
    }

    // The course's clean-up: every pod goes, and no pod address stays allocated (only the
    // nodes' tunnel addresses remain).
    lab.ok(&["delete", "deployment", "nginx-deployment"]);
    lab.ok(&["delete", "pod", "direct"]);
    let gone = eventually(Duration::from_secs(20), || {
        let pods = lab.ok(&["get", "pods", "-o", "name"]);
        let handles = lab.ok(&["get", "ipamhandles", "-o", "name"]);
        let pod_handles = handles
            .lines()
            .filter(|h| !h.contains("ipip-tunnel-addr-"))
            .count();
        (pods.trim().is_empty() && pod_handles == 0).then_some(())
    });
    assert!(
        gone.is_some(),
        "left behind:\n{}\n{}",
        lab.ok(&["get", "pods"]),
        lab.ok(&["get", "ipamhandles"])
    );
    let killing = lab.ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=Killing",
        "-o",
        "name",
    ]);
    assert!(!killing.trim().is_empty(), "no Killing events");

    // down: process, state and kubeconfig entries gone; the user's entries stay.
    let pid = lab.pid().expect("pid file");
    let down = lab.down();
    assert!(down.status.success(), "down failed: {}", text(&down));
    assert!(process_gone(pid), "lab process {pid} still running");
    assert!(!lab.state_dir().exists(), "state dir left behind");
    let config = std::fs::read_to_string(lab.user_kubeconfig()).unwrap();
    assert!(!config.contains("kubelab-t1"), "{config}");
    assert!(config.contains("prod-admin"), "{config}");
    let contexts = lab.ok(&["config", "get-contexts", "-o", "name"]);
    assert_eq!(contexts.trim(), "prod");
}

#[test]
fn standalone_kubeconfig_and_down_of_a_stopped_lab() {
    let mut lab = Lab::new("t2");
    let file = lab.home().join("lab.kubeconfig");
    let up = lab.up(&["--workers", "1", "--kubeconfig", file.to_str().unwrap()]);
    assert!(
        up.status.success(),
        "up failed: {}\nlog:\n{}",
        text(&up),
        lab.log()
    );
    // The user's kubeconfig is not touched.
    assert!(!lab.user_kubeconfig().exists());
    let mut c = Command::new("kubectl");
    lab.env(&mut c);
    let out = c
        .arg("--kubeconfig")
        .arg(&file)
        .args(["get", "nodes", "-o", "name"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "node/kube-0\nnode/kube-1\n",
        "{}",
        text(&out)
    );
    // Twenty pods bound to kube-1 at once: twenty different addresses of its block.
    let pods: Vec<String> = (0..20)
        .map(|i| {
            format!(
                r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"p{i}"}},"spec":{{"nodeName":"kube-1","containers":[{{"name":"c","image":"busybox"}}]}}}}"#
            )
        })
        .collect();
    // A multi-document stream: kubectl creates them back to back, the kubelet starts them
    // concurrently.
    let list = pods.join("\n---\n");
    let mut c = Command::new("kubectl");
    lab.env(&mut c);
    let mut child = c
        .arg("--kubeconfig")
        .arg(&file)
        .args(["create", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(list.as_bytes())
        .unwrap();
    let created = child.wait_with_output().unwrap();
    assert!(created.status.success(), "{}", text(&created));
    let ips = eventually(Duration::from_secs(30), || {
        let mut c = Command::new("kubectl");
        lab.env(&mut c);
        let out = c
            .arg("--kubeconfig")
            .arg(&file)
            .args([
                "get",
                "pods",
                "-o",
                "jsonpath={range .items[*]}{.status.podIP}{\"\\n\"}{end}",
            ])
            .output()
            .unwrap();
        let ips: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        (ips.len() == 20).then_some(ips)
    })
    .unwrap_or_else(|| {
        panic!(
            "20 pods did not all get addresses; log:\n{}",
            tail(&lab.log())
        )
    });
    let mut distinct = ips.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 20, "duplicate addresses: {ips:?}");
    assert!(
        ips.iter().all(|ip| in_cidr(ip, [192, 168, 126, 64], 26)),
        "{ips:?}"
    );

    // A pod deleted behind the kubelet's back (--force) still gets its address back: the
    // kubelet releases it when the Delete event arrives.
    let kubectl_file = |args: &[&str]| {
        let mut c = Command::new("kubectl");
        lab.env(&mut c);
        c.arg("--kubeconfig")
            .arg(&file)
            .args(args)
            .output()
            .unwrap()
    };
    let forced = kubectl_file(&["delete", "pod", "p0", "--force", "--grace-period=0"]);
    assert!(forced.status.success(), "{}", text(&forced));
    let handles = || {
        String::from_utf8_lossy(&kubectl_file(&["get", "ipamhandles", "-o", "name"]).stdout)
            .lines()
            .filter(|h| !h.contains("ipip-tunnel-addr-"))
            .count()
    };
    assert!(
        eventually(Duration::from_secs(40), || (handles() == 19).then_some(())).is_some(),
        "{} handles left after a forced delete; log:\n{}",
        handles(),
        tail(&lab.log())
    );

    // The lab process is in its own session, detached from ours.
    let pid = lab.pid().expect("pid file");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    assert_eq!(fields[3], pid.to_string(), "session id of {pid}: {stat}");

    // down twice: the second finds nothing and still succeeds.
    let first = lab.down();
    assert!(first.status.success(), "{}", text(&first));
    assert!(process_gone(pid));
    let second = lab.down();
    assert!(second.status.success(), "{}", text(&second));
    assert!(String::from_utf8_lossy(&second.stdout).contains("No lab named"));
}

#[test]
fn up_refuses_a_bad_name_and_an_impossible_network() {
    let lab = Lab::new("bad");
    let out = lab.kubelab(&["up", "--hollow", "--name", "Bad/Name"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid lab name"),
        "{}",
        text(&out)
    );
    // No encapsulation across subnets cannot route: refused before anything is made.
    let out = lab.kubelab(&["up", "--name", "bad", "--encapsulation", "none"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("sharedSubnet: true"),
        "{}",
        text(&out)
    );
    assert!(!lab.state_root().exists());
}
