//! The official Python `kubernetes` client (list, watch, create, patch) against a fresh
//! `kubelab server`. Each test runs one scenario of tests/python/client_scenarios.py, which
//! asserts upstream's answers and exits non-zero on the first difference. A missing
//! `kubernetes` package fails the test: scripts/setup installs it.

mod support;

use std::path::Path;
use std::process::Command;
use support::TestServer;

/// Runs one scenario against a fresh server and fails with its output and the server log.
fn scenario(name: &str) {
    let server = TestServer::start();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/client_scenarios.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(&server.kubeconfig)
        .arg(name)
        // Unbuffered, so output printed before a failure is not lost.
        .env("PYTHONUNBUFFERED", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 {}: {e}", script.display()));
    let log = server.log();
    let log_tail: Vec<&str> = log
        .lines()
        .rev()
        .take(40)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    assert!(
        out.status.success(),
        "python scenario {name:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}\n--- server log (tail)\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        log_tail.join("\n")
    );
}

#[test]
fn python_lists_the_default_namespaces() {
    scenario("namespaces");
}

#[test]
fn python_creates_reads_lists_and_deletes_services() {
    scenario("services");
}

#[test]
fn python_creates_patches_scales_and_replaces_deployments() {
    scenario("deployments");
}

#[test]
fn python_watch_sees_added_modified_deleted() {
    scenario("watch");
}

#[test]
fn python_watch_ends_at_timeout_seconds() {
    scenario("watch-timeout");
}

#[test]
fn python_watch_with_bookmarks_and_initial_events() {
    scenario("bookmarks");
}
