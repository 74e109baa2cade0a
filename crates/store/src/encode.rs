//! JSON encoding with a hole for `metadata.resourceVersion`.
//!
//! The revision of a write is only known inside the writer thread, after every earlier write of
//! the batch has been decided. Serializing a 3 KB object there would put serde on the critical
//! path of every caller in the batch, so callers serialize beforehand into a head and a tail around
//! the resourceVersion value, and the writer only concatenates `head + "<rv>" + tail`. The bytes are
//! exactly what `serde_json::to_vec` gives for the object with `metadata.resourceVersion` set to the
//! revision (the key keeps its place, or is appended at the end of `metadata`, as inserting into a
//! `preserve_order` map would do).
//!
//! This module knows nothing of Kubernetes beyond `metadata.resourceVersion`.

use crate::StoreError;
use bytes::{Bytes, BytesMut};
use serde_json::{Map, Value};
use std::ops::Range;

/// An object serialized around the place of its resourceVersion string.
#[derive(Debug)]
pub(crate) struct SplitJson {
    /// Everything up to and including `"resourceVersion":`.
    head: Vec<u8>,
    /// Everything after the resourceVersion value.
    tail: Vec<u8>,
}

/// A freshly encoded object and where its resourceVersion digits are, so that a later deletion can
/// rewrite the revision without parsing the object again.
#[derive(Debug, Clone)]
pub(crate) struct Encoded {
    pub(crate) bytes: Bytes,
    pub(crate) rv_digits: Range<usize>,
}

impl SplitJson {
    /// Splits `value`, which must be a JSON object whose `metadata`, if present, is an object.
    pub(crate) fn new(value: &Value) -> Result<SplitJson, StoreError> {
        let Value::Object(top) = value else {
            return Err(StoreError::InvalidObject(format!(
                "expected a JSON object, got {}",
                kind_name(value)
            )));
        };
        let mut out = Splitter {
            head: Vec::with_capacity(1024),
            tail: Vec::new(),
            split: false,
        };
        out.buf().push(b'{');
        let mut first = true;
        for (key, field) in top {
            out.comma(&mut first);
            out.key(key)?;
            if key == "metadata" {
                let Value::Object(metadata) = field else {
                    return Err(StoreError::InvalidObject(format!(
                        "metadata must be a JSON object, got {}",
                        kind_name(field)
                    )));
                };
                out.metadata(metadata)?;
            } else {
                out.value(field)?;
            }
        }
        if !out.split {
            out.comma(&mut first);
            out.key("metadata")?;
            out.metadata(&Map::new())?;
        }
        out.buf().push(b'}');
        Ok(SplitJson {
            head: out.head,
            tail: out.tail,
        })
    }

    /// The object with `metadata.resourceVersion` = `rv`.
    pub(crate) fn with_rv(&self, rv: u64) -> Encoded {
        let digits = rv.to_string();
        let mut bytes =
            BytesMut::with_capacity(self.head.len() + digits.len() + 2 + self.tail.len());
        bytes.extend_from_slice(&self.head);
        bytes.extend_from_slice(b"\"");
        let start = bytes.len();
        bytes.extend_from_slice(digits.as_bytes());
        let end = bytes.len();
        bytes.extend_from_slice(b"\"");
        bytes.extend_from_slice(&self.tail);
        Encoded {
            bytes: bytes.freeze(),
            rv_digits: start..end,
        }
    }

    /// Whether `stored` is byte for byte this object with resourceVersion `rv`, without allocating.
    /// Byte equality (not semantic equality) is what upstream GuaranteedUpdate compares as well.
    pub(crate) fn equals_with_rv(&self, stored: &[u8], rv: u64) -> bool {
        let digits = rv.to_string();
        let expected_len = self.head.len() + digits.len() + 2 + self.tail.len();
        if stored.len() != expected_len {
            return false;
        }
        let (head, rest) = stored.split_at(self.head.len());
        let (quoted, tail) = rest.split_at(digits.len() + 2);
        head == self.head.as_slice()
            && quoted.first() == Some(&b'"')
            && quoted.last() == Some(&b'"')
            && &quoted[1..quoted.len() - 1] == digits.as_bytes()
            && tail == self.tail.as_slice()
    }
}

/// `stored` with its resourceVersion replaced by `rv`. `rv_digits` is where the digits are when
/// this process encoded the bytes; objects loaded from a backend are parsed and re-encoded instead.
pub(crate) fn rewrite_rv(
    stored: &[u8],
    rv_digits: Option<&Range<usize>>,
    rv: u64,
) -> Result<Encoded, StoreError> {
    if let Some(range) = rv_digits
        && range.start <= range.end
        && range.end <= stored.len()
    {
        let digits = rv.to_string();
        let mut bytes = BytesMut::with_capacity(stored.len() + digits.len());
        bytes.extend_from_slice(&stored[..range.start]);
        bytes.extend_from_slice(digits.as_bytes());
        let end = bytes.len();
        bytes.extend_from_slice(&stored[range.end..]);
        return Ok(Encoded {
            bytes: bytes.freeze(),
            rv_digits: range.start..end,
        });
    }
    let value: Value = serde_json::from_slice(stored).map_err(|error| {
        StoreError::Backend(format!("stored object is not valid JSON: {error}"))
    })?;
    Ok(SplitJson::new(&value)?.with_rv(rv))
}

struct Splitter {
    head: Vec<u8>,
    tail: Vec<u8>,
    /// Set once the resourceVersion hole has been written; later output goes to `tail`.
    split: bool,
}

impl Splitter {
    fn buf(&mut self) -> &mut Vec<u8> {
        if self.split {
            &mut self.tail
        } else {
            &mut self.head
        }
    }

    fn comma(&mut self, first: &mut bool) {
        if !*first {
            self.buf().push(b',');
        }
        *first = false;
    }

    fn key(&mut self, key: &str) -> Result<(), StoreError> {
        serde_json::to_writer(&mut *self.buf(), key).map_err(invalid)?;
        self.buf().push(b':');
        Ok(())
    }

    fn value(&mut self, value: &Value) -> Result<(), StoreError> {
        serde_json::to_writer(&mut *self.buf(), value).map_err(invalid)
    }

    fn metadata(&mut self, metadata: &Map<String, Value>) -> Result<(), StoreError> {
        self.buf().push(b'{');
        let mut first = true;
        for (key, field) in metadata {
            self.comma(&mut first);
            self.key(key)?;
            if key == "resourceVersion" {
                self.split = true;
            } else {
                self.value(field)?;
            }
        }
        if !self.split {
            self.comma(&mut first);
            self.key("resourceVersion")?;
            self.split = true;
        }
        self.buf().push(b'}');
        Ok(())
    }
}

fn invalid(error: serde_json::Error) -> StoreError {
    StoreError::InvalidObject(error.to_string())
}

fn kind_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The `metadata.resourceVersion` of stored JSON, read without building a full value tree.
pub(crate) fn resource_version_of(bytes: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Meta {
        #[serde(rename = "resourceVersion")]
        resource_version: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Obj {
        metadata: Option<Meta>,
    }
    let o: Obj = serde_json::from_slice(bytes).ok()?;
    o.metadata?.resource_version?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The reference: what serde_json writes after setting the field on the parsed object.
    fn reference(mut value: Value, rv: u64) -> Vec<u8> {
        value["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        serde_json::to_vec(&value).unwrap()
    }

    #[test]
    fn split_encoding_matches_serde_json_with_the_field_set() {
        let cases = [
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "resourceVersion": "9", "uid": "u"}, "spec": {"x": [1, 2.5, "\u{0}\"q"]}}),
            json!({"kind": "Pod", "metadata": {"name": "a"}, "z": null}),
            json!({"metadata": {}}),
            json!({"kind": "ConfigMap", "data": {"resourceVersion": "\"resourceVersion\":\"1\""}}),
            json!({}),
        ];
        for case in cases {
            let split = SplitJson::new(&case).unwrap();
            let encoded = split.with_rv(1234);
            assert_eq!(
                encoded.bytes.as_ref(),
                reference(case.clone(), 1234).as_slice(),
                "{case}"
            );
            assert_eq!(&encoded.bytes[encoded.rv_digits.clone()], b"1234");
            assert!(split.equals_with_rv(&encoded.bytes, 1234));
            assert!(!split.equals_with_rv(&encoded.bytes, 1235));
            assert!(!split.equals_with_rv(&encoded.bytes, 123));
        }
    }

    #[test]
    fn non_objects_and_bad_metadata_are_invalid() {
        for bad in [
            json!(null),
            json!([1]),
            json!("s"),
            json!(3),
            json!({"metadata": "x"}),
        ] {
            assert!(
                matches!(SplitJson::new(&bad), Err(StoreError::InvalidObject(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn rewrite_rv_with_and_without_known_digits_agree() {
        let object = json!({"kind": "Pod", "metadata": {"name": "a", "resourceVersion": "x", "labels": {"k": "v"}}});
        let encoded = SplitJson::new(&object).unwrap().with_rv(7);
        let fast = rewrite_rv(&encoded.bytes, Some(&encoded.rv_digits), 100_000).unwrap();
        let slow = rewrite_rv(&encoded.bytes, None, 100_000).unwrap();
        assert_eq!(fast.bytes, slow.bytes);
        assert_eq!(fast.bytes.as_ref(), reference(object, 100_000).as_slice());
        assert_eq!(fast.rv_digits, slow.rv_digits);
        assert!(matches!(
            rewrite_rv(b"not json", None, 1),
            Err(StoreError::Backend(_))
        ));
    }
}
