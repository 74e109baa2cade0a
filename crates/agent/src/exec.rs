//! The kubelet's exec endpoint, `GET /exec/{namespace}/{pod}/{container}?command=..&stdin=1..`,
//! which the API server's `pods/exec` proxies to: a WebSocket speaking Kubernetes' remote
//! command protocol (`v5.channel.k8s.io`, or `v4.channel.k8s.io`), over which the machine's own
//! program runs inside the pod (its network and UTS namespaces and a private mount namespace
//! with the pod's `/etc/resolv.conf`, `/etc/hosts`, `/etc/hostname`), since built-in images
//! carry no filesystem.
//!
//! The protocol (apimachinery's `wsstream`, client-go's websocket executor): binary messages
//! whose first byte names a channel: 0 stdin, 1 stdout, 2 stderr, 3 error (one `Status`
//! JSON when the command ends: `Success`, or `Failure` with reason `NonZeroExitCode` and an
//! `ExitCode` cause), 4 resize (`{"Width":..,"Height":..}`); v5 adds 255, "close channel N"
//! (`[255, 0]`: stdin ended). With `tty=1` the command gets a pseudo-terminal whose output is
//! channel 1.
//!
//! Plain HTTP like the log endpoint (see [`crate::logserver`]).

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// The remote command protocols served, best first.
pub const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

/// Channel numbers of the remote command protocol.
pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;
/// v5: `[CLOSE, channel]` says the sender is done with that channel.
pub const CLOSE: u8 = 255;

/// How long output is still collected after the command exited (a background process may
/// hold its stdout open forever).
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

/// Where the exec endpoint finds pods: the node's state, as [`crate::netnode`] lays it out.
#[derive(Debug, Clone)]
pub struct ExecConfig {
    /// `<root>/<namespace>_<pod>_<uid>/...`: how a pod's uid is found from its name.
    pub logs_root: PathBuf,
    /// `pods/<uid>/`: pid files, the UTS namespace, the pod's files.
    pub pods_dir: PathBuf,
    /// Pod network namespaces are this plus the pod's uid.
    pub pod_netns_prefix: String,
}

/// What the client asked for, decoded from the query like the kubelet's `NewOptions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// Why a request is refused before any upgrade, with the kubelet's status and text.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    #[error("{0}")]
    BadRequest(String),
    #[error("pod does not exist")]
    PodNotFound,
    #[error("container not found ({0:?})")]
    ContainerNotFound(String),
}

impl IntoResponse for ExecError {
    fn into_response(self) -> Response {
        let status = match self {
            ExecError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ExecError::PodNotFound => StatusCode::NOT_FOUND,
            // The kubelet's `streaming.WriteError` for a plain error.
            ExecError::ContainerNotFound(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, self.to_string()).into_response()
    }
}

/// Go's `strconv.ParseBool`, as the query decoder reads flags; anything else is false.
fn flag(value: &str) -> bool {
    matches!(value, "1" | "t" | "T" | "true" | "TRUE" | "True")
}

impl ExecRequest {
    /// Decodes `command=..&command=..&stdin=1&...` (pairs in query order).
    pub fn from_query(pairs: &[(String, String)]) -> Result<ExecRequest, ExecError> {
        let mut request = ExecRequest {
            command: Vec::new(),
            stdin: false,
            stdout: false,
            stderr: false,
            tty: false,
        };
        for (key, value) in pairs {
            match key.as_str() {
                "command" => request.command.push(value.clone()),
                "stdin" | "input" => request.stdin = flag(value),
                "stdout" | "output" => request.stdout = flag(value),
                "stderr" | "error" => request.stderr = flag(value),
                "tty" => request.tty = flag(value),
                _ => {}
            }
        }
        if request.command.is_empty() {
            return Err(ExecError::BadRequest(
                "you must specify at least one command for the container".into(),
            ));
        }
        if !(request.stdin || request.stdout || request.stderr) {
            return Err(ExecError::BadRequest(
                "you must specify at least 1 of stdin, stdout, stderr".into(),
            ));
        }
        // Like the kubelet: a terminal has one output stream.
        if request.tty {
            request.stderr = false;
        }
        Ok(request)
    }
}

/// A message from the client, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    Stdin(Bytes),
    Resize {
        width: u16,
        height: u16,
    },
    /// v5: the client is done with this channel.
    Close(u8),
    /// Empty, or a channel the client does not write: ignored.
    Ignored,
}

/// Decodes one binary message from the client.
pub fn decode_client_frame(message: &Bytes) -> ClientFrame {
    match message.first() {
        Some(&STDIN) => ClientFrame::Stdin(message.slice(1..)),
        Some(&RESIZE) => {
            let size: Value = serde_json::from_slice(&message[1..]).unwrap_or(Value::Null);
            let dim = |k: &str| {
                size.get(k)
                    .and_then(Value::as_u64)
                    .and_then(|n| u16::try_from(n).ok())
            };
            match (dim("Width"), dim("Height")) {
                (Some(width), Some(height)) => ClientFrame::Resize { width, height },
                _ => ClientFrame::Ignored,
            }
        }
        Some(&CLOSE) => match message.get(1) {
            Some(ch) => ClientFrame::Close(*ch),
            None => ClientFrame::Ignored,
        },
        _ => ClientFrame::Ignored,
    }
}

/// One message to the client on `channel`.
pub fn encode_frame(channel: u8, data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(data.len() + 1);
    out.push(channel);
    out.extend_from_slice(data);
    Bytes::from(out)
}

/// How the command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Exited with this code (killed by signal N: 128 + N, as runc reports it).
    Exited(i32),
    /// Could not be started.
    NotStarted(String),
}

/// The `Status` the kubelet writes on the error channel for `outcome`.
pub fn exit_status(outcome: &Outcome, command: &[String]) -> Value {
    match outcome {
        Outcome::Exited(0) => json!({"metadata": {}, "status": "Success"}),
        Outcome::Exited(code) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!(
                "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
                command.join(" ")
            ),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Outcome::NotStarted(why) => {
            let message = format!("error executing command in container: {why}");
            json!({
                "metadata": {},
                "status": "Failure",
                "message": format!("Internal error occurred: {message}"),
                "reason": "InternalError",
                "details": {"causes": [{"message": message}]},
                "code": 500,
            })
        }
    }
}

/// A located, running container of this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub uid: String,
    pub pod_dir: PathBuf,
    pub netns: String,
    /// The container's environment as it was started with.
    pub env: Vec<(String, String)>,
}

/// Finds the pod `namespace/pod` on this node (by its log directory `<ns>_<pod>_<uid>` whose
/// sandbox still exists; the newest if a pod of that name was recreated) and checks that
/// `container` runs.
pub fn locate(
    config: &ExecConfig,
    namespace: &str,
    pod: &str,
    container: &str,
) -> Result<Target, ExecError> {
    let prefix = format!("{namespace}_{pod}_");
    let mut candidates: Vec<(std::time::SystemTime, String)> = std::fs::read_dir(&config.logs_root)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_str()?.to_string();
                    let uid = name.strip_prefix(&prefix)?.to_string();
                    if uid.is_empty() || uid.contains('_') {
                        return None;
                    }
                    let modified = std::fs::metadata(config.pods_dir.join(&uid))
                        .ok()?
                        .modified()
                        .ok()?;
                    Some((modified, uid))
                })
                .collect()
        })
        .unwrap_or_default();
    candidates.sort();
    let (_, uid) = candidates.pop().ok_or(ExecError::PodNotFound)?;
    let pod_dir = config.pods_dir.join(&uid);
    let pid = std::fs::read_to_string(pod_dir.join(format!("{container}.pid")))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    if !pid.is_some_and(crate::netnode::is_alive) {
        return Err(ExecError::ContainerNotFound(container.to_string()));
    }
    let env = std::fs::read(pod_dir.join(format!("{container}.env")))
        .ok()
        .and_then(|b| serde_json::from_slice::<Vec<(String, String)>>(&b).ok())
        .unwrap_or_else(|| {
            vec![(
                "PATH".into(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            )]
        });
    Ok(Target {
        netns: format!("{}{uid}", config.pod_netns_prefix),
        uid,
        pod_dir,
        env,
    })
}

/// The axum handler body: validates, then upgrades and runs the session.
pub async fn handle(
    config: &ExecConfig,
    (namespace, pod, container): (String, String, String),
    pairs: Vec<(String, String)>,
    ws: Option<WebSocketUpgrade>,
) -> Response {
    let request = match ExecRequest::from_query(&pairs) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let target = match locate(config, &namespace, &pod, &container) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let Some(ws) = ws else {
        return ExecError::BadRequest(
            "exec needs a WebSocket upgrade (v5.channel.k8s.io or v4.channel.k8s.io)".into(),
        )
        .into_response();
    };
    let ws = ws.protocols(PROTOCOLS);
    let Some(protocol) = ws
        .selected_protocol()
        .and_then(|p| p.to_str().ok())
        .map(str::to_string)
    else {
        return ExecError::BadRequest(format!(
            "none of the requested subprotocols is supported; this kubelet speaks {}",
            PROTOCOLS.join(", ")
        ))
        .into_response();
    };
    let v5 = protocol == PROTOCOLS[0];
    ws.on_upgrade(move |socket| async move {
        session(socket, request, target, v5).await;
    })
}

/// A started command: its output sources, where stdin goes, and how to wait for it.
struct Running {
    child: tokio::process::Child,
    /// Output readers with their channel.
    outputs: Vec<(u8, Box<dyn AsyncRead + Send + Unpin>)>,
    stdin: Option<Box<dyn tokio::io::AsyncWrite + Send + Unpin>>,
    /// The terminal's master side, for resizes.
    pty: Option<std::sync::Arc<OwnedFd>>,
}

fn spawn(request: &ExecRequest, target: &Target) -> Result<Running, String> {
    let plan = crate::podfiles::mount_plan(&target.pod_dir).map_err(|e| e.to_string())?;
    let fds = dataplane::netns::NsFds::open(
        &dataplane::netns::path(&target.netns),
        Some(&target.pod_dir.join("uts")),
    )
    .map_err(|e| format!("entering the pod: {e}"))?
    .with_mounts(plan);
    let (program, args) = request
        .command
        .split_first()
        .ok_or_else(|| "no command".to_string())?;
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(target.env.iter().map(|(k, v)| (k, v)))
        .current_dir("/");
    fds.apply_to(&mut cmd);
    let not_started = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "failed to exec in container: exec: {program:?}: executable file not found in $PATH"
            )
        } else {
            format!("failed to exec in container: exec: {program:?}: {e}")
        }
    };
    if request.tty {
        cmd.env("TERM", "xterm");
        let (master, slave) = open_pty()?;
        let slave_fd = slave.as_raw_fd();
        let io = |fd: &OwnedFd| -> Result<std::process::Stdio, String> {
            fd.try_clone()
                .map(std::process::Stdio::from)
                .map_err(|e| e.to_string())
        };
        cmd.stdin(io(&slave)?)
            .stdout(io(&slave)?)
            .stderr(io(&slave)?);
        let hook = move || -> std::io::Result<()> {
            // SAFETY: setsid and ioctl on an fd the child inherited; no allocation.
            unsafe {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        };
        // SAFETY: the hook only makes async-signal-safe system calls.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, hook);
        }
        let _ = slave_fd;
        let child = tokio::process::Command::from(cmd)
            .spawn()
            .map_err(not_started)?;
        drop(slave);
        let master = std::sync::Arc::new(master);
        let reader = tokio::fs::File::from_std(std::fs::File::from(
            master.try_clone().map_err(|e| e.to_string())?,
        ));
        let writer = tokio::fs::File::from_std(std::fs::File::from(
            master.try_clone().map_err(|e| e.to_string())?,
        ));
        return Ok(Running {
            child,
            outputs: vec![(STDOUT, Box::new(reader))],
            stdin: request.stdin.then(|| Box::new(writer) as _),
            pty: Some(master),
        });
    }
    let piped = |on: bool| {
        if on {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        }
    };
    cmd.stdin(piped(request.stdin))
        .stdout(piped(request.stdout))
        .stderr(piped(request.stderr));
    // Its own group, so what it starts ends with it when the client goes away.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = tokio::process::Command::from(cmd)
        .spawn()
        .map_err(not_started)?;
    let mut outputs: Vec<(u8, Box<dyn AsyncRead + Send + Unpin>)> = Vec::new();
    if let Some(out) = child.stdout.take() {
        outputs.push((STDOUT, Box::new(out)));
    }
    if let Some(err) = child.stderr.take() {
        outputs.push((STDERR, Box::new(err)));
    }
    let stdin = child.stdin.take().map(|s| Box::new(s) as _);
    Ok(Running {
        child,
        outputs,
        stdin,
        pty: None,
    })
}

/// A new pseudo-terminal pair (master, slave), both close-on-exec.
fn open_pty() -> Result<(OwnedFd, OwnedFd), String> {
    let mut master: libc::c_int = -1;
    let mut slave: libc::c_int = -1;
    // SAFETY: openpty writes two fds into the out-pointers; name, termios and winsize may be NULL.
    let r = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if r < 0 {
        return Err(format!("openpty: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: fresh fds owned by nobody else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    for fd in [&master, &slave] {
        // SAFETY: fcntl on a valid fd.
        unsafe {
            libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
    Ok((master, slave))
}

fn resize(pty: &OwnedFd, width: u16, height: u16) {
    let size = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize we own for the duration of the call.
    unsafe {
        libc::ioctl(pty.as_raw_fd(), libc::TIOCSWINSZ, &size);
    }
}

/// Runs one exec session over an upgraded connection until the command ends or the client
/// goes away (then the command is killed).
async fn session(socket: WebSocket, request: ExecRequest, target: Target, v5: bool) {
    let (mut sink, mut incoming) = socket.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(64);
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            let closing = matches!(m, Message::Close(_));
            if sink.send(m).await.is_err() || closing {
                break;
            }
        }
        let _ = sink.flush().await;
    });
    let finish = |out_tx: mpsc::Sender<Message>, status: Value| async move {
        let body = serde_json::to_vec(&status).unwrap_or_default();
        let _ = out_tx
            .send(Message::Binary(encode_frame(ERROR, &body)))
            .await;
        let _ = out_tx
            .send(Message::Close(Some(CloseFrame {
                code: 1000,
                reason: "".into(),
            })))
            .await;
    };
    let spawned = {
        let (request, target) = (request.clone(), target.clone());
        tokio::task::spawn_blocking(move || spawn(&request, &target))
            .await
            .unwrap_or_else(|e| Err(e.to_string()))
    };
    let mut running = match spawned {
        Ok(r) => r,
        Err(why) => {
            tracing::info!(pod = %target.uid, error = %why, "exec failed to start");
            finish(
                out_tx,
                exit_status(&Outcome::NotStarted(why), &request.command),
            )
            .await;
            let _ = writer.await;
            return;
        }
    };
    let pid = running.child.id();
    let mut readers = Vec::new();
    for (channel, mut source) in std::mem::take(&mut running.outputs) {
        let tx = out_tx.clone();
        readers.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match source.read(&mut buf).await {
                    // EIO: the terminal's last user closed it.
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx
                            .send(Message::Binary(encode_frame(channel, &buf[..n])))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                }
            }
        }));
    }
    let (stdin_tx, mut stdin_rx) = mpsc::unbounded_channel::<Bytes>();
    let stdin_task = running.stdin.take().map(|mut sink| {
        tokio::spawn(async move {
            while let Some(data) = stdin_rx.recv().await {
                if sink.write_all(&data).await.is_err() || sink.flush().await.is_err() {
                    break;
                }
            }
            let _ = sink.shutdown().await;
        })
    });
    let mut stdin_tx = Some(stdin_tx);
    let status = loop {
        tokio::select! {
            status = running.child.wait() => break status,
            message = incoming.next() => match message {
                Some(Ok(Message::Binary(data))) => match decode_client_frame(&data) {
                    ClientFrame::Stdin(bytes) => {
                        if let Some(tx) = &stdin_tx {
                            let _ = tx.send(bytes);
                        }
                    }
                    ClientFrame::Resize { width, height } => {
                        if let Some(pty) = &running.pty {
                            resize(pty, width, height);
                        }
                    }
                    ClientFrame::Close(STDIN) if v5 => {
                        if running.pty.is_some() {
                            // A terminal's end of input is its EOF character.
                            if let Some(tx) = &stdin_tx {
                                let _ = tx.send(Bytes::from_static(b"\x04"));
                            }
                        } else {
                            stdin_tx = None;
                        }
                    }
                    _ => {}
                },
                Some(Ok(_)) => {}
                // The client went away: end the command and what it started.
                Some(Err(_)) | None => {
                    if let Some(pid) = pid {
                        crate::netnode::signal_group(pid, libc::SIGKILL);
                        crate::netnode::signal(pid, libc::SIGKILL);
                    }
                    let _ = running.child.wait().await;
                    for r in &readers {
                        r.abort();
                    }
                    drop(out_tx);
                    writer.abort();
                    return;
                }
            },
        }
    };
    drop(stdin_tx);
    if let Some(task) = stdin_task {
        task.abort();
    }
    // The output that is still in the pipes, within a bound.
    let drained = async {
        for r in readers.iter_mut() {
            let _ = r.await;
        }
    };
    if tokio::time::timeout(OUTPUT_DRAIN, drained).await.is_err() {
        for r in &readers {
            r.abort();
        }
    }
    let outcome = match status {
        Ok(s) => {
            use std::os::unix::process::ExitStatusExt;
            Outcome::Exited(s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)))
        }
        Err(e) => Outcome::NotStarted(e.to_string()),
    };
    finish(out_tx, exit_status(&outcome, &request.command)).await;
    let _ = writer.await;
}

/// Where a pod's container environment is kept for exec (written when the container starts).
pub fn env_file(pod_dir: &Path, container: &str) -> PathBuf {
    pod_dir.join(format!("{container}.env"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn query_like_the_kubelet() {
        let r = ExecRequest::from_query(&pairs(&[
            ("command", "sh"),
            ("command", "-c"),
            ("command", "exit 3"),
            ("stdin", "true"),
            ("stdout", "1"),
            ("stderr", "true"),
            ("tty", "true"),
        ]))
        .expect("valid");
        assert_eq!(r.command, vec!["sh", "-c", "exit 3"]);
        assert!(r.stdin && r.stdout && r.tty);
        assert!(!r.stderr, "a terminal has no separate stderr");
        assert_eq!(
            ExecRequest::from_query(&pairs(&[("stdout", "1")])),
            Err(ExecError::BadRequest(
                "you must specify at least one command for the container".into()
            ))
        );
        assert_eq!(
            ExecRequest::from_query(&pairs(&[("command", "ls")])),
            Err(ExecError::BadRequest(
                "you must specify at least 1 of stdin, stdout, stderr".into()
            ))
        );
    }

    #[test]
    fn frames_carry_their_channel_first() {
        assert_eq!(&encode_frame(STDOUT, b"hi")[..], b"\x01hi");
        assert_eq!(
            decode_client_frame(&Bytes::from_static(b"\x00hello")),
            ClientFrame::Stdin(Bytes::from_static(b"hello"))
        );
        assert_eq!(
            decode_client_frame(&Bytes::from_static(b"\x04{\"Width\":120,\"Height\":40}")),
            ClientFrame::Resize {
                width: 120,
                height: 40
            }
        );
        assert_eq!(
            decode_client_frame(&Bytes::from_static(b"\xff\x00")),
            ClientFrame::Close(STDIN)
        );
        for ignored in [&b""[..], b"\x04not json", b"\xff", b"\x07x"] {
            assert_eq!(
                decode_client_frame(&Bytes::copy_from_slice(ignored)),
                ClientFrame::Ignored
            );
        }
    }

    #[test]
    fn exit_statuses_as_kubectl_reads_them() {
        let cmd = vec!["sh".to_string(), "-c".into(), "exit 3".into()];
        assert_eq!(
            exit_status(&Outcome::Exited(0), &cmd),
            json!({"metadata": {}, "status": "Success"})
        );
        let failed = exit_status(&Outcome::Exited(3), &cmd);
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(
            failed["details"]["causes"],
            json!([{"reason": "ExitCode", "message": "3"}])
        );
        assert_eq!(
            failed["message"],
            "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3"
        );
        let not_started = exit_status(&Outcome::NotStarted("no such file".into()), &cmd);
        assert_eq!(not_started["reason"], "InternalError");
    }

    #[test]
    fn pods_are_found_by_name_through_their_log_directory() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = ExecConfig {
            logs_root: dir.path().join("logs"),
            pods_dir: dir.path().join("pods"),
            pod_netns_prefix: "lab.pod.".into(),
        };
        std::fs::create_dir_all(config.logs_root.join("default_web_u1/nginx")).expect("mkdir");
        std::fs::create_dir_all(config.pods_dir.join("u1")).expect("mkdir");
        // Our own pid stands for a live container process.
        std::fs::write(
            config.pods_dir.join("u1/nginx.pid"),
            format!("{}\n", std::process::id()),
        )
        .expect("pid");
        std::fs::write(
            env_file(&config.pods_dir.join("u1"), "nginx"),
            r#"[["PATH","/bin"],["A","b"]]"#,
        )
        .expect("env");
        let t = locate(&config, "default", "web", "nginx").expect("found");
        assert_eq!(t.uid, "u1");
        assert_eq!(t.netns, "lab.pod.u1");
        assert_eq!(
            t.env,
            vec![("PATH".into(), "/bin".into()), ("A".into(), "b".into())]
        );
        assert_eq!(
            locate(&config, "default", "db", "nginx"),
            Err(ExecError::PodNotFound)
        );
        assert_eq!(
            locate(&config, "default", "web", "sidecar"),
            Err(ExecError::ContainerNotFound("sidecar".into()))
        );
    }
}
