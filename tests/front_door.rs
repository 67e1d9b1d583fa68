//! What the front door refuses or rewrites before anything is routed, seen
//! through the real binary with raw sockets and real clients: paths in
//! normal form over HTTP/1.1, h2c and h2; Host rules; CONNECT, TRACE and
//! bad escapes; forwarding headers from untrusted and trusted peers; the
//! request head limit; the `Server` header.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly

mod support;

use bytes::Bytes;
use http::{Request, StatusCode, Version};
use http_body_util::Empty;
use support::tls::{gen_cert, h2_connect, h2_send, tls_secret};
use support::*;

/// `public.local` exposes only Prefix `/public` (echo backend `public`);
/// `admin.local` routes `/` to the echo backend `admin`. Same Services as a
/// cluster where `/admin` must not be reachable through the public host.
async fn start(extra: &[&str]) -> (tempfile::TempDir, Proxy) {
    let dir = tempfile::tempdir().unwrap();
    let public = echo("public").await;
    let admin = echo("admin").await;
    let cert = gen_cert(&["public.local"]);
    // Served over HTTPS too (for h2), and over plain HTTP without a redirect.
    let public_ingress = ingress(
        "default",
        "public",
        "public.local",
        &[("/public", "Prefix", "public")],
    )
    .replace(
        "metadata:\n",
        "metadata:\n  annotations: {ruststrom.io/ssl-redirect: \"false\"}\n",
    ) + "  tls:\n  - hosts: [\"public.local\"]\n    secretName: public-tls\n";
    write(
        dir.path(),
        "routes.yaml",
        &docs(&[
            public_ingress,
            ingress(
                "default",
                "admin",
                "admin.local",
                &[("/", "Prefix", "admin")],
            ),
            backend_objects("default", "public", &[public]),
            backend_objects("default", "admin", &[admin]),
            tls_secret("default", "public-tls", &cert),
        ]),
    );
    let proxy = Proxy::start(dir.path(), extra).await;
    (dir, proxy)
}

/// The status line's code of a raw answer.
fn status_of(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"))
}

/// A raw HTTP/1.1 GET of `target` with `Host: public.local`.
async fn raw_get(port: u16, target: &str) -> String {
    raw(
        port,
        &format!("GET {target} HTTP/1.1\r\nHost: public.local\r\nConnection: close\r\n\r\n"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_are_routed_and_forwarded_in_normal_form_over_http1() {
    let (_dir, proxy) = start(&[]).await;
    let port = proxy.http_port;
    // Climbing out of /public: nginx answers 404 (no rule for /admin on this
    // host), and so does RustStrom; nothing reaches a backend.
    for target in [
        "/public/../admin/secret.txt",
        "/public/%2e%2e/admin/secret.txt",
        "/public/%2E%2e/admin/secret.txt",
        "/public/./../admin",
    ] {
        let answer = raw_get(port, target).await;
        assert_eq!(status_of(&answer), 404, "{target}: {answer}");
        assert!(!answer.contains("backend:"), "{target} reached a backend");
    }
    // An encoded slash hiding a dot segment, a climb above the root, NUL
    // and malformed escapes: 400.
    for target in [
        "/public/..%2fadmin/secret.txt",
        "/public/..%2Fadmin",
        "/public/%2e%2e%5cadmin",
        "/../etc/passwd",
        "/public/%00",
        "/public/%zz",
        "/public/%4",
    ] {
        let answer = raw_get(port, target).await;
        assert_eq!(status_of(&answer), 400, "{target}: {answer}");
        assert!(!answer.contains("backend:"), "{target} reached a backend");
    }
    // What is forwarded is the normal form it was routed on.
    for (target, forwarded) in [
        ("/public/./a/../b?x=/../y", "/public/b?x=/../y"),
        ("//public///a", "/public/a"),
        ("/public/%7euser/%41", "/public/~user/A"),
        ("/public/a%2fb", "/public/a%2Fb"),
        ("/x/../public/", "/public/"),
    ] {
        let answer = raw_get(port, target).await;
        assert_eq!(status_of(&answer), 200, "{target}: {answer}");
        assert!(
            answer.contains("backend: public") && answer.contains(&format!("path: {forwarded}\n")),
            "{target} should reach public as {forwarded}: {answer}"
        );
    }
    assert_eq!(
        proxy
            .metric("client_errors_total{reason=\"bad_path\"}")
            .await,
        Some(7.0)
    );
    // Refused paths are the client's fault, never a backend error.
    assert_eq!(proxy.metric("http_errors_total").await, Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_are_normalised_over_h2c_and_h2() {
    let (_dir, proxy) = start(&[]).await;
    let (mut h2c, _conn) = h2c(proxy.http_port).await;
    let mut h2 = h2_connect(proxy.https_port().await, "public.local").await;
    for (scheme, sender) in [("http", &mut h2c), ("https", &mut h2)] {
        for (path, status) in [
            ("/public/../admin/secret.txt", 404),
            ("/public/%2e%2e/admin/secret.txt", 404),
            ("/public/..%2fadmin/secret.txt", 400),
            ("/public/ok/./x", 200),
        ] {
            let req = Request::builder()
                .version(Version::HTTP_2)
                .uri(format!("{scheme}://public.local{path}"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            let resp = into_resp(h2_send(sender, req).await).await;
            assert_eq!(
                resp.status.as_u16(),
                status,
                "{scheme} {path}: {}",
                resp.body
            );
            if status == 200 {
                assert!(resp.body.contains("path: /public/ok/x\n"), "{}", resp.body);
            } else {
                assert!(!resp.body.contains("backend:"), "{scheme} {path}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_slashes_can_be_decoded_or_refused() {
    let (_dir, decode) = start(&["--encoded-slashes", "decode"]).await;
    // Decoded first, then resolved: out of /public, so no route.
    let answer = raw_get(decode.http_port, "/public/..%2fadmin").await;
    assert_eq!(status_of(&answer), 404, "{answer}");
    let answer = raw_get(decode.http_port, "/public/a%2fb").await;
    assert!(answer.contains("path: /public/a/b\n"), "{answer}");

    let (_dir, reject) = start(&["--encoded-slashes", "reject"]).await;
    let answer = raw_get(reject.http_port, "/public/a%2fb").await;
    assert_eq!(status_of(&answer), 400, "{answer}");
    let answer = raw_get(reject.http_port, "/public/a").await;
    assert_eq!(status_of(&answer), 200, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_header_rules() {
    let (_dir, proxy) = start(&[]).await;
    let port = proxy.http_port;
    for (what, request) in [
        (
            "two Host headers",
            "GET /public HTTP/1.1\r\nHost: public.local\r\nHost: admin.local\r\nConnection: close\r\n\r\n",
        ),
        (
            "two equal Host headers",
            "GET /public HTTP/1.1\r\nHost: public.local\r\nHost: public.local\r\nConnection: close\r\n\r\n",
        ),
        (
            "no Host in HTTP/1.1",
            "GET /public HTTP/1.1\r\nConnection: close\r\n\r\n",
        ),
        (
            "an empty Host",
            "GET /public HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n",
        ),
        (
            "a Host with a path in it",
            "GET /public HTTP/1.1\r\nHost: public.local/x\r\nConnection: close\r\n\r\n",
        ),
        (
            "a Host with user info",
            "GET /public HTTP/1.1\r\nHost: a@public.local\r\nConnection: close\r\n\r\n",
        ),
    ] {
        let answer = raw(port, request).await;
        assert_eq!(status_of(&answer), 400, "{what}: {answer}");
        assert!(!answer.contains("backend:"), "{what} reached a backend");
    }
    // HTTP/1.0 may leave Host out: routed on the rules without a host (none
    // here), so 404 rather than 400.
    let answer = raw(port, "GET /public HTTP/1.0\r\n\r\n").await;
    assert_eq!(status_of(&answer), 404, "{answer}");
    assert_eq!(
        proxy
            .metric("client_errors_total{reason=\"bad_request\"}")
            .await,
        Some(6.0)
    );

    // HTTP/2: a Host header that disagrees with :authority.
    let (mut h2c, _conn) = h2c(port).await;
    let req = |host: &str| {
        Request::builder()
            .version(Version::HTTP_2)
            .uri("http://public.local/public")
            .header("host", host)
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    let resp = into_resp(h2_send(&mut h2c, req("admin.local")).await).await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{}", resp.body);
    let resp = into_resp(h2_send(&mut h2c, req("PUBLIC.local")).await).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_and_trace_are_refused() {
    let (_dir, proxy) = start(&[]).await;
    let answer = raw(
        proxy.http_port,
        "CONNECT admin.local:443 HTTP/1.1\r\nHost: admin.local:443\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&answer), 405, "{answer}");
    assert!(answer.contains("allow: "), "{answer}");
    assert!(!answer.contains("backend:"), "{answer}");
    let answer = raw(
        proxy.http_port,
        "TRACE / HTTP/1.1\r\nHost: admin.local\r\nCookie: secret=1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&answer), 405, "{answer}");
    assert!(!answer.contains("secret"), "{answer}");
    assert_eq!(
        proxy.metric("client_errors_total{reason=\"method\"}").await,
        Some(2.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_are_believed_only_from_trusted_peers() {
    let spoofing = "GET / HTTP/1.1\r\nHost: admin.local\r\nX-Forwarded-For: 6.6.6.6\r\n\
                    Forwarded: for=6.6.6.6\r\nX-Request-Id: bad id\r\nConnection: close\r\n\r\n";
    let (_dir, untrusted) = start(&[]).await;
    let answer = raw(untrusted.http_port, spoofing).await;
    assert!(
        answer.contains("  x-forwarded-for: 127.0.0.1\n"),
        "{answer}"
    );
    assert!(!answer.contains("6.6.6.6"), "{answer}");
    assert!(!answer.contains("bad id"), "{answer}");

    let (_dir, trusted) = start(&["--trusted-proxies", "127.0.0.1"]).await;
    let answer = raw(trusted.http_port, spoofing).await;
    assert!(
        answer.contains("  x-forwarded-for: 6.6.6.6, 127.0.0.1\n"),
        "{answer}"
    );
    assert!(answer.contains("  forwarded: for=6.6.6.6\n"), "{answer}");
    assert!(answer.contains("  x-request-id: bad id\n"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_head_is_bounded_for_http1_and_http2() {
    let (_dir, proxy) = start(&["--max-request-header-size", "16KiB"]).await;
    let port = proxy.http_port;
    let big = "a".repeat(20 * 1024);
    let small = "a".repeat(8 * 1024);
    let answer = raw(
        port,
        &format!(
            "GET / HTTP/1.1\r\nHost: admin.local\r\nX-Big: {big}\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(
        status_of(&answer),
        431,
        "{}",
        &answer[..answer.len().min(200)]
    );
    let answer = raw(
        port,
        &format!(
            "GET / HTTP/1.1\r\nHost: admin.local\r\nX-Big: {small}\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(status_of(&answer), 200);
    // A head that hyper reads whole in one go past the limit (after a first
    // request on the same connection) is refused all the same.
    let answer = raw(
        port,
        &format!(
            "GET / HTTP/1.1\r\nHost: admin.local\r\n\r\n\
             GET / HTTP/1.1\r\nHost: admin.local\r\nX-Big: {big}\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(
        answer.matches("HTTP/1.1 200").count(),
        1,
        "{}",
        &answer[..answer.len().min(300)]
    );
    assert_eq!(
        answer.matches("HTTP/1.1 431").count(),
        1,
        "{}",
        &answer[..answer.len().min(300)]
    );

    let (mut h2c, _conn) = h2c(port).await;
    let req = |value: &str| {
        Request::builder()
            .version(Version::HTTP_2)
            .uri("http://admin.local/")
            .header("x-big", value)
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    let resp = into_resp(h2_send(&mut h2c, req(&big)).await).await;
    assert_eq!(resp.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let resp = into_resp(h2_send(&mut h2c, req(&small)).await).await;
    assert_eq!(resp.status, StatusCode::OK, "the connection survives");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_says_server_rust_strom_unless_turned_off() {
    let labelled = backend(|_req| async {
        http::Response::builder()
            .header("server", "Apache/2.4.1 (Unix)")
            .body(full("hi"))
            .unwrap()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "r.yaml",
        &docs(&[
            ingress("default", "srv", "srv.local", &[("/", "Prefix", "srv")]),
            backend_objects("default", "srv", &[labelled]),
        ]),
    );
    let proxy = Proxy::start(dir.path(), &[]).await;
    let resp = proxy.get("srv.local", "/").await;
    assert_eq!(
        resp.headers["server"], "rust-strom",
        "the backend's is replaced"
    );
    let resp = proxy.get("nowhere.local", "/").await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    assert_eq!(
        resp.headers["server"], "rust-strom",
        "the proxy's own answers too"
    );

    let quiet = Proxy::start(dir.path(), &["--server-header", "false"]).await;
    let resp = quiet.get("srv.local", "/").await;
    assert_eq!(resp.headers["server"], "Apache/2.4.1 (Unix)");
    let resp = quiet.get("nowhere.local", "/").await;
    assert!(!resp.headers.contains_key("server"));
}
