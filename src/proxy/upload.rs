//! A client's request body on its way to a backend, watched.
//!
//! The [`Watch`] it shares with the request path answers three questions
//! the proxy cannot otherwise tell apart:
//! - was the body sent whole? Only then may the upstream connection go back
//!   to its pool: a connection still carrying a slow upload would make the
//!   next, innocent request wait behind it;
//! - did the client break it (malformed chunking, an abort, a stall past
//!   `--client-body-timeout`, more than the route's `proxy-body-size`)?
//!   That is the client's fault: 400, 408 or 413, and never a mark against
//!   the backend's health;
//! - whose pace is it? While the proxy waits for the client, only the
//!   client body timeout runs; while the backend does not take what the
//!   client sent, `--proxy-send-timeout` runs; once the body is sent, the
//!   wait for the response headers (`--request-timeout`) starts.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use parking_lot::Mutex;
use tokio::time::{Instant, Sleep};

/// How a client broke its own request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientFault {
    /// The body's framing was invalid (a bad chunk size, say).
    Malformed,
    /// The client closed or reset the stream before the body's end.
    Aborted,
    /// The client stopped sending for longer than `--client-body-timeout`.
    TimedOut,
    /// The body grew past the route's `proxy-body-size`.
    TooLarge,
}

/// What the request path sees of an upload in progress.
#[derive(Debug)]
pub struct Watch {
    /// Times below are nanoseconds since this.
    epoch: Instant,
    /// [`SENDING`], [`SENT`], or a fault.
    state: AtomicU8,
    /// The proxy is waiting for the client's next piece (the backend took
    /// everything so far). Cleared by the client's data arriving (see the
    /// `Wake` impl), not only by the connection reading it: a connection
    /// that the backend stopped reading no longer asks for more.
    waiting_for_client: AtomicBool,
    /// The upstream connection's waker, woken (through this watch) when the
    /// client's next piece arrives.
    waker: Mutex<Option<Waker>>,
    /// When the last piece was handed to the backend's connection, or when
    /// the body ended.
    progress: AtomicU64,
    /// Body bytes received from the client so far (for the access log).
    received: AtomicU64,
}

const SENDING: u8 = 0;
const SENT: u8 = 1;
const MALFORMED: u8 = 2;
const ABORTED: u8 = 3;
const TIMED_OUT: u8 = 4;
const TOO_LARGE: u8 = 5;

/// Where an upload stands, for the request path's timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the client: its own timeout runs in [`Upload`].
    Client,
    /// Waiting for the backend to take more, since this instant.
    Backend(Instant),
    /// Sent whole at this instant.
    Sent(Instant),
    /// The client broke it.
    Fault(ClientFault),
}

impl Watch {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            state: AtomicU8::new(SENDING),
            waiting_for_client: AtomicBool::new(false),
            waker: Mutex::new(None),
            progress: AtomicU64::new(0),
            received: AtomicU64::new(0),
        }
    }

    /// Whether the body was sent to its end.
    pub fn sent_whole(&self) -> bool {
        self.state.load(Ordering::Acquire) == SENT
    }

    pub fn fault(&self) -> Option<ClientFault> {
        match self.state.load(Ordering::Acquire) {
            MALFORMED => Some(ClientFault::Malformed),
            ABORTED => Some(ClientFault::Aborted),
            TIMED_OUT => Some(ClientFault::TimedOut),
            TOO_LARGE => Some(ClientFault::TooLarge),
            _ => None,
        }
    }

    /// Body bytes received from the client so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    pub fn phase(&self) -> Phase {
        let at = self.epoch + Duration::from_nanos(self.progress.load(Ordering::Acquire));
        match self.state.load(Ordering::Acquire) {
            SENT => Phase::Sent(at),
            SENDING if self.waiting_for_client.load(Ordering::Acquire) => Phase::Client,
            SENDING => Phase::Backend(at),
            _ => Phase::Fault(self.fault().unwrap_or(ClientFault::Aborted)),
        }
    }

    fn mark_progress(&self) {
        let nanos = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.progress.store(nanos, Ordering::Release);
    }

    fn finish(&self, state: u8) {
        self.mark_progress();
        // Only the first end counts: a fault after the end is not one.
        let _ = self
            .state
            .compare_exchange(SENDING, state, Ordering::AcqRel, Ordering::Acquire);
    }
}

impl Wake for Watch {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    /// The client's next piece is there: from now on, any wait is the
    /// backend's (until the connection asks for more and finds none).
    fn wake_by_ref(self: &Arc<Self>) {
        if self.waiting_for_client.swap(false, Ordering::AcqRel) {
            self.mark_progress();
        }
        if let Some(waker) = self.waker.lock().take() {
            waker.wake();
        }
    }
}

/// The client's body as the upstream connection reads it.
#[derive(Debug)]
pub struct Upload {
    inner: Incoming,
    watch: Arc<Watch>,
    idle: Duration,
    /// Armed while waiting for the client; boxed and made only then, so a
    /// body that arrives whole costs no timer.
    timer: Option<Pin<Box<Sleep>>>,
    /// The route's `proxy-body-size`, when it sets one: a body that grows
    /// past it while streaming (chunked, or HTTP/2 without a length) is cut
    /// off with [`ClientFault::TooLarge`].
    max: Option<u64>,
    /// Data bytes taken from the client so far.
    received: u64,
}

impl Upload {
    /// Watches `inner`; the client may pause up to `idle` between pieces
    /// and send at most `max` bytes.
    pub fn new(inner: Incoming, idle: Duration, max: Option<u64>) -> (Self, Arc<Watch>) {
        let watch = Arc::new(Watch::new());
        watch.mark_progress();
        let upload = Self {
            inner,
            watch: watch.clone(),
            idle,
            timer: None,
            max,
            received: 0,
        };
        (upload, watch)
    }

    fn fail(&mut self, fault: ClientFault) -> UploadError {
        self.watch.finish(match fault {
            ClientFault::Malformed => MALFORMED,
            ClientFault::Aborted => ABORTED,
            ClientFault::TimedOut => TIMED_OUT,
            ClientFault::TooLarge => TOO_LARGE,
        });
        UploadError(fault)
    }
}

/// The client's body failed; the request path answers from the [`Watch`].
#[derive(Debug, thiserror::Error)]
#[error("the client's request body failed: {0:?}")]
pub struct UploadError(pub ClientFault);

impl Body for Upload {
    type Data = Bytes;
    type Error = UploadError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UploadError>>> {
        let this = &mut *self;
        // The client side wakes the watch, which notes the time and wakes
        // the connection.
        *this.watch.waker.lock() = Some(cx.waker().clone());
        let relay = Waker::from(this.watch.clone());
        let polled = Pin::new(&mut this.inner).poll_frame(&mut Context::from_waker(&relay));
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, Bytes::len) as u64;
                this.received = this.received.saturating_add(len);
                this.watch.received.store(this.received, Ordering::Relaxed);
                if this.max.is_some_and(|max| this.received > max) {
                    return Poll::Ready(Some(Err(this.fail(ClientFault::TooLarge))));
                }
                this.watch
                    .waiting_for_client
                    .store(false, Ordering::Release);
                this.watch.mark_progress();
                if let Some(timer) = this.timer.as_mut() {
                    timer.as_mut().reset(Instant::now() + this.idle);
                }
                if this.inner.is_end_stream() {
                    // The last piece: the connection will not poll again.
                    this.watch.finish(SENT);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                this.watch.finish(SENT);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(error))) => {
                let fault = classify(&error);
                tracing::debug!(%error, ?fault, "client request body failed");
                Poll::Ready(Some(Err(this.fail(fault))))
            }
            Poll::Pending => {
                this.watch.waiting_for_client.store(true, Ordering::Release);
                let idle = this.idle;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Err(this.fail(ClientFault::TimedOut))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Upload {
    /// An upload dropped before its end (the connection to the backend
    /// broke, or the backend answered first) was not sent whole.
    fn drop(&mut self) {
        if self.inner.is_end_stream() {
            self.watch.finish(SENT);
        }
    }
}

/// A broken body from the client: bad framing is malformed; anything else
/// (an early end, a reset HTTP/2 stream, a broken socket) is an abort.
fn classify(error: &hyper::Error) -> ClientFault {
    if error.is_parse() {
        return ClientFault::Malformed;
    }
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput
            )
        {
            return ClientFault::Malformed;
        }
        source = e.source();
    }
    ClientFault::Aborted
}
