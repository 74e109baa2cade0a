//! Tolerant reads of `serde_json::Value` objects. The API server holds objects as JSON that a
//! separate decoding step type-checks; the functions here therefore treat a field of the wrong
//! type as absent instead of failing, so defaulting and validation never panic on odd input.

use serde_json::{Map, Value};

/// The string at `key`, if `v` is an object holding a string there.
pub(crate) fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// The string at `key`, or `""` (Go's zero value) when absent or not a string.
pub(crate) fn str_or_empty<'a>(v: &'a Value, key: &str) -> &'a str {
    str_at(v, key).unwrap_or("")
}

/// The integer at `key`, if it is a JSON integer that fits in an `i64`.
pub(crate) fn int_at(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(Value::as_i64)
}

/// The boolean at `key`, `false` when absent or not a boolean.
pub(crate) fn bool_at(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// The array at `key`, empty when absent or not an array.
pub(crate) fn array_at<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Follows object keys; `None` as soon as one is missing or not an object.
pub(crate) fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter()
        .try_fold(v, |cur, key| cur.as_object()?.get(*key))
}

/// A `map[string]string` field: `None` when absent or null (Go's nil map), otherwise the string
/// entries (entries of other types are skipped; decoding rejects them).
pub(crate) fn string_map(v: Option<&Value>) -> Option<Vec<(String, String)>> {
    let obj = v?.as_object()?;
    Some(
        obj.iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
            .collect(),
    )
}

/// The object at `key` inside `v`, created (replacing a non-object) when absent.
/// Returns `None` only when `v` itself is not an object.
pub(crate) fn object_entry<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Map<String, Value>> {
    let map = v.as_object_mut()?;
    let slot = map
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        return None;
    }
    slot.as_object_mut()
}

/// Sets `key` to `value` when the key is absent or null; the "only set absent fields" rule of
/// upstream's `SetDefaults_*`, where Go's zero value counts as absent.
pub(crate) fn set_default(map: &mut Map<String, Value>, key: &str, value: Value) {
    let absent = match map.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        _ => false,
    };
    if absent {
        map.insert(key.to_string(), value);
    }
}

/// `spec.ports[0]` style path building, mirroring `field.Path`.
pub(crate) fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

pub(crate) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

pub(crate) fn key(path: &str, k: &str) -> String {
    format!("{path}[{k}]")
}
