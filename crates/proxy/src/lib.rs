//! kube-proxy's nftables mode for kubelab.
//!
//! - [`model`]: Services + EndpointSlices → [`ProxyState`] (pure; which endpoints serve which
//!   Service port on this node).
//! - [`ruleset`]: [`ProxyState`] → [`Ruleset`] (pure; chains, verdict maps and sets named and
//!   shaped as upstream's `pkg/proxy/nftables/proxier.go`), a full replacement script, and the
//!   proportional update between two rulesets.
//! - [`incremental`]: the same ruleset and update, re-rendering only the Service ports that
//!   changed ([`IncrementalRuleset`]), for syncs at 10,000 Services.
//! - [`transaction`]: a transaction as commands, written by the diff and read by two encoders:
//!   the `nft -f` script and [`netlink`], the nf_tables netlink batch (pure).
//! - [`nft`]: the only effectful part: sends a batch on a netlink socket, or runs `nft -f -`.
//!
//! A node agent syncs with `rules.update_into(ProxyState::from_objects(…), &mut batch)` on an
//! [`IncrementalRuleset`] kept across syncs and a fresh [`netlink::BatchSink`], then
//! [`Nft::send_batch`] of `batch.finish()`; the first time and after a failed apply it sends
//! `rules.ruleset().to_netlink_batch()` (the whole table, replaced in one transaction), or
//! [`Nft::replace_table`], which falls back to `nft -f` of the same table. The `nft -f` script
//! of any transaction ([`transaction::ScriptSink`]) stays available for debugging.
//!
//! Costs at 10,000 Services × 5 endpoints (2 shared cores, load ~9; `benches/nft_apply.rs`):
//! a full load through `nft -f` is ~2 s of `nft` parsing and evaluating a 27 MB script
//! (676 MB RSS) plus ~1.5 s in the kernel; as a netlink batch it is ~0.3 s to encode 55 MB and
//! the same kernel time, which is now the floor (mostly per expression: the kernel finds each
//! expression's type by name in a list of ~50). A one-Service change through `nft -f` paid
//! ~0.4 s for nft's cache of the table's 60,000 chains; as a batch it needs no cache and costs
//! the kernel's validation of the table's jump graph at commit (~0.14 s CPU at 10,000, ~10 ms
//! at 1,000).
//!
//! **Invariant:** `model` and `ruleset` know nothing about processes or namespaces; `nft` knows
//! nothing about Services.

pub mod error;
pub mod incremental;
pub mod model;
pub mod names;
pub mod netlink;
pub mod nft;
pub mod ruleset;
pub mod transaction;

pub use error::ProxyError;
pub use incremental::IncrementalRuleset;
pub use model::{Endpoint, Ipv4Cidr, Protocol, ProxyConfig, ProxyState, ServicePortName};
pub use nft::{Applied, Nft};
pub use ruleset::{Prepared, Ruleset};
