//! The response body from a backend, carrying what must happen when it ends:
//! the request stops counting as in flight on its endpoint (least
//! connection and PeakEWMA see it) only once the last byte went out.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use prometheus::IntGauge;

use crate::balance::InFlight;

/// A backend's body with its in-flight guard.
#[derive(Debug)]
pub struct Tracked {
    inner: Incoming,
    /// Dropped at the end of the body, or with the body if the client
    /// goes away first.
    in_flight: Option<(InFlight, GaugeGuard)>,
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
    pub fn new(inner: Incoming, in_flight: InFlight, gauge: GaugeGuard) -> Self {
        Self {
            inner,
            in_flight: Some((in_flight, gauge)),
        }
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None | Some(Err(_))) = polled {
            self.in_flight = None;
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
