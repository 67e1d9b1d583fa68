//! The health score: one number from 0 to 100 for "is traffic fine", from
//! three measured parts over the last minute ([`super::history::WINDOW`]):
//!
//! - success `S`: the share of answers that were not 5xx (1 without
//!   traffic);
//! - latency `L`: per backend, 1 when its mean response time is within its
//!   slow threshold (the BalancerPolicy's `slowThreshold`, else
//!   [`DEFAULT_SLOW`]), else threshold / mean; averaged weighted by the
//!   backend's requests (1 without traffic);
//! - endpoints `E`: healthy endpoints count 1, slow ones 1/2, unhealthy and
//!   ejected ones 0, a backend with no endpoint counts as one at 0;
//!   averaged over every endpoint of the live table (1 without backends).
//!
//! `score = round(100 × (0.5·S + 0.25·L + 0.25·E))`: errors weigh most,
//! since they are what clients see.

use std::collections::HashSet;
use std::time::Duration;

use serde::Serialize;

use super::history::{Window, ratio};
use crate::balance::Health;
use crate::model::{Backend, RoutingTable};

/// The slow threshold of a backend whose policy sets none.
pub const DEFAULT_SLOW: Duration = Duration::from_secs(1);

/// The formula, as the page shows it.
pub const FORMULA: &str = "score = round(100 × (0.5·S + 0.25·L + 0.25·E)); \
S = share of answers not 5xx in the last minute; \
L = per backend min(1, slow threshold / mean response time), weighted by requests; \
E = endpoints healthy 1, slow ½, unhealthy or ejected 0 (a backend without endpoints counts as one at 0)";

/// The score and its parts.
#[derive(Clone, Debug, Serialize)]
pub struct Score {
    pub score: u8,
    pub success: f64,
    pub latency: f64,
    pub endpoints: f64,
    pub formula: &'static str,
}

/// An endpoint's state as the dashboard shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointHealth {
    Healthy,
    Slow,
    Unhealthy,
    Ejected,
}

impl EndpointHealth {
    pub fn of(state: &crate::balance::EndpointState) -> Self {
        if state.is_ejected() {
            return Self::Ejected;
        }
        match state.health() {
            Health::Healthy => Self::Healthy,
            Health::Slow => Self::Slow,
            Health::Unhealthy => Self::Unhealthy,
        }
    }

    fn weight(self) -> f64 {
        match self {
            Self::Healthy => 1.0,
            Self::Slow => 0.5,
            Self::Unhealthy | Self::Ejected => 0.0,
        }
    }
}

/// A backend's slow threshold.
pub fn slow_threshold(backend: &Backend) -> Duration {
    (backend.policy.active.as_ref())
        .and_then(|a| a.slow_threshold)
        .unwrap_or(DEFAULT_SLOW)
}

/// The score of `table` given what happened in `window`.
pub fn score(table: &RoutingTable, window: &Window) -> Score {
    let success = if window.requests == 0 {
        1.0
    } else {
        1.0 - ratio(window.errors, window.requests)
    };

    let mut seen = HashSet::new();
    let (mut weighted, mut requests) = (0.0, 0u64);
    let (mut health, mut endpoints) = (0.0, 0usize);
    for backend in table.backends() {
        if !seen.insert(backend.id.as_str()) {
            continue;
        }
        if let Some(w) = window.backends.get(&backend.id)
            && let Some(mean) = w.latency.mean_ms()
        {
            let threshold = slow_threshold(backend).as_secs_f64() * 1e3;
            let part = if mean <= threshold {
                1.0
            } else {
                threshold / mean
            };
            weighted += part * w.requests as f64;
            requests += w.requests;
        }
        let before = endpoints;
        for (_, state) in backend.states() {
            health += EndpointHealth::of(state).weight();
            endpoints += 1;
        }
        if endpoints == before {
            endpoints += 1;
        }
    }
    let latency = if requests == 0 {
        1.0
    } else {
        weighted / requests as f64
    };
    let endpoints = if endpoints == 0 {
        1.0
    } else {
        health / endpoints as f64
    };
    let value = 100.0 * (0.5 * success + 0.25 * latency + 0.25 * endpoints);
    Score {
        score: value.round().clamp(0.0, 100.0) as u8,
        success,
        latency,
        endpoints,
        formula: FORMULA,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dashboard::history::{BackendWindow, Buckets};
    use crate::model::{
        Backend, Endpoint, EndpointAddr, HostMatch, PathMatch, Route, TableBuilder,
    };
    use std::sync::Arc;

    fn table(endpoints: usize) -> RoutingTable {
        let ready = (0..endpoints)
            .map(|i| {
                Endpoint::new(EndpointAddr::Ip(([127, 0, 0, 1], 8000 + i as u16).into())).unwrap()
            })
            .collect();
        let backend = Arc::new(Backend::new("ns/web:80".into(), ready, Vec::new()));
        let mut builder = TableBuilder::new(1);
        builder
            .add(
                &HostMatch::Exact("a.example".into()),
                Route {
                    path: PathMatch::prefix("/"),
                    backend,
                    source: "ns/web".into(),
                    https: Default::default(),
                    features: None,
                    error_backend: None,
                    auth_backend: None,
                },
            )
            .unwrap();
        builder.build()
    }

    fn window(requests: u64, errors: u64, mean_ms: f64) -> Window {
        let latency = Buckets {
            bounds: vec![],
            cumulative: vec![],
            count: requests,
            sum: mean_ms / 1e3 * requests as f64,
        };
        let mut w = Window {
            seconds: 60.0,
            requests,
            errors,
            latency: latency.clone(),
            backends: Default::default(),
        };
        w.backends.insert(
            "ns/web:80".into(),
            BackendWindow {
                requests,
                errors,
                latency,
            },
        );
        w
    }

    #[test]
    fn a_quiet_healthy_table_scores_100() {
        let s = score(&table(2), &Window::default());
        assert_eq!(s.score, 100);
    }

    #[test]
    fn errors_slowness_and_missing_endpoints_lower_the_score() {
        // Half the answers 5xx: S = 0.5 -> 75.
        assert_eq!(score(&table(2), &window(100, 50, 10.0)).score, 75);
        // Twice the 1 s threshold: L = 0.5 -> 87.5, rounded to 88.
        assert_eq!(score(&table(2), &window(100, 0, 2000.0)).score, 88);
        // No endpoint: E = 0 -> 75.
        assert_eq!(score(&table(0), &window(0, 0, 0.0)).score, 75);
    }

    #[test]
    fn ejected_endpoints_count_as_down() {
        let t = table(2);
        let backend = t.backends().next().unwrap().clone();
        let (_, state) = backend.states().next().unwrap();
        state.eject(Duration::from_secs(30));
        let s = score(&t, &Window::default());
        assert!((s.endpoints - 0.5).abs() < 1e-9);
        assert_eq!(s.score, 88);
    }
}
