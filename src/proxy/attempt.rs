//! Sending a request to a backend, and sending it again when the backend's
//! retry policy says it is safe and useful.
//!
//! A request without a body can always be sent again, so it is copied
//! before the first try (only when retries are on). A request whose body
//! went out cannot. On top of that:
//! - a refused connection reached nothing: any bodiless request is retried;
//! - a connection that broke, a per-try timeout, or a listed 5xx status are
//!   retried only for idempotent bodiless requests;
//! - each retry goes to another endpoint when one exists, and spends from
//!   the backend's retry budget, so a failing backend cannot multiply load.
//!
//! Every try feeds the passive health check: failures in a row eject the
//! endpoint; any success resets its count. A try that failed because the
//! client broke its own request body is the client's fault: it ends the
//! request at once and touches neither health nor the error counts.

use std::sync::Arc;

use http::{Request, Response, StatusCode, header};
use http_body_util::{Either, Empty};
use hyper::body::{Body as _, Incoming};

use super::upload::{ClientFault, Watch};
use super::upstream::{Lease, Upstream, UpstreamBody, UpstreamError as Error};
use crate::balance::{EndpointState, InFlight};
use crate::model::{Algorithm, Backend, Endpoint, Picked};

/// A response from the backend, with the try that produced it.
pub struct Sent {
    pub response: Response<Incoming>,
    /// The request counts as in flight on its endpoint until dropped.
    pub in_flight: InFlight,
    /// The connection it came on, to pool again once the body is read.
    pub lease: Lease,
    /// Tries before the one that produced it.
    pub retries: u32,
    /// The endpoint that answered.
    pub endpoint: Endpoint,
}

/// The last try's failure, when no retry was allowed or left.
#[derive(Debug)]
pub enum Failed {
    Connect {
        endpoint: Endpoint,
        source: Error,
    },
    Broken {
        endpoint: Endpoint,
        source: Error,
    },
    /// The per-try timeout elapsed.
    Timeout {
        endpoint: Endpoint,
    },
    /// The client broke its request body.
    Client(ClientFault),
}

/// What one try came to.
// Lives on the stack for one try and is matched at once; boxing the
// answer would cost an allocation on every request.
#[allow(clippy::large_enum_variant)]
enum Outcome {
    Answered(Response<Incoming>, Lease),
    Refused(Error),
    Broke(Error),
    TimedOut,
}

/// Sends `req` (already addressed to `first`) under `backend`'s policy;
/// `upload` watches its body, when it has one.
pub async fn send(
    upstream: &Upstream,
    backend: &Backend,
    hash: Option<u64>,
    req: Request<UpstreamBody>,
    upload: Option<&Arc<Watch>>,
    first: Picked<'_>,
) -> Result<Sent, Failed> {
    let policy = &backend.policy.retries;
    let idempotent = req.method().is_idempotent();
    // Idempotent requests keep a copy even with retries off, for the stale
    // connection case below.
    let replay = (policy.attempts > 0 || idempotent)
        .then(|| replayable(&req))
        .flatten();
    let mut resent_stale = false;
    let metrics = backend.metrics();
    backend.count_request();

    let mut endpoint = first.endpoint.clone();
    let mut state = first.state.clone();
    let mut request = req;
    let mut tries = 0;
    loop {
        tries += 1;
        metrics.requests.inc();
        metrics.upstream_requests.inc();
        let in_flight = state.start();
        let outcome = try_once(upstream, request, upload, backend, &endpoint, &state).await;
        if !matches!(outcome, Outcome::Answered(..))
            && let Some(fault) = upload.and_then(|u| u.fault())
        {
            return Err(Failed::Client(fault));
        }

        // A pooled keep-alive connection the backend closed just as the
        // request went out: not the backend's failure, and not a retry. The
        // request is sent once more on a fresh connection, as nginx does,
        // outside the budget and the passive health count.
        if let (Outcome::Broke(error), Some(copy)) = (&outcome, &replay)
            && idempotent
            && !resent_stale
            && is_stale_connection(error)
        {
            resent_stale = true;
            tries -= 1;
            drop(in_flight);
            tracing::debug!(backend = %backend.id, %endpoint, "pooled connection was closed; sending again");
            request = resend(copy);
            continue;
        }

        // Passive health, and whether the policy allows another try.
        let allowed = match &outcome {
            Outcome::Answered(response, _) => {
                let status = response.status();
                if is_gateway_error(status) {
                    metrics.errors.inc();
                    backend.record_failure(&state);
                } else {
                    state.record_success();
                }
                idempotent && policy.on_status.contains(&status.as_u16())
            }
            Outcome::Refused(_) => policy.on_connect_failure,
            Outcome::Broke(_) => idempotent && policy.on_reset,
            Outcome::TimedOut => idempotent && policy.on_timeout,
        };
        if !matches!(outcome, Outcome::Answered(..)) {
            metrics.errors.inc();
            backend.record_failure(&state);
        }

        // Another endpoint when one exists, the same one otherwise; the
        // budget is asked last, so it is spent only on real retries.
        let retry = replay
            .as_ref()
            .filter(|_| allowed && tries <= policy.attempts)
            .and_then(|copy| {
                let next = backend
                    .pick(hash, Some(&endpoint))
                    .or_else(|| backend.pick(hash, None))?;
                Some((copy, next))
            })
            .filter(|_| backend.take_retry());
        let Some((copy, next)) = retry else {
            return match outcome {
                Outcome::Answered(response, lease) => {
                    // Latency samples feed PeakEWMA only; others skip the
                    // lock and the exp().
                    if backend.policy.algorithm == Algorithm::PeakEwma {
                        in_flight.headers_received();
                    }
                    Ok(Sent {
                        response,
                        in_flight,
                        lease,
                        retries: tries - 1,
                        endpoint,
                    })
                }
                Outcome::Refused(source) => Err(Failed::Connect { endpoint, source }),
                Outcome::Broke(source) => Err(Failed::Broken { endpoint, source }),
                Outcome::TimedOut => Err(Failed::Timeout { endpoint }),
            };
        };
        drop(in_flight);
        metrics.retries.inc();
        tracing::debug!(backend = %backend.id, from = %endpoint, to = %next.endpoint, "retrying");
        endpoint = next.endpoint.clone();
        state = next.state.clone();
        request = resend(copy);
    }
}

async fn try_once(
    upstream: &Upstream,
    request: Request<UpstreamBody>,
    upload: Option<&Arc<Watch>>,
    backend: &Backend,
    endpoint: &Endpoint,
    state: &Arc<EndpointState>,
) -> Outcome {
    let policy = &backend.policy;
    let sending = upstream.send(
        endpoint,
        state,
        policy.connect_timeout,
        policy.idle_timeout,
        upload,
        request,
    );
    let result = match backend.policy.retries.per_try_timeout {
        Some(limit) => match tokio::time::timeout(limit, sending).await {
            Ok(result) => result,
            Err(_) => return Outcome::TimedOut,
        },
        None => sending.await,
    };
    match result {
        Ok((response, lease)) => Outcome::Answered(response, lease),
        Err(e @ Error::Connect(_)) => Outcome::Refused(e),
        Err(e) => Outcome::Broke(e),
    }
}

/// The connection closed or reset before any response byte: what a pooled
/// connection the backend had just closed looks like.
fn is_stale_connection(error: &Error) -> bool {
    let Error::Http(http) = error else {
        return false;
    };
    if http.is_incomplete_message() || http.is_canceled() {
        return true;
    }
    let mut source = std::error::Error::source(http);
    while let Some(e) = source {
        let stale = e.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            )
        });
        if stale {
            return true;
        }
        source = e.source();
    }
    false
}

/// 502, 503 and 504 from a backend count as its failure for passive health
/// checks (as Envoy's gateway-failure outlier detection does); other
/// statuses are the application's business.
fn is_gateway_error(status: StatusCode) -> bool {
    matches!(status.as_u16(), 502..=504)
}

/// The client's request as the upstream connection sends it: a body watched
/// by an [`Upload`](super::upload::Upload) (the client may pause up to
/// `body_timeout` between pieces), or none at all.
pub fn into_upstream(
    req: Request<Incoming>,
    body_timeout: std::time::Duration,
    max_body: Option<u64>,
) -> (Request<UpstreamBody>, Option<Arc<Watch>>) {
    if req.body().is_end_stream() {
        return (req.map(|_| Either::Right(Empty::new())), None);
    }
    let (mut parts, body) = req.into_parts();
    // A body of unknown length (the client sent it chunked) goes out
    // chunked whatever the method: without the header, hyper's client takes
    // a GET or HEAD to have no body and sends none, and the body was lost.
    if body.size_hint().exact().is_none() && !parts.headers.contains_key(header::CONTENT_LENGTH) {
        parts.headers.insert(
            header::TRANSFER_ENCODING,
            header::HeaderValue::from_static("chunked"),
        );
    }
    let (upload, watch) = super::upload::Upload::new(body, body_timeout, max_body);
    (
        Request::from_parts(parts, Either::Left(Box::new(upload))),
        Some(watch),
    )
}

/// A copy of a bodiless request (the URI is origin-form: the endpoint is
/// the connection's business). `None` for a request with a body.
fn replayable(req: &Request<UpstreamBody>) -> Option<Request<()>> {
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

/// The copy, to send again.
fn resend(replay: &Request<()>) -> Request<UpstreamBody> {
    let mut req = Request::new(Either::Right(Empty::new()));
    *req.method_mut() = replay.method().clone();
    *req.uri_mut() = replay.uri().clone();
    *req.version_mut() = replay.version();
    *req.headers_mut() = replay.headers().clone();
    req
}
