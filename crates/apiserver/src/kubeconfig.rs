//! kubeconfig files for the admin user, in the shape kubeadm and kind write them.

use crate::pki::Pki;
use base64::Engine;

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

/// A kubeconfig whose cluster, user and context are all called `name`, authenticating with
/// the admin client certificate.
pub fn render(name: &str, server: &str, pki: &Pki) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: {ca}
    server: {server}
  name: {name}
contexts:
- context:
    cluster: {name}
    user: {name}
  name: {name}
current-context: {name}
preferences: {{}}
users:
- name: {name}
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
",
        ca = b64(&pki.ca_cert_pem),
        cert = b64(&pki.admin_cert_pem),
        key = b64(&pki.admin_key_pem),
    )
}
