//! The Calico IPAM objects as stored in the Kubernetes API (group `crd.projectcalico.org/v1`):
//! `IPPool`, `IPAMBlock`, `BlockAffinity`, `IPAMHandle`, with Calico's JSON field names and
//! Calico's object names (`names.CIDRToName` and the affinity/handle naming of libcalico-go's
//! KDD backend, `lib/backend/k8s/resources/ipam_*.go`).
//!
//! Only the `spec` is typed here. [`to_object`] wraps a spec into a full API object and
//! [`Stored`] keeps the object exactly as the datastore returned it, so an update changes
//! `spec` and nothing else (uid, labels, timestamps the server set survive a round trip).

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::IpamError;
use crate::net::Cidr;

/// API group and version of the stored objects.
pub const API_VERSION: &str = "crd.projectcalico.org/v1";

/// Calico's encapsulation mode values for `ipipMode` / `vxlanMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum EncapsulationMode {
    #[default]
    Never,
    Always,
    CrossSubnet,
}

/// Whether the pool takes part in automatic assignment (`assignmentMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AssignmentMode {
    Automatic,
    Manual,
}

/// `IPPool` spec (the v3 `IPPoolSpec` field names, which the v1 CRD shares).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpPoolSpec {
    pub cidr: Cidr,
    /// Prefix length of the pool's blocks (IPv4 20..=32, default 26; IPv6 116..=128, default 122).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan_mode: Option<EncapsulationMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipip_mode: Option<EncapsulationMode>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nat_outgoing: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    #[serde(
        default,
        rename = "disableBGPExport",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub disable_bgp_export: bool,
    /// Calico selector; kubelab supports `all()` (and empty, which Calico defaults to `all()`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_selector: String,
    /// `Workload`, `Tunnel`, `LoadBalancer`; empty means Calico's default `[Workload, Tunnel]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_uses: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment_mode: Option<AssignmentMode>,
}

impl IpPoolSpec {
    /// Calico's default pool: `192.168.0.0/16`, /26 blocks, IPIP always, NAT outgoing, all nodes.
    pub fn default_ipv4() -> IpPoolSpec {
        IpPoolSpec {
            cidr: Cidr::CALICO_DEFAULT_IPV4_POOL,
            block_size: Some(26),
            vxlan_mode: Some(EncapsulationMode::Never),
            ipip_mode: Some(EncapsulationMode::Always),
            nat_outgoing: true,
            disabled: false,
            disable_bgp_export: false,
            node_selector: "all()".to_string(),
            allowed_uses: Vec::new(),
            assignment_mode: None,
        }
    }

    /// The block prefix length, applying Calico's defaults.
    pub fn effective_block_size(&self) -> u8 {
        self.block_size
            .unwrap_or(if self.cidr.is_ipv4() { 26 } else { 122 })
    }

    /// Whether the pool may serve an allocation of the given use (Calico's `filterPoolsByUse`).
    pub fn allows(&self, use_: AllowedUse) -> bool {
        if self.allowed_uses.is_empty() {
            return matches!(use_, AllowedUse::Workload | AllowedUse::Tunnel);
        }
        self.allowed_uses.iter().any(|u| u == use_.as_str())
    }
}

/// What an allocation is for (Calico's `IPPoolAllowedUse`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllowedUse {
    Workload,
    Tunnel,
}

impl AllowedUse {
    pub fn as_str(self) -> &'static str {
        match self {
            AllowedUse::Workload => "Workload",
            AllowedUse::Tunnel => "Tunnel",
        }
    }
}

/// One entry of a block's `attributes`: who owns the allocations that point at it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AllocationAttribute {
    #[serde(rename = "handle_id", default, skip_serializing_if = "Option::is_none")]
    pub handle_id: Option<String>,
    /// Calico's "active owner" attributes: `node`, `namespace`, `pod`, `timestamp`, `type`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secondary: BTreeMap<String, String>,
}

/// `IPAMBlock` spec: one block of a pool and its allocations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpamBlockSpec {
    pub cidr: Cidr,
    /// `host:<node>` while the block is affine to a node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<String>,
    /// RFC 3339 time the affinity was claimed (kept for round trips; kubelab does not reclaim
    /// empty blocks by age).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity_claim_time: Option<String>,
    /// Per ordinal: `None` if free, else the index into `attributes`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub allocations: Vec<Option<usize>>,
    /// Free ordinals in the order they will be handed out.
    #[serde(default, deserialize_with = "null_as_default")]
    pub unallocated: Vec<usize>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub attributes: Vec<AllocationAttribute>,
    /// Incremented on every write of the block.
    #[serde(default)]
    pub sequence_number: u64,
    /// Ordinal (as a string) to the block's sequence number when that ordinal was allocated.
    #[serde(default, deserialize_with = "null_as_default")]
    pub sequence_number_for_allocation: BTreeMap<String, u64>,
    #[serde(default)]
    pub deleted: bool,
    /// Deprecated in Calico (IPAMConfig holds the real setting) but still written.
    #[serde(default)]
    pub strict_affinity: bool,
}

/// Go writes nil slices and maps as `null`; read those as empty.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// State of a node's claim on a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AffinityState {
    #[serde(rename = "pending")]
    Pending,
    #[serde(rename = "confirmed")]
    Confirmed,
    #[serde(rename = "pendingDeletion")]
    PendingDeletion,
}

/// `BlockAffinity` spec: node `node` claims block `cidr`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockAffinitySpec {
    pub state: AffinityState,
    pub node: String,
    /// Affinity type, `host` for nodes.
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub affinity_type: String,
    pub cidr: Cidr,
    /// The v1 CRD stores this as the string `"true"`/`"false"`; both forms are read.
    #[serde(
        serialize_with = "bool_as_string",
        deserialize_with = "bool_from_string_or_bool",
        default
    )]
    pub deleted: bool,
}

fn bool_as_string<S: Serializer>(value: &bool, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(if *value { "true" } else { "false" })
}

fn bool_from_string_or_bool<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Text(String),
    }
    match Option::<Flag>::deserialize(deserializer)? {
        None => Ok(false),
        Some(Flag::Bool(b)) => Ok(b),
        Some(Flag::Text(t)) => match t.as_str() {
            "true" => Ok(true),
            "false" | "" => Ok(false),
            other => Err(serde::de::Error::custom(format!(
                "deleted must be \"true\" or \"false\", got {other:?}"
            ))),
        },
    }
}

/// `IPAMHandle` spec: how many addresses each block holds for one owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamHandleSpec {
    #[serde(rename = "handleID")]
    pub handle_id: String,
    /// Block CIDR (string form) to the number of addresses this handle holds in it.
    #[serde(default, deserialize_with = "null_as_default")]
    pub block: BTreeMap<String, usize>,
    #[serde(default)]
    pub deleted: bool,
}

/// The four kinds of object IPAM stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    IpPool,
    IpamBlock,
    BlockAffinity,
    IpamHandle,
}

impl Kind {
    /// The `kind` field of the API object.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::IpPool => "IPPool",
            Kind::IpamBlock => "IPAMBlock",
            Kind::BlockAffinity => "BlockAffinity",
            Kind::IpamHandle => "IPAMHandle",
        }
    }

    /// The resource (plural) name under `crd.projectcalico.org/v1`.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::IpPool => "ippools",
            Kind::IpamBlock => "ipamblocks",
            Kind::BlockAffinity => "blockaffinities",
            Kind::IpamHandle => "ipamhandles",
        }
    }
}

/// A typed spec with its kind.
pub trait CalicoSpec: Serialize + DeserializeOwned + Clone {
    const KIND: Kind;
}

impl CalicoSpec for IpPoolSpec {
    const KIND: Kind = Kind::IpPool;
}
impl CalicoSpec for IpamBlockSpec {
    const KIND: Kind = Kind::IpamBlock;
}
impl CalicoSpec for BlockAffinitySpec {
    const KIND: Kind = Kind::BlockAffinity;
}
impl CalicoSpec for IpamHandleSpec {
    const KIND: Kind = Kind::IpamHandle;
}

/// Object name of a block: `192-168-145-64-26`.
pub fn block_name(cidr: &Cidr) -> String {
    cidr.to_name()
}

/// Object name of a node's affinity to a block: `<node>-192-168-145-64-26`, shortened with a
/// hash suffix when it would reach 253 characters (libcalico-go `blockAffinityClientV1.parseKey`).
pub fn affinity_name(node: &str, cidr: &Cidr) -> String {
    let cidr_name = cidr.to_name();
    let name = format!("{node}-{cidr_name}");
    if name.len() < 253 {
        return name;
    }
    let keep = 252usize.saturating_sub(cidr_name.len() + 13);
    // Node names are DNS subdomains (ASCII), so byte slicing is on a char boundary; fall back
    // to the whole name if it is not.
    let prefix = node.get(..keep.min(node.len())).unwrap_or(node);
    let digest = Sha256::digest(format!("{node}+{cidr_name}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}-{cidr_name}-{}", &hex[..11])
}

/// Object name of a handle: the handle id, lower-cased (libcalico-go `ipamHandleClient.parseKey`).
pub fn handle_name(handle_id: &str) -> String {
    handle_id.to_lowercase()
}

/// Wraps a spec into a full API object (`apiVersion`, `kind`, `metadata.name`, `spec`).
pub fn to_object<T: CalicoSpec>(name: &str, spec: &T) -> Result<Value, IpamError> {
    let spec = serde_json::to_value(spec).map_err(|e| IpamError::Malformed {
        kind: T::KIND.as_str(),
        name: name.to_string(),
        reason: e.to_string(),
    })?;
    Ok(json!({
        "apiVersion": API_VERSION,
        "kind": T::KIND.as_str(),
        "metadata": { "name": name },
        "spec": spec,
    }))
}

/// An object as the datastore holds it, with its spec decoded.
#[derive(Debug, Clone)]
pub struct Stored<T> {
    pub spec: T,
    /// The whole object as read (metadata included).
    pub object: Value,
}

impl<T: CalicoSpec> Stored<T> {
    /// Decodes a stored object's `spec`.
    pub fn decode(object: Value) -> Result<Stored<T>, IpamError> {
        let name = object_name(&object).unwrap_or_default().to_string();
        let malformed = |reason: String| IpamError::Malformed {
            kind: T::KIND.as_str(),
            name: name.clone(),
            reason,
        };
        let spec_value = object
            .get("spec")
            .cloned()
            .ok_or_else(|| malformed("object has no spec".to_string()))?;
        let spec = serde_json::from_value(spec_value).map_err(|e| malformed(e.to_string()))?;
        Ok(Stored { spec, object })
    }

    pub fn name(&self) -> &str {
        object_name(&self.object).unwrap_or_default()
    }

    pub fn resource_version(&self) -> &str {
        resource_version(&self.object).unwrap_or_default()
    }

    /// The stored object with `spec` replaced, ready for a compare-and-swap update (it keeps
    /// `metadata.resourceVersion`, which is the precondition).
    pub fn with_spec(&self, spec: &T) -> Result<Value, IpamError> {
        let mut object = self.object.clone();
        let value = serde_json::to_value(spec).map_err(|e| IpamError::Malformed {
            kind: T::KIND.as_str(),
            name: self.name().to_string(),
            reason: e.to_string(),
        })?;
        if let Some(map) = object.as_object_mut() {
            map.insert("spec".to_string(), value);
        }
        Ok(object)
    }
}

/// `metadata.name` of an object.
pub fn object_name(object: &Value) -> Option<&str> {
    object.get("metadata")?.get("name")?.as_str()
}

/// `metadata.resourceVersion` of an object.
pub fn resource_version(object: &Value) -> Option<&str> {
    object.get("metadata")?.get("resourceVersion")?.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinity_names_follow_calico() {
        let cidr: Cidr = "192.168.145.64/26".parse().unwrap();
        assert_eq!(block_name(&cidr), "192-168-145-64-26");
        assert_eq!(affinity_name("kube-0", &cidr), "kube-0-192-168-145-64-26");
        assert_eq!(
            handle_name("k8s-pod-network.ABCdef"),
            "k8s-pod-network.abcdef"
        );
        let long = "n".repeat(260);
        let name = affinity_name(&long, &cidr);
        assert!(name.len() < 253, "{}", name.len());
        assert!(name.contains("-192-168-145-64-26-"));
    }

    #[test]
    fn default_pool_block_size() {
        let pool = IpPoolSpec::default_ipv4();
        assert_eq!(pool.cidr.to_string(), "192.168.0.0/16");
        assert_eq!(pool.effective_block_size(), 26);
        assert!(pool.allows(AllowedUse::Tunnel));
    }
}
