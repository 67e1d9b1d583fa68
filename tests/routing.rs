//! Routing through the real binary: round robin over endpoints, exact and
//! wildcard hosts, Exact and Prefix paths, longest path first, the default
//! backend, and 404 for what nothing matches.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly

mod support;

use std::collections::HashMap;

use http::StatusCode;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_requests_evenly() {
    let dir = tempfile::tempdir().unwrap();
    let mut addrs = Vec::new();
    for name in ["rr-1", "rr-2", "rr-3"] {
        addrs.push(echo(name).await);
    }
    write(
        dir.path(),
        "demo.yaml",
        &docs(&[
            ingress("default", "demo", "demo.local", &[("/", "Prefix", "demo")]),
            backend_objects("default", "demo", &addrs),
        ]),
    );
    let proxy = Proxy::start(dir.path(), &[]).await;

    let mut seen: HashMap<String, usize> = HashMap::new();
    for i in 0..30 {
        let resp = proxy.get("demo.local", &format!("/req/{i}")).await;
        assert_eq!(resp.status, StatusCode::OK, "request {i}: {}", resp.body);
        let backend = resp.backend().expect("x-backend").to_string();
        assert!(
            resp.body.starts_with(&format!("backend: {backend}\n")),
            "{}",
            resp.body
        );
        assert!(
            resp.body.contains(&format!("path: /req/{i}\n")),
            "{}",
            resp.body
        );
        *seen.entry(backend).or_default() += 1;
    }
    let mut counts: Vec<_> = seen.into_iter().collect();
    counts.sort();
    assert_eq!(
        counts,
        [
            ("rr-1".to_string(), 10),
            ("rr-2".to_string(), 10),
            ("rr-3".to_string(), 10)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_and_paths_route_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut objects = Vec::new();
    for svc in ["exact", "wild", "api", "apiv2", "exactpath", "root"] {
        let addr = echo(svc).await;
        objects.push(backend_objects("shop", svc, &[addr]));
    }
    objects.push(ingress(
        "shop",
        "exact",
        "exact.local",
        &[("/", "Prefix", "exact")],
    ));
    objects.push(ingress(
        "shop",
        "wild",
        "*.foo.local",
        &[("/", "Prefix", "wild")],
    ));
    objects.push(ingress(
        "shop",
        "paths",
        "paths.local",
        &[
            ("/api", "Prefix", "api"),
            ("/api/v2", "Prefix", "apiv2"),
            ("/exact", "Exact", "exactpath"),
        ],
    ));
    objects.push(ingress(
        "shop",
        "rooted",
        "rooted.local",
        &[("/", "Prefix", "root"), ("/api", "Prefix", "api")],
    ));
    write(dir.path(), "all.yaml", &docs(&objects));
    let proxy = Proxy::start(dir.path(), &[]).await;

    // (Host header, path, expected backend or None for 404)
    let cases: &[(&str, &str, Option<&str>)] = &[
        // Exact host: case and port do not matter.
        ("exact.local", "/", Some("exact")),
        ("Exact.LOCAL:8080", "/x", Some("exact")),
        ("EXACT.local", "/", Some("exact")),
        ("exact.local.", "/", Some("exact")),
        ("other.exact.local", "/", None),
        // One-label wildcard.
        ("a.foo.local", "/", Some("wild")),
        ("B.Foo.Local:1234", "/deep/path", Some("wild")),
        ("a.b.foo.local", "/", None),
        ("foo.local", "/", None),
        // Prefix matches whole path elements; the longest path wins.
        ("paths.local", "/api", Some("api")),
        ("paths.local", "/api/", Some("api")),
        ("paths.local", "/api/users", Some("api")),
        ("paths.local", "/api/users?x=1", Some("api")),
        ("paths.local", "/apix", None),
        ("paths.local", "/api/v2", Some("apiv2")),
        ("paths.local", "/api/v2/orders", Some("apiv2")),
        ("paths.local", "/api/v20", Some("api")),
        // Exact matches only itself.
        ("paths.local", "/exact", Some("exactpath")),
        ("paths.local", "/exact?q=1", Some("exactpath")),
        ("paths.local", "/exact/", None),
        ("paths.local", "/exact/more", None),
        ("paths.local", "/", None),
        // A catch-all `/` loses to a longer prefix on the same host.
        ("rooted.local", "/api/x", Some("api")),
        ("rooted.local", "/apix", Some("root")),
        ("rooted.local", "/", Some("root")),
        // Nothing for this host.
        ("unknown.local", "/", None),
    ];
    let mut failures = Vec::new();
    for (host, path, want) in cases {
        let resp = proxy.get(host, path).await;
        let got = match resp.status {
            StatusCode::OK => resp.backend().map(str::to_string),
            StatusCode::NOT_FOUND => {
                assert!(!resp.body.trim().is_empty(), "404 without a body");
                assert!(resp.backend().is_none());
                None
            }
            other => Some(format!("status {other}")),
        };
        if got.as_deref() != *want {
            failures.push(format!("{host} {path}: want {want:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "misrouted:\n{}", failures.join("\n"));

    // The backend sees the path and query as sent.
    let resp = proxy.get("paths.local", "/api/users?x=1&y=2").await;
    assert!(
        resp.body.contains("path: /api/users?x=1&y=2\n"),
        "{}",
        resp.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_gets_404_with_a_body() {
    let dir = tempfile::tempdir().unwrap();
    let addr = echo("only").await;
    write(
        dir.path(),
        "a.yaml",
        &docs(&[
            ingress("default", "only", "only.local", &[("/", "Prefix", "only")]),
            backend_objects("default", "only", &[addr]),
        ]),
    );
    let proxy = Proxy::start(dir.path(), &[]).await;
    assert!(routes_to(proxy.http_port, "only.local", "/", "only").await);

    let resp = proxy.get("nobody.local", "/anything").await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    assert!(!resp.body.trim().is_empty());
    assert!(resp.body.contains("404"), "{}", resp.body);
    // No Host header at all (HTTP/1.0 allows it): also 404, not a crash.
    let resp = raw(proxy.http_port, "GET / HTTP/1.0\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.0 404"), "{resp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_backend_catches_unmatched_requests() {
    let dir = tempfile::tempdir().unwrap();
    let fallback = echo("fallback").await;
    let app = echo("app").await;
    write(
        dir.path(),
        "default.yaml",
        &docs(&[
            default_backend("default", "catch-all", "fallback"),
            backend_objects("default", "fallback", &[fallback]),
        ]),
    );
    write(
        dir.path(),
        "app.yaml",
        &docs(&[
            ingress("default", "app", "app.local", &[("/app", "Prefix", "app")]),
            backend_objects("default", "app", &[app]),
        ]),
    );
    let proxy = Proxy::start(dir.path(), &[]).await;

    for (host, path, want) in [
        ("app.local", "/app/x", "app"),
        ("unknown.local", "/", "fallback"),
        ("unknown.local", "/app", "fallback"),
        // A known host whose paths do not match also falls to the default.
        ("app.local", "/other", "fallback"),
    ] {
        let resp = proxy.get(host, path).await;
        assert_eq!(resp.status, StatusCode::OK, "{host}{path}: {}", resp.body);
        assert_eq!(resp.backend(), Some(want), "{host}{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_series_appear_with_the_first_request() {
    let dir = tempfile::tempdir().unwrap();
    let used = echo("used").await;
    let idle = echo("idle").await;
    write(
        dir.path(),
        "two.yaml",
        &docs(&[
            ingress("default", "used", "used.local", &[("/", "Prefix", "used")]),
            backend_objects("default", "used", &[used]),
            ingress("default", "idle", "idle.local", &[("/", "Prefix", "idle")]),
            backend_objects("default", "idle", &[idle]),
        ]),
    );
    let proxy = Proxy::start(dir.path(), &[]).await;
    let resp = proxy.get("used.local", "/").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);

    let metrics = proxy.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "backend_requests_total{backend=\"default/used:80\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric_value(
            &metrics,
            "backend_response_time_seconds_count{backend=\"default/used:80\"}"
        ),
        Some(1.0)
    );
    // A Service nobody sent a request to has no series at all.
    assert!(
        !metrics.contains("default/idle:80"),
        "idle backend has series:\n{metrics}"
    );
}
