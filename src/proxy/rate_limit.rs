//! `limit-connections`, `limit-rps`, `limit-rpm` on the request path: the
//! client's address (as source ranges see it) counted against its route's
//! zone, 429 with `Retry-After` when over.

use std::net::IpAddr;

use http::HeaderMap;

use super::ProxyError;
use super::headers::ConnInfo;
use super::redirect::HttpsSettings;
use super::source_range;
use crate::model::{ClientLimits, Refusal, Slot};

/// Counts the request against the limits; the slot (when there is a
/// connection limit) must live as long as the request and its answer.
pub fn admit(
    limits: &ClientLimits,
    conn: &ConnInfo,
    headers: &HeaderMap,
    https: &HttpsSettings,
) -> Result<Option<Slot>, ProxyError> {
    // A trusted proxy's unreadable X-Forwarded-For counts against that
    // proxy, not against no one.
    let client = source_range::client_address(conn, headers, https).unwrap_or(conn.peer.ip());
    let client = match client {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(client, IpAddr::V4),
        v4 => v4,
    };
    if limits.exempt(client) {
        return Ok(None);
    }
    // The connection first: a request refused by the rates gives it back
    // when the slot drops.
    let slot = limits.zone.acquire(client).map_err(refused)?;
    limits.zone.check(client).map_err(refused)?;
    Ok(slot)
}

fn refused(refusal: Refusal) -> ProxyError {
    // Whole seconds, rounded up: a client told 0 would come back at once.
    let wait = refusal.retry_after;
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    ProxyError::RateLimited {
        kind: refusal.kind,
        retry_after: seconds.max(1),
    }
}
