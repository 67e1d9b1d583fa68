//! One client connection's own limits: when it counts as idle (and is
//! closed), and how long its peer may leave written bytes unread.
//!
//! - [`Activity`] counts the requests a connection has open, from the
//!   request's arrival to its answer's last byte. A connection with none open
//!   for `--client-header-timeout` (before its first request, and between
//!   HTTP/1.1 requests) or `--http2-idle-timeout` (HTTP/2) is closed
//!   gracefully: HTTP/2 clients get a GOAWAY. HTTP/2 pings keep a connection
//!   alive but never make it busy.
//! - [`StallGuard`] wraps the socket: a write that stays blocked for
//!   `--client-send-timeout` (the client stopped reading) fails, which ends
//!   the connection and releases the backend connection behind it.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::access_log::Pending;
use super::handler::ProxyBody;

/// The requests open on one connection, and since when it has had none.
#[derive(Debug)]
pub struct Activity {
    epoch: Instant,
    open: AtomicUsize,
    /// Nanoseconds since `epoch` at which `open` last fell to zero.
    idle_since: AtomicU64,
    /// A request has arrived (before that, the header timeout applies).
    served: AtomicBool,
    http2: AtomicBool,
}

/// Holds one request open on its connection until dropped.
#[derive(Debug)]
pub struct Open(Arc<Activity>);

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            open: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            served: AtomicBool::new(false),
            http2: AtomicBool::new(false),
        })
    }

    /// A request arrived; it stays open until the returned guard drops.
    pub fn open(self: &Arc<Self>, http2: bool) -> Open {
        self.open.fetch_add(1, Ordering::AcqRel);
        if !self.served.load(Ordering::Relaxed) {
            self.served.store(true, Ordering::Relaxed);
            self.http2.store(http2, Ordering::Relaxed);
        }
        Open(self.clone())
    }

    /// Resolves once the connection has had no request open for its idle
    /// limit. Looks again at least every `min(limits)`, since the limit that
    /// applies changes with the first request; so it wakes at most once per
    /// that time while busy.
    pub async fn idle(&self, header_timeout: Duration, http2_timeout: Duration) {
        let look_again = header_timeout.min(http2_timeout);
        loop {
            let limit = if self.served.load(Ordering::Relaxed) && self.http2.load(Ordering::Relaxed)
            {
                http2_timeout
            } else {
                header_timeout
            };
            let deadline = if self.open.load(Ordering::Acquire) > 0 {
                Instant::now() + limit
            } else {
                let since = self.idle_since.load(Ordering::Acquire);
                self.epoch + Duration::from_nanos(since) + limit
            };
            let now = Instant::now();
            if deadline <= now {
                return;
            }
            tokio::time::sleep_until(deadline.min(now + look_again)).await;
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        let activity = &self.0;
        let nanos = u64::try_from(activity.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        // Stamp before the count falls, so a watchdog that sees zero open
        // also sees when that began.
        activity.idle_since.store(nanos, Ordering::Release);
        activity.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An answer's body, holding its request open on the connection until its
/// last byte (or until the client goes away), and then finishing its
/// record for the access log and the dashboard's feed.
#[derive(Debug)]
pub struct Answer {
    inner: ProxyBody,
    _open: Open,
    /// When a record is wanted: the record, and the body bytes sent so far.
    log: Option<(Box<Pending>, u64)>,
}

impl Answer {
    pub fn new(inner: ProxyBody, open: Open, log: Option<Box<Pending>>) -> Self {
        Self {
            inner,
            _open: open,
            log: log.map(|pending| (pending, 0)),
        }
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        if let Some((pending, sent)) = self.log.take() {
            pending.finish(sent);
        }
    }
}

impl Body for Answer {
    type Data = Bytes;
    type Error = <ProxyBody as Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let (Some((_, sent)), Poll::Ready(Some(Ok(frame)))) = (&mut self.log, &polled) {
            *sent += frame.data_ref().map_or(0, |d| d.len() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A client socket whose writes may stay blocked for at most `limit`.
#[derive(Debug)]
pub struct StallGuard<I> {
    inner: I,
    limit: Duration,
    /// Made at the first blocked write, then reused.
    timer: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl<I> StallGuard<I> {
    pub fn new(inner: I, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            timer: None,
            armed: false,
        }
    }

    pub fn get_ref(&self) -> &I {
        &self.inner
    }

    /// After a write that did not go through: arms the timer (once per
    /// blocked stretch), and fails the write once it has run out.
    fn blocked<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let deadline = Instant::now() + self.limit;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !self.armed {
            timer.as_mut().reset(deadline);
            self.armed = true;
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client did not read its answer in time",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for StallGuard<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for StallGuard<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Pending => self.blocked(cx),
            ready => {
                self.armed = false;
                ready
            }
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.blocked(cx),
            ready => {
                self.armed = false;
                ready
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
