//! kubelab's cluster DNS: the built-in image that stands for CoreDNS
//! (`registry.k8s.io/coredns/coredns`), run as the container of the `coredns` pods behind the
//! `kube-system/kube-dns` Service.
//!
//! It answers like CoreDNS's kubernetes plugin under kubeadm's Corefile (`pods insecure`,
//! `ttl 30`, zones `cluster.local`, `in-addr.arpa`, `ip6.arpa`), with one deliberate
//! difference: names outside those zones are REFUSED, not forwarded, because a lab has no
//! upstream resolver and sends nothing off the machine (single-label names get the NXDOMAIN
//! the root zone would give).
//!
//! - [`records`]: the pure data ([`Records`]) built from Services, EndpointSlices, Namespaces;
//! - [`mod@lookup`]: the pure question-to-answer function ([`lookup()`]) and the wire format;
//! - [`server`]: UDP/TCP on port 53 and the `health`/`ready` HTTP endpoints;
//! - [`feed`]: reflectors that rebuild the records after every change.
//!
//! Entry points: [`run_in_cluster`] in a pod (service-account credentials),
//! [`run_with_args`] for a container's arguments (`--kubeconfig FILE` outside a pod), and
//! [`run`] / [`serve_cluster`] for callers with their own runtime and client.

pub mod feed;
pub mod lookup;
pub mod records;
pub mod server;

pub use lookup::{DNS_SCHEMA_VERSION, Transport, answer_packet, lookup};
pub use records::{CLUSTER_DOMAIN, Records, TTL};
pub use server::{DnsListen, DnsServer};

use sha2::{Digest, Sha512};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The CoreDNS release this image reports, with the Go version and commit its banner shows.
pub const COREDNS_VERSION: &str = "1.11.3";
const GO_VERSION: &str = "go1.21.11";
const GIT_COMMIT: &str = "a6338e9";

/// The Corefile kubeadm writes, which this server emulates (except `forward`); the banner's
/// configuration hash is computed over it.
pub const KUBEADM_COREFILE: &str = ".:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30
    loop
    reload
    loadbalance
}
";

/// How long startup waits for the first sync before serving anyway (CoreDNS: 5 s).
const STARTUP_SYNC_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("Listen: listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
    #[error("reading kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        source: kube::config::KubeconfigError,
    },
    #[error("in-cluster configuration: {0}")]
    InCluster(#[from] kube::config::InClusterError),
    #[error("Kubernetes client: {0}")]
    Client(#[from] kube::Error),
    #[error("starting the runtime: {0}")]
    Runtime(std::io::Error),
}

/// What the container's arguments ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// `--kubeconfig FILE`: talk to the API server from outside a pod.
    pub kubeconfig: Option<PathBuf>,
    pub listen: DnsListen,
    /// `-version`: print the version and exit, as `coredns -version` does.
    pub show_version: bool,
}

/// Reads CoreDNS-style flags (one or two dashes, `-flag value` or `-flag=value`):
/// `-conf FILE` (accepted and ignored: the configuration is fixed, see
/// [`KUBEADM_COREFILE`]), `-dns.port N`, `-version`, and kubelab's own `--kubeconfig FILE`
/// and `--bind IP` (the address every listener uses).
pub fn parse_args(args: &[String]) -> Result<Options, DnsError> {
    let mut options = Options {
        kubeconfig: None,
        listen: DnsListen::default(),
        show_version: false,
    };
    let mut bind: Option<IpAddr> = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let flag = arg.trim_start_matches('-');
        if flag.len() == arg.len() {
            return Err(DnsError::Usage(format!("unexpected argument {arg:?}")));
        }
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag, None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| rest.next().cloned())
                .ok_or_else(|| DnsError::Usage(format!("flag needs an argument: -{name}")))
        };
        match name {
            "version" => options.show_version = true,
            "conf" => {
                value()?;
            }
            "kubeconfig" => options.kubeconfig = Some(PathBuf::from(value()?)),
            "dns.port" => {
                let text = value()?;
                let port = text
                    .parse::<u16>()
                    .map_err(|_| DnsError::Usage(format!("invalid -dns.port {text:?}")))?;
                options.listen.dns.set_port(port);
            }
            "bind" => {
                let text = value()?;
                bind = Some(
                    text.parse()
                        .map_err(|_| DnsError::Usage(format!("invalid --bind {text:?}")))?,
                );
            }
            _ => {
                return Err(DnsError::Usage(format!(
                    "flag provided but not defined: {arg}"
                )));
            }
        }
    }
    if let Some(ip) = bind {
        options.listen.dns.set_ip(ip);
        for addr in [&mut options.listen.health, &mut options.listen.ready]
            .into_iter()
            .flatten()
        {
            addr.set_ip(ip);
        }
    }
    Ok(options)
}

/// The container's entry point inside a pod: in-cluster credentials, CoreDNS's ports,
/// serving until SIGTERM.
pub fn run_in_cluster() -> ExitCode {
    run_with_args(&[])
}

/// The container's entry point with its arguments (see [`parse_args`]); builds its own
/// runtime and serves until SIGTERM or SIGINT.
pub fn run_with_args(args: &[String]) -> ExitCode {
    let options = match parse_args(args) {
        Ok(options) => options,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    if options.show_version {
        println!("{}", version_lines());
        return ExitCode::SUCCESS;
    }
    // kube-rs builds its TLS configuration from the process's default provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("[FATAL] {}", DnsError::Runtime(error));
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let client = client(options.kubeconfig.as_deref()).await?;
        run(client, options.listen).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("[FATAL] {error}");
            ExitCode::FAILURE
        }
    }
}

/// A client from `kubeconfig`, or from the pod's service account when `None`.
pub async fn client(kubeconfig: Option<&std::path::Path>) -> Result<kube::Client, DnsError> {
    let config = match kubeconfig {
        Some(path) => {
            let error = |source| DnsError::Kubeconfig {
                path: path.to_path_buf(),
                source,
            };
            let file = kube::config::Kubeconfig::read_from(path).map_err(error)?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(error)?
        }
        None => kube::Config::incluster()?,
    };
    Ok(kube::Client::try_from(config)?)
}

/// Binds `listen` and serves the cluster's names until SIGTERM (or SIGINT).
pub async fn run(client: kube::Client, listen: DnsListen) -> Result<(), DnsError> {
    let server = DnsServer::bind(&listen).await?;
    serve_cluster(server, client, termination()).await
}

/// Feeds `server` from the cluster and serves until `shutdown`. Like CoreDNS, it waits up
/// to 5 s for the first sync before printing its banner and answering (queries that
/// arrive meanwhile wait in the socket).
pub async fn serve_cluster(
    server: DnsServer,
    client: kube::Client,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DnsError> {
    let (sender, mut records) = watch::channel(Arc::new(Records::unsynced()));
    let feed = tokio::spawn(feed::feed(client, sender));
    let synced = tokio::time::timeout(STARTUP_SYNC_WAIT, records.wait_for(|r| r.is_synced()))
        .await
        .is_ok_and(|r| r.is_ok());
    if !synced {
        println!("[WARNING] plugin/kubernetes: starting server with unsynced Kubernetes API");
    }
    println!("{}", banner(server.dns_addr().port()));
    let result = server.serve(records, shutdown).await;
    feed.abort();
    result
}

/// CoreDNS's startup lines: the server block, the configuration hash, the version.
pub fn banner(port: u16) -> String {
    let hash: String = Sha512::digest(KUBEADM_COREFILE.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        ".:{port}\n[INFO] plugin/reload: Running configuration SHA512 = {hash}\n{}",
        version_lines()
    )
}

fn version_lines() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    format!("CoreDNS-{COREDNS_VERSION}\nlinux/{arch}, {GO_VERSION}, {GIT_COMMIT}")
}

/// Completes on SIGTERM (the kubelet stopping the pod) or SIGINT, saying so as CoreDNS does.
async fn termination() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = terminate.recv() => println!("[INFO] SIGTERM: Shutting down servers then terminating"),
                _ = tokio::signal::ctrl_c() => println!("[INFO] SIGINT: Shutting down servers then terminating"),
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            println!("[INFO] SIGINT: Shutting down servers then terminating");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn kubeadm_arguments_are_accepted() {
        let options = parse_args(&args(&["-conf", "/etc/coredns/Corefile"])).expect("valid");
        assert_eq!(options.listen, DnsListen::default());
        assert_eq!(options.kubeconfig, None);
    }

    #[test]
    fn kubelab_arguments() {
        let options = parse_args(&args(&[
            "--kubeconfig",
            "/tmp/kc",
            "-dns.port=5353",
            "--bind",
            "127.0.0.1",
        ]))
        .expect("valid");
        assert_eq!(options.kubeconfig, Some(PathBuf::from("/tmp/kc")));
        assert_eq!(options.listen.dns, "127.0.0.1:5353".parse().expect("addr"));
        assert_eq!(
            options.listen.health,
            Some("127.0.0.1:8080".parse().expect("addr"))
        );
        assert_eq!(
            options.listen.ready,
            Some("127.0.0.1:8181".parse().expect("addr"))
        );
        assert!(
            parse_args(&args(&["-version"]))
                .expect("valid")
                .show_version
        );
    }

    #[test]
    fn bad_arguments() {
        for bad in [
            &["--kubeconfig"][..],
            &["-dns.port", "x"],
            &["--nope"],
            &["stray"],
        ] {
            assert!(
                matches!(parse_args(&args(bad)), Err(DnsError::Usage(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn banner_looks_like_coredns() {
        let banner = banner(53);
        let lines: Vec<&str> = banner.lines().collect();
        assert_eq!(lines[0], ".:53");
        assert!(lines[1].starts_with("[INFO] plugin/reload: Running configuration SHA512 = "));
        assert_eq!(
            lines[1].len(),
            "[INFO] plugin/reload: Running configuration SHA512 = ".len() + 128
        );
        assert_eq!(lines[2], "CoreDNS-1.11.3");
        assert!(lines[3].ends_with(", go1.21.11, a6338e9"), "{}", lines[3]);
    }
}
