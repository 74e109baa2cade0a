//! Calico-compatible IP address management: the pure core.
//!
//! kubelab hands out pod and tunnel addresses the way Calico's IPAM does (libcalico-go
//! `lib/ipam`), so that a lab's addresses and routing tables match a course written against
//! Calico: with the default pool `192.168.0.0/16` and /26 blocks, node `kube-0` claims
//! `192.168.145.64/26` first and `kube-1` `192.168.126.64/26`.
//!
//! This crate owns:
//! - bit-exact ports of the Go library code that picks a node's first block ([`go`]: FNV-1,
//!   `math/rand`, `math/big` `Int.Rand`) and Calico's block walk ([`blockgen`]);
//! - the stored objects with Calico's JSON shapes and names ([`model`]: `IPPool`, `IPAMBlock`,
//!   `BlockAffinity`, `IPAMHandle` of `crd.projectcalico.org/v1`);
//! - address bookkeeping inside a block ([`block`]);
//! - the allocation algorithm over a compare-and-swap [`Datastore`] ([`Ipam`]): affine blocks
//!   first, then claiming a new block (pending → confirmed affinity), then borrowing from other
//!   nodes' blocks; release; tunnel addresses; dropping a deleted node's affinities.
//!
//! **Invariant:** no I/O. Storage is the caller's [`Datastore`] (the node agent's talks to the
//! API server; [`MemoryDatastore`] is in-process) and time is the caller's [`Clock`]. Nothing here
//! spawns, sleeps, logs or reads the environment; every failure is an [`IpamError`] value.

pub mod block;
pub mod blockgen;
pub mod datastore;
pub mod go;
mod ipam;
pub mod model;
pub mod net;

use std::net::IpAddr;

pub use datastore::{Datastore, MemoryDatastore, StoreError};
pub use ipam::{
    Assignment, AutoAssignRequest, Clock, DATASTORE_RETRIES, DEFAULT_MAX_BLOCKS_PER_HOST,
    FixedClock, IpFamily, Ipam, IpamConfig, SystemClock, TunnelType,
};
pub use model::{
    AffinityState, AllocationAttribute, AllowedUse, BlockAffinitySpec, IpPoolSpec, IpamBlockSpec,
    IpamHandleSpec, Kind,
};
pub use net::Cidr;

/// Everything that can go wrong in IPAM. Races between writers are not errors: they are
/// retried (up to [`DATASTORE_RETRIES`] times) before [`IpamError::TooManyRetries`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invalid CIDR {0:?}")]
    InvalidCidr(String),
    #[error("invalid IP pool: {0}")]
    InvalidPool(String),
    #[error("malformed {kind} {name:?}: {reason}")]
    Malformed {
        kind: &'static str,
        name: String,
        reason: String,
    },
    #[error("no enabled IP pool can serve node {node:?}")]
    NoPools { node: String },
    #[error("pool node selector {0:?} is not supported (kubelab evaluates only all())")]
    UnsupportedNodeSelector(String),
    /// The node needs another block but already owns `limit` (Calico's `ErrBlockLimit`). The
    /// addresses assigned before that stay allocated to the handle; release them by handle.
    #[error(
        "node {node:?} needs a new IPAM block but already has the limit of {limit}; {} address(es) were assigned first",
        assigned.len()
    )]
    BlockLimitReached {
        node: String,
        limit: usize,
        assigned: Vec<IpAddr>,
    },
    #[error("no address available for {0}")]
    NoAddressAvailable(String),
    #[error("{ip} is not in block {block}")]
    NotInBlock { ip: IpAddr, block: Cidr },
    #[error("{0} is already allocated")]
    AlreadyAllocated(IpAddr),
    #[error("block {block} has affinity {affinity:?}, which is not node {node:?}")]
    AffinityMismatch {
        block: Cidr,
        affinity: Option<String>,
        node: String,
    },
    #[error("handle {handle:?}: {reason}")]
    HandleInconsistent { handle: String, reason: String },
    #[error("gave up after {DATASTORE_RETRIES} attempts ({0}): excessive concurrent IPAM requests")]
    TooManyRetries(&'static str),
}

impl IpamError {
    /// A compare-and-swap lost a race; the operation is worth retrying.
    pub fn is_conflict(&self) -> bool {
        matches!(self, IpamError::Store(StoreError::Conflict { .. }))
    }
}
