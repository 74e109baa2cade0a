//! What kube-apiserver fills in before validating a write: the v1 `SetDefaults_*` functions
//! (only absent or zero-valued fields are set, as Go's defaulters do), the registry strategies'
//! `PrepareForCreate`/`PrepareForUpdate` (status reset, generation, Service IP field syncing),
//! and the default admission plugins' mutations of Pods and Nodes. Every function accepts any
//! JSON: parts of the wrong type are left alone for the decoding step to reject.
//!
//! Not here: allocation of cluster IPs and node ports, the ServiceAccount token volume (which
//! needs a token controller), LimitRanger and quota.

use serde_json::{Map, Value, json};

use crate::access::{array_at, at, int_at, object_entry, set_default, str_at, str_or_empty};
use crate::errors::ApiError;

/// Applies the v1 defaulters of `kind` (group `""` or `"apps"`, ...) to `obj`. Run on every
/// create and update, before validation.
pub fn apply_defaults(group: &str, kind: &str, obj: &mut Value) {
    match (group, kind) {
        ("", "Pod") => default_pod(obj),
        ("", "Service") => default_service(obj),
        ("", "Namespace") => default_namespace(obj),
        ("", "Endpoints") => default_endpoints(obj),
        ("", "Node") => default_node(obj),
        ("", "Secret") => {
            if let Some(map) = obj.as_object_mut() {
                set_default(map, "type", json!("Opaque"));
            }
        }
        ("", "Event") => default_event(obj),
        ("", "ReplicationController") => {
            if let Some(spec) = object_entry(obj, "spec") {
                set_default(spec, "replicas", json!(1));
            }
            default_template(obj);
        }
        ("apps", "Deployment") => default_deployment(obj),
        ("apps", "ReplicaSet") => {
            if let Some(spec) = object_entry(obj, "spec") {
                set_default(spec, "replicas", json!(1));
            }
            default_template(obj);
        }
        ("apps", "DaemonSet") => default_daemon_set(obj),
        ("discovery.k8s.io", "EndpointSlice") => default_endpoint_slice(obj),
        // ConfigMap (its empty `data` map is omitted on the wire), ServiceAccount, Lease: none.
        _ => {}
    }
}

/// `PrepareForCreate` of the registry strategies: status the client may not set is reset,
/// `metadata.generation` starts at 1 for controllers, Services get their IP family fields.
/// Run after [`apply_defaults`] on create only.
pub fn prepare_for_create(group: &str, kind: &str, obj: &mut Value) {
    // Generic `BeforeCreate`: a new object cannot arrive already being deleted.
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("deletionTimestamp");
        meta.remove("deletionGracePeriodSeconds");
    }
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    match (group, kind) {
        ("", "Pod") => {
            let qos = pod_qos_class(map.get("spec").unwrap_or(&Value::Null));
            map.insert(
                "status".into(),
                json!({"phase": "Pending", "qosClass": qos}),
            );
        }
        ("", "Namespace") => {
            map.insert("status".into(), json!({"phase": "Active"}));
            // Only on create: the finalizer may be removed later (through /finalize).
            if let Some(spec) = object_entry(obj, "spec") {
                let finalizers = spec.entry("finalizers").or_insert_with(|| json!([]));
                if let Some(list) = finalizers.as_array_mut()
                    && !list.iter().any(|f| f.as_str() == Some("kubernetes"))
                {
                    list.push(json!("kubernetes"));
                }
            }
        }
        ("", "Service") => {
            map.insert("status".into(), json!({"loadBalancer": {}}));
            normalize_cluster_ips(obj, None);
            default_ip_families(obj);
        }
        ("apps", "Deployment" | "ReplicaSet" | "DaemonSet") | ("", "ReplicationController") => {
            map.insert("status".into(), json!({}));
            if let Some(meta) = object_entry(obj, "metadata") {
                meta.insert("generation".into(), json!(1));
            }
            if kind == "DaemonSet"
                && let Some(meta) = object_entry(obj, "metadata")
                && let Some(annotations) = object_entry_in(meta, "annotations")
            {
                annotations.insert(
                    "deprecated.daemonset.template.generation".into(),
                    json!("1"),
                );
            }
        }
        _ => {}
    }
}

/// `PrepareForUpdate` of the registry strategies for a write to the main resource: status is
/// kept from `old` (status changes go through `/status`), controllers' generation moves only
/// when the spec changed, Service IPs and node ports the client omitted are carried over.
pub fn prepare_for_update(group: &str, kind: &str, new: &mut Value, old: &Value) {
    if !new.is_object() || !old.is_object() {
        return;
    }
    carry_over_system_metadata(new, old);
    let keeps_status = matches!(
        (group, kind),
        (
            "",
            "Pod" | "Service" | "Namespace" | "Node" | "ReplicationController"
        ) | ("apps", "Deployment" | "ReplicaSet" | "DaemonSet")
    );
    if keeps_status && let Some(map) = new.as_object_mut() {
        match old.get("status") {
            Some(status) => map.insert("status".into(), status.clone()),
            None => map.remove("status"),
        };
    }
    match (group, kind) {
        ("apps", "Deployment" | "ReplicaSet" | "DaemonSet") | ("", "ReplicationController") => {
            let old_generation = at(old, &["metadata", "generation"])
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let spec_changed = new.get("spec") != old.get("spec");
            let generation = if spec_changed {
                old_generation.saturating_add(1)
            } else {
                old_generation
            };
            if let Some(meta) = object_entry(new, "metadata") {
                meta.insert("generation".into(), json!(generation));
            }
            if kind == "DaemonSet"
                && at(new, &["spec", "template"]) != at(old, &["spec", "template"])
                && let Some(meta) = object_entry(new, "metadata")
                && let Some(annotations) = object_entry_in(meta, "annotations")
            {
                let old_template_generation = at(
                    old,
                    &[
                        "metadata",
                        "annotations",
                        "deprecated.daemonset.template.generation",
                    ],
                )
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<i64>().ok())
                .unwrap_or(0);
                annotations.insert(
                    "deprecated.daemonset.template.generation".into(),
                    json!(old_template_generation.saturating_add(1).to_string()),
                );
            }
        }
        ("", "Namespace") => {
            // spec.finalizers changes only through /finalize.
            let old_finalizers = at(old, &["spec", "finalizers"]).cloned();
            if let Some(spec) = object_entry(new, "spec") {
                match old_finalizers {
                    Some(f) => spec.insert("finalizers".into(), f),
                    None => spec.remove("finalizers"),
                };
            }
        }
        ("", "Service") => {
            patch_allocated_values(new, old);
            normalize_cluster_ips(new, Some(old));
            carry_over_ip_families(new, old);
        }
        _ => {}
    }
}

/// Generic `BeforeUpdate`: clients cannot move `generation`, may omit `uid`, cannot change
/// `creationTimestamp`, and cannot clear deletion fields once set.
fn carry_over_system_metadata(new: &mut Value, old: &Value) {
    let old_meta = old.get("metadata").cloned().unwrap_or(Value::Null);
    let Some(meta) = object_entry(new, "metadata") else {
        return;
    };
    match old_meta.get("generation") {
        Some(g) => meta.insert("generation".into(), g.clone()),
        None => meta.remove("generation"),
    };
    let new_uid_empty = meta
        .get("uid")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty();
    if new_uid_empty && let Some(uid) = old_meta.get("uid") {
        meta.insert("uid".into(), uid.clone());
    }
    if let Some(created) = old_meta.get("creationTimestamp").filter(|c| !c.is_null()) {
        meta.insert("creationTimestamp".into(), created.clone());
    }
    if let Some(deleted) = old_meta.get("deletionTimestamp").filter(|d| !d.is_null())
        && meta.get("deletionTimestamp").is_some_and(|d| !d.is_null())
    {
        meta.insert("deletionTimestamp".into(), deleted.clone());
    }
    if let Some(grace) = old_meta
        .get("deletionGracePeriodSeconds")
        .filter(|g| !g.is_null())
        && meta
            .get("deletionGracePeriodSeconds")
            .is_none_or(Value::is_null)
    {
        meta.insert("deletionGracePeriodSeconds".into(), grace.clone());
    }
}

/// Where the ServiceAccount admission plugin mounts a pod's API credentials.
pub const SERVICE_ACCOUNT_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The prefix of the projected volume that holds them (`kube-api-access-7xk2p`).
pub const SERVICE_ACCOUNT_VOLUME_PREFIX: &str = "kube-api-access-";

/// The token lifetime the plugin writes, upstream's `WarnOnlyBoundTokenExpirationSeconds`.
const SERVICE_ACCOUNT_TOKEN_EXPIRATION: i64 = 3607;

/// A pod the kubelet mirrors from a static manifest; admission plugins leave its spec alone.
fn is_mirror_pod(pod: &Value) -> bool {
    at(
        pod,
        &["metadata", "annotations", "kubernetes.io/config.mirror"],
    )
    .is_some()
}

/// The ServiceAccount admission plugin on a Pod's create, after [`pod_admission_defaults`] named
/// the account: `account(namespace, name)` is the store's answer, `None` when the account does
/// not exist (the pod is refused with upstream's 403) or else its
/// `automountServiceAccountToken`; then [`mount_service_account_token`]. Mirror pods are not
/// checked.
pub fn admit_service_account(
    pod: &mut Value,
    account: impl FnOnce(&str, &str) -> Option<Option<bool>>,
    volume_name: impl FnOnce() -> String,
) -> Result<(), ApiError> {
    if is_mirror_pod(pod) {
        return Ok(());
    }
    let text = |path: &[&str]| {
        at(pod, path)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let name = text(&["spec", "serviceAccountName"]);
    if name.is_empty() {
        return Ok(());
    }
    let namespace = text(&["metadata", "namespace"]);
    let Some(account_automount) = account(&namespace, &name) else {
        return Err(ApiError::forbidden(format!(
            "pods \"{}\" is forbidden: error looking up service account {namespace}/{name}: serviceaccount \"{name}\" not found",
            text(&["metadata", "name"])
        )));
    };
    mount_service_account_token(pod, account_automount, volume_name);
    Ok(())
}

/// The ServiceAccount admission plugin's token mount, applied to a Pod on create: unless the
/// pod's `automountServiceAccountToken` (or else its account's, `account_automount`) is false,
/// every container and init container without a mount at [`SERVICE_ACCOUNT_MOUNT_PATH`] gets
/// a read-only mount of the projected `kube-api-access-…` volume (the token, `ca.crt` from
/// ConfigMap `kube-root-ca.crt`, the namespace), which is added unless the pod already has
/// one. `volume_name` is called only when a new volume is needed. Mirror pods are left alone.
pub fn mount_service_account_token(
    pod: &mut Value,
    account_automount: Option<bool>,
    volume_name: impl FnOnce() -> String,
) {
    if is_mirror_pod(pod) {
        return;
    }
    let Some(spec) = object_entry(pod, "spec") else {
        return;
    };
    let automount = spec
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or(account_automount)
        .unwrap_or(true);
    if !automount {
        return;
    }
    let existing = spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.get("name").and_then(Value::as_str))
        .find(|n| n.starts_with(SERVICE_ACCOUNT_VOLUME_PREFIX))
        .map(str::to_string);
    let name = existing.clone().unwrap_or_else(volume_name);
    let mut mounted = false;
    for list in ["initContainers", "containers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for container in containers.iter_mut().filter_map(Value::as_object_mut) {
            let mounts = container.entry("volumeMounts").or_insert_with(|| json!([]));
            if mounts.is_null() {
                *mounts = json!([]);
            }
            let Some(mounts) = mounts.as_array_mut() else {
                continue;
            };
            let taken = mounts.iter().any(|m| {
                m.get("mountPath").and_then(Value::as_str) == Some(SERVICE_ACCOUNT_MOUNT_PATH)
            });
            if !taken {
                mounts.push(json!({
                    "name": name,
                    "readOnly": true,
                    "mountPath": SERVICE_ACCOUNT_MOUNT_PATH,
                }));
                mounted = true;
            }
        }
    }
    if !mounted || existing.is_some() {
        return;
    }
    let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
    if !volumes.is_array() {
        *volumes = json!([]);
    }
    if let Some(volumes) = volumes.as_array_mut() {
        volumes.push(json!({
            "name": name,
            "projected": {
                "defaultMode": 420,
                "sources": [
                    {"serviceAccountToken": {
                        "expirationSeconds": SERVICE_ACCOUNT_TOKEN_EXPIRATION,
                        "path": "token",
                    }},
                    {"configMap": {
                        "name": "kube-root-ca.crt",
                        "items": [{"key": "ca.crt", "path": "ca.crt"}],
                    }},
                    {"downwardAPI": {
                        "items": [{
                            "path": "namespace",
                            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                        }],
                    }},
                ],
            },
        }));
    }
}

/// The mutations of the admission plugins a v1.33 kube-apiserver enables by default, applied to
/// a Pod on create: ServiceAccount (`serviceAccountName` "default"), Priority (`priority`,
/// `preemptionPolicy` from the PriorityClass; only the built-in classes exist here) and
/// DefaultTolerationSeconds (tolerate not-ready/unreachable for 300 s). Errors are the 403s
/// those plugins answer with.
pub fn pod_admission_defaults(pod: &mut Value) -> Result<(), ApiError> {
    let name = at(pod, &["metadata", "name"])
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let is_mirror = is_mirror_pod(pod);
    let Some(spec) = object_entry(pod, "spec") else {
        return Ok(());
    };

    if !is_mirror {
        let account = match spec
            .get("serviceAccountName")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            Some(s) => s.to_string(),
            None => spec
                .get("serviceAccount")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .unwrap_or("default")
                .to_string(),
        };
        spec.insert("serviceAccountName".into(), json!(account));
        spec.insert("serviceAccount".into(), json!(account));
    }

    let class = spec
        .get("priorityClassName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let priority: i64 = match class.as_str() {
        "" => 0,
        "system-cluster-critical" => 2_000_000_000,
        "system-node-critical" => 2_000_001_000,
        other => {
            return Err(ApiError::forbidden(format!(
                "pods \"{name}\" is forbidden: no PriorityClass with name {other} was found"
            )));
        }
    };
    if let Some(given) = spec.get("priority").and_then(Value::as_i64)
        && given != priority
    {
        return Err(ApiError::forbidden(format!(
            "pods \"{name}\" is forbidden: the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {priority} from the given PriorityClass name"
        )));
    }
    if let Some(given) = spec.get("preemptionPolicy").and_then(Value::as_str)
        && given != "PreemptLowerPriority"
    {
        return Err(ApiError::forbidden(format!(
            "pods \"{name}\" is forbidden: the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed PreemptLowerPriority from the given PriorityClass name"
        )));
    }
    spec.insert("priority".into(), json!(priority));
    spec.insert("preemptionPolicy".into(), json!("PreemptLowerPriority"));

    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    if tolerations.is_null() {
        *tolerations = json!([]);
    }
    if let Some(list) = tolerations.as_array_mut() {
        let tolerates = |taint: &str| {
            list.iter().any(|t| {
                let key = str_or_empty(t, "key");
                let effect = str_or_empty(t, "effect");
                (key == taint || key.is_empty()) && (effect == "NoExecute" || effect.is_empty())
            })
        };
        let not_ready = !tolerates("node.kubernetes.io/not-ready");
        let unreachable = !tolerates("node.kubernetes.io/unreachable");
        for (missing, key) in [
            (not_ready, "node.kubernetes.io/not-ready"),
            (unreachable, "node.kubernetes.io/unreachable"),
        ] {
            if missing {
                list.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
            }
        }
    }
    Ok(())
}

/// TaintNodesByCondition on Node create: a new node is not ready until its kubelet says so.
pub fn node_admission_defaults(node: &mut Value) {
    let Some(spec) = object_entry(node, "spec") else {
        return;
    };
    let taints = spec.entry("taints").or_insert_with(|| json!([]));
    if taints.is_null() {
        *taints = json!([]);
    }
    if let Some(list) = taints.as_array_mut() {
        let present = list.iter().any(|t| {
            str_or_empty(t, "key") == "node.kubernetes.io/not-ready"
                && str_or_empty(t, "effect") == "NoSchedule"
        });
        if !present {
            list.push(json!({"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}));
        }
    }
}

/// `Always` for `:latest` or untagged images, `IfNotPresent` otherwise (digests, other tags,
/// and references upstream cannot parse).
pub fn default_image_pull_policy(image: &str) -> &'static str {
    match parse_image_tag(image) {
        Some(ImageTag::Latest) => "Always",
        _ => "IfNotPresent",
    }
}

enum ImageTag {
    Latest,
    Other,
}

/// A small port of the reference grammar `ParseNormalizedNamed` enforces; `None` = unparsable.
fn parse_image_tag(image: &str) -> Option<ImageTag> {
    if image.is_empty() || image.len() > 4096 {
        return None;
    }
    let (name_and_tag, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    if let Some(d) = digest {
        let (algo, hex) = d.split_once(':')?;
        if algo.is_empty() || hex.len() < 32 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
    }
    let last_slash = name_and_tag.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (name, tag) = match name_and_tag[last_slash..].rfind(':') {
        Some(i) => (
            &name_and_tag[..last_slash + i],
            Some(&name_and_tag[last_slash + i + 1..]),
        ),
        None => (name_and_tag, None),
    };
    if let Some(t) = tag {
        let valid = !t.is_empty()
            && t.len() <= 128
            && t.bytes()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
            && t.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
        if !valid {
            return None;
        }
    }
    let mut components: Vec<&str> = name.split('/').collect();
    if components.len() > 1 {
        let first = components[0];
        if first.contains(['.', ':'])
            || first == "localhost"
            || first.bytes().any(|c| c.is_ascii_uppercase())
        {
            if first.is_empty()
                || !first
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b':'))
            {
                return None;
            }
            components.remove(0);
        }
    }
    let component_ok = |c: &str| {
        let b = c.as_bytes();
        !b.is_empty()
            && b.iter().all(|&x| {
                x.is_ascii_lowercase() || x.is_ascii_digit() || matches!(x, b'.' | b'_' | b'-')
            })
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
    };
    if components.is_empty() || !components.iter().all(|c| component_ok(c)) {
        return None;
    }
    match (tag, digest) {
        (Some("latest"), _) | (None, None) => Some(ImageTag::Latest),
        _ => Some(ImageTag::Other),
    }
}

fn object_entry_in<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
) -> Option<&'a mut Map<String, Value>> {
    let slot = map
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut()
}

/// Visits each object in the array at `key` of `map`.
fn each_object(
    map: &mut Map<String, Value>,
    key: &str,
    mut f: impl FnMut(&mut Map<String, Value>),
) {
    if let Some(items) = map.get_mut(key).and_then(Value::as_array_mut) {
        for item in items.iter_mut().filter_map(Value::as_object_mut) {
            f(item);
        }
    }
}

fn obj_mut<'a>(map: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    map.get_mut(key).and_then(Value::as_object_mut)
}

fn default_pod(pod: &mut Value) {
    let Some(spec) = object_entry(pod, "spec") else {
        return;
    };
    default_pod_spec(spec);
    // SetDefaults_Pod: only on Pods, not templates.
    for list in ["containers", "initContainers"] {
        each_object(spec, list, |c| {
            let Some(resources) = obj_mut(c, "resources") else {
                return;
            };
            let Some(limits) = resources.get("limits").and_then(Value::as_object).cloned() else {
                return;
            };
            if let Some(requests) = object_entry_in(resources, "requests") {
                for (k, v) in limits {
                    requests.entry(k).or_insert(v);
                }
            }
        });
    }
    set_default(spec, "enableServiceLinks", json!(true));
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        for list in ["containers", "initContainers"] {
            each_object(spec, list, |c| {
                each_object(c, "ports", |p| {
                    let host_port = p.get("hostPort").and_then(Value::as_i64).unwrap_or(0);
                    if host_port == 0
                        && let Some(container_port) = p.get("containerPort").cloned()
                    {
                        p.insert("hostPort".into(), container_port);
                    }
                });
            });
        }
    }
}

/// `spec.template.spec` defaults shared by the workload controllers.
fn default_template(obj: &mut Value) {
    let Some(spec) = object_entry(obj, "spec") else {
        return;
    };
    let Some(template) = object_entry_in(spec, "template") else {
        return;
    };
    let Some(pod_spec) = object_entry_in(template, "spec") else {
        return;
    };
    default_pod_spec(pod_spec);
}

fn default_pod_spec(spec: &mut Map<String, Value>) {
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "restartPolicy", json!("Always"));
    if matches!(spec.get("securityContext"), None | Some(Value::Null)) {
        spec.insert("securityContext".into(), json!({}));
    }
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        each_object(spec, list, default_container);
    }
    each_object(spec, "volumes", default_volume);
}

fn default_container(c: &mut Map<String, Value>) {
    if c.get("imagePullPolicy")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        let image = c.get("image").and_then(Value::as_str).unwrap_or("");
        let policy = default_image_pull_policy(image);
        c.insert("imagePullPolicy".into(), json!(policy));
    }
    set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(c, "terminationMessagePolicy", json!("File"));
    if matches!(c.get("resources"), None | Some(Value::Null)) {
        c.insert("resources".into(), json!({}));
    }
    each_object(c, "ports", |p| set_default(p, "protocol", json!("TCP")));
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = obj_mut(c, probe) {
            default_probe(p);
        }
    }
    if let Some(lifecycle) = obj_mut(c, "lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = obj_mut(lifecycle, hook) {
                default_handler(h);
            }
        }
    }
    each_object(c, "env", |e| {
        if let Some(field_ref) = obj_mut(e, "valueFrom").and_then(|v| obj_mut(v, "fieldRef")) {
            set_default(field_ref, "apiVersion", json!("v1"));
        }
    });
}

fn default_probe(p: &mut Map<String, Value>) {
    for (k, v) in [
        ("timeoutSeconds", 1),
        ("periodSeconds", 10),
        ("successThreshold", 1),
        ("failureThreshold", 3),
    ] {
        if matches!(p.get(k), None | Some(Value::Null))
            || p.get(k).and_then(Value::as_i64) == Some(0)
        {
            p.insert(k.into(), json!(v));
        }
    }
    default_handler(p);
}

fn default_handler(h: &mut Map<String, Value>) {
    if let Some(get) = obj_mut(h, "httpGet") {
        set_default(get, "path", json!("/"));
        set_default(get, "scheme", json!("HTTP"));
    }
}

fn default_volume(v: &mut Map<String, Value>) {
    if !crate::validation::VOLUME_SOURCES
        .iter()
        .any(|s| v.get(*s).is_some_and(|x| !x.is_null()))
    {
        v.insert("emptyDir".into(), json!({}));
    }
    for source in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(s) = obj_mut(v, source) {
            set_default(s, "defaultMode", json!(420));
        }
    }
    if let Some(host_path) = obj_mut(v, "hostPath")
        && !host_path.contains_key("type")
    {
        host_path.insert("type".into(), json!(""));
    }
    if let Some(downward) = obj_mut(v, "downwardAPI") {
        default_downward_items(downward);
    }
    if let Some(projected) = obj_mut(v, "projected") {
        each_object(projected, "sources", |s| {
            if let Some(token) = obj_mut(s, "serviceAccountToken") {
                set_default(token, "expirationSeconds", json!(3600));
            }
            if let Some(downward) = obj_mut(s, "downwardAPI") {
                default_downward_items(downward);
            }
        });
    }
}

fn default_downward_items(d: &mut Map<String, Value>) {
    each_object(d, "items", |item| {
        if let Some(field_ref) = obj_mut(item, "fieldRef") {
            set_default(field_ref, "apiVersion", json!("v1"));
        }
    });
}

fn default_deployment(obj: &mut Value) {
    if let Some(spec) = object_entry(obj, "spec") {
        set_default(spec, "replicas", json!(1));
        if let Some(strategy) = object_entry_in(spec, "strategy") {
            set_default(strategy, "type", json!("RollingUpdate"));
            if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
                && let Some(rolling) = object_entry_in(strategy, "rollingUpdate")
            {
                set_default(rolling, "maxUnavailable", json!("25%"));
                set_default(rolling, "maxSurge", json!("25%"));
            }
        }
        set_default(spec, "revisionHistoryLimit", json!(10));
        set_default(spec, "progressDeadlineSeconds", json!(600));
    }
    default_template(obj);
}

fn default_daemon_set(obj: &mut Value) {
    if let Some(spec) = object_entry(obj, "spec") {
        if let Some(strategy) = object_entry_in(spec, "updateStrategy") {
            set_default(strategy, "type", json!("RollingUpdate"));
            if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
                && let Some(rolling) = object_entry_in(strategy, "rollingUpdate")
            {
                set_default(rolling, "maxUnavailable", json!(1));
                set_default(rolling, "maxSurge", json!(0));
            }
        }
        set_default(spec, "revisionHistoryLimit", json!(10));
    }
    default_template(obj);
}

fn default_service(obj: &mut Value) {
    let Some(spec) = object_entry(obj, "spec") else {
        return;
    };
    set_default(spec, "sessionAffinity", json!("None"));
    match spec.get("sessionAffinity").and_then(Value::as_str) {
        Some("None") => {
            spec.remove("sessionAffinityConfig");
        }
        Some("ClientIP") => {
            let has_timeout = spec
                .get("sessionAffinityConfig")
                .and_then(|c| c.get("clientIP"))
                .and_then(|c| c.get("timeoutSeconds"))
                .is_some_and(|t| !t.is_null());
            if !has_timeout {
                spec.insert(
                    "sessionAffinityConfig".into(),
                    json!({"clientIP": {"timeoutSeconds": 10800}}),
                );
            }
        }
        _ => {}
    }
    set_default(spec, "type", json!("ClusterIP"));
    each_object(spec, "ports", |p| {
        set_default(p, "protocol", json!("TCP"));
        let target_unset = match p.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.is_empty(),
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            _ => false,
        };
        if target_unset {
            let port = p.get("port").cloned().unwrap_or(json!(0));
            p.insert("targetPort".into(), port);
        }
    });
    let service_type = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let has_external_ips = spec
        .get("externalIPs")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    let externally_accessible = service_type == "LoadBalancer"
        || service_type == "NodePort"
        || (service_type == "ClusterIP" && has_external_ips);
    if externally_accessible {
        set_default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if matches!(
        service_type.as_str(),
        "NodePort" | "LoadBalancer" | "ClusterIP"
    ) {
        set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if service_type == "LoadBalancer" {
        set_default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
}

/// The Service's clusterIP/clusterIPs pair as upstream keeps them in sync (`NormalizeClusterIPs`).
fn normalize_cluster_ips(new: &mut Value, old: Option<&Value>) {
    let new_ip = at(new, &["spec", "clusterIP"])
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let new_ips = at(new, &["spec", "clusterIPs"]).cloned();
    let new_ips_empty = new_ips
        .as_ref()
        .and_then(Value::as_array)
        .is_none_or(|a| a.is_empty());
    let Some(spec) = object_entry(new, "spec") else {
        return;
    };
    let Some(old) = old else {
        if !new_ip.is_empty() && new_ips_empty {
            spec.insert("clusterIPs".into(), json!([new_ip]));
        }
        return;
    };
    let old_ip = at(old, &["spec", "clusterIP"])
        .and_then(Value::as_str)
        .unwrap_or("");
    let old_ips = at(old, &["spec", "clusterIPs"]);
    let old_ips_empty = old_ips
        .and_then(Value::as_array)
        .is_none_or(|a| a.is_empty());
    if !old_ips_empty && new_ips_empty && old_ip == new_ip {
        if let Some(ips) = old_ips {
            spec.insert("clusterIPs".into(), ips.clone());
        }
        return;
    }
    if old_ip != new_ip {
        let same_ips = old_ips == new_ips.as_ref();
        if !old_ip.is_empty() && new_ip.is_empty() {
            if same_ips {
                spec.remove("clusterIPs");
            }
        } else if same_ips {
            spec.insert("clusterIPs".into(), json!([new_ip]));
        }
    }
}

fn service_type(v: &Value) -> &str {
    at(v, &["spec", "type"])
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// `patchAllocatedValues`: a client that omits allocated values keeps them.
fn patch_allocated_values(new: &mut Value, old: &Value) {
    let needs_cluster_ip = |v: &Value| service_type(v) != "ExternalName";
    let needs_node_port = |v: &Value| {
        let t = service_type(v);
        t == "NodePort"
            || (t == "LoadBalancer"
                && at(v, &["spec", "allocateLoadBalancerNodePorts"])
                    .and_then(Value::as_bool)
                    .unwrap_or(true))
    };
    let both_need_ip = needs_cluster_ip(old) && needs_cluster_ip(new);
    let both_need_ports = needs_node_port(old) && needs_node_port(new);
    let old_spec = old.get("spec").cloned().unwrap_or(Value::Null);
    let Some(spec) = object_entry(new, "spec") else {
        return;
    };
    if both_need_ip {
        if spec
            .get("clusterIP")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
            && let Some(ip) = old_spec.get("clusterIP")
        {
            spec.insert("clusterIP".into(), ip.clone());
        }
        let new_ips_empty = spec
            .get("clusterIPs")
            .and_then(Value::as_array)
            .is_none_or(|a| a.is_empty());
        if new_ips_empty
            && let Some(ips) = old_spec
                .get("clusterIPs")
                .filter(|v| v.as_array().is_some_and(|a| !a.is_empty()))
        {
            spec.insert("clusterIPs".into(), ips.clone());
        }
    }
    if both_need_ports {
        let used_in = |ports: &[Value]| -> Vec<i64> {
            ports
                .iter()
                .filter_map(|p| int_at(p, "nodePort"))
                .filter(|n| *n != 0)
                .collect()
        };
        let old_ports = array_at(&old_spec, "ports");
        let new_used = spec
            .get("ports")
            .and_then(Value::as_array)
            .map(|p| used_in(p))
            .unwrap_or_default();
        let used: Vec<i64> = used_in(old_ports)
            .into_iter()
            .filter(|p| new_used.contains(p))
            .collect();
        let by_name: Vec<(String, i64)> = old_ports
            .iter()
            .map(|p| {
                (
                    str_or_empty(p, "name").to_string(),
                    int_at(p, "nodePort").unwrap_or(0),
                )
            })
            .collect();
        each_object(spec, "ports", |p| {
            if p.get("nodePort").and_then(Value::as_i64).unwrap_or(0) == 0 {
                let name = p.get("name").and_then(Value::as_str).unwrap_or("");
                let old_value = by_name
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| *v)
                    .unwrap_or(0);
                if old_value != 0 && !used.contains(&old_value) {
                    p.insert("nodePort".into(), json!(old_value));
                }
            }
        });
        if spec
            .get("healthCheckNodePort")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            == 0
            && let Some(hc) = old_spec
                .get("healthCheckNodePort")
                .filter(|v| v.as_i64().unwrap_or(0) != 0)
        {
            spec.insert("healthCheckNodePort".into(), hc.clone());
        }
    }
}

/// IP family fields on create for a single-stack IPv4 cluster (the allocator's
/// `initIPFamilyFields`); headless Services without a selector ask for both families.
fn default_ip_families(obj: &mut Value) {
    if service_type(obj) == "ExternalName" {
        return;
    }
    let headless = at(obj, &["spec", "clusterIPs"])
        .and_then(Value::as_array)
        .is_some_and(|ips| ips.len() == 1 && ips[0].as_str() == Some("None"));
    let has_selector = at(obj, &["spec", "selector"])
        .and_then(Value::as_object)
        .is_some_and(|s| !s.is_empty());
    let Some(spec) = object_entry(obj, "spec") else {
        return;
    };
    if headless && !has_selector {
        set_default(spec, "ipFamilyPolicy", json!("RequireDualStack"));
        if spec
            .get("ipFamilies")
            .and_then(Value::as_array)
            .is_none_or(|a| a.is_empty())
        {
            spec.insert("ipFamilies".into(), json!(["IPv4", "IPv6"]));
        }
        return;
    }
    set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
    if spec
        .get("ipFamilies")
        .and_then(Value::as_array)
        .is_none_or(|a| a.is_empty())
    {
        spec.insert("ipFamilies".into(), json!(["IPv4"]));
    }
}

fn carry_over_ip_families(new: &mut Value, old: &Value) {
    if service_type(new) == "ExternalName" {
        return;
    }
    if service_type(old) == "ExternalName" {
        default_ip_families(new);
        return;
    }
    let old_spec = old.get("spec").cloned().unwrap_or(Value::Null);
    let Some(spec) = object_entry(new, "spec") else {
        return;
    };
    if matches!(spec.get("ipFamilyPolicy"), None | Some(Value::Null))
        && let Some(p) = old_spec.get("ipFamilyPolicy")
    {
        spec.insert("ipFamilyPolicy".into(), p.clone());
    }
    if spec
        .get("ipFamilies")
        .and_then(Value::as_array)
        .is_none_or(|a| a.is_empty())
        && let Some(f) = old_spec.get("ipFamilies")
    {
        spec.insert("ipFamilies".into(), f.clone());
    }
}

fn default_namespace(obj: &mut Value) {
    let name = at(obj, &["metadata", "name"])
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !name.is_empty()
        && let Some(meta) = object_entry(obj, "metadata")
        && let Some(labels) = object_entry_in(meta, "labels")
    {
        labels.insert("kubernetes.io/metadata.name".into(), json!(name));
    }
    if let Some(status) = object_entry(obj, "status") {
        set_default(status, "phase", json!("Active"));
    }
}

fn default_endpoints(obj: &mut Value) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    each_object(map, "subsets", |subset| {
        each_object(subset, "ports", |p| {
            set_default(p, "protocol", json!("TCP"))
        })
    });
}

fn default_endpoint_slice(obj: &mut Value) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    each_object(map, "ports", |p| {
        if !p.contains_key("name") || p.get("name").is_some_and(Value::is_null) {
            p.insert("name".into(), json!(""));
        }
        set_default(p, "protocol", json!("TCP"));
    });
    // `conditions` is a struct upstream, so it is always serialized.
    each_object(map, "endpoints", |e| {
        if matches!(e.get("conditions"), None | Some(Value::Null)) {
            e.insert("conditions".into(), json!({}));
        }
    });
}

fn default_node(obj: &mut Value) {
    let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) else {
        return;
    };
    if matches!(status.get("allocatable"), None | Some(Value::Null))
        && let Some(capacity) = status.get("capacity").filter(|c| c.is_object()).cloned()
    {
        status.insert("allocatable".into(), capacity);
    }
}

fn default_event(obj: &mut Value) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    // These v1 fields have no `omitempty` upstream, so they always appear.
    for k in ["reportingComponent", "reportingInstance"] {
        if map.get(k).is_none_or(Value::is_null) {
            map.insert(k.into(), json!(""));
        }
    }
    if matches!(map.get("source"), None | Some(Value::Null)) {
        map.insert("source".into(), json!({}));
    }
}

/// `qos.GetPodQOS` over CPU and memory. Quantities are compared as written, so `1` and `1000m`
/// count as different (upstream compares values); only Guaranteed vs Burstable can differ.
pub fn pod_qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = array_at(spec, "containers")
        .iter()
        .chain(array_at(spec, "initContainers").iter())
        .collect();
    let mut any_set = false;
    let mut guaranteed = !containers.is_empty();
    for c in &containers {
        let requests = at(c, &["resources", "requests"]);
        let limits = at(c, &["resources", "limits"]);
        for resource in ["cpu", "memory"] {
            let request = requests.and_then(|r| {
                str_at(r, resource)
                    .map(str::to_string)
                    .or_else(|| r.get(resource).map(Value::to_string))
            });
            let limit = limits.and_then(|l| {
                str_at(l, resource)
                    .map(str::to_string)
                    .or_else(|| l.get(resource).map(Value::to_string))
            });
            if request.is_some() || limit.is_some() {
                any_set = true;
            }
            match (&request, &limit) {
                (_, None) => guaranteed = false,
                (Some(r), Some(l)) if r != l => guaranteed = false,
                _ => {}
            }
        }
    }
    if !any_set {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_pull_policy_table() {
        let cases = [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("nginx:1.27", "IfNotPresent"),
            ("localhost:5000/nginx", "Always"),
            ("localhost:5000/nginx:v1", "IfNotPresent"),
            (
                "docker.io/library/redis@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "IfNotPresent",
            ),
            (
                "redis:latest@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "Always",
            ),
            ("NGINX", "IfNotPresent"),
            ("", "IfNotPresent"),
            ("training/dockercoins-rng:1.0", "IfNotPresent"),
        ];
        for (image, want) in cases {
            assert_eq!(default_image_pull_policy(image), want, "{image:?}");
        }
    }

    #[test]
    fn deployment_defaults_match_upstream_output() {
        let mut d = json!({"metadata": {"name": "web"}, "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "nginx", "image": "nginx", "ports": [{"containerPort": 80}]}]}}}});
        apply_defaults("apps", "Deployment", &mut d);
        let spec = &d["spec"];
        assert_eq!(spec["replicas"], 1);
        assert_eq!(
            spec["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(spec["progressDeadlineSeconds"], 600);
        let pod_spec = &spec["template"]["spec"];
        assert_eq!(pod_spec["restartPolicy"], "Always");
        assert_eq!(pod_spec["dnsPolicy"], "ClusterFirst");
        assert_eq!(pod_spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(pod_spec["schedulerName"], "default-scheduler");
        assert_eq!(pod_spec["securityContext"], json!({}));
        assert_eq!(
            pod_spec.get("enableServiceLinks"),
            None,
            "templates do not get Pod-only defaults"
        );
        let c = &pod_spec["containers"][0];
        assert_eq!(c["imagePullPolicy"], "Always");
        assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(c["terminationMessagePolicy"], "File");
        assert_eq!(c["resources"], json!({}));
        assert_eq!(c["ports"][0]["protocol"], "TCP");
    }

    #[test]
    fn recreate_strategy_gets_no_rolling_update() {
        let mut d = json!({"spec": {"strategy": {"type": "Recreate"}, "replicas": 3}});
        apply_defaults("apps", "Deployment", &mut d);
        assert_eq!(d["spec"]["strategy"], json!({"type": "Recreate"}));
        assert_eq!(d["spec"]["replicas"], 3);
    }

    #[test]
    fn daemon_set_and_replica_set_defaults() {
        let mut ds = json!({});
        apply_defaults("apps", "DaemonSet", &mut ds);
        assert_eq!(
            ds["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        );
        assert_eq!(ds["spec"]["revisionHistoryLimit"], 10);
        let mut rs = json!({"spec": {"replicas": null}});
        apply_defaults("apps", "ReplicaSet", &mut rs);
        assert_eq!(rs["spec"]["replicas"], 1);
    }

    #[test]
    fn pod_defaults_and_admission() {
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "c", "image": "redis:7", "resources": {"limits": {"cpu": "1"}}}]}});
        apply_defaults("", "Pod", &mut pod);
        pod_admission_defaults(&mut pod).unwrap();
        prepare_for_create("", "Pod", &mut pod);
        let spec = &pod["spec"];
        assert_eq!(spec["enableServiceLinks"], true);
        assert_eq!(spec["containers"][0]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(
            spec["containers"][0]["resources"]["requests"],
            json!({"cpu": "1"})
        );
        assert_eq!(spec["serviceAccountName"], "default");
        assert_eq!(spec["serviceAccount"], "default");
        assert_eq!(spec["priority"], 0);
        assert_eq!(spec["preemptionPolicy"], "PreemptLowerPriority");
        assert_eq!(
            spec["tolerations"],
            json!([
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            ])
        );
        assert_eq!(
            pod["status"],
            json!({"phase": "Pending", "qosClass": "Burstable"})
        );
    }

    #[test]
    fn admission_respects_existing_tolerations_and_rejects_unknown_classes() {
        let mut pod = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        pod_admission_defaults(&mut pod).unwrap();
        assert_eq!(pod["spec"]["tolerations"].as_array().unwrap().len(), 1);
        let mut pod = json!({"metadata": {"name": "x"}, "spec": {"priorityClassName": "gold"}});
        let err = pod_admission_defaults(&mut pod).unwrap_err();
        assert_eq!(err.code, 403);
        assert_eq!(
            err.message,
            "pods \"x\" is forbidden: no PriorityClass with name gold was found"
        );
        let mut pod = json!({"metadata": {"name": "x"}, "spec": {"priority": 5}});
        assert_eq!(
            pod_admission_defaults(&mut pod).unwrap_err().message,
            "pods \"x\" is forbidden: the integer value of priority (5) must not be provided in pod spec; priority admission controller computed 0 from the given PriorityClass name"
        );
    }

    #[test]
    fn service_defaults_and_create_preparation() {
        let mut svc = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 53, "protocol": "UDP", "targetPort": "dns"}]}});
        apply_defaults("", "Service", &mut svc);
        prepare_for_create("", "Service", &mut svc);
        let spec = &svc["spec"];
        assert_eq!(spec["sessionAffinity"], "None");
        assert_eq!(
            spec["ports"][0],
            json!({"port": 80, "protocol": "TCP", "targetPort": 80})
        );
        assert_eq!(spec["ports"][1]["targetPort"], "dns");
        assert_eq!(spec["externalTrafficPolicy"], "Cluster");
        assert_eq!(spec["internalTrafficPolicy"], "Cluster");
        assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
        assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
        assert_eq!(svc["status"], json!({"loadBalancer": {}}));

        let mut headless = json!({"spec": {"clusterIP": "None"}});
        apply_defaults("", "Service", &mut headless);
        prepare_for_create("", "Service", &mut headless);
        assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
        assert_eq!(headless["spec"]["ipFamilyPolicy"], "RequireDualStack");
        assert_eq!(headless["spec"].get("externalTrafficPolicy"), None);
    }

    #[test]
    fn service_update_keeps_allocated_values() {
        let old = json!({"spec": {"type": "NodePort", "clusterIP": "10.96.0.7", "clusterIPs": ["10.96.0.7"],
            "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
            "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}, "status": {"loadBalancer": {}}});
        let mut new = json!({"spec": {"type": "NodePort", "ports": [{"name": "http", "port": 8080}]}, "status": {"x": 1}});
        prepare_for_update("", "Service", &mut new, &old);
        assert_eq!(new["spec"]["clusterIP"], "10.96.0.7");
        assert_eq!(new["spec"]["clusterIPs"], json!(["10.96.0.7"]));
        assert_eq!(new["spec"]["ports"][0]["nodePort"], 30080);
        assert_eq!(new["spec"]["ipFamilies"], json!(["IPv4"]));
        assert_eq!(new["status"], json!({"loadBalancer": {}}));
    }

    #[test]
    fn controller_generation_moves_with_spec() {
        let old = json!({"metadata": {"generation": 4}, "spec": {"replicas": 1}, "status": {"replicas": 1}});
        let mut same = json!({"metadata": {}, "spec": {"replicas": 1}});
        prepare_for_update("apps", "Deployment", &mut same, &old);
        assert_eq!(same["metadata"]["generation"], 4);
        assert_eq!(same["status"], json!({"replicas": 1}));
        let mut scaled = json!({"metadata": {}, "spec": {"replicas": 3}});
        prepare_for_update("apps", "Deployment", &mut scaled, &old);
        assert_eq!(scaled["metadata"]["generation"], 5);
        let mut ds = json!({"spec": {}});
        prepare_for_create("apps", "DaemonSet", &mut ds);
        assert_eq!(
            ds["metadata"]["annotations"]["deprecated.daemonset.template.generation"],
            "1"
        );
        assert_eq!(ds["metadata"]["generation"], 1);
    }

    #[test]
    fn update_keeps_system_metadata() {
        let old = json!({"metadata": {"name": "c", "uid": "u1", "generation": 3,
            "creationTimestamp": "2025-01-01T00:00:00Z"}});
        let mut new =
            json!({"metadata": {"name": "c", "generation": 1, "creationTimestamp": null}});
        prepare_for_update("", "ConfigMap", &mut new, &old);
        assert_eq!(new["metadata"]["uid"], "u1");
        assert_eq!(new["metadata"]["generation"], 3);
        assert_eq!(new["metadata"]["creationTimestamp"], "2025-01-01T00:00:00Z");
        let mut created = json!({"metadata": {"deletionTimestamp": "2025-01-01T00:00:00Z"}});
        prepare_for_create("", "ConfigMap", &mut created);
        assert_eq!(created["metadata"], json!({}));
    }

    #[test]
    fn namespace_defaults() {
        let mut ns = json!({"metadata": {"name": "dev"}});
        apply_defaults("", "Namespace", &mut ns);
        prepare_for_create("", "Namespace", &mut ns);
        assert_eq!(
            ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "dev"
        );
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(ns["status"]["phase"], "Active");
    }

    #[test]
    fn node_admission_taints_new_nodes() {
        let mut node = json!({"metadata": {"name": "n1"}});
        node_admission_defaults(&mut node);
        node_admission_defaults(&mut node);
        assert_eq!(
            node["spec"]["taints"],
            json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}])
        );
    }

    #[test]
    fn qos_classes() {
        assert_eq!(pod_qos_class(&json!({"containers": [{}]})), "BestEffort");
        let guaranteed = json!({"containers": [{"resources": {
            "limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}}]});
        assert_eq!(pod_qos_class(&guaranteed), "Guaranteed");
    }

    #[test]
    fn wrong_types_are_left_alone() {
        for mut v in [
            json!(null),
            json!(3),
            json!({"spec": "x"}),
            json!({"spec": {"containers": "x", "template": 1}}),
        ] {
            let before = v.clone();
            apply_defaults("apps", "Deployment", &mut v);
            if before.get("spec").is_some_and(|s| !s.is_object()) {
                assert_eq!(v, before);
            }
        }
    }

    fn two_container_pod() -> Value {
        json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "initContainers": [{"name": "init", "image": "busybox"}],
                "containers": [
                    {"name": "nginx", "image": "nginx"},
                    {"name": "side", "image": "busybox", "volumeMounts": [
                        {"name": "mine", "mountPath": SERVICE_ACCOUNT_MOUNT_PATH}
                    ]},
                ],
                "volumes": [{"name": "mine", "emptyDir": {}}],
            },
        })
    }

    #[test]
    fn service_account_token_is_mounted_like_the_admission_plugin() {
        let mut pod = two_container_pod();
        mount_service_account_token(&mut pod, None, || "kube-api-access-abcde".into());
        let mount = json!({"name": "kube-api-access-abcde", "readOnly": true,
            "mountPath": SERVICE_ACCOUNT_MOUNT_PATH});
        assert_eq!(
            pod["spec"]["initContainers"][0]["volumeMounts"],
            json!([mount])
        );
        assert_eq!(pod["spec"]["containers"][0]["volumeMounts"], json!([mount]));
        // A container with its own mount at the path keeps it and gets nothing more.
        assert_eq!(
            pod["spec"]["containers"][1]["volumeMounts"],
            json!([{"name": "mine", "mountPath": SERVICE_ACCOUNT_MOUNT_PATH}])
        );
        let volumes = pod["spec"]["volumes"].as_array().unwrap();
        assert_eq!(volumes.len(), 2);
        let projected = &volumes[1]["projected"];
        assert_eq!(volumes[1]["name"], "kube-api-access-abcde");
        assert_eq!(projected["defaultMode"], 420);
        assert_eq!(
            projected["sources"][0]["serviceAccountToken"],
            json!({"expirationSeconds": 3607, "path": "token"})
        );
        assert_eq!(
            projected["sources"][1]["configMap"]["name"],
            "kube-root-ca.crt"
        );
        assert_eq!(
            projected["sources"][2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"],
            "metadata.namespace"
        );
    }

    #[test]
    fn service_account_token_mount_respects_opt_outs_and_existing_volumes() {
        let never = || -> String { panic!("no new volume expected") };
        // The pod's own setting wins over its account's.
        let mut pod = two_container_pod();
        pod["spec"]["automountServiceAccountToken"] = json!(false);
        let before = pod.clone();
        mount_service_account_token(&mut pod, Some(true), never);
        assert_eq!(pod, before);
        let mut pod = two_container_pod();
        mount_service_account_token(&mut pod, Some(false), never);
        assert_eq!(pod, before_without_opt_out(&before));
        let mut pod = two_container_pod();
        pod["spec"]["automountServiceAccountToken"] = json!(true);
        mount_service_account_token(&mut pod, Some(false), || "kube-api-access-zzzzz".into());
        assert_eq!(pod["spec"]["volumes"].as_array().unwrap().len(), 2);
        // A pod that already has the volume (an update re-admitted, a copied spec) reuses it.
        let mut pod = two_container_pod();
        pod["spec"]["volumes"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "kube-api-access-q2w4x", "projected": {"sources": []}}));
        mount_service_account_token(&mut pod, None, never);
        assert_eq!(
            pod["spec"]["containers"][0]["volumeMounts"][0]["name"],
            "kube-api-access-q2w4x"
        );
        assert_eq!(pod["spec"]["volumes"].as_array().unwrap().len(), 2);
        // Mirror pods are the kubelet's own; the plugin skips them.
        let mut pod = two_container_pod();
        pod["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "x"});
        let before = pod.clone();
        mount_service_account_token(&mut pod, None, never);
        assert_eq!(pod, before);
    }

    #[test]
    fn service_account_admission_asks_for_the_pods_account_and_refuses_a_missing_one() {
        let mut pod = two_container_pod();
        pod["spec"]["serviceAccountName"] = json!("builder");
        let mut asked = None;
        admit_service_account(
            &mut pod,
            |ns, name| {
                asked = Some(format!("{ns}/{name}"));
                Some(Some(false))
            },
            || panic!("the account opts out"),
        )
        .unwrap();
        assert_eq!(asked.as_deref(), Some("default/builder"));
        assert!(pod["spec"]["containers"][0].get("volumeMounts").is_none());

        let err = admit_service_account(&mut pod, |_, _| None, String::new).unwrap_err();
        assert_eq!(err.code, 403);
        assert_eq!(
            err.message,
            "pods \"web\" is forbidden: error looking up service account default/builder: serviceaccount \"builder\" not found"
        );

        pod["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "x"});
        admit_service_account(
            &mut pod,
            |_, _| panic!("mirror pods are not checked"),
            String::new,
        )
        .unwrap();
    }

    fn before_without_opt_out(before: &Value) -> Value {
        let mut v = before.clone();
        v["spec"]
            .as_object_mut()
            .unwrap()
            .remove("automountServiceAccountToken");
        v
    }
}
