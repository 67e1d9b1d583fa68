//! TLS termination against the real binary on 127.0.0.1, with certificates
//! generated per test: SNI and wildcard selection, the default certificate,
//! HTTP/2 by ALPN (trailers included), TLS 1.1 refused, live rotation, a
//! broken Secret, idle connections, the HTTP -> HTTPS redirect rules, HSTS,
//! the metrics, `check` and the demo.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly

mod support;

use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use support::tls::*;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A folder with an echo backend `web` in namespace `tls`, and the proxy
/// serving it plus `docs`.
async fn serve(docs_: &[String], extra: &[&str]) -> (tempfile::TempDir, Proxy, u16) {
    let dir = tempfile::tempdir().unwrap();
    let addr = echo("web").await;
    write(
        dir.path(),
        "backend.yaml",
        &backend_objects("tls", "web", &[addr]),
    );
    write(dir.path(), "tls.yaml", &docs(docs_));
    let proxy = Proxy::start(dir.path(), extra).await;
    let https = proxy.https_port().await;
    (dir, proxy, https)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_picks_the_certificate_and_unknown_names_get_the_default() {
    let (a, b, wild) = (
        gen_cert(&["a.tls.local"]),
        gen_cert(&["b.tls.local"]),
        gen_cert(&["*.wild.local"]),
    );
    let (_dir, _proxy, https) = serve(
        &[
            tls_secret("tls", "a-tls", &a),
            tls_secret("tls", "b-tls", &b),
            tls_secret("tls", "wild-tls", &wild),
            tls_ingress(
                "tls",
                "a",
                &["a.tls.local"],
                "web",
                &[],
                &[(&["a.tls.local"], "a-tls")],
            ),
            tls_ingress(
                "tls",
                "b",
                &["b.tls.local"],
                "web",
                &[],
                &[(&["b.tls.local"], "b-tls")],
            ),
            tls_ingress(
                "tls",
                "w",
                &["*.wild.local"],
                "web",
                &[],
                &[(&["*.wild.local"], "wild-tls")],
            ),
        ],
        &[],
    )
    .await;

    assert_eq!(presented(https, Some("a.tls.local")).await, a.der);
    assert_eq!(presented(https, Some("B.TLS.local")).await, b.der);
    assert_eq!(presented(https, Some("x.wild.local")).await, wild.der);

    // No SNI, an unknown name, a name two labels below the wildcard: the
    // certificate generated at start, the same for all of them.
    let generated = presented(https, None).await;
    assert!(![&a.der, &b.der, &wild.der].contains(&&generated));
    assert_eq!(presented(https, Some("unknown.local")).await, generated);
    assert_eq!(presented(https, Some("x.y.wild.local")).await, generated);

    // And the request behind the handshake is routed, with the HTTPS
    // forwarding headers.
    let resp = https_get(https, "a.tls.local", "/hello").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.backend(), Some("web"));
    assert_eq!(resp.echoed("x-forwarded-proto"), Some("https"));
    let port = https.to_string();
    assert_eq!(resp.echoed("x-forwarded-port"), Some(port.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_secret_falls_back_to_the_default_certificate_alone() {
    let (good, default) = (gen_cert(&["good.tls.local"]), gen_cert(&["default.local"]));
    let other = gen_cert(&["bad.tls.local"]);
    let bad = gen_cert(&["bad.tls.local"]);
    let (_dir, proxy, https) = serve(
        &[
            tls_secret("tls", "good-tls", &good),
            tls_secret("infra", "default-tls", &default),
            // The key of another certificate.
            secret_with(
                "tls",
                "bad-tls",
                "kubernetes.io/tls",
                &bad.cert_pem,
                &other.key_pem,
            ),
            tls_ingress(
                "tls",
                "both",
                &["good.tls.local", "bad.tls.local"],
                "web",
                &[],
                &[
                    (&["good.tls.local"], "good-tls"),
                    (&["bad.tls.local"], "bad-tls"),
                ],
            ),
        ],
        &["--default-ssl-certificate", "infra/default-tls"],
    )
    .await;

    assert_eq!(presented(https, Some("bad.tls.local")).await, default.der);
    assert_eq!(presented(https, Some("good.tls.local")).await, good.der);
    assert_eq!(presented(https, None).await, default.der);
    // The host still routes (over HTTPS, with whatever certificate).
    let resp = https_get(https, "bad.tls.local", "/").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let stderr = proxy.stderr().await;
    assert!(
        stderr.contains("tls/bad-tls") && stderr.contains("does not match"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("BEGIN"),
        "no key material in logs:\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_is_negotiated_and_trailers_cross_from_an_http1_backend() {
    let trailers_backend = backend(|_req| async {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        trailers.insert("grpc-message", HeaderValue::from_static("ok"));
        let frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![
            Ok(Frame::data(Bytes::from_static(b"payload"))),
            Ok(Frame::trailers(trailers)),
        ];
        let body = StreamBody::new(futures::stream::iter(frames));
        Response::builder()
            .header("trailer", "grpc-status, grpc-message")
            .body(BodyExt::boxed(body))
            .unwrap()
    })
    .await;
    let cert = gen_cert(&["h2.tls.local"]);
    let (_dir, proxy, https) = serve(
        &[
            tls_secret("tls", "h2-tls", &cert),
            tls_ingress(
                "tls",
                "h2",
                &["h2.tls.local"],
                "web",
                &[],
                &[(&["h2.tls.local"], "h2-tls")],
            ),
            ingress("tls", "grpc", "grpc.tls.local", &[("/", "Prefix", "grpc")]),
            backend_objects("tls", "grpc", &[trailers_backend]),
        ],
        &[],
    )
    .await;

    let mut h2 = h2_connect(https, "h2.tls.local").await;
    let req = Request::builder()
        .uri("https://h2.tls.local/over-h2")
        .body(Empty::new())
        .unwrap();
    let resp = into_resp(h2_send(&mut h2, req).await).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.version, http::Version::HTTP_2);
    assert_eq!(resp.echoed("x-forwarded-proto"), Some("https"));
    assert!(resp.body.contains("/over-h2"), "{}", resp.body);

    // gRPC-style: the trailers of a chunked HTTP/1.1 response reach the
    // HTTP/2 client as a trailing HEADERS frame. The client sends `te:
    // trailers` as gRPC clients do; the proxy asks the backend for trailers
    // in turn (hyper's HTTP/1.1 server sends none otherwise). The
    // certificate does not name grpc.tls.local: the generated one answers,
    // the client accepts it.
    let mut h2 = h2_connect(https, "grpc.tls.local").await;
    let req = Request::builder()
        .uri("https://grpc.tls.local/pkg.Service/Method")
        .header("te", "trailers")
        .body(Empty::new())
        .unwrap();
    let resp = h2_send(&mut h2, req).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let collected = tokio::time::timeout(DEADLINE, resp.into_body().collect())
        .await
        .unwrap()
        .unwrap();
    let trailers = collected.trailers().cloned().expect("trailers over h2");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "ok");
    assert_eq!(collected.to_bytes(), "payload");
    drop(proxy);
}

/// A TLS 1.1 ClientHello (rustls cannot be made to send one). As a TLS 1.1
/// client sends it, it has no extensions; `with_signature_algorithms` adds
/// the TLS 1.2 extension, so that the server gets as far as the version.
fn tls11_client_hello(with_signature_algorithms: bool) -> Vec<u8> {
    let mut hello = vec![0x03, 0x02]; // client_version TLS 1.1
    hello.extend_from_slice(&[0x42; 32]); // random
    hello.push(0); // no session id
    hello.extend_from_slice(&[0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]); // two CBC suites
    hello.extend_from_slice(&[0x01, 0x00]); // null compression
    if with_signature_algorithms {
        // 12 bytes of extensions: signature_algorithms (13), 8 bytes, a
        // list of 6: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256,
        // rsa_pkcs1_sha256.
        hello.extend_from_slice(&[0x00, 0x0c, 0x00, 0x0d, 0x00, 0x08, 0x00, 0x06]);
        hello.extend_from_slice(&[0x04, 0x03, 0x08, 0x04, 0x04, 0x01]);
    }
    let mut handshake = vec![0x01, 0x00, 0x00, hello.len() as u8];
    handshake.extend_from_slice(&hello);
    let mut record = vec![0x16, 0x03, 0x01, 0x00, handshake.len() as u8];
    record.extend_from_slice(&handshake);
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_1_is_refused_and_tls_1_2_accepted() {
    let cert = gen_cert(&["v.tls.local"]);
    let (_dir, proxy, https) = serve(
        &[
            tls_secret("tls", "v-tls", &cert),
            tls_ingress(
                "tls",
                "v",
                &["v.tls.local"],
                "web",
                &[],
                &[(&["v.tls.local"], "v-tls")],
            ),
        ],
        &[],
    )
    .await;

    // One alert record each, fatal (2), and no ServerHello: without the
    // TLS 1.2 extension handshake_failure (40), with it protocol_version (70).
    for (with_signature_algorithms, alert) in [(false, 40), (true, 70)] {
        let mut tcp = TcpStream::connect(("127.0.0.1", https)).await.unwrap();
        tcp.write_all(&tls11_client_hello(with_signature_algorithms))
            .await
            .unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(DEADLINE, tcp.read_to_end(&mut answer))
            .await
            .expect("the server answers and closes")
            .unwrap();
        assert_eq!(
            answer.first(),
            Some(&0x15),
            "an alert, not a handshake: {answer:?}"
        );
        assert_eq!(&answer[5..7], &[2, alert], "{answer:?}");
    }

    let config = client_config(&[&rustls::version::TLS12], &["http/1.1"]);
    let stream = tls_connect_with(https, Some("v.tls.local"), config).await;
    assert_eq!(
        stream.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    assert_eq!(leaf(&stream), cert.der);

    wait_until(DEADLINE, "the refused handshakes are counted", || async {
        proxy
            .metric("tls_handshake_errors_total{reason=\"version\"}")
            .await
            == Some(2.0)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_reaches_the_next_handshake_and_spares_open_connections() {
    let (v1, v2) = (gen_cert(&["rot.tls.local"]), gen_cert(&["rot.tls.local"]));
    let dir = tempfile::tempdir().unwrap();
    let addr = echo("web").await;
    write(
        dir.path(),
        "backend.yaml",
        &backend_objects("tls", "web", &[addr]),
    );
    write(
        dir.path(),
        "ingress.yaml",
        &tls_ingress(
            "tls",
            "rot",
            &["rot.tls.local"],
            "web",
            &[],
            &[(&["rot.tls.local"], "rot-tls")],
        ),
    );
    write(
        dir.path(),
        "secret.yaml",
        &tls_secret("tls", "rot-tls", &v1),
    );
    let mut proxy = Proxy::start(dir.path(), &[]).await;
    let https = proxy.https_port().await;

    // A connection opened before the renewal.
    let config = client_config(&[&rustls::version::TLS13], &["http/1.1"]);
    let old = tls_connect_with(https, Some("rot.tls.local"), config).await;
    assert_eq!(leaf(&old), v1.der);
    let (mut old_sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(old))
            .await
            .unwrap();
    tokio::spawn(conn);

    // cert-manager rewrites the Secret.
    write_atomic(
        dir.path(),
        "secret.yaml",
        &tls_secret("tls", "rot-tls", &v2),
    );
    wait_until(DEADLINE, "the renewed certificate is served", || async {
        presented(https, Some("rot.tls.local")).await == v2.der
    })
    .await;

    // The old connection still works, on its old session.
    let resp = tokio::time::timeout(
        DEADLINE,
        old_sender.send_request(get_req("rot.tls.local", "/still-open")),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(proxy.running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_do_not_hold_up_a_handshake() {
    let cert = gen_cert(&["busy.tls.local"]);
    let (_dir, proxy, https) = serve(
        &[
            tls_secret("tls", "busy-tls", &cert),
            tls_ingress(
                "tls",
                "busy",
                &["busy.tls.local"],
                "web",
                &[],
                &[(&["busy.tls.local"], "busy-tls")],
            ),
        ],
        &[],
    )
    .await;

    // 50 clients that connect and say nothing, and a few that send half a
    // record header and stop.
    let mut idle = Vec::new();
    for i in 0..50 {
        let mut tcp = TcpStream::connect(("127.0.0.1", https)).await.unwrap();
        if i % 10 == 0 {
            tcp.write_all(&[0x16, 0x03]).await.unwrap();
        }
        idle.push(tcp);
    }
    // A real client still gets through, handshake and request (each step
    // bounded by DEADLINE inside the helpers; no duration is asserted).
    let resp = https_get(https, "busy.tls.local", "/").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(presented(https, Some("busy.tls.local")).await, cert.der);
    drop(idle);
    // The server counts a handshake when its side completes, which can be
    // after the client's side did: polled, not read once.
    wait_until(DEADLINE, "both handshakes counted", || async {
        proxy.metric("tls_handshakes_total").await.unwrap() >= 2.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_is_redirected_by_the_rules() {
    let cert = gen_cert(&["secure.tls.local"]);
    let docs_ = [
        tls_secret("tls", "secure-tls", &cert),
        tls_ingress(
            "tls",
            "secure",
            &["secure.tls.local"],
            "web",
            &[("ruststrom.io/hsts", "max-age=31536000; includeSubDomains")],
            &[(&["secure.tls.local"], "secure-tls")],
        ),
        tls_ingress(
            "tls",
            "optout",
            &["optout.tls.local"],
            "web",
            &[("ruststrom.io/ssl-redirect", "false")],
            &[(&["optout.tls.local"], "secure-tls")],
        ),
        tls_ingress(
            "tls",
            "forced",
            &["forced.tls.local"],
            "web",
            &[("ruststrom.io/force-ssl-redirect", "true")],
            &[],
        ),
        ingress("tls", "plain", "plain.tls.local", &[("/", "Prefix", "web")]),
    ];
    let (_dir, proxy, https) = serve(&docs_, &[]).await;

    let resp = proxy.get("Secure.TLS.local:8000", "/a/b?x=1&y=2").await;
    assert_eq!(resp.status, StatusCode::PERMANENT_REDIRECT, "{}", resp.body);
    assert_eq!(
        resp.headers["location"], "https://secure.tls.local/a/b?x=1&y=2",
        "443 is left out of the Location"
    );
    assert!(!resp.headers.contains_key("strict-transport-security"));

    let resp = proxy.get("optout.tls.local", "/").await;
    assert_eq!(
        resp.status,
        StatusCode::OK,
        "ssl-redirect false: {}",
        resp.body
    );
    let resp = proxy.get("plain.tls.local", "/").await;
    assert_eq!(
        resp.status,
        StatusCode::OK,
        "no TLS, no redirect: {}",
        resp.body
    );
    let resp = proxy.get("forced.tls.local", "/p").await;
    assert_eq!(resp.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(resp.headers["location"], "https://forced.tls.local/p");

    // A client claiming HTTPS is not believed from an untrusted peer.
    let claim = |host: &str, proto: &str| {
        Request::builder()
            .uri("/")
            .header("host", host)
            .header("x-forwarded-proto", proto)
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    let resp = send(proxy.http_port, claim("secure.tls.local", "https")).await;
    assert_eq!(resp.status, StatusCode::PERMANENT_REDIRECT);

    // Over HTTPS: forwarded, with HSTS where the Ingress asks for it.
    let resp = https_get(https, "secure.tls.local", "/").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(
        resp.headers["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
    let resp = https_get(https, "optout.tls.local", "/").await;
    assert!(!resp.headers.contains_key("strict-transport-security"));
    assert_eq!(
        proxy.metric("http_status_codes_total{code=\"308\"}").await,
        Some(3.0)
    );

    // Behind a TLS-terminating load balancer on a trusted address.
    drop(proxy);
    let (_dir, trusting, _) = serve(
        &docs_,
        &[
            "--trusted-proxies",
            "127.0.0.0/8",
            "--https-redirect-port",
            "8443",
        ],
    )
    .await;
    let resp = send(trusting.http_port, claim("secure.tls.local", "https")).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.echoed("x-forwarded-proto"), Some("https"));
    assert_eq!(
        resp.headers["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
    let resp = send(trusting.http_port, claim("secure.tls.local", "http")).await;
    assert_eq!(resp.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(resp.headers["location"], "https://secure.tls.local:8443/");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_metrics_are_present_and_count() {
    let cert = gen_cert(&["m.tls.local"]);
    let (_dir, proxy, https) = serve(
        &[
            tls_secret("tls", "m-tls", &cert),
            tls_ingress(
                "tls",
                "m",
                &["m.tls.local"],
                "web",
                &[],
                &[(&["m.tls.local"], "m-tls")],
            ),
        ],
        &[],
    )
    .await;
    let text = proxy.metrics().await;
    for reason in [
        "timeout",
        "io",
        "version",
        "incompatible",
        "no_certificate",
        "protocol",
    ] {
        let key = format!("tls_handshake_errors_total{{reason=\"{reason}\"}}");
        assert_eq!(metric_value(&text, &key), Some(0.0), "{key}:\n{text}");
    }
    assert_eq!(metric_value(&text, "tls_handshakes_total"), Some(0.0));
    assert_eq!(
        metric_value(
            &text,
            "tls_certificate_expiry_timestamp_seconds{secret=\"tls/m-tls\"}"
        ),
        Some(GEN_CERT_NOT_AFTER as f64)
    );

    presented(https, Some("m.tls.local")).await;
    // A client that connects and leaves without a word.
    drop(TcpStream::connect(("127.0.0.1", https)).await.unwrap());
    wait_until(DEADLINE, "one handshake and one io error", || async {
        let text = proxy.metrics().await;
        metric_value(&text, "tls_handshakes_total") == Some(1.0)
            && metric_value(&text, "tls_handshake_errors_total{reason=\"io\"}") == Some(1.0)
    })
    .await;
}

#[test]
fn check_prints_tls_hosts_and_certificate_problems() {
    let dir = tempfile::tempdir().unwrap();
    let good = gen_cert(&["good.tls.local"]);
    write(
        dir.path(),
        "all.yaml",
        &docs(&[
            backend_objects("tls", "web", &["127.0.0.1:8080".parse().unwrap()]),
            tls_secret("tls", "good-tls", &good),
            secret_with("tls", "opaque", "Opaque", &good.cert_pem, &good.key_pem),
            tls_ingress(
                "tls",
                "web",
                &["good.tls.local", "bad.tls.local"],
                "web",
                &[],
                &[
                    (&["good.tls.local"], "good-tls"),
                    (&["bad.tls.local"], "opaque"),
                ],
            ),
        ]),
    );
    let out = run_bin(&["check", "--manifests", dir.path().to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "a broken Secret is a rejected object:\n{text}"
    );
    let row = |host: &str| {
        text.lines()
            .find(|l| l.starts_with(host))
            .map(str::to_string)
    };
    let good_row = text
        .lines()
        .find(|l| l.starts_with("good.tls.local") && l.contains("tls/good-tls"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(good_row.contains("2099-01-01T00:00:00Z"), "{good_row}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("bad.tls.local") && l.contains("unusable: default certificate")),
        "{text}"
    );
    assert!(
        row("(default certificate)").unwrap().contains("generated"),
        "{text}"
    );
    assert!(
        text.contains("rejected: Secret tls/opaque: type is \"Opaque\"")
            && text.contains("bad.tls.local use the default certificate"),
        "{text}"
    );
    assert!(!text.contains("BEGIN"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_serves_demo_local_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<String> = [
        "demo",
        "--manifests",
        dir.path().to_str().unwrap(),
        "--http-addr",
        "127.0.0.1:0",
        "--metrics-addr",
        "127.0.0.1:0",
        "--workers",
        "2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let proxy = Proxy::start_args(&args).await;
    let https = proxy.https_port().await;
    let resp = https_get(https, "demo.local", "/").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert!(
        resp.backend().is_some_and(|b| b.starts_with("demo-")),
        "{resp:?}"
    );
    let secret = std::fs::read_to_string(dir.path().join("demo-tls.yaml")).unwrap();
    assert!(secret.contains("type: kubernetes.io/tls"), "{secret}");
    // The Secret's certificate is what demo.local presents.
    let generated = presented(https, None).await;
    assert_ne!(presented(https, Some("demo.local")).await, generated);
}

/// `server-alias`: the alias names are served by the host's routes, over
/// HTTPS with the host's certificate (as nginx serves them from the host's
/// `server` block), and plain HTTP to them is redirected like the host's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_alias_names_are_served_with_the_host_routes_and_certificate() {
    let cert = gen_cert(&["shop.tls.local", "shop.alias.local", "*.alias.local"]);
    let other = gen_cert(&["own.alias.local"]);
    let (_dir, proxy, https) = serve(
        &[
            tls_secret("tls", "shop-tls", &cert),
            tls_secret("tls", "own-tls", &other),
            tls_ingress(
                "tls",
                "shop",
                &["shop.tls.local"],
                "web",
                &[(
                    "nginx.ingress.kubernetes.io/server-alias",
                    "shop.alias.local,*.alias.local,own.alias.local",
                )],
                // An alias name with TLS of its own keeps its certificate.
                &[
                    (&["shop.tls.local"], "shop-tls"),
                    (&["own.alias.local"], "own-tls"),
                ],
            ),
        ],
        &[],
    )
    .await;
    for name in ["shop.alias.local", "x.alias.local"] {
        assert_eq!(presented(https, Some(name)).await, cert.der, "{name}");
        let resp = https_get(https, name, "/hello").await;
        assert_eq!(resp.status, StatusCode::OK, "{name}: {}", resp.body);
        assert_eq!(resp.backend(), Some("web"), "{name}");
        assert_eq!(resp.echoed_host(), Some(name), "{name}");
        // Plain HTTP to the alias follows the host's TLS: redirected.
        let plain = get(proxy.http_port, name, "/hello").await;
        assert_eq!(plain.status, StatusCode::PERMANENT_REDIRECT, "{name}");
        let location = plain.headers.get("location").unwrap().to_str().unwrap();
        assert!(
            location.starts_with(&format!("https://{name}")),
            "{location}"
        );
    }
    assert_eq!(presented(https, Some("own.alias.local")).await, other.der);
    let resp = https_get(https, "own.alias.local", "/hello").await;
    assert_eq!(resp.backend(), Some("web"));
    // Names that are no alias get neither the certificate nor the routes.
    assert_ne!(presented(https, Some("unknown.local")).await, cert.der);
    // A name that is no alias is not served by the host.
    let resp = get(proxy.http_port, "other.local", "/hello").await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
}
