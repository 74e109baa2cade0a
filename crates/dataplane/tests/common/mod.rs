//! Shared helpers of the root tests: unique names and cleanup that also runs on failure.

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};

/// These tests create namespaces and links: they must fail loudly, never skip, without root.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "dataplane root tests need root (CAP_SYS_ADMIN, CAP_NET_ADMIN)"
    );
}

/// A process-unique namespace name with our prefix, so parallel tests and helpers never collide.
pub fn unique(tag: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("kltest-dp-{}-{n}-{tag}", std::process::id())
}

/// Named network namespaces that are deleted when this guard drops (also after a panic).
/// Devices listed in `devices` (namespace, interface) are deleted first, so nothing we made can
/// outlive the test even for the moment the kernel takes to destroy a namespace.
#[derive(Default)]
pub struct Cleanup {
    pub namespaces: Vec<String>,
    pub devices: Vec<(String, String)>,
}

impl Cleanup {
    /// Creates a namespace with a unique name and registers it for deletion.
    pub fn netns(&mut self, tag: &str) -> String {
        let name = unique(tag);
        self.namespaces.push(name.clone());
        dataplane::netns::create(&name).expect("create test netns");
        name
    }

    /// Registers a name for deletion without creating it (the code under test creates it).
    pub fn will_create(&mut self, tag: &str) -> String {
        let name = unique(tag);
        self.namespaces.push(name.clone());
        name
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for (ns, dev) in &self.devices {
            let _ = std::process::Command::new("ip")
                .args(["-n", ns, "link", "del", dev])
                .stderr(std::process::Stdio::null())
                .status();
        }
        for ns in self.namespaces.iter().rev() {
            if let Err(e) = dataplane::netns::delete(ns) {
                eprintln!("cleanup of netns {ns} failed: {e}");
            }
        }
    }
}
