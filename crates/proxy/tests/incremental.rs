//! `IncrementalRuleset` is an optimisation of `Ruleset::render` + `Ruleset::update_script`:
//! for any sequence of states it must produce exactly the same ruleset and the same scripts.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use proptest::prelude::*;
use proxy::model::ServicePortState;
use proxy::{
    Endpoint, IncrementalRuleset, Protocol, ProxyConfig, ProxyState, Ruleset, ServicePortName,
};

#[path = "common/strategies.rs"]
mod strategies;

use strategies::states;

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
