#!/usr/bin/env python3
"""Generates crates/kubeproto/src/schema.rs, the protobuf schema table of the `kubeproto` crate.

Why: kubectl >= 1.32 (client-go typed clients) sends request bodies as Kubernetes protobuf. To turn
such a body into the JSON a Go kube-apiserver would see, kubeproto needs, for every message type,
field number -> (JSON name, wire type, cardinality, whether an explicit zero must be kept).

Inputs (both crates.io sources, no network needed once cargo has downloaded them):
  * k8s-pb 0.9.0  (prost structs: field numbers, scalar kinds, repeated/map, message types).
    `#[prost(int32, optional, tag = "1")] pub replicas: Option<i32>` gives number and kind.
  * k8s-openapi 0.29.0 (serde code of every OpenAPI definition: the exact JSON keys).
    A prost field is matched to a JSON key of the same definition by comparing lowercase names
    without underscores (`cluster_ip` ~ `clusterIP`, `external_i_ps` ~ `externalIPs`).
    Unmatched fields abort the generation (no silent gaps).

The only hand-written facts are the data tables below (ROOTS, INLINE, SPECIAL, KEEP_ZERO_*); each
says where it comes from. KEEP_ZERO_* were derived from the Go types (k8s.io/api and
k8s.io/apimachinery v0.35.7 `types.go`): a scalar field keeps an explicit zero/""/false when its Go
field is a pointer (`*int32`, `*bool`, `*string`, ...) or its json tag lacks `omitempty`; every
other scalar zero is dropped, as Go's encoding/json would.

Usage (from the repository root):
    python3 scripts/gen-kubeproto-schema.py [--k8s-pb DIR] [--k8s-openapi DIR] \
        [--out crates/kubeproto/src/schema.rs]
DIR defaults are found under $CARGO_HOME/registry/src/*/ (run `cargo fetch` first).
"""

import argparse
import glob
import os
import re
import sys

K8S_PB_VERSION = "0.9.0"
K8S_OPENAPI_VERSION = "0.29.0"

# Root kinds the kubelab API server accepts as request bodies: (apiVersion, kind, proto message).
# DeleteOptions is accepted under any apiVersion by the crate itself (client-go sends the group's).
ROOTS = [
    ("v1", "Binding", "k8s.io.api.core.v1.Binding"),
    ("v1", "ConfigMap", "k8s.io.api.core.v1.ConfigMap"),
    ("v1", "Endpoints", "k8s.io.api.core.v1.Endpoints"),
    ("v1", "Event", "k8s.io.api.core.v1.Event"),
    ("v1", "Namespace", "k8s.io.api.core.v1.Namespace"),
    ("v1", "Node", "k8s.io.api.core.v1.Node"),
    ("v1", "Pod", "k8s.io.api.core.v1.Pod"),
    ("v1", "Service", "k8s.io.api.core.v1.Service"),
    ("v1", "ServiceAccount", "k8s.io.api.core.v1.ServiceAccount"),
    ("authentication.k8s.io/v1", "TokenRequest", "k8s.io.api.authentication.v1.TokenRequest"),
    ("apps/v1", "DaemonSet", "k8s.io.api.apps.v1.DaemonSet"),
    ("apps/v1", "Deployment", "k8s.io.api.apps.v1.Deployment"),
    ("apps/v1", "ReplicaSet", "k8s.io.api.apps.v1.ReplicaSet"),
    ("discovery.k8s.io/v1", "EndpointSlice", "k8s.io.api.discovery.v1.EndpointSlice"),
    ("coordination.k8s.io/v1", "Lease", "k8s.io.api.coordination.v1.Lease"),
    ("autoscaling/v1", "Scale", "k8s.io.api.autoscaling.v1.Scale"),
    ("meta.k8s.io/v1", "DeleteOptions", "k8s.io.apimachinery.pkg.apis.meta.v1.DeleteOptions"),
]

# Go struct fields embedded with `json:",inline"`: a nested message on the wire whose fields are
# flattened into the parent's JSON object. (message, prost field name). From the Go types.
INLINE = {
    ("k8s.io.api.core.v1.Volume", "volume_source"),
    ("k8s.io.api.core.v1.PersistentVolumeSpec", "persistent_volume_source"),
    ("k8s.io.api.core.v1.SecretProjection", "local_object_reference"),
    ("k8s.io.api.core.v1.ConfigMapVolumeSource", "local_object_reference"),
    ("k8s.io.api.core.v1.ConfigMapProjection", "local_object_reference"),
    ("k8s.io.api.core.v1.ConfigMapKeySelector", "local_object_reference"),
    ("k8s.io.api.core.v1.SecretKeySelector", "local_object_reference"),
    ("k8s.io.api.core.v1.ConfigMapEnvSource", "local_object_reference"),
    ("k8s.io.api.core.v1.SecretEnvSource", "local_object_reference"),
    ("k8s.io.api.core.v1.Probe", "handler"),
    ("k8s.io.api.core.v1.EphemeralContainer", "ephemeral_container_common"),
}

# Messages with a custom JSON form (decoded by hand in the crate); their fields keep proto names
# and are not matched against OpenAPI properties.
SPECIAL = {
    "k8s.io.apimachinery.pkg.apis.meta.v1.Time",
    "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime",
    "k8s.io.apimachinery.pkg.apis.meta.v1.Duration",
    "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1",
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString",
    "k8s.io.apimachinery.pkg.api.resource.Quantity",
    "k8s.io.apimachinery.pkg.runtime.RawExtension",
}

# Scalar fields whose explicit zero value ("" / 0 / false) must survive into the JSON:
# {message: "space-separated JSON names"}. Every scalar not listed is a non-pointer `omitempty`
# Go field, whose zero Go's encoding/json drops. Derived from the Go types of k8s.io/api and
# k8s.io/apimachinery v0.35.7 (the Kubernetes version k8s-pb 0.9.0 was generated from); the
# generator fails if an entry names a field that is not a reachable scalar (catches renames).
#
# Go pointer fields (`*int32`, `*bool`, `*string`, `*SomeStringType`): an explicit zero differs
# from absent (nil), e.g. `replicas: 0`, `automountServiceAccountToken: false`, `optional: false`.
KEEP_ZERO_POINTER = {
    "k8s.io.api.apps.v1.DaemonSetSpec": "revisionHistoryLimit",
    "k8s.io.api.apps.v1.DaemonSetStatus": "collisionCount",
    "k8s.io.api.apps.v1.DeploymentSpec": "replicas revisionHistoryLimit progressDeadlineSeconds",
    "k8s.io.api.apps.v1.DeploymentStatus": "collisionCount terminatingReplicas",
    "k8s.io.api.apps.v1.ReplicaSetSpec": "replicas",
    "k8s.io.api.apps.v1.ReplicaSetStatus": "terminatingReplicas",
    "k8s.io.api.coordination.v1.LeaseSpec": "holderIdentity leaseDurationSeconds leaseTransitions strategy preferredHolder",
    "k8s.io.api.core.v1.AppArmorProfile": "localhostProfile",
    "k8s.io.api.core.v1.AzureDiskVolumeSource": "cachingMode fsType readOnly kind",
    "k8s.io.api.core.v1.CSIVolumeSource": "readOnly fsType",
    "k8s.io.api.core.v1.ClientIPConfig": "timeoutSeconds",
    "k8s.io.api.core.v1.ClusterTrustBundleProjection": "name signerName optional",
    "k8s.io.api.core.v1.ConfigMap": "immutable",
    "k8s.io.api.core.v1.ConfigMapEnvSource": "optional",
    "k8s.io.api.core.v1.ConfigMapKeySelector": "optional",
    "k8s.io.api.core.v1.ConfigMapProjection": "optional",
    "k8s.io.api.core.v1.ConfigMapVolumeSource": "defaultMode optional",
    "k8s.io.api.core.v1.Container": "restartPolicy",
    "k8s.io.api.core.v1.ContainerStatus": "started stopSignal",
    "k8s.io.api.core.v1.DownwardAPIVolumeFile": "mode",
    "k8s.io.api.core.v1.DownwardAPIVolumeSource": "defaultMode",
    "k8s.io.api.core.v1.EndpointAddress": "nodeName",
    "k8s.io.api.core.v1.EndpointPort": "appProtocol",
    "k8s.io.api.core.v1.EphemeralContainerCommon": "restartPolicy",
    "k8s.io.api.core.v1.FCVolumeSource": "lun",
    "k8s.io.api.core.v1.FileKeySelector": "optional",
    "k8s.io.api.core.v1.GRPCAction": "service",
    "k8s.io.api.core.v1.HostPathVolumeSource": "type",
    "k8s.io.api.core.v1.ISCSIVolumeSource": "initiatorName",
    "k8s.io.api.core.v1.KeyToPath": "mode",
    "k8s.io.api.core.v1.Lifecycle": "stopSignal",
    "k8s.io.api.core.v1.LoadBalancerIngress": "ipMode",
    "k8s.io.api.core.v1.NodeFeatures": "supplementalGroupsPolicy",
    "k8s.io.api.core.v1.NodeRuntimeHandlerFeatures": "recursiveReadOnlyMounts userNamespaces",
    "k8s.io.api.core.v1.NodeSwapStatus": "capacity",
    "k8s.io.api.core.v1.PersistentVolumeClaimSpec": "storageClassName volumeMode volumeAttributesClassName",
    "k8s.io.api.core.v1.PodCertificateProjection": "maxExpirationSeconds",
    "k8s.io.api.core.v1.PodDNSConfigOption": "value",
    "k8s.io.api.core.v1.PodResourceClaim": "resourceClaimName resourceClaimTemplateName",
    "k8s.io.api.core.v1.PodResourceClaimStatus": "resourceClaimName",
    "k8s.io.api.core.v1.PodSecurityContext": "runAsUser runAsNonRoot fsGroup runAsGroup fsGroupChangePolicy supplementalGroupsPolicy seLinuxChangePolicy",
    "k8s.io.api.core.v1.PodSpec": "terminationGracePeriodSeconds activeDeadlineSeconds automountServiceAccountToken priority shareProcessNamespace runtimeClassName enableServiceLinks preemptionPolicy setHostnameAsFQDN hostUsers hostnameOverride",
    "k8s.io.api.core.v1.PortStatus": "error",
    "k8s.io.api.core.v1.Probe": "terminationGracePeriodSeconds",
    "k8s.io.api.core.v1.ProjectedVolumeSource": "defaultMode",
    "k8s.io.api.core.v1.SeccompProfile": "localhostProfile",
    "k8s.io.api.core.v1.SecretEnvSource": "optional",
    "k8s.io.api.core.v1.SecretKeySelector": "optional",
    "k8s.io.api.core.v1.SecretProjection": "optional",
    "k8s.io.api.core.v1.SecretVolumeSource": "defaultMode optional",
    "k8s.io.api.core.v1.SecurityContext": "privileged runAsUser runAsNonRoot readOnlyRootFilesystem allowPrivilegeEscalation runAsGroup procMount",
    "k8s.io.api.core.v1.ServiceAccount": "automountServiceAccountToken",
    "k8s.io.api.core.v1.ServiceAccountTokenProjection": "expirationSeconds",
    "k8s.io.api.core.v1.ServicePort": "appProtocol",
    "k8s.io.api.core.v1.ServiceSpec": "ipFamilyPolicy allocateLoadBalancerNodePorts loadBalancerClass internalTrafficPolicy trafficDistribution",
    "k8s.io.api.core.v1.Toleration": "tolerationSeconds",
    "k8s.io.api.core.v1.TopologySpreadConstraint": "minDomains nodeAffinityPolicy nodeTaintsPolicy",
    "k8s.io.api.core.v1.TypedLocalObjectReference": "apiGroup",
    "k8s.io.api.core.v1.TypedObjectReference": "apiGroup namespace",
    "k8s.io.api.core.v1.VolumeMount": "mountPropagation recursiveReadOnly",
    "k8s.io.api.core.v1.VolumeMountStatus": "recursiveReadOnly",
    "k8s.io.api.core.v1.WindowsSecurityContextOptions": "gmsaCredentialSpecName gmsaCredentialSpec runAsUserName hostProcess",
    "k8s.io.api.discovery.v1.Endpoint": "hostname nodeName zone",
    "k8s.io.api.discovery.v1.EndpointConditions": "ready serving terminating",
    "k8s.io.api.discovery.v1.EndpointPort": "name protocol port appProtocol",
    "k8s.io.apimachinery.pkg.apis.meta.v1.DeleteOptions": "gracePeriodSeconds orphanDependents propagationPolicy ignoreStoreReadErrorWithClusterBreakingPotential",
    "k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta": "deletionGracePeriodSeconds",
    "k8s.io.apimachinery.pkg.apis.meta.v1.OwnerReference": "controller blockOwnerDeletion",
    "k8s.io.apimachinery.pkg.apis.meta.v1.Preconditions": "uid resourceVersion",
}

# Non-pointer Go fields without `omitempty`: encoding/json always writes them, zero included
# (e.g. `containerPort: 0`, `name: ""`); the later validation then reports them as upstream does.
KEEP_ZERO_NO_OMITEMPTY = {
    "k8s.io.api.apps.v1.DaemonSetCondition": "type status",
    "k8s.io.api.apps.v1.DaemonSetStatus": "currentNumberScheduled numberMisscheduled desiredNumberScheduled numberReady",
    "k8s.io.api.apps.v1.DeploymentCondition": "type status",
    "k8s.io.api.apps.v1.ReplicaSetCondition": "type status",
    "k8s.io.api.apps.v1.ReplicaSetStatus": "replicas",
    "k8s.io.api.autoscaling.v1.ScaleStatus": "replicas",
    "k8s.io.api.core.v1.AWSElasticBlockStoreVolumeSource": "volumeID",
    "k8s.io.api.core.v1.AppArmorProfile": "type",
    "k8s.io.api.core.v1.AttachedVolume": "name devicePath",
    "k8s.io.api.core.v1.AzureDiskVolumeSource": "diskName diskURI",
    "k8s.io.api.core.v1.AzureFileVolumeSource": "secretName shareName",
    "k8s.io.api.core.v1.CSIVolumeSource": "driver",
    "k8s.io.api.core.v1.CinderVolumeSource": "volumeID",
    "k8s.io.api.core.v1.ClusterTrustBundleProjection": "path",
    "k8s.io.api.core.v1.ConfigMapKeySelector": "key",
    "k8s.io.api.core.v1.ConfigMapNodeConfigSource": "namespace name kubeletConfigKey",
    "k8s.io.api.core.v1.Container": "name",
    "k8s.io.api.core.v1.ContainerExtendedResourceRequest": "containerName resourceName requestName",
    "k8s.io.api.core.v1.ContainerPort": "containerPort",
    "k8s.io.api.core.v1.ContainerResizePolicy": "resourceName restartPolicy",
    "k8s.io.api.core.v1.ContainerStateTerminated": "exitCode",
    "k8s.io.api.core.v1.ContainerStatus": "name ready restartCount image imageID",
    "k8s.io.api.core.v1.DaemonEndpoint": "Port",
    "k8s.io.api.core.v1.DownwardAPIVolumeFile": "path",
    "k8s.io.api.core.v1.EndpointAddress": "ip",
    "k8s.io.api.core.v1.EndpointPort": "port",
    "k8s.io.api.core.v1.EnvVar": "name",
    "k8s.io.api.core.v1.EphemeralContainerCommon": "name",
    "k8s.io.api.core.v1.Event": "reportingComponent reportingInstance",
    "k8s.io.api.core.v1.FileKeySelector": "volumeName path key",
    "k8s.io.api.core.v1.FlexVolumeSource": "driver",
    "k8s.io.api.core.v1.GCEPersistentDiskVolumeSource": "pdName",
    "k8s.io.api.core.v1.GRPCAction": "port",
    "k8s.io.api.core.v1.GitRepoVolumeSource": "repository",
    "k8s.io.api.core.v1.GlusterfsVolumeSource": "endpoints path",
    "k8s.io.api.core.v1.HTTPHeader": "name value",
    "k8s.io.api.core.v1.HostAlias": "ip",
    "k8s.io.api.core.v1.HostIP": "ip",
    "k8s.io.api.core.v1.HostPathVolumeSource": "path",
    "k8s.io.api.core.v1.ISCSIVolumeSource": "targetPortal iqn lun",
    "k8s.io.api.core.v1.KeyToPath": "key path",
    "k8s.io.api.core.v1.LinuxContainerUser": "uid gid",
    "k8s.io.api.core.v1.NFSVolumeSource": "server path",
    "k8s.io.api.core.v1.NamespaceCondition": "type status",
    "k8s.io.api.core.v1.NodeAddress": "type address",
    "k8s.io.api.core.v1.NodeCondition": "type status",
    "k8s.io.api.core.v1.NodeRuntimeHandler": "name",
    "k8s.io.api.core.v1.NodeSelectorRequirement": "key operator",
    "k8s.io.api.core.v1.NodeSystemInfo": "machineID systemUUID bootID kernelVersion osImage containerRuntimeVersion kubeletVersion kubeProxyVersion operatingSystem architecture",
    "k8s.io.api.core.v1.ObjectFieldSelector": "fieldPath",
    "k8s.io.api.core.v1.PersistentVolumeClaimVolumeSource": "claimName",
    "k8s.io.api.core.v1.PhotonPersistentDiskVolumeSource": "pdID",
    "k8s.io.api.core.v1.PodAffinityTerm": "topologyKey",
    "k8s.io.api.core.v1.PodCondition": "type status",
    "k8s.io.api.core.v1.PodExtendedResourceClaimStatus": "resourceClaimName",
    "k8s.io.api.core.v1.PodIP": "ip",
    "k8s.io.api.core.v1.PodOS": "name",
    "k8s.io.api.core.v1.PodReadinessGate": "conditionType",
    "k8s.io.api.core.v1.PodResourceClaim": "name",
    "k8s.io.api.core.v1.PodResourceClaimStatus": "name",
    "k8s.io.api.core.v1.PodSchedulingGate": "name",
    "k8s.io.api.core.v1.PortStatus": "port protocol",
    "k8s.io.api.core.v1.PortworxVolumeSource": "volumeID",
    "k8s.io.api.core.v1.PreferredSchedulingTerm": "weight",
    "k8s.io.api.core.v1.QuobyteVolumeSource": "registry volume",
    "k8s.io.api.core.v1.RBDVolumeSource": "image",
    "k8s.io.api.core.v1.ResourceClaim": "name",
    "k8s.io.api.core.v1.ResourceFieldSelector": "resource",
    "k8s.io.api.core.v1.ResourceHealth": "resourceID",
    "k8s.io.api.core.v1.ResourceStatus": "name",
    "k8s.io.api.core.v1.ScaleIOVolumeSource": "gateway system",
    "k8s.io.api.core.v1.SeccompProfile": "type",
    "k8s.io.api.core.v1.SecretKeySelector": "key",
    "k8s.io.api.core.v1.ServiceAccountTokenProjection": "path",
    "k8s.io.api.core.v1.ServicePort": "port",
    "k8s.io.api.core.v1.SleepAction": "seconds",
    "k8s.io.api.core.v1.Sysctl": "name value",
    "k8s.io.api.core.v1.Taint": "key effect",
    "k8s.io.api.core.v1.TopologySpreadConstraint": "maxSkew topologyKey whenUnsatisfiable",
    "k8s.io.api.core.v1.TypedLocalObjectReference": "kind name",
    "k8s.io.api.core.v1.TypedObjectReference": "kind name",
    "k8s.io.api.core.v1.Volume": "name",
    "k8s.io.api.core.v1.VolumeDevice": "name devicePath",
    "k8s.io.api.core.v1.VolumeMount": "name mountPath",
    "k8s.io.api.core.v1.VolumeMountStatus": "name mountPath",
    "k8s.io.api.core.v1.VsphereVirtualDiskVolumeSource": "volumePath",
    "k8s.io.api.core.v1.WeightedPodAffinityTerm": "weight",
    "k8s.io.api.core.v1.WorkloadReference": "name podGroup",
    "k8s.io.api.discovery.v1.EndpointSlice": "addressType",
    "k8s.io.api.discovery.v1.ForNode": "name",
    "k8s.io.api.discovery.v1.ForZone": "name",
    "k8s.io.apimachinery.pkg.apis.meta.v1.Condition": "type status reason message",
    "k8s.io.apimachinery.pkg.apis.meta.v1.LabelSelectorRequirement": "key operator",
    "k8s.io.apimachinery.pkg.apis.meta.v1.OwnerReference": "kind name uid apiVersion",
}


def die(msg):
    print(f"gen-kubeproto-schema: {msg}", file=sys.stderr)
    sys.exit(1)


def squash(name):
    """Lowercase without underscores: the key prost and OpenAPI names are compared on."""
    return name.replace("_", "").lower()


def find_crate(name, version, override):
    if override:
        return override
    cargo_home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
    hits = sorted(glob.glob(os.path.join(cargo_home, "registry", "src", "*", f"{name}-{version}")))
    if not hits:
        die(f"cannot find {name}-{version} under {cargo_home}/registry/src (run `cargo fetch`)")
    return hits[0]


# ---------------------------------------------------------------------------------------------
# prost sources


PROST_ATTR = re.compile(r"^\s*#\[prost\((.*)\)\]\s*$")
STRUCT_START = re.compile(r"^pub struct (\w+) \{")
FIELD_START = re.compile(r"^\s*pub (?:r#)?(\w+):\s*(.*)$")


def resolve_type(type_text, module):
    """Resolves a prost Rust type path to a full proto-package-qualified prost struct name."""
    t = type_text.strip().rstrip(",").replace(" ", "")
    for wrapper in ("::core::option::Option<", "::prost::alloc::boxed::Box<", "::prost::alloc::vec::Vec<"):
        while t.startswith(wrapper):
            t = t[len(wrapper):-1].rstrip(",")
    if t.startswith("::prost::alloc::collections::BTreeMap<"):
        t = t[len("::prost::alloc::collections::BTreeMap<"):-1]
        t = t.split(",", 1)[1].rstrip(",")
        for wrapper in ("::core::option::Option<",):
            if t.startswith(wrapper):
                t = t[len(wrapper):-1]
    parts = t.split("::")
    path = list(module)
    while parts and parts[0] == "super":
        parts.pop(0)
        path.pop()
    return "k8s.io." + ".".join(path + parts[:-1]) + "." + parts[-1]


def parse_prost(root):
    """Returns {prost full name: [field dict]} for every prost message in k8s-pb."""
    messages = {}
    for path in sorted(glob.glob(os.path.join(root, "src", "**", "mod.rs"), recursive=True)):
        module = os.path.relpath(os.path.dirname(path), os.path.join(root, "src")).split(os.sep)
        package = "k8s.io." + ".".join(module)
        lines = open(path, encoding="utf-8").read().split("\n")
        current = None
        i = 0
        while i < len(lines):
            line = lines[i]
            m = STRUCT_START.match(line)
            if m:
                current = package + "." + m.group(1)
                messages[current] = []
            elif line.startswith("}"):
                current = None
            elif current:
                a = PROST_ATTR.match(line)
                if a:
                    attr = a.group(1)
                    # The field declaration may span lines; read until a top-level ','.
                    j = i + 1
                    decl = lines[j].strip()
                    while not (decl.endswith(",") and decl.count("<") == decl.count(">")):
                        j += 1
                        decl += " " + lines[j].strip()
                    f = FIELD_START.match(decl)
                    if not f:
                        die(f"{path}:{j + 1}: cannot parse field after #[prost({attr})]")
                    messages[current].append(parse_field(attr, f.group(1), f.group(2), module, path, j))
                    i = j
            i += 1
    return messages


def parse_field(attr, name, type_text, module, path, line):
    tag = re.search(r'tag = "(\d+)"', attr)
    if not tag:
        die(f"{path}:{line}: no tag in #[prost({attr})]")
    field = {"name": name, "number": int(tag.group(1))}
    m = re.match(r'(?:btree_)?map = "(\w+), (\w+)"', attr)
    if m:
        if m.group(1) != "string":
            die(f"{path}:{line}: map key {m.group(1)} is not supported")
        field["label"] = "Map"
        field["kind"] = m.group(2)
    else:
        kind = attr.split(",")[0].strip()
        kind = kind.split("=")[0].strip()  # bytes = "vec"
        field["kind"] = kind
        field["label"] = "Repeated" if ", repeated" in attr else "Single"
    if field["kind"] not in ("string", "bytes", "int32", "int64", "bool", "double", "message"):
        die(f"{path}:{line}: unsupported prost kind {field['kind']!r}")
    if field["kind"] == "message":
        field["type"] = resolve_type(type_text, module)
    return field


# ---------------------------------------------------------------------------------------------
# k8s-openapi sources


def parse_openapi(root):
    """Returns {OpenAPI definition name: set of JSON keys}, united over all k8s versions."""
    keys = {}
    for path in sorted(glob.glob(os.path.join(root, "src", "v1_*", "**", "*.rs"), recursive=True)):
        text = open(path, encoding="utf-8").read()
        m = re.match(r"// Generated from definition (\S+)", text)
        if not m:
            continue
        found = set(re.findall(r'^\s*"([^"]+)" => Field::Key_\w+,$', text, re.M))
        keys.setdefault(m.group(1), set()).update(found)
    return keys


def proto_to_openapi_package(proto_package):
    # k8s.io.api.core.v1 -> io.k8s.api.core.v1
    return "io.k8s." + proto_package[len("k8s.io."):]


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--k8s-pb")
    ap.add_argument("--k8s-openapi")
    ap.add_argument("--out")
    args = ap.parse_args()
    pb_root = find_crate("k8s-pb", K8S_PB_VERSION, args.k8s_pb)
    oa_root = find_crate("k8s-openapi", K8S_OPENAPI_VERSION, args.k8s_openapi)

    prost = parse_prost(pb_root)
    openapi = parse_openapi(oa_root)

    # prost renames messages (HTTPGetAction -> HttpGetAction); the real proto name is the
    # OpenAPI definition's. Map prost name -> proto name by squashed comparison per package.
    openapi_by_squash = {}
    for definition in openapi:
        package, _, short = definition.rpartition(".")
        openapi_by_squash.setdefault((package, squash(short)), []).append(definition)

    def proto_name(prost_name):
        package, _, short = prost_name.rpartition(".")
        hits = openapi_by_squash.get((proto_to_openapi_package(package), squash(short)), [])
        if len(hits) > 1:
            die(f"{prost_name}: ambiguous OpenAPI definitions {hits}")
        if hits:
            return "k8s.io." + hits[0][len("io.k8s."):]
        return prost_name  # no OpenAPI definition (e.g. ProbeHandler): prost name = proto name

    # Reachability from the roots.
    prost_by_proto = {}
    for prost_name in prost:
        prost_by_proto[proto_name(prost_name)] = prost_name
    reachable = []
    queue = [r[2] for r in ROOTS]
    while queue:
        name = queue.pop()
        if name in reachable:
            continue
        if name not in prost_by_proto:
            die(f"message {name} not found in k8s-pb")
        reachable.append(name)
        for f in prost[prost_by_proto[name]]:
            if f["kind"] == "message":
                queue.append(proto_name(f["type"]))

    # Inline parents: child message -> JSON keys of the definitions that embed it.
    inline_keys = {}
    for parent, field_name in INLINE:
        if parent not in reachable:
            continue
        fields = [f for f in prost[prost_by_proto[parent]] if f["name"] == field_name]
        if len(fields) != 1 or fields[0]["kind"] != "message" or fields[0]["label"] != "Single":
            die(f"INLINE entry {parent}.{field_name} is not a single message field")
        child = proto_name(fields[0]["type"])
        inline_keys.setdefault(child, set()).update(openapi.get("io.k8s." + parent[len("k8s.io."):], set()))

    keep_zero_used = set()
    table = []
    for name in sorted(reachable):
        out_fields = []
        keys = set(openapi.get("io.k8s." + name[len("k8s.io."):], set())) | inline_keys.get(name, set())
        by_squash = {squash(k): k for k in keys}
        for f in sorted(prost[prost_by_proto[name]], key=lambda f: f["number"]):
            label = f["label"]
            if (name, f["name"]) in INLINE:
                json_name = ""
                label = "Inline"
            elif name in SPECIAL:
                json_name = f["name"]
            else:
                json_name = by_squash.get(squash(f["name"]))
                if json_name is None:
                    die(f"{name}: prost field {f['name']} (tag {f['number']}) matches no JSON key of "
                        f"its OpenAPI definition ({sorted(keys)}); add it to INLINE or SPECIAL?")
            keep_zero = False
            keep_names = KEEP_ZERO_POINTER.get(name, "").split() + KEEP_ZERO_NO_OMITEMPTY.get(name, "").split()
            if f["kind"] != "message" and label == "Single" and json_name in keep_names:
                keep_zero = True
                keep_zero_used.add((name, json_name))
            ty = f["kind"]
            if ty == "message":
                ty = proto_name(f["type"])
            out_fields.append((f["number"], json_name, ty, label, keep_zero))
        table.append((name, out_fields))

    for message, names in list(KEEP_ZERO_POINTER.items()) + list(KEEP_ZERO_NO_OMITEMPTY.items()):
        for json_name in names.split():
            if (message, json_name) not in keep_zero_used:
                die(f"KEEP_ZERO entry {message}.{json_name} is not a reachable scalar field")

    text = render(table)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)


SCALARS = {
    "string": "Type::String",
    "bytes": "Type::Bytes",
    "int32": "Type::Int32",
    "int64": "Type::Int64",
    "bool": "Type::Bool",
    "double": "Type::Double",
}


def render(table):
    out = []
    out.append("// @generated by scripts/gen-kubeproto-schema.py -- DO NOT EDIT.\n")
    out.append(f"// Source: k8s-pb {K8S_PB_VERSION} (prost field numbers and kinds) and k8s-openapi ")
    out.append(f"{K8S_OPENAPI_VERSION} (JSON names).\n")
    out.append("// Regenerate from the repository root:\n")
    out.append("//     python3 scripts/gen-kubeproto-schema.py --out crates/kubeproto/src/schema.rs\n")
    out.append("// (one field per line on purpose; lib.rs keeps rustfmt away from this file)\n\n")
    out.append("use crate::table::{Field, Label, Message, Type};\n\n")
    out.append("/// Root kinds: (apiVersion, kind, proto message).\n")
    out.append("pub(crate) static ROOT_KINDS: &[(&str, &str, &str)] = &[\n")
    for api_version, kind, message in ROOTS:
        out.append(f'    ("{api_version}", "{kind}", "{message}"),\n')
    out.append("];\n\n")
    out.append("/// Every message reachable from [`ROOT_KINDS`], sorted by full proto name.\n")
    out.append("pub(crate) static MESSAGES: &[Message] = &[\n")
    for name, fields in table:
        out.append(f'    Message {{ name: "{name}", fields: &[\n')
        for number, json_name, ty, label, keep_zero in fields:
            rust_ty = SCALARS.get(ty) or f'Type::Message("{ty}")'
            out.append(
                f'        Field {{ number: {number}, json_name: "{json_name}", ty: {rust_ty}, '
                f"label: Label::{label}, keep_zero: {'true' if keep_zero else 'false'} }},\n"
            )
        out.append("    ] },\n")
    out.append("];\n")
    return "".join(out)


if __name__ == "__main__":
    main()
