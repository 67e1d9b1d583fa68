//! The object store: one map per type and one resourceVersion counter for
//! all of them, behind one lock. Every write is one critical section (its
//! rules live in `state`), so resourceVersions, history and watch events
//! agree.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::history::{Change, ChangeKind, EventLog, ObjKey};
use crate::meta;
use crate::resources::{Registry, ResourceType};
use state::{State, name_mismatch};

mod state;

/// Objects of every registered type, with their history.
#[derive(Debug)]
pub struct Store {
    registry: Arc<Registry>,
    state: Mutex<State>,
}

/// Who writes, which decides what of the object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    /// The main resource over HTTP: `.status` is ignored for kinds with a
    /// status subresource.
    Api,
    /// The `/status` subresource: only `.status` changes.
    Status,
    /// Test code or preloaded manifests: the whole object is written.
    Direct,
}

/// What a delete did.
#[derive(Debug)]
pub(crate) enum Deleted {
    /// The object is gone; this is its last state.
    Removed(Value),
    /// Finalizers hold it: it now has a deletionTimestamp.
    Pending(Value),
}

/// `DeleteOptions.preconditions`.
#[derive(Debug, Default, Clone)]
pub(crate) struct Preconditions {
    /// The uid the object must have.
    pub uid: Option<String>,
    /// The resourceVersion the object must be at.
    pub resource_version: Option<String>,
}

/// The objects of one type at one resourceVersion, in key order.
#[derive(Debug)]
pub(crate) struct Snapshot {
    /// The resourceVersion the list reports.
    pub rv: u64,
    /// `(key, object)` sorted by namespace, then name.
    pub items: Vec<(ObjKey, Arc<Value>)>,
}

/// Where a watch starts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum WatchFrom {
    /// Every current object as a synthetic ADDED, then live changes.
    Current,
    /// Only live changes: from the latest resourceVersion on.
    Latest,
    /// The recorded changes after this resourceVersion, then live changes.
    After(u64),
}

/// A watch's start: what to send first, then what arrives live.
#[derive(Debug)]
pub(crate) struct Subscription {
    /// Events to send before the live ones.
    pub initial: Vec<Arc<Change>>,
    /// Live changes of the watched type.
    pub rx: mpsc::UnboundedReceiver<Arc<Change>>,
    /// The resourceVersion the first events bring the watch up to.
    pub rv: u64,
}
// === impl Store ===

impl Store {
    /// An empty store serving `registry`'s types, keeping `history_limit`
    /// changes for watches to resume from.
    pub fn new(registry: Arc<Registry>, history_limit: usize) -> Self {
        Self {
            registry,
            state: Mutex::new(State {
                rv: 0,
                objects: HashMap::new(),
                log: EventLog::new(history_limit),
            }),
        }
    }

    /// The served types.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The latest resourceVersion.
    pub fn current_rv(&self) -> u64 {
        self.state.lock().rv
    }

    /// The oldest resourceVersion history can still be served from.
    pub fn compacted_rv(&self) -> u64 {
        self.state.lock().log.compacted()
    }

    /// Forgets all history and makes every resourceVersion handed out so far
    /// too old: watches and exact or paged lists from them get 410 Gone.
    pub fn expire_history(&self) {
        let mut st = self.state.lock();
        // Compacting at a fresh resourceVersion, one no client has seen, is
        // what makes "up to date" clients expire too.
        st.rv += 1;
        let rv = st.rv;
        st.log.compact(rv);
    }

    /// Ends every open watch stream.
    pub fn drop_watches(&self) {
        self.state.lock().log.drop_subscribers();
    }

    pub(crate) fn get_obj(
        &self,
        res: &ResourceType,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        let st = self.state.lock();
        st.lookup(res, &obj_key(res, ns, name))
            .map(|o| (*o).clone())
            .ok_or_else(|| ApiError::not_found(res, name))
    }

    pub(crate) fn create_obj(
        &self,
        res: &ResourceType,
        ns: Option<&str>,
        obj: Value,
        via: Via,
    ) -> Result<Value, ApiError> {
        self.state.lock().create(res, ns, obj, via)
    }

    /// Reads the current object, lets `f` compute the new one, and writes it,
    /// all under the lock so nothing changes in between. With `allow_create`
    /// a missing object is created from `f(None)`; the bool says whether it was.
    pub(crate) fn write_obj<F>(
        &self,
        res: &ResourceType,
        ns: Option<&str>,
        name: &str,
        via: Via,
        allow_create: bool,
        f: F,
    ) -> Result<(Value, bool), ApiError>
    where
        F: FnOnce(Option<&Value>) -> Result<Value, ApiError>,
    {
        let mut st = self.state.lock();
        let key = obj_key(res, ns, name);
        match st.lookup(res, &key) {
            Some(old) => {
                let new = f(Some(&old))?;
                Ok((st.update(res, &key, &old, new, via)?, false))
            }
            None if allow_create && via != Via::Status => {
                let new = f(None)?;
                if meta::get_str(&new, "name") != name {
                    return Err(name_mismatch(meta::get_str(&new, "name"), name));
                }
                Ok((st.create(res, ns, new, via)?, true))
            }
            None => Err(ApiError::not_found(res, name)),
        }
    }

    pub(crate) fn delete_obj(
        &self,
        res: &ResourceType,
        ns: Option<&str>,
        name: &str,
        pre: &Preconditions,
    ) -> Result<Deleted, ApiError> {
        let types = self.registry.all();
        self.state
            .lock()
            .delete(res, &obj_key(res, ns, name), pre, &types)
    }

    /// The objects of `res` now (`at: None`) or at an older resourceVersion.
    pub(crate) fn snapshot(
        &self,
        res: &ResourceType,
        at: Option<u64>,
    ) -> Result<Snapshot, ApiError> {
        let st = self.state.lock();
        let empty = BTreeMap::new();
        let current = st.objects.get(&res.group_resource()).unwrap_or(&empty);
        let (rv, objects) = match at {
            None => (st.rv, current.clone()),
            Some(rv) if rv > st.rv => return Err(ApiError::too_large_resource_version(rv, st.rv)),
            Some(rv) if rv == st.rv => (rv, current.clone()),
            Some(rv) => (rv, st.log.rewind(&res.group_resource(), current, rv)?),
        };
        Ok(Snapshot {
            rv,
            items: objects.into_iter().collect(),
        })
    }

    /// Opens a watch on `res`: the first events and the live channel are
    /// taken in one critical section, so no change is missed or doubled.
    pub(crate) fn subscribe(
        &self,
        res: &ResourceType,
        from: WatchFrom,
    ) -> Result<Subscription, ApiError> {
        let mut st = self.state.lock();
        let resource = res.group_resource();
        let initial = match from {
            WatchFrom::Current => st
                .objects
                .get(&resource)
                .map(|objects| {
                    objects
                        .values()
                        .map(|o| {
                            Arc::new(Change {
                                rv: parse_own_rv(o),
                                resource: resource.clone(),
                                kind: ChangeKind::Added,
                                object: o.clone(),
                                prev: None,
                            })
                        })
                        .collect()
                })
                .unwrap_or_default(),
            WatchFrom::Latest => Vec::new(),
            WatchFrom::After(rv) if rv > st.rv => {
                return Err(ApiError::too_large_resource_version(rv, st.rv));
            }
            WatchFrom::After(rv) => st.log.since(&resource, rv)?,
        };
        let rx = st.log.subscribe(&resource);
        Ok(Subscription {
            initial,
            rx,
            rv: st.rv,
        })
    }
}
/// The store key for a path's namespace and name.
fn obj_key(res: &ResourceType, ns: Option<&str>, name: &str) -> ObjKey {
    let ns = if res.namespaced { ns.unwrap_or("") } else { "" };
    (ns.to_string(), name.to_string())
}
/// The resourceVersion of a stored object; always one of ours.
fn parse_own_rv(obj: &Value) -> u64 {
    meta::get_str(obj, "resourceVersion").parse().unwrap_or(0)
}
