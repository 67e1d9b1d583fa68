//! The "reload" action: the dashboard asks the loop that owns the sources
//! to read them again and compile, and shows what came of it. Standalone,
//! the manifests folder is walked again (every changed file re-read) and a
//! table compiled even when nothing changed; in a cluster, every watch
//! lists everything from the API server again (the caches keep serving
//! until each new list is whole) and the table is compiled from them.

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

/// Reloads asked for and not started yet; more are refused (busy).
const QUEUE: usize = 2;

/// One reload asked for; the loop answers on `done`.
#[derive(Debug)]
pub struct Request {
    pub done: oneshot::Sender<Outcome>,
}

/// What a reload did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Outcome {
    /// `standalone` (the folder was walked again) or `cluster` (everything
    /// listed again from the API server).
    pub source: &'static str,
    pub generation: u64,
    pub routes: usize,
    pub rejected: usize,
    /// Files that do not parse (standalone mode; their last good version
    /// stays), or watches that did not list again in time (cluster mode).
    pub errors: Vec<String>,
    pub took_ms: f64,
}

/// The dashboard's end.
pub type Sender = mpsc::Sender<Request>;
/// The source loop's end.
pub type Receiver = mpsc::Receiver<Request>;

pub fn channel() -> (Sender, Receiver) {
    mpsc::channel(QUEUE)
}
