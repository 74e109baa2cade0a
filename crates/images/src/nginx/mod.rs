//! The `nginx` image: what `docker run nginx` serves with its stock configuration, on
//! HTTP/1.1 port 80 — the welcome page at `/` and `/index.html` byte for byte as the
//! official image of that version has it, nginx's own 404/405/400 pages, conditional GETs,
//! keep-alive, and one access-log line per request on stdout in the image's `main` format.
//!
//! It is a few hundred lines rather than a full HTTP stack on purpose: the container must stay
//! at a few MB of memory on one thread, and the exact bytes (header order, error pages, log
//! format) are what course users compare with the course's output.
//!
//! Not served: range requests (`Accept-Ranges` is sent, as nginx does, but a `Range` header
//! gets the whole page), `/50x.html`, chunked request bodies (answered, then the connection
//! closes), IPv6.

mod releases;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use std::future::Future;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::Reference;

/// The version a tag that names none (`latest`, `mainline`, `alpine`, no tag) stands for.
pub const DEFAULT_VERSION: &str = "1.27.3";

/// The welcome page of nginx 1.3.6 up to 1.21.1 (the course's nginx 1.7.9 serves this one).
const WELCOME_SINCE_1_3_6: &[u8] = include_bytes!("index-1.3.6.html");
/// From 1.21.2 (dark mode support) up to 1.29.5.
const WELCOME_SINCE_1_21_2: &[u8] = include_bytes!("index-1.21.2.html");
/// From 1.29.6 (links to the community and F5).
const WELCOME_SINCE_1_29_6: &[u8] = include_bytes!("index-1.29.6.html");

/// nginx's `worker_connections` in the image's nginx.conf.
const WORKER_CONNECTIONS: usize = 1024;
/// Longest request head accepted (nginx's `large_client_header_buffers 4 8k`, simplified).
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// The image's `keepalive_timeout 65`.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(65);
/// nginx's `client_header_timeout` default.
const CLIENT_HEADER_TIMEOUT: Duration = Duration::from_secs(60);

/// nginx pads 4xx/5xx pages for browsers that would otherwise show their own error page.
const MSIE_PADDING: &str = concat!(
    "<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n",
    "<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n",
    "<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n",
    "<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n",
    "<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n",
    "<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n",
);

/// What one nginx container serves: its version and its welcome page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NginxSite {
    version: String,
    /// `version` as numbers, for the start-up behaviour that changed between releases.
    release: (u32, u32, u32),
    welcome_page: &'static [u8],
    /// The page file's modification time in the image, for `Last-Modified` and `ETag`.
    last_modified: Timestamp,
}

impl NginxSite {
    /// The site of the image `reference` names: `nginx:1.7.9` is nginx 1.7.9 with the
    /// 612-byte page, `nginx:1.25` the last 1.25 release, `nginx` [`DEFAULT_VERSION`].
    pub fn for_reference(reference: &str) -> NginxSite {
        let version = Reference::parse(reference)
            .and_then(|r| r.tag)
            .and_then(|tag| version_from_tag(&tag))
            .unwrap_or_else(|| DEFAULT_VERSION.to_string());
        NginxSite::for_version(&version)
    }

    /// The site of nginx `version` (`1.27.3`).
    pub fn for_version(version: &str) -> NginxSite {
        let v = parse_version(version).unwrap_or((1, 27, 3));
        let welcome_page = if v < (1, 21, 2) {
            WELCOME_SINCE_1_3_6
        } else if v < (1, 29, 6) {
            WELCOME_SINCE_1_21_2
        } else {
            WELCOME_SINCE_1_29_6
        };
        // The release closest below the version stands in for the image's build time.
        let released = releases::RELEASES
            .iter()
            .filter(|(r, _)| parse_version(r).is_some_and(|r| r <= v))
            .map(|(_, t)| *t)
            .next_back()
            .unwrap_or(releases::RELEASES[0].1);
        NginxSite {
            version: version.to_string(),
            release: v,
            welcome_page,
            last_modified: Timestamp::from_second(released).unwrap_or(Timestamp::UNIX_EPOCH),
        }
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    /// Whether the image starts through `/docker-entrypoint.sh`: the official image gained it
    /// in May 2020, when 1.17.10 was its newest build. Older images (the course's 1.7.9) run
    /// `CMD ["nginx", "-g", "daemon off;"]` with no entrypoint and print nothing at start.
    pub fn has_entrypoint(&self) -> bool {
        self.release >= (1, 17, 10)
    }

    /// Whether nginx's `[notice]` lines (start-up, signals) reach the log: the packaged
    /// nginx.conf logs at `warn` up to 1.19 and at `notice` from 1.20.0 (pkg-oss, April 2021).
    pub fn logs_notices(&self) -> bool {
        self.release >= (1, 20, 0)
    }

    /// The scripts the image's entrypoint runs, in order, by the version that added them.
    fn entrypoint_scripts(&self) -> Vec<&'static str> {
        let v = self.release;
        let mut scripts = vec!["10-listen-on-ipv6-by-default.sh"];
        if v >= (1, 25, 0) {
            scripts.push("15-local-resolvers.envsh");
        }
        scripts.push("20-envsubst-on-templates.sh");
        if v >= (1, 19, 6) {
            scripts.push("30-tune-worker-processes.sh");
        }
        scripts
    }

    /// The body of `GET /`.
    pub fn welcome_page(&self) -> &'static [u8] {
        self.welcome_page
    }

    /// nginx's ETag: hex modification time and hex length.
    pub fn etag(&self) -> String {
        format!(
            "\"{:x}-{:x}\"",
            self.last_modified.as_second(),
            self.welcome_page.len()
        )
    }

    pub fn last_modified(&self) -> String {
        http_date(self.last_modified)
    }

    /// nginx's built-in error page for `status`, e.g. the 153-byte 404 of nginx 1.27.3.
    pub fn error_page(&self, status: u16, padded: bool) -> Vec<u8> {
        let title = format!("{status} {}", reason_phrase(status));
        let mut page = format!(
            "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n<hr><center>nginx/{}</center>\r\n</body>\r\n</html>\r\n",
            self.version
        );
        if padded {
            page.push_str(MSIE_PADDING);
        }
        page.into_bytes()
    }
}

/// The nginx version an image tag names: `1.7.9` → 1.7.9, `1.25-alpine` → the last 1.25
/// release; `None` for tags without one (`latest`, `stable`, `alpine`, `1`).
pub fn version_from_tag(tag: &str) -> Option<String> {
    let numeric = tag.split('-').next()?;
    let parts: Vec<&str> = numeric.split('.').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    match parts.len() {
        3 => Some(numeric.to_string()),
        2 => {
            let prefix = format!("{numeric}.");
            Some(
                releases::RELEASES
                    .iter()
                    .filter(|(r, _)| r.starts_with(&prefix))
                    .map(|(r, _)| r.to_string())
                    .next_back()
                    .unwrap_or_else(|| format!("{numeric}.0")),
            )
        }
        _ => None,
    }
}

fn parse_version(v: &str) -> Option<(u32, u32, u32)> {
    let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
    let (major, minor, patch) = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some((major, minor, patch))
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Not Allowed",
        _ => "Internal Server Error",
    }
}

/// `Sat, 09 May 2018 13:58:42 GMT`.
fn http_date(t: Timestamp) -> String {
    t.to_zoned(TimeZone::UTC)
        .strftime("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// Where access-log lines go: stdout in a container, a buffer in tests. A std mutex: a
/// line is written whole and nothing awaits while holding it.
#[derive(Clone)]
pub struct AccessLog {
    sink: Arc<Mutex<Box<dyn Write + Send>>>,
}

impl AccessLog {
    /// The container's stdout, as the image's `access_log /var/log/nginx/access.log main`
    /// (a symlink to /dev/stdout) does.
    pub fn stdout() -> AccessLog {
        AccessLog::to_writer(io::stdout())
    }

    pub fn to_writer(writer: impl Write + Send + 'static) -> AccessLog {
        AccessLog {
            sink: Arc::new(Mutex::new(Box::new(writer))),
        }
    }

    fn write_line(&self, line: &str) {
        if let Ok(mut sink) = self.sink.lock() {
            // A closed stdout must not take the server down; nginx ignores it too.
            let _ = sink.write_all(line.as_bytes());
            let _ = sink.flush();
        }
    }
}

/// Serves the site on `listener` until `shutdown` completes. Must be called inside a tokio
/// runtime (one thread is plenty). Connections still open at shutdown are dropped, like
/// nginx's fast shutdown on SIGTERM.
pub async fn serve_nginx(
    listener: StdTcpListener,
    site: NginxSite,
    access_log: AccessLog,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    let site = Arc::new(site);
    let slots = Arc::new(Semaphore::new(WORKER_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return Ok(()),
            },
            _ = &mut shutdown => return Ok(()),
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => {
                    // Out of descriptors and the like: back off rather than spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return Ok(()),
        };
        let site = site.clone();
        let access_log = access_log.clone();
        tokio::spawn(async move {
            let _ = serve_connection(stream, peer, &site, &access_log).await;
            drop(permit);
        });
    }
}

/// One parsed request head.
struct Request {
    method: String,
    target: String,
    /// `(1, 1)` for HTTP/1.1.
    version: (u8, u8),
    /// The request line as received, for `$request`.
    line: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn connection_has(&self, token: &str) -> bool {
        self.header("connection")
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }

    fn wants_keepalive(&self) -> bool {
        if self.version >= (1, 1) {
            !self.connection_has("close")
        } else {
            self.connection_has("keep-alive")
        }
    }
}

/// What `$request` logs for a head that did not parse.
struct BadRequest {
    line: String,
}

async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    site: &NginxSite,
    access_log: &AccessLog,
) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut buffer: Vec<u8> = Vec::with_capacity(1024);
    let mut first = true;
    loop {
        let timeout = if first {
            CLIENT_HEADER_TIMEOUT
        } else {
            KEEPALIVE_TIMEOUT
        };
        first = false;
        let Some(head_len) = read_head(&mut stream, &mut buffer, timeout).await? else {
            return Ok(());
        };
        let parsed = if head_len > MAX_REQUEST_HEAD {
            Err(BadRequest {
                line: first_line(&buffer),
            })
        } else {
            parse_head(&buffer[..head_len])
        };
        buffer.drain(..head_len.min(buffer.len()));
        let (request, line) = match parsed {
            Ok(r) => {
                let line = r.line.clone();
                (Some(r), line)
            }
            Err(bad) => (None, bad.line),
        };
        let answer = match &request {
            Some(r) => answer(site, r),
            None => Answer::error(site, 400, false),
        };
        let mut keepalive = request
            .as_ref()
            .is_some_and(|r| r.wants_keepalive() && answer.status != 400);
        if let Some(r) = &request {
            match body_length(r) {
                Some(BodyLength::Fixed(n)) => {
                    discard_body(&mut stream, &mut buffer, n).await?;
                }
                Some(BodyLength::Chunked) => keepalive = false,
                None => {}
            }
        }
        let head_only = request.as_ref().is_some_and(|r| r.method == "HEAD");
        let bytes = answer.encode(site, keepalive, head_only);
        stream.write_all(&bytes).await?;
        let body_sent = if head_only || answer.status == 304 {
            0
        } else {
            answer.body.len()
        };
        access_log.write_line(&access_line(
            peer,
            &line,
            answer.status,
            body_sent,
            request.as_ref(),
        ));
        if !keepalive {
            let _ = stream.shutdown().await;
            return Ok(());
        }
    }
}

/// Reads until the buffer holds a whole request head; returns its length, or `None` when
/// the client closed (or idled out) between requests.
async fn read_head(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
    timeout: Duration,
) -> io::Result<Option<usize>> {
    loop {
        if let Some(end) = head_end(buffer) {
            return Ok(Some(end));
        }
        if buffer.len() > MAX_REQUEST_HEAD {
            return Ok(Some(buffer.len()));
        }
        let mut chunk = [0u8; 4096];
        let n = match tokio::time::timeout(timeout, stream.read(&mut chunk)).await {
            Ok(r) => r?,
            Err(_) => return Ok(None),
        };
        if n == 0 {
            return Ok(None);
        }
        buffer.extend_from_slice(&chunk[..n]);
        // Blank lines before a request are skipped, as nginx does.
        while buffer.starts_with(b"\r\n") || buffer.starts_with(b"\n") {
            let skip = if buffer[0] == b'\r' { 2 } else { 1 };
            buffer.drain(..skip);
        }
    }
}

/// The end of the head: after the first empty line (`\r\n\r\n` or a bare `\n\n`).
fn head_end(buffer: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(pos) = buffer[i..].iter().position(|&b| b == b'\n') {
        let next = i + pos + 1;
        let rest = &buffer[next..];
        if rest.starts_with(b"\r\n") {
            return Some(next + 2);
        }
        if rest.starts_with(b"\n") {
            return Some(next + 1);
        }
        i = next;
    }
    None
}

fn first_line(buffer: &[u8]) -> String {
    let end = buffer
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(buffer.len());
    String::from_utf8_lossy(&buffer[..end])
        .trim_end_matches('\r')
        .to_string()
}

fn parse_head(head: &[u8]) -> Result<Request, BadRequest> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let line = lines.next().unwrap_or_default().to_string();
    let bad = || BadRequest { line: line.clone() };
    let mut words = line.split(' ').filter(|w| !w.is_empty());
    let (Some(method), Some(target), Some(proto), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(bad());
    };
    if !method
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b == b'_' || b == b'-')
    {
        return Err(bad());
    }
    let version = match proto {
        "HTTP/1.1" => (1, 1),
        "HTTP/1.0" => (1, 0),
        _ => return Err(bad()),
    };
    let mut headers = Vec::new();
    for l in lines.filter(|l| !l.is_empty()) {
        let Some((name, value)) = l.split_once(':') else {
            return Err(bad());
        };
        if name.is_empty() || name.contains(' ') {
            return Err(bad());
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
    let request = Request {
        method: method.to_string(),
        target: target.to_string(),
        version,
        line: line.clone(),
        headers,
    };
    // nginx: "client sent HTTP/1.1 request without "Host" header".
    if request.version >= (1, 1) && request.header("host").is_none() {
        return Err(bad());
    }
    Ok(request)
}

enum BodyLength {
    Fixed(usize),
    Chunked,
}

fn body_length(r: &Request) -> Option<BodyLength> {
    if r.header("transfer-encoding").is_some() {
        return Some(BodyLength::Chunked);
    }
    r.header("content-length")
        .and_then(|v| v.parse().ok())
        .map(BodyLength::Fixed)
}

async fn discard_body(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
    mut remaining: usize,
) -> io::Result<()> {
    let from_buffer = remaining.min(buffer.len());
    buffer.drain(..from_buffer);
    remaining -= from_buffer;
    let mut chunk = [0u8; 4096];
    while remaining > 0 {
        let want = remaining.min(chunk.len());
        let n = stream.read(&mut chunk[..want]).await?;
        if n == 0 {
            return Ok(());
        }
        remaining -= n;
    }
    Ok(())
}

/// The path a target names: query dropped, `%XX` decoded, slashes merged, `.` and `..`
/// resolved. `None` when it escapes the root or is not a path.
fn normalize_path(target: &str) -> Option<String> {
    let path = target.split(['?', '#']).next().unwrap_or_default();
    // Absolute form (`GET http://host/x`), as proxies send.
    let path = match path.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => path,
    };
    if !path.starts_with('/') {
        return None;
    }
    let decoded = percent_decode(path)?;
    let mut out: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            s => out.push(s),
        }
    }
    let trailing = decoded.ends_with('/') && !out.is_empty();
    let mut normal = format!("/{}", out.join("/"));
    if trailing {
        normal.push('/');
    }
    Some(normal)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A response before encoding.
struct Answer {
    status: u16,
    body: Vec<u8>,
    /// The welcome page carries `Last-Modified`, `ETag` and `Accept-Ranges`.
    static_file: bool,
}

impl Answer {
    fn error(site: &NginxSite, status: u16, padded: bool) -> Answer {
        Answer {
            status,
            body: site.error_page(status, padded),
            static_file: false,
        }
    }

    fn encode(&self, site: &NginxSite, keepalive: bool, head_only: bool) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nServer: nginx/{}\r\nDate: {}\r\n",
            self.status,
            reason_phrase(self.status),
            site.version,
            http_date(Timestamp::now())
        );
        if self.status != 304 {
            head.push_str("Content-Type: text/html\r\n");
            head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        if self.static_file {
            head.push_str(&format!("Last-Modified: {}\r\n", site.last_modified()));
        }
        head.push_str(if keepalive {
            "Connection: keep-alive\r\n"
        } else {
            "Connection: close\r\n"
        });
        if self.static_file {
            head.push_str(&format!("ETag: {}\r\n", site.etag()));
            if self.status == 200 {
                head.push_str("Accept-Ranges: bytes\r\n");
            }
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        if !head_only && self.status != 304 {
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }
}

/// The default site's behaviour: `location / { root /usr/share/nginx/html; index index.html; }`.
fn answer(site: &NginxSite, r: &Request) -> Answer {
    let padded = r
        .header("user-agent")
        .is_some_and(|ua| ua.contains("MSIE ") || ua.contains("Chrome/"));
    let Some(path) = normalize_path(&r.target) else {
        return Answer::error(site, 400, padded);
    };
    let exists = path == "/" || path == "/index.html";
    match r.method.as_str() {
        "GET" | "HEAD" if exists => {
            let etag = site.etag();
            let not_modified = match r.header("if-none-match") {
                Some(tags) => tags.split(',').any(|t| {
                    let t = t.trim();
                    t == "*" || t == etag || t.strip_prefix("W/") == Some(etag.as_str())
                }),
                // nginx's `if_modified_since exact`.
                None => r.header("if-modified-since") == Some(site.last_modified().as_str()),
            };
            Answer {
                status: if not_modified { 304 } else { 200 },
                body: site.welcome_page().to_vec(),
                static_file: true,
            }
        }
        "GET" | "HEAD" => Answer::error(site, 404, padded),
        // The static module refuses POST only for files that exist.
        "POST" if !exists => Answer::error(site, 404, padded),
        _ => Answer::error(site, 405, padded),
    }
}

/// The image's `main` log format:
/// `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
/// "$http_referer" "$http_user_agent" "$http_x_forwarded_for"`.
fn access_line(
    peer: SocketAddr,
    request_line: &str,
    status: u16,
    body_bytes_sent: usize,
    request: Option<&Request>,
) -> String {
    let header = |name: &str| {
        request
            .and_then(|r| r.header(name))
            .map_or_else(|| "-".to_string(), escape_log)
    };
    let time_local = Timestamp::now()
        .to_zoned(TimeZone::UTC)
        .strftime("%d/%b/%Y:%H:%M:%S %z")
        .to_string();
    format!(
        "{} - - [{time_local}] \"{}\" {status} {body_bytes_sent} \"{}\" \"{}\" \"{}\"\n",
        peer.ip(),
        escape_log(request_line),
        header("referer"),
        header("user-agent"),
        header("x-forwarded-for"),
    )
}

/// nginx's default log escaping: `"`, `\`, control and non-ASCII bytes become `\xHH`.
fn escape_log(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            out.push_str(&format!("\\x{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

/// `2024/11/27 10:00:00`, the error log's time format.
fn error_log_time() -> String {
    Timestamp::now()
        .to_zoned(TimeZone::UTC)
        .strftime("%Y/%m/%d %H:%M:%S")
        .to_string()
}

/// The container's argv after Kubernetes' command/args rules over the image's
/// `ENTRYPOINT ["/docker-entrypoint.sh"]` (none before 1.17.10) and
/// `CMD ["nginx", "-g", "daemon off;"]`.
fn effective_argv(site: &NginxSite, command: &[String], args: &[String]) -> Vec<String> {
    let image_entrypoint = if site.has_entrypoint() {
        vec!["/docker-entrypoint.sh".to_string()]
    } else {
        Vec::new()
    };
    let image_cmd: Vec<String> = ["nginx", "-g", "daemon off;"].map(str::to_string).to_vec();
    match (command.is_empty(), args.is_empty()) {
        (true, true) => [image_entrypoint, image_cmd].concat(),
        (true, false) => [image_entrypoint, args.to_vec()].concat(),
        (false, _) => [command.to_vec(), args.to_vec()].concat(),
    }
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The image's entry point: the docker-entrypoint.sh lines and nginx's start-up notices, as
/// far as the image's version prints them, then the server on 0.0.0.0:80 until SIGTERM,
/// SIGINT or SIGQUIT (exit code 0).
pub fn run(
    reference: &str,
    command: &[String],
    args: &[String],
    env: &[(String, String)],
) -> ExitCode {
    let site = NginxSite::for_reference(reference);
    let argv = effective_argv(&site, command, args);
    let through_entrypoint = argv.first().map(|a| basename(a)) == Some("docker-entrypoint.sh");
    let program = if through_entrypoint {
        argv.get(1)
    } else {
        argv.first()
    };
    if !program.is_some_and(|p| matches!(basename(p), "nginx" | "nginx-debug")) {
        let name = argv
            .get(usize::from(through_entrypoint))
            .map_or("", String::as_str);
        if through_entrypoint {
            eprintln!("/docker-entrypoint.sh: exec: line 47: {name}: not found");
        } else {
            eprintln!(
                "exec: \"{name}\": executable file not found in $PATH (kubelab's nginx image runs only nginx)"
            );
        }
        return ExitCode::from(127);
    }
    let quiet = env
        .iter()
        .any(|(k, v)| k == "NGINX_ENTRYPOINT_QUIET_LOGS" && !v.is_empty());
    if through_entrypoint && !quiet {
        print_entrypoint_lines(&site);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{} [emerg] 1#1: cannot start: {e}", error_log_time());
            return ExitCode::from(1);
        }
    };
    runtime.block_on(run_server(site))
}

/// The lines of the current entrypoint (older images worded a few of them differently).
fn entrypoint_lines(site: &NginxSite) -> Vec<String> {
    let me = "/docker-entrypoint.sh";
    let ipv6 = "10-listen-on-ipv6-by-default.sh";
    let mut lines = vec![
        format!("{me}: /docker-entrypoint.d/ is not empty, will attempt to perform configuration"),
        format!("{me}: Looking for shell scripts in /docker-entrypoint.d/"),
    ];
    for script in site.entrypoint_scripts() {
        // `.envsh` files are sourced, `.sh` files run.
        let verb = if script.ends_with(".envsh") {
            "Sourcing"
        } else {
            "Launching"
        };
        lines.push(format!("{me}: {verb} /docker-entrypoint.d/{script}"));
        if script == ipv6 {
            lines.push(format!(
                "{ipv6}: info: Getting the checksum of /etc/nginx/conf.d/default.conf"
            ));
            lines.push(format!(
                "{ipv6}: info: Enabled listen on IPv6 in /etc/nginx/conf.d/default.conf"
            ));
        }
    }
    lines.push(format!("{me}: Configuration complete; ready for start up"));
    lines
}

fn print_entrypoint_lines(site: &NginxSite) {
    let lines = entrypoint_lines(site);
    let mut out = io::stdout().lock();
    for l in lines {
        let _ = writeln!(out, "{l}");
    }
    let _ = out.flush();
}

async fn run_server(site: NginxSite) -> ExitCode {
    use tokio::signal::unix::{SignalKind, signal};
    let pid = std::process::id();
    let logs_notices = site.logs_notices();
    let notice = |msg: &str| {
        if logs_notices {
            eprintln!("{} [notice] {pid}#{pid}: {msg}", error_log_time());
        }
    };
    let listener = match StdTcpListener::bind(("0.0.0.0", 80)) {
        Ok(l) => l,
        Err(e) => {
            let why = format!(
                "bind() to 0.0.0.0:80 failed ({}: {})",
                e.raw_os_error().unwrap_or(0),
                strip_os_error(&e)
            );
            eprintln!("{} [emerg] {pid}#{pid}: {why}", error_log_time());
            eprintln!("nginx: [emerg] {why}");
            return ExitCode::from(1);
        }
    };
    let (Ok(mut term), Ok(mut int), Ok(mut quit)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::quit()),
    ) else {
        eprintln!(
            "{} [emerg] {pid}#{pid}: cannot install signal handlers",
            error_log_time()
        );
        return ExitCode::from(1);
    };
    notice("using the \"epoll\" event method");
    notice(&format!("nginx/{}", site.version()));
    notice("built by gcc 12.2.0 (Debian 12.2.0-14)");
    notice(&format!("OS: Linux {}", kernel_release()));
    let (soft, hard) = nofile_limit();
    notice(&format!("getrlimit(RLIMIT_NOFILE): {soft}:{hard}"));
    notice("start worker processes");
    notice(&format!("start worker process {pid}"));
    let signal_name = Arc::new(Mutex::new(""));
    let received = signal_name.clone();
    let shutdown = async move {
        let name = tokio::select! {
            _ = term.recv() => "15 (SIGTERM)",
            _ = int.recv() => "2 (SIGINT)",
            _ = quit.recv() => "3 (SIGQUIT)",
        };
        if let Ok(mut n) = received.lock() {
            *n = name;
        }
    };
    let served = serve_nginx(listener, site, AccessLog::stdout(), shutdown).await;
    let name = signal_name.lock().map(|n| *n).unwrap_or("");
    match served {
        Ok(()) => {
            notice(&format!("signal {name} received, exiting"));
            notice("exit");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{} [emerg] {pid}#{pid}: {e}", error_log_time());
            ExitCode::from(1)
        }
    }
}

/// `Address already in use` without Rust's ` (os error 98)` suffix.
fn strip_os_error(e: &io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn nofile_limit() -> (u64, u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own and reads nothing else.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if rc == 0 {
        (limit.rlim_cur, limit.rlim_max)
    } else {
        (0, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_by_version() {
        assert_eq!(
            NginxSite::for_reference("nginx:1.7.9").welcome_page().len(),
            612
        );
        assert_eq!(
            NginxSite::for_reference("nginx:1.21.1")
                .welcome_page()
                .len(),
            612
        );
        assert_eq!(
            NginxSite::for_reference("nginx:1.21.2")
                .welcome_page()
                .len(),
            615
        );
        assert_eq!(NginxSite::for_reference("nginx").welcome_page().len(), 615);
        assert_eq!(
            NginxSite::for_reference("nginx:latest").version(),
            DEFAULT_VERSION
        );
        assert_eq!(
            NginxSite::for_reference("nginx:1.29.6")
                .welcome_page()
                .len(),
            896
        );
        assert_eq!(NginxSite::for_reference("nginx:1.25").version(), "1.25.5");
        assert_eq!(
            NginxSite::for_reference("nginx:1.27-alpine").version(),
            "1.27.5"
        );
        assert_eq!(
            NginxSite::for_reference("nginx:stable-alpine").version(),
            DEFAULT_VERSION
        );
        assert_eq!(
            NginxSite::for_reference("nginx:1").version(),
            DEFAULT_VERSION
        );
    }

    #[test]
    fn error_page_bytes() {
        let site = NginxSite::for_version("1.27.3");
        let page = site.error_page(404, false);
        assert_eq!(
            page,
            b"<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx/1.27.3</center>\r\n</body>\r\n</html>\r\n"
        );
        assert_eq!(page.len(), 153);
        assert_eq!(site.error_page(404, true).len(), 153 + MSIE_PADDING.len());
    }

    #[test]
    fn etag_is_mtime_and_length_in_hex() {
        let site = NginxSite::for_version("1.7.9");
        assert_eq!(
            site.etag(),
            format!("\"{:x}-264\"", site.last_modified.as_second())
        );
    }

    #[test]
    fn paths() {
        assert_eq!(normalize_path("/").as_deref(), Some("/"));
        assert_eq!(
            normalize_path("/index.html?x=1").as_deref(),
            Some("/index.html")
        );
        assert_eq!(
            normalize_path("//index.html").as_deref(),
            Some("/index.html")
        );
        assert_eq!(
            normalize_path("/a/../index.html").as_deref(),
            Some("/index.html")
        );
        assert_eq!(
            normalize_path("/%69ndex.html").as_deref(),
            Some("/index.html")
        );
        assert_eq!(
            normalize_path("http://h/index.html").as_deref(),
            Some("/index.html")
        );
        assert_eq!(normalize_path("/../x"), None);
        assert_eq!(normalize_path("x"), None);
        assert_eq!(normalize_path("/%zz"), None);
    }

    #[test]
    fn argv_follows_kubernetes_rules() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let modern = NginxSite::for_reference("nginx");
        assert_eq!(
            effective_argv(&modern, &[], &[]),
            s(&["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"])
        );
        assert_eq!(
            effective_argv(&modern, &[], &s(&["nginx-debug"])),
            s(&["/docker-entrypoint.sh", "nginx-debug"])
        );
        assert_eq!(
            effective_argv(&modern, &s(&["nginx"]), &s(&["-g", "daemon off;"])),
            s(&["nginx", "-g", "daemon off;"])
        );
        // Before the entrypoint existed, args replace CMD and run as they are.
        let old = NginxSite::for_reference("nginx:1.7.9");
        assert_eq!(
            effective_argv(&old, &[], &[]),
            s(&["nginx", "-g", "daemon off;"])
        );
        assert_eq!(
            effective_argv(&old, &[], &s(&["nginx-debug"])),
            s(&["nginx-debug"])
        );
    }

    #[test]
    fn start_up_output_follows_the_image_version() {
        let site = |r: &str| NginxSite::for_reference(r);
        // The course's 1.7.9: no entrypoint, error log at `warn`.
        assert!(!site("nginx:1.7.9").has_entrypoint());
        assert!(!site("nginx:1.7.9").logs_notices());
        assert!(site("nginx:1.19.0").has_entrypoint());
        assert!(!site("nginx:1.19.10").logs_notices());
        assert!(site("nginx:1.20.0").logs_notices());
        let launched = |r: &str| {
            entrypoint_lines(&site(r))
                .into_iter()
                .filter(|l| l.contains("Launching /") || l.contains("Sourcing /"))
                .count()
        };
        assert_eq!(launched("nginx:1.19.0"), 2);
        assert_eq!(launched("nginx:1.21.6"), 3);
        let current = entrypoint_lines(&site("nginx"));
        assert_eq!(current.len(), 9);
        assert_eq!(
            current[5],
            "/docker-entrypoint.sh: Sourcing /docker-entrypoint.d/15-local-resolvers.envsh"
        );
        assert!(current[8].ends_with("Configuration complete; ready for start up"));
    }

    #[test]
    fn log_escaping() {
        assert_eq!(escape_log("curl/8.5.0"), "curl/8.5.0");
        assert_eq!(escape_log("a\"b\\c\x01é"), "a\\x22b\\x5Cc\\x01\\xC3\\xA9");
    }

    #[test]
    fn malformed_heads() {
        assert!(parse_head(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").is_ok());
        assert!(parse_head(b"GET / HTTP/1.0\r\n\r\n").is_ok());
        for bad in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"get / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /\r\n\r\n",
            b"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
        ] {
            assert!(
                parse_head(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
