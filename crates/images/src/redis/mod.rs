//! The `redis` image (Docker Hub's official one, any tag): `redis-server` with its default
//! configuration, a RESP2 server on port 6379 with the commands DockerCoins and everyday
//! `redis-cli` use ([`commands`]), pipelining, inline (telnet-style) commands and Redis's own
//! error texts, plus the start-up and shutdown lines the official image prints.
//!
//! Kept in memory only: no RDB/AOF files, no replication, no pub/sub, lists or sets. A
//! command Redis has but this server does not gets Redis's `unknown command` error, so a
//! learner sees what is missing instead of a silent wrong answer.

pub mod commands;
pub mod resp;

use std::future::Future;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::Reference;
use commands::{ServerInfo, Session, Store};
use resp::{Parsed, Reply};

/// The version a tag without one (`latest`, `alpine`, no tag) stands for.
pub const DEFAULT_VERSION: &str = "7.4.2";

/// The last release of each series a tag like `7.2` or `7` names.
const SERIES: [(&str, &str); 9] = [
    ("8", "8.0.2"),
    ("8.0", "8.0.2"),
    ("7", "7.4.2"),
    ("7.4", "7.4.2"),
    ("7.2", "7.2.7"),
    ("7.0", "7.0.15"),
    ("6", "6.2.17"),
    ("6.2", "6.2.17"),
    ("6.0", "6.0.20"),
];

/// Redis's default port.
pub const DEFAULT_PORT: u16 = 6379;

/// A client may not send more than this without a complete command (Redis's
/// `client-query-buffer-limit` is 1 GB; a lab needs far less).
const QUERY_BUFFER_LIMIT: usize = 64 * 1024 * 1024;

/// The Redis version an image tag names: `7.2.4` itself, `7.2-alpine` the last 7.2 release,
/// `None` for tags without a version.
pub fn version_from_tag(tag: &str) -> Option<String> {
    let numeric = tag.split('-').next()?;
    if numeric.is_empty()
        || !numeric
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    match numeric.split('.').count() {
        3 => Some(numeric.to_string()),
        _ => Some(
            SERIES
                .iter()
                .find(|(series, _)| *series == numeric)
                .map(|(_, v)| v.to_string())
                .unwrap_or_else(|| format!("{numeric}.0")),
        ),
    }
}

/// The version of the image `reference` names.
pub fn version_for_reference(reference: &str) -> String {
    Reference::parse(reference)
        .and_then(|r| r.tag)
        .and_then(|tag| version_from_tag(&tag))
        .unwrap_or_else(|| DEFAULT_VERSION.to_string())
}

/// Where `redis-server` listens: `--port` and `--bind` (first address) from its arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerOptions {
    pub bind: String,
    pub port: u16,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            bind: "0.0.0.0".to_string(),
            port: DEFAULT_PORT,
        }
    }
}

impl ServerOptions {
    /// Reads `redis-server [--port N] [--bind ADDR ...] [other options]`; other options are
    /// accepted and ignored (this server has nothing to configure). An invalid port is an
    /// error in `redis-server`'s wording.
    pub fn from_args(args: &[String]) -> Result<ServerOptions, String> {
        let mut options = ServerOptions::default();
        let mut i = 0;
        while i < args.len() {
            match args[i].as_str() {
                "--port" => {
                    let value = args.get(i + 1).map_or("", String::as_str);
                    options.port = value.parse().map_err(|_| "Invalid port".to_string())?;
                    i += 1;
                }
                "--bind" => {
                    if let Some(first) = args.get(i + 1).and_then(|v| v.split_whitespace().next()) {
                        options.bind = match first {
                            "*" | "-*" => "0.0.0.0".to_string(),
                            a => a.trim_start_matches('-').to_string(),
                        };
                    }
                    i += 1;
                }
                _ => {}
            }
            i += 1;
        }
        Ok(options)
    }
}

/// The program the container runs: the pod's `command` + `args`, or the image's
/// `docker-entrypoint.sh redis-server` with `args` (options alone are given to
/// `redis-server`, as the entrypoint script does).
pub fn effective_argv(command: &[String], args: &[String]) -> Vec<String> {
    if !command.is_empty() {
        return command.iter().chain(args).cloned().collect();
    }
    match args.first() {
        None => vec!["redis-server".to_string()],
        Some(first) if first.starts_with('-') || first.ends_with(".conf") => {
            std::iter::once("redis-server".to_string())
                .chain(args.iter().cloned())
                .collect()
        }
        Some(_) => args.to_vec(),
    }
}

/// Where the server's log lines go: stdout in a container, a buffer in tests.
#[derive(Clone)]
pub struct ServerLog {
    sink: Arc<Mutex<Box<dyn Write + Send>>>,
}

impl ServerLog {
    pub fn stdout() -> ServerLog {
        ServerLog::to_writer(io::stdout())
    }

    pub fn to_writer(writer: impl Write + Send + 'static) -> ServerLog {
        ServerLog {
            sink: Arc::new(Mutex::new(Box::new(writer))),
        }
    }

    /// `1:M 20 Mar 2024 10:11:12.345 * <message>`: pid 1 (the container's), the role (`C`
    /// for the launcher, `M` for the master), the level mark (`*` notice, `#` warning).
    fn line(&self, role: char, level: char, message: &str) {
        let time = Timestamp::now()
            .to_zoned(TimeZone::UTC)
            .strftime("%d %b %Y %H:%M:%S%.3f")
            .to_string();
        self.raw(&format!("1:{role} {time} {level} {message}\n"));
    }

    fn raw(&self, text: &str) {
        if let Ok(mut sink) = self.sink.lock() {
            let _ = sink.write_all(text.as_bytes());
            let _ = sink.flush();
        }
    }

    /// The start-up lines of the official image with no configuration file.
    pub fn startup(&self, version: &str, port: u16) {
        self.line('C', '*', "oO0OoO0OoO0Oo Redis is starting oO0OoO0OoO0Oo");
        self.line(
            'C',
            '*',
            &format!(
                "Redis version={version}, bits=64, commit=00000000, modified=0, pid=1, just started"
            ),
        );
        self.line(
            'C',
            '#',
            "Warning: no config file specified, using the default config. In order to specify a config file use redis-server /path/to/redis.conf",
        );
        self.line('M', '*', "monotonic clock: POSIX clock_gettime");
        self.line('M', '*', &format!("Running mode=standalone, port={port}."));
        self.line('M', '*', "Server initialized");
        // 7.2 added the listener type to this line.
        let tcp = if version_at_least(version, 7, 2) {
            " tcp"
        } else {
            ""
        };
        self.line('M', '*', &format!("Ready to accept connections{tcp}"));
    }

    /// What Redis prints when SIGTERM/SIGINT stops it.
    pub fn shutdown(&self, signal: &str) {
        let secs = Timestamp::now().as_second();
        self.raw(&format!(
            "1:signal-handler ({secs}) Received {signal} scheduling shutdown...\n"
        ));
        self.line('M', '#', "User requested shutdown...");
        self.line('M', '#', "Redis is now ready to exit, bye bye...");
    }
}

fn version_at_least(version: &str, major: u32, minor: u32) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let v = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    v >= (major, minor)
}

/// Shared by every connection of one server.
struct Shared {
    store: Mutex<Store>,
    version: String,
    port: u16,
    clients: AtomicUsize,
    next_id: AtomicU64,
}

/// Serves RESP on `listener` until `shutdown` completes. Must run inside a tokio runtime.
pub async fn serve_redis(
    listener: StdTcpListener,
    version: String,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let listener = TcpListener::from_std(listener)?;
    let shared = Arc::new(Shared {
        store: Mutex::new(Store::new()),
        version,
        port,
        clients: AtomicUsize::new(0),
        next_id: AtomicU64::new(3),
    });
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return Ok(()),
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            shared.clients.fetch_add(1, Ordering::SeqCst);
            let _ = serve_client(stream, &shared).await;
            shared.clients.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

async fn serve_client(mut stream: TcpStream, shared: &Shared) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut session = Session {
        id: shared.next_id.fetch_add(1, Ordering::SeqCst),
        ..Session::default()
    };
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        let (out, consumed, close) = answer_buffered(&buf, &mut session, shared);
        buf.drain(..consumed);
        if !out.is_empty() {
            stream.write_all(&out).await?;
        }
        if close || buf.len() > QUERY_BUFFER_LIMIT {
            return Ok(());
        }
    }
}

/// Runs every complete command in `buf`: the replies, the bytes used, and whether to close
/// the connection (QUIT or a protocol error).
fn answer_buffered(buf: &[u8], session: &mut Session, shared: &Shared) -> (Vec<u8>, usize, bool) {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        match resp::parse_command(&buf[at..]) {
            Ok(None) => break,
            Ok(Some(Parsed::Skip(n))) => at += n,
            Ok(Some(Parsed::Command(args, n))) => {
                at += n;
                let info = ServerInfo {
                    version: shared.version.clone(),
                    port: shared.port,
                    connected_clients: shared.clients.load(Ordering::SeqCst),
                };
                let reply = match shared.store.lock() {
                    Ok(mut store) => commands::execute(&mut store, session, &info, &args),
                    Err(_) => Reply::error("ERR internal error"),
                };
                reply.encode(&mut out);
                if session.closing {
                    return (out, at, true);
                }
            }
            Err(e) => {
                Reply::error(format!("ERR {e}")).encode(&mut out);
                return (out, buf.len(), true);
            }
        }
    }
    (out, at, false)
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The image's entry point: `redis-server` on 0.0.0.0:6379 (or `--bind`/`--port`) until
/// SIGTERM or SIGINT, exit code 0.
pub fn run(
    reference: &str,
    command: &[String],
    args: &[String],
    _env: &[(String, String)],
) -> ExitCode {
    let mut argv = effective_argv(command, args);
    if argv.first().map(|a| basename(a)) == Some("docker-entrypoint.sh") {
        argv.remove(0);
    }
    let program = argv.first().map_or("", |p| basename(p));
    if program != "redis-server" {
        eprintln!(
            "exec: \"{program}\": executable file not found in $PATH (kubelab's redis image runs only redis-server)"
        );
        return ExitCode::from(127);
    }
    let options = match ServerOptions::from_args(&argv[1..]) {
        Ok(o) => o,
        Err(why) => {
            eprintln!("\n*** FATAL CONFIG FILE ERROR (Redis {DEFAULT_VERSION}) ***\n{why}");
            return ExitCode::from(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("redis-server: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    let version = version_for_reference(reference);
    runtime.block_on(run_server(options, version))
}

async fn run_server(options: ServerOptions, version: String) -> ExitCode {
    use tokio::signal::unix::{SignalKind, signal};
    let log = ServerLog::stdout();
    let address = format!("{}:{}", options.bind, options.port);
    let listener = match address
        .parse::<SocketAddr>()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
        .and_then(StdTcpListener::bind)
    {
        Ok(l) => l,
        Err(e) => {
            log.line(
                'M',
                '#',
                &format!("Warning: Could not create server TCP listening socket {address}: {e}"),
            );
            log.line('M', '#', "Failed listening on port (tcp), aborting.");
            return ExitCode::from(1);
        }
    };
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("redis-server: cannot install signal handlers");
        return ExitCode::from(1);
    };
    log.startup(&version, options.port);
    let received = Arc::new(Mutex::new("SIGTERM"));
    let record = received.clone();
    let shutdown = async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        if let Ok(mut r) = record.lock() {
            *r = name;
        }
    };
    match serve_redis(listener, version, shutdown).await {
        Ok(()) => {
            let name = received.lock().map(|n| *n).unwrap_or("SIGTERM");
            log.shutdown(name);
            ExitCode::SUCCESS
        }
        Err(e) => {
            log.line('M', '#', &format!("{e}"));
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn versions_from_tags() {
        assert_eq!(version_for_reference("redis"), DEFAULT_VERSION);
        assert_eq!(version_for_reference("redis:latest"), DEFAULT_VERSION);
        assert_eq!(version_for_reference("redis:7.2.4"), "7.2.4");
        assert_eq!(version_for_reference("redis:7.2-alpine"), "7.2.7");
        assert_eq!(version_for_reference("redis:6"), "6.2.17");
        assert_eq!(version_for_reference("redis:5.0"), "5.0.0");
    }

    #[test]
    fn argv_and_options() {
        assert_eq!(effective_argv(&[], &[]), strings(&["redis-server"]));
        assert_eq!(
            effective_argv(&[], &strings(&["--port", "7000"])),
            strings(&["redis-server", "--port", "7000"])
        );
        assert_eq!(
            ServerOptions::from_args(&strings(&["--port", "7000", "--bind", "127.0.0.1 -::1"])),
            Ok(ServerOptions {
                bind: "127.0.0.1".into(),
                port: 7000
            })
        );
        assert!(ServerOptions::from_args(&strings(&["--port", "x"])).is_err());
        assert_eq!(
            ServerOptions::from_args(&strings(&["--appendonly", "yes"])),
            Ok(ServerOptions::default())
        );
    }

    #[test]
    fn startup_lines_like_the_official_image() {
        let buf = Arc::new(Mutex::new(Vec::new()));
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl Write for Sink {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let log = ServerLog::to_writer(Sink(buf.clone()));
        log.startup("7.4.2", 6379);
        let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        let last = text.lines().last().unwrap();
        assert!(last.starts_with("1:M "), "{last}");
        assert!(
            last.ends_with(" * Ready to accept connections tcp"),
            "{last}"
        );
        assert!(text.contains("Redis version=7.4.2, bits=64"));
        assert!(text.contains("Running mode=standalone, port=6379."));
    }
}
