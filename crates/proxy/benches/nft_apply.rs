//! Measurement, not a benchmark harness (needs root): for 100, 1,000 and 10,000 Services × 5
//! endpoints, how long a full load takes in a scratch network namespace, into an empty
//! namespace and replacing the table already there, both through `nft -f` (render, script,
//! `nft -f`) and as one netlink batch (render, encode, send); then a one-Service endpoint change
//! (state, incremental render + diff, apply) both ways, median of several changes.
//! Run: `cargo bench -p proxy --bench nft_apply`; `SERVICES=1000` picks sizes, `PATHS=netlink`
//! (or `nft`) one path, `DUMP_SCRIPT=FILE` writes the largest full script and stops.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use proxy::netlink::BatchSink;
use proxy::{IncrementalRuleset, Nft, ProxyState, Ruleset};

struct Scratch(String);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = dataplane::netns::delete(&self.0);
    }
}

const UPDATES: usize = 7;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

/// CPU time of the calling thread (user + system): the kernel handles a netlink batch inside
/// `sendmsg`, so this is the kernel's work for it, whatever else the machine runs.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    assert_eq!(unsafe { libc::geteuid() }, 0, "needs root");
    let sizes: Vec<usize> = std::env::var("SERVICES")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_else(|| vec![100, 1_000, 10_000]);
    let paths = std::env::var("PATHS").unwrap_or_else(|_| "nft,netlink".into());
    let scratch = Scratch(format!("klnft-{}-bench", std::process::id()));
    let path = dataplane::netns::create(&scratch.0).expect("create netns");
    let nft = Nft::in_netns(&path).expect("open netns");
    let config = common::config();

    for count in sizes {
        let (services, mut slices) = common::many_services(count, 5);
        let t = Instant::now();
        let state = ProxyState::from_objects(&services, &slices, &config);
        let model = t.elapsed();
        let t = Instant::now();
        let mut rules = IncrementalRuleset::new();
        rules.update(state);
        let render = t.elapsed();
        let t = Instant::now();
        let script = rules.ruleset().to_nft_script();
        let write = t.elapsed();
        if let Ok(dump) = std::env::var("DUMP_SCRIPT") {
            std::fs::write(&dump, &script).expect("write script");
            return;
        }
        if paths.contains("nft") {
            let t = Instant::now();
            nft.apply(&script).expect("full load");
            let load = t.elapsed();
            let t = Instant::now();
            nft.apply(&script).expect("full load");
            let replace = t.elapsed();
            println!(
                "{count} services x 5, full load via nft -f: from_objects {model:.1?}, render {render:.1?}, \
                 to_nft_script {write:.1?} ({} KiB, {} chains), nft -f {load:.1?} (empty), \
                 {replace:.1?} (replacing)",
                script.len() / 1024,
                rules.ruleset().chains.len()
            );
            nft.delete_table().expect("delete");
        }
        if paths.contains("netlink") {
            let t = Instant::now();
            let batch = rules.ruleset().to_netlink_batch().expect("encodable");
            let encode = t.elapsed();
            let (t, c) = (Instant::now(), thread_cpu());
            nft.send_batch(&batch).expect("full load");
            let (load, load_cpu) = (t.elapsed(), thread_cpu() - c);
            let (t, c) = (Instant::now(), thread_cpu());
            nft.send_batch(&batch).expect("full load");
            let (replace, replace_cpu) = (t.elapsed(), thread_cpu() - c);
            println!(
                "{count} services x 5, full load via netlink: render {render:.1?}, encode {encode:.1?} \
                 ({} KiB), send {load:.1?} (empty; CPU {load_cpu:.1?}), \
                 {replace:.1?} (replacing; CPU {replace_cpu:.1?})",
                batch.len() / 1024,
            );
        } else {
            nft.apply(&script).expect("full load");
        }

        let (mut models, mut renders, mut references, mut applies, mut apply_cpus) =
            (vec![], vec![], vec![], vec![], vec![]);
        for round in 0..UPDATES {
            let old_reference = rules.ruleset().clone();
            let old_reference_rules = rules.clone();
            // Alternates between two and three endpoints, so every round is a real change.
            let ips: &[&str] = if round % 2 == 0 {
                &["192.168.250.1", "192.168.250.2"]
            } else {
                &["192.168.250.1", "192.168.250.2", "192.168.250.3"]
            };
            slices[count / 2] = common::slice(
                "bench",
                &format!("svc-{:05}", count / 2),
                ips,
                &[("http", "TCP", 8080)],
            );
            let t = Instant::now();
            let state = ProxyState::from_objects(&services, &slices, &config);
            models.push(t.elapsed());
            let t = Instant::now();
            let mut batch = BatchSink::new();
            let mut update = proxy::transaction::ScriptSink::default();
            if paths.contains("netlink") {
                assert!(rules.update_into(state.clone(), &mut batch), "a change");
            } else {
                assert!(rules.update_into(state.clone(), &mut update), "a change");
            }
            renders.push(t.elapsed());
            let update = if paths.contains("netlink") {
                // The script of the same transaction, for the comparison below.
                let mut again = old_reference_rules.clone();
                again.update_into(state.clone(), &mut update);
                update.script
            } else {
                update.script
            };
            // The reference path the incremental one replaces (full render + full diff).
            let t = Instant::now();
            let reference = Ruleset::update_script(&old_reference, &Ruleset::render(&state));
            references.push(t.elapsed());
            assert_eq!(reference.as_deref(), Some(update.as_str()));
            let (t, c) = (Instant::now(), thread_cpu());
            if paths.contains("netlink") {
                nft.send_batch(&batch.finish().expect("encodable"))
                    .expect("update");
            } else {
                nft.apply(&update).expect("update");
            }
            applies.push(t.elapsed());
            apply_cpus.push(thread_cpu() - c);
        }
        println!(
            "{count} services x 5, one-service update (median of {UPDATES}): from_objects {:.1?}, \
             incremental render+diff {:.1?} (full render+diff {:.1?}), apply ({}) {:.1?} \
             (CPU in this process {:.1?})",
            median(models),
            median(renders),
            median(references),
            if paths.contains("netlink") {
                "netlink"
            } else {
                "nft -f"
            },
            median(applies),
            median(apply_cpus)
        );
        let t = Instant::now();
        nft.delete_table().expect("delete");
        println!("{count} services x 5, delete table: {:.1?}", t.elapsed());
    }
}
