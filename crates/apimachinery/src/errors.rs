//! API errors in Kubernetes' own form: a `Status` object with a reason, a code, a message worded
//! like kube-apiserver's, and field causes for validation failures. Every error the API server
//! answers with is built here, so wording stays consistent across resources.

use serde_json::{Value, json};

/// What went wrong with one field; mirrors `k8s.io/apimachinery/pkg/util/validation/field.ErrorType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldErrorKind {
    NotFound,
    Required,
    Duplicate,
    Invalid,
    NotSupported,
    Forbidden,
    TooLong,
    TooMany,
    /// An unknown field under `fieldValidation=Strict`.
    Unknown,
}

impl FieldErrorKind {
    /// The `reason` of a `StatusCause`.
    pub fn cause_reason(self) -> &'static str {
        match self {
            FieldErrorKind::NotFound => "FieldValueNotFound",
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Duplicate => "FieldValueDuplicate",
            FieldErrorKind::Invalid => "FieldValueInvalid",
            FieldErrorKind::NotSupported => "FieldValueNotSupported",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::TooLong => "FieldValueTooLong",
            FieldErrorKind::TooMany => "FieldValueTooMany",
            FieldErrorKind::Unknown => "FieldValueUnknown",
        }
    }

    /// The words upstream puts before the detail ("Invalid value", "Required value", ...).
    pub fn phrase(self) -> &'static str {
        match self {
            FieldErrorKind::NotFound => "Not found",
            FieldErrorKind::Required => "Required value",
            FieldErrorKind::Duplicate => "Duplicate value",
            FieldErrorKind::Invalid => "Invalid value",
            FieldErrorKind::NotSupported => "Unsupported value",
            FieldErrorKind::Forbidden => "Forbidden",
            FieldErrorKind::TooLong => "Too long",
            FieldErrorKind::TooMany => "Too many",
            FieldErrorKind::Unknown => "Unknown field",
        }
    }

    /// Whether upstream prints the offending value after the phrase.
    fn shows_value(self) -> bool {
        matches!(
            self,
            FieldErrorKind::NotFound
                | FieldErrorKind::Duplicate
                | FieldErrorKind::Invalid
                | FieldErrorKind::NotSupported
        )
    }
}

/// One validation failure at a field path such as `spec.ports[0].port`.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    pub kind: FieldErrorKind,
    pub field: String,
    pub bad_value: Option<Value>,
    pub detail: String,
    /// How upstream prints the bad value when it is a Go struct or map (`%#v`), e.g.
    /// `map[string]string{"app":"x"}`; `None` renders `bad_value` itself. Set with
    /// [`FieldError::rendered_as`]; the JSON `bad_value` stays for machine use.
    pub rendered_value: Option<String>,
}

impl FieldError {
    pub fn new(
        kind: FieldErrorKind,
        field: impl Into<String>,
        bad_value: Option<Value>,
        detail: impl Into<String>,
    ) -> Self {
        FieldError {
            kind,
            field: field.into(),
            bad_value,
            detail: detail.into(),
            rendered_value: None,
        }
    }
    /// `Not found: "x"`, e.g. a volume mount naming no volume.
    pub fn not_found(field: impl Into<String>, value: impl Into<Value>) -> Self {
        Self::new(FieldErrorKind::NotFound, field, Some(value.into()), "")
    }
    /// `Too long: must have at most N bytes`.
    pub fn too_long(field: impl Into<String>, max_bytes: usize) -> Self {
        Self::new(
            FieldErrorKind::TooLong,
            field,
            None,
            format!("must have at most {max_bytes} bytes"),
        )
    }
    /// Replaces the printed bad value with upstream's Go rendering of it (see `rendered_value`).
    pub fn rendered_as(mut self, go_syntax: impl Into<String>) -> Self {
        self.rendered_value = Some(go_syntax.into());
        self
    }
    /// Replaces the detail, for the few upstream errors that add one after the fact.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorKind::Required, field, None, detail)
    }
    pub fn invalid(
        field: impl Into<String>,
        value: impl Into<Value>,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(FieldErrorKind::Invalid, field, Some(value.into()), detail)
    }
    pub fn duplicate(field: impl Into<String>, value: impl Into<Value>) -> Self {
        Self::new(FieldErrorKind::Duplicate, field, Some(value.into()), "")
    }
    pub fn not_supported(
        field: impl Into<String>,
        value: impl Into<Value>,
        supported: &[&str],
    ) -> Self {
        let list = supported
            .iter()
            .map(|s| go_quote(s))
            .collect::<Vec<_>>()
            .join(", ");
        Self::new(
            FieldErrorKind::NotSupported,
            field,
            Some(value.into()),
            format!("supported values: {list}"),
        )
    }
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorKind::Forbidden, field, None, detail)
    }

    /// The message without the field path, as it appears in a `StatusCause`.
    pub fn body(&self) -> String {
        let mut s = self.kind.phrase().to_string();
        if self.kind.shows_value() {
            s.push_str(": ");
            match &self.rendered_value {
                Some(rendered) => s.push_str(rendered),
                None => s.push_str(&render_bad_value(self.bad_value.as_ref())),
            }
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }

    /// `spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive`.
    pub fn message(&self) -> String {
        format!("{}: {}", self.field, self.body())
    }
}

/// Go's `%#v` rendering that field errors use: strings quoted, numbers bare, nil as `null`.
fn render_bad_value(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "null".to_string(),
        Some(Value::String(s)) => go_quote(s),
        Some(other) => other.to_string(),
    }
}

/// Go's `strconv.Quote`: the quoting upstream uses for strings in messages (`%q`). Differs from
/// Rust's `{:?}` for control characters (`\x01` rather than `\u{1}`).
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => {
                let n = c as u32;
                if n <= 0xffff {
                    out.push_str(&format!("\\u{n:04x}"));
                } else {
                    out.push_str(&format!("\\U{n:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A failed API call, ready to be sent as a `Status`.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.reason, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

/// `deployments.apps` for grouped resources, `pods` for the core group.
pub fn qualified_resource(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

fn name_details(group: &str, kind: &str, name: &str) -> Value {
    let mut d = serde_json::Map::new();
    if !name.is_empty() {
        d.insert("name".into(), json!(name));
    }
    if !group.is_empty() {
        d.insert("group".into(), json!(group));
    }
    d.insert("kind".into(), json!(kind));
    Value::Object(d)
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        ApiError {
            code: 404,
            reason: "NotFound",
            message: format!(
                "{} \"{name}\" not found",
                qualified_resource(group, resource)
            ),
            details: Some(name_details(group, resource, name)),
        }
    }

    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        ApiError {
            code: 409,
            reason: "AlreadyExists",
            message: format!(
                "{} \"{name}\" already exists",
                qualified_resource(group, resource)
            ),
            details: Some(name_details(group, resource, name)),
        }
    }

    /// Optimistic concurrency failure; `why` is upstream's tail, usually [`CONFLICT_MODIFIED`].
    pub fn conflict(group: &str, resource: &str, name: &str, why: &str) -> Self {
        ApiError {
            code: 409,
            reason: "Conflict",
            message: format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                qualified_resource(group, resource)
            ),
            details: Some(name_details(group, resource, name)),
        }
    }

    /// 422 Invalid: `Deployment.apps "web" is invalid: [a: ..., b: ...]`.
    pub fn invalid(group: &str, kind: &str, name: &str, errors: &[FieldError]) -> Self {
        let qualified_kind = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let list = match errors {
            [one] => one.message(),
            many => format!(
                "[{}]",
                many.iter()
                    .map(FieldError::message)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let causes: Vec<Value> = errors
            .iter()
            .map(
                |e| json!({"reason": e.kind.cause_reason(), "message": e.body(), "field": e.field}),
            )
            .collect();
        let mut details = name_details(group, kind, name);
        details["causes"] = Value::Array(causes);
        ApiError {
            code: 422,
            reason: "Invalid",
            message: format!("{qualified_kind} \"{name}\" is invalid: {list}"),
            details: Some(details),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }
    /// 405 with upstream's exact message.
    pub fn method_not_supported() -> Self {
        Self::method_not_allowed("the server does not allow this method on the requested resource")
    }
    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(406, "NotAcceptable", message)
    }
    /// 410 for a watch or continue token whose resourceVersion has been compacted away.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }
    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Gone", message)
    }
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(413, "RequestEntityTooLarge", message)
    }
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(415, "UnsupportedMediaType", message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }
    pub fn service_unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    /// The `metav1.Status` object sent on the wire.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

/// Upstream's wording when a precondition on resourceVersion fails.
pub const CONFLICT_MODIFIED: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_message_matches_upstream_form() {
        let one = ApiError::invalid(
            "",
            "Service",
            "web",
            &[FieldError::invalid(
                "spec.ports[0].port",
                0,
                "must be between 1 and 65535, inclusive",
            )],
        );
        assert_eq!(
            one.message,
            "Service \"web\" is invalid: spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"
        );
        assert_eq!(
            one.to_status()["details"]["causes"][0]["reason"],
            "FieldValueInvalid"
        );
        let two = ApiError::invalid(
            "apps",
            "Deployment",
            "Web",
            &[
                FieldError::invalid("metadata.name", "Web", "a lowercase RFC 1123 subdomain"),
                FieldError::required("spec.selector", ""),
            ],
        );
        assert_eq!(
            two.message,
            "Deployment.apps \"Web\" is invalid: [metadata.name: Invalid value: \"Web\": a lowercase RFC 1123 subdomain, spec.selector: Required value]"
        );
        assert_eq!(two.code, 422);
    }

    #[test]
    fn not_found_names_the_qualified_resource() {
        let e = ApiError::not_found("apps", "deployments", "nginx");
        assert_eq!(e.message, "deployments.apps \"nginx\" not found");
        assert_eq!(
            e.to_status()["details"],
            json!({"name": "nginx", "group": "apps", "kind": "deployments"})
        );
        assert_eq!(
            ApiError::not_found("", "pods", "x").message,
            "pods \"x\" not found"
        );
    }
}
