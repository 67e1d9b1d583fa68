//! The Secrets and ConfigMaps that Ingress annotations name (`auth-secret`,
//! `custom-headers`, `auth-proxy-set-headers`), each watched on its own, by
//! name, for as long as some Ingress names it.
//!
//! Why not one watch of every Secret, as ingress-nginx does: the controller
//! has no business holding every application password and token in the
//! cluster. It holds the TLS Secrets (one watch, by type) and exactly the
//! other objects an Ingress points at. ConfigMaps are handled the same way:
//! a cluster's ConfigMaps are many and large (dashboards, scripts), and the
//! table needs a handful of them.
//!
//! A watch that starts lists its one object first; the sync loop waits for
//! that list (bounded by [`FIRST_LIST_WAIT`]) before it compiles, so an
//! Ingress is not rejected for a Secret that exists but was not read yet.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use ::kube::Client;
use ::kube::api::Api;
use ::kube::runtime::reflector::{self, Store};
use ::kube::runtime::watcher;
use k8s_openapi::NamespaceResourceScope;
use parking_lot::Mutex;
use tokio::task::JoinHandle;

use super::{Changes, Watched, reflect};
use crate::source::ObjectKey;

/// How long a compile waits for newly named objects to be listed. An API
/// server that does not answer in time costs the Ingresses naming them a
/// rejection until it does (the list's completion recompiles).
pub(super) const FIRST_LIST_WAIT: Duration = Duration::from_secs(10);

/// The watches of one kind, by the key of the object each one reads.
pub(super) struct Named<K: Watched<Scope = NamespaceResourceScope>> {
    client: Client,
    changes: Arc<Changes>,
    watches: Mutex<BTreeMap<ObjectKey, Watch<K>>>,
}

/// One object's cache and the task that keeps it.
struct Watch<K: Watched> {
    store: Store<K>,
    task: JoinHandle<()>,
}

impl<K: Watched<Scope = NamespaceResourceScope>> Named<K> {
    pub(super) fn new(client: Client, changes: Arc<Changes>) -> Self {
        Self {
            client,
            changes,
            watches: Mutex::new(BTreeMap::new()),
        }
    }

    /// Watches exactly the objects in `wanted`: starts a watch for each new
    /// key and stops the watches of keys no longer named. Returns the caches
    /// of the new watches, to wait for with [`first_lists`].
    pub(super) fn want(&self, wanted: &BTreeSet<ObjectKey>) -> Vec<Store<K>> {
        let mut watches = self.watches.lock();
        watches.retain(|key, _| wanted.contains(key));
        let mut started = Vec::new();
        for key in wanted {
            if watches.contains_key(key) {
                continue;
            }
            let api: Api<K> = Api::namespaced(self.client.clone(), &key.namespace);
            let config = watcher::Config::default().fields(&format!("metadata.name={}", key.name));
            let (store, writer) = reflector::store::<K>();
            let task = tokio::spawn(reflect(api, config, writer, self.changes.clone()));
            tracing::debug!(kind = K::KIND, object = %key, "watching");
            started.push(store.clone());
            watches.insert(key.clone(), Watch { store, task });
        }
        started
    }

    /// The cached objects (those of the named ones that exist).
    pub(super) fn state(&self) -> Vec<Arc<K>> {
        let watches = self.watches.lock();
        watches.values().flat_map(|w| w.store.state()).collect()
    }
}

impl<K: Watched<Scope = NamespaceResourceScope>> Drop for Named<K> {
    fn drop(&mut self) {
        self.watches.lock().clear();
    }
}

impl<K: Watched> Drop for Watch<K> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits until each of `stores` has its first list, or [`FIRST_LIST_WAIT`]
/// has passed. Says whether they all made it.
pub(super) async fn first_lists<K: Watched>(stores: &[Store<K>]) -> bool {
    let all = async {
        for store in stores {
            if store.wait_until_ready().await.is_err() {
                return false;
            }
        }
        true
    };
    tokio::time::timeout(FIRST_LIST_WAIT, all)
        .await
        .unwrap_or(false)
}
