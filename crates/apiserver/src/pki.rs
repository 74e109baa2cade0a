//! The cluster's certificates: a CA, the API server's serving certificate and an admin client
//! certificate, generated into `<data-dir>/pki` on first start and reused afterwards, plus the
//! admin bearer token. Like kubeadm's `/etc/kubernetes/pki`, but made in-process with rcgen.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
}

/// PEM material the server and kubeconfig need.
#[derive(Clone, Debug)]
pub struct Pki {
    pub ca_cert_pem: String,
    pub serving_cert_pem: String,
    pub serving_key_pem: String,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
    /// Bearer token accepted as the admin user.
    pub admin_token: String,
    /// Signs and verifies service account tokens ([`crate::tokens`]).
    pub service_account_key: Vec<u8>,
}

/// Subject alternative names of the serving certificate: what clients dial (loopback and, in
/// a lab, node addresses) and the in-cluster names of the `kubernetes` Service.
pub fn default_sans(extra_ips: &[IpAddr]) -> Vec<SanType> {
    let mut sans: Vec<SanType> = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    .iter()
    .filter_map(|d| (*d).try_into().ok().map(SanType::DnsName))
    .collect();
    let mut ips: Vec<IpAddr> = vec![
        "127.0.0.1".parse().expect("literal"),
        "10.96.0.1".parse().expect("literal"),
    ];
    for ip in extra_ips {
        if !ips.contains(ip) {
            ips.push(*ip);
        }
    }
    sans.extend(ips.into_iter().map(SanType::IpAddress));
    sans
}

fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "kubelab-ca");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2099, 1, 1);
    p
}

fn leaf_params(common_name: &str, organization: Option<&str>, server: bool) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    if let Some(o) = organization {
        dn.push(DnType::OrganizationName, o);
    }
    p.distinguished_name = dn;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2099, 1, 1);
    p
}

fn read(path: &Path) -> Result<Option<String>, PkiError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Io {
            path: path.into(),
            source,
        }),
    }
}

fn write(path: &Path, contents: &str) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        path: path.into(),
        source,
    };
    // Write then rename, so a crash never leaves half a key behind.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

impl Pki {
    /// Loads the PKI from `dir`, creating whatever is missing. The serving certificate is
    /// re-issued whenever `extra_ips` names an address it does not cover.
    pub fn load_or_create(dir: &Path, extra_ips: &[IpAddr]) -> Result<Pki, PkiError> {
        std::fs::create_dir_all(dir).map_err(|source| PkiError::Io {
            path: dir.into(),
            source,
        })?;
        let ca_key = match read(&dir.join("ca.key"))? {
            Some(pem) => KeyPair::from_pem(&pem)?,
            None => {
                let k = KeyPair::generate()?;
                write(&dir.join("ca.key"), &k.serialize_pem())?;
                let _ = std::fs::remove_file(dir.join("ca.crt"));
                k
            }
        };
        let ca_cert_pem = match read(&dir.join("ca.crt"))? {
            Some(pem) => pem,
            None => {
                let pem = ca_params().self_signed(&ca_key)?.pem();
                write(&dir.join("ca.crt"), &pem)?;
                // Leaves signed by an older CA are useless now.
                for f in ["apiserver.crt", "admin.crt"] {
                    let _ = std::fs::remove_file(dir.join(f));
                }
                pem
            }
        };
        let issuer = Issuer::new(ca_params(), &ca_key);

        let ips_file = dir.join("apiserver.ips");
        let wanted_ips: Vec<String> = extra_ips.iter().map(|ip| ip.to_string()).collect();
        let covered = read(&ips_file)?.unwrap_or_default();
        let covered: Vec<&str> = covered.lines().collect();
        if !wanted_ips.iter().all(|ip| covered.contains(&ip.as_str())) {
            let _ = std::fs::remove_file(dir.join("apiserver.crt"));
        }
        let (serving_cert_pem, serving_key_pem) = match (
            read(&dir.join("apiserver.crt"))?,
            read(&dir.join("apiserver.key"))?,
        ) {
            (Some(c), Some(k)) => (c, k),
            _ => {
                let key = KeyPair::generate()?;
                let mut p = leaf_params("kube-apiserver", None, true);
                p.subject_alt_names = default_sans(extra_ips);
                let cert = p.signed_by(&key, &issuer)?;
                write(&dir.join("apiserver.key"), &key.serialize_pem())?;
                write(&dir.join("apiserver.crt"), &cert.pem())?;
                write(&ips_file, &wanted_ips.join("\n"))?;
                (cert.pem(), key.serialize_pem())
            }
        };
        let (admin_cert_pem, admin_key_pem) =
            match (read(&dir.join("admin.crt"))?, read(&dir.join("admin.key"))?) {
                (Some(c), Some(k)) => (c, k),
                _ => {
                    let key = KeyPair::generate()?;
                    let cert = leaf_params("kubernetes-admin", Some("system:masters"), false)
                        .signed_by(&key, &issuer)?;
                    write(&dir.join("admin.key"), &key.serialize_pem())?;
                    write(&dir.join("admin.crt"), &cert.pem())?;
                    (cert.pem(), key.serialize_pem())
                }
            };
        let admin_token = match read(&dir.join("admin.token"))? {
            Some(t) if !t.trim().is_empty() => t.trim().to_string(),
            _ => {
                let t = random_token();
                write(&dir.join("admin.token"), &t)?;
                t
            }
        };
        let service_account_key = match read(&dir.join("sa.key"))? {
            Some(k) if !k.trim().is_empty() => k.trim().as_bytes().to_vec(),
            _ => {
                let k = format!("{}{}", random_token(), random_token());
                write(&dir.join("sa.key"), &k)?;
                k.into_bytes()
            }
        };
        Ok(Pki {
            ca_cert_pem,
            serving_cert_pem,
            serving_key_pem,
            admin_cert_pem,
            admin_key_pem,
            admin_token,
            service_account_key,
        })
    }
}

fn random_token() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..32)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pki_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = Pki::load_or_create(dir.path(), &[]).unwrap();
        let b = Pki::load_or_create(dir.path(), &[]).unwrap();
        assert_eq!(a.ca_cert_pem, b.ca_cert_pem);
        assert_eq!(a.serving_cert_pem, b.serving_cert_pem);
        assert_eq!(a.admin_token, b.admin_token);
        assert_eq!(a.admin_token.len(), 32);
        // A new address to serve on re-issues the serving certificate under the same CA.
        let c = Pki::load_or_create(dir.path(), &["10.0.0.5".parse().unwrap()]).unwrap();
        assert_eq!(a.ca_cert_pem, c.ca_cert_pem);
        assert_ne!(a.serving_cert_pem, c.serving_cert_pem);
    }
}
