//! The immutable routing table: plain data built by [`crate::compile`] and
//! read by [`crate::proxy`]. Nothing here knows about Kubernetes or hyper.

mod backend;
mod cors;
mod ext_auth;
mod features;
mod host;
mod path;
mod policy;
pub mod rate_limit;
mod table;
mod tls;

pub use backend::{Backend, Endpoint, EndpointAddr, Picked};
pub use cors::{Cors, OriginPattern, Origins};
pub use ext_auth::{AuthCache, CachePolicy, Cached, Context, ExtAuth, Template, Var, Vars};
pub use features::{
    BasicAuth, Encoding, Encodings, ErrorCodes, HeaderEdits, PasswordHash, Redirect, RouteFeatures,
    SourceRanges,
};
pub use host::{HostMatch, normalize_host};
pub use path::PathMatch;
pub use policy::{
    ActiveCheck, Algorithm, BackendPolicy, HashKey, PassiveCheck, RetryPolicy, StickyCookie,
};
pub use rate_limit::{ClientLimits, LimitKind, LimitSettings, Rate, Refusal, Slot};
pub use table::{HostRoutes, Route, RoutingTable, TableBuilder};
pub use tls::{Certificate, HostTls, HttpsPolicy, TlsBuilder, TlsTable};
