//! DockerCoins and redis end to end on 127.0.0.1: redis answering a hand-written RESP
//! client (pipelined, concurrent), rng serialising requests, hasher not, a worker mining
//! against them at the expected rate after recovering from a missing redis, webui's `/json`
//! following the counters, and `images::run` as a container process that stops on SIGTERM.

use std::io::Write;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use images::dockercoins::{Log, hasher, net::HttpUrl, rng, webui, worker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A log sink the test can read.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
    fn log(&self) -> Log {
        Log::to_writer(self.clone())
    }
}

fn listener() -> StdTcpListener {
    StdTcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1")
}

fn start_redis_on(listener: StdTcpListener) -> SocketAddr {
    let address = listener.local_addr().unwrap();
    tokio::spawn(images::redis::serve_redis(
        listener,
        "7.4.2".into(),
        std::future::pending(),
    ));
    address
}

fn start_rng(log: Log) -> SocketAddr {
    let l = listener();
    let address = l.local_addr().unwrap();
    tokio::spawn(rng::serve_rng(
        l,
        "rng-test".into(),
        rng::DELAY,
        log,
        std::future::pending(),
    ));
    address
}

fn start_hasher(log: Log) -> SocketAddr {
    let l = listener();
    let address = l.local_addr().unwrap();
    tokio::spawn(hasher::serve_hasher(
        l,
        "hasher-test".into(),
        hasher::DELAY,
        log,
        std::future::pending(),
    ));
    address
}

fn start_webui(redis: SocketAddr, log: Log) -> SocketAddr {
    let l = listener();
    let address = l.local_addr().unwrap();
    tokio::spawn(webui::serve_webui(
        l,
        webui::RedisSource::new(redis.ip().to_string(), redis.port()),
        log,
        std::future::pending(),
    ));
    address
}

/// A RESP client written for the test: sends raw bytes, reads exactly `expected.len()`
/// bytes back and compares them.
struct Resp(TcpStream);

impl Resp {
    async fn connect(address: SocketAddr) -> Resp {
        Resp(TcpStream::connect(address).await.expect("connect to redis"))
    }

    fn command(args: &[&str]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
        }
        out
    }

    async fn exchange(&mut self, request: &[u8], expected: &[u8]) {
        self.0.write_all(request).await.unwrap();
        let mut got = vec![0u8; expected.len()];
        tokio::time::timeout(Duration::from_secs(5), self.0.read_exact(&mut got))
            .await
            .expect("reply in time")
            .expect("reply");
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(expected),
            "reply to {:?}",
            String::from_utf8_lossy(request)
        );
    }

    /// Sends one command and returns the reply line (and bulk payload) as text.
    async fn call(&mut self, args: &[&str]) -> String {
        self.0.write_all(&Resp::command(args)).await.unwrap();
        let mut reply = Vec::new();
        let mut byte = [0u8; 1];
        while !reply.ends_with(b"\r\n") {
            self.0.read_exact(&mut byte).await.unwrap();
            reply.push(byte[0]);
        }
        let line = String::from_utf8_lossy(&reply).trim_end().to_string();
        if let Some(len) = line.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) {
            let mut body = vec![0u8; len + 2];
            self.0.read_exact(&mut body).await.unwrap();
            return String::from_utf8_lossy(&body[..len]).into_owned();
        }
        line
    }
}

/// One HTTP request on its own connection: `(status, head, body)`.
async fn http(
    address: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("response in time")
        .unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, head, response[split + 4..].to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_answers_like_redis() {
    let redis = start_redis_on(listener());
    let mut c = Resp::connect(redis).await;
    // Pipelined: five commands in one write, multibulk and inline mixed.
    let mut pipeline = Resp::command(&["PING"]);
    pipeline.extend(Resp::command(&["SET", "k", "v"]));
    pipeline.extend(Resp::command(&["GET", "k"]));
    pipeline.extend_from_slice(b"GET k\r\n");
    pipeline.extend(Resp::command(&["GET", "missing"]));
    c.exchange(&pipeline, b"+PONG\r\n+OK\r\n$1\r\nv\r\n$1\r\nv\r\n$-1\r\n")
        .await;
    c.exchange(
        &Resp::command(&["HSET", "wallet", "a", "1", "b", "2"]),
        b":2\r\n",
    )
    .await;
    c.exchange(&Resp::command(&["HLEN", "wallet"]), b":2\r\n")
        .await;
    c.exchange(
        &Resp::command(&["HGETALL", "wallet"]),
        b"*4\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n",
    )
    .await;
    c.exchange(
        &Resp::command(&["GET", "wallet"]),
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
    )
    .await;
    c.exchange(
        &Resp::command(&["LPUSH", "l", "x"]),
        b"-ERR unknown command 'LPUSH', with args beginning with: 'l' 'x' \r\n",
    )
    .await;
    c.exchange(
        &Resp::command(&["GET"]),
        b"-ERR wrong number of arguments for 'get' command\r\n",
    )
    .await;
    c.exchange(&Resp::command(&["INCRBY", "hashes", "5"]), b":5\r\n")
        .await;
    c.exchange(
        &Resp::command(&["KEYS", "*a*"]),
        b"*2\r\n$6\r\nhashes\r\n$6\r\nwallet\r\n",
    )
    .await;
    c.exchange(&Resp::command(&["DBSIZE"]), b":3\r\n").await;
    c.exchange(&Resp::command(&["COMMAND", "DOCS"]), b"*0\r\n")
        .await;
    let info = c.call(&["INFO"]).await;
    assert!(
        info.starts_with("# Server\r\nredis_version:7.4.2\r\n"),
        "{info}"
    );
    assert!(
        info.contains(&format!("tcp_port:{}\r\n", redis.port())),
        "{info}"
    );
    assert!(info.contains("db0:keys=3,expires=0"), "{info}");

    // Concurrent clients: 10 × 50 INCRs.
    let mut tasks = Vec::new();
    for _ in 0..10 {
        tasks.push(tokio::spawn(async move {
            let mut c = Resp::connect(redis).await;
            for _ in 0..50 {
                let n = c.call(&["INCR", "counter"]).await;
                assert!(n.starts_with(':'), "{n}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(c.call(&["GET", "counter"]).await, "500");

    // QUIT answers then closes; a protocol error is answered then closes.
    c.exchange(&Resp::command(&["QUIT"]), b"+OK\r\n").await;
    let mut rest = Vec::new();
    c.0.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    let mut bad = Resp::connect(redis).await;
    bad.exchange(
        b"*1\r\n:1\r\n",
        b"-ERR Protocol error: expected '$', got ':'\r\n",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rng_serves_one_request_at_a_time_and_hasher_does_not() {
    let rng_log = Captured::default();
    let hasher_log = Captured::default();
    let rng = start_rng(rng_log.log());
    let hasher = start_hasher(hasher_log.log());

    let (status, head, body) = http(rng, "GET", "/", b"").await;
    assert_eq!(status, 200);
    assert!(head.starts_with("HTTP/1.0 200 OK"), "{head}");
    assert_eq!(body, b"RNG running on rng-test\n");

    let started = Instant::now();
    let calls: Vec<_> = (0..5)
        .map(|_| tokio::spawn(async move { http(rng, "GET", "/32", b"").await }))
        .collect();
    for call in calls {
        let (status, head, body) = call.await.unwrap();
        assert_eq!(status, 200);
        assert!(
            head.contains("Content-Type: application/octet-stream"),
            "{head}"
        );
        assert_eq!(body.len(), 32);
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(500),
        "rng answered 5 in {took:?}"
    );
    assert!(
        took < Duration::from_millis(1500),
        "rng answered 5 in {took:?}"
    );
    let log = rng_log.text();
    assert_eq!(
        log.matches("\"GET /32 HTTP/1.1\" 200 -\n").count(),
        5,
        "{log}"
    );
    assert!(log.starts_with("127.0.0.1 - - ["), "{log}");

    let (_, _, page) = http(hasher, "GET", "/", b"").await;
    assert_eq!(page, b"HASHER running on hasher-test\n");
    let started = Instant::now();
    let calls: Vec<_> = (0..5u8)
        .map(|i| tokio::spawn(async move { (i, http(hasher, "POST", "/", &[i; 32]).await) }))
        .collect();
    for call in calls {
        let (i, (status, head, body)) = call.await.unwrap();
        assert_eq!(status, 200);
        assert!(
            head.contains("Content-Type: text/plain;charset=utf-8"),
            "{head}"
        );
        assert_eq!(
            String::from_utf8(body).unwrap(),
            hasher::hex_sha256(&[i; 32])
        );
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(100), "hasher took {took:?}");
    assert!(
        took < Duration::from_millis(300),
        "hasher answered 5 in {took:?}"
    );
    let log = hasher_log.text();
    assert_eq!(
        log.matches("\"POST / HTTP/1.1\" 200 64 0.1").count(),
        5,
        "{log}"
    );
}

/// Waits for the `hashes` counter to change: its new value and when it was seen.
async fn next_update(redis: &mut Resp) -> (i64, Instant) {
    let before = hashes(redis).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = hashes(redis).await;
        if now != before {
            return (now, Instant::now());
        }
        assert!(Instant::now() < deadline, "hashes stuck at {before}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Reads the `hashes` counter.
async fn hashes(redis: &mut Resp) -> i64 {
    let text = redis.call(&["GET", "hashes"]).await;
    text.parse().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_mines_recovers_and_webui_reports() {
    let rng = start_rng(Log::to_writer(std::io::sink()));
    let hasher = start_hasher(Log::to_writer(std::io::sink()));
    // Redis's port, not served yet: the worker's first calls are refused.
    let reserved = listener();
    let redis_address = reserved.local_addr().unwrap();
    drop(reserved);

    let worker_log = Captured::default();
    let config = worker::WorkerConfig {
        redis_host: redis_address.ip().to_string(),
        redis_port: redis_address.port(),
        rng_url: HttpUrl::parse(&format!("http://{rng}/32")).unwrap(),
        hasher_url: HttpUrl::parse(&format!("http://{hasher}/")).unwrap(),
        retry: Duration::from_secs(1),
        ..worker::WorkerConfig::default()
    };
    tokio::spawn(worker::work(
        config,
        worker_log.log(),
        std::future::pending(),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = worker_log.text();
    let expected_start = format!(
        "INFO:__main__:0 units of work done, updating hash counter\n\
         ERROR:__main__:In work loop:\n\
         Traceback (most recent call last):\n\
         \x20 File \"worker.py\", line 64, in <module>\n\
         \x20   work_loop()\n\
         \x20 File \"worker.py\", line 40, in work_loop\n\
         \x20   redis.incrby(\"hashes\", loops_done)\n\
         redis.exceptions.ConnectionError: Error 111 connecting to 127.0.0.1:{}. Connection refused.\n\
         ERROR:__main__:Waiting 1s and restarting.\n",
        redis_address.port()
    );
    assert_eq!(log, expected_start);

    // Redis appears; the worker is back within its retry.
    let redis = start_redis_on(StdTcpListener::bind(redis_address).expect("rebind redis port"));
    let webui_log = Captured::default();
    let webui = start_webui(redis, webui_log.log());
    let mut client = Resp::connect(redis).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while hashes(&mut client).await == 0 {
        assert!(
            Instant::now() < deadline,
            "worker did not recover:\n{}",
            worker_log.text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // About 3.3 hashes per second: 0.1 s pause + 0.1 s rng + 0.1 s hasher per unit. The
    // counter moves once a second, so the rate is taken between two of its updates.
    let (first, t0) = next_update(&mut client).await;
    let mut last = (first, t0);
    while last.1 - t0 < Duration::from_secs(5) {
        last = next_update(&mut client).await;
    }
    let rate = (last.0 - first) as f64 / (last.1 - t0).as_secs_f64();
    eprintln!("one worker: {rate:.2} hashes/s");
    assert!((2.8..=5.0).contains(&rate), "rate {rate:.2}/s");

    let log = worker_log.text();
    let after = &log[expected_start.len()..];
    assert!(
        after.starts_with("INFO:__main__:0 units of work done, updating hash counter\n"),
        "{after}"
    );
    assert!(
        after
            .lines()
            .filter_map(|l| l.strip_prefix("INFO:__main__:"))
            .filter_map(|l| l.strip_suffix(" units of work done, updating hash counter"))
            .any(|n| n.parse::<u32>().is_ok_and(|n| (2..=5).contains(&n))),
        "{after}"
    );
    assert!(!after.contains("ERROR"), "{after}");

    // Coins: each `Coin found: <8 hex>...` line names a wallet entry.
    let coins: i64 = client.call(&["HLEN", "wallet"]).await[1..].parse().unwrap();
    let found: Vec<&str> = after
        .lines()
        .filter_map(|l| l.strip_prefix("INFO:__main__:Coin found: "))
        .collect();
    assert!(
        found
            .iter()
            .all(|f| f.len() == 11 && f.starts_with('0') && f.ends_with("..."))
    );
    assert!(
        coins >= found.len() as i64 - 1,
        "{coins} coins, log {found:?}"
    );

    // webui: the same figures.
    let before = hashes(&mut client).await;
    let (status, head, body) = http(webui, "GET", "/json", b"").await;
    let after_count = hashes(&mut client).await;
    assert_eq!(status, 200, "{head}");
    assert!(
        head.contains("Content-Type: application/json; charset=utf-8"),
        "{head}"
    );
    let json = String::from_utf8(body).unwrap();
    let field = |name: &str| -> f64 {
        let start = json.find(&format!("\"{name}\":")).expect(name) + name.len() + 3;
        json[start..]
            .split([',', '}'])
            .next()
            .unwrap()
            .parse()
            .expect("number")
    };
    let reported = field("hashes") as i64;
    assert!(
        (before..=after_count).contains(&reported),
        "{json} vs {before}..{after_count}"
    );
    assert!(field("coins") as i64 >= coins, "{json}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((field("now") - now).abs() < 5.0, "{json}");
    let (status, head, _) = http(webui, "GET", "/", b"").await;
    assert_eq!(status, 302);
    assert!(head.contains("Location: /index.html"), "{head}");
    let (status, _, page) = http(webui, "GET", "/index.html", b"").await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&page).contains("id=\"graph\""));
    assert_eq!(webui_log.text(), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webui_reports_a_missing_redis() {
    let reserved = listener();
    let nowhere = reserved.local_addr().unwrap();
    drop(reserved);
    let log = Captured::default();
    let webui = start_webui(nowhere, log.log());
    let (status, _, _) = http(webui, "GET", "/json", b"").await;
    assert_eq!(status, 503);
    assert!(
        log.text().starts_with(&format!(
            "Redis error Error: Redis connection to 127.0.0.1:{} failed - connect ECONNREFUSED",
            nowhere.port()
        )),
        "{}",
        log.text()
    );
}

/// Set in a child process: the image reference it runs through `images::run`.
const CHILD_IMAGE: &str = "IMAGES_TEST_RUN_IMAGE";
/// Set in a child process: the container's args, space-separated.
const CHILD_ARGS: &str = "IMAGES_TEST_RUN_ARGS";

/// The container half of the tests below: runs `images::run` with the image and args they
/// name and the `DOCKERCOINS_*` variables as the container's environment.
#[test]
fn container_child() {
    let Ok(reference) = std::env::var(CHILD_IMAGE) else {
        return;
    };
    let image = images::lookup(&reference).expect("a built-in image");
    let args: Vec<String> = std::env::var(CHILD_ARGS)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("DOCKERCOINS_") || k == "HOSTNAME")
        .collect();
    let code = images::run(&image, &reference, &[], &args, &env);
    assert_eq!(code, std::process::ExitCode::SUCCESS);
}

/// Runs `reference` as a container process for `run_for`, stops it with SIGTERM and returns
/// its `(stdout, stderr)`; asserts it exited with 0.
fn run_container(
    reference: &str,
    args: &str,
    env: &[(&str, String)],
    run_for: Duration,
) -> (String, String) {
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            "container_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_IMAGE, reference)
        .env(CHILD_ARGS, args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let child = command.spawn().expect("spawn the container");
    std::thread::sleep(run_for);
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let output = child.wait_with_output().expect("container exit");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stdout}\n{stderr}");
    (stdout, stderr)
}

fn free_port() -> SocketAddr {
    let reserved = listener();
    reserved.local_addr().unwrap()
}

#[test]
fn worker_container_logs_and_stops_on_sigterm() {
    let nowhere = free_port();
    let (_, stderr) = run_container(
        "training/dockercoins-worker:1.0",
        "",
        &[
            ("DOCKERCOINS_REDIS", nowhere.to_string()),
            ("DOCKERCOINS_RETRY_SECONDS", "0.2".into()),
        ],
        Duration::from_millis(700),
    );
    assert!(
        stderr.contains(
            "INFO:__main__:0 units of work done, updating hash counter\nERROR:__main__:In work loop:\n"
        ),
        "{stderr}"
    );
    assert!(
        stderr
            .matches("ERROR:__main__:Waiting 0.2s and restarting.")
            .count()
            >= 2,
        "{stderr}"
    );
}

#[test]
fn redis_container_logs_like_the_official_image() {
    let port = free_port().port();
    let reference = "redis:7.2";
    let (stdout, _) = run_container(
        reference,
        &format!("--port {port} --bind 127.0.0.1"),
        &[],
        Duration::from_millis(500),
    );
    // The test harness prints around the container's lines on the same stdout.
    let start = stdout.find("1:C ").expect("redis's first line");
    let stdout = &stdout[start..];
    assert!(
        stdout.starts_with("1:C ")
            && stdout
                .lines()
                .next()
                .unwrap()
                .ends_with(" * oO0OoO0OoO0Oo Redis is starting oO0OoO0OoO0Oo"),
        "{stdout}"
    );
    assert!(stdout.contains("Redis version=7.2.7, bits=64"), "{stdout}");
    assert!(
        stdout.contains(&format!("Running mode=standalone, port={port}.")),
        "{stdout}"
    );
    assert!(
        stdout.contains(" * Ready to accept connections tcp\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Received SIGTERM scheduling shutdown..."),
        "{stdout}"
    );
    assert!(
        stdout.contains(" # Redis is now ready to exit, bye bye...\n"),
        "{stdout}"
    );
}

#[test]
fn rng_container_logs_like_werkzeug() {
    let address = free_port();
    let reference = "dockercoins/rng:v0.1";
    let fetch = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(400));
        let mut stream = std::net::TcpStream::connect(address).expect("rng listening");
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: rng\r\n\r\n")
            .unwrap();
        let mut response = String::new();
        std::io::Read::read_to_string(&mut stream, &mut response).unwrap();
        response
    });
    let (_, stderr) = run_container(
        reference,
        "",
        &[
            ("DOCKERCOINS_LISTEN", address.to_string()),
            ("HOSTNAME", "rng-5d9f8".into()),
        ],
        Duration::from_millis(800),
    );
    let response = fetch.join().unwrap();
    assert!(response.starts_with("HTTP/1.0 200 OK\r\n"), "{response}");
    assert!(
        response.ends_with("\r\n\r\nRNG running on rng-5d9f8\n"),
        "{response}"
    );
    assert!(
        stderr.starts_with(&format!(
            " * Running on http://{address}/ (Press CTRL+C to quit)\n127.0.0.1 - - ["
        )),
        "{stderr}"
    );
    assert!(stderr.ends_with("] \"GET / HTTP/1.1\" 200 -\n"), "{stderr}");
}

/// Everything a server writes before it closes the connection.
async fn exchange(address: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut reply))
        .await
        .expect("the server closes the connection")
        .unwrap();
    String::from_utf8_lossy(&reply).into_owned()
}

/// A malformed request gets a 400 and the connection closed, from each HTTP service, and the
/// service goes on answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_gets_400_and_close() {
    let redis = start_redis_on(listener());
    let servers = [
        ("rng", start_rng(Captured::default().log()), "HTTP/1.0 400"),
        (
            "hasher",
            start_hasher(Captured::default().log()),
            "HTTP/1.1 400",
        ),
        (
            "webui",
            start_webui(redis, Captured::default().log()),
            "HTTP/1.1 400",
        ),
    ];
    for (name, address, status) in servers {
        let reply = exchange(address, b"HELLO\r\n\r\n").await;
        assert!(reply.starts_with(status), "{name}: {reply:?}");
        let reply = exchange(address, b"GET / HTTP/1.0\r\n\r\n").await;
        assert!(
            reply.contains(" 200 ") || reply.contains(" 302 ") || reply.contains(" 301 "),
            "{name} after garbage: {reply:?}"
        );
    }
}
