//! The accept loop: one task per connection, HTTP/1.1 keep-alive and HTTP/2
//! (prior knowledge, or ALPN over TLS) on the same port, graceful drain on
//! shutdown. The HTTPS listener runs the same loop with a TLS acceptor: the
//! handshake happens in the connection's task, never in the loop.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

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

/// How to speak HTTP on a connection: by sniffing the HTTP/2 preface, or
/// as the TLS handshake agreed (ALPN).
struct Builders {
    auto: auto::Builder<TokioExecutor>,
    http1: auto::Builder<TokioExecutor>,
    http2: auto::Builder<TokioExecutor>,
}

/// Serves `listener` until shutdown, then stops accepting and gives requests
/// in flight up to `grace` to finish. With `tls`, every connection is a TLS
/// connection (the HTTPS listener).
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    mut shutdown: Shutdown,
    grace: Duration,
    tls: Option<TlsAcceptor>,
) {
    let local = match listener.local_addr() {
        Ok(addr) => addr,
        Err(error) => {
            tracing::error!(%error, "listener has no local address");
            return;
        }
    };
    let builders = Arc::new(Builders {
        auto: builder(),
        http1: builder().http1_only(),
        http2: builder().http2_only(),
    });
    let proto = if tls.is_some() { "https" } else { "http" };
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
        let mut conn = ConnInfo::new(peer, local, proto);
        conn.trusted = proxy.https.is_trusted(peer.ip());
        let active = ActiveConnection::open(&proxy);
        let watcher = graceful.watcher();
        let proxy = proxy.clone();
        let builders = builders.clone();
        let Some(acceptor) = tls.clone() else {
            tokio::spawn(async move {
                serve_connection(stream, conn, proxy, &builders.auto, watcher).await;
                drop(active);
            });
            continue;
        };
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let handshake = super::tls::handshake(&acceptor, stream, &proxy.metrics, shutdown);
            if let Some(stream) = handshake.await {
                let builder = match stream.get_ref().1.alpn_protocol() {
                    Some(b"h2") => &builders.http2,
                    Some(b"http/1.1") => &builders.http1,
                    _ => &builders.auto,
                };
                serve_connection(stream, conn, proxy, builder, watcher).await;
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

/// Serves HTTP on one accepted (and, for HTTPS, handshaken) connection
/// until it closes or the drain ends it.
async fn serve_connection<I>(
    io: I,
    conn: ConnInfo,
    proxy: Arc<Proxy>,
    builder: &auto::Builder<TokioExecutor>,
    watcher: Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = conn.peer;
    let service = service_fn(move |req| {
        let proxy = proxy.clone();
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(handle(&proxy, &conn, req).await) }
    });
    let connection = builder
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .into_owned();
    if let Err(error) = watcher.watch(connection).await {
        tracing::debug!(error = %error, %peer, "connection ended with an error");
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
