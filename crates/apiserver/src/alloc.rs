//! Service ClusterIP and NodePort allocation, like kube-apiserver's bitmap allocators: a value
//! requested explicitly is honoured if free and in range; otherwise one is picked at random,
//! first from the upper "dynamic" band and only then from the lower "static" band, so that
//! values people choose by hand (in the static band) rarely collide with automatic ones.
//! The allocators are pure in-memory state, rebuilt from the stored Services at startup.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// Why a requested value could not be had; worded like upstream's allocator errors.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    #[error("provided IP is already allocated")]
    IpAllocated,
    #[error("the provided IP ({ip}) is not in the valid range. The range of valid IPs is {range}")]
    IpOutOfRange { ip: String, range: String },
    #[error("range is full")]
    IpRangeFull,
    #[error("provided port is already allocated")]
    PortAllocated,
    #[error("provided port is not in the valid range. The range of valid ports is {range}")]
    PortOutOfRange { range: String },
    #[error("range is full")]
    PortRangeFull,
}

/// A set of `size` values, numbered by offset, with random choice in the dynamic band.
#[derive(Clone, Debug)]
struct Band {
    size: u32,
    /// Offsets below this form the static band.
    dynamic_from: u32,
    used: BTreeSet<u32>,
}

impl Band {
    fn new(size: u32, dynamic_from: u32) -> Band {
        Band {
            size,
            dynamic_from: dynamic_from.min(size),
            used: BTreeSet::new(),
        }
    }

    /// A free offset in `lo..hi`, starting at a random point and scanning upwards with wrap-around.
    fn pick_in(&self, lo: u32, hi: u32, random: u64) -> Option<u32> {
        if lo >= hi {
            return None;
        }
        let span = hi - lo;
        let start = (random % span as u64) as u32;
        (0..span)
            .map(|i| lo + (start + i) % span)
            .find(|o| !self.used.contains(o))
    }

    fn allocate_next(&mut self, random: u64) -> Option<u32> {
        let o = self
            .pick_in(self.dynamic_from, self.size, random)
            .or_else(|| self.pick_in(0, self.dynamic_from, random))?;
        self.used.insert(o);
        Some(o)
    }
}

/// Upstream's dynamic band offset: `min(max(min, size / step), max)`.
fn band_offset(size: u32, min: u32, step: u32, max: u32) -> u32 {
    (size / step).clamp(min, max)
}

/// ClusterIPs from an IPv4 CIDR such as 10.96.0.0/12. The network and broadcast addresses are
/// never handed out, so offset 0 is the first usable address (10.96.0.1).
#[derive(Clone, Debug)]
pub struct ClusterIpAllocator {
    network: u32,
    prefix_len: u8,
    band: Band,
}

impl ClusterIpAllocator {
    pub fn new(cidr: &str) -> Result<ClusterIpAllocator, String> {
        let (addr, len) = cidr
            .split_once('/')
            .ok_or_else(|| format!("{cidr:?} is not a CIDR"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("{cidr:?} is not an IPv4 CIDR"))?;
        let prefix_len: u8 = len
            .parse()
            .map_err(|_| format!("{cidr:?} has an invalid prefix length"))?;
        if !(8..=30).contains(&prefix_len) {
            return Err(format!(
                "service CIDR {cidr} must have a prefix length between 8 and 30"
            ));
        }
        let mask = u32::MAX << (32 - prefix_len);
        let network = u32::from(addr) & mask;
        let size = (1u32 << (32 - prefix_len)) - 2;
        Ok(ClusterIpAllocator {
            network,
            prefix_len,
            band: Band::new(size, band_offset(size, 16, 16, 256)),
        })
    }

    pub fn cidr(&self) -> String {
        format!("{}/{}", Ipv4Addr::from(self.network), self.prefix_len)
    }

    /// The address at `offset` from the first usable one: `nth(0)` is the `kubernetes` Service's.
    pub fn nth(&self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.network + 1 + offset)
    }

    fn offset_of(&self, ip: &str) -> Result<u32, AllocError> {
        let out_of_range = || AllocError::IpOutOfRange {
            ip: ip.to_string(),
            range: self.cidr(),
        };
        let parsed: Ipv4Addr = ip.parse().map_err(|_| out_of_range())?;
        let v = u32::from(parsed);
        if v <= self.network || v - self.network > self.band.size {
            return Err(out_of_range());
        }
        Ok(v - self.network - 1)
    }

    /// Claims a specific address.
    pub fn allocate(&mut self, ip: &str) -> Result<(), AllocError> {
        let o = self.offset_of(ip)?;
        if !self.band.used.insert(o) {
            return Err(AllocError::IpAllocated);
        }
        Ok(())
    }

    /// Claims a free address; `random` is the caller's randomness, so tests are deterministic.
    pub fn allocate_next(&mut self, random: u64) -> Result<Ipv4Addr, AllocError> {
        self.band
            .allocate_next(random)
            .map(|o| self.nth(o))
            .ok_or(AllocError::IpRangeFull)
    }

    pub fn release(&mut self, ip: &str) {
        if let Ok(o) = self.offset_of(ip) {
            self.band.used.remove(&o);
        }
    }

    pub fn is_allocated(&self, ip: &str) -> bool {
        self.offset_of(ip)
            .map(|o| self.band.used.contains(&o))
            .unwrap_or(false)
    }
}

/// NodePorts from a range such as 30000-32767.
#[derive(Clone, Debug)]
pub struct NodePortAllocator {
    base: u16,
    band: Band,
}

impl NodePortAllocator {
    /// `range` is `first-last`, inclusive, as `--service-node-port-range` takes it.
    pub fn new(range: &str) -> Result<NodePortAllocator, String> {
        let (a, b) = range
            .split_once('-')
            .ok_or_else(|| format!("{range:?} is not a port range like 30000-32767"))?;
        let first: u16 = a
            .trim()
            .parse()
            .map_err(|_| format!("{range:?}: bad first port"))?;
        let last: u16 = b
            .trim()
            .parse()
            .map_err(|_| format!("{range:?}: bad last port"))?;
        if first == 0 || last < first {
            return Err(format!("{range:?} is not a valid port range"));
        }
        let size = (last - first) as u32 + 1;
        Ok(NodePortAllocator {
            base: first,
            band: Band::new(size, band_offset(size, 16, 32, 128)),
        })
    }

    pub fn range(&self) -> String {
        format!("{}-{}", self.base, self.base as u32 + self.band.size - 1)
    }

    fn offset_of(&self, port: i64) -> Result<u32, AllocError> {
        let o = port - self.base as i64;
        if o < 0 || o >= self.band.size as i64 {
            return Err(AllocError::PortOutOfRange {
                range: self.range(),
            });
        }
        Ok(o as u32)
    }

    pub fn allocate(&mut self, port: i64) -> Result<(), AllocError> {
        let o = self.offset_of(port)?;
        if !self.band.used.insert(o) {
            return Err(AllocError::PortAllocated);
        }
        Ok(())
    }

    pub fn allocate_next(&mut self, random: u64) -> Result<u16, AllocError> {
        self.band
            .allocate_next(random)
            .map(|o| self.base + o as u16)
            .ok_or(AllocError::PortRangeFull)
    }

    pub fn release(&mut self, port: i64) {
        if let Ok(o) = self.offset_of(port) {
            self.band.used.remove(&o);
        }
    }

    pub fn is_allocated(&self, port: i64) -> bool {
        self.offset_of(port)
            .map(|o| self.band.used.contains(&o))
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_address_is_the_kubernetes_service() {
        let a = ClusterIpAllocator::new("10.96.0.0/12").unwrap();
        assert_eq!(a.nth(0).to_string(), "10.96.0.1");
        assert_eq!(a.cidr(), "10.96.0.0/12");
    }

    #[test]
    fn dynamic_allocation_stays_in_the_upper_band() {
        let mut a = ClusterIpAllocator::new("10.96.0.0/12").unwrap();
        for r in [0u64, 1, 12345, u64::MAX] {
            let ip = a.allocate_next(r).unwrap();
            let offset = u32::from(ip) - u32::from("10.96.0.1".parse::<Ipv4Addr>().unwrap());
            assert!(offset >= 256, "{ip} is in the static band");
            assert!(a.is_allocated(&ip.to_string()));
        }
        let mut p = NodePortAllocator::new("30000-32767").unwrap();
        for r in 0..100 {
            let port = p.allocate_next(r * 7919).unwrap();
            assert!((30086..=32767).contains(&port), "{port}");
        }
    }

    #[test]
    fn explicit_values_are_checked() {
        let mut a = ClusterIpAllocator::new("10.96.0.0/12").unwrap();
        a.allocate("10.96.0.10").unwrap();
        assert_eq!(a.allocate("10.96.0.10"), Err(AllocError::IpAllocated));
        let e = a.allocate("10.0.0.1").unwrap_err();
        assert_eq!(
            e.to_string(),
            "the provided IP (10.0.0.1) is not in the valid range. The range of valid IPs is 10.96.0.0/12"
        );
        assert!(a.allocate("10.96.0.0").is_err(), "network address");
        assert!(a.allocate("10.111.255.255").is_err(), "broadcast address");
        a.release("10.96.0.10");
        a.allocate("10.96.0.10").unwrap();

        let mut p = NodePortAllocator::new("30000-32767").unwrap();
        p.allocate(30080).unwrap();
        assert_eq!(p.allocate(30080), Err(AllocError::PortAllocated));
        assert_eq!(
            p.allocate(80).unwrap_err().to_string(),
            "provided port is not in the valid range. The range of valid ports is 30000-32767"
        );
    }

    #[test]
    fn a_full_range_says_so_and_falls_back_to_the_static_band() {
        let mut p = NodePortAllocator::new("30000-30019").unwrap();
        let mut got: Vec<u16> = (0..20).map(|r| p.allocate_next(r).unwrap()).collect();
        got.sort();
        assert_eq!(got, (30000..30020).collect::<Vec<_>>());
        assert_eq!(p.allocate_next(0), Err(AllocError::PortRangeFull));
    }
}
