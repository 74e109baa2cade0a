//! kube-rs (`Api`, `watcher`) against a fresh `kubelab server`, through the kubeconfig the
//! server writes: typed CRUD, the three patch types, optimistic concurrency, list paging,
//! the scale subresource and both initial-list strategies of the runtime watcher.

mod support;

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;
use support::TestServer;

/// Upper bound for any single wait on the server in these tests.
const WAIT: Duration = Duration::from_secs(10);

async fn client(server: &TestServer) -> Client {
    let kubeconfig =
        Kubeconfig::read_from(&server.kubeconfig).expect("read the server's kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kube config from the server's kubeconfig");
    Client::try_from(config).expect("kube client")
}

async fn namespace(client: &Client, name: &str) -> String {
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name}})).expect("namespace");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    name.to_string()
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [
                    {"name": "web", "image": "nginx:1.25", "ports": [{"containerPort": 80}]},
                    {"name": "sidecar", "image": "busybox:1.36"},
                ]},
            },
        },
    }))
    .expect("deployment")
}

fn cluster_ip_service(name: &str, app: &str) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"selector": {"app": app}, "ports": [{"port": 80}]},
    }))
    .expect("service")
}

fn config_map(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": labels}, "data": {"k": name}}),
    )
    .expect("configmap")
}

/// The Status of an API error, failing the test on a success or a non-API error.
fn api_error<T: std::fmt::Debug>(result: kube::Result<T>) -> kube::core::Status {
    match result {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("expected an API error Status, got {other:?}"),
    }
}

fn containers(d: &Deployment) -> BTreeMap<String, String> {
    let spec = d
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod spec");
    spec.containers
        .iter()
        .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
        .collect()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn lists_the_default_namespaces() {
    let server = TestServer::start();
    let client = client(&server).await;
    let api = Api::<Namespace>::all(client);
    let list = api
        .list(&ListParams::default())
        .await
        .expect("list namespaces");
    let names: Vec<String> = list.items.iter().map(|n| n.name_any()).collect();
    assert_eq!(
        names,
        ["default", "kube-node-lease", "kube-public", "kube-system"]
    );
    assert!(
        list.metadata
            .resource_version
            .is_some_and(|rv| !rv.is_empty())
    );
    let default = api.get("default").await.expect("get default");
    assert_eq!(
        default.status.and_then(|s| s.phase).as_deref(),
        Some("Active")
    );
    assert_eq!(
        default.metadata.labels,
        Some(map(&[("kubernetes.io/metadata.name", "default")]))
    );
    assert!(api.get_opt("absent").await.expect("get_opt").is_none());
}

#[tokio::test]
async fn deployment_create_get_patch_replace_delete() {
    let server = TestServer::start();
    let client = client(&server).await;
    let ns = namespace(&client, "rs-deploy").await;
    let api = Api::<Deployment>::namespaced(client, &ns);

    let created = api
        .create(&PostParams::default(), &deployment("shop", 2))
        .await
        .expect("create");
    assert_eq!(created.metadata.namespace.as_deref(), Some(ns.as_str()));
    assert_eq!(created.metadata.generation, Some(1));
    let spec = created.spec.as_ref().expect("spec");
    let strategy = spec.strategy.as_ref().expect("defaulted strategy");
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    let rolling = serde_json::to_value(strategy.rolling_update.as_ref().expect("rollingUpdate"))
        .expect("json");
    assert_eq!(rolling, json!({"maxSurge": "25%", "maxUnavailable": "25%"}));
    assert_eq!(spec.revision_history_limit, Some(10));
    assert_eq!(spec.progress_deadline_seconds, Some(600));

    let got = api.get("shop").await.expect("get");
    assert_eq!(got.metadata.uid, created.metadata.uid);
    assert_eq!(
        got.metadata.resource_version,
        created.metadata.resource_version
    );

    // JSON merge patch: maps merge, and a list would be replaced whole.
    let merged = api
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"labels": {"tier": "front"}}, "spec": {"replicas": 3}}),
            ),
        )
        .await
        .expect("merge patch");
    assert_eq!(
        merged.metadata.labels,
        Some(map(&[("app", "shop"), ("tier", "front")]))
    );
    assert_eq!(merged.spec.as_ref().and_then(|s| s.replicas), Some(3));
    assert_eq!(merged.metadata.generation, Some(2));

    // Strategic merge patch: containers merge by name, so the sidecar is kept.
    let strategic = api
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}})),
        )
        .await
        .expect("strategic patch");
    assert_eq!(
        containers(&strategic),
        map(&[("sidecar", "busybox:1.36"), ("web", "nginx:1.27")])
    );
    assert_eq!(strategic.metadata.generation, Some(3));

    // The same body as a merge patch replaces the list: only one container is left.
    let replaced_list = api
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}})),
        )
        .await
        .expect("merge patch of a list");
    assert_eq!(containers(&replaced_list), map(&[("web", "nginx:1.27")]));

    // JSON patch (RFC 6902).
    let ops = serde_json::from_value(json!([
        {"op": "test", "path": "/spec/replicas", "value": 3},
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "nginx:1.28"},
        {"op": "remove", "path": "/metadata/labels/tier"},
    ]))
    .expect("json patch");
    let json_patched = api
        .patch("shop", &PatchParams::default(), &Patch::Json::<()>(ops))
        .await
        .expect("json patch");
    assert_eq!(containers(&json_patched), map(&[("web", "nginx:1.28")]));
    assert_eq!(json_patched.metadata.labels, Some(map(&[("app", "shop")])));

    // PUT with the resourceVersion read before the patches: 409 Conflict.
    let mut stale = got.clone();
    stale.spec.as_mut().expect("spec").replicas = Some(1);
    let status = api_error(api.replace("shop", &PostParams::default(), &stale).await);
    assert_eq!(
        (status.code, status.reason.as_str()),
        (409, "Conflict"),
        "{status:?}"
    );
    assert_eq!(
        status.message,
        "Operation cannot be fulfilled on deployments.apps \"shop\": the object has been modified; \
         please apply your changes to the latest version and try again"
    );
    // With the current resourceVersion the PUT succeeds. The Deployment controller writes the
    // status meanwhile, so retry on conflict as client-go's RetryOnConflict does.
    let mut attempt = 0;
    let (current, put) = loop {
        let mut current = api.get("shop").await.expect("get");
        current.spec.as_mut().expect("spec").replicas = Some(1);
        match api.replace("shop", &PostParams::default(), &current).await {
            Ok(put) => break (current, put),
            Err(kube::Error::Api(s)) if s.code == 409 && attempt < 10 => attempt += 1,
            Err(e) => panic!("replace: {e}"),
        }
    };
    assert_eq!(put.spec.as_ref().and_then(|s| s.replicas), Some(1));
    assert_ne!(
        put.metadata.resource_version,
        current.metadata.resource_version
    );

    let missing = api_error(api.get("absent").await);
    assert_eq!(
        (missing.code, missing.reason.as_str()),
        (404, "NotFound"),
        "{missing:?}"
    );
    assert_eq!(missing.message, "deployments.apps \"absent\" not found");

    api.delete("shop", &DeleteParams::default())
        .await
        .expect("delete");
    let gone = api_error(api.get("shop").await);
    assert_eq!(gone.code, 404, "{gone:?}");
    assert!(
        api.list(&ListParams::default())
            .await
            .expect("list")
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn list_by_label_and_page_with_continue_tokens() {
    let server = TestServer::start();
    let client = client(&server).await;
    let ns = namespace(&client, "rs-list").await;
    // Services, because a namespace gets no services of its own (it does get kube-root-ca.crt).
    let api = Api::<Service>::namespaced(client, &ns);
    for (name, app) in [("a", "x"), ("b", "y"), ("c", "x"), ("d", "y"), ("e", "x")] {
        api.create(&PostParams::default(), &cluster_ip_service(name, app))
            .await
            .expect("create");
    }
    let names = |items: &[Service]| items.iter().map(|c| c.name_any()).collect::<Vec<_>>();

    let x = api
        .list(&ListParams::default().labels("app=x"))
        .await
        .expect("list app=x");
    assert_eq!(names(&x.items), ["a", "c", "e"]);
    let not_x = api
        .list(&ListParams::default().labels("app!=x"))
        .await
        .expect("list app!=x");
    assert_eq!(names(&not_x.items), ["b", "d"]);
    let by_field = api
        .list(&ListParams::default().fields("metadata.name=d"))
        .await
        .expect("list by field");
    assert_eq!(names(&by_field.items), ["d"]);

    // Pages of two: a, b | c, d | e, each with remainingItemCount and one list resourceVersion.
    let mut seen = Vec::new();
    let mut params = ListParams::default().limit(2);
    let mut pages = 0;
    let mut list_rv = None;
    loop {
        let page = api.list(&params).await.expect("list page");
        pages += 1;
        assert!(
            page.items.len() <= 2,
            "a page of {} items",
            page.items.len()
        );
        seen.extend(names(&page.items));
        // Every page is a snapshot at the first page's revision.
        let rv = page.metadata.resource_version.clone();
        assert_eq!(*list_rv.get_or_insert(rv.clone()), rv);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => {
                assert_eq!(
                    page.metadata.remaining_item_count,
                    Some(5 - seen.len() as i64)
                );
                params = ListParams::default().limit(2).continue_token(&token);
            }
            None => {
                assert_eq!(page.metadata.remaining_item_count, None);
                break;
            }
        }
        assert!(pages < 10, "paging does not end: {seen:?}");
    }
    assert_eq!(seen, ["a", "b", "c", "d", "e"]);
    assert_eq!(pages, 3);

    // A malformed continue token is a 400 BadRequest, as upstream.
    let bad = api_error(
        api.list(&ListParams::default().limit(2).continue_token("not-a-token"))
            .await,
    );
    assert_eq!(
        (bad.code, bad.reason.as_str()),
        (400, "BadRequest"),
        "{bad:?}"
    );
}

/// Upstream serves every page of a list from the revision of its first page, so a change
/// made between pages does not show up in later pages.
#[tokio::test]
async fn continued_list_pages_are_a_snapshot_of_the_first_page() {
    let server = TestServer::start();
    let client = client(&server).await;
    let ns = namespace(&client, "rs-snapshot").await;
    let api = Api::<Service>::namespaced(client, &ns);
    for name in ["a", "b", "c", "d", "e"] {
        api.create(&PostParams::default(), &cluster_ip_service(name, "x"))
            .await
            .expect("create");
    }
    let names = |items: &[Service]| items.iter().map(|c| c.name_any()).collect::<Vec<_>>();
    let first = api
        .list(&ListParams::default().limit(2))
        .await
        .expect("first page");
    assert_eq!(names(&first.items), ["a", "b"]);
    api.create(&PostParams::default(), &cluster_ip_service("f", "x"))
        .await
        .expect("create f");
    api.delete("e", &DeleteParams::default())
        .await
        .expect("delete e");
    let token = first.metadata.continue_.expect("continue token");
    let rest = api
        .list(&ListParams::default().limit(10).continue_token(&token))
        .await
        .expect("rest");
    assert_eq!(
        rest.metadata.resource_version,
        first.metadata.resource_version
    );
    assert_eq!(names(&rest.items), ["c", "d", "e"]);
}

/// Reads watcher events until `done` says the expected one came, or fails after WAIT.
async fn events_until<K: Clone + std::fmt::Debug>(
    stream: &mut (impl Stream<Item = watcher::Result<Event<K>>> + Unpin),
    what: &str,
    mut done: impl FnMut(&[Event<K>]) -> bool,
) -> Vec<Event<K>> {
    let mut events = Vec::new();
    let read = async {
        while let Some(event) = stream.next().await {
            events.push(event.expect("watcher error"));
            if done(&events) {
                return true;
            }
        }
        false
    };
    match tokio::time::timeout(WAIT, read).await {
        Ok(true) => events,
        Ok(false) => panic!("the watch stream ended before {what}: {events:?}"),
        Err(_) => panic!("timed out waiting for {what}: {events:?}"),
    }
}

/// A compact description of watcher events, e.g. `["Init", "InitApply(a)", "InitDone", "Apply(b)"]`.
fn describe(events: &[Event<ConfigMap>]) -> Vec<String> {
    events.iter().map(|e| e.to_string()).collect()
}

async fn watcher_sees_changes(config: watcher::Config, ns_name: &str) {
    let server = TestServer::start();
    let client = client(&server).await;
    let ns = namespace(&client, ns_name).await;
    let api = Api::<ConfigMap>::namespaced(client, &ns);
    for name in ["a", "b", "c"] {
        api.create(
            &PostParams::default(),
            &config_map(name, json!({"app": "w"})),
        )
        .await
        .expect("create");
    }
    // kube-root-ca.crt may be published into the namespace; only our objects are compared.
    let ours = |events: &[Event<ConfigMap>]| {
        describe(events)
            .into_iter()
            .filter(|d| !d.contains("kube-root-ca.crt"))
            .collect::<Vec<_>>()
    };
    let mut stream = watcher::watcher(api.clone(), config).boxed();
    let init = events_until(&mut stream, "InitDone", |e| {
        matches!(e.last(), Some(Event::InitDone))
    })
    .await;
    let mut init_desc = ours(&init);
    // InitApply order is not part of the contract; Init first and InitDone last are.
    let last = init_desc.len().saturating_sub(1);
    if last > 1 {
        init_desc[1..last].sort();
    }
    assert_eq!(
        init_desc,
        [
            "Init",
            "InitApply(a)",
            "InitApply(b)",
            "InitApply(c)",
            "InitDone"
        ]
    );

    api.create(
        &PostParams::default(),
        &config_map("d", json!({"app": "w"})),
    )
    .await
    .expect("create d");
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "changed"}})),
    )
    .await
    .expect("patch a");
    api.delete("b", &DeleteParams::default())
        .await
        .expect("delete b");
    let live = events_until(
        &mut stream,
        "Delete(b)",
        |e| matches!(e.last(), Some(Event::Delete(o)) if o.name_any() == "b"),
    )
    .await;
    assert_eq!(ours(&live), ["Apply(d)", "Apply(a)", "Delete(b)"]);
    let Some(Event::Apply(a)) = live
        .iter()
        .find(|e| matches!(e, Event::Apply(o) if o.name_any() == "a"))
    else {
        panic!("no Apply(a) in {live:?}");
    };
    assert_eq!(
        a.data.as_ref().and_then(|d| d.get("k")).map(String::as_str),
        Some("changed")
    );
}

#[tokio::test]
async fn watcher_lists_then_applies_and_deletes() {
    watcher_sees_changes(watcher::Config::default(), "rs-watch").await;
}

#[tokio::test]
async fn watcher_pages_its_initial_list() {
    watcher_sees_changes(watcher::Config::default().page_size(2), "rs-watch-paged").await;
}

#[tokio::test]
async fn watcher_with_streaming_lists() {
    watcher_sees_changes(
        watcher::Config::default().streaming_lists(),
        "rs-watch-stream",
    )
    .await;
}

#[tokio::test]
async fn watcher_with_label_selector() {
    let server = TestServer::start();
    let client = client(&server).await;
    let ns = namespace(&client, "rs-watch-labels").await;
    let api = Api::<ConfigMap>::namespaced(client, &ns);
    api.create(
        &PostParams::default(),
        &config_map("in", json!({"app": "x"})),
    )
    .await
    .expect("create");
    api.create(
        &PostParams::default(),
        &config_map("out", json!({"app": "y"})),
    )
    .await
    .expect("create");
    let mut stream =
        watcher::watcher(api.clone(), watcher::Config::default().labels("app=x")).boxed();
    let init = events_until(&mut stream, "InitDone", |e| {
        matches!(e.last(), Some(Event::InitDone))
    })
    .await;
    assert_eq!(describe(&init), ["Init", "InitApply(in)", "InitDone"]);
    // Relabelling moves objects into and out of the selector.
    api.patch(
        "out",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "x"}}})),
    )
    .await
    .expect("patch");
    api.patch(
        "in",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "y"}}})),
    )
    .await
    .expect("patch");
    let live = events_until(&mut stream, "Delete(in)", |e| {
        matches!(e.last(), Some(Event::Delete(_)))
    })
    .await;
    assert_eq!(describe(&live), ["Apply(out)", "Delete(in)"]);
}

#[tokio::test]
async fn node_port_service_gets_a_port_in_range() {
    let server = TestServer::start();
    let client = client(&server).await;
    let api = Api::<Service>::namespaced(client, "default");
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "np"},
        "spec": {"type": "NodePort", "selector": {"app": "np"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }))
    .expect("service");
    let created = api
        .create(&PostParams::default(), &svc)
        .await
        .expect("create");
    let spec = created.spec.as_ref().expect("spec");
    let port = &spec.ports.as_ref().expect("ports")[0];
    let node_port = port.node_port.expect("allocated nodePort");
    assert!((30000..=32767).contains(&node_port), "nodePort {node_port}");
    assert_eq!(port.protocol.as_deref(), Some("TCP"));
    assert_eq!(spec.external_traffic_policy.as_deref(), Some("Cluster"));
    let cluster_ip = spec.cluster_ip.clone().expect("clusterIP");
    assert!(
        cluster_ip.starts_with("10.") && cluster_ip != "10.96.0.1",
        "{cluster_ip}"
    );

    // A second NodePort service never gets the same port; asking for a taken one is 422 Invalid.
    let other: Service = serde_json::from_value(json!({
        "metadata": {"name": "np2"},
        "spec": {"type": "NodePort", "ports": [{"port": 80}]},
    }))
    .expect("service");
    let second = api
        .create(&PostParams::default(), &other)
        .await
        .expect("create second");
    let second_port = second
        .spec
        .and_then(|s| s.ports)
        .and_then(|p| p[0].node_port)
        .expect("second nodePort");
    assert_ne!(second_port, node_port);
    let clash: Service = serde_json::from_value(json!({
        "metadata": {"name": "np3"},
        "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": node_port}]},
    }))
    .expect("service");
    let status = api_error(api.create(&PostParams::default(), &clash).await);
    assert_eq!(
        (status.code, status.reason.as_str()),
        (422, "Invalid"),
        "{status:?}"
    );
    assert!(
        status
            .message
            .contains("provided port is already allocated"),
        "{}",
        status.message
    );
}

#[tokio::test]
async fn deployment_scale_subresource() {
    let server = TestServer::start();
    let client = client(&server).await;
    let api = Api::<Deployment>::namespaced(client, "default");
    api.create(&PostParams::default(), &deployment("scaled", 2))
        .await
        .expect("create");

    let scale = api.get_scale("scaled").await.expect("get_scale");
    assert_eq!(scale.metadata.name.as_deref(), Some("scaled"));
    assert_eq!(scale.spec.as_ref().and_then(|s| s.replicas), Some(2));
    assert_eq!(
        scale.status.as_ref().and_then(|s| s.selector.as_deref()),
        Some("app=scaled")
    );

    let patched = api
        .patch_scale(
            "scaled",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .expect("patch_scale");
    assert_eq!(patched.spec.as_ref().and_then(|s| s.replicas), Some(5));
    let deploy = api.get("scaled").await.expect("get");
    assert_eq!(deploy.spec.as_ref().and_then(|s| s.replicas), Some(5));
    assert_eq!(deploy.metadata.generation, Some(2));
    assert_eq!(
        api.get_scale("scaled")
            .await
            .expect("get_scale")
            .spec
            .and_then(|s| s.replicas),
        Some(5)
    );

    let missing = api_error(api.get_scale("absent").await);
    assert_eq!(
        (missing.code, missing.reason.as_str()),
        (404, "NotFound"),
        "{missing:?}"
    );
}

/// The garbage collector deletes a namespace's contents a hundred at a time, reading its watch
/// in between; a namespace holding several hundred objects still ends up empty and gone.
#[tokio::test]
async fn deleting_a_namespace_of_hundreds_of_objects_removes_them_all() {
    let server = TestServer::start();
    let client = client(&server).await;
    let ns = namespace(&client, "rs-many").await;
    let api = Api::<ConfigMap>::namespaced(client.clone(), &ns);
    let created = futures::stream::iter(0..250)
        .map(|i| {
            let api = api.clone();
            async move {
                api.create(
                    &PostParams::default(),
                    &config_map(&format!("cm-{i:03}"), json!({})),
                )
                .await
            }
        })
        .buffer_unordered(16)
        .filter(|r| futures::future::ready(r.is_ok()))
        .count()
        .await;
    assert_eq!(created, 250);
    Api::<Namespace>::all(client.clone())
        .delete(&ns, &DeleteParams::default())
        .await
        .expect("delete namespace");
    let namespaces = Api::<Namespace>::all(client.clone());
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if namespaces
            .get_opt(&ns)
            .await
            .expect("get namespace")
            .is_none()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "namespace still there; {} configmaps left",
            api.list(&ListParams::default())
                .await
                .map_or(0, |l| l.items.len())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        api.list(&ListParams::default())
            .await
            .expect("list")
            .items
            .is_empty()
    );
}
