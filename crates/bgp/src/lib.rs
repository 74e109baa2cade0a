//! The BGP control plane of a kubelab node (`kubelab up --routing bgp`), as Calico's
//! calico-node runs it: BIRD 2 in every node, configured from the datastore.
//!
//! - [`config`]: [`bird_config`], a node's `bird.conf` rendered from cluster state the way
//!   Calico's confd renders `bird.cfg` (device, direct and kernel protocols, a static blackhole
//!   per affine block, an iBGP full mesh with one `protocol bgp` per other node, global peers,
//!   only pod blocks exported); [`peer_router_config`] for an external router peering with every
//!   node;
//! - [`birdc`]: what `birdc show protocols` and `birdc show route` print, parsed;
//! - [`status`]: the `kubelab bgp status` table, like `calicoctl node status`.
//!
//! **Invariant:** pure. No sockets, no processes, no files: values and text in, text and values
//! out. Running BIRD and `birdc` is the node agent's and the lab's business. Malformed input is an
//! error value ([`BgpError`]); nothing panics.

pub mod birdc;
pub mod config;
pub mod status;

pub use birdc::{BirdProtocol, BirdRoute, parse_protocols, parse_routes};
pub use config::{
    DEFAULT_AS, GlobalPeer, bird_config, mesh_protocol_name, peer_router_config, pool_cidrs,
};
pub use status::{PeerStatus, PeerType, node_status, peer_statuses, status_table};

/// What can go wrong rendering a configuration or reading `birdc` output.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BgpError {
    #[error("node {0:?} is not in the cluster (no `projectcalico.org/IPv4Address` yet?)")]
    UnknownNode(String),
    #[error("invalid BGP peer {0:?}: expected ADDRESS:AS, e.g. 10.10.64.2:64513")]
    InvalidPeer(String),
    #[error("`birdc` reported an error: {0}")]
    Birdc(String),
    #[error("line {line} of `birdc` output: {reason}")]
    Unparsable { line: usize, reason: String },
}
