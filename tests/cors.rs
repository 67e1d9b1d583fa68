//! `enable-cors` and the `cors-*` annotations through the real binary:
//! preflights from allowed origins answered by the proxy without reaching
//! the backend, the CORS headers on answers for allowed origins only (the
//! backend's replaced, the proxy's own 429 included; other origins get the
//! backend's answer untouched), exact and wildcard
//! origins, credentials, ingress-nginx's defaults, and bad values taking
//! out only their Ingress.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Empty;
use support::*;

const NGINX: &str = "nginx.ingress.kubernetes.io";

fn annotated(name: &str, host: &str, annotations: &[(&str, &str)]) -> String {
    let mut lines = String::from("metadata:\n  annotations:\n");
    for (k, v) in annotations {
        lines.push_str(&format!("    {NGINX}/{k}: \"{v}\"\n"));
    }
    ingress("default", name, host, &[("/", "Prefix", "web")]).replacen("metadata:\n", &lines, 1)
}

/// A backend that counts its requests and sends CORS headers of its own,
/// which a CORS route must replace.
async fn counting_backend() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let addr = backend(move |_req| {
        seen.fetch_add(1, Ordering::SeqCst);
        async move {
            http::Response::builder()
                .header("access-control-allow-origin", BACKENDS)
                .header("access-control-allow-credentials", "true")
                .body(full("from the backend"))
                .unwrap()
        }
    })
    .await;
    (addr, calls)
}

/// The `Access-Control-Allow-Origin` the backend sends itself.
const BACKENDS: &str = "https://backend.example";
const DEFAULT_METHODS: &str = "GET, PUT, POST, DELETE, PATCH, OPTIONS";
const DEFAULT_HEADERS: &str = "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization";

/// One request and what its answer must be.
struct Case {
    what: &'static str,
    host: &'static str,
    method: Method,
    origin: Option<&'static str>,
    /// `Access-Control-Request-Method`: with OPTIONS and an origin, a
    /// preflight.
    request_method: Option<&'static str>,
    status: StatusCode,
    /// Whether the backend saw the request.
    forwarded: bool,
    /// Headers of the answer: `None` means absent.
    headers: &'static [(&'static str, Option<&'static str>)],
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflights_and_answers_get_the_headers_of_their_origin() {
    let dir = tempfile::tempdir().unwrap();
    let (web, calls) = counting_backend().await;
    let parts = [
        annotated("any", "any.local", &[("enable-cors", "true")]),
        annotated(
            "list",
            "list.local",
            &[
                ("enable-cors", "true"),
                (
                    "cors-allow-origin",
                    "https://a.example.com, https://*.example.org:8443",
                ),
                ("cors-allow-methods", "GET,POST"),
                ("cors-allow-headers", "X-Custom, Content-Type"),
                ("cors-expose-headers", "X-Request-Id"),
                ("cors-max-age", "600"),
            ],
        ),
        annotated(
            "nocreds",
            "nocreds.local",
            &[
                ("enable-cors", "true"),
                ("cors-allow-origin", "https://a.example.com"),
                ("cors-allow-credentials", "false"),
            ],
        ),
        annotated(
            "off",
            "off.local",
            &[("cors-allow-origin", "https://a.example.com")],
        ),
        annotated(
            "limited",
            "limited.local",
            &[
                ("enable-cors", "true"),
                ("limit-rpm", "1"),
                ("limit-burst-multiplier", "0"),
            ],
        ),
        backend_objects("default", "web", &[web]),
    ];
    write(dir.path(), "routes.yaml", &docs(&parts));
    let proxy = Proxy::start(dir.path(), &[]).await;

    const ACAO: &str = "access-control-allow-origin";
    const ACAC: &str = "access-control-allow-credentials";
    const ACAM: &str = "access-control-allow-methods";
    const ACAH: &str = "access-control-allow-headers";
    const ACEH: &str = "access-control-expose-headers";
    const MAX_AGE: &str = "access-control-max-age";
    const VARY: &str = "vary";
    let list_allowed: &[(&str, Option<&str>)] = &[
        (ACAC, Some("true")),
        (ACAM, Some("GET, POST")),
        (ACAH, Some("X-Custom, Content-Type")),
        (ACEH, Some("X-Request-Id")),
        (MAX_AGE, Some("600")),
        (VARY, Some("Origin")),
    ];
    let cases = [
        Case {
            what: "preflight with the defaults",
            host: "any.local",
            method: Method::OPTIONS,
            origin: Some("https://anywhere.test"),
            request_method: Some("PUT"),
            status: StatusCode::NO_CONTENT,
            forwarded: false,
            headers: &[
                (ACAO, Some("*")),
                // Never with *, where browsers refuse it.
                (ACAC, None),
                (ACAM, Some(DEFAULT_METHODS)),
                (ACAH, Some(DEFAULT_HEADERS)),
                (ACEH, None),
                (MAX_AGE, Some("1728000")),
                (VARY, None),
            ],
        },
        Case {
            what: "preflight from a listed origin",
            host: "list.local",
            method: Method::OPTIONS,
            origin: Some("https://a.example.com"),
            request_method: Some("POST"),
            status: StatusCode::NO_CONTENT,
            forwarded: false,
            headers: &[(ACAO, Some("https://a.example.com"))],
        },
        Case {
            what: "preflight from a wildcard subdomain, any case",
            host: "list.local",
            method: Method::OPTIONS,
            origin: Some("https://Shop.example.org:8443"),
            request_method: Some("GET"),
            status: StatusCode::NO_CONTENT,
            forwarded: false,
            headers: &[(ACAO, Some("https://Shop.example.org:8443"))],
        },
        Case {
            what: "preflight from two labels under the wildcard: not allowed",
            host: "list.local",
            method: Method::OPTIONS,
            origin: Some("https://a.b.example.org:8443"),
            request_method: Some("GET"),
            status: StatusCode::OK,
            forwarded: true,
            // The backend's answer as it was (nginx adds nothing either).
            headers: &[(ACAO, Some(BACKENDS)), (ACAM, None), (VARY, Some("Origin"))],
        },
        Case {
            what: "preflight from another origin goes to the backend, bare",
            host: "list.local",
            method: Method::OPTIONS,
            origin: Some("https://evil.example.com"),
            request_method: Some("DELETE"),
            status: StatusCode::OK,
            forwarded: true,
            headers: &[(ACAO, Some(BACKENDS)), (MAX_AGE, None)],
        },
        Case {
            what: "OPTIONS that is no preflight goes to the backend",
            host: "list.local",
            method: Method::OPTIONS,
            origin: Some("https://a.example.com"),
            request_method: None,
            status: StatusCode::OK,
            forwarded: true,
            headers: &[(ACAO, Some("https://a.example.com"))],
        },
        Case {
            what: "simple request from a listed origin, the backend's headers replaced",
            host: "list.local",
            method: Method::GET,
            origin: Some("https://a.example.com"),
            request_method: None,
            status: StatusCode::OK,
            forwarded: true,
            headers: &[(ACAO, Some("https://a.example.com"))],
        },
        Case {
            what: "request without Origin on a listed route",
            host: "list.local",
            method: Method::GET,
            origin: None,
            request_method: None,
            status: StatusCode::OK,
            forwarded: true,
            headers: &[(ACAO, Some(BACKENDS)), (ACAM, None), (VARY, Some("Origin"))],
        },
        Case {
            what: "request without Origin on a * route (nginx sends * always)",
            host: "any.local",
            method: Method::GET,
            origin: None,
            request_method: None,
            status: StatusCode::OK,
            forwarded: true,
            headers: &[(ACAO, Some("*")), (ACAC, None)],
        },
        Case {
            what: "credentials off",
            host: "nocreds.local",
            method: Method::GET,
            origin: Some("https://a.example.com"),
            request_method: None,
            status: StatusCode::OK,
            forwarded: true,
            headers: &[(ACAO, Some("https://a.example.com")), (ACAC, None)],
        },
        Case {
            what: "cors-* without enable-cors: the backend's own headers",
            host: "off.local",
            method: Method::OPTIONS,
            origin: Some("https://a.example.com"),
            request_method: Some("GET"),
            status: StatusCode::OK,
            forwarded: true,
            headers: &[(ACAO, Some(BACKENDS)), (ACAM, None)],
        },
        Case {
            what: "first request within the limit",
            host: "limited.local",
            method: Method::GET,
            origin: Some("https://app.test"),
            request_method: None,
            status: StatusCode::OK,
            forwarded: true,
            headers: &[(ACAO, Some("*"))],
        },
        Case {
            what: "the proxy's own 429 carries the headers",
            host: "limited.local",
            method: Method::GET,
            origin: Some("https://app.test"),
            request_method: None,
            status: StatusCode::TOO_MANY_REQUESTS,
            forwarded: false,
            headers: &[(ACAO, Some("*")), (ACAM, Some(DEFAULT_METHODS))],
        },
    ];
    for case in &cases {
        let mut req = Request::builder()
            .method(case.method.clone())
            .uri("/")
            .header("host", case.host);
        if let Some(origin) = case.origin {
            req = req.header("origin", origin);
        }
        if let Some(method) = case.request_method {
            req = req.header("access-control-request-method", method);
        }
        let before = calls.load(Ordering::SeqCst);
        let resp = send(proxy.http_port, req.body(Empty::<Bytes>::new()).unwrap()).await;
        let what = case.what;
        assert_eq!(resp.status, case.status, "{what}");
        let forwarded = calls.load(Ordering::SeqCst) > before;
        assert_eq!(forwarded, case.forwarded, "{what}: reached the backend?");
        // An origin the list allows gets the list route's other headers.
        let listed_and_allowed = case.host == "list.local"
            && case
                .headers
                .iter()
                .any(|(n, v)| *n == ACAO && v.is_some_and(|v| v != BACKENDS));
        let expected = case.headers.iter().chain(if listed_and_allowed {
            list_allowed
        } else {
            &[]
        });
        for (name, want) in expected {
            let got: Vec<&str> = resp
                .headers
                .get_all(*name)
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect();
            match want {
                Some(want) => assert_eq!(got, vec![*want], "{what}: {name}"),
                None => assert!(got.is_empty(), "{what}: {name} is {got:?}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_values_take_out_only_their_ingress() {
    let dir = tempfile::tempdir().unwrap();
    let (web, _) = counting_backend().await;
    let bad: [(&str, &[(&str, &str)]); 6] = [
        ("origin", &[("cors-allow-origin", "example.com")]),
        ("variable", &[("cors-allow-origin", "https://$host")]),
        ("methods", &[("cors-allow-methods", "GET;DELETE")]),
        ("headers", &[("cors-allow-headers", "X-A: 1")]),
        ("age", &[("cors-max-age", "-1")]),
        ("creds", &[("cors-allow-credentials", "sure")]),
    ];
    let mut parts = vec![annotated("good", "good.local", &[("enable-cors", "true")])];
    for (name, annotations) in &bad {
        let mut all = vec![("enable-cors", "true")];
        all.extend_from_slice(annotations);
        parts.push(annotated(name, &format!("{name}.local"), &all));
    }
    parts.push(backend_objects("default", "web", &[web]));
    write(dir.path(), "routes.yaml", &docs(&parts));
    let proxy = Proxy::start(dir.path(), &[]).await;
    let good = get(proxy.http_port, "good.local", "/").await;
    assert_eq!(good.status, StatusCode::OK);
    for (name, _) in &bad {
        let resp = get(proxy.http_port, &format!("{name}.local"), "/").await;
        assert_eq!(resp.status, StatusCode::NOT_FOUND, "{name}");
    }
    let text = check_text(dir.path());
    for (_, annotations) in &bad {
        let (name, value) = annotations[0];
        let line = format!("{name}: {value:?}");
        assert!(text.contains(&line), "check does not say {line:?}:\n{text}");
    }
}
