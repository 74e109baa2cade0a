//! The single writer thread and its group commit.
//!
//! Callers queue requests; the writer takes everything queued at once, decides each request in
//! order against the committed state plus the earlier requests of the batch, commits the batch's
//! events in one backend transaction, then (under the state's write lock) applies them, extends
//! the history and sends them to watchers, and finally answers every caller. While one batch is
//! being committed the next one queues up, so one fsync serves many writers.

use crate::backend::{Backend, CommitBatch};
use crate::encode::{SplitJson, rewrite_rv};
use crate::state::{Shared, State, Stored};
use crate::{Entry, Event, EventKind, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use tokio::sync::oneshot;

pub(crate) enum Op {
    Create {
        key: Arc<str>,
        json: SplitJson,
    },
    Update {
        key: Arc<str>,
        expected_rv: Option<u64>,
        json: SplitJson,
    },
    Delete {
        key: Arc<str>,
        expected_rv: Option<u64>,
    },
}

type Reply = oneshot::Sender<Result<Entry, StoreError>>;

struct Request {
    op: Op,
    reply: Reply,
}

/// The queue between callers and the writer thread.
#[derive(Default)]
pub(crate) struct Submission {
    queue: Mutex<Queue>,
    /// Wakes the writer when requests arrive or the store is closing.
    wakeup: Condvar,
}

#[derive(Default)]
struct Queue {
    pending: Vec<Request>,
    /// No new requests are accepted; the writer exits once `pending` is empty.
    closing: bool,
    writer_exited: bool,
    /// Answered when the writer has exited and released the backend.
    close_waiters: Vec<oneshot::Sender<()>>,
}

impl Submission {
    pub(crate) async fn call(&self, op: Op) -> Result<Entry, StoreError> {
        let (reply, answer) = oneshot::channel();
        {
            let mut queue = self.queue.lock().map_err(|_| StoreError::Closed)?;
            if queue.closing {
                return Err(StoreError::Closed);
            }
            queue.pending.push(Request { op, reply });
        }
        self.wakeup.notify_one();
        // The sender is dropped unanswered only if the writer died.
        answer.await.map_err(|_| StoreError::Closed)?
    }

    pub(crate) fn begin_close(&self) {
        self.lock().closing = true;
        self.wakeup.notify_one();
    }

    /// Begins closing; the receiver resolves once the writer has exited (`None`: it already has).
    pub(crate) fn close_and_wait(&self) -> Option<oneshot::Receiver<()>> {
        let mut queue = self.lock();
        queue.closing = true;
        if queue.writer_exited {
            return None;
        }
        let (done, wait) = oneshot::channel();
        queue.close_waiters.push(done);
        drop(queue);
        self.wakeup.notify_one();
        Some(wait)
    }

    pub(crate) fn mark_writer_exited(&self) {
        let (pending, waiters) = {
            let mut queue = self.lock();
            queue.closing = true;
            queue.writer_exited = true;
            (
                std::mem::take(&mut queue.pending),
                std::mem::take(&mut queue.close_waiters),
            )
        };
        // Dropping the requests answers their callers with Closed.
        drop(pending);
        for waiter in waiters {
            let _ = waiter.send(());
        }
    }

    /// Blocks until there is work; `None` when closing and drained.
    fn next_batch(&self) -> Option<Vec<Request>> {
        let mut queue = self.lock();
        loop {
            if !queue.pending.is_empty() {
                return Some(std::mem::take(&mut queue.pending));
            }
            if queue.closing {
                return None;
            }
            queue = self
                .wakeup
                .wait(queue)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // The queue is only pushed to and swapped out; it is consistent even after a panic.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub(crate) fn spawn(
    shared: Arc<Shared>,
    submission: Arc<Submission>,
    backend: Box<dyn Backend>,
) -> Result<(), StoreError> {
    std::thread::Builder::new()
        .name("store-writer".to_string())
        .spawn(move || run(shared, submission, backend))
        .map(|_| ())
        .map_err(|error| StoreError::Backend(format!("cannot start the writer thread: {error}")))
}

/// On any exit of the writer, including a panic: close the state, fail what is queued, and
/// release `Store::close` callers. Declared before the backend so the backend is dropped first.
struct ExitGuard {
    shared: Arc<Shared>,
    submission: Arc<Submission>,
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        self.shared.write().close();
        self.submission.mark_writer_exited();
    }
}

fn run(shared: Arc<Shared>, submission: Arc<Submission>, backend: Box<dyn Backend>) {
    let _exit = ExitGuard {
        shared: shared.clone(),
        submission: submission.clone(),
    };
    let mut backend = backend;
    while let Some(requests) = submission.next_batch() {
        process(&shared, backend.as_mut(), requests);
    }
    drop(backend);
}

/// One batch, decided but not yet committed.
struct Plan {
    answers: Vec<(Reply, Result<Entry, StoreError>)>,
    events: Vec<Event>,
    /// The final state of every key the batch changes (`None`: deleted).
    changes: HashMap<Arc<str>, Option<Stored>>,
    revision: u64,
    compacted: u64,
}

fn process(shared: &Shared, backend: &mut dyn Backend, requests: Vec<Request>) {
    let plan = decide(&shared.read(), requests, shared.config.history_limit);
    let Plan {
        answers,
        events,
        changes,
        revision,
        compacted,
    } = plan;
    if events.is_empty() {
        answer(answers);
        return;
    }
    if let Err(error) = backend.commit(&CommitBatch {
        events: &events,
        revision,
        compacted,
    }) {
        tracing::error!(%error, writes = events.len(), "store commit failed");
        let message = error.to_string();
        // Nothing of the batch happened, and some answers were decided against writes that
        // never became durable, so every caller gets the failure.
        for (reply, _) in answers {
            let _ = reply.send(Err(StoreError::Backend(message.clone())));
        }
        return;
    }
    {
        let mut state = shared.write();
        for (key, change) in changes {
            match change {
                Some(stored) => {
                    state.objects.insert(key, stored);
                }
                None => {
                    state.objects.remove(&key);
                }
            }
        }
        state.revision = revision;
        state.compacted = compacted;
        state.history.extend(events.iter().cloned());
        while state
            .history
            .front()
            .is_some_and(|event| event.rv <= compacted)
        {
            state.history.pop_front();
        }
        state.watchers.retain(|slot| slot.deliver(&events));
    }
    answer(answers);
}

fn answer(answers: Vec<(Reply, Result<Entry, StoreError>)>) {
    for (reply, outcome) in answers {
        // The caller may have stopped waiting; the write stands regardless.
        let _ = reply.send(outcome);
    }
}

fn decide(state: &State, requests: Vec<Request>, history_limit: usize) -> Plan {
    let mut changes: HashMap<Arc<str>, Option<Stored>> = HashMap::new();
    let mut events = Vec::new();
    let mut revision = state.revision;
    let mut answers = Vec::with_capacity(requests.len());
    for Request { op, reply } in requests {
        let current = |key: &str| match changes.get(key) {
            Some(change) => change.clone(),
            None => state.objects.get(key).cloned(),
        };
        let outcome = match op {
            Op::Create { key, json } => match current(&key) {
                Some(_) => Err(StoreError::AlreadyExists(key.to_string())),
                None => {
                    revision += 1;
                    let encoded = json.with_rv(revision);
                    let entry = Entry {
                        key: key.clone(),
                        rv: revision,
                        value: encoded.bytes,
                    };
                    events.push(Event {
                        kind: EventKind::Added,
                        key: key.clone(),
                        rv: revision,
                        value: entry.value.clone(),
                        prev: None,
                    });
                    changes.insert(
                        key,
                        Some(Stored {
                            entry: entry.clone(),
                            rv_digits: Some(encoded.rv_digits),
                        }),
                    );
                    Ok(entry)
                }
            },
            Op::Update {
                key,
                expected_rv,
                json,
            } => match current(&key) {
                None => Err(StoreError::NotFound(key.to_string())),
                Some(old) => match check_expected(&key, expected_rv, old.entry.rv) {
                    Err(conflict) => Err(conflict),
                    Ok(()) if json.equals_with_rv(&old.entry.value, old.entry.rv) => Ok(old.entry),
                    Ok(()) => {
                        revision += 1;
                        let encoded = json.with_rv(revision);
                        let entry = Entry {
                            key: key.clone(),
                            rv: revision,
                            value: encoded.bytes,
                        };
                        events.push(Event {
                            kind: EventKind::Modified,
                            key: key.clone(),
                            rv: revision,
                            value: entry.value.clone(),
                            prev: Some(old.entry.value),
                        });
                        changes.insert(
                            key,
                            Some(Stored {
                                entry: entry.clone(),
                                rv_digits: Some(encoded.rv_digits),
                            }),
                        );
                        Ok(entry)
                    }
                },
            },
            Op::Delete { key, expected_rv } => match current(&key) {
                None => Err(StoreError::NotFound(key.to_string())),
                Some(old) => match check_expected(&key, expected_rv, old.entry.rv).and_then(|()| {
                    rewrite_rv(&old.entry.value, old.rv_digits.as_ref(), revision + 1)
                }) {
                    Err(error) => Err(error),
                    Ok(last_state) => {
                        revision += 1;
                        let entry = Entry {
                            key: key.clone(),
                            rv: revision,
                            value: last_state.bytes,
                        };
                        events.push(Event {
                            kind: EventKind::Deleted,
                            key: key.clone(),
                            rv: revision,
                            value: entry.value.clone(),
                            prev: Some(old.entry.value),
                        });
                        changes.insert(key, None);
                        Ok(entry)
                    }
                },
            },
        };
        answers.push((reply, outcome));
    }
    let retained = state.history.len() + events.len();
    let excess = retained.saturating_sub(history_limit);
    let compacted = if excess == 0 {
        state.compacted
    } else if excess <= state.history.len() {
        state.history[excess - 1].rv
    } else {
        events[excess - state.history.len() - 1].rv
    };
    Plan {
        answers,
        events,
        changes,
        revision,
        compacted,
    }
}

fn check_expected(key: &str, expected_rv: Option<u64>, actual: u64) -> Result<(), StoreError> {
    match expected_rv {
        Some(expected) if expected != actual => Err(StoreError::Conflict {
            key: key.to_string(),
            expected,
            actual,
        }),
        _ => Ok(()),
    }
}
