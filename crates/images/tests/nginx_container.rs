//! `images::run` as a container: this test binary runs itself again inside a network
//! namespace of its own (as root), with the log shim on, the way the node agent starts a
//! container. The real `curl` in the namespace gets the page from port 80; SIGTERM ends the
//! container with exit code 0; the CRI log holds what the image's version prints (the current
//! image: entrypoint lines, nginx's notices and the access-log line; the course's 1.7.9: the
//! access-log line alone); and the container's memory stays small.

use images::logfile::{self, ReadOptions};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "IMAGES_TEST_CONTAINER_LOG";
const IMAGE_ENV: &str = "IMAGES_TEST_CONTAINER_IMAGE";

/// The "container" half; does nothing unless started by `run_and_stop`.
#[test]
fn container_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let reference = std::env::var(IMAGE_ENV).expect("image reference");
    let guard = logfile::install_shim(std::path::Path::new(&path)).expect("install shim");
    let image = images::lookup(&reference).expect("built-in nginx");
    let code = images::run(&image, &reference, &[], &[], &[]);
    drop(guard);
    assert_eq!(code, std::process::ExitCode::SUCCESS);
}

/// A network namespace named after this test and process, deleted on drop.
struct Netns(String);

impl Netns {
    fn create(tag: &str) -> Netns {
        let name = format!("kltest-img-{}-nginx-{tag}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "cannot create network namespace {name}: this test needs root"
        );
        let ns = Netns(name);
        assert!(
            ns.exec(&["ip", "link", "set", "lo", "up"])
                .status()
                .expect("ip")
                .success()
        );
        ns
    }

    fn exec(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).args(argv);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Kills the container if the test fails before stopping it.
struct Container(Child);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Runs `reference` as a container until curl got the page twice, stops it with SIGTERM and
/// returns its CRI log: the decoded text and the raw file.
fn run_and_stop(reference: &str, tag: &str, page_len: usize) -> (String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = logfile::container_log_path(dir.path(), "default", "web", "u1", "nginx", 0);
    let ns = Netns::create(tag);
    let exe = std::env::current_exe().expect("test binary");
    let exe = exe.to_str().expect("utf-8 path");
    let child = ns
        .exec(&[
            exe,
            "--exact",
            "container_child",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CHILD_ENV, &log)
        .env(IMAGE_ENV, reference)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the container");
    let mut container = Container(child);

    let deadline = Instant::now() + Duration::from_secs(10);
    let page = loop {
        let out = ns
            .exec(&["curl", "-s", "--max-time", "2", "http://127.0.0.1/"])
            .output()
            .expect("curl");
        if out.status.success() {
            break out.stdout;
        }
        assert!(Instant::now() < deadline, "nginx did not answer on port 80");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(page.len(), page_len);
    assert!(
        ns.exec(&["curl", "-s", "-o", "/dev/null", "http://127.0.0.1/"])
            .status()
            .expect("curl")
            .success()
    );

    // `ip netns exec` execs the test binary, so the child's pid is the container's.
    let pid = container.0.id();
    let rss = rss_kib(pid).expect("container RSS");
    eprintln!("container RSS: {rss} KiB");
    assert!(rss < 16 * 1024, "the nginx container uses {rss} KiB");

    // SAFETY: kill on the pid of a child we started and have not reaped.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
    let status = container.0.wait().expect("wait");
    assert!(status.success(), "exit status after SIGTERM: {status}");

    let text = String::from_utf8(logfile::read(&log, &ReadOptions::default()).expect("read log"))
        .expect("utf-8");
    let raw = std::fs::read_to_string(&log).expect("raw log");
    (text, raw)
}

#[test]
fn nginx_runs_as_a_container() {
    let (text, raw) = run_and_stop("nginx:1.27.3", "current", 615);
    assert!(
        text.contains("/docker-entrypoint.sh: Configuration complete; ready for start up\n"),
        "{text}"
    );
    assert!(
        text.contains("[notice]") && text.contains(": nginx/1.27.3\n"),
        "{text}"
    );
    // The entrypoint printed (stdout) before nginx started (stderr); the file keeps that order.
    assert!(
        text.find("ready for start up") < text.find("start worker processes"),
        "{text}"
    );
    assert!(
        text.contains("\"GET / HTTP/1.1\" 200 615 \"-\" \"curl/"),
        "{text}"
    );
    assert!(
        text.contains("signal 15 (SIGTERM) received, exiting"),
        "{text}"
    );
    assert!(
        raw.lines()
            .any(|l| l.contains(" stderr F ") && l.ends_with("start worker processes"))
    );
    assert!(
        raw.lines()
            .any(|l| l.contains(" stdout F ") && l.contains("\"GET / HTTP/1.1\" 200 615"))
    );
}

/// The course's `kubectl logs` of nginx:1.7.9 shows request lines only: that image had no
/// entrypoint and its nginx.conf logged at `warn`, so nothing else reaches the log, not even
/// on SIGTERM.
#[test]
fn the_course_nginx_1_7_9_logs_only_requests() {
    let (text, _) = run_and_stop("nginx:1.7.9", "1-7-9", 612);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    for line in lines {
        assert!(
            line.starts_with("127.0.0.1 - - [")
                && line.contains("] \"GET / HTTP/1.1\" 200 ")
                && line.contains(" \"-\" \"curl/"),
            "{text}"
        );
    }
}
