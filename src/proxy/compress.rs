//! Response compression: gzip, brotli and zstd, chosen by the client's
//! `Accept-Encoding`, applied while the backend's body streams.
//!
//! Asked per Ingress (`ruststrom.io/compression`) or for every route
//! (`--compression`). What is compressed follows nginx's gzip module, as
//! ingress-nginx configures it: only 200, 403 and 404 answers (so never a
//! 206, 204 or 304), only the types of ingress-nginx's `gzip-types` (plus
//! `text/html`), only bodies of at least [`MIN_LENGTH`] bytes when their
//! length is known, never an answer that already has a `Content-Encoding`,
//! nor one marked `Cache-Control: no-transform`, never for HEAD or for a
//! request with `Range`. Such an answer gets `Vary: Accept-Encoding` whether
//! this client accepts an encoding or not, so a cache keeps the variants
//! apart (nginx's `gzip_vary on`).
//!
//! The encoder never holds the body: each piece is compressed as it comes,
//! and what it made is flushed (a sync flush, which ends the current block)
//! whenever the backend has nothing more for now, so server-sent events and
//! long polls still arrive piece by piece.

use std::io::{self, Write};

use bytes::Bytes;
use http::header::{
    ACCEPT_ENCODING, ACCEPT_RANGES, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE,
    ETAG, RANGE, VARY,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Version};

use crate::model::{Encoding, Encodings};

/// ingress-nginx's `gzip-min-length`: smaller bodies (of known length)
/// gain too little to be worth a stream's state.
pub const MIN_LENGTH: u64 = 256;

/// ingress-nginx's `gzip-types` default, and `text/html`, which nginx always
/// compresses when gzip is on.
pub const TYPES: &[&str] = &[
    "text/html",
    "application/atom+xml",
    "application/javascript",
    "application/x-javascript",
    "application/json",
    "application/rss+xml",
    "application/vnd.ms-fontobject",
    "application/x-font-ttf",
    "application/x-web-app-manifest+json",
    "application/xhtml+xml",
    "application/xml",
    "font/opentype",
    "image/svg+xml",
    "image/x-icon",
    "text/css",
    "text/javascript",
    "text/plain",
    "text/x-component",
];

/// ingress-nginx's `gzip-level` default: the cheapest level, most of the
/// gain on text.
const GZIP_LEVEL: u32 = 1;
/// ingress-nginx's `brotli-level` default.
const BROTLI_QUALITY: u32 = 4;
/// zstd's own default level: faster than gzip at level 6, smaller output.
const ZSTD_LEVEL: i32 = 3;
/// A 512 KiB window for brotli and zstd (ngx_brotli's `brotli_window`
/// default): bounds each stream's memory, whatever level the library picks.
const WINDOW_LOG: u32 = 19;
/// Compressed output is handed on once this much is ready, so a large body
/// goes out in pieces of this size rather than in one piece at the end.
pub const OUT_CHUNK: usize = 16 * 1024;

/// What the request allows, read before it goes to the backend.
#[derive(Debug, Clone, Copy)]
pub struct Asked {
    /// The encoding to use; `None` when the client accepts none of those
    /// allowed (an eligible answer still gets `Vary`).
    pub encoding: Option<Encoding>,
}

/// Reads a request for compression; `None` when its answer must not be
/// touched at all: HEAD, `Range`, or HTTP/1.0 (nginx's `gzip_http_version
/// 1.1`: without chunked encoding the length of a compressed body is only
/// told by closing the connection).
pub fn asked<B>(allowed: Encodings, req: &http::Request<B>) -> Option<Asked> {
    if allowed.is_empty()
        || req.method() == Method::HEAD
        || req.version() < Version::HTTP_11
        || req.headers().contains_key(RANGE)
    {
        return None;
    }
    let headers = req.headers();
    Some(Asked {
        encoding: negotiate(allowed, headers),
    })
}

/// The preferred allowed encoding of the request's `Accept-Encoding`: the
/// highest q-value wins, q=0 excludes, `*` stands for those not named, and
/// a tie goes to zstd, then brotli, then gzip (the order of
/// [`Encoding::ALL`]: fastest for its ratio first).
pub fn negotiate(allowed: Encodings, headers: &HeaderMap) -> Option<Encoding> {
    let mut named: [Option<u16>; 3] = [None; 3];
    let mut star = None;
    for value in headers.get_all(ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let Some(q) = qvalue(parts) else { continue };
            if coding == "*" {
                star = Some(star.map_or(q, |s: u16| s.max(q)));
            } else if let Some(encoding) = Encoding::from_coding(coding) {
                let slot = &mut named[encoding as usize];
                *slot = Some(slot.map_or(q, |s| s.max(q)));
            }
        }
    }
    let mut best: Option<(Encoding, u16)> = None;
    for encoding in Encoding::ALL {
        if !allowed.contains(encoding) {
            continue;
        }
        let q = named[encoding as usize].or(star).unwrap_or(0);
        if q > 0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((encoding, q));
        }
    }
    best.map(|(encoding, _)| encoding)
}

/// The q-value of one `Accept-Encoding` item's parameters, in thousandths
/// (1000 when absent); `None` for a malformed one, which drops the item.
fn qvalue<'a>(params: impl Iterator<Item = &'a str>) -> Option<u16> {
    let mut q = 1000;
    for param in params {
        let (name, value) = param.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("q") {
            continue;
        }
        let value = value.trim();
        let (int, frac) = value.split_once('.').unwrap_or((value, ""));
        if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let thousandths = frac
            .bytes()
            .chain(std::iter::repeat(b'0'))
            .take(3)
            .fold(0u16, |acc, b| acc * 10 + u16::from(b - b'0'));
        q = match int {
            "0" => thousandths,
            "1" if thousandths == 0 => 1000,
            _ => return None,
        };
    }
    Some(q)
}

/// Decides for an answer, and rewrites its headers when it is compressed:
/// `Content-Encoding` set, `Content-Length` and `Accept-Ranges` dropped
/// (neither holds for the new body), a strong `ETag` made weak (the bytes
/// differ, the content does not). Returns the encoder for its body.
pub fn respond(asked: Asked, status: StatusCode, headers: &mut HeaderMap) -> Option<Encoder> {
    if !eligible(status, headers) {
        return None;
    }
    add_vary(headers);
    let encoding = asked.encoding?;
    let encoder = Encoder::new(encoding).ok()?;
    headers.insert(
        CONTENT_ENCODING,
        HeaderValue::from_static(encoding.coding()),
    );
    headers.remove(CONTENT_LENGTH);
    headers.remove(ACCEPT_RANGES);
    if let Some(etag) = headers.get(ETAG)
        && !etag.as_bytes().starts_with(b"W/")
    {
        let mut weak = b"W/".to_vec();
        weak.extend_from_slice(etag.as_bytes());
        match HeaderValue::from_bytes(&weak) {
            Ok(value) => headers.insert(ETAG, value),
            Err(_) => headers.remove(ETAG),
        };
    }
    Some(encoder)
}

/// Whether an answer may be compressed at all (for any client).
fn eligible(status: StatusCode, headers: &HeaderMap) -> bool {
    let status_ok = matches!(
        status,
        StatusCode::OK | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND
    );
    if !status_ok || headers.contains_key(CONTENT_ENCODING) {
        return false;
    }
    let no_transform = headers.get_all(CACHE_CONTROL).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|d| d.trim().eq_ignore_ascii_case("no-transform"))
        })
    });
    if no_transform {
        return false;
    }
    let compressible = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim())
        .is_some_and(|t| TYPES.iter().any(|known| known.eq_ignore_ascii_case(t)));
    if !compressible {
        return false;
    }
    let length = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    length.is_none_or(|n| n >= MIN_LENGTH)
}

/// Adds `Accept-Encoding` to `Vary` unless it is there (or `Vary: *`).
fn add_vary(headers: &mut HeaderMap) {
    let present = headers.get_all(VARY).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',').any(|f| {
                let f = f.trim();
                f == "*" || f.eq_ignore_ascii_case("accept-encoding")
            })
        })
    });
    if !present {
        headers.append(VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

/// One compressed stream: input in, compressed bytes out.
pub struct Encoder {
    kind: Kind,
    /// Input written since the last flush: flushing again without any would
    /// add empty blocks.
    dirty: bool,
    finished: bool,
    /// Stays empty: the output of a finished brotli stream.
    spare: Vec<u8>,
}

enum Kind {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    /// `None` once finished (brotli finishes by giving its writer back).
    Brotli(Option<Box<brotli::CompressorWriter<Vec<u8>>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            Kind::Gzip(_) => "gzip",
            Kind::Brotli(_) => "br",
            Kind::Zstd(_) => "zstd",
        };
        f.debug_struct("Encoder").field("kind", &kind).finish()
    }
}

impl Encoder {
    pub fn new(encoding: Encoding) -> io::Result<Self> {
        let kind = match encoding {
            Encoding::Gzip => Kind::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(GZIP_LEVEL),
            )),
            Encoding::Brotli => Kind::Brotli(Some(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                4096,
                BROTLI_QUALITY,
                WINDOW_LOG,
            )))),
            Encoding::Zstd => {
                let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), ZSTD_LEVEL)?;
                encoder.window_log(WINDOW_LOG)?;
                Kind::Zstd(encoder)
            }
        };
        Ok(Self {
            kind,
            dirty: false,
            finished: false,
            spare: Vec::new(),
        })
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Compresses one piece of the body.
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.dirty = true;
        match &mut self.kind {
            Kind::Gzip(e) => e.write_all(data),
            Kind::Brotli(Some(e)) => e.write_all(data),
            Kind::Zstd(e) => e.write_all(data),
            Kind::Brotli(None) => Err(io::Error::other("brotli stream already finished")),
        }
    }

    /// What is ready, when at least `min` bytes are.
    pub fn ready(&mut self, min: usize) -> Option<Bytes> {
        let out = self.output();
        (out.len() >= min.max(1)).then(|| Bytes::from(std::mem::take(out)))
    }

    /// Everything written so far, compressed (a sync flush); empty when
    /// nothing was written since the last flush.
    pub fn flush(&mut self) -> io::Result<Bytes> {
        if self.dirty {
            self.dirty = false;
            match &mut self.kind {
                Kind::Gzip(e) => e.flush()?,
                Kind::Brotli(Some(e)) => e.flush()?,
                Kind::Zstd(e) => e.flush()?,
                Kind::Brotli(None) => {}
            }
        }
        Ok(Bytes::from(std::mem::take(self.output())))
    }

    /// Ends the stream; returns the rest of it.
    pub fn finish(&mut self) -> io::Result<Bytes> {
        if self.finished {
            return Ok(Bytes::new());
        }
        self.finished = true;
        let out = match &mut self.kind {
            Kind::Gzip(e) => {
                e.try_finish()?;
                std::mem::take(e.get_mut())
            }
            Kind::Brotli(e) => e.take().map(|e| e.into_inner()).unwrap_or_default(),
            Kind::Zstd(e) => {
                e.do_finish()?;
                std::mem::take(e.get_mut())
            }
        };
        Ok(Bytes::from(out))
    }

    fn output(&mut self) -> &mut Vec<u8> {
        match &mut self.kind {
            Kind::Gzip(e) => e.get_mut(),
            Kind::Brotli(Some(e)) => e.get_mut(),
            Kind::Zstd(e) => e.get_mut(),
            // Finished: its output was taken whole.
            Kind::Brotli(None) => &mut self.spare,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT_ENCODING, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn q_values_pick_the_encoding() {
        use Encoding::{Brotli, Gzip, Zstd};
        let all = Encodings::ALL;
        let mut gzip_only = Encodings::NONE;
        gzip_only.insert(Gzip);
        for (allowed, value, want) in [
            (all, "gzip", Some(Gzip)),
            (all, "gzip, br, zstd", Some(Zstd)),
            (all, "gzip, br", Some(Brotli)),
            (all, "br;q=0.5, gzip;q=0.9", Some(Gzip)),
            (all, "br;q=1.0, gzip;q=1", Some(Brotli)),
            (all, "zstd;q=0, br;q=0.000, gzip;q=0.001", Some(Gzip)),
            (all, "*", Some(Zstd)),
            (all, "*;q=0.1, zstd;q=0", Some(Brotli)),
            (all, "identity", None),
            (all, "gzip;q=0", None),
            (all, "gzip;q=2", None),
            (all, "gzip;q=0.1234", None),
            (all, "gzip;q=abc", None),
            (all, "GZIP;Q=0.5", Some(Gzip)),
            (gzip_only, "zstd, br", None),
            (gzip_only, "zstd, br, *;q=0.1", Some(Gzip)),
        ] {
            assert_eq!(negotiate(allowed, &accept(value)), want, "{value}");
        }
    }

    #[test]
    fn eligibility_follows_nginx_gzip() {
        let headers = |pairs: &[(&str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(
                    http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                );
            }
            h
        };
        let text = [("content-type", "text/html; charset=utf-8")];
        for (status, pairs, want) in [
            (200, &text[..], true),
            (404, &text[..], true),
            (403, &text[..], true),
            (201, &text[..], false),
            (206, &text[..], false),
            (304, &text[..], false),
            (200, &[("content-type", "image/png")][..], false),
            (200, &[][..], false),
            (
                200,
                &[("content-type", "text/css"), ("content-length", "255")][..],
                false,
            ),
            (
                200,
                &[("content-type", "text/css"), ("content-length", "256")][..],
                true,
            ),
            (
                200,
                &[("content-type", "text/css"), ("content-encoding", "br")][..],
                false,
            ),
            (
                200,
                &[
                    ("content-type", "text/css"),
                    ("cache-control", "No-Transform"),
                ][..],
                false,
            ),
        ] {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(
                eligible(status, &headers(pairs)),
                want,
                "{status} {pairs:?}"
            );
        }
    }

    #[test]
    fn vary_is_added_once() {
        let mut h = HeaderMap::new();
        h.insert(VARY, HeaderValue::from_static("Origin, accept-encoding"));
        add_vary(&mut h);
        assert_eq!(h.get_all(VARY).iter().count(), 1);
        let mut h = HeaderMap::new();
        h.insert(VARY, HeaderValue::from_static("Origin"));
        add_vary(&mut h);
        assert_eq!(h.get_all(VARY).iter().count(), 2);
    }
}
