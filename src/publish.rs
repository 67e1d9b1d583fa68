//! Compiles snapshots and swaps the live routing table: the one place where
//! the control side hands a table to the data plane.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::time::Instant;

use crate::compile::{CompileOptions, Problem, Severity, compile};
use crate::metrics::Metrics;
use crate::proxy::SharedTable;
use crate::source::Snapshot;

/// Owns the generation counter and what the last table looked like.
pub struct Publisher {
    table: SharedTable,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    options: CompileOptions,
    generation: u64,
    backends: HashSet<String>,
    problems: Vec<Problem>,
}

/// What one publish did, for callers that report it.
#[derive(Debug)]
pub struct Published {
    pub generation: u64,
    pub routes: usize,
    pub rejected: usize,
}

// === impl Publisher ===

impl Publisher {
    pub fn new(
        table: SharedTable,
        metrics: Arc<Metrics>,
        ready: Arc<AtomicBool>,
        options: CompileOptions,
    ) -> Self {
        Self {
            table,
            metrics,
            ready,
            options,
            generation: 0,
            backends: HashSet::new(),
            problems: Vec::new(),
        }
    }

    /// Compiles `snapshot` and makes it the live table. Requests in flight
    /// keep the table they started with; new ones see the new table.
    pub fn publish(&mut self, snapshot: &Snapshot, noticed: Instant) -> Published {
        self.generation += 1;
        let compiled = compile(snapshot, &self.options, self.generation);

        // Each problem is logged when it appears, not on every reload.
        for problem in compiled
            .problems
            .iter()
            .filter(|p| !self.problems.contains(p))
        {
            problem.log();
        }
        let rejected = compiled
            .problems
            .iter()
            .filter(|p| p.severity == Severity::Rejected)
            .count();
        self.problems = compiled.problems;

        let table = compiled.table;
        let backends: HashSet<String> = table
            .routes()
            .into_iter()
            .map(|(_, r)| r.backend.id.clone())
            .chain(table.default_backend().map(|r| r.backend.id.clone()))
            .collect();
        self.metrics.sync_backends(&self.backends, &backends);
        self.backends = backends;

        let published = Published {
            generation: self.generation,
            routes: table.len(),
            rejected,
        };
        self.table.store(Arc::new(table));
        self.ready.store(true, Ordering::Release);

        let m = &self.metrics;
        m.table_generation.set(self.generation as i64);
        m.table_routes.set(published.routes as i64);
        m.reloads.with_label_values(&["success"]).inc();
        m.sync_duration.observe(noticed.elapsed().as_secs_f64());
        tracing::info!(
            generation = published.generation,
            routes = published.routes,
            ingresses = compiled.ingresses.len(),
            rejected,
            "routing table live"
        );
        published
    }
}
