//! The log shim in a real process: this test binary runs itself again as the "container"
//! (the shim takes over fds 1 and 2, which must not be the test harness's own), prints on
//! both streams, starts a child that inherits them, and exits; the log file must hold every
//! line as a CRI entry.

use images::logfile::{self, Entry, LogStream, ReadOptions};
use std::io::Write;
use std::process::Command;

const CHILD_ENV: &str = "IMAGES_TEST_SHIM_LOG";

/// The "container" half; does nothing unless started by `shim_writes_cri_lines`.
#[test]
fn shim_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let guard = logfile::install_shim(std::path::Path::new(&path)).expect("install shim");
    println!("hello from stdout");
    eprintln!("hello from stderr");
    let long = "y".repeat(logfile::MAX_ENTRY_CONTENT + 10);
    println!("{long}");
    let status = Command::new("sh")
        .args(["-c", "echo from a child process; echo child error >&2"])
        .status()
        .expect("run sh");
    assert!(status.success());
    print!("no newline at exit");
    let _ = std::io::stdout().flush();
    drop(guard);
}

#[test]
fn shim_writes_cri_lines() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = logfile::container_log_path(dir.path(), "default", "web", "u1", "nginx", 0);
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "shim_child", "--test-threads=1", "--nocapture"])
        .env(CHILD_ENV, &path)
        .output()
        .expect("run the child");
    assert!(out.status.success(), "child failed: {out:?}");
    let raw = std::fs::read(&path).expect("log file written");
    let entries: Vec<Entry> = raw
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(Entry::parse)
        .collect();
    let has = |stream: LogStream, content: &str| {
        entries
            .iter()
            .any(|e| e.stream == stream && e.content == content.as_bytes())
    };
    assert!(has(LogStream::Stdout, "hello from stdout"), "{entries:?}");
    assert!(has(LogStream::Stderr, "hello from stderr"));
    assert!(has(LogStream::Stdout, "from a child process"));
    assert!(has(LogStream::Stderr, "child error"));
    let last = entries
        .iter()
        .rfind(|e| e.stream == LogStream::Stdout)
        .expect("stdout entries");
    assert_eq!(last.content, b"no newline at exit");
    assert!(last.partial, "an unfinished last line is a P entry");
    assert!(
        entries
            .iter()
            .any(|e| e.partial && e.content.len() == logfile::MAX_ENTRY_CONTENT)
    );

    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&path).expect("metadata").permissions(),
    );
    assert_eq!(mode & 0o777, 0o640);

    // What kubectl logs prints: the long line whole again.
    let text = String::from_utf8(logfile::read(&path, &ReadOptions::default()).expect("read"))
        .expect("utf-8");
    assert!(text.contains(&format!(
        "{}\n",
        "y".repeat(logfile::MAX_ENTRY_CONTENT + 10)
    )));
    assert!(text.ends_with("no newline at exit"), "{text:?}");
}
