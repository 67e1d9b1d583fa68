//! RustStrom: a Kubernetes ingress controller with an in-process hyper data plane.
//!
//! How the pieces fit:
//!
//! - [`source`] fills a [`source::Snapshot`] with Kubernetes objects: from a
//!   folder of YAML in standalone mode ([`source::files`]), from reflectors
//!   on the API server in cluster mode ([`source::kube`]).
//! - [`compile`] turns a snapshot into one immutable [`model::RoutingTable`].
//!   It is the only code that reads Kubernetes types, and it is pure.
//! - [`publish`] swaps a compiled table in; [`proxy`] serves HTTP from
//!   whatever table is current, so a change never drops a connection or a
//!   request in flight. The request path starts in [`proxy::handler`].
//! - [`admin`] serves `/metrics`, `/healthz` and `/readyz`; [`metrics`] owns
//!   the Prometheus families; [`dashboard`] serves the live dashboard and
//!   its JSON API.
//! - [`run`] wires standalone mode together, [`cluster`] cluster mode: its
//!   [`sync`] loop compiles watch events, [`leader`] elects the replica that
//!   writes [`status`] and Events. [`demo`] and [`check`] are the other
//!   commands.
#![forbid(unsafe_code)]

pub mod admin;
pub mod balance;
pub mod check;
pub mod cli;
pub mod cluster;
pub mod compile;
pub mod config;
pub mod crd;
pub mod dashboard;
pub mod demo;
pub mod health;
pub mod leader;
pub mod metrics;
pub mod model;
pub mod proxy;
pub mod publish;
pub mod run;
pub mod shutdown;
pub mod source;
pub mod status;
pub mod sync;
