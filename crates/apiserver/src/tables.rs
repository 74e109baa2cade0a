//! Server-side printing: whether a request wants a `Table`, and building it through the pure
//! `printers` crate.

use crate::registry::ResourceInfo;
use crate::rest::Query;
use printers::IncludeObject;
use serde_json::Value;

/// `Some(include)` when the Accept header asks for a meta.k8s.io Table (v1 or v1beta1), as
/// `kubectl get` does; `includeObject` chooses what each row carries.
pub fn wants_table(accept: &str, query: &Query) -> Option<IncludeObject> {
    let table = accept.split(',').any(|part| {
        let params: Vec<&str> = part.split(';').map(str::trim).collect();
        params.contains(&"as=Table") && params.contains(&"g=meta.k8s.io")
    });
    if !table {
        return None;
    }
    Some(match query.get("includeObject") {
        Some("None") => IncludeObject::None,
        Some("Object") => IncludeObject::Object,
        _ => IncludeObject::Metadata,
    })
}

pub fn table(
    info: &ResourceInfo,
    objects: &[Value],
    include: IncludeObject,
    list_metadata: Value,
) -> Value {
    printers::table(
        info.group,
        info.plural,
        objects,
        jiff::Timestamp::now(),
        include,
        list_metadata,
    )
}

/// A Table without column definitions: every watch event after the first.
pub fn table_without_headers(
    info: &ResourceInfo,
    objects: &[Value],
    include: IncludeObject,
    list_metadata: Value,
) -> Value {
    printers::table_without_headers(
        info.group,
        info.plural,
        objects,
        jiff::Timestamp::now(),
        include,
        list_metadata,
    )
}

/// The encoded Table of a list's stored objects, built row by row from partial parses
/// ([`printers::write_table`]): the same bytes as encoding [`table`] over the parsed objects.
pub fn list_table<'a>(
    info: &ResourceInfo,
    objects: impl IntoIterator<Item = &'a [u8]>,
    include: IncludeObject,
    list_metadata: Value,
) -> Vec<u8> {
    printers::write_table(
        info.group,
        info.plural,
        objects,
        jiff::Timestamp::now(),
        include,
        list_metadata,
    )
}
