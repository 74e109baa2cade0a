//! The `paths` of the OpenAPI documents: one path item per collection, item and subresource
//! URL of every served resource, with upstream-style operation ids, `x-kubernetes-action`,
//! `x-kubernetes-group-version-kind` and parameters. Operations are built once as plain data
//! and rendered twice: as OpenAPI 3.0 (per group version) and as Swagger 2.0.
//!
//! kubectl reads these operations, not just the schemas: `--validate=strict` looks for a PATCH
//! operation carrying the object's group-version-kind whose inline parameters include
//! `fieldValidation` (checking only the first such PATCH it meets, so every PATCH of a kind
//! carries it); `kubectl apply` needs `application/strategic-merge-patch+json` in that PATCH's
//! request body; `kubectl explain` finds a resource's kind from the GET/POST of its collection
//! path. Parameters are therefore always inline: a `$ref`'d parameter has no name to match.

use serde_json::{Map, Value, json};

use super::definitions::{
    API_RESOURCE_LIST, DELETE_OPTIONS, PATCH, STATUS, Schemas, V2_REF_PREFIX, V3_REF_PREFIX, gvk,
};
use crate::registry::{ResourceInfo, Subresource};

/// Content types of a PATCH request body, as the server accepts them.
const PATCH_CONTENT_TYPES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];
const JSON: &str = "application/json";
const WATCH_STREAM: &str = "application/json;stream=watch";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Put,
    Post,
    Delete,
    Patch,
}

impl Method {
    fn key(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Put => "put",
            Method::Post => "post",
            Method::Delete => "delete",
            Method::Patch => "patch",
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum ParamType {
    String,
    Boolean,
    Integer,
}

impl ParamType {
    fn name(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Boolean => "boolean",
            ParamType::Integer => "integer",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Location {
    Path,
    Query,
}

#[derive(Clone, Debug)]
pub(crate) struct Param {
    pub(crate) name: &'static str,
    location: Location,
    ty: ParamType,
    description: String,
}

/// Query parameters, described in our own words.
const QUERY_PARAMS: &[(&str, ParamType, &str)] = &[
    (
        "pretty",
        ParamType::String,
        "If 'true', the output is pretty printed.",
    ),
    (
        "dryRun",
        ParamType::String,
        "When present (value `All`), the request is processed fully but nothing is persisted.",
    ),
    (
        "fieldManager",
        ParamType::String,
        "Name of the actor making the change, recorded in managedFields. Required for apply patches.",
    ),
    (
        "fieldValidation",
        ParamType::String,
        "How to treat unknown or duplicate fields in the request body (POST/PUT/PATCH): `Ignore` drops them silently, `Warn` drops them with a warning header (the default), `Strict` rejects the request with a BadRequest listing them.",
    ),
    (
        "force",
        ParamType::Boolean,
        "Re-acquire fields owned by other managers on an apply patch. Must be unset for other patch types.",
    ),
    (
        "labelSelector",
        ParamType::String,
        "Restrict the returned objects to those whose labels match this selector. Defaults to everything.",
    ),
    (
        "fieldSelector",
        ParamType::String,
        "Restrict the returned objects to those whose fields match this selector. Defaults to everything.",
    ),
    (
        "limit",
        ParamType::Integer,
        "Maximum number of objects to return; when more exist, the list metadata carries a `continue` token.",
    ),
    (
        "continue",
        ParamType::String,
        "Token from a previous limited list call, to fetch the next chunk.",
    ),
    (
        "resourceVersion",
        ParamType::String,
        "Constrains which resource version the request may be served from; for watches, where to start.",
    ),
    (
        "resourceVersionMatch",
        ParamType::String,
        "How `resourceVersion` applies to a list call: `Exact` or `NotOlderThan`.",
    ),
    (
        "watch",
        ParamType::Boolean,
        "Stream add, update and delete notifications for the selected objects instead of listing them.",
    ),
    (
        "allowWatchBookmarks",
        ParamType::Boolean,
        "Ask for BOOKMARK watch events, which carry only a resourceVersion.",
    ),
    (
        "sendInitialEvents",
        ParamType::Boolean,
        "Start a watch with synthetic ADDED events for the current state, then a bookmark.",
    ),
    (
        "timeoutSeconds",
        ParamType::Integer,
        "Timeout for the list or watch call, in seconds.",
    ),
    (
        "gracePeriodSeconds",
        ParamType::Integer,
        "Seconds before the object should be deleted; zero deletes immediately.",
    ),
    (
        "orphanDependents",
        ParamType::Boolean,
        "Deprecated: use propagationPolicy. Whether dependents are orphaned.",
    ),
    (
        "propagationPolicy",
        ParamType::String,
        "Garbage collection of dependents: `Orphan`, `Background` or `Foreground`.",
    ),
    (
        "container",
        ParamType::String,
        "The container to stream logs of. Defaults to the only container of the pod.",
    ),
    (
        "follow",
        ParamType::Boolean,
        "Keep streaming the log as it grows.",
    ),
    (
        "limitBytes",
        ParamType::Integer,
        "Stop after this many bytes of log.",
    ),
    (
        "previous",
        ParamType::Boolean,
        "Return the log of the previous, terminated container instance.",
    ),
    (
        "sinceSeconds",
        ParamType::Integer,
        "Only return log lines newer than this many seconds.",
    ),
    (
        "tailLines",
        ParamType::Integer,
        "Only return this many lines from the end of the log.",
    ),
    (
        "timestamps",
        ParamType::Boolean,
        "Prefix every log line with an RFC3339 timestamp.",
    ),
];

fn query_params(names: &[&str]) -> Vec<Param> {
    names
        .iter()
        .filter_map(|name| QUERY_PARAMS.iter().find(|(n, _, _)| n == name))
        .map(|(name, ty, description)| Param {
            name,
            location: Location::Query,
            ty: *ty,
            description: (*description).to_string(),
        })
        .collect()
}

fn path_param(name: &'static str, description: String) -> Param {
    Param {
        name,
        location: Location::Path,
        ty: ParamType::String,
        description,
    }
}

const WRITE_PARAMS: &[&str] = &["dryRun", "fieldManager", "fieldValidation"];
const PATCH_PARAMS: &[&str] = &["dryRun", "fieldManager", "fieldValidation", "force"];
const LIST_PARAMS: &[&str] = &[
    "allowWatchBookmarks",
    "continue",
    "fieldSelector",
    "labelSelector",
    "limit",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
    "watch",
];
/// List parameters without the watch-only ones, for resources that cannot be watched.
const LIST_PARAMS_NO_WATCH: &[&str] = &[
    "continue",
    "fieldSelector",
    "labelSelector",
    "limit",
    "resourceVersion",
    "resourceVersionMatch",
    "timeoutSeconds",
];
const DELETE_PARAMS: &[&str] = &[
    "dryRun",
    "gracePeriodSeconds",
    "orphanDependents",
    "propagationPolicy",
];
const DELETE_COLLECTION_PARAMS: &[&str] = &[
    "continue",
    "dryRun",
    "fieldSelector",
    "gracePeriodSeconds",
    "labelSelector",
    "limit",
    "orphanDependents",
    "propagationPolicy",
    "resourceVersion",
    "resourceVersionMatch",
    "timeoutSeconds",
];
const LOG_PARAMS: &[&str] = &[
    "container",
    "follow",
    "limitBytes",
    "previous",
    "sinceSeconds",
    "tailLines",
    "timestamps",
];

/// What a request or response carries.
#[derive(Clone, Debug)]
pub(crate) enum Payload {
    /// An object of the named definition.
    Definition(String),
    /// Plain text (pod logs).
    Text,
}

#[derive(Clone, Debug)]
pub(crate) enum Body {
    /// A whole object (`*/*`: JSON or YAML).
    Object { definition: String, required: bool },
    /// A patch document in any of the patch content types.
    Patch,
}

#[derive(Clone, Debug)]
pub(crate) struct Response {
    code: u16,
    payload: Payload,
    /// The payload is also offered as a watch event stream.
    watchable: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct Operation {
    pub(crate) method: Method,
    pub(crate) id: String,
    description: String,
    pub(crate) action: &'static str,
    /// `None` for the group version's resource list, which belongs to no kind.
    pub(crate) gvk: Option<(String, String, String)>,
    pub(crate) params: Vec<Param>,
    pub(crate) body: Option<Body>,
    responses: Vec<Response>,
}

#[derive(Clone, Debug)]
pub(crate) struct PathItem {
    pub(crate) path: String,
    params: Vec<Param>,
    pub(crate) operations: Vec<Operation>,
}

/// `AppsV1`, `CoreV1`, `CoordinationV1`: the group-version part of upstream operation ids.
fn operation_prefix(group: &str, version: &str) -> String {
    let group_words = if group.is_empty() {
        "core"
    } else {
        group.strip_suffix(".k8s.io").unwrap_or(group)
    };
    group_words
        .split('.')
        .chain([version])
        .map(capitalize)
        .collect()
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn tag(group: &str, version: &str) -> String {
    let group = if group.is_empty() {
        "core"
    } else {
        group.strip_suffix(".k8s.io").unwrap_or(group)
    };
    format!("{}_{version}", group.replace('.', "_"))
}

fn responses(definition: &str, codes: &[u16]) -> Vec<Response> {
    codes
        .iter()
        .map(|&code| Response {
            code,
            payload: Payload::Definition(definition.to_string()),
            watchable: false,
        })
        .collect()
}

/// Every path item of one group version, sorted by path.
pub(crate) fn group_version_paths(
    group: &str,
    version: &str,
    resources: &[&ResourceInfo],
    schemas: &Schemas,
) -> Vec<PathItem> {
    let prefix = operation_prefix(group, version);
    let base = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    let mut items = vec![PathItem {
        path: format!("{base}/"),
        params: Vec::new(),
        operations: vec![Operation {
            method: Method::Get,
            id: format!("get{prefix}APIResources"),
            description: "get available resources".into(),
            action: "get",
            gvk: None,
            params: Vec::new(),
            body: None,
            responses: responses(API_RESOURCE_LIST, &[200]),
        }],
    }];
    for resource in resources {
        items.extend(resource_paths(resource, &prefix, schemas));
    }
    items.sort_by(|a, b| a.path.cmp(&b.path));
    items
}

fn resource_paths(resource: &ResourceInfo, prefix: &str, schemas: &Schemas) -> Vec<PathItem> {
    let kind = resource.kind;
    let definition = resource.definition;
    let list_definition = format!("{definition}List");
    let scope = if resource.namespaced {
        "Namespaced"
    } else {
        ""
    };
    let has = |verb: &str| resource.verbs.contains(&verb);
    let own_gvk = Some((
        resource.group.to_string(),
        resource.version.to_string(),
        kind.to_string(),
    ));
    let base = resource.gv_path();
    let collection = if resource.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", resource.plural)
    } else {
        format!("{base}/{}", resource.plural)
    };
    let namespace_param = || {
        path_param(
            "namespace",
            "object name and auth scope, such as for teams and projects".into(),
        )
    };
    let mut scope_params: Vec<Param> = Vec::new();
    if resource.namespaced {
        scope_params.push(namespace_param());
    }
    let list_params = if has("watch") {
        LIST_PARAMS
    } else {
        LIST_PARAMS_NO_WATCH
    };
    let list_operation = |id: String| Operation {
        method: Method::Get,
        id,
        description: format!("list or watch objects of kind {kind}"),
        action: "list",
        gvk: own_gvk.clone(),
        params: query_params(list_params),
        body: None,
        responses: vec![Response {
            code: 200,
            payload: Payload::Definition(list_definition.clone()),
            watchable: has("watch"),
        }],
    };

    let mut items = Vec::new();

    let mut collection_ops = Vec::new();
    if has("list") {
        collection_ops.push(list_operation(format!("list{prefix}{scope}{kind}")));
    }
    if has("create") {
        collection_ops.push(Operation {
            method: Method::Post,
            id: format!("create{prefix}{scope}{kind}"),
            description: format!("create a {kind}"),
            action: "post",
            gvk: own_gvk.clone(),
            params: query_params(WRITE_PARAMS),
            body: Some(Body::Object {
                definition: definition.to_string(),
                required: true,
            }),
            responses: responses(definition, &[200, 201, 202]),
        });
    }
    if has("deletecollection") {
        collection_ops.push(Operation {
            method: Method::Delete,
            id: format!("delete{prefix}Collection{scope}{kind}"),
            description: format!("delete collection of {kind}"),
            action: "deletecollection",
            gvk: own_gvk.clone(),
            params: query_params(DELETE_COLLECTION_PARAMS),
            body: Some(Body::Object {
                definition: DELETE_OPTIONS.to_string(),
                required: false,
            }),
            responses: responses(STATUS, &[200]),
        });
    }
    if !collection_ops.is_empty() {
        let mut params = scope_params.clone();
        params.extend(query_params(&["pretty"]));
        items.push(PathItem {
            path: collection.clone(),
            params,
            operations: collection_ops,
        });
    }

    if resource.namespaced && has("list") {
        items.push(PathItem {
            path: format!("{base}/{}", resource.plural),
            params: query_params(&["pretty"]),
            operations: vec![list_operation(format!(
                "list{prefix}{kind}ForAllNamespaces"
            ))],
        });
    }

    let item_path = format!("{collection}/{{name}}");
    let mut item_params = vec![path_param("name", format!("name of the {kind}"))];
    item_params.extend(scope_params.iter().cloned());
    item_params.extend(query_params(&["pretty"]));
    let object_verbs = ObjectVerbs {
        prefix,
        scope,
        kind,
        suffix: "",
        definition,
        gvk: own_gvk.clone(),
        verbs: resource.verbs,
    };
    let mut item_ops = object_verbs.operations();
    if has("delete") {
        item_ops.push(Operation {
            method: Method::Delete,
            id: format!("delete{prefix}{scope}{kind}"),
            description: format!("delete a {kind}"),
            action: "delete",
            gvk: own_gvk.clone(),
            params: query_params(DELETE_PARAMS),
            body: Some(Body::Object {
                definition: DELETE_OPTIONS.to_string(),
                required: false,
            }),
            responses: responses(STATUS, &[200, 202]),
        });
    }
    if !item_ops.is_empty() {
        items.push(PathItem {
            path: item_path.clone(),
            params: item_params.clone(),
            operations: item_ops,
        });
    }

    for subresource in resource.subresources {
        if let Some(item) = subresource_path(
            resource,
            subresource,
            &item_path,
            &item_params,
            prefix,
            schemas,
        ) {
            items.push(item);
        }
    }
    items
}

/// get / put / patch (and post for create-only subresources) on one object URL.
struct ObjectVerbs<'a> {
    prefix: &'a str,
    scope: &'a str,
    kind: &'a str,
    /// `Status`, `Scale`, ... or empty for the object itself.
    suffix: &'a str,
    definition: &'a str,
    gvk: Option<(String, String, String)>,
    verbs: &'a [&'a str],
}

impl ObjectVerbs<'_> {
    fn operations(&self) -> Vec<Operation> {
        let ObjectVerbs {
            prefix,
            scope,
            kind,
            suffix,
            definition,
            ..
        } = self;
        let what = if suffix.is_empty() {
            "the specified".to_string()
        } else {
            format!("{} of the specified", suffix.to_lowercase())
        };
        let mut ops = Vec::new();
        let has = |verb: &str| self.verbs.contains(&verb);
        if has("get") {
            ops.push(Operation {
                method: Method::Get,
                id: format!("read{prefix}{scope}{kind}{suffix}"),
                description: format!("read {what} {kind}"),
                action: "get",
                gvk: self.gvk.clone(),
                params: Vec::new(),
                body: None,
                responses: responses(definition, &[200]),
            });
        }
        if has("update") {
            ops.push(Operation {
                method: Method::Put,
                id: format!("replace{prefix}{scope}{kind}{suffix}"),
                description: format!("replace {what} {kind}"),
                action: "put",
                gvk: self.gvk.clone(),
                params: query_params(WRITE_PARAMS),
                body: Some(Body::Object {
                    definition: definition.to_string(),
                    required: true,
                }),
                responses: responses(definition, &[200, 201]),
            });
        }
        if has("patch") {
            ops.push(Operation {
                method: Method::Patch,
                id: format!("patch{prefix}{scope}{kind}{suffix}"),
                description: format!("partially update {what} {kind}"),
                action: "patch",
                gvk: self.gvk.clone(),
                params: query_params(PATCH_PARAMS),
                body: Some(Body::Patch),
                responses: responses(definition, &[200, 201]),
            });
        }
        if has("create") && !suffix.is_empty() {
            ops.push(Operation {
                method: Method::Post,
                id: format!("create{prefix}{scope}{kind}{suffix}"),
                description: format!("create {} of a {kind}", suffix.to_lowercase()),
                action: "post",
                gvk: self.gvk.clone(),
                params: query_params(WRITE_PARAMS),
                body: Some(Body::Object {
                    definition: definition.to_string(),
                    required: true,
                }),
                responses: responses(definition, &[200, 201, 202]),
            });
        }
        ops
    }
}

fn subresource_path(
    resource: &ResourceInfo,
    subresource: &Subresource,
    item_path: &str,
    item_params: &[Param],
    prefix: &str,
    schemas: &Schemas,
) -> Option<PathItem> {
    let suffix = capitalize(subresource.name);
    let path = format!("{item_path}/{}", subresource.name);
    let gvk = Some((
        subresource.group.to_string(),
        subresource.version.to_string(),
        subresource.kind.to_string(),
    ));
    if subresource.name == "log" {
        // The log is text, not an object of the subresource's kind.
        let scope = if resource.namespaced {
            "Namespaced"
        } else {
            ""
        };
        let operation = Operation {
            method: Method::Get,
            id: format!("read{prefix}{scope}{}{suffix}", resource.kind),
            description: format!("read log of the specified {}", resource.kind),
            action: "get",
            gvk,
            params: query_params(LOG_PARAMS),
            body: None,
            responses: vec![Response {
                code: 200,
                payload: Payload::Text,
                watchable: false,
            }],
        };
        return Some(PathItem {
            path,
            params: item_params.to_vec(),
            operations: vec![operation],
        });
    }
    let definition =
        schemas.definition_for_kind(subresource.group, subresource.version, subresource.kind)?;
    let verbs = ObjectVerbs {
        prefix,
        scope: if resource.namespaced {
            "Namespaced"
        } else {
            ""
        },
        kind: resource.kind,
        suffix: &suffix,
        definition,
        gvk,
        verbs: subresource.verbs,
    };
    let operations = verbs.operations();
    (!operations.is_empty()).then(|| PathItem {
        path,
        params: item_params.to_vec(),
        operations,
    })
}

fn gvk_value((group, version, kind): &(String, String, String)) -> Value {
    gvk(group, version, kind)
}

/// The schema of a payload, with references under `ref_prefix`.
fn payload_schema(payload: &Payload, ref_prefix: &str) -> Value {
    match payload {
        Payload::Definition(name) => json!({"$ref": format!("{ref_prefix}{name}")}),
        Payload::Text => json!({"type": "string"}),
    }
}

fn response_content_types(response: &Response) -> Vec<&'static str> {
    match (&response.payload, response.watchable) {
        (Payload::Text, _) => vec!["text/plain", JSON],
        (Payload::Definition(_), true) => vec![JSON, WATCH_STREAM],
        (Payload::Definition(_), false) => vec![JSON],
    }
}

fn status_text(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        _ => "Unauthorized",
    }
}

/// Renders path items as an OpenAPI 3.0 `paths` object.
pub(crate) fn render_v3(items: &[PathItem], tag: &str) -> Map<String, Value> {
    items
        .iter()
        .map(|item| (item.path.clone(), v3_path_item(item, tag)))
        .collect()
}

fn v3_param(param: &Param) -> Value {
    let mut out = Map::new();
    out.insert("description".into(), param.description.clone().into());
    out.insert(
        "in".into(),
        if param.location == Location::Path {
            "path"
        } else {
            "query"
        }
        .into(),
    );
    out.insert("name".into(), param.name.into());
    if param.location == Location::Path {
        out.insert("required".into(), true.into());
    }
    out.insert(
        "schema".into(),
        json!({"type": param.ty.name(), "uniqueItems": true}),
    );
    Value::Object(out)
}

fn v3_path_item(item: &PathItem, tag: &str) -> Value {
    let mut out = Map::new();
    let mut operations: Vec<&Operation> = item.operations.iter().collect();
    operations.sort_by_key(|op| op.method.key());
    for op in operations {
        let mut operation = Map::new();
        operation.insert("description".into(), op.description.clone().into());
        operation.insert("operationId".into(), op.id.clone().into());
        if !op.params.is_empty() {
            operation.insert(
                "parameters".into(),
                op.params.iter().map(v3_param).collect(),
            );
        }
        if let Some(body) = &op.body {
            operation.insert("requestBody".into(), v3_request_body(body));
        }
        let mut responses = Map::new();
        for response in &op.responses {
            let schema = payload_schema(&response.payload, V3_REF_PREFIX);
            let content: Map<String, Value> = response_content_types(response)
                .into_iter()
                .map(|ty| (ty.to_string(), json!({"schema": schema})))
                .collect();
            responses.insert(
                response.code.to_string(),
                json!({"content": content, "description": status_text(response.code)}),
            );
        }
        responses.insert("401".into(), json!({"description": status_text(401)}));
        operation.insert("responses".into(), Value::Object(responses));
        operation.insert("tags".into(), json!([tag]));
        operation.insert("x-kubernetes-action".into(), op.action.into());
        if let Some(gvk) = &op.gvk {
            operation.insert("x-kubernetes-group-version-kind".into(), gvk_value(gvk));
        }
        out.insert(op.method.key().into(), Value::Object(operation));
    }
    if !item.params.is_empty() {
        out.insert(
            "parameters".into(),
            item.params.iter().map(v3_param).collect(),
        );
    }
    // Upstream orders the keys of a path item alphabetically; so do we, for stable output.
    let mut sorted: Vec<(String, Value)> = out.into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    Value::Object(sorted.into_iter().collect())
}

fn v3_request_body(body: &Body) -> Value {
    match body {
        Body::Object {
            definition,
            required,
        } => {
            let mut out = json!({"content": {"*/*": {"schema": {"$ref": format!("{V3_REF_PREFIX}{definition}")}}}});
            if *required {
                out["required"] = true.into();
            }
            out
        }
        Body::Patch => {
            let schema = json!({"$ref": format!("{V3_REF_PREFIX}{PATCH}")});
            let content: Map<String, Value> = PATCH_CONTENT_TYPES
                .iter()
                .map(|ty| (ty.to_string(), json!({"schema": schema})))
                .collect();
            json!({"content": content, "required": true})
        }
    }
}

/// Renders path items as a Swagger 2.0 `paths` object.
pub(crate) fn render_v2(items: &[PathItem], tag: &str) -> Map<String, Value> {
    items
        .iter()
        .map(|item| (item.path.clone(), v2_path_item(item, tag)))
        .collect()
}

fn v2_param(param: &Param) -> Value {
    let mut out = Map::new();
    out.insert("description".into(), param.description.clone().into());
    out.insert(
        "in".into(),
        if param.location == Location::Path {
            "path"
        } else {
            "query"
        }
        .into(),
    );
    out.insert("name".into(), param.name.into());
    if param.location == Location::Path {
        out.insert("required".into(), true.into());
    }
    out.insert("type".into(), param.ty.name().into());
    out.insert("uniqueItems".into(), true.into());
    Value::Object(out)
}

fn v2_path_item(item: &PathItem, tag: &str) -> Value {
    let mut out = Map::new();
    let mut operations: Vec<&Operation> = item.operations.iter().collect();
    operations.sort_by_key(|op| op.method.key());
    for op in operations {
        let mut operation = Map::new();
        let consumes: Vec<&str> = match &op.body {
            Some(Body::Patch) => PATCH_CONTENT_TYPES.to_vec(),
            _ => vec!["*/*"],
        };
        operation.insert("consumes".into(), json!(consumes));
        operation.insert("description".into(), op.description.clone().into());
        operation.insert("operationId".into(), op.id.clone().into());
        let mut params: Vec<Value> = Vec::new();
        if let Some(body) = &op.body {
            let (definition, required) = match body {
                Body::Object {
                    definition,
                    required,
                } => (definition.as_str(), *required),
                Body::Patch => (PATCH, true),
            };
            let mut param = json!({"in": "body", "name": "body", "schema": {"$ref": format!("{V2_REF_PREFIX}{definition}")}});
            if required {
                param["required"] = true.into();
            }
            params.push(param);
        }
        params.extend(op.params.iter().map(v2_param));
        if !params.is_empty() {
            operation.insert("parameters".into(), Value::Array(params));
        }
        let mut produces: Vec<&str> = Vec::new();
        for response in &op.responses {
            for ty in response_content_types(response) {
                if !produces.contains(&ty) {
                    produces.push(ty);
                }
            }
        }
        operation.insert("produces".into(), json!(produces));
        let mut responses = Map::new();
        for response in &op.responses {
            responses.insert(
                response.code.to_string(),
                json!({"description": status_text(response.code), "schema": payload_schema(&response.payload, V2_REF_PREFIX)}),
            );
        }
        responses.insert("401".into(), json!({"description": status_text(401)}));
        operation.insert("responses".into(), Value::Object(responses));
        operation.insert("schemes".into(), json!(["https"]));
        operation.insert("tags".into(), json!([tag]));
        operation.insert("x-kubernetes-action".into(), op.action.into());
        if let Some(gvk) = &op.gvk {
            operation.insert("x-kubernetes-group-version-kind".into(), gvk_value(gvk));
        }
        out.insert(op.method.key().into(), Value::Object(operation));
    }
    if !item.params.is_empty() {
        out.insert(
            "parameters".into(),
            item.params.iter().map(v2_param).collect(),
        );
    }
    let mut sorted: Vec<(String, Value)> = out.into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    Value::Object(sorted.into_iter().collect())
}

/// The tag upstream puts on every operation of a group version (`apps_v1`, `core_v1`).
pub(crate) fn group_version_tag(group: &str, version: &str) -> String {
    tag(group, version)
}

/// Definition names the operations of `items` mention (bodies and responses).
pub(crate) fn referenced_definitions(items: &[PathItem]) -> Vec<String> {
    let mut out = Vec::new();
    for op in items.iter().flat_map(|item| &item.operations) {
        match &op.body {
            Some(Body::Object { definition, .. }) => out.push(definition.clone()),
            Some(Body::Patch) => out.push(PATCH.to_string()),
            None => {}
        }
        for response in &op.responses {
            if let Payload::Definition(name) = &response.payload {
                out.push(name.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_prefixes_follow_upstream() {
        assert_eq!(operation_prefix("", "v1"), "CoreV1");
        assert_eq!(operation_prefix("apps", "v1"), "AppsV1");
        assert_eq!(
            operation_prefix("coordination.k8s.io", "v1"),
            "CoordinationV1"
        );
        assert_eq!(
            operation_prefix("rbac.authorization.k8s.io", "v1beta1"),
            "RbacAuthorizationV1beta1"
        );
        assert_eq!(tag("discovery.k8s.io", "v1"), "discovery_v1");
        assert_eq!(tag("", "v1"), "core_v1");
    }

    #[test]
    fn query_params_keep_the_requested_order_and_skip_unknown_names() {
        let names: Vec<_> = query_params(&["fieldValidation", "nope", "dryRun"])
            .iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, ["fieldValidation", "dryRun"]);
    }
}
