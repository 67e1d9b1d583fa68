//! Sending a request upstream, and sending it again when that is safe.
//!
//! Two failures are retried, each only for a request without a body (a body
//! already streamed cannot be sent twice):
//! - the connection could not be opened: nothing reached the backend, so the
//!   request goes to another endpoint of the same backend, whatever its
//!   method (a dead pod must not cost requests while its endpoint is still
//!   listed);
//! - a pooled keep-alive connection broke before any answer (the backend
//!   closed it as the request crossed): an idempotent request is sent once
//!   more on a fresh connection, as nginx does.

use http::uri::Uri;
use http::{Request, Response};
use http_body_util::{Either, Empty};
use hyper::body::{Body as _, Incoming};
use hyper_util::client::legacy::Error;

use super::upstream::Client;
use crate::model::{Backend, Endpoint};

/// How many endpoints a request may try when connections are refused.
const MAX_CONNECT_ATTEMPTS: usize = 3;

/// Sends `req` (already addressed to `endpoint`) and returns the outcome with
/// the endpoint that produced it.
pub async fn send(
    client: &Client,
    req: Request<Incoming>,
    backend: &Backend,
    endpoint: Endpoint,
) -> (Result<Response<Incoming>, Error>, Endpoint) {
    let replay = replayable(&req);
    let idempotent = req.method().is_idempotent();
    let mut error = match client.request(req.map(Either::Left)).await {
        Ok(response) => return (Ok(response), endpoint),
        Err(error) => error,
    };
    let Some(replay) = replay else {
        return (Err(error), endpoint);
    };

    let mut current = endpoint;
    let mut resent_broken = false;
    for _ in 1..MAX_CONNECT_ATTEMPTS {
        if error.is_connect() {
            match other_endpoint(backend, &current) {
                Some(next) => current = next,
                None => break,
            }
        } else if idempotent && !resent_broken && connection_broke(&error) {
            resent_broken = true;
        } else {
            break;
        }
        tracing::debug!(%error, endpoint = %current, "sending again");
        let Some(again) = readdress(&replay, &current) else {
            break;
        };
        match client.request(again).await {
            Ok(response) => return (Ok(response), current),
            Err(e) => error = e,
        }
    }
    (Err(error), current)
}

/// A copy of a bodiless request, so it can be sent again. `None` for a
/// request with a body.
fn replayable(req: &Request<Incoming>) -> Option<Request<()>> {
    if !req.body().is_end_stream() {
        return None;
    }
    let mut copy = Request::new(());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    Some(copy)
}

/// The copy, addressed to `endpoint`.
fn readdress(
    replay: &Request<()>,
    endpoint: &Endpoint,
) -> Option<Request<Either<Incoming, Empty<bytes::Bytes>>>> {
    let mut parts = replay.uri().clone().into_parts();
    parts.authority = Some(endpoint.authority().clone());
    let mut req = Request::new(Either::Right(Empty::new()));
    *req.method_mut() = replay.method().clone();
    *req.uri_mut() = Uri::from_parts(parts).ok()?;
    *req.version_mut() = replay.version();
    *req.headers_mut() = replay.headers().clone();
    Some(req)
}

/// The next endpoint in the backend's rotation that is not `failed`.
fn other_endpoint(backend: &Backend, failed: &Endpoint) -> Option<Endpoint> {
    let candidates = backend.ready.len().max(backend.fallback.len());
    (0..candidates)
        .filter_map(|_| backend.pick())
        .find(|e| e.addr != failed.addr)
        .cloned()
}

/// Whether the connection was closed or reset under the request, as opposed
/// to the backend answering something malformed.
fn connection_broke(error: &Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        let broke = e
            .downcast_ref::<hyper::Error>()
            .is_some_and(|h| h.is_incomplete_message() || h.is_canceled())
            || e.downcast_ref::<std::io::Error>().is_some();
        if broke {
            return true;
        }
        source = e.source();
    }
    false
}
