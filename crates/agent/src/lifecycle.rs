//! What happens to a container after it starts, decided without doing anything: the pure half
//! of the real node's container supervision ([`crate::supervisor`] carries it out).
//!
//! - status transitions of one container, as `(old status, event, now) → new status`:
//!   [`exited`], [`backing_off`], [`restarted`], [`probed`];
//! - `restartPolicy` ([`RestartPolicy`]) and the kubelet's crash-loop back-off
//!   ([`CrashBackoff`]: restart at once after the first exit, then 10 s doubling to 300 s,
//!   forgotten after a run of 10 minutes);
//! - the pod's phase and status from its containers' ([`pod_phase`], [`pod_status`]);
//! - probes: their settings with upstream's defaults ([`ProbeSpec`]) and the bookkeeping that
//!   turns single results into the container's result ([`ProbeTracker`]).
//!
//! Upstream: `pkg/kubelet/kuberuntime/kuberuntime_manager.go` (`doBackOff`,
//! `computePodActions`), `pkg/kubelet/kubelet_pods.go` (`getPhase`,
//! `convertToAPIContainerStatuses`), `pkg/kubelet/prober/worker.go`, `client-go`'s `Backoff`.

use crate::podstatus::{self, ConditionInputs};
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, Pod, PodStatus, Probe,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use std::time::Duration;

/// The first crash-loop back-off, and its ceiling (the kubelet's defaults).
pub const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Upstream's waiting reason while a crashed container waits for its restart.
pub const CRASH_LOOP_BACK_OFF: &str = "CrashLoopBackOff";
/// Terminated reasons: exit code 0, any other code, and an exit nobody saw.
pub const REASON_COMPLETED: &str = "Completed";
pub const REASON_ERROR: &str = "Error";
pub const REASON_STATUS_UNKNOWN: &str = "ContainerStatusUnknown";
/// What upstream reports for a container that was running and is gone without an exit code
/// (`convertToAPIContainerStatuses`); the exit code is SIGKILL's.
pub const STATUS_UNKNOWN_MESSAGE: &str = "The container could not be located when the pod was deleted.  The container used to be Running";
pub const STATUS_UNKNOWN_EXIT_CODE: i32 = 137;

/// A pod's `restartPolicy` (`Always` when unset).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    pub fn of(pod: &Pod) -> RestartPolicy {
        match pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) {
            Some("OnFailure") => RestartPolicy::OnFailure,
            Some("Never") => RestartPolicy::Never,
            _ => RestartPolicy::Always,
        }
    }

    /// Whether a container that exited with `exit_code` is started again.
    pub fn restarts(self, exit_code: i32) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => exit_code != 0,
            RestartPolicy::Never => false,
        }
    }
}

/// How a container process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// The exit code a runtime reports: the program's, or 128 + the signal that killed it.
    Code(i32),
    /// The process is gone and its exit code was not seen (it was not this agent's child).
    Unknown,
}

/// The crash-loop back-off of one container, as client-go's `Backoff` keeps it for the
/// kubelet: an entry (current delay, time of the last restart) that is created at the first
/// restart, doubles at each later one, and is forgotten when the container ran for more than
/// twice the maximum (10 minutes) before exiting.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CrashBackoff {
    entry: Option<(Duration, jiff::Timestamp)>,
}

impl CrashBackoff {
    fn live_entry(&self, finished: jiff::Timestamp) -> Option<Duration> {
        let (delay, last_restart) = self.entry?;
        let ran = finished.duration_since(last_restart);
        let forget_after = jiff::SignedDuration::try_from(BACKOFF_MAX * 2).unwrap_or_default();
        (ran <= forget_after).then_some(delay)
    }

    /// How long after `finished` (when the container exited) it may be started again: zero
    /// the first time (and after a long run), else the current back-off.
    pub fn delay(&self, finished: jiff::Timestamp) -> Duration {
        self.live_entry(finished).unwrap_or(Duration::ZERO)
    }

    /// Records a restart at `now` of a container that had exited at `finished`.
    pub fn restarted(&mut self, finished: jiff::Timestamp, now: jiff::Timestamp) {
        let delay = match self.live_entry(finished) {
            Some(d) => (d * 2).min(BACKOFF_MAX),
            None => BACKOFF_INITIAL,
        };
        self.entry = Some((delay, now));
    }
}

/// What to do once a container exited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterExit {
    /// Start it again after this long (zero: right away).
    Restart(Duration),
    /// Leave it terminated (the policy says so).
    Stay,
}

/// The decision for a container that ended with `exit` at `finished`. An unknown exit counts as
/// a failure (its reported code is SIGKILL's).
pub fn after_exit(
    policy: RestartPolicy,
    exit: Exit,
    backoff: &CrashBackoff,
    finished: jiff::Timestamp,
) -> AfterExit {
    if policy.restarts(exit_code(exit)) {
        AfterExit::Restart(backoff.delay(finished))
    } else {
        AfterExit::Stay
    }
}

fn exit_code(exit: Exit) -> i32 {
    match exit {
        Exit::Code(c) => c,
        Exit::Unknown => STATUS_UNKNOWN_EXIT_CODE,
    }
}

/// Go's `time.Duration` text for whole seconds, as in upstream's messages: `10s`, `1m20s`,
/// `5m0s`.
pub fn go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    match (secs / 3600, secs / 60 % 60, secs % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

/// `name_namespace(uid)`: how upstream names a pod in its messages (`format.Pod`).
pub fn pod_label(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.name_any(),
        pod.namespace().unwrap_or_default(),
        pod.uid().unwrap_or_default()
    )
}

/// The waiting message of a container in back-off (`doBackOff`).
pub fn backoff_message(delay: Duration, container: &str, pod: &Pod) -> String {
    format!(
        "back-off {} restarting failed container={container} pod={}",
        go_duration(delay),
        pod_label(pod)
    )
}

/// The kubelet's `BackOff` event message.
pub fn backoff_event_message(container: &str, pod: &Pod) -> String {
    format!(
        "Back-off restarting failed container {container} in pod {}",
        pod_label(pod)
    )
}

/// The status of a container whose run number `restart_count` has just started (or was found
/// running): running since `started_at`, started and ready as a new container of `spec` is.
pub fn new_running(
    spec: &Container,
    container_id: &str,
    image_id: &str,
    started_at: &Time,
    restart_count: i32,
) -> ContainerStatus {
    let (started, ready) = podstatus::initial_started_ready(spec);
    ContainerStatus {
        name: spec.name.clone(),
        image: spec.image.clone().unwrap_or_default(),
        image_id: image_id.to_string(),
        container_id: Some(container_id.to_string()),
        restart_count,
        ready,
        started: Some(started),
        state: Some(ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(started_at.clone()),
            }),
            ..Default::default()
        }),
        volume_mounts: podstatus::volume_mounts(spec),
        ..Default::default()
    }
}

fn running_since(status: &ContainerStatus) -> Option<Time> {
    status.state.as_ref()?.running.as_ref()?.started_at.clone()
}

fn current_termination(status: &ContainerStatus) -> Option<&ContainerStateTerminated> {
    status.state.as_ref()?.terminated.as_ref()
}

/// The container's process ended: its state becomes terminated (`Completed` for 0, `Error`
/// otherwise, `ContainerStatusUnknown` with code 137 when nobody saw the exit), not ready, not
/// started.
pub fn exited(old: &ContainerStatus, exit: Exit, now: &Time) -> ContainerStatus {
    let started_at = running_since(old);
    let terminated = match exit {
        Exit::Code(code) => ContainerStateTerminated {
            exit_code: code,
            reason: Some(
                if code == 0 {
                    REASON_COMPLETED
                } else {
                    REASON_ERROR
                }
                .into(),
            ),
            started_at,
            finished_at: Some(now.clone()),
            container_id: old.container_id.clone(),
            ..Default::default()
        },
        Exit::Unknown => ContainerStateTerminated {
            exit_code: STATUS_UNKNOWN_EXIT_CODE,
            reason: Some(REASON_STATUS_UNKNOWN.into()),
            message: Some(STATUS_UNKNOWN_MESSAGE.into()),
            started_at,
            finished_at: Some(now.clone()),
            container_id: old.container_id.clone(),
            ..Default::default()
        },
    };
    ContainerStatus {
        state: Some(ContainerState {
            terminated: Some(terminated),
            ..Default::default()
        }),
        ready: false,
        started: Some(false),
        ..old.clone()
    }
}

/// A terminated container waits `delay` before its restart: `CrashLoopBackOff` with upstream's
/// message, its termination kept as `lastState`.
pub fn backing_off(old: &ContainerStatus, delay: Duration, pod: &Pod) -> ContainerStatus {
    let last_state = match current_termination(old) {
        Some(t) => Some(ContainerState {
            terminated: Some(t.clone()),
            ..Default::default()
        }),
        None => old.last_state.clone(),
    };
    ContainerStatus {
        state: Some(ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(CRASH_LOOP_BACK_OFF.into()),
                message: Some(backoff_message(delay, &old.name, pod)),
            }),
            ..Default::default()
        }),
        last_state,
        ready: false,
        started: Some(false),
        ..old.clone()
    }
}

/// The container was started again at `now` as `container_id`: one more restart, running,
/// its last termination as `lastState`; `started`/`ready` as for a new container of `spec`.
pub fn restarted(
    old: &ContainerStatus,
    spec: &Container,
    container_id: &str,
    now: &Time,
) -> ContainerStatus {
    let last_state = match current_termination(old) {
        Some(t) => Some(ContainerState {
            terminated: Some(t.clone()),
            ..Default::default()
        }),
        None => old.last_state.clone(),
    };
    let (started, ready) = podstatus::initial_started_ready(spec);
    ContainerStatus {
        state: Some(ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(now.clone()),
            }),
            ..Default::default()
        }),
        last_state,
        restart_count: old.restart_count.saturating_add(1),
        container_id: Some(container_id.to_string()),
        ready,
        started: Some(started),
        ..old.clone()
    }
}

/// A probe's result changed for a running container: `Startup` success marks it started (and
/// ready unless it has a readiness probe), `Readiness` sets ready. Only a running container
/// changes; liveness results do not show in the status.
pub fn probed(
    old: &ContainerStatus,
    spec: &Container,
    kind: ProbeKind,
    success: bool,
) -> ContainerStatus {
    if running_since(old).is_none() {
        return old.clone();
    }
    let mut new = old.clone();
    match kind {
        ProbeKind::Startup => {
            new.started = Some(success);
            new.ready = success && spec.readiness_probe.is_none();
        }
        ProbeKind::Readiness => new.ready = success && old.started != Some(false),
        ProbeKind::Liveness => {}
    }
    new
}

/// Upstream's `getPhase` for regular containers: Pending while one waits for its first start,
/// Running while one runs (or will be restarted), and once all have stopped for good Succeeded
/// if all exited 0, Failed otherwise.
pub fn pod_phase(
    policy: RestartPolicy,
    spec: &[Container],
    statuses: &[ContainerStatus],
) -> &'static str {
    let (mut waiting, mut running, mut stopped, mut succeeded, mut unknown) = (0, 0, 0, 0, 0);
    for c in spec {
        let Some(state) = statuses
            .iter()
            .find(|s| s.name == c.name)
            .and_then(|s| s.state.as_ref().map(|st| (st, s)))
        else {
            unknown += 1;
            continue;
        };
        let (state, status) = state;
        if state.running.is_some() {
            running += 1;
        } else if let Some(t) = &state.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if state.waiting.is_some() {
            let has_run = status
                .last_state
                .as_ref()
                .is_some_and(|l| l.terminated.is_some());
            if has_run {
                stopped += 1;
            } else {
                waiting += 1;
            }
        } else {
            unknown += 1;
        }
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 && unknown == 0 {
        return "Running";
    }
    if running == 0 && stopped > 0 && unknown == 0 {
        return match policy {
            RestartPolicy::Always => "Running",
            _ if stopped == succeeded => "Succeeded",
            RestartPolicy::Never => "Failed",
            RestartPolicy::OnFailure => "Running",
        };
    }
    "Pending"
}

/// The pod's status from the one last written (`previous`: addresses, host, start time,
/// conditions whose transition times are kept) and its containers' current statuses (regular
/// containers; one missing from `containers` keeps its previous status).
pub fn pod_status(
    pod: &Pod,
    previous: &PodStatus,
    containers: &[ContainerStatus],
    now: &Time,
) -> PodStatus {
    let spec: &[Container] = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or(&[]);
    let old = previous.container_statuses.as_deref().unwrap_or(&[]);
    let statuses: Vec<ContainerStatus> = spec
        .iter()
        .filter_map(|c| {
            containers
                .iter()
                .chain(old)
                .find(|s| s.name == c.name)
                .cloned()
        })
        .collect();
    let phase = pod_phase(RestartPolicy::of(pod), spec, &statuses);
    let unready: Vec<String> = spec
        .iter()
        .filter(|c| !statuses.iter().any(|s| s.name == c.name && s.ready))
        .map(|c| c.name.clone())
        .collect();
    let with_previous = Pod {
        status: Some(previous.clone()),
        ..pod.clone()
    };
    let finished = matches!(phase, "Succeeded" | "Failed");
    let conditions = podstatus::pod_conditions(
        &with_previous,
        &ConditionInputs {
            // A finished pod's sandbox is torn down upstream; here it stays until deletion.
            sandbox_ready: !finished,
            initialized: true,
            unready: &unready,
            phase,
        },
        now,
    );
    PodStatus {
        phase: Some(phase.into()),
        conditions: Some(conditions),
        container_statuses: Some(statuses),
        ..previous.clone()
    }
}

// ----- probes ---------------------------------------------------------------------------------

/// The three probes a container may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

impl ProbeKind {
    /// As upstream's messages name it: `Liveness probe failed: ...`.
    pub fn title(self) -> &'static str {
        match self {
            ProbeKind::Startup => "Startup",
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
        }
    }

    /// The lower-case name in `Container X failed liveness probe, will be restarted`.
    pub fn lower(self) -> &'static str {
        match self {
            ProbeKind::Startup => "startup",
            ProbeKind::Liveness => "liveness",
            ProbeKind::Readiness => "readiness",
        }
    }

    pub fn of(self, c: &Container) -> Option<&Probe> {
        match self {
            ProbeKind::Startup => c.startup_probe.as_ref(),
            ProbeKind::Liveness => c.liveness_probe.as_ref(),
            ProbeKind::Readiness => c.readiness_probe.as_ref(),
        }
    }
}

/// What a probe does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeAction {
    /// GET `scheme://host:port/path`; 200–399 is a success. `host` defaults to the pod's IP.
    Http {
        scheme: String,
        host: Option<String>,
        port: u16,
        path: String,
        headers: Vec<(String, String)>,
    },
    /// A TCP connection that opens is a success.
    Tcp { host: Option<String>, port: u16 },
    /// The command exits 0.
    Exec { command: Vec<String> },
}

/// One probe with upstream's defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSpec {
    pub action: ProbeAction,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

fn seconds_or(value: Option<i32>, default: u64) -> Duration {
    Duration::from_secs(
        value
            .and_then(|v| u64::try_from(v).ok())
            .filter(|v| *v > 0)
            .unwrap_or(default),
    )
}

fn count_or(value: Option<i32>, default: u32) -> u32 {
    value
        .and_then(|v| u32::try_from(v).ok())
        .filter(|v| *v > 0)
        .unwrap_or(default)
}

/// A probe's port: a number, or the name of one of the container's ports.
fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("invalid port number: {n}")),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .or_else(|| name.parse().ok())
            .ok_or_else(|| format!("couldn't find port: {name} in {}", container.name)),
    }
}

impl ProbeSpec {
    /// The probe's settings with upstream's defaults: no initial delay, every 10 s, 1 s
    /// timeout, one success, three failures. gRPC probes are refused (kubelab has none).
    pub fn from_probe(probe: &Probe, container: &Container) -> Result<ProbeSpec, String> {
        let action = if let Some(http) = &probe.http_get {
            let path = http.path.clone().unwrap_or_default();
            ProbeAction::Http {
                scheme: http
                    .scheme
                    .clone()
                    .unwrap_or_else(|| "HTTP".into())
                    .to_ascii_lowercase(),
                host: http.host.clone().filter(|h| !h.is_empty()),
                port: resolve_port(&http.port, container)?,
                path: if path.starts_with('/') {
                    path
                } else {
                    format!("/{path}")
                },
                headers: http
                    .http_headers
                    .iter()
                    .flatten()
                    .map(|h| (h.name.clone(), h.value.clone()))
                    .collect(),
            }
        } else if let Some(tcp) = &probe.tcp_socket {
            ProbeAction::Tcp {
                host: tcp.host.clone().filter(|h| !h.is_empty()),
                port: resolve_port(&tcp.port, container)?,
            }
        } else if let Some(exec) = &probe.exec {
            ProbeAction::Exec {
                command: exec.command.clone().unwrap_or_default(),
            }
        } else if probe.grpc.is_some() {
            return Err("gRPC probes are not supported by kubelab".into());
        } else {
            return Err("the probe has no handler".into());
        };
        Ok(ProbeSpec {
            action,
            initial_delay: Duration::from_secs(
                probe
                    .initial_delay_seconds
                    .and_then(|v| u64::try_from(v).ok())
                    .unwrap_or(0),
            ),
            period: seconds_or(probe.period_seconds, 10),
            timeout: seconds_or(probe.timeout_seconds, 1),
            success_threshold: count_or(probe.success_threshold, 1),
            failure_threshold: count_or(probe.failure_threshold, 3),
        })
    }
}

/// Turns single probe outcomes into the container's result, as upstream's probe worker does:
/// the result flips only after `failure_threshold` failures (or `success_threshold` successes)
/// in a row. It starts as upstream's does: readiness failing (not ready until a success),
/// liveness succeeding, startup unknown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeTracker {
    kind: ProbeKind,
    result: Option<bool>,
    last: Option<bool>,
    run: u32,
    success_threshold: u32,
    failure_threshold: u32,
}

impl ProbeTracker {
    pub fn new(kind: ProbeKind, spec: &ProbeSpec) -> ProbeTracker {
        ProbeTracker {
            kind,
            result: match kind {
                ProbeKind::Readiness => Some(false),
                ProbeKind::Liveness => Some(true),
                ProbeKind::Startup => None,
            },
            last: None,
            run: 0,
            // Upstream requires 1 for liveness and startup probes.
            success_threshold: if kind == ProbeKind::Readiness {
                spec.success_threshold
            } else {
                1
            },
            failure_threshold: spec.failure_threshold,
        }
    }

    pub fn kind(&self) -> ProbeKind {
        self.kind
    }

    /// The container's current result (`None`: not known yet).
    pub fn result(&self) -> Option<bool> {
        self.result
    }

    /// Records one outcome; returns the new result when it changed.
    pub fn observe(&mut self, success: bool) -> Option<bool> {
        if self.last == Some(success) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(success);
            self.run = 1;
        }
        let threshold = if success {
            self.success_threshold
        } else {
            self.failure_threshold
        };
        if self.run < threshold || self.result == Some(success) {
            return None;
        }
        self.result = Some(success);
        Some(success)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    fn crasher(policy: Option<&str>) -> Pod {
        let mut spec = json!({"containers": [{"name": "app", "image": "busybox"}]});
        if let Some(p) = policy {
            spec["restartPolicy"] = json!(p);
        }
        pod(json!({
            "metadata": {"name": "crash", "namespace": "default", "uid": "u-1"},
            "spec": spec,
            "status": {"phase": "Running", "podIP": "192.168.0.5", "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2025-01-01T00:00:00Z"},
                {"type": "Ready", "status": "True", "lastTransitionTime": "2025-01-01T00:00:01Z"}
            ]}
        }))
    }

    fn running(started: &str) -> ContainerStatus {
        ContainerStatus {
            name: "app".into(),
            image: "busybox".into(),
            image_id: "docker-pullable://busybox@sha256:00".into(),
            container_id: Some("kubelab://run0".into()),
            ready: true,
            started: Some(true),
            state: Some(ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(at(started)),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn spec_of(p: &Pod) -> Container {
        p.spec.as_ref().unwrap().containers[0].clone()
    }

    #[test]
    fn policies() {
        assert_eq!(RestartPolicy::of(&crasher(None)), RestartPolicy::Always);
        assert_eq!(
            RestartPolicy::of(&crasher(Some("OnFailure"))),
            RestartPolicy::OnFailure
        );
        assert!(RestartPolicy::Always.restarts(0));
        assert!(RestartPolicy::OnFailure.restarts(1));
        assert!(!RestartPolicy::OnFailure.restarts(0));
        assert!(!RestartPolicy::Never.restarts(1));
    }

    #[test]
    fn backoff_restarts_at_once_then_doubles_to_five_minutes() {
        let mut b = CrashBackoff::default();
        let mut t = ts("2025-01-01T00:00:00Z");
        let mut delays = Vec::new();
        for _ in 0..8 {
            // Each run lasts one second.
            let finished = t + jiff::SignedDuration::from_secs(1);
            let delay = b.delay(finished);
            delays.push(delay.as_secs());
            t = finished + jiff::SignedDuration::try_from(delay).unwrap();
            b.restarted(finished, t);
        }
        assert_eq!(delays, [0, 10, 20, 40, 80, 160, 300, 300]);
        // A run of more than ten minutes forgets the back-off.
        let long = t + jiff::SignedDuration::from_secs(601);
        assert_eq!(b.delay(long), Duration::ZERO);
        b.restarted(long, long);
        assert_eq!(
            b.delay(long + jiff::SignedDuration::from_secs(1)),
            BACKOFF_INITIAL
        );
    }

    #[test]
    fn decisions_follow_the_policy() {
        let b = CrashBackoff::default();
        let now = ts("2025-01-01T00:00:00Z");
        let decide = |policy, exit| after_exit(policy, exit, &b, now);
        assert_eq!(
            decide(RestartPolicy::Always, Exit::Code(0)),
            AfterExit::Restart(Duration::ZERO)
        );
        assert_eq!(
            decide(RestartPolicy::OnFailure, Exit::Code(0)),
            AfterExit::Stay
        );
        assert_eq!(
            decide(RestartPolicy::OnFailure, Exit::Unknown),
            AfterExit::Restart(Duration::ZERO)
        );
        assert_eq!(decide(RestartPolicy::Never, Exit::Code(2)), AfterExit::Stay);
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_secs(80)), "1m20s");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
    }

    #[test]
    fn exit_backoff_restart_cycle() {
        let p = crasher(None);
        let spec = spec_of(&p);
        let s0 = running("2025-01-01T00:00:01Z");
        let s1 = exited(&s0, Exit::Code(1), &at("2025-01-01T00:00:02Z"));
        let t = current_termination(&s1).unwrap();
        assert_eq!(t.exit_code, 1);
        assert_eq!(t.reason.as_deref(), Some("Error"));
        assert_eq!(t.started_at, Some(at("2025-01-01T00:00:01Z")));
        assert_eq!(t.finished_at, Some(at("2025-01-01T00:00:02Z")));
        assert_eq!(t.container_id.as_deref(), Some("kubelab://run0"));
        assert!(!s1.ready);

        let s2 = restarted(&s1, &spec, "kubelab://run1", &at("2025-01-01T00:00:02Z"));
        assert_eq!(s2.restart_count, 1);
        assert!(s2.ready);
        assert_eq!(s2.container_id.as_deref(), Some("kubelab://run1"));
        let last = s2.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!(last.exit_code, 1);

        let s3 = exited(&s2, Exit::Code(1), &at("2025-01-01T00:00:03Z"));
        let s4 = backing_off(&s3, Duration::from_secs(10), &p);
        let waiting = s4.state.as_ref().unwrap().waiting.as_ref().unwrap();
        assert_eq!(waiting.reason.as_deref(), Some("CrashLoopBackOff"));
        assert_eq!(
            waiting.message.as_deref(),
            Some("back-off 10s restarting failed container=app pod=crash_default(u-1)")
        );
        assert_eq!(s4.restart_count, 1);
        let last = s4.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!(last.started_at, Some(at("2025-01-01T00:00:02Z")));
        assert_eq!(last.container_id.as_deref(), Some("kubelab://run1"));
        assert_eq!(
            backoff_event_message("app", &p),
            "Back-off restarting failed container app in pod crash_default(u-1)"
        );

        // While backing off the pod stays Running (it will restart) but is not ready.
        let status = pod_status(
            &p,
            p.status.as_ref().unwrap(),
            &[s4],
            &at("2025-01-01T00:00:04Z"),
        );
        assert_eq!(status.phase.as_deref(), Some("Running"));
        let ready = &status.conditions.as_ref().unwrap()[2];
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason.as_deref(), Some("ContainersNotReady"));
        assert_eq!(
            ready.message.as_deref(),
            Some("containers with unready status: [app]")
        );
        assert_eq!(ready.last_transition_time, Some(at("2025-01-01T00:00:04Z")));
        assert_eq!(status.pod_ip.as_deref(), Some("192.168.0.5"));
    }

    #[test]
    fn unknown_exits_are_reported_as_upstream_does() {
        let s = exited(
            &running("2025-01-01T00:00:01Z"),
            Exit::Unknown,
            &at("2025-01-01T00:01:00Z"),
        );
        let t = current_termination(&s).unwrap();
        assert_eq!(t.exit_code, 137);
        assert_eq!(t.reason.as_deref(), Some("ContainerStatusUnknown"));
        assert_eq!(t.message.as_deref(), Some(STATUS_UNKNOWN_MESSAGE));
    }

    #[test]
    fn finished_pods_succeed_or_fail() {
        let done = |p: &Pod, code| {
            let s = exited(
                &running("2025-01-01T00:00:01Z"),
                Exit::Code(code),
                &at("2025-01-01T00:00:02Z"),
            );
            pod_status(
                p,
                p.status.as_ref().unwrap(),
                &[s],
                &at("2025-01-01T00:00:03Z"),
            )
        };
        let never = crasher(Some("Never"));
        let ok = done(&never, 0);
        assert_eq!(ok.phase.as_deref(), Some("Succeeded"));
        assert_eq!(
            ok.conditions.as_ref().unwrap()[2].reason.as_deref(),
            Some("PodCompleted")
        );
        assert_eq!(
            current_termination(&ok.container_statuses.as_ref().unwrap()[0])
                .unwrap()
                .reason
                .as_deref(),
            Some("Completed")
        );
        assert_eq!(done(&never, 3).phase.as_deref(), Some("Failed"));
        let on_failure = crasher(Some("OnFailure"));
        assert_eq!(done(&on_failure, 0).phase.as_deref(), Some("Succeeded"));
        // Always: a stopped container is about to restart.
        assert_eq!(done(&crasher(None), 0).phase.as_deref(), Some("Running"));
    }

    #[test]
    fn phases_of_mixed_containers() {
        let spec: Vec<Container> = ["a", "b"]
            .iter()
            .map(|n| Container {
                name: n.to_string(),
                ..Default::default()
            })
            .collect();
        let named = |n: &str, s: ContainerStatus| ContainerStatus {
            name: n.into(),
            ..s
        };
        let run = running("2025-01-01T00:00:01Z");
        let done = exited(&run, Exit::Code(0), &at("2025-01-01T00:00:02Z"));
        let failed = exited(&run, Exit::Code(1), &at("2025-01-01T00:00:02Z"));
        let creating = ContainerStatus {
            state: Some(ContainerState {
                waiting: Some(ContainerStateWaiting::default()),
                ..Default::default()
            }),
            ..run.clone()
        };
        let phase = |policy, a: &ContainerStatus, b: &ContainerStatus| {
            pod_phase(
                policy,
                &spec,
                &[named("a", a.clone()), named("b", b.clone())],
            )
        };
        assert_eq!(phase(RestartPolicy::Never, &run, &done), "Running");
        assert_eq!(phase(RestartPolicy::Never, &done, &failed), "Failed");
        assert_eq!(phase(RestartPolicy::Never, &done, &done), "Succeeded");
        assert_eq!(phase(RestartPolicy::OnFailure, &done, &failed), "Running");
        assert_eq!(phase(RestartPolicy::Always, &creating, &run), "Pending");
        assert_eq!(
            pod_phase(RestartPolicy::Always, &spec, &[named("a", run)]),
            "Pending"
        );
    }

    #[test]
    fn readiness_and_startup_results_show_in_the_status() {
        let spec: Container = serde_json::from_value(json!({
            "name": "app",
            "readinessProbe": {"httpGet": {"port": 80}},
            "startupProbe": {"tcpSocket": {"port": 80}}
        }))
        .unwrap();
        let fresh = restarted(
            &exited(
                &running("2025-01-01T00:00:01Z"),
                Exit::Code(1),
                &at("2025-01-01T00:00:02Z"),
            ),
            &spec,
            "kubelab://run1",
            &at("2025-01-01T00:00:02Z"),
        );
        assert_eq!((fresh.started, fresh.ready), (Some(false), false));
        // Readiness cannot make a container ready before it has started.
        let early = probed(&fresh, &spec, ProbeKind::Readiness, true);
        assert!(!early.ready);
        let started = probed(&fresh, &spec, ProbeKind::Startup, true);
        assert_eq!((started.started, started.ready), (Some(true), false));
        let ready = probed(&started, &spec, ProbeKind::Readiness, true);
        assert!(ready.ready);
        assert!(!probed(&ready, &spec, ProbeKind::Readiness, false).ready);
        // A terminated container does not change.
        let gone = exited(&ready, Exit::Code(0), &at("2025-01-01T00:00:09Z"));
        assert_eq!(probed(&gone, &spec, ProbeKind::Readiness, true), gone);
    }

    #[test]
    fn probe_defaults_and_ports() {
        let c: Container = serde_json::from_value(json!({
            "name": "web",
            "ports": [{"name": "http", "containerPort": 8080}],
            "readinessProbe": {"httpGet": {"port": "http", "path": "healthz",
                "httpHeaders": [{"name": "X-A", "value": "1"}]}},
            "livenessProbe": {"exec": {"command": ["false"]}, "periodSeconds": 2,
                "failureThreshold": 1, "initialDelaySeconds": 5, "timeoutSeconds": 3},
            "startupProbe": {"tcpSocket": {"port": "nope"}}
        }))
        .unwrap();
        let r = ProbeSpec::from_probe(c.readiness_probe.as_ref().unwrap(), &c).unwrap();
        assert_eq!(
            r.action,
            ProbeAction::Http {
                scheme: "http".into(),
                host: None,
                port: 8080,
                path: "/healthz".into(),
                headers: vec![("X-A".into(), "1".into())],
            }
        );
        assert_eq!(
            (
                r.initial_delay,
                r.period,
                r.timeout,
                r.success_threshold,
                r.failure_threshold
            ),
            (
                Duration::ZERO,
                Duration::from_secs(10),
                Duration::from_secs(1),
                1,
                3
            )
        );
        let l = ProbeSpec::from_probe(c.liveness_probe.as_ref().unwrap(), &c).unwrap();
        assert_eq!(
            l.action,
            ProbeAction::Exec {
                command: vec!["false".into()]
            }
        );
        assert_eq!(
            (l.initial_delay, l.period, l.timeout, l.failure_threshold),
            (
                Duration::from_secs(5),
                Duration::from_secs(2),
                Duration::from_secs(3),
                1
            )
        );
        let s = ProbeSpec::from_probe(c.startup_probe.as_ref().unwrap(), &c).unwrap_err();
        assert!(s.contains("couldn't find port: nope"), "{s}");
        let grpc: Probe = serde_json::from_value(json!({"grpc": {"port": 9000}})).unwrap();
        assert!(ProbeSpec::from_probe(&grpc, &c).is_err());
    }

    #[test]
    fn trackers_need_thresholds_in_a_row() {
        let spec = ProbeSpec {
            action: ProbeAction::Tcp {
                host: None,
                port: 80,
            },
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            success_threshold: 2,
            failure_threshold: 3,
        };
        let mut readiness = ProbeTracker::new(ProbeKind::Readiness, &spec);
        assert_eq!(readiness.result(), Some(false));
        assert_eq!(readiness.observe(true), None);
        assert_eq!(readiness.observe(true), Some(true));
        assert_eq!(readiness.observe(true), None);
        assert_eq!(readiness.observe(false), None);
        assert_eq!(readiness.observe(true), None, "a success breaks the run");
        assert_eq!(readiness.observe(false), None);
        assert_eq!(readiness.observe(false), None);
        assert_eq!(readiness.observe(false), Some(false));

        let mut liveness = ProbeTracker::new(ProbeKind::Liveness, &spec);
        assert_eq!(liveness.result(), Some(true));
        assert_eq!(liveness.observe(false), None);
        assert_eq!(liveness.observe(false), None);
        assert_eq!(liveness.observe(false), Some(false));

        let mut startup = ProbeTracker::new(ProbeKind::Startup, &spec);
        assert_eq!(startup.result(), None);
        assert_eq!(
            startup.observe(true),
            Some(true),
            "startup needs one success"
        );
    }
}
