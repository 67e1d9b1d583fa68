//! Who may use the dashboard, and which POSTs are the page's own.
//!
//! - Bound to loopback (the default, reached with `kubectl port-forward`),
//!   no token is needed, but the `Host` header must name loopback
//!   (`localhost`, `127.0.0.1`, `[::1]`): a web page elsewhere cannot use
//!   DNS rebinding to read the dashboard through a browser on that machine.
//! - Bound to any other address, `--dashboard-token` is required (the
//!   process refuses to start without it), and every request but the login
//!   form and the static assets must carry it: as `Authorization: Bearer
//!   <token>` (scripts), or as the session cookie the login form sets
//!   (browsers). The cookie holds a random session value, never the token.
//! - Mutating actions are POSTs carrying `X-CSRF-Token`, a random value the
//!   page gets inside its HTML; a cross-site request cannot read it, and a
//!   POST announcing another origin (`Origin`, `Sec-Fetch-Site`) is refused
//!   as well.

use std::net::SocketAddr;

use http::{HeaderMap, Request, header};
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub const COOKIE: &str = "ruststrom_dashboard";
/// The header a POST must carry.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Why a request is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Denied {
    /// No valid token or session: log in.
    Unauthenticated,
    /// A loopback dashboard asked for by a name that is not loopback.
    ForeignHost,
    /// A POST without the page's CSRF token, or from another origin.
    Csrf,
}

/// The dashboard's guard, made once at start.
pub struct Guard {
    token: Option<String>,
    session: String,
    csrf: String,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token, the session or the CSRF value.
        f.debug_struct("Guard")
            .field("token", &self.token.is_some())
            .finish_non_exhaustive()
    }
}

impl Guard {
    /// The guard for a dashboard on `addr`; refuses a non-loopback address
    /// without a token.
    pub fn new(addr: SocketAddr, token: Option<String>) -> anyhow::Result<Self> {
        let token = token.filter(|t| !t.trim().is_empty());
        anyhow::ensure!(
            addr.ip().is_loopback() || token.is_some(),
            "--dashboard-addr {addr} is not a loopback address: give --dashboard-token \
             (or the RUST_STROM_DASHBOARD_TOKEN environment variable), or bind 127.0.0.1"
        );
        Ok(Self {
            token,
            session: random_hex()?,
            csrf: random_hex()?,
        })
    }

    /// Whether a token is required.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// The value the page sends back in [`CSRF_HEADER`].
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// Checks any request but the login form and the assets.
    pub fn check<B>(&self, req: &Request<B>) -> Result<(), Denied> {
        let headers = req.headers();
        match &self.token {
            None if !loopback_host(headers) => Err(Denied::ForeignHost),
            None => Ok(()),
            Some(token) => {
                let bearer = (headers.get(header::AUTHORIZATION))
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .is_some_and(|v| same(v.trim(), token));
                let session = cookie(headers, COOKIE).is_some_and(|v| same(v, &self.session));
                if bearer || session {
                    Ok(())
                } else {
                    Err(Denied::Unauthenticated)
                }
            }
        }
    }

    /// Checks a mutating request: the CSRF token, and no other origin.
    pub fn check_post<B>(&self, req: &Request<B>) -> Result<(), Denied> {
        let headers = req.headers();
        let csrf = (headers.get(CSRF_HEADER))
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| same(v, &self.csrf));
        if csrf && same_origin(headers) {
            Ok(())
        } else {
            Err(Denied::Csrf)
        }
    }

    /// The login form's answer: the session cookie when `offered` is the
    /// token.
    pub fn login(&self, offered: &str) -> Option<String> {
        let token = self.token.as_deref()?;
        same(offered.trim(), token).then(|| {
            format!(
                "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200",
                self.session
            )
        })
    }
}

/// Whether a browser says the request comes from another site.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let site_ok = (headers.get("sec-fetch-site"))
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v == "same-origin" || v == "none");
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_ok = match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(origin) => {
            let authority = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"));
            authority.is_some() && authority == host
        }
    };
    site_ok && origin_ok
}

/// Whether the `Host` header names loopback (any port).
fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        // HTTP/1.0 without Host: no browser sends that.
        return true;
    };
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// One cookie's value (the proxy's own reader).
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    crate::proxy::cookie::value(headers, name)
}

/// Constant-time comparison: how long a refusal takes says nothing about
/// how much of the guess was right.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// 32 random bytes from the operating system, as hex.
fn random_hex() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("no random numbers for the dashboard: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder();
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn a_public_address_needs_a_token() {
        assert!(Guard::new("0.0.0.0:3000".parse().unwrap(), None).is_err());
        assert!(Guard::new("0.0.0.0:3000".parse().unwrap(), Some(" ".into())).is_err());
        assert!(Guard::new("0.0.0.0:3000".parse().unwrap(), Some("t".into())).is_ok());
        assert!(Guard::new("127.0.0.1:3000".parse().unwrap(), None).is_ok());
    }

    #[test]
    fn loopback_without_token_checks_the_host() {
        let g = Guard::new("127.0.0.1:3000".parse().unwrap(), None).unwrap();
        assert_eq!(g.check(&req(&[("host", "localhost:3000")])), Ok(()));
        assert_eq!(g.check(&req(&[("host", "127.0.0.1:3000")])), Ok(()));
        assert_eq!(g.check(&req(&[("host", "[::1]:3000")])), Ok(()));
        assert_eq!(
            g.check(&req(&[("host", "evil.example:3000")])),
            Err(Denied::ForeignHost)
        );
    }

    #[test]
    fn a_token_is_a_bearer_or_a_session_cookie() {
        let g = Guard::new("0.0.0.0:3000".parse().unwrap(), Some("s3cret".into())).unwrap();
        assert_eq!(g.check(&req(&[])), Err(Denied::Unauthenticated));
        assert_eq!(
            g.check(&req(&[("authorization", "Bearer wrong")])),
            Err(Denied::Unauthenticated)
        );
        assert_eq!(g.check(&req(&[("authorization", "Bearer s3cret")])), Ok(()));
        assert!(g.login("wrong").is_none());
        let set = g.login("s3cret").unwrap();
        assert!(
            !set.contains("s3cret"),
            "the cookie must not hold the token"
        );
        let value = set.split(';').next().unwrap();
        assert_eq!(g.check(&req(&[("cookie", value)])), Ok(()));
        assert_eq!(
            g.check(&req(&[("cookie", "ruststrom_dashboard=forged")])),
            Err(Denied::Unauthenticated)
        );
    }

    #[test]
    fn posts_need_the_csrf_token_and_the_same_origin() {
        let g = Guard::new("127.0.0.1:3000".parse().unwrap(), None).unwrap();
        let csrf = g.csrf().to_string();
        assert_eq!(g.check_post(&req(&[])), Err(Denied::Csrf));
        assert_eq!(
            g.check_post(&req(&[(CSRF_HEADER, "nope")])),
            Err(Denied::Csrf)
        );
        let host = ("host", "localhost:3000");
        assert_eq!(g.check_post(&req(&[host, (CSRF_HEADER, &csrf)])), Ok(()));
        assert_eq!(
            g.check_post(&req(&[
                host,
                (CSRF_HEADER, &csrf),
                ("origin", "http://evil.example")
            ])),
            Err(Denied::Csrf)
        );
        assert_eq!(
            g.check_post(&req(&[
                host,
                (CSRF_HEADER, &csrf),
                ("origin", "http://localhost:3000"),
                ("sec-fetch-site", "same-origin")
            ])),
            Ok(())
        );
    }
}
