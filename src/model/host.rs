//! Host matching: exact names, one-label wildcards, and the catch-all.

use std::borrow::Cow;
use std::fmt;

/// The host part of an Ingress rule.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostMatch {
    /// `foo.com`, stored lowercase.
    Exact(String),
    /// `*.foo.com`, stored as the lowercase suffix `foo.com`: matches exactly
    /// one more DNS label in front of it.
    Wildcard(String),
    /// A rule without `host`: any host, after the host-specific rules.
    Any,
}

/// Turns a `Host` header (or `:authority`) into the form rules are keyed by:
/// port dropped, trailing dot dropped, lowercase. Borrows when nothing changes,
/// which is the common case on the request path.
pub fn normalize_host(raw: &str) -> Cow<'_, str> {
    let host = if let Some(rest) = raw.strip_prefix('[') {
        // IPv6 literal: `[::1]:8000` -> `[::1]`.
        match rest.find(']') {
            Some(end) => &raw[..end + 2],
            None => raw,
        }
    } else {
        match raw.rfind(':') {
            Some(i) if raw[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &raw[..i],
            _ => raw,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

// === impl HostMatch ===

impl HostMatch {
    /// Parses the `host` of an Ingress rule (already validated as a DNS name
    /// or a `*.`-wildcard by the compile step).
    pub fn from_rule(host: Option<&str>) -> Self {
        match host.map(str::trim).filter(|h| !h.is_empty()) {
            None => HostMatch::Any,
            Some(h) => {
                let h = h.to_ascii_lowercase();
                match h.strip_prefix("*.") {
                    Some(suffix) => HostMatch::Wildcard(suffix.to_string()),
                    None => HostMatch::Exact(h),
                }
            }
        }
    }

    /// Whether a normalized request host matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Exact(h) => h == host,
            HostMatch::Wildcard(suffix) => wildcard_suffix(host) == Some(suffix.as_str()),
            HostMatch::Any => true,
        }
    }
}

/// `bar.foo.com` -> `foo.com`: what a one-label wildcard must equal.
pub(crate) fn wildcard_suffix(host: &str) -> Option<&str> {
    let (label, rest) = host.split_once('.')?;
    (!label.is_empty() && !rest.is_empty()).then_some(rest)
}

impl fmt::Display for HostMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostMatch::Exact(h) => f.write_str(h),
            HostMatch::Wildcard(s) => write!(f, "*.{s}"),
            HostMatch::Any => f.write_str("*"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_request_hosts() {
        for (raw, want) in [
            ("foo.com", "foo.com"),
            ("Foo.COM", "foo.com"),
            ("foo.com:8000", "foo.com"),
            ("foo.com.", "foo.com"),
            ("FOO.com.:80", "foo.com"),
            ("[::1]:8000", "[::1]"),
            ("[::1]", "[::1]"),
            ("127.0.0.1:80", "127.0.0.1"),
            ("", ""),
        ] {
            assert_eq!(normalize_host(raw), want, "{raw}");
        }
        assert!(matches!(normalize_host("foo.com:1"), Cow::Borrowed(_)));
    }

    #[test]
    fn wildcards_match_exactly_one_label() {
        let w = HostMatch::from_rule(Some("*.foo.com"));
        assert!(w.matches("bar.foo.com"));
        assert!(!w.matches("baz.bar.foo.com"));
        assert!(!w.matches("foo.com"));
        assert!(!w.matches(".foo.com"));
        assert!(!w.matches("barfoo.com"));
    }

    #[test]
    fn exact_hosts_are_case_insensitive() {
        let h = HostMatch::from_rule(Some("Foo.Com"));
        assert_eq!(h, HostMatch::Exact("foo.com".into()));
        assert!(h.matches(&normalize_host("FOO.com:8000")));
        assert!(!h.matches("bar.foo.com"));
        assert_eq!(HostMatch::from_rule(None), HostMatch::Any);
        assert_eq!(HostMatch::from_rule(Some("")), HostMatch::Any);
    }
}
