//! `kubelab trace` on a lab of real nodes, as root: the path of a new connection to the
//! course's ClusterIP from a node and from a pod, and to the `kubernetes` Service, read from
//! the kernel's real nftables rules and routes.
//!
//! Needs root and network namespaces (CI runs as root); fails loudly otherwise, never skips.

mod support;

use std::time::Duration;
use support::eventually;
use support::fixture_str;
use support::reallab::{Lab, text};

const WELCOME: &str = "<title>Welcome to nginx!</title>";

fn trace(lab: &Lab, from: &str, to: &str) -> String {
    let out = lab.kubelab(&["trace", "--name", &lab.name, "--from", from, "--to", to]);
    let stdout = text(&out);
    assert!(
        out.status.success(),
        "kubelab trace --from {from} --to {to}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn trace_names_chains_endpoint_pod_and_hops() {
    let lab = Lab::up("klt-trace", &[]);
    lab.apply(&std::fs::read_to_string(fixture_str("deployment.yaml")).unwrap());
    lab.apply(&std::fs::read_to_string(fixture_str("cluster.yaml")).unwrap());
    let pods = lab.wait_running("app=nginx", 3, Duration::from_secs(60));
    let ip = lab.kubectl_ok(&[
        "get",
        "service",
        "cluster-demo",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    let url = format!("http://{ip}:8080/");
    // The rules are in place once the page answers through the ClusterIP.
    let page = eventually(Duration::from_secs(30), || {
        let out = lab.ssh("kube-1", &["curl", "-s", "--max-time", "5", &url]);
        Some(text(&out)).filter(|p| p.contains(WELCOME))
    });
    assert!(page.is_some(), "{url} from kube-1: {}", lab.logs());

    // From a node. numgen is random: trace until both a remote and (if any) a local pod showed,
    // checking every trace on the way.
    let to = format!("{ip}:8080");
    let mut saw_remote = false;
    for _ in 0..30 {
        let out = trace(&lab, "kube-1", &to);
        assert!(
            out.starts_with(&format!(
                "new TCP connection from node kube-1 (10.10.95.205) to {to}\n"
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "{ip} . tcp . 8080 in map service-ips → goto service-"
            )) && out.contains("default/cluster-demo/tcp/"),
            "{out}"
        );
        assert!(out.contains("jump mark-for-masquerade"), "{out}");
        let (pod, node, pod_ip) = pods
            .iter()
            .find(|(name, _, _)| out.contains(&format!("result: lands in pod default/{name} (")))
            .unwrap_or_else(|| panic!("no nginx pod at the end: {out}\npods {pods:?}"));
        assert!(
            out.contains(&format!("is pod default/{pod} on {node}")),
            "{out}"
        );
        assert!(out.contains(&format!("dnat {to} → {pod_ip}:80")), "{out}");
        assert!(
            out.contains(&format!("({pod_ip}) on {node}, port 80")),
            "{out}"
        );
        if node != "kube-1" {
            saw_remote = true;
            assert!(out.contains("dev tunl0"), "{out}");
            assert!(
                out.contains("IPIP (IP protocol 4): outer 10.10.95.205 → "),
                "{out}"
            );
            assert!(out.contains("router  in on "), "{out}");
            assert!(out.contains("IPIP decapsulated"), "{out}");
            assert!(
                out.contains("masquerade fully-random: source 10.10.95.205 → 192.168."),
                "{out}"
            );
            break;
        }
    }
    assert!(
        saw_remote,
        "30 traces never chose a pod on another node: {pods:?}"
    );

    // From a pod: its packet enters its node through the cali veth; no masquerade.
    let (pod, node, pod_ip) = &pods[0];
    let out = trace(&lab, pod, &to);
    assert!(
        out.starts_with(&format!(
            "new TCP connection from pod default/{pod} ({pod_ip}, on {node}) to {to}\n"
        )),
        "{out}"
    );
    assert!(out.contains("default via 169.254.1.1 dev eth0"), "{out}");
    assert!(
        out.contains(&format!(
            "{node}  chain services: {ip} . tcp . 8080 in map service-ips"
        )),
        "{out}"
    );
    // A pod source is inside the pod range: the Service rule does not mark it (only hairpin
    // traffic, a pod reaching itself, is marked by its endpoint chain).
    assert!(!out.contains("is outside 192.168.0.0/16"), "{out}");
    if out.contains(&format!("result: lands in pod default/{pod} ")) {
        assert!(
            out.contains(&format!("ip saddr {pod_ip} jump mark-for-masquerade")),
            "{out}"
        );
    }
    assert!(
        out.contains("result: lands in pod default/nginx-deployment-"),
        "{out}"
    );

    // The kubernetes Service ends at the API server on kube-0, a process of the node.
    let out = trace(&lab, "kube-1", "10.96.0.1:443");
    assert!(
        out.contains("dnat 10.96.0.1:443 → 10.10.68.222:6443"),
        "{out}"
    );
    assert!(out.contains("node kube-0 itself, not a pod"), "{out}");
    assert!(
        out.contains(
            "result: delivered to kube-0 itself at 10.10.68.222:6443 (a process of the node, not a pod)"
        ),
        "{out}"
    );

    // Nothing answers an address outside the lab.
    let out = trace(&lab, "kube-1", "203.0.113.9:80");
    assert!(out.contains("not in map service-ips: no Service"), "{out}");
    assert!(
        out.contains("result: no route: router: 203.0.113.9"),
        "{out}"
    );

    // An unknown origin is an error, not a trace.
    let out = lab.kubelab(&[
        "trace",
        "--name",
        &lab.name,
        "--from",
        "no-such-pod",
        "--to",
        &to,
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no node and no pod called \"default/no-such-pod\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
