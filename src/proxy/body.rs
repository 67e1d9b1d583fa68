//! The response body from a backend, carrying what must happen when it ends:
//! the request stops counting as in flight on its endpoint (least
//! connection and PeakEWMA see it) only once the last byte went out, and the
//! upstream connection goes back to its pool only once the body was read to
//! its end (what a client abandoned is read in the background when small,
//! see [`Lease::salvage_body`]). A backend that pauses longer than
//! `--proxy-read-timeout` between two pieces of its body has the answer cut
//! off, so a stalled backend cannot hold a client connection forever.
//! When the answer is compressed ([`super::compress`]), the body passes
//! through its encoder here, piece by piece.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use prometheus::IntGauge;
use tokio::time::{Instant, Sleep};

use super::compress::{Encoder, OUT_CHUNK};
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
    /// Set for a compressed answer only (boxed: most answers have none).
    encoder: Option<Box<Compressing>>,
}

/// A compressed body's state.
#[derive(Debug)]
struct Compressing {
    encoder: Encoder,
    /// The backend's trailers, sent after the end of the compressed data.
    trailers: Option<http::HeaderMap>,
}

/// Why a backend's body ended early.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Backend(#[from] hyper::Error),
    #[error("the backend paused its response longer than the read timeout")]
    Stalled,
    #[error("compressing the response failed: {0}")]
    Compress(std::io::Error),
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
            encoder: None,
        }
    }

    /// Holds the client's `limit-connections` slot until the body ends.
    pub fn with_slot(mut self, slot: Option<Slot>) -> Self {
        if let Some(done) = self.done.as_mut() {
            done._slot = slot;
        }
        self
    }

    /// Compresses the body with `encoder` on its way out.
    pub fn compressed(mut self, encoder: Encoder) -> Self {
        self.encoder = Some(Box::new(Compressing {
            encoder,
            trailers: None,
        }));
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
        if self.encoder.is_some() {
            self.poll_compressed(cx)
        } else {
            self.poll_raw(cx)
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.encoder {
            Some(c) => c.encoder.is_finished() && c.trailers.is_none(),
            None => self.inner.as_ref().is_none_or(Incoming::is_end_stream),
        }
    }

    fn size_hint(&self) -> SizeHint {
        if self.encoder.is_some() {
            return SizeHint::default();
        }
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Incoming::size_hint)
    }
}

impl Tracked {
    /// The backend's frames as they come, under the read timeout.
    fn poll_raw(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, ReadError>>> {
        let this = self;
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

    /// The backend's body through the encoder: compressed output goes out
    /// once [`OUT_CHUNK`] of it is ready, or whenever the backend has
    /// nothing more for now (flushed, so a stream of events keeps flowing),
    /// and the rest at the end, before the backend's trailers.
    fn poll_compressed(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ReadError>>> {
        loop {
            let Some(state) = self.encoder.as_mut() else {
                return Poll::Ready(None);
            };
            if state.encoder.is_finished() {
                return Poll::Ready(state.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            let polled = self.poll_raw(cx);
            let Some(state) = self.encoder.as_mut() else {
                return Poll::Ready(None);
            };
            let out = match polled {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        state.encoder.write(&data).map_err(ReadError::Compress)?;
                        match state.encoder.ready(OUT_CHUNK) {
                            Some(out) => out,
                            None => continue,
                        }
                    }
                    Err(frame) => {
                        state.trailers = frame.into_trailers().ok();
                        state.encoder.finish().map_err(ReadError::Compress)?
                    }
                },
                Poll::Ready(None) => state.encoder.finish().map_err(ReadError::Compress)?,
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error))),
                Poll::Pending => {
                    let out = state.encoder.flush().map_err(ReadError::Compress)?;
                    if out.is_empty() {
                        return Poll::Pending;
                    }
                    out
                }
            };
            if !out.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(out))));
            }
        }
    }
}
