//! Printer of discovery.k8s.io EndpointSlices.

use jiff::Timestamp;
use serde_json::Value;

use crate::docs;
use crate::format::age;
use crate::json::{at, list_at, str_at};
use crate::{Column, age_column, column, name_cell, name_column};

/// How many ports or addresses a cell lists before "+ N more...".
const LISTED_AT_MOST: usize = 3;

pub(crate) fn endpoint_slice_columns() -> Vec<Column> {
    vec![
        name_column(),
        column("AddressType", "string", docs::ENDPOINT_SLICE_ADDRESS_TYPE),
        column("Ports", "string", docs::ENDPOINT_SLICE_PORTS),
        column("Endpoints", "string", docs::ENDPOINT_SLICE_ENDPOINTS),
        age_column(),
    ]
}

pub(crate) fn endpoint_slice_cells(slice: &Value, now: Timestamp) -> Vec<Value> {
    // A port without number is "all ports" ("*") unless it is named.
    let ports = list_at(slice, &["ports"]).iter().map(|port| {
        if let Some(number) = at(port, &["port"]).and_then(Value::as_i64) {
            number.to_string()
        } else if let Some(name) = at(port, &["name"]).and_then(Value::as_str) {
            name.to_string()
        } else {
            "*".to_string()
        }
    });
    let addresses = list_at(slice, &["endpoints"])
        .iter()
        .flat_map(|endpoint| list_at(endpoint, &["addresses"]))
        .map(|address| address.as_str().unwrap_or("").to_string());
    vec![
        name_cell(slice),
        Value::from(str_at(slice, &["addressType"])),
        Value::from(list_with_more(ports)),
        Value::from(list_with_more(addresses)),
        Value::from(age(slice, now)),
    ]
}

/// Upstream `listWithMoreString`: the first three joined by ",", then " + N more...";
/// "<unset>" when there is nothing.
fn list_with_more(items: impl Iterator<Item = String>) -> String {
    let mut listed = Vec::new();
    let mut count = 0usize;
    for item in items {
        if listed.len() < LISTED_AT_MOST {
            listed.push(item);
        }
        count += 1;
    }
    let joined = listed.join(",");
    if count > LISTED_AT_MOST {
        format!("{joined} + {} more...", count - LISTED_AT_MOST)
    } else if joined.is_empty() {
        "<unset>".to_string()
    } else {
        joined
    }
}
