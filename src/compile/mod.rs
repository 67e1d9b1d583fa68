//! The compile step: a [`Snapshot`] of Kubernetes objects becomes one
//! immutable [`RoutingTable`], plus the problems found on the way.
//!
//! Pure: no I/O, no clock, no globals (the caller passes the time that
//! certificates are checked against). Bad objects are reported and skipped;
//! they never stop the rest of the table from compiling.

mod annotations;
mod class;
mod incremental;
mod ingress;
mod policy;
mod problem;
mod secret;
mod service;
#[cfg(test)]
mod tests;
mod tls;
mod x509;

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub use annotations::{
    FORCE_SSL_REDIRECT, HSTS, NGINX, NamedObjects, RUSTSTROM, SSL_REDIRECT, annotation_services,
    named_objects,
};
pub use class::CONTROLLER_NAME;
pub use incremental::{Compiler, Delta, Update};
pub use policy::PolicyStatus;
pub use problem::{Problem, Severity};
pub use secret::{SecretError, TLS_SECRET_TYPE};
pub use service::WEIGHT_ANNOTATION;
pub use x509::rfc3339;

use crate::model::{Backend, RoutingTable, TableBuilder};
use crate::source::{ObjectKey, Snapshot};

/// What decides which Ingresses are ours and which backends are allowed.
#[derive(Clone, Debug)]
pub struct CompileOptions {
    /// `--ingress-class`: the class name this controller answers to.
    pub ingress_class: String,
    /// `--watch-ingress-without-class`: serve Ingresses that name no class.
    pub watch_without_class: bool,
    /// `--allow-external-name`: let routes point at `ExternalName` Services.
    pub allow_external_name: bool,
    /// `--default-ssl-certificate`: the `kubernetes.io/tls` Secret that
    /// answers TLS clients sending no SNI or a name no Ingress lists.
    pub default_certificate: Option<ObjectKey>,
}

/// The result of one compile.
#[derive(Debug)]
pub struct Compiled {
    pub table: RoutingTable,
    pub problems: Vec<Problem>,
    /// The Ingresses this controller serves, oldest first.
    pub ingresses: Vec<ObjectKey>,
    /// What each BalancerPolicy's status should say.
    pub policies: Vec<PolicyStatus>,
}

/// Compiles a snapshot into the table with the given generation number.
/// Certificates are checked for expiry against `now`.
pub fn compile(
    snapshot: &Snapshot,
    options: &CompileOptions,
    generation: u64,
    now: SystemTime,
) -> Compiled {
    let classes = class::Classes::new(snapshot, options);
    let mut ours: Vec<(ObjectKey, &Arc<Ingress>)> = snapshot
        .ingresses
        .iter()
        .filter(|(_, ing)| classes.is_ours(ing))
        .map(|(k, ing)| (k.clone(), ing))
        .collect();
    ours.sort_by(oldest_first);

    let (policies, policy_statuses, policy_problems) = policy::Policies::new(snapshot);
    let mut backends = service::Resolver::new(snapshot, options, &policies);
    let mut builder = TableBuilder::new(generation);
    let mut problems = Vec::new();
    let mut certificates = tls::Certificates::new(snapshot, x509::unix_seconds(now));
    for (key, ing) in &ours {
        if ingress::add(key, ing, &mut backends, &mut builder, &mut problems) {
            certificates.add(key, ing);
        }
    }
    certificates.set_default(options.default_certificate.as_ref());
    let (tls, tls_problems) = certificates.finish();
    builder.set_tls(tls);
    problems.extend(backends.into_problems());
    problems.extend(policy_problems);
    problems.extend(tls_problems);
    Compiled {
        table: builder.build(),
        problems,
        ingresses: ours.into_iter().map(|(k, _)| k).collect(),
        policies: policy_statuses,
    }
}

/// New endpoints for existing backends, when only EndpointSlices changed:
/// each backend keeps its Service port and policy and gets the endpoints the
/// snapshot's slices now list. A backend that cannot be re-resolved (its
/// Service vanished, which is not an endpoint-only change) is left out, and
/// the caller keeps the old one.
pub fn refresh_backends(
    snapshot: &Snapshot,
    options: &CompileOptions,
    backends: &[Arc<Backend>],
) -> Vec<(Arc<Backend>, Arc<Backend>)> {
    let none = policy::Policies::none();
    let mut resolver = service::Resolver::new(snapshot, options, &none);
    backends
        .iter()
        .filter_map(|old| match resolver.refresh(old)? {
            Ok(new) => Some((old.clone(), Arc::new(new))),
            Err(_) => None,
        })
        .collect()
}

/// Where an Ingress comes in the compile: oldest first, then by key (see
/// [`oldest_first`]). Shared: the incremental compile files each Ingress
/// under it in several indexes.
type Order = Arc<(Option<Time>, ObjectKey)>;

/// Conflicts go to the oldest Ingress, then by namespace/name.
fn oldest_first(a: &(ObjectKey, &Arc<Ingress>), b: &(ObjectKey, &Arc<Ingress>)) -> Ordering {
    let created = |i: &Ingress| i.metadata.creation_timestamp.clone().map(|t| t.0);
    created(a.1).cmp(&created(b.1)).then_with(|| a.0.cmp(&b.0))
}
