//! Decodes Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) into the
//! JSON object a Go kube-apiserver would hold after decoding them.
//!
//! Why: since client-go 1.31, kubectl's typed clients (`kubectl create deployment|service|
//! namespace|configmap|serviceaccount`, ...) send POST/PUT bodies as protobuf. kubelab's API
//! server works on JSON, so it converts the body here and runs the rest of its pipeline
//! (normalisation, defaulting, validation) unchanged. Responses stay JSON.
//!
//! # Wire format
//! A body is the 4-byte magic `k8s\x00` followed by a `runtime.Unknown` message:
//! field 1 `typeMeta {1 apiVersion, 2 kind}`, field 2 `raw` (the typed message, e.g.
//! `k8s.io.api.apps.v1.Deployment`), fields 3/4 `contentEncoding`/`contentType` (ignored, as Go
//! does). The typed messages are the proto2 `generated.proto` of k8s.io/api and
//! k8s.io/apimachinery; their field table lives in the generated `schema.rs`
//! (see scripts/gen-kubeproto-schema.py).
//!
//! # The zero-value rule
//! Go's generated marshaller writes every non-pointer field, even when zero (`""`, `0`,
//! `false`, empty nested structs), and pointer fields only when non-nil. Go's encoding/json
//! then drops zero scalars of `omitempty` fields. So a zero scalar on the wire is dropped unless
//! the schema marks it `keep_zero` (a Go pointer such as `replicas`, where `0` differs from
//! unset, or a field without `omitempty` such as `containerPort`). Nested messages present on
//! the wire always appear (`"strategy": {}`), as Go writes non-pointer structs. Special
//! messages: `Time` -> RFC 3339 seconds, `MicroTime` -> RFC 3339 with 6 fractional digits (zero
//! time -> omitted), `Duration` -> Go duration string, `IntOrString` -> number or string
//! (all-zero -> omitted), `Quantity` -> string, `RawExtension`/`FieldsV1` -> embedded JSON;
//! `bytes` -> base64; map entries -> JSON objects; repeated -> arrays.
//!
//! Unknown field numbers are skipped (forward compatibility) and reported by
//! [`decode_with_unknown_fields`] so the caller can warn.

mod decode;
// Generated data, one field per line; rustfmt would spread it over thousands of lines.
#[rustfmt::skip]
mod schema;
mod special;
mod table;
mod wire;

use serde_json::{Map, Value};

use wire::{Reader, WireType};

/// The media type of Kubernetes protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The prefix every Kubernetes protobuf body starts with: "k8s" and encoding style 0.
const MAGIC: &[u8; 4] = b"k8s\x00";

/// Why a body could not be decoded. Every variant means "400 Bad Request" except
/// [`DecodeError::UnsupportedKind`], which the caller may answer with 415.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("request body is not Kubernetes protobuf: {0}")]
    NotProtobuf(&'static str),
    #[error("malformed protobuf in {at}: {reason}")]
    Malformed { at: String, reason: String },
    #[error("protobuf body has no {0} in its typeMeta")]
    MissingTypeMeta(&'static str),
    #[error("protobuf bodies of apiVersion {api_version:?}, kind {kind:?} are not supported")]
    UnsupportedKind { api_version: String, kind: String },
    #[error("protobuf messages are nested deeper than {0} levels")]
    TooDeep(usize),
}

/// A field number the schema does not know, found (and skipped) in `message`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct UnknownField {
    /// Full proto message name, e.g. `k8s.io.api.core.v1.PodSpec`.
    pub message: &'static str,
    pub field_number: u32,
}

/// A decoded body and the unknown fields it carried.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub object: Value,
    pub unknown_fields: Vec<UnknownField>,
}

/// Decodes a protobuf request body into the object's JSON (with apiVersion and kind set from
/// typeMeta).
pub fn decode(body: &[u8]) -> Result<Value, DecodeError> {
    decode_with_unknown_fields(body).map(|decoded| decoded.object)
}

/// Like [`decode`], also listing the unknown field numbers that were skipped.
pub fn decode_with_unknown_fields(body: &[u8]) -> Result<Decoded, DecodeError> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or(DecodeError::NotProtobuf("missing the k8s\\x00 prefix"))?;
    if envelope.is_empty() {
        return Err(DecodeError::NotProtobuf("empty body after the prefix"));
    }
    let unknown = parse_unknown(envelope)?;
    if unknown.kind.is_empty() {
        return Err(DecodeError::MissingTypeMeta("kind"));
    }
    if unknown.api_version.is_empty() {
        return Err(DecodeError::MissingTypeMeta("apiVersion"));
    }
    let root = table::root_message(&unknown.api_version, &unknown.kind).ok_or_else(|| {
        DecodeError::UnsupportedKind {
            api_version: unknown.api_version.clone(),
            kind: unknown.kind.clone(),
        }
    })?;
    let mut object = Map::new();
    object.insert("apiVersion".to_string(), Value::String(unknown.api_version));
    object.insert("kind".to_string(), Value::String(unknown.kind));
    let mut decoder = decode::Decoder::default();
    decoder.message_into(unknown.raw, root, 1, &mut object)?;
    let unknown_fields = decoder
        .unknown
        .into_iter()
        .map(|(message, field_number)| UnknownField {
            message,
            field_number,
        })
        .collect();
    Ok(Decoded {
        object: Value::Object(object),
        unknown_fields,
    })
}

/// The parts of `runtime.Unknown` the decoder uses.
struct Envelope<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
}

fn envelope_error(reason: impl std::fmt::Display) -> DecodeError {
    DecodeError::Malformed {
        at: "runtime.Unknown".to_string(),
        reason: reason.to_string(),
    }
}

/// Reads `runtime.Unknown`: 1 typeMeta, 2 raw; 3 contentEncoding and 4 contentType are
/// ignored, as Go's protobuf serializer ignores them. Unknown fields are skipped.
fn parse_unknown(data: &[u8]) -> Result<Envelope<'_>, DecodeError> {
    let mut envelope = Envelope {
        api_version: String::new(),
        kind: String::new(),
        raw: &[],
    };
    let mut reader = Reader::new(data);
    while !reader.is_empty() {
        let (number, wire_type) = reader.key().map_err(envelope_error)?;
        match number {
            1 | 2 if wire_type != WireType::LengthDelimited => {
                return Err(envelope_error(format!(
                    "field {number}: wrong wire type {}",
                    wire_type.describe()
                )));
            }
            1 => {
                let type_meta = reader.length_delimited().map_err(envelope_error)?;
                parse_type_meta(type_meta, &mut envelope)?;
            }
            2 => envelope.raw = reader.length_delimited().map_err(envelope_error)?,
            _ => reader.skip(number, wire_type).map_err(envelope_error)?,
        }
    }
    Ok(envelope)
}

fn parse_type_meta(data: &[u8], envelope: &mut Envelope<'_>) -> Result<(), DecodeError> {
    let mut reader = Reader::new(data);
    while !reader.is_empty() {
        let (number, wire_type) = reader.key().map_err(envelope_error)?;
        match number {
            1 | 2 if wire_type != WireType::LengthDelimited => {
                return Err(envelope_error(format!(
                    "typeMeta field {number}: wrong wire type {}",
                    wire_type.describe()
                )));
            }
            1 | 2 => {
                let text =
                    String::from_utf8_lossy(reader.length_delimited().map_err(envelope_error)?)
                        .into_owned();
                if number == 1 {
                    envelope.api_version = text;
                } else {
                    envelope.kind = text;
                }
            }
            _ => reader.skip(number, wire_type).map_err(envelope_error)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Hand-assembled protobuf, independent of prost: length-delimited field helper.
    /// (Single-byte keys only: field numbers up to 15.)
    fn ld(number: u8, payload: &[u8]) -> Vec<u8> {
        assert!(number <= 15);
        let mut out = vec![(number << 3) | 2];
        let mut len = payload.len();
        loop {
            let byte = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
        out.extend_from_slice(payload);
        out
    }

    fn body(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let mut type_meta = ld(1, api_version.as_bytes());
        type_meta.extend(ld(2, kind.as_bytes()));
        let mut out = MAGIC.to_vec();
        out.extend(ld(1, &type_meta));
        out.extend(ld(2, raw));
        out.extend(ld(4, CONTENT_TYPE.as_bytes()));
        out
    }

    #[test]
    fn namespace_by_hand() {
        let metadata = ld(1, b"team-a");
        let raw = ld(1, &metadata);
        let decoded = decode(&body("v1", "Namespace", &raw)).unwrap();
        assert_eq!(
            decoded,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}})
        );
    }

    #[test]
    fn envelope_errors() {
        assert!(matches!(decode(b""), Err(DecodeError::NotProtobuf(_))));
        assert!(matches!(
            decode(b"{\"kind\":\"Pod\"}"),
            Err(DecodeError::NotProtobuf(_))
        ));
        assert!(matches!(
            decode(b"k8s\x00"),
            Err(DecodeError::NotProtobuf(_))
        ));
        assert_eq!(
            decode(&body("v1", "", &[])),
            Err(DecodeError::MissingTypeMeta("kind"))
        );
        assert_eq!(
            decode(&body("", "Pod", &[])),
            Err(DecodeError::MissingTypeMeta("apiVersion"))
        );
        assert_eq!(
            decode(&body("v1", "Secret", &[])),
            Err(DecodeError::UnsupportedKind {
                api_version: "v1".into(),
                kind: "Secret".into()
            })
        );
        let truncated = &body("v1", "Namespace", &ld(1, &ld(1, b"x")))[..12];
        assert!(matches!(
            decode(truncated),
            Err(DecodeError::Malformed { .. })
        ));
    }

    #[test]
    fn empty_raw_is_an_empty_object() {
        assert_eq!(
            decode(&body("v1", "Pod", &[])).unwrap(),
            json!({"apiVersion": "v1", "kind": "Pod"})
        );
    }

    #[test]
    fn unknown_fields_are_skipped_and_reported() {
        let mut metadata = ld(1, b"n");
        metadata.extend([0xf8, 0x07, 0x05]); // field 127, varint 5
        let mut raw = ld(1, &metadata);
        raw.extend(ld(15, b"future"));
        let decoded = decode_with_unknown_fields(&body("v1", "ConfigMap", &raw)).unwrap();
        assert_eq!(
            decoded.object,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "n"}})
        );
        assert_eq!(
            decoded.unknown_fields,
            vec![
                UnknownField {
                    message: "k8s.io.api.core.v1.ConfigMap",
                    field_number: 15
                },
                UnknownField {
                    message: "k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta",
                    field_number: 127
                },
            ]
        );
    }

    #[test]
    fn wrong_wire_type_for_a_known_field_is_an_error() {
        // ObjectMeta.name (1) sent as a varint.
        let raw = ld(1, &[0x08, 0x01]);
        let err = decode(&body("v1", "Namespace", &raw)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "malformed protobuf in k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta field 1 (name): \
             wrong wire type varint (expected length-delimited)"
        );
    }

    #[test]
    fn delete_options_under_any_group_version() {
        // propagationPolicy (4) = "Foreground", gracePeriodSeconds (1) = 0 kept (a Go pointer).
        let mut raw = vec![0x08, 0x00];
        raw.extend(ld(4, b"Foreground"));
        let decoded = decode(&body("apps/v1", "DeleteOptions", &raw)).unwrap();
        assert_eq!(
            decoded,
            json!({"apiVersion": "apps/v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0, "propagationPolicy": "Foreground"})
        );
    }

    #[test]
    fn nesting_beyond_the_depth_limit_is_an_error() {
        // No served message is recursive, so real bodies stay far below the limit (which
        // guards future recursive schemas); exercise the guard directly.
        let mut decoder = decode::Decoder::default();
        let pod = table::message("k8s.io.api.core.v1.Pod").unwrap();
        let mut out = Map::new();
        assert_eq!(
            decoder.message_into(&[], pod, decode::MAX_DEPTH + 1, &mut out),
            Err(DecodeError::TooDeep(decode::MAX_DEPTH))
        );
    }
}
