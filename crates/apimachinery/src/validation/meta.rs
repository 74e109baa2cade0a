//! `ObjectMeta` rules shared by every kind (`k8s.io/apimachinery/pkg/api/validation` plus the
//! core finalizer check), and the label/annotation helpers other modules reuse.

use serde_json::Value;

use crate::access::{array_at, child, index, str_or_empty};
use crate::errors::FieldError;
use crate::names::{NameRule, is_qualified_name, is_valid_label_value};

/// Upstream's cap on the summed size of annotation keys and values.
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// `metav1validation.ValidateLabels`: errors point at the map, not the key.
pub(crate) fn validate_labels(labels: Option<&Value>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(map) = labels.and_then(Value::as_object) else {
        return errs;
    };
    for (k, v) in map {
        errs.extend(validate_label_name(k, path));
        if let Some(v) = v.as_str() {
            for msg in is_valid_label_value(v) {
                errs.push(FieldError::invalid(path, v, msg));
            }
        }
    }
    errs
}

pub(crate) fn validate_label_name(name: &str, path: &str) -> Vec<FieldError> {
    is_qualified_name(name)
        .into_iter()
        .map(|msg| FieldError::invalid(path, name, msg))
        .collect()
}

pub(crate) fn validate_annotations(annotations: Option<&Value>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(map) = annotations.and_then(Value::as_object) else {
        return errs;
    };
    let mut total = 0usize;
    for (k, v) in map {
        for msg in is_qualified_name(&k.to_lowercase()) {
            errs.push(FieldError::invalid(path, k.as_str(), msg));
        }
        total = total
            .saturating_add(k.len())
            .saturating_add(v.as_str().map_or(0, str::len));
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
    errs
}

fn validate_owner_references(meta: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let path = child(path, "ownerReferences");
    for r in array_at(meta, "ownerReferences") {
        let api_version = str_or_empty(r, "apiVersion");
        let version = api_version.rsplit('/').next().unwrap_or("");
        if version.is_empty() || api_version.matches('/').count() > 1 {
            errs.push(FieldError::invalid(
                child(&path, "apiVersion"),
                api_version,
                "version must not be empty",
            ));
        }
        for (field, detail) in [
            ("kind", "must not be empty"),
            ("name", "must not be empty"),
            ("uid", "must not be empty"),
        ] {
            let value = str_or_empty(r, field);
            if value.is_empty() {
                errs.push(FieldError::invalid(child(&path, field), value, detail));
            }
        }
    }
    errs
}

/// Finalizers: generic qualified-name check on the list, then core's per-item check that
/// unprefixed names are standard ones.
fn validate_finalizers(meta: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let list_path = child(path, "finalizers");
    let finalizers: Vec<&str> = array_at(meta, "finalizers")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for f in &finalizers {
        errs.extend(
            is_qualified_name(f)
                .into_iter()
                .map(|m| FieldError::invalid(&list_path, *f, m)),
        );
    }
    if finalizers.contains(&"orphan") && finalizers.contains(&"foregroundDeletion") {
        let rendered = crate::gosyntax::string_slice(meta.get("finalizers"));
        errs.push(
            FieldError::invalid(
                &list_path,
                meta.get("finalizers").cloned().unwrap_or(Value::Null),
                "finalizer orphan and foregroundDeletion cannot be both set",
            )
            .rendered_as(rendered),
        );
    }
    errs.extend(validate_kube_finalizers(&finalizers, &list_path));
    errs
}

/// Core's `validateKubeFinalizerName` over a list, errors indexed.
pub(crate) fn validate_kube_finalizers(finalizers: &[&str], list_path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, f) in finalizers.iter().enumerate() {
        let path = index(list_path, i);
        errs.extend(
            is_qualified_name(f)
                .into_iter()
                .map(|m| FieldError::invalid(&path, *f, m)),
        );
        if !f.contains('/') && !matches!(*f, "kubernetes" | "orphan" | "foregroundDeletion") {
            errs.push(FieldError::invalid(
                &path,
                *f,
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
    errs
}

/// `ValidateObjectMeta` on create: name or generateName, namespace presence, labels,
/// annotations, owner references, finalizers.
pub fn validate_object_meta(
    obj: &Value,
    namespaced: bool,
    rule: NameRule,
    path: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let empty = Value::Null;
    let meta = obj
        .get("metadata")
        .filter(|m| m.is_object())
        .unwrap_or(&empty);
    let generate_name = str_or_empty(meta, "generateName");
    if !generate_name.is_empty() {
        for msg in rule.check(generate_name, true) {
            errs.push(FieldError::invalid(
                child(path, "generateName"),
                generate_name,
                msg,
            ));
        }
    }
    let name = str_or_empty(meta, "name");
    if name.is_empty() {
        errs.push(FieldError::required(
            child(path, "name"),
            "name or generateName is required",
        ));
    } else {
        for msg in rule.check(name, false) {
            errs.push(FieldError::invalid(child(path, "name"), name, msg));
        }
    }
    let namespace = str_or_empty(meta, "namespace");
    if namespaced {
        if namespace.is_empty() {
            errs.push(FieldError::required(child(path, "namespace"), ""));
        } else {
            for msg in NameRule::Dns1123Label.check(namespace, false) {
                errs.push(FieldError::invalid(
                    child(path, "namespace"),
                    namespace,
                    msg,
                ));
            }
        }
    } else if !namespace.is_empty() {
        errs.push(FieldError::forbidden(
            child(path, "namespace"),
            "not allowed on this type",
        ));
    }
    if let Some(generation) = meta.get("generation").and_then(Value::as_i64)
        && generation < 0
    {
        errs.push(FieldError::invalid(
            child(path, "generation"),
            generation,
            "must be greater than or equal to 0",
        ));
    }
    errs.extend(validate_labels(meta.get("labels"), &child(path, "labels")));
    errs.extend(validate_annotations(
        meta.get("annotations"),
        &child(path, "annotations"),
    ));
    errs.extend(validate_owner_references(meta, path));
    errs.extend(validate_finalizers(meta, path));
    errs
}

/// `ValidateObjectMetaUpdate`: identity fields are immutable, generation never decreases, and
/// the new labels/annotations/finalizers must themselves be valid. `resourceVersion` checks are
/// left to the handler, which owns optimistic concurrency.
pub fn validate_object_meta_update(new: &Value, old: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let empty = Value::Null;
    let new_meta = new
        .get("metadata")
        .filter(|m| m.is_object())
        .unwrap_or(&empty);
    let old_meta = old
        .get("metadata")
        .filter(|m| m.is_object())
        .unwrap_or(&empty);
    let new_generation = new_meta
        .get("generation")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let old_generation = old_meta
        .get("generation")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if new_generation < old_generation {
        errs.push(FieldError::invalid(
            child(path, "generation"),
            new_generation,
            "must not be decremented",
        ));
    }
    for field in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        let new_value = new_meta.get(field).filter(|v| !v.is_null() && *v != "");
        let old_value = old_meta.get(field).filter(|v| !v.is_null() && *v != "");
        if new_value != old_value {
            errs.push(FieldError::invalid(
                child(path, field),
                new_value.cloned().unwrap_or_else(|| empty_like(old_value)),
                "field is immutable",
            ));
        }
    }
    errs.extend(validate_labels(
        new_meta.get("labels"),
        &child(path, "labels"),
    ));
    errs.extend(validate_annotations(
        new_meta.get("annotations"),
        &child(path, "annotations"),
    ));
    errs.extend(validate_owner_references(new_meta, path));
    let finalizers: Vec<&str> = array_at(new_meta, "finalizers")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    errs.extend(validate_kube_finalizers(
        &finalizers,
        &child(path, "finalizers"),
    ));
    errs
}

/// Go's zero value of the kind of field `like` is: `""` for strings, `null` otherwise.
fn empty_like(like: Option<&Value>) -> Value {
    match like {
        Some(Value::String(_)) | None => Value::String(String::new()),
        _ => Value::Null,
    }
}

/// `ValidateImmutableField` for a JSON-valued field (`field is immutable`).
pub(crate) fn immutable(
    new: Option<&Value>,
    old: Option<&Value>,
    path: &str,
) -> Option<FieldError> {
    let norm = |v: Option<&Value>| v.filter(|v| !v.is_null()).cloned();
    if norm(new) == norm(old) {
        return None;
    }
    Some(FieldError::invalid(
        path,
        new.cloned().unwrap_or(Value::Null),
        "field is immutable",
    ))
}
