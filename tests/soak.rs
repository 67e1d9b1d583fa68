//! The soak scenario: keep-alive HTTP/1.1 and HTTP/2 load on a route that
//! stays valid while the routing table changes ten times a second, with
//! WebSockets held open and slow uploaders, slow readers and idle
//! connections attacking at the same time. No request to the stable route
//! may fail, no WebSocket may drop, every attacker must be closed by the
//! proxy, and the proxy's file descriptors and memory must come back to
//! their baseline.
//!
//! `SOAK_SECONDS` sets the length (a few seconds by default, for the test
//! command); `scripts/soak` runs it for 60 s against a release build
//! (`RUST_STROM_BIN`) and prints the figures table.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// The route that stays valid all along (its endpoints are scaled).
const STABLE: &str = "stable.soak";
const WS: &str = "ws.soak";
/// The slow readers' answer: far more than the kernel buffers between the
/// proxy and a client hold, so a reader that stops makes the proxy's
/// writes block.
const BIG: usize = 64 << 20;
const BIG_CHUNK: usize = 64 << 10;
/// The attackers' limits, short so that the proxy closes them within the
/// run.
const FLAGS: &[&str] = &[
    "--client-header-timeout",
    "2s",
    "--client-body-timeout",
    "2s",
    "--client-send-timeout",
    "2s",
    "--http2-idle-timeout",
    "3s",
];
/// How long an attacker waits for the proxy to close it before it counts
/// as not closed: many times the limits above, for a loaded machine.
const ATTACK_DEADLINE: Duration = Duration::from_secs(30);
/// How long after the load the proxy's descriptors may take to settle:
/// pooled backend connections idle 1 s (the policy below) are reaped every
/// 5 s.
const SETTLE: Duration = Duration::from_secs(30);
/// Descriptors above the baseline still tolerated once settled.
const FD_SLACK: usize = 8;
/// Resident memory above the baseline tolerated after the run: allocator
/// caches and the routing tables' arenas may stay, a leak per request or
/// per connection grows past it in a minute.
const RSS_SLACK_KIB: u64 = 32 * 1024;

// ---------------------------------------------------------------------------
// Figures
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Figures {
    requests: AtomicU64,
    failures: AtomicU64,
    h2_streams: AtomicU64,
    ws_held: AtomicU64,
    ws_dropped: AtomicU64,
    ws_messages: AtomicU64,
    table_changes: AtomicU64,
    attackers: AtomicU64,
    attackers_closed: AtomicU64,
    /// The first few failures, to say what went wrong.
    errors: Mutex<Vec<String>>,
}

impl Figures {
    fn fail(&self, what: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut errors = self.errors.lock();
        if errors.len() < 10 {
            errors.push(what);
        }
    }

    fn dropped(&self, what: String) {
        self.ws_dropped.fetch_add(1, Ordering::Relaxed);
        let mut errors = self.errors.lock();
        if errors.len() < 10 {
            errors.push(what);
        }
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Open descriptors and resident memory (KiB) of a process.
fn usage(pid: u32) -> (usize, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0);
    (fds, rss)
}

// ---------------------------------------------------------------------------
// Backends and manifests
// ---------------------------------------------------------------------------

/// Answers every request with [`BIG`] bytes, produced as they are read.
async fn big_backend() -> SocketAddr {
    backend(|_req| async {
        let chunk = Bytes::from(vec![b'x'; BIG_CHUNK]);
        let frames = futures::stream::iter(
            (0..BIG / BIG_CHUNK).map(move |_| Ok::<_, Infallible>(Frame::data(chunk.clone()))),
        );
        Response::new(BodyExt::boxed(StreamBody::new(frames)))
    })
    .await
}

/// Pooled backend connections idle for a second are closed, so that the
/// descriptors the load opened are gone soon after it.
fn short_idle_policy(svc: &str) -> String {
    format!(
        "apiVersion: ruststrom.io/v1alpha1\nkind: BalancerPolicy\nmetadata: {{name: soak-{svc}, namespace: default}}\n\
         spec:\n  targetRef: {{group: \"\", kind: Service, name: {svc}}}\n  timeouts: {{idle: 1s}}\n"
    )
}

/// The stable routes (`/` to the scaled Service, `/big` to the big one),
/// the WebSocket route, and their backends: `stable` with `endpoints`.
fn stable_yaml(endpoints: &[SocketAddr], big: SocketAddr, ws: SocketAddr) -> String {
    docs(&[
        ingress(
            "default",
            "stable",
            STABLE,
            &[("/", "Prefix", "stable"), ("/big", "Prefix", "big")],
        ),
        ingress("default", "ws", WS, &[("/", "Prefix", "ws")]),
        backend_objects("default", "stable", endpoints),
        backend_objects("default", "big", &[big]),
        backend_objects("default", "ws", &[ws]),
        short_idle_policy("stable"),
        short_idle_policy("big"),
        short_idle_policy("ws"),
        short_idle_policy("extra"),
    ])
}

/// Ten changes a second, alternating: the stable Service scaled between 2
/// and 3 endpoints (all of them stay up: requests in flight to a removed
/// one finish), and one of four extra Ingresses added or removed.
async fn churn(
    dir: &Path,
    stable: [SocketAddr; 3],
    big: SocketAddr,
    ws: SocketAddr,
    figs: &Figures,
    stop: &AtomicBool,
) {
    let mut every = tokio::time::interval(Duration::from_millis(100));
    let mut tick = 0u64;
    while !stop.load(Ordering::Relaxed) {
        every.tick().await;
        if tick.is_multiple_of(2) {
            let n = if (tick / 2).is_multiple_of(2) { 2 } else { 3 };
            write_atomic(dir, "stable.yaml", &stable_yaml(&stable[..n], big, ws));
        } else {
            let name = format!("extra-{}.yaml", (tick / 2) % 4);
            if dir.join(&name).exists() {
                std::fs::remove_file(dir.join(&name)).unwrap();
            } else {
                let host = name.trim_end_matches(".yaml").to_owned() + ".soak";
                let yaml = ingress(
                    "default",
                    &name.replace(".yaml", ""),
                    &host,
                    &[("/", "Prefix", "extra")],
                );
                write_atomic(dir, &name, &yaml);
            }
        }
        figs.table_changes.fetch_add(1, Ordering::Relaxed);
        tick += 1;
    }
}

// ---------------------------------------------------------------------------
// Well-behaved clients
// ---------------------------------------------------------------------------

/// One answer from the stable route: 200 from one of its echo backends.
async fn stable_answer(
    resp: Result<Response<hyper::body::Incoming>, hyper::Error>,
) -> Result<(), String> {
    let resp = resp.map_err(|e| format!("transport: {e}"))?;
    let status = resp.status();
    let backend = resp
        .headers()
        .get("x-backend")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    resp.into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?;
    if status != StatusCode::OK || !backend.starts_with("stable-") {
        return Err(format!("{status} from {backend:?}"));
    }
    Ok(())
}

/// Keep-alive HTTP/1.1 requests on one connection at a time; a failed one
/// is counted and the connection replaced.
async fn h1_client(
    port: u16,
    id: usize,
    pace: Duration,
    figs: Arc<Figures>,
    stop: Arc<AtomicBool>,
) {
    let mut sender: Option<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> = None;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if sender.is_none() {
            let Ok(stream) = TcpStream::connect(("127.0.0.1", port)).await else {
                figs.fail(format!("h1 client {id}: connect"));
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
                Ok((s, conn)) => {
                    tokio::spawn(conn);
                    sender = Some(s);
                }
                Err(e) => {
                    figs.fail(format!("h1 client {id}: handshake {e}"));
                    continue;
                }
            }
        }
        let s = sender.as_mut().unwrap();
        let req = get_req(STABLE, &format!("/h1/{id}/{n}"));
        n += 1;
        let answer = tokio::time::timeout(DEADLINE, async {
            s.ready().await.map_err(|e| format!("not ready: {e}"))?;
            stable_answer(s.send_request(req).await).await
        })
        .await
        .unwrap_or_else(|_| Err("no answer in time".into()));
        figs.requests.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = answer {
            figs.fail(format!("h1 client {id}, request {n}: {e}"));
            sender = None;
        }
        if !pace.is_zero() {
            tokio::time::sleep(pace).await;
        }
    }
}

/// HTTP/2 (prior knowledge): rounds of four concurrent streams on one
/// connection.
async fn h2_client(
    port: u16,
    id: usize,
    pace: Duration,
    figs: Arc<Figures>,
    stop: Arc<AtomicBool>,
) {
    let mut sender: Option<hyper::client::conn::http2::SendRequest<Empty<Bytes>>> = None;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if sender.is_none() {
            let Ok(stream) = TcpStream::connect(("127.0.0.1", port)).await else {
                figs.fail(format!("h2 client {id}: connect"));
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            match hyper::client::conn::http2::handshake(executor(), TokioIo::new(stream)).await {
                Ok((s, conn)) => {
                    tokio::spawn(conn);
                    sender = Some(s);
                }
                Err(e) => {
                    figs.fail(format!("h2 client {id}: handshake {e}"));
                    continue;
                }
            }
        }
        let s = sender.clone().unwrap();
        let streams = (0..4).map(|k| {
            let mut s = s.clone();
            let req = Request::builder()
                .version(Version::HTTP_2)
                .uri(format!("http://{STABLE}/h2/{id}/{n}/{k}"))
                .body(Empty::new())
                .unwrap();
            async move {
                tokio::time::timeout(DEADLINE, async {
                    s.ready().await.map_err(|e| format!("not ready: {e}"))?;
                    stable_answer(s.send_request(req).await).await
                })
                .await
                .unwrap_or_else(|_| Err("no answer in time".into()))
            }
        });
        let answers = futures::future::join_all(streams).await;
        n += 1;
        let mut broken = false;
        for answer in answers {
            figs.requests.fetch_add(1, Ordering::Relaxed);
            figs.h2_streams.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = answer {
                figs.fail(format!("h2 client {id}, round {n}: {e}"));
                broken = true;
            }
        }
        if broken {
            sender = None;
        }
        if !pace.is_zero() {
            tokio::time::sleep(pace).await;
        }
    }
}

/// One WebSocket held for the whole run, a message and its echo every
/// ~200 ms; any error or close before the end is a drop.
async fn ws_client(port: u16, id: usize, figs: Arc<Figures>, stop: Arc<AtomicBool>) {
    let stream = match TcpStream::connect(("127.0.0.1", port)).await {
        Ok(stream) => stream,
        Err(e) => return figs.dropped(format!("ws {id}: connect {e}")),
    };
    let request = format!("ws://{WS}/chat/{id}")
        .into_client_request()
        .unwrap();
    let mut ws = match tokio::time::timeout(
        DEADLINE,
        tokio_tungstenite::client_async(request, stream),
    )
    .await
    {
        Ok(Ok((ws, _))) => ws,
        other => return figs.dropped(format!("ws {id}: handshake {other:?}")),
    };
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let msg = Message::text(format!("ws {id} message {n}"));
        if let Err(e) = ws.send(msg.clone()).await {
            return figs.dropped(format!("ws {id}: send {n}: {e}"));
        }
        match tokio::time::timeout(DEADLINE, ws.next()).await {
            Ok(Some(Ok(back))) if back == msg => {}
            other => return figs.dropped(format!("ws {id}: echo {n}: {other:?}")),
        }
        figs.ws_messages.fetch_add(1, Ordering::Relaxed);
        n += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = ws.close(None).await;
    figs.ws_held.fetch_add(1, Ordering::Relaxed);
}

// ---------------------------------------------------------------------------
// Attackers
// ---------------------------------------------------------------------------

/// Reads until the proxy closes (end of stream or reset); returns the bytes
/// read, or `None` when it did not close within [`ATTACK_DEADLINE`].
async fn until_closed(stream: &mut TcpStream) -> Option<usize> {
    let mut total = 0;
    let mut buf = vec![0u8; 64 << 10];
    tokio::time::timeout(ATTACK_DEADLINE, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
        }
    })
    .await
    .ok()
}

/// Connects and sends nothing: closed after `--client-header-timeout`.
async fn idle_attacker(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    until_closed(&mut stream).await.is_some()
}

/// Announces a body, trickles a few bytes, then stalls: closed after
/// `--client-body-timeout`.
async fn slow_uploader(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let head = format!("POST /upload HTTP/1.1\r\nHost: {STABLE}\r\nContent-Length: 100000\r\n\r\n");
    if stream.write_all(head.as_bytes()).await.is_err() {
        return false;
    }
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if stream.write_all(b"trickle!").await.is_err() {
            return true;
        }
    }
    until_closed(&mut stream).await.is_some()
}

/// Asks for [`BIG`] bytes, reads a little slowly, then stops reading:
/// closed after `--client-send-timeout`, before the answer's end.
async fn slow_reader(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let head = format!("GET /big HTTP/1.1\r\nHost: {STABLE}\r\n\r\n");
    if stream.write_all(head.as_bytes()).await.is_err() {
        return false;
    }
    let mut got = 0;
    let mut buf = vec![0u8; 4096];
    for i in 0..10 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            // An error answer would end early for another reason.
            Ok(n) if i == 0 && !buf[..n].starts_with(b"HTTP/1.1 200") => return false,
            Ok(n) => got += n,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Stops reading for longer than the send timeout, then drains what
    // the kernel buffered: the proxy must have cut the answer short.
    tokio::time::sleep(Duration::from_secs(5)).await;
    match until_closed(&mut stream).await {
        Some(rest) => got + rest < BIG,
        None => false,
    }
}

// ---------------------------------------------------------------------------
// The scenario
// ---------------------------------------------------------------------------

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_under_churn_and_attack() {
    let seconds = env_u64("SOAK_SECONDS", 5);
    let pace = Duration::from_millis(env_u64("SOAK_PACE_MS", 2));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let stable = [
        echo("stable-0").await,
        echo("stable-1").await,
        echo("stable-2").await,
    ];
    let big = big_backend().await;
    let ws = ws_echo().await;
    let extra = echo("extra").await;
    write(
        d,
        "extra-backend.yaml",
        &backend_objects("default", "extra", &[extra]),
    );
    write(d, "stable.yaml", &stable_yaml(&stable[..3], big, ws));
    let mut proxy = Proxy::start(d, FLAGS).await;
    let port = proxy.http_port;
    let pid = proxy.pid();
    wait_until(DEADLINE, "the stable route answers", || async {
        get(port, STABLE, "/").await.status == StatusCode::OK
    })
    .await;
    let (base_fds, base_rss) = usage(pid);

    let figs = Arc::new(Figures::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut load: Vec<JoinHandle<()>> = Vec::new();
    for id in 0..4 {
        load.push(tokio::spawn(h1_client(
            port,
            id,
            pace,
            figs.clone(),
            stop.clone(),
        )));
    }
    for id in 0..2 {
        load.push(tokio::spawn(h2_client(
            port,
            id,
            pace,
            figs.clone(),
            stop.clone(),
        )));
    }
    for id in 0..3 {
        load.push(tokio::spawn(ws_client(
            port,
            id,
            figs.clone(),
            stop.clone(),
        )));
    }
    let churner = {
        let (figs, stop, dir) = (figs.clone(), stop.clone(), d.to_owned());
        tokio::spawn(async move { churn(&dir, stable, big, ws, &figs, &stop).await })
    };
    let peak = Arc::new(Mutex::new((base_fds, base_rss)));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (fds, rss) = usage(pid);
                {
                    let mut p = peak.lock();
                    *p = (p.0.max(fds), p.1.max(rss));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };

    // Attackers in waves, one a second, for the whole run.
    let started = Instant::now();
    let mut attackers: Vec<JoinHandle<bool>> = Vec::new();
    while started.elapsed() < Duration::from_secs(seconds) {
        attackers.push(tokio::spawn(idle_attacker(port)));
        attackers.push(tokio::spawn(idle_attacker(port)));
        attackers.push(tokio::spawn(slow_uploader(port)));
        attackers.push(tokio::spawn(slow_uploader(port)));
        attackers.push(tokio::spawn(slow_reader(port)));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for task in load {
        tokio::time::timeout(DEADLINE * 2, task)
            .await
            .expect("a client ended")
            .unwrap();
    }
    churner.await.unwrap();
    sampler.await.unwrap();
    for attacker in attackers {
        figs.attackers.fetch_add(1, Ordering::Relaxed);
        if attacker.await.unwrap() {
            figs.attackers_closed.fetch_add(1, Ordering::Relaxed);
        }
    }

    // Every client is gone: the descriptors settle once pooled backend
    // connections idle out.
    let settle = Instant::now() + SETTLE;
    let (mut fds, mut rss) = usage(pid);
    while fds > base_fds + FD_SLACK && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(250)).await;
        (fds, rss) = usage(pid);
    }
    let (peak_fds, peak_rss) = *peak.lock();
    let generation = proxy
        .stderr()
        .await
        .lines()
        .filter_map(|l| {
            l.split("generation=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .max()
        .unwrap_or(0);

    let f = &figs;
    let requests = Figures::get(&f.requests);
    let secs = elapsed.as_secs_f64();
    eprintln!(
        "\nsoak figures ({secs:.0} s, {} binary)\n\
         | measure | value |\n|---|---|\n\
         | requests to the stable route (HTTP/1.1 + HTTP/2) | {requests} |\n\
         | failed requests | {} |\n\
         | requests per second | {:.0} |\n\
         | HTTP/2 streams | {} |\n\
         | WebSockets held / dropped | {} / {} |\n\
         | WebSocket messages echoed | {} |\n\
         | table changes written / tables published | {} / {generation} |\n\
         | attackers closed by the proxy | {} of {} |\n\
         | open files: baseline / peak / after | {base_fds} / {peak_fds} / {fds} |\n\
         | RSS MiB: baseline / peak / after | {:.1} / {:.1} / {:.1} |\n",
        if std::env::var_os("RUST_STROM_BIN").is_some() {
            "given"
        } else {
            "test"
        },
        Figures::get(&f.failures),
        requests as f64 / secs,
        Figures::get(&f.h2_streams),
        Figures::get(&f.ws_held),
        Figures::get(&f.ws_dropped),
        Figures::get(&f.ws_messages),
        Figures::get(&f.table_changes),
        Figures::get(&f.attackers_closed),
        Figures::get(&f.attackers),
        base_rss as f64 / 1024.0,
        peak_rss as f64 / 1024.0,
        rss as f64 / 1024.0,
    );
    let errors = f.errors.lock().clone();
    assert!(proxy.running(), "the proxy died");
    assert!(
        requests > 0 && Figures::get(&f.ws_messages) > 0,
        "no load ran"
    );
    assert_eq!(Figures::get(&f.failures), 0, "failed requests: {errors:#?}");
    assert_eq!(
        Figures::get(&f.ws_dropped),
        0,
        "dropped WebSockets: {errors:#?}"
    );
    assert_eq!(Figures::get(&f.ws_held), 3, "WebSockets held to the end");
    assert_eq!(
        Figures::get(&f.attackers_closed),
        Figures::get(&f.attackers),
        "every attacker is closed by the proxy"
    );
    assert!(
        fds <= base_fds + FD_SLACK,
        "open files {fds}, baseline {base_fds}"
    );
    assert!(
        rss <= base_rss + RSS_SLACK_KIB,
        "RSS {rss} KiB, baseline {base_rss} KiB"
    );
    assert_eq!(proxy.admin("/healthz").await.status, StatusCode::OK);
}
