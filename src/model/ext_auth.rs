//! External authentication (`auth-url` and its family), as parsed at
//! compile time: the subrequest's target and headers as templates of nginx
//! variables, what to do with the answer, and the answer cache.
//!
//! A [`Template`] is parsed once from the annotation; an unknown variable
//! rejects the Ingress. It is expanded per request from [`Vars`], escaped
//! for where it goes ([`Context`]), so a header or cookie value can never
//! add a path, query or host to a URL.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use http::{HeaderMap, HeaderName, Method, StatusCode, Uri};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

/// What one Ingress's `auth-url` annotations ask. `Debug` names the
/// `auth-proxy-set-headers` without their values, which may be keys.
#[derive(Clone, PartialEq, Eq)]
pub struct ExtAuth {
    /// `auth-url`: where the subrequest goes (an http or https URL).
    pub url: Template,
    /// `auth-method`: the subrequest's method (GET by default, as nginx's
    /// subrequests).
    pub method: Method,
    /// `auth-signin` with the redirect parameter (`rd=` by default) added
    /// when it has none: where a 401 sends the client (302).
    pub signin: Option<Template>,
    /// `auth-response-headers`: copied from a 2xx answer into the request
    /// to the backend (a listed header the answer lacks is removed, so a
    /// client cannot send its own).
    pub response_headers: Vec<HeaderName>,
    /// `auth-request-redirect`: `X-Auth-Request-Redirect` on the subrequest
    /// (`$request_uri` when not set).
    pub request_redirect: Option<Template>,
    /// `auth-proxy-set-headers`: the ConfigMap's headers, set last on the
    /// subrequest.
    pub proxy_set_headers: Vec<(HeaderName, Template)>,
    /// `auth-cache-key` and `auth-cache-duration`.
    pub cache: Option<CachePolicy>,
    /// `auth-always-set-cookie`: the auth service's `Set-Cookie` on every
    /// answer, not only on successful ones.
    pub always_set_cookie: bool,
}

/// Which answers are kept, for how long, under which key.
#[derive(Clone, Debug)]
pub struct CachePolicy {
    pub key: Template,
    /// `(statuses, time)`, first match wins; an empty status list means
    /// 200, 301 and 302, as nginx's `proxy_cache_valid`.
    pub valid: Vec<(Vec<u16>, Duration)>,
    /// Shared by the routes of the Ingress (and its copies).
    pub store: std::sync::Arc<AuthCache>,
}

/// A parsed template: literal text and variables.
#[derive(Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    Var(Var),
}

/// The nginx variables a template may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Var {
    /// `$host`: the request's host, lowercase, without port.
    Host,
    /// `$http_host`, `$best_http_host`: the `Host` header as sent.
    HttpHost,
    /// `$scheme`, `$pass_access_scheme`: `http` or `https`.
    Scheme,
    /// `$request_uri`: the path and query as sent.
    RequestUri,
    /// `$escaped_request_uri`: `$request_uri` with every character but
    /// letters, digits and `-._~` percent-escaped (set-misc's
    /// `set_escape_uri`, which ingress-nginx uses).
    EscapedRequestUri,
    /// `$uri`, `$document_uri`: the path.
    Uri,
    /// `$args`, `$query_string`: the query.
    Args,
    /// `$is_args`: `?` when there is a query.
    IsArgs,
    /// `$remote_addr`: the client's address.
    RemoteAddr,
    /// `$remote_user`: the user name of a Basic `Authorization` header.
    RemoteUser,
    /// `$request_method`.
    RequestMethod,
    /// `$http_<name>`: a request header (`_` for `-`).
    Header(HeaderName),
    /// `$cookie_<name>`: a cookie's value.
    Cookie(String),
    /// `$arg_<name>`: a query argument's value, as sent.
    Arg(String),
}

/// Where an expanded template goes, which decides what is escaped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Context {
    /// Into a URL: values that are not already URL text are
    /// percent-escaped.
    Url,
    /// Into a header value or a cache key: as they are (a request header's
    /// value is already a valid header value).
    Plain,
}

/// What a request offers the variables.
#[derive(Debug)]
pub struct Vars<'a> {
    /// The `Host` header as sent (the endpoint's `:authority` for HTTP/2).
    pub http_host: &'a str,
    /// Lowercase, without port.
    pub host: &'a str,
    pub scheme: &'static str,
    pub uri: &'a Uri,
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    pub remote_addr: &'a str,
}

/// Answers of the auth service by key, bounded: at most [`AuthCache::MAX`]
/// entries, each at most [`AuthCache::MAX_ENTRY_BYTES`] of headers.
#[derive(Default)]
pub struct AuthCache {
    entries: Mutex<HashMap<[u8; 32], Cached>>,
}

/// One kept answer of the auth service.
#[derive(Clone, Debug)]
pub struct Cached {
    pub status: StatusCode,
    pub headers: HeaderMap,
    expires: Instant,
}

/// Characters kept as they are by `set_escape_uri`: RFC 3986's unreserved.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Percent-escapes every byte `keep` does not keep.
pub fn escape(text: &str, keep: impl Fn(u8) -> bool, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in text.as_bytes() {
        if keep(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

// === impl Template ===

impl Template {
    /// Parses nginx's `$name` and `${name}` in `text`. `Err` names the
    /// variable that is not known or not well-formed.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            literal.push_str(&rest[..at]);
            rest = &rest[at + 1..];
            let name = if let Some(braced) = rest.strip_prefix('{') {
                let end = braced
                    .find('}')
                    .ok_or_else(|| format!("has an unclosed \"${{\" in {text:?}"))?;
                rest = &braced[end + 1..];
                &braced[..end]
            } else {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                let name = &rest[..end];
                rest = &rest[end..];
                name
            };
            let var = Var::parse(name)?;
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(Part::Var(var));
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Self { parts })
    }

    /// A template of literal text only.
    pub fn literal(text: &str) -> Self {
        Self {
            parts: vec![Part::Literal(text.to_string())],
        }
    }

    /// Appends literal text.
    pub fn push_literal(&mut self, text: &str) {
        self.parts.push(Part::Literal(text.to_string()));
    }

    /// Appends a variable.
    pub fn push_var(&mut self, var: Var) {
        self.parts.push(Part::Var(var));
    }

    /// The literal text of the template, variables left out: what a check
    /// of the fixed parts looks at.
    pub fn literals(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Literal(text) => Some(text.as_str()),
            Part::Var(_) => None,
        })
    }

    /// The text the template starts with, before any variable.
    pub fn prefix(&self) -> &str {
        match self.parts.first() {
            Some(Part::Literal(text)) => text,
            _ => "",
        }
    }

    /// Whether it uses any variable.
    pub fn has_vars(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Var(_)))
    }

    /// The text for one request.
    pub fn expand(&self, vars: &Vars<'_>, context: Context) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Var(var) => var.expand(vars, context, &mut out),
            }
        }
        out
    }
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Template(")?;
        for part in &self.parts {
            match part {
                Part::Literal(text) => write!(f, "{text:?}")?,
                Part::Var(var) => write!(f, "{var:?}")?,
            }
        }
        f.write_str(")")
    }
}

// === impl Var ===

impl Var {
    fn parse(name: &str) -> Result<Self, String> {
        let lower = name.to_ascii_lowercase();
        let var = match lower.as_str() {
            "" => return Err("has a \"$\" without a variable name (write it as ${...})".into()),
            "host" => Var::Host,
            "http_host" | "best_http_host" => Var::HttpHost,
            "scheme" | "pass_access_scheme" => Var::Scheme,
            "request_uri" => Var::RequestUri,
            "escaped_request_uri" => Var::EscapedRequestUri,
            "uri" | "document_uri" => Var::Uri,
            "args" | "query_string" => Var::Args,
            "is_args" => Var::IsArgs,
            "remote_addr" => Var::RemoteAddr,
            "remote_user" => Var::RemoteUser,
            "request_method" => Var::RequestMethod,
            other => {
                if let Some(header) = other.strip_prefix("http_").filter(|h| !h.is_empty()) {
                    let header = HeaderName::from_bytes(header.replace('_', "-").as_bytes())
                        .map_err(|_| format!("uses ${name}, which names no valid header"))?;
                    Var::Header(header)
                } else if let Some(cookie) = name.strip_prefix("cookie_").filter(|c| !c.is_empty())
                {
                    Var::Cookie(cookie.to_string())
                } else if let Some(arg) = name.strip_prefix("arg_").filter(|a| !a.is_empty()) {
                    Var::Arg(arg.to_string())
                } else {
                    return Err(format!(
                        "uses ${name}, which RustStrom does not know (see docs/annotations.md for the variables it expands)"
                    ));
                }
            }
        };
        Ok(var)
    }

    fn expand(&self, vars: &Vars<'_>, context: Context, out: &mut String) {
        let url = context == Context::Url;
        // Already URL text (from a parsed request URI) or a plain token:
        // goes in as it is.
        let mut raw = |text: &str| out.push_str(text);
        match self {
            Var::Scheme => raw(vars.scheme),
            Var::RequestUri => raw(request_uri(vars.uri)),
            Var::Uri => raw(vars.uri.path()),
            Var::Args => raw(vars.uri.query().unwrap_or("")),
            Var::IsArgs => raw(if vars.uri.query().is_some() { "?" } else { "" }),
            Var::RequestMethod => raw(vars.method.as_str()),
            Var::EscapedRequestUri => escape(request_uri(vars.uri), unreserved, out),
            Var::Host => self.value(vars.host, url, out),
            Var::HttpHost => self.value(vars.http_host, url, out),
            Var::RemoteAddr => self.value(vars.remote_addr, url, out),
            Var::RemoteUser => self.value(&remote_user(vars.headers).unwrap_or_default(), url, out),
            Var::Header(name) => {
                let value = vars.headers.get(name).and_then(|v| v.to_str().ok());
                self.value(value.unwrap_or(""), url, out);
            }
            Var::Cookie(name) => {
                let value = cookie(vars.headers, name).unwrap_or("");
                self.value(value, url, out);
            }
            Var::Arg(name) => {
                let value = arg(vars.uri, name).unwrap_or("");
                // Already percent-encoded as sent: `%` is kept, so it is
                // not escaped twice.
                if url {
                    escape(value, |b| unreserved(b) || b == b'%', out);
                } else {
                    out.push_str(value);
                }
            }
        }
    }

    /// A value from the request into `out`: in a URL, hosts keep host
    /// characters and everything else is escaped.
    fn value(&self, value: &str, url: bool, out: &mut String) {
        if !url {
            out.push_str(value);
        } else if matches!(self, Var::Host | Var::HttpHost) {
            escape(
                value,
                |b| unreserved(b) || matches!(b, b':' | b'[' | b']'),
                out,
            );
        } else {
            escape(value, unreserved, out);
        }
    }
}

fn request_uri(uri: &Uri) -> &str {
    uri.path_and_query().map_or("/", |pq| pq.as_str())
}

/// The user name of a Basic `Authorization` header, as nginx's
/// `$remote_user` (whether or not the password is right).
fn remote_user(headers: &HeaderMap) -> Option<String> {
    use base64::Engine;
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    Some(
        text.split_once(':')
            .map_or(text.as_str(), |(u, _)| u)
            .to_string(),
    )
}

/// A cookie's value from the `Cookie` headers.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

/// A query argument's value as sent (nginx's `$arg_`: the first, name
/// matched without case).
fn arg<'u>(uri: &'u Uri, name: &str) -> Option<&'u str> {
    uri.query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        k.eq_ignore_ascii_case(name).then_some(v)
    })
}

// === impl ExtAuth ===

impl fmt::Debug for ExtAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set: Vec<&str> = self
            .proxy_set_headers
            .iter()
            .map(|(name, _)| name.as_str())
            .collect();
        f.debug_struct("ExtAuth")
            .field("url", &self.url)
            .field("method", &self.method)
            .field("signin", &self.signin)
            .field("response_headers", &self.response_headers)
            .field("request_redirect", &self.request_redirect)
            .field("proxy_set_headers", &set)
            .field("cache", &self.cache)
            .field("always_set_cookie", &self.always_set_cookie)
            .finish()
    }
}

// === impl CachePolicy ===

impl CachePolicy {
    /// How long an answer with `status` is kept; `None`: not at all.
    pub fn ttl(&self, status: StatusCode) -> Option<Duration> {
        let code = status.as_u16();
        self.valid.iter().find_map(|(codes, ttl)| {
            let listed = if codes.is_empty() {
                matches!(code, 200 | 301 | 302)
            } else {
                codes.contains(&code)
            };
            listed.then_some(*ttl)
        })
    }
}

/// The cache is state, not configuration: two policies are the same when
/// they say the same.
impl PartialEq for CachePolicy {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key && self.valid == other.valid
    }
}

impl Eq for CachePolicy {}

// === impl AuthCache ===

impl AuthCache {
    /// Entries kept per Ingress; a full cache first drops expired entries,
    /// then an arbitrary one.
    pub const MAX: usize = 4096;
    /// An answer with more header bytes than this is not kept.
    pub const MAX_ENTRY_BYTES: usize = 8 * 1024;

    /// The key of one request: a SHA-256 of the host and the expanded
    /// `auth-cache-key`, so an entry's key is small whatever the request
    /// sent (nginx keeps an MD5 of the same).
    pub fn key(host: &str, expanded: &str) -> [u8; 32] {
        let mut hash = Sha256::new();
        hash.update(host.as_bytes());
        hash.update([0]);
        hash.update(expanded.as_bytes());
        hash.finalize().into()
    }

    /// A live entry.
    pub fn get(&self, key: &[u8; 32]) -> Option<Cached> {
        let mut entries = self.entries.lock();
        let entry = entries.get(key)?;
        if entry.expires <= Instant::now() {
            entries.remove(key);
            return None;
        }
        Some(entry.clone())
    }

    /// Keeps an answer for `ttl`, unless its headers are too large.
    pub fn put(&self, key: [u8; 32], status: StatusCode, headers: HeaderMap, ttl: Duration) {
        let size: usize = headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len())
            .sum();
        if size > Self::MAX_ENTRY_BYTES {
            return;
        }
        let now = Instant::now();
        let mut entries = self.entries.lock();
        if entries.len() >= Self::MAX && !entries.contains_key(&key) {
            entries.retain(|_, e| e.expires > now);
            if entries.len() >= Self::MAX
                && let Some(any) = entries.keys().next().copied()
            {
                entries.remove(&any);
            }
        }
        entries.insert(
            key,
            Cached {
                status,
                headers,
                expires: now + ttl,
            },
        );
    }

    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for AuthCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthCache")
            .field("entries", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn vars<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Vars<'a> {
        Vars {
            http_host: "App.Example:8443",
            host: "app.example",
            scheme: "https",
            uri,
            method: &Method::GET,
            headers,
            remote_addr: "192.0.2.7",
        }
    }

    #[test]
    fn expands_and_escapes_for_urls() {
        let uri: Uri = "/a%20b/c?x=1&next=/p&y=%2F".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-team", HeaderValue::from_static("a/b?c&d=e f"));
        headers.insert(
            "cookie",
            HeaderValue::from_static("a=1; session=s p/x; b=2"),
        );
        let v = vars(&uri, &headers);
        // (template, URL expansion, plain expansion)
        let cases = [
            (
                "https://$host/oauth2/auth",
                "https://app.example/oauth2/auth",
                "https://app.example/oauth2/auth",
            ),
            (
                "$scheme://$best_http_host$request_uri",
                "https://App.Example:8443/a%20b/c?x=1&next=/p&y=%2F",
                "https://App.Example:8443/a%20b/c?x=1&next=/p&y=%2F",
            ),
            (
                "rd=$escaped_request_uri",
                "rd=%2Fa%2520b%2Fc%3Fx%3D1%26next%3D%2Fp%26y%3D%252F",
                "rd=%2Fa%2520b%2Fc%3Fx%3D1%26next%3D%2Fp%26y%3D%252F",
            ),
            (
                "t=${http_x_team}",
                "t=a%2Fb%3Fc%26d%3De%20f",
                "t=a/b?c&d=e f",
            ),
            ("s=$cookie_session", "s=s%20p%2Fx", "s=s p/x"),
            (
                "y=$arg_y&n=$arg_next&z=$arg_z",
                "y=%2F&n=%2Fp&z=",
                "y=%2F&n=/p&z=",
            ),
            (
                "$remote_addr $request_method $uri$is_args$args",
                "192.0.2.7 GET /a%20b/c?x=1&next=/p&y=%2F",
                "192.0.2.7 GET /a%20b/c?x=1&next=/p&y=%2F",
            ),
        ];
        for (text, url, plain) in cases {
            let t = Template::parse(text).unwrap();
            assert_eq!(t.expand(&v, Context::Url), url, "{text}");
            assert_eq!(t.expand(&v, Context::Plain), plain, "{text}");
        }
    }

    #[test]
    fn remote_user_is_the_basic_user_name() {
        let uri: Uri = "/".parse().unwrap();
        let mut headers = HeaderMap::new();
        // alice:secret
        headers.insert(
            "authorization",
            HeaderValue::from_static("Basic YWxpY2U6c2VjcmV0"),
        );
        let t = Template::parse("$remote_user$http_authorization").unwrap();
        assert_eq!(
            t.expand(&vars(&uri, &headers), Context::Plain),
            "aliceBasic YWxpY2U6c2VjcmV0"
        );
    }

    #[test]
    fn unknown_or_broken_variables_are_refused() {
        for bad in ["$nope", "x$", "${host", "$http_", "${}", "$server_name"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
        let ok = Template::parse("${host}x$HOST").unwrap();
        assert!(ok.has_vars());
        assert_eq!(
            Template::parse("plain").unwrap(),
            Template::literal("plain")
        );
    }

    #[test]
    fn cache_is_bounded_and_expires() {
        let cache = AuthCache::default();
        let ttl = Duration::from_secs(60);
        for i in 0..AuthCache::MAX + 10 {
            let key = AuthCache::key("h", &i.to_string());
            cache.put(key, StatusCode::OK, HeaderMap::new(), ttl);
        }
        assert_eq!(cache.len(), AuthCache::MAX);
        let key = AuthCache::key("h", "fresh");
        cache.put(key, StatusCode::OK, HeaderMap::new(), Duration::ZERO);
        assert!(cache.get(&key).is_none(), "expired at once");
        let mut big = HeaderMap::new();
        big.insert("x-big", HeaderValue::from_str(&"a".repeat(9000)).unwrap());
        let key = AuthCache::key("h", "big");
        cache.put(key, StatusCode::OK, big, ttl);
        assert!(cache.get(&key).is_none(), "too large to keep");
    }
}
