//! Printer of coordination.k8s.io Leases.

use jiff::Timestamp;
use serde_json::Value;

use crate::docs;
use crate::format::age;
use crate::json::str_at;
use crate::{Column, age_column, column, name_cell, name_column};

pub(crate) fn lease_columns() -> Vec<Column> {
    vec![
        name_column(),
        column("Holder", "string", docs::LEASE_HOLDER_IDENTITY),
        age_column(),
    ]
}

pub(crate) fn lease_cells(lease: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name_cell(lease),
        Value::from(str_at(lease, &["spec", "holderIdentity"])),
        Value::from(age(lease, now)),
    ]
}
