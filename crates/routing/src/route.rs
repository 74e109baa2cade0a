//! One IPv4 route of the main table as a value: what `ip route` prints and `ip -j route` dumps.
//!
//! This module owns the exact text form of a route (iproute2 6.1 `print_route`), its JSON form
//! (`ip -j route show`), the kernel's dump order, and the rule that says which routes the node
//! agent may touch ([`is_managed`]). It knows nothing about clusters.
//!
//! Text form, field by field in the order iproute2 prints them: the type unless unicast, the
//! destination (`default` for 0.0.0.0/0, a bare address for a /32), `via`, `dev`, `proto` unless
//! `boot`, `scope` unless `global`, `src`, `metric` unless 0, then the `onlink` flag. `ip route`
//! ends every field with a space, so a real line carries one trailing space that [`Route`]'s
//! `Display` leaves out: compare trimmed lines.
//!
//! Identity: two routes are equal when every field here is equal. The kernel's `linkdown` and
//! `dead` flags (a nexthop device without carrier, e.g. a TUN nobody reads) describe the state of
//! a device rather than the route, so they are not fields and [`parse_ip_json`] drops them.
//! Attributes this model does not carry (multipath `nexthops`, `nhid`, `mtu` and other metrics,
//! `tos`, `realms`, an IPv6 `via` of an IPv4 route) are ignored by the parser.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde_json::Value;

use crate::RoutingError;

/// Where a route leads: an IPv4 prefix whose host bits are zero, as the kernel requires.
///
/// `Ord` is the order in which the kernel's FIB trie dumps routes (checked against Linux in
/// `tests/kernel.rs`): by network address ascending, and for the same address the longer prefix
/// first, because a trie leaf keeps its aliases sorted by suffix length. So `default` is first
/// only while no other 0.0.0.0/n route exists: `0.0.0.0/8` would come before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Destination {
    network: Ipv4Addr,
    prefix_len: u8,
}

impl Destination {
    /// 0.0.0.0/0, printed `default`.
    pub const DEFAULT: Destination = Destination {
        network: Ipv4Addr::UNSPECIFIED,
        prefix_len: 0,
    };

    /// The prefix `address/prefix_len` with its host bits cleared (the kernel rejects a prefix
    /// with host bits set); `None` when `prefix_len` exceeds 32.
    pub fn new(address: Ipv4Addr, prefix_len: u8) -> Option<Destination> {
        if prefix_len > 32 {
            return None;
        }
        Some(Destination {
            network: Ipv4Addr::from(u32::from(address) & mask(prefix_len)),
            prefix_len,
        })
    }

    /// A single address, `address/32`.
    pub fn host(address: Ipv4Addr) -> Destination {
        Destination {
            network: address,
            prefix_len: 32,
        }
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Whether `address` lies inside this prefix.
    pub fn contains(&self, address: Ipv4Addr) -> bool {
        u32::from(address) & mask(self.prefix_len) == u32::from(self.network)
    }
}

/// The netmask of a prefix length (at most 32) as a number.
pub(crate) fn mask(prefix_len: u8) -> u32 {
    match prefix_len {
        0 => 0,
        len => u32::MAX << (32 - u32::from(len.min(32))),
    }
}

impl Ord for Destination {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        u32::from(self.network)
            .cmp(&u32::from(other.network))
            .then(other.prefix_len.cmp(&self.prefix_len))
    }
}

impl PartialOrd for Destination {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.prefix_len {
            0 if self.network.is_unspecified() => f.write_str("default"),
            32 => write!(f, "{}", self.network),
            len => write!(f, "{}/{len}", self.network),
        }
    }
}

impl FromStr for Destination {
    type Err = RoutingError;

    /// Accepts what iproute2 prints: `default`, `a.b.c.d` or `a.b.c.d/len`. Host bits are
    /// cleared rather than refused, as `ip route add` would refuse them anyway.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || RoutingError::InvalidDestination(text.to_owned());
        if text == "default" {
            return Ok(Destination::DEFAULT);
        }
        let (address, prefix_len) = match text.split_once('/') {
            Some((address, len)) => (address, len.parse::<u8>().map_err(|_| invalid())?),
            None => (text, 32),
        };
        let address = address.parse::<Ipv4Addr>().map_err(|_| invalid())?;
        Destination::new(address, prefix_len).ok_or_else(invalid)
    }
}

/// The kernel's route type (`rtm_type`). Only the types a main table holds in practice are
/// named; anything else is kept under the name iproute2 printed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteType {
    Unicast,
    Blackhole,
    Unreachable,
    Prohibit,
    Throw,
    /// Any other type, by its iproute2 name (`local`, `broadcast`, `nat`, ...).
    Other(String),
}

impl RouteType {
    pub fn name(&self) -> &str {
        match self {
            RouteType::Unicast => "unicast",
            RouteType::Blackhole => "blackhole",
            RouteType::Unreachable => "unreachable",
            RouteType::Prohibit => "prohibit",
            RouteType::Throw => "throw",
            RouteType::Other(name) => name,
        }
    }

    fn from_name(name: &str) -> RouteType {
        match name {
            "unicast" => RouteType::Unicast,
            "blackhole" => RouteType::Blackhole,
            "unreachable" => RouteType::Unreachable,
            "prohibit" => RouteType::Prohibit,
            "throw" => RouteType::Throw,
            other => RouteType::Other(other.to_owned()),
        }
    }
}

/// Who installed a route (`rtm_protocol`). Printed by name when iproute2 6.1 knows one
/// (`/etc/iproute2/rt_protos` as Debian ships it), otherwise as a number: Felix's 80 prints `80`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Protocol(pub u8);

/// iproute2 6.1's protocol names (`rt_protos`); a number not listed prints as itself.
const PROTOCOL_NAMES: &[(u8, &str)] = &[
    (0, "unspec"),
    (1, "redirect"),
    (2, "kernel"),
    (3, "boot"),
    (4, "static"),
    (8, "gated"),
    (9, "ra"),
    (10, "mrt"),
    (11, "zebra"),
    (12, "bird"),
    (13, "dnrouted"),
    (14, "xorp"),
    (15, "ntk"),
    (16, "dhcp"),
    (18, "keepalived"),
    (42, "babel"),
    (99, "openr"),
    (186, "bgp"),
    (187, "isis"),
    (188, "ospf"),
    (189, "rip"),
    (192, "eigrp"),
];

impl Protocol {
    /// Added by the kernel for an address's connected prefix.
    pub const KERNEL: Protocol = Protocol(2);
    /// The default of `ip route add`; not printed. Calico's workload and VXLAN routes use it.
    pub const BOOT: Protocol = Protocol(3);
    pub const STATIC: Protocol = Protocol(4);
    /// BIRD's routes in Calico's BGP modes.
    pub const BIRD: Protocol = Protocol(12);
    /// Felix's own protocol number (felix `dataplanedefs.DefaultRouteProto`).
    pub const FELIX: Protocol = Protocol(80);

    fn from_name(name: &str) -> Option<Protocol> {
        if let Ok(number) = name.parse::<u8>() {
            return Some(Protocol(number));
        }
        PROTOCOL_NAMES
            .iter()
            .find(|(_, known)| *known == name)
            .map(|(number, _)| Protocol(*number))
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match PROTOCOL_NAMES.iter().find(|(number, _)| *number == self.0) {
            Some((_, name)) => f.write_str(name),
            None => write!(f, "{}", self.0),
        }
    }
}

/// How far a route reaches (`rtm_scope`); `global` (0) is not printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope(pub u8);

impl Scope {
    pub const GLOBAL: Scope = Scope(0);
    pub const SITE: Scope = Scope(200);
    /// Destination directly on the link: connected prefixes and Calico's workload routes.
    pub const LINK: Scope = Scope(253);
    pub const HOST: Scope = Scope(254);
    pub const NOWHERE: Scope = Scope(255);

    fn from_name(name: &str) -> Option<Scope> {
        match name {
            "global" | "universe" => Some(Scope::GLOBAL),
            "site" => Some(Scope::SITE),
            "link" => Some(Scope::LINK),
            "host" => Some(Scope::HOST),
            "nowhere" => Some(Scope::NOWHERE),
            number => number.parse::<u8>().ok().map(Scope),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Scope::GLOBAL => f.write_str("global"),
            Scope::SITE => f.write_str("site"),
            Scope::LINK => f.write_str("link"),
            Scope::HOST => f.write_str("host"),
            Scope::NOWHERE => f.write_str("nowhere"),
            Scope(number) => write!(f, "{number}"),
        }
    }
}

/// One route of the main table.
///
/// The field order makes the derived `Ord` the kernel's dump order (destination, then metric);
/// routes equal in both are ordered by the remaining fields only to stay deterministic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Route {
    pub destination: Destination,
    /// Priority; 0 (the `ip route add` default) is not printed. Part of the kernel's key: a
    /// `replace` with another metric adds a second route.
    pub metric: u32,
    pub route_type: RouteType,
    pub gateway: Option<Ipv4Addr>,
    pub device: Option<String>,
    pub protocol: Protocol,
    pub scope: Scope,
    /// `src`: the source address the kernel prefers for traffic along this route.
    pub preferred_source: Option<Ipv4Addr>,
    /// Use the gateway as if it were on the link even when no connected prefix covers it;
    /// Calico's routes to other nodes' blocks need it.
    pub onlink: bool,
}

impl Route {
    /// A unicast route with nothing else set: protocol `boot`, scope `global`, as
    /// `ip route add <destination>` would make it before its other arguments.
    pub fn to(destination: Destination) -> Route {
        Route {
            destination,
            metric: 0,
            route_type: RouteType::Unicast,
            gateway: None,
            device: None,
            protocol: Protocol::BOOT,
            scope: Scope::GLOBAL,
            preferred_source: None,
            onlink: false,
        }
    }

    /// A route that silently drops what it matches.
    pub fn blackhole(destination: Destination) -> Route {
        Route {
            route_type: RouteType::Blackhole,
            ..Route::to(destination)
        }
    }

    pub fn via(self, gateway: Ipv4Addr) -> Route {
        Route {
            gateway: Some(gateway),
            ..self
        }
    }

    pub fn dev(self, device: &str) -> Route {
        Route {
            device: Some(device.to_owned()),
            ..self
        }
    }

    pub fn proto(self, protocol: Protocol) -> Route {
        Route { protocol, ..self }
    }

    pub fn scope(self, scope: Scope) -> Route {
        Route { scope, ..self }
    }

    pub fn src(self, preferred_source: Ipv4Addr) -> Route {
        Route {
            preferred_source: Some(preferred_source),
            ..self
        }
    }

    pub fn metric(self, metric: u32) -> Route {
        Route { metric, ..self }
    }

    pub fn onlink(self) -> Route {
        Route {
            onlink: true,
            ..self
        }
    }

    /// The `ip route` arguments for this route. With `explicit_protocol`, `proto boot` is
    /// written too: `ip route del` treats an absent protocol as "any", which could match a
    /// route of someone else's with the same destination.
    pub(crate) fn arguments(&self, explicit_protocol: bool) -> String {
        let mut text = String::new();
        if self.route_type != RouteType::Unicast {
            text.push_str(self.route_type.name());
            text.push(' ');
        }
        text.push_str(&self.destination.to_string());
        if let Some(gateway) = self.gateway {
            text.push_str(&format!(" via {gateway}"));
        }
        if let Some(device) = &self.device {
            text.push_str(&format!(" dev {device}"));
        }
        if self.protocol != Protocol::BOOT || explicit_protocol {
            text.push_str(&format!(" proto {}", self.protocol));
        }
        if self.scope != Scope::GLOBAL {
            text.push_str(&format!(" scope {}", self.scope));
        }
        if let Some(source) = self.preferred_source {
            text.push_str(&format!(" src {source}"));
        }
        if self.metric != 0 {
            text.push_str(&format!(" metric {}", self.metric));
        }
        if self.onlink {
            text.push_str(" onlink");
        }
        text
    }
}

impl fmt::Display for Route {
    /// Exactly one line of `ip route` (iproute2 6.1) without its trailing space.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arguments(false))
    }
}

/// The routes one per line, each ending in `\n`, as `ip route` prints them (less the trailing
/// spaces): what `kubelab routes --predict` shows.
pub fn render(routes: &[Route]) -> String {
    routes.iter().map(|route| format!("{route}\n")).collect()
}

/// Device of the lab's underlay (the node's own interface).
pub const UNDERLAY_DEVICE: &str = "eth0";
/// Calico's IPIP tunnel device.
pub const IPIP_DEVICE: &str = "tunl0";
/// Calico's VXLAN tunnel device.
pub const VXLAN_DEVICE: &str = "vxlan.calico";
/// Prefix of the host side of every workload veth.
pub const WORKLOAD_DEVICE_PREFIX: &str = "cali";

/// Whether the node agent owns this route (and may replace or delete it): anything with
/// Felix's protocol 80, any blackhole, anything through a Calico tunnel device, and a /32 on a
/// `cali*` workload veth; never a route with protocol `bird`, which BIRD's kernel protocol
/// owns in `--routing bgp` labs. The rest (the connected prefix, the default route) is the
/// lab's underlay, which the agent never touches.
pub fn is_managed(route: &Route) -> bool {
    let device = route.device.as_deref().unwrap_or("");
    if route.protocol == Protocol::BIRD {
        // BIRD's own (`--routing bgp`): its kernel protocol owns them, the agent never touches them.
        return false;
    }
    route.protocol == Protocol::FELIX
        || route.route_type == RouteType::Blackhole
        || device == IPIP_DEVICE
        || device == VXLAN_DEVICE
        || (route.destination.prefix_len() == 32 && device.starts_with(WORKLOAD_DEVICE_PREFIX))
}

/// Parses `ip -j route show` (iproute2 6.1) into routes, in the order given.
///
/// The JSON leaves out what the text leaves out: no `protocol` means `boot`, no `scope` means
/// `global`, no `type` means unicast, no `metric` means 0. Flags other than `onlink` are
/// dropped (see the module comment); so are attributes this model has no field for.
pub fn parse_ip_json(text: &str) -> Result<Vec<Route>, RoutingError> {
    let value: Value = serde_json::from_str(text).map_err(RoutingError::Json)?;
    let entries = value.as_array().ok_or(RoutingError::NotAnArray)?;
    entries
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            parse_entry(entry).map_err(|reason| RoutingError::InvalidRoute { index, reason })
        })
        .collect()
}

fn parse_entry(entry: &Value) -> Result<Route, String> {
    let object = entry.as_object().ok_or("not a JSON object")?;
    let text = |key: &str| -> Result<Option<&str>, String> {
        match object.get(key) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(other) => Err(format!("{key:?} is not a string: {other}")),
        }
    };
    let address = |key: &str| -> Result<Option<Ipv4Addr>, String> {
        text(key)?
            .map(|text| {
                text.parse::<Ipv4Addr>()
                    .map_err(|_| format!("{key:?} is not an IPv4 address: {text:?}"))
            })
            .transpose()
    };

    let destination = text("dst")?.ok_or("no \"dst\"")?;
    let destination = destination
        .parse::<Destination>()
        .map_err(|error| error.to_string())?;
    let mut route = Route::to(destination);
    if let Some(name) = text("type")? {
        route.route_type = RouteType::from_name(name);
    }
    route.gateway = address("gateway")?;
    route.device = text("dev")?.map(str::to_owned);
    if let Some(name) = text("protocol")? {
        route.protocol =
            Protocol::from_name(name).ok_or_else(|| format!("unknown protocol {name:?}"))?;
    }
    if let Some(name) = text("scope")? {
        route.scope = Scope::from_name(name).ok_or_else(|| format!("unknown scope {name:?}"))?;
    }
    route.preferred_source = address("prefsrc")?;
    if let Some(metric) = object.get("metric") {
        route.metric = metric
            .as_u64()
            .and_then(|metric| u32::try_from(metric).ok())
            .ok_or_else(|| format!("\"metric\" is not a 32-bit number: {metric}"))?;
    }
    if let Some(flags) = object.get("flags") {
        let flags = flags.as_array().ok_or("\"flags\" is not an array")?;
        route.onlink = flags.iter().any(|flag| flag.as_str() == Some("onlink"));
    }
    Ok(route)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    fn dst(text: &str) -> Destination {
        text.parse().unwrap()
    }

    #[test]
    fn destinations_print_like_iproute2() {
        assert_eq!(Destination::DEFAULT.to_string(), "default");
        assert_eq!(dst("0.0.0.0/8").to_string(), "0.0.0.0/8");
        assert_eq!(dst("192.168.145.65/32").to_string(), "192.168.145.65");
        assert_eq!(dst("192.168.145.65").to_string(), "192.168.145.65");
        assert_eq!(dst("192.168.145.77/26").to_string(), "192.168.145.64/26");
        assert!("192.168.1.0/33".parse::<Destination>().is_err());
        assert!("nonsense".parse::<Destination>().is_err());
        assert!("fe80::/64".parse::<Destination>().is_err());
    }

    #[test]
    fn destination_order_is_address_then_longer_prefix_first() {
        let mut destinations = [
            dst("default"),
            dst("192.168.145.64/26"),
            dst("0.0.0.0/8"),
            dst("192.168.145.64"),
            dst("10.10.64.0/20"),
            dst("192.168.145.65"),
        ];
        destinations.sort();
        let printed: Vec<String> = destinations.iter().map(ToString::to_string).collect();
        assert_eq!(
            printed,
            [
                "0.0.0.0/8",
                "default",
                "10.10.64.0/20",
                "192.168.145.64",
                "192.168.145.64/26",
                "192.168.145.65"
            ]
        );
    }

    #[test]
    fn routes_print_like_iproute2() {
        let cases = [
            (
                Route::to(Destination::DEFAULT)
                    .via(ip("10.10.64.1"))
                    .dev("eth0"),
                "default via 10.10.64.1 dev eth0",
            ),
            (
                Route::to(dst("10.10.64.0/20"))
                    .dev("eth0")
                    .proto(Protocol::KERNEL)
                    .scope(Scope::LINK)
                    .src(ip("10.10.68.222")),
                "10.10.64.0/20 dev eth0 proto kernel scope link src 10.10.68.222",
            ),
            (
                Route::to(dst("192.168.126.64/26"))
                    .via(ip("10.10.95.205"))
                    .dev("tunl0")
                    .proto(Protocol::FELIX)
                    .onlink(),
                "192.168.126.64/26 via 10.10.95.205 dev tunl0 proto 80 onlink",
            ),
            (
                Route::blackhole(dst("192.168.145.64/26")).proto(Protocol::BIRD),
                "blackhole 192.168.145.64/26 proto bird",
            ),
            (
                Route::to(dst("192.168.145.65"))
                    .dev("cali6edd91665ff")
                    .scope(Scope::LINK),
                "192.168.145.65 dev cali6edd91665ff scope link",
            ),
            // The field order of a fully loaded line, as iproute2 6.1 printed it here.
            (
                Route::to(dst("192.168.126.64/26"))
                    .via(ip("10.10.95.205"))
                    .dev("eth0")
                    .proto(Protocol::FELIX)
                    .src(ip("10.10.68.222"))
                    .metric(7)
                    .onlink(),
                "192.168.126.64/26 via 10.10.95.205 dev eth0 proto 80 src 10.10.68.222 metric 7 onlink",
            ),
        ];
        for (route, expected) in cases {
            assert_eq!(route.to_string(), expected);
        }
    }

    #[test]
    fn parses_the_sample_dump_of_this_machine() {
        let json = r#"[{"dst":"default","gateway":"10.10.64.1","dev":"eth0","flags":[]},{"dst":"10.10.64.0/20","dev":"eth0","protocol":"kernel","scope":"link","prefsrc":"10.10.68.222","flags":[]},{"dst":"192.168.126.64/26","gateway":"10.10.95.205","dev":"eth0","protocol":"80","flags":["onlink"]},{"type":"blackhole","dst":"192.168.145.64/26","protocol":"80","flags":[]}]"#;
        let routes = parse_ip_json(json).unwrap();
        assert_eq!(
            render(&routes),
            "default via 10.10.64.1 dev eth0\n\
             10.10.64.0/20 dev eth0 proto kernel scope link src 10.10.68.222\n\
             192.168.126.64/26 via 10.10.95.205 dev eth0 proto 80 onlink\n\
             blackhole 192.168.145.64/26 proto 80\n"
        );
    }

    #[test]
    fn linkdown_is_not_part_of_a_route() {
        let up = r#"[{"dst":"192.168.1.0/26","gateway":"10.10.95.205","dev":"tunl0","protocol":"80","flags":["onlink"]}]"#;
        let down = r#"[{"dst":"192.168.1.0/26","gateway":"10.10.95.205","dev":"tunl0","protocol":"80","flags":["onlink","linkdown"]}]"#;
        assert_eq!(parse_ip_json(up).unwrap(), parse_ip_json(down).unwrap());
    }

    #[test]
    fn parses_metrics_named_protocols_and_scopes() {
        let json = r#"[{"dst":"192.168.145.64/27","dev":"eth0","protocol":"static","scope":"host","metric":5,"flags":[]},
                       {"type":"unreachable","dst":"10.0.0.0/8","protocol":"bird","flags":[]},
                       {"type":"nat","dst":"10.1.0.0/16","protocol":"201","scope":"7"}]"#;
        let routes = parse_ip_json(json).unwrap();
        assert_eq!(
            render(&routes),
            "192.168.145.64/27 dev eth0 proto static scope host metric 5\n\
             unreachable 10.0.0.0/8 proto bird\n\
             nat 10.1.0.0/16 proto 201 scope 7\n"
        );
    }

    #[test]
    fn bad_dumps_are_errors_not_panics() {
        for bad in [
            "",
            "{}",
            "[1]",
            r#"[{"dev":"eth0"}]"#,
            r#"[{"dst":"10.0.0.0/40"}]"#,
            r#"[{"dst":"default","gateway":"fe80::1"}]"#,
            r#"[{"dst":"default","protocol":"nonsense"}]"#,
            r#"[{"dst":"default","metric":-1}]"#,
            r#"[{"dst":"default","flags":"onlink"}]"#,
            r#"[{"dst":7}]"#,
        ] {
            assert!(parse_ip_json(bad).is_err(), "{bad:?} should not parse");
        }
        assert!(matches!(
            parse_ip_json(r#"[{"dst":"default"},{"dst":"x"}]"#),
            Err(RoutingError::InvalidRoute { index: 1, .. })
        ));
    }

    #[test]
    fn managed_routes_are_calicos_and_only_calicos() {
        let managed = [
            Route::blackhole(dst("192.168.145.64/26")).proto(Protocol::FELIX),
            Route::to(dst("192.168.126.64/26"))
                .via(ip("10.10.95.205"))
                .dev("eth0")
                .proto(Protocol::FELIX)
                .onlink(),
            Route::to(dst("192.168.126.64/26"))
                .via(ip("192.168.126.64"))
                .dev("vxlan.calico")
                .onlink(),
            Route::to(dst("192.168.145.65"))
                .dev("cali6edd91665ff")
                .scope(Scope::LINK),
        ];
        let unmanaged = [
            // BIRD's, even through a tunnel device: its kernel protocol owns it.
            Route::to(dst("192.168.126.64/26"))
                .via(ip("10.10.95.205"))
                .dev("tunl0")
                .proto(Protocol::BIRD)
                .onlink(),
            Route::blackhole(dst("192.168.145.64/26")).proto(Protocol::BIRD),
            Route::to(Destination::DEFAULT)
                .via(ip("10.10.64.1"))
                .dev("eth0"),
            Route::to(dst("10.10.64.0/20"))
                .dev("eth0")
                .proto(Protocol::KERNEL)
                .scope(Scope::LINK)
                .src(ip("10.10.68.222")),
            Route::to(dst("172.17.0.0/16"))
                .dev("calico-not-a-veth")
                .proto(Protocol::KERNEL)
                .scope(Scope::LINK),
        ];
        for route in managed {
            assert!(is_managed(&route), "{route} should be managed");
        }
        for route in unmanaged {
            assert!(!is_managed(&route), "{route} should not be managed");
        }
    }
}
