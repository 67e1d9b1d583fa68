//! Per-resource fault injection: hold every request for one resource (a
//! stalled API server, as seen by one client) or answer them with 500 (an
//! API server whose storage fails), until the test resumes it.
//!
//! Keyed by the plural alone (`leases`, `endpointslices`): no two served
//! types share one, and tests read better without the group.

use std::collections::HashMap;

use tokio::sync::watch;

use crate::error::ApiError;

/// What happens to the requests for one resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Requests wait until the fault is lifted, then are answered as usual.
    Hold,
    /// Requests are answered with 500 at once.
    Fail,
}

/// The faults in force, by plural. A watch channel, so held requests wake
/// as soon as their fault is lifted.
#[derive(Debug)]
pub(crate) struct Faults {
    state: watch::Sender<HashMap<String, Fault>>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            state: watch::Sender::new(HashMap::new()),
        }
    }
}

impl Faults {
    /// Puts `fault` on `plural` (`None` lifts it).
    pub(crate) fn set(&self, plural: &str, fault: Option<Fault>) {
        self.state.send_modify(|faults| match fault {
            Some(fault) => {
                faults.insert(plural.to_string(), fault);
            }
            None => {
                faults.remove(plural);
            }
        });
    }

    /// Waits while `plural` is held; fails when it is failed.
    pub(crate) async fn check(&self, plural: &str) -> Result<(), ApiError> {
        let mut faults = self.state.subscribe();
        loop {
            match faults.borrow_and_update().get(plural) {
                None => return Ok(()),
                Some(Fault::Fail) => {
                    return Err(ApiError::internal(format!("injected failure for {plural}")));
                }
                Some(Fault::Hold) => {}
            }
            if faults.changed().await.is_err() {
                return Ok(());
            }
        }
    }
}
