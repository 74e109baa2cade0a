//! Bit-exact ports of the pieces of Go's standard library that decide which block a Calico node
//! claims first: `hash/fnv` (FNV-1, 32 bit), `math/rand` (Go 1's `rngSource` and the `Rand` methods
//! Calico's path uses) and `math/big`'s `(*Int).Rand` on a 64-bit platform.
//!
//! These modules own nothing but arithmetic: no I/O, no clock, no global state. Each is tested
//! against golden values taken from Go (its own regression table where Go has one).

pub mod big;
pub mod fnv;
pub mod rand;
mod rng_cooked;
