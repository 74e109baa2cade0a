//! Lenient reads from an object's JSON.
//!
//! Upstream printers work on typed, defaulted Go structs where an absent field is its zero value.
//! These helpers give the same view of an arbitrary `serde_json::Value`: a missing key, a `null` or
//! a value of the wrong type reads as the zero value, so no input can make a printer panic.

use serde_json::{Map, Value};

/// The value at `path`, or `None` when any step is missing, not an object, or `null`.
pub(crate) fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut current = value;
    for key in path {
        current = current.as_object()?.get(*key)?;
    }
    (!current.is_null()).then_some(current)
}

/// The string at `path`; `""` (Go's zero string) when absent or not a string.
pub(crate) fn str_at<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    at(value, path).and_then(Value::as_str).unwrap_or("")
}

/// The integer at `path`, if there is one. Floats are truncated like a Go int conversion.
pub(crate) fn opt_int_at(value: &Value, path: &[&str]) -> Option<i64> {
    let number = at(value, path)?;
    number
        .as_i64()
        .or_else(|| {
            number
                .as_u64()
                .map(|n| i64::try_from(n).unwrap_or(i64::MAX))
        })
        .or_else(|| number.as_f64().map(|f| f as i64))
}

/// The integer at `path`; `0` (Go's zero int) when absent.
pub(crate) fn int_at(value: &Value, path: &[&str]) -> i64 {
    opt_int_at(value, path).unwrap_or(0)
}

/// The boolean at `path`; `false` when absent.
pub(crate) fn bool_at(value: &Value, path: &[&str]) -> bool {
    at(value, path).and_then(Value::as_bool).unwrap_or(false)
}

/// The array at `path`; empty when absent.
pub(crate) fn list_at<'a>(value: &'a Value, path: &[&str]) -> &'a [Value] {
    at(value, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The object at `path`, if there is one. A Go pointer field such as `state.terminated` is
/// "set" exactly when this returns `Some`.
pub(crate) fn map_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Map<String, Value>> {
    at(value, path).and_then(Value::as_object)
}

/// Number of entries of the map or array at `path` (Go's `len` of a map or slice).
pub(crate) fn len_at(value: &Value, path: &[&str]) -> i64 {
    let len = match at(value, path) {
        Some(Value::Object(map)) => map.len(),
        Some(Value::Array(items)) => items.len(),
        _ => 0,
    };
    i64::try_from(len).unwrap_or(i64::MAX)
}
