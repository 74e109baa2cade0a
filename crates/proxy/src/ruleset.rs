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

use crate::model::{ProxyState, ServicePortName};
use crate::names;
use crate::transaction::{Command, ScriptSink, Sink};

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

pub(crate) fn base_chain_spec(name: &str) -> Option<&'static str> {
    BASE_CHAINS.iter().find(|c| c.name == name).map(|c| c.spec)
}

pub(crate) fn map_type(name: &str) -> Option<(&'static str, &'static str)> {
    MAPS.iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, t, c)| (*t, *c))
}

pub(crate) fn set_type(name: &str) -> Option<(&'static str, &'static str)> {
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
    /// transaction, whatever was there before (also nothing).
    pub fn to_nft_script(&self) -> String {
        let mut sink = ScriptSink::with_capacity(self.estimated_script_len());
        self.write_full(&mut sink);
        sink.script
    }

    /// The transaction that replaces table `ip kube-proxy` with this ruleset, whatever was
    /// there before (also nothing). Declarations come first so that rules and map elements
    /// only reference existing chains and maps.
    pub fn write_full(&self, sink: &mut impl Sink) {
        // "add" then "delete" makes the deletion succeed when the table is absent.
        sink.command(Command::EnsureTable);
        sink.command(Command::DeleteTable);
        sink.command(Command::AddTable);
        self.write_declarations(sink, &Ruleset::default());
        for (chain, rules) in &self.chains {
            write_rules(sink, chain, rules);
        }
        for (name, set) in &self.sets {
            add_elements(sink, name, set.iter().map(|k| (k.as_str(), None)));
        }
        for (name, map) in &self.maps {
            add_elements(
                sink,
                name,
                map.iter().map(|(k, v)| (k.as_str(), Some(v.as_str()))),
            );
        }
    }

    /// The whole table, ready for the kernel: one netlink batch, or the `nft -f` script when
    /// the encoder refuses a rule ([`crate::ProxyError::Unsupported`]), so that the table is
    /// loaded either way.
    pub fn full_table(&self) -> Result<Prepared, crate::ProxyError> {
        match self.to_netlink_batch() {
            Ok(batch) => Ok(Prepared::Batch(batch)),
            Err(crate::ProxyError::Unsupported(_)) => Ok(Prepared::Script(self.to_nft_script())),
            Err(other) => Err(other),
        }
    }

    /// [`Ruleset::write_full`] as one nf_tables netlink batch (see [`crate::netlink`]).
    pub fn to_netlink_batch(&self) -> Result<Vec<u8>, crate::ProxyError> {
        // A netlink rule is about twice its script line (names as attributes, padding).
        let mut batch = crate::netlink::BatchSink::with_capacity(2 * self.estimated_script_len());
        self.write_full(&mut batch);
        batch.finish()
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
    fn write_declarations(&self, sink: &mut impl Sink, old: &Ruleset) {
        for name in self.sets.keys().filter(|n| !old.sets.contains_key(*n)) {
            sink.command(Command::AddSet { name });
        }
        for name in self.maps.keys().filter(|n| !old.maps.contains_key(*n)) {
            sink.command(Command::AddMap { name });
        }
        for name in self.chains.keys().filter(|n| !old.chains.contains_key(*n)) {
            sink.command(Command::AddChain { name });
        }
    }

    /// An `nft -f` transaction that turns table `ip kube-proxy` from `old` into `new`,
    /// touching only what changed; `None` when they are equal (see [`Ruleset::write_update`]).
    pub fn update_script(old: &Ruleset, new: &Ruleset) -> Option<String> {
        let mut sink = ScriptSink::default();
        Ruleset::write_update(old, new, &mut sink).then_some(sink.script)
    }

    /// Writes the transaction that turns table `ip kube-proxy` from `old` into `new`, touching
    /// only what changed; returns `false` (and writes nothing) when they are equal.
    ///
    /// Order inside the transaction: declare new sets, maps and chains; flush and refill
    /// changed chains and fill new ones; delete map elements that went away or changed value;
    /// add new and changed elements; finally flush and delete chains, maps and sets that went
    /// away (nothing references them any more at that point). From an empty `old` this creates
    /// the table (without clearing leftovers: use [`Ruleset::write_full`] for that).
    pub fn write_update(old: &Ruleset, new: &Ruleset, sink: &mut impl Sink) -> bool {
        if old == new {
            return false;
        }
        if old.chains.is_empty() && old.maps.is_empty() && old.sets.is_empty() {
            sink.command(Command::AddTable);
        }
        new.write_declarations(sink, old);

        for (chain, rules) in &new.chains {
            match old.chains.get(chain) {
                Some(old_rules) if old_rules == rules => {}
                Some(_) => {
                    sink.command(Command::FlushChain { name: chain });
                    write_rules(sink, chain, rules);
                }
                None => write_rules(sink, chain, rules),
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
                .map(|(k, _)| k.as_str());
            delete_elements(sink, name, gone);
        }
        for (name, old_set) in &old.sets {
            let Some(new_set) = new.sets.get(name) else {
                continue;
            };
            let gone = old_set.difference(new_set).map(|k| k.as_str());
            delete_elements(sink, name, gone);
        }
        for (name, new_map) in &new.maps {
            let old_map = old.maps.get(name).unwrap_or(&empty_map);
            let added = new_map
                .iter()
                .filter(|(k, v)| old_map.get(*k) != Some(*v))
                .map(|(k, v)| (k.as_str(), Some(v.as_str())));
            add_elements(sink, name, added);
        }
        for (name, new_set) in &new.sets {
            let old_set = old.sets.get(name).unwrap_or(&empty_set);
            let added = new_set.difference(old_set).map(|k| (k.as_str(), None));
            add_elements(sink, name, added);
        }

        let removed_chains: Vec<&String> = old
            .chains
            .keys()
            .filter(|c| !new.chains.contains_key(*c))
            .collect();
        // Emptying every removed chain first drops the jumps between them (service → endpoint),
        // so each delete below finds its chain unreferenced.
        for chain in &removed_chains {
            sink.command(Command::FlushChain { name: chain });
        }
        for name in old.maps.keys().filter(|n| !new.maps.contains_key(*n)) {
            sink.command(Command::DeleteMap { name });
        }
        for name in old.sets.keys().filter(|n| !new.sets.contains_key(*n)) {
            sink.command(Command::DeleteSet { name });
        }
        for chain in &removed_chains {
            sink.command(Command::DeleteChain { name: chain });
        }
        true
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

fn write_rules(sink: &mut impl Sink, chain: &str, rules: &[String]) {
    for rule in rules {
        sink.command(Command::AddRule { chain, rule });
    }
}

/// One command per set or map (nft parses one big element list much faster than one command
/// per element); nothing when there are no elements.
fn add_elements<'a>(
    sink: &mut impl Sink,
    name: &str,
    elements: impl Iterator<Item = (&'a str, Option<&'a str>)>,
) {
    let elements: Vec<_> = elements.collect();
    if !elements.is_empty() {
        sink.command(Command::AddElements { name, elements });
    }
}

fn delete_elements<'a>(sink: &mut impl Sink, name: &str, keys: impl Iterator<Item = &'a str>) {
    let keys: Vec<_> = keys.collect();
    if !keys.is_empty() {
        sink.command(Command::DeleteElements { name, keys });
    }
}

/// A transaction ready for the kernel: the whole table ([`Ruleset::full_table`]) or a
/// difference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prepared {
    /// One nf_tables netlink batch.
    Batch(Vec<u8>),
    /// An `nft -f` script (the fallback).
    Script(String),
}
