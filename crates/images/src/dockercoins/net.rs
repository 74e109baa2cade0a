//! The network pieces DockerCoins' services share: a small HTTP/1.1 server side (request
//! reading, response writing), an HTTP client like the one `requests` gives the worker (one
//! connection per call, `Connection: close`), a RESP client like redis-py's, and name
//! resolution through the system resolver (getaddrinfo, so the pod's /etc/resolv.conf and
//! the cluster DNS decide) with short timeouts.
//!
//! The servers are deliberately small, like the nginx image's: each DockerCoins service
//! answers three routes and must print its original's exact log lines.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::redis::resp::{self, Reply};

/// The longest request or response head read.
const MAX_HEAD: usize = 16 * 1024;
/// The largest body a service reads (the worker sends 32 bytes).
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// How long a name lookup may take before the call fails.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a TCP connect may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a reply may take once connected.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a call to another service failed, with what the original's libraries would say.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// getaddrinfo failed: `code` is its `EAI_*` value as Python shows it (`-2`).
    #[error("[Errno {code}] {message}")]
    Resolve { code: i32, message: String },
    /// connect(2) failed: `errno` as Python shows it (`111`).
    #[error("[Errno {errno}] {message}")]
    Connect { errno: i32, message: String },
    #[error("timed out")]
    Timeout,
    #[error("Connection closed by server.")]
    Closed,
    #[error("{0}")]
    Protocol(String),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// `Name or service not known` from std's `failed to lookup address information: Name or
/// service not known`, with the EAI code Python prints next to it.
fn resolve_error(e: &io::Error) -> NetError {
    let text = e.to_string();
    let message = text
        .strip_prefix("failed to lookup address information: ")
        .unwrap_or(&text)
        .to_string();
    let code = match message.as_str() {
        "Name or service not known" => -2,
        "Temporary failure in name resolution" => -3,
        "Non-recoverable failure in name resolution" => -4,
        "No address associated with hostname" => -5,
        _ => -2,
    };
    NetError::Resolve { code, message }
}

fn strip_os_error(e: &io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// After `shutdown`, how long the server goes on accepting until a quiet spell without a new
/// connection. The kubelet signals the container while the pod's endpoint is still being
/// removed; connections kube-proxy sent here before the rule changed still arrive meanwhile.
pub const DRAIN_QUIET: Duration = Duration::from_secs(1);

/// After the last accept, how long the requests in hand (rng's queue, webui's keep-alive
/// connections) may take. Well inside the default 30 s grace period, so the process ends on
/// its own instead of being killed.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// Accepts on `listener` until `shutdown` completes and hands every connection, with its
/// peer, to `serve` on a task of its own (the accept loop the three HTTP services share).
/// Must run inside a tokio runtime.
///
/// Then it drains, as the originals effectively do (Python as PID 1 ignores SIGTERM and
/// serves on until the grace period ends): it keeps accepting until [`DRAIN_QUIET`] passes
/// without a connection, and waits up to [`DRAIN_LIMIT`] for the requests it took, so a
/// deleted rng answers the workers queued on it instead of resetting them.
pub async fn accept_until<F, Fut>(
    listener: std::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
    serve: F,
) -> io::Result<()>
where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let mut in_hand = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                // Out of descriptors and the like: wait instead of spinning.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        in_hand.spawn(serve(stream, peer));
        // Forget finished connections so a long-running server holds no list of them.
        while in_hand.try_join_next().is_some() {}
    }
    loop {
        tokio::select! {
            r = listener.accept() => {
                if let Ok((stream, peer)) = r {
                    in_hand.spawn(serve(stream, peer));
                }
            }
            _ = tokio::time::sleep(DRAIN_QUIET) => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN_LIMIT, async {
        while in_hand.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}

/// Resolves `host` (getaddrinfo) and connects to the first address that answers, IPv4
/// first, as Python's `socket.create_connection` does.
pub async fn connect(host: &str, port: u16) -> Result<TcpStream, NetError> {
    let lookup = tokio::net::lookup_host((host, port));
    let addresses: Vec<SocketAddr> = match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
        Err(_) => {
            return Err(NetError::Resolve {
                code: -3,
                message: "Temporary failure in name resolution".into(),
            });
        }
        Ok(Err(e)) => return Err(resolve_error(&e)),
        Ok(Ok(found)) => {
            let mut v: Vec<SocketAddr> = found.collect();
            v.sort_by_key(|a| a.is_ipv6());
            v
        }
    };
    let mut last = NetError::Resolve {
        code: -5,
        message: "No address associated with hostname".into(),
    };
    for address in addresses {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
            Err(_) => last = NetError::Timeout,
            Ok(Err(e)) => {
                last = NetError::Connect {
                    errno: e.raw_os_error().unwrap_or(0),
                    message: strip_os_error(&e),
                }
            }
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
        }
    }
    Err(last)
}

/// One HTTP request as a server reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub target: String,
    /// `HTTP/1.1` as sent.
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the client wants the connection kept open after the response.
    pub fn wants_keepalive(&self) -> bool {
        let connection = self.header("connection").unwrap_or("").to_ascii_lowercase();
        if self.version == "HTTP/1.1" {
            !connection.contains("close")
        } else {
            connection.contains("keep-alive")
        }
    }
}

/// Why a request could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The client closed the connection between requests.
    #[error("connection closed")]
    Closed,
    #[error("bad request: {0}")]
    Bad(&'static str),
    #[error("{0}")]
    Io(#[from] io::Error),
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads into `buf` until `done` finds a complete message in it.
async fn fill_until<S, T>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    limit: usize,
    mut done: impl FnMut(&[u8]) -> Result<Option<T>, ReadError>,
) -> Result<T, ReadError>
where
    S: AsyncRead + Unpin,
{
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(found) = done(buf)? {
            return Ok(found);
        }
        if buf.len() > limit {
            return Err(ReadError::Bad("message too large"));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(if buf.is_empty() {
                ReadError::Closed
            } else {
                ReadError::Bad("connection closed mid-message")
            });
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Parses a head (`first line` + headers) that ends at `end`.
fn parse_head(head: &[u8]) -> Result<(String, Vec<(String, String)>), ReadError> {
    let text = std::str::from_utf8(head).map_err(|_| ReadError::Bad("head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or(ReadError::Bad("header without a colon"))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    Ok((first, headers))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Decodes a chunked body at the start of `buf`: `(body, bytes used)`, `None` if incomplete.
pub fn decode_chunked(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, ReadError> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let Some(line_end) = find(&buf[at..], b"\r\n").map(|i| at + i) else {
            return Ok(None);
        };
        let size_text =
            std::str::from_utf8(&buf[at..line_end]).map_err(|_| ReadError::Bad("chunk size"))?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size =
            usize::from_str_radix(size_text, 16).map_err(|_| ReadError::Bad("chunk size"))?;
        if size > MAX_BODY {
            return Err(ReadError::Bad("chunk too large"));
        }
        let data = line_end + 2;
        if size == 0 {
            // Trailers, then the final CRLF.
            let Some(end) = find(&buf[line_end..], b"\r\n\r\n") else {
                return Ok(None);
            };
            return Ok(Some((body, line_end + end + 4)));
        }
        if buf.len() < data + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[data..data + size]);
        if body.len() > MAX_BODY {
            return Err(ReadError::Bad("body too large"));
        }
        at = data + size + 2;
    }
}

/// The next request on `stream`, or None once the connection is done: idle past `idle`,
/// closed or unreadable. A malformed request is answered with `bad_request` (in `version`)
/// first, as the originals' servers answer 400 and hang up.
pub async fn next_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    idle: Duration,
    bad_request: &Response,
    version: &str,
) -> Option<Request> {
    match tokio::time::timeout(idle, read_request(stream, buf)).await {
        Ok(Ok(request)) => Some(request),
        Ok(Err(ReadError::Bad(_))) => {
            let _ = write_response(stream, bad_request, version, false).await;
            None
        }
        _ => None,
    }
}

/// Reads the next request from `stream`; bytes past it stay in `buf` for the next call
/// (pipelining).
pub async fn read_request<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> Result<Request, ReadError> {
    let head_end = fill_until(stream, buf, MAX_HEAD, |b| Ok(find(b, b"\r\n\r\n"))).await?;
    let (first, headers) = parse_head(&buf[..head_end])?;
    let mut parts = first.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Bad("request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(ReadError::Bad("HTTP version"));
    }
    let (method, target, version) = (method.to_string(), target.to_string(), version.to_string());
    buf.drain(..head_end + 4);
    let chunked = header(&headers, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        let (body, used) = fill_until(stream, buf, MAX_BODY + MAX_HEAD, decode_chunked).await?;
        buf.drain(..used);
        body
    } else {
        let length = match header(&headers, "content-length") {
            None => 0,
            Some(v) => v
                .parse::<usize>()
                .map_err(|_| ReadError::Bad("content-length"))?,
        };
        if length > MAX_BODY {
            return Err(ReadError::Bad("body too large"));
        }
        fill_until(stream, buf, MAX_BODY, |b| {
            Ok((b.len() >= length).then_some(()))
        })
        .await?;
        buf.drain(..length).collect()
    };
    Ok(Request {
        method,
        target,
        version,
        headers,
        body,
    })
}

/// A response as a service builds it; headers are written in the given order, which is
/// each original server's own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// The bytes on the wire: `version` is the status line's (`HTTP/1.0` for werkzeug);
    /// `head_only` leaves the body out (HEAD).
    pub fn to_bytes(&self, version: &str, head_only: bool) -> Vec<u8> {
        let mut out = format!("{version} {} {}\r\n", self.status, reason(self.status));
        for (n, v) in &self.headers {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if !head_only {
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Writes a response.
pub async fn write_response<S: AsyncWrite + Unpin>(
    stream: &mut S,
    response: &Response,
    version: &str,
    head_only: bool,
) -> io::Result<()> {
    stream
        .write_all(&response.to_bytes(version, head_only))
        .await?;
    stream.flush().await
}

/// `http://host[:port]/path`, the only kind of URL the worker calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl {
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl HttpUrl {
    pub fn parse(text: &str) -> Option<HttpUrl> {
        let rest = text.strip_prefix("http://")?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, p.parse().ok()?),
            _ => (authority, 80),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        (!host.is_empty()).then(|| HttpUrl {
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }

    /// The `Host` header: the port only when it is not 80.
    fn host_header(&self) -> String {
        if self.port == 80 {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A response as the client reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// One request on a fresh connection, as `requests.get`/`requests.post` without a session
/// make it.
pub async fn http_call(
    url: &HttpUrl,
    method: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<ClientResponse, NetError> {
    let mut stream = connect(&url.host, url.port).await?;
    let mut head = format!(
        "{method} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: python-requests/2.31.0\r\nAccept-Encoding: identity\r\nAccept: */*\r\nConnection: close\r\n",
        url.path,
        url.host_header()
    );
    if let Some(t) = content_type {
        head.push_str(&format!("Content-Type: {t}\r\n"));
    }
    if method != "GET" || !body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    let exchange = async {
        stream.write_all(&request).await?;
        read_client_response(&mut stream).await
    };
    match tokio::time::timeout(REPLY_TIMEOUT, exchange).await {
        Err(_) => Err(NetError::Timeout),
        Ok(r) => r,
    }
}

async fn read_client_response(stream: &mut TcpStream) -> Result<ClientResponse, NetError> {
    let mut buf = Vec::new();
    let bad = |e: ReadError| match e {
        ReadError::Closed => NetError::Closed,
        ReadError::Io(e) => NetError::Io(e),
        ReadError::Bad(why) => NetError::Protocol(why.to_string()),
    };
    let head_end = fill_until(stream, &mut buf, MAX_HEAD, |b| Ok(find(b, b"\r\n\r\n")))
        .await
        .map_err(bad)?;
    let (first, headers) = parse_head(&buf[..head_end]).map_err(bad)?;
    let status = first
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| NetError::Protocol(format!("bad status line: {first}")))?;
    buf.drain(..head_end + 4);
    let chunked = header(&headers, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        let (body, _) = fill_until(stream, &mut buf, MAX_BODY + MAX_HEAD, decode_chunked)
            .await
            .map_err(bad)?;
        body
    } else if let Some(length) = header(&headers, "content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| NetError::Protocol("bad content-length".into()))?;
        fill_until(stream, &mut buf, MAX_BODY, |b| {
            Ok((b.len() >= length).then_some(()))
        })
        .await
        .map_err(bad)?;
        buf.truncate(length);
        buf
    } else {
        stream.read_to_end(&mut buf).await?;
        buf
    };
    Ok(ClientResponse { status, body })
}

/// A connection to Redis, as redis-py keeps one in its pool.
pub struct RedisConnection {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// A Redis error reply, which the caller shows as redis-py's `ResponseError`.
#[derive(Debug, thiserror::Error)]
pub enum RedisCallError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("{0}")]
    Reply(String),
}

impl RedisConnection {
    pub async fn connect(host: &str, port: u16) -> Result<RedisConnection, NetError> {
        Ok(RedisConnection {
            stream: connect(host, port).await?,
            buf: Vec::new(),
        })
    }

    /// Sends a command and reads its reply; an error reply is [`RedisCallError::Reply`].
    pub async fn call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Reply, RedisCallError> {
        let exchange = async {
            self.stream
                .write_all(&resp::encode_command(args))
                .await
                .map_err(NetError::Io)?;
            let mut chunk = [0u8; 8192];
            loop {
                match resp::parse_reply(&self.buf) {
                    Err(e) => return Err(NetError::Protocol(e.to_string())),
                    Ok(Some((reply, used))) => {
                        self.buf.drain(..used);
                        return Ok(reply);
                    }
                    Ok(None) => {}
                }
                let n = self.stream.read(&mut chunk).await.map_err(NetError::Io)?;
                if n == 0 {
                    return Err(NetError::Closed);
                }
                self.buf.extend_from_slice(&chunk[..n]);
            }
        };
        let reply = match tokio::time::timeout(REPLY_TIMEOUT, exchange).await {
            Err(_) => return Err(NetError::Timeout.into()),
            Ok(r) => r?,
        };
        match reply {
            Reply::Error(e) => Err(RedisCallError::Reply(e)),
            other => Ok(other),
        }
    }
}

/// `host[:port]` with `default_port`.
pub fn host_and_port(text: &str, default_port: u16) -> (String, u16) {
    match text.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => {
            (h.to_string(), p.parse().unwrap_or(default_port))
        }
        _ => (text.to_string(), default_port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request accepted before SIGTERM, and one that arrives just after it (kube-proxy's
    /// rule not yet gone), are both answered before the server returns.
    #[tokio::test]
    async fn shutdown_drains_the_requests_in_hand() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(accept_until(
            listener,
            async {
                let _ = stopped.await;
            },
            |mut stream, _peer| async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let _ = stream.write_all(b"served").await;
            },
        ));
        async fn answer(mut stream: TcpStream) -> String {
            let mut reply = String::new();
            stream.read_to_string(&mut reply).await.unwrap();
            reply
        }
        let before = TcpStream::connect(address).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop.send(()).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!server.is_finished(), "a request is still in hand");
        let after = TcpStream::connect(address).await.unwrap();
        assert_eq!(answer(before).await, "served");
        assert_eq!(answer(after).await, "served");
        tokio::time::timeout(DRAIN_QUIET * 4, server)
            .await
            .expect("the server returns once drained")
            .unwrap()
            .unwrap();
        assert!(
            TcpStream::connect(address).await.is_err(),
            "the listener is closed"
        );
    }

    #[test]
    fn urls() {
        assert_eq!(
            HttpUrl::parse("http://rng/32"),
            Some(HttpUrl {
                host: "rng".into(),
                port: 80,
                path: "/32".into()
            })
        );
        assert_eq!(
            HttpUrl::parse("http://127.0.0.1:8080"),
            Some(HttpUrl {
                host: "127.0.0.1".into(),
                port: 8080,
                path: "/".into()
            })
        );
        assert_eq!(HttpUrl::parse("https://rng/"), None);
        assert_eq!(HttpUrl::parse("http:///x"), None);
        assert_eq!(host_and_port("redis", 6379), ("redis".into(), 6379));
        assert_eq!(
            host_and_port("127.0.0.1:7000", 6379),
            ("127.0.0.1".into(), 7000)
        );
    }

    #[test]
    fn chunked_bodies() {
        let buf = b"4\r\nWiki\r\n5;x=1\r\npedia\r\n0\r\n\r\nNEXT";
        let (body, used) = decode_chunked(buf).unwrap().unwrap();
        assert_eq!(body, b"Wikipedia");
        assert_eq!(&buf[used..], b"NEXT");
        assert!(decode_chunked(&buf[..10]).unwrap().is_none());
        assert!(decode_chunked(b"zz\r\n").is_err());
    }

    #[tokio::test]
    async fn requests_are_read_one_after_the_other() {
        let wire =
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /32 HTTP/1.0\r\n\r\n";
        let mut reader = &wire[..];
        let mut buf = Vec::new();
        let first = read_request(&mut reader, &mut buf).await.unwrap();
        assert_eq!(
            (first.method.as_str(), first.body.as_slice()),
            ("POST", &b"abc"[..])
        );
        assert!(first.wants_keepalive());
        let second = read_request(&mut reader, &mut buf).await.unwrap();
        assert_eq!(second.target, "/32");
        assert!(!second.wants_keepalive());
        assert!(matches!(
            read_request(&mut reader, &mut buf).await,
            Err(ReadError::Closed)
        ));
        let mut bad = &b"NONSENSE\r\n\r\n"[..];
        assert!(matches!(
            read_request(&mut bad, &mut Vec::new()).await,
            Err(ReadError::Bad(_))
        ));
    }

    #[test]
    fn responses_keep_header_order() {
        let r = Response::new(200, "hi")
            .header("Content-Type", "text/plain")
            .header("Content-Length", "2");
        assert_eq!(
            r.to_bytes("HTTP/1.0", false),
            b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
        );
        assert!(r.to_bytes("HTTP/1.1", true).ends_with(b"\r\n\r\n"));
    }
}
