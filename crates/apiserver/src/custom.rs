//! Kinds that k8s-openapi has no type for: Calico's IPAM objects in group
//! `crd.projectcalico.org/v1` (IPPool, IPAMBlock, BlockAffinity, IPAMHandle), served the way
//! kube-apiserver serves a CustomResourceDefinition whose schema says little about `spec`:
//! metadata is a full ObjectMeta, `spec` and `status` are kept as given, and any other
//! top-level field is unknown (so `fieldValidation=Strict` rejects it).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Map, Value};
use std::borrow::Cow;

/// Decodes a custom object: typed metadata, free-form spec and status.
pub fn normalize(v: &Value) -> Result<Value, serde_json::Error> {
    let Value::Object(map) = v else {
        return Err(serde::de::Error::custom("expected an object"));
    };
    // Custom objects are few and small: a copy keeps the code below simple.
    let mut map = map.clone();
    let mut out = Map::new();
    for field in ["apiVersion", "kind"] {
        if let Some(x) = map.remove(field) {
            if !x.is_string() {
                return Err(serde::de::Error::custom(format!(
                    "{field} must be a string"
                )));
            }
            out.insert(field.into(), x);
        }
    }
    let meta: ObjectMeta =
        serde_json::from_value(map.remove("metadata").unwrap_or(Value::Object(Map::new())))?;
    out.insert("metadata".into(), serde_json::to_value(meta)?);
    for field in ["spec", "status"] {
        match map.remove(field) {
            Some(x @ Value::Object(_)) => {
                out.insert(field.into(), x);
            }
            Some(Value::Null) | None => {}
            Some(_) => {
                return Err(serde::de::Error::custom(format!(
                    "{field} must be an object"
                )));
            }
        }
    }
    Ok(Value::Object(out))
}

macro_rules! calico_kind {
    ($ty:ident, $kind:literal, $doc:literal) => {
        #[doc = $doc]
        pub struct $ty;

        impl schemars::JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                concat!("org.projectcalico.crd.v1.", $kind).into()
            }

            fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
                let metadata = generator.subschema_for::<ObjectMeta>();
                schemars::json_schema!({
                    "description": $doc,
                    "type": "object",
                    "properties": {
                        "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."},
                        "kind": {"type": "string", "description": "Kind is a string value representing the REST resource this object represents."},
                        "metadata": metadata,
                        "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "description": concat!($kind, "Spec as Calico defines it.")},
                        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    },
                })
            }
        }
    };
}

calico_kind!(
    IpPool,
    "IPPool",
    "An IP pool: a range pod addresses are allocated from, in blocks."
);
calico_kind!(
    IpamBlock,
    "IPAMBlock",
    "A block of pod addresses, usually affine to one node."
);
calico_kind!(
    BlockAffinity,
    "BlockAffinity",
    "Which node a block of addresses belongs to."
);
calico_kind!(
    IpamHandle,
    "IPAMHandle",
    "The addresses one allocation (a pod, a tunnel) holds."
);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_spec_and_drops_unknown_top_level_fields() {
        let v = json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool", "metadata": {"name": "p", "bogus": 1},
            "spec": {"cidr": "192.168.0.0/16", "blockSize": 26}, "extra": true});
        let n = normalize(&v).unwrap();
        assert_eq!(n["spec"]["blockSize"], 26);
        assert!(n.get("extra").is_none());
        assert!(n["metadata"].get("bogus").is_none());
        assert!(normalize(&json!({"spec": 3})).is_err());
    }
}
