//! The versioned object store behind the API server (the kine/etcd role): every object under a
//! string key, a cluster-wide monotonically increasing revision, compare-and-swap writes, ordered
//! watches that resume from a revision, and durable persistence through a [`Backend`].
//!
//! # What it owns
//! - The current objects, as JSON bytes in a key-sorted in-memory map that serves `get` and `list`.
//! - The revision counter: every successful create, update or delete takes the next revision,
//!   which is written into the object as `metadata.resourceVersion` (a decimal string).
//! - The recent history (the last [`StoreConfig::history_limit`] events) from which watches replay,
//!   and the fan-out of new events to watchers.
//! - Group commit: one writer thread takes every queued write, decides each in order against the
//!   current state plus the earlier writes of the same batch, commits the batch in one backend
//!   transaction, then publishes it.
//!
//! # Invariants
//! - **Visible only when durable.** A write is applied to the map, the history and the watchers
//!   only after [`Backend::commit`] returned; callers are answered after that too, including
//!   callers whose write failed, so no answer depends on a write that might still be lost.
//! - **One order.** Revisions are strictly increasing and never reused, also across restarts; the
//!   map, `list`'s revision, the history and every watcher see the writes in that order, and a
//!   watcher gets each matching event exactly once (replay and live are split under the lock the
//!   writer publishes under).
//! - Writers are never slowed by watchers: a watcher that falls [`StoreConfig::watch_buffer`]
//!   events behind is dropped (its `next()` ends), as the upstream watch cache does.
//!
//! # What it must not know
//! HTTP, Kubernetes kinds, schemas or selectors. The only field it touches is
//! `metadata.resourceVersion`; keys are opaque strings matched by plain prefix.
//!
//! A write whose future is dropped after submission still happens (as with etcd); its outcome is
//! simply not reported.

mod backend;
mod encode;
mod sqlite;
mod state;
mod watch;
mod writer;

#[cfg(test)]
mod tests;

pub use backend::{Backend, CommitBatch, MemoryBackend, Persisted};
pub use sqlite::SqliteBackend;
pub use watch::Watcher;

use bytes::Bytes;
use encode::SplitJson;
use serde_json::Value;
use state::Shared;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use writer::{Op, Submission};

/// One stored object: its key, the revision of its last write, and its JSON with
/// `metadata.resourceVersion` equal to that revision.
#[derive(Clone, Debug)]
pub struct Entry {
    pub key: Arc<str>,
    pub rv: u64,
    pub value: Bytes,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Added,
    Modified,
    Deleted,
}

/// One change, delivered to watchers in revision order.
#[derive(Clone, Debug)]
pub struct Event {
    pub kind: EventKind,
    pub key: Arc<str>,
    pub rv: u64,
    /// The object after the change; for `Deleted`, the last state with the deletion's revision.
    pub value: Bytes,
    /// The object before the change (`None` for `Added`).
    pub prev: Option<Bytes>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key {0} already exists")]
    AlreadyExists(String),
    #[error("key {0} not found")]
    NotFound(String),
    #[error("conflict on {key}: expected revision {expected}, found {actual}")]
    Conflict {
        key: String,
        expected: u64,
        actual: u64,
    },
    #[error("revision {requested} is older than the oldest kept revision {oldest}")]
    TooOld { requested: u64, oldest: u64 },
    #[error("invalid object: {0}")]
    InvalidObject(String),
    #[error("storage backend: {0}")]
    Backend(String),
    #[error("store is closed")]
    Closed,
}

/// Tuning of a [`Store`]; the defaults suit a lab cluster.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// How many recent events are kept (in memory and in the backend's log) for watches that
    /// resume from a past revision. Older resume points get [`StoreError::TooOld`], and the
    /// client re-lists, as with a compacted etcd.
    pub history_limit: usize,
    /// How many undelivered events a watcher may have before it is dropped.
    pub watch_buffer: usize,
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig {
            history_limit: 20_000,
            watch_buffer: 10_000,
        }
    }
}

/// A handle to the store; clones share it. The writer thread stops when the last handle is
/// dropped or [`Store::close`] is called.
#[derive(Clone)]
pub struct Store {
    handle: Arc<Handle>,
}

struct Handle {
    shared: Arc<Shared>,
    submission: Arc<Submission>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        // Queued writes are still committed; the writer then exits and closes the backend.
        self.submission.begin_close();
    }
}

impl Store {
    /// A store whose backend keeps nothing beyond the process, for tests.
    pub fn in_memory() -> Store {
        let config = StoreConfig::default();
        match Store::open(MemoryBackend::new(), config.clone()) {
            Ok(store) => store,
            Err(error) => {
                // Only spawning the writer thread can fail here; every call then reports Closed.
                tracing::error!(%error, "cannot start the in-memory store");
                Store::closed(config)
            }
        }
    }

    /// Opens (creating if needed) the SQLite database at `path` with the default config.
    pub fn open_sqlite(path: &Path) -> Result<Store, StoreError> {
        Store::open(SqliteBackend::open(path)?, StoreConfig::default())
    }

    /// Loads everything from `backend` and starts the writer thread.
    pub fn open(mut backend: impl Backend, config: StoreConfig) -> Result<Store, StoreError> {
        let persisted = backend.load()?;
        let shared = Arc::new(Shared::new(
            state::State::from_persisted(persisted, &config),
            config,
        ));
        let submission = Arc::new(Submission::default());
        writer::spawn(shared.clone(), submission.clone(), Box::new(backend))?;
        Ok(Store {
            handle: Arc::new(Handle { shared, submission }),
        })
    }

    fn closed(config: StoreConfig) -> Store {
        let shared = Arc::new(Shared::new(
            state::State::from_persisted(Persisted::default(), &config),
            config,
        ));
        shared.write().close();
        let submission = Arc::new(Submission::default());
        submission.mark_writer_exited();
        Store {
            handle: Arc::new(Handle { shared, submission }),
        }
    }

    /// Stops accepting writes, lets the writes already queued commit, ends every watcher and
    /// releases the backend (for SQLite: the database file and its lock). Returns when done.
    pub async fn close(&self) {
        if let Some(done) = self.handle.submission.close_and_wait() {
            // An error only means the writer is gone already, which is what we wait for.
            let _ = done.await;
        }
    }

    /// The revision of the last durable write.
    pub fn revision(&self) -> u64 {
        self.handle.shared.read().revision
    }

    /// The lowest revision a watch may start after: every later event is still retained.
    pub fn oldest_revision(&self) -> u64 {
        self.handle.shared.read().compacted
    }

    pub fn get(&self, key: &str) -> Option<Entry> {
        self.handle
            .shared
            .read()
            .objects
            .get(key)
            .map(|stored| stored.entry.clone())
    }

    /// Every entry whose key starts with `prefix`, sorted by key, and the revision at which this
    /// snapshot is consistent.
    pub fn list(&self, prefix: &str) -> (u64, Vec<Entry>) {
        let state = self.handle.shared.read();
        let entries = state
            .objects
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(_, stored)| stored.entry.clone())
            .collect();
        (state.revision, entries)
    }

    /// The entries under `prefix` as they were at revision `rv`, for paging a list at one
    /// consistent revision: the current objects with the retained history after `rv` undone.
    /// [`StoreError::TooOld`] when that history has been compacted away.
    pub fn list_at(&self, prefix: &str, rv: u64) -> Result<Vec<Entry>, StoreError> {
        let state = self.handle.shared.read();
        if rv >= state.revision {
            drop(state);
            return Ok(self.list(prefix).1);
        }
        if rv < state.compacted {
            return Err(StoreError::TooOld {
                requested: rv,
                oldest: state.compacted,
            });
        }
        let mut snapshot: BTreeMap<Arc<str>, Entry> = state
            .objects
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, stored)| (key.clone(), stored.entry.clone()))
            .collect();
        for event in state.history.iter().rev().take_while(|e| e.rv > rv) {
            if !event.key.starts_with(prefix) {
                continue;
            }
            match &event.prev {
                None => {
                    snapshot.remove(&event.key);
                }
                Some(prev) => {
                    let prev_rv = encode::resource_version_of(prev).unwrap_or(0);
                    snapshot.insert(
                        event.key.clone(),
                        Entry {
                            key: event.key.clone(),
                            rv: prev_rv,
                            value: prev.clone(),
                        },
                    );
                }
            }
        }
        Ok(snapshot.into_values().collect())
    }

    /// Stores a new object (a JSON object) at `key` with the next revision as its
    /// resourceVersion; [`StoreError::AlreadyExists`] if the key is taken. Resolves once durable.
    pub async fn create(&self, key: &str, value: Value) -> Result<Entry, StoreError> {
        let json = SplitJson::new(&value)?;
        self.handle
            .submission
            .call(Op::Create {
                key: Arc::from(key),
                json,
            })
            .await
    }

    /// Replaces the object at `key`, if its revision is `expected_rv` (when given). An object that
    /// equals the stored one apart from its resourceVersion is not written: the stored entry is
    /// returned and no revision or event is spent, as upstream GuaranteedUpdate does.
    pub async fn update(
        &self,
        key: &str,
        expected_rv: Option<u64>,
        value: Value,
    ) -> Result<Entry, StoreError> {
        let json = SplitJson::new(&value)?;
        self.handle
            .submission
            .call(Op::Update {
                key: Arc::from(key),
                expected_rv,
                json,
            })
            .await
    }

    /// Removes the object at `key`, if its revision is `expected_rv` (when given), and returns its
    /// last state carrying the deletion's revision (as the `Deleted` event does).
    pub async fn delete(&self, key: &str, expected_rv: Option<u64>) -> Result<Entry, StoreError> {
        self.handle
            .submission
            .call(Op::Delete {
                key: Arc::from(key),
                expected_rv,
            })
            .await
    }

    /// Every event with a revision above `after_rv` (`None`: from now) whose key starts with
    /// `prefix`, in revision order: first the retained history, then live.
    pub fn watch(&self, prefix: &str, after_rv: Option<u64>) -> Result<Watcher, StoreError> {
        Watcher::register(&self.handle.shared, prefix, after_rv)
    }
}
