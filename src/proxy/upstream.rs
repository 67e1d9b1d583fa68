//! Upstream clients: HTTP/1.1 to backends, keep-alive pools per endpoint,
//! TCP_NODELAY, bounded connect time. One client per distinct (connect
//! timeout, idle timeout) pair that BalancerPolicies ask for; every backend
//! without such a policy shares the default one.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use parking_lot::Mutex;
use prometheus::IntCounter;
use tokio::net::TcpStream;

use crate::model::BackendPolicy;

/// Pooled connections idle longer than this are closed.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// A backend that does not accept within this time counts as refused (502),
/// as ingress-nginx's `proxy-connect-timeout` default does.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Client requests stream their bodies straight through; a bodiless request
/// sent again (see [`super::attempt`]) has an empty body.
pub type UpstreamBody = Either<Incoming, Empty<Bytes>>;

pub type Client = hyper_util::client::legacy::Client<Counting, UpstreamBody>;

/// The clients by (connect, idle) timeout.
pub struct Clients {
    default: Client,
    custom: Mutex<HashMap<(Duration, Duration), Client>>,
    opened: IntCounter,
}

/// A connector that counts the connections it opens, so that `/metrics`
/// shows how many requests reused a pooled connection.
#[derive(Clone)]
pub struct Counting {
    inner: HttpConnector,
    opened: IntCounter,
}

// === impl Clients ===

impl Clients {
    pub fn new(opened: IntCounter) -> Self {
        Self {
            default: build(CONNECT_TIMEOUT, POOL_IDLE_TIMEOUT, opened.clone()),
            custom: Mutex::new(HashMap::new()),
            opened,
        }
    }

    /// The client for a backend's policy (a cheap handle).
    pub fn for_policy(&self, policy: &BackendPolicy) -> Client {
        let key = (policy.connect_timeout, policy.idle_timeout);
        if key == (CONNECT_TIMEOUT, POOL_IDLE_TIMEOUT) {
            return self.default.clone();
        }
        self.custom
            .lock()
            .entry(key)
            .or_insert_with(|| build(key.0, key.1, self.opened.clone()))
            .clone()
    }
}

/// Endpoints are IP addresses (or, with `--allow-external-name`, DNS names
/// resolved when a connection opens, never per request on a pooled one).
fn build(connect: Duration, idle: Duration, opened: IntCounter) -> Client {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(connect));
    connector.set_keepalive(Some(Duration::from_secs(60)));
    connector.enforce_http(true);
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_idle_timeout(idle)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(Counting {
            inner: connector,
            opened,
        })
}

// === impl Counting ===

impl tower_service::Service<Uri> for Counting {
    type Response = TokioIo<TcpStream>;
    type Error = <HttpConnector as tower_service::Service<Uri>>::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let opened = self.opened.clone();
        Box::pin(async move {
            let conn = connecting.await?;
            opened.inc();
            Ok(conn)
        })
    }
}
