//! `fds-worker bench --plot DIR`: the bench's figures as PNG charts.
//!
//! - `latency.png`: per latency run, p50 / p99 / max of source record → enrichment visible to a
//!   `read_committed` reader, per second of the run (by the source record's create time), on a
//!   log scale: a stall shows as a peak at the second it happened, a worker falling behind as a
//!   line that climbs.
//! - `throughput.png`: enrichment records created per second over each throughput run.
//! - `comparison.png`: Redis commands/s (the `redis-benchmark` INCR ceiling, the worker per
//!   mode, the naive client) and events/s (the worker per mode, the naive client).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::report::{LatencyRun, Report};
use crate::chart::register_font;
use fds_worker::config::Delivery;

/// Writes the charts into `dir` (created if missing); returns their paths.
pub fn write(report: &Report, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    register_font()?;
    let mut written = Vec::new();
    if !report.latencies.is_empty() {
        let path = dir.join("latency.png");
        latency(report, &path).with_context(|| format!("drawing {}", path.display()))?;
        written.push(path);
    }
    if !report.throughputs.is_empty() {
        let path = dir.join("throughput.png");
        throughput(report, &path).with_context(|| format!("drawing {}", path.display()))?;
        written.push(path);
    }
    let path = dir.join("comparison.png");
    comparison(report, &path).with_context(|| format!("drawing {}", path.display()))?;
    written.push(path);
    Ok(written)
}

/// The line colours of p50, p99 and max.
const P50: RGBColor = RGBColor(40, 100, 200);
const P99: RGBColor = RGBColor(210, 50, 50);
const MAX: RGBColor = RGBColor(150, 150, 150);

/// One second of a latency run: `(s since its first source record, p50, p99, max)`, in ms.
type Second = (f64, f64, f64, f64);

/// Which value of a [`Second`] a line draws.
type Pick = fn(&Second) -> f64;

/// A latency run's seconds.
fn per_second(run: &LatencyRun) -> Vec<Second> {
    let Some(&(first, _)) = run.timeline.first() else {
        return Vec::new();
    };
    let mut seconds: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for &(source_ms, latency_ms) in &run.timeline {
        seconds
            .entry((source_ms - first) / 1000)
            .or_default()
            .push(latency_ms.max(0));
    }
    seconds
        .into_iter()
        .map(|(second, mut values)| {
            values.sort_unstable();
            let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize] as f64;
            (second as f64 + 0.5, at(0.50), at(0.99), at(1.0))
        })
        .collect()
}

fn run_title(run: &LatencyRun) -> String {
    let share = run
        .share
        .map(|s| format!(" ({:.0} % of max)", 100.0 * s))
        .unwrap_or_default();
    let interval = if run.delivery == Delivery::ExactlyOnce {
        format!(", tx every {} ms", run.interval.as_millis())
    } else {
        String::new()
    };
    format!(
        "{} at {}/s{share}{interval}",
        run.delivery.as_str(),
        run.rate
    )
}

fn latency(report: &Report, path: &Path) -> anyhow::Result<()> {
    let runs = &report.latencies;
    let columns = if runs.len() == 1 { 1 } else { 2 };
    let rows = runs.len().div_ceil(columns);
    let root = BitMapBackend::new(path, (700 * columns as u32, 60 + 300 * rows as u32))
        .into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        &format!(
            "fds-worker bench ({}): latency per second, source record → enrichment visible \
             (read_committed); p50 blue, p99 red, max grey",
            report.kafka
        ),
        ("sans-serif", 20),
    )?;
    let panels = root.split_evenly((rows, columns));
    let per_run: Vec<Vec<Second>> = runs.iter().map(per_second).collect();
    let all = || per_run.iter().flatten();
    let top = all().map(|s| s.3).fold(10.0, f64::max) * 1.5;
    let end = all().map(|s| s.0).fold(1.0, f64::max) + 0.5;
    for ((panel, run), seconds) in panels.iter().zip(runs).zip(&per_run) {
        let mut chart = ChartBuilder::on(panel)
            .margin(10)
            .x_label_area_size(28)
            .y_label_area_size(60)
            .caption(run_title(run), ("sans-serif", 16))
            .build_cartesian_2d(0.0..end, (1.0..top).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("s into the run")
            .y_desc("ms")
            .label_style(("sans-serif", 12))
            .draw()?;
        let lines: [(RGBColor, Pick); 3] = [(MAX, |s| s.3), (P99, |s| s.2), (P50, |s| s.1)];
        for (color, value) in lines {
            let points = seconds.iter().map(|s| (s.0, value(s).max(1.0)));
            chart.draw_series(LineSeries::new(points, color.stroke_width(2)))?;
        }
    }
    root.present()?;
    Ok(())
}

fn throughput(report: &Report, path: &Path) -> anyhow::Result<()> {
    let root = BitMapBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    // 250 ms buckets, scaled to a rate: the runs last seconds.
    let series: Vec<(String, Vec<(f64, f64)>)> = report
        .throughputs
        .iter()
        .map(|t| {
            let first = t.enriched_at_ms.iter().copied().min().unwrap_or(0);
            let mut buckets: BTreeMap<i64, u64> = BTreeMap::new();
            for &at in &t.enriched_at_ms {
                *buckets.entry((at - first) / 250).or_default() += 1;
            }
            let points = buckets
                .into_iter()
                .map(|(b, n)| (b as f64 * 0.25 + 0.125, n as f64 * 4.0))
                .collect();
            (
                format!(
                    "{}: {:.0} events/s over the run",
                    t.delivery.as_str(),
                    t.events_per_s()
                ),
                points,
            )
        })
        .collect();
    let end = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|p| p.0))
        .fold(1.0, f64::max)
        + 0.25;
    let top = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|p| p.1))
        .fold(1.0, f64::max)
        * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .margin(14)
        .x_label_area_size(32)
        .y_label_area_size(80)
        .caption(
            format!(
                "fds-worker bench ({}): transactions enriched per second, throughput runs \
                 (backlog published first)",
                report.kafka
            ),
            ("sans-serif", 18),
        )
        .build_cartesian_2d(0.0..end, 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("s since the first enrichment record")
        .y_desc("transactions / s")
        .label_style(("sans-serif", 12))
        .draw()?;
    let colors = [P50, P99, RGBColor(60, 160, 80)];
    for (i, (name, points)) in series.into_iter().enumerate() {
        let color = colors[i % colors.len()];
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(3)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    root.present()?;
    Ok(())
}

fn comparison(report: &Report, path: &Path) -> anyhow::Result<()> {
    let root = BitMapBackend::new(path, (1200, 620)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        &format!(
            "fds-worker bench ({}): the worker against the cluster's ceiling and a naive client, \
             same run",
            report.kafka
        ),
        ("sans-serif", 20),
    )?;
    let (upper, lower) = root.split_vertically(330);
    let mut commands = Vec::new();
    if let Some(&incr) = report.ceiling.get("INCR") {
        commands.push(("redis-benchmark INCR ceiling".to_owned(), incr, MAX));
    }
    let mut events = Vec::new();
    for t in &report.throughputs {
        let name = format!("worker, {}", t.delivery.as_str());
        commands.push((name.clone(), t.commands_per_s(), P50));
        events.push((name, t.events_per_s(), P50));
    }
    if let Some(naive) = &report.naive {
        let name = "naive client (not exact)".to_owned();
        commands.push((name.clone(), naive.commands_per_s(), P99));
        events.push((name, naive.events_per_s(), P99));
    }
    bars(&upper, "Redis data commands / s", &commands)?;
    bars(&lower, "events / s (transactions + verdicts)", &events)?;
    root.present()?;
    Ok(())
}

/// Horizontal bars, each labelled with its name and value.
fn bars(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    caption: &str,
    bars: &[(String, f64, RGBColor)],
) -> anyhow::Result<()> {
    let top = bars.iter().map(|b| b.1).fold(1.0, f64::max) * 1.45;
    let mut chart = ChartBuilder::on(area)
        .margin(14)
        .x_label_area_size(28)
        .y_label_area_size(10)
        .caption(caption, ("sans-serif", 16))
        .build_cartesian_2d(0.0..top, 0.0..bars.len().max(1) as f64)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .label_style(("sans-serif", 12))
        .x_label_formatter(&|v| format!("{:.0}k", v / 1000.0))
        .draw()?;
    for (i, (name, value, color)) in bars.iter().enumerate() {
        let y = (bars.len() - 1 - i) as f64;
        chart.draw_series(std::iter::once(Rectangle::new(
            [(0.0, y + 0.2), (*value, y + 0.8)],
            color.mix(0.8).filled(),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            format!("{name}: {value:.0}"),
            (*value + top * 0.01, y + 0.62),
            ("sans-serif", 14),
        )))?;
    }
    Ok(())
}
