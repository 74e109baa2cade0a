//! Strategic merge semantics on a synthetic schema, mostly cases from upstream's
//! `patch_test.go` (original, patch, expected result), plus the error paths.

mod common;

use common::{MERGE_ITEM, merge_item_schema};
use serde_json::{Value, json};
use strategicpatch::{PatchError, strategic_merge};

fn apply(original: Value, patch: Value) -> Value {
    match strategic_merge(&original, &patch, &merge_item_schema(), MERGE_ITEM) {
        Ok(merged) => merged,
        Err(error) => panic!("patch {patch} failed: {error}"),
    }
}

fn apply_err(original: Value, patch: Value) -> PatchError {
    match strategic_merge(&original, &patch, &merge_item_schema(), MERGE_ITEM) {
        Ok(merged) => panic!("patch {patch} unexpectedly applied: {merged}"),
        Err(error) => error,
    }
}

#[test]
fn maps_merge_recursively_and_null_deletes() {
    let original = json!({"name": 1, "simpleMap": {"key1": "a", "key2": "b"}, "other": "x"});
    let patch = json!({"value": 1, "name": null, "simpleMap": {"key2": null, "key3": "c"}});
    assert_eq!(
        apply(original, patch),
        json!({"simpleMap": {"key1": "a", "key3": "c"}, "other": "x", "value": 1})
    );
}

#[test]
fn null_for_an_absent_field_and_nulls_inside_new_values_are_dropped() {
    let patch = json!({"missing": null, "fresh": {"keep": 1, "drop": null}});
    assert_eq!(
        apply(json!({"name": 1}), patch),
        json!({"name": 1, "fresh": {"keep": 1}})
    );
}

#[test]
fn scalars_and_untagged_lists_are_replaced() {
    let original = json!({"name": "a", "nonMergingList": [{"name": "1"}, {"name": "2"}], "nonMergingIntList": [1, 2]});
    let patch = json!({"name": "b", "nonMergingList": [{"name": "3"}], "nonMergingIntList": [3]});
    assert_eq!(
        apply(original, patch),
        json!({"name": "b", "nonMergingList": [{"name": "3"}], "nonMergingIntList": [3]})
    );
}

#[test]
fn type_change_replaces_the_value() {
    assert_eq!(
        apply(json!({"value": {"a": 1}}), json!({"value": [1, 2]})),
        json!({"value": [1, 2]})
    );
}

#[test]
fn merging_list_merges_items_by_key_in_patch_order() {
    // upstream: "preserve the order from the patch in a merging list"
    let original =
        json!({"mergingList": [{"name": "1"}, {"name": "2", "value": "b"}, {"name": "3"}]});
    let patch = json!({"mergingList": [
        {"name": "3", "value": "c"}, {"name": "1", "value": "a"}, {"name": "2", "other": "x"}
    ]});
    assert_eq!(
        apply(original, patch),
        json!({"mergingList": [
            {"name": "3", "value": "c"}, {"name": "1", "value": "a"}, {"name": "2", "value": "b", "other": "x"}
        ]})
    );
}

#[test]
fn server_only_items_stay_ahead_of_patch_items_they_preceded() {
    // upstream: "preserve the order from the patch in a merging list 2"
    let original =
        json!({"mergingList": [{"name": "1"}, {"name": "2", "value": "b"}, {"name": "3"}]});
    let patch = json!({"mergingList": [{"name": "3", "value": "c"}, {"name": "1", "value": "a"}]});
    assert_eq!(
        apply(original, patch),
        json!({"mergingList": [
            {"name": "2", "value": "b"}, {"name": "3", "value": "c"}, {"name": "1", "value": "a"}
        ]})
    );
}

#[test]
fn new_items_without_element_order_go_first_like_upstream() {
    let original = json!({"mergingList": [{"name": "a"}, {"name": "b"}]});
    let patch = json!({"mergingList": [{"name": "c", "value": 1}]});
    assert_eq!(
        apply(original, patch),
        json!({"mergingList": [{"name": "c", "value": 1}, {"name": "a"}, {"name": "b"}]})
    );
}

#[test]
fn nested_merging_lists_merge_recursively() {
    let original =
        json!({"mergingList": [{"name": "1", "mergingList": [{"name": "x", "value": 1}]}]});
    let patch = json!({"mergingList": [{"name": "1", "mergingList": [{"name": "x", "other": 2}]}]});
    assert_eq!(
        apply(original, patch),
        json!({"mergingList": [{"name": "1", "mergingList": [{"name": "x", "value": 1, "other": 2}]}]})
    );
}

#[test]
fn delete_directive_removes_every_matching_item() {
    // upstream: "delete all duplicate entries in a merging list"
    let original = json!({"mergingList": [
        {"name": "1"}, {"name": "1"}, {"name": "2", "value": "a"}, {"name": "3"}, {"name": "3"}
    ]});
    let patch = json!({"mergingList": [{"name": "1", "$patch": "delete"}, {"name": "3", "$patch": "delete"}]});
    assert_eq!(
        apply(original, patch),
        json!({"mergingList": [{"name": "2", "value": "a"}]})
    );
}

#[test]
fn delete_directive_for_a_missing_item_changes_nothing() {
    let original = json!({"mergingList": [{"name": "1"}]});
    let patch = json!({"mergingList": [{"name": "9", "$patch": "delete"}]});
    assert_eq!(apply(original.clone(), patch), original);
}

#[test]
fn replace_directive_on_a_list_replaces_it() {
    let original = json!({"mergingList": [{"name": "1", "value": 1}, {"name": "2"}]});
    assert_eq!(
        apply(
            original.clone(),
            json!({"mergingList": [{"$patch": "replace"}]})
        ),
        json!({"mergingList": []})
    );
    assert_eq!(
        apply(
            original,
            json!({"mergingList": [{"name": "3"}, {"$patch": "replace"}]})
        ),
        json!({"mergingList": [{"name": "3"}]})
    );
}

#[test]
fn replace_directive_on_a_map_replaces_it() {
    // upstream: "add key and delete all keys from map"
    assert_eq!(
        apply(
            json!({"name": 1, "value": 1}),
            json!({"other": "a", "$patch": "replace"})
        ),
        json!({"other": "a"})
    );
    assert_eq!(
        apply(
            json!({"simpleMap": {"a": "1"}, "name": 1}),
            json!({"simpleMap": {"b": "2", "$patch": "replace"}})
        ),
        json!({"simpleMap": {"b": "2"}, "name": 1})
    );
}

#[test]
fn delete_directive_on_a_map_empties_it_like_upstream() {
    // upstream: "delete map from nested map" leaves `simpleMap: {}`.
    assert_eq!(
        apply(
            json!({"simpleMap": {"key1": 1}}),
            json!({"simpleMap": {"$patch": "delete"}})
        ),
        json!({"simpleMap": {}})
    );
    // For a field the original lacks there is nothing to delete.
    assert_eq!(
        apply(json!({}), json!({"simpleMap": {"$patch": "delete"}})),
        json!({})
    );
}

#[test]
fn replace_strategy_replaces_maps_wholesale() {
    assert_eq!(
        apply(
            json!({"replacingItem": {"a": 1, "b": 2}}),
            json!({"replacingItem": {"c": 3}})
        ),
        json!({"replacingItem": {"c": 3}})
    );
}

#[test]
fn primitive_merging_list_is_a_union() {
    // upstream: "unique scalars when merging lists"
    assert_eq!(
        apply(
            json!({"mergingIntList": [1, 2]}),
            json!({"mergingIntList": [2, 3]})
        ),
        json!({"mergingIntList": [1, 2, 3]})
    );
    // upstream: "preserve the order from the patch in a merging int list"
    assert_eq!(
        apply(
            json!({"mergingIntList": [1, 2, 3]}),
            json!({"mergingIntList": [3, 1]})
        ),
        json!({"mergingIntList": [2, 3, 1]})
    );
}

#[test]
fn delete_from_primitive_list() {
    let patch = json!({"$deleteFromPrimitiveList/mergingIntList": [2]});
    assert_eq!(
        apply(json!({"mergingIntList": [1, 2, 3, 2]}), patch),
        json!({"mergingIntList": [1, 3]})
    );
    // Works whatever the field's strategy.
    let patch = json!({"$deleteFromPrimitiveList/nonMergingIntList": [2]});
    assert_eq!(
        apply(json!({"nonMergingIntList": [1, 2, 3]}), patch),
        json!({"nonMergingIntList": [1, 3]})
    );
    // Never creates the list.
    let patch = json!({"$deleteFromPrimitiveList/mergingIntList": [3]});
    assert_eq!(
        apply(json!({"foo": ["bar"]}), patch),
        json!({"foo": ["bar"]})
    );
}

#[test]
fn add_and_delete_in_one_primitive_list() {
    let patch = json!({
        "$setElementOrder/mergingIntList": [2, 3],
        "$deleteFromPrimitiveList/mergingIntList": [1],
        "mergingIntList": [3]
    });
    assert_eq!(
        apply(json!({"mergingIntList": [1, 2]}), patch),
        json!({"mergingIntList": [2, 3]})
    );
}

#[test]
fn set_element_order_places_new_items_and_keeps_server_fields() {
    // upstream: "add multiple items in a list and preserve order" (three-way result)
    let current = json!({"mergingList": [{"name": "1", "other": "a"}, {"name": "2", "value": "2", "other": "b"}]});
    let patch = json!({
        "$setElementOrder/mergingList": [{"name": "1"}, {"name": "4"}, {"name": "2"}, {"name": "3"}],
        "mergingList": [{"name": "4", "value": "4"}, {"name": "3", "value": "3"}]
    });
    assert_eq!(
        apply(current, patch),
        json!({"mergingList": [
            {"name": "1", "other": "a"},
            {"name": "4", "value": "4"},
            {"name": "2", "value": "2", "other": "b"},
            {"name": "3", "value": "3"}
        ]})
    );
}

#[test]
fn set_element_order_keeps_server_only_items_near_their_neighbours() {
    // upstream: "merge lists of scalars" (three-way result)
    let patch = json!({"$setElementOrder/mergingIntList": [1, 2, 3], "mergingIntList": [3]});
    assert_eq!(
        apply(json!({"mergingIntList": [1, 2, 4]}), patch),
        json!({"mergingIntList": [1, 2, 3, 4]})
    );
}

#[test]
fn set_element_order_alone_reorders() {
    // upstream: "$setElementOrder contains item that is not present in the int list to be merged"
    let patch = json!({"$setElementOrder/mergingIntList": [3, 2, 1]});
    assert_eq!(
        apply(json!({"mergingIntList": [1, 3]}), patch),
        json!({"mergingIntList": [3, 1]})
    );
}

#[test]
fn set_element_order_with_items_missing_from_the_list() {
    // upstream: "$setElementOrder contains item that is not present in the list to be merged"
    let patch = json!({
        "$setElementOrder/mergingList": [{"name": "3"}, {"name": "2"}, {"name": "1"}],
        "mergingList": [{"name": "3", "value": "3"}, {"name": "1", "value": "1"}]
    });
    assert_eq!(
        apply(
            json!({"mergingList": [{"name": "1"}, {"name": "3"}]}),
            patch
        ),
        json!({"mergingList": [{"name": "3", "value": "3"}, {"name": "1", "value": "1"}]})
    );
}

#[test]
fn set_element_order_that_contradicts_the_patch_is_rejected() {
    // upstream: "should check if order in $setElementOrder and patch list match"
    let patch = json!({
        "$setElementOrder/mergingList": [{"name": "1"}, {"name": "2"}, {"name": "3"}],
        "mergingList": [{"name": "3", "value": "3"}, {"name": "1", "value": "1"}]
    });
    let error = apply_err(
        json!({"mergingList": [{"name": "1"}, {"name": "3"}, {"name": "2"}]}),
        patch,
    );
    assert!(
        matches!(error, PatchError::SetElementOrderMismatch { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("doesn't match"));
}

#[test]
fn set_element_order_for_a_new_list_orders_it() {
    let patch = json!({
        "$setElementOrder/mergingList": [{"name": "b"}, {"name": "a"}],
        "mergingList": [{"name": "b"}, {"name": "a"}]
    });
    assert_eq!(
        apply(json!({}), patch),
        json!({"mergingList": [{"name": "b"}, {"name": "a"}]})
    );
}

#[test]
fn retain_keys_clears_unlisted_fields() {
    // upstream: "retainKeys map should clear defaulted field"
    let original = json!({"retainKeysMap": {"name": "foo", "value": "a", "other": "b"}});
    let patch = json!({"retainKeysMap": {"$retainKeys": ["name", "value"], "value": "c"}});
    assert_eq!(
        apply(original, patch),
        json!({"retainKeysMap": {"name": "foo", "value": "c"}})
    );
}

#[test]
fn retain_keys_in_merging_list_items() {
    // upstream: "retainKeys list of maps clears a field"
    let original = json!({"retainKeysMergingList": [{"name": "bar"}, {"name": "foo", "value": "a", "other": "x"}]});
    let patch =
        json!({"retainKeysMergingList": [{"name": "foo", "$retainKeys": ["name", "value"]}]});
    assert_eq!(
        apply(original, patch),
        json!({"retainKeysMergingList": [{"name": "bar"}, {"name": "foo", "value": "a"}]})
    );
}

#[test]
fn retain_keys_must_list_every_key_the_patch_sets() {
    let patch = json!({"retainKeysMap": {"$retainKeys": ["name"], "value": "c"}});
    let error = apply_err(json!({"retainKeysMap": {"name": "foo"}}), patch);
    assert!(matches!(error, PatchError::BadRetainKeysFormat), "{error}");
    let patch = json!({"retainKeysMap": {"$retainKeys": "name"}});
    assert!(matches!(
        apply_err(json!({}), patch),
        PatchError::BadRetainKeysFormat
    ));
}

#[test]
fn missing_merge_key_is_an_error() {
    // upstream: "missing merge key should error out"
    let error = apply_err(
        json!({"mergingList": [{"name": "1", "value": "a"}]}),
        json!({"mergingList": [{"value": "b"}]}),
    );
    assert!(
        error
            .to_string()
            .contains("does not contain declared merge key: name"),
        "{error}"
    );
    let error = apply_err(
        json!({"mergingList": []}),
        json!({"mergingList": [{"$patch": "delete"}]}),
    );
    assert!(matches!(error, PatchError::NoMergeKey { .. }), "{error}");
}

#[test]
fn list_of_objects_without_merge_key_in_schema_is_an_error() {
    // `mergingIntList` merges but has no key: fine for scalars, an error for objects.
    let error = apply_err(
        json!({"mergingIntList": [{"a": 1}]}),
        json!({"mergingIntList": [{"a": 2}]}),
    );
    assert!(
        matches!(error, PatchError::MissingMergeKeyInSchema { .. }),
        "{error}"
    );
}

#[test]
fn unknown_directives_are_errors() {
    let cases = [
        json!({"$patch": "explode"}),
        json!({"simpleMap": {"$patch": "merge"}}),
        json!({"mergingList": [{"name": "1", "$patch": "explode"}]}),
        json!({"$frobnicate": 1}),
        json!({"simpleMap": {"$other": "x"}}),
        json!({"$setElementOrderX/mergingList": []}),
        json!({"$deleteFromPrimitiveList": [1]}),
        json!({"$deleteFromPrimitiveList/mergingIntList": 1}),
        json!({"$setElementOrder/mergingList": {"name": "1"}}),
        json!({"fresh": [{"$patch": "explode"}]}),
    ];
    for patch in cases {
        apply_err(
            json!({"mergingList": [{"name": "1"}], "simpleMap": {"a": "b"}}),
            patch,
        );
    }
    let error = apply_err(
        json!({"mergingList": []}),
        json!({"mergingList": [{"$patch": "merge"}]}),
    );
    assert!(matches!(error, PatchError::MergeDirectiveInList), "{error}");
}

#[test]
fn malformed_merging_lists_are_errors() {
    let error = apply_err(
        json!({"mergingIntList": [[1]]}),
        json!({"mergingIntList": [[2]]}),
    );
    assert!(matches!(error, PatchError::ListOfLists));
    assert!(error.is_unprocessable());
    let error = apply_err(
        json!({"mergingIntList": [1]}),
        json!({"mergingIntList": ["a"]}),
    );
    assert!(
        matches!(error, PatchError::MixedListElements { .. }),
        "{error}"
    );
    let error = apply_err(
        json!({"mergingList": [1]}),
        json!({"mergingList": [{"name": "1"}]}),
    );
    assert!(
        matches!(error, PatchError::MixedListElements { .. }),
        "{error}"
    );
}

#[test]
fn documents_must_be_objects() {
    let schema = merge_item_schema();
    for (original, patch) in [
        (json!([]), json!({})),
        (json!({}), json!("x")),
        (json!(1), json!(null)),
    ] {
        let error = strategic_merge(&original, &patch, &schema, MERGE_ITEM).unwrap_err();
        assert!(matches!(error, PatchError::BadJsonDocument));
        assert!(!error.is_unprocessable());
    }
    // A null patch is an empty patch.
    assert_eq!(
        strategic_merge(&json!({"a": 1}), &Value::Null, &schema, MERGE_ITEM).unwrap(),
        json!({"a": 1})
    );
}

#[test]
fn directives_never_reach_the_result() {
    let patch = json!({
        "retainKeysMap": {
            "$retainKeys": ["mergingList"],
            "$setElementOrder/mergingList": [{"name": "b"}, {"name": "a"}],
            "mergingList": [{"name": "b"}, {"name": "c", "$patch": "delete"}, {"name": "a"}],
            "$deleteFromPrimitiveList/x": [1]
        },
        "freshList": [{"$patch": "replace"}, {"name": "z", "inner": {"$patch": "delete"}}],
        "replacingItem": {"a": {"b": null}, "$patch": "replace"}
    });
    assert_eq!(
        apply(json!({}), patch),
        json!({
            "retainKeysMap": {"mergingList": [{"name": "b"}, {"name": "a"}]},
            "freshList": [{"name": "z"}],
            "replacingItem": {"a": {}}
        })
    );
}

#[test]
fn key_order_of_the_original_is_preserved() {
    let merged = apply(
        json!({"z": 1, "a": 2, "m": 3}),
        json!({"a": 5, "z": null, "b": 1}),
    );
    let keys: Vec<&String> = merged.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["a", "m", "b"]);
}
