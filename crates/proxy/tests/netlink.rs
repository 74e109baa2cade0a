//! Root test: a transaction sent as an nf_tables netlink batch ([`proxy::netlink::BatchSink`])
//! leaves the kernel with exactly the table `nft -f` leaves for the same transaction's script.
//! Two scratch namespaces; one is loaded by `nft -f`, the other over netlink; then
//! `nft -j list table ip kube-proxy` of both must be equal (handles dropped, set elements
//! sorted: a hash set lists in an order of its own). Full loads (the course's Services, a
//! table replacing an older one) and incremental updates over random state sequences.
//!
//! Fails (never skips) when not root: CI runs as root.

mod common;
#[path = "common/strategies.rs"]
mod strategies;

use proptest::prelude::*;
use proxy::netlink::BatchSink;
use proxy::{IncrementalRuleset, Nft, ProxyState, Ruleset};
use serde_json::Value;

/// Deletes the scratch namespaces however the test ends.
struct Scratch {
    names: Vec<String>,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = dataplane::netns::delete(name);
        }
    }
}

/// One namespace loaded by `nft -f`, one over netlink.
struct Pair {
    _scratch: Scratch,
    by_script: Nft,
    by_netlink: Nft,
}

fn pair(label: &str) -> Pair {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test needs root (network namespaces and nftables)"
    );
    let script_ns = format!("klnft-{}-{label}-script", std::process::id());
    let netlink_ns = format!("klnft-{}-{label}-netlink", std::process::id());
    let scratch = Scratch {
        names: vec![script_ns.clone(), netlink_ns.clone()],
    };
    let script_path = dataplane::netns::create(&script_ns).expect("create netns");
    let netlink_path = dataplane::netns::create(&netlink_ns).expect("create netns");
    Pair {
        _scratch: scratch,
        by_script: Nft::in_netns(&script_path).expect("open netns"),
        by_netlink: Nft::in_netns(&netlink_path).expect("open netns"),
    }
}

/// `nft -j list table ip kube-proxy` without handles and with set elements in sorted order.
fn listed(nft: &Nft) -> Value {
    let text = nft.list_table_json().expect("list table");
    let mut value: Value = serde_json::from_str(&text).expect("nft -j prints JSON");
    canonical(&mut value);
    value
}

fn canonical(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.remove("handle");
            for (key, inner) in map.iter_mut() {
                canonical(inner);
                if key == "elem"
                    && let Value::Array(elements) = inner
                {
                    elements.sort_by_key(|e| e.to_string());
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(canonical),
        _ => {}
    }
}

fn send_full(nft: &Nft, ruleset: &Ruleset) {
    let mut batch = BatchSink::new();
    ruleset.write_full(&mut batch);
    nft.send_batch(&batch.finish().expect("encodable"))
        .expect("kernel takes the batch");
}

fn assert_same_table(pair: &Pair, context: &str) {
    let by_script = listed(&pair.by_script);
    let by_netlink = listed(&pair.by_netlink);
    assert!(
        by_script == by_netlink,
        "{context}: tables differ\nnft -f:\n{}\nnetlink:\n{}",
        pair.by_script.list_table().unwrap_or_default(),
        pair.by_netlink.list_table().unwrap_or_default()
    );
}

fn course_state(config: proxy::ProxyConfig) -> ProxyState {
    ProxyState::from_objects(
        &common::course_services(),
        &common::course_slices(),
        &config,
    )
}

#[test]
fn full_load_of_the_course_services_lists_like_nft_f() {
    let pair = pair("course");
    for (label, config) in [
        ("default", common::config()),
        (
            "masquerade-all",
            proxy::ProxyConfig {
                masquerade_all: true,
                ..common::config()
            },
        ),
    ] {
        let ruleset = Ruleset::render(&course_state(config));
        pair.by_script
            .apply(&ruleset.to_nft_script())
            .expect("nft -f");
        assert_eq!(
            pair.by_netlink
                .replace_table(&ruleset)
                .expect("replace table"),
            proxy::Applied::Netlink
        );
        assert_same_table(&pair, label);
        // The text listing too, as a student reads it (element order aside).
        let text = pair.by_netlink.list_table().expect("list");
        assert!(
            text.contains("numgen random mod 3 0 goto endpoint-"),
            "{text}"
        );
        assert!(text.contains("dnat to 192.168.36.130:80"), "{text}");
    }
    // A full load replaces an older table whatever it held.
    let small = Ruleset::render(&ProxyState::from_objects(
        &common::course_services()[..1],
        &common::course_slices(),
        &common::config(),
    ));
    pair.by_script
        .apply(&small.to_nft_script())
        .expect("nft -f");
    send_full(&pair.by_netlink, &small);
    assert_same_table(&pair, "replaced by a smaller table");
}

#[test]
fn a_refused_batch_changes_nothing_and_says_why() {
    let pair = pair("refused");
    let ruleset = Ruleset::render(&course_state(common::config()));
    send_full(&pair.by_netlink, &ruleset);
    let before = listed(&pair.by_netlink);
    // A rule jumping to a chain that does not exist: the kernel refuses the whole batch.
    let mut batch = BatchSink::new();
    proxy::transaction::Sink::command(
        &mut batch,
        proxy::transaction::Command::AddRule {
            chain: "services",
            rule: "jump no-such-chain",
        },
    );
    let error = pair
        .by_netlink
        .send_batch(&batch.finish().expect("encodable"))
        .expect_err("refused");
    assert!(
        matches!(error, proxy::ProxyError::Kernel { .. }),
        "{error:?}"
    );
    assert_eq!(listed(&pair.by_netlink), before);
    // The socket is kept across batches and still good after a refusal.
    let smaller = Ruleset::render(&ProxyState::from_objects(
        &common::course_services()[..1],
        &common::course_slices(),
        &common::config(),
    ));
    send_full(&pair.by_netlink, &smaller);
    assert_ne!(listed(&pair.by_netlink), before);
}

/// The handle that `nft -j list table` shows for `ip kube-proxy`.
fn listed_handle(nft: &Nft) -> Option<u64> {
    let doc: Value = serde_json::from_str(&nft.list_table_json().ok()?).expect("json");
    doc["nftables"].as_array()?.iter().find_map(|item| {
        let t = &item["table"];
        (t["name"] == "kube-proxy").then(|| t["handle"].as_u64())?
    })
}

#[test]
fn table_handle_asks_the_kernel_for_the_one_table() {
    let pair = pair("handle");
    let nft = &pair.by_netlink;
    assert_eq!(nft.table_handle().expect("query"), None, "no table yet");
    let ruleset = Ruleset::render(&course_state(common::config()));
    send_full(nft, &ruleset);
    let first = nft.table_handle().expect("query");
    assert!(first.is_some());
    assert_eq!(first, listed_handle(nft));
    // A full load replaces the table: a new handle, the one nft lists.
    send_full(nft, &ruleset);
    let second = nft.table_handle().expect("query");
    assert_ne!(second, first);
    assert_eq!(second, listed_handle(nft));
    nft.delete_table().expect("delete");
    assert_eq!(nft.table_handle().expect("query"), None, "deleted");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Every step is applied both ways (full load first, then the incremental transactions
    /// the agent sends) and both kernels must list the same table after each.
    #[test]
    fn incremental_updates_list_like_nft_f(states in strategies::states()) {
        let pair = pair("updates");
        let mut by_script = IncrementalRuleset::new();
        let mut by_netlink = IncrementalRuleset::new();
        for (step, state) in states.into_iter().enumerate() {
            let script = by_script.update(state.clone());
            let mut batch = BatchSink::new();
            let changed = by_netlink.update_into(state, &mut batch);
            prop_assert_eq!(changed, script.is_some());
            if step == 0 {
                // As the agent: the first load replaces the table.
                pair.by_script.apply(&by_script.ruleset().to_nft_script()).expect("nft -f");
                send_full(&pair.by_netlink, by_netlink.ruleset());
            } else if let Some(script) = script {
                pair.by_script.apply(&script).expect("nft -f");
                pair.by_netlink
                    .send_batch(&batch.finish().expect("encodable"))
                    .expect("kernel takes the batch");
            }
            assert_same_table(&pair, &format!("step {step}"));
        }
    }
}
