//! Cluster mode's compile loop: once every cache has listed its kind, the
//! first table goes live; after that each batch of watch events becomes one
//! recompile through [`Publisher::publish`], on the blocking pool.
//!
//! The loop keeps the snapshot it compiled. A batch of Ingress and
//! EndpointSlice events reads only those objects from the caches into it
//! (reading every cache costs more than the incremental compile that
//! follows); any other change, or a relist, reads every cache again.
//!
//! A batch is the events arriving within `--sync-debounce` of its first one
//! (`config_sync_duration_seconds` counts from that first event to the table
//! being live). The window grows to the last compile's duration when that
//! is longer, so a large cluster under endpoint churn spends at most about
//! half a core compiling instead of compiling back to back. EndpointSlice
//! changes of Services no served route uses cost nothing.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::Instant;

use crate::dashboard::reload;
use crate::publish::Publisher;
use crate::source::kube::{Caches, Changes, Pending, routed_services};
use crate::source::{ObjectKey, Snapshot};
use crate::status::Served;

/// The longest a batch waits because compiles are slow.
const MAX_WINDOW: Duration = Duration::from_secs(1);
/// How often the live table's certificates are checked for expiry (an
/// expired one must fall back even though no object changed).
const EXPIRY_CHECK_EVERY: Duration = Duration::from_secs(5);

/// How long the dashboard's reload waits for every watch to list again.
const RELIST_WAIT: Duration = Duration::from_secs(20);

/// Why the loop stopped: the caches were dropped, or a compile panicked
/// (a bug; the last table keeps serving but live updates stop).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("the watch caches stopped before they were ready")]
    Caches(#[from] kube::runtime::reflector::store::WriterDropped),
    #[error("compiling the routing table failed: {0}")]
    Compile(#[from] tokio::task::JoinError),
}

/// Runs the loop. `served` gets what each live table serves, for the status
/// writer.
pub async fn run(
    publisher: Publisher,
    caches: Caches,
    changes: Arc<Changes>,
    debounce: Duration,
    served: watch::Sender<Option<Arc<Served>>>,
    mut reloads: reload::Receiver,
) -> Result<(), SyncError> {
    let waiting = Instant::now();
    tracing::info!(
        "listing Ingresses, IngressClasses, Services, EndpointSlices, TLS Secrets and BalancerPolicies (and the Secrets and ConfigMaps Ingresses name)"
    );
    caches.wait_until_ready().await?;
    tracing::info!(after = ?waiting.elapsed(), "caches synced");

    // The first table: everything listed so far, as one batch.
    let noticed = changes.take().since.unwrap_or(waiting);
    let mut state = Compiling {
        publisher,
        caches,
        snapshot: Snapshot::default(),
        routed: HashSet::new(),
        took: Duration::ZERO,
        last: LastPublish::default(),
    };
    state = state.compile(noticed, None, &served).await?;

    let mut expiry = tokio::time::interval(EXPIRY_CHECK_EVERY);
    expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let since = tokio::select! {
            since = changes.wait() => since,
            Some(asked) = reloads.recv() => {
                // The dashboard's reload: everything listed again from the
                // API server, then compiled whatever changed.
                let noticed = Instant::now();
                let relisted = changes.relist(RELIST_WAIT).await;
                // The relists' own batch is this compile.
                let _ = changes.take();
                state = state.compile(noticed, None, &served).await?;
                let mut errors = Vec::new();
                if !relisted {
                    errors.push(format!(
                        "not every watch listed again within {RELIST_WAIT:?}; \
                         compiled what the caches hold"
                    ));
                }
                let _ = asked.done.send(reload::Outcome {
                    source: "cluster",
                    generation: state.last.generation,
                    routes: state.last.routes,
                    rejected: state.last.rejected,
                    errors,
                    took_ms: noticed.elapsed().as_secs_f64() * 1e3,
                });
                continue;
            }
            _ = expiry.tick() => {
                if state.publisher.certificate_expired(SystemTime::now()) {
                    // Nothing changed but the clock: the snapshot as it is.
                    let unchanged = Some(Pending::default());
                    state = state.compile(Instant::now(), unchanged, &served).await?;
                }
                continue;
            }
        };
        tokio::time::sleep_until(since + batch_window(debounce, state.took)).await;
        let pending = changes.take();
        let noticed = pending.since.unwrap_or(since);
        if pending.full {
            state = state.compile(noticed, None, &served).await?;
        } else if !pending.ingresses.is_empty() {
            state = state.compile(noticed, Some(pending), &served).await?;
        } else if pending.needs_compile(&state.routed) {
            // Only endpoints of routed Services changed: fresh backends in
            // a copy of the live table, no compile.
            state = state.refresh(noticed, pending).await?;
        } else {
            // Kept current all the same: a route to one of these Services
            // may appear later.
            pending.apply(&state.caches, &mut state.snapshot);
            tracing::debug!(
                services = pending.services.len(),
                "endpoints of unrouted Services changed; no recompile"
            );
        }
    }
}

/// How long a batch collects events after its first one: the debounce, or
/// the last compile's duration when that is longer (up to [`MAX_WINDOW`]),
/// so slow compiles never run back to back.
fn batch_window(debounce: Duration, last_compile: Duration) -> Duration {
    debounce.max(last_compile.min(MAX_WINDOW))
}

/// What the loop carries from one compile to the next.
struct Compiling {
    publisher: Publisher,
    caches: Caches,
    /// The objects the live table was compiled from.
    snapshot: Snapshot,
    /// The Services the live table routes to.
    routed: HashSet<ObjectKey>,
    /// How long the last compile took.
    took: Duration,
    /// What the last compile published, for the dashboard's reload.
    last: LastPublish,
}

/// The figures of the last compile.
#[derive(Debug, Default)]
struct LastPublish {
    generation: u64,
    routes: usize,
    rejected: usize,
}

impl Compiling {
    /// Refreshes the endpoints of `services` in the live table, away from
    /// request handling.
    async fn refresh(self, noticed: Instant, pending: Pending) -> Result<Self, SyncError> {
        let Compiling {
            mut publisher,
            caches,
            mut snapshot,
            routed,
            last,
            ..
        } = self;
        let started = Instant::now();
        let (publisher, caches, snapshot) = tokio::task::spawn_blocking(move || {
            pending.apply(&caches, &mut snapshot);
            publisher.refresh_endpoints(&snapshot, noticed);
            (publisher, caches, snapshot)
        })
        .await?;
        Ok(Compiling {
            publisher,
            caches,
            snapshot,
            routed,
            took: started.elapsed(),
            last,
        })
    }

    /// Brings the snapshot up to date and publishes, away from request
    /// handling: with `pending`, only the objects it names are read from
    /// the caches; without, every cache is.
    async fn compile(
        self,
        noticed: Instant,
        pending: Option<Pending>,
        served: &watch::Sender<Option<Arc<Served>>>,
    ) -> Result<Self, SyncError> {
        let Compiling {
            mut publisher,
            caches,
            mut snapshot,
            ..
        } = self;
        let started = Instant::now();
        // A Secret or ConfigMap an Ingress names for the first time is
        // watched and listed before the compile, which then reads it.
        let pending = if caches.watch_named().await {
            None
        } else {
            pending
        };
        let (publisher, caches, snapshot, routed, result) =
            tokio::task::spawn_blocking(move || {
                match pending {
                    Some(pending) => pending.apply(&caches, &mut snapshot),
                    None => snapshot = caches.snapshot(),
                }
                let published = publisher.publish(&snapshot, noticed);
                let routed = routed_services(&snapshot, &published.ingresses);
                (publisher, caches, snapshot, routed, published)
            })
            .await?;
        let last = LastPublish {
            generation: result.generation,
            routes: result.routes,
            rejected: result.rejected,
        };
        served.send_replace(Some(Arc::new(Served {
            ingresses: result.ingresses,
            policies: result.policies,
            problems: result.problems,
        })));
        Ok(Compiling {
            publisher,
            caches,
            snapshot,
            routed,
            took: started.elapsed(),
            last,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBOUNCE: Duration = Duration::from_millis(20);

    #[test]
    fn fast_compiles_keep_the_debounce() {
        assert_eq!(batch_window(DEBOUNCE, Duration::ZERO), DEBOUNCE);
        assert_eq!(batch_window(DEBOUNCE, Duration::from_millis(5)), DEBOUNCE);
    }

    #[test]
    fn a_slow_compile_widens_the_window_to_its_duration() {
        let took = Duration::from_millis(300);
        assert_eq!(batch_window(DEBOUNCE, took), took);
    }

    #[test]
    fn the_widening_stops_at_the_cap() {
        assert_eq!(batch_window(DEBOUNCE, Duration::from_secs(5)), MAX_WINDOW);
        // A debounce set above the cap is kept as set.
        let long = Duration::from_secs(2);
        assert_eq!(batch_window(long, Duration::from_secs(5)), long);
    }
}
