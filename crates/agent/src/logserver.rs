//! The kubelet's log endpoint, `GET /containerLogs/{namespace}/{pod}/{container}`, which the
//! API server calls for `kubectl logs`. It serves the CRI log files under the node's log
//! root (`<root>/<namespace>_<pod>_<uid>/<container>/<restartCount>.log`) with the
//! kubelet's query parameters (`follow`, `tailLines`, `previous`, `timestamps`,
//! `sinceSeconds`, `sinceTime`, `limitBytes`) and the kubelet's answers: 404 with a plain
//! message for an unknown pod or container, 400 when there is no previous instance, 422
//! for options the kubelet's validation rejects.
//!
//! Plain HTTP on purpose for now: the lab network is private to the machine, and only the
//! API server calls it. The real kubelet serves HTTPS on 10250 and authenticates the API
//! server's client certificate.
//!
//! It knows the log files only: a pod is "known" when it has a log directory. Following
//! ends when the container restarts (a newer log file appears), the files are removed, or
//! the client goes away — not when the container exits, which this module cannot see.

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use images::logfile::{self, ContainerLogFiles, FindError, ReadOptions};
use jiff::Timestamp;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The kubelet's port, and the default of a Node's `daemonEndpoints.kubeletEndpoint.Port`.
pub const KUBELET_PORT: u16 = 10250;

/// How often a follower checks whether the container restarted.
const RESTART_POLL: Duration = Duration::from_millis(500);

/// Serves the log API on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, log_root: PathBuf) {
    if let Err(e) = axum::serve(listener, router(log_root)).await {
        tracing::warn!(error = %e, "kubelet log server stopped");
    }
}

/// Serves the log API and the exec API ([`crate::exec`]) on `listener` until the task is
/// dropped.
pub async fn serve_with_exec(
    listener: tokio::net::TcpListener,
    log_root: PathBuf,
    exec: crate::exec::ExecConfig,
) {
    if let Err(e) = axum::serve(listener, router_with_exec(log_root, exec)).await {
        tracing::warn!(error = %e, "kubelet server stopped");
    }
}

/// The log routes plus `/exec/{namespace}/{pod}/{container}` (GET and POST, as the
/// kubelet serves it).
pub fn router_with_exec(log_root: PathBuf, exec: crate::exec::ExecConfig) -> Router {
    let exec_routes = Router::new()
        .route(
            "/exec/{namespace}/{pod}/{container}",
            axum::routing::get(exec_handler).post(exec_handler),
        )
        .with_state(Arc::new(exec));
    router(log_root).merge(exec_routes)
}

async fn exec_handler(
    State(config): State<Arc<crate::exec::ExecConfig>>,
    Path(target): Path<(String, String, String)>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    ws: Result<
        axum::extract::ws::WebSocketUpgrade,
        axum::extract::ws::rejection::WebSocketUpgradeRejection,
    >,
) -> Response {
    let Ok(Query(pairs)) = query else {
        return QueryError::Undecodable.into_response();
    };
    crate::exec::handle(&config, target, pairs, ws.ok()).await
}

/// The routes, for embedding in a larger kubelet server.
pub fn router(log_root: PathBuf) -> Router {
    Router::new()
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            axum::routing::get(container_logs),
        )
        .with_state(Arc::new(log_root))
}

/// `kubectl logs` options as the kubelet decodes them from the query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct LogQuery {
    follow: bool,
    previous: bool,
    read: ReadOptions,
}

/// Why a query is refused, with the kubelet's status and body.
#[derive(Debug, PartialEq, Eq)]
enum QueryError {
    /// 400 `{"message": "Unable to decode query."}`.
    Undecodable,
    /// 422 `{"message": "Invalid request."}` (upstream's ValidatePodLogOptions failed).
    Invalid,
}

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        match self {
            QueryError::Undecodable => plain(
                StatusCode::BAD_REQUEST,
                r#"{"message": "Unable to decode query."}"#.to_string(),
            ),
            QueryError::Invalid => plain(
                StatusCode::UNPROCESSABLE_ENTITY,
                r#"{"message": "Invalid request."}"#.to_string(),
            ),
        }
    }
}

/// Go's `strconv.ParseBool`, which the query decoder uses.
fn go_bool(value: &str) -> Result<bool, QueryError> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(QueryError::Undecodable),
    }
}

fn parse_query(query: &HashMap<String, String>, now: Timestamp) -> Result<LogQuery, QueryError> {
    let flag = |k: &str| query.get(k).map_or(Ok(false), |v| go_bool(v));
    let int = |k: &str| {
        query
            .get(k)
            .map(|v| v.parse::<i64>().map_err(|_| QueryError::Undecodable))
            .transpose()
    };
    let tail_lines = int("tailLines")?;
    let limit_bytes = int("limitBytes")?;
    let since_seconds = int("sinceSeconds")?;
    let since_time = query
        .get("sinceTime")
        .map(|v| v.parse::<Timestamp>().map_err(|_| QueryError::Undecodable))
        .transpose()?;
    if tail_lines.is_some_and(|n| n < 0)
        || limit_bytes.is_some_and(|n| n < 1)
        || since_seconds.is_some_and(|n| n < 1)
        || (since_seconds.is_some() && since_time.is_some())
    {
        return Err(QueryError::Invalid);
    }
    let since_time = match since_seconds {
        Some(s) => Some(
            now.checked_sub(jiff::SignedDuration::from_secs(s))
                .unwrap_or(Timestamp::MIN),
        ),
        None => since_time,
    };
    Ok(LogQuery {
        follow: flag("follow")?,
        previous: flag("previous")?,
        read: ReadOptions {
            tail_lines: tail_lines.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            timestamps: flag("timestamps")?,
            since_time,
            limit_bytes: limit_bytes.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        },
    })
}

fn plain(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

async fn container_logs(
    State(root): State<Arc<PathBuf>>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return QueryError::Undecodable.into_response();
    };
    let options = match parse_query(&query, Timestamp::now()) {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    let files = match logfile::find_container_logs(&root, &namespace, &pod, &container) {
        Ok(f) => f,
        Err(e @ (FindError::PodNotFound { .. } | FindError::ContainerNotFound { .. })) => {
            return plain(StatusCode::NOT_FOUND, e.to_string());
        }
        Err(e) => return plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let path = if options.previous {
        match &files.previous {
            Some(p) => p.clone(),
            None => {
                return plain(
                    StatusCode::BAD_REQUEST,
                    format!("previous terminated container {container:?} in pod {pod:?} not found"),
                );
            }
        }
    } else {
        files.current.clone()
    };
    if !options.follow || options.previous {
        return match logfile::read(&path, &options.read) {
            Ok(bytes) => text_response(Body::from(bytes)),
            Err(e) => plain(
                StatusCode::BAD_REQUEST,
                format!("failed to read log file {}: {e}", path.display()),
            ),
        };
    }
    let restarted = container_restarted(root.to_path_buf(), namespace, pod, container, files);
    let stream = logfile::follow(path, options.read).take_until(Box::pin(restarted));
    text_response(Body::from_stream(stream))
}

fn text_response(body: Body) -> Response {
    let mut r = Response::new(body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Resolves when the container followed has a newer instance (or its pod a new uid).
async fn container_restarted(
    root: PathBuf,
    namespace: String,
    pod: String,
    container: String,
    followed: ContainerLogFiles,
) {
    loop {
        tokio::time::sleep(RESTART_POLL).await;
        let root = root.clone();
        let (namespace, pod, container) = (namespace.clone(), pod.clone(), container.clone());
        let now = tokio::task::spawn_blocking(move || {
            logfile::find_container_logs(&root, &namespace, &pod, &container)
        })
        .await;
        match now {
            Ok(Ok(now))
                if now.uid == followed.uid && now.restart_count == followed.restart_count => {}
            // Gone files end the follower through the file stream itself.
            Ok(Ok(_)) => return,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use images::logfile::{Entry, LogStream, container_log_path};
    use std::io::Write;
    use std::path::Path;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).expect("valid time")
    }

    fn append(path: &Path, lines: &[(i64, &str)]) {
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("open");
        for (second, content) in lines {
            let e = Entry {
                time: at(*second),
                stream: LogStream::Stdout,
                partial: false,
                content: content.as_bytes().to_vec(),
            };
            f.write_all(&e.encode()).expect("write");
        }
    }

    async fn start(root: &Path) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(serve(listener, root.to_path_buf()));
        format!("http://{addr}")
    }

    async fn get(url: &str) -> (u16, String) {
        let r = reqwest::get(url).await.expect("answer");
        let status = r.status().as_u16();
        (status, r.text().await.expect("body"))
    }

    #[test]
    fn query_decoding_like_the_kubelet() {
        let q = |pairs: &[(&str, &str)]| {
            parse_query(
                &pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                at(1000),
            )
        };
        let parsed = q(&[
            ("follow", "true"),
            ("tailLines", "5"),
            ("sinceSeconds", "10"),
        ])
        .expect("valid");
        assert!(parsed.follow);
        assert_eq!(parsed.read.tail_lines, Some(5));
        assert_eq!(parsed.read.since_time, Some(at(990)));
        assert_eq!(
            q(&[("sinceTime", "2024-01-02T03:04:05Z")])
                .expect("valid")
                .read
                .since_time,
            Some("2024-01-02T03:04:05Z".parse().expect("time"))
        );
        assert_eq!(q(&[("follow", "yes")]), Err(QueryError::Undecodable));
        assert_eq!(q(&[("tailLines", "x")]), Err(QueryError::Undecodable));
        assert_eq!(q(&[("tailLines", "-1")]), Err(QueryError::Invalid));
        assert_eq!(q(&[("limitBytes", "0")]), Err(QueryError::Invalid));
        assert_eq!(
            q(&[("sinceSeconds", "1"), ("sinceTime", "2024-01-02T03:04:05Z")]),
            Err(QueryError::Invalid)
        );
    }

    #[tokio::test]
    async fn serves_logs_like_the_kubelet() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        let first = container_log_path(root, "default", "web", "u1", "nginx", 0);
        let second = container_log_path(root, "default", "web", "u1", "nginx", 1);
        append(&first, &[(10, "old one"), (11, "old two")]);
        append(&second, &[(20, "a"), (21, "b"), (22, "c")]);
        let base = start(root).await;
        let url = |q: &str| format!("{base}/containerLogs/default/web/nginx{q}");

        assert_eq!(get(&url("")).await, (200, "a\nb\nc\n".into()));
        assert_eq!(get(&url("?tailLines=1")).await, (200, "c\n".into()));
        assert_eq!(
            get(&url("?tailLines=1&timestamps=true")).await,
            (200, "1970-01-01T00:00:22.000000000Z c\n".into())
        );
        assert_eq!(
            get(&url("?sinceTime=1970-01-01T00:00:21Z")).await,
            (200, "b\nc\n".into())
        );
        assert_eq!(get(&url("?limitBytes=3")).await, (200, "a\nb".into()));
        assert_eq!(
            get(&url("?previous=true")).await,
            (200, "old one\nold two\n".into())
        );
        assert_eq!(
            get(&format!("{base}/containerLogs/default/db/nginx")).await,
            (404, "pod \"db\" does not exist".into())
        );
        assert_eq!(
            get(&format!("{base}/containerLogs/default/web/sidecar")).await,
            (404, "container \"sidecar\" not found in pod \"web\"".into())
        );
        assert_eq!(
            get(&url("?tailLines=-2")).await,
            (422, r#"{"message": "Invalid request."}"#.into())
        );

        std::fs::remove_file(&first).expect("remove");
        assert_eq!(
            get(&url("?previous=true")).await,
            (
                400,
                "previous terminated container \"nginx\" in pod \"web\" not found".into()
            )
        );
    }

    async fn next_chunk(r: &mut reqwest::Response) -> Option<axum::body::Bytes> {
        tokio::time::timeout(Duration::from_secs(5), r.chunk())
            .await
            .expect("a chunk within 5 s")
            .expect("body")
    }

    #[tokio::test]
    async fn follow_streams_new_lines_and_ends_on_restart() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        let current = container_log_path(root, "default", "web", "u1", "nginx", 0);
        append(&current, &[(1, "one"), (2, "two")]);
        let base = start(root).await;
        let mut response = reqwest::get(format!(
            "{base}/containerLogs/default/web/nginx?follow=true&tailLines=1"
        ))
        .await
        .expect("answer");
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(
            next_chunk(&mut response).await.as_deref(),
            Some(&b"two\n"[..])
        );
        append(&current, &[(3, "three")]);
        assert_eq!(
            next_chunk(&mut response).await.as_deref(),
            Some(&b"three\n"[..])
        );
        // A restart (a newer log file) ends the stream, as the old container has exited.
        append(
            &container_log_path(root, "default", "web", "u1", "nginx", 1),
            &[(4, "new instance")],
        );
        assert_eq!(next_chunk(&mut response).await, None);
    }
}
