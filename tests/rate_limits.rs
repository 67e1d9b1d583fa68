//! `limit-rps`, `limit-rpm`, `limit-connections` and `limit-allowlist`
//! through the real binary: 429 with `Retry-After` past the burst, one
//! budget per client address (a trusted proxy's `X-Forwarded-For`), exempt
//! addresses, requests in flight counted until answered, counters kept
//! across table rebuilds, memory bounded under a flood of addresses, and
//! bad values taking out only their Ingress.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly

mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use support::*;

const NGINX: &str = "nginx.ingress.kubernetes.io";
/// What a zone tracks at most (`rate_limit::MAX_CLIENTS`).
const MAX_CLIENTS: f64 = 16_384.0;

/// An Ingress for `host` -> `svc` at `/` with the given annotations.
fn annotated(name: &str, host: &str, svc: &str, annotations: &[(&str, &str)]) -> String {
    with_annotations(
        ingress("default", name, host, &[("/", "Prefix", svc)]),
        annotations,
    )
}

fn with_annotations(ingress: String, annotations: &[(&str, &str)]) -> String {
    let mut lines = String::from("metadata:\n  annotations:\n");
    for (k, v) in annotations {
        lines.push_str(&format!("    {NGINX}/{k}: \"{v}\"\n"));
    }
    ingress.replacen("metadata:\n", &lines, 1)
}

/// GET `host` as the client `xff` (through a trusted proxy) on a new
/// connection.
async fn get_as(port: u16, host: &str, xff: &str) -> Resp {
    let req = Request::get("/")
        .header("host", host)
        .header("x-forwarded-for", xff)
        .body(Empty::<Bytes>::new())
        .unwrap();
    send(port, req).await
}

fn retry_after(resp: &Resp) -> Option<u64> {
    resp.headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rps_allows_the_burst_per_address_then_429_until_it_refills() {
    let dir = tempfile::tempdir().unwrap();
    let web = echo("web").await;
    let parts = [
        // burst = 1 x 2: three requests at once pass (nginx: burst + 1).
        annotated(
            "limited",
            "limited.local",
            "web",
            &[
                ("limit-rps", "1"),
                ("limit-burst-multiplier", "2"),
                ("limit-allowlist", "192.0.2.0/24"),
            ],
        ),
        backend_objects("default", "web", &[web]),
    ];
    write(dir.path(), "routes.yaml", &docs(&parts));
    let proxy = Proxy::start(dir.path(), &["--trusted-proxies", "127.0.0.1/32"]).await;
    let port = proxy.http_port;

    for i in 0..3 {
        let resp = get_as(port, "limited.local", "203.0.113.1").await;
        assert_eq!(resp.status, StatusCode::OK, "request {i} of the burst");
    }
    let refused = get_as(port, "limited.local", "203.0.113.1").await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    let wait = retry_after(&refused).expect("Retry-After in whole seconds");
    assert!((1..=2).contains(&wait), "Retry-After {wait}");

    // Another address has its own budget.
    for i in 0..3 {
        let resp = get_as(port, "limited.local", "203.0.113.2").await;
        assert_eq!(resp.status, StatusCode::OK, "second address, request {i}");
    }
    // An allowlisted address is never limited.
    for i in 0..20 {
        let resp = get_as(port, "limited.local", "192.0.2.9").await;
        assert_eq!(resp.status, StatusCode::OK, "allowlisted, request {i}");
    }
    // The first address is still refused, until the rate refills.
    assert_eq!(
        get_as(port, "limited.local", "203.0.113.1").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        get_as(port, "limited.local", "203.0.113.1").await.status,
        StatusCode::OK,
        "served again after Retry-After"
    );
    let counted = proxy
        .metric("rate_limited_total{kind=\"rps\"}")
        .await
        .unwrap_or(0.0);
    assert_eq!(counted, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_connections_counts_requests_until_answered() {
    let dir = tempfile::tempdir().unwrap();
    // The backend answers its head at once and holds the body until the
    // gate opens: a request counts until its answer is sent whole.
    let (open, gate) = tokio::sync::watch::channel(false);
    let arrived = Arc::new(AtomicUsize::new(0));
    let seen = arrived.clone();
    let slow = backend(move |_req| {
        let mut gate = gate.clone();
        seen.fetch_add(1, Ordering::SeqCst);
        async move {
            let rest = futures::stream::once(async move {
                let _ = gate.wait_for(|open| *open).await;
                Ok::<_, Infallible>(Frame::data(Bytes::from("done")))
            });
            http::Response::new(StreamBody::new(rest).boxed())
        }
    })
    .await;
    let parts = [
        annotated("slow", "slow.local", "slow", &[("limit-connections", "2")]),
        backend_objects("default", "slow", &[slow]),
    ];
    write(dir.path(), "routes.yaml", &docs(&parts));
    let proxy = Proxy::start(dir.path(), &[]).await;
    let port = proxy.http_port;

    // Two answers under way: their heads are here, their bodies are not.
    let mut bodies = Vec::new();
    for _ in 0..2 {
        let mut sender = connect::<Empty<Bytes>>(port).await;
        let resp = sender
            .send_request(get_req("slow.local", "/"))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        bodies.push((sender, resp));
    }
    let third = get(port, "slow.local", "/").await;
    assert_eq!(third.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&third).is_some());
    assert_eq!(arrived.load(Ordering::SeqCst), 2, "the third never left");

    open.send(true).unwrap();
    for (_sender, resp) in bodies {
        assert_eq!(into_resp(resp).await.body, "done");
    }
    wait_until(
        Duration::from_secs(10),
        "served once the answers ended",
        || async { get(port, "slow.local", "/").await.status == StatusCode::OK },
    )
    .await;
    let counted = proxy
        .metric("rate_limited_total{kind=\"connections\"}")
        .await
        .unwrap_or(0.0);
    assert_eq!(counted, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_survive_a_rebuild_of_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let web = echo("web").await;
    let parts = [
        // One a minute, burst 1: two pass, then 429 for a minute.
        annotated(
            "limited",
            "limited.local",
            "web",
            &[("limit-rpm", "1"), ("limit-burst-multiplier", "1")],
        ),
        backend_objects("default", "web", &[web]),
    ];
    write(dir.path(), "routes.yaml", &docs(&parts));
    let proxy = Proxy::start(dir.path(), &[]).await;
    let port = proxy.http_port;
    for _ in 0..2 {
        assert_eq!(get(port, "limited.local", "/").await.status, StatusCode::OK);
    }
    assert_eq!(
        get(port, "limited.local", "/").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    let before = proxy.metric("routing_table_generation").await.unwrap();

    // Another Ingress comes, then changes: two rebuilds.
    write_atomic(
        dir.path(),
        "other.yaml",
        &ingress("default", "other", "other.local", &[("/", "Prefix", "web")]),
    );
    wait_until(Duration::from_secs(10), "other.local served", || {
        routes_to(port, "other.local", "/", "web")
    })
    .await;
    write_atomic(
        dir.path(),
        "other.yaml",
        &ingress(
            "default",
            "other",
            "other.local",
            &[("/v2", "Prefix", "web")],
        ),
    );
    wait_until(Duration::from_secs(10), "other.local/v2 only", || async {
        get(port, "other.local", "/").await.status == StatusCode::NOT_FOUND
    })
    .await;
    // The limited Ingress itself gains a path, its limits the same: it is
    // compiled again, and finds its counters.
    let parts = [
        with_annotations(
            ingress(
                "default",
                "limited",
                "limited.local",
                &[("/", "Prefix", "web"), ("/extra", "Prefix", "web")],
            ),
            &[("limit-rpm", "1"), ("limit-burst-multiplier", "1")],
        ),
        backend_objects("default", "web", &[web]),
    ];
    let edited = proxy.metric("routing_table_generation").await.unwrap();
    write_atomic(dir.path(), "routes.yaml", &docs(&parts));
    wait_until(
        Duration::from_secs(10),
        "the limited Ingress rebuilt",
        || async { proxy.metric("routing_table_generation").await.unwrap() > edited },
    )
    .await;
    assert!(edited > before, "rebuilt: {before} -> {edited}");

    assert_eq!(
        get(port, "limited.local", "/").await.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the rebuild reset the budget"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_addresses_stays_under_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let web = echo("web").await;
    let parts = [
        // Entries of one request each stay a minute: none expire during
        // the flood.
        annotated("limited", "limited.local", "web", &[("limit-rpm", "1")]),
        backend_objects("default", "web", &[web]),
    ];
    write(dir.path(), "routes.yaml", &docs(&parts));
    let proxy = Proxy::start(dir.path(), &["--trusted-proxies", "127.0.0.1/32"]).await;
    let port = proxy.http_port;

    // A heavy client uses up its burst (1 x 5, six at once) first.
    for _ in 0..6 {
        assert_eq!(
            get_as(port, "limited.local", "198.51.100.7").await.status,
            StatusCode::OK
        );
    }
    assert_eq!(
        get_as(port, "limited.local", "198.51.100.7").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );

    // 20000 new addresses, one request each, on a few kept-alive
    // connections.
    const FLOOD: u32 = 20_000;
    const CONNECTIONS: u32 = 8;
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|c| {
            tokio::spawn(async move {
                let mut sender = connect::<Empty<Bytes>>(port).await;
                let mut ok = 0;
                for i in (c..FLOOD).step_by(CONNECTIONS as usize) {
                    let xff = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
                    let req = Request::get("/")
                        .header("host", "limited.local")
                        .header("x-forwarded-for", xff)
                        .body(Empty::new())
                        .unwrap();
                    sender.ready().await.unwrap();
                    let resp = sender.send_request(req).await.unwrap();
                    if resp.status() == StatusCode::OK {
                        ok += 1;
                    }
                    let _ = into_resp(resp).await;
                }
                ok
            })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        ok += task.await.unwrap();
    }
    assert_eq!(ok, FLOOD, "every new address has its budget");

    let tracked = proxy.metric("rate_limit_tracked_clients").await.unwrap();
    assert!(tracked <= MAX_CLIENTS, "{tracked} tracked");
    assert!(
        tracked > MAX_CLIENTS - 1000.0,
        "the cap was reached: {tracked}"
    );
    // The flood evicted its own entries, not the heavy client's.
    assert_eq!(
        get_as(port, "limited.local", "198.51.100.7").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_values_take_out_only_their_ingress() {
    let dir = tempfile::tempdir().unwrap();
    let web = echo("web").await;
    let parts = [
        annotated("good", "good.local", "web", &[("limit-rps", "100")]),
        annotated("abc", "abc.local", "web", &[("limit-rps", "abc")]),
        annotated("negative", "negative.local", "web", &[("limit-rpm", "-1")]),
        annotated(
            "conns",
            "conns.local",
            "web",
            &[("limit-connections", "2.5")],
        ),
        annotated(
            "burst",
            "burst.local",
            "web",
            &[("limit-rps", "5"), ("limit-burst-multiplier", "-5")],
        ),
        annotated(
            "allow",
            "allow.local",
            "web",
            &[("limit-rps", "5"), ("limit-allowlist", "10.0.0.0/40")],
        ),
        backend_objects("default", "web", &[web]),
    ];
    write(dir.path(), "routes.yaml", &docs(&parts));
    let proxy = Proxy::start(dir.path(), &[]).await;
    assert!(routes_to(proxy.http_port, "good.local", "/", "web").await);
    for host in [
        "abc.local",
        "negative.local",
        "conns.local",
        "burst.local",
        "allow.local",
    ] {
        let resp = get(proxy.http_port, host, "/").await;
        assert_eq!(resp.status, StatusCode::NOT_FOUND, "{host}");
    }
    let text = check_text(dir.path());
    for line in [
        "limit-rps: \"abc\"",
        "limit-rpm: \"-1\"",
        "limit-connections: \"2.5\"",
        "limit-burst-multiplier: \"-5\"",
        "limit-allowlist: \"10.0.0.0/40\"",
    ] {
        assert!(text.contains(line), "check does not say {line:?}:\n{text}");
    }
}
