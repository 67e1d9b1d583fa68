//! The front door's limits: how long each side may take, how much a client
//! may send before its request is routed, and how many connections are
//! served at once. One value per flag, with nginx's meaning and (where it
//! has one) nginx's default, so that what a misbehaving client can cost is
//! bounded everywhere.

use std::time::Duration;

use super::normalize::EncodedSlashes;

/// A new connection must send a complete request head within this (nginx's
/// `client_header_timeout` is 60 s; ingress-nginx users meet 30 s from
/// hyper today, kept). An HTTP/1.1 keep-alive connection idle between
/// requests is closed after the same time.
pub const DEFAULT_CLIENT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// nginx's `client_body_timeout`: the longest pause between two pieces of a
/// request body.
pub const DEFAULT_CLIENT_BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// nginx's `send_timeout`: the longest a client may leave the answer unread.
pub const DEFAULT_CLIENT_SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// An HTTP/2 connection with no stream open is closed (with GOAWAY) after
/// this (nginx: `keepalive_timeout`, 75 s in ingress-nginx).
pub const DEFAULT_HTTP2_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// HTTP/2 connections are pinged this often, and dropped when a ping is not
/// answered within the same time.
pub const DEFAULT_HTTP2_KEEPALIVE: Duration = Duration::from_secs(20);
/// nginx's `proxy_send_timeout`: the longest a backend may leave a request
/// body unread.
pub const DEFAULT_PROXY_SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// nginx's `proxy_read_timeout`: the longest pause between two pieces of a
/// backend's response body.
pub const DEFAULT_PROXY_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Request line and headers together, for HTTP/1.1 and HTTP/2 alike
/// (nginx's `large_client_header_buffers` allows 4 x 8 KiB per line).
pub const DEFAULT_MAX_REQUEST_HEADER_SIZE: usize = 64 * 1024;
/// ingress-nginx's `max-worker-connections` default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16_384;
/// The smallest head limit hyper accepts (its read buffer).
pub const MIN_REQUEST_HEADER_SIZE: usize = 8 * 1024;

/// What the listeners and the request path enforce.
#[derive(Clone, Debug)]
pub struct Limits {
    pub client_header_timeout: Duration,
    pub client_body_timeout: Duration,
    pub client_send_timeout: Duration,
    pub http2_idle_timeout: Duration,
    pub http2_keepalive: Duration,
    pub proxy_send_timeout: Duration,
    pub proxy_read_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    pub max_request_header_size: usize,
    /// Client connections served at once, over both listeners; at the cap
    /// the accept loops wait.
    pub max_connections: usize,
    pub encoded_slashes: EncodedSlashes,
    /// Send `Server: rust-strom` (replacing the backend's).
    pub server_header: bool,
    /// Compress answers on routes whose Ingress does not say
    /// (`ruststrom.io/compression`); off as ingress-nginx's `use-gzip`.
    pub compression: bool,
    /// `--proxy-protocol`: peers in `--trusted-proxies` must open with a
    /// PROXY protocol header, and other peers must not.
    pub proxy_protocol: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            client_header_timeout: DEFAULT_CLIENT_HEADER_TIMEOUT,
            client_body_timeout: DEFAULT_CLIENT_BODY_TIMEOUT,
            client_send_timeout: DEFAULT_CLIENT_SEND_TIMEOUT,
            http2_idle_timeout: DEFAULT_HTTP2_IDLE_TIMEOUT,
            http2_keepalive: DEFAULT_HTTP2_KEEPALIVE,
            proxy_send_timeout: DEFAULT_PROXY_SEND_TIMEOUT,
            proxy_read_timeout: DEFAULT_PROXY_READ_TIMEOUT,
            tls_handshake_timeout: super::tls::HANDSHAKE_TIMEOUT,
            max_request_header_size: DEFAULT_MAX_REQUEST_HEADER_SIZE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            encoded_slashes: EncodedSlashes::Keep,
            server_header: true,
            compression: false,
            proxy_protocol: false,
        }
    }
}

/// File descriptors kept aside for listeners, the API client, manifests and
/// logs, outside the connections.
const RESERVED_FILES: u64 = 128;

/// Raises the process's soft limit on open files to its hard limit (the
/// default soft limit, often 1,024, is what made new clients time out when
/// it ran out), then keeps `--max-connections` within it: each client
/// connection may need a backend connection too, so at most half of what is
/// left. Returns the file limit in force.
pub fn fit_to_file_limit(limits: &mut Limits) -> Option<u64> {
    let files = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(files) => files,
        Err(error) => {
            tracing::warn!(%error, "cannot read or raise the open-files limit");
            return None;
        }
    };
    let room = usize::try_from(files.saturating_sub(RESERVED_FILES) / 2).unwrap_or(usize::MAX);
    if limits.max_connections > room {
        tracing::warn!(
            files,
            requested = limits.max_connections,
            max_connections = room.max(1),
            "--max-connections lowered to fit the open-files limit"
        );
        limits.max_connections = room.max(1);
    }
    Some(files)
}
