//! Every ingress-nginx annotation name, and what RustStrom does with it.
//!
//! `docs/annotations.md` has the same list as a table; a test fails when
//! the two differ.

/// What RustStrom does with one annotation name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Read, with ingress-nginx's meaning (differences are documented).
    Honoured,
    /// Tunes something RustStrom does not have (nginx's buffers, its log
    /// modules, ...): accepted, with a notice that it has no effect.
    Ignored,
    /// Accepted (without effect) when its value is one of these, which is
    /// what RustStrom does anyway; any other value is refused.
    OnlyAs(&'static [&'static str]),
    /// Not served: RustStrom cannot do what it asks, and serving the Ingress
    /// without it could expose or misroute traffic.
    Refused,
}

/// One annotation name (without prefix).
#[derive(Clone, Copy, Debug)]
pub struct Known {
    pub name: &'static str,
    pub status: Status,
    /// Why it has that status (said in the notice or the rejection).
    pub why: &'static str,
    /// Also read under `nginx.ingress.kubernetes.io/`: false for the names
    /// only RustStrom has.
    pub nginx: bool,
}

use Status::{Honoured, Ignored, OnlyAs, Refused};

const fn n(name: &'static str, status: Status, why: &'static str) -> Known {
    Known {
        name,
        status,
        why,
        nginx: true,
    }
}

const fn ours(name: &'static str, why: &'static str) -> Known {
    Known {
        name,
        status: Honoured,
        why,
        nginx: false,
    }
}

const SNIPPET: &str = "raw nginx configuration cannot be honoured, and may carry access rules";
const WAF: &str =
    "no web application firewall in RustStrom; serving without it would drop the protection";
const AUTH_KEEPALIVE: &str =
    "tunes nginx's connections to auth-url; RustStrom keeps them alive in its own pools";
const CLIENT_CERT: &str = "client certificate authentication is not implemented yet; served without it, the routes would be open";
const GLOBAL_LIMITS: &str = "global rate limits (counted across replicas in memcached) are not implemented; served without them, the routes would be unlimited";
const BANDWIDTH: &str = "answers are not slowed to a bandwidth per connection (not an access restriction); they go at full speed";
const CANARY: &str = "canary routing is not implemented; the canary Ingress would take or conflict with the main one's traffic";
const REWRITE: &str =
    "path rewriting is not implemented; the backend would get other paths than asked";
const BACKEND_TLS: &str =
    "TLS to backends is not implemented; requests would go to the backend in plain text";
const HEADERS: &str =
    "not implemented yet: the backend or the client would get other headers than asked";
const BUFFERS: &str = "tunes nginx's buffering; RustStrom streams bodies both ways";
const TIMEOUTS: &str =
    "per-Ingress timeouts are not read from annotations; use a BalancerPolicy (timeouts)";
const BALANCING: &str =
    "balancing is not read from annotations; use a BalancerPolicy (algorithm, hash key)";
const AFFINITY: &str =
    "session affinity is not read from annotations; use a BalancerPolicy (sticky cookie)";
const LOGGING: &str = "tunes nginx's logging and tracing modules, which RustStrom does not have";

/// Every ingress-nginx annotation (its docs and its parsers), a few it has
/// retired that restrict access, and RustStrom's own names.
pub const KNOWN: &[Known] = &[
    // RustStrom's own, under ruststrom.io/ only.
    ours(
        "request-headers",
        "headers to set on or remove from the request to the backend (JSON: set, remove)",
    ),
    ours(
        "response-headers",
        "headers to set on or remove from the backend's answer (JSON: set, remove)",
    ),
    ours(
        "hsts",
        "the Strict-Transport-Security value for HTTPS answers (a ConfigMap option in ingress-nginx)",
    ),
    ours(
        "compression",
        "compresses answers: true, false, or the encodings allowed (gzip, br, zstd)",
    ),
    // Session affinity.
    n("affinity", Ignored, AFFINITY),
    n("affinity-mode", Ignored, AFFINITY),
    n("affinity-canary-behavior", Ignored, AFFINITY),
    n("session-cookie-change-on-failure", Ignored, AFFINITY),
    n(
        "session-cookie-conditional-samesite-none",
        Ignored,
        AFFINITY,
    ),
    n("session-cookie-domain", Ignored, AFFINITY),
    n("session-cookie-expires", Ignored, AFFINITY),
    n("session-cookie-max-age", Ignored, AFFINITY),
    n("session-cookie-name", Ignored, AFFINITY),
    n("session-cookie-path", Ignored, AFFINITY),
    n("session-cookie-samesite", Ignored, AFFINITY),
    n("session-cookie-secure", Ignored, AFFINITY),
    // Basic authentication.
    n(
        "auth-type",
        Honoured,
        "basic: the users of auth-secret must log in (401 otherwise); digest is refused",
    ),
    n(
        "auth-secret",
        Honoured,
        "the Secret (same namespace) with the users and their password hashes",
    ),
    n(
        "auth-secret-type",
        Honoured,
        "auth-file (htpasswd lines in key auth) or auth-map (one key per user)",
    ),
    n(
        "auth-realm",
        Honoured,
        "the realm of the WWW-Authenticate challenge",
    ),
    // External authentication.
    n(
        "auth-url",
        Honoured,
        "the URL (nginx variables allowed) a subrequest asks: 2xx passes, 401 signs in or answers 401, 403 answers 403, anything else 500",
    ),
    n(
        "auth-method",
        Honoured,
        "the subrequest's method (GET by default)",
    ),
    n(
        "auth-signin",
        Honoured,
        "where a 401 from auth-url redirects (302), with the original URL in the rd parameter",
    ),
    n(
        "auth-signin-redirect-param",
        Honoured,
        "the name of auth-signin's redirect parameter",
    ),
    n(
        "auth-response-headers",
        Honoured,
        "headers copied from auth-url's 2xx answer into the request to the backend",
    ),
    n(
        "auth-request-redirect",
        Honoured,
        "the X-Auth-Request-Redirect header of the subrequest",
    ),
    n(
        "auth-proxy-set-headers",
        Honoured,
        "a ConfigMap (same namespace) whose data are headers set on the subrequest",
    ),
    n(
        "auth-cache-key",
        Honoured,
        "caches auth-url's answers per expanded key (nginx variables)",
    ),
    n(
        "auth-cache-duration",
        Honoured,
        "which answers auth-cache-key keeps, and how long",
    ),
    n(
        "auth-always-set-cookie",
        Honoured,
        "the auth service's Set-Cookie on every answer, not only successful ones",
    ),
    n("auth-keepalive", Ignored, AUTH_KEEPALIVE),
    n("auth-keepalive-requests", Ignored, AUTH_KEEPALIVE),
    n("auth-keepalive-share-vars", Ignored, AUTH_KEEPALIVE),
    n("auth-keepalive-timeout", Ignored, AUTH_KEEPALIVE),
    n("auth-snippet", Refused, SNIPPET),
    n(
        "enable-global-auth",
        Ignored,
        "RustStrom has no global external authentication to turn on or off",
    ),
    n(
        "satisfy",
        Refused,
        "combines authentication with source ranges, which RustStrom does not do yet",
    ),
    // Client certificates.
    n("auth-tls-secret", Refused, CLIENT_CERT),
    n("auth-tls-verify-client", Refused, CLIENT_CERT),
    n("auth-tls-verify-depth", Refused, CLIENT_CERT),
    n("auth-tls-error-page", Refused, CLIENT_CERT),
    n(
        "auth-tls-pass-certificate-to-upstream",
        Refused,
        CLIENT_CERT,
    ),
    n("auth-tls-match-cn", Refused, CLIENT_CERT),
    // Backends.
    n(
        "backend-protocol",
        OnlyAs(&["HTTP"]),
        "only HTTP to backends; other protocols would be spoken wrongly",
    ),
    n(
        "service-upstream",
        Ignored,
        "RustStrom always balances over the endpoints itself",
    ),
    n("load-balance", Ignored, BALANCING),
    n("upstream-hash-by", Ignored, BALANCING),
    n("upstream-hash-by-subset", Ignored, BALANCING),
    n("upstream-hash-by-subset-size", Ignored, BALANCING),
    n(
        "fastcgi-index",
        Refused,
        "FastCGI backends are not supported",
    ),
    n(
        "fastcgi-params-configmap",
        Refused,
        "FastCGI backends are not supported",
    ),
    n("proxy-ssl-secret", Refused, BACKEND_TLS),
    n("proxy-ssl-ciphers", Refused, BACKEND_TLS),
    n("proxy-ssl-name", Refused, BACKEND_TLS),
    n("proxy-ssl-protocols", Refused, BACKEND_TLS),
    n("proxy-ssl-verify", OnlyAs(&["off"]), BACKEND_TLS),
    n("proxy-ssl-verify-depth", Refused, BACKEND_TLS),
    n("proxy-ssl-server-name", OnlyAs(&["off"]), BACKEND_TLS),
    n(
        "proxy-http-version",
        OnlyAs(&["1.1"]),
        "RustStrom speaks HTTP/1.1 to backends",
    ),
    n(
        "connection-proxy-header",
        Ignored,
        "RustStrom sets the Connection header to backends itself",
    ),
    // Canary.
    n("canary", OnlyAs(&["false"]), CANARY),
    n("canary-by-header", Refused, CANARY),
    n("canary-by-header-value", Refused, CANARY),
    n("canary-by-header-pattern", Refused, CANARY),
    n("canary-by-cookie", Refused, CANARY),
    n("canary-weight", Refused, CANARY),
    n("canary-weight-total", Refused, CANARY),
    // Buffers, timeouts, retries.
    n("client-body-buffer-size", Ignored, BUFFERS),
    n("proxy-buffering", Ignored, BUFFERS),
    n("proxy-buffers-number", Ignored, BUFFERS),
    n("proxy-buffer-size", Ignored, BUFFERS),
    n("proxy-busy-buffers-size", Ignored, BUFFERS),
    n("proxy-max-temp-file-size", Ignored, BUFFERS),
    n("proxy-request-buffering", Ignored, BUFFERS),
    n("proxy-connect-timeout", Ignored, TIMEOUTS),
    n("proxy-send-timeout", Ignored, TIMEOUTS),
    n("proxy-read-timeout", Ignored, TIMEOUTS),
    n(
        "proxy-next-upstream",
        Ignored,
        "retries are set by a BalancerPolicy (retry)",
    ),
    n(
        "proxy-next-upstream-timeout",
        Ignored,
        "retries are set by a BalancerPolicy (retry)",
    ),
    n(
        "proxy-next-upstream-tries",
        Ignored,
        "retries are set by a BalancerPolicy (retry)",
    ),
    n(
        "proxy-body-size",
        Honoured,
        "the largest request body; 413 above it",
    ),
    // Snippets and firewalls.
    n("configuration-snippet", Refused, SNIPPET),
    n("server-snippet", Refused, SNIPPET),
    n("stream-snippet", Refused, SNIPPET),
    n("modsecurity-snippet", Refused, SNIPPET),
    n("enable-modsecurity", OnlyAs(&["false"]), WAF),
    n("enable-owasp-core-rules", OnlyAs(&["false"]), WAF),
    n("modsecurity-transaction-id", Refused, WAF),
    n("lua-resty-waf", Refused, WAF),
    n("lua-resty-waf-debug", Refused, WAF),
    n("lua-resty-waf-ignore-rulesets", Refused, WAF),
    n("lua-resty-waf-extra-rules", Refused, WAF),
    n("lua-resty-waf-allow-unknown-content-types", Refused, WAF),
    n("lua-resty-waf-score-threshold", Refused, WAF),
    n("lua-resty-waf-process-multipart-body", Refused, WAF),
    // Errors and default backend.
    n(
        "custom-http-errors",
        Honoured,
        "answers with these statuses are replaced by the default-backend's",
    ),
    n(
        "default-backend",
        Honoured,
        "a Service of the Ingress's namespace for error pages and for routes without endpoints",
    ),
    n(
        "disable-proxy-intercept-errors",
        Ignored,
        "RustStrom never replaces a backend's error answers",
    ),
    // CORS.
    n(
        "enable-cors",
        Honoured,
        "preflights answered here (204), CORS headers on answers for allowed origins",
    ),
    n("cors-allow-origin", Honoured, "the origins allowed"),
    n(
        "cors-allow-methods",
        Honoured,
        "Access-Control-Allow-Methods",
    ),
    n(
        "cors-allow-headers",
        Honoured,
        "Access-Control-Allow-Headers",
    ),
    n(
        "cors-expose-headers",
        Honoured,
        "Access-Control-Expose-Headers",
    ),
    n(
        "cors-allow-credentials",
        Honoured,
        "Access-Control-Allow-Credentials: true (not with *)",
    ),
    n(
        "cors-max-age",
        Honoured,
        "Access-Control-Max-Age: seconds a preflight's answer may be cached",
    ),
    // Headers and host.
    n(
        "custom-headers",
        Honoured,
        "response headers from a ConfigMap (same namespace)",
    ),
    n(
        "x-forwarded-prefix",
        Honoured,
        "the X-Forwarded-Prefix header the backend gets",
    ),
    n(
        "upstream-vhost",
        Honoured,
        "the Host header the backend gets",
    ),
    n("proxy-cookie-domain", Refused, HEADERS),
    n("proxy-cookie-path", Refused, HEADERS),
    n("proxy-redirect-from", Refused, HEADERS),
    n("proxy-redirect-to", Refused, HEADERS),
    n(
        "server-alias",
        Honoured,
        "more names for the Ingress's hosts, served by all of those hosts' routes; never a name an Ingress has rules for",
    ),
    // Source ranges and limits.
    n(
        "whitelist-source-range",
        Honoured,
        "the client addresses allowed; 403 for others",
    ),
    n(
        "allowlist-source-range",
        Honoured,
        "the client addresses allowed; 403 for others",
    ),
    n(
        "denylist-source-range",
        Honoured,
        "the client addresses refused with 403",
    ),
    n(
        "limit-rps",
        Honoured,
        "requests per second per client address; 429 above the burst",
    ),
    n(
        "limit-rpm",
        Honoured,
        "requests per minute per client address; 429 above the burst",
    ),
    n(
        "limit-burst-multiplier",
        Honoured,
        "the burst: this many times the rate",
    ),
    n(
        "limit-connections",
        Honoured,
        "requests in flight per client address; 429 above",
    ),
    n("limit-rate", Ignored, BANDWIDTH),
    n("limit-rate-after", Ignored, BANDWIDTH),
    n(
        "limit-whitelist",
        Honoured,
        "client addresses never limited (limit-allowlist wins)",
    ),
    n(
        "limit-allowlist",
        Honoured,
        "client addresses never limited",
    ),
    n("global-rate-limit", Refused, GLOBAL_LIMITS),
    n("global-rate-limit-window", Refused, GLOBAL_LIMITS),
    n("global-rate-limit-key", Refused, GLOBAL_LIMITS),
    n("global-rate-limit-ignored-cidrs", Refused, GLOBAL_LIMITS),
    // Mirroring.
    n(
        "mirror-target",
        Ignored,
        "request mirroring is not implemented; requests are served, not copied",
    ),
    n(
        "mirror-host",
        Ignored,
        "request mirroring is not implemented; requests are served, not copied",
    ),
    n(
        "mirror-request-body",
        Ignored,
        "request mirroring is not implemented; requests are served, not copied",
    ),
    // Redirects and rewrites.
    n(
        "ssl-redirect",
        Honoured,
        "plain HTTP to a host with TLS is redirected to HTTPS (default true)",
    ),
    n(
        "force-ssl-redirect",
        Honoured,
        "plain HTTP is redirected to HTTPS even without TLS here",
    ),
    n(
        "preserve-trailing-slash",
        Ignored,
        "the HTTPS redirect always keeps the path as the client sent it",
    ),
    n(
        "permanent-redirect",
        Honoured,
        "every request is answered with a redirect to this URL (301 unless permanent-redirect-code)",
    ),
    n(
        "permanent-redirect-code",
        Honoured,
        "the status of permanent-redirect, 300 to 308",
    ),
    n(
        "temporal-redirect",
        Honoured,
        "every request is answered with a redirect to this URL (302 unless temporal-redirect-code); wins over permanent-redirect",
    ),
    n(
        "temporal-redirect-code",
        Honoured,
        "the status of temporal-redirect, 300 to 307",
    ),
    n(
        "app-root",
        Honoured,
        "a request for / is redirected (302) to this path",
    ),
    n(
        "from-to-www-redirect",
        Honoured,
        "the host's other name (with or without www.) redirects to it, unless an Ingress has rules for that name",
    ),
    n(
        "use-port-in-redirects",
        Ignored,
        "about redirects nginx makes itself (trailing slashes); RustStrom makes none",
    ),
    n(
        "relative-redirects",
        Ignored,
        "RustStrom's redirects name the full URL, which every client follows",
    ),
    n("rewrite-target", Refused, REWRITE),
    n(
        "use-regex",
        OnlyAs(&["false"]),
        "regular expression paths are not implemented; they would match other requests than asked",
    ),
    // TLS.
    n(
        "ssl-passthrough",
        OnlyAs(&["false"]),
        "TLS passthrough is not implemented; RustStrom would terminate TLS",
    ),
    n(
        "ssl-ciphers",
        Ignored,
        "RustStrom's TLS offers only modern cipher suites",
    ),
    n(
        "ssl-prefer-server-ciphers",
        Ignored,
        "RustStrom's TLS offers only modern cipher suites",
    ),
    n(
        "http2-push-preload",
        Ignored,
        "HTTP/2 server push is obsolete and not implemented",
    ),
    // Logging and tracing.
    n("enable-access-log", Ignored, LOGGING),
    n("enable-rewrite-log", Ignored, LOGGING),
    n("enable-opentelemetry", Ignored, LOGGING),
    n("opentelemetry-trust-incoming-span", Ignored, LOGGING),
    n("opentelemetry-operation-name", Ignored, LOGGING),
];

/// Names not in [`KNOWN`] that are refused all the same: a new snippet or
/// firewall annotation must not slip through as unknown.
pub fn refused_pattern(name: &str) -> Option<&'static str> {
    if name.ends_with("-snippet") {
        Some(SNIPPET)
    } else if name.starts_with("modsecurity-") || name.starts_with("lua-resty-waf") {
        Some(WAF)
    } else {
        None
    }
}

/// The entry for a name, if it is known.
pub fn find(name: &str) -> Option<&'static Known> {
    KNOWN.iter().find(|k| k.name == name)
}
