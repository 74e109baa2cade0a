//! Service validation (`ValidateService`, `ValidateServiceUpdate`). Expects the registry's
//! preparation to have run: `clusterIPs` mirrors `clusterIP` (see `defaults::prepare_for_*`).

use std::collections::HashSet;
use std::net::IpAddr;

use serde_json::{Map, Value};

use crate::access::{array_at, child, index, int_at, str_at, str_or_empty};
use crate::errors::FieldError;
use crate::gosyntax;
use crate::names::{is_dns1123_subdomain, is_valid_port_num};

use super::meta::{validate_label_name, validate_labels};
use super::pod::{validate_port_num_or_name, validate_protocol};

/// Longest ClientIP session affinity upstream accepts (a day).
const MAX_CLIENT_IP_AFFINITY_SECONDS: i64 = 86400;

fn cluster_ips(spec: &Value) -> Vec<&str> {
    array_at(spec, "clusterIPs")
        .iter()
        .map(|v| v.as_str().unwrap_or(""))
        .collect()
}

fn is_headless(spec: &Value) -> bool {
    cluster_ips(spec) == ["None"]
}

/// `IsValidIP` with upstream's wording (strict parsing, canonical form required).
pub(crate) fn validate_ip(value: &str, path: &str) -> Vec<FieldError> {
    match value.parse::<IpAddr>() {
        Err(_) => vec![FieldError::invalid(
            path,
            value,
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        )],
        Ok(ip) if ip.to_string() != value => {
            vec![FieldError::invalid(
                path,
                value,
                format!("must be in canonical form (\"{ip}\")"),
            )]
        }
        Ok(_) => Vec::new(),
    }
}

/// `IsValidCIDR` with upstream's wording.
pub(crate) fn validate_cidr(value: &str, path: &str) -> Vec<FieldError> {
    let invalid = || {
        vec![FieldError::invalid(
            path,
            value,
            "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
        )]
    };
    let Some((addr, bits)) = value.split_once('/') else {
        return invalid();
    };
    let (Ok(ip), Ok(bits)) = (addr.parse::<IpAddr>(), bits.parse::<u8>()) else {
        return invalid();
    };
    if bits.to_string() != value.split_once('/').map_or("", |(_, b)| b) {
        return invalid();
    }
    let canonical = match ip {
        IpAddr::V4(v4) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(bits))
            };
            format!("{}/{bits}", std::net::Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(bits))
            };
            format!("{}/{bits}", std::net::Ipv6Addr::from(u128::from(v6) & mask))
        }
        _ => return invalid(),
    };
    if canonical != value {
        return vec![FieldError::invalid(
            path,
            value,
            format!("must be in canonical form (\"{canonical}\")"),
        )];
    }
    Vec::new()
}

pub(crate) fn validate_service(svc: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let empty = Value::Object(Map::new());
    let spec = svc.get("spec").filter(|s| s.is_object()).unwrap_or(&empty);
    let service_type = str_or_empty(spec, "type");
    let ports = array_at(spec, "ports");
    let headless = is_headless(spec);

    if ports.is_empty() && !headless && service_type != "ExternalName" {
        errs.push(FieldError::required("spec.ports", ""));
    }
    match service_type {
        "LoadBalancer" | "NodePort" if headless => errs.push(FieldError::invalid(
            "spec.clusterIPs[0]",
            "None",
            format!("may not be set to 'None' for {service_type} services"),
        )),
        "ExternalName" => {
            if !array_at(spec, "clusterIPs").is_empty() {
                errs.push(FieldError::forbidden(
                    "spec.clusterIPs",
                    "may not be set for ExternalName services",
                ));
            }
            if !array_at(spec, "ipFamilies").is_empty() {
                errs.push(FieldError::forbidden(
                    "spec.ipFamilies",
                    "may not be set for ExternalName services",
                ));
            }
            if spec.get("ipFamilyPolicy").is_some_and(|p| !p.is_null()) {
                errs.push(FieldError::forbidden(
                    "spec.ipFamilyPolicy",
                    "may not be set for ExternalName services",
                ));
            }
            let cname = str_or_empty(spec, "externalName");
            let cname = cname.strip_suffix('.').unwrap_or(cname);
            if cname.is_empty() {
                errs.push(FieldError::required("spec.externalName", ""));
            } else {
                for msg in is_dns1123_subdomain(cname) {
                    errs.push(FieldError::invalid("spec.externalName", cname, msg));
                }
            }
        }
        _ => {}
    }

    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        errs.extend(validate_service_port(
            p,
            ports.len() > 1,
            &mut names,
            &index("spec.ports", i),
        ));
    }
    if spec.get("selector").is_some_and(|s| !s.is_null()) {
        errs.extend(validate_labels(spec.get("selector"), "spec.selector"));
    }

    match str_or_empty(spec, "sessionAffinity") {
        "" => errs.push(FieldError::required("spec.sessionAffinity", "")),
        "ClientIP" => errs.extend(validate_client_ip_affinity(
            spec.get("sessionAffinityConfig"),
        )),
        "None" => {
            if spec
                .get("sessionAffinityConfig")
                .is_some_and(|c| !c.is_null())
            {
                errs.push(FieldError::forbidden(
                    "spec.sessionAffinityConfig",
                    "must not be set when session affinity is None",
                ));
            }
        }
        other => errs.push(FieldError::not_supported(
            "spec.sessionAffinity",
            other,
            &["ClientIP", "None"],
        )),
    }

    errs.extend(validate_cluster_ips_related(spec, service_type));

    for (i, ip) in array_at(spec, "externalIPs").iter().enumerate() {
        errs.extend(validate_ip(
            ip.as_str().unwrap_or(""),
            &index("spec.externalIPs", i),
        ));
    }

    match service_type {
        "" => errs.push(FieldError::required("spec.type", "")),
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName" => {}
        other => errs.push(FieldError::not_supported(
            "spec.type",
            other,
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        )),
    }
    if service_type == "ClusterIP" {
        for (i, p) in ports.iter().enumerate() {
            if int_at(p, "nodePort").unwrap_or(0) != 0 {
                errs.push(FieldError::forbidden(
                    child(&index("spec.ports", i), "nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
    }
    let mut node_ports = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let node_port = int_at(p, "nodePort").unwrap_or(0);
        if node_port != 0
            && !node_ports.insert((str_or_empty(p, "protocol").to_string(), node_port))
        {
            errs.push(FieldError::duplicate(
                child(&index("spec.ports", i), "nodePort"),
                node_port,
            ));
        }
    }
    let mut port_keys = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let protocol = str_or_empty(p, "protocol");
        let port = int_at(p, "port").unwrap_or(0);
        if !port_keys.insert((protocol.to_string(), port)) {
            errs.push(
                FieldError::duplicate(
                    index("spec.ports", i),
                    serde_json::json!({"protocol": protocol, "port": port}),
                )
                .rendered_as(gosyntax::service_port_key(protocol, port)),
            );
        }
    }

    let ranges = array_at(spec, "loadBalancerSourceRanges");
    if !ranges.is_empty() {
        // Upstream names this path with a capital L.
        let path = "spec.LoadBalancerSourceRanges";
        if service_type != "LoadBalancer" {
            errs.push(FieldError::forbidden(
                path,
                "may only be used when `type` is 'LoadBalancer'",
            ));
        }
        for (i, r) in ranges.iter().enumerate() {
            errs.extend(validate_cidr(
                r.as_str().unwrap_or("").trim(),
                &index(path, i),
            ));
        }
    }
    let allocate = spec
        .get("allocateLoadBalancerNodePorts")
        .filter(|v| !v.is_null());
    if allocate.is_some() && service_type != "LoadBalancer" {
        errs.push(FieldError::forbidden(
            "spec.allocateLoadBalancerNodePorts",
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    if service_type == "LoadBalancer" && allocate.is_none() {
        // Upstream reports this one at the root, without `spec.`.
        errs.push(FieldError::required("allocateLoadBalancerNodePorts", ""));
    }
    if let Some(class) = str_at(spec, "loadBalancerClass") {
        if service_type == "LoadBalancer" {
            errs.extend(validate_label_name(class, "spec.loadBalancerClass"));
        } else {
            errs.push(FieldError::forbidden(
                "spec.loadBalancerClass",
                "may only be used when `type` is 'LoadBalancer'",
            ));
        }
    }
    errs.extend(validate_traffic_policies(spec, service_type));
    errs
}

fn validate_service_port(
    p: &Value,
    require_name: bool,
    names: &mut HashSet<String>,
    path: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = str_or_empty(p, "name");
    if require_name && name.is_empty() {
        errs.push(FieldError::required(child(path, "name"), ""));
    } else if !name.is_empty() {
        for msg in crate::names::is_dns1123_label(name) {
            errs.push(FieldError::invalid(child(path, "name"), name, msg));
        }
        if !names.insert(name.to_string()) {
            errs.push(FieldError::duplicate(child(path, "name"), name));
        }
    }
    let port = int_at(p, "port").unwrap_or(0);
    for msg in is_valid_port_num(port) {
        errs.push(FieldError::invalid(child(path, "port"), port, msg));
    }
    errs.extend(validate_protocol(p, &child(path, "protocol")));
    errs.extend(validate_port_num_or_name(
        p.get("targetPort"),
        &child(path, "targetPort"),
    ));
    if let Some(app_protocol) = str_at(p, "appProtocol") {
        errs.extend(validate_label_name(
            app_protocol,
            &child(path, "appProtocol"),
        ));
    }
    errs
}

fn validate_client_ip_affinity(config: Option<&Value>) -> Vec<FieldError> {
    let detail = "when session affinity type is ClientIP";
    let path = "spec.sessionAffinityConfig";
    let Some(config) = config.filter(|c| !c.is_null()) else {
        return vec![FieldError::required(path, detail)];
    };
    let Some(client_ip) = config.get("clientIP").filter(|c| !c.is_null()) else {
        return vec![FieldError::required(format!("{path}.clientIP"), detail)];
    };
    let timeout_path = format!("{path}.clientIP.timeoutSeconds");
    match int_at(client_ip, "timeoutSeconds") {
        None => vec![FieldError::required(timeout_path, detail)],
        Some(t) if t <= 0 || t > MAX_CLIENT_IP_AFFINITY_SECONDS => vec![FieldError::invalid(
            timeout_path,
            t,
            format!("must be greater than 0 and less than {MAX_CLIENT_IP_AFFINITY_SECONDS}"),
        )],
        Some(_) => Vec::new(),
    }
}

/// `ValidateServiceClusterIPsRelatedFields`.
fn validate_cluster_ips_related(spec: &Value, service_type: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if service_type == "ExternalName" {
        return errs;
    }
    let cluster_ip = str_or_empty(spec, "clusterIP");
    let ips = cluster_ips(spec);
    let ips_value = spec.get("clusterIPs").cloned().unwrap_or(Value::Null);
    let ips_rendered = gosyntax::string_slice_at(spec, "clusterIPs");
    let invalid_ips = |detail: &str| {
        FieldError::invalid("spec.clusterIPs", ips_value.clone(), detail)
            .rendered_as(ips_rendered.clone())
    };
    if !cluster_ip.is_empty() {
        if ips.is_empty() {
            errs.push(FieldError::required("spec.clusterIPs", ""));
        } else if ips[0] != cluster_ip {
            errs.push(invalid_ips("first value must match `clusterIP`"));
        }
    } else if !ips.is_empty() {
        errs.push(invalid_ips(
            "must be empty when `clusterIP` is not specified",
        ));
    }
    let mut seen = HashSet::new();
    for (i, family) in array_at(spec, "ipFamilies").iter().enumerate() {
        let family = family.as_str().unwrap_or("");
        let path = index("spec.ipFamilies", i);
        if family != "IPv4" && family != "IPv6" {
            errs.push(FieldError::not_supported(&path, family, &["IPv4", "IPv6"]));
        }
        if !seen.insert(family) {
            errs.push(FieldError::duplicate(&path, family));
        }
    }
    if let Some(policy) = str_at(spec, "ipFamilyPolicy")
        && !matches!(
            policy,
            "SingleStack" | "PreferDualStack" | "RequireDualStack"
        )
    {
        errs.push(FieldError::not_supported(
            "spec.ipFamilyPolicy",
            policy,
            &["PreferDualStack", "RequireDualStack", "SingleStack"],
        ));
    }
    let mut has_invalid = false;
    for (i, ip) in ips.iter().enumerate() {
        if i == 0 && *ip == "None" {
            if ips.len() > 1 {
                has_invalid = true;
                errs.push(invalid_ips("'None' must be the first and only value"));
            }
            continue;
        }
        let ip_errs = validate_ip(ip, &index("spec.clusterIPs", i));
        has_invalid |= !ip_errs.is_empty();
        errs.extend(ip_errs);
    }
    if ips.len() > 2 {
        errs.push(invalid_ips("may only hold up to 2 values"));
    }
    if has_invalid {
        return errs;
    }
    if ips.len() > 1 {
        let v6 = ips.iter().filter(|ip| ip.contains(':')).count();
        if v6 != 1 || ips.len() != 2 {
            errs.push(invalid_ips(
                "may specify no more than one IP for each IP family",
            ));
        }
    }
    if !is_headless(spec) {
        let families = array_at(spec, "ipFamilies");
        for (i, ip) in ips.iter().enumerate() {
            let Some(family) = families.get(i).and_then(Value::as_str) else {
                break;
            };
            let is_v6 = ip.contains(':');
            if family == "IPv4" && is_v6 {
                errs.push(FieldError::invalid(
                    index("spec.clusterIPs", i),
                    *ip,
                    format!("expected an IPv4 value as indicated by `ipFamilies[{i}]`"),
                ));
            }
            if family == "IPv6" && !is_v6 {
                errs.push(FieldError::invalid(
                    index("spec.clusterIPs", i),
                    *ip,
                    format!("expected an IPv6 value as indicated by `ipFamilies[{i}]`"),
                ));
            }
        }
    }
    errs
}

fn validate_traffic_policies(spec: &Value, service_type: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let external_ips = !array_at(spec, "externalIPs").is_empty();
    let externally_accessible = service_type == "LoadBalancer"
        || service_type == "NodePort"
        || (service_type == "ClusterIP" && external_ips);
    let etp = str_or_empty(spec, "externalTrafficPolicy");
    if !externally_accessible {
        if !etp.is_empty() {
            errs.push(FieldError::invalid(
                "spec.externalTrafficPolicy",
                etp,
                "may only be set for externally-accessible services",
            ));
        }
    } else if etp.is_empty() {
        errs.push(FieldError::required("spec.externalTrafficPolicy", ""));
    } else if etp != "Cluster" && etp != "Local" {
        errs.push(FieldError::not_supported(
            "spec.externalTrafficPolicy",
            etp,
            &["Cluster", "Local"],
        ));
    }
    let health = int_at(spec, "healthCheckNodePort").unwrap_or(0);
    let needs_health_check = service_type == "LoadBalancer" && etp == "Local";
    if !needs_health_check {
        if health != 0 {
            errs.push(FieldError::invalid(
                "spec.healthCheckNodePort",
                health,
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            ));
        }
    } else if health == 0 {
        errs.push(FieldError::required("spec.healthCheckNodePort", ""));
    } else {
        for msg in is_valid_port_num(health) {
            errs.push(FieldError::invalid("spec.healthCheckNodePort", health, msg));
        }
    }
    match spec.get("internalTrafficPolicy").filter(|v| !v.is_null()) {
        None if matches!(service_type, "NodePort" | "LoadBalancer" | "ClusterIP") => {
            errs.push(FieldError::required("spec.internalTrafficPolicy", ""))
        }
        Some(v) => {
            let itp = v.as_str().unwrap_or("");
            if itp != "Cluster" && itp != "Local" {
                errs.push(FieldError::not_supported(
                    "spec.internalTrafficPolicy",
                    itp,
                    &["Cluster", "Local"],
                ));
            }
        }
        None => {}
    }
    if let Some(td) = str_at(spec, "trafficDistribution")
        && td != "PreferClose"
    {
        errs.push(FieldError::not_supported(
            "spec.trafficDistribution",
            td,
            &["PreferClose"],
        ));
    }
    errs
}

/// `ValidateServiceUpdate`'s own checks (the caller adds metadata and `ValidateService`).
pub(crate) fn validate_service_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let empty = Value::Object(Map::new());
    let new_spec = new.get("spec").filter(|s| s.is_object()).unwrap_or(&empty);
    let old_spec = old.get("spec").filter(|s| s.is_object()).unwrap_or(&empty);
    let new_type = str_or_empty(new_spec, "type");
    let old_type = str_or_empty(old_spec, "type");
    if new_type != "ExternalName" && old_type != "ExternalName" {
        errs.extend(validate_cluster_ip_changes(new_spec, old_spec));
        errs.extend(validate_family_changes(new_spec, old_spec));
    }
    if new_type == "LoadBalancer"
        && old_type == "LoadBalancer"
        && new_spec.get("loadBalancerClass") != old_spec.get("loadBalancerClass")
    {
        errs.push(FieldError::invalid(
            "spec.loadBalancerClass",
            new_spec
                .get("loadBalancerClass")
                .cloned()
                .unwrap_or(Value::Null),
            "may not change once set",
        ));
    }
    let needs_health_check = |s: &Value| {
        str_or_empty(s, "type") == "LoadBalancer"
            && str_or_empty(s, "externalTrafficPolicy") == "Local"
    };
    if needs_health_check(new_spec)
        && needs_health_check(old_spec)
        && int_at(new_spec, "healthCheckNodePort") != int_at(old_spec, "healthCheckNodePort")
    {
        errs.push(FieldError::forbidden(
            "spec.healthCheckNodePort",
            "field is immutable",
        ));
    }
    errs
}

fn validate_cluster_ip_changes(new_spec: &Value, old_spec: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if is_headless(new_spec) && is_headless(old_spec) {
        return errs;
    }
    let new_ips = cluster_ips(new_spec);
    let old_ips = cluster_ips(old_spec);
    let rendered = gosyntax::string_slice_at(new_spec, "clusterIPs");
    let value = new_spec.get("clusterIPs").cloned().unwrap_or(Value::Null);
    let invalid = |path: String, detail: &str| {
        FieldError::invalid(path, value.clone(), detail).rendered_as(rendered.clone())
    };
    if old_ips.len() == new_ips.len() {
        for (i, ip) in old_ips.iter().enumerate() {
            if *ip != new_ips[i] {
                errs.push(invalid(
                    index("spec.clusterIPs", i),
                    "may not change once set",
                ));
            }
        }
    } else if old_ips.len() > new_ips.len() {
        if new_ips.is_empty() {
            errs.push(invalid(
                "spec.clusterIPs[0]".into(),
                "primary clusterIP can not be unset",
            ));
        }
        if !old_ips.is_empty() && !new_ips.is_empty() && new_ips[0] != old_ips[0] {
            errs.push(invalid(
                "spec.clusterIPs[0]".into(),
                "may not change once set",
            ));
        }
        if new_ips.len() == 1 && str_at(new_spec, "ipFamilyPolicy") != Some("SingleStack") {
            errs.push(FieldError::invalid(
                "spec.ipFamilyPolicy",
                new_spec
                    .get("ipFamilyPolicy")
                    .cloned()
                    .unwrap_or(Value::Null),
                "must be set to 'SingleStack' when releasing the secondary clusterIP",
            ));
        }
    } else if !old_ips.is_empty() && new_ips[0] != old_ips[0] {
        errs.push(invalid(
            "spec.clusterIPs[0]".into(),
            "may not change once set",
        ));
    }
    errs
}

fn validate_family_changes(new_spec: &Value, old_spec: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if is_headless(new_spec) || is_headless(old_spec) {
        return errs;
    }
    let families = |s: &Value| -> Vec<String> {
        array_at(s, "ipFamilies")
            .iter()
            .map(|f| f.as_str().unwrap_or("").to_string())
            .collect()
    };
    let (new_f, old_f) = (families(new_spec), families(old_spec));
    let rendered = gosyntax::string_slice_at(new_spec, "ipFamilies");
    let value = new_spec.get("ipFamilies").cloned().unwrap_or(Value::Null);
    if new_f.len() == old_f.len() {
        for (i, f) in old_f.iter().enumerate() {
            if *f != new_f[i] {
                errs.push(
                    FieldError::invalid(
                        "spec.ipFamilies[0]",
                        value.clone(),
                        "may not change once set",
                    )
                    .rendered_as(rendered.clone()),
                );
            }
        }
    } else if old_f.len() > new_f.len() {
        if cluster_ips(new_spec).is_empty() {
            errs.push(
                FieldError::invalid(
                    "spec.ipFamilies[0]",
                    value.clone(),
                    "primary ipFamily can not be unset",
                )
                .rendered_as(rendered.clone()),
            );
        }
        if new_f.len() == 1 && str_at(new_spec, "ipFamilyPolicy") != Some("SingleStack") {
            errs.push(FieldError::invalid(
                "spec.ipFamilyPolicy",
                new_spec
                    .get("ipFamilyPolicy")
                    .cloned()
                    .unwrap_or(Value::Null),
                "must be set to 'SingleStack' when releasing the secondary ipFamily",
            ));
        }
    }
    errs
}
