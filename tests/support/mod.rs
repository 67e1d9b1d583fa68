//! Shared helpers for the black-box tests: start the real binary, write
//! manifests, run backends, send requests, poll with a deadline.
#![allow(dead_code)] // Each test file uses a different part of this module.

use std::convert::Infallible;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, oneshot};
use tokio::time::Instant;

pub mod browser;
pub mod shop;
pub mod tls;

/// Upper bound for anything a test waits for: a hang fails, it never blocks.
pub const DEADLINE: Duration = Duration::from_secs(10);

pub const BIN: &str = env!("CARGO_BIN_EXE_rust-strom");

// ---------------------------------------------------------------------------
// The proxy process
// ---------------------------------------------------------------------------

/// A running `rust-strom` serving a manifests folder. Killed on drop; its
/// stderr is printed when the test failed.
pub struct Proxy {
    child: Child,
    pub http_port: u16,
    pub metrics_port: u16,
    /// The dashboard's port, unless started with `--dashboard false`.
    pub dashboard_port: Option<u16>,
    lines: Arc<Mutex<Vec<String>>>,
    /// Standard output's lines (the access log), when captured.
    out: Arc<parking_lot::Mutex<Vec<String>>>,
}

impl Proxy {
    /// Starts the binary on 127.0.0.1 (ports picked by the OS) with two
    /// workers, plus `extra` flags, and waits until both ports are known.
    pub async fn start(manifests: &Path, extra: &[&str]) -> Proxy {
        let mut args: Vec<String> = vec![
            "--manifests".into(),
            manifests.display().to_string(),
            "--http-addr".into(),
            "127.0.0.1:0".into(),
            "--metrics-addr".into(),
            "127.0.0.1:0".into(),
            "--workers".into(),
            "2".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::start_args(&args).await
    }

    /// Starts the binary with exactly `args`; they must make it listen.
    pub async fn start_args(args: &[String]) -> Proxy {
        Self::launch(&[], args, &[]).await
    }

    /// Starts the binary with exactly `args` and `env` added to the
    /// environment; they must make it listen and log at info level.
    pub async fn start_env(args: &[String], env: &[(String, String)]) -> Proxy {
        Self::launch(&[], args, env).await
    }

    /// [`Self::start_args`] with more environment variables.
    pub async fn start_args_env(args: &[String], env: &[(&str, &str)]) -> Proxy {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::launch(&[], args, &env).await
    }

    /// Starts the binary through `wrapper` (a command that runs the rest of
    /// its arguments, such as `prlimit --nofile=...`), with `args`.
    pub async fn start_wrapped(wrapper: &[&str], args: &[String]) -> Proxy {
        Self::launch(wrapper, args, &[]).await
    }

    /// [`Self::start_args`], keeping what the process writes to standard
    /// output (see [`Self::stdout_lines`]).
    pub async fn start_capturing(args: &[String]) -> Proxy {
        Self::spawn(&[], args, &[], true).await
    }

    async fn launch(wrapper: &[&str], args: &[String], env: &[(String, String)]) -> Proxy {
        Self::spawn(wrapper, args, env, false).await
    }

    async fn spawn(
        wrapper: &[&str],
        args: &[String],
        env: &[(String, String)],
        capture: bool,
    ) -> Proxy {
        let bin = bin_path();
        let (program, before) = match wrapper.split_first() {
            Some((program, rest)) => (*program, [rest, &[bin.as_str()]].concat()),
            None => (bin.as_str(), Vec::new()),
        };
        let mut child = Command::new(program)
            .args(before)
            .args(args)
            // TEST_RUST_LOG=rust_strom=debug shows more when a test fails.
            .env(
                "RUST_LOG",
                std::env::var("TEST_RUST_LOG").unwrap_or("info".into()),
            )
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(if capture {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start rust-strom");
        let out = Arc::new(parking_lot::Mutex::new(Vec::new()));
        if let Some(stdout) = child.stdout.take() {
            let out = out.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    out.lock().push(line);
                }
            });
        }
        let stderr = child.stderr.take().expect("stderr is piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (ports_tx, ports_rx) = oneshot::channel::<(u16, u16, Option<u16>)>();
        let kept = lines.clone();
        std::thread::spawn(move || {
            let mut ports_tx = Some(ports_tx);
            let (mut http, mut metrics, mut dashboard) = (None, None, None);
            // Keeps draining until the process closes stderr, so the pipe
            // never fills.
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("HTTP proxy listening") {
                    http = listening_port(&line);
                } else if line.contains("metrics and health listening") {
                    metrics = listening_port(&line);
                } else if line.contains("dashboard listening") {
                    // Bound before the admin port, so known by then.
                    dashboard = listening_port(&line);
                }
                kept.blocking_lock().push(line);
                if let (Some(h), Some(m)) = (http, metrics)
                    && let Some(tx) = ports_tx.take()
                {
                    let _ = tx.send((h, m, dashboard));
                }
            }
        });
        let ports = tokio::time::timeout(Duration::from_secs(20), ports_rx).await;
        match ports {
            Ok(Ok((http_port, metrics_port, dashboard_port))) => Proxy {
                child,
                http_port,
                metrics_port,
                dashboard_port,
                lines,
                out,
            },
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                // Give the reader thread a moment to collect the last lines.
                tokio::time::sleep(Duration::from_millis(200)).await;
                panic!(
                    "rust-strom did not report its ports; stderr:\n{}",
                    lines.lock().await.join("\n")
                );
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The lines written to standard output so far (with
    /// [`Self::start_capturing`]).
    pub fn stdout_lines(&self) -> Vec<String> {
        self.out.lock().clone()
    }

    /// Everything the process wrote to stderr so far.
    pub async fn stderr(&self) -> String {
        self.lines.lock().await.join("\n")
    }

    /// Sends a signal by name (`TERM`, `INT`) with the `kill` command.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("cannot run kill");
        assert!(status.success(), "kill -{name} failed: {status}");
    }

    /// Waits for the process to exit; `None` when it is still running after
    /// `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// GET on the admin port.
    pub async fn admin(&self, path: &str) -> Resp {
        get(self.metrics_port, "localhost", path).await
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        let resp = self.admin("/metrics").await;
        assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
        resp.body
    }

    /// One sample of `/metrics`, `key` being the name with its labels as
    /// rendered (`http_status_codes_total{code="504"}`).
    pub async fn metric(&self, key: &str) -> Option<f64> {
        metric_value(&self.metrics().await, key)
    }

    /// GET through the proxy on a new connection.
    pub async fn get(&self, host: &str, path: &str) -> Resp {
        get(self.http_port, host, path).await
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking()
            && let Ok(lines) = self.lines.try_lock()
        {
            eprintln!("--- rust-strom stderr ---\n{}\n---", lines.join("\n"));
        }
    }
}

/// `... listening addr=127.0.0.1:34567` -> 34567.
fn listening_port(line: &str) -> Option<u16> {
    let addr = line.split("addr=").nth(1)?.split_whitespace().next()?;
    addr.parse::<SocketAddr>().ok().map(|a| a.port())
}

/// The value of `key` in a Prometheus text exposition.
pub fn metric_value(text: &str, key: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        (k == key).then(|| v.parse().ok()).flatten()
    })
}

/// Runs the binary to its end (for commands that exit by themselves).
pub fn run_bin(args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start rust-strom");
    let deadline = std::time::Instant::now() + DEADLINE;
    // Output is small: polling then collecting cannot fill a pipe first.
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "rust-strom {args:?} did not exit in time; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------
// Manifests
// ---------------------------------------------------------------------------

/// An Ingress with one rule for `host` (none when empty) and the given
/// `(path, pathType, service)` paths, all to the Service port named `http`.
pub fn ingress(ns: &str, name: &str, host: &str, paths: &[(&str, &str, &str)]) -> String {
    let mut out = format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: {ns}\n\
         spec:\n  rules:\n"
    );
    if host.is_empty() {
        out.push_str("  - http:\n");
    } else {
        out.push_str(&format!("  - host: \"{host}\"\n    http:\n"));
    }
    out.push_str("      paths:\n");
    for (path, kind, svc) in paths {
        out.push_str(&format!(
            "      - path: \"{path}\"\n        pathType: {kind}\n        backend:\n          service:\n            \
             name: {svc}\n            port: {{name: http}}\n"
        ));
    }
    out
}

/// An Ingress with only a `defaultBackend`.
pub fn default_backend(ns: &str, name: &str, svc: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: {ns}\n\
         spec:\n  defaultBackend:\n    service:\n      name: {svc}\n      port: {{name: http}}\n"
    )
}

/// A Service with one port `http` (80 -> targetPort `http`).
pub fn service(ns: &str, name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {ns}\n\
         spec:\n  ports:\n  - name: http\n    port: 80\n    targetPort: http\n"
    )
}

/// An EndpointSlice of `svc` with one ready endpoint, 127.0.0.1:`port`.
pub fn slice(ns: &str, name: &str, svc: &str, port: u16) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}\n  namespace: {ns}\n  \
         labels: {{kubernetes.io/service-name: {svc}}}\naddressType: IPv4\n\
         ports: [{{name: http, port: {port}, protocol: TCP}}]\n\
         endpoints:\n- addresses: [\"127.0.0.1\"]\n  conditions: {{ready: true}}\n"
    )
}

/// An Ingress in `default` for `host` -> `svc` at `/` (Prefix) with these
/// annotations (whole keys; values in YAML double quotes).
pub fn annotated(name: &str, host: &str, svc: &str, annotations: &[(&str, &str)]) -> String {
    let base = ingress("default", name, host, &[("/", "Prefix", svc)]);
    if annotations.is_empty() {
        return base;
    }
    let mut lines = String::from("metadata:\n  annotations:\n");
    for (k, v) in annotations {
        lines.push_str(&format!("    {k}: \"{v}\"\n"));
    }
    base.replacen("metadata:\n", &lines, 1)
}

/// What `rust-strom check` says about a manifests folder, standard output
/// and error together.
pub fn check_text(dir: &Path) -> String {
    let out = run_bin(&["check", "--manifests", &dir.display().to_string()]);
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// A Service and one EndpointSlice per backend address.
pub fn backend_objects(ns: &str, svc: &str, addrs: &[SocketAddr]) -> String {
    let mut docs = vec![service(ns, svc)];
    for (i, addr) in addrs.iter().enumerate() {
        docs.push(slice(ns, &format!("{svc}-{i}"), svc, addr.port()));
    }
    docs.join("---\n")
}

/// Joins YAML documents into one multi-document file.
pub fn docs(parts: &[String]) -> String {
    parts.join("---\n")
}

/// Writes a file in place (truncate and write, as many tools do).
pub fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write manifest");
}

/// Writes a hidden temp file beside `name` and renames it over `name`.
pub fn write_atomic(dir: &Path, name: &str, text: &str) {
    let staged = dir.join(format!(".{name}.tmp"));
    std::fs::write(&staged, text).expect("write staged manifest");
    std::fs::rename(&staged, dir.join(name)).expect("rename manifest");
}

// ---------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------

pub type TestBody = BoxBody<Bytes, Infallible>;

pub fn full(text: impl Into<Bytes>) -> TestBody {
    Full::new(text.into()).boxed()
}

/// The library's echo backend on a free loopback port.
pub async fn echo(name: &str) -> SocketAddr {
    rust_strom::demo::echo::spawn(name, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("echo backend")
}

/// An HTTP/1.1 backend on a free loopback port answering with `handler`.
pub async fn backend<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<TestBody>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

/// A WebSocket echo server on a free loopback port.
pub async fn ws_echo() -> SocketAddr {
    use futures::{SinkExt, StreamExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_close() {
                        return;
                    }
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local addr").port()
}

// ---------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------

/// A response, body read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: String,
}

impl Resp {
    /// The `x-backend` header the echo backends set.
    pub fn backend(&self) -> Option<&str> {
        self.headers.get("x-backend").and_then(|v| v.to_str().ok())
    }

    /// A header line the echo backend saw (`  name: value`), by lowercase
    /// name.
    pub fn echoed(&self, name: &str) -> Option<&str> {
        let prefix = format!("  {name}: ");
        self.body
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
    }

    /// Every header line the echo backend saw with this lowercase name.
    pub fn echoed_all(&self, name: &str) -> Vec<&str> {
        let prefix = format!("  {name}: ");
        self.body
            .lines()
            .filter_map(|l| l.strip_prefix(prefix.as_str()))
            .collect()
    }

    /// The echo backend's `host: ...` line.
    pub fn echoed_host(&self) -> Option<&str> {
        self.body.lines().find_map(|l| l.strip_prefix("host: "))
    }
}

pub async fn into_resp<B>(resp: Response<B>) -> Resp
where
    B: Body,
    B::Error: std::fmt::Debug,
{
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(DEADLINE, body.collect())
        .await
        .expect("response body in time")
        .expect("response body")
        .to_bytes();
    Resp {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// One HTTP/1.1 client connection to `port`.
pub async fn connect<B>(port: u16) -> hyper::client::conn::http1::SendRequest<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to proxy");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

/// Sends `req` on a new HTTP/1.1 connection.
pub async fn send<B>(port: u16, req: Request<B>) -> Resp
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut sender = connect(port).await;
    let resp = tokio::time::timeout(DEADLINE, sender.send_request(req))
        .await
        .expect("response in time")
        .expect("response");
    into_resp(resp).await
}

/// GET `path` with `Host: host` on a new HTTP/1.1 connection.
pub async fn get(port: u16, host: &str, path: &str) -> Resp {
    send(port, get_req(host, path)).await
}

pub fn get_req(host: &str, path: &str) -> Request<Empty<Bytes>> {
    Request::builder()
        .uri(path)
        .header("host", host)
        .body(Empty::new())
        .expect("request")
}

/// Writes `raw` on a new TCP connection and reads until the server closes
/// (the request should say `Connection: close`).
pub async fn raw(port: u16, raw: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to proxy");
    stream.write_all(raw.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut out))
        .await
        .expect("server closed in time")
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------
// Polling
// ---------------------------------------------------------------------------

/// Polls `check` until it returns true; panics naming `what` after
/// `timeout`.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether `host` + `path` is answered by the echo backend `name`.
pub async fn routes_to(port: u16, host: &str, path: &str, name: &str) -> bool {
    let resp = get(port, host, path).await;
    resp.status == StatusCode::OK && resp.backend() == Some(name)
}

/// An h2c connection to `port`, and a handle that resolves when the
/// connection ends.
pub async fn h2c(
    port: u16,
) -> (
    hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<()>,
) {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::handshake(executor(), TokioIo::new(stream))
        .await
        .unwrap();
    let ended = tokio::spawn(async move {
        let _ = conn.await;
    });
    (sender, ended)
}

/// The h2c (prior knowledge) client executor.
pub fn executor() -> TokioExecutor {
    TokioExecutor::new()
}

// ---------------------------------------------------------------------------
// Another build of the binary
// ---------------------------------------------------------------------------

/// The binary every [`Proxy`] runs: `RUST_STROM_BIN` when set (the soak
/// script points it at a release build), else the one cargo built for
/// these tests.
pub fn bin_path() -> String {
    std::env::var("RUST_STROM_BIN").unwrap_or_else(|_| BIN.to_owned())
}
