//! Balancer tests: distributions with fixed seeds, health tiers, and
//! property tests for the smooth round robin and Maglev.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::round_robin::smooth_order;
use super::*;

fn states(n: usize) -> Vec<Arc<EndpointState>> {
    (0..n)
        .map(|i| EndpointState::detached(format!("ns/svc 10.0.0.{i}:80")))
        .collect()
}

fn counts(b: &Balancer, picks: usize, hash: impl Fn(usize) -> Option<u64>) -> Vec<usize> {
    let mut c = vec![0; b.states().len()];
    for k in 0..picks {
        c[b.pick(hash(k), None).unwrap()] += 1;
    }
    c
}

#[test]
fn round_robin_is_even_to_one_request() {
    let b = Balancer::new(Algorithm::RoundRobin, states(3), &[]);
    assert_eq!(counts(&b, 300, |_| None), [100, 100, 100]);
}

#[test]
fn weighted_round_robin_is_smooth_and_exact() {
    let b = Balancer::new(Algorithm::WeightedRoundRobin, states(3), &[5, 1, 1]);
    assert_eq!(counts(&b, 700, |_| None), [500, 100, 100]);
    // Smooth: the heavy endpoint never takes more than 5 in a row.
    assert_eq!(smooth_order(&[5, 1, 1]), [0, 0, 1, 0, 2, 0, 0]);
}

#[test]
fn random_covers_every_endpoint() {
    fastrand::seed(7);
    let b = Balancer::new(Algorithm::Random, states(4), &[]);
    let c = counts(&b, 4000, |_| None);
    assert!(c.iter().all(|&n| (800..1200).contains(&n)), "{c:?}");
}

#[test]
fn least_connection_prefers_idle_endpoints() {
    fastrand::seed(1);
    let s = states(3);
    let b = Balancer::new(Algorithm::LeastConnection, s.clone(), &[]);
    let _busy = [s[0].start(), s[0].start(), s[1].start()];
    assert!((0..50).all(|_| b.pick(None, None) == Some(2)));
    // Ties are broken at random, not always towards the first.
    let idle = Balancer::new(Algorithm::LeastConnection, states(3), &[]);
    let c = counts(&idle, 300, |_| None);
    assert!(c.iter().all(|&n| n > 50), "{c:?}");
}

#[tokio::test(start_paused = true)]
async fn peak_ewma_avoids_a_slow_endpoint() {
    fastrand::seed(3);
    let s = states(3);
    for _ in 0..5 {
        s[0].observe_latency(Duration::from_millis(200));
        s[1].observe_latency(Duration::from_millis(2));
        s[2].observe_latency(Duration::from_millis(2));
    }
    let b = Balancer::new(Algorithm::PeakEwma, s.clone(), &[]);
    let c = counts(&b, 300, |_| None);
    assert!(c[0] < 40, "the slow endpoint got {c:?}");
    // The cost decays: after a long quiet time it is tried again.
    tokio::time::advance(Duration::from_secs(120)).await;
    assert!(
        s[0].cost() < 2.0 * s[1].cost(),
        "{} vs {}",
        s[0].cost(),
        s[1].cost()
    );
}

#[test]
fn slow_endpoints_only_when_no_healthy_one_is_left() {
    let s = states(3);
    let b = Balancer::new(Algorithm::RoundRobin, s.clone(), &[]);
    s[0].set_health(Health::Slow);
    s[1].set_health(Health::Unhealthy);
    assert_eq!(counts(&b, 30, |_| None), [0, 0, 30]);
    s[2].set_health(Health::Unhealthy);
    assert_eq!(counts(&b, 30, |_| None), [30, 0, 0]);
    s[0].set_health(Health::Unhealthy);
    assert_eq!(b.pick(None, None), None);
}

#[test]
fn ejected_endpoints_are_skipped_and_exclusion_works() {
    let s = states(2);
    let b = Balancer::new(Algorithm::RoundRobin, s.clone(), &[]);
    s[0].eject(Duration::from_secs(60));
    assert_eq!(counts(&b, 10, |_| None), [0, 10]);
    assert_eq!(b.pick(None, Some(1)), None);
}

#[test]
fn consistent_hash_keeps_keys_and_remaps_few() {
    let keys: Vec<u64> = (0..1000u64)
        .map(|k| super::maglev::hash_with(k, 1))
        .collect();
    for n in [3usize, 5, 10] {
        let all = states(n);
        let b = Balancer::new(Algorithm::ConsistentHash, all.clone(), &[]);
        let before: Vec<String> = keys
            .iter()
            .map(|&h| all[b.pick(Some(h), None).unwrap()].key().to_string())
            .collect();
        // Stable: the same key always lands on the same endpoint.
        assert!(
            keys.iter()
                .zip(&before)
                .all(|(&h, k)| all[b.pick(Some(h), None).unwrap()].key() == k)
        );
        // Remove the last endpoint: only its keys (about 1/n) move.
        let fewer: Vec<_> = all[..n - 1].to_vec();
        let b2 = Balancer::new(Algorithm::ConsistentHash, fewer.clone(), &[]);
        let moved = keys
            .iter()
            .zip(&before)
            .filter(|(h, k)| fewer[b2.pick(Some(**h), None).unwrap()].key() != k.as_str())
            .count();
        let bound = 1.5 * 1000.0 / n as f64;
        assert!(
            (moved as f64) <= bound,
            "n={n}: {moved} keys moved, bound {bound}"
        );
    }
}

#[test]
fn registry_shares_state_until_nothing_uses_it() {
    let r = StateRegistry::new();
    let a = r.get("ns/svc 10.0.0.1:80");
    let guard = a.start();
    assert_eq!(r.get("ns/svc 10.0.0.1:80").in_flight(), 1);
    drop(guard);
    drop(a);
    r.prune();
    assert!(r.is_empty());
}

#[test]
fn sticky_ids_are_opaque_and_stable() {
    let id = sticky_id("shop/web 10.1.2.3:8080");
    assert_eq!(id, sticky_id("shop/web 10.1.2.3:8080"));
    assert_eq!(id.len(), 16);
    assert!(!id.contains("10.1.2.3"));
    assert_ne!(id, sticky_id("shop/web 10.1.2.4:8080"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Over one cycle every endpoint appears exactly weight/gcd times, and
    /// no endpoint runs longer than its weight share allows.
    #[test]
    fn smooth_order_honours_weights(weights in proptest::collection::vec(0u32..20, 1..8)) {
        let order = smooth_order(&weights);
        let g = weights.iter().copied().filter(|w| *w > 0).fold(0, super::round_robin::gcd);
        let mut seen: HashMap<usize, u32> = HashMap::new();
        for &i in &order {
            *seen.entry(i).or_default() += 1;
        }
        for (i, &w) in weights.iter().enumerate() {
            let want = w.checked_div(g).unwrap_or(0);
            prop_assert_eq!(seen.get(&i).copied().unwrap_or(0), want);
        }
    }

    /// Maglev gives every endpoint a near-equal share of slots.
    #[test]
    fn maglev_shares_are_even(n in 1usize..40) {
        let s = states(n);
        let b = Balancer::new(Algorithm::ConsistentHash, s, &[]);
        let c = counts(&b, 20_000, |k| Some(super::maglev::hash_with(k as u64, 9)));
        let expected = 20_000.0 / n as f64;
        for &x in &c {
            prop_assert!((x as f64) > expected * 0.7 && (x as f64) < expected * 1.3, "{:?}", c);
        }
    }
}
