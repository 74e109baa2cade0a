//! Services on a lab of real nodes, as root, with the real kubectl and curl: the course's
//! "Routing and Load Balancing with Services" section command for command, cluster DNS and
//! the `kubernetes` Service from pods, hairpin traffic, NodePorts on the host, and rules that
//! go when their Service goes.
//!
//! These tests need root and network namespaces (CI runs as root). They fail, loudly, when
//! they cannot run: never skipped.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;
use support::eventually;
use support::fixture_str;
use support::reallab::{Lab, text};

const WELCOME: &str = "<title>Welcome to nginx!</title>";

/// `curl` from a node; the page, or "" when it failed.
fn curl_from_node(lab: &Lab, node: &str, url: &str) -> String {
    text(&lab.ssh(node, &["curl", "-s", "--max-time", "5", url]))
}

/// `curl` from inside a pod through `kubectl exec`; the page, or "" when it failed.
fn curl_from_pod(lab: &Lab, pod: &str, args: &[&str]) -> String {
    let mut argv = vec!["exec", pod, "--", "curl", "-s", "--max-time", "5"];
    argv.extend_from_slice(args);
    text(&lab.kubectl(&argv))
}

/// How many requests from curl each pod's nginx has logged.
fn curl_requests(lab: &Lab, pods: &[(String, String, String)]) -> BTreeMap<String, usize> {
    pods.iter()
        .map(|(pod, _, _)| {
            let logs = lab.kubectl_ok(&["logs", pod]);
            let n = logs
                .lines()
                .filter(|l| l.contains("\"GET / HTTP/1.1\" 200 ") && l.contains("\"curl/"))
                .count();
            (pod.clone(), n)
        })
        .collect()
}

/// Each node's `ip kube-proxy` table.
fn rulesets(lab: &Lab) -> BTreeMap<&'static str, String> {
    ["kube-0", "kube-1", "kube-2"]
        .into_iter()
        .map(|n| {
            (
                n,
                lab.ssh_ok(n, &["nft", "list", "table", "ip", "kube-proxy"]),
            )
        })
        .collect()
}

fn cluster_ip(lab: &Lab, service: &str) -> String {
    lab.kubectl_ok(&[
        "get",
        "service",
        service,
        "-o",
        "jsonpath={.spec.clusterIP}",
    ])
}

fn wait_dns(lab: &Lab) {
    eventually(Duration::from_secs(60), || {
        let out = lab.kubectl_ok(&[
            "get",
            "endpointslices",
            "-n",
            "kube-system",
            "-l",
            "kubernetes.io/service-name=kube-dns",
            "-o",
            "jsonpath={.items[*].endpoints[*].conditions.ready}",
        ]);
        (out.split_whitespace().filter(|r| *r == "true").count() >= 2).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "cluster DNS not ready: {}\n{}",
            lab.kubectl_ok(&["get", "pods", "-A", "-o", "wide"]),
            lab.logs()
        )
    });
}

#[test]
fn course_services_section_command_for_command() {
    let mut lab = Lab::up("kls-course", &[]);
    lab.apply(&std::fs::read_to_string(fixture_str("deployment.yaml")).unwrap());
    let pods = lab.wait_running("app=nginx", 3, Duration::from_secs(60));

    // 1-2. The ClusterIP Service, and the list of Services.
    lab.kubectl_ok(&["create", "-f", &fixture_str("cluster.yaml")]);
    let services = lab.kubectl_ok(&["get", "services"]);
    let ip = cluster_ip(&lab, "cluster-demo");
    let lines: Vec<Vec<&str>> = services
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ]
    );
    assert!(
        lines
            .iter()
            .any(|l| l[..5] == ["kubernetes", "ClusterIP", "10.96.0.1", "<none>", "443/TCP"]),
        "{services}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l[..5] == ["cluster-demo", "ClusterIP", &ip, "<none>", "8080/TCP"]),
        "{services}"
    );

    // 3. The ClusterIP answers on 8080 from every node and every pod.
    let url = format!("http://{ip}:8080/");
    for node in ["kube-0", "kube-1", "kube-2"] {
        let page = eventually(Duration::from_secs(10), || {
            Some(curl_from_node(&lab, node, &url)).filter(|p| p.contains(WELCOME))
        });
        assert!(page.is_some(), "{url} from {node}: {}", lab.logs());
    }
    for (pod, _, _) in &pods {
        let page = curl_from_pod(&lab, pod, &[&url]);
        assert!(page.contains(WELCOME), "{url} from pod {pod}: {page}");
    }
    // Requests spread over all endpoints: each of the 3 replicas answers within 60.
    let before = curl_requests(&lab, &pods);
    let loop_cmd = format!(
        "for i in $(seq 60); do curl -s -o /dev/null --max-time 5 {url} || echo FAIL; done"
    );
    let out = lab.ssh_ok("kube-1", &["sh", "-c", &loop_cmd]);
    assert!(!out.contains("FAIL"), "{out}");
    let after = curl_requests(&lab, &pods);
    for (pod, _, _) in &pods {
        assert!(
            after[pod] > before[pod],
            "{pod} got none of 60 requests: before {before:?} after {after:?}"
        );
    }

    // 4-5. The NodePort Service: at every node IP from every node, and on the host.
    lab.kubectl_ok(&["create", "-f", &fixture_str("nodeport.yaml")]);
    let describe = lab.kubectl_ok(&["describe", "service", "nodeport-demo"]);
    let node_port: u16 = describe
        .lines()
        .find_map(|l| l.strip_prefix("NodePort:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|p| p.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no NodePort in {describe}"));
    assert!((30000..=32767).contains(&node_port), "{describe}");
    for from in ["kube-0", "kube-1", "kube-2"] {
        for to in ["10.10.68.222", "10.10.95.205", "10.10.98.12"] {
            let url = format!("http://{to}:{node_port}/");
            let page = eventually(Duration::from_secs(10), || {
                Some(curl_from_node(&lab, from, &url)).filter(|p| p.contains(WELCOME))
            });
            assert!(page.is_some(), "{url} from {from}");
        }
    }
    let host_url = format!("http://127.0.0.1:{node_port}/");
    let page = eventually(Duration::from_secs(10), || {
        let out = std::process::Command::new("curl")
            .args(["-s", "--max-time", "5", &host_url])
            .output()
            .ok()?;
        Some(text(&out)).filter(|p| p.contains(WELCOME))
    });
    assert!(page.is_some(), "{host_url} on the host");
    let status = text(&lab.kubelab(&["status", "--name", &lab.name]));
    assert!(
        status.contains(&host_url.trim_end_matches('/').to_string()),
        "{status}"
    );
    assert!(status.contains("default/nodeport-demo"), "{status}");
    assert!(status.contains("10.10.95.205/20"), "{status}");

    // Every node's ruleset has kube-proxy's shape for both Services.
    for (node, rules) in rulesets(&lab) {
        assert!(rules.contains("map service-ips"), "{node}: {rules}");
        assert!(rules.contains("map service-nodeports"), "{node}: {rules}");
        assert!(
            rules.contains("default/cluster-demo/tcp/"),
            "{node}: {rules}"
        );
        assert!(rules.contains("numgen random mod 3"), "{node}: {rules}");
    }

    // 6. Clean-up leaves no rule of these Services behind on any node.
    lab.kubectl_ok(&["delete", "deployment", "nginx-deployment"]);
    lab.kubectl_ok(&["delete", "service", "cluster-demo"]);
    lab.kubectl_ok(&["delete", "service", "nodeport-demo"]);
    let gone = eventually(Duration::from_secs(10), || {
        let all = rulesets(&lab);
        all.values()
            .all(|r| {
                !r.contains("cluster-demo")
                    && !r.contains("nodeport-demo")
                    && !r.contains(&ip)
                    && !r.contains(&node_port.to_string())
            })
            .then_some(())
    });
    assert!(gone.is_some(), "rules left: {:?}", rulesets(&lab));
    // The deleted ClusterIP stops answering.
    assert!(!curl_from_node(&lab, "kube-1", &url).contains(WELCOME));
    lab.down();
}

#[test]
fn pods_use_cluster_dns_the_kubernetes_service_and_reach_themselves() {
    let mut lab = Lab::up("kls-dns", &[]);
    lab.apply(&std::fs::read_to_string(fixture_str("deployment.yaml")).unwrap());
    let pods = lab.wait_running("app=nginx", 3, Duration::from_secs(60));
    lab.kubectl_ok(&["create", "-f", &fixture_str("cluster.yaml")]);
    wait_dns(&lab);
    let (pod, _, _) = &pods[0];

    let resolv = lab.kubectl_ok(&["exec", pod, "--", "cat", "/etc/resolv.conf"]);
    assert!(resolv.contains("nameserver 10.96.0.10"), "{resolv}");
    assert!(
        resolv.contains("search default.svc.cluster.local svc.cluster.local cluster.local"),
        "{resolv}"
    );
    assert!(resolv.contains("options ndots:5"), "{resolv}");

    for url in [
        "http://cluster-demo.default.svc.cluster.local:8080",
        "http://cluster-demo:8080",
    ] {
        let page = eventually(Duration::from_secs(10), || {
            Some(curl_from_pod(&lab, pod, &[url])).filter(|p| p.contains(WELCOME))
        });
        assert!(page.is_some(), "{url} from {pod}: {}", lab.logs());
    }
    let version = curl_from_pod(&lab, pod, &["-k", "https://kubernetes.default.svc/version"]);
    assert!(version.contains("\"gitVersion\""), "{version}");
    // And from every node, through the same Service address.
    for node in ["kube-0", "kube-1", "kube-2"] {
        let out = lab.ssh_ok(
            node,
            &[
                "curl",
                "-sk",
                "--max-time",
                "5",
                "https://10.96.0.1:443/version",
            ],
        );
        assert!(out.contains("\"gitVersion\""), "{node}: {out}");
    }

    // A pod reaches itself through a Service that only it backs (hairpin: masqueraded so
    // the answer comes back through the node).
    lab.kubectl_ok(&["label", "pod", pod, "solo=yes"]);
    lab.kubectl_ok(&[
        "expose",
        "pod",
        pod,
        "--name",
        "solo",
        "--port",
        "8080",
        "--target-port",
        "80",
    ]);
    let solo = format!("http://{}:8080/", cluster_ip(&lab, "solo"));
    let page = eventually(Duration::from_secs(10), || {
        Some(curl_from_pod(&lab, pod, &[&solo])).filter(|p| p.contains(WELCOME))
    });
    assert!(page.is_some(), "{pod} through {solo}");

    // A name outside the cluster is not forwarded anywhere.
    let out = lab.kubectl(&[
        "exec",
        pod,
        "--",
        "curl",
        "-s",
        "--max-time",
        "5",
        "http://example.com/",
    ]);
    assert!(!out.status.success(), "example.com resolved from a lab pod");

    // A deleted Service stops answering, by name and by address, and its rules go.
    lab.kubectl_ok(&["delete", "service", "solo"]);
    let gone = eventually(Duration::from_secs(10), || {
        rulesets(&lab)
            .values()
            .all(|r| !r.contains("default/solo/"))
            .then_some(())
    });
    assert!(gone.is_some(), "{:?}", rulesets(&lab));
    assert!(!curl_from_pod(&lab, pod, &[&solo]).contains(WELCOME));
    let by_name = eventually(Duration::from_secs(10), || {
        (!curl_from_pod(&lab, pod, &["http://solo:8080/"]).contains(WELCOME)).then_some(())
    });
    assert!(by_name.is_some(), "solo still resolves after deletion");
    lab.down();
}
