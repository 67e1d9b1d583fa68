//! Prometheus metrics: one registry, every family registered in one place.
//!
//! Families (all present from start-up):
//! - `http_requests_total`, `http_request_duration_seconds`,
//!   `http_status_codes_total{code}`: every request the proxy answered.
//! - `http_errors_total`: requests the proxy could not get a backend answer
//!   for (the 502, 503 and 504 it generated itself).
//! - `http_timeouts_total`: requests that hit `--request-timeout` (504).
//! - `backend_response_time_seconds{backend}`: time to the backend's response
//!   headers, per Service port (`namespace/service:port`), from the
//!   backend's first request on (see [`backend`]).
//! - `active_http_connections`: client connections open now.
//! - `routing_table_generation`, `routing_table_routes`,
//!   `config_reloads_total{result}`, `manifest_errors_total`,
//!   `config_sync_duration_seconds`, `routing_table_rejected_objects`
//!   (objects the live table left out as invalid): the control side.
//! - `leader_is_leader`: 1 while this replica holds the election's Lease
//!   (cluster mode), else 0; no replica at 1 means no status is written.
//! - `tls_handshakes_total`, `tls_handshake_errors_total{reason}` (reasons
//!   in [`HANDSHAKE_ERROR_REASONS`]): the HTTPS listener.
//! - `proxy_protocol_connections_total` and
//!   `proxy_protocol_errors_total{reason}` (reasons `missing`, `malformed`,
//!   `untrusted`, `timeout`, `closed`): `--proxy-protocol` headers taken,
//!   and connections closed before HTTP for want of a good one.
//! - `client_errors_total{reason}` (reasons in [`CLIENT_ERROR_REASONS`]):
//!   requests refused for the client's own fault, never counted against a
//!   backend; `connections_max`, `accept_paused_total` and
//!   `accept_errors_total`: the connection cap and the accept loops.
//! - `access_log_dropped_total`: access log lines dropped because the
//!   output could not keep up (the request was never held back for them).
//! - `rate_limited_total{kind}` (kinds in [`RATE_LIMIT_KINDS`]): requests
//!   refused with 429 by an Ingress's `limit-*` annotations;
//!   `rate_limit_tracked_clients`: client addresses their limiters track.
//! - `auth_requests_total{result}` (results in [`AUTH_RESULTS`]) and
//!   `auth_cache_hits_total`: `auth-url` subrequests, and the answers
//!   served from the `auth-cache-key` cache instead.
//! - `tls_certificate_expiry_timestamp_seconds{secret}`: notAfter of every
//!   certificate served, per Secret (`namespace/name`), to alert before one
//!   expires.

mod backend;

use crate::model::{LimitKind, rate_limit};

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, OnceLock};

pub use backend::{
    BackendFamilies, BackendMetrics, BackendSeries, ENDPOINT_STATES, LazyBackendMetrics,
};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Latency buckets from 0.5 ms to 30 s (the default request timeout).
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Every `reason` of `tls_handshake_errors_total`: a bounded set, so a
/// misbehaving client cannot create series.
pub const HANDSHAKE_ERROR_REASONS: [&str; 6] = [
    "timeout",
    "io",
    "version",
    "incompatible",
    "no_certificate",
    "protocol",
];

/// Every `reason` of `client_errors_total`: bad host or request
/// (`bad_request`), a path with no routable normal form (`bad_path`), CONNECT
/// or TRACE (`method`), and a request body the client broke
/// (`body_malformed`, `body_aborted`) or stopped sending (`body_timeout`),
/// and a head over `--max-request-header-size` (`head_too_large`).
pub const CLIENT_ERROR_REASONS: [&str; 10] = [
    "bad_request",
    "bad_path",
    "method",
    "head_too_large",
    "body_malformed",
    "body_aborted",
    "body_timeout",
    "body_too_large",
    "source_range",
    "unauthorized",
];

/// Every `kind` of `rate_limited_total`.
pub const RATE_LIMIT_KINDS: [&str; 3] = ["connections", "rps", "rpm"];
/// The `result` of `auth_requests_total`: the auth service's 2xx, 401, 403,
/// or anything else (another status, no answer, a timeout).
pub const AUTH_RESULTS: [&str; 4] = ["allowed", "unauthorized", "forbidden", "error"];

/// Every metric family, registered once.
pub struct Metrics {
    registry: Registry,
    pub requests_total: IntCounter,
    pub request_duration: Histogram,
    status_codes: IntCounterVec,
    /// `status_codes` children by code, so the request path skips the label
    /// hash and lock after the first request with a code.
    status_cache: Box<[OnceLock<IntCounter>]>,
    pub errors_total: IntCounter,
    pub timeouts_total: IntCounter,
    pub backend_response_time: HistogramVec,
    pub backends: BackendFamilies,
    backend_series: OnceLock<Arc<BackendSeries>>,
    pub active_connections: IntGauge,
    client_errors: IntCounterVec,
    pub connections_max: IntGauge,
    pub accept_paused: IntCounter,
    pub accept_errors: IntCounter,
    pub access_log_dropped: IntCounter,
    pub table_generation: IntGauge,
    pub table_routes: IntGauge,
    pub rejected_objects: IntGauge,
    pub is_leader: IntGauge,
    pub reloads: IntCounterVec,
    pub manifest_errors: IntCounter,
    pub sync_duration: Histogram,
    pub tls_handshakes: IntCounter,
    tls_handshake_errors: IntCounterVec,
    pub proxy_protocol_headers: IntCounter,
    proxy_protocol_errors: IntCounterVec,
    certificate_expiry: IntGaugeVec,
    rate_limited: IntCounterVec,
    rate_limit_clients: IntGauge,
    auth_requests: IntCounterVec,
    auth_cache_hits: IntCounter,
}

// === impl Metrics ===

impl Metrics {
    /// Creates and registers every family. Fails only if a name were
    /// invalid, which the constant names here are not.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let m = Self {
            requests_total: IntCounter::new("http_requests_total", "HTTP requests answered")?,
            request_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "http_request_duration_seconds",
                    "Time from request to response headers",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
            )?,
            status_codes: IntCounterVec::new(
                Opts::new("http_status_codes_total", "Responses by status code"),
                &["code"],
            )?,
            status_cache: (100..600).map(|_| OnceLock::new()).collect(),
            errors_total: IntCounter::new(
                "http_errors_total",
                "Requests answered with an error the proxy generated (502, 503, 504)",
            )?,
            timeouts_total: IntCounter::new(
                "http_timeouts_total",
                "Requests that hit the request timeout",
            )?,
            backend_response_time: HistogramVec::new(
                HistogramOpts::new(
                    "backend_response_time_seconds",
                    "Time to the backend's response headers, per Service port",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["backend"],
            )?,
            active_connections: IntGauge::new(
                "active_http_connections",
                "Client connections open now",
            )?,
            client_errors: IntCounterVec::new(
                Opts::new(
                    "client_errors_total",
                    "Requests refused for the client's own fault, by reason",
                ),
                &["reason"],
            )?,
            connections_max: IntGauge::new(
                "connections_max",
                "Client connections served at once (--max-connections)",
            )?,
            accept_paused: IntCounter::new(
                "accept_paused_total",
                "Times an accept loop waited because --max-connections were open",
            )?,
            accept_errors: IntCounter::new(
                "accept_errors_total",
                "Failed accepts (out of file descriptors, say)",
            )?,
            access_log_dropped: IntCounter::new(
                "access_log_dropped_total",
                "Access log lines dropped because the output could not keep up",
            )?,
            table_generation: IntGauge::new(
                "routing_table_generation",
                "Generation of the live routing table",
            )?,
            table_routes: IntGauge::new(
                "routing_table_routes",
                "Host and path routes in the live table",
            )?,
            rejected_objects: IntGauge::new(
                "routing_table_rejected_objects",
                "Objects the live routing table left out because they are invalid",
            )?,
            is_leader: IntGauge::new(
                "leader_is_leader",
                "1 while this replica holds the leader election's Lease",
            )?,
            reloads: IntCounterVec::new(
                Opts::new("config_reloads_total", "Routing table rebuilds by result"),
                &["result"],
            )?,
            manifest_errors: IntCounter::new(
                "manifest_errors_total",
                "Manifest files that failed to read or parse (their last good version stays)",
            )?,
            sync_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "config_sync_duration_seconds",
                    "From a change being noticed to the new table serving",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
            )?,
            tls_handshakes: IntCounter::new(
                "tls_handshakes_total",
                "TLS handshakes completed on the HTTPS listener",
            )?,
            tls_handshake_errors: IntCounterVec::new(
                Opts::new(
                    "tls_handshake_errors_total",
                    "TLS handshakes that failed, by reason",
                ),
                &["reason"],
            )?,
            proxy_protocol_headers: IntCounter::new(
                "proxy_protocol_connections_total",
                "Connections whose client address came from a PROXY protocol header",
            )?,
            proxy_protocol_errors: IntCounterVec::new(
                Opts::new(
                    "proxy_protocol_errors_total",
                    "Connections closed before HTTP for want of a good PROXY protocol header, by reason",
                ),
                &["reason"],
            )?,
            certificate_expiry: IntGaugeVec::new(
                Opts::new(
                    "tls_certificate_expiry_timestamp_seconds",
                    "notAfter of each certificate served, as seconds since the Unix epoch",
                ),
                &["secret"],
            )?,
            rate_limited: IntCounterVec::new(
                Opts::new(
                    "rate_limited_total",
                    "Requests refused with 429 by an Ingress's limits, by limit",
                ),
                &["kind"],
            )?,
            rate_limit_clients: IntGauge::new(
                "rate_limit_tracked_clients",
                "Client addresses the Ingresses' limits track now (at most 16384 per Ingress for rates, as many for connections)",
            )?,
            auth_requests: IntCounterVec::new(
                Opts::new(
                    "auth_requests_total",
                    "External authentication (auth-url) subrequests, by result",
                ),
                &["result"],
            )?,
            auth_cache_hits: IntCounter::new(
                "auth_cache_hits_total",
                "External authentication answers served from the auth-cache-key cache",
            )?,
            backends: BackendFamilies::new()?,
            backend_series: OnceLock::new(),
            registry,
        };
        m.register_all()?;
        m.backends.register(&m.registry)?;
        // Both results exist from the start so that rate() works at once.
        m.reloads.with_label_values(&["success"]);
        m.reloads.with_label_values(&["error"]);
        for code in [200, 404, 502, 503, 504] {
            m.status_codes.with_label_values(&[&code.to_string()]);
        }
        for reason in HANDSHAKE_ERROR_REASONS {
            m.tls_handshake_errors.with_label_values(&[reason]);
        }
        for refused in crate::proxy::proxy_protocol::Refused::ALL {
            m.proxy_protocol_errors
                .with_label_values(&[refused.reason()]);
        }
        for reason in CLIENT_ERROR_REASONS {
            m.client_errors.with_label_values(&[reason]);
        }
        for kind in RATE_LIMIT_KINDS {
            m.rate_limited.with_label_values(&[kind]);
        }
        for result in AUTH_RESULTS {
            m.auth_requests.with_label_values(&[result]);
        }
        Ok(m)
    }

    fn register_all(&self) -> Result<(), prometheus::Error> {
        let collectors: [Box<dyn prometheus::core::Collector>; 29] = [
            Box::new(self.requests_total.clone()),
            Box::new(self.request_duration.clone()),
            Box::new(self.status_codes.clone()),
            Box::new(self.errors_total.clone()),
            Box::new(self.timeouts_total.clone()),
            Box::new(self.backend_response_time.clone()),
            Box::new(self.active_connections.clone()),
            Box::new(self.client_errors.clone()),
            Box::new(self.connections_max.clone()),
            Box::new(self.accept_paused.clone()),
            Box::new(self.accept_errors.clone()),
            Box::new(self.access_log_dropped.clone()),
            Box::new(self.table_generation.clone()),
            Box::new(self.table_routes.clone()),
            Box::new(self.rejected_objects.clone()),
            Box::new(self.is_leader.clone()),
            Box::new(self.reloads.clone()),
            Box::new(self.manifest_errors.clone()),
            Box::new(self.sync_duration.clone()),
            Box::new(self.tls_handshakes.clone()),
            Box::new(self.tls_handshake_errors.clone()),
            Box::new(self.proxy_protocol_headers.clone()),
            Box::new(self.proxy_protocol_errors.clone()),
            Box::new(self.certificate_expiry.clone()),
            Box::new(self.rate_limited.clone()),
            Box::new(self.rate_limit_clients.clone()),
            Box::new(self.auth_requests.clone()),
            Box::new(self.auth_cache_hits.clone()),
            Box::new(build_info()?),
        ];
        for c in collectors {
            self.registry.register(c)?;
        }
        Ok(())
    }

    /// Counts one response by status code.
    /// Responses by status code since start, as `http_status_codes_total`
    /// holds them (for the dashboard; reads the family, off the request
    /// path).
    pub fn status_counts(&self) -> BTreeMap<u16, u64> {
        use prometheus::core::Collector;
        let mut out = BTreeMap::new();
        for family in self.status_codes.collect() {
            for metric in family.get_metric() {
                let code = metric
                    .get_label()
                    .iter()
                    .find(|l| l.name() == "code")
                    .and_then(|l| l.value().parse::<u16>().ok());
                if let Some(code) = code {
                    out.insert(code, metric.get_counter().get_value() as u64);
                }
            }
        }
        out
    }

    pub fn count_status(&self, code: u16) {
        let slot = code
            .checked_sub(100)
            .and_then(|i| self.status_cache.get(i as usize));
        match slot {
            Some(slot) => slot
                .get_or_init(|| self.status_codes.with_label_values(&[&code.to_string()]))
                .inc(),
            None => self
                .status_codes
                .with_label_values(&[&code.to_string()])
                .inc(),
        }
    }

    /// Removes the series of backends no live table has any more, so that
    /// Services deleted long ago do not linger in every scrape (a backend's
    /// series are created by its first request).
    pub fn sync_backends(&self, before: &HashSet<String>, now: &HashSet<String>) {
        for gone in before.difference(now) {
            let _ = self.backend_response_time.remove_label_values(&[gone]);
            self.backends.remove(gone);
        }
    }

    /// What a backend resolves its series from, once it gets a request.
    pub fn backend_series(&self) -> Arc<BackendSeries> {
        self.backend_series
            .get_or_init(|| {
                Arc::new(BackendSeries {
                    families: self.backends.clone(),
                    response_time: self.backend_response_time.clone(),
                })
            })
            .clone()
    }

    /// Counts a failed handshake; `reason` is one of
    /// [`HANDSHAKE_ERROR_REASONS`].
    pub fn count_client_error(&self, reason: &'static str) {
        self.client_errors.with_label_values(&[reason]).inc();
    }

    /// Counts one `auth-url` subrequest by its result (one of
    /// [`AUTH_RESULTS`]).
    pub fn count_auth(&self, result: &'static str) {
        self.auth_requests.with_label_values(&[result]).inc();
    }

    pub fn count_auth_cache_hit(&self) {
        self.auth_cache_hits.inc();
    }

    pub fn count_handshake_error(&self, reason: &'static str) {
        self.tls_handshake_errors.with_label_values(&[reason]).inc();
    }

    pub fn count_proxy_protocol_error(&self, reason: &'static str) {
        self.proxy_protocol_errors
            .with_label_values(&[reason])
            .inc();
    }

    /// Keeps one `tls_certificate_expiry_timestamp_seconds` series per
    /// Secret served (`namespace/name` -> notAfter): a Secret no longer
    /// served leaves no series behind.
    pub fn sync_certificates(&self, before: &BTreeMap<String, i64>, now: &BTreeMap<String, i64>) {
        for gone in before.keys().filter(|k| !now.contains_key(*k)) {
            let _ = self.certificate_expiry.remove_label_values(&[gone]);
        }
        for (secret, not_after) in now {
            self.certificate_expiry
                .with_label_values(&[secret])
                .set(*not_after);
        }
    }

    /// Counts a request refused by an Ingress's limits.
    pub fn count_rate_limited(&self, kind: LimitKind) {
        let label = match kind {
            LimitKind::Connections => "connections",
            LimitKind::Rps => "rps",
            LimitKind::Rpm => "rpm",
        };
        self.rate_limited.with_label_values(&[label]).inc();
    }

    /// The Prometheus text exposition of every family.
    pub fn render(&self) -> String {
        // Read when scraped: the limiters keep one counter, not a gauge each.
        self.rate_limit_clients
            .set(i64::try_from(rate_limit::tracked_clients()).unwrap_or(i64::MAX));
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

fn build_info() -> Result<IntGauge, prometheus::Error> {
    let g = IntGauge::with_opts(
        Opts::new(
            "ruststrom_build_info",
            "Always 1; labels say which build runs",
        )
        .const_label("version", env!("CARGO_PKG_VERSION")),
    )?;
    g.set(1);
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_present_from_start() {
        let m = Metrics::new().unwrap();
        let text = m.render();
        for family in [
            "http_requests_total",
            "http_request_duration_seconds",
            "http_errors_total",
            "http_timeouts_total",
            "active_http_connections",
            "routing_table_generation",
            "routing_table_rejected_objects",
            "leader_is_leader",
            "config_reloads_total",
            "tls_handshakes_total",
            "tls_handshake_errors_total",
            "rate_limited_total",
            "rate_limit_tracked_clients",
        ] {
            assert!(
                text.contains(&format!("# TYPE {family}")),
                "{family} missing:\n{text}"
            );
        }
    }

    #[test]
    fn status_codes_are_counted_by_code() {
        let m = Metrics::new().unwrap();
        m.count_status(200);
        m.count_status(200);
        m.count_status(504);
        m.count_status(999);
        let text = m.render();
        assert!(
            text.contains("http_status_codes_total{code=\"200\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("http_status_codes_total{code=\"504\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("http_status_codes_total{code=\"999\"} 1"),
            "{text}"
        );
    }
}
