//! `IncrementalRuleset` is an optimisation of `Ruleset::render` + `Ruleset::update_script`:
//! for any sequence of states it must produce exactly the same ruleset and the same scripts.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use proptest::prelude::*;
use proxy::model::ServicePortState;
use proxy::{
    Endpoint, IncrementalRuleset, Protocol, ProxyConfig, ProxyState, Ruleset, ServicePortName,
};

/// A few names so that generated states often share, add and remove the same ports.
fn port_name() -> impl Strategy<Value = ServicePortName> {
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

fn endpoint() -> impl Strategy<Value = Endpoint> {
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
fn port_state() -> impl Strategy<Value = ServicePortState> {
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

fn state() -> impl Strategy<Value = ProxyState> {
    (
        prop::collection::btree_map(port_name(), port_state(), 0..6),
        any::<bool>(),
    )
        .prop_map(|(service_ports, masquerade_all)| ProxyState {
            config: ProxyConfig {
                node_name: "kube-1".into(),
                masquerade_all,
                ..ProxyConfig::default()
            },
            service_ports,
            diagnostics: Vec::new(),
        })
}

/// Mostly small steps (one port changed), sometimes a whole new state.
fn states() -> impl Strategy<Value = Vec<ProxyState>> {
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn incremental_equals_full_render_and_diff(states in states()) {
        let mut incremental = IncrementalRuleset::new();
        let mut previous = Ruleset::default();
        for state in states {
            let full = Ruleset::render(&state);
            let script = incremental.update(state);
            prop_assert_eq!(incremental.ruleset(), &full);
            prop_assert_eq!(script, Ruleset::update_script(&previous, &full));
            previous = full;
        }
    }
}

#[test]
fn one_changed_service_among_many_touches_only_it() {
    let mut state = ProxyState {
        config: ProxyConfig::default(),
        service_ports: BTreeMap::new(),
        diagnostics: Vec::new(),
    };
    for i in 0..50u8 {
        state.service_ports.insert(
            ServicePortName {
                namespace: "default".into(),
                name: format!("svc-{i}"),
                port_name: String::new(),
                protocol: Protocol::Tcp,
            },
            ServicePortState {
                cluster_ip: Ipv4Addr::new(10, 96, 1, i),
                port: 80,
                node_port: None,
                external_ips: Vec::new(),
                external_policy_local: false,
                internal_policy_local: false,
                endpoints: vec![Endpoint {
                    ip: Ipv4Addr::new(192, 168, 2, i),
                    port: 80,
                    ready: true,
                    serving: true,
                    terminating: false,
                    is_local: false,
                }],
            },
        );
    }
    let mut incremental = IncrementalRuleset::new();
    assert!(incremental.update(state.clone()).is_some());
    assert_eq!(
        incremental.update(state.clone()),
        None,
        "unchanged state, no script"
    );

    let mut next = state.clone();
    let svc7 = next
        .service_ports
        .iter_mut()
        .find(|(name, _)| name.name == "svc-7")
        .map(|(_, port)| port)
        .expect("svc-7 exists");
    svc7.endpoints[0].ip = Ipv4Addr::new(192, 168, 3, 7);
    let script = incremental.update(next).expect("a change");
    assert!(
        script.lines().all(|line| line.contains("default/svc-7/")),
        "only svc-7's chains change:\n{script}"
    );
}
