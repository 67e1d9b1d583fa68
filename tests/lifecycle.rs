//! The process lifecycle: SIGTERM drains requests in flight and exits 0,
//! refusing new connections meanwhile; SIGINT exits 0; `--shutdown-grace`
//! running out and a second signal cut what is still in flight; the admin
//! port's `/healthz`, `/readyz` and `/metrics`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly

mod support;

use std::sync::Arc;
use std::time::Duration;

use http::{Response, StatusCode};
use support::*;
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_requests_in_flight_then_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    // The backend tells the test a request arrived, then answers when the
    // test lets it (or after the deadline, so a failing test still ends). A
    // shorter fallback let the answer come on its own on a loaded machine,
    // before the test had seen the drain begin.
    let (arrived_tx, mut arrived) = mpsc::unbounded_channel::<()>();
    let release = Arc::new(Notify::new());
    let backend_release = release.clone();
    let slow = backend(move |_req| {
        let arrived_tx = arrived_tx.clone();
        let release = backend_release.clone();
        async move {
            let _ = arrived_tx.send(());
            let _ = tokio::time::timeout(DEADLINE, release.notified()).await;
            Response::new(full("finally\n"))
        }
    })
    .await;
    write(
        dir.path(),
        "slow.yaml",
        &docs(&[
            ingress("default", "slow", "slow.local", &[("/", "Prefix", "slow")]),
            backend_objects("default", "slow", &[slow]),
        ]),
    );
    let mut proxy = Proxy::start(dir.path(), &["--shutdown-grace", "10s"]).await;
    let port = proxy.http_port;

    let in_flight = tokio::spawn(async move { get(port, "slow.local", "/slow").await });
    tokio::time::timeout(DEADLINE, arrived.recv())
        .await
        .expect("request reached the backend")
        .unwrap();

    proxy.signal("TERM");
    // New connections are refused once the drain began...
    wait_until(DEADLINE, "new connections refused", || async {
        TcpStream::connect(("127.0.0.1", port)).await.is_err()
    })
    .await;
    // ...while the request in flight is still being waited for.
    assert!(!in_flight.is_finished(), "the request in flight was cut");
    assert!(proxy.running(), "exited before the request in flight ended");

    release.notify_one();
    let resp = tokio::time::timeout(DEADLINE, in_flight)
        .await
        .expect("request in flight completed")
        .expect("request task");
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.body, "finally\n");

    let status = proxy
        .wait_exit(Duration::from_secs(12))
        .await
        .expect("process exited after the drain");
    assert_eq!(status.code(), Some(0), "exit status {status}");
    let stderr = proxy.stderr().await;
    assert!(stderr.contains("SIGTERM"), "{stderr}");
}

/// A backend behind `stuck.local` that reports each request's arrival
/// and never answers it.
async fn stuck(dir: &std::path::Path) -> mpsc::UnboundedReceiver<()> {
    let (arrived_tx, arrived) = mpsc::unbounded_channel::<()>();
    let addr = backend(move |_req| {
        let arrived_tx = arrived_tx.clone();
        async move {
            let _ = arrived_tx.send(());
            std::future::pending::<()>().await;
            unreachable!("never answers")
        }
    })
    .await;
    write(
        dir,
        "stuck.yaml",
        &docs(&[
            ingress(
                "default",
                "stuck",
                "stuck.local",
                &[("/", "Prefix", "stuck")],
            ),
            backend_objects("default", "stuck", &[addr]),
        ]),
    );
    arrived
}

/// Sends a GET for `stuck.local` on its own connection and waits until it
/// reached the backend; the handle yields what the client got.
async fn in_flight(
    port: u16,
    arrived: &mut mpsc::UnboundedReceiver<()>,
) -> tokio::task::JoinHandle<Result<Response<hyper::body::Incoming>, hyper::Error>> {
    let mut sender = connect::<http_body_util::Empty<bytes::Bytes>>(port).await;
    let request =
        tokio::spawn(async move { sender.send_request(get_req("stuck.local", "/")).await });
    tokio::time::timeout(DEADLINE, arrived.recv())
        .await
        .expect("request reached the backend")
        .unwrap();
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_still_in_flight_when_the_grace_runs_out_is_cut_and_exit_is_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut arrived = stuck(dir.path()).await;
    let mut proxy = Proxy::start(dir.path(), &["--shutdown-grace", "1s"]).await;
    let request = in_flight(proxy.http_port, &mut arrived).await;

    proxy.signal("TERM");
    let status = proxy
        .wait_exit(DEADLINE)
        .await
        .expect("exited when the grace ran out");
    assert_eq!(status.code(), Some(0), "exit status {status}");
    // The connection closes with the process: no response, not a hang.
    let got = tokio::time::timeout(DEADLINE, request)
        .await
        .expect("the client learned the connection closed")
        .unwrap();
    let error = got.expect_err("a response after the grace ran out");
    assert!(error.is_incomplete_message(), "{error:?}");
    let stderr = proxy.stderr().await;
    assert!(stderr.contains("shutdown grace elapsed"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut arrived = stuck(dir.path()).await;
    // A grace far longer than the wait below: only the second signal can
    // end the process in time.
    let mut proxy = Proxy::start(dir.path(), &["--shutdown-grace", "60s"]).await;
    let port = proxy.http_port;
    let request = in_flight(port, &mut arrived).await;

    proxy.signal("TERM");
    wait_until(DEADLINE, "the drain began", || async {
        TcpStream::connect(("127.0.0.1", port)).await.is_err()
    })
    .await;
    assert!(proxy.running(), "exited with a request in flight");
    proxy.signal("INT");
    let status = proxy
        .wait_exit(DEADLINE)
        .await
        .expect("exited at the second signal");
    // 128 + SIGINT, as a shell reports an interrupted command.
    assert_eq!(status.code(), Some(130), "exit status {status}");
    let got = tokio::time::timeout(DEADLINE, request)
        .await
        .expect("the client learned the connection closed")
        .unwrap();
    let error = got.expect_err("a response after the second signal");
    assert!(error.is_incomplete_message(), "{error:?}");
    let stderr = proxy.stderr().await;
    assert!(stderr.contains("second signal"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let addr = echo("int").await;
    write(
        dir.path(),
        "int.yaml",
        &docs(&[
            ingress("default", "int", "int.local", &[("/", "Prefix", "int")]),
            backend_objects("default", "int", &[addr]),
        ]),
    );
    let mut proxy = Proxy::start(dir.path(), &[]).await;
    assert!(routes_to(proxy.http_port, "int.local", "/", "int").await);
    assert_eq!(proxy.admin("/readyz").await.status, StatusCode::OK);

    proxy.signal("INT");
    let status = proxy
        .wait_exit(Duration::from_secs(12))
        .await
        .expect("process exited after SIGINT");
    assert_eq!(status.code(), Some(0), "exit status {status}");
    assert!(
        TcpStream::connect(("127.0.0.1", proxy.http_port))
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_idle_keep_alive_connection_exits_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let addr = echo("idle").await;
    write(
        dir.path(),
        "idle.yaml",
        &docs(&[
            ingress("default", "idle", "idle.local", &[("/", "Prefix", "idle")]),
            backend_objects("default", "idle", &[addr]),
        ]),
    );
    // A grace far longer than the wait below: an idle connection must not
    // hold the exit.
    let mut proxy = Proxy::start(dir.path(), &["--shutdown-grace", "60s"]).await;
    let mut idle = connect::<http_body_util::Empty<bytes::Bytes>>(proxy.http_port).await;
    let resp = into_resp(idle.send_request(get_req("idle.local", "/")).await.unwrap()).await;
    assert_eq!(resp.status, StatusCode::OK);

    proxy.signal("TERM");
    let status = proxy
        .wait_exit(Duration::from_secs(12))
        .await
        .expect("an idle keep-alive connection held the process");
    assert_eq!(status.code(), Some(0), "exit status {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_answer() {
    let dir = tempfile::tempdir().unwrap();
    let addr = echo("adm").await;
    write(
        dir.path(),
        "adm.yaml",
        &docs(&[
            ingress("default", "adm", "adm.local", &[("/", "Prefix", "adm")]),
            backend_objects("default", "adm", &[addr]),
        ]),
    );
    let proxy = Proxy::start(dir.path(), &[]).await;

    let health = proxy.admin("/healthz").await;
    assert_eq!(health.status, StatusCode::OK);
    let ready = proxy.admin("/readyz").await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    assert_eq!(
        proxy.admin("/nothing-here").await.status,
        StatusCode::NOT_FOUND
    );

    assert!(routes_to(proxy.http_port, "adm.local", "/", "adm").await);
    let metrics = proxy.metrics().await;
    for family in [
        "http_requests_total",
        "http_request_duration_seconds",
        "http_errors_total",
        "http_timeouts_total",
        "active_http_connections",
        "routing_table_generation",
        "http_status_codes_total",
        "manifest_errors_total",
        "config_reloads_total",
    ] {
        assert!(
            metrics.contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{metrics}"
        );
    }
    assert_eq!(metric_value(&metrics, "http_requests_total"), Some(1.0));
    assert_eq!(
        metric_value(&metrics, "http_request_duration_seconds_count"),
        Some(1.0)
    );
    assert_eq!(
        metric_value(&metrics, "routing_table_generation"),
        Some(1.0)
    );
    assert_eq!(metric_value(&metrics, "routing_table_routes"), Some(1.0));
    assert_eq!(metric_value(&metrics, "http_errors_total"), Some(0.0));

    // An open client connection shows in active_http_connections.
    let mut open = connect::<http_body_util::Empty<bytes::Bytes>>(proxy.http_port).await;
    let _ = into_resp(open.send_request(get_req("adm.local", "/")).await.unwrap()).await;
    wait_until(
        DEADLINE,
        "active_http_connections counts the open connection",
        || async { proxy.metric("active_http_connections").await.unwrap_or(0.0) >= 1.0 },
    )
    .await;
    drop(open);
    wait_until(DEADLINE, "active_http_connections back to 0", || async {
        proxy.metric("active_http_connections").await == Some(0.0)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_right_after_start_still_exits_0() {
    // Once the ports are announced, SIGTERM must drain, not kill.
    let dir = tempfile::tempdir().unwrap();
    for round in 0..10 {
        let mut proxy = Proxy::start(dir.path(), &[]).await;
        proxy.signal("TERM");
        let status = proxy
            .wait_exit(DEADLINE)
            .await
            .expect("process exited after SIGTERM");
        assert_eq!(
            status.code(),
            Some(0),
            "round {round}: exit status {status}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_waits_for_open_websockets() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ws_addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "ws.yaml",
        &docs(&[
            ingress("default", "ws", "ws.local", &[("/", "Prefix", "ws")]),
            backend_objects("default", "ws", &[ws_addr]),
        ]),
    );
    let mut proxy = Proxy::start(dir.path(), &["--shutdown-grace", "10s"]).await;
    let port = proxy.http_port;
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let request = "ws://ws.local/live".into_client_request().unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .expect("WebSocket handshake");
    ws.send(Message::text("before")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("before"));

    proxy.signal("TERM");
    wait_until(DEADLINE, "new connections refused", || async {
        TcpStream::connect(("127.0.0.1", port)).await.is_err()
    })
    .await;
    // The open WebSocket is a request in flight: it keeps working during
    // the grace period.
    assert!(proxy.running(), "exited with a WebSocket open");
    ws.send(Message::text("during drain")).await.unwrap();
    let back = tokio::time::timeout(DEADLINE, ws.next())
        .await
        .expect("echo in time")
        .expect("WebSocket still open")
        .expect("message");
    assert_eq!(back, Message::text("during drain"));

    // Closed by the client: nothing is left in flight, the process exits.
    ws.close(None).await.unwrap();
    drop(ws);
    let status = proxy
        .wait_exit(Duration::from_secs(12))
        .await
        .expect("process exited once the WebSocket closed");
    assert_eq!(status.code(), Some(0), "exit status {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_with_a_broken_file_and_serves_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let addr = echo("fine").await;
    write(
        dir.path(),
        "fine.yaml",
        &docs(&[
            ingress("default", "fine", "fine.local", &[("/", "Prefix", "fine")]),
            backend_objects("default", "fine", &[addr]),
        ]),
    );
    write(
        dir.path(),
        "broken.yaml",
        "kind: Ingress\nmetadata: {name: [\n",
    );
    let proxy = Proxy::start(dir.path(), &[]).await;
    assert!(routes_to(proxy.http_port, "fine.local", "/", "fine").await);
    assert_eq!(proxy.admin("/readyz").await.status, StatusCode::OK);
    assert!(proxy.metric("manifest_errors_total").await.unwrap_or(0.0) >= 1.0);
    assert!(
        proxy
            .metric("config_reloads_total{result=\"error\"}")
            .await
            .unwrap_or(0.0)
            >= 1.0
    );
    let stderr = proxy.stderr().await;
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("WARN") && l.contains("broken.yaml")),
        "{stderr}"
    );
}

#[test]
fn port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = run_bin(&[
        "--manifests",
        dir.path().to_str().unwrap(),
        "--http-addr",
        &addr,
        "--metrics-addr",
        "127.0.0.1:0",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&addr), "{err}");
    drop(taken);
}

#[test]
fn missing_manifests_folder_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent");
    let out = run_bin(&[
        "--manifests",
        missing.to_str().unwrap(),
        "--http-addr",
        "127.0.0.1:0",
        "--metrics-addr",
        "127.0.0.1:0",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("absent"), "{err}");
}
