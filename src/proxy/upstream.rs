//! The one upstream client: HTTP/1.1 to backends, keep-alive pools per
//! endpoint, TCP_NODELAY, bounded connect time.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// Pooled connections idle longer than this are closed.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// A backend that does not accept within this time counts as refused (502),
/// as ingress-nginx's `proxy-connect-timeout` default does.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Client requests stream their bodies straight through; a bodiless request
/// sent a second time (see [`super::handler`]) has an empty body.
pub type UpstreamBody = Either<Incoming, Empty<Bytes>>;

pub type Client = hyper_util::client::legacy::Client<HttpConnector, UpstreamBody>;

/// Builds the shared client. Endpoints are IP addresses (or, with
/// `--allow-external-name`, DNS names resolved when a connection opens, never
/// per request on a pooled connection).
pub fn client() -> Client {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    connector.set_keepalive(Some(Duration::from_secs(60)));
    connector.enforce_http(true);
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .http1_preserve_header_case(false)
        .build(connector)
}
