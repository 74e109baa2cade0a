//! The built-in nginx on a free port, driven by the real `curl` and by raw sockets: the page
//! bytes, headers, 404, HEAD, conditional GET, keep-alive and the access-log line.

use images::nginx::{AccessLog, NginxSite, serve_nginx};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running server; dropping it shuts it down and checks that `serve_nginx` returned Ok.
struct Server {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<u8>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

/// Collects the access log in memory.
struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Server {
    fn start(reference: &str) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        let log = Arc::new(Mutex::new(Vec::new()));
        let access_log = AccessLog::to_writer(SharedBuffer(log.clone()));
        let site = NginxSite::for_reference(reference);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(serve_nginx(listener, site, access_log, async {
                let _ = stopped.await;
            }))
        });
        Server {
            addr,
            log,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn access_log(&self) -> Vec<String> {
        let bytes = self.log.lock().expect("log").clone();
        String::from_utf8(bytes)
            .expect("utf-8 log")
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let result = thread.join().expect("server thread");
            if !std::thread::panicking() {
                result.expect("serve_nginx returns Ok on shutdown");
            }
        }
    }
}

/// `curl -s -i`: (status line, headers, body).
fn curl(args: &[&str]) -> (String, Vec<(String, String)>, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-s", "-i", "--max-time", "10"])
        .args(args)
        .output()
        .expect("run curl");
    assert!(out.status.success(), "curl {args:?} failed: {out:?}");
    split_response(&out.stdout)
}

fn split_response(raw: &[u8]) -> (String, Vec<(String, String)>, Vec<u8>) {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8(raw[..end].to_vec()).expect("utf-8 head");
    let mut lines = head.split("\r\n");
    let status = lines.next().expect("status line").to_string();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(": ").expect("header");
            (n.to_string(), v.to_string())
        })
        .collect();
    (status, headers, raw[end + 4..].to_vec())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn curl_user_agent() -> String {
    let out = Command::new("curl")
        .arg("--version")
        .output()
        .expect("curl");
    let version = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .expect("curl version")
        .to_string();
    format!("curl/{version}")
}

/// Checks one access-log line: everything but the time, and the time's shape.
fn assert_access_line(line: &str, request: &str, status: u16, bytes: usize, agent: &str) {
    let (before, rest) = line.split_once(" [").expect("[time]");
    let (time, after) = rest.split_once("] ").expect("[time]");
    assert_eq!(before, "127.0.0.1 - -", "{line}");
    // 09/May/2018:13:58:42 +0000
    assert_eq!(time.len(), 26, "{line}");
    assert!(time.ends_with(" +0000"), "{line}");
    assert_eq!(&time[2..3], "/", "{line}");
    assert_eq!(
        after,
        format!("\"{request}\" {status} {bytes} \"-\" \"{agent}\" \"-\""),
        "{line}"
    );
}

#[test]
fn welcome_page_like_nginx_1_7_9() {
    let server = Server::start("nginx:1.7.9");
    let (status, headers, body) = curl(&[&server.url("/")]);
    assert_eq!(status, "HTTP/1.1 200 OK");
    let site = NginxSite::for_reference("nginx:1.7.9");
    assert_eq!(body, site.welcome_page());
    assert_eq!(body.len(), 612);
    assert!(body.starts_with(b"<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>"));
    let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "Server",
            "Date",
            "Content-Type",
            "Content-Length",
            "Last-Modified",
            "Connection",
            "ETag",
            "Accept-Ranges"
        ]
    );
    assert_eq!(header(&headers, "Server"), Some("nginx/1.7.9"));
    assert_eq!(header(&headers, "Content-Type"), Some("text/html"));
    assert_eq!(header(&headers, "Content-Length"), Some("612"));
    assert_eq!(header(&headers, "Connection"), Some("keep-alive"));
    assert_eq!(header(&headers, "Accept-Ranges"), Some("bytes"));
    assert_eq!(header(&headers, "ETag"), Some(site.etag().as_str()));
    assert!(
        header(&headers, "Date").is_some_and(|d| d.ends_with(" GMT") && d.len() == 29),
        "{headers:?}"
    );
    let (_, _, index) = curl(&[&server.url("/index.html")]);
    assert_eq!(index, body);
    let agent = curl_user_agent();
    let log = server.access_log();
    assert_eq!(log.len(), 2, "{log:?}");
    assert_access_line(&log[0], "GET / HTTP/1.1", 200, 612, &agent);
    assert_access_line(&log[1], "GET /index.html HTTP/1.1", 200, 612, &agent);
}

#[test]
fn modern_default_page_head_and_404() {
    let server = Server::start("docker.io/library/nginx");
    let (status, headers, body) = curl(&[&server.url("/")]);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body.len(), 615);
    assert_eq!(header(&headers, "Server"), Some("nginx/1.27.3"));

    let (status, headers, body) = curl(&["-I", &server.url("/")]);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(header(&headers, "Content-Length"), Some("615"));
    assert!(body.is_empty());

    let (status, headers, body) = curl(&[&server.url("/missing?x=1")]);
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    assert_eq!(
        body,
        b"<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx/1.27.3</center>\r\n</body>\r\n</html>\r\n"
    );
    assert_eq!(header(&headers, "Content-Length"), Some("153"));
    assert_eq!(header(&headers, "ETag"), None);

    let (status, _, _) = curl(&["-X", "DELETE", &server.url("/")]);
    assert_eq!(status, "HTTP/1.1 405 Not Allowed");

    let agent = curl_user_agent();
    let log = server.access_log();
    assert_eq!(log.len(), 4, "{log:?}");
    assert_access_line(&log[1], "HEAD / HTTP/1.1", 200, 0, &agent);
    assert_access_line(&log[2], "GET /missing?x=1 HTTP/1.1", 404, 153, &agent);
    assert_access_line(&log[3], "DELETE / HTTP/1.1", 405, 157, &agent);
}

/// Reads exactly one response (head + Content-Length body) from a kept-alive connection.
fn read_response(stream: &mut TcpStream) -> (String, Vec<(String, String)>, Vec<u8>) {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).expect("read head");
        assert_eq!(n, 1, "connection closed mid-head: {raw:?}");
        raw.push(byte[0]);
    }
    let (status, headers, _) = split_response(&raw);
    let length: usize =
        header(&headers, "Content-Length").map_or(0, |v| v.parse().expect("length"));
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).expect("read body");
    (status, headers, body)
}

#[test]
fn keepalive_pipelining_conditional_get_and_close() {
    let server = Server::start("nginx:1.25");
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // Two pipelined requests on one connection, then a conditional one.
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: probe\r\nReferer: http://r/\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let (status, headers, body) = read_response(&mut stream);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body.len(), 615);
    assert_eq!(header(&headers, "Server"), Some("nginx/1.25.5"));
    let etag = header(&headers, "ETag").expect("etag").to_string();
    let (status, _, _) = read_response(&mut stream);
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    stream
        .write_all(format!("GET / HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\n\r\n").as_bytes())
        .expect("write");
    let (status, headers, body) = read_response(&mut stream);
    assert_eq!(status, "HTTP/1.1 304 Not Modified");
    assert_eq!(header(&headers, "Content-Length"), None);
    assert!(body.is_empty());
    // HTTP/1.0 without keep-alive: answered, then closed.
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("write");
    let (_, headers, _) = read_response(&mut stream);
    assert_eq!(header(&headers, "Connection"), Some("close"));
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).expect("closed");
    assert!(rest.is_empty());

    let log = server.access_log();
    assert_eq!(log.len(), 4, "{log:?}");
    assert!(
        log[0].ends_with("\"GET / HTTP/1.1\" 200 615 \"http://r/\" \"probe\" \"-\""),
        "{}",
        log[0]
    );
    assert!(
        log[1].ends_with("\"GET /nope HTTP/1.1\" 404 153 \"-\" \"-\" \"-\""),
        "{}",
        log[1]
    );
    assert!(
        log[2].ends_with("\"GET / HTTP/1.1\" 304 0 \"-\" \"-\" \"-\""),
        "{}",
        log[2]
    );
    assert!(
        log[3].ends_with("\"GET / HTTP/1.0\" 200 615 \"-\" \"-\" \"-\""),
        "{}",
        log[3]
    );
}

#[test]
fn garbage_gets_400_and_close() {
    let server = Server::start("nginx");
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(b"HELLO\r\n\r\n").expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read");
    let (status, headers, body) = split_response(&raw);
    assert_eq!(status, "HTTP/1.1 400 Bad Request");
    assert_eq!(header(&headers, "Connection"), Some("close"));
    assert!(body.starts_with(b"<html>\r\n<head><title>400 Bad Request</title>"));
    let log = server.access_log();
    assert!(
        log[0].contains("\"HELLO\" 400 157 \"-\" \"-\" \"-\""),
        "{log:?}"
    );
}
