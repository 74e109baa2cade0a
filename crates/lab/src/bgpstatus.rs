//! Looking at a `--routing bgp` lab's BGP from the host: `kubelab bgp status` (each node's BIRD
//! asked over its control socket, shown like `calicoctl node status`), `birdc` runs, and the
//! `/run/bird` view `kubelab ssh` gives a node's shell so that a bare `birdc` finds its BIRD.

use crate::LabError;
use crate::inspect::RunningLab;
use crate::netlab::{self, BgpRecord};
use std::path::Path;

/// Runs `birdc -s SOCKET ARGS...` and returns what it printed. `birdc` talks to a Unix socket,
/// so it needs no namespace of the node.
pub async fn birdc(socket: &Path, args: &[&str]) -> Result<String, LabError> {
    let output = tokio::process::Command::new("birdc")
        .arg("-s")
        .arg(socket)
        .args(args)
        .output()
        .await
        .map_err(|e| LabError::Network(format!("running birdc: {e}")))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(LabError::Network(format!(
            "birdc -s {} {}: {}{}",
            socket.display(),
            args.join(" "),
            text.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(text)
}

/// `kubelab bgp status`: a section per node (or only `node`), then the external router's if
/// the lab has one and no node was named; and whether every BGP session is Established.
pub async fn status(lab: &RunningLab, node: Option<&str>) -> Result<(String, bool), LabError> {
    let bgp = BgpRecord::read(&lab.paths.dir).ok_or_else(|| {
        LabError::Network(format!(
            "lab {:?} does not run BGP (start it with `kubelab up --routing bgp`)",
            lab.record.name
        ))
    })?;
    let nodes: Vec<&netlab::NodeRecord> = match node {
        Some(n) => vec![lab.node(n)?],
        None => lab.record.nodes.iter().collect(),
    };
    let mut out = String::new();
    let mut all_established = true;
    for (i, n) in nodes.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let socket = agent::bird::control_socket(&netlab::node_state_dir(&lab.paths.dir, &n.name));
        let (section, established) = section(&n.name, n.ip, &socket).await?;
        out += &section;
        all_established &= established;
    }
    if let (None, Some(peer)) = (node, &bgp.peer_router) {
        out.push('\n');
        let socket = peer.bird_dir.join("bird.ctl");
        let (section, established) = section(
            &format!(
                "{} (AS {})",
                crate::topology::PEER_ROUTER_NAME,
                peer.as_number
            ),
            peer.ip,
            &socket,
        )
        .await?;
        out += &section;
        all_established &= established;
    }
    Ok((out, all_established))
}

async fn section(
    name: &str,
    ip: std::net::Ipv4Addr,
    socket: &Path,
) -> Result<(String, bool), LabError> {
    let protocols = match birdc(socket, &["show", "protocols"]).await {
        Ok(text) => {
            Some(bgp::parse_protocols(&text).map_err(|e| LabError::Network(e.to_string()))?)
        }
        Err(_) => None,
    };
    let peers = protocols
        .as_deref()
        .map(bgp::peer_statuses)
        .unwrap_or_default();
    let established = protocols.is_some() && peers.iter().all(bgp::PeerStatus::is_established);
    Ok((
        bgp::node_status(name, ip, protocols.as_deref()),
        established,
    ))
}

/// Makes `bird_dir` appear at `/run/bird` for this process and what it execs, in a mount
/// namespace of its own (the host's mounts are untouched), since Debian's `birdc` looks for
/// `bird.ctl` there. A host without `/run/bird` gets none: the directory is made on a tmpfs
/// only this namespace sees. Call it single-threaded, before exec.
pub fn mount_bird_dir(bird_dir: &Path) -> std::io::Result<()> {
    let mut plan = dataplane::mounts::MountPlan::new();
    plan.bind_dir(bird_dir, Path::new("/run/bird"))
        .map_err(std::io::Error::other)?;
    plan.apply_in_child()
}
