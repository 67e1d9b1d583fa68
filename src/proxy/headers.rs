//! Header rewriting between client and backend: forwarding headers in,
//! hop-by-hop headers out, in both directions.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::access_log::TlsInfo;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");
/// The longest client-sent `X-Request-Id` kept from an untrusted peer.
const MAX_REQUEST_ID: usize = 128;

/// What the proxy knows about a client connection, computed once per
/// connection so the request path only clones header values.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// `X-Real-IP` and the address appended to `X-Forwarded-For`.
    pub client_ip: HeaderValue,
    /// The listener's real port, for `X-Forwarded-Port`.
    pub local_port: HeaderValue,
    /// `http` or `https`, for `X-Forwarded-Proto`.
    pub proto: HeaderValue,
    /// The connection is TLS (the HTTPS listener).
    pub tls: bool,
    /// The peer is in `--trusted-proxies`: its `X-Forwarded-Proto` and
    /// `X-Forwarded-Port` are passed on instead of replaced.
    pub trusted: bool,
    /// The TLS version and SNI, for the access log (only kept when it is on).
    pub tls_info: Option<Arc<TlsInfo>>,
}

impl ConnInfo {
    pub fn new(peer: SocketAddr, local: SocketAddr, proto: &'static str) -> Self {
        let client_ip = HeaderValue::from_str(&peer.ip().to_string())
            .unwrap_or(HeaderValue::from_static("unknown"));
        let local_port = HeaderValue::from_str(&local.port().to_string())
            .unwrap_or(HeaderValue::from_static("0"));
        Self {
            peer,
            client_ip,
            local_port,
            proto: HeaderValue::from_static(proto),
            tls: proto == "https",
            trusted: false,
            tls_info: None,
        }
    }
}

/// The `Upgrade` value of an HTTP/1.1 upgrade request (WebSocket and the
/// like): present only when `Connection` names `upgrade`.
pub fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .any(|v| tokens(v).any(|t| t.eq_ignore_ascii_case("upgrade")));
    if asks {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    }
}

/// Whether the client accepts trailers (`TE: trailers`, which gRPC clients
/// always send).
pub fn accepts_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .any(|v| tokens(v).any(|t| t.eq_ignore_ascii_case("trailers")))
}

/// Removes hop-by-hop headers: `Connection` and every header it names,
/// `Keep-Alive`, `Proxy-*`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`.
/// An upgrade is re-announced by the caller after this.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none of them, or just `Connection: keep-alive`:
    // passes over the names find them, where removing each by name would
    // hash every one.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        // `close` and `keep-alive` are the usual options; neither names a
        // header left to remove (`Keep-Alive` goes below anyway).
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(tokens)
            .filter(|t| !t.eq_ignore_ascii_case("close") && !t.eq_ignore_ascii_case("keep-alive"))
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    while let Some(name) = headers.keys().find(|k| is_hop_by_hop(k)).cloned() {
        headers.remove(name);
    }
}

/// A header that is about one connection, never forwarded.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == KEEP_ALIVE
        || name == header::TE
        || name == header::TRAILER
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name.as_str().starts_with("proxy-")
}

/// Adds what a backend behind an ingress expects: `X-Forwarded-For`,
/// `X-Forwarded-Proto`, `X-Forwarded-Host`, `X-Forwarded-Port`, `X-Real-IP`
/// (set), and `X-Request-Id` (kept, or generated).
///
/// What a client claims about earlier hops is believed only from a peer in
/// `--trusted-proxies`: its `X-Forwarded-For` is appended to, its
/// `Forwarded`, `X-Forwarded-Proto` and `-Port` are passed on (it saw the
/// client's scheme and port, this hop did not). From anyone else
/// `X-Forwarded-For` is replaced by the peer's address, `Forwarded` is
/// removed, and an `X-Request-Id` is kept only when it is a well-formed id
/// (see [`well_formed_request_id`]), so a client cannot forge the address
/// a backend logs or inject text into its logs.
pub fn add_forwarding(headers: &mut HeaderMap, conn: &ConnInfo, host: Option<&HeaderValue>) {
    let forwarded_for = match conn
        .trusted
        .then(|| join_forwarded_for(headers, &conn.client_ip))
        .flatten()
    {
        Some(joined) => joined,
        None => conn.client_ip.clone(),
    };
    headers.insert(X_FORWARDED_FOR.clone(), forwarded_for);
    if !conn.trusted {
        headers.remove(&FORWARDED);
    }
    let keep = conn.trusted && !conn.tls && headers.contains_key(&X_FORWARDED_PROTO);
    if !keep {
        headers.insert(X_FORWARDED_PROTO.clone(), conn.proto.clone());
    }
    // As ingress-nginx: a trusted proxy's port when it sent one.
    if !keep || !headers.contains_key(&X_FORWARDED_PORT) {
        headers.insert(X_FORWARDED_PORT.clone(), conn.local_port.clone());
    }
    headers.insert(X_REAL_IP.clone(), conn.client_ip.clone());
    match host {
        Some(host) => {
            headers.insert(X_FORWARDED_HOST.clone(), host.clone());
        }
        None => {
            headers.remove(&X_FORWARDED_HOST);
        }
    }
    let keep_id = headers
        .get(&X_REQUEST_ID)
        .is_some_and(|id| conn.trusted || well_formed_request_id(id));
    if !keep_id {
        headers.insert(X_REQUEST_ID.clone(), request_id());
    }
}

/// 1 to 128 characters of letters, digits and `-_.:+=/`: UUIDs, hex ids,
/// and tracing ids such as AWS's `Root=1-...` all pass; spaces, quotes and
/// anything a log parser could trip on do not.
pub fn well_formed_request_id(id: &HeaderValue) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_REQUEST_ID
        && bytes.iter().all(|&b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'+' | b'=' | b'/')
        })
}

/// `existing, client` when the request already carries `X-Forwarded-For`
/// (possibly over several header lines).
fn join_forwarded_for(headers: &HeaderMap, client: &HeaderValue) -> Option<HeaderValue> {
    let mut values = headers.get_all(&X_FORWARDED_FOR).iter().peekable();
    values.peek()?;
    let mut joined = Vec::with_capacity(64);
    for v in values {
        joined.extend_from_slice(v.as_bytes());
        joined.extend_from_slice(b", ");
    }
    joined.extend_from_slice(client.as_bytes());
    HeaderValue::from_bytes(&joined).ok()
}

/// A random 128-bit id in 32 lowercase hex digits, as ingress-nginx's
/// `$req_id`.
pub fn request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut n = fastrand::u128(..);
    let mut buf = [0u8; 32];
    for b in buf.iter_mut().rev() {
        *b = HEX[(n & 0xf) as usize];
        n >>= 4;
    }
    // Hex digits are always a valid header value.
    HeaderValue::from_bytes(&buf).unwrap_or(HeaderValue::from_static("0"))
}

/// Comma-separated tokens of a `Connection` header value.
fn tokens(v: &HeaderValue) -> impl Iterator<Item = &str> {
    v.to_str()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn conn() -> ConnInfo {
        ConnInfo::new(
            "10.1.2.3:5555".parse().unwrap(),
            "0.0.0.0:8000".parse().unwrap(),
            "http",
        )
    }

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret"),
            ("connection", "x-other"),
            ("x-secret", "1"),
            ("x-other", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic x"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("x-kept", "yes"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut h);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, ["accept", "x-kept"]);
    }

    #[test]
    fn trailers_are_asked_for_with_te() {
        assert!(accepts_trailers(&map(&[("te", "trailers")])));
        assert!(accepts_trailers(&map(&[("te", "gzip, Trailers")])));
        assert!(!accepts_trailers(&map(&[("te", "gzip")])));
        assert!(!accepts_trailers(&map(&[])));
    }

    #[test]
    fn upgrade_needs_connection_upgrade() {
        let ws = map(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
        ]);
        assert_eq!(upgrade_protocol(&ws).unwrap(), "websocket");
        let no = map(&[("upgrade", "websocket")]);
        assert!(upgrade_protocol(&no).is_none());
    }

    #[test]
    fn forwarding_headers_are_set_and_appended() {
        let mut h = map(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2"),
            ("x-forwarded-proto", "https"),
            ("x-real-ip", "9.9.9.9"),
            ("x-forwarded-port", "1"),
            ("forwarded", "for=1.1.1.1"),
        ]);
        let host = HeaderValue::from_static("shop.example.com");
        add_forwarding(&mut h, &conn(), Some(&host));
        assert_eq!(
            h["x-forwarded-for"], "10.1.2.3",
            "an untrusted peer's chain is replaced"
        );
        assert!(!h.contains_key("forwarded"));
        let mut trusted = conn();
        trusted.trusted = true;
        let mut t = map(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2"),
            ("forwarded", "for=1.1.1.1"),
        ]);
        add_forwarding(&mut t, &trusted, Some(&host));
        assert_eq!(t["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 10.1.2.3");
        assert_eq!(t.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(t["forwarded"], "for=1.1.1.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "shop.example.com");
        assert_eq!(h["x-forwarded-port"], "8000");
        assert_eq!(h["x-real-ip"], "10.1.2.3");
        let id = h["x-request-id"].to_str().unwrap();
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn a_trusted_proxy_keeps_its_scheme_and_port() {
        let mut trusted = conn();
        trusted.trusted = true;
        let mut h = map(&[("x-forwarded-proto", "https"), ("x-forwarded-port", "443")]);
        add_forwarding(&mut h, &trusted, None);
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-port"], "443");
        assert_eq!(h["x-forwarded-for"], "10.1.2.3");

        // Without its own X-Forwarded-Proto, this hop's values; without its
        // own port, this hop's port.
        let mut h = map(&[("x-forwarded-port", "443")]);
        add_forwarding(&mut h, &trusted, None);
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-port"], "8000");
        let mut h = map(&[("x-forwarded-proto", "https")]);
        add_forwarding(&mut h, &trusted, None);
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-port"], "8000");

        // Over TLS this hop knows the scheme itself.
        let mut tls = ConnInfo::new(
            "10.1.2.3:5555".parse().unwrap(),
            "0.0.0.0:8443".parse().unwrap(),
            "https",
        );
        tls.trusted = true;
        assert!(tls.tls);
        let mut h = map(&[("x-forwarded-proto", "http"), ("x-forwarded-port", "80")]);
        add_forwarding(&mut h, &tls, None);
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-port"], "8443");
    }

    #[test]
    fn request_id_is_kept_when_well_formed() {
        for id in [
            "abc",
            "0f8e4c9a-1b2c-4d5e-8f90-123456789abc",
            "Root=1-5759e988-bd862e3f",
        ] {
            let mut h = map(&[("x-request-id", id)]);
            add_forwarding(&mut h, &conn(), None);
            assert_eq!(h["x-request-id"], id);
        }
        let long = "a".repeat(129);
        for id in ["a b", "x\"y", "<script>", long.as_str()] {
            let mut h = map(&[("x-request-id", id)]);
            add_forwarding(&mut h, &conn(), None);
            assert_ne!(h["x-request-id"], id, "{id}");
            assert_eq!(h["x-request-id"].len(), 32);
            let mut trusted = conn();
            trusted.trusted = true;
            let mut h = map(&[("x-request-id", id)]);
            add_forwarding(&mut h, &trusted, None);
            assert_eq!(h["x-request-id"], id, "a trusted proxy's id is kept");
        }
        let mut h = map(&[("x-request-id", "abc")]);
        add_forwarding(&mut h, &conn(), None);
        assert_eq!(h["x-request-id"], "abc");
        assert_eq!(h["x-forwarded-for"], "10.1.2.3");
        assert!(!h.contains_key("x-forwarded-host"));
        assert_ne!(request_id(), request_id());
    }
}
