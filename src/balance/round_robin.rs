//! Smooth weighted round robin, precomputed: the sequence nginx's smooth
//! algorithm produces is computed once per table, then walked with one
//! atomic cursor (no lock on the request path). Equal weights give plain
//! round robin.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Longest schedule kept; larger weight sums are scaled down.
const MAX_SCHEDULE: u64 = 4096;

/// The precomputed order of endpoint indices.
pub(super) struct Schedule {
    order: Vec<usize>,
    cursor: AtomicUsize,
}

impl Schedule {
    pub(super) fn new(weights: &[u32]) -> Self {
        let order = smooth_order(weights);
        // A random start, so that every table swap does not send the next
        // request of every backend to its first endpoint.
        let start = if order.is_empty() {
            0
        } else {
            fastrand::usize(..order.len())
        };
        Self {
            order,
            cursor: AtomicUsize::new(start),
        }
    }

    /// The next usable index in the order. One atomic step claims a start;
    /// the scan past unusable entries is local, so concurrent callers can
    /// never all skip the one usable endpoint. Skipped entries are then
    /// claimed too, so the next caller does not land on the same successor.
    pub(super) fn next(&self, usable: impl Fn(usize) -> bool) -> Option<usize> {
        let n = self.order.len();
        if n == 0 {
            return None;
        }
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        let k = (0..n).find(|k| usable(self.order[(start + k) % n]))?;
        if k > 0 {
            self.cursor.fetch_add(k, Ordering::Relaxed);
        }
        Some(self.order[(start + k) % n])
    }
}

/// nginx's smooth weighted round robin, run for one full cycle. Weights of 0
/// never appear; weights are reduced by their greatest common divisor and
/// scaled when their sum is too large.
pub(super) fn smooth_order(weights: &[u32]) -> Vec<usize> {
    let g = weights.iter().copied().filter(|w| *w > 0).fold(0, gcd);
    if g == 0 {
        return Vec::new();
    }
    let mut weights: Vec<u64> = weights.iter().map(|w| u64::from(w / g)).collect();
    let total: u64 = weights.iter().sum();
    if total > MAX_SCHEDULE {
        for w in weights.iter_mut().filter(|w| **w > 0) {
            *w = (*w * MAX_SCHEDULE / total).max(1);
        }
    }
    let total: i64 = weights.iter().sum::<u64>() as i64;
    let mut current = vec![0i64; weights.len()];
    let mut order = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (i, w) in weights.iter().enumerate() {
            current[i] += *w as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        order.push(best);
    }
    order
}

pub(super) fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}
