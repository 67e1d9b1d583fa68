//! What an Ingress's annotations ask of its routes on the request path,
//! parsed and checked at compile time (see `docs/annotations.md`).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use ipnet::IpNet;

use super::{ClientLimits, Cors};

/// The request-path features of one Ingress's routes, shared by them all.
///
/// A route carries `Option<Arc<RouteFeatures>>`: `None` for an Ingress
/// without such annotations, so plain routes pay one pointer test. The proxy
/// applies the features in the order of the fields below.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteFeatures {
    /// `app-root`: a request for `/` is redirected (302) to this path.
    pub app_root: Option<HeaderValue>,
    /// `permanent-redirect` or `temporal-redirect`: every request is
    /// answered with this redirect instead of reaching the backend.
    pub redirect: Option<Redirect>,
    /// `whitelist-source-range` / `allowlist-source-range`,
    /// `denylist-source-range`: 403 for other client addresses.
    pub source_ranges: Option<SourceRanges>,
    /// `limit-connections`, `limit-rps`, `limit-rpm`: 429 for a client
    /// address over them.
    pub limits: Option<ClientLimits>,
    /// `enable-cors`: preflights answered here (204), CORS headers on
    /// every answer for an allowed origin.
    pub cors: Option<Cors>,
    /// `auth-type: basic`: the users who may pass, 401 for others.
    pub basic_auth: Option<BasicAuth>,
    /// `auth-url` and its family: a subrequest decides (after basic auth).
    pub ext_auth: Option<super::ExtAuth>,
    /// `proxy-body-size`: the largest request body in bytes (413 above it).
    /// `None`: no limit.
    pub max_body: Option<u64>,
    /// `upstream-vhost`: the `Host` the backend gets.
    pub upstream_vhost: Option<HeaderValue>,
    /// `x-forwarded-prefix`: sent to the backend as `X-Forwarded-Prefix`.
    pub forwarded_prefix: Option<HeaderValue>,
    /// `ruststrom.io/request-headers`: applied to the request last, after
    /// the forwarding headers.
    pub request_headers: Option<HeaderEdits>,
    /// `custom-headers`: set on the backend's answer, from a ConfigMap.
    pub custom_headers: Option<HeaderEdits>,
    /// `ruststrom.io/response-headers`: applied to the backend's answer,
    /// after `custom-headers`.
    pub response_headers: Option<HeaderEdits>,
    /// `ruststrom.io/compression`: the encodings the answers may get,
    /// overriding `--compression`; an empty set turns it off. `None`: as
    /// `--compression` says.
    pub compression: Option<Encodings>,
    /// `custom-http-errors`: the backend's answers with these statuses are
    /// replaced by the error backend's (the route's `error_backend`, from
    /// `default-backend`), or by the proxy's own short page without one.
    pub custom_http_errors: Option<ErrorCodes>,
}

/// Response statuses from 400 to 599, as a set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ErrorCodes([u64; 4]);

/// A response compression encoding, in the order of preference when a
/// client accepts several equally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Zstd = 0,
    Brotli = 1,
    Gzip = 2,
}

/// A set of [`Encoding`]s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Encodings(u8);

/// The users of a `basic` auth Secret, with their password hashes.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicAuth {
    /// `WWW-Authenticate: Basic realm="..."` for a 401.
    pub challenge: HeaderValue,
    pub users: BTreeMap<String, PasswordHash>,
}

/// One htpasswd entry's hash, in the forms `htpasswd` and `openssl passwd`
/// write.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordHash {
    /// `$2a$`, `$2b$`, `$2y$`: bcrypt, the whole string.
    Bcrypt(String),
    /// `$apr1$salt$hash` (htpasswd's default) or `$1$salt$hash`.
    Md5Crypt {
        magic: &'static str,
        salt: String,
        hash: String,
    },
    /// `{SHA}` and base64: one SHA-1 of the password.
    Sha1([u8; 20]),
    /// `$5$` or `$6$`: SHA-256 or SHA-512 crypt, the whole string.
    ShaCrypt(String),
}

/// Hashes stay out of logs and debug output.
impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuth")
            .field("challenge", &self.challenge)
            .field("users", &self.users.len())
            .finish()
    }
}

/// The kind of hash only.
impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PasswordHash::Bcrypt(_) => "Bcrypt",
            PasswordHash::Md5Crypt { .. } => "Md5Crypt",
            PasswordHash::Sha1(_) => "Sha1",
            PasswordHash::ShaCrypt(_) => "ShaCrypt",
        })
    }
}

/// Headers to remove, then headers to set (replacing any of that name).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderEdits {
    pub remove: Vec<HeaderName>,
    pub set: Vec<(HeaderName, HeaderValue)>,
}

/// A fixed redirect: its status (3xx) and `Location`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    pub status: StatusCode,
    pub location: HeaderValue,
}

/// Which client addresses may use the routes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceRanges {
    /// When not empty, only these are allowed.
    pub allow: Vec<IpNet>,
    /// Never allowed, even when also in `allow` (as ingress-nginx, whose
    /// deny rules come first).
    pub deny: Vec<IpNet>,
}

// === impl RouteFeatures ===

impl RouteFeatures {
    /// Whether it asks nothing, so the routes can carry `None` instead.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

// === impl ErrorCodes ===

impl ErrorCodes {
    pub const MIN: u16 = 400;
    pub const MAX: u16 = 599;

    /// Adds `code`; false when it is not from 400 to 599.
    pub fn insert(&mut self, code: u16) -> bool {
        if !(Self::MIN..=Self::MAX).contains(&code) {
            return false;
        }
        let i = usize::from(code - Self::MIN);
        self.0[i / 64] |= 1 << (i % 64);
        true
    }

    pub fn contains(&self, code: u16) -> bool {
        if !(Self::MIN..=Self::MAX).contains(&code) {
            return false;
        }
        let i = usize::from(code - Self::MIN);
        self.0[i / 64] & (1 << (i % 64)) != 0
    }

    pub fn is_empty(&self) -> bool {
        self.0 == [0; 4]
    }
}

// === impl Encoding ===

impl Encoding {
    /// In order of preference: zstd and brotli give smaller output than
    /// gzip, zstd for less CPU.
    pub const ALL: [Encoding; 3] = [Encoding::Zstd, Encoding::Brotli, Encoding::Gzip];

    /// Its `Content-Encoding` token.
    pub fn coding(self) -> &'static str {
        match self {
            Encoding::Zstd => "zstd",
            Encoding::Brotli => "br",
            Encoding::Gzip => "gzip",
        }
    }

    /// From an `Accept-Encoding` token (`x-gzip` is gzip, RFC 9110 8.4.1.3).
    pub fn from_coding(token: &str) -> Option<Self> {
        let token = token.trim();
        Self::ALL
            .into_iter()
            .find(|a| a.coding().eq_ignore_ascii_case(token))
            .or_else(|| {
                token
                    .eq_ignore_ascii_case("x-gzip")
                    .then_some(Encoding::Gzip)
            })
    }
}

// === impl Encodings ===

impl Encodings {
    pub const NONE: Encodings = Encodings(0);
    pub const ALL: Encodings = Encodings(0b111);

    pub fn contains(self, encoding: Encoding) -> bool {
        self.0 & (1 << encoding as u8) != 0
    }

    pub fn insert(&mut self, encoding: Encoding) {
        self.0 |= 1 << encoding as u8;
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

// === impl HeaderEdits ===

impl HeaderEdits {
    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
    }
}

// === impl SourceRanges ===

impl SourceRanges {
    /// Whether a client address may pass. An IPv4-mapped IPv6 address is
    /// matched as the IPv4 address it carries (a dual-stack listener sees
    /// IPv4 clients that way).
    pub fn allows(&self, client: IpAddr) -> bool {
        let client = match client {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(client, IpAddr::V4),
            v4 => v4,
        };
        if self.deny.iter().any(|net| net.contains(&client)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|net| net.contains(&client))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn deny_wins_then_allow_list() {
        let ranges = SourceRanges {
            allow: nets(&["10.0.0.0/8", "fd00::/8"]),
            deny: nets(&["10.1.0.0/16"]),
        };
        for (ip, want) in [
            ("10.2.3.4", true),
            ("10.1.2.3", false),
            ("192.168.1.1", false),
            ("fd00::1", true),
            ("::ffff:10.2.3.4", true),
            ("::ffff:10.1.2.3", false),
        ] {
            assert_eq!(ranges.allows(ip.parse().unwrap()), want, "{ip}");
        }
        let deny_only = SourceRanges {
            allow: Vec::new(),
            deny: nets(&["127.0.0.1/32"]),
        };
        assert!(!deny_only.allows("127.0.0.1".parse().unwrap()));
        assert!(deny_only.allows("127.0.0.2".parse().unwrap()));
    }
}
