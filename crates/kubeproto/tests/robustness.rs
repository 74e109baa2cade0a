//! Request bodies are attacker-controlled: no input may panic the decoder. Random bytes and
//! mutations of valid bodies must come back as `Ok` or `Err`, never as a panic.

use std::collections::BTreeMap;

use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use proptest::prelude::*;
use prost::Message;

/// A Pod exercising most field shapes: maps, repeated messages, inline messages, specials.
fn valid_pod_body() -> Vec<u8> {
    let pod = core::Pod {
        metadata: Some(meta::ObjectMeta {
            name: Some("web-0".into()),
            labels: [("app".to_string(), "web".to_string())]
                .into_iter()
                .collect(),
            creation_timestamp: Some(meta::Time {
                seconds: Some(1_795_692_600),
                nanos: Some(0),
            }),
            ..Default::default()
        }),
        spec: Some(core::PodSpec {
            containers: vec![core::Container {
                name: Some("app".into()),
                image: Some("nginx".into()),
                resources: Some(core::ResourceRequirements {
                    limits: [(
                        "cpu".to_string(),
                        Quantity {
                            string: Some("1".into()),
                        },
                    )]
                    .into_iter()
                    .collect(),
                    ..Default::default()
                }),
                readiness_probe: Some(core::Probe {
                    handler: Some(core::ProbeHandler {
                        tcp_socket: Some(core::TcpSocketAction {
                            port: Some(IntOrString {
                                r#type: Some(0),
                                int_val: Some(80),
                                str_val: None,
                            }),
                            host: None,
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            tolerations: vec![core::Toleration {
                toleration_seconds: Some(30),
                ..Default::default()
            }],
            node_selector: BTreeMap::from([("disk".to_string(), "ssd".to_string())]),
            ..Default::default()
        }),
        status: None,
    };
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
        }),
        raw: Some(pod.encode_to_vec()),
        content_encoding: None,
        content_type: None,
    };
    let mut body = b"k8s\x00".to_vec();
    body.extend(unknown.encode_to_vec());
    body
}

#[test]
fn the_mutation_base_is_valid() {
    let decoded = kubeproto::decode(&valid_pod_body()).unwrap();
    assert_eq!(
        decoded["spec"]["containers"][0]["readinessProbe"]["tcpSocket"]["port"],
        80
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = kubeproto::decode(&bytes);
        let mut with_magic = b"k8s\x00".to_vec();
        with_magic.extend(&bytes);
        let _ = kubeproto::decode(&with_magic);
    }

    #[test]
    fn mutated_valid_bodies_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..8),
    ) {
        let mut body = valid_pod_body();
        for (index, byte, operation) in edits {
            if body.is_empty() {
                break;
            }
            let at = index.index(body.len());
            match operation {
                0 => body[at] = byte,
                1 => body.insert(at, byte),
                2 => { body.remove(at); }
                _ => body.truncate(at),
            }
        }
        if let Ok(object) = kubeproto::decode(&body) {
            prop_assert!(object.get("apiVersion").is_some() && object.get("kind").is_some());
        }
    }

    #[test]
    fn random_raw_payloads_of_every_root_kind_never_panic(
        kind in prop::sample::select(vec![
            ("v1", "Pod"), ("v1", "Service"), ("v1", "Node"), ("v1", "Event"), ("v1", "ConfigMap"),
            ("apps/v1", "Deployment"), ("discovery.k8s.io/v1", "EndpointSlice"),
            ("coordination.k8s.io/v1", "Lease"), ("autoscaling/v1", "Scale"), ("v1", "DeleteOptions"),
        ]),
        raw in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let unknown = Unknown {
            type_meta: Some(TypeMeta { api_version: Some(kind.0.into()), kind: Some(kind.1.into()) }),
            raw: Some(raw),
            content_encoding: None,
            content_type: None,
        };
        let mut body = b"k8s\x00".to_vec();
        body.extend(unknown.encode_to_vec());
        let _ = kubeproto::decode(&body);
    }
}
