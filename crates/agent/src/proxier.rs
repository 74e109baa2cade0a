//! The node's kube-proxy (nftables mode): watches Services and EndpointSlices and keeps the
//! node's `ip kube-proxy` table equal to [`proxy::Ruleset::render`] of them, re-rendering
//! only the Service ports that changed ([`proxy::IncrementalRuleset`]).
//!
//! Why a change is applied at once rather than on kube-proxy's 1 s minimum sync period: a
//! sync here costs one nf_tables netlink batch with only the difference
//! ([`proxy::Ruleset::write_update`] into [`proxy::netlink::BatchSink`]; no `nft` process, no
//! cache of the table), so there is no burst to protect against; changes that arrive while a
//! sync runs are coalesced into the next one. A failed update, or a restart, re-applies the
//! whole table in one transaction ([`proxy::Ruleset::full_table`], which falls back to an
//! `nft -f` script for anything the encoder cannot write). `KUBELAB_PROXY_BACKEND=nft` makes every sync an
//! `nft -f` script instead (the path before the netlink encoder, for comparisons).
//!
//! Runs inside the node's network namespace, so pods (whose traffic the node routes) and the
//! node's own processes both meet the rules; NodePorts answer on every local address.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use proxy::netlink::BatchSink;
use proxy::transaction::{Discard, ScriptSink};
use proxy::{IncrementalRuleset, Nft, Prepared, ProxyConfig, ProxyState};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The transaction that replaces the whole table: a netlink batch, or the `nft -f` script
/// (always with `KUBELAB_PROXY_BACKEND=nft`, or when the encoder refuses a rule, which the rules
/// the proxy renders never make it do).
fn full_transaction(ruleset: &proxy::Ruleset, scripts_only: bool) -> Prepared {
    if scripts_only {
        return Prepared::Script(ruleset.to_nft_script());
    }
    ruleset.full_table().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot encode the table as netlink; using nft -f");
        Prepared::Script(ruleset.to_nft_script())
    })
}

/// `KUBELAB_PROXY_BACKEND=nft`: every sync through `nft -f`.
fn scripts_only() -> bool {
    std::env::var("KUBELAB_PROXY_BACKEND").is_ok_and(|v| v == "nft")
}

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
    let scripts_only = scripts_only();
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
        if last_full.elapsed() > FULL_RESYNC {
            loaded = false;
        }
        let full = !loaded;
        let started = Instant::now();
        let transaction = if full {
            rules.update_into(state, &mut Discard);
            let rendered = started.elapsed();
            let transaction = full_transaction(rules.ruleset(), scripts_only);
            tracing::info!(
                chains = rules.ruleset().chains.len(),
                render_ms = rendered.as_millis() as u64,
                encode_ms = (started.elapsed() - rendered).as_millis() as u64,
                "full sync of Service rules prepared"
            );
            Some(transaction)
        } else if scripts_only {
            let mut script = ScriptSink::default();
            rules
                .update_into(state, &mut script)
                .then_some(Prepared::Script(script.script))
        } else {
            let mut batch = BatchSink::new();
            if rules.update_into(state, &mut batch) {
                match batch.finish() {
                    Ok(bytes) => Some(Prepared::Batch(bytes)),
                    // The full path falls back to `nft -f` by itself.
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot encode the update; re-applying all");
                        Some(full_transaction(rules.ruleset(), scripts_only))
                    }
                }
            } else {
                None
            }
        };
        if let Some(transaction) = transaction {
            let nft = nft.clone();
            let applied = tokio::task::spawn_blocking(move || nft.send(&transaction)).await;
            match applied {
                Ok(Ok(_)) => {
                    if full {
                        tracing::info!(
                            total_ms = started.elapsed().as_millis() as u64,
                            "full sync of Service rules applied"
                        );
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
