//! The upstream keep-alive pool, seen from a backend that counts its
//! connections: requests reuse one connection, an answer whose client went
//! away is read to its end when small (the connection is kept) and not when
//! endless (it is closed), and idle connections close after the policy's
//! idle timeout.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use support::*;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpListener;

/// Connections a backend accepted, and how many are still open; `/held`
/// requests received, and the signal that lets their answers finish.
#[derive(Default)]
struct Counts {
    accepted: AtomicUsize,
    open: AtomicUsize,
    held: AtomicUsize,
    finish: tokio::sync::Notify,
}

/// A backend answering `ok` on `/`; on `/stream` a body of 64 KiB chunks
/// that never ends (it stops only when the reader goes away); on `/held`
/// nothing until `finish` is notified, then `late`; on `/held-body` a
/// first chunk at once and the last one when `finish` is notified.
async fn counting_backend(counts: Arc<Counts>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            counts.accepted.fetch_add(1, Ordering::SeqCst);
            counts.open.fetch_add(1, Ordering::SeqCst);
            let counts = counts.clone();
            tokio::spawn(async move {
                let service = service_fn(|req: Request<hyper::body::Incoming>| {
                    let counts = counts.clone();
                    async move { answer(req.uri().path(), counts).await }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                counts.open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    addr
}

async fn answer(path: &str, counts: Arc<Counts>) -> Result<Response<TestBody>, Infallible> {
    match path {
        "/stream" => {
            let chunks = futures::stream::unfold((), |()| async {
                tokio::time::sleep(Duration::from_millis(5)).await;
                let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
                Some((Ok::<_, Infallible>(Frame::data(chunk)), ()))
            });
            Ok(Response::new(StreamBody::new(chunks).boxed()))
        }
        "/held" => {
            counts.held.fetch_add(1, Ordering::SeqCst);
            counts.finish.notified().await;
            Ok(Response::new(full("late")))
        }
        "/held-body" => {
            counts.held.fetch_add(1, Ordering::SeqCst);
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(2);
            let _ = tx
                .send(Ok(Frame::data(Bytes::from_static(b"first "))))
                .await;
            tokio::spawn(async move {
                counts.finish.notified().await;
                let _ = tx.send(Ok(Frame::data(Bytes::from_static(b"last")))).await;
            });
            let chunks = futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|frame| (frame, rx))
            });
            Ok(Response::new(StreamBody::new(chunks).boxed()))
        }
        _ => Ok(Response::new(full("ok"))),
    }
}

async fn start(policy: Option<&str>) -> (tempfile::TempDir, Proxy, Arc<Counts>) {
    let counts = Arc::new(Counts::default());
    let addr = counting_backend(counts.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut parts = vec![
        ingress("default", "pool", "pool.local", &[("/", "Prefix", "pool")]),
        backend_objects("default", "pool", &[addr]),
    ];
    if let Some(policy) = policy {
        parts.push(policy.to_string());
    }
    write(dir.path(), "pool.yaml", &docs(&parts));
    let proxy = Proxy::start(dir.path(), &[]).await;
    (dir, proxy, counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_requests_reuse_one_upstream_connection() {
    let (_dir, proxy, counts) = start(None).await;
    // Separate client connections, one after another: the proxy's pool, not
    // the client's connection, is what keeps the backend connection.
    for _ in 0..20 {
        let resp = get(proxy.http_port, "pool.local", "/").await;
        assert_eq!(resp.status, 200, "{}", resp.body);
        assert_eq!(resp.body, "ok");
    }
    assert_eq!(counts.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(
        proxy.metric("upstream_connections_opened_total").await,
        Some(1.0)
    );
    assert_eq!(proxy.metric("upstream_requests_total").await, Some(20.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_abandoned_half_way_retires_its_connection() {
    let (_dir, proxy, counts) = start(None).await;
    leave_after_first_chunk(&proxy, "/stream").await;
    wait_until(DEADLINE, "the backend connection closes", || async {
        counts.open.load(Ordering::SeqCst) == 0
    })
    .await;

    // The next request gets a fresh connection and a whole answer.
    let resp = get(proxy.http_port, "pool.local", "/").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, "ok");
    assert_eq!(counts.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_after_the_policy_idle_timeout() {
    let policy = "apiVersion: ruststrom.io/v1alpha1
kind: BalancerPolicy
metadata: {name: pool, namespace: default}
spec:
  targetRef: {group: \"\", kind: Service, name: pool}
  timeouts: {idle: 1s}
";
    let (_dir, proxy, counts) = start(Some(policy)).await;
    let resp = get(proxy.http_port, "pool.local", "/").await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(counts.open.load(Ordering::SeqCst), 1);
    // Closed by the reaper within its period after the 1 s idle timeout.
    wait_until(DEADLINE, "the idle connection closes", || async {
        counts.open.load(Ordering::SeqCst) == 0
    })
    .await;
    let resp = get(proxy.http_port, "pool.local", "/").await;
    assert_eq!(resp.status, 200);
    assert_eq!(counts.accepted.load(Ordering::SeqCst), 2);
}

/// Sends GET `path`, reads the answer's first chunk, and goes away.
async fn leave_after_first_chunk(proxy: &Proxy, path: &str) {
    let mut sender = connect::<http_body_util::Empty<Bytes>>(proxy.http_port).await;
    let resp = tokio::time::timeout(DEADLINE, sender.send_request(get_req("pool.local", path)))
        .await
        .expect("response in time")
        .expect("response");
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let first = tokio::time::timeout(DEADLINE, body.frame())
        .await
        .expect("a chunk in time");
    assert!(first.is_some());
}

/// Lets the held answer finish, waits until the proxy has read it and
/// pooled its connection, and checks that the next request reuses it.
async fn assert_connection_kept(proxy: &Proxy, counts: &Counts) {
    counts.finish.notify_one();
    wait_until(
        DEADLINE,
        "the rest is read and the connection kept",
        || async { proxy.metric("upstream_connections_salvaged_total").await == Some(1.0) },
    )
    .await;
    let resp = get(proxy.http_port, "pool.local", "/").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, "ok");
    assert_eq!(
        counts.accepted.load(Ordering::SeqCst),
        1,
        "no new connection"
    );
}

/// Requests the proxy counts as in flight to backends now.
async fn in_flight(proxy: &Proxy) -> f64 {
    proxy
        .metrics()
        .await
        .lines()
        .filter(|line| line.starts_with("backend_in_flight{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_before_the_answer_does_not_cost_the_connection() {
    let (_dir, proxy, counts) = start(None).await;
    let mut client = tokio::net::TcpStream::connect(("127.0.0.1", proxy.http_port))
        .await
        .unwrap();
    client
        .write_all(b"GET /held HTTP/1.1\r\nHost: pool.local\r\n\r\n")
        .await
        .unwrap();
    wait_until(DEADLINE, "the backend has the request", || async {
        counts.held.load(Ordering::SeqCst) == 1
    })
    .await;
    // The client leaves while the backend is still working on the answer.
    drop(client);
    wait_until(DEADLINE, "the proxy gives the request up", || async {
        in_flight(&proxy).await == 0.0
    })
    .await;
    assert_connection_kept(&proxy, &counts).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_body_abandoned_half_way_is_read_and_the_connection_kept() {
    let (_dir, proxy, counts) = start(None).await;
    leave_after_first_chunk(&proxy, "/held-body").await;
    wait_until(DEADLINE, "the proxy drops the response", || async {
        in_flight(&proxy).await == 0.0
    })
    .await;
    assert_connection_kept(&proxy, &counts).await;
}
