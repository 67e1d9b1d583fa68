//! Every way the proxy can fail a request, and the one function that turns a
//! failure into a response.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body_util::{Either, Full};

use super::handler::ProxyBody;
use super::normalize::PathError;
use super::upload::ClientFault;
use crate::model::LimitKind;

/// Why the proxy answered instead of a backend.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No rule matches the host and path, and there is no default backend.
    #[error("no route")]
    NoRoute,
    /// The route's Service has no ready (or draining) endpoint.
    #[error("no ready endpoint for {backend}")]
    NoEndpoint { backend: String },
    /// The backend refused the connection or could not be reached in time.
    #[error("cannot connect to {endpoint} ({backend})")]
    Connect {
        backend: String,
        endpoint: String,
        #[source]
        source: super::upstream::UpstreamError,
    },
    /// The backend accepted, then broke or closed before a full response head.
    #[error("bad response from {endpoint} ({backend})")]
    Upstream {
        backend: String,
        endpoint: String,
        #[source]
        source: super::upstream::UpstreamError,
    },
    /// No response headers within `--request-timeout`.
    #[error("{endpoint} ({backend}) did not answer in time")]
    Timeout { backend: String, endpoint: String },
    /// The request cannot be forwarded as it is.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The path has no normal form that could be routed.
    #[error("bad path: {0}")]
    BadPath(#[from] PathError),
    /// The request line and headers are over `--max-request-header-size`.
    #[error("request head too large")]
    HeadTooLarge,
    /// CONNECT or TRACE, which the proxy never forwards.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The route asks for basic authentication and the request's
    /// credentials are missing or wrong; the value is the challenge.
    #[error("the request is not authenticated")]
    Unauthorized(HeaderValue),
    /// The route's `auth-url` service answered 401 (`status` 401, or 302 to
    /// `auth-signin`) or 403; `headers` go to the client (the challenge,
    /// `Location`, cookies).
    #[error("external authentication answered {status}")]
    AuthDenied {
        status: StatusCode,
        headers: Box<HeaderMap>,
    },
    /// The route's `auth-url` service could not be asked, did not answer in
    /// time, or answered something else than 2xx, 401 or 403: 500, never
    /// open. The reason names no credential.
    #[error("external authentication failed: {0}")]
    AuthFailed(String),
    /// The route's source ranges do not allow the client's address.
    #[error("the client's address is not allowed on this route")]
    Forbidden,
    /// The client's address is over a limit of the route's Ingress
    /// (`limit-rps`, `limit-rpm`, `limit-connections`).
    #[error("the client's address is over its {kind:?} limit")]
    RateLimited { kind: LimitKind, retry_after: u64 },
    /// The client broke its request body (400), stopped sending it (408),
    /// or sent more than the route allows (413).
    #[error("the client's request body failed: {0:?}")]
    ClientBody(ClientFault),
}

// === impl ProxyError ===

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::NoEndpoint { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Connect { .. } | ProxyError::Upstream { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::BadRequest(_) | ProxyError::BadPath(_) => StatusCode::BAD_REQUEST,
            ProxyError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::HeadTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::Forbidden => StatusCode::FORBIDDEN,
            ProxyError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ProxyError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::AuthDenied { status, .. } => *status,
            ProxyError::AuthFailed(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::ClientBody(ClientFault::TimedOut) => StatusCode::REQUEST_TIMEOUT,
            ProxyError::ClientBody(ClientFault::TooLarge) => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::ClientBody(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// The `reason` label of `client_errors_total` when the client is at
    /// fault (see [`crate::metrics::CLIENT_ERROR_REASONS`]).
    pub fn client_fault(&self) -> Option<&'static str> {
        match self {
            ProxyError::BadRequest(_) => Some("bad_request"),
            ProxyError::BadPath(_) => Some("bad_path"),
            ProxyError::MethodNotAllowed => Some("method"),
            ProxyError::HeadTooLarge => Some("head_too_large"),
            ProxyError::ClientBody(ClientFault::Malformed) => Some("body_malformed"),
            ProxyError::ClientBody(ClientFault::Aborted) => Some("body_aborted"),
            ProxyError::ClientBody(ClientFault::TimedOut) => Some("body_timeout"),
            ProxyError::ClientBody(ClientFault::TooLarge) => Some("body_too_large"),
            ProxyError::Forbidden => Some("source_range"),
            ProxyError::Unauthorized(_) => Some("unauthorized"),
            ProxyError::AuthDenied { status, .. } if *status == StatusCode::UNAUTHORIZED => {
                Some("unauthorized")
            }
            _ => None,
        }
    }

    /// Whether this counts in `http_errors_total`: the backend side failed,
    /// not the client's request.
    pub fn is_backend_failure(&self) -> bool {
        self.status().is_server_error()
    }

    pub fn is_timeout(&self) -> bool {
        matches!(self, ProxyError::Timeout { .. })
    }

    /// The response the client gets. The body names the status only: backend
    /// addresses and internal reasons stay in the logs.
    pub fn to_response(&self) -> Response<ProxyBody> {
        let status = self.status();
        let text = match self {
            ProxyError::NoRoute => "no route matches this host and path",
            ProxyError::NoEndpoint { .. } => "no backend is available for this route",
            ProxyError::Connect { .. } | ProxyError::Upstream { .. } => {
                "the backend did not answer properly"
            }
            ProxyError::Timeout { .. } => "the backend did not answer in time",
            ProxyError::BadRequest(why) => why,
            ProxyError::BadPath(_) => "the path cannot be routed",
            ProxyError::MethodNotAllowed => "this method is not forwarded",
            ProxyError::HeadTooLarge => "the request headers are too large",
            ProxyError::Forbidden => "this address may not use this route",
            ProxyError::Unauthorized(_) => "authentication is required",
            ProxyError::RateLimited { .. } => "too many requests from this address",
            ProxyError::AuthDenied { status, .. } => match *status {
                StatusCode::FOUND => "sign in first",
                StatusCode::FORBIDDEN => "access is denied",
                _ => "authentication is required",
            },
            ProxyError::AuthFailed(_) => "authentication could not be checked",
            ProxyError::ClientBody(ClientFault::TimedOut) => "the request body stopped arriving",
            ProxyError::ClientBody(ClientFault::TooLarge) => "the request body is too large",
            ProxyError::ClientBody(_) => "the request body was broken",
        };
        let mut resp = page(status, Some(text));
        match self {
            ProxyError::Unauthorized(challenge) => {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, challenge.clone());
            }
            ProxyError::RateLimited { retry_after, .. } => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            ProxyError::AuthDenied { headers, .. } => {
                for (name, value) in headers.iter() {
                    resp.headers_mut().append(name.clone(), value.clone());
                }
            }
            ProxyError::MethodNotAllowed => {
                resp.headers_mut().insert(
                    header::ALLOW,
                    HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
                );
            }
            // The rest of a broken body cannot be skipped: the connection
            // ends with this answer.
            ProxyError::ClientBody(_) => {
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        resp
    }
}

/// A short plain-text page the proxy answers itself: the status, and what
/// happened when `detail` says.
pub fn page(status: StatusCode, detail: Option<&str>) -> Response<ProxyBody> {
    let reason = status.canonical_reason().unwrap_or("");
    let body = match detail {
        Some(text) => format!("{} {reason}: {text}\n", status.as_u16()),
        None => format!("{} {reason}\n", status.as_u16()),
    };
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from(body))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
