//! `GET pods/<name>/log`. The API server checks the pod, the container and the options like
//! upstream does, decides from the container's status whether there can be a log (the
//! kubelet's `validateContainerLogStatus`, done here from the stored status), and then
//! streams the log from the node's kubelet: `GET http://<InternalIP>:<kubelet port>/
//! containerLogs/<ns>/<pod>/<container>?<options>`, answered to the client as it arrives,
//! so `kubectl logs -f` prints lines as they come.
//!
//! Plain HTTP to the kubelet: the lab's node network is private to the machine (the real
//! API server speaks HTTPS with a client certificate). A node that advertises kubelet port 0
//! has no log API (hollow nodes), and the answer says so instead of dialing anything.

use crate::rest::Call;
use crate::{object, registry};
use apimachinery::ApiError;
use apimachinery::FieldError;
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use serde_json::{Value, json};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::net::TcpStream;

/// The kubelet's port when a Node does not say (`daemonEndpoints.kubeletEndpoint.Port`).
pub const DEFAULT_KUBELET_PORT: u16 = 10250;

/// How long to wait for the kubelet's TCP connection and for its response head.
const KUBELET_TIMEOUT: Duration = Duration::from_secs(10);

/// How much of a kubelet's error body is read (upstream's `maxReadLength`).
const MAX_ERROR_BODY: usize = 50_000;

pub async fn pod_log(call: &Call<'_>) -> Result<Response, ApiError> {
    let (namespace, pod_name, pod) = stored_pod(call)?;
    let containers = container_names(&pod, "/spec/containers");
    let container = pick_container(&pod_name, call.query.get("container"), &containers, &[])?;
    let kubelet_query = kubelet_query(call, &pod_name)?;
    let status = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter()
                .find(|s| s.get("name").and_then(Value::as_str) == Some(container.as_str()))
        });
    check_container_status(status, call.query.flag("previous"), &container, &pod_name)?;
    let node_name = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("");
    let endpoint = kubelet_endpoint(call, node_name)?;
    let url = format!(
        "http://{}/containerLogs/{}/{}/{}{}",
        endpoint,
        path_segment(&namespace),
        path_segment(&pod_name),
        path_segment(&container),
        kubelet_query
    );
    stream_from_kubelet(endpoint, &url, &pod_name).await
}

/// The options forwarded to the kubelet, validated and normalised as upstream's
/// `LogLocation` writes them (`url.Values.Encode`: sorted keys): `?follow=true&tailLines=5`.
/// The pod a `pods/<name>/{log,exec}` request names: its namespace, name and stored object.
pub(crate) fn stored_pod(call: &Call<'_>) -> Result<(String, String, Value), ApiError> {
    let pod_name = call.rr.name.clone().unwrap_or_default();
    let namespace = call.rr.namespace.clone().unwrap_or_default();
    let key = object::key(call.rr.info, call.rr.namespace.as_deref(), &pod_name);
    let entry = call
        .state
        .store
        .get(&key)
        .ok_or_else(|| ApiError::not_found("", "pods", &pod_name))?;
    Ok((namespace, pod_name, object::parse(&entry.value)))
}

/// The names of the containers listed at `path` (`/spec/containers`, `/spec/initContainers`).
pub(crate) fn container_names(pod: &Value, path: &str) -> Vec<String> {
    pod.pointer(path)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| c.get("name")?.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The container a request means, with upstream's errors: the one it names, which must be one
/// of `containers` or `also_allowed`, or else the pod's only container.
pub(crate) fn pick_container(
    pod_name: &str,
    requested: Option<&str>,
    containers: &[String],
    also_allowed: &[String],
) -> Result<String, ApiError> {
    match requested {
        Some(c) if containers.iter().chain(also_allowed).any(|n| n == c) => Ok(c.to_string()),
        Some(c) => Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {pod_name}"
        ))),
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {pod_name}, choose one of: [{}]",
            containers.join(" ")
        ))),
    }
}

fn kubelet_query(call: &Call<'_>, pod_name: &str) -> Result<String, ApiError> {
    let q = &call.query;
    let tail_lines = q.int("tailLines")?;
    let limit_bytes = q.int("limitBytes")?;
    let since_seconds = q.int("sinceSeconds")?;
    let since_time = match q.get("sinceTime") {
        Some(t) => Some(t.parse::<jiff::Timestamp>().map_err(|_| {
            ApiError::bad_request(format!(
                "parsing time \"{t}\" as \"2006-01-02T15:04:05Z07:00\": cannot parse"
            ))
        })?),
        None => None,
    };
    let mut errors = Vec::new();
    if let Some(n) = tail_lines.filter(|n| *n < 0) {
        errors.push(FieldError::invalid(
            "tailLines",
            n,
            "must be greater than or equal to 0",
        ));
    }
    if let Some(n) = limit_bytes.filter(|n| *n < 1) {
        errors.push(FieldError::invalid(
            "limitBytes",
            n,
            "must be greater than 0",
        ));
    }
    if let Some(n) = since_seconds.filter(|n| *n < 1) {
        errors.push(FieldError::invalid(
            "sinceSeconds",
            n,
            "must be greater than 0",
        ));
    }
    if since_seconds.is_some() && since_time.is_some() {
        errors.push(FieldError::forbidden(
            "",
            "at most one of `sinceTime` or `sinceSeconds` may be specified",
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid("", "PodLogOptions", pod_name, &errors));
    }
    let mut params: Vec<(&str, String)> = Vec::new();
    for flag in ["follow", "previous", "timestamps"] {
        if q.flag(flag) {
            params.push((flag, "true".into()));
        }
    }
    if let Some(n) = since_seconds {
        params.push(("sinceSeconds", n.to_string()));
    }
    if let Some(t) = since_time {
        params.push(("sinceTime", t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()));
    }
    if let Some(n) = tail_lines {
        params.push(("tailLines", n.to_string()));
    }
    if let Some(n) = limit_bytes {
        params.push(("limitBytes", n.to_string()));
    }
    if params.is_empty() {
        return Ok(String::new());
    }
    params.sort_by(|a, b| a.0.cmp(b.0));
    let mut encoded = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in &params {
        encoded.append_pair(k, v);
    }
    Ok(format!("?{}", encoded.finish()))
}

/// Whether the container has (had) a process whose log the kubelet can serve; otherwise
/// the kubelet's 400 for that state (`validateContainerLogStatus`).
fn check_container_status(
    status: Option<&Value>,
    previous: bool,
    container: &str,
    pod: &str,
) -> Result<(), ApiError> {
    let state = |path: &str| status.and_then(|s| s.pointer(path));
    let last_terminated = state("/lastState/terminated");
    if previous {
        return match last_terminated {
            Some(_) => Ok(()),
            None => Err(ApiError::bad_request(format!(
                "previous terminated container \"{container}\" in pod \"{pod}\" not found"
            ))),
        };
    }
    if state("/state/running").is_some()
        || state("/state/terminated").is_some()
        || last_terminated.is_some()
    {
        return Ok(());
    }
    let reason = state("/state/waiting/reason")
        .and_then(Value::as_str)
        .unwrap_or("ContainerCreating");
    let why = match reason {
        "ErrImagePull" => "image can't be pulled",
        "ImagePullBackOff" => "trying and failing to pull image",
        other => other,
    };
    Err(ApiError::bad_request(format!(
        "container \"{container}\" in pod \"{pod}\" is waiting to start: {why}"
    )))
}

/// The address of the kubelet of `node_name`: its InternalIP (else ExternalIP, else
/// Hostname) and its advertised port.
pub(crate) fn kubelet_endpoint(call: &Call<'_>, node_name: &str) -> Result<SocketAddr, ApiError> {
    let nodes = registry::find("", "v1", "nodes")
        .ok_or_else(|| ApiError::internal("nodes are not served"))?;
    let entry = call
        .state
        .store
        .get(&object::key(nodes, None, node_name))
        .ok_or_else(|| ApiError::not_found("", "nodes", node_name))?;
    let node = object::parse(&entry.value);
    let port = match node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_i64)
    {
        None => DEFAULT_KUBELET_PORT,
        Some(0) => {
            return Err(ApiError::service_unavailable(format!(
                "the kubelet of node {node_name:?} does not serve logs"
            )));
        }
        Some(p) => u16::try_from(p).map_err(|_| {
            ApiError::internal(format!("node {node_name:?} advertises kubelet port {p}"))
        })?,
    };
    let addresses: Vec<(&str, &str)> = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| Some((x.get("type")?.as_str()?, x.get("address")?.as_str()?)))
                .collect()
        })
        .unwrap_or_default();
    let ip = ["InternalIP", "ExternalIP", "Hostname"]
        .iter()
        .find_map(|wanted| {
            addresses
                .iter()
                .filter(|(t, _)| t == wanted)
                .find_map(|(_, a)| a.parse::<IpAddr>().ok())
        })
        .ok_or_else(|| {
            let known: Vec<String> = addresses
                .iter()
                .map(|(t, a)| format!("{{{t} {a}}}"))
                .collect();
            ApiError::new(
                500,
                "",
                format!(
                    "no preferred addresses found; known addresses: [{}]",
                    known.join(" ")
                ),
            )
        })?;
    Ok(SocketAddr::new(ip, port))
}

/// A path segment with everything but unreserved characters percent-encoded.
pub(crate) fn path_segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
        .to_string()
        .replace("%2D", "-")
        .replace("%2E", ".")
        .replace("%5F", "_")
}

/// A failure before any answer came, worded like Go's `net/http` client error that
/// kube-apiserver passes on: `Get "<url>": dial tcp <addr>: connect: connection refused`.
fn transport_error(url: &str, what: String) -> ApiError {
    ApiError::new(500, "", format!("Get \"{url}\": {what}"))
}

pub(crate) fn dial_error(addr: SocketAddr, e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    let why = match e.kind() {
        ErrorKind::ConnectionRefused => "connect: connection refused".to_string(),
        ErrorKind::HostUnreachable => "connect: no route to host".to_string(),
        ErrorKind::NetworkUnreachable => "connect: network is unreachable".to_string(),
        ErrorKind::TimedOut => "i/o timeout".to_string(),
        _ => format!("connect: {e}"),
    };
    format!("dial tcp {addr}: {why}")
}

async fn stream_from_kubelet(
    addr: SocketAddr,
    url: &str,
    pod_name: &str,
) -> Result<Response, ApiError> {
    let tcp = match tokio::time::timeout(KUBELET_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => return Err(transport_error(url, dial_error(addr, &e))),
        Err(_) => {
            return Err(transport_error(
                url,
                format!("dial tcp {addr}: i/o timeout"),
            ));
        }
    };
    let _ = tcp.set_nodelay(true);
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .map_err(|e| transport_error(url, e.to_string()))?;
    // Drives the connection until the body is read or dropped (the client went away).
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let path_and_query = url
        .find("/containerLogs/")
        .map_or("/", |i| &url[i..])
        .to_string();
    let request = Request::get(path_and_query)
        .header(header::HOST, addr.to_string())
        .header(header::USER_AGENT, "kube-apiserver (kubelab)")
        .body(Empty::<Bytes>::new())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let response = match tokio::time::timeout(KUBELET_TIMEOUT, sender.send_request(request)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(transport_error(url, e.to_string())),
        Err(_) => {
            return Err(transport_error(
                url,
                "net/http: timeout awaiting response headers".into(),
            ));
        }
    };
    let status = response.status();
    if !status.is_success() {
        let body = read_error_body(response.into_body()).await;
        return Err(kubelet_error(status, &body, pod_name));
    }
    let mut answer = Response::new(Body::new(response.into_body()));
    answer
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(answer)
}

async fn read_error_body(mut body: hyper::body::Incoming) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < MAX_ERROR_BODY {
        match tokio::time::timeout(KUBELET_TIMEOUT, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    bytes.extend_from_slice(&data);
                }
            }
            _ => break,
        }
    }
    bytes.truncate(MAX_ERROR_BODY);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A kubelet's error answer as kube-apiserver's `GenericHttpResponseChecker` turns it into
/// a Status: 400 and 500 carry the kubelet's text, the rest a generic message naming
/// `pods/log <name>`.
fn kubelet_error(status: StatusCode, body: &str, pod_name: &str) -> ApiError {
    match status.as_u16() {
        400 => ApiError::bad_request(body),
        500 => ApiError::internal(body),
        code => {
            let (reason, message) = match code {
                404 => (
                    "NotFound",
                    "the server could not find the requested resource".to_string(),
                ),
                422 => (
                    "Invalid",
                    "the server rejected our request due to an error in our request".to_string(),
                ),
                401 => (
                    "Unauthorized",
                    "the server has asked for the client to provide credentials".to_string(),
                ),
                403 => (
                    "Forbidden",
                    "the server does not allow access to the requested resource".to_string(),
                ),
                _ => (
                    "",
                    format!(
                        "the server responded with the status code {code} but did not return more information"
                    ),
                ),
            };
            let mut error =
                ApiError::new(code, reason, format!("{message} ( pods/log {pod_name})"));
            error.details = Some(json!({"name": pod_name, "kind": "pods/log"}));
            error
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_states_like_the_kubelet() {
        let check = |status: Value, previous: bool| {
            check_container_status(Some(&status), previous, "c", "p").map_err(|e| e.message)
        };
        assert_eq!(check(json!({"state": {"running": {}}}), false), Ok(()));
        assert_eq!(check(json!({"state": {"terminated": {}}}), false), Ok(()));
        // CrashLoopBackOff: waiting, but the last instance's log is there.
        assert_eq!(
            check(
                json!({"state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {}}}),
                false
            ),
            Ok(())
        );
        assert_eq!(
            check(
                json!({"state": {"waiting": {"reason": "ErrImagePull"}}}),
                false
            ),
            Err("container \"c\" in pod \"p\" is waiting to start: image can't be pulled".into())
        );
        assert_eq!(
            check(json!({"state": {"running": {}}}), true),
            Err("previous terminated container \"c\" in pod \"p\" not found".into())
        );
        assert_eq!(
            check_container_status(None, false, "c", "p").map_err(|e| e.message),
            Err("container \"c\" in pod \"p\" is waiting to start: ContainerCreating".into())
        );
    }

    #[test]
    fn kubelet_errors_become_statuses() {
        let e = kubelet_error(StatusCode::NOT_FOUND, "container \"x\" not found", "web");
        assert_eq!(e.code, 404);
        assert_eq!(e.reason, "NotFound");
        assert_eq!(
            e.message,
            "the server could not find the requested resource ( pods/log web)"
        );
        let e = kubelet_error(StatusCode::BAD_REQUEST, "previous terminated", "web");
        assert_eq!((e.code, e.message.as_str()), (400, "previous terminated"));
    }

    #[test]
    fn dial_errors_read_like_go() {
        let addr: SocketAddr = "10.0.0.5:10250".parse().expect("addr");
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(
            transport_error(
                "http://10.0.0.5:10250/containerLogs/default/web/nginx",
                dial_error(addr, &refused)
            )
            .message,
            "Get \"http://10.0.0.5:10250/containerLogs/default/web/nginx\": dial tcp 10.0.0.5:10250: connect: connection refused"
        );
    }
}
