//! `kubectl exec` end to end on a lab of real nodes, as root, with the real kubectl: the
//! machine's own programs run inside the pod's namespaces with the pod's resolv.conf and
//! hostname, exit codes and stdin pass through, and a TTY session works.
//!
//! Needs root and network namespaces (CI runs as root); fails loudly otherwise.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::reallab::{Lab, text};

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels:\n    app: web\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: nginx\n    image: nginx\n";

/// kubectl of the lab with `stdin` fed to it.
fn kubectl_with_stdin(lab: &Lab, args: &[&str], stdin: &str) -> std::process::Output {
    let mut c = Command::new("kubectl");
    c.args(["--context", &format!("kubelab-{}", lab.name)]);
    c.args(args);
    lab.env(&mut c);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("kubectl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("kubectl")
}

/// Drives `kubectl exec -it` through a pseudo-terminal (python3's pty module): waits for the
/// shell's prompt, types a command, expects its answer, exits.
const TTY_DRIVER: &str = r##"
import os, pty, select, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
out = b""
def read_until(token, timeout):
    global out
    end = time.time() + timeout
    while time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                data = os.read(fd, 4096)
            except OSError:
                return False
            if not data:
                return False
            out += data
            if token in out:
                return True
    return False
prompt = read_until(b"# ", 30)
os.write(fd, b"echo $((6*7)); stty size\r")
answered = read_until(b"\r\n42\r\n", 30)
os.write(fd, b"exit 0\r")
read_until(b"\x00never", 10)
_, status = os.waitpid(pid, 0)
sys.stdout.buffer.write(out)
sys.exit(0 if prompt and answered and os.WEXITSTATUS(status) == 0 else 1)
"##;

#[test]
fn kubectl_exec_runs_the_machines_programs_inside_the_pod() {
    let mut lab = Lab::up("exc1", &[]);
    lab.apply(POD);
    lab.wait_running("app=web", 1, Duration::from_secs(60));

    let resolv = lab.kubectl_ok(&["exec", "web", "--", "cat", "/etc/resolv.conf"]);
    assert!(
        resolv.contains("search default.svc.cluster.local svc.cluster.local cluster.local"),
        "{resolv}"
    );
    assert!(resolv.contains("nameserver 10.96.0.10\n"), "{resolv}");
    assert!(resolv.contains("options ndots:5\n"), "{resolv}");
    let hosts = lab.kubectl_ok(&["exec", "web", "-c", "nginx", "--", "cat", "/etc/hosts"]);
    assert!(
        hosts.starts_with("# Kubernetes-managed hosts file.\n"),
        "{hosts}"
    );
    assert!(hosts.contains("\tweb\n"), "{hosts}");
    assert_eq!(
        lab.kubectl_ok(&["exec", "web", "--", "hostname"]).trim(),
        "web"
    );

    // The pod's own nginx through the pod's loopback.
    let page = lab.kubectl_ok(&["exec", "web", "--", "curl", "-s", "http://127.0.0.1/"]);
    assert!(page.contains("Welcome to nginx!"), "{page}");

    // Exit codes pass through, like upstream.
    let out = lab.kubectl(&[
        "exec",
        "web",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(text(&out), "out\n");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("err\n"),
        "{out:?}"
    );

    // stdin.
    let out = kubectl_with_stdin(&lab, &["exec", "-i", "web", "--", "cat"], "hello\n");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out), "hello\n");

    // The host's files are untouched.
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").expect("host resolv.conf");
    assert!(!host_resolv.contains("10.96.0.10"), "{host_resolv}");

    // A terminal.
    let mut c = Command::new("python3");
    c.args([
        "-c",
        TTY_DRIVER,
        "kubectl",
        "--context",
        &format!("kubelab-{}", lab.name),
        "exec",
        "-it",
        "web",
        "--",
        "sh",
    ]);
    lab.env(&mut c);
    let out = c.output().expect("python3");
    assert!(
        out.status.success(),
        "tty session: {}\n{}",
        text(&out),
        String::from_utf8_lossy(&out.stderr)
    );

    // Errors like upstream.
    let out = lab.kubectl(&["exec", "nosuchpod", "--", "true"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pods \"nosuchpod\" not found"),
        "{out:?}"
    );
    let out = lab.kubectl(&["exec", "web", "-c", "db", "--", "true"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("container db is not valid for pod web"),
        "{out:?}"
    );
    lab.down();
}
