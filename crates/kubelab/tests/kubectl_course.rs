//! The course's kubectl commands against a fresh `kubelab server`, with the real kubectl.

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;
use support::{TestServer, eventually, fixture_str, table};

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}):\n{s}"))
}

fn row<'a>(rows: &'a [Vec<String>], name: &str) -> &'a Vec<String> {
    rows.iter()
        .find(|r| r.first().map(String::as_str) == Some(name))
        .unwrap_or_else(|| panic!("no row {name} in {rows:?}"))
}

#[test]
fn course_manifests_create_and_print_like_upstream() {
    course_manifests(&TestServer::start());
}

#[test]
fn course_manifests_with_kubectl_1_32() {
    let mut s = TestServer::start();
    s.kubectl_bin = support::kubectl_1_32();
    let version = s.ok(&["version", "--client"]);
    assert!(version.contains("v1.32."), "{version}");
    course_manifests(&s);
}

fn course_manifests(s: &TestServer) {
    assert_eq!(
        s.ok(&["create", "-f", &fixture_str("deployment.yaml")])
            .trim(),
        "deployment.apps/nginx-deployment created"
    );
    assert_eq!(
        s.ok(&["create", "-f", &fixture_str("cluster.yaml")]).trim(),
        "service/cluster-demo created"
    );
    assert_eq!(
        s.ok(&["create", "-f", &fixture_str("nodeport.yaml")])
            .trim(),
        "service/nodeport-demo created"
    );

    let services = table(&s.ok(&["get", "services"]));
    assert_eq!(
        services[0],
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ]
    );
    assert_eq!(
        row(&services, "kubernetes")[..5],
        ["kubernetes", "ClusterIP", "10.96.0.1", "<none>", "443/TCP"]
    );
    let demo = row(&services, "cluster-demo");
    assert_eq!(demo[1], "ClusterIP");
    assert!(
        demo[2].starts_with("10.") && demo[2] != "10.96.0.1",
        "{demo:?}"
    );
    assert_eq!(demo[4], "8080/TCP");
    let np = row(&services, "nodeport-demo");
    assert_eq!(np[1], "NodePort");
    let port: u16 = np[4]
        .trim_start_matches("8080:")
        .trim_end_matches("/TCP")
        .parse()
        .expect("nodePort");
    assert!((30000..=32767).contains(&port), "{np:?}");

    let wide = table(&s.ok(&["get", "svc", "-o", "wide"]));
    assert_eq!(wide[0].last().map(String::as_str), Some("SELECTOR"));
    assert_eq!(
        row(&wide, "cluster-demo").last().map(String::as_str),
        Some("app=nginx")
    );

    let deploy = table(&s.ok(&["get", "deployments", "-o", "wide"]));
    assert_eq!(
        deploy[0],
        [
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ]
    );
    let d = row(&deploy, "nginx-deployment");
    assert_eq!(
        (d[1].as_str(), d[5].as_str(), d[6].as_str(), d[7].as_str()),
        ("0/3", "nginx", "nginx:1.7.9", "app=nginx")
    );

    // -o json carries upstream's defaults.
    let obj = json(&s.ok(&["get", "deployment", "nginx-deployment", "-o", "json"]));
    assert_eq!(obj["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
    assert_eq!(obj["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(obj["spec"]["progressDeadlineSeconds"], 600);
    assert_eq!(obj["metadata"]["generation"], 1);
    let c = &obj["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(c["ports"][0]["protocol"], "TCP");
    assert_eq!(obj["spec"]["template"]["spec"]["dnsPolicy"], "ClusterFirst");
    assert_eq!(obj["spec"]["template"]["spec"]["restartPolicy"], "Always");
    let svc = json(&s.ok(&["get", "svc", "nodeport-demo", "-o", "json"]));
    assert_eq!(svc["spec"]["sessionAffinity"], "None");
    assert_eq!(svc["spec"]["ipFamilies"], serde_json::json!(["IPv4"]));
    assert_eq!(svc["spec"]["externalTrafficPolicy"], "Cluster");
    assert_eq!(svc["spec"]["ports"][0]["nodePort"], port);

    let yaml = s.ok(&["get", "deploy", "nginx-deployment", "-o", "yaml"]);
    for needle in [
        "kind: Deployment",
        "maxUnavailable: 25%",
        "uid: ",
        "resourceVersion: ",
        "creationTimestamp: ",
    ] {
        assert!(yaml.contains(needle), "{needle:?} missing from:\n{yaml}");
    }
    assert_eq!(
        s.ok(&[
            "get",
            "svc",
            "kubernetes",
            "-o",
            "jsonpath={.spec.clusterIP}"
        ]),
        "10.96.0.1"
    );
    assert_eq!(
        s.ok(&[
            "get",
            "svc",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}{\" \"}{end}"
        ])
        .trim(),
        "cluster-demo kubernetes nodeport-demo"
    );

    let labels = table(&s.ok(&["get", "deploy", "--show-labels"]));
    assert_eq!(labels[0].last().map(String::as_str), Some("LABELS"));
    assert_eq!(
        row(&labels, "nginx-deployment").last().map(String::as_str),
        Some("app=nginx")
    );
    assert_eq!(table(&s.ok(&["get", "deploy", "-l", "app=nginx"])).len(), 2);
    let none = s.kubectl(&["get", "deploy", "-l", "app=other"]);
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("No resources found in default namespace.")
    );
    let kube = table(&s.ok(&[
        "get",
        "svc",
        "-l",
        "component=apiserver,provider=kubernetes",
    ]));
    assert_eq!(kube.len(), 2);
}

#[test]
fn get_watch_prints_new_objects_as_they_come() {
    let s = TestServer::start();
    let mut child = s
        .kubectl_cmd(&["get", "services", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl -w");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let header = rx.recv_timeout(Duration::from_secs(20)).expect("header");
    assert!(header.starts_with("NAME"), "{header}");
    let first = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("kubernetes row");
    assert!(first.starts_with("kubernetes "), "{first}");
    s.ok(&["create", "-f", &fixture_str("cluster.yaml")]);
    let added = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("watch event");
    let cells: Vec<&str> = added.split_whitespace().collect();
    assert_eq!(
        (cells[0], cells[1], cells[4]),
        ("cluster-demo", "ClusterIP", "8080/TCP"),
        "{added}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn dockercoins_commands_work() {
    dockercoins(&TestServer::start());
}

#[test]
fn dockercoins_commands_with_kubectl_1_32() {
    let mut s = TestServer::start();
    s.kubectl_bin = support::kubectl_1_32();
    dockercoins(&s);
}

fn dockercoins(s: &TestServer) {
    assert_eq!(
        s.ok(&["create", "deployment", "redis", "--image=redis"])
            .trim(),
        "deployment.apps/redis created"
    );
    for d in ["hasher", "rng", "webui", "worker"] {
        s.ok(&[
            "create",
            "deployment",
            d,
            &format!("--image=training/dockercoins-{d}:1.0"),
        ]);
    }
    let redis = json(&s.ok(&["get", "deploy", "redis", "-o", "json"]));
    assert_eq!(redis["spec"]["selector"]["matchLabels"]["app"], "redis");
    assert_eq!(
        redis["spec"]["template"]["spec"]["containers"][0]["name"],
        "redis"
    );
    assert_eq!(
        redis["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "Always"
    );

    assert_eq!(
        s.ok(&["expose", "deployment", "redis", "--port", "6379"])
            .trim(),
        "service/redis exposed"
    );
    s.ok(&["expose", "deployment", "rng", "--port", "80"]);
    s.ok(&["expose", "deployment", "hasher", "--port", "80"]);
    assert_eq!(
        s.ok(&["expose", "deploy/webui", "--type=NodePort", "--port", "80"])
            .trim(),
        "service/webui exposed"
    );
    let svcs = table(&s.ok(&["get", "services"]));
    assert_eq!(
        svcs.iter()
            .skip(1)
            .map(|r| r[0].as_str())
            .collect::<Vec<_>>(),
        ["hasher", "kubernetes", "redis", "rng", "webui"]
    );
    assert_eq!(row(&svcs, "redis")[4], "6379/TCP");
    assert!(row(&svcs, "webui")[4].starts_with("80:3"), "{svcs:?}");
    assert_eq!(row(&svcs, "webui")[1], "NodePort");

    assert_eq!(
        s.ok(&["scale", "deploy/worker", "--replicas=10"]).trim(),
        "deployment.apps/worker scaled"
    );
    assert_eq!(
        s.ok(&["get", "deploy", "worker", "-o", "jsonpath={.spec.replicas}"]),
        "10"
    );
    assert_eq!(
        s.ok(&[
            "get",
            "deploy",
            "worker",
            "-o",
            "jsonpath={.metadata.generation}"
        ]),
        "2"
    );

    // describe reads like upstream's.
    let describe = s.ok(&["describe", "service", "webui"]);
    for needle in [
        "Name:",
        "webui",
        "Selector:",
        "app=webui",
        "Type:",
        "NodePort",
        "IP:",
        "Port:",
        "80/TCP",
        "TargetPort:",
        "NodePort:",
        "Endpoints:",
        "Session Affinity:",
        "None",
        "External Traffic Policy:",
        "Cluster",
    ] {
        assert!(
            describe.contains(needle),
            "{needle:?} missing from:\n{describe}"
        );
    }

    let all = s.ok(&["get", "all"]);
    for needle in [
        "service/kubernetes",
        "service/webui",
        "deployment.apps/worker",
        "deployment.apps/redis",
    ] {
        assert!(all.contains(needle), "{needle:?} missing from:\n{all}");
    }

    // Turning rng into a DaemonSet, the course's way (strip server fields, change the kind).
    let mut rng = json(&s.ok(&["get", "deploy/rng", "-o", "json"]));
    rng["kind"] = "DaemonSet".into();
    rng.as_object_mut().unwrap().remove("status");
    let meta = rng["metadata"].as_object_mut().unwrap();
    for f in [
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "generation",
        "annotations",
    ] {
        meta.remove(f);
    }
    let spec = rng["spec"].as_object_mut().unwrap();
    for f in ["replicas", "strategy", "progressDeadlineSeconds"] {
        spec.remove(f);
    }
    let out = s.ok_stdin(&["apply", "-f", "-"], &rng.to_string());
    assert_eq!(out.trim(), "daemonset.apps/rng created");
    let ds = table(&s.ok(&["get", "daemonset"]));
    assert_eq!(
        ds[0],
        [
            "NAME",
            "DESIRED",
            "CURRENT",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "NODE",
            "SELECTOR",
            "AGE"
        ]
    );
    assert_eq!(row(&ds, "rng")[6], "<none>");
    let all = s.ok(&["get", "all"]);
    assert!(
        all.contains("deployment.apps/rng") && all.contains("daemonset.apps/rng"),
        "{all}"
    );
    assert_eq!(
        s.ok(&["delete", "deploy/rng"]).trim(),
        "deployment.apps \"rng\" deleted"
    );

    // The course's clean-up loops, then nothing but the kubernetes Service.
    for d in ["redis", "hasher", "rng", "webui"] {
        s.ok(&["delete", &format!("svc/{d}")]);
    }
    for d in ["redis", "hasher", "webui", "worker"] {
        s.ok(&["delete", &format!("deploy/{d}")]);
    }
    assert_eq!(
        s.ok(&["delete", "ds/rng"]).trim(),
        "daemonset.apps \"rng\" deleted"
    );
    let all = table(&s.ok(&["get", "all"]));
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[1][0], "service/kubernetes");
}

#[test]
fn apply_creates_configures_and_leaves_unchanged() {
    let s = TestServer::start();
    let path = fixture_str("deployment.yaml");
    assert_eq!(
        s.ok(&["apply", "-f", &path]).trim(),
        "deployment.apps/nginx-deployment created"
    );
    assert_eq!(
        s.ok(&["apply", "-f", &path]).trim(),
        "deployment.apps/nginx-deployment unchanged"
    );
    let changed = std::fs::read_to_string(&path)
        .unwrap()
        .replace("replicas: 3", "replicas: 5")
        .replace("nginx:1.7.9", "nginx:1.25");
    assert_eq!(
        s.ok_stdin(&["apply", "-f", "-"], &changed).trim(),
        "deployment.apps/nginx-deployment configured"
    );
    let d = json(&s.ok(&["get", "deploy", "nginx-deployment", "-o", "json"]));
    assert_eq!(d["spec"]["replicas"], 5);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.25"
    );
    // The container list merged by name: still exactly one container, its port kept.
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
        80
    );
    assert!(
        d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string()
    );

    // Delete by -f and by type/name pairs.
    s.ok(&["create", "-f", &fixture_str("cluster.yaml")]);
    s.ok(&["create", "-f", &fixture_str("nodeport.yaml")]);
    assert_eq!(
        s.ok(&["delete", "-f", &fixture_str("cluster.yaml")]).trim(),
        "service \"cluster-demo\" deleted"
    );
    let out = s.ok(&["delete", "svc/nodeport-demo", "deploy/nginx-deployment"]);
    assert!(
        out.contains("service \"nodeport-demo\" deleted")
            && out.contains("deployment.apps \"nginx-deployment\" deleted"),
        "{out}"
    );
    let gone = eventually(Duration::from_secs(5), || {
        let t = table(&s.ok(&["get", "all"]));
        (t.len() == 2).then_some(t)
    });
    assert!(gone.is_some(), "{}", s.ok(&["get", "all"]));
}

#[test]
fn explain_prints_field_documentation() {
    let s = TestServer::start();
    let out = s.ok(&["explain", "deployment.spec.strategy"]);
    for needle in [
        "GROUP:",
        "apps",
        "KIND:",
        "Deployment",
        "FIELD: strategy <DeploymentStrategy>",
        "rollingUpdate",
        "type",
    ] {
        assert!(out.contains(needle), "{needle:?} missing from:\n{out}");
    }
    let pods = s.ok(&["explain", "pods.spec.containers.ports"]);
    assert!(
        pods.contains("containerPort") && pods.contains("<integer> -required-"),
        "{pods}"
    );
}
