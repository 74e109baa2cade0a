//! Chain names exactly as upstream kube-proxy (nftables mode) spells them, so a student who reads
//! `nft list table ip kube-proxy` in kubelab sees the same names as on a real cluster.
//!
//! A name is a short hash of the readable part followed by the readable part itself:
//! `service-ULMVA6XW-ns1/svc1/tcp/p80`, `endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80`
//! (`hashAndTruncate` in `pkg/proxy/nftables/proxier.go`).

use sha2::{Digest, Sha256};

use crate::model::ServicePortName;

/// nftables refuses longer object names (knftables `NameLengthMax`).
const NFT_NAME_LENGTH_MAX: usize = 256;
/// Room upstream reserves for the longest prefix (`endpoint-`, `service-`, …) plus its hyphen.
const CHAIN_NAME_PREFIX_LENGTH_MAX: usize = 16;
/// Longest base (hash + readable part) before it is cut and ends in `...`.
const CHAIN_NAME_BASE_LENGTH_MAX: usize = NFT_NAME_LENGTH_MAX - CHAIN_NAME_PREFIX_LENGTH_MAX;

/// RFC 4648 base32 alphabet, the one Go's `base32.StdEncoding` uses.
const BASE32_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// The first eight base32 characters of SHA-256(`name`), then `-name`, cut to the length nft
/// accepts. The hash keeps names unique even when cut, and makes chains that differ in one digit
/// easy to tell apart by eye.
pub fn hash_and_truncate(name: &str) -> String {
    let digest = Sha256::digest(name.as_bytes());
    // Eight base32 characters are exactly the first 40 bits (five bytes) of the digest.
    let bits = digest[..5]
        .iter()
        .fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte));
    let mut out = String::with_capacity(9 + name.len());
    for i in (0..8).rev() {
        let index = ((bits >> (i * 5)) & 0x1f) as usize;
        out.push(char::from(BASE32_ALPHABET[index]));
    }
    out.push('-');
    out.push_str(name);
    if out.len() > CHAIN_NAME_BASE_LENGTH_MAX {
        // Inputs are validated to ASCII before they get here, so any byte index is a char
        // boundary; `floor_char_boundary` would still be correct for anything else.
        let mut cut = CHAIN_NAME_BASE_LENGTH_MAX - 3;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("...");
    }
    out
}

/// `HASH-ns/svc/proto/portname`, shared by the `service-`, `local-` and `external-` chains.
pub fn service_port_chain_base(port: &ServicePortName) -> String {
    hash_and_truncate(&format!(
        "{}/{}/{}/{}",
        port.namespace,
        port.name,
        port.protocol.as_nft(),
        port.port_name
    ))
}

/// `HASH-ns/svc/proto/portname__ip/port` for the `endpoint-` chain of one backend.
pub fn endpoint_chain_base(port: &ServicePortName, ip: std::net::Ipv4Addr, target: u16) -> String {
    hash_and_truncate(&format!(
        "{}/{}/{}/{}__{}/{}",
        port.namespace,
        port.name,
        port.protocol.as_nft(),
        port.port_name,
        ip,
        target
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_match_upstream_examples() {
        // Both examples are quoted in upstream's proxier.go doc comments.
        assert_eq!(
            hash_and_truncate("ns1/svc1/tcp/p80"),
            "ULMVA6XW-ns1/svc1/tcp/p80"
        );
        assert_eq!(
            hash_and_truncate("ns1/svc1/tcp/p80__10.180.0.1/80"),
            "5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"
        );
    }

    #[test]
    fn long_names_are_cut_to_what_nft_accepts() {
        let long = "n".repeat(300);
        let base = hash_and_truncate(&long);
        assert_eq!(base.len(), CHAIN_NAME_BASE_LENGTH_MAX);
        assert!(base.ends_with("..."));
    }
}
