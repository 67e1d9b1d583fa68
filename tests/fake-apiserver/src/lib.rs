//! A fake Kubernetes API server for tests: the real REST and watch protocol
//! over HTTP on 127.0.0.1, so the unmodified `kube` client, kube-runtime
//! watchers and reflectors, kubectl and the controller binary (through a
//! kubeconfig) work against it.
//!
//! - [`server`] owns the handle: start, kube clients, kubeconfigs, fault
//!   injection ([`FakeApiServer::expire_history`],
//!   [`FakeApiServer::drop_watches`], [`FakeApiServer::set_delay`], and per
//!   resource [`FakeApiServer::hold`] and [`FakeApiServer::fail`]).
//! - `routes` maps paths and verbs to `discovery`, `list`, `watch` and
//!   `write`; `patch` reads the four PATCH formats.
//! - [`store`] keeps the objects as JSON with one resourceVersion counter;
//!   `history` records every change for watches and older snapshots;
//!   `meta` stamps server-owned metadata; `direct` holds the test-side
//!   [`Store`] methods (`create`, `replace`, `apply`, `get_as`, ...).
//! - [`resources`] registers the served types; add a CRD with
//!   [`FakeApiServer::register`] or [`Builder::resource`].
//!
//! What is simplified versus a real kube-apiserver is listed in README.md.
#![forbid(unsafe_code)]

mod direct;
mod discovery;
pub mod error;
mod faults;
mod history;
mod kubeconfig;
mod list;
pub mod manifests;
mod meta;
mod patch;
mod query;
pub mod resources;
mod respond;
mod routes;
mod selector;
pub mod server;
pub mod store;
mod watch;
mod write;

pub use error::ApiError;
pub use resources::ResourceType;
pub use server::{Builder, FakeApiServer, RecordedRequest};
pub use store::Store;
