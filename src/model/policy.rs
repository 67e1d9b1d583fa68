//! A backend's resolved traffic policy: the defaults, or what a
//! BalancerPolicy set. Plain data; the proxy and the health checker act on it.

use std::time::Duration;

use http::HeaderName;

/// Load-balancing algorithms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Algorithm {
    #[default]
    RoundRobin,
    WeightedRoundRobin,
    Random,
    LeastConnection,
    PeakEwma,
    IpHash,
    ConsistentHash,
}

/// Where a request's consistent-hashing key comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashKey {
    Header(HeaderName),
    Cookie(String),
    SourceIp,
}

/// The cookie that pins a client to an endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StickyCookie {
    pub name: String,
    pub ttl: Option<Duration>,
    pub secure: bool,
    pub http_only: bool,
    /// `Strict`, `Lax` or `None`.
    pub same_site: &'static str,
}

/// When a failed try is sent again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first try.
    pub attempts: u32,
    pub per_try_timeout: Option<Duration>,
    pub on_connect_failure: bool,
    pub on_refused_stream: bool,
    /// The connection broke before an answer (reset, closed).
    pub on_reset: bool,
    pub on_timeout: bool,
    /// 5xx statuses retried (idempotent or bodiless requests only).
    pub on_status: Vec<u16>,
    /// Retries may add at most this percentage of requests.
    pub budget_percent: u32,
}

/// Periodic `GET path` to every endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ActiveCheck {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub slow_threshold: Option<Duration>,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

/// Ejection of endpoints that fail real requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassiveCheck {
    pub consecutive_failures: u32,
    pub ejection_time: Duration,
    pub max_ejection_percent: u32,
}

/// Everything the data plane needs to know about how to send to a backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendPolicy {
    pub algorithm: Algorithm,
    pub hash_key: Option<HashKey>,
    pub sticky: Option<StickyCookie>,
    pub slow_start: Option<Duration>,
    pub connect_timeout: Duration,
    /// Overrides `--request-timeout` for this backend.
    pub request_timeout: Option<Duration>,
    pub idle_timeout: Duration,
    /// Overrides `--proxy-read-timeout` for this backend.
    pub read_timeout: Option<Duration>,
    /// Overrides `--proxy-send-timeout` for this backend.
    pub send_timeout: Option<Duration>,
    pub retries: RetryPolicy,
    pub active: Option<ActiveCheck>,
    pub passive: Option<PassiveCheck>,
    /// The BalancerPolicy it came from (`namespace/name`), if any.
    pub source: Option<String>,
}

// === impl BackendPolicy ===

impl Default for BackendPolicy {
    /// Without a BalancerPolicy: round robin, connect 5 s, idle 90 s,
    /// connection failures and resets retried (at most 20% extra load), and
    /// passive checks on (5 failures eject for 30 s, at most half the
    /// endpoints).
    fn default() -> Self {
        Self {
            algorithm: Algorithm::RoundRobin,
            hash_key: None,
            sticky: None,
            slow_start: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: None,
            idle_timeout: Duration::from_secs(90),
            read_timeout: None,
            send_timeout: None,
            retries: RetryPolicy::default(),
            active: None,
            passive: Some(PassiveCheck::default()),
            source: None,
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 2,
            per_try_timeout: None,
            on_connect_failure: true,
            on_refused_stream: true,
            on_reset: true,
            on_timeout: false,
            on_status: Vec::new(),
            budget_percent: 20,
        }
    }
}

impl Default for PassiveCheck {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            ejection_time: Duration::from_secs(30),
            max_ejection_percent: 50,
        }
    }
}

impl Default for ActiveCheck {
    fn default() -> Self {
        Self {
            path: "/healthz".to_string(),
            interval: Duration::from_secs(10),
            timeout: Duration::from_millis(500),
            slow_threshold: None,
            healthy_threshold: 1,
            unhealthy_threshold: 2,
        }
    }
}
