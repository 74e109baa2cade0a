//! The API server's bridge to the pure rules in `apimachinery`, keyed by resource: defaulting,
//! the registry strategies' create/update preparation, admission defaults, validation and
//! label/field selectors.

use crate::registry::ResourceInfo;
use apimachinery::selectors::{FieldSelector, LabelSelector, object_fields};
use apimachinery::{ApiError, FieldError, defaults, validation};
use serde_json::Value;

pub fn apply_defaults(info: &ResourceInfo, obj: &mut Value) {
    defaults::apply_defaults(info.group, info.kind, obj);
}

/// `PrepareForCreate`: fresh status, generation 1, Service IP family fields.
pub fn prepare_for_create(info: &ResourceInfo, obj: &mut Value) {
    defaults::prepare_for_create(info.group, info.kind, obj);
}

/// `PrepareForUpdate` of a main-resource write: status kept, generation bumped on spec change,
/// omitted Service IPs and node ports carried over.
pub fn prepare_for_update(info: &ResourceInfo, new: &mut Value, old: &Value) {
    defaults::prepare_for_update(info.group, info.kind, new, old);
}

/// What the default admission plugins change on create (Pods: ServiceAccount, priority,
/// default tolerations; Nodes: the not-ready taint).
pub fn admit_create(info: &ResourceInfo, obj: &mut Value) -> Result<(), ApiError> {
    match (info.group, info.kind) {
        ("", "Pod") => defaults::pod_admission_defaults(obj),
        ("", "Node") => {
            defaults::node_admission_defaults(obj);
            Ok(())
        }
        _ => Ok(()),
    }
}

pub fn validate_create(info: &ResourceInfo, obj: &Value) -> Vec<FieldError> {
    validation::validate_create(info.group, info.kind, obj)
}

pub fn validate_update(info: &ResourceInfo, new: &Value, old: &Value) -> Vec<FieldError> {
    validation::validate_update(info.group, info.kind, new, old)
}

/// A parsed `labelSelector` plus `fieldSelector`, checked against the fields the resource
/// supports.
#[derive(Clone, Debug)]
pub struct Selector {
    group: &'static str,
    resource: &'static str,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Selector {
    pub fn parse(
        info: &'static ResourceInfo,
        label: Option<&str>,
        field: Option<&str>,
    ) -> Result<Selector, ApiError> {
        let labels = LabelSelector::parse(label.unwrap_or("")).map_err(|e| e.to_api_error())?;
        let fields = FieldSelector::parse(field.unwrap_or(""))
            .and_then(|f| f.convert_for(info.group, info.plural))
            .map_err(|e| e.to_api_error())?;
        Ok(Selector {
            group: info.group,
            resource: info.plural,
            labels,
            fields,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    /// The single name a `metadata.name=` field selector pins, which lets a watch or list
    /// look at one key only.
    pub fn pinned_name(&self) -> Option<&str> {
        self.fields.requires_exact_match("metadata.name")
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.labels.matches_object(obj)
            && (self.fields.is_empty()
                || self
                    .fields
                    .matches(&object_fields(self.group, self.resource, obj)))
    }

    /// What any selector of this resource looks at in `obj`: small enough to keep for many
    /// objects where the object itself is not.
    pub fn selectable(&self, obj: &Value) -> Selectable {
        let labels = obj
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        Selectable {
            labels,
            fields: object_fields(self.group, self.resource, obj),
        }
    }

    /// [`Selector::matches`] on what [`Selector::selectable`] took from the object.
    pub fn matches_selectable(&self, s: &Selectable) -> bool {
        self.labels.matches(&s.labels) && (self.fields.is_empty() || self.fields.matches(&s.fields))
    }
}

/// An object's labels and selectable fields.
#[derive(Debug, PartialEq)]
pub struct Selectable {
    labels: std::collections::BTreeMap<String, String>,
    fields: std::collections::BTreeMap<String, String>,
}
