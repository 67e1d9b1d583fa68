//! Load balancing: which endpoint of a backend takes the next request.
//!
//! A [`Balancer`] is built once per backend per routing table from the
//! algorithm and the endpoint list, and is immutable apart from atomics
//! (cursors). What must outlive a table swap (in-flight counts, latency,
//! health) lives in [`EndpointState`], shared through a [`StateRegistry`].
//!
//! Every pick first narrows the endpoints to the usable ones: healthy ones,
//! or slow ones when no healthy one is left; ejected and unhealthy ones never
//! (the caller answers 503 when nothing is usable).

mod endpoint;
mod least_conn;
mod maglev;
mod peak_ewma;
mod round_robin;
mod sticky;

use std::sync::Arc;

pub use endpoint::{EndpointState, Health, InFlight, StateRegistry};
use maglev::Maglev;
pub use maglev::hash_with;
pub use sticky::sticky_id;

use round_robin::Schedule;

pub use crate::model::Algorithm;

/// Picks endpoints for one backend.
pub struct Balancer {
    kind: Kind,
    states: Vec<Arc<EndpointState>>,
}

enum Kind {
    /// RoundRobin (all weights 1) and WeightedRoundRobin.
    Schedule(Schedule),
    Random,
    LeastConnection,
    PeakEwma,
    /// IPHash and ConsistentHash.
    Hash(Maglev),
}

// === impl Balancer ===

impl Balancer {
    /// `states` and `weights` are index-aligned with the backend's endpoints.
    pub fn new(algorithm: Algorithm, states: Vec<Arc<EndpointState>>, weights: &[u32]) -> Self {
        let kind = match algorithm {
            Algorithm::RoundRobin => Kind::Schedule(Schedule::new(&vec![1; states.len()])),
            Algorithm::WeightedRoundRobin => Kind::Schedule(Schedule::new(weights)),
            Algorithm::Random => Kind::Random,
            Algorithm::LeastConnection => Kind::LeastConnection,
            Algorithm::PeakEwma => Kind::PeakEwma,
            Algorithm::IpHash | Algorithm::ConsistentHash => {
                let keys: Vec<String> = states.iter().map(|s| s.key().to_string()).collect();
                Kind::Hash(Maglev::new(&keys))
            }
        };
        Self { kind, states }
    }

    pub fn states(&self) -> &[Arc<EndpointState>] {
        &self.states
    }

    /// Picks an endpoint index. `hash` is the request's key for the hashing
    /// algorithms (ignored by the others; a hashing balancer without a key
    /// falls back to random). `exclude` skips an endpoint already tried.
    pub fn pick(&self, hash: Option<u64>, exclude: Option<usize>) -> Option<usize> {
        let tier = self.usable_tier(exclude)?;
        let usable = |i: usize| {
            Some(i) != exclude && self.states[i].health() == tier && !self.states[i].is_ejected()
        };
        match &self.kind {
            Kind::Schedule(s) => s.next(usable),
            Kind::Random => random(self.states.len(), usable),
            Kind::LeastConnection => least_conn::pick(&self.states, usable),
            Kind::PeakEwma => peak_ewma::pick(&self.states, usable),
            Kind::Hash(m) => match hash {
                Some(h) => m.lookup(h, usable),
                None => random(self.states.len(), usable),
            },
        }
    }

    /// The best health level some usable endpoint has: Healthy, else Slow.
    fn usable_tier(&self, exclude: Option<usize>) -> Option<Health> {
        let mut slow = false;
        for (i, s) in self.states.iter().enumerate() {
            if Some(i) == exclude || s.is_ejected() {
                continue;
            }
            match s.health() {
                Health::Healthy => return Some(Health::Healthy),
                Health::Slow => slow = true,
                Health::Unhealthy => {}
            }
        }
        slow.then_some(Health::Slow)
    }
}

/// A uniformly random usable index: a random start, then the first usable
/// one from there (cheap, and uniform enough when few are unusable).
fn random(n: usize, usable: impl Fn(usize) -> bool) -> Option<usize> {
    if n == 0 {
        return None;
    }
    let start = fastrand::usize(..n);
    (0..n).map(|k| (start + k) % n).find(|&i| usable(i))
}

#[cfg(test)]
mod tests;
