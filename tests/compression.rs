//! Response compression through the real binary: the encoding chosen by
//! `Accept-Encoding` q-values and decoded back byte for byte, the answers
//! left alone (not accepted, too small, not text, already encoded, Range,
//! HEAD, 204, no-transform), a large body streamed compressed while the
//! backend is still sending, the annotation against the global flag, and a
//! bad annotation value taking out only its Ingress.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly

mod support;

use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Frame, Incoming};
use support::*;
use tokio::sync::{Notify, mpsc};

/// Text that compresses well but not trivially: 20 KiB of numbered lines.
fn text(len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while out.len() < len {
        out.extend_from_slice(format!("line {i}: the quick brown fox jumps\n").as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

const STREAM_CHUNK: usize = 64 * 1024;
const STREAM_CHUNKS: usize = 64; // 4 MiB

/// The backend: one answer per path. `/stream` sends its first chunk, then
/// waits for `go` before the rest, so the client can only see the first
/// bytes if the proxy passes them on before the body ends.
async fn start_backend(go: Arc<Notify>) -> std::net::SocketAddr {
    backend(move |req: Request<Incoming>| {
        let go = go.clone();
        async move {
            let plain = |ty: &str, body: Vec<u8>| {
                Response::builder()
                    .header("content-type", ty)
                    .header("content-length", body.len())
                    .header("etag", "\"v1\"")
                    .header("accept-ranges", "bytes")
                    .body(full(body))
                    .unwrap()
            };
            match req.uri().path() {
                "/text" => plain("text/plain; charset=utf-8", text(20_000)),
                "/json" => plain("application/json", text(20_000)),
                "/small" => plain("text/plain", text(100)),
                "/png" => plain("image/png", text(20_000)),
                "/encoded" => Response::builder()
                    .header("content-type", "text/plain")
                    .header("content-encoding", "gzip")
                    .body(full(text(20_000)))
                    .unwrap(),
                "/no-transform" => Response::builder()
                    .header("content-type", "text/plain")
                    .header("cache-control", "public, no-transform")
                    .body(full(text(20_000)))
                    .unwrap(),
                "/partial" => Response::builder()
                    .status(StatusCode::PARTIAL_CONTENT)
                    .header("content-type", "text/plain")
                    .header("content-range", "bytes 0-19999/40000")
                    .body(full(text(20_000)))
                    .unwrap(),
                "/empty" => Response::builder()
                    .status(StatusCode::NO_CONTENT)
                    .header("content-type", "text/plain")
                    .body(full(Vec::new()))
                    .unwrap(),
                "/stream" => {
                    let (tx, rx) =
                        mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(2);
                    tokio::spawn(async move {
                        let chunk = Bytes::from(text(STREAM_CHUNK));
                        let _ = tx.send(Ok(Frame::data(chunk.clone()))).await;
                        go.notified().await;
                        for _ in 1..STREAM_CHUNKS {
                            if tx.send(Ok(Frame::data(chunk.clone()))).await.is_err() {
                                return;
                            }
                        }
                    });
                    let stream = tokio_stream(rx);
                    Response::builder()
                        .header("content-type", "text/plain")
                        .body(StreamBody::new(stream).boxed())
                        .unwrap()
                }
                _ => Response::builder()
                    .status(StatusCode::NOT_FOUND)
                    .body(full("no"))
                    .unwrap(),
            }
        }
    })
    .await
}

/// An mpsc receiver as a stream.
fn tokio_stream<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn manifests(dir: &std::path::Path, web: std::net::SocketAddr) {
    let parts = [
        annotated(
            "on",
            "on.local",
            "web",
            &[("ruststrom.io/compression", "true")],
        ),
        annotated("plain", "plain.local", "web", &[]),
        annotated(
            "gz",
            "gz.local",
            "web",
            &[("ruststrom.io/compression", "gzip")],
        ),
        annotated(
            "off",
            "off.local",
            "web",
            &[("ruststrom.io/compression", "off")],
        ),
        annotated(
            "bad",
            "bad.local",
            "web",
            &[("ruststrom.io/compression", "gzip, lzma")],
        ),
        backend_objects("default", "web", &[web]),
    ];
    write(dir, "routes.yaml", &docs(&parts));
}

/// Sends a request with `headers`; the answer with its body as bytes.
async fn fetch(
    port: u16,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Bytes) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut sender = connect(port).await;
    let resp = tokio::time::timeout(
        DEADLINE,
        sender.send_request(req.body(Empty::<Bytes>::new()).unwrap()),
    )
    .await
    .expect("answer in time")
    .expect("answer");
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(DEADLINE, body.collect())
        .await
        .expect("body in time")
        .expect("body")
        .to_bytes();
    (parts.status, parts.headers, body)
}

fn decode(encoding: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        "gzip" => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .expect("valid gzip");
        }
        "br" => {
            brotli::Decompressor::new(body, 4096)
                .read_to_end(&mut out)
                .expect("valid brotli");
        }
        "zstd" => out = zstd::stream::decode_all(body).expect("valid zstd"),
        other => panic!("unexpected encoding {other}"),
    }
    out
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encodings_by_q_values_and_answers_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    manifests(dir.path(), start_backend(Arc::new(Notify::new())).await);
    let proxy = Proxy::start(dir.path(), &[]).await;

    // (what, host, method, path, request headers, Content-Encoding wanted,
    // Vary: Accept-Encoding wanted)
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        &'a [(&'a str, &'a str)],
        Option<&'a str>,
        bool,
    );
    let cases: &[Case] = &[
        (
            "gzip only",
            "on.local",
            "GET",
            "/text",
            &[("accept-encoding", "gzip")],
            Some("gzip"),
            true,
        ),
        (
            "x-gzip",
            "on.local",
            "GET",
            "/text",
            &[("accept-encoding", "x-gzip")],
            Some("gzip"),
            true,
        ),
        (
            "br only",
            "on.local",
            "GET",
            "/text",
            &[("accept-encoding", "br")],
            Some("br"),
            true,
        ),
        (
            "zstd only",
            "on.local",
            "GET",
            "/json",
            &[("accept-encoding", "zstd")],
            Some("zstd"),
            true,
        ),
        (
            "a tie goes to zstd",
            "on.local",
            "GET",
            "/text",
            &[("accept-encoding", "gzip, br, zstd")],
            Some("zstd"),
            true,
        ),
        (
            "highest q wins",
            "on.local",
            "GET",
            "/text",
            &[("accept-encoding", "zstd;q=0.5, gzip;q=0.9, br;q=0.8")],
            Some("gzip"),
            true,
        ),
        (
            "q=0 excludes",
            "on.local",
            "GET",
            "/text",
            &[("accept-encoding", "zstd;q=0, br;q=0, gzip")],
            Some("gzip"),
            true,
        ),
        (
            "star for the others",
            "on.local",
            "GET",
            "/text",
            &[("accept-encoding", "zstd;q=0, *;q=0.5")],
            Some("br"),
            true,
        ),
        (
            "the Ingress allows gzip only",
            "gz.local",
            "GET",
            "/text",
            &[("accept-encoding", "zstd, br, gzip;q=0.1")],
            Some("gzip"),
            true,
        ),
        ("not accepted", "on.local", "GET", "/text", &[], None, true),
        (
            "all q=0",
            "on.local",
            "GET",
            "/text",
            &[("accept-encoding", "gzip;q=0, *;q=0")],
            None,
            true,
        ),
        (
            "unknown coding",
            "on.local",
            "GET",
            "/text",
            &[("accept-encoding", "compress")],
            None,
            true,
        ),
        (
            "too small",
            "on.local",
            "GET",
            "/small",
            &[("accept-encoding", "gzip")],
            None,
            false,
        ),
        (
            "not a compressible type",
            "on.local",
            "GET",
            "/png",
            &[("accept-encoding", "gzip")],
            None,
            false,
        ),
        (
            "already encoded",
            "on.local",
            "GET",
            "/encoded",
            &[("accept-encoding", "br")],
            Some("gzip"),
            false,
        ),
        (
            "no-transform",
            "on.local",
            "GET",
            "/no-transform",
            &[("accept-encoding", "gzip")],
            None,
            false,
        ),
        (
            "Range request",
            "on.local",
            "GET",
            "/text",
            &[("accept-encoding", "gzip"), ("range", "bytes=0-99")],
            None,
            false,
        ),
        (
            "206",
            "on.local",
            "GET",
            "/partial",
            &[("accept-encoding", "gzip")],
            None,
            false,
        ),
        (
            "204",
            "on.local",
            "GET",
            "/empty",
            &[("accept-encoding", "gzip")],
            None,
            false,
        ),
        (
            "HEAD",
            "on.local",
            "HEAD",
            "/text",
            &[("accept-encoding", "gzip")],
            None,
            false,
        ),
        (
            "no annotation, no flag",
            "plain.local",
            "GET",
            "/text",
            &[("accept-encoding", "gzip")],
            None,
            false,
        ),
        (
            "annotation off",
            "off.local",
            "GET",
            "/text",
            &[("accept-encoding", "gzip")],
            None,
            false,
        ),
    ];
    let original = text(20_000);
    for (what, host, method, path, headers, want, vary) in cases {
        let (status, h, body) = fetch(proxy.http_port, method, host, path, headers).await;
        assert!(status.is_success(), "{what}: {status}");
        assert_eq!(header(&h, "content-encoding"), *want, "{what}: {h:?}");
        let has_vary = h.get_all("vary").iter().any(|v| {
            v.to_str()
                .unwrap()
                .to_ascii_lowercase()
                .contains("accept-encoding")
        });
        assert_eq!(has_vary, *vary, "{what}: Vary in {h:?}");
        let compressed_here = want.is_some() && *path != "/encoded";
        if compressed_here {
            assert_eq!(decode(want.unwrap(), &body), original, "{what}: body");
            assert!(
                body.len() < original.len() / 3,
                "{what}: {} bytes",
                body.len()
            );
            assert_eq!(h.get("content-length"), None, "{what}");
            assert_eq!(h.get("accept-ranges"), None, "{what}");
            assert_eq!(header(&h, "etag"), Some("W/\"v1\""), "{what}: weak ETag");
        } else if *method == "GET" && ["/text", "/png", "/no-transform"].contains(path) {
            assert_eq!(&body[..], &original[..], "{what}: body untouched");
            if *path != "/no-transform" {
                assert_eq!(header(&h, "etag"), Some("\"v1\""), "{what}: ETag untouched");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_1_0_clients_get_identity_as_from_nginx() {
    let dir = tempfile::tempdir().unwrap();
    manifests(dir.path(), start_backend(Arc::new(Notify::new())).await);
    let proxy = Proxy::start(dir.path(), &[]).await;
    let ask = |version: &str| {
        format!(
            "GET /text HTTP/{version}\r\nHost: on.local\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n"
        )
    };
    let old = raw(proxy.http_port, &ask("1.0")).await.to_ascii_lowercase();
    assert!(old.starts_with("http/1."), "{old}");
    assert!(!old.contains("content-encoding"), "{old}");
    let new = raw(proxy.http_port, &ask("1.1")).await.to_ascii_lowercase();
    assert!(new.contains("content-encoding: gzip"), "{new}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_body_streams_compressed_before_the_backend_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let go = Arc::new(Notify::new());
    manifests(dir.path(), start_backend(go.clone()).await);
    let proxy = Proxy::start(dir.path(), &[]).await;
    for encoding in ["gzip", "br", "zstd"] {
        let req = Request::get("/stream")
            .header("host", "on.local")
            .header("accept-encoding", encoding)
            .body(Empty::<Bytes>::new())
            .unwrap();
        let mut sender = connect(proxy.http_port).await;
        let resp = tokio::time::timeout(DEADLINE, sender.send_request(req))
            .await
            .expect("headers in time")
            .unwrap();
        assert_eq!(header(resp.headers(), "content-encoding"), Some(encoding));
        let mut body = resp.into_body();
        // The backend holds the rest back until the client has seen the
        // first compressed bytes: a proxy that buffers never gets there.
        let mut got = Vec::new();
        let first = tokio::time::timeout(DEADLINE, body.frame())
            .await
            .unwrap_or_else(|_| panic!("{encoding}: first bytes before the end of the body"))
            .unwrap()
            .unwrap();
        got.extend_from_slice(&first.into_data().unwrap());
        assert!(!got.is_empty(), "{encoding}");
        go.notify_one();
        let rest = tokio::time::timeout(DEADLINE, body.collect())
            .await
            .expect("the rest in time")
            .unwrap()
            .to_bytes();
        got.extend_from_slice(&rest);
        let plain = decode(encoding, &got);
        assert_eq!(plain.len(), STREAM_CHUNK * STREAM_CHUNKS, "{encoding}");
        let chunk = text(STREAM_CHUNK);
        assert!(plain.chunks(STREAM_CHUNK).all(|c| c == chunk), "{encoding}");
        assert!(
            got.len() < plain.len() / 10,
            "{encoding}: {} bytes",
            got.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_flag_and_the_annotation_that_overrides_it() {
    let dir = tempfile::tempdir().unwrap();
    manifests(dir.path(), start_backend(Arc::new(Notify::new())).await);
    let proxy = Proxy::start(dir.path(), &["--compression"]).await;
    let ae = &[("accept-encoding", "gzip, br")][..];
    // (host, Content-Encoding wanted)
    for (host, want) in [
        ("plain.local", Some("br")),
        ("on.local", Some("br")),
        ("gz.local", Some("gzip")),
        ("off.local", None),
    ] {
        let (status, h, body) = fetch(proxy.http_port, "GET", host, "/text", ae).await;
        assert_eq!(status, StatusCode::OK, "{host}");
        assert_eq!(header(&h, "content-encoding"), want, "{host}");
        if let Some(encoding) = want {
            assert_eq!(decode(encoding, &body), text(20_000), "{host}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_value_rejects_only_its_ingress() {
    let dir = tempfile::tempdir().unwrap();
    manifests(dir.path(), start_backend(Arc::new(Notify::new())).await);
    let proxy = Proxy::start(dir.path(), &[]).await;
    let (status, _, _) = fetch(proxy.http_port, "GET", "bad.local", "/text", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = fetch(proxy.http_port, "GET", "on.local", "/text", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let text = check_text(dir.path());
    assert!(
        text.contains("ruststrom.io/compression: \"gzip, lzma\""),
        "{text}"
    );
}
