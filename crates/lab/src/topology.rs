//! The shape of a lab's network, decided before anything is made: which namespaces exist, which
//! address each node's `eth0` has, and the `ip -batch` scripts that wire them. Pure.
//!
//! The underlay is like a cloud VPC. By default each node sits in its own /20 behind a router
//! namespace, with the course's own addresses for the first two (kube-0 10.10.68.222 in
//! 10.10.64.0/20, kube-1 10.10.95.205 in 10.10.80.0/20, gateways at .1). With `shared_subnet`
//! every node is on one /20, a bridge in the router namespace. Nothing in the lab has a route
//! out of it: the router knows only its connected subnets and has no default route.
//!
//! Every kernel object carries the lab's name: namespaces are `<lab>.<node>`, `<lab>.router`
//! and `<lab>.pod.<uid>` (lab names cannot contain a dot, so no lab's prefix is another's).

use serde::Deserialize;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// First node subnet: 10.10.64.0/20, the course's kube-0 subnet.
const FIRST_SUBNET: u32 = u32::from_be_bytes([10, 10, 64, 0]);
const NODE_PREFIX_LEN: u8 = 20;
const SUBNET_SIZE: u32 = 1 << (32 - NODE_PREFIX_LEN);
/// Node addresses of the course's hosts (host parts within their /20).
const COURSE_HOSTS: [u32; 2] = [
    u32::from_be_bytes([0, 0, 4, 222]),  // kube-0: 10.10.68.222
    u32::from_be_bytes([0, 0, 15, 205]), // kube-1: 10.10.95.205
];
/// Most nodes a lab may have: the /20s from 10.10.64.0 must stay clear of 10.96.0.0/12.
pub const MAX_NODES: usize = 200;

/// How pods reach pods on other nodes (the IP pool's `ipipMode` / `vxlanMode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Encapsulation {
    #[default]
    Ipip,
    Vxlan,
    None,
    CrossSubnet,
}

impl Encapsulation {
    pub fn parse(s: &str) -> Option<Encapsulation> {
        match s {
            "ipip" => Some(Encapsulation::Ipip),
            "vxlan" => Some(Encapsulation::Vxlan),
            "none" => Some(Encapsulation::None),
            "cross-subnet" => Some(Encapsulation::CrossSubnet),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Encapsulation::Ipip => "ipip",
            Encapsulation::Vxlan => "vxlan",
            Encapsulation::None => "none",
            Encapsulation::CrossSubnet => "cross-subnet",
        }
    }

    /// The IP pool's `(ipipMode, vxlanMode)`, as Calico spells them.
    pub fn pool_modes(self) -> (&'static str, &'static str) {
        match self {
            Encapsulation::Ipip => ("Always", "Never"),
            Encapsulation::Vxlan => ("Never", "Always"),
            Encapsulation::None => ("Never", "Never"),
            Encapsulation::CrossSubnet => ("CrossSubnet", "Never"),
        }
    }
}

/// Who programs the routes between nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Routing {
    /// The agent itself, as Felix does (Calico 3.33+ `ProgramClusterRoutes`).
    #[default]
    Felix,
    /// BIRD in every node, an iBGP full mesh (Calico's BGP mode): `kubelab up --routing bgp`.
    Bgp,
}

impl Routing {
    pub fn parse(s: &str) -> Option<Routing> {
        match s {
            "felix" => Some(Routing::Felix),
            "bgp" => Some(Routing::Bgp),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Routing::Felix => "felix",
            Routing::Bgp => "bgp",
        }
    }
}

/// The `bgp:` section of the lab config.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BgpConfig {
    /// The nodes' AS number (default 64512, Calico's).
    pub as_number: Option<u32>,
    /// An external router (a data-centre router) peering with every node.
    pub external_peer: Option<ExternalPeerConfig>,
}

/// An external BGP router of the lab: a namespace `<lab>.bgppeer` on the nodes' subnet running
/// BIRD, a global peer of every node (Calico's BGPPeer without a node selector).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalPeerConfig {
    /// Its AS number (eBGP when it differs from the nodes').
    pub as_number: u32,
    /// Its address on the nodes' subnet (default 10.10.64.2).
    pub address: Option<Ipv4Addr>,
}

/// The `--config` file: everything optional, defaults as in the course.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabConfig {
    /// Put every node on one subnet (10.10.64.0/20) instead of one subnet each.
    #[serde(default)]
    pub shared_subnet: bool,
    /// The IP pool (default 192.168.0.0/16).
    pub pool_cidr: Option<String>,
    /// The pool's block size (default 26).
    pub block_size: Option<u8>,
    /// The Service ClusterIP range (default 10.96.0.0/12).
    pub service_cidr: Option<String>,
    /// Node names, control plane first (default kube-0, kube-1, ...). Overrides `--workers`.
    pub node_names: Option<Vec<String>>,
    /// Default encapsulation when `--encapsulation` is not given.
    pub encapsulation: Option<Encapsulation>,
    /// Who programs routes between nodes when `--routing` is not given (default felix).
    pub routing: Option<Routing>,
    /// BGP settings of a `routing: bgp` lab.
    pub bgp: Option<BgpConfig>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TopologyError {
    #[error("a lab has 1 to {MAX_NODES} nodes; {0} asked")]
    NodeCount(usize),
    #[error("invalid node name {0:?}: use a DNS label of at most 30 characters")]
    NodeName(String),
    #[error("node name {0:?} appears twice")]
    DuplicateNode(String),
    #[error(
        "encapsulation \"none\" needs every node on one subnet: set `sharedSubnet: true` in the lab config"
    )]
    NoEncapAcrossSubnets,
    #[error("invalid lab config: {0}")]
    Config(String),
    #[error(
        "routing bgp sends pod traffic unencapsulated over the nodes' shared subnet (upstream BIRD cannot drive kubelab's tunnels): drop --encapsulation {0}"
    )]
    BgpWithEncapsulation(&'static str),
    #[error("the external BGP peer's address {0} is not a free address of the nodes' subnet")]
    PeerAddress(Ipv4Addr),
}

/// The lab's external BGP router.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerRouterPlan {
    /// `<lab>.bgppeer`.
    pub netns: String,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub as_number: u32,
    /// Its port on the router namespace's bridge.
    pub router_if: String,
}

/// The name `kubelab ssh` knows the external BGP router by.
pub const PEER_ROUTER_NAME: &str = "bgppeer";
/// Default address of the external BGP router: next to the gateway.
const PEER_ROUTER_HOST: u32 = 2;

/// One node of the plan.
#[derive(Clone, Debug, PartialEq)]
pub struct NodePlan {
    pub name: String,
    pub netns: String,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    /// The router's interface facing this node (per-subnet mode) or the bridge port.
    pub router_if: String,
    pub control_plane: bool,
}

impl NodePlan {
    /// `10.10.68.222/20`, as Calico's `projectcalico.org/IPv4Address` annotation has it.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.ip, self.prefix_len)
    }
}

/// A whole lab's network.
#[derive(Clone, Debug, PartialEq)]
pub struct Topology {
    pub lab: String,
    pub router_netns: String,
    pub shared_subnet: bool,
    pub encapsulation: Encapsulation,
    pub routing: Routing,
    /// The nodes' AS number (BGP labs).
    pub as_number: u32,
    /// The external BGP router, if the config asks for one (BGP labs).
    pub peer_router: Option<PeerRouterPlan>,
    pub nodes: Vec<NodePlan>,
}

/// The namespace of node `node` in lab `lab`.
pub fn node_netns(lab: &str, node: &str) -> String {
    format!("{lab}.{node}")
}

/// Prefix of every namespace of lab `lab`.
pub fn netns_prefix(lab: &str) -> String {
    format!("{lab}.")
}

/// Prefix of the pod namespaces of lab `lab`; a pod's is this plus its uid.
pub fn pod_netns_prefix(lab: &str) -> String {
    format!("{lab}.pod.")
}

/// Where a node's UTS namespace (its hostname) is bind-mounted.
pub fn uts_file(state_dir: &Path, node: &str) -> PathBuf {
    state_dir.join("ns").join(format!("{node}.uts"))
}

fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 30
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name != "router"
        && name != "pod"
        && name != PEER_ROUTER_NAME
}

fn host_address(index: usize, shared: bool) -> (Ipv4Addr, Ipv4Addr) {
    let i = index as u32;
    if shared {
        let gateway = FIRST_SUBNET + 1;
        let ip = FIRST_SUBNET + COURSE_HOSTS[0] + i;
        return (Ipv4Addr::from(ip), Ipv4Addr::from(gateway));
    }
    let subnet = FIRST_SUBNET + i * SUBNET_SIZE;
    // Past the course's two hosts: an address in the middle of the subnet, like a VPC's.
    let host = COURSE_HOSTS
        .get(index)
        .copied()
        .unwrap_or(u32::from_be_bytes([
            0,
            0,
            (i % 16) as u8,
            10 + (i % 200) as u8,
        ]));
    (Ipv4Addr::from(subnet + host), Ipv4Addr::from(subnet + 1))
}

/// Plans lab `lab` with `workers` workers (unless the config names the nodes).
pub fn plan(
    lab: &str,
    workers: usize,
    encapsulation: Option<Encapsulation>,
    config: &LabConfig,
) -> Result<Topology, TopologyError> {
    let names: Vec<String> = match &config.node_names {
        Some(names) => names.clone(),
        None => (0..=workers).map(|i| format!("kube-{i}")).collect(),
    };
    if names.is_empty() || names.len() > MAX_NODES {
        return Err(TopologyError::NodeCount(names.len()));
    }
    for (i, n) in names.iter().enumerate() {
        if !valid_node_name(n) {
            return Err(TopologyError::NodeName(n.clone()));
        }
        if names[..i].contains(n) {
            return Err(TopologyError::DuplicateNode(n.clone()));
        }
    }
    let routing = config.routing.unwrap_or_default();
    let encapsulation = match (routing, encapsulation.or(config.encapsulation)) {
        (Routing::Bgp, None | Some(Encapsulation::None)) => Encapsulation::None,
        (Routing::Bgp, Some(other)) => {
            return Err(TopologyError::BgpWithEncapsulation(other.as_str()));
        }
        (Routing::Felix, chosen) => chosen.unwrap_or_default(),
    };
    // BGP next hops are the nodes themselves: one shared subnet, like a flat data-centre L2.
    let shared = config.shared_subnet || routing == Routing::Bgp;
    if encapsulation == Encapsulation::None && !shared && names.len() > 1 {
        return Err(TopologyError::NoEncapAcrossSubnets);
    }
    let nodes = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let (ip, gateway) = host_address(i, shared);
            NodePlan {
                name: name.clone(),
                netns: node_netns(lab, name),
                ip,
                prefix_len: NODE_PREFIX_LEN,
                gateway,
                router_if: format!("n{i}"),
                control_plane: i == 0,
            }
        })
        .collect::<Vec<NodePlan>>();
    let bgp = config.bgp.clone().unwrap_or_default();
    let peer_router = match (routing, &bgp.external_peer) {
        (Routing::Bgp, Some(peer)) => {
            let ip = peer
                .address
                .unwrap_or(Ipv4Addr::from(FIRST_SUBNET + PEER_ROUTER_HOST));
            let subnet_mask = u32::MAX << (32 - NODE_PREFIX_LEN);
            let in_subnet = u32::from(ip) & subnet_mask == FIRST_SUBNET;
            let taken = nodes.iter().any(|n| n.ip == ip || n.gateway == ip);
            let edge =
                u32::from(ip) == FIRST_SUBNET || u32::from(ip) == FIRST_SUBNET | !subnet_mask;
            if !in_subnet || taken || edge {
                return Err(TopologyError::PeerAddress(ip));
            }
            Some(PeerRouterPlan {
                netns: format!("{lab}.{PEER_ROUTER_NAME}"),
                ip,
                prefix_len: NODE_PREFIX_LEN,
                as_number: peer.as_number,
                router_if: "p0".into(),
            })
        }
        _ => None,
    };
    Ok(Topology {
        lab: lab.to_string(),
        router_netns: format!("{lab}.router"),
        shared_subnet: shared,
        encapsulation,
        routing,
        as_number: bgp.as_number.unwrap_or(bgp::DEFAULT_AS),
        peer_router,
        nodes,
    })
}

impl Topology {
    pub fn control_plane(&self) -> &NodePlan {
        &self.nodes[0]
    }

    pub fn node(&self, name: &str) -> Option<&NodePlan> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// `ip -batch` lines run in the router namespace once every node namespace exists: one
    /// veth per node (its peer becomes the node's `eth0`), the gateway addresses, forwarding.
    /// The router has no default route, so nothing leaves the lab.
    pub fn router_script(&self) -> String {
        let mut s = String::new();
        if self.shared_subnet {
            let gw = self.nodes[0].gateway;
            s += "link add br0 type bridge\n";
            s += &format!("addr add {gw}/{NODE_PREFIX_LEN} dev br0\n");
            s += "link set br0 up\n";
        }
        for n in &self.nodes {
            s += &format!(
                "link add {} type veth peer name eth0 netns {}\n",
                n.router_if, n.netns
            );
            if self.shared_subnet {
                s += &format!("link set {} master br0\n", n.router_if);
            } else {
                s += &format!(
                    "addr add {}/{} dev {}\n",
                    n.gateway, n.prefix_len, n.router_if
                );
            }
            s += &format!("link set {} up\n", n.router_if);
        }
        if let Some(peer) = &self.peer_router {
            s += &format!(
                "link add {} type veth peer name eth0 netns {}\nlink set {} master br0\nlink set {} up\n",
                peer.router_if, peer.netns, peer.router_if, peer.router_if
            );
        }
        s
    }

    /// `ip -batch` lines run in the external BGP router's namespace: its address only (it
    /// reaches the nodes on the shared subnet, and nothing else).
    pub fn peer_router_script(&self) -> Option<String> {
        self.peer_router.as_ref().map(|peer| {
            format!(
                "addr add {}/{} dev eth0\nlink set eth0 up\nlink set lo up\n",
                peer.ip, peer.prefix_len
            )
        })
    }

    /// `ip -batch` lines run in a node's namespace after [`Topology::router_script`]: its
    /// address and default route via its gateway.
    pub fn node_script(&self, node: &NodePlan) -> String {
        format!(
            "addr add {}/{} dev eth0\nlink set eth0 up\nroute add default via {} dev eth0\n",
            node.ip, node.prefix_len, node.gateway
        )
    }
}

/// Parses a `--config` file.
pub fn parse_config(text: &str) -> Result<LabConfig, TopologyError> {
    serde_saphyr::from_str(text).map_err(|e| TopologyError::Config(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_lab_has_the_course_addresses() {
        let t = plan("kubelab", 2, None, &LabConfig::default()).unwrap();
        let got: Vec<(String, String, String)> = t
            .nodes
            .iter()
            .map(|n| (n.name.clone(), n.cidr(), n.gateway.to_string()))
            .collect();
        assert_eq!(
            got,
            [
                ("kube-0", "10.10.68.222/20", "10.10.64.1"),
                ("kube-1", "10.10.95.205/20", "10.10.80.1"),
                ("kube-2", "10.10.98.12/20", "10.10.96.1"),
            ]
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        );
        assert_eq!(t.nodes[0].netns, "kubelab.kube-0");
        assert_eq!(t.router_netns, "kubelab.router");
        assert!(t.nodes[0].control_plane && !t.nodes[1].control_plane);
        assert_eq!(t.encapsulation, Encapsulation::Ipip);
    }

    #[test]
    fn node_subnets_never_reach_the_service_range() {
        let t = plan("x", MAX_NODES - 1, None, &LabConfig::default()).unwrap();
        let last = t.nodes.last().unwrap();
        // 10.96.0.0/12 starts at 10.96.0.0.
        assert!(u32::from(last.ip) < u32::from(Ipv4Addr::new(10, 96, 0, 0)));
        let mut subnets: Vec<u32> = t.nodes.iter().map(|n| u32::from(n.ip) >> 12).collect();
        subnets.dedup();
        assert_eq!(subnets.len(), MAX_NODES);
    }

    #[test]
    fn shared_subnet_and_scripts() {
        let config = LabConfig {
            shared_subnet: true,
            ..Default::default()
        };
        let t = plan("l", 1, Some(Encapsulation::None), &config).unwrap();
        assert_eq!(t.nodes[1].cidr(), "10.10.68.223/20");
        assert_eq!(t.nodes[1].gateway.to_string(), "10.10.64.1");
        assert_eq!(
            t.router_script(),
            "link add br0 type bridge\naddr add 10.10.64.1/20 dev br0\nlink set br0 up\n\
             link add n0 type veth peer name eth0 netns l.kube-0\nlink set n0 master br0\nlink set n0 up\n\
             link add n1 type veth peer name eth0 netns l.kube-1\nlink set n1 master br0\nlink set n1 up\n"
        );
        assert_eq!(
            t.node_script(&t.nodes[1]),
            "addr add 10.10.68.223/20 dev eth0\nlink set eth0 up\nroute add default via 10.10.64.1 dev eth0\n"
        );
    }

    #[test]
    fn refuses_bad_plans() {
        let d = LabConfig::default();
        assert_eq!(
            plan("l", 2, Some(Encapsulation::None), &d),
            Err(TopologyError::NoEncapAcrossSubnets)
        );
        let named = |names: &[&str]| LabConfig {
            node_names: Some(names.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        };
        assert!(matches!(
            plan("l", 0, None, &named(&["a", "a"])),
            Err(TopologyError::DuplicateNode(_))
        ));
        assert!(matches!(
            plan("l", 0, None, &named(&["A"])),
            Err(TopologyError::NodeName(_))
        ));
        assert!(matches!(
            plan("l", 0, None, &named(&[])),
            Err(TopologyError::NodeCount(0))
        ));
        let t = plan("l", 9, None, &named(&["master", "w1"])).unwrap();
        assert_eq!(t.nodes.len(), 2);
        assert_eq!(t.nodes[1].netns, "l.w1");
    }

    #[test]
    fn bgp_puts_nodes_on_one_subnet_without_encapsulation() {
        let config = parse_config(
            "routing: bgp\nbgp:\n  asNumber: 64600\n  externalPeer:\n    asNumber: 64513\n",
        )
        .unwrap();
        let t = plan("l", 2, None, &config).unwrap();
        assert_eq!(t.routing, Routing::Bgp);
        assert_eq!(t.encapsulation, Encapsulation::None);
        assert!(t.shared_subnet);
        assert_eq!(t.as_number, 64600);
        assert_eq!(t.nodes[2].cidr(), "10.10.68.224/20");
        let peer = t.peer_router.clone().unwrap();
        assert_eq!(
            (peer.netns.as_str(), peer.ip.to_string().as_str()),
            ("l.bgppeer", "10.10.64.2")
        );
        assert!(t.router_script().ends_with(
            "link add p0 type veth peer name eth0 netns l.bgppeer\nlink set p0 master br0\nlink set p0 up\n"
        ));
        assert_eq!(
            t.peer_router_script().unwrap(),
            "addr add 10.10.64.2/20 dev eth0\nlink set eth0 up\nlink set lo up\n"
        );
        // Felix labs have no router and no BGP.
        let felix = plan("l", 1, None, &LabConfig::default()).unwrap();
        assert!(felix.peer_router.is_none() && felix.peer_router_script().is_none());
        // Encapsulation cannot be asked for; a peer address must be free and on the subnet.
        assert_eq!(
            plan("l", 1, Some(Encapsulation::Ipip), &config),
            Err(TopologyError::BgpWithEncapsulation("ipip"))
        );
        for taken in ["10.10.68.223", "10.10.64.1", "10.10.96.5", "10.10.79.255"] {
            let text = format!(
                "routing: bgp\nbgp:\n  externalPeer:\n    asNumber: 1\n    address: {taken}\n"
            );
            assert!(
                matches!(
                    plan("l", 2, None, &parse_config(&text).unwrap()),
                    Err(TopologyError::PeerAddress(_))
                ),
                "{taken}"
            );
        }
        assert!(parse_config("routing: ospf\n").is_err());
        assert!(matches!(
            plan(
                "l",
                0,
                None,
                &LabConfig {
                    node_names: Some(vec!["bgppeer".into()]),
                    ..Default::default()
                }
            ),
            Err(TopologyError::NodeName(_))
        ));
    }

    #[test]
    fn config_file() {
        let c = parse_config(
            "sharedSubnet: true\npoolCidr: 10.244.0.0/16\nblockSize: 24\nnodeNames: [a, b]\nencapsulation: vxlan\n",
        )
        .unwrap();
        assert!(c.shared_subnet);
        assert_eq!(c.block_size, Some(24));
        assert_eq!(c.encapsulation, Some(Encapsulation::Vxlan));
        assert!(parse_config("bogus: 1\n").is_err());
    }
}
