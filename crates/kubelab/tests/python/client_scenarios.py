"""End-to-end scenarios for kubelab's API server with the official Python `kubernetes` client.

Usage: python3 client_scenarios.py KUBECONFIG SCENARIO

Each scenario asserts what a real kube-apiserver answers and exits non-zero (with a traceback)
on the first difference, so the Rust test that runs it fails and shows this output.
"""

import json
import sys
import threading
import time

try:
    from kubernetes import client, config, watch
    from kubernetes.client.rest import ApiException
except ImportError as err:  # The test must fail, never skip, when the client is missing.
    print(f"the Python 'kubernetes' package is not importable ({err}); run scripts/setup", file=sys.stderr)
    sys.exit(3)

DEFAULT_NAMESPACES = {"default", "kube-node-lease", "kube-public", "kube-system"}
# Bounds every watch: the server closes the stream after this many seconds at the latest.
WATCH_TIMEOUT_SECONDS = 10


def log(*args):
    print(*args, flush=True)


def status_of(err):
    """The Status object the server sent with an error answer."""
    try:
        return json.loads(err.body)
    except (TypeError, ValueError):
        raise AssertionError(f"error body is not a Status: {err.status} {err.body!r}")


def expect_api_error(code, reason, call, *args, **kwargs):
    """Runs `call` expecting an ApiException with HTTP `code` and Status `reason`."""
    try:
        result = call(*args, **kwargs)
    except ApiException as err:
        status = status_of(err)
        assert err.status == code, f"HTTP {err.status}, want {code}: {err.body}"
        assert status.get("kind") == "Status", status
        assert status.get("code") == code, status
        assert status.get("reason") == reason, status
        assert status.get("status") == "Failure", status
        return status
    raise AssertionError(f"{call.__name__} should have failed with {code} {reason}, returned {result}")


def create_namespace(v1, name):
    ns = v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    assert ns.metadata.name == name
    assert ns.status.phase == "Active", ns.status
    return name


def service(name, labels, port=80, service_type=None):
    return client.V1Service(
        api_version="v1",
        kind="Service",
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1ServiceSpec(
            type=service_type,
            selector={"app": name},
            ports=[client.V1ServicePort(port=port, target_port=8080)],
        ),
    )


def container(name, image):
    return client.V1Container(name=name, image=image, ports=[client.V1ContainerPort(container_port=80)])


def deployment(name, replicas):
    labels = {"app": name}
    return client.V1Deployment(
        api_version="apps/v1",
        kind="Deployment",
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[container("web", "nginx:1.25"), container("sidecar", "busybox:1.36")]),
            ),
        ),
    )


def scenario_namespaces(api):
    v1 = client.CoreV1Api(api)
    listed = v1.list_namespace()
    names = {ns.metadata.name for ns in listed.items}
    assert names == DEFAULT_NAMESPACES, names
    assert listed.metadata.resource_version, "a list carries its resourceVersion"
    for ns in listed.items:
        assert ns.status.phase == "Active", (ns.metadata.name, ns.status)
        assert ns.metadata.uid and ns.metadata.creation_timestamp, ns.metadata
        # Upstream labels every namespace with its own name.
        assert ns.metadata.labels.get("kubernetes.io/metadata.name") == ns.metadata.name, ns.metadata.labels
    log("list_namespace:", sorted(names))


def scenario_services(api):
    v1 = client.CoreV1Api(api)
    ns = create_namespace(v1, "py-services")
    created = v1.create_namespaced_service(ns, service("web", {"tier": "front"}))
    assert created.metadata.namespace == ns
    assert created.metadata.resource_version and created.metadata.uid
    assert created.spec.cluster_ip and created.spec.cluster_ip != "10.96.0.1", created.spec.cluster_ip
    assert created.spec.type == "ClusterIP", created.spec.type
    assert created.spec.ports[0].protocol == "TCP", created.spec.ports[0]
    assert created.spec.ports[0].target_port in (8080, "8080"), created.spec.ports[0].target_port
    v1.create_namespaced_service(ns, service("db", {"tier": "back"}))
    v1.create_namespaced_service(ns, service("api", {"tier": "front"}, port=8080))

    read = v1.read_namespaced_service("web", ns)
    assert read.metadata.uid == created.metadata.uid
    assert read.spec.cluster_ip == created.spec.cluster_ip
    assert read.spec.session_affinity == "None", read.spec.session_affinity

    front = v1.list_namespaced_service(ns, label_selector="tier=front")
    assert sorted(s.metadata.name for s in front.items) == ["api", "web"], [s.metadata.name for s in front.items]
    not_front = v1.list_namespaced_service(ns, label_selector="tier!=front")
    assert [s.metadata.name for s in not_front.items] == ["db"], [s.metadata.name for s in not_front.items]
    in_set = v1.list_namespaced_service(ns, label_selector="tier in (back,middle)")
    assert [s.metadata.name for s in in_set.items] == ["db"]
    everything = v1.list_namespaced_service(ns)
    assert sorted(s.metadata.name for s in everything.items) == ["api", "db", "web"]
    by_field = v1.list_namespaced_service(ns, field_selector="metadata.name=db")
    assert [s.metadata.name for s in by_field.items] == ["db"]

    node_port = v1.create_namespaced_service(ns, service("np", {"tier": "edge"}, service_type="NodePort"))
    assert 30000 <= node_port.spec.ports[0].node_port <= 32767, node_port.spec.ports[0]

    missing = expect_api_error(404, "NotFound", v1.read_namespaced_service, "nope", ns)
    assert missing.get("message") == 'services "nope" not found', missing
    assert missing.get("details", {}).get("name") == "nope", missing
    assert missing.get("details", {}).get("kind") == "services", missing

    expect_api_error(409, "AlreadyExists", v1.create_namespaced_service, ns, service("web", {}))

    v1.delete_namespaced_service("web", ns)
    expect_api_error(404, "NotFound", v1.read_namespaced_service, "web", ns)
    remaining = sorted(s.metadata.name for s in v1.list_namespaced_service(ns).items)
    assert remaining == ["api", "db", "np"], remaining
    expect_api_error(404, "NotFound", v1.delete_namespaced_service, "web", ns)
    log("services: create/read/list/delete ok")


def scenario_deployments(api):
    v1 = client.CoreV1Api(api)
    apps = client.AppsV1Api(api)
    ns = create_namespace(v1, "py-deploy")

    created = apps.create_namespaced_deployment(ns, deployment("shop", 2))
    spec = created.spec
    assert spec.strategy.type == "RollingUpdate", spec.strategy
    assert spec.strategy.rolling_update.max_surge == "25%", spec.strategy.rolling_update
    assert spec.strategy.rolling_update.max_unavailable == "25%", spec.strategy.rolling_update
    assert spec.revision_history_limit == 10, spec.revision_history_limit
    assert spec.progress_deadline_seconds == 600, spec.progress_deadline_seconds
    assert spec.template.spec.restart_policy == "Always"
    assert spec.template.spec.dns_policy == "ClusterFirst"
    assert spec.template.spec.containers[0].image_pull_policy == "IfNotPresent"
    assert created.metadata.generation == 1, created.metadata.generation

    read = apps.read_namespaced_deployment("shop", ns)
    assert read.metadata.uid == created.metadata.uid
    # The deployment controller may have written status in between, so not necessarily equal.
    assert int(read.metadata.resource_version) >= int(created.metadata.resource_version)
    assert read.spec.replicas == 2

    # A dict body is sent as a strategic merge patch: containers merge by name, so the sidecar stays.
    patched = apps.patch_namespaced_deployment(
        "shop", ns, {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}
    )
    images = {c.name: c.image for c in patched.spec.template.spec.containers}
    assert images == {"web": "nginx:1.27", "sidecar": "busybox:1.36"}, images
    assert patched.metadata.generation == 2, patched.metadata.generation
    assert int(patched.metadata.resource_version) > int(created.metadata.resource_version)

    # The strategic $patch: delete directive removes one list element by its merge key.
    patched = apps.patch_namespaced_deployment(
        "shop", ns, {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}}
    )
    assert [c.name for c in patched.spec.template.spec.containers] == ["web"], patched.spec.template.spec.containers
    assert patched.metadata.generation == 3, patched.metadata.generation

    # A list body is sent as a JSON patch (RFC 6902).
    patched = apps.patch_namespaced_deployment(
        "shop",
        ns,
        [
            {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "nginx:1.28"},
            {"op": "add", "path": "/metadata/labels/patched", "value": "json"},
            {"op": "test", "path": "/spec/replicas", "value": 2},
        ],
    )
    assert patched.spec.template.spec.containers[0].image == "nginx:1.28"
    assert patched.metadata.labels == {"app": "shop", "patched": "json"}, patched.metadata.labels
    # A JSON patch whose test fails changes nothing.
    try:
        apps.patch_namespaced_deployment("shop", ns, [{"op": "test", "path": "/spec/replicas", "value": 7}])
        raise AssertionError("a failing JSON patch test op must be rejected")
    except ApiException as err:
        assert 400 <= err.status < 500, (err.status, err.body)
    assert apps.read_namespaced_deployment("shop", ns).metadata.labels == {"app": "shop", "patched": "json"}

    # The scale subresource.
    scale = apps.read_namespaced_deployment_scale("shop", ns)
    assert scale.kind == "Scale" and scale.api_version == "autoscaling/v1", (scale.kind, scale.api_version)
    assert scale.spec.replicas == 2, scale.spec
    scale = apps.patch_namespaced_deployment_scale("shop", ns, {"spec": {"replicas": 5}})
    assert scale.spec.replicas == 5, scale.spec
    assert scale.metadata.name == "shop" and scale.metadata.namespace == ns, scale.metadata
    assert scale.status.selector == "app=shop", scale.status
    current = apps.read_namespaced_deployment("shop", ns)
    assert current.spec.replicas == 5, current.spec.replicas

    # PUT with a stale resourceVersion is an optimistic-concurrency conflict.
    stale = read
    assert stale.metadata.resource_version != current.metadata.resource_version
    stale.spec.replicas = 1
    conflict = expect_api_error(409, "Conflict", apps.replace_namespaced_deployment, "shop", ns, stale)
    assert conflict.get("message") == (
        'Operation cannot be fulfilled on deployments.apps "shop": '
        "the object has been modified; please apply your changes to the latest version and try again"
    ), conflict
    assert conflict.get("details", {}).get("group") == "apps", conflict
    # The same PUT with the current resourceVersion succeeds. The deployment controller writes
    # status concurrently, so re-read and retry on a conflict, as real clients do.
    for attempt in range(10):
        current = apps.read_namespaced_deployment("shop", ns)
        current.spec.replicas = 1
        try:
            replaced = apps.replace_namespaced_deployment("shop", ns, current)
            break
        except ApiException as e:
            if e.status != 409 or attempt == 9:
                raise
    assert replaced.spec.replicas == 1
    assert int(replaced.metadata.resource_version) > int(current.metadata.resource_version)

    missing = expect_api_error(404, "NotFound", apps.read_namespaced_deployment, "absent", ns)
    assert missing.get("message") == 'deployments.apps "absent" not found', missing
    assert missing.get("details", {}).get("group") == "apps", missing
    expect_api_error(404, "NotFound", apps.patch_namespaced_deployment, "absent", ns, {"spec": {"replicas": 1}})

    listed = apps.list_namespaced_deployment(ns, label_selector="patched=json")
    assert [d.metadata.name for d in listed.items] == ["shop"]
    apps.delete_namespaced_deployment("shop", ns)
    assert apps.list_namespaced_deployment(ns).items == []
    log("deployments: create/read/patch/scale/replace/delete ok")


def collect(stream, name, stop_after):
    """(type, resourceVersion, labels) of `name`'s events until one of type `stop_after`."""
    events = []
    for event in stream:
        obj = event["raw_object"]
        if obj.get("metadata", {}).get("name") != name:
            continue
        meta = obj["metadata"]
        events.append((event["type"], meta.get("resourceVersion"), meta.get("labels") or {}))
        if event["type"] == stop_after:
            break
    return events


def mutate_service(v1, ns, name, delay=0.0):
    """Creates, relabels and deletes one service, the changes a watch must report."""
    time.sleep(delay)
    v1.create_namespaced_service(ns, service(name, {"step": "one"}))
    v1.patch_namespaced_service(name, ns, {"metadata": {"labels": {"step": "two"}}})
    v1.delete_namespaced_service(name, ns)


def scenario_watch(api):
    v1 = client.CoreV1Api(api)
    ns = create_namespace(v1, "py-watch")
    v1.create_namespaced_service(ns, service("existing", {"step": "zero"}))
    rv = v1.list_namespaced_service(ns).metadata.resource_version

    # Live: changes made from another thread while the watch is open.
    w = watch.Watch()
    stream = w.stream(v1.list_namespaced_service, namespace=ns, resource_version=rv, timeout_seconds=WATCH_TIMEOUT_SECONDS)
    errors = []

    def worker():
        try:
            mutate_service(v1, ns, "live", delay=0.3)
        except Exception as err:  # reported by the main thread
            errors.append(err)

    thread = threading.Thread(target=worker)
    started = time.monotonic()
    thread.start()
    events = collect(stream, "live", "DELETED")
    w.stop()
    thread.join()
    assert not errors, errors
    assert [e[0] for e in events] == ["ADDED", "MODIFIED", "DELETED"], events
    assert events[0][2] == {"step": "one"} and events[1][2] == {"step": "two"}, events
    rvs = [int(e[1]) for e in events]
    assert rvs == sorted(rvs) and len(set(rvs)) == 3 and rvs[0] > int(rv), (rv, events)
    assert time.monotonic() - started < WATCH_TIMEOUT_SECONDS, "events came only when the watch timed out"
    log("live watch:", events)

    # Replay: changes made between steps, then a watch from the resourceVersion before them.
    before = v1.list_namespaced_service(ns).metadata.resource_version
    mutate_service(v1, ns, "replayed")
    w = watch.Watch()
    events = collect(
        w.stream(v1.list_namespaced_service, namespace=ns, resource_version=before, timeout_seconds=WATCH_TIMEOUT_SECONDS),
        "replayed",
        "DELETED",
    )
    w.stop()
    assert [e[0] for e in events] == ["ADDED", "MODIFIED", "DELETED"], events

    # Without a resourceVersion the watch starts with the current objects as ADDED.
    w = watch.Watch()
    first = next(iter(w.stream(v1.list_namespaced_service, namespace=ns, timeout_seconds=WATCH_TIMEOUT_SECONDS)))
    w.stop()
    assert first["type"] == "ADDED" and first["object"].metadata.name == "existing", first["type"]

    # A label selector also applies to watches: leaving the selector is seen as DELETED.
    before = v1.list_namespaced_service(ns).metadata.resource_version
    v1.create_namespaced_service(ns, service("sel", {"step": "one"}))
    v1.patch_namespaced_service("sel", ns, {"metadata": {"labels": {"step": "two"}}})
    w = watch.Watch()
    events = collect(
        w.stream(
            v1.list_namespaced_service,
            namespace=ns,
            label_selector="step=one",
            resource_version=before,
            timeout_seconds=WATCH_TIMEOUT_SECONDS,
        ),
        "sel",
        "DELETED",
    )
    w.stop()
    assert [e[0] for e in events] == ["ADDED", "DELETED"], events

    # A field selector on a name, as `kubectl get svc NAME -w` sends.
    before = v1.list_namespaced_service(ns).metadata.resource_version
    v1.patch_namespaced_service("existing", ns, {"metadata": {"labels": {"step": "touched"}}})
    w = watch.Watch()
    events = collect(
        w.stream(
            v1.list_namespaced_service,
            namespace=ns,
            field_selector="metadata.name=existing",
            resource_version=before,
            timeout_seconds=WATCH_TIMEOUT_SECONDS,
        ),
        "existing",
        "MODIFIED",
    )
    w.stop()
    assert [e[0] for e in events] == ["MODIFIED"], events
    log("watch: live, replay, initial and selector watches ok")


def scenario_watch_timeout(api):
    """timeout_seconds ends a quiet watch on the server's side, and the stream ends cleanly."""
    v1 = client.CoreV1Api(api)
    rv = v1.list_namespace().metadata.resource_version
    started = time.monotonic()
    w = watch.Watch()
    events = list(w.stream(v1.list_namespace, resource_version=rv, timeout_seconds=1))
    elapsed = time.monotonic() - started
    assert [e["type"] for e in events if e["type"] != "BOOKMARK"] == [], events
    assert 0.9 <= elapsed < 5, f"the watch ended after {elapsed:.1f}s, want about 1s"
    log(f"watch timeout after {elapsed:.2f}s")


def scenario_bookmarks(api):
    v1 = client.CoreV1Api(api)
    ns = create_namespace(v1, "py-bookmarks")
    v1.create_namespaced_service(ns, service("a", {}))
    v1.create_namespaced_service(ns, service("b", {}))
    rv = int(v1.list_namespaced_service(ns).metadata.resource_version)

    # sendInitialEvents: the current objects as ADDED, then a BOOKMARK marking the end of them.
    w = watch.Watch()
    stream = w.stream(
        v1.list_namespaced_service,
        namespace=ns,
        allow_watch_bookmarks=True,
        send_initial_events=True,
        resource_version_match="NotOlderThan",
        timeout_seconds=WATCH_TIMEOUT_SECONDS,
    )
    initial = []
    bookmark = None
    for event in stream:
        if event["type"] == "BOOKMARK":
            bookmark = event["raw_object"]
            break
        initial.append((event["type"], event["object"].metadata.name))
    assert sorted(initial) == [("ADDED", "a"), ("ADDED", "b")], initial
    assert bookmark is not None, "no BOOKMARK after the initial events"
    meta = bookmark["metadata"]
    assert meta.get("annotations", {}).get("k8s.io/initial-events-end") == "true", bookmark
    assert int(meta["resourceVersion"]) >= rv, (meta, rv)
    assert bookmark.get("kind") == "Service" and bookmark.get("apiVersion") == "v1", bookmark
    # The Watch helper remembers the bookmark's resourceVersion to resume from.
    assert w.resource_version == meta["resourceVersion"], (w.resource_version, meta)
    # After the bookmark the same stream carries live changes.
    v1.create_namespaced_service(ns, service("c", {}))
    live = collect(stream, "c", "ADDED")
    w.stop()
    assert [e[0] for e in live] == ["ADDED"], live

    # allowWatchBookmarks on an ordinary watch: normal events still flow, and any bookmark
    # carries only a resourceVersion that never goes backwards.
    w = watch.Watch()
    before = v1.list_namespaced_service(ns).metadata.resource_version
    stream = w.stream(
        v1.list_namespaced_service,
        namespace=ns,
        allow_watch_bookmarks=True,
        resource_version=before,
        timeout_seconds=WATCH_TIMEOUT_SECONDS,
    )
    v1.delete_namespaced_service("c", ns)
    seen = []
    for event in stream:
        seen.append((event["type"], event["raw_object"]["metadata"].get("name")))
        if event["type"] == "BOOKMARK":
            assert "name" not in event["raw_object"]["metadata"], event["raw_object"]
        if event["type"] == "DELETED":
            break
    w.stop()
    assert [s for s in seen if s[0] != "BOOKMARK"] == [("DELETED", "c")], seen

    # sendInitialEvents without resourceVersionMatch=NotOlderThan is invalid upstream.
    invalid = expect_api_error(
        422,
        "Invalid",
        v1.list_namespaced_service,
        ns,
        watch=True,
        send_initial_events=True,
        allow_watch_bookmarks=True,
        timeout_seconds=1,
    )
    assert invalid.get("message") == (
        'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: '
        "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"
    ), invalid
    log("bookmarks ok")


SCENARIOS = {
    "namespaces": scenario_namespaces,
    "services": scenario_services,
    "deployments": scenario_deployments,
    "watch": scenario_watch,
    "watch-timeout": scenario_watch_timeout,
    "bookmarks": scenario_bookmarks,
}


def main():
    if len(sys.argv) != 3 or sys.argv[2] not in SCENARIOS:
        print(f"usage: {sys.argv[0]} KUBECONFIG {{{','.join(SCENARIOS)}}}", file=sys.stderr)
        return 2
    config.load_kube_config(config_file=sys.argv[1])
    SCENARIOS[sys.argv[2]](client.ApiClient())
    return 0


if __name__ == "__main__":
    sys.exit(main())
