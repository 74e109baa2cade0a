//! Schema-driven conversion of a typed protobuf message into Go-equivalent JSON.

use std::collections::BTreeSet;

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::DecodeError;
use crate::special::Special;
use crate::table::{self, Field, Label, Message, Type};
use crate::wire::{Reader, WireError, WireType};

/// Messages nested deeper than this are rejected (the served kinds need about 15 levels).
pub(crate) const MAX_DEPTH: usize = 100;

/// Decoding state shared across one body: the unknown fields seen so far.
#[derive(Default)]
pub(crate) struct Decoder {
    pub(crate) unknown: BTreeSet<(&'static str, u32)>,
}

fn malformed(
    message: &Message,
    field: Option<&Field>,
    reason: impl std::fmt::Display,
) -> DecodeError {
    let at = match field {
        Some(f) if f.json_name.is_empty() => {
            format!("{} field {} (inline)", message.name, f.number)
        }
        Some(f) => format!("{} field {} ({})", message.name, f.number, f.json_name),
        None => message.name.to_string(),
    };
    DecodeError::Malformed {
        at,
        reason: reason.to_string(),
    }
}

fn expect_wire_type(
    message: &Message,
    field: &Field,
    got: WireType,
    want: WireType,
) -> Result<(), DecodeError> {
    if got == want {
        Ok(())
    } else {
        Err(malformed(
            message,
            Some(field),
            format!(
                "wrong wire type {} (expected {})",
                got.describe(),
                want.describe()
            ),
        ))
    }
}

/// The wire type a scalar is written with when not packed.
fn natural_wire_type(ty: Type) -> WireType {
    match ty {
        Type::Int32 | Type::Int64 | Type::Bool => WireType::Varint,
        Type::Double => WireType::Fixed64,
        Type::String | Type::Bytes | Type::Message(_) => WireType::LengthDelimited,
    }
}

/// Whether Go's `omitempty` would drop this scalar.
fn is_zero(value: &Value) -> bool {
    match value {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    }
}

/// Go's encoding/json writes integral floats without a fraction (`1`, not `1.0`).
fn float_value(value: f64) -> Option<Value> {
    const EXACT_INTEGER_LIMIT: f64 = 9_007_199_254_740_992.0; // 2^53
    if value.fract() == 0.0 && value.abs() < EXACT_INTEGER_LIMIT {
        return Some(Value::from(value as i64));
    }
    serde_json::Number::from_f64(value).map(Value::Number)
}

fn push(out: &mut Map<String, Value>, key: &str, value: Value) {
    let slot = out.entry(key).or_insert_with(|| Value::Array(Vec::new()));
    match slot {
        Value::Array(items) => items.push(value),
        other => *other = Value::Array(vec![value]),
    }
}

/// Takes the object under `key` out for filling (keeping the key's position), or a new one.
/// The caller puts it back with [`Map::insert`], which keeps the position too.
fn take_object(out: &mut Map<String, Value>, key: &str) -> Map<String, Value> {
    match out.get_mut(key).map(std::mem::take) {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

impl Decoder {
    /// Decodes `data` as `message`, writing its fields into `out` (merging into what is there,
    /// as protobuf merges repeated occurrences of a singular message).
    pub(crate) fn message_into(
        &mut self,
        data: &[u8],
        message: &'static Message,
        depth: usize,
        out: &mut Map<String, Value>,
    ) -> Result<(), DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep(MAX_DEPTH));
        }
        let mut reader = Reader::new(data);
        while !reader.is_empty() {
            let (number, wire_type) = reader.key().map_err(|e| malformed(message, None, e))?;
            let Some(field) = message.field(number) else {
                reader
                    .skip(number, wire_type)
                    .map_err(|e| malformed(message, None, format!("field {number}: {e}")))?;
                self.unknown.insert((message.name, number));
                continue;
            };
            let wire = |e: WireError| malformed(message, Some(field), e);
            match (field.label, field.ty) {
                (Label::Single, Type::Message(name)) => {
                    expect_wire_type(message, field, wire_type, WireType::LengthDelimited)?;
                    let bytes = reader.length_delimited().map_err(wire)?;
                    if let Some(special) = Special::of(name) {
                        match special
                            .decode(bytes)
                            .map_err(|e| malformed(message, Some(field), e))?
                        {
                            Some(value) => out.insert(field.json_name.to_string(), value),
                            None => out.shift_remove(field.json_name),
                        };
                    } else {
                        let child = self.resolve(name, message, field)?;
                        let mut object = take_object(out, field.json_name);
                        let result = self.message_into(bytes, child, depth + 1, &mut object);
                        out.insert(field.json_name.to_string(), Value::Object(object));
                        result?;
                    }
                }
                (Label::Single, ty) => {
                    let value = self.scalar(&mut reader, wire_type, ty, message, field)?;
                    if is_zero(&value) && !field.keep_zero {
                        out.shift_remove(field.json_name);
                    } else {
                        out.insert(field.json_name.to_string(), value);
                    }
                }
                (Label::Inline, ty) => {
                    expect_wire_type(message, field, wire_type, WireType::LengthDelimited)?;
                    let bytes = reader.length_delimited().map_err(wire)?;
                    let Type::Message(name) = ty else {
                        return Err(malformed(
                            message,
                            Some(field),
                            "inline field is not a message",
                        ));
                    };
                    let child = self.resolve(name, message, field)?;
                    self.message_into(bytes, child, depth + 1, out)?;
                }
                (Label::Repeated, Type::Message(name)) => {
                    expect_wire_type(message, field, wire_type, WireType::LengthDelimited)?;
                    let bytes = reader.length_delimited().map_err(wire)?;
                    let value = self.message_value(bytes, name, depth + 1, message, field)?;
                    push(out, field.json_name, value);
                }
                (Label::Repeated, ty) => {
                    let natural = natural_wire_type(ty);
                    if wire_type == WireType::LengthDelimited
                        && natural != WireType::LengthDelimited
                    {
                        // Packed: one length-delimited run of values.
                        let packed = reader.length_delimited().map_err(wire)?;
                        let mut run = Reader::new(packed);
                        while !run.is_empty() {
                            let value = self.scalar(&mut run, natural, ty, message, field)?;
                            push(out, field.json_name, value);
                        }
                    } else {
                        let value = self.scalar(&mut reader, wire_type, ty, message, field)?;
                        push(out, field.json_name, value);
                    }
                }
                (Label::Map, ty) => {
                    expect_wire_type(message, field, wire_type, WireType::LengthDelimited)?;
                    let entry = reader.length_delimited().map_err(wire)?;
                    let (key, value) = self.map_entry(entry, ty, depth + 1, message, field)?;
                    let mut object = take_object(out, field.json_name);
                    object.insert(key, value);
                    out.insert(field.json_name.to_string(), Value::Object(object));
                }
            }
        }
        Ok(())
    }

    fn resolve(
        &self,
        name: &str,
        parent: &'static Message,
        field: &Field,
    ) -> Result<&'static Message, DecodeError> {
        table::message(name)
            .ok_or_else(|| malformed(parent, Some(field), format!("no schema for message {name}")))
    }

    /// A whole message as a JSON value (special messages in their custom form; `null` for a
    /// special value Go treats as unset, which is how Go writes it inside arrays and maps).
    fn message_value(
        &mut self,
        data: &[u8],
        name: &'static str,
        depth: usize,
        parent: &'static Message,
        field: &Field,
    ) -> Result<Value, DecodeError> {
        if let Some(special) = Special::of(name) {
            let value = special
                .decode(data)
                .map_err(|e| malformed(parent, Some(field), e))?;
            return Ok(value.unwrap_or(Value::Null));
        }
        let child = self.resolve(name, parent, field)?;
        let mut object = Map::new();
        self.message_into(data, child, depth, &mut object)?;
        Ok(Value::Object(object))
    }

    /// One map entry: key (1, string) and value (2, of `ty`); either may be absent (= zero).
    fn map_entry(
        &mut self,
        entry: &[u8],
        ty: Type,
        depth: usize,
        message: &'static Message,
        field: &Field,
    ) -> Result<(String, Value), DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep(MAX_DEPTH));
        }
        let wire = |e: WireError| malformed(message, Some(field), format!("map entry: {e}"));
        let mut reader = Reader::new(entry);
        let mut key = String::new();
        let mut value = None;
        while !reader.is_empty() {
            let (number, wire_type) = reader.key().map_err(wire)?;
            match number {
                1 => {
                    expect_wire_type(message, field, wire_type, WireType::LengthDelimited)?;
                    key = String::from_utf8_lossy(reader.length_delimited().map_err(wire)?)
                        .into_owned();
                }
                2 => {
                    value = Some(match ty {
                        Type::Message(name) => {
                            expect_wire_type(message, field, wire_type, WireType::LengthDelimited)?;
                            let bytes = reader.length_delimited().map_err(wire)?;
                            self.message_value(bytes, name, depth, message, field)?
                        }
                        scalar => self.scalar(&mut reader, wire_type, scalar, message, field)?,
                    });
                }
                _ => reader.skip(number, wire_type).map_err(wire)?,
            }
        }
        let value = match (value, ty) {
            (Some(value), _) => value,
            (None, Type::Message(name)) => self.message_value(&[], name, depth, message, field)?,
            (None, Type::String | Type::Bytes) => Value::String(String::new()),
            (None, Type::Bool) => Value::Bool(false),
            (None, Type::Int32 | Type::Int64 | Type::Double) => Value::from(0),
        };
        Ok((key, value))
    }

    fn scalar(
        &mut self,
        reader: &mut Reader<'_>,
        wire_type: WireType,
        ty: Type,
        message: &'static Message,
        field: &Field,
    ) -> Result<Value, DecodeError> {
        expect_wire_type(message, field, wire_type, natural_wire_type(ty))?;
        let wire = |e: WireError| malformed(message, Some(field), e);
        Ok(match ty {
            // Go truncates the varint to the field's width.
            Type::Int32 => Value::from(reader.varint().map_err(wire)? as i32),
            Type::Int64 => Value::from(reader.varint().map_err(wire)? as i64),
            Type::Bool => Value::Bool(reader.varint().map_err(wire)? != 0),
            Type::Double => {
                let value = f64::from_bits(reader.fixed64().map_err(wire)?);
                float_value(value)
                    .ok_or_else(|| malformed(message, Some(field), "NaN or infinite number"))?
            }
            // Go's encoding/json turns invalid UTF-8 into U+FFFD, as from_utf8_lossy does.
            Type::String => Value::String(
                String::from_utf8_lossy(reader.length_delimited().map_err(wire)?).into_owned(),
            ),
            Type::Bytes => Value::String(
                base64::engine::general_purpose::STANDARD
                    .encode(reader.length_delimited().map_err(wire)?),
            ),
            Type::Message(_) => {
                return Err(malformed(
                    message,
                    Some(field),
                    "message where a scalar was expected",
                ));
            }
        })
    }
}
