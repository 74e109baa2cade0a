//! Service account tokens: the TokenRequest API (`POST serviceaccounts/<name>/token`) and
//! the authenticator that accepts what it issued, so a pod's in-cluster client (the cluster
//! DNS, `kubectl` inside a pod) authenticates with the token the kubelet put in
//! `/var/run/secrets/kubernetes.io/serviceaccount/token`, as upstream.
//!
//! Tokens are JWTs with upstream's claims (`iss`, `sub` = `system:serviceaccount:<ns>:<name>`,
//! `aud`, `exp`, `iat`, `nbf`, and the `kubernetes.io` block naming the service account and
//! the bound pod). Upstream signs with RS256 and publishes the key for OIDC discovery; only
//! this server verifies ours, so HS256 with a key kept under `--data-dir` does the job.
//! A token stops working when it expires or its service account is deleted (the uid in the
//! token must still be the account's).

use crate::rest::{Call, json_response};
use crate::{object, registry};
use apimachinery::{ApiError, FieldError};
use axum::response::Response;
use base64::Engine;
use hmac::{Hmac, Mac};
use http::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;

/// The issuer kubeadm configures (`--service-account-issuer`).
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// Upstream's default and bounds for `spec.expirationSeconds`.
const DEFAULT_EXPIRATION: i64 = 3600;
const MIN_EXPIRATION: i64 = 600;
const MAX_EXPIRATION: i64 = 1 << 32;

type HmacSha256 = Hmac<Sha256>;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn sign(key: &[u8], signing_input: &str) -> Vec<u8> {
    // Any key length is valid for HMAC, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(signing_input.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// Encodes and signs `claims` as a compact JWT.
pub fn issue(key: &[u8], claims: &Value) -> String {
    let header = b64(br#"{"alg":"HS256","kid":"kubelab"}"#);
    let payload = b64(claims.to_string().as_bytes());
    let input = format!("{header}.{payload}");
    let signature = b64(&sign(key, &input));
    format!("{input}.{signature}")
}

/// The claims of a token this server signed that is valid at `now` (unix seconds).
pub fn verify(key: &[u8], token: &str, now: i64) -> Option<Value> {
    let mut parts = token.split('.');
    let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let given = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(signature)
        .ok()?;
    let mut mac = HmacSha256::new_from_slice(key).ok()?;
    mac.update(format!("{header}.{payload}").as_bytes());
    // verify_slice compares in constant time.
    mac.verify_slice(&given).ok()?;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .ok()?,
    )
    .ok()?;
    let exp = claims.get("exp")?.as_i64()?;
    let nbf = claims.get("nbf").and_then(Value::as_i64).unwrap_or(0);
    (now < exp && now >= nbf && claims.get("iss")?.as_str()? == ISSUER).then_some(claims)
}

/// `(namespace, name, uid)` of the service account a token's claims name.
pub fn service_account(claims: &Value) -> Option<(String, String, String)> {
    let k = claims.get("kubernetes.io")?;
    Some((
        k.get("namespace")?.as_str()?.to_string(),
        k.pointer("/serviceaccount/name")?.as_str()?.to_string(),
        k.pointer("/serviceaccount/uid")?.as_str()?.to_string(),
    ))
}

/// Whether `token` is a valid service account token of an account that still exists.
pub fn authenticate(state: &crate::State, token: &str) -> bool {
    let Some(claims) = verify(
        &state.pki.service_account_key,
        token,
        object::now().as_second(),
    ) else {
        return false;
    };
    let Some((namespace, name, uid)) = service_account(&claims) else {
        return false;
    };
    let Some(info) = registry::find("", "v1", "serviceaccounts") else {
        return false;
    };
    state
        .store
        .get(&object::key(info, Some(&namespace), &name))
        .is_some_and(|e| {
            object::parse(&e.value)
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                == Some(uid.as_str())
        })
}

/// `POST /api/v1/namespaces/<ns>/serviceaccounts/<name>/token`.
pub async fn token_request(call: &mut Call<'_>) -> Result<Response, ApiError> {
    let account = object::parse(&call.current()?.value);
    let body = call.body_object()?;
    let name = call.name().to_string();
    let namespace = call.rr.namespace.clone().unwrap_or_default();
    let expiration = match body.pointer("/spec/expirationSeconds") {
        None | Some(Value::Null) => DEFAULT_EXPIRATION,
        Some(v) => v.as_i64().unwrap_or(-1),
    };
    if !(MIN_EXPIRATION..=MAX_EXPIRATION).contains(&expiration) {
        let message = if expiration < MIN_EXPIRATION {
            "may not specify a duration less than 10 minutes"
        } else {
            "may not specify a duration larger than 2^32 seconds"
        };
        return Err(ApiError::invalid(
            "authentication.k8s.io",
            "TokenRequest",
            &name,
            &[FieldError::invalid(
                "spec.expirationSeconds",
                json!(expiration),
                message,
            )],
        ));
    }
    let audiences: Vec<Value> = match body.pointer("/spec/audiences").and_then(Value::as_array) {
        Some(a) if !a.is_empty() => a.clone(),
        _ => vec![json!(ISSUER)],
    };
    let now = object::now();
    let iat = now.as_second();
    let exp = iat + expiration;
    let mut kubernetes = json!({
        "namespace": namespace,
        "serviceaccount": {
            "name": name,
            "uid": account.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
        },
    });
    if let Some(bound) = body
        .pointer("/spec/boundObjectRef")
        .filter(|b| b.is_object())
        && bound.get("kind").and_then(Value::as_str) == Some("Pod")
    {
        kubernetes["pod"] = json!({
            "name": bound.get("name").cloned().unwrap_or(Value::Null),
            "uid": bound.get("uid").cloned().unwrap_or(Value::Null),
        });
    }
    let claims = json!({
        "aud": audiences,
        "exp": exp,
        "iat": iat,
        "iss": ISSUER,
        "kubernetes.io": kubernetes,
        "nbf": iat,
        "sub": format!("system:serviceaccount:{namespace}:{name}"),
    });
    let token = issue(&call.state.pki.service_account_key, &claims);
    let expires = jiff::Timestamp::from_second(exp).unwrap_or(now);
    let mut spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    spec["audiences"] = Value::Array(audiences);
    spec["expirationSeconds"] = json!(expiration);
    Ok(json_response(
        StatusCode::CREATED,
        &json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": null},
            "spec": spec,
            "status": {"token": token, "expirationTimestamp": object::timestamp(expires)},
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Value {
        json!({"iss": ISSUER, "exp": exp, "nbf": 100, "kubernetes.io": {"namespace": "kube-system", "serviceaccount": {"name": "coredns", "uid": "u1"}}})
    }

    #[test]
    fn a_signed_token_verifies_until_it_expires() {
        let t = issue(b"key", &claims(200));
        let c = verify(b"key", &t, 150).expect("valid");
        assert_eq!(
            service_account(&c),
            Some(("kube-system".into(), "coredns".into(), "u1".into()))
        );
        assert!(verify(b"key", &t, 200).is_none(), "expired");
        assert!(verify(b"key", &t, 99).is_none(), "not yet valid");
    }

    #[test]
    fn forged_or_mangled_tokens_fail() {
        let t = issue(b"key", &claims(200));
        assert!(verify(b"other", &t, 150).is_none());
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = b64(claims(10_000).to_string().as_bytes());
        parts[1] = &forged;
        assert!(verify(b"key", &parts.join("."), 150).is_none());
        for junk in ["", "a.b", "a.b.c.d", "...", &format!("{t}x")] {
            assert!(verify(b"key", junk, 150).is_none(), "{junk}");
        }
    }
}
