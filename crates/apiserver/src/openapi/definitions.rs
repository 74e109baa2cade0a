//! The schema definitions behind the OpenAPI documents: every k8s-openapi schema the served
//! kinds reach, under upstream's canonical names (`io.k8s.api.apps.v1.DeploymentStrategy`),
//! decorated with the vendor extensions clients read (`x-kubernetes-group-version-kind`,
//! `x-kubernetes-patch-strategy`, `x-kubernetes-patch-merge-key`), plus the `<Kind>List`
//! schemas k8s-openapi does not generate. Also answers the strategic-merge-patch engine's
//! question "how does field F of definition D merge, and what type is inside it?".
//!
//! Knows nothing about paths or HTTP; `paths.rs` and the document assembly in `openapi.rs`
//! only ask it for definition names and the transitive closure of a set of roots.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::{autoscaling::v1::Scale, core::v1::Binding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    APIResourceList, DeleteOptions, ListMeta, Patch, Status, WatchEvent,
};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};
use strategicpatch::{FieldInfo, PatchSchema, PatchTag};

use crate::registry::{self, RESOURCES};

/// Prefix of every `$ref` in an OpenAPI v3 document.
pub(crate) const V3_REF_PREFIX: &str = "#/components/schemas/";
/// Prefix of every `$ref` in the Swagger 2.0 document.
pub(crate) const V2_REF_PREFIX: &str = "#/definitions/";

pub(crate) const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
pub(crate) const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
pub(crate) const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
pub(crate) const API_RESOURCE_LIST: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList";
const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";

/// Definitions upstream puts into every group-version document, whatever its kinds reference.
pub(crate) const META_DEFINITIONS: &[&str] = &[
    STATUS,
    DELETE_OPTIONS,
    PATCH,
    API_RESOURCE_LIST,
    WATCH_EVENT,
];

type SchemaFn = fn(&mut schemars::SchemaGenerator) -> schemars::Schema;

fn schema_of<T: schemars::JsonSchema>(
    generator: &mut schemars::SchemaGenerator,
) -> schemars::Schema {
    generator.subschema_for::<T>()
}

/// Kinds that appear only as the body of a subresource (`deployments/scale` speaks
/// `autoscaling/v1 Scale`, `pods/binding` speaks `v1 Binding`), keyed by group, version, kind.
const SUBRESOURCE_KINDS: &[(&str, &str, &str, SchemaFn)] = &[
    ("autoscaling", "v1", "Scale", schema_of::<Scale>),
    ("", "v1", "Binding", schema_of::<Binding>),
];

/// Meta types the documents reference from operations rather than from kinds.
const META_SCHEMAS: &[SchemaFn] = &[
    schema_of::<Status>,
    schema_of::<DeleteOptions>,
    schema_of::<Patch>,
    schema_of::<APIResourceList>,
    schema_of::<WatchEvent<RawExtension>>,
    schema_of::<ListMeta>,
];

/// All definitions of all served group versions, keyed by canonical name, in name order.
#[derive(Debug)]
pub struct Schemas {
    definitions: BTreeMap<String, Value>,
    /// Group/version/kind → definition name, for kinds and subresource kinds.
    kinds: HashMap<(String, String, String), String>,
    /// definition → field → tag; nested so that lookups borrow plain `&str` keys.
    tags: HashMap<&'static str, HashMap<&'static str, &'static PatchTag>>,
    /// Tags naming a definition we serve but a field it does not have (a stale tag table).
    unmatched_tags: Vec<&'static PatchTag>,
}

impl Schemas {
    /// Generates the definitions of every registry kind, subresource kind and meta type,
    /// annotated with `tags`.
    pub(crate) fn generate(tags: &'static [PatchTag]) -> Schemas {
        let mut generator = SchemaSettings::openapi3()
            .with(|s| s.meta_schema = None)
            .into_generator();
        let mut kinds = HashMap::new();
        for resource in RESOURCES {
            (resource.schema)(&mut generator);
            kinds.insert(
                gvk_key(resource.group, resource.version, resource.kind),
                resource.definition.to_string(),
            );
        }
        for (group, version, kind, schema) in SUBRESOURCE_KINDS {
            if let Some(name) = ref_name(schema(&mut generator).as_value(), V3_REF_PREFIX) {
                kinds.insert(gvk_key(group, version, kind), name.to_string());
            }
        }
        for schema in META_SCHEMAS {
            schema(&mut generator);
        }
        // The transforms of the OpenAPI 3 settings turn `{"$ref", "description"}` (a `$ref`
        // with siblings, which OpenAPI 3.0 ignores) into upstream's
        // `{"allOf": [{"$ref"}], "description"}`, so field documentation survives.
        let mut definitions: BTreeMap<String, Value> =
            generator.take_definitions(true).into_iter().collect();

        for ((group, version, kind), name) in &kinds {
            if let Some(Value::Object(schema)) = definitions.get_mut(name) {
                mark_kind(schema, &[gvk(group, version, kind)]);
            }
        }
        for resource in RESOURCES {
            if let Some(list) = list_schema(&definitions, resource) {
                definitions.insert(format!("{}List", resource.definition), list);
            }
        }
        mark_meta_kinds(&mut definitions);
        let unmatched_tags = annotate_patch_tags(&mut definitions, tags);

        let mut tag_index: HashMap<&'static str, HashMap<&'static str, &'static PatchTag>> =
            HashMap::new();
        for tag in tags {
            tag_index
                .entry(tag.definition)
                .or_default()
                .insert(tag.field, tag);
        }
        Schemas {
            definitions,
            kinds,
            tags: tag_index,
            unmatched_tags,
        }
    }

    /// The definition named `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.definitions.get(name)
    }

    /// All definitions, in name order.
    pub(crate) fn all(&self) -> &BTreeMap<String, Value> {
        &self.definitions
    }

    /// Definition name of a kind (`apps`, `v1`, `Deployment`) or subresource kind
    /// (`autoscaling`, `v1`, `Scale`).
    pub fn definition_for_kind(&self, group: &str, version: &str, kind: &str) -> Option<&str> {
        self.kinds
            .get(&gvk_key(group, version, kind))
            .map(String::as_str)
    }

    /// Patch tags that name a served definition but a field it lacks.
    pub fn unmatched_tags(&self) -> &[&'static PatchTag] {
        &self.unmatched_tags
    }

    /// `roots` and every definition they reference, transitively, in name order. Names
    /// that are not definitions are left out (the document checker in the tests would
    /// report the dangling `$ref`).
    pub(crate) fn closure(
        &self,
        roots: impl IntoIterator<Item = String>,
    ) -> BTreeMap<&str, &Value> {
        let mut out = BTreeMap::new();
        let mut pending: Vec<String> = roots.into_iter().collect();
        let mut seen = BTreeSet::new();
        while let Some(name) = pending.pop() {
            if !seen.insert(name.clone()) {
                continue;
            }
            let Some((key, schema)) = self.definitions.get_key_value(&name) else {
                continue;
            };
            out.insert(key.as_str(), schema);
            let mut refs = Vec::new();
            collect_refs(schema, &mut refs);
            pending.extend(
                refs.into_iter()
                    .filter_map(|r| r.strip_prefix(V3_REF_PREFIX))
                    .filter(|r| !seen.contains(*r))
                    .map(str::to_string),
            );
        }
        out
    }
}

impl PatchSchema for Schemas {
    fn field(&self, definition: &str, field: &str) -> FieldInfo {
        let tag = self
            .tags
            .get(definition)
            .and_then(|fields| fields.get(field));
        let property = self
            .definitions
            .get(definition)
            .and_then(|d| d.get("properties"))
            .and_then(|p| p.get(field));
        let (child, is_map) = property.map(value_definition).unwrap_or_default();
        FieldInfo {
            strategy: tag.map(|t| t.strategy),
            merge_key: tag.and_then(|t| t.merge_key),
            child,
            is_map,
        }
    }
}

/// The definition a property holds — directly (`$ref`, `allOf: [{$ref}]`), as array items,
/// or as map values — and whether the property is a map.
fn value_definition(property: &Value) -> (Option<String>, bool) {
    if let Some(name) = direct_ref(property) {
        return (Some(name.to_string()), false);
    }
    if let Some(items) = property.get("items") {
        return (direct_ref(items).map(str::to_string), false);
    }
    match property.get("additionalProperties") {
        Some(values @ Value::Object(_)) => (direct_ref(values).map(str::to_string), true),
        _ => (None, false),
    }
}

/// `{"$ref": R}` or `{"allOf": [{"$ref": R}], ...}` → the name in R.
fn direct_ref(schema: &Value) -> Option<&str> {
    ref_name(schema, V3_REF_PREFIX).or_else(|| {
        schema
            .get("allOf")?
            .as_array()?
            .first()
            .and_then(|first| ref_name(first, V3_REF_PREFIX))
    })
}

fn ref_name<'a>(schema: &'a Value, prefix: &str) -> Option<&'a str> {
    schema.get("$ref")?.as_str()?.strip_prefix(prefix)
}

/// Every `$ref` string anywhere inside `value`.
pub(crate) fn collect_refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                match (key.as_str(), child) {
                    ("$ref", Value::String(target)) => out.push(target),
                    _ => collect_refs(child, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, out)),
        _ => {}
    }
}

/// A copy of `value` with every `$ref` moved from the v3 prefix to the v2 one.
pub(crate) fn to_v2_refs(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, child)| match (key.as_str(), child) {
                    ("$ref", Value::String(target)) => {
                        let name = target.strip_prefix(V3_REF_PREFIX).unwrap_or(target);
                        (key.clone(), Value::String(format!("{V2_REF_PREFIX}{name}")))
                    }
                    _ => (key.clone(), to_v2_refs(child)),
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(to_v2_refs).collect()),
        other => other.clone(),
    }
}

fn gvk_key(group: &str, version: &str, kind: &str) -> (String, String, String) {
    (group.to_string(), version.to_string(), kind.to_string())
}

/// The `{"group", "kind", "version"}` object upstream uses in both extensions.
pub(crate) fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "kind": kind, "version": version})
}

/// Marks a schema as the schema of top-level kinds. k8s-openapi lists `metadata` as
/// required because its Rust field is not optional; upstream does not, and `kubectl explain`
/// would print `-required-` next to it.
fn mark_kind(schema: &mut Map<String, Value>, kinds: &[Value]) {
    schema.insert(
        "x-kubernetes-group-version-kind".into(),
        Value::Array(kinds.to_vec()),
    );
    if let Some(Value::Array(required)) = schema.get_mut("required") {
        required.retain(|field| field != "metadata");
        if required.is_empty() {
            schema.remove("required");
        }
    }
}

/// Status is a core kind; DeleteOptions and WatchEvent are registered in every group
/// version, as upstream's extensions say.
fn mark_meta_kinds(definitions: &mut BTreeMap<String, Value>) {
    if let Some(Value::Object(schema)) = definitions.get_mut(STATUS) {
        mark_kind(schema, &[gvk("", "v1", "Status")]);
    }
    for name in [DELETE_OPTIONS, WATCH_EVENT] {
        let kind = name.rsplit('.').next().unwrap_or(name);
        let kinds: Vec<Value> = registry::group_versions()
            .iter()
            .map(|(group, version)| gvk(group, version, kind))
            .collect();
        if let Some(Value::Object(schema)) = definitions.get_mut(name) {
            mark_kind(schema, &kinds);
        }
    }
}

/// `<Kind>List`, shaped like upstream's: apiVersion and kind (documented as in the kind
/// itself), ListMeta, and the items.
fn list_schema(
    definitions: &BTreeMap<String, Value>,
    resource: &registry::ResourceInfo,
) -> Option<Value> {
    let kind_properties = definitions.get(resource.definition)?.get("properties")?;
    let list_kind = resource.list_kind();
    // "Endpoints" is already plural.
    let plural_kind = if resource.kind.ends_with('s') {
        resource.kind.to_string()
    } else {
        format!("{}s", resource.kind)
    };
    let mut properties = Map::new();
    properties.insert(
        "apiVersion".into(),
        kind_properties.get("apiVersion")?.clone(),
    );
    properties.insert(
        "items".into(),
        json!({
            "description": format!("Items is the list of {plural_kind}."),
            "type": "array",
            "items": {"$ref": format!("{V3_REF_PREFIX}{}", resource.definition)},
        }),
    );
    properties.insert("kind".into(), kind_properties.get("kind")?.clone());
    properties.insert(
        "metadata".into(),
        json!({
            "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
            "allOf": [{"$ref": format!("{V3_REF_PREFIX}{LIST_META}")}],
        }),
    );
    Some(json!({
        "description": format!("{list_kind} is a list of {plural_kind}."),
        "type": "object",
        "properties": properties,
        "required": ["items"],
        "x-kubernetes-group-version-kind": [gvk(resource.group, resource.version, &list_kind)],
    }))
}

/// Puts each tag's strategy and merge key on the property it names, where
/// `PatchMetaFromOpenAPIV3` (kubectl apply) reads them. Returns the tags whose definition
/// exists but whose field does not.
fn annotate_patch_tags(
    definitions: &mut BTreeMap<String, Value>,
    tags: &'static [PatchTag],
) -> Vec<&'static PatchTag> {
    let mut unmatched = Vec::new();
    for tag in tags {
        let Some(definition) = definitions.get_mut(tag.definition) else {
            continue;
        };
        let property = definition
            .get_mut("properties")
            .and_then(|properties| properties.get_mut(tag.field))
            .and_then(Value::as_object_mut);
        let Some(property) = property else {
            unmatched.push(tag);
            continue;
        };
        property.insert("x-kubernetes-patch-strategy".into(), tag.strategy.into());
        if let Some(key) = tag.merge_key {
            property.insert("x-kubernetes-patch-merge-key".into(), key.into());
        }
    }
    unmatched
}

#[cfg(test)]
mod tests {
    use super::*;

    static TEST_TAGS: &[PatchTag] = &[
        PatchTag {
            definition: "io.k8s.api.core.v1.PodSpec",
            field: "containers",
            strategy: "merge",
            merge_key: Some("name"),
        },
        PatchTag {
            definition: "io.k8s.api.apps.v1.DeploymentSpec",
            field: "strategy",
            strategy: "retainKeys",
            merge_key: None,
        },
        PatchTag {
            definition: "io.k8s.api.core.v1.PodSpec",
            field: "noSuchField",
            strategy: "merge",
            merge_key: None,
        },
        PatchTag {
            definition: "io.k8s.api.example.v1.Unserved",
            field: "items",
            strategy: "merge",
            merge_key: None,
        },
    ];

    fn schemas() -> Schemas {
        Schemas::generate(TEST_TAGS)
    }

    #[test]
    fn registry_definition_names_match_the_generated_schemas() {
        let schemas = schemas();
        for resource in RESOURCES {
            let schema = schemas
                .get(resource.definition)
                .unwrap_or_else(|| panic!("{} missing", resource.definition));
            assert_eq!(
                schema["x-kubernetes-group-version-kind"],
                json!([gvk(resource.group, resource.version, resource.kind)]),
                "{}",
                resource.definition
            );
            let list = schemas
                .get(&format!("{}List", resource.definition))
                .expect("list kind");
            assert_eq!(
                list["x-kubernetes-group-version-kind"][0]["kind"],
                json!(resource.list_kind())
            );
        }
        assert_eq!(
            schemas.definition_for_kind("autoscaling", "v1", "Scale"),
            Some("io.k8s.api.autoscaling.v1.Scale")
        );
        assert_eq!(
            schemas.definition_for_kind("", "v1", "Binding"),
            Some("io.k8s.api.core.v1.Binding")
        );
    }

    #[test]
    fn kinds_do_not_require_metadata_but_keep_other_required_fields() {
        let schemas = schemas();
        assert!(
            schemas
                .get("io.k8s.api.apps.v1.Deployment")
                .unwrap()
                .get("required")
                .is_none()
        );
        let event_required = &schemas.get("io.k8s.api.core.v1.Event").unwrap()["required"];
        assert_eq!(event_required, &json!(["involvedObject"]));
    }

    #[test]
    fn references_with_documentation_use_all_of_like_upstream() {
        let schemas = schemas();
        let strategy =
            &schemas.get("io.k8s.api.apps.v1.DeploymentSpec").unwrap()["properties"]["strategy"];
        assert_eq!(
            strategy["allOf"],
            json!([{"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentStrategy"}])
        );
        assert!(
            strategy["description"]
                .as_str()
                .unwrap()
                .contains("deployment strategy")
        );
    }

    #[test]
    fn patch_tags_land_on_their_properties_and_stale_ones_are_reported() {
        let schemas = schemas();
        let containers =
            &schemas.get("io.k8s.api.core.v1.PodSpec").unwrap()["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        let strategy =
            &schemas.get("io.k8s.api.apps.v1.DeploymentSpec").unwrap()["properties"]["strategy"];
        assert_eq!(strategy["x-kubernetes-patch-strategy"], "retainKeys");
        assert!(strategy.get("x-kubernetes-patch-merge-key").is_none());
        let unmatched: Vec<_> = schemas.unmatched_tags().iter().map(|t| t.field).collect();
        assert_eq!(unmatched, ["noSuchField"]);
    }

    #[test]
    fn patch_schema_walks_deployment_down_to_containers() {
        let schemas = schemas();
        let spec = schemas.field("io.k8s.api.apps.v1.Deployment", "spec");
        assert_eq!(
            spec.child.as_deref(),
            Some("io.k8s.api.apps.v1.DeploymentSpec")
        );
        let template = schemas.field(spec.child.as_deref().unwrap(), "template");
        assert_eq!(
            template.child.as_deref(),
            Some("io.k8s.api.core.v1.PodTemplateSpec")
        );
        let pod_spec = schemas.field(template.child.as_deref().unwrap(), "spec");
        assert_eq!(
            pod_spec.child.as_deref(),
            Some("io.k8s.api.core.v1.PodSpec")
        );
        let containers = schemas.field(pod_spec.child.as_deref().unwrap(), "containers");
        assert_eq!(
            containers,
            FieldInfo {
                strategy: Some("merge"),
                merge_key: Some("name"),
                child: Some("io.k8s.api.core.v1.Container".into()),
                is_map: false
            }
        );
    }

    #[test]
    fn patch_schema_knows_maps_and_unknowns() {
        let schemas = schemas();
        let labels = schemas.field("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "labels");
        assert_eq!(
            labels,
            FieldInfo {
                is_map: true,
                ..FieldInfo::default()
            }
        );
        let limits = schemas.field("io.k8s.api.core.v1.ResourceRequirements", "limits");
        assert_eq!(
            limits.child.as_deref(),
            Some("io.k8s.apimachinery.pkg.api.resource.Quantity")
        );
        assert!(limits.is_map);
        assert_eq!(
            schemas.field("io.k8s.api.core.v1.PodSpec", "bogus"),
            FieldInfo::default()
        );
        assert_eq!(
            schemas.field("no.such.Definition", "spec"),
            FieldInfo::default()
        );
    }

    #[test]
    fn closure_follows_references_transitively() {
        let schemas = schemas();
        let closure = schemas.closure(["io.k8s.api.apps.v1.Deployment".to_string()]);
        for name in [
            "io.k8s.api.apps.v1.DeploymentStrategy",
            "io.k8s.api.apps.v1.RollingUpdateDeployment",
            "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
            "io.k8s.api.core.v1.Container",
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        ] {
            assert!(closure.contains_key(name), "{name} not reached");
        }
        assert!(!closure.contains_key("io.k8s.api.core.v1.Service"));
    }

    #[test]
    fn v2_conversion_rewrites_every_reference() {
        let v3 = json!({"a": {"$ref": "#/components/schemas/X"}, "b": [{"allOf": [{"$ref": "#/components/schemas/Y"}]}]});
        let v2 = to_v2_refs(&v3);
        let mut refs = Vec::new();
        collect_refs(&v2, &mut refs);
        assert_eq!(refs, ["#/definitions/X", "#/definitions/Y"]);
    }
}
