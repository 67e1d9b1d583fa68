//! The compile step: a [`Snapshot`] of Kubernetes objects becomes one
//! immutable [`RoutingTable`], plus the problems found on the way.
//!
//! Pure: no I/O, no clock, no globals. Bad objects are reported and skipped;
//! they never stop the rest of the table from compiling.

mod class;
mod ingress;
mod problem;
mod service;
#[cfg(test)]
mod tests;

use std::cmp::Ordering;
use std::sync::Arc;

use k8s_openapi::api::networking::v1::Ingress;

pub use class::CONTROLLER_NAME;
pub use problem::{Problem, Severity};

use crate::model::{RoutingTable, TableBuilder};
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
}

/// The result of one compile.
#[derive(Debug)]
pub struct Compiled {
    pub table: RoutingTable,
    pub problems: Vec<Problem>,
    /// The Ingresses this controller serves, oldest first.
    pub ingresses: Vec<ObjectKey>,
}

/// Compiles a snapshot into the table with the given generation number.
pub fn compile(snapshot: &Snapshot, options: &CompileOptions, generation: u64) -> Compiled {
    let classes = class::Classes::new(snapshot, options);
    let mut ours: Vec<(ObjectKey, &Arc<Ingress>)> = snapshot
        .ingresses
        .iter()
        .filter(|(_, ing)| classes.is_ours(ing))
        .map(|(k, ing)| (k.clone(), ing))
        .collect();
    ours.sort_by(oldest_first);

    let mut backends = service::Resolver::new(snapshot, options);
    let mut builder = TableBuilder::new(generation);
    let mut problems = Vec::new();
    for (key, ing) in &ours {
        ingress::add(key, ing, &mut backends, &mut builder, &mut problems);
    }
    problems.extend(backends.into_problems());
    Compiled {
        table: builder.build(),
        problems,
        ingresses: ours.into_iter().map(|(k, _)| k).collect(),
    }
}

/// Conflicts go to the oldest Ingress, then by namespace/name.
fn oldest_first(a: &(ObjectKey, &Arc<Ingress>), b: &(ObjectKey, &Arc<Ingress>)) -> Ordering {
    let created = |i: &Ingress| i.metadata.creation_timestamp.clone().map(|t| t.0);
    created(a.1).cmp(&created(b.1)).then_with(|| a.0.cmp(&b.0))
}
