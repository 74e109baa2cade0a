//! Go's `%#v` renderings of the few Go values upstream prints in validation messages (maps,
//! label selectors, `IntOrString`, service ports). Users compare our messages with
//! kube-apiserver's, so the bad value must read exactly as Go prints it. Only rendering lives
//! here; nothing decides validity.

use serde_json::Value;

use crate::access::{array_at, str_or_empty, string_map};
use crate::errors::go_quote;

/// `map[string]string{"a":"b", "c":"d"}` (keys sorted, as Go's fmt sorts maps), or
/// `map[string]string(nil)` for an absent map.
pub fn string_map_value(v: Option<&Value>) -> String {
    match string_map(v) {
        None => "map[string]string(nil)".to_string(),
        Some(mut entries) => {
            entries.sort();
            let body: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{}:{}", go_quote(k), go_quote(v)))
                .collect();
            format!("map[string]string{{{}}}", body.join(", "))
        }
    }
}

/// `[]string{"a", "b"}` or `[]string(nil)`.
pub fn string_slice(v: Option<&Value>) -> String {
    match v.and_then(Value::as_array) {
        None => "[]string(nil)".to_string(),
        Some(items) => {
            let body: Vec<String> = items
                .iter()
                .map(|i| go_quote(i.as_str().unwrap_or("")))
                .collect();
            format!("[]string{{{}}}", body.join(", "))
        }
    }
}

/// `v1.LabelSelector{MatchLabels:map[string]string{"app":"x"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}`,
/// how `*metav1.LabelSelector` bad values print (the pointer is dereferenced first).
pub fn label_selector(v: &Value) -> String {
    if v.is_null() {
        return "null".to_string();
    }
    let exprs = match v.get("matchExpressions").and_then(Value::as_array) {
        None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
        Some(items) => {
            let body: Vec<String> = items
                .iter()
                .map(|r| {
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{}}}",
                        go_quote(str_or_empty(r, "key")),
                        go_quote(str_or_empty(r, "operator")),
                        string_slice(r.get("values"))
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", body.join(", "))
        }
    };
    format!(
        "v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{}}}",
        string_map_value(v.get("matchLabels")),
        exprs
    )
}

/// `intstr.IntOrString{Type:1, IntVal:0, StrVal:"25%"}`; absent renders as the zero value
/// (upstream's defaulting means validation sees a value).
pub fn int_or_string(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => format!(
            "intstr.IntOrString{{Type:1, IntVal:0, StrVal:{}}}",
            go_quote(s)
        ),
        Some(Value::Number(n)) => {
            format!(
                "intstr.IntOrString{{Type:0, IntVal:{}, StrVal:\"\"}}",
                n.as_i64().unwrap_or(0)
            )
        }
        _ => "intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}".to_string(),
    }
}

/// The `core.ServicePort` key upstream builds for the duplicate (protocol, port) check.
pub fn service_port_key(protocol: &str, port: i64) -> String {
    format!(
        "core.ServicePort{{Name:\"\", Protocol:{}, AppProtocol:(*string)(nil), Port:{port}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}",
        go_quote(protocol)
    )
}

/// `core.Toleration{...}` as printed for an `Exists` toleration that carries a value.
pub fn toleration(v: &Value) -> String {
    let seconds = match v.get("tolerationSeconds").and_then(Value::as_i64) {
        Some(_) => "(*int64)(0xc000000000)".to_string(),
        None => "(*int64)(nil)".to_string(),
    };
    format!(
        "core.Toleration{{Key:{}, Operator:{}, Value:{}, Effect:{}, TolerationSeconds:{seconds}}}",
        go_quote(str_or_empty(v, "key")),
        go_quote(str_or_empty(v, "operator")),
        go_quote(str_or_empty(v, "value")),
        go_quote(str_or_empty(v, "effect"))
    )
}

/// `[]string{...}` of the string items of the array at `key` (used for clusterIPs).
pub fn string_slice_at(v: &Value, key: &str) -> String {
    if v.get(key).and_then(Value::as_array).is_none() {
        return "[]string(nil)".to_string();
    }
    let body: Vec<String> = array_at(v, key)
        .iter()
        .map(|i| go_quote(i.as_str().unwrap_or("")))
        .collect();
    format!("[]string{{{}}}", body.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_like_go_percent_sharp_v() {
        assert_eq!(
            string_map_value(Some(&json!({"b": "2", "a": "1"}))),
            r#"map[string]string{"a":"1", "b":"2"}"#
        );
        assert_eq!(string_map_value(None), "map[string]string(nil)");
        assert_eq!(string_map_value(Some(&json!({}))), "map[string]string{}");
        assert_eq!(
            label_selector(&json!({"matchLabels": {"app": "web"}})),
            r#"v1.LabelSelector{MatchLabels:map[string]string{"app":"web"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}"#
        );
        assert_eq!(
            label_selector(
                &json!({"matchExpressions": [{"key": "a", "operator": "In", "values": ["x"]}]})
            ),
            r#"v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement{v1.LabelSelectorRequirement{Key:"a", Operator:"In", Values:[]string{"x"}}}}"#
        );
        assert_eq!(
            int_or_string(Some(&json!(0))),
            r#"intstr.IntOrString{Type:0, IntVal:0, StrVal:""}"#
        );
        assert_eq!(
            int_or_string(Some(&json!("0%"))),
            r#"intstr.IntOrString{Type:1, IntVal:0, StrVal:"0%"}"#
        );
    }
}
