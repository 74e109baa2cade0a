//! Test support: a real `kubelab server` process on 127.0.0.1 with its own data directory, and
//! the real `kubectl` pointed at it through the kubeconfig the server writes.
#![allow(dead_code)]

pub mod reallab;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct TestServer {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    /// The kubectl to run: `kubectl` on PATH (the machine's dispatcher picks the release
    /// matching the server) unless a test pins one.
    pub kubectl_bin: PathBuf,
    /// Extra flags for `kubelab server` (e.g. `--no-controllers`), kept across restarts.
    pub server_args: Vec<&'static str>,
    /// Extra environment for `kubelab server`, kept across restarts.
    pub server_env: Vec<(String, String)>,
}

fn kubelab_bin() -> &'static str {
    env!("CARGO_BIN_EXE_kubelab")
}

impl TestServer {
    /// Starts a fresh server; panics (failing the test loudly) if it does not come up.
    pub fn start() -> TestServer {
        Self::start_configured(Vec::new(), &[])
    }

    /// A server without the controllers: for tests of the API server alone, whose random
    /// objects (a Deployment of 100,000 replicas) must not set controllers to work.
    pub fn start_api_only() -> TestServer {
        Self::start_configured(vec!["--no-controllers"], &[])
    }

    /// Starts a fresh server with extra environment variables (e.g. the
    /// `KUBELAB_NODE_MONITOR_GRACE_PERIOD` knob).
    pub fn start_with_env(envs: &[(&str, &str)]) -> TestServer {
        Self::start_configured(Vec::new(), envs)
    }

    fn start_configured(server_args: Vec<&'static str>, envs: &[(&str, &str)]) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = dir.path().join("kubeconfig");
        let mut s = TestServer {
            child: None,
            dir,
            kubeconfig,
            kubectl_bin: PathBuf::from("kubectl"),
            server_args,
            server_env: envs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        s.spawn();
        s
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn spawn(&mut self) {
        let _ = std::fs::remove_file(&self.kubeconfig);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("log file");
        let child = Command::new(kubelab_bin())
            .args(["server", "--data-dir"])
            .arg(self.data_dir())
            .args(["--listen", "127.0.0.1:0", "--write-kubeconfig"])
            .arg(&self.kubeconfig)
            .args(&self.server_args)
            .env("KUBELAB_LOG", "info")
            .envs(
                self.server_env
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn kubelab server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.kubeconfig.exists() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "kubelab server exited early ({status}); log:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "kubelab server did not start; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// `https://127.0.0.1:<port>` from the kubeconfig.
    pub fn url(&self) -> String {
        let k = std::fs::read_to_string(&self.kubeconfig).expect("kubeconfig");
        k.lines()
            .find_map(|l| l.trim().strip_prefix("server: "))
            .expect("server line")
            .to_string()
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.data_dir().join("pki/admin.token"))
            .expect("token")
            .trim()
            .to_string()
    }

    pub fn ca_file(&self) -> PathBuf {
        self.data_dir().join("pki/ca.crt")
    }

    pub fn kubectl_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.kubectl_bin);
        c.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        // Keep kubectl's discovery cache per test, so tests never see each other's servers.
        c.env("KUBECACHEDIR", self.dir.path().join("kubecache"));
        c.env("HOME", self.dir.path());
        c
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_cmd(args)
            .stdin(Stdio::null())
            .output()
            .expect("run kubectl")
    }

    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .kubectl_cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("kubectl output")
    }

    /// Runs kubectl and returns stdout, failing the test with stderr if it failed.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {} failed: {}\n{}\nserver log:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout),
            tail(&self.log())
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl expecting failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            !out.status.success(),
            "kubectl {} should have failed, printed:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub fn ok_stdin(&self, args: &[&str], stdin: &str) -> String {
        let out = self.kubectl_stdin(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {} failed: {}\nserver log:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr),
            tail(&self.log())
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// kubectl 1.32 as the machine image ships it (the release the course's users have); a
/// missing binary fails the test that asks for it.
pub fn kubectl_1_32() -> PathBuf {
    let p = PathBuf::from("/usr/lib/google-cloud-sdk/bin/kubectl.1.32");
    assert!(p.exists(), "kubectl 1.32 is expected at {}", p.display());
    p
}

/// A fixture file under tests/fixtures.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The course's own manifests, from ../shared/seed when present, else our copies.
pub fn fixture_str(name: &str) -> String {
    fixture(name).to_str().expect("utf-8 path").to_string()
}

/// Splits a kubectl table into rows of whitespace-separated cells (header first).
pub fn table(output: &str) -> Vec<Vec<String>> {
    output
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// Retries `f` until it returns Some or the deadline passes.
pub fn eventually<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One HTTP answer from the API server, read whole.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub content_type: String,
    /// The values of every `Warning` header, in order.
    pub warnings: Vec<String>,
    pub body: Vec<u8>,
}

impl HttpReply {
    /// The body as JSON; fails the test (showing the body) if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "HTTP {} body is not JSON ({e}):\n{}",
                self.status,
                self.text()
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A raw HTTPS client for the API server, as a program other than kubectl would talk to it:
/// it trusts only the cluster CA and authenticates with a bearer token (or with none).
#[derive(Clone)]
pub struct ApiClient {
    client: reqwest::blocking::Client,
    base: String,
    token: Option<String>,
}

impl ApiClient {
    /// The same server and CA, another token (`None`: no `Authorization` header at all).
    pub fn with_token(&self, token: Option<&str>) -> ApiClient {
        ApiClient {
            token: token.map(str::to_string),
            ..self.clone()
        }
    }

    /// Sends one request; `Err` only when no HTTP answer came back (refused, reset, timeout).
    pub fn try_send(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<HttpReply, reqwest::Error> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("HTTP method");
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(ct) = content_type {
            req = req.header(reqwest::header::CONTENT_TYPE, ct);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send()?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let warnings = resp
            .headers()
            .get_all(reqwest::header::WARNING)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        let body = resp.bytes()?.to_vec();
        Ok(HttpReply {
            status,
            content_type,
            warnings,
            body,
        })
    }

    /// Sends one request; fails the test if no HTTP answer came back.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> HttpReply {
        self.try_send(method, path, content_type, body)
            .unwrap_or_else(|e| panic!("{method} {path}: no answer from the server: {e:?}"))
    }

    pub fn get(&self, path: &str) -> HttpReply {
        self.send("GET", path, None, None)
    }

    /// POST/PUT of a JSON object.
    pub fn send_json(&self, method: &str, path: &str, body: &serde_json::Value) -> HttpReply {
        self.send(
            method,
            path,
            Some("application/json"),
            Some(body.to_string().into_bytes()),
        )
    }

    /// A streaming GET (watch): the response, to be read as it arrives.
    pub fn stream(&self, path: &str) -> reqwest::blocking::Response {
        let mut req = self
            .client
            .get(format!("{}{path}", self.base))
            .timeout(Duration::from_secs(60));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        req.send()
            .unwrap_or_else(|e| panic!("GET {path}: no answer from the server: {e:?}"))
    }
}

impl TestServer {
    /// A raw HTTPS client trusting DIR/pki/ca.crt and sending the admin bearer token. The port
    /// changes on `restart`, so make a new client after one.
    pub fn api(&self) -> ApiClient {
        self.api_with(reqwest::blocking::Client::builder())
    }

    /// Like [`TestServer::api`], but speaking HTTP/1.1 only (as curl or a script would), where
    /// `api` negotiates HTTP/2 as kubectl does.
    pub fn api_http1(&self) -> ApiClient {
        self.api_with(reqwest::blocking::Client::builder().http1_only())
    }

    fn api_with(&self, builder: reqwest::blocking::ClientBuilder) -> ApiClient {
        let ca = std::fs::read(self.ca_file()).expect("ca.crt");
        let client = builder
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("CA certificate"))
            .timeout(Duration::from_secs(30))
            .build()
            .expect("HTTP client");
        ApiClient {
            client,
            base: self.url(),
            token: Some(self.token()),
        }
    }

    /// Whether the server process is still running (it has not crashed or exited).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}
