//! Upstream connections: HTTP/1.1 to backends over keep-alive connections
//! pooled per endpoint, TCP_NODELAY, bounded connect time.
//!
//! Each endpoint's idle connections live in its [`EndpointState`], so a
//! request finds them without hashing anything, and they outlive table
//! swaps exactly as long as the endpoint does. A connection is checked out
//! for one request and goes back when the response body has been read to
//! its end ([`Lease::release`]). No task is spawned per request: only one
//! per connection, which hyper's connection future runs in.
//!
//! A client that goes away before its answer is complete would cost the
//! connection too: hyper closes a connection whose response nobody reads.
//! When what is left of the answer is small and quick, it is read and
//! thrown away instead, and the connection goes back to the pool (see
//! [`Lease::salvage_body`]); otherwise the connection is closed, as nginx
//! does.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::TryFuture;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use prometheus::IntCounter;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::SharedTable;
use super::upload::{Upload, Watch};
use crate::balance::EndpointState;
use crate::model::{Endpoint, EndpointAddr};

/// Pooled connections idle longer than this are closed.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// A backend that does not accept within this time counts as refused (502),
/// as ingress-nginx's `proxy-connect-timeout` default does.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle connections kept per endpoint; past this, a finished connection is
/// closed instead of pooled (nginx keeps 320 by default in ingress-nginx).
const MAX_IDLE_PER_ENDPOINT: usize = 320;
/// TCP keep-alive probes on upstream connections, so a backend host that
/// vanished is noticed on an idle pooled connection.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
/// How often idle connections past their timeout are closed. A checkout
/// never hands one out, so this only bounds how long the socket lingers.
const REAP_EVERY: Duration = Duration::from_secs(5);
/// An answer whose client went away is read to its end (and the connection
/// kept) only if that takes at most this long...
const SALVAGE_TIME: Duration = Duration::from_secs(1);
/// ...and at most this many more body bytes; past either, it is closed.
const SALVAGE_BYTES: usize = 64 * 1024;

/// Client request bodies stream straight through, watched ([`Upload`]); a
/// bodiless request has an empty body. Boxed: the request is moved whole
/// several times on its way out, and most requests have no body.
pub type UpstreamBody = Either<Box<Upload>, Empty<Bytes>>;
/// A pooled connection is idle, so it is ready at once; one that is not
/// ready within this is dropped and the next one tried. Only a connection
/// still busy with something (which the pool never takes back) could wait
/// longer.
const POOL_READY_WAIT: Duration = Duration::from_millis(250);

/// Why a request could not be sent or answered.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No connection: refused, unreachable, or not accepted in time.
    #[error("connect: {0}")]
    Connect(#[source] io::Error),
    /// The connection broke, or the response was not valid HTTP.
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

/// Opens upstream connections; counts them for `/metrics`.
pub struct Upstream {
    opened: IntCounter,
    salvaged: IntCounter,
}

/// One endpoint's idle keep-alive connections, most recently used last.
#[derive(Debug, Default)]
pub struct IdlePool {
    idle: Mutex<Vec<Idle>>,
}

#[derive(Debug)]
struct Idle {
    conn: Conn,
    /// Closed when still idle at this time.
    expires: Instant,
}

/// One upstream connection: the handle requests are sent on, and its task,
/// to end it at once when it must not finish what it is doing (a request
/// body the client will not complete, which would otherwise keep both the
/// backend connection and the client's open).
#[derive(Debug)]
struct Conn {
    sender: SendRequest<UpstreamBody>,
    task: tokio::task::AbortHandle,
}

/// A connection checked out for one request, and the pool it returns to.
#[derive(Debug)]
pub struct Lease {
    conn: Conn,
    state: Arc<EndpointState>,
    idle_timeout: Duration,
    /// Counts the connection if it is salvaged.
    salvaged: IntCounter,
    /// The request's body, when it had one: unless it was sent whole, the
    /// connection is not reused.
    upload: Option<Arc<Watch>>,
}

/// The response a sent request is waiting for; if the wait is abandoned
/// (the client went away, a timeout fired), the connection is salvaged.
struct Awaiting<F>
where
    F: TryFuture<Ok = Response<Incoming>> + Send + 'static,
{
    /// `None` once answered.
    pending: Option<(Pin<Box<F>>, Lease)>,
}

// === impl Upstream ===

impl Upstream {
    pub fn new(opened: IntCounter, salvaged: IntCounter) -> Self {
        Self { opened, salvaged }
    }

    /// Sends `req` (origin-form URI, `Host` set) to `endpoint` on a pooled
    /// connection, or a new one. A pooled connection that turns out closed
    /// before the request went out is skipped: nothing was sent, so the
    /// request moves to the next one (as hyper's own pool does).
    pub async fn send(
        &self,
        endpoint: &Endpoint,
        state: &Arc<EndpointState>,
        connect_timeout: Duration,
        idle_timeout: Duration,
        upload: Option<&Arc<Watch>>,
        mut req: Request<UpstreamBody>,
    ) -> Result<(Response<Incoming>, Lease), UpstreamError> {
        while let Some(mut conn) = state.pool().checkout() {
            match tokio::time::timeout(POOL_READY_WAIT, conn.sender.ready()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => continue,
            }
            let response = conn.sender.try_send_request(req);
            let lease = self.lease(conn, state, idle_timeout, upload);
            match Awaiting::new(response, lease).await {
                Ok(answered) => return Ok(answered),
                Err(mut error) => match error.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err(UpstreamError::Http(error.into_error())),
                },
            }
        }
        // Boxed: opening a connection is the rare path, and its future is
        // large; unboxed it would grow (and be copied with) every request's.
        let mut conn = Box::pin(self.connect(endpoint, connect_timeout)).await?;
        let response = conn.sender.send_request(req);
        let lease = self.lease(conn, state, idle_timeout, upload);
        Awaiting::new(response, lease)
            .await
            .map_err(UpstreamError::Http)
    }

    fn lease(
        &self,
        conn: Conn,
        state: &Arc<EndpointState>,
        idle_timeout: Duration,
        upload: Option<&Arc<Watch>>,
    ) -> Lease {
        Lease {
            conn,
            state: state.clone(),
            idle_timeout,
            salvaged: self.salvaged.clone(),
            upload: upload.cloned(),
        }
    }

    /// Opens a connection and starts its task.
    async fn connect(&self, endpoint: &Endpoint, limit: Duration) -> Result<Conn, UpstreamError> {
        let stream = tokio::time::timeout(limit, dial(&endpoint.addr))
            .await
            .map_err(|_| {
                UpstreamError::Connect(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
            })?
            .map_err(UpstreamError::Connect)?;
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY upstream");
        }
        let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE);
        if let Err(error) = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive) {
            tracing::debug!(%error, "cannot set TCP keep-alive upstream");
        }
        let (sender, connection) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await?;
        self.opened.inc();
        let peer = endpoint.to_string();
        let task = tokio::spawn(async move {
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(%error, %peer, "upstream connection ended with an error");
            }
        });
        Ok(Conn {
            sender,
            task: task.abort_handle(),
        })
    }
}

/// Connects to an endpoint: its address, or (ExternalName) each address its
/// name resolves to, in order, when the connection opens; never per request
/// on a pooled connection.
async fn dial(addr: &EndpointAddr) -> io::Result<TcpStream> {
    match addr {
        EndpointAddr::Ip(addr) => TcpStream::connect(addr).await,
        EndpointAddr::Name { host, port } => {
            let mut last = None;
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), *port))
                .await?
                .collect();
            for addr in addrs {
                match TcpStream::connect(addr).await {
                    Ok(stream) => return Ok(stream),
                    Err(error) => last = Some(error),
                }
            }
            Err(last.unwrap_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"))
            }))
        }
    }
}

/// Closes idle connections past their timeout, for the endpoints of the
/// live table (an endpoint no table uses any more closes its connections as
/// its state is dropped).
pub fn spawn_reaper(table: SharedTable) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(REAP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let live = table.load();
            // Backends repeat once per route that uses them.
            let mut seen = std::collections::HashSet::new();
            for backend in live.backends() {
                if seen.insert(std::sync::Arc::as_ptr(backend)) {
                    for (_, state) in backend.states() {
                        state.pool().reap();
                    }
                }
            }
        }
    })
}

// === impl IdlePool ===

impl IdlePool {
    /// The most recently used idle connection that is still open.
    fn checkout(&self) -> Option<Conn> {
        let now = Instant::now();
        let mut idle = self.idle.lock();
        while let Some(entry) = idle.pop() {
            if !entry.conn.sender.is_closed() && entry.expires > now {
                return Some(entry.conn);
            }
        }
        None
    }

    /// Pools `conn`; `false` when it was closed or the pool is full.
    fn put(&self, conn: Conn, idle_timeout: Duration) -> bool {
        if conn.sender.is_closed() {
            return false;
        }
        let mut idle = self.idle.lock();
        if idle.len() >= MAX_IDLE_PER_ENDPOINT {
            return false;
        }
        idle.push(Idle {
            conn,
            expires: Instant::now() + idle_timeout,
        });
        true
    }

    /// Closes the connections idle past their timeout, and forgets those
    /// the backend closed. Dropping a sender ends its idle connection.
    pub fn reap(&self) {
        let now = Instant::now();
        self.idle
            .lock()
            .retain(|entry| !entry.conn.sender.is_closed() && entry.expires > now);
    }
}

// === impl Lease ===

impl Lease {
    /// The response was read to its end: the connection can take the next
    /// request, so it goes back to its endpoint's pool, if the request was
    /// sent whole too (`false` if it could not: a request body not sent to
    /// its end, closed, or the pool is full).
    pub fn release(self) -> bool {
        if self.abort_unsent() {
            return false;
        }
        self.state.pool().put(self.conn, self.idle_timeout)
    }

    /// Ends the connection if it still carries a request body the client
    /// has not finished: its rest would hold both this connection and the
    /// client's (whose body hyper goes on reading) open for as long as the
    /// client likes. Whether it did.
    fn abort_unsent(&self) -> bool {
        if self.upload.as_ref().is_some_and(|u| !u.sent_whole()) {
            self.conn.task.abort();
            return true;
        }
        false
    }

    /// The client stopped reading `body` before its end: the rest is read
    /// and dropped in the background, and the connection pooled, if that
    /// fits in [`SALVAGE_TIME`] and [`SALVAGE_BYTES`].
    pub fn salvage_body(self, body: Incoming) {
        spawn_salvage(async move {
            drain(body).await?;
            Some(self)
        });
    }
}

/// Reads `body` to its end and drops it; `None` past [`SALVAGE_BYTES`] or
/// on an error.
async fn drain(mut body: Incoming) -> Option<()> {
    let mut left = SALVAGE_BYTES;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame.ok()?.data_ref() {
            left = left.checked_sub(data.len())?;
        }
    }
    Some(())
}

/// Runs `salvage` in the background within [`SALVAGE_TIME`], and pools the
/// connection it hands back. Outside a runtime (the process is stopping)
/// the connection is simply closed.
fn spawn_salvage(salvage: impl Future<Output = Option<Lease>> + Send + 'static) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        if let Ok(Some(lease)) = tokio::time::timeout(SALVAGE_TIME, salvage).await {
            let salvaged = lease.salvaged.clone();
            if lease.release() {
                salvaged.inc();
            }
        }
    });
}

// === impl Awaiting ===

impl<F> Awaiting<F>
where
    F: TryFuture<Ok = Response<Incoming>> + Send + 'static,
{
    /// Boxed so that an abandoned wait can move to a background task.
    fn new(response: F, lease: Lease) -> Self {
        Self {
            pending: Some((Box::pin(response), lease)),
        }
    }
}

impl<F> Future for Awaiting<F>
where
    F: TryFuture<Ok = Response<Incoming>> + Send + 'static,
{
    /// On an error the connection is dropped, which closes it.
    type Output = Result<(Response<Incoming>, Lease), F::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some((response, _)) = self.pending.as_mut() else {
            // Polled again after it was answered.
            return Poll::Pending;
        };
        let result = std::task::ready!(response.as_mut().try_poll(cx));
        let Some((_, lease)) = self.pending.take() else {
            return Poll::Pending;
        };
        Poll::Ready(result.map(|response| (response, lease)))
    }
}

impl<F> Drop for Awaiting<F>
where
    F: TryFuture<Ok = Response<Incoming>> + Send + 'static,
{
    /// Dropped while waiting: the request went out, so the backend will
    /// answer; a small, quick answer is read and the connection kept.
    fn drop(&mut self) {
        if let Some((mut response, lease)) = self.pending.take() {
            if lease.abort_unsent() {
                return;
            }
            spawn_salvage(async move {
                let response = futures::future::poll_fn(|cx| response.as_mut().try_poll(cx))
                    .await
                    .ok()?;
                if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                    return None;
                }
                drain(response.into_body()).await?;
                Some(lease)
            });
        }
    }
}
