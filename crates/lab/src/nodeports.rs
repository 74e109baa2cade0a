//! NodePorts on the host: every TCP NodePort of the lab is also reachable at
//! `127.0.0.1:<nodePort>` on the machine, forwarded into the control-plane node, where the
//! node's proxy rules take it to an endpoint like any `<node IP>:<nodePort>` connection. The
//! host's namespace gets listening sockets on loopback only, never routes or rules.
//!
//! [`wanted`] decides (pure) which ports to serve from the Services; [`run`] keeps one
//! listener per port in step with it and records the outcome in `nodeports.json` for
//! `kubelab status` (a port another program holds on the host is reported, not retried
//! in a loop).

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::runtime::{WatchStreamExt, watcher};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// One NodePort as `kubelab status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePortEntry {
    pub port: u16,
    pub namespace: String,
    pub service: String,
    /// The Service port's `port` (what the ClusterIP serves).
    pub service_port: i32,
    /// Why the host listener could not be opened; `None` while it serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The TCP NodePorts of `services`, by port. A port two Services claim (the API server
/// refuses that, so only a transient state) goes to the first in name order.
pub fn wanted(services: &[Service]) -> BTreeMap<u16, NodePortEntry> {
    let mut sorted: Vec<&Service> = services.iter().collect();
    sorted.sort_by_key(|s| (s.metadata.namespace.clone(), s.metadata.name.clone()));
    let mut out = BTreeMap::new();
    for svc in sorted {
        let Some(spec) = &svc.spec else { continue };
        if !matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer")) {
            continue;
        }
        for p in spec.ports.iter().flatten() {
            let tcp = p.protocol.as_deref().unwrap_or("TCP") == "TCP";
            let Some(port) = p.node_port.and_then(|n| u16::try_from(n).ok()) else {
                continue;
            };
            if tcp && port != 0 {
                out.entry(port).or_insert_with(|| NodePortEntry {
                    port,
                    namespace: svc.metadata.namespace.clone().unwrap_or_default(),
                    service: svc.metadata.name.clone().unwrap_or_default(),
                    service_port: p.port,
                    error: None,
                });
            }
        }
    }
    out
}

/// Where `run` records the NodePorts it serves.
pub fn state_file(state_dir: &Path) -> PathBuf {
    state_dir.join("nodeports.json")
}

/// Reads what the lab's forwarder recorded; empty when it has not written yet.
pub fn read_state(state_dir: &Path) -> Vec<NodePortEntry> {
    std::fs::read_to_string(state_file(state_dir))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Serves the lab's NodePorts on the host's 127.0.0.1 until the task is aborted, connecting
/// each client to `<node_ip>:<nodePort>` from inside the node's namespace `netns`.
pub async fn run(client: kube::Client, netns: PathBuf, node_ip: Ipv4Addr, state_dir: PathBuf) {
    let api: kube::Api<Service> = kube::Api::all(client);
    let writer = kube::runtime::reflector::store::Writer::<Service>::default();
    let store = writer.as_reader();
    let changed = std::sync::Arc::new(tokio::sync::Notify::new());
    // The stream must be polled for the store to fill, so it runs on its own.
    let drain = {
        let changed = changed.clone();
        tokio::spawn(async move {
            let stream = kube::runtime::reflector(writer, watcher(api, watcher::Config::default()))
                .default_backoff();
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                if event.is_ok() {
                    changed.notify_one();
                }
            }
        })
    };
    let _drain = AbortOnDrop(drain);
    if store.wait_until_ready().await.is_err() {
        return;
    }
    let mut serving: HashMap<u16, (NodePortEntry, tokio::task::JoinHandle<()>)> = HashMap::new();
    let mut last_written: Option<Vec<NodePortEntry>> = None;
    loop {
        let services: Vec<Service> = store.state().iter().map(|s| (**s).clone()).collect();
        let want = wanted(&services);
        serving.retain(|port, (entry, task)| {
            let keep = want.get(port).is_some_and(|w| {
                w.namespace == entry.namespace
                    && w.service == entry.service
                    && entry.error.is_none()
            });
            if !keep {
                task.abort();
            }
            keep
        });
        for (port, entry) in &want {
            if serving.contains_key(port) {
                continue;
            }
            let mut entry = entry.clone();
            let task =
                match std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, *port)).and_then(|l| {
                    l.set_nonblocking(true)?;
                    tokio::net::TcpListener::from_std(l)
                }) {
                    Ok(listener) => {
                        let target = SocketAddr::from((node_ip, *port));
                        tokio::spawn(crate::netlab::forward(listener, netns.clone(), target))
                    }
                    Err(e) => {
                        tracing::warn!(port, error = %e, "cannot serve the NodePort on 127.0.0.1");
                        entry.error = Some(e.to_string());
                        tokio::spawn(async {})
                    }
                };
            serving.insert(*port, (entry, task));
        }
        let mut now: Vec<NodePortEntry> = serving.values().map(|(e, _)| e.clone()).collect();
        now.sort_by_key(|e| e.port);
        if last_written.as_ref() != Some(&now) {
            let path = state_file(&state_dir);
            let tmp = path.with_extension("tmp");
            let text = serde_json::to_string_pretty(&now).unwrap_or_default();
            if std::fs::write(&tmp, text)
                .and_then(|()| std::fs::rename(&tmp, &path))
                .is_ok()
            {
                last_written = Some(now);
            }
        }
        changed.notified().await;
    }
}

/// Aborts the task when dropped, so the watch ends with [`run`].
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(ns: &str, name: &str, spec: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": spec,
        }))
        .expect("service")
    }

    #[test]
    fn tcp_node_ports_of_nodeport_and_loadbalancer_services() {
        let services = [
            service(
                "default",
                "nodeport-demo",
                json!({"type": "NodePort", "ports": [{"port": 8080, "nodePort": 31234}]}),
            ),
            service(
                "default",
                "cluster-demo",
                json!({"type": "ClusterIP", "ports": [{"port": 8080}]}),
            ),
            service(
                "web",
                "lb",
                json!({"type": "LoadBalancer", "ports": [
                    {"port": 80, "protocol": "TCP", "nodePort": 30080},
                    {"port": 53, "protocol": "UDP", "nodePort": 30053},
                ]}),
            ),
        ];
        let w = wanted(&services);
        assert_eq!(w.keys().copied().collect::<Vec<_>>(), vec![30080, 31234]);
        assert_eq!(w[&31234].service, "nodeport-demo");
        assert_eq!(w[&31234].service_port, 8080);
        assert_eq!(w[&30080].namespace, "web");
    }

    #[test]
    fn a_port_claimed_twice_goes_to_the_first_by_name() {
        let spec = json!({"type": "NodePort", "ports": [{"port": 1, "nodePort": 30000}]});
        let w = wanted(&[
            service("b", "x", spec.clone()),
            service("a", "y", spec.clone()),
        ]);
        assert_eq!(w[&30000].namespace, "a");
    }
}
