//! The HTTPS server: TLS with the cluster CA, authentication (client certificate or bearer
//! token), the 3 MiB body limit, and routing of every path to discovery, OpenAPI, health or
//! the REST layer. `run` takes a bound listener and a shutdown future, so tests can bind
//! 127.0.0.1:0 and stop the server when they are done.

use crate::alloc::{ClusterIpAllocator, NodePortAllocator};
use crate::openapi::OpenApi;
use crate::pki::{Pki, PkiError};
use crate::request;
use crate::rest::{self, Call, Query, error_response, json_response};
use crate::services::Allocators;
use crate::{bootstrap, discovery, gc, object, registry};
use apimachinery::ApiError;
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::json;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::Store;
use tokio::net::TcpListener;

/// The Kubernetes release whose API types (k8s-openapi's v1_33) this server serves.
pub const KUBERNETES_VERSION: &str = "v1.33.0";

/// Largest request body accepted, as kube-apiserver's limit.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

#[derive(Clone, Debug)]
pub struct Config {
    /// Holds `state.db` (unless `in_memory`) and `pki/`.
    pub data_dir: PathBuf,
    /// Keep objects in memory only (unit tests); the PKI still lives under `data_dir`.
    pub in_memory: bool,
    pub listen: SocketAddr,
    /// Address the `kubernetes` Service's endpoints point at; defaults to the listen address.
    pub advertise_address: Option<IpAddr>,
    /// More addresses the serving certificate must cover (node addresses in a lab).
    pub extra_sans: Vec<IpAddr>,
    pub service_cidr: String,
    pub nodeport_range: String,
    /// How often an idle watch that asked for bookmarks gets one.
    pub bookmark_interval: Duration,
}

impl Config {
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            in_memory: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 6443)),
            advertise_address: None,
            extra_sans: Vec::new(),
            service_cidr: "10.96.0.0/12".into(),
            nodeport_range: "30000-32767".into(),
            bookmark_interval: Duration::from_secs(15),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("certificates: {0}")]
    Pki(#[from] PkiError),
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("listen on {addr}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("configuration: {0}")]
    Config(String),
    #[error("bootstrap: {0}")]
    Bootstrap(#[from] ApiError),
}

/// Everything a request handler can reach.
pub struct State {
    pub config: Config,
    pub store: Store,
    pub pki: Pki,
    pub openapi: Arc<OpenApi>,
    /// A std mutex: allocation is quick and never awaits while holding it.
    pub allocators: Mutex<Allocators>,
    /// The port clients reach us on (the bound one, if the config said 0).
    pub port: u16,
}

/// A bound, bootstrapped API server, ready to `run`.
pub struct ApiServer {
    state: Arc<State>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
}

impl ApiServer {
    /// Opens the store, creates or loads the PKI, binds the listener and creates the objects
    /// every cluster has (namespaces, the `kubernetes` Service).
    pub async fn new(config: Config) -> Result<ApiServer, ServerError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Listen {
                    addr: config.listen,
                    source,
                })?;
        let port = listener
            .local_addr()
            .map_err(|source| ServerError::Listen {
                addr: config.listen,
                source,
            })?
            .port();
        let mut sans = config.extra_sans.clone();
        if !config.listen.ip().is_unspecified() {
            sans.push(config.listen.ip());
        }
        if let Some(a) = config.advertise_address {
            sans.push(a);
        }
        let pki = Pki::load_or_create(&config.data_dir.join("pki"), &sans)?;
        let store = if config.in_memory {
            Store::in_memory()
        } else {
            std::fs::create_dir_all(&config.data_dir)
                .map_err(|e| ServerError::Config(format!("{}: {e}", config.data_dir.display())))?;
            Store::open_sqlite(&config.data_dir.join("state.db"))?
        };
        let mut allocators = Allocators {
            cluster_ips: ClusterIpAllocator::new(&config.service_cidr)
                .map_err(ServerError::Config)?,
            node_ports: NodePortAllocator::new(&config.nodeport_range)
                .map_err(ServerError::Config)?,
        };
        let services = registry::find("", "v1", "services").expect("served");
        let (_, stored) = store.list(&object::prefix(services, None));
        allocators.rebuild(
            &stored
                .iter()
                .map(|e| object::parse(&e.value))
                .collect::<Vec<_>>(),
        );
        let tls = Arc::new(tls_config(&pki)?);
        let state = Arc::new(State {
            config,
            store,
            pki,
            openapi: Arc::new(OpenApi::build(KUBERNETES_VERSION)),
            allocators: Mutex::new(allocators),
            port,
        });
        bootstrap::run(&state).await?;
        Ok(ApiServer {
            state,
            listener,
            tls,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.state.config.listen)
    }

    /// A transport for clients in this process: see [`LocalTransport`].
    pub fn local_transport(&self) -> LocalTransport {
        LocalTransport {
            state: self.state.clone(),
        }
    }

    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// A kubeconfig whose cluster, user and context are all named `name`.
    pub fn kubeconfig(&self, name: &str) -> String {
        let addr = self.local_addr();
        let host = if addr.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            addr.ip().to_string()
        };
        crate::kubeconfig::render(
            name,
            &format!("https://{host}:{}", addr.port()),
            &self.state.pki,
        )
    }

    /// Serves until `shutdown` completes; in-flight requests are dropped with their connections.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let gc_task = tokio::spawn(gc::run(self.state.clone()));
        let acceptor = tokio_rustls::TlsAcceptor::from(self.tls.clone());
        tokio::pin!(shutdown);
        loop {
            let (tcp, peer) = tokio::select! {
                r = self.listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = &mut shutdown => break,
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let state = self.state.clone();
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
                    .await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
                let client_cert = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .is_some_and(|c| !c.is_empty());
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let state = state.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(
                                dispatch(state, client_cert, req).await,
                            )
                        }
                    });
                let builder = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                );
                if let Err(e) = builder
                    .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(tls), service)
                    .await
                {
                    tracing::debug!(%peer, error = %e, "connection ended");
                }
            });
        }
        gc_task.abort();
    }
}

/// The way into this server for clients in its own process (the controllers, hollow kubelets):
/// a `tower::Service` that hands each request straight to the router, with no TCP, TLS or HTTP
/// framing in between (which cost a fifth of a hollow lab's CPU). Its requests are the
/// cluster admin's, as if they carried the admin's client certificate.
#[derive(Clone)]
pub struct LocalTransport {
    state: Arc<State>,
}

impl<B> tower::Service<Request<B>> for LocalTransport
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Display,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<Response, std::convert::Infallible>> + Send>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let state = self.state.clone();
        Box::pin(async move { Ok(dispatch(state, true, req).await) })
    }
}

fn tls_config(pki: &Pki) -> Result<rustls::ServerConfig, ServerError> {
    let tls_err = |e: &dyn std::fmt::Display| ServerError::Tls(e.to_string());
    let certs = rustls_pemfile::certs(&mut pki.serving_cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err(&e))?;
    let key = rustls_pemfile::private_key(&mut pki.serving_key_pem.as_bytes())
        .map_err(|e| tls_err(&e))?
        .ok_or_else(|| ServerError::Tls("no private key in apiserver.key".into()))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in rustls_pemfile::certs(&mut pki.ca_cert_pem.as_bytes()) {
        roots
            .add(ca.map_err(|e| tls_err(&e))?)
            .map_err(|e| tls_err(&e))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // Client certificates are optional at the TLS layer: a request without one may still
    // carry a bearer token, and health endpoints are public.
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| tls_err(&e))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(&e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| tls_err(&e))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

fn text(status: StatusCode, body: &'static str) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn is_public(path: &str) -> bool {
    matches!(
        path,
        "/healthz" | "/livez" | "/readyz" | "/version" | "/version/"
    ) || path.starts_with("/healthz/")
        || path.starts_with("/livez/")
        || path.starts_with("/readyz/")
}

fn authenticated(state: &State, client_cert: bool, headers: &HeaderMap) -> bool {
    if client_cert {
        return true;
    }
    let auth = header_str(headers, header::AUTHORIZATION);
    auth.strip_prefix("Bearer ").is_some_and(|t| {
        let t = t.trim();
        constant_time_eq(t.as_bytes(), state.pki.admin_token.as_bytes())
            || crate::tokens::authenticate(state, t)
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

enum BodyError {
    TooLarge,
    Read(String),
}

/// Reads a request body of at most [`MAX_BODY_BYTES`]. A larger one is still read to its end
/// (within bounds) and discarded, so that an HTTP/1.1 client that is still sending can read
/// our 413 instead of seeing the connection reset.
async fn read_body<B>(mut body: B) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    const DRAIN_BYTES: usize = 64 * 1024 * 1024;
    const DRAIN_TIME: Duration = Duration::from_secs(2);
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    let deadline = tokio::time::Instant::now() + DRAIN_TIME;
    loop {
        let frame = if seen > MAX_BODY_BYTES {
            match tokio::time::timeout_at(deadline, body.frame()).await {
                Ok(f) => f,
                Err(_) => return Err(BodyError::TooLarge),
            }
        } else {
            body.frame().await
        };
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            seen = seen.saturating_add(data.len());
            if seen <= MAX_BODY_BYTES {
                buf.extend_from_slice(&data);
            } else if seen > DRAIN_BYTES {
                return Err(BodyError::TooLarge);
            }
        }
    }
    if seen > MAX_BODY_BYTES {
        return Err(BodyError::TooLarge);
    }
    Ok(buf.freeze())
}

async fn dispatch<B>(state: Arc<State>, client_cert: bool, req: Request<B>) -> Response
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    // pods/exec hands its connection over to a kubelet.
    let streaming =
        (path.ends_with("/exec") || path.ends_with("/attach")).then(|| crate::exec::Streaming {
            raw_query: parts.uri.query().unwrap_or("").to_string(),
            headers: parts.headers.clone(),
            on_upgrade: parts.extensions.remove::<hyper::upgrade::OnUpgrade>(),
        });
    if !is_public(&path) && !authenticated(&state, client_cert, &parts.headers) {
        return error_response(&ApiError::unauthorized());
    }
    let body = match read_body(body).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => {
            return error_response(&ApiError::too_large(format!(
                "Request entity too large: limit is {MAX_BODY_BYTES}"
            )));
        }
        Err(BodyError::Read(e)) => {
            return error_response(&ApiError::bad_request(format!(
                "reading the request body: {e}"
            )));
        }
    };
    let query = Query::parse(parts.uri.query());
    let accept = header_str(&parts.headers, header::ACCEPT);
    let started = std::time::Instant::now();
    let response = match route(
        &state,
        &parts.method,
        &path,
        query,
        accept,
        &parts.headers,
        body,
        streaming,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    tracing::debug!(method = %parts.method, %path, status = response.status().as_u16(), elapsed_us = started.elapsed().as_micros() as u64, "request");
    response
}

// One argument per part of the request the router reads; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
async fn route(
    state: &State,
    method: &Method,
    path: &str,
    query: Query,
    accept: String,
    headers: &HeaderMap,
    body: Bytes,
    streaming: Option<crate::exec::Streaming>,
) -> Result<Response, ApiError> {
    let trimmed = path.trim_end_matches('/');
    let segs: Vec<&str> = trimmed.trim_start_matches('/').split('/').collect();
    let get_only = || {
        if method != Method::GET {
            Err(ApiError::method_not_supported())
        } else {
            Ok(())
        }
    };
    let aggregated = discovery::wants_aggregated(&accept);
    let discovery_response = |v: serde_json::Value| {
        let mut r = json_response(StatusCode::OK, &v);
        if aggregated {
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(discovery::AGGREGATED_CONTENT_TYPE),
            );
        }
        r
    };
    match segs.as_slice() {
        ["healthz" | "livez" | "readyz", ..] => {
            get_only()?;
            return Ok(text(StatusCode::OK, "ok"));
        }
        ["version"] => {
            get_only()?;
            return Ok(json_response(StatusCode::OK, &version()));
        }
        ["api"] => {
            get_only()?;
            let v = if aggregated {
                discovery::aggregated(true)
            } else {
                discovery::api_versions(&format!("{}:{}", state.config.listen.ip(), state.port))
            };
            return Ok(discovery_response(v));
        }
        ["apis"] => {
            get_only()?;
            let v = if aggregated {
                discovery::aggregated(false)
            } else {
                discovery::api_group_list()
            };
            return Ok(discovery_response(v));
        }
        ["api", version] => {
            get_only()?;
            return discovery::api_resource_list("", version)
                .map(|v| json_response(StatusCode::OK, &v))
                .ok_or_else(not_found);
        }
        ["apis", group] => {
            get_only()?;
            return discovery::api_group_document(group)
                .map(|v| json_response(StatusCode::OK, &v))
                .ok_or_else(not_found);
        }
        ["apis", group, version] => {
            get_only()?;
            return discovery::api_resource_list(group, version)
                .map(|v| json_response(StatusCode::OK, &v))
                .ok_or_else(not_found);
        }
        ["openapi", "v3"] => {
            get_only()?;
            return Ok(json_response(StatusCode::OK, &state.openapi.v3_index()));
        }
        ["openapi", "v3", rest @ ..] => {
            get_only()?;
            let (doc, hash) = state
                .openapi
                .v3_document(&rest.join("/"))
                .ok_or_else(not_found)?;
            let mut r = rest::bytes_response(StatusCode::OK, doc);
            // Documents are addressed by hash, so a client may cache them for good.
            if query.get("hash") == Some(hash.as_str()) {
                r.headers_mut().insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, immutable"),
                );
            }
            r.headers_mut().insert(
                header::ETAG,
                HeaderValue::from_str(&format!("\"{hash}\""))
                    .unwrap_or(HeaderValue::from_static("\"\"")),
            );
            return Ok(r);
        }
        ["openapi", "v2"] => {
            get_only()?;
            // kubectl asks for protobuf first and falls back to v3 documents; we only speak JSON.
            if !accept.is_empty() && !accept.contains("application/json") && !accept.contains("*/*")
            {
                return Err(ApiError::not_acceptable(
                    "only application/json is served for /openapi/v2",
                ));
            }
            return Ok(rest::bytes_response(
                StatusCode::OK,
                state.openapi.v2_document(),
            ));
        }
        _ => {}
    }
    let rr = request::parse(method, path, query.flag("watch"))?.ok_or_else(not_found)?;
    let content_type = header_str(headers, header::CONTENT_TYPE);
    let mut call = Call {
        state,
        rr,
        query,
        accept,
        content_type,
        body,
        warnings: Vec::new(),
        streaming,
    };
    let result = rest::handle_with_warnings(&mut call).await;
    let mut response = match result {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    for w in bounded_warnings(&call.warnings) {
        if let Ok(v) = HeaderValue::from_str(&format!("299 - {}", serde_json::Value::String(w))) {
            response.headers_mut().append(header::WARNING, v);
        }
    }
    Ok(response)
}

/// Upstream's limits on warning headers: duplicates dropped; past 4 KiB in all, each warning
/// is cut to 256 characters and those that still do not fit are left out. We also stop at 50
/// headers, because hyper-based clients (kube-rs among them) refuse responses with more than
/// 100 headers in all.
fn bounded_warnings(warnings: &[String]) -> Vec<String> {
    const MAX_TOTAL: usize = 4 * 1024;
    const TRUNCATE_TO: usize = 256;
    const MAX_COUNT: usize = 50;
    // A body with thousands of unknown fields records thousands of warnings: dedup in O(n).
    let mut seen = std::collections::HashSet::new();
    let unique: Vec<&String> = warnings
        .iter()
        .filter(|w| seen.insert(w.as_str()))
        .collect();
    let total: usize = unique.iter().map(|w| w.len()).sum();
    if total <= MAX_TOTAL && unique.len() <= MAX_COUNT {
        return unique.into_iter().cloned().collect();
    }
    let mut out = Vec::new();
    let mut used = 0;
    for w in unique {
        let cut: String = w.chars().take(TRUNCATE_TO).collect();
        if used + cut.len() > MAX_TOTAL || out.len() == MAX_COUNT {
            break;
        }
        used += cut.len();
        out.push(cut);
    }
    out
}

fn not_found() -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
}

fn version() -> serde_json::Value {
    let v = KUBERNETES_VERSION.trim_start_matches('v');
    let mut parts = v.split('.');
    let major = parts.next().unwrap_or("1");
    let minor = parts.next().unwrap_or("0");
    json!({
        "major": major,
        "minor": minor,
        "emulationMajor": major,
        "emulationMinor": minor,
        "minCompatibilityMajor": major,
        "minCompatibilityMinor": minor,
        "gitVersion": format!("{KUBERNETES_VERSION}+kubelab"),
        "gitCommit": env!("CARGO_PKG_VERSION"),
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "none (kubelab is written in Rust)",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if std::env::consts::ARCH == "x86_64" { "amd64" } else { std::env::consts::ARCH }),
    })
}
