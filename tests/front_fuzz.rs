//! Property test over the HTTP/1.1 front door: generated request heads and
//! bodies, valid and malformed, written as raw bytes to one proxy process in
//! front of one recording backend. The proxy never dies, never forwards a
//! whole request whose framing it did not fully parse, and what it forwards
//! re-parses to the same method, normalised path, headers and body.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly

mod support;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use rust_strom::proxy::headers::well_formed_request_id;
use rust_strom::proxy::normalize::{EncodedSlashes, normalize};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The host the one Ingress routes (every path) to the recording backend.
const HOST: &str = "fuzz.local";
/// Correlates what the backend receives with the case that sent it.
const MARKER: &str = "x-fuzz-case";

// ---------------------------------------------------------------------------
// The recording backend
// ---------------------------------------------------------------------------

/// One request as the backend parsed it.
#[derive(Clone, Debug)]
struct Recorded {
    method: String,
    target: String,
    headers: HeaderMap,
    /// `None` when the body did not arrive whole (the connection broke).
    body: Option<Bytes>,
}

#[derive(Default)]
struct Recorder {
    /// By marker; requests without one go to `stray`.
    by_marker: Mutex<HashMap<String, Vec<Recorded>>>,
    stray: Mutex<Vec<Recorded>>,
}

impl Recorder {
    fn complete(&self, marker: &str) -> Vec<Recorded> {
        self.by_marker
            .lock()
            .get(marker)
            .map(|all| all.iter().filter(|r| r.body.is_some()).cloned().collect())
            .unwrap_or_default()
    }
}

/// An HTTP/1.1 server (hyper's parser: what a backend would understand)
/// that records every request it receives, body included, then answers
/// 200 `ok`.
async fn recording_backend(recorder: Arc<Recorder>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let recorder = recorder.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let recorder = recorder.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.ok().map(|b| b.to_bytes());
                        let record = Recorded {
                            method: parts.method.to_string(),
                            target: parts
                                .uri
                                .path_and_query()
                                .map_or_else(String::new, |p| p.as_str().to_owned()),
                            headers: parts.headers.clone(),
                            body,
                        };
                        // Recorded before answering: once the client has
                        // the answer, the record is there.
                        match parts.headers.get(MARKER).and_then(|v| v.to_str().ok()) {
                            Some(marker) => recorder
                                .by_marker
                                .lock()
                                .entry(marker.to_owned())
                                .or_default()
                                .push(record),
                            None => recorder.stray.lock().push(record),
                        }
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                            Bytes::from_static(b"ok"),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

// ---------------------------------------------------------------------------
// Generated requests
// ---------------------------------------------------------------------------

/// How the body is delimited.
#[derive(Clone, Debug)]
enum Framing {
    /// No body, no framing header.
    None,
    ContentLength,
    /// `cuts` split the body into chunks; hex digits upper or lower case,
    /// optional chunk extensions and trailer fields.
    Chunked {
        cuts: Vec<usize>,
        upper: bool,
        ext: bool,
        trailers: bool,
    },
}

/// What is wrong with a request (or `None`).
#[derive(Clone, Debug, PartialEq)]
enum Fault {
    None,
    /// Two equal `Content-Length` lines: valid, one is kept.
    DupClSame,
    /// Line ends are bare LF: the parser may accept them (RFC 9112 2.2).
    BareLf,
    /// `Transfer-Encoding: chunked` and a `Content-Length`: TE wins, the
    /// connection must close after it (RFC 9112 6.3), or the proxy refuses.
    TeAndCl(u64),
    DupClDiffer,
    BadCl(&'static str),
    TeNotChunked(&'static str),
    BadChunkSize(&'static str),
    /// A chunk carries more data than its size says.
    ChunkOverrun,
    ObsFold,
    SpaceBeforeColon,
    BareCrInValue,
    NulInHeader,
    NulInTarget,
    OversizeHeader,
    TooManyHeaders,
    TwoHosts,
    NoHost,
    BadHost(&'static str),
    /// The body stops short and the client closes its side.
    TruncatedThenClose,
    Http10Chunked,
    BadMethod(&'static str),
    BadVersion(&'static str),
    ForbiddenMethod(&'static str),
}

impl Fault {
    /// The client closes its side after writing this request.
    fn closes(&self) -> bool {
        *self == Fault::TruncatedThenClose
    }
}

#[derive(Clone)]
struct Gen {
    method: &'static str,
    segments: Vec<String>,
    trailing_slash: bool,
    query: Option<String>,
    host: &'static str,
    headers: Vec<(String, Vec<u8>)>,
    /// A `Connection` option naming a header, which must not be forwarded.
    conn_named: bool,
    body: Vec<u8>,
    framing: Framing,
    fault: Fault,
}

/// Short enough to read in a failure: header values and the body as text.
impl std::fmt::Debug for Gen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<(&str, String)> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), String::from_utf8_lossy(v).into_owned()))
            .collect();
        f.debug_struct("Gen")
            .field("method", &self.method)
            .field("segments", &self.segments)
            .field("trailing_slash", &self.trailing_slash)
            .field("query", &self.query)
            .field("host", &self.host)
            .field("headers", &headers)
            .field("conn_named", &self.conn_named)
            .field("body_len", &self.body.len())
            .field("framing", &self.framing)
            .field("fault", &self.fault)
            .finish()
    }
}

fn method() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "GET", "GET", "POST", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "PURGE",
        "X-CUSTOM",
    ])
}

/// A path segment: plain pchars, escapes (valid, of reserved and
/// unreserved bytes, and invalid), dot segments in their spellings.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[A-Za-z0-9._~!$&'()*+,;=:@-]{1,10}",
        2 => any::<u8>().prop_map(|b| format!("%{b:02X}")),
        1 => any::<u8>().prop_map(|b| format!("%{b:02x}")),
        1 => prop::sample::select(vec![
            ".", "..", "%2e", "%2E%2e", ".%2E", "", "%2F", "%2f..", "..%2F", "%5C", "%5c..",
            "%00", "%zz", "%4", "%", "a%2Fb", ".well-known", "%7E", "%41",
        ])
        .prop_map(str::to_owned),
    ]
}

fn header_value() -> impl Strategy<Value = Vec<u8>> {
    let visible = 0x21u8..=0x7e;
    let inner = prop_oneof![
        8 => 0x20u8..=0x7e,
        1 => Just(b'\t'),
        1 => 0x80u8..=0xff,
    ];
    prop_oneof![
        1 => Just(Vec::new()),
        8 => (visible.clone(), prop::collection::vec(inner, 0..40), visible).prop_map(
            |(first, mut middle, last)| {
                middle.insert(0, first);
                middle.push(last);
                middle
            }
        ),
    ]
}

fn header() -> impl Strategy<Value = (String, Vec<u8>)> {
    let name = prop_oneof![
        6 => "[xX]-[A-Za-z0-9_!#$&'*+.^`|~-]{1,14}",
        1 => prop::sample::select(vec![
            "Accept", "User-Agent", "Cookie", "Authorization", "Cache-Control", "content-type",
            "X-Forwarded-For", "X-Request-Id", "Forwarded", "Proxy-Authorization", "Keep-Alive",
            "X-Forwarded-Proto", "X-Real-IP", "TE",
        ])
        .prop_map(str::to_owned),
    ];
    (name, header_value())
}

fn framing() -> impl Strategy<Value = Framing> {
    prop_oneof![
        2 => Just(Framing::None),
        3 => Just(Framing::ContentLength),
        3 => (
            prop::collection::vec(0usize..4000, 0..6),
            any::<bool>(),
            prop::bool::weighted(0.2),
            prop::bool::weighted(0.3),
        )
            .prop_map(|(cuts, upper, ext, trailers)| Framing::Chunked {
                cuts,
                upper,
                ext,
                trailers,
            }),
    ]
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        24 => Just(Fault::None),
        1 => Just(Fault::DupClSame),
        1 => Just(Fault::BareLf),
        1 => (0u64..100).prop_map(Fault::TeAndCl),
        1 => Just(Fault::DupClDiffer),
        1 => prop::sample::select(vec!["abc", "-1", "+5", "1 2", "0x10", "", "99999999999999999999999"])
            .prop_map(Fault::BadCl),
        1 => prop::sample::select(vec!["gzip", "identity", "chunked, gzip", "xchunked", "chunked;x"])
            .prop_map(Fault::TeNotChunked),
        1 => prop::sample::select(vec!["zz", "-1", "fffffffffffffffffffff", "", " 5", "0x5"])
            .prop_map(Fault::BadChunkSize),
        1 => Just(Fault::ChunkOverrun),
        1 => Just(Fault::ObsFold),
        1 => Just(Fault::SpaceBeforeColon),
        1 => Just(Fault::BareCrInValue),
        1 => Just(Fault::NulInHeader),
        1 => Just(Fault::NulInTarget),
        1 => Just(Fault::OversizeHeader),
        1 => Just(Fault::TooManyHeaders),
        1 => Just(Fault::TwoHosts),
        1 => Just(Fault::NoHost),
        1 => prop::sample::select(vec!["a..b", "x/y", "u@h", "[::1", ":80", "h:99999999", ".lead", "h:"])
            .prop_map(Fault::BadHost),
        2 => Just(Fault::TruncatedThenClose),
        1 => Just(Fault::Http10Chunked),
        1 => prop::sample::select(vec!["GE T", "G(T", "GET\u{1}", "\u{7f}"]).prop_map(Fault::BadMethod),
        1 => prop::sample::select(vec!["HTTP/1.2", "HTTP/2.0", "http/1.1", "HTTP/1.1 x"])
            .prop_map(Fault::BadVersion),
        1 => prop::sample::select(vec!["TRACE", "CONNECT"]).prop_map(Fault::ForbiddenMethod),
    ]
}

prop_compose! {
    fn request()(
        method in method(),
        segments in prop::collection::vec(segment(), 0..6),
        trailing_slash in any::<bool>(),
        query in prop::option::weighted(0.3, "[A-Za-z0-9=&%/?:@._~-]{0,20}"),
        host in prop::sample::select(vec!["fuzz.local", "FUZZ.Local", "fuzz.local:8080", "fuzz.local."]),
        headers in prop::collection::vec(header(), 0..10),
        conn_named in prop::bool::weighted(0.15),
        body in prop::collection::vec(any::<u8>(), 0..3000),
        framing in framing(),
        fault in fault(),
    ) -> Gen {
        let body = if matches!(framing, Framing::None) { Vec::new() } else { body };
        Gen { method, segments, trailing_slash, query, host, headers, conn_named, body, framing, fault }
    }
}

// ---------------------------------------------------------------------------
// Rendering and expectations
// ---------------------------------------------------------------------------

/// What the backend may see of one request.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Seen {
    /// Exactly once, matching.
    Must,
    /// Never whole.
    Never,
    /// At most once; matching when it is.
    Maybe,
}

/// The request as it must arrive when it is forwarded.
#[derive(Clone, Debug)]
struct Expected {
    method: String,
    target: String,
    host: String,
    /// Every end-to-end header the client sent, by lowercase name.
    headers: BTreeMap<String, Vec<Vec<u8>>>,
    request_id: Option<Vec<u8>>,
    body: Vec<u8>,
}

/// Headers the proxy owns (sets, replaces or removes) or that belong to
/// one hop: compared by their own rules, not as sent.
fn proxy_owned(name: &str) -> bool {
    matches!(
        name,
        "host"
            | "content-length"
            | "transfer-encoding"
            | "connection"
            | "te"
            | "trailer"
            | "keep-alive"
            | "upgrade"
            | "x-forwarded-for"
            | "x-forwarded-proto"
            | "x-forwarded-host"
            | "x-forwarded-port"
            | "x-real-ip"
            | "x-request-id"
            | "forwarded"
            | "x-drop-me"
    ) || name.starts_with("proxy-")
}

/// Serialises `g` with `marker`; `last` adds `Connection: close`. Returns
/// the bytes, what the backend may see of it, and what the backend may see
/// of the requests after it on the connection at best (`Must`: as they
/// are; `Maybe`: the proxy may have closed; `Never`: it must have).
fn render(g: &Gen, marker: &str, last: bool) -> (Vec<u8>, Seen, Seen, Expected) {
    let eol: &[u8] = if g.fault == Fault::BareLf {
        b"\n"
    } else {
        b"\r\n"
    };
    let mut path = String::from("/");
    path.push_str(&g.segments.join("/"));
    if g.trailing_slash && !g.segments.is_empty() {
        path.push('/');
    }
    let mut target = path.clone().into_bytes();
    if let Some(q) = &g.query {
        target.push(b'?');
        target.extend_from_slice(q.as_bytes());
    }
    if g.fault == Fault::NulInTarget {
        target.insert(1, 0);
    }
    let method = match &g.fault {
        Fault::BadMethod(m) | Fault::ForbiddenMethod(m) => m,
        _ => g.method,
    };
    let version = match &g.fault {
        Fault::BadVersion(v) => v,
        Fault::Http10Chunked => "HTTP/1.0",
        _ => "HTTP/1.1",
    };

    let mut out = Vec::new();
    let line = |out: &mut Vec<u8>, bytes: &[u8]| {
        out.extend_from_slice(bytes);
        out.extend_from_slice(eol);
    };
    let mut head = method.as_bytes().to_vec();
    head.push(b' ');
    head.extend_from_slice(&target);
    head.push(b' ');
    head.extend_from_slice(version.as_bytes());
    line(&mut out, &head);

    let host = match &g.fault {
        Fault::BadHost(h) => h,
        _ => g.host,
    };
    if g.fault != Fault::NoHost {
        line(&mut out, format!("Host: {host}").as_bytes());
    }
    line(&mut out, format!("X-Fuzz-Case: {marker}").as_bytes());
    for (name, value) in &g.headers {
        let mut l = name.as_bytes().to_vec();
        l.extend_from_slice(b": ");
        l.extend_from_slice(value);
        line(&mut out, &l);
    }
    if g.fault == Fault::TwoHosts {
        line(&mut out, b"Host: other.local");
    }

    // The body on the wire, and what a parser makes of it.
    let chunked = matches!(g.framing, Framing::Chunked { .. })
        || matches!(
            g.fault,
            Fault::TeAndCl(_) | Fault::BadChunkSize(_) | Fault::ChunkOverrun | Fault::Http10Chunked
        );
    let mut wire_body = Vec::new();
    if chunked {
        let (cuts, upper, ext, trailers) = match &g.framing {
            Framing::Chunked {
                cuts,
                upper,
                ext,
                trailers,
            } => (cuts.clone(), *upper, *ext, *trailers),
            _ => (Vec::new(), false, false, false),
        };
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(g.body.len())).collect();
        cuts.push(0);
        cuts.push(g.body.len());
        cuts.sort_unstable();
        cuts.dedup();
        for w in cuts.windows(2) {
            let chunk = &g.body[w[0]..w[1]];
            let size = if upper {
                format!("{:X}", chunk.len())
            } else {
                format!("{:x}", chunk.len())
            };
            wire_body.extend_from_slice(size.as_bytes());
            if ext {
                wire_body.extend_from_slice(b";name=\"v\"");
            }
            wire_body.extend_from_slice(b"\r\n");
            wire_body.extend_from_slice(chunk);
            wire_body.extend_from_slice(b"\r\n");
        }
        match &g.fault {
            Fault::BadChunkSize(size) => {
                wire_body.extend_from_slice(size.as_bytes());
                wire_body.extend_from_slice(b"\r\nabcde\r\n");
            }
            Fault::ChunkOverrun => wire_body.extend_from_slice(b"3\r\nabcdef\r\n"),
            _ => {}
        }
        wire_body.extend_from_slice(b"0\r\n");
        if trailers {
            wire_body.extend_from_slice(b"X-Trailer: t\r\n");
        }
        wire_body.extend_from_slice(b"\r\n");
    } else if !matches!(g.framing, Framing::None) {
        wire_body.extend_from_slice(&g.body);
    }

    // Framing headers.
    let body_len = g.body.len();
    match &g.fault {
        Fault::BadCl(v) => line(&mut out, format!("Content-Length: {v}").as_bytes()),
        Fault::DupClDiffer => {
            line(&mut out, format!("Content-Length: {body_len}").as_bytes());
            line(
                &mut out,
                format!("Content-Length: {}", body_len + 1).as_bytes(),
            );
        }
        Fault::TeNotChunked(te) => {
            line(&mut out, format!("Transfer-Encoding: {te}").as_bytes());
        }
        Fault::TruncatedThenClose => {
            // More announced than sent, whatever the framing.
            if chunked {
                line(&mut out, b"Transfer-Encoding: chunked");
                let cut = wire_body.len().saturating_sub(3).min(wire_body.len() / 2);
                wire_body.truncate(cut);
            } else {
                line(
                    &mut out,
                    format!("Content-Length: {}", body_len + 10).as_bytes(),
                );
            }
        }
        Fault::TeAndCl(cl) => {
            line(&mut out, format!("Content-Length: {cl}").as_bytes());
            line(&mut out, b"Transfer-Encoding: chunked");
        }
        _ if chunked => line(&mut out, b"Transfer-Encoding: chunked"),
        _ if matches!(g.framing, Framing::ContentLength) => {
            line(&mut out, format!("Content-Length: {body_len}").as_bytes());
            if g.fault == Fault::DupClSame {
                line(&mut out, format!("Content-Length: {body_len}").as_bytes());
            }
        }
        _ => {}
    }
    match &g.fault {
        Fault::ObsFold => {
            line(&mut out, b"X-Folded: first");
            line(&mut out, b"  continued");
        }
        Fault::SpaceBeforeColon => line(&mut out, b"X-Spaced : v"),
        Fault::BareCrInValue => line(&mut out, b"X-Cr: a\rb"),
        Fault::NulInHeader => line(&mut out, b"X-Nul: a\0b"),
        // Just over the 64 KiB limit: hyper alone lets a head this size
        // through when it completes in the read that crosses its buffer
        // limit, which admission's own check refuses.
        Fault::OversizeHeader => line(
            &mut out,
            format!("X-Big: {}", "b".repeat(70 * 1024)).as_bytes(),
        ),
        Fault::TooManyHeaders => {
            for i in 0..120 {
                line(&mut out, format!("X-Many-{i}: {i}").as_bytes());
            }
        }
        _ => {}
    }
    let mut connection = Vec::new();
    if last {
        connection.push("close");
    }
    if g.conn_named {
        line(&mut out, b"X-Drop-Me: secret");
        connection.push("X-Drop-Me");
    }
    if !connection.is_empty() {
        line(
            &mut out,
            format!("Connection: {}", connection.join(", ")).as_bytes(),
        );
    }
    out.extend_from_slice(eol);
    out.extend_from_slice(&wire_body);

    // The class: what the parser, then admission, makes of it.
    let normal = normalize(&path, EncodedSlashes::Keep);
    let seen = match &g.fault {
        Fault::None | Fault::DupClSame if normal.is_ok() => Seen::Must,
        Fault::BareLf | Fault::TeAndCl(_) if normal.is_ok() => Seen::Maybe,
        _ => Seen::Never,
    };
    let then = match &g.fault {
        // Framing parsed whole: a refusal by admission (400, 405) leaves the
        // connection usable, though the proxy may close it.
        Fault::None | Fault::DupClSame | Fault::BareLf if normal.is_ok() => {
            if g.fault == Fault::BareLf {
                Seen::Maybe
            } else {
                Seen::Must
            }
        }
        Fault::None
        | Fault::DupClSame
        | Fault::BareLf
        | Fault::NoHost
        | Fault::TwoHosts
        | Fault::BadHost(_)
        | Fault::ForbiddenMethod(_) => Seen::Maybe,
        // An unparsable head or body, or a message that may be smuggling
        // (TE with CL), ends the connection.
        _ => Seen::Never,
    };
    let mut target = normal.map(|p| p.into_owned()).unwrap_or_default();
    if let Some(q) = &g.query {
        target.push('?');
        target.push_str(q);
    }
    let mut headers: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    headers
        .entry(MARKER.to_owned())
        .or_default()
        .push(marker.as_bytes().to_vec());
    let mut request_id = None;
    for (name, value) in &g.headers {
        let name = name.to_ascii_lowercase();
        if name == "x-request-id" && request_id.is_none() {
            request_id = Some(value.clone());
        }
        if !proxy_owned(&name) {
            headers.entry(name).or_default().push(value.clone());
        }
    }
    let expected = Expected {
        method: g.method.to_owned(),
        target,
        host: g.host.to_owned(),
        headers,
        request_id,
        body: g.body.clone(),
    };
    (out, seen, then, expected)
}

/// Checks one forwarded request against what the client sent.
fn check_forwarded(r: &Recorded, e: &Expected, proxy_port: u16) -> Result<(), String> {
    let h = |name: &str| r.headers.get(name).map(|v| v.as_bytes().to_vec());
    if r.method != e.method {
        return Err(format!("method {:?}, sent {:?}", r.method, e.method));
    }
    if r.target != e.target {
        return Err(format!("target {:?}, expected {:?}", r.target, e.target));
    }
    if h("host") != Some(e.host.clone().into_bytes()) {
        return Err(format!("host {:?}, sent {:?}", h("host"), e.host));
    }
    let mut got: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for (name, value) in &r.headers {
        if !proxy_owned(name.as_str()) {
            got.entry(name.as_str().to_owned())
                .or_default()
                .push(value.as_bytes().to_vec());
        }
    }
    if got != e.headers {
        return Err(format!(
            "headers differ:\n forwarded {got:?}\n sent      {:?}",
            e.headers
        ));
    }
    let loopback = Some(b"127.0.0.1".to_vec());
    if h("x-forwarded-for") != loopback || h("x-real-ip") != loopback {
        return Err("X-Forwarded-For / X-Real-IP are not the peer's address".into());
    }
    if h("x-forwarded-host") != Some(e.host.clone().into_bytes())
        || h("x-forwarded-proto") != Some(b"http".to_vec())
        || h("x-forwarded-port") != Some(proxy_port.to_string().into_bytes())
    {
        return Err("X-Forwarded-Host/-Proto/-Port wrong".into());
    }
    if r.headers.contains_key("forwarded") || r.headers.contains_key("x-drop-me") {
        return Err("Forwarded or a Connection-named header was passed on".into());
    }
    let id = h("x-request-id").ok_or("no X-Request-Id")?;
    match &e.request_id {
        Some(sent) if well_formed_request_id(&http::HeaderValue::from_bytes(sent).unwrap()) => {
            if &id != sent {
                return Err("a well-formed X-Request-Id was not kept".into());
            }
        }
        _ => {
            if id.len() != 32 || !id.iter().all(u8::is_ascii_hexdigit) {
                return Err(format!("generated X-Request-Id {id:?}"));
            }
        }
    }
    let body = r.body.as_ref().ok_or("body incomplete")?;
    if body.as_ref() != e.body.as_slice() {
        return Err(format!(
            "body: {} bytes forwarded, {} sent",
            body.len(),
            e.body.len()
        ));
    }
    let cl = r.headers.get("content-length");
    let te = r.headers.get("transfer-encoding");
    if cl.is_some() && te.is_some() {
        return Err("forwarded with both Content-Length and Transfer-Encoding".into());
    }
    if let Some(cl) = cl
        && cl.to_str().ok().and_then(|v| v.parse::<usize>().ok()) != Some(body.len())
    {
        return Err(format!("forwarded Content-Length {cl:?}"));
    }
    Ok(())
}

/// The status codes of the answers in `bytes`: each `HTTP/1.1 NNN `. The
/// backend's body (`ok`) and the proxy's error texts hold none, and a body
/// may end without a newline, so status lines are found anywhere.
fn statuses(bytes: &[u8]) -> Vec<u16> {
    let mut out = Vec::new();
    let needle = b"HTTP/1.1 ";
    let mut i = 0;
    while i + needle.len() + 3 <= bytes.len() {
        if bytes[i..].starts_with(needle) {
            let code = &bytes[i + needle.len()..i + needle.len() + 3];
            if let Some(code) = std::str::from_utf8(code).ok().and_then(|c| c.parse().ok()) {
                out.push(code);
            }
        }
        i += 1;
    }
    out
}

/// Writes the case's requests on one connection and reads until the proxy
/// closes it; returns what came back.
async fn exchange(port: u16, wire: &[u8], close_write: bool) -> Result<Vec<u8>, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    // The proxy may answer (431, 400) and close before reading it all.
    let _ = stream.write_all(wire).await;
    if close_write {
        let _ = stream.shutdown().await;
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(DEADLINE, read_all)
        .await
        .map_err(|_| "the proxy neither answered nor closed the connection".to_owned())?;
    Ok(out)
}

/// One case: up to two pipelined requests on one connection.
struct Case {
    markers: Vec<String>,
    seen: Vec<Seen>,
    expected: Vec<Expected>,
}

async fn run_case(
    port: u16,
    recorder: &Recorder,
    id: u64,
    reqs: &[Gen],
    cases: &Mutex<Vec<Case>>,
) -> Result<(), TestCaseError> {
    // A request that closes the client's side ends the pipeline.
    let n = reqs
        .iter()
        .position(|g| g.fault.closes())
        .map_or(reqs.len(), |i| i + 1);
    let reqs = &reqs[..n];
    let mut wire = Vec::new();
    let mut case = Case {
        markers: Vec::new(),
        seen: Vec::new(),
        expected: Vec::new(),
    };
    // What the requests before allow for the next one (see `render`).
    let mut cap = Seen::Must;
    for (i, g) in reqs.iter().enumerate() {
        let marker = format!("{id}-{i}");
        let (bytes, seen, then, expected) = render(g, &marker, i + 1 == reqs.len());
        wire.extend_from_slice(&bytes);
        let seen = match (cap, seen) {
            (Seen::Never, _) | (_, Seen::Never) => Seen::Never,
            (Seen::Maybe, _) | (_, Seen::Maybe) => Seen::Maybe,
            (Seen::Must, Seen::Must) => Seen::Must,
        };
        cap = match (cap, then) {
            (Seen::Never, _) | (_, Seen::Never) => Seen::Never,
            (Seen::Maybe, _) | (_, Seen::Maybe) => Seen::Maybe,
            (Seen::Must, Seen::Must) => Seen::Must,
        };
        case.markers.push(marker);
        case.seen.push(seen);
        case.expected.push(expected);
    }
    let close_write = reqs.last().is_some_and(|g| g.fault.closes());
    let answer = exchange(port, &wire, close_write)
        .await
        .map_err(TestCaseError::fail)?;
    let codes = statuses(&answer);
    let head = String::from_utf8_lossy(&answer[..answer.len().min(400)]).into_owned();
    let sent = String::from_utf8_lossy(&wire[..wire.len().min(600)]).into_owned();

    let must = case.seen.iter().take_while(|s| **s == Seen::Must).count();
    if codes.len() < must || codes[..must].iter().any(|c| *c != 200) {
        return Err(TestCaseError::fail(format!(
            "expected {must} answers 200 first, got {codes:?}: {head:?}\nsent {sent:?}"
        )));
    }
    if codes.len() > case.seen.len() {
        return Err(TestCaseError::fail(format!(
            "more answers than requests: {codes:?}"
        )));
    }
    for (i, code) in codes.iter().enumerate().skip(must) {
        let ok = match case.seen[i] {
            Seen::Never => (400..500).contains(code),
            _ => *code == 200 || (400..500).contains(code),
        };
        if !ok {
            return Err(TestCaseError::fail(format!(
                "request {i} ({:?}) answered {code}: {head:?}\nsent {sent:?}",
                case.seen[i]
            )));
        }
    }
    for (i, marker) in case.markers.iter().enumerate() {
        let got = recorder.complete(marker);
        let allowed = match case.seen[i] {
            Seen::Must => 1..=1,
            Seen::Maybe => 0..=1,
            Seen::Never => 0..=0,
        };
        if !allowed.contains(&got.len()) {
            return Err(TestCaseError::fail(format!(
                "request {i} ({:?}) reached the backend whole {} times",
                case.seen[i],
                got.len()
            )));
        }
        if let Some(r) = got.first() {
            check_forwarded(r, &case.expected[i], port)
                .map_err(|e| TestCaseError::fail(format!("request {i}: {e}")))?;
        }
    }
    cases.lock().push(case);
    Ok(())
}

#[test]
fn http1_front_never_forwards_what_it_did_not_parse() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    // One proxy and one backend for the whole property.
    let proxy = rt.block_on(async {
        let addr = recording_backend(recorder.clone()).await;
        write(
            dir.path(),
            "fuzz.yaml",
            &docs(&[
                ingress("default", "fuzz", HOST, &[("/", "Prefix", "rec")]),
                backend_objects("default", "rec", &[addr]),
            ]),
        );
        // Short client limits: a case the proxy would wait on ends soon.
        Proxy::start(
            dir.path(),
            &[
                "--client-header-timeout",
                "5s",
                "--client-body-timeout",
                "5s",
            ],
        )
        .await
    });
    let port = proxy.http_port;

    let cases_n = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let mut runner = TestRunner::new(Config {
        cases: cases_n,
        max_shrink_iters: 300,
        failure_persistence: None,
        ..Config::default()
    });
    let next_id = AtomicU64::new(0);
    let cases = Mutex::new(Vec::new());
    let strategy = prop::collection::vec(request(), 1..=2);
    let result = runner.run(&strategy, |reqs| {
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        rt.block_on(run_case(port, &recorder, id, &reqs, &cases))
    });
    if let Err(error) = result {
        panic!("{error}");
    }

    rt.block_on(async {
        // Anything forwarded late (after the client had its answer) shows
        // up here.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let cases = std::mem::take(&mut *cases.lock());
        let mut counts = [0usize; 3];
        let mut either_forwarded = 0;
        for case in cases.iter() {
            for (marker, seen) in case.markers.iter().zip(&case.seen) {
                let whole = recorder.complete(marker).len();
                if *seen == Seen::Maybe && whole == 1 {
                    either_forwarded += 1;
                }
                let ok = match seen {
                    Seen::Must => whole == 1,
                    Seen::Maybe => whole <= 1,
                    Seen::Never => whole == 0,
                };
                assert!(ok, "{marker} ({seen:?}) reached the backend {whole} times");
                counts[*seen as usize] += 1;
            }
        }
        assert!(
            recorder.stray.lock().is_empty(),
            "requests without a marker reached the backend: {:?}",
            recorder.stray.lock()
        );
        // Both classes were exercised.
        assert!(counts[Seen::Must as usize] > 0 && counts[Seen::Never as usize] > 0);
        eprintln!(
            "front fuzz: {} cases; requests valid {}, refused {}, either {} (forwarded {})",
            cases.len(),
            counts[0],
            counts[1],
            counts[2],
            either_forwarded
        );
        let mut proxy = proxy;
        assert!(proxy.running(), "the proxy died");
        assert_eq!(proxy.admin("/healthz").await.status, StatusCode::OK);
        let resp = proxy.get(HOST, "/after").await;
        assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    });
}
