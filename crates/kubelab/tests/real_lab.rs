//! A lab of real nodes end to end, as root, with the real kubectl and curl: the course's
//! "Routing Traffic with Calico" section command for command, route checks under pod churn, an
//! agent killed with SIGKILL, and `down` leaving the host as it was.
//!
//! These tests need root and network namespaces (CI runs as root). They fail, loudly, when
//! they cannot run: never skipped.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::reallab::{Lab, host_state};
use support::{eventually, fixture};

/// sha1 over `<namespace>.<pod>`, with the machine's own sha1sum: Calico's veth name is
/// `cali` + its first 11 hex digits.
fn calico_veth(namespace: &str, pod: &str) -> String {
    let mut child = Command::new("sha1sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha1sum");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{namespace}.{pod}").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    format!("cali{}", &String::from_utf8_lossy(&out.stdout)[..11])
}

/// The /26 block holding `ip` (the default pool's block size).
fn block_of(ip: &str) -> String {
    let a: std::net::Ipv4Addr = ip.parse().unwrap();
    let n = u32::from(a) & !0x3f;
    format!("{}/26", std::net::Ipv4Addr::from(n))
}

#[test]
fn course_routing_section_command_for_command() {
    let (routes_before, links_before, rules_before) = host_state();
    let mut lab = Lab::up("klt-course", &[]);
    let nodes = lab.kubectl_ok(&["get", "nodes"]);
    for n in ["kube-0", "kube-1", "kube-2"] {
        assert!(nodes.contains(n), "{nodes}");
    }
    // kube-0's host part of the course.
    let kube0_routes = lab.ssh_ok("kube-0", &["ip", "route"]);
    assert!(
        kube0_routes.contains("default via 10.10.64.1 dev eth0"),
        "{kube0_routes}"
    );
    assert!(
        kube0_routes.contains("10.10.64.0/20 dev eth0 proto kernel scope link src 10.10.68.222"),
        "{kube0_routes}"
    );
    assert_eq!(lab.ssh_ok("kube-1", &["hostname"]).trim(), "kube-1");

    // 1-2. Redeploy the nginx Deployment and list the pods.
    lab.apply(&std::fs::read_to_string(fixture("deployment.yaml")).unwrap());
    let pods = lab.wait_running("app=nginx", 3, Duration::from_secs(60));
    let ips: BTreeSet<&String> = pods.iter().map(|p| &p.2).collect();
    assert_eq!(ips.len(), 3, "pod addresses are unique: {pods:?}");

    // 3. describe shows the node with its address and the pod IP.
    let (pod, node, ip) = pods
        .iter()
        .find(|p| p.1 == "kube-1")
        .unwrap_or(&pods[0])
        .clone();
    let describe = lab.kubectl_ok(&["describe", "pods", &pod]);
    let node_ip = if node == "kube-1" {
        "10.10.95.205"
    } else {
        "10.10.98.12"
    };
    assert!(
        describe.contains(&format!("Node:             {node}/{node_ip}")),
        "{describe}"
    );
    assert!(
        describe.contains(&format!("IP:               {ip}")),
        "{describe}"
    );
    // The ServiceAccount admission plugin's token volume, mounted where the course shows it
    // and filled by the kubelet.
    assert!(
        describe.contains("/var/run/secrets/kubernetes.io/serviceaccount from kube-api-access-")
            && describe
                .contains("Projected (a volume that contains injected data from multiple sources)"),
        "{describe}"
    );
    let namespace_file = lab.kubectl_ok(&[
        "exec",
        &pod,
        "--",
        "cat",
        "/var/run/secrets/kubernetes.io/serviceaccount/namespace",
    ]);
    assert_eq!(namespace_file, "default");

    // 4. kube-0's table: each remote pod block via its node through tunl0, as Calico's Felix
    //    programs it in IPIP mode.
    let kube0_routes = lab.ssh_ok("kube-0", &["ip", "route"]);
    for (_, n, ip) in &pods {
        let via = if n == "kube-1" {
            "10.10.95.205"
        } else {
            "10.10.98.12"
        };
        let want = format!("{} via {via} dev tunl0 proto 80 onlink", block_of(ip));
        assert!(
            kube0_routes.contains(&want),
            "missing {want:?} in\n{kube0_routes}"
        );
    }
    // kube-0 holds its tunnel address's block, though no pod runs there.
    assert!(
        kube0_routes.contains("blackhole 192.168.145.64/26 proto 80"),
        "{kube0_routes}"
    );

    // 5-6. curl each pod from every node; the hosting node shows the blackhole and the /32
    //      on the cali device with exactly Calico's name.
    let mut curls: BTreeMap<String, usize> = BTreeMap::new();
    for (pod, n, ip) in &pods {
        let table = lab.ssh_ok(n, &["ip", "route"]);
        let veth = calico_veth("default", pod);
        assert!(
            table.contains(&format!("{ip} dev {veth} scope link")),
            "{n} lacks {ip} dev {veth}:\n{table}"
        );
        assert!(
            table.contains(&format!("blackhole {} proto 80", block_of(ip))),
            "{table}"
        );
        for from in ["kube-0", "kube-1", "kube-2"] {
            let page = lab.ssh_ok(
                from,
                &["curl", "-s", "--max-time", "5", &format!("http://{ip}:80/")],
            );
            assert!(
                page.contains("<title>Welcome to nginx!</title>"),
                "from {from} to {ip}: {page}"
            );
            *curls.entry(pod.clone()).or_default() += 1;
        }
    }

    // 7. kubectl logs shows those requests with curl's user agent, and nothing else: the
    // course's nginx:1.7.9 prints no start-up lines.
    for (pod, _, _) in &pods {
        let logs = lab.kubectl_ok(&["logs", pod]);
        let lines = logs
            .lines()
            .filter(|l| l.contains("\"GET / HTTP/1.1\" 200 ") && l.contains("\"curl/"))
            .count();
        assert_eq!(lines, curls[pod], "{pod} logs:\n{logs}");
        assert_eq!(logs.lines().count(), curls[pod], "{pod} logs:\n{logs}");
    }
    let (pod0, _, _) = &pods[0];
    let tail = lab.kubectl_ok(&["logs", "--tail", "1", pod0]);
    assert_eq!(tail.lines().count(), 1, "{tail}");
    assert!(tail.contains("\"curl/"), "{tail}");
    let (clean, report) = lab.routes_check();
    assert!(clean, "routes --check: {report}");
    // The prediction from cluster state alone is the node's table, line for line.
    for node in ["kube-0", "kube-1", "kube-2"] {
        let predicted = lab.kubelab(&["routes", "--name", &lab.name, "--predict", node]);
        assert!(predicted.status.success());
        let kernel: Vec<String> = lab
            .ssh_ok(node, &["ip", "route"])
            .lines()
            .map(|l| l.trim_end().to_string())
            .collect();
        let predicted: Vec<String> = String::from_utf8_lossy(&predicted.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        assert_eq!(predicted, kernel, "{node}: prediction vs ip route");
    }

    // An agent killed with SIGKILL comes back; pods keep their addresses and connectivity,
    // and nothing is made twice.
    let before_links = lab.ssh_ok("kube-1", &["ip", "-o", "link", "show"]);
    let cali_before = before_links
        .lines()
        .filter(|l| l.contains(": cali"))
        .count();
    let processes_before = lab.processes().len();
    let old = lab.pids()["agent kube-1"].expect("agent kube-1 pid");
    Command::new("kill")
        .args(["-9", &old.to_string()])
        .status()
        .unwrap();
    eventually(Duration::from_secs(20), || {
        lab.pids()["agent kube-1"].filter(|p| *p != old)
    })
    .expect("agent restarted");
    // The restarted agent has reconciled (it re-registers the node and heartbeats).
    std::thread::sleep(Duration::from_secs(2));
    let after = lab.wait_running("app=nginx", 3, Duration::from_secs(30));
    assert_eq!(
        after, pods,
        "pods and addresses unchanged after the agent restart"
    );
    for (_, _, ip) in &pods {
        let page = lab.ssh_ok(
            "kube-0",
            &["curl", "-s", "--max-time", "5", &format!("http://{ip}/")],
        );
        assert!(
            page.contains("Welcome to nginx!"),
            "{ip} after restart: {page}"
        );
    }
    let after_links = lab.ssh_ok("kube-1", &["ip", "-o", "link", "show"]);
    assert_eq!(
        after_links.lines().filter(|l| l.contains(": cali")).count(),
        cali_before,
        "{after_links}"
    );
    assert_eq!(
        lab.processes().len(),
        processes_before,
        "no process duplicated"
    );
    let (clean, report) = lab.routes_check();
    assert!(clean, "routes --check after restart: {report}");

    // down leaves nothing of the lab, and the host as it was.
    let out = lab.down();
    assert!(
        out.status.success(),
        "down: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(lab.netns(), Vec::<String>::new());
    assert_eq!(lab.processes(), Vec::<u32>::new());
    assert!(!lab.state_dir().exists());
    let (routes_after, links_after, rules_after) = host_state();
    assert_eq!(routes_after, routes_before);
    assert_eq!(links_after, links_before);
    assert_eq!(rules_after, rules_before);
}

#[test]
fn routes_stay_exact_under_pod_churn() {
    let mut lab = Lab::up("klt-churn", &["--workers", "2"]);
    let mut manifest = String::new();
    for i in 0..100 {
        manifest += &format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: churn-{i}\n  labels:\n    app: churn\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: nginx\n    image: nginx\n"
        );
    }
    lab.apply(&manifest);
    let pods = lab.wait_running("app=churn", 100, Duration::from_secs(180));
    let ips: BTreeSet<&String> = pods.iter().map(|p| &p.2).collect();
    assert_eq!(ips.len(), 100, "no address given twice");
    let (clean, report) = lab.routes_check();
    assert!(clean, "routes --check with 100 pods: {report}");

    // Delete in a scrambled order, in a few batches; the last one with --force, so the
    // agents learn of those pods only from their Delete events.
    let mut names: Vec<String> = pods.iter().map(|p| p.0.clone()).collect();
    names.sort_by_key(|n| {
        let i: u64 = n.trim_start_matches("churn-").parse().unwrap_or(0);
        (i * 7919) % 101
    });
    let batches = names.chunks(25).count();
    for (i, chunk) in names.chunks(25).enumerate() {
        let mut args = vec!["delete", "pod", "--wait=false"];
        if i + 1 == batches {
            args.extend(["--force", "--grace-period=0"]);
        }
        args.extend(chunk.iter().map(String::as_str));
        lab.kubectl_ok(&args);
    }
    eventually(Duration::from_secs(120), || {
        let left = lab.kubectl_ok(&["get", "pods", "-l", "app=churn", "-o", "name"]);
        left.trim().is_empty().then_some(())
    })
    .unwrap_or_else(|| panic!("pods not gone\n{}", lab.logs()));
    let clean = eventually(Duration::from_secs(20), || {
        let (clean, report) = lab.routes_check();
        clean.then_some(report)
    });
    assert!(
        clean.is_some(),
        "routes --check after deletion: {}",
        lab.routes_check().1
    );
    // What remains is exactly the cluster's own pods (cluster DNS on kube-0).
    let system_pods: Vec<(String, String)> = lab
        .kubectl_ok(&[
            "get",
            "pods",
            "-A",
            "-o",
            "jsonpath={range .items[*]}{.metadata.namespace} {.metadata.name}{\"\\n\"}{end}",
        ])
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(ns, name)| (ns.to_string(), name.to_string()))
        .collect();
    assert!(
        system_pods.iter().all(|(ns, _)| ns == "kube-system"),
        "{system_pods:?}"
    );
    let expected: BTreeSet<String> = system_pods
        .iter()
        .map(|(ns, name)| calico_veth(ns, name))
        .collect();
    let mut found = BTreeSet::new();
    for node in ["kube-0", "kube-1", "kube-2"] {
        let links = lab.ssh_ok(node, &["ip", "-o", "link", "show"]);
        for l in links.lines() {
            if let Some(name) = l.split(": ").nth(1).filter(|n| n.starts_with("cali")) {
                found.insert(name.split('@').next().unwrap_or(name).to_string());
            }
        }
    }
    assert_eq!(found, expected, "cali links left besides the system pods'");
    assert_eq!(
        lab.netns().iter().filter(|n| n.contains(".pod.")).count(),
        system_pods.len(),
        "pod namespaces left: {:?}",
        lab.netns()
    );
    // Only the nodes' tunnel addresses and the system pods' addresses remain allocated.
    let blocks = lab.kubectl_ok(&["get", "ipamblocks.crd.projectcalico.org", "-o", "json"]);
    let blocks: serde_json::Value = serde_json::from_str(&blocks).unwrap();
    let handles: Vec<String> = blocks["items"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| {
            b["spec"]["attributes"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|a| a["handle_id"].as_str().map(str::to_string))
        .collect();
    let allocated: usize = blocks["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            b["spec"]["allocations"]
                .as_array()
                .map(|a| a.iter().filter(|x| !x.is_null()).count())
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(
        allocated,
        3 + system_pods.len(),
        "only the 3 tunnel addresses and the system pods' stay allocated; handles {handles:?}"
    );
    let out = lab.down();
    assert!(out.status.success());
}

/// Boots a lab with `args`, runs the course's Deployment, and checks that each pod answers
/// from every node and that every node's table is as predicted; returns kube-0's table.
fn pods_reachable_with(name: &str, args: &[&str]) -> (Lab, String, Vec<(String, String, String)>) {
    let lab = Lab::up(name, args);
    lab.apply(&std::fs::read_to_string(fixture("deployment.yaml")).unwrap());
    let pods = lab.wait_running("app=nginx", 3, Duration::from_secs(60));
    for (_, _, ip) in &pods {
        for from in ["kube-0", "kube-1", "kube-2"] {
            let page = lab.ssh_ok(
                from,
                &["curl", "-s", "--max-time", "5", &format!("http://{ip}/")],
            );
            assert!(
                page.contains("Welcome to nginx!"),
                "{name}: {from} → {ip}: {page}"
            );
        }
    }
    let (clean, report) = lab.routes_check();
    assert!(clean, "{name}: routes --check: {report}");
    let table = lab.ssh_ok("kube-0", &["ip", "route"]);
    (lab, table, pods)
}

#[test]
fn vxlan_routes_through_vxlan_calico() {
    let (mut lab, table, pods) = pods_reachable_with("klt-vxlan", &["--encapsulation", "vxlan"]);
    let links = lab.ssh_ok("kube-1", &["ip", "-d", "link", "show", "vxlan.calico"]);
    assert!(
        links.contains("vxlan id 4096") && links.contains("dstport 4789"),
        "{links}"
    );
    for (_, _, ip) in &pods {
        let line = table
            .lines()
            .find(|l| l.starts_with(&block_of(ip)))
            .unwrap_or_else(|| panic!("no route for {ip} on kube-0:\n{table}"));
        assert!(line.contains("dev vxlan.calico onlink"), "{line}");
        assert!(
            !line.contains("proto"),
            "VXLAN block routes are protocol boot: {line}"
        );
    }
    assert!(lab.down().status.success());
}

#[test]
fn no_encapsulation_on_one_subnet_routes_via_eth0() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("lab.yaml");
    std::fs::write(&config, "sharedSubnet: true\n").unwrap();
    let (mut lab, table, pods) = pods_reachable_with(
        "klt-direct",
        &[
            "--encapsulation",
            "none",
            "--config",
            config.to_str().unwrap(),
        ],
    );
    assert!(
        table.contains("10.10.64.0/20 dev eth0 proto kernel scope link src 10.10.68.222"),
        "{table}"
    );
    for (_, node, ip) in &pods {
        let via = if node == "kube-1" {
            "10.10.68.223"
        } else {
            "10.10.68.224"
        };
        let want = format!("{} via {via} dev eth0 proto 80 onlink", block_of(ip));
        assert!(table.contains(&want), "missing {want:?}:\n{table}");
    }
    assert!(!lab.ssh_ok("kube-0", &["ip", "link"]).contains("tunl0"));
    assert!(lab.down().status.success());
}
