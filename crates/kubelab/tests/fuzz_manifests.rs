//! Property test: random JSON, and mutations of the course's valid manifests (dropped,
//! duplicated and retyped fields, odd names, ports and labels, deep nesting, huge arrays), are
//! POSTed to their collection, PUT onto an existing object and PATCHed onto it with all three
//! patch types. Every answer must be below 500 and be a JSON object or a failure `Status`, and
//! the server must stay up. One server serves the whole test.

mod support;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestCaseResult, TestRunner};
use serde_json::{Map, Value, json};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::time::Instant;
use support::{ApiClient, HttpReply, TestServer, fixture_str};

const MAX_BODY: usize = 3 * 1024 * 1024;

/// A kind under test: its collection, the object PUT and PATCH aim at, a valid manifest, and
/// the fields worth aiming at.
struct Target {
    collection: &'static str,
    base: Value,
    interesting: &'static [&'static str],
}

const EXISTING: &str = "fuzz-target";

const COMMON_PATHS: &[&str] = &[
    "/apiVersion",
    "/kind",
    "/metadata",
    "/metadata/name",
    "/metadata/namespace",
    "/metadata/generateName",
    "/metadata/labels",
    "/metadata/labels/app",
    "/metadata/annotations",
    "/metadata/resourceVersion",
    "/metadata/uid",
    "/metadata/finalizers",
    "/metadata/ownerReferences",
    "/metadata/creationTimestamp",
    "/metadata/deletionTimestamp",
    "/metadata/generation",
    "/status",
];

fn targets(server: &TestServer) -> Vec<Target> {
    // The course's own manifests, turned into JSON by kubectl itself.
    let from_fixture = |name: &str| -> Value {
        let out = server.ok(&[
            "create",
            "--dry-run=client",
            "-o",
            "json",
            "-f",
            &fixture_str(name),
        ]);
        serde_json::from_str(&out).expect("kubectl -o json")
    };
    vec![
        Target {
            collection: "/apis/apps/v1/namespaces/default/deployments",
            base: from_fixture("deployment.yaml"),
            interesting: &[
                "/spec/replicas",
                "/spec/selector",
                "/spec/selector/matchLabels",
                "/spec/selector/matchExpressions",
                "/spec/template/metadata/labels",
                "/spec/template/spec/containers",
                "/spec/template/spec/containers/0/name",
                "/spec/template/spec/containers/0/image",
                "/spec/template/spec/containers/0/ports/0/containerPort",
                "/spec/template/spec/containers/0/ports/0/protocol",
                "/spec/strategy",
                "/spec/strategy/rollingUpdate/maxSurge",
                "/spec/revisionHistoryLimit",
                "/spec/progressDeadlineSeconds",
                "/spec/minReadySeconds",
                "/spec/paused",
            ],
        },
        Target {
            collection: "/api/v1/namespaces/default/services",
            base: from_fixture("nodeport.yaml"),
            interesting: &[
                "/spec/type",
                "/spec/ports",
                "/spec/ports/0/port",
                "/spec/ports/0/targetPort",
                "/spec/ports/0/nodePort",
                "/spec/ports/0/protocol",
                "/spec/ports/0/name",
                "/spec/selector",
                "/spec/clusterIP",
                "/spec/clusterIPs",
                "/spec/externalTrafficPolicy",
                "/spec/sessionAffinity",
                "/spec/ipFamilies",
                "/spec/ipFamilyPolicy",
                "/spec/externalName",
                "/spec/externalIPs",
            ],
        },
        Target {
            collection: "/api/v1/namespaces/default/services",
            base: from_fixture("cluster.yaml"),
            interesting: &[
                "/spec/ports/0/port",
                "/spec/ports/0/targetPort",
                "/spec/clusterIP",
                "/spec/type",
                "/spec/selector/app",
            ],
        },
        Target {
            collection: "/api/v1/namespaces/default/pods",
            base: json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "nginx", "labels": {"app": "nginx"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:1.7.9", "ports": [{"containerPort": 80}]}]},
            }),
            interesting: &[
                "/spec/containers",
                "/spec/containers/0/name",
                "/spec/containers/0/image",
                "/spec/containers/0/ports/0/containerPort",
                "/spec/containers/0/ports/0/hostPort",
                "/spec/containers/0/resources/limits/cpu",
                "/spec/containers/0/env",
                "/spec/restartPolicy",
                "/spec/nodeName",
                "/spec/volumes",
                "/spec/terminationGracePeriodSeconds",
            ],
        },
        Target {
            collection: "/api/v1/namespaces/default/configmaps",
            base: json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "settings", "labels": {"app": "nginx"}},
                "data": {"color": "blue", "size": "3"},
            }),
            interesting: &[
                "/data",
                "/data/color",
                "/binaryData",
                "/binaryData/x",
                "/immutable",
            ],
        },
    ]
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

/// Strings that matter to an API server, plus arbitrary ones.
fn any_string() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => ".{0,24}",
        2 => "[a-z0-9.-]{0,70}",
        1 => "[A-Za-z0-9_ /:=]{0,20}",
        1 => "a{250,300}",
        1 => prop::sample::select(vec![
            "", "v1", "apps/v1", "ConfigMap", "Service", "Deployment", "Pod", "NodePort", "ClusterIP",
            "LoadBalancer", "ExternalName", "None", "TCP", "UDP", "SCTP", "10.96.0.1", "10.96.0.10",
            "0.0.0.0", "::1", "256.1.1.1", "default", "kube-system", "25%", "-1", "80", "http",
            "1Gi", "100m", "-5", "\u{0}", "\u{202e}", "é", "Always", "IfNotPresent",
        ])
        .prop_map(str::to_string),
    ]
}

/// Numbers where ports, replicas and counts break: edges of ranges, of int32 and of JSON.
fn any_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        (-2i64..70_000).prop_map(Value::from),
        (29_990i64..32_800).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        prop::sample::select(vec![
            json!(0),
            json!(65535),
            json!(65536),
            json!(2147483647),
            json!(2147483648i64),
            json!(-2147483649i64),
            json!(1.5),
            json!(-0.0),
            json!(9007199254740993u64),
        ]),
        "[0-9]{1,6}".prop_map(Value::from),
    ]
}

fn any_key() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => prop::sample::select(vec![
            "apiVersion", "kind", "metadata", "name", "namespace", "labels", "annotations", "spec",
            "status", "data", "binaryData", "ports", "port", "targetPort", "nodePort", "protocol",
            "selector", "matchLabels", "matchExpressions", "template", "containers", "image",
            "replicas", "type", "clusterIP", "resourceVersion", "uid", "finalizers", "items",
            "op", "path", "value", "$patch", "$retainKeys", "$setElementOrder/containers",
            "$deleteFromPrimitiveList/finalizers",
        ])
        .prop_map(str::to_string),
        1 => any_string(),
    ]
}

/// Arbitrary JSON, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any_number(),
        any_string().prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((any_key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Raw JSON text that no `Value` can hold: out-of-range numbers, non-JSON words, deep nesting.
#[derive(Clone, Debug)]
enum Raw {
    Text(&'static str),
    Nested { depth: usize, objects: bool },
}

impl Raw {
    fn render(&self) -> String {
        match self {
            Raw::Text(t) => t.to_string(),
            Raw::Nested {
                depth,
                objects: false,
            } => format!("{}1{}", "[".repeat(*depth), "]".repeat(*depth)),
            Raw::Nested {
                depth,
                objects: true,
            } => format!("{}1{}", "{\"a\":".repeat(*depth), "}".repeat(*depth)),
        }
    }
}

fn any_raw() -> impl Strategy<Value = Raw> {
    prop_oneof![
        prop::sample::select(vec![
            "1e400",
            "-1e400",
            "18446744073709551616",
            "-9223372036854775809",
            "1.0e-400",
            "00",
            "0x10",
            "NaN",
            "Infinity",
            "-",
            "\"\\ud800\"",
            "\"\\u0000\"",
            "tru",
            "[1,]",
            "{\"a\":1,}",
            "\"unterminated",
        ])
        .prop_map(Raw::Text),
        (1usize..200_000, any::<bool>())
            .prop_map(|(depth, objects)| Raw::Nested { depth, objects }),
    ]
}

/// One change to a valid manifest. Paths are picked by `Index` among the manifest's own paths
/// (or the kind's interesting ones), so they hit real fields.
#[derive(Clone, Debug)]
enum Mutation {
    Drop(Index),
    /// Writes an object's member a second time (a duplicate key in the JSON text), with the
    /// same value or another.
    DuplicateKey(Index, Option<Value>),
    DuplicateElement(Index),
    Retype(Index, Value),
    SetInteresting(Index, Value),
    SetNumber(Index, Value),
    Raw(Index, Raw),
    Name(String),
    Label(String, String),
    /// Replaces a list (or any field) with `len` copies of an element.
    HugeArray(Index, usize, Value),
    /// Fills labels, annotations or data with `len` generated entries.
    HugeMap(Index, usize),
}

fn any_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => any::<Index>().prop_map(Mutation::Drop),
        2 => (any::<Index>(), prop::option::of(any_json())).prop_map(|(i, v)| Mutation::DuplicateKey(i, v)),
        1 => any::<Index>().prop_map(Mutation::DuplicateElement),
        3 => (any::<Index>(), any_json()).prop_map(|(i, v)| Mutation::Retype(i, v)),
        4 => (any::<Index>(), prop_oneof![any_json(), any_number()]).prop_map(|(i, v)| Mutation::SetInteresting(i, v)),
        3 => (any::<Index>(), any_number()).prop_map(|(i, v)| Mutation::SetNumber(i, v)),
        1 => (any::<Index>(), any_raw()).prop_map(|(i, r)| Mutation::Raw(i, r)),
        2 => any_string().prop_map(Mutation::Name),
        2 => (any_string(), any_string()).prop_map(|(k, v)| Mutation::Label(k, v)),
    ]
}

/// Mutations that make big bodies: huge arrays and maps, deep nesting (up to ~3 MiB).
fn big_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 1_000usize..60_000, any_json())
            .prop_map(|(i, n, v)| Mutation::HugeArray(i, n, v)),
        (any::<Index>(), 1_000usize..60_000).prop_map(|(i, n)| Mutation::HugeMap(i, n)),
        (
            any::<Index>(),
            (1_000usize..1_500_000, any::<bool>())
                .prop_map(|(depth, objects)| Raw::Nested { depth, objects })
        )
            .prop_map(|(i, r)| Mutation::Raw(i, r)),
    ]
}

/// A JSON Patch: mostly well-formed operations on real paths, some not.
fn any_json_patch() -> impl Strategy<Value = Value> {
    let pointer = prop_oneof![
        3 => prop::sample::select(vec![
            "/metadata/labels/x", "/metadata/labels", "/metadata/name", "/metadata/resourceVersion",
            "/spec/ports/0/port", "/spec/ports/-", "/spec/ports/0", "/spec/replicas", "/data/k", "/data",
            "/spec/template/spec/containers/0/image", "/spec/containers/0", "/spec/selector", "/status",
            "/metadata/finalizers/-", "", "/", "/spec/ports/99999999999999999999", "/a~2b", "/kind",
        ])
        .prop_map(str::to_string),
        1 => "(/[a-zA-Z0-9~-]{0,8}){0,5}",
    ];
    let op = prop_oneof![
        4 => prop::sample::select(vec!["add", "remove", "replace", "move", "copy", "test"]).prop_map(str::to_string),
        1 => "[a-z]{0,6}",
    ];
    prop::collection::vec(
        (op, pointer.clone(), pointer, any_json(), any::<u8>()),
        0..5,
    )
    .prop_map(|ops| {
        Value::Array(
            ops.into_iter()
                .map(|(op, path, from, value, shape)| {
                    let mut m = json!({"op": op, "path": path});
                    if shape & 1 == 0 {
                        m["value"] = value.clone();
                    }
                    if shape & 2 == 0 {
                        m["from"] = json!(from);
                    }
                    if shape & 12 == 12 {
                        m["path"] = value;
                    }
                    m
                })
                .collect(),
        )
    })
}

/// A body: JSON most of the time, sometimes any bytes at all.
#[derive(Clone, Debug)]
enum Body {
    Json(Value),
    Bytes(Vec<u8>),
}

// ---------------------------------------------------------------------------------------------
// Applying mutations
// ---------------------------------------------------------------------------------------------

/// Every JSON pointer in `v` (containers included; the root is "").
fn pointers(v: &Value) -> Vec<String> {
    fn walk(v: &Value, at: String, out: &mut Vec<String>) {
        out.push(at.clone());
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    walk(
                        x,
                        format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                        out,
                    );
                }
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    walk(x, format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, String::new(), &mut out);
    out
}

fn split(pointer: &str) -> Option<(&str, String)> {
    let (parent, last) = pointer.rsplit_once('/')?;
    Some((parent, last.replace("~1", "/").replace("~0", "~")))
}

/// Sets `pointer` to `value`, creating missing objects on the way; no-op where a step is not
/// a container.
fn set(doc: &mut Value, pointer: &str, value: Value) {
    if pointer.is_empty() {
        *doc = value;
        return;
    }
    let mut cur = doc;
    let tokens: Vec<String> = pointer[1..]
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect();
    for (i, t) in tokens.iter().enumerate() {
        let last = i + 1 == tokens.len();
        if cur.is_null() {
            *cur = Value::Object(Map::new());
        }
        cur = match cur {
            Value::Object(m) => {
                if last {
                    m.insert(t.clone(), value);
                    return;
                }
                m.entry(t.clone()).or_insert(Value::Null)
            }
            Value::Array(a) => match t.parse::<usize>() {
                Ok(n) if n < a.len() => {
                    if last {
                        a[n] = value;
                        return;
                    }
                    &mut a[n]
                }
                _ => return,
            },
            _ => return,
        };
    }
}

fn remove(doc: &mut Value, pointer: &str) {
    let Some((parent, last)) = split(pointer) else {
        return;
    };
    match doc.pointer_mut(parent) {
        Some(Value::Object(m)) => {
            m.shift_remove(&last);
        }
        Some(Value::Array(a)) => {
            if let Ok(n) = last.parse::<usize>()
                && n < a.len()
            {
                a.remove(n);
            }
        }
        _ => {}
    }
}

/// A manifest being mutated, plus the text-level changes applied when it is rendered.
struct Doc {
    value: Value,
    /// Placeholder string → raw JSON text that replaces it (quotes included).
    raw: Vec<(String, String)>,
}

impl Doc {
    fn placeholder(&mut self, text: String) -> Value {
        let p = format!("\u{1}RAW{}", self.raw.len());
        self.raw
            .push((serde_json::to_string(&p).unwrap_or_default(), text));
        Value::String(p)
    }

    fn apply(&mut self, m: &Mutation, interesting: &[&str]) {
        let paths = pointers(&self.value);
        let pick = |i: &Index| paths[i.index(paths.len())].clone();
        let pick_interesting = |i: &Index| {
            let all: Vec<&str> = COMMON_PATHS.iter().chain(interesting).copied().collect();
            all[i.index(all.len())].to_string()
        };
        match m {
            Mutation::Drop(i) => remove(&mut self.value, &pick(i)),
            Mutation::DuplicateKey(i, other) => {
                let p = pick(i);
                let Some(Value::Object(obj)) = self.value.pointer(&p).cloned() else {
                    return;
                };
                let Some((k, v)) = obj.iter().next().map(|(k, v)| (k.clone(), v.clone())) else {
                    return;
                };
                // A placeholder key, swapped for the real key in the text: `{"k":..,"k":..}`.
                let key_placeholder = format!("\u{1}DUP{}", self.raw.len());
                self.raw.push((
                    serde_json::to_string(&key_placeholder).unwrap_or_default(),
                    serde_json::to_string(&k).unwrap_or_default(),
                ));
                if let Some(Value::Object(target)) = self.value.pointer_mut(&p) {
                    target.insert(key_placeholder, other.clone().unwrap_or(v));
                }
            }
            Mutation::DuplicateElement(i) => {
                let p = pick(i);
                if let Some(Value::Array(a)) = self.value.pointer_mut(&p)
                    && let Some(first) = a.first().cloned()
                {
                    a.push(first);
                }
            }
            Mutation::Retype(i, v) => set(&mut self.value, &pick(i), v.clone()),
            Mutation::SetInteresting(i, v) => set(&mut self.value, &pick_interesting(i), v.clone()),
            Mutation::SetNumber(i, v) => {
                // Numbers go where numbers belong: the kind's interesting numeric-looking paths.
                let numeric: Vec<&str> = interesting
                    .iter()
                    .copied()
                    .filter(|p| {
                        p.contains("ort")
                            || p.contains("eplicas")
                            || p.contains("Seconds")
                            || p.contains("Limit")
                    })
                    .collect();
                let p = if numeric.is_empty() {
                    pick(i)
                } else {
                    numeric[i.index(numeric.len())].to_string()
                };
                set(&mut self.value, &p, v.clone());
            }
            Mutation::Raw(i, r) => {
                let p = pick(i);
                let v = self.placeholder(r.render());
                set(&mut self.value, &p, v);
            }
            Mutation::Name(n) => set(&mut self.value, "/metadata/name", json!(n)),
            Mutation::Label(k, v) => set(
                &mut self.value,
                &format!(
                    "/metadata/labels/{}",
                    k.replace('~', "~0").replace('/', "~1")
                ),
                json!(v),
            ),
            Mutation::HugeArray(i, n, element) => {
                let p = pick(i);
                set(&mut self.value, &p, Value::Array(vec![element.clone(); *n]));
            }
            Mutation::HugeMap(i, n) => {
                let maps = [
                    "/metadata/labels",
                    "/metadata/annotations",
                    "/data",
                    "/spec/selector",
                    "/spec/template/metadata/labels",
                ];
                let p = maps[i.index(maps.len())];
                let m: Map<String, Value> = (0..*n)
                    .map(|k| (format!("key-{k}"), json!(format!("value-{k}"))))
                    .collect();
                set(&mut self.value, p, Value::Object(m));
            }
        }
    }

    fn render(&self) -> Vec<u8> {
        let mut text = self.value.to_string();
        for (placeholder, raw) in &self.raw {
            text = text.replace(placeholder, raw);
        }
        text.into_bytes()
    }
}

// ---------------------------------------------------------------------------------------------
// Sending and checking
// ---------------------------------------------------------------------------------------------

/// Upstream's contract for any answer: below 500; a JSON object; a failure is a `Status`
/// whose code is the HTTP status; a body over 3 MiB is refused with 413.
fn check(what: &str, sent: usize, r: &HttpReply) -> Result<(), String> {
    let fail = |why: String| {
        Err(format!(
            "{what}: {why}; HTTP {}; body: {}",
            r.status,
            short(&r.text())
        ))
    };
    if r.status >= 500 {
        return fail("server error".into());
    }
    if sent > MAX_BODY && r.status != 413 {
        return fail(format!("a {sent}-byte body was not refused with 413"));
    }
    let Ok(v) = serde_json::from_slice::<Value>(&r.body) else {
        return fail("answer is not JSON".into());
    };
    if !v.is_object() {
        return fail("answer is not a JSON object".into());
    }
    if r.status >= 400 {
        let ok = v["kind"] == "Status"
            && v["apiVersion"] == "v1"
            && v["status"] == "Failure"
            && v["code"] == r.status
            && v["reason"].as_str().is_some_and(|s| !s.is_empty())
            && v["message"].is_string();
        if !ok {
            return fail("failure is not a well-formed Status".into());
        }
    } else if !(v["kind"].is_string() && (v["metadata"].is_object() || v["kind"] == "Status")) {
        return fail("success is not an object with kind and metadata".into());
    }
    Ok(())
}

fn short(s: &str) -> String {
    if s.len() > 400 {
        format!(
            "{}... ({} bytes)",
            s.chars().take(400).collect::<String>(),
            s.len()
        )
    } else {
        s.to_string()
    }
}

/// The test's one server and what it needs between cases.
struct Harness {
    server: RefCell<TestServer>,
    api: ApiClient,
    targets: Vec<Target>,
    counter: Cell<u64>,
    requests: Cell<u64>,
    /// How many answers of each status each kind of request got: shows how deep the inputs
    /// reach (decoding, validation, storage).
    outcomes: RefCell<BTreeMap<(String, u16), u64>>,
}

impl Harness {
    fn send(
        &self,
        what: &str,
        method: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<HttpReply, TestCaseError> {
        self.requests.set(self.requests.get() + 1);
        let sent = body.len();
        let r = self
            .api
            .try_send(method, path, Some(content_type), Some(body))
            .map_err(|e| {
                TestCaseError::fail(format!(
                    "{what}: no answer ({e:?}); server log:\n{}",
                    self.log_tail()
                ))
            })?;
        *self
            .outcomes
            .borrow_mut()
            .entry((what.to_string(), r.status))
            .or_default() += 1;
        check(what, sent, &r)
            .map_err(|e| TestCaseError::fail(format!("{e}\nserver log:\n{}", self.log_tail())))?;
        Ok(r)
    }

    fn log_tail(&self) -> String {
        let log = self.server.borrow().log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// The server process runs and answers /healthz.
    fn alive(&self) -> TestCaseResult {
        if !self.server.borrow_mut().is_running() {
            return Err(TestCaseError::fail(format!(
                "the server process died; log:\n{}",
                self.log_tail()
            )));
        }
        match self.api.try_send("GET", "/healthz", None, None) {
            Ok(r) if r.status == 200 && r.body == b"ok" => Ok(()),
            Ok(r) => Err(TestCaseError::fail(format!(
                "/healthz answered {}: {}",
                r.status,
                r.text()
            ))),
            Err(e) => Err(TestCaseError::fail(format!(
                "/healthz: no answer ({e:?}); log:\n{}",
                self.log_tail()
            ))),
        }
    }

    /// Makes sure the object PUT and PATCH aim at exists, small, as the valid manifest.
    fn reset_target(&self, t: &Target, force: bool) {
        let path = format!("{}/{EXISTING}", t.collection);
        let current = self.api.get(&path);
        if current.status == 200 && !force && current.body.len() < 64 * 1024 {
            return;
        }
        if current.status == 200 {
            let d = self.api.send(
                "DELETE",
                &format!("{path}?gracePeriodSeconds=0"),
                None,
                None,
            );
            assert!(d.status < 300, "deleting {path}: {}", d.text());
            // Pods and objects with finalizers may linger; strip finalizers and wait.
            let _ = self.api.send(
                "PATCH",
                &path,
                Some("application/merge-patch+json"),
                Some(br#"{"metadata":{"finalizers":null}}"#.to_vec()),
            );
            let gone = support::eventually(std::time::Duration::from_secs(10), || {
                (self.api.get(&path).status == 404).then_some(())
            });
            assert!(gone.is_some(), "{path} was not deleted");
        }
        let mut obj = t.base.clone();
        obj["metadata"]["name"] = json!(EXISTING);
        // Services of the same kind share nodePorts: let the server choose.
        let created = self.api.send_json("POST", t.collection, &obj);
        assert_eq!(created.status, 201, "creating {path}: {}", created.text());
    }

    fn unique_name(&self) -> String {
        let n = self.counter.get() + 1;
        self.counter.set(n);
        format!("fuzz-{n}")
    }

    /// POSTs a body to the target's collection, PUTs it onto the existing object and PATCHes
    /// it with all three patch types; checks every answer and that the server lives.
    fn exercise(
        &self,
        t: &Target,
        create_body: Vec<u8>,
        update_body: Vec<u8>,
        json_patch: Vec<u8>,
    ) -> TestCaseResult {
        self.reset_target(t, false);
        let item = format!("{}/{EXISTING}", t.collection);
        self.send(
            "POST",
            "POST",
            t.collection,
            "application/json",
            create_body,
        )?;
        self.send("PUT", "PUT", &item, "application/json", update_body.clone())?;
        self.send(
            "merge PATCH",
            "PATCH",
            &item,
            "application/merge-patch+json",
            update_body.clone(),
        )?;
        self.send(
            "strategic PATCH",
            "PATCH",
            &item,
            "application/strategic-merge-patch+json",
            update_body,
        )?;
        self.send(
            "JSON PATCH",
            "PATCH",
            &item,
            "application/json-patch+json",
            json_patch,
        )?;
        self.alive()
    }

    /// The mutated manifest for create (unique name) and for update (the existing name),
    /// unless a mutation set the name itself.
    fn bodies(&self, t: &Target, mutations: &[Mutation]) -> (Vec<u8>, Vec<u8>) {
        let mut doc = Doc {
            value: t.base.clone(),
            raw: Vec::new(),
        };
        let placeholder_name = "\u{1}NAME";
        doc.value["metadata"]["name"] = json!(placeholder_name);
        for m in mutations {
            doc.apply(m, t.interesting);
        }
        let text = doc.render();
        let quoted = serde_json::to_string(placeholder_name).unwrap_or_default();
        let as_text = String::from_utf8_lossy(&text).into_owned();
        let create = as_text.replace(&quoted, &format!("\"{}\"", self.unique_name()));
        let update = as_text.replace(&quoted, &format!("\"{EXISTING}\""));
        (create.into_bytes(), update.into_bytes())
    }
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        max_shrink_iters: 64,
        failure_persistence: None,
        ..Config::default()
    })
}

fn run<S: Strategy>(
    h: &Harness,
    name: &str,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> TestCaseResult,
) {
    let started = Instant::now();
    let before = h.requests.get();
    let mut r = runner(cases);
    if let Err(e) = r.run(&strategy, test) {
        panic!("{name}: {e}");
    }
    eprintln!(
        "{name}: {cases} cases, {} requests in {:.1}s",
        h.requests.get() - before,
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn random_and_mutated_manifests_never_get_a_5xx_or_crash_the_server() {
    let server = TestServer::start_api_only();
    let api = server.api();
    let targets = targets(&server);
    let h = Harness {
        server: RefCell::new(server),
        api,
        targets,
        counter: Cell::new(0),
        requests: Cell::new(0),
        outcomes: RefCell::new(BTreeMap::new()),
    };
    let started = Instant::now();

    // 1. Random JSON (or random bytes), as is and dressed as the target's kind.
    run(
        &h,
        "random JSON",
        300,
        (
            any::<Index>(),
            prop_oneof![9 => any_json().prop_map(Body::Json), 1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Body::Bytes)],
            any::<bool>(),
            any_json_patch(),
        ),
        |(target, body, dressed, patch)| {
            let t = &h.targets[target.index(h.targets.len())];
            let bytes = |name: &str| match &body {
                Body::Bytes(b) => b.clone(),
                Body::Json(v) => {
                    let mut v = v.clone();
                    if dressed && v.is_object() {
                        v["apiVersion"] = t.base["apiVersion"].clone();
                        v["kind"] = t.base["kind"].clone();
                        if !v["metadata"].is_object() {
                            v["metadata"] = json!({});
                        }
                        v["metadata"]["name"] = json!(name);
                    }
                    v.to_string().into_bytes()
                }
            };
            let create = bytes(&h.unique_name());
            h.exercise(t, create, bytes(EXISTING), patch.to_string().into_bytes())
        },
    );

    // 2. Valid manifests with one to four mutations.
    run(
        &h,
        "mutated manifests",
        600,
        (
            any::<Index>(),
            prop::collection::vec(any_mutation(), 1..5),
            any_json_patch(),
        ),
        |(target, mutations, patch)| {
            let t = &h.targets[target.index(h.targets.len())];
            let (create, update) = h.bodies(t, &mutations);
            h.exercise(t, create, update, patch.to_string().into_bytes())
        },
    );

    // 3. Big bodies: huge arrays and maps, deep nesting, up to and past 3 MiB.
    run(
        &h,
        "big bodies",
        32,
        (
            any::<Index>(),
            big_mutation(),
            prop::collection::vec(any_mutation(), 0..2),
        ),
        |(target, big, more)| {
            let t = &h.targets[target.index(h.targets.len())];
            let mut mutations = vec![big];
            mutations.extend(more);
            let (create, update) = h.bodies(t, &mutations);
            let result = h.exercise(t, create, update, b"[]".to_vec());
            // A huge object PUT onto the target would slow every later case: start afresh.
            h.reset_target(t, true);
            result
        },
    );

    // 4. Reads with random query parameters: selectors, limits, continue tokens, versions.
    let query_value = prop_oneof![
        2 => any_string(),
        1 => any_number().prop_map(|n| n.to_string()),
        2 => prop::sample::select(vec!["true", "false", "0", "1", "All", "Strict", "NotOlderThan", "Exact", "Orphan", "a=b", "a in (x,y)", "!a", "metadata.name=x", "spec.x=1"])
            .prop_map(str::to_string),
    ];
    let param = prop::sample::select(vec![
        "labelSelector",
        "fieldSelector",
        "limit",
        "continue",
        "resourceVersion",
        "resourceVersionMatch",
        "timeoutSeconds",
        "watch",
        "allowWatchBookmarks",
        "sendInitialEvents",
        "fieldValidation",
        "dryRun",
        "propagationPolicy",
        "gracePeriodSeconds",
    ]);
    run(
        &h,
        "random query parameters",
        150,
        (
            any::<Index>(),
            prop::collection::vec((param, query_value), 1..4),
            any::<bool>(),
        ),
        |(target, params, on_item)| {
            let t = &h.targets[target.index(h.targets.len())];
            h.reset_target(t, false);
            let mut q = url_encode_pairs(&params);
            // A watch must end by itself.
            if params
                .iter()
                .any(|(k, _)| *k == "watch" || *k == "timeoutSeconds")
            {
                q.push_str("&timeoutSeconds=1");
            }
            let path = if on_item {
                format!("{}/{EXISTING}?{q}", t.collection)
            } else {
                format!("{}?{q}", t.collection)
            };
            let r = h
                .api
                .try_send("GET", &path, None, None)
                .map_err(|e| TestCaseError::fail(format!("GET {path}: no answer ({e:?})")))?;
            let watching = params
                .iter()
                .any(|(k, v)| *k == "watch" && matches!(v.as_str(), "true" | "1"));
            if !(watching && is_watch_stream(&r)) {
                check(&format!("GET {path}"), 0, &r).map_err(TestCaseError::fail)?;
            }
            let d = h.api.try_send(
                "DELETE",
                &format!("{}/does-not-exist?{q}", t.collection),
                None,
                None,
            );
            match d {
                Ok(r) => check(&format!("DELETE with {q}"), 0, &r).map_err(TestCaseError::fail)?,
                Err(e) => {
                    return Err(TestCaseError::fail(format!(
                        "DELETE with {q}: no answer ({e:?})"
                    )));
                }
            }
            h.alive()
        },
    );

    eprintln!(
        "{} requests in {:.1}s; answers by request and status: {:?}",
        h.requests.get(),
        started.elapsed().as_secs_f64(),
        h.outcomes.borrow()
    );
    // And the server still serves ordinary work.
    let list = h.api.get("/api/v1/namespaces/default/configmaps");
    assert_eq!(list.status, 200, "{}", list.text());
    assert!(h.server.borrow_mut().is_running());
}

/// A watch's answer: 200 and a (possibly empty) series of `{"type": .., "object": {..}}` lines.
fn is_watch_stream(r: &HttpReply) -> bool {
    r.status == 200
        && r.text().lines().filter(|l| !l.trim().is_empty()).all(|l| {
            serde_json::from_str::<Value>(l)
                .is_ok_and(|e| e["type"].is_string() && e["object"].is_object())
        })
}

fn url_encode_pairs(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            let enc: String = v
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            format!("{k}={enc}")
        })
        .collect::<Vec<_>>()
        .join("&")
}
