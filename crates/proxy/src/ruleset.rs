//! The nftables ruleset of kube-proxy's nftables mode, as data: chain name → rules, map name →
//! elements, set name → elements. [`Ruleset::render`] turns a [`ProxyState`] into it;
//! [`Ruleset::to_nft_script`] writes a script that replaces the whole table in one transaction;
//! [`Ruleset::update_script`] writes one that changes only what differs between two rulesets.
//!
//! Structure follows upstream `pkg/proxy/nftables/proxier.go` (names, hooks, priorities,
//! rule text). Left out: LoadBalancerSourceRanges (`firewall-check`), `sessionAffinity:
//! ClientIP` (`affinity-` sets), topology hints, IPv6, comments on map elements, and upstream's
//! delayed deletion of stale chains (needed only on kernels before 6.2; we delete them in the
//! same transaction as the map elements that referenced them).
//!
//! One deviation, for scale: a `service-`/`local-` chain picks its endpoint with a cascade of
//! `numgen random mod K 0 goto endpoint-…` rules instead of upstream's single
//! `numgen random mod N vmap { … }` rule, because every such inline map is a kernel set and
//! the kernel handles many sets per table quadratically. 10,000 Services × 5 endpoints via
//! `nft -f` on this machine (kernel 6.18, nft 1.0.6): anonymous vmaps 36–48 s (170 s when
//! replacing an existing table), named per-Service maps 12 s, the cascade 4.3 s. See
//! `load_balance_rules`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::model::{ProxyState, ServicePortName};
use crate::names;

/// Our table, `ip kube-proxy`, as upstream names it.
pub const TABLE: &str = "ip kube-proxy";

/// Bit 14, kube-proxy's default `--masquerade-bit`, formatted as upstream does (`%#08x`).
const MASQUERADE_MARK: &str = "0x004000";

const SERVICES_CHAIN: &str = "services";
const MARK_MASQ_CHAIN: &str = "mark-for-masquerade";
const MASQUERADING_CHAIN: &str = "masquerading";
const SERVICE_ENDPOINTS_CHECK_CHAIN: &str = "service-endpoints-check";
const NODEPORT_ENDPOINTS_CHECK_CHAIN: &str = "nodeport-endpoints-check";
const CLUSTER_IPS_CHECK_CHAIN: &str = "cluster-ips-check";
const REJECT_CHAIN: &str = "reject-chain";

const SERVICE_IPS_MAP: &str = "service-ips";
const SERVICE_NODEPORTS_MAP: &str = "service-nodeports";
const NO_ENDPOINT_SERVICES_MAP: &str = "no-endpoint-services";
const NO_ENDPOINT_NODEPORTS_MAP: &str = "no-endpoint-nodeports";
const CLUSTER_IPS_SET: &str = "cluster-ips";

/// A chain attached to a netfilter hook.
struct BaseChain {
    name: &'static str,
    spec: &'static str,
}

/// Filter chains run just before DNAT (-100) so they see the Service address the client used.
/// Upstream writes `dstnat - 10`; nft 1.0.6 (Debian 12) accepts the `dstnat` keyword only on the
/// prerouting hook, so the other priorities are numeric (same values).
const BASE_CHAINS: &[BaseChain] = &[
    BaseChain {
        name: "filter-input",
        spec: "type filter hook input priority -110 ;",
    },
    BaseChain {
        name: "filter-forward",
        spec: "type filter hook forward priority -110 ;",
    },
    BaseChain {
        name: "filter-output",
        spec: "type filter hook output priority -110 ;",
    },
    BaseChain {
        name: "filter-output-post-dnat",
        spec: "type filter hook output priority -90 ;",
    },
    BaseChain {
        name: "nat-prerouting",
        spec: "type nat hook prerouting priority dstnat ;",
    },
    BaseChain {
        name: "nat-output",
        spec: "type nat hook output priority -100 ;",
    },
    BaseChain {
        name: "nat-postrouting",
        spec: "type nat hook postrouting priority srcnat ;",
    },
];

/// Jumps from base chains to the top-level regular chains, in upstream's order.
const JUMPS: &[(&str, &str, &str)] = &[
    (
        "filter-input",
        "ct state new",
        NODEPORT_ENDPOINTS_CHECK_CHAIN,
    ),
    (
        "filter-input",
        "ct state new",
        SERVICE_ENDPOINTS_CHECK_CHAIN,
    ),
    (
        "filter-forward",
        "ct state new",
        SERVICE_ENDPOINTS_CHECK_CHAIN,
    ),
    (
        "filter-output",
        "ct state new",
        SERVICE_ENDPOINTS_CHECK_CHAIN,
    ),
    ("nat-output", "", SERVICES_CHAIN),
    ("nat-prerouting", "", SERVICES_CHAIN),
    ("nat-postrouting", "", MASQUERADING_CHAIN),
    ("filter-forward", "ct state new", CLUSTER_IPS_CHECK_CHAIN),
    (
        "filter-output-post-dnat",
        "ct state new",
        CLUSTER_IPS_CHECK_CHAIN,
    ),
];

/// Declarations of our maps (name, type, comment).
const MAPS: &[(&str, &str, &str)] = &[
    (
        NO_ENDPOINT_SERVICES_MAP,
        "ipv4_addr . inet_proto . inet_service : verdict",
        "vmap to drop or reject packets to services with no endpoints",
    ),
    (
        NO_ENDPOINT_NODEPORTS_MAP,
        "inet_proto . inet_service : verdict",
        "vmap to drop or reject packets to service nodeports with no endpoints",
    ),
    (
        SERVICE_IPS_MAP,
        "ipv4_addr . inet_proto . inet_service : verdict",
        "ClusterIP, ExternalIP and LoadBalancer IP traffic",
    ),
    (
        SERVICE_NODEPORTS_MAP,
        "inet_proto . inet_service : verdict",
        "NodePort traffic",
    ),
];

/// Declarations of our sets (name, type, comment).
const SETS: &[(&str, &str, &str)] = &[(CLUSTER_IPS_SET, "ipv4_addr", "Active ClusterIPs")];

fn base_chain_spec(name: &str) -> Option<&'static str> {
    BASE_CHAINS.iter().find(|c| c.name == name).map(|c| c.spec)
}

fn map_type(name: &str) -> Option<(&'static str, &'static str)> {
    MAPS.iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, t, c)| (*t, *c))
}

fn set_type(name: &str) -> Option<(&'static str, &'static str)> {
    SETS.iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, t, c)| (*t, *c))
}

/// The desired content of table `ip kube-proxy`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// Every chain (base and regular) with its rules in order, as nft syntax without the
    /// `add rule ip kube-proxy CHAIN` prefix.
    pub chains: BTreeMap<String, Vec<String>>,
    /// Verdict maps: map name → element key (`10.96.0.1 . tcp . 443`) → verdict (`goto …`).
    pub maps: BTreeMap<String, BTreeMap<String, String>>,
    /// Sets: set name → elements.
    pub sets: BTreeMap<String, BTreeSet<String>>,
}

/// Appends one line to a script; writing to a `String` cannot fail.
macro_rules! line {
    ($out:expr, $($arg:tt)*) => {{
        let _ = writeln!($out, $($arg)*);
    }};
}

impl Ruleset {
    /// The ruleset kube-proxy would program for `state`.
    pub fn render(state: &ProxyState) -> Ruleset {
        let mut rs = Ruleset::default();
        rs.render_fixed(state);
        for (name, port) in &state.service_ports {
            rs.render_service_port(state, name, port);
        }
        rs
    }

    /// Chains, maps and sets that exist whatever the Services are (`setupNFTables`).
    pub(crate) fn render_fixed(&mut self, state: &ProxyState) {
        for base in BASE_CHAINS {
            self.chains.insert(base.name.to_string(), Vec::new());
        }
        for (from, condition, to) in JUMPS {
            let rule = if condition.is_empty() {
                format!("jump {to}")
            } else {
                format!("{condition} jump {to}")
            };
            self.chains.entry(from.to_string()).or_default().push(rule);
            self.chains.entry(to.to_string()).or_default();
        }
        self.chain(MARK_MASQ_CHAIN)
            .push(format!("mark set mark or {MASQUERADE_MARK}"));
        self.chain(MASQUERADING_CHAIN).extend([
            format!("mark and {MASQUERADE_MARK} == 0 return"),
            format!("mark set mark xor {MASQUERADE_MARK}"),
            "masquerade fully-random".to_string(),
        ]);
        let check = self.chain(CLUSTER_IPS_CHECK_CHAIN);
        check.push(format!(
            "ip daddr @{CLUSTER_IPS_SET} reject comment \"Reject traffic to invalid ports of ClusterIPs\""
        ));
        if let Some(cidr) = state.config.service_cidr {
            check.push(format!(
                "ip daddr {{ {cidr} }} drop comment \"Drop traffic to unallocated ClusterIPs\""
            ));
        }
        self.chain(REJECT_CHAIN).push("reject".to_string());
        self.chain(SERVICE_ENDPOINTS_CHECK_CHAIN).push(format!(
            "ip daddr . meta l4proto . th dport vmap @{NO_ENDPOINT_SERVICES_MAP}"
        ));
        self.chain(NODEPORT_ENDPOINTS_CHECK_CHAIN).push(format!(
            "ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS_MAP}"
        ));
        self.chain(SERVICES_CHAIN).extend([
            format!("ip daddr . meta l4proto . th dport vmap @{SERVICE_IPS_MAP}"),
            format!(
                "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @{SERVICE_NODEPORTS_MAP}"
            ),
        ]);
        for (name, _, _) in MAPS {
            self.maps.insert(name.to_string(), BTreeMap::new());
        }
        for (name, _, _) in SETS {
            self.sets.insert(name.to_string(), BTreeSet::new());
        }
    }

    /// Adds `other` on top, as rendering its Service port after ours would: rules are appended,
    /// a map key already present takes `other`'s verdict, sets are united.
    pub(crate) fn merge(&mut self, other: &Ruleset) {
        for (name, rules) in &other.chains {
            self.chain(name).extend(rules.iter().cloned());
        }
        for (name, elements) in &other.maps {
            let map = self.map(name);
            for (key, value) in elements {
                map.insert(key.clone(), value.clone());
            }
        }
        for (name, elements) in &other.sets {
            self.sets
                .entry(name.clone())
                .or_default()
                .extend(elements.iter().cloned());
        }
    }

    fn chain(&mut self, name: &str) -> &mut Vec<String> {
        self.chains.entry(name.to_string()).or_default()
    }

    fn map(&mut self, name: &str) -> &mut BTreeMap<String, String> {
        self.maps.entry(name.to_string()).or_default()
    }

    /// One Service port: the body of upstream's per-service loop in `syncProxyRules`.
    pub(crate) fn render_service_port(
        &mut self,
        state: &ProxyState,
        name: &ServicePortName,
        port: &crate::model::ServicePortState,
    ) {
        let proto = name.protocol.as_nft();
        let base = names::service_port_chain_base(name);
        let cluster_chain = format!("service-{base}");
        let local_chain = format!("local-{base}");
        let external_chain = format!("external-{base}");
        let endpoints = port.categorize();

        let uses_cluster_chain = !endpoints.cluster.is_empty() && port.uses_cluster_endpoints();
        let uses_local_chain = !endpoints.local.is_empty() && port.uses_local_endpoints();

        let (internal_chain, has_internal) = if port.internal_policy_local {
            (
                &local_chain,
                endpoints.has_any && !endpoints.local.is_empty(),
            )
        } else {
            (&cluster_chain, endpoints.has_any)
        };
        let (external_policy_chain, has_external) = if port.external_policy_local {
            (
                &local_chain,
                endpoints.has_any && !endpoints.local.is_empty(),
            )
        } else {
            (&cluster_chain, endpoints.has_any)
        };
        let uses_external_chain = endpoints.has_any && port.externally_accessible();
        // A Service with no endpoints at all is rejected (the client gets an error at once); one
        // whose `Local` policy finds no endpoint on this node is dropped, as upstream does.
        let reject = format!("goto {REJECT_CHAIN}");
        let internal_filter = if endpoints.has_any { "drop" } else { &reject };
        let external_filter = internal_filter;

        let ip_key = |ip: std::net::Ipv4Addr| format!("{ip} . {proto} . {}", port.port);

        self.sets
            .entry(CLUSTER_IPS_SET.to_string())
            .or_default()
            .insert(port.cluster_ip.to_string());
        if has_internal {
            self.map(SERVICE_IPS_MAP)
                .insert(ip_key(port.cluster_ip), format!("goto {internal_chain}"));
        } else {
            self.map(NO_ENDPOINT_SERVICES_MAP)
                .insert(ip_key(port.cluster_ip), internal_filter.to_string());
        }
        for ip in &port.external_ips {
            if endpoints.has_any {
                self.map(SERVICE_IPS_MAP)
                    .insert(ip_key(*ip), format!("goto {external_chain}"));
            }
            if !has_external {
                self.map(NO_ENDPOINT_SERVICES_MAP)
                    .insert(ip_key(*ip), external_filter.to_string());
            }
        }
        if let Some(node_port) = port.node_port {
            let key = format!("{proto} . {node_port}");
            if endpoints.has_any {
                self.map(SERVICE_NODEPORTS_MAP)
                    .insert(key.clone(), format!("goto {external_chain}"));
            }
            if !has_external {
                self.map(NO_ENDPOINT_NODEPORTS_MAP)
                    .insert(key, external_filter.to_string());
            }
        }

        // Masquerade ClusterIP traffic that comes from outside the pod network: its replies
        // would otherwise not come back through this node.
        if has_internal {
            let rule = if state.config.masquerade_all {
                format!(
                    "ip daddr {} {proto} dport {} jump {MARK_MASQ_CHAIN}",
                    port.cluster_ip, port.port
                )
            } else {
                format!(
                    "ip daddr {} {proto} dport {} ip saddr != {} jump {MARK_MASQ_CHAIN}",
                    port.cluster_ip, port.port, state.config.cluster_cidr
                )
            };
            self.chain(internal_chain).push(rule);
        }

        if uses_external_chain {
            let rules = self.chain(&external_chain);
            if !port.external_policy_local {
                // The endpoint may be on another node: masquerade so replies return here.
                rules.push(format!("jump {MARK_MASQ_CHAIN}"));
            } else {
                rules.push(format!(
                    "ip saddr {} goto {cluster_chain} comment \"short-circuit pod traffic\"",
                    state.config.cluster_cidr
                ));
                rules.push(format!(
                    "fib saddr type local jump {MARK_MASQ_CHAIN} comment \"masquerade local traffic\""
                ));
                rules.push(format!(
                    "fib saddr type local goto {cluster_chain} comment \"short-circuit local traffic\""
                ));
            }
            if has_external {
                rules.push(format!("goto {external_policy_chain}"));
            }
        }

        let endpoint_chain = |ep: &crate::model::Endpoint| {
            format!(
                "endpoint-{}",
                names::endpoint_chain_base(name, ep.ip, ep.port)
            )
        };
        if uses_cluster_chain {
            let rules = load_balance_rules(endpoints.cluster.iter().map(endpoint_chain));
            self.chain(&cluster_chain).extend(rules);
        }
        if uses_local_chain {
            let rules = load_balance_rules(endpoints.local.iter().map(endpoint_chain));
            self.chain(&local_chain).extend(rules);
        }
        for ep in &endpoints.all_reachable {
            self.chains.insert(
                endpoint_chain(ep),
                vec![
                    // Hairpin: a pod reaching itself through its Service needs a source that
                    // is not its own address, or it would answer itself directly.
                    format!("ip saddr {} jump {MARK_MASQ_CHAIN}", ep.ip),
                    format!("meta l4proto {proto} dnat to {}:{}", ep.ip, ep.port),
                ],
            );
        }
    }

    /// A script for `nft -f` that replaces table `ip kube-proxy` with this ruleset in one
    /// transaction, whatever was there before (also nothing). Declarations come first so that
    /// rules and map elements only reference existing chains and maps.
    pub fn to_nft_script(&self) -> String {
        let mut out = String::with_capacity(self.estimated_script_len());
        // "add" then "delete" makes the deletion succeed when the table is absent.
        line!(out, "add table {TABLE}");
        line!(out, "delete table {TABLE}");
        line!(
            out,
            "add table {TABLE} {{ comment \"rules for kube-proxy\" ; }}"
        );
        self.write_declarations(&mut out, &Ruleset::default());
        for (chain, rules) in &self.chains {
            write_rules(&mut out, chain, rules);
        }
        for (name, set) in &self.sets {
            write_elements(
                &mut out,
                "add",
                name,
                set.iter().map(|k| (k.as_str(), None)),
            );
        }
        for (name, map) in &self.maps {
            write_elements(
                &mut out,
                "add",
                name,
                map.iter().map(|(k, v)| (k.as_str(), Some(v.as_str()))),
            );
        }
        out
    }

    fn estimated_script_len(&self) -> usize {
        let rules: usize = self
            .chains
            .iter()
            .map(|(name, rules)| {
                40 + name.len()
                    + rules
                        .iter()
                        .map(|r| r.len() + name.len() + 30)
                        .sum::<usize>()
            })
            .sum();
        let elements: usize = self
            .maps
            .values()
            .flat_map(|m| m.iter().map(|(k, v)| k.len() + v.len() + 6))
            .sum();
        rules + elements + 4096
    }

    /// Declares the sets, maps and chains of `self` that `old` lacks.
    fn write_declarations(&self, out: &mut String, old: &Ruleset) {
        for name in self.sets.keys().filter(|n| !old.sets.contains_key(*n)) {
            match set_type(name) {
                Some((ty, comment)) => line!(
                    out,
                    "add set {TABLE} {name} {{ type {ty} ; comment \"{comment}\" ; }}"
                ),
                None => line!(out, "add set {TABLE} {name} {{ type ipv4_addr ; }}"),
            }
        }
        for name in self.maps.keys().filter(|n| !old.maps.contains_key(*n)) {
            match map_type(name) {
                Some((ty, comment)) => line!(
                    out,
                    "add map {TABLE} {name} {{ type {ty} ; comment \"{comment}\" ; }}"
                ),
                None => line!(
                    out,
                    "add map {TABLE} {name} {{ type ipv4_addr . inet_proto . inet_service : verdict ; }}"
                ),
            }
        }
        for name in self.chains.keys().filter(|n| !old.chains.contains_key(*n)) {
            match base_chain_spec(name) {
                Some(spec) => line!(out, "add chain {TABLE} {name} {{ {spec} }}"),
                None => line!(out, "add chain {TABLE} {name}"),
            }
        }
    }

    /// An `nft -f` transaction that turns table `ip kube-proxy` from `old` into `new`,
    /// touching only what changed; `None` when they are equal.
    ///
    /// Order inside the transaction: declare new sets, maps and chains; flush and refill
    /// changed chains and fill new ones; delete map elements that went away or changed value;
    /// add new and changed elements; finally flush and delete chains, maps and sets that went
    /// away (nothing references them any more at that point). From an empty `old` this creates
    /// the table (without clearing leftovers: use [`Ruleset::to_nft_script`] for that).
    pub fn update_script(old: &Ruleset, new: &Ruleset) -> Option<String> {
        if old == new {
            return None;
        }
        let mut out = String::new();
        if old.chains.is_empty() && old.maps.is_empty() && old.sets.is_empty() {
            line!(
                out,
                "add table {TABLE} {{ comment \"rules for kube-proxy\" ; }}"
            );
        }
        new.write_declarations(&mut out, old);

        for (chain, rules) in &new.chains {
            match old.chains.get(chain) {
                Some(old_rules) if old_rules == rules => {}
                Some(_) => {
                    line!(out, "flush chain {TABLE} {chain}");
                    write_rules(&mut out, chain, rules);
                }
                None => write_rules(&mut out, chain, rules),
            }
        }

        let empty_map = BTreeMap::new();
        let empty_set = BTreeSet::new();
        // Deletions first, so that an element whose verdict changed is deleted and re-added.
        for (name, old_map) in &old.maps {
            let Some(new_map) = new.maps.get(name) else {
                continue;
            };
            let gone = old_map
                .iter()
                .filter(|(k, v)| new_map.get(*k) != Some(*v))
                .map(|(k, _)| (k.as_str(), None));
            write_elements(&mut out, "delete", name, gone);
        }
        for (name, old_set) in &old.sets {
            let Some(new_set) = new.sets.get(name) else {
                continue;
            };
            let gone = old_set.difference(new_set).map(|k| (k.as_str(), None));
            write_elements(&mut out, "delete", name, gone);
        }
        for (name, new_map) in &new.maps {
            let old_map = old.maps.get(name).unwrap_or(&empty_map);
            let added = new_map
                .iter()
                .filter(|(k, v)| old_map.get(*k) != Some(*v))
                .map(|(k, v)| (k.as_str(), Some(v.as_str())));
            write_elements(&mut out, "add", name, added);
        }
        for (name, new_set) in &new.sets {
            let old_set = old.sets.get(name).unwrap_or(&empty_set);
            let added = new_set.difference(old_set).map(|k| (k.as_str(), None));
            write_elements(&mut out, "add", name, added);
        }

        let removed_chains: Vec<&String> = old
            .chains
            .keys()
            .filter(|c| !new.chains.contains_key(*c))
            .collect();
        // Emptying every removed chain first drops the jumps between them (service → endpoint),
        // so each delete below finds its chain unreferenced.
        for chain in &removed_chains {
            line!(out, "flush chain {TABLE} {chain}");
        }
        for name in old.maps.keys().filter(|n| !new.maps.contains_key(*n)) {
            line!(out, "delete map {TABLE} {name}");
        }
        for name in old.sets.keys().filter(|n| !new.sets.contains_key(*n)) {
            line!(out, "delete set {TABLE} {name}");
        }
        for chain in &removed_chains {
            line!(out, "delete chain {TABLE} {chain}");
        }
        Some(out)
    }
}

/// Picks one of `chains` uniformly at random for a new connection, without a set:
///
/// ```text
/// numgen random mod 3 0 goto endpoint-A    # 1/3
/// numgen random mod 2 0 goto endpoint-B    # 1/2 of the remaining 2/3
/// goto endpoint-C                          # the remaining 1/3
/// ```
///
/// Upstream writes one `numgen random mod N vmap { 0 : goto A, … }` rule instead. That inline
/// map is an anonymous set, and the kernel (6.18 here) keeps a table's sets in a plain list:
/// adding a set or a rule that uses one walks the list by name, and binding an anonymous set
/// walks the whole transaction. A 10,000-Service × 5-endpoint load then took 36 s in the
/// kernel (170 s when it replaced an existing table); named per-Service maps still took 12 s
/// (linear name lookups). This cascade, the probabilities of iptables mode's `statistic`
/// rules, has no set at all and loads in about 4 s of CPU, most of it in the `nft` binary.
/// Only the first packet of a connection walks it (later ones follow conntrack), so its
/// O(endpoints) cost per connection does not show.
fn load_balance_rules(chains: impl ExactSizeIterator<Item = String>) -> Vec<String> {
    let count = chains.len();
    chains
        .enumerate()
        .map(|(i, chain)| {
            let remaining = count - i;
            if remaining > 1 {
                // Printed back by `nft list` exactly like this (`0` means `== 0`).
                format!("numgen random mod {remaining} 0 goto {chain}")
            } else {
                format!("goto {chain}")
            }
        })
        .collect()
}

fn write_rules(out: &mut String, chain: &str, rules: &[String]) {
    for rule in rules {
        line!(out, "add rule {TABLE} {chain} {rule}");
    }
}

/// Writes all elements of one set or map as a single `add element` / `delete element` command:
/// nft parses one big element list much faster than one command per element.
fn write_elements<'a>(
    out: &mut String,
    verb: &str,
    name: &str,
    elements: impl Iterator<Item = (&'a str, Option<&'a str>)>,
) {
    let mut elements = elements.peekable();
    if elements.peek().is_none() {
        return;
    }
    let _ = write!(out, "{verb} element {TABLE} {name} {{ ");
    for (i, (key, value)) in elements.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(key);
        if let Some(value) = value {
            out.push_str(" : ");
            out.push_str(value);
        }
    }
    out.push_str(" }\n");
}
