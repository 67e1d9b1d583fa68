//! The accept loop: one task per connection, HTTP/1.1 keep-alive and HTTP/2
//! (prior knowledge) on the same port, graceful drain on shutdown.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use super::Proxy;
use super::handler::handle;
use super::headers::ConnInfo;
use crate::shutdown::Shutdown;

/// HTTP/2 keep-alive: ping every 20 s, drop the connection when a ping is
/// not answered within 20 s.
const H2_KEEPALIVE: Duration = Duration::from_secs(20);
/// After an accept error (out of file descriptors, say), wait a little
/// instead of spinning: the loop itself must never die.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves `listener` until shutdown, then stops accepting and gives requests
/// in flight up to `grace` to finish.
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    mut shutdown: Shutdown,
    grace: Duration,
) {
    let local = match listener.local_addr() {
        Ok(addr) => addr,
        Err(error) => {
            tracing::error!(%error, "listener has no local address");
            return;
        }
    };
    let builder = Arc::new(builder());
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = shutdown.wait() => break,
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let conn = ConnInfo::new(peer, local, "http");
        let active = ActiveConnection::open(&proxy);
        let svc_proxy = proxy.clone();
        let service = service_fn(move |req| {
            let proxy = svc_proxy.clone();
            let conn = conn.clone();
            async move { Ok::<_, Infallible>(handle(&proxy, &conn, req).await) }
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(error = %error, %peer, "connection ended with an error");
            }
            drop(active);
        });
    }
    drop(listener);
    tracing::info!(%local, "stopped accepting; draining connections");
    let drained = async {
        graceful.shutdown().await;
        proxy.tunnels.closed().await;
    };
    tokio::select! {
        () = drained => tracing::info!(%local, "all connections drained"),
        () = tokio::time::sleep(grace) => tracing::warn!(%local, ?grace, "shutdown grace elapsed with connections still open"),
    }
}

fn builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().keep_alive(true).timer(TokioTimer::new());
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(H2_KEEPALIVE))
        .keep_alive_timeout(H2_KEEPALIVE);
    builder
}

/// Counts a client connection in `active_http_connections` while it lives.
struct ActiveConnection(prometheus::IntGauge);

impl ActiveConnection {
    fn open(proxy: &Proxy) -> Self {
        proxy.metrics.active_connections.inc();
        Self(proxy.metrics.active_connections.clone())
    }
}

impl Drop for ActiveConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}
