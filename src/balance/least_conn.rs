//! Least connection: the usable endpoint with the fewest requests in flight,
//! ties broken at random (so that idle endpoints share new load).

use std::sync::Arc;

use super::EndpointState;

pub(super) fn pick(states: &[Arc<EndpointState>], usable: impl Fn(usize) -> bool) -> Option<usize> {
    let mut best: Option<(u32, usize)> = None;
    let mut ties = 0u32;
    for (i, s) in states.iter().enumerate() {
        if !usable(i) {
            continue;
        }
        let load = s.in_flight();
        match best {
            Some((b, _)) if load > b => {}
            Some((b, _)) if load == b => {
                // Reservoir sampling over the tied endpoints: each wins with
                // equal probability.
                ties += 1;
                if fastrand::u32(..=ties) == 0 {
                    best = Some((load, i));
                }
            }
            _ => {
                best = Some((load, i));
                ties = 0;
            }
        }
    }
    best.map(|(_, i)| i)
}
