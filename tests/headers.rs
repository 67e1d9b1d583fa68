//! What crosses the proxy in headers: Host kept, X-Forwarded-* and
//! X-Real-IP set, X-Request-Id generated or kept, hop-by-hop headers dropped
//! both ways; and an HTTP/2 (h2c) client reaching an HTTP/1.1 backend,
//! trailers included when the client asks for them with `TE: trailers`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly

mod support;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use support::*;
use tokio::net::TcpStream;

async fn echo_proxy(host: &str) -> (tempfile::TempDir, Proxy) {
    let dir = tempfile::tempdir().unwrap();
    let addr = echo("hdr").await;
    write(
        dir.path(),
        "hdr.yaml",
        &docs(&[
            ingress("default", "hdr", host, &[("/", "Prefix", "hdr")]),
            backend_objects("default", "hdr", &[addr]),
        ]),
    );
    let proxy = Proxy::start(dir.path(), &[]).await;
    (dir, proxy)
}

fn is_request_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_reach_the_backend() {
    let (_dir, proxy) = echo_proxy("hdr.local").await;
    let port = proxy.http_port.to_string();

    let resp = send(
        proxy.http_port,
        Request::builder()
            .uri("/who")
            .header("host", "Hdr.Local:8080")
            .header("x-forwarded-for", "1.2.3.4")
            .header("x-real-ip", "6.6.6.6")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-port", "1")
            .header("x-forwarded-host", "spoofed.example")
            .header("x-app", "kept")
            .body(Empty::<Bytes>::new())
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    // Host exactly as the client sent it.
    assert_eq!(resp.echoed_host(), Some("Hdr.Local:8080"), "{}", resp.body);
    assert_eq!(resp.echoed_all("host"), ["Hdr.Local:8080"], "{}", resp.body);
    // Not a trusted proxy: its X-Forwarded-For is replaced, not appended to
    // (tests/front_door.rs has the trusted case).
    assert_eq!(
        resp.echoed_all("x-forwarded-for"),
        ["127.0.0.1"],
        "{}",
        resp.body
    );
    assert_eq!(resp.echoed_all("x-forwarded-proto"), ["http"]);
    assert_eq!(resp.echoed_all("x-forwarded-host"), ["Hdr.Local:8080"]);
    assert_eq!(resp.echoed_all("x-forwarded-port"), [port.as_str()]);
    assert_eq!(resp.echoed_all("x-real-ip"), ["127.0.0.1"]);
    assert_eq!(resp.echoed("x-app"), Some("kept"));
    let ids = resp.echoed_all("x-request-id");
    assert_eq!(ids.len(), 1, "{}", resp.body);
    assert!(is_request_id(ids[0]), "{}", ids[0]);

    // Without an incoming X-Forwarded-For: just the client address. Each
    // request gets its own id.
    let again = proxy.get("hdr.local", "/").await;
    assert_eq!(again.echoed_all("x-forwarded-for"), ["127.0.0.1"]);
    let id2 = again.echoed("x-request-id").unwrap();
    assert!(is_request_id(id2));
    assert_ne!(ids[0], id2);

    // A request id the client sent is kept.
    let resp = send(
        proxy.http_port,
        Request::builder()
            .uri("/")
            .header("host", "hdr.local")
            .header("x-request-id", "trace-me-123")
            .body(Empty::<Bytes>::new())
            .unwrap(),
    )
    .await;
    assert_eq!(resp.echoed_all("x-request-id"), ["trace-me-123"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_request_headers_are_removed() {
    let (_dir, proxy) = echo_proxy("hdr.local").await;
    let answer = raw(
        proxy.http_port,
        "GET /hop HTTP/1.1\r\n\
         Host: hdr.local\r\n\
         Connection: x-custom, close\r\n\
         X-Custom: secret\r\n\
         Keep-Alive: timeout=5\r\n\
         Proxy-Authorization: Basic c2VjcmV0\r\n\
         Proxy-Connection: keep-alive\r\n\
         TE: trailers\r\n\
         X-Kept: yes\r\n\
         \r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let body = answer.split_once("\r\n\r\n").unwrap().1;
    let seen: Vec<String> = body
        .lines()
        .filter_map(|l| l.strip_prefix("  "))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, _)| k.to_string())
        .collect();
    for gone in [
        "connection",
        "x-custom",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
    ] {
        assert!(
            !seen.iter().any(|k| k == gone),
            "{gone} reached the backend:\n{body}"
        );
    }
    assert!(seen.iter().any(|k| k == "x-kept"), "{body}");
    assert!(body.contains("path: /hop\n"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_response_headers_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let hop = backend(|_req| async {
        Response::builder()
            .header("connection", "x-hop")
            .header("x-hop", "1")
            .header("keep-alive", "timeout=5")
            .header("proxy-authenticate", "Basic")
            .header("x-kept", "yes")
            .body(full("hop\n"))
            .unwrap()
    })
    .await;
    write(
        dir.path(),
        "hop.yaml",
        &docs(&[
            ingress("default", "hop", "hop.local", &[("/", "Prefix", "hop")]),
            backend_objects("default", "hop", &[hop]),
        ]),
    );
    let proxy = Proxy::start(dir.path(), &[]).await;

    let resp = proxy.get("hop.local", "/").await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.body, "hop\n");
    for gone in ["connection", "x-hop", "keep-alive", "proxy-authenticate"] {
        assert!(
            !resp.headers.contains_key(gone),
            "{gone} reached the client: {:?}",
            resp.headers
        );
    }
    assert_eq!(resp.headers["x-kept"], "yes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_client_reaches_http1_backend() {
    let (_dir, proxy) = echo_proxy("h2.local").await;
    let stream = TcpStream::connect(("127.0.0.1", proxy.http_port))
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(executor(), TokioIo::new(stream))
            .await
            .expect("h2c handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });

    for path in ["/one", "/two?x=1"] {
        // :authority carries the host in HTTP/2.
        let req = Request::builder()
            .version(Version::HTTP_2)
            .uri(format!("http://h2.local{path}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = tokio::time::timeout(DEADLINE, sender.send_request(req))
            .await
            .expect("h2 response in time")
            .expect("h2 response");
        let resp = into_resp(resp).await;
        assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
        assert_eq!(resp.version, Version::HTTP_2);
        assert_eq!(resp.backend(), Some("hdr"));
        assert_eq!(resp.echoed_host(), Some("h2.local"), "{}", resp.body);
        assert!(
            resp.body.contains(&format!("path: {path}\n")),
            "{}",
            resp.body
        );
        assert_eq!(resp.echoed_all("x-forwarded-host"), ["h2.local"]);
        assert_eq!(resp.echoed_all("x-forwarded-proto"), ["http"]);
    }

    // An unknown :authority is a 404 on HTTP/2 as well.
    let req = Request::builder()
        .version(Version::HTTP_2)
        .uri("http://nobody.local/")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = into_resp(sender.send_request(req).await.unwrap()).await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    assert!(!resp.body.trim().is_empty());
}

/// gRPC over h2c: a client sending `TE: trailers` gets the HTTP/1.1
/// backend's chunked trailers, because the backend is asked for them
/// (hyper's HTTP/1.1 server, like many, sends none otherwise). A client
/// not asking gets the body alone, and the backend is not asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_trailers_only_when_the_client_sends_te_trailers() {
    use std::convert::Infallible;
    use std::sync::Arc;

    use parking_lot::Mutex;

    use http::{HeaderMap, HeaderValue};
    use http_body_util::{BodyExt, StreamBody};
    use hyper::body::Frame;

    // The `te` header each request reached the backend with.
    let seen_te = Arc::new(Mutex::new(Vec::<Option<String>>::new()));
    let seen = seen_te.clone();
    let grpc = backend(move |req| {
        let te = req
            .headers()
            .get("te")
            .map(|v| v.to_str().unwrap().to_string());
        seen.lock().push(te);
        async {
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from_static("0"));
            let frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![
                Ok(Frame::data(Bytes::from_static(b"payload"))),
                Ok(Frame::trailers(trailers)),
            ];
            Response::builder()
                .header("trailer", "grpc-status")
                .body(StreamBody::new(futures::stream::iter(frames)).boxed())
                .unwrap()
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "grpc.yaml",
        &docs(&[
            ingress("default", "grpc", "grpc.local", &[("/", "Prefix", "grpc")]),
            backend_objects("default", "grpc", &[grpc]),
        ]),
    );
    let proxy = Proxy::start(dir.path(), &[]).await;
    let stream = TcpStream::connect(("127.0.0.1", proxy.http_port))
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(executor(), TokioIo::new(stream))
            .await
            .expect("h2c handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });

    for asks in [true, false] {
        let mut req = Request::builder()
            .version(Version::HTTP_2)
            .uri("http://grpc.local/pkg.Service/Method");
        if asks {
            req = req.header("te", "trailers");
        }
        let resp = tokio::time::timeout(
            DEADLINE,
            sender.send_request(req.body(Empty::<Bytes>::new()).unwrap()),
        )
        .await
        .expect("h2 response in time")
        .expect("h2 response");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.version(), Version::HTTP_2);
        let collected = tokio::time::timeout(DEADLINE, resp.into_body().collect())
            .await
            .expect("body in time")
            .expect("body");
        let trailers = collected.trailers().cloned();
        assert_eq!(collected.to_bytes(), "payload", "asks: {asks}");
        if asks {
            let trailers = trailers.expect("trailers over h2c");
            assert_eq!(trailers["grpc-status"], "0");
        } else {
            assert_eq!(trailers, None, "trailers nobody asked for");
        }
    }
    assert_eq!(
        *seen_te.lock(),
        [Some("trailers".to_string()), None],
        "what the backend was asked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_target_wins_over_host() {
    let (_dir, proxy) = echo_proxy("abs.local").await;
    // RFC 9112 3.2.2: the authority of an absolute-form target replaces Host.
    let answer = raw(
        proxy.http_port,
        "GET http://abs.local/abs?q=1 HTTP/1.1\r\nHost: other.local\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\nhost: abs.local\n"), "{answer}");
    assert!(answer.contains("\npath: /abs?q=1\n"), "{answer}");
    // And the other way round: no route for the authority, Host ignored.
    let answer = raw(
        proxy.http_port,
        "GET http://other.local/ HTTP/1.1\r\nHost: abs.local\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
}
