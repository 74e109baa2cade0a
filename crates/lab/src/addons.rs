//! The cluster add-ons a kubeadm cluster starts with: cluster DNS (kubeadm's CoreDNS
//! manifests: the `coredns` ServiceAccount and Deployment and the `kube-dns` Service at the
//! tenth address of the Service range). kube-proxy's part lives in every node's agent.
//!
//! The objects are built here ([`cluster_dns`], pure) and created once; one already there is
//! left as the user changed it, as `kubeadm upgrade` would not.

use kube::api::{Api, DynamicObject, PostParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};
use std::net::Ipv4Addr;
use std::time::Duration;

/// The image kubeadm 1.33 deploys for cluster DNS.
pub const COREDNS_IMAGE: &str = "registry.k8s.io/coredns/coredns:v1.11.3";

/// The cluster DNS address: the tenth address of the Service range, as kubeadm picks it.
pub fn cluster_dns_ip(service_cidr: &str) -> Option<Ipv4Addr> {
    let (base, bits) = service_cidr.split_once('/')?;
    let base: Ipv4Addr = base.parse().ok()?;
    let bits: u32 = bits.parse().ok()?;
    if !(1..=28).contains(&bits) {
        return None;
    }
    let mask = u32::MAX << (32 - bits);
    Some(Ipv4Addr::from((u32::from(base) & mask) + 10))
}

/// kubeadm's CoreDNS objects, kept on the control-plane node like the course's system pods.
pub fn cluster_dns(dns_ip: Ipv4Addr) -> Vec<Value> {
    let labels = json!({"k8s-app": "kube-dns"});
    vec![
        json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "coredns", "namespace": "kube-system"},
        }),
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "kube-dns",
                "namespace": "kube-system",
                "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"},
                "annotations": {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"},
            },
            "spec": {
                "selector": labels,
                "clusterIP": dns_ip.to_string(),
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                    {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
                ],
            },
        }),
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "coredns", "namespace": "kube-system", "labels": labels},
            "spec": {
                "replicas": 2,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": "coredns",
                        "dnsPolicy": "Default",
                        "nodeSelector": {"node-role.kubernetes.io/control-plane": ""},
                        "tolerations": [
                            {"key": "CriticalAddonsOnly", "operator": "Exists"},
                            {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"},
                        ],
                        "containers": [{
                            "name": "coredns",
                            "image": COREDNS_IMAGE,
                            "args": ["-conf", "/etc/coredns/Corefile"],
                            "ports": [
                                {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                                {"name": "metrics", "containerPort": 9153, "protocol": "TCP"},
                            ],
                            "livenessProbe": {
                                "httpGet": {"path": "/health", "port": 8080, "scheme": "HTTP"},
                                "initialDelaySeconds": 60, "timeoutSeconds": 5,
                                "successThreshold": 1, "failureThreshold": 5,
                            },
                            "readinessProbe": {
                                "httpGet": {"path": "/ready", "port": 8181, "scheme": "HTTP"},
                                "periodSeconds": 1,
                            },
                        }],
                    },
                },
            },
        }),
    ]
}

fn resource_of(object: &Value) -> ApiResource {
    let api_version = object["apiVersion"].as_str().unwrap_or("v1");
    let kind = object["kind"].as_str().unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let plural = match kind {
        "ServiceAccount" => "serviceaccounts",
        "Service" => "services",
        "Deployment" => "deployments",
        other => other,
    };
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: api_version.into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// Creates the objects that do not exist yet, retrying while the API server settles.
pub async fn ensure(client: &kube::Client, objects: Vec<Value>) {
    for object in objects {
        let resource = resource_of(&object);
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default");
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
        let Ok(typed) = serde_json::from_value::<DynamicObject>(object.clone()) else {
            continue;
        };
        for attempt in 0..100 {
            match api.create(&PostParams::default(), &typed).await {
                Ok(_) => break,
                Err(kube::Error::Api(s)) if s.code == 409 => break,
                Err(e) => {
                    if attempt % 20 == 19 {
                        tracing::warn!(kind = %resource.kind, error = %e, "cannot create add-on");
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tenth_address_of_the_service_range() {
        assert_eq!(
            cluster_dns_ip("10.96.0.0/12"),
            Some(Ipv4Addr::new(10, 96, 0, 10))
        );
        assert_eq!(
            cluster_dns_ip("10.100.7.0/24"),
            Some(Ipv4Addr::new(10, 100, 7, 10))
        );
        assert_eq!(cluster_dns_ip("10.96.0.0/30"), None);
        assert_eq!(cluster_dns_ip("nonsense"), None);
    }

    #[test]
    fn the_dns_service_selects_the_deployment_pods() {
        let objects = cluster_dns(Ipv4Addr::new(10, 96, 0, 10));
        let svc = &objects[1];
        let deploy = &objects[2];
        assert_eq!(svc["spec"]["clusterIP"], "10.96.0.10");
        assert_eq!(
            svc["spec"]["selector"],
            deploy["spec"]["template"]["metadata"]["labels"]
        );
        assert_eq!(
            deploy["spec"]["template"]["spec"]["serviceAccountName"],
            objects[0]["metadata"]["name"]
        );
        for o in &objects {
            assert_eq!(resource_of(o).kind, o["kind"].as_str().unwrap());
        }
    }
}
