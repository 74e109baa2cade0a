//! The in-memory state every reader sees: objects, revision, history and registered watchers,
//! behind one lock. Only the writer thread changes objects, revision and history, and it does so
//! only with committed batches; watchers register and unregister themselves.

use crate::backend::Persisted;
use crate::watch::WatchSlot;
use crate::{Entry, Event, StoreConfig};
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Range;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub(crate) struct Shared {
    /// A std lock: every critical section is short and synchronous (no await inside).
    state: RwLock<State>,
    pub(crate) config: StoreConfig,
}

impl Shared {
    pub(crate) fn new(state: State, config: StoreConfig) -> Shared {
        Shared {
            state: RwLock::new(state),
            config,
        }
    }

    /// Nothing panics while holding the lock in this crate; should the writer thread die anyway,
    /// its exit guard marks the state closed, so readers may go on with what is there.
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An object as kept in the map.
#[derive(Clone, Debug)]
pub(crate) struct Stored {
    pub(crate) entry: Entry,
    /// Where the resourceVersion digits are in `entry.value`, if this process encoded it; lets a
    /// delete rewrite the revision without parsing.
    pub(crate) rv_digits: Option<Range<usize>>,
}

pub(crate) struct State {
    pub(crate) objects: BTreeMap<Arc<str>, Stored>,
    /// The revision of the last committed write.
    pub(crate) revision: u64,
    /// Every event above this revision is in `history`.
    pub(crate) compacted: u64,
    /// Ascending by revision, without gaps above `compacted`.
    pub(crate) history: VecDeque<Event>,
    pub(crate) watchers: Vec<WatchSlot>,
    pub(crate) next_watcher_id: u64,
    pub(crate) closed: bool,
}

impl State {
    /// Builds the state from what a backend loaded, tolerating a log that is shorter or longer
    /// than `config.history_limit` and sharing the bytes of identical values between the log and
    /// the objects (10,000 objects with a full log would otherwise be held up to three times).
    pub(crate) fn from_persisted(persisted: Persisted, config: &StoreConfig) -> State {
        let Persisted {
            revision,
            compacted,
            objects,
            mut events,
        } = persisted;
        events.sort_by_key(|event| event.rv);
        events.retain(|event| event.rv > compacted);
        let excess = events.len().saturating_sub(config.history_limit);
        let mut compacted = compacted;
        if excess > 0 {
            compacted = events[excess - 1].rv;
            events.drain(..excess);
        }
        let highest_object = objects.iter().map(|entry| entry.rv).max().unwrap_or(0);
        let highest_event = events.last().map_or(0, |event| event.rv);
        let revision = revision
            .max(highest_object)
            .max(highest_event)
            .max(compacted);
        compacted = match events.first() {
            // The log must reach down to `compacted` without a gap, or resuming there would
            // silently skip events.
            Some(first) => compacted.max(first.rv - 1),
            None => revision,
        };

        let mut latest: HashMap<Arc<str>, Bytes> = HashMap::new();
        let mut history = VecDeque::with_capacity(events.len());
        for mut event in events {
            if let Some((key, last)) = latest.get_key_value(&event.key) {
                event.key = key.clone();
                if event.prev.as_ref() == Some(last) {
                    event.prev = Some(last.clone());
                }
            }
            latest.insert(event.key.clone(), event.value.clone());
            history.push_back(event);
        }
        let objects = objects
            .into_iter()
            .map(|mut entry| {
                if let Some((key, last)) = latest.get_key_value(&entry.key) {
                    entry.key = key.clone();
                    if *last == entry.value {
                        entry.value = last.clone();
                    }
                }
                (
                    entry.key.clone(),
                    Stored {
                        entry,
                        rv_digits: None,
                    },
                )
            })
            .collect();
        State {
            objects,
            revision,
            compacted,
            history,
            watchers: Vec::new(),
            next_watcher_id: 0,
            closed: false,
        }
    }

    /// Ends every watcher (after what they already have) and refuses new ones.
    pub(crate) fn close(&mut self) {
        self.closed = true;
        self.watchers.clear();
    }
}
