//! External authentication (`auth-url`): before a request goes to its
//! backend, a bodiless subrequest asks the auth service, as nginx's
//! `auth_request` does in ingress-nginx.
//!
//! The answer decides: 2xx passes (with the `auth-response-headers` copied
//! into the request); 401 redirects to `auth-signin` when set, else answers
//! 401 with the service's challenge; 403 answers 403; anything else, no
//! answer, or no answer within [`AUTH_TIMEOUT`] answers 500. Never open.
//!
//! Where the subrequest goes, by the expanded URL's host:
//! - a cluster Service (`http://svc.ns.svc.cluster.local/...`, `svc.ns`,
//!   ...; the compile step resolves it into the route's `auth_backend`):
//!   to its endpoints, through the upstream pools, balancing and health;
//! - a host this routing table serves (the common `https://$host/oauth2/auth`
//!   with oauth2-proxy behind the same ingress): straight to the backend of
//!   the route that URL matches, through the upstream pools, balancing and
//!   health of that backend, in plain HTTP as every backend request;
//! - any other host (a name the cluster's DNS resolves, or an outside
//!   service): hyper's pooled client, http or https (rustls,
//!   the system's roots), bounded by the same timeout.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Either, Empty, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::headers::{self, ConnInfo};
use super::upstream::{CONNECT_TIMEOUT, POOL_IDLE_TIMEOUT};
use super::{Proxy, ProxyError, attempt, redirect, source_range};
use crate::model::{AuthCache, Backend, Context, ExtAuth, HostMatch, Vars, normalize_host};

/// The longest a subrequest may take, connect included (5 s to connect, as
/// the backends, and 5 s more for the answer); `--request-timeout` when
/// that is shorter.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// The auth service's answer body is read (to reuse the connection) up to
/// this size, then dropped; a larger body closes the connection.
const MAX_AUTH_BODY: usize = 64 * 1024;
/// Idle connections kept per outside auth host.
const MAX_IDLE_EXTERNAL: usize = 32;

/// The statuses on which nginx's `add_header` (without `always`) adds the
/// auth service's `Set-Cookie` to the answer.
const COOKIE_STATUSES: [u16; 10] = [200, 201, 204, 206, 301, 302, 303, 304, 307, 308];

static X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
static X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
static X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
static X_SCHEME: HeaderName = HeaderName::from_static("x-scheme");
static X_SENT_FROM: HeaderName = HeaderName::from_static("x-sent-from");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");
static X_AUTH_REQUEST_REDIRECT: HeaderName = HeaderName::from_static("x-auth-request-redirect");

type External = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// The client for auth services outside the routing table, built on first
/// use.
#[derive(Default)]
pub struct AuthClient {
    external: OnceLock<Option<External>>,
}

/// What a passed check adds to the request and its answer.
#[derive(Debug, Default)]
pub struct Granted {
    /// `auth-response-headers`: each name, and the values the auth service
    /// gave (none: the header is removed).
    headers: Vec<(HeaderName, Vec<HeaderValue>)>,
    /// The auth service's `Set-Cookie`s.
    cookies: Vec<HeaderValue>,
    always_set_cookie: bool,
}

/// The auth service's answer, as far as it matters.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
}

// === impl AuthClient ===

impl AuthClient {
    fn external(&self) -> Option<&External> {
        self.external.get_or_init(build_external).as_ref()
    }
}

fn build_external() -> Option<External> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let provider = rustls::crypto::ring::default_provider();
    let builder = match hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(provider)
    {
        Ok(builder) => builder,
        Err(error) => {
            // http:// auth URLs still work; https:// ones fail (500).
            tracing::warn!(%error, "no system CA certificates: https auth-url services cannot be verified");
            let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .ok()?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
        }
    };
    let connector = builder.https_or_http().enable_http1().wrap_connector(http);
    Some(
        Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(MAX_IDLE_EXTERNAL)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(connector),
    )
}

impl std::fmt::Debug for AuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthClient").finish_non_exhaustive()
    }
}

// === impl Granted ===

impl Granted {
    /// Sets the copied headers on the request to the backend.
    pub fn apply_request(&self, headers: &mut HeaderMap) {
        for (name, values) in &self.headers {
            headers.remove(name);
            for value in values {
                headers.append(name.clone(), value.clone());
            }
        }
    }

    /// Adds the auth service's cookies to the backend's answer, on the
    /// statuses nginx adds them on (every status with
    /// `auth-always-set-cookie`).
    pub fn apply_response(&self, status: StatusCode, headers: &mut HeaderMap) {
        if self.always_set_cookie || COOKIE_STATUSES.contains(&status.as_u16()) {
            for cookie in &self.cookies {
                headers.append(header::SET_COOKIE, cookie.clone());
            }
        }
    }
}

/// Asks the auth service about `req`. `Ok` lets it pass with what to add;
/// `Err` is the answer the client gets instead.
pub async fn check<B>(
    proxy: &Proxy,
    auth: &ExtAuth,
    backend: Option<&Arc<Backend>>,
    conn: &ConnInfo,
    req: &Request<B>,
    host: Option<&HeaderValue>,
) -> Result<Granted, ProxyError> {
    let http_host = host.and_then(|h| h.to_str().ok()).unwrap_or("");
    let lower = normalize_host(http_host).to_ascii_lowercase();
    let client = source_range::client_address(conn, req.headers(), &proxy.https)
        .map(|ip| ip.to_string())
        .unwrap_or_else(|| conn.peer.ip().to_string());
    let https = conn.tls || (conn.trusted && redirect::forwarded_https(req.headers()));
    let vars = Vars {
        http_host,
        host: &lower,
        scheme: if https { "https" } else { "http" },
        uri: req.uri(),
        method: req.method(),
        headers: req.headers(),
        remote_addr: &client,
    };

    let cache = auth.cache.as_ref().map(|policy| {
        let key = AuthCache::key(&lower, &policy.key.expand(&vars, Context::Plain));
        (policy, key)
    });
    let cached = cache
        .as_ref()
        .and_then(|(policy, key)| policy.store.get(key));
    let answer = match cached {
        Some(hit) => {
            proxy.metrics.count_auth_cache_hit();
            Answer {
                status: hit.status,
                headers: hit.headers,
            }
        }
        None => {
            let answer = ask(proxy, auth, backend, &vars).await;
            let result = match &answer {
                Ok(a) if a.status.is_success() => "allowed",
                Ok(a) if a.status == StatusCode::UNAUTHORIZED => "unauthorized",
                Ok(a) if a.status == StatusCode::FORBIDDEN => "forbidden",
                _ => "error",
            };
            proxy.metrics.count_auth(result);
            let answer = answer?;
            if let Some((policy, key)) = &cache
                && let Some(ttl) = policy.ttl(answer.status)
                && cacheable(&answer)
            {
                policy.store.put(
                    *key,
                    answer.status,
                    kept_headers(auth, &answer.headers),
                    ttl,
                );
            }
            answer
        }
    };
    decide(auth, &vars, answer)
}

/// What the answer means for the request.
fn decide(auth: &ExtAuth, vars: &Vars<'_>, answer: Answer) -> Result<Granted, ProxyError> {
    let cookies: Vec<HeaderValue> = answer
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .cloned()
        .collect();
    let status = answer.status;
    if status.is_success() {
        let headers = auth
            .response_headers
            .iter()
            .map(|name| {
                let values = answer.headers.get_all(name).iter().cloned().collect();
                (name.clone(), values)
            })
            .collect();
        return Ok(Granted {
            headers,
            cookies,
            always_set_cookie: auth.always_set_cookie,
        });
    }
    let mut out = HeaderMap::new();
    let add_cookies = |out: &mut HeaderMap| {
        for cookie in &cookies {
            out.append(header::SET_COOKIE, cookie.clone());
        }
    };
    match status {
        StatusCode::UNAUTHORIZED => {
            if let Some(signin) = &auth.signin {
                let location =
                    HeaderValue::try_from(signin.expand(vars, Context::Url)).map_err(|_| {
                        ProxyError::AuthFailed(
                            "the auth-signin URL is not a valid header value".into(),
                        )
                    })?;
                out.insert(header::LOCATION, location);
                // A 302 is one of the statuses nginx adds the cookie on.
                add_cookies(&mut out);
                return Err(ProxyError::AuthDenied {
                    status: StatusCode::FOUND,
                    headers: Box::new(out),
                });
            }
            for challenge in answer.headers.get_all(header::WWW_AUTHENTICATE) {
                out.append(header::WWW_AUTHENTICATE, challenge.clone());
            }
        }
        StatusCode::FORBIDDEN => {}
        other => {
            return Err(ProxyError::AuthFailed(format!(
                "the auth service answered {}",
                other.as_u16()
            )));
        }
    }
    if auth.always_set_cookie {
        add_cookies(&mut out);
    }
    Err(ProxyError::AuthDenied {
        status,
        headers: Box::new(out),
    })
}

/// Whether an answer may be kept: not one that sets a cookie (nginx's
/// cache does not keep those either) or that asks not to be kept.
fn cacheable(answer: &Answer) -> bool {
    if answer.headers.contains_key(header::SET_COOKIE) {
        return false;
    }
    !answer
        .headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|d| {
            d.eq_ignore_ascii_case("no-store")
                || d.eq_ignore_ascii_case("no-cache")
                || d.eq_ignore_ascii_case("private")
        })
}

/// The headers of an answer a cached decision needs.
fn kept_headers(auth: &ExtAuth, headers: &HeaderMap) -> HeaderMap {
    let mut kept = HeaderMap::new();
    for name in auth
        .response_headers
        .iter()
        .chain(std::iter::once(&header::WWW_AUTHENTICATE))
    {
        for value in headers.get_all(name) {
            kept.append(name.clone(), value.clone());
        }
    }
    kept
}

/// Sends the subrequest and reads its answer, within the time allowed.
async fn ask(
    proxy: &Proxy,
    auth: &ExtAuth,
    backend: Option<&Arc<Backend>>,
    vars: &Vars<'_>,
) -> Result<Answer, ProxyError> {
    let target: Uri = auth
        .url
        .expand(vars, Context::Url)
        .parse()
        .map_err(|_| ProxyError::AuthFailed("the expanded auth-url is not a URL".into()))?;
    let auth_host = target.host().unwrap_or("").to_ascii_lowercase();
    let headers = subrequest_headers(auth, vars, &auth_host)?;
    let limit = proxy.request_timeout.min(AUTH_TIMEOUT);
    let sent = tokio::time::timeout(
        limit,
        send(proxy, auth, backend, target, &auth_host, headers),
    )
    .await;
    match sent {
        Ok(result) => result,
        Err(_) => Err(ProxyError::AuthFailed(format!(
            "the auth service at {auth_host} did not answer within {limit:?}"
        ))),
    }
}

/// The subrequest's headers: the client's (hop-by-hop, body and
/// forwarding headers removed), then the ones nginx sets, then the
/// `auth-proxy-set-headers`.
fn subrequest_headers(
    auth: &ExtAuth,
    vars: &Vars<'_>,
    auth_host: &str,
) -> Result<HeaderMap, ProxyError> {
    let mut h = vars.headers.clone();
    headers::strip_hop_by_hop(&mut h);
    for name in [
        &header::CONTENT_LENGTH,
        &header::TRANSFER_ENCODING,
        &header::EXPECT,
        &X_FORWARDED_PORT,
        &FORWARDED,
    ] {
        h.remove(name);
    }
    let value = |text: String| {
        HeaderValue::try_from(text)
            .map_err(|_| ProxyError::AuthFailed("a subrequest header is not a valid value".into()))
    };
    let request_uri = vars.uri.path_and_query().map_or("/", |pq| pq.as_str());
    h.insert(header::HOST, value(auth_host.to_string())?);
    h.insert(X_ORIGINAL_URI.clone(), value(request_uri.to_string())?);
    h.insert(
        X_ORIGINAL_URL.clone(),
        value(format!(
            "{}://{}{}",
            vars.scheme, vars.http_host, request_uri
        ))?,
    );
    h.insert(X_ORIGINAL_METHOD.clone(), value(vars.method.to_string())?);
    h.insert(X_SCHEME.clone(), HeaderValue::from_static(vars.scheme));
    h.insert(
        X_SENT_FROM.clone(),
        HeaderValue::from_static("nginx-ingress-controller"),
    );
    h.insert(X_REAL_IP.clone(), value(vars.remote_addr.to_string())?);
    h.insert(
        X_FORWARDED_FOR.clone(),
        value(vars.remote_addr.to_string())?,
    );
    h.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(vars.scheme),
    );
    if vars.http_host.is_empty() {
        h.remove(&X_FORWARDED_HOST);
    } else {
        h.insert(X_FORWARDED_HOST.clone(), value(vars.http_host.to_string())?);
    }
    let redirect_to = match &auth.request_redirect {
        Some(template) => template.expand(vars, Context::Plain),
        None => request_uri.to_string(),
    };
    h.insert(X_AUTH_REQUEST_REDIRECT.clone(), value(redirect_to)?);
    for (name, template) in &auth.proxy_set_headers {
        h.insert(name.clone(), value(template.expand(vars, Context::Plain))?);
    }
    Ok(h)
}

/// Sends to the auth Service's backend (`service`), else to the routing
/// table's backend for the URL's host, else out.
async fn send(
    proxy: &Proxy,
    auth: &ExtAuth,
    service: Option<&Arc<Backend>>,
    target: Uri,
    auth_host: &str,
    headers: HeaderMap,
) -> Result<Answer, ProxyError> {
    let path = target.path().to_string();
    let backend = service.cloned().or_else(|| {
        let table = proxy.table.load();
        table
            .host_routes(&HostMatch::Exact(auth_host.to_string()))
            .iter()
            .find(|r| r.path.matches(&path))
            .map(|r| r.backend.clone())
    });
    let fail = |why: String| ProxyError::AuthFailed(format!("auth service at {auth_host}: {why}"));
    let Some(backend) = backend else {
        let client = proxy
            .auth
            .external()
            .ok_or_else(|| fail("no HTTP client".into()))?;
        let mut req = Request::new(Empty::new());
        *req.method_mut() = auth.method.clone();
        *req.uri_mut() = target;
        *req.headers_mut() = headers;
        let response = client
            .request(req)
            .await
            .map_err(|e| fail(format!("{e}")))?;
        return Ok(read(response).await);
    };
    let picked = backend
        .pick(None, None)
        .ok_or_else(|| fail(format!("no ready endpoint for {}", backend.id)))?;
    let origin = target
        .path_and_query()
        .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()));
    let mut req = Request::new(Either::Right(Empty::new()));
    *req.method_mut() = auth.method.clone();
    *req.uri_mut() = origin;
    *req.headers_mut() = headers;
    let sent = attempt::send(&proxy.upstream, &backend, None, req, None, picked)
        .await
        .map_err(|failed| fail(format!("{failed:?}")))?;
    let (parts, body) = sent.response.into_parts();
    let answer = Answer {
        status: parts.status,
        headers: parts.headers,
    };
    // Read to its end (it is small), so the connection is pooled again.
    if Limited::new(body, MAX_AUTH_BODY).collect().await.is_ok() {
        sent.lease.release();
    }
    drop(sent.in_flight);
    Ok(answer)
}

/// The answer's head; its body read (bounded, so the connection can be
/// pooled again) and dropped. Only the head decides.
async fn read(response: Response<Incoming>) -> Answer {
    let (parts, body) = response.into_parts();
    let _ = Limited::new(body, MAX_AUTH_BODY).collect().await;
    Answer {
        status: parts.status,
        headers: parts.headers,
    }
}
