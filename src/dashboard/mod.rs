//! The dashboard (`--dashboard-addr`, default `127.0.0.1:3000`): a page
//! served by the binary itself, every asset embedded ([`assets`]), and the
//! JSON API it is a thin client of, which scripts can use too.
//!
//! Access is guarded by [`auth`]: loopback needs no token (reach it with
//! `kubectl port-forward`), any other address needs `--dashboard-token`,
//! sent as `Authorization: Bearer <token>` or through the login form's
//! session cookie. POSTs carry the page's CSRF token.
//!
//! The API (every answer JSON unless said otherwise):
//!
//! - `GET /api/summary`: mode, table generation, routes, backends, rejected
//!   objects, the health score with its parts and formula ([`score`]),
//!   traffic over the last minute (rate, 5xx ratio, p50/p95/p99 latency,
//!   totals) and the live feed's watchers and sampling.
//! - `GET /api/stats`: the last 15 minutes, one point per 5 s ([`history`]:
//!   requests, rate, errors, error ratio, p50/p95/p99), and responses by
//!   status code and class since start.
//! - `GET /api/backends`: per backend: endpoints with their state
//!   (healthy, slow, unhealthy, ejected) and in-flight requests, in-flight,
//!   totals, rate, error ratio and latency over the last minute, algorithm,
//!   policy, slow threshold.
//! - `GET /api/routes`: every host and path with its backend, Ingress and
//!   certificate (with expiry), the TLS hosts and certificates, and every
//!   problem of the last compile (rejected objects with the reason, broken
//!   manifest files).
//! - `GET /api/feed`: the live activity feed, server-sent events
//!   ([`live`]); `?host=`, `?status=5xx`, `?backend=` filter it.
//! - `GET /api/export?format=json|csv`: stats and routing table as a file
//!   ([`export`]).
//! - `POST /api/reload` (CSRF header): re-reads the manifests folder, or
//!   relists everything from the API server, and compiles ([`reload`]);
//!   answers what came of it.
//!
//! Nothing here runs on the request path: the history reads the Prometheus
//! families every 5 s, the views read the live table when asked, and the
//! feed costs requests one atomic read while nobody watches (see
//! [`crate::proxy::feed`]).

pub mod assets;
pub mod auth;
pub mod export;
pub mod history;
pub mod live;
pub mod reload;
pub mod score;
pub mod view;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::proxy::SharedTable;
use crate::proxy::feed::Feed;
use crate::publish::SharedReport;
use crate::shutdown::Shutdown;
use auth::{Denied, Guard};
use history::History;

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// The login form's body is a token: this is plenty.
const MAX_FORM: usize = 4 * 1024;
/// Connections served at once; more wait in the kernel's backlog. A page
/// uses a handful (its API calls and one feed).
const MAX_CONNECTIONS: usize = 64;
/// A request head must arrive within this (an idle keep-alive connection
/// is closed after it too; the page asks something every 2 s).
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// A reload that has not answered by then is reported as still running.
const RELOAD_WAIT: Duration = Duration::from_secs(30);

/// Everything the dashboard reads.
pub struct Dashboard {
    pub table: SharedTable,
    pub metrics: Arc<Metrics>,
    pub feed: Arc<Feed>,
    pub history: Arc<History>,
    pub report: SharedReport,
    /// `None` where nothing can be reloaded.
    pub reload: Option<reload::Sender>,
    pub guard: Guard,
    /// `standalone` or `cluster`.
    pub mode: &'static str,
    pub started: Instant,
}

/// Keeps the history ring filled, one reading per tick.
pub fn spawn_history(dashboard: Arc<Dashboard>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(history::TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let reading = history::read(&dashboard.metrics, &dashboard.table.load());
            dashboard.history.sample(reading);
        }
    })
}

/// Serves the dashboard until shutdown.
pub async fn serve(listener: TcpListener, dashboard: Arc<Dashboard>, mut shutdown: Shutdown) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => return,
            },
            () = shutdown.wait() => return,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "dashboard accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.wait() => return,
        };
        let dashboard = dashboard.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let dashboard = dashboard.clone();
                async move { Ok::<_, Infallible>(secure(route(&dashboard, req).await)) }
            });
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
            drop(slot);
        });
    }
}

/// Headers every answer carries: nothing framed, sniffed, cached or sent
/// elsewhere, and only the page's own scripts run.
fn secure(mut resp: Response<Body>) -> Response<Body> {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // `same-origin`, not `no-referrer`: with the latter a browser sends
    // `Origin: null` on the page's own form posts, which the CSRF check
    // must then refuse.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

async fn route(d: &Dashboard, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    if let Some(asset) = assets::get(&path) {
        return if method == Method::GET || method == Method::HEAD {
            asset.response()
        } else {
            not_allowed()
        };
    }
    match (&method, path.as_str()) {
        (&Method::GET, "/login") => return login_page(StatusCode::OK, ""),
        (&Method::POST, "/login") => return login(d, req).await,
        _ => {}
    }
    match d.guard.check(&req) {
        Ok(()) => {}
        Err(Denied::ForeignHost) => {
            return text(
                StatusCode::FORBIDDEN,
                "this dashboard answers only to localhost, 127.0.0.1 or [::1]\n",
            );
        }
        Err(_) if path.starts_with("/api/") => {
            return json_status(
                StatusCode::UNAUTHORIZED,
                &json!({"error": "a token is required: Authorization: Bearer <token>"}),
            );
        }
        Err(_) => return redirect("/login"),
    }
    match (&method, path.as_str()) {
        (&Method::GET | &Method::HEAD, "/") => assets::index(d.guard.csrf()),
        (&Method::GET, "/api/summary") => json_ok(&summary(d)),
        (&Method::GET, "/api/stats") => json_ok(&view::stats(&d.history, &d.metrics)),
        (&Method::GET, "/api/backends") => {
            let (now, window) = readings(d);
            json_ok(&json!(view::backends(&d.table.load(), &now, &window)))
        }
        (&Method::GET, "/api/routes") => json_ok(&view::routes(&d.table.load(), &d.report.load())),
        (&Method::GET, "/api/feed") => feed(d, req.uri().query()),
        (&Method::GET, "/api/export") => export(d, req.uri().query()),
        (&Method::POST, "/api/reload") => match d.guard.check_post(&req) {
            Ok(()) => reload(d).await,
            Err(_) => json_status(
                StatusCode::FORBIDDEN,
                &json!({"error": "missing or wrong X-CSRF-Token, or another origin"}),
            ),
        },
        (_, "/" | "/api/summary" | "/api/stats" | "/api/backends" | "/api/routes")
        | (_, "/api/feed" | "/api/export" | "/api/reload") => not_allowed(),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// A live reading, and what happened over the last minute up to it.
fn readings(d: &Dashboard) -> (history::Reading, history::Window) {
    let now = history::read(&d.metrics, &d.table.load());
    let window = d.history.window(&now);
    (now, window)
}

fn summary(d: &Dashboard) -> Value {
    let (now, window) = readings(d);
    view::summary(
        &d.table.load(),
        &d.report.load(),
        &now,
        &window,
        &d.feed,
        d.mode,
        d.started.elapsed().as_secs(),
    )
}

fn feed(d: &Dashboard, query: Option<&str>) -> Response<Body> {
    let Some(watch) = d.feed.watch() else {
        return json_status(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"error": "too many feed watchers", "max": crate::proxy::feed::MAX_WATCHERS}),
        );
    };
    let body = live::stream(watch, d.feed.clone(), live::Filter::parse(query));
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    resp
}

fn export(d: &Dashboard, query: Option<&str>) -> Response<Body> {
    let csv = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .any(|(k, v)| k == "format" && v == "csv");
    let table = d.table.load();
    let (now, window) = readings(d);
    let backends = view::backends(&table, &now, &window);
    let (body, kind, name) = if csv {
        let routes = view::route_rows(&table);
        (
            export::csv(&routes, &backends),
            "text/csv; charset=utf-8",
            "ruststrom-export.csv",
        )
    } else {
        let doc = export::json(
            summary(d),
            view::stats(&d.history, &d.metrics),
            &backends,
            view::routes(&table, &d.report.load()),
        );
        (
            serde_json::to_string_pretty(&doc).unwrap_or_default(),
            "application/json",
            "ruststrom-export.json",
        )
    };
    let mut resp = Response::new(full(body));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, value);
    }
    resp
}

async fn reload(d: &Dashboard) -> Response<Body> {
    let Some(sender) = &d.reload else {
        return json_status(
            StatusCode::NOT_IMPLEMENTED,
            &json!({"error": "nothing to reload"}),
        );
    };
    let (done, answer) = tokio::sync::oneshot::channel();
    if sender.try_send(reload::Request { done }).is_err() {
        return json_status(
            StatusCode::TOO_MANY_REQUESTS,
            &json!({"error": "a reload is already running"}),
        );
    }
    match tokio::time::timeout(RELOAD_WAIT, answer).await {
        Ok(Ok(outcome)) => json_ok(&json!(outcome)),
        Ok(Err(_)) => json_status(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"error": "live updates have stopped; see the log"}),
        ),
        Err(_) => json_status(
            StatusCode::ACCEPTED,
            &json!({"error": "the reload is still running"}),
        ),
    }
}

async fn login(d: &Dashboard, req: Request<Incoming>) -> Response<Body> {
    if !d.guard.has_token() {
        return redirect("/");
    }
    if !auth::same_origin(req.headers()) {
        return text(StatusCode::FORBIDDEN, "cross-site login refused\n");
    }
    let Ok(body) = Limited::new(req.into_body(), MAX_FORM).collect().await else {
        return text(StatusCode::PAYLOAD_TOO_LARGE, "form too large\n");
    };
    let body = body.to_bytes();
    let token = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    match d.guard.login(&token) {
        Some(cookie) => {
            let mut resp = redirect("/");
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                resp.headers_mut().insert(header::SET_COOKIE, value);
            }
            resp
        }
        None => login_page(StatusCode::UNAUTHORIZED, "Wrong token."),
    }
}

fn login_page(status: StatusCode, message: &str) -> Response<Body> {
    let mut resp = Response::new(full(assets::login_html(message)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).boxed_unsync()
}

fn json_ok(value: &Value) -> Response<Body> {
    json_status(StatusCode::OK, value)
}

fn json_status(status: StatusCode, value: &Value) -> Response<Body> {
    let mut resp = Response::new(full(value.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn redirect(to: &'static str) -> Response<Body> {
    let mut resp = Response::new(full(""));
    *resp.status_mut() = StatusCode::SEE_OTHER;
    resp.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    resp
}

fn not_allowed() -> Response<Body> {
    text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
}
