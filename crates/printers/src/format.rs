//! Shared cell formatting: ages, label maps and label selectors, as apimachinery renders them.

use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value};

use crate::json::at;

/// apimachinery's `duration.HumanDuration`: about two significant figures, more precision for
/// young objects ("90s", "5m30s", "2h15m", "3d4h", "2y45d").
///
/// Up to one second in the future reads as "0s" (clock skew between servers); further in the
/// future is "<invalid>".
pub fn human_duration(d: SignedDuration) -> String {
    // Go truncates toward zero when it converts seconds to an int; so does `as_secs`.
    let seconds = d.as_secs();
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days_into_year = (hours / 24) % 365;
        return if days_into_year == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{days_into_year}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// Seconds from the Unix epoch to Go's zero `time.Time` (0001-01-01T00:00:00Z), which
/// `metav1.Time.IsZero` treats as "not set".
const GO_ZERO_TIME_SECONDS: i64 = -62_135_596_800;

/// The timestamp at `path`, or `None` when it is absent, unparsable or Go's zero time: all three
/// are a zero `metav1.Time` once decoded by the apiserver.
pub(crate) fn time_at(value: &Value, path: &[&str]) -> Option<Timestamp> {
    let text = at(value, path)?.as_str()?;
    let timestamp: Timestamp = text.parse().ok()?;
    let is_go_zero =
        timestamp.as_second() == GO_ZERO_TIME_SECONDS && timestamp.subsec_nanosecond() == 0;
    (!is_go_zero).then_some(timestamp)
}

/// Upstream `translateTimestampSince`: the age of `timestamp` at `now`, "<unknown>" if unset.
pub(crate) fn since(timestamp: Option<Timestamp>, now: Timestamp) -> String {
    match timestamp {
        Some(timestamp) => human_duration(now.duration_since(timestamp)),
        None => "<unknown>".to_string(),
    }
}

/// The AGE cell of every built-in printer: time since `metadata.creationTimestamp`.
pub(crate) fn age(obj: &Value, now: Timestamp) -> String {
    since(time_at(obj, &["metadata", "creationTimestamp"]), now)
}

/// `labels.FormatLabels`: `k=v` pairs sorted by key, joined by ",", "<none>" when empty.
pub(crate) fn format_labels(labels: Option<&Map<String, Value>>) -> String {
    let mut pairs: Vec<(&str, &str)> = labels
        .into_iter()
        .flatten()
        .map(|(key, value)| (key.as_str(), value.as_str().unwrap_or("")))
        .collect();
    if pairs.is_empty() {
        return "<none>".to_string();
    }
    pairs.sort_unstable();
    pairs
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Why a `metav1.LabelSelector` does not convert to a selector (`LabelSelectorAsSelector` fails).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct InvalidSelector;

/// The requirement operators of a label selector, as `labels.Requirement.String` writes them.
#[derive(Debug, Clone, Copy)]
enum Operator {
    Equals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// `metav1.LabelSelectorAsSelector(sel).String()`: requirements sorted by key, `a=b`,
/// `a in (x,y)`, `a notin (x)`, `a`, `!a`, joined by ",".
///
/// An absent selector selects nothing and an empty one everything; both print as "".
pub(crate) fn label_selector_string(selector: Option<&Value>) -> Result<String, InvalidSelector> {
    let Some(selector) = selector else {
        return Ok(String::new());
    };
    let mut requirements: Vec<(String, Operator, Vec<String>)> = Vec::new();
    if let Some(match_labels) = selector.get("matchLabels").and_then(Value::as_object) {
        for (key, value) in match_labels {
            let value = value.as_str().unwrap_or("").to_string();
            requirements.push(validated(key, Operator::Equals, vec![value])?);
        }
    }
    let expressions = selector.get("matchExpressions").and_then(Value::as_array);
    for expression in expressions.into_iter().flatten() {
        let key = expression.get("key").and_then(Value::as_str).unwrap_or("");
        let operator = match expression.get("operator").and_then(Value::as_str) {
            Some("In") => Operator::In,
            Some("NotIn") => Operator::NotIn,
            Some("Exists") => Operator::Exists,
            Some("DoesNotExist") => Operator::DoesNotExist,
            _ => return Err(InvalidSelector),
        };
        let values = expression
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|v| v.as_str().unwrap_or("").to_string())
            .collect();
        requirements.push(validated(key, operator, values)?);
    }
    // `labels.internalSelector.Add` sorts by key only; a stable sort keeps equal keys in input order.
    requirements.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(requirements
        .iter()
        .map(|(key, operator, values)| requirement_string(key, *operator, values))
        .collect::<Vec<_>>()
        .join(","))
}

/// `metav1.FormatLabelSelector`: the selector string, "<none>" when empty, "<error>" when invalid.
pub(crate) fn format_label_selector(selector: Option<&Value>) -> String {
    match label_selector_string(selector) {
        Ok(text) if text.is_empty() => "<none>".to_string(),
        Ok(text) => text,
        Err(InvalidSelector) => "<error>".to_string(),
    }
}

/// The checks of `labels.NewRequirement`: a valid key, valid values, and as many values as the
/// operator takes.
fn validated(
    key: &str,
    operator: Operator,
    values: Vec<String>,
) -> Result<(String, Operator, Vec<String>), InvalidSelector> {
    let count_ok = match operator {
        Operator::Equals => values.len() == 1,
        Operator::In | Operator::NotIn => !values.is_empty(),
        Operator::Exists | Operator::DoesNotExist => values.is_empty(),
    };
    if !count_ok || !is_qualified_name(key) || !values.iter().all(|v| is_label_value(v)) {
        return Err(InvalidSelector);
    }
    Ok((key.to_string(), operator, values))
}

fn requirement_string(key: &str, operator: Operator, values: &[String]) -> String {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let joined = sorted.join(",");
    match operator {
        Operator::Equals => format!("{key}={joined}"),
        Operator::In => format!("{key} in ({joined})"),
        Operator::NotIn => format!("{key} notin ({joined})"),
        Operator::Exists => key.to_string(),
        Operator::DoesNotExist => format!("!{key}"),
    }
}

/// A label key: an optional DNS-subdomain prefix and "/", then a name of at most 63 characters
/// made of alphanumerics, '-', '_' and '.', starting and ending with an alphanumeric.
fn is_qualified_name(key: &str) -> bool {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(is_dns_subdomain);
    prefix_ok && !name.is_empty() && name.len() <= 63 && is_label_shaped(name)
}

/// A label value: empty, or up to 63 characters shaped like a key's name part.
fn is_label_value(value: &str) -> bool {
    value.is_empty() || (value.len() <= 63 && is_label_shaped(value))
}

fn is_label_shaped(text: &str) -> bool {
    let bytes = text.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// RFC 1123 subdomain: lowercase alphanumerics, '-' and '.', alphanumeric at both ends, <= 253.
fn is_dns_subdomain(text: &str) -> bool {
    let bytes = text.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    let lower_alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    text.len() <= 253
        && lower_alnum(first)
        && lower_alnum(last)
        && bytes
            .iter()
            .all(|b| lower_alnum(b) || matches!(b, b'-' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selector_sorts_requirements_by_key_and_values_within_a_requirement() {
        let selector = json!({
            "matchLabels": {"tier": "web", "app": "nginx"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod", "dev"]},
                {"key": "zone", "operator": "NotIn", "values": ["b"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "owner", "operator": "Exists", "values": []}
            ]
        });
        assert_eq!(
            label_selector_string(Some(&selector)),
            Ok("app=nginx,!canary,env in (dev,prod),owner,tier=web,zone notin (b)".to_string())
        );
    }

    #[test]
    fn selector_edge_cases_follow_format_label_selector() {
        assert_eq!(format_label_selector(None), "<none>");
        assert_eq!(format_label_selector(Some(&json!({}))), "<none>");
        let bad_operator =
            json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]});
        assert_eq!(format_label_selector(Some(&bad_operator)), "<error>");
        let in_without_values = json!({"matchExpressions": [{"key": "a", "operator": "In"}]});
        assert_eq!(format_label_selector(Some(&in_without_values)), "<error>");
        let bad_key = json!({"matchLabels": {"-a": "b"}});
        assert_eq!(format_label_selector(Some(&bad_key)), "<error>");
        let prefixed = json!({"matchLabels": {"app.kubernetes.io/name": "web"}});
        assert_eq!(
            format_label_selector(Some(&prefixed)),
            "app.kubernetes.io/name=web"
        );
    }

    #[test]
    fn labels_are_sorted_and_empty_is_none() {
        let labels = json!({"b": "2", "a": "1"});
        assert_eq!(format_labels(labels.as_object()), "a=1,b=2");
        assert_eq!(format_labels(None), "<none>");
        assert_eq!(format_labels(json!({}).as_object()), "<none>");
    }

    #[test]
    fn go_zero_time_and_garbage_are_unset() {
        let obj =
            json!({"a": "0001-01-01T00:00:00Z", "b": "yesterday", "c": "2024-05-01T10:00:00Z"});
        assert_eq!(time_at(&obj, &["a"]), None);
        assert_eq!(time_at(&obj, &["b"]), None);
        assert!(time_at(&obj, &["c"]).is_some());
    }
}
