//! PeakEWMA with the power of two choices, as linkerd balances: two usable
//! endpoints at random, the one with the lower latency x load cost wins.
//! Cheap (two reads), and it avoids the herd behaviour of always picking the
//! global best.

use std::sync::Arc;

use super::EndpointState;

pub(super) fn pick(states: &[Arc<EndpointState>], usable: impl Fn(usize) -> bool) -> Option<usize> {
    let n = states.len();
    if n == 0 {
        return None;
    }
    let a = first_usable(n, fastrand::usize(..n), &usable)?;
    // The second choice: another random usable endpoint, distinct when one
    // exists.
    let b = first_usable(n, fastrand::usize(..n), |i| i != a && usable(i));
    match b {
        Some(b) if states[b].cost() < states[a].cost() => Some(b),
        _ => Some(a),
    }
}

fn first_usable(n: usize, start: usize, usable: impl Fn(usize) -> bool) -> Option<usize> {
    (0..n).map(|k| (start + k) % n).find(|&i| usable(i))
}
