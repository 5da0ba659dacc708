//! What the soak looks like from outside, once a second: records finished per second and the
//! consumer lag (the group's committed offsets against the source topics' high watermarks),
//! the p99 of source record → committed enrichment record (a `read_committed` tail of the
//! enrichment topic), and the workers' RSS.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// One second of the soak.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Sample {
    /// Seconds since the soak started.
    pub t_s: f64,
    /// Source records finished (committed) per second since the last answered sample; `None`
    /// when the brokers did not answer the probe in time (a broker fault).
    pub finished_per_s: Option<f64>,
    /// Source records not yet committed by the group; `None` as above.
    pub lag: Option<i64>,
    /// p99 latency (ms) of the enrichment records that became visible in this second.
    pub p99_ms: Option<u64>,
    /// The workers' RSS, summed (MiB).
    pub rss_mib: f64,
}

/// The group's committed offsets and the topics' high watermarks, summed.
pub struct LagProbe {
    consumer: BaseConsumer,
    partitions: Vec<(String, i32)>,
}

impl LagProbe {
    /// A probe of `group` on `topics` (each with `partitions` partitions).
    pub fn new(
        client: ClientConfig,
        group: &str,
        topics: &[String],
        partitions: i32,
    ) -> anyhow::Result<LagProbe> {
        // read_uncommitted: the last committed offsets, without waiting for a transaction in
        // progress (with read_committed every fetch waits for one: there always is one).
        let consumer = client
            .clone()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_uncommitted")
            .create()?;
        let partitions = topics
            .iter()
            .flat_map(|t| (0..partitions).map(move |p| (t.clone(), p)))
            .collect();
        Ok(LagProbe {
            consumer,
            partitions,
        })
    }

    /// `(committed, high watermark)` summed over the partitions; `None` if the brokers did
    /// not answer in time (a broker fault).
    pub fn read(&self) -> Option<(i64, i64)> {
        let mut list = TopicPartitionList::new();
        for (topic, partition) in &self.partitions {
            list.add_partition(topic, *partition);
        }
        let committed = self
            .consumer
            .committed_offsets(list, Duration::from_secs(2))
            .ok()?;
        let mut committed_sum = 0;
        for element in committed.elements() {
            if let Offset::Offset(offset) = element.offset() {
                committed_sum += offset;
            }
        }
        let mut high_sum = 0;
        for (topic, partition) in &self.partitions {
            let (_, high) = self
                .consumer
                .fetch_watermarks(topic, *partition, Duration::from_secs(2))
                .ok()?;
            high_sum += high;
        }
        Some((committed_sum, high_sum))
    }
}

/// Latencies of committed enrichment records, per second of the soak (a background thread).
pub struct LatencyTail {
    stop: Arc<AtomicBool>,
    seconds: Arc<Mutex<BTreeMap<u64, Histogram<u64>>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LatencyTail {
    /// Starts reading `topic` (`partitions` partitions) from the beginning, read_committed.
    pub fn start(
        client: ClientConfig,
        topic: &str,
        partitions: i32,
        started: Instant,
    ) -> anyhow::Result<LatencyTail> {
        let consumer: BaseConsumer = client
            .clone()
            .set("group.id", format!("soak-latency-{}", std::process::id()))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .create()?;
        let mut list = TopicPartitionList::new();
        for partition in 0..partitions {
            list.add_partition_offset(topic, partition, Offset::Beginning)?;
        }
        consumer.assign(&list)?;
        let stop = Arc::new(AtomicBool::new(false));
        let seconds: Arc<Mutex<BTreeMap<u64, Histogram<u64>>>> = Arc::default();
        let thread = {
            let (stop, seconds) = (Arc::clone(&stop), Arc::clone(&seconds));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Some(Ok(record)) = consumer.poll(Duration::from_millis(200)) else {
                        continue;
                    };
                    let Some(sent_ms) = record.timestamp().to_millis() else {
                        continue;
                    };
                    let now_ms = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_millis() as i64;
                    let second = started.elapsed().as_secs();
                    let mut seconds = seconds.lock().unwrap_or_else(|e| e.into_inner());
                    let histogram = seconds
                        .entry(second)
                        .or_insert_with(|| Histogram::new(3).expect("histogram"));
                    let _ = histogram.record((now_ms - sent_ms).max(0) as u64);
                }
            })
        };
        Ok(LatencyTail {
            stop,
            seconds,
            thread: Some(thread),
        })
    }

    /// The p99 (ms) of every second, for the timeline.
    pub fn per_second(&self) -> std::collections::BTreeMap<u64, u64> {
        let seconds = self.seconds.lock().unwrap_or_else(|e| e.into_inner());
        seconds
            .iter()
            .map(|(second, h)| (*second, h.value_at_quantile(0.99)))
            .collect()
    }

    /// The p99 and the maximum (ms) over every record seen.
    pub fn overall(&self) -> (Option<u64>, Option<u64>) {
        let seconds = self.seconds.lock().unwrap_or_else(|e| e.into_inner());
        let mut all = Histogram::<u64>::new(3).expect("histogram");
        for histogram in seconds.values() {
            let _ = all.add(histogram);
        }
        if all.is_empty() {
            (None, None)
        } else {
            (Some(all.value_at_quantile(0.99)), Some(all.max()))
        }
    }
}

impl Drop for LatencyTail {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
