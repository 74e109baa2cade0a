//! A real node: `kubelab agent` running inside its node's network namespace. It is the node's
//! kubelet (pods are network namespaces wired like Calico's CNI plugin wires them, containers are
//! built-in images run as processes inside them), Calico's calico-node (tunnel address, node
//! annotations, the routes Felix programs, the tunnel device) and the kubelet's log API.
//!
//! Decisions are pure and live elsewhere: which routes this node needs is
//! [`routing::node_table`] over what the API server says; [`dataplane`] carries them out.
//! Everything is adopted after a restart: sandboxes and container processes are found by their
//! names and pid files, routes are reconciled against the kernel, the tunnel device is
//! persistent.

use crate::kubelet::{ContainerRuntime, Kubelet, KubeletConfig, RuntimeError};
use crate::lifecycle;
use crate::node::{self, HeartbeatConfig, HostFacts, NodeCapacity, NodeIdentity};
use crate::podstatus::{StartedContainer, container_id, image_id};
use crate::supervisor::{Process, Spawned, Spawner, Start, Supervisors};
use crate::{ApiDatastore, hollow::RUNTIME_NAME};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, Node, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, ResourceExt};
use routing::Encapsulation;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// The tunnel devices Calico names.
pub const IPIP_DEVICE: &str = "tunl0";
pub const VXLAN_DEVICE: &str = "vxlan.calico";
/// Calico's VXLAN network identifier and port.
pub const VXLAN_VNI: u32 = 4096;
pub const VXLAN_PORT: u16 = 4789;

/// Everything `kubelab agent` is told on its command line.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub node: String,
    pub node_ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    pub control_plane: bool,
    /// This node's network namespace (the agent runs inside it).
    pub netns: String,
    /// Pod namespaces are this plus the pod's uid.
    pub pod_netns_prefix: String,
    /// The node's state: `pods/<uid>/` (pid files, UTS namespace) and `logs/`.
    pub state_dir: PathBuf,
    pub kubelet_port: u16,
    /// The `kubelab` binary containers run.
    pub program: PathBuf,
    /// The cluster DNS Service's address (the kubelet's `--cluster-dns`): pods' nameserver.
    pub cluster_dns: Ipv4Addr,
    /// The cluster's DNS domain (the kubelet's `--cluster-domain`).
    pub cluster_domain: String,
    /// The cluster CA in PEM, from the agent's kubeconfig: the pods' service account `ca.crt`.
    pub cluster_ca: Option<String>,
    /// The Service range (the API server's `--service-cidr`): its first address is the
    /// `kubernetes` Service, and the proxy drops traffic to unallocated addresses in it.
    pub service_cidr: proxy::Ipv4Cidr,
    /// `--routing bgp`: BIRD programs the routes between nodes ([`crate::bird`]); `None`: the
    /// agent programs them itself, as Felix does.
    pub bgp: Option<crate::bird::BgpSettings>,
}

impl AgentConfig {
    /// The `kubernetes` Service's ClusterIP: the first address of the Service range.
    fn kubernetes_service(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.service_cidr.network()) + 1)
    }
    fn pods_dir(&self) -> PathBuf {
        self.state_dir.join("pods")
    }
    fn logs_dir(&self) -> PathBuf {
        self.state_dir.join("logs")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("API: {0}")]
    Api(#[from] kube::Error),
    #[error("dataplane: {0}")]
    Dataplane(#[from] dataplane::DataplaneError),
    #[error("{0}")]
    Other(String),
}

/// The API resource of a Calico `crd.projectcalico.org/v1` kind (IPPool, IPAMBlock, ...).
pub fn calico(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "crd.projectcalico.org".into(),
        version: "v1".into(),
        api_version: "crd.projectcalico.org/v1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// Runs the node until the future is dropped.
pub async fn run(client: Client, config: AgentConfig) -> Result<(), AgentError> {
    let config = Arc::new(config);
    let id = NodeIdentity {
        name: config.node.clone(),
        internal_ip: IpAddr::V4(config.node_ip),
        control_plane: config.control_plane,
        runtime_version: format!("{RUNTIME_NAME}://{}", env!("CARGO_PKG_VERSION")),
        capacity: NodeCapacity::default(),
        kubelet_port: i32::from(config.kubelet_port),
    };
    let host = HostFacts::detect();
    let node_uid = retry("registering the node", || {
        node::register(&client, &id, &host)
    })
    .await;
    tracing::info!(node = %config.node, "node registered");
    let heartbeat = tokio::spawn(node::heartbeat(
        client.clone(),
        id.clone(),
        host,
        node_uid,
        HeartbeatConfig::default(),
    ));

    let encapsulation = retry("reading the IP pool", || pool_encapsulation(&client)).await;
    let ipam = Arc::new(ipam::Ipam::new(
        ApiDatastore::new(client.clone(), tokio::runtime::Handle::current()),
        ipam::IpamConfig::default(),
    ));
    let tunnel_type = match encapsulation {
        Encapsulation::Ipip | Encapsulation::CrossSubnet => Some(ipam::TunnelType::Ipip),
        Encapsulation::Vxlan | Encapsulation::VxlanCrossSubnet => Some(ipam::TunnelType::Vxlan),
        Encapsulation::None => None,
    };
    let tunnel_ip = match tunnel_type {
        Some(t) => Some(
            retry("assigning the tunnel address", || {
                let ipam = ipam.clone();
                let node = config.node.clone();
                async move {
                    tokio::task::spawn_blocking(move || ipam.assign_tunnel_address(&node, t))
                        .await
                        .map_err(|e| AgentError::Other(e.to_string()))?
                        .map_err(|e| AgentError::Other(e.to_string()))
                }
            })
            .await,
        ),
        None => None,
    };
    let tunnel_v4 = tunnel_ip.and_then(|ip| match ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(_) => None,
    });
    let vxlan_mac = vxlan_mac(&config.node);
    annotate_node(&client, &config, encapsulation, tunnel_v4, &vxlan_mac).await;
    let bird = config
        .bgp
        .clone()
        .map(|settings| tokio::spawn(crate::bird::run(client.clone(), config.clone(), settings)));

    let peers = match (encapsulation, tunnel_v4) {
        (Encapsulation::Ipip | Encapsulation::CrossSubnet, Some(tip)) => {
            Some(open_ipip(&config, tip).await?)
        }
        (Encapsulation::Vxlan | Encapsulation::VxlanCrossSubnet, Some(tip)) => {
            open_vxlan(&config, tip, &vxlan_mac).await?;
            None
        }
        _ => None,
    };

    let logs_listener =
        tokio::net::TcpListener::bind((IpAddr::V4(config.node_ip), config.kubelet_port))
            .await
            .map_err(|e| AgentError::Other(format!("kubelet port {}: {e}", config.kubelet_port)))?;
    let log_server = tokio::spawn(crate::logserver::serve_with_exec(
        logs_listener,
        config.logs_dir(),
        config.exec_config(),
    ));
    let routes = tokio::spawn(program_routes(client.clone(), config.clone(), peers));
    let proxy_config = proxy::ProxyConfig {
        cluster_cidr: retry("reading the IP pool's CIDR", || pool_cidr(&client)).await,
        node_name: config.node.clone(),
        service_cidr: Some(config.service_cidr),
        ..proxy::ProxyConfig::default()
    };
    let proxier = tokio::spawn(crate::proxier::run(client.clone(), proxy_config));

    let runtime = NetRuntime::new(client.clone(), config.clone(), encapsulation.pod_mtu());
    let sandbox_sweeper = tokio::spawn(sweep_sandboxes(client.clone(), runtime.clone()));
    let kubelet = Arc::new(Kubelet::new(
        client,
        KubeletConfig {
            node_name: config.node.clone(),
            host_ip: IpAddr::V4(config.node_ip),
            address_sweep_interval: crate::kubelet::ADDRESS_SWEEP_INTERVAL,
            tunnel: None,
        },
        runtime,
    ));
    kubelet.run().await;
    heartbeat.abort();
    log_server.abort();
    routes.abort();
    if let Some(bird) = bird {
        bird.abort();
    }
    proxier.abort();
    sandbox_sweeper.abort();
    Ok(())
}

/// Retries `f` with a growing delay until it succeeds (the API server may still be starting).
async fn retry<T, E: std::fmt::Display, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut backoff = Duration::from_millis(20);
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) => tracing::debug!(error = %e, "{what}: retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

async fn pool_encapsulation(client: &Client) -> Result<Encapsulation, AgentError> {
    let pools: Api<DynamicObject> = Api::all_with(client.clone(), &calico("IPPool", "ippools"));
    let list = pools.list(&Default::default()).await?;
    let values: Vec<serde_json::Value> = list
        .items
        .iter()
        .filter_map(|p| serde_json::to_value(p).ok())
        .collect();
    if values.is_empty() {
        return Err(AgentError::Other("no IP pool yet".into()));
    }
    Ok(routing::cluster_from_objects(&[], &[], &values, &[]).encapsulation)
}

/// The pod pool (kube-proxy's `--cluster-cidr`): traffic from outside it to a ClusterIP is
/// masqueraded.
async fn pool_cidr(client: &Client) -> Result<proxy::Ipv4Cidr, AgentError> {
    let pools: Api<DynamicObject> = Api::all_with(client.clone(), &calico("IPPool", "ippools"));
    let list = pools.list(&Default::default()).await?;
    list.items
        .iter()
        .find_map(|p| p.data.pointer("/spec/cidr")?.as_str()?.parse().ok())
        .ok_or_else(|| AgentError::Other("no IPv4 pool yet".into()))
}

/// A stable, locally administered MAC for this node's vxlan.calico (Calico picks a random one
/// and remembers it in the node's annotation; a name-derived one survives restarts by itself).
fn vxlan_mac(node: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(node.as_bytes());
    format!(
        "66:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        d[0], d[1], d[2], d[3], d[4]
    )
}

/// What calico-node writes on its Kubernetes Node in the Kubernetes datastore.
async fn annotate_node(
    client: &Client,
    config: &AgentConfig,
    encapsulation: Encapsulation,
    tunnel: Option<Ipv4Addr>,
    vxlan_mac: &str,
) {
    let mut annotations = serde_json::Map::new();
    annotations.insert(
        "projectcalico.org/IPv4Address".into(),
        format!("{}/{}", config.node_ip, config.prefix_len).into(),
    );
    annotations.insert(
        "kubelab.dev/gateway".into(),
        config.gateway.to_string().into(),
    );
    match (encapsulation, tunnel) {
        (Encapsulation::Ipip | Encapsulation::CrossSubnet, Some(ip)) => {
            annotations.insert(
                "projectcalico.org/IPv4IPIPTunnelAddr".into(),
                ip.to_string().into(),
            );
        }
        (Encapsulation::Vxlan | Encapsulation::VxlanCrossSubnet, Some(ip)) => {
            annotations.insert(
                "projectcalico.org/IPv4VXLANTunnelAddr".into(),
                ip.to_string().into(),
            );
            annotations.insert(
                "projectcalico.org/IPv4VXLANTunnelMACAddr".into(),
                vxlan_mac.into(),
            );
        }
        _ => {}
    }
    if let Some(settings) = &config.bgp {
        // Calico keeps a node's `spec.bgp.asNumber` here; it also tells `kubelab routes` that
        // this node's routes between nodes are BIRD's.
        annotations.insert(
            routing::cluster::AS_NUMBER_ANNOTATION.into(),
            settings.as_number.to_string().into(),
        );
    }
    let patch = serde_json::json!({"metadata": {"annotations": annotations}});
    let nodes: Api<Node> = Api::all(client.clone());
    retry("annotating the node", || {
        let (nodes, patch, name) = (nodes.clone(), patch.clone(), config.node.clone());
        async move {
            nodes
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
        }
    })
    .await;
}

/// tunl0 as a persistent TUN device driven by our own IPIP encapsulation (this kernel may lack
/// the ipip module), with the node's tunnel address.
async fn open_ipip(
    config: &AgentConfig,
    tunnel_ip: Ipv4Addr,
) -> Result<dataplane::ipip::PeerTable, AgentError> {
    let tunnel = dataplane::ipip::IpipTunnel::open(IPIP_DEVICE, 1480)?;
    let peers = tunnel.peers();
    dataplane::ip::batch(
        Some(&config.netns),
        &format!("addr replace {tunnel_ip}/32 dev {IPIP_DEVICE}\nlink set {IPIP_DEVICE} up\n"),
    )
    .await?;
    tokio::spawn(async move {
        if let Err(e) = tunnel.run().await {
            tracing::error!(error = %e, "IPIP encapsulation stopped");
        }
    });
    Ok(peers)
}

async fn open_vxlan(
    config: &AgentConfig,
    tunnel_ip: Ipv4Addr,
    mac: &str,
) -> Result<(), AgentError> {
    let exists = dataplane::ip::links(&config.netns)
        .await?
        .iter()
        .any(|l| l.name == VXLAN_DEVICE);
    let mut script = String::new();
    if !exists {
        script += &format!(
            "link add {VXLAN_DEVICE} type vxlan id {VXLAN_VNI} dstport {VXLAN_PORT} dev eth0 local {} nolearning\n",
            config.node_ip
        );
    }
    script += &format!(
        "link set {VXLAN_DEVICE} address {mac} mtu 1450\naddr replace {tunnel_ip}/32 dev {VXLAN_DEVICE}\nlink set {VXLAN_DEVICE} up\n"
    );
    dataplane::ip::batch(Some(&config.netns), &script).await?;
    Ok(())
}

/// Keeps the kernel's routes (and the tunnel's peers) equal to what the cluster state says this
/// node needs: reconciled on every change of nodes, blocks, pools or pods, and every 10 s to undo
/// drift.
async fn program_routes(
    client: Client,
    config: Arc<AgentConfig>,
    peers: Option<dataplane::ipip::PeerTable>,
) {
    let changed = Arc::new(Notify::new());
    let all = watcher::Config::default();
    let watch = |r: ApiResource, c: watcher::Config| reflect(client.clone(), r, c, changed.clone());
    let (nodes, w1) = watch(ApiResource::erase::<Node>(&()), all.clone());
    let (blocks, w2) = watch(calico("IPAMBlock", "ipamblocks"), all.clone());
    let (pools, w3) = watch(calico("IPPool", "ippools"), all);
    // Only this node's pods: their /32 routes. (Addresses borrowed from another node's block
    // would need every pod; see the routing crate. With 20 blocks per node a lab never borrows.)
    let local = watcher::Config::default().fields(&format!("spec.nodeName={}", config.node));
    let (pods, w4) = watch(ApiResource::erase::<Pod>(&()), local);
    let _watchers = AbortOnDrop(vec![w1, w2, w3, w4]);
    for s in [&nodes, &blocks, &pools, &pods] {
        let _ = s.wait_until_ready().await;
    }
    let mut applied: Option<Vec<routing::Route>> = None;
    let mut drift_check = true;
    loop {
        let values = |s: &reflector::Store<DynamicObject>| -> Vec<serde_json::Value> {
            s.state()
                .iter()
                .filter_map(|o| serde_json::to_value(o.as_ref()).ok())
                .collect()
        };
        let cluster = routing::cluster_from_objects(
            &values(&nodes),
            &values(&blocks),
            &values(&pools),
            &values(&pods),
        );
        let desired = routing::node_table(&cluster, &config.node);
        // Most events (a pod's status moving) change nothing here: the kernel is read only when
        // the wanted table changed, or on the periodic check for drift.
        if drift_check || applied.as_ref() != Some(&desired) {
            match reconcile_routes(&config, &cluster, &desired, peers.as_ref()).await {
                Ok(()) => applied = Some(desired),
                Err(e) => {
                    applied = None;
                    tracing::warn!(error = %e, "route reconcile failed");
                }
            }
        }
        tokio::select! {
            _ = changed.notified() => {
                drift_check = false;
                // Let a burst of events settle into one reconcile.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            _ = tokio::time::sleep(Duration::from_secs(10)) => drift_check = true,
        }
    }
}

/// Background tasks that end with their owner.
pub(crate) struct AbortOnDrop(pub(crate) Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// A cache of every object of `resource`, and a task keeping it current that notifies
/// `changed` on every event.
pub(crate) fn reflect(
    client: Client,
    resource: ApiResource,
    config: watcher::Config,
    changed: Arc<Notify>,
) -> (reflector::Store<DynamicObject>, tokio::task::JoinHandle<()>) {
    let api: Api<DynamicObject> = Api::all_with(client, &resource);
    let writer = reflector::store::Writer::new(resource);
    let reader = writer.as_reader();
    let stream = reflector::reflector(writer, watcher(api, config))
        .default_backoff()
        .touched_objects();
    let task = tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            if event.is_ok() {
                changed.notify_one();
            }
        }
    });
    (reader, task)
}

async fn reconcile_routes(
    config: &AgentConfig,
    cluster: &routing::Cluster,
    desired: &[routing::Route],
    peers: Option<&dataplane::ipip::PeerTable>,
) -> Result<(), AgentError> {
    if let Some(peers) = peers {
        peers.set(routing::ipip_peers(cluster, &config.node));
    }
    if matches!(
        cluster.encapsulation,
        Encapsulation::Vxlan | Encapsulation::VxlanCrossSubnet
    ) {
        program_vxlan_peers(config, cluster).await?;
    }
    let actual_json = dataplane::ip::routes_json(&config.netns).await?;
    let actual =
        routing::parse_ip_json(&actual_json).map_err(|e| AgentError::Other(e.to_string()))?;
    let lines = routing::agent_plan(desired, &actual);
    if lines.is_empty() {
        return Ok(());
    }
    tracing::info!(changes = lines.len(), "programming routes");
    let script = lines.join("\n") + "\n";
    if let Err(e) = dataplane::ip::batch(Some(&config.netns), &script).await {
        // One bad line (a device not there yet) must not hold back the rest.
        tracing::debug!(error = %e, "route batch failed; applying line by line");
        for line in &lines {
            if let Err(e) = dataplane::ip::batch(Some(&config.netns), &format!("{line}\n")).await {
                tracing::warn!(route = %line, error = %e, "cannot program route");
            }
        }
    }
    Ok(())
}

async fn program_vxlan_peers(
    config: &AgentConfig,
    cluster: &routing::Cluster,
) -> Result<(), AgentError> {
    for peer in routing::vxlan_peers(cluster, &config.node) {
        dataplane::ip::batch(
            Some(&config.netns),
            &format!(
                "neigh replace {} lladdr {} dev {VXLAN_DEVICE} nud permanent\n",
                peer.tunnel_ip, peer.mac
            ),
        )
        .await?;
        let status = tokio::process::Command::new("bridge")
            .args([
                "-n",
                &config.netns,
                "fdb",
                "replace",
                &peer.mac,
                "dev",
                VXLAN_DEVICE,
            ])
            .args(["dst", &peer.node_ip.to_string(), "self", "permanent"])
            .status()
            .await
            .map_err(|e| AgentError::Other(format!("bridge fdb: {e}")))?;
        if !status.success() {
            return Err(AgentError::Other(format!(
                "bridge fdb replace {}: {status}",
                peer.mac
            )));
        }
    }
    Ok(())
}

// ----- the container runtime ------------------------------------------------------------------

/// What kube-apiserver grants a kubelet's token request.
const SERVICE_ACCOUNT_TOKEN_SECONDS: i64 = 365 * 24 * 3600;

/// The variables every container gets for the `kubernetes` Service (docker-link style, as
/// the kubelet writes them), which in-cluster clients read to find the API server.
fn kubernetes_service_env(ip: Ipv4Addr) -> Vec<(String, String)> {
    let port = 443;
    [
        ("KUBERNETES_SERVICE_HOST", ip.to_string()),
        ("KUBERNETES_SERVICE_PORT", port.to_string()),
        ("KUBERNETES_SERVICE_PORT_HTTPS", port.to_string()),
        ("KUBERNETES_PORT", format!("tcp://{ip}:{port}")),
        ("KUBERNETES_PORT_443_TCP", format!("tcp://{ip}:{port}")),
        ("KUBERNETES_PORT_443_TCP_PROTO", "tcp".to_string()),
        ("KUBERNETES_PORT_443_TCP_PORT", port.to_string()),
        ("KUBERNETES_PORT_443_TCP_ADDR", ip.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Pods as network namespaces, containers as built-in images in processes, each watched by a
/// [`crate::supervisor`] task that restarts it per `restartPolicy` and runs its probes.
#[derive(Clone)]
pub struct NetRuntime {
    client: Client,
    config: Arc<AgentConfig>,
    mtu: u32,
    processes: Arc<ContainerProcesses>,
    supervisors: Supervisors,
}

fn pod_uid(pod: &Pod) -> String {
    pod.uid().unwrap_or_default()
}

impl AgentConfig {
    /// Where the kubelet's exec endpoint finds pods.
    fn exec_config(&self) -> crate::exec::ExecConfig {
        crate::exec::ExecConfig {
            logs_root: self.logs_dir(),
            pods_dir: self.pods_dir(),
            pod_netns_prefix: self.pod_netns_prefix.clone(),
        }
    }
    /// The pod's resolv.conf, hosts, hostname and service account files in its directory.
    fn write_pod_files(&self, pod: &Pod, dir: &Path, ip: IpAddr) -> std::io::Result<()> {
        let config = crate::podfiles::PodFilesConfig {
            cluster_dns: self.cluster_dns,
            cluster_domain: self.cluster_domain.clone(),
            host_resolv: std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
            cluster_ca: self.cluster_ca.clone(),
        };
        crate::podfiles::write(dir, pod, ip, &config)
    }
    fn pod_dir(&self, uid: &str) -> PathBuf {
        self.pods_dir().join(uid)
    }
    fn pod_netns(&self, uid: &str) -> String {
        format!("{}{uid}", self.pod_netns_prefix)
    }
    fn pid_file(&self, uid: &str, container: &str) -> PathBuf {
        self.pod_dir(uid).join(format!("{container}.pid"))
    }
    /// The log file of run `restart_count` of a container: `<restartCount>.log`.
    fn log_path(&self, pod: &Pod, container: &str, restart_count: i32) -> PathBuf {
        images::logfile::container_log_path(
            &self.logs_dir(),
            &pod.namespace().unwrap_or_default(),
            &pod.name_any(),
            &pod_uid(pod),
            container,
            u32::try_from(restart_count).unwrap_or(0),
        )
    }
    /// The directory of a container's log files, with a trailing `/`: every run's process has
    /// an argument starting with it.
    fn log_dir_marker(&self, pod: &Pod, container: &str) -> Vec<u8> {
        let file = self.log_path(pod, container, 0);
        let mut dir = file
            .parent()
            .map(|d| d.to_string_lossy().into_owned())
            .unwrap_or_default();
        dir.push('/');
        dir.into_bytes()
    }
}

/// The container id of run `restart_count` of a container: the first run keeps the id
/// [`container_id`] gives, later runs get their own (upstream's runs are new containers).
fn run_container_id(uid: &str, container: &str, restart_count: i32) -> String {
    if restart_count == 0 {
        container_id(RUNTIME_NAME, uid, container)
    } else {
        // Container names cannot hold '.', so this never equals another container's id.
        container_id(RUNTIME_NAME, uid, &format!("{container}.{restart_count}"))
    }
}

/// Starts container processes, and exec probes, inside pods.
struct ContainerProcesses {
    config: Arc<AgentConfig>,
}

impl ContainerProcesses {
    /// The environment of a container's processes: a plain PATH, the pod's hostname, the
    /// lab's marker and the container's literal `env`.
    fn environment(
        pod: &Pod,
        container: &Container,
        kubernetes_service: Ipv4Addr,
    ) -> Vec<(String, String)> {
        let mut env = vec![
            (
                "PATH".to_string(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            ),
            (
                "HOSTNAME".to_string(),
                pod.spec
                    .as_ref()
                    .and_then(|s| s.hostname.clone())
                    .unwrap_or_else(|| pod.name_any()),
            ),
        ];
        if let Ok(marker) = std::env::var("KUBELAB_LAB") {
            env.push(("KUBELAB_LAB".to_string(), marker));
        }
        env.extend(kubernetes_service_env(kubernetes_service));
        for e in container.env.iter().flatten() {
            if let Some(v) = &e.value {
                env.push((e.name.clone(), v.clone()));
            }
        }
        env
    }

    /// The pod's network and UTS namespaces, and its private mounts (its `/etc/resolv.conf`,
    /// `/etc/hosts`, `/etc/hostname`, service account files).
    fn namespaces(&self, uid: &str) -> Result<dataplane::netns::NsFds, String> {
        let pod_dir = self.config.pod_dir(uid);
        let mounts = crate::podfiles::mount_plan(&pod_dir)
            .map_err(|e| format!("preparing the pod's mounts: {e}"))?;
        Ok(dataplane::netns::NsFds::open(
            &dataplane::netns::path(&self.config.pod_netns(uid)),
            Some(&pod_dir.join("uts")),
        )
        .map_err(|e| format!("entering the pod: {e}"))?
        .with_mounts(mounts))
    }
}

impl Spawner for ContainerProcesses {
    fn spawn(
        &self,
        pod: &Pod,
        container: &Container,
        restart_count: i32,
    ) -> Result<Spawned, RuntimeError> {
        let uid = pod_uid(pod);
        let image = container.image.clone().unwrap_or_default();
        let log = self.config.log_path(pod, &container.name, restart_count);
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| RuntimeError::new(format!("{}: {e}", dir.display())))?;
        }
        let fds = self.namespaces(&uid).map_err(RuntimeError::new)?;
        let mut cmd = std::process::Command::new(&self.config.program);
        cmd.arg("container")
            .arg("--image")
            .arg(&image)
            .arg("--log")
            .arg(&log);
        for c in container.command.iter().flatten() {
            cmd.arg("--command").arg(c);
        }
        for a in container.args.iter().flatten() {
            cmd.arg("--arg").arg(a);
        }
        let environment = Self::environment(pod, container, self.config.kubernetes_service());
        // `kubectl exec` runs with the container's environment.
        std::fs::write(
            crate::exec::env_file(&self.config.pod_dir(&uid), &container.name),
            serde_json::to_vec(&environment).unwrap_or_default(),
        )
        .map_err(|e| RuntimeError::new(format!("environment file: {e}")))?;
        cmd.env_clear()
            .envs(environment)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        // Its own process group, which the programs it starts share: a SIGKILL to the group
        // ends all of them, as the end of a container's PID namespace does.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        fds.apply_to(&mut cmd);
        let child = tokio::process::Command::from(cmd).spawn().map_err(|e| {
            RuntimeError::new(format!("starting container {}: {e}", container.name))
        })?;
        let pid = child.id().unwrap_or_default();
        std::fs::write(
            self.config.pid_file(&uid, &container.name),
            format!("{pid}\n"),
        )
        .map_err(|e| RuntimeError::new(format!("pid file: {e}")))?;
        Ok(Spawned {
            child,
            container_id: run_container_id(&uid, &container.name, restart_count),
        })
    }

    fn probe_command(
        &self,
        pod: &Pod,
        container: &Container,
        argv: &[String],
    ) -> Result<tokio::process::Command, String> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| "the exec probe has no command".to_string())?;
        let fds = self.namespaces(&pod_uid(pod))?;
        let mut cmd = std::process::Command::new(program);
        cmd.args(args).env_clear().envs(Self::environment(
            pod,
            container,
            self.config.kubernetes_service(),
        ));
        fds.apply_to(&mut cmd);
        Ok(tokio::process::Command::from(cmd))
    }
}

impl NetRuntime {
    /// The projected service account token, as the kubelet requests it: a TokenRequest
    /// bound to the pod, written where the pod's mounts put it. Skipped when the pod or its
    /// account opts out (`automountServiceAccountToken: false`).
    async fn write_service_account_token(&self, pod: &Pod, dir: &Path) -> Result<(), RuntimeError> {
        let spec = pod.spec.clone().unwrap_or_default();
        if spec.automount_service_account_token == Some(false) {
            return Ok(());
        }
        let namespace = pod.namespace().unwrap_or_default();
        let account = spec
            .service_account_name
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into());
        let api: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(self.client.clone(), &namespace);
        let sa = api
            .get(&account)
            .await
            .map_err(|e| RuntimeError::new(format!("serviceaccount {namespace}/{account}: {e}")))?;
        if sa.automount_service_account_token == Some(false) {
            return Ok(());
        }
        let request: k8s_openapi::api::authentication::v1::TokenRequest =
            serde_json::from_value(serde_json::json!({
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {
                    "audiences": [],
                    // kube-apiserver extends kubelet tokens to a year
                    // (--service-account-extend-token-expiration); this kubelet does not
                    // rotate them, so it asks for the year.
                    "expirationSeconds": SERVICE_ACCOUNT_TOKEN_SECONDS,
                    "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": pod.name_any(), "uid": pod_uid(pod)},
                },
            }))
            .map_err(|e| RuntimeError::new(e.to_string()))?;
        let answer = api
            .create_token_request(&account, &Default::default(), &request)
            .await
            .map_err(|e| RuntimeError::new(format!("requesting the service account token: {e}")))?;
        let token = answer.status.map(|s| s.token).unwrap_or_default();
        let file = dir.join("serviceaccount").join("token");
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, token)
            .and_then(|()| std::fs::rename(&tmp, &file))
            .map_err(|e| RuntimeError::new(format!("{}: {e}", file.display())))
    }

    fn new(client: Client, config: Arc<AgentConfig>, mtu: u32) -> NetRuntime {
        let processes = Arc::new(ContainerProcesses {
            config: config.clone(),
        });
        let supervisors = Supervisors::new(client.clone(), &config.node, processes.clone());
        NetRuntime {
            client,
            config,
            mtu,
            processes,
            supervisors,
        }
    }

    /// The live process of a container started earlier (by this or a previous agent), and
    /// the run (restart count) its log file names.
    fn running_pid(&self, pod: &Pod, container: &str) -> Option<(u32, i32)> {
        let uid = pod_uid(pod);
        let pid: u32 = std::fs::read_to_string(self.config.pid_file(&uid, container))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        if !is_alive(pid) {
            return None;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let marker = self.config.log_dir_marker(pod, container);
        let log = cmdline
            .split(|b| *b == 0)
            .find(|arg| arg.starts_with(&marker))?;
        let run = std::str::from_utf8(&log[marker.len()..])
            .ok()
            .and_then(|f| f.strip_suffix(".log"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        Some((pid, run))
    }

    /// When the current process of a container started (its pid file was written then).
    fn started_at(&self, uid: &str, container: &str) -> Time {
        Time(
            std::fs::metadata(self.config.pid_file(uid, container))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| jiff::Timestamp::try_from(t).ok())
                .unwrap_or_else(jiff::Timestamp::now),
        )
    }

    /// Stops the processes and removes the sandbox of pod `uid`, whatever state it is in.
    async fn remove_pod(&self, uid: &str, host_if: Option<&str>, grace: Duration) {
        // First, so that nothing restarts what is being stopped.
        self.supervisors.stop(uid);
        let dir = self.config.pod_dir(uid);
        let mut pids = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let path = e.path();
                if path.extension().is_some_and(|x| x == "pid")
                    && let Some(pid) = std::fs::read_to_string(&path)
                        .ok()
                        .and_then(|s| s.trim().parse::<u32>().ok())
                    && is_container_process(pid, &self.config.state_dir)
                {
                    pids.push(pid);
                }
            }
        }
        for pid in &pids {
            signal(*pid, libc::SIGTERM);
        }
        let deadline = tokio::time::Instant::now() + grace;
        while pids.iter().any(|p| is_alive(*p)) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for pid in &pids {
            // The whole group: what the container started dies with it.
            signal_group(*pid, libc::SIGKILL);
        }
        let host_if = host_if.map(str::to_string).unwrap_or_default();
        if let Err(e) =
            dataplane::sandbox::teardown(&self.config.netns, &self.config.pod_netns(uid), &host_if)
                .await
        {
            tracing::warn!(pod = uid, error = %e, "sandbox teardown failed");
        }
        let uts = dir.join("uts");
        let _ = tokio::task::spawn_blocking(move || dataplane::netns::remove_ns_file(&uts)).await;
        let _ = std::fs::remove_dir_all(&dir);
        if let Ok(entries) = std::fs::read_dir(self.config.logs_dir()) {
            for e in entries.flatten() {
                if e.file_name()
                    .to_string_lossy()
                    .ends_with(&format!("_{uid}"))
                {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
}

pub(crate) fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_some_and(|s| s != 'Z' && s != 'X'),
        Err(_) => false,
    }
}

/// Whether `pid` is a container process of this node (its command line names a log file under
/// the node's state directory), so a reused pid is never signalled.
fn is_container_process(pid: u32, state_dir: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let dir = state_dir.to_string_lossy();
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    args.get(1) == Some(&b"container".as_slice())
        && args.iter().any(|a| a.starts_with(dir.as_bytes()))
}

pub(crate) fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) with plain integers.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Signals the process group `pgid` (a container process and what it started).
pub(crate) fn signal_group(pgid: u32, sig: libc::c_int) {
    if let Ok(pgid) = libc::pid_t::try_from(pgid)
        && pgid > 1
    {
        // SAFETY: kill(2) with plain integers; a negative pid names a process group.
        unsafe {
            libc::kill(-pgid, sig);
        }
    }
}

fn is_init_container(pod: &Pod, name: &str) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.name == name))
}

impl ContainerRuntime for NetRuntime {
    fn name(&self) -> &str {
        RUNTIME_NAME
    }

    async fn create_sandbox(&self, pod: &Pod, ips: &[IpAddr]) -> Result<(), RuntimeError> {
        let uid = pod_uid(pod);
        let ip = ips
            .iter()
            .find_map(|ip| match ip {
                IpAddr::V4(v4) => Some(*v4),
                IpAddr::V6(_) => None,
            })
            .ok_or_else(|| RuntimeError::new("the pod has no IPv4 address"))?;
        let network = dataplane::sandbox::PodNetwork {
            node_netns: self.config.netns.clone(),
            pod_netns: self.config.pod_netns(&uid),
            host_if: routing::veth_name(&pod.namespace().unwrap_or_default(), &pod.name_any()),
            ip,
            mtu: self.mtu,
        };
        let dir = self.config.pod_dir(&uid);
        std::fs::create_dir_all(&dir)
            .map_err(|e| RuntimeError::new(format!("{}: {e}", dir.display())))?;
        dataplane::sandbox::setup(&network)
            .await
            .map_err(|e| RuntimeError::new(format!("setting up the pod network: {e}")))?;
        let hostname = pod
            .spec
            .as_ref()
            .and_then(|s| s.hostname.clone())
            .unwrap_or_else(|| pod.name_any());
        let uts = dir.join("uts");
        tokio::task::spawn_blocking(move || dataplane::netns::create_uts(&uts, &hostname))
            .await
            .map_err(|e| RuntimeError::new(e.to_string()))?
            .map_err(|e| RuntimeError::new(format!("pod hostname: {e}")))?;
        self.config
            .write_pod_files(pod, &dir, IpAddr::V4(ip))
            .map_err(|e| RuntimeError::new(format!("writing the pod's files: {e}")))?;
        self.write_service_account_token(pod, &dir).await?;
        self.supervisors.set_pod_ip(pod, IpAddr::V4(ip));
        Ok(())
    }

    async fn start_container(
        &self,
        pod: &Pod,
        container: &Container,
    ) -> Result<StartedContainer, RuntimeError> {
        let uid = pod_uid(pod);
        let image = container.image.clone().unwrap_or_default();
        if images::lookup(&image).is_none() {
            return Err(RuntimeError::image_pull(format!(
                "failed to pull and unpack image \"{image}\": no built-in image of that name in kubelab"
            )));
        }
        let init = is_init_container(pod, &container.name);
        let started = |id: String, at: Time| StartedContainer {
            name: container.name.clone(),
            container_id: id,
            image_id: image_id(&image),
            started_at: at,
        };
        // Asked again (a retried start): what is supervised is as it is.
        if !init && let Some(status) = self.supervisors.container_status(pod, &container.name) {
            let at = status
                .state
                .as_ref()
                .and_then(|s| s.running.as_ref())
                .and_then(|r| r.started_at.clone())
                .unwrap_or_else(|| Time(jiff::Timestamp::now()));
            return Ok(started(status.container_id.unwrap_or_default(), at));
        }
        if let Some((pid, run)) = self.running_pid(pod, &container.name) {
            let at = self.started_at(&uid, &container.name);
            let id = run_container_id(&uid, &container.name, run);
            if !init {
                self.supervisors.supervise(
                    pod,
                    container,
                    lifecycle::new_running(container, &id, &image_id(&image), &at, run),
                    Start::Running(Process::Adopted {
                        pid,
                        marker: self.config.log_dir_marker(pod, &container.name),
                    }),
                );
            }
            return Ok(started(id, at));
        }
        let spawned = self.processes.spawn(pod, container, 0)?;
        let at = Time(jiff::Timestamp::now());
        let result = started(spawned.container_id.clone(), at.clone());
        if init {
            // Init containers are not supervised yet: reap it when it exits.
            let mut child = spawned.child;
            let (name, pod_name) = (container.name.clone(), pod.name_any());
            tokio::spawn(async move {
                if let Ok(status) = child.wait().await {
                    tracing::info!(pod = %pod_name, container = %name, %status, "init container exited");
                }
            });
        } else {
            self.supervisors.supervise(
                pod,
                container,
                lifecycle::new_running(container, &spawned.container_id, &image_id(&image), &at, 0),
                Start::Running(Process::Child(spawned.child)),
            );
        }
        Ok(result)
    }

    async fn stop_pod(&self, pod: &Pod) -> Result<(), RuntimeError> {
        let grace = pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30)
            .clamp(0, 30);
        let host_if = routing::veth_name(&pod.namespace().unwrap_or_default(), &pod.name_any());
        self.remove_pod(
            &pod_uid(pod),
            Some(&host_if),
            Duration::from_secs(grace as u64).min(Duration::from_secs(2)),
        )
        .await;
        Ok(())
    }

    fn has_image(&self, image: &str) -> bool {
        images::lookup(image).is_some()
    }

    async fn pod_started(&self, pod: &Pod, status: &PodStatus) {
        self.supervisors.pod_started(pod, status);
    }

    /// Takes over the containers of a pod an earlier agent started: a live process is watched
    /// (its exit code will be unknown), one that died meanwhile is reported as upstream
    /// reports a container it lost (`ContainerStatusUnknown`, 137) and restarted per policy, one
    /// that was waiting to restart is restarted now (the back-off, like the kubelet's, lives
    /// in memory only).
    async fn adopt_pod(&self, pod: &Pod) {
        let uid = pod_uid(pod);
        let policy = lifecycle::RestartPolicy::of(pod);
        let statuses = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.clone())
            .unwrap_or_default();
        let containers = pod
            .spec
            .as_ref()
            .map(|s| s.containers.clone())
            .unwrap_or_default();
        for container in &containers {
            let image = container.image.clone().unwrap_or_default();
            let known = statuses.iter().find(|s| s.name == container.name).cloned();
            let state = known
                .as_ref()
                .and_then(|s| s.state.clone())
                .unwrap_or_default();
            if let Some((pid, run)) = self.running_pid(pod, &container.name) {
                let status = match known.filter(|_| state.running.is_some()) {
                    Some(s) => s,
                    None => {
                        let id = run_container_id(&uid, &container.name, run);
                        let at = self.started_at(&uid, &container.name);
                        lifecycle::new_running(container, &id, &image_id(&image), &at, run)
                    }
                };
                let marker = self.config.log_dir_marker(pod, &container.name);
                self.supervisors.supervise(
                    pod,
                    container,
                    status,
                    Start::Running(Process::Adopted { pid, marker }),
                );
                continue;
            }
            let Some(status) = known else {
                continue;
            };
            let last_finish = |t: Option<&k8s_openapi::api::core::v1::ContainerStateTerminated>| {
                t.and_then(|t| t.finished_at.as_ref())
                    .map_or_else(jiff::Timestamp::now, |t| t.0)
            };
            if state.running.is_some() {
                self.supervisors
                    .supervise(pod, container, status, Start::Lost);
            } else if let Some(t) = state.terminated.as_ref() {
                if policy.restarts(t.exit_code) {
                    let finished = last_finish(Some(t));
                    self.supervisors
                        .supervise(pod, container, status, Start::Restart { finished });
                }
            } else if state.waiting.is_some() {
                let last = status
                    .last_state
                    .as_ref()
                    .and_then(|l| l.terminated.as_ref());
                let finished = last_finish(last);
                self.supervisors
                    .supervise(pod, container, status, Start::Restart { finished });
            }
        }
        if let Some(status) = &pod.status {
            self.supervisors.pod_started(pod, status);
        }
    }
}

/// Removes sandboxes whose pod is gone from the API (deleted while this agent was down, or
/// force-deleted): like the kubelet's housekeeping of orphaned pods.
async fn sweep_sandboxes(client: Client, runtime: NetRuntime) {
    let pods: Api<Pod> = Api::all(client);
    let selector = format!("spec.nodeName={}", runtime.config.node);
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tick.tick().await;
        // Directories first, then the pods: a sandbox made after the list is never taken for
        // an orphan.
        let dirs: Vec<String> = std::fs::read_dir(runtime.config.pods_dir())
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| e.file_name().to_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if dirs.is_empty() {
            continue;
        }
        let Ok(list) = pods
            .list(&kube::api::ListParams::default().fields(&selector))
            .await
        else {
            continue;
        };
        let live: std::collections::HashSet<String> =
            list.items.iter().filter_map(|p| p.uid()).collect();
        for uid in dirs.iter().filter(|u| !live.contains(*u)) {
            tracing::info!(pod = %uid, "removing the sandbox of a pod that is gone");
            // The veth goes with the pod namespace; its name is not needed.
            runtime
                .remove_pod(uid, None, Duration::from_millis(500))
                .await;
        }
    }
}
