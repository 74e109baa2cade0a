//! Root tests of namespaces, `ip` batches and sysctls against the real kernel.

mod common;

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use common::{Cleanup, require_root};
use dataplane::{DataplaneError, ip, netns, sysctl};

/// The inode that identifies a namespace (what `readlink /proc/self/ns/net` shows as `net:[N]`).
fn ns_inode(path: &Path) -> u64 {
    std::fs::metadata(path).expect("stat namespace").ino()
}

#[test]
fn create_is_like_ip_netns_add_and_idempotent_and_delete_too() {
    require_root();
    let mut cleanup = Cleanup::default();
    let name = cleanup.will_create("ns");

    let path = netns::create(&name).expect("create");
    assert_eq!(path, netns::path(&name));
    let inode = ns_inode(&path);
    assert!(netns::exists(&name));
    // Visible to iproute2 like `ip netns add` made it.
    let listed = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&name));
    assert_eq!(
        netns::list_with_prefix(&name),
        vec![name.clone()],
        "list_with_prefix finds exactly ours"
    );

    // Again: same namespace, not a new one stacked on top.
    netns::create(&name).expect("create again");
    assert_eq!(ns_inode(&path), inode);

    // lo is up inside (UP flag), and the namespace is really separate from ours.
    let lo = block_on(ip::link(&name, "lo"))
        .expect("ip link")
        .expect("lo exists");
    assert!(lo.up, "lo must be up: {lo:?}");
    assert_ne!(inode, ns_inode(Path::new("/proc/self/ns/net")));

    netns::delete(&name).expect("delete");
    assert!(!netns::exists(&name));
    assert!(!path.exists());
    netns::delete(&name).expect("delete of a missing namespace is Ok");
}

/// A tiny executor for the async `ip` helpers in otherwise synchronous tests.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

#[test]
fn uts_namespace_and_nsfds_start_a_child_inside_both() {
    require_root();
    let mut cleanup = Cleanup::default();
    let net = cleanup.netns("child");
    let dir = tempdir();
    let uts = dir.join("uts");
    netns::create_uts(&uts, "kube-test-1").expect("create uts");
    netns::create_uts(&uts, "kube-test-2").expect("create uts again renames");

    let fds = netns::NsFds::open(&netns::path(&net), Some(&uts)).expect("open fds");
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "readlink /proc/self/ns/net; hostname"]);
    fds.apply_to(&mut cmd);
    drop(fds); // the command keeps its own references
    let out = cmd.output().expect("spawn child in namespaces");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let expected_net = format!("net:[{}]", ns_inode(&netns::path(&net)));
    assert_eq!(text, format!("{expected_net}\nkube-test-2\n"));

    // Our own hostname is untouched.
    let ours = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    assert_ne!(ours.trim(), "kube-test-2");

    netns::remove_ns_file(&uts).expect("remove uts");
    assert!(!uts.exists());
    netns::remove_ns_file(&uts).expect("remove missing uts is Ok");
    let _ = std::fs::remove_dir(&dir);
}

/// A fresh per-test directory (no tempfile dependency needed for one dir).
fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(common::unique("dir"));
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}

#[test]
fn in_netns_sockets_and_enter_current_thread_stay_in_the_namespace() {
    require_root();
    let mut cleanup = Cleanup::default();
    let name = cleanup.netns("thread");
    let path = netns::path(&name);
    let inode = ns_inode(&path);

    let seen = netns::in_netns(&path, || ns_inode(Path::new("/proc/thread-self/ns/net")))
        .expect("in_netns");
    assert_eq!(seen, inode);
    // The calling thread did not move.
    assert_ne!(ns_inode(Path::new("/proc/thread-self/ns/net")), inode);

    // A listener made inside is reachable from inside and not from here.
    let listener = netns::in_netns(&path, || std::net::TcpListener::bind("127.0.0.1:0"))
        .expect("in_netns")
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let from_inside = netns::in_netns(&path, || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
        let (mut accepted, _) = listener.accept()?;
        std::io::Write::write_all(&mut accepted, b"hi")?;
        let mut buf = [0u8; 2];
        s.read_exact(&mut buf)?;
        Ok::<_, std::io::Error>(buf)
    })
    .expect("in_netns")
    .expect("talk inside");
    assert_eq!(&from_inside, b"hi");

    // enter_current_thread on a throwaway thread.
    let p = path.clone();
    let entered = std::thread::spawn(move || {
        netns::enter_current_thread(&p, None)
            .map(|()| ns_inode(Path::new("/proc/thread-self/ns/net")))
    })
    .join()
    .expect("thread")
    .expect("enter");
    assert_eq!(entered, inode);

    let missing = netns::in_netns(Path::new("/run/netns/kltest-dp-does-not-exist"), || ());
    assert!(matches!(missing, Err(DataplaneError::Io { .. })));
}

#[test]
fn sysctls_are_per_namespace() {
    require_root();
    let mut cleanup = Cleanup::default();
    let name = cleanup.netns("sysctl");
    let path = netns::path(&name);
    let host_before = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").expect("read");

    sysctl::set(&path, "net.ipv4.ip_forward", "1").expect("set");
    assert_eq!(sysctl::get(&path, "net.ipv4.ip_forward").expect("get"), "1");
    sysctl::set(&path, "net.ipv4.conf.lo.proxy_arp", "1").expect("set per-interface");
    assert_eq!(
        sysctl::get(&path, "net.ipv4.conf.lo.proxy_arp").expect("get"),
        "1"
    );
    assert!(sysctl::exists(&path, "net.ipv4.conf.lo.forwarding").expect("exists"));
    assert!(!sysctl::exists(&path, "net.ipv4.conf.nosuchif.forwarding").expect("exists"));

    let host_after = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").expect("read");
    assert_eq!(host_before, host_after, "the host's sysctl must not change");
    assert!(sysctl::set(&path, "net.ipv4.conf.nosuchif.forwarding", "1").is_err());
}

#[tokio::test]
async fn ip_batch_reports_the_failing_line_and_lenient_continues() {
    require_root();
    let mut cleanup = Cleanup::default();
    let name = cleanup.netns("batch");

    let script =
        "link add dpa type veth peer name dpb\nlink set dev nosuchdev up\nlink set dev dpa up\n";
    let err = ip::batch(Some(&name), script)
        .await
        .expect_err("line 2 fails");
    match &err {
        DataplaneError::IpBatch {
            line,
            command,
            stderr,
            ..
        } => {
            assert_eq!(*line, Some(2));
            assert_eq!(command.as_deref(), Some("link set dev nosuchdev up"));
            assert!(stderr.contains("nosuchdev"), "{stderr}");
        }
        other => panic!("unexpected error {other:?}"),
    }
    // Stopped at line 2: dpa exists but is still down.
    let dpa = ip::link(&name, "dpa")
        .await
        .expect("link")
        .expect("dpa exists");
    assert!(!dpa.up);
    assert_eq!(dpa.kind.as_deref(), Some("veth"));

    let stderr = ip::batch_lenient(
        Some(&name),
        "link set dev nosuchdev up\nlink set dev dpa up\n",
    )
    .await
    .expect("lenient runs");
    assert!(stderr.contains("nosuchdev"), "{stderr}");
    let links = ip::links(&name).await.expect("links");
    let dpa = links.iter().find(|l| l.name == "dpa").expect("dpa listed");
    assert!(dpa.up, "-force went on to line 2");
    assert!(links.iter().any(|l| l.name == "dpb"));
    assert_eq!(ip::link(&name, "nosuchdev").await.expect("query"), None);

    ip::batch(Some(&name), "addr add 10.9.0.1/24 dev dpa\n")
        .await
        .expect("addr");
    let text = ip::route_text(&name).await.expect("route text");
    assert!(
        text.contains("10.9.0.0/24 dev dpa proto kernel scope link src 10.9.0.1"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ip::routes_json(&name).await.expect("json")).expect("valid json");
    assert_eq!(json[0]["dst"], "10.9.0.0/24");
}
