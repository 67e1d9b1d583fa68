//! The dashboard's JSON API through the real binary, against known
//! traffic: every `/api/` endpoint, the live feed's filters and its
//! watchers, export, reload with its CSRF guard, and the token guard.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use serde_json::Value;
use support::*;
use tokio::sync::mpsc;

/// The shop (see `support::shop`), its `web` Service under a
/// LeastConnection policy.
async fn manifests(dir: &std::path::Path) {
    let policy = "apiVersion: ruststrom.io/v1alpha1\nkind: BalancerPolicy\nmetadata: {name: web-lc, namespace: shop}\n\
         spec:\n  targetRef: {group: \"\", kind: Service, name: web}\n  loadBalancer:\n    algorithm: LeastConnection\n";
    support::shop::shop(dir, &[policy.to_string()]).await;
}

/// A dashboard GET, with extra headers.
async fn dash(proxy: &Proxy, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut req = Request::get(path).header("host", "localhost");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(
        proxy.dashboard_port.unwrap(),
        req.body(Empty::<Bytes>::new()).unwrap(),
    )
    .await
}

async fn api(proxy: &Proxy, path: &str) -> Value {
    let resp = dash(proxy, path, &[]).await;
    assert_eq!(resp.status, StatusCode::OK, "{path}: {}", resp.body);
    assert_eq!(resp.headers["content-type"], "application/json");
    serde_json::from_str(&resp.body).unwrap()
}

/// 10 OK from web.local, 3 x 503 from fail.local, 2 x 404 (no route).
async fn traffic(proxy: &Proxy) {
    for _ in 0..10 {
        assert_eq!(proxy.get("web.local", "/shop").await.status, StatusCode::OK);
    }
    for _ in 0..3 {
        let status = proxy.get("fail.local", "/").await.status;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }
    for _ in 0..2 {
        let status = proxy.get("nowhere.local", "/").await.status;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}

async fn start(dir: &std::path::Path) -> Proxy {
    manifests(dir).await;
    Proxy::start(dir, &["--access-log", "off"]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summary_stats_and_backends_count_known_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = start(dir.path()).await;
    traffic(&proxy).await;

    let summary = api(&proxy, "/api/summary").await;
    assert_eq!(summary["mode"], "standalone");
    assert_eq!(summary["routes"], 2);
    assert_eq!(summary["backends"], 2);
    assert_eq!(summary["rejected"], 1);
    let t = &summary["traffic"];
    assert_eq!(t["requests_total"], 15);
    assert_eq!(t["errors_total"], 3);
    assert!(
        (t["error_ratio"].as_f64().unwrap() - 0.2).abs() < 1e-9,
        "{t}"
    );
    assert!(t["p50_ms"].as_f64().unwrap() > 0.0, "{t}");
    assert!(t["p99_ms"].as_f64().unwrap() >= t["p50_ms"].as_f64().unwrap());
    // S = 12/15 = 0.8, L = 1 (well under 1 s), E = 1 (3 healthy):
    // 100 * (0.4 + 0.25 + 0.25).
    let h = &summary["health"];
    assert_eq!(h["score"], 90, "{h}");
    assert!((h["success"].as_f64().unwrap() - 0.8).abs() < 1e-9);
    assert!(h["formula"].as_str().unwrap().contains("0.5·S"));
    assert_eq!(summary["feed"]["watchers"], 0);

    let stats = api(&proxy, "/api/stats").await;
    assert_eq!(stats["status_codes"]["200"], 10);
    assert_eq!(stats["status_codes"]["503"], 3);
    assert_eq!(stats["status_codes"]["404"], 2);
    assert_eq!(stats["status_classes"]["2xx"], 10);
    assert_eq!(stats["status_classes"]["5xx"], 3);
    assert_eq!(stats["tick_seconds"], 5);
    // The ring gets its first point 5 s after start, holding all of it.
    wait_until(Duration::from_secs(15), "a history point", || async {
        let stats = api(&proxy, "/api/stats").await;
        !stats["points"].as_array().unwrap().is_empty()
    })
    .await;
    let points = api(&proxy, "/api/stats").await["points"]
        .as_array()
        .unwrap()
        .clone();
    let sum = |key: &str| points.iter().map(|p| p[key].as_u64().unwrap()).sum::<u64>();
    assert_eq!(sum("requests"), 15, "{points:?}");
    assert_eq!(sum("errors"), 3);
    assert!(points[0]["p95_ms"].as_f64().is_some());

    let backends = api(&proxy, "/api/backends").await;
    let backends = backends.as_array().unwrap();
    assert_eq!(backends.len(), 2);
    let fail = &backends[0];
    assert_eq!(fail["id"], "shop/fail:80");
    assert_eq!(fail["requests_total"], 3);
    assert_eq!(fail["errors_total"], 3);
    assert_eq!(fail["algorithm"], "RoundRobin");
    assert_eq!(fail["policy"], "default");
    let web = &backends[1];
    assert_eq!(web["id"], "shop/web:80");
    assert_eq!(web["requests_total"], 10);
    assert_eq!(web["errors_total"], 0);
    assert_eq!(web["in_flight"], 0);
    assert_eq!(web["algorithm"], "LeastConnection");
    assert_eq!(web["policy"], "shop/web-lc");
    assert_eq!(web["endpoint_states"]["healthy"], 2);
    assert_eq!(web["endpoints"].as_array().unwrap().len(), 2);
    assert_eq!(web["endpoints"][0]["state"], "healthy");
    assert!(web["rate"].as_f64().unwrap() > 0.0);
    assert!(web["latency_mean_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(web["slow_threshold_ms"], 1000.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_show_hosts_certificates_and_rejected_objects() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = start(dir.path()).await;
    write(dir.path(), "broken.yaml", "kind: [unclosed");
    wait_until(DEADLINE, "the broken file reported", || async {
        let routes = api(&proxy, "/api/routes").await;
        routes["problems"].as_array().unwrap().len() == 2
    })
    .await;
    let routes = api(&proxy, "/api/routes").await;
    let rows = routes["routes"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{routes}");
    let web = rows.iter().find(|r| r["host"] == "web.local").unwrap();
    assert_eq!(web["path"], "/");
    assert_eq!(web["path_type"], "Prefix");
    assert_eq!(web["backend"], "shop/web:80");
    assert_eq!(web["ingress"], "shop/web");
    assert_eq!(web["tls_secret"], "shop/web-tls");
    assert!(web["certificate_expires"].as_str().unwrap().ends_with('Z'));
    assert!(web["certificate_days_left"].as_i64().unwrap() > 0);
    let fail = rows.iter().find(|r| r["host"] == "fail.local").unwrap();
    assert!(fail["tls_secret"].is_null());
    assert_eq!(routes["tls"][0]["host"], "web.local");
    assert_eq!(routes["certificates"][0]["secret"], "shop/web-tls");

    let problems = routes["problems"].as_array().unwrap();
    let rejected = problems.iter().find(|p| p["kind"] == "Ingress").unwrap();
    assert_eq!(rejected["severity"], "rejected");
    assert_eq!(rejected["object"], "shop/bad-path");
    assert!(
        rejected["message"].as_str().unwrap().contains("no-slash"),
        "{rejected}"
    );
    let file = problems.iter().find(|p| p["kind"] == "File").unwrap();
    assert!(file["object"].as_str().unwrap().ends_with("broken.yaml"));
}

/// Reads server-sent events from `/api/feed?query` as `(event, data)`.
async fn events(port: u16, query: &str) -> mpsc::Receiver<(String, Value)> {
    let req = Request::get(format!("/api/feed?{query}"))
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let mut sender = connect(port).await;
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        let _sender = sender;
        let mut body = resp.into_body();
        let mut buffer = String::new();
        while let Some(Ok(frame)) = body.frame().await {
            let Some(data) = frame.data_ref() else {
                continue;
            };
            buffer.push_str(&String::from_utf8_lossy(data));
            while let Some(end) = buffer.find("\n\n") {
                let event: String = buffer.drain(..end + 2).collect();
                let name = event.lines().find_map(|l| l.strip_prefix("event: "));
                let data = event.lines().find_map(|l| l.strip_prefix("data: "));
                if let (Some(name), Some(data)) = (name, data)
                    && tx
                        .send((name.to_string(), serde_json::from_str(data).unwrap()))
                        .await
                        .is_err()
                {
                    return;
                }
            }
        }
    });
    rx
}

/// The next `request` event, skipping `meta` ones.
async fn next_request(rx: &mut mpsc::Receiver<(String, Value)>) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let got = tokio::time::timeout_at(deadline, rx.recv()).await.ok()??;
        if got.0 == "request" {
            return Some(got.1);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_streams_real_requests_filtered_and_stops_when_left() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = start(dir.path()).await;
    let port = proxy.dashboard_port.unwrap();
    let mut all = events(port, "").await;
    let mut errors = events(port, "status=5xx").await;
    let mut web = events(port, "host=WEB&backend=shop/web").await;
    wait_until(DEADLINE, "three watchers", || async {
        api(&proxy, "/api/summary").await["feed"]["watchers"] == 3
    })
    .await;

    // One request is in the feed within a second of being sent.
    let started = std::time::Instant::now();
    let first = proxy.get("web.local", "/first").await;
    assert_eq!(first.status, StatusCode::OK);
    let first = next_request(&mut all).await.expect("a request in the feed");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(first["host"], "web.local");
    assert_eq!(first["path"], "/first");
    assert_eq!(first["status"], 200);
    assert_eq!(first["backend"], "shop/web:80");
    assert_eq!(first["ingress"], "shop/web");
    assert!(
        first["upstream"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    let _ = next_request(&mut web)
        .await
        .expect("/first for web.local too");
    traffic(&proxy).await;
    let mut statuses = Vec::new();
    while let Some(r) = next_request(&mut all).await {
        statuses.push(r["status"].as_u64().unwrap());
        if statuses.len() == 15 {
            break;
        }
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 10);
    assert_eq!(statuses.iter().filter(|s| **s == 503).count(), 3);
    assert_eq!(statuses.iter().filter(|s| **s == 404).count(), 2);

    for _ in 0..3 {
        let r = next_request(&mut errors).await.expect("a 5xx");
        assert_eq!(r["status"], 503);
        assert_eq!(r["host"], "fail.local");
    }
    assert!(next_request(&mut errors).await.is_none(), "only 5xx");
    for _ in 0..10 {
        let r = next_request(&mut web).await.expect("a web.local request");
        assert_eq!(r["host"], "web.local");
    }
    assert!(next_request(&mut web).await.is_none(), "only web.local");

    // Meta events say the sampling: every request at this rate.
    let meta = loop {
        let (name, data) = all.recv().await.unwrap();
        if name == "meta" {
            break data;
        }
    };
    assert_eq!(meta["sample_every"], 1);
    assert_eq!(meta["lost"], 0);

    // Leaving ends the watchers: the request path builds nothing again.
    drop((all, errors, web));
    wait_until(DEADLINE, "no watchers", || async {
        api(&proxy, "/api/summary").await["feed"]["watchers"] == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_downloads_stats_and_the_routing_table() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = start(dir.path()).await;
    traffic(&proxy).await;

    let json = dash(&proxy, "/api/export?format=json", &[]).await;
    assert_eq!(json.status, StatusCode::OK);
    assert_eq!(
        json.headers["content-disposition"],
        "attachment; filename=\"ruststrom-export.json\""
    );
    let doc: Value = serde_json::from_str(&json.body).unwrap();
    assert_eq!(doc["summary"]["traffic"]["requests_total"], 15);
    assert_eq!(doc["stats"]["status_codes"]["503"], 3);
    assert_eq!(doc["backends"].as_array().unwrap().len(), 2);
    let hosts: Vec<&str> = doc["routing"]["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["fail.local", "web.local"]);
    assert_eq!(doc["routing"]["problems"][0]["object"], "shop/bad-path");

    let csv = dash(&proxy, "/api/export?format=csv", &[]).await;
    assert_eq!(csv.status, StatusCode::OK);
    assert_eq!(csv.headers["content-type"], "text/csv; charset=utf-8");
    assert!(
        csv.headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains("ruststrom-export.csv")
    );
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(lines.len(), 3, "{}", csv.body);
    assert!(lines[0].starts_with("host,path,path_type,backend,ingress,tls_secret"));
    let web = lines.iter().find(|l| l.starts_with("web.local,")).unwrap();
    let cells: Vec<&str> = web.split(',').collect();
    let header: Vec<&str> = lines[0].split(',').collect();
    let cell = |name: &str| cells[header.iter().position(|h| *h == name).unwrap()];
    assert_eq!(cell("backend"), "shop/web:80");
    assert_eq!(cell("tls_secret"), "shop/web-tls");
    assert_eq!(cell("requests_total"), "10");
    assert_eq!(cell("healthy"), "2");
    assert_eq!(cell("algorithm"), "LeastConnection");
}

/// The CSRF token inside the page.
async fn csrf(proxy: &Proxy) -> String {
    let page = dash(proxy, "/", &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    let marker = "name=\"csrf-token\" content=\"";
    let at = page.body.find(marker).unwrap();
    let rest = &page.body[at + marker.len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

async fn post(port: u16, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    let mut req = Request::post(path).header("host", format!("localhost:{port}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(port, req.body(full(body.to_string())).unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_needs_the_csrf_token_and_reports_what_it_did() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = start(dir.path()).await;
    let port = proxy.dashboard_port.unwrap();
    let token = csrf(&proxy).await;
    assert_eq!(token.len(), 64);

    let refused = post(port, "/api/reload", &[], "").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let wrong = post(port, "/api/reload", &[("x-csrf-token", "nope")], "").await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    let cross = post(
        port,
        "/api/reload",
        &[("x-csrf-token", &token), ("origin", "http://evil.example")],
        "",
    )
    .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    let get = dash(&proxy, "/api/reload", &[]).await;
    assert_eq!(get.status, StatusCode::METHOD_NOT_ALLOWED);

    let before = api(&proxy, "/api/summary").await["generation"]
        .as_u64()
        .unwrap();
    let done = post(port, "/api/reload", &[("x-csrf-token", &token)], "").await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    let outcome: Value = serde_json::from_str(&done.body).unwrap();
    assert_eq!(outcome["source"], "standalone");
    assert_eq!(outcome["generation"], before + 1);
    assert_eq!(outcome["routes"], 2);
    assert_eq!(outcome["rejected"], 1);
    assert_eq!(outcome["errors"].as_array().unwrap().len(), 0);
    assert_eq!(api(&proxy, "/api/summary").await["generation"], before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_dashboard_refuses_foreign_host_names() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = start(dir.path()).await;
    let port = proxy.dashboard_port.unwrap();
    let raw = raw(
        port,
        "GET /api/routes HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 403"), "{raw}");
    let ok = raw_get(port, "127.0.0.1").await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    // The page's files and the security headers.
    let page = dash(&proxy, "/", &[]).await;
    assert!(
        page.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    assert_eq!(page.headers["x-frame-options"], "DENY");
    for asset in ["/app.js", "/app.css"] {
        assert_eq!(dash(&proxy, asset, &[]).await.status, StatusCode::OK);
    }
}

async fn raw_get(port: u16, host: &str) -> String {
    raw(
        port,
        &format!("GET /api/summary HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_dashboard_needs_its_token() {
    let dir = tempfile::tempdir().unwrap();
    manifests(dir.path()).await;
    // Refused at start without a token.
    let refused = run_bin(&[
        "--manifests",
        &dir.path().display().to_string(),
        "--http-addr",
        "127.0.0.1:0",
        "--metrics-addr",
        "127.0.0.1:0",
        "--dashboard-addr",
        "0.0.0.0:0",
    ]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("dashboard-token"), "{stderr}");

    let args: Vec<String> = [
        "--manifests",
        &dir.path().display().to_string(),
        "--http-addr",
        "127.0.0.1:0",
        "--metrics-addr",
        "127.0.0.1:0",
        "--dashboard-addr",
        "0.0.0.0:0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let proxy =
        Proxy::start_args_env(&args, &[("RUST_STROM_DASHBOARD_TOKEN", "s3cret-token")]).await;
    let port = proxy.dashboard_port.unwrap();
    let bare = dash(&proxy, "/api/summary", &[]).await;
    assert_eq!(bare.status, StatusCode::UNAUTHORIZED);
    let wrong = dash(&proxy, "/api/summary", &[("authorization", "Bearer nope")]).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let bearer = dash(
        &proxy,
        "/api/summary",
        &[("authorization", "Bearer s3cret-token")],
    )
    .await;
    assert_eq!(bearer.status, StatusCode::OK);
    // The page sends browsers to the login form.
    let page = dash(&proxy, "/", &[]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.headers["location"], "/login");
    assert_eq!(dash(&proxy, "/login", &[]).await.status, StatusCode::OK);
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let failed = post(port, "/login", &form, "token=guess").await;
    assert_eq!(failed.status, StatusCode::UNAUTHORIZED);
    assert!(failed.headers.get("set-cookie").is_none());
    let logged = post(port, "/login", &form, "token=s3cret-token").await;
    assert_eq!(logged.status, StatusCode::SEE_OTHER);
    let cookie = logged.headers["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    assert!(!cookie.contains("s3cret-token"));
    let session = cookie.split(';').next().unwrap();
    let with_cookie = dash(&proxy, "/api/summary", &[("cookie", session)]).await;
    assert_eq!(with_cookie.status, StatusCode::OK);
    // Any host name is fine once a token guards it.
    let other = raw(
        port,
        "GET /api/summary HTTP/1.1\r\nHost: dashboard.example\r\nAuthorization: Bearer s3cret-token\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(other.starts_with("HTTP/1.1 200"), "{other}");
}
