//! The SQLite backend: persistence across reopen, the single-opener lock, and durability of
//! every acknowledged write when the process is killed mid-stream.

use super::{next_event, pod, resource_version};
use crate::{EventKind, SqliteBackend, Store, StoreConfig, StoreError};
use serde_json::json;
use std::path::Path;

fn open(path: &Path, history_limit: usize) -> Store {
    let backend = SqliteBackend::open(path).expect("open sqlite backend");
    Store::open(
        backend,
        StoreConfig {
            history_limit,
            ..StoreConfig::default()
        },
    )
    .expect("open store")
}

#[tokio::test]
async fn reopening_keeps_objects_revision_and_resumable_history() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = open(&path, 100);
    store
        .create("/registry/pods/default/a", pod("a", "v1"))
        .await
        .unwrap();
    store
        .create("/registry/pods/default/b", pod("b", "v1"))
        .await
        .unwrap();
    let a = store
        .update("/registry/pods/default/a", Some(1), pod("a", "v2"))
        .await
        .unwrap();
    store
        .delete("/registry/pods/default/b", None)
        .await
        .unwrap();
    store.close().await;

    let store = open(&path, 100);
    assert_eq!(
        store.revision(),
        4,
        "the last write was a deletion and its revision is kept"
    );
    let fetched = store.get("/registry/pods/default/a").unwrap();
    assert_eq!((fetched.rv, &fetched.value), (3, &a.value));
    assert!(store.get("/registry/pods/default/b").is_none());
    assert_eq!(store.list("/registry/").1.len(), 1);

    let mut watcher = store.watch("/registry/pods/", Some(1)).unwrap();
    let added = next_event(&mut watcher).await;
    assert_eq!(
        (added.kind, added.rv, added.prev.is_none()),
        (EventKind::Added, 2, true)
    );
    let modified = next_event(&mut watcher).await;
    assert_eq!(
        (modified.kind, &modified.value),
        (EventKind::Modified, &a.value)
    );
    assert_eq!(
        modified.prev.as_deref().map(resource_version),
        Some("1".to_string())
    );
    let deleted = next_event(&mut watcher).await;
    assert_eq!((deleted.kind, deleted.rv), (EventKind::Deleted, 4));
    assert_eq!(resource_version(&deleted.value), "4");
    assert_eq!(
        store
            .create("/registry/pods/default/c", pod("c", "v1"))
            .await
            .unwrap()
            .rv,
        5
    );
    drop(watcher);
    store.close().await;

    // A smaller history after restart: older resume points are too old, recent ones still work.
    let store = open(&path, 2);
    assert_eq!((store.revision(), store.oldest_revision()), (5, 3));
    assert!(matches!(
        store.watch("/", Some(2)),
        Err(StoreError::TooOld { .. })
    ));
    let mut watcher = store.watch("/", Some(3)).unwrap();
    assert_eq!(next_event(&mut watcher).await.rv, 4);
    assert_eq!(next_event(&mut watcher).await.rv, 5);
    // Deleting the only remaining objects still keeps the revision through a restart.
    store
        .delete("/registry/pods/default/a", None)
        .await
        .unwrap();
    store
        .delete("/registry/pods/default/c", None)
        .await
        .unwrap();
    drop(watcher);
    store.close().await;
    let store = open(&path, 2);
    assert_eq!(
        (
            store.revision(),
            store.oldest_revision(),
            store.list("/").1.len()
        ),
        (7, 5, 0)
    );
    store.close().await;
}

#[tokio::test]
async fn compaction_keeps_the_log_bounded_but_every_retained_prev() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = open(&path, 3);
    store.create("/a", json!({"data": {"v": 0}})).await.unwrap();
    for v in 1..30 {
        store
            .update("/a", None, json!({"data": {"v": v}}))
            .await
            .unwrap();
        store.create("/gone", json!({})).await.unwrap();
        store.delete("/gone", None).await.unwrap();
    }
    let revision = store.revision();
    store.close().await;

    let rows: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("SELECT count(*) FROM versions", [], |row| row.get(0))
        .unwrap();
    // Three retained events, their predecessors, and the live object: never the whole past.
    assert!(rows <= 7, "{rows} rows kept for 3 retained events");

    let store = open(&path, 3);
    assert_eq!(
        (store.revision(), store.oldest_revision()),
        (revision, revision - 3)
    );
    let mut watcher = store.watch("/", Some(revision - 3)).unwrap();
    let first = next_event(&mut watcher).await;
    // The oldest retained event is the update of /a; its prev is the version before it.
    assert_eq!(first.kind, EventKind::Modified);
    let prev: serde_json::Value = serde_json::from_slice(first.prev.as_deref().unwrap()).unwrap();
    assert_eq!(prev["data"]["v"], 28);
    assert_eq!(next_event(&mut watcher).await.kind, EventKind::Added);
    let deleted = next_event(&mut watcher).await;
    assert_eq!((deleted.kind, deleted.rv), (EventKind::Deleted, revision));
    assert_eq!(
        deleted.prev.as_deref().map(resource_version),
        Some((revision - 1).to_string())
    );
    store.close().await;
}

#[tokio::test]
async fn a_database_can_be_opened_by_one_store_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = open(&path, 10);
    assert!(matches!(
        SqliteBackend::open(&path),
        Err(StoreError::Backend(_))
    ));
    store.close().await;
    let again = SqliteBackend::open(&path);
    assert!(again.is_ok(), "{:?}", again.err());
}

#[tokio::test]
async fn a_database_that_is_not_sqlite_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    std::fs::write(&path, vec![b'x'; 8192]).unwrap();
    assert!(matches!(
        Store::open_sqlite(&path),
        Err(StoreError::Backend(_))
    ));
}

// Crash durability (SIGKILL during writes) is tested end to end against the real server in
// crates/kubelab/tests/durability.rs, which kills and restarts the whole process.
