//! The files the kubelet manages for every pod: `/etc/resolv.conf` after the pod's `dnsPolicy`
//! and `dnsConfig` (the kubelet's `GetPodDNS`, written as containerd writes it), `/etc/hosts`
//! (the kubelet's managed hosts file), `/etc/hostname`, and the service account directory.
//!
//! The contents are pure functions of the pod ([`resolv_conf`], [`hosts_file`]); [`write`]
//! puts them in the pod's state directory (`pods/<uid>/etc/...`, `pods/<uid>/serviceaccount/`)
//! and [`mount_plan`] says where programs run inside the pod see them.

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

/// Upstream's limits (`validation.MaxDNSNameservers`, `MaxDNSSearchPaths`,
/// `MaxDNSSearchListChars`): the kubelet drops what goes beyond them.
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCH_PATHS: usize = 32;
const MAX_SEARCH_CHARS: usize = 2048;

/// Where the service account directory is mounted in every container.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// A resolver configuration: what `resolv.conf` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsConfig {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

impl DnsConfig {
    /// Reads a `resolv.conf` like the kubelet's `parseResolvConf`: `nameserver` lines add up,
    /// the last `search` line wins, `options` add up; comments and other lines are ignored.
    pub fn parse(text: &str) -> DnsConfig {
        let mut config = DnsConfig::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut fields = line.split_whitespace();
            match fields.next() {
                Some("nameserver") => config.nameservers.extend(fields.next().map(String::from)),
                Some("search") => {
                    config.searches = fields
                        .map(|d| d.trim_end_matches('.').to_string())
                        .filter(|d| !d.is_empty())
                        .collect();
                }
                Some("options") => config.options.extend(fields.map(String::from)),
                _ => {}
            }
        }
        config
    }

    /// The file, as containerd writes it: search, then nameservers, then options.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if !self.searches.is_empty() {
            out += &format!("search {}\n", self.searches.join(" "));
        }
        for ns in &self.nameservers {
            out += &format!("nameserver {ns}\n");
        }
        if !self.options.is_empty() {
            out += &format!("options {}\n", self.options.join(" "));
        }
        out
    }
}

fn push_unique(list: &mut Vec<String>, items: impl IntoIterator<Item = String>) {
    for item in items {
        if !list.contains(&item) {
            list.push(item);
        }
    }
}

/// Options merged by name, later ones winning, in the order names first appear (upstream
/// merges through a Go map, whose order is random).
fn merge_options(existing: &[String], extra: &[(String, Option<String>)]) -> Vec<String> {
    let mut merged: Vec<(String, String)> = Vec::new();
    let mut set = |name: &str, value: &str| match merged.iter_mut().find(|(n, _)| n == name) {
        Some(entry) => entry.1 = value.to_string(),
        None => merged.push((name.to_string(), value.to_string())),
    };
    for op in existing {
        match op.split_once(':') {
            Some((n, v)) => set(n, v),
            None => set(op, ""),
        }
    }
    for (n, v) in extra {
        set(n, v.as_deref().unwrap_or(""));
    }
    merged
        .into_iter()
        .map(|(n, v)| if v.is_empty() { n } else { format!("{n}:{v}") })
        .collect()
}

/// The pod's `resolv.conf` after its `dnsPolicy` (the kubelet's rules): `ClusterFirst` (the
/// default) asks only the cluster DNS with the cluster's search domains before the host's and
/// `ndots:5`; `Default` is the host's file; `None` starts empty; a host-network pod with
/// `ClusterFirst` gets the host's unless it says `ClusterFirstWithHostNet`. `dnsConfig` is
/// merged on top in every case.
pub fn resolv_conf(
    pod: &Pod,
    cluster_dns: Ipv4Addr,
    cluster_domain: &str,
    host_resolv: &str,
) -> String {
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let policy = spec
        .and_then(|s| s.dns_policy.as_deref())
        .unwrap_or("ClusterFirst");
    let host = DnsConfig::parse(host_resolv);
    let mut config = match policy {
        "None" => DnsConfig::default(),
        "Default" => host,
        "ClusterFirst" if host_network => host,
        // ClusterFirst, ClusterFirstWithHostNet (and anything validation would have refused).
        _ => {
            let mut searches = Vec::new();
            if !cluster_domain.is_empty() {
                let namespace = pod.namespace().unwrap_or_else(|| "default".into());
                searches = vec![
                    format!("{namespace}.svc.{cluster_domain}"),
                    format!("svc.{cluster_domain}"),
                    cluster_domain.to_string(),
                ];
            }
            push_unique(&mut searches, host.searches);
            DnsConfig {
                nameservers: vec![cluster_dns.to_string()],
                searches,
                options: vec!["ndots:5".into()],
            }
        }
    };
    if let Some(extra) = spec.and_then(|s| s.dns_config.as_ref()) {
        push_unique(
            &mut config.nameservers,
            extra.nameservers.iter().flatten().cloned(),
        );
        push_unique(
            &mut config.searches,
            extra.searches.iter().flatten().cloned(),
        );
        let options: Vec<(String, Option<String>)> = extra
            .options
            .iter()
            .flatten()
            .filter_map(|o| Some((o.name.clone()?, o.value.clone())))
            .collect();
        config.options = merge_options(&config.options, &options);
    }
    config.nameservers.truncate(MAX_NAMESERVERS);
    let mut chars = 0;
    let mut kept = Vec::new();
    for s in config.searches {
        chars += s.len() + usize::from(!kept.is_empty());
        if kept.len() == MAX_SEARCH_PATHS || chars > MAX_SEARCH_CHARS {
            break;
        }
        kept.push(s);
    }
    config.searches = kept;
    config.render()
}

/// The pod's hostname: `spec.hostname`, else its name, cut to 63 characters like the
/// kubelet's `GeneratePodHostNameAndDomain`.
pub fn hostname(pod: &Pod) -> String {
    let name = pod
        .spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| pod.name_any());
    let cut: String = name.chars().take(63).collect();
    cut.trim_end_matches(['-', '.']).to_string()
}

/// The kubelet's managed `/etc/hosts`: localhost lines, the pod's address with its hostname
/// (and FQDN `<hostname>.<subdomain>.<namespace>.svc.<domain>` when it has a subdomain),
/// then `hostAliases`.
pub fn hosts_file(pod: &Pod, pod_ip: IpAddr, cluster_domain: &str) -> String {
    let host = hostname(pod);
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n",
    );
    let subdomain = pod
        .spec
        .as_ref()
        .and_then(|s| s.subdomain.clone())
        .filter(|s| !s.is_empty());
    match subdomain {
        Some(sub) => {
            let namespace = pod.namespace().unwrap_or_else(|| "default".into());
            out += &format!("{pod_ip}\t{host}.{sub}.{namespace}.svc.{cluster_domain}\t{host}\n");
        }
        None => out += &format!("{pod_ip}\t{host}\n"),
    }
    let aliases = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_aliases.clone())
        .unwrap_or_default();
    if !aliases.is_empty() {
        out += "\n# Entries added by HostAliases.\n";
        for alias in aliases {
            let names = alias.hostnames.unwrap_or_default().join("\t");
            out += &format!("{}\t{names}\n", alias.ip);
        }
    }
    out
}

/// What [`write`] needs besides the pod.
#[derive(Debug, Clone)]
pub struct PodFilesConfig {
    pub cluster_dns: Ipv4Addr,
    pub cluster_domain: String,
    /// The node's own resolver configuration (`Default` pods get it).
    pub host_resolv: String,
    /// The cluster's CA certificate in PEM (the service account's `ca.crt`).
    pub cluster_ca: Option<String>,
}

/// Writes the pod's files under `pod_dir`: `etc/{resolv.conf,hosts,hostname}` and
/// `serviceaccount/{ca.crt,namespace}` (the token is written by whoever requests it).
pub fn write(
    pod_dir: &Path,
    pod: &Pod,
    pod_ip: IpAddr,
    config: &PodFilesConfig,
) -> std::io::Result<()> {
    let etc = pod_dir.join("etc");
    std::fs::create_dir_all(&etc)?;
    std::fs::write(
        etc.join("resolv.conf"),
        resolv_conf(
            pod,
            config.cluster_dns,
            &config.cluster_domain,
            &config.host_resolv,
        ),
    )?;
    std::fs::write(
        etc.join("hosts"),
        hosts_file(pod, pod_ip, &config.cluster_domain),
    )?;
    std::fs::write(etc.join("hostname"), format!("{}\n", hostname(pod)))?;
    let sa = pod_dir.join("serviceaccount");
    std::fs::create_dir_all(&sa)?;
    if let Some(ca) = &config.cluster_ca {
        std::fs::write(sa.join("ca.crt"), ca)?;
    }
    std::fs::write(
        sa.join("namespace"),
        pod.namespace().unwrap_or_else(|| "default".into()),
    )?;
    Ok(())
}

/// The cluster CA (PEM) from a kubeconfig's `certificate-authority-data` (its current
/// context's cluster, else the first): what pods get as their service account `ca.crt`.
pub fn cluster_ca_from_kubeconfig(yaml: &str) -> Option<String> {
    use base64::Engine;
    let config = kube::config::Kubeconfig::from_yaml(yaml).ok()?;
    let wanted = config.current_context.as_ref().and_then(|current| {
        config
            .contexts
            .iter()
            .find(|c| &c.name == current)
            .and_then(|c| c.context.as_ref())
            .map(|c| c.cluster.clone())
    });
    let cluster = config
        .clusters
        .iter()
        .find(|c| Some(&c.name) == wanted.as_ref())
        .or(config.clusters.first())?;
    let data = cluster
        .cluster
        .as_ref()?
        .certificate_authority_data
        .as_ref()?;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .ok()?;
    String::from_utf8(pem).ok()
}

/// Where programs started inside the pod see its files: the `etc/` files over the host's,
/// and the service account directory once it holds a token.
pub fn mount_plan(pod_dir: &Path) -> dataplane::Result<dataplane::mounts::MountPlan> {
    let mut plan = dataplane::mounts::MountPlan::new();
    let etc = pod_dir.join("etc");
    for name in ["resolv.conf", "hosts", "hostname"] {
        let source = etc.join(name);
        if source.is_file() {
            plan.bind_file(&source, &Path::new("/etc").join(name))?;
        }
    }
    let sa = pod_dir.join("serviceaccount");
    if sa.join("token").is_file() {
        plan.bind_dir(&sa, Path::new(SERVICE_ACCOUNT_DIR))?;
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web-0", "namespace": "shop"},
            "spec": spec,
        }))
        .expect("pod")
    }

    const HOST: &str = "# generated\nnameserver 10.255.255.53\nnameserver 1.1.1.1\nsearch corp.example ; c\noptions edns0 ndots:1\n";
    const DNS: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

    #[test]
    fn cluster_first_asks_the_cluster_dns_with_cluster_search_domains() {
        let p = pod(json!({"containers": []}));
        assert_eq!(
            resolv_conf(&p, DNS, "cluster.local", ""),
            "search shop.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
        );
        // The host's search domains follow the cluster's; its servers and options do not.
        assert_eq!(
            resolv_conf(&p, DNS, "cluster.local", HOST),
            "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example\nnameserver 10.96.0.10\noptions ndots:5\n"
        );
    }

    #[test]
    fn default_and_host_network_pods_get_the_hosts_file() {
        let expected = "search corp.example\nnameserver 10.255.255.53\nnameserver 1.1.1.1\noptions edns0 ndots:1\n";
        let p = pod(json!({"containers": [], "dnsPolicy": "Default"}));
        assert_eq!(resolv_conf(&p, DNS, "cluster.local", HOST), expected);
        let p = pod(json!({"containers": [], "hostNetwork": true, "dnsPolicy": "ClusterFirst"}));
        assert_eq!(resolv_conf(&p, DNS, "cluster.local", HOST), expected);
        let p = pod(
            json!({"containers": [], "hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"}),
        );
        assert!(resolv_conf(&p, DNS, "cluster.local", HOST).contains("nameserver 10.96.0.10\n"));
    }

    #[test]
    fn none_takes_dns_config_and_dns_config_merges_everywhere() {
        let p = pod(json!({"containers": [], "dnsPolicy": "None", "dnsConfig": {
            "nameservers": ["192.0.2.1"],
            "searches": ["a.example"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
        }}));
        assert_eq!(
            resolv_conf(&p, DNS, "cluster.local", HOST),
            "search a.example\nnameserver 192.0.2.1\noptions ndots:2 edns0\n"
        );
        let p = pod(json!({"containers": [], "dnsConfig": {
            "nameservers": ["10.96.0.10", "192.0.2.1"],
            "searches": ["svc.cluster.local", "b.example"],
            "options": [{"name": "ndots", "value": "1"}, {"name": "single-request-reopen"}],
        }}));
        assert_eq!(
            resolv_conf(&p, DNS, "cluster.local", ""),
            "search shop.svc.cluster.local svc.cluster.local cluster.local b.example\nnameserver 10.96.0.10\nnameserver 192.0.2.1\noptions ndots:1 single-request-reopen\n"
        );
    }

    #[test]
    fn hosts_file_like_the_kubelets() {
        let ip: IpAddr = "10.244.1.5".parse().expect("ip");
        let header = "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n";
        let p = pod(json!({"containers": []}));
        assert_eq!(
            hosts_file(&p, ip, "cluster.local"),
            format!("{header}10.244.1.5\tweb-0\n")
        );
        let p = pod(
            json!({"containers": [], "hostname": "db", "subdomain": "backend",
            "hostAliases": [{"ip": "192.0.2.7", "hostnames": ["foo.local", "bar.local"]}]}),
        );
        assert_eq!(
            hosts_file(&p, ip, "cluster.local"),
            format!(
                "{header}10.244.1.5\tdb.backend.shop.svc.cluster.local\tdb\n\n# Entries added by HostAliases.\n192.0.2.7\tfoo.local\tbar.local\n"
            )
        );
    }

    #[test]
    fn the_ca_comes_from_the_kubeconfig() {
        let yaml = "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: https://10.0.0.1:6443\n    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==\ncontexts:\n- name: lab\n  context:\n    cluster: lab\n    user: u\ncurrent-context: lab\nusers:\n- name: u\n  user:\n    token: t\n";
        assert_eq!(
            cluster_ca_from_kubeconfig(yaml).as_deref(),
            Some("-----BEGIN CERTIFICATE-----\n")
        );
        assert_eq!(cluster_ca_from_kubeconfig("not: [yaml"), None);
    }

    #[test]
    fn files_land_in_the_pod_dir_and_the_plan_binds_them() {
        let dir = tempfile::tempdir().expect("temp dir");
        let p = pod(json!({"containers": []}));
        let config = PodFilesConfig {
            cluster_dns: DNS,
            cluster_domain: "cluster.local".into(),
            host_resolv: String::new(),
            cluster_ca: Some("-----BEGIN CERTIFICATE-----\n".into()),
        };
        write(dir.path(), &p, "10.244.1.5".parse().expect("ip"), &config).expect("write");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("etc/hostname")).expect("hostname"),
            "web-0\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("serviceaccount/namespace")).expect("ns"),
            "shop"
        );
        assert!(dir.path().join("serviceaccount/ca.crt").is_file());
        // Without a token the service account directory is not mounted.
        assert!(mount_plan(dir.path()).is_ok_and(|p| !p.is_empty()));
    }
}
