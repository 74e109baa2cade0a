//! kube-proxy's nftables mode for kubelab.
//!
//! - [`model`]: Services + EndpointSlices → [`ProxyState`] (pure; which endpoints serve which
//!   Service port on this node).
//! - [`ruleset`]: [`ProxyState`] → [`Ruleset`] (pure; chains, verdict maps and sets named and
//!   shaped as upstream's `pkg/proxy/nftables/proxier.go`), a full replacement script, and the
//!   proportional update between two rulesets.
//! - [`incremental`]: the same ruleset and update, re-rendering only the Service ports that
//!   changed ([`IncrementalRuleset`]), for syncs at 10,000 Services.
//! - [`nft`]: the only effectful part, one `nft -f -` process per transaction.
//!
//! A node agent syncs with: `let script = rules.update(ProxyState::from_objects(…))` on an
//! [`IncrementalRuleset`] kept across syncs, then [`Nft::apply`] of that script, or of
//! `rules.ruleset().to_nft_script()` the first time and after a failed apply.
//!
//! Costs at 10,000 Services × 5 endpoints (2 shared cores): a one-Service change is ~20 ms of
//! `from_objects`, ~7 ms of incremental render + diff, and ~0.3 s of `nft -f`, almost all of it
//! `nft` listing the table's 60,000 chains into its cache before it applies anything (at 1,000
//! Services: ~40 ms). A full load is ~4.3 s of `nft -f` (≈2 s parsing in `nft`, ≈1 s in the
//! kernel, the rest memory). Both floors belong to the `nft` binary; writing the transaction
//! to the kernel over netlink directly would remove them.
//!
//! **Invariant:** `model` and `ruleset` know nothing about processes or namespaces; `nft` knows
//! nothing about Services.

pub mod error;
pub mod incremental;
pub mod model;
pub mod names;
pub mod nft;
pub mod ruleset;

pub use error::ProxyError;
pub use incremental::IncrementalRuleset;
pub use model::{Endpoint, Ipv4Cidr, Protocol, ProxyConfig, ProxyState, ServicePortName};
pub use nft::Nft;
pub use ruleset::Ruleset;
