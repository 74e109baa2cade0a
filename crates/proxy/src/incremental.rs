//! Incremental rendering: a one-Service change at 10,000 Services costs what one Service costs.
//!
//! [`Ruleset::render`] re-renders every Service port (hashing and formatting ~60,000 chain
//! names at 10,000 Services × 5 endpoints), and [`Ruleset::update_script`] then compares
//! every chain: ~0.2 s per sync together. [`IncrementalRuleset`] keeps what each Service port
//! contributed (its *fragment*: its chains, its map and set elements), re-renders only the
//! ports whose [`ServicePortState`] changed, and diffs only what those fragments touch.
//!
//! **Invariant** (property-tested against the reference): after every
//! [`IncrementalRuleset::update`], [`IncrementalRuleset::ruleset`] equals
//! `Ruleset::render(state)`, and the returned script equals
//! `Ruleset::update_script(&Ruleset::render(previous), &Ruleset::render(state))`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::model::{ProxyState, ServicePortName, ServicePortState};
use crate::ruleset::Ruleset;
use crate::transaction::{ScriptSink, Sink};

/// The table as last rendered, with what each Service port put into it.
#[derive(Debug, Clone, Default)]
pub struct IncrementalRuleset {
    /// `None` until the first [`IncrementalRuleset::update`].
    state: Option<ProxyState>,
    ruleset: Ruleset,
    fragments: HashMap<ServicePortName, Ruleset>,
    /// Which Service ports put `key` into map `name`. Two ports can claim the same key only
    /// with invalid input (two Services on one ClusterIP, a NodePort used twice); then the
    /// full render lets the last port in name order win, and so does this.
    map_owners: HashMap<(String, String), BTreeSet<ServicePortName>>,
    /// How many Service ports put each element into each set (a ClusterIP with two ports
    /// is one `cluster-ips` element, which stays until both ports are gone).
    set_owners: HashMap<(String, String), usize>,
}

impl IncrementalRuleset {
    /// Nothing rendered yet; the first update renders everything.
    pub fn new() -> IncrementalRuleset {
        IncrementalRuleset::default()
    }

    /// The ruleset for the last state given to [`IncrementalRuleset::update`] (empty before).
    pub fn ruleset(&self) -> &Ruleset {
        &self.ruleset
    }

    /// Moves to `state` and returns the `nft -f` transaction from the previous ruleset to the
    /// new one (as [`Ruleset::update_script`]), `None` when nothing changed. The first call,
    /// and any change of [`crate::ProxyConfig`], renders everything.
    pub fn update(&mut self, state: ProxyState) -> Option<String> {
        let mut sink = ScriptSink::default();
        self.update_into(state, &mut sink).then_some(sink.script)
    }

    /// Moves to `state` and writes the transaction from the previous ruleset to the new one
    /// into `sink` (as [`Ruleset::write_update`]); `false` when nothing changed.
    pub fn update_into(&mut self, state: ProxyState, sink: &mut impl Sink) -> bool {
        let Some(previous) = self.state.take() else {
            self.rebuild(state);
            return Ruleset::write_update(&Ruleset::default(), &self.ruleset, sink);
        };
        if previous.config != state.config {
            let old = std::mem::take(&mut self.ruleset);
            self.rebuild(state);
            return Ruleset::write_update(&old, &self.ruleset, sink);
        }

        let changed = changed_ports(&previous.service_ports, &state.service_ports);
        // Old and new renderings of only what the changed ports touch, plus every map and set
        // (empty unless touched) so that the diff neither declares nor deletes them.
        let mut old_part = self.skeleton();
        let mut new_part = self.skeleton();
        let new_fragments: Vec<(ServicePortName, Option<Ruleset>)> = changed
            .into_iter()
            .map(|name| {
                let fragment = state
                    .service_ports
                    .get(&name)
                    .map(|port| render_fragment(&state, &name, port));
                (name, fragment)
            })
            .collect();

        // 1. Record the current value of everything a changed port touches, before or after.
        let mut touched_map_keys: BTreeSet<(String, String)> = BTreeSet::new();
        let mut touched_set_elements: BTreeSet<(String, String)> = BTreeSet::new();
        for (name, new_fragment) in &new_fragments {
            for fragment in [self.fragments.get(name), new_fragment.as_ref()]
                .into_iter()
                .flatten()
            {
                for chain in fragment.chains.keys() {
                    if let Some(rules) = self.ruleset.chains.get(chain) {
                        old_part.chains.insert(chain.clone(), rules.clone());
                    }
                }
                touched_map_keys.extend(map_keys(fragment));
                touched_set_elements.extend(set_elements(fragment));
            }
        }
        for (map, key) in &touched_map_keys {
            if let Some(value) = self.ruleset.maps.get(map).and_then(|m| m.get(key)) {
                old_part
                    .maps
                    .entry(map.clone())
                    .or_default()
                    .insert(key.clone(), value.clone());
            }
        }
        for (set, element) in &touched_set_elements {
            if self
                .ruleset
                .sets
                .get(set)
                .is_some_and(|s| s.contains(element))
            {
                old_part
                    .sets
                    .entry(set.clone())
                    .or_default()
                    .insert(element.clone());
            }
        }

        // 2. Swap the fragments and their ownership.
        for (name, new_fragment) in new_fragments {
            if let Some(old_fragment) = self.fragments.remove(&name) {
                for chain in old_fragment.chains.keys() {
                    self.ruleset.chains.remove(chain);
                }
                self.disown(&name, &old_fragment);
            }
            if let Some(fragment) = new_fragment {
                for (chain, rules) in &fragment.chains {
                    self.ruleset.chains.insert(chain.clone(), rules.clone());
                    new_part.chains.insert(chain.clone(), rules.clone());
                }
                self.own(&name, &fragment);
                self.fragments.insert(name, fragment);
            }
        }

        // 3. Settle every touched element from its remaining owners.
        for (map, key) in touched_map_keys {
            let value = self
                .map_owners
                .get(&(map.clone(), key.clone()))
                .and_then(|owners| owners.last())
                .and_then(|owner| self.fragments.get(owner))
                .and_then(|fragment| fragment.maps.get(&map))
                .and_then(|elements| elements.get(&key))
                .cloned();
            let merged = self.ruleset.maps.entry(map.clone()).or_default();
            match value {
                Some(value) => {
                    merged.insert(key.clone(), value.clone());
                    new_part.maps.entry(map).or_default().insert(key, value);
                }
                None => {
                    merged.remove(&key);
                }
            }
        }
        for (set, element) in touched_set_elements {
            let present = self
                .set_owners
                .get(&(set.clone(), element.clone()))
                .is_some_and(|count| *count > 0);
            let merged = self.ruleset.sets.entry(set.clone()).or_default();
            if present {
                merged.insert(element.clone());
                new_part.sets.entry(set).or_default().insert(element);
            } else {
                merged.remove(&element);
            }
        }
        self.state = Some(state);
        Ruleset::write_update(&old_part, &new_part, sink)
    }

    /// Renders `state` from scratch.
    fn rebuild(&mut self, state: ProxyState) {
        *self = IncrementalRuleset::default();
        let mut ruleset = Ruleset::default();
        ruleset.render_fixed(&state);
        for (name, port) in &state.service_ports {
            let fragment = render_fragment(&state, name, port);
            ruleset.merge(&fragment);
            self.own(name, &fragment);
            self.fragments.insert(name.clone(), fragment);
        }
        self.ruleset = ruleset;
        self.state = Some(state);
    }

    /// Every map and set of the current table, empty.
    fn skeleton(&self) -> Ruleset {
        Ruleset {
            chains: BTreeMap::new(),
            maps: self
                .ruleset
                .maps
                .keys()
                .map(|name| (name.clone(), BTreeMap::new()))
                .collect(),
            sets: self
                .ruleset
                .sets
                .keys()
                .map(|name| (name.clone(), BTreeSet::new()))
                .collect(),
        }
    }

    fn own(&mut self, name: &ServicePortName, fragment: &Ruleset) {
        for key in map_keys(fragment) {
            self.map_owners.entry(key).or_default().insert(name.clone());
        }
        for element in set_elements(fragment) {
            *self.set_owners.entry(element).or_default() += 1;
        }
    }

    fn disown(&mut self, name: &ServicePortName, fragment: &Ruleset) {
        for key in map_keys(fragment) {
            if let Some(owners) = self.map_owners.get_mut(&key) {
                owners.remove(name);
                if owners.is_empty() {
                    self.map_owners.remove(&key);
                }
            }
        }
        for element in set_elements(fragment) {
            if let Some(count) = self.set_owners.get_mut(&element) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.set_owners.remove(&element);
                }
            }
        }
    }
}

/// Ports added, removed or changed between two states, in name order.
fn changed_ports(
    old: &BTreeMap<ServicePortName, ServicePortState>,
    new: &BTreeMap<ServicePortName, ServicePortState>,
) -> Vec<ServicePortName> {
    let removed_or_changed = old
        .iter()
        .filter(|(name, port)| new.get(*name) != Some(*port))
        .map(|(name, _)| name.clone());
    let added = new.keys().filter(|name| !old.contains_key(*name)).cloned();
    let all: BTreeSet<ServicePortName> = removed_or_changed.chain(added).collect();
    all.into_iter().collect()
}

/// What one Service port adds to the table on top of the fixed part.
fn render_fragment(state: &ProxyState, name: &ServicePortName, port: &ServicePortState) -> Ruleset {
    let mut fragment = Ruleset::default();
    fragment.render_service_port(state, name, port);
    fragment
}

fn map_keys(fragment: &Ruleset) -> impl Iterator<Item = (String, String)> + '_ {
    fragment
        .maps
        .iter()
        .flat_map(|(map, elements)| elements.keys().map(move |key| (map.clone(), key.clone())))
}

fn set_elements(fragment: &Ruleset) -> impl Iterator<Item = (String, String)> + '_ {
    fragment.sets.iter().flat_map(|(set, elements)| {
        elements
            .iter()
            .map(move |element| (set.clone(), element.clone()))
    })
}
