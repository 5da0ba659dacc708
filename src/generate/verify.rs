//! Compares what Redis holds with the [`GroundTruth`](super::GroundTruth).

use std::time::{SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use redis::aio::ConnectionLike;

use super::GroundTruth;

/// A counter whose value differs from the truth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The key.
    pub key: String,
    /// What the truth says.
    pub expected: i64,
    /// What Redis holds (0 = absent).
    pub actual: i64,
}

/// How far a HyperLogLog estimate of `exact` distinct members may be off and still match:
/// three standard errors (3 × 0.81 %), at least 1.
pub fn distinct_bound(exact: i64) -> i64 {
    ((exact as f64) * 3.0 * 0.0081).ceil().max(1.0) as i64
}

/// How much later than the ground truth a blacklist entry may expire and still match (s).
/// Redis carries a key's TTL through `MIGRATE` (a slot migration, e.g. `redis-cli --cluster
/// reshard`) as a *relative* time that the target adds to its own clock when the key arrives,
/// so a migrated key expires later by the migration's latency, and `EXPIRETIME` rounds to the
/// nearest second (an expiry 500 ms later reads one second later). Entries within the slack
/// are counted in [`Verification::expiry_moved_later`], not as problems.
pub const MIGRATED_EXPIRY_SLACK_S: i64 = 2;

/// The result of a check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verification {
    /// Feature tiles checked (count and sum exactly, distinct within [`distinct_bound`]).
    pub counters: usize,
    /// Counters below the truth (lost increments), with the sum missing.
    pub lost: Vec<Mismatch>,
    /// Counters above the truth (double counting).
    pub doubled: Vec<Mismatch>,
    /// Blacklist entries checked.
    pub blacklist: usize,
    /// Blacklist problems (missing, wrong level, wrong expiry, not removed).
    pub blacklist_problems: Vec<String>,
    /// Blacklist entries expiring later than the truth by at most
    /// [`MIGRATED_EXPIRY_SLACK_S`] (moved by a slot migration).
    pub expiry_moved_later: usize,
}

impl Verification {
    /// Everything matched.
    pub fn is_exact(&self) -> bool {
        self.lost.is_empty() && self.doubled.is_empty() && self.blacklist_problems.is_empty()
    }

    /// Sum of missing increments over all counters.
    pub fn lost_increments(&self) -> i64 {
        self.lost.iter().map(|m| m.expected - m.actual).sum()
    }

    /// Sum of extra increments over all counters.
    pub fn doubled_increments(&self) -> i64 {
        self.doubled.iter().map(|m| m.actual - m.expected).sum()
    }
}

/// Reads every counter and blacklist entry of `truth` through `connection` (a cluster
/// connection; reads run 64 at a time) and compares.
pub async fn verify<C>(connection: &C, truth: &GroundTruth) -> redis::RedisResult<Verification>
where
    C: ConnectionLike + Clone + Send + 'static,
{
    let mut report = Verification::default();
    let reads = futures::stream::iter(truth.counters.iter().map(|(key, expected)| {
        let mut connection = connection.clone();
        async move {
            let (hash, tile) = key.rsplit_once(' ').unwrap_or((key.as_str(), ""));
            let actual: Option<i64> = redis::cmd("HGET")
                .arg(hash)
                .arg(tile)
                .query_async(&mut connection)
                .await?;
            Ok::<_, redis::RedisError>((key, *expected, actual.unwrap_or(0)))
        }
    }))
    .buffer_unordered(64);
    futures::pin_mut!(reads);
    while let Some(read) = reads.next().await {
        let (key, expected, actual) = read?;
        report.counters += 1;
        let mismatch = || Mismatch {
            key: key.clone(),
            expected,
            actual,
        };
        if actual < expected {
            report.lost.push(mismatch());
        } else if actual > expected {
            report.doubled.push(mismatch());
        }
    }
    for (key, expected) in &truth.distinct {
        let mut connection = connection.clone();
        let actual: i64 = redis::cmd("PFCOUNT")
            .arg(key)
            .query_async(&mut connection)
            .await?;
        report.counters += 1;
        let mismatch = Mismatch {
            key: key.clone(),
            expected: *expected,
            actual,
        };
        let bound = distinct_bound(*expected);
        if actual < expected - bound {
            report.lost.push(mismatch);
        } else if actual > expected + bound {
            report.doubled.push(mismatch);
        }
    }
    let now_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    for (key, entry) in &truth.blacklist {
        if entry.expire_at_s != 0 && entry.expire_at_s <= now_s {
            continue;
        }
        report.blacklist += 1;
        let mut connection = connection.clone();
        let value: Option<String> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut connection)
            .await?;
        let expire_at: i64 = redis::cmd("EXPIRETIME")
            .arg(key)
            .query_async(&mut connection)
            .await?;
        match value {
            None => report.blacklist_problems.push(format!("{key}: missing")),
            Some(value) => {
                if !value.contains(&format!("\"{}\"", entry.threat_level)) {
                    report
                        .blacklist_problems
                        .push(format!("{key}: expected {} in {value}", entry.threat_level));
                }
                let expected = if entry.expire_at_s == 0 {
                    -1
                } else {
                    entry.expire_at_s
                };
                let moved_by_a_migration = expected != -1
                    && expire_at > expected
                    && expire_at <= expected + MIGRATED_EXPIRY_SLACK_S;
                if moved_by_a_migration {
                    report.expiry_moved_later += 1;
                } else if expire_at != expected {
                    report.blacklist_problems.push(format!(
                        "{key}: expires at {expire_at}, expected {expected}"
                    ));
                }
            }
        }
    }
    for key in &truth.removed {
        let mut connection = connection.clone();
        let exists: i64 = redis::cmd("EXISTS")
            .arg(key)
            .query_async(&mut connection)
            .await?;
        if exists != 0 {
            report
                .blacklist_problems
                .push(format!("{key}: should have been removed"));
        }
    }
    report.lost.sort_by(|a, b| a.key.cmp(&b.key));
    report.doubled.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(report)
}
