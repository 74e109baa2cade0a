//! OpenAPI documents for the served resources, built once from the registry and the
//! k8s-openapi schemas, and the schema lookup the strategic-merge-patch engine walks.
//!
//! The real kubectl depends on OpenAPI v3 for three everyday commands, so the documents are
//! shaped after what it reads rather than after the full upstream output:
//! - `create`/`apply` with the default `--validate=strict` fetch `/openapi/v3`, follow the
//!   group version's `serverRelativeURL`, and need a PATCH operation with the object's
//!   `x-kubernetes-group-version-kind` and an inline `fieldValidation` parameter;
//! - `apply` computes its strategic merge patch from the kind's schema (found through the
//!   schema-level `x-kubernetes-group-version-kind` list) and the
//!   `x-kubernetes-patch-strategy`/`x-kubernetes-patch-merge-key` on its properties;
//! - `explain` finds the kind from the collection path's operations and renders the
//!   descriptions of the schemas, following `allOf: [{$ref}]`.
//!
//! Swagger 2.0 (`/openapi/v2`) is served as JSON only; kubectl asks for protobuf there and
//! copes without it as long as v3 answers.
//!
//! This module builds bytes and answers lookups; it knows nothing about HTTP (content
//! negotiation, `hash` redirects and caching headers belong to the HTTP layer).

mod definitions;
mod paths;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use bytes::Bytes;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha512};
use strategicpatch::{FieldInfo, PatchSchema, PatchTag};

pub use definitions::Schemas;

use crate::registry::{self, RESOURCES, ResourceInfo};

/// All OpenAPI documents of this server, prebuilt. Immutable; share it behind an `Arc`.
#[derive(Debug)]
pub struct OpenApi {
    schemas: Schemas,
    /// Group-version documents keyed by their index path, `api/v1` or `apis/apps/v1`.
    documents: BTreeMap<String, Document>,
    v2: Bytes,
}

#[derive(Debug)]
struct Document {
    json: Bytes,
    /// Upper-case hex SHA-512 of `json`, as upstream computes it: changes exactly when the
    /// content does, so clients may cache `?hash=` URLs forever.
    hash: String,
}

impl OpenApi {
    /// Builds every document for a server reporting `kubernetes_version` (e.g. `v1.33.0`).
    pub fn build(kubernetes_version: &str) -> OpenApi {
        Self::build_with_tags(kubernetes_version, strategicpatch::patch_tags())
    }

    fn build_with_tags(kubernetes_version: &str, tags: &'static [PatchTag]) -> OpenApi {
        let schemas = Schemas::generate(tags);
        let info = json!({"title": "Kubernetes", "version": kubernetes_version});
        let mut documents = BTreeMap::new();
        let mut v2_paths: BTreeMap<String, Value> = BTreeMap::new();
        for (group, version) in registry::group_versions() {
            let resources: Vec<&ResourceInfo> = RESOURCES
                .iter()
                .filter(|r| r.group == group && r.version == version)
                .collect();
            let items = paths::group_version_paths(group, version, &resources, &schemas);
            let tag = paths::group_version_tag(group, version);

            let mut roots: Vec<String> = definitions::META_DEFINITIONS
                .iter()
                .map(|name| name.to_string())
                .collect();
            for resource in &resources {
                roots.push(resource.definition.to_string());
                roots.push(format!("{}List", resource.definition));
            }
            roots.extend(paths::referenced_definitions(&items));
            let components: Map<String, Value> = schemas
                .closure(roots)
                .into_iter()
                .map(|(name, schema)| (name.to_string(), schema.clone()))
                .collect();

            let document = json!({
                "components": {"schemas": components},
                "info": info,
                "openapi": "3.0.0",
                "paths": paths::render_v3(&items, &tag),
            });
            documents.insert(
                index_path(group, version),
                Document::new(document.to_string()),
            );
            v2_paths.extend(paths::render_v2(&items, &tag));
        }

        let v2_definitions: Map<String, Value> = schemas
            .all()
            .iter()
            .map(|(name, schema)| (name.clone(), definitions::to_v2_refs(schema)))
            .collect();
        let v2 = json!({
            "definitions": v2_definitions,
            "info": info,
            "paths": v2_paths.into_iter().collect::<Map<String, Value>>(),
            "swagger": "2.0",
        });
        OpenApi {
            schemas,
            documents,
            v2: Bytes::from(v2.to_string()),
        }
    }

    /// The `/openapi/v3` index: every group version's document URL, with its content hash.
    pub fn v3_index(&self) -> Value {
        let paths: Map<String, Value> = self
            .documents
            .iter()
            .map(|(path, document)| {
                (path.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={}", document.hash)}))
            })
            .collect();
        json!({ "paths": paths })
    }

    /// The JSON document of one group version (`api/v1`, `apis/apps/v1`; surrounding
    /// slashes are ignored) and its hash, or `None` if that group version is not served.
    pub fn v3_document(&self, path: &str) -> Option<(Bytes, String)> {
        self.documents
            .get(path.trim_matches('/'))
            .map(|document| (document.json.clone(), document.hash.clone()))
    }

    /// The Swagger 2.0 document of all group versions, as JSON.
    pub fn v2_document(&self) -> Bytes {
        self.v2.clone()
    }

    /// The schema definitions, for the strategic-merge-patch engine.
    pub fn schemas(&self) -> &Schemas {
        &self.schemas
    }
}

impl PatchSchema for OpenApi {
    fn field(&self, definition: &str, field: &str) -> FieldInfo {
        self.schemas.field(definition, field)
    }
}

impl Document {
    fn new(json: String) -> Document {
        let digest = Sha512::digest(json.as_bytes());
        let mut hash = String::with_capacity(digest.len() * 2);
        for byte in digest {
            // Writing to a String cannot fail.
            let _ = write!(hash, "{byte:02X}");
        }
        Document {
            json: Bytes::from(json),
            hash,
        }
    }
}

/// `api/v1` for the core group, `apis/<group>/<version>` otherwise: the keys kubectl
/// derives from a group version to look documents up in the index.
fn index_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;

    use super::*;

    static OPENAPI: LazyLock<OpenApi> = LazyLock::new(|| OpenApi::build("v1.33.0"));

    static TEST_TAGS: &[PatchTag] = &[PatchTag {
        definition: "io.k8s.api.core.v1.PodSpec",
        field: "containers",
        strategy: "merge",
        merge_key: Some("name"),
    }];

    fn document(openapi: &OpenApi, path: &str) -> Value {
        let (bytes, _) = openapi
            .v3_document(path)
            .unwrap_or_else(|| panic!("no document {path}"));
        serde_json::from_slice(&bytes).expect("document is JSON")
    }

    /// Resolves `$ref` and kubectl's `allOf: [{$ref}]` wrapper within a document.
    fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
        let reference = schema
            .get("$ref")
            .or_else(|| schema.get("allOf").and_then(|all| all.get(0)?.get("$ref")));
        match reference
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("#/components/schemas/"))
        {
            Some(name) => &doc["components"]["schemas"][name],
            None => schema,
        }
    }

    /// kubectl's `supportsQueryParamV3` plus apply's `gvkSupportsPatchOpenAPIV3`: the PATCH
    /// operations of a kind, each of which must have `fieldValidation` and take strategic
    /// merge patches (kubectl stops at whichever it meets first).
    fn patch_operations_of<'a>(doc: &'a Value, gvk: &Value) -> Vec<&'a Value> {
        let paths = doc["paths"].as_object().expect("paths");
        paths
            .values()
            .filter_map(|item| item.get("patch"))
            .filter(|op| &op["x-kubernetes-group-version-kind"] == gvk)
            .collect()
    }

    #[test]
    fn index_lists_every_served_group_version_with_its_hash() {
        let index = OPENAPI.v3_index();
        let paths = index["paths"].as_object().unwrap();
        let expected: Vec<String> = registry::group_versions()
            .iter()
            .map(|(g, v)| index_path(g, v))
            .collect();
        let mut listed: Vec<&String> = paths.keys().collect();
        listed.sort();
        let mut expected_sorted: Vec<&String> = expected.iter().collect();
        expected_sorted.sort();
        assert_eq!(listed, expected_sorted);
        assert!(paths.contains_key("api/v1") && paths.contains_key("apis/apps/v1"));
        for (path, entry) in paths {
            let (_, hash) = OPENAPI.v3_document(path).unwrap();
            assert_eq!(
                entry["serverRelativeURL"],
                format!("/openapi/v3/{path}?hash={hash}")
            );
            assert_eq!(hash.len(), 128);
        }
        assert!(OPENAPI.v3_document("apis/autoscaling/v1").is_none());
        assert!(OPENAPI.v3_document("/apis/apps/v1/").is_some());
    }

    #[test]
    fn documents_and_hashes_are_stable_across_builds() {
        let again = OpenApi::build("v1.33.0");
        for (path, document) in &OPENAPI.documents {
            assert_eq!(
                again.v3_document(path).map(|(_, hash)| hash),
                Some(document.hash.clone()),
                "{path}"
            );
        }
        assert_eq!(again.v2_document(), OPENAPI.v2_document());
    }

    #[test]
    fn apps_document_describes_deployments_like_upstream() {
        let doc = document(&OPENAPI, "apis/apps/v1");
        assert_eq!(doc["openapi"], "3.0.0");
        assert_eq!(
            doc["info"],
            json!({"title": "Kubernetes", "version": "v1.33.0"})
        );
        let deployment = &doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
        let gvk = json!({"group": "apps", "kind": "Deployment", "version": "v1"});
        assert_eq!(deployment["x-kubernetes-group-version-kind"], json!([gvk]));
        let list = &doc["components"]["schemas"]["io.k8s.api.apps.v1.DeploymentList"];
        assert_eq!(
            list["x-kubernetes-group-version-kind"][0]["kind"],
            "DeploymentList"
        );
        assert!(doc["components"]["schemas"]["io.k8s.api.autoscaling.v1.Scale"].is_object());

        // kubectl explain deployment.spec.strategy
        let spec = resolve(&doc, &deployment["properties"]["spec"]);
        let strategy = &spec["properties"]["strategy"];
        assert_eq!(
            strategy["description"],
            "The deployment strategy to use to replace existing pods with new ones."
        );
        let strategy_schema = resolve(&doc, strategy);
        assert!(strategy_schema["properties"]["rollingUpdate"].is_object());

        let create = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]["post"];
        assert_eq!(create["operationId"], "createAppsV1NamespacedDeployment");
        assert_eq!(create["x-kubernetes-action"], "post");
        assert_eq!(create["x-kubernetes-group-version-kind"], gvk);
        let params: Vec<&str> = create["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert!(params.contains(&"fieldValidation"), "{params:?}");
        assert_eq!(
            create["requestBody"]["content"]["*/*"]["schema"]["$ref"],
            "#/components/schemas/io.k8s.api.apps.v1.Deployment"
        );

        let scale =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"];
        assert_eq!(
            scale["x-kubernetes-group-version-kind"],
            json!({"group": "autoscaling", "kind": "Scale", "version": "v1"})
        );
        assert_eq!(scale["operationId"], "patchAppsV1NamespacedDeploymentScale");
    }

    #[test]
    fn every_kind_passes_kubectls_field_validation_and_apply_checks() {
        for resource in RESOURCES {
            let doc = document(&OPENAPI, &index_path(resource.group, resource.version));
            let gvk = json!({"group": resource.group, "kind": resource.kind, "version": resource.version});
            let patches = patch_operations_of(&doc, &gvk);
            assert!(!patches.is_empty(), "{} has no PATCH", resource.kind);
            for op in patches {
                let names: Vec<&str> = op["parameters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|p| p["name"].as_str())
                    .collect();
                assert!(
                    names.contains(&"fieldValidation"),
                    "{}: {}",
                    resource.kind,
                    op["operationId"]
                );
                assert!(
                    op["requestBody"]["content"]["application/strategic-merge-patch+json"]
                        .is_object()
                );
            }
            // kubectl explain: the collection's GET names the kind, and exactly one schema claims it.
            let collection = if resource.namespaced {
                format!(
                    "{}/namespaces/{{namespace}}/{}",
                    resource.gv_path(),
                    resource.plural
                )
            } else {
                format!("{}/{}", resource.gv_path(), resource.plural)
            };
            assert_eq!(
                doc["paths"][&collection]["get"]["x-kubernetes-group-version-kind"], gvk,
                "{collection}"
            );
            let claiming: Vec<&String> = doc["components"]["schemas"]
                .as_object()
                .unwrap()
                .iter()
                .filter(|(_, schema)| {
                    schema["x-kubernetes-group-version-kind"]
                        .as_array()
                        .is_some_and(|kinds| kinds.contains(&gvk))
                })
                .map(|(name, _)| name)
                .collect();
            assert_eq!(claiming, [resource.definition], "{}", resource.kind);
        }
    }

    #[test]
    fn core_document_has_subresources_and_namespaced_and_cluster_paths() {
        let doc = document(&OPENAPI, "api/v1");
        let paths = doc["paths"].as_object().unwrap();
        let binding = &paths["/api/v1/namespaces/{namespace}/pods/{name}/binding"]["post"];
        assert_eq!(binding["operationId"], "createCoreV1NamespacedPodBinding");
        assert_eq!(
            binding["x-kubernetes-group-version-kind"]["kind"],
            "Binding"
        );
        let log = &paths["/api/v1/namespaces/{namespace}/pods/{name}/log"]["get"];
        assert_eq!(log["operationId"], "readCoreV1NamespacedPodLog");
        assert_eq!(
            log["responses"]["200"]["content"]["text/plain"]["schema"]["type"],
            "string"
        );
        assert_eq!(
            paths["/api/v1/pods"]["get"]["operationId"],
            "listCoreV1PodForAllNamespaces"
        );
        assert_eq!(
            paths["/api/v1/nodes/{name}"]["patch"]["operationId"],
            "patchCoreV1Node"
        );
        assert_eq!(
            paths["/api/v1/nodes/{name}/status"]["put"]["operationId"],
            "replaceCoreV1NodeStatus"
        );
        // Namespaces cannot be deleted as a collection.
        assert!(paths["/api/v1/namespaces"].get("delete").is_none());
        assert_eq!(
            paths["/api/v1/namespaces/{namespace}/services"]["delete"]["x-kubernetes-action"],
            "deletecollection"
        );
        let list = &paths["/api/v1/namespaces/{namespace}/pods"]["get"];
        let list_params: Vec<&str> = list["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        for name in [
            "labelSelector",
            "fieldSelector",
            "limit",
            "continue",
            "resourceVersion",
            "watch",
            "timeoutSeconds",
            "allowWatchBookmarks",
        ] {
            assert!(list_params.contains(&name), "{name}");
        }
        assert!(
            doc["components"]["schemas"]["io.k8s.apimachinery.pkg.apis.meta.v1.Status"].is_object()
        );
        assert!(
            doc["components"]["schemas"]["io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent"]
                .is_object()
        );
    }

    #[test]
    fn every_reference_resolves_within_its_document() {
        fn dangling(doc: &Value, prefix: &str, definitions: &Value) -> Vec<String> {
            let mut refs = Vec::new();
            definitions::collect_refs(doc, &mut refs);
            assert!(!refs.is_empty());
            refs.into_iter()
                .filter(|r| {
                    r.strip_prefix(prefix)
                        .is_none_or(|name| definitions.get(name).is_none())
                })
                .map(str::to_string)
                .collect()
        }
        for path in OPENAPI.documents.keys() {
            let doc = document(&OPENAPI, path);
            assert_eq!(
                dangling(&doc, "#/components/schemas/", &doc["components"]["schemas"]),
                Vec::<String>::new(),
                "{path}"
            );
        }
        let v2: Value = serde_json::from_slice(&OPENAPI.v2_document()).unwrap();
        assert_eq!(v2["swagger"], "2.0");
        assert_eq!(
            dangling(&v2, "#/definitions/", &v2["definitions"]),
            Vec::<String>::new()
        );
        let create = &v2["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]["post"];
        assert_eq!(
            create["parameters"][0]["schema"]["$ref"],
            "#/definitions/io.k8s.api.apps.v1.Deployment"
        );
    }

    #[test]
    fn patch_tags_appear_in_the_documents_and_the_adapter() {
        let openapi = OpenApi::build_with_tags("v1.33.0", TEST_TAGS);
        let doc = document(&openapi, "apis/apps/v1");
        let containers =
            &doc["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");

        let mut definition = "io.k8s.api.apps.v1.Deployment".to_string();
        for field in ["spec", "template", "spec"] {
            definition = openapi
                .field(&definition, field)
                .child
                .unwrap_or_else(|| panic!("{definition}.{field}"));
        }
        let containers = openapi.field(&definition, "containers");
        assert_eq!(containers.merge_key, Some("name"));
        assert_eq!(
            containers.child.as_deref(),
            Some("io.k8s.api.core.v1.Container")
        );
    }

    #[test]
    fn the_real_patch_tag_table_matches_the_served_schemas() {
        let unmatched: Vec<String> = OPENAPI
            .schemas()
            .unmatched_tags()
            .iter()
            .map(|t| format!("{}.{}", t.definition, t.field))
            .collect();
        assert_eq!(unmatched, Vec::<String>::new());

        let doc = document(&OPENAPI, "api/v1");
        let containers =
            &doc["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        let mut definition = "io.k8s.api.apps.v1.Deployment".to_string();
        for field in ["spec", "template", "spec"] {
            definition = OPENAPI
                .field(&definition, field)
                .child
                .unwrap_or_else(|| panic!("{definition}.{field}"));
        }
        assert_eq!(
            OPENAPI.field(&definition, "containers").merge_key,
            Some("name")
        );
    }
}
