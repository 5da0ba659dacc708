//! Shutdown on SIGTERM/SIGINT: the first signal starts a graceful drain, a second one exits at
//! once.

use tokio::signal::unix::{SignalKind, signal};

/// Exit status after a second signal (128 + SIGINT, as shells report it).
const EXIT_FORCED: i32 = 130;

/// Resolves on the first SIGTERM or SIGINT, and arms the second-signal exit. The handlers are
/// installed at the call, not at the first poll: a signal while the worker still starts (a
/// registry or broker that does not answer yet) is kept for the returned future, so it ends
/// the start cleanly instead of killing the process. Call it within the runtime.
pub fn shutdown() -> impl std::future::Future<Output = ()> {
    let signals = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut terminate), Ok(mut interrupt)) = signals else {
            tracing::error!("cannot install signal handlers; stop with SIGKILL");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        tracing::info!("signal received: draining (send it again to exit at once)");
        tokio::spawn(async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
            tracing::warn!("second signal: exiting without draining");
            std::process::exit(EXIT_FORCED);
        });
    }
}
