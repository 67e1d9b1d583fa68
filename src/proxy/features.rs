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
//! 3. limits per client address ([`rate_limit`]): `limit-connections`,
//!    then `limit-rps` and `limit-rpm`, 429 over any;
//! 4. the body limit: 413 for a `Content-Length` over it. A body without
//!    one is counted while it streams ([`super::upload`]);
//!
//! then ([`super::cors::Pending::preflight`]):
//! 5. a CORS preflight from an allowed origin is answered (204);
//!
//! then, with the routing table let go ([`authenticate`] may wait for a
//! hash on the blocking pool, or for the auth service):
//! 6. basic authentication ([`basic_auth`]): 401 with the challenge; then
//!    external authentication ([`ext_auth`], `auth-url`): the subrequest's
//!    2xx passes, its 401 redirects to `auth-signin` or answers 401, its
//!    403 answers 403, anything else answers 500. Both run before the
//!    endpoint pick, as nginx's access phase runs before its balancer;
//!
//! then, once the forwarding headers are set ([`request_headers`]):
//! 7. the `auth-response-headers` of step 6, then `upstream-vhost` (the
//!    backend's `Host`), `x-forwarded-prefix`, then
//!    `ruststrom.io/request-headers` (remove, then set);
//!
//! and on the backend's answer (in the handler, then [`response_headers`]):
//! 8. `custom-http-errors`: a listed status is replaced by the error
//!    backend's answer ([`super::error_page`]); then the auth service's
//!    `Set-Cookie` (step 6), `custom-headers`, then
//!    `ruststrom.io/response-headers` (remove, then set);
//! 9. compression ([`super::compress`], also asked by `--compression`),
//!    last, so that a header edit such as `Cache-Control: no-transform`
//!    counts;
//!
//! and last, on every answer of a CORS route, the proxy's own included:
//! 10. the CORS headers ([`super::cors`]).
//!
//! A route without annotations carries no features: the handler tests one
//! `Option` and goes on.

use std::sync::Arc;

use http::header::{CONTENT_LENGTH, HOST, HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response};

use super::ProxyError;
use super::ext_auth::{self, Granted};
use super::handler::ProxyBody;
use super::headers::ConnInfo;
use super::redirect::HttpsSettings;
use super::upload::ClientFault;
use super::{Proxy, basic_auth, rate_limit, route_redirect, source_range};
use crate::model::{Backend, RouteFeatures, Slot};

/// Step 1: the redirect the route answers with instead of its backend.
pub fn redirect(
    features: &RouteFeatures,
    conn: &ConnInfo,
    host: Option<&HeaderValue>,
    path: &str,
) -> Option<Response<ProxyBody>> {
    route_redirect::answer(features, conn.tls, host, path)
}

/// Steps 2 to 4: checks a request against its route's features before it
/// is forwarded. The slot, when the route limits connections, is held
/// until the answer is sent.
pub fn admit(
    features: &RouteFeatures,
    conn: &ConnInfo,
    headers: &HeaderMap,
    https: &HttpsSettings,
) -> Result<Option<Slot>, ProxyError> {
    if let Some(ranges) = &features.source_ranges
        && !source_range::allowed(ranges, conn, headers, https)
    {
        return Err(ProxyError::Forbidden);
    }
    let slot = match &features.limits {
        Some(limits) => rate_limit::admit(limits, conn, headers, https)?,
        None => None,
    };
    if let Some(max) = features.max_body
        && declared_length(headers).is_some_and(|length| length > max)
    {
        return Err(ProxyError::ClientBody(ClientFault::TooLarge));
    }
    Ok(slot)
}

/// Step 6: the route's users, when it has some, then its auth service
/// (`auth_backend` when the `auth-url` names a cluster Service).
/// `Some` is what a passed external check adds to the request (step 7)
/// and the answer (step 8).
pub async fn authenticate<B>(
    proxy: &Proxy,
    features: &RouteFeatures,
    auth_backend: Option<&Arc<Backend>>,
    conn: &ConnInfo,
    req: &Request<B>,
    host: Option<&HeaderValue>,
) -> Result<Option<Granted>, ProxyError> {
    if let Some(auth) = &features.basic_auth
        && !basic_auth::allowed(auth, req.headers()).await
    {
        return Err(ProxyError::Unauthorized(auth.challenge.clone()));
    }
    match &features.ext_auth {
        Some(auth) => ext_auth::check(proxy, auth, auth_backend, conn, req, host)
            .await
            .map(Some),
        None => Ok(None),
    }
}

static X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");

/// Step 7: the backend's request headers.
pub fn request_headers(
    features: &RouteFeatures,
    granted: Option<&Granted>,
    headers: &mut HeaderMap,
) {
    if let Some(granted) = granted {
        granted.apply_request(headers);
    }
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

/// Step 8: the headers of the backend's answer.
pub fn response_headers(
    features: &RouteFeatures,
    granted: Option<&Granted>,
    status: http::StatusCode,
    headers: &mut HeaderMap,
) {
    if let Some(granted) = granted {
        granted.apply_response(status, headers);
    }
    if let Some(custom) = &features.custom_headers {
        custom.apply(headers);
    }
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
