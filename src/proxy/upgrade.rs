//! Upgraded connections (WebSocket and other `Upgrade` protocols): once the
//! backend answers 101, bytes are copied both ways until either side closes.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

/// Counts the open tunnels: each holds a receiver, and the drain on shutdown
/// waits until none is left (hyper's graceful shutdown no longer sees a
/// connection once it is upgraded).
#[derive(Debug)]
pub struct Tunnels(watch::Sender<()>);

impl Tunnels {
    pub fn new() -> Self {
        Self(watch::Sender::new(()))
    }

    /// Resolves once no tunnel is open.
    pub async fn closed(&self) {
        self.0.closed().await;
    }
}

impl Default for Tunnels {
    fn default() -> Self {
        Self::new()
    }
}

/// Joins the client's and the backend's upgraded connections in a task of
/// their own; the HTTP connection is done with them.
pub fn tunnel(client: OnUpgrade, backend: OnUpgrade, backend_id: String, tunnels: &Tunnels) {
    let open = tunnels.0.subscribe();
    tokio::spawn(async move {
        let _open = open;
        let (client, backend) = match tokio::try_join!(client, backend) {
            Ok(pair) => pair,
            Err(error) => {
                tracing::debug!(%error, backend = %backend_id, "upgrade failed");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut backend = TokioIo::new(backend);
        if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut backend).await {
            tracing::debug!(%error, backend = %backend_id, "upgraded connection closed with an error");
        }
    });
}
