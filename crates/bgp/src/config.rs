//! BIRD 2 configuration from cluster state, shaped like Calico's confd template `bird.cfg`.
//!
//! Calico's template is BIRD 1 syntax; this renders the same protocols in BIRD 2 syntax
//! (Debian's `bird2`), where `import`/`export` and `gateway recursive`/`add paths` live in an
//! `ipv4 { }` channel. Differences to Calico, each for a reason:
//! - `metric 0` on the kernel protocol: BIRD 2 writes `metric 32` otherwise, and Calico's routes
//!   (FACTS.md) carry no metric;
//! - the kernel export filter accepts only routes inside an IP pool: the `direct` protocol's
//!   connected routes must never go back into the kernel (upstream BIRD has no `krt_tunnel`, so
//!   there is no tunnel attribute to set either);
//! - `timeformat protocol iso long`: `birdc show protocols` then prints a full date and time,
//!   which [`crate::birdc`] parses without guessing the day.

use std::fmt::Write;
use std::net::Ipv4Addr;

use routing::{Cluster, Destination, NodeInfo};
use serde_json::Value;

use crate::BgpError;

/// Calico's default AS number (BGPConfiguration `asNumber`), a private one.
pub const DEFAULT_AS: u32 = 64512;

/// A BGP peer outside the mesh (Calico's global BGPPeer: no node selector, every node peers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GlobalPeer {
    pub ip: Ipv4Addr,
    pub as_number: u32,
}

impl std::fmt::Display for GlobalPeer {
    /// `10.10.64.2:64513`, what [`GlobalPeer::from_str`](std::str::FromStr) reads.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.ip, self.as_number)
    }
}

impl std::str::FromStr for GlobalPeer {
    type Err = BgpError;

    /// `ADDRESS:AS`, e.g. `10.10.64.2:64513` (the agent's `--bgp-peer`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || BgpError::InvalidPeer(text.to_owned());
        let (ip, as_number) = text.split_once(':').ok_or_else(invalid)?;
        Ok(GlobalPeer {
            ip: ip.parse().map_err(|_| invalid())?,
            as_number: as_number.parse().map_err(|_| invalid())?,
        })
    }
}

/// The IPv4 CIDRs of the enabled IP pools among `pools` (IPPool objects as JSON), in order:
/// what BIRD may export. Disabled pools, IPv6 pools and unreadable CIDRs are left out.
pub fn pool_cidrs(pools: &[Value]) -> Vec<Destination> {
    pools
        .iter()
        .filter(|pool| pool.pointer("/spec/disabled").and_then(Value::as_bool) != Some(true))
        .filter_map(|pool| pool.pointer("/spec/cidr")?.as_str()?.parse().ok())
        .collect()
}

/// `Mesh_10_10_68_222`: Calico's name of the mesh session to the node at `ip`.
pub fn mesh_protocol_name(ip: Ipv4Addr) -> String {
    format!("Mesh_{}", underscored(ip))
}

/// `Global_10_10_64_2`: Calico's name of the session to a global peer.
pub fn global_protocol_name(ip: Ipv4Addr) -> String {
    format!("Global_{}", underscored(ip))
}

/// `Node_10_10_68_222`: the external router's name of its session to a node (Calico's name for
/// a node-specific peer).
pub fn node_protocol_name(ip: Ipv4Addr) -> String {
    format!("Node_{}", underscored(ip))
}

fn underscored(ip: Ipv4Addr) -> String {
    ip.to_string().replace('.', "_")
}

/// The `bird.conf` of node `node`:
///
/// - `router id` is the node's address;
/// - filter `calico_export_to_bgp_peers`: each block affine to this node is announced whole
///   and nothing more specific inside it (Calico's `calico_aggr`: a local pod's /32, learned from
///   the kernel, stays home), anything else inside a pool is announced (an address borrowed from
///   another node's block), the rest never;
/// - filter `calico_kernel_programming`: only routes inside a pool go into the kernel;
/// - `protocol kernel` learning alien routes, persisting over restarts, scanning every 2 s,
///   with graceful restart; `protocol device`; `protocol direct` on every interface but the
///   workloads' `cali*` (iBGP next hops resolve through it);
/// - `protocol static` with `route <block> blackhole` for each block affine to this node;
/// - `template bgp bgp_template` with Calico's timers, then one `protocol bgp Mesh_<ip>` per
///   other node that runs BIRD (has an AS number), sorted by address, and one `protocol bgp
///   Global_<ip>` per global peer.
///
/// The node's AS is its own [`NodeInfo::bgp_as`], else [`DEFAULT_AS`]; a mesh peer's AS is its
/// own. A node is not its own peer, nor is a global peer at the node's address.
pub fn bird_config(
    cluster: &Cluster,
    node: &str,
    pools: &[Destination],
    global_peers: &[GlobalPeer],
) -> Result<String, BgpError> {
    let me = cluster
        .node(node)
        .ok_or_else(|| BgpError::UnknownNode(node.to_owned()))?;
    let my_as = me.bgp_as.unwrap_or(DEFAULT_AS);
    let mut blocks: Vec<Destination> = cluster
        .blocks
        .iter()
        .filter(|block| block.node.as_deref() == Some(node))
        .filter_map(|block| block.destination())
        .collect();
    blocks.sort();
    blocks.dedup();
    let mut mesh: Vec<&NodeInfo> = cluster
        .nodes
        .iter()
        .filter(|peer| peer.bgp_as.is_some() && peer.ip != me.ip && peer.name != node)
        .collect();
    mesh.sort_by_key(|peer| peer.ip);
    mesh.dedup_by_key(|peer| peer.ip);
    let mut globals: Vec<GlobalPeer> = global_peers
        .iter()
        .filter(|peer| peer.ip != me.ip)
        .copied()
        .collect();
    globals.sort();
    globals.dedup_by_key(|peer| peer.ip);

    let mut out = String::new();
    let _ = writeln!(
        out,
        "# bird.conf of node {node}, rendered by kubelab's agent from cluster state as Calico's\n\
         # confd renders bird.cfg. Rewritten and reloaded (`birdc configure`) when nodes, blocks or\n\
         # peers change: edits here do not last."
    );
    let _ = writeln!(out, "router id {};", me.ip);
    out += "timeformat protocol iso long;\n";
    out += "log stderr all;\n\n";

    out += "# Announce this node's blocks whole, and pool addresses of other blocks (borrowed).\n";
    out += "filter calico_export_to_bgp_peers {\n";
    for block in &blocks {
        let block = cidr(*block);
        let _ = writeln!(out, "  if ( net = {block} ) then {{ accept; }}");
        let _ = writeln!(out, "  if ( net ~ {block} ) then {{ reject; }}");
    }
    for pool in pools {
        let _ = writeln!(out, "  if ( net ~ {} ) then {{ accept; }}", cidr(*pool));
    }
    out += "  reject;\n}\n\n";

    out += "# Only pod routes go into the kernel.\n";
    out += "filter calico_kernel_programming {\n";
    for pool in pools {
        let _ = writeln!(out, "  if ( net ~ {} ) then {{ accept; }}", cidr(*pool));
    }
    out += "  reject;\n}\n\n";

    out += "\
protocol kernel {
  learn;             # Learn all alien routes from the kernel
  persist;           # Don't remove routes on bird shutdown
  scan time 2;       # Scan kernel routing table every 2 seconds
  metric 0;          # Routes without a metric, as Calico's
  ipv4 {
    import all;
    export filter calico_kernel_programming;
  };
  graceful restart;  # Keep routes in the kernel while BIRD reloads its configuration
  merge paths on;    # Allow export multipath routes (ECMP)
}

protocol device {
  scan time 2;       # Scan interfaces every 2 seconds
}

# Connected subnets, so that iBGP next hops resolve; never the workloads' veths.
protocol direct {
  ipv4;
  interface -\"cali*\", \"*\";
}

";
    out += "# A blackhole for each block affine to this node: unallocated addresses end here.\n";
    out += "protocol static {\n  ipv4;\n";
    for block in &blocks {
        let _ = writeln!(out, "  route {} blackhole;", cidr(*block));
    }
    out += "}\n\n";

    let _ = write!(
        out,
        "\
template bgp bgp_template {{
  description \"Connection to BGP peer\";
  local as {my_as};
  ipv4 {{
    import all;
    export filter calico_export_to_bgp_peers;
    gateway recursive; # This should be the default, but just in case.
    add paths on;
  }};
  graceful restart;  # See comment in kernel section about graceful restart.
  connect delay time 2;
  connect retry time 5;
  error wait time 5,30;
}}

# ------------- Node-to-node mesh -------------
"
    );
    if mesh.is_empty() {
        out += "# No other node runs BIRD yet.\n\n";
    }
    for peer in &mesh {
        let protocol = mesh_protocol_name(peer.ip);
        let peer_as = peer.bgp_as.unwrap_or(DEFAULT_AS);
        write_session(
            &mut out,
            &peer.name,
            &protocol,
            (me.ip, my_as),
            (peer.ip, peer_as),
        );
    }
    out += "# ------------- Global peers -------------\n";
    if globals.is_empty() {
        out += "# No global peers configured.\n";
    }
    for peer in &globals {
        let protocol = global_protocol_name(peer.ip);
        let label = peer.ip.to_string();
        write_session(
            &mut out,
            &label,
            &protocol,
            (me.ip, my_as),
            (peer.ip, peer.as_number),
        );
    }
    Ok(end_with_one_newline(out))
}

/// One BGP session of a node's `bird.conf`, under a `# For peer <label>` comment, as
/// Calico's template writes both mesh and global peers.
fn write_session(
    out: &mut String,
    label: &str,
    protocol: &str,
    (me_ip, my_as): (Ipv4Addr, u32),
    (ip, peer_as): (Ipv4Addr, u32),
) {
    let _ = write!(
        out,
        "\
# For peer {label}
protocol bgp {protocol} from bgp_template {{
  local {me_ip} as {my_as};
  neighbor {ip} as {peer_as};
  source address {me_ip};
}}

"
    );
}

/// The `bird.conf` of an external router (a data-centre router, a top-of-rack switch) at
/// `router_ip` in AS `router_as`, peering with every node in `nodes` (address and AS), learning
/// what they announce and announcing nothing. Learned pod routes also go into the router's
/// kernel (only those inside `pools`), so `ip route` there shows how it reaches pods.
pub fn peer_router_config(
    router_ip: Ipv4Addr,
    router_as: u32,
    nodes: &[(Ipv4Addr, u32)],
    pools: &[Destination],
) -> String {
    let mut nodes: Vec<(Ipv4Addr, u32)> = nodes
        .iter()
        .filter(|(ip, _)| *ip != router_ip)
        .copied()
        .collect();
    nodes.sort();
    nodes.dedup_by_key(|(ip, _)| *ip);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# bird.conf of the lab's external BGP router, rendered by kubelab: it learns every pod\n\
         # block from the nodes and announces nothing."
    );
    let _ = writeln!(out, "router id {router_ip};");
    out += "timeformat protocol iso long;\nlog stderr all;\n\n";
    out += "filter pod_routes {\n";
    for pool in pools {
        let _ = writeln!(out, "  if ( net ~ {} ) then {{ accept; }}", cidr(*pool));
    }
    out += "  reject;\n}\n\n";
    out += "\
protocol kernel {
  metric 0;
  ipv4 {
    import none;
    export filter pod_routes;
  };
}

protocol device {
  scan time 2;
}

protocol direct {
  ipv4;
  interface \"*\";
}

";
    let _ = write!(
        out,
        "\
template bgp nodes {{
  local as {router_as};
  ipv4 {{
    import filter pod_routes;
    export none;
    gateway recursive;
    add paths on;
  }};
  connect delay time 2;
  connect retry time 5;
  error wait time 5,30;
}}
"
    );
    for (ip, node_as) in nodes {
        let _ = write!(
            out,
            "
protocol bgp {protocol} from nodes {{
  local {router_ip} as {router_as};
  neighbor {ip} as {node_as};
}}
",
            protocol = node_protocol_name(ip),
        );
    }
    end_with_one_newline(out)
}

fn end_with_one_newline(mut text: String) -> String {
    text.truncate(text.trim_end().len());
    text.push('\n');
    text
}

/// A prefix always as `a.b.c.d/len`, as BIRD wants it (a /32 too).
fn cidr(destination: Destination) -> String {
    format!("{}/{}", destination.network(), destination.prefix_len())
}
