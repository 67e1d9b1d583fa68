//! `enable-cors` on the request path: preflights answered here, and the
//! CORS headers set on every answer of the route, the proxy's own included
//! (a page can then read a 429 or a 401), as nginx's `more_set_headers`
//! does.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::{Either, Full};

use super::handler::ProxyBody;
use crate::model::RouteFeatures;

/// A CORS route's answer-to-be: its settings, and what the request's
/// `Origin` earned.
pub struct Pending {
    features: Arc<RouteFeatures>,
    /// `Access-Control-Allow-Origin`; `None` for an origin not allowed.
    allow: Option<HeaderValue>,
}

impl Pending {
    /// `None` when the route has no CORS settings.
    pub fn new(features: &Arc<RouteFeatures>, headers: &HeaderMap) -> Option<Self> {
        let cors = features.cors.as_ref()?;
        Some(Self {
            allow: cors.allow_origin(headers.get(header::ORIGIN)),
            features: features.clone(),
        })
    }

    /// The answer to a preflight (`OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`) from an allowed origin: 204, the
    /// CORS headers added by [`Self::apply`]. Other requests, and preflights
    /// from other origins, go to the backend, as in nginx.
    pub fn preflight(&self, method: &Method, headers: &HeaderMap) -> Option<Response<ProxyBody>> {
        let preflight = method == Method::OPTIONS
            && headers.contains_key(header::ORIGIN)
            && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        if !preflight || self.allow.is_none() {
            return None;
        }
        let mut resp = Response::new(Either::Right(Full::new(Bytes::new())));
        *resp.status_mut() = StatusCode::NO_CONTENT;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        Some(resp)
    }

    /// Sets the CORS headers on the answer, whoever wrote it.
    pub fn apply(&self, headers: &mut HeaderMap) {
        if let Some(cors) = &self.features.cors {
            cors.apply(self.allow.as_ref(), headers);
        }
    }
}
