//! Looking into a running lab from the host: `kubelab routes` (each node's table, the
//! prediction from cluster state alone, or both compared) and `kubelab ssh`'s target.

use crate::netlab::{LabRecord, NodeRecord};
use crate::{LabEnv, LabError, LabPaths};
use agent::netnode::calico;
use kube::api::{Api, ApiResource, DynamicObject};
use serde_json::Value;

/// What `kubelab routes` shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoutesMode {
    /// The kernel's table of each node, as `ip route` prints it.
    Kernel,
    /// The table computed from cluster state alone.
    Predict,
    /// Both compared; any difference is reported.
    Check,
}

/// A running real lab: its record and a client of its API server.
pub struct RunningLab {
    pub record: LabRecord,
    pub paths: LabPaths,
}

impl RunningLab {
    pub fn open(env: &LabEnv, name: &str) -> Result<RunningLab, LabError> {
        crate::validate_name(name)?;
        let paths = LabPaths::new(env.state_dir(name));
        let record = LabRecord::read(&paths.dir).map_err(|_| {
            LabError::Network(format!(
                "no lab of real nodes named {name:?} is running (start one with `kubelab up --name {name}`)"
            ))
        })?;
        Ok(RunningLab { record, paths })
    }

    pub fn node(&self, name: &str) -> Result<&NodeRecord, LabError> {
        self.record.node(name).ok_or_else(|| {
            LabError::Network(format!(
                "lab {:?} has no node {name:?}; its nodes are {}",
                self.record.name,
                self.record
                    .nodes
                    .iter()
                    .map(|n| n.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    }

    pub async fn client(&self) -> Result<kube::Client, LabError> {
        let path = self.paths.kubeconfig();
        let text = std::fs::read_to_string(&path).map_err(crate::io("reading", &path))?;
        crate::client_from_kubeconfig(&text).await
    }
}

async fn list_values(
    client: &kube::Client,
    resource: &ApiResource,
) -> Result<Vec<Value>, LabError> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), resource);
    let list = api
        .list(&Default::default())
        .await
        .map_err(|e| LabError::Client(e.to_string()))?;
    Ok(list
        .items
        .iter()
        .filter_map(|o| serde_json::to_value(o).ok())
        .collect())
}

/// The cluster state route prediction needs, read from the API server.
pub async fn cluster_state(client: &kube::Client) -> Result<routing::Cluster, LabError> {
    let nodes = list_values(
        client,
        &ApiResource::erase::<k8s_openapi::api::core::v1::Node>(&()),
    )
    .await?;
    let pods = list_values(
        client,
        &ApiResource::erase::<k8s_openapi::api::core::v1::Pod>(&()),
    )
    .await?;
    let blocks = list_values(client, &calico("IPAMBlock", "ipamblocks")).await?;
    let pools = list_values(client, &calico("IPPool", "ippools")).await?;
    Ok(routing::cluster_from_objects(
        &nodes, &blocks, &pools, &pods,
    ))
}

/// The kernel's main table of a node, parsed.
pub async fn kernel_routes(node: &NodeRecord) -> Result<Vec<routing::Route>, LabError> {
    let json = dataplane::ip::routes_json(&node.netns)
        .await
        .map_err(|e| LabError::Network(e.to_string()))?;
    routing::parse_ip_json(&json).map_err(|e| LabError::Network(e.to_string()))
}

/// `kubelab routes`: the text to print and whether every node is as predicted (always true
/// unless `mode` is [`RoutesMode::Check`]).
pub async fn routes(
    lab: &RunningLab,
    node: Option<&str>,
    mode: RoutesMode,
) -> Result<(String, bool), LabError> {
    let nodes: Vec<&NodeRecord> = match node {
        Some(n) => vec![lab.node(n)?],
        None => lab.record.nodes.iter().collect(),
    };
    let cluster = match mode {
        RoutesMode::Kernel => None,
        _ => Some(cluster_state(&lab.client().await?).await?),
    };
    let mut out = String::new();
    let mut clean = true;
    let headers = nodes.len() > 1 && mode != RoutesMode::Check;
    for (i, n) in nodes.iter().enumerate() {
        if headers {
            if i > 0 {
                out.push('\n');
            }
            out += &format!("{}:\n", n.name);
        }
        match (&cluster, mode) {
            (None, _) => {
                let text = dataplane::ip::route_text(&n.netns)
                    .await
                    .map_err(|e| LabError::Network(e.to_string()))?;
                for line in text.lines() {
                    out += line.trim_end();
                    out.push('\n');
                }
            }
            (Some(c), RoutesMode::Predict) => {
                for r in routing::node_table(c, &n.name) {
                    out += &format!("{r}\n");
                }
            }
            (Some(c), _) => {
                let desired = routing::node_table(c, &n.name);
                let actual = kernel_routes(n).await?;
                let diff = routing::diff(&desired, &actual);
                if diff.missing.is_empty() && diff.unexpected.is_empty() {
                    out += &format!("{}: {} routes, as predicted\n", n.name, desired.len());
                } else {
                    clean = false;
                    out += &format!(
                        "{}: differs from the prediction (+ missing, - unexpected):\n{diff}",
                        n.name
                    );
                    if !out.ends_with('\n') {
                        out.push('\n');
                    }
                }
            }
        }
    }
    Ok((out, clean))
}
