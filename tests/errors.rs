//! Errors the proxy answers itself: 404 without a route, 503 without
//! endpoints, 502 for a refused or broken backend, 504 past
//! `--request-timeout` (and how they show in `/metrics`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use support::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// Every proxy-generated error has a plain-text body naming the status.
fn assert_error(resp: &Resp, status: StatusCode) {
    assert_eq!(resp.status, status, "{}", resp.body);
    assert!(!resp.body.trim().is_empty(), "{status} without a body");
    assert!(
        resp.body.starts_with(&status.as_u16().to_string()),
        "{}",
        resp.body
    );
    assert!(resp.backend().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_statuses_for_broken_backends() {
    let dir = tempfile::tempdir().unwrap();

    // Accepts, reads a little, and closes without answering.
    let hangup = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hangup_port = hangup.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = hangup.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf).await;
                drop(stream);
            });
        }
    });

    let ok = echo("ok").await;
    let objects = docs(&[
        ingress(
            "default",
            "errors",
            "errors.local",
            &[
                ("/ok", "Prefix", "ok"),
                ("/empty", "Prefix", "empty"),
                ("/closed", "Prefix", "closed"),
                ("/hangup", "Prefix", "hangup"),
                ("/missing", "Prefix", "missing"),
            ],
        ),
        backend_objects("default", "ok", &[ok]),
        // A Service without any EndpointSlice.
        service("default", "empty"),
        service("default", "closed"),
        slice("default", "closed-0", "closed", closed_port()),
        service("default", "hangup"),
        slice("default", "hangup-0", "hangup", hangup_port),
        // "missing" names no Service at all.
    ]);
    write(dir.path(), "errors.yaml", &objects);
    let proxy = Proxy::start(dir.path(), &[]).await;

    assert_eq!(
        proxy.get("errors.local", "/ok").await.status,
        StatusCode::OK
    );
    assert_error(
        &proxy.get("errors.local", "/nothing").await,
        StatusCode::NOT_FOUND,
    );
    assert_error(
        &proxy.get("nohost.local", "/ok").await,
        StatusCode::NOT_FOUND,
    );
    assert_error(
        &proxy.get("errors.local", "/empty").await,
        StatusCode::SERVICE_UNAVAILABLE,
    );
    // A rule whose Service does not exist answers 503 too (it must not fall
    // through to another rule).
    assert_error(
        &proxy.get("errors.local", "/missing").await,
        StatusCode::SERVICE_UNAVAILABLE,
    );
    assert_error(
        &proxy.get("errors.local", "/closed").await,
        StatusCode::BAD_GATEWAY,
    );
    assert_error(
        &proxy.get("errors.local", "/hangup").await,
        StatusCode::BAD_GATEWAY,
    );
    // The same again, to be sure a failed backend leaves nothing broken.
    assert_error(
        &proxy.get("errors.local", "/hangup").await,
        StatusCode::BAD_GATEWAY,
    );
    assert_eq!(
        proxy.get("errors.local", "/ok").await.status,
        StatusCode::OK
    );

    let metrics = proxy.metrics().await;
    let value = |key: &str| metric_value(&metrics, key).unwrap_or(-1.0);
    assert_eq!(value("http_requests_total"), 9.0, "{metrics}");
    assert_eq!(value("http_status_codes_total{code=\"200\"}"), 2.0);
    assert_eq!(value("http_status_codes_total{code=\"404\"}"), 2.0);
    assert_eq!(value("http_status_codes_total{code=\"503\"}"), 2.0);
    assert_eq!(value("http_status_codes_total{code=\"502\"}"), 3.0);
    // 502 and 503 are errors; 404 is not.
    assert_eq!(value("http_errors_total"), 5.0, "{metrics}");
    assert_eq!(value("http_timeouts_total"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_backend_gets_504_after_request_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let slow = backend(|_req| async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        Response::new(full("too late\n"))
    })
    .await;
    let fast = echo("fast").await;
    write(
        dir.path(),
        "slow.yaml",
        &docs(&[
            ingress(
                "default",
                "slow",
                "slow.local",
                &[("/", "Prefix", "slow"), ("/fast", "Prefix", "fast")],
            ),
            backend_objects("default", "slow", &[slow]),
            backend_objects("default", "fast", &[fast]),
        ]),
    );
    let proxy = Proxy::start(dir.path(), &["--request-timeout", "300ms"]).await;

    assert_error(
        &proxy.get("slow.local", "/").await,
        StatusCode::GATEWAY_TIMEOUT,
    );
    // Fast answers are not affected by the timeout.
    let resp = proxy.get("slow.local", "/fast").await;
    assert_eq!(resp.status, StatusCode::OK);

    let metrics = proxy.metrics().await;
    assert_eq!(
        metric_value(&metrics, "http_timeouts_total"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        metric_value(&metrics, "http_status_codes_total{code=\"504\"}"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(metric_value(&metrics, "http_errors_total"), Some(1.0));
    assert_eq!(
        metric_value(&metrics, "http_status_codes_total{code=\"200\"}"),
        Some(1.0)
    );
}

/// A backend that answers one request per connection and then closes it,
/// without saying `Connection: close` (as a backend whose keep-alive timeout
/// fires right after a response does). Counts the connections it accepted.
async fn closes_after_each_response(
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> std::net::SocketAddr {
    use tokio::io::AsyncWriteExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let answer: &[u8] = if head.starts_with(b"HEAD ") {
                    b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nx-backend: closer\r\n\r\n"
                } else {
                    b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nx-backend: closer\r\n\r\nok\n"
                };
                let _ = stream.write_all(answer).await;
                // Closed a moment later, while the proxy may be reusing it.
                tokio::time::sleep(Duration::from_millis(1)).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_closing_keep_alive_connections_causes_no_502() {
    let dir = tempfile::tempdir().unwrap();
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let addr = closes_after_each_response(connections.clone()).await;
    write(
        dir.path(),
        "closer.yaml",
        &docs(&[
            ingress(
                "default",
                "closer",
                "closer.local",
                &[("/", "Prefix", "closer")],
            ),
            backend_objects("default", "closer", &[addr]),
        ]),
    );
    let proxy = Proxy::start(dir.path(), &[]).await;

    // Back to back, so the proxy often picks a pooled connection the
    // backend has just closed. GET and HEAD are safe to send again.
    let mut failed = Vec::new();
    for i in 0..100 {
        let resp = if i % 10 == 9 {
            send(
                proxy.http_port,
                http::Request::head("/")
                    .header("host", "closer.local")
                    .body(http_body_util::Empty::<bytes::Bytes>::new())
                    .unwrap(),
            )
            .await
        } else {
            proxy.get("closer.local", &format!("/{i}")).await
        };
        if resp.status != StatusCode::OK {
            failed.push(format!("request {i}: {} {}", resp.status, resp.body.trim()));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of 100 failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
    assert!(connections.load(std::sync::atomic::Ordering::Relaxed) >= 100);
}

/// A listed endpoint whose pod is gone (connection refused) costs no
/// request: bodiless requests move on to another endpoint, whatever their
/// method. A request with a body cannot be sent twice and gets 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_endpoint_costs_no_bodiless_request() {
    let dir = tempfile::tempdir().unwrap();
    let alive = echo("alive").await;
    let objects = docs(&[
        ingress("default", "half", "half.local", &[("/", "Prefix", "half")]),
        service("default", "half"),
        slice("default", "half-dead", "half", closed_port()),
        slice("default", "half-alive", "half", alive.port()),
    ]);
    write(dir.path(), "half.yaml", &objects);
    let proxy = Proxy::start(dir.path(), &[]).await;

    for i in 0..20 {
        let resp = proxy.get("half.local", &format!("/get/{i}")).await;
        assert_eq!(resp.status, StatusCode::OK, "GET {i}: {}", resp.body);
        assert_eq!(resp.backend(), Some("alive"));
    }
    for i in 0..10 {
        let req = Request::post(format!("http://half.local/post/{i}"))
            .header("host", "half.local")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = send(proxy.http_port, req).await;
        assert_eq!(
            resp.status,
            StatusCode::OK,
            "bodiless POST {i}: {}",
            resp.body
        );
    }

    // A fresh proxy: bodies first.
    drop(proxy);
    let proxy = Proxy::start(dir.path(), &[]).await;
    // With a body, a request that meets the dead endpoint cannot be sent
    // again: it fails, until passive checks eject the endpoint.
    let mut failed = 0;
    for i in 0..20 {
        let req = Request::post(format!("http://half.local/body/{i}"))
            .header("host", "half.local")
            .body(full("payload"))
            .unwrap();
        let resp = send(proxy.http_port, req).await;
        if resp.status == StatusCode::BAD_GATEWAY {
            failed += 1;
        } else {
            assert_eq!(resp.status, StatusCode::OK);
        }
    }
    assert!(failed > 0, "requests with a body are never sent twice");
    assert!(
        failed <= 5,
        "the dead endpoint is ejected after 5 failures in a row, not {failed}"
    );
    assert_eq!(
        proxy
            .metric("backend_ejections_total{backend=\"default/half:80\"}")
            .await,
        Some(1.0)
    );
}
