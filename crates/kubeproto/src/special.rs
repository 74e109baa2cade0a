//! Messages whose Go types have a custom JSON form: timestamps, durations, IntOrString,
//! Quantity and the embedded-JSON byte holders.
//!
//! Each decoder returns `Ok(None)` when Go would treat the value as unset, so the caller
//! omits the key.

use serde_json::Value;

use crate::wire::{Reader, WireType};

/// The custom-JSON message kinds, by full proto name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Special {
    Time,
    MicroTime,
    Duration,
    IntOrString,
    Quantity,
    RawExtension,
    FieldsV1,
}

impl Special {
    pub(crate) fn of(message_name: &str) -> Option<Special> {
        Some(match message_name {
            "k8s.io.apimachinery.pkg.apis.meta.v1.Time" => Special::Time,
            "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime" => Special::MicroTime,
            "k8s.io.apimachinery.pkg.apis.meta.v1.Duration" => Special::Duration,
            "k8s.io.apimachinery.pkg.util.intstr.IntOrString" => Special::IntOrString,
            "k8s.io.apimachinery.pkg.api.resource.Quantity" => Special::Quantity,
            "k8s.io.apimachinery.pkg.runtime.RawExtension" => Special::RawExtension,
            "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1" => Special::FieldsV1,
            _ => return None,
        })
    }

    /// Decodes the message bytes into the JSON Go would write, or `None` for "unset".
    pub(crate) fn decode(self, data: &[u8]) -> Result<Option<Value>, String> {
        match self {
            Special::Time => time(data, false),
            Special::MicroTime => time(data, true),
            Special::Duration => {
                let fields = scalar_fields(data, &[(1, WireType::Varint)])?;
                Ok(Some(Value::String(go_duration(
                    fields.varint(1).unwrap_or(0) as i64,
                ))))
            }
            Special::IntOrString => int_or_string(data),
            Special::Quantity => quantity(data),
            Special::RawExtension | Special::FieldsV1 => embedded_json(data),
        }
    }
}

/// The fields of a small fixed-shape message: last value wins, unknown fields skipped.
struct ScalarFields<'a> {
    varints: Vec<(u32, u64)>,
    bytes: Vec<(u32, &'a [u8])>,
}

impl<'a> ScalarFields<'a> {
    fn varint(&self, number: u32) -> Option<u64> {
        self.varints
            .iter()
            .rev()
            .find(|(n, _)| *n == number)
            .map(|(_, v)| *v)
    }
    fn bytes(&self, number: u32) -> Option<&'a [u8]> {
        self.bytes
            .iter()
            .rev()
            .find(|(n, _)| *n == number)
            .map(|(_, v)| *v)
    }
}

fn scalar_fields<'a>(
    data: &'a [u8],
    expected: &[(u32, WireType)],
) -> Result<ScalarFields<'a>, String> {
    let mut reader = Reader::new(data);
    let mut fields = ScalarFields {
        varints: Vec::new(),
        bytes: Vec::new(),
    };
    while !reader.is_empty() {
        let (number, wire_type) = reader.key().map_err(|e| e.to_string())?;
        match expected.iter().find(|(n, _)| *n == number) {
            None => reader.skip(number, wire_type).map_err(|e| e.to_string())?,
            Some((_, want)) if *want != wire_type => {
                return Err(format!(
                    "field {number}: wrong wire type {} (expected {})",
                    wire_type.describe(),
                    want.describe()
                ));
            }
            Some(_) if wire_type == WireType::Varint => {
                fields
                    .varints
                    .push((number, reader.varint().map_err(|e| e.to_string())?));
            }
            Some(_) => fields.bytes.push((
                number,
                reader.length_delimited().map_err(|e| e.to_string())?,
            )),
        }
    }
    Ok(fields)
}

/// Seconds of Go's zero `time.Time` (0001-01-01T00:00:00Z), which marshals as unset.
const GO_ZERO_TIME_SECONDS: i64 = -62_135_596_800;
/// Seconds of 0000-01-01T00:00:00Z; earlier years have no RFC 3339 form.
const YEAR_ZERO_SECONDS: i64 = -62_167_219_200;

/// `metav1.Time` (whole seconds: Go drops the nanos on decode) or `metav1.MicroTime`
/// (microseconds), as RFC 3339 in UTC. An empty message is Go's zero time: unset.
fn time(data: &[u8], micro: bool) -> Result<Option<Value>, String> {
    if data.is_empty() {
        return Ok(None);
    }
    let fields = scalar_fields(data, &[(1, WireType::Varint), (2, WireType::Varint)])?;
    let seconds = fields.varint(1).unwrap_or(0) as i64;
    let nanos = if micro {
        fields.varint(2).unwrap_or(0) as i32
    } else {
        0
    };
    // Go truncates MicroTime nanos to microseconds (toward zero, as Rust's `%` does), then
    // time.Unix normalises nanos outside [0, 1e9) into the seconds.
    let nanos = nanos - nanos % 1_000;
    let total = i128::from(seconds) * 1_000_000_000 + i128::from(nanos);
    let (seconds, nanos) = (
        total.div_euclid(1_000_000_000),
        total.rem_euclid(1_000_000_000),
    );
    let seconds = i64::try_from(seconds).map_err(|_| "timestamp out of range".to_string())?;
    if seconds == GO_ZERO_TIME_SECONDS && nanos == 0 {
        return Ok(None);
    }
    if seconds < YEAR_ZERO_SECONDS {
        return Err(format!("timestamp {seconds}s is before year 0"));
    }
    let instant =
        jiff::Timestamp::from_second(seconds).map_err(|e| format!("timestamp {seconds}s: {e}"))?;
    // jiff prints whole seconds as `YYYY-MM-DDTHH:MM:SSZ`, like Go's time.RFC3339.
    let whole = instant.to_string();
    if !micro {
        return Ok(Some(Value::String(whole)));
    }
    let without_zone = whole.strip_suffix('Z').unwrap_or(&whole);
    Ok(Some(Value::String(format!(
        "{without_zone}.{:06}Z",
        nanos / 1_000
    ))))
}

/// Go's `time.Duration.String()`: "1h2m3.5s", "1m0s", "500ms", "1.5µs", "0s".
pub(crate) fn go_duration(nanoseconds: i64) -> String {
    if nanoseconds == 0 {
        return "0s".to_string();
    }
    let sign = if nanoseconds < 0 { "-" } else { "" };
    let mut rest = nanoseconds.unsigned_abs();
    if rest < 1_000_000_000 {
        let (unit, digits) = match rest {
            0..1_000 => ("ns", 0),
            1_000..1_000_000 => ("µs", 3),
            _ => ("ms", 6),
        };
        return format!("{sign}{}{unit}", decimal(rest, digits));
    }
    let seconds = decimal(rest % 60_000_000_000, 9);
    rest /= 60_000_000_000;
    if rest == 0 {
        return format!("{sign}{seconds}s");
    }
    let minutes = rest % 60;
    let hours = rest / 60;
    if hours == 0 {
        format!("{sign}{minutes}m{seconds}s")
    } else {
        format!("{sign}{hours}h{minutes}m{seconds}s")
    }
}

/// `value / 10^digits` with the fraction's trailing zeros (and a bare '.') removed.
fn decimal(value: u64, digits: u32) -> String {
    let scale = 10u64.pow(digits);
    let (whole, fraction) = (value / scale, value % scale);
    if fraction == 0 {
        return whole.to_string();
    }
    let fraction = format!("{fraction:0width$}", width = digits as usize);
    format!("{whole}.{}", fraction.trim_end_matches('0'))
}

/// `intstr.IntOrString {type, intVal, strVal}`: a JSON number (type 0) or string (type 1).
/// The all-zero value is what Go holds for "not set" (e.g. an absent targetPort).
fn int_or_string(data: &[u8]) -> Result<Option<Value>, String> {
    let fields = scalar_fields(
        data,
        &[
            (1, WireType::Varint),
            (2, WireType::Varint),
            (3, WireType::LengthDelimited),
        ],
    )?;
    let kind = fields.varint(1).unwrap_or(0) as i64;
    let int_val = fields.varint(2).unwrap_or(0) as i32;
    let str_val = String::from_utf8_lossy(fields.bytes(3).unwrap_or_default()).into_owned();
    match kind {
        0 if int_val == 0 && str_val.is_empty() => Ok(None),
        0 => Ok(Some(Value::from(int_val))),
        1 => Ok(Some(Value::String(str_val))),
        other => Err(format!("impossible IntOrString type {other}")),
    }
}

/// `resource.Quantity {string}`. Go re-parses the string and fails on an empty one; a message
/// without the field is the zero quantity "0". The string is passed through unchanged (Go
/// would canonicalise it, e.g. "1000m" -> "1"; the API server's own parsing handles that).
fn quantity(data: &[u8]) -> Result<Option<Value>, String> {
    let fields = scalar_fields(data, &[(1, WireType::LengthDelimited)])?;
    match fields.bytes(1) {
        None => Ok(Some(Value::String("0".to_string()))),
        Some([]) => {
            Err("quantities must match the regular expression (empty quantity)".to_string())
        }
        Some(text) => Ok(Some(Value::String(
            String::from_utf8_lossy(text).into_owned(),
        ))),
    }
}

/// `runtime.RawExtension` / `metav1.FieldsV1 {raw bytes}`: the bytes are the JSON value itself.
fn embedded_json(data: &[u8]) -> Result<Option<Value>, String> {
    let fields = scalar_fields(data, &[(1, WireType::LengthDelimited)])?;
    match fields.bytes(1) {
        None | Some([]) => Ok(None),
        Some(raw) => serde_json::from_slice(raw)
            .map(Some)
            .map_err(|e| format!("embedded raw value is not JSON: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint_field(number: u8, value: u64) -> Vec<u8> {
        let mut out = vec![number << 3];
        let mut v = value;
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }

    #[test]
    fn go_duration_matches_go_formatting() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(1), "1ns");
        assert_eq!(go_duration(1_500), "1.5µs");
        assert_eq!(go_duration(500_000_000), "500ms");
        assert_eq!(go_duration(1_000_000_000), "1s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(60_000_000_000), "1m0s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(3_723_000_000_001), "1h2m3.000000001s");
        assert_eq!(go_duration(-90_000_000_000), "-1m30s");
        assert_eq!(go_duration(i64::MIN), "-2562047h47m16.854775808s");
    }

    #[test]
    fn time_drops_nanos_and_micro_time_keeps_micros() {
        let mut data = varint_field(1, 1_795_692_600);
        data.extend(varint_field(2, 123_456_789));
        assert_eq!(
            time(&data, false),
            Ok(Some(Value::from("2026-11-26T11:30:00Z")))
        );
        assert_eq!(
            time(&data, true),
            Ok(Some(Value::from("2026-11-26T11:30:00.123456Z")))
        );
        // Negative nanos: truncated toward zero to -1µs, then borrowed from the seconds.
        let mut negative = varint_field(1, 1_795_692_600);
        negative.extend(varint_field(2, (-1_500i64) as u64));
        assert_eq!(
            time(&negative, true),
            Ok(Some(Value::from("2026-11-26T11:29:59.999999Z")))
        );
        assert_eq!(time(&[], false), Ok(None));
        assert_eq!(
            time(&varint_field(1, 0), false),
            Ok(Some(Value::from("1970-01-01T00:00:00Z")))
        );
        let go_zero = varint_field(1, GO_ZERO_TIME_SECONDS as u64);
        assert_eq!(time(&go_zero, false), Ok(None));
        assert!(time(&varint_field(1, i64::MAX as u64), false).is_err());
    }

    #[test]
    fn int_or_string_forms() {
        assert_eq!(
            int_or_string(&varint_field(2, 8080)),
            Ok(Some(Value::from(8080)))
        );
        let mut named = varint_field(1, 1);
        named.extend([0x1a, 4, b'h', b't', b't', b'p']);
        assert_eq!(int_or_string(&named), Ok(Some(Value::from("http"))));
        assert_eq!(int_or_string(&varint_field(2, 0)), Ok(None));
        assert!(int_or_string(&varint_field(1, 7)).is_err());
    }

    #[test]
    fn quantity_and_embedded_json() {
        assert_eq!(
            quantity(&[0x0a, 3, b'1', b'0', b'0']),
            Ok(Some(Value::from("100")))
        );
        assert_eq!(quantity(&[]), Ok(Some(Value::from("0"))));
        assert!(quantity(&[0x0a, 0]).is_err());
        assert_eq!(
            embedded_json(b"\x0a\x07{\"a\":1}"),
            Ok(Some(serde_json::json!({"a": 1})))
        );
        assert!(embedded_json(b"\x0a\x01{").is_err());
        assert_eq!(embedded_json(&[]), Ok(None));
    }

    #[test]
    fn wrong_wire_types_are_rejected() {
        assert!(
            time(&[0x0a, 0x00], false).is_err(),
            "seconds must be a varint"
        );
    }
}
