//! The data plane: listeners, the request path, and the upstream client.
//!
//! A request goes [`listener`] (accept up to `--max-connections`, one task
//! per connection, idle and stall limits from [`limits`]; on the HTTPS
//! listener the [`tls`] handshake first) -> [`handler::handle`]
//! ([`admission`]: method, host and the path's [`normalize`]d form; route
//! lookup in the live table, [`redirect`] to HTTPS, the route's annotation
//! [`features`], endpoint pick) ->
//! [`headers`] (forwarding headers, hop-by-hop removal) -> [`attempt`]
//! (retries, passive health; the client's body watched by [`upload`]) ->
//! [`upstream`] (keep-alive connections pooled per endpoint) -> back
//! through [`body`], with every failure turned into a response in one
//! place, [`error`]. Whether a request builds a record (for the
//! [`access_log`] and the dashboard's live [`feed`]) is [`records`]' call:
//! with neither wanting one, nothing is built.

pub mod access_log;
pub mod admission;
pub mod attempt;
pub mod basic_auth;
pub mod body;
pub mod compress;
pub mod conn;
pub mod cookie;
pub mod cors;
pub mod error;
pub mod error_page;
pub mod ext_auth;
pub mod features;
pub mod feed;
pub mod handler;
pub mod headers;
pub mod limits;
pub mod listener;
pub mod normalize;
pub mod proxy_protocol;
pub mod rate_limit;
pub mod records;
pub mod redirect;
pub mod route_redirect;
pub mod source_range;
pub mod tls;
pub mod upgrade;
pub mod upload;
pub mod upstream;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::metrics::Metrics;
use crate::model::RoutingTable;

pub use error::ProxyError;

/// The live routing table: read lock-free on every request, swapped whole by
/// the control side.
pub type SharedTable = Arc<ArcSwap<RoutingTable>>;

/// What every request needs: the table, the upstream, the metrics, limits.
pub struct Proxy {
    pub table: SharedTable,
    pub upstream: upstream::Upstream,
    pub metrics: Arc<Metrics>,
    /// Time allowed from receiving a request to the backend's response
    /// headers; past it the client gets 504.
    pub request_timeout: Duration,
    /// Upgraded connections (WebSocket) still open: the drain on shutdown
    /// waits for them too.
    pub tunnels: upgrade::Tunnels,
    /// The HTTP -> HTTPS redirect and which peers may claim HTTPS.
    pub https: redirect::HttpsSettings,
    /// Timeouts and sizes at the front door.
    pub limits: limits::Limits,
    /// `--max-connections`, shared by the HTTP and HTTPS listeners.
    pub connections: listener::ConnectionLimit,
    /// Who wants each request's record: the access log, the dashboard's
    /// live feed.
    pub records: Arc<records::Records>,
    /// The client for `auth-url` services outside the routing table.
    pub auth: ext_auth::AuthClient,
}
