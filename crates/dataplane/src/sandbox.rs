//! Calico CNI's pod wiring: a pod network namespace joined to its node's namespace by a veth.
//!
//! The shape (libcalico-go / cni-plugin `dataplane/linux`): the host end `cali<11 hex>` lives in
//! the node with MAC `ee:ee:ee:ee:ee:ee`, proxy ARP on (answering immediately) and forwarding on;
//! the pod end is `eth0` with the pod IP as a /32, a link-scope route to the fake gateway
//! `169.254.1.1` and a default route via it. The pod ARPs for 169.254.1.1, the node answers by
//! proxy with the `ee:..` MAC, so every packet from the pod lands in the node's routing table; the
//! node reaches the pod through `<ip> dev cali... scope link`.
//!
//! Proxy ARP only answers for addresses the node can route elsewhere, so the node namespace needs
//! a route covering 169.254.1.1 (normally its default route); that is the node's business, not
//! this module's. What the pod's IP is comes from IPAM elsewhere.

use std::net::Ipv4Addr;

use crate::error::{DataplaneError, Result, io_ctx};
use crate::ip::{self, Link};
use crate::netns::{self, in_netns, is_plain_token, validate_name};
use crate::sysctl;

/// MAC of every host-side veth, as Calico sets it: pods never need to learn real node MACs.
pub const HOST_VETH_MAC: &str = "ee:ee:ee:ee:ee:ee";
/// The fake next hop every pod routes through; answered by proxy ARP on the host veth.
pub const POD_GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// Name of the pod end of the veth, inside the pod namespace.
pub const POD_INTERFACE: &str = "eth0";

/// Everything needed to wire one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetwork {
    /// Name (in `/run/netns`) of the node's network namespace, which must exist.
    pub node_netns: String,
    /// Name (in `/run/netns`) of the pod's network namespace; created if missing.
    pub pod_netns: String,
    /// Host end of the veth in the node namespace, e.g. `cali1234567890a` (at most 15 bytes).
    pub host_if: String,
    /// The pod's address, put on `eth0` as a /32.
    pub ip: Ipv4Addr,
    /// MTU of both veth ends (e.g. 1480 under IPIP, 1450 under VXLAN).
    pub mtu: u32,
}

/// Checks an interface name: at most 15 bytes and safe inside an `ip -batch` line.
fn validate_ifname(name: &str) -> Result<()> {
    if name.len() < libc::IFNAMSIZ
        && is_plain_token(name)
        && !name.contains('/')
        && name != "."
        && name != ".."
    {
        Ok(())
    } else {
        Err(DataplaneError::InvalidArgument {
            what: "interface name",
            value: name.to_string(),
        })
    }
}

impl PodNetwork {
    fn validate(&self) -> Result<()> {
        validate_name(&self.node_netns)?;
        validate_name(&self.pod_netns)?;
        validate_ifname(&self.host_if)?;
        if !(68..=65535).contains(&self.mtu) {
            return Err(DataplaneError::InvalidArgument {
                what: "MTU",
                value: self.mtu.to_string(),
            });
        }
        Ok(())
    }
}

/// Whether `host` (node side) and `pod` (pod side) are the two ends of one veth across namespaces.
fn is_veth_pair(host: &Link, pod: &Link) -> bool {
    let veth = |l: &Link| l.kind.as_deref() == Some("veth") && l.peer_netnsid.is_some();
    veth(host)
        && veth(pod)
        && host.peer_ifindex == Some(pod.ifindex)
        && pod.peer_ifindex == Some(host.ifindex)
}

/// Wires the pod: creates its namespace, the veth pair, addresses, routes and sysctls.
///
/// Idempotent and convergent: on a complete sandbox it changes nothing visible; on a half-made
/// one (a crash between steps) it finishes the job. A veth end whose partner is missing or wrong
/// is deleted and the pair recreated; everything else uses `replace`, never `add`.
pub async fn setup(pod: &PodNetwork) -> Result<()> {
    pod.validate()?;
    let node = pod.node_netns.as_str();
    let pod_ns = pod.pod_netns.as_str();
    if !netns::exists(node) {
        return Err(DataplaneError::io(
            format!("node network namespace {node}"),
            std::io::Error::from(std::io::ErrorKind::NotFound),
        ));
    }
    // A namespace made just now holds nothing yet: skip looking for a half-made pair (two
    // `ip` runs fewer on the common path).
    let fresh = !netns::exists(pod_ns);
    netns::create(pod_ns)?;
    let (key, value) = sysctl::TCP_TIMESTAMPS;
    sysctl::set(&netns::path(pod_ns), key, value)?;

    let paired = if fresh {
        false
    } else {
        let host = ip::link(node, &pod.host_if).await?;
        let peer = ip::link(pod_ns, POD_INTERFACE).await?;
        if matches!((&host, &peer), (Some(h), Some(p)) if is_veth_pair(h, p)) {
            true
        } else {
            if host.is_some() {
                ip::batch(Some(node), &format!("link del dev {}\n", pod.host_if)).await?;
            }
            // Deleting the host end may already have taken the pod end with it.
            if ip::link(pod_ns, POD_INTERFACE).await?.is_some() {
                ip::batch(Some(pod_ns), &format!("link del dev {POD_INTERFACE}\n")).await?;
            }
            false
        }
    };
    if !paired {
        // One netlink request makes both ends, the pod end directly inside the pod namespace, so
        // a crash cannot leave an `eth0` stranded in the node.
        let add = format!(
            "link add name {host_if} address {HOST_VETH_MAC} mtu {mtu} type veth peer name {POD_INTERFACE} mtu {mtu} netns {pod_ns}\n",
            host_if = pod.host_if,
            mtu = pod.mtu,
        );
        if let Err(e) = ip::batch(Some(node), &add).await {
            // A fresh pod namespace but a stray host end of that name (its pod end lost): it
            // cannot be ours to keep.
            if !fresh || ip::link(node, &pod.host_if).await?.is_none() {
                return Err(e);
            }
            ip::batch(Some(node), &format!("link del dev {}\n", pod.host_if)).await?;
            ip::batch(Some(node), &add).await?;
        }
    }

    // Sysctls before the link goes up, so the pod never sees a host end without proxy ARP.
    let host_if = &pod.host_if;
    let node_path = netns::path(node);
    let settings = [
        (format!("net.ipv4.conf.{host_if}.proxy_arp"), "1"),
        (format!("net.ipv4.neigh.{host_if}.proxy_delay"), "0"),
        (format!("net.ipv4.conf.{host_if}.forwarding"), "1"),
    ];
    let ipv6_key = format!("net.ipv6.conf.{host_if}.disable_ipv6");
    let files = settings
        .iter()
        .map(|(k, v)| Ok((sysctl::proc_path(k)?, *v)))
        .collect::<Result<Vec<_>>>()?;
    let ipv6_file = sysctl::proc_path(&ipv6_key)?;
    in_netns(&node_path, || -> std::io::Result<()> {
        for (file, value) in &files {
            std::fs::write(file, value)?;
        }
        // Calico pods here are IPv4-only; no link-local v6 chatter on the host end.
        if ipv6_file.exists() {
            std::fs::write(&ipv6_file, "1")?;
        }
        Ok(())
    })?
    .map_err(io_ctx(|| format!("sysctls of {host_if} in netns {node}")))?;

    ip::batch(
        Some(node),
        &format!(
            "link set dev {host_if} address {HOST_VETH_MAC} mtu {mtu} up\nroute replace {ip} dev {host_if} scope link\n",
            mtu = pod.mtu,
            ip = pod.ip,
        ),
    )
    .await?;
    ip::batch(
        Some(pod_ns),
        &format!(
            "link set dev lo up\n\
             link set dev {POD_INTERFACE} mtu {mtu} up\n\
             addr replace {ip}/32 dev {POD_INTERFACE}\n\
             route replace {POD_GATEWAY} dev {POD_INTERFACE} scope link\n\
             route replace default via {POD_GATEWAY} dev {POD_INTERFACE}\n",
            mtu = pod.mtu,
            ip = pod.ip,
        ),
    )
    .await
}

/// Unwires a pod: deletes the host veth (which takes the pod end and the node's route to the pod
/// with it) and the pod namespace. `Ok` for whatever is already gone, including the node.
///
/// The veth is deleted explicitly rather than left to namespace destruction because the kernel
/// tears namespaces down asynchronously; an explicit delete is done when this returns.
pub async fn teardown(node_netns: &str, pod_netns: &str, host_if: &str) -> Result<()> {
    validate_name(node_netns)?;
    validate_name(pod_netns)?;
    validate_ifname(host_if)?;
    if netns::exists(node_netns) && ip::link(node_netns, host_if).await?.is_some() {
        let deleted = ip::batch(Some(node_netns), &format!("link del dev {host_if}\n")).await;
        // Someone else (e.g. the pod namespace vanishing) may have removed it meanwhile.
        if let Err(e) = deleted
            && ip::link(node_netns, host_if).await?.is_some()
        {
            return Err(e);
        }
    }
    netns::delete(pod_netns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(ifindex: u32, peer: u32) -> Link {
        Link {
            name: "x".into(),
            ifindex,
            kind: Some("veth".into()),
            mac: None,
            up: true,
            mtu: 1500,
            peer_ifindex: Some(peer),
            peer_netnsid: Some(0),
        }
    }

    #[test]
    fn veth_pairing_needs_both_directions() {
        assert!(is_veth_pair(&link(5, 2), &link(2, 5)));
        assert!(!is_veth_pair(&link(5, 2), &link(2, 6)));
        let same_ns = Link {
            peer_netnsid: None,
            ..link(2, 5)
        };
        assert!(!is_veth_pair(&link(5, 2), &same_ns));
    }

    #[test]
    fn bad_inputs_are_errors() {
        let ok = PodNetwork {
            node_netns: "kube-0".into(),
            pod_netns: "pod-a".into(),
            host_if: "cali1234567890a".into(),
            ip: Ipv4Addr::new(192, 168, 1, 2),
            mtu: 1480,
        };
        assert!(ok.validate().is_ok());
        for bad in [
            PodNetwork {
                host_if: "cali1234567890ab".into(),
                ..ok.clone()
            },
            PodNetwork {
                host_if: "cali x".into(),
                ..ok.clone()
            },
            PodNetwork {
                mtu: 10,
                ..ok.clone()
            },
            PodNetwork {
                pod_netns: "../etc".into(),
                ..ok.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?} accepted");
        }
    }
}
