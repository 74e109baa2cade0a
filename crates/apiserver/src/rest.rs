//! REST semantics of kube-apiserver for every served resource: get, list, create, update,
//! patch, delete and deletecollection, plus the status, scale, binding and log subresources.
//! Handlers decode and check the request, run defaulting / admission / validation from
//! `policy`, and write through the store with optimistic concurrency. Watches live in `watch`.

use crate::object::{self, key, prefix};
use crate::policy::{self, Selector};
use crate::registry::ResourceInfo;
use crate::request::{ResourceRequest, Verb};
use crate::server::State;
use crate::{services, tables};
use apimachinery::ApiError;
use apimachinery::errors::CONFLICT_MODIFIED;
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use store::{Entry, StoreError};

/// Query parameters of one request.
#[derive(Clone, Debug, Default)]
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        Query(
            url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str).filter(|s| !s.is_empty())
    }
    pub fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true") | Some("1"))
    }
    pub fn int(&self, k: &str) -> Result<Option<i64>, ApiError> {
        match self.get(k) {
            None => Ok(None),
            Some(s) => s
                .parse()
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("invalid value for {k}: {s:?}"))),
        }
    }
    fn dry_run(&self) -> Result<bool, ApiError> {
        match self.get("dryRun") {
            None => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "unsupported dry run value: {other:?}; use \"All\""
            ))),
        }
    }
}

/// How unknown fields in a body are treated (`fieldValidation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

impl FieldValidation {
    fn from_query(q: &Query) -> Result<FieldValidation, ApiError> {
        match q.get("fieldValidation") {
            None | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation must be one of \"Ignore\", \"Warn\", or \"Strict\", got {other:?}"
            ))),
        }
    }
}

/// Everything a handler needs about the request.
pub struct Call<'a> {
    pub state: &'a State,
    pub rr: ResourceRequest,
    pub query: Query,
    pub accept: String,
    pub content_type: String,
    pub body: Bytes,
    /// `Warning` headers to send (unknown fields under fieldValidation=Warn, ...).
    pub warnings: Vec<String>,
    /// The handshake and upgrade of `pods/exec` and `pods/attach`; `None` for other calls.
    pub streaming: Option<crate::exec::Streaming>,
}

pub fn json_response(status: StatusCode, value: &Value) -> Response {
    bytes_response(
        status,
        Bytes::from(serde_json::to_vec(value).unwrap_or_default()),
    )
}

/// `value` encoded as JSON, as the store would encode it.
fn encode(value: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

pub fn bytes_response(status: StatusCode, body: Bytes) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub fn error_response(e: &ApiError) -> Response {
    json_response(
        StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &e.to_status(),
    )
}

fn success_status(info: &ResourceInfo, name: &str, uid: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": name, "group": info.group, "kind": info.plural, "uid": uid},
    })
}

impl Call<'_> {
    fn info(&self) -> &'static ResourceInfo {
        self.rr.info
    }
    fn ns(&self) -> Option<&str> {
        self.rr.namespace.as_deref()
    }
    pub(crate) fn name(&self) -> &str {
        self.rr.name.as_deref().unwrap_or("")
    }
    fn key(&self) -> String {
        key(self.info(), self.ns(), self.name())
    }
    fn not_found(&self) -> ApiError {
        ApiError::not_found(self.info().group, self.info().plural, self.name())
    }
    pub(crate) fn current(&self) -> Result<Entry, ApiError> {
        self.state
            .store
            .get(&self.key())
            .ok_or_else(|| self.not_found())
    }

    fn respond(&self, status: StatusCode, entry_bytes: Bytes) -> Response {
        if let Some(include) = tables::wants_table(&self.accept, &self.query) {
            let obj = object::parse(&entry_bytes);
            let t = tables::table(self.info(), std::slice::from_ref(&obj), include, json!({}));
            return json_response(status, &t);
        }
        bytes_response(status, entry_bytes)
    }

    fn respond_value(&self, status: StatusCode, v: &Value) -> Response {
        self.respond(
            status,
            Bytes::from(serde_json::to_vec(v).unwrap_or_default()),
        )
    }

    /// Parses the body (JSON, YAML, or protobuf as client-go's typed clients send it) into a
    /// JSON object.
    pub(crate) fn body_object(&self) -> Result<Value, ApiError> {
        decode_body(&self.content_type, &self.body, self.info().kind)
    }

    /// Checks apiVersion/kind, decodes strictly through the typed struct, and applies the
    /// fieldValidation directive to unknown fields. Returns the normalised object.
    fn decode(&mut self, info: &ResourceInfo, mut v: Value) -> Result<Value, ApiError> {
        let want_version = info.api_version();
        match v.get("apiVersion").and_then(Value::as_str) {
            None | Some("") => v["apiVersion"] = json!(want_version),
            Some(av) if av != want_version => {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({av}) does not match the expected API version ({want_version})"
                )));
            }
            _ => {}
        }
        match v.get("kind").and_then(Value::as_str) {
            None | Some("") => v["kind"] = json!(info.kind),
            Some(k) if k != info.kind => {
                return Err(ApiError::bad_request(format!(
                    "the kind in the data ({k}) does not match the expected kind ({})",
                    info.kind
                )));
            }
            _ => {}
        }
        let normalized = (info.normalize)(&v).map_err(|e| {
            ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: {e}",
                info.kind, info.version, info.kind
            ))
        })?;
        let mut unknown = Vec::new();
        unknown_fields(&v, &normalized, "", &mut unknown);
        if !unknown.is_empty() {
            match FieldValidation::from_query(&self.query)? {
                FieldValidation::Strict => {
                    let list = unknown
                        .iter()
                        .map(|f| format!("unknown field \"{f}\""))
                        .collect::<Vec<_>>()
                        .join(", ");
                    return Err(ApiError::bad_request(format!(
                        "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {list}",
                        info.kind, info.version, info.kind
                    )));
                }
                FieldValidation::Warn => {
                    self.warnings
                        .extend(unknown.iter().map(|f| format!("unknown field \"{f}\"")));
                }
                FieldValidation::Ignore => {}
            }
        } else {
            FieldValidation::from_query(&self.query)?;
        }
        Ok(normalized)
    }

    fn label_field_selector(&self) -> Result<Selector, ApiError> {
        Selector::parse(
            self.info(),
            self.query.get("labelSelector"),
            self.query.get("fieldSelector"),
        )
    }
}

/// Media types a write body may have, as upstream lists them in its 415 answer.
const BODY_MEDIA_TYPES: &str =
    "application/json, application/yaml, application/vnd.kubernetes.protobuf";

/// Decodes a request body into a JSON object; errors are worded like upstream's decoder's.
pub fn decode_body(content_type: &str, body: &[u8], kind: &str) -> Result<Value, ApiError> {
    let ct = content_type.split(';').next().unwrap_or("").trim();
    let unrecognized = |e: &dyn std::fmt::Display| {
        ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type {kind}): couldn't get version/kind; json parse error: {e} ({})",
            body_snippet(body)
        ))
    };
    let v: Value = match ct {
        "" | "application/json" | "*/*" => {
            serde_json::from_slice(body).map_err(|e| unrecognized(&e))?
        }
        "application/yaml" => {
            let text = std::str::from_utf8(body).map_err(|e| unrecognized(&e))?;
            serde_saphyr::from_str(text).map_err(|e| unrecognized(&e))?
        }
        kubeproto::CONTENT_TYPE => {
            return kubeproto::decode(body).map_err(|e| match e {
                kubeproto::DecodeError::UnsupportedKind { .. } => {
                    ApiError::unsupported_media_type(e.to_string())
                }
                _ => ApiError::bad_request(format!("failed to decode protobuf body: {e}")),
            });
        }
        _ => {
            return Err(ApiError::unsupported_media_type(format!(
                "the body of the request was in an unknown format - accepted media types include: {BODY_MEDIA_TYPES}"
            )));
        }
    };
    if !v.is_object() {
        return Err(unrecognized(&"the body is not an object"));
    }
    // Upstream reads apiVersion and kind into Go strings first: any other type (null aside)
    // fails there, before the object is looked at.
    for field in ["apiVersion", "kind"] {
        let found = match &v[field] {
            Value::Null | Value::String(_) => continue,
            Value::Bool(_) => "bool",
            Value::Number(_) => "number",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        return Err(unrecognized(&format!(
            "json: cannot unmarshal {found} into Go struct field .{field} of type string"
        )));
    }
    Ok(v)
}

/// The start of a body for an error message: text when it looks like JSON, else hex.
fn body_snippet(body: &[u8]) -> String {
    let head = &body[..body.len().min(30)];
    if head.first() == Some(&b'{') {
        String::from_utf8_lossy(head).into_owned()
    } else {
        head.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Collects paths present in `input` (with a non-null value) but dropped by decoding into the
/// typed struct: the fields the type does not have.
fn unknown_fields(input: &Value, normalized: &Value, path: &str, out: &mut Vec<String>) {
    let mut path = path.to_string();
    collect_unknown_fields(input, normalized, &mut path, out);
}

/// [`unknown_fields`] with one path buffer for the whole walk: a create visits every field of
/// its object, and almost none is unknown.
fn collect_unknown_fields(
    input: &Value,
    normalized: &Value,
    path: &mut String,
    out: &mut Vec<String>,
) {
    let parent_len = path.len();
    match (input, normalized) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                match b.get(k) {
                    None if !v.is_null() => out.push(path.clone()),
                    Some(nb) => collect_unknown_fields(v, nb, path, out),
                    None => {}
                }
                path.truncate(parent_len);
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            use std::fmt::Write;
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                let _ = write!(path, "[{i}]");
                collect_unknown_fields(x, y, path, out);
                path.truncate(parent_len);
            }
        }
        _ => {}
    }
}

fn store_error(info: &ResourceInfo, name: &str, e: StoreError) -> ApiError {
    match e {
        StoreError::AlreadyExists(_) => ApiError::already_exists(info.group, info.plural, name),
        StoreError::NotFound(_) => ApiError::not_found(info.group, info.plural, name),
        StoreError::Conflict { .. } => {
            ApiError::conflict(info.group, info.plural, name, CONFLICT_MODIFIED)
        }
        StoreError::TooOld { requested, oldest } => {
            ApiError::expired(format!("too old resource version: {requested} ({oldest})"))
        }
        StoreError::InvalidObject(m) => ApiError::bad_request(m),
        StoreError::Backend(m) => ApiError::internal(m),
        StoreError::Closed => ApiError::service_unavailable("the storage is shutting down"),
    }
}

/// Entry point for resource requests.
pub async fn handle_with_warnings(call: &mut Call<'_>) -> Result<Response, ApiError> {
    let sub = call.rr.subresource.clone();
    let verb = call.rr.verb;
    let info = call.info();
    if !info.verbs.contains(&verb.as_str()) && sub.is_none() {
        return Err(ApiError::method_not_supported());
    }
    match (verb, sub.as_deref()) {
        (Verb::Get, None | Some("status")) => {
            let e = call.current()?;
            Ok(call.respond(StatusCode::OK, e.value))
        }
        (Verb::List, None) => list(call),
        (Verb::Watch, None) => crate::watch::watch(call).await,
        (Verb::Create, None) => create(call).await,
        (Verb::Update, None) => update(call, Mode::Main).await,
        (Verb::Update, Some("status")) => update(call, Mode::Status).await,
        (Verb::Patch, None) => patch(call, Mode::Main).await,
        (Verb::Patch, Some("status")) => patch(call, Mode::Status).await,
        (Verb::Delete, None) => delete(call).await,
        (Verb::DeleteCollection, None) => delete_collection(call).await,
        (Verb::Get, Some("scale")) => {
            let e = call.current()?;
            Ok(json_response(
                StatusCode::OK,
                &scale_of(info, &object::parse(&e.value)),
            ))
        }
        (Verb::Update | Verb::Patch, Some("scale")) => update_scale(call).await,
        (Verb::Create, Some("binding")) => bind(call).await,
        (Verb::Get, Some("log")) => crate::logs::pod_log(call).await,
        (Verb::Get | Verb::Create, Some("exec")) => crate::exec::pod_exec(call).await,
        (Verb::Get | Verb::Create, Some("attach")) => crate::exec::pod_attach(),
        (Verb::Create, Some("token")) => crate::tokens::token_request(call).await,
        _ => Err(ApiError::method_not_supported()),
    }
}

/// A continue token: upstream's shape (base64 JSON of the list's revision and where to start).
fn encode_continue(rv: u64, after_key: &str) -> String {
    use base64::Engine;
    let j = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": after_key});
    base64::engine::general_purpose::URL_SAFE.encode(j.to_string())
}

fn decode_continue(token: &str) -> Result<(u64, String), ApiError> {
    use base64::Engine;
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    if v["v"] != "meta.k8s.io/v1" {
        return Err(bad());
    }
    Ok((
        v["rv"].as_u64().ok_or_else(bad)?,
        v["start"].as_str().ok_or_else(bad)?.to_string(),
    ))
}

fn list(call: &Call<'_>) -> Result<Response, ApiError> {
    let info = call.info();
    let selector = call.label_field_selector()?;
    let limit = call
        .query
        .int("limit")?
        .filter(|l| *l > 0)
        .map(|l| l as usize);
    let collection = prefix(info, call.ns());
    // Later pages are served at the first page's revision, so a paged list is one snapshot.
    let (list_rv, entries, start_after) = match call.query.get("continue") {
        None => {
            let (rv, entries) = call.state.store.list(&collection);
            (rv, entries, None)
        }
        Some(token) => {
            let (rv, after) = decode_continue(token)?;
            let entries = call.state.store.list_at(&collection, rv).map_err(|_| {
                ApiError::expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                )
            })?;
            (rv, entries, Some(after))
        }
    };
    let mut items: Vec<Entry> = Vec::new();
    let mut next_key = None;
    let mut remaining = 0usize;
    let table = tables::wants_table(&call.accept, &call.query);
    for e in entries {
        if start_after.as_deref().is_some_and(|a| &*e.key <= a) {
            continue;
        }
        // Parsed only to filter; a Table is built later one row at a time, so thousands of
        // parsed pods are never alive at once.
        if !selector.is_empty() && !selector.matches(&object::parse(&e.value)) {
            continue;
        }
        if let Some(l) = limit
            && items.len() >= l
        {
            if next_key.is_none() {
                next_key = items.last().map(|e| e.key.to_string());
            }
            remaining += 1;
            continue;
        }
        items.push(e);
    }
    let mut meta = Map::new();
    meta.insert("resourceVersion".into(), json!(list_rv.to_string()));
    if let Some(k) = &next_key {
        meta.insert("continue".into(), json!(encode_continue(list_rv, k)));
        if selector.is_empty() {
            meta.insert("remainingItemCount".into(), json!(remaining));
        }
    }
    if let Some(include) = table {
        let objects = items.iter().map(|e| &e.value[..]);
        let body = tables::list_table(info, objects, include, Value::Object(meta));
        return Ok(bytes_response(StatusCode::OK, Bytes::from(body)));
    }
    // Splice stored bytes into the list without re-encoding each object: lists of thousands
    // of pods stay cheap.
    let mut out = Vec::with_capacity(items.iter().map(|e| e.value.len() + 1).sum::<usize>() + 256);
    out.extend_from_slice(
        format!(
            "{{\"kind\":\"{}\",\"apiVersion\":\"{}\",\"metadata\":{},\"items\":[",
            info.list_kind(),
            info.api_version(),
            Value::Object(meta)
        )
        .as_bytes(),
    );
    for (i, e) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&e.value);
    }
    out.extend_from_slice(b"]}");
    Ok(bytes_response(StatusCode::OK, Bytes::from(out)))
}

/// Which part of an object a write may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The main resource: spec and metadata; status is kept when a status subresource exists.
    Main,
    /// The status subresource: only status changes.
    Status,
}

/// Checks that the namespace in the path exists and is not being deleted (NamespaceLifecycle).
fn admit_namespace(
    state: &State,
    info: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
) -> Result<(), ApiError> {
    let Some(ns) = ns.filter(|_| info.namespaced) else {
        return Ok(());
    };
    let nsinfo = crate::registry::find("", "v1", "namespaces").expect("namespaces are served");
    let Some(e) = state.store.get(&key(nsinfo, None, ns)) else {
        return Err(ApiError::not_found("", "namespaces", ns));
    };
    if object::is_deleting(&object::parse(&e.value)) {
        return Err(ApiError::forbidden(format!(
            "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
            object::qualified(info)
        )));
    }
    Ok(())
}

async fn create(call: &mut Call<'_>) -> Result<Response, ApiError> {
    let info = call.info();
    let raw = call.body_object()?;
    let mut obj = call.decode(info, raw)?;
    let dry_run = call.query.dry_run()?;
    // Namespace: the path decides; a different one in the body is an error.
    if info.namespaced {
        let path_ns = call.ns().ok_or_else(|| {
            ApiError::bad_request("the namespace of the object must be given in the request path")
        })?;
        match object::namespace(&obj) {
            Some(n) if !n.is_empty() && n != path_ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {
                object::metadata_mut(&mut obj).insert("namespace".into(), json!(path_ns));
            }
        }
    } else {
        object::metadata_mut(&mut obj).remove("namespace");
    }
    admit_namespace(call.state, info, call.ns(), object::name(&obj))?;
    let generate_name = object::meta_str(&obj, "generateName")
        .filter(|g| !g.is_empty())
        .map(str::to_string);
    let explicit_name = !object::name(&obj).is_empty();
    let attempts = if explicit_name || generate_name.is_none() {
        1
    } else {
        8
    };
    for attempt in 0..attempts {
        let mut candidate = obj.clone();
        if let (false, Some(g)) = (explicit_name, &generate_name) {
            let n = apimachinery::names::generate_name(g, |n| rand::random_range(0..n));
            object::metadata_mut(&mut candidate).insert("name".into(), json!(n));
        }
        let stored = create_object(call.state, info, candidate, dry_run).await;
        match stored {
            Err(e) if e.reason == "AlreadyExists" && attempt + 1 < attempts => continue,
            Err(e) => return Err(e),
            Ok(stored) => return Ok(call.respond(StatusCode::CREATED, stored)),
        }
    }
    Err(ApiError::internal("could not generate a unique name"))
}

/// Defaulting, admission, validation, allocation and the write itself; shared by HTTP
/// creates and the server's own bootstrap objects. Returns the object as stored, encoded: the
/// store's own bytes, which are the response body, so a create never parses them back.
pub async fn create_object(
    state: &State,
    info: &ResourceInfo,
    mut obj: Value,
    dry_run: bool,
) -> Result<Bytes, ApiError> {
    let name = object::name(&obj).to_string();
    policy::apply_defaults(info, &mut obj);
    prepare_for_create(info, &mut obj);
    policy::admit_create(info, &mut obj)?;
    if info.group.is_empty() && info.kind == "Pod" {
        apimachinery::defaults::admit_service_account(
            &mut obj,
            |namespace, name| service_account_automount(state, namespace, name),
            || {
                apimachinery::names::generate_name(
                    apimachinery::defaults::SERVICE_ACCOUNT_VOLUME_PREFIX,
                    |n| rand::random_range(0..n),
                )
            },
        )?;
    }
    let errors = policy::validate_create(info, &obj);
    if !errors.is_empty() {
        return Err(ApiError::invalid(info.group, info.kind, &name, &errors));
    }
    let allocation = if info.plural == "services" && info.group.is_empty() {
        Some(services::allocate(state, &mut obj, None)?)
    } else {
        None
    };
    if dry_run {
        if let Some(a) = allocation {
            services::release(state, &a);
        }
        return Ok(encode(&obj));
    }
    let k = key(info, object::namespace(&obj), &name);
    match state.store.create(&k, obj).await {
        Ok(e) => {
            crate::hooks::after_create(state, info, &e.value).await;
            Ok(e.value)
        }
        Err(err) => {
            if let Some(a) = allocation {
                services::release(state, &a);
            }
            Err(store_error(info, &name, err))
        }
    }
}

/// The stored ServiceAccount's `automountServiceAccountToken`; `None` when the account does
/// not exist.
fn service_account_automount(state: &State, namespace: &str, name: &str) -> Option<Option<bool>> {
    let info = crate::registry::find("", "v1", "serviceaccounts")?;
    let stored = state.store.get(&key(info, Some(namespace), name))?;
    Some(
        object::parse(&stored.value)
            .get("automountServiceAccountToken")
            .and_then(Value::as_bool),
    )
}

/// Server-set fields on create: identity and timestamps here, then the resource's own
/// preparation (fresh status, generation).
fn prepare_for_create(info: &ResourceInfo, obj: &mut Value) {
    let m = object::metadata_mut(obj);
    m.insert("uid".into(), json!(object::new_uid()));
    m.insert(
        "creationTimestamp".into(),
        json!(object::timestamp(object::now())),
    );
    for f in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
        "generation",
    ] {
        m.remove(f);
    }
    policy::prepare_for_create(info, obj);
}

/// Merges a requested write with the stored object according to the mode: identity and
/// server-set metadata always come from the stored object.
fn prepare_for_update(info: &ResourceInfo, mode: Mode, new: Value, old: &Value) -> Value {
    let mut out = match mode {
        // Upstream's status strategies: the write keeps its status and metadata, the spec
        // stays as stored (and the labels too, for the apps kinds).
        Mode::Status => {
            let mut o = new;
            match old.get("spec") {
                Some(spec) => o["spec"] = spec.clone(),
                None => {
                    if let Some(m) = o.as_object_mut() {
                        m.remove("spec");
                    }
                }
            }
            if info.group == "apps" {
                let labels = object::metadata(old).and_then(|m| m.get("labels")).cloned();
                let m = object::metadata_mut(&mut o);
                match labels {
                    Some(l) => m.insert("labels".into(), l),
                    None => m.remove("labels"),
                };
            }
            o
        }
        Mode::Main => {
            let mut o = new;
            policy::prepare_for_update(info, &mut o, old);
            o
        }
    };
    let old_meta = object::metadata(old).cloned().unwrap_or_default();
    let m = object::metadata_mut(&mut out);
    for f in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "namespace",
        "name",
    ] {
        match old_meta.get(f) {
            Some(v) => m.insert(f.into(), v.clone()),
            None => m.remove(f),
        };
    }
    if mode == Mode::Status {
        match old_meta.get("generation") {
            Some(v) => m.insert("generation".into(), v.clone()),
            None => m.remove("generation"),
        };
    }
    out
}

/// How an update is written.
#[derive(Clone, Copy, Debug)]
pub struct Write {
    pub mode: Mode,
    /// The resourceVersion the stored object must still have.
    pub precondition: Option<u64>,
    pub dry_run: bool,
}

impl Write {
    /// A main-resource write conditional on `rv`, as controllers and bootstrap make.
    pub fn main_at(rv: u64) -> Write {
        Write {
            mode: Mode::Main,
            precondition: Some(rv),
            dry_run: false,
        }
    }
}

/// The result of an update: the stored object, encoded (the store's own bytes, or the object
/// that would be stored on a dry run), or `None` when the write completed a deletion
/// (finalizers emptied on an object being deleted).
pub async fn update_object(
    state: &State,
    info: &ResourceInfo,
    key_: &str,
    old: &Entry,
    requested: Value,
    how: Write,
) -> Result<Option<Bytes>, ApiError> {
    let Write {
        mode,
        precondition,
        dry_run,
    } = how;
    let old_v = object::parse(&old.value);
    let name = object::name(&old_v).to_string();
    let mut new = prepare_for_update(info, mode, requested, &old_v);
    if mode == Mode::Main {
        policy::apply_defaults(info, &mut new);
    }
    let errors = policy::validate_update(info, &new, &old_v);
    if !errors.is_empty() {
        return Err(ApiError::invalid(info.group, info.kind, &name, &errors));
    }
    let allocation = if info.plural == "services" && info.group.is_empty() && mode == Mode::Main {
        Some(services::allocate(state, &mut new, Some(&old_v))?)
    } else {
        None
    };
    if dry_run {
        if let Some(a) = allocation {
            services::release(state, &a);
        }
        return Ok(Some(encode(&new)));
    }
    // The last finalizer removed from an object being deleted completes its deletion.
    if object::is_deleting(&new) && object::finalizers(&new).is_empty() {
        let r = state
            .store
            .delete(key_, precondition.or(Some(old.rv)))
            .await;
        return match r {
            Ok(e) => {
                let v = object::parse(&e.value);
                crate::hooks::after_delete(state, info, &v);
                Ok(None)
            }
            Err(e) => Err(store_error(info, &name, e)),
        };
    }
    match state.store.update(key_, precondition, new).await {
        Ok(e) => {
            if let Some(a) = allocation {
                services::commit_update(state, &a, &old_v);
            }
            Ok(Some(e.value))
        }
        Err(e) => {
            if let Some(a) = allocation {
                services::release(state, &a);
            }
            Err(store_error(info, &name, e))
        }
    }
}

fn parse_rv(s: &str) -> Result<u64, ApiError> {
    s.parse()
        .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {s:?}")))
}

async fn update(call: &mut Call<'_>, mode: Mode) -> Result<Response, ApiError> {
    let info = call.info();
    let raw = call.body_object()?;
    let new = call.decode(info, raw)?;
    let dry_run = call.query.dry_run()?;
    let body_name = object::name(&new);
    if !body_name.is_empty() && body_name != call.name() {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({})",
            call.name()
        )));
    }
    if let Some(n) = object::namespace(&new)
        && info.namespaced
        && !n.is_empty()
        && Some(n) != call.ns()
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let precondition = match object::meta_str(&new, "resourceVersion") {
        Some(rv) if !rv.is_empty() => Some(parse_rv(rv)?),
        _ => None,
    };
    let key_ = call.key();
    let Some(old) = call.state.store.get(&key_) else {
        // Endpoints and events may be created by PUT, like upstream's AllowCreateOnUpdate.
        if mode == Mode::Main
            && matches!(info.plural, "endpoints" | "events")
            && info.group.is_empty()
        {
            let mut obj = new;
            object::metadata_mut(&mut obj).insert("name".into(), json!(call.name()));
            if let Some(ns) = call.ns() {
                object::metadata_mut(&mut obj).insert("namespace".into(), json!(ns));
            }
            admit_namespace(call.state, info, call.ns(), call.name())?;
            let stored = create_object(call.state, info, obj, dry_run).await?;
            return Ok(call.respond(StatusCode::CREATED, stored));
        }
        return Err(call.not_found());
    };
    if let Some(uid) = object::meta_str(&new, "uid").filter(|u| !u.is_empty()) {
        let old_v = object::parse(&old.value);
        if uid != object::uid(&old_v) {
            return Err(ApiError::conflict(
                info.group,
                info.plural,
                call.name(),
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    object::uid(&old_v)
                ),
            ));
        }
    }
    match update_object(
        call.state,
        info,
        &key_,
        &old,
        new,
        Write {
            mode,
            precondition,
            dry_run,
        },
    )
    .await?
    {
        Some(stored) => Ok(call.respond(StatusCode::OK, stored)),
        None => Ok(json_response(
            StatusCode::OK,
            &success_status(info, call.name(), ""),
        )),
    }
}

/// The patch formats a PATCH may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PatchKind {
    Json,
    Merge,
    Strategic,
    /// Server-side apply, simplified: the applied configuration is merged like a strategic
    /// merge patch (creating the object if absent); field ownership is not tracked.
    Apply,
}

fn patch_kind(content_type: &str) -> Result<PatchKind, ApiError> {
    match content_type.split(';').next().unwrap_or("").trim() {
        "application/json-patch+json" => Ok(PatchKind::Json),
        "application/merge-patch+json" => Ok(PatchKind::Merge),
        "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
        "application/apply-patch+yaml" | "application/apply-patch+cbor" => Ok(PatchKind::Apply),
        _ => Err(ApiError::unsupported_media_type(
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml",
        )),
    }
}

/// Upstream answers 400 for malformed patches and a generic 422 (the reason in a cause) for
/// well-formed ones that cannot apply, such as a failed JSON-patch `test`.
fn patch_error(e: strategicpatch::PatchError) -> ApiError {
    if e.is_unprocessable() {
        let mut err = ApiError::new(
            422,
            "Invalid",
            "the server rejected our request due to an error in our request",
        );
        err.details = Some(
            json!({"causes": [{"reason": "UnexpectedServerResponse", "message": e.to_string()}]}),
        );
        err
    } else {
        ApiError::bad_request(e.to_string())
    }
}

fn apply_patch(
    state: &State,
    info: &ResourceInfo,
    kind: PatchKind,
    current: &Value,
    patch: &Value,
) -> Result<Value, ApiError> {
    match kind {
        PatchKind::Json => strategicpatch::json_patch(current, patch).map_err(patch_error),
        PatchKind::Merge => Ok(strategicpatch::merge_patch(current, patch)),
        PatchKind::Strategic | PatchKind::Apply => {
            strategicpatch::strategic_merge(current, patch, &*state.openapi, info.definition)
                .map_err(patch_error)
        }
    }
}

async fn patch(call: &mut Call<'_>, mode: Mode) -> Result<Response, ApiError> {
    let info = call.info();
    let kind = patch_kind(&call.content_type)?;
    let patch_body: Value = if kind == PatchKind::Apply {
        let text = std::str::from_utf8(&call.body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
        serde_saphyr::from_str(text)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?
    } else {
        serde_json::from_slice(&call.body)
            .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?
    };
    let dry_run = call.query.dry_run()?;
    let key_ = call.key();
    if kind == PatchKind::Apply && call.query.get("fieldManager").is_none() {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "PatchOptions",
            "",
            &[apimachinery::FieldError::required(
                "fieldManager",
                "is required for apply patch",
            )],
        ));
    }
    if kind == PatchKind::Apply && mode == Mode::Main && call.state.store.get(&key_).is_none() {
        let mut obj = patch_body;
        object::metadata_mut(&mut obj).insert("name".into(), json!(call.name()));
        if let Some(ns) = call.ns() {
            object::metadata_mut(&mut obj).insert("namespace".into(), json!(ns));
        }
        let info = call.info();
        let obj = call.decode(info, obj)?;
        admit_namespace(call.state, info, call.ns(), call.name())?;
        let stored = create_object(call.state, info, obj, dry_run).await?;
        return Ok(call.respond(StatusCode::CREATED, stored));
    }
    // Retry when the object changes underneath us, as upstream's patcher does.
    for _ in 0..8 {
        let cur = call.current()?;
        let cur_v = object::parse(&cur.value);
        let patched = apply_patch(call.state, info, kind, &cur_v, &patch_body)?;
        if !patched.is_object() {
            return Err(ApiError::bad_request("the patch did not produce an object"));
        }
        let requested_rv = object::meta_str(&patched, "resourceVersion").map(str::to_string);
        let precondition = match requested_rv.as_deref() {
            Some(rv) if rv != cur.rv.to_string() => {
                // A resourceVersion written by the patch itself is a precondition.
                parse_rv(rv)?;
                return Err(ApiError::conflict(
                    info.group,
                    info.plural,
                    call.name(),
                    CONFLICT_MODIFIED,
                ));
            }
            _ => cur.rv,
        };
        let new = call.decode(info, patched)?;
        match update_object(
            call.state,
            info,
            &key_,
            &cur,
            new,
            Write {
                mode,
                precondition: Some(precondition),
                dry_run,
            },
        )
        .await
        {
            Ok(Some(stored)) => return Ok(call.respond(StatusCode::OK, stored)),
            Ok(None) => {
                return Ok(json_response(
                    StatusCode::OK,
                    &success_status(info, call.name(), ""),
                ));
            }
            Err(e) if e.reason == "Conflict" => {
                call.warnings.clear();
                continue;
            }
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::conflict(
        info.group,
        info.plural,
        call.name(),
        CONFLICT_MODIFIED,
    ))
}

/// `DeleteOptions` from the body and the query.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub grace_period: Option<i64>,
    pub propagation: Option<String>,
    pub uid: Option<String>,
    pub rv: Option<String>,
    pub dry_run: bool,
}

impl DeleteOptions {
    fn from_call(call: &Call<'_>) -> Result<DeleteOptions, ApiError> {
        let mut o = DeleteOptions {
            dry_run: call.query.dry_run()?,
            ..Default::default()
        };
        if !call.body.iter().all(u8::is_ascii_whitespace) {
            let v: Value = serde_json::from_slice(&call.body)
                .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?;
            o.grace_period = v.get("gracePeriodSeconds").and_then(Value::as_i64);
            o.propagation = v
                .get("propagationPolicy")
                .and_then(Value::as_str)
                .map(str::to_string);
            if v.get("orphanDependents") == Some(&json!(true)) {
                o.propagation = Some("Orphan".into());
            }
            o.uid = v
                .pointer("/preconditions/uid")
                .and_then(Value::as_str)
                .map(str::to_string);
            o.rv = v
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string);
            if v.get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|x| x == "All"))
            {
                o.dry_run = true;
            }
        }
        if let Some(g) = call.query.int("gracePeriodSeconds")? {
            o.grace_period = Some(g);
        }
        if let Some(p) = call.query.get("propagationPolicy") {
            o.propagation = Some(p.to_string());
        }
        if call.query.flag("orphanDependents") {
            o.propagation = Some("Orphan".into());
        }
        if let Some(p) = &o.propagation
            && !matches!(p.as_str(), "Orphan" | "Background" | "Foreground")
        {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                "DeleteOptions",
                "",
                &[apimachinery::FieldError::not_supported(
                    "propagationPolicy",
                    p.as_str(),
                    &["Foreground", "Background", "Orphan"],
                )],
            ));
        }
        if o.grace_period.is_some_and(|g| g < 0) {
            o.grace_period = Some(1);
        }
        Ok(o)
    }
}

/// Outcome of deleting one object.
pub enum Deleted {
    /// Gone from the store; the last state.
    Now(Value),
    /// Still present (graceful deletion, finalizers): the updated object.
    Pending(Value),
}

pub async fn delete_one(
    state: &State,
    info: &ResourceInfo,
    key_: &str,
    name: &str,
    opts: &DeleteOptions,
) -> Result<Deleted, ApiError> {
    for _ in 0..8 {
        let cur = state
            .store
            .get(key_)
            .ok_or_else(|| ApiError::not_found(info.group, info.plural, name))?;
        let v = object::parse(&cur.value);
        if let Some(uid) = &opts.uid
            && uid != object::uid(&v)
        {
            return Err(ApiError::conflict(
                info.group,
                info.plural,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    object::uid(&v)
                ),
            ));
        }
        if let Some(rv) = &opts.rv
            && *rv != cur.rv.to_string()
        {
            return Err(ApiError::conflict(
                info.group,
                info.plural,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    cur.rv
                ),
            ));
        }
        if info.plural == "namespaces" && matches!(name, "default" | "kube-system" | "kube-public")
        {
            return Err(ApiError::forbidden(format!(
                "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
            )));
        }
        let mut updated = v.clone();
        let mut pending = false;
        let now = object::now();
        // Graceful pod deletion: a pod running on a node gets a deadline; its kubelet deletes
        // it once the containers stopped.
        if info.plural == "pods" && info.group.is_empty() {
            let on_node = v
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty());
            let phase = v
                .pointer("/status/phase")
                .and_then(Value::as_str)
                .unwrap_or("");
            let terminal = matches!(phase, "Succeeded" | "Failed");
            let grace = opts.grace_period.unwrap_or_else(|| {
                v.pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
                    .unwrap_or(30)
            });
            let current_grace = v
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64);
            if on_node && !terminal && grace > 0 {
                if current_grace.is_some_and(|c| c <= grace) {
                    return Ok(Deleted::Pending(v));
                }
                let m = object::metadata_mut(&mut updated);
                m.insert(
                    "deletionTimestamp".into(),
                    json!(object::timestamp(
                        now + jiff::SignedDuration::from_secs(grace)
                    )),
                );
                m.insert("deletionGracePeriodSeconds".into(), json!(grace));
                pending = true;
            }
        }
        let mut finalizers = object::finalizers(&v);
        let default_propagation = "Background";
        let propagation = opts.propagation.as_deref().unwrap_or(default_propagation);
        let finalizer = match propagation {
            "Foreground" => Some("foregroundDeletion"),
            "Orphan" => Some("orphan"),
            _ => None,
        };
        if let Some(f) = finalizer
            && (!object::is_deleting(&v) || !finalizers.iter().any(|x| x == f))
        {
            finalizers.retain(|x| x != "foregroundDeletion" && x != "orphan");
            finalizers.push(f.to_string());
        }
        if info.plural == "namespaces" && info.group.is_empty() {
            updated["status"]["phase"] = json!("Terminating");
            if !finalizers.iter().any(|f| f == "kubernetes") {
                // The namespace finalizer lives in spec, not metadata.
            }
            pending = true;
        }
        if !finalizers.is_empty() {
            object::set_finalizers(&mut updated, &finalizers);
            let m = object::metadata_mut(&mut updated);
            if !m.contains_key("deletionTimestamp") || m["deletionTimestamp"].is_null() {
                m.insert("deletionTimestamp".into(), json!(object::timestamp(now)));
                m.insert("deletionGracePeriodSeconds".into(), json!(0));
            }
            pending = true;
        }
        if pending {
            if object::is_deleting(&v) && updated == v {
                return Ok(Deleted::Pending(v));
            }
            if info.plural == "namespaces" && !object::is_deleting(&v) {
                object::metadata_mut(&mut updated)
                    .insert("deletionTimestamp".into(), json!(object::timestamp(now)));
            }
            if opts.dry_run {
                return Ok(Deleted::Pending(updated));
            }
            match state.store.update(key_, Some(cur.rv), updated).await {
                Ok(e) => return Ok(Deleted::Pending(object::parse(&e.value))),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(store_error(info, name, e)),
            }
        }
        if opts.dry_run {
            return Ok(Deleted::Now(v));
        }
        match state.store.delete(key_, Some(cur.rv)).await {
            Ok(e) => {
                let last = object::parse(&e.value);
                crate::hooks::after_delete(state, info, &last);
                return Ok(Deleted::Now(last));
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(store_error(info, name, e)),
        }
    }
    Err(ApiError::conflict(
        info.group,
        info.plural,
        name,
        CONFLICT_MODIFIED,
    ))
}

/// Upstream returns the deleted object for these resources and a success Status for others.
fn returns_deleted_object(info: &ResourceInfo) -> bool {
    info.group.is_empty() && matches!(info.plural, "pods" | "services" | "namespaces" | "nodes")
}

async fn delete(call: &mut Call<'_>) -> Result<Response, ApiError> {
    let info = call.info();
    let opts = DeleteOptions::from_call(call)?;
    match delete_one(call.state, info, &call.key(), call.name(), &opts).await? {
        Deleted::Pending(v) => Ok(call.respond_value(StatusCode::ACCEPTED, &v)),
        Deleted::Now(v) if returns_deleted_object(info) => {
            Ok(call.respond_value(StatusCode::OK, &v))
        }
        Deleted::Now(v) => Ok(json_response(
            StatusCode::OK,
            &success_status(info, call.name(), object::uid(&v)),
        )),
    }
}

async fn delete_collection(call: &mut Call<'_>) -> Result<Response, ApiError> {
    let info = call.info();
    let opts = DeleteOptions::from_call(call)?;
    let selector = call.label_field_selector()?;
    let (rv, entries) = call.state.store.list(&prefix(info, call.ns()));
    let mut items = Vec::new();
    for e in entries {
        let v = object::parse(&e.value);
        if !selector.matches(&v) {
            continue;
        }
        let name = object::name(&v).to_string();
        match delete_one(call.state, info, &e.key, &name, &opts).await {
            Ok(Deleted::Now(v) | Deleted::Pending(v)) => items.push(v),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({"kind": info.list_kind(), "apiVersion": info.api_version(), "metadata": {"resourceVersion": rv.to_string()}, "items": items}),
    ))
}

/// The `autoscaling/v1` Scale view of a Deployment or ReplicaSet.
fn scale_of(info: &ResourceInfo, obj: &Value) -> Value {
    let meta = object::metadata(obj).cloned().unwrap_or_default();
    let mut m = Map::new();
    for f in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = meta.get(f) {
            m.insert(f.into(), v.clone());
        }
    }
    let selector = obj
        .pointer("/spec/selector")
        .and_then(|s| apimachinery::selectors::selector_string(s).ok())
        .unwrap_or_default();
    let _ = info;
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": m,
        "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0)},
        "status": {
            "replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector,
        },
    })
}

async fn update_scale(call: &mut Call<'_>) -> Result<Response, ApiError> {
    let info = call.info();
    let dry_run = call.query.dry_run()?;
    let key_ = call.key();
    for _ in 0..8 {
        let cur = call.current()?;
        let cur_v = object::parse(&cur.value);
        let scale = scale_of(info, &cur_v);
        let requested = if call.rr.verb == Verb::Patch {
            let kind = patch_kind(&call.content_type)?;
            let patch_body: Value = serde_json::from_slice(&call.body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            // Scale is small and has no lists, so a strategic patch merges like a merge patch.
            match kind {
                PatchKind::Json => {
                    strategicpatch::json_patch(&scale, &patch_body).map_err(patch_error)?
                }
                PatchKind::Merge | PatchKind::Strategic | PatchKind::Apply => {
                    strategicpatch::merge_patch(&scale, &patch_body)
                }
            }
        } else {
            call.body_object()?
        };
        let replicas = requested
            .pointer("/spec/replicas")
            .cloned()
            .unwrap_or(json!(0));
        let Some(replicas) = replicas.as_i64().filter(|r| *r <= i32::MAX as i64) else {
            return Err(ApiError::bad_request(format!(
                "Scale in version \"v1\" cannot be handled as a Scale: invalid spec.replicas {replicas}"
            )));
        };
        if replicas < 0 {
            return Err(ApiError::invalid(
                "autoscaling",
                "Scale",
                call.name(),
                &[apimachinery::FieldError::invalid(
                    "spec.replicas",
                    replicas,
                    "must be greater than or equal to 0",
                )],
            ));
        }
        let precondition = match requested
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
        {
            Some(rv) if !rv.is_empty() => Some(parse_rv(rv)?),
            _ => Some(cur.rv),
        };
        let mut new = cur_v.clone();
        new["spec"]["replicas"] = json!(replicas);
        match update_object(
            call.state,
            info,
            &key_,
            &cur,
            new,
            Write {
                mode: Mode::Main,
                precondition,
                dry_run,
            },
        )
        .await
        {
            Ok(Some(stored)) => {
                let v = object::parse(&stored);
                return Ok(json_response(StatusCode::OK, &scale_of(info, &v)));
            }
            Ok(None) => return Err(call.not_found()),
            Err(e) if e.reason == "Conflict" && call.rr.verb == Verb::Patch => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::conflict(
        info.group,
        info.plural,
        call.name(),
        CONFLICT_MODIFIED,
    ))
}

/// `POST pods/<name>/binding`: the scheduler's way of assigning a node.
async fn bind(call: &mut Call<'_>) -> Result<Response, ApiError> {
    let info = call.info();
    let body = call.body_object()?;
    let node = body
        .pointer("/target/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if node.is_empty() {
        return Err(ApiError::invalid(
            "",
            "Binding",
            call.name(),
            &[apimachinery::FieldError::required("target.name", "")],
        ));
    }
    let key_ = call.key();
    for _ in 0..8 {
        let cur = call.current()?;
        let v = object::parse(&cur.value);
        if object::is_deleting(&v) {
            return Err(ApiError::conflict(
                "",
                "pods/binding",
                call.name(),
                &format!(
                    "pod {} is being deleted, cannot be assigned to a host",
                    call.name()
                ),
            ));
        }
        if let Some(existing) = v
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            return Err(ApiError::conflict(
                "",
                "pods/binding",
                call.name(),
                &format!(
                    "pod {} is already assigned to node \"{existing}\"",
                    call.name()
                ),
            ));
        }
        let mut new = v.clone();
        new["spec"]["nodeName"] = json!(node);
        let now = object::timestamp(object::now());
        let conditions = new["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut conditions: Vec<Value> = conditions
            .into_iter()
            .filter(|c| c["type"] != "PodScheduled")
            .collect();
        conditions.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now}));
        new["status"]["conditions"] = Value::Array(conditions);
        match call.state.store.update(&key_, Some(cur.rv), new).await {
            Ok(_) => {
                return Ok(json_response(
                    StatusCode::CREATED,
                    &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
                ));
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(store_error(info, call.name(), e)),
        }
    }
    Err(ApiError::conflict(
        "",
        "pods/binding",
        call.name(),
        CONFLICT_MODIFIED,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_found_by_path() {
        let input = json!({"spec": {"replicas": 1, "bogus": {"x": 1}, "template": {"spec": {"containers": [{"name": "a", "imagePullPolice": "x"}]}}}, "extra": null});
        let normalized =
            json!({"spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "a"}]}}}});
        let mut out = Vec::new();
        unknown_fields(&input, &normalized, "", &mut out);
        assert_eq!(
            out,
            vec![
                "spec.bogus",
                "spec.template.spec.containers[0].imagePullPolice"
            ]
        );
    }

    #[test]
    fn continue_tokens_round_trip_and_reject_garbage() {
        let t = encode_continue(42, "/registry/core/pods/default/x");
        assert_eq!(
            decode_continue(&t).unwrap(),
            (42, "/registry/core/pods/default/x".to_string())
        );
        assert_eq!(decode_continue("not-a-token").unwrap_err().code, 400);
    }

    #[test]
    fn a_kind_or_api_version_that_is_not_a_string_is_refused() {
        for body in [
            r#"{"apiVersion":"v1","kind":["Service"]}"#,
            r#"{"apiVersion":1,"kind":"Service"}"#,
            r#"{"kind":{"a":1}}"#,
        ] {
            let e = decode_body("application/json", body.as_bytes(), "Service").unwrap_err();
            assert_eq!(e.code, 400, "{body}");
            assert!(
                e.message.contains("couldn't get version/kind"),
                "{}",
                e.message
            );
        }
        assert!(decode_body("application/json", br#"{"kind":null}"#, "Service").is_ok());
    }
}
