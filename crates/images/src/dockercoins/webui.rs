//! DockerCoins' `webui`, the original Express app: `/` redirects to `/index.html`, `/json`
//! reads redis (`HLEN wallet`, `GET hashes`) and adds the time, and `/index.html` is a page
//! that polls `/json` every second, keeps 250 samples and plots hashes/second.
//!
//! The page is our own, self-contained (a canvas, no jQuery/d3/Rickshaw from a CDN: a lab
//! has no internet). For tests it sets `data-points`, `data-nonzero-points` and
//! `data-speed` on the `#graph` canvas and `~N hashes/second` in `#speed`.
//!
//! Differences from the original: `hashes` is a JSON number (the original passes redis's
//! string through; its page subtracts them, which JavaScript coerces) and 0 before the
//! first worker counts; when redis is unreachable `/json` answers 503 at once instead of
//! hanging in the node client's offline queue.

use std::future::Future;
use std::io;
use std::net::TcpListener as StdTcpListener;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::net::TcpStream;
use tokio::sync::Mutex;

use super::net::{self, NetError, RedisCallError, RedisConnection, Request, Response};
use super::{Env, IDLE_TIMEOUT, Log};
use crate::redis::resp::Reply;

/// The page at `/index.html`.
pub const INDEX_HTML: &str = include_str!("index.html");

/// What `/json` reports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    pub coins: i64,
    pub hashes: i64,
    /// Unix time in seconds, millisecond precision (`Date.now() / 1000`).
    pub now: f64,
}

impl Stats {
    /// `{"coins":3,"hashes":120,"now":1710929472.123}`, as Express's `res.json`.
    pub fn to_json(&self) -> String {
        format!(
            "{{\"coins\":{},\"hashes\":{},\"now\":{}}}",
            self.coins,
            self.hashes,
            js_number(self.now)
        )
    }
}

/// A float as JavaScript prints it (no trailing `.0`).
fn js_number(value: f64) -> String {
    let text = format!("{:.3}", value);
    let text = text.trim_end_matches('0').trim_end_matches('.');
    text.to_string()
}

fn unix_now() -> f64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    since.as_millis() as f64 / 1000.0
}

/// The webui's redis client: one connection, made again after an error.
pub struct RedisSource {
    host: String,
    port: u16,
    connection: Mutex<Option<RedisConnection>>,
}

impl RedisSource {
    pub fn new(host: String, port: u16) -> RedisSource {
        RedisSource {
            host,
            port,
            connection: Mutex::new(None),
        }
    }

    /// `HLEN wallet` and `GET hashes` now.
    pub async fn stats(&self) -> Result<Stats, RedisCallError> {
        let mut slot = self.connection.lock().await;
        if slot.is_none() {
            *slot = Some(RedisConnection::connect(&self.host, self.port).await?);
        }
        let Some(connection) = slot.as_mut() else {
            return Err(NetError::Closed.into());
        };
        let result = async {
            let coins = match connection.call(&["HLEN", "wallet"]).await? {
                Reply::Integer(n) => n,
                _ => 0,
            };
            let hashes = match connection.call(&["GET", "hashes"]).await? {
                Reply::Bulk(b) => String::from_utf8_lossy(&b).trim().parse().unwrap_or(0),
                _ => 0,
            };
            Ok::<_, RedisCallError>((coins, hashes))
        }
        .await;
        match result {
            Ok((coins, hashes)) => Ok(Stats {
                coins,
                hashes,
                now: unix_now(),
            }),
            Err(e) => {
                if matches!(e, RedisCallError::Net(_)) {
                    *slot = None;
                }
                Err(e)
            }
        }
    }

    /// What node's redis client prints for a failure.
    fn describe(&self, error: &RedisCallError) -> String {
        let (host, port) = (&self.host, self.port);
        match error {
            RedisCallError::Net(NetError::Resolve { .. }) => format!(
                "Redis error Error: Redis connection to {host}:{port} failed - getaddrinfo ENOTFOUND {host}"
            ),
            RedisCallError::Net(NetError::Connect { .. }) => format!(
                "Redis error Error: Redis connection to {host}:{port} failed - connect ECONNREFUSED {host}:{port}"
            ),
            RedisCallError::Net(NetError::Timeout) => format!(
                "Redis error Error: Redis connection to {host}:{port} failed - connect ETIMEDOUT {host}:{port}"
            ),
            RedisCallError::Net(e) => format!("Redis error Error: {e}"),
            RedisCallError::Reply(e) => format!("Redis error ReplyError: {e}"),
        }
    }
}

fn express(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
    let body = body.into();
    let length = body.len().to_string();
    Response::new(status, body)
        .header("X-Powered-By", "Express")
        .header("Content-Type", content_type)
        .header("Content-Length", length)
}

/// The response to a request that does not need redis; `None` for `/json`.
pub fn respond_static(request: &Request) -> Option<Response> {
    let path = request.target.split('?').next().unwrap_or("");
    let get = matches!(request.method.as_str(), "GET" | "HEAD");
    Some(match path {
        "/" if get => {
            let html = request
                .header("accept")
                .is_some_and(|a| a.contains("text/html"));
            let response = if html {
                express(
                    302,
                    "text/html; charset=utf-8",
                    "<p>Found. Redirecting to <a href=\"/index.html\">/index.html</a></p>",
                )
            } else {
                express(302, "text/plain; charset=utf-8", "Found. Redirecting to /index.html")
            };
            response
                .header("Location", "/index.html")
                .header("Vary", "Accept")
        }
        "/json" if get => return None,
        "/index.html" if get => express(200, "text/html; charset=UTF-8", INDEX_HTML)
            .header("Accept-Ranges", "bytes")
            .header("Cache-Control", "public, max-age=0"),
        _ => express(
            404,
            "text/html; charset=utf-8",
            format!(
                "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Error</title>\n</head>\n<body>\n<pre>Cannot {} {}</pre>\n</body>\n</html>\n",
                request.method, path
            ),
        )
        .header("Content-Security-Policy", "default-src 'none'")
        .header("X-Content-Type-Options", "nosniff"),
    })
}

/// Serves webui on `listener` until `shutdown` completes, reading `redis`. Must run inside
/// a tokio runtime.
pub async fn serve_webui(
    listener: StdTcpListener,
    redis: RedisSource,
    log: Log,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let redis = Arc::new(redis);
    net::accept_until(listener, shutdown, move |stream, _peer| {
        let (redis, log) = (redis.clone(), log.clone());
        async move {
            let _ = serve_connection(stream, &redis, &log).await;
        }
    })
    .await
}

async fn serve_connection(mut stream: TcpStream, redis: &RedisSource, log: &Log) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let bad_request = Response::new(400, "").header("Connection", "close");
    let mut buf = Vec::new();
    loop {
        let Some(request) = net::next_request(
            &mut stream,
            &mut buf,
            IDLE_TIMEOUT,
            &bad_request,
            "HTTP/1.1",
        )
        .await
        else {
            return Ok(());
        };
        let response = match respond_static(&request) {
            Some(r) => r,
            None => match redis.stats().await {
                Ok(stats) => express(200, "application/json; charset=utf-8", stats.to_json()),
                Err(e) => {
                    log.line(&redis.describe(&e));
                    express(503, "text/plain; charset=utf-8", "Redis unavailable\n")
                }
            },
        };
        let keep = request.wants_keepalive();
        let response = if keep {
            response
                .header("Connection", "keep-alive")
                .header("Keep-Alive", "timeout=5")
        } else {
            response.header("Connection", "close")
        };
        net::write_response(&mut stream, &response, "HTTP/1.1", request.method == "HEAD").await?;
        if !keep {
            return Ok(());
        }
    }
}

/// The container: Express's start-up line on stdout (errors go to stderr, like
/// `console.error`), then the server.
pub(crate) async fn run_server(
    listener: StdTcpListener,
    env: &Env,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let port = listener.local_addr()?.port();
    Log::stdout().line(&format!("WEBUI running on port {port}"));
    let (host, redis_port) = env.redis();
    serve_webui(
        listener,
        RedisSource::new(host, redis_port),
        Log::stderr(),
        shutdown,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(target: &str, accept: Option<&str>) -> Request {
        Request {
            method: "GET".into(),
            target: target.into(),
            version: "HTTP/1.1".into(),
            headers: accept
                .map(|a| vec![("Accept".to_string(), a.to_string())])
                .unwrap_or_default(),
            body: vec![],
        }
    }

    #[test]
    fn json_like_express() {
        let stats = Stats {
            coins: 3,
            hashes: 120,
            now: 1710929472.123,
        };
        assert_eq!(
            stats.to_json(),
            "{\"coins\":3,\"hashes\":120,\"now\":1710929472.123}"
        );
        assert_eq!(js_number(1710929472.0), "1710929472");
        assert_eq!(js_number(1.5), "1.5");
    }

    #[test]
    fn routes() {
        let redirect = respond_static(&get("/", None)).unwrap();
        assert_eq!(redirect.status, 302);
        assert!(
            redirect
                .headers
                .contains(&("Location".into(), "/index.html".into()))
        );
        assert_eq!(redirect.body, b"Found. Redirecting to /index.html");
        let page = respond_static(&get("/index.html", None)).unwrap();
        assert_eq!(page.status, 200);
        let html = String::from_utf8(page.body).unwrap();
        assert!(html.contains("setInterval(refresh, 1000)"));
        assert!(html.contains("SAMPLES = 250"));
        assert!(
            !html.contains("<script src="),
            "the page must not need the internet"
        );
        assert!(respond_static(&get("/json?x", None)).is_none());
        let missing = respond_static(&get("/rickshaw.min.js", Some("text/html"))).unwrap();
        assert_eq!(missing.status, 404);
        assert!(
            String::from_utf8_lossy(&missing.body)
                .contains("<pre>Cannot GET /rickshaw.min.js</pre>")
        );
    }
}
