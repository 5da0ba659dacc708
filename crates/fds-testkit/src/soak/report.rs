//! The soak's report: `soak.json` (everything: seed, faults, ledger, memory, the timeline) and
//! `soak.png`, the timeline drawn — records finished per second, consumer lag and p99, with
//! every fault a band over the time it lasted.

use std::path::Path;

use anyhow::Context as _;
use plotters::prelude::*;

use super::SoakReport;
use super::nemesis::FaultKind;
use crate::chart::register_font;

/// Writes `soak.json` and `soak.png` into `dir`.
pub fn write(report: &SoakReport, dir: &Path) -> anyhow::Result<()> {
    let json = dir.join("soak.json");
    std::fs::write(&json, serde_json::to_vec_pretty(report)?)
        .with_context(|| format!("writing {}", json.display()))?;
    let png = dir.join("soak.png");
    draw(report, &png).with_context(|| format!("drawing {}", png.display()))?;
    Ok(())
}

fn color(kind: FaultKind) -> RGBColor {
    match kind {
        FaultKind::RedisMasterKill
        | FaultKind::RedisMasterPause
        | FaultKind::RedisManualFailover
        | FaultKind::RedisSlotMigration
        | FaultKind::RedisPartition
        | FaultKind::RedisMemoryFull => RGBColor(220, 60, 60),
        FaultKind::BrokerKill | FaultKind::BrokerPause | FaultKind::BrokerRestart => {
            RGBColor(60, 110, 220)
        }
        FaultKind::RegistryPause => RGBColor(150, 80, 200),
        _ => RGBColor(60, 170, 90),
    }
}

/// What one panel of the timeline shows of a sample.
type SampleValue = Box<dyn Fn(&super::timeline::Sample) -> Option<f64>>;

fn draw(report: &SoakReport, path: &Path) -> anyhow::Result<()> {
    register_font()?;
    let root = BitMapBackend::new(path, (1400, 900)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = format!(
        "fds-worker soak: seed {}, {:.0} s at {}/s, {} faults — {}",
        report.seed,
        report.duration_s,
        report.rate,
        report.faults.len(),
        if report.violations.is_empty() {
            "every promise kept".to_owned()
        } else {
            format!("{} violations", report.violations.len())
        }
    );
    let root = root.titled(&title, ("sans-serif", 24))?;
    let panels = root.split_evenly((3, 1));
    let end_s = report
        .timeline
        .last()
        .map_or(report.duration_s, |s| s.t_s)
        .max(1.0);
    let series: [(&str, SampleValue); 3] = [
        ("records finished / s", Box::new(|s| s.finished_per_s)),
        (
            "consumer lag (records)",
            Box::new(|s| s.lag.map(|l| l as f64)),
        ),
        (
            "p99 latency (ms), source → committed enrichment",
            Box::new(|s| s.p99_ms.map(|v| v as f64)),
        ),
    ];
    for (panel, (label, value)) in panels.iter().zip(series.iter()) {
        let points: Vec<(f64, f64)> = report
            .timeline
            .iter()
            .filter_map(|s| value(s).map(|v| (s.t_s, v)))
            .collect();
        let top = points.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
        let mut chart = ChartBuilder::on(panel)
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .caption(*label, ("sans-serif", 18))
            .build_cartesian_2d(0.0..end_s, 0.0..top)?;
        chart
            .configure_mesh()
            .x_desc("s")
            .label_style(("sans-serif", 13))
            .draw()?;
        for fault in &report.faults {
            let healed = fault.healed_s.unwrap_or(end_s).max(fault.at_s + 0.5);
            let c = color(fault.kind);
            chart.draw_series(std::iter::once(Rectangle::new(
                [(fault.at_s, 0.0), (healed, top)],
                c.mix(0.15).filled(),
            )))?;
        }
        chart.draw_series(LineSeries::new(points, BLACK.stroke_width(2)))?;
    }
    // The legend of the bands, in the top panel's corner.
    let legend = [
        ("Redis fault", color(FaultKind::RedisMasterKill)),
        ("broker fault", color(FaultKind::BrokerKill)),
        ("worker fault", color(FaultKind::WorkerKill)),
        ("registry frozen", color(FaultKind::RegistryPause)),
    ];
    for (i, (name, c)) in legend.iter().enumerate() {
        let x = 1150;
        let y = 40 + 22 * i as i32;
        root.draw(&Rectangle::new(
            [(x, y), (x + 16, y + 14)],
            c.mix(0.5).filled(),
        ))?;
        root.draw(&Text::new(*name, (x + 22, y), ("sans-serif", 14)))?;
    }
    root.present()?;
    Ok(())
}

/// The report in a few lines, for the terminal.
pub fn summary(report: &SoakReport) -> String {
    let ledger = &report.ledger;
    let mut kinds: std::collections::BTreeMap<String, usize> = Default::default();
    for fault in &report.faults {
        *kinds.entry(format!("{:?}", fault.kind)).or_default() += 1;
    }
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
    let mut out = format!(
        "soak seed {}: {:.0} s at {}/s, {} events, {} faults ({})\n\
         drain {:.1} s after the traffic; p99 {} ms, max {} ms (source → committed enrichment)\n\
         ledger: {} transactions, {} enriched once, {} more than once, {} missing, {} dead \
         letters; {} counters checked, {} lost and {} doubled increments, {} blacklist problems ({} expiries moved \
         later by a slot migration)",
        report.seed,
        report.duration_s,
        report.rate,
        report.events,
        report.faults.len(),
        kinds.join(", "),
        report.drain_s,
        report.p99_ms.map_or("-".into(), |v| v.to_string()),
        report.max_latency_ms.map_or("-".into(), |v| v.to_string()),
        ledger.transactions,
        ledger.enriched_once,
        ledger.enriched_more_than_once,
        ledger.missing,
        ledger.dead_letters,
        ledger.counters_checked,
        ledger.lost_increments,
        ledger.doubled_increments,
        ledger.blacklist_problems.len(),
        ledger.expiry_moved_later,
    );
    for fault in &report.unavailable {
        out.push_str(&format!("\nnot injected in this run: {fault}"));
    }
    if report.violations.is_empty() {
        out.push_str("\nevery promise kept");
    }
    for violation in &report.violations {
        out.push_str(&format!("\nVIOLATION: {violation}"));
    }
    for example in &ledger.examples {
        out.push_str(&format!("\n  e.g. {example}"));
    }
    out
}
