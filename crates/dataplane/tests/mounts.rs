//! Root tests of a pod's private mounts: a child sees the pod's files, the host keeps its own.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Cleanup, require_root};
use dataplane::{mounts::MountPlan, netns};

#[test]
fn a_child_sees_the_pods_files_and_the_host_keeps_its_own() {
    require_root();
    let mut cleanup = Cleanup::default();
    let net = cleanup.netns("mnt");
    let dir = std::env::temp_dir().join(common::unique("mnt-dir"));
    std::fs::create_dir_all(dir.join("sa")).expect("mkdir");
    let resolv = dir.join("resolv.conf");
    std::fs::write(&resolv, "nameserver 10.96.0.10\noptions ndots:5\n").expect("write");
    std::fs::write(dir.join("sa/namespace"), "default").expect("write");
    let host_resolv_before = std::fs::read("/etc/resolv.conf").expect("host resolv.conf");
    let mounts_before = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    // A directory the host does not have: never created on the host.
    let missing = Path::new("/run/kltest-exec-missing/kubernetes.io/serviceaccount");
    assert!(!Path::new("/run/kltest-exec-missing").exists());

    let mut plan = MountPlan::new();
    plan.bind_file(&resolv, Path::new("/etc/resolv.conf"))
        .expect("plan resolv.conf");
    plan.bind_dir(&dir.join("sa"), missing).expect("plan sa");
    let fds = netns::NsFds::open(&netns::path(&net), None)
        .expect("open")
        .with_mounts(plan);
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "cat /etc/resolv.conf; cat /var/run/kltest-exec-missing/kubernetes.io/serviceaccount/namespace; echo; ls -d /run/netns",
    ]);
    fds.apply_to(&mut cmd);
    let out = cmd.output().expect("spawn");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "nameserver 10.96.0.10\noptions ndots:5\ndefault\n/run/netns\n"
    );
    assert_eq!(
        std::fs::read("/etc/resolv.conf").expect("host resolv.conf"),
        host_resolv_before
    );
    assert!(!Path::new("/run/kltest-exec-missing").exists());
    assert_eq!(
        std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo"),
        mounts_before,
        "nothing propagated to the host"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
