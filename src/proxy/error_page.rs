//! Custom error pages (`custom-http-errors` with `default-backend`): when
//! the backend answers one of the listed statuses, its answer is dropped and
//! the client gets the error backend's instead, as ingress-nginx's
//! `error_page CODE = @custom_...` does.
//!
//! The error backend is asked `GET /` (`HEAD` for a HEAD) with the client's
//! headers as the route's backend got them, and the headers ingress-nginx
//! sets for it: `X-Code`, `X-Format` (the client's `Accept`),
//! `X-Original-URI`, `X-Namespace`, `X-Ingress-Name`, `X-Service-Name`,
//! `X-Service-Port`, `X-Request-ID`. Its answer goes to the client as it is,
//! status included (nginx's `=` takes the named location's status). When it
//! fails, the client gets the proxy's 502 or 504 (nginx does not chain
//! error pages either); when there is no error backend, or it has no
//! endpoint, the proxy's own short page with the original status.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::Either;
use std::sync::Arc;

use super::attempt::{self, Failed};
use super::body::{GaugeGuard, Tracked};
use super::handler::ProxyBody;
use super::headers::{self, X_REQUEST_ID};
use super::upstream::UpstreamBody;
use super::{Proxy, ProxyError};
use crate::model::{Backend, ErrorCodes};

static X_CODE: HeaderName = HeaderName::from_static("x-code");
static X_FORMAT: HeaderName = HeaderName::from_static("x-format");
static X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
static X_NAMESPACE: HeaderName = HeaderName::from_static("x-namespace");
static X_INGRESS_NAME: HeaderName = HeaderName::from_static("x-ingress-name");
static X_SERVICE_NAME: HeaderName = HeaderName::from_static("x-service-name");
static X_SERVICE_PORT: HeaderName = HeaderName::from_static("x-service-port");

/// What a route with error pages keeps of a request until the answer
/// comes: only such routes pay for it.
pub struct Intercept {
    pub codes: ErrorCodes,
    /// `None`: no `default-backend`, the proxy answers itself.
    pub backend: Option<Arc<Backend>>,
    /// The route's own backend (for `X-Service-Name` and `X-Service-Port`).
    pub service: Arc<Backend>,
    /// The Ingress, `namespace/name`.
    pub ingress: String,
    /// The request as the client sent it: method and target.
    pub method: Method,
    pub original_uri: Option<HeaderValue>,
    /// The request's headers as the backend got them.
    pub headers: HeaderMap,
}

impl Intercept {
    /// Whether the backend's answer is replaced.
    pub fn wants(&self, status: StatusCode) -> bool {
        self.codes.contains(status.as_u16())
    }

    /// The request for the error backend.
    fn request(self, status: StatusCode) -> Request<UpstreamBody> {
        let mut headers = self.headers;
        // No body goes to the error backend, and nothing of the first
        // request's connection handling.
        for name in [
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
            header::EXPECT,
            header::TE,
            header::CONNECTION,
            header::UPGRADE,
        ] {
            headers.remove(name);
        }
        headers.insert(X_CODE.clone(), HeaderValue::from(status.as_u16()));
        if let Some(accept) = headers.get(header::ACCEPT).cloned() {
            headers.insert(X_FORMAT.clone(), accept);
        }
        if let Some(uri) = self.original_uri {
            headers.insert(X_ORIGINAL_URI.clone(), uri);
        }
        let (namespace, ingress) = self.ingress.split_once('/').unwrap_or(("", &self.ingress));
        let (_, service) = self
            .service
            .service
            .split_once('/')
            .unwrap_or(("", &self.service.service));
        let port = self.service.id.rsplit_once(':').map_or("", |(_, p)| p);
        for (name, value) in [
            (&X_NAMESPACE, namespace),
            (&X_INGRESS_NAME, ingress),
            (&X_SERVICE_NAME, service),
            (&X_SERVICE_PORT, port),
        ] {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(name.clone(), value);
            }
        }
        // Set by the forwarding headers already; nginx sends `$req_id`.
        if !headers.contains_key(&X_REQUEST_ID) {
            headers.insert(X_REQUEST_ID.clone(), headers::request_id());
        }
        let method = if self.method == Method::HEAD {
            Method::HEAD
        } else {
            Method::GET
        };
        let mut req = Request::new(Either::Right(http_body_util::Empty::new()));
        *req.method_mut() = method;
        *req.uri_mut() = http::Uri::from_static("/");
        *req.version_mut() = Version::HTTP_11;
        *req.headers_mut() = headers;
        req
    }
}

/// The error backend's answer for `status`; `None` when there is no error
/// backend or it has no endpoint (the caller answers with [`own`]).
pub async fn fetch(
    proxy: &Proxy,
    intercept: Intercept,
    status: StatusCode,
) -> Result<Option<Response<Tracked>>, ProxyError> {
    let Some(backend) = intercept.backend.clone() else {
        return Ok(None);
    };
    let Some(picked) = backend.pick(None, None) else {
        return Ok(None);
    };
    let req = intercept.request(status);
    let metrics = backend.metrics();
    let gauge = GaugeGuard::new(&metrics.in_flight);
    let policy = &backend.policy;
    let limit = policy.request_timeout.unwrap_or(proxy.request_timeout);
    let sending = Box::pin(attempt::send(
        &proxy.upstream,
        &backend,
        None,
        req,
        None,
        picked,
    ));
    let sent = match tokio::time::timeout(limit, sending).await {
        Ok(result) => result.map_err(|failed| failure(&backend, failed))?,
        Err(_) => {
            metrics.errors.inc();
            backend.record_failure(picked.state);
            return Err(ProxyError::Timeout {
                backend: backend.id.clone(),
                endpoint: picked.endpoint.to_string(),
            });
        }
    };
    let mut response = sent.response;
    headers::strip_hop_by_hop(response.headers_mut());
    let read_timeout = policy
        .read_timeout
        .unwrap_or(proxy.limits.proxy_read_timeout);
    Ok(Some(response.map(|body| {
        Tracked::new(body, sent.in_flight, gauge, Some(sent.lease), read_timeout)
    })))
}

/// A try that came to nothing, as the client's error.
pub fn failure(backend: &Backend, failed: Failed) -> ProxyError {
    match failed {
        Failed::Connect { endpoint, source } => ProxyError::Connect {
            backend: backend.id.clone(),
            endpoint: endpoint.to_string(),
            source,
        },
        Failed::Broken { endpoint, source } => ProxyError::Upstream {
            backend: backend.id.clone(),
            endpoint: endpoint.to_string(),
            source,
        },
        Failed::Timeout { endpoint } => ProxyError::Timeout {
            backend: backend.id.clone(),
            endpoint: endpoint.to_string(),
        },
        Failed::Client(fault) => ProxyError::ClientBody(fault),
    }
}

/// The proxy's own page for `status`, without the backend's body (nothing
/// of what it said leaks).
pub fn own(status: StatusCode) -> Response<ProxyBody> {
    super::error::page(status, None)
}
