//! The API server's bridge to the pure rules in `apimachinery`: defaulting, admission
//! defaults, validation and selectors, keyed by resource. (Selectors below are a minimal
//! stand-in until apimachinery's land.)

use crate::registry::ResourceInfo;
use apimachinery::{ApiError, FieldError};
use serde_json::Value;

pub fn apply_defaults(_info: &ResourceInfo, _obj: &mut Value) {}

pub fn admit_create(_info: &ResourceInfo, _obj: &mut Value) {}

pub fn validate_create(_info: &ResourceInfo, _obj: &Value) -> Vec<FieldError> {
    Vec::new()
}

pub fn validate_update(_info: &ResourceInfo, _new: &Value, _old: &Value) -> Vec<FieldError> {
    Vec::new()
}

/// A parsed `labelSelector` plus `fieldSelector`.
#[derive(Clone, Debug, Default)]
pub struct Selector {
    labels: Vec<(String, String)>,
    fields: Vec<(String, String)>,
}

impl Selector {
    pub fn parse(_info: &ResourceInfo, label: Option<&str>, field: Option<&str>) -> Result<Selector, ApiError> {
        let pairs = |s: Option<&str>| -> Vec<(String, String)> {
            s.unwrap_or("")
                .split(',')
                .filter(|p| !p.trim().is_empty())
                .filter_map(|p| p.split_once('=').map(|(k, v)| (k.trim().to_string(), v.trim_start_matches('=').trim().to_string())))
                .collect()
        };
        Ok(Selector { labels: pairs(label), fields: pairs(field) })
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    /// The single name a `metadata.name=` field selector pins, which lets a watch or list
    /// look at one key only.
    pub fn pinned_name(&self) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == "metadata.name").map(|(_, v)| v.as_str())
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.labels.iter().all(|(k, v)| crate::object::labels(obj).and_then(|l| l.get(k)).and_then(Value::as_str) == Some(v))
            && self.fields.iter().all(|(k, v)| {
                let mut cur = obj;
                for part in k.split('.') {
                    cur = match cur.get(part) {
                        Some(c) => c,
                        None => return v.is_empty(),
                    };
                }
                cur.as_str().map(str::to_string).unwrap_or_else(|| cur.to_string()) == *v
            })
    }
}
