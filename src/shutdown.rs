//! Shutdown on SIGINT or SIGTERM: a first signal starts a graceful drain, a
//! second one exits at once.

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// A handle every long-running task holds to learn that shutdown began.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

/// Starts listening for signals. The returned sender also lets tests and the
/// demo trigger a shutdown without a signal.
///
/// The handlers are installed before this returns (must be called within the
/// runtime), so from then on a signal drains instead of killing the process.
pub fn on_signals() -> (watch::Sender<bool>, Shutdown) {
    let (tx, rx) = watch::channel(false);
    let trigger = tx.clone();
    let signals = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    );
    tokio::spawn(async move {
        let (Ok(mut int), Ok(mut term)) = signals else {
            tracing::error!("cannot listen for SIGINT/SIGTERM; stop the process with SIGKILL");
            return;
        };
        tokio::select! {
            _ = int.recv() => tracing::info!("SIGINT received: draining"),
            _ = term.recv() => tracing::info!("SIGTERM received: draining"),
        }
        let _ = trigger.send(true);
        tokio::select! {
            _ = int.recv() => {},
            _ = term.recv() => {},
        }
        tracing::warn!("second signal: exiting without waiting for requests in flight");
        std::process::exit(130);
    });
    (tx, Shutdown(rx))
}

// === impl Shutdown ===

impl Shutdown {
    /// Resolves once shutdown has begun (or its sender is gone).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|down| *down).await;
    }

    pub fn is_down(&self) -> bool {
        *self.0.borrow()
    }
}
