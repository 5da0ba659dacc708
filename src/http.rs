//! The HTTP endpoint on `metrics.listen` (axum):
//!
//! | path | answer |
//! |---|---|
//! | `/metrics` | every metric, Prometheus / OpenMetrics text |
//! | `/healthz` | `200 ok` while the process runs |
//! | `/readyz` | `200 ready`, or `503 not ready: <reasons>` (see [`crate::monitor::readiness`]) |

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::monitor::Readiness;

/// Content type of the OpenMetrics text prometheus-client writes.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the handlers read.
#[derive(Clone)]
pub struct Endpoints {
    registry: Arc<Registry>,
    readiness: Readiness,
}

impl std::fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoints").finish_non_exhaustive()
    }
}

impl Endpoints {
    /// Endpoints over a registry (final: nothing is registered after this) and readiness.
    pub fn new(registry: Registry, readiness: Readiness) -> Endpoints {
        Endpoints {
            registry: Arc::new(registry),
            readiness,
        }
    }

    /// The router: `/metrics`, `/healthz`, `/readyz`.
    pub fn router(self) -> Router {
        Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .with_state(self)
    }
}

async fn metrics(State(endpoints): State<Endpoints>) -> impl IntoResponse {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &endpoints.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
            text,
        )
            .into_response(),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {error}\n"),
        )
            .into_response(),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(endpoints): State<Endpoints>) -> impl IntoResponse {
    let assessment = endpoints.readiness.check();
    let status = if assessment.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, assessment.body())
}

/// A running server; stops (gracefully) with [`Server::stop`] or when dropped.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `addr` (port 0 picks a free port: see [`Server::addr`]) and serves `endpoints`.
    pub async fn start(addr: SocketAddr, endpoints: Endpoints) -> std::io::Result<Server> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let serving = axum::serve(listener, endpoints.router())
                .with_graceful_shutdown(async move { stopped.cancelled().await });
            if let Err(error) = serving.await {
                tracing::warn!(%error, "HTTP endpoint stopped");
            }
        });
        Ok(Server {
            addr,
            stop,
            task: Some(task),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, finishes open requests.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
