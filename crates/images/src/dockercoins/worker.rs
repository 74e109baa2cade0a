//! DockerCoins' `worker`, the original `worker.py`'s loop: every 0.1 s get 32 random bytes
//! from rng, have hasher hash them, and keep the hash as a coin in redis's `wallet` hash when
//! it starts with `0`; about once a second add the loops done to redis's `hashes` counter.
//! Any error ends the loop: the worker logs the exception (a Python-style traceback under
//! `In work loop:`), waits 10 s and starts the loop again — which is how it recovers by
//! itself once the Services it needs exist.
//!
//! The log lines are Python logging's `basicConfig` format on stderr
//! (`INFO:__main__:<message>`), the tracebacks name `worker.py`'s own lines and the
//! exception texts of redis-py and requests that a course user sees. Each HTTP call
//! resolves the name again on a fresh connection (requests without a session); the redis
//! connection is kept and dropped after a connection error (redis-py's pool).

use std::future::Future;
use std::time::{Duration, Instant};

use super::net::{self, HttpUrl, NetError, RedisCallError, RedisConnection};
use super::{ENV_HASHER_URL, ENV_RETRY_SECONDS, ENV_RNG_URL, Env, Log};
use crate::redis::resp::Reply;

/// The original's pause before each unit of work.
pub const PAUSE: Duration = Duration::from_millis(100);
/// How often the `hashes` counter is updated (`work_loop(interval=1)`).
pub const INTERVAL: Duration = Duration::from_secs(1);
/// The wait after an error (`Waiting 10s and restarting.`).
pub const RETRY: Duration = Duration::from_secs(10);

/// Where the worker finds its services and how it paces itself.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerConfig {
    pub redis_host: String,
    pub redis_port: u16,
    pub rng_url: HttpUrl,
    pub hasher_url: HttpUrl,
    pub pause: Duration,
    pub interval: Duration,
    pub retry: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            redis_host: "redis".into(),
            redis_port: 6379,
            rng_url: HttpUrl {
                host: "rng".into(),
                port: 80,
                path: "/32".into(),
            },
            hasher_url: HttpUrl {
                host: "hasher".into(),
                port: 80,
                path: "/".into(),
            },
            pause: PAUSE,
            interval: INTERVAL,
            retry: RETRY,
        }
    }
}

impl WorkerConfig {
    /// The original's defaults with the `DOCKERCOINS_*` overrides; an invalid override is
    /// ignored (the default stays).
    pub fn from_env(env: &Env) -> WorkerConfig {
        let mut config = WorkerConfig::default();
        (config.redis_host, config.redis_port) = env.redis();
        if let Some(url) = env.get(ENV_RNG_URL).and_then(HttpUrl::parse) {
            config.rng_url = url;
        }
        if let Some(url) = env.get(ENV_HASHER_URL).and_then(HttpUrl::parse) {
            config.hasher_url = url;
        }
        if let Some(retry) = env
            .get(ENV_RETRY_SECONDS)
            .and_then(|s| s.parse::<f64>().ok())
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
        {
            config.retry = retry;
        }
        config
    }
}

/// Where in `worker.py` an exception was raised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Site {
    /// `redis.incrby("hashes", loops_done)` in `work_loop`.
    IncrementHashes,
    /// `requests.get("http://rng/32")` in `get_random_bytes`.
    GetRandomBytes,
    /// `requests.post("http://hasher/", ...)` in `hash_bytes`.
    HashBytes,
    /// `redis.hset("wallet", hex_hash, random_bytes)` in `work_once`.
    SaveCoin,
}

/// Why the work loop stopped.
#[derive(Debug)]
pub struct Failure {
    pub site: Site,
    pub error: RedisCallError,
}

/// The traceback `log.exception("In work loop:")` prints for `failure`, without its
/// `ERROR:__main__:In work loop:` line.
pub fn traceback(failure: &Failure, config: &WorkerConfig) -> Vec<String> {
    let mut lines = vec![
        "Traceback (most recent call last):".to_string(),
        "  File \"worker.py\", line 64, in <module>".to_string(),
        "    work_loop()".to_string(),
    ];
    let frames: &[(u32, &str, &str)] = match failure.site {
        Site::IncrementHashes => &[(40, "work_loop", "redis.incrby(\"hashes\", loops_done)")],
        Site::GetRandomBytes => &[
            (43, "work_loop", "work_once()"),
            (50, "work_once", "random_bytes = get_random_bytes()"),
            (
                21,
                "get_random_bytes",
                "r = requests.get(\"http://rng/32\")",
            ),
        ],
        Site::HashBytes => &[
            (43, "work_loop", "work_once()"),
            (51, "work_once", "hex_hash = hash_bytes(random_bytes)"),
            (26, "hash_bytes", "r = requests.post(\"http://hasher/\","),
        ],
        Site::SaveCoin => &[
            (43, "work_loop", "work_once()"),
            (
                56,
                "work_once",
                "created = redis.hset(\"wallet\", hex_hash, random_bytes)",
            ),
        ],
    };
    for (line, function, code) in frames {
        lines.push(format!("  File \"worker.py\", line {line}, in {function}"));
        lines.push(format!("    {code}"));
    }
    lines.push(match failure.site {
        Site::IncrementHashes | Site::SaveCoin => {
            redis_exception(&failure.error, &config.redis_host, config.redis_port)
        }
        Site::GetRandomBytes => match &failure.error {
            RedisCallError::Net(e) => requests_exception(e, &config.rng_url),
            RedisCallError::Reply(e) => format!("requests.exceptions.HTTPError: {e}"),
        },
        Site::HashBytes => match &failure.error {
            RedisCallError::Net(e) => requests_exception(e, &config.hasher_url),
            RedisCallError::Reply(e) => format!("requests.exceptions.HTTPError: {e}"),
        },
    });
    lines
}

/// redis-py's exception for a failed command.
fn redis_exception(error: &RedisCallError, host: &str, port: u16) -> String {
    match error {
        RedisCallError::Reply(message) => format!(
            "redis.exceptions.ResponseError: {}",
            message.strip_prefix("ERR ").unwrap_or(message)
        ),
        RedisCallError::Net(NetError::Resolve { code, message }) => format!(
            "redis.exceptions.ConnectionError: Error {code} connecting to {host}:{port}. {message}."
        ),
        RedisCallError::Net(NetError::Connect { errno, message }) => format!(
            "redis.exceptions.ConnectionError: Error {errno} connecting to {host}:{port}. {message}."
        ),
        RedisCallError::Net(NetError::Timeout) => {
            "redis.exceptions.TimeoutError: Timeout connecting to server".to_string()
        }
        RedisCallError::Net(NetError::Closed) => {
            "redis.exceptions.ConnectionError: Connection closed by server.".to_string()
        }
        RedisCallError::Net(e) => {
            format!("redis.exceptions.ConnectionError: Error while reading from socket: ('{e}',)")
        }
    }
}

/// A Python object address for messages like `<urllib3.connection.HTTPConnection object at
/// 0x7f3a2c1b5d30>`.
fn object_address() -> String {
    format!("0x7f{:010x}", rand::random::<u64>() & 0xff_ffff_fff0)
}

/// requests' exception for a failed call to `url`.
fn requests_exception(error: &NetError, url: &HttpUrl) -> String {
    let pool = format!(
        "HTTPConnectionPool(host='{}', port={}): Max retries exceeded with url: {}",
        url.host, url.port, url.path
    );
    let connection = format!(
        "<urllib3.connection.HTTPConnection object at {}>",
        object_address()
    );
    match error {
        NetError::Resolve { .. } | NetError::Connect { .. } => format!(
            "requests.exceptions.ConnectionError: {pool} (Caused by NewConnectionError('{connection}: Failed to establish a new connection: {error}'))"
        ),
        NetError::Timeout => format!(
            "requests.exceptions.ConnectTimeout: {pool} (Caused by ConnectTimeoutError({connection}, 'Connection to {} timed out. (connect timeout=None)'))",
            url.host
        ),
        _ => "requests.exceptions.ConnectionError: ('Connection aborted.', RemoteDisconnected('Remote end closed connection without response'))".to_string(),
    }
}

/// The worker's state between loops: its redis connection.
struct Worker<'a> {
    config: &'a WorkerConfig,
    log: &'a Log,
    redis: Option<RedisConnection>,
}

impl Worker<'_> {
    fn info(&self, message: &str) {
        self.log.line(&format!("INFO:__main__:{message}"));
    }

    async fn redis_call(&mut self, args: &[&[u8]], site: Site) -> Result<Reply, Failure> {
        let fail = |error: RedisCallError| Failure { site, error };
        let connection = match &mut self.redis {
            Some(c) => c,
            None => {
                let c = RedisConnection::connect(&self.config.redis_host, self.config.redis_port)
                    .await
                    .map_err(|e| fail(e.into()))?;
                self.redis.insert(c)
            }
        };
        match connection.call(args).await {
            Ok(reply) => Ok(reply),
            Err(RedisCallError::Net(e)) => {
                self.redis = None;
                Err(fail(e.into()))
            }
            Err(e) => Err(fail(e)),
        }
    }

    /// `work_loop()`: returns only with the exception that ended it.
    async fn work_loop(&mut self) -> Failure {
        let mut deadline: Option<Instant> = None;
        let mut loops_done: u64 = 0;
        loop {
            if deadline.is_none_or(|d| Instant::now() > d) {
                self.info(&format!(
                    "{loops_done} units of work done, updating hash counter"
                ));
                let done = loops_done.to_string();
                if let Err(f) = self
                    .redis_call(
                        &[b"INCRBY", b"hashes", done.as_bytes()],
                        Site::IncrementHashes,
                    )
                    .await
                {
                    return f;
                }
                loops_done = 0;
                deadline = Some(Instant::now() + self.config.interval);
            }
            if let Err(f) = self.work_once().await {
                return f;
            }
            loops_done += 1;
        }
    }

    /// `work_once()`.
    async fn work_once(&mut self) -> Result<(), Failure> {
        tokio::time::sleep(self.config.pause).await;
        let random = net::http_call(&self.config.rng_url, "GET", None, b"")
            .await
            .map_err(|e| Failure {
                site: Site::GetRandomBytes,
                error: e.into(),
            })?
            .body;
        let hashed = net::http_call(
            &self.config.hasher_url,
            "POST",
            Some("application/octet-stream"),
            &random,
        )
        .await
        .map_err(|e| Failure {
            site: Site::HashBytes,
            error: e.into(),
        })?;
        let hex = String::from_utf8_lossy(&hashed.body).into_owned();
        if !hex.starts_with('0') {
            return Ok(());
        }
        let prefix: String = hex.chars().take(8).collect();
        self.info(&format!("Coin found: {prefix}..."));
        let created = self
            .redis_call(
                &[b"HSET", b"wallet", hex.as_bytes(), &random],
                Site::SaveCoin,
            )
            .await?;
        if created == Reply::Integer(0) {
            self.info("We already had that coin");
        }
        Ok(())
    }
}

/// Runs the worker until `shutdown` completes: the work loop, and after each failure its
/// traceback, `Waiting 10s and restarting.` and the wait. Must run inside a tokio runtime.
pub async fn work(config: WorkerConfig, log: Log, shutdown: impl Future<Output = ()>) {
    let mut worker = Worker {
        config: &config,
        log: &log,
        redis: None,
    };
    let forever = async {
        loop {
            let failure = worker.work_loop().await;
            worker.log.line("ERROR:__main__:In work loop:");
            for line in traceback(&failure, worker.config) {
                worker.log.line(&line);
            }
            let seconds = worker.config.retry.as_secs_f64();
            worker.log.line(&format!(
                "ERROR:__main__:Waiting {seconds}s and restarting."
            ));
            tokio::time::sleep(worker.config.retry).await;
        }
    };
    tokio::select! {
        _ = forever => {},
        _ = shutdown => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration() {
        let config = WorkerConfig::from_env(&Env::new(&[]));
        assert_eq!(config, WorkerConfig::default());
        let config = WorkerConfig::from_env(&Env::new(&[
            (ENV_RNG_URL.into(), "http://127.0.0.1:8001/32".into()),
            (ENV_HASHER_URL.into(), "http://127.0.0.1:8002/".into()),
            (ENV_RETRY_SECONDS.into(), "0.5".into()),
            (super::super::ENV_REDIS.into(), "127.0.0.1:7000".into()),
        ]));
        assert_eq!(config.rng_url.port, 8001);
        assert_eq!(config.hasher_url.port, 8002);
        assert_eq!(config.retry, Duration::from_millis(500));
        assert_eq!(
            (config.redis_host.as_str(), config.redis_port),
            ("127.0.0.1", 7000)
        );
    }

    #[test]
    fn tracebacks_like_python() {
        let config = WorkerConfig::default();
        let dns = Failure {
            site: Site::IncrementHashes,
            error: NetError::Resolve {
                code: -2,
                message: "Name or service not known".into(),
            }
            .into(),
        };
        let lines = traceback(&dns, &config);
        assert_eq!(lines[0], "Traceback (most recent call last):");
        assert_eq!(lines[4], "    redis.incrby(\"hashes\", loops_done)");
        assert_eq!(
            lines.last().unwrap(),
            "redis.exceptions.ConnectionError: Error -2 connecting to redis:6379. Name or service not known."
        );
        let refused = Failure {
            site: Site::GetRandomBytes,
            error: NetError::Connect {
                errno: 111,
                message: "Connection refused".into(),
            }
            .into(),
        };
        let last = traceback(&refused, &config).pop().unwrap();
        assert!(
            last.starts_with(
                "requests.exceptions.ConnectionError: HTTPConnectionPool(host='rng', port=80): Max retries exceeded with url: /32 (Caused by NewConnectionError('<urllib3.connection.HTTPConnection object at 0x7f"
            ),
            "{last}"
        );
        assert!(
            last.ends_with(
                ">: Failed to establish a new connection: [Errno 111] Connection refused'))"
            ),
            "{last}"
        );
        let wrongtype = Failure {
            site: Site::SaveCoin,
            error: RedisCallError::Reply(
                "WRONGTYPE Operation against a key holding the wrong kind of value".into(),
            ),
        };
        assert_eq!(
            traceback(&wrongtype, &config).pop().unwrap(),
            "redis.exceptions.ResponseError: WRONGTYPE Operation against a key holding the wrong kind of value"
        );
    }
}
