//! Connection-level limits through the real binary: silent, idle TLS and
//! idle HTTP/2 connections are closed (a busy HTTP/2 stream is not), the
//! TLS handshake limit, `--max-connections` pausing accept while
//! established clients keep working, and the open-files limit raised at
//! start with the connection cap fitted to it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Version};
use http_body_util::Empty;
use support::tls::tls_connect;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(addr: SocketAddr, extra: &[&str]) -> (tempfile::TempDir, Proxy) {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "r.yaml",
        &docs(&[
            ingress("default", "conn", "conn.local", &[("/", "Prefix", "conn")]),
            backend_objects("default", "conn", &[addr]),
        ]),
    );
    let proxy = Proxy::start(dir.path(), extra).await;
    (dir, proxy)
}

/// Whether the proxy closes `stream` (reads reach EOF) within the deadline.
async fn closed_by_proxy<S: AsyncReadExt + Unpin>(stream: &mut S) -> bool {
    let mut buf = [0u8; 1024];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(DEADLINE, read).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_sends_a_byte_is_closed() {
    let (_dir, proxy) = start(echo("conn").await, &["--client-header-timeout", "1s"]).await;
    let mut silent = TcpStream::connect(("127.0.0.1", proxy.http_port))
        .await
        .unwrap();
    assert!(
        closed_by_proxy(&mut silent).await,
        "a silent connection stays open"
    );

    // After a handshake, a TLS connection that sends no request too.
    let mut idle_tls = tls_connect(proxy.https_port().await, Some("conn.local")).await;
    assert!(
        closed_by_proxy(&mut idle_tls).await,
        "an idle TLS connection stays open"
    );

    // And an HTTP/1.1 keep-alive connection idle after its request.
    let mut kept = TcpStream::connect(("127.0.0.1", proxy.http_port))
        .await
        .unwrap();
    kept.write_all(b"GET / HTTP/1.1\r\nHost: conn.local\r\n\r\n")
        .await
        .unwrap();
    assert!(
        closed_by_proxy(&mut kept).await,
        "an idle keep-alive connection stays open"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_handshake_that_does_not_finish_in_time_is_dropped() {
    let (_dir, proxy) = start(echo("conn").await, &["--tls-handshake-timeout", "1s"]).await;
    let port = proxy.https_port().await;
    // Half a ClientHello: the record header promises more than comes.
    let mut stalled = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    assert!(closed_by_proxy(&mut stalled).await);
    wait_until(DEADLINE, "the handshake timeout is counted", || async {
        proxy
            .metric("tls_handshake_errors_total{reason=\"timeout\"}")
            .await
            == Some(1.0)
    })
    .await;
}

fn h2_get(path: &str) -> Request<Empty<Bytes>> {
    Request::builder()
        .version(Version::HTTP_2)
        .uri(format!("http://conn.local{path}"))
        .body(Empty::new())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_closed_but_not_one_with_a_stream_open() {
    // The backend takes 3 s for /slow: three times the idle limit.
    let slow = backend(|req: Request<hyper::body::Incoming>| async move {
        if req.uri().path() == "/slow" {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        http::Response::new(full("done"))
    })
    .await;
    // Before its first request a connection is held to the header timeout
    // (its protocol is not known yet); after it, HTTP/2 to the idle one.
    let limits = [
        "--http2-idle-timeout",
        "1s",
        "--client-header-timeout",
        "2s",
    ];
    let (_dir, proxy) = start(slow, &limits).await;

    let (mut busy, busy_ended) = h2c(proxy.http_port).await;
    let resp = tokio::time::timeout(DEADLINE, busy.send_request(h2_get("/slow")))
        .await
        .unwrap()
        .expect("a stream open past the idle limit is answered");
    let resp = into_resp(resp).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.body, "done");

    // Idle from now on: GOAWAY, and the connection ends.
    tokio::time::timeout(DEADLINE, busy_ended)
        .await
        .expect("the idle HTTP/2 connection is closed")
        .unwrap();

    // One that never opened a stream is closed too.
    let (_never, never_ended) = h2c(proxy.http_port).await;
    tokio::time::timeout(DEADLINE, never_ended)
        .await
        .expect("an HTTP/2 connection with no stream is closed")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_accept_waits_and_established_clients_keep_working() {
    let (_dir, proxy) = start(echo("conn").await, &["--max-connections", "2"]).await;
    assert_eq!(proxy.metric("connections_max").await, Some(2.0));
    let port = proxy.http_port;
    let mut first = connect::<Empty<Bytes>>(port).await;
    let mut second = connect::<Empty<Bytes>>(port).await;
    for sender in [&mut first, &mut second] {
        let resp = sender
            .send_request(get_req("conn.local", "/"))
            .await
            .unwrap();
        assert_eq!(into_resp(resp).await.status, StatusCode::OK);
    }
    // A third client is taken by the kernel's backlog, not by the proxy.
    let mut third = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    third
        .write_all(b"GET / HTTP/1.1\r\nHost: conn.local\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    wait_until(DEADLINE, "accept pauses at the cap", || async {
        proxy.metric("accept_paused_total").await >= Some(1.0)
    })
    .await;
    // The established clients are served meanwhile.
    for sender in [&mut first, &mut second] {
        sender.ready().await.unwrap();
        let resp = tokio::time::timeout(DEADLINE, sender.send_request(get_req("conn.local", "/")))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(into_resp(resp).await.status, StatusCode::OK);
    }
    assert_eq!(proxy.metric("active_http_connections").await, Some(2.0));
    // One leaves: the third is accepted and answered.
    drop(first);
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, third.read_to_end(&mut answer))
        .await
        .expect("the waiting client is served once a place is free")
        .unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_files_limit_is_raised_and_the_cap_fits_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let addr = echo("conn").await;
    write(
        dir.path(),
        "r.yaml",
        &docs(&[
            ingress("default", "conn", "conn.local", &[("/", "Prefix", "conn")]),
            backend_objects("default", "conn", &[addr]),
        ]),
    );
    let args: Vec<String> = [
        "--manifests",
        &dir.path().display().to_string(),
        "--http-addr",
        "127.0.0.1:0",
        "--metrics-addr",
        "127.0.0.1:0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let proxy = Proxy::start_wrapped(&["prlimit", "--nofile=1024:4096", "--"], &args).await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", proxy.pid())).unwrap();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>();
    assert_eq!(
        &open_files[3..5],
        ["4096", "4096"],
        "soft raised to hard: {limits}"
    );
    // Half of what is left after 128 kept aside: each client may need a
    // backend connection too.
    assert_eq!(proxy.metric("connections_max").await, Some(1984.0));
    assert!(proxy.stderr().await.contains("--max-connections lowered"));
    assert_eq!(proxy.get("conn.local", "/").await.status, StatusCode::OK);
}

/// Reads HTTP/2 frame headers from `stream` until one of `kind` arrives;
/// `false` if the connection closed first.
async fn frame_arrives(stream: &mut TcpStream, kind: u8) -> bool {
    loop {
        let mut head = [0u8; 9];
        if stream.read_exact(&mut head).await.is_err() {
            return false;
        }
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let mut payload = vec![0u8; len];
        if stream.read_exact(&mut payload).await.is_err() {
            return false;
        }
        if head[3] == kind {
            return true;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_clients_are_pinged_and_dropped_when_they_do_not_answer() {
    // 2 s: long enough that a client answering pings on a loaded machine
    // keeps its connection.
    let (_dir, proxy) = start(echo("conn").await, &["--http2-keepalive", "2s"]).await;
    // A client that speaks HTTP/2 and then never answers a PING.
    let mut mute = TcpStream::connect(("127.0.0.1", proxy.http_port))
        .await
        .unwrap();
    mute.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    const PING: u8 = 0x6;
    let pinged = tokio::time::timeout(DEADLINE, frame_arrives(&mut mute, PING)).await;
    assert_eq!(pinged.ok(), Some(true), "a PING within the deadline");
    assert!(
        closed_by_proxy(&mut mute).await,
        "an unanswered ping drops the connection"
    );

    // A client that answers (hyper does) keeps its connection over several
    // ping intervals.
    let (mut sender, ended) = h2c(proxy.http_port).await;
    for _ in 0..2 {
        let resp = tokio::time::timeout(DEADLINE, sender.send_request(h2_get("/")))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(into_resp(resp).await.status, StatusCode::OK);
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    assert!(
        !ended.is_finished(),
        "the answering client stayed connected"
    );
}
