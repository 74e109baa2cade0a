//! Watches: a stream of `{"type": ..., "object": ...}` lines, as kube-apiserver sends them.
//! Without a resourceVersion (or with "0") the stream starts with the current objects as
//! ADDED events; with one it resumes after it, or says 410 Expired in an ERROR event when
//! that revision has been compacted. Selectors are applied to both the old and the new state,
//! so an object leaving a selector is DELETED and one entering it is ADDED. BOOKMARKs are sent
//! only when every earlier event has been, so resuming from one never skips a change.

use crate::object;
use crate::policy::Selectable;
use crate::rest::Call;
use crate::tables;
use apimachinery::ApiError;
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use printers::IncludeObject;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use store::{EventKind, StoreError};
use tokio::sync::mpsc;

/// How one event's object is written.
#[derive(Clone, Copy)]
enum Format {
    Json,
    Table(IncludeObject),
}

struct Encoder {
    info: &'static crate::registry::ResourceInfo,
    format: Format,
    /// Only the first Table of a watch carries column definitions, as upstream does.
    sent_columns: bool,
}

impl Encoder {
    fn event(&mut self, kind: &str, value: &Bytes) -> Bytes {
        match self.format {
            Format::Json => {
                let mut out = Vec::with_capacity(value.len() + 32);
                out.extend_from_slice(b"{\"type\":\"");
                out.extend_from_slice(kind.as_bytes());
                out.extend_from_slice(b"\",\"object\":");
                out.extend_from_slice(value);
                out.extend_from_slice(b"}\n");
                Bytes::from(out)
            }
            Format::Table(include) => {
                let obj = object::parse(value);
                let rv = object::meta_str(&obj, "resourceVersion")
                    .unwrap_or("")
                    .to_string();
                let meta = json!({"resourceVersion": rv});
                let t = if self.sent_columns {
                    tables::table_without_headers(
                        self.info,
                        std::slice::from_ref(&obj),
                        include,
                        meta,
                    )
                } else {
                    tables::table(self.info, std::slice::from_ref(&obj), include, meta)
                };
                self.sent_columns = true;
                line(&json!({"type": kind, "object": t}))
            }
        }
    }

    fn bookmark(&self, rv: u64, initial_events_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_events_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        line(&json!({
            "type": "BOOKMARK",
            "object": {"kind": self.info.kind, "apiVersion": self.info.api_version(), "metadata": meta},
        }))
    }
}

fn line(v: &Value) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

fn streaming_response(rx: mpsc::Receiver<Bytes>) -> Response {
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<Bytes, std::convert::Infallible>(b), rx))
    });
    let mut r = Response::new(Body::from_stream(stream));
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    r
}

pub async fn watch(call: &Call<'_>) -> Result<Response, ApiError> {
    let info = call.rr.info;
    let state = call.state;
    let selector = Selector::new(call)?;
    let format = match tables::wants_table(&call.accept, &call.query) {
        Some(include) => Format::Table(include),
        None => Format::Json,
    };
    let bookmarks = call.query.flag("allowWatchBookmarks") && matches!(format, Format::Json);
    let send_initial = call.query.get("sendInitialEvents") == Some("true");
    check_initial_events(send_initial, call.query.get("resourceVersionMatch"))?;
    let timeout = call
        .query
        .int("timeoutSeconds")?
        .filter(|t| *t > 0)
        .map(|t| t as u64)
        .unwrap_or(1800);
    let prefix = object::prefix(info, call.rr.namespace.as_deref());
    let rv_param = call.query.get("resourceVersion").map(str::to_string);

    let mut encoder = Encoder {
        info,
        format,
        sent_columns: false,
    };
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    // Initial state, and the watcher that continues exactly after it.
    let (initial, list_rv, watcher) = match rv_param.as_deref() {
        Some(rv) if rv != "0" && !send_initial => {
            let after: u64 = rv.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid resourceVersion {rv:?} for watch"))
            })?;
            match state.store.watch(&prefix, Some(after)) {
                Ok(w) => (Vec::new(), after, w),
                Err(StoreError::TooOld { requested, oldest }) => {
                    let status = ApiError::expired(format!(
                        "too old resource version: {requested} ({oldest})"
                    ))
                    .to_status();
                    let _ = tx.try_send(line(&json!({"type": "ERROR", "object": status})));
                    drop(tx);
                    return Ok(streaming_response(rx));
                }
                Err(e) => return Err(ApiError::internal(e.to_string())),
            }
        }
        _ => {
            let (rv, entries) = state.store.list(&prefix);
            let w = state
                .store
                .watch(&prefix, Some(rv))
                .map_err(|e| ApiError::internal(e.to_string()))?;
            let initial: Vec<Bytes> = entries
                .into_iter()
                .filter(|e| selector.key_matches(&e.key) && selector.matches(&e.value))
                .map(|e| e.value)
                .collect();
            (initial, rv, w)
        }
    };
    let bookmark_interval = state.config.bookmark_interval;
    let mut watcher = watcher;
    tokio::spawn(async move {
        for v in &initial {
            if tx.send(encoder.event("ADDED", v)).await.is_err() {
                return;
            }
        }
        if send_initial && bookmarks && tx.send(encoder.bookmark(list_rv, true)).await.is_err() {
            return;
        }
        let deadline = tokio::time::sleep(Duration::from_secs(timeout));
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(bookmark_interval);
        ticker.tick().await;
        loop {
            tokio::select! {
                ev = watcher.next() => {
                    let Some(ev) = ev else { break };
                    if !selector.key_matches(&ev.key) {
                        continue;
                    }
                    let now = selector.matches(&ev.value);
                    let before = ev.prev.as_ref().is_some_and(|p| selector.matches(p));
                    let kind = match (ev.kind, before, now) {
                        (EventKind::Added, _, true) => "ADDED",
                        (EventKind::Modified, true, true) => "MODIFIED",
                        (EventKind::Modified, false, true) => "ADDED",
                        (EventKind::Modified, true, false) => "DELETED",
                        (EventKind::Deleted, _, true) => "DELETED",
                        _ => continue,
                    };
                    if tx.send(encoder.event(kind, &ev.value)).await.is_err() {
                        break;
                    }
                }
                _ = ticker.tick(), if bookmarks => {
                    if let Some(rv) = watcher.bookmark()
                        && tx.send(encoder.bookmark(rv, false)).await.is_err() {
                            break;
                        }
                }
                _ = &mut deadline => break,
                _ = tx.closed() => break,
            }
        }
    });
    Ok(streaming_response(rx))
}

/// Upstream's ListOptions validation for watches: streaming the initial state needs
/// `resourceVersionMatch=NotOlderThan`, and that match needs `sendInitialEvents`.
fn check_initial_events(send_initial: bool, rv_match: Option<&str>) -> Result<(), ApiError> {
    let forbidden = |detail: &str| {
        ApiError::invalid(
            "meta.k8s.io",
            "ListOptions",
            "",
            &[apimachinery::FieldError::forbidden(
                "resourceVersionMatch",
                detail,
            )],
        )
    };
    match (send_initial, rv_match) {
        (true, Some("NotOlderThan")) | (false, None) => Ok(()),
        (true, _) => Err(forbidden(
            "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
        )),
        (false, Some(_)) => Err(forbidden(
            "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
        )),
    }
}

/// Label and field selectors plus the single name a path or `metadata.name` selector pins.
struct Selector {
    inner: crate::policy::Selector,
    exact_key: Option<String>,
}

impl Selector {
    fn new(call: &Call<'_>) -> Result<Selector, ApiError> {
        let inner = crate::policy::Selector::parse(
            call.rr.info,
            call.query.get("labelSelector"),
            call.query.get("fieldSelector"),
        )?;
        let info = call.rr.info;
        let ns = call.rr.namespace.as_deref();
        // A pinned name narrows to one key only where the key is fully known.
        let pinned = inner
            .pinned_name()
            .filter(|_| ns.is_some() || !info.namespaced)
            .map(str::to_string);
        let exact_key = call
            .rr
            .name
            .clone()
            .or(pinned)
            .map(|n| object::key(info, ns, &n));
        Ok(Selector { inner, exact_key })
    }

    fn key_matches(&self, key: &str) -> bool {
        self.exact_key.as_deref().is_none_or(|k| k == key)
    }

    fn matches(&self, value: &Bytes) -> bool {
        self.inner.is_empty()
            || self
                .inner
                .matches_selectable(&selectable(value, &self.inner))
    }
}

/// How many objects' [`selectable`] parts are kept.
const SELECTABLE_KEPT: usize = 4096;

/// Recently seen objects by buffer (address and length), with their selectable parts and the
/// buffer itself; `order` is oldest first.
#[derive(Default)]
struct RecentSelectables {
    by_buffer: std::collections::HashMap<(usize, usize), (Bytes, Arc<Selectable>)>,
    order: std::collections::VecDeque<(usize, usize)>,
}

/// The labels and selectable fields of the object in `value`, shared by every watch that sees
/// the same event. A pod's change fans out to the scheduler, the controllers and every
/// kubelet's `spec.nodeName` watch, each testing its selector against the object before and
/// after: parsed per watch, that was most of a 100-node lab's CPU. Watches lag one another by
/// thousands of events on a busy lab, so thousands are kept, as the small selectable parts
/// rather than whole objects. An entry holds its buffer, so while it is kept no other buffer
/// can have its address: the same address and length are the same bytes. Every watch of a
/// buffer watches the same resource, so `selector` only says how to read it.
fn selectable(value: &Bytes, selector: &crate::policy::Selector) -> Arc<Selectable> {
    use std::sync::{LazyLock, Mutex};
    static RECENT: LazyLock<Mutex<RecentSelectables>> = LazyLock::new(Default::default);
    let id = (value.as_ptr() as usize, value.len());
    if let Some((_, s)) = RECENT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .by_buffer
        .get(&id)
    {
        return s.clone();
    }
    let s = Arc::new(selector.selectable(&object::parse(value)));
    let mut recent = RECENT.lock().unwrap_or_else(|e| e.into_inner());
    if recent.by_buffer.contains_key(&id) {
        return s;
    }
    if recent.order.len() >= SELECTABLE_KEPT
        && let Some(oldest) = recent.order.pop_front()
    {
        recent.by_buffer.remove(&oldest);
    }
    recent.order.push_back(id);
    recent.by_buffer.insert(id, (value.clone(), s.clone()));
    s
}

#[cfg(test)]
mod selectable_tests {
    use super::*;

    #[test]
    fn one_parse_per_buffer_and_equal_bytes_elsewhere_read_alike() {
        let pods = crate::registry::find("", "v1", "pods").expect("pods");
        let selector =
            crate::policy::Selector::parse(pods, Some("app=x"), Some("spec.nodeName=n1")).unwrap();
        let first = Bytes::from(
            br#"{"metadata":{"name":"a","labels":{"app":"x"}},"spec":{"nodeName":"n1"}}"#.to_vec(),
        );
        let shared = first.clone();
        let a = selectable(&first, &selector);
        assert!(
            Arc::ptr_eq(&a, &selectable(&shared, &selector)),
            "same buffer, one parse"
        );
        assert!(selector.matches_selectable(&a));
        let copy = Bytes::from(first.to_vec());
        assert_eq!(*a, *selectable(&copy, &selector));
        let other = Bytes::from(br#"{"metadata":{"name":"b","labels":{"app":"x"}}}"#.to_vec());
        assert!(!selector.matches_selectable(&selectable(&other, &selector)));
        // A kept entry's buffer cannot be reused, so a new buffer is never mistaken for it.
        for i in 0..SELECTABLE_KEPT * 2 {
            let node = if i % 2 == 0 { "n1" } else { "n2" };
            let v = Bytes::from(
                format!(
                    r#"{{"metadata":{{"labels":{{"app":"x"}}}},"spec":{{"nodeName":"{node}"}}}}"#
                )
                .into_bytes(),
            );
            assert_eq!(
                selector.matches_selectable(&selectable(&v, &selector)),
                i % 2 == 0
            );
        }
    }
}
