//! Leader election over a `coordination.k8s.io/v1` Lease, as client-go's
//! `leaderelection` does it: every replica serves traffic, one of them (the
//! holder of the Lease) writes status and Events.
//!
//! Written here on `Api<Lease>` rather than taken from a crate: the algorithm
//! is small, and the crates that offer it for kube follow kube's releases
//! with a delay (none targets kube 5 yet). Every write is a `replace` guarded
//! by the resourceVersion read just before, so two replicas can never both
//! take the Lease: the second gets `409 Conflict`.
//!
//! Timing (client-go's defaults: 15 s lease, 10 s renew deadline, 2 s
//! retry): a holder renews every retry period; a holder that has not renewed
//! for the renew deadline stops acting as leader at once, by its own clock,
//! before anyone may take over; a candidate takes the Lease when the record
//! it reads has not changed for a whole lease duration, measured on its own
//! clock from when it saw the record change, so clock skew between replicas
//! does not matter.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::shutdown::Shutdown;

/// How long releasing the Lease on shutdown may take.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(2);

/// What an election needs.
#[derive(Clone, Debug)]
pub struct ElectionConfig {
    /// The Lease's name (`--election-id`); the `Api` given to [`spawn`]
    /// fixes its namespace.
    pub lease_name: String,
    /// This replica's name in `holderIdentity`.
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

/// Whether this replica leads, readable anywhere. Cloned freely.
#[derive(Clone, Debug)]
pub struct Leader {
    /// `Some(until)`: leader until then, unless renewed.
    state: watch::Receiver<Option<Instant>>,
}

/// Why one attempt on the Lease failed.
#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    #[error("lease request failed: {0}")]
    Api(#[from] kube::Error),
    #[error("lease request took longer than {0:?}")]
    Timeout(Duration),
}

/// The record last read, and when (by this replica's clock) it changed.
#[derive(Debug)]
struct Observed {
    record: (Option<String>, Option<MicroTime>, Option<i32>),
    duration: Duration,
    at: Instant,
}

struct Elector {
    api: Api<Lease>,
    config: ElectionConfig,
    observed: Option<Observed>,
    state: watch::Sender<Option<Instant>>,
}

// === impl Leader ===

impl Leader {
    /// Whether this replica may act as the leader right now. Turns false by
    /// itself when the Lease was not renewed within the renew deadline, even
    /// if the elector is stuck on a slow API server.
    pub fn is_leader(&self) -> bool {
        matches!(*self.state.borrow(), Some(until) if Instant::now() < until)
    }

    /// Waits until leadership is gained or lost; `false` once the elector
    /// has stopped.
    pub async fn changed(&mut self) -> bool {
        self.state.changed().await.is_ok()
    }
}

/// This replica's identity: `$POD_NAME`, unique within a Deployment; else
/// the host name with a random suffix, so two processes on one host (tests,
/// a laptop) never take each other for the holder.
pub fn identity() -> String {
    identity_from(std::env::var("POD_NAME").ok(), || {
        std::fs::read_to_string("/proc/sys/kernel/hostname").ok()
    })
}

/// [`identity`] from the value of `$POD_NAME` and, only when that is unset
/// or blank, the host name.
fn identity_from(pod_name: Option<String>, host_name: impl FnOnce() -> Option<String>) -> String {
    if let Some(pod) = pod_name
        && !pod.trim().is_empty()
    {
        return pod.trim().to_string();
    }
    let host = host_name()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "rust-strom".to_string());
    format!("{host}_{:08x}", fastrand::u32(..))
}

/// Runs the election until `shutdown`, then gives the Lease up (so a peer
/// takes over within a retry period instead of a lease duration).
pub fn spawn(
    api: Api<Lease>,
    config: ElectionConfig,
    mut shutdown: Shutdown,
) -> (Leader, JoinHandle<()>) {
    let (tx, rx) = watch::channel(None);
    let mut elector = Elector {
        api,
        config,
        observed: None,
        state: tx,
    };
    let task = tokio::spawn(async move {
        tokio::select! {
            () = elector.run() => {}
            () = shutdown.wait() => {}
        }
        elector.step_down("shutting down");
        match tokio::time::timeout(RELEASE_TIMEOUT, elector.release()).await {
            Ok(Ok(true)) => tracing::info!(lease = %elector.config.lease_name, "lease released"),
            Ok(Ok(false)) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "cannot release the lease; a peer takes over when it expires")
            }
            Err(_) => {
                tracing::warn!("releasing the lease timed out; a peer takes over when it expires")
            }
        }
    });
    (Leader { state: rx }, task)
}

// === impl Elector ===

impl Elector {
    async fn run(&mut self) {
        loop {
            let started = Instant::now();
            let attempt =
                tokio::time::timeout(self.config.renew_deadline, self.try_acquire_or_renew()).await;
            match attempt.unwrap_or(Err(ElectionError::Timeout(self.config.renew_deadline))) {
                Ok(true) => {
                    let was = self.is_leader();
                    // Safe: peers count a lease duration from a moment after
                    // `started`, and the renew deadline is shorter.
                    self.state
                        .send_replace(Some(started + self.config.renew_deadline));
                    if !was {
                        tracing::info!(identity = %self.config.identity, lease = %self.config.lease_name, "became the leader: writing status");
                    }
                }
                Ok(false) => self.step_down("another replica holds the lease"),
                Err(error) => {
                    tracing::warn!(%error, lease = %self.config.lease_name, "leader election attempt failed");
                    if !self.is_leader() {
                        self.step_down("the lease could not be renewed in time");
                    }
                }
            }
            let mut wait = self.config.retry_period;
            if !self.is_leader() {
                // client-go's jitter, so candidates do not retry in step.
                wait += self.config.retry_period.mul_f64(fastrand::f64() * 0.2);
            }
            tokio::time::sleep(wait).await;
        }
    }

    fn is_leader(&self) -> bool {
        matches!(*self.state.borrow(), Some(until) if Instant::now() < until)
    }

    fn step_down(&self, why: &str) {
        let had = self.state.borrow().is_some();
        self.state.send_if_modified(|state| state.take().is_some());
        if had {
            tracing::warn!(identity = %self.config.identity, reason = why, "stopped being the leader: status writes stop");
        }
    }

    /// One round: takes a free or expired Lease, renews our own. `Ok(true)`
    /// when this replica holds the Lease afterwards.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, ElectionError> {
        let name = self.config.lease_name.clone();
        let now = MicroTime(Timestamp::now());
        let Some(mut lease) = self.api.get_opt(&name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name),
                    ..ObjectMeta::default()
                },
                spec: Some(self.claim(None, now)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observe(created.spec.as_ref());
                    Ok(true)
                }
                Err(error) if is_conflict(&error) => Ok(false),
                Err(error) => Err(error.into()),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        self.observe(Some(&spec));
        let holder = spec.holder_identity.as_deref().unwrap_or_default();
        if !holder.is_empty() && holder != self.config.identity && !self.expired() {
            return Ok(false);
        }
        lease.spec = Some(self.claim(Some(&spec), now));
        // `lease` carries the resourceVersion just read: a peer that wrote
        // in between makes this a 409, and it keeps the Lease.
        match self
            .api
            .replace(&name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                self.observe(written.spec.as_ref());
                Ok(true)
            }
            Err(error) if is_conflict(&error) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    /// The record this replica writes to hold the Lease.
    fn claim(&self, previous: Option<&LeaseSpec>, now: MicroTime) -> LeaseSpec {
        let ours =
            previous.is_some_and(|p| p.holder_identity.as_deref() == Some(&self.config.identity));
        let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(whole_seconds(self.config.lease_duration)),
            acquire_time: if ours {
                previous.and_then(|p| p.acquire_time.clone())
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(if ours || previous.is_none() {
                transitions
            } else {
                transitions + 1
            }),
            ..LeaseSpec::default()
        }
    }

    /// Notes the record read; its age counts from when it last changed.
    fn observe(&mut self, spec: Option<&LeaseSpec>) {
        let spec = spec.cloned().unwrap_or_default();
        let record = (
            spec.holder_identity,
            spec.renew_time,
            spec.lease_transitions,
        );
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.config.lease_duration, Duration::from_secs);
        if self.observed.as_ref().is_none_or(|o| o.record != record) {
            self.observed = Some(Observed {
                record,
                duration,
                at: Instant::now(),
            });
        }
    }

    /// Whether the holder let the Lease run out.
    fn expired(&self) -> bool {
        self.observed
            .as_ref()
            .is_none_or(|o| o.at + o.duration <= Instant::now())
    }

    /// Gives the Lease up if this replica holds it. `Ok(true)` if it did.
    async fn release(&mut self) -> Result<bool, kube::Error> {
        let name = &self.config.lease_name;
        let Some(mut lease) = self.api.get_opt(name).await? else {
            return Ok(false);
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(false);
        };
        if spec.holder_identity.as_deref() != Some(&self.config.identity) {
            return Ok(false);
        }
        // As client-go: no holder, a 1 s duration, so peers take it now.
        let now = MicroTime(Timestamp::now());
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now.clone());
        spec.acquire_time = Some(now);
        match self.api.replace(name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(error) if is_conflict(&error) => Ok(false),
            Err(error) => Err(error),
        }
    }
}

fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

/// A Lease counts whole seconds: round up, so it never holds shorter than
/// asked.
fn whole_seconds(d: Duration) -> i32 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i32::try_from(secs.max(1)).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_seconds_round_up() {
        assert_eq!(whole_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(whole_seconds(Duration::from_secs(15)), 15);
        assert_eq!(whole_seconds(Duration::ZERO), 1);
    }

    #[test]
    fn pod_name_is_the_identity() {
        let no_host = || -> Option<String> { panic!("the host name was read") };
        assert_eq!(
            identity_from(Some("web-7d9f8-x2k4q".into()), no_host),
            "web-7d9f8-x2k4q"
        );
        assert_eq!(identity_from(Some(" web-0\n".into()), no_host), "web-0");
    }

    #[test]
    fn without_a_pod_name_the_host_name_gets_a_random_suffix() {
        let suffix = |id: &str, host: &str| {
            let rest = id
                .strip_prefix(&format!("{host}_"))
                .unwrap_or_else(|| panic!("{id}"));
            assert_eq!(rest.len(), 8, "{id}");
            assert!(rest.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
            rest.to_string()
        };
        let node = || Some("node-1\n".to_string());
        let a = suffix(&identity_from(None, node), "node-1");
        let b = suffix(&identity_from(Some("  ".into()), node), "node-1");
        // Two processes on one host: told apart (a 1 in 2^32 chance aside).
        assert_ne!(a, b);
        suffix(&identity_from(None, || None), "rust-strom");
        suffix(&identity_from(None, || Some(" \n".into())), "rust-strom");
    }
}
