//! The order in which a node tries a pool's blocks when it needs a new one: Calico's
//! `randomBlockGenerator` and `determineSeed` (libcalico-go `lib/ipam/ipam_block_reader_writer.go`).
//!
//! The pool's N blocks are walked from a start index, then start+1, ..., wrapping to 0, N blocks in
//! all. The start index is `new(big.Int).Rand(rand.New(rand.NewSource(seed)), N)` with
//! `seed = int64(fnv32(hostname))`, so a node tries the same blocks in the same order every time
//! and different nodes rarely race for the same block. For blocks of a single address (/32, /128)
//! Calico seeds from the clock instead; the caller passes that clock value in.

use crate::IpamError;
use crate::go::big::big_int_rand;
use crate::go::fnv::fnv1_32;
use crate::go::rand::GoRand;
use crate::net::Cidr;

/// Calico's `determineSeed`: the clock for single-address blocks, else FNV-1 of the host name.
pub fn determine_seed(
    block_prefix_len: u8,
    address_bits: u8,
    hostname: &str,
    clock_nanos: i64,
) -> i64 {
    if block_prefix_len == address_bits {
        clock_nanos
    } else {
        i64::from(fnv1_32(hostname.as_bytes()))
    }
}

/// Iterator over a pool's blocks in the order `hostname` tries them.
#[derive(Debug, Clone)]
pub struct RandomBlocks {
    pool: Cidr,
    block_prefix_len: u8,
    num_blocks: u128,
    next_index: u128,
    returned: u128,
}

impl RandomBlocks {
    /// How many blocks the pool has (the walk yields each once).
    pub fn num_blocks(&self) -> u128 {
        self.num_blocks
    }
}

/// Builds the walk for `pool` carved into `/block_prefix_len` blocks, as seen by `hostname`.
/// `clock_nanos` only matters for single-address blocks (see [`determine_seed`]).
pub fn random_blocks(
    pool: Cidr,
    block_prefix_len: u8,
    hostname: &str,
    clock_nanos: i64,
) -> Result<RandomBlocks, IpamError> {
    let bits = pool.address_bits();
    if block_prefix_len > bits {
        return Err(IpamError::InvalidPool(format!(
            "block size /{block_prefix_len} is longer than the address family allows"
        )));
    }
    // Calico computes 2**(pool host bits) / 2**(block host bits): zero when blocks are bigger
    // than the pool, which makes the generator return nothing.
    let num_blocks = if block_prefix_len < pool.prefix_len() {
        0
    } else {
        1u128
            .checked_shl(u32::from(block_prefix_len - pool.prefix_len()))
            .ok_or_else(|| IpamError::InvalidPool(format!("{pool} has too many blocks")))?
    };
    let seed = determine_seed(block_prefix_len, bits, hostname, clock_nanos);
    let mut rng = GoRand::new(seed);
    let start = big_int_rand(&mut rng, num_blocks);
    Ok(RandomBlocks {
        pool,
        block_prefix_len,
        num_blocks,
        next_index: start,
        returned: 0,
    })
}

impl Iterator for RandomBlocks {
    type Item = Cidr;

    fn next(&mut self) -> Option<Cidr> {
        if self.returned >= self.num_blocks {
            return None;
        }
        let block_size = 1u128 << u32::from(self.pool.address_bits() - self.block_prefix_len);
        let offset = self.next_index.checked_mul(block_size)?;
        let first = self.pool.nth(offset)?;
        self.next_index = if self.num_blocks - self.next_index <= 1 {
            0
        } else {
            self.next_index + 1
        };
        self.returned += 1;
        Cidr::new(first, self.block_prefix_len).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::random_blocks;
    use crate::net::Cidr;

    fn pool(text: &str) -> Cidr {
        text.parse().unwrap()
    }

    /// The course's own test vector: with the default pool, kube-0 claims 192.168.145.64/26 and
    /// kube-1 192.168.126.64/26.
    #[test]
    fn course_test_vector() {
        let mut kube0 = random_blocks(pool("192.168.0.0/16"), 26, "kube-0", 0).unwrap();
        assert_eq!(kube0.next().unwrap().to_string(), "192.168.145.64/26");
        assert_eq!(kube0.next().unwrap().to_string(), "192.168.145.128/26");
        let mut kube1 = random_blocks(pool("192.168.0.0/16"), 26, "kube-1", 0).unwrap();
        assert_eq!(kube1.next().unwrap().to_string(), "192.168.126.64/26");
    }

    #[test]
    fn walks_every_block_once_wrapping() {
        // kube-1 starts at index 1 of 16 (Go: Rand(n=16) = 1), so the walk wraps after 15 blocks.
        let blocks: Vec<String> = random_blocks(pool("10.0.0.0/24"), 28, "kube-1", 0)
            .unwrap()
            .map(|b| b.to_string())
            .collect();
        assert_eq!(blocks.len(), 16);
        assert_eq!(blocks[0], "10.0.0.16/28");
        assert_eq!(blocks[14], "10.0.0.240/28");
        assert_eq!(blocks[15], "10.0.0.0/28");
        let mut unique = blocks.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 16);
    }

    #[test]
    fn blocks_larger_than_pool_yield_nothing() {
        let mut walk = random_blocks(pool("10.0.0.0/28"), 26, "kube-0", 0).unwrap();
        assert_eq!(walk.num_blocks(), 0);
        assert!(walk.next().is_none());
    }

    #[test]
    fn single_address_blocks_seed_from_clock() {
        let a: Vec<Cidr> = random_blocks(pool("10.0.0.0/28"), 32, "kube-0", 1)
            .unwrap()
            .collect();
        let b: Vec<Cidr> = random_blocks(pool("10.0.0.0/28"), 32, "kube-1", 1)
            .unwrap()
            .collect();
        assert_eq!(a, b, "same clock, different hosts: same order");
        assert_eq!(a.len(), 16);
    }

    #[test]
    fn ipv6_pool() {
        let blocks: Vec<Cidr> = random_blocks(pool("fd00::/120"), 122, "kube-0", 0)
            .unwrap()
            .collect();
        assert_eq!(blocks.len(), 4);
        assert!(blocks.iter().all(|b| b.prefix_len() == 122));
    }
}
