//! fds-worker: a stream worker for fraud detection.
//!
//! It reads transaction and fraud-verdict events from Kafka (Avro), keeps velocity counters and
//! blacklists in a Redis Cluster with one atomic unit per hash slot per batch, and publishes an
//! enrichment record per transaction. See `DESIGN.md` beside the repository for the reasons.
//!
//! # Layout
//! The modules follow the data flow:
//!
//! | module | job |
//! |---|---|
//! | [`config`] | the TOML + env configuration, with documented defaults and a no-I/O `validate()` |
//! | [`event`] | the typed events: [`event::Transaction`], [`event::FraudVerdict`], [`event::Enrichment`] |
//! | [`codec`] | Confluent wire format + Avro (schema catalog, resolution), and input validation |
//! | [`slot`] | CRC16 hash slots, hash tags, and the key builders that make ids injection-safe |
//! | [`plan`] | pure planning: events → per-slot operation units (no I/O) |
//! | [`retry`] | backoff with jitter and retry budgets: the pure parts of every retry loop |
//! | [`store`] | the Redis side: cluster client, the `fds` function library, unit execution, errors |
//! | [`source`] | the Kafka consumer: batching, backpressure, the contiguous offset watermark; the bounded partition range reader of redrive, replay, tail and bench |
//! | [`sink`] | the Kafka producers: enrichment records and dead letters |
//! | [`pipeline`] | `run`: wires source → plan → store → sink with bounded queues |
//! | [`metrics`] | every exported metric, in one place |
//! | [`monitor`] | the cluster monitor (nodes, roles, slot coverage, memory) and readiness |
//! | [`http`] | `/metrics`, `/healthz`, `/readyz` |
//! | [`redrive`] | re-processing dead letters through the normal path |
//! | [`replay`] | re-processing a historical, event-time-bounded range into live or shadow keys |
//! | [`generate`] | synthetic traffic with ground truth |
//! | [`cli`] | the `fds-worker` command line |
//!
//! # The test kit
//! The local stack (Redis Cluster and Kafka launchers, fault injection, test certificates),
//! the demo and the benchmark live in the workspace's other crate, `fds-testkit`
//! (`crates/fds-testkit`), which depends on this one; this crate never depends on it (only
//! its integration tests do, as a dev-dependency), so the product's library, binary and
//! container image carry no test equipment. `fds-worker demo` and `fds-worker bench` are parsed
//! here and handed over to the test kit's binary ([`cli::testkit`]).

pub mod cli;
pub mod codec;
pub mod config;
pub mod event;
pub mod generate;
pub mod http;
pub mod metrics;
pub mod monitor;
pub mod pipeline;
pub mod plan;
pub mod redrive;
pub mod replay;
pub mod retry;
pub mod sink;
pub mod slot;
pub mod source;
pub mod store;
