//! Golden tests: the full `nft -f` script for the course's Services. Refresh with
//! `INSTA_UPDATE=always cargo test -p proxy --test golden` and review the diff.

mod common;

use proxy::{ProxyState, Ruleset};

#[test]
fn course_services_render_like_kube_proxy() {
    let state = ProxyState::from_objects(
        &common::course_services(),
        &common::course_slices(),
        &common::config(),
    );
    assert!(state.diagnostics.is_empty(), "{:?}", state.diagnostics);
    let script = Ruleset::render(&state).to_nft_script();
    insta::assert_snapshot!(script);
}

#[test]
fn masquerade_all_marks_every_clusterip_connection() {
    let config = proxy::ProxyConfig {
        masquerade_all: true,
        ..common::config()
    };
    let services = &common::course_services()[..1];
    let state = ProxyState::from_objects(services, &common::course_slices(), &config);
    let rs = Ruleset::render(&state);
    let chain = rs
        .chains
        .iter()
        .find(|(name, _)| {
            name.starts_with("service-") && name.ends_with("default/kubernetes/tcp/https")
        })
        .map(|(_, rules)| rules.clone());
    insta::assert_debug_snapshot!(chain);
}
