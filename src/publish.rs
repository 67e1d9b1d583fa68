//! Compiles snapshots and swaps the live routing table: the one place where
//! the control side hands a table to the data plane.
//!
//! Compiles go through one [`Compiler`], which recompiles only what an
//! Ingress change touched (see [`crate::compile::Compiler`]); the work done
//! here per table (binding backends to live state, metric series) follows
//! what changed too, so that one edit among thousands of Ingresses is live
//! in milliseconds.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::balance::StateRegistry;
use crate::compile::{CompileOptions, Compiler, Delta, PolicyStatus, Problem, Severity};
use crate::metrics::Metrics;
use crate::model::{Backend, RoutingTable};
use crate::proxy::SharedTable;
use crate::source::{ObjectKey, Snapshot};

/// Owns the generation counter and what the last table looked like.
pub struct Publisher {
    table: SharedTable,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    /// Keeps what the next compile needs to be incremental.
    compiler: Compiler,
    generation: u64,
    /// How many routes of the live table use each backend id: the ids
    /// with metric series.
    backends: HashMap<String, usize>,
    /// Live endpoint state (load, latency, health), kept across tables.
    states: Arc<StateRegistry>,
    problems: Vec<Problem>,
    /// notAfter by Secret of the certificates the live table read.
    certificates: BTreeMap<String, i64>,
    /// The earliest notAfter among the certificates it serves.
    next_expiry: Option<i64>,
    /// What the last compile found, for the dashboard.
    report: SharedReport,
}

/// What the dashboard shows of the last compile: every problem, and the
/// manifest files whose current version does not parse (standalone mode).
#[derive(Clone, Debug, Default)]
pub struct CompileReport {
    pub generation: u64,
    pub at: Option<SystemTime>,
    pub problems: Vec<Problem>,
    /// `(path, error)`; such a file's last good version is still served.
    pub broken_files: Vec<(String, String)>,
}

/// The last [`CompileReport`], swapped whole by the publisher.
pub type SharedReport = Arc<arc_swap::ArcSwap<CompileReport>>;

/// What one publish did, for callers that report it.
#[derive(Debug)]
pub struct Published {
    pub generation: u64,
    pub routes: usize,
    pub rejected: usize,
    /// The Ingresses the table serves (cluster mode writes their status).
    pub ingresses: Arc<[ObjectKey]>,
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
            compiler: Compiler::new(options),
            generation: 0,
            backends: HashMap::new(),
            states: Arc::new(StateRegistry::new()),
            problems: Vec::new(),
            certificates: BTreeMap::new(),
            next_expiry: None,
            report: SharedReport::default(),
        }
    }

    /// The last compile's report, kept current by every publish.
    pub fn report(&self) -> SharedReport {
        self.report.clone()
    }

    /// Notes the manifest files that do not parse now (standalone mode).
    pub fn set_broken_files(&self, files: Vec<(String, String)>) {
        if self.report.load().broken_files != files {
            let mut report = CompileReport::clone(&self.report.load());
            report.broken_files = files;
            self.report.store(Arc::new(report));
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

    /// Only EndpointSlices changed since the last table: swaps in a copy
    /// of the live table whose backends of the Services those slices belong
    /// to have fresh endpoints, without a compile. Hosts, paths, policies
    /// and status cannot have changed, so nothing else is redone (any other
    /// change in `snapshot` waits for the next [`Publisher::publish`]).
    /// Returns the number of backends refreshed.
    pub fn refresh_endpoints(&mut self, snapshot: &Snapshot, noticed: Instant) -> usize {
        let Some((table, refreshed)) = self
            .compiler
            .refresh_endpoints(snapshot, self.generation + 1)
        else {
            return 0;
        };
        self.generation += 1;
        for backend in &refreshed {
            backend.attach(&self.states, &self.metrics);
        }
        self.table.store(table);
        self.states.prune();

        let m = &self.metrics;
        m.table_generation.set(self.generation as i64);
        m.reloads.with_label_values(&["success"]).inc();
        m.sync_duration.observe(noticed.elapsed().as_secs_f64());
        tracing::info!(
            generation = self.generation,
            backends = refreshed.len(),
            "endpoints refreshed without a recompile"
        );
        refreshed.len()
    }

    /// Compiles `snapshot` and makes it the live table. Requests in flight
    /// keep the table they started with; new ones see the new table.
    pub fn publish(&mut self, snapshot: &Snapshot, noticed: Instant) -> Published {
        self.generation += 1;
        let compiled = self
            .compiler
            .compile(snapshot, self.generation, SystemTime::now());

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
        self.report.store(Arc::new(CompileReport {
            generation: self.generation,
            at: Some(SystemTime::now()),
            problems: compiled.problems.clone(),
            broken_files: self.report.load().broken_files.clone(),
        }));

        let table = compiled.table;
        // Bind every new backend to the live endpoint state before the
        // table serves, so health and load carry over from the previous
        // table, and keep one metric series per backend id.
        let prune = match &compiled.delta {
            Some(delta) => self.follow_backends(delta),
            None => {
                self.bind_backends(&table);
                true
            }
        };
        // A TLS part shared with the live table has the same certificates.
        if !std::ptr::eq(self.table.load().tls(), table.tls()) {
            let certificates = table.tls().expiry().clone();
            self.metrics
                .sync_certificates(&self.certificates, &certificates);
            self.certificates = certificates;
            self.next_expiry = table.tls().next_expiry();
        }

        let published = Published {
            generation: self.generation,
            routes: table.len(),
            rejected,
            ingresses: compiled.ingresses,
            policies: compiled.policies,
            problems: compiled.problems,
        };
        let tls_hosts = table.tls().host_count();
        self.table.store(table);
        // Endpoints that only the previous table used are forgotten once
        // the last request holding that table is done.
        if prune {
            self.states.prune();
        }
        self.ready.store(true, Ordering::Release);
        self.compiler.retire();

        let m = &self.metrics;
        m.table_generation.set(self.generation as i64);
        m.table_routes.set(published.routes as i64);
        m.rejected_objects.set(rejected as i64);
        m.reloads.with_label_values(&["success"]).inc();
        m.sync_duration.observe(noticed.elapsed().as_secs_f64());
        tracing::info!(
            generation = published.generation,
            routes = published.routes,
            ingresses = published.ingresses.len(),
            tls_hosts,
            rejected,
            incremental = compiled.delta.is_some(),
            compiled = compiled.compiled,
            "routing table live"
        );
        published
    }

    /// Binds every backend of a fully compiled table and counts its routes
    /// by backend id from scratch.
    fn bind_backends(&mut self, table: &RoutingTable) {
        let mut counts: HashMap<String, usize> = HashMap::with_capacity(self.backends.len());
        for backend in table.backends() {
            backend.attach(&self.states, &self.metrics);
            match counts.get_mut(&backend.id) {
                Some(n) => *n += 1,
                None => {
                    counts.insert(backend.id.clone(), 1);
                }
            }
        }
        // Only the series of ids that came or went are touched.
        let gone: HashSet<String> = (self.backends.keys())
            .filter(|id| !counts.contains_key(*id))
            .cloned()
            .collect();
        let came: HashSet<String> = (counts.keys())
            .filter(|id| !self.backends.contains_key(*id))
            .cloned()
            .collect();
        self.metrics.sync_backends(&gone, &came);
        self.backends = counts;
    }

    /// Follows what an incremental compile changed: binds the backends it
    /// brought in and keeps the route counts (and the metric series of ids
    /// that came or went). Returns whether a backend may have left the
    /// table, so that endpoint state may be forgotten.
    fn follow_backends(&mut self, delta: &Delta) -> bool {
        for backend in delta.added.iter().chain(&delta.refreshed) {
            backend.attach(&self.states, &self.metrics);
        }
        let mut gone = HashSet::new();
        let mut came = HashSet::new();
        for backend in &delta.removed {
            if let Some(n) = self.backends.get_mut(&backend.id) {
                *n -= 1;
                if *n == 0 {
                    gone.insert(backend.id.clone());
                }
            }
        }
        for backend in &delta.added {
            match self.backends.get_mut(&backend.id) {
                Some(n) => {
                    if *n == 0 {
                        gone.remove(&backend.id);
                    }
                    *n += 1;
                }
                None => {
                    self.backends.insert(backend.id.clone(), 1);
                    came.insert(backend.id.clone());
                }
            }
        }
        for id in &gone {
            self.backends.remove(id);
        }
        self.metrics.sync_backends(&gone, &came);
        let added: HashSet<*const Backend> = delta.added.iter().map(Arc::as_ptr).collect();
        !delta.refreshed.is_empty()
            || !delta
                .removed
                .iter()
                .all(|b| added.contains(&Arc::as_ptr(b)))
    }
}
