//! When each enrichment record became visible downstream: a `read_committed` consumer follows
//! the enrichment topic on its own thread during a latency run and notes each record's arrival.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use rdkafka::ClientConfig;
use rdkafka::consumer::BaseConsumer;

use super::process::WorkerProcess;
use fds_worker::codec::Codec;
use fds_worker::source::range::{self, BlockingRangeReader, End, Read, Start};

/// One enrichment record, as it arrived.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    /// Its source record's partition.
    pub source_partition: i32,
    /// Its source record's offset.
    pub source_offset: i64,
    /// Its own create time (Unix ms), set by the worker's producer.
    pub created_ms: i64,
    /// When the reader received it (Unix ms, this machine's clock, as the create times).
    pub received_ms: i64,
}

/// The reader thread and what it has seen so far.
pub struct Arrivals {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Arrival>>>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Arrivals {
    /// Follows every partition of `topic` from its start. `config` should be
    /// `read_committed`; its `fetch.wait.max.ms` is set to 5 ms so that an idle fetch adds at
    /// most that to a record's arrival.
    pub fn start(config: ClientConfig, topic: &str) -> Arrivals {
        Arrivals::follow_topic(config, topic, Follow::Enrichment)
    }

    /// Follows the source records of `topic` themselves (each arrival names its own partition
    /// and offset): when a record became visible to a `read_committed` consumer, with no
    /// worker in between — the floor a worker's latency is measured against.
    pub fn start_source(config: ClientConfig, topic: &str) -> Arrivals {
        Arrivals::follow_topic(config, topic, Follow::Source)
    }

    fn follow_topic(mut config: ClientConfig, topic: &str, what: Follow) -> Arrivals {
        config.set("fetch.wait.max.ms", "5");
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, seen, topic) = (Arc::clone(&stop), Arc::clone(&seen), topic.to_owned());
            std::thread::spawn(move || follow(&config, &topic, what, &stop, &seen))
        };
        Arrivals {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    fn count(&self) -> usize {
        self.seen.lock().map(|seen| seen.len()).unwrap_or(0)
    }

    /// Waits until `records` have arrived; fails if the worker exits, the reader fails or
    /// `timeout` passes.
    pub async fn wait_for(
        &self,
        records: usize,
        worker: &mut WorkerProcess,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let count = self.count();
            if count >= records {
                return Ok(());
            }
            worker.check_running()?;
            if self.thread.as_ref().is_some_and(JoinHandle::is_finished) {
                bail!("the enrichment reader stopped after {count} of {records} records");
            }
            if Instant::now() > deadline {
                bail!("only {count} of {records} transactions enriched after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the reader; every arrival, in the order received.
    pub fn stop(mut self) -> anyhow::Result<Vec<Arrival>> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread
                .join()
                .map_err(|_| anyhow::anyhow!("the enrichment reader panicked"))??;
        }
        Ok(std::mem::take(
            &mut *self.seen.lock().unwrap_or_else(|e| e.into_inner()),
        ))
    }
}

impl Drop for Arrivals {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What an arrival stands for.
#[derive(Debug, Clone, Copy)]
enum Follow {
    /// Enrichment records, each for its source record.
    Enrichment,
    /// The source records themselves.
    Source,
}

fn follow(
    config: &ClientConfig,
    topic: &str,
    what: Follow,
    stop: &AtomicBool,
    seen: &Mutex<Vec<Arrival>>,
) -> anyhow::Result<()> {
    let consumer: BaseConsumer = config.create().context("the arrivals reader")?;
    let spans = range::whole_topic(&consumer, topic, Start::Earliest, End::Never)?;
    let mut reader = BlockingRangeReader::open(consumer, &spans)?;
    let codec = Codec::builtin();
    while !stop.load(Ordering::Relaxed) {
        let Some(step) = reader.next_step() else {
            break;
        };
        if let Read::Record(record) = step.with_context(|| format!("reading {topic}"))? {
            let received_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            let (source_partition, source_offset) = match what {
                Follow::Enrichment => {
                    let enrichment =
                        codec.decode_enrichment(record.payload.as_deref().unwrap_or(&[]))?;
                    (enrichment.source_partition, enrichment.source_offset)
                }
                Follow::Source => (record.partition, record.offset),
            };
            let arrival = Arrival {
                source_partition,
                source_offset,
                created_ms: record.timestamp_ms.unwrap_or(0),
                received_ms,
            };
            seen.lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .push(arrival);
        }
    }
    Ok(())
}
