//! Fixtures shared by the integration tests: Services and EndpointSlices like the ones the
//! course creates.

#![allow(dead_code)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// (name, protocol, port, targetPort, nodePort)
pub type PortSpec<'a> = (&'a str, &'a str, i32, i32, Option<i32>);

pub fn service(
    namespace: &str,
    name: &str,
    type_: &str,
    cluster_ip: &str,
    ports: &[PortSpec],
) -> Service {
    Service {
        metadata: ObjectMeta {
            namespace: Some(namespace.into()),
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some(type_.into()),
            cluster_ip: Some(cluster_ip.into()),
            ports: Some(
                ports
                    .iter()
                    .map(
                        |(port_name, protocol, port, target, node_port)| ServicePort {
                            name: (!port_name.is_empty()).then(|| port_name.to_string()),
                            protocol: Some(protocol.to_string()),
                            port: *port,
                            target_port: Some(IntOrString::Int(*target)),
                            node_port: *node_port,
                            ..Default::default()
                        },
                    )
                    .collect(),
            ),
            ..Default::default()
        }),
        status: None,
    }
}

/// A slice for `service` with `ready` endpoints (all ready) and ports (name, protocol, port).
pub fn slice(
    namespace: &str,
    service: &str,
    ips: &[&str],
    ports: &[(&str, &str, i32)],
) -> EndpointSlice {
    slice_with(
        namespace,
        service,
        &format!("{service}-abcde"),
        ips.iter().map(|ip| (*ip, true)).collect(),
        ports,
    )
}

pub fn slice_with(
    namespace: &str,
    service: &str,
    slice_name: &str,
    endpoints: Vec<(&str, bool)>,
    ports: &[(&str, &str, i32)],
) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            namespace: Some(namespace.into()),
            name: Some(slice_name.into()),
            labels: Some(BTreeMap::from([(
                "kubernetes.io/service-name".to_string(),
                service.to_string(),
            )])),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: endpoints
            .into_iter()
            .map(|(ip, ready)| Endpoint {
                addresses: vec![ip.to_string()],
                conditions: Some(EndpointConditions {
                    ready: Some(ready),
                    serving: Some(ready),
                    terminating: Some(false),
                }),
                node_name: Some("kube-2".into()),
                ..Default::default()
            })
            .collect(),
        ports: Some(
            ports
                .iter()
                .map(|(name, protocol, port)| EndpointPort {
                    name: (!name.is_empty()).then(|| name.to_string()),
                    protocol: Some(protocol.to_string()),
                    port: Some(*port),
                    ..Default::default()
                })
                .collect(),
        ),
    }
}

/// The Services of the course's "Routing and Load Balancing with Services" section.
pub fn course_services() -> Vec<Service> {
    vec![
        service(
            "default",
            "kubernetes",
            "ClusterIP",
            "10.96.0.1",
            &[("https", "TCP", 443, 6443, None)],
        ),
        service(
            "default",
            "cluster-demo",
            "ClusterIP",
            "10.104.201.93",
            &[("", "TCP", 8080, 80, None)],
        ),
        service(
            "default",
            "nodeport-demo",
            "NodePort",
            "10.98.7.21",
            &[("", "TCP", 80, 80, Some(31234))],
        ),
        service(
            "default",
            "no-endpoints",
            "ClusterIP",
            "10.96.200.200",
            &[("http", "TCP", 80, 8080, None)],
        ),
        service(
            "kube-system",
            "kube-dns",
            "ClusterIP",
            "10.96.0.10",
            &[
                ("dns", "UDP", 53, 53, None),
                ("dns-tcp", "TCP", 53, 53, None),
                ("metrics", "TCP", 9153, 9153, None),
            ],
        ),
        // Never programmed: headless and ExternalName Services have no virtual IP.
        service(
            "default",
            "headless",
            "ClusterIP",
            "None",
            &[("", "TCP", 80, 80, None)],
        ),
        service("default", "external", "ExternalName", "", &[]),
    ]
}

pub fn course_slices() -> Vec<EndpointSlice> {
    vec![
        slice(
            "default",
            "kubernetes",
            &["10.10.68.222"],
            &[("https", "TCP", 6443)],
        ),
        slice(
            "default",
            "cluster-demo",
            &["192.168.36.130", "192.168.36.131", "192.168.132.66"],
            &[("", "TCP", 80)],
        ),
        slice(
            "default",
            "nodeport-demo",
            &["192.168.36.132", "192.168.132.67"],
            &[("", "TCP", 80)],
        ),
        slice(
            "kube-system",
            "kube-dns",
            &["192.168.0.2", "192.168.0.3"],
            &[
                ("dns", "UDP", 53),
                ("dns-tcp", "TCP", 53),
                ("metrics", "TCP", 9153),
            ],
        ),
        // A not-ready endpoint for the Service without endpoints: it must still reject.
        slice_with(
            "default",
            "no-endpoints",
            "no-endpoints-xyz",
            vec![("192.168.1.1", false)],
            &[("http", "TCP", 8080)],
        ),
    ]
}

pub fn config() -> proxy::ProxyConfig {
    proxy::ProxyConfig {
        node_name: "kube-1".into(),
        ..proxy::ProxyConfig::default()
    }
}

/// `count` ClusterIP Services in namespace `bench`, each with `endpoints` ready endpoints, for
/// benchmarks and scale measurements.
pub fn many_services(count: usize, endpoints: usize) -> (Vec<Service>, Vec<EndpointSlice>) {
    let mut services = Vec::with_capacity(count);
    let mut slices = Vec::with_capacity(count);
    for i in 0..count {
        let name = format!("svc-{i:05}");
        let cluster_ip = format!("10.96.{}.{}", 1 + i / 250, 1 + i % 250);
        services.push(service(
            "bench",
            &name,
            "ClusterIP",
            &cluster_ip,
            &[("http", "TCP", 80, 8080, None)],
        ));
        let ips: Vec<String> = (0..endpoints)
            .map(|j| {
                let k = i * endpoints + j;
                format!("192.168.{}.{}", k / 250, 1 + k % 250)
            })
            .collect();
        let ips: Vec<&str> = ips.iter().map(String::as_str).collect();
        slices.push(slice("bench", &name, &ips, &[("http", "TCP", 8080)]));
    }
    (services, slices)
}
