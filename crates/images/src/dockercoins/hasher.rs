//! DockerCoins' `hasher`: SHA-256 over HTTP, as the original Sinatra app on Thin. `POST /`
//! waits 0.1 s and answers the hex digest of the body; `GET /` names the host. Requests are
//! served concurrently (it is not the bottleneck), with keep-alive, and each is logged on
//! stderr in Rack's common log format:
//! `<ip> - - [20/Mar/2024:10:11:12 +0000] "POST / HTTP/1.1" 200 64 0.1003`.

use std::future::Future;
use std::io;
use std::net::TcpListener as StdTcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;

use super::net::{self, Request, Response};
use super::{Env, IDLE_TIMEOUT, Log, peer_ip};

/// The original's "bit of delay" per hash.
pub const DELAY: Duration = Duration::from_millis(100);

/// Sinatra's page for a route it does not have.
const NOT_FOUND_PAGE: &str = "<!DOCTYPE html>\n<html>\n<head>\n  <style type=\"text/css\">\n  body { text-align:center;font-family:helvetica,arial;font-size:22px;\n    color:#888;margin:20px}\n  #c {margin:0 auto;width:500px;text-align:left}\n  </style>\n</head>\n<body>\n  <h2>Sinatra doesn\u{2019}t know this ditty.</h2>\n</body>\n</html>\n";

/// The hex SHA-256 of `body`, as `Digest::SHA2.new.update(body).to_s`.
pub fn hex_sha256(body: &[u8]) -> String {
    Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether the request is `POST /` (the one that waits and hashes).
pub fn is_hash_request(request: &Request) -> bool {
    request.method == "POST" && path(&request.target) == "/"
}

fn path(target: &str) -> &str {
    target.split('?').next().unwrap_or("")
}

/// The response to `request` (without the delay, which the server takes).
pub fn respond(request: &Request, hostname: &str) -> Response {
    let (status, content_type, body) = match (request.method.as_str(), path(&request.target)) {
        ("POST", "/") => (
            200,
            "text/plain;charset=utf-8",
            hex_sha256(&request.body).into_bytes(),
        ),
        ("GET" | "HEAD", "/") => (
            200,
            "text/html;charset=utf-8",
            format!("HASHER running on {hostname}\n").into_bytes(),
        ),
        _ => (
            404,
            "text/html;charset=utf-8",
            NOT_FOUND_PAGE.as_bytes().to_vec(),
        ),
    };
    let length = body.len().to_string();
    let mut response = Response::new(status, body)
        .header("Content-Type", content_type)
        .header("Content-Length", length)
        .header("X-Content-Type-Options", "nosniff");
    if status == 404 {
        response = response.header("X-Cascade", "pass");
    }
    response
}

/// Rack::CommonLogger's line.
pub fn access_line(
    ip: &str,
    request: &Request,
    status: u16,
    length: usize,
    took: Duration,
) -> String {
    let date = Timestamp::now()
        .to_zoned(TimeZone::UTC)
        .strftime("%d/%b/%Y:%H:%M:%S %z");
    let (path, query) = match request.target.split_once('?') {
        Some((p, q)) => (p, format!("?{q}")),
        None => (request.target.as_str(), String::new()),
    };
    let size = if length == 0 {
        "-".to_string()
    } else {
        length.to_string()
    };
    format!(
        "{ip} - - [{date}] \"{} {path}{query} {}\" {status} {size} {:.4}",
        request.method,
        request.version,
        took.as_secs_f64()
    )
}

/// Serves hasher on `listener` until `shutdown` completes, `delay` per hash, every
/// connection concurrently. Must run inside a tokio runtime.
pub async fn serve_hasher(
    listener: StdTcpListener,
    hostname: String,
    delay: Duration,
    log: Log,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let hostname: Arc<str> = hostname.into();
    net::accept_until(listener, shutdown, move |stream, peer| {
        let (hostname, log) = (hostname.clone(), log.clone());
        async move {
            let _ = serve_connection(stream, &peer_ip(&peer), &hostname, delay, &log).await;
        }
    })
    .await
}

async fn serve_connection(
    mut stream: TcpStream,
    ip: &str,
    hostname: &str,
    delay: Duration,
    log: &Log,
) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let bad_request = Response::new(400, "").header("Content-Length", "0");
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
        let started = Instant::now();
        if is_hash_request(&request) {
            tokio::time::sleep(delay).await;
        }
        let keep = request.wants_keepalive();
        let response = respond(&request, hostname)
            .header("Connection", if keep { "keep-alive" } else { "close" })
            .header("Server", "thin");
        net::write_response(&mut stream, &response, "HTTP/1.1", request.method == "HEAD").await?;
        log.line(&access_line(
            ip,
            &request,
            response.status,
            response.body.len(),
            started.elapsed(),
        ));
        if !keep {
            return Ok(());
        }
    }
}

/// The container: Sinatra's and Thin's start-up lines, the server, and their goodbye.
pub(crate) async fn run_server(
    listener: StdTcpListener,
    env: &Env,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let log = Log::stderr();
    let address = listener.local_addr()?;
    log.line(&format!(
        "== Sinatra (v1.4.8) has taken the stage on {} for development with backup from Thin",
        address.port()
    ));
    log.line("Thin web server (v1.7.2 codename Bachmanity)");
    log.line("Maximum connections set to 1024");
    log.line(&format!("Listening on {address}, CTRL+C to stop"));
    let served = serve_hasher(listener, env.hostname(), DELAY, log.clone(), shutdown).await;
    log.line("Stopping ...");
    log.line("== Sinatra has ended his set (crowd applauds)");
    served
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, target: &str, body: &[u8]) -> Request {
        Request {
            method: method.into(),
            target: target.into(),
            version: "HTTP/1.1".into(),
            headers: vec![],
            body: body.to_vec(),
        }
    }

    #[test]
    fn sha256_like_ruby() {
        assert_eq!(
            hex_sha256(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex_sha256(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn routes() {
        let hashed = respond(&request("POST", "/", b"abc"), "h");
        assert_eq!(hashed.status, 200);
        assert_eq!(hashed.body, hex_sha256(b"abc").as_bytes());
        assert_eq!(hashed.headers[0].1, "text/plain;charset=utf-8");
        assert_eq!(
            respond(&request("GET", "/", b""), "hasher-1").body,
            b"HASHER running on hasher-1\n"
        );
        assert_eq!(respond(&request("GET", "/x", b""), "h").status, 404);
        assert_eq!(respond(&request("POST", "/x", b""), "h").status, 404);
        assert!(is_hash_request(&request("POST", "/", b"")));
        assert!(!is_hash_request(&request("GET", "/", b"")));
    }

    #[test]
    fn rack_log_line() {
        let line = access_line(
            "10.0.0.7",
            &request("POST", "/", b"x"),
            200,
            64,
            Duration::from_millis(100),
        );
        assert!(line.starts_with("10.0.0.7 - - ["), "{line}");
        assert!(
            line.contains(" +0000] \"POST / HTTP/1.1\" 200 64 0.1"),
            "{line}"
        );
    }
}
