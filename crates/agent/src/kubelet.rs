//! The pod lifecycle of a kubelet, independent of how containers run: watch the pods bound to
//! this node, give each an address from the IPAM, have the [`ContainerRuntime`] start its
//! containers, report status and events like upstream's kubelet, and on deletion stop them,
//! release the address and remove the pod (`gracePeriodSeconds=0` with a uid precondition).
//!
//! The hollow node ([`crate::hollow`]) plugs in a runtime that runs nothing; the real node agent
//! will plug in one that makes namespaces and processes. Neither changes this loop.
//!
//! Built on kube-runtime's `Controller`: level-triggered, one reconcile per pod at a time,
//! nothing done before the initial list. What this process has started is remembered only to
//! avoid repeating work between a status write and its watch event; after a restart the API's
//! status is the truth (a Running pod with an IP is adopted as it is).

use crate::ipamstore::ApiDatastore;
use crate::podstatus::{self, StartedContainer, container_field_path};
use controllers::events::{Recorder, object_reference};
use futures::StreamExt;
use ipam::{AutoAssignRequest, Ipam, IpamError};
use k8s_openapi::api::core::v1::{Container, ObjectReference, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, ResourceExt};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Prefix of pod address handles, as Calico's CNI plugin names them.
pub const HANDLE_PREFIX: &str = "k8s-pod-network.";

/// Why a runtime could not do what was asked. `reason` is the container's waiting reason
/// upstream would show for it (`ErrImagePull`), if it is one the user should see.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct RuntimeError {
    pub message: String,
    pub reason: Option<&'static str>,
}

impl RuntimeError {
    pub fn new(message: impl Into<String>) -> RuntimeError {
        RuntimeError {
            message: message.into(),
            reason: None,
        }
    }

    /// The image cannot be had: the container waits with `ErrImagePull`, then
    /// `ImagePullBackOff`.
    pub fn image_pull(message: impl Into<String>) -> RuntimeError {
        RuntimeError {
            message: message.into(),
            reason: Some(ERR_IMAGE_PULL),
        }
    }
}

/// Upstream's waiting reasons for an image that cannot be pulled.
pub const ERR_IMAGE_PULL: &str = "ErrImagePull";
pub const IMAGE_PULL_BACK_OFF: &str = "ImagePullBackOff";
/// The kubelet's image pull back-off: 10 s doubling to 300 s.
const PULL_BACKOFF_INITIAL: Duration = Duration::from_secs(10);
const PULL_BACKOFF_MAX: Duration = Duration::from_secs(300);

/// How containers run on this node. The pod lifecycle calls it in order: `create_sandbox` once
/// the pod has its addresses, `start_container` per container (init containers first), and
/// `stop_pod` when the pod is deleted. Each call must be idempotent: after a crash the
/// lifecycle may ask again.
pub trait ContainerRuntime: Send + Sync + 'static {
    /// `runtime` in `<runtime>://<id>` container IDs.
    fn name(&self) -> &str;
    fn create_sandbox(
        &self,
        pod: &Pod,
        ips: &[IpAddr],
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    fn start_container(
        &self,
        pod: &Pod,
        container: &Container,
    ) -> impl Future<Output = Result<StartedContainer, RuntimeError>> + Send;
    fn stop_pod(&self, pod: &Pod) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// Whether `image` is on the node: the kubelet reports it `already present on machine`,
    /// else it reports pulling it (and the runtime's `start_container` says whether that
    /// failed).
    fn has_image(&self, image: &str) -> bool {
        let _ = image;
        true
    }
    /// The lifecycle wrote the pod's first Running `status`: from now on a runtime whose
    /// containers can exit, restart or fail probes reports that by writing the pod's status
    /// itself. Runtimes whose containers never change need nothing here.
    fn pod_started(&self, pod: &Pod, status: &PodStatus) -> impl Future<Output = ()> + Send {
        let _ = (pod, status);
        std::future::ready(())
    }
    /// A pod found Running that this process did not start (the agent restarted): take over
    /// its containers as they are. Called once per pod and process.
    fn adopt_pod(&self, pod: &Pod) -> impl Future<Output = ()> + Send {
        let _ = pod;
        std::future::ready(())
    }
}

/// What the pod lifecycle needs to know about its node.
#[derive(Clone, Debug)]
pub struct KubeletConfig {
    pub node_name: String,
    /// `status.hostIP` of its pods.
    pub host_ip: IpAddr,
    /// How often leaked pod addresses (pods deleted behind the kubelet's back) are looked for.
    pub address_sweep_interval: Duration,
    /// Claim this tunnel address for the node before any pod starts (as calico-node does),
    /// unless the caller already has.
    pub tunnel: Option<ipam::TunnelType>,
}

/// Errors of one reconcile; each is retried.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error("API: {0}")]
    Api(#[from] kube::Error),
    #[error("IPAM: {0}")]
    Ipam(#[from] IpamError),
    #[error("runtime: {0}")]
    Runtime(#[from] RuntimeError),
    #[error("IPAM task: {0}")]
    Task(String),
    #[error("no pod address available for {0}")]
    NoAddress(String),
}

/// How often a node looks for addresses of pods that vanished while it was not watching (a
/// restart); pods removed while it watches are released as their Delete event arrives.
pub const ADDRESS_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// One node's pod lifecycle.
pub struct Kubelet<R> {
    client: Client,
    config: KubeletConfig,
    runtime: R,
    ipam: Arc<Ipam<ApiDatastore>>,
    /// Held around every IPAM operation, like the host-wide lock Calico's CNI plugin takes:
    /// concurrent assignments from one node would only collide on that node's block and retry.
    ipam_lock: tokio::sync::Mutex<()>,
    recorder: Recorder,
    /// Pod uids this process has started: a reconcile that sees a stale (pre-Running) copy of
    /// such a pod must not start it again. A std mutex, never held across an await.
    started: Mutex<HashSet<String>>,
    /// Image pull back-off per pod uid: failed attempts and when to try again.
    pull_backoff: Mutex<HashMap<String, (u32, tokio::time::Instant)>>,
    /// Pod uids [`Kubelet::terminate`] has stopped and released: their Delete events need
    /// nothing more.
    terminated: Mutex<HashSet<String>>,
}

/// The address handle of a pod: one per pod instance (uid), so a re-created pod of the same
/// name never inherits its predecessor's address.
pub fn handle_id(pod_uid: &str) -> String {
    format!("{HANDLE_PREFIX}{pod_uid}")
}

pub(crate) fn container_reference(pod: &Pod, container: &str, init: bool) -> ObjectReference {
    ObjectReference {
        field_path: Some(container_field_path(container, init)),
        ..object_reference(pod)
    }
}

fn now() -> Time {
    Time(jiff::Timestamp::now())
}

/// Writes `status` as the pod's whole status. A merge patch replaces the lists (conditions,
/// containerStatuses) with ours whole; the uid precondition keeps us from writing a re-created
/// pod of the same name.
pub(crate) async fn write_pod_status(
    client: &Client,
    pod: &Pod,
    status: &PodStatus,
) -> Result<(), kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "metadata": {"uid": pod.uid()},
        "status": status,
    });
    api.patch_status(
        &pod.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

impl<R: ContainerRuntime> Kubelet<R> {
    pub fn new(client: Client, config: KubeletConfig, runtime: R) -> Kubelet<R> {
        let datastore = ApiDatastore::new(client.clone(), tokio::runtime::Handle::current());
        let recorder = Recorder::new(client.clone(), "kubelet", Some(&config.node_name));
        Kubelet {
            client,
            config,
            runtime,
            ipam: Arc::new(Ipam::new(datastore, ipam::IpamConfig::default())),
            ipam_lock: tokio::sync::Mutex::new(()),
            recorder,
            started: Mutex::new(HashSet::new()),
            pull_backoff: Mutex::new(HashMap::new()),
            terminated: Mutex::new(HashSet::new()),
        }
    }

    /// Runs the lifecycle of this node's pods until the future is dropped.
    pub async fn run(self: Arc<Self>) {
        if let Some(tunnel) = self.config.tunnel {
            self.claim_tunnel_address(tunnel).await;
        }
        let pods: Api<Pod> = Api::all(self.client.clone());
        let selector = format!("spec.nodeName={}", self.config.node_name);
        let (cache, cache_writer) = reflector::store();
        // A pod removed from the API without going through `terminate` (`--force`, or a
        // node-lifecycle force delete) is stopped and released at once, as the kubelet's
        // HandlePodRemoves does; the controller itself never sees objects that are gone.
        let (removed_tx, mut removed_rx) = tokio::sync::mpsc::unbounded_channel::<Pod>();
        let events = watcher(pods, watcher::Config::default().fields(&selector))
            .default_backoff()
            .reflect(cache_writer)
            .inspect(move |event| {
                if let Ok(watcher::Event::Delete(pod)) = event {
                    let _ = removed_tx.send(pod.clone());
                }
            })
            .applied_objects();
        let controller = Controller::for_stream(events, cache);
        let sweeper = tokio::spawn(self.clone().sweep_addresses());
        let kubelet = self.clone();
        let removals = tokio::spawn(async move {
            while let Some(pod) = removed_rx.recv().await {
                kubelet.pod_removed(&pod).await;
            }
        });
        controller
            .run(
                |pod, kubelet: Arc<Kubelet<R>>| async move { kubelet.reconcile(pod).await },
                |pod, error, kubelet| {
                    tracing::warn!(node = %kubelet.config.node_name, pod = %pod.name_any(), %error, "pod sync failed; retrying");
                    Action::requeue(Duration::from_secs(2))
                },
                self.clone(),
            )
            .for_each(|_| async {})
            .await;
        sweeper.abort();
        removals.abort();
    }

    /// The pod is gone from the API: stop what runs of it and free its addresses, unless
    /// `terminate` already did.
    async fn pod_removed(&self, pod: &Pod) {
        let uid = pod.uid().unwrap_or_default();
        if self
            .terminated
            .lock()
            .map(|mut t| t.remove(&uid))
            .unwrap_or(false)
        {
            return;
        }
        if let Err(e) = self.runtime.stop_pod(pod).await {
            tracing::warn!(node = %self.config.node_name, pod = %pod.name_any(), error = %e, "stopping a removed pod");
        }
        match self.release_addresses(&uid).await {
            Ok(released) if released > 0 => {
                tracing::info!(node = %self.config.node_name, pod = %pod.name_any(), released, "released the addresses of a removed pod")
            }
            Ok(_) => {}
            Err(e) => {
                // The periodic sweep will find them.
                tracing::warn!(node = %self.config.node_name, pod = %pod.name_any(), error = %e, "releasing a removed pod's addresses")
            }
        }
        if let Ok(mut s) = self.started.lock() {
            s.remove(&uid);
        }
    }

    /// Calico in IPIP mode gives each node's tunl0 the first address of its first block
    /// before any pod starts, which is why the course's pods begin at `.65`. Retries until the
    /// pool exists (the lab creates it while the nodes start).
    async fn claim_tunnel_address(&self, tunnel: ipam::TunnelType) {
        let mut backoff = Duration::from_millis(50);
        for _ in 0..40 {
            let ipam = self.ipam.clone();
            let node = self.config.node_name.clone();
            let result =
                tokio::task::spawn_blocking(move || ipam.assign_tunnel_address(&node, tunnel))
                    .await;
            match result {
                Ok(Ok(ip)) => {
                    tracing::info!(node = %self.config.node_name, %ip, "tunnel address assigned");
                    return;
                }
                Ok(Err(e)) => {
                    tracing::debug!(node = %self.config.node_name, error = %e, "tunnel address not yet assignable")
                }
                Err(e) => {
                    tracing::debug!(node = %self.config.node_name, error = %e, "tunnel address task failed")
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
        tracing::warn!(node = %self.config.node_name, "no tunnel address; pods start without one");
    }

    async fn reconcile(&self, pod: Arc<Pod>) -> Result<Action, KubeletError> {
        if pod.spec.as_ref().and_then(|s| s.node_name.as_deref())
            != Some(self.config.node_name.as_str())
        {
            return Ok(Action::await_change());
        }
        if pod.metadata.deletion_timestamp.is_some() {
            self.terminate(&pod).await?;
            return Ok(Action::await_change());
        }
        let uid = pod.uid().unwrap_or_default();
        let started_here = self
            .started
            .lock()
            .map(|s| s.contains(&uid))
            .unwrap_or(false);
        if !started_here && podstatus::is_running(&pod) {
            // Started by an earlier process: its containers may still need watching.
            if let Ok(mut s) = self.started.lock() {
                s.insert(uid);
            }
            self.runtime.adopt_pod(&pod).await;
            return Ok(Action::await_change());
        }
        if started_here || podstatus::is_finished(&pod) {
            return Ok(Action::await_change());
        }
        self.start(&pod).await
    }

    async fn patch_status(&self, pod: &Pod, status: &PodStatus) -> Result<(), KubeletError> {
        write_pod_status(&self.client, pod, status).await?;
        Ok(())
    }

    /// ContainerCreating → addresses → sandbox → containers → Running.
    async fn start(&self, pod: &Pod) -> Result<Action, KubeletError> {
        let host_ip = self.config.host_ip;
        let uid = pod.uid().unwrap_or_default();
        let backoff = self
            .pull_backoff
            .lock()
            .ok()
            .and_then(|b| b.get(&uid).copied());
        if let Some((_, retry_at)) = backoff
            && retry_at > tokio::time::Instant::now()
        {
            return Ok(Action::requeue(retry_at - tokio::time::Instant::now()));
        }
        let has_status = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .is_some_and(|c| !c.is_empty());
        if !has_status {
            self.patch_status(pod, &podstatus::creating_status(pod, host_ip, &now()))
                .await?;
        }
        let ips = self.assign_addresses(pod).await?;
        self.runtime.create_sandbox(pod, &ips).await?;
        let spec = pod.spec.clone().unwrap_or_default();
        let mut started = Vec::new();
        let init = spec.init_containers.unwrap_or_default();
        for (container, is_init) in init
            .iter()
            .map(|c| (c, true))
            .chain(spec.containers.iter().map(|c| (c, false)))
        {
            match self.start_container(pod, container, is_init).await {
                Ok(s) => started.push(s),
                Err(KubeletError::Runtime(e)) if e.reason == Some(ERR_IMAGE_PULL) => {
                    return self
                        .image_pull_failed(pod, container, is_init, &ips, &e)
                        .await;
                }
                Err(e) => return Err(e),
            }
        }
        if let Ok(mut b) = self.pull_backoff.lock() {
            b.remove(&uid);
        }
        let status = podstatus::running_status(pod, host_ip, &ips, &started, &now());
        // Remember before writing: the write's own watch event may arrive before this returns.
        if let Ok(mut s) = self.started.lock() {
            s.insert(pod.uid().unwrap_or_default());
        }
        if let Err(e) = self.patch_status(pod, &status).await {
            if let Ok(mut s) = self.started.lock() {
                s.remove(&pod.uid().unwrap_or_default());
            }
            return Err(e);
        }
        self.runtime.pod_started(pod, &status).await;
        Ok(Action::await_change())
    }

    /// An image that cannot be had: `ErrImagePull` with upstream's events, then
    /// `ImagePullBackOff` until the next attempt, 10 s doubling to 5 min later.
    async fn image_pull_failed(
        &self,
        pod: &Pod,
        container: &Container,
        init: bool,
        ips: &[IpAddr],
        error: &RuntimeError,
    ) -> Result<Action, KubeletError> {
        let uid = pod.uid().unwrap_or_default();
        let image = container.image.clone().unwrap_or_default();
        let reference = container_reference(pod, &container.name, init);
        let attempts = self
            .pull_backoff
            .lock()
            .ok()
            .and_then(|b| b.get(&uid).map(|(n, _)| *n))
            .unwrap_or(0)
            + 1;
        let delay = PULL_BACKOFF_INITIAL
            .saturating_mul(1 << (attempts - 1).min(5))
            .min(PULL_BACKOFF_MAX);
        if let Ok(mut b) = self.pull_backoff.lock() {
            b.insert(uid, (attempts, tokio::time::Instant::now() + delay));
        }
        self.recorder
            .warning(
                &reference,
                "Failed",
                &format!("Failed to pull image \"{image}\": {}", error.message),
            )
            .await;
        self.recorder
            .warning(&reference, "Failed", &format!("Error: {ERR_IMAGE_PULL}"))
            .await;
        let status = podstatus::waiting_status(
            pod,
            self.config.host_ip,
            ips,
            &container.name,
            ERR_IMAGE_PULL,
            &error.message,
            &now(),
        );
        self.patch_status(pod, &status).await?;
        // While backing off the container shows ImagePullBackOff, as upstream's does between
        // attempts.
        tokio::time::sleep(Duration::from_secs(1).min(delay)).await;
        self.recorder
            .normal(
                &reference,
                "BackOff",
                &format!("Back-off pulling image \"{image}\""),
            )
            .await;
        self.recorder
            .warning(
                &reference,
                "Failed",
                &format!("Error: {IMAGE_PULL_BACK_OFF}"),
            )
            .await;
        let status = podstatus::waiting_status(
            pod,
            self.config.host_ip,
            ips,
            &container.name,
            IMAGE_PULL_BACK_OFF,
            &format!(
                "Back-off pulling image \"{image}\": {ERR_IMAGE_PULL}: {}",
                error.message
            ),
            &now(),
        );
        self.patch_status(pod, &status).await?;
        Ok(Action::requeue(delay))
    }

    async fn start_container(
        &self,
        pod: &Pod,
        container: &Container,
        init: bool,
    ) -> Result<StartedContainer, KubeletError> {
        let reference = container_reference(pod, &container.name, init);
        let image = container.image.clone().unwrap_or_default();
        // Images are built in (hollow: imaginary), so they are present, as with
        // imagePullPolicy IfNotPresent on a node that has them; one that is not is "pulled",
        // which fails.
        if self.runtime.has_image(&image) {
            self.recorder
                .normal(
                    &reference,
                    "Pulled",
                    &format!("Container image \"{image}\" already present on machine"),
                )
                .await;
        } else {
            self.recorder
                .normal(&reference, "Pulling", &format!("Pulling image \"{image}\""))
                .await;
        }
        let started = self.runtime.start_container(pod, container).await?;
        self.recorder
            .normal(
                &reference,
                "Created",
                &format!("Created container: {}", container.name),
            )
            .await;
        self.recorder
            .normal(
                &reference,
                "Started",
                &format!("Started container {}", container.name),
            )
            .await;
        Ok(started)
    }

    /// The pod's addresses: those its handle already holds (a retried or restarted start),
    /// else a new one from the node's blocks.
    async fn assign_addresses(&self, pod: &Pod) -> Result<Vec<IpAddr>, KubeletError> {
        let uid = pod.uid().unwrap_or_default();
        let handle = handle_id(&uid);
        let request = AutoAssignRequest {
            attrs: BTreeMap::from([
                ("namespace".to_string(), pod.namespace().unwrap_or_default()),
                ("node".to_string(), self.config.node_name.clone()),
                ("pod".to_string(), pod.name_any()),
                ("timestamp".to_string(), jiff::Timestamp::now().to_string()),
            ]),
            ..AutoAssignRequest::one(&self.config.node_name, &handle)
        };
        let ipam = self.ipam.clone();
        let _lock = self.ipam_lock.lock().await;
        let ips = tokio::task::spawn_blocking(move || -> Result<Vec<IpAddr>, IpamError> {
            let held = ipam.ips_by_handle(&request.handle_id)?;
            if !held.is_empty() {
                return Ok(held);
            }
            Ok(ipam.auto_assign(&request)?.ips)
        })
        .await
        .map_err(|e| KubeletError::Task(e.to_string()))??;
        if ips.is_empty() {
            return Err(KubeletError::NoAddress(pod.name_any()));
        }
        Ok(ips)
    }

    async fn release_addresses(&self, pod_uid: &str) -> Result<usize, KubeletError> {
        let ipam = self.ipam.clone();
        let handle = handle_id(pod_uid);
        let _lock = self.ipam_lock.lock().await;
        Ok(
            tokio::task::spawn_blocking(move || ipam.release_by_handle(&handle))
                .await
                .map_err(|e| KubeletError::Task(e.to_string()))??,
        )
    }

    /// A pod marked for deletion: stop it, free its address, and remove it for good.
    async fn terminate(&self, pod: &Pod) -> Result<(), KubeletError> {
        let uid = pod.uid().unwrap_or_default();
        let was_running = self
            .started
            .lock()
            .map(|s| s.contains(&uid))
            .unwrap_or(false)
            || podstatus::is_running(pod);
        if was_running {
            for c in pod
                .spec
                .as_ref()
                .map(|s| s.containers.as_slice())
                .unwrap_or(&[])
            {
                self.recorder
                    .normal(
                        &container_reference(pod, &c.name, false),
                        "Killing",
                        &format!("Stopping container {}", c.name),
                    )
                    .await;
            }
        }
        self.runtime.stop_pod(pod).await?;
        self.release_addresses(&uid).await?;
        if let Ok(mut t) = self.terminated.lock() {
            t.insert(uid.clone());
        }
        let api: Api<Pod> =
            Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&pod.name_any(), &params).await {
            Ok(_) => {}
            // Gone already, or a new pod of that name: either way this one is done.
            Err(e) if is_status(&e, 404) || is_status(&e, 409) => {}
            Err(e) => {
                if let Ok(mut t) = self.terminated.lock() {
                    t.remove(&uid);
                }
                return Err(e.into());
            }
        }
        if let Ok(mut s) = self.started.lock() {
            s.remove(&uid);
        }
        Ok(())
    }

    /// One sweep. Blocks are read *before* the pods: an address is only ever assigned to a pod
    /// that exists, so a handle seen in a block whose pod is missing from the list read
    /// afterwards belongs to a deleted pod, never to one being started.
    async fn sweep_once(&self) -> Result<usize, KubeletError> {
        let ipam = self.ipam.clone();
        let node = self.config.node_name.clone();
        let candidates =
            tokio::task::spawn_blocking(move || -> Result<HashSet<String>, IpamError> {
                let mut uids = HashSet::new();
                for block in ipam.blocks()? {
                    for attr in &block.attributes {
                        let uid = attr
                            .handle_id
                            .as_deref()
                            .and_then(|h| h.strip_prefix(HANDLE_PREFIX));
                        if let Some(uid) = uid
                            && attr.secondary.get("node") == Some(&node)
                        {
                            uids.insert(uid.to_string());
                        }
                    }
                }
                Ok(uids)
            })
            .await
            .map_err(|e| KubeletError::Task(e.to_string()))??;
        if candidates.is_empty() {
            return Ok(0);
        }
        let pods: Api<Pod> = Api::all(self.client.clone());
        let selector = format!("spec.nodeName={}", self.config.node_name);
        let live: HashSet<String> = pods
            .list(&ListParams::default().fields(&selector))
            .await?
            .items
            .iter()
            .filter_map(|p| p.uid())
            .collect();
        let mut released = 0;
        for uid in candidates.difference(&live) {
            released += self.release_addresses(uid).await?;
        }
        if released > 0 {
            tracing::info!(node = %self.config.node_name, released, "released addresses of deleted pods");
        }
        Ok(released)
    }

    /// Frees addresses whose pod no longer exists but whose Delete event this process never
    /// saw (removed while the agent was down, or during a watch gap), as Calico's IPAM garbage
    /// collection does. Each node sweeps at its own phase of the period (from a hash of its
    /// name): a sweep lists every block of the cluster, and a hundred nodes sweeping in the
    /// same instant stalled the API server for seconds.
    async fn sweep_addresses(self: Arc<Self>) {
        let period = self.config.address_sweep_interval;
        let phase = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            self.config.node_name.hash(&mut h);
            period.mul_f64((h.finish() % 1000) as f64 / 1000.0)
        };
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + phase, period);
        loop {
            tick.tick().await;
            if let Err(e) = self.sweep_once().await {
                tracing::warn!(node = %self.config.node_name, error = %e, "address sweep failed");
            }
        }
    }
}
