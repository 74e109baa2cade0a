//! A hollow node, like kwok's: a kubelet that registers its Node, heartbeats, and moves the pods
//! bound to it through ContainerCreating to Running with an address from the IPAM, container
//! statuses and the kubelet's events, but runs no process and makes no namespace. It needs no
//! root, so a lab of many nodes fits in one process.
//!
//! Only the [`HollowRuntime`] is hollow; node registration ([`crate::node`]) and the pod
//! lifecycle ([`crate::kubelet`]) are the ones the real node agent uses.

use crate::kubelet::{ContainerRuntime, Kubelet, KubeletConfig, RuntimeError};
use crate::node::{self, HeartbeatConfig, HostFacts, NodeCapacity, NodeIdentity};
use crate::podstatus::{StartedContainer, container_id, image_id};
use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Client, ResourceExt};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

/// The runtime name in container IDs and `containerRuntimeVersion`.
pub const RUNTIME_NAME: &str = "kubelab";

/// Containers that "start" at once and never stop on their own.
#[derive(Clone, Copy, Debug, Default)]
pub struct HollowRuntime;

impl ContainerRuntime for HollowRuntime {
    fn name(&self) -> &str {
        RUNTIME_NAME
    }

    async fn create_sandbox(&self, _pod: &Pod, _ips: &[IpAddr]) -> Result<(), RuntimeError> {
        Ok(())
    }

    async fn start_container(
        &self,
        pod: &Pod,
        container: &Container,
    ) -> Result<StartedContainer, RuntimeError> {
        Ok(StartedContainer {
            name: container.name.clone(),
            container_id: container_id(
                RUNTIME_NAME,
                &pod.uid().unwrap_or_default(),
                &container.name,
            ),
            image_id: image_id(container.image.as_deref().unwrap_or_default()),
            started_at: Time(jiff::Timestamp::now()),
        })
    }

    async fn stop_pod(&self, _pod: &Pod) -> Result<(), RuntimeError> {
        Ok(())
    }
}

/// One hollow node of a lab.
#[derive(Clone, Debug)]
pub struct HollowNodeConfig {
    pub identity: NodeIdentity,
    pub heartbeat: HeartbeatConfig,
    pub address_sweep_interval: Duration,
}

/// The hollow underlay address of node `kube-<index>`: 10.0.0.(10+index). Nothing is ever sent
/// there; it only fills `InternalIP` and `hostIP`.
pub fn underlay_address(index: u32) -> IpAddr {
    let base = u32::from(Ipv4Addr::new(10, 0, 0, 10));
    IpAddr::V4(Ipv4Addr::from(base.saturating_add(index)))
}

impl HollowNodeConfig {
    /// Node `kube-<index>`; `kube-0` is the control plane.
    pub fn for_index(index: u32) -> HollowNodeConfig {
        HollowNodeConfig {
            identity: NodeIdentity {
                name: format!("kube-{index}"),
                internal_ip: underlay_address(index),
                control_plane: index == 0,
                runtime_version: format!("{RUNTIME_NAME}://{}", env!("CARGO_PKG_VERSION")),
                capacity: NodeCapacity::default(),
                // Nothing listens at a hollow node's address: the API server must not dial it.
                kubelet_port: 0,
            },
            heartbeat: HeartbeatConfig::default(),
            address_sweep_interval: crate::kubelet::ADDRESS_SWEEP_INTERVAL,
        }
    }
}

/// Registers the node (retrying until the API server answers), then heartbeats and runs its
/// pods until the future is dropped.
pub async fn run(client: Client, config: HollowNodeConfig) {
    let host = HostFacts::detect();
    let id = config.identity.clone();
    let mut backoff = Duration::from_millis(50);
    let node_uid = loop {
        match node::register(&client, &id, &host).await {
            Ok(uid) => break uid,
            Err(e) => {
                tracing::warn!(node = %id.name, error = %e, "node registration failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    };
    tracing::info!(node = %id.name, "hollow node registered");
    let heartbeat = tokio::spawn(node::heartbeat(
        client.clone(),
        id.clone(),
        host,
        node_uid,
        config.heartbeat.clone(),
    ));
    let kubelet = Arc::new(Kubelet::new(
        client,
        KubeletConfig {
            node_name: id.name.clone(),
            host_ip: id.internal_ip,
            address_sweep_interval: config.address_sweep_interval,
            tunnel: Some(ipam::TunnelType::Ipip),
        },
        HollowRuntime,
    ));
    kubelet.run().await;
    heartbeat.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_and_addresses() {
        let c = HollowNodeConfig::for_index(0);
        assert_eq!(c.identity.name, "kube-0");
        assert!(c.identity.control_plane);
        assert_eq!(c.identity.internal_ip.to_string(), "10.0.0.10");
        let c = HollowNodeConfig::for_index(1);
        assert!(!c.identity.control_plane);
        assert_eq!(c.identity.internal_ip.to_string(), "10.0.0.11");
        assert_eq!(underlay_address(300).to_string(), "10.0.1.54");
        assert!(c.identity.runtime_version.starts_with("kubelab://"));
    }

    #[tokio::test]
    async fn hollow_containers_get_stable_ids() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "uid": "u1"},
            "spec": {"containers": [{"name": "nginx", "image": "nginx:1.7.9"}]}
        }))
        .unwrap();
        let container = &pod.spec.as_ref().unwrap().containers[0];
        let a = HollowRuntime
            .start_container(&pod, container)
            .await
            .unwrap();
        let b = HollowRuntime
            .start_container(&pod, container)
            .await
            .unwrap();
        assert_eq!(a.container_id, b.container_id);
        assert!(a.container_id.starts_with("kubelab://"));
        assert_eq!(a.image_id, image_id("nginx:1.7.9"));
    }
}
