//! DockerCoins' `rng`: random bytes over HTTP, as the original Flask app served by
//! werkzeug's single-threaded development server. `GET /` names the host; `GET /<n>`
//! waits 0.1 s and returns `n` random bytes. Requests are answered **one at a time**:
//! others wait their turn (in arrival order), which caps one rng at about 10 requests per
//! second — the bottleneck the course measures and then removes with a DaemonSet.
//!
//! Like werkzeug's server, it answers in HTTP/1.0 and closes the connection after each
//! response, and logs each request on stderr as `<ip> - - [<date>] "<request line>" <status> -`.
//! Requests are read concurrently (a client that connects and sends nothing does not
//! block the others); only the answering is serialised.

use std::future::Future;
use std::io;
use std::net::TcpListener as StdTcpListener;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use rand::RngCore;
use tokio::sync::Mutex;

use super::net::{self, Response};
use super::{Env, IDLE_TIMEOUT, Log, peer_ip};

/// The original's "little bit of delay" per request.
pub const DELAY: Duration = Duration::from_millis(100);
/// The most bytes one request gets.
pub const MAX_BYTES: usize = 1024 * 1024;
/// The `Server` header of the original image.
const SERVER: &str = "Werkzeug/0.12.2 Python/3.6.2";

/// werkzeug's 404 page.
const NOT_FOUND_PAGE: &str = "<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 3.2 Final//EN\">\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n<p>The requested URL was not found on the server.  If you entered the URL manually please check your spelling and try again.</p>\n";
/// werkzeug's 405 page.
const NOT_ALLOWED_PAGE: &str = "<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 3.2 Final//EN\">\n<title>405 Method Not Allowed</title>\n<h1>Method Not Allowed</h1>\n<p>The method is not allowed for the requested URL.</p>\n";

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /`.
    Index,
    /// `GET /<n>`: `n` bytes (capped at [`MAX_BYTES`]).
    Random(usize),
    NotFound,
    MethodNotAllowed,
}

/// Flask's routing of the original: `/` and `/<int:how_many_bytes>`, GET (and HEAD,
/// OPTIONS, which Flask adds).
pub fn route(method: &str, target: &str) -> Route {
    let path = target.split('?').next().unwrap_or("");
    let found = if path == "/" {
        Route::Index
    } else {
        match path.strip_prefix('/') {
            Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                let n = digits.parse::<usize>().unwrap_or(MAX_BYTES);
                Route::Random(n.min(MAX_BYTES))
            }
            _ => return Route::NotFound,
        }
    };
    if matches!(method, "GET" | "HEAD" | "OPTIONS") {
        found
    } else {
        Route::MethodNotAllowed
    }
}

/// The response to `route` (without the delay, which the server takes in turn).
pub fn respond(route: Route, hostname: &str) -> Response {
    let (status, content_type, body): (u16, &str, Vec<u8>) = match route {
        Route::Index => (
            200,
            "text/html; charset=utf-8",
            format!("RNG running on {hostname}\n").into_bytes(),
        ),
        Route::Random(n) => {
            let mut bytes = vec![0u8; n];
            rand::rng().fill_bytes(&mut bytes);
            (200, "application/octet-stream", bytes)
        }
        Route::NotFound => (404, "text/html", NOT_FOUND_PAGE.as_bytes().to_vec()),
        Route::MethodNotAllowed => (405, "text/html", NOT_ALLOWED_PAGE.as_bytes().to_vec()),
    };
    let length = body.len().to_string();
    let mut response = Response::new(status, body)
        .header("Content-Type", content_type)
        .header("Content-Length", length);
    if route == Route::MethodNotAllowed {
        response = response.header("Allow", "HEAD, OPTIONS, GET");
    }
    response
        .header("Server", SERVER)
        .header("Date", http_date())
}

fn http_date() -> String {
    Timestamp::now()
        .to_zoned(TimeZone::UTC)
        .strftime("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// werkzeug's access-log line.
pub fn access_line(ip: &str, request_line: &str, status: u16) -> String {
    let date = Timestamp::now()
        .to_zoned(TimeZone::UTC)
        .strftime("%d/%b/%Y %H:%M:%S");
    format!("{ip} - - [{date}] \"{request_line}\" {status} -")
}

/// Serves rng on `listener` until `shutdown` completes, with `delay` per random-bytes
/// request and one request answered at a time. Must run inside a tokio runtime.
pub async fn serve_rng(
    listener: StdTcpListener,
    hostname: String,
    delay: Duration,
    log: Log,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    // tokio's Mutex is fair: waiting requests are answered in arrival order.
    let turn = Arc::new(Mutex::new(()));
    let hostname: Arc<str> = hostname.into();
    net::accept_until(listener, shutdown, move |mut stream, peer| {
        let (turn, hostname, log) = (turn.clone(), hostname.clone(), log.clone());
        async move {
            let mut buf = Vec::new();
            let bad_request = Response::new(400, "").header("Content-Length", "0");
            let Some(request) = net::next_request(
                &mut stream,
                &mut buf,
                IDLE_TIMEOUT,
                &bad_request,
                "HTTP/1.0",
            )
            .await
            else {
                return;
            };
            let route = route(&request.method, &request.target);
            let _my_turn = turn.lock().await;
            if matches!(route, Route::Random(_)) {
                tokio::time::sleep(delay).await;
            }
            let response = respond(route, &hostname);
            let head_only = request.method == "HEAD";
            let _ = net::write_response(&mut stream, &response, "HTTP/1.0", head_only).await;
            let line = format!("{} {} {}", request.method, request.target, request.version);
            log.line(&access_line(&peer_ip(&peer), &line, response.status));
        }
    })
    .await
}

/// The container: werkzeug's start-up line, then the server.
pub(crate) async fn run_server(
    listener: StdTcpListener,
    env: &Env,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let log = Log::stderr();
    let address = listener.local_addr()?;
    log.line(&format!(
        " * Running on http://{address}/ (Press CTRL+C to quit)"
    ));
    serve_rng(listener, env.hostname(), DELAY, log, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_like_flask() {
        assert_eq!(route("GET", "/"), Route::Index);
        assert_eq!(route("GET", "/32"), Route::Random(32));
        assert_eq!(route("GET", "/32?x=1"), Route::Random(32));
        assert_eq!(route("HEAD", "/0"), Route::Random(0));
        assert_eq!(
            route("GET", "/99999999999999999999999"),
            Route::Random(MAX_BYTES)
        );
        assert_eq!(route("GET", "/-1"), Route::NotFound);
        assert_eq!(route("GET", "/32/"), Route::NotFound);
        assert_eq!(route("GET", "/abc"), Route::NotFound);
        assert_eq!(route("POST", "/32"), Route::MethodNotAllowed);
    }

    #[test]
    fn responses() {
        let index = respond(Route::Index, "rng-1");
        assert_eq!(index.body, b"RNG running on rng-1\n");
        let bytes = respond(Route::Random(32), "rng-1");
        assert_eq!(bytes.status, 200);
        assert_eq!(bytes.body.len(), 32);
        assert_ne!(bytes.body, respond(Route::Random(32), "rng-1").body);
        let wire = String::from_utf8_lossy(&bytes.to_bytes("HTTP/1.0", true)).into_owned();
        assert!(
            wire.starts_with(
                "HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 32\r\nServer: Werkzeug/"
            ),
            "{wire}"
        );
        assert_eq!(respond(Route::NotFound, "x").status, 404);
        assert_eq!(respond(Route::MethodNotAllowed, "x").status, 405);
    }

    #[test]
    fn werkzeug_log_line() {
        let line = access_line("10.0.0.5", "GET /32 HTTP/1.1", 200);
        assert!(line.starts_with("10.0.0.5 - - ["), "{line}");
        assert!(line.ends_with("] \"GET /32 HTTP/1.1\" 200 -"), "{line}");
        // `[20/Mar/2024 10:11:12]`
        let date = &line[line.find('[').unwrap() + 1..line.find(']').unwrap()];
        assert_eq!(date.len(), 20, "{date}");
        assert_eq!(&date[2..3], "/");
    }
}
