//! Compiles snapshots and swaps the live routing table: the one place where
//! the control side hands a table to the data plane.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::balance::StateRegistry;
use crate::compile::{CompileOptions, PolicyStatus, Problem, Severity, compile, refresh_backends};
use crate::metrics::Metrics;
use crate::model::Backend;
use crate::proxy::SharedTable;
use crate::source::{ObjectKey, Snapshot};

/// Owns the generation counter and what the last table looked like.
pub struct Publisher {
    table: SharedTable,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    options: CompileOptions,
    generation: u64,
    backends: HashSet<String>,
    /// Live endpoint state (load, latency, health), kept across tables.
    states: Arc<StateRegistry>,
    problems: Vec<Problem>,
    /// notAfter by Secret of the certificates the live table read.
    certificates: BTreeMap<String, i64>,
    /// The earliest notAfter among the certificates it serves.
    next_expiry: Option<i64>,
}

/// What one publish did, for callers that report it.
#[derive(Debug)]
pub struct Published {
    pub generation: u64,
    pub routes: usize,
    pub rejected: usize,
    /// The Ingresses the table serves (cluster mode writes their status).
    pub ingresses: Vec<ObjectKey>,
    /// What each BalancerPolicy's status should say.
    pub policies: Vec<PolicyStatus>,
    /// Every problem of this compile (cluster mode turns them into Events).
    pub problems: Vec<Problem>,
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
            states: Arc::new(StateRegistry::new()),
            problems: Vec::new(),
            certificates: BTreeMap::new(),
            next_expiry: None,
        }
    }

    /// Whether a certificate of the live table has expired since it was
    /// compiled: the table must then be compiled again even though no file
    /// changed, so that the host falls back and the problem is reported.
    pub fn certificate_expired(&self, now: SystemTime) -> bool {
        let now = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.next_expiry.is_some_and(|not_after| not_after < now)
    }

    /// The live endpoint state shared by every table this publisher made.
    pub fn states(&self) -> &Arc<StateRegistry> {
        &self.states
    }

    /// Compiles `snapshot` and makes it the live table. Requests in flight
    /// keep the table they started with; new ones see the new table.
    /// Only EndpointSlices of `services` (`namespace/name`) changed: swaps
    /// in a copy of the live table whose backends of those Services have
    /// fresh endpoints, without a compile. Hosts, paths, policies, problems
    /// and status cannot have changed, so nothing else is redone. Returns the
    /// number of backends refreshed.
    pub fn refresh_endpoints(
        &mut self,
        snapshot: &Snapshot,
        services: &HashSet<String>,
        noticed: Instant,
    ) -> usize {
        let live = self.table.load_full();
        let mut affected: Vec<Arc<Backend>> = Vec::new();
        for backend in live.backends() {
            if services.contains(&backend.service)
                && !affected.iter().any(|b| Arc::ptr_eq(b, backend))
            {
                affected.push(backend.clone());
            }
        }
        let fresh: HashMap<*const Backend, Arc<Backend>> =
            refresh_backends(snapshot, &self.options, &affected)
                .into_iter()
                .map(|(old, new)| (Arc::as_ptr(&old), new))
                .collect();
        for backend in fresh.values() {
            backend.attach(&self.states, &self.metrics);
        }
        self.generation += 1;
        let table = live.with_backends(self.generation, |b| fresh.get(&Arc::as_ptr(b)).cloned());
        self.table.store(Arc::new(table));
        self.states.prune();

        let m = &self.metrics;
        m.table_generation.set(self.generation as i64);
        m.reloads.with_label_values(&["success"]).inc();
        m.sync_duration.observe(noticed.elapsed().as_secs_f64());
        tracing::info!(
            generation = self.generation,
            backends = fresh.len(),
            "endpoints refreshed without a recompile"
        );
        fresh.len()
    }

    pub fn publish(&mut self, snapshot: &Snapshot, noticed: Instant) -> Published {
        self.generation += 1;
        let compiled = compile(snapshot, &self.options, self.generation, SystemTime::now());

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
        self.problems = compiled.problems.clone();

        let table = compiled.table;
        // Bind every backend to the live endpoint state before the table
        // serves, so health and load carry over from the previous table.
        let mut backends = HashSet::new();
        for backend in table.backends() {
            backend.attach(&self.states, &self.metrics);
            if !backends.contains(&backend.id) {
                backends.insert(backend.id.clone());
            }
        }
        self.metrics.sync_backends(&self.backends, &backends);
        self.backends = backends;
        let certificates = table.tls().expiry().clone();
        self.metrics
            .sync_certificates(&self.certificates, &certificates);
        self.certificates = certificates;
        self.next_expiry = table.tls().next_expiry();

        let published = Published {
            generation: self.generation,
            routes: table.len(),
            rejected,
            ingresses: compiled.ingresses,
            policies: compiled.policies,
            problems: compiled.problems,
        };
        let tls_hosts = table.tls().hosts().len();
        self.table.store(Arc::new(table));
        // Endpoints that only the previous table used are forgotten once
        // the last request holding that table is done.
        self.states.prune();
        self.ready.store(true, Ordering::Release);

        let m = &self.metrics;
        m.table_generation.set(self.generation as i64);
        m.table_routes.set(published.routes as i64);
        m.reloads.with_label_values(&["success"]).inc();
        m.sync_duration.observe(noticed.elapsed().as_secs_f64());
        tracing::info!(
            generation = published.generation,
            routes = published.routes,
            ingresses = published.ingresses.len(),
            tls_hosts,
            rejected,
            "routing table live"
        );
        published
    }
}
