//! kubelab's built-in container images and the container log files a kubelet keeps.
//!
//! A lab node pulls nothing: an image reference names one of the programs compiled into
//! kubelab ([`lookup`]), and a container is that program run inside the pod's network
//! namespace ([`run`]). Each image behaves, on the wire and in its logs, like the official
//! image it stands for, because that is what a networking course shows.
//!
//! - [`reference`]: parsing image references (`docker.io/library/nginx:1.27`);
//! - [`nginx`]: the `nginx` image (the welcome page, 404s, the access log);
//! - [`busybox`]: the `busybox` image (the pod's command, run with the machine's programs);
//! - [`redis`]: the `redis` image (a RESP2 server with the commands DockerCoins and
//!   `redis-cli` use);
//! - [`dockercoins`]: DockerCoins' rng, hasher, worker and webui, the course's sample
//!   application;
//! - [`Image::CoreDns`]: the cluster DNS image; its server lives in the `dns` crate, which
//!   needs an API client, so the `kubelab` binary runs it rather than [`run`];
//! - [`logfile`]: the CRI log format, the shim that writes it, and `kubectl logs`'s reader.
//!
//! **Invariant:** nothing here talks to the API server or knows about pods beyond the log
//! directory layout; the node agent decides what runs where.

pub mod busybox;
pub mod dockercoins;
pub mod logfile;
pub mod nginx;
pub mod redis;
pub mod reference;

use std::process::ExitCode;

pub use reference::Reference;

/// A built-in image. Each variant has its own `run`; new images (redis, DockerCoins'
/// services, a DNS server) become new variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Image {
    /// The official `nginx` image serving its default site on port 80.
    Nginx,
    /// The official `busybox` image: the pod's command (default `sh`) with the machine's
    /// programs.
    Busybox,
    /// CoreDNS (`registry.k8s.io/coredns/coredns`), the cluster DNS server kubeadm deploys.
    /// Its server is in the `dns` crate: the `kubelab` binary runs it, not [`run`], so that
    /// this crate stays free of the API client.
    CoreDns,
    /// The official `redis` image: `redis-server` on port 6379.
    Redis,
    /// One of DockerCoins' services (`training/dockercoins-rng:1.0`, `dockercoins/rng:v0.1`).
    DockerCoins(dockercoins::Service),
}

/// Every built-in image, in lookup order.
const ALL: [Image; 8] = [
    Image::Nginx,
    Image::Busybox,
    Image::CoreDns,
    Image::Redis,
    Image::DockerCoins(dockercoins::Service::Rng),
    Image::DockerCoins(dockercoins::Service::Hasher),
    Image::DockerCoins(dockercoins::Service::Worker),
    Image::DockerCoins(dockercoins::Service::Webui),
];

/// Where CoreDNS's image is published: kubeadm's registry today, the old Google registry
/// older manifests name, and Docker Hub.
const COREDNS_REPOSITORIES: [(&str, &str); 3] = [
    ("registry.k8s.io", "coredns/coredns"),
    ("k8s.gcr.io", "coredns/coredns"),
    (reference::DOCKER_HUB, "coredns/coredns"),
];

impl Image {
    /// The image's short name: its Docker Hub name for official images (`nginx`), the
    /// project's name otherwise (`coredns`).
    pub fn name(self) -> &'static str {
        match self {
            Image::Nginx => "nginx",
            Image::Busybox => "busybox",
            Image::CoreDns => "coredns",
            Image::Redis => "redis",
            Image::DockerCoins(service) => service.name(),
        }
    }

    /// Whether `reference` names this image, whatever its tag or digest.
    fn matches(self, reference: &Reference) -> bool {
        match self {
            Image::Nginx | Image::Busybox | Image::Redis => reference.is_official(self.name()),
            Image::DockerCoins(service) => service.matches(reference),
            Image::CoreDns => COREDNS_REPOSITORIES
                .iter()
                .any(|(registry, repository)| reference.is_repository(registry, repository)),
        }
    }
}

/// Which built-in image a reference names, whatever its tag, digest or Docker Hub spelling;
/// `None` for images kubelab does not have (the kubelet reports `ErrImagePull`).
pub fn lookup(image: &str) -> Option<Image> {
    let reference = Reference::parse(image)?;
    ALL.into_iter().find(|i| i.matches(&reference))
}

/// Runs a container of `image` in the calling process and returns its exit code; servers
/// run until SIGTERM. `reference` is the pod's image string (its tag picks the version the
/// image reports), `command`/`args`/`env` are the container's.
pub fn run(
    image: &Image,
    reference: &str,
    command: &[String],
    args: &[String],
    env: &[(String, String)],
) -> ExitCode {
    match image {
        Image::Nginx => nginx::run(reference, command, args, env),
        Image::Busybox => busybox::run(command, args),
        Image::Redis => redis::run(reference, command, args, env),
        Image::DockerCoins(service) => dockercoins::run(*service, command, args, env),
        Image::CoreDns => {
            eprintln!(
                "images: {reference}: the CoreDNS image is run by the kubelab binary (its dns \
                 server needs an API client), not by images::run"
            );
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_in_every_spelling() {
        for r in [
            "nginx",
            "nginx:1.7.9",
            "nginx:latest",
            "nginx:1.27-alpine",
            "docker.io/nginx:1.25",
            "docker.io/library/nginx:1.27",
            "library/nginx",
            "index.docker.io/library/nginx",
            "nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(lookup(r), Some(Image::Nginx), "{r}");
        }
    }

    #[test]
    fn busybox_in_every_spelling() {
        for r in [
            "busybox",
            "busybox:1.36",
            "busybox:latest",
            "docker.io/library/busybox",
            "docker.io/library/busybox:1.37.0-musl",
            "library/busybox",
        ] {
            assert_eq!(lookup(r), Some(Image::Busybox), "{r}");
        }
        assert_eq!(lookup("quay.io/prometheus/busybox"), None);
    }

    #[test]
    fn coredns_in_every_spelling() {
        for r in [
            "registry.k8s.io/coredns/coredns:v1.11.3",
            "registry.k8s.io/coredns/coredns:v1.10.1",
            "registry.k8s.io/coredns/coredns",
            "k8s.gcr.io/coredns/coredns:v1.8.6",
            "coredns/coredns",
            "coredns/coredns:1.11.1",
            "docker.io/coredns/coredns:1.11.3",
        ] {
            assert_eq!(lookup(r), Some(Image::CoreDns), "{r}");
        }
        for r in [
            "coredns",
            "registry.k8s.io/coredns",
            "quay.io/coredns/coredns",
        ] {
            assert_eq!(lookup(r), None, "{r}");
        }
    }

    #[test]
    fn coredns_is_not_run_here() {
        let code = run(&Image::CoreDns, "coredns/coredns", &[], &[], &[]);
        assert_eq!(code, ExitCode::FAILURE);
    }

    #[test]
    fn redis_and_dockercoins() {
        for r in [
            "redis",
            "redis:7",
            "redis:7.2-alpine",
            "docker.io/library/redis:latest",
        ] {
            assert_eq!(lookup(r), Some(Image::Redis), "{r}");
        }
        use dockercoins::Service;
        for (r, service) in [
            ("training/dockercoins-rng:1.0", Service::Rng),
            ("training/dockercoins-hasher:1.0", Service::Hasher),
            ("training/dockercoins-worker:1.0", Service::Worker),
            ("training/dockercoins-webui:1.0", Service::Webui),
            ("dockercoins/rng:v0.1", Service::Rng),
            ("dockercoins/hasher:v0.1", Service::Hasher),
            ("dockercoins/worker:v0.1", Service::Worker),
            ("docker.io/dockercoins/webui:v0.1", Service::Webui),
        ] {
            assert_eq!(lookup(r), Some(Image::DockerCoins(service)), "{r}");
        }
        assert_eq!(Image::DockerCoins(Service::Webui).name(), "webui");
        for r in [
            "rng",
            "training/dockercoins-miner",
            "bitnami/redis",
            "quay.io/training/dockercoins-rng",
        ] {
            assert_eq!(lookup(r), None, "{r}");
        }
    }

    #[test]
    fn unknown_images() {
        for r in [
            "nginxinc/nginx-unprivileged",
            "quay.io/library/nginx",
            "nginx-ingress",
            "ghcr.io/nginx/nginx",
            "NGINX",
            "nginx:",
            "",
        ] {
            assert_eq!(lookup(r), None, "{r}");
        }
    }
}
