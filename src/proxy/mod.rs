//! The data plane: listeners, the request path, and the upstream client.
//!
//! A request goes [`listener`] (accept, one task per connection; on the
//! HTTPS listener the [`tls`] handshake first) -> [`handler::handle`] (route
//! lookup in the live table, [`redirect`] to HTTPS, endpoint pick) ->
//! [`headers`] (forwarding headers, hop-by-hop removal) -> [`attempt`]
//! (retries, passive health) -> [`upstream`] (keep-alive connections pooled
//! per endpoint) -> back through [`body`], with every failure turned into a
//! response in one place, [`error`].

pub mod attempt;
pub mod body;
pub mod cookie;
pub mod error;
pub mod handler;
pub mod headers;
pub mod listener;
pub mod redirect;
pub mod tls;
pub mod upgrade;
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
}
