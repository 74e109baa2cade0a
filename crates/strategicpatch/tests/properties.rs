//! Property tests (no input panics, directives never leak, RFC 7386 laws), the RFC 7386
//! examples table, and RFC 6902 behaviour.

mod common;

use common::{MERGE_ITEM, merge_item_schema, openapi_schema};
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use strategicpatch::{PatchError, json_patch, merge_patch, strategic_merge};

/// Keys that hit the interesting paths of the synthetic schema, plus every directive.
const KEYS: &[&str] = &[
    "name",
    "value",
    "mergingList",
    "mergingIntList",
    "nonMergingList",
    "simpleMap",
    "retainKeysMap",
    "retainKeysMergingList",
    "replacingItem",
    "spec",
    "containers",
    "$patch",
    "$retainKeys",
    "$setElementOrder/mergingList",
    "$setElementOrder/mergingIntList",
    "$deleteFromPrimitiveList/mergingIntList",
    "$unknown",
];

const WORDS: &[&str] = &["delete", "replace", "merge", "name", "value", "a", "b", ""];

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-3i64..4).prop_map(Value::from),
        prop::sample::select(WORDS).prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 48, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..5).prop_map(|fields| {
                Value::Object(
                    fields
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect::<Map<_, _>>(),
                )
            }),
        ]
    })
}

fn arb_object() -> impl Strategy<Value = Value> {
    prop::collection::vec((prop::sample::select(KEYS), arb_json()), 0..6).prop_map(|fields| {
        Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect::<Map<_, _>>(),
        )
    })
}

/// Objects without lists, directives or fields with the `replace` strategy.
fn arb_plain_object() -> impl Strategy<Value = Value> {
    const PLAIN_KEYS: &[&str] = &["name", "value", "simpleMap", "retainKeysMap", "spec"];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        prop::sample::select(WORDS).prop_map(Value::from),
    ];
    let object = |inner| {
        prop::collection::vec((prop::sample::select(PLAIN_KEYS), inner), 0..4).prop_map(|fields| {
            Value::Object(
                fields
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect::<Map<_, _>>(),
            )
        })
    };
    object(
        leaf.prop_recursive(3, 24, 4, move |inner| object(inner).boxed())
            .boxed(),
    )
}

fn has_dollar_key(value: &Value) -> bool {
    match value {
        Value::Object(fields) => fields
            .iter()
            .any(|(k, v)| k.starts_with('$') || has_dollar_key(v)),
        Value::Array(items) => items.iter().any(has_dollar_key),
        _ => false,
    }
}

fn arb_json_patch() -> impl Strategy<Value = Value> {
    let op =
        prop::sample::select(&["add", "remove", "replace", "move", "copy", "test", "bogus"][..]);
    let path = prop::sample::select(
        &[
            "",
            "/",
            "/name",
            "/mergingList",
            "/mergingList/0",
            "/mergingList/-",
            "/mergingList/9",
            "/a~1b",
            "name",
        ][..],
    );
    let operation = (op, path.clone(), path, arb_json()).prop_map(
        |(op, path, from, value)| json!({"op": op, "path": path, "from": from, "value": value}),
    );
    prop_oneof![
        prop::collection::vec(operation, 0..4).prop_map(Value::Array),
        arb_json(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn strategic_merge_never_panics_and_never_leaks_directives(original in arb_json(), patch in arb_json()) {
        let schema = merge_item_schema();
        if let Ok(merged) = strategic_merge(&original, &patch, &schema, MERGE_ITEM) {
            prop_assert!(merged.is_object());
            if !has_dollar_key(&original) {
                prop_assert!(!has_dollar_key(&merged), "{merged}");
            }
        }
    }

    #[test]
    fn strategic_merge_on_objects_never_leaks_directives(original in arb_object(), patch in arb_object()) {
        let schema = merge_item_schema();
        if let Ok(merged) = strategic_merge(&original, &patch, &schema, MERGE_ITEM)
            && !has_dollar_key(&original)
        {
            prop_assert!(!has_dollar_key(&merged), "{merged}");
        }
    }

    #[test]
    fn strategic_merge_without_directives_or_lists_is_a_merge_patch(original in arb_plain_object(), patch in arb_plain_object()) {
        // With no lists, no directives and no `replace` strategy, strategic merge and RFC 7386 agree.
        let schema = merge_item_schema();
        let merged = strategic_merge(&original, &patch, &schema, MERGE_ITEM);
        prop_assert_eq!(merged.ok(), Some(merge_patch(&original, &patch)));
    }

    #[test]
    fn merge_patch_is_idempotent_and_sets_what_it_says(original in arb_json(), patch in arb_json()) {
        let once = merge_patch(&original, &patch);
        prop_assert_eq!(merge_patch(&once, &patch), once.clone());
        if let Value::Object(fields) = &patch {
            for (key, value) in fields {
                match value {
                    Value::Null => prop_assert!(once.get(key).is_none()),
                    Value::Object(_) => prop_assert!(once.get(key).is_some_and(Value::is_object)),
                    other => prop_assert_eq!(once.get(key), Some(other)),
                }
            }
        } else {
            prop_assert_eq!(once, patch);
        }
    }

    #[test]
    fn json_patch_never_panics_and_is_all_or_nothing(original in arb_json(), patch in arb_json_patch()) {
        match json_patch(&original, &patch) {
            Ok(_) => {}
            Err(PatchError::InvalidJsonPatch(_)) => prop_assert!(!patch.is_array() || !patch.as_array().unwrap().is_empty()),
            Err(error) => prop_assert!(error.is_unprocessable(), "{error}"),
        }
    }
}

#[test]
fn strategic_merge_with_the_real_schema_never_panics() {
    let schema = openapi_schema();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 300,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let document = || {
        let keys = prop::sample::select(
            &[
                "spec",
                "template",
                "containers",
                "name",
                "env",
                "ports",
                "containerPort",
                "strategy",
                "$patch",
                "$setElementOrder/containers",
                "$retainKeys",
                "metadata",
                "labels",
                "finalizers",
            ][..],
        );
        prop::collection::vec((keys, arb_json()), 0..6).prop_map(|fields| {
            Value::Object(
                fields
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect::<Map<_, _>>(),
            )
        })
    };
    let result = runner.run(&(document(), document()), |(original, patch)| {
        let _ = strategic_merge(&original, &patch, &schema, "io.k8s.api.apps.v1.Deployment");
        Ok(())
    });
    assert!(result.is_ok(), "{result:?}");
}

#[test]
fn merge_patch_matches_the_rfc_7386_examples() {
    // RFC 7386, Appendix A.
    let table = [
        (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
        (
            json!({"a": "b"}),
            json!({"b": "c"}),
            json!({"a": "b", "b": "c"}),
        ),
        (json!({"a": "b"}), json!({"a": null}), json!({})),
        (
            json!({"a": "b", "b": "c"}),
            json!({"a": null}),
            json!({"b": "c"}),
        ),
        (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
        (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
        (
            json!({"a": {"b": "c"}}),
            json!({"a": {"b": "d", "c": null}}),
            json!({"a": {"b": "d"}}),
        ),
        (
            json!({"a": [{"b": "c"}]}),
            json!({"a": [1]}),
            json!({"a": [1]}),
        ),
        (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
        (json!({"a": "b"}), json!(["c"]), json!(["c"])),
        (json!({"a": "foo"}), json!(null), json!(null)),
        (json!({"a": "foo"}), json!("bar"), json!("bar")),
        (
            json!({"e": null}),
            json!({"a": 1}),
            json!({"e": null, "a": 1}),
        ),
        (
            json!([1, 2]),
            json!({"a": "b", "c": null}),
            json!({"a": "b"}),
        ),
        (
            json!({}),
            json!({"a": {"bb": {"ccc": null}}}),
            json!({"a": {"bb": {}}}),
        ),
    ];
    for (original, patch, expected) in table {
        assert_eq!(
            merge_patch(&original, &patch),
            expected,
            "{original} + {patch}"
        );
    }
}

#[test]
fn merge_patch_keeps_key_order() {
    let merged = merge_patch(
        &json!({"z": 1, "a": 2, "m": 3}),
        &json!({"z": null, "b": 4}),
    );
    let keys: Vec<&String> = merged
        .as_object()
        .into_iter()
        .flat_map(|m| m.keys())
        .collect();
    assert_eq!(keys, ["a", "m", "b"]);
}

#[test]
fn json_patch_supports_every_operation() {
    let original =
        json!({"metadata": {"labels": {"app": "web"}}, "spec": {"replicas": 1, "ports": [80]}});
    let patch = json!([
        {"op": "test", "path": "/spec/replicas", "value": 1},
        {"op": "replace", "path": "/spec/replicas", "value": 3},
        {"op": "add", "path": "/spec/ports/-", "value": 443},
        {"op": "add", "path": "/metadata/labels/tier", "value": "frontend"},
        {"op": "copy", "from": "/metadata/labels/app", "path": "/metadata/labels/name"},
        {"op": "move", "from": "/metadata/labels/tier", "path": "/metadata/labels/role"},
        {"op": "remove", "path": "/metadata/labels/app"}
    ]);
    assert_eq!(
        json_patch(&original, &patch).unwrap(),
        json!({"metadata": {"labels": {"name": "web", "role": "frontend"}}, "spec": {"replicas": 3, "ports": [80, 443]}})
    );
}

#[test]
fn json_patch_failures() {
    let original = json!({"spec": {"replicas": 1}});
    let failed_test = json!([{"op": "replace", "path": "/spec/replicas", "value": 2}, {"op": "test", "path": "/spec/replicas", "value": 5}]);
    let error = json_patch(&original, &failed_test).unwrap_err();
    assert!(
        matches!(error, PatchError::JsonPatchFailed(_)) && error.is_unprocessable(),
        "{error}"
    );
    let missing = json!([{"op": "remove", "path": "/spec/missing"}]);
    assert!(matches!(
        json_patch(&original, &missing),
        Err(PatchError::JsonPatchFailed(_))
    ));
    for malformed in [
        json!({"op": "add"}),
        json!([{"op": "frobnicate", "path": "/a"}]),
        json!([{"op": "add", "path": "/a"}]),
    ] {
        let error = json_patch(&original, &malformed).unwrap_err();
        assert!(
            matches!(error, PatchError::InvalidJsonPatch(_)) && !error.is_unprocessable(),
            "{error}"
        );
    }
}
