//! The three PATCH bodies kube-apiserver accepts, applied to Kubernetes objects as JSON:
//!
//! - [`strategic_merge`]: `application/strategic-merge-patch+json`, what `kubectl apply`
//!   (client-side), `kubectl patch` and most clients send. Lists merge by key where the Go types
//!   say so, and the patch may carry directives (`$patch`, `$setElementOrder/…`,
//!   `$deleteFromPrimitiveList/…`, `$retainKeys`). The behaviour follows upstream
//!   `k8s.io/apimachinery/pkg/util/strategicpatch` as the API server uses it
//!   (`StrategicMergeMapPatch`), including its list ordering rules.
//! - [`merge_patch`]: `application/merge-patch+json`, RFC 7386 (`kubectl scale`, custom resources).
//! - [`json_patch`]: `application/json-patch+json`, RFC 6902.
//!
//! It also owns [`patch_tags`], the table of `patchStrategy`/`patchMergeKey` struct tags of the
//! built-in types, because k8s-openapi's schemas lack them.
//!
//! Pure: no I/O, no HTTP, no knowledge of which resource is being patched beyond the
//! [`PatchSchema`] it is handed. It never panics on any input; malformed patches are
//! [`PatchError`]s, which the API server maps to 400/422.

mod error;
mod schema;
mod strategic;
mod tags;

pub use error::PatchError;
pub use schema::TagOnlySchema;
pub use strategic::strategic_merge;

use serde_json::{Map, Value};

/// How a list field of a built-in type merges, from the `patchStrategy` / `patchMergeKey`
/// struct tags of the Kubernetes API types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PatchTag {
    /// OpenAPI definition name of the Go type, e.g. `io.k8s.api.core.v1.PodSpec`.
    pub definition: &'static str,
    /// JSON field name, e.g. `containers`.
    pub field: &'static str,
    /// `merge`, `retainKeys`, or `merge,retainKeys`.
    pub strategy: &'static str,
    /// Merge key for lists of objects (`name`), `None` for lists of scalars.
    pub merge_key: Option<&'static str>,
}

/// All patch tags of the built-in types kubelab serves.
pub fn patch_tags() -> &'static [PatchTag] {
    tags::PATCH_TAGS
}

/// Type lookup the strategic merge engine walks: which definition a field's value has, and
/// how it merges.
pub trait PatchSchema {
    /// For field `field` of definition `definition`: the tag (if any) and the definition name of
    /// the field's value (for arrays: of the items; for maps with object values: of the values),
    /// if it is an object type. Unknown fields answer `FieldInfo::default()`, which merges maps
    /// and replaces lists.
    fn field(&self, definition: &str, field: &str) -> FieldInfo;
}

/// What the engine needs to know about one field.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldInfo {
    /// `"merge"`, `"retainKeys"`, `"merge,retainKeys"` or `"replace"`; `None` means maps merge
    /// and lists are replaced.
    pub strategy: Option<&'static str>,
    /// The key list items are matched by (`name`, `containerPort`, ...); `None` for lists of
    /// scalars or untagged lists.
    pub merge_key: Option<&'static str>,
    /// Definition name of the value (of the items for arrays, of the values for maps).
    pub child: Option<String>,
    /// True for `map[string]X` (OpenAPI `additionalProperties`): keys are data, not fields.
    pub is_map: bool,
}

/// Applies a JSON merge patch (RFC 7386): objects merge recursively, `null` deletes a key,
/// anything else (including arrays) replaces. A non-object patch replaces the whole document.
pub fn merge_patch(original: &Value, patch: &Value) -> Value {
    let mut target = original.clone();
    apply_merge_patch(&mut target, patch);
    target
}

fn apply_merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target_fields) = target else {
        return;
    };
    for (key, value) in patch_fields {
        if value.is_null() {
            // shift_remove keeps the remaining keys in their original order.
            target_fields.shift_remove(key);
        } else {
            apply_merge_patch(
                target_fields.entry(key.clone()).or_insert(Value::Null),
                value,
            );
        }
    }
}

/// Applies a JSON patch (RFC 6902): `add`, `remove`, `replace`, `move`, `copy` and `test`.
/// All operations apply or none do.
pub fn json_patch(original: &Value, patch: &Value) -> Result<Value, PatchError> {
    let operations: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(PatchError::InvalidJsonPatch)?;
    let mut document = original.clone();
    // `patch_unsafe` on a scratch copy gives all-or-nothing without the crate's undo path,
    // which can panic.
    json_patch::patch_unsafe(&mut document, &operations).map_err(PatchError::JsonPatchFailed)?;
    Ok(document)
}
