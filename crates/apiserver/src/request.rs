//! Turns a request path and method into what it asks for: which resource, namespace, name,
//! subresource and verb. Pure; the REST layer acts on the answer.

use crate::registry::{self, ResourceInfo};
use apimachinery::ApiError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
        }
    }
}

/// A request for a resource (not discovery or health).
#[derive(Clone, Debug)]
pub struct ResourceRequest {
    pub info: &'static ResourceInfo,
    /// Namespace from the path; `None` for cluster-scoped resources and all-namespace lists.
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    pub verb: Verb,
}

/// Parses `/api/v1/...` and `/apis/<group>/<version>/...`; `Ok(None)` when the path is not a
/// resource path at all (discovery, health, OpenAPI, unknown).
pub fn parse(
    method: &http::Method,
    path: &str,
    watch_param: bool,
) -> Result<Option<ResourceRequest>, ApiError> {
    let segs: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let (group, version, rest): (&str, &str, &[String]) = match segs.as_slice() {
        [api, v, rest @ ..] if api == "api" && !rest.is_empty() => ("", v.as_str(), rest),
        [apis, g, v, rest @ ..] if apis == "apis" && !rest.is_empty() => {
            (g.as_str(), v.as_str(), rest)
        }
        _ => return Ok(None),
    };
    // The deprecated `/watch/` prefix means the same as `?watch=true`.
    let (watch_prefix, rest) = match rest {
        [w, rest @ ..] if w == "watch" => (true, rest),
        _ => (false, rest),
    };
    let not_found = || {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    };
    let find = |plural: &str| registry::find(group, version, plural).ok_or_else(not_found);

    let (info, namespace, name, sub) = match rest {
        // namespaces/{ns}/{resource}[/{name}[/{sub}]] — a namespaced resource...
        [ns_word, ns, plural, tail @ ..]
            if ns_word == "namespaces"
                && group.is_empty()
                && registry::find("", version, plural).is_some()
                || ns_word == "namespaces" && !group.is_empty() =>
        {
            let info = find(plural)?;
            if !info.namespaced {
                return Err(not_found());
            }
            match tail {
                [] => (info, Some(ns.clone()), None, None),
                [name] => (info, Some(ns.clone()), Some(name.clone()), None),
                [name, sub] => (
                    info,
                    Some(ns.clone()),
                    Some(name.clone()),
                    Some(sub.clone()),
                ),
                _ => return Err(not_found()),
            }
        }
        // ...or a resource without a namespace in the path.
        [plural, tail @ ..] => {
            let info = find(plural)?;
            match tail {
                [] => (info, None, None, None),
                [name] if !info.namespaced => (info, None, Some(name.clone()), None),
                [name, sub] if !info.namespaced => {
                    (info, None, Some(name.clone()), Some(sub.clone()))
                }
                _ => return Err(not_found()),
            }
        }
        [] => return Ok(None),
    };
    if let Some(s) = &sub
        && info.subresource(s).is_none()
    {
        return Err(not_found());
    }
    if name.as_deref() == Some("") {
        return Err(not_found());
    }
    let collection = name.is_none();
    let watch = watch_prefix || watch_param;
    let verb = match (method.as_str(), collection) {
        ("GET", true) if watch => Verb::Watch,
        ("GET", true) => Verb::List,
        ("GET", false) if watch_prefix => Verb::Watch,
        ("GET", false) => Verb::Get,
        ("POST", true) => Verb::Create,
        // POST .../pods/{name}/binding creates a binding.
        ("POST", false) if sub.is_some() => Verb::Create,
        ("PUT", false) => Verb::Update,
        ("PATCH", false) => Verb::Patch,
        ("DELETE", false) => Verb::Delete,
        ("DELETE", true) => Verb::DeleteCollection,
        _ => {
            return Err(ApiError::method_not_supported());
        }
    };
    Ok(Some(ResourceRequest {
        info,
        namespace,
        name,
        subresource: sub,
        verb,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn p(m: Method, path: &str) -> ResourceRequest {
        parse(&m, path, false).unwrap().unwrap()
    }

    #[test]
    fn namespaced_paths() {
        let r = p(
            Method::GET,
            "/apis/apps/v1/namespaces/default/deployments/nginx",
        );
        assert_eq!(
            (
                r.info.plural,
                r.namespace.as_deref(),
                r.name.as_deref(),
                r.verb
            ),
            ("deployments", Some("default"), Some("nginx"), Verb::Get)
        );
        let r = p(
            Method::PATCH,
            "/apis/apps/v1/namespaces/default/deployments/nginx/scale",
        );
        assert_eq!(
            (r.subresource.as_deref(), r.verb),
            (Some("scale"), Verb::Patch)
        );
        let r = p(Method::GET, "/api/v1/pods");
        assert_eq!(
            (r.info.plural, r.namespace, r.verb),
            ("pods", None, Verb::List)
        );
        let r = p(Method::POST, "/api/v1/namespaces/default/pods/x/binding");
        assert_eq!(
            (r.subresource.as_deref(), r.verb),
            (Some("binding"), Verb::Create)
        );
        let r = p(Method::GET, "/api/v1/watch/namespaces/default/pods");
        assert_eq!(r.verb, Verb::Watch);
    }

    #[test]
    fn namespaces_themselves() {
        let r = p(Method::GET, "/api/v1/namespaces/kube-system");
        assert_eq!(
            (r.info.plural, r.name.as_deref(), r.namespace),
            ("namespaces", Some("kube-system"), None)
        );
        let r = p(Method::PUT, "/api/v1/namespaces/kube-system/status");
        assert_eq!(
            (r.info.plural, r.subresource.as_deref()),
            ("namespaces", Some("status"))
        );
        let r = p(Method::DELETE, "/api/v1/namespaces/demo");
        assert_eq!(r.verb, Verb::Delete);
    }

    #[test]
    fn unknown_things_are_404_or_not_resources() {
        assert!(parse(&Method::GET, "/api/v1/namespaces/default/widgets", false).is_err());
        assert!(parse(&Method::GET, "/apis/apps/v1/deployments/x/y/z", false).is_err());
        assert!(
            parse(
                &Method::GET,
                "/api/v1/namespaces/default/pods/x/exec2",
                false
            )
            .is_err()
        );
        assert!(parse(&Method::GET, "/healthz", false).unwrap().is_none());
        assert!(parse(&Method::GET, "/api", false).unwrap().is_none());
        assert!(parse(&Method::GET, "/api/v1", false).unwrap().is_none());
        assert_eq!(
            parse(&Method::PUT, "/api/v1/pods", false).unwrap_err().code,
            405
        );
    }
}
