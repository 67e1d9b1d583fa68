//! The response body from a backend, carrying what must happen when it ends:
//! the request stops counting as in flight on its endpoint (least
//! connection and PeakEWMA see it) only once the last byte went out, and the
//! upstream connection goes back to its pool only once the body was read to
//! its end (what a client abandoned is read in the background when small,
//! see [`Lease::salvage_body`]). A backend that pauses longer than
//! `--proxy-read-timeout` between two pieces of its body has the answer cut
//! off, so a stalled backend cannot hold a client connection forever.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use prometheus::IntGauge;
use tokio::time::{Instant, Sleep};

use super::upstream::Lease;
use crate::balance::InFlight;
use crate::model::Slot;

/// A backend's body with its in-flight guard and its connection.
#[derive(Debug)]
pub struct Tracked {
    /// Taken only by `drop`, to read the rest of an abandoned body.
    inner: Option<Incoming>,
    /// Taken at the end of the body, or dropped with the body if the client
    /// goes away first.
    done: Option<Done>,
    /// The longest pause between two pieces from the backend.
    read_timeout: Duration,
    /// Armed at the first pause; boxed and made only then, so a body that
    /// arrives at once costs no timer.
    timer: Option<Pin<Box<Sleep>>>,
}

/// Why a backend's body ended early.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Backend(#[from] hyper::Error),
    #[error("the backend paused its response longer than the read timeout")]
    Stalled,
}

/// What ends with the body.
#[derive(Debug)]
struct Done {
    /// Held for its `Drop`: the request stops counting as in flight.
    _in_flight: InFlight,
    gauge: GaugeGuard,
    /// `None` for a connection that cannot be reused (an upgrade).
    lease: Option<Lease>,
    /// Held for its `Drop`: the client's address stops counting this
    /// request against `limit-connections` once its answer is sent.
    _slot: Option<Slot>,
}

/// Holds one unit of a gauge (`backend_in_flight`) while it lives.
#[derive(Debug)]
pub struct GaugeGuard(IntGauge);

impl GaugeGuard {
    pub fn new(gauge: &IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Tracked {
    pub fn new(
        inner: Incoming,
        in_flight: InFlight,
        gauge: GaugeGuard,
        lease: Option<Lease>,
        read_timeout: Duration,
    ) -> Self {
        Self {
            inner: Some(inner),
            done: Some(Done {
                _in_flight: in_flight,
                gauge,
                lease,
                _slot: None,
            }),
            read_timeout,
            timer: None,
        }
    }

    /// Holds the client's `limit-connections` slot until the body ends.
    pub fn with_slot(mut self, slot: Option<Slot>) -> Self {
        if let Some(done) = self.done.as_mut() {
            done._slot = slot;
        }
        self
    }

    /// The body ended; `complete` when it was read to its end.
    fn finish(&mut self, complete: bool) {
        let Some(done) = self.done.take() else {
            return;
        };
        if complete && let Some(lease) = done.lease {
            // A connection the pool cannot take is simply closed.
            let _pooled = lease.release();
        }
        drop(done.gauge);
    }
}

impl Drop for Tracked {
    /// hyper stops polling a body that says it has ended (a known length
    /// fully read, or no body at all), so the end is often seen only here.
    /// A body the client abandoned is finished in the background.
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else {
            return;
        };
        if inner.is_end_stream() {
            self.finish(true);
        } else if let Some(done) = self.done.take()
            && let Some(lease) = done.lease
        {
            lease.salvage_body(inner);
        }
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = ReadError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ReadError>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(None) => {
                this.finish(true);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(error))) => {
                this.finish(false);
                Poll::Ready(Some(Err(error.into())))
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(timer) = this.timer.as_mut() {
                    timer.as_mut().reset(Instant::now() + this.read_timeout);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                let limit = this.read_timeout;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                // The connection is mid-answer: it cannot be reused.
                this.inner = None;
                this.finish(false);
                Poll::Ready(Some(Err(ReadError::Stalled)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Incoming::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Incoming::size_hint)
    }
}
