//! Parsing only what a printer reads.
//!
//! A stored pod is about 2.6 KB of JSON, most of it container env, resources, probes and volume
//! mounts that no column shows. Parsing all of it into a `serde_json::Value` (one heap allocation
//! per string, map and array) and dropping it again was most of the CPU of a Table list of 10,000
//! pods. [`parse_pruned`] walks the same bytes but builds only the subtrees a [`Keep`] mask names
//! and skips the rest without allocating.
//!
//! The result is the full parse with the unnamed object members removed: every value that is kept
//! is exactly what `serde_json::from_slice` would have produced at that place (same key order, same
//! numbers, a later duplicate key replacing an earlier one in place). So a printer that reads only
//! paths the mask keeps computes the same cells from the pruned value as from the full one.

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::borrow::Cow;
use std::fmt;

/// Which parts of a JSON value to build.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Keep {
    /// The whole value.
    All,
    /// For an object, only these members, each with its own mask; for an array, every element
    /// under this same mask (so the array keeps its length); a scalar is kept as it is.
    Fields(&'static [(&'static str, Keep)]),
}

impl Keep {
    fn member(self, key: &str) -> Option<Keep> {
        match self {
            Keep::All => Some(Keep::All),
            Keep::Fields(fields) => fields.iter().find(|(name, _)| *name == key).map(|f| f.1),
        }
    }
}

/// Parses `bytes` as one JSON value, building only what `keep` names.
pub(crate) fn parse_pruned(bytes: &[u8], keep: Keep) -> Result<Value, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = Pruned(keep).deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// A value parsed under a mask.
struct Pruned(Keep);

impl<'de> DeserializeSeed<'de> for Pruned {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        match self.0 {
            Keep::All => serde::Deserialize::deserialize(deserializer),
            Keep::Fields(_) => deserializer.deserialize_any(self),
        }
    }
}

/// Scalars become what `serde_json::Value`'s own visitor makes of them; objects and arrays are
/// pruned.
impl<'de> Visitor<'de> for Pruned {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(Pruned(self.0))? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(key) = map.next_key_seed(Key)? {
            match self.0.member(&key) {
                Some(keep) => {
                    let value = map.next_value_seed(Pruned(keep))?;
                    members.insert(key.into_owned(), value);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(members))
    }
}

/// An object key, borrowed from the input when it has no escapes: skipped members cost no
/// allocation.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(value))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::{at, list_at};
    use serde_json::json;

    const MASK: Keep = Keep::Fields(&[
        ("metadata", Keep::All),
        (
            "spec",
            Keep::Fields(&[("nodeName", Keep::All), ("containers", Keep::Fields(&[]))]),
        ),
    ]);

    #[test]
    fn keeps_named_members_and_drops_the_rest() {
        let text = r#"{"kind":"Pod","metadata":{"name":"a","labels":{"x":"y"}},
            "spec":{"containers":[{"name":"c","env":[{"name":"E"}]},{"name":"d"}],"nodeName":"n","x":[1,2.5]}}"#;
        let pruned = parse_pruned(text.as_bytes(), MASK).unwrap();
        assert_eq!(
            pruned,
            json!({"metadata":{"name":"a","labels":{"x":"y"}},"spec":{"containers":[{},{}],"nodeName":"n"}})
        );
        // Key order is the input's, as in a full parse.
        assert_eq!(
            serde_json::to_string(&pruned["spec"]).unwrap(),
            r#"{"containers":[{},{}],"nodeName":"n"}"#
        );
    }

    #[test]
    fn scalars_and_odd_types_read_as_in_a_full_parse() {
        for text in [
            r#"{"spec":"text"}"#,
            r#"{"spec":[1,-2,3.5,true,null,"s"]}"#,
            r#"{"spec":{"containers":[1,"a",[{"b":1}]],"nodeName":7}}"#,
            r#"{"spec":{"nodeName":"a","nodeName":"b"}}"#,
            r#"{"metadata":{"name":"\u00e9\"q"},"spec\u0041":1,"spec":{"node\u004eame":"esc"}}"#,
            "5",
            "null",
            r#"[{"metadata":{"name":"in-array"}}]"#,
        ] {
            let full: Value = serde_json::from_str(text).unwrap();
            let pruned = parse_pruned(text.as_bytes(), MASK).unwrap();
            // Every path the mask keeps reads the same in both; pruned arrays keep their length.
            for path in [&["metadata", "name"][..], &["spec", "nodeName"]] {
                assert_eq!(at(&pruned, path), at(&full, path), "{text} at {path:?}");
            }
            let containers = &["spec", "containers"];
            assert_eq!(
                list_at(&pruned, containers).len(),
                list_at(&full, containers).len()
            );
            if !full.is_object() && !full.is_array() {
                assert_eq!(pruned, full, "{text}");
            }
        }
    }

    #[test]
    fn invalid_json_is_an_error() {
        for text in [
            "",
            "{",
            r#"{"spec":{"nodeName":}}"#,
            "{} x",
            r#"{"spec":[1,]}"#,
        ] {
            assert!(parse_pruned(text.as_bytes(), MASK).is_err(), "{text:?}");
        }
    }
}
