//! Relists on demand (the dashboard's reload): every reflector drops its
//! watch and starts again, listing everything from the API server first,
//! and the caller learns when each has its new list.
//!
//! A reflector's cache keeps serving its old objects until the new list is
//! complete and swapped in whole (as after a `410 Gone`), so a relist never
//! empties the table. Reflectors that never listed (a kind the API server
//! does not serve, such as a CRD not installed) are not waited for: their
//! watch keeps retrying, and its first list compiles as always.

use std::collections::HashSet;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{Notify, watch};

/// The reflectors alive, and those still relisting.
#[derive(Debug)]
pub(super) struct Relists {
    /// Bumped by each relist asked for; every reflector watches it.
    epoch: watch::Sender<u64>,
    state: Mutex<State>,
    done: Notify,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    /// Reflectors that have listed at least once.
    live: HashSet<u64>,
    /// Reflectors that have not finished the last relist.
    waiting: HashSet<u64>,
}

/// One reflector's part: its id and its view of the epoch. Dropping it
/// (the reflector stopped) counts as done.
#[derive(Debug)]
pub(super) struct Member<'a> {
    relists: &'a Relists,
    id: u64,
    pub(super) asked: watch::Receiver<u64>,
}

impl Default for Relists {
    fn default() -> Self {
        Self {
            epoch: watch::channel(0).0,
            state: Mutex::default(),
            done: Notify::new(),
        }
    }
}

impl Relists {
    /// A reflector joins; relists asked for from now on concern it.
    pub(super) fn join(&self) -> Member<'_> {
        let mut state = self.state.lock();
        let id = state.next_id;
        state.next_id += 1;
        // Subscribed under the lock: a relist either counts this reflector
        // and reaches it, or neither.
        Member {
            relists: self,
            id,
            asked: self.epoch.subscribe(),
        }
    }

    fn finished(&self, id: u64, listed: bool) {
        let mut state = self.state.lock();
        if listed {
            state.live.insert(id);
        }
        if state.waiting.remove(&id) && state.waiting.is_empty() {
            self.done.notify_waiters();
        }
    }

    /// Asks every reflector to list again; `true` once each has, `false`
    /// if some had not within `wait` (their watch keeps retrying).
    pub(super) async fn relist(&self, wait: Duration) -> bool {
        {
            let mut state = self.state.lock();
            state.waiting = state.live.clone();
            self.epoch.send_modify(|e| *e += 1);
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let done = self.done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            if self.state.lock().waiting.is_empty() {
                return true;
            }
            tokio::select! {
                () = done => {}
                () = tokio::time::sleep_until(deadline) => {
                    return self.state.lock().waiting.is_empty();
                }
            }
        }
    }
}

impl Member<'_> {
    /// This reflector has a complete list (its first, or a relist's).
    pub(super) fn listed(&self) {
        self.relists.finished(self.id, true);
    }
}

impl Drop for Member<'_> {
    fn drop(&mut self) {
        self.relists.state.lock().live.remove(&self.id);
        self.relists.finished(self.id, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_relist_waits_for_every_reflector() {
        let relists = Relists::default();
        let mut a = relists.join();
        let mut b = relists.join();
        a.listed();
        b.listed();
        // Never listed (its kind is not served): not waited for.
        let _never = relists.join();
        let asked = async {
            a.asked.changed().await.unwrap();
            b.asked.changed().await.unwrap();
            a.listed();
            // `b` stops instead of listing: it counts as done.
            drop(b);
        };
        let (relisted, ()) = tokio::join!(relists.relist(Duration::from_secs(5)), asked);
        assert!(relisted);
        drop(a);
        // Nobody left: done at once.
        assert!(relists.relist(Duration::from_millis(10)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reflector_that_never_lists_times_out() {
        let relists = Relists::default();
        let silent = relists.join();
        silent.listed();
        assert!(!relists.relist(Duration::from_secs(1)).await);
    }
}
