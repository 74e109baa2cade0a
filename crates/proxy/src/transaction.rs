//! A transaction on table `ip kube-proxy` as a sequence of commands, so that one diff
//! ([`crate::Ruleset::write_full`], [`crate::Ruleset::write_update`]) feeds two encoders: the
//! `nft -f` script ([`ScriptSink`], kept for debugging and as the fallback) and the nf_tables
//! netlink batch ([`crate::netlink::BatchSink`], what the agent sends).
//!
//! Commands borrow their strings from the rulesets being compared, so writing a 10,000-Service
//! transaction copies no rule text.

use std::fmt::Write as _;

use crate::ruleset::TABLE;

/// One step of a transaction, in the order it must run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    /// `add table ip kube-proxy`: makes sure the table exists (so a following delete succeeds).
    EnsureTable,
    /// `delete table ip kube-proxy`, with everything in it.
    DeleteTable,
    /// `add table ip kube-proxy { comment "rules for kube-proxy" ; }`.
    AddTable,
    /// Declares a set (`cluster-ips`, or any other name as a plain `ipv4_addr` set).
    AddSet {
        name: &'a str,
    },
    /// Declares a verdict map; the key type follows from the name.
    AddMap {
        name: &'a str,
    },
    /// Declares a chain; base chains get their hook from the name.
    AddChain {
        name: &'a str,
    },
    /// Removes every rule of a chain.
    FlushChain {
        name: &'a str,
    },
    /// Appends one rule (nft syntax, without `add rule ip kube-proxy CHAIN`).
    AddRule {
        chain: &'a str,
        rule: &'a str,
    },
    /// Adds elements to a set (value `None`) or map (value the verdict).
    AddElements {
        name: &'a str,
        elements: Vec<(&'a str, Option<&'a str>)>,
    },
    /// Deletes elements (by key) from a set or map.
    DeleteElements {
        name: &'a str,
        keys: Vec<&'a str>,
    },
    DeleteMap {
        name: &'a str,
    },
    DeleteSet {
        name: &'a str,
    },
    DeleteChain {
        name: &'a str,
    },
}

/// Receives the commands of a transaction in order.
pub trait Sink {
    fn command(&mut self, command: Command<'_>);
}

/// Writes the transaction as an `nft -f` script.
#[derive(Debug, Default, Clone)]
pub struct ScriptSink {
    pub script: String,
}

impl ScriptSink {
    pub fn with_capacity(capacity: usize) -> ScriptSink {
        ScriptSink {
            script: String::with_capacity(capacity),
        }
    }
}

/// Appends one line; writing to a `String` cannot fail.
macro_rules! line {
    ($out:expr, $($arg:tt)*) => {{
        let _ = writeln!($out, $($arg)*);
    }};
}

impl Sink for ScriptSink {
    fn command(&mut self, command: Command<'_>) {
        let out = &mut self.script;
        match command {
            Command::EnsureTable => line!(out, "add table {TABLE}"),
            Command::DeleteTable => line!(out, "delete table {TABLE}"),
            Command::AddTable => line!(
                out,
                "add table {TABLE} {{ comment \"rules for kube-proxy\" ; }}"
            ),
            Command::AddSet { name } => match crate::ruleset::set_type(name) {
                Some((ty, comment)) => line!(
                    out,
                    "add set {TABLE} {name} {{ type {ty} ; comment \"{comment}\" ; }}"
                ),
                None => line!(out, "add set {TABLE} {name} {{ type ipv4_addr ; }}"),
            },
            Command::AddMap { name } => match crate::ruleset::map_type(name) {
                Some((ty, comment)) => line!(
                    out,
                    "add map {TABLE} {name} {{ type {ty} ; comment \"{comment}\" ; }}"
                ),
                None => line!(
                    out,
                    "add map {TABLE} {name} {{ type ipv4_addr . inet_proto . inet_service : verdict ; }}"
                ),
            },
            Command::AddChain { name } => match crate::ruleset::base_chain_spec(name) {
                Some(spec) => line!(out, "add chain {TABLE} {name} {{ {spec} }}"),
                None => line!(out, "add chain {TABLE} {name}"),
            },
            Command::FlushChain { name } => line!(out, "flush chain {TABLE} {name}"),
            Command::AddRule { chain, rule } => line!(out, "add rule {TABLE} {chain} {rule}"),
            Command::AddElements { name, elements } => {
                write_elements(out, "add", name, elements.into_iter())
            }
            Command::DeleteElements { name, keys } => {
                write_elements(out, "delete", name, keys.into_iter().map(|k| (k, None)))
            }
            Command::DeleteMap { name } => line!(out, "delete map {TABLE} {name}"),
            Command::DeleteSet { name } => line!(out, "delete set {TABLE} {name}"),
            Command::DeleteChain { name } => line!(out, "delete chain {TABLE} {name}"),
        }
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

/// Drops every command: for moving an [`crate::IncrementalRuleset`] to a new state when the
/// whole table will be written anyway.
#[derive(Debug, Default, Clone, Copy)]
pub struct Discard;

impl Sink for Discard {
    fn command(&mut self, _command: Command<'_>) {}
}
