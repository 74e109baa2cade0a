//! Keeps [`Records`] in step with the API server: one reflector (list, then watch, with
//! kube-rs's backoff on errors) per kind CoreDNS watches for these answers (Services,
//! EndpointSlices, Namespaces), and a rebuild after every change once all three have listed.

use crate::records::Records;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, watch};

/// Watches the cluster and publishes a new [`Records`] on `records` after every change; the
/// first synced one once Services, EndpointSlices and Namespaces have all been listed.
/// Runs until the receiving side is gone.
pub async fn feed(client: Client, records: watch::Sender<Arc<Records>>) {
    let changed = Arc::new(Notify::new());
    let services = reflect::<Service>(Api::all(client.clone()), "*v1.Service", &changed);
    let slices = reflect::<EndpointSlice>(Api::all(client.clone()), "*v1.EndpointSlice", &changed);
    let namespaces = reflect::<Namespace>(Api::all(client), "*v1.Namespace", &changed);

    let all_listed = async {
        services.wait_until_ready().await.is_ok()
            && slices.wait_until_ready().await.is_ok()
            && namespaces.wait_until_ready().await.is_ok()
    };
    if !all_listed.await {
        return;
    }
    loop {
        let next = Records::build(
            services.state().iter().map(Arc::as_ref),
            slices.state().iter().map(Arc::as_ref),
            namespaces.state().iter().map(Arc::as_ref),
            unix_seconds(),
        );
        if records.send(Arc::new(next)).is_err() {
            return;
        }
        // A change during the rebuild leaves a permit, so none is missed; a burst of
        // changes becomes one rebuild.
        changed.notified().await;
    }
}

/// Starts a reflector for `K` and returns its store; every event rings `changed`.
fn reflect<K>(api: Api<K>, kind: &'static str, changed: &Arc<Notify>) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store::<K>();
    let changed = changed.clone();
    tokio::spawn(async move {
        let stream = reflector::reflector(
            writer,
            watcher(api, watcher::Config::default()).default_backoff(),
        );
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => changed.notify_one(),
                Err(error) => {
                    println!("[ERROR] plugin/kubernetes: failed to watch {kind}: {error}")
                }
            }
        }
    });
    store
}

/// The SOA serial CoreDNS uses: the time of the last change, in Unix seconds.
fn unix_seconds() -> u32 {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    u32::try_from(seconds).unwrap_or(u32::MAX)
}
