//! What the API answers: the live table, its backends and the traffic, as
//! JSON values built on demand (never on the request path).

use std::collections::{BTreeMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Value, json};

use super::history::{History, Reading, Window, per_second, ratio};
use super::score::{self, EndpointHealth};
use crate::compile::Severity;
use crate::metrics::Metrics;
use crate::model::{Algorithm, Backend, HostMatch, Route, RoutingTable};
use crate::proxy::feed::Feed;
use crate::publish::CompileReport;

/// Seconds since the Unix epoch now.
fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A notAfter as RFC 3339 text.
fn rfc3339(secs: i64) -> String {
    let time = UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    humantime::format_rfc3339_seconds(time).to_string()
}

/// `/api/summary`.
pub fn summary(
    table: &RoutingTable,
    report: &CompileReport,
    now: &Reading,
    window: &Window,
    feed: &Feed,
    mode: &str,
    uptime_secs: u64,
) -> Value {
    let rejected = report
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Rejected)
        .count();
    let backends: HashSet<&str> = table.backends().map(|b| b.id.as_str()).collect();
    json!({
        "mode": mode,
        "uptime_seconds": uptime_secs,
        "generation": table.generation(),
        "routes": table.len(),
        "backends": backends.len(),
        "rejected": rejected + report.broken_files.len(),
        "health": score::score(table, window),
        "traffic": {
            "window_seconds": window.seconds,
            "rate": window.rate(),
            "error_ratio": window.error_ratio(),
            "p50_ms": window.latency.quantile_ms(0.50),
            "p95_ms": window.latency.quantile_ms(0.95),
            "p99_ms": window.latency.quantile_ms(0.99),
            "requests_total": now.requests,
            "errors_total": now.errors,
        },
        "feed": {
            "watchers": feed.watchers(),
            "max_watchers": crate::proxy::feed::MAX_WATCHERS,
            "sample_every": feed.sample_every(),
            "max_rate": crate::proxy::feed::RATE,
        },
    })
}

/// `/api/stats`: the ring and the status codes.
pub fn stats(history: &History, metrics: &Metrics) -> Value {
    // Codes registered at start but never answered are left out.
    let mut codes = metrics.status_counts();
    codes.retain(|_, n| *n > 0);
    let mut classes: BTreeMap<String, u64> = BTreeMap::new();
    for (code, n) in &codes {
        *classes.entry(format!("{}xx", code / 100)).or_default() += n;
    }
    let codes: BTreeMap<String, u64> = codes.iter().map(|(c, n)| (c.to_string(), *n)).collect();
    json!({
        "tick_seconds": super::history::TICK.as_secs(),
        "points": history.points(),
        "status_codes": codes,
        "status_classes": classes,
    })
}

/// One backend's row.
#[derive(Debug, Serialize)]
pub struct BackendRow {
    pub id: String,
    pub service: String,
    pub algorithm: &'static str,
    /// The BalancerPolicy (`namespace/name`), or `default`.
    pub policy: String,
    pub slow_threshold_ms: f64,
    pub endpoints: Vec<EndpointRow>,
    pub endpoint_states: BTreeMap<&'static str, usize>,
    pub in_flight: i64,
    pub requests_total: u64,
    pub errors_total: u64,
    /// Over the last minute.
    pub rate: f64,
    pub error_ratio: f64,
    pub latency_mean_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct EndpointRow {
    pub address: String,
    pub state: EndpointHealth,
    /// `false`: serving but terminating, used only when no ready one is
    /// left.
    pub ready: bool,
    pub in_flight: u32,
}

pub fn algorithm_name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::RoundRobin => "RoundRobin",
        Algorithm::WeightedRoundRobin => "WeightedRoundRobin",
        Algorithm::Random => "Random",
        Algorithm::LeastConnection => "LeastConnection",
        Algorithm::PeakEwma => "PeakEwma",
        Algorithm::IpHash => "IpHash",
        Algorithm::ConsistentHash => "ConsistentHash",
    }
}

/// `/api/backends`: every backend of the live table, once.
pub fn backends(table: &RoutingTable, now: &Reading, window: &Window) -> Vec<BackendRow> {
    let mut seen = HashSet::new();
    let mut rows = Vec::new();
    for backend in table.backends() {
        if seen.insert(backend.id.as_str()) {
            rows.push(backend_row(backend, now, window));
        }
    }
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    rows
}

fn backend_row(backend: &Backend, now: &Reading, window: &Window) -> BackendRow {
    let ready = backend.ready.len();
    let mut endpoint_states: BTreeMap<&'static str, usize> =
        ["healthy", "slow", "unhealthy", "ejected"]
            .into_iter()
            .map(|s| (s, 0))
            .collect();
    let endpoints: Vec<EndpointRow> = backend
        .states()
        .enumerate()
        .map(|(i, (endpoint, state))| {
            let health = EndpointHealth::of(state);
            let name = match health {
                EndpointHealth::Healthy => "healthy",
                EndpointHealth::Slow => "slow",
                EndpointHealth::Unhealthy => "unhealthy",
                EndpointHealth::Ejected => "ejected",
            };
            *endpoint_states.entry(name).or_default() += 1;
            EndpointRow {
                address: endpoint.to_string(),
                state: health,
                ready: i < ready,
                in_flight: state.in_flight(),
            }
        })
        .collect();
    let counted = now.backends.get(&backend.id);
    let last = window.backends.get(&backend.id);
    let in_flight = if backend.has_metrics() {
        backend.metrics().in_flight.get()
    } else {
        0
    };
    BackendRow {
        id: backend.id.clone(),
        service: backend.service.clone(),
        algorithm: algorithm_name(backend.policy.algorithm),
        policy: backend
            .policy
            .source
            .clone()
            .unwrap_or_else(|| "default".into()),
        slow_threshold_ms: score::slow_threshold(backend).as_secs_f64() * 1e3,
        endpoints,
        endpoint_states,
        in_flight,
        requests_total: counted.map_or(0, |c| c.requests),
        errors_total: counted.map_or(0, |c| c.errors),
        rate: last.map_or(0.0, |w| per_second(w.requests, window.seconds)),
        error_ratio: last.map_or(0.0, |w| ratio(w.errors, w.requests)),
        latency_mean_ms: last.and_then(|w| w.latency.mean_ms()),
        latency_p95_ms: last.and_then(|w| w.latency.quantile_ms(0.95)),
    }
}

/// One route's row.
#[derive(Debug, Serialize)]
pub struct RouteRow {
    pub host: String,
    pub path: String,
    pub path_type: &'static str,
    pub backend: String,
    /// The Ingress (`namespace/name`).
    pub ingress: String,
    /// The Secret whose certificate serves the host, if it has TLS.
    pub tls_secret: Option<String>,
    pub certificate_expires: Option<String>,
    pub certificate_days_left: Option<i64>,
}

/// Every route of the table (the default backend last, host `(default)`).
pub fn route_rows(table: &RoutingTable) -> Vec<RouteRow> {
    let now = now_secs();
    let row = |host: &HostMatch, display: String, route: &Route| {
        let tls = match host {
            HostMatch::Exact(h) => table.tls().host(h),
            HostMatch::Wildcard(s) => table.tls().host(&format!("x.{s}")),
            HostMatch::Any => None,
        };
        let certificate = tls.and_then(|t| t.certificate.as_ref());
        RouteRow {
            host: display,
            path: route.path.path().to_string(),
            path_type: route.path.kind(),
            backend: route.backend.id.clone(),
            ingress: route.source.clone(),
            tls_secret: tls.map(|t| {
                if t.secret.is_empty() {
                    "(default certificate)".to_string()
                } else {
                    t.secret.clone()
                }
            }),
            certificate_expires: certificate.map(|c| rfc3339(c.not_after)),
            certificate_days_left: certificate.map(|c| (c.not_after - now).div_euclid(86_400)),
        }
    };
    let mut rows: Vec<RouteRow> = table
        .routes()
        .into_iter()
        .map(|(host, route)| row(&host, host.to_string(), route))
        .collect();
    if let Some(route) = table.default_backend() {
        rows.push(row(&HostMatch::Any, "(default)".into(), route));
    }
    rows
}

/// `/api/routes`: routes, TLS hosts, certificates and problems.
pub fn routes(table: &RoutingTable, report: &CompileReport) -> Value {
    let now = now_secs();
    let tls: Vec<Value> = table
        .tls()
        .hosts()
        .into_iter()
        .map(|(host, t)| {
            json!({
                "host": host.to_string(),
                "secret": t.secret,
                "ingress": t.source,
                "certificate": t.certificate.as_ref().map(|c| json!({
                    "secret": c.secret,
                    "expires": rfc3339(c.not_after),
                    "days_left": (c.not_after - now).div_euclid(86_400),
                })),
            })
        })
        .collect();
    let certificates: Vec<Value> = table
        .tls()
        .certificates()
        .into_iter()
        .map(|c| {
            json!({
                "secret": c.secret,
                "expires": rfc3339(c.not_after),
                "days_left": (c.not_after - now).div_euclid(86_400),
            })
        })
        .collect();
    json!({
        "generation": table.generation(),
        "compiled_at": report.at.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
        "routes": route_rows(table),
        "tls": tls,
        "certificates": certificates,
        "www_redirects": table.www_redirects().into_iter()
            .map(|(from, to)| json!({"from": from, "to": to}))
            .collect::<Vec<_>>(),
        "problems": problems(report),
    })
}

/// Every problem of the last compile, and every manifest file that does
/// not parse.
pub fn problems(report: &CompileReport) -> Vec<Value> {
    let mut out: Vec<Value> = report
        .problems
        .iter()
        .map(|p| {
            json!({
                "severity": match p.severity {
                    Severity::Rejected => "rejected",
                    Severity::Warning => "warning",
                },
                "kind": p.kind,
                "object": p.object.to_string(),
                "message": p.message,
            })
        })
        .collect();
    out.extend(report.broken_files.iter().map(|(path, error)| {
        json!({
            "severity": "rejected",
            "kind": "File",
            "object": path,
            "message": error,
        })
    }));
    out
}
