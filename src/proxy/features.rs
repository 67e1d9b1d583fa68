//! The request-path features an Ingress's annotations ask for (see
//! [`RouteFeatures`]), applied in one place and one fixed order.
//!
//! In this order, as nginx runs them:
//! 1. redirects ([`super::route_redirect`]): `app-root` for `/`, then
//!    `temporal-redirect` or `permanent-redirect`, right after the route
//!    lookup (before the HTTPS redirect, which nginx runs later, too);
//!
//! then, after the HTTPS redirect, before the endpoint is picked ([`admit`]):
//! 2. source ranges ([`source_range`]): 403 for a client address they do
//!    not allow;
//! 3. the body limit: 413 for a `Content-Length` over it. A body without
//!    one is counted while it streams ([`super::upload`]);
//!
//! then, with the routing table let go ([`authenticate`] may wait for a
//! hash on the blocking pool):
//! 4. basic authentication ([`basic_auth`]): 401 with the challenge;
//!
//! then, once the forwarding headers are set ([`request_headers`]):
//! 5. `upstream-vhost` (the backend's `Host`), `x-forwarded-prefix`, then
//!    `ruststrom.io/request-headers` (remove, then set);
//!
//! and on the backend's answer (in the handler, then [`response_headers`]):
//! 6. `custom-http-errors`: a listed status is replaced by the error
//!    backend's answer ([`super::error_page`]);
//! 7. `ruststrom.io/response-headers` (remove, then set);
//! 8. compression ([`super::compress`], also asked by `--compression`),
//!    last, so that a header edit such as `Cache-Control: no-transform`
//!    counts.
//!
//! A route without annotations carries no features: the handler tests one
//! `Option` and goes on.

use http::header::{CONTENT_LENGTH, HOST, HeaderName, HeaderValue};
use http::{HeaderMap, Response};

use super::ProxyError;
use super::handler::ProxyBody;
use super::headers::ConnInfo;
use super::redirect::HttpsSettings;
use super::upload::ClientFault;
use super::{basic_auth, route_redirect, source_range};
use crate::model::RouteFeatures;

/// Step 1: the redirect the route answers with instead of its backend.
pub fn redirect(
    features: &RouteFeatures,
    conn: &ConnInfo,
    host: Option<&HeaderValue>,
    path: &str,
) -> Option<Response<ProxyBody>> {
    route_redirect::answer(features, conn.tls, host, path)
}

/// Steps 2 and 3: checks a request against its route's features before it is forwarded.
pub fn admit(
    features: &RouteFeatures,
    conn: &ConnInfo,
    headers: &HeaderMap,
    https: &HttpsSettings,
) -> Result<(), ProxyError> {
    if let Some(ranges) = &features.source_ranges
        && !source_range::allowed(ranges, conn, headers, https)
    {
        return Err(ProxyError::Forbidden);
    }
    if let Some(max) = features.max_body
        && declared_length(headers).is_some_and(|length| length > max)
    {
        return Err(ProxyError::ClientBody(ClientFault::TooLarge));
    }
    Ok(())
}

/// Step 4: the route's users, when it has some.
pub async fn authenticate(features: &RouteFeatures, headers: &HeaderMap) -> Result<(), ProxyError> {
    match &features.basic_auth {
        Some(auth) if !basic_auth::allowed(auth, headers).await => {
            Err(ProxyError::Unauthorized(auth.challenge.clone()))
        }
        _ => Ok(()),
    }
}

static X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");

/// Step 5: the backend's request headers.
pub fn request_headers(features: &RouteFeatures, headers: &mut HeaderMap) {
    if let Some(host) = &features.upstream_vhost {
        headers.insert(HOST, host.clone());
    }
    if let Some(prefix) = &features.forwarded_prefix {
        headers.insert(X_FORWARDED_PREFIX.clone(), prefix.clone());
    }
    if let Some(edits) = &features.request_headers {
        edits.apply(headers);
    }
}

/// Step 7: the headers of the backend's answer.
pub fn response_headers(features: &RouteFeatures, headers: &mut HeaderMap) {
    if let Some(edits) = &features.response_headers {
        edits.apply(headers);
    }
}

/// The `Content-Length` a request declares, if it declares a valid one
/// (hyper has already refused conflicting values on HTTP/1.1).
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}
