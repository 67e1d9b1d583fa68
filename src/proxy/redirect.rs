//! Plain HTTP and HTTPS: which requests are redirected to HTTPS (308, as
//! ingress-nginx does), which peers may say the client used HTTPS, and the
//! HSTS header on HTTPS responses.

use std::net::IpAddr;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode, Uri};
use http_body_util::{Either, Full};
use ipnet::IpNet;

use super::handler::ProxyBody;
use super::headers::ConnInfo;
use crate::model::{HttpsPolicy, TlsTable};

static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Listener-wide settings for the redirect.
#[derive(Clone, Debug, Default)]
pub struct HttpsSettings {
    /// `--https-redirect-port`: the port clients reach HTTPS on. 443 is left
    /// out of the Location.
    pub redirect_port: u16,
    /// `--trusted-proxies`: peers whose `X-Forwarded-Proto` is believed.
    pub trusted_proxies: Vec<IpNet>,
}

/// What to do with a request given its scheme and its route's policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Answer 308 to HTTPS.
    Redirect,
    /// Forward it; add `Strict-Transport-Security` with this value.
    Hsts(HeaderValue),
    /// Forward it as it is.
    Forward,
}

// === impl HttpsSettings ===

impl HttpsSettings {
    /// Whether a peer's `X-Forwarded-*` headers are believed.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        // An IPv4 client on a dual-stack socket shows as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }
}

/// Decides for one request on `host` (normalized) matched to a route with
/// `policy`.
pub fn decide(
    conn: &ConnInfo,
    headers: &HeaderMap,
    host: &str,
    policy: &HttpsPolicy,
    tls: &TlsTable,
) -> Decision {
    if conn.tls || (conn.trusted && forwarded_https(headers)) {
        return match &policy.hsts {
            Some(value) => Decision::Hsts(value.clone()),
            None => Decision::Forward,
        };
    }
    let redirect = policy.force_ssl_redirect || (policy.ssl_redirect && tls.has_tls(host));
    if redirect {
        Decision::Redirect
    } else {
        Decision::Forward
    }
}

/// The 308 to `https://host[:port]/same/path?and=query`. `None` when the
/// request names no usable host: a rule without `host` matches any `Host`
/// header, and a Location must not carry whatever a client put there.
pub fn to_https(host: &str, uri: &Uri, port: u16) -> Option<Response<ProxyBody>> {
    if !is_plain_host(host) {
        return None;
    }
    let path = uri
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| p.starts_with('/'))
        .unwrap_or("/");
    let location = if port == 443 {
        format!("https://{host}{path}")
    } else {
        format!("https://{host}:{port}{path}")
    };
    let value = HeaderValue::from_str(&location).ok()?;
    let body = format!("308 Permanent Redirect: {location}\n");
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from(body))));
    *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
    resp.headers_mut().insert(header::LOCATION, value);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Some(resp)
}

/// A DNS name or an IP literal (`[::1]` included): nothing that could
/// change where the Location points (`@`, `/`, `\`, ...).
fn is_plain_host(host: &str) -> bool {
    let name = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .filter(|h| {
            h.bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        })
        .map_or(host, |_| "ipv6");
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Whether the first `X-Forwarded-Proto` says `https` (the client-facing
/// hop is the first one a chain of proxies records).
pub(super) fn forwarded_https(headers: &HeaderMap) -> bool {
    headers
        .get(&X_FORWARDED_PROTO)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::model::{HostMatch, HostTls, TlsBuilder};

    fn tls_for(host: &str) -> TlsTable {
        let mut b = TlsBuilder::default();
        b.add(
            &HostMatch::from_rule(Some(host)),
            HostTls {
                certificate: None,
                secret: String::new(),
                source: "ns/i".into(),
            },
        )
        .unwrap();
        b.build()
    }

    fn conn(tls: bool, trusted: bool) -> ConnInfo {
        let mut c = ConnInfo::new(
            "10.0.0.9:5000".parse().unwrap(),
            "0.0.0.0:8000".parse().unwrap(),
            if tls { "https" } else { "http" },
        );
        c.trusted = trusted;
        c
    }

    fn xfp(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-proto", HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn redirect_rules() {
        let tls = tls_for("*.secure.com");
        let none = HeaderMap::new();
        let default = HttpsPolicy::default();
        let off = HttpsPolicy {
            ssl_redirect: false,
            ..HttpsPolicy::default()
        };
        let forced = HttpsPolicy {
            force_ssl_redirect: true,
            ..HttpsPolicy::default()
        };
        let hsts = HttpsPolicy {
            hsts: Some(HeaderValue::from_static("max-age=60")),
            ..HttpsPolicy::default()
        };
        use Decision::*;
        let h60 = Hsts(HeaderValue::from_static("max-age=60"));
        #[rustfmt::skip]
        let cases: Vec<(&str, ConnInfo, HeaderMap, &str, &HttpsPolicy, Decision)> = vec![
            ("plain HTTP to a TLS host", conn(false, false), none.clone(), "a.secure.com", &default, Redirect),
            ("plain HTTP to a host without TLS", conn(false, false), none.clone(), "plain.com", &default, Forward),
            ("ssl-redirect false", conn(false, false), none.clone(), "a.secure.com", &off, Forward),
            ("force-ssl-redirect without TLS", conn(false, false), none.clone(), "plain.com", &forced, Redirect),
            ("HTTPS connection", conn(true, false), none.clone(), "a.secure.com", &default, Forward),
            ("HTTPS connection with HSTS", conn(true, false), none.clone(), "a.secure.com", &hsts, h60.clone()),
            ("plain HTTP gets no HSTS", conn(false, false), none.clone(), "plain.com", &hsts, Forward),
            ("trusted proxy says https", conn(false, true), xfp("https"), "a.secure.com", &hsts, h60.clone()),
            ("trusted proxy chain, client hop https", conn(false, true), xfp("HTTPS, http"), "a.secure.com", &forced, Forward),
            ("trusted proxy says http", conn(false, true), xfp("http"), "a.secure.com", &default, Redirect),
            ("untrusted peer says https", conn(false, false), xfp("https"), "a.secure.com", &default, Redirect),
        ];
        for (case, c, headers, host, policy, want) in cases {
            assert_eq!(decide(&c, &headers, host, policy, &tls), want, "{case}");
        }
    }

    #[test]
    fn location_keeps_path_and_query_and_names_odd_ports() {
        let uri: Uri = "/a/b?x=1&y=%20".parse().unwrap();
        let resp = to_https("shop.com", &uri, 443).unwrap();
        assert_eq!(resp.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(resp.headers()["location"], "https://shop.com/a/b?x=1&y=%20");
        let resp = to_https("shop.com", &"*".parse().unwrap(), 8443).unwrap();
        assert_eq!(resp.headers()["location"], "https://shop.com:8443/");
        let resp = to_https("[::1]", &"http://[::1]:80/p".parse().unwrap(), 8443).unwrap();
        assert_eq!(resp.headers()["location"], "https://[::1]:8443/p");
        for bad in ["", "evil.com/x", "a@evil.com", "a\\b", "[::1", "[evil.com]"] {
            assert!(to_https(bad, &uri, 443).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn trusted_proxies_match_by_cidr() {
        let s = HttpsSettings {
            redirect_port: 443,
            trusted_proxies: vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()],
        };
        assert!(s.is_trusted("10.1.2.3".parse().unwrap()));
        assert!(s.is_trusted("::ffff:10.1.2.3".parse().unwrap()));
        assert!(s.is_trusted("fd00::1".parse().unwrap()));
        assert!(!s.is_trusted("11.0.0.1".parse().unwrap()));
        assert!(!HttpsSettings::default().is_trusted("10.1.2.3".parse().unwrap()));
    }
}
