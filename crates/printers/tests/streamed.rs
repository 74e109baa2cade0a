//! `write_table` (rows built one stored object at a time from a partial parse) must give exactly
//! the bytes of encoding `table` over fully parsed objects, for any objects: plausible pods in
//! every state the pod printer distinguishes, fields of the wrong type, junk the printer never
//! reads, and bytes that are not JSON at all.

use jiff::Timestamp;
use printers::IncludeObject;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const INCLUDES: [IncludeObject; 3] = [
    IncludeObject::None,
    IncludeObject::Metadata,
    IncludeObject::Object,
];

fn now() -> Timestamp {
    "2026-11-26T19:00:00Z".parse().expect("valid timestamp")
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        "[a-zA-Z0-9:\"\\\\é -]{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::vec(("[a-z]{1,6}", inner), 0..4)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

/// Mostly `plausible`, sometimes absent, sometimes any JSON at all (the wrong type).
fn field(plausible: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        6 => plausible.prop_map(Some),
        2 => Just(None),
        1 => any_json().prop_map(Some),
    ]
    .boxed()
}

fn one_of(choices: &'static [&'static str]) -> BoxedStrategy<Value> {
    prop::sample::select(choices).prop_map(Value::from).boxed()
}

fn object(members: Vec<(&'static str, Option<Value>)>) -> Value {
    let map: Map<String, Value> = members
        .into_iter()
        .filter_map(|(key, value)| value.map(|v| (key.to_string(), v)))
        .collect();
    Value::Object(map)
}

fn timestamp() -> BoxedStrategy<Value> {
    prop_oneof![
        (0i64..200_000).prop_map(|ago| {
            let at = now() - jiff::SignedDuration::from_secs(ago);
            Value::from(at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        }),
        one_of(&["0001-01-01T00:00:00Z", "yesterday", ""]),
    ]
    .boxed()
}

fn container_state() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(json!({"running": {"startedAt": "2026-11-26T18:00:00Z"}})),
        field(one_of(&[
            "",
            "PodInitializing",
            "CrashLoopBackOff",
            "ErrImagePull"
        ]))
        .prop_map(|reason| json!({"waiting": object(vec![("reason", reason)])})),
        (
            field((-2i64..3).prop_map(Value::from)),
            field(one_of(&["", "Completed", "Error", "OOMKilled"])),
            field((0i64..10).prop_map(Value::from)),
        )
            .prop_map(|(exit_code, reason, signal)| {
                json!({"terminated": object(vec![
                    ("exitCode", exit_code),
                    ("reason", reason),
                    ("signal", signal),
                ])})
            }),
        any_json(),
    ]
    .boxed()
}

fn container_status() -> BoxedStrategy<Value> {
    (
        field(one_of(&["a", "b", "c"])),
        field((0i64..5).prop_map(Value::from)),
        field(any::<bool>().prop_map(Value::from)),
        field(any::<bool>().prop_map(Value::from)),
        field(container_state()),
        field(timestamp().prop_map(|t| json!({"terminated": {"finishedAt": t}}))),
        field(any_json()),
    )
        .prop_map(|(name, restarts, ready, started, state, last, image)| {
            object(vec![
                ("name", name),
                ("restartCount", restarts),
                ("ready", ready),
                ("started", started),
                ("state", state),
                ("lastState", last),
                ("image", image),
            ])
        })
        .boxed()
}

fn condition() -> BoxedStrategy<Value> {
    (
        field(one_of(&[
            "PodScheduled",
            "Initialized",
            "Ready",
            "Gate1",
            "Gate2",
        ])),
        field(one_of(&["True", "False"])),
        field(one_of(&["SchedulingGated", ""])),
    )
        .prop_map(|(kind, status, reason)| {
            object(vec![("type", kind), ("status", status), ("reason", reason)])
        })
        .boxed()
}

fn list(item: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    prop::collection::vec(item, 0..4)
        .prop_map(Value::from)
        .boxed()
}

/// A container spec with the fields no column shows.
fn container() -> BoxedStrategy<Value> {
    (
        field(one_of(&["a", "b", "c"])),
        field(one_of(&["Always", "OnFailure", ""])),
        field(any_json()),
    )
        .prop_map(|(name, restart_policy, junk)| {
            let mut c = object(vec![
                ("name", name),
                ("restartPolicy", restart_policy),
                ("env", junk),
            ]);
            c["image"] = json!("nginx:1.27");
            c["ports"] = json!([{"containerPort": 80, "protocol": "TCP"}]);
            c
        })
        .boxed()
}

fn metadata() -> BoxedStrategy<Value> {
    (
        field("[a-z0-9-]{1,12}".prop_map(Value::from)),
        field(timestamp()),
        field(timestamp()),
        field(any_json()),
        field(any_json()),
    )
        .prop_map(|(name, created, deleted, labels, owners)| {
            object(vec![
                ("name", name),
                ("namespace", Some(json!("default"))),
                ("creationTimestamp", created),
                ("deletionTimestamp", deleted),
                ("labels", labels),
                ("ownerReferences", owners),
            ])
        })
        .boxed()
}

fn pod() -> BoxedStrategy<Value> {
    let spec = (
        field(list(container())),
        field(list(container())),
        field(list(
            field(one_of(&["Gate1", "Gate2", "Ready"]))
                .prop_map(|t| object(vec![("conditionType", t)]))
                .boxed(),
        )),
        field(one_of(&["node-1", ""])),
        field(any_json()),
    )
        .prop_map(|(containers, init, gates, node, volumes)| {
            object(vec![
                ("volumes", volumes),
                ("initContainers", init),
                ("containers", containers),
                ("readinessGates", gates),
                ("nodeName", node),
            ])
        });
    let ips = prop_oneof![
        Just(json!([{"ip": "10.0.0.5"}, {"ip": "fd00::5"}])),
        Just(json!([])),
        any_json(),
    ];
    let status = (
        field(one_of(&[
            "Pending",
            "Running",
            "Succeeded",
            "Failed",
            "Unknown",
        ])),
        field(one_of(&["", "NodeLost", "Evicted"])),
        field(list(condition())),
        field(list(container_status())),
        field(list(container_status())),
        field(ips),
        field(one_of(&["10.0.0.5", ""])),
        field(one_of(&["node-2"])),
    )
        .prop_map(
            |(phase, reason, conditions, init_statuses, statuses, ips, ip, nominated)| {
                object(vec![
                    ("phase", phase),
                    ("reason", reason),
                    ("conditions", conditions),
                    ("initContainerStatuses", init_statuses),
                    ("containerStatuses", statuses),
                    ("podIPs", ips),
                    ("podIP", ip),
                    ("nominatedNodeName", nominated),
                ])
            },
        );
    (
        field(metadata()),
        field(spec),
        field(status),
        field(any_json()),
    )
        .prop_map(|(metadata, spec, status, extra)| {
            let mut pod = object(vec![
                ("kind", Some(json!("Pod"))),
                ("apiVersion", Some(json!("v1"))),
                ("metadata", metadata),
                ("spec", spec),
                ("status", status),
            ]);
            if let Some(extra) = extra {
                pod["extra"] = extra;
            }
            pod
        })
        .boxed()
}

/// Stored bytes: mostly an encoded object, sometimes not an object, rarely not JSON.
fn stored(object: BoxedStrategy<Value>) -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        12 => object.prop_map(|v| serde_json::to_vec(&v).expect("encodable")),
        1 => any_json().prop_map(|v| serde_json::to_vec(&v).expect("encodable")),
        1 => Just(b"{\"metadata\":".to_vec()),
    ]
    .boxed()
}

/// What the server answered before rows were streamed: the whole Table as a `Value`.
fn reference(
    group: &str,
    resource: &str,
    objects: &[Vec<u8>],
    include: IncludeObject,
    metadata: &Value,
) -> Vec<u8> {
    let parsed: Vec<Value> = objects
        .iter()
        .map(|b| serde_json::from_slice(b).unwrap_or(Value::Null))
        .collect();
    let table = printers::table(group, resource, &parsed, now(), include, metadata.clone());
    serde_json::to_vec(&table).expect("encodable")
}

fn streamed(
    group: &str,
    resource: &str,
    objects: &[Vec<u8>],
    include: IncludeObject,
    metadata: &Value,
) -> Vec<u8> {
    printers::write_table(
        group,
        resource,
        objects.iter().map(Vec::as_slice),
        now(),
        include,
        metadata.clone(),
    )
}

fn list_metadata() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        Just(json!({"resourceVersion": "42"})),
        Just(json!({"resourceVersion": "7", "continue": "abc", "remainingItemCount": 3})),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn streamed_table_equals_table(
        pods in prop::collection::vec(stored(pod()), 0..6),
        metadata in list_metadata(),
    ) {
        for include in INCLUDES {
            let got = streamed("", "pods", &pods, include, &metadata);
            let want = reference("", "pods", &pods, include, &metadata);
            prop_assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want),
                "includeObject {:?}",
                include
            );
        }
    }

    #[test]
    fn streamed_table_equals_table_for_every_printer(
        objects in prop::collection::vec(stored(any_json().boxed()), 0..4),
        metadata in list_metadata(),
    ) {
        for (group, resource) in [
            ("", "services"), ("", "nodes"), ("", "events"), ("", "namespaces"),
            ("apps", "deployments"), ("apps", "replicasets"), ("apps", "daemonsets"),
            ("discovery.k8s.io", "endpointslices"), ("coordination.k8s.io", "leases"),
            ("example.com", "widgets"), ("", "pods"),
        ] {
            for include in INCLUDES {
                let got = streamed(group, resource, &objects, include, &metadata);
                let want = reference(group, resource, &objects, include, &metadata);
                prop_assert_eq!(got, want, "{}/{} {:?}", group, resource, include);
            }
        }
    }
}

/// A realistic pod (as a ReplicaSet creates it, with a running container) prints the same row
/// either way, and the streamed Table is valid JSON with one row per object.
#[test]
fn streamed_table_of_realistic_pods() {
    let pod = |i: usize, phase: &str| {
        json!({
            "kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": format!("web-{i}"), "namespace": "default",
                "uid": "5f1c", "creationTimestamp": "2026-11-26T18:00:00Z",
                "labels": {"app": "web"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "web-abc", "uid": "u", "controller": true}]},
            "spec": {"containers": [{"name": "web", "image": "nginx",
                "env": [{"name": "A", "value": "1"}], "resources": {"limits": {"cpu": "1"}}}],
                "nodeName": "node-1"},
            "status": {"phase": phase, "podIP": "10.0.0.5", "podIPs": [{"ip": "10.0.0.5"}],
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "web", "ready": true, "restartCount": 2,
                    "state": {"running": {}},
                    "lastState": {"terminated": {"finishedAt": "2026-11-26T18:30:00Z"}}}]}
        })
    };
    let objects: Vec<Vec<u8>> = (0..50)
        .map(|i| serde_json::to_vec(&pod(i, if i % 7 == 0 { "Succeeded" } else { "Running" })))
        .collect::<Result<_, _>>()
        .expect("encodable");
    let meta = json!({"resourceVersion": "9"});
    for include in INCLUDES {
        let got = streamed("", "pods", &objects, include, &meta);
        assert_eq!(got, reference("", "pods", &objects, include, &meta));
        let table: Value = serde_json::from_slice(&got).expect("valid JSON");
        assert_eq!(table["rows"].as_array().map(Vec::len), Some(50));
        assert_eq!(
            table["rows"][1]["cells"],
            json!([
                "web-1",
                "1/1",
                "Running",
                "2 (30m ago)",
                "60m",
                "10.0.0.5",
                "node-1",
                "<none>",
                "<none>"
            ])
        );
    }
}
