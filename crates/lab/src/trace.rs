//! `kubelab trace`: the path one new TCP (or UDP) connection takes through a running lab — the
//! kube-proxy chains and maps it matches, the endpoint `numgen` picks, NAT, every routing
//! decision, the encapsulation and the pod it lands in.
//!
//! Pure core, thin shell. [`trace`] is pure: it walks the packet hop by hop over [`Facts`] and
//! either finishes a [`Trace`] or names the one fact it still lacks ([`Need`]). [`run`] is the
//! shell: it asks the kernel for exactly that fact (`nft -j list table ip kube-proxy` in a node,
//! `ip -j route get [fibmatch] DST [from SRC iif DEV]` in a namespace, the VXLAN neighbour and
//! FDB entries), adds it and calls [`trace`] again, until the trace is done. Everything the trace
//! says about rules and routes is therefore the kernel's real state, not a prediction; only the
//! `numgen random` draws are ours (random numbers, consumed in order, like the kernel's).
//!
//! The nftables interpreter understands the expressions kube-proxy's nftables mode uses
//! (payload and meta matches, prefixes, named and anonymous sets, verdict maps, `numgen`,
//! `fib daddr type`, marks, `dnat`, `masquerade`, `reject`); a rule with anything else is
//! reported as not understood and skipped. Conntrack is modelled only as "this is a new
//! connection" (`ct state new`), which is what a trace is about.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

use serde_json::Value;

use crate::LabError;
use crate::inspect::RunningLab;
use crate::netlab::LabRecord;

/// Calico's IPIP device (a userspace tunnel here, see `dataplane::ipip`).
const IPIP_DEVICE: &str = "tunl0";
/// Calico's VXLAN device.
const VXLAN_DEVICE: &str = "vxlan.calico";
/// Calico's VXLAN UDP port.
const VXLAN_PORT: u16 = 4789;
/// More hops than any lab path has: beyond this the packet is looping.
const MAX_HOPS: usize = 24;
/// Deeper jump/goto nesting than kube-proxy's chains ever have.
const MAX_CHAIN_DEPTH: usize = 16;

/// Why a trace cannot even start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    #[error("lab {lab:?} has no node and no pod called {from:?} (nodes: {nodes})")]
    UnknownOrigin {
        lab: String,
        from: String,
        nodes: String,
    },
    #[error("pod {0} has no IP address yet")]
    PodWithoutIp(String),
    #[error("pod {0} is not scheduled on a node of this lab")]
    PodWithoutNode(String),
    #[error("nft -j output: {0}")]
    NftJson(String),
}

/// Transport protocol of the traced connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    Tcp,
    Udp,
}

impl L4 {
    fn as_str(self) -> &'static str {
        match self {
            L4::Tcp => "tcp",
            L4::Udp => "udp",
        }
    }
}

/// Where the connection starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Node(String),
    Pod { namespace: String, name: String },
}

impl Origin {
    /// `kube-1` is a node when the lab has one of that name; otherwise a pod, `name` (in
    /// `default`) or `namespace/name`.
    pub fn parse(from: &str, lab: &LabRecord) -> Origin {
        if lab.node(from).is_some() {
            return Origin::Node(from.to_string());
        }
        match from.split_once('/') {
            Some((namespace, name)) => Origin::Pod {
                namespace: namespace.to_string(),
                name: name.to_string(),
            },
            None => Origin::Pod {
                namespace: "default".to_string(),
                name: from.to_string(),
            },
        }
    }
}

/// What to trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceRequest {
    pub from: Origin,
    pub to: SocketAddrV4,
    pub protocol: L4,
    /// Random numbers for `numgen random`, used in order (0 when they run out).
    pub numgen_draws: Vec<u32>,
}

/// A pod as the API server knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFact {
    pub namespace: String,
    pub name: String,
    pub node: Option<String>,
    pub ip: Option<Ipv4Addr>,
    pub host_network: bool,
    /// The pod's network namespace (`LAB.pod.UID`), when it has its own.
    pub netns: Option<String>,
}

/// One routing lookup, as `ip route get` takes it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RouteQuery {
    pub netns: String,
    pub dst: Ipv4Addr,
    pub from: Option<Ipv4Addr>,
    pub iif: Option<String>,
}

/// The kernel's answer to a [`RouteQuery`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteAnswer {
    /// `unicast`, `local`, `blackhole`, …
    pub kind: String,
    pub dev: String,
    pub gateway: Option<Ipv4Addr>,
    /// The source address the kernel would pick (`src` in `ip route get`).
    pub prefsrc: Option<Ipv4Addr>,
    /// The routing-table entry that matched (`ip route get fibmatch`), as `ip route` prints it.
    pub entry: String,
}

/// Everything the trace has learnt so far.
#[derive(Debug, Clone)]
pub struct Facts {
    pub lab: LabRecord,
    pub pods: Vec<PodFact>,
    /// Table `ip kube-proxy` of a namespace; `None` when it has none.
    pub tables: BTreeMap<String, Option<NftTable>>,
    /// Route lookups; `Err` holds the kernel's refusal (`Network is unreachable`).
    pub routes: BTreeMap<RouteQuery, Result<RouteAnswer, String>>,
    /// (namespace, VXLAN next hop) → the remote node's address from neighbour + FDB entries.
    pub vxlan_remotes: BTreeMap<(String, Ipv4Addr), Option<Ipv4Addr>>,
}

impl Facts {
    pub fn new(lab: LabRecord, pods: Vec<PodFact>) -> Facts {
        Facts {
            lab,
            pods,
            tables: BTreeMap::new(),
            routes: BTreeMap::new(),
            vxlan_remotes: BTreeMap::new(),
        }
    }
}

/// The next fact [`trace`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    Table(String),
    Route(RouteQuery),
    VxlanRemote { netns: String, via: Ipv4Addr },
}

/// How the connection ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered into a pod's network namespace.
    Pod {
        namespace: String,
        name: String,
        node: String,
        ip: Ipv4Addr,
        port: u16,
    },
    /// Delivered to an address of a node itself (hostNetwork, e.g. the API server on kube-0).
    Local {
        place: String,
        addr: Ipv4Addr,
        port: u16,
    },
    Rejected(String),
    Dropped(String),
    NoRoute(String),
    /// Left the lab or went somewhere the trace cannot follow.
    Lost(String),
}

/// One line of the trace: where (a node, `router`, `pod`) and what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceLine {
    pub place: String,
    pub text: String,
}

/// A finished trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    pub lines: Vec<TraceLine>,
    pub outcome: Outcome,
}

impl Trace {
    /// The trace as printed: one line per step, the place left-aligned in a column.
    pub fn render(&self) -> String {
        let width = self
            .lines
            .iter()
            .map(|l| l.place.chars().count())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for line in &self.lines {
            if line.place.is_empty() {
                out += &line.text;
            } else {
                out += &format!("{:<width$}  {}", line.place, line.text);
            }
            out.push('\n');
        }
        out += &format!("result: {}\n", self.outcome);
        out
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Pod {
                namespace,
                name,
                node,
                ip,
                port,
            } => write!(
                f,
                "lands in pod {namespace}/{name} ({ip}) on {node}, port {port}"
            ),
            Outcome::Local { place, addr, port } => write!(
                f,
                "delivered to {place} itself at {addr}:{port} (a process of the node, not a pod)"
            ),
            Outcome::Rejected(why) => write!(f, "rejected: {why}"),
            Outcome::Dropped(why) => write!(f, "dropped: {why}"),
            Outcome::NoRoute(why) => write!(f, "no route: {why}"),
            Outcome::Lost(why) => write!(f, "lost: {why}"),
        }
    }
}

/// The pure core's answer: the trace, or the fact to fetch first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    Done(Trace),
    Need(Need),
}

// ---------------------------------------------------------------------------------------------
// nftables as data: the subset of `nft -j` kube-proxy's rules use.

/// Table `ip kube-proxy` of one namespace, parsed from `nft -j list table ip kube-proxy`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NftTable {
    pub chains: BTreeMap<String, NftChain>,
    pub sets: BTreeMap<String, Vec<Rhs>>,
    /// Verdict maps: key (concatenation) → verdict.
    pub maps: BTreeMap<String, Vec<(Vec<Rhs>, Verdict)>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NftChain {
    /// `(hook, priority)` of a base chain.
    pub hook: Option<(String, i64)>,
    pub rules: Vec<Vec<Expr>>,
}

/// Something a match reads from the packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand {
    /// `ip saddr`, `ip daddr`, `tcp dport`, `th dport`…: (protocol, field).
    Payload(String, String),
    /// `meta l4proto`, `meta mark`.
    Meta(String),
    /// `meta mark & MASK`.
    MarkAnd(u64),
    Numgen {
        modulus: u32,
        offset: u32,
    },
    FibDaddrType,
    CtState,
}

/// A value a match compares with, or a map or set element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rhs {
    Addr(Ipv4Addr),
    Prefix(Ipv4Addr, u8),
    Num(u64),
    Word(String),
    SetRef(String),
    Set(Vec<Rhs>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Jump(String),
    Goto(String),
    Accept,
    Drop,
    Return,
    Continue,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Match {
        left: Operand,
        negate: bool,
        right: Rhs,
    },
    Vmap {
        key: Vec<Operand>,
        map: String,
    },
    Verdict(Verdict),
    /// `meta mark set meta mark OP VALUE` (`|`, `^`) or `meta mark set VALUE` (`=`).
    SetMark {
        op: char,
        value: u64,
    },
    Dnat {
        addr: Ipv4Addr,
        port: Option<u16>,
    },
    Masquerade {
        flags: String,
    },
    Reject,
    /// Counters, logs: no effect on the path.
    Ignored,
    /// The rule's comment, which says why it is there.
    Comment(String),
    /// Anything else, as its JSON.
    Unknown(String),
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operand::Payload(p, field) => write!(f, "{p} {field}"),
            Operand::Meta(key) => write!(f, "meta {key}"),
            Operand::MarkAnd(mask) => write!(f, "meta mark & {mask:#010x}"),
            Operand::Numgen { modulus, offset } => {
                write!(f, "numgen random mod {modulus}")?;
                if *offset != 0 {
                    write!(f, " offset {offset}")?;
                }
                Ok(())
            }
            Operand::FibDaddrType => write!(f, "fib daddr type"),
            Operand::CtState => write!(f, "ct state"),
        }
    }
}

impl fmt::Display for Rhs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rhs::Addr(a) => write!(f, "{a}"),
            Rhs::Prefix(a, len) => write!(f, "{a}/{len}"),
            Rhs::Num(n) => write!(f, "{n}"),
            Rhs::Word(w) => write!(f, "{w}"),
            Rhs::SetRef(s) => write!(f, "@{s}"),
            Rhs::Set(items) => {
                let items: Vec<String> = items.iter().map(ToString::to_string).collect();
                write!(f, "{{ {} }}", items.join(", "))
            }
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Jump(t) => write!(f, "jump {t}"),
            Verdict::Goto(t) => write!(f, "goto {t}"),
            Verdict::Accept => write!(f, "accept"),
            Verdict::Drop => write!(f, "drop"),
            Verdict::Return => write!(f, "return"),
            Verdict::Continue => write!(f, "continue"),
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Match {
                left,
                negate,
                right,
            } => write!(f, "{left} {}{right}", if *negate { "!= " } else { "" }),
            Expr::Vmap { key, map } => {
                let key: Vec<String> = key.iter().map(ToString::to_string).collect();
                write!(f, "{} vmap @{map}", key.join(" . "))
            }
            Expr::Verdict(v) => write!(f, "{v}"),
            Expr::SetMark { op: '=', value } => write!(f, "meta mark set {value:#010x}"),
            Expr::SetMark { op, value } => {
                write!(f, "meta mark set meta mark {op} {value:#010x}")
            }
            Expr::Dnat {
                addr,
                port: Some(p),
            } => write!(f, "dnat to {addr}:{p}"),
            Expr::Dnat { addr, port: None } => write!(f, "dnat to {addr}"),
            Expr::Masquerade { flags } if flags.is_empty() => write!(f, "masquerade"),
            Expr::Masquerade { flags } => write!(f, "masquerade {flags}"),
            Expr::Reject => write!(f, "reject"),
            Expr::Ignored => Ok(()),
            Expr::Comment(c) => write!(f, "comment {c:?}"),
            Expr::Unknown(json) => write!(f, "<{json}>"),
        }
    }
}

/// A rule as nft would print it (near enough).
fn rule_text(rule: &[Expr]) -> String {
    rule.iter()
        .filter(|e| **e != Expr::Ignored)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

fn parse_operand(v: &Value) -> Option<Operand> {
    if let Some(p) = v.get("payload") {
        return Some(Operand::Payload(
            p.get("protocol")?.as_str()?.to_string(),
            p.get("field")?.as_str()?.to_string(),
        ));
    }
    if let Some(m) = v.get("meta") {
        return Some(Operand::Meta(m.get("key")?.as_str()?.to_string()));
    }
    if let Some(and) = v.get("&").and_then(Value::as_array) {
        let is_mark = and.first()?.pointer("/meta/key")?.as_str()? == "mark";
        return is_mark.then_some(Operand::MarkAnd(and.get(1)?.as_u64()?));
    }
    if let Some(n) = v.get("numgen") {
        if n.get("mode")?.as_str()? != "random" {
            return None;
        }
        return Some(Operand::Numgen {
            modulus: u32::try_from(n.get("mod")?.as_u64()?).ok()?,
            offset: u32::try_from(n.get("offset").and_then(Value::as_u64).unwrap_or(0)).ok()?,
        });
    }
    if let Some(fib) = v.get("fib") {
        let flags = fib.get("flags")?.as_array()?;
        let daddr_only = flags.len() == 1 && flags[0] == "daddr";
        return (fib.get("result")? == "type" && daddr_only).then_some(Operand::FibDaddrType);
    }
    if v.pointer("/ct/key").and_then(Value::as_str) == Some("state") {
        return Some(Operand::CtState);
    }
    None
}

fn parse_rhs(v: &Value) -> Option<Rhs> {
    match v {
        Value::String(s) => Some(match (s.strip_prefix('@'), s.parse::<Ipv4Addr>()) {
            (Some(set), _) => Rhs::SetRef(set.to_string()),
            (None, Ok(addr)) => Rhs::Addr(addr),
            (None, Err(_)) => Rhs::Word(s.clone()),
        }),
        Value::Number(n) => n.as_u64().map(Rhs::Num),
        Value::Array(items) => items
            .iter()
            .map(parse_rhs)
            .collect::<Option<_>>()
            .map(Rhs::Set),
        Value::Object(o) => {
            if let Some(p) = o.get("prefix") {
                let addr = p.get("addr")?.as_str()?.parse().ok()?;
                let len = u8::try_from(p.get("len")?.as_u64()?).ok()?;
                return Some(Rhs::Prefix(addr, len));
            }
            if let Some(set) = o.get("set") {
                return match set {
                    Value::Array(items) => items
                        .iter()
                        .map(parse_rhs)
                        .collect::<Option<_>>()
                        .map(Rhs::Set),
                    other => parse_rhs(other).map(|one| Rhs::Set(vec![one])),
                };
            }
            if let Some(elem) = o.get("elem") {
                return parse_rhs(elem.get("val")?);
            }
            None
        }
        _ => None,
    }
}

fn parse_verdict(v: &Value) -> Option<Verdict> {
    let o = v.as_object()?;
    let (key, value) = o.iter().next()?;
    let target = || {
        value
            .get("target")
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    Some(match key.as_str() {
        "jump" => Verdict::Jump(target()?),
        "goto" => Verdict::Goto(target()?),
        "accept" => Verdict::Accept,
        "drop" => Verdict::Drop,
        "return" => Verdict::Return,
        "continue" => Verdict::Continue,
        _ => return None,
    })
}

fn parse_expr(v: &Value) -> Expr {
    parse_known_expr(v).unwrap_or_else(|| Expr::Unknown(v.to_string()))
}

fn parse_known_expr(v: &Value) -> Option<Expr> {
    let o = v.as_object()?;
    let (key, body) = o.iter().next()?;
    Some(match key.as_str() {
        "match" => Expr::Match {
            left: parse_operand(body.get("left")?)?,
            negate: match body.get("op")?.as_str()? {
                "==" | "in" => false,
                "!=" => true,
                _ => return None,
            },
            right: parse_rhs(body.get("right")?)?,
        },
        "vmap" => {
            let key = body.get("key")?;
            let parts = match key.get("concat").and_then(Value::as_array) {
                Some(parts) => parts.iter().map(parse_operand).collect::<Option<_>>()?,
                None => vec![parse_operand(key)?],
            };
            Expr::Vmap {
                key: parts,
                map: body.get("data")?.as_str()?.strip_prefix('@')?.to_string(),
            }
        }
        "jump" | "goto" | "accept" | "drop" | "return" | "continue" => {
            Expr::Verdict(parse_verdict(v)?)
        }
        "mangle" => {
            if body.pointer("/key/meta/key")?.as_str()? != "mark" {
                return None;
            }
            let value = body.get("value")?;
            if let Some(n) = value.as_u64() {
                Expr::SetMark { op: '=', value: n }
            } else {
                let (op, args) = value.as_object()?.iter().next()?;
                let op = match op.as_str() {
                    "|" => '|',
                    "^" => '^',
                    "&" => '&',
                    _ => return None,
                };
                Expr::SetMark {
                    op,
                    value: args.as_array()?.get(1)?.as_u64()?,
                }
            }
        }
        "dnat" => Expr::Dnat {
            addr: body.get("addr")?.as_str()?.parse().ok()?,
            port: match body.get("port") {
                Some(p) => Some(u16::try_from(p.as_u64()?).ok()?),
                None => None,
            },
        },
        "masquerade" => Expr::Masquerade {
            flags: match body.get("flags") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
                _ => String::new(),
            },
        },
        "reject" => Expr::Reject,
        "counter" | "log" | "comment" | "limit" => Expr::Ignored,
        _ => return None,
    })
}

/// Parses the output of `nft -j list table ip kube-proxy`.
pub fn parse_nft_json(json: &str) -> Result<NftTable, TraceError> {
    let doc: Value = serde_json::from_str(json).map_err(|e| TraceError::NftJson(e.to_string()))?;
    let items = doc
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or_else(|| TraceError::NftJson("no \"nftables\" array".into()))?;
    let mut table = NftTable::default();
    for item in items {
        if let Some(c) = item.get("chain") {
            let Some(name) = c.get("name").and_then(Value::as_str) else {
                continue;
            };
            let hook = c.get("hook").and_then(Value::as_str).map(|h| {
                (
                    h.to_string(),
                    c.get("prio").and_then(Value::as_i64).unwrap_or(0),
                )
            });
            table.chains.entry(name.to_string()).or_default().hook = hook;
        } else if let Some(r) = item.get("rule") {
            let Some(chain) = r.get("chain").and_then(Value::as_str) else {
                continue;
            };
            let mut exprs: Vec<Expr> = r
                .get("expr")
                .and_then(Value::as_array)
                .map(|e| e.iter().map(parse_expr).collect())
                .unwrap_or_default();
            if let Some(comment) = r.get("comment").and_then(Value::as_str) {
                exprs.push(Expr::Comment(comment.to_string()));
            }
            table
                .chains
                .entry(chain.to_string())
                .or_default()
                .rules
                .push(exprs);
        } else if let Some(s) = item.get("set") {
            let Some(name) = s.get("name").and_then(Value::as_str) else {
                continue;
            };
            let elems = s
                .get("elem")
                .and_then(Value::as_array)
                .map(|e| e.iter().filter_map(parse_rhs).collect())
                .unwrap_or_default();
            table.sets.insert(name.to_string(), elems);
        } else if let Some(m) = item.get("map") {
            let Some(name) = m.get("name").and_then(Value::as_str) else {
                continue;
            };
            let mut elems = Vec::new();
            for pair in m
                .get("elem")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let (Some(key), Some(verdict)) = (pair.get(0), pair.get(1).and_then(parse_verdict))
                else {
                    continue;
                };
                let key = match key.get("concat").and_then(Value::as_array) {
                    Some(parts) => parts.iter().filter_map(parse_rhs).collect(),
                    None => parse_rhs(key).into_iter().collect(),
                };
                elems.push((key, verdict));
            }
            table.maps.insert(name.to_string(), elems);
        }
    }
    Ok(table)
}

// ---------------------------------------------------------------------------------------------
// The walk.

/// Stops the walk: a fact to fetch first, or a reason it cannot start.
enum Stop {
    Need(Need),
    Error(TraceError),
}

impl From<TraceError> for Stop {
    fn from(e: TraceError) -> Stop {
        Stop::Error(e)
    }
}

/// A value read from the packet.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Val {
    Addr(Ipv4Addr),
    Num(u64),
    Word(String),
}

impl fmt::Display for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Val::Addr(a) => write!(f, "{a}"),
            Val::Num(n) => write!(f, "{n}"),
            Val::Word(w) => write!(f, "{w}"),
        }
    }
}

/// How an encapsulated packet is wrapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encap {
    Ipip,
    Vxlan,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Packet {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    dport: u16,
    proto: L4,
    /// Set on an outer packet: what it carries and how.
    inner: Option<(Encap, Box<Packet>)>,
}

/// What a namespace is in the lab.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PlaceKind {
    Node(String),
    Router,
    /// Index into [`Facts::pods`].
    Pod(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Place {
    netns: String,
    kind: PlaceKind,
}

/// How a base-chain walk ended.
enum Final {
    Accept,
    Drop(String),
    Reject(String),
    Dnat,
    Masquerade,
}

/// How one chain ended.
enum ChainEnd {
    /// Fell off the end or `return`ed: the caller goes on.
    Through,
    Final(Final),
}

/// How one rule ended.
enum RuleEnd {
    NoMatch,
    Next,
    Verdict(Verdict),
    Final(Final),
}

struct Walk<'a> {
    facts: &'a Facts,
    req: &'a TraceRequest,
    lines: Vec<TraceLine>,
    draws_used: usize,
    /// Notes (numgen draws that did not pick) waiting for the next line.
    pending: Vec<String>,
    /// The first namespace with a kube-proxy table reports Service-map misses.
    reported_service_miss: bool,
}

impl<'a> Walk<'a> {
    fn line(&mut self, place: &str, text: impl Into<String>) {
        let mut text = text.into();
        if !self.pending.is_empty() {
            text = format!("{}; {text}", self.pending.join(", "));
            self.pending.clear();
        }
        self.lines.push(TraceLine {
            place: place.to_string(),
            text,
        });
    }

    fn label(&self, place: &Place) -> String {
        match &place.kind {
            PlaceKind::Node(n) => n.clone(),
            PlaceKind::Router => "router".to_string(),
            PlaceKind::Pod(_) => "pod".to_string(),
        }
    }

    fn route(&self, q: RouteQuery) -> Result<Result<RouteAnswer, String>, Stop> {
        match self.facts.routes.get(&q) {
            Some(a) => Ok(a.clone()),
            None => Err(Stop::Need(Need::Route(q))),
        }
    }

    fn table(&self, netns: &str) -> Result<Option<&'a NftTable>, Stop> {
        match self.facts.tables.get(netns) {
            Some(t) => Ok(t.as_ref()),
            None => Err(Stop::Need(Need::Table(netns.to_string()))),
        }
    }

    fn pod_by_ip(&self, ip: Ipv4Addr) -> Option<&'a PodFact> {
        self.facts
            .pods
            .iter()
            .find(|p| p.ip == Some(ip) && !p.host_network)
    }

    fn node_place(&self, name: &str) -> Option<Place> {
        let n = self.facts.lab.node(name)?;
        Some(Place {
            netns: n.netns.clone(),
            kind: PlaceKind::Node(n.name.clone()),
        })
    }

    /// `ns/name on node` for an endpoint address, when a pod has it.
    fn describe_endpoint(&self, ip: Ipv4Addr) -> String {
        if let Some(p) = self.pod_by_ip(ip) {
            return format!(
                "pod {}/{} on {}",
                p.namespace,
                p.name,
                p.node.as_deref().unwrap_or("?")
            );
        }
        if let Some(n) = self.facts.lab.nodes.iter().find(|n| n.ip == ip) {
            return format!("node {} itself, not a pod", n.name);
        }
        "not a pod of this lab".to_string()
    }

    fn value(
        &mut self,
        place: &Place,
        operand: &Operand,
        pkt: &Packet,
        mark: u64,
    ) -> Result<Option<Val>, Stop> {
        Ok(match operand {
            Operand::Payload(proto, field) => match (proto.as_str(), field.as_str()) {
                ("ip", "saddr") => Some(Val::Addr(pkt.src)),
                ("ip", "daddr") => Some(Val::Addr(pkt.dst)),
                ("th", "dport") => Some(Val::Num(u64::from(pkt.dport))),
                (p, "dport") if p == pkt.proto.as_str() => Some(Val::Num(u64::from(pkt.dport))),
                _ => None,
            },
            Operand::Meta(key) => match key.as_str() {
                "l4proto" => Some(Val::Word(pkt.proto.as_str().to_string())),
                "mark" => Some(Val::Num(mark)),
                _ => None,
            },
            Operand::MarkAnd(mask) => Some(Val::Num(mark & mask)),
            Operand::Numgen { modulus, offset } => {
                let draw = self
                    .req
                    .numgen_draws
                    .get(self.draws_used)
                    .copied()
                    .unwrap_or(0);
                self.draws_used += 1;
                let value = draw % (*modulus).max(1) + offset;
                Some(Val::Num(u64::from(value)))
            }
            Operand::FibDaddrType => {
                let answer = self.route(RouteQuery {
                    netns: place.netns.clone(),
                    dst: pkt.dst,
                    from: None,
                    iif: None,
                })?;
                Some(Val::Word(match answer {
                    Ok(a) => a.kind,
                    Err(_) => "unreachable".to_string(),
                }))
            }
            Operand::CtState => Some(Val::Word("new".to_string())),
        })
    }

    fn matches(&self, table: &NftTable, value: &Val, rhs: &Rhs) -> bool {
        match (rhs, value) {
            (Rhs::Addr(a), Val::Addr(v)) => a == v,
            (Rhs::Prefix(net, len), Val::Addr(v)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(*len)).unwrap_or(0);
                u32::from(*v) & mask == u32::from(*net) & mask
            }
            (Rhs::Num(n), Val::Num(v)) => n == v,
            (Rhs::Word(w), Val::Word(v)) => w == v,
            // `meta l4proto tcp` may come back as a protocol number.
            (Rhs::Num(6), Val::Word(v)) => v == "tcp",
            (Rhs::Num(17), Val::Word(v)) => v == "udp",
            (Rhs::Set(items), v) => items.iter().any(|i| self.matches(table, v, i)),
            (Rhs::SetRef(name), v) => table
                .sets
                .get(name)
                .is_some_and(|items| items.iter().any(|i| self.matches(table, v, i))),
            _ => false,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn eval_rule(
        &mut self,
        table: &NftTable,
        place: &Place,
        chain: &str,
        rule: &[Expr],
        pkt: &mut Packet,
        mark: &mut u64,
        first_table: bool,
    ) -> Result<RuleEnd, Stop> {
        let label = self.label(place);
        let text = rule_text(rule);
        // What made the rule match, for the line that reports it.
        let mut why: Vec<String> = Vec::new();
        for expr in rule {
            match expr {
                Expr::Match {
                    left,
                    negate,
                    right,
                } => {
                    let Some(value) = self.value(place, left, pkt, *mark)? else {
                        return Ok(RuleEnd::NoMatch);
                    };
                    let hit = self.matches(table, &value, right) != *negate;
                    if let Operand::Numgen { .. } = left {
                        if !hit {
                            self.pending
                                .push(format!("{left} drew {value} (not {right})"));
                            return Ok(RuleEnd::NoMatch);
                        }
                        why.push(format!("{left} drew {value}"));
                        continue;
                    }
                    if !hit {
                        return Ok(RuleEnd::NoMatch);
                    }
                    if *negate && matches!(left, Operand::Payload(..)) {
                        why.push(format!(
                            "{left} {value} is outside {right}",
                            left = left.to_string().replace(" daddr", "").replace(" saddr", ""),
                        ));
                    }
                }
                Expr::Vmap { key, map } => {
                    let mut values = Vec::new();
                    for k in key {
                        match self.value(place, k, pkt, *mark)? {
                            Some(v) => values.push(v),
                            None => return Ok(RuleEnd::NoMatch),
                        }
                    }
                    let shown = values
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(" . ");
                    let found = table.maps.get(map).and_then(|elems| {
                        elems.iter().find(|(k, _)| {
                            k.len() == values.len()
                                && k.iter()
                                    .zip(&values)
                                    .all(|(r, v)| self.matches(table, v, r))
                        })
                    });
                    match found {
                        Some((_, verdict)) => {
                            let mut text =
                                format!("chain {chain}: {shown} in map {map} → {verdict}");
                            if map.starts_with("no-endpoint") {
                                text += " (the Service has no ready endpoints)";
                            }
                            self.line(&label, text);
                            return Ok(RuleEnd::Verdict(verdict.clone()));
                        }
                        None => {
                            if first_table && map == "service-ips" && !self.reported_service_miss {
                                self.reported_service_miss = true;
                                self.line(
                                    &label,
                                    format!(
                                        "chain {chain}: {shown} not in map {map}: no Service has this address and port"
                                    ),
                                );
                            }
                            return Ok(RuleEnd::NoMatch);
                        }
                    }
                }
                Expr::Verdict(v) => {
                    let mut line = format!("chain {chain}: {text}");
                    if !self.pending.is_empty() {
                        line = format!(
                            "chain {chain}: {}, so {text}",
                            std::mem::take(&mut self.pending).join(", ")
                        );
                    }
                    if !why.is_empty() {
                        line += &format!(" ({})", why.join(", "));
                    }
                    if let Verdict::Goto(target) | Verdict::Jump(target) = v
                        && let Some(ep) = endpoint_of_chain(target)
                    {
                        let count = table
                            .chains
                            .get(chain)
                            .map(|c| {
                                c.rules
                                    .iter()
                                    .filter(|r| {
                                        r.iter().any(|e| {
                                            matches!(e, Expr::Verdict(Verdict::Goto(t) | Verdict::Jump(t)) if t.starts_with("endpoint-"))
                                        })
                                    })
                                    .count()
                            })
                            .unwrap_or(0);
                        line += &format!(
                            ": endpoint {}:{} of {count} is {}",
                            ep.0,
                            ep.1,
                            self.describe_endpoint(ep.0)
                        );
                    }
                    // Plain jumps between kube-proxy's own chains and `return`s say nothing
                    // the following lines do not; goto, masquerade marks and drops do.
                    let telling = match v {
                        Verdict::Jump(t) => t.starts_with("mark-for"),
                        Verdict::Return | Verdict::Continue => false,
                        _ => true,
                    };
                    if telling {
                        self.line(&label, line);
                    }
                    return Ok(RuleEnd::Verdict(v.clone()));
                }
                Expr::SetMark { op, value } => {
                    *mark = match op {
                        '|' => *mark | value,
                        '^' => *mark ^ value,
                        '&' => *mark & value,
                        _ => *value,
                    };
                }
                Expr::Dnat { addr, port } => {
                    let before = format!("{}:{}", pkt.dst, pkt.dport);
                    pkt.dst = *addr;
                    if let Some(p) = port {
                        pkt.dport = *p;
                    }
                    self.line(
                        &label,
                        format!(
                            "chain {chain}: dnat {before} → {}:{} ({})",
                            pkt.dst,
                            pkt.dport,
                            self.describe_endpoint(pkt.dst)
                        ),
                    );
                    return Ok(RuleEnd::Final(Final::Dnat));
                }
                Expr::Masquerade { .. } => return Ok(RuleEnd::Final(Final::Masquerade)),
                Expr::Reject => {
                    self.line(&label, format!("chain {chain}: {text}"));
                    return Ok(RuleEnd::Final(Final::Reject(format!(
                        "{label}: chain {chain}: {text}"
                    ))));
                }
                Expr::Ignored | Expr::Comment(_) => {}
                Expr::Unknown(json) => {
                    self.line(
                        &label,
                        format!("chain {chain}: a rule this trace does not understand ({json}) is skipped"),
                    );
                    return Ok(RuleEnd::NoMatch);
                }
            }
        }
        Ok(RuleEnd::Next)
    }

    #[allow(clippy::too_many_arguments)]
    fn eval_chain(
        &mut self,
        table: &NftTable,
        place: &Place,
        chain: &str,
        pkt: &mut Packet,
        mark: &mut u64,
        depth: usize,
        first_table: bool,
    ) -> Result<ChainEnd, Stop> {
        if depth > MAX_CHAIN_DEPTH {
            return Ok(ChainEnd::Through);
        }
        let Some(c) = table.chains.get(chain) else {
            return Ok(ChainEnd::Through);
        };
        for rule in &c.rules {
            match self.eval_rule(table, place, chain, rule, pkt, mark, first_table)? {
                RuleEnd::NoMatch | RuleEnd::Next | RuleEnd::Verdict(Verdict::Continue) => {}
                RuleEnd::Final(f) => return Ok(ChainEnd::Final(f)),
                RuleEnd::Verdict(Verdict::Accept) => return Ok(ChainEnd::Final(Final::Accept)),
                RuleEnd::Verdict(Verdict::Drop) => {
                    return Ok(ChainEnd::Final(Final::Drop(format!(
                        "{}: chain {chain}: {}",
                        self.label(place),
                        rule_text(rule)
                    ))));
                }
                RuleEnd::Verdict(Verdict::Return) => return Ok(ChainEnd::Through),
                RuleEnd::Verdict(Verdict::Jump(target)) => {
                    if let ChainEnd::Final(f) =
                        self.eval_chain(table, place, &target, pkt, mark, depth + 1, first_table)?
                    {
                        return Ok(ChainEnd::Final(f));
                    }
                }
                RuleEnd::Verdict(Verdict::Goto(target)) => {
                    return self.eval_chain(
                        table,
                        place,
                        &target,
                        pkt,
                        mark,
                        depth + 1,
                        first_table,
                    );
                }
            }
        }
        Ok(ChainEnd::Through)
    }

    /// Runs every base chain of `hook` in priority order. `Ok(None)` means the packet goes on.
    fn run_hook(
        &mut self,
        place: &Place,
        hook: &str,
        pkt: &mut Packet,
        mark: &mut u64,
        first_table: bool,
    ) -> Result<Option<Final>, Stop> {
        let Some(table) = self.table(&place.netns)? else {
            return Ok(None);
        };
        let mut bases: Vec<(&String, i64)> = table
            .chains
            .iter()
            .filter_map(|(name, c)| match &c.hook {
                Some((h, prio)) if h == hook => Some((name, *prio)),
                _ => None,
            })
            .collect();
        bases.sort_by_key(|(name, prio)| (*prio, (*name).clone()));
        let mut masquerade = false;
        for (name, _) in bases {
            match self.eval_chain(table, place, name, pkt, mark, 0, first_table)? {
                ChainEnd::Through | ChainEnd::Final(Final::Accept | Final::Dnat) => {}
                ChainEnd::Final(Final::Masquerade) => masquerade = true,
                ChainEnd::Final(f) => return Ok(Some(f)),
            }
        }
        Ok(masquerade.then_some(Final::Masquerade))
    }

    /// The route of `pkt` in `place`; `Err(outcome)` when there is none.
    fn lookup(
        &mut self,
        place: &Place,
        pkt: &Packet,
        from: Option<Ipv4Addr>,
        iif: Option<&str>,
    ) -> Result<Result<RouteAnswer, Outcome>, Stop> {
        let label = self.label(place);
        let answer = self.route(RouteQuery {
            netns: place.netns.clone(),
            dst: pkt.dst,
            from,
            iif: iif.map(str::to_string),
        })?;
        Ok(match answer {
            Ok(a) if a.kind == "unicast" || a.kind == "local" => Ok(a),
            Ok(a) => {
                self.line(&label, format!("route {}: {}", pkt.dst, a.entry));
                Err(Outcome::NoRoute(format!(
                    "{label}: {} is a {} route",
                    pkt.dst, a.kind
                )))
            }
            Err(e) => {
                self.line(&label, format!("route {}: {e}", pkt.dst));
                Err(Outcome::NoRoute(format!("{label}: {} ({e})", pkt.dst)))
            }
        })
    }

    /// Follows the packet from `place` until it is delivered, refused or lost.
    fn walk(&mut self, start: Place, first: Packet, source_known: bool) -> Result<Outcome, Stop> {
        let mut place = start;
        let mut pkt = first;
        // `None`: the packet is sent from this namespace; `Some(dev)`: it arrives on dev.
        let mut iif: Option<String> = None;
        let mut source_known = source_known;
        let mut first_table = true;
        for _ in 0..MAX_HOPS {
            let label = self.label(&place);
            let has_table =
                !matches!(place.kind, PlaceKind::Pod(_)) && self.table(&place.netns)?.is_some();
            let mut mark = 0u64;
            let carries_l4 = pkt.inner.is_none();

            // A pod receiving on its eth0: the end.
            if let (PlaceKind::Pod(i), Some(_)) = (&place.kind, &iif) {
                let p = &self.facts.pods[*i];
                self.line(
                    "pod",
                    format!(
                        "{}/{} ({}) receives the {} connection on eth0, port {}, from {}",
                        p.namespace,
                        p.name,
                        pkt.dst,
                        pkt.proto.as_str().to_uppercase(),
                        pkt.dport,
                        pkt.src,
                    ),
                );
                return Ok(Outcome::Pod {
                    namespace: p.namespace.clone(),
                    name: p.name.clone(),
                    node: p.node.clone().unwrap_or_default(),
                    ip: pkt.dst,
                    port: pkt.dport,
                });
            }

            let route = match &iif {
                None => {
                    // Sent from here: the socket's route picks the source address first.
                    let original = match self.lookup(&place, &pkt, None, None)? {
                        Ok(a) => a,
                        Err(outcome) => return Ok(outcome),
                    };
                    if !source_known {
                        pkt.src = original.prefsrc.unwrap_or(pkt.src);
                        source_known = true;
                    }
                    if carries_l4 {
                        self.line(
                            &label,
                            format!("route {}: {} (source {})", pkt.dst, original.entry, pkt.src),
                        );
                    }
                    let before = pkt.dst;
                    if carries_l4 && has_table {
                        if let Some(f) =
                            self.run_hook(&place, "output", &mut pkt, &mut mark, first_table)?
                        {
                            return Ok(refused(f));
                        }
                        first_table = false;
                    }
                    if pkt.dst == before {
                        original
                    } else {
                        match self.lookup(&place, &pkt, Some(pkt.src), None)? {
                            Ok(a) => {
                                self.line(&label, format!("route {}: {}", pkt.dst, a.entry));
                                a
                            }
                            Err(outcome) => return Ok(outcome),
                        }
                    }
                }
                Some(dev) => {
                    let dev = dev.clone();
                    if carries_l4 && has_table {
                        if let Some(f) =
                            self.run_hook(&place, "prerouting", &mut pkt, &mut mark, first_table)?
                        {
                            return Ok(refused(f));
                        }
                        first_table = false;
                    }
                    match self.lookup(&place, &pkt, Some(pkt.src), Some(&dev))? {
                        Ok(a) => {
                            if a.kind != "local" {
                                self.line(
                                    &label,
                                    format!(
                                        "in on {dev}; route {} from {}: {}",
                                        pkt.dst, pkt.src, a.entry
                                    ),
                                );
                            }
                            a
                        }
                        Err(outcome) => return Ok(outcome),
                    }
                }
            };

            if route.kind == "local" {
                if carries_l4
                    && has_table
                    && let Some(f) = self.run_hook(&place, "input", &mut pkt, &mut mark, false)?
                {
                    return Ok(refused(f));
                }
                if let Some((encap, inner)) = pkt.inner.take() {
                    let (how, dev) = match encap {
                        Encap::Ipip => ("IPIP", IPIP_DEVICE),
                        Encap::Vxlan => ("VXLAN", VXLAN_DEVICE),
                    };
                    self.line(
                        &label,
                        format!(
                            "in on {}; {} is this node's: {how} decapsulated, the inner packet {} → {}:{} enters on {dev}",
                            iif.as_deref().unwrap_or("?"),
                            pkt.dst,
                            inner.src,
                            inner.dst,
                            inner.dport
                        ),
                    );
                    pkt = *inner;
                    iif = Some(dev.to_string());
                    continue;
                }
                self.line(
                    &label,
                    format!(
                        "{} is a local address of {label} (route {})",
                        pkt.dst, route.entry
                    ),
                );
                return Ok(Outcome::Local {
                    place: label,
                    addr: pkt.dst,
                    port: pkt.dport,
                });
            }

            if iif.is_some()
                && carries_l4
                && has_table
                && let Some(f) = self.run_hook(&place, "forward", &mut pkt, &mut mark, false)?
            {
                return Ok(refused(f));
            }
            if carries_l4 && has_table {
                let before = pkt.src;
                if let Some(Final::Masquerade) =
                    self.run_hook(&place, "postrouting", &mut pkt, &mut mark, false)?
                {
                    let own = self.route(RouteQuery {
                        netns: place.netns.clone(),
                        dst: pkt.dst,
                        from: None,
                        iif: None,
                    })?;
                    if let Ok(RouteAnswer {
                        prefsrc: Some(src), ..
                    }) = own
                    {
                        pkt.src = src;
                    }
                    let change = if before == pkt.src {
                        format!(
                            "source stays {before} (the address the kernel picks for {})",
                            route.dev
                        )
                    } else {
                        format!(
                            "source {before} → {} (the kernel's source address for {})",
                            pkt.src, route.dev
                        )
                    };
                    self.line(
                        &label,
                        format!(
                            "chain masquerading: the masquerade mark is set → masquerade fully-random: {change}, source port chosen at random"
                        ),
                    );
                }
            }

            // Out of `route.dev`: encapsulate, or find the namespace on the other end.
            if route.dev == IPIP_DEVICE || route.dev == VXLAN_DEVICE {
                let Some(via) = route.gateway else {
                    return Ok(Outcome::Lost(format!(
                        "{label}: route via {} has no next hop",
                        route.dev
                    )));
                };
                let (encap, remote) = if route.dev == IPIP_DEVICE {
                    (Encap::Ipip, via)
                } else {
                    let key = (place.netns.clone(), via);
                    match self.facts.vxlan_remotes.get(&key) {
                        Some(Some(remote)) => (Encap::Vxlan, *remote),
                        Some(None) => {
                            return Ok(Outcome::Lost(format!(
                                "{label}: no VXLAN neighbour/FDB entry for {via}"
                            )));
                        }
                        None => {
                            return Err(Stop::Need(Need::VxlanRemote {
                                netns: place.netns.clone(),
                                via,
                            }));
                        }
                    }
                };
                let outer_route = self.route(RouteQuery {
                    netns: place.netns.clone(),
                    dst: remote,
                    from: None,
                    iif: None,
                })?;
                let outer_src = match &outer_route {
                    Ok(a) => a.prefsrc.unwrap_or(pkt.src),
                    Err(_) => pkt.src,
                };
                let (how, port) = match encap {
                    Encap::Ipip => ("IPIP (IP protocol 4)".to_string(), 0),
                    Encap::Vxlan => (
                        format!("VXLAN (UDP port {VXLAN_PORT}) to VTEP {via}"),
                        VXLAN_PORT,
                    ),
                };
                self.line(
                    &label,
                    format!(
                        "{} encapsulates into {how}: outer {outer_src} → {remote}",
                        route.dev
                    ),
                );
                let inner = std::mem::replace(
                    &mut pkt,
                    Packet {
                        src: outer_src,
                        dst: remote,
                        dport: port,
                        proto: L4::Udp,
                        inner: None,
                    },
                );
                pkt.inner = Some((encap, Box::new(inner)));
                let outer = match self.lookup(&place, &pkt, None, None)? {
                    Ok(a) => a,
                    Err(outcome) => return Ok(outcome),
                };
                self.line(&label, format!("route {remote}: {}", outer.entry));
                match self.next_place(&place, &outer, &pkt)? {
                    Ok((next, dev)) => {
                        place = next;
                        iif = Some(dev);
                    }
                    Err(outcome) => return Ok(outcome),
                }
                continue;
            }
            match self.next_place(&place, &route, &pkt)? {
                Ok((next, dev)) => {
                    place = next;
                    iif = Some(dev);
                }
                Err(outcome) => return Ok(outcome),
            }
        }
        Ok(Outcome::Lost(format!(
            "more than {MAX_HOPS} hops: the packet loops"
        )))
    }

    /// The namespace on the other end of `route.dev`, and the device the packet arrives on.
    fn next_place(
        &mut self,
        place: &Place,
        route: &RouteAnswer,
        pkt: &Packet,
    ) -> Result<Result<(Place, String), Outcome>, Stop> {
        let label = self.label(place);
        let next_hop = route.gateway.unwrap_or(pkt.dst);
        // A pod's eth0 leads to its node, arriving on the pod's cali veth.
        if let PlaceKind::Pod(i) = &place.kind {
            let pod = &self.facts.pods[*i];
            let (Some(node), Some(ip)) = (pod.node.as_deref(), pod.ip) else {
                return Ok(Err(Outcome::Lost("the pod has no node".into())));
            };
            let Some(next) = self.node_place(node) else {
                return Ok(Err(Outcome::Lost(format!("node {node} is not in the lab"))));
            };
            let back = self.route(RouteQuery {
                netns: next.netns.clone(),
                dst: ip,
                from: None,
                iif: None,
            })?;
            let dev = match back {
                Ok(a) => a.dev,
                Err(e) => {
                    return Ok(Err(Outcome::Lost(format!(
                        "{node} has no route back to {ip}: {e}"
                    ))));
                }
            };
            return Ok(Ok((next, dev)));
        }
        // A node's cali veth leads into the pod with that address.
        if route.dev.starts_with("cali") {
            return Ok(
                match self
                    .facts
                    .pods
                    .iter()
                    .position(|p| p.ip == Some(pkt.dst) && !p.host_network)
                {
                    Some(i) => Ok((
                        Place {
                            netns: self.facts.pods[i].netns.clone().unwrap_or_default(),
                            kind: PlaceKind::Pod(i),
                        },
                        "eth0".to_string(),
                    )),
                    None => Err(Outcome::Lost(format!(
                        "{label}: {} leads to no pod the API server knows with address {}",
                        route.dev, pkt.dst
                    ))),
                },
            );
        }
        let lab = &self.facts.lab;
        if let Some(n) = lab.nodes.iter().find(|n| n.ip == next_hop) {
            let arrives = Place {
                netns: n.netns.clone(),
                kind: PlaceKind::Node(n.name.clone()),
            };
            return Ok(Ok((arrives, "eth0".to_string())));
        }
        if let PlaceKind::Node(name) = &place.kind
            && let Some(me) = lab.node(name)
            && me.gateway == next_hop
        {
            let router = Place {
                netns: lab.router_netns.clone(),
                kind: PlaceKind::Router,
            };
            let back = self.route(RouteQuery {
                netns: router.netns.clone(),
                dst: me.ip,
                from: None,
                iif: None,
            })?;
            return Ok(match back {
                Ok(a) => Ok((router, a.dev)),
                Err(e) => Err(Outcome::Lost(format!(
                    "the router has no route back to {name}: {e}"
                ))),
            });
        }
        Ok(Err(Outcome::Lost(format!(
            "{label}: next hop {next_hop} on {} is no namespace of this lab: the packet leaves the lab",
            route.dev
        ))))
    }

    fn start(&mut self) -> Result<Outcome, Stop> {
        let req = self.req;
        let lab = &self.facts.lab;
        let proto = req.protocol.as_str().to_uppercase();
        let (place, src, source_known) = match &req.from {
            Origin::Node(name) => {
                let place = self.node_place(name).ok_or_else(|| unknown(lab, name))?;
                let ip = lab
                    .node(name)
                    .map(|n| n.ip)
                    .unwrap_or(Ipv4Addr::UNSPECIFIED);
                self.line(
                    "",
                    format!(
                        "new {proto} connection from node {name} ({ip}) to {}",
                        req.to
                    ),
                );
                (place, ip, false)
            }
            Origin::Pod { namespace, name } => {
                let id = format!("{namespace}/{name}");
                let i = self
                    .facts
                    .pods
                    .iter()
                    .position(|p| &p.namespace == namespace && &p.name == name)
                    .ok_or_else(|| unknown(lab, &id))?;
                let pod = &self.facts.pods[i];
                let node = pod
                    .node
                    .clone()
                    .ok_or_else(|| TraceError::PodWithoutNode(id.clone()))?;
                let ip = pod.ip.ok_or_else(|| TraceError::PodWithoutIp(id.clone()))?;
                if pod.host_network || pod.netns.is_none() {
                    // A hostNetwork pod sends from its node's own namespace.
                    let place = self
                        .node_place(&node)
                        .ok_or(TraceError::PodWithoutNode(id.clone()))?;
                    self.line(
                        "",
                        format!(
                            "new {proto} connection from pod {id} (hostNetwork, node {node}) to {}",
                            req.to
                        ),
                    );
                    (place, ip, false)
                } else {
                    self.line(
                        "",
                        format!(
                            "new {proto} connection from pod {id} ({ip}, on {node}) to {}",
                            req.to
                        ),
                    );
                    (
                        Place {
                            netns: pod.netns.clone().unwrap_or_default(),
                            kind: PlaceKind::Pod(i),
                        },
                        ip,
                        true,
                    )
                }
            }
        };
        let pkt = Packet {
            src,
            dst: *req.to.ip(),
            dport: req.to.port(),
            proto: req.protocol,
            inner: None,
        };
        self.walk(place, pkt, source_known)
    }
}

/// `endpoint-HASH-ns/svc/proto/port__IP/PORT` → (IP, PORT).
fn endpoint_of_chain(chain: &str) -> Option<(Ipv4Addr, u16)> {
    let rest = chain.strip_prefix("endpoint-")?;
    let (_, addr) = rest.rsplit_once("__")?;
    let (ip, port) = addr.split_once('/')?;
    Some((ip.parse().ok()?, port.parse().ok()?))
}

fn unknown(lab: &LabRecord, from: &str) -> TraceError {
    TraceError::UnknownOrigin {
        lab: lab.name.clone(),
        from: from.to_string(),
        nodes: lab
            .nodes
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn refused(f: Final) -> Outcome {
    match f {
        Final::Reject(why) => Outcome::Rejected(why),
        Final::Drop(why) => Outcome::Dropped(why),
        Final::Accept | Final::Dnat | Final::Masquerade => {
            Outcome::Lost("unexpected verdict".to_string())
        }
    }
}

/// The pure core: the whole trace from `facts`, or the next fact it needs.
pub fn trace(facts: &Facts, req: &TraceRequest) -> Result<Progress, TraceError> {
    let mut walk = Walk {
        facts,
        req,
        lines: Vec::new(),
        draws_used: 0,
        pending: Vec::new(),
        reported_service_miss: false,
    };
    match walk.start() {
        Ok(outcome) => {
            if let Outcome::Rejected(why) = &outcome
                && why.contains("reject-chain")
            {
                walk.line("", "(reject-chain answers at once: ICMP port unreachable, curl says \"Connection refused\")");
            }
            Ok(Progress::Done(Trace {
                lines: walk.lines,
                outcome,
            }))
        }
        Err(Stop::Need(need)) => Ok(Progress::Need(need)),
        Err(Stop::Error(e)) => Err(e),
    }
}

// ---------------------------------------------------------------------------------------------
// The shell.

fn net(e: impl fmt::Display) -> LabError {
    LabError::Network(e.to_string())
}

/// `ip -j -d route get [fibmatch] …` of one query.
async fn route_get(q: &RouteQuery, fibmatch: bool) -> Result<Value, String> {
    let dst = q.dst.to_string();
    let from = q.from.map(|f| f.to_string());
    let mut args: Vec<&str> = vec!["-j", "-d", "route", "get"];
    if fibmatch {
        args.push("fibmatch");
    }
    args.push(&dst);
    if let Some(from) = &from {
        args.extend(["from", from]);
    }
    if let Some(iif) = &q.iif {
        args.extend(["iif", iif]);
    }
    match dataplane::ip::run(Some(&q.netns), &args).await {
        Ok(out) => {
            let v: Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
            v.get(0).cloned().ok_or_else(|| "empty answer".to_string())
        }
        Err(dataplane::DataplaneError::Command { stderr, .. }) => Err(stderr.trim().to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// A routing-table entry as `ip route` prints it, from its JSON.
fn entry_text(v: &Value) -> String {
    let s = |k: &str| v.get(k).and_then(Value::as_str);
    let mut out = String::new();
    if let Some(kind) = s("type").filter(|t| *t != "unicast") {
        out += kind;
        out.push(' ');
    }
    out += s("dst").unwrap_or("?");
    if let Some(gw) = s("gateway") {
        out += &format!(" via {gw}");
    }
    if let Some(dev) = s("dev") {
        out += &format!(" dev {dev}");
    }
    if let Some(p) = s("protocol") {
        out += &format!(" proto {p}");
    }
    if let Some(scope) = s("scope").filter(|s| *s != "global") {
        out += &format!(" scope {scope}");
    }
    if let Some(src) = s("prefsrc") {
        out += &format!(" src {src}");
    }
    for flag in v
        .get("flags")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(f) = flag.as_str() {
            out += &format!(" {f}");
        }
    }
    out
}

async fn answer_route(q: &RouteQuery) -> Result<RouteAnswer, String> {
    let got = route_get(q, false).await?;
    let entry = match route_get(q, true).await {
        Ok(v) => entry_text(&v),
        Err(_) => entry_text(&got),
    };
    let s = |k: &str| got.get(k).and_then(Value::as_str);
    Ok(RouteAnswer {
        kind: s("type").unwrap_or("unicast").to_string(),
        dev: s("dev").unwrap_or_default().to_string(),
        gateway: s("gateway").and_then(|g| g.parse().ok()),
        prefsrc: s("prefsrc").and_then(|g| g.parse().ok()),
        entry,
    })
}

/// `nft -j list table ip kube-proxy` inside `netns`; `None` when the table does not exist.
async fn read_table(netns: &str) -> Result<Option<NftTable>, LabError> {
    let fds = dataplane::netns::NsFds::open(&dataplane::netns::path(netns), None).map_err(net)?;
    let mut cmd = tokio::process::Command::new("nft");
    cmd.args(["-j", "list", "table", "ip", "kube-proxy"])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    fds.apply_to(cmd.as_std_mut());
    let out = cmd
        .output()
        .await
        .map_err(|e| net(format!("running nft: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("No such file or directory") {
            return Ok(None);
        }
        return Err(net(format!(
            "nft -j list table ip kube-proxy in {netns}: {}",
            stderr.trim()
        )));
    }
    parse_nft_json(&String::from_utf8_lossy(&out.stdout))
        .map(Some)
        .map_err(net)
}

/// The remote node behind VXLAN next hop `via`: its neighbour entry's MAC, then that MAC's
/// FDB destination, as the kernel's VXLAN device resolves it.
async fn vxlan_remote(netns: &str, via: Ipv4Addr) -> Result<Option<Ipv4Addr>, LabError> {
    let via_s = via.to_string();
    let neigh = dataplane::ip::run(
        Some(netns),
        &["-j", "neigh", "show", "to", &via_s, "dev", VXLAN_DEVICE],
    )
    .await
    .map_err(net)?;
    let neigh: Value = serde_json::from_str(&neigh).map_err(net)?;
    let Some(mac) = neigh
        .get(0)
        .and_then(|n| n.get("lladdr"))
        .and_then(Value::as_str)
    else {
        return Ok(None);
    };
    let out = tokio::process::Command::new("bridge")
        .args(["-n", netns, "-j", "fdb", "show", "dev", VXLAN_DEVICE])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| net(format!("running bridge: {e}")))?;
    let fdb: Value = serde_json::from_slice(&out.stdout).map_err(net)?;
    Ok(fdb
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e.get("mac").and_then(Value::as_str) == Some(mac))
        .and_then(|e| e.get("dst")?.as_str()?.parse().ok()))
}

async fn pod_facts(lab: &RunningLab) -> Result<Vec<PodFact>, LabError> {
    use k8s_openapi::api::core::v1::Pod;
    let client = lab.client().await?;
    let api: kube::Api<Pod> = kube::Api::all(client);
    let pods = api
        .list(&Default::default())
        .await
        .map_err(|e| LabError::Client(e.to_string()))?;
    let prefix = crate::topology::pod_netns_prefix(&lab.record.name);
    Ok(pods
        .items
        .into_iter()
        .map(|p| {
            let spec = p.spec.unwrap_or_default();
            let host_network = spec.host_network == Some(true);
            PodFact {
                namespace: p.metadata.namespace.unwrap_or_default(),
                name: p.metadata.name.unwrap_or_default(),
                node: spec.node_name,
                ip: p
                    .status
                    .and_then(|s| s.pod_ip)
                    .and_then(|ip| ip.parse().ok()),
                host_network,
                netns: (!host_network)
                    .then(|| p.metadata.uid.map(|uid| format!("{prefix}{uid}")))
                    .flatten(),
            }
        })
        .collect())
}

/// Random numbers for `numgen`, from the standard library's per-process random hash keys.
fn random_draws(count: usize) -> Vec<u32> {
    use std::hash::{BuildHasher, Hasher};
    let state = std::collections::hash_map::RandomState::new();
    (0..count)
        .map(|i| {
            let mut h = state.build_hasher();
            h.write_usize(i);
            h.finish() as u32
        })
        .collect()
}

/// `kubelab trace`: gathers facts from the kernel and the API server as [`trace`] asks for
/// them, and returns the rendered trace.
pub async fn run(
    lab: &RunningLab,
    from: &str,
    to: SocketAddrV4,
    protocol: L4,
) -> Result<String, LabError> {
    let request = TraceRequest {
        from: Origin::parse(from, &lab.record),
        to,
        protocol,
        numgen_draws: random_draws(64),
    };
    let mut facts = Facts::new(lab.record.clone(), pod_facts(lab).await?);
    // Each round adds one fact; a trace needs a few dozen at most.
    for _ in 0..500 {
        match trace(&facts, &request).map_err(net)? {
            Progress::Done(t) => return Ok(t.render()),
            Progress::Need(Need::Table(ns)) => {
                let table = read_table(&ns).await?;
                facts.tables.insert(ns, table);
            }
            Progress::Need(Need::Route(q)) => {
                let answer = answer_route(&q).await;
                facts.routes.insert(q, answer);
            }
            Progress::Need(Need::VxlanRemote { netns, via }) => {
                let remote = vxlan_remote(&netns, via).await?;
                facts.vxlan_remotes.insert((netns, via), remote);
            }
        }
    }
    Err(net("the trace needed too many facts; giving up"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlab::NodeRecord;
    use serde_json::json;

    const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 104, 201, 93);
    const EMPTY_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 200, 200);
    const POD_A: Ipv4Addr = Ipv4Addr::new(192, 168, 79, 130); // on kube-2
    const POD_B: Ipv4Addr = Ipv4Addr::new(192, 168, 126, 65); // on kube-1
    const SVC_CHAIN: &str = "service-UHMWS6UG-default/cluster-demo/tcp/";
    const EP_A: &str = "endpoint-RPEQ4XJA-default/cluster-demo/tcp/__192.168.79.130/80";
    const EP_B: &str = "endpoint-R4VTDQFP-default/cluster-demo/tcp/__192.168.126.65/80";

    fn lab() -> LabRecord {
        let node = |name: &str, ip: [u8; 4], gw: [u8; 4]| NodeRecord {
            name: name.into(),
            netns: format!("t.{name}"),
            uts: "/x".into(),
            ip: Ipv4Addr::from(ip),
            prefix_len: 20,
            gateway: Ipv4Addr::from(gw),
        };
        LabRecord {
            name: "t".into(),
            router_netns: "t.router".into(),
            encapsulation: "ipip".into(),
            nodes: vec![
                node("kube-0", [10, 10, 68, 222], [10, 10, 64, 1]),
                node("kube-1", [10, 10, 95, 205], [10, 10, 80, 1]),
                node("kube-2", [10, 10, 98, 12], [10, 10, 96, 1]),
            ],
        }
    }

    fn pods() -> Vec<PodFact> {
        let pod = |name: &str, node: &str, ip: Ipv4Addr| PodFact {
            namespace: "default".into(),
            name: name.into(),
            node: Some(node.into()),
            ip: Some(ip),
            host_network: false,
            netns: Some(format!("t.pod.{name}")),
        };
        vec![pod("web-a", "kube-2", POD_A), pod("web-b", "kube-1", POD_B)]
    }

    fn rule(chain: &str, expr: Value) -> Value {
        json!({"rule": {"family": "ip", "table": "kube-proxy", "chain": chain, "expr": expr}})
    }

    fn daddr() -> Value {
        json!({"payload": {"protocol": "ip", "field": "daddr"}})
    }

    fn key3() -> Value {
        json!({"concat": [daddr(), {"meta": {"key": "l4proto"}}, {"payload": {"protocol": "th", "field": "dport"}}]})
    }

    /// kube-proxy's table on every node, in `nft -j` form, as the real lab lists it: one
    /// Service with two endpoints and NodePort 31234, one Service without endpoints.
    fn table_json() -> String {
        let base = |name: &str, ty: &str, hook: &str, prio: i64| json!({"chain": {"family": "ip", "table": "kube-proxy", "name": name, "type": ty, "hook": hook, "prio": prio, "policy": "accept"}});
        let endpoint = |chain: &str, ip: Ipv4Addr| {
            [
                rule(
                    chain,
                    json!([{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": ip.to_string()}}, {"jump": {"target": "mark-for-masquerade"}}]),
                ),
                rule(
                    chain,
                    json!([{"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}}, {"dnat": {"addr": ip.to_string(), "port": 80}}]),
                ),
            ]
        };
        let ct_new =
            json!({"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "new"}});
        let mut items = vec![
            json!({"metainfo": {"version": "1.0.6"}}),
            json!({"table": {"family": "ip", "name": "kube-proxy"}}),
            json!({"set": {"family": "ip", "name": "cluster-ips", "table": "kube-proxy", "type": "ipv4_addr", "elem": [CLUSTER_IP.to_string(), EMPTY_IP.to_string()]}}),
            json!({"map": {"family": "ip", "name": "no-endpoint-services", "table": "kube-proxy", "map": "verdict",
                "elem": [[{"concat": [EMPTY_IP.to_string(), "tcp", 80]}, {"goto": {"target": "reject-chain"}}]]}}),
            json!({"map": {"family": "ip", "name": "service-ips", "table": "kube-proxy", "map": "verdict",
                "elem": [[{"concat": [CLUSTER_IP.to_string(), "tcp", 8080]}, {"goto": {"target": SVC_CHAIN}}]]}}),
            json!({"map": {"family": "ip", "name": "service-nodeports", "table": "kube-proxy", "map": "verdict",
                "elem": [[{"concat": ["tcp", 31234]}, {"goto": {"target": "external-X-default/cluster-demo/tcp/"}}]]}}),
            base("filter-output", "filter", "output", -110),
            base("filter-forward", "filter", "forward", -110),
            base("filter-output-post-dnat", "filter", "output", -90),
            base("nat-output", "nat", "output", -100),
            base("nat-prerouting", "nat", "prerouting", -100),
            base("nat-postrouting", "nat", "postrouting", 100),
            rule(
                "filter-output",
                json!([ct_new, {"jump": {"target": "service-endpoints-check"}}]),
            ),
            rule(
                "filter-forward",
                json!([ct_new, {"jump": {"target": "service-endpoints-check"}}]),
            ),
            rule(
                "filter-forward",
                json!([ct_new, {"jump": {"target": "cluster-ips-check"}}]),
            ),
            rule(
                "filter-output-post-dnat",
                json!([ct_new, {"jump": {"target": "cluster-ips-check"}}]),
            ),
            rule("nat-output", json!([{"jump": {"target": "services"}}])),
            rule("nat-prerouting", json!([{"jump": {"target": "services"}}])),
            rule(
                "nat-postrouting",
                json!([{"jump": {"target": "masquerading"}}]),
            ),
            rule(
                "service-endpoints-check",
                json!([{"vmap": {"key": key3(), "data": "@no-endpoint-services"}}]),
            ),
            rule(
                "cluster-ips-check",
                json!([{"match": {"op": "==", "left": daddr(), "right": "@cluster-ips"}}, {"reject": {"type": "icmp", "expr": "port-unreachable"}}]),
            ),
            rule(
                "cluster-ips-check",
                json!([{"match": {"op": "==", "left": daddr(), "right": {"prefix": {"addr": "10.96.0.0", "len": 12}}}}, {"drop": null}]),
            ),
            rule("reject-chain", json!([{"reject": null}])),
            rule(
                "mark-for-masquerade",
                json!([{"mangle": {"key": {"meta": {"key": "mark"}}, "value": {"|": [{"meta": {"key": "mark"}}, 16384]}}}]),
            ),
            rule(
                "masquerading",
                json!([{"match": {"op": "==", "left": {"&": [{"meta": {"key": "mark"}}, 16384]}, "right": 0}}, {"return": null}]),
            ),
            rule(
                "masquerading",
                json!([{"mangle": {"key": {"meta": {"key": "mark"}}, "value": {"^": [{"meta": {"key": "mark"}}, 16384]}}}]),
            ),
            rule(
                "masquerading",
                json!([{"masquerade": {"flags": "fully-random"}}]),
            ),
            rule(
                "services",
                json!([{"vmap": {"key": key3(), "data": "@service-ips"}}]),
            ),
            rule(
                "services",
                json!([
                {"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}},
                {"match": {"op": "!=", "left": daddr(), "right": {"prefix": {"addr": "127.0.0.0", "len": 8}}}},
                {"vmap": {"key": {"concat": [{"meta": {"key": "l4proto"}}, {"payload": {"protocol": "th", "field": "dport"}}]}, "data": "@service-nodeports"}}]),
            ),
            rule(
                "external-X-default/cluster-demo/tcp/",
                json!([{"jump": {"target": "mark-for-masquerade"}}]),
            ),
            rule(
                "external-X-default/cluster-demo/tcp/",
                json!([{"goto": {"target": SVC_CHAIN}}]),
            ),
            rule(
                SVC_CHAIN,
                json!([
                {"match": {"op": "==", "left": daddr(), "right": CLUSTER_IP.to_string()}},
                {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 8080}},
                {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "192.168.0.0", "len": 16}}}},
                {"jump": {"target": "mark-for-masquerade"}}]),
            ),
            rule(
                SVC_CHAIN,
                json!([{"match": {"op": "==", "left": {"numgen": {"mode": "random", "mod": 2, "offset": 0}}, "right": 0}}, {"goto": {"target": EP_A}}]),
            ),
            rule(SVC_CHAIN, json!([{"goto": {"target": EP_B}}])),
        ];
        items.extend(endpoint(EP_A, POD_A));
        items.extend(endpoint(EP_B, POD_B));
        json!({"nftables": items}).to_string()
    }

    fn ok(
        kind: &str,
        dev: &str,
        gw: Option<[u8; 4]>,
        src: Option<[u8; 4]>,
        entry: &str,
    ) -> Result<RouteAnswer, String> {
        Ok(RouteAnswer {
            kind: kind.into(),
            dev: dev.into(),
            gateway: gw.map(Ipv4Addr::from),
            prefsrc: src.map(Ipv4Addr::from),
            entry: entry.into(),
        })
    }

    /// The kernel's answers in a lab laid out like the course's (IPIP, nodes on three subnets).
    fn answer(q: &RouteQuery) -> Result<RouteAnswer, String> {
        let d = q.dst.octets();
        match q.netns.as_str() {
            "t.kube-1" => match d {
                [10, 10, 95, 205] => ok(
                    "local",
                    "eth0",
                    None,
                    Some([10, 10, 95, 205]),
                    "local 10.10.95.205 dev eth0",
                ),
                [192, 168, 79, _] => ok(
                    "unicast",
                    "tunl0",
                    Some([10, 10, 98, 12]),
                    Some([192, 168, 126, 64]),
                    "192.168.79.128/26 via 10.10.98.12 dev tunl0 proto 80 onlink",
                ),
                [192, 168, 126, 65] => ok(
                    "unicast",
                    "calib",
                    None,
                    Some([10, 10, 95, 205]),
                    "192.168.126.65 dev calib scope link",
                ),
                _ => ok(
                    "unicast",
                    "eth0",
                    Some([10, 10, 80, 1]),
                    Some([10, 10, 95, 205]),
                    "default via 10.10.80.1 dev eth0",
                ),
            },
            "t.kube-2" => match d {
                [10, 10, 98, 12] => ok(
                    "local",
                    "eth0",
                    None,
                    Some([10, 10, 98, 12]),
                    "local 10.10.98.12 dev eth0",
                ),
                [192, 168, 79, 130] => ok(
                    "unicast",
                    "calia",
                    None,
                    Some([10, 10, 98, 12]),
                    "192.168.79.130 dev calia scope link",
                ),
                _ => ok(
                    "unicast",
                    "eth0",
                    Some([10, 10, 96, 1]),
                    Some([10, 10, 98, 12]),
                    "default via 10.10.96.1 dev eth0",
                ),
            },
            "t.router" => match d {
                [10, 10, 98, _] => ok(
                    "unicast",
                    "n2",
                    None,
                    Some([10, 10, 96, 1]),
                    "10.10.96.0/20 dev n2",
                ),
                [10, 10, 95, _] => ok(
                    "unicast",
                    "n1",
                    None,
                    Some([10, 10, 80, 1]),
                    "10.10.80.0/20 dev n1",
                ),
                [10, 10, 68, _] => ok(
                    "unicast",
                    "n0",
                    None,
                    Some([10, 10, 64, 1]),
                    "10.10.64.0/20 dev n0",
                ),
                _ => Err("RTNETLINK answers: Network is unreachable".into()),
            },
            "t.pod.web-b" => ok(
                "unicast",
                "eth0",
                Some([169, 254, 1, 1]),
                Some([192, 168, 126, 65]),
                "default via 169.254.1.1 dev eth0",
            ),
            other => panic!("no route lookup expected in {other}: {q:?}"),
        }
    }

    /// Runs the pure core to the end, answering its needs from the hand-written facts.
    fn run(from: Origin, to: &str, draws: &[u32]) -> Trace {
        let table = parse_nft_json(&table_json()).expect("table parses");
        let mut facts = Facts::new(lab(), pods());
        let req = TraceRequest {
            from,
            to: to.parse().expect("IP:PORT"),
            protocol: L4::Tcp,
            numgen_draws: draws.to_vec(),
        };
        for _ in 0..100 {
            match trace(&facts, &req).expect("trace starts") {
                Progress::Done(t) => return t,
                Progress::Need(Need::Table(ns)) => {
                    let has = ns.starts_with("t.kube-");
                    facts.tables.insert(ns, has.then(|| table.clone()));
                }
                Progress::Need(Need::Route(q)) => {
                    let a = answer(&q);
                    facts.routes.insert(q, a);
                }
                Progress::Need(need) => panic!("unexpected need {need:?}"),
            }
        }
        panic!("trace did not finish")
    }

    fn node(name: &str) -> Origin {
        Origin::Node(name.into())
    }

    fn has(t: &Trace, place: &str, text: &str) -> bool {
        t.lines
            .iter()
            .any(|l| l.place == place && l.text.contains(text))
    }

    #[test]
    fn cluster_ip_to_an_endpoint_on_another_node_goes_through_ipip_and_the_router() {
        let t = run(node("kube-1"), "10.104.201.93:8080", &[0]);
        let text = t.render();
        assert_eq!(
            t.outcome,
            Outcome::Pod {
                namespace: "default".into(),
                name: "web-a".into(),
                node: "kube-2".into(),
                ip: POD_A,
                port: 80
            },
            "{text}"
        );
        assert!(
            has(
                &t,
                "kube-1",
                &format!("10.104.201.93 . tcp . 8080 in map service-ips → goto {SVC_CHAIN}")
            ),
            "{text}"
        );
        assert!(
            has(&t, "kube-1", "ip 10.10.95.205 is outside 192.168.0.0/16"),
            "{text}"
        );
        assert!(has(&t, "kube-1", "numgen random mod 2 drew 0"), "{text}");
        assert!(
            has(
                &t,
                "kube-1",
                "endpoint 192.168.79.130:80 of 2 is pod default/web-a on kube-2"
            ),
            "{text}"
        );
        assert!(
            has(&t, "kube-1", "dnat 10.104.201.93:8080 → 192.168.79.130:80"),
            "{text}"
        );
        assert!(
            has(&t, "kube-1", "192.168.79.128/26 via 10.10.98.12 dev tunl0"),
            "{text}"
        );
        assert!(
            has(
                &t,
                "kube-1",
                "source 10.10.95.205 → 192.168.126.64 (the kernel's source address for tunl0)"
            ),
            "{text}"
        );
        assert!(
            has(
                &t,
                "kube-1",
                "IPIP (IP protocol 4): outer 10.10.95.205 → 10.10.98.12"
            ),
            "{text}"
        );
        assert!(
            has(
                &t,
                "router",
                "in on n1; route 10.10.98.12 from 10.10.95.205: 10.10.96.0/20 dev n2"
            ),
            "{text}"
        );
        assert!(
            has(
                &t,
                "kube-2",
                "IPIP decapsulated, the inner packet 192.168.126.64 → 192.168.79.130:80 enters on tunl0"
            ),
            "{text}"
        );
        assert!(has(&t, "kube-2", "192.168.79.130 dev calia"), "{text}");
        assert!(
            has(
                &t,
                "pod",
                "default/web-a (192.168.79.130) receives the TCP connection on eth0, port 80, from 192.168.126.64"
            ),
            "{text}"
        );
        assert!(
            text.starts_with(
                "new TCP connection from node kube-1 (10.10.95.205) to 10.104.201.93:8080\n"
            ),
            "{text}"
        );
        assert!(
            text.ends_with(
                "result: lands in pod default/web-a (192.168.79.130) on kube-2, port 80\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn numgen_draw_decides_the_endpoint() {
        // 1 mod 2 is not 0: the cascade falls to its last rule, the endpoint on kube-1 itself.
        let t = run(node("kube-1"), "10.104.201.93:8080", &[1]);
        let text = t.render();
        assert!(
            matches!(&t.outcome, Outcome::Pod { name, node, .. } if name == "web-b" && node == "kube-1"),
            "{text}"
        );
        assert!(
            has(&t, "kube-1", "numgen random mod 2 drew 1 (not 0), so goto"),
            "{text}"
        );
        assert!(!text.contains("IPIP"), "{text}");
        assert!(has(&t, "kube-1", "192.168.126.65 dev calib"), "{text}");
    }

    #[test]
    fn node_port_on_the_nodes_own_address_is_masqueraded() {
        let t = run(node("kube-1"), "10.10.95.205:31234", &[0]);
        let text = t.render();
        assert!(
            has(
                &t,
                "kube-1",
                "10.10.95.205 . tcp . 31234 not in map service-ips"
            ),
            "{text}"
        );
        assert!(
            has(
                &t,
                "kube-1",
                "tcp . 31234 in map service-nodeports → goto external-X-default/cluster-demo/tcp/"
            ),
            "{text}"
        );
        assert!(
            has(
                &t,
                "kube-1",
                "chain external-X-default/cluster-demo/tcp/: jump mark-for-masquerade"
            ),
            "{text}"
        );
        assert!(
            has(&t, "kube-1", "dnat 10.10.95.205:31234 → 192.168.79.130:80"),
            "{text}"
        );
        assert!(
            has(
                &t,
                "kube-1",
                "masquerade fully-random: source 10.10.95.205 → 192.168.126.64"
            ),
            "{text}"
        );
        assert!(
            matches!(&t.outcome, Outcome::Pod { name, .. } if name == "web-a"),
            "{text}"
        );
    }

    #[test]
    fn service_without_endpoints_is_rejected_on_the_first_node() {
        let t = run(node("kube-1"), "10.96.200.200:80", &[]);
        let text = t.render();
        assert!(
            matches!(&t.outcome, Outcome::Rejected(why) if why.contains("reject-chain")),
            "{text}"
        );
        assert!(
            has(
                &t,
                "kube-1",
                "10.96.200.200 . tcp . 80 in map no-endpoint-services → goto reject-chain (the Service has no ready endpoints)"
            ),
            "{text}"
        );
        assert!(!text.contains("router"), "{text}");
    }

    #[test]
    fn a_clusterip_on_a_port_it_does_not_serve_is_rejected() {
        let t = run(node("kube-1"), "10.104.201.93:9999", &[]);
        let text = t.render();
        assert!(
            matches!(&t.outcome, Outcome::Rejected(why) if why.contains("cluster-ips-check")),
            "{text}"
        );
    }

    #[test]
    fn a_pod_ip_is_routed_without_nat() {
        let t = run(node("kube-1"), "192.168.79.130:80", &[]);
        let text = t.render();
        assert!(
            has(
                &t,
                "kube-1",
                "192.168.79.130 . tcp . 80 not in map service-ips: no Service"
            ),
            "{text}"
        );
        assert!(!text.contains("dnat"), "{text}");
        assert!(!text.contains("masquerade"), "{text}");
        // The source the kernel picks for tunl0 routes is tunl0's own address.
        assert!(has(&t, "pod", "from 192.168.126.64"), "{text}");
        assert!(
            matches!(&t.outcome, Outcome::Pod { name, .. } if name == "web-a"),
            "{text}"
        );
    }

    #[test]
    fn an_unknown_address_has_no_route_at_the_router() {
        let t = run(node("kube-1"), "1.2.3.4:80", &[]);
        let text = t.render();
        assert!(
            has(&t, "kube-1", "1.2.3.4 . tcp . 80 not in map service-ips"),
            "{text}"
        );
        assert_eq!(
            t.outcome,
            Outcome::NoRoute("router: 1.2.3.4 (RTNETLINK answers: Network is unreachable)".into()),
            "{text}"
        );
    }

    #[test]
    fn from_a_pod_the_node_rewrites_on_prerouting_without_masquerade() {
        let from = Origin::Pod {
            namespace: "default".into(),
            name: "web-b".into(),
        };
        let t = run(from, "10.104.201.93:8080", &[0]);
        let text = t.render();
        assert!(
            has(
                &t,
                "pod",
                "default via 169.254.1.1 dev eth0 (source 192.168.126.65)"
            ),
            "{text}"
        );
        assert!(
            has(
                &t,
                "kube-1",
                "in on calib; route 192.168.79.130 from 192.168.126.65"
            ),
            "{text}"
        );
        assert!(!text.contains("mark-for-masquerade"), "{text}");
        assert!(
            has(
                &t,
                "kube-2",
                "the inner packet 192.168.126.65 → 192.168.79.130:80"
            ),
            "{text}"
        );
        assert!(
            matches!(&t.outcome, Outcome::Pod { name, .. } if name == "web-a"),
            "{text}"
        );
    }

    #[test]
    fn unknown_origins_are_errors() {
        let facts = Facts::new(lab(), pods());
        let req = TraceRequest {
            from: Origin::parse("nope", &lab()),
            to: "1.2.3.4:80".parse().unwrap(),
            protocol: L4::Tcp,
            numgen_draws: vec![],
        };
        assert!(matches!(
            trace(&facts, &req),
            Err(TraceError::UnknownOrigin { .. })
        ));
        assert_eq!(Origin::parse("kube-2", &lab()), node("kube-2"));
        assert_eq!(
            Origin::parse("kube-system/dns", &lab()),
            Origin::Pod {
                namespace: "kube-system".into(),
                name: "dns".into()
            }
        );
    }

    #[test]
    fn nft_json_parses_kube_proxy_shapes() {
        let t = parse_nft_json(&table_json()).unwrap();
        assert_eq!(t.chains["nat-output"].hook, Some(("output".into(), -100)));
        assert_eq!(
            rule_text(&t.chains[SVC_CHAIN].rules[1]),
            format!("numgen random mod 2 0 goto {EP_A}")
        );
        assert_eq!(
            rule_text(&t.chains["masquerading"].rules[0]),
            "meta mark & 0x00004000 0 return"
        );
        assert_eq!(t.maps["service-ips"].len(), 1);
        assert!(parse_nft_json("[]").is_err());
        assert!(parse_nft_json("not json").is_err());
    }
}
