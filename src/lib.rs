//! RustStrom: a Kubernetes ingress controller with an in-process hyper data plane.
//!
//! How the pieces fit:
//!
//! - [`source`] fills a [`source::Snapshot`] with Kubernetes objects: from a
//!   folder of YAML in standalone mode ([`source::files`]).
//! - [`compile`] turns a snapshot into one immutable [`model::RoutingTable`].
//!   It is the only code that reads Kubernetes types, and it is pure.
//! - [`publish`] swaps a compiled table in; [`proxy`] serves HTTP from
//!   whatever table is current, so a change never drops a connection or a
//!   request in flight. The request path starts in [`proxy::handler`].
//! - [`admin`] serves `/metrics`, `/healthz` and `/readyz`; [`metrics`] owns
//!   the Prometheus families.
//! - [`run`] wires standalone mode together; [`demo`] and [`check`] are the
//!   other commands.
#![forbid(unsafe_code)]

pub mod admin;
pub mod check;
pub mod cli;
pub mod compile;
pub mod config;
pub mod demo;
pub mod metrics;
pub mod model;
pub mod proxy;
pub mod publish;
pub mod run;
pub mod shutdown;
pub mod source;
