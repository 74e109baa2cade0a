//! `kubelab status`: what a learner needs to find their way into a running lab — its nodes
//! with their addresses, readiness and pod blocks, the API server on the host, and each
//! NodePort as a URL on 127.0.0.1.
//!
//! [`render`] is pure (golden-tested); [`status`] gathers its inputs.

use crate::LabError;
use crate::inspect::RunningLab;
use crate::netlab::LabRecord;
use crate::nodeports::{self, NodePortEntry};
use agent::netnode::calico;
use kube::api::{Api, DynamicObject};
use serde_json::Value;
use std::collections::BTreeMap;

/// One node as the API server sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeView {
    /// `Ready`, `NotReady`, or `Unknown` when the API server does not know the node.
    pub status: String,
    pub roles: String,
    /// Pod blocks affine to the node, e.g. `192.168.145.64/26`.
    pub blocks: Vec<String>,
}

/// Everything `kubelab status` prints.
#[derive(Clone, Debug)]
pub struct StatusInput {
    pub record: LabRecord,
    pub api_url: String,
    pub kubeconfig: String,
    pub nodes: BTreeMap<String, NodeView>,
    pub nodeports: Vec<NodePortEntry>,
}

/// Left-aligned columns separated by three spaces, like kubectl's tables.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            line += cell;
            if c + 1 < row.len() {
                line += &" ".repeat(widths[c] - cell.chars().count() + 3);
            }
        }
        out += line.trim_end();
        out.push('\n');
    }
    out
}

pub fn render(input: &StatusInput) -> String {
    let r = &input.record;
    let mut out = format!(
        "Lab {:?}: {} nodes, {} encapsulation\nAPI server: {} (kubeconfig {})\n\n",
        r.name,
        r.nodes.len(),
        r.encapsulation,
        input.api_url,
        input.kubeconfig
    );
    let mut rows = vec![
        [
            "NODE",
            "STATUS",
            "ROLES",
            "INTERNAL-IP",
            "NAMESPACE",
            "POD BLOCKS",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for n in &r.nodes {
        let view = input.nodes.get(&n.name).cloned().unwrap_or(NodeView {
            status: "Unknown".into(),
            roles: "<none>".into(),
            blocks: Vec::new(),
        });
        rows.push(vec![
            n.name.clone(),
            view.status,
            view.roles,
            format!("{}/{}", n.ip, n.prefix_len),
            n.netns.clone(),
            if view.blocks.is_empty() {
                "<none>".into()
            } else {
                view.blocks.join(",")
            },
        ]);
    }
    out += &table(&rows);
    out += "\n";
    if input.nodeports.is_empty() {
        out += "NodePorts: none (create a Service of type NodePort to reach it from the host)\n";
    } else {
        let mut rows = vec![["SERVICE", "PORT", "URL"].map(String::from).to_vec()];
        for p in &input.nodeports {
            rows.push(vec![
                format!("{}/{}", p.namespace, p.service),
                format!("{}:{}/TCP", p.service_port, p.port),
                match &p.error {
                    None => format!("http://127.0.0.1:{}", p.port),
                    Some(e) => format!("(not on the host: {e})"),
                },
            ]);
        }
        out += "NodePorts (also at <any node IP>:<port> inside the lab):\n";
        out += &table(&rows);
    }
    out
}

fn node_view(node: &Value) -> (String, NodeView) {
    let name = node
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let ready = node
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .map(|c| c["status"] == "True");
    let mut roles: Vec<String> = node
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .keys()
                .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    roles.sort();
    (
        name,
        NodeView {
            status: match ready {
                Some(true) => "Ready",
                Some(false) => "NotReady",
                None => "Unknown",
            }
            .into(),
            roles: if roles.is_empty() {
                "<none>".into()
            } else {
                roles.join(",")
            },
            blocks: Vec::new(),
        },
    )
}

/// Gathers the lab's state and renders it.
pub async fn status(lab: &RunningLab) -> Result<String, LabError> {
    let client = lab.client().await?;
    let list = |r: kube::discovery::ApiResource| {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &r);
        async move {
            api.list(&Default::default())
                .await
                .map(|l| {
                    l.items
                        .iter()
                        .filter_map(|o| serde_json::to_value(o).ok())
                        .collect::<Vec<Value>>()
                })
                .map_err(|e| LabError::Client(e.to_string()))
        }
    };
    let nodes = list(kube::discovery::ApiResource::erase::<
        k8s_openapi::api::core::v1::Node,
    >(&()))
    .await?;
    let blocks = list(calico("IPAMBlock", "ipamblocks")).await?;
    let mut views: BTreeMap<String, NodeView> = nodes.iter().map(node_view).collect();
    for b in &blocks {
        let affinity = b.pointer("/spec/affinity").and_then(Value::as_str);
        let cidr = b.pointer("/spec/cidr").and_then(Value::as_str);
        if let (Some(node), Some(cidr)) = (affinity.and_then(|a| a.strip_prefix("host:")), cidr)
            && let Some(v) = views.get_mut(node)
        {
            v.blocks.push(cidr.to_string());
        }
    }
    for v in views.values_mut() {
        v.blocks.sort();
    }
    let kubeconfig = lab.paths.kubeconfig();
    let api_url = std::fs::read_to_string(&kubeconfig)
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.trim()
                    .strip_prefix("server:")
                    .map(|s| s.trim().to_string())
            })
        })
        .unwrap_or_default();
    Ok(render(&StatusInput {
        record: lab.record.clone(),
        api_url,
        kubeconfig: kubeconfig.display().to_string(),
        nodes: views,
        nodeports: nodeports::read_state(&lab.paths.dir),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlab::NodeRecord;
    use std::net::Ipv4Addr;

    fn record() -> LabRecord {
        let node = |name: &str, ip: [u8; 4]| NodeRecord {
            name: name.into(),
            netns: format!("kubelab.{name}"),
            uts: "/x".into(),
            ip: Ipv4Addr::from(ip),
            prefix_len: 20,
            gateway: Ipv4Addr::new(10, 10, 64, 1),
        };
        LabRecord {
            name: "kubelab".into(),
            router_netns: "kubelab.router".into(),
            encapsulation: "ipip".into(),
            nodes: vec![
                node("kube-0", [10, 10, 68, 222]),
                node("kube-1", [10, 10, 95, 205]),
            ],
        }
    }

    #[test]
    fn nodes_and_nodeports_as_a_learner_reads_them() {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            "kube-0".to_string(),
            NodeView {
                status: "Ready".into(),
                roles: "control-plane".into(),
                blocks: vec!["192.168.145.64/26".into()],
            },
        );
        let input = StatusInput {
            record: record(),
            api_url: "https://127.0.0.1:40001".into(),
            kubeconfig: "/state/kubeconfig".into(),
            nodes,
            nodeports: vec![
                NodePortEntry {
                    port: 31234,
                    namespace: "default".into(),
                    service: "nodeport-demo".into(),
                    service_port: 8080,
                    error: None,
                },
                NodePortEntry {
                    port: 30080,
                    namespace: "web".into(),
                    service: "site".into(),
                    service_port: 80,
                    error: Some("Address already in use (os error 98)".into()),
                },
            ],
        };
        let expected = "\
Lab \"kubelab\": 2 nodes, ipip encapsulation
API server: https://127.0.0.1:40001 (kubeconfig /state/kubeconfig)

NODE     STATUS    ROLES           INTERNAL-IP       NAMESPACE        POD BLOCKS
kube-0   Ready     control-plane   10.10.68.222/20   kubelab.kube-0   192.168.145.64/26
kube-1   Unknown   <none>          10.10.95.205/20   kubelab.kube-1   <none>

NodePorts (also at <any node IP>:<port> inside the lab):
SERVICE                 PORT             URL
default/nodeport-demo   8080:31234/TCP   http://127.0.0.1:31234
web/site                80:30080/TCP     (not on the host: Address already in use (os error 98))
";
        assert_eq!(render(&input), expected);
    }

    #[test]
    fn node_views_from_node_objects() {
        let node = serde_json::json!({
            "metadata": {"name": "kube-0", "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "status": {"conditions": [{"type": "Ready", "status": "False"}]},
        });
        let (name, view) = node_view(&node);
        assert_eq!(name, "kube-0");
        assert_eq!(view.status, "NotReady");
        assert_eq!(view.roles, "control-plane");
    }
}
