//! `Ruleset::update_script`: a change touches only the chains and map elements it concerns.

mod common;

use proxy::{ProxyState, Ruleset};

fn render(
    services: &[k8s_openapi::api::core::v1::Service],
    slices: &[k8s_openapi::api::discovery::v1::EndpointSlice],
) -> Ruleset {
    Ruleset::render(&ProxyState::from_objects(
        services,
        slices,
        &common::config(),
    ))
}

fn course() -> Ruleset {
    render(&common::course_services(), &common::course_slices())
}

/// The chain names a script mentions after `verb` (e.g. "add chain", "flush chain").
fn chains_after(script: &str, verb: &str) -> Vec<String> {
    let prefix = format!("{verb} ip kube-proxy ");
    script
        .lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .map(|rest| {
            rest.split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

fn rule_chains(script: &str) -> std::collections::BTreeSet<String> {
    chains_after(script, "add rule").into_iter().collect()
}

#[test]
fn unchanged_state_needs_no_transaction() {
    assert_eq!(Ruleset::update_script(&course(), &course()), None);
}

#[test]
fn one_added_endpoint_touches_only_its_service_chain() {
    let old = course();
    let mut slices = common::course_slices();
    slices[1] = common::slice(
        "default",
        "cluster-demo",
        &[
            "192.168.36.130",
            "192.168.36.131",
            "192.168.132.66",
            "192.168.132.68",
        ],
        &[("", "TCP", 80)],
    );
    let new = render(&common::course_services(), &slices);
    let script = Ruleset::update_script(&old, &new).expect("a change");

    let added = chains_after(&script, "add chain");
    assert_eq!(added.len(), 1, "{script}");
    assert!(
        added[0].starts_with("endpoint-")
            && added[0].ends_with("-default/cluster-demo/tcp/__192.168.132.68/80")
    );
    let flushed = chains_after(&script, "flush chain");
    assert_eq!(flushed.len(), 1, "{script}");
    assert!(
        flushed[0].starts_with("service-") && flushed[0].ends_with("-default/cluster-demo/tcp/")
    );
    assert_eq!(
        rule_chains(&script),
        [added[0].clone(), flushed[0].clone()].into_iter().collect(),
        "{script}"
    );
    assert!(
        !script.contains("element"),
        "map elements are untouched: {script}"
    );
    assert!(!script.contains("delete"), "{script}");
    // The new endpoint chain exists before the rule that jumps to it.
    let declared = script.find("add chain").unwrap_or(usize::MAX);
    let used = script.find("numgen").unwrap_or(0);
    assert!(declared < used, "{script}");
    insta::assert_snapshot!(script);
}

#[test]
fn deleted_service_loses_elements_then_chains() {
    let old = course();
    let services: Vec<_> = common::course_services()
        .into_iter()
        .filter(|s| s.metadata.name.as_deref() != Some("nodeport-demo"))
        .collect();
    let new = render(&services, &common::course_slices());
    let script = Ruleset::update_script(&old, &new).expect("a change");

    assert!(chains_after(&script, "add chain").is_empty(), "{script}");
    assert!(rule_chains(&script).is_empty(), "{script}");
    let deleted = chains_after(&script, "delete chain");
    // service-, external- and two endpoint- chains.
    assert_eq!(deleted.len(), 4, "{script}");
    assert!(
        deleted
            .iter()
            .all(|c| c.contains("-default/nodeport-demo/tcp/")),
        "{script}"
    );
    let first_chain_delete = script.find("delete chain").unwrap_or(0);
    for element in [
        "delete element ip kube-proxy service-ips",
        "delete element ip kube-proxy service-nodeports",
        "delete element ip kube-proxy cluster-ips",
    ] {
        let at = script.find(element).unwrap_or(usize::MAX);
        assert!(
            at < first_chain_delete,
            "{element} must come first:\n{script}"
        );
    }
    assert!(!script.contains("add element"), "{script}");
    insta::assert_snapshot!(script);
}

#[test]
fn service_without_endpoints_moves_to_reject_map() {
    let old = course();
    let mut slices = common::course_slices();
    slices[1] = common::slice("default", "cluster-demo", &[], &[("", "TCP", 80)]);
    let new = render(&common::course_services(), &slices);
    let script = Ruleset::update_script(&old, &new).expect("a change");

    assert!(
        script
            .contains("delete element ip kube-proxy service-ips { 10.104.201.93 . tcp . 8080 }\n"),
        "{script}"
    );
    assert!(script.contains("add element ip kube-proxy no-endpoint-services { 10.104.201.93 . tcp . 8080 : goto reject-chain }\n"), "{script}");
    let deleted = chains_after(&script, "delete chain");
    assert_eq!(
        deleted.len(),
        4,
        "service chain and three endpoint chains: {script}"
    );
    assert!(rule_chains(&script).is_empty(), "{script}");
    insta::assert_snapshot!(script);
}

#[test]
fn changed_verdict_is_deleted_and_readded_in_one_transaction() {
    let old = course();
    // The same Service with another port name gets another chain, so its map element's verdict
    // changes while the key stays.
    let mut services = common::course_services();
    services[1] = common::service(
        "default",
        "cluster-demo",
        "ClusterIP",
        "10.104.201.93",
        &[("web", "TCP", 8080, 80, None)],
    );
    let mut slices = common::course_slices();
    slices[1] = common::slice(
        "default",
        "cluster-demo",
        &["192.168.36.130"],
        &[("web", "TCP", 80)],
    );
    let new = render(&services, &slices);
    let script = Ruleset::update_script(&old, &new).expect("a change");
    let delete = script
        .find("delete element ip kube-proxy service-ips { 10.104.201.93 . tcp . 8080 }")
        .unwrap_or(usize::MAX);
    let add = script
        .find("add element ip kube-proxy service-ips { 10.104.201.93 . tcp . 8080 : goto service-")
        .unwrap_or(0);
    assert!(delete < add, "{script}");
}

#[test]
fn update_from_nothing_builds_the_same_table() {
    let new = course();
    let script = Ruleset::update_script(&Ruleset::default(), &new).expect("a change");
    // Same declarations, rules and elements as the full script, minus the table reset.
    let full = new.to_nft_script();
    let body = |s: &str| {
        let mut lines: Vec<String> = s
            .lines()
            .filter(|l| !l.contains(" table "))
            .map(str::to_string)
            .collect();
        lines.sort();
        lines
    };
    assert_eq!(body(&script), body(&full));
}
