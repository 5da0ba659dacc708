//! The bounds of a replay, without I/O: parsing `--from` / `--to` into a [`StartBound`] and a
//! [`TimeWindow`]. Applying them to partitions and records is [`super::positions`].
//!
//! `--from` / `--to` bound **event time** (the `event_time` field of the payload), as a
//! half-open range `[from, to)`: consecutive ranges tile without overlap.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};

/// `--from` or `--to` could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoundError {
    /// Not an RFC 3339 time.
    #[error("`{0}` is not an RFC 3339 time (e.g. 2024-05-01T12:00:00Z)")]
    Time(String),
    /// Not `earliest`, an RFC 3339 time, or `[TOPIC/]PARTITION:OFFSET` items.
    #[error(
        "`{0}` is neither an RFC 3339 time, `earliest`, nor a comma-separated list of \
         [TOPIC/]PARTITION:OFFSET"
    )]
    From(String),
    /// The same partition was given twice.
    #[error("partition {0} is given more than once in --from")]
    Duplicate(String),
    /// `--to` is not after `--from`.
    #[error("--to ({to}) must be after --from ({from})")]
    Empty {
        /// `--from`.
        from: String,
        /// `--to`.
        to: String,
    },
}

/// An event time given on the command line: Unix milliseconds, parsed from RFC 3339.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventTime(pub i64);

impl FromStr for EventTime {
    type Err = BoundError;

    fn from_str(text: &str) -> Result<EventTime, BoundError> {
        DateTime::parse_from_rfc3339(text.trim())
            .map(|t| EventTime(t.timestamp_millis()))
            .map_err(|_| BoundError::Time(text.to_owned()))
    }
}

impl fmt::Display for EventTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match DateTime::<Utc>::from_timestamp_millis(self.0) {
            Some(t) => f.write_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true)),
            None => write!(f, "{}ms", self.0),
        }
    }
}

/// One `[TOPIC/]PARTITION:OFFSET` item of `--from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetSpec {
    /// The topic, or `None` for every replayed topic.
    pub topic: Option<String>,
    /// The partition.
    pub partition: i32,
    /// The first offset replayed.
    pub offset: i64,
}

impl FromStr for OffsetSpec {
    type Err = ();

    fn from_str(text: &str) -> Result<OffsetSpec, ()> {
        let (topic, rest) = match text.rsplit_once('/') {
            Some((topic, rest)) if !topic.is_empty() => (Some(topic.to_owned()), rest),
            Some(_) => return Err(()),
            None => (None, text),
        };
        let (partition, offset) = rest.split_once(':').ok_or(())?;
        let partition: i32 = partition.trim().parse().map_err(|_| ())?;
        let offset: i64 = offset.trim().parse().map_err(|_| ())?;
        if partition < 0 || offset < 0 {
            return Err(());
        }
        Ok(OffsetSpec {
            topic,
            partition,
            offset,
        })
    }
}

/// Where a replay starts (`--from`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartBound {
    /// Events at or after this event time. Each partition is sought with
    /// `offsets_for_times(from - max_lateness)`, or read from its earliest offset where the
    /// broker cannot answer; events before `from` are skipped.
    Time(EventTime),
    /// Exactly these partitions, from these offsets (no event-time lower bound). Partitions not
    /// listed are not replayed.
    Offsets(Vec<OffsetSpec>),
    /// Every partition from its earliest retained offset (no event-time lower bound).
    Earliest,
}

impl FromStr for StartBound {
    type Err = BoundError;

    fn from_str(text: &str) -> Result<StartBound, BoundError> {
        let trimmed = text.trim();
        if trimmed.eq_ignore_ascii_case("earliest") {
            return Ok(StartBound::Earliest);
        }
        if let Ok(time) = trimmed.parse::<EventTime>() {
            return Ok(StartBound::Time(time));
        }
        let mut specs: Vec<OffsetSpec> = Vec::new();
        for item in trimmed.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let spec: OffsetSpec = item
                .parse()
                .map_err(|()| BoundError::From(text.to_owned()))?;
            if specs
                .iter()
                .any(|s| s.topic == spec.topic && s.partition == spec.partition)
            {
                return Err(BoundError::Duplicate(item.to_owned()));
            }
            specs.push(spec);
        }
        if specs.is_empty() {
            return Err(BoundError::From(text.to_owned()));
        }
        Ok(StartBound::Offsets(specs))
    }
}

impl StartBound {
    /// The event-time lower bound, if any.
    pub fn from_time(&self) -> Option<EventTime> {
        match self {
            StartBound::Time(time) => Some(*time),
            _ => None,
        }
    }

    /// The offset given for `topic`/`partition` (a topic-specific item wins over one for every
    /// topic); `None` if the partition is not listed (or the bound is not by offsets).
    pub fn given_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        let StartBound::Offsets(specs) = self else {
            return None;
        };
        let exact = specs
            .iter()
            .find(|s| s.partition == partition && s.topic.as_deref() == Some(topic));
        let any = specs
            .iter()
            .find(|s| s.partition == partition && s.topic.is_none());
        exact.or(any).map(|s| s.offset)
    }
}

/// The event-time window of a replay: `[from, to)`, and how far out of order events may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    /// Lower bound (inclusive), Unix ms.
    pub from_ms: Option<i64>,
    /// Upper bound (exclusive), Unix ms.
    pub to_ms: Option<i64>,
    /// A partition is finished once an event is later than `to + lateness_ms`.
    pub lateness_ms: i64,
}

impl TimeWindow {
    /// The window of `from` and `to`; an error if it is empty.
    pub fn new(
        from: &StartBound,
        to: Option<EventTime>,
        lateness_ms: i64,
    ) -> Result<TimeWindow, BoundError> {
        let from_ms = from.from_time().map(|t| t.0);
        if let (Some(f), Some(t)) = (from_ms, to)
            && t.0 <= f
        {
            return Err(BoundError::Empty {
                from: EventTime(f).to_string(),
                to: t.to_string(),
            });
        }
        Ok(TimeWindow {
            from_ms,
            to_ms: to.map(|t| t.0),
            lateness_ms: lateness_ms.max(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: &str = "2024-05-01T12:00:00Z";
    const T0_MS: i64 = 1_714_564_800_000;

    #[test]
    fn from_parses_times_earliest_and_offsets() {
        assert_eq!(
            T0.parse::<StartBound>().unwrap(),
            StartBound::Time(EventTime(T0_MS))
        );
        assert_eq!(
            "2024-05-01T14:00:00+02:00".parse::<StartBound>().unwrap(),
            StartBound::Time(EventTime(T0_MS))
        );
        assert_eq!(
            "EARLIEST".parse::<StartBound>().unwrap(),
            StartBound::Earliest
        );
        let bound: StartBound = "0:120, transactions/1:7".parse().unwrap();
        assert_eq!(bound.given_offset("transactions", 0), Some(120));
        assert_eq!(bound.given_offset("fraud-verdicts", 0), Some(120));
        assert_eq!(bound.given_offset("transactions", 1), Some(7));
        assert_eq!(bound.given_offset("fraud-verdicts", 1), None);
        assert_eq!(bound.given_offset("transactions", 2), None);
        // A topic-specific item wins over one for every topic.
        let bound: StartBound = "3:1,t/3:9".parse().unwrap();
        assert_eq!(bound.given_offset("t", 3), Some(9));
        assert_eq!(bound.given_offset("u", 3), Some(1));
        assert_eq!(EventTime(T0_MS).to_string(), "2024-05-01T12:00:00.000Z");
    }

    #[test]
    fn bad_bounds_are_rejected_with_the_reason() {
        for bad in ["", "yesterday", "1:", ":5", "1:-5", "-1:5", "/1:5", "1:5,x"] {
            assert!(
                matches!(bad.parse::<StartBound>(), Err(BoundError::From(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            "1:5,1:6".parse::<StartBound>(),
            Err(BoundError::Duplicate(_))
        ));
        assert!("2024-13-01T00:00:00Z".parse::<EventTime>().is_err());
        let from = StartBound::Time(EventTime(T0_MS));
        assert!(matches!(
            TimeWindow::new(&from, Some(EventTime(T0_MS)), 0),
            Err(BoundError::Empty { .. })
        ));
        assert!(TimeWindow::new(&from, Some(EventTime(T0_MS + 1)), 0).is_ok());
    }
}
