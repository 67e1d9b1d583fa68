//! Custom error pages (`custom-http-errors`, `default-backend`) through the
//! real binary: a listed status replaced by the error Service's answer,
//! which gets ingress-nginx's headers with the right values; other
//! statuses untouched; an error Service that is down gives a prompt 502;
//! `default-backend` alone answers for a Service without endpoints; bad
//! codes and an unknown Service reject only their Ingress.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::Empty;
use hyper::body::Incoming;
use support::*;

/// What the error Service was asked.
type Seen = Arc<Mutex<Vec<(Method, String, HeaderMap)>>>;

const ERRORS: &str = "nginx.ingress.kubernetes.io/custom-http-errors";
const DEFAULT: &str = "nginx.ingress.kubernetes.io/default-backend";

/// The application: `/status/CODE` answers CODE with a body naming it, and
/// the request id it got in `x-seen-request-id`.
async fn app() -> SocketAddr {
    backend(|req: Request<Incoming>| async move {
        let code: u16 = req
            .uri()
            .path()
            .strip_prefix("/status/")
            .and_then(|c| c.parse().ok())
            .unwrap_or(200);
        let mut resp = Response::builder()
            .status(code)
            .header("content-type", "text/plain")
            .header("x-from", "app");
        if let Some(id) = req.headers().get("x-request-id") {
            resp = resp.header("x-seen-request-id", id);
        }
        resp.body(full(format!("app says {code}"))).unwrap()
    })
    .await
}

/// The error Service: records each request; with `X-Code` it answers that
/// status and a page naming it, without it (the fallback for a Service
/// without endpoints) 200 naming the path.
async fn error_service(seen: Seen) -> SocketAddr {
    backend(move |req: Request<Incoming>| {
        let seen = seen.clone();
        async move {
            let code = req
                .headers()
                .get("x-code")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u16>().ok());
            seen.lock().push((
                req.method().clone(),
                req.uri().to_string(),
                req.headers().clone(),
            ));
            let (status, body) = match code {
                Some(code) => (code, format!("custom page {code}")),
                None => (200, format!("fallback for {}", req.uri().path())),
            };
            Response::builder()
                .status(status)
                .header("content-type", "text/html")
                .header("x-from", "errors")
                .body(full(body))
                .unwrap()
        }
    })
    .await
}

fn manifests(dir: &std::path::Path, app: SocketAddr, errors: SocketAddr) {
    let parts = [
        annotated(
            "pages",
            "pages.local",
            "app",
            &[(ERRORS, "404,503"), (DEFAULT, "errors")],
        ),
        annotated(
            "down",
            "down.local",
            "app",
            &[(ERRORS, "404"), (DEFAULT, "dead")],
        ),
        annotated("empty", "empty.local", "nothing", &[(DEFAULT, "errors")]),
        annotated("own", "own.local", "app", &[(ERRORS, "404")]),
        annotated("plain", "plain.local", "app", &[]),
        annotated(
            "badcode",
            "badcode.local",
            "app",
            &[(ERRORS, "404,399"), (DEFAULT, "errors")],
        ),
        annotated(
            "nosvc",
            "nosvc.local",
            "app",
            &[(ERRORS, "404"), (DEFAULT, "missing")],
        ),
        backend_objects("default", "app", &[app]),
        backend_objects("default", "errors", &[errors]),
        // A Service whose only endpoint refuses connections.
        backend_objects(
            "default",
            "dead",
            &[SocketAddr::from(([127, 0, 0, 1], closed_port()))],
        ),
        // A Service without any endpoint.
        service("default", "nothing"),
    ];
    write(dir, "routes.yaml", &docs(&parts));
}

async fn ask(port: u16, method: &str, host: &str, path: &str) -> Resp {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", host)
        .header("accept", "application/json")
        .body(Empty::<Bytes>::new())
        .unwrap();
    send(port, req).await
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_statuses_get_the_error_services_page() {
    let dir = tempfile::tempdir().unwrap();
    let seen: Seen = Arc::default();
    manifests(dir.path(), app().await, error_service(seen.clone()).await);
    let proxy = Proxy::start(dir.path(), &[]).await;

    // (host, method, path, status, body, whether the error Service answered)
    let cases = [
        (
            "pages.local",
            "GET",
            "/status/404?q=1",
            404,
            "custom page 404",
            true,
        ),
        (
            "pages.local",
            "GET",
            "/status/503",
            503,
            "custom page 503",
            true,
        ),
        (
            "pages.local",
            "POST",
            "/status/404",
            404,
            "custom page 404",
            true,
        ),
        (
            "pages.local",
            "GET",
            "/status/500",
            500,
            "app says 500",
            false,
        ),
        (
            "pages.local",
            "GET",
            "/status/200",
            200,
            "app says 200",
            false,
        ),
        (
            "plain.local",
            "GET",
            "/status/404",
            404,
            "app says 404",
            false,
        ),
        // Without default-backend: the proxy's own page, not the app's body.
        (
            "own.local",
            "GET",
            "/status/404",
            404,
            "404 Not Found\n",
            false,
        ),
        (
            "own.local",
            "GET",
            "/status/503",
            503,
            "app says 503",
            false,
        ),
    ];
    for (host, method, path, status, body, replaced) in cases {
        seen.lock().clear();
        let resp = ask(proxy.http_port, method, host, path).await;
        let what = format!("{method} {host}{path}");
        assert_eq!(resp.status.as_u16(), status, "{what}: {}", resp.body);
        assert_eq!(resp.body, body, "{what}");
        let asked = seen.lock().clone();
        assert_eq!(asked.len(), usize::from(replaced), "{what}: {asked:?}");
        if !replaced {
            continue;
        }
        assert_eq!(header(&resp.headers, "x-from"), Some("errors"), "{what}");
        let (m, uri, h) = &asked[0];
        assert_eq!(*m, Method::GET, "{what}: asked with GET");
        assert_eq!(uri, "/", "{what}: asked for /");
        let code = status.to_string();
        let want = [
            ("x-code", code.as_str()),
            ("x-format", "application/json"),
            ("x-original-uri", path),
            ("x-namespace", "default"),
            ("x-ingress-name", "pages"),
            ("x-service-name", "app"),
            ("x-service-port", "80"),
            ("host", "pages.local"),
        ];
        for (name, value) in want {
            assert_eq!(header(h, name), Some(value), "{what}: {name} in {h:?}");
        }
        let id = header(h, "x-request-id").unwrap_or_default();
        assert!(id.len() >= 16, "{what}: X-Request-ID {id:?}");
        assert_eq!(h.get("content-length"), None, "{what}: no body sent");
    }

    // The X-Request-ID is the one the app got for the same request.
    seen.lock().clear();
    let resp = ask(proxy.http_port, "GET", "pages.local", "/status/200").await;
    let app_id = header(&resp.headers, "x-seen-request-id")
        .unwrap()
        .to_string();
    let req = Request::get("/status/404")
        .header("host", "pages.local")
        .header("x-request-id", &app_id)
        .body(Empty::<Bytes>::new())
        .unwrap();
    assert_eq!(send(proxy.http_port, req).await.status, 404);
    let asked = seen.lock().clone();
    assert_eq!(header(&asked[0].2, "x-request-id"), Some(app_id.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_or_silent_error_service_gives_a_prompt_proxy_error() {
    let dir = tempfile::tempdir().unwrap();
    manifests(dir.path(), app().await, error_service(Arc::default()).await);
    // An error Service that never answers.
    let silent = backend(|_req: Request<Incoming>| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Response::new(full(""))
    })
    .await;
    let extra = [
        annotated(
            "silent",
            "silent.local",
            "app",
            &[(ERRORS, "404"), (DEFAULT, "silent")],
        ),
        backend_objects("default", "silent", &[silent]),
    ];
    write(dir.path(), "silent.yaml", &docs(&extra));
    let proxy = Proxy::start(dir.path(), &["--request-timeout", "1s"]).await;
    // (host, status the client gets)
    for (host, want) in [
        ("down.local", StatusCode::BAD_GATEWAY),
        ("silent.local", StatusCode::GATEWAY_TIMEOUT),
    ] {
        let started = Instant::now();
        let resp = ask(proxy.http_port, "GET", host, "/status/404").await;
        assert_eq!(resp.status, want, "{host}: {}", resp.body);
        assert!(!resp.body.contains("app says"), "{host}: {}", resp.body);
        assert!(started.elapsed() < Duration::from_secs(5), "{host}");
    }
    // Not listed: untouched even though the error Service is down.
    let resp = ask(proxy.http_port, "GET", "down.local", "/status/200").await;
    assert_eq!(resp.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_backend_alone_answers_for_a_service_without_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let seen: Seen = Arc::default();
    manifests(dir.path(), app().await, error_service(seen.clone()).await);
    let proxy = Proxy::start(dir.path(), &[]).await;
    let resp = ask(proxy.http_port, "GET", "empty.local", "/some/page").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.body, "fallback for /some/page");
    let asked = seen.lock().clone();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].1, "/some/page", "the request goes as it came");
    assert_eq!(asked[0].2.get("x-code"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_codes_or_an_unknown_service_reject_only_their_ingress() {
    let dir = tempfile::tempdir().unwrap();
    manifests(dir.path(), app().await, error_service(Arc::default()).await);
    let proxy = Proxy::start(dir.path(), &[]).await;
    for (host, want) in [
        ("badcode.local", StatusCode::NOT_FOUND),
        ("nosvc.local", StatusCode::NOT_FOUND),
        ("pages.local", StatusCode::OK),
    ] {
        let resp = ask(proxy.http_port, "GET", host, "/status/200").await;
        assert_eq!(resp.status, want, "{host}: {}", resp.body);
    }
    let text = check_text(dir.path());
    for line in [
        "custom-http-errors: \"404,399\" has 399, which is not from 400 to 599",
        "default-backend: Service default/missing does not exist",
    ] {
        assert!(text.contains(line), "check does not say {line:?}:\n{text}");
    }
}
