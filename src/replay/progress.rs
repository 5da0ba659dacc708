//! Replay progress: a bar per topic (records read of the range, records/s, ETA) on a
//! terminal, a log line per topic every `replay.log_interval` otherwise.

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// Progress of one topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicProgress {
    /// The topic.
    pub topic: String,
    /// Records in the offset ranges of its partitions (an upper bound with `--to`).
    pub total: u64,
    /// Records read so far (a finished partition counts as fully read).
    pub scanned: u64,
    /// Records replayed so far.
    pub replayed: u64,
}

/// Receives progress while a replay runs.
pub trait ReplayProgress: Send {
    /// Called after every batch and on idle ticks.
    fn update(&mut self, topics: &[TopicProgress]);
    /// Called once at the end.
    fn finish(&mut self, topics: &[TopicProgress]);
}

/// Reports nothing (tests, `--json`).
#[derive(Debug, Default)]
pub struct Quiet;

impl ReplayProgress for Quiet {
    fn update(&mut self, _: &[TopicProgress]) {}
    fn finish(&mut self, _: &[TopicProgress]) {}
}

/// Bars on stderr if it is a terminal, else log lines every `log_every`.
pub fn for_stderr(log_every: Duration) -> Box<dyn ReplayProgress> {
    if std::io::stderr().is_terminal() {
        Box::new(Bars::default())
    } else {
        Box::new(LogLines::new(log_every))
    }
}

/// One indicatif bar per topic.
#[derive(Debug, Default)]
pub struct Bars {
    multi: Option<MultiProgress>,
    bars: Vec<ProgressBar>,
}

impl Bars {
    fn bars_for(&mut self, topics: &[TopicProgress]) -> &[ProgressBar] {
        if self.bars.len() != topics.len() {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{prefix:>24} {bar:30} {pos}/{len} records  {rate} records/s  eta {eta}  {msg}",
            )
            .expect("valid template")
            .with_key(
                "rate",
                |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.0}", state.per_sec());
                },
            );
            self.bars = topics
                .iter()
                .map(|t| {
                    let bar = multi.add(ProgressBar::new(t.total));
                    bar.set_style(style.clone());
                    bar.set_prefix(t.topic.clone());
                    bar
                })
                .collect();
            self.multi = Some(multi);
        }
        &self.bars
    }
}

impl ReplayProgress for Bars {
    fn update(&mut self, topics: &[TopicProgress]) {
        for (bar, topic) in self.bars_for(topics).iter().zip(topics) {
            bar.set_length(topic.total);
            bar.set_position(topic.scanned.min(topic.total));
            bar.set_message(format!("replayed {}", topic.replayed));
        }
    }

    fn finish(&mut self, topics: &[TopicProgress]) {
        self.update(topics);
        for bar in &self.bars {
            bar.finish();
        }
    }
}

/// A `tracing` line per topic every `every`.
#[derive(Debug)]
pub struct LogLines {
    every: Duration,
    started: Instant,
    last: Option<Instant>,
}

impl LogLines {
    /// Logs at most once per `every`.
    pub fn new(every: Duration) -> LogLines {
        LogLines {
            every,
            started: Instant::now(),
            last: None,
        }
    }

    fn log(&self, topics: &[TopicProgress]) {
        let elapsed = self.started.elapsed();
        for topic in topics {
            let rate = rate(topic.scanned, elapsed);
            let eta = eta(topic.total, topic.scanned, elapsed).map(|d| d.as_secs());
            tracing::info!(
                topic = %topic.topic,
                read = topic.scanned,
                total = topic.total,
                replayed = topic.replayed,
                records_per_s = rate.round() as u64,
                eta_s = eta,
                "replay progress"
            );
        }
    }
}

impl ReplayProgress for LogLines {
    fn update(&mut self, topics: &[TopicProgress]) {
        let now = Instant::now();
        if self.last.is_none_or(|last| now - last >= self.every) {
            self.last = Some(now);
            self.log(topics);
        }
    }

    fn finish(&mut self, topics: &[TopicProgress]) {
        self.log(topics);
    }
}

/// Records per second.
pub fn rate(done: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        done as f64 / seconds
    } else {
        0.0
    }
}

/// Time left at the rate so far; `None` before anything is done.
pub fn eta(total: u64, done: u64, elapsed: Duration) -> Option<Duration> {
    let rate = rate(done, elapsed);
    (rate > 0.0).then(|| Duration::from_secs_f64(total.saturating_sub(done) as f64 / rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_follows_the_rate_so_far() {
        let ten = Duration::from_secs(10);
        assert_eq!(eta(1000, 0, ten), None);
        assert_eq!(eta(1000, 250, ten), Some(Duration::from_secs(30)));
        assert_eq!(eta(1000, 1000, ten), Some(Duration::ZERO));
        assert_eq!(eta(1000, 1200, ten), Some(Duration::ZERO));
        assert_eq!(rate(50, Duration::ZERO), 0.0);
        assert_eq!(rate(50, ten), 5.0);
    }

    #[test]
    fn log_lines_are_rate_limited() {
        let mut lines = LogLines::new(Duration::from_secs(3600));
        lines.update(&[]);
        let first = lines.last;
        assert!(first.is_some());
        lines.update(&[]);
        assert_eq!(
            lines.last, first,
            "the second update within the interval is not logged"
        );
    }
}
