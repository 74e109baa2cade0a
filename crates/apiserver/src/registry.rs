//! The resources this API server serves, as one static table: names, scope, short names,
//! categories, subresources, and the typed k8s-openapi struct behind each kind (used to decode
//! strictly, to normalise stored JSON and to generate OpenAPI). Discovery, OpenAPI, routing and
//! storage keys all read this table, so adding a resource is one entry here.

use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

/// A subresource such as `status` or `scale`.
#[derive(Debug)]
pub struct Subresource {
    pub name: &'static str,
    /// Group/version/kind of the object the subresource speaks (`autoscaling/v1 Scale`).
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub verbs: &'static [&'static str],
}

/// One served resource.
pub struct ResourceInfo {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub subresources: &'static [Subresource],
    pub verbs: &'static [&'static str],
    /// OpenAPI definition name of the kind, e.g. `io.k8s.api.apps.v1.Deployment`.
    pub definition: &'static str,
    /// Decodes JSON into the typed struct and back: an error is a type mismatch (400), and
    /// fields the type does not know are dropped (which is how unknown fields are found).
    /// Reads the input in place: the caller keeps it to compare, and no copy of it is made.
    pub normalize: fn(&Value) -> Result<Value, serde_json::Error>,
    /// The kind's JSON schema (and its dependencies) for OpenAPI documents.
    pub schema: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
}

impl std::fmt::Debug for ResourceInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ResourceInfo({}/{} {})",
            self.group, self.version, self.plural
        )
    }
}

impl ResourceInfo {
    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }
    pub fn subresource(&self, name: &str) -> Option<&'static Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }
    /// Path prefix of the group version: `/api/v1` or `/apis/apps/v1`.
    pub fn gv_path(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }
}

fn normalize<T: DeserializeOwned + Serialize>(v: &Value) -> Result<Value, serde_json::Error> {
    let typed = T::deserialize(v)?;
    serde_json::to_value(typed)
}

fn schema<T: schemars::JsonSchema>(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    generator.subschema_for::<T>()
}

const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const CLUSTER_VERBS: &[&str] = ALL_VERBS;
const STATUS_VERBS: &[&str] = &["get", "patch", "update"];

const fn status(kind: &'static str, group: &'static str, version: &'static str) -> Subresource {
    Subresource {
        name: "status",
        group,
        version,
        kind,
        verbs: STATUS_VERBS,
    }
}
const SCALE: Subresource = Subresource {
    name: "scale",
    group: "autoscaling",
    version: "v1",
    kind: "Scale",
    verbs: STATUS_VERBS,
};

macro_rules! resource {
    ($group:expr, $version:expr, $kind:literal, $plural:literal, $singular:literal, $namespaced:expr,
     $short:expr, $cat:expr, $sub:expr, $verbs:expr, $def:literal, $ty:ty) => {
        ResourceInfo {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            namespaced: $namespaced,
            short_names: $short,
            categories: $cat,
            subresources: $sub,
            verbs: $verbs,
            definition: $def,
            normalize: normalize::<$ty>,
            schema: schema::<$ty>,
        }
    };
}

use k8s_openapi::api::{
    apps::v1 as apps, coordination::v1 as coordination, core::v1 as core,
    discovery::v1 as discovery,
};

/// A Calico IPAM kind, cluster-scoped like Calico's CRDs.
macro_rules! calico {
    ($kind:literal, $plural:literal, $singular:literal, $ty:ty) => {
        ResourceInfo {
            group: "crd.projectcalico.org",
            version: "v1",
            kind: $kind,
            plural: $plural,
            singular: $singular,
            namespaced: false,
            short_names: &[],
            categories: &[],
            subresources: &[],
            verbs: ALL_VERBS,
            definition: concat!("org.projectcalico.crd.v1.", $kind),
            normalize: crate::custom::normalize,
            schema: schema::<$ty>,
        }
    };
}

/// Every served resource. Order is discovery order.
pub static RESOURCES: &[ResourceInfo] = &[
    resource!(
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        "configmap",
        true,
        &["cm"],
        &[],
        &[],
        ALL_VERBS,
        "io.k8s.api.core.v1.ConfigMap",
        core::ConfigMap
    ),
    resource!(
        "",
        "v1",
        "Endpoints",
        "endpoints",
        "endpoints",
        true,
        &["ep"],
        &[],
        &[],
        ALL_VERBS,
        "io.k8s.api.core.v1.Endpoints",
        core::Endpoints
    ),
    resource!(
        "",
        "v1",
        "Event",
        "events",
        "event",
        true,
        &["ev"],
        &[],
        &[],
        ALL_VERBS,
        "io.k8s.api.core.v1.Event",
        core::Event
    ),
    resource!(
        "",
        "v1",
        "Namespace",
        "namespaces",
        "namespace",
        false,
        &["ns"],
        &[],
        &[status("Namespace", "", "v1")],
        &[
            "create", "delete", "get", "list", "patch", "update", "watch"
        ],
        "io.k8s.api.core.v1.Namespace",
        core::Namespace
    ),
    resource!(
        "",
        "v1",
        "Node",
        "nodes",
        "node",
        false,
        &["no"],
        &[],
        &[status("Node", "", "v1")],
        CLUSTER_VERBS,
        "io.k8s.api.core.v1.Node",
        core::Node
    ),
    resource!(
        "",
        "v1",
        "Pod",
        "pods",
        "pod",
        true,
        &["po"],
        &["all"],
        &[
            Subresource {
                name: "binding",
                group: "",
                version: "v1",
                kind: "Binding",
                verbs: &["create"]
            },
            Subresource {
                name: "log",
                group: "",
                version: "v1",
                kind: "Pod",
                verbs: &["get"]
            },
            Subresource {
                name: "exec",
                group: "",
                version: "v1",
                kind: "PodExecOptions",
                verbs: &["create", "get"]
            },
            Subresource {
                name: "attach",
                group: "",
                version: "v1",
                kind: "PodAttachOptions",
                verbs: &["create", "get"]
            },
            status("Pod", "", "v1"),
        ],
        ALL_VERBS,
        "io.k8s.api.core.v1.Pod",
        core::Pod
    ),
    resource!(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        "serviceaccount",
        true,
        &["sa"],
        &[],
        &[Subresource {
            name: "token",
            group: "authentication.k8s.io",
            version: "v1",
            kind: "TokenRequest",
            verbs: &["create"]
        }],
        ALL_VERBS,
        "io.k8s.api.core.v1.ServiceAccount",
        core::ServiceAccount
    ),
    resource!(
        "",
        "v1",
        "Service",
        "services",
        "service",
        true,
        &["svc"],
        &["all"],
        &[status("Service", "", "v1")],
        &[
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch"
        ],
        "io.k8s.api.core.v1.Service",
        core::Service
    ),
    resource!(
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        "daemonset",
        true,
        &["ds"],
        &["all"],
        &[status("DaemonSet", "apps", "v1")],
        ALL_VERBS,
        "io.k8s.api.apps.v1.DaemonSet",
        apps::DaemonSet
    ),
    resource!(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        "deployment",
        true,
        &["deploy"],
        &["all"],
        &[SCALE, status("Deployment", "apps", "v1")],
        ALL_VERBS,
        "io.k8s.api.apps.v1.Deployment",
        apps::Deployment
    ),
    resource!(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        "replicaset",
        true,
        &["rs"],
        &["all"],
        &[SCALE, status("ReplicaSet", "apps", "v1")],
        ALL_VERBS,
        "io.k8s.api.apps.v1.ReplicaSet",
        apps::ReplicaSet
    ),
    resource!(
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        "lease",
        true,
        &[],
        &[],
        &[],
        ALL_VERBS,
        "io.k8s.api.coordination.v1.Lease",
        coordination::Lease
    ),
    resource!(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        "endpointslice",
        true,
        &[],
        &[],
        &[],
        ALL_VERBS,
        "io.k8s.api.discovery.v1.EndpointSlice",
        discovery::EndpointSlice
    ),
    calico!(
        "BlockAffinity",
        "blockaffinities",
        "blockaffinity",
        crate::custom::BlockAffinity
    ),
    calico!(
        "IPAMBlock",
        "ipamblocks",
        "ipamblock",
        crate::custom::IpamBlock
    ),
    calico!(
        "IPAMHandle",
        "ipamhandles",
        "ipamhandle",
        crate::custom::IpamHandle
    ),
    calico!("IPPool", "ippools", "ippool", crate::custom::IpPool),
];

/// The resource at `group`/`version` with plural name `plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource serving `kind` in `group` (any version).
pub fn find_kind(group: &str, kind: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.kind == kind)
}

/// Served group versions in discovery order: the core `v1` first, then named groups.
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out.sort_by_key(|(g, _)| (!g.is_empty(), group_priority(g)));
    out
}

/// Upstream orders discovery groups by priority; kubectl only needs a stable order.
fn group_priority(group: &str) -> u32 {
    match group {
        "" => 0,
        "apps" => 1,
        "discovery.k8s.io" => 2,
        "coordination.k8s.io" => 3,
        "crd.projectcalico.org" => 4,
        _ => 100,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_drops_unknown_fields_and_rejects_type_mismatches() {
        let svc = find("", "v1", "services").unwrap();
        let v = serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"bogus": 1, "ports": [{"port": 80}]}});
        let n = (svc.normalize)(&v).unwrap();
        assert!(n["spec"].get("bogus").is_none());
        assert_eq!(n["spec"]["ports"][0]["port"], 80);
        let bad =
            serde_json::json!({"metadata": {"name": "x"}, "spec": {"ports": [{"port": "eighty"}]}});
        assert!((svc.normalize)(&bad).is_err());
    }

    #[test]
    fn group_versions_start_with_core() {
        let gvs = group_versions();
        assert_eq!(gvs[0], ("", "v1"));
        assert!(gvs.contains(&("apps", "v1")));
    }
}
