//! Go's `hash/fnv` `New32`: 32-bit FNV-1 (multiply by the prime, then xor the byte).
//!
//! Calico seeds a node's block search with `int64(fnv.New32().Sum32())` of the node name. FNV-1a
//! (xor first) gives different seeds, hence a different first block; this module is FNV-1 only.

/// FNV-1 32-bit offset basis (Go's `offset32`).
const OFFSET_BASIS_32: u32 = 2_166_136_261;
/// FNV-1 32-bit prime (Go's `prime32`).
const PRIME_32: u32 = 16_777_619;

/// `fnv.New32()`, `Write(data)`, `Sum32()`.
pub fn fnv1_32(data: &[u8]) -> u32 {
    data.iter().fold(OFFSET_BASIS_32, |hash, &byte| {
        hash.wrapping_mul(PRIME_32) ^ u32::from(byte)
    })
}

#[cfg(test)]
mod tests {
    use super::fnv1_32;

    /// Values printed by Go 1.19 (`fnv.New32()` + `Write` + `Sum32`).
    #[test]
    fn matches_go_fnv_new32() {
        assert_eq!(fnv1_32(b""), 2_166_136_261);
        assert_eq!(fnv1_32(b"a"), 84_696_446);
        assert_eq!(fnv1_32(b"kube-0"), 1_201_840_949);
        assert_eq!(fnv1_32(b"kube-1"), 1_201_840_948);
        assert_eq!(fnv1_32(b"node1"), 3_957_252_814);
        assert_eq!(fnv1_32(b"kubelab-worker"), 3_242_723_806);
    }

    /// FNV-1a of "a" is 0xe40c292c; FNV-1 must differ (the order of multiply and xor matters).
    #[test]
    fn is_not_fnv1a() {
        assert_ne!(fnv1_32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1_32(b"a"), 0x050c_5d7e);
    }
}
