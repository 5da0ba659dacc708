//! The bench's figures and their Markdown tables.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::process::Stopped;
use super::{naive, redis_stats};
use fds_worker::config::Delivery;
use fds_worker::generate::Traffic;

/// The target of issue 16: exactly-once keeps at least this share of at-least-once's events/s.
const THROUGHPUT_TARGET: f64 = 0.80;
/// The target of issue 16: exactly-once p99 at 25 % of the at-least-once maximum.
const P99_TARGET_MS: u64 = 50;

/// One throughput run.
#[derive(Debug)]
pub struct Throughput {
    /// Its delivery mode.
    pub delivery: Delivery,
    events: u64,
    seconds: f64,
    data_commands: u64,
    fcalls: u64,
    units_and_batches: Option<(u64, u64)>,
    peak_rss: u64,
    worker_cpu: f64,
    redis_cpu: f64,
    /// Every enrichment record's create time (Unix ms), for the chart of events/s over time.
    pub enriched_at_ms: Vec<i64>,
}

impl Throughput {
    /// The figures of a finished throughput run.
    pub fn new(
        delivery: Delivery,
        traffic: &Traffic,
        timings: &[(i32, i64, i64)],
        delta: &BTreeMap<String, u64>,
        stopped: &Stopped,
        redis_cpu: f64,
    ) -> Throughput {
        let first = timings.iter().map(|t| t.2).min().unwrap_or(0);
        let last = timings.iter().map(|t| t.2).max().unwrap_or(0);
        Throughput {
            delivery,
            events: traffic.events.len() as u64,
            seconds: ((last - first) as f64 / 1000.0).max(0.001),
            data_commands: data_commands(delta),
            fcalls: delta.get("fcall").copied().unwrap_or(0),
            units_and_batches: stopped.units_and_batches,
            peak_rss: stopped.peak_rss,
            worker_cpu: stopped.cpu_seconds,
            redis_cpu,
            enriched_at_ms: timings.iter().map(|t| t.2).collect(),
        }
    }

    /// Events (transactions + verdicts) per second.
    pub fn events_per_s(&self) -> f64 {
        self.events as f64 / self.seconds
    }

    /// Redis data commands per second (inside the units' `FCALL`s).
    pub fn commands_per_s(&self) -> f64 {
        self.data_commands as f64 / self.seconds
    }
}

/// The naive baseline run (see [`super::naive`]).
#[derive(Debug)]
pub struct Naive {
    events: u64,
    seconds: f64,
    commands_sent: u64,
    data_commands: u64,
    client_cpu: f64,
    redis_cpu: f64,
}

impl Naive {
    /// The figures of a finished naive run: what the client measured, the `INFO commandstats`
    /// delta over it, and the CPU seconds of the client's process and of the Redis nodes.
    pub fn new(
        measured: &naive::Measured,
        delta: &BTreeMap<String, u64>,
        client_cpu: f64,
        redis_cpu: f64,
    ) -> Naive {
        Naive {
            events: measured.events,
            seconds: measured.seconds,
            commands_sent: measured.commands,
            data_commands: data_commands(delta),
            client_cpu,
            redis_cpu,
        }
    }

    /// Events (transactions + verdicts) per second.
    pub fn events_per_s(&self) -> f64 {
        self.events as f64 / self.seconds
    }

    /// Redis data commands per second.
    pub fn commands_per_s(&self) -> f64 {
        self.data_commands as f64 / self.seconds
    }
}

/// The data commands of an `INFO commandstats` delta (see [`redis_stats::is_data_command`]).
fn data_commands(delta: &BTreeMap<String, u64>) -> u64 {
    delta
        .iter()
        .filter(|(name, _)| redis_stats::is_data_command(name))
        .map(|(_, n)| n)
        .sum()
}

/// One latency run.
#[derive(Debug)]
pub struct LatencyRun {
    /// Its delivery mode.
    pub delivery: Delivery,
    /// Its `kafka.transactions.interval`.
    pub interval: Duration,
    /// The interval was given by `--transaction-intervals` (an extra run).
    pub interval_given: bool,
    /// Offered events/s.
    pub rate: u32,
    /// `rate` as a share of the reference maximum, if it was derived from it.
    pub share: Option<f64>,
    /// Source record create time → enrichment record received by a read_committed consumer,
    /// ms, sorted.
    pub visible_ms: Vec<i64>,
    /// Source record create time → enrichment record create time, ms, sorted.
    pub created_ms: Vec<i64>,
    /// Source record create time → the source record itself received by a read_committed
    /// consumer (the publisher and Kafka alone, no worker), ms, sorted.
    pub source_visible_ms: Vec<i64>,
    /// Per transaction in the order of its source record: that record's create time (Unix
    /// ms) and its latency as in `visible_ms`, for the chart of latency over the run.
    pub timeline: Vec<(i64, i64)>,
    /// Median RSS of the second half of the publishing, bytes.
    pub steady_rss: u64,
    /// Peak RSS, bytes.
    pub peak_rss: u64,
}

/// The value at quantile `q` (0.5 = p50) of `samples`; 0 without samples.
fn percentile(samples: &[i64], q: f64) -> u64 {
    // 3 significant figures: exact below 2048 ms, within 0.1 % above; latencies above an hour
    // count as an hour. The bounds must be given: `Histogram::new` starts at a highest
    // trackable value of 2, and `saturating_record` clamps to it instead of growing (every
    // latency recorded as ≤ 2 ms: the "p50 2 ms" rows of BENCHMARKS.md before 2026-12-03).
    let mut histogram =
        hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000, 3).expect("valid bounds");
    for &ms in samples {
        histogram.saturating_record(ms.max(0) as u64);
    }
    histogram.value_at_quantile(q)
}

/// The figures, filled in as the runs finish.
#[derive(Debug, Default)]
pub struct Report {
    /// Which Kafka ran.
    pub kafka: String,
    /// The config's `kafka.transactions.interval`.
    pub default_interval: Duration,
    /// redis-benchmark ops/s per test.
    pub ceiling: BTreeMap<String, f64>,
    /// The throughput runs, in order.
    pub throughputs: Vec<Throughput>,
    /// The mode and events/s the relative rates and ratios refer to.
    pub reference: (Delivery, f64),
    /// Apply-once memory: `((user keys, bytes), (all keys, bytes))`.
    pub memory: Option<((u64, u64), (u64, u64))>,
    /// The naive baseline, on the reference run's records.
    pub naive: Option<Naive>,
    /// Events of the last throughput run.
    pub events: u64,
    /// Tracked users of the last throughput run.
    pub users: u64,
    /// The latency runs, in order.
    pub latencies: Vec<LatencyRun>,
    /// The scaling runs (at-least-once throughput), each with its shape.
    pub scaling: Vec<(super::Shape, Throughput)>,
}

/// What the naive baseline is, under the table.
const NAIVE_NOTE: &str = "\nNaive baseline: the reference throughput run's records read again \
from their topics (a plain consumer) and, per event, the worker's own plan of it applied with \
one command at a time through redis-rs's async cluster client (INCR + EXPIRE per tile counter, \
GET per blacklist lookup, SET EXAT / DEL per verdict), many events in flight; no grouping by \
slot, no Lua. **Not exact under redelivery**: without apply-once, a redelivered record or a \
command re-sent after a lost reply counts twice. It also does less per event than the worker: \
no read of the window's tiles, no breach rule or blacklist merge, no enrichment record.\n";

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

impl Report {
    /// The report as Markdown.
    pub fn markdown(&self) -> String {
        let incr = self.ceiling.get("INCR").copied().unwrap_or(f64::NAN);
        let set = self.ceiling.get("SET").copied().unwrap_or(f64::NAN);
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        line(format!("Kafka: {}.", self.kafka));
        line(String::new());
        line("| measure | value |".into());
        line("|---|---|".into());
        line(format!(
            "| ceiling: redis-benchmark INCR (-P 32 -c 50) | {incr:.0} ops/s |"
        ));
        line(format!(
            "| ceiling: redis-benchmark SET (-P 32 -c 50) | {set:.0} ops/s |"
        ));
        for t in &self.throughputs {
            let mode = t.delivery.as_str();
            let commands_per_s = t.data_commands as f64 / t.seconds;
            line(format!(
                "| {mode}: throughput, events (transactions + verdicts) | {} in {:.2} s = **{:.0} events/s** |",
                t.events,
                t.seconds,
                t.events_per_s()
            ));
            line(format!(
                "| {mode}: Redis data commands applied (INFO commandstats Δ, inside FCALL) | {} = **{commands_per_s:.0} commands/s** ({:.0} % of the INCR ceiling) |",
                t.data_commands,
                100.0 * commands_per_s / incr
            ));
            if let Some((units, batches)) = t.units_and_batches {
                line(format!(
                    "| {mode}: atomic units: FCALLs seen by Redis / units sent (= distinct slots per batch, summed) | {} / {units} over {batches} batches ({:.1} units/batch, {:.1} events/unit) |",
                    t.fcalls,
                    units as f64 / batches.max(1) as f64,
                    t.events as f64 / units.max(1) as f64
                ));
            }
            line(format!(
                "| {mode}: CPU used in the throughput run: worker process / the 6 Redis nodes | {:.1} s / {:.1} s |",
                t.worker_cpu, t.redis_cpu
            ));
            line(format!(
                "| {mode}: worker peak RSS, throughput run | {:.1} MiB |",
                mib(t.peak_rss)
            ));
        }
        if let Some(naive) = &self.naive {
            let commands_per_s = naive.data_commands as f64 / naive.seconds;
            line(format!(
                "| naive baseline: events (the {} run's records; INCR + EXPIRE per counter, GET per lookup, {} events in flight) | {} in {:.2} s = **{:.0} events/s** |",
                self.reference.0.as_str(),
                naive::IN_FLIGHT,
                naive.events,
                naive.seconds,
                naive.events_per_s()
            ));
            line(format!(
                "| naive baseline: Redis data commands (INFO commandstats Δ; sent by the client) | {} = **{commands_per_s:.0} commands/s** ({:.0} % of the INCR ceiling; {} sent, {:.1} per event) |",
                naive.data_commands,
                100.0 * commands_per_s / incr,
                naive.commands_sent,
                naive.commands_sent as f64 / naive.events.max(1) as f64
            ));
            line(format!(
                "| naive baseline: CPU used: the bench process (the naive client) / the 6 Redis nodes | {:.1} s / {:.1} s |",
                naive.client_cpu, naive.redis_cpu
            ));
            for t in &self.throughputs {
                line(format!(
                    "| {}: worker / naive (events/s) | **{:.2}×** ({:.0} / {:.0}) |",
                    t.delivery.as_str(),
                    t.events_per_s() / naive.events_per_s(),
                    t.events_per_s(),
                    naive.events_per_s()
                ));
            }
        }
        if let Some(((user_keys, user_bytes), (all_keys, all_bytes))) = self.memory {
            line(format!(
                "| apply-once marks: per tracked user (`ao:{{u:…}}`) | {:.0} bytes ({user_keys} keys) |",
                user_bytes as f64 / user_keys.max(1) as f64
            ));
            line(format!(
                "| apply-once marks: all entities, per event | {:.0} bytes ({all_keys} keys, {:.1} MiB, {} events, {} users) |",
                all_bytes as f64 / self.events.max(1) as f64,
                mib(all_bytes),
                self.events,
                self.users
            ));
        }
        if self.naive.is_some() {
            out.push_str(NAIVE_NOTE);
        }
        out.push('\n');
        out.push_str(&self.side_by_side());
        out.push_str(&self.scaling_table(incr));
        out
    }

    /// The scaling runs: how events/s and the Redis work grow with batch size and partitions.
    fn scaling_table(&self, incr: f64) -> String {
        if self.scaling.is_empty() {
            return String::new();
        }
        let mut out = String::from(
            "\nScaling (at-least-once throughput runs, each on fresh topics):\n\n\
             | batch size | partitions | events/s | Redis data commands/s (% of INCR ceiling) | commands per event | events per unit | CPU worker / Redis | peak RSS |\n\
             |---|---|---|---|---|---|---|---|\n",
        );
        for (shape, t) in &self.scaling {
            let events_per_unit = t
                .units_and_batches
                .map(|(units, _)| format!("{:.2}", t.events as f64 / units.max(1) as f64))
                .unwrap_or_else(|| "—".into());
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {:.0} ({:.0} %) | {:.1} | {events_per_unit} | {:.1} s / {:.1} s | {:.1} MiB |",
                shape.batch_size,
                shape.partitions,
                t.events_per_s(),
                t.commands_per_s(),
                100.0 * t.commands_per_s() / incr,
                t.data_commands as f64 / t.events.max(1) as f64,
                t.worker_cpu,
                t.redis_cpu,
                mib(t.peak_rss)
            );
        }
        out
    }

    /// The delivery modes side by side: per latency run, its mode's throughput and the
    /// latency at its offered rate.
    fn side_by_side(&self) -> String {
        let (reference_mode, reference) = self.reference;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| delivery | tx interval | events/s (throughput run) | vs {} | offered events/s | p50 | p99 | max | p99 by create times | p50 / p99 Kafka alone | transactions | RSS steady / peak |",
            reference_mode.as_str()
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|");
        for run in &self.latencies {
            let throughput = self.throughputs.iter().find(|t| t.delivery == run.delivery);
            let (events_per_s, ratio) = match throughput {
                Some(t) if !run.interval_given => (
                    format!("{:.0}", t.events_per_s()),
                    format!("{:.2}", t.events_per_s() / reference),
                ),
                Some(_) => ("(not run)".into(), "".into()),
                None => ("".into(), "".into()),
            };
            let interval = match run.delivery {
                Delivery::ExactlyOnce => {
                    format!("{} ms", run.interval.as_millis())
                }
                Delivery::AtLeastOnce => "—".into(),
            };
            let offered = match run.share {
                Some(share) => format!("{} ({:.0} %)", run.rate, share * 100.0),
                None => run.rate.to_string(),
            };
            let _ = writeln!(
                out,
                "| {} | {interval} | {events_per_s} | {ratio} | {offered} | {} ms | **{} ms** | {} ms | {} ms | {} / {} ms | {} | {:.1} / {:.1} MiB |",
                run.delivery.as_str(),
                percentile(&run.visible_ms, 0.50),
                percentile(&run.visible_ms, 0.99),
                run.visible_ms.last().copied().unwrap_or(0),
                percentile(&run.created_ms, 0.99),
                percentile(&run.source_visible_ms, 0.50),
                percentile(&run.source_visible_ms, 0.99),
                run.visible_ms.len(),
                mib(run.steady_rss),
                mib(run.peak_rss)
            );
        }
        let _ = writeln!(
            out,
            "\nLatency: source record (create time) → its enrichment record received by a \
             read_committed consumer (what downstream sees; for exactly-once it includes the \
             commit). \"p99 by create times\": enrichment record create time − source record \
             create time. \"Kafka alone\": source record create time → the source record itself \
             received by a read_committed consumer (the publisher and the brokers, no worker: \
             the floor under every figure). Offered rates: {}. Steady RSS: median of the second half of a latency \
             run. Throughput runs use the configured interval ({} ms).",
            if self.latencies.iter().any(|r| r.share.is_some()) {
                format!(
                    "shares of the {} maximum measured above ({reference:.0} events/s)",
                    reference_mode.as_str()
                )
            } else {
                "as given (--rate)".to_owned()
            },
            self.default_interval.as_millis()
        );
        out.push_str(&self.targets());
        out
    }

    /// Issue 16's targets, if both modes ran.
    fn targets(&self) -> String {
        let eos = self
            .throughputs
            .iter()
            .find(|t| t.delivery == Delivery::ExactlyOnce);
        let alo = self
            .throughputs
            .iter()
            .find(|t| t.delivery == Delivery::AtLeastOnce);
        let (Some(eos), Some(alo)) = (eos, alo) else {
            return String::new();
        };
        let ratio = eos.events_per_s() / alo.events_per_s();
        let mut out = format!(
            "\nTargets: exactly-once throughput {:.0} % of at-least-once (target ≥ {:.0} %: {})",
            ratio * 100.0,
            THROUGHPUT_TARGET * 100.0,
            if ratio >= THROUGHPUT_TARGET {
                "met"
            } else {
                "not met"
            }
        );
        let low = self
            .latencies
            .iter()
            .find(|r| r.delivery == Delivery::ExactlyOnce && !r.interval_given);
        if let Some(run) = low.filter(|r| r.share == Some(0.25)) {
            let p99 = percentile(&run.visible_ms, 0.99);
            let _ = write!(
                out,
                "; exactly-once p99 at 25 % {p99} ms (target ≤ {P99_TARGET_MS} ms: {})",
                if p99 <= P99_TARGET_MS {
                    "met"
                } else {
                    "not met"
                }
            );
        }
        out.push_str(".\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_sorted_samples() {
        let samples: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&samples, 0.5), 50);
        assert_eq!(percentile(&samples, 0.99), 99);
        assert_eq!(percentile(&[], 0.99), 0);
    }

    /// Latencies of seconds are not clamped (they were, to 2 ms, by an unbounded histogram).
    #[test]
    fn percentiles_of_seconds_long_latencies() {
        let samples: Vec<i64> = (0..17_290).map(|i| 1_300 + i % 2_500).collect();
        let p50 = percentile(&samples, 0.5);
        assert!((2_500..2_600).contains(&p50), "{p50}");
        assert!(percentile(&samples, 1.0) >= 3_795, "the maximum");
        assert_eq!(
            percentile(&[7_200_000], 0.5) / 1000,
            3_600,
            "clamped at an hour"
        );
    }
}
