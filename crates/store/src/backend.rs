//! The persistence boundary: what a backend must do, and the in-memory backend.
//!
//! A backend only persists. It never decides anything: revisions, compare-and-swap, history
//! retention and fan-out are the [`Store`](crate::Store)'s, so SQLite, memory and a future etcd
//! backend cannot disagree on semantics. The store calls [`Backend::load`] once at open and then
//! [`Backend::commit`] from a single writer thread, one batch at a time.

use crate::{Entry, Event, EventKind, StoreError};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Everything a backend has persisted, handed to the store at open.
#[derive(Clone, Debug, Default)]
pub struct Persisted {
    /// The highest revision ever committed (including deletions); 0 for a new store.
    pub revision: u64,
    /// Every event with a revision above this one is in `events`.
    pub compacted: u64,
    /// The current objects, in any order.
    pub objects: Vec<Entry>,
    /// The retained event log, in ascending revision order.
    pub events: Vec<Event>,
}

/// One group commit: everything in it becomes durable together or not at all.
#[derive(Debug)]
pub struct CommitBatch<'a> {
    /// The changes in revision order. `Added` and `Modified` set `key` to `value`; `Deleted`
    /// removes `key`. Each is also appended to the event log (unless already compacted, below).
    pub events: &'a [Event],
    /// The store revision after this batch (the `rv` of the last event).
    pub revision: u64,
    /// Events with `rv <= compacted` may be dropped from the log from now on.
    pub compacted: u64,
}

/// Durable storage for the [`Store`](crate::Store).
pub trait Backend: Send + 'static {
    /// Reads the whole persisted state. Called once, before any commit.
    fn load(&mut self) -> Result<Persisted, StoreError>;

    /// Applies `batch` atomically and returns only once it is durable. On error nothing of the
    /// batch may have been applied.
    fn commit(&mut self, batch: &CommitBatch<'_>) -> Result<(), StoreError>;
}

/// A backend that keeps its "persisted" state in memory. Clones share that state, so tests can
/// reopen a store over the data of a closed one, and can make commits fail on purpose.
#[derive(Clone, Debug, Default)]
pub struct MemoryBackend {
    shared: Arc<Mutex<MemoryData>>,
}

#[derive(Debug, Default)]
struct MemoryData {
    revision: u64,
    compacted: u64,
    objects: BTreeMap<Arc<str>, Entry>,
    events: VecDeque<Event>,
    /// The next commits to reject, for testing the store's handling of backend failures.
    failures_to_inject: usize,
}

impl MemoryBackend {
    pub fn new() -> MemoryBackend {
        MemoryBackend::default()
    }

    /// Makes the next `count` commits fail with [`StoreError::Backend`] without applying anything.
    pub fn fail_next_commits(&self, count: usize) {
        self.lock().failures_to_inject = count;
    }

    /// A copy of what has been committed so far.
    pub fn persisted(&self) -> Persisted {
        let data = self.lock();
        Persisted {
            revision: data.revision,
            compacted: data.compacted,
            objects: data.objects.values().cloned().collect(),
            events: data.events.iter().cloned().collect(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, MemoryData> {
        // Nothing panics while holding this lock, and the data stays consistent if it did.
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Backend for MemoryBackend {
    fn load(&mut self) -> Result<Persisted, StoreError> {
        Ok(self.persisted())
    }

    fn commit(&mut self, batch: &CommitBatch<'_>) -> Result<(), StoreError> {
        let mut data = self.lock();
        if data.failures_to_inject > 0 {
            data.failures_to_inject -= 1;
            return Err(StoreError::Backend("injected commit failure".to_string()));
        }
        for event in batch.events {
            if event.kind == EventKind::Deleted {
                data.objects.remove(&event.key);
            } else {
                let entry = Entry {
                    key: event.key.clone(),
                    rv: event.rv,
                    value: event.value.clone(),
                };
                data.objects.insert(event.key.clone(), entry);
            }
            if event.rv > batch.compacted {
                data.events.push_back(event.clone());
            }
        }
        while data
            .events
            .front()
            .is_some_and(|event| event.rv <= batch.compacted)
        {
            data.events.pop_front();
        }
        data.revision = batch.revision;
        data.compacted = batch.compacted;
        Ok(())
    }
}
