//! fds-worker: a stream worker for fraud detection.
//!
//! It reads transaction and fraud-verdict events from Kafka (Avro), keeps velocity counters and
//! blacklists in a Redis Cluster with one atomic unit per hash slot per batch, and publishes an
//! enrichment record per transaction. See `DESIGN.md` beside the repository for the reasons.
//!
//! # Layout
//! The modules in the order of the data flow, with the shared vocabulary below it and what
//! runs the flow above it:
//!
//! | layer | module | job |
//! |---|---|---|
//! | shared | [`event`] | the typed events: [`event::Transaction`], [`event::FraudVerdict`], [`event::Enrichment`] |
//! | shared | [`slot`] | CRC16 hash slots, hash tags, and the key builders that make ids injection-safe |
//! | shared | [`config`] | the TOML + env configuration, with documented defaults and a no-I/O `validate()` |
//! | shared | [`metrics`] | every exported metric, in one place (`labels.rs`, `cluster.rs`) |
//! | shared | [`retry`] | backoff with jitter and retry budgets: the pure parts of every retry loop |
//! | 1 source | [`source`] | the Kafka consumer: batching, backpressure, the contiguous offset watermark; assignment epochs and the revoke/commit fence (`ownership.rs`); the bounded partition range reader of redrive, replay, tail and bench |
//! | 2 decode | [`codec`] | Confluent wire format + Avro (schema catalog, resolution, `convert/`), the Schema Registry client (`registry/`), and input validation |
//! | 3 plan | [`plan`] | pure planning: events → per-slot operation units (no I/O) |
//! | 4 store | [`store`] | the Redis side: units with retries (`attempt.rs`, `retry.rs`), our slot map, outage detection, connecting, the `fds` function library, errors; [`store::admin`] parses Redis's `INFO` and `CLUSTER` replies |
//! | 5 sink | [`sink`] | the Kafka producers: enrichment records and dead letters, published as batches finish (at least once) or in transactions with the consumer offsets (`transaction.rs`, exactly once) |
//! | runs the flow | [`pipeline`] | `run`: wires source → decode → plan → store → sink with bounded queues; exactly once: the outbox and one transaction at a time (`outbox.rs`, `committer.rs`); partitions held for a writer schema the Schema Registry has yet to supply (`resolve.rs`); config → each stage's settings |
//! | beside the flow | [`monitor`] | the cluster monitor (nodes, roles, slot coverage, memory) and readiness |
//! | beside the flow | [`http`] | `/metrics`, `/healthz`, `/readyz` |
//! | uses the flow | [`redrive`] | re-processing dead letters through the normal path |
//! | uses the flow | [`replay`] | re-processing a historical, event-time-bounded range into live or shadow keys |
//! | uses the flow | [`generate`] | synthetic traffic with ground truth |
//! | top | [`cli`] | the `fds-worker` command line |
//!
//! # Which way imports go
//! A module may use the modules of its own layer and of the layers above it in this table,
//! never one below it: a stage of the flow uses the shared modules and the stages before it
//! (the sink names the source's message and the store's failure kinds; the store runs the
//! plan's units), never a later stage; the shared modules use none of the stages
//! (`event` and `slot` are the vocabulary that `config` names); [`pipeline`] wires the stages;
//! [`monitor`] and [`http`] stand beside it, [`redrive`], [`replay`] and [`generate`] run
//! through it, and only [`cli`] sees everything. Doc links may point anywhere.
//! `scripts/check-layers.sh` (run by CI) greps for imports against this order.
//!
//! # The test kit
//! The local stack (Redis Cluster and Kafka launchers, fault injection, test certificates),
//! the demo and the benchmark live in the workspace's other crate, `fds-testkit`
//! (`crates/fds-testkit`), which depends on this one; this crate never depends on it (only
//! its integration tests do, as a dev-dependency, which Cargo allows because it builds them
//! apart), so the product's library, binary and container image carry no test equipment.
//! `fds-worker demo` and `fds-worker bench` are parsed here — their `--help` and usage errors
//! are this binary's — and handed over, same arguments, to the test kit's binary `fds-testkit`
//! ([`cli::testkit`]), which `cargo build` puts beside this one and which runs them with the
//! same [`cli::main`]. The root `Cargo.toml` says why this graph.

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
