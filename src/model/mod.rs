//! The immutable routing table: plain data built by [`crate::compile`] and
//! read by [`crate::proxy`]. Nothing here knows about Kubernetes or hyper.

mod backend;
mod host;
mod path;
mod table;

pub use backend::{Backend, Endpoint, EndpointAddr};
pub use host::{HostMatch, normalize_host};
pub use path::PathMatch;
pub use table::{HostRoutes, Route, RoutingTable, TableBuilder};
