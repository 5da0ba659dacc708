//! fds-testkit: the test equipment of fds-worker, kept out of the product.
//!
//! A real local stack (Redis Cluster and Kafka launchers, fault injection, test
//! certificates), the worker on it with synthetic traffic, and the benchmark. The integration
//! tests of the repository (`tests/`) use it as a dev-dependency; `fds-worker demo` and
//! `fds-worker bench` run in its binary, `fds-testkit`.
//!
//! It depends on the product crate (`fds-worker`: its config, the `store::admin` parsers of
//! Redis's replies, slots, the generator, the pipeline it runs) and never the other way
//! round: the product's library and binary, and the container image, contain none of this.
//!
//! # Layout
//!
//! | module | job |
//! |---|---|
//! | [`localstack`] | a 6-node Redis Cluster from `redis-server`, Apache Kafka (or librdkafka's mock), faults, test PKI, ports |
//! | [`demo`] | [`demo::LocalStack`]: the stack with the worker's topics and a config pointing at it; progress of a run |
//! | [`mod@bench`] | `fds-worker bench`: the worker against the cluster's own ceiling |
//! | [`soak`] | `fds-worker soak`: random faults for minutes, then the ledger against the ground truth |
//! | [`chart`] | what the PNG charts share (the font) |
//! | [`cli`] | the binary: `demo`, `bench` and `soak` (arguments in [`fds_worker::cli`]) |

pub mod bench;
pub mod chart;
pub mod cli;
pub mod demo;
pub mod localstack;
pub mod soak;
