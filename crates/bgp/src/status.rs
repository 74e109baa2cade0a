//! `kubelab bgp status`: each node's BGP peers and their sessions, like `calicoctl node status`
//! (which reads the same `birdc show protocols` and names peers from Calico's protocol names).

use std::fmt::Write;
use std::net::Ipv4Addr;

use crate::birdc::BirdProtocol;

/// How a peer came to be, from the prefix of its protocol name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerType {
    /// `Mesh_*`: another node of the full mesh.
    NodeToNodeMesh,
    /// `Global_*`: a peer of every node.
    Global,
    /// `Node_*`: a peer of this node only.
    NodeSpecific,
}

impl PeerType {
    /// As `calicoctl node status` prints it.
    pub fn label(self) -> &'static str {
        match self {
            PeerType::NodeToNodeMesh => "node-to-node mesh",
            PeerType::Global => "global",
            PeerType::NodeSpecific => "node specific",
        }
    }
}

/// One row of the status table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    pub address: Ipv4Addr,
    pub peer_type: PeerType,
    /// BIRD's protocol state: `up`, `start`, ...
    pub state: String,
    pub since: String,
    /// The BGP session state and last error: `Established`, `Active Socket: ...`.
    pub info: String,
}

impl PeerStatus {
    /// Whether the BGP session is up.
    pub fn is_established(&self) -> bool {
        self.state == "up" && self.info.starts_with("Established")
    }
}

/// The BGP protocols among `protocols` whose names follow Calico's scheme
/// (`Mesh_10_10_68_223`), in the order given; other protocols are not peers.
pub fn peer_statuses(protocols: &[BirdProtocol]) -> Vec<PeerStatus> {
    protocols
        .iter()
        .filter(|protocol| protocol.proto == "BGP")
        .filter_map(|protocol| {
            let (prefix, address) = protocol.name.split_once('_')?;
            let peer_type = match prefix {
                "Mesh" => PeerType::NodeToNodeMesh,
                "Global" => PeerType::Global,
                "Node" => PeerType::NodeSpecific,
                _ => return None,
            };
            Some(PeerStatus {
                address: address.replace('_', ".").parse().ok()?,
                peer_type,
                state: protocol.state.clone(),
                since: protocol.since.clone(),
                info: protocol.info.clone(),
            })
        })
        .collect()
}

/// The IPv4 table as calicoctl draws it (a bordered table, headers centred, cells left-aligned),
/// or `No IPv4 peers found.`.
pub fn status_table(peers: &[PeerStatus]) -> String {
    if peers.is_empty() {
        return "No IPv4 peers found.\n".to_owned();
    }
    let header = ["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"];
    let rows: Vec<[String; 5]> = peers
        .iter()
        .map(|peer| {
            [
                peer.address.to_string(),
                peer.peer_type.label().to_owned(),
                peer.state.clone(),
                peer.since.clone(),
                peer.info.clone(),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .chain([header[column].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let rule: String = widths
        .iter()
        .map(|width| format!("+{}", "-".repeat(width + 2)))
        .collect::<String>()
        + "+\n";
    let mut out = rule.clone();
    for (column, title) in header.iter().enumerate() {
        let width = widths[column];
        let left = (width - title.len()) / 2;
        let right = width - title.len() - left;
        let _ = write!(out, "| {}{title}{} ", " ".repeat(left), " ".repeat(right));
    }
    out += "|\n";
    out += &rule;
    for row in &rows {
        for (column, cell) in row.iter().enumerate() {
            let pad = widths[column] - cell.chars().count();
            let _ = write!(out, "| {cell}{} ", " ".repeat(pad));
        }
        out += "|\n";
    }
    out += &rule;
    out
}

/// One node's section of `kubelab bgp status`: whether BIRD answers, then its peers.
/// `protocols` is `None` when BIRD's control socket did not answer.
pub fn node_status(node: &str, ip: Ipv4Addr, protocols: Option<&[BirdProtocol]>) -> String {
    let Some(protocols) = protocols else {
        return format!("Node {node} ({ip}): BIRD is not running.\n");
    };
    format!(
        "Node {node} ({ip}): BIRD is running.\n\nIPv4 BGP status\n{}",
        status_table(&peer_statuses(protocols))
    )
}
