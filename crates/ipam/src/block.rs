//! Address bookkeeping inside one block (libcalico-go `lib/ipam/ipam_block.go`), as methods on
//! [`IpamBlockSpec`]. Pure: the caller reads the block, calls these, and writes it back with a
//! compare-and-swap.
//!
//! Rules kept from Calico:
//! - addresses are handed out from the front of `unallocated`; a new block lists ordinals
//!   0..N in order, so the lowest free ordinal goes first (ordinal 0 is an ordinary address);
//! - released ordinals are appended to the end of `unallocated` in ascending ordinal order, so
//!   the address idle longest is reused first;
//! - allocations with the same handle and attributes share one `attributes` entry, and entries
//!   nobody points at any more are dropped (indices renumbered) on release.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::IpamError;
use crate::model::{AllocationAttribute, IpamBlockSpec};
use crate::net::Cidr;

/// Largest block kubelab will materialise (Calico's smallest IPv4 block size is /20: 4096).
const MAX_BLOCK_ADDRESSES: u128 = 1 << 12;

/// The affinity string Calico writes for a node: `host:<node>`.
pub fn host_affinity(node: &str) -> String {
    format!("host:{node}")
}

impl IpamBlockSpec {
    /// A new, empty block: every ordinal free, in ascending order.
    pub fn new_empty(
        cidr: Cidr,
        affinity: Option<String>,
        sequence_number: u64,
    ) -> Result<IpamBlockSpec, IpamError> {
        let size = cidr
            .num_addresses()
            .filter(|n| *n <= MAX_BLOCK_ADDRESSES)
            .ok_or_else(|| IpamError::InvalidPool(format!("block {cidr} is too large")))?;
        // Bounded by MAX_BLOCK_ADDRESSES above.
        let size = size as usize;
        Ok(IpamBlockSpec {
            cidr,
            affinity,
            affinity_claim_time: None,
            allocations: vec![None; size],
            unallocated: (0..size).collect(),
            attributes: Vec::new(),
            sequence_number,
            sequence_number_for_allocation: BTreeMap::new(),
            deleted: false,
            strict_affinity: false,
        })
    }

    /// The node this block is affine to, if its affinity is `host:<node>`.
    pub fn host(&self) -> Option<&str> {
        self.affinity.as_deref()?.strip_prefix("host:")
    }

    pub fn num_free(&self) -> usize {
        self.unallocated.len()
    }

    /// No address is allocated.
    pub fn is_empty(&self) -> bool {
        self.allocations.iter().all(Option::is_none)
    }

    /// Checks the structural rules a block read from the datastore must satisfy before IPAM
    /// works on it, so malformed objects become errors instead of out-of-range indexing.
    pub fn validate(&self) -> Result<(), IpamError> {
        let bad = |reason: String| IpamError::Malformed {
            kind: "IPAMBlock",
            name: self.cidr.to_name(),
            reason,
        };
        let size = self.cidr.num_addresses().unwrap_or(u128::MAX);
        if self.allocations.len() as u128 != size {
            return Err(bad(format!(
                "{} allocations for {size} addresses",
                self.allocations.len()
            )));
        }
        let mut free = vec![false; self.allocations.len()];
        for &ordinal in &self.unallocated {
            match free.get_mut(ordinal) {
                None => return Err(bad(format!("unallocated ordinal {ordinal} out of range"))),
                Some(seen) if *seen => {
                    return Err(bad(format!("ordinal {ordinal} listed twice as free")));
                }
                Some(seen) => *seen = true,
            }
        }
        for (ordinal, allocation) in self.allocations.iter().enumerate() {
            match allocation {
                Some(index) if *index >= self.attributes.len() => {
                    return Err(bad(format!(
                        "ordinal {ordinal} points at missing attribute {index}"
                    )));
                }
                Some(_) if free[ordinal] => {
                    return Err(bad(format!("ordinal {ordinal} is both allocated and free")));
                }
                None if !free[ordinal] => {
                    return Err(bad(format!(
                        "ordinal {ordinal} is neither allocated nor free"
                    )));
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn ordinal_ip(&self, ordinal: usize) -> Option<IpAddr> {
        self.cidr.nth(ordinal as u128)
    }

    /// Index of an attribute entry equal to (handle, attrs), adding one if there is none
    /// (Calico's `findOrAddAttribute`).
    fn find_or_add_attribute(
        &mut self,
        handle_id: Option<&str>,
        secondary: &BTreeMap<String, String>,
    ) -> usize {
        let wanted = AllocationAttribute {
            handle_id: handle_id.map(str::to_string),
            secondary: secondary.clone(),
        };
        if let Some(index) = self.attributes.iter().position(|a| *a == wanted) {
            return index;
        }
        self.attributes.push(wanted);
        self.attributes.len() - 1
    }

    /// Allocates up to `count` addresses from the front of the free list (Calico's
    /// `allocationBlock.autoAssign` without reservations). Returns fewer when the block runs out.
    pub fn auto_assign(
        &mut self,
        count: usize,
        handle_id: Option<&str>,
        secondary: &BTreeMap<String, String>,
    ) -> Vec<IpAddr> {
        let take = count.min(self.unallocated.len());
        if take == 0 {
            return Vec::new();
        }
        let attribute = self.find_or_add_attribute(handle_id, secondary);
        let ordinals: Vec<usize> = self.unallocated.drain(..take).collect();
        let mut ips = Vec::with_capacity(take);
        for ordinal in ordinals {
            if let Some(slot) = self.allocations.get_mut(ordinal) {
                *slot = Some(attribute);
            }
            self.sequence_number_for_allocation
                .insert(ordinal.to_string(), self.sequence_number);
            if let Some(ip) = self.ordinal_ip(ordinal) {
                ips.push(ip);
            }
        }
        ips
    }

    /// Allocates one specific address (Calico's `allocationBlock.assign`).
    pub fn assign(
        &mut self,
        ip: IpAddr,
        handle_id: Option<&str>,
        secondary: &BTreeMap<String, String>,
    ) -> Result<(), IpamError> {
        let ordinal = self.ordinal(ip)?;
        if self.allocations.get(ordinal).copied().flatten().is_some() {
            return Err(IpamError::AlreadyAllocated(ip));
        }
        let attribute = self.find_or_add_attribute(handle_id, secondary);
        if let Some(slot) = self.allocations.get_mut(ordinal) {
            *slot = Some(attribute);
        }
        self.unallocated.retain(|&o| o != ordinal);
        self.sequence_number_for_allocation
            .insert(ordinal.to_string(), self.sequence_number);
        Ok(())
    }

    fn ordinal(&self, ip: IpAddr) -> Result<usize, IpamError> {
        self.cidr
            .ordinal_of(ip)
            .and_then(|o| usize::try_from(o).ok())
            .filter(|&o| o < self.allocations.len())
            .ok_or(IpamError::NotInBlock {
                ip,
                block: self.cidr,
            })
    }

    /// The handle that owns `ip`, if it is allocated.
    pub fn owner_of(&self, ip: IpAddr) -> Option<&AllocationAttribute> {
        let ordinal = self.ordinal(ip).ok()?;
        let index = self.allocations.get(ordinal).copied().flatten()?;
        self.attributes.get(index)
    }

    /// Releases the given addresses. Returns the ones that were not allocated and, per handle,
    /// how many were released (Calico's `allocationBlock.release` with no cooldown).
    pub fn release(
        &mut self,
        ips: &[IpAddr],
    ) -> Result<(Vec<IpAddr>, BTreeMap<String, usize>), IpamError> {
        let mut not_allocated = Vec::new();
        let mut released_by_handle: BTreeMap<String, usize> = BTreeMap::new();
        let mut ordinals = Vec::new();
        for &ip in ips {
            let ordinal = self.ordinal(ip)?;
            if ordinals.contains(&ordinal) {
                continue;
            }
            match self.allocations.get(ordinal).copied().flatten() {
                None => not_allocated.push(ip),
                Some(index) => {
                    ordinals.push(ordinal);
                    if let Some(handle) = self
                        .attributes
                        .get(index)
                        .and_then(|a| a.handle_id.as_ref())
                    {
                        *released_by_handle.entry(handle.clone()).or_default() += 1;
                    }
                }
            }
        }
        self.free_ordinals(ordinals);
        Ok((not_allocated, released_by_handle))
    }

    /// Releases every address held by `handle_id`; returns how many (Calico's
    /// `releaseByHandle`).
    pub fn release_by_handle(&mut self, handle_id: &str) -> usize {
        let ordinals: Vec<usize> = self
            .allocations
            .iter()
            .enumerate()
            .filter_map(|(ordinal, allocation)| {
                let attribute = self.attributes.get((*allocation)?)?;
                (attribute.handle_id.as_deref() == Some(handle_id)).then_some(ordinal)
            })
            .collect();
        let count = ordinals.len();
        self.free_ordinals(ordinals);
        count
    }

    /// Addresses held by `handle_id`, in ordinal order.
    pub fn ips_by_handle(&self, handle_id: &str) -> Vec<IpAddr> {
        self.allocations
            .iter()
            .enumerate()
            .filter_map(|(ordinal, allocation)| {
                let attribute = self.attributes.get((*allocation)?)?;
                if attribute.handle_id.as_deref() == Some(handle_id) {
                    self.ordinal_ip(ordinal)
                } else {
                    None
                }
            })
            .collect()
    }

    /// Allocated addresses with their attribute entry, in ordinal order.
    pub fn allocated(&self) -> Vec<(IpAddr, &AllocationAttribute)> {
        self.allocations
            .iter()
            .enumerate()
            .filter_map(|(ordinal, allocation)| {
                Some((
                    self.ordinal_ip(ordinal)?,
                    self.attributes.get((*allocation)?)?,
                ))
            })
            .collect()
    }

    /// Frees ordinals the way Calico's `garbageCollect` does: walk ordinals ascending, append
    /// each freed one to `unallocated`, then drop attribute entries nobody uses.
    fn free_ordinals(&mut self, mut ordinals: Vec<usize>) {
        if ordinals.is_empty() {
            return;
        }
        ordinals.sort_unstable();
        ordinals.dedup();
        for ordinal in ordinals {
            if let Some(slot) = self.allocations.get_mut(ordinal)
                && slot.take().is_some()
            {
                self.unallocated.push(ordinal);
                self.sequence_number_for_allocation
                    .remove(&ordinal.to_string());
            }
        }
        self.drop_unused_attributes();
    }

    fn drop_unused_attributes(&mut self) {
        let mut used = vec![false; self.attributes.len()];
        for index in self.allocations.iter().flatten() {
            if let Some(flag) = used.get_mut(*index) {
                *flag = true;
            }
        }
        if used.iter().all(|u| *u) {
            return;
        }
        let mut renumbered = vec![None; self.attributes.len()];
        let mut kept = Vec::new();
        for (old, attribute) in std::mem::take(&mut self.attributes).into_iter().enumerate() {
            if used[old] {
                renumbered[old] = Some(kept.len());
                kept.push(attribute);
            }
        }
        self.attributes = kept;
        for allocation in self.allocations.iter_mut() {
            if let Some(index) = allocation {
                *allocation = renumbered.get(*index).copied().flatten();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block() -> IpamBlockSpec {
        IpamBlockSpec::new_empty(
            "192.168.145.64/26".parse().unwrap(),
            Some(host_affinity("kube-0")),
            1,
        )
        .unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn lowest_ordinal_first_and_release_to_end() {
        let mut b = block();
        let none = BTreeMap::new();
        let first = b.auto_assign(3, Some("a"), &none);
        assert_eq!(
            first,
            vec![
                ip("192.168.145.64"),
                ip("192.168.145.65"),
                ip("192.168.145.66")
            ]
        );
        let (missing, by_handle) = b.release(&[ip("192.168.145.65")]).unwrap();
        assert!(missing.is_empty());
        assert_eq!(by_handle.get("a"), Some(&1));
        assert_eq!(b.unallocated.last(), Some(&1));
        assert_eq!(
            b.auto_assign(1, Some("b"), &none),
            vec![ip("192.168.145.67")]
        );
        b.validate().unwrap();
    }

    #[test]
    fn attributes_shared_and_compacted() {
        let mut b = block();
        let none = BTreeMap::new();
        b.auto_assign(1, Some("a"), &none);
        b.auto_assign(1, Some("b"), &none);
        b.auto_assign(1, Some("a"), &none);
        assert_eq!(b.attributes.len(), 2);
        assert_eq!(b.release_by_handle("a"), 2);
        assert_eq!(b.attributes.len(), 1);
        assert_eq!(b.allocations[1], Some(0));
        assert_eq!(b.ips_by_handle("b"), vec![ip("192.168.145.65")]);
        // Freed ordinals 0 and 2 go to the end in ascending order.
        assert_eq!(&b.unallocated[b.unallocated.len() - 2..], &[0, 2]);
        b.validate().unwrap();
    }

    #[test]
    fn release_reports_unallocated_and_rejects_foreign_ips() {
        let mut b = block();
        let (missing, _) = b.release(&[ip("192.168.145.70")]).unwrap();
        assert_eq!(missing, vec![ip("192.168.145.70")]);
        assert!(matches!(
            b.release(&[ip("10.0.0.1")]),
            Err(IpamError::NotInBlock { .. })
        ));
    }

    #[test]
    fn assign_specific_address() {
        let mut b = block();
        let none = BTreeMap::new();
        b.assign(ip("192.168.145.64"), Some("tunnel"), &none)
            .unwrap();
        assert!(matches!(
            b.assign(ip("192.168.145.64"), Some("x"), &none),
            Err(IpamError::AlreadyAllocated(_))
        ));
        assert_eq!(b.unallocated[0], 1);
        b.validate().unwrap();
    }

    #[test]
    fn validate_rejects_malformed_blocks() {
        let mut b = block();
        b.allocations[3] = Some(7);
        b.unallocated.retain(|&o| o != 3);
        assert!(b.validate().is_err());
        let mut b = block();
        b.allocations.pop();
        assert!(b.validate().is_err());
        let mut b = block();
        b.unallocated.push(0);
        assert!(b.validate().is_err());
    }
}
