//! Go's `math/rand` as `rand.New(rand.NewSource(seed))` builds it: Go 1's `rngSource` (an additive
//! lagged Fibonacci generator over 607 words with tap 273, seeded through the Park–Miller style
//! `seedrand` and xored with the `rngCooked` table) and the `Rand` methods Calico's block search
//! reaches: `Int63`, `Uint32`, `Uint64`, plus `Int63n` for the regression table.
//!
//! Ported from Go's `src/math/rand/rng.go` and `rand.go`; the golden values are Go's own
//! `src/math/rand/regress_test.go` (seed 0, every method reseeded before its 20 calls).

use super::rng_cooked::RNG_COOKED;

const RNG_LEN: usize = 607;
const RNG_TAP: usize = 273;
const RNG_MASK: u64 = (1 << 63) - 1;
const INT32_MAX: i64 = (1 << 31) - 1;
/// Go replaces a zero seed (after reduction) with this value.
const ZERO_SEED_REPLACEMENT: i64 = 89_482_311;

/// One step of Go's `seedrand`: x[n+1] = 48271 * x[n] mod (2**31 - 1), in Schrage's form so that
/// it stays in 32-bit arithmetic. Go's int32 arithmetic wraps, so this uses wrapping operations.
fn seedrand(x: i32) -> i32 {
    const A: i32 = 48_271;
    const Q: i32 = 44_488;
    const R: i32 = 3_399;
    let hi = x.wrapping_div(Q);
    let lo = x.wrapping_rem(Q);
    let mut next = A.wrapping_mul(lo).wrapping_sub(R.wrapping_mul(hi));
    if next < 0 {
        next = next.wrapping_add(INT32_MAX as i32);
    }
    next
}

/// Go's `rngSource`: the state behind `rand.NewSource(seed)`.
#[derive(Clone)]
pub struct RngSource {
    tap: usize,
    feed: usize,
    vec: [i64; RNG_LEN],
}

impl std::fmt::Debug for RngSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RngSource")
            .field("tap", &self.tap)
            .field("feed", &self.feed)
            .finish_non_exhaustive()
    }
}

impl RngSource {
    /// `rand.NewSource(seed)`.
    pub fn new(seed: i64) -> Self {
        let mut source = RngSource {
            tap: 0,
            feed: 0,
            vec: [0; RNG_LEN],
        };
        source.seed(seed);
        source
    }

    /// `(*rngSource).Seed`: any int64 is reduced modulo 2**31-1 (Go's truncating `%`, then made
    /// non-negative); zero becomes 89482311.
    pub fn seed(&mut self, seed: i64) {
        self.tap = 0;
        self.feed = RNG_LEN - RNG_TAP;

        let mut seed = seed % INT32_MAX;
        if seed < 0 {
            seed += INT32_MAX;
        }
        if seed == 0 {
            seed = ZERO_SEED_REPLACEMENT;
        }

        // In range 1..2**31-1 now, so the conversion is exact.
        let mut x = seed as i32;
        // Go runs the generator 20 times before filling the vector (i from -20).
        for _ in 0..20 {
            x = seedrand(x);
        }
        for (slot, cooked) in self.vec.iter_mut().zip(RNG_COOKED) {
            x = seedrand(x);
            // Go's int64 shifts drop the bits shifted out; Rust's `<<` does the same.
            let mut word = i64::from(x) << 40;
            x = seedrand(x);
            word ^= i64::from(x) << 20;
            x = seedrand(x);
            word ^= i64::from(x);
            *slot = word ^ cooked;
        }
    }

    /// `(*rngSource).Uint64`: one step of the lagged Fibonacci generator (wrapping int64 add).
    pub fn uint64(&mut self) -> u64 {
        self.tap = if self.tap == 0 {
            RNG_LEN - 1
        } else {
            self.tap - 1
        };
        self.feed = if self.feed == 0 {
            RNG_LEN - 1
        } else {
            self.feed - 1
        };
        let next = self.vec[self.feed].wrapping_add(self.vec[self.tap]);
        self.vec[self.feed] = next;
        next as u64
    }

    /// `(*rngSource).Int63`: the low 63 bits of the next word.
    pub fn int63(&mut self) -> i64 {
        (self.uint64() & RNG_MASK) as i64
    }
}

/// Go's `*rand.Rand` over an [`RngSource`] (`rand.New(rand.NewSource(seed))`).
#[derive(Debug, Clone)]
pub struct GoRand {
    source: RngSource,
}

impl GoRand {
    /// `rand.New(rand.NewSource(seed))`.
    pub fn new(seed: i64) -> Self {
        GoRand {
            source: RngSource::new(seed),
        }
    }

    /// `(*Rand).Seed`.
    pub fn seed(&mut self, seed: i64) {
        self.source.seed(seed);
    }

    /// `(*Rand).Int63`.
    pub fn int63(&mut self) -> i64 {
        self.source.int63()
    }

    /// `(*Rand).Uint32`: the top 32 of the 63 bits, `uint32(r.Int63() >> 31)`.
    pub fn uint32(&mut self) -> u32 {
        (self.int63() >> 31) as u32
    }

    /// `(*Rand).Uint64`: `rngSource` is a `Source64`, so this is the source's full 64-bit word.
    pub fn uint64(&mut self) -> u64 {
        self.source.uint64()
    }

    /// `(*Rand).Int63n`: uniform in `[0, n)`. Go panics when `n <= 0`; this returns `None`.
    pub fn int63n(&mut self, n: i64) -> Option<i64> {
        if n <= 0 {
            return None;
        }
        if n & (n - 1) == 0 {
            return Some(self.int63() & (n - 1));
        }
        // Largest multiple of n that fits, minus one: values above it are rejected to avoid bias.
        let max = ((1u64 << 63) - 1 - (1u64 << 63) % n as u64) as i64;
        let mut value = self.int63();
        while value > max {
            value = self.int63();
        }
        Some(value % n)
    }
}

#[cfg(test)]
mod tests {
    use super::GoRand;

    /// Go's regress_test.go: `r.Seed(0)` then 20 calls of `Int63()`.
    const GOLDEN_INT63_SEED0: [i64; 20] = [
        8717895732742165505,
        2259404117704393152,
        6050128673802995827,
        501233450539197794,
        3390393562759376202,
        2669985732393126063,
        1774932891286980153,
        6044372234677422456,
        8274930044578894929,
        1543572285742637646,
        2661732831099943416,
        8325060299420976708,
        7837839688282259259,
        2518412263346885298,
        5617773211005988520,
        2339563716805116249,
        7144924247938981575,
        161231572858529631,
        7259475919510918339,
        7373105480197164748,
    ];

    /// Go's regress_test.go: `r.Seed(0)` then 20 calls of `Uint32()`.
    const GOLDEN_UINT32_SEED0: [u32; 20] = [
        4059586549, 1052117029, 2817310706, 233405013, 1578775030, 1243308993, 826517535,
        2814630155, 3853314576, 718781857, 1239465936, 3876658295, 3649778518, 1172727096,
        2615979505, 1089444252, 3327114623, 75079301, 3380456901, 3433369789,
    ];

    /// Go's regress_test.go: `r.Seed(0)` then 20 calls of `Uint64()`.
    const GOLDEN_UINT64_SEED0: [u64; 20] = [
        8717895732742165505,
        2259404117704393152,
        6050128673802995827,
        9724605487393973602,
        12613765599614152010,
        11893357769247901871,
        1774932891286980153,
        15267744271532198264,
        17498302081433670737,
        1543572285742637646,
        11885104867954719224,
        17548432336275752516,
        7837839688282259259,
        2518412263346885298,
        5617773211005988520,
        11562935753659892057,
        16368296284793757383,
        161231572858529631,
        16482847956365694147,
        16596477517051940556,
    ];

    /// Go's regress_test.go: `r.Seed(0)` then 20 calls of `Int63n(arg)`, the argument cycling
    /// through the test's `int64s` list. Pairs are (argument, result).
    const GOLDEN_INT63N_SEED0: [(i64, i64); 20] = [
        (1, 0),
        (10, 2),
        (32, 19),
        (1048576, 959842),
        (1048577, 688912),
        (1000000000, 393126063),
        (1073741824, 89212473),
        (2147483646, 834026388),
        (2147483647, 1577188963),
        (1000000000000000000, 543572285742637646),
        (1152921504606846976, 355889821886249464),
        (9223372036854775806, 8325060299420976708),
        (9223372036854775807, 7837839688282259259),
        (1, 0),
        (10, 0),
        (32, 25),
        (1048576, 679623),
        (1048577, 882178),
        (1000000000, 510918339),
        (1073741824, 782454476),
    ];

    #[test]
    fn int63_matches_go_regression_table() {
        let mut rng = GoRand::new(0);
        let got: Vec<i64> = (0..20).map(|_| rng.int63()).collect();
        assert_eq!(got, GOLDEN_INT63_SEED0);
    }

    #[test]
    fn uint32_matches_go_regression_table() {
        let mut rng = GoRand::new(0);
        let got: Vec<u32> = (0..20).map(|_| rng.uint32()).collect();
        assert_eq!(got, GOLDEN_UINT32_SEED0);
    }

    #[test]
    fn uint64_matches_go_regression_table() {
        let mut rng = GoRand::new(0);
        let got: Vec<u64> = (0..20).map(|_| rng.uint64()).collect();
        assert_eq!(got, GOLDEN_UINT64_SEED0);
    }

    #[test]
    fn int63n_matches_go_regression_table() {
        let mut rng = GoRand::new(0);
        for (arg, want) in GOLDEN_INT63N_SEED0 {
            assert_eq!(rng.int63n(arg), Some(want), "Int63n({arg})");
        }
    }

    #[test]
    fn int63n_rejects_non_positive_bound() {
        let mut rng = GoRand::new(0);
        assert_eq!(rng.int63n(0), None);
        assert_eq!(rng.int63n(-3), None);
    }

    /// Seeds that take the other branches of `Seed`: negative, above 2**31-1, exactly 2**31-1
    /// (reduces to 0, so it must behave like seed 0). Values printed by Go 1.19.
    #[test]
    fn seed_reduction_matches_go() {
        let mut negative = GoRand::new(-5);
        assert_eq!(negative.int63(), 1811683815564572222);
        assert_eq!(negative.int63(), 4427849682616757295);
        assert_eq!(negative.uint32(), 87621835);

        let mut large = GoRand::new((1 << 40) + 7);
        assert_eq!(large.int63(), 3978647029347767025);
        assert_eq!(large.uint64(), 4266504305799241910);

        let mut int32_max = GoRand::new((1 << 31) - 1);
        assert_eq!(int32_max.int63(), GOLDEN_INT63_SEED0[0]);
    }

    /// The table itself: spot-check words at both ends against Go's rng.go.
    #[test]
    fn cooked_table_ends_match_go_source() {
        use super::super::rng_cooked::RNG_COOKED;
        assert_eq!(RNG_COOKED[0], -4181792142133755926);
        assert_eq!(RNG_COOKED[1], -4576982950128230565);
        assert_eq!(RNG_COOKED[606], 4152330101494654406);
    }

    /// Every word of the cooked table feeds the output within 607 steps, so 2000 outputs cover
    /// the whole table. Values printed by Go 1.19 for `rand.New(rand.NewSource(1))`.
    #[test]
    fn long_run_covers_the_whole_cooked_table() {
        let mut rng = GoRand::new(1);
        let folded = (0..2000).fold(0u64, |acc, _| acc ^ rng.uint64());
        assert_eq!(folded, 9287202762650167211);
        assert_eq!(rng.int63(), 9063312149032726106);
    }

    #[test]
    fn reseeding_restarts_the_sequence() {
        let mut rng = GoRand::new(42);
        let first: Vec<i64> = (0..5).map(|_| rng.int63()).collect();
        rng.seed(42);
        let again: Vec<i64> = (0..5).map(|_| rng.int63()).collect();
        assert_eq!(first, again);
    }
}
