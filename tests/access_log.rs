//! Access logs through the real binary: one line per request on standard
//! output, in `json` (every field, checked against what the client and the
//! backend saw) and `text` (ingress-nginx's format), and none with `off`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::Value;
use support::tls::*;
use support::*;

async fn start(dir: &std::path::Path, format: &str) -> Proxy {
    let args: Vec<String> = [
        "--manifests",
        &dir.display().to_string(),
        "--http-addr",
        "127.0.0.1:0",
        "--metrics-addr",
        "127.0.0.1:0",
        "--workers",
        "2",
        "--access-log",
        format,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    Proxy::start_capturing(&args).await
}

/// `web.local` (plain and TLS) -> an echo backend.
async fn manifests(dir: &std::path::Path) -> SocketAddr {
    let web = echo("web").await;
    let cert = gen_cert(&["web.local"]);
    let parts = vec![
        tls_ingress(
            "default",
            "web",
            &["web.local"],
            "web",
            &[("ruststrom.io/ssl-redirect", "false")],
            &[(&["web.local"], "web-tls")],
        ),
        tls_secret("default", "web-tls", &cert),
        backend_objects("default", "web", &[web]),
    ];
    write(dir, "routes.yaml", &docs(&parts));
    web
}

/// Waits for `n` lines on the proxy's standard output.
async fn lines(proxy: &Proxy, n: usize) -> Vec<String> {
    wait_until(Duration::from_secs(10), "access log lines", || async {
        proxy.stdout_lines().len() >= n
    })
    .await;
    proxy.stdout_lines()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_say_what_the_client_and_the_backend_saw() {
    let dir = tempfile::tempdir().unwrap();
    let web = manifests(dir.path()).await;
    let proxy = start(dir.path(), "json").await;
    let port = proxy.http_port;

    // A GET with a query (never logged) and a user agent.
    let req = Request::get("/shop/cart?token=s3cret")
        .header("host", "web.local")
        .header("user-agent", "curl/8.5.0")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let got = send(port, req).await;
    assert_eq!(got.status, StatusCode::OK);
    let id = got.headers["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(
        got.echoed("x-request-id"),
        Some(id.as_str()),
        "{}",
        got.body
    );
    let get_body = got.body.len() as u64;

    // A POST with a body, and a request no route takes.
    let req = Request::post("/upload")
        .header("host", "web.local")
        .body(Full::new(Bytes::from(vec![b'x'; 1000])))
        .unwrap();
    assert_eq!(send(port, req).await.status, StatusCode::OK);
    assert_eq!(
        get(port, "nowhere.local", "/").await.status,
        StatusCode::NOT_FOUND
    );
    // Over TLS, with SNI.
    let https = proxy.https_port().await;
    assert_eq!(
        https_get(https, "web.local", "/secure").await.status,
        StatusCode::OK
    );

    let lines = lines(&proxy, 4).await;
    assert_eq!(lines.len(), 4, "{lines:#?}");
    let records: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let by_path = |path: &str| {
        records
            .iter()
            .find(|r| r["path"] == path)
            .unwrap_or_else(|| panic!("no record for {path}: {lines:#?}"))
    };

    let r = by_path("/shop/cart");
    assert_eq!(r["method"], "GET");
    assert_eq!(r["client"], "127.0.0.1");
    assert_eq!(r["host"], "web.local");
    assert_eq!(r["protocol"], "HTTP/1.1");
    assert_eq!(r["status"], 200);
    assert_eq!(r["bytes_in"], 0);
    assert_eq!(r["bytes_out"], get_body);
    assert_eq!(r["upstream"], web.to_string());
    assert_eq!(r["retries"], 0);
    assert_eq!(r["request_id"], id.as_str());
    assert_eq!(r["ingress"], "default/web");
    assert!(
        r["backend"].as_str().unwrap().starts_with("default/web:"),
        "{r}"
    );
    assert_eq!(r["user_agent"], "curl/8.5.0");
    assert!(r["tls_version"].is_null());
    let duration = r["duration_ms"].as_f64().unwrap();
    let upstream = r["upstream_duration_ms"].as_f64().unwrap();
    assert!(duration >= upstream && upstream >= 0.0, "{r}");
    assert!(!lines.iter().any(|l| l.contains("s3cret")));

    let r = by_path("/upload");
    assert_eq!(r["method"], "POST");
    assert_eq!(r["bytes_in"], 1000);

    let r = by_path("/");
    assert_eq!(r["status"], 404);
    assert_eq!(r["host"], "nowhere.local");
    assert!(r["upstream"].is_null() && r["ingress"].is_null(), "{r}");

    let r = by_path("/secure");
    assert_eq!(r["tls_version"], "TLSv1.3");
    assert_eq!(r["sni"], "web.local");
    assert_eq!(r["status"], 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_lines_follow_ingress_nginx_and_off_writes_none() {
    let dir = tempfile::tempdir().unwrap();
    let web = manifests(dir.path()).await;
    let proxy = start(dir.path(), "text").await;
    let req = Request::get("/a?b=c")
        .header("host", "web.local")
        .header("user-agent", "agent \"quoted\"")
        .header("referer", "http://example.com/")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let got = send(proxy.http_port, req).await;
    let id = got.headers["x-request-id"].to_str().unwrap().to_string();
    let line = lines(&proxy, 1).await.remove(0);
    // $remote_addr - $remote_user [$time_local] "$request" $status
    // $body_bytes_sent "$http_referer" "$http_user_agent" $request_length
    // $request_time [$proxy_upstream_name] [] $upstream_addr - ...
    let (head, rest) = line.split_once(" [").unwrap();
    assert_eq!(head, "127.0.0.1 - -");
    let (time, rest) = rest.split_once("] ").unwrap();
    assert!(time.ends_with(" +0000") && time.len() == 26, "{time}");
    let want = format!(
        "\"GET /a HTTP/1.1\" 200 {} \"http://example.com/\" \"agent \\x22quoted\\x22\" 0 ",
        got.body.len()
    );
    assert!(rest.starts_with(&want), "{rest}\nwant: {want}");
    assert!(rest.contains(&format!("] [] {web} - ")), "{rest}");
    assert!(rest.ends_with(&format!(" 200 {id}")), "{rest}");

    let dir = tempfile::tempdir().unwrap();
    manifests(dir.path()).await;
    let quiet = start(dir.path(), "off").await;
    assert_eq!(
        get(quiet.http_port, "web.local", "/").await.status,
        StatusCode::OK
    );
    // Room for a line that should not come.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        quiet.stdout_lines().is_empty(),
        "{:?}",
        quiet.stdout_lines()
    );
}

// The writer batches lines; none is lost when the proxy stops gracefully
// (the unit test `close_writes_out_what_is_queued` pins the close itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_lines_are_written_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    manifests(dir.path()).await;
    let mut proxy = start(dir.path(), "json").await;
    for i in 0..20 {
        let path = format!("/last/{i}");
        assert_eq!(
            get(proxy.http_port, "web.local", &path).await.status,
            StatusCode::OK
        );
    }
    proxy.signal("TERM");
    assert!(proxy.wait_exit(Duration::from_secs(10)).await.is_some());
    // The reader thread collects what the process wrote before it exited.
    wait_until(Duration::from_secs(5), "20 lines", || async {
        proxy.stdout_lines().len() == 20
    })
    .await;
}
