//! Watches: a stream of `{"type": ..., "object": ...}` lines, as kube-apiserver sends them.
//! Without a resourceVersion (or with "0") the stream starts with the current objects as
//! ADDED events; with one it resumes after it, or says 410 Expired in an ERROR event when
//! that revision has been compacted. Selectors are applied to both the old and the new state,
//! so an object leaving a selector is DELETED and one entering it is ADDED. BOOKMARKs are sent
//! only when every earlier event has been, so resuming from one never skips a change.

use crate::object;
use crate::rest::Call;
use crate::tables;
use apimachinery::ApiError;
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use printers::IncludeObject;
use serde_json::{Value, json};
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
        self.inner.is_empty() || self.inner.matches(&parsed(value))
    }
}

/// How many recently parsed objects [`parsed`] keeps.
const PARSED_KEPT: usize = 256;

/// `value` parsed, shared by every watch that sees the same event. A pod's change fans out to
/// the scheduler, the controllers and every kubelet's `spec.nodeName` watch, each testing its
/// selector against the object before and after; parsing it once per watch was the largest
/// cost of a pod's life on a busy lab. An entry holds its bytes, so while it is kept no other
/// buffer can have its address: the same address and length are the same bytes.
fn parsed(value: &Bytes) -> std::sync::Arc<Value> {
    use std::collections::VecDeque;
    use std::sync::{Arc, LazyLock, Mutex};
    /// Recently parsed objects, oldest first, each with the bytes it was parsed from.
    type Recent = VecDeque<(Bytes, Arc<Value>)>;
    static RECENT: LazyLock<Mutex<Recent>> =
        LazyLock::new(|| Mutex::new(VecDeque::with_capacity(PARSED_KEPT)));
    let same = |b: &Bytes| b.as_ptr() == value.as_ptr() && b.len() == value.len();
    if let Some((_, v)) = RECENT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .rev()
        .find(|(b, _)| same(b))
    {
        return v.clone();
    }
    let v = Arc::new(object::parse(value));
    let mut recent = RECENT.lock().unwrap_or_else(|e| e.into_inner());
    if recent.len() >= PARSED_KEPT {
        recent.pop_front();
    }
    recent.push_back((value.clone(), v.clone()));
    v
}

#[cfg(test)]
mod parsed_tests {
    use super::*;

    #[test]
    fn one_parse_per_buffer_and_equal_bytes_elsewhere_parse_alike() {
        let first = Bytes::from(br#"{"metadata":{"name":"a","labels":{"app":"x"}}}"#.to_vec());
        let shared = first.clone();
        let a = parsed(&first);
        assert!(
            std::sync::Arc::ptr_eq(&a, &parsed(&shared)),
            "same buffer, one parse"
        );
        let copy = Bytes::from(first.to_vec());
        let b = parsed(&copy);
        assert_eq!(*a, *b);
        let other = Bytes::from(br#"{"metadata":{"name":"b"}}"#.to_vec());
        assert_eq!(parsed(&other)["metadata"]["name"], "b");
        // A kept entry's buffer cannot be reused, so a new buffer is never mistaken for it.
        for i in 0..PARSED_KEPT * 2 {
            let v = Bytes::from(format!(r#"{{"metadata":{{"name":"n{i}"}}}}"#).into_bytes());
            assert_eq!(parsed(&v)["metadata"]["name"], format!("n{i}"));
        }
    }
}
