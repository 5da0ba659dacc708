//! `fds-worker run`: the live worker, with its HTTP endpoint and cluster monitor.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use prometheus_client::registry::Registry;

use crate::config::Config;
use crate::http::{Endpoints, Server};
use crate::metrics::Metrics;
use crate::monitor::{Latest, Monitor, Prober, Readiness};
use crate::pipeline::{self, RunError, RunSummary};

/// Run the worker until SIGTERM/SIGINT.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  fds-worker run
  FDS_KAFKA__BROKERS=k1:9092,k2:9092 FDS_REDIS__NODES=redis://r1:7000,redis://r2:7000 fds-worker run
  FDS_METRICS__LISTEN=0.0.0.0:9464 fds-worker run      # then: curl localhost:9464/readyz

Endpoints on metrics.listen: /metrics (Prometheus), /healthz (200 while the process runs),
/readyz (200 when partitions are assigned and all 16384 slots are served by reachable masters;
503 naming the degraded state otherwise, and while shutting down). The cluster monitor polls
every node each metrics.poll_interval.

On SIGTERM/SIGINT the worker stops fetching, finishes in-flight batches (up to
pipeline.shutdown_deadline), commits offsets and flushes the producer, then exits 0; a second
signal exits at once (status 130).")]
pub struct RunArgs {}

/// Runs the worker.
pub async fn run(_args: RunArgs, config: Config) -> anyhow::Result<()> {
    // First: a SIGTERM from here on stops the worker cleanly, however far its start got.
    let shutdown = super::signals::shutdown();
    let service = Service::start(&config).await?;
    let summary = service.run(shutdown).await.context("running the worker")?;
    tracing::info!(?summary, "worker stopped");
    Ok(())
}

/// The worker with its operations side: the metrics registry, the HTTP endpoint and the
/// cluster monitor. They start before the pipeline (so `/healthz` answers while it connects)
/// and stop after it.
#[derive(Debug)]
pub struct Service {
    config: Config,
    metrics: Metrics,
    readiness: Readiness,
    server: Server,
    monitor: Monitor,
    /// Refreshes `fds_ready` after every poll (ends with the monitor).
    ready_refresh: tokio::task::JoinHandle<()>,
}

impl Service {
    /// Registers the metrics, starts the cluster monitor and binds `metrics.listen`.
    pub async fn start(config: &Config) -> anyhow::Result<Service> {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let prober = Prober::from_config(&config.redis).context("redis.nodes")?;
        let monitor = Monitor::spawn(prober, config.metrics.poll_interval, metrics.clone());
        let readiness = Readiness::new(metrics.clone(), monitor.latest());
        let ready_refresh = tokio::spawn({
            let readiness = readiness.clone();
            let mut polls = monitor.latest();
            async move {
                while polls.changed().await.is_ok() {
                    readiness.check();
                }
            }
        });
        let endpoints = Endpoints::new(registry, readiness.clone());
        let server = Server::start(config.metrics.listen, endpoints)
            .await
            .with_context(|| format!("listening on metrics.listen {}", config.metrics.listen))?;
        tracing::info!(addr = %server.addr(), "serving /metrics, /healthz, /readyz");
        Ok(Service {
            config: config.clone(),
            metrics,
            readiness,
            server,
            monitor,
            ready_refresh,
        })
    }

    /// The bound HTTP address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The worker's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Readiness, as `/readyz` reports it.
    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// The monitor's latest cluster snapshot.
    pub fn cluster(&self) -> Latest {
        self.monitor.latest()
    }

    /// Runs the pipeline until `shutdown` resolves and it has drained (readiness says
    /// "shutting down" meanwhile), then stops the endpoint.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<RunSummary, RunError> {
        let readiness = self.readiness.clone();
        let shutdown = async move {
            shutdown.await;
            readiness.set_draining();
        };
        let result = pipeline::run(&self.config, self.metrics.clone(), shutdown).await;
        self.ready_refresh.abort();
        // Open scrapes may finish; a client holding a connection open does not delay the exit.
        let _ = tokio::time::timeout(Duration::from_secs(2), self.server.stop()).await;
        result
    }
}
