//! The worker's hot pure code: hash slots, entity tags, planning a batch into per-slot units,
//! and encoding the units as `FCALL` commands. (Avro decode/encode: `benches/codec.rs`.)
//!
//! `cargo bench --bench hot_path`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use fds_worker::event::EntityKind;
use fds_worker::generate::{GeneratedEvent, TrafficSettings, generate};
use fds_worker::plan::{EventBody, PlanSettings, PlannedEvent, Planner, SourceRef};
use fds_worker::slot::key_slot;
use fds_worker::slot::keys::{Entity, KeyBuilder};
use fds_worker::store::wire::{unit_command, unit_json};

const BATCH: usize = 500;
const NOW_MS: i64 = 1_790_000_000_000;

/// A realistic batch: generated traffic (skewed users, shared IPs and devices, verdicts).
fn batch() -> Vec<PlannedEvent> {
    let settings = TrafficSettings {
        seed: 7,
        transactions: BATCH,
        users: 5_000,
        burst_probability: 0.01,
        verdict_ratio: 0.02,
        start_ms: NOW_MS - 60_000,
        span_ms: 60_000,
    };
    let traffic = generate(&settings, &PlanSettings::seed_defaults());
    let topic: Arc<str> = Arc::from("transactions");
    traffic
        .events
        .into_iter()
        .enumerate()
        .map(|(offset, event)| PlannedEvent {
            source: SourceRef {
                topic: Arc::clone(&topic),
                partition: 0,
                offset: offset as i64,
            },
            body: match event {
                GeneratedEvent::Transaction(tx) => EventBody::Transaction(tx),
                GeneratedEvent::Verdict(verdict) => EventBody::Verdict(verdict),
            },
            redrive: None,
        })
        .collect()
}

fn keyslot(c: &mut Criterion) {
    let mut group = c.benchmark_group("keyslot");
    group.throughput(Throughput::Elements(1));
    group.bench_function("feature key", |b| {
        b.iter(|| key_slot(black_box(b"ft:{u:user-000042}:user_tx_1m")))
    });
    group.bench_function("entity tag (percent-encoding an id)", |b| {
        b.iter(|| Entity::new(EntityKind::User, black_box("user{42}%\n")).tag())
    });
    group.bench_function("feature key built", |b| {
        let keys = KeyBuilder::live();
        b.iter(|| keys.feature(black_box("{u:user-000042}"), "user_tx_1m"))
    });
    group.finish();
}

fn planning(c: &mut Criterion) {
    let events = batch();
    let planner = Planner::new(PlanSettings::seed_defaults());
    let plan = planner.plan(&events, NOW_MS);
    let mut group = c.benchmark_group("plan");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function(
        format!("{} events -> {} slot units", events.len(), plan.units.len()),
        |b| b.iter(|| planner.plan(black_box(&events), NOW_MS)),
    );
    // The JSON argument's size decides what decoding it costs inside Redis
    // (scripts/unit-encoding-cost.sh times one user's unit).
    let mut json_bytes: Vec<usize> = plan.units.iter().map(|u| unit_json(u).len()).collect();
    json_bytes.sort_unstable();
    let percentile = |p: usize| json_bytes[(json_bytes.len() - 1) * p / 100];
    let name = format!(
        "encode every unit as FCALL (JSON median {} B, p90 {} B)",
        percentile(50),
        percentile(90)
    );
    group.bench_function(name, |b| {
        b.iter_batched(
            || plan.units.clone(),
            |units| {
                units
                    .iter()
                    .map(|unit| unit_command(unit, "fds_apply_v1"))
                    .collect::<Vec<_>>()
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, keyslot, planning);
criterion_main!(benches);
