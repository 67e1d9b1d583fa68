//! Per-backend metric families (one series per Service port: bounded
//! cardinality) and the handles a backend keeps so that the request path
//! never looks a label up. A backend's series are created with its first
//! request: Services that get no traffic cost no memory and no scrape lines
//! (10,000 idle backends would otherwise add 270,000 lines to every scrape).
//!
//! - `backend_requests_total{backend}`: tries sent, retries included.
//! - `backend_errors_total{backend}`: tries that failed (connect error,
//!   broken response, timeout, 502/503/504 from the backend).
//! - `backend_retries_total{backend}`: tries that were retries.
//! - `backend_ejections_total{backend}`: endpoints ejected by passive checks.
//! - `backend_in_flight{backend}`: requests whose response has not ended.
//! - `backend_endpoints{backend,state}`: endpoints by health state
//!   (`healthy`, `slow`, `unhealthy`, `ejected`), refreshed periodically.
//! - `backend_response_time_seconds{backend}` lives in the parent module.
//! - `upstream_connections_opened_total`, `upstream_requests_total`: their
//!   difference is the requests that reused a pooled connection.
//! - `upstream_connections_salvaged_total`: connections kept by reading the
//!   rest of an answer whose client went away.

use std::sync::{Arc, OnceLock};

use prometheus::{
    Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// The backend families.
#[derive(Clone)]
pub struct BackendFamilies {
    requests: IntCounterVec,
    errors: IntCounterVec,
    retries: IntCounterVec,
    ejections: IntCounterVec,
    in_flight: IntGaugeVec,
    pub endpoints: IntGaugeVec,
    pub connections_opened: IntCounter,
    pub connections_salvaged: IntCounter,
    pub upstream_requests: IntCounter,
}

/// One backend's series, resolved once when its table goes live.
#[derive(Clone)]
pub struct BackendMetrics {
    pub requests: IntCounter,
    pub errors: IntCounter,
    pub retries: IntCounter,
    pub ejections: IntCounter,
    pub in_flight: IntGauge,
    pub response_time: Histogram,
    /// The global `upstream_requests_total`, shared by every backend.
    pub upstream_requests: IntCounter,
}

/// Where a backend's series come from: the families, and the parent's
/// `backend_response_time_seconds`.
pub struct BackendSeries {
    pub families: BackendFamilies,
    pub response_time: HistogramVec,
}

/// A backend's series, resolved on first use.
pub struct LazyBackendMetrics {
    /// `None`: registered nowhere (backends outside a live table).
    source: Option<Arc<BackendSeries>>,
    resolved: OnceLock<BackendMetrics>,
}

pub const ENDPOINT_STATES: [&str; 4] = ["healthy", "slow", "unhealthy", "ejected"];

impl BackendFamilies {
    pub fn new() -> Result<Self, prometheus::Error> {
        let counter =
            |name: &str, help: &str| IntCounterVec::new(Opts::new(name, help), &["backend"]);
        Ok(Self {
            requests: counter(
                "backend_requests_total",
                "Tries sent to a backend, retries included",
            )?,
            errors: counter("backend_errors_total", "Tries that failed at the backend")?,
            retries: counter("backend_retries_total", "Tries that were retries")?,
            ejections: counter(
                "backend_ejections_total",
                "Endpoints ejected by passive health checks",
            )?,
            in_flight: IntGaugeVec::new(
                Opts::new(
                    "backend_in_flight",
                    "Requests to a backend whose response has not ended",
                ),
                &["backend"],
            )?,
            endpoints: IntGaugeVec::new(
                Opts::new(
                    "backend_endpoints",
                    "Endpoints of a backend by health state",
                ),
                &["backend", "state"],
            )?,
            connections_opened: IntCounter::new(
                "upstream_connections_opened_total",
                "Connections opened to backends (the rest of upstream_requests_total reused one)",
            )?,
            connections_salvaged: IntCounter::new(
                "upstream_connections_salvaged_total",
                "Connections kept by reading the rest of an answer whose client went away",
            )?,
            upstream_requests: IntCounter::new(
                "upstream_requests_total",
                "Requests sent to backends",
            )?,
        })
    }

    pub fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.requests.clone()))?;
        registry.register(Box::new(self.errors.clone()))?;
        registry.register(Box::new(self.retries.clone()))?;
        registry.register(Box::new(self.ejections.clone()))?;
        registry.register(Box::new(self.in_flight.clone()))?;
        registry.register(Box::new(self.endpoints.clone()))?;
        registry.register(Box::new(self.connections_opened.clone()))?;
        registry.register(Box::new(self.connections_salvaged.clone()))?;
        registry.register(Box::new(self.upstream_requests.clone()))?;
        Ok(())
    }

    /// The series of one backend; `response_time` comes from the parent's
    /// histogram family.
    pub fn for_backend(&self, id: &str, response_time: Histogram) -> BackendMetrics {
        BackendMetrics {
            requests: self.requests.with_label_values(&[id]),
            errors: self.errors.with_label_values(&[id]),
            retries: self.retries.with_label_values(&[id]),
            ejections: self.ejections.with_label_values(&[id]),
            in_flight: self.in_flight.with_label_values(&[id]),
            response_time,
            upstream_requests: self.upstream_requests.clone(),
        }
    }

    /// Drops the series of a backend no table has any more.
    pub fn remove(&self, id: &str) {
        let _ = self.requests.remove_label_values(&[id]);
        let _ = self.errors.remove_label_values(&[id]);
        let _ = self.retries.remove_label_values(&[id]);
        let _ = self.ejections.remove_label_values(&[id]);
        let _ = self.in_flight.remove_label_values(&[id]);
        for state in ENDPOINT_STATES {
            let _ = self.endpoints.remove_label_values(&[id, state]);
        }
    }
}

impl BackendSeries {
    /// The series of backend `id`, created now if they do not exist.
    pub fn for_backend(&self, id: &str) -> BackendMetrics {
        self.families
            .for_backend(id, self.response_time.with_label_values(&[id]))
    }
}

impl LazyBackendMetrics {
    pub fn new(source: Arc<BackendSeries>) -> Self {
        Self {
            source: Some(source),
            resolved: OnceLock::new(),
        }
    }

    pub fn detached() -> Self {
        Self {
            source: None,
            resolved: OnceLock::new(),
        }
    }

    /// The series of backend `id`, created on the first call.
    pub fn get(&self, id: &str) -> &BackendMetrics {
        self.resolved.get_or_init(|| match &self.source {
            Some(source) => source.for_backend(id),
            None => BackendMetrics::detached(),
        })
    }

    /// The series, if a request created them.
    pub fn resolved(&self) -> Option<&BackendMetrics> {
        self.resolved.get()
    }
}

impl BackendMetrics {
    /// Series registered nowhere: for backends used outside a live table
    /// (tools, tests).
    #[allow(clippy::expect_used)] // constant, valid names: creation cannot fail
    pub fn detached() -> Self {
        let counter = || IntCounter::new("detached", "detached").expect("valid metric name");
        Self {
            requests: counter(),
            errors: counter(),
            retries: counter(),
            ejections: counter(),
            in_flight: IntGauge::new("detached", "detached").expect("valid metric name"),
            response_time: Histogram::with_opts(prometheus::HistogramOpts::new(
                "detached", "detached",
            ))
            .expect("valid metric name"),
            upstream_requests: counter(),
        }
    }
}
