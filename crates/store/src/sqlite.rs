//! The SQLite backend: current objects, the retained event log and the revision in one database
//! file, written in WAL mode with `synchronous=FULL` so a commit is on disk when it returns.
//!
//! Checkpointing (copying the WAL back into the database) is done by a second connection on a
//! background thread, never inside a commit, so that it does not add a multi-millisecond stall to
//! the writes that happen to cross the auto-checkpoint threshold. A `<path>.lock` file, locked for
//! the backend's lifetime, keeps two stores from writing one database with separate counters.

use crate::backend::{Backend, CommitBatch, Persisted};
use crate::{Entry, Event, EventKind, StoreError};
use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS objects (
    key TEXT PRIMARY KEY NOT NULL,
    rv INTEGER NOT NULL,
    value BLOB NOT NULL
);
-- The retained event log: every event with rv > meta.compacted.
CREATE TABLE IF NOT EXISTS events (
    rv INTEGER PRIMARY KEY NOT NULL,
    kind INTEGER NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    prev BLOB
);
CREATE TABLE IF NOT EXISTS meta (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    -- The highest revision ever committed, kept separately because deletions leave no object.
    revision INTEGER NOT NULL,
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
            .map_err(|error| StoreError::Backend(format!("opening {}: {error}", lock_path.display())))?;
        lock.try_lock().map_err(|error| {
            StoreError::Backend(format!("{} is in use by another store: {error}", path.display()))
        })?;

        let connection = Connection::open(path).map_err(sql)?;
        let mode: String =
            connection.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)).map_err(sql)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!("cannot use WAL mode (got {mode})")));
        }
        connection.pragma_update(None, "synchronous", "FULL").map_err(sql)?;
        connection.pragma_update(None, "wal_autocheckpoint", 0).map_err(sql)?;
        connection.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024).map_err(sql)?;
        connection.busy_timeout(Duration::from_secs(5)).map_err(sql)?;

        let version: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0)).map_err(sql)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Backend(format!(
                "{} has schema version {version}, newer than this program's {SCHEMA_VERSION}",
                path.display()
            )));
        }
        connection.execute_batch(SCHEMA).map_err(sql)?;
        connection.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(sql)?;

        if std::env::var_os("EXP_AUTOCKPT").is_some() { connection.pragma_update(None, "wal_autocheckpoint", 1000).map_err(sql)?; }
        let checkpointer = Checkpointer::start(path)?;
        Ok(SqliteBackend { connection, checkpointer: Some(checkpointer), _lock: lock })
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
        connection.busy_timeout(Duration::from_secs(5)).map_err(sql)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("store-checkpoint".to_string())
            .spawn(move || {
                // Disconnection (the backend dropped its sender) is the stop signal.
                let interval = if std::env::var_os("EXP_AUTOCKPT").is_some() { Duration::from_secs(3600) } else { CHECKPOINT_INTERVAL };
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    if let Err(error) = checkpoint(&connection) {
                        tracing::warn!(%error, "SQLite checkpoint failed; will retry");
                    }
                }
            })
            .map_err(|error| StoreError::Backend(format!("cannot start the checkpoint thread: {error}")))?;
        Ok(Checkpointer { stop, thread })
    }
}

fn checkpoint(connection: &Connection) -> rusqlite::Result<()> {
    let wal_pages: i64 = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1))?;
    if wal_pages > WAL_PAGES_FORCING_RESTART {
        connection.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))?;
    }
    Ok(())
}

impl Backend for SqliteBackend {
    fn load(&mut self) -> Result<Persisted, StoreError> {
        let transaction = self.connection.transaction().map_err(sql)?;
        let (revision, compacted): (i64, i64) = transaction
            .query_row("SELECT revision, compacted FROM meta WHERE id = 0", [], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()
            .map_err(sql)?
            .unwrap_or((0, 0));

        let mut objects = Vec::new();
        let mut statement = transaction.prepare("SELECT key, rv, value FROM objects").map_err(sql)?;
        let mut rows = statement.query([]).map_err(sql)?;
        while let Some(row) = rows.next().map_err(sql)? {
            objects.push(Entry {
                key: Arc::from(row.get_ref(0).map_err(sql)?.as_str().map_err(from_sql)?),
                rv: revision_of(row.get(1).map_err(sql)?)?,
                value: Bytes::copy_from_slice(row.get_ref(2).map_err(sql)?.as_blob().map_err(from_sql)?),
            });
        }
        drop(rows);
        drop(statement);

        let mut events = Vec::new();
        let mut statement = transaction
            .prepare("SELECT rv, kind, key, value, prev FROM events WHERE rv > ?1 ORDER BY rv")
            .map_err(sql)?;
        let mut rows = statement.query([compacted]).map_err(sql)?;
        while let Some(row) = rows.next().map_err(sql)? {
            let prev = row.get_ref(4).map_err(sql)?.as_blob_or_null().map_err(from_sql)?;
            events.push(Event {
                rv: revision_of(row.get(0).map_err(sql)?)?,
                kind: kind_from_code(row.get(1).map_err(sql)?)?,
                key: Arc::from(row.get_ref(2).map_err(sql)?.as_str().map_err(from_sql)?),
                value: Bytes::copy_from_slice(row.get_ref(3).map_err(sql)?.as_blob().map_err(from_sql)?),
                prev: prev.map(Bytes::copy_from_slice),
            });
        }
        drop(rows);
        drop(statement);
        transaction.commit().map_err(sql)?;
        Ok(Persisted { revision: revision_of(revision)?, compacted: revision_of(compacted)?, objects, events })
    }

    fn commit(&mut self, batch: &CommitBatch<'_>) -> Result<(), StoreError> {
        let transaction = self.connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql)?;
        {
            let mut upsert = transaction
                .prepare_cached(
                    "INSERT INTO objects (key, rv, value) VALUES (?1, ?2, ?3)
                     ON CONFLICT (key) DO UPDATE SET rv = excluded.rv, value = excluded.value",
                )
                .map_err(sql)?;
            let mut remove = transaction.prepare_cached("DELETE FROM objects WHERE key = ?1").map_err(sql)?;
            let mut append = transaction
                .prepare_cached("INSERT INTO events (rv, kind, key, value, prev) VALUES (?1, ?2, ?3, ?4, ?5)")
                .map_err(sql)?;
            for event in batch.events {
                let rv = sql_int(event.rv)?;
                let key: &str = &event.key;
                match event.kind {
                    EventKind::Deleted => remove.execute([key]).map_err(sql)?,
                    EventKind::Added | EventKind::Modified => {
                        upsert.execute(params![key, rv, event.value.as_ref()]).map_err(sql)?
                    }
                };
                if event.rv > batch.compacted {
                    append
                        .execute(params![rv, kind_code(event.kind), key, event.value.as_ref(), event.prev.as_deref()])
                        .map_err(sql)?;
                }
            }
            let compacted = sql_int(batch.compacted)?;
            transaction.prepare_cached("DELETE FROM events WHERE rv <= ?1").map_err(sql)?.execute([compacted]).map_err(sql)?;
            transaction
                .prepare_cached("UPDATE meta SET revision = ?1, compacted = ?2 WHERE id = 0")
                .map_err(sql)?
                .execute([sql_int(batch.revision)?, compacted])
                .map_err(sql)?;
        }
        transaction.commit().map_err(sql)
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
        other => Err(StoreError::Backend(format!("unknown event kind {other} in the event log"))),
    }
}

fn sql_int(revision: u64) -> Result<i64, StoreError> {
    i64::try_from(revision).map_err(|_| StoreError::Backend(format!("revision {revision} exceeds SQLite's range")))
}

fn revision_of(stored: i64) -> Result<u64, StoreError> {
    u64::try_from(stored).map_err(|_| StoreError::Backend(format!("negative revision {stored} in the database")))
}

fn sql(error: rusqlite::Error) -> StoreError {
    StoreError::Backend(format!("sqlite: {error}"))
}

fn from_sql(error: rusqlite::types::FromSqlError) -> StoreError {
    StoreError::Backend(format!("sqlite: unexpected column type: {error}"))
}
