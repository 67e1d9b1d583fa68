//! The request-path features an Ingress's annotations ask for (see
//! [`RouteFeatures`]), applied in one place and one fixed order.
//!
//! Before the endpoint is picked, in this order:
//! 1. source ranges ([`source_range`]): 403 for a client address they do
//!    not allow;
//! 2. the body limit: 413 for a `Content-Length` over it. A body without
//!    one is counted while it streams ([`super::upload`]).
//!
//! A route without annotations carries no features: the handler tests one
//! `Option` and goes on.

use http::HeaderMap;
use http::header::CONTENT_LENGTH;

use super::ProxyError;
use super::headers::ConnInfo;
use super::redirect::HttpsSettings;
use super::source_range;
use super::upload::ClientFault;
use crate::model::RouteFeatures;

/// Checks a request against its route's features before it is forwarded.
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
