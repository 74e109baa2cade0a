//! Store semantics over the in-memory backend: revisions, CAS, lists, watches, bookmarks,
//! group commit under concurrency, backend failures and closing.

mod sqlite;

use crate::{Entry, Event, EventKind, MemoryBackend, Store, StoreConfig, StoreError, Watcher};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

pub(crate) fn pod(name: &str, image: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "resourceVersion": "999"},
        "spec": {"containers": [{"name": "c", "image": image}]},
    })
}

pub(crate) fn resource_version(bytes: &[u8]) -> String {
    let value: Value = serde_json::from_slice(bytes).expect("stored bytes are JSON");
    value["metadata"]["resourceVersion"]
        .as_str()
        .expect("resourceVersion is a string")
        .to_string()
}

pub(crate) async fn next_event(watcher: &mut Watcher) -> Event {
    tokio::time::timeout(Duration::from_secs(5), watcher.next())
        .await
        .expect("an event within 5 s")
        .expect("the watcher is still open")
}

/// The watcher has nothing to deliver right now.
async fn assert_quiet(watcher: &mut Watcher) {
    let waited = tokio::time::timeout(Duration::from_millis(50), watcher.next()).await;
    assert!(waited.is_err(), "unexpected event or end: {waited:?}");
}

fn store_with(config: StoreConfig) -> Store {
    Store::open(MemoryBackend::new(), config).expect("open in-memory store")
}

#[tokio::test]
async fn create_update_delete_follow_etcd_semantics() {
    let store = Store::in_memory();
    let key = "/registry/pods/default/a";
    assert_eq!(store.revision(), 0);

    let created = store.create(key, pod("a", "nginx")).await.unwrap();
    assert_eq!((created.rv, &*created.key), (1, key));
    assert_eq!(resource_version(&created.value), "1");
    assert!(
        matches!(store.create(key, pod("a", "other")).await, Err(StoreError::AlreadyExists(k)) if k == key)
    );

    let conflict = store.update(key, Some(7), pod("a", "nginx:2")).await;
    assert!(
        matches!(
            conflict,
            Err(StoreError::Conflict {
                expected: 7,
                actual: 1,
                ..
            })
        ),
        "{conflict:?}"
    );
    let updated = store
        .update(key, Some(1), pod("a", "nginx:2"))
        .await
        .unwrap();
    assert_eq!(updated.rv, 2);
    assert_eq!(resource_version(&updated.value), "2");
    let unconditional = store.update(key, None, pod("a", "nginx:3")).await.unwrap();
    assert_eq!(unconditional.rv, 3);
    assert!(matches!(
        store
            .update("/registry/pods/default/missing", None, pod("m", "x"))
            .await,
        Err(StoreError::NotFound(_))
    ));

    assert!(matches!(
        store.delete(key, Some(2)).await,
        Err(StoreError::Conflict {
            expected: 2,
            actual: 3,
            ..
        })
    ));
    let deleted = store.delete(key, Some(3)).await.unwrap();
    assert_eq!(deleted.rv, 4);
    assert_eq!(resource_version(&deleted.value), "4");
    let last: Value = serde_json::from_slice(&deleted.value).unwrap();
    assert_eq!(last["spec"]["containers"][0]["image"], "nginx:3");
    assert!(store.get(key).is_none());
    assert!(matches!(
        store.delete(key, None).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.revision(), 4);
}

#[tokio::test]
async fn stored_bytes_keep_the_callers_key_order_and_get_returns_them() {
    let store = Store::in_memory();
    let value = json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "c"}, "data": {"z": "1", "a": "2"}});
    let created = store
        .create("/registry/configmaps/default/c", value)
        .await
        .unwrap();
    let expected = r#"{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"c","resourceVersion":"1"},"data":{"z":"1","a":"2"}}"#;
    assert_eq!(std::str::from_utf8(&created.value).unwrap(), expected);
    let fetched = store.get("/registry/configmaps/default/c").unwrap();
    assert_eq!((fetched.rv, fetched.value), (1, created.value));
}

#[tokio::test]
async fn invalid_objects_are_rejected_without_using_a_revision() {
    let store = Store::in_memory();
    for bad in [
        json!([1, 2]),
        json!("text"),
        json!(null),
        json!({"metadata": 5}),
    ] {
        let result = store.create("/k", bad.clone()).await;
        assert!(
            matches!(result, Err(StoreError::InvalidObject(_))),
            "{bad}: {result:?}"
        );
    }
    store.create("/k", json!({"metadata": {}})).await.unwrap();
    assert!(matches!(
        store.update("/k", None, json!(1)).await,
        Err(StoreError::InvalidObject(_))
    ));
    assert_eq!(store.revision(), 1);
}

#[tokio::test]
async fn an_update_that_changes_nothing_but_the_resource_version_writes_nothing() {
    let store = Store::in_memory();
    let key = "/registry/pods/default/a";
    let created = store.create(key, pod("a", "nginx")).await.unwrap();
    let mut watcher = store.watch("/registry/", None).unwrap();

    // The caller's object carries a stale resourceVersion ("999"); it is ignored for the check.
    let same = store.update(key, Some(1), pod("a", "nginx")).await.unwrap();
    assert_eq!((same.rv, &same.value), (1, &created.value));
    assert_eq!(store.revision(), 1);
    assert_eq!(watcher.bookmark(), Some(1));

    let changed = store
        .update(key, Some(1), pod("a", "nginx:2"))
        .await
        .unwrap();
    let event = next_event(&mut watcher).await;
    assert_eq!((event.kind, event.rv), (EventKind::Modified, changed.rv));
    assert_eq!(event.prev.as_ref(), Some(&created.value));
}

#[tokio::test]
async fn list_is_plain_prefix_matching_in_key_order() {
    let store = Store::in_memory();
    for key in [
        "/registry/pods/kube-system/c",
        "/registry/pods/default-x/b",
        "/registry/pods/default/z",
        "/registry/pods/default/a",
        "/registry/services/default/a",
    ] {
        store.create(key, json!({"metadata": {}})).await.unwrap();
    }
    let keys = |prefix: &str| {
        let (revision, entries) = store.list(prefix);
        assert_eq!(revision, 5);
        entries
            .into_iter()
            .map(|entry| entry.key.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        keys("/registry/pods/default/"),
        ["/registry/pods/default/a", "/registry/pods/default/z"]
    );
    assert_eq!(
        keys("/registry/pods/default"),
        [
            "/registry/pods/default-x/b",
            "/registry/pods/default/a",
            "/registry/pods/default/z"
        ]
    );
    assert_eq!(keys("/registry/pods/").len(), 4);
    assert_eq!(keys("/registry/").len(), 5);
    assert!(keys("/registry/nodes/").is_empty());
}

#[tokio::test]
async fn watch_from_now_delivers_every_kind_with_prev_and_filters_by_prefix() {
    let store = Store::in_memory();
    store
        .create("/registry/pods/default/old", pod("old", "x"))
        .await
        .unwrap();
    let mut pods = store.watch("/registry/pods/", None).unwrap();
    let mut default_only = store.watch("/registry/pods/default/", None).unwrap();

    let added = store
        .create("/registry/pods/default/a", pod("a", "v1"))
        .await
        .unwrap();
    store
        .create("/registry/services/default/s", json!({"metadata": {}}))
        .await
        .unwrap();
    store
        .create("/registry/pods/default-x/b", pod("b", "v1"))
        .await
        .unwrap();
    let modified = store
        .update("/registry/pods/default/a", None, pod("a", "v2"))
        .await
        .unwrap();
    let deleted = store
        .delete("/registry/pods/default/a", None)
        .await
        .unwrap();

    let mut seen = Vec::new();
    for _ in 0..4 {
        let event = next_event(&mut pods).await;
        seen.push((event.kind, event.key.to_string(), event.rv));
    }
    assert_eq!(
        seen,
        [
            (EventKind::Added, "/registry/pods/default/a".to_string(), 2),
            (
                EventKind::Added,
                "/registry/pods/default-x/b".to_string(),
                4
            ),
            (
                EventKind::Modified,
                "/registry/pods/default/a".to_string(),
                5
            ),
            (
                EventKind::Deleted,
                "/registry/pods/default/a".to_string(),
                6
            ),
        ]
    );
    assert_quiet(&mut pods).await;

    let first = next_event(&mut default_only).await;
    assert_eq!(
        (first.kind, first.prev.is_none(), &first.value),
        (EventKind::Added, true, &added.value)
    );
    let second = next_event(&mut default_only).await;
    assert_eq!(
        (second.kind, second.prev.as_ref()),
        (EventKind::Modified, Some(&added.value))
    );
    assert_eq!(second.value, modified.value);
    let third = next_event(&mut default_only).await;
    assert_eq!(
        (third.kind, third.rv, &third.value),
        (EventKind::Deleted, 6, &deleted.value)
    );
    assert_eq!(third.prev.as_ref(), Some(&modified.value));
    assert_eq!(resource_version(&third.value), "6");
    assert_quiet(&mut default_only).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_a_past_revision_replays_then_goes_live_without_gap_or_duplicate() {
    let store = Store::in_memory();
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..600 {
                let key = format!("/registry/configmaps/default/c{}", i % 40);
                match store.get(&key) {
                    Some(entry) => {
                        store
                            .update(
                                &key,
                                Some(entry.rv),
                                json!({"metadata": {}, "data": {"i": i}}),
                            )
                            .await
                    }
                    None => {
                        store
                            .create(&key, json!({"metadata": {}, "data": {"i": i}}))
                            .await
                    }
                }
                .unwrap();
            }
        })
    };
    // Start watches at various points while the writer runs, each from a revision in the past.
    let mut watchers = Vec::new();
    while watchers.len() < 5 {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let after = store.revision() / 2;
        watchers.push((
            after,
            store.watch("/registry/configmaps/", Some(after)).unwrap(),
        ));
    }
    writer.await.unwrap();
    let last = store.revision();
    assert_eq!(last, 600);
    for (after, mut watcher) in watchers {
        let mut expected = after + 1;
        while expected <= last {
            let event = next_event(&mut watcher).await;
            assert_eq!(event.rv, expected, "watch after {after}");
            expected += 1;
        }
        assert_quiet(&mut watcher).await;
        assert_eq!(watcher.bookmark(), Some(last));
    }
}

#[tokio::test]
async fn watching_before_the_retained_history_is_too_old() {
    let store = store_with(StoreConfig {
        history_limit: 5,
        ..StoreConfig::default()
    });
    for i in 0..10 {
        store
            .create(&format!("/k/{i}"), json!({"metadata": {}}))
            .await
            .unwrap();
    }
    assert_eq!((store.revision(), store.oldest_revision()), (10, 5));
    assert!(matches!(
        store.watch("/k/", Some(4)),
        Err(StoreError::TooOld {
            requested: 4,
            oldest: 5
        })
    ));
    assert!(matches!(
        store.watch("/k/", Some(0)),
        Err(StoreError::TooOld { .. })
    ));
    let mut from_oldest = store.watch("/k/", Some(5)).unwrap();
    for rv in 6..=10 {
        assert_eq!(next_event(&mut from_oldest).await.rv, rv);
    }
    let mut from_now = store.watch("/k/", Some(10)).unwrap();
    assert_quiet(&mut from_now).await;
    assert_eq!(from_now.bookmark(), Some(10));
}

#[tokio::test]
async fn without_history_watching_from_the_current_revision_is_still_allowed() {
    let store = store_with(StoreConfig {
        history_limit: 0,
        ..StoreConfig::default()
    });
    assert!(store.watch("/", Some(0)).is_ok());
    store.create("/a", json!({})).await.unwrap();
    store.create("/b", json!({})).await.unwrap();
    assert_eq!(store.oldest_revision(), 2);
    assert!(matches!(
        store.watch("/", Some(1)),
        Err(StoreError::TooOld { .. })
    ));
    let mut watcher = store.watch("/", Some(2)).unwrap();
    store.create("/c", json!({})).await.unwrap();
    assert_eq!(next_event(&mut watcher).await.rv, 3);
}

#[tokio::test]
async fn watch_after_a_future_revision_skips_events_up_to_it() {
    let store = Store::in_memory();
    let mut watcher = store.watch("/", Some(2)).unwrap();
    assert_eq!(watcher.bookmark(), Some(2));
    for key in ["/a", "/b", "/c"] {
        store.create(key, json!({})).await.unwrap();
    }
    assert_eq!(next_event(&mut watcher).await.rv, 3);
}

#[tokio::test]
async fn bookmark_is_offered_only_when_nothing_matching_is_pending() {
    let store = Store::in_memory();
    store.create("/a/1", json!({})).await.unwrap();
    let mut replaying = store.watch("/a/", Some(0)).unwrap();
    let mut watcher = store.watch("/a/", None).unwrap();
    assert_eq!(watcher.bookmark(), Some(1));
    assert_eq!(replaying.bookmark(), None, "the replay of rv 1 is pending");
    assert_eq!(next_event(&mut replaying).await.rv, 1);
    assert_eq!(replaying.bookmark(), Some(1));

    // Events for other prefixes advance the bookmark without being pending.
    store.create("/b/1", json!({})).await.unwrap();
    assert_eq!(watcher.bookmark(), Some(2));

    store.create("/a/2", json!({})).await.unwrap();
    store.create("/b/2", json!({})).await.unwrap();
    assert_eq!(watcher.bookmark(), None, "rv 3 has not been returned yet");
    assert_eq!(next_event(&mut watcher).await.rv, 3);
    assert_eq!(watcher.bookmark(), Some(4));
}

#[tokio::test]
async fn a_watcher_that_falls_behind_is_ended_without_blocking_writers() {
    let store = store_with(StoreConfig {
        watch_buffer: 3,
        ..StoreConfig::default()
    });
    let mut slow = store.watch("/", None).unwrap();
    for i in 0..10 {
        store.create(&format!("/k{i}"), json!({})).await.unwrap();
    }
    assert_eq!(slow.bookmark(), None);
    // What was buffered is a correct prefix of the stream; then the watch ends.
    for rv in 1..=3 {
        assert_eq!(next_event(&mut slow).await.rv, rv);
    }
    assert!(slow.next().await.is_none());
    assert_eq!(slow.bookmark(), None);
    // A fresh watch from where it stopped still works from the history.
    let mut resumed = store.watch("/", Some(3)).unwrap();
    assert_eq!(next_event(&mut resumed).await.rv, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_writers_are_all_acknowledged_with_unique_revisions() {
    let store = Store::in_memory();
    let mut tasks = Vec::new();
    for writer in 0..100 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("/registry/pods/default/p{writer}");
            let mut revisions = vec![store.create(&key, pod("p", "v0")).await.unwrap().rv];
            for i in 1..50 {
                let expected = revisions.last().copied();
                revisions.push(
                    store
                        .update(&key, expected, pod("p", &format!("v{i}")))
                        .await
                        .unwrap()
                        .rv,
                );
            }
            revisions
        }));
    }
    let mut all = BTreeSet::new();
    for task in tasks {
        let revisions = task.await.unwrap();
        assert!(
            revisions.windows(2).all(|pair| pair[0] < pair[1]),
            "one writer's revisions increase"
        );
        all.extend(revisions);
    }
    assert_eq!(all.len(), 5000);
    assert_eq!(all.last().copied(), Some(5000));
    assert_eq!(store.revision(), 5000);
    let (_, entries) = store.list("/registry/pods/");
    assert_eq!(entries.len(), 100);
    assert!(
        entries
            .iter()
            .all(|entry| resource_version(&entry.value) == entry.rv.to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writes_to_one_key_are_decided_in_order_within_a_batch() {
    let store = Store::in_memory();
    let creates: Vec<_> = (0..50)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.create("/same", json!({"data": {"i": i}})).await })
        })
        .collect();
    let mut created = Vec::new();
    for task in creates {
        match task.await.unwrap() {
            Ok(entry) => created.push(entry),
            Err(StoreError::AlreadyExists(_)) => {}
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!(created.len(), 1);
    let rv = created[0].rv;

    let updates: Vec<_> = (0..50)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .update("/same", Some(rv), json!({"data": {"u": i}}))
                    .await
            })
        })
        .collect();
    let mut winners: Vec<Entry> = Vec::new();
    for task in updates {
        match task.await.unwrap() {
            Ok(entry) => winners.push(entry),
            Err(StoreError::Conflict {
                expected, actual, ..
            }) => assert_eq!((expected, actual), (rv, rv + 1)),
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!(winners.len(), 1);
    assert_eq!(store.revision(), rv + 1);
}

#[tokio::test]
async fn a_failed_commit_is_reported_and_never_becomes_visible() {
    let backend = MemoryBackend::new();
    let store = Store::open(backend.clone(), StoreConfig::default()).unwrap();
    store.create("/a", json!({})).await.unwrap();
    let mut watcher = store.watch("/", None).unwrap();
    backend.fail_next_commits(1);
    assert!(matches!(
        store.create("/b", json!({})).await,
        Err(StoreError::Backend(_))
    ));
    assert!(store.get("/b").is_none());
    assert_eq!(store.revision(), 1);
    assert_eq!(watcher.bookmark(), Some(1));
    let next = store.create("/b", json!({})).await.unwrap();
    assert_eq!(next.rv, 2);
    assert_eq!(next_event(&mut watcher).await.rv, 2);
    assert_eq!(backend.persisted().objects.len(), 2);
}

#[tokio::test]
async fn closing_ends_watchers_and_refuses_work() {
    let store = Store::in_memory();
    store.create("/a", json!({})).await.unwrap();
    let mut watcher = store.watch("/", None).unwrap();
    let other_handle = store.clone();
    store.close().await;
    assert!(watcher.next().await.is_none());
    assert_eq!(watcher.bookmark(), None);
    assert!(matches!(
        other_handle.create("/b", json!({})).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(
        other_handle.delete("/a", None).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(
        other_handle.watch("/", None),
        Err(StoreError::Closed)
    ));
    // Reads still answer from the last committed state.
    assert_eq!(other_handle.get("/a").map(|entry| entry.rv), Some(1));
    other_handle.close().await;
}

#[tokio::test]
async fn reopening_over_the_same_backend_continues_revisions_and_history() {
    let backend = MemoryBackend::new();
    let store = Store::open(backend.clone(), StoreConfig::default()).unwrap();
    store.create("/a", json!({})).await.unwrap();
    store.create("/b", json!({})).await.unwrap();
    store.delete("/b", None).await.unwrap();
    store.close().await;

    let reopened = Store::open(backend, StoreConfig::default()).unwrap();
    assert_eq!(
        reopened.revision(),
        3,
        "the deletion's revision is not reused"
    );
    let mut watcher = reopened.watch("/", Some(1)).unwrap();
    assert_eq!(next_event(&mut watcher).await.kind, EventKind::Added);
    let deleted = next_event(&mut watcher).await;
    assert_eq!((deleted.kind, deleted.rv), (EventKind::Deleted, 3));
    assert_eq!(reopened.create("/c", json!({})).await.unwrap().rv, 4);
}

/// A backend whose commit panics, standing in for a bug in a backend.
struct PanickingBackend;

impl crate::Backend for PanickingBackend {
    fn load(&mut self) -> Result<crate::Persisted, StoreError> {
        Ok(crate::Persisted::default())
    }

    fn commit(&mut self, _batch: &crate::CommitBatch<'_>) -> Result<(), StoreError> {
        panic!("backend bug (expected by this test)");
    }
}

#[tokio::test]
async fn a_dead_writer_thread_turns_into_closed_errors_for_callers() {
    let store = Store::open(PanickingBackend, StoreConfig::default()).unwrap();
    let mut watcher = store.watch("/", None).unwrap();
    assert!(matches!(
        store.create("/a", json!({})).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(
        store.create("/b", json!({})).await,
        Err(StoreError::Closed)
    ));
    assert!(watcher.next().await.is_none());
    assert!(matches!(store.watch("/", None), Err(StoreError::Closed)));
    assert!(store.get("/a").is_none());
    assert_eq!(store.revision(), 0);
    store.close().await;
}

/// The API server holds the store in shared state and awaits its futures on a multi-threaded
/// runtime, so these must stay `Send` (and the store `Sync`).
#[test]
fn handles_watchers_and_write_futures_can_cross_threads() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    let store = Store::in_memory();
    send_sync(&store);
    send(&store.watch("/", None).unwrap());
    send(&store.create("/a", json!({})));
    send(&store.update("/a", None, json!({})));
    send(&store.delete("/a", None));
}

#[tokio::test]
async fn list_at_undoes_later_writes_and_refuses_compacted_revisions() {
    let store = store_with(StoreConfig {
        history_limit: 4,
        ..StoreConfig::default()
    });
    let obj = |n: &str, v: i64| serde_json::json!({"metadata": {"name": n}, "data": v});
    store.create("/p/a", obj("a", 1)).await.unwrap();
    store.create("/p/b", obj("b", 1)).await.unwrap();
    let (rv, before) = store.list("/p/");
    store.update("/p/a", None, obj("a", 2)).await.unwrap();
    store.delete("/p/b", None).await.unwrap();
    store.create("/p/c", obj("c", 1)).await.unwrap();
    let at = store.list_at("/p/", rv).unwrap();
    let keys: Vec<&str> = at.iter().map(|e| &*e.key).collect();
    assert_eq!(keys, ["/p/a", "/p/b"]);
    for (x, y) in at.iter().zip(&before) {
        assert_eq!((x.rv, &x.value), (y.rv, &y.value));
    }
    // Five more writes push the revision of the snapshot out of a 4-event history.
    for i in 0..5 {
        store.update("/p/a", None, obj("a", 10 + i)).await.unwrap();
    }
    assert!(matches!(
        store.list_at("/p/", rv),
        Err(StoreError::TooOld { .. })
    ));
    assert_eq!(store.list_at("/p/", store.revision()).unwrap().len(), 2);
}
