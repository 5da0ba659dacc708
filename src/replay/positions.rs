//! Where a replay starts and stops, without I/O: each partition's start and end offsets from
//! what the broker answered, and record by record whether an event is inside the event-time
//! range of the [`TimeWindow`].

use std::fmt;

use super::bounds::{StartBound, TimeWindow};

/// What the broker answered to `offsets_for_times` for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeAnswer {
    /// An offset.
    Offset(i64),
    /// No offset (`-1` / end: Kafka's "no record at or after that time").
    NotFound,
    /// The lookup failed.
    Failed(String),
}

/// How a partition's start offset was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartReason {
    /// `offsets_for_times(from - max_lateness)`.
    ByTime,
    /// The broker could not answer by time: earliest offset, events before `from` skipped.
    TimeFallback(String),
    /// Given on the command line (clamped to the retained range).
    Given,
    /// `--from earliest`.
    Earliest,
}

impl fmt::Display for StartReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartReason::ByTime => f.write_str("by time"),
            StartReason::TimeFallback(why) => write!(f, "earliest ({why})"),
            StartReason::Given => f.write_str("given"),
            StartReason::Earliest => f.write_str("earliest"),
        }
    }
}

/// What ends a partition's offset range (the event-time end bound is applied while reading).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The high watermark captured at start.
    HighWatermark,
    /// The live consumer group's committed offset (replays into the live namespace never run
    /// ahead of the live worker).
    LivePosition,
    /// Replaying into the live namespace, and the live group has committed nothing here.
    LiveNotStarted,
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EndReason::HighWatermark => "high watermark",
            EndReason::LivePosition => "live group's committed offset",
            EndReason::LiveNotStarted => "live group has no committed offset",
        })
    }
}

/// The start offset of a partition with retained offsets `[low, high)`; `None` if the
/// partition is not replayed (not listed in an offset `--from`). `answer` is the broker's
/// `offsets_for_times` answer for a time bound.
///
/// An answer outside `[low, high)` is not one Apache Kafka gives for a retained record (it
/// answers `-1` when no record is at or after the time), so it is treated like no answer: the
/// replay reads from `low` and skips by event time. That is always correct, only slower.
pub fn plan_start(
    from: &StartBound,
    topic: &str,
    partition: i32,
    low: i64,
    high: i64,
    answer: Option<&TimeAnswer>,
) -> Option<(i64, StartReason)> {
    match from {
        StartBound::Earliest => Some((low, StartReason::Earliest)),
        StartBound::Offsets(_) => from
            .given_offset(topic, partition)
            .map(|offset| (offset.clamp(low, high.max(low)), StartReason::Given)),
        StartBound::Time(_) => Some(match answer {
            Some(TimeAnswer::Offset(offset)) if (low..high).contains(offset) => {
                (*offset, StartReason::ByTime)
            }
            Some(TimeAnswer::Offset(offset)) => (
                low,
                StartReason::TimeFallback(format!(
                    "broker answered offset {offset}, outside [{low}, {high})"
                )),
            ),
            Some(TimeAnswer::NotFound) => (
                low,
                StartReason::TimeFallback("broker answered no offset".to_owned()),
            ),
            Some(TimeAnswer::Failed(error)) => (
                low,
                StartReason::TimeFallback(format!("lookup failed: {error}")),
            ),
            None => (low, StartReason::TimeFallback("not asked".to_owned())),
        }),
    }
}

/// The end offset (exclusive) of a partition: the high watermark at start, or — replaying into
/// the live namespace — no further than the live group's committed offset, so the replay never
/// applies an event the live worker has not reached (its apply-once marks would then make the
/// live worker skip that entity's earlier events). `live` is `None` for another namespace,
/// `Some(None)` when the live group has committed nothing for the partition.
pub fn plan_end(start: i64, high: i64, live: Option<Option<i64>>) -> (i64, EndReason) {
    match live {
        None => (high.max(start), EndReason::HighWatermark),
        Some(None) => (start, EndReason::LiveNotStarted),
        Some(Some(committed)) if committed < high => {
            (committed.max(start), EndReason::LivePosition)
        }
        Some(Some(_)) => (high.max(start), EndReason::HighWatermark),
    }
}

/// What to do with one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Inside the range: replay it.
    Replay,
    /// Before `from` (or a poison record before the range): skip it.
    Before,
    /// At or after `to`, within the lateness allowance (or a poison record after the range):
    /// skip it and keep reading.
    After,
    /// Later than `to + lateness`: skip it and finish the partition.
    Stop,
}

/// Where a partition's reading is relative to the range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    Before,
    Inside,
    After,
}

/// Decides, record by record in offset order, what one partition replays.
///
/// A poison record has no event time; it is replayed (and so dead-lettered, like on the live
/// path) when it sits inside the range: after an event of the range and before any event at
/// or after `to`.
#[derive(Debug, Clone)]
pub struct Cursor {
    window: TimeWindow,
    position: Position,
}

impl Cursor {
    /// A cursor at the start offset of a partition.
    pub fn new(window: TimeWindow) -> Cursor {
        let position = if window.from_ms.is_none() {
            Position::Inside
        } else {
            Position::Before
        };
        Cursor { window, position }
    }

    /// An event with `event_time_ms`.
    pub fn event(&mut self, event_time_ms: i64) -> Decision {
        let window = &self.window;
        if let Some(to) = window.to_ms
            && event_time_ms >= to
        {
            self.position = Position::After;
            return if event_time_ms > to.saturating_add(window.lateness_ms) {
                Decision::Stop
            } else {
                Decision::After
            };
        }
        if window.from_ms.is_some_and(|from| event_time_ms < from) {
            // A straggler inside the range does not move the position.
            return Decision::Before;
        }
        self.position = Position::Inside;
        Decision::Replay
    }

    /// A record without an event time (poison).
    pub fn poison(&self) -> Decision {
        match self.position {
            Position::Before => Decision::Before,
            Position::Inside => Decision::Replay,
            Position::After => Decision::After,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::bounds::EventTime;
    use super::*;

    const T0_MS: i64 = 1_714_564_800_000;

    #[test]
    fn start_by_time_uses_a_kafka_answer_and_falls_back_to_earliest_otherwise() {
        let from = StartBound::Time(EventTime(T0_MS));
        let start = |answer: Option<&TimeAnswer>| plan_start(&from, "t", 0, 10, 100, answer);
        // Apache Kafka: the first offset whose timestamp is at or after the time.
        assert_eq!(
            start(Some(&TimeAnswer::Offset(42))),
            Some((42, StartReason::ByTime))
        );
        assert_eq!(
            start(Some(&TimeAnswer::Offset(10))),
            Some((10, StartReason::ByTime))
        );
        // librdkafka's mock answers -1 or the end offset; tansu answers 0 (below the retained
        // range here); an error; no answer at all: all start at the earliest retained offset.
        for answer in [
            TimeAnswer::NotFound,
            TimeAnswer::Offset(100),
            TimeAnswer::Offset(0),
            TimeAnswer::Failed("timed out".into()),
        ] {
            let (offset, reason) = start(Some(&answer)).unwrap();
            assert_eq!(offset, 10, "{answer:?}");
            assert!(matches!(reason, StartReason::TimeFallback(_)), "{answer:?}");
        }
        assert_eq!(start(None).unwrap().0, 10);
    }

    #[test]
    fn start_by_offset_is_clamped_to_the_retained_range_and_unlisted_partitions_are_skipped() {
        let from: StartBound = "0:5,1:50,2:500".parse().unwrap();
        assert_eq!(
            plan_start(&from, "t", 0, 10, 100, None),
            Some((10, StartReason::Given))
        );
        assert_eq!(
            plan_start(&from, "t", 1, 10, 100, None),
            Some((50, StartReason::Given))
        );
        assert_eq!(
            plan_start(&from, "t", 2, 10, 100, None),
            Some((100, StartReason::Given))
        );
        assert_eq!(plan_start(&from, "t", 3, 10, 100, None), None);
        assert_eq!(
            plan_start(&StartBound::Earliest, "t", 3, 10, 100, None),
            Some((10, StartReason::Earliest))
        );
    }

    #[test]
    fn the_live_namespace_never_runs_ahead_of_the_live_group() {
        assert_eq!(plan_end(5, 100, None), (100, EndReason::HighWatermark));
        assert_eq!(
            plan_end(5, 100, Some(Some(60))),
            (60, EndReason::LivePosition)
        );
        assert_eq!(
            plan_end(5, 100, Some(Some(100))),
            (100, EndReason::HighWatermark)
        );
        assert_eq!(
            plan_end(70, 100, Some(Some(60))),
            (70, EndReason::LivePosition)
        );
        assert_eq!(plan_end(5, 100, Some(None)), (5, EndReason::LiveNotStarted));
        // A start past the end (e.g. clamped to the high watermark) is an empty range.
        assert_eq!(plan_end(100, 90, None), (100, EndReason::HighWatermark));
    }

    #[test]
    fn the_cursor_selects_the_half_open_range_and_stops_past_the_lateness() {
        let window = TimeWindow {
            from_ms: Some(100),
            to_ms: Some(200),
            lateness_ms: 50,
        };
        let mut cursor = Cursor::new(window);
        assert_eq!(cursor.poison(), Decision::Before);
        assert_eq!(cursor.event(99), Decision::Before);
        assert_eq!(cursor.event(100), Decision::Replay);
        assert_eq!(cursor.poison(), Decision::Replay);
        // A straggler from before the range is skipped, and does not leave the range.
        assert_eq!(cursor.event(20), Decision::Before);
        assert_eq!(cursor.poison(), Decision::Replay);
        assert_eq!(cursor.event(199), Decision::Replay);
        assert_eq!(cursor.event(200), Decision::After);
        assert_eq!(cursor.poison(), Decision::After);
        // A late event of the range, after one past `to`, is still replayed.
        assert_eq!(cursor.event(150), Decision::Replay);
        assert_eq!(cursor.event(250), Decision::After);
        assert_eq!(cursor.event(251), Decision::Stop);
    }

    #[test]
    fn without_time_bounds_everything_is_in_range() {
        let window = TimeWindow::new(&StartBound::Earliest, None, 0).unwrap();
        let mut cursor = Cursor::new(window);
        assert_eq!(cursor.poison(), Decision::Replay);
        assert_eq!(cursor.event(i64::MIN), Decision::Replay);
        assert_eq!(cursor.event(i64::MAX), Decision::Replay);
    }
}
