//! A `--routing bgp` lab end to end, as root, with the real BIRD 2, kubectl and curl: every node
//! runs BIRD configured by its agent, routes between nodes come from BGP (`proto bird`), an
//! external router learns every pod block, nodes join and leave.
//!
//! These tests need root, network namespaces and BIRD (`apt-get install bird2`; CI runs
//! scripts/setup as root). They fail, loudly, when they cannot run: never skipped.

mod support;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::eventually;
use support::reallab::{Lab, kubelab_bin, text};

/// The lab is `klbgp-<pid>` (the harness adds the pid).
const LAB: &str = "klbgp";
/// The lab config: BGP routing and an external router in AS 64513 at 10.10.64.2.
const CONFIG: &str = "routing: bgp\nbgp:\n  externalPeer:\n    asNumber: 64513\n";

fn pod_yaml(name: &str, node: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels:\n    app: web\nspec:\n  nodeName: {node}\n  containers:\n  - name: nginx\n    image: nginx:1.7.9\n"
    )
}

/// `node → (ip, netns)` from the lab's record.
fn nodes(lab: &Lab) -> BTreeMap<String, (String, String)> {
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(lab.state_dir().join("topology.json")).unwrap(),
    )
    .unwrap();
    record["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap().to_string(),
                (
                    n["ip"].as_str().unwrap().to_string(),
                    n["netns"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

/// Every IPAM block and the node it is affine to.
fn ipam_blocks(lab: &Lab) -> BTreeMap<String, String> {
    let out = lab.kubectl_ok(&[
        "get",
        "ipamblocks",
        "-o",
        "jsonpath={range .items[*]}{.spec.cidr} {.spec.affinity}{\"\\n\"}{end}",
    ]);
    out.lines()
        .filter_map(|l| {
            let (cidr, affinity) = l.split_once(' ')?;
            Some((
                cidr.to_string(),
                affinity.strip_prefix("host:")?.to_string(),
            ))
        })
        .collect()
}

fn ip_route(netns: &str) -> String {
    let out = Command::new("ip")
        .args(["-n", netns, "route"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_end().to_string() + "\n")
        .collect()
}

fn run_ok(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A node that joins the running lab: its namespace on the shared subnet, and its agent run as
/// `lab-run` runs one (marked as the lab's, so `down` removes it with the rest).
struct JoinedNode {
    agent: Child,
}

impl JoinedNode {
    fn join(lab: &Lab, name: &str, ip: &str) -> JoinedNode {
        let lab_name = &lab.name;
        let netns = format!("{lab_name}.{name}");
        let port = format!("j{}", name.trim_start_matches("kube-"));
        run_ok(&["ip", "netns", "add", &netns]);
        run_ok(&[
            "ip",
            "-n",
            &format!("{lab_name}.router"),
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &netns,
        ]);
        run_ok(&[
            "ip",
            "-n",
            &format!("{lab_name}.router"),
            "link",
            "set",
            &port,
            "master",
            "br0",
            "up",
        ]);
        let address = format!("{ip}/20");
        for args in [
            vec!["addr", "add", address.as_str(), "dev", "eth0"],
            vec!["link", "set", "eth0", "up"],
            vec!["link", "set", "lo", "up"],
            vec![
                "route",
                "add",
                "default",
                "via",
                "10.10.64.1",
                "dev",
                "eth0",
            ],
        ] {
            let mut all = vec!["ip", "-n", netns.as_str()];
            all.extend(args);
            run_ok(&all);
        }
        run_ok(&[
            "ip",
            "netns",
            "exec",
            &netns,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        let state = lab.state_dir();
        let node_dir = state.join("nodes").join(name);
        std::fs::create_dir_all(&node_dir).unwrap();
        let log =
            std::fs::File::create(state.join("logs").join(format!("agent-{name}.log"))).unwrap();
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &netns, kubelab_bin(), "agent"])
            .args(["--node", name, "--node-ip", &format!("{ip}/20")])
            .args(["--gateway", "10.10.64.1", "--netns", &netns])
            .args(["--pod-netns-prefix", &format!("{lab_name}.pod.")])
            .arg("--kubeconfig")
            .arg(state.join("agent.kubeconfig"))
            .arg("--state-dir")
            .arg(&node_dir)
            .args(["--routing", "bgp", "--bgp-peer", "10.10.64.2:64513"])
            .env("KUBELAB_LAB", format!("{lab_name}@{}", state.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        JoinedNode {
            agent: command.spawn().expect("start the joining node's agent"),
        }
    }

    /// Stops the agent (and with it the node's BIRD) as a node shutting down would.
    fn stop(&mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(self.agent.id() as i32, libc::SIGTERM);
        }
        let _ = self.agent.wait();
    }
}

impl Drop for JoinedNode {
    fn drop(&mut self) {
        let _ = self.agent.kill();
        let _ = self.agent.wait();
    }
}

#[test]
fn bgp_lab_end_to_end() {
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), CONFIG).unwrap();
    let config_path = config.path().display().to_string();
    let mut lab = Lab::up(LAB, &["--workers", "3", "--config", &config_path]);
    let nodes = nodes(&lab);
    assert_eq!(nodes.len(), 4);
    // One shared subnet.
    assert!(
        nodes.values().all(|(ip, _)| ip.starts_with("10.10.6")),
        "{nodes:?}"
    );

    // --- every node's BGP sessions Established: 3 mesh peers and the external router each.
    let status = eventually(Duration::from_secs(30), || {
        let out = lab.kubelab(&["bgp", "status", "--name", &lab.name]);
        out.status.success().then(|| text(&out))
    })
    .unwrap_or_else(|| {
        panic!(
            "BGP sessions not Established:\n{}\n{}",
            text(&lab.kubelab(&["bgp", "status", "--name", &lab.name])),
            lab.logs()
        )
    });
    assert_eq!(
        status.matches("| node-to-node mesh | up").count(),
        12,
        "{status}"
    );
    assert_eq!(
        status.matches("| global            | up").count(),
        4,
        "{status}"
    );
    assert_eq!(
        status.matches("Established").count(),
        12 + 4 + 4,
        "{status}"
    );
    assert!(status.contains("| PEER ADDRESS |"), "{status}");
    // As on a Calico node: birdc inside the node.
    let protocols = lab.ssh_ok("kube-1", &["birdc", "show", "protocols"]);
    assert!(
        protocols.contains("Mesh_10_10_68_222") && protocols.contains("Established"),
        "{protocols}"
    );

    // --- pods on the three workers; routes between nodes from BGP, as predicted.
    let mut manifests = String::new();
    for i in 1..=3 {
        manifests += &pod_yaml(&format!("web-{i}"), &format!("kube-{i}"));
        manifests += "---\n";
    }
    lab.apply(&manifests);
    let pods = lab.wait_running("app=web", 3, Duration::from_secs(60));
    let blocks = ipam_blocks(&lab);
    for i in 1..=3 {
        let node = format!("kube-{i}");
        assert!(
            blocks.values().any(|n| *n == node),
            "{node} has no block: {blocks:?}"
        );
    }
    let (clean, report) = eventually(Duration::from_secs(15), || {
        let (clean, report) = lab.routes_check();
        clean.then_some((clean, report))
    })
    .unwrap_or_else(|| lab.routes_check());
    assert!(
        clean,
        "routes differ from the prediction:\n{report}\n{}",
        lab.logs()
    );
    for (block, owner) in &blocks {
        let (owner_ip, _) = &nodes[owner];
        for (node, (_, netns)) in &nodes {
            let table = ip_route(netns);
            let expected = if node == owner {
                format!("blackhole {block} proto bird\n")
            } else {
                format!("{block} via {owner_ip} dev eth0 proto bird\n")
            };
            assert!(
                table.contains(&expected),
                "{node} lacks {expected:?}:\n{table}"
            );
        }
    }
    // `routes --predict` prints exactly what the kernel has.
    let predicted = text(&lab.kubelab(&["routes", "--name", &lab.name, "kube-0", "--predict"]));
    assert_eq!(predicted, ip_route(&nodes["kube-0"].1));

    // --- curl across nodes: pod to pod on another node, and node to pod.
    for (name, node, _) in &pods {
        for (_, other_node, other_ip) in &pods {
            if node == other_node {
                continue;
            }
            let page = lab.kubectl_ok(&[
                "exec",
                name,
                "--",
                "curl",
                "-s",
                "-m",
                "5",
                &format!("http://{other_ip}/"),
            ]);
            assert!(
                page.contains("Welcome to nginx!"),
                "{name} → {other_ip}: {page}"
            );
        }
    }
    let page = lab.ssh_ok(
        "kube-0",
        &["curl", "-s", "-m", "5", &format!("http://{}/", pods[0].2)],
    );
    assert!(page.contains("Welcome to nginx!"), "{page}");

    // --- the external router learned every pod block from the nodes.
    let learned = lab.ssh_ok("bgppeer", &["birdc", "show", "route"]);
    let routes = bgp::parse_routes(&learned).unwrap();
    for (block, owner) in &blocks {
        let owner_ip = &nodes[owner].0;
        assert!(
            routes.iter().any(|r| r.prefix.to_string() == *block
                && r.primary
                && r.next_hop.map(|ip| ip.to_string()).as_deref() == Some(owner_ip)),
            "the external router lacks {block} via {owner_ip}:\n{learned}"
        );
    }

    // --- a node joining later: its block on every other node within 5 s of being claimed.
    let mut joined = JoinedNode::join(&lab, "kube-4", "10.10.68.230");
    eventually(Duration::from_secs(30), || {
        let out = lab.kubectl(&["get", "node", "kube-4"]);
        text(&out).contains(" Ready").then_some(())
    })
    .unwrap_or_else(|| panic!("kube-4 not Ready\n{}", lab.logs()));
    lab.apply(&pod_yaml("web-4", "kube-4"));
    let (block, claimed) = eventually(Duration::from_secs(30), || {
        let found = ipam_blocks(&lab).into_iter().find(|(_, n)| n == "kube-4")?;
        Some((found.0, Instant::now()))
    })
    .unwrap_or_else(|| panic!("kube-4 claimed no block\n{}", lab.logs()));
    let expected = format!("{block} via 10.10.68.230 dev eth0 proto bird\n");
    let everywhere = || {
        nodes
            .values()
            .all(|(_, netns)| ip_route(netns).contains(&expected))
    };
    let converged = eventually(Duration::from_secs(5), || everywhere().then(Instant::now));
    assert!(
        converged.is_some(),
        "{block} of kube-4 not on every node within 5 s:\n{}\n{}",
        nodes
            .iter()
            .map(|(n, (_, ns))| format!("{n}:\n{}", ip_route(ns)))
            .collect::<String>(),
        text(&lab.kubelab(&["bgp", "status", "--name", &lab.name]))
    );
    eprintln!(
        "kube-4's block {block} on every node {:?} after it was seen claimed",
        converged.unwrap().duration_since(claimed)
    );
    let web4 = lab.wait_running("app=web", 4, Duration::from_secs(30));
    let web4_ip = &web4.iter().find(|p| p.1 == "kube-4").unwrap().2;
    let page = lab.kubectl_ok(&[
        "exec",
        "web-1",
        "--",
        "curl",
        "-s",
        "-m",
        "5",
        &format!("http://{web4_ip}/"),
    ]);
    assert!(
        page.contains("Welcome to nginx!"),
        "web-1 → kube-4's pod: {page}"
    );

    // --- the node leaves: its agent and BIRD stop, its Node is deleted; every route to it goes.
    joined.stop();
    lab.kubectl_ok(&["delete", "pod", "web-4", "--force", "--grace-period=0"]);
    lab.kubectl_ok(&["delete", "node", "kube-4"]);
    let withdrawn = eventually(Duration::from_secs(15), || {
        nodes
            .values()
            .all(|(_, netns)| !ip_route(netns).contains(&block))
            .then_some(())
    });
    assert!(
        withdrawn.is_some(),
        "kube-4's {block} still routed:\n{}",
        nodes
            .iter()
            .map(|(n, (_, ns))| format!("{n}:\n{}", ip_route(ns)))
            .collect::<String>()
    );
    let (clean, report) = eventually(Duration::from_secs(15), || {
        let (clean, report) = lab.routes_check();
        clean.then_some((clean, report))
    })
    .unwrap_or_else(|| lab.routes_check());
    assert!(clean, "after kube-4 left:\n{report}");
    let status = text(&lab.kubelab(&["bgp", "status", "--name", &lab.name, "kube-0"]));
    assert!(
        !status.contains("10.10.68.230"),
        "kube-0 still peers with kube-4:\n{status}"
    );

    let out = lab.down();
    assert!(out.status.success(), "{}", text(&out));
    assert!(lab.netns().is_empty(), "left: {:?}", lab.netns());
    assert!(lab.processes().is_empty(), "left: {:?}", lab.processes());
}
