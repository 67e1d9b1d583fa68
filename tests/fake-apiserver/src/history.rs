//! The change log behind resourceVersions: every write is recorded here, fanned
//! out to open watches, replayed to watches that resume from an older
//! resourceVersion, and used to rebuild the state at an older resourceVersion
//! for paged and exact lists. Compaction forgets it, like etcd's.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::selector::meta_str;

/// `(namespace, name)`; `""` namespace for cluster-scoped objects. Sorting
/// by it gives the order etcd keys, and so real lists, have.
pub type ObjKey = (String, String);

/// One write, as watches see it.
#[derive(Debug, Clone)]
pub struct Change {
    /// The resourceVersion the write created.
    pub rv: u64,
    /// Which type (`ResourceType::group_resource`).
    pub resource: String,
    /// ADDED, MODIFIED or DELETED.
    pub kind: ChangeKind,
    /// The object after the write (for DELETED: its last state, carrying the
    /// deletion's resourceVersion, as the real server sends it).
    pub object: Arc<Value>,
    /// The object before the write: lets a filtered watch turn a MODIFIED
    /// that leaves its selector into a DELETED, and lets lists rewind.
    pub prev: Option<Arc<Value>>,
}

/// The watch event types a write produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// The object was created.
    Added,
    /// The object was changed.
    Modified,
    /// The object was removed.
    Deleted,
}

/// Recorded changes, their retention, and the watches to tell.
#[derive(Debug)]
pub struct EventLog {
    changes: VecDeque<Arc<Change>>,
    limit: usize,
    /// Every change after this resourceVersion is still in `changes`: a
    /// watch or exact list may start at any resourceVersion >= it.
    compacted: u64,
    subscribers: Vec<Subscriber>,
}

#[derive(Debug)]
struct Subscriber {
    resource: String,
    tx: mpsc::UnboundedSender<Arc<Change>>,
}

// === impl ChangeKind ===

impl ChangeKind {
    /// The watch event `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "ADDED",
            ChangeKind::Modified => "MODIFIED",
            ChangeKind::Deleted => "DELETED",
        }
    }
}

// === impl EventLog ===

impl EventLog {
    /// A log keeping at most `limit` changes; older ones are compacted away.
    pub fn new(limit: usize) -> Self {
        Self {
            changes: VecDeque::new(),
            limit: limit.max(1),
            compacted: 0,
            subscribers: Vec::new(),
        }
    }

    /// The oldest resourceVersion history can still be served from.
    pub fn compacted(&self) -> u64 {
        self.compacted
    }

    /// Records a change and sends it to the watches of its type. Called with
    /// the store locked, so watches see changes in resourceVersion order.
    pub fn record(&mut self, change: Change) {
        let change = Arc::new(change);
        // A closed receiver is a watch that ended; forget it here.
        self.subscribers
            .retain(|s| s.resource != change.resource || s.tx.send(change.clone()).is_ok());
        self.changes.push_back(change);
        while self.changes.len() > self.limit {
            if let Some(old) = self.changes.pop_front() {
                self.compacted = old.rv;
            }
        }
    }

    /// The changes of `resource` after `rv`, or 410 if some are forgotten.
    pub fn since(&self, resource: &str, rv: u64) -> Result<Vec<Arc<Change>>, ApiError> {
        if rv < self.compacted {
            return Err(ApiError::too_old(rv, self.compacted));
        }
        Ok(self
            .changes
            .iter()
            .filter(|c| c.rv > rv && c.resource == resource)
            .cloned()
            .collect())
    }

    /// Starts delivering the changes of `resource` to a new watch.
    pub fn subscribe(&mut self, resource: &str) -> mpsc::UnboundedReceiver<Arc<Change>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.subscribers.push(Subscriber {
            resource: resource.to_string(),
            tx,
        });
        rx
    }

    /// Ends every watch: dropping the senders closes their streams after
    /// what was already queued, as an API server restart does.
    pub fn drop_subscribers(&mut self) {
        self.subscribers.clear();
    }

    /// Forgets all history up to `rv`.
    pub fn compact(&mut self, rv: u64) {
        self.changes.clear();
        self.compacted = rv;
    }

    /// The objects of `resource` as they were at `rv`, rebuilt from `current`
    /// by undoing every later change; 410 if that history is compacted.
    pub fn rewind(
        &self,
        resource: &str,
        current: &BTreeMap<ObjKey, Arc<Value>>,
        rv: u64,
    ) -> Result<BTreeMap<ObjKey, Arc<Value>>, ApiError> {
        if rv < self.compacted {
            return Err(ApiError::too_old(rv, self.compacted));
        }
        let mut state = current.clone();
        for change in self.changes.iter().rev() {
            if change.rv <= rv {
                break;
            }
            if change.resource != resource {
                continue;
            }
            let key = key_of(&change.object);
            match (&change.kind, &change.prev) {
                (ChangeKind::Added, _) => {
                    state.remove(&key);
                }
                (_, Some(prev)) => {
                    state.insert(key, prev.clone());
                }
                (_, None) => {}
            }
        }
        Ok(state)
    }
}

/// The store key of an object.
pub fn key_of(obj: &Value) -> ObjKey {
    (
        meta_str(obj, "namespace").to_string(),
        meta_str(obj, "name").to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(name: &str, v: u64) -> Arc<Value> {
        Arc::new(
            json!({"metadata": {"name": name, "namespace": "ns", "resourceVersion": v.to_string()}}),
        )
    }

    fn change(rv: u64, kind: ChangeKind, object: Arc<Value>, prev: Option<Arc<Value>>) -> Change {
        Change {
            rv,
            resource: "things".into(),
            kind,
            object,
            prev,
        }
    }

    #[test]
    fn rewind_undoes_later_changes() {
        let mut log = EventLog::new(100);
        log.record(change(1, ChangeKind::Added, obj("a", 1), None));
        log.record(change(2, ChangeKind::Added, obj("b", 2), None));
        log.record(change(
            3,
            ChangeKind::Modified,
            obj("a", 3),
            Some(obj("a", 1)),
        ));
        log.record(change(
            4,
            ChangeKind::Deleted,
            obj("b", 4),
            Some(obj("b", 2)),
        ));
        let mut current = BTreeMap::new();
        current.insert(key_of(&obj("a", 3)), obj("a", 3));

        let at2 = log.rewind("things", &current, 2).unwrap();
        let versions: Vec<_> = at2
            .values()
            .map(|o| meta_str(o, "resourceVersion").to_string())
            .collect();
        assert_eq!(versions, ["1", "2"]);
        assert!(log.rewind("things", &current, 0).unwrap().is_empty());
    }

    #[test]
    fn compaction_makes_old_versions_expire() {
        let mut log = EventLog::new(2);
        for rv in 1..=3 {
            log.record(change(
                rv,
                ChangeKind::Added,
                obj(&format!("o{rv}"), rv),
                None,
            ));
        }
        assert_eq!(log.compacted(), 1);
        assert_eq!(log.since("things", 0).unwrap_err().code(), 410);
        assert_eq!(log.since("things", 1).unwrap().len(), 2);
        log.compact(7);
        assert_eq!(log.since("things", 6).unwrap_err().reason(), "Expired");
        assert!(log.since("things", 7).unwrap().is_empty());
    }
}
