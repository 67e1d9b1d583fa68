//! Live state of one Service endpoint: in-flight requests, latency, health,
//! passive ejection, idle keep-alive connections. Shared by every route and
//! every table that uses the endpoint, so a configuration change resets none
//! of it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::proxy::upstream::IdlePool;

/// Active health-check verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Health {
    Healthy = 0,
    /// Answers, but slower than the policy's `slowThreshold`: used only when
    /// no healthy endpoint is left.
    Slow = 1,
    Unhealthy = 2,
}

/// One endpoint's state. Cheap to read on every pick.
#[derive(Debug)]
pub struct EndpointState {
    /// `namespace/service ip:port`: identity across tables.
    key: String,
    epoch: Instant,
    /// When this endpoint was first seen, for slow start.
    created: Instant,
    in_flight: AtomicU32,
    health: AtomicU8,
    consecutive_failures: AtomicU32,
    /// Milliseconds since `epoch` until which the endpoint is ejected.
    ejected_until_ms: AtomicU64,
    ewma: Mutex<Ewma>,
    /// Keep-alive connections to this endpoint waiting for a request.
    pool: IdlePool,
}

/// Peak-sensitive moving average of response latency (as linkerd and
/// finagle do): a slower sample is taken at once, faster ones decay in.
#[derive(Debug)]
struct Ewma {
    cost_ns: f64,
    stamp: Instant,
}

/// How quickly old latency samples fade.
const EWMA_DECAY: Duration = Duration::from_secs(10);
/// Latency assumed for an endpoint with no samples yet: optimistic enough to
/// try new endpoints, not so low that they are flooded.
const EWMA_DEFAULT: Duration = Duration::from_millis(1);

/// Counts a request as in flight on an endpoint until dropped; the response
/// body carries it, so a request ends when its body does.
#[derive(Debug)]
pub struct InFlight {
    state: Arc<EndpointState>,
    started: Instant,
}

/// Hands out one [`EndpointState`] per endpoint key for as long as some
/// table uses it.
#[derive(Debug)]
pub struct StateRegistry {
    epoch: Instant,
    states: Mutex<HashMap<String, Weak<EndpointState>>>,
}

// === impl EndpointState ===

impl EndpointState {
    fn new(key: String, epoch: Instant) -> Self {
        Self {
            key,
            epoch,
            created: Instant::now(),
            in_flight: AtomicU32::new(0),
            health: AtomicU8::new(Health::Healthy as u8),
            consecutive_failures: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            ewma: Mutex::new(Ewma {
                cost_ns: EWMA_DEFAULT.as_nanos() as f64,
                stamp: epoch,
            }),
            pool: IdlePool::default(),
        }
    }

    /// A state not shared with anything (tables built outside a registry,
    /// and tests).
    pub fn detached(key: impl Into<String>) -> Arc<Self> {
        Arc::new(Self::new(key.into(), Instant::now()))
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// Time since the endpoint was first seen.
    pub fn age(&self) -> Duration {
        self.created.elapsed()
    }

    pub fn pool(&self) -> &IdlePool {
        &self.pool
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn health(&self) -> Health {
        match self.health.load(Ordering::Relaxed) {
            0 => Health::Healthy,
            1 => Health::Slow,
            _ => Health::Unhealthy,
        }
    }

    pub fn set_health(&self, health: Health) {
        self.health.store(health as u8, Ordering::Relaxed);
    }

    pub fn is_ejected(&self) -> bool {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        until != 0 && self.now_ms() < until
    }

    /// Starts a request on this endpoint.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            state: self.clone(),
            started: Instant::now(),
        }
    }

    /// Records a request that failed at the endpoint (connect error, broken
    /// response, timeout, 5xx when the policy counts them). Returns the
    /// consecutive failures so far.
    pub fn record_failure(&self) -> u32 {
        self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn record_success(&self) {
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
    }

    /// Takes the endpoint out of rotation for `period`.
    pub fn eject(&self, period: Duration) {
        let until = self.now_ms() + period.as_millis() as u64;
        self.ejected_until_ms.store(until.max(1), Ordering::Relaxed);
        self.consecutive_failures.store(0, Ordering::Relaxed);
    }

    /// Load-weighted latency cost: the PeakEWMA score, lower is better.
    pub fn cost(&self) -> f64 {
        let ewma = self.ewma.lock();
        let decayed = ewma.decayed(Instant::now());
        decayed * f64::from(self.in_flight() + 1)
    }

    /// Feeds one latency sample (time to response headers).
    pub fn observe_latency(&self, latency: Duration) {
        let now = Instant::now();
        let mut ewma = self.ewma.lock();
        let sample = latency.as_nanos() as f64;
        let current = ewma.decayed(now);
        ewma.cost_ns = if sample > current {
            sample
        } else {
            let elapsed = now.saturating_duration_since(ewma.stamp).as_secs_f64();
            let w = (-elapsed / EWMA_DECAY.as_secs_f64()).exp();
            current * w + sample * (1.0 - w)
        };
        ewma.stamp = now;
    }

    fn now_ms(&self) -> u64 {
        Instant::now()
            .saturating_duration_since(self.epoch)
            .as_millis() as u64
    }
}

impl Ewma {
    /// The cost as of `now`, decayed towards the default while no samples
    /// come, so an endpoint that was slow once gets tried again.
    fn decayed(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.stamp).as_secs_f64();
        let w = (-elapsed / EWMA_DECAY.as_secs_f64()).exp();
        self.cost_ns * w + EWMA_DEFAULT.as_nanos() as f64 * (1.0 - w)
    }
}

// === impl InFlight ===

impl InFlight {
    pub fn state(&self) -> &Arc<EndpointState> {
        &self.state
    }

    /// Response headers arrived: a latency sample for PeakEWMA.
    pub fn headers_received(&self) {
        self.state.observe_latency(self.started.elapsed());
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

// === impl StateRegistry ===

impl StateRegistry {
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
            states: Mutex::new(HashMap::new()),
        }
    }

    /// The state for `key`, created on first use and kept while any table
    /// holds it.
    pub fn get(&self, key: &str) -> Arc<EndpointState> {
        let mut states = self.states.lock();
        if let Some(live) = states.get(key).and_then(Weak::upgrade) {
            return live;
        }
        let state = Arc::new(EndpointState::new(key.to_string(), self.epoch));
        states.insert(key.to_string(), Arc::downgrade(&state));
        state
    }

    /// Forgets endpoints no table uses any more.
    pub fn prune(&self) {
        self.states.lock().retain(|_, w| w.strong_count() > 0);
    }

    pub fn len(&self) -> usize {
        self.states.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for StateRegistry {
    fn default() -> Self {
        Self::new()
    }
}
