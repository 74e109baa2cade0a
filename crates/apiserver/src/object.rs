//! Small helpers for Kubernetes objects held as JSON: metadata access, timestamps, uids and
//! storage keys. Kept here so handlers read as what they do.

use crate::registry::ResourceInfo;
use serde_json::{Map, Value};

pub fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

/// RFC 3339 at whole seconds, the form Kubernetes stores `metav1.Time` in.
pub fn timestamp(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn new_uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `/registry/<group>/<plural>/<namespace>/<name>`, `core` standing for the empty group.
pub fn key(info: &ResourceInfo, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) if info.namespaced => format!("{}{ns}/{name}", collection_prefix(info)),
        _ => format!("{}{name}", collection_prefix(info)),
    }
}

/// Prefix of every key of the resource, or of those in one namespace.
pub fn prefix(info: &ResourceInfo, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if info.namespaced => format!("{}{ns}/", collection_prefix(info)),
        _ => collection_prefix(info),
    }
}

fn collection_prefix(info: &ResourceInfo) -> String {
    let group = if info.group.is_empty() {
        "core"
    } else {
        info.group
    };
    format!("/registry/{group}/{}/", info.plural)
}

/// `deployments.apps`, or `pods` for the core group.
pub fn qualified(info: &ResourceInfo) -> String {
    apimachinery::errors::qualified_resource(info.group, info.plural)
}

pub fn metadata(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata")?.as_object()
}

/// `metadata`, created if absent or not an object.
pub fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = Value::Object(Map::new());
    }
    obj["metadata"]
        .as_object_mut()
        .expect("just made an object")
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    metadata(obj)?.get(field)?.as_str()
}

pub fn name(obj: &Value) -> &str {
    meta_str(obj, "name").unwrap_or("")
}

pub fn namespace(obj: &Value) -> Option<&str> {
    meta_str(obj, "namespace")
}

pub fn uid(obj: &Value) -> &str {
    meta_str(obj, "uid").unwrap_or("")
}

pub fn labels(obj: &Value) -> Option<&Map<String, Value>> {
    metadata(obj)?.get("labels")?.as_object()
}

pub fn finalizers(obj: &Value) -> Vec<String> {
    metadata(obj)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub fn set_finalizers(obj: &mut Value, finalizers: &[String]) {
    let m = metadata_mut(obj);
    if finalizers.is_empty() {
        m.remove("finalizers");
    } else {
        m.insert("finalizers".into(), Value::from(finalizers.to_vec()));
    }
}

pub fn is_deleting(obj: &Value) -> bool {
    metadata(obj)
        .and_then(|m| m.get("deletionTimestamp"))
        .is_some_and(|t| !t.is_null())
}

/// The `(uid, kind, name)` of each owner reference.
pub fn owner_refs(obj: &Value) -> Vec<(String, String, String)> {
    metadata(obj)
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter_map(|r| {
                    Some((
                        r.get("uid")?.as_str()?.to_string(),
                        r.get("kind")?.as_str()?.to_string(),
                        r.get("name")?.as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn parse(bytes: &[u8]) -> Value {
    // Stored bytes were serialised by us; a parse failure would mean a corrupt store.
    serde_json::from_slice(bytes).unwrap_or(Value::Null)
}

/// Only the `metadata` of stored bytes, as `{"metadata": ...}`, without building the rest of the
/// object: what the garbage collector reads of every write in the store. `metadata` is exactly
/// what [`parse`] gives there; bytes that are not a JSON object read as `null`, as in [`parse`].
pub fn parse_metadata(bytes: &[u8]) -> Value {
    /// Members other than `metadata` are skipped without allocating.
    #[derive(serde::Deserialize)]
    struct MetadataOnly {
        /// `Some(Null)` for `"metadata": null`, as a full parse has it.
        #[serde(default, deserialize_with = "present")]
        metadata: Option<Value>,
    }
    fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
        <Value as serde::Deserialize>::deserialize(d).map(Some)
    }
    let is_object = bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{');
    let metadata = match serde_json::from_slice::<MetadataOnly>(bytes) {
        Ok(only) if is_object => only.metadata,
        // Not an object, invalid, or a repeated `metadata` key (which serde's derive rejects
        // and a full parse resolves): the slow way.
        _ => match parse(bytes) {
            Value::Object(mut members) => members.remove("metadata"),
            _ => return Value::Null,
        },
    };
    let mut members = Map::new();
    if let Some(metadata) = metadata {
        members.insert("metadata".into(), metadata);
    }
    Value::Object(members)
}

/// The object without the fields that change on every write, for "did anything change?".
pub fn without_volatile(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry;

    #[test]
    fn keys_separate_namespaces_and_groups() {
        let pods = registry::find("", "v1", "pods").unwrap();
        assert_eq!(
            key(pods, Some("default"), "x"),
            "/registry/core/pods/default/x"
        );
        assert_eq!(
            prefix(pods, Some("default")),
            "/registry/core/pods/default/"
        );
        assert_eq!(prefix(pods, None), "/registry/core/pods/");
        let nodes = registry::find("", "v1", "nodes").unwrap();
        assert_eq!(
            key(nodes, Some("ignored"), "kube-1"),
            "/registry/core/nodes/kube-1"
        );
        let deploy = registry::find("apps", "v1", "deployments").unwrap();
        assert_eq!(
            key(deploy, Some("a"), "b"),
            "/registry/apps/deployments/a/b"
        );
    }

    #[test]
    fn parse_metadata_reads_metadata_like_a_full_parse() {
        for text in [
            r#"{"kind":"Pod","metadata":{"name":"a","uid":"u","ownerReferences":[{"uid":"o","kind":"ReplicaSet","name":"r"}],"deletionTimestamp":"2026-01-01T00:00:00Z","finalizers":["f"]},"spec":{"containers":[{"name":"c"}]}}"#,
            r#"{"spec":{},"metadata":null}"#,
            r#"{"spec":{}}"#,
            r#"{"metadata":{"name":"first"},"metadata":{"name":"second"}}"#,
            r#"  {"metadata":{"name":"é"},"x":[1,2.5,{"y":null}]}"#,
        ] {
            let full = parse(text.as_bytes());
            let only = parse_metadata(text.as_bytes());
            assert_eq!(only.get("metadata"), full.get("metadata"), "{text}");
            assert_eq!(
                only.as_object().map(|m| m.len()),
                Some(usize::from(full.get("metadata").is_some())),
                "{text}"
            );
            assert_eq!(uid(&only), uid(&full));
            assert_eq!(owner_refs(&only), owner_refs(&full));
            assert_eq!(is_deleting(&only), is_deleting(&full));
            assert_eq!(finalizers(&only), finalizers(&full));
        }
        for text in [
            "",
            "[{\"metadata\":{\"uid\":\"u\"}}]",
            "5",
            "{\"metadata\":",
        ] {
            assert_eq!(parse_metadata(text.as_bytes()), Value::Null, "{text}");
        }
    }

    #[test]
    fn timestamps_are_whole_seconds_utc() {
        let t: jiff::Timestamp = "2026-11-26T11:30:00.123456Z".parse().unwrap();
        assert_eq!(timestamp(t), "2026-11-26T11:30:00Z");
    }
}
