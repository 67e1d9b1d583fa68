//! `enable-cors` and the `cors-*` annotations, read as ingress-nginx reads
//! them, except that a bad value rejects the Ingress (ingress-nginx logs it
//! and falls back to its default, or skips the origin).

use http::HeaderValue;

use crate::model::{Cors, OriginPattern, Origins};

use super::Reader;

const DEFAULT_METHODS: &str = "GET, PUT, POST, DELETE, PATCH, OPTIONS";
const DEFAULT_HEADERS: &str = "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization";
const DEFAULT_MAX_AGE: &str = "1728000";

const NAMES: [&str; 6] = [
    "cors-allow-origin",
    "cors-allow-methods",
    "cors-allow-headers",
    "cors-expose-headers",
    "cors-allow-credentials",
    "cors-max-age",
];

/// The CORS settings when `enable-cors` is true; `notices` gets the
/// `cors-*` names set without it.
pub(super) fn parse(read: &Reader<'_>, notices: &mut Vec<String>) -> Result<Option<Cors>, String> {
    if !read.bool("enable-cors")?.unwrap_or(false) {
        for name in NAMES {
            if let Some((key, _)) = read.get(name) {
                notices.push(format!(
                    "annotation {key} has no effect without enable-cors: \"true\""
                ));
            }
        }
        return Ok(None);
    }
    let value = |v: &str| HeaderValue::from_str(v).map_err(|_| "is not a header value".to_string());
    Ok(Some(Cors {
        origins: read
            .parse("cors-allow-origin", origins)?
            .unwrap_or(Origins::Any),
        credentials: read.bool("cors-allow-credentials")?.unwrap_or(true),
        methods: match read.parse("cors-allow-methods", methods)? {
            Some(v) => v,
            None => value(DEFAULT_METHODS)?,
        },
        headers: match read.parse("cors-allow-headers", |v| tokens(v, false))? {
            Some(v) => v,
            None => value(DEFAULT_HEADERS)?,
        },
        expose: read.parse("cors-expose-headers", |v| tokens(v, true))?,
        max_age: match read.parse("cors-max-age", max_age)? {
            Some(v) => v,
            None => value(DEFAULT_MAX_AGE)?,
        },
    }))
}

/// The entries of a comma-separated list, trimmed, empty ones skipped.
fn entries(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|e| !e.is_empty())
}

/// `*`, or origins as `scheme://host[:port]`, `scheme://*.domain[:port]` or
/// `null`. A `*` among others means any, as in ingress-nginx.
fn origins(value: &str) -> Result<Origins, String> {
    let mut list = Vec::new();
    for entry in entries(value) {
        if entry == "*" {
            return Ok(Origins::Any);
        }
        list.push(origin(entry).ok_or_else(|| {
            format!(
                "has {entry:?}, which is not *, null, scheme://host[:port] or scheme://*.domain[:port]"
            )
        })?);
    }
    if list.is_empty() {
        return Err("lists no origin".into());
    }
    Ok(Origins::List(list))
}

fn origin(entry: &str) -> Option<OriginPattern> {
    let entry = entry.to_ascii_lowercase();
    if entry == "null" {
        return Some(OriginPattern::Exact(entry));
    }
    let (scheme, rest) = entry.split_once("://")?;
    let scheme_ok = scheme
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b));
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (rest, None),
    };
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
    let (wildcard, host) = match host.strip_prefix("*.") {
        Some(domain) => (true, domain),
        None => (false, host),
    };
    let label = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !scheme_ok || !port_ok || !host.split('.').all(label) {
        return None;
    }
    if !wildcard {
        return Some(OriginPattern::Exact(entry));
    }
    let prefix = format!("{scheme}://");
    let suffix = entry.get(prefix.len() + 1..)?.to_string();
    Some(OriginPattern::Wildcard { prefix, suffix })
}

/// Method names (letters), rendered `A, B`.
fn methods(value: &str) -> Result<HeaderValue, String> {
    let list: Vec<&str> = entries(value).collect();
    let bad = list
        .iter()
        .find(|m| !m.bytes().all(|b| b.is_ascii_alphabetic()));
    if let Some(bad) = bad {
        return Err(format!("has {bad:?}, which is not a method name (letters)"));
    }
    joined(&list, "lists no method")
}

/// Header names (letters, digits, `-` and `_`), and `*` when `star`;
/// rendered `A, B`.
fn tokens(value: &str, star: bool) -> Result<HeaderValue, String> {
    let list: Vec<&str> = entries(value).collect();
    let name = |t: &&str| {
        (star && *t == "*")
            || t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if let Some(bad) = list.iter().find(|t| !name(t)) {
        return Err(format!(
            "has {bad:?}, which is not a header name (letters, digits, - and _)"
        ));
    }
    joined(&list, "lists no header")
}

fn joined(list: &[&str], empty: &str) -> Result<HeaderValue, String> {
    if list.is_empty() {
        return Err(empty.into());
    }
    HeaderValue::from_str(&list.join(", ")).map_err(|_| "is not a header value".into())
}

/// Seconds a preflight's answer may be cached.
fn max_age(value: &str) -> Result<HeaderValue, String> {
    let n: u32 = value
        .trim()
        .parse()
        .map_err(|_| "is not a whole number of seconds from 0")?;
    HeaderValue::from_str(&n.to_string()).map_err(|_| "is not a header value".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked_entry_by_entry() {
        let ok = |v: &str| origins(v).unwrap();
        assert_eq!(ok("https://a.com, *"), Origins::Any);
        assert_eq!(
            ok(" https://A.com:8443 ,null, chrome-extension://abc"),
            Origins::List(vec![
                OriginPattern::Exact("https://a.com:8443".into()),
                OriginPattern::Exact("null".into()),
                OriginPattern::Exact("chrome-extension://abc".into()),
            ])
        );
        assert_eq!(
            ok("https://*.example.com:8443"),
            Origins::List(vec![OriginPattern::Wildcard {
                prefix: "https://".into(),
                suffix: ".example.com:8443".into()
            }])
        );
        for bad in [
            "",
            " , ",
            "a.com",
            "https://a.com/path",
            "https://a.com:0",
            "https://a.com:99999",
            "https://*.*.a.com",
            "https://a.*.com",
            "https://*",
            "https://$host",
            "https://a.com\"",
            "1http://a.com",
            "https://user@a.com",
        ] {
            assert!(origins(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn lists_are_rendered_once_checked() {
        assert_eq!(methods("get,POST ,  put").unwrap(), "get, POST, put");
        assert!(methods("GET, P0ST").is_err());
        assert!(methods("GET; DELETE").is_err());
        assert_eq!(tokens("X-A,x_b", false).unwrap(), "X-A, x_b");
        assert!(tokens("*", false).is_err());
        assert_eq!(tokens("*, X-A", true).unwrap(), "*, X-A");
        assert!(tokens("X-A: 1", true).is_err());
        assert!(tokens(",", true).is_err());
        assert_eq!(max_age(" 600 ").unwrap(), "600");
        assert!(max_age("-1").is_err());
    }
}
