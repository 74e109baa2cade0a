//! Image references as people write them in pod specs (`nginx`, `nginx:1.7.9`,
//! `docker.io/library/nginx:1.27`, `nginx@sha256:…`), split into registry, repository, tag and
//! digest with Docker Hub's normalisation (`nginx` is `docker.io/library/nginx`). It only
//! parses: which images exist is [`crate::lookup`]'s business.

/// The registry an unqualified reference names.
pub const DOCKER_HUB: &str = "docker.io";

/// Host names that all mean Docker Hub.
const DOCKER_HUB_ALIASES: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/// A parsed, normalised image reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// `docker.io` when the reference names none (or names one of Docker Hub's aliases).
    pub registry: String,
    /// With Docker Hub's implicit `library/` for official images: `library/nginx`.
    pub repository: String,
    /// `None` means `latest` unless a digest pins the image.
    pub tag: Option<String>,
    /// `sha256:<hex>`.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses a reference; `None` for anything a container runtime would call an invalid
    /// reference format (upper case, empty components, a bad tag or digest).
    pub fn parse(text: &str) -> Option<Reference> {
        let (name_and_tag, digest) = match text.split_once('@') {
            Some((n, d)) => (n, Some(valid_digest(d)?)),
            None => (text, None),
        };
        // The tag follows the last ':' that comes after the last '/', so that a registry
        // port (`localhost:5000/x`) is not taken for a tag.
        let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_and_tag[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                let tag = &name_and_tag[at + 1..];
                (&name_and_tag[..at], Some(valid_tag(tag)?.to_string()))
            }
            None => (name_and_tag, None),
        };
        let mut components: Vec<&str> = name.split('/').collect();
        let registry = if components.len() > 1 && looks_like_registry(components[0]) {
            let host = components.remove(0);
            if DOCKER_HUB_ALIASES.contains(&host) {
                DOCKER_HUB.to_string()
            } else {
                host.to_string()
            }
        } else {
            DOCKER_HUB.to_string()
        };
        if components.iter().any(|c| !valid_path_component(c)) {
            return None;
        }
        let mut repository = components.join("/");
        if registry == DOCKER_HUB && components.len() == 1 {
            repository = format!("library/{repository}");
        }
        Some(Reference {
            registry,
            repository,
            tag,
            digest: digest.map(str::to_string),
        })
    }

    /// Whether this names an official image on Docker Hub (`library/<name>`).
    pub fn is_official(&self, name: &str) -> bool {
        self.registry == DOCKER_HUB
            && self
                .repository
                .strip_prefix("library/")
                .is_some_and(|n| n == name)
    }

    /// Whether this names `repository` (`coredns/coredns`) on `registry`
    /// (`registry.k8s.io`), for images outside Docker Hub's official `library/`.
    pub fn is_repository(&self, registry: &str, repository: &str) -> bool {
        self.registry == registry && self.repository == repository
    }
}

/// A first component is a registry host if it could not be a repository path: it has a dot
/// or a port, or is `localhost` (the rule Docker's reference parser uses).
fn looks_like_registry(component: &str) -> bool {
    component.contains('.') || component.contains(':') || component == "localhost"
}

/// `[a-z0-9]+` runs joined by `.`, `_`, `__` or `-`+, as the distribution spec allows.
fn valid_path_component(c: &str) -> bool {
    let bytes = c.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let separator = |b: &u8| matches!(b, b'.' | b'_' | b'-');
    !bytes.is_empty()
        && bytes.first().is_some_and(alnum)
        && bytes.last().is_some_and(alnum)
        && bytes.iter().all(|b| alnum(b) || separator(b))
        && !c.contains("..")
        && !c.contains("___")
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn valid_tag(tag: &str) -> Option<&str> {
    let bytes = tag.as_bytes();
    let word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    (bytes.len() <= 128
        && bytes.first().is_some_and(word)
        && bytes.iter().all(|b| word(b) || matches!(b, b'.' | b'-')))
    .then_some(tag)
}

/// `<algorithm>:<hex, at least 32 digits>`.
fn valid_digest(digest: &str) -> Option<&str> {
    let (algorithm, hex) = digest.split_once(':')?;
    let algorithm_ok = !algorithm.is_empty()
        && algorithm
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b));
    let hex_ok = hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    (algorithm_ok && hex_ok).then_some(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(text: &str) -> Option<(String, String, Option<String>, Option<String>)> {
        Reference::parse(text).map(|r| (r.registry, r.repository, r.tag, r.digest))
    }

    #[test]
    fn docker_hub_normalisation() {
        let nginx = |tag: Option<&str>| {
            Some((
                "docker.io".to_string(),
                "library/nginx".to_string(),
                tag.map(str::to_string),
                None,
            ))
        };
        assert_eq!(parts("nginx"), nginx(None));
        assert_eq!(parts("nginx:1.7.9"), nginx(Some("1.7.9")));
        assert_eq!(parts("library/nginx"), nginx(None));
        assert_eq!(parts("docker.io/nginx:1.25"), nginx(Some("1.25")));
        assert_eq!(parts("docker.io/library/nginx:1.27"), nginx(Some("1.27")));
        assert_eq!(parts("index.docker.io/library/nginx"), nginx(None));
    }

    #[test]
    fn registry_ports_are_not_tags() {
        assert_eq!(
            parts("localhost:5000/nginx"),
            Some(("localhost:5000".into(), "nginx".into(), None, None))
        );
        assert_eq!(
            parts("registry.example:5000/team/app:v2"),
            Some((
                "registry.example:5000".into(),
                "team/app".into(),
                Some("v2".into()),
                None
            ))
        );
    }

    #[test]
    fn non_library_repositories() {
        let r = Reference::parse("registry.k8s.io/coredns/coredns:v1.11.3").expect("valid");
        assert!(r.is_repository("registry.k8s.io", "coredns/coredns"));
        assert!(!r.is_repository(DOCKER_HUB, "coredns/coredns"));
        let hub = Reference::parse("coredns/coredns").expect("valid");
        assert!(hub.is_repository(DOCKER_HUB, "coredns/coredns"));
        assert!(!hub.is_official("coredns"));
    }

    #[test]
    fn digests() {
        let hex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let r = Reference::parse(&format!("nginx:1.27@sha256:{hex}")).expect("valid");
        assert_eq!(r.tag.as_deref(), Some("1.27"));
        assert_eq!(r.digest, Some(format!("sha256:{hex}")));
        assert!(Reference::parse("nginx@sha256:short").is_none());
        assert!(Reference::parse("nginx@").is_none());
    }

    #[test]
    fn invalid_references() {
        for bad in [
            "", "NGINX", "nginx:", ":1.0", "nginx:-x", "/nginx", "nginx/", "a//b", "ng inx",
        ] {
            assert_eq!(Reference::parse(bad), None, "{bad:?}");
        }
    }
}
