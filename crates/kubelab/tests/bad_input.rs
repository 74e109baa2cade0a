//! Every kind of bad input a user or a client can send, and the answer kube-apiserver gives
//! to it: through kubectl (the line it prints) and over raw HTTPS (the `Status` object). After
//! all of them the server still answers, and nothing stored before was changed or lost.
//!
//! Each test runs all of its cases and then fails once with every difference, so one run
//! shows the whole picture.

mod support;

use serde_json::{Value, json};
use support::{ApiClient, HttpReply, TestServer};

const CM: &str = "/api/v1/namespaces/default/configmaps";
const SVC: &str = "/api/v1/namespaces/default/services";
const DEPLOY: &str = "/apis/apps/v1/namespaces/default/deployments";

/// kube-apiserver's messages for names that are not DNS names.
const DNS1123_SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1035_LABEL: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const CONFLICT_TAIL: &str =
    "the object has been modified; please apply your changes to the latest version and try again";
/// The patch types kube-apiserver lists for built-in resources (CBOR apply is alpha, off).
const PATCH_TYPES_415: &str = "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml";
const METHOD_NOT_ALLOWED: &str = "the server does not allow this method on the requested resource";
const MAX_BODY: usize = 3 * 1024 * 1024;

/// What a message must look like.
#[derive(Clone, Copy, Debug)]
enum Msg {
    Exact(&'static str),
    /// Upstream's fixed beginning, where the rest is a Go library's wording.
    Prefix(&'static str),
    /// Upstream's fixed beginning and end around a Go library's wording.
    Around(&'static str, &'static str),
}

impl Msg {
    fn check(self, got: &str) -> Result<(), String> {
        let ok = match self {
            Msg::Exact(want) => got == want,
            Msg::Prefix(p) => got.starts_with(p),
            Msg::Around(p, s) => got.starts_with(p) && got.ends_with(s),
        };
        if ok {
            Ok(())
        } else {
            Err(format!("message {got:?}, want {self:?}"))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Manifests
// ---------------------------------------------------------------------------------------------

fn configmap(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "1"}})
}

fn service(name: &str, spec: Value) -> Value {
    let mut spec = spec;
    if spec.get("selector").is_none() {
        spec["selector"] = json!({"app": "nginx"});
    }
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec})
}

fn deployment(name: &str, selector: &str, template_label: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": selector}},
            "template": {
                "metadata": {"labels": {"app": template_label}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:1.7.9"}]},
            },
        },
    })
}

/// Objects every test stores first; bad input must leave them exactly as they are.
fn baseline() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (CM, "keep", configmap("keep")),
        (
            SVC,
            "np-owner",
            service(
                "np-owner",
                json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}),
            ),
        ),
        (
            SVC,
            "ip-owner",
            service(
                "ip-owner",
                json!({"clusterIP": "10.96.0.50", "ports": [{"port": 80}]}),
            ),
        ),
        (DEPLOY, "web", deployment("web", "web", "web")),
    ]
}

fn store_baseline(api: &ApiClient) -> Vec<Value> {
    baseline()
        .into_iter()
        .map(|(collection, name, obj)| {
            let r = api.send_json("POST", collection, &obj);
            assert_eq!(r.status, 201, "creating {name}: {}", r.text());
            r.json()
        })
        .collect()
}

/// The server still answers and every baseline object is exactly as it was stored.
/// What the bad writes tried to change: the object without what the controllers running in
/// the server write on their own (status, the Deployment revision annotation, the
/// resourceVersion those writes bump).
fn user_view(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("status");
    }
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
        if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            a.remove("deployment.kubernetes.io/revision");
            if a.is_empty() {
                meta.remove("annotations");
            }
        }
    }
    v
}

fn assert_survived(api: &ApiClient, stored: &[Value]) {
    let ready = api.get("/readyz");
    assert_eq!(
        (ready.status, ready.text().as_str()),
        (200, "ok"),
        "/readyz after bad input"
    );
    let healthz = api.get("/healthz");
    assert_eq!(healthz.status, 200, "/healthz after bad input");
    for ((collection, name, _), before) in baseline().iter().zip(stored) {
        let now = api.get(&format!("{collection}/{name}"));
        assert_eq!(
            now.status,
            200,
            "{name} is gone after bad input: {}",
            now.text()
        );
        assert_eq!(
            &user_view(&now.json()),
            &user_view(before),
            "{name} changed although every write to it was rejected"
        );
    }
    let list = api.get(CM);
    assert_eq!(list.status, 200, "{}", list.text());
    let names: Vec<String> = list.json()["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        names.iter().any(|n| n == "keep"),
        "list of configmaps lost `keep`: {names:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Raw HTTPS: the Status objects
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Auth {
    Admin,
    NoCredentials,
    WrongToken,
}

struct HttpCase {
    what: &'static str,
    method: &'static str,
    path: String,
    content_type: Option<&'static str>,
    body: Option<Vec<u8>>,
    auth: Auth,
    /// Sent over HTTP/1.1 rather than the HTTP/2 kubectl negotiates.
    http1: bool,
    code: u16,
    reason: &'static str,
    message: Msg,
    /// For 422: the causes' fields and reasons, in order.
    causes: Vec<(&'static str, &'static str)>,
    /// `details.kind` and `details.name`, where upstream sets them.
    details: Option<(&'static str, &'static str)>,
}

fn case(
    what: &'static str,
    method: &'static str,
    path: impl Into<String>,
    body: Option<Value>,
) -> HttpCase {
    HttpCase {
        what,
        method,
        path: path.into(),
        content_type: body.as_ref().map(|_| "application/json"),
        body: body.map(|b| b.to_string().into_bytes()),
        auth: Auth::Admin,
        http1: false,
        code: 0,
        reason: "",
        message: Msg::Prefix(""),
        causes: Vec::new(),
        details: None,
    }
}

impl HttpCase {
    fn expect(mut self, code: u16, reason: &'static str, message: Msg) -> Self {
        self.code = code;
        self.reason = reason;
        self.message = message;
        self
    }
    fn causes(mut self, causes: &[(&'static str, &'static str)]) -> Self {
        self.causes = causes.to_vec();
        self
    }
    fn details(mut self, kind: &'static str, name: &'static str) -> Self {
        self.details = Some((kind, name));
        self
    }
    fn raw(mut self, content_type: Option<&'static str>, body: Vec<u8>) -> Self {
        self.content_type = content_type;
        self.body = Some(body);
        self
    }
    fn http1(mut self) -> Self {
        self.http1 = true;
        self
    }
    fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }
}

/// Checks one answer against upstream's Status; returns every difference.
fn check_status(c: &HttpCase, r: &HttpReply) -> Vec<String> {
    let mut diffs = Vec::new();
    if r.status != c.code {
        diffs.push(format!("HTTP {}, want {}", r.status, c.code));
    }
    if !r.content_type.starts_with("application/json") {
        diffs.push(format!(
            "Content-Type {:?}, want application/json",
            r.content_type
        ));
    }
    let Ok(s) = serde_json::from_slice::<Value>(&r.body) else {
        diffs.push(format!("body is not JSON: {:?}", r.text()));
        return diffs;
    };
    for (field, want) in [
        ("kind", json!("Status")),
        ("apiVersion", json!("v1")),
        ("status", json!("Failure")),
        ("code", json!(c.code)),
        ("reason", json!(c.reason)),
    ] {
        if s[field] != want {
            diffs.push(format!("{field} {}, want {want}", s[field]));
        }
    }
    if let Err(e) = c
        .message
        .check(s["message"].as_str().unwrap_or("<no message>"))
    {
        diffs.push(e);
    }
    if let Some((kind, name)) = c.details
        && (s["details"]["kind"] != kind || s["details"]["name"] != name)
    {
        diffs.push(format!(
            "details {}, want kind {kind:?} name {name:?}",
            s["details"]
        ));
    }
    if !c.causes.is_empty() {
        let got: Vec<(String, String)> = s["details"]["causes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| {
                        (
                            x["field"].as_str().unwrap_or("").to_string(),
                            x["reason"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let want: Vec<(String, String)> = c
            .causes
            .iter()
            .map(|(f, r)| (f.to_string(), r.to_string()))
            .collect();
        if got != want {
            diffs.push(format!("causes {got:?}, want {want:?}"));
        }
    }
    diffs
}

fn http_cases() -> Vec<HttpCase> {
    let mut big_port = service(
        "big-port",
        json!({"ports": [{"port": 70000, "targetPort": 80}]}),
    );
    big_port["spec"]["type"] = json!("ClusterIP");
    let mut strict = deployment("strict", "strict", "strict");
    strict["spec"]["foo"] = json!("bar");
    let mut wrong_type = deployment("wrong-type", "wrong-type", "wrong-type");
    wrong_type["spec"]["replicas"] = json!("three");
    let stale = {
        let mut cm = configmap("keep");
        cm["metadata"]["resourceVersion"] = json!("1");
        cm["data"]["a"] = json!("changed");
        cm
    };
    let too_big = {
        // Valid JSON padded past the limit with whitespace: only the size is wrong.
        let mut b = configmap("too-big").to_string().into_bytes();
        b.resize(MAX_BODY + 1, b' ');
        b
    };
    let far_too_big = {
        let mut b = configmap("far-too-big").to_string().into_bytes();
        b.resize(4 * 1024 * 1024, b' ');
        b
    };
    let exactly_limit = {
        let mut b = configmap("at-the-limit").to_string().into_bytes();
        b.resize(MAX_BODY, b' ');
        b
    };
    let no_account = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "no-account"},
        "spec": {"serviceAccountName": "missing", "containers": [{"name": "c", "image": "nginx"}]},
    });
    vec![
        case(
            "pod naming a ServiceAccount that does not exist (ServiceAccount admission)",
            "POST",
            "/api/v1/namespaces/default/pods",
            Some(no_account),
        )
        .expect(
            403,
            "Forbidden",
            Msg::Exact(
                "pods \"no-account\" is forbidden: error looking up service account default/missing: serviceaccount \"missing\" not found",
            ),
        ),
        case("GET of a missing object", "GET", format!("{CM}/nope"), None)
            .expect(404, "NotFound", Msg::Exact("configmaps \"nope\" not found"))
            .details("configmaps", "nope"),
        case("GET of a missing deployment", "GET", format!("{DEPLOY}/nope"), None)
            .expect(404, "NotFound", Msg::Exact("deployments.apps \"nope\" not found"))
            .details("deployments", "nope"),
        case("DELETE of a missing object", "DELETE", format!("{SVC}/nope"), None)
            .expect(404, "NotFound", Msg::Exact("services \"nope\" not found"))
            .details("services", "nope"),
        case("create of an existing name", "POST", CM, Some(configmap("keep")))
            .expect(409, "AlreadyExists", Msg::Exact("configmaps \"keep\" already exists"))
            .details("configmaps", "keep"),
        case("update with a stale resourceVersion", "PUT", format!("{CM}/keep"), Some(stale))
            .expect(409, "Conflict", Msg::Exact("Operation cannot be fulfilled on configmaps \"keep\": the object has been modified; please apply your changes to the latest version and try again"))
            .details("configmaps", "keep"),
        case("ConfigMap name that is not a DNS subdomain", "POST", CM, Some(configmap("Bad_Name")))
            .expect(422, "Invalid", Msg::Exact(leak(format!("ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": {DNS1123_SUBDOMAIN}"))))
            .causes(&[("metadata.name", "FieldValueInvalid")])
            .details("ConfigMap", "Bad_Name"),
        case("Service name that is not a DNS label", "POST", SVC, Some(service("Web", json!({"ports": [{"port": 80}]}))))
            .expect(422, "Invalid", Msg::Exact(leak(format!("Service \"Web\" is invalid: metadata.name: Invalid value: \"Web\": {DNS1035_LABEL}"))))
            .causes(&[("metadata.name", "FieldValueInvalid")])
            .details("Service", "Web"),
        case("Service port 70000", "POST", SVC, Some(big_port))
            .expect(422, "Invalid", Msg::Exact("Service \"big-port\" is invalid: spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive"))
            .causes(&[("spec.ports[0].port", "FieldValueInvalid")])
            .details("Service", "big-port"),
        case("Deployment whose selector does not match its template", "POST", DEPLOY, Some(deployment("mismatch", "web", "other")))
            .expect(422, "Invalid", Msg::Exact("Deployment.apps \"mismatch\" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"other\"}: `selector` does not match template `labels`"))
            .causes(&[("spec.template.metadata.labels", "FieldValueInvalid")])
            .details("Deployment", "mismatch"),
        case("second Service with the same nodePort", "POST", SVC, Some(service("second-np", json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}))))
            .expect(422, "Invalid", Msg::Exact("Service \"second-np\" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"))
            .causes(&[("spec.ports[0].nodePort", "FieldValueInvalid")])
            .details("Service", "second-np"),
        case("one Service listing a nodePort twice", "POST", SVC, Some(service("twice-np", json!({"type": "NodePort", "ports": [{"name": "a", "port": 80, "nodePort": 30100}, {"name": "b", "port": 81, "nodePort": 30100}]}))))
            .expect(422, "Invalid", Msg::Exact("Service \"twice-np\" is invalid: spec.ports[1].nodePort: Duplicate value: 30100"))
            .causes(&[("spec.ports[1].nodePort", "FieldValueDuplicate")])
            .details("Service", "twice-np"),
        case("nodePort outside 30000-32767", "POST", SVC, Some(service("far-np", json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 40000}]}))))
            .expect(422, "Invalid", Msg::Exact("Service \"far-np\" is invalid: spec.ports[0].nodePort: Invalid value: 40000: provided port is not in the valid range. The range of valid ports is 30000-32767"))
            .causes(&[("spec.ports[0].nodePort", "FieldValueInvalid")])
            .details("Service", "far-np"),
        case("clusterIP already allocated", "POST", SVC, Some(service("ip-taken", json!({"clusterIP": "10.96.0.50", "ports": [{"port": 80}]}))))
            .expect(422, "Invalid", Msg::Exact("Service \"ip-taken\" is invalid: spec.clusterIPs: Invalid value: []string{\"10.96.0.50\"}: failed to allocate IP 10.96.0.50: provided IP is already allocated"))
            .causes(&[("spec.clusterIPs", "FieldValueInvalid")])
            .details("Service", "ip-taken"),
        case("clusterIP outside 10.96.0.0/12", "POST", SVC, Some(service("ip-outside", json!({"clusterIP": "10.0.0.5", "ports": [{"port": 80}]}))))
            .expect(422, "Invalid", Msg::Exact("Service \"ip-outside\" is invalid: spec.clusterIPs: Invalid value: []string{\"10.0.0.5\"}: failed to allocate IP 10.0.0.5: the provided IP (10.0.0.5) is not in the valid range. The range of valid IPs is 10.96.0.0/12"))
            .causes(&[("spec.clusterIPs", "FieldValueInvalid")])
            .details("Service", "ip-outside"),
        case("unknown field under fieldValidation=Strict", "POST", format!("{DEPLOY}?fieldValidation=Strict"), Some(strict))
            .expect(400, "BadRequest", Msg::Exact("Deployment in version \"v1\" cannot be handled as a Deployment: strict decoding error: unknown field \"spec.foo\"")),
        case("body that is not JSON", "POST", CM, None)
            .raw(Some("application/json"), b"{\"apiVersion\":".to_vec())
            .expect(400, "BadRequest", Msg::Around("the object provided is unrecognized (must be of type ConfigMap): couldn't get version/kind; json parse error: ", " ({\"apiVersion\":)")),
        case("a field of the wrong type", "POST", DEPLOY, Some(wrong_type))
            .expect(400, "BadRequest", Msg::Prefix("Deployment in version \"v1\" cannot be handled as a Deployment: ")),
        case("body over 3 MiB", "POST", CM, None)
            .raw(Some("application/json"), too_big)
            .expect(413, "RequestEntityTooLarge", Msg::Exact("Request entity too large: limit is 3145728")),
        case("body of 4 MiB over HTTP/2 (the client is still sending when the server answers)", "POST", CM, None)
            .raw(Some("application/json"), far_too_big.clone())
            .expect(413, "RequestEntityTooLarge", Msg::Exact("Request entity too large: limit is 3145728")),
        case("body of 4 MiB over HTTP/1.1 (the client is still sending when the server answers)", "POST", CM, None)
            .raw(Some("application/json"), far_too_big)
            .http1()
            .expect(413, "RequestEntityTooLarge", Msg::Exact("Request entity too large: limit is 3145728")),
        case("no credentials", "GET", CM, None)
            .auth(Auth::NoCredentials)
            .expect(401, "Unauthorized", Msg::Exact("Unauthorized")),
        case("a wrong bearer token", "GET", CM, None)
            .auth(Auth::WrongToken)
            .expect(401, "Unauthorized", Msg::Exact("Unauthorized")),
        case("a write without credentials", "POST", CM, Some(configmap("anonymous")))
            .auth(Auth::NoCredentials)
            .expect(401, "Unauthorized", Msg::Exact("Unauthorized")),
        case("PUT on a collection", "PUT", CM, Some(configmap("keep")))
            .expect(405, "MethodNotAllowed", Msg::Exact(METHOD_NOT_ALLOWED)),
        case("deletecollection of namespaces", "DELETE", "/api/v1/namespaces", None)
            .expect(405, "MethodNotAllowed", Msg::Exact(METHOD_NOT_ALLOWED)),
        case("PATCH with a plain JSON content type", "PATCH", format!("{CM}/keep"), Some(json!({"data": {"a": "2"}})))
            .expect(415, "UnsupportedMediaType", Msg::Exact(PATCH_TYPES_415)),
        case("PATCH with a text content type", "PATCH", format!("{CM}/keep"), None)
            .raw(Some("text/plain"), b"{\"data\":{\"a\":\"2\"}}".to_vec())
            .expect(415, "UnsupportedMediaType", Msg::Exact(PATCH_TYPES_415)),
        case("POST with a text content type", "POST", CM, None)
            .raw(Some("text/plain"), configmap("as-text").to_string().into_bytes())
            .expect(415, "UnsupportedMediaType", Msg::Exact("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf")),
        case("JSON patch that is not a list of operations", "PATCH", format!("{CM}/keep"), None)
            .raw(Some("application/json-patch+json"), b"{\"op\":\"add\"}".to_vec())
            .expect(400, "BadRequest", Msg::Prefix("")),
        case("JSON patch testing a wrong value", "PATCH", format!("{CM}/keep"), None)
            .raw(Some("application/json-patch+json"), br#"[{"op":"test","path":"/data/a","value":"no"},{"op":"replace","path":"/data/a","value":"x"}]"#.to_vec())
            .expect(422, "Invalid", Msg::Exact("the server rejected our request due to an error in our request")),
    ]
    .into_iter()
    .chain(std::iter::once(
        // Exactly at the limit is still read (and here stored): the limit is "more than 3 MiB".
        case("body of exactly 3 MiB", "POST", CM, None).raw(Some("application/json"), exactly_limit).expect(201, "", Msg::Prefix("")),
    ))
    .collect()
}

/// Leaks a message built at run time into the `'static` table (test-only, a few strings).
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

#[test]
fn raw_http_bad_input_gets_upstream_status_objects() {
    let s = TestServer::start();
    let admin = s.api();
    let admin_http1 = s.api_http1();
    let stored = store_baseline(&admin);
    let mut failures = Vec::new();
    for c in http_cases() {
        let admin = if c.http1 { &admin_http1 } else { &admin };
        let client = match c.auth {
            Auth::Admin => admin.clone(),
            Auth::NoCredentials => admin.with_token(None),
            Auth::WrongToken => admin.with_token(Some("not-the-admin-token")),
        };
        let r = match client.try_send(c.method, &c.path, c.content_type, c.body.clone()) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!(
                    "{} ({} {}): no answer: {e:?}",
                    c.what, c.method, c.path
                ));
                continue;
            }
        };
        let diffs = if c.code == 201 {
            if r.status == 201 {
                Vec::new()
            } else {
                vec![format!("HTTP {}, want 201: {}", r.status, short(&r.text()))]
            }
        } else {
            check_status(&c, &r)
        };
        if !diffs.is_empty() {
            failures.push(format!(
                "{} ({} {}):\n    {}\n    body: {}",
                c.what,
                c.method,
                c.path,
                diffs.join("\n    "),
                short(&r.text())
            ));
        }
    }
    // Rejected Services gave back what they were allocated: the same nodePort and clusterIP
    // can be taken by the next valid Service.
    let mut reuse = Vec::new();
    let after_invalid = admin.send_json(
        "POST",
        SVC,
        &service("bad-and-np", json!({"type": "NodePort", "ports": [{"port": 70000, "targetPort": 80, "nodePort": 30200}], "clusterIP": "10.96.0.60"})),
    );
    if after_invalid.status != 422 {
        reuse.push(format!(
            "an invalid NodePort Service got HTTP {}: {}",
            after_invalid.status,
            short(&after_invalid.text())
        ));
    }
    let good = admin.send_json(
        "POST",
        SVC,
        &service("good-np", json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30200}], "clusterIP": "10.96.0.60"})),
    );
    if good.status != 201 {
        reuse.push(format!(
            "nodePort 30200 / clusterIP 10.96.0.60 leaked by a rejected Service: HTTP {}: {}",
            good.status,
            short(&good.text())
        ));
    }
    failures.extend(reuse);
    // Nothing a rejected request named was stored.
    for (collection, name) in [
        (CM, "Bad_Name"),
        (SVC, "second-np"),
        (SVC, "ip-taken"),
        (SVC, "far-np"),
        (DEPLOY, "mismatch"),
        (DEPLOY, "strict"),
        (CM, "too-big"),
    ] {
        let r = admin.get(&format!("{collection}/{name}"));
        if r.status != 404 {
            failures.push(format!(
                "rejected object {name} is stored anyway (GET answered {})",
                r.status
            ));
        }
    }
    assert_survived(&admin, &stored);
    assert!(
        failures.is_empty(),
        "{} of the bad inputs got a non-upstream answer:\n\n{}\n\nserver log tail:\n{}",
        failures.len(),
        failures.join("\n\n"),
        log_tail(&s)
    );
}

/// Unknown fields under the default `fieldValidation=Warn` come back as `Warning` headers,
/// which upstream deduplicates and truncates (4 Ki runes in all, items cut to 256 runes once
/// over), so a body with thousands of unknown fields still gets a readable answer, and soon
/// (60000 of them once took 2.5 minutes when duplicates were dropped pairwise).
#[test]
fn thousands_of_unknown_fields_get_a_bounded_set_of_warnings() {
    let s = TestServer::start();
    let mut failures = Vec::new();
    for (client, transport) in [(s.api(), "HTTP/2"), (s.api_http1(), "HTTP/1.1")] {
        let name = format!(
            "many-unknown-{}",
            transport.replace(['/', '.'], "").to_lowercase()
        );
        let mut d = deployment(&name, "many", "many");
        for i in 0..60_000 {
            d["spec"]["selector"][format!("key-{i}")] = json!("v");
        }
        let r = match client.try_send(
            "POST",
            DEPLOY,
            Some("application/json"),
            Some(d.to_string().into_bytes()),
        ) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!(
                    "{transport}: no answer to a create with 60000 unknown fields: {e:?}"
                ));
                continue;
            }
        };
        if r.status != 201 {
            failures.push(format!(
                "{transport}: HTTP {}, want 201: {}",
                r.status,
                short(&r.text())
            ));
        }
        let total: usize = r.warnings.iter().map(String::len).sum();
        if total > 8 * 1024 {
            failures.push(format!("{transport}: {} Warning headers of {total} bytes in all; upstream stops near 4 KiB", r.warnings.len()));
        }
        let want_first = "299 - \"unknown field \\\"spec.selector.key-0\\\"\"";
        if r.warnings.first().map(String::as_str) != Some(want_first) {
            failures.push(format!(
                "{transport}: first warning {:?}, want {want_first:?}",
                r.warnings.first()
            ));
        }
    }
    assert!(
        s.api().get("/readyz").status == 200,
        "server down after many unknown fields"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// kubectl: the lines it prints
// ---------------------------------------------------------------------------------------------

struct KubectlCase {
    what: &'static str,
    args: &'static [&'static str],
    stdin: String,
    /// The error line kubectl prints (one line of its stderr).
    line: Msg,
}

fn kubectl_cases() -> Vec<KubectlCase> {
    let create = &["create", "-f", "-"][..];
    let yaml = |s: &str| s.to_string();
    vec![
        KubectlCase {
            what: "ConfigMap with an invalid name",
            args: create,
            stdin: yaml(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\ndata:\n  a: \"1\"\n",
            ),
            line: Msg::Exact(leak(format!(
                "The ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": {DNS1123_SUBDOMAIN}"
            ))),
        },
        KubectlCase {
            what: "Service with an invalid name",
            args: create,
            stdin: yaml(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: Web\nspec:\n  selector:\n    app: nginx\n  ports:\n  - port: 80\n",
            ),
            line: Msg::Exact(leak(format!(
                "The Service \"Web\" is invalid: metadata.name: Invalid value: \"Web\": {DNS1035_LABEL}"
            ))),
        },
        KubectlCase {
            what: "Service port 70000",
            args: create,
            stdin: yaml(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: big-port\nspec:\n  selector:\n    app: nginx\n  ports:\n  - port: 70000\n    targetPort: 80\n",
            ),
            line: Msg::Exact(
                "The Service \"big-port\" is invalid: spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive",
            ),
        },
        KubectlCase {
            what: "Deployment whose selector does not match its template",
            args: create,
            stdin: yaml(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: mismatch\nspec:\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: other\n    spec:\n      containers:\n      - name: nginx\n        image: nginx\n",
            ),
            line: Msg::Exact(
                "The Deployment \"mismatch\" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"other\"}: `selector` does not match template `labels`",
            ),
        },
        KubectlCase {
            what: "unknown field (kubectl validates strictly by default)",
            args: create,
            stdin: yaml(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: strict\nspec:\n  foo: bar\n  selector:\n    matchLabels:\n      app: strict\n  template:\n    metadata:\n      labels:\n        app: strict\n    spec:\n      containers:\n      - name: nginx\n        image: nginx\n",
            ),
            line: Msg::Exact(
                "Error from server (BadRequest): error when creating \"STDIN\": Deployment in version \"v1\" cannot be handled as a Deployment: strict decoding error: unknown field \"spec.foo\"",
            ),
        },
        KubectlCase {
            what: "a field of the wrong type",
            args: create,
            stdin: yaml(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: wrong-type\nspec:\n  replicas: three\n  selector:\n    matchLabels:\n      app: wrong-type\n  template:\n    metadata:\n      labels:\n        app: wrong-type\n    spec:\n      containers:\n      - name: nginx\n        image: nginx\n",
            ),
            line: Msg::Prefix(
                "Error from server (BadRequest): error when creating \"STDIN\": Deployment in version \"v1\" cannot be handled as a Deployment: ",
            ),
        },
        KubectlCase {
            what: "second Service with the same nodePort",
            args: create,
            stdin: yaml(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: second-np\nspec:\n  type: NodePort\n  selector:\n    app: nginx\n  ports:\n  - port: 80\n    nodePort: 30080\n",
            ),
            line: Msg::Exact(
                "The Service \"second-np\" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated",
            ),
        },
        KubectlCase {
            what: "nodePort outside the range",
            args: create,
            stdin: yaml(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: far-np\nspec:\n  type: NodePort\n  selector:\n    app: nginx\n  ports:\n  - port: 80\n    nodePort: 40000\n",
            ),
            line: Msg::Exact(
                "The Service \"far-np\" is invalid: spec.ports[0].nodePort: Invalid value: 40000: provided port is not in the valid range. The range of valid ports is 30000-32767",
            ),
        },
        KubectlCase {
            what: "clusterIP already allocated",
            args: create,
            stdin: yaml(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: ip-taken\nspec:\n  clusterIP: 10.96.0.50\n  selector:\n    app: nginx\n  ports:\n  - port: 80\n",
            ),
            line: Msg::Exact(
                "The Service \"ip-taken\" is invalid: spec.clusterIPs: Invalid value: []string{\"10.96.0.50\"}: failed to allocate IP 10.96.0.50: provided IP is already allocated",
            ),
        },
        KubectlCase {
            what: "clusterIP outside the service range",
            args: create,
            stdin: yaml(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: ip-outside\nspec:\n  clusterIP: 10.0.0.5\n  selector:\n    app: nginx\n  ports:\n  - port: 80\n",
            ),
            line: Msg::Exact(
                "The Service \"ip-outside\" is invalid: spec.clusterIPs: Invalid value: []string{\"10.0.0.5\"}: failed to allocate IP 10.0.0.5: the provided IP (10.0.0.5) is not in the valid range. The range of valid IPs is 10.96.0.0/12",
            ),
        },
        KubectlCase {
            what: "create of an existing name",
            args: create,
            stdin: yaml(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: keep\ndata:\n  a: \"1\"\n",
            ),
            line: Msg::Exact(
                "Error from server (AlreadyExists): error when creating \"STDIN\": configmaps \"keep\" already exists",
            ),
        },
        KubectlCase {
            what: "a manifest over 3 MiB",
            args: create,
            stdin: format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: huge\ndata:\n  blob: {}\n",
                "x".repeat(4 * 1024 * 1024)
            ),
            line: Msg::Exact(
                "Error from server (RequestEntityTooLarge): error when creating \"STDIN\": Request entity too large: limit is 3145728",
            ),
        },
        KubectlCase {
            what: "get of a missing object",
            args: &["get", "deployment", "nope"],
            stdin: String::new(),
            line: Msg::Exact("Error from server (NotFound): deployments.apps \"nope\" not found"),
        },
        KubectlCase {
            what: "replace with a stale resourceVersion",
            args: &["replace", "-f", "-"],
            stdin: yaml(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: keep\n  resourceVersion: \"1\"\ndata:\n  a: changed\n",
            ),
            line: Msg::Exact(leak(format!(
                "Error from server (Conflict): error when replacing \"STDIN\": Operation cannot be fulfilled on configmaps \"keep\": {CONFLICT_TAIL}"
            ))),
        },
        KubectlCase {
            what: "delete of a missing object",
            args: &["delete", "service", "nope"],
            stdin: String::new(),
            line: Msg::Exact("Error from server (NotFound): services \"nope\" not found"),
        },
    ]
}

#[test]
fn kubectl_prints_upstream_errors_for_bad_manifests() {
    let s = TestServer::start();
    let admin = s.api();
    let stored = store_baseline(&admin);
    let mut failures = Vec::new();
    for c in kubectl_cases() {
        let out = s.kubectl_stdin(c.args, &c.stdin);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.success() {
            failures.push(format!(
                "{}: kubectl {} succeeded, printed {:?}",
                c.what,
                c.args.join(" "),
                String::from_utf8_lossy(&out.stdout)
            ));
            continue;
        }
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        if !lines.iter().any(|l| c.line.check(l).is_ok()) {
            failures.push(format!(
                "{}: kubectl {} printed:\n    {}\n  want the line {:?}",
                c.what,
                c.args.join(" "),
                lines.join("\n    "),
                c.line
            ));
        }
    }
    // The Service and the ConfigMap a user made before are still there, unchanged.
    let svcs = s.ok(&["get", "services", "-o", "name"]);
    for name in ["service/np-owner", "service/ip-owner", "service/kubernetes"] {
        if !svcs.lines().any(|l| l == name) {
            failures.push(format!("{name} missing from kubectl get services: {svcs}"));
        }
    }
    for name in ["second-np", "ip-taken", "far-np", "big-port"] {
        let out = s.kubectl(&["get", "service", name]);
        if out.status.success() {
            failures.push(format!("rejected service {name} is stored anyway"));
        }
    }
    assert_eq!(
        s.ok(&["get", "configmap", "keep", "-o", "jsonpath={.data.a}"]),
        "1"
    );
    assert_survived(&admin, &stored);
    assert!(
        failures.is_empty(),
        "{} kubectl errors differ from upstream's:\n\n{}\n\nserver log tail:\n{}",
        failures.len(),
        failures.join("\n\n"),
        log_tail(&s)
    );
}

fn short(s: &str) -> String {
    if s.len() > 600 {
        format!(
            "{}... ({} bytes)",
            s.chars().take(600).collect::<String>(),
            s.len()
        )
    } else {
        s.to_string()
    }
}

fn log_tail(s: &TestServer) -> String {
    let log = s.log();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
