//! `enable-cors` and the `cors-*` annotations: which origins may read a
//! route's answers, and the headers that tell a browser so.

use http::header::{self, HeaderMap, HeaderValue};

/// A route's CORS settings, every value checked when compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cors {
    pub origins: Origins,
    /// `cors-allow-credentials`; never sent with `*`, where browsers
    /// refuse it anyway.
    pub credentials: bool,
    pub methods: HeaderValue,
    pub headers: HeaderValue,
    pub expose: Option<HeaderValue>,
    pub max_age: HeaderValue,
}

/// `cors-allow-origin`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origins {
    /// `*`: any origin, answered with `Access-Control-Allow-Origin: *`.
    Any,
    /// Only these; a matching `Origin` is echoed back.
    List(Vec<OriginPattern>),
}

/// One allowed origin: `scheme://host[:port]`, `scheme://*.domain[:port]`
/// (one label of letters, digits and `-` in place of the `*`), or `null`.
/// Kept in lower case; origins are compared without case, as nginx does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OriginPattern {
    Exact(String),
    /// `scheme://` and `.domain[:port]` around the one label.
    Wildcard {
        prefix: String,
        suffix: String,
    },
}

static ALLOW_ORIGIN: header::HeaderName = header::ACCESS_CONTROL_ALLOW_ORIGIN;
static ANY: HeaderValue = HeaderValue::from_static("*");
static TRUE: HeaderValue = HeaderValue::from_static("true");

// === impl OriginPattern ===

impl OriginPattern {
    fn matches(&self, origin: &str) -> bool {
        match self {
            OriginPattern::Exact(exact) => origin.eq_ignore_ascii_case(exact),
            OriginPattern::Wildcard { prefix, suffix } => {
                let n = origin.len();
                if n <= prefix.len() + suffix.len() {
                    return false;
                }
                let (Some(head), Some(tail)) =
                    (origin.get(..prefix.len()), origin.get(n - suffix.len()..))
                else {
                    return false;
                };
                let label = &origin.as_bytes()[prefix.len()..n - suffix.len()];
                head.eq_ignore_ascii_case(prefix)
                    && tail.eq_ignore_ascii_case(suffix)
                    && label
                        .iter()
                        .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            }
        }
    }
}

// === impl Cors ===

impl Cors {
    /// The `Access-Control-Allow-Origin` for a request with this `Origin`
    /// header; `None` when that origin is not allowed (the answer then gets
    /// no CORS headers, as in nginx).
    pub fn allow_origin(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        match &self.origins {
            Origins::Any => Some(ANY.clone()),
            Origins::List(patterns) => {
                let origin = origin?;
                let text = origin.to_str().ok()?;
                patterns
                    .iter()
                    .any(|p| p.matches(text))
                    .then(|| origin.clone())
            }
        }
    }

    /// Whether the answer depends on the request's `Origin`.
    fn varies(&self) -> bool {
        matches!(self.origins, Origins::List(_))
    }

    /// Sets the CORS headers on an answer (replacing the backend's, as
    /// nginx's `more_set_headers` does). `allow` is what
    /// [`Self::allow_origin`] gave.
    pub fn apply(&self, allow: Option<&HeaderValue>, headers: &mut HeaderMap) {
        if self.varies() {
            // Caches must not serve one origin's answer to another.
            headers.append(header::VARY, HeaderValue::from_static("Origin"));
        }
        let Some(allow) = allow else {
            return;
        };
        headers.insert(ALLOW_ORIGIN.clone(), allow.clone());
        if self.credentials && self.varies() {
            headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE.clone());
        } else {
            headers.remove(header::ACCESS_CONTROL_ALLOW_CREDENTIALS);
        }
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, self.methods.clone());
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, self.headers.clone());
        match &self.expose {
            Some(expose) => {
                headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
            }
            None => {
                headers.remove(header::ACCESS_CONTROL_EXPOSE_HEADERS);
            }
        }
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_match_whole_and_without_case() {
        let exact = OriginPattern::Exact("https://a.example.com".into());
        let wild = OriginPattern::Wildcard {
            prefix: "https://".into(),
            suffix: ".example.com:8443".into(),
        };
        for (pattern, origin, want) in [
            (&exact, "https://a.example.com", true),
            (&exact, "HTTPS://A.Example.com", true),
            (&exact, "https://a.example.com:443", false),
            (&exact, "http://a.example.com", false),
            (&exact, "https://evil-https://a.example.com", false),
            (&wild, "https://x.example.com:8443", true),
            (&wild, "https://x-1.EXAMPLE.com:8443", true),
            (&wild, "https://example.com:8443", false),
            (&wild, "https://.example.com:8443", false),
            (&wild, "https://a.b.example.com:8443", false),
            (&wild, "https://x.example.com", false),
            (&wild, "http://x.example.com:8443", false),
            (&wild, "https://x.example.com:8443.evil", false),
        ] {
            assert_eq!(pattern.matches(origin), want, "{pattern:?} {origin}");
        }
    }
}
