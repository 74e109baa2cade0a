//! Shared fixtures: a synthetic schema shaped like upstream's `mergeItem` test type, and a
//! schema read from k8s-openapi's real definitions plus our tag table.

#![allow(dead_code)]

use std::collections::HashMap;

use serde_json::{Map, Value};
use strategicpatch::{FieldInfo, PatchSchema, PatchTag, TagOnlySchema, patch_tags};

pub const MERGE_ITEM: &str = "test.MergeItem";

const fn tag(
    field: &'static str,
    strategy: &'static str,
    merge_key: Option<&'static str>,
) -> PatchTag {
    PatchTag {
        definition: MERGE_ITEM,
        field,
        strategy,
        merge_key,
    }
}

static MERGE_ITEM_TAGS: &[PatchTag] = &[
    tag("mergingList", "merge", Some("name")),
    tag("mergingIntList", "merge", None),
    tag("replacingItem", "replace", None),
    tag("retainKeysMap", "retainKeys", None),
    tag("retainKeysMergingList", "merge,retainKeys", Some("name")),
];

/// Upstream's `mergeItem`: every field of a test object is a `MergeItem` again.
pub fn merge_item_schema() -> TagOnlySchema {
    TagOnlySchema::new(MERGE_ITEM_TAGS)
        .child(MERGE_ITEM, "mergingList", MERGE_ITEM)
        .child(MERGE_ITEM, "nonMergingList", MERGE_ITEM)
        .child(MERGE_ITEM, "replacingItem", MERGE_ITEM)
        .child(MERGE_ITEM, "retainKeysMap", MERGE_ITEM)
        .child(MERGE_ITEM, "retainKeysMergingList", MERGE_ITEM)
        .map_of(MERGE_ITEM, "simpleMap", None)
}

/// The built-in types' definitions as k8s-openapi's schemars output describes them, keyed by
/// OpenAPI definition name, with strategies and merge keys from `patch_tags()`. This is how
/// the API server's real schema is meant to be built.
pub struct OpenApiSchema {
    pub definitions: Map<String, Value>,
    tags: HashMap<(String, String), PatchTag>,
}

pub fn openapi_schema() -> OpenApiSchema {
    use k8s_openapi::api::{apps, coordination, core, discovery};
    let mut generator = schemars::SchemaGenerator::default();
    generator.subschema_for::<apps::v1::Deployment>();
    generator.subschema_for::<apps::v1::DaemonSet>();
    generator.subschema_for::<apps::v1::StatefulSet>();
    generator.subschema_for::<apps::v1::ReplicaSet>();
    generator.subschema_for::<core::v1::Pod>();
    generator.subschema_for::<core::v1::Service>();
    generator.subschema_for::<core::v1::Node>();
    generator.subschema_for::<core::v1::Namespace>();
    generator.subschema_for::<core::v1::ServiceAccount>();
    generator.subschema_for::<core::v1::PersistentVolumeClaim>();
    generator.subschema_for::<core::v1::ReplicationController>();
    generator.subschema_for::<core::v1::ComponentStatus>();
    generator.subschema_for::<core::v1::ConfigMap>();
    generator.subschema_for::<discovery::v1::EndpointSlice>();
    generator.subschema_for::<coordination::v1::Lease>();
    OpenApiSchema {
        definitions: generator.definitions().clone(),
        tags: patch_tags()
            .iter()
            .map(|tag| ((tag.definition.to_owned(), tag.field.to_owned()), *tag))
            .collect(),
    }
}

/// `#/$defs/io.k8s.api.core.v1.PodSpec` → `io.k8s.api.core.v1.PodSpec`.
fn ref_name(schema: &Value) -> Option<String> {
    let reference = schema.get("$ref")?.as_str()?;
    Some(
        reference
            .rsplit('/')
            .next()?
            .replace("~1", "/")
            .replace("~0", "~"),
    )
}

impl OpenApiSchema {
    pub fn property(&self, definition: &str, field: &str) -> Option<&Value> {
        self.definitions
            .get(definition)?
            .get("properties")?
            .get(field)
    }
}

impl PatchSchema for OpenApiSchema {
    fn field(&self, definition: &str, field: &str) -> FieldInfo {
        let tag = self.tags.get(&(definition.to_owned(), field.to_owned()));
        let mut info = FieldInfo {
            strategy: tag.map(|tag| tag.strategy),
            merge_key: tag.and_then(|tag| tag.merge_key),
            ..FieldInfo::default()
        };
        let Some(property) = self.property(definition, field) else {
            return info;
        };
        if let Some(child) = ref_name(property) {
            info.child = Some(child);
        } else if let Some(items) = property.get("items") {
            info.child = ref_name(items);
        } else if let Some(values) = property.get("additionalProperties") {
            info.is_map = true;
            info.child = ref_name(values);
        }
        info
    }
}
