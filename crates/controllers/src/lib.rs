//! The controllers of kube-controller-manager and kube-scheduler that a networking course needs,
//! run inside `kubelab server` as clients of its own API: Deployment → ReplicaSets, ReplicaSet →
//! Pods, DaemonSet → one Pod per eligible node, Service → Endpoints and EndpointSlices, node
//! lifecycle (heartbeats, taints, eviction) and the scheduler.
//!
//! Each controller is a module with a pure core (what should exist, given what does) tested
//! without a server, and a thin loop over kube-rs watches that carries the answer out through
//! the API. Level-triggered: a controller may be restarted at any time and converges from the
//! API server's state alone.
//!
//! **Invariant:** controllers hold nothing that cannot be rebuilt from the API server.

pub mod daemonset;
pub mod deployment;
pub mod endpoints;
pub mod events;
pub mod nodelifecycle;
pub mod replicaset;
pub mod scheduler;
pub mod util;

use std::time::Duration;

/// Knobs a lab may turn; defaults are upstream's.
#[derive(Clone, Debug)]
pub struct Config {
    /// How long a node may stay silent before it is marked NotReady/Unknown
    /// (kube-controller-manager `--node-monitor-grace-period`, 40 s upstream).
    pub node_monitor_grace_period: Duration,
    /// Default `tolerationSeconds` for the not-ready/unreachable NoExecute taints: how long
    /// pods stay on a node that went away (300 s upstream, set by admission on each pod).
    pub default_eviction_timeout: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            node_monitor_grace_period: Duration::from_secs(40),
            default_eviction_timeout: Duration::from_secs(300),
        }
    }
}

/// Runs every controller until the future is dropped. A controller that fails is restarted
/// after a pause; none can stop the others.
pub async fn run(client: kube::Client, config: Config) {
    let tasks: Vec<(&str, futures::future::BoxFuture<'static, ()>)> = vec![
        (
            "deployment",
            Box::pin(deployment::run(client.clone(), config.clone())),
        ),
        (
            "replicaset",
            Box::pin(replicaset::run(client.clone(), config.clone())),
        ),
        (
            "daemonset",
            Box::pin(daemonset::run(client.clone(), config.clone())),
        ),
        (
            "endpoints",
            Box::pin(endpoints::run(client.clone(), config.clone())),
        ),
        (
            "nodelifecycle",
            Box::pin(nodelifecycle::run(client.clone(), config.clone())),
        ),
        (
            "scheduler",
            Box::pin(scheduler::run(client.clone(), config.clone())),
        ),
    ];
    let handles: Vec<_> = tasks
        .into_iter()
        .map(|(name, fut)| {
            tokio::spawn(async move {
                fut.await;
                tracing::warn!(controller = name, "controller stopped");
            })
        })
        .collect();
    for h in handles {
        let _ = h.await;
    }
}
