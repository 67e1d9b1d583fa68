//! Where Kubernetes objects come from. Every source fills the same
//! [`Snapshot`]; the compile step never knows which one did.

pub mod files;
pub mod kube;
pub mod manifest;
mod snapshot;

pub use manifest::{Object, ParseError, parse_manifest};
pub use snapshot::{ObjectKey, Snapshot};
