//! The node's kube-proxy (nftables mode): watches Services and EndpointSlices and keeps the
//! node's `ip kube-proxy` table equal to [`proxy::Ruleset::render`] of them, re-rendering
//! only the Service ports that changed ([`proxy::IncrementalRuleset`]).
//!
//! Why a change is applied at once rather than on kube-proxy's 1 s minimum sync period: a
//! sync here costs one `nft` run with only the difference ([`proxy::Ruleset::update_script`]),
//! so there is no burst to protect against; changes that arrive while a sync runs are
//! coalesced into the next one. A failed update, or a restart, re-applies the whole table.
//!
//! Runs inside the node's network namespace, so pods (whose traffic the node routes) and the
//! node's own processes both meet the rules; NodePorts answer on every local address.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use proxy::{IncrementalRuleset, Nft, ProxyConfig, ProxyState};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// A full re-apply this often repairs whatever changed the table behind our back.
const FULL_RESYNC: Duration = Duration::from_secs(300);

fn reflect<K>(
    client: Client,
    changed: Arc<Notify>,
) -> (reflector::Store<K>, tokio::task::JoinHandle<()>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + for<'de> k8s_openapi::serde::Deserialize<'de>
        + Send
        + Sync
        + 'static,
{
    let api: kube::Api<K> = kube::Api::all(client);
    let writer = reflector::store::Writer::<K>::default();
    let store = writer.as_reader();
    let task = tokio::spawn(async move {
        use futures::StreamExt;
        let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
            .default_backoff();
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            if event.is_ok() {
                changed.notify_one();
            }
        }
    });
    (store, task)
}

/// Keeps the node's Service rules in step with the cluster until the task is aborted.
pub async fn run(client: Client, config: ProxyConfig) {
    let changed = Arc::new(Notify::new());
    let (services, w1) = reflect::<Service>(client.clone(), changed.clone());
    let (slices, w2) = reflect::<EndpointSlice>(client, changed.clone());
    let _watchers = crate::netnode::AbortOnDrop(vec![w1, w2]);
    let _ = services.wait_until_ready().await;
    let _ = slices.wait_until_ready().await;
    let nft = Nft::new();
    // Always the wanted state; `loaded` says whether the kernel holds what it held last.
    let mut rules = IncrementalRuleset::new();
    let mut loaded = false;
    let mut last_full = Instant::now();
    loop {
        let state = {
            let services = services.state();
            let slices = slices.state();
            ProxyState::from_objects(
                services.iter().map(|s| &**s),
                slices.iter().map(|s| &**s),
                &config,
            )
        };
        let diff = rules.update(state);
        if last_full.elapsed() > FULL_RESYNC {
            loaded = false;
        }
        let script = if loaded {
            diff
        } else {
            Some(rules.ruleset().to_nft_script())
        };
        if let Some(script) = script {
            let full = !loaded;
            let nft = nft.clone();
            match tokio::task::spawn_blocking(move || nft.apply(&script)).await {
                Ok(Ok(())) => {
                    if full {
                        last_full = Instant::now();
                    }
                    loaded = true;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, full, "applying Service rules failed; re-applying all");
                    loaded = false;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the nft task failed");
                    loaded = false;
                    continue;
                }
            }
        }
        tokio::select! {
            _ = changed.notified() => {}
            _ = tokio::time::sleep(FULL_RESYNC) => {}
        }
    }
}
