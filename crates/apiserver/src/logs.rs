//! `GET pods/<name>/log`. The API server checks the pod and container like upstream does, and
//! then needs the node's kubelet to read the log; without one (a server with no nodes) the
//! container can never have started, which is what it answers.

use crate::object;
use crate::rest::Call;
use apimachinery::ApiError;
use axum::response::Response;
use serde_json::Value;

pub fn pod_log(call: &Call<'_>) -> Result<Response, ApiError> {
    let pod_name = call.rr.name.clone().unwrap_or_default();
    let key = object::key(call.rr.info, call.rr.namespace.as_deref(), &pod_name);
    let entry = call
        .state
        .store
        .get(&key)
        .ok_or_else(|| ApiError::not_found("", "pods", &pod_name))?;
    let pod = object::parse(&entry.value);
    let names: Vec<String> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| c.get("name")?.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let container = match call.query.get("container") {
        Some(c) => {
            if !names.iter().any(|n| n == c) {
                return Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {pod_name}"
                )));
            }
            c.to_string()
        }
        None if names.len() == 1 => names[0].clone(),
        None => {
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                names.join(" ")
            )));
        }
    };
    let status = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter()
                .find(|s| s.get("name").and_then(Value::as_str) == Some(container.as_str()))
        });
    let waiting_reason = status
        .and_then(|s| s.pointer("/state/waiting/reason"))
        .and_then(Value::as_str)
        .unwrap_or("ContainerCreating");
    let running = status.is_some_and(|s| {
        s.pointer("/state/running").is_some() || s.pointer("/state/terminated").is_some()
    });
    if !running {
        return Err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{pod_name}\" is waiting to start: {waiting_reason}"
        )));
    }
    Err(ApiError::service_unavailable(format!(
        "the kubelet of node {:?} does not serve logs",
        pod.pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or("")
    )))
}
