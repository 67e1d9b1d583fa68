//! BalancerPolicy end to end: algorithms, sticky sessions, slow start,
//! active health checks and their thresholds, passive ejection and its cap,
//! retries and their budget, with real backends on 127.0.0.1. Counts are
//! exact where the algorithm is deterministic and bounded where it is
//! statistical; nothing here measures time.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Request, Response, StatusCode, header};
use http_body_util::Empty;
use support::*;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

const HOST: &str = "lb.local";

/// The manifests of one Service `web` behind `lb.local`, with one slice per
/// backend (named `web-<i>`), and an optional policy on the Service.
fn manifests(backends: &[SocketAddr], policy: Option<&str>) -> String {
    let mut parts = vec![
        ingress("default", "lb", HOST, &[("/", "Prefix", "web")]),
        backend_objects("default", "web", backends),
    ];
    if let Some(spec) = policy {
        parts.push(format!(
            "apiVersion: ruststrom.io/v1alpha1\nkind: BalancerPolicy\n\
             metadata: {{name: web, namespace: default}}\n\
             spec:\n  targetRef: {{group: \"\", kind: Service, name: web}}\n{spec}"
        ));
    }
    docs(&parts)
}

async fn start(dir: &std::path::Path, backends: &[SocketAddr], policy: Option<&str>) -> Proxy {
    write(dir, "lb.yaml", &manifests(backends, policy));
    Proxy::start(dir, &[]).await
}

/// A backend named `name` that answers after `delay`.
async fn slow_backend(name: &'static str, delay: Duration) -> SocketAddr {
    backend(move |_req| async move {
        tokio::time::sleep(delay).await;
        let mut resp = Response::new(full(format!("backend: {name}\n")));
        resp.headers_mut()
            .insert("x-backend", header::HeaderValue::from_static(name));
        resp
    })
    .await
}

/// A backend that can be killed: its listener and every open connection
/// stop at once, as when a pod is SIGKILLed.
struct Killable {
    addr: SocketAddr,
    tasks: Arc<tokio::sync::Mutex<JoinSet<()>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Killable {
    async fn start(name: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tasks = Arc::new(tokio::sync::Mutex::new(JoinSet::new()));
        let conns = tasks.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                conns.lock().await.spawn(async move {
                    let service = hyper::service::service_fn(move |_req| async move {
                        let mut resp = Response::new(full(format!("backend: {name}\n")));
                        resp.headers_mut()
                            .insert("x-backend", header::HeaderValue::from_static(name));
                        Ok::<_, std::convert::Infallible>(resp)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            tasks,
            accept,
        }
    }

    async fn kill(&self) {
        self.accept.abort();
        self.tasks.lock().await.abort_all();
    }
}

/// Counts answers by backend name over `n` sequential requests.
async fn spread(proxy: &Proxy, n: usize, path: &str) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        let resp = proxy.get(HOST, path).await;
        assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
        *counts
            .entry(resp.backend().unwrap().to_string())
            .or_default() += 1;
    }
    counts
}

/// `workers` concurrent clients sending `each` requests; answers by backend.
async fn concurrent_spread(port: u16, workers: usize, each: usize) -> HashMap<String, usize> {
    let mut set = JoinSet::new();
    for _ in 0..workers {
        set.spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..each {
                let resp = get(port, HOST, "/").await;
                assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
                seen.push(resp.backend().unwrap().to_string());
            }
            seen
        });
    }
    let mut counts = HashMap::new();
    while let Some(seen) = set.join_next().await {
        for name in seen.unwrap() {
            *counts.entry(name).or_default() += 1;
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_300_requests_evenly() {
    let dir = tempfile::tempdir().unwrap();
    let backends = [echo("a").await, echo("b").await, echo("c").await];
    let proxy = start(dir.path(), &backends, None).await;
    let counts = spread(&proxy, 300, "/").await;
    for name in ["a", "b", "c"] {
        let n = counts[name];
        assert!((99..=101).contains(&n), "{name} got {n}: {counts:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_round_robin_follows_slice_weights() {
    let dir = tempfile::tempdir().unwrap();
    let heavy = echo("heavy").await;
    let light = echo("light").await;
    let mut text = manifests(
        &[heavy, light],
        Some("  loadBalancer: {algorithm: WeightedRoundRobin}\n"),
    );
    // The first slice (heavy) weighs 3.
    text = text.replacen(
        "name: web-0\n",
        "name: web-0\n  annotations: {ruststrom.io/weight: \"3\"}\n",
        1,
    );
    write(dir.path(), "lb.yaml", &text);
    let proxy = Proxy::start(dir.path(), &[]).await;
    let counts = spread(&proxy, 200, "/").await;
    assert_eq!((counts["heavy"], counts["light"]), (150, 50), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connection_and_peak_ewma_avoid_a_slow_endpoint() {
    for algorithm in ["LeastConnection", "PeakEWMA"] {
        let dir = tempfile::tempdir().unwrap();
        let backends = [
            echo("fast-1").await,
            echo("fast-2").await,
            slow_backend("slow", Duration::from_millis(200)).await,
        ];
        let policy = format!("  loadBalancer: {{algorithm: {algorithm}}}\n");
        let proxy = start(dir.path(), &backends, Some(&policy)).await;
        let counts = concurrent_spread(proxy.http_port, 12, 20).await;
        let slow = counts.get("slow").copied().unwrap_or(0);
        // Round robin would give it a third (80 of 240).
        assert!(slow < 40, "{algorithm}: slow got {slow} of 240: {counts:?}");
        assert!(
            counts["fast-1"] > 60 && counts["fast-2"] > 60,
            "{algorithm}: {counts:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_keeps_keys_and_remaps_few_when_an_endpoint_goes() {
    let dir = tempfile::tempdir().unwrap();
    let names = ["h0", "h1", "h2", "h3"];
    let mut backends = Vec::new();
    for name in names {
        backends.push(echo(name).await);
    }
    let policy = "  loadBalancer: {algorithm: ConsistentHash, consistentHash: {header: X-User}}\n";
    let proxy = start(dir.path(), &backends, Some(policy)).await;

    let user = |u: usize| {
        Request::get("/")
            .header("host", HOST)
            .header("x-user", format!("user-{u}"))
            .body(Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    let users = 200;
    let mut before = Vec::new();
    for u in 0..users {
        let first = send(proxy.http_port, user(u)).await;
        let first = first.backend().unwrap().to_string();
        for _ in 0..2 {
            let again = send(proxy.http_port, user(u)).await;
            assert_eq!(again.backend(), Some(first.as_str()), "user-{u} moved");
        }
        before.push(first);
    }
    assert!(
        names.iter().all(|n| before.iter().any(|b| b == n)),
        "every endpoint owns some keys: {before:?}"
    );

    // h3 goes away.
    write_atomic(
        dir.path(),
        "lb.yaml",
        &manifests(&backends[..3], Some(policy)),
    );
    wait_until(DEADLINE, "h3 removed", || async {
        let mut hit = false;
        for u in 0..20 {
            hit |= send(proxy.http_port, user(u)).await.backend() == Some("h3");
        }
        !hit
    })
    .await;
    let mut moved = 0;
    for (u, was) in before.iter().enumerate() {
        let now = send(proxy.http_port, user(u)).await;
        let now = now.backend().unwrap();
        // Maglev's disruption is minimal but not zero: a few keys of live
        // endpoints may move too, which the bound below allows for.
        if now != was {
            moved += 1;
        }
        assert_ne!(now, "h3", "user-{u} still on the removed endpoint");
    }
    let bound = users as f64 * 1.5 / names.len() as f64;
    assert!(
        (moved as f64) <= bound,
        "{moved} of {users} keys moved; bound {bound}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_cookie_pins_a_client_and_repins_when_its_endpoint_goes() {
    let dir = tempfile::tempdir().unwrap();
    let backends = [echo("s0").await, echo("s1").await, echo("s2").await];
    let policy = "  loadBalancer:\n    stickyCookie: {name: LB, ttl: 1h}\n";
    let proxy = start(dir.path(), &backends, Some(policy)).await;

    let with_cookie = |cookie: &str| {
        Request::get("/")
            .header("host", HOST)
            .header("cookie", cookie)
            .body(Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    let first = proxy.get(HOST, "/").await;
    let set = first.headers["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set.starts_with("LB=") && set.contains("Max-Age=3600") && set.contains("HttpOnly"),
        "{set}"
    );
    for (i, addr) in backends.iter().enumerate() {
        assert!(
            !set.contains(&addr.port().to_string()),
            "cookie names endpoint {i}: {set}"
        );
    }
    let cookie = set.split(';').next().unwrap().to_string();
    let pinned = first.backend().unwrap().to_string();
    for _ in 0..50 {
        let resp = send(proxy.http_port, with_cookie(&cookie)).await;
        assert_eq!(resp.backend(), Some(pinned.as_str()));
        assert!(
            !resp.headers.contains_key("set-cookie"),
            "pinned clients are not re-pinned"
        );
    }

    // The pinned endpoint goes: the client lands elsewhere and is re-pinned.
    let left: Vec<SocketAddr> = ["s0", "s1", "s2"]
        .iter()
        .zip(backends)
        .filter(|(n, _)| **n != pinned)
        .map(|(_, a)| a)
        .collect();
    write_atomic(dir.path(), "lb.yaml", &manifests(&left, Some(policy)));
    wait_until(DEADLINE, "pinned endpoint removed", || async {
        send(proxy.http_port, with_cookie(&cookie)).await.backend() != Some(pinned.as_str())
    })
    .await;
    let moved = send(proxy.http_port, with_cookie(&cookie)).await;
    let repin = moved.headers["set-cookie"].to_str().unwrap();
    let new_cookie = repin.split(';').next().unwrap().to_string();
    assert_ne!(new_cookie, cookie);
    let now = moved.backend().unwrap().to_string();
    for _ in 0..20 {
        assert_eq!(
            send(proxy.http_port, with_cookie(&new_cookie))
                .await
                .backend(),
            Some(now.as_str())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_endpoint_costs_no_get_with_the_default_policy() {
    let dir = tempfile::tempdir().unwrap();
    let stays = Killable::start("stays").await;
    let dies = Killable::start("dies").await;
    let proxy = start(dir.path(), &[stays.addr, dies.addr], None).await;
    let port = proxy.http_port;

    // Keep-alive clients, each sending GETs in a loop on one connection.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failures = Arc::new(tokio::sync::Mutex::new(Vec::<String>::new()));
    let served = Arc::new(AtomicUsize::new(0));
    let mut clients = JoinSet::new();
    for _ in 0..6 {
        let (stop, failures, served) = (stop.clone(), failures.clone(), served.clone());
        clients.spawn(async move {
            let mut sender = connect::<Empty<bytes::Bytes>>(port).await;
            while !stop.load(Ordering::Relaxed) {
                let req = get_req(HOST, "/");
                match sender.send_request(req).await {
                    Ok(resp) if resp.status() == StatusCode::OK => {
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(resp) => {
                        let status = resp.status();
                        let body = into_resp(resp).await.body;
                        failures.lock().await.push(format!("{status}: {body}"));
                    }
                    Err(e) => failures.lock().await.push(format!("client error: {e}")),
                }
            }
        });
    }
    wait_until(DEADLINE, "traffic flowing", || async {
        served.load(Ordering::Relaxed) > 300
    })
    .await;
    dies.kill().await;
    let at_kill = served.load(Ordering::Relaxed);
    wait_until(DEADLINE, "traffic after the kill", || async {
        served.load(Ordering::Relaxed) > at_kill + 500
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    while clients.join_next().await.is_some() {}
    let failures = failures.lock().await;
    assert!(
        failures.is_empty(),
        "failed GETs: {failures:?}\n{}",
        proxy.stderr().await
    );
    let ejections = proxy
        .metric("backend_ejections_total{backend=\"default/web:80\"}")
        .await;
    assert_eq!(ejections, Some(1.0), "the dead endpoint was ejected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_endpoint_only_takes_traffic_when_no_healthy_one_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let fast = Killable::start("fast").await;
    // Health checks take 1 s here, twice the slow threshold and half the
    // timeout; the fast endpoint would need a loopback answer 500 ms late
    // to look slow, which even a loaded machine does not produce, and one
    // check failing by chance flips nothing. Traffic is answered at once.
    let slow = backend(|req| async move {
        if req.uri().path() == "/healthz" {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let mut resp = Response::new(full("backend: slow\n"));
        resp.headers_mut()
            .insert("x-backend", header::HeaderValue::from_static("slow"));
        resp
    })
    .await;
    let policy = "  healthCheck:\n    active: {path: /healthz, interval: 2s, timeout: 2s, \
                  slowThreshold: 500ms, healthyThreshold: 1, unhealthyThreshold: 2}\n";
    let proxy = start(dir.path(), &[fast.addr, slow], Some(policy)).await;

    wait_until(DEADLINE, "slow endpoint marked Slow", || async {
        let counts = spread(&proxy, 10, "/").await;
        !counts.contains_key("slow")
    })
    .await;
    let counts = spread(&proxy, 30, "/").await;
    assert_eq!(counts.get("fast"), Some(&30), "{counts:?}");

    fast.kill().await;
    wait_until(DEADLINE, "slow endpoint takes over", || async {
        let resp = proxy.get(HOST, "/").await;
        resp.status == StatusCode::OK && resp.backend() == Some("slow")
    })
    .await;
    let counts = spread(&proxy, 10, "/").await;
    assert_eq!(counts.get("slow"), Some(&10), "{counts:?}");
}

/// `healthyThreshold` and `unhealthyThreshold` results in a row flip an
/// endpoint, and fewer do not. The health endpoint answers by probe number,
/// so the transitions are exact whatever the timing; probes answer at once,
/// far inside their timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_health_thresholds_need_that_many_results_in_a_row() {
    // Probe n (from 1) fails where the script says `F`; later ones pass.
    // Unhealthy at the third failure in a row (probe 3); one pass (4) does
    // not bring it back, two in a row (8, 9) do; two failures (10, 11) do
    // not take it out again. Every other pair of thresholds (unhealthy 1 to
    // 6, healthy 1 to 5) gives another sequence of changes on this script.
    const SCRIPT: &[u8] = b"FFFOFFFOOFFO";
    let probes = Arc::new(AtomicUsize::new(0));
    let counter = probes.clone();
    let checked = backend(move |req| {
        let n = if req.uri().path() == "/healthz" {
            counter.fetch_add(1, Ordering::SeqCst) + 1
        } else {
            0
        };
        async move {
            let status = if SCRIPT.get(n.wrapping_sub(1)) == Some(&b'F') {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            };
            Response::builder().status(status).body(full("")).unwrap()
        }
    })
    .await;
    let policy = "  healthCheck:\n    active: {path: /healthz, interval: 250ms, timeout: 250ms, \
                  healthyThreshold: 2, unhealthyThreshold: 3}\n";
    let dir = tempfile::tempdir().unwrap();
    let proxy = start(dir.path(), &[checked], Some(policy)).await;

    // Checks run one after the other: once probe n+1 arrived, the result
    // of probe n was acted on.
    wait_until(DEADLINE, "the whole script probed", || async {
        probes.load(Ordering::SeqCst) > SCRIPT.len()
    })
    .await;
    let stderr = proxy.stderr().await;
    let changes: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("health changed"))
        .map(|l| l.split_once("from=").map_or(l, |(_, rest)| rest))
        .collect();
    assert_eq!(
        changes,
        ["Healthy to=Unhealthy", "Unhealthy to=Healthy"],
        "{stderr}"
    );
}

/// At most `maxEjectionPercent` of the endpoints are ejected, also when
/// more fail: of four endpoints with three dead, 50% ejects two, and the
/// third dead one keeps being tried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_ejection_percent_caps_ejections_among_four_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let alive = echo("alive").await;
    let mut endpoints = vec![alive];
    for _ in 0..3 {
        endpoints.push(SocketAddr::from(([127, 0, 0, 1], closed_port())));
    }
    // No retries, so each request shows the endpoint it was sent to.
    let policy = "  retries: {attempts: 0}\n  \
                  healthCheck: {passive: {consecutiveFailures: 1, maxEjectionPercent: 50}}\n";
    let proxy = start(dir.path(), &endpoints, Some(policy)).await;

    let mut statuses = Vec::new();
    for _ in 0..40 {
        statuses.push(proxy.get(HOST, "/").await.status);
    }
    let ejections = proxy
        .metric("backend_ejections_total{backend=\"default/web:80\"}")
        .await;
    assert_eq!(ejections, Some(2.0), "{statuses:?}");
    let late_failures = statuses[20..]
        .iter()
        .filter(|s| **s == StatusCode::BAD_GATEWAY)
        .count();
    assert!(
        late_failures > 0,
        "the third dead endpoint was taken out too: {statuses:?}"
    );
    assert!(statuses[20..].contains(&StatusCode::OK), "{statuses:?}");
}

/// `slowStart`: an endpoint added next to older ones starts with a small
/// share of the traffic and grows to its full one over the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_start_ramps_a_new_endpoint_up_to_its_share() {
    let dir = tempfile::tempdir().unwrap();
    let old = [echo("old-a").await, echo("old-b").await];
    let new = echo("new").await;
    let policy = "  loadBalancer: {slowStart: 3s}\n";
    let proxy = start(dir.path(), &old, Some(policy)).await;
    spread(&proxy, 10, "/").await;
    // Endpoints age from when a table first has them: the old ones must be
    // past the window for the new one to be the only one ramping.
    tokio::time::sleep(Duration::from_secs(3)).await;

    write_atomic(
        dir.path(),
        "lb.yaml",
        &manifests(&[old[0], old[1], new], Some(policy)),
    );
    wait_until(DEADLINE, "the new endpoint is in the table", || async {
        proxy.metric("routing_table_generation").await == Some(2.0)
    })
    .await;
    // Round robin alone gives it 15 of 45; at age t it keeps a pick with
    // probability t / 3 s, so even 45 requests taking a whole second leave
    // it about 2.5 on average.
    let early = spread(&proxy, 45, "/").await;
    let got = early.get("new").copied().unwrap_or(0);
    assert!(
        got <= 7,
        "the new endpoint got {got} of 45 at once: {early:?}"
    );
    wait_until(DEADLINE, "the new endpoint at its full share", || async {
        let counts = spread(&proxy, 45, "/").await;
        counts.get("new").copied().unwrap_or(0) == 15
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stop_at_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let failing = backend(move |_req| {
        counter.fetch_add(1, Ordering::Relaxed);
        async {
            Response::builder()
                .status(503)
                .body(full("down\n"))
                .unwrap()
        }
    })
    .await;
    let policy = "  retries: {attempts: 2, on: [\"503\"], budgetPercent: 0}\n";
    let proxy = start(dir.path(), &[failing], Some(policy)).await;
    for _ in 0..100 {
        assert_eq!(
            proxy.get(HOST, "/").await.status,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    // A budget of 0% leaves only the fixed allowance of 10 retries.
    assert_eq!(hits.load(Ordering::Relaxed), 110);
    let retries = proxy
        .metric("backend_retries_total{backend=\"default/web:80\"}")
        .await;
    assert_eq!(retries, Some(10.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_try_timeout_moves_a_get_to_another_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let stuck = slow_backend("stuck", Duration::from_secs(5)).await;
    let ok = echo("ok").await;
    let policy = "  retries: {attempts: 1, perTryTimeout: 200ms, on: [timeout]}\n  \
                  healthCheck: {passive: {consecutiveFailures: 1000}}\n";
    let proxy = start(dir.path(), &[stuck, ok], Some(policy)).await;
    let counts = spread(&proxy, 6, "/").await;
    assert_eq!(counts.get("ok"), Some(&6), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_change_keeps_endpoint_health() {
    let dir = tempfile::tempdir().unwrap();
    let alive = echo("alive").await;
    let dead: SocketAddr = ([127, 0, 0, 1], closed_port()).into();
    let proxy = start(dir.path(), &[alive, dead], None).await;
    // Five failed connects in a row eject the dead endpoint.
    spread(&proxy, 20, "/").await;
    let errors = "backend_errors_total{backend=\"default/web:80\"}";
    let before = proxy.metric(errors).await.unwrap();
    assert_eq!(before, 5.0);

    // A new policy (so a new table and new balancers) keeps the ejection.
    write_atomic(
        dir.path(),
        "lb.yaml",
        &manifests(
            &[alive, dead],
            Some("  loadBalancer: {algorithm: Random}\n"),
        ),
    );
    wait_until(DEADLINE, "policy applied", || async {
        proxy.stderr().await.matches("routing table live").count() >= 2
    })
    .await;
    spread(&proxy, 40, "/").await;
    assert_eq!(
        proxy.metric(errors).await.unwrap(),
        before,
        "the dead endpoint was tried again"
    );
}
