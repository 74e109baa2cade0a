//! Pure cost of a sync at scale: 10,000 Services × 5 endpoints rendered, and the update for one
//! changed Service computed both ways: full render + full diff (the reference) and
//! [`IncrementalRuleset::update`] (what a node agent should call).

#[path = "../tests/common/mod.rs"]
mod common;

use std::cell::Cell;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use proxy::{IncrementalRuleset, ProxyState, Ruleset};

fn bench(c: &mut Criterion) {
    let (services, mut slices) = common::many_services(10_000, 5);
    let config = common::config();
    let original = ProxyState::from_objects(&services, &slices, &config);
    let old = Ruleset::render(&original);
    slices[42] = common::slice(
        "bench",
        "svc-00042",
        &["192.168.250.1"],
        &[("http", "TCP", 8080)],
    );
    let changed = ProxyState::from_objects(&services, &slices, &config);

    let mut group = c.benchmark_group("10k_services_x5");
    group.sample_size(10);
    group.bench_function("from_objects", |b| {
        b.iter(|| ProxyState::from_objects(&services, &slices, &config))
    });
    group.bench_function("render", |b| b.iter(|| Ruleset::render(&changed)));
    let new = Ruleset::render(&changed);
    group.bench_function("update_script (one service changed)", |b| {
        b.iter(|| Ruleset::update_script(&old, &new))
    });
    let mut rules = IncrementalRuleset::new();
    rules.update(original.clone());
    let flip = Cell::new(false);
    group.bench_function("incremental update (one service changed)", |b| {
        b.iter_batched(
            || {
                // Back and forth, so that every update is a real one-Service change.
                flip.set(!flip.get());
                if flip.get() {
                    changed.clone()
                } else {
                    original.clone()
                }
            },
            |state| rules.update(state),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("to_nft_script", |b| b.iter(|| new.to_nft_script()));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
