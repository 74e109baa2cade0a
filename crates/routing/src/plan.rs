//! Comparing a predicted table with the kernel's, and the commands that converge them.
//!
//! [`diff`] compares everything (what `kubelab routes --check` reports); [`plan`] only ever
//! touches routes the agent owns ([`is_managed`]), so the lab's underlay is safe from it.

use std::collections::BTreeSet;
use std::fmt;

use crate::route::{Destination, Route, WORKLOAD_DEVICE_PREFIX, is_managed};

/// How an actual table differs from the desired one, both lists in kernel order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// Desired but not in the kernel.
    pub missing: Vec<Route>,
    /// In the kernel but not desired.
    pub unexpected: Vec<Route>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty()
    }
}

impl fmt::Display for Diff {
    /// One line per difference in kernel order: `+ <route>` for missing, `- <route>` for
    /// unexpected.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut lines: Vec<(&Route, char)> = self
            .missing
            .iter()
            .map(|route| (route, '+'))
            .chain(self.unexpected.iter().map(|route| (route, '-')))
            .collect();
        lines.sort();
        for (route, sign) in lines {
            writeln!(f, "{sign} {route}")?;
        }
        Ok(())
    }
}

/// Set comparison of two tables: order and duplicates do not matter.
pub fn diff(desired: &[Route], actual: &[Route]) -> Diff {
    let desired: BTreeSet<&Route> = desired.iter().collect();
    let actual: BTreeSet<&Route> = actual.iter().collect();
    Diff {
        missing: desired.difference(&actual).map(|r| (*r).clone()).collect(),
        unexpected: actual.difference(&desired).map(|r| (*r).clone()).collect(),
    }
}

/// `ip -batch` lines that make the kernel's managed routes equal the desired managed routes:
/// first `route del` for each managed route that is not desired, then `route replace` for each
/// desired managed route the kernel lacks, each group in kernel order. Unmanaged routes are
/// neither added nor deleted. Empty when nothing is to do.
///
/// A stale route whose key (destination and metric) a `replace` will overwrite is not deleted
/// first, so that a route moving to a new next hop never disappears for a moment. A `del`
/// names the protocol even when it is `boot`, because `ip route del` treats an unnamed one as
/// a wildcard. A `replace` through a device that does not exist yet fails, and the rest of the
/// batch with it unless run with `ip -force -batch`; ordering device creation first is the
/// caller's job.
pub fn plan(desired: &[Route], actual: &[Route]) -> Vec<String> {
    plan_with(desired, actual, |_| true)
}

/// [`plan`] as the node agent runs it: a workload's /32 on its `cali*` veth is added but never
/// deleted. The route goes with its veth when the sandbox is torn down, and the agent's view of
/// the pods may lag a sandbox being made (its pod not yet showing an address): deleting there
/// could only race the CNI side.
pub fn agent_plan(desired: &[Route], actual: &[Route]) -> Vec<String> {
    plan_with(desired, actual, |route| {
        !route
            .device
            .as_deref()
            .is_some_and(|d| d.starts_with(WORKLOAD_DEVICE_PREFIX))
    })
}

/// [`plan`], deleting only the stale managed routes `may_delete` allows.
fn plan_with(
    desired: &[Route],
    actual: &[Route],
    may_delete: impl Fn(&Route) -> bool,
) -> Vec<String> {
    let desired: BTreeSet<&Route> = desired.iter().filter(|r| is_managed(r)).collect();
    let actual: BTreeSet<&Route> = actual.iter().filter(|r| is_managed(r)).collect();
    let missing: Vec<&Route> = desired.difference(&actual).copied().collect();
    let replaced: BTreeSet<(Destination, u32)> = missing
        .iter()
        .map(|route| (route.destination, route.metric))
        .collect();
    let deletes = actual
        .difference(&desired)
        .filter(|route| !replaced.contains(&(route.destination, route.metric)))
        .filter(|route| may_delete(route))
        .map(|route| format!("route del {}", route.arguments(true)));
    let replaces = missing
        .iter()
        .map(|route| format!("route replace {}", route.arguments(false)));
    deletes.chain(replaces).collect()
}
