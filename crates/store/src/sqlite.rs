//! The SQLite backend: the revision and a log of object versions in one database file, written
//! in WAL mode with `synchronous=FULL` so that a commit is on disk when it returns.
//!
//! # Layout
//! Like kine, one table of versions, one row per write, so a write costs one blob (not separate
//! copies for the current object, the event and its previous state). A row is kept while it is:
//! - a retained event (`rv > compacted`), or
//! - the previous version of a retained event (its `prev`, found through `prev_rv`), or
//! - the latest version of a live key (the current object).
//!
//! When an event falls out of the history, its predecessor row is deleted, and so is the event's
//! own row if it was a deletion. Loading reads all rows in revision order and rebuilds the
//! objects, the events and their `prev` values, which share bytes with the rows they come from.
//!
//! Checkpointing (copying the WAL back into the database) is done by a second connection on a
//! background thread, never inside a commit, so that it does not stall the writes that happen to
//! cross the auto-checkpoint threshold. A `<path>.lock` file, locked for the backend's lifetime,
//! keeps two stores from writing one database with separate revision counters.

use crate::backend::{Backend, CommitBatch, Persisted};
use crate::{Entry, Event, EventKind, StoreError};
use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS versions (
    rv INTEGER PRIMARY KEY NOT NULL,
    kind INTEGER NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    -- The row holding the version this one replaced; NULL for a creation.
    prev_rv INTEGER
);
CREATE TABLE IF NOT EXISTS meta (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    -- The highest revision ever committed, kept separately because deletions leave no object.
    revision INTEGER NOT NULL,
    -- Every event above this revision is retained.
    compacted INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (id, revision, compacted) VALUES (0, 0, 0);
";

/// How often the background connection copies the WAL into the database.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(200);

/// A WAL larger than this (in 4 KiB pages, about 256 MiB) is checkpointed with RESTART, which
/// briefly waits for the writer, so that sustained load cannot grow it without bound.
const WAL_PAGES_FORCING_RESTART: i64 = 65_536;

pub struct SqliteBackend {
    connection: Connection,
    /// The row of the current version of every live key, for the next write's `prev_rv`.
    live_rows: HashMap<Arc<str>, u64>,
    /// The compaction point as last committed; rows between it and a batch's are cleaned up.
    compacted: u64,
    checkpointer: Option<Checkpointer>,
    /// Held (and locked) until the backend is dropped, after the connections are closed.
    _lock: File,
}

struct Checkpointer {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl SqliteBackend {
    /// Opens or creates the database at `path`. Fails if another store has it open.
    pub fn open(path: &Path) -> Result<SqliteBackend, StoreError> {
        let lock_path = lock_path(path);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|error| {
                StoreError::Backend(format!("opening {}: {error}", lock_path.display()))
            })?;
        lock.try_lock().map_err(|error| {
            StoreError::Backend(format!(
                "{} is in use by another store: {error}",
                path.display()
            ))
        })?;

        let connection = Connection::open(path).map_err(sql)?;
        let mode: String = connection
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(sql)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!(
                "cannot use WAL mode (got {mode})"
            )));
        }
        connection
            .pragma_update(None, "synchronous", "FULL")
            .map_err(sql)?;
        connection
            .pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(sql)?;
        connection
            .pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)
            .map_err(sql)?;
        connection
            .busy_timeout(Duration::from_secs(5))
            .map_err(sql)?;

        let version: i64 = connection
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(sql)?;
        if version != 0 && version != SCHEMA_VERSION {
            return Err(StoreError::Backend(format!(
                "{} has schema version {version}; this program reads version {SCHEMA_VERSION}",
                path.display()
            )));
        }
        connection.execute_batch(SCHEMA).map_err(sql)?;
        connection
            .pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(sql)?;

        let checkpointer = Checkpointer::start(path)?;
        Ok(SqliteBackend {
            connection,
            live_rows: HashMap::new(),
            compacted: 0,
            checkpointer: Some(checkpointer),
            _lock: lock,
        })
    }
}

impl Drop for SqliteBackend {
    fn drop(&mut self) {
        if let Some(checkpointer) = self.checkpointer.take() {
            drop(checkpointer.stop);
            if checkpointer.thread.join().is_err() {
                tracing::error!("the SQLite checkpoint thread panicked");
            }
        }
    }
}

impl Checkpointer {
    fn start(path: &Path) -> Result<Checkpointer, StoreError> {
        let connection = Connection::open(path).map_err(sql)?;
        connection
            .busy_timeout(Duration::from_secs(5))
            .map_err(sql)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("store-checkpoint".to_string())
            .spawn(move || {
                // Disconnection (the backend dropped its sender) is the stop signal.
                while let Err(mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(CHECKPOINT_INTERVAL)
                {
                    if let Err(error) = checkpoint(&connection) {
                        tracing::warn!(%error, "SQLite checkpoint failed; will retry");
                    }
                }
            })
            .map_err(|error| {
                StoreError::Backend(format!("cannot start the checkpoint thread: {error}"))
            })?;
        Ok(Checkpointer { stop, thread })
    }
}

fn checkpoint(connection: &Connection) -> rusqlite::Result<()> {
    let wal_pages: i64 =
        connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1))?;
    if wal_pages > WAL_PAGES_FORCING_RESTART {
        connection.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))?;
    }
    Ok(())
}

impl Backend for SqliteBackend {
    fn load(&mut self) -> Result<Persisted, StoreError> {
        let transaction = self.connection.transaction().map_err(sql)?;
        let (revision, compacted): (i64, i64) = transaction
            .query_row(
                "SELECT revision, compacted FROM meta WHERE id = 0",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(sql)?
            .unwrap_or((0, 0));
        let (revision, compacted) = (revision_of(revision)?, revision_of(compacted)?);

        /// The newest row seen so far for a key.
        struct Latest {
            rv: u64,
            kind: EventKind,
            value: Bytes,
        }
        let mut latest: HashMap<Arc<str>, Latest> = HashMap::new();
        let mut events = Vec::new();
        let mut statement = transaction
            .prepare("SELECT rv, kind, key, value, prev_rv FROM versions ORDER BY rv")
            .map_err(sql)?;
        let mut rows = statement.query([]).map_err(sql)?;
        while let Some(row) = rows.next().map_err(sql)? {
            let rv = revision_of(row.get(0).map_err(sql)?)?;
            let kind = kind_from_code(row.get(1).map_err(sql)?)?;
            let key = row.get_ref(2).map_err(sql)?.as_str().map_err(from_sql)?;
            let value =
                Bytes::copy_from_slice(row.get_ref(3).map_err(sql)?.as_blob().map_err(from_sql)?);
            let prev_rv: Option<i64> = row.get(4).map_err(sql)?;
            let (key, before) = match latest.remove_entry(key) {
                Some((key, before)) => (key, Some(before)),
                None => (Arc::from(key), None),
            };
            if rv > compacted {
                let prev = match (kind, before) {
                    (EventKind::Added, _) => None,
                    (_, Some(before))
                        if prev_rv.and_then(|prev| u64::try_from(prev).ok()) == Some(before.rv) =>
                    {
                        Some(before.value)
                    }
                    _ => {
                        return Err(StoreError::Backend(format!(
                            "the previous version of {key} at revision {rv} is missing from the log"
                        )));
                    }
                };
                events.push(Event {
                    kind,
                    key: key.clone(),
                    rv,
                    value: value.clone(),
                    prev,
                });
            }
            latest.insert(key, Latest { rv, kind, value });
        }
        drop(rows);
        drop(statement);
        transaction.commit().map_err(sql)?;

        let mut objects = Vec::new();
        self.live_rows.clear();
        for (key, version) in latest {
            if version.kind != EventKind::Deleted {
                self.live_rows.insert(key.clone(), version.rv);
                objects.push(Entry {
                    key,
                    rv: version.rv,
                    value: version.value,
                });
            }
        }
        self.compacted = compacted;
        Ok(Persisted {
            revision,
            compacted,
            objects,
            events,
        })
    }

    fn commit(&mut self, batch: &CommitBatch<'_>) -> Result<(), StoreError> {
        // Applied to `live_rows` only once the transaction has committed.
        let mut live_changes: HashMap<Arc<str>, Option<u64>> = HashMap::new();
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        {
            let mut append = transaction
                .prepare_cached(
                    "INSERT INTO versions (rv, kind, key, value, prev_rv) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(sql)?;
            for event in batch.events {
                let prev_rv = match event.kind {
                    EventKind::Added => None,
                    EventKind::Modified | EventKind::Deleted => {
                        match live_changes.get(&event.key) {
                            Some(change) => *change,
                            None => self.live_rows.get(&event.key).copied(),
                        }
                    }
                };
                let prev_rv = prev_rv.map(sql_int).transpose()?;
                let key: &str = &event.key;
                append
                    .execute(params![
                        sql_int(event.rv)?,
                        kind_code(event.kind),
                        key,
                        event.value.as_ref(),
                        prev_rv
                    ])
                    .map_err(sql)?;
                let live = (event.kind != EventKind::Deleted).then_some(event.rv);
                live_changes.insert(event.key.clone(), live);
            }
            if batch.compacted > self.compacted {
                let range = [sql_int(self.compacted)?, sql_int(batch.compacted)?];
                transaction
                    .prepare_cached(
                        "DELETE FROM versions WHERE rv IN (SELECT prev_rv FROM versions
                         WHERE rv > ?1 AND rv <= ?2 AND prev_rv IS NOT NULL)",
                    )
                    .map_err(sql)?
                    .execute(range)
                    .map_err(sql)?;
                transaction
                    .prepare_cached("DELETE FROM versions WHERE rv > ?1 AND rv <= ?2 AND kind = 3")
                    .map_err(sql)?
                    .execute(range)
                    .map_err(sql)?;
            }
            transaction
                .prepare_cached("UPDATE meta SET revision = ?1, compacted = ?2 WHERE id = 0")
                .map_err(sql)?
                .execute([
                    sql_int(batch.revision)?,
                    sql_int(batch.compacted.max(self.compacted))?,
                ])
                .map_err(sql)?;
        }
        transaction.commit().map_err(sql)?;
        for (key, live) in live_changes {
            match live {
                Some(rv) => self.live_rows.insert(key, rv),
                None => self.live_rows.remove(&key),
            };
        }
        self.compacted = self.compacted.max(batch.compacted);
        Ok(())
    }
}

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

fn kind_code(kind: EventKind) -> i64 {
    match kind {
        EventKind::Added => 1,
        EventKind::Modified => 2,
        EventKind::Deleted => 3,
    }
}

fn kind_from_code(code: i64) -> Result<EventKind, StoreError> {
    match code {
        1 => Ok(EventKind::Added),
        2 => Ok(EventKind::Modified),
        3 => Ok(EventKind::Deleted),
        other => Err(StoreError::Backend(format!(
            "unknown event kind {other} in the event log"
        ))),
    }
}

fn sql_int(revision: u64) -> Result<i64, StoreError> {
    i64::try_from(revision)
        .map_err(|_| StoreError::Backend(format!("revision {revision} exceeds SQLite's range")))
}

fn revision_of(stored: i64) -> Result<u64, StoreError> {
    u64::try_from(stored)
        .map_err(|_| StoreError::Backend(format!("negative revision {stored} in the database")))
}

fn sql(error: rusqlite::Error) -> StoreError {
    StoreError::Backend(format!("sqlite: {error}"))
}

fn from_sql(error: rusqlite::types::FromSqlError) -> StoreError {
    StoreError::Backend(format!("sqlite: unexpected column type: {error}"))
}
