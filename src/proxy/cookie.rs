//! Cookies the proxy reads (consistent-hash keys, sticky sessions) and the
//! sticky cookie it sets.

use http::header::{self, HeaderMap, HeaderValue};

use crate::model::StickyCookie;

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// `Set-Cookie` pinning the client to the endpoint whose sticky id is `id`.
pub fn set_sticky(cookie: &StickyCookie, id: &str) -> Option<HeaderValue> {
    let mut out = format!("{}={id}; Path=/", cookie.name);
    if let Some(ttl) = cookie.ttl {
        out.push_str(&format!("; Max-Age={}", ttl.as_secs()));
    }
    if cookie.http_only {
        out.push_str("; HttpOnly");
    }
    // Browsers refuse SameSite=None without Secure.
    if cookie.secure || cookie.same_site == "None" {
        out.push_str("; Secure");
    }
    out.push_str("; SameSite=");
    out.push_str(cookie.same_site);
    HeaderValue::from_str(&out).ok()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn reads_cookies_from_every_header() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; session=\"abc\""),
        );
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(value(&h, "session"), Some("abc"));
        assert_eq!(value(&h, "b"), Some("2"));
        assert_eq!(value(&h, "sess"), None);
    }

    #[test]
    fn sticky_cookie_attributes() {
        let c = StickyCookie {
            name: "S".into(),
            ttl: Some(Duration::from_secs(3600)),
            secure: false,
            http_only: true,
            same_site: "Lax",
        };
        assert_eq!(
            set_sticky(&c, "00ff").unwrap(),
            "S=00ff; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax"
        );
        let none = StickyCookie {
            same_site: "None",
            ttl: None,
            http_only: false,
            ..c
        };
        assert_eq!(
            set_sticky(&none, "1").unwrap(),
            "S=1; Path=/; Secure; SameSite=None"
        );
    }
}
