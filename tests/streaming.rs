//! Bodies stream through the proxy: a large upload arrives whole (sized and
//! chunked), a response reaches the client chunk by chunk without being
//! buffered, and WebSocket connections are tunnelled both ways.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly

mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use support::*;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const FOUR_MIB: usize = 4 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_upload_arrives_whole() {
    let dir = tempfile::tempdir().unwrap();
    let addr = echo("upload").await;
    write(
        dir.path(),
        "up.yaml",
        &docs(&[
            ingress("default", "up", "up.local", &[("/", "Prefix", "up")]),
            backend_objects("default", "up", &[addr]),
        ]),
    );
    let proxy = Proxy::start(dir.path(), &[]).await;

    // With Content-Length.
    let body = Bytes::from(vec![b'x'; FOUR_MIB]);
    let resp = send(
        proxy.http_port,
        Request::post("/upload")
            .header("host", "up.local")
            .body(Full::new(body))
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert!(resp.body.contains("method: POST\n"), "{}", resp.body);
    assert!(resp.body.contains("body: 4194304 bytes\n"), "{}", resp.body);

    // Chunked: 64 chunks of 64 KiB, no length known up front.
    let chunks = futures::stream::iter(
        (0..64).map(|_| Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'y'; 64 * 1024])))),
    );
    let resp = send(
        proxy.http_port,
        Request::post("/upload")
            .header("host", "up.local")
            .body(StreamBody::new(chunks))
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert!(resp.body.contains("body: 4194304 bytes\n"), "{}", resp.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_is_streamed_not_buffered() {
    let dir = tempfile::tempdir().unwrap();
    let release = Arc::new(Notify::new());
    let backend_release = release.clone();
    let addr = backend(move |_req| {
        let release = backend_release.clone();
        async move {
            let (tx, rx) = futures::channel::mpsc::unbounded::<Bytes>();
            tx.unbounded_send(Bytes::from_static(b"first-chunk\n"))
                .unwrap();
            tokio::spawn(async move {
                // Never longer than the test's deadline, so nothing hangs.
                let _ = tokio::time::timeout(Duration::from_secs(15), release.notified()).await;
                let _ = tx.unbounded_send(Bytes::from_static(b"the-rest\n"));
            });
            let body = StreamBody::new(rx.map(|b| Ok::<_, Infallible>(Frame::data(b))));
            Response::new(BodyExt::boxed(body))
        }
    })
    .await;
    write(
        dir.path(),
        "stream.yaml",
        &docs(&[
            ingress(
                "default",
                "stream",
                "stream.local",
                &[("/", "Prefix", "stream")],
            ),
            backend_objects("default", "stream", &[addr]),
        ]),
    );
    let proxy = Proxy::start(dir.path(), &[]).await;

    let mut sender = connect(proxy.http_port).await;
    let resp = tokio::time::timeout(
        DEADLINE,
        sender.send_request(get_req("stream.local", "/events")),
    )
    .await
    .expect("response head before the body is complete")
    .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();

    // The backend has not finished its body: the first chunk must arrive
    // anyway.
    let first = next_data(&mut body).await;
    assert_eq!(first, "first-chunk\n");
    release.notify_one();
    let mut rest = String::new();
    while let Some(frame) = tokio::time::timeout(DEADLINE, body.frame())
        .await
        .expect("rest of the body in time")
    {
        if let Ok(data) = frame.unwrap().into_data() {
            rest.push_str(&String::from_utf8_lossy(&data));
        }
    }
    assert_eq!(rest, "the-rest\n");
}

async fn next_data(body: &mut hyper::body::Incoming) -> String {
    loop {
        let frame = tokio::time::timeout(DEADLINE, body.frame())
            .await
            .expect("first chunk arrived while the backend was still sending")
            .expect("body ended early")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            return String::from_utf8_lossy(&data).into_owned();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_messages_go_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let addr = ws_echo().await;
    write(
        dir.path(),
        "ws.yaml",
        &docs(&[
            ingress("default", "ws", "ws.local", &[("/chat", "Prefix", "ws")]),
            backend_objects("default", "ws", &[addr]),
        ]),
    );
    let proxy = Proxy::start(dir.path(), &[]).await;

    let stream = TcpStream::connect(("127.0.0.1", proxy.http_port))
        .await
        .unwrap();
    // The URL sets the Host header (ws.local); the socket goes to the proxy.
    let request = "ws://ws.local/chat/room-1".into_client_request().unwrap();
    let (mut ws, response) =
        tokio::time::timeout(DEADLINE, tokio_tungstenite::client_async(request, stream))
            .await
            .expect("handshake in time")
            .expect("WebSocket handshake through the proxy");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);

    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let messages = [
        Message::text("hello through the proxy"),
        Message::binary(vec![0u8, 1, 2, 255]),
        Message::text("second"),
        Message::binary(big),
    ];
    for msg in messages {
        ws.send(msg.clone()).await.unwrap();
        let back = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("echo in time")
            .expect("connection open")
            .expect("message");
        assert_eq!(back, msg);
    }
    ws.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_upload() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let addr = echo("cont").await;
    write(
        dir.path(),
        "cont.yaml",
        &docs(&[
            ingress("default", "cont", "cont.local", &[("/", "Prefix", "cont")]),
            backend_objects("default", "cont", &[addr]),
        ]),
    );
    let proxy = Proxy::start(dir.path(), &[]).await;

    // As curl does for large uploads: headers first, body after 100 Continue.
    let mut stream = TcpStream::connect(("127.0.0.1", proxy.http_port))
        .await
        .unwrap();
    stream
        .write_all(
            b"POST /up HTTP/1.1\r\nHost: cont.local\r\nContent-Length: 5\r\n\
              Expect: 100-continue\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
        let n = tokio::time::timeout(DEADLINE, stream.read(&mut buf))
            .await
            .expect("100 Continue in time")
            .unwrap();
        assert!(n > 0, "closed before 100 Continue");
        got.extend_from_slice(&buf[..n]);
    }
    let interim = String::from_utf8_lossy(&got).into_owned();
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim}");
    stream.write_all(b"hello").await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut rest))
        .await
        .expect("response in time")
        .unwrap();
    got.extend_from_slice(&rest);
    let answer = String::from_utf8_lossy(&got);
    assert!(answer.contains("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("body: 5 bytes\n"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_timeout_covers_headers_only() {
    let dir = tempfile::tempdir().unwrap();
    let release = Arc::new(Notify::new());
    let backend_release = release.clone();
    let slow_body = backend(move |_req| {
        let release = backend_release.clone();
        async move {
            let (tx, rx) = futures::channel::mpsc::unbounded::<Bytes>();
            tx.unbounded_send(Bytes::from_static(b"head-on-time\n"))
                .unwrap();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(15), release.notified()).await;
                let _ = tx.unbounded_send(Bytes::from_static(b"late-but-fine\n"));
            });
            Response::new(BodyExt::boxed(StreamBody::new(
                rx.map(|b| Ok::<_, Infallible>(Frame::data(b))),
            )))
        }
    })
    .await;
    let ws = ws_echo().await;
    write(
        dir.path(),
        "t.yaml",
        &docs(&[
            ingress(
                "default",
                "t",
                "t.local",
                &[("/body", "Prefix", "body"), ("/ws", "Prefix", "ws")],
            ),
            backend_objects("default", "body", &[slow_body]),
            backend_objects("default", "ws", &[ws]),
        ]),
    );
    let proxy = Proxy::start(dir.path(), &["--request-timeout", "200ms"]).await;

    // A body still streaming after the timeout is not cut.
    let mut sender = connect(proxy.http_port).await;
    let resp = sender
        .send_request(get_req("t.local", "/body"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    assert_eq!(next_data(&mut body).await, "head-on-time\n");
    tokio::time::sleep(Duration::from_millis(600)).await;
    release.notify_one();
    assert_eq!(next_data(&mut body).await, "late-but-fine\n");

    // A WebSocket idle for longer than the timeout stays open.
    let stream = TcpStream::connect(("127.0.0.1", proxy.http_port))
        .await
        .unwrap();
    let request = "ws://t.local/ws".into_client_request().unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .expect("WebSocket handshake");
    ws.send(Message::text("one")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("one"));
    tokio::time::sleep(Duration::from_millis(600)).await;
    ws.send(Message::text("two")).await.unwrap();
    let back = tokio::time::timeout(DEADLINE, ws.next())
        .await
        .expect("echo in time")
        .expect("still open")
        .expect("message");
    assert_eq!(back, Message::text("two"));
}
