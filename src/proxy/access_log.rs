//! Access logs: one line per request, formatted and written off the request
//! path.
//!
//! The request path fills a [`Record`] (when the access log or the
//! dashboard's live feed wants one, see [`super::records`]) and hands it to a
//! bounded channel ([`AccessLog::log`], never blocking); a thread of its own formats the
//! records and writes them to standard output, in batches (below). When
//! the channel is full (the output is slower than
//! the traffic), records are dropped and counted in
//! `access_log_dropped_total`: a full disk or a slow log collector must
//! never slow requests down.
//!
//! Batches: the writer drains the queue every 20 ms under traffic (200 ms
//! idle) rather than being woken per request, and flushes once per batch
//! (see `write_loop`); [`AccessLog::close`] writes out the rest at
//! shutdown.
//!
//! A record is finished when the answer's last byte is sent or the client
//! goes away ([`super::conn::Answer`]), so its duration and byte count are
//! the whole exchange, as nginx's `$request_time` and `$bytes_sent`.
//!
//! Two formats (`--access-log`): `json`, one object per line, and `text`,
//! ingress-nginx's default log format (nginx's combined format followed by
//! the request's length and time, the route, the upstream's address, time
//! and status, and the request id). The query string is never logged: it
//! often carries tokens.

use std::fmt::Write as _;
use std::io::Write;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use http::{HeaderValue, Method, Version};
use prometheus::IntCounter;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::records::Delivery;
use super::upload::Watch;

/// A request's record, waiting for its answer to be sent whole.
#[derive(Debug)]
pub struct Pending {
    /// Where the finished record goes.
    to: Delivery,
    record: Record,
    started: Instant,
    /// The client's body, still counting its bytes.
    upload: Option<Arc<Watch>>,
}

/// What the request path learns for the record on its way.
#[derive(Debug, Default)]
pub struct Trace {
    pub ingress: Option<Arc<str>>,
    pub backend: Option<Arc<str>>,
    pub upstream: Option<Upstream>,
    pub retries: u32,
    pub request_id: Option<HeaderValue>,
    pub upload: Option<Arc<Watch>>,
}

/// The most of a path, a user agent or a referer a record keeps: a queue
/// full of records holding 64 KiB heads (the output stalled, a client
/// sending long ones) would otherwise hold a gigabyte.
const MAX_FIELD: usize = 1024;

fn bounded_path(path: &str) -> String {
    let mut end = path.len().min(MAX_FIELD);
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    path[..end].to_string()
}

/// A copy of at most [`MAX_FIELD`] bytes (a clone would share, and keep
/// alive, the whole request head's buffer).
fn bounded(value: &HeaderValue) -> HeaderValue {
    let bytes = value.as_bytes();
    let cut = &bytes[..bytes.len().min(MAX_FIELD)];
    HeaderValue::from_bytes(cut).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// Records waiting to be written; beyond this they are dropped.
const QUEUE: usize = 16 * 1024;

/// `--access-log`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON object per line.
    #[default]
    Json,
    /// ingress-nginx's default format, for people who grep.
    Text,
    /// No access log.
    Off,
}

/// One request, as logged.
#[derive(Clone, Debug)]
pub struct Record {
    /// When the request arrived.
    pub time: SystemTime,
    /// The client: the peer, or the address a trusted proxy's
    /// `X-Forwarded-For` names.
    pub client: IpAddr,
    pub method: Method,
    pub host: Option<HeaderValue>,
    /// The path, without the query string.
    pub path: String,
    pub version: Version,
    pub status: u16,
    /// The request body's bytes, as received.
    pub bytes_in: u64,
    /// The answer body's bytes, as sent.
    pub bytes_out: u64,
    /// From the request's arrival to the answer's last byte.
    pub duration: Duration,
    pub upstream: Option<Upstream>,
    /// Tries beyond the first.
    pub retries: u32,
    /// The `X-Request-Id` sent upstream and returned to the client.
    pub request_id: Option<HeaderValue>,
    /// The Ingress (`namespace/name`) whose route answered.
    pub ingress: Option<Arc<str>>,
    /// The backend (`namespace/service:port`) the route sends to.
    pub backend: Option<Arc<str>>,
    pub tls: Option<Arc<TlsInfo>>,
    pub user_agent: Option<HeaderValue>,
    pub referer: Option<HeaderValue>,
}

/// The endpoint that answered.
#[derive(Clone, Debug)]
pub struct Upstream {
    pub endpoint: String,
    /// From the request sent to the response headers.
    pub duration: Duration,
}

/// What the TLS handshake settled.
#[derive(Clone, Debug)]
pub struct TlsInfo {
    /// `TLSv1.3`, `TLSv1.2`.
    pub version: &'static str,
    pub sni: Option<String>,
}

/// The sending side, shared by every request.
#[derive(Clone, Debug)]
pub struct AccessLog {
    tx: mpsc::Sender<Arc<Record>>,
    dropped: IntCounter,
    writer: Arc<Writer>,
}

/// The writer thread, for [`AccessLog::close`].
#[derive(Debug, Default)]
struct Writer {
    closing: AtomicBool,
    thread: parking_lot::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl AccessLog {
    /// Starts the writer thread; `None` for [`Format::Off`].
    pub fn start(
        format: Format,
        out: Box<dyn Write + Send>,
        dropped: IntCounter,
    ) -> std::io::Result<Option<Self>> {
        if format == Format::Off {
            return Ok(None);
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let writer = Arc::new(Writer::default());
        let shared = writer.clone();
        let thread = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_loop(rx, format, out, &shared.closing))?;
        *writer.thread.lock() = Some(thread);
        Ok(Some(Self {
            tx,
            dropped,
            writer,
        }))
    }

    /// Writes out every queued line and stops the writer (at shutdown,
    /// once no request is left). Blocks for at most about [`IDLE_TICK`].
    pub fn close(&self) {
        self.writer.closing.store(true, Ordering::Release);
        if let Some(thread) = self.writer.thread.lock().take() {
            let _ = thread.join();
        }
    }

    /// Queues a record; drops it (counted) when the queue is full.
    pub fn log(&self, record: Arc<Record>) {
        if self.tx.try_send(record).is_err() {
            self.dropped.inc();
        }
    }
}

impl Pending {
    /// Starts the record of a request that arrived `started`, to be
    /// delivered as `to` says once its answer is sent.
    pub fn begin<B>(
        to: Delivery,
        req: &http::Request<B>,
        client: IpAddr,
        tls: Option<Arc<TlsInfo>>,
        started: Instant,
    ) -> Self {
        let headers = req.headers();
        let host = headers.get(http::header::HOST).cloned().or_else(|| {
            let authority = req.uri().authority()?;
            HeaderValue::from_str(authority.as_str()).ok()
        });
        Pending {
            to,
            record: Record {
                time: SystemTime::now(),
                client,
                method: req.method().clone(),
                host,
                path: bounded_path(req.uri().path()),
                version: req.version(),
                status: 0,
                bytes_in: 0,
                bytes_out: 0,
                duration: Duration::ZERO,
                upstream: None,
                retries: 0,
                request_id: None,
                ingress: None,
                backend: None,
                tls,
                user_agent: headers.get(http::header::USER_AGENT).map(bounded),
                referer: headers.get(http::header::REFERER).map(bounded),
            },
            started,
            upload: None,
        }
    }

    /// What the answer says, and what the request path learnt.
    pub fn answered(&mut self, status: u16, trace: Trace) {
        let r = &mut self.record;
        r.status = status;
        r.ingress = trace.ingress;
        r.backend = trace.backend;
        r.upstream = trace.upstream;
        r.retries = trace.retries;
        r.request_id = trace.request_id;
        self.upload = trace.upload;
    }

    /// The answer's last byte is sent (or the client went away): delivers
    /// it.
    pub fn finish(self, bytes_out: u64) {
        let Pending {
            to,
            mut record,
            started,
            upload,
        } = self;
        record.bytes_out = bytes_out;
        record.duration = started.elapsed();
        record.bytes_in = upload.map_or(0, |u| u.received());
        to.deliver(record);
    }
}

/// Writes records until [`AccessLog::close`] (or every sender is gone).
///
/// The thread works in ticks: it drains the queue, writes and flushes, then
/// sleeps [`TICK`] (or [`IDLE_TICK`] when nothing came) and looks again. It
/// never waits in the queue, where each new record would have to wake it:
/// a busy proxy neither wakes this thread per request nor makes a write
/// call per line. A line reaches the output within a tick.
fn write_loop(
    mut rx: mpsc::Receiver<Arc<Record>>,
    format: Format,
    out: Box<dyn Write + Send>,
    closing: &AtomicBool,
) {
    let mut out = Output {
        out: std::io::BufWriter::with_capacity(64 * 1024, out),
        line: String::with_capacity(512),
        format,
    };
    loop {
        // Read before draining, so nothing queued before close is left.
        let last = closing.load(Ordering::Acquire);
        let mut wrote = false;
        let gone = loop {
            match rx.try_recv() {
                Ok(record) => {
                    out.write(&record);
                    wrote = true;
                }
                Err(mpsc::error::TryRecvError::Empty) => break false,
                Err(mpsc::error::TryRecvError::Disconnected) => break true,
            }
        };
        if wrote {
            out.flush();
        }
        if last || gone {
            return;
        }
        std::thread::sleep(if wrote { TICK } else { IDLE_TICK });
    }
}

/// How long the writer sleeps between drains under traffic: about the
/// most a line waits to be written.
const TICK: std::time::Duration = std::time::Duration::from_millis(20);
/// Between drains while no request comes (five wake-ups a second).
const IDLE_TICK: std::time::Duration = std::time::Duration::from_millis(200);

/// The writer thread's output and its line buffer.
struct Output {
    out: std::io::BufWriter<Box<dyn Write + Send>>,
    line: String,
    format: Format,
}

impl Output {
    fn write(&mut self, record: &Record) {
        self.line.clear();
        format_record(record, self.format, &mut self.line);
        self.line.push('\n');
        let written = self.out.write_all(self.line.as_bytes());
        Self::report(written);
    }

    fn flush(&mut self) {
        Self::report(self.out.flush());
    }

    fn report(result: std::io::Result<()>) {
        if let Err(error) = result {
            // Nowhere left to say it but the log of the process itself.
            tracing::warn!(%error, "access log write failed");
        }
    }
}

/// One record as a line (without its newline).
pub fn format_record(record: &Record, format: Format, out: &mut String) {
    match format {
        Format::Json => json(record, out),
        Format::Text => text(record, out),
        Format::Off => {}
    }
}

fn version_str(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP",
    }
}

fn json(r: &Record, out: &mut String) {
    json_object(r, out);
}

/// One record as a JSON object, written straight into `out`: the access
/// log's `json` lines, and the dashboard's live feed. (Building a
/// `serde_json::Value` first cost about 25,000 instructions a line, most
/// of the log's whole cost.)
pub fn json_object(r: &Record, out: &mut String) {
    let upstream = r.upstream.as_ref();
    let _ = write!(
        out,
        "{{\"time\":\"{}\",\"client\":\"{}\",\"method\":",
        humantime::format_rfc3339_millis(r.time),
        r.client
    );
    json_str(out, r.method.as_str());
    out.push_str(",\"host\":");
    json_header(out, r.host.as_ref());
    out.push_str(",\"path\":");
    json_str(out, &r.path);
    let _ = write!(
        out,
        ",\"protocol\":\"{}\",\"status\":{},\"bytes_in\":{},\"bytes_out\":{},\"duration_ms\":{},\"upstream\":",
        version_str(r.version),
        r.status,
        r.bytes_in,
        r.bytes_out,
        Millis(r.duration),
    );
    match upstream {
        Some(u) => {
            json_str(out, &u.endpoint);
            let _ = write!(out, ",\"upstream_duration_ms\":{}", Millis(u.duration));
        }
        None => out.push_str("null,\"upstream_duration_ms\":null"),
    }
    let _ = write!(out, ",\"retries\":{},\"request_id\":", r.retries);
    json_header(out, r.request_id.as_ref());
    out.push_str(",\"ingress\":");
    json_opt(out, r.ingress.as_deref());
    out.push_str(",\"backend\":");
    json_opt(out, r.backend.as_deref());
    out.push_str(",\"tls_version\":");
    json_opt(out, r.tls.as_ref().map(|t| t.version));
    out.push_str(",\"sni\":");
    json_opt(out, r.tls.as_ref().and_then(|t| t.sni.as_deref()));
    out.push_str(",\"user_agent\":");
    json_header(out, r.user_agent.as_ref());
    out.push_str(",\"referer\":");
    json_header(out, r.referer.as_ref());
    out.push('}');
}

/// Milliseconds with three decimals (`12.345`), from integers: float
/// formatting with a precision was a good part of a line's cost.
struct Millis(Duration);

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let micros = self.0.as_micros();
        write!(f, "{}.{:03}", micros / 1000, micros % 1000)
    }
}

/// A JSON string: `"`, `\` and control characters escaped.
fn json_str(out: &mut String, s: &str) {
    out.push('"');
    let plain = |c: char| c != '"' && c != '\\' && !c.is_control();
    if s.chars().all(plain) {
        out.push_str(s);
    } else {
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => {
                    let _ = write!(out, "\\u{:04x}", u32::from(c));
                }
                c => out.push(c),
            }
        }
    }
    out.push('"');
}

fn json_opt(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => json_str(out, s),
        None => out.push_str("null"),
    }
}

/// A header as a JSON string; bytes that are not UTF-8 become U+FFFD.
fn json_header(out: &mut String, value: Option<&HeaderValue>) {
    match value {
        Some(v) => json_str(out, &String::from_utf8_lossy(v.as_bytes())),
        None => out.push_str("null"),
    }
}

/// ingress-nginx's default `log-format-upstream`:
/// `$remote_addr - $remote_user [$time_local] "$request" $status
/// $body_bytes_sent "$http_referer" "$http_user_agent" $request_length
/// $request_time [$proxy_upstream_name] [$proxy_alternative_upstream_name]
/// $upstream_addr $upstream_response_length $upstream_response_time
/// $upstream_status $req_id`. RustStrom has no `$remote_user`, no
/// alternative upstream, and does not keep the upstream's own length and
/// status apart from the client's: those are written as nginx writes an
/// unknown value, `-`. `$request_length` is the body's length here.
fn text(r: &Record, out: &mut String) {
    let quoted = |v: Option<&HeaderValue>| v.map_or_else(|| "-".into(), |v| escape(v.as_bytes()));
    let upstream = r.upstream.as_ref();
    let _ = write!(
        out,
        "{} - - [{}] \"{} {} {}\" {} {} \"{}\" \"{}\" {} {:.3} [{}] [] {} - {} {} {}",
        r.client,
        nginx_time(r.time),
        r.method,
        escape(r.path.as_bytes()),
        version_str(r.version),
        r.status,
        r.bytes_out,
        quoted(r.referer.as_ref()),
        quoted(r.user_agent.as_ref()),
        r.bytes_in,
        r.duration.as_secs_f64(),
        r.backend.as_deref().unwrap_or("-"),
        upstream.map_or("-", |u| u.endpoint.as_str()),
        upstream.map_or_else(
            || "-".into(),
            |u| format!("{:.3}", u.duration.as_secs_f64())
        ),
        upstream.map_or_else(|| "-".into(), |_| r.status.to_string()),
        r.request_id
            .as_ref()
            .map_or_else(|| "-".into(), |v| escape(v.as_bytes())),
    );
}

/// As nginx escapes variables in its logs: `"`, `\` and bytes outside
/// printable ASCII as `\xHH`, so a line can never be split or forged.
fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            let _ = write!(out, "\\x{b:02X}");
        } else {
            out.push(char::from(b));
        }
    }
    out
}

/// nginx's `$time_local` in UTC: `03/Dec/2026:18:32:48 +0000`.
fn nginx_time(time: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // `2026-12-03T18:32:48Z`
    let rfc = humantime::format_rfc3339_seconds(time).to_string();
    let field = |range: std::ops::Range<usize>| rfc.get(range).unwrap_or("");
    let month = field(5..7)
        .parse::<usize>()
        .ok()
        .and_then(|m| MONTHS.get(m.wrapping_sub(1)))
        .unwrap_or(&"???");
    format!(
        "{}/{}/{}:{} +0000",
        field(8..10),
        month,
        field(0..4),
        field(11..19)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_322_768),
            client: "192.0.2.7".parse().unwrap(),
            method: Method::POST,
            host: Some(HeaderValue::from_static("shop.example.com")),
            path: "/cart \"x\"".into(),
            version: Version::HTTP_11,
            status: 201,
            bytes_in: 12,
            bytes_out: 345,
            duration: Duration::from_millis(1500),
            upstream: Some(Upstream {
                endpoint: "10.0.0.3:8080".into(),
                duration: Duration::from_millis(1234),
            }),
            retries: 1,
            request_id: Some(HeaderValue::from_static("abc-123")),
            ingress: Some("shop/web".into()),
            backend: Some("shop/web:80".into()),
            tls: Some(Arc::new(TlsInfo {
                version: "TLSv1.3",
                sni: Some("shop.example.com".into()),
            })),
            user_agent: Some(HeaderValue::from_static("curl/8.5.0")),
            referer: None,
        }
    }

    #[test]
    fn json_lines_carry_every_field() {
        let mut line = String::new();
        format_record(&record(), Format::Json, &mut line);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["time"], "2026-12-03T18:32:48.000Z");
        assert_eq!(v["client"], "192.0.2.7");
        assert_eq!(v["method"], "POST");
        assert_eq!(v["host"], "shop.example.com");
        assert_eq!(v["path"], "/cart \"x\"");
        assert_eq!(v["protocol"], "HTTP/1.1");
        assert_eq!(v["status"], 201);
        assert_eq!(v["bytes_in"], 12);
        assert_eq!(v["bytes_out"], 345);
        assert_eq!(v["duration_ms"], 1500.0);
        assert_eq!(v["upstream"], "10.0.0.3:8080");
        assert_eq!(v["upstream_duration_ms"], 1234.0);
        assert_eq!(v["retries"], 1);
        assert_eq!(v["request_id"], "abc-123");
        assert_eq!(v["ingress"], "shop/web");
        assert_eq!(v["backend"], "shop/web:80");
        assert_eq!(v["tls_version"], "TLSv1.3");
        assert_eq!(v["sni"], "shop.example.com");
        assert_eq!(v["user_agent"], "curl/8.5.0");
        assert!(v["referer"].is_null());
        assert!(!line.contains('\n'));
    }

    proptest::proptest! {
        /// Whatever a client puts in its path or headers, a JSON line is
        /// one valid object that gives the value back.
        #[test]
        fn json_lines_are_valid_for_any_input(path in ".*", agent in proptest::collection::vec(0x20u8..0xff, 0..40)) {
            let mut r = record();
            r.path = path.clone();
            r.user_agent = HeaderValue::from_bytes(&agent).ok();
            let mut line = String::new();
            format_record(&r, Format::Json, &mut line);
            proptest::prop_assert!(!line.contains('\n'));
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            proptest::prop_assert_eq!(v["path"].as_str(), Some(path.as_str()));
            if let Some(agent) = &r.user_agent {
                let want = String::from_utf8_lossy(agent.as_bytes());
                proptest::prop_assert_eq!(v["user_agent"].as_str(), Some(want.as_ref()));
            }
        }
    }

    #[test]
    fn text_lines_follow_ingress_nginx_and_cannot_be_forged() {
        let mut line = String::new();
        format_record(&record(), Format::Text, &mut line);
        assert_eq!(
            line,
            "192.0.2.7 - - [03/Dec/2026:18:32:48 +0000] \"POST /cart \\x22x\\x22 HTTP/1.1\" 201 345 \
             \"-\" \"curl/8.5.0\" 12 1.500 [shop/web:80] [] 10.0.0.3:8080 - 1.234 201 abc-123"
        );
        let mut r = record();
        r.user_agent = Some(HeaderValue::from_bytes(b"evil\" 200 \xff").unwrap());
        r.upstream = None;
        line.clear();
        format_record(&r, Format::Text, &mut line);
        assert!(line.contains("\"evil\\x22 200 \\xFF\""), "{line}");
        assert!(line.ends_with("[shop/web:80] [] - - - - abc-123"), "{line}");
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let dropped = IntCounter::new("d", "d").unwrap();
        let (tx, _rx) = mpsc::channel(1);
        let log = AccessLog {
            tx,
            dropped: dropped.clone(),
            writer: Arc::default(),
        };
        log.log(Arc::new(record()));
        log.log(Arc::new(record()));
        log.log(Arc::new(record()));
        assert_eq!(dropped.get(), 2);
    }

    #[test]
    fn long_fields_are_cut_so_a_full_queue_stays_small() {
        let path = format!("/{}", "é".repeat(2000));
        let cut = bounded_path(&path);
        assert!(
            cut.len() <= MAX_FIELD && cut.len() > MAX_FIELD - 2,
            "{}",
            cut.len()
        );
        assert!(path.starts_with(&cut));
        assert_eq!(bounded_path("/short"), "/short");
        let agent = HeaderValue::from_str(&"a".repeat(60_000)).unwrap();
        assert_eq!(bounded(&agent).len(), MAX_FIELD);
        let small = HeaderValue::from_static("curl/8");
        assert_eq!(bounded(&small), small);
    }

    #[test]
    fn close_writes_out_what_is_queued() {
        let out = Shared::default();
        let dropped = IntCounter::new("d", "d").unwrap();
        let log = AccessLog::start(Format::Text, Box::new(out.clone()), dropped)
            .unwrap()
            .unwrap();
        // The writer is between ticks: these wait in the queue.
        std::thread::sleep(Duration::from_millis(50));
        for _ in 0..5 {
            log.log(Arc::new(record()));
        }
        // A sender is still alive: only close can finish the writer.
        log.close();
        let text = String::from_utf8(out.0.lock().clone()).unwrap();
        assert_eq!(text.lines().count(), 5, "{text}");
    }

    /// A writer that keeps what it was given.
    #[derive(Clone, Default)]
    struct Shared(Arc<parking_lot::Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_writer_thread_writes_one_line_per_record() {
        let out = Shared::default();
        let dropped = IntCounter::new("d", "d").unwrap();
        let log = AccessLog::start(Format::Json, Box::new(out.clone()), dropped)
            .unwrap()
            .unwrap();
        for _ in 0..3 {
            log.log(Arc::new(record()));
        }
        drop(log);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while out.0.lock().iter().filter(|b| **b == b'\n').count() < 3 {
            assert!(std::time::Instant::now() < deadline, "lines not written");
            std::thread::sleep(Duration::from_millis(10));
        }
        let text = String::from_utf8(out.0.lock().clone()).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(
            AccessLog::start(
                Format::Off,
                Box::new(out),
                IntCounter::new("e", "e").unwrap()
            )
            .unwrap()
            .is_none()
        );
    }
}
