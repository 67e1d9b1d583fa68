//! The last 15 minutes of traffic, in memory: a fixed ring of [`POINTS`]
//! points, one every [`TICK`], read from the Prometheus families (requests,
//! status codes, the latency histograms). The request path pays nothing for
//! it: it counts what it counted anyway, and this reads the counts.
//!
//! Latency percentiles come from the histograms' buckets, interpolated
//! within a bucket as Prometheus's `histogram_quantile` does, so they are
//! as precise as the buckets (0.5 ms to 30 s).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use prometheus::Histogram;
use prometheus::core::Collector;
use serde::Serialize;
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::model::RoutingTable;

/// One point every this long.
pub const TICK: Duration = Duration::from_secs(5);
/// 15 minutes of points.
pub const POINTS: usize = 180;
/// The window "now" figures (rates, latency, the health score) cover.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Readings kept for that window: one per tick, and the one before.
const READINGS: usize = (WINDOW.as_secs() / TICK.as_secs()) as usize + 1;

/// One point of the ring.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Point {
    /// End of the interval, milliseconds since the Unix epoch.
    pub t: u64,
    pub requests: u64,
    /// Requests a second.
    pub rate: f64,
    /// Answers with a 5xx status.
    pub errors: u64,
    pub error_ratio: f64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// Every counter the dashboard follows, read at one moment.
#[derive(Clone, Debug)]
pub struct Reading {
    pub at: Instant,
    pub requests: u64,
    /// 5xx answers.
    pub errors: u64,
    pub latency: Buckets,
    pub backends: HashMap<String, BackendReading>,
}

/// A latency histogram's cumulative buckets.
#[derive(Clone, Debug, Default)]
pub struct Buckets {
    pub bounds: Vec<f64>,
    pub cumulative: Vec<u64>,
    pub count: u64,
    pub sum: f64,
}

/// One backend's counters.
#[derive(Clone, Debug, Default)]
pub struct BackendReading {
    pub requests: u64,
    pub errors: u64,
    pub latency: Buckets,
}

/// What happened between two readings.
#[derive(Clone, Debug, Default)]
pub struct Window {
    pub seconds: f64,
    pub requests: u64,
    pub errors: u64,
    pub latency: Buckets,
    pub backends: HashMap<String, BackendWindow>,
}

/// One backend between two readings.
#[derive(Clone, Debug, Default)]
pub struct BackendWindow {
    pub requests: u64,
    pub errors: u64,
    pub latency: Buckets,
}

/// The ring and the readings of the last [`WINDOW`].
#[derive(Debug, Default)]
pub struct History {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    points: VecDeque<Point>,
    readings: VecDeque<Reading>,
}

impl Buckets {
    fn of(histogram: &Histogram) -> Self {
        let mut out = Buckets::default();
        for family in histogram.collect() {
            for metric in family.get_metric() {
                let h = metric.get_histogram();
                out.count = h.get_sample_count();
                out.sum = h.get_sample_sum();
                for b in h.get_bucket() {
                    out.bounds.push(b.upper_bound());
                    out.cumulative.push(b.cumulative_count());
                }
            }
        }
        out
    }

    /// `self - before`, bucket by bucket (a histogram that is new since
    /// counts from zero).
    fn since(&self, before: &Buckets) -> Buckets {
        let earlier = |i: usize| before.cumulative.get(i).copied().unwrap_or(0);
        Buckets {
            bounds: self.bounds.clone(),
            cumulative: (self.cumulative.iter().enumerate())
                .map(|(i, c)| c.saturating_sub(earlier(i)))
                .collect(),
            count: self.count.saturating_sub(before.count),
            sum: (self.sum - before.sum).max(0.0),
        }
    }

    /// The `q` quantile in milliseconds; `None` without samples.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = q * self.count as f64;
        let mut below = 0u64;
        let mut lower = 0.0;
        for (bound, &cumulative) in self.bounds.iter().zip(&self.cumulative) {
            if cumulative as f64 >= rank {
                let inside = cumulative.saturating_sub(below);
                let share = if inside == 0 {
                    1.0
                } else {
                    (rank - below as f64) / inside as f64
                };
                return Some((lower + (bound - lower) * share.clamp(0.0, 1.0)) * 1e3);
            }
            below = cumulative;
            lower = *bound;
        }
        // Above the last bucket: its bound is all that is known.
        Some(lower * 1e3)
    }

    /// The mean in milliseconds; `None` without samples.
    pub fn mean_ms(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64 * 1e3)
    }
}

/// Reads every counter now (off the request path: a few microseconds per
/// backend).
pub fn read(metrics: &Metrics, table: &RoutingTable) -> Reading {
    let errors = metrics.status_counts().range(500..).map(|(_, n)| n).sum();
    let mut backends = HashMap::new();
    for backend in table.backends() {
        if backends.contains_key(&backend.id) || !backend.has_metrics() {
            continue;
        }
        let m = backend.metrics();
        backends.insert(
            backend.id.clone(),
            BackendReading {
                requests: m.requests.get(),
                errors: m.errors.get(),
                latency: Buckets::of(&m.response_time),
            },
        );
    }
    Reading {
        at: Instant::now(),
        requests: metrics.requests_total.get(),
        errors,
        latency: Buckets::of(&metrics.request_duration),
        backends,
    }
}

impl Reading {
    /// What happened since `before`.
    pub fn since(&self, before: &Reading) -> Window {
        let none = BackendReading::default();
        Window {
            seconds: self.at.duration_since(before.at).as_secs_f64(),
            requests: self.requests.saturating_sub(before.requests),
            errors: self.errors.saturating_sub(before.errors),
            latency: self.latency.since(&before.latency),
            backends: (self.backends.iter())
                .map(|(id, now)| {
                    let then = before.backends.get(id).unwrap_or(&none);
                    let window = BackendWindow {
                        requests: now.requests.saturating_sub(then.requests),
                        errors: now.errors.saturating_sub(then.errors),
                        latency: now.latency.since(&then.latency),
                    };
                    (id.clone(), window)
                })
                .collect(),
        }
    }
}

impl Window {
    pub fn rate(&self) -> f64 {
        per_second(self.requests, self.seconds)
    }

    pub fn error_ratio(&self) -> f64 {
        ratio(self.errors, self.requests)
    }
}

/// `n / seconds`, 0 over no time.
pub fn per_second(n: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        n as f64 / seconds
    } else {
        0.0
    }
}

/// `part / whole`, 0 when `whole` is.
pub fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

impl History {
    /// Takes a reading and, after the first, adds the interval since the
    /// last one to the ring.
    pub fn sample(&self, reading: Reading) {
        let mut inner = self.inner.lock();
        if let Some(last) = inner.readings.back() {
            let window = reading.since(last);
            let t = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let point = Point {
                t,
                requests: window.requests,
                rate: window.rate(),
                errors: window.errors,
                error_ratio: window.error_ratio(),
                p50_ms: window.latency.quantile_ms(0.50),
                p95_ms: window.latency.quantile_ms(0.95),
                p99_ms: window.latency.quantile_ms(0.99),
            };
            if inner.points.len() == POINTS {
                inner.points.pop_front();
            }
            inner.points.push_back(point);
        }
        if inner.readings.len() == READINGS {
            inner.readings.pop_front();
        }
        inner.readings.push_back(reading);
    }

    /// The ring, oldest first.
    pub fn points(&self) -> Vec<Point> {
        self.inner.lock().points.iter().copied().collect()
    }

    /// What happened from the oldest reading of the last [`WINDOW`] to
    /// `now`.
    pub fn window(&self, now: &Reading) -> Window {
        match self.inner.lock().readings.front() {
            Some(first) => now.since(first),
            None => Window::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buckets(cumulative: &[u64]) -> Buckets {
        Buckets {
            bounds: vec![0.001, 0.01, 0.1, 1.0],
            cumulative: cumulative.to_vec(),
            count: *cumulative.last().unwrap(),
            sum: 0.0,
        }
    }

    #[test]
    fn quantiles_interpolate_within_a_bucket() {
        // 100 samples, all between 10 ms and 100 ms.
        let b = buckets(&[0, 0, 100, 100]);
        let p50 = b.quantile_ms(0.5).unwrap();
        assert!((p50 - 55.0).abs() < 1e-9, "{p50}");
        assert!((b.quantile_ms(0.99).unwrap() - 99.1).abs() < 1e-9);
        assert_eq!(buckets(&[0, 0, 0, 0]).quantile_ms(0.5), None);
    }

    #[test]
    fn the_ring_keeps_fifteen_minutes() {
        let history = History::default();
        let start = Instant::now();
        for i in 0..(POINTS as u64 + 10) {
            history.sample(Reading {
                at: start + TICK * i as u32,
                requests: i * 10,
                errors: i,
                latency: Buckets::default(),
                backends: HashMap::new(),
            });
        }
        let points = history.points();
        assert_eq!(points.len(), POINTS);
        assert_eq!(points[0].requests, 10);
        assert!((points[0].rate - 2.0).abs() < 1e-9);
        assert!((points[0].error_ratio - 0.1).abs() < 1e-9);
    }
}
