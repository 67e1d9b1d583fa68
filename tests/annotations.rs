//! Ingress annotations through the real binary in standalone mode: refused
//! and malformed ones take their Ingress out while the others serve; source
//! ranges answer 403 by the client's address (the peer's, or a trusted
//! proxy's `X-Forwarded-For`); `proxy-body-size` answers 413 by
//! `Content-Length` and while a chunked body streams.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly

mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use support::*;

const NGINX: &str = "nginx.ingress.kubernetes.io";

fn manifests(dir: &std::path::Path, web: std::net::SocketAddr) {
    let ingresses = [
        annotated("open", "open.local", "web", &[]),
        annotated(
            "loopback",
            "loopback.local",
            "web",
            &[(
                &format!("{NGINX}/whitelist-source-range"),
                "127.0.0.1/32, 192.0.2.0/24",
            )],
        ),
        annotated(
            "ten",
            "ten.local",
            "web",
            &[(&format!("{NGINX}/allowlist-source-range"), "10.0.0.0/8")],
        ),
        annotated(
            "denied",
            "denied.local",
            "web",
            &[(&format!("{NGINX}/denylist-source-range"), "127.0.0.0/8")],
        ),
        // ruststrom.io/ wins over nginx's prefix.
        annotated(
            "ours",
            "ours.local",
            "web",
            &[
                (&format!("{NGINX}/whitelist-source-range"), "10.0.0.0/8"),
                ("ruststrom.io/whitelist-source-range", "127.0.0.1"),
            ],
        ),
        annotated(
            "sso",
            "sso.local",
            "web",
            &[(&format!("{NGINX}/auth-snippet"), "deny all;")],
        ),
        annotated(
            "snippet",
            "snippet.local",
            "web",
            &[(&format!("{NGINX}/configuration-snippet"), "deny all;")],
        ),
        annotated(
            "typo",
            "typo.local",
            "web",
            &[("ruststrom.io/whitelist-source-rang", "127.0.0.1")],
        ),
        annotated(
            "bad",
            "bad.local",
            "web",
            &[(&format!("{NGINX}/whitelist-source-range"), "127.0.0.1/40")],
        ),
        annotated(
            "tuned",
            "tuned.local",
            "web",
            &[(&format!("{NGINX}/proxy-buffer-size"), "8k")],
        ),
    ];
    let mut parts: Vec<String> = ingresses.to_vec();
    parts.push(backend_objects("default", "web", &[web]));
    write(dir, "routes.yaml", &docs(&parts));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_and_malformed_annotations_take_out_only_their_ingress() {
    let dir = tempfile::tempdir().unwrap();
    manifests(dir.path(), echo("web").await);
    let proxy = Proxy::start(dir.path(), &[]).await;
    // (host, status)
    let cases = [
        ("open.local", StatusCode::OK),
        ("tuned.local", StatusCode::OK),
        ("sso.local", StatusCode::NOT_FOUND),
        ("snippet.local", StatusCode::NOT_FOUND),
        ("typo.local", StatusCode::NOT_FOUND),
        ("bad.local", StatusCode::NOT_FOUND),
    ];
    for (host, want) in cases {
        let resp = get(proxy.http_port, host, "/").await;
        assert_eq!(resp.status, want, "{host}: {}", resp.body);
    }

    let text = check_text(dir.path());
    for line in [
        "nginx.ingress.kubernetes.io/auth-snippet is refused",
        "nginx.ingress.kubernetes.io/configuration-snippet is refused",
        "ruststrom.io/whitelist-source-rang is unknown",
        "nginx.ingress.kubernetes.io/whitelist-source-range: \"127.0.0.1/40\"",
        "nginx.ingress.kubernetes.io/proxy-buffer-size has no effect here",
    ] {
        assert!(text.contains(line), "check does not say {line:?}:\n{text}");
    }
}

/// GET with `X-Forwarded-For` values, one header line each.
async fn get_from(port: u16, host: &str, xff: &[&str]) -> StatusCode {
    let mut req = Request::get("/").header("host", host);
    for v in xff {
        req = req.header("x-forwarded-for", *v);
    }
    send(
        port,
        req.body(http_body_util::Empty::<Bytes>::new()).unwrap(),
    )
    .await
    .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_ranges_answer_403_by_the_client_address() {
    let dir = tempfile::tempdir().unwrap();
    manifests(dir.path(), echo("web").await);
    let plain = Proxy::start(dir.path(), &[]).await;
    let behind = Proxy::start(dir.path(), &["--trusted-proxies", "127.0.0.1/32"]).await;
    const OK: StatusCode = StatusCode::OK;
    const NO: StatusCode = StatusCode::FORBIDDEN;
    // (host, X-Forwarded-For lines, status from an untrusted peer, status
    // through a trusted proxy); the peer is always 127.0.0.1.
    let cases: &[(&str, &[&str], StatusCode, StatusCode)] = &[
        ("open.local", &[], OK, OK),
        ("loopback.local", &[], OK, OK),
        ("ten.local", &[], NO, NO),
        ("denied.local", &[], NO, NO),
        ("ours.local", &[], OK, OK),
        // A client cannot claim an address, but a trusted proxy can.
        ("ten.local", &["10.1.2.3"], NO, OK),
        ("loopback.local", &["198.51.100.7"], OK, NO),
        ("loopback.local", &["192.0.2.55"], OK, OK),
        ("denied.local", &["203.0.113.9"], NO, OK),
        // The right-most address not itself a trusted proxy.
        ("ten.local", &["203.0.113.9, 10.1.2.3"], NO, OK),
        ("ten.local", &["10.1.2.3, 203.0.113.9"], NO, NO),
        ("ten.local", &["10.1.2.3", "127.0.0.1"], NO, OK),
        // What cannot be read is no address: refused.
        ("loopback.local", &["garbage"], OK, NO),
    ];
    for (host, xff, untrusted, trusted) in cases {
        assert_eq!(
            get_from(plain.http_port, host, xff).await,
            *untrusted,
            "untrusted {host} {xff:?}"
        );
        assert_eq!(
            get_from(behind.http_port, host, xff).await,
            *trusted,
            "trusted {host} {xff:?}"
        );
    }
    let refused = plain
        .metric("client_errors_total{reason=\"source_range\"}")
        .await
        .unwrap_or(0.0);
    assert!(refused >= 5.0, "{refused}");
}

/// A chunked body of `chunks` pieces of `size` bytes.
fn chunked(
    chunks: usize,
    size: usize,
) -> StreamBody<impl futures::Stream<Item = Result<Frame<Bytes>, Infallible>>> {
    StreamBody::new(futures::stream::iter((0..chunks).map(move |_| {
        Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'x'; size])))
    })))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_body_size_answers_413_by_length_and_while_streaming() {
    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    // Counts the requests that reach it, and reads their bodies whole.
    let web = backend(move |req| {
        let counter = counter.clone();
        async move {
            let len = req.into_body().collect().await.map(|b| b.to_bytes().len());
            counter.fetch_add(1, Ordering::SeqCst);
            match len {
                Ok(len) => http::Response::new(full(format!("body: {len} bytes\n"))),
                Err(_) => http::Response::new(full("broken body\n")),
            }
        }
    })
    .await;
    let limited = annotated(
        "limited",
        "up.local",
        "web",
        &[(&format!("{NGINX}/proxy-body-size"), "1k")],
    );
    // Another Ingress adds a path to the same host: no limit there.
    let free = ingress("default", "free", "up.local", &[("/free", "Prefix", "web")]);
    let zero = annotated(
        "zero",
        "zero.local",
        "web",
        &[(&format!("{NGINX}/proxy-body-size"), "0")],
    );
    write(
        dir.path(),
        "routes.yaml",
        &docs(&[
            limited,
            free,
            zero,
            backend_objects("default", "web", &[web]),
        ]),
    );
    let proxy = Proxy::start(dir.path(), &[]).await;

    // (path, host, length or None for chunked pieces of 256 bytes, status,
    // whether the backend sees it)
    let cases: &[(&str, &str, usize, bool, StatusCode, bool)] = &[
        ("/", "up.local", 1024, true, StatusCode::OK, true),
        (
            "/",
            "up.local",
            1025,
            true,
            StatusCode::PAYLOAD_TOO_LARGE,
            false,
        ),
        ("/", "up.local", 4 * 256, false, StatusCode::OK, true),
        (
            "/",
            "up.local",
            16 * 256,
            false,
            StatusCode::PAYLOAD_TOO_LARGE,
            true,
        ),
        ("/free", "up.local", 4096, true, StatusCode::OK, true),
        ("/free", "up.local", 16 * 256, false, StatusCode::OK, true),
        ("/", "zero.local", 8192, true, StatusCode::OK, true),
    ];
    for &(path, host, size, with_length, want, reaches) in cases {
        let before = seen.load(Ordering::SeqCst);
        let req = Request::post(path).header("host", host);
        let resp = if with_length {
            send(
                proxy.http_port,
                req.body(Full::new(Bytes::from(vec![b'x'; size]))).unwrap(),
            )
            .await
        } else {
            send(proxy.http_port, req.body(chunked(size / 256, 256)).unwrap()).await
        };
        assert_eq!(
            resp.status, want,
            "{host}{path} {size} bytes (length: {with_length}): {}",
            resp.body
        );
        if want == StatusCode::OK {
            assert_eq!(resp.body, format!("body: {size} bytes\n"));
        }
        if !reaches {
            assert_eq!(
                seen.load(Ordering::SeqCst),
                before,
                "{host}{path} {size} reached the backend"
            );
        }
    }
    // A declared length over the limit is answered at once, before any of
    // the body is sent: nothing waits for it.
    let answer = raw(
        proxy.http_port,
        "POST / HTTP/1.1\r\nHost: up.local\r\nContent-Length: 2000\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    // HTTP/2 (h2c) without a length: counted while its DATA frames stream.
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", proxy.http_port))
        .await
        .unwrap();
    let (mut h2c, conn) =
        hyper::client::conn::http2::handshake(executor(), hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    for (pieces, want) in [(2, StatusCode::OK), (16, StatusCode::PAYLOAD_TOO_LARGE)] {
        let req = Request::post("http://up.local/")
            .version(http::Version::HTTP_2)
            .body(chunked(pieces, 256))
            .unwrap();
        let resp = tokio::time::timeout(DEADLINE, h2c.send_request(req))
            .await
            .unwrap()
            .unwrap();
        let resp = into_resp(resp).await;
        assert_eq!(resp.status, want, "h2c {pieces} x 256 bytes: {}", resp.body);
    }
    let too_large = proxy
        .metric("client_errors_total{reason=\"body_too_large\"}")
        .await
        .unwrap_or(0.0);
    assert_eq!(too_large, 4.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_answer_instead_of_the_backend() {
    let dir = tempfile::tempdir().unwrap();
    let url = "https://example.com/new?from=old";
    let n = |name: &str| format!("{NGINX}/{name}");
    let parts = vec![
        annotated(
            "perm",
            "perm.local",
            "web",
            &[(&n("permanent-redirect"), url)],
        ),
        annotated(
            "perm308",
            "perm308.local",
            "web",
            &[
                (&n("permanent-redirect"), url),
                (&n("permanent-redirect-code"), "308"),
            ],
        ),
        annotated(
            "temp",
            "temp.local",
            "web",
            &[(&n("temporal-redirect"), url)],
        ),
        annotated(
            "temp307",
            "temp307.local",
            "web",
            &[
                (&n("temporal-redirect"), url),
                (&n("temporal-redirect-code"), "307"),
            ],
        ),
        annotated("root", "root.local", "web", &[(&n("app-root"), "/app")]),
        annotated(
            "www",
            "www.site.local",
            "web",
            &[(&n("from-to-www-redirect"), "true")],
        ),
        annotated(
            "bare",
            "shop.local",
            "web",
            &[(&n("from-to-www-redirect"), "true")],
        ),
        // Has rules of its own: served, not redirected.
        annotated(
            "taken",
            "taken.local",
            "web",
            &[(&n("from-to-www-redirect"), "true")],
        ),
        annotated("owner", "www.taken.local", "web", &[]),
        // As in nginx, the redirect comes before the access check.
        annotated(
            "closed",
            "closed.local",
            "web",
            &[
                (&n("permanent-redirect"), url),
                (&n("whitelist-source-range"), "10.0.0.0/8"),
            ],
        ),
        backend_objects("default", "web", &[echo("web").await]),
    ];
    write(dir.path(), "routes.yaml", &docs(&parts));
    let proxy = Proxy::start(dir.path(), &[]).await;
    let port = proxy.http_port;
    let root = format!("http://root.local:{port}/app");
    let site = format!("http://www.site.local:{port}/a/?q=1");
    let shop = format!("http://shop.local:{port}/");
    // (host, path, status, Location)
    let cases: &[(&str, &str, u16, Option<&str>)] = &[
        ("perm.local", "/any/path?q=1", 301, Some(url)),
        ("perm308.local", "/", 308, Some(url)),
        ("temp.local", "/x", 302, Some(url)),
        ("temp307.local", "/x", 307, Some(url)),
        ("root.local", "/", 302, Some(&root)),
        ("root.local", "/?q=1", 302, Some(&root)),
        ("root.local", "/app", 200, None),
        ("root.local", "/other", 200, None),
        ("closed.local", "/", 301, Some(url)),
        ("site.local", "/a/?q=1", 308, Some(&site)),
        ("www.shop.local", "/", 308, Some(&shop)),
        ("www.site.local", "/", 200, None),
        ("shop.local", "/", 200, None),
        ("www.taken.local", "/", 200, None),
    ];
    for &(host, path, status, location) in cases {
        let resp = get(port, &format!("{host}:{port}"), path).await;
        assert_eq!(resp.status.as_u16(), status, "{host}{path}: {}", resp.body);
        let got = resp.headers.get("location").map(|v| v.to_str().unwrap());
        assert_eq!(got, location, "{host}{path}");
        if location.is_none() {
            assert_eq!(resp.backend(), Some("web"), "{host}{path}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_annotations_reach_the_backend_and_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let n = |name: &str| format!("{NGINX}/{name}");
    let parts = vec![
        annotated(
            "vhost",
            "vhost.local",
            "web",
            &[
                (&n("upstream-vhost"), "internal.example.com"),
                (&n("x-forwarded-prefix"), "/shop"),
            ],
        ),
        annotated(
            "edits",
            "edits.local",
            "web",
            &[
                (
                    "ruststrom.io/request-headers",
                    r#"{\"set\": {\"X-Env\": \"prod\"}, \"remove\": [\"X-Debug\"]}"#,
                ),
                (
                    "ruststrom.io/response-headers",
                    r#"{\"set\": {\"Cache-Control\": \"no-store\"}, \"remove\": [\"X-Backend-Secret\"]}"#,
                ),
            ],
        ),
        annotated("plain", "plain.local", "web", &[]),
        annotated(
            "custom",
            "custom.local",
            "web",
            &[
                (&n("custom-headers"), "security"),
                // Applied after custom-headers: it wins on the same name.
                (
                    "ruststrom.io/response-headers",
                    r#"{\"set\": {\"X-Frame-Options\": \"SAMEORIGIN\"}}"#,
                ),
            ],
        ),
        // A ConfigMap that is missing, or has a header nginx refuses too:
        // those Ingresses are not served.
        annotated(
            "missing",
            "missing.local",
            "web",
            &[(&n("custom-headers"), "nowhere")],
        ),
        annotated(
            "crlf",
            "crlf.local",
            "web",
            &[(&n("custom-headers"), "default/bad")],
        ),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: security, namespace: default}\n\
         data:\n  X-Frame-Options: DENY\n  Content-Security-Policy: \"default-src 'self'\"\n"
            .to_string(),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad, namespace: default}\n\
         data:\n  X-Bad: \"a\\u0001b\"\n"
            .to_string(),
        backend_objects("default", "web", &[web_with_secret().await]),
    ];
    write(dir.path(), "routes.yaml", &docs(&parts));
    let proxy = Proxy::start(dir.path(), &[]).await;
    let port = proxy.http_port;
    let send_with = |host: &'static str| async move {
        let req = Request::get("/")
            .header("host", host)
            .header("x-debug", "1")
            .header("x-forwarded-prefix", "/client")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        send(port, req).await
    };

    let resp = send_with("vhost.local").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(
        resp.echoed("host"),
        Some("internal.example.com"),
        "{}",
        resp.body
    );
    assert_eq!(
        resp.echoed("x-forwarded-host"),
        Some("vhost.local"),
        "{}",
        resp.body
    );
    assert_eq!(
        resp.echoed("x-forwarded-prefix"),
        Some("/shop"),
        "{}",
        resp.body
    );
    assert!(resp.headers.contains_key("x-backend-secret"));

    let resp = send_with("edits.local").await;
    assert_eq!(resp.echoed("x-env"), Some("prod"), "{}", resp.body);
    assert_eq!(resp.echoed("x-debug"), None, "{}", resp.body);
    assert_eq!(resp.headers.get("cache-control").unwrap(), "no-store");
    assert!(!resp.headers.contains_key("x-backend-secret"));

    // Without annotations, what the client sent passes as it came.
    let resp = send_with("plain.local").await;
    assert_eq!(resp.echoed("host"), Some("plain.local"), "{}", resp.body);
    assert_eq!(resp.echoed("x-debug"), Some("1"), "{}", resp.body);
    assert_eq!(
        resp.echoed("x-forwarded-prefix"),
        Some("/client"),
        "{}",
        resp.body
    );
    assert!(resp.headers.get("cache-control").is_none());

    let resp = send_with("custom.local").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(
        resp.headers["content-security-policy"],
        "default-src 'self'"
    );
    assert_eq!(resp.headers["x-frame-options"], "SAMEORIGIN");
    for host in ["missing.local", "crlf.local"] {
        assert_eq!(
            send_with(host).await.status,
            StatusCode::NOT_FOUND,
            "{host}"
        );
    }
    let out = check_text(dir.path());
    assert!(out.contains("ConfigMap default/nowhere not found"), "{out}");
    assert!(
        out.contains("the value of \"X-Bad\" is not printable ASCII"),
        "{out}"
    );
}

/// An echo backend (header lines as `  name: value`) that also answers with
/// an `X-Backend-Secret` header.
async fn web_with_secret() -> std::net::SocketAddr {
    backend(|req| async move {
        let mut text = String::from("backend: web\nheaders:\n");
        for (name, value) in req.headers() {
            text.push_str(&format!("  {name}: {}\n", value.to_str().unwrap_or("?")));
        }
        http::Response::builder()
            .header("x-backend", "web")
            .header("x-backend-secret", "42")
            .body(full(text))
            .unwrap()
    })
    .await
}

/// Entries written by `htpasswd` (apache2-utils: `-B`, `-m`, `-s`) and
/// `openssl passwd` (`-5`, `-6`, `-1`): (user, password, entry).
const HTPASSWD: &[(&str, &str, &str)] = &[
    (
        "alice",
        "wonder land",
        "alice:$2y$05$//La3k/YeMkHf2J.bmexHeTWDdwoYYJRFBIH4sT97UpUYK4UUQrR.",
    ),
    (
        "bob",
        "builder:42",
        "bob:$apr1$MuCUH5/h$eRVXIKzUfzFlPKtCXCkAl/",
    ),
    ("carol", "s3cret", "carol:{SHA}/vNB+F2HQ559kaLUZbmHHvZrXpg="),
    (
        "dave",
        "pa55 word",
        "dave:$5$saltsalt$/bz2iOIGpvZ.73pJAwhLFkVraT1uCV0m/AgIwg.qmz4",
    ),
    (
        "erin",
        "hunter2",
        "erin:$6$b51MEpwWwClkNyXy$pmMfC.HdqzVwheppBU9knfaaB/8mnF25pMqKx9yjdFdLlKuFkKm.UzwGVqate81IhuPTZBP2uqBLNq20znZkx/",
    ),
    (
        "frank",
        "md5crypt",
        "frank:$1$mTTGowTs$PMp57rfIqLM8O9hlHbY480",
    ),
];

/// `Authorization: Basic` for `user:password`.
fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    let raw = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_lets_in_the_users_of_its_secret_only() {
    let dir = tempfile::tempdir().unwrap();
    let n = |name: &str| format!("{NGINX}/{name}");
    let file: String = HTPASSWD
        .iter()
        .map(|(_, _, e)| format!("    {e}\n"))
        .collect();
    let file_secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: users\n  namespace: default\nstringData:\n  auth: |\n{file}"
    );
    let map_secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: map\n  namespace: default\nstringData:\n  carol: \"{SHA}/vNB+F2HQ559kaLUZbmHHvZrXpg=\"\n".to_string();
    let parts = vec![
        file_secret,
        map_secret,
        annotated(
            "file",
            "file.local",
            "web",
            &[
                (&n("auth-type"), "basic"),
                (&n("auth-secret"), "users"),
                (&n("auth-realm"), "Staff only"),
            ],
        ),
        annotated(
            "map",
            "map.local",
            "web",
            &[
                (&n("auth-type"), "basic"),
                (&n("auth-secret"), "map"),
                (&n("auth-secret-type"), "auth-map"),
            ],
        ),
        annotated("open", "open.local", "web", &[]),
        backend_objects("default", "web", &[echo("web").await]),
    ];
    write(dir.path(), "routes.yaml", &docs(&parts));
    let proxy = Proxy::start(dir.path(), &[]).await;
    let ask = |host: &'static str, authorization: Option<String>| {
        let port = proxy.http_port;
        async move {
            let mut req = Request::get("/").header("host", host);
            if let Some(value) = authorization {
                req = req.header("authorization", value);
            }
            send(
                port,
                req.body(http_body_util::Empty::<Bytes>::new()).unwrap(),
            )
            .await
        }
    };
    for (user, password, _) in HTPASSWD {
        let resp = ask("file.local", Some(basic(user, password))).await;
        assert_eq!(resp.status, StatusCode::OK, "{user}: {}", resp.body);
        let resp = ask("file.local", Some(basic(user, "wrong"))).await;
        assert_eq!(
            resp.status,
            StatusCode::UNAUTHORIZED,
            "{user} with a wrong password"
        );
    }
    let refused = [
        None,
        Some(basic("mallory", "wonder land")),
        Some(basic("alice", "")),
        Some("Basic !!!".to_string()),
        Some("Bearer abc".to_string()),
    ];
    for authorization in refused {
        let resp = ask("file.local", authorization.clone()).await;
        assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{authorization:?}");
        assert_eq!(
            resp.headers.get("www-authenticate").unwrap(),
            "Basic realm=\"Staff only\""
        );
    }
    assert_eq!(
        ask("map.local", Some(basic("carol", "s3cret")))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        ask("map.local", Some(basic("alice", "wonder land")))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(ask("open.local", None).await.status, StatusCode::OK);
    // Credentials never reach the logs.
    let logs = proxy.stderr().await;
    assert!(
        !logs.contains("wonder land") && !logs.contains("s3cret"),
        "{logs}"
    );
}

/// Runs a tool that writes a password hash; the test fails (never skips)
/// when it is missing: `scripts/test` installs it.
fn hash_with(program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("{program} not found ({e}): scripts/test installs apache2-utils and openssl")
        });
    assert!(out.status.success(), "{program} {args:?} failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

// Entries made now, with fresh salts, by the tools people use: htpasswd
// (bcrypt, apr1-MD5 its default, {SHA}) and `openssl passwd` (MD5, SHA-256
// and SHA-512 crypt).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_reads_what_htpasswd_and_openssl_write_now() {
    let password = "correct horse:battery";
    let mut entries = Vec::new();
    for (user, flag) in [("bcrypt", "-B"), ("apr1", "-m"), ("sha", "-s")] {
        entries.push(hash_with("htpasswd", &["-nb", flag, user, password]));
    }
    for (user, flag) in [("md5", "-1"), ("sha256", "-5"), ("sha512", "-6")] {
        let hash = hash_with("openssl", &["passwd", flag, password]);
        entries.push(format!("{user}:{hash}"));
    }
    let file: String = entries.iter().map(|e| format!("    {e}\n")).collect();
    let dir = tempfile::tempdir().unwrap();
    let parts = vec![
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: users\n  namespace: default\nstringData:\n  auth: |\n{file}"
        ),
        annotated(
            "file",
            "file.local",
            "web",
            &[
                (&format!("{NGINX}/auth-type"), "basic"),
                (&format!("{NGINX}/auth-secret"), "users"),
            ],
        ),
        backend_objects("default", "web", &[echo("web").await]),
    ];
    write(dir.path(), "routes.yaml", &docs(&parts));
    let proxy = Proxy::start(dir.path(), &[]).await;
    for user in ["bcrypt", "apr1", "sha", "md5", "sha256", "sha512"] {
        for (given, want) in [
            (password, StatusCode::OK),
            ("correct horse", StatusCode::UNAUTHORIZED),
        ] {
            let req = Request::get("/")
                .header("host", "file.local")
                .header("authorization", basic(user, given))
                .body(http_body_util::Empty::<Bytes>::new())
                .unwrap();
            assert_eq!(
                send(proxy.http_port, req).await.status,
                want,
                "{user}: {given:?}"
            );
        }
    }
}
