//! Pod status as the kubelet reports it, computed from the pod and what the runtime did: the
//! pure half of the pod lifecycle (upstream: `pkg/kubelet/kubelet_pods.go`
//! `generateAPIPodStatus`, `pkg/kubelet/status/generate.go`).
//!
//! Two stages matter to a lab: *creating* (phase Pending, the sandbox is being made, containers
//! wait with reason `ContainerCreating`) and *running* (phase Running, every container running,
//! ready unless a readiness or startup probe must say so first, pod IPs known). What happens
//! afterwards (exits, restarts, probe results) is [`crate::lifecycle`]'s. Conditions come in upstream's order: PodReadyToStartContainers,
//! Initialized, Ready, ContainersReady, PodScheduled.

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
    VolumeMountStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use sha2::{Digest, Sha256};
use std::net::IpAddr;

/// A container the runtime has started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartedContainer {
    pub name: String,
    /// `<runtime>://<id>`, as `status.containerStatuses[].containerID`.
    pub container_id: String,
    /// `status.containerStatuses[].imageID`.
    pub image_id: String,
    pub started_at: Time,
}

/// A fake but stable image digest: the same image reference always gets the same one.
pub fn image_id(image: &str) -> String {
    let digest = Sha256::digest(image.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let repository = image.split('@').next().unwrap_or(image);
    // Drop a tag (a ':' after the last '/'), keeping a registry's port.
    let repository = match repository.rfind(':') {
        Some(i) if !repository[i..].contains('/') => &repository[..i],
        _ => repository,
    };
    format!("docker-pullable://{repository}@sha256:{hex}")
}

/// A stable 64-hex-digit container id for one container of one pod instance.
pub fn container_id(runtime: &str, pod_uid: &str, container: &str) -> String {
    let digest = Sha256::digest(format!("{pod_uid}/{container}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{runtime}://{hex}")
}

/// The `fieldPath` of a container in events: `spec.containers{nginx}`.
pub fn container_field_path(container: &str, init: bool) -> String {
    if init {
        format!("spec.initContainers{{{container}}}")
    } else {
        format!("spec.containers{{{container}}}")
    }
}

/// The pod is Running on this node with an address: nothing left for the kubelet to do.
pub fn is_running(pod: &Pod) -> bool {
    pod.status.as_ref().is_some_and(|s| {
        s.phase.as_deref() == Some("Running")
            && s.pod_ip.as_deref().is_some_and(|ip| !ip.is_empty())
    })
}

/// The pod finished (Succeeded or Failed): the kubelet leaves it alone.
pub fn is_finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn containers(pod: &Pod) -> &[Container] {
    pod.spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or(&[])
}

fn init_containers(pod: &Pod) -> &[Container] {
    pod.spec
        .as_ref()
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or(&[])
}

/// Upstream's QoS class: BestEffort without any request or limit, Guaranteed when every
/// container limits cpu and memory to its requests, Burstable otherwise.
pub fn qos_class(pod: &Pod) -> &'static str {
    let all: Vec<&Container> = containers(pod).iter().chain(init_containers(pod)).collect();
    let resources = |c: &Container| c.resources.clone().unwrap_or_default();
    let any = all.iter().any(|c| {
        let r = resources(c);
        r.requests.is_some_and(|m| !m.is_empty()) || r.limits.is_some_and(|m| !m.is_empty())
    });
    if !any {
        return "BestEffort";
    }
    let guaranteed = all.iter().all(|c| {
        let r = resources(c);
        let limits = r.limits.unwrap_or_default();
        let requests = r.requests.unwrap_or_default();
        ["cpu", "memory"].iter().all(|k| {
            limits
                .get(*k)
                .is_some_and(|l| requests.get(*k).is_none_or(|q| q == l))
        })
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

fn previous_condition<'a>(pod: &'a Pod, type_: &str) -> Option<&'a PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

fn condition(
    pod: &Pod,
    type_: &str,
    ok: bool,
    reason_message: Option<(&str, Option<String>)>,
    now: &Time,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let transition = previous_condition(pod, type_)
        .filter(|c| c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    let (reason, message) = match reason_message {
        Some((r, m)) if !ok => (Some(r.to_string()), m),
        _ => (None, None),
    };
    PodCondition {
        type_: type_.into(),
        status: status.into(),
        last_transition_time: Some(transition),
        last_probe_time: None,
        reason,
        message,
        observed_generation: None,
    }
}

fn names(cs: &[Container]) -> String {
    cs.iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a pod's conditions are computed from.
#[derive(Clone, Debug)]
pub struct ConditionInputs<'a> {
    /// The sandbox exists (`PodReadyToStartContainers`).
    pub sandbox_ready: bool,
    /// Init containers are done (`Initialized`).
    pub initialized: bool,
    /// Regular containers that are not ready, in spec order (`Ready`, `ContainersReady`).
    pub unready: &'a [String],
    /// The pod's phase: a finished pod is not ready because it completed (`PodCompleted`) or
    /// failed (`PodFailed`), whatever its containers say.
    pub phase: &'a str,
}

/// The five conditions in upstream's order (`pkg/kubelet/status/generate.go`), keeping each
/// condition's `lastTransitionTime` from `pod.status` while its status does not change.
pub fn pod_conditions(pod: &Pod, inputs: &ConditionInputs, now: &Time) -> Vec<PodCondition> {
    let init = init_containers(pod);
    let not_ready = match inputs.phase {
        "Succeeded" => ("PodCompleted", None),
        "Failed" => ("PodFailed", None),
        _ => (
            "ContainersNotReady",
            Some(format!(
                "containers with unready status: [{}]",
                inputs.unready.join(" ")
            )),
        ),
    };
    let ready = inputs.unready.is_empty() && !matches!(inputs.phase, "Succeeded" | "Failed");
    let scheduled = previous_condition(pod, "PodScheduled")
        .filter(|c| c.status == "True")
        .cloned()
        .unwrap_or_else(|| condition(pod, "PodScheduled", true, None, now));
    vec![
        condition(
            pod,
            "PodReadyToStartContainers",
            inputs.sandbox_ready,
            None,
            now,
        ),
        condition(
            pod,
            "Initialized",
            init.is_empty() || inputs.initialized,
            Some((
                "ContainersNotInitialized",
                Some(format!(
                    "containers with incomplete status: [{}]",
                    names(init)
                )),
            )),
            now,
        ),
        condition(pod, "Ready", ready, Some(not_ready.clone()), now),
        condition(pod, "ContainersReady", ready, Some(not_ready), now),
        scheduled,
    ]
}

/// The five conditions before containers run (`running` false: every container unready) or
/// once they all run and are ready.
fn conditions(pod: &Pod, sandbox_ready: bool, running: bool, now: &Time) -> Vec<PodCondition> {
    let unready: Vec<String> = if running {
        Vec::new()
    } else {
        containers(pod).iter().map(|c| c.name.clone()).collect()
    };
    pod_conditions(
        pod,
        &ConditionInputs {
            sandbox_ready,
            initialized: running,
            unready: &unready,
            phase: if running { "Running" } else { "Pending" },
        },
        now,
    )
}

pub(crate) fn volume_mounts(c: &Container) -> Option<Vec<VolumeMountStatus>> {
    let mounts: Vec<VolumeMountStatus> = c
        .volume_mounts
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .map(|m| VolumeMountStatus {
            name: m.name.clone(),
            mount_path: m.mount_path.clone(),
            read_only: m.read_only.filter(|r| *r),
            recursive_read_only: m.read_only.filter(|r| *r).map(|_| "Disabled".into()),
        })
        .collect();
    (!mounts.is_empty()).then_some(mounts)
}

fn host_fields(status: &mut PodStatus, pod: &Pod, host_ip: IpAddr, now: &Time) {
    status.host_ip = Some(host_ip.to_string());
    status.host_ips = Some(vec![HostIP {
        ip: host_ip.to_string(),
    }]);
    let previous = pod.status.as_ref();
    status.start_time = previous
        .and_then(|s| s.start_time.clone())
        .or_else(|| Some(now.clone()));
    status.qos_class = previous
        .and_then(|s| s.qos_class.clone())
        .or_else(|| Some(qos_class(pod).to_string()));
}

/// The status while the sandbox is being made: phase Pending, containers waiting with reason
/// `ContainerCreating` (init containers, if any, with `PodInitializing`).
pub fn creating_status(pod: &Pod, host_ip: IpAddr, now: &Time) -> PodStatus {
    let waiting = |c: &Container, reason: &str| ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        image_id: String::new(),
        ready: false,
        restart_count: 0,
        started: Some(false),
        state: Some(ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.into()),
                message: None,
            }),
            ..Default::default()
        }),
        volume_mounts: volume_mounts(c),
        ..Default::default()
    };
    let init = init_containers(pod);
    let main_reason = if init.is_empty() {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };
    let mut status = PodStatus {
        phase: Some("Pending".into()),
        conditions: Some(conditions(pod, false, false, now)),
        container_statuses: Some(
            containers(pod)
                .iter()
                .map(|c| waiting(c, main_reason))
                .collect(),
        ),
        init_container_statuses: (!init.is_empty())
            .then(|| init.iter().map(|c| waiting(c, "PodInitializing")).collect()),
        ..Default::default()
    };
    host_fields(&mut status, pod, host_ip, now);
    status
}

/// Whether a container that has just started counts as started and as ready: a container with
/// a startup probe is neither until that probe succeeds, one with a readiness probe is not ready
/// until its first success (upstream's probe results start at Failure for readiness and
/// Unknown for startup).
pub fn initial_started_ready(c: &Container) -> (bool, bool) {
    let started = c.startup_probe.is_none();
    (started, started && c.readiness_probe.is_none())
}

/// The status once every container runs: phase Running, pod IPs, each container running;
/// containers without startup or readiness probes are ready and started (see
/// [`initial_started_ready`]), and the pod is Ready when all its containers are; init
/// containers terminated with `Completed`. `started` lists the runtime's containers (init ones
/// included) by name.
pub fn running_status(
    pod: &Pod,
    host_ip: IpAddr,
    pod_ips: &[IpAddr],
    started: &[StartedContainer],
    now: &Time,
) -> PodStatus {
    let find = |name: &str| started.iter().find(|s| s.name == name);
    let base = |c: &Container| {
        let s = find(&c.name);
        ContainerStatus {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            image_id: s
                .map(|s| s.image_id.clone())
                .unwrap_or_else(|| image_id(c.image.as_deref().unwrap_or_default())),
            container_id: s.map(|s| s.container_id.clone()),
            restart_count: 0,
            volume_mounts: volume_mounts(c),
            ..Default::default()
        }
    };
    let started_at = |c: &Container| {
        find(&c.name)
            .map(|s| s.started_at.clone())
            .unwrap_or_else(|| now.clone())
    };
    let init = init_containers(pod);
    let unready: Vec<String> = containers(pod)
        .iter()
        .filter(|c| !initial_started_ready(c).1)
        .map(|c| c.name.clone())
        .collect();
    let conditions = pod_conditions(
        pod,
        &ConditionInputs {
            sandbox_ready: true,
            initialized: true,
            unready: &unready,
            phase: "Running",
        },
        now,
    );
    let mut status = PodStatus {
        phase: Some("Running".into()),
        conditions: Some(conditions),
        container_statuses: Some(
            containers(pod)
                .iter()
                .map(|c| ContainerStatus {
                    ready: initial_started_ready(c).1,
                    started: Some(initial_started_ready(c).0),
                    state: Some(ContainerState {
                        running: Some(ContainerStateRunning {
                            started_at: Some(started_at(c)),
                        }),
                        ..Default::default()
                    }),
                    ..base(c)
                })
                .collect(),
        ),
        init_container_statuses: (!init.is_empty()).then(|| {
            init.iter()
                .map(|c| ContainerStatus {
                    ready: true,
                    started: Some(false),
                    state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            container_id: find(&c.name).map(|s| s.container_id.clone()),
                            exit_code: 0,
                            reason: Some("Completed".into()),
                            started_at: Some(started_at(c)),
                            finished_at: Some(started_at(c)),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..base(c)
                })
                .collect()
        }),
        pod_ip: pod_ips.first().map(IpAddr::to_string),
        pod_ips: Some(
            pod_ips
                .iter()
                .map(|ip| PodIP { ip: ip.to_string() })
                .collect(),
        ),
        ..Default::default()
    };
    host_fields(&mut status, pod, host_ip, now);
    status
}

/// The status of a pod whose sandbox is up (it has its addresses) but one container cannot
/// start: phase Pending, that container waiting with `reason` and `message` (say
/// `ErrImagePull`), the others waiting in `ContainerCreating`.
pub fn waiting_status(
    pod: &Pod,
    host_ip: IpAddr,
    pod_ips: &[IpAddr],
    container: &str,
    reason: &str,
    message: &str,
    now: &Time,
) -> PodStatus {
    let mut status = creating_status(pod, host_ip, now);
    status.conditions = Some(conditions(pod, true, false, now));
    for s in status
        .container_statuses
        .iter_mut()
        .chain(status.init_container_statuses.iter_mut())
        .flatten()
        .filter(|s| s.name == container)
    {
        s.state = Some(ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.into()),
                message: Some(message.into()),
            }),
            ..Default::default()
        });
    }
    status.pod_ip = pod_ips.first().map(IpAddr::to_string);
    status.pod_ips = Some(
        pod_ips
            .iter()
            .map(|ip| PodIP { ip: ip.to_string() })
            .collect(),
    );
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    fn nginx() -> Pod {
        pod(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": {"nodeName": "kube-1", "containers": [{"name": "nginx", "image": "nginx:1.7.9"}]},
            "status": {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2025-01-01T00:00:00Z"}
            ]}
        }))
    }

    fn at(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    fn types_and_statuses(s: &PodStatus) -> Vec<(String, String)> {
        s.conditions
            .clone()
            .unwrap()
            .into_iter()
            .map(|c| (c.type_, c.status))
            .collect()
    }

    #[test]
    fn creating_pod_waits_with_container_creating() {
        let s = creating_status(
            &nginx(),
            "10.0.0.11".parse().unwrap(),
            &at("2025-01-01T00:00:01Z"),
        );
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        assert_eq!(s.host_ip.as_deref(), Some("10.0.0.11"));
        assert_eq!(s.pod_ip, None);
        assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
        assert_eq!(
            types_and_statuses(&s),
            [
                ("PodReadyToStartContainers", "False"),
                ("Initialized", "True"),
                ("Ready", "False"),
                ("ContainersReady", "False"),
                ("PodScheduled", "True"),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        let ready = &s.conditions.as_ref().unwrap()[2];
        assert_eq!(ready.reason.as_deref(), Some("ContainersNotReady"));
        assert_eq!(
            ready.message.as_deref(),
            Some("containers with unready status: [nginx]")
        );
        let c = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(c.image, "nginx:1.7.9");
        assert_eq!(
            c.state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("ContainerCreating")
        );
        // The scheduler's condition is kept as it was.
        assert_eq!(
            s.conditions.as_ref().unwrap()[4].last_transition_time,
            Some(at("2025-01-01T00:00:00Z"))
        );
    }

    #[test]
    fn running_pod_is_ready_with_ip() {
        let p = nginx();
        let started = [StartedContainer {
            name: "nginx".into(),
            container_id: container_id("kubelab", "u1", "nginx"),
            image_id: image_id("nginx:1.7.9"),
            started_at: at("2025-01-01T00:00:02Z"),
        }];
        let s = running_status(
            &p,
            "10.0.0.11".parse().unwrap(),
            &["192.168.126.64".parse().unwrap()],
            &started,
            &at("2025-01-01T00:00:02Z"),
        );
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(s.pod_ip.as_deref(), Some("192.168.126.64"));
        assert_eq!(s.pod_ips.as_ref().unwrap()[0].ip, "192.168.126.64");
        assert!(types_and_statuses(&s).iter().all(|(_, st)| st == "True"));
        let c = &s.container_statuses.as_ref().unwrap()[0];
        assert!(c.ready);
        assert_eq!(c.started, Some(true));
        assert_eq!(c.restart_count, 0);
        assert!(c.container_id.as_deref().unwrap().starts_with("kubelab://"));
        assert!(c.image_id.starts_with("docker-pullable://nginx@sha256:"));
        assert_eq!(
            c.state
                .as_ref()
                .unwrap()
                .running
                .as_ref()
                .unwrap()
                .started_at,
            Some(at("2025-01-01T00:00:02Z"))
        );
        let mut p = p;
        p.status = Some(s);
        assert!(is_running(&p));
    }

    #[test]
    fn probed_containers_start_unready() {
        let p = pod(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u3"},
            "spec": {"containers": [
                {"name": "plain", "image": "nginx"},
                {"name": "ready", "image": "nginx", "readinessProbe": {"tcpSocket": {"port": 80}}},
                {"name": "slow", "image": "nginx", "startupProbe": {"tcpSocket": {"port": 80}}}
            ]}
        }));
        let s = running_status(
            &p,
            "10.0.0.11".parse().unwrap(),
            &["192.168.0.2".parse().unwrap()],
            &[],
            &at("2025-01-01T00:00:01Z"),
        );
        let flags: Vec<(bool, Option<bool>)> = s
            .container_statuses
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| (c.ready, c.started))
            .collect();
        assert_eq!(
            flags,
            [
                (true, Some(true)),
                (false, Some(true)),
                (false, Some(false))
            ]
        );
        let ready = &s.conditions.as_ref().unwrap()[2];
        assert_eq!(
            (ready.type_.as_str(), ready.status.as_str()),
            ("Ready", "False")
        );
        assert_eq!(
            ready.message.as_deref(),
            Some("containers with unready status: [ready slow]")
        );
        assert_eq!(s.phase.as_deref(), Some("Running"));
    }

    #[test]
    fn finished_pods_are_not_ready_because_they_finished() {
        let p = nginx();
        let c = pod_conditions(
            &p,
            &ConditionInputs {
                sandbox_ready: false,
                initialized: true,
                unready: &["nginx".to_string()],
                phase: "Succeeded",
            },
            &at("2025-01-01T00:00:01Z"),
        );
        assert_eq!(c[2].reason.as_deref(), Some("PodCompleted"));
        assert_eq!(c[2].message, None);
        assert_eq!(c[3].status, "False");
    }

    #[test]
    fn init_containers_complete_before_running() {
        let p = pod(json!({
            "metadata": {"name": "web", "uid": "u2"},
            "spec": {
                "initContainers": [{"name": "setup", "image": "busybox"}],
                "containers": [{"name": "app", "image": "busybox"}]
            }
        }));
        let creating = creating_status(
            &p,
            "10.0.0.12".parse().unwrap(),
            &at("2025-01-01T00:00:00Z"),
        );
        let initialized = &creating.conditions.as_ref().unwrap()[1];
        assert_eq!(initialized.status, "False");
        assert_eq!(
            initialized.message.as_deref(),
            Some("containers with incomplete status: [setup]")
        );
        let running = running_status(
            &p,
            "10.0.0.12".parse().unwrap(),
            &["192.168.0.1".parse().unwrap()],
            &[],
            &at("2025-01-01T00:00:01Z"),
        );
        let init = &running.init_container_statuses.as_ref().unwrap()[0];
        let terminated = init.state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!(terminated.reason.as_deref(), Some("Completed"));
        assert_eq!(terminated.exit_code, 0);
    }

    #[test]
    fn qos_classes() {
        let with = |resources: serde_json::Value| {
            pod(json!({"spec": {"containers": [{"name": "c", "resources": resources}]}}))
        };
        assert_eq!(qos_class(&with(json!({}))), "BestEffort");
        assert_eq!(
            qos_class(&with(json!({"requests": {"cpu": "100m"}}))),
            "Burstable"
        );
        assert_eq!(
            qos_class(&with(json!({"limits": {"cpu": "1", "memory": "1Gi"}}))),
            "Guaranteed"
        );
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        assert_eq!(image_id("nginx:1.7.9"), image_id("nginx:1.7.9"));
        assert_ne!(image_id("nginx:1.7.9"), image_id("nginx:1.8"));
        assert!(
            image_id("localhost:5000/app:v1")
                .starts_with("docker-pullable://localhost:5000/app@sha256:")
        );
        assert_ne!(
            container_id("kubelab", "u1", "a"),
            container_id("kubelab", "u2", "a")
        );
        assert_eq!(
            container_field_path("nginx", false),
            "spec.containers{nginx}"
        );
    }
}
