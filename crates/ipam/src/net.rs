//! A CIDR value type for IPv4 and IPv6 with the operations IPAM needs: parse, display (Go's
//! `net.IPNet.String()` form), ordinal arithmetic inside a block, and Calico's object-name form
//! (`names.CIDRToName`: `192.168.145.64/26` → `192-168-145-64-26`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::IpamError;

/// A network prefix, always stored masked (host bits zero), like Go's `net.ParseCIDR` result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    network: IpAddr,
    prefix_len: u8,
}

/// Address as a 128-bit integer plus the address family's width.
fn to_bits(ip: IpAddr) -> (u128, u8) {
    match ip {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    }
}

fn from_bits(bits: u128, width: u8) -> IpAddr {
    if width == 32 {
        // Callers only pass values derived from a 32-bit network, so truncation cannot occur.
        IpAddr::V4(Ipv4Addr::from(bits as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(bits))
    }
}

impl Cidr {
    /// Calico's default IPv4 pool, `192.168.0.0/16`.
    pub const CALICO_DEFAULT_IPV4_POOL: Cidr = Cidr {
        network: IpAddr::V4(Ipv4Addr::new(192, 168, 0, 0)),
        prefix_len: 16,
    };

    /// Builds a CIDR from an address and prefix length, masking host bits.
    pub fn new(addr: IpAddr, prefix_len: u8) -> Result<Cidr, IpamError> {
        let (bits, width) = to_bits(addr);
        if prefix_len > width {
            return Err(IpamError::InvalidCidr(format!("{addr}/{prefix_len}")));
        }
        let host_bits = u32::from(width - prefix_len);
        let masked = if host_bits >= 128 {
            0
        } else {
            bits >> host_bits << host_bits
        };
        Ok(Cidr {
            network: from_bits(masked, width),
            prefix_len,
        })
    }

    /// The network address (first address of the prefix).
    pub fn network(&self) -> IpAddr {
        self.network
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// 32 for IPv4, 128 for IPv6.
    pub fn address_bits(&self) -> u8 {
        to_bits(self.network).1
    }

    pub fn is_ipv4(&self) -> bool {
        self.network.is_ipv4()
    }

    /// Number of host bits (`bits - ones`).
    pub fn host_bits(&self) -> u8 {
        self.address_bits() - self.prefix_len
    }

    /// Number of addresses, or `None` when it does not fit in `u128` (an IPv6 /0).
    pub fn num_addresses(&self) -> Option<u128> {
        1u128.checked_shl(u32::from(self.host_bits()))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let (bits, width) = to_bits(ip);
        let (network, own_width) = to_bits(self.network);
        if width != own_width {
            return false;
        }
        let host_bits = u32::from(self.host_bits());
        if host_bits >= 128 {
            return true;
        }
        bits >> host_bits == network >> host_bits
    }

    /// True when `other` lies entirely inside `self`.
    pub fn contains_cidr(&self, other: &Cidr) -> bool {
        other.prefix_len >= self.prefix_len && self.contains(other.network)
    }

    /// The `ordinal`-th address of the prefix (Calico's `NthIP` / `OrdinalToIP`).
    pub fn nth(&self, ordinal: u128) -> Option<IpAddr> {
        if ordinal >= self.num_addresses().unwrap_or(u128::MAX) {
            return None;
        }
        let (network, width) = to_bits(self.network);
        Some(from_bits(network + ordinal, width))
    }

    /// Position of `ip` inside the prefix (Calico's `IPToOrdinal`), `None` if outside.
    pub fn ordinal_of(&self, ip: IpAddr) -> Option<u128> {
        if !self.contains(ip) {
            return None;
        }
        Some(to_bits(ip).0 - to_bits(self.network).0)
    }

    /// The prefix of length `prefix_len` that contains `ip` (Calico's `getBlockCIDRForAddress`).
    pub fn containing(ip: IpAddr, prefix_len: u8) -> Result<Cidr, IpamError> {
        Cidr::new(ip, prefix_len)
    }

    /// Calico's resource-name form of a CIDR (`names.CIDRToName`): the first three `.`, the first
    /// seven `:` and the `/` become `-`.
    pub fn to_name(&self) -> String {
        let text = self.to_string();
        let text = text.replacen('.', "-", 3);
        let text = text.replacen(':', "-", 7);
        text.replacen('/', "-", 1)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

impl FromStr for Cidr {
    type Err = IpamError;

    fn from_str(text: &str) -> Result<Cidr, IpamError> {
        let invalid = || IpamError::InvalidCidr(text.to_string());
        let (addr, len) = text.split_once('/').ok_or_else(invalid)?;
        let addr: IpAddr = addr.parse().map_err(|_| invalid())?;
        let len: u8 = len.parse().map_err(|_| invalid())?;
        Cidr::new(addr, len)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Cidr, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::Cidr;
    use std::net::IpAddr;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn parses_masks_and_displays() {
        let cidr: Cidr = "192.168.145.77/26".parse().unwrap();
        assert_eq!(cidr.to_string(), "192.168.145.64/26");
        assert_eq!(cidr.num_addresses(), Some(64));
        assert!("192.168.0.0/33".parse::<Cidr>().is_err());
        assert!("192.168.0.0".parse::<Cidr>().is_err());
        assert!("fd00::/129".parse::<Cidr>().is_err());
    }

    #[test]
    fn ordinals_round_trip() {
        let cidr: Cidr = "192.168.145.64/26".parse().unwrap();
        assert_eq!(cidr.nth(0), Some(ip("192.168.145.64")));
        assert_eq!(cidr.nth(63), Some(ip("192.168.145.127")));
        assert_eq!(cidr.nth(64), None);
        assert_eq!(cidr.ordinal_of(ip("192.168.145.65")), Some(1));
        assert_eq!(cidr.ordinal_of(ip("192.168.145.128")), None);
        assert_eq!(cidr.ordinal_of(ip("fd00::1")), None);
    }

    #[test]
    fn names_like_calico() {
        let v4: Cidr = "192.168.145.64/26".parse().unwrap();
        assert_eq!(v4.to_name(), "192-168-145-64-26");
        let v6: Cidr = "fd00:10:244::40/122".parse().unwrap();
        assert_eq!(v6.to_string(), "fd00:10:244::40/122");
        assert_eq!(v6.to_name(), "fd00-10-244--40-122");
    }

    #[test]
    fn containment() {
        let pool: Cidr = "192.168.0.0/16".parse().unwrap();
        let block: Cidr = "192.168.126.64/26".parse().unwrap();
        assert!(pool.contains_cidr(&block));
        assert!(!block.contains_cidr(&pool));
        let everything: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(everything.contains(ip("10.1.2.3")));
        assert_eq!(
            Cidr::containing(ip("192.168.145.99"), 26).unwrap(),
            "192.168.145.64/26".parse().unwrap()
        );
    }
}
