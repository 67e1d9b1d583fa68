//! `limit-rps`, `limit-rpm`, `limit-burst-multiplier`, `limit-connections`
//! and `limit-allowlist` / `limit-whitelist`: per-client-address limits,
//! read as ingress-nginx reads them.

use crate::model::rate_limit;
use crate::model::{ClientLimits, LimitSettings, Rate};

use super::{Reader, cidrs};

/// ingress-nginx's default `limit-burst-multiplier`.
const DEFAULT_BURST_MULTIPLIER: u64 = 5;
/// Above this the interval between two requests would be under a
/// microsecond: no limit worth the name.
const MAX_RATE: u32 = 1_000_000;

/// The limits an Ingress asks for, with the zone that holds their counters
/// (`owner` names the Ingress). `None` when it asks for none; `notices`
/// gets the names that have no effect without a limit.
pub(super) fn parse(
    read: &Reader<'_>,
    owner: &str,
    notices: &mut Vec<String>,
) -> Result<Option<ClientLimits>, String> {
    let multiplier = read
        .parse("limit-burst-multiplier", count)?
        .map_or(DEFAULT_BURST_MULTIPLIER, u64::from);
    let limit_of = |name: &str, per_minute: bool| -> Result<Option<Rate>, String> {
        Ok(read.parse(name, rate)?.flatten().map(|requests| Rate {
            requests,
            per_minute,
            burst: u64::from(requests).saturating_mul(multiplier),
        }))
    };
    let settings = LimitSettings {
        connections: read.parse("limit-connections", count)?.filter(|&n| n > 0),
        rps: limit_of("limit-rps", false)?,
        rpm: limit_of("limit-rpm", true)?,
    };
    let allow = match read.parse("limit-allowlist", cidrs)? {
        Some(list) => Some(list),
        None => read.parse("limit-whitelist", cidrs)?,
    };
    if settings.is_empty() {
        // As ingress-nginx: without a limit there is nothing to exempt from
        // or multiply.
        for name in [
            "limit-burst-multiplier",
            "limit-allowlist",
            "limit-whitelist",
        ] {
            if let Some((key, _)) = read.get(name) {
                notices.push(format!(
                    "annotation {key} has no effect without limit-rps, limit-rpm or limit-connections"
                ));
            }
        }
        return Ok(None);
    }
    Ok(Some(ClientLimits {
        allow: allow.unwrap_or_default(),
        zone: rate_limit::zone(owner, settings),
    }))
}

/// A whole number from 0 (ingress-nginx takes any integer; a negative one
/// turns its limit off, which a typo must not do here).
fn count(value: &str) -> Result<u32, String> {
    value
        .trim()
        .parse()
        .map_err(|_| "is not a whole number from 0".into())
}

/// Requests per period; `0` is no limit, as in ingress-nginx.
fn rate(value: &str) -> Result<Option<u32>, String> {
    let n = count(value)?;
    if n > MAX_RATE {
        return Err(format!("is over {MAX_RATE}"));
    }
    Ok((n > 0).then_some(n))
}
