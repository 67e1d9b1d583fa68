//! Cluster mode's compile loop: once every cache has listed its kind, the
//! first table goes live; after that each batch of watch events becomes one
//! recompile through [`Publisher::publish`], on the blocking pool.
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

use crate::publish::Publisher;
use crate::source::ObjectKey;
use crate::source::kube::{Caches, Changes, routed_services};
use crate::status::Served;

/// The longest a batch waits because compiles are slow.
const MAX_WINDOW: Duration = Duration::from_secs(1);
/// How often the live table's certificates are checked for expiry (an
/// expired one must fall back even though no object changed).
const EXPIRY_CHECK_EVERY: Duration = Duration::from_secs(5);

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
) -> Result<(), SyncError> {
    let waiting = Instant::now();
    tracing::info!(
        "listing Ingresses, IngressClasses, Services, EndpointSlices, TLS Secrets and BalancerPolicies"
    );
    caches.wait_until_ready().await?;
    tracing::info!(after = ?waiting.elapsed(), "caches synced");

    // The first table: everything listed so far, as one batch.
    let noticed = changes.take().since.unwrap_or(waiting);
    let mut state = Compiling {
        publisher,
        caches,
        routed: HashSet::new(),
        took: Duration::ZERO,
    };
    state = state.compile(noticed, &served).await?;

    let mut expiry = tokio::time::interval(EXPIRY_CHECK_EVERY);
    expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let since = tokio::select! {
            since = changes.wait() => since,
            _ = expiry.tick() => {
                if state.publisher.certificate_expired(SystemTime::now()) {
                    state = state.compile(Instant::now(), &served).await?;
                }
                continue;
            }
        };
        let window = debounce.max(state.took.min(MAX_WINDOW));
        tokio::time::sleep_until(since + window).await;
        let pending = changes.take();
        let noticed = pending.since.unwrap_or(since);
        if pending.full {
            state = state.compile(noticed, &served).await?;
        } else if pending.needs_compile(&state.routed) {
            // Only endpoints of routed Services changed: fresh backends in
            // a copy of the live table, no compile.
            state = state.refresh(noticed, pending.services).await?;
        } else {
            tracing::debug!(
                services = pending.services.len(),
                "endpoints of unrouted Services changed; no recompile"
            );
        }
    }
}

/// What the loop carries from one compile to the next.
struct Compiling {
    publisher: Publisher,
    caches: Caches,
    /// The Services the live table routes to.
    routed: HashSet<ObjectKey>,
    /// How long the last compile took.
    took: Duration,
}

impl Compiling {
    /// Refreshes the endpoints of `services` in the live table, away from
    /// request handling.
    async fn refresh(
        self,
        noticed: Instant,
        services: HashSet<ObjectKey>,
    ) -> Result<Self, SyncError> {
        let Compiling {
            mut publisher,
            caches,
            routed,
            ..
        } = self;
        let started = Instant::now();
        let services: HashSet<String> = services.iter().map(ToString::to_string).collect();
        let (publisher, caches) = tokio::task::spawn_blocking(move || {
            let snapshot = caches.snapshot();
            publisher.refresh_endpoints(&snapshot, &services, noticed);
            (publisher, caches)
        })
        .await?;
        Ok(Compiling {
            publisher,
            caches,
            routed,
            took: started.elapsed(),
        })
    }

    /// Snapshots the caches and publishes, away from request handling.
    async fn compile(
        self,
        noticed: Instant,
        served: &watch::Sender<Option<Arc<Served>>>,
    ) -> Result<Self, SyncError> {
        let Compiling {
            mut publisher,
            caches,
            ..
        } = self;
        let started = Instant::now();
        let (publisher, caches, routed, result) = tokio::task::spawn_blocking(move || {
            let snapshot = caches.snapshot();
            let published = publisher.publish(&snapshot, noticed);
            let routed = routed_services(&snapshot, &published.ingresses);
            (publisher, caches, routed, published)
        })
        .await?;
        served.send_replace(Some(Arc::new(Served {
            ingresses: result.ingresses,
            policies: result.policies,
            problems: result.problems,
        })));
        Ok(Compiling {
            publisher,
            caches,
            routed,
            took: started.elapsed(),
        })
    }
}
