//! Service ClusterIP and NodePort allocation wired to Service writes, plus small object helpers
//! the REST layer needs (generated names, pod QoS class, selector strings).

use crate::alloc::{ClusterIpAllocator, NodePortAllocator};
use crate::object;
use crate::server::State;
use apimachinery::{ApiError, FieldError, FieldErrorKind};
use serde_json::{Value, json};

/// The allocators of one API server, guarded by a std mutex that is never held across an await.
#[derive(Debug)]
pub struct Allocators {
    pub cluster_ips: ClusterIpAllocator,
    pub node_ports: NodePortAllocator,
}

impl Allocators {
    /// Marks what the stored Services already hold.
    pub fn rebuild(&mut self, services: &[Value]) {
        for s in services {
            for ip in cluster_ips(s) {
                let _ = self.cluster_ips.allocate(&ip);
            }
            for p in node_ports(s) {
                let _ = self.node_ports.allocate(p);
            }
        }
    }
}

/// What one Service write allocated (released again if the write fails) and what it frees
/// once it succeeds.
#[derive(Debug, Default)]
pub struct Allocation {
    new_ips: Vec<String>,
    new_ports: Vec<i64>,
    freed_ips: Vec<String>,
    freed_ports: Vec<i64>,
}

fn cluster_ips(svc: &Value) -> Vec<String> {
    let mut out: Vec<String> = svc
        .pointer("/spec/clusterIPs")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if let Some(ip) = svc.pointer("/spec/clusterIP").and_then(Value::as_str)
        && !out.iter().any(|x| x == ip)
    {
        out.push(ip.to_string());
    }
    out.retain(|ip| !ip.is_empty() && ip != "None");
    out
}

fn node_ports(svc: &Value) -> Vec<i64> {
    svc.pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|ports| {
            ports
                .iter()
                .filter_map(|p| p.get("nodePort").and_then(Value::as_i64))
                .filter(|p| *p != 0)
                .collect()
        })
        .unwrap_or_default()
}

fn service_type(svc: &Value) -> &str {
    svc.pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
}

fn invalid(svc: &Value, errors: Vec<FieldError>) -> ApiError {
    ApiError::invalid("", "Service", object::name(svc), &errors)
}

/// Go's `[]string{"a", "b"}` rendering, which upstream uses for clusterIPs errors.
fn go_string_slice(items: &[String]) -> String {
    format!(
        "[]string{{{}}}",
        items
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Assigns ClusterIPs and NodePorts to a Service being created (`old` = None) or updated.
pub fn allocate(
    state: &State,
    svc: &mut Value,
    old: Option<&Value>,
) -> Result<Allocation, ApiError> {
    let mut guard = state
        .allocators
        .lock()
        .map_err(|_| ApiError::internal("allocator lock poisoned"))?;
    let allocs = &mut *guard;
    let mut a = Allocation::default();
    let result = allocate_locked(allocs, svc, old, &mut a);
    if result.is_err() {
        release_locked(allocs, &a);
    }
    result.map(|_| a)
}

fn allocate_locked(
    allocs: &mut Allocators,
    svc: &mut Value,
    old: Option<&Value>,
    a: &mut Allocation,
) -> Result<(), ApiError> {
    let ty = service_type(svc).to_string();
    let old_ips = old.map(cluster_ips).unwrap_or_default();
    let requested: Vec<String> = cluster_ips(svc);
    let headless = svc.pointer("/spec/clusterIP").and_then(Value::as_str) == Some("None");

    // ClusterIP: immutable once set, except that ExternalName services have none.
    if ty == "ExternalName" {
        if !requested.is_empty() && requested != old_ips {
            return Err(invalid(
                svc,
                vec![FieldError::forbidden(
                    "spec.clusterIPs",
                    "may not be set for ExternalName services",
                )],
            ));
        }
        if let Some(spec) = svc.get_mut("spec").and_then(Value::as_object_mut) {
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
        }
        a.freed_ips = old_ips.clone();
    } else if headless {
        svc["spec"]["clusterIPs"] = json!(["None"]);
    } else if !old_ips.is_empty() {
        if !requested.is_empty() && requested != old_ips {
            return Err(invalid(
                svc,
                vec![
                    FieldError::new(
                        FieldErrorKind::Invalid,
                        "spec.clusterIPs[0]",
                        None,
                        "may not change once set",
                    )
                    .rendered_as(go_string_slice(&requested)),
                ],
            ));
        }
        svc["spec"]["clusterIP"] = json!(old_ips[0]);
        svc["spec"]["clusterIPs"] = json!(old_ips);
    } else if let Some(ip) = requested.first() {
        allocs.cluster_ips.allocate(ip).map_err(|e| {
            invalid(
                svc,
                vec![
                    FieldError::new(
                        FieldErrorKind::Invalid,
                        "spec.clusterIPs",
                        None,
                        format!("failed to allocate IP {ip}: {e}"),
                    )
                    .rendered_as(go_string_slice(&requested)),
                ],
            )
        })?;
        a.new_ips.push(ip.clone());
        svc["spec"]["clusterIPs"] = json!([ip]);
    } else {
        let ip = allocs
            .cluster_ips
            .allocate_next(rand::random())
            .map_err(|e| ApiError::internal(format!("failed to allocate a serviceIP: {e}")))?;
        a.new_ips.push(ip.to_string());
        svc["spec"]["clusterIP"] = json!(ip.to_string());
        svc["spec"]["clusterIPs"] = json!([ip.to_string()]);
    }
    if ty != "ExternalName" {
        let spec = &mut svc["spec"];
        if spec.get("ipFamilies").is_none_or(Value::is_null) {
            spec["ipFamilies"] = json!(["IPv4"]);
        }
        if spec.get("ipFamilyPolicy").is_none_or(Value::is_null) {
            spec["ipFamilyPolicy"] = json!("SingleStack");
        }
        if spec.get("clusterIP").is_none_or(Value::is_null) {
            let first = spec["clusterIPs"][0].clone();
            spec["clusterIP"] = first;
        }
    }

    // NodePorts.
    let old_ports = old.map(node_ports).unwrap_or_default();
    let wants_node_ports = matches!(ty.as_str(), "NodePort" | "LoadBalancer");
    let mut kept: Vec<i64> = Vec::new();
    let mut errors = Vec::new();
    let port_count = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let mut seen: Vec<i64> = Vec::new();
    for i in 0..port_count {
        let field = format!("spec.ports[{i}].nodePort");
        let requested = svc["spec"]["ports"][i]
            .get("nodePort")
            .and_then(Value::as_i64)
            .filter(|p| *p != 0);
        if !wants_node_ports {
            if let Some(p) = requested {
                if old_ports.contains(&p) && old.is_some() {
                    // A type change away from NodePort drops the ports it had.
                    if let Some(port) = svc["spec"]["ports"][i].as_object_mut() {
                        port.remove("nodePort");
                    }
                    continue;
                }
                errors.push(FieldError::forbidden(
                    field,
                    format!("may not be used when `type` is '{ty}'"),
                ));
            }
            continue;
        }
        match requested {
            Some(p) if seen.contains(&p) => errors.push(FieldError::duplicate(field, p)),
            Some(p) if old_ports.contains(&p) => {
                seen.push(p);
                kept.push(p);
            }
            Some(p) => match allocs.node_ports.allocate(p) {
                Ok(()) => {
                    seen.push(p);
                    a.new_ports.push(p);
                }
                Err(e) => errors.push(FieldError::invalid(field, p, e.to_string())),
            },
            None => match allocs.node_ports.allocate_next(rand::random()) {
                Ok(p) => {
                    let p = p as i64;
                    seen.push(p);
                    a.new_ports.push(p);
                    svc["spec"]["ports"][i]["nodePort"] = json!(p);
                }
                Err(e) => {
                    return Err(ApiError::internal(format!(
                        "failed to allocate a nodePort: {e}"
                    )));
                }
            },
        }
    }
    if !errors.is_empty() {
        return Err(invalid(svc, errors));
    }
    a.freed_ports = old_ports
        .into_iter()
        .filter(|p| !kept.contains(p))
        .collect();
    if a.freed_ips.is_empty() {
        let now_ips = cluster_ips(svc);
        a.freed_ips = old_ips
            .into_iter()
            .filter(|ip| !now_ips.contains(ip))
            .collect();
    }
    Ok(())
}

fn release_locked(allocs: &mut Allocators, a: &Allocation) {
    for ip in &a.new_ips {
        allocs.cluster_ips.release(ip);
    }
    for p in &a.new_ports {
        allocs.node_ports.release(*p);
    }
}

/// Undoes an allocation whose write failed or was a dry run.
pub fn release(state: &State, a: &Allocation) {
    if let Ok(mut g) = state.allocators.lock() {
        release_locked(&mut g, a);
    }
}

/// After a successful update: frees what the old object held and the new one does not.
pub fn commit_update(state: &State, a: &Allocation, _old: &Value) {
    if let Ok(mut g) = state.allocators.lock() {
        for ip in &a.freed_ips {
            g.cluster_ips.release(ip);
        }
        for p in &a.freed_ports {
            g.node_ports.release(*p);
        }
    }
}

/// After a Service is deleted: frees its ClusterIPs and NodePorts.
pub fn release_service(state: &State, svc: &Value) {
    if let Ok(mut g) = state.allocators.lock() {
        for ip in cluster_ips(svc) {
            g.cluster_ips.release(&ip);
        }
        for p in node_ports(svc) {
            g.node_ports.release(p);
        }
    }
}
