//! kubelab's dataplane: the thin effectful shell that carries out network decisions inside Linux
//! network namespaces.
//!
//! What to program (which routes, which addresses) is decided by pure crates elsewhere; this crate
//! only executes. It owns the mechanics: named network namespaces and persistent UTS namespaces
//! ([`netns`]), a pod's private mounts ([`mounts`]), iproute2 batches and JSON reads ([`ip`]), per-namespace sysctls ([`sysctl`]),
//! Calico CNI's pod wiring ([`sandbox`]) and a userspace IPIP tunnel for kernels without the
//! `ipip` module ([`ipip`]).
//!
//! **Invariant:** nothing here touches the caller's own network namespace unless asked to
//! explicitly ([`ipip::IpipTunnel::open`] works in the current thread's namespace by design);
//! every other operation names the namespace it acts in.
//!
//! Namespace switching happens only on dedicated short-lived threads ([`netns::in_netns`]) or in
//! child processes ([`netns::NsFds::apply_to`], `ip -n`), so every function is safe to call from a
//! multi-threaded tokio process.

mod error;
pub mod ip;
pub mod ipip;
pub mod mounts;
pub mod netns;
pub mod sandbox;
mod sys;
pub mod sysctl;

pub use error::{DataplaneError, Result};
