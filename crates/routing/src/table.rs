//! The routing table a node should have, computed from the cluster alone.
//!
//! [`node_table`] is the prediction `kubelab routes --predict` prints and the node agent
//! converges to; [`ipip_peers`] and [`vxlan_peers`] are the tunnel tables that go with it.
//! Everything here is a pure function of a [`Cluster`]: no I/O, no failure.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::cluster::{Cluster, Encapsulation, NodeInfo, veth_name};
use crate::route::{
    Destination, IPIP_DEVICE, Protocol, Route, Scope, UNDERLAY_DEVICE, VXLAN_DEVICE, mask,
};

/// The whole main table of node `node`, in the order the kernel dumps it (see
/// [`Destination`]'s `Ord`), so that its lines equal `ip route` line for line.
///
/// The lab's underlay, from the node's own [`NodeInfo`]:
/// - `default via <gateway> dev eth0`, when the node has a gateway;
/// - `<subnet> dev eth0 proto kernel scope link src <ip>`, the connected prefix the kernel adds
///   with the address (none for a /32 address).
///
/// Calico's routes, as Felix programs them (FACTS.md):
/// - each block affine to this node: `blackhole <block> proto 80`, so that unallocated
///   addresses of the block are dropped here rather than sent back out the default route;
/// - each pod on this node: `<ip> dev cali<hash> scope link` (protocol boot). This includes a
///   pod whose address was borrowed from another node's block; its /32 beats that block's /26;
/// - each block affine to another known node N: a route to N chosen by the encapsulation:
///   - Ipip: `<block> via <N ip> dev tunl0 proto 80 onlink`;
///   - Vxlan: `<block> via <N vxlan tunnel ip> dev vxlan.calico onlink` (protocol boot), none
///     while N has no VXLAN tunnel address;
///   - None: `<block> via <N ip> dev eth0 proto 80 onlink`;
///   - CrossSubnet / VxlanCrossSubnet: as None when N's address lies in this node's subnet
///     (this node's address and prefix length), otherwise as Ipip / Vxlan;
/// - each pod on another node N whose address is not inside a block affine to N (borrowed):
///   a /32 to it via N, built like a block route, so that it wins over the block's own route
///   (which leads to the block's owner, or is this node's blackhole).
///
/// When this node runs BIRD (its [`NodeInfo::bgp_as`] is set, `kubelab up --routing bgp`),
/// BIRD writes the block routes instead of Felix, as in Calico's BGP modes (FACTS.md):
/// - each block affine to this node: `blackhole <block> proto bird` (BIRD's static protocol);
/// - each block affine to another node N that runs BIRD too, learned over iBGP with N as the
///   next hop: `<block> via <N ip> dev eth0 proto bird`, resolved recursively (`gateway
///   recursive`) through the connected subnet, so no `onlink`; a node on another subnet
///   resolves through the default route, `via <gateway>`. A node without BIRD advertises
///   nothing, so its blocks get no route. Borrowed pod addresses travel the same way as /32s.
///
/// Details that keep the table something the kernel can hold: a block or pod on a node that
/// [`Cluster::nodes`] does not know gets no route (there is nowhere to send it); a node
/// unknown to the cluster gets no underlay and, under CrossSubnet, treats every node as on
/// another subnet. Two Calico routes to the same destination cannot both exist, so one wins:
/// a local pod over a route to another node over a blackhole; among equals, the first block
/// in CIDR order or pod in `namespace/name` order.
pub fn node_table(cluster: &Cluster, node: &str) -> Vec<Route> {
    let me = cluster.node(node);
    let mut routes = me.map(underlay_routes).unwrap_or_default();

    // Destination → (precedence, route); a higher precedence replaces a lower one.
    let mut calico: BTreeMap<Destination, (u8, Route)> = BTreeMap::new();
    let mut offer = |precedence: u8, route: Route| {
        let slot = calico
            .entry(route.destination)
            .or_insert((precedence, route.clone()));
        if precedence > slot.0 {
            *slot = (precedence, route);
        }
    };
    const BLACKHOLE: u8 = 1;
    const REMOTE: u8 = 2;
    const LOCAL_POD: u8 = 3;

    let mut blocks: Vec<(Destination, &str)> = cluster
        .blocks
        .iter()
        .filter_map(|block| Some((block.destination()?, block.node.as_deref()?)))
        .collect();
    blocks.sort();
    let bird = me.is_some_and(|me| me.bgp_as.is_some());
    let block_protocol = if bird {
        Protocol::BIRD
    } else {
        Protocol::FELIX
    };
    let remote = |peer: &NodeInfo, destination: Destination| {
        if bird {
            bird_route(me, peer, destination)
        } else {
            route_to_peer(cluster.encapsulation, me, peer, destination)
        }
    };
    for (destination, owner) in &blocks {
        if *owner == node {
            offer(
                BLACKHOLE,
                Route::blackhole(*destination).proto(block_protocol),
            );
        } else if let Some(peer) = cluster.node(owner)
            && let Some(route) = remote(peer, *destination)
        {
            offer(REMOTE, route);
        }
    }

    let mut pods: Vec<_> = cluster.pods.iter().collect();
    pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    for pod in pods {
        if pod.node == node {
            offer(
                LOCAL_POD,
                Route::to(Destination::host(pod.ip))
                    .dev(&veth_name(&pod.namespace, &pod.name))
                    .scope(Scope::LINK),
            );
            continue;
        }
        let inside_own_block = blocks
            .iter()
            .any(|(block, owner)| *owner == pod.node && block.contains(pod.ip));
        if inside_own_block {
            continue;
        }
        if let Some(peer) = cluster.node(&pod.node)
            && let Some(route) = remote(peer, Destination::host(pod.ip))
        {
            offer(REMOTE, route);
        }
    }

    routes.extend(calico.into_values().map(|(_, route)| route));
    routes.sort();
    routes
}

fn underlay_routes(me: &NodeInfo) -> Vec<Route> {
    let mut routes = Vec::new();
    if let Some(gateway) = me.gateway {
        routes.push(
            Route::to(Destination::DEFAULT)
                .via(gateway)
                .dev(UNDERLAY_DEVICE),
        );
    }
    if me.prefix_len < 32
        && let Some(subnet) = Destination::new(me.ip, me.prefix_len)
    {
        routes.push(
            Route::to(subnet)
                .dev(UNDERLAY_DEVICE)
                .proto(Protocol::KERNEL)
                .scope(Scope::LINK)
                .src(me.ip),
        );
    }
    routes
}

/// Whether `peer` is on this node's subnet, so CrossSubnet sends to it unencapsulated.
fn same_subnet(me: Option<&NodeInfo>, peer: &NodeInfo) -> bool {
    me.is_some_and(|me| {
        let mask = mask(me.prefix_len.min(32));
        u32::from(me.ip) & mask == u32::from(peer.ip) & mask
    })
}

/// The route to `destination` living on `peer`; `None` when the encapsulation needs something
/// the peer lacks (a VXLAN tunnel address) or the peer is this node's own address.
fn route_to_peer(
    encapsulation: Encapsulation,
    me: Option<&NodeInfo>,
    peer: &NodeInfo,
    destination: Destination,
) -> Option<Route> {
    if me.is_some_and(|me| me.ip == peer.ip) {
        return None;
    }
    let direct = || {
        Route::to(destination)
            .via(peer.ip)
            .dev(UNDERLAY_DEVICE)
            .proto(Protocol::FELIX)
            .onlink()
    };
    let ipip = || {
        Route::to(destination)
            .via(peer.ip)
            .dev(IPIP_DEVICE)
            .proto(Protocol::FELIX)
            .onlink()
    };
    let vxlan = || {
        peer.vxlan_tunnel.map(|tunnel| {
            Route::to(destination)
                .via(tunnel)
                .dev(VXLAN_DEVICE)
                .onlink()
        })
    };
    match encapsulation {
        Encapsulation::None => Some(direct()),
        Encapsulation::Ipip => Some(ipip()),
        Encapsulation::Vxlan => vxlan(),
        Encapsulation::CrossSubnet if same_subnet(me, peer) => Some(direct()),
        Encapsulation::CrossSubnet => Some(ipip()),
        Encapsulation::VxlanCrossSubnet if same_subnet(me, peer) => Some(direct()),
        Encapsulation::VxlanCrossSubnet => vxlan(),
    }
}

/// The route BIRD writes for `destination` learned from `peer` over iBGP; `None` when the peer
/// runs no BIRD (it advertises nothing) or is this node, or is off-subnet with no gateway to
/// resolve through.
fn bird_route(me: Option<&NodeInfo>, peer: &NodeInfo, destination: Destination) -> Option<Route> {
    peer.bgp_as?;
    if me.is_some_and(|me| me.ip == peer.ip) {
        return None;
    }
    let next_hop = if same_subnet(me, peer) {
        peer.ip
    } else {
        me?.gateway?
    };
    Some(
        Route::to(destination)
            .via(next_hop)
            .dev(UNDERLAY_DEVICE)
            .proto(Protocol::BIRD),
    )
}

/// For each route of [`node_table`] through `tunl0`: (prefix network, prefix length, remote
/// node address), in table order. A userspace IPIP encapsulator (this kernel has no ipip
/// module) looks up an inner destination here to find the outer one.
pub fn ipip_peers(cluster: &Cluster, node: &str) -> Vec<(Ipv4Addr, u8, Ipv4Addr)> {
    node_table(cluster, node)
        .into_iter()
        .filter(|route| route.device.as_deref() == Some(IPIP_DEVICE))
        .filter_map(|route| {
            let destination = route.destination;
            Some((
                destination.network(),
                destination.prefix_len(),
                route.gateway?,
            ))
        })
        .collect()
}

/// A remote VXLAN tunnel endpoint (VTEP) this node must know: the neighbour entry maps the
/// peer's tunnel address to its MAC, the FDB entry sends that MAC to the peer's underlay address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanPeer {
    pub node: String,
    pub node_ip: Ipv4Addr,
    pub tunnel_ip: Ipv4Addr,
    pub mac: String,
}

/// The VTEPs of every other node with a VXLAN tunnel address and MAC, sorted by node name,
/// when the encapsulation is Vxlan or VxlanCrossSubnet (Felix programs all VTEPs in both, the
/// routes decide which are used); none otherwise.
pub fn vxlan_peers(cluster: &Cluster, node: &str) -> Vec<VxlanPeer> {
    if !matches!(
        cluster.encapsulation,
        Encapsulation::Vxlan | Encapsulation::VxlanCrossSubnet
    ) {
        return Vec::new();
    }
    let my_ip = cluster.node(node).map(|me| me.ip);
    let mut peers: Vec<VxlanPeer> = cluster
        .nodes
        .iter()
        .filter(|peer| peer.name != node && Some(peer.ip) != my_ip)
        .filter_map(|peer| {
            Some(VxlanPeer {
                node: peer.name.clone(),
                node_ip: peer.ip,
                tunnel_ip: peer.vxlan_tunnel?,
                mac: peer.vxlan_mac.clone()?,
            })
        })
        .collect();
    peers.sort_by(|a, b| a.node.cmp(&b.node));
    peers.dedup_by(|a, b| a.node == b.node);
    peers
}

/// Commands that program [`vxlan_peers`]: the neighbour entries go through `ip -batch`, the
/// FDB entries through `bridge -batch` (`ip` has no `fdb` command).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VxlanPlan {
    /// `neigh replace <tunnel ip> lladdr <mac> dev vxlan.calico nud permanent`
    pub ip_batch: Vec<String>,
    /// `fdb replace <mac> dev vxlan.calico dst <node ip> self permanent`
    pub bridge_batch: Vec<String>,
}

/// The VTEP entries of [`vxlan_peers`] as batch lines. `replace` makes them idempotent; stale
/// entries of nodes that left are not removed here.
pub fn vxlan_plan(cluster: &Cluster, node: &str) -> VxlanPlan {
    let peers = vxlan_peers(cluster, node);
    VxlanPlan {
        ip_batch: peers
            .iter()
            .map(|peer| {
                format!(
                    "neigh replace {} lladdr {} dev {VXLAN_DEVICE} nud permanent",
                    peer.tunnel_ip, peer.mac
                )
            })
            .collect(),
        bridge_batch: peers
            .iter()
            .map(|peer| {
                format!(
                    "fdb replace {} dev {VXLAN_DEVICE} dst {} self permanent",
                    peer.mac, peer.node_ip
                )
            })
            .collect(),
    }
}
