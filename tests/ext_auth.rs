//! External authentication (`auth-url` and its family) through the real
//! binary in standalone mode, against an in-process auth service that
//! behaves like oauth2-proxy: a known cookie passes with the user's
//! headers, none gets 401, a banned one 403.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use std::time::Duration;

use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::Empty;
use support::*;
use tokio::time::Instant;

const NGINX: &str = "nginx.ingress.kubernetes.io";

/// What the auth service saw: method, target, headers.
type Seen = Arc<Mutex<Vec<(Method, String, HeaderMap)>>>;

/// The oauth2-proxy stand-in. `/oauth2/auth` decides by the
/// `_oauth2_proxy` cookie: `good` passes (and refreshes a cookie),
/// `quiet-*` passes without a cookie, `banned` is 403, `teapot` is 418,
/// anything else 401 with a challenge and a CSRF cookie. `/slow` answers
/// after 3 s; `/oauth2/start` is the sign-in page.
async fn auth_service(seen: Seen) -> std::net::SocketAddr {
    backend(move |req| {
        let seen = seen.clone();
        async move {
            let path = req.uri().path().to_string();
            seen.lock().push((
                req.method().clone(),
                req.uri().to_string(),
                req.headers().clone(),
            ));
            let cookie = req
                .headers()
                .get("cookie")
                .and_then(|v| v.to_str().ok())
                .and_then(|c| {
                    c.split(';')
                        .find_map(|p| p.trim().strip_prefix("_oauth2_proxy="))
                })
                .unwrap_or("")
                .to_string();
            let mut resp = Response::builder();
            if path == "/slow" {
                tokio::time::sleep(Duration::from_secs(3)).await;
                return resp.status(200).body(full("late")).unwrap();
            }
            if path == "/oauth2/start" {
                return resp.status(200).body(full("sign in here")).unwrap();
            }
            let status = match cookie.as_str() {
                "good" => {
                    resp = resp
                        .header("x-auth-request-user", "alice")
                        .header("x-auth-request-email", "alice@example.com")
                        .header("set-cookie", "refreshed=1; Path=/");
                    200
                }
                c if c.starts_with("quiet-") => {
                    resp = resp.header("x-auth-request-user", c.to_string());
                    202
                }
                "banned" => {
                    resp = resp.header("set-cookie", "csrf=1; Path=/");
                    403
                }
                "teapot" => 418,
                _ => {
                    resp = resp
                        .header("www-authenticate", "Bearer realm=\"test\"")
                        .header("set-cookie", "csrf=1; Path=/");
                    401
                }
            };
            resp.status(status).body(full("auth says so")).unwrap()
        }
    })
    .await
}

/// A backend that counts its requests and echoes their headers as the
/// echo backend does (`  name: value`).
async fn counting_web(calls: Arc<AtomicUsize>) -> std::net::SocketAddr {
    backend(move |req| {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            let mut body = format!("{} {}\n", req.method(), req.uri());
            for (name, value) in req.headers() {
                body.push_str(&format!("  {name}: {}\n", value.to_str().unwrap_or("?")));
            }
            Response::builder()
                .header("x-backend", "web")
                .body(full(body))
                .unwrap()
        }
    })
    .await
}

/// An Ingress for `host` -> `svc` at `path` with the given annotations
/// (values in YAML double quotes).
fn annotated(
    name: &str,
    host: &str,
    path: &str,
    svc: &str,
    annotations: &[(&str, &str)],
) -> String {
    let base = ingress("default", name, host, &[(path, "Prefix", svc)]);
    if annotations.is_empty() {
        return base;
    }
    let mut lines = String::from("metadata:\n  annotations:\n");
    for (k, v) in annotations {
        let v = v.replace('\\', "\\\\").replace('"', "\\\"");
        lines.push_str(&format!("    {NGINX}/{k}: \"{v}\"\n"));
    }
    base.replacen("metadata:\n", &lines, 1)
}

struct World {
    proxy: Proxy,
    /// The manifests folder the proxy watches: kept for its lifetime.
    _dir: tempfile::TempDir,
    seen: Seen,
    web_calls: Arc<AtomicUsize>,
}

impl World {
    /// The auth service's requests so far, then forgotten.
    fn take_seen(&self) -> Vec<(Method, String, HeaderMap)> {
        std::mem::take(&mut *self.seen.lock())
    }

    fn web_calls(&self) -> usize {
        self.web_calls.load(Ordering::SeqCst)
    }

    async fn send(&self, host: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
        let mut req = Request::builder().uri(path).header("host", host);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        send(
            self.proxy.http_port,
            req.body(Empty::<bytes::Bytes>::new()).unwrap(),
        )
        .await
    }
}

async fn world() -> World {
    let seen: Seen = Arc::default();
    let auth = auth_service(seen.clone()).await;
    let web_calls = Arc::new(AtomicUsize::new(0));
    let web = counting_web(web_calls.clone()).await;
    let direct = format!("http://127.0.0.1:{}", auth.port());
    let closed = format!("http://127.0.0.1:{}/oauth2/auth", closed_port());
    let dir = tempfile::tempdir().unwrap();
    let config_map =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: auth-headers\n  namespace: default\n\
                      data:\n  X-Team: platform\n  X-From-Host: \"$host via $scheme\"\n"
            .to_string();
    let parts = vec![
        // oauth2-proxy behind the same ingress, on the app's host.
        annotated("oauth2", "app.local", "/oauth2", "oauth2", &[]),
        annotated(
            "app",
            "app.local",
            "/",
            "web",
            &[
                ("auth-url", "http://$host/oauth2/auth"),
                (
                    "auth-signin",
                    "https://$host/oauth2/start?rd=$escaped_request_uri",
                ),
                (
                    "auth-response-headers",
                    "X-Auth-Request-User, X-Auth-Request-Email",
                ),
                ("auth-proxy-set-headers", "auth-headers"),
                ("auth-keepalive", "10"),
            ],
        ),
        // An outside URL, a header in its query, the cookie on every answer.
        annotated(
            "direct",
            "direct.local",
            "/",
            "web",
            &[
                (
                    "auth-url",
                    &format!("{direct}/oauth2/auth?team=$http_x_team"),
                ),
                ("auth-method", "POST"),
                ("auth-always-set-cookie", "true"),
                ("auth-request-redirect", "$scheme://$host$request_uri"),
            ],
        ),
        // Sign-in elsewhere, its redirect parameter renamed.
        annotated(
            "login",
            "login.local",
            "/",
            "web",
            &[
                ("auth-url", &format!("{direct}/oauth2/auth")),
                ("auth-signin", "https://login.example/start"),
                ("auth-signin-redirect-param", "next"),
            ],
        ),
        annotated("down", "down.local", "/", "web", &[("auth-url", &closed)]),
        annotated(
            "slow",
            "slow.local",
            "/",
            "web",
            &[("auth-url", &format!("{direct}/slow"))],
        ),
        annotated(
            "cached",
            "cached.local",
            "/",
            "web",
            &[
                ("auth-url", &format!("{direct}/oauth2/auth")),
                ("auth-response-headers", "X-Auth-Request-User"),
                ("auth-cache-key", "$cookie__oauth2_proxy"),
                ("auth-cache-duration", "200 202 2s"),
            ],
        ),
        // Each of these is rejected alone.
        annotated(
            "bad-url",
            "bad-url.local",
            "/",
            "web",
            &[("auth-url", "ftp://auth/x")],
        ),
        annotated(
            "bad-var",
            "bad-var.local",
            "/",
            "web",
            &[("auth-url", "http://auth.local/x?u=$no_such_thing")],
        ),
        annotated(
            "no-cm",
            "no-cm.local",
            "/",
            "web",
            &[
                ("auth-url", &format!("{direct}/oauth2/auth")),
                ("auth-proxy-set-headers", "missing"),
            ],
        ),
        annotated(
            "snippet",
            "snippet.local",
            "/",
            "web",
            &[
                ("auth-url", &format!("{direct}/oauth2/auth")),
                ("auth-snippet", "proxy_set_header X-Evil 1;"),
            ],
        ),
        annotated("open", "open.local", "/", "web", &[]),
        config_map,
        backend_objects("default", "web", &[web]),
        backend_objects("default", "oauth2", &[auth]),
    ];
    write(dir.path(), "routes.yaml", &docs(&parts));
    let proxy = Proxy::start(dir.path(), &["--request-timeout", "1s"]).await;
    wait_until(DEADLINE, "open.local served", || async {
        get(proxy.http_port, "open.local", "/").await.status == StatusCode::OK
    })
    .await;
    World {
        proxy,
        _dir: dir,
        seen,
        web_calls,
    }
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_follow_the_auth_service() {
    let w = world().await;
    // (host, cookie, status, Location, Set-Cookie, WWW-Authenticate, backend called)
    type Case<'a> = (
        &'a str,
        &'a str,
        u16,
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        bool,
    );
    let cases: &[Case] = &[
        (
            "app.local",
            "good",
            200,
            None,
            Some("refreshed=1; Path=/"),
            None,
            true,
        ),
        (
            "app.local",
            "",
            302,
            Some("https://app.local/oauth2/start?rd=%2Fp%2520q%2Fr%3Fx%3D1%26next%3D%2Fa"),
            Some("csrf=1; Path=/"),
            None,
            false,
        ),
        // Without auth-always-set-cookie, no cookie on a 403.
        ("app.local", "banned", 403, None, None, None, false),
        ("app.local", "teapot", 500, None, None, None, false),
        // With it, the 401 and 403 carry the auth service's cookie.
        (
            "direct.local",
            "",
            401,
            None,
            Some("csrf=1; Path=/"),
            Some("Bearer realm=\"test\""),
            false,
        ),
        (
            "direct.local",
            "banned",
            403,
            None,
            Some("csrf=1; Path=/"),
            None,
            false,
        ),
        (
            "direct.local",
            "good",
            200,
            None,
            Some("refreshed=1; Path=/"),
            None,
            true,
        ),
        (
            "login.local",
            "",
            302,
            Some(
                "https://login.example/start?next=http://login.local%2Fp%2520q%2Fr%3Fx%3D1%26next%3D%2Fa",
            ),
            Some("csrf=1; Path=/"),
            None,
            false,
        ),
        ("down.local", "good", 500, None, None, None, false),
    ];
    for &(host, cookie, status, location, set_cookie, challenge, reaches) in cases {
        let before = w.web_calls();
        let cookie = format!("_oauth2_proxy={cookie}");
        let resp = w
            .send(host, "/p%20q/r?x=1&next=/a", &[("cookie", &cookie)])
            .await;
        let what = format!("{host} {cookie}: {} {:?}", resp.status, resp.headers);
        assert_eq!(resp.status.as_u16(), status, "{what}");
        assert_eq!(header(&resp.headers, "location"), location, "{what}");
        assert_eq!(header(&resp.headers, "set-cookie"), set_cookie, "{what}");
        assert_eq!(
            header(&resp.headers, "www-authenticate"),
            challenge,
            "{what}"
        );
        assert_eq!(w.web_calls() > before, reaches, "{what}");
    }
    let m = w.proxy.metrics().await;
    for (result, at_least) in [
        ("allowed", 2.0),
        ("unauthorized", 3.0),
        ("forbidden", 2.0),
        ("error", 2.0),
    ] {
        let n = metric_value(&m, &format!("auth_requests_total{{result=\"{result}\"}}")).unwrap();
        assert!(n >= at_least, "{result}: {n}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_gets_the_users_headers_and_the_auth_service_the_originals() {
    let w = world().await;
    let resp = w
        .send(
            "app.local",
            "/some/path?q=1",
            &[
                ("cookie", "_oauth2_proxy=good; theme=dark"),
                ("x-auth-request-user", "mallory"),
                ("x-forwarded-for", "203.0.113.66"),
                ("authorization", "Bearer abc"),
            ],
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(
        resp.echoed_all("x-auth-request-user"),
        ["alice"],
        "{}",
        resp.body
    );
    assert_eq!(
        resp.echoed("x-auth-request-email"),
        Some("alice@example.com")
    );

    let seen = w.take_seen();
    let (method, target, h) = seen
        .iter()
        .find(|(_, t, _)| t.starts_with("/oauth2/auth"))
        .expect("a subrequest");
    assert_eq!(method, Method::GET);
    assert_eq!(target, "/oauth2/auth");
    for (name, want) in [
        ("host", "app.local"),
        ("x-original-uri", "/some/path?q=1"),
        ("x-original-url", "http://app.local/some/path?q=1"),
        ("x-original-method", "GET"),
        ("x-sent-from", "nginx-ingress-controller"),
        ("x-real-ip", "127.0.0.1"),
        ("x-forwarded-for", "127.0.0.1"),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-host", "app.local"),
        ("x-auth-request-redirect", "/some/path?q=1"),
        ("cookie", "_oauth2_proxy=good; theme=dark"),
        ("authorization", "Bearer abc"),
        // From the auth-proxy-set-headers ConfigMap, variables expanded.
        ("x-team", "platform"),
        ("x-from-host", "app.local via http"),
    ] {
        assert_eq!(header(h, name), Some(want), "{name} in {h:?}");
    }
    assert!(h.get("content-length").is_none_or(|v| v == "0"), "{h:?}");

    // An outside URL: the method, a header escaped into its query, the
    // redirect header from its template.
    let resp = w
        .send(
            "direct.local",
            "/x",
            &[("cookie", "_oauth2_proxy=good"), ("x-team", "a&b=c/d e?#")],
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    let seen = w.take_seen();
    let (method, target, h) = seen.last().expect("a subrequest");
    assert_eq!(method, Method::POST);
    assert_eq!(target, "/oauth2/auth?team=a%26b%3Dc%2Fd%20e%3F%23");
    assert_eq!(
        header(h, "x-auth-request-redirect"),
        Some("http://direct.local/x")
    );
    assert_eq!(header(h, "host"), Some("127.0.0.1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auth_service_down_or_slow_never_lets_a_request_through() {
    let w = world().await;
    let before = w.web_calls();
    let resp = w
        .send("down.local", "/", &[("cookie", "_oauth2_proxy=good")])
        .await;
    assert_eq!(
        resp.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        resp.body
    );

    let started = Instant::now();
    let resp = w
        .send("slow.local", "/", &[("cookie", "_oauth2_proxy=good")])
        .await;
    assert_eq!(
        resp.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        resp.body
    );
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "the 1 s limit was not kept: {:?}",
        started.elapsed()
    );
    assert_eq!(w.web_calls(), before, "the backend was called");
    // Other routes serve on.
    assert_eq!(w.send("open.local", "/", &[]).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_answers_for_the_auth_service_until_it_expires() {
    let w = world().await;
    let asks = |w: &World| {
        w.take_seen()
            .iter()
            .filter(|(_, t, _)| t.starts_with("/oauth2/auth"))
            .count()
    };
    w.take_seen();
    for (cookie, want_asks, user) in [
        ("quiet-1", 1, "quiet-1"),
        ("quiet-1", 0, "quiet-1"),
        // Another key asks again.
        ("quiet-2", 1, "quiet-2"),
        ("quiet-1", 0, "quiet-1"),
        // 401 is not in "200 202 2s": never kept.
        ("nobody", 1, ""),
        ("nobody", 1, ""),
    ] {
        let resp = w
            .send(
                "cached.local",
                "/",
                &[("cookie", &format!("_oauth2_proxy={cookie}"))],
            )
            .await;
        if user.is_empty() {
            assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
        } else {
            assert_eq!(resp.status, StatusCode::OK);
            assert_eq!(
                resp.echoed("x-auth-request-user"),
                Some(user),
                "{}",
                resp.body
            );
        }
        assert_eq!(asks(&w), want_asks, "{cookie}");
    }
    let hits = w.proxy.metric("auth_cache_hits_total").await.unwrap();
    assert!(hits >= 2.0, "{hits}");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let resp = w
        .send("cached.local", "/", &[("cookie", "_oauth2_proxy=quiet-1")])
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(asks(&w), 1, "an expired answer was used");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_values_reject_only_their_ingress() {
    let w = world().await;
    for (host, want) in [
        ("bad-url.local", StatusCode::NOT_FOUND),
        ("bad-var.local", StatusCode::NOT_FOUND),
        ("no-cm.local", StatusCode::NOT_FOUND),
        ("snippet.local", StatusCode::NOT_FOUND),
        ("open.local", StatusCode::OK),
    ] {
        let resp = w.send(host, "/", &[("cookie", "_oauth2_proxy=good")]).await;
        assert_eq!(resp.status, want, "{host}: {}", resp.body);
    }
    let dir = tempfile::tempdir().unwrap();
    let parts = [
        annotated(
            "bad-url",
            "bad-url.local",
            "/",
            "web",
            &[("auth-url", "ftp://auth/x")],
        ),
        annotated(
            "bad-var",
            "bad-var.local",
            "/",
            "web",
            &[("auth-url", "http://auth.local/x?u=$no_such_thing")],
        ),
        annotated(
            "no-cm",
            "no-cm.local",
            "/",
            "web",
            &[
                ("auth-url", "http://auth.local/"),
                ("auth-proxy-set-headers", "missing"),
            ],
        ),
        annotated(
            "snippet",
            "snippet.local",
            "/",
            "web",
            &[("auth-url", "http://auth.local/"), ("auth-snippet", "x")],
        ),
    ];
    write(dir.path(), "routes.yaml", &docs(&parts));
    let text = check_text(dir.path());
    for line in [
        "nginx.ingress.kubernetes.io/auth-url: \"ftp://auth/x\" does not start with http:// or https://",
        "uses $no_such_thing, which RustStrom does not know",
        "names ConfigMap default/missing, which is not found",
        "nginx.ingress.kubernetes.io/auth-snippet is refused",
    ] {
        assert!(text.contains(line), "{line:?} not in:\n{text}");
    }
}
