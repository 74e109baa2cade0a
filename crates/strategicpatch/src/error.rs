//! Errors of all three patch formats. Messages follow upstream's `mergepatch` / `strategicpatch`
//! wording where one exists, because clients (and people) grep for them.

/// Why a patch could not be applied. Every variant is the client's fault: the server answers
/// 400 BadRequest, or 422 Invalid when [`PatchError::is_unprocessable`] says so (kube-apiserver's
/// split in `interpretStrategicMergePatchError` and `applyJSPatch`).
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The original object or the strategic/merge patch is not a JSON object.
    #[error("invalid JSON document")]
    BadJsonDocument,
    /// A list item (or `$setElementOrder` entry) lacks the field the list merges by.
    #[error("map: {map} does not contain declared merge key: {merge_key}")]
    NoMergeKey { map: String, merge_key: String },
    /// A value has the wrong JSON type for what the patch or schema says it is.
    #[error("expected a {expected}, but received a {actual}")]
    BadArgType {
        expected: &'static str,
        actual: &'static str,
    },
    /// `$patch` with a value other than `replace`/`delete` (or `merge` inside a list).
    #[error("unknown patch type: {directive} in map: {map}")]
    UnknownPatchType { directive: String, map: String },
    /// A `$`-prefixed key that is not one of the directives kube-apiserver understands.
    #[error("unknown patch directive {directive:?}")]
    UnknownDirective { directive: String },
    /// `$patch: merge` inside a list, which upstream reserves and rejects.
    #[error("merging lists cannot yet be specified in the patch")]
    MergeDirectiveInList,
    /// A `$deleteFromPrimitiveList/...` key or value that is malformed.
    #[error("invalid patch format of primitive list")]
    BadPrimitiveListFormat,
    /// A `$retainKeys` list that is malformed, or a patch that sets a key the list omits.
    #[error("invalid patch format of retainKeys")]
    BadRetainKeysFormat,
    /// A `$setElementOrder/...` key or value that is malformed.
    #[error("invalid patch format of setElementOrder list")]
    BadSetElementOrderFormat,
    /// The patch list orders items differently from its `$setElementOrder` list.
    #[error("The order in patch list:\n{patch}\n doesn't match $setElementOrder list:\n{order}\n")]
    SetElementOrderMismatch { patch: String, order: String },
    /// A merging list whose items are themselves lists.
    #[error("lists of lists are not supported")]
    ListOfLists,
    /// A merging list whose items do not all have the same JSON type.
    #[error("list element types are not identical: {lists}")]
    MixedListElements { lists: String },
    /// The schema says a list of objects merges, but gives no merge key.
    #[error("cannot merge lists without merge key for {definition}")]
    MissingMergeKeyInSchema { definition: String },
    /// The schema carries a `patchStrategy` the engine does not know.
    #[error("unexpected patch strategy: {strategy}")]
    UnknownStrategy { strategy: String },
    /// The JSON patch document is not an array of valid RFC 6902 operations.
    #[error("invalid JSON patch: {0}")]
    InvalidJsonPatch(#[source] serde_json::Error),
    /// An RFC 6902 operation failed (missing path, failed `test`, ...).
    #[error("{0}")]
    JsonPatchFailed(#[source] json_patch::PatchError),
}

impl PatchError {
    /// True when kube-apiserver answers 422 (the patch is well-formed but cannot apply to this
    /// object); false means 400 BadRequest.
    pub fn is_unprocessable(&self) -> bool {
        matches!(
            self,
            PatchError::JsonPatchFailed(_) | PatchError::ListOfLists
        )
    }
}

/// Go's name for the JSON type of `value`, as upstream's `ErrBadArgType` prints it.
pub(crate) fn go_type_name(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "<nil>",
        serde_json::Value::Bool(_) => "bool",
        serde_json::Value::Number(_) => "float64",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "[]interface {}",
        serde_json::Value::Object(_) => "map[string]interface {}",
    }
}
