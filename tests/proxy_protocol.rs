//! `--proxy-protocol` through the real binary: v1 and v2 headers written by
//! hand and by haproxy (`send-proxy-v2`), on the HTTP and HTTPS listeners;
//! the header's client address reaches `X-Forwarded-For`, `X-Real-IP` and
//! source ranges; peers that break the rules are closed before HTTP.
//!
//! Loopback has a whole /8: the trusted balancer speaks from 127.0.0.2,
//! everyone else from 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use support::tls::*;
use support::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const BALANCER: [u8; 4] = [127, 0, 0, 2];
const NGINX: &str = "nginx.ingress.kubernetes.io";

/// The proxy with `--proxy-protocol`, trusting 127.0.0.2 alone; `open.pp`
/// is served to anyone, `office.pp` only to 203.0.113.0/24.
async fn serve() -> (tempfile::TempDir, Proxy) {
    let dir = tempfile::tempdir().unwrap();
    let parts = vec![
        annotated("open", "open.pp", "web", &[]),
        annotated(
            "office",
            "office.pp",
            "web",
            &[(&format!("{NGINX}/whitelist-source-range"), "203.0.113.0/24")],
        ),
        backend_objects("default", "web", &[echo("web").await]),
    ];
    write(dir.path(), "routes.yaml", &docs(&parts));
    let proxy = Proxy::start(
        dir.path(),
        &["--proxy-protocol", "--trusted-proxies", "127.0.0.2/32"],
    )
    .await;
    (dir, proxy)
}

async fn connect_from(source: [u8; 4], port: u16) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((source, 0))).unwrap();
    socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap()
}

/// Writes `header` then a GET for `host` (closing), and reads the whole
/// answer; empty when the proxy closed without one.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    header: &[u8],
    host: &str,
) -> String {
    stream.write_all(header).await.unwrap();
    let request = format!("GET /hi HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    // A refused connection may already be closed: the write can fail.
    let _ = stream.write_all(request.as_bytes()).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn v1(client: &str, port: u16) -> Vec<u8> {
    format!("PROXY TCP4 {client} 127.0.0.1 {port} 8000\r\n").into_bytes()
}

fn v2(client: [u8; 4], port: u16) -> Vec<u8> {
    let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    out.extend_from_slice(&[0x21, 0x11, 0, 12]);
    out.extend_from_slice(&client);
    out.extend_from_slice(&[127, 0, 0, 1]);
    out.extend_from_slice(&port.to_be_bytes());
    out.extend_from_slice(&8000u16.to_be_bytes());
    out
}

fn echoed<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    let prefix = format!("  {name}: ");
    answer.lines().find_map(|l| l.strip_prefix(prefix.as_str()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_balancer_header_gives_the_client_address() {
    let (_dir, proxy) = serve().await;
    let port = proxy.http_port;
    // (what, header, host, status line start, X-Real-IP the backend sees)
    type Case = (
        &'static str,
        Vec<u8>,
        &'static str,
        &'static str,
        Option<&'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            "v1",
            v1("203.0.113.7", 4000),
            "open.pp",
            "HTTP/1.1 200",
            Some("203.0.113.7"),
        ),
        (
            "v2",
            v2([203, 0, 113, 9], 4001),
            "open.pp",
            "HTTP/1.1 200",
            Some("203.0.113.9"),
        ),
        (
            "v1 unknown keeps the peer",
            b"PROXY UNKNOWN\r\n".to_vec(),
            "open.pp",
            "HTTP/1.1 200",
            Some("127.0.0.2"),
        ),
        // Source ranges judge the header's client, not the balancer.
        (
            "allowed by source range",
            v2([203, 0, 113, 10], 4002),
            "office.pp",
            "HTTP/1.1 200",
            Some("203.0.113.10"),
        ),
        (
            "refused by source range",
            v1("198.51.100.1", 4003),
            "office.pp",
            "HTTP/1.1 403",
            None,
        ),
    ];
    for (what, header, host, status, real_ip) in cases {
        let answer = exchange(connect_from(BALANCER, port).await, &header, host).await;
        assert!(answer.starts_with(status), "{what}: {answer}");
        if let Some(ip) = real_ip {
            assert_eq!(echoed(&answer, "x-real-ip"), Some(ip), "{what}: {answer}");
            assert_eq!(
                echoed(&answer, "x-forwarded-for"),
                Some(ip),
                "{what}: {answer}"
            );
        }
    }
    assert_eq!(
        proxy.metric("proxy_protocol_connections_total").await,
        Some(4.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_that_break_the_rules_are_closed_before_http() {
    let (_dir, proxy) = serve().await;
    let port = proxy.http_port;
    // A trusted balancer that sends no header, or a broken one.
    let missing = exchange(connect_from(BALANCER, port).await, b"", "open.pp").await;
    assert_eq!(missing, "", "no header from a trusted peer");
    let broken = exchange(
        connect_from(BALANCER, port).await,
        b"PROXY TCP4 not an address\r\n",
        "open.pp",
    )
    .await;
    assert_eq!(broken, "", "a malformed header");
    // Anyone else who sends one: it could pick its own address.
    let forged = exchange(
        connect_from([127, 0, 0, 1], port).await,
        &v1("203.0.113.7", 4000),
        "office.pp",
    )
    .await;
    assert_eq!(forged, "", "a header from an untrusted peer");
    let forged2 = exchange(
        connect_from([127, 0, 0, 1], port).await,
        &v2([203, 0, 113, 7], 4000),
        "open.pp",
    )
    .await;
    assert_eq!(forged2, "", "a v2 header from an untrusted peer");
    // Without one, an untrusted peer is served as itself.
    let direct = exchange(connect_from([127, 0, 0, 1], port).await, b"", "open.pp").await;
    assert!(direct.starts_with("HTTP/1.1 200"), "{direct}");
    assert_eq!(echoed(&direct, "x-real-ip"), Some("127.0.0.1"));
    for (reason, want) in [("missing", 1.0), ("malformed", 1.0), ("untrusted", 2.0)] {
        let key = format!("proxy_protocol_errors_total{{reason=\"{reason}\"}}");
        assert_eq!(proxy.metric(&key).await, Some(want), "{reason}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_header_comes_before_the_tls_handshake() {
    let (_dir, proxy) = serve().await;
    let https = proxy.https_port().await;
    let mut stream = connect_from(BALANCER, https).await;
    stream.write_all(&v2([192, 0, 2, 44], 5000)).await.unwrap();
    let config = client_config(rustls::ALL_VERSIONS, &["http/1.1"]);
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("open.pp").unwrap();
    let tls = connector.connect(name, stream).await.unwrap();
    let answer = exchange(tls, b"", "open.pp").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(echoed(&answer, "x-real-ip"), Some("192.0.2.44"));
    assert_eq!(echoed(&answer, "x-forwarded-proto"), Some("https"));
}

/// haproxy in TCP mode in front, writing `send-proxy-v2` (and `send-proxy`
/// for v1): the client's own address (127.0.0.3) reaches the backend,
/// though RustStrom's peer is haproxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_in_front_with_send_proxy() {
    let (_dir, proxy) = serve().await;
    for (option, what) in [("send-proxy-v2", "v2"), ("send-proxy", "v1")] {
        let haproxy = Haproxy::start(proxy.http_port, option);
        let port = haproxy.port;
        let mut answer = String::new();
        // haproxy binds its port as it starts: try until it answers.
        for _ in 0..100 {
            let socket = TcpSocket::new_v4().unwrap();
            socket.bind(SocketAddr::from(([127, 0, 0, 3], 0))).unwrap();
            if let Ok(stream) = socket
                .connect(SocketAddr::from(([127, 0, 0, 1], port)))
                .await
            {
                answer = exchange(stream, b"", "open.pp").await;
                if !answer.is_empty() {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(answer.starts_with("HTTP/1.1 200"), "{what}: {answer}");
        assert_eq!(echoed(&answer, "x-real-ip"), Some("127.0.0.3"), "{what}");
    }
}

/// haproxy forwarding TCP from a free port to `target`, speaking to it from
/// 127.0.0.2 (the trusted balancer).
struct Haproxy {
    port: u16,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    fn start(target: u16, option: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let config = format!(
            "global\n  log stderr format raw local0 err\n\
             defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 10s\n  timeout server 10s\n\
             frontend front\n  bind 127.0.0.1:{port}\n  default_backend back\n\
             backend back\n  source 127.0.0.2\n  server rs 127.0.0.1:{target} {option}\n"
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let child = std::process::Command::new("haproxy")
            .arg("-f")
            .arg(&path)
            .arg("-db")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("haproxy is installed by scripts/tools");
        Self {
            port,
            child,
            _dir: dir,
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
