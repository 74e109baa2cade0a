//! Container supervision on a real node: the effectful half of [`crate::lifecycle`].
//!
//! One task per container owns its process (a tokio `Child`, or the pid of a process adopted
//! from an earlier agent, watched through `/proc`), runs its probes, and when the process ends
//! records the exit and applies `restartPolicy` with the crash-loop back-off, restarting it
//! with the kubelet's events. One writer task per pod turns the containers' statuses into the
//! pod's status and patches it (uid precondition), in order, after the kubelet has written the
//! pod's first Running status ([`Supervisors::pod_started`]). Stopping a pod
//! ([`Supervisors::stop`]) aborts all of them first, so a deleted pod is never restarted.
//!
//! How a container is started and where probes run is the runtime's business ([`Spawner`]).

use crate::kubelet::{RuntimeError, container_reference, write_pod_status};
use crate::lifecycle::{
    self, AfterExit, CrashBackoff, Exit, ProbeAction, ProbeKind, ProbeSpec, ProbeTracker,
    RestartPolicy,
};
use controllers::events::Recorder;
use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Client, ResourceExt};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// `User-Agent` of HTTP probes: the kubelet's, for the Kubernetes version kubelab reports.
pub const PROBE_USER_AGENT: &str = "kube-probe/1.33";
/// Longest a container is given to stop after SIGTERM when a probe failure kills it (upstream
/// waits `terminationGracePeriodSeconds`; a lab does not wait 30 s).
pub const MAX_KILL_GRACE: Duration = Duration::from_secs(3);
/// How often an adopted process (not this agent's child) is checked for its exit.
const ADOPTED_POLL: Duration = Duration::from_millis(250);
/// Pause before retrying a failed status write.
const WRITE_RETRY: Duration = Duration::from_secs(1);

/// What the runtime does for the supervisor.
pub trait Spawner: Send + Sync + 'static {
    /// Starts run number `restart_count` (0 for the first) of `container`.
    fn spawn(
        &self,
        pod: &Pod,
        container: &Container,
        restart_count: i32,
    ) -> Result<Spawned, RuntimeError>;
    /// A command that runs `argv` where the container runs (the pod's namespaces, the
    /// container's environment), for exec probes.
    fn probe_command(
        &self,
        pod: &Pod,
        container: &Container,
        argv: &[String],
    ) -> Result<tokio::process::Command, String>;
}

/// A process the runtime started.
pub struct Spawned {
    pub child: tokio::process::Child,
    /// `<runtime>://<id>` of this run.
    pub container_id: String,
}

/// A container's process.
pub enum Process {
    /// This agent's child: its exit code is known.
    Child(tokio::process::Child),
    /// A process an earlier agent started: `pid`, recognised by `marker` in its command line
    /// (so a reused pid is not mistaken for it). Its exit code cannot be had.
    Adopted { pid: u32, marker: Vec<u8> },
}

impl Process {
    fn pid(&self) -> Option<u32> {
        match self {
            Process::Child(c) => c.id(),
            Process::Adopted { pid, .. } => Some(*pid),
        }
    }

    /// Waits for the process to end. Cancel-safe.
    async fn wait(&mut self) -> Exit {
        match self {
            Process::Child(child) => match child.wait().await {
                Ok(status) => exit_of(status),
                Err(_) => Exit::Unknown,
            },
            Process::Adopted { pid, marker } => loop {
                if !is_ours(*pid, marker) {
                    return Exit::Unknown;
                }
                tokio::time::sleep(ADOPTED_POLL).await;
            },
        }
    }
}

/// The exit code a runtime reports: the program's, or 128 + the killing signal.
fn exit_of(status: std::process::ExitStatus) -> Exit {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => Exit::Code(code),
        (None, Some(signal)) => Exit::Code(128 + signal),
        (None, None) => Exit::Unknown,
    }
}

/// Whether `pid` still runs (not a zombie) with `marker` among its arguments.
fn is_ours(pid: u32, marker: &[u8]) -> bool {
    crate::netnode::is_alive(pid)
        && std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a.starts_with(marker)))
}

/// Where a container's supervision begins.
pub enum Start {
    /// Its process runs.
    Running(Process),
    /// Its process is gone and nobody saw the exit (an agent restart).
    Lost,
    /// It should be started again now (it was waiting for a restart when the agent stopped).
    Restart { finished: jiff::Timestamp },
}

/// What a supervised pod shares between its container tasks and its status writer.
struct PodEntry {
    pod: Pod,
    state: Mutex<PodShared>,
    changed: Notify,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

#[derive(Default)]
struct PodShared {
    /// The status last written; `None` until the kubelet wrote the first Running status.
    written: Option<PodStatus>,
    /// The current status of each supervised container.
    containers: HashMap<String, ContainerStatus>,
    pod_ip: Option<IpAddr>,
}

impl PodEntry {
    fn status_of(&self, name: &str) -> Option<ContainerStatus> {
        self.state
            .lock()
            .ok()
            .and_then(|s| s.containers.get(name).cloned())
    }

    /// Applies a transition to container `name` and wakes the writer.
    fn update(&self, name: &str, f: impl FnOnce(&ContainerStatus) -> ContainerStatus) {
        if let Ok(mut s) = self.state.lock()
            && let Some(old) = s.containers.get(name)
        {
            let new = f(old);
            s.containers.insert(name.to_string(), new);
        }
        self.changed.notify_one();
    }

    fn pod_ip(&self) -> Option<IpAddr> {
        self.state.lock().ok().and_then(|s| s.pod_ip)
    }
}

/// The supervised pods of one node.
#[derive(Clone)]
pub struct Supervisors {
    client: Client,
    recorder: Recorder,
    spawner: Arc<dyn Spawner>,
    pods: Arc<Mutex<HashMap<String, Arc<PodEntry>>>>,
}

fn now() -> Time {
    Time(jiff::Timestamp::now())
}

impl Supervisors {
    pub fn new(client: Client, node: &str, spawner: Arc<dyn Spawner>) -> Supervisors {
        Supervisors {
            recorder: Recorder::new(client.clone(), "kubelet", Some(node)),
            client,
            spawner,
            pods: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The entry of `pod`, made (with its status writer) if it is new.
    fn entry(&self, pod: &Pod) -> Option<Arc<PodEntry>> {
        let uid = pod.uid()?;
        let mut pods = self.pods.lock().ok()?;
        if let Some(e) = pods.get(&uid) {
            return Some(e.clone());
        }
        let pod_ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse().ok());
        let entry = Arc::new(PodEntry {
            pod: pod.clone(),
            state: Mutex::new(PodShared {
                pod_ip,
                ..Default::default()
            }),
            changed: Notify::new(),
            tasks: Mutex::new(Vec::new()),
        });
        let writer = tokio::spawn(write_statuses(entry.clone(), self.client.clone()));
        if let Ok(mut t) = entry.tasks.lock() {
            t.push(writer);
        }
        pods.insert(uid, entry.clone());
        Some(entry)
    }

    /// The pod's address, for HTTP and TCP probes (known once its sandbox is made).
    pub fn set_pod_ip(&self, pod: &Pod, ip: IpAddr) {
        if let Some(e) = self.entry(pod)
            && let Ok(mut s) = e.state.lock()
        {
            s.pod_ip = Some(ip);
        }
    }

    /// The status of a supervised container, if it is.
    pub fn container_status(&self, pod: &Pod, container: &str) -> Option<ContainerStatus> {
        let uid = pod.uid()?;
        let entry = self.pods.lock().ok()?.get(&uid).cloned()?;
        entry.status_of(container)
    }

    /// Supervises `container` of `pod` from `start`, its status now being `status`.
    pub fn supervise(
        &self,
        pod: &Pod,
        container: &Container,
        status: ContainerStatus,
        start: Start,
    ) {
        let Some(entry) = self.entry(pod) else {
            return;
        };
        if let Ok(mut s) = entry.state.lock() {
            s.containers.insert(container.name.clone(), status);
        }
        let task = tokio::spawn(supervise(
            Arc::downgrade(&entry),
            ContainerCtx {
                pod: pod.clone(),
                container: container.clone(),
                recorder: self.recorder.clone(),
                spawner: self.spawner.clone(),
            },
            start,
        ));
        if let Ok(mut t) = entry.tasks.lock() {
            t.push(task);
        }
    }

    /// The kubelet wrote `status` (the first Running one, or the status of an adopted pod):
    /// from now on the writer reports the containers' changes.
    pub fn pod_started(&self, pod: &Pod, status: &PodStatus) {
        let Some(entry) = self.entry(pod) else {
            return;
        };
        if let Ok(mut s) = entry.state.lock() {
            s.written = Some(status.clone());
        }
        entry.changed.notify_one();
    }

    /// Stops supervising pod `uid`: no more restarts, probes or status writes.
    pub fn stop(&self, uid: &str) {
        let entry = self.pods.lock().ok().and_then(|mut p| p.remove(uid));
        if let Some(e) = entry
            && let Ok(tasks) = e.tasks.lock()
        {
            for t in tasks.iter() {
                t.abort();
            }
        }
    }
}

/// Writes the pod's status after each change, in order, once the kubelet's first status is
/// written; ends when the pod is gone or replaced (404/409), or is aborted by
/// [`Supervisors::stop`].
async fn write_statuses(entry: Arc<PodEntry>, client: Client) {
    loop {
        entry.changed.notified().await;
        loop {
            let snapshot = entry.state.lock().ok().and_then(|s| {
                s.written
                    .clone()
                    .map(|w| (w, s.containers.values().cloned().collect::<Vec<_>>()))
            });
            let Some((previous, containers)) = snapshot else {
                break;
            };
            let status = lifecycle::pod_status(&entry.pod, &previous, &containers, &now());
            if status == previous {
                break;
            }
            match write_pod_status(&client, &entry.pod, &status).await {
                Ok(()) => {
                    if let Ok(mut s) = entry.state.lock() {
                        s.written = Some(status);
                    }
                    break;
                }
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => return,
                Err(err) => {
                    tracing::warn!(pod = %entry.pod.name_any(), error = %err, "pod status write failed; retrying");
                    tokio::time::sleep(WRITE_RETRY).await;
                }
            }
        }
    }
}

/// What a container's task needs besides its pod entry.
struct ContainerCtx {
    pod: Pod,
    container: Container,
    recorder: Recorder,
    spawner: Arc<dyn Spawner>,
}

impl ContainerCtx {
    fn name(&self) -> &str {
        &self.container.name
    }

    async fn event(&self, warning: bool, reason: &str, message: &str) {
        let reference = container_reference(&self.pod, &self.container.name, false);
        if warning {
            self.recorder.warning(&reference, reason, message).await;
        } else {
            self.recorder.normal(&reference, reason, message).await;
        }
    }

    /// SIGTERM, then SIGKILL after the grace period (capped at [`MAX_KILL_GRACE`]).
    async fn kill(&self, process: &mut Process) -> Exit {
        let grace = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .and_then(|s| u64::try_from(s).ok())
            .map_or(MAX_KILL_GRACE, Duration::from_secs)
            .min(MAX_KILL_GRACE);
        let Some(pid) = process.pid() else {
            return process.wait().await;
        };
        crate::netnode::signal(pid, libc::SIGTERM);
        match tokio::time::timeout(grace, process.wait()).await {
            Ok(exit) => exit,
            Err(_) => {
                crate::netnode::signal_group(pid, libc::SIGKILL);
                process.wait().await
            }
        }
    }
}

/// One probe of the running container.
struct ActiveProbe {
    spec: ProbeSpec,
    tracker: ProbeTracker,
    next: Instant,
}

/// A container's life: watch it, record its exit, back off, restart, until the policy says it
/// stays terminated or the task is aborted.
async fn supervise(entry: std::sync::Weak<PodEntry>, ctx: ContainerCtx, start: Start) {
    enum Next {
        Watch(Process),
        Exited(Exit),
        Restart(jiff::Timestamp),
    }
    let policy = RestartPolicy::of(&ctx.pod);
    let mut backoff = CrashBackoff::default();
    let mut next = match start {
        Start::Running(p) => Next::Watch(p),
        Start::Lost => Next::Exited(Exit::Unknown),
        Start::Restart { finished } => Next::Restart(finished),
    };
    loop {
        next = match next {
            Next::Watch(mut process) => {
                // Only a child's: its pid stays ours until reaped, and so its group id.
                let group = match &process {
                    Process::Child(child) => child.id(),
                    Process::Adopted { .. } => None,
                };
                let exit = watch(&entry, &ctx, &mut process).await;
                if let Some(pgid) = group {
                    // What the program left behind dies with it, as in a container.
                    crate::netnode::signal_group(pgid, libc::SIGKILL);
                }
                Next::Exited(exit)
            }
            Next::Exited(exit) => {
                let Some(e) = entry.upgrade() else {
                    return;
                };
                let finished = now();
                e.update(ctx.name(), |s| lifecycle::exited(s, exit, &finished));
                tracing::info!(pod = %ctx.pod.name_any(), container = %ctx.name(), ?exit, "container exited");
                match lifecycle::after_exit(policy, exit, &backoff, finished.0) {
                    AfterExit::Stay => return,
                    AfterExit::Restart(delay) if delay.is_zero() => Next::Restart(finished.0),
                    AfterExit::Restart(delay) => {
                        e.update(ctx.name(), |s| lifecycle::backing_off(s, delay, &ctx.pod));
                        drop(e);
                        ctx.event(
                            true,
                            "BackOff",
                            &lifecycle::backoff_event_message(ctx.name(), &ctx.pod),
                        )
                        .await;
                        tokio::time::sleep(delay).await;
                        Next::Restart(finished.0)
                    }
                }
            }
            Next::Restart(finished) => {
                let Some(e) = entry.upgrade() else {
                    return;
                };
                let image = ctx.container.image.clone().unwrap_or_default();
                ctx.event(
                    false,
                    "Pulled",
                    &format!("Container image \"{image}\" already present on machine"),
                )
                .await;
                let restart_count = e
                    .status_of(ctx.name())
                    .map_or(0, |s| s.restart_count)
                    .saturating_add(1);
                let at = now();
                backoff.restarted(finished, at.0);
                match ctx.spawner.spawn(&ctx.pod, &ctx.container, restart_count) {
                    Ok(spawned) => {
                        e.update(ctx.name(), |s| {
                            lifecycle::restarted(s, &ctx.container, &spawned.container_id, &at)
                        });
                        drop(e);
                        ctx.event(
                            false,
                            "Created",
                            &format!("Created container: {}", ctx.name()),
                        )
                        .await;
                        ctx.event(
                            false,
                            "Started",
                            &format!("Started container {}", ctx.name()),
                        )
                        .await;
                        Next::Watch(Process::Child(spawned.child))
                    }
                    Err(err) => {
                        drop(e);
                        ctx.event(true, "Failed", &format!("Error: {}", err.message))
                            .await;
                        // Counts as a run that failed at once, so the back-off grows.
                        Next::Exited(Exit::Code(images::busybox::START_ERROR_EXIT_CODE))
                    }
                }
            }
        };
    }
}

/// Runs the container's probes until its process ends (or a liveness or startup failure has
/// it killed); returns how it ended.
async fn watch(
    entry: &std::sync::Weak<PodEntry>,
    ctx: &ContainerCtx,
    process: &mut Process,
) -> Exit {
    let begun = Instant::now();
    let mut probes: Vec<ActiveProbe> = Vec::new();
    for kind in [
        ProbeKind::Startup,
        ProbeKind::Liveness,
        ProbeKind::Readiness,
    ] {
        let Some(probe) = kind.of(&ctx.container) else {
            continue;
        };
        match ProbeSpec::from_probe(probe, &ctx.container) {
            Ok(spec) => probes.push(ActiveProbe {
                tracker: ProbeTracker::new(kind, &spec),
                next: begun + spec.initial_delay,
                spec,
            }),
            Err(e) => {
                tracing::warn!(pod = %ctx.pod.name_any(), container = %ctx.name(), probe = kind.lower(), error = %e, "probe ignored")
            }
        }
    }
    // A container found already started (adopted) does not run its startup probe again.
    let already_started = entry
        .upgrade()
        .and_then(|e| e.status_of(ctx.name()))
        .is_some_and(|s| s.started == Some(true));
    if already_started {
        for p in probes
            .iter_mut()
            .filter(|p| p.tracker.kind() == ProbeKind::Startup)
        {
            p.tracker.observe(true);
        }
    }
    loop {
        // Liveness and readiness wait for the startup probe's success.
        let started = probes
            .iter()
            .find(|p| p.tracker.kind() == ProbeKind::Startup)
            .is_none_or(|p| p.tracker.result() == Some(true));
        let active = |p: &ActiveProbe| {
            if p.tracker.kind() == ProbeKind::Startup {
                !started
            } else {
                started
            }
        };
        let due = probes.iter().filter(|p| active(p)).map(|p| p.next).min();
        let sleep = async {
            match due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            exit = process.wait() => return exit,
            () = sleep => {}
        }
        let Some(pod_ip) = entry.upgrade().and_then(|e| e.pod_ip()) else {
            // No address yet (or the pod is being stopped): try again a period later.
            for p in probes.iter_mut().filter(|p| p.next <= Instant::now()) {
                p.next = Instant::now() + p.spec.period;
            }
            continue;
        };
        let now_instant = Instant::now();
        let due_kinds: Vec<usize> = (0..probes.len())
            .filter(|i| active(&probes[*i]) && probes[*i].next <= now_instant)
            .collect();
        for i in due_kinds {
            let kind = probes[i].tracker.kind();
            let outcome = run_probe(ctx, &probes[i].spec, pod_ip).await;
            probes[i].next = Instant::now() + probes[i].spec.period;
            if let Err(message) = &outcome {
                ctx.event(
                    true,
                    "Unhealthy",
                    &format!("{} probe failed: {message}", kind.title()),
                )
                .await;
            }
            let changed = probes[i].tracker.observe(outcome.is_ok());
            if matches!(kind, ProbeKind::Liveness | ProbeKind::Startup) && changed == Some(false) {
                ctx.event(
                    false,
                    "Killing",
                    &format!(
                        "Container {} failed {} probe, will be restarted",
                        ctx.name(),
                        kind.lower()
                    ),
                )
                .await;
                return ctx.kill(process).await;
            }
            // The status follows the result (not only its changes: an adopted container's
            // status may say otherwise at first); unchanged statuses are not written.
            if kind != ProbeKind::Liveness
                && let Some(result) = probes[i].tracker.result()
                && let Some(e) = entry.upgrade()
            {
                e.update(ctx.name(), |s| {
                    lifecycle::probed(s, &ctx.container, kind, result)
                });
            }
            if kind == ProbeKind::Startup && changed == Some(true) {
                // Liveness and readiness begin now.
                let start = Instant::now();
                for p in probes
                    .iter_mut()
                    .filter(|p| p.tracker.kind() != ProbeKind::Startup)
                {
                    p.next = start + p.spec.initial_delay;
                }
            }
        }
    }
}

/// One probe attempt: `Ok` on success, else upstream's failure message.
async fn run_probe(ctx: &ContainerCtx, spec: &ProbeSpec, pod_ip: IpAddr) -> Result<(), String> {
    match &spec.action {
        ProbeAction::Http {
            scheme,
            host,
            port,
            path,
            headers,
        } => {
            let host = host.clone().unwrap_or_else(|| pod_ip.to_string());
            http_probe(scheme, &host, *port, path, headers, spec.timeout).await
        }
        ProbeAction::Tcp { host, port } => {
            let host = host.clone().unwrap_or_else(|| pod_ip.to_string());
            tcp_probe(&host, *port, spec.timeout).await
        }
        ProbeAction::Exec { command } => exec_probe(ctx, command, spec.timeout).await,
    }
}

/// Go's wording for a failed dial.
fn dial_error(host: &str, port: u16, e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    let why = match e.kind() {
        ErrorKind::ConnectionRefused => "connect: connection refused".to_string(),
        ErrorKind::HostUnreachable => "connect: no route to host".to_string(),
        ErrorKind::NetworkUnreachable => "connect: network is unreachable".to_string(),
        _ => e.to_string(),
    };
    format!("dial tcp {host}:{port}: {why}")
}

async fn tcp_probe(host: &str, port: u16, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(dial_error(host, port, &e)),
        Err(_) => Err(format!("dial tcp {host}:{port}: i/o timeout")),
    }
}

/// The status code of an HTTP/1.x response's status line.
pub fn parse_status_line(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\n').next()?;
    let text = std::str::from_utf8(line).ok()?;
    let mut words = text.split_whitespace();
    let version = words.next()?;
    if !version.starts_with("HTTP/") {
        return None;
    }
    words.next()?.parse().ok()
}

/// The request an HTTP probe sends (`Host`, `User-Agent`, `Accept` overridable by the probe's
/// headers, as upstream's are).
pub fn probe_request(host: &str, port: u16, path: &str, headers: &[(String, String)]) -> String {
    let mut fields = vec![
        ("Host".to_string(), format!("{host}:{port}")),
        ("User-Agent".to_string(), PROBE_USER_AGENT.to_string()),
        ("Accept".to_string(), "*/*".to_string()),
    ];
    for (name, value) in headers {
        match fields
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(field) => field.1 = value.clone(),
            None => fields.push((name.clone(), value.clone())),
        }
    }
    let mut request = format!("GET {path} HTTP/1.1\r\n");
    for (name, value) in fields {
        request += &format!("{name}: {value}\r\n");
    }
    request += "Connection: close\r\n\r\n";
    request
}

async fn http_probe(
    scheme: &str,
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> Result<(), String> {
    let url = format!("{scheme}://{host}:{port}{path}");
    if scheme != "http" {
        return Err(format!(
            "Get \"{url}\": kubelab's probes speak plain HTTP only"
        ));
    }
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("Get \"{url}\": {}", dial_error(host, port, &e)))?;
        stream
            .write_all(probe_request(host, port, path, headers).as_bytes())
            .await
            .map_err(|e| format!("Get \"{url}\": {e}"))?;
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.contains(&b'\n') && head.len() < 8192 {
            let n = stream
                .read(&mut buf)
                .await
                .map_err(|e| format!("Get \"{url}\": {e}"))?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        parse_status_line(&head).ok_or_else(|| format!("Get \"{url}\": malformed HTTP response"))
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(code)) if (200..400).contains(&code) => Ok(()),
        Ok(Ok(code)) => Err(format!("HTTP probe failed with statuscode: {code}")),
        Ok(Err(message)) => Err(message),
        Err(_) => Err(format!(
            "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        )),
    }
}

async fn exec_probe(ctx: &ContainerCtx, argv: &[String], timeout: Duration) -> Result<(), String> {
    let Some(program) = argv.first() else {
        return Err("the exec probe has no command".into());
    };
    let mut cmd = ctx.spawner.probe_command(&ctx.pod, &ctx.container, argv)?;
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().map_err(|e| {
        let why = if e.kind() == std::io::ErrorKind::NotFound {
            "executable file not found in $PATH".to_string()
        } else {
            e.to_string()
        };
        format!(
            "OCI runtime exec failed: exec failed: unable to start container process: exec: \"{program}\": {why}: unknown"
        )
    })?;
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => {
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text += &String::from_utf8_lossy(&out.stderr);
            Err(text.trim_end().to_string())
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("command \"{}\" timed out", argv.join(" "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(
            parse_status_line(b"HTTP/1.1 200 OK\r\nServer: x"),
            Some(200)
        );
        assert_eq!(parse_status_line(b"HTTP/1.0 404 Not Found\r\n"), Some(404));
        assert_eq!(parse_status_line(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status_line(b""), None);
    }

    #[test]
    fn probe_requests_carry_the_kubelets_user_agent() {
        let r = probe_request(
            "192.168.0.5",
            8080,
            "/healthz",
            &[
                ("X-Probe".into(), "1".into()),
                ("accept".into(), "text/plain".into()),
            ],
        );
        assert!(r.starts_with("GET /healthz HTTP/1.1\r\n"), "{r}");
        assert!(r.contains("Host: 192.168.0.5:8080\r\n"), "{r}");
        assert!(r.contains("User-Agent: kube-probe/1.33\r\n"), "{r}");
        assert!(r.contains("Accept: text/plain\r\n"), "{r}");
        assert!(r.contains("X-Probe: 1\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\n"));
    }

    /// HTTP and TCP probes against loopback servers: success, an error status, refusal.
    #[tokio::test]
    async fn http_and_tcp_probes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            for code in [204, 500] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap();
                let request = String::from_utf8_lossy(&buf[..n]).into_owned();
                assert!(request.contains("User-Agent: kube-probe/1.33"), "{request}");
                s.write_all(format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await
                    .unwrap();
            }
            listener
        });
        let t = Duration::from_secs(2);
        assert_eq!(
            http_probe("http", "127.0.0.1", port, "/", &[], t).await,
            Ok(())
        );
        assert_eq!(
            http_probe("http", "127.0.0.1", port, "/", &[], t).await,
            Err("HTTP probe failed with statuscode: 500".into())
        );
        let listener = server.await.unwrap();
        assert_eq!(tcp_probe("127.0.0.1", port, t).await, Ok(()));
        drop(listener);
        let refused = tcp_probe("127.0.0.1", port, t).await.unwrap_err();
        assert_eq!(
            refused,
            format!("dial tcp 127.0.0.1:{port}: connect: connection refused")
        );
        let refused = http_probe("http", "127.0.0.1", port, "/x", &[], t)
            .await
            .unwrap_err();
        assert_eq!(
            refused,
            format!(
                "Get \"http://127.0.0.1:{port}/x\": dial tcp 127.0.0.1:{port}: connect: connection refused"
            )
        );
    }
}
