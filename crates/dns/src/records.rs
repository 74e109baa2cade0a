//! The cluster's DNS data, built from API objects: what CoreDNS's kubernetes plugin keeps in
//! its informer caches, reduced to what its answers need.
//!
//! A [`Records`] is an immutable snapshot; the feed builds a new one after every change and the
//! server swaps it in, so a query never sees half an update. Building is pure: the same
//! Services, EndpointSlices and Namespaces give the same records.

use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

/// The cluster domain kubeadm configures (`--cluster-domain` of the kubelet).
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// The TTL of every answer: kubeadm's Corefile says `ttl 30`.
pub const TTL: u32 = 30;

/// The Service whose ClusterIPs are the cluster's name servers (`ns.dns.cluster.local`).
pub const DNS_SERVICE: (&str, &str) = ("kube-system", "kube-dns");

/// The label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A Service or EndpointSlice port as DNS sees it: SRV queries select by name and protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PortSpec {
    pub(crate) name: String,
    /// `TCP`, `UDP` or `SCTP` as the API spells it.
    pub(crate) protocol: String,
    /// `None` for CoreDNS's "no ports" sentinel: the address exists but has no SRV record.
    pub(crate) port: Option<u16>,
}

/// One ready endpoint address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EndpointAddress {
    pub(crate) ip: IpAddr,
    /// The endpoint's DNS label: its `hostname`, else the dashed IP (`10-244-1-5`).
    pub(crate) hostname: String,
}

/// The ready addresses of one EndpointSlice with that slice's ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EndpointSubset {
    pub(crate) ports: Vec<PortSpec>,
    pub(crate) addresses: Vec<EndpointAddress>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ServiceKind {
    /// A virtual IP per family.
    ClusterIp(Vec<IpAddr>),
    /// `clusterIP: None`: names resolve to the ready endpoints themselves.
    Headless,
    /// A CNAME to this name.
    ExternalName(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServiceEntry {
    pub(crate) kind: ServiceKind,
    pub(crate) ports: Vec<PortSpec>,
    /// One per EndpointSlice, in slice-name order.
    pub(crate) subsets: Vec<EndpointSubset>,
}

impl ServiceEntry {
    pub(crate) fn is_headless(&self) -> bool {
        self.kind == ServiceKind::Headless
    }
}

/// Everything the server answers from.
#[derive(Clone, Debug, Default)]
pub struct Records {
    /// False until the first complete list of every watched kind: CoreDNS answers SERVFAIL
    /// rather than NXDOMAIN before then.
    pub(crate) synced: bool,
    /// The SOA serial: the Unix time of the last change, as CoreDNS uses.
    pub(crate) serial: u32,
    pub(crate) namespaces: BTreeSet<String>,
    /// Keyed by (namespace, name).
    pub(crate) services: BTreeMap<(String, String), ServiceEntry>,
    /// PTR targets by address, without the trailing dot: a ClusterIP names its Service only;
    /// an endpoint address names `<hostname>.<service>.<namespace>.svc.<zone>` for every
    /// Service it backs.
    pub(crate) reverse: HashMap<IpAddr, Vec<String>>,
    /// The ClusterIPs of `kube-system/kube-dns`.
    pub(crate) name_servers: Vec<IpAddr>,
}

impl Records {
    /// Records before the first sync: every name in the cluster zones is a server failure.
    pub fn unsynced() -> Records {
        Records::default()
    }

    /// Builds synced records from complete lists of the three kinds. `serial` is the SOA
    /// serial (the feed passes the Unix time of the change).
    pub fn build<'a>(
        services: impl IntoIterator<Item = &'a Service>,
        endpoint_slices: impl IntoIterator<Item = &'a EndpointSlice>,
        namespaces: impl IntoIterator<Item = &'a Namespace>,
        serial: u32,
    ) -> Records {
        let namespaces = namespaces
            .into_iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        let mut entries: BTreeMap<(String, String), ServiceEntry> = services
            .into_iter()
            .filter_map(|s| Some((service_key(s)?, service_entry(s))))
            .collect();

        let mut slices: Vec<&EndpointSlice> = endpoint_slices.into_iter().collect();
        slices.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        for slice in slices {
            let Some(key) = slice_service_key(slice) else {
                continue;
            };
            if let Some(entry) = entries.get_mut(&key) {
                entry.subsets.push(endpoint_subset(slice));
            }
        }

        let mut reverse: HashMap<IpAddr, Vec<String>> = HashMap::new();
        // ClusterIPs first: a virtual IP names exactly one Service (the first, in key order).
        for ((namespace, name), entry) in &entries {
            if let ServiceKind::ClusterIp(ips) = &entry.kind {
                for ip in ips {
                    reverse
                        .entry(*ip)
                        .or_insert_with(|| vec![service_domain(name, namespace)]);
                }
            }
        }
        let virtual_ips: BTreeSet<IpAddr> = reverse.keys().copied().collect();
        for ((namespace, name), entry) in &entries {
            for address in entry.subsets.iter().flat_map(|s| &s.addresses) {
                if virtual_ips.contains(&address.ip) {
                    continue;
                }
                let target = format!("{}.{}", address.hostname, service_domain(name, namespace));
                let targets = reverse.entry(address.ip).or_default();
                if !targets.contains(&target) {
                    targets.push(target);
                }
            }
        }

        let name_servers =
            match entries.get(&(DNS_SERVICE.0.to_string(), DNS_SERVICE.1.to_string())) {
                Some(ServiceEntry {
                    kind: ServiceKind::ClusterIp(ips),
                    ..
                }) => ips.clone(),
                _ => Vec::new(),
            };

        Records {
            synced: true,
            serial,
            namespaces,
            services: entries,
            reverse,
            name_servers,
        }
    }

    /// Whether the first complete lists have arrived.
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// How many Services the records hold (for logs and tests).
    pub fn service_count(&self) -> usize {
        self.services.len()
    }
}

/// `<service>.<namespace>.svc.cluster.local`, without the trailing dot.
pub(crate) fn service_domain(name: &str, namespace: &str) -> String {
    format!("{name}.{namespace}.svc.{CLUSTER_DOMAIN}")
}

fn service_key(service: &Service) -> Option<(String, String)> {
    Some((
        service.metadata.namespace.clone()?,
        service.metadata.name.clone()?,
    ))
}

fn service_entry(service: &Service) -> ServiceEntry {
    let spec = service.spec.as_ref();
    let kind = if spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
        ServiceKind::ExternalName(
            spec.and_then(|s| s.external_name.clone())
                .unwrap_or_default(),
        )
    } else {
        let ips: Vec<String> = match spec {
            Some(s) => match (&s.cluster_ips, &s.cluster_ip) {
                (Some(ips), _) if !ips.is_empty() => ips.clone(),
                (_, Some(ip)) => vec![ip.clone()],
                _ => Vec::new(),
            },
            None => Vec::new(),
        };
        if ips.iter().any(|ip| ip == "None") {
            ServiceKind::Headless
        } else {
            ServiceKind::ClusterIp(ips.iter().filter_map(|ip| ip.parse().ok()).collect())
        }
    };
    let ports = spec
        .and_then(|s| s.ports.as_ref())
        .map(|ports| {
            ports
                .iter()
                .map(|p| PortSpec {
                    name: p.name.clone().unwrap_or_default(),
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".to_string()),
                    port: u16::try_from(p.port).ok(),
                })
                .collect()
        })
        .unwrap_or_default();
    ServiceEntry {
        kind,
        ports,
        subsets: Vec::new(),
    }
}

fn slice_service_key(slice: &EndpointSlice) -> Option<(String, String)> {
    let namespace = slice.metadata.namespace.clone()?;
    let service = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    Some((namespace, service.clone()))
}

/// The slice's ready addresses (a missing `ready` condition counts as ready, as the API
/// says consumers should) with its ports; no ports at all gives CoreDNS's sentinel port.
fn endpoint_subset(slice: &EndpointSlice) -> EndpointSubset {
    let ports: Vec<PortSpec> = match slice.ports.as_deref() {
        Some(ports) if !ports.is_empty() => ports
            .iter()
            .map(|p| PortSpec {
                name: p.name.clone().unwrap_or_default(),
                protocol: p.protocol.clone().unwrap_or_default(),
                port: p.port.and_then(|n| u16::try_from(n).ok()),
            })
            .collect(),
        _ => vec![PortSpec {
            name: String::new(),
            protocol: String::new(),
            port: None,
        }],
    };
    let mut addresses = Vec::new();
    for endpoint in &slice.endpoints {
        let ready = endpoint
            .conditions
            .as_ref()
            .and_then(|c| c.ready)
            .unwrap_or(true);
        if !ready {
            continue;
        }
        for address in &endpoint.addresses {
            // FQDN slices carry names, not addresses; CoreDNS cannot serve them either.
            let Ok(ip) = address.parse::<IpAddr>() else {
                continue;
            };
            let hostname = endpoint
                .hostname
                .clone()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| dashed(ip));
            addresses.push(EndpointAddress { ip, hostname });
        }
    }
    EndpointSubset { ports, addresses }
}

/// An address as one DNS label: `10-244-1-5`, or for IPv6 the colons dashed with a trailing
/// `0` when the address ends in `::` (a label cannot end with `-`).
pub(crate) fn dashed(ip: IpAddr) -> String {
    let text = ip.to_string();
    match ip {
        IpAddr::V4(_) => text.replace('.', "-"),
        IpAddr::V6(_) => {
            let d = text.replace(':', "-");
            if d.ends_with('-') { format!("{d}0") } else { d }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashed_addresses() {
        assert_eq!(dashed("10.244.1.5".parse().expect("ip")), "10-244-1-5");
        assert_eq!(dashed("fd00::".parse().expect("ip")), "fd00--0");
        assert_eq!(dashed("fd00::5".parse().expect("ip")), "fd00--5");
    }
}
