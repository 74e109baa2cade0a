//! kubelab's node agent. For now the hollow kubelet of `kubelab up --hollow`; the real agent
//! (namespaces, routes, proxy) will reuse the node registration and the pod lifecycle.
//!
//! - [`node`]: the Node object, its status and the Lease heartbeat (pure builders + writers);
//! - [`podstatus`]: pod status for each lifecycle stage (pure);
//! - [`kubelet`]: the pod lifecycle loop over a [`kubelet::ContainerRuntime`];
//! - [`hollow`]: a runtime that runs nothing, and a hollow node's entry point;
//! - [`ipamstore`]: the IPAM's [`ipam::Datastore`] over the API server;
//! - [`netnode`]: a real node (pods as network namespaces, Calico's routes, built-in images);
//! - [`lifecycle`]: what happens to a container after it starts: exits, restarts with back-off,
//!   probes, the pod's phase (pure);
//! - [`supervisor`]: the real node's per-container supervision carrying that out;
//! - [`proxier`]: the node's kube-proxy, Services as nftables rules ([`proxy`]);
//! - [`bird`]: BIRD in the node (`--routing bgp`), configured like Calico's confd does it.
//!
//! **Invariant:** the agent holds nothing that cannot be rebuilt from the API server: a
//! restarted agent adopts Running pods as they are and frees addresses of pods that are gone.

pub mod bird;
pub mod exec;
pub mod hollow;
pub mod ipamstore;
pub mod kubelet;
pub mod lifecycle;
pub mod logserver;
pub mod netnode;
pub mod node;
pub mod podfiles;
pub mod podstatus;
pub mod proxier;
pub mod supervisor;

pub use ipamstore::ApiDatastore;
