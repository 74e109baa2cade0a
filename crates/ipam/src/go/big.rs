//! Go's `new(big.Int).Rand(rnd, n)` on a 64-bit platform (`math/big` `nat.random`), for limits
//! up to 128 bits (enough for any IPv4 or IPv6 pool's block count).
//!
//! Go builds a number with as many 64-bit words as the limit has, filling words from least to
//! most significant; each word is `uint32` #1 as the low half and `uint32` #2 as the high half. It
//! then masks the most significant word down to the limit's bit length within that word and
//! retries the whole number while it is `>= n`. A port that draws one `Uint64` per word, or masks
//! with `n - 1`, consumes the generator differently and picks a different block.

use super::rand::GoRand;

/// Word size of the platform whose behaviour Calico ships with (amd64/arm64).
const WORD_BITS: u32 = 64;

/// `new(big.Int).Rand(rng, n)` for `n` given as an unsigned 128-bit integer: uniform in `[0, n)`.
/// Like Go, `n == 0` yields 0 without touching the generator.
pub fn big_int_rand(rng: &mut GoRand, limit: u128) -> u128 {
    if limit == 0 {
        return 0;
    }
    let words = if limit >> WORD_BITS == 0 { 1 } else { 2 };
    let bit_len = 128 - limit.leading_zeros();
    let mut msw_bits = bit_len % WORD_BITS;
    if msw_bits == 0 {
        msw_bits = WORD_BITS;
    }
    let msw_mask: u64 = if msw_bits == WORD_BITS {
        u64::MAX
    } else {
        (1u64 << msw_bits) - 1
    };

    loop {
        let mut value: [u64; 2] = [0; 2];
        for word in value.iter_mut().take(words) {
            let low = u64::from(rng.uint32());
            let high = u64::from(rng.uint32());
            *word = low | (high << 32);
        }
        value[words - 1] &= msw_mask;
        let candidate = u128::from(value[0]) | (u128::from(value[1]) << WORD_BITS);
        if candidate < limit {
            return candidate;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::big_int_rand;
    use crate::go::fnv::fnv1_32;
    use crate::go::rand::GoRand;

    /// `new(big.Int).Rand(rand.New(rand.NewSource(int64(fnv32(name)))), big.NewInt(n))`, printed by
    /// Go 1.19 on amd64. Limits that are not powers of two (1000) exercise the retry loop.
    #[test]
    fn matches_go_for_node_name_seeds() {
        let cases: &[(&str, u128, u128)] = &[
            ("", 1024, 271),
            ("", 4096, 3256),
            ("", 16, 15),
            ("", 1000, 88),
            ("a", 1024, 294),
            ("a", 4096, 2537),
            ("a", 16, 6),
            ("kube-0", 1024, 581),
            ("kube-0", 4096, 1315),
            ("kube-0", 16, 5),
            ("kube-0", 1000, 581),
            ("kube-1", 1024, 505),
            ("kube-1", 4096, 3297),
            ("kube-1", 16, 1),
            ("kube-1", 1000, 225),
            ("node1", 1024, 666),
            ("kubelab-worker", 4096, 533),
            ("kubelab-worker", 16, 0),
        ];
        for &(name, limit, want) in cases {
            let mut rng = GoRand::new(i64::from(fnv1_32(name.as_bytes())));
            assert_eq!(big_int_rand(&mut rng, limit), want, "{name:?} n={limit}");
        }
    }

    #[test]
    fn limit_one_and_zero_give_zero() {
        let mut rng = GoRand::new(7);
        assert_eq!(big_int_rand(&mut rng, 1), 0);
        assert_eq!(big_int_rand(&mut rng, 0), 0);
    }

    /// Each try consumes exactly two `Uint32` draws per 64-bit word: after one accepted try with a
    /// one-word limit, the generator is where two `Uint32` calls would leave it.
    #[test]
    fn one_word_try_consumes_two_uint32_draws() {
        let mut via_big = GoRand::new(99);
        let _ = big_int_rand(&mut via_big, 1 << 40);
        let mut by_hand = GoRand::new(99);
        let low = u64::from(by_hand.uint32());
        let high = u64::from(by_hand.uint32());
        let mut fresh = GoRand::new(99);
        assert_eq!(
            big_int_rand(&mut fresh, 1 << 40),
            u128::from((low | high << 32) & ((1 << 40) - 1))
        );
        assert_eq!(via_big.int63(), by_hand.int63());
    }

    #[test]
    fn two_word_limits_stay_below_the_limit() {
        let mut rng = GoRand::new(3);
        let limit: u128 = (1 << 64) + 12345;
        for _ in 0..50 {
            assert!(big_int_rand(&mut rng, limit) < limit);
        }
    }
}
