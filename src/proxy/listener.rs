//! The accept loop: one task per connection, HTTP/1.1 keep-alive and HTTP/2
//! (prior knowledge, or ALPN over TLS) on the same port, graceful drain on
//! shutdown. The HTTPS listener runs the same loop with a TLS acceptor: the
//! handshake happens in the connection's task, never in the loop.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::Proxy;
use super::conn::{Activity, Answer, StallGuard};
use super::handler::handle;
use super::headers::ConnInfo;
use super::limits::Limits;
use super::proxy_protocol::{self, Prefixed};
use crate::shutdown::Shutdown;

/// After an accept error (out of file descriptors, say), wait a little
/// instead of spinning: the loop itself must never die.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Accept errors come in floods (one per pending client when file
/// descriptors run out): one log line per this period, with a count.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(5);

/// How to speak HTTP on a connection: by sniffing the HTTP/2 preface, or
/// as the TLS handshake agreed (ALPN).
struct Builders {
    auto: auto::Builder<TokioExecutor>,
    http1: auto::Builder<TokioExecutor>,
    http2: auto::Builder<TokioExecutor>,
}

/// The client connections open at once over every listener: each holds a
/// permit until it closes, and the drain on shutdown waits for them all.
#[derive(Clone, Debug)]
pub struct ConnectionLimit {
    permits: Arc<Semaphore>,
    max: u32,
}

impl ConnectionLimit {
    pub fn new(max: usize) -> Self {
        // A semaphore counts in u32 for acquire_many; the cap is far below.
        let max = u32::try_from(max).unwrap_or(u32::MAX).min(1 << 24);
        Self {
            permits: Arc::new(Semaphore::new(max as usize)),
            max,
        }
    }

    pub fn max(&self) -> usize {
        self.max as usize
    }

    /// Resolves once every connection is closed.
    async fn drained(&self) {
        let _all = self.permits.acquire_many(self.max).await;
    }
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
    let limits = &proxy.limits;
    let builders = Arc::new(Builders {
        auto: builder(limits),
        http1: builder(limits).http1_only(),
        http2: builder(limits).http2_only(),
    });
    let proto = if tls.is_some() { "https" } else { "http" };
    let mut errors = AcceptErrors::default();
    loop {
        if !room(&proxy, &mut shutdown).await {
            break;
        }
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    proxy.metrics.accept_errors.inc();
                    let _logged = errors.log(&error, local);
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = shutdown.wait() => break,
        };
        // The other listener may have taken the last place meanwhile: this
        // one connection then waits for its place, accepted. So does one
        // accepted just as shutdown began, when the drain holds the places:
        // it is dropped.
        let permit = match proxy.connections.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => tokio::select! {
                permit = proxy.connections.permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
                () = shutdown.wait() => break,
            },
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let stream = StallGuard::new(stream, proxy.limits.client_send_timeout);
        let active = ActiveConnection::open(&proxy, permit);
        let proxy = proxy.clone();
        let builders = builders.clone();
        let shutdown = shutdown.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let Some((stream, conn)) = arrive(stream, peer, local, proto, &proxy).await else {
                drop(active);
                return;
            };
            let Some(acceptor) = tls else {
                serve_connection(stream, conn, proxy, &builders.auto, shutdown).await;
                drop(active);
                return;
            };
            let limit = proxy.limits.tls_handshake_timeout;
            let handshake =
                super::tls::handshake(&acceptor, stream, limit, &proxy.metrics, shutdown.clone());
            if let Some(stream) = handshake.await {
                let mut conn = conn;
                if proxy.records.wanted() {
                    conn.tls_info = Some(Arc::new(super::tls::info(stream.get_ref().1)));
                }
                let builder = match stream.get_ref().1.alpn_protocol() {
                    Some(b"h2") => &builders.http2,
                    Some(b"http/1.1") => &builders.http1,
                    _ => &builders.auto,
                };
                serve_connection(stream, conn, proxy, builder, shutdown).await;
            }
            drop(active);
        });
    }
    drop(listener);
    tracing::info!(%local, "stopped accepting; draining connections");
    let drained = async {
        proxy.connections.drained().await;
        proxy.tunnels.closed().await;
    };
    tokio::select! {
        () = drained => tracing::info!(%local, "all connections drained"),
        () = tokio::time::sleep(grace) => tracing::warn!(%local, ?grace, "shutdown grace elapsed with connections still open"),
    }
}

/// The connection's client: its peer, or with `--proxy-protocol` the
/// address a trusted peer's header gives (the bytes read past the header
/// are given back through [`Prefixed`]). `None` when the connection is
/// refused.
async fn arrive<S>(
    mut stream: S,
    peer: SocketAddr,
    local: SocketAddr,
    proto: &'static str,
    proxy: &Proxy,
) -> Option<(Prefixed<S>, ConnInfo)>
where
    S: AsyncRead + Unpin,
{
    let trusted = proxy.https.is_trusted(peer.ip());
    if !proxy.limits.proxy_protocol {
        let mut conn = ConnInfo::new(peer, local, proto);
        conn.trusted = trusted;
        return Some((Prefixed::new(stream, Bytes::new()), conn));
    }
    let limit = proxy.limits.client_header_timeout;
    match proxy_protocol::read(&mut stream, trusted, limit).await {
        Ok(arrived) => {
            let client = match arrived.client {
                Some(client) => {
                    proxy.metrics.proxy_protocol_headers.inc();
                    client
                }
                None => peer,
            };
            let mut conn = ConnInfo::new(client, local, proto);
            // Trust is the client's now, not the balancer's.
            conn.trusted = proxy.https.is_trusted(client.ip());
            Some((Prefixed::new(stream, arrived.rest), conn))
        }
        Err(refused) => {
            proxy.metrics.count_proxy_protocol_error(refused.reason());
            tracing::debug!(%peer, reason = refused.reason(), "connection refused: PROXY protocol");
            None
        }
    }
}

/// Waits until a connection may be accepted: at once below
/// `--max-connections`; at the cap, once a connection closes (new clients
/// wait in the kernel's backlog meanwhile, and established ones are
/// untouched). No place is held while waiting, so an idle listener takes
/// none from the other. `false` on shutdown.
async fn room(proxy: &Proxy, shutdown: &mut Shutdown) -> bool {
    let permits = &proxy.connections.permits;
    if permits.available_permits() > 0 {
        return true;
    }
    proxy.metrics.accept_paused.inc();
    tracing::debug!(
        max = proxy.connections.max,
        "connection cap reached; accepting paused"
    );
    tokio::select! {
        permit = permits.acquire() => permit.is_ok(),
        () = shutdown.wait() => false,
    }
}

/// Serves HTTP on one accepted (and, for HTTPS, handshaken) connection
/// until it closes, it has been idle too long, or the drain ends it.
async fn serve_connection<I>(
    io: I,
    conn: ConnInfo,
    proxy: Arc<Proxy>,
    builder: &auto::Builder<TokioExecutor>,
    mut shutdown: Shutdown,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = conn.peer;
    let activity = Activity::new();
    let limits = proxy.limits.clone();
    let opened = activity.clone();
    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let proxy = proxy.clone();
        let conn = conn.clone();
        let open = opened.open(req.version() == http::Version::HTTP_2);
        async move {
            let (response, log) = handle(&proxy, &conn, req).await;
            Ok::<_, Infallible>(response.map(|body| Answer::new(body, open, log)))
        }
    });
    let connection = builder
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .into_owned();
    tokio::pin!(connection);
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(error = %error, %peer, "connection ended with an error");
                }
                return;
            }
            () = shutdown.wait(), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            () = activity.idle(limits.client_header_timeout, limits.http2_idle_timeout), if !closing => {
                tracing::debug!(%peer, "idle connection closed");
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(limits.client_header_timeout)
        // The request head must fit the read buffer: past it, hyper
        // answers 431.
        .max_buf_size(limits.max_request_header_size);
    builder
        .http2()
        .timer(TokioTimer::new())
        // Ping every 20 s (--http2-keepalive); a ping not answered within
        // the same time drops the connection.
        .keep_alive_interval(Some(limits.http2_keepalive))
        .keep_alive_timeout(limits.http2_keepalive)
        .max_header_list_size(u32::try_from(limits.max_request_header_size).unwrap_or(u32::MAX));
    builder
}

/// Rate-limits the accept-error log: the first error, then one line per
/// [`ACCEPT_LOG_EVERY`] saying how many more there were.
#[derive(Default)]
struct AcceptErrors {
    last: Option<Instant>,
    suppressed: u64,
}

impl AcceptErrors {
    /// Logs `error` unless a line went out less than [`ACCEPT_LOG_EVERY`]
    /// ago; whether it did.
    fn log(&mut self, error: &std::io::Error, local: std::net::SocketAddr) -> bool {
        let now = Instant::now();
        match self.last {
            Some(last) if now.duration_since(last) < ACCEPT_LOG_EVERY => {
                self.suppressed += 1;
                false
            }
            _ => {
                tracing::warn!(%error, %local, suppressed = self.suppressed, "accept failed");
                self.last = Some(now);
                self.suppressed = 0;
                true
            }
        }
    }
}

/// Counts a client connection in `active_http_connections`, and holds its
/// place under `--max-connections`, while it lives.
struct ActiveConnection {
    gauge: prometheus::IntGauge,
    /// Returned to `--max-connections` when the connection ends.
    _place: OwnedSemaphorePermit,
}

impl ActiveConnection {
    fn open(proxy: &Proxy, place: OwnedSemaphorePermit) -> Self {
        proxy.metrics.active_connections.inc();
        Self {
            gauge: proxy.metrics.active_connections.clone(),
            _place: place,
        }
    }
}

impl Drop for ActiveConnection {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_flood_of_accept_errors_logs_one_line_per_period() {
        let mut errors = AcceptErrors::default();
        let error = std::io::Error::from_raw_os_error(24); // EMFILE
        let local = std::net::SocketAddr::from(([127, 0, 0, 1], 8000));
        let logged = (0..1_000).filter(|_| errors.log(&error, local)).count();
        assert_eq!(logged, 1);
        assert_eq!(errors.suppressed, 999);
        tokio::time::advance(ACCEPT_LOG_EVERY).await;
        assert!(errors.log(&error, local), "the next period logs again");
        assert_eq!(errors.suppressed, 0);
    }
}
