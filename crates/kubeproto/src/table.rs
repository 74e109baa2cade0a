//! Types of the generated schema table (`schema.rs`) and lookups into it.

use crate::schema::{MESSAGES, ROOT_KINDS};

/// What a field holds on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Type {
    String,
    Bytes,
    Int32,
    Int64,
    Bool,
    /// The generator emits this for `double` fields; none is reachable from today's roots.
    #[allow(dead_code)]
    Double,
    /// A nested message, by full proto name (`k8s.io.api.core.v1.PodSpec`).
    Message(&'static str),
}

/// How many values a field holds and how they appear in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Label {
    /// One value; the last occurrence on the wire wins (messages merge).
    Single,
    /// A JSON array; scalars may be packed or not.
    Repeated,
    /// A JSON object: repeated entry messages with a string key (1) and a value of `ty` (2).
    Map,
    /// A Go struct embedded with `json:",inline"`: a nested message on the wire whose fields
    /// land directly in the parent's JSON object.
    Inline,
}

/// One field of a message.
#[derive(Debug)]
pub(crate) struct Field {
    pub number: u32,
    /// The JSON key (empty for [`Label::Inline`]).
    pub json_name: &'static str,
    pub ty: Type,
    pub label: Label,
    /// Whether an explicit zero scalar ("" / 0 / false) is kept: the Go field is a pointer or
    /// has no `omitempty`. Other zero scalars are dropped as Go's `omitempty` would.
    pub keep_zero: bool,
}

/// One message type: fields sorted by number.
#[derive(Debug)]
pub(crate) struct Message {
    pub name: &'static str,
    pub fields: &'static [Field],
}

impl Message {
    pub(crate) fn field(&self, number: u32) -> Option<&'static Field> {
        // `self.fields` is 'static because every Message lives in the static table.
        let fields: &'static [Field] = self.fields;
        fields
            .binary_search_by_key(&number, |f| f.number)
            .ok()
            .map(|i| &fields[i])
    }
}

/// The message named `name`, if the table has it.
pub(crate) fn message(name: &str) -> Option<&'static Message> {
    MESSAGES
        .binary_search_by(|m| m.name.cmp(name))
        .ok()
        .map(|i| &MESSAGES[i])
}

/// The root message for a request body of `api_version`/`kind`.
///
/// `DeleteOptions` is accepted under any apiVersion: client-go stamps it with the group version
/// of the client that sends it (`apps/v1`, `v1`, ...), and Go registers it in every group.
pub(crate) fn root_message(api_version: &str, kind: &str) -> Option<&'static Message> {
    if kind == "DeleteOptions" {
        return message("k8s.io.apimachinery.pkg.apis.meta.v1.DeleteOptions");
    }
    ROOT_KINDS
        .iter()
        .find(|(v, k, _)| *v == api_version && *k == kind)
        .and_then(|(_, _, name)| message(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn messages_are_sorted_and_unique_so_binary_search_finds_them() {
        for pair in MESSAGES.windows(2) {
            assert!(
                pair[0].name < pair[1].name,
                "{} !< {}",
                pair[0].name,
                pair[1].name
            );
        }
        for m in MESSAGES {
            assert!(std::ptr::eq(message(m.name).unwrap(), m));
        }
    }

    #[test]
    fn every_field_has_a_json_name_and_every_message_type_resolves() {
        for m in MESSAGES {
            let mut json_names = HashSet::new();
            for pair in m.fields.windows(2) {
                assert!(
                    pair[0].number < pair[1].number,
                    "{}: fields not sorted by number",
                    m.name
                );
            }
            for f in m.fields {
                assert!(f.number > 0, "{}: field number 0", m.name);
                if f.label == Label::Inline {
                    assert!(
                        f.json_name.is_empty(),
                        "{}.{}: inline field with a name",
                        m.name,
                        f.number
                    );
                    assert!(
                        matches!(f.ty, Type::Message(_)),
                        "{}.{}: inline scalar",
                        m.name,
                        f.number
                    );
                } else {
                    assert!(
                        !f.json_name.is_empty(),
                        "{} field {} has no JSON name",
                        m.name,
                        f.number
                    );
                    assert!(
                        json_names.insert(f.json_name),
                        "{}: duplicate JSON name {}",
                        m.name,
                        f.json_name
                    );
                    assert!(
                        f.json_name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_'),
                        "{}: odd JSON name {:?}",
                        m.name,
                        f.json_name
                    );
                }
                if let Type::Message(name) = f.ty {
                    assert!(
                        message(name).is_some(),
                        "{}.{} refers to missing message {name}",
                        m.name,
                        f.json_name
                    );
                }
                if f.keep_zero {
                    assert!(
                        f.label == Label::Single && !matches!(f.ty, Type::Message(_)),
                        "{}.{}: keep_zero only applies to single scalars",
                        m.name,
                        f.json_name
                    );
                }
            }
        }
    }

    #[test]
    fn every_root_kind_resolves() {
        for (api_version, kind, name) in ROOT_KINDS {
            let m =
                root_message(api_version, kind).unwrap_or_else(|| panic!("{api_version} {kind}"));
            assert_eq!(m.name, *name);
        }
        assert!(root_message("apps/v1", "DeleteOptions").is_some());
        assert!(
            root_message("v1", "Deployment").is_none(),
            "Deployment lives in apps/v1"
        );
        assert!(
            root_message("v1", "Secret").is_none(),
            "Secret is not served"
        );
    }

    #[test]
    fn json_names_come_from_openapi_not_prost() {
        let spec = message("k8s.io.api.core.v1.ServiceSpec").unwrap();
        let names: Vec<_> = spec.fields.iter().map(|f| f.json_name).collect();
        for expected in [
            "clusterIP",
            "clusterIPs",
            "externalIPs",
            "loadBalancerIP",
            "ipFamilies",
        ] {
            assert!(
                names.contains(&expected),
                "{expected} missing from {names:?}"
            );
        }
        let status = message("k8s.io.api.core.v1.PodStatus").unwrap();
        assert!(status.fields.iter().any(|f| f.json_name == "podIP"));
        assert!(status.fields.iter().any(|f| f.json_name == "hostIPs"));
        // Go pointer fields keep explicit zeros; omitempty scalars do not.
        let deployment_spec = message("k8s.io.api.apps.v1.DeploymentSpec").unwrap();
        let by_name = |n: &str| {
            deployment_spec
                .fields
                .iter()
                .find(|f| f.json_name == n)
                .unwrap()
        };
        assert!(by_name("replicas").keep_zero);
        assert!(!by_name("minReadySeconds").keep_zero);
        assert!(!by_name("paused").keep_zero);
    }
}
