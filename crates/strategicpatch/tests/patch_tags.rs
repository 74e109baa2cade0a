//! The tag table against the real k8s-openapi definitions: every tag names an existing field
//! of the right shape, and merge keys exist on the item type.

mod common;

use std::collections::HashSet;

use common::openapi_schema;
use strategicpatch::{PatchTag, patch_tags};

fn find(definition: &str, field: &str) -> Option<PatchTag> {
    patch_tags()
        .iter()
        .find(|tag| tag.definition == definition && tag.field == field)
        .copied()
}

#[test]
fn well_known_tags_are_present() {
    let core = |ty: &str| format!("io.k8s.api.core.v1.{ty}");
    let expectations = [
        (core("PodSpec"), "containers", "merge", Some("name")),
        (core("PodSpec"), "initContainers", "merge", Some("name")),
        (
            core("PodSpec"),
            "ephemeralContainers",
            "merge",
            Some("name"),
        ),
        (core("PodSpec"), "volumes", "merge,retainKeys", Some("name")),
        (core("PodSpec"), "imagePullSecrets", "merge", Some("name")),
        (core("PodSpec"), "hostAliases", "merge", Some("ip")),
        (
            core("PodSpec"),
            "topologySpreadConstraints",
            "merge",
            Some("topologyKey"),
        ),
        (core("Container"), "ports", "merge", Some("containerPort")),
        (core("Container"), "env", "merge", Some("name")),
        (
            core("Container"),
            "volumeMounts",
            "merge",
            Some("mountPath"),
        ),
        (
            core("Container"),
            "volumeDevices",
            "merge",
            Some("devicePath"),
        ),
        (core("ServiceSpec"), "ports", "merge", Some("port")),
        (core("NodeStatus"), "addresses", "merge", Some("type")),
        (core("PodStatus"), "conditions", "merge", Some("type")),
        (
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta".to_owned(),
            "ownerReferences",
            "merge",
            Some("uid"),
        ),
        (
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta".to_owned(),
            "finalizers",
            "merge",
            None,
        ),
        (
            "io.k8s.api.apps.v1.DeploymentSpec".to_owned(),
            "strategy",
            "retainKeys",
            None,
        ),
        (
            "io.k8s.api.apps.v1.DeploymentStatus".to_owned(),
            "conditions",
            "merge",
            Some("type"),
        ),
    ];
    for (definition, field, strategy, merge_key) in expectations {
        let tag =
            find(&definition, field).unwrap_or_else(|| panic!("no tag for {definition}.{field}"));
        assert_eq!(
            (tag.strategy, tag.merge_key),
            (strategy, merge_key),
            "{definition}.{field}"
        );
    }
}

#[test]
fn atomic_fields_have_no_tag() {
    for (definition, field) in [
        ("io.k8s.api.core.v1.PodSpec", "tolerations"),
        ("io.k8s.api.apps.v1.DaemonSetSpec", "updateStrategy"),
        ("io.k8s.api.apps.v1.StatefulSetSpec", "volumeClaimTemplates"),
        ("io.k8s.api.discovery.v1.EndpointSlice", "endpoints"),
    ] {
        assert_eq!(find(definition, field), None, "{definition}.{field}");
    }
}

#[test]
fn tags_are_unique_and_use_known_strategies() {
    let mut seen = HashSet::new();
    for tag in patch_tags() {
        assert!(
            seen.insert((tag.definition, tag.field)),
            "duplicate {tag:?}"
        );
        assert!(
            ["merge", "retainKeys", "merge,retainKeys"].contains(&tag.strategy),
            "{tag:?}"
        );
    }
}

#[test]
fn every_tag_names_a_real_field_of_the_right_shape() {
    let schema = openapi_schema();
    for tag in patch_tags() {
        let property = schema
            .property(tag.definition, tag.field)
            .unwrap_or_else(|| panic!("{}.{} is not in k8s-openapi", tag.definition, tag.field));
        if tag.strategy == "retainKeys" {
            assert!(
                property.get("$ref").is_some(),
                "{tag:?} should be an object field"
            );
            continue;
        }
        let items = property
            .get("items")
            .unwrap_or_else(|| panic!("{tag:?} is not a list: {property}"));
        match (tag.merge_key, items.get("$ref").and_then(|r| r.as_str())) {
            (Some(key), Some(reference)) => {
                let item_definition = reference.rsplit('/').next().unwrap_or_default();
                assert!(
                    schema.property(item_definition, key).is_some(),
                    "{tag:?}: {item_definition} has no {key}"
                );
            }
            (None, None) => {}
            (key, reference) => panic!("{tag:?}: merge key {key:?} but items {reference:?}"),
        }
    }
}
