//! The Endpoints and EndpointSlice controllers (upstream `pkg/controller/endpoint` and
//! `pkg/controller/endpointslice` with `k8s.io/endpointslice`): for every Service with a
//! selector, the pods it selects in its namespace become
//!
//! - an `Endpoints` object named like the Service: ready pods under `addresses`, unready ones
//!   under `notReadyAddresses`, terminating and IP-less pods left out, subsets repacked so pods
//!   offering the same ports share one subset;
//! - `EndpointSlice`s named `<service>-xxxxx`, labelled `kubernetes.io/service-name` and
//!   `endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io`, owned by the
//!   Service, at most 100 endpoints each, grouped by the set of ports the pods resolve to, with
//!   ready / serving / terminating conditions (terminating pods stay in slices).
//!
//! Named target ports are resolved against each pod's container ports (and sidecar init
//! containers), so two pods may serve one Service port on different numbers.
//!
//! **Invariant:** Services without a selector (the API server's own `kubernetes` Service, and
//! user-managed ones) are never touched; neither are slices another manager labelled.
//! Writes happen only when the stored object differs from the desired one, so a quiet cluster
//! produces no watch events.

use crate::events::{self, Recorder};
use crate::util::{self, KeyQueue};
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Node, ObjectReference, Pod, Service,
    ServicePort,
};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::Event;
use kube::{Client, ResourceExt};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The label naming a slice's Service (`discovery.LabelServiceName`).
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label naming a slice's manager (`discovery.LabelManagedBy`).
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// Our value of [`MANAGED_BY_LABEL`], upstream's controller name.
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// Set on the Endpoints and slices of headless Services (`v1.IsHeadlessService`).
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// Set when an Endpoints object had to be cut to [`MAX_ENDPOINTS_CAPACITY`] addresses.
pub const OVER_CAPACITY_ANNOTATION: &str = "endpoints.kubernetes.io/over-capacity";
/// Upstream's cap on addresses in one Endpoints object.
pub const MAX_ENDPOINTS_CAPACITY: usize = 1000;
/// kube-controller-manager's default `--max-endpoints-per-slice`.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

// ----------------------------------------------------------------------------------------------
// Pods and Services (pure)
// ----------------------------------------------------------------------------------------------

fn pod_phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// The pod's IPs: `podIPs`, or `podIP` alone when a writer set only that.
fn pod_ips(pod: &Pod) -> Vec<&str> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    let listed: Vec<&str> = status
        .pod_ips
        .iter()
        .flatten()
        .map(|p| p.ip.as_str())
        .filter(|ip| !ip.is_empty())
        .collect();
    if !listed.is_empty() {
        return listed;
    }
    status
        .pod_ip
        .as_deref()
        .filter(|ip| !ip.is_empty())
        .into_iter()
        .collect()
}

/// `ShouldPodBeInEndpoints`: not finished, has an IP, and not terminating unless
/// `include_terminating`.
pub fn should_pod_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    if matches!(pod_phase(pod), "Succeeded" | "Failed") {
        return false;
    }
    if pod_ips(pod).is_empty() {
        return false;
    }
    include_terminating || pod.metadata.deletion_timestamp.is_none()
}

/// Whether the Service's selector picks `pod` (same namespace, every selector label equal).
/// A Service without a selector picks nothing; an empty selector picks every pod.
pub fn service_selects(service: &Service, pod: &Pod) -> bool {
    let Some(selector) = service.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    if pod.metadata.namespace != service.metadata.namespace {
        return false;
    }
    let labels = pod.metadata.labels.as_ref();
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// Whether this controller manages the Service's endpoints: it has a selector and is not an
/// ExternalName alias.
pub fn manages(service: &Service) -> bool {
    let spec = service.spec.as_ref();
    spec.is_some_and(|s| s.selector.is_some())
        && spec.and_then(|s| s.type_.as_deref()) != Some("ExternalName")
}

fn protocol_or_tcp(p: Option<&str>) -> &str {
    p.filter(|p| !p.is_empty()).unwrap_or("TCP")
}

/// `FindPort`: a numeric target port as is; a named one looked up in the pod's containers (and
/// sidecar init containers) with the same protocol. `None` when the pod has no such port.
pub fn find_port(pod: &Pod, service_port: &ServicePort) -> Option<i32> {
    match service_port.target_port.as_ref() {
        None => Some(service_port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            // A numeric string is a number (intstr parses `"8080"` from YAML as a string).
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            let spec = pod.spec.as_ref()?;
            let protocol = protocol_or_tcp(service_port.protocol.as_deref());
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"));
            spec.containers
                .iter()
                .chain(sidecars)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && protocol_or_tcp(p.protocol.as_deref()) == protocol
                })
                .map(|p| p.container_port)
        }
    }
}

fn is_headless(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .is_none_or(|ip| ip.is_empty() || ip == "None")
}

fn is_ipv6(ip: &str) -> bool {
    ip.contains(':')
}

/// The address families the Service is served on (`getAddressTypesForService`).
fn service_families(service: &Service) -> Vec<&'static str> {
    let spec = service.spec.as_ref();
    let mut out = Vec::new();
    for family in spec
        .and_then(|s| s.ip_families.as_ref())
        .into_iter()
        .flatten()
    {
        match family.as_str() {
            "IPv4" if !out.contains(&"IPv4") => out.push("IPv4"),
            "IPv6" if !out.contains(&"IPv6") => out.push("IPv6"),
            _ => {}
        }
    }
    if !out.is_empty() {
        return out;
    }
    match spec.and_then(|s| s.cluster_ip.as_deref()) {
        Some(ip) if !ip.is_empty() && ip != "None" => {
            vec![if is_ipv6(ip) { "IPv6" } else { "IPv4" }]
        }
        _ => vec!["IPv4", "IPv6"],
    }
}

fn pod_reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// `ShouldSetHostname`: the pod asked for a hostname in the Service's subdomain.
fn hostname_for(pod: &Pod, service: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == service.metadata.name.as_deref()
        && pod.metadata.namespace == service.metadata.namespace)
        .then(|| hostname.to_string())
}

// ----------------------------------------------------------------------------------------------
// Endpoints (pure)
// ----------------------------------------------------------------------------------------------

/// The Endpoints object the Service should have, or `None` when this controller leaves its
/// Endpoints alone (no selector, ExternalName). Labels are the Service's (plus the headless
/// label); more than [`MAX_ENDPOINTS_CAPACITY`] addresses are cut, ready ones kept first, and
/// flagged with the over-capacity annotation.
pub fn desired_endpoints(service: &Service, pods: &[Pod]) -> Option<Endpoints> {
    if !manages(service) {
        return None;
    }
    let spec = service.spec.as_ref()?;
    let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
    let ports = spec.ports.as_deref().unwrap_or_default();
    let family_v6 = match spec.ip_families.as_ref().and_then(|f| f.first()) {
        Some(f) => f == "IPv6",
        None => spec
            .cluster_ip
            .as_deref()
            .filter(|ip| !ip.is_empty() && *ip != "None")
            .is_some_and(is_ipv6),
    };
    // (address, ready, port) for every pod and port, as upstream's addEndpointSubset collects.
    let mut entries: Vec<(EndpointAddress, bool, Option<EndpointPort>)> = Vec::new();
    for pod in pods.iter().filter(|p| service_selects(service, p)) {
        if !should_pod_be_in_endpoints(pod, publish_not_ready) {
            continue;
        }
        let Some(ip) = pod_ips(pod).into_iter().find(|ip| is_ipv6(ip) == family_v6) else {
            continue;
        };
        let address = EndpointAddress {
            ip: ip.to_string(),
            hostname: hostname_for(pod, service),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(pod_reference(pod)),
        };
        let ready = publish_not_ready || util::is_pod_ready(pod);
        if ports.is_empty() {
            if is_headless(service) {
                entries.push((address, ready, None));
            }
            continue;
        }
        for sp in ports {
            let Some(port) = find_port(pod, sp) else {
                continue;
            };
            let endpoint_port = EndpointPort {
                name: sp.name.clone().filter(|n| !n.is_empty()),
                port,
                protocol: Some(protocol_or_tcp(sp.protocol.as_deref()).to_string()),
                app_protocol: sp.app_protocol.clone(),
            };
            entries.push((address.clone(), ready, Some(endpoint_port)));
        }
    }
    let mut subsets = repack_subsets(entries);
    let truncated = truncate(&mut subsets);

    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    if is_headless(service) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    } else {
        labels.remove(HEADLESS_LABEL);
    }
    let annotations = truncated.then(|| {
        BTreeMap::from([(
            OVER_CAPACITY_ANNOTATION.to_string(),
            "truncated".to_string(),
        )])
    });
    Some(Endpoints {
        metadata: ObjectMeta {
            name: service.metadata.name.clone(),
            namespace: service.metadata.namespace.clone(),
            labels: Some(labels).filter(|l| !l.is_empty()),
            annotations,
            ..Default::default()
        },
        subsets: Some(subsets).filter(|s| !s.is_empty()),
    })
}

type PortKey = (String, i32, String, String);

fn port_key(p: &EndpointPort) -> PortKey {
    (
        p.name.clone().unwrap_or_default(),
        p.port,
        p.protocol.clone().unwrap_or_default(),
        p.app_protocol.clone().unwrap_or_default(),
    )
}

/// `endpoints.RepackSubsets`: map each port to the addresses offering it (an address ready on
/// any entry for that port is ready), then merge ports whose address sets are equal into one
/// subset. Addresses sort by IP then pod uid like upstream; upstream orders ports and subsets
/// by a hash of Go structs, we by port name/number and first address.
pub fn repack_subsets(
    entries: Vec<(EndpointAddress, bool, Option<EndpointPort>)>,
) -> Vec<EndpointSubset> {
    type AddrKey = (String, String);
    let addr_key = |a: &EndpointAddress| {
        (
            a.ip.clone(),
            a.target_ref
                .as_ref()
                .and_then(|r| r.uid.clone())
                .unwrap_or_default(),
        )
    };
    let mut addresses: BTreeMap<AddrKey, EndpointAddress> = BTreeMap::new();
    // Port (None: the no-ports sentinel) → address → ready.
    type ReadyByAddress = BTreeMap<AddrKey, bool>;
    let mut by_port: BTreeMap<Option<PortKey>, (Option<EndpointPort>, ReadyByAddress)> =
        BTreeMap::new();
    for (address, ready, port) in entries {
        let key = addr_key(&address);
        addresses.entry(key.clone()).or_insert(address);
        let slot = by_port
            .entry(port.as_ref().map(port_key))
            .or_insert_with(|| (port.clone(), BTreeMap::new()));
        let seen = slot.1.entry(key).or_insert(ready);
        *seen |= ready;
    }
    // Address set → ports.
    let mut groups: BTreeMap<Vec<(AddrKey, bool)>, Vec<EndpointPort>> = BTreeMap::new();
    for (_, (port, addrs)) in by_port {
        let set: Vec<(AddrKey, bool)> = addrs.into_iter().collect();
        let ports = groups.entry(set).or_default();
        ports.extend(port);
    }
    let mut subsets: Vec<EndpointSubset> = groups
        .into_iter()
        .map(|(set, ports)| {
            let pick = |want: bool| -> Vec<EndpointAddress> {
                set.iter()
                    .filter(|(_, ready)| *ready == want)
                    .filter_map(|(k, _)| addresses.get(k).cloned())
                    .collect()
            };
            EndpointSubset {
                addresses: Some(pick(true)).filter(|a| !a.is_empty()),
                not_ready_addresses: Some(pick(false)).filter(|a| !a.is_empty()),
                ports: Some(ports).filter(|p| !p.is_empty()),
            }
        })
        .collect();
    subsets.sort_by_key(|s| {
        let first = s
            .addresses
            .iter()
            .chain(s.not_ready_addresses.iter())
            .flatten()
            .map(|a| a.ip.clone())
            .next();
        let ports: Vec<PortKey> = s.ports.iter().flatten().map(port_key).collect();
        (first, ports)
    });
    subsets
}

/// `truncateEndpoints`: keep at most [`MAX_ENDPOINTS_CAPACITY`] addresses, spreading the cut
/// over subsets in proportion and dropping not-ready addresses before ready ones.
fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let count = |v: &Option<Vec<EndpointAddress>>| v.as_ref().map_or(0, Vec::len);
    let ready: usize = subsets.iter().map(|s| count(&s.addresses)).sum();
    let not_ready: usize = subsets.iter().map(|s| count(&s.not_ready_addresses)).sum();
    if ready + not_ready <= MAX_ENDPOINTS_CAPACITY {
        return false;
    }
    let cut_ready = ready > MAX_ENDPOINTS_CAPACITY;
    let (max, total) = if cut_ready {
        (MAX_ENDPOINTS_CAPACITY, ready)
    } else {
        (MAX_ENDPOINTS_CAPACITY - ready, not_ready)
    };
    let mut room = max;
    for s in subsets.iter_mut() {
        let list = if cut_ready {
            s.not_ready_addresses = None;
            &mut s.addresses
        } else {
            &mut s.not_ready_addresses
        };
        let n = count(list);
        let share = (n * max).div_ceil(total.max(1)).min(room);
        if let Some(v) = list.as_mut() {
            v.truncate(share);
            room -= v.len();
        }
    }
    true
}

/// Canonical JSON for "semantically equal": nulls, empty lists and empty maps dropped (Go's
/// nil and empty are equal to apiequality), object references' resourceVersion ignored.
fn canonical(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(k, _)| k != "resourceVersion")
                .map(|(k, v)| (k, canonical(v)))
                .filter(|(_, v)| !is_empty_value(v))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

fn same<T: serde::Serialize>(a: &T, b: &T) -> bool {
    let json = |x: &T| canonical(serde_json::to_value(x).unwrap_or(Value::Null));
    json(a) == json(b)
}

/// The object to write so the stored Endpoints become `desired`, or `None` when nothing
/// differs (upstream compares subsets, labels and the capacity annotation; other annotations
/// and metadata of the stored object are kept).
pub fn endpoints_update(current: Option<&Endpoints>, desired: &Endpoints) -> Option<Endpoints> {
    let want_annotation = desired
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(OVER_CAPACITY_ANNOTATION));
    let Some(current) = current else {
        return Some(desired.clone());
    };
    let labels = |e: &Endpoints| e.metadata.labels.clone().unwrap_or_default();
    let have_annotation = current
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(OVER_CAPACITY_ANNOTATION));
    if same(&current.subsets, &desired.subsets)
        && labels(current) == labels(desired)
        && have_annotation == want_annotation
    {
        return None;
    }
    let mut next = current.clone();
    next.subsets = desired.subsets.clone();
    next.metadata.labels = desired.metadata.labels.clone();
    let mut annotations = next.metadata.annotations.take().unwrap_or_default();
    match want_annotation {
        Some(v) => {
            annotations.insert(OVER_CAPACITY_ANNOTATION.into(), v.clone());
        }
        None => {
            annotations.remove(OVER_CAPACITY_ANNOTATION);
        }
    }
    next.metadata.annotations = Some(annotations).filter(|a| !a.is_empty());
    Some(next)
}

// ----------------------------------------------------------------------------------------------
// EndpointSlices (pure)
// ----------------------------------------------------------------------------------------------

/// What the Service's slices need.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SliceActions {
    /// New slices (named by the server from `generateName`).
    pub create: Vec<EndpointSlice>,
    /// Changed slices, with the stored slice's name and resourceVersion.
    pub update: Vec<EndpointSlice>,
    /// Names of slices to delete.
    pub delete: Vec<String>,
    /// Some pods were left out because their node is not known yet: look again later.
    pub retry: bool,
}

impl SliceActions {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

fn slice_ports(service: &Service, pod: &Pod) -> Vec<SlicePort> {
    let spec = service.spec.as_ref();
    let ports = spec.and_then(|s| s.ports.as_deref()).unwrap_or_default();
    ports
        .iter()
        .filter_map(|sp| {
            let port = find_port(pod, sp)?;
            Some(SlicePort {
                // Upstream always sets the name, so unnamed ports read `name: ""`.
                name: Some(sp.name.clone().unwrap_or_default()),
                port: Some(port),
                protocol: Some(protocol_or_tcp(sp.protocol.as_deref()).to_string()),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect()
}

type SlicePortKey = Vec<(String, i32, String, String)>;

/// Order-independent key of a port list (`NewPortMapKey`).
fn slice_port_key(ports: &[SlicePort]) -> SlicePortKey {
    let mut key: SlicePortKey = ports
        .iter()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.port.unwrap_or(0),
                p.protocol.clone().unwrap_or_default(),
                p.app_protocol.clone().unwrap_or_default(),
            )
        })
        .collect();
    key.sort();
    key
}

/// Identity of an endpoint inside a slice (`hashEndpoint`): sorted addresses, hostname, pod.
fn endpoint_key(e: &Endpoint) -> (Vec<String>, String, String, String) {
    let mut addresses = e.addresses.clone();
    addresses.sort();
    let r = e.target_ref.as_ref();
    (
        addresses,
        e.hostname.clone().unwrap_or_default(),
        r.and_then(|r| r.namespace.clone()).unwrap_or_default(),
        r.and_then(|r| r.name.clone()).unwrap_or_default(),
    )
}

/// `podToEndpoint`: serving = Ready; ready = serving and not terminating (or
/// publishNotReadyAddresses); node name and zone from the pod's node.
fn pod_to_endpoint(pod: &Pod, node: Option<&Node>, service: &Service, family: &str) -> Endpoint {
    let serving = util::is_pod_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let publish = service
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        == Some(true);
    let zone = node
        .and_then(|n| n.metadata.labels.as_ref())
        .and_then(|l| l.get("topology.kubernetes.io/zone"))
        .filter(|z| !z.is_empty())
        .cloned();
    Endpoint {
        addresses: pod_ips(pod)
            .into_iter()
            .filter(|ip| is_ipv6(ip) == (family == "IPv6"))
            .map(str::to_string)
            .collect(),
        conditions: Some(EndpointConditions {
            ready: Some(publish || (serving && !terminating)),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: hostname_for(pod, service),
        node_name: pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty()),
        target_ref: Some(pod_reference(pod)),
        zone,
        ..Default::default()
    }
}

fn owner_of(service: &Service) -> OwnerReference {
    util::controller_reference(service)
}

/// Whether a slice is owned by this very Service (same uid), not an older one of that name.
fn owned_by(slice: &EndpointSlice, service: &Service) -> bool {
    let uid = service.metadata.uid.as_deref().unwrap_or_default();
    slice
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == uid && o.kind == "Service" && o.api_version == "v1")
}

/// `setEndpointSliceLabels`: the Service's labels, minus the reserved ones, plus the service
/// name, the manager and (for headless Services) the headless label.
fn slice_labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = service
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| {
            ![SERVICE_NAME_LABEL, MANAGED_BY_LABEL, HEADLESS_LABEL].contains(&k.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if is_headless(service) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels.insert(SERVICE_NAME_LABEL.into(), service.name_any());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    labels
}

fn new_slice(service: &Service, ports: Vec<SlicePort>, family: &str) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", service.name_any())),
            namespace: service.namespace(),
            labels: Some(slice_labels(service)),
            owner_references: Some(vec![owner_of(service)]),
            ..Default::default()
        },
        address_type: family.to_string(),
        endpoints: Vec::new(),
        ports: Some(ports),
    }
}

/// Decides what the Service's slices need (upstream's `Reconciler.Reconcile`). `existing` are
/// the slices labelled as this Service's and managed by us; `nodes` give zones and tell which
/// pods sit on unknown nodes (left out, and retried, unless publishNotReadyAddresses).
///
/// Per address family and per set of resolved ports: endpoints still wanted stay in their slice
/// (updated if they changed), vanished ones are dropped (a slice left empty is deleted), new ones
/// fill slices being updated, then the unchanged slice that fits them best, then new slices of
/// at most [`MAX_ENDPOINTS_PER_SLICE`]. With no endpoints at all one empty placeholder slice
/// remains. Creates paired with deletes become updates of the deleted slices.
pub fn desired_slices(
    service: &Service,
    pods: &[Pod],
    nodes: &[Node],
    existing: &[EndpointSlice],
) -> SliceActions {
    let mut actions = SliceActions::default();
    if !manages(service) {
        return actions;
    }
    let families = service_families(service);
    let publish = service
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        == Some(true);
    let labels = slice_labels(service);
    let mut to_delete: Vec<&EndpointSlice> = Vec::new();

    for slice in existing {
        if !families.contains(&slice.address_type.as_str()) {
            to_delete.push(slice);
        }
    }
    let mut creates: Vec<EndpointSlice> = Vec::new();
    let mut updates: Vec<EndpointSlice> = Vec::new();
    for family in &families {
        let family_slices: Vec<&EndpointSlice> = existing
            .iter()
            .filter(|s| s.address_type == *family)
            .collect();
        let mut by_ports: BTreeMap<SlicePortKey, Vec<&EndpointSlice>> = BTreeMap::new();
        let mut family_deletes: Vec<&EndpointSlice> = Vec::new();
        for slice in &family_slices {
            if owned_by(slice, service) {
                by_ports
                    .entry(slice_port_key(slice.ports.as_deref().unwrap_or_default()))
                    .or_default()
                    .push(slice);
            } else {
                family_deletes.push(slice);
            }
        }

        // Desired endpoints per port set, in a stable order.
        type Desired = BTreeMap<(Vec<String>, String, String, String), Endpoint>;
        let mut desired: BTreeMap<SlicePortKey, (Vec<SlicePort>, Desired)> = BTreeMap::new();
        for pod in pods.iter().filter(|p| service_selects(service, p)) {
            if !should_pod_be_in_endpoints(pod, true) {
                continue;
            }
            let node_name = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .unwrap_or_default();
            let node = nodes
                .iter()
                .find(|n| n.metadata.name.as_deref() == Some(node_name));
            if node.is_none() && !publish {
                actions.retry = true;
                continue;
            }
            let ports = slice_ports(service, pod);
            let endpoint = pod_to_endpoint(pod, node, service, family);
            if endpoint.addresses.is_empty() {
                continue;
            }
            let slot = desired
                .entry(slice_port_key(&ports))
                .or_insert_with(|| (ports, BTreeMap::new()));
            slot.1.insert(endpoint_key(&endpoint), endpoint);
        }

        let mut family_creates: Vec<EndpointSlice> = Vec::new();
        let mut family_updates: Vec<EndpointSlice> = Vec::new();
        for (key, (ports, mut wanted)) in std::mem::take(&mut desired) {
            let current = by_ports.remove(&key).unwrap_or_default();
            let mut changed: Vec<EndpointSlice> = Vec::new();
            let mut unchanged: Vec<EndpointSlice> = Vec::new();
            for slice in current {
                let mut kept = Vec::new();
                let mut endpoint_changed = false;
                for e in &slice.endpoints {
                    if let Some(want) = wanted.remove(&endpoint_key(e)) {
                        endpoint_changed |= !same(&want, e);
                        kept.push(want);
                    }
                }
                let labels_changed = slice.metadata.labels.as_ref() != Some(&labels);
                if endpoint_changed || kept.len() != slice.endpoints.len() {
                    if kept.is_empty() {
                        family_deletes.push(slice);
                    } else {
                        let mut next = slice.clone();
                        next.endpoints = kept;
                        next.metadata.labels = Some(labels.clone());
                        changed.push(next);
                    }
                } else if labels_changed {
                    let mut next = slice.clone();
                    next.metadata.labels = Some(labels.clone());
                    changed.push(next);
                } else {
                    unchanged.push(slice.clone());
                }
            }
            let mut remaining: Vec<Endpoint> = wanted.into_values().collect();
            remaining.reverse(); // pop() takes them in key order
            // Fill the slices being updated anyway, fullest first.
            changed.sort_by_key(|s| std::cmp::Reverse(s.endpoints.len()));
            for slice in &mut changed {
                while slice.endpoints.len() < MAX_ENDPOINTS_PER_SLICE {
                    let Some(e) = remaining.pop() else { break };
                    slice.endpoints.push(e);
                }
            }
            while !remaining.is_empty() {
                // The rest fits into one unchanged slice? Take the one left fullest.
                let fit = if remaining.len() < MAX_ENDPOINTS_PER_SLICE {
                    unchanged
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| {
                            s.endpoints.len() + remaining.len() <= MAX_ENDPOINTS_PER_SLICE
                        })
                        .min_by_key(|(_, s)| {
                            MAX_ENDPOINTS_PER_SLICE - s.endpoints.len() - remaining.len()
                        })
                        .map(|(i, _)| i)
                } else {
                    None
                };
                let (mut slice, is_new) = match fit {
                    Some(i) => (unchanged.remove(i), false),
                    None => (new_slice(service, ports.clone(), family), true),
                };
                while slice.endpoints.len() < MAX_ENDPOINTS_PER_SLICE {
                    let Some(e) = remaining.pop() else { break };
                    slice.endpoints.push(e);
                }
                if is_new {
                    family_creates.push(slice);
                } else {
                    changed.push(slice);
                }
            }
            family_updates.extend(changed);
        }
        // Port sets no longer wanted.
        for (_, slices) in by_ports {
            family_deletes.extend(slices);
        }

        // Keep one placeholder when there would be no slice at all.
        if family_slices.len() == family_deletes.len() && family_creates.is_empty() {
            let placeholder = new_slice(service, Vec::new(), family);
            let is_placeholder = |s: &EndpointSlice| {
                s.endpoints.is_empty()
                    && s.ports.as_deref().unwrap_or_default().is_empty()
                    && s.metadata.labels.as_ref() == Some(&labels)
                    && owned_by(s, service)
            };
            if family_deletes.len() == 1 && is_placeholder(family_deletes[0]) {
                family_deletes.clear();
            } else {
                family_creates.push(placeholder);
            }
        }

        // Turn creates into updates of slices that would be deleted (upstream `finalize`).
        family_deletes.retain(|old| {
            if !owned_by(old, service) {
                return true;
            }
            let Some(mut reuse) = family_creates.pop() else {
                return true;
            };
            reuse.metadata = ObjectMeta {
                generate_name: None,
                ..old.metadata.clone()
            };
            reuse.metadata.labels = Some(labels.clone());
            family_updates.push(reuse);
            false
        });
        creates.extend(family_creates);
        updates.extend(family_updates);
        to_delete.extend(family_deletes);
    }
    actions.create = creates;
    actions.update = updates;
    actions.delete = to_delete.iter().map(|s| s.name_any()).collect();
    actions
}

// ----------------------------------------------------------------------------------------------
// The loops
// ----------------------------------------------------------------------------------------------

type Key = ObjectRef<Service>;

/// How long a write of ours may take to reach the cache before we act on the cache anyway.
const FRESHNESS_TIMEOUT: Duration = Duration::from_secs(30);

/// When the last write was made, and object name → resourceVersion written (`None`: deleted).
type PendingWrites = (Instant, HashMap<String, Option<String>>);

/// Writes this controller made that its caches have not shown yet (upstream's
/// `staleEndpointsTracker` and `EndpointSliceTracker`): object name → the resourceVersion we
/// wrote, or `None` for a delete. Acting on a cache that predates our own write would conflict
/// or, for slices made by `generateName`, create duplicates.
#[derive(Default)]
struct Freshness {
    by_key: Mutex<HashMap<Key, PendingWrites>>,
}

impl Freshness {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, PendingWrites>> {
        self.by_key.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wrote(&self, key: &Key, name: String, resource_version: Option<String>) {
        let mut map = self.lock();
        let entry = map
            .entry(key.clone())
            .or_insert_with(|| (Instant::now(), HashMap::new()));
        entry.0 = Instant::now();
        entry.1.insert(name, resource_version);
    }

    /// Whether the cache (`seen`: name → resourceVersion) shows every write of ours.
    fn is_fresh(&self, key: &Key, seen: impl Fn(&str) -> Option<Option<String>>) -> bool {
        let mut map = self.lock();
        let Some((since, writes)) = map.get_mut(key) else {
            return true;
        };
        writes.retain(|name, written| match (written.as_deref(), seen(name)) {
            // Deleted by us: fresh once gone.
            (None, cached) => cached.is_some(),
            // Written by us: fresh once the cache holds that version or a newer one.
            (Some(_), None) => true,
            (Some(rv), Some(cached)) => util::resource_version_older(cached.as_deref(), rv),
        });
        if writes.is_empty() || since.elapsed() > FRESHNESS_TIMEOUT {
            map.remove(key);
            return true;
        }
        false
    }

    fn forget(&self, key: &Key) {
        self.lock().remove(key);
    }

    /// The cache saw `name` deleted (by anyone): a write of ours to it can no longer show.
    fn gone(&self, key: &Key, name: &str) {
        if let Some((_, writes)) = self.lock().get_mut(key) {
            writes.remove(name);
        }
    }
}

struct Ctx {
    client: Client,
    services: Store<Service>,
    pods: Store<Pod>,
    nodes: Store<Node>,
    endpoints: Store<Endpoints>,
    slices: Store<EndpointSlice>,
    endpoints_recorder: Recorder,
    slices_recorder: Recorder,
    endpoints_fresh: Arc<Freshness>,
    slices_fresh: Arc<Freshness>,
}

fn service_key(namespace: &str, name: &str) -> Key {
    ObjectRef::new(name).within(namespace)
}

/// Runs both controllers until dropped.
pub async fn run(client: Client, _config: crate::Config) {
    let endpoints_queue = KeyQueue::<Key>::new();
    let slices_queue = KeyQueue::<Key>::new();
    let endpoints_fresh = Arc::new(Freshness::default());
    let slices_fresh = Arc::new(Freshness::default());
    let both = {
        let (e, s) = (endpoints_queue.clone(), slices_queue.clone());
        move |key: Key| {
            e.add(key.clone());
            s.add(key);
        }
    };

    let enqueue = both.clone();
    let services = util::watch_into_store(
        Api::<Service>::all(client.clone()),
        "services",
        move |event| {
            if let Event::Apply(s) | Event::InitApply(s) | Event::Delete(s) = event {
                enqueue(ObjectRef::from_obj(s));
            }
        },
    );

    // A pod change concerns every Service selecting it now or before (labels may change).
    let enqueue = both.clone();
    let selecting = services.clone();
    let mut last_labels: HashMap<(String, String), BTreeMap<String, String>> = HashMap::new();
    let pods = util::watch_into_store(Api::<Pod>::all(client.clone()), "pods", move |event| {
        let (pod, deleted) = match event {
            Event::Apply(p) | Event::InitApply(p) => (p, false),
            Event::Delete(p) => (p, true),
            Event::Init | Event::InitDone => return,
        };
        let id = (pod.namespace().unwrap_or_default(), pod.name_any());
        let before = if deleted {
            last_labels.remove(&id)
        } else {
            last_labels.insert(id.clone(), pod.labels().clone())
        };
        let mut with_old_labels = pod.clone();
        with_old_labels.metadata.labels = before;
        for svc in selecting.state() {
            if service_selects(&svc, pod) || service_selects(&svc, &with_old_labels) {
                enqueue(ObjectRef::from_obj(&*svc));
            }
        }
    });

    // Node arrivals and departures change which pods the slices may list.
    let enqueue = both.clone();
    let all_services = services.clone();
    let mut known_zones: HashMap<String, Option<String>> = HashMap::new();
    let nodes = util::watch_into_store(Api::<Node>::all(client.clone()), "nodes", move |event| {
        let changed = match event {
            Event::Apply(n) | Event::InitApply(n) => {
                let zone = n.labels().get("topology.kubernetes.io/zone").cloned();
                known_zones.insert(n.name_any(), zone.clone()) != Some(zone)
            }
            Event::Delete(n) => known_zones.remove(&n.name_any()).is_some(),
            Event::Init | Event::InitDone => false,
        };
        if changed && matches!(event, Event::Apply(_) | Event::Delete(_)) {
            for svc in all_services.state() {
                enqueue(ObjectRef::from_obj(&*svc));
            }
        }
    });

    // Endpoints: a deleted one is re-created; at start-up every one is checked once, so those
    // left behind by a Service deleted while we were down are removed (upstream
    // checkLeftoverEndpoints).
    let e = endpoints_queue.clone();
    let fresh = endpoints_fresh.clone();
    let endpoints = util::watch_into_store(
        Api::<Endpoints>::all(client.clone()),
        "endpoints",
        move |event| {
            if let Event::Delete(ep) | Event::InitApply(ep) = event {
                let key = service_key(&ep.namespace().unwrap_or_default(), &ep.name_any());
                if matches!(event, Event::Delete(_)) {
                    fresh.gone(&key, &ep.name_any());
                }
                e.add(key);
            }
        },
    );

    let s = slices_queue.clone();
    let fresh = slices_fresh.clone();
    let slices = util::watch_into_store(
        Api::<EndpointSlice>::all(client.clone()),
        "endpointslices",
        move |event| {
            if let Event::Apply(slice) | Event::Delete(slice) = event {
                let labels = slice.labels();
                if labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
                    && let Some(service) = labels.get(SERVICE_NAME_LABEL)
                {
                    let key = service_key(&slice.namespace().unwrap_or_default(), service);
                    if matches!(event, Event::Delete(_)) {
                        fresh.gone(&key, &slice.name_any());
                    }
                    s.add(key);
                }
            }
        },
    );

    for ready in [
        services.wait_until_ready().await,
        pods.wait_until_ready().await,
        nodes.wait_until_ready().await,
        endpoints.wait_until_ready().await,
        slices.wait_until_ready().await,
    ] {
        if ready.is_err() {
            tracing::warn!("endpoints controller: a cache writer stopped before its first list");
            return;
        }
    }

    let ctx = Arc::new(Ctx {
        endpoints_recorder: Recorder::new(client.clone(), "endpoint-controller", None),
        slices_recorder: Recorder::new(client.clone(), "endpoint-slice-controller", None),
        client,
        services,
        pods,
        nodes,
        endpoints,
        slices,
        endpoints_fresh,
        slices_fresh,
    });
    let ctx_e = ctx.clone();
    let endpoints_loop = util::run_workers(
        endpoints_queue,
        2,
        "endpoint-controller",
        move |key: Key| {
            let ctx = ctx_e.clone();
            async move { sync_endpoints(&ctx, &key).await }
        },
    );
    let slices_loop = util::run_workers(
        slices_queue,
        2,
        "endpointslice-controller",
        move |key: Key| {
            let ctx = ctx.clone();
            async move { sync_slices(&ctx, &key).await }
        },
    );
    futures::future::join(endpoints_loop, slices_loop).await;
}

/// The pods `service` selects (cloned from the cache; others are not copied).
fn selected_pods(ctx: &Ctx, service: &Service) -> Vec<Pod> {
    ctx.pods
        .state()
        .iter()
        .filter(|p| service_selects(service, p))
        .map(|p| (**p).clone())
        .collect()
}

/// A short retry while our own writes travel to the cache.
const STALE_RETRY: Duration = Duration::from_millis(100);

async fn sync_endpoints(ctx: &Ctx, key: &Key) -> Result<Option<Duration>, kube::Error> {
    let namespace = key.namespace.clone().unwrap_or_default();
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &namespace);
    let endpoints_ref = ObjectRef::<Endpoints>::new(&key.name).within(&namespace);
    let Some(service) = ctx.services.get(key) else {
        // The Service is gone: so go its Endpoints (whoever made them), as upstream.
        ctx.endpoints_fresh.forget(key);
        if ctx.endpoints.get(&endpoints_ref).is_some() {
            match api.delete(&key.name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        return Ok(None);
    };
    let Some(desired) = desired_endpoints(&service, &selected_pods(ctx, &service)) else {
        return Ok(None);
    };
    let fresh = ctx.endpoints_fresh.is_fresh(key, |name| {
        ctx.endpoints
            .get(&ObjectRef::new(name).within(&namespace))
            .map(|e| e.resource_version())
    });
    if !fresh {
        return Ok(Some(STALE_RETRY));
    }
    let current = ctx.endpoints.get(&endpoints_ref);
    let Some(next) = endpoints_update(current.as_deref(), &desired) else {
        return Ok(None);
    };
    let result = match current {
        None => api.create(&PostParams::default(), &next).await,
        Some(_) => api.replace(&key.name, &PostParams::default(), &next).await,
    };
    match result {
        Ok(written) => {
            ctx.endpoints_fresh
                .wrote(key, key.name.clone(), written.resource_version());
            Ok(None)
        }
        Err(e) => {
            let (reason, message) = if current.is_none() {
                (
                    "FailedToCreateEndpoint",
                    format!(
                        "Failed to create endpoint for service {namespace}/{}: {}",
                        key.name,
                        util::api_error_message(&e)
                    ),
                )
            } else {
                (
                    "FailedToUpdateEndpoint",
                    format!(
                        "Failed to update endpoint {namespace}/{}: {}",
                        key.name,
                        util::api_error_message(&e)
                    ),
                )
            };
            let mut reference = events::object_reference(&next);
            reference.resource_version = None;
            ctx.endpoints_recorder
                .warning(&reference, reason, &message)
                .await;
            Err(e)
        }
    }
}

async fn sync_slices(ctx: &Ctx, key: &Key) -> Result<Option<Duration>, kube::Error> {
    let namespace = key.namespace.clone().unwrap_or_default();
    let Some(service) = ctx.services.get(key) else {
        // The garbage collector removes the slices through their owner reference.
        ctx.slices_fresh.forget(key);
        return Ok(None);
    };
    if !manages(&service) {
        return Ok(None);
    }
    let ours = |s: &EndpointSlice| {
        s.metadata.namespace.as_deref() == Some(namespace.as_str())
            && s.labels().get(SERVICE_NAME_LABEL) == Some(&key.name)
            && s.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
    };
    let fresh = ctx.slices_fresh.is_fresh(key, |name| {
        ctx.slices
            .get(&ObjectRef::new(name).within(&namespace))
            .map(|s| s.resource_version())
    });
    if !fresh {
        return Ok(Some(STALE_RETRY));
    }
    let existing: Vec<EndpointSlice> = ctx
        .slices
        .state()
        .iter()
        .filter(|s| ours(s))
        .map(|s| (**s).clone())
        .collect();
    let nodes: Vec<Node> = ctx.nodes.state().iter().map(|n| (**n).clone()).collect();
    let actions = desired_slices(&service, &selected_pods(ctx, &service), &nodes, &existing);
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut first_error: Option<kube::Error> = None;

    for slice in &actions.update {
        match api
            .replace(&slice.name_any(), &PostParams::default(), slice)
            .await
        {
            Ok(w) => ctx
                .slices_fresh
                .wrote(key, w.name_any(), w.resource_version()),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    // Upstream creates no slices for a Service being deleted: the garbage collector would race.
    if service.metadata.deletion_timestamp.is_none() {
        for slice in &actions.create {
            match api.create(&PostParams::default(), slice).await {
                Ok(w) => ctx
                    .slices_fresh
                    .wrote(key, w.name_any(), w.resource_version()),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
    }
    for name in &actions.delete {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => ctx.slices_fresh.wrote(key, name.clone(), None),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        let message = format!(
            "Error updating Endpoint Slices for Service {namespace}/{}: {}",
            key.name,
            util::api_error_message(&e)
        );
        ctx.slices_recorder
            .warning(
                &events::object_reference(&*service),
                "FailedToUpdateEndpointSlices",
                &message,
            )
            .await;
        return Err(e);
    }
    Ok(actions.retry.then_some(Duration::from_secs(1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(extra: Value) -> Service {
        let mut v = json!({
            "metadata": {"name": "rng", "namespace": "default", "uid": "svc-uid", "labels": {"app": "rng"}},
            "spec": {"selector": {"app": "rng"}, "clusterIP": "10.96.0.10", "ipFamilies": ["IPv4"],
                     "ports": [{"port": 80, "targetPort": 80, "protocol": "TCP"}]}
        });
        merge(&mut v, extra);
        serde_json::from_value(v).unwrap()
    }

    fn merge(into: &mut Value, patch: Value) {
        match (into, patch) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(Value::Null), v);
                }
            }
            (slot, v) => *slot = v,
        }
    }

    /// A pod labelled app=rng on `node` with `ip` (empty: none yet), Ready or not.
    fn pod(name: &str, ip: &str, node: &str, ready: bool, extra: Value) -> Pod {
        let mut v = json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": {"app": "rng"}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i",
                     "ports": [{"name": "web", "containerPort": 8080, "protocol": "TCP"}]}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        });
        if !ip.is_empty() {
            v["status"]["podIP"] = json!(ip);
            v["status"]["podIPs"] = json!([{"ip": ip}]);
        }
        merge(&mut v, extra);
        serde_json::from_value(v).unwrap()
    }

    fn nodes() -> Vec<Node> {
        ["kube-1", "kube-2"]
            .iter()
            .map(|n| serde_json::from_value(json!({"metadata": {"name": n}})).unwrap())
            .collect()
    }

    fn ips(addresses: &Option<Vec<EndpointAddress>>) -> Vec<&str> {
        addresses.iter().flatten().map(|a| a.ip.as_str()).collect()
    }

    #[test]
    fn ready_pods_are_addresses_unready_ones_not_ready_and_the_rest_left_out() {
        let terminating = json!({"metadata": {"deletionTimestamp": "2025-01-01T00:00:00Z"}});
        let pods = [
            pod("b", "192.168.1.3", "kube-2", true, json!({})),
            pod("a", "192.168.1.2", "kube-1", true, json!({})),
            pod("unready", "192.168.1.4", "kube-1", false, json!({})),
            pod("no-ip", "", "kube-1", true, json!({})),
            pod("leaving", "192.168.1.5", "kube-1", true, terminating),
            pod(
                "done",
                "192.168.1.6",
                "kube-1",
                false,
                json!({"status": {"phase": "Succeeded"}}),
            ),
            pod(
                "other-app",
                "192.168.1.7",
                "kube-1",
                true,
                json!({"metadata": {"labels": {"app": "web"}}}),
            ),
            pod(
                "other-ns",
                "192.168.1.8",
                "kube-1",
                true,
                json!({"metadata": {"namespace": "kube-system"}}),
            ),
        ];
        let ep = desired_endpoints(&service(json!({})), &pods).unwrap();
        assert_eq!(ep.metadata.name.as_deref(), Some("rng"));
        assert_eq!(ep.metadata.labels.as_ref().unwrap()["app"], "rng");
        let subsets = ep.subsets.unwrap();
        assert_eq!(subsets.len(), 1);
        let s = &subsets[0];
        assert_eq!(ips(&s.addresses), ["192.168.1.2", "192.168.1.3"]);
        assert_eq!(ips(&s.not_ready_addresses), ["192.168.1.4"]);
        let a = &s.addresses.as_ref().unwrap()[0];
        assert_eq!(a.node_name.as_deref(), Some("kube-1"));
        let r = a.target_ref.as_ref().unwrap();
        assert_eq!(
            (
                r.kind.as_deref(),
                r.name.as_deref(),
                r.namespace.as_deref(),
                r.uid.as_deref()
            ),
            (Some("Pod"), Some("a"), Some("default"), Some("uid-a"))
        );
        let p = &s.ports.as_ref().unwrap()[0];
        assert_eq!(
            (p.name.as_deref(), p.port, p.protocol.as_deref()),
            (None, 80, Some("TCP"))
        );
    }

    #[test]
    fn publish_not_ready_addresses_lists_unready_pods_as_ready() {
        let svc = service(json!({"spec": {"publishNotReadyAddresses": true}}));
        let ep = desired_endpoints(&svc, &[pod("u", "192.168.1.4", "kube-1", false, json!({}))])
            .unwrap();
        assert_eq!(ips(&ep.subsets.unwrap()[0].addresses), ["192.168.1.4"]);
    }

    #[test]
    fn named_target_ports_resolve_per_pod_and_pods_without_the_port_are_skipped() {
        let svc = service(
            json!({"spec": {"ports": [{"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"}]}}),
        );
        let other_port = json!({"spec": {"containers": [{"name": "c", "image": "i",
            "ports": [{"name": "web", "containerPort": 9090}]}]}});
        let udp_only = json!({"spec": {"containers": [{"name": "c", "image": "i",
            "ports": [{"name": "web", "containerPort": 7070, "protocol": "UDP"}]}]}});
        let sidecar = json!({"spec": {"containers": [{"name": "c", "image": "i"}],
            "initContainers": [{"name": "proxy", "image": "p", "restartPolicy": "Always",
                                "ports": [{"name": "web", "containerPort": 9090}]}]}});
        let pods = [
            pod("a", "192.168.1.2", "kube-1", true, json!({})),
            pod("b", "192.168.1.3", "kube-1", true, other_port),
            pod("c", "192.168.1.4", "kube-1", true, udp_only),
            pod("d", "192.168.1.5", "kube-1", true, sidecar),
        ];
        let subsets = desired_endpoints(&svc, &pods).unwrap().subsets.unwrap();
        let summary: Vec<(Vec<&str>, Vec<i32>)> = subsets
            .iter()
            .map(|s| {
                (
                    ips(&s.addresses),
                    s.ports.iter().flatten().map(|p| p.port).collect(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (vec!["192.168.1.2"], vec![8080]),
                (vec!["192.168.1.3", "192.168.1.5"], vec![9090]),
            ]
        );
        assert_eq!(
            subsets[0].ports.as_ref().unwrap()[0].name.as_deref(),
            Some("http")
        );

        // The same for slices: one slice per resolved port set. As upstream, a pod that
        // resolves no port still gets listed, in a slice without ports.
        let actions = desired_slices(&svc, &pods, &nodes(), &[]);
        let mut by_port: Vec<(Option<i32>, usize)> = actions
            .create
            .iter()
            .map(|s| {
                (
                    s.ports.as_ref().unwrap().first().and_then(|p| p.port),
                    s.endpoints.len(),
                )
            })
            .collect();
        by_port.sort();
        assert_eq!(by_port, [(None, 1), (Some(8080), 1), (Some(9090), 2)]);
    }

    #[test]
    fn multi_port_services_share_one_subset() {
        let svc = service(json!({"spec": {"ports": [
            {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
            {"name": "dns", "port": 53, "targetPort": 53, "protocol": "UDP"}]}}));
        let pods = [
            pod("a", "192.168.1.2", "kube-1", true, json!({})),
            pod("b", "192.168.1.3", "kube-1", false, json!({})),
        ];
        let subsets = desired_endpoints(&svc, &pods).unwrap().subsets.unwrap();
        assert_eq!(subsets.len(), 1);
        assert_eq!(ips(&subsets[0].addresses), ["192.168.1.2"]);
        assert_eq!(ips(&subsets[0].not_ready_addresses), ["192.168.1.3"]);
        let ports: Vec<(Option<&str>, i32)> = subsets[0]
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.as_deref(), p.port))
            .collect();
        assert_eq!(ports, [(Some("dns"), 53), (Some("http"), 8080)]);
    }

    #[test]
    fn services_without_selector_and_external_names_are_left_alone() {
        let mut manual = service(json!({}));
        manual.spec.as_mut().unwrap().selector = None;
        assert_eq!(desired_endpoints(&manual, &[]), None);
        assert!(desired_slices(&manual, &[], &nodes(), &[]).is_empty());
        let alias =
            service(json!({"spec": {"type": "ExternalName", "externalName": "example.com"}}));
        assert_eq!(desired_endpoints(&alias, &[]), None);
    }

    #[test]
    fn headless_services_are_labelled_and_may_have_no_ports() {
        let svc = service(json!({"spec": {"clusterIP": "None", "ports": []}}));
        let ep =
            desired_endpoints(&svc, &[pod("a", "192.168.1.2", "kube-1", true, json!({}))]).unwrap();
        assert_eq!(ep.metadata.labels.as_ref().unwrap()[HEADLESS_LABEL], "");
        let s = &ep.subsets.unwrap()[0];
        assert_eq!(ips(&s.addresses), ["192.168.1.2"]);
        assert_eq!(s.ports, None);
    }

    #[test]
    fn endpoints_are_written_only_when_they_differ() {
        let svc = service(json!({}));
        let pods = [pod("a", "192.168.1.2", "kube-1", true, json!({}))];
        let desired = desired_endpoints(&svc, &pods).unwrap();
        assert_eq!(endpoints_update(None, &desired), Some(desired.clone()));
        // The stored copy differs only in what the server adds: no write.
        let mut stored = desired.clone();
        stored.metadata.resource_version = Some("7".into());
        stored.metadata.annotations = Some([("note".to_string(), "kept".to_string())].into());
        stored.subsets.as_mut().unwrap()[0]
            .addresses
            .as_mut()
            .unwrap()[0]
            .target_ref
            .as_mut()
            .unwrap()
            .resource_version = Some("3".into());
        assert_eq!(endpoints_update(Some(&stored), &desired), None);
        // A pod turning unready moves it; other annotations and the version are kept.
        let unready =
            desired_endpoints(&svc, &[pod("a", "192.168.1.2", "kube-1", false, json!({}))])
                .unwrap();
        let next = endpoints_update(Some(&stored), &unready).unwrap();
        assert_eq!(next.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(next.metadata.annotations.as_ref().unwrap()["note"], "kept");
        assert_eq!(
            ips(&next.subsets.as_ref().unwrap()[0].not_ready_addresses),
            ["192.168.1.2"]
        );
        // No pods at all: subsets go away.
        let empty = desired_endpoints(&svc, &[]).unwrap();
        assert_eq!(empty.subsets, None);
        assert!(
            endpoints_update(Some(&stored), &empty)
                .unwrap()
                .subsets
                .is_none()
        );
    }

    #[test]
    fn more_than_a_thousand_addresses_are_truncated_and_flagged() {
        let pods: Vec<Pod> = (0..1100)
            .map(|i| {
                pod(
                    &format!("p{i}"),
                    &format!("10.0.{}.{}", i / 250, i % 250),
                    "kube-1",
                    i % 2 == 0,
                    json!({}),
                )
            })
            .collect();
        let ep = desired_endpoints(&service(json!({})), &pods).unwrap();
        let s = &ep.subsets.unwrap()[0];
        // All 550 ready kept, not-ready cut to the remaining 450.
        assert_eq!(s.addresses.as_ref().unwrap().len(), 550);
        assert_eq!(s.not_ready_addresses.as_ref().unwrap().len(), 450);
        assert_eq!(
            ep.metadata.annotations.unwrap()[OVER_CAPACITY_ANNOTATION],
            "truncated"
        );
    }

    /// What the server would store for a created slice.
    fn stored(mut slice: EndpointSlice, name: &str) -> EndpointSlice {
        slice.metadata.name = Some(name.into());
        slice.metadata.generate_name = None;
        slice.metadata.resource_version = Some("5".into());
        slice
    }

    #[test]
    fn a_service_gets_one_labelled_owned_slice_and_then_no_writes() {
        let svc = service(json!({}));
        let terminating = json!({"metadata": {"deletionTimestamp": "2025-01-01T00:00:00Z"}});
        let pods = [
            pod("a", "192.168.1.2", "kube-1", true, json!({})),
            pod("b", "192.168.1.3", "kube-2", false, json!({})),
            pod("c", "192.168.1.4", "kube-2", true, terminating),
        ];
        let actions = desired_slices(&svc, &pods, &nodes(), &[]);
        assert!(actions.update.is_empty() && actions.delete.is_empty() && !actions.retry);
        let [slice] = actions.create.as_slice() else {
            panic!("{actions:?}")
        };
        assert_eq!(slice.metadata.generate_name.as_deref(), Some("rng-"));
        let labels = slice.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[SERVICE_NAME_LABEL], "rng");
        assert_eq!(labels[MANAGED_BY_LABEL], MANAGED_BY);
        assert_eq!(labels["app"], "rng");
        let owner = &slice.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("Service", "rng", "svc-uid")
        );
        assert_eq!(owner.controller, Some(true));
        assert_eq!(slice.address_type, "IPv4");
        let port = &slice.ports.as_ref().unwrap()[0];
        assert_eq!(
            (port.name.as_deref(), port.port, port.protocol.as_deref()),
            (Some(""), Some(80), Some("TCP"))
        );
        type Conditions = (Option<bool>, Option<bool>, Option<bool>);
        let conditions: Vec<(&str, Option<&str>, Conditions)> = slice
            .endpoints
            .iter()
            .map(|e| {
                let c = e.conditions.as_ref().unwrap();
                (
                    e.addresses[0].as_str(),
                    e.node_name.as_deref(),
                    (c.ready, c.serving, c.terminating),
                )
            })
            .collect();
        assert_eq!(
            conditions,
            [
                (
                    "192.168.1.2",
                    Some("kube-1"),
                    (Some(true), Some(true), Some(false))
                ),
                (
                    "192.168.1.3",
                    Some("kube-2"),
                    (Some(false), Some(false), Some(false))
                ),
                (
                    "192.168.1.4",
                    Some("kube-2"),
                    (Some(false), Some(true), Some(true))
                ),
            ]
        );
        // At rest: nothing to write.
        let existing = [stored(slice.clone(), "rng-abcde")];
        assert!(desired_slices(&svc, &pods, &nodes(), &existing).is_empty());

        // A pod turning ready updates that slice in place.
        let mut now_ready = pods.clone();
        now_ready[1] = pod("b", "192.168.1.3", "kube-2", true, json!({}));
        let actions = desired_slices(&svc, &now_ready, &nodes(), &existing);
        assert!(actions.create.is_empty() && actions.delete.is_empty());
        assert_eq!(actions.update.len(), 1);
        assert_eq!(
            actions.update[0].metadata.name.as_deref(),
            Some("rng-abcde")
        );
        assert_eq!(
            actions.update[0].endpoints[1]
                .conditions
                .as_ref()
                .unwrap()
                .ready,
            Some(true)
        );

        // A Service label change relabels the slice.
        let relabelled = service(json!({"metadata": {"labels": {"tier": "backend"}}}));
        let actions = desired_slices(&relabelled, &pods, &nodes(), &existing);
        assert_eq!(actions.update.len(), 1);
        assert_eq!(
            actions.update[0].metadata.labels.as_ref().unwrap()["tier"],
            "backend"
        );
    }

    #[test]
    fn without_endpoints_one_placeholder_slice_remains() {
        let svc = service(json!({}));
        let actions = desired_slices(&svc, &[], &nodes(), &[]);
        let [placeholder] = actions.create.as_slice() else {
            panic!("{actions:?}")
        };
        assert!(placeholder.endpoints.is_empty());
        assert_eq!(placeholder.ports.as_deref(), Some(&[][..]));
        let existing = [stored(placeholder.clone(), "rng-plchd")];
        assert!(desired_slices(&svc, &[], &nodes(), &existing).is_empty());

        // The last pod leaves a full slice: it becomes the placeholder by update, not
        // delete + create.
        let full = desired_slices(
            &svc,
            &[pod("a", "192.168.1.2", "kube-1", true, json!({}))],
            &nodes(),
            &[],
        );
        let existing = [stored(full.create[0].clone(), "rng-full0")];
        let actions = desired_slices(&svc, &[], &nodes(), &existing);
        assert!(
            actions.create.is_empty() && actions.delete.is_empty(),
            "{actions:?}"
        );
        assert_eq!(actions.update.len(), 1);
        assert_eq!(
            actions.update[0].metadata.name.as_deref(),
            Some("rng-full0")
        );
        assert_eq!(
            actions.update[0].metadata.resource_version.as_deref(),
            Some("5")
        );
        assert!(actions.update[0].endpoints.is_empty());
    }

    #[test]
    fn slices_hold_at_most_a_hundred_endpoints_and_refill_before_growing() {
        let svc = service(json!({}));
        let pods: Vec<Pod> = (0..250)
            .map(|i| {
                pod(
                    &format!("p{i:03}"),
                    &format!("10.0.{}.{}", i / 200, i % 200),
                    "kube-1",
                    true,
                    json!({}),
                )
            })
            .collect();
        let actions = desired_slices(&svc, &pods, &nodes(), &[]);
        let mut sizes: Vec<usize> = actions.create.iter().map(|s| s.endpoints.len()).collect();
        sizes.sort();
        assert_eq!(sizes, [50, 100, 100]);
        let existing: Vec<EndpointSlice> = actions
            .create
            .iter()
            .enumerate()
            .map(|(i, s)| stored(s.clone(), &format!("rng-{i:05}")))
            .collect();
        // Ten more pods go into the half-empty slice rather than a new one.
        let mut more = pods.clone();
        more.extend((250..260).map(|i| {
            pod(
                &format!("p{i:03}"),
                &format!("10.0.9.{i}"),
                "kube-1",
                true,
                json!({}),
            )
        }));
        let actions = desired_slices(&svc, &more, &nodes(), &existing);
        assert!(actions.create.is_empty() && actions.delete.is_empty());
        assert_eq!(actions.update.len(), 1);
        assert_eq!(actions.update[0].endpoints.len(), 60);
    }

    #[test]
    fn pods_on_unknown_nodes_wait_and_foreign_slices_go() {
        let svc = service(json!({}));
        let actions = desired_slices(
            &svc,
            &[pod("a", "192.168.1.2", "kube-9", true, json!({}))],
            &nodes(),
            &[],
        );
        assert!(actions.retry);
        assert!(
            actions.create[0].endpoints.is_empty(),
            "only the placeholder"
        );
        // A slice left by an older Service of the same name (another uid) is replaced.
        let mut old = stored(
            desired_slices(&svc, &[], &nodes(), &[]).create[0].clone(),
            "rng-old00",
        );
        old.metadata.owner_references.as_mut().unwrap()[0].uid = "old-uid".into();
        let actions = desired_slices(&svc, &[], &nodes(), &[old]);
        assert_eq!(actions.delete, ["rng-old00"]);
        assert_eq!(actions.create.len(), 1);
    }

    #[test]
    fn stale_check_waits_for_our_writes_and_deletes() {
        let f = Freshness::default();
        let key = service_key("default", "rng");
        f.wrote(&key, "rng".into(), Some("10".into()));
        assert!(!f.is_fresh(&key, |_| Some(Some("9".into()))));
        assert!(!f.is_fresh(&key, |_| None));
        assert!(f.is_fresh(&key, |_| Some(Some("10".into()))));
        f.wrote(&key, "rng-abcde".into(), None);
        assert!(!f.is_fresh(&key, |_| Some(Some("3".into()))));
        f.gone(&key, "rng-abcde");
        assert!(f.is_fresh(&key, |_| Some(Some("3".into()))));
    }
}
