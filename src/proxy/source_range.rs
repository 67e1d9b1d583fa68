//! `whitelist-source-range` / `allowlist-source-range` and
//! `denylist-source-range`: which client addresses a route serves.

use std::net::IpAddr;

use http::HeaderMap;

use super::headers::ConnInfo;
use super::redirect::HttpsSettings;
use crate::model::SourceRanges;

static X_FORWARDED_FOR: &str = "x-forwarded-for";

/// Whether the ranges allow the request's client. An unknown client (a
/// trusted proxy's `X-Forwarded-For` that does not parse) is refused.
pub fn allowed(
    ranges: &SourceRanges,
    conn: &ConnInfo,
    headers: &HeaderMap,
    https: &HttpsSettings,
) -> bool {
    client_address(conn, headers, https).is_some_and(|ip| ranges.allows(ip))
}

/// The client's address: the peer's, or, when the peer is a trusted proxy,
/// the right-most `X-Forwarded-For` address that is not itself a trusted
/// proxy (nginx's `real_ip_recursive on`; all trusted: the left-most).
/// `None` when a trusted peer's header does not parse.
pub fn client_address(
    conn: &ConnInfo,
    headers: &HeaderMap,
    https: &HttpsSettings,
) -> Option<IpAddr> {
    let peer = conn.peer.ip();
    if !conn.trusted {
        return Some(peer);
    }
    let mut found = None;
    // Later header lines come after earlier ones, as if joined by commas.
    let lines: Vec<&[u8]> = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    for line in lines.iter().rev() {
        let text = std::str::from_utf8(line).ok()?;
        for entry in text.rsplit(',').map(str::trim) {
            let ip: IpAddr = entry.parse().ok()?;
            found = Some(ip);
            if !https.is_trusted(ip) {
                return found;
            }
        }
    }
    Some(found.unwrap_or(peer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn conn(peer: &str, trusted: bool) -> ConnInfo {
        let mut c = ConnInfo::new(
            format!("{peer}:40000").parse().unwrap(),
            "127.0.0.1:80".parse().unwrap(),
            "http",
        );
        c.trusted = trusted;
        c
    }

    #[test]
    fn the_client_is_the_peer_unless_the_peer_is_trusted() {
        let https = HttpsSettings {
            redirect_port: 443,
            trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()],
        };
        let cases: &[(&str, bool, &[&str], Option<&str>)] = &[
            ("192.0.2.1", false, &["203.0.113.9"], Some("192.0.2.1")),
            ("10.0.0.1", true, &[], Some("10.0.0.1")),
            ("10.0.0.1", true, &["203.0.113.9"], Some("203.0.113.9")),
            (
                "10.0.0.1",
                true,
                &["198.51.100.1, 203.0.113.9"],
                Some("203.0.113.9"),
            ),
            (
                "10.0.0.1",
                true,
                &["203.0.113.9, 10.0.0.2"],
                Some("203.0.113.9"),
            ),
            (
                "10.0.0.1",
                true,
                &["203.0.113.9", "10.0.0.2"],
                Some("203.0.113.9"),
            ),
            ("10.0.0.1", true, &["10.0.0.3, 10.0.0.2"], Some("10.0.0.3")),
            ("10.0.0.1", true, &["nonsense"], None),
            ("10.0.0.1", true, &["203.0.113.9, 10.0.0.2:80"], None),
        ];
        for (peer, trusted, xff, want) in cases {
            let mut headers = HeaderMap::new();
            for v in *xff {
                headers.append(X_FORWARDED_FOR, HeaderValue::from_str(v).unwrap());
            }
            let got = client_address(&conn(peer, *trusted), &headers, &https);
            assert_eq!(got, want.map(|w| w.parse().unwrap()), "{peer} {xff:?}");
        }
    }
}
