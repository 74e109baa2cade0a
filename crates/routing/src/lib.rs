//! The main routing table of a node in a Calico cluster, predicted from cluster state.
//!
//! kubelab's nodes must show the routes a course written against Calico shows
//! (`192.168.126.64/26 via 10.10.95.205 dev tunl0 ...`), so this crate computes, from the API
//! objects alone, exactly what `ip route` (iproute2 6.1) prints on a node, and the commands that
//! bring the kernel there. The node agent uses it to program routes, `kubelab routes
//! --predict/--check` to show and check them.
//!
//! - [`route`]: one route as a value, its `ip route` text, its `ip -j route` JSON, the kernel's
//!   dump order, and which routes the agent owns;
//! - [`cluster`]: the [`Cluster`] read from Node, Pod, IPPool and IPAMBlock JSON, the pool's
//!   [`Encapsulation`] and the workload veth name;
//! - [`table`]: [`node_table`] and the tunnel peer tables;
//! - [`plan`](mod@plan): [`diff`] and the `ip -batch` [`plan`](fn@plan).
//!
//! **Invariant:** pure. No netlink, no processes, no files, no clock: text and values in, text
//! and values out. Running `ip` is the caller's business. Malformed input is an error value
//! ([`RoutingError`]) or, for cluster objects, skipped; nothing panics.

pub mod cluster;
pub mod plan;
pub mod route;
pub mod table;

pub use cluster::{
    Block, Cluster, Encapsulation, NodeInfo, PodInfo, cluster_from_objects, encapsulation_of_pool,
    veth_name,
};
pub use plan::{Diff, agent_plan, diff, plan};
pub use route::{
    Destination, IPIP_DEVICE, Protocol, Route, RouteType, Scope, UNDERLAY_DEVICE, VXLAN_DEVICE,
    WORKLOAD_DEVICE_PREFIX, is_managed, parse_ip_json, render,
};
pub use table::{VxlanPeer, VxlanPlan, ipip_peers, node_table, vxlan_peers, vxlan_plan};

/// What can go wrong reading routes.
#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    #[error("`ip -j route` output is not JSON")]
    Json(#[source] serde_json::Error),
    #[error("`ip -j route` output is not a JSON array")]
    NotAnArray,
    #[error("route #{index} of `ip -j route` output: {reason}")]
    InvalidRoute { index: usize, reason: String },
    #[error("invalid route destination {0:?}")]
    InvalidDestination(String),
}
