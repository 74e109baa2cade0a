//! `pods/exec` (GET and POST) and `pods/attach`.
//!
//! The API server checks the request like kube-apiserver's `ExecLocation` (the pod exists,
//! the container is one of its containers, a command is given, some stream is asked for) and
//! then proxies the WebSocket upgrade to the node's kubelet, `GET http://<InternalIP>:<kubelet
//! port>/exec/<ns>/<pod>/<container>?command=..`, as kube-apiserver's upgrade-aware proxy
//! does: the client's handshake headers (key, version, subprotocols) go to the kubelet, the
//! kubelet's `101 Switching Protocols` (accept key, chosen subprotocol) comes back to the
//! client, and from then on the two connections are spliced byte for byte. The remote command
//! protocol itself (`v5.channel.k8s.io`) is spoken by the kubelet ([`agent::exec`] in this
//! workspace); the API server never looks inside it.
//!
//! Only WebSocket is served (kubectl ≥ 1.30 uses it by default). A SPDY request (kubectl's
//! fallback after a failed WebSocket handshake) gets the same checks, so kubectl prints the
//! same reason, and otherwise a 400 saying so. `pods/attach` is listed but answers 400:
//! built-in images have no terminal to attach to.

use crate::logs;
use crate::rest::Call;
use apimachinery::ApiError;
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

/// How long to wait for the kubelet's TCP connection and for its answer to the upgrade.
const KUBELET_TIMEOUT: Duration = Duration::from_secs(10);

/// What a streaming subresource needs beyond an ordinary call: the raw query (its `command`
/// parameter repeats), the request headers (the handshake) and the connection's upgrade.
pub struct Streaming {
    pub raw_query: String,
    pub headers: HeaderMap,
    pub on_upgrade: Option<hyper::upgrade::OnUpgrade>,
}

/// The checked options of an exec request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOptions {
    pub container: String,
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

fn go_bool(v: &str) -> bool {
    matches!(v, "1" | "t" | "T" | "true" | "TRUE" | "True")
}

/// Decodes `PodExecOptions` from the query and checks them against the pod like upstream.
pub fn exec_options(pod: &Value, pod_name: &str, raw_query: &str) -> Result<ExecOptions, ApiError> {
    let mut container = None;
    let mut options = ExecOptions {
        container: String::new(),
        command: Vec::new(),
        stdin: false,
        stdout: false,
        stderr: false,
        tty: false,
    };
    for (k, v) in url::form_urlencoded::parse(raw_query.as_bytes()) {
        match k.as_ref() {
            "command" => options.command.push(v.into_owned()),
            "container" if !v.is_empty() => container = Some(v.into_owned()),
            "stdin" => options.stdin = go_bool(&v),
            "stdout" => options.stdout = go_bool(&v),
            "stderr" => options.stderr = go_bool(&v),
            "tty" => options.tty = go_bool(&v),
            _ => {}
        }
    }
    if !(options.stdin || options.stdout || options.stderr) {
        return Err(ApiError::bad_request(
            "you must specify at least 1 of stdin, stdout, stderr",
        ));
    }
    let containers = logs::container_names(pod, "/spec/containers");
    let mut others = logs::container_names(pod, "/spec/initContainers");
    others.extend(logs::container_names(pod, "/spec/ephemeralContainers"));
    options.container = logs::pick_container(pod_name, container.as_deref(), &containers, &others)?;
    if options.command.is_empty() {
        return Err(ApiError::bad_request(
            "you must specify at least one command for the container",
        ));
    }
    Ok(options)
}

/// Whether the pod's status says the container runs; otherwise the kubelet's answer, which
/// kubectl shows as `unable to upgrade connection: container not found ("c")`.
fn check_running(pod: &Value, container: &str) -> Result<(), ApiError> {
    let running = ["/status/containerStatuses", "/status/initContainerStatuses"]
        .iter()
        .filter_map(|p| pod.pointer(p).and_then(Value::as_array))
        .flatten()
        .any(|s| {
            s.get("name").and_then(Value::as_str) == Some(container)
                && s.pointer("/state/running").is_some()
        });
    if running {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "container not found ({container:?})"
        )))
    }
}

fn is_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// `pods/<name>/attach`: nothing to attach to.
pub fn pod_attach() -> Result<Response, ApiError> {
    Err(ApiError::bad_request(
        "attach is not supported by kubelab: built-in images have no terminal; use kubectl exec",
    ))
}

/// `pods/<name>/exec`.
pub async fn pod_exec(call: &mut Call<'_>) -> Result<Response, ApiError> {
    let (namespace, pod_name, pod) = logs::stored_pod(call)?;
    let Some(streaming) = call.streaming.take() else {
        return Err(ApiError::bad_request("exec needs an upgradable connection"));
    };
    let options = exec_options(&pod, &pod_name, &streaming.raw_query)?;
    check_running(&pod, &options.container)?;
    if !is_websocket(&streaming.headers) {
        return Err(ApiError::bad_request(
            "kubelab streams exec over WebSocket (v5.channel.k8s.io) only, not SPDY",
        ));
    }
    let node_name = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("");
    let endpoint = logs::kubelet_endpoint(call, node_name)?;
    let path = format!(
        "/exec/{}/{}/{}?{}",
        logs::path_segment(&namespace),
        logs::path_segment(&pod_name),
        logs::path_segment(&options.container),
        kubelet_query(&options)
    );
    proxy_upgrade(endpoint, &path, streaming).await
}

/// The kubelet's query: every command word, and the streams asked for.
fn kubelet_query(options: &ExecOptions) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for c in &options.command {
        query.append_pair("command", c);
    }
    for (name, on) in [
        ("stdin", options.stdin),
        ("stdout", options.stdout),
        ("stderr", options.stderr),
        ("tty", options.tty),
    ] {
        if on {
            query.append_pair(name, "1");
        }
    }
    query.finish()
}

/// Handshake headers passed to the kubelet, and those of its answer passed back.
const REQUEST_HEADERS: [&str; 4] = [
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
];
const RESPONSE_HEADERS: [&str; 3] = [
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
];

async fn proxy_upgrade(
    addr: SocketAddr,
    path: &str,
    streaming: Streaming,
) -> Result<Response, ApiError> {
    let url = format!("http://{addr}{path}");
    let fail = |what: String| ApiError::new(500, "", format!("error dialing backend: {what}"));
    let tcp = match tokio::time::timeout(KUBELET_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => return Err(fail(logs::dial_error(addr, &e))),
        Err(_) => return Err(fail(format!("dial tcp {addr}: i/o timeout"))),
    };
    let _ = tcp.set_nodelay(true);
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .map_err(|e| fail(e.to_string()))?;
    tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });
    let mut request = Request::get(path)
        .header(header::HOST, addr.to_string())
        .header(header::USER_AGENT, "kube-apiserver (kubelab)")
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket");
    for name in REQUEST_HEADERS {
        for value in streaming.headers.get_all(name) {
            request = request.header(name, value);
        }
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let mut response =
        match tokio::time::timeout(KUBELET_TIMEOUT, sender.send_request(request)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(fail(format!("Get {url:?}: {e}"))),
            Err(_) => {
                return Err(fail(format!(
                    "Get {url:?}: timeout awaiting response headers"
                )));
            }
        };
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        let body = body.trim().to_string();
        return Err(match status.as_u16() {
            400 => ApiError::bad_request(body),
            404 => ApiError::new(404, "NotFound", body),
            _ => ApiError::internal(body),
        });
    }
    let Some(client_upgrade) = streaming.on_upgrade else {
        return Err(ApiError::internal("the connection cannot be upgraded"));
    };
    let mut answer = Response::new(Body::empty());
    *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    answer
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    answer
        .headers_mut()
        .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    for name in RESPONSE_HEADERS {
        for value in response.headers().get_all(name) {
            answer.headers_mut().append(name, value.clone());
        }
    }
    let kubelet_upgrade = hyper::upgrade::on(&mut response);
    tokio::spawn(async move {
        let (Ok(kubelet), Ok(client)) = (kubelet_upgrade.await, client_upgrade.await) else {
            tracing::debug!("exec upgrade did not complete");
            return;
        };
        let mut kubelet = hyper_util::rt::TokioIo::new(kubelet);
        let mut client = hyper_util::rt::TokioIo::new(client);
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut kubelet).await {
            tracing::debug!(error = %e, "exec stream ended");
        }
    });
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Value {
        json!({
            "spec": {"containers": [{"name": "nginx"}, {"name": "sidecar"}]},
            "status": {"containerStatuses": [
                {"name": "nginx", "state": {"running": {}}},
                {"name": "sidecar", "state": {"waiting": {"reason": "ContainerCreating"}}},
            ]},
        })
    }

    #[test]
    fn options_are_checked_like_upstream() {
        let o = exec_options(
            &pod(),
            "web",
            "command=sh&command=-c&command=exit+3&container=nginx&stdin=true&stdout=true&tty=true",
        )
        .expect("valid");
        assert_eq!(o.command, vec!["sh", "-c", "exit 3"]);
        assert_eq!(o.container, "nginx");
        assert!(o.stdin && o.stdout && o.tty && !o.stderr);
        let message = |q: &str| exec_options(&pod(), "web", q).map_err(|e| (e.code, e.message));
        assert_eq!(
            message("command=ls&container=db&stdout=1"),
            Err((400, "container db is not valid for pod web".into()))
        );
        assert_eq!(
            message("command=ls&stdout=1"),
            Err((
                400,
                "a container name must be specified for pod web, choose one of: [nginx sidecar]"
                    .into()
            ))
        );
        assert_eq!(
            message("container=nginx&stdout=1"),
            Err((
                400,
                "you must specify at least one command for the container".into()
            ))
        );
        assert_eq!(
            message("command=ls&container=nginx"),
            Err((
                400,
                "you must specify at least 1 of stdin, stdout, stderr".into()
            ))
        );
    }

    #[test]
    fn only_running_containers_take_an_exec() {
        assert!(check_running(&pod(), "nginx").is_ok());
        assert_eq!(
            check_running(&pod(), "sidecar").map_err(|e| e.message),
            Err("container not found (\"sidecar\")".into())
        );
    }
}
