//! The allocation algorithm (libcalico-go `lib/ipam/ipam.go` and `ipam_block_reader_writer.go`)
//! over a compare-and-swap [`Datastore`].
//!
//! Every write is a compare-and-swap on the object read just before; a lost race re-reads and
//! retries, as Calico does, up to [`DATASTORE_RETRIES`] times. The order of writes is Calico's,
//! so a crash between two writes leaves the same recoverable states Calico leaves:
//! - claiming a block: create the `BlockAffinity` as `pending`, create the `IPAMBlock` with the
//!   node's affinity, then mark the affinity `confirmed`; a node that finds someone else's block
//!   deletes its pending affinity and looks further;
//! - assigning: increment the `IPAMHandle` first, then write the block; if the block write loses,
//!   decrement the handle again (a handle may briefly over-count, never under-count);
//! - releasing: write the block (or delete it when it is empty and nobody's), then decrement the
//!   handle, deleting it when it reaches zero.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::IpamError;
use crate::block::host_affinity;
use crate::blockgen::random_blocks;
use crate::datastore::{Datastore, StoreError};
use crate::model::{
    AffinityState, AllowedUse, AssignmentMode, BlockAffinitySpec, CalicoSpec, IpPoolSpec,
    IpamBlockSpec, IpamHandleSpec, Stored, affinity_name, block_name, handle_name, to_object,
};
use crate::net::Cidr;

/// How often Calico retries a lost compare-and-swap before giving up (`datastoreRetries`).
pub const DATASTORE_RETRIES: usize = 100;

/// Calico's safeguard when no per-host block limit is configured.
pub const DEFAULT_MAX_BLOCKS_PER_HOST: usize = 20;

/// Calico's IPAMConfig settings that change allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpamConfig {
    /// Never take addresses from blocks affine to other nodes (Calico default: false).
    pub strict_affinity: bool,
    /// Claim new blocks when the affine ones are full (Calico default: true).
    pub auto_allocate_blocks: bool,
    /// Most blocks one node may claim; 0 means [`DEFAULT_MAX_BLOCKS_PER_HOST`].
    pub max_blocks_per_host: usize,
}

impl Default for IpamConfig {
    fn default() -> Self {
        IpamConfig {
            strict_affinity: false,
            auto_allocate_blocks: true,
            max_blocks_per_host: DEFAULT_MAX_BLOCKS_PER_HOST,
        }
    }
}

impl IpamConfig {
    fn block_limit(&self) -> usize {
        if self.max_blocks_per_host == 0 {
            DEFAULT_MAX_BLOCKS_PER_HOST
        } else {
            self.max_blocks_per_host
        }
    }
}

/// Source of the current time, the only time-dependent inputs being a new block's initial
/// `sequenceNumber` and the block-walk seed for single-address blocks (both Unix nanoseconds).
pub trait Clock: Send + Sync {
    fn now_unix_nanos(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix_nanos(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// A clock that always answers the same time (deterministic tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct FixedClock(pub i64);

impl Clock for FixedClock {
    fn now_unix_nanos(&self) -> i64 {
        self.0
    }
}

/// Address family of a request (Calico assigns IPv4 and IPv6 separately).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IpFamily {
    #[default]
    V4,
    V6,
}

impl IpFamily {
    fn matches(self, cidr: &Cidr) -> bool {
        cidr.is_ipv4() == (self == IpFamily::V4)
    }
}

/// One call of [`Ipam::auto_assign`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoAssignRequest {
    /// Node the addresses are for (its blocks are used first).
    pub node: String,
    /// Owner of the addresses, e.g. `k8s-pod-network.<containerID>`.
    pub handle_id: String,
    /// Stored as the allocation's `secondary` attributes (`node`, `namespace`, `pod`, ...).
    pub attrs: BTreeMap<String, String>,
    pub count: usize,
    pub family: IpFamily,
    pub use_: AllowedUse,
}

impl AutoAssignRequest {
    /// One IPv4 workload address for `handle_id` on `node`, with no attributes.
    pub fn one(node: &str, handle_id: &str) -> AutoAssignRequest {
        AutoAssignRequest {
            node: node.to_string(),
            handle_id: handle_id.to_string(),
            attrs: BTreeMap::new(),
            count: 1,
            family: IpFamily::V4,
            use_: AllowedUse::Workload,
        }
    }
}

/// Result of [`Ipam::auto_assign`]: fewer addresses than requested means every usable pool is
/// exhausted (Calico returns the partial list without an error, too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub ips: Vec<IpAddr>,
    pub requested: usize,
}

impl Assignment {
    pub fn is_complete(&self) -> bool {
        self.ips.len() >= self.requested
    }
}

/// Which tunnel device an address is for (handle and `type` attribute as calico-node writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelType {
    Ipip,
    Vxlan,
}

impl TunnelType {
    /// `ipip-tunnel-addr-<node>` / `vxlan-tunnel-addr-<node>` (calico-node `allocateip.go`).
    pub fn handle_id(self, node: &str) -> String {
        match self {
            TunnelType::Ipip => format!("ipip-tunnel-addr-{node}"),
            TunnelType::Vxlan => format!("vxlan-tunnel-addr-{node}"),
        }
    }

    /// The allocation's `type` attribute.
    pub fn attribute_type(self) -> &'static str {
        match self {
            TunnelType::Ipip => "ipipTunnelAddress",
            TunnelType::Vxlan => "vxlanTunnelAddress",
        }
    }
}

/// Outcomes of the block search that steer the caller rather than reach the user.
enum ClaimError {
    /// Every block of every pool is taken (Calico's `noFreeBlocksError`): borrow instead.
    NoFreeBlocks,
    /// The node owns as many blocks as allowed (Calico's `ErrBlockLimit`).
    BlockLimit,
    /// Another node created the block first (Calico's `errBlockClaimConflict`).
    ClaimConflict,
    /// The affinity points at a block affine to someone else (Calico's `errStaleAffinity`).
    StaleAffinity,
    Ipam(IpamError),
}

impl From<IpamError> for ClaimError {
    fn from(error: IpamError) -> Self {
        ClaimError::Ipam(error)
    }
}

impl From<StoreError> for ClaimError {
    fn from(error: StoreError) -> Self {
        ClaimError::Ipam(IpamError::Store(error))
    }
}

impl ClaimError {
    fn is_conflict(&self) -> bool {
        matches!(self, ClaimError::Ipam(e) if e.is_conflict())
    }
}

/// A pool as IPAM uses it: decoded, validated, with its effective block size.
#[derive(Debug, Clone)]
struct UsablePool {
    cidr: Cidr,
    block_size: u8,
}

/// Calico-compatible IPAM over a datastore.
pub struct Ipam<D> {
    store: D,
    config: IpamConfig,
    clock: Box<dyn Clock>,
}

impl<D: Datastore> Ipam<D> {
    /// IPAM reading time from [`SystemClock`] (only for new blocks' sequence numbers and the
    /// walk seed of single-address blocks); use [`Ipam::with_clock`] for determinism.
    pub fn new(store: D, config: IpamConfig) -> Ipam<D> {
        Ipam::with_clock(store, config, Box::new(SystemClock))
    }

    pub fn with_clock(store: D, config: IpamConfig, clock: Box<dyn Clock>) -> Ipam<D> {
        Ipam {
            store,
            config,
            clock,
        }
    }

    pub fn store(&self) -> &D {
        &self.store
    }

    pub fn config(&self) -> &IpamConfig {
        &self.config
    }

    // ----- typed datastore access -------------------------------------------------------

    fn get<T: CalicoSpec>(&self, name: &str) -> Result<Option<Stored<T>>, IpamError> {
        self.store
            .get(T::KIND, name)?
            .map(Stored::decode)
            .transpose()
    }

    fn list<T: CalicoSpec>(&self) -> Result<Vec<Stored<T>>, IpamError> {
        self.store
            .list(T::KIND)?
            .into_iter()
            .map(Stored::decode)
            .collect()
    }

    fn create<T: CalicoSpec>(&self, name: &str, spec: &T) -> Result<Stored<T>, IpamError> {
        Stored::decode(self.store.create(T::KIND, to_object(name, spec)?)?)
    }

    fn update<T: CalicoSpec>(&self, old: &Stored<T>, spec: &T) -> Result<Stored<T>, IpamError> {
        Stored::decode(self.store.update(T::KIND, old.with_spec(spec)?)?)
    }

    fn delete<T: CalicoSpec>(&self, old: &Stored<T>) -> Result<(), IpamError> {
        Ok(self
            .store
            .delete(T::KIND, old.name(), old.resource_version())?)
    }

    fn get_block(&self, cidr: &Cidr) -> Result<Option<Stored<IpamBlockSpec>>, IpamError> {
        let block = self.get::<IpamBlockSpec>(&block_name(cidr))?;
        if let Some(block) = &block {
            block.spec.validate()?;
        }
        Ok(block)
    }

    /// Writes a block; like Calico's `updateBlock`, every write bumps `sequenceNumber`.
    fn update_block(
        &self,
        old: &Stored<IpamBlockSpec>,
        mut spec: IpamBlockSpec,
    ) -> Result<Stored<IpamBlockSpec>, IpamError> {
        spec.sequence_number = spec.sequence_number.wrapping_add(1);
        self.update(old, &spec)
    }

    fn get_affinity(
        &self,
        node: &str,
        cidr: &Cidr,
    ) -> Result<Option<Stored<BlockAffinitySpec>>, IpamError> {
        self.get(&affinity_name(node, cidr))
    }

    fn get_handle(&self, handle_id: &str) -> Result<Option<Stored<IpamHandleSpec>>, IpamError> {
        self.get(&handle_name(handle_id))
    }

    // ----- pools --------------------------------------------------------------------------

    /// Stores an `IPPool` unless one with that name exists; returns whether it was created.
    pub fn ensure_pool(&self, name: &str, spec: &IpPoolSpec) -> Result<bool, IpamError> {
        validate_pool(spec)?;
        match self.create(name, spec) {
            Ok(_) => Ok(true),
            Err(IpamError::Store(StoreError::AlreadyExists { .. })) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Enabled pools that may serve `use_` for `family`, in name order (Calico's
    /// `determinePools` + `filterPoolsByUse`, with `all()` as the only node selector).
    fn usable_pools(
        &self,
        family: IpFamily,
        use_: AllowedUse,
    ) -> Result<Vec<UsablePool>, IpamError> {
        let mut pools = Vec::new();
        for pool in self.list::<IpPoolSpec>()? {
            let spec = pool.spec;
            if spec.disabled
                || spec.assignment_mode == Some(AssignmentMode::Manual)
                || !family.matches(&spec.cidr)
                || !spec.allows(use_)
            {
                continue;
            }
            let selector = spec.node_selector.trim();
            if !(selector.is_empty() || selector == "all()") {
                return Err(IpamError::UnsupportedNodeSelector(spec.node_selector));
            }
            validate_pool(&spec)?;
            pools.push(UsablePool {
                cidr: spec.cidr,
                block_size: spec.effective_block_size(),
            });
        }
        Ok(pools)
    }

    /// All pools, enabled or not: releasing must find blocks of disabled pools too.
    fn all_pools(&self) -> Result<Vec<UsablePool>, IpamError> {
        Ok(self
            .list::<IpPoolSpec>()?
            .into_iter()
            .map(|p| UsablePool {
                cidr: p.spec.cidr,
                block_size: p.spec.effective_block_size(),
            })
            .collect())
    }

    // ----- queries ------------------------------------------------------------------------

    /// All blocks, in name order.
    pub fn blocks(&self) -> Result<Vec<IpamBlockSpec>, IpamError> {
        Ok(self
            .list::<IpamBlockSpec>()?
            .into_iter()
            .map(|b| b.spec)
            .collect())
    }

    /// All block affinities, in name order.
    pub fn affinities(&self) -> Result<Vec<BlockAffinitySpec>, IpamError> {
        Ok(self
            .list::<BlockAffinitySpec>()?
            .into_iter()
            .map(|a| a.spec)
            .collect())
    }

    /// All handles, in name order.
    pub fn handles(&self) -> Result<Vec<IpamHandleSpec>, IpamError> {
        Ok(self
            .list::<IpamHandleSpec>()?
            .into_iter()
            .map(|h| h.spec)
            .collect())
    }

    /// CIDRs of the blocks whose `affinity` is this node (what BIRD/Felix route for it).
    pub fn node_blocks(&self, node: &str) -> Result<Vec<Cidr>, IpamError> {
        Ok(self
            .blocks()?
            .into_iter()
            .filter(|b| b.host() == Some(node))
            .map(|b| b.cidr)
            .collect())
    }

    /// Addresses held by a handle, in block then ordinal order (Calico's `IPsByHandle`).
    pub fn ips_by_handle(&self, handle_id: &str) -> Result<Vec<IpAddr>, IpamError> {
        let Some(handle) = self.get_handle(handle_id)? else {
            return Ok(Vec::new());
        };
        let mut ips = Vec::new();
        for block in handle.spec.block.keys() {
            let cidr: Cidr = block.parse()?;
            if let Some(block) = self.get_block(&cidr)? {
                ips.extend(block.spec.ips_by_handle(handle_id));
            }
        }
        Ok(ips)
    }

    /// The node's affinities (any state), as Calico's `getAffineBlocks` lists them.
    fn affine_block_cidrs(
        &self,
        node: &str,
        family: IpFamily,
        pools: &[UsablePool],
    ) -> Result<Vec<Cidr>, IpamError> {
        Ok(self
            .list::<BlockAffinitySpec>()?
            .into_iter()
            .filter(|a| a.spec.node == node && !a.spec.deleted && family.matches(&a.spec.cidr))
            .map(|a| a.spec.cidr)
            .filter(|cidr| pools.iter().any(|p| p.cidr.contains_cidr(cidr)))
            .collect())
    }

    // ----- assignment ---------------------------------------------------------------------

    /// Assigns `count` addresses to `handle_id` on `node` (Calico's `autoAssign`):
    /// 1. the node's affine blocks, in the order the datastore lists them;
    /// 2. a newly claimed block, searched in the node's [`random_blocks`] order, while the node
    ///    has fewer than the block limit ([`IpamError::BlockLimitReached`] otherwise);
    /// 3. when no block is left to claim and strict affinity is off, free addresses in blocks
    ///    affine to other nodes, again in the node's random block order.
    pub fn auto_assign(&self, request: &AutoAssignRequest) -> Result<Assignment, IpamError> {
        let mut ips: Vec<IpAddr> = Vec::new();
        if request.count == 0 {
            return Ok(Assignment { ips, requested: 0 });
        }
        let pools = self.usable_pools(request.family, request.use_)?;
        if pools.is_empty() {
            return Err(IpamError::NoPools {
                node: request.node.clone(),
            });
        }
        let affine = self.affine_block_cidrs(&request.node, request.family, &pools)?;
        let mut blocks_owned = affine.len();
        let limit = self.config.block_limit();
        let mut remaining_affine: VecDeque<Cidr> = affine.into();

        while ips.len() < request.count {
            let allow_new_claim = blocks_owned < limit;
            let (block, newly_claimed) = match self.find_or_claim_block(
                &request.node,
                &pools,
                &mut remaining_affine,
                allow_new_claim,
            ) {
                Ok(found) => found,
                Err(ClaimError::NoFreeBlocks) => break,
                Err(ClaimError::BlockLimit) => {
                    return Err(IpamError::BlockLimitReached {
                        node: request.node.clone(),
                        limit,
                        assigned: ips,
                    });
                }
                Err(ClaimError::ClaimConflict | ClaimError::StaleAffinity) => {
                    return Err(IpamError::TooManyRetries("claiming a block"));
                }
                Err(ClaimError::Ipam(e)) => return Err(e),
            };
            if newly_claimed {
                blocks_owned += 1;
            }
            let wanted = request.count - ips.len();
            let new_ips =
                self.assign_with_retries(block, wanted, request, self.config.strict_affinity)?;
            ips.extend(new_ips);
        }

        if !self.config.strict_affinity && ips.len() < request.count {
            'pools: for pool in &pools {
                let walk = random_blocks(
                    pool.cidr,
                    pool.block_size,
                    &request.node,
                    self.clock.now_unix_nanos(),
                )?;
                for cidr in walk {
                    if ips.len() >= request.count {
                        break 'pools;
                    }
                    let Some(block) = self.get_block(&cidr)? else {
                        continue;
                    };
                    let wanted = request.count - ips.len();
                    ips.extend(self.assign_with_retries(block, wanted, request, false)?);
                }
            }
        }

        Ok(Assignment {
            ips,
            requested: request.count,
        })
    }

    /// Assigns from one block, re-reading it after each lost compare-and-swap.
    fn assign_with_retries(
        &self,
        mut block: Stored<IpamBlockSpec>,
        wanted: usize,
        request: &AutoAssignRequest,
        affinity_check: bool,
    ) -> Result<Vec<IpAddr>, IpamError> {
        for _ in 0..DATASTORE_RETRIES {
            match self.assign_from_existing_block(&block, wanted, request, affinity_check) {
                Ok(ips) => return Ok(ips),
                Err(e) if e.is_conflict() => match self.get_block(&block.spec.cidr)? {
                    Some(fresh) => block = fresh,
                    None => return Ok(Vec::new()),
                },
                Err(e) => return Err(e),
            }
        }
        Err(IpamError::TooManyRetries("assigning from a block"))
    }

    /// Calico's `assignFromExistingBlock`: allocate in memory, increment the handle, write the
    /// block; undo the handle increment if the block write fails.
    fn assign_from_existing_block(
        &self,
        block: &Stored<IpamBlockSpec>,
        wanted: usize,
        request: &AutoAssignRequest,
        affinity_check: bool,
    ) -> Result<Vec<IpAddr>, IpamError> {
        let mut spec = block.spec.clone();
        let cidr = spec.cidr;
        if affinity_check && spec.host() != Some(request.node.as_str()) {
            return Err(IpamError::AffinityMismatch {
                block: cidr,
                affinity: spec.affinity.clone(),
                node: request.node.clone(),
            });
        }
        let ips = spec.auto_assign(wanted, Some(&request.handle_id), &request.attrs);
        if ips.is_empty() {
            return Ok(ips);
        }
        self.increment_handle(&request.handle_id, &cidr, ips.len())?;
        if let Err(write_error) = self.update_block(block, spec) {
            // Best effort, as in Calico: the block write failed, so the handle must not keep
            // counting these addresses. A failure here leaves an over-count, which release
            // tolerates.
            let _ = self.decrement_handle(&request.handle_id, &cidr, ips.len());
            return Err(write_error);
        }
        Ok(ips)
    }

    /// Calico's `blockAssignState.findOrClaimBlock` with `minFreeIps = 1`.
    fn find_or_claim_block(
        &self,
        node: &str,
        pools: &[UsablePool],
        remaining_affine: &mut VecDeque<Cidr>,
        allow_new_claim: bool,
    ) -> Result<(Stored<IpamBlockSpec>, bool), ClaimError> {
        while let Some(cidr) = remaining_affine.pop_front() {
            for _ in 0..DATASTORE_RETRIES {
                let Some(affinity) = self.get_affinity(node, &cidr)? else {
                    break;
                };
                match self.block_from_affinity(node, affinity) {
                    Ok(block) if block.spec.num_free() >= 1 => return Ok((block, false)),
                    Ok(_) => break,
                    Err(e) if e.is_conflict() => continue,
                    // Calico moves on to the next affine block on any other error.
                    Err(_) => break,
                }
            }
        }

        if !allow_new_claim {
            return Err(ClaimError::BlockLimit);
        }
        if !self.config.auto_allocate_blocks {
            return Err(ClaimError::NoFreeBlocks);
        }

        for _ in 0..DATASTORE_RETRIES {
            let subnet = self.find_usable_block(node, pools)?;
            for _ in 0..DATASTORE_RETRIES {
                let pending = match self.get_pending_affinity(node, &subnet) {
                    Ok(pending) => pending,
                    Err(e) if e.is_conflict() => continue,
                    Err(e) => return Err(e.into()),
                };
                match self.block_from_affinity(node, pending) {
                    Ok(block) if block.spec.num_free() >= 1 => return Ok((block, true)),
                    // The block filled up between the search and the claim: search again.
                    Ok(_) => break,
                    Err(e) if e.is_conflict() => continue,
                    Err(ClaimError::ClaimConflict | ClaimError::StaleAffinity) => break,
                    Err(e) => return Err(e),
                }
            }
        }
        Err(IpamError::TooManyRetries("claiming a block").into())
    }

    /// Calico's `findUsableBlock` (without reclaiming other nodes' empty blocks): the first
    /// block in the node's walk of each pool that does not exist yet, or exists, is affine to
    /// this node and has room.
    fn find_usable_block(&self, node: &str, pools: &[UsablePool]) -> Result<Cidr, ClaimError> {
        let existing: BTreeMap<Cidr, (Option<String>, usize)> = self
            .list::<IpamBlockSpec>()?
            .into_iter()
            .map(|b| {
                let host = b.spec.host().map(str::to_string);
                (b.spec.cidr, (host, b.spec.num_free()))
            })
            .collect();
        for pool in pools {
            let walk = random_blocks(
                pool.cidr,
                pool.block_size,
                node,
                self.clock.now_unix_nanos(),
            )?;
            for subnet in walk {
                match existing.get(&subnet) {
                    None => return Ok(subnet),
                    Some((Some(host), free)) if host == node && *free > 0 => return Ok(subnet),
                    Some(_) => {}
                }
            }
        }
        Err(ClaimError::NoFreeBlocks)
    }

    /// Calico's `getPendingAffinity`: create the affinity as pending, or take the existing one
    /// (re-marking it pending unless it is already confirmed).
    fn get_pending_affinity(
        &self,
        node: &str,
        cidr: &Cidr,
    ) -> Result<Stored<BlockAffinitySpec>, IpamError> {
        let spec = BlockAffinitySpec {
            state: AffinityState::Pending,
            node: node.to_string(),
            affinity_type: "host".to_string(),
            cidr: *cidr,
            deleted: false,
        };
        match self.create(&affinity_name(node, cidr), &spec) {
            Ok(created) => Ok(created),
            Err(IpamError::Store(StoreError::AlreadyExists { kind, name })) => {
                // Deleted again between our create and this read: let the caller retry.
                let existing = self
                    .get_affinity(node, cidr)?
                    .ok_or(IpamError::Store(StoreError::Conflict { kind, name }))?;
                if existing.spec.state == AffinityState::Confirmed {
                    return Ok(existing);
                }
                let mut pending = existing.spec.clone();
                pending.state = AffinityState::Pending;
                self.update(&existing, &pending)
            }
            Err(e) => Err(e),
        }
    }

    /// Calico's `getBlockFromAffinity`: the block an affinity refers to, creating it if it does
    /// not exist and confirming the affinity if it is not confirmed yet.
    fn block_from_affinity(
        &self,
        node: &str,
        affinity: Stored<BlockAffinitySpec>,
    ) -> Result<Stored<IpamBlockSpec>, ClaimError> {
        let cidr = affinity.spec.cidr;
        let Some(block) = self.get_block(&cidr)? else {
            let mut pending = affinity.spec.clone();
            pending.state = AffinityState::Pending;
            let affinity = self.update(&affinity, &pending)?;
            return self.claim_affine_block(node, affinity);
        };
        if block.spec.host() != Some(node) {
            // The affinity is stale: the block belongs to someone else (or nobody).
            self.delete(&affinity)?;
            return Err(ClaimError::StaleAffinity);
        }
        if affinity.spec.state != AffinityState::Confirmed {
            let mut pending = affinity.spec.clone();
            pending.state = AffinityState::Pending;
            let affinity = self.update(&affinity, &pending)?;
            // Rewrite the block to give it a new revision, invalidating concurrent writers
            // that read it under the old affinity.
            let block = self.update_block(&block, block.spec.clone())?;
            let mut confirmed = affinity.spec.clone();
            confirmed.state = AffinityState::Confirmed;
            self.update(&affinity, &confirmed)?;
            return Ok(block);
        }
        Ok(block)
    }

    /// Calico's `claimAffineBlock`: create the block with this node's affinity, then confirm
    /// the affinity. If the block already exists and is ours, confirm; if it is someone else's,
    /// withdraw our pending affinity.
    fn claim_affine_block(
        &self,
        node: &str,
        affinity: Stored<BlockAffinitySpec>,
    ) -> Result<Stored<IpamBlockSpec>, ClaimError> {
        let cidr = affinity.spec.cidr;
        let sequence_number = self.clock.now_unix_nanos().max(0) as u64;
        let fresh = IpamBlockSpec::new_empty(cidr, Some(host_affinity(node)), sequence_number)?;
        match self.create(&block_name(&cidr), &fresh) {
            Ok(block) => {
                self.confirm_affinity(&affinity)?;
                Ok(block)
            }
            Err(IpamError::Store(StoreError::AlreadyExists { kind, name })) => {
                let existing = self
                    .get_block(&cidr)?
                    .ok_or(IpamError::Store(StoreError::Conflict { kind, name }))?;
                if existing.spec.host() == Some(node) {
                    self.confirm_affinity(&affinity)?;
                    return Ok(existing);
                }
                // Someone else won; withdrawing our claim is best effort, as in Calico.
                let _ = self.delete(&affinity);
                Err(ClaimError::ClaimConflict)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Calico's `confirmAffinity`: mark confirmed; if that write loses, accept a confirmation
    /// some other process on the node made meanwhile.
    fn confirm_affinity(
        &self,
        affinity: &Stored<BlockAffinitySpec>,
    ) -> Result<Stored<BlockAffinitySpec>, IpamError> {
        let mut confirmed = affinity.spec.clone();
        confirmed.state = AffinityState::Confirmed;
        match self.update(affinity, &confirmed) {
            Ok(done) => Ok(done),
            Err(error) => match self.get_affinity(&affinity.spec.node, &affinity.spec.cidr) {
                Ok(Some(current)) if current.spec.state == AffinityState::Confirmed => Ok(current),
                _ => Err(error),
            },
        }
    }

    // ----- handles ------------------------------------------------------------------------

    /// Calico's `incrementHandle`: add `count` addresses in `block` to the handle, creating it.
    fn increment_handle(
        &self,
        handle_id: &str,
        block: &Cidr,
        count: usize,
    ) -> Result<(), IpamError> {
        let key = block.to_string();
        for _ in 0..DATASTORE_RETRIES {
            let result = match self.get_handle(handle_id)? {
                None => {
                    let spec = IpamHandleSpec {
                        handle_id: handle_id.to_string(),
                        block: BTreeMap::from([(key.clone(), count)]),
                        deleted: false,
                    };
                    self.create(&handle_name(handle_id), &spec).map(drop)
                }
                Some(handle) => {
                    let mut spec = handle.spec.clone();
                    *spec.block.entry(key.clone()).or_default() += count;
                    self.update(&handle, &spec).map(drop)
                }
            };
            match result {
                Ok(()) => return Ok(()),
                Err(IpamError::Store(StoreError::AlreadyExists { .. })) => continue,
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e),
            }
        }
        Err(IpamError::TooManyRetries("incrementing a handle"))
    }

    /// Calico's `decrementHandle`: remove `count` addresses in `block` from the handle,
    /// deleting the handle when it holds nothing any more.
    fn decrement_handle(
        &self,
        handle_id: &str,
        block: &Cidr,
        count: usize,
    ) -> Result<(), IpamError> {
        let key = block.to_string();
        let inconsistent = |reason: String| IpamError::HandleInconsistent {
            handle: handle_id.to_string(),
            reason,
        };
        for _ in 0..DATASTORE_RETRIES {
            let handle = self
                .get_handle(handle_id)?
                .ok_or_else(|| inconsistent("does not exist".to_string()))?;
            let mut spec = handle.spec.clone();
            let current = spec
                .block
                .get(&key)
                .copied()
                .ok_or_else(|| inconsistent(format!("holds nothing in block {key}")))?;
            let left = current.checked_sub(count).ok_or_else(|| {
                inconsistent(format!(
                    "holds {current} address(es) in block {key}, cannot release {count}"
                ))
            })?;
            if left == 0 {
                spec.block.remove(&key);
            } else {
                spec.block.insert(key.clone(), left);
            }
            let result = if spec.block.is_empty() {
                match self.delete(&handle) {
                    Err(IpamError::Store(StoreError::NotFound { .. })) => Ok(()),
                    other => other,
                }
            } else {
                self.update(&handle, &spec).map(drop)
            };
            match result {
                Ok(()) => return Ok(()),
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e),
            }
        }
        Err(IpamError::TooManyRetries("decrementing a handle"))
    }

    // ----- release ------------------------------------------------------------------------

    /// Releases addresses, whatever handle holds them (Calico's `ReleaseIPs`). Returns the
    /// addresses that were not allocated.
    pub fn release_ips(&self, ips: &[IpAddr]) -> Result<Vec<IpAddr>, IpamError> {
        let pools = self.all_pools()?;
        let mut not_allocated = Vec::new();
        let mut by_block: BTreeMap<Cidr, Vec<IpAddr>> = BTreeMap::new();
        let mut scanned_blocks: Option<Vec<Cidr>> = None;
        for &ip in ips {
            let block = match pools.iter().find(|p| p.cidr.contains(ip)) {
                Some(pool) => Some(Cidr::containing(ip, pool.block_size)?),
                None => {
                    // Not in any pool (the pool was deleted): find the block by scanning.
                    if scanned_blocks.is_none() {
                        scanned_blocks = Some(self.blocks()?.into_iter().map(|b| b.cidr).collect());
                    }
                    scanned_blocks
                        .iter()
                        .flatten()
                        .find(|b| b.contains(ip))
                        .copied()
                }
            };
            match block {
                Some(block) => by_block.entry(block).or_default().push(ip),
                None => not_allocated.push(ip),
            }
        }
        for (block, ips) in by_block {
            not_allocated.extend(self.release_ips_from_block(&block, &ips)?);
        }
        Ok(not_allocated)
    }

    /// Calico's `releaseIPsFromBlock`.
    fn release_ips_from_block(
        &self,
        cidr: &Cidr,
        ips: &[IpAddr],
    ) -> Result<Vec<IpAddr>, IpamError> {
        for _ in 0..DATASTORE_RETRIES {
            let Some(block) = self.get_block(cidr)? else {
                return Ok(ips.to_vec());
            };
            let mut spec = block.spec.clone();
            let (not_allocated, released_by_handle) = spec.release(ips)?;
            if spec == block.spec {
                return Ok(not_allocated);
            }
            let written = if spec.is_empty() && spec.affinity.is_none() {
                self.delete(&block)
            } else {
                self.update_block(&block, spec).map(drop)
            };
            match written {
                Ok(()) => {}
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e),
            }
            for (handle, count) in released_by_handle {
                // The addresses are free already; a handle that cannot be decremented only
                // over-counts (Calico logs and carries on).
                let _ = self.decrement_handle(&handle, cidr, count);
            }
            return Ok(not_allocated);
        }
        Err(IpamError::TooManyRetries("releasing addresses"))
    }

    /// Releases every address held by `handle_id` (Calico's `ReleaseByHandle`); returns how
    /// many. A handle that does not exist holds nothing: `Ok(0)`, so a repeated CNI DEL is fine.
    pub fn release_by_handle(&self, handle_id: &str) -> Result<usize, IpamError> {
        let Some(handle) = self.get_handle(handle_id)? else {
            return Ok(0);
        };
        let mut released = 0;
        for block in handle.spec.block.keys() {
            let cidr: Cidr = block.parse()?;
            released += self.release_handle_in_block(handle_id, &cidr)?;
        }
        Ok(released)
    }

    /// Calico's `releaseByHandle` for one block.
    fn release_handle_in_block(&self, handle_id: &str, cidr: &Cidr) -> Result<usize, IpamError> {
        for _ in 0..DATASTORE_RETRIES {
            let Some(block) = self.get_block(cidr)? else {
                return Ok(0);
            };
            let mut spec = block.spec.clone();
            let count = spec.release_by_handle(handle_id);
            if count == 0 {
                return Ok(0);
            }
            let written = if spec.is_empty() && spec.affinity.is_none() {
                self.delete(&block)
            } else {
                self.update_block(&block, spec).map(drop)
            };
            match written {
                Ok(()) | Err(IpamError::Store(StoreError::NotFound { .. })) => {}
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e),
            }
            let _ = self.decrement_handle(handle_id, cidr, count);
            return Ok(count);
        }
        Err(IpamError::TooManyRetries("releasing a handle"))
    }

    // ----- tunnel addresses ---------------------------------------------------------------

    /// The node's tunnel address (calico-node `allocateip`): the address already held by the
    /// node's tunnel handle, or a new one. Assigned before any pod, it is ordinal 0 of the
    /// node's first block.
    pub fn assign_tunnel_address(
        &self,
        node: &str,
        tunnel: TunnelType,
    ) -> Result<IpAddr, IpamError> {
        let handle_id = tunnel.handle_id(node);
        if let Some(ip) = self.ips_by_handle(&handle_id)?.first() {
            return Ok(*ip);
        }
        let request = AutoAssignRequest {
            node: node.to_string(),
            handle_id: handle_id.clone(),
            attrs: BTreeMap::from([
                ("node".to_string(), node.to_string()),
                ("type".to_string(), tunnel.attribute_type().to_string()),
            ]),
            count: 1,
            family: IpFamily::V4,
            use_: AllowedUse::Tunnel,
        };
        self.auto_assign(&request)?
            .ips
            .first()
            .copied()
            .ok_or(IpamError::NoAddressAvailable(handle_id))
    }

    // ----- node removal -------------------------------------------------------------------

    /// Drops every block affinity of a deleted node (Calico's `ReleaseHostAffinities` with
    /// `mustBeEmpty = false`): empty blocks are deleted, blocks still holding addresses lose
    /// their affinity and stay until those addresses are released.
    pub fn release_host_affinities(&self, node: &str) -> Result<(), IpamError> {
        let cidrs: Vec<Cidr> = self
            .list::<BlockAffinitySpec>()?
            .into_iter()
            .filter(|a| a.spec.node == node)
            .map(|a| a.spec.cidr)
            .collect();
        let mut first_error = None;
        for cidr in cidrs {
            if let Err(e) = self.release_block_affinity(node, &cidr) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Calico's `releaseBlockAffinity`, retried on lost races.
    fn release_block_affinity(&self, node: &str, cidr: &Cidr) -> Result<(), IpamError> {
        for _ in 0..DATASTORE_RETRIES {
            let Some(affinity) = self.get_affinity(node, cidr)? else {
                return Ok(());
            };
            let block = self.get_block(cidr)?;
            let Some(block) = block else {
                // Dangling affinity (its block never got created): just remove it.
                match self.delete(&affinity) {
                    Ok(()) | Err(IpamError::Store(StoreError::NotFound { .. })) => return Ok(()),
                    Err(e) if e.is_conflict() => continue,
                    Err(e) => return Err(e),
                }
            };
            if block.spec.affinity.is_some() && block.spec.host() != Some(node) {
                // Stale: the block is someone else's. Removing it is best effort.
                let _ = self.delete(&affinity);
                return Ok(());
            }
            let result = self.release_block_affinity_once(affinity, block);
            match result {
                Ok(()) => return Ok(()),
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e),
            }
        }
        Err(IpamError::TooManyRetries("releasing a block affinity"))
    }

    fn release_block_affinity_once(
        &self,
        affinity: Stored<BlockAffinitySpec>,
        block: Stored<IpamBlockSpec>,
    ) -> Result<(), IpamError> {
        let mut deleting = affinity.spec.clone();
        deleting.state = AffinityState::PendingDeletion;
        let affinity = self.update(&affinity, &deleting)?;
        if block.spec.is_empty() {
            match self.delete(&block) {
                Ok(()) | Err(IpamError::Store(StoreError::NotFound { .. })) => {}
                Err(e) => return Err(e),
            }
        } else {
            let mut orphaned = block.spec.clone();
            orphaned.affinity = None;
            orphaned.affinity_claim_time = None;
            self.update_block(&block, orphaned)?;
        }
        match self.delete(&affinity) {
            Ok(()) | Err(IpamError::Store(StoreError::NotFound { .. })) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Calico's pool validation that matters for allocation.
fn validate_pool(spec: &IpPoolSpec) -> Result<(), IpamError> {
    let block_size = spec.effective_block_size();
    let range = if spec.cidr.is_ipv4() {
        20..=32
    } else {
        116..=128
    };
    if !range.contains(&block_size) {
        return Err(IpamError::InvalidPool(format!(
            "{}: block size /{block_size} outside {}..={}",
            spec.cidr,
            range.start(),
            range.end()
        )));
    }
    if block_size < spec.cidr.prefix_len() {
        return Err(IpamError::InvalidPool(format!(
            "{}: blocks (/{block_size}) are larger than the pool",
            spec.cidr
        )));
    }
    Ok(())
}
