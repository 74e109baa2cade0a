//! Deployment, ReplicaSet and DaemonSet validation (`pkg/apis/apps/validation`), including the
//! selector/template agreement every controller relies on and the selector immutability the
//! apps/v1 strategies enforce on update.

use serde_json::{Map, Value};

use crate::access::{array_at, at, child, index, int_at, str_or_empty};
use crate::errors::FieldError;
use crate::gosyntax;
use crate::names::is_valid_percent;
use crate::selectors::label_selector_from_json;

use super::meta::{validate_label_name, validate_labels};
use super::pod::{template_labels, validate_pod_template};

fn spec_of(obj: &Value) -> &Value {
    static EMPTY: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    obj.get("spec")
        .filter(|s| s.is_object())
        .unwrap_or_else(|| EMPTY.get_or_init(|| Value::Object(Map::new())))
}

fn nonnegative(spec: &Value, field: &str, path: &str) -> Option<FieldError> {
    let v = int_at(spec, field)?;
    (v < 0)
        .then(|| FieldError::invalid(child(path, field), v, "must be greater than or equal to 0"))
}

/// `metav1validation.ValidateLabelSelector` (label values must be valid).
fn validate_label_selector(selector: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = validate_labels(selector.get("matchLabels"), &child(path, "matchLabels"));
    for (i, expr) in array_at(selector, "matchExpressions").iter().enumerate() {
        let e_path = index(&child(path, "matchExpressions"), i);
        let values = array_at(expr, "values");
        match str_or_empty(expr, "operator") {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(FieldError::required(
                        child(&e_path, "values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(FieldError::forbidden(
                        child(&e_path, "values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            other => errs.push(FieldError::invalid(
                child(&e_path, "operator"),
                other,
                "not a valid selector operator",
            )),
        }
        errs.extend(validate_label_name(
            str_or_empty(expr, "key"),
            &child(&e_path, "key"),
        ));
        for (j, v) in values.iter().enumerate() {
            let v = v.as_str().unwrap_or("");
            for msg in crate::names::is_valid_label_value(v) {
                errs.push(FieldError::invalid(
                    index(&child(&e_path, "values"), j),
                    v,
                    msg,
                ));
            }
        }
    }
    errs
}

fn selector_is_empty(selector: &Value) -> bool {
    selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(|m| m.is_empty())
        && array_at(selector, "matchExpressions").is_empty()
}

fn labels_mismatch(obj: &Value) -> FieldError {
    let labels = template_labels(obj);
    FieldError::invalid(
        "spec.template.metadata.labels",
        labels.cloned().unwrap_or(Value::Null),
        "`selector` does not match template `labels`",
    )
    .rendered_as(gosyntax::string_map_value(labels))
}

/// Selector rules shared by Deployment and ReplicaSet, then `ValidatePodTemplateSpecForReplicaSet`.
fn validate_replicated_spec(obj: &Value, controller: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = spec_of(obj);
    let selector = spec.get("selector").filter(|s| !s.is_null());
    match selector {
        None => errs.push(FieldError::required("spec.selector", "")),
        Some(sel) => {
            errs.extend(validate_label_selector(sel, "spec.selector"));
            if selector_is_empty(sel) {
                // Upstream says "deployment" for ReplicaSets too.
                errs.push(
                    FieldError::invalid(
                        "spec.selector",
                        sel.clone(),
                        "empty selector is invalid for deployment",
                    )
                    .rendered_as(gosyntax::label_selector(sel)),
                );
            }
        }
    }
    match label_selector_from_json(selector) {
        Err(_) => errs.push(
            FieldError::invalid(
                "spec.selector",
                selector.cloned().unwrap_or(Value::Null),
                "invalid label selector",
            )
            .rendered_as(
                selector
                    .map(gosyntax::label_selector)
                    .unwrap_or_else(|| "null".into()),
            ),
        ),
        Ok(parsed) => {
            if !parsed.is_empty() && !parsed.matches_json(template_labels(obj)) {
                errs.push(labels_mismatch(obj));
            }
            let template = spec.get("template").filter(|t| t.is_object());
            match template {
                None => errs.push(FieldError::required("spec.template", "")),
                Some(t) => {
                    errs.extend(validate_pod_template(t, "spec.template"));
                    let restart = at(t, &["spec", "restartPolicy"])
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    if restart != "Always" {
                        errs.push(FieldError::not_supported(
                            "spec.template.spec.restartPolicy",
                            restart,
                            &["Always"],
                        ));
                    }
                    if at(t, &["spec", "activeDeadlineSeconds"]).is_some_and(|v| !v.is_null()) {
                        errs.push(FieldError::forbidden(
                            "spec.template.spec.activeDeadlineSeconds",
                            format!("activeDeadlineSeconds in {controller} is not Supported"),
                        ));
                    }
                }
            }
        }
    }
    errs
}

pub(crate) fn validate_deployment_spec(obj: &Value) -> Vec<FieldError> {
    let spec = spec_of(obj);
    let mut errs: Vec<FieldError> = nonnegative(spec, "replicas", "spec").into_iter().collect();
    errs.extend(validate_replicated_spec(obj, "ReplicaSet"));
    errs.extend(validate_deployment_strategy(spec.get("strategy")));
    errs.extend(nonnegative(spec, "minReadySeconds", "spec"));
    errs.extend(nonnegative(spec, "revisionHistoryLimit", "spec"));
    if let Some(deadline) = int_at(spec, "progressDeadlineSeconds") {
        errs.extend(nonnegative(spec, "progressDeadlineSeconds", "spec"));
        if deadline <= int_at(spec, "minReadySeconds").unwrap_or(0) {
            errs.push(FieldError::invalid(
                "spec.progressDeadlineSeconds",
                deadline,
                "must be greater than minReadySeconds",
            ));
        }
    }
    errs
}

pub(crate) fn validate_replica_set_spec(obj: &Value) -> Vec<FieldError> {
    let spec = spec_of(obj);
    let mut errs: Vec<FieldError> = nonnegative(spec, "replicas", "spec").into_iter().collect();
    errs.extend(nonnegative(spec, "minReadySeconds", "spec"));
    errs.extend(validate_replicated_spec(obj, "ReplicaSet"));
    errs
}

pub(crate) fn validate_daemon_set_spec(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = spec_of(obj);
    let selector = spec.get("selector").filter(|s| !s.is_null());
    if let Some(sel) = selector {
        errs.extend(validate_label_selector(sel, "spec.selector"));
    }
    // A missing selector converts to "nothing", which matches no labels: upstream reports the
    // mismatch rather than a missing field.
    if let Ok(parsed) = label_selector_from_json(selector)
        && !parsed.matches_json(template_labels(obj))
    {
        errs.push(labels_mismatch(obj));
    }
    if let Some(sel) = selector
        && selector_is_empty(sel)
    {
        errs.push(
            FieldError::invalid(
                "spec.selector",
                sel.clone(),
                "empty selector is invalid for daemonset",
            )
            .rendered_as(gosyntax::label_selector(sel)),
        );
    }
    let empty = Value::Object(Map::new());
    let template = spec
        .get("template")
        .filter(|t| t.is_object())
        .unwrap_or(&empty);
    errs.extend(validate_pod_template(template, "spec.template"));
    let restart = at(template, &["spec", "restartPolicy"])
        .and_then(Value::as_str)
        .unwrap_or("");
    if restart != "Always" {
        errs.push(FieldError::not_supported(
            "spec.template.spec.restartPolicy",
            restart,
            &["Always"],
        ));
    }
    if at(template, &["spec", "activeDeadlineSeconds"]).is_some_and(|v| !v.is_null()) {
        errs.push(FieldError::forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            "activeDeadlineSeconds in DaemonSet is not Supported",
        ));
    }
    errs.extend(nonnegative(spec, "minReadySeconds", "spec"));
    errs.extend(validate_daemon_set_strategy(spec.get("updateStrategy")));
    errs.extend(nonnegative(spec, "revisionHistoryLimit", "spec"));
    errs
}

/// `IntOrString` as upstream reads it: (is_string, int value, string value).
fn int_or_string(v: Option<&Value>) -> (bool, i64, String) {
    match v {
        Some(Value::String(s)) => (true, 0, s.clone()),
        Some(Value::Number(n)) => (false, n.as_i64().unwrap_or(0), String::new()),
        _ => (false, 0, String::new()),
    }
}

fn percent_value(v: Option<&Value>) -> Option<i64> {
    let (is_string, _, s) = int_or_string(v);
    if !is_string || !is_valid_percent(&s).is_empty() {
        return None;
    }
    // Digits only, but possibly too many for an int: Go's Atoi then yields 0.
    Some(s[..s.len() - 1].parse::<i64>().unwrap_or(0))
}

/// `getIntOrPercentValue`: a non-numeric string counts as 0.
fn int_or_percent_value(v: Option<&Value>) -> i64 {
    if let Some(p) = percent_value(v) {
        return p;
    }
    let (is_string, i, s) = int_or_string(v);
    if is_string {
        s.parse::<i64>().unwrap_or(0)
    } else {
        i
    }
}

fn validate_positive_int_or_percent(v: Option<&Value>, path: &str) -> Vec<FieldError> {
    let rendered = gosyntax::int_or_string(v);
    match v {
        Some(Value::String(s)) => is_valid_percent(s)
            .into_iter()
            .map(|m| FieldError::invalid(path, s.as_str(), m).rendered_as(rendered.clone()))
            .collect(),
        Some(Value::Number(n)) => {
            let value = n.as_i64().unwrap_or(0);
            if value < 0 {
                vec![FieldError::invalid(
                    path,
                    value,
                    "must be greater than or equal to 0",
                )]
            } else {
                Vec::new()
            }
        }
        _ => Vec::new(),
    }
}

fn not_more_than_100_percent(v: Option<&Value>, path: &str) -> Option<FieldError> {
    let p = percent_value(v)?;
    (p > 100).then(|| {
        FieldError::invalid(
            path,
            v.cloned().unwrap_or(Value::Null),
            "must not be greater than 100%",
        )
        .rendered_as(gosyntax::int_or_string(v))
    })
}

fn strategy_rendering(strategy: &Value, type_name: &str, rolling_type: &str) -> String {
    let rolling = if strategy.get("rollingUpdate").is_some_and(|r| !r.is_null()) {
        format!("(*apps.{rolling_type})(0xc000000000)")
    } else {
        format!("(*apps.{rolling_type})(nil)")
    };
    format!(
        "apps.{type_name}{{Type:{}, RollingUpdate:{rolling}}}",
        crate::errors::go_quote(str_or_empty(strategy, "type"))
    )
}

fn validate_deployment_strategy(strategy: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let empty = Value::Object(Map::new());
    let strategy = strategy.filter(|s| s.is_object()).unwrap_or(&empty);
    let rolling = strategy.get("rollingUpdate").filter(|r| !r.is_null());
    match str_or_empty(strategy, "type") {
        "Recreate" => {
            if rolling.is_some() {
                errs.push(FieldError::forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => match rolling {
            None => errs.push(FieldError::required(
                "spec.strategy.rollingUpdate",
                "this should be defaulted and never be nil",
            )),
            Some(r) => {
                let max_unavailable = r.get("maxUnavailable");
                let max_surge = r.get("maxSurge");
                let p = "spec.strategy.rollingUpdate";
                errs.extend(validate_positive_int_or_percent(
                    max_unavailable,
                    &child(p, "maxUnavailable"),
                ));
                errs.extend(validate_positive_int_or_percent(
                    max_surge,
                    &child(p, "maxSurge"),
                ));
                if int_or_percent_value(max_unavailable) == 0
                    && int_or_percent_value(max_surge) == 0
                {
                    errs.push(
                        FieldError::invalid(
                            child(p, "maxUnavailable"),
                            max_unavailable.cloned().unwrap_or(Value::Null),
                            "may not be 0 when `maxSurge` is 0",
                        )
                        .rendered_as(gosyntax::int_or_string(max_unavailable)),
                    );
                }
                errs.extend(not_more_than_100_percent(
                    max_unavailable,
                    &child(p, "maxUnavailable"),
                ));
            }
        },
        _ => errs.push(
            FieldError::not_supported(
                "spec.strategy",
                strategy.clone(),
                &["Recreate", "RollingUpdate"],
            )
            .rendered_as(strategy_rendering(
                strategy,
                "DeploymentStrategy",
                "RollingUpdateDeployment",
            )),
        ),
    }
    errs
}

fn validate_daemon_set_strategy(strategy: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let empty = Value::Object(Map::new());
    let strategy = strategy.filter(|s| s.is_object()).unwrap_or(&empty);
    let p = "spec.updateStrategy.rollingUpdate";
    match str_or_empty(strategy, "type") {
        "OnDelete" => {}
        "RollingUpdate" => {
            let Some(r) = strategy.get("rollingUpdate").filter(|r| !r.is_null()) else {
                errs.push(FieldError::required(p, ""));
                return errs;
            };
            let max_unavailable = r.get("maxUnavailable");
            let max_surge = r.get("maxSurge");
            errs.extend(validate_positive_int_or_percent(
                max_unavailable,
                &child(p, "maxUnavailable"),
            ));
            errs.extend(validate_positive_int_or_percent(
                max_surge,
                &child(p, "maxSurge"),
            ));
            errs.extend(not_more_than_100_percent(
                max_unavailable,
                &child(p, "maxUnavailable"),
            ));
            errs.extend(not_more_than_100_percent(max_surge, &child(p, "maxSurge")));
            let has_unavailable = int_or_percent_value(max_unavailable) != 0;
            let has_surge = int_or_percent_value(max_surge) != 0;
            if has_unavailable && has_surge {
                errs.push(
                    FieldError::invalid(
                        child(p, "maxSurge"),
                        max_surge.cloned().unwrap_or(Value::Null),
                        "may not be set when maxUnavailable is non-zero",
                    )
                    .rendered_as(gosyntax::int_or_string(max_surge)),
                );
            } else if !has_unavailable && !has_surge {
                errs.push(FieldError::required(
                    child(p, "maxUnavailable"),
                    "cannot be 0 when maxSurge is 0",
                ));
            }
        }
        _ => errs.push(
            FieldError::not_supported(
                "spec.updateStrategy",
                strategy.clone(),
                &["RollingUpdate", "OnDelete"],
            )
            .rendered_as(strategy_rendering(
                strategy,
                "DaemonSetUpdateStrategy",
                "RollingUpdateDaemonSet",
            )),
        ),
    }
    errs
}

/// apps/v1 strategies refuse selector changes: `spec.selector: Invalid value: v1.LabelSelector{...}: field is immutable`.
pub(crate) fn validate_selector_unchanged(new: &Value, old: &Value) -> Vec<FieldError> {
    let new_sel = at(new, &["spec", "selector"]).filter(|s| !s.is_null());
    let old_sel = at(old, &["spec", "selector"]).filter(|s| !s.is_null());
    if normalize_selector(new_sel) == normalize_selector(old_sel) {
        return Vec::new();
    }
    vec![
        FieldError::invalid(
            "spec.selector",
            new_sel.cloned().unwrap_or(Value::Null),
            "field is immutable",
        )
        .rendered_as(
            new_sel
                .map(gosyntax::label_selector)
                .unwrap_or_else(|| "null".into()),
        ),
    ]
}

/// Semantic equality as upstream's `DeepEqual` sees it after decoding: an empty map or list
/// equals an absent one only when both decode to nil, so normalise just null entries.
fn normalize_selector(sel: Option<&Value>) -> Option<Value> {
    let sel = sel?;
    let mut out = Map::new();
    if let Some(labels) = sel.get("matchLabels").filter(|l| !l.is_null()) {
        out.insert("matchLabels".into(), labels.clone());
    }
    if let Some(exprs) = sel.get("matchExpressions").filter(|l| !l.is_null()) {
        out.insert("matchExpressions".into(), exprs.clone());
    }
    Some(Value::Object(out))
}
