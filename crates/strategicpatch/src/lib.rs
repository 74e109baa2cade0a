//! Strategic merge patch, JSON merge patch (RFC 7386) and JSON patch (RFC 6902) applied to
//! Kubernetes objects as JSON. Pure: no I/O, no knowledge of HTTP.
//!
//! INTERFACE STUB: signatures are fixed; bodies are being written.

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
    &[]
}
