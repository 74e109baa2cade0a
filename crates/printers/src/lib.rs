//! Server-side printing: the `meta.k8s.io/v1` `Table` that kube-apiserver returns to `kubectl get`.
//!
//! `kubectl get` asks for `as=Table` and prints only what the Table says, so this crate owns the
//! column definitions of each resource and the cells of each object's row, matching kube-apiserver's
//! printers (`pkg/printers/internalversion/printers.go`) cell for cell, including the wide-only
//! (priority 1) columns the server always fills and kubectl shows only with `-o wide`.
//!
//! It is a pure function of its inputs: no I/O, no clock (the caller passes `now`), no HTTP. Objects
//! arrive as JSON as stored; absent fields read as the zero value or the API default, never a panic.
//! Resources without a printer here get the custom-resource default columns NAME and AGE.

mod apps;
mod coordination;
mod core;
mod discovery;
mod docs;
mod format;
mod json;
mod prune;

use jiff::Timestamp;
use prune::Keep;
use serde_json::{Map, Value, json};

pub use format::human_duration;

/// One `TableColumnDefinition`. kubectl upper-cases `name` for the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    /// The OpenAPI type of the cells: "string", "integer", "date", ... as upstream declares it
    /// (several upstream columns declare "string" but hold integers; kept as they are).
    pub kind: &'static str,
    /// "name" marks the column holding the object's name; "" otherwise.
    pub format: &'static str,
    pub description: String,
    /// 0: always shown; 1: shown by kubectl only with `-o wide`.
    pub priority: i32,
}

/// Which object accompanies each row: the `includeObject` query parameter of a Table request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// No object (`includeObject=None`).
    None,
    /// The object's metadata as a `PartialObjectMetadata` (what kubectl asks for; `--show-labels`
    /// reads the labels from it).
    #[default]
    Metadata,
    /// The whole object.
    Object,
}

type ColumnsFn = fn() -> Vec<Column>;
type CellsFn = fn(&Value, Timestamp) -> Vec<Value>;

/// How one resource is printed.
struct Printer {
    columns: ColumnsFn,
    cells: CellsFn,
}

fn printer(group: &str, resource: &str) -> Printer {
    let (columns, cells): (ColumnsFn, CellsFn) = match (group, resource) {
        ("", "pods") => (core::pod_columns, core::pod_cells),
        ("", "services") => (core::service_columns, core::service_cells),
        ("", "endpoints") => (core::endpoints_columns, core::endpoints_cells),
        ("", "nodes") => (core::node_columns, core::node_cells),
        ("", "namespaces") => (core::namespace_columns, core::namespace_cells),
        ("", "events") => (core::event_columns, core::event_cells),
        ("events.k8s.io", "events") => (core::event_columns, core::events_v1_cells),
        ("", "configmaps") => (core::config_map_columns, core::config_map_cells),
        ("", "secrets") => (core::secret_columns, core::secret_cells),
        ("", "serviceaccounts") => (core::service_account_columns, core::service_account_cells),
        ("apps", "deployments") => (apps::deployment_columns, apps::deployment_cells),
        ("apps", "replicasets") => (apps::replica_set_columns, apps::replica_set_cells),
        ("apps", "daemonsets") => (apps::daemon_set_columns, apps::daemon_set_cells),
        ("discovery.k8s.io", "endpointslices") => (
            discovery::endpoint_slice_columns,
            discovery::endpoint_slice_cells,
        ),
        ("coordination.k8s.io", "leases") => {
            (coordination::lease_columns, coordination::lease_cells)
        }
        _ => (default_columns, default_cells),
    };
    Printer { columns, cells }
}

/// The column definitions for `resource` in `group` ("" is the core group), wide ones included.
pub fn columns(group: &str, resource: &str) -> Vec<Column> {
    (printer(group, resource).columns)()
}

/// The cells of `obj`'s row, in the order of [`columns`] and as many.
pub fn row(group: &str, resource: &str, obj: &Value, now: Timestamp) -> Vec<Value> {
    (printer(group, resource).cells)(obj, now)
}

/// The whole `Table` for `objects` (one row each, in order).
///
/// `list_metadata` is the Table's `metadata` (a list's `resourceVersion` and `continue`, or a
/// single object's `resourceVersion`); `null` becomes `{}` as Go encodes an empty `ListMeta`.
pub fn table(
    group: &str,
    resource: &str,
    objects: &[Value],
    now: Timestamp,
    include: IncludeObject,
    list_metadata: Value,
) -> Value {
    build_table(
        group,
        resource,
        objects,
        now,
        include,
        list_metadata,
        Headers::Included,
    )
}

/// A `Table` without column definitions (`"columnDefinitions": null`), as the apiserver sends
/// for every watch event after the first: the client already has the headers.
pub fn table_without_headers(
    group: &str,
    resource: &str,
    objects: &[Value],
    now: Timestamp,
    include: IncludeObject,
    list_metadata: Value,
) -> Value {
    build_table(
        group,
        resource,
        objects,
        now,
        include,
        list_metadata,
        Headers::Omitted,
    )
}

/// Whether a Table carries its column definitions (`TableOptions.noHeaders` upstream).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Headers {
    Included,
    Omitted,
}

fn build_table(
    group: &str,
    resource: &str,
    objects: &[Value],
    now: Timestamp,
    include: IncludeObject,
    list_metadata: Value,
    headers: Headers,
) -> Value {
    let printer = printer(group, resource);
    let column_definitions = match headers {
        Headers::Omitted => Value::Null,
        Headers::Included => (printer.columns)()
            .into_iter()
            .map(|column| {
                json!({
                    "name": column.name,
                    "type": column.kind,
                    "format": column.format,
                    "description": column.description,
                    "priority": column.priority,
                })
            })
            .collect(),
    };
    let rows = build_rows(&printer, group, resource, objects, now, include);
    let metadata = if list_metadata.is_null() {
        json!({})
    } else {
        list_metadata
    };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": column_definitions,
        "rows": rows,
    })
}

/// One row per object, each with the object as `include` asks.
fn build_rows(
    printer: &Printer,
    group: &str,
    resource: &str,
    objects: &[Value],
    now: Timestamp,
    include: IncludeObject,
) -> Value {
    objects
        .iter()
        .map(|obj| {
            let mut row = row_without_object(printer, group, resource, obj, now);
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    let metadata = json::at(obj, &["metadata"]).cloned();
                    row.insert("object".into(), partial_object_metadata(metadata));
                }
                IncludeObject::Object => {
                    row.insert("object".into(), obj.clone());
                }
            }
            Value::Object(row)
        })
        .collect()
}

/// A row's cells and conditions: everything but its object.
fn row_without_object(
    printer: &Printer,
    group: &str,
    resource: &str,
    obj: &Value,
    now: Timestamp,
) -> Map<String, Value> {
    let mut row = Map::new();
    row.insert("cells".into(), Value::Array((printer.cells)(obj, now)));
    if let Some(conditions) = row_conditions(group, resource, obj) {
        row.insert("conditions".into(), conditions);
    }
    row
}

/// The `PartialObjectMetadata` the apiserver puts in a row for `includeObject=Metadata`, given
/// the object's `metadata` (`None` when it has none).
fn partial_object_metadata(metadata: Option<Value>) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata.unwrap_or_else(|| json!({})),
    })
}

/// The encoded `Table` of stored objects: exactly the bytes of `serde_json::to_vec` of
/// [`table`] over the parsed `objects` (an object that is not valid JSON is printed as `null`,
/// as a failed parse would give), built one row at a time.
///
/// This is the path of a list: `kubectl get pods` over 10,000 pods. Building the whole Table as
/// a `Value` first kept every parsed pod alive at once and cost most of the request's CPU in
/// parsing, cloning and dropping JSON trees. Here each object is parsed only as far as its row
/// reads (see [`prune`]), its row is encoded straight into the output, and the parse is dropped
/// before the next object. `now` is one instant for the whole list.
pub fn write_table<'a>(
    group: &str,
    resource: &str,
    objects: impl IntoIterator<Item = &'a [u8]>,
    now: Timestamp,
    include: IncludeObject,
    list_metadata: Value,
) -> Vec<u8> {
    let printer = printer(group, resource);
    let envelope = build_table(
        group,
        resource,
        &[],
        now,
        include,
        list_metadata,
        Headers::Included,
    );
    let mut out = serde_json::to_vec(&envelope).unwrap_or_default();
    // `rows` is the envelope's last member: open it again and write the rows into it.
    const EMPTY_ROWS_END: &[u8] = b"\"rows\":[]}";
    if !out.ends_with(EMPTY_ROWS_END) {
        // Not reachable with `build_table`'s envelope; answer the slow way rather than wrongly.
        let parsed: Vec<Value> = objects.into_iter().map(parse_or_null).collect();
        let Value::Object(mut envelope) = envelope else {
            return out;
        };
        envelope.insert(
            "rows".into(),
            build_rows(&printer, group, resource, &parsed, now, include),
        );
        return serde_json::to_vec(&envelope).unwrap_or_default();
    }
    out.truncate(out.len() - 2);
    let keep = match include {
        IncludeObject::Object => Keep::All,
        IncludeObject::None | IncludeObject::Metadata => row_reads(group, resource),
    };
    for (index, bytes) in objects.into_iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        let mut obj = prune::parse_pruned(bytes, keep).unwrap_or(Value::Null);
        let mut row = row_without_object(&printer, group, resource, &obj, now);
        match include {
            IncludeObject::None => {}
            IncludeObject::Metadata => {
                let metadata = obj
                    .get_mut("metadata")
                    .map(Value::take)
                    .filter(|m| !m.is_null());
                row.insert("object".into(), partial_object_metadata(metadata));
            }
            IncludeObject::Object => {
                row.insert("object".into(), obj);
            }
        }
        // Encoding a `Value` into a Vec cannot fail: its keys are strings.
        let _ = serde_json::to_writer(&mut out, &row);
    }
    out.extend_from_slice(b"]}");
    out
}

fn parse_or_null(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or(Value::Null)
}

/// What a resource's row reads of an object (its cells, its conditions, and `metadata` for the
/// row's `PartialObjectMetadata`); everything for resources without a narrower mask.
fn row_reads(group: &str, resource: &str) -> Keep {
    match (group, resource) {
        ("", "pods") => core::POD_ROW_READS,
        _ => Keep::All,
    }
}

/// Row conditions: upstream marks finished pods `Completed` so clients can tell them apart.
fn row_conditions(group: &str, resource: &str, obj: &Value) -> Option<Value> {
    match (group, resource) {
        ("", "pods") => core::pod_row_conditions(obj),
        _ => None,
    }
}

/// The NAME column every printer starts with (events put it last).
pub(crate) fn name_column() -> Column {
    Column {
        name: "Name",
        kind: "string",
        format: "name",
        description: docs::META_NAME.to_string(),
        priority: 0,
    }
}

/// The AGE column of built-in printers: a string cell rendered by `translateTimestampSince`.
pub(crate) fn age_column() -> Column {
    column("Age", "string", docs::META_CREATION_TIMESTAMP)
}

/// A normal (priority 0) column without format.
pub(crate) fn column(name: &'static str, kind: &'static str, description: &str) -> Column {
    Column {
        name,
        kind,
        format: "",
        description: description.to_string(),
        priority: 0,
    }
}

/// A wide-only (priority 1) column.
pub(crate) fn wide(name: &'static str, kind: &'static str, description: &str) -> Column {
    Column {
        priority: 1,
        ..column(name, kind, description)
    }
}

/// The name cell: `metadata.name`.
pub(crate) fn name_cell(obj: &Value) -> Value {
    Value::from(json::str_at(obj, &["metadata", "name"]))
}

/// Columns of a custom resource without `additionalPrinterColumns`: apiextensions defaults them to
/// one "Age" column of type date over `.metadata.creationTimestamp`.
fn default_columns() -> Vec<Column> {
    vec![name_column(), column("Age", "date", docs::CRD_AGE)]
}

/// A date cell as the custom-resource convertor renders it: null when the path finds nothing,
/// "<invalid>" when it is not a timestamp, otherwise the age.
fn default_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let age = match json::at(obj, &["metadata", "creationTimestamp"]) {
        None => Value::Null,
        Some(Value::String(_)) => match format::time_at(obj, &["metadata", "creationTimestamp"]) {
            Some(created) => Value::from(human_duration(now.duration_since(created))),
            None => Value::from(unparsable_or_zero(obj)),
        },
        Some(_) => Value::Null,
    };
    vec![name_cell(obj), age]
}

/// Go's zero time parses fine and prints "<unknown>"; anything else unparsable is "<invalid>".
fn unparsable_or_zero(obj: &Value) -> &'static str {
    let text = json::str_at(obj, &["metadata", "creationTimestamp"]);
    if text.parse::<Timestamp>().is_ok() {
        "<unknown>"
    } else {
        "<invalid>"
    }
}
