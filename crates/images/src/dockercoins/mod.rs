//! DockerCoins, the sample application of the container.training courses
//! (`training/dockercoins-{rng,hasher,worker,webui}:1.0`, `dockercoins/*:v0.1`): five
//! services that "mine" coins by hashing random bytes, built to show a bottleneck.
//!
//! - [`rng`]: random bytes over HTTP, **one request at a time** with 0.1 s each (the
//!   bottleneck, as the original single-threaded Flask server);
//! - [`hasher`]: SHA-256 over HTTP, concurrent, 0.1 s each (the original Sinatra app);
//! - [`worker`]: the mining loop between rng, hasher and redis, with the original's log
//!   lines and its 10 s retry after any error;
//! - [`webui`]: `/json` from redis and a page that plots hashes/second (the original
//!   Express app; the page is our own, self-contained, since a lab has no internet).
//!
//! Each service keeps its original's defaults (port 80, the names `redis`, `rng`,
//! `hasher`); the `DOCKERCOINS_*` variables below override them, for tests and for running
//! outside a cluster. They are prefixed because Kubernetes itself injects `REDIS_PORT`,
//! `RNG_PORT`... into containers for every Service.

pub mod hasher;
pub mod net;
pub mod rng;
pub mod webui;
pub mod worker;

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::Reference;
use crate::reference::DOCKER_HUB;

/// Where rng, hasher and webui listen (`0.0.0.0:80` by default).
pub const ENV_LISTEN: &str = "DOCKERCOINS_LISTEN";
/// The redis server of worker and webui: `host[:port]` (`redis` by default).
pub const ENV_REDIS: &str = "DOCKERCOINS_REDIS";
/// The URL the worker gets random bytes from (`http://rng/32`).
pub const ENV_RNG_URL: &str = "DOCKERCOINS_RNG_URL";
/// The URL the worker posts bytes to (`http://hasher/`).
pub const ENV_HASHER_URL: &str = "DOCKERCOINS_HASHER_URL";
/// The worker's wait after an error, in seconds (10).
pub const ENV_RETRY_SECONDS: &str = "DOCKERCOINS_RETRY_SECONDS";

/// One of DockerCoins' images.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    Rng,
    Hasher,
    Worker,
    Webui,
}

impl Service {
    pub const ALL: [Service; 4] = [
        Service::Rng,
        Service::Hasher,
        Service::Worker,
        Service::Webui,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Service::Rng => "rng",
            Service::Hasher => "hasher",
            Service::Worker => "worker",
            Service::Webui => "webui",
        }
    }

    /// Whether `reference` names this service's image: `training/dockercoins-<name>` or
    /// `dockercoins/<name>` on Docker Hub, any tag.
    pub fn matches(self, reference: &Reference) -> bool {
        reference.is_repository(DOCKER_HUB, &format!("training/dockercoins-{}", self.name()))
            || reference.is_repository(DOCKER_HUB, &format!("dockercoins/{}", self.name()))
    }
}

/// The container's environment, as the pod gives it.
#[derive(Clone, Debug, Default)]
pub struct Env(Vec<(String, String)>);

impl Env {
    pub fn new(vars: &[(String, String)]) -> Env {
        Env(vars.to_vec())
    }

    /// The last value of `name` (later entries win, as in a pod spec), if not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// The name the services report (`RNG running on <hostname>`): the container's
    /// `HOSTNAME`, else the kernel's.
    pub fn hostname(&self) -> String {
        self.get("HOSTNAME")
            .map(str::to_string)
            .unwrap_or_else(kernel_hostname)
    }

    /// Where an HTTP service listens.
    pub fn listen_address(&self) -> Result<SocketAddr, String> {
        let text = self.get(ENV_LISTEN).unwrap_or("0.0.0.0:80");
        text.parse()
            .map_err(|_| format!("{ENV_LISTEN}={text:?} is not an address:port"))
    }

    /// The redis server as `(host, port)`.
    pub fn redis(&self) -> (String, u16) {
        net::host_and_port(self.get(ENV_REDIS).unwrap_or("redis"), 6379)
    }
}

fn kernel_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string())
}

/// Where a service's log lines go: a standard stream in a container, a buffer in tests.
#[derive(Clone)]
pub struct Log {
    sink: Arc<Mutex<Box<dyn Write + Send>>>,
}

impl Log {
    pub fn stdout() -> Log {
        Log::to_writer(io::stdout())
    }

    pub fn stderr() -> Log {
        Log::to_writer(io::stderr())
    }

    pub fn to_writer(writer: impl Write + Send + 'static) -> Log {
        Log {
            sink: Arc::new(Mutex::new(Box::new(writer))),
        }
    }

    /// Writes `text` plus a newline, whole (lines of concurrent requests do not mix).
    pub fn line(&self, text: &str) {
        if let Ok(mut sink) = self.sink.lock() {
            let _ = sink.write_all(format!("{text}\n").as_bytes());
            let _ = sink.flush();
        }
    }
}

/// The IP address of a peer as the original servers log it (IPv4-mapped addresses
/// unwrapped).
pub(crate) fn peer_ip(peer: &SocketAddr) -> String {
    match peer {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.ip().to_string(),
        },
        SocketAddr::V4(v4) => v4.ip().to_string(),
    }
}

/// How long a connection may stay idle between requests.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs a container of `service`: the server (or the worker loop) until SIGTERM or SIGINT,
/// exit code 0. The image's command is fixed; `command`/`args` are ignored, like the
/// originals' `CMD` that a pod seldom overrides.
pub fn run(
    service: Service,
    _command: &[String],
    _args: &[String],
    env: &[(String, String)],
) -> ExitCode {
    let env = Env::new(env);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{}: cannot start: {e}", service.name());
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        let Some(shutdown) = termination() else {
            eprintln!("{}: cannot install signal handlers", service.name());
            return ExitCode::from(1);
        };
        let served = match service {
            Service::Worker => {
                worker::work(
                    worker::WorkerConfig::from_env(&env),
                    Log::stderr(),
                    shutdown,
                )
                .await;
                Ok(())
            }
            _ => {
                let address = match env.listen_address() {
                    Ok(a) => a,
                    Err(why) => {
                        eprintln!("{why}");
                        return ExitCode::from(2);
                    }
                };
                let listener = match StdTcpListener::bind(address) {
                    Ok(l) => l,
                    Err(e) => {
                        bind_failure(service, address, &e);
                        return ExitCode::from(1);
                    }
                };
                match service {
                    Service::Rng => rng::run_server(listener, &env, shutdown).await,
                    Service::Hasher => hasher::run_server(listener, &env, shutdown).await,
                    _ => webui::run_server(listener, &env, shutdown).await,
                }
            }
        };
        match served {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{}: {e}", service.name());
                ExitCode::from(1)
            }
        }
    })
}

/// What each original prints when port 80 is taken.
fn bind_failure(service: Service, address: SocketAddr, e: &io::Error) {
    let errno = e.raw_os_error().unwrap_or(0);
    match service {
        Service::Rng => eprintln!("OSError: [Errno {errno}] {}", strip_os_error(e)),
        Service::Hasher => eprintln!(
            "{}: no acceptor (port is in use or requires root privileges) (RuntimeError)",
            address
        ),
        _ => eprintln!(
            "Error: listen EADDRINUSE: address already in use {address} ({})",
            strip_os_error(e)
        ),
    }
}

fn strip_os_error(e: &io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// A future that completes on SIGTERM or SIGINT.
fn termination() -> Option<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok()?;
    let mut int = signal(SignalKind::interrupt()).ok()?;
    Some(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names() {
        for (text, service) in [
            ("training/dockercoins-rng:1.0", Service::Rng),
            ("docker.io/training/dockercoins-hasher:1.0", Service::Hasher),
            ("dockercoins/worker:v0.1", Service::Worker),
            ("dockercoins/webui", Service::Webui),
        ] {
            let r = Reference::parse(text).unwrap();
            let found: Vec<Service> = Service::ALL.into_iter().filter(|s| s.matches(&r)).collect();
            assert_eq!(found, vec![service], "{text}");
        }
        let other = Reference::parse("quay.io/dockercoins/rng").unwrap();
        assert!(Service::ALL.iter().all(|s| !s.matches(&other)));
    }

    #[test]
    fn environment_knobs() {
        let env = Env::new(&[
            ("HOSTNAME".into(), "rng-7d9f".into()),
            (ENV_LISTEN.into(), "127.0.0.1:8080".into()),
            (ENV_REDIS.into(), "127.0.0.1:7000".into()),
        ]);
        assert_eq!(env.hostname(), "rng-7d9f");
        assert_eq!(env.listen_address().unwrap().port(), 8080);
        assert_eq!(env.redis(), ("127.0.0.1".to_string(), 7000));
        let defaults = Env::new(&[]);
        assert_eq!(defaults.listen_address().unwrap().to_string(), "0.0.0.0:80");
        assert_eq!(defaults.redis(), ("redis".to_string(), 6379));
        assert!(
            Env::new(&[(ENV_LISTEN.into(), "nope".into())])
                .listen_address()
                .is_err()
        );
    }
}
