//! Active health checks: one task per checked endpoint, sending `GET path`
//! every `interval` and moving the endpoint between Healthy, Slow and
//! Unhealthy after `healthyThreshold` / `unhealthyThreshold` results in a
//! row. Tasks follow the live table: started for new endpoints, stopped for
//! gone ones, and an endpoint whose checks stop goes back to Healthy.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Uri, header};
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::balance::{EndpointState, Health};
use crate::metrics::{ENDPOINT_STATES, Metrics};
use crate::model::{ActiveCheck, Endpoint, RoutingTable};
use crate::proxy::SharedTable;

type CheckClient = Client<HttpConnector, Empty<Bytes>>;

/// The running checks, keyed by endpoint and check settings (a changed
/// policy restarts its checks).
pub struct HealthChecker {
    client: CheckClient,
    tasks: HashMap<(String, ActiveCheck), Running>,
}

struct Running {
    task: JoinHandle<()>,
    state: Arc<EndpointState>,
}

/// The outcome of one probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Probe {
    Ok,
    SlowOk,
    Failed,
}

// === impl HealthChecker ===

impl HealthChecker {
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_max_idle_per_host(1)
            .build(connector);
        Self {
            client,
            tasks: HashMap::new(),
        }
    }

    /// Starts and stops checks to match `table`. Must run inside the
    /// runtime.
    pub fn sync(&mut self, table: &RoutingTable) {
        let mut wanted: HashMap<(String, ActiveCheck), (Endpoint, Arc<EndpointState>)> =
            HashMap::new();
        for backend in table.backends() {
            let Some(check) = &backend.policy.active else {
                continue;
            };
            for (endpoint, state) in backend.states() {
                wanted
                    .entry((state.key().to_string(), check.clone()))
                    .or_insert_with(|| (endpoint.clone(), state.clone()));
            }
        }
        self.tasks.retain(|key, running| {
            let keep = wanted.contains_key(key);
            if !keep {
                running.task.abort();
                // Nothing checks it any more: nothing may keep it out.
                running.state.set_health(Health::Healthy);
            }
            keep
        });
        for (key, (endpoint, state)) in wanted {
            if self.tasks.contains_key(&key) {
                continue;
            }
            let task = tokio::spawn(check_loop(
                self.client.clone(),
                endpoint,
                state.clone(),
                key.1.clone(),
            ));
            self.tasks.insert(key, Running { task, state });
        }
    }
}

/// Keeps the checks in step with the live table (checked every second) and
/// refreshes `backend_endpoints{backend,state}` (every few seconds) until
/// the process ends.
pub fn spawn(table: SharedTable, metrics: Arc<Metrics>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut checker = HealthChecker::new();
        let mut seen = None;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        for round in 0u64.. {
            tick.tick().await;
            let live = table.load();
            if seen != Some(live.generation()) {
                seen = Some(live.generation());
                checker.sync(&live);
            }
            if round % GAUGE_EVERY_ROUNDS == 0 {
                endpoint_gauges(&live, &metrics);
            }
        }
    })
}

/// How often (in 1 s rounds) the endpoint-state gauges are refreshed.
const GAUGE_EVERY_ROUNDS: u64 = 5;

fn endpoint_gauges(table: &RoutingTable, metrics: &Metrics) {
    let mut counted = std::collections::HashSet::new();
    for backend in table.backends() {
        // Like every per-backend series, from the backend's first request.
        if !backend.has_metrics() || !counted.insert(backend.id.as_str()) {
            continue;
        }
        let mut by_state = [0i64; 4];
        for (_, state) in backend.states() {
            let i = match (state.is_ejected(), state.health()) {
                (true, _) => 3,
                (false, Health::Healthy) => 0,
                (false, Health::Slow) => 1,
                (false, Health::Unhealthy) => 2,
            };
            by_state[i] += 1;
        }
        for (state, n) in ENDPOINT_STATES.iter().zip(by_state) {
            metrics
                .backends
                .endpoints
                .with_label_values(&[backend.id.as_str(), state])
                .set(n);
        }
    }
}

impl Default for HealthChecker {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for HealthChecker {
    fn drop(&mut self) {
        for running in self.tasks.values() {
            running.task.abort();
        }
    }
}

/// Probes one endpoint forever.
async fn check_loop(
    client: CheckClient,
    endpoint: Endpoint,
    state: Arc<EndpointState>,
    check: ActiveCheck,
) {
    let Ok(uri) = Uri::builder()
        .scheme("http")
        .authority(endpoint.authority().clone())
        .path_and_query(check.path.as_str())
        .build()
    else {
        tracing::warn!(endpoint = %endpoint, path = %check.path, "health check path cannot form a URI");
        return;
    };
    let mut tick = tokio::time::interval(check.interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut streak = (Probe::Ok, 0u32);
    loop {
        tick.tick().await;
        let probe = probe(&client, &uri, &endpoint, &check).await;
        streak = if streak.0 == probe || (streak.0 != Probe::Failed && probe != Probe::Failed) {
            (probe, streak.1 + 1)
        } else {
            (probe, 1)
        };
        let next = verdict(state.health(), probe, streak.1, &check);
        if next != state.health() {
            tracing::info!(endpoint = %endpoint, from = ?state.health(), to = ?next, "health changed");
            state.set_health(next);
        }
    }
}

async fn probe(client: &CheckClient, uri: &Uri, endpoint: &Endpoint, check: &ActiveCheck) -> Probe {
    let Ok(req) = Request::get(uri.clone())
        .header(header::HOST, endpoint.authority().as_str())
        .header(header::USER_AGENT, "rust-strom-health-check")
        .body(Empty::new())
    else {
        return Probe::Failed;
    };
    let started = Instant::now();
    match tokio::time::timeout(check.timeout, client.request(req)).await {
        Ok(Ok(resp)) if resp.status().is_success() => {
            let slow = check.slow_threshold.is_some_and(|t| started.elapsed() > t);
            if slow { Probe::SlowOk } else { Probe::Ok }
        }
        _ => Probe::Failed,
    }
}

/// The next health state after a probe that is the `streak`-th of its kind
/// in a row (successes, slow or not, count together).
fn verdict(current: Health, probe: Probe, streak: u32, check: &ActiveCheck) -> Health {
    match (current, probe) {
        (_, Probe::Failed) if streak >= check.unhealthy_threshold => Health::Unhealthy,
        (_, Probe::Failed) => current,
        (Health::Unhealthy, _) if streak < check.healthy_threshold => Health::Unhealthy,
        (_, Probe::SlowOk) => Health::Slow,
        (_, Probe::Ok) => Health::Healthy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_decide_transitions() {
        let check = ActiveCheck {
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            ..ActiveCheck::default()
        };
        use Health::*;
        let cases = [
            (Healthy, Probe::Failed, 1, Healthy),
            (Healthy, Probe::Failed, 2, Healthy),
            (Healthy, Probe::Failed, 3, Unhealthy),
            (Unhealthy, Probe::Ok, 1, Unhealthy),
            (Unhealthy, Probe::Ok, 2, Healthy),
            (Unhealthy, Probe::SlowOk, 2, Slow),
            (Healthy, Probe::SlowOk, 1, Slow),
            (Slow, Probe::Ok, 1, Healthy),
            (Slow, Probe::Failed, 3, Unhealthy),
        ];
        for (current, probe, streak, want) in cases {
            assert_eq!(
                verdict(current, probe, streak, &check),
                want,
                "{current:?} {probe:?} x{streak}"
            );
        }
    }
}
