//! The `patchStrategy` / `patchMergeKey` struct tags of the built-in types kubelab serves,
//! transcribed from the Go sources of Kubernetes 1.33 (`k8s.io/api/{core,apps,discovery,coordination}/v1`
//! and `k8s.io/apimachinery/pkg/apis/meta/v1`). k8s-openapi's schemas do not carry these tags, so this
//! table is the only place they live; the OpenAPI documents we publish and the strategic merge engine
//! both read it.
//!
//! Fields that look mergeable but are atomic upstream (e.g. `PodSpec.tolerations`,
//! `DaemonSetSpec.updateStrategy`, everything in discovery/v1 and coordination/v1) are deliberately
//! absent: a patch replaces them wholesale, exactly like kube-apiserver.

use crate::PatchTag;

const fn tag(
    definition: &'static str,
    field: &'static str,
    strategy: &'static str,
    merge_key: Option<&'static str>,
) -> PatchTag {
    PatchTag {
        definition,
        field,
        strategy,
        merge_key,
    }
}

const MERGE: &str = "merge";
const MERGE_RETAIN_KEYS: &str = "merge,retainKeys";

/// Build full OpenAPI definition names at compile time so the table stays readable.
macro_rules! core {
    ($ty:literal) => {
        concat!("io.k8s.api.core.v1.", $ty)
    };
}
macro_rules! apps {
    ($ty:literal) => {
        concat!("io.k8s.api.apps.v1.", $ty)
    };
}
macro_rules! meta {
    ($ty:literal) => {
        concat!("io.k8s.apimachinery.pkg.apis.meta.v1.", $ty)
    };
}

pub(crate) static PATCH_TAGS: &[PatchTag] = &[
    // meta/v1
    tag(meta!("ObjectMeta"), "ownerReferences", MERGE, Some("uid")),
    tag(meta!("ObjectMeta"), "finalizers", MERGE, None),
    // core/v1: pods
    tag(core!("PodSpec"), "volumes", MERGE_RETAIN_KEYS, Some("name")),
    tag(core!("PodSpec"), "initContainers", MERGE, Some("name")),
    tag(core!("PodSpec"), "containers", MERGE, Some("name")),
    tag(core!("PodSpec"), "ephemeralContainers", MERGE, Some("name")),
    tag(core!("PodSpec"), "imagePullSecrets", MERGE, Some("name")),
    tag(core!("PodSpec"), "hostAliases", MERGE, Some("ip")),
    tag(
        core!("PodSpec"),
        "topologySpreadConstraints",
        MERGE,
        Some("topologyKey"),
    ),
    tag(core!("PodSpec"), "schedulingGates", MERGE, Some("name")),
    tag(
        core!("PodSpec"),
        "resourceClaims",
        MERGE_RETAIN_KEYS,
        Some("name"),
    ),
    tag(core!("Container"), "ports", MERGE, Some("containerPort")),
    tag(core!("Container"), "env", MERGE, Some("name")),
    tag(core!("Container"), "volumeMounts", MERGE, Some("mountPath")),
    tag(
        core!("Container"),
        "volumeDevices",
        MERGE,
        Some("devicePath"),
    ),
    // EphemeralContainerCommon is inlined into EphemeralContainer in the OpenAPI document.
    tag(
        core!("EphemeralContainer"),
        "ports",
        MERGE,
        Some("containerPort"),
    ),
    tag(core!("EphemeralContainer"), "env", MERGE, Some("name")),
    tag(
        core!("EphemeralContainer"),
        "volumeMounts",
        MERGE,
        Some("mountPath"),
    ),
    tag(
        core!("EphemeralContainer"),
        "volumeDevices",
        MERGE,
        Some("devicePath"),
    ),
    tag(core!("PodStatus"), "conditions", MERGE, Some("type")),
    tag(core!("PodStatus"), "hostIPs", MERGE, Some("ip")),
    tag(core!("PodStatus"), "podIPs", MERGE, Some("ip")),
    tag(
        core!("PodStatus"),
        "resourceClaimStatuses",
        MERGE_RETAIN_KEYS,
        Some("name"),
    ),
    tag(
        core!("ContainerStatus"),
        "volumeMounts",
        MERGE,
        Some("mountPath"),
    ),
    tag(
        core!("ContainerStatus"),
        "allocatedResourcesStatus",
        MERGE,
        Some("name"),
    ),
    // core/v1: services, nodes, and the rest
    tag(core!("ServiceSpec"), "ports", MERGE, Some("port")),
    tag(core!("ServiceStatus"), "conditions", MERGE, Some("type")),
    tag(core!("ServiceAccount"), "secrets", MERGE, Some("name")),
    tag(core!("NodeSpec"), "podCIDRs", MERGE, None),
    tag(core!("NodeStatus"), "conditions", MERGE, Some("type")),
    tag(core!("NodeStatus"), "addresses", MERGE, Some("type")),
    tag(core!("NamespaceStatus"), "conditions", MERGE, Some("type")),
    tag(
        core!("PersistentVolumeClaimStatus"),
        "conditions",
        MERGE,
        Some("type"),
    ),
    tag(
        core!("ReplicationControllerStatus"),
        "conditions",
        MERGE,
        Some("type"),
    ),
    tag(core!("ComponentStatus"), "conditions", MERGE, Some("type")),
    // apps/v1
    tag(apps!("DeploymentSpec"), "strategy", "retainKeys", None),
    tag(apps!("DeploymentStatus"), "conditions", MERGE, Some("type")),
    tag(
        apps!("StatefulSetStatus"),
        "conditions",
        MERGE,
        Some("type"),
    ),
    tag(apps!("DaemonSetStatus"), "conditions", MERGE, Some("type")),
    tag(apps!("ReplicaSetStatus"), "conditions", MERGE, Some("type")),
];
