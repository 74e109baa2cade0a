//! `GET pods/<name>/log` end to end: an in-process API server, a fake kubelet (the agent's
//! log server over a temp log directory) that a Node points at with InternalIP 127.0.0.1
//! and its port, and an HTTPS client as kubectl would be.

use agent::logserver;
use apiserver::{ApiServer, Config};
use images::logfile::{Entry, LogStream, container_log_path};
use jiff::Timestamp;
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

struct Lab {
    dir: tempfile::TempDir,
    /// A kubeconfig for the real kubectl.
    kubeconfig: std::path::PathBuf,
    log_root: std::path::PathBuf,
    base: String,
    client: reqwest::Client,
    token: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Lab {
    async fn start() -> Lab {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::new(dir.path().join("data"));
        config.in_memory = true;
        config.listen = "127.0.0.1:0".parse().expect("address");
        let server = ApiServer::new(config).await.expect("API server");
        let addr = server.local_addr();
        let ca = server.state().pki.ca_cert_pem.clone();
        let token = server.state().pki.admin_token.clone();
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, server.kubeconfig("pod-logs")).expect("kubeconfig");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).expect("CA"))
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        let log_root = dir.path().join("logs");
        Lab {
            kubeconfig,
            dir,
            log_root,
            base: format!("https://127.0.0.1:{}", addr.port()),
            client,
            token,
            _stop: stop,
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> reqwest::Response {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        req.send().await.expect("an answer from the API server")
    }

    async fn json(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Value {
        let r = self.send(method, path, body).await;
        let status = r.status();
        let text = r.text().await.expect("body");
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).expect("JSON")
    }

    async fn get_text(&self, path: &str) -> (u16, String) {
        let r = self.send(reqwest::Method::GET, path, None).await;
        let status = r.status().as_u16();
        (status, r.text().await.expect("body"))
    }

    /// A Node whose kubelet is at 127.0.0.1:`port`.
    async fn node(&self, name: &str, port: u16) {
        self.json(
            reqwest::Method::POST,
            "/api/v1/nodes",
            Some(&json!({
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name},
                "status": {
                    "addresses": [
                        {"type": "InternalIP", "address": "127.0.0.1"},
                        {"type": "Hostname", "address": name}
                    ],
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}
                }
            })),
        )
        .await;
        let node = self
            .json(reqwest::Method::GET, &format!("/api/v1/nodes/{name}"), None)
            .await;
        if node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] != port {
            let mut node = node;
            node["status"]["addresses"] = json!([{"type": "InternalIP", "address": "127.0.0.1"}]);
            node["status"]["daemonEndpoints"] = json!({"kubeletEndpoint": {"Port": port}});
            self.json(
                reqwest::Method::PUT,
                &format!("/api/v1/nodes/{name}/status"),
                Some(&node),
            )
            .await;
        }
    }

    /// A pod bound to `node` whose only container `nginx` has `container_status`; returns
    /// its uid.
    async fn pod(&self, name: &str, node: &str, container_status: Value) -> String {
        let pods = "/api/v1/namespaces/default/pods";
        let mut pod = self
            .json(
                reqwest::Method::POST,
                pods,
                Some(&json!({
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": name},
                    "spec": {"nodeName": node, "containers": [{"name": "nginx", "image": "nginx"}]}
                })),
            )
            .await;
        let mut status = json!({"name": "nginx", "image": "nginx", "imageID": "", "ready": true, "restartCount": 0});
        if let (Some(s), Some(extra)) = (status.as_object_mut(), container_status.as_object()) {
            s.extend(extra.clone());
        }
        pod["status"] = json!({"phase": "Running", "containerStatuses": [status]});
        self.json(
            reqwest::Method::PUT,
            &format!("{pods}/{name}/status"),
            Some(&pod),
        )
        .await;
        pod["metadata"]["uid"].as_str().expect("uid").to_string()
    }
}

fn append(path: &Path, lines: &[&str]) {
    std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log");
    for line in lines {
        let e = Entry {
            time: Timestamp::now(),
            stream: LogStream::Stdout,
            partial: false,
            content: line.as_bytes().to_vec(),
        };
        f.write_all(&e.encode()).expect("write log");
    }
}

async fn fake_kubelet(log_root: &Path) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(logserver::serve(listener, log_root.to_path_buf()));
    port
}

const RUNNING: &str = r#"{"state": {"running": {"startedAt": "2024-01-01T00:00:00Z"}}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_come_from_the_nodes_kubelet() {
    let lab = Lab::start().await;
    let port = fake_kubelet(&lab.log_root).await;
    lab.node("node-1", port).await;
    let uid = lab
        .pod(
            "web",
            "node-1",
            serde_json::from_str(RUNNING).expect("json"),
        )
        .await;
    let log = container_log_path(&lab.log_root, "default", "web", &uid, "nginx", 0);
    append(&log, &["first", "second", "third"]);

    let path = "/api/v1/namespaces/default/pods/web/log";
    assert_eq!(
        lab.get_text(path).await,
        (200, "first\nsecond\nthird\n".into())
    );
    assert_eq!(
        lab.get_text(&format!("{path}?tailLines=2")).await,
        (200, "second\nthird\n".into())
    );
    assert_eq!(
        lab.get_text(&format!("{path}?container=nginx&limitBytes=3"))
            .await,
        (200, "fir".into())
    );
    let r = lab.send(reqwest::Method::GET, path, None).await;
    assert_eq!(
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/plain")
    );

    // Follow: the tail first, then each line as the container writes it.
    let mut follow = lab
        .send(
            reqwest::Method::GET,
            &format!("{path}?follow=true&tailLines=1"),
            None,
        )
        .await;
    assert_eq!(follow.status().as_u16(), 200);
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(10), follow.chunk())
            .await
            .expect("a chunk within 10 s")
            .expect("body")
            .expect("more data")
    };
    assert_eq!(&next().await[..], b"third\n");
    append(&log, &["fourth"]);
    assert_eq!(&next().await[..], b"fourth\n");
    append(&log, &["fifth"]);
    assert_eq!(&next().await[..], b"fifth\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_like_kube_apiserver() {
    let lab = Lab::start().await;
    let port = fake_kubelet(&lab.log_root).await;
    lab.node("node-1", port).await;
    let uid = lab
        .pod(
            "web",
            "node-1",
            serde_json::from_str(RUNNING).expect("json"),
        )
        .await;
    append(
        &container_log_path(&lab.log_root, "default", "web", &uid, "nginx", 0),
        &["hello"],
    );
    let message = |body: &str| -> Value {
        let v: Value = serde_json::from_str(body).expect("a Status");
        v["message"].clone()
    };

    // No previous instance in the pod's status.
    let (code, body) = lab
        .get_text("/api/v1/namespaces/default/pods/web/log?previous=true")
        .await;
    assert_eq!(code, 400);
    assert_eq!(
        message(&body),
        "previous terminated container \"nginx\" in pod \"web\" not found"
    );

    // Invalid options.
    let (code, body) = lab
        .get_text("/api/v1/namespaces/default/pods/web/log?tailLines=-1")
        .await;
    assert_eq!(code, 422, "{body}");

    // The pod's status says running but the kubelet has no log for it: its 404.
    lab.pod(
        "ghost",
        "node-1",
        serde_json::from_str(RUNNING).expect("json"),
    )
    .await;
    let (code, body) = lab
        .get_text("/api/v1/namespaces/default/pods/ghost/log")
        .await;
    assert_eq!(code, 404);
    assert_eq!(
        message(&body),
        "the server could not find the requested resource ( pods/log ghost)"
    );

    // A node whose kubelet is not listening.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    lab.node("node-2", closed).await;
    lab.pod(
        "lost",
        "node-2",
        serde_json::from_str(RUNNING).expect("json"),
    )
    .await;
    let (code, body) = lab
        .get_text("/api/v1/namespaces/default/pods/lost/log?tailLines=5")
        .await;
    assert_eq!(code, 500, "{body}");
    assert_eq!(
        message(&body),
        format!(
            "Get \"http://127.0.0.1:{closed}/containerLogs/default/lost/nginx?tailLines=5\": dial tcp 127.0.0.1:{closed}: connect: connection refused"
        )
    );

    // Waiting containers are answered without asking the kubelet.
    lab.pod(
        "pulling",
        "node-2",
        json!({"state": {"waiting": {"reason": "ImagePullBackOff"}}}),
    )
    .await;
    let (code, body) = lab
        .get_text("/api/v1/namespaces/default/pods/pulling/log")
        .await;
    assert_eq!(code, 400);
    assert_eq!(
        message(&body),
        "container \"nginx\" in pod \"pulling\" is waiting to start: trying and failing to pull image"
    );
}

/// Kills kubectl if the test fails while it follows.
struct Kubectl(std::process::Child);

impl Drop for Kubectl {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_follow_prints_lines_as_they_come() {
    use std::io::BufRead;
    let lab = Lab::start().await;
    let port = fake_kubelet(&lab.log_root).await;
    lab.node("node-1", port).await;
    let uid = lab
        .pod(
            "web",
            "node-1",
            serde_json::from_str(RUNNING).expect("json"),
        )
        .await;
    let log = container_log_path(&lab.log_root, "default", "web", &uid, "nginx", 0);
    append(&log, &["one", "two"]);
    let home = lab.dir.path();
    let mut kubectl = Kubectl(
        std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&lab.kubeconfig)
            .args(["logs", "-f", "web", "--tail=1"])
            .env("HOME", home)
            .env("KUBECACHEDIR", home.join("kubecache"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run kubectl"),
    );
    let stdout = kubectl.0.stdout.take().expect("stdout");
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(20), lines.recv())
            .await
            .expect("kubectl printed a line within 20 s")
            .expect("kubectl still running")
    };
    assert_eq!(next().await, "two");
    append(&log, &["three"]);
    assert_eq!(next().await, "three");
}
