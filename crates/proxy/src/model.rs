//! The pure model: what every Service port should do on this node, computed from Services and
//! EndpointSlices the way kube-proxy's service and endpoint-slice caches do. No nftables syntax
//! here (that is [`crate::ruleset`]) and no I/O.
//!
//! Inputs come from an API server and may be malformed; nothing here panics. A Service port that
//! cannot be programmed (IPv6 or unparsable ClusterIP, a name nft cannot carry) is left out and
//! reported in [`ProxyState::diagnostics`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::error::ProxyError;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// An IPv4 prefix such as the pod pool `192.168.0.0/16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Cidr {
    network: Ipv4Addr,
    prefix_len: u8,
}

impl Ipv4Cidr {
    /// The prefix containing `addr` with `prefix_len` leading bits (host bits are cleared).
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Result<Ipv4Cidr, ProxyError> {
        if prefix_len > 32 {
            return Err(ProxyError::InvalidCidr(format!("{addr}/{prefix_len}")));
        }
        let network = Ipv4Addr::from(u32::from(addr) & Self::mask(prefix_len));
        Ok(Ipv4Cidr {
            network,
            prefix_len,
        })
    }

    fn mask(prefix_len: u8) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(prefix_len))
            .unwrap_or(0)
    }

    /// Whether `ip` lies inside this prefix.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & Self::mask(self.prefix_len) == u32::from(self.network)
    }

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    /// Number of leading bits.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = ProxyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ProxyError::InvalidCidr(s.to_string());
        let (addr, len) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let len: u8 = len.parse().map_err(|_| bad())?;
        Ipv4Cidr::new(addr, len)
    }
}

/// What this node's proxy needs to know besides the API objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// The pod pool. Traffic from outside it to a ClusterIP is masqueraded (kube-proxy's
    /// `--cluster-cidr` local-traffic detector), and under `externalTrafficPolicy: Local` pod
    /// traffic to a NodePort is short-circuited to all endpoints.
    pub cluster_cidr: Ipv4Cidr,
    /// This node's name; endpoints whose `nodeName` equals it are local.
    pub node_name: String,
    /// Masquerade every connection to a ClusterIP, not only those from outside the pod pool.
    pub masquerade_all: bool,
    /// The Service CIDR. When known, traffic to unallocated addresses in it is dropped
    /// (upstream's `cluster-ips-check` chain).
    pub service_cidr: Option<Ipv4Cidr>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            cluster_cidr: Ipv4Cidr {
                network: Ipv4Addr::new(192, 168, 0, 0),
                prefix_len: 16,
            },
            node_name: String::new(),
            masquerade_all: false,
            service_cidr: Some(Ipv4Cidr {
                network: Ipv4Addr::new(10, 96, 0, 0),
                prefix_len: 12,
            }),
        }
    }
}

/// Transport protocols a Service port can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// Lower-case, as in nft rules (`tcp dport`) and in chain names.
    pub fn as_nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }

    /// A Kubernetes protocol field; absent means TCP, anything unknown is `None`.
    fn from_k8s(value: Option<&str>) -> Option<Protocol> {
        match value.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }
}

/// One port of one Service: upstream's `ServicePortName` plus its protocol.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServicePortName {
    pub namespace: String,
    pub name: String,
    /// The port's `name` (empty for a single unnamed port, as upstream).
    pub port_name: String,
    pub protocol: Protocol,
}

impl fmt::Display for ServicePortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)?;
        if !self.port_name.is_empty() {
            write!(f, ":{}", self.port_name)?;
        }
        Ok(())
    }
}

/// One backend of a Service port, as read from an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
    /// `conditions.ready` (absent counts as ready, as the API documents).
    pub ready: bool,
    /// `conditions.serving` (absent means the same as `ready`).
    pub serving: bool,
    /// `conditions.terminating` (absent means not terminating).
    pub terminating: bool,
    /// Runs on this node (`nodeName` equals [`ProxyConfig::node_name`]).
    pub is_local: bool,
}

/// Everything about one Service port that shapes its rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePortState {
    pub cluster_ip: Ipv4Addr,
    pub port: u16,
    /// Set for `type: NodePort` and `LoadBalancer` ports that have one.
    pub node_port: Option<u16>,
    /// `spec.externalIPs` and `status.loadBalancer.ingress[].ip` (IPv4 only), sorted.
    pub external_ips: Vec<Ipv4Addr>,
    /// `externalTrafficPolicy: Local`.
    pub external_policy_local: bool,
    /// `internalTrafficPolicy: Local`.
    pub internal_policy_local: bool,
    /// All known endpoints for this port, sorted by address, without duplicates.
    pub endpoints: Vec<Endpoint>,
}

/// Endpoints sorted into the roles kube-proxy's `CategorizeEndpoints` gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CategorizedEndpoints {
    /// Used by `Cluster` policies.
    pub cluster: Vec<Endpoint>,
    /// Used by `Local` policies.
    pub local: Vec<Endpoint>,
    /// Union of the two: every endpoint that gets an `endpoint-` chain.
    pub all_reachable: Vec<Endpoint>,
    /// Whether any endpoint anywhere can serve (ready, or serving while terminating).
    pub has_any: bool,
}

impl ServicePortState {
    /// Reachable from outside the cluster network: a NodePort, an external or a load-balancer IP.
    pub fn externally_accessible(&self) -> bool {
        self.node_port.is_some() || !self.external_ips.is_empty()
    }

    /// Upstream `UsesClusterEndpoints`: external traffic needs the cluster endpoints even under
    /// `Local` policy, for the short-circuit of pod and host traffic.
    pub fn uses_cluster_endpoints(&self) -> bool {
        !self.internal_policy_local || self.externally_accessible()
    }

    /// Upstream `UsesLocalEndpoints`.
    pub fn uses_local_endpoints(&self) -> bool {
        self.internal_policy_local || (self.externally_accessible() && self.external_policy_local)
    }

    /// Ready endpoints, falling back to serving-but-terminating ones when none is ready (so a
    /// rolling update does not black-hole traffic), per policy.
    pub fn categorize(&self) -> CategorizedEndpoints {
        let pick = |filter: &dyn Fn(&Endpoint) -> bool| -> Vec<Endpoint> {
            let ready: Vec<Endpoint> = self
                .endpoints
                .iter()
                .filter(|ep| ep.ready && filter(ep))
                .cloned()
                .collect();
            if !ready.is_empty() {
                return ready;
            }
            self.endpoints
                .iter()
                .filter(|ep| ep.serving && ep.terminating && filter(ep))
                .cloned()
                .collect()
        };
        let has_any = self
            .endpoints
            .iter()
            .any(|ep| ep.ready || (ep.serving && ep.terminating));
        let cluster = if self.uses_cluster_endpoints() {
            pick(&|_| true)
        } else {
            Vec::new()
        };
        let local = if self.uses_local_endpoints() {
            pick(&|ep| ep.is_local)
        } else {
            Vec::new()
        };
        let mut all_reachable: Vec<Endpoint> = cluster.iter().chain(&local).cloned().collect();
        all_reachable.sort();
        all_reachable.dedup();
        CategorizedEndpoints {
            cluster,
            local,
            all_reachable,
            has_any,
        }
    }
}

/// The whole desired proxy state of one node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProxyState {
    pub config: ProxyConfig,
    pub service_ports: BTreeMap<ServicePortName, ServicePortState>,
    /// Why some Service ports were left out; never fatal.
    pub diagnostics: Vec<String>,
}

/// What nft accepts inside a chain name besides the `/` and `_` we add ourselves; Kubernetes
/// names are DNS labels, so this only rejects objects an unvalidating server let through.
fn is_name_safe(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

impl ProxyState {
    /// Builds the state from the API objects (any order; slices of unknown Services are ignored).
    /// Takes references so that a caller holding objects in a watch cache (`Arc`s) need not
    /// clone them: `from_objects(store.iter().map(|s| &**s), …)`; `&Vec<_>` works too.
    pub fn from_objects<'a>(
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
        config: &ProxyConfig,
    ) -> ProxyState {
        let mut state = ProxyState {
            config: config.clone(),
            ..ProxyState::default()
        };
        for service in services {
            state.add_service(service);
        }
        let mut endpoints: BTreeMap<ServicePortName, BTreeMap<(Ipv4Addr, u16), Endpoint>> =
            BTreeMap::new();
        for slice in slices {
            collect_slice(slice, config, &mut endpoints);
        }
        for (name, port_state) in &mut state.service_ports {
            if let Some(found) = endpoints.remove(name) {
                port_state.endpoints = found.into_values().collect();
            }
        }
        state
    }

    fn add_service(&mut self, service: &Service) {
        let namespace = service.metadata.namespace.clone().unwrap_or_default();
        let name = service.metadata.name.clone().unwrap_or_default();
        let Some(spec) = &service.spec else { return };
        if spec.type_.as_deref() == Some("ExternalName") {
            return;
        }
        let cluster_ip = match spec.cluster_ip.as_deref() {
            None | Some("") | Some("None") => return,
            Some(ip) => match ip.parse::<Ipv4Addr>() {
                Ok(ip) => ip,
                Err(_) => {
                    self.diagnostics.push(format!(
                        "{namespace}/{name}: clusterIP {ip:?} is not IPv4, skipped"
                    ));
                    return;
                }
            },
        };
        if !is_name_safe(&namespace) || !is_name_safe(&name) || name.is_empty() {
            self.diagnostics.push(format!(
                "{namespace}/{name}: name not usable in nftables, skipped"
            ));
            return;
        }
        let exposes_node_ports = matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
        let mut external_ips: Vec<Ipv4Addr> = spec
            .external_ips
            .iter()
            .flatten()
            .filter_map(|ip| ip.parse().ok())
            .collect();
        if spec.type_.as_deref() == Some("LoadBalancer") {
            let ingress = service
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref());
            external_ips.extend(
                ingress
                    .into_iter()
                    .flatten()
                    .filter_map(|i| i.ip.as_deref()?.parse::<Ipv4Addr>().ok()),
            );
        }
        external_ips.sort();
        external_ips.dedup();
        for port in spec.ports.iter().flatten() {
            let port_name = port.name.clone().unwrap_or_default();
            let Some(protocol) = Protocol::from_k8s(port.protocol.as_deref()) else {
                self.diagnostics.push(format!(
                    "{namespace}/{name}:{port_name}: unknown protocol {:?}, skipped",
                    port.protocol
                ));
                continue;
            };
            let Ok(number) = u16::try_from(port.port) else {
                self.diagnostics.push(format!(
                    "{namespace}/{name}:{port_name}: port {} out of range, skipped",
                    port.port
                ));
                continue;
            };
            if number == 0 || !is_name_safe(&port_name) {
                self.diagnostics.push(format!(
                    "{namespace}/{name}:{port_name}: unusable port, skipped"
                ));
                continue;
            }
            let node_port = if exposes_node_ports {
                port.node_port
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|p| *p != 0)
            } else {
                None
            };
            self.service_ports.insert(
                ServicePortName {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    port_name,
                    protocol,
                },
                ServicePortState {
                    cluster_ip,
                    port: number,
                    node_port,
                    external_ips: external_ips.clone(),
                    external_policy_local: spec.external_traffic_policy.as_deref() == Some("Local"),
                    internal_policy_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
                    endpoints: Vec::new(),
                },
            );
        }
    }
}

/// Adds the IPv4 endpoints of one slice under each of its ports. The first address of an
/// endpoint is the one that counts (upstream does the same); duplicates across slices keep the
/// first occurrence.
fn collect_slice(
    slice: &EndpointSlice,
    config: &ProxyConfig,
    into: &mut BTreeMap<ServicePortName, BTreeMap<(Ipv4Addr, u16), Endpoint>>,
) {
    if slice.address_type != "IPv4" {
        return;
    }
    let Some(service_name) = slice
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(SERVICE_NAME_LABEL))
    else {
        return;
    };
    let namespace = slice.metadata.namespace.clone().unwrap_or_default();
    for port in slice.ports.iter().flatten() {
        let Some(protocol) = Protocol::from_k8s(port.protocol.as_deref()) else {
            continue;
        };
        let Some(number) = port
            .port
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
        else {
            continue;
        };
        let key = ServicePortName {
            namespace: namespace.clone(),
            name: service_name.clone(),
            port_name: port.name.clone().unwrap_or_default(),
            protocol,
        };
        let by_address = into.entry(key).or_default();
        for endpoint in &slice.endpoints {
            let Some(ip) = endpoint
                .addresses
                .first()
                .and_then(|a| a.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            let conditions = endpoint.conditions.as_ref();
            let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
            let serving = conditions.and_then(|c| c.serving).unwrap_or(ready);
            let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
            let is_local = !config.node_name.is_empty()
                && endpoint.node_name.as_deref() == Some(config.node_name.as_str());
            by_address.entry((ip, number)).or_insert(Endpoint {
                ip,
                port: number,
                ready,
                serving,
                terminating,
                is_local,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parses_and_contains() {
        let pool: Ipv4Cidr = "192.168.7.9/16".parse().unwrap();
        assert_eq!(pool.to_string(), "192.168.0.0/16");
        assert!(pool.contains(Ipv4Addr::new(192, 168, 200, 1)));
        assert!(!pool.contains(Ipv4Addr::new(10, 0, 0, 1)));
        assert!(
            "0.0.0.0/0"
                .parse::<Ipv4Cidr>()
                .unwrap()
                .contains(Ipv4Addr::BROADCAST)
        );
        assert!("1.2.3.4/33".parse::<Ipv4Cidr>().is_err());
        assert!("1.2.3.4".parse::<Ipv4Cidr>().is_err());
    }

    fn endpoint(ip: u8, ready: bool, serving: bool, terminating: bool) -> Endpoint {
        Endpoint {
            ip: Ipv4Addr::new(192, 168, 0, ip),
            port: 80,
            ready,
            serving,
            terminating,
            is_local: false,
        }
    }

    fn port_state(endpoints: Vec<Endpoint>) -> ServicePortState {
        ServicePortState {
            cluster_ip: Ipv4Addr::new(10, 96, 0, 5),
            port: 80,
            node_port: None,
            external_ips: vec![],
            external_policy_local: false,
            internal_policy_local: false,
            endpoints,
        }
    }

    #[test]
    fn ready_endpoints_win_over_terminating_ones() {
        let state = port_state(vec![
            endpoint(1, true, true, false),
            endpoint(2, false, true, true),
        ]);
        let categorized = state.categorize();
        assert_eq!(categorized.cluster, vec![endpoint(1, true, true, false)]);
        assert!(categorized.has_any);
    }

    #[test]
    fn serving_terminating_endpoints_are_used_when_none_is_ready() {
        let state = port_state(vec![
            endpoint(1, false, false, false),
            endpoint(2, false, true, true),
        ]);
        assert_eq!(
            state.categorize().cluster,
            vec![endpoint(2, false, true, true)]
        );
    }

    #[test]
    fn unready_non_serving_endpoints_mean_no_endpoints() {
        let state = port_state(vec![endpoint(1, false, false, false)]);
        let categorized = state.categorize();
        assert!(categorized.cluster.is_empty());
        assert!(!categorized.has_any);
    }
}
