//! Writer schemas from the Schema Registry, for the live loop: a record whose schema id the
//! codec does not know is **held**, with every later record of its partition (Redis applies
//! each entity's records once, keeping the highest offset per partition, so a partition's
//! order must hold), until the registry has answered for that id. The other partitions go on.
//!
//! - The id's schema arrives: it is added to the codec and the partition's held records go on,
//!   in order, up to the next record with an id that must be asked for.
//! - The registry answers for good that it cannot supply it (404, another refusal, or a schema
//!   that does not resolve against the reader): the id is noted in [`WriterMisses`] and its
//!   records go on, to be dead-lettered by the decode stage with that reason.
//! - The registry is unreachable, answers 5xx/408/429, or refuses the credentials: asked again
//!   with backoff (`retry_backoff` doubling up to `retry_backoff_max`, with jitter), for as long as it
//!   takes, never a dead letter. Meanwhile `fds_schema_registry_unavailable` counts the waiting
//!   ids (and `/readyz` answers not ready).
//!
//! A held partition is paused, so that only what was already fetched waits in memory. Held
//! records of a revoked partition are dropped (its next owner reads them again). Records are
//! marked received (watermarks) only when they go on, so an offset is never stored past a
//! held record.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::decode::Decoder;
use crate::codec::registry::{RegistryError, RegistryErrorKind, SchemaRegistry};
use crate::codec::wire;
use crate::metrics::{Metrics, OutcomeLabel};
use crate::retry::Backoff;
use crate::source::{Epoch, Partition, SourceMessage};

/// The answer for one id, from its fetch task.
pub(super) struct Fetched {
    id: u32,
    result: Result<Arc<str>, RegistryError>,
}

/// The held partitions and the ids being asked for.
pub(super) struct Resolver {
    registry: Arc<SchemaRegistry>,
    backoff: Duration,
    backoff_max: Duration,
    metrics: Metrics,
    held: HashMap<Partition, VecDeque<(SourceMessage, Epoch)>>,
    fetching: HashMap<u32, AbortHandle>,
    tx: mpsc::UnboundedSender<Fetched>,
    rx: mpsc::UnboundedReceiver<Fetched>,
}

/// What an answer let go on: records in partition order, and the partitions no longer held.
#[derive(Default)]
pub(super) struct Released {
    pub records: Vec<(SourceMessage, Epoch)>,
    pub unheld: Vec<Partition>,
}

impl Resolver {
    /// A resolver over `registry`, retrying with the configured backoff.
    pub(super) fn new(
        registry: Arc<SchemaRegistry>,
        backoff: Duration,
        backoff_max: Duration,
        metrics: Metrics,
    ) -> Resolver {
        let (tx, rx) = mpsc::unbounded_channel();
        Resolver {
            registry,
            backoff,
            backoff_max: backoff_max.max(backoff),
            metrics,
            held: HashMap::new(),
            fetching: HashMap::new(),
            tx,
            rx,
        }
    }

    /// Whether `partition` is held.
    pub(super) fn is_holding(&self, partition: &Partition) -> bool {
        self.held.contains_key(partition)
    }

    /// The held partitions.
    pub(super) fn held_partitions(&self) -> Vec<Partition> {
        self.held.keys().cloned().collect()
    }

    /// Whether `message` may go on now; if not it is held (and its id asked for). A record of
    /// a held partition is always held, behind the ones before it.
    pub(super) fn admit(
        &mut self,
        decoder: &Decoder,
        message: SourceMessage,
        epoch: Epoch,
    ) -> Option<(SourceMessage, Epoch)> {
        let partition = (message.topic.clone(), message.partition);
        if let Some(queue) = self.held.get_mut(&partition) {
            queue.push_back((message, epoch));
            return None;
        }
        match self.needs(decoder, &message) {
            None => Some((message, epoch)),
            Some(id) => {
                self.fetch(id);
                self.held
                    .entry(partition)
                    .or_default()
                    .push_back((message, epoch));
                None
            }
        }
    }

    /// Waits for the next answer (never, while nothing is asked for).
    pub(super) async fn next(&mut self) -> Fetched {
        match self.rx.recv().await {
            Some(fetched) => fetched,
            // The resolver holds a sender: never closed.
            None => std::future::pending().await,
        }
    }

    /// Books an answer and lets go on what it resolved.
    pub(super) fn answered(
        &mut self,
        decoder: &Decoder,
        Fetched { id, result }: Fetched,
    ) -> Released {
        self.fetching.remove(&id);
        book(decoder, id, result);
        let mut released = Released::default();
        let partitions: Vec<Partition> = self.held.keys().cloned().collect();
        for partition in partitions {
            let Some(mut queue) = self.held.remove(&partition) else {
                continue;
            };
            while let Some((message, _)) = queue.front() {
                if let Some(next) = self.needs(decoder, message) {
                    self.fetch(next);
                    break;
                }
                released.records.extend(queue.pop_front());
            }
            if queue.is_empty() {
                released.unheld.push(partition);
            } else {
                self.held.insert(partition, queue);
            }
        }
        released
    }

    /// Drops the held records whose partition epoch `owned` refuses (revoked partitions).
    pub(super) fn retain(&mut self, owned: impl Fn(&Partition, Epoch) -> bool) {
        self.held.retain(|partition, queue| {
            queue.retain(|(_, epoch)| owned(partition, *epoch));
            !queue.is_empty()
        });
    }

    /// The id `message` needs asked for: framed on a source topic, unknown to the codec, not
    /// known to be missing. An id the registry client has cached is added to the codec here.
    fn needs(&self, decoder: &Decoder, message: &SourceMessage) -> Option<u32> {
        needs(decoder, &self.registry, message)
    }

    /// Starts asking for `id` unless that is under way.
    fn fetch(&mut self, id: u32) {
        if self.fetching.contains_key(&id) {
            return;
        }
        let task = tokio::spawn(fetch(
            Arc::clone(&self.registry),
            id,
            self.backoff,
            self.backoff_max,
            self.metrics.clone(),
            self.tx.clone(),
        ));
        self.fetching.insert(id, task.abort_handle());
    }
}

/// The id `message` needs asked for (see [`Resolver::needs`]).
fn needs(decoder: &Decoder, registry: &SchemaRegistry, message: &SourceMessage) -> Option<u32> {
    let topic: &str = &message.topic;
    if topic != decoder.transactions_topic && !decoder.verdict_topics.iter().any(|t| t == topic) {
        return None;
    }
    let (id, _) = wire::split_frame(message.payload.as_deref()?).ok()?;
    if decoder.codec.knows_schema(id) || decoder.misses.contains(id) {
        return None;
    }
    if let Some(text) = registry.cached(id) {
        book(decoder, id, Ok(text));
        return None;
    }
    Some(id)
}

/// Books the registry's final answer for `id`: its schema into the codec, or the reason its
/// records are dead-lettered.
fn book(decoder: &Decoder, id: u32, result: Result<Arc<str>, RegistryError>) {
    match result {
        Ok(text) => {
            if let Err(error) = decoder
                .codec
                .add_writer_schema(id, &text, "schema registry")
            {
                decoder.misses.insert(
                    id,
                    format!("the registry's writer schema does not resolve: {error}"),
                );
            }
        }
        Err(error) => decoder.misses.insert(id, error.to_string()),
    }
}

/// For callers that run batches one at a time (redrive, replay): every writer schema id that
/// `messages` name becomes known to the codec or noted missing, asked for as the loop does
/// (an outage waited out with backoff). Nothing to do without a registry.
pub async fn resolve_batch(
    decoder: &Decoder,
    messages: &[SourceMessage],
    backoff: (Duration, Duration),
    metrics: &Metrics,
) {
    let Some(registry) = &decoder.registry else {
        return;
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    for message in messages {
        if let Some(id) = needs(decoder, registry, message) {
            let (first, max) = backoff;
            fetch(
                Arc::clone(registry),
                id,
                first,
                max.max(first),
                metrics.clone(),
                tx.clone(),
            )
            .await;
            if let Ok(Fetched { id, result }) = rx.try_recv() {
                book(decoder, id, result);
            }
        }
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        for task in self.fetching.values() {
            task.abort();
        }
    }
}

/// Whether a failure is waited out rather than taken as the id's answer: unavailable, or
/// credentials refused (a configuration fault an operator fixes; dead-lettering every record
/// meanwhile would be worse).
fn waits(kind: RegistryErrorKind) -> bool {
    matches!(
        kind,
        RegistryErrorKind::Unavailable | RegistryErrorKind::Denied
    )
}

/// Counts one waiting id in `fds_schema_registry_unavailable` while alive (also when the task
/// is aborted).
struct Waiting(Metrics);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.schema_registry_unavailable.dec();
    }
}

/// Asks for `id` until the registry answers something other than "unavailable", then sends
/// the answer.
async fn fetch(
    registry: Arc<SchemaRegistry>,
    id: u32,
    backoff: Duration,
    backoff_max: Duration,
    metrics: Metrics,
    tx: mpsc::UnboundedSender<Fetched>,
) {
    let count = |outcome: &str| {
        metrics
            .schema_registry_requests
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_owned(),
            })
            .inc();
    };
    let mut delays = Backoff::new(backoff, backoff_max);
    let mut waiting: Option<Waiting> = None;
    let result = loop {
        match registry.schema(id).await {
            Ok(schema) => {
                count("ok");
                break Ok(schema.text);
            }
            Err(error) if waits(error.kind) => {
                count(error.kind.as_str());
                if waiting.is_none() {
                    metrics.schema_registry_unavailable.inc();
                    waiting = Some(Waiting(metrics.clone()));
                }
                let delay = delays.next_wait();
                tracing::warn!(%error, id, ?delay, "schema registry: asking again");
                tokio::time::sleep(delay).await;
            }
            Err(error) => {
                count(error.kind.as_str());
                tracing::warn!(%error, id, "schema registry: the id's records are dead-lettered");
                break Err(error);
            }
        }
    };
    if waiting.is_some() {
        tracing::info!(id, "schema registry: answered again");
    }
    drop(waiting);
    let _ = tx.send(Fetched { id, result });
}
