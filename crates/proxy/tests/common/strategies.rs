//! proptest strategies for `ProxyState` sequences, shared by the incremental and netlink tests.

use std::net::Ipv4Addr;

use proptest::prelude::*;
use proxy::model::ServicePortState;
use proxy::{Endpoint, Protocol, ProxyConfig, ProxyState, ServicePortName};

/// A few names so that generated states often share, add and remove the same ports.
pub fn port_name() -> impl Strategy<Value = ServicePortName> {
    (0..4usize, 0..2usize, prop::bool::ANY).prop_map(|(svc, port, udp)| ServicePortName {
        namespace: "default".into(),
        name: format!("svc-{svc}"),
        port_name: if port == 0 {
            String::new()
        } else {
            "metrics".into()
        },
        protocol: if udp { Protocol::Udp } else { Protocol::Tcp },
    })
}

pub fn endpoint() -> impl Strategy<Value = Endpoint> {
    (
        0..6u8,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(host, ready, serving, terminating, is_local)| Endpoint {
            ip: Ipv4Addr::new(192, 168, 1, host),
            port: 8080,
            ready,
            serving,
            terminating,
            is_local,
        })
}

/// Small address and port ranges on purpose: collisions between Services (invalid input the
/// full render still handles) must come out the same too.
pub fn port_state() -> impl Strategy<Value = ServicePortState> {
    (
        0..3u8,
        prop::sample::select(vec![80u16, 443]),
        prop::option::of(prop::sample::select(vec![30080u16, 30081])),
        prop::collection::vec(0..2u8, 0..2),
        any::<bool>(),
        any::<bool>(),
        prop::collection::btree_map(0..6u8, endpoint(), 0..5),
    )
        .prop_map(
            |(ip, port, node_port, external, external_local, internal_local, endpoints)| {
                let mut external_ips: Vec<Ipv4Addr> = external
                    .into_iter()
                    .map(|i| Ipv4Addr::new(203, 0, 113, i))
                    .collect();
                external_ips.sort();
                external_ips.dedup();
                ServicePortState {
                    cluster_ip: Ipv4Addr::new(10, 96, 0, ip),
                    port,
                    node_port,
                    external_ips,
                    external_policy_local: external_local,
                    internal_policy_local: internal_local,
                    endpoints: endpoints
                        .into_values()
                        .map(|mut ep| {
                            ep.ip = Ipv4Addr::new(192, 168, 1, ep.ip.octets()[3]);
                            ep
                        })
                        .collect(),
                }
            },
        )
}

pub fn state() -> impl Strategy<Value = ProxyState> {
    (
        prop::collection::btree_map(port_name(), port_state(), 0..6),
        any::<bool>(),
        prop::sample::select(vec!["192.168.0.0/16", "10.244.0.0/14"]),
    )
        .prop_map(|(service_ports, masquerade_all, cluster_cidr)| ProxyState {
            config: ProxyConfig {
                node_name: "kube-1".into(),
                masquerade_all,
                // A prefix on a byte boundary and one that is not (nft encodes them differently).
                cluster_cidr: cluster_cidr.parse().expect("valid CIDR"),
                ..ProxyConfig::default()
            },
            service_ports,
            diagnostics: Vec::new(),
        })
}

/// Mostly small steps (one port changed), sometimes a whole new state.
pub fn states() -> impl Strategy<Value = Vec<ProxyState>> {
    (
        state(),
        prop::collection::vec(
            (
                port_name(),
                prop::option::of(port_state()),
                any::<bool>(),
                state(),
            ),
            1..8,
        ),
    )
        .prop_map(|(first, steps)| {
            let mut out = vec![first];
            for (name, port, jump, other) in steps {
                let next = if jump {
                    other
                } else {
                    let mut next = out.last().cloned().unwrap_or_default();
                    match port {
                        Some(port) => next.service_ports.insert(name, port),
                        None => next.service_ports.remove(&name),
                    };
                    next
                };
                out.push(next);
            }
            out
        })
}
