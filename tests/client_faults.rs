//! Misbehaving clients and slow backends, through the real binary with raw
//! sockets: a slow upload never poisons the upstream pool; a client that
//! breaks or stalls its own body gets 400 or 408 and never counts against
//! the backend; each side's pace has its own timeout.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Routes `host` to `addr` through a Service of the same name; `policy` is
/// the BalancerPolicy spec (YAML flow style) for it, if any.
async fn start(
    host: &str,
    addr: SocketAddr,
    policy: Option<&str>,
    extra: &[&str],
) -> (tempfile::TempDir, Proxy) {
    let dir = tempfile::tempdir().unwrap();
    let svc = host.split('.').next().unwrap();
    let mut parts = vec![
        ingress("default", svc, host, &[("/", "Prefix", svc)]),
        backend_objects("default", svc, &[addr]),
    ];
    if let Some(spec) = policy {
        parts.push(format!(
            "apiVersion: ruststrom.io/v1alpha1\nkind: BalancerPolicy\nmetadata: {{name: {svc}, namespace: default}}\n\
             spec:\n  targetRef: {{group: \"\", kind: Service, name: {svc}}}\n  {spec}\n"
        ));
    }
    write(dir.path(), "r.yaml", &docs(&parts));
    let proxy = Proxy::start(dir.path(), extra).await;
    (dir, proxy)
}

/// The sum of every series of `family` in a scrape.
fn sum(metrics: &str, family: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(family) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Reads from `stream` until `needle` has arrived; what was read.
async fn read_until(stream: &mut TcpStream, needle: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        while !String::from_utf8_lossy(&got).contains(needle) {
            let n = stream.read(&mut buf).await.expect("read");
            assert!(
                n > 0,
                "closed before {needle:?}: {}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(DEADLINE, read)
        .await
        .unwrap_or_else(|_| panic!("no {needle:?} in time"));
    String::from_utf8_lossy(&got).into_owned()
}

/// Reads until the peer closes; what was read.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut out))
        .await
        .expect("the proxy closed in time");
    String::from_utf8_lossy(&out).into_owned()
}

/// A backend that answers `200 early` as soon as it has a request head,
/// without reading the body, and keeps the connection open (reading and
/// dropping whatever else arrives). Counts the connections the proxy
/// closed.
async fn early_answerer() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let closed = Arc::new(AtomicUsize::new(0));
    let counted = closed.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let counted = counted.clone();
            tokio::spawn(async move {
                let _closed = CountOnDrop(counted);
                let mut buf = vec![0u8; 64 * 1024];
                let mut seen = Vec::new();
                loop {
                    let Ok(n) = stream.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    // Answer every request head that arrives; a body's
                    // bytes are never a head (they hold no CRLFCRLF here).
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nearly";
                        if stream.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                    if seen.len() > 8192 {
                        seen.clear();
                    }
                }
            });
        }
    });
    (addr, closed)
}

/// Adds one to its counter when dropped.
struct CountOnDrop(Arc<AtomicUsize>);

impl Drop for CountOnDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_uploaders_answered_early_never_hold_up_other_clients() {
    let (addr, closed) = early_answerer().await;
    let (_dir, proxy) = start("early.local", addr, None, &["--request-timeout", "5s"]).await;
    let port = proxy.http_port;

    // 20 uploaders announce 100 kB, get their answer at once, and go on
    // trickling: their upstream connections are busy until the end.
    let mut uploaders = Vec::new();
    for _ in 0..20 {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        stream
            .write_all(b"POST /up HTTP/1.1\r\nHost: early.local\r\nContent-Length: 100000\r\n\r\n0123456789")
            .await
            .unwrap();
        let answer = read_until(&mut stream, "early").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        // Its upstream connection is never pooled: the proxy ends it rather
        // than carry the rest of an upload nobody will finish reading.
        let want = uploaders.len() + 1;
        wait_until(
            DEADLINE,
            "the uploader's backend connection is closed",
            || async { closed.load(Ordering::SeqCst) == want },
        )
        .await;
        uploaders.push(tokio::spawn(async move {
            for _ in 0..100 {
                if stream.write_all(b"0123456789").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }
    // 40 other clients, one after another: each must be answered, never
    // handed a connection still carrying someone's upload (which would make
    // it wait out --request-timeout and get 504).
    for i in 0..40 {
        let resp = proxy.get("early.local", &format!("/other/{i}")).await;
        assert_eq!(resp.status, StatusCode::OK, "client {i}: {}", resp.body);
        assert_eq!(resp.body, "early");
    }
    assert_eq!(proxy.metric("http_timeouts_total").await, Some(0.0));
    for u in uploaders {
        u.abort();
    }
}

/// A backend that reads the whole body, then answers with its length.
async fn reader() -> SocketAddr {
    backend(|req: Request<hyper::body::Incoming>| async move {
        match req.into_body().collect().await {
            Ok(body) => http::Response::new(full(format!("{} bytes", body.to_bytes().len()))),
            Err(_) => http::Response::builder()
                .status(StatusCode::IM_A_TEAPOT)
                .body(full("the body broke"))
                .unwrap(),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_breaks_its_body_is_not_the_backends_fault() {
    let addr = reader().await;
    // One failure in a row would eject the only endpoint: any client fault
    // counted against it would show.
    let (_dir, proxy) = start(
        "faults.local",
        addr,
        Some("healthCheck: {passive: {consecutiveFailures: 1, maxEjectionPercent: 100}}"),
        &["--client-body-timeout", "1s"],
    )
    .await;
    let port = proxy.http_port;

    // A malformed chunk size: 400, and the connection ends.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream
        .write_all(
            b"POST / HTTP/1.1\r\nHost: faults.local\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
        )
        .await
        .unwrap();
    let answer = read_to_close(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");

    // An upload cut short: the client leaves half-way.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream
        .write_all(
            b"POST / HTTP/1.1\r\nHost: faults.local\r\nContent-Length: 1000\r\n\r\n0123456789",
        )
        .await
        .unwrap();
    stream.shutdown().await.unwrap();
    let _ = read_to_close(&mut stream).await;

    // A client that stops sending: 408 after --client-body-timeout.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream
        .write_all(
            b"POST / HTTP/1.1\r\nHost: faults.local\r\nContent-Length: 1000\r\n\r\n0123456789",
        )
        .await
        .unwrap();
    let answer = read_to_close(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    wait_until(DEADLINE, "the aborted upload is counted", || async {
        proxy
            .metric("client_errors_total{reason=\"body_aborted\"}")
            .await
            == Some(1.0)
    })
    .await;
    let m = proxy.metrics().await;
    assert_eq!(
        support::metric_value(&m, "client_errors_total{reason=\"body_malformed\"}"),
        Some(1.0)
    );
    assert_eq!(
        support::metric_value(&m, "client_errors_total{reason=\"body_timeout\"}"),
        Some(1.0)
    );
    assert_eq!(sum(&m, "backend_errors_total"), 0.0, "{m}");
    assert_eq!(sum(&m, "backend_ejections_total"), 0.0, "{m}");
    assert_eq!(support::metric_value(&m, "http_errors_total"), Some(0.0));
    // The endpoint is still in service.
    let resp = proxy.get("faults.local", "/").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_upload_longer_than_the_request_timeout_succeeds() {
    let addr = reader().await;
    let (_dir, proxy) = start("steady.local", addr, None, &["--request-timeout", "2s"]).await;
    let mut stream = TcpStream::connect(("127.0.0.1", proxy.http_port))
        .await
        .unwrap();
    stream
        .write_all(b"POST / HTTP/1.1\r\nHost: steady.local\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    // 24 kB over about 5 s: more than twice the request timeout, never
    // idle.
    let piece = vec![b'x'; 2048];
    for _ in 0..12 {
        stream
            .write_all(format!("{:x}\r\n", piece.len()).as_bytes())
            .await
            .unwrap();
        stream.write_all(&piece).await.unwrap();
        stream.write_all(b"\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    stream.write_all(b"0\r\n\r\n").await.unwrap();
    let answer = read_to_close(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("24576 bytes"), "{answer}");
}

/// A raw TCP backend on a free port: `serve` gets each connection, in a
/// task of its own.
async fn raw_backend<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            if let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream));
            }
        }
    });
    addr
}

/// A backend that reads a request head and then neither reads nor answers.
async fn deaf() -> SocketAddr {
    raw_backend(|mut stream| async move {
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf).await;
        // Holds the connection open, reading nothing more.
        std::future::pending::<()>().await;
        drop(stream);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_does_not_read_the_body_times_out() {
    let (_dir, proxy) = start(
        "deaf.local",
        deaf().await,
        None,
        &["--proxy-send-timeout", "1s"],
    )
    .await;
    let stream = TcpStream::connect(("127.0.0.1", proxy.http_port))
        .await
        .unwrap();
    let (mut read, mut write) = stream.into_split();
    // 64 MB: far more than the socket buffers between here and the backend.
    let len = 64 * 1024 * 1024;
    let writer = tokio::spawn(async move {
        let head = format!("POST / HTTP/1.1\r\nHost: deaf.local\r\nContent-Length: {len}\r\n\r\n");
        write.write_all(head.as_bytes()).await?;
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..len / chunk.len() {
            write.write_all(&chunk).await?;
        }
        Ok::<_, std::io::Error>(())
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, read.read_to_end(&mut answer))
        .await
        .expect("an answer within the deadline, not after --request-timeout (30s)");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
    writer.abort();
    assert_eq!(proxy.metric("http_timeouts_total").await, Some(1.0));
}

/// A backend that answers with a head and one piece of body, then stalls
/// while keeping the connection open.
async fn stalls_mid_body() -> SocketAddr {
    raw_backend(|mut stream| async move {
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf).await;
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nfirst piece")
            .await;
        std::future::pending::<()>().await;
        drop(stream);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_stalls_mid_answer_is_cut_off() {
    let (_dir, proxy) = start(
        "stall.local",
        stalls_mid_body().await,
        None,
        &["--proxy-read-timeout", "1s"],
    )
    .await;
    let mut sender = connect::<Empty<Bytes>>(proxy.http_port).await;
    let resp = tokio::time::timeout(DEADLINE, sender.send_request(get_req("stall.local", "/")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = tokio::time::timeout(DEADLINE, resp.into_body().collect())
        .await
        .expect("the body ends (cut off) within the deadline");
    assert!(
        body.is_err(),
        "a body cut off is an error to the client, not a short success"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_sets_the_read_timeout_of_its_backend() {
    // The flag's 60 s would outlast the deadline; the policy's 1 s does not.
    let (_dir, proxy) = start(
        "stall.local",
        stalls_mid_body().await,
        Some("timeouts: {read: 1s}"),
        &[],
    )
    .await;
    let mut sender = connect::<Empty<Bytes>>(proxy.http_port).await;
    let resp = tokio::time::timeout(DEADLINE, sender.send_request(get_req("stall.local", "/")))
        .await
        .unwrap()
        .unwrap();
    let body = tokio::time::timeout(DEADLINE, resp.into_body().collect())
        .await
        .expect("the body is cut off within the deadline");
    assert!(body.is_err());
}

/// A backend that streams an endless chunked body; sets `closed` once a
/// write fails (the proxy let go of the connection).
async fn endless(closed: Arc<AtomicBool>) -> SocketAddr {
    raw_backend(move |mut stream| {
        let closed = closed.clone();
        async move {
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf).await;
            let head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
            if stream.write_all(head).await.is_ok() {
                let chunk = [b"10000\r\n".as_slice(), &[b'x'; 0x10000], b"\r\n"].concat();
                // At most 1 GB: bounded, and far more than any buffer.
                for _ in 0..16_384 {
                    if stream.write_all(&chunk).await.is_err() {
                        break;
                    }
                }
            }
            closed.store(true, Ordering::SeqCst);
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_releases_the_backend() {
    let closed = Arc::new(AtomicBool::new(false));
    let addr = endless(closed.clone()).await;
    let (_dir, proxy) = start("big.local", addr, None, &["--client-send-timeout", "1s"]).await;
    let mut stream = TcpStream::connect(("127.0.0.1", proxy.http_port))
        .await
        .unwrap();
    stream
        .write_all(b"GET /huge HTTP/1.1\r\nHost: big.local\r\n\r\n")
        .await
        .unwrap();
    let head = read_until(&mut stream, "\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // And now the client reads nothing more, holding its connection open.
    wait_until(DEADLINE, "the backend connection is let go", || async {
        closed.load(Ordering::SeqCst)
    })
    .await;
    wait_until(DEADLINE, "nothing in flight", || async {
        let m = proxy.metrics().await;
        sum(&m, "backend_in_flight") == 0.0
    })
    .await;
    drop(stream);
}
