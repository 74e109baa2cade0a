//! Measurement, not a benchmark harness (needs root): for 100, 1,000 and 10,000 Services × 5
//! endpoints, how long a full load takes (render, script, `nft -f`) in a scratch network
//! namespace, and then a one-Service endpoint change (state, incremental render + diff, and
//! `nft -f`), median of several changes. Run: `cargo bench -p proxy --bench nft_apply`;
//! `SERVICES=1000` picks sizes, `DUMP_SCRIPT=FILE` writes the largest full script and stops.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

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

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    assert_eq!(unsafe { libc::geteuid() }, 0, "needs root");
    let sizes: Vec<usize> = std::env::var("SERVICES")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_else(|| vec![100, 1_000, 10_000]);
    let scratch = Scratch(format!("kltest-proxy-{}-bench", std::process::id()));
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
        let t = Instant::now();
        nft.apply(&script).expect("full load");
        let load = t.elapsed();
        println!(
            "{count} services x 5, full load: from_objects {model:.1?}, render {render:.1?}, \
             to_nft_script {write:.1?} ({} KiB, {} chains), nft -f {load:.1?}",
            script.len() / 1024,
            rules.ruleset().chains.len()
        );

        let (mut models, mut renders, mut references, mut applies) =
            (vec![], vec![], vec![], vec![]);
        for round in 0..UPDATES {
            let old_reference = rules.ruleset().clone();
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
            let update = rules.update(state.clone()).expect("a change");
            renders.push(t.elapsed());
            // The reference path the incremental one replaces (full render + full diff).
            let t = Instant::now();
            let reference = Ruleset::update_script(&old_reference, &Ruleset::render(&state));
            references.push(t.elapsed());
            assert_eq!(reference.as_deref(), Some(update.as_str()));
            let t = Instant::now();
            nft.apply(&update).expect("update");
            applies.push(t.elapsed());
        }
        println!(
            "{count} services x 5, one-service update (median of {UPDATES}): from_objects {:.1?}, \
             incremental render+diff {:.1?} (full render+diff {:.1?}), nft -f {:.1?}",
            median(models),
            median(renders),
            median(references),
            median(applies)
        );
        let t = Instant::now();
        nft.delete_table().expect("delete");
        println!("{count} services x 5, delete table: {:.1?}", t.elapsed());
    }
}
