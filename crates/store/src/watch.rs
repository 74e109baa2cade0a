//! Watchers: a replay of retained history followed by live events, without gap or duplicate.
//!
//! Registration takes the replay and subscribes under the state's write lock, and the writer
//! publishes a batch (advancing the revision and sending to every slot) under the same lock, so
//! each event is either in the replay or sent live, never both and never neither. Each watcher has
//! a bounded channel; the writer never waits on it, and drops a watcher whose channel is full.

use crate::state::Shared;
use crate::{Event, StoreError};
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

/// The writer's side of one watcher.
pub(crate) struct WatchSlot {
    id: u64,
    prefix: Arc<str>,
    live: mpsc::Sender<Event>,
}

impl WatchSlot {
    /// Sends the matching events of a committed batch; false means the slot must be dropped
    /// (the watcher is gone, or too far behind).
    pub(crate) fn deliver(&self, events: &[Event]) -> bool {
        for event in events
            .iter()
            .filter(|event| event.key.starts_with(&*self.prefix))
        {
            match self.live.try_send(event.clone()) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    tracing::warn!(prefix = %self.prefix, rv = event.rv, "dropping a watcher that fell too far behind");
                    return false;
                }
                Err(TrySendError::Closed(_)) => return false,
            }
        }
        true
    }
}

/// An ordered stream of events for one key prefix; see [`Store::watch`](crate::Store::watch).
pub struct Watcher {
    shared: Arc<Shared>,
    id: u64,
    /// Live events at or below this revision are skipped (a watch may start after a revision
    /// that has not been written yet).
    after: u64,
    replay: VecDeque<Event>,
    live: mpsc::Receiver<Event>,
}

impl Watcher {
    pub(crate) fn register(
        shared: &Arc<Shared>,
        prefix: &str,
        after_rv: Option<u64>,
    ) -> Result<Watcher, StoreError> {
        let mut state = shared.write();
        if state.closed {
            return Err(StoreError::Closed);
        }
        let after = after_rv.unwrap_or(state.revision);
        if after < state.compacted {
            return Err(StoreError::TooOld {
                requested: after,
                oldest: state.compacted,
            });
        }
        let start = state.history.partition_point(|event| event.rv <= after);
        let replay = state
            .history
            .range(start..)
            .filter(|event| event.key.starts_with(prefix))
            .cloned()
            .collect();
        let (sender, live) = mpsc::channel(shared.config.watch_buffer.max(1));
        let id = state.next_watcher_id;
        state.next_watcher_id += 1;
        state.watchers.push(WatchSlot {
            id,
            prefix: Arc::from(prefix),
            live: sender,
        });
        Ok(Watcher {
            shared: shared.clone(),
            id,
            after,
            replay,
            live,
        })
    }

    /// The next event in revision order; `None` once the store is closed or this watcher fell
    /// too far behind and was dropped (the caller then re-lists, like a client after a 410).
    pub async fn next(&mut self) -> Option<Event> {
        if let Some(event) = self.replay.pop_front() {
            return Some(event);
        }
        loop {
            let event = self.live.recv().await?;
            if event.rv > self.after {
                return Some(event);
            }
        }
    }

    /// The store revision, if every matching event up to it has already been returned by
    /// [`Watcher::next`], so a client may safely resume from it; `None` while events are pending
    /// or once this watcher has ended.
    pub fn bookmark(&mut self) -> Option<u64> {
        // The writer advances the revision and sends to this watcher under the write lock, so
        // under the read lock "nothing pending" and "the revision" describe the same moment.
        let state = self.shared.read();
        if state.closed || !self.replay.is_empty() || !self.live.is_empty() || self.live.is_closed()
        {
            return None;
        }
        Some(state.revision.max(self.after))
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let id = self.id;
        self.shared.write().watchers.retain(|slot| slot.id != id);
    }
}
