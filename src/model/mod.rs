//! The immutable routing table: plain data built by [`crate::compile`] and
//! read by [`crate::proxy`]. Nothing here knows about Kubernetes or hyper.

mod backend;
mod features;
mod host;
mod path;
mod policy;
mod table;
mod tls;

pub use backend::{Backend, Endpoint, EndpointAddr, Picked};
pub use features::{
    BasicAuth, Encoding, Encodings, ErrorCodes, HeaderEdits, PasswordHash, Redirect, RouteFeatures,
    SourceRanges,
};
pub use host::{HostMatch, normalize_host};
pub use path::PathMatch;
pub use policy::{
    ActiveCheck, Algorithm, BackendPolicy, HashKey, PassiveCheck, RetryPolicy, StickyCookie,
};
pub use table::{HostRoutes, Route, RoutingTable, TableBuilder};
pub use tls::{Certificate, HostTls, HttpsPolicy, TlsBuilder, TlsTable};
