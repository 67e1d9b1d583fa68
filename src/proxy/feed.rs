//! The live feed: finished request records broadcast to whoever watches
//! (the dashboard's activity feed), bounded and sampled.
//!
//! Nothing here costs a request anything while nobody watches: the request
//! path reads one atomic counter ([`Feed::wants`]) and builds no record.
//! With watchers, at most [`RATE`] records a second are built for them;
//! above that one request in [`Feed::sample_every`] is taken, a figure
//! recomputed every second from the second before and shown to watchers.
//! The broadcast queue holds [`QUEUE`] records: a watcher that falls
//! further behind loses the oldest (and is told how many), it never slows
//! the proxy down. At most [`MAX_WATCHERS`] watch at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::broadcast;
use tokio::time::Instant;

use super::access_log::Record;

/// Records a second sent to watchers before sampling starts.
pub const RATE: u64 = 200;
/// Records a slow watcher may fall behind before it loses some.
pub const QUEUE: usize = 1024;
/// Watchers at once; more are refused.
pub const MAX_WATCHERS: usize = 16;

/// The broadcast and its sampling state, shared by every request.
#[derive(Debug)]
pub struct Feed {
    tx: broadcast::Sender<Arc<Record>>,
    /// Live [`Watch`]es: read on every request, so kept apart from the
    /// broadcast's own (locked) receiver count.
    watchers: AtomicUsize,
    epoch: Instant,
    /// The second (since `epoch`) that `seen` counts.
    second: AtomicU64,
    /// Requests seen while watched in `second`.
    seen: AtomicU64,
    /// One request in this many is sent: 1 below [`RATE`].
    every: AtomicU64,
}

/// One watcher: its end of the broadcast; leaving drops it.
#[derive(Debug)]
pub struct Watch {
    pub rx: broadcast::Receiver<Arc<Record>>,
    feed: Arc<Feed>,
}

impl Feed {
    pub fn new() -> Arc<Self> {
        let (tx, _) = broadcast::channel(QUEUE);
        Arc::new(Self {
            tx,
            watchers: AtomicUsize::new(0),
            epoch: Instant::now(),
            second: AtomicU64::new(0),
            seen: AtomicU64::new(0),
            every: AtomicU64::new(1),
        })
    }

    /// A new watcher; `None` when [`MAX_WATCHERS`] already watch.
    pub fn watch(self: &Arc<Self>) -> Option<Watch> {
        let added = self
            .watchers
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_WATCHERS).then_some(n + 1)
            });
        added.ok()?;
        Some(Watch {
            rx: self.tx.subscribe(),
            feed: self.clone(),
        })
    }

    pub fn watchers(&self) -> usize {
        self.watchers.load(Ordering::Relaxed)
    }

    /// Whether this request's record goes to the watchers: `false` at once
    /// when nobody watches, else the sampling's verdict.
    #[inline]
    pub fn wants(&self) -> bool {
        self.watchers.load(Ordering::Relaxed) > 0 && self.sampled()
    }

    fn sampled(&self) -> bool {
        let now = self.epoch.elapsed().as_secs();
        let second = self.second.load(Ordering::Relaxed);
        if now != second
            && self
                .second
                .compare_exchange(second, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            // The first request of a new second sets the rate from the one
            // before (none counted when seconds went by without requests).
            let seen = self.seen.swap(0, Ordering::AcqRel);
            let last = if now == second + 1 { seen } else { 0 };
            self.every
                .store(last.div_ceil(RATE).max(1), Ordering::Relaxed);
        }
        let n = self.seen.fetch_add(1, Ordering::Relaxed);
        n.is_multiple_of(self.every.load(Ordering::Relaxed).max(1))
    }

    /// One request in this many is sent to watchers now (1: every one).
    pub fn sample_every(&self) -> u64 {
        self.every.load(Ordering::Relaxed).max(1)
    }

    /// Sends a finished record to every watcher.
    pub fn publish(&self, record: Arc<Record>) {
        // No receiver left (the last watcher just went) is fine.
        let _ = self.tx.send(record);
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.feed.watchers.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nobody_watching_wants_nothing() {
        let feed = Feed::new();
        assert!(!feed.wants());
        let watch = feed.watch().unwrap();
        assert!(feed.wants());
        drop(watch);
        assert!(!feed.wants());
        assert_eq!(feed.watchers(), 0);
    }

    #[test]
    fn watchers_are_bounded() {
        let feed = Feed::new();
        let watches: Vec<_> = (0..MAX_WATCHERS).map(|_| feed.watch().unwrap()).collect();
        assert!(feed.watch().is_none());
        drop(watches);
        assert!(feed.watch().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn heavy_traffic_is_sampled_and_the_rate_reported() {
        let feed = Feed::new();
        let _watch = feed.watch().unwrap();
        // Second 0: every request is taken while the rate is unknown.
        let taken = (0..RATE * 5).filter(|_| feed.wants()).count() as u64;
        assert_eq!(taken, RATE * 5);
        tokio::time::advance(std::time::Duration::from_secs(1)).await;
        let taken = (0..RATE * 5).filter(|_| feed.wants()).count() as u64;
        assert_eq!(feed.sample_every(), 5);
        assert_eq!(taken, RATE);
        // Two quiet seconds later every request is taken again.
        tokio::time::advance(std::time::Duration::from_secs(2)).await;
        assert!(feed.wants());
        assert_eq!(feed.sample_every(), 1);
    }
}
