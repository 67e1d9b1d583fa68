//! A backend: the endpoints of one Service port, as the proxy dials them.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};

use http::uri::Authority;

use super::BackendPolicy;
use crate::balance::{Balancer, EndpointState, Health, StateRegistry, sticky_id};
use crate::metrics::{BackendMetrics, LazyBackendMetrics, Metrics};

/// Where one endpoint lives.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EndpointAddr {
    /// An address from an EndpointSlice.
    Ip(SocketAddr),
    /// A DNS name from an `ExternalName` Service (only with `--allow-external-name`).
    Name { host: String, port: u16 },
}

/// One endpoint with its pre-built URI authority, so the request path never
/// formats an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub addr: EndpointAddr,
    authority: Authority,
}

/// The endpoints behind one Service port, with the policy that says how to
/// send to them.
///
/// `ready` endpoints take new requests; `fallback` ones (serving but
/// terminating) are used only when no ready endpoint is left, as the
/// EndpointSlice conventions ask.
pub struct Backend {
    /// Stable label for logs and metrics: `namespace/service:port`.
    pub id: String,
    /// `namespace/service`: endpoint state (health, load) is kept per
    /// Service endpoint, shared by every port and route.
    pub service: String,
    pub ready: Vec<Endpoint>,
    pub fallback: Vec<Endpoint>,
    /// Weights of the `ready` endpoints (WeightedRoundRobin), index-aligned.
    pub weights: Vec<u32>,
    pub policy: Arc<BackendPolicy>,
    /// The balancers over live endpoint state, attached when the table goes
    /// live (see [`Backend::attach`]).
    runtime: OnceLock<Runtime>,
}

/// What a backend needs at request time that is not plain data.
struct Runtime {
    ready: Balancer,
    fallback: Balancer,
    /// Sticky cookie value -> index in `ready`.
    sticky: HashMap<String, usize>,
    budget: RetryBudget,
    metrics: LazyBackendMetrics,
}

/// One picked endpoint with its live state.
#[derive(Clone, Copy)]
pub struct Picked<'a> {
    pub endpoint: &'a Endpoint,
    pub state: &'a Arc<EndpointState>,
}

/// Caps retries to a share of requests: every request earns
/// `budget_percent / 100` of a retry, a retry spends one, and a small floor
/// lets a quiet backend retry at all.
struct RetryBudget {
    /// Hundredths of a retry available.
    tokens: AtomicI64,
    per_request: i64,
}

const RETRY_FLOOR: i64 = 10 * 100;
const RETRY_CAP: i64 = 1000 * 100;

// === impl EndpointAddr ===

impl fmt::Display for EndpointAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointAddr::Ip(addr) => addr.fmt(f),
            EndpointAddr::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

// === impl Endpoint ===

impl Endpoint {
    /// Builds an endpoint; `None` when the address cannot be a URI authority
    /// (an ExternalName with characters a host may not have).
    pub fn new(addr: EndpointAddr) -> Option<Self> {
        let authority = Authority::try_from(addr.to_string()).ok()?;
        Some(Self { addr, authority })
    }

    pub fn authority(&self) -> &Authority {
        &self.authority
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.addr.fmt(f)
    }
}

// === impl Backend ===

impl Backend {
    /// A backend with the default policy (used for routes whose backend
    /// cannot be resolved, and in tests).
    pub fn new(id: String, ready: Vec<Endpoint>, fallback: Vec<Endpoint>) -> Self {
        let service = id.split(':').next().unwrap_or(&id).to_string();
        let weights = vec![1; ready.len()];
        Self::with_policy(id, service, ready, fallback, weights, Arc::default())
    }

    pub fn with_policy(
        id: String,
        service: String,
        ready: Vec<Endpoint>,
        fallback: Vec<Endpoint>,
        weights: Vec<u32>,
        policy: Arc<BackendPolicy>,
    ) -> Self {
        Self {
            id,
            service,
            ready,
            fallback,
            weights,
            policy,
            runtime: OnceLock::new(),
        }
    }

    /// Binds the backend to live endpoint state from `registry`, so health
    /// and load survive table swaps. Done once, when the table goes live; a
    /// backend used without it gets state of its own.
    pub fn attach(&self, registry: &StateRegistry, metrics: &Metrics) {
        let _ = self.runtime.get_or_init(|| {
            let series = LazyBackendMetrics::new(metrics.backend_series());
            self.build_runtime(|key| registry.get(key), series)
        });
    }

    fn runtime(&self) -> &Runtime {
        self.runtime.get_or_init(|| {
            self.build_runtime(
                |key| EndpointState::detached(key),
                LazyBackendMetrics::detached(),
            )
        })
    }

    fn build_runtime(
        &self,
        state: impl Fn(&str) -> Arc<EndpointState>,
        metrics: LazyBackendMetrics,
    ) -> Runtime {
        let keys = |set: &[Endpoint]| -> Vec<String> {
            set.iter()
                .map(|e| format!("{} {}", self.service, e.addr))
                .collect()
        };
        let ready_keys = keys(&self.ready);
        let states = |keys: &[String]| keys.iter().map(|k| state(k)).collect::<Vec<_>>();
        let algorithm = self.policy.algorithm;
        Runtime {
            ready: Balancer::new(algorithm, states(&ready_keys), &self.weights),
            fallback: Balancer::new(
                algorithm,
                states(&keys(&self.fallback)),
                &vec![1; self.fallback.len()],
            ),
            sticky: ready_keys
                .iter()
                .enumerate()
                .map(|(i, k)| (sticky_id(k), i))
                .collect(),
            budget: RetryBudget::new(self.policy.retries.budget_percent),
            metrics,
        }
    }

    /// This backend's metric series (created by the first call).
    pub fn metrics(&self) -> &BackendMetrics {
        self.runtime().metrics.get(&self.id)
    }

    /// Whether a request created this backend's series yet.
    pub fn has_metrics(&self) -> bool {
        self.runtime().metrics.resolved().is_some()
    }

    /// Picks an endpoint: ready ones first, serving but terminating ones
    /// only when no ready one is usable. `hash` keys the hashing algorithms;
    /// `exclude` skips an endpoint a retry already tried. `None` means 503.
    pub fn pick(&self, hash: Option<u64>, exclude: Option<&Endpoint>) -> Option<Picked<'_>> {
        let rt = self.runtime();
        for (set, balancer) in [(&self.ready, &rt.ready), (&self.fallback, &rt.fallback)] {
            let skip = exclude.and_then(|e| set.iter().position(|x| x == e));
            if let Some(i) = self.slow_start(balancer, balancer.pick(hash, skip), hash, skip) {
                return Some(Picked {
                    endpoint: &set[i],
                    state: &balancer.states()[i],
                });
            }
        }
        None
    }

    /// Slow start: an endpoint younger than `slowStart` keeps a pick only
    /// with a probability that grows with its age; otherwise one other pick
    /// is made, and taken only if that endpoint is past its own window. An
    /// alternative still ramping up is no better, and with none past its
    /// window (every endpoint new, as when the process starts) no other
    /// pick is made: it used to send all of round robin's traffic to
    /// whichever endpoint came second.
    fn slow_start(
        &self,
        balancer: &Balancer,
        picked: Option<usize>,
        hash: Option<u64>,
        skip: Option<usize>,
    ) -> Option<usize> {
        let (Some(window), Some(i)) = (self.policy.slow_start, picked) else {
            return picked;
        };
        let age = balancer.states()[i].age();
        if age >= window || fastrand::f64() < age.as_secs_f64() / window.as_secs_f64() {
            return picked;
        }
        // With no endpoint past its window there is nothing to ramp up
        // against, and another pick would only move round robin along.
        if !balancer.states().iter().any(|s| s.age() >= window) {
            return picked;
        }
        let other = if skip.is_none() {
            balancer.pick(hash, Some(i))
        } else {
            None
        };
        match other {
            Some(j) if balancer.states()[j].age() >= window => Some(j),
            _ => picked,
        }
    }

    /// The ready endpoint a sticky cookie value names, if it is usable.
    pub fn sticky(&self, value: &str) -> Option<Picked<'_>> {
        let rt = self.runtime();
        let &i = rt.sticky.get(value)?;
        let state = &rt.ready.states()[i];
        if state.is_ejected() || state.health() == Health::Unhealthy {
            return None;
        }
        Some(Picked {
            endpoint: &self.ready[i],
            state,
        })
    }

    /// Counts a request towards the retry budget.
    pub fn count_request(&self) {
        self.runtime().budget.earn();
    }

    /// Takes one retry from the budget; `false` when it is spent.
    pub fn take_retry(&self) -> bool {
        self.runtime().budget.spend()
    }

    /// Ejects `state` after a failure when the passive check says so and
    /// the share of ejected endpoints allows it. Returns whether it did.
    pub fn record_failure(&self, state: &EndpointState) -> bool {
        let Some(passive) = &self.policy.passive else {
            return false;
        };
        if state.record_failure() < passive.consecutive_failures || state.is_ejected() {
            return false;
        }
        let states = self.runtime().ready.states();
        let ejected = states.iter().filter(|s| s.is_ejected()).count();
        let allowed = states.len() * passive.max_ejection_percent as usize / 100;
        if ejected >= allowed {
            return false;
        }
        state.eject(passive.ejection_time);
        self.metrics().ejections.inc();
        tracing::warn!(backend = %self.id, endpoint = state.key(), ejection_time = ?passive.ejection_time, "endpoint ejected after consecutive failures");
        true
    }

    /// Every endpoint's live state (ready ones first), for health checks
    /// and metrics.
    pub fn states(&self) -> impl Iterator<Item = (&Endpoint, &Arc<EndpointState>)> {
        let rt = self.runtime();
        self.ready
            .iter()
            .zip(rt.ready.states())
            .chain(self.fallback.iter().zip(rt.fallback.states()))
    }

    /// Whether two backends send traffic to the same place with the same
    /// policy (used to tell a duplicate rule from a conflicting one).
    /// Whether it has any endpoint, ready or not (ingress-nginx's test for
    /// sending a route to its `default-backend`).
    pub fn has_endpoints(&self) -> bool {
        !self.ready.is_empty() || !self.fallback.is_empty()
    }

    pub fn same_target(&self, other: &Backend) -> bool {
        self.id == other.id && self.policy == other.policy
    }
}

// === impl RetryBudget ===

impl RetryBudget {
    fn new(percent: u32) -> Self {
        Self {
            tokens: AtomicI64::new(RETRY_FLOOR),
            per_request: i64::from(percent),
        }
    }

    fn earn(&self) {
        if self.tokens.load(Ordering::Relaxed) < RETRY_CAP {
            self.tokens.fetch_add(self.per_request, Ordering::Relaxed);
        }
    }

    fn spend(&self) -> bool {
        self.tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                (t >= 100).then_some(t - 100)
            })
            .is_ok()
    }
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backend")
            .field("id", &self.id)
            .field("ready", &self.ready)
            .field("fallback", &self.fallback)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(port: u16) -> Endpoint {
        Endpoint::new(EndpointAddr::Ip(SocketAddr::from(([127, 0, 0, 1], port)))).unwrap()
    }

    #[test]
    fn round_robin_rotates_evenly() {
        let b = Backend::new("ns/s:80".into(), vec![ep(1), ep(2), ep(3)], vec![]);
        let mut counts = [0; 3];
        for _ in 0..300 {
            let port = match b.pick(None, None).unwrap().endpoint.addr {
                EndpointAddr::Ip(a) => a.port(),
                _ => unreachable!(),
            };
            counts[port as usize - 1] += 1;
        }
        assert_eq!(counts, [100, 100, 100]);
    }

    #[test]
    fn endpoints_all_in_slow_start_share_traffic_evenly() {
        let policy = BackendPolicy {
            slow_start: Some(std::time::Duration::from_secs(600)),
            ..BackendPolicy::default()
        };
        let b = Backend::with_policy(
            "ns/s:80".into(),
            "ns/s".into(),
            vec![ep(1), ep(2)],
            vec![],
            vec![1, 1],
            Arc::new(policy),
        );
        let mut counts = [0; 2];
        for _ in 0..200 {
            let port = match b.pick(None, None).unwrap().endpoint.addr {
                EndpointAddr::Ip(a) => a.port(),
                _ => unreachable!(),
            };
            counts[port as usize - 1] += 1;
        }
        assert_eq!(counts, [100, 100], "both are new: neither is preferred");
    }

    #[test]
    fn terminating_endpoints_only_when_nothing_is_ready() {
        let b = Backend::new("ns/s:80".into(), vec![ep(1)], vec![ep(9)]);
        assert!((0..10).all(|_| b.pick(None, None).unwrap().endpoint == &ep(1)));
        let b = Backend::new("ns/s:80".into(), vec![], vec![ep(9)]);
        assert_eq!(b.pick(None, None).unwrap().endpoint, &ep(9));
        let b = Backend::new("ns/s:80".into(), vec![], vec![]);
        assert!(b.pick(None, None).is_none());
    }

    #[test]
    fn external_names_become_authorities() {
        let e = Endpoint::new(EndpointAddr::Name {
            host: "api.example.com".into(),
            port: 443,
        })
        .unwrap();
        assert_eq!(e.authority().as_str(), "api.example.com:443");
        assert!(
            Endpoint::new(EndpointAddr::Name {
                host: "bad host/".into(),
                port: 1
            })
            .is_none()
        );
    }
}
