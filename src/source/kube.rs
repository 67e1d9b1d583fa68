//! Cluster mode's source: one reflector per kind (per watched namespace)
//! against the API server, their caches read into the same [`Snapshot`]
//! standalone mode fills, and a record of what changed for the sync loop.
//!
//! The reflectors apply watch events to their caches themselves (rather than
//! through `kube::runtime::reflector`) so that each event can be compared
//! with the cached object it replaces: a change the table cannot depend on
//! (an Ingress's status, which this controller writes itself) then costs no
//! recompile, and an EndpointSlice change names the one Service it touches.
//!
//! A relist (after a `410 Gone`, an API server restart) fills a buffer and
//! swaps it in whole, so the caches never hold half a list and the table
//! never loses routes while the API server is away.

mod named;
mod relist;

use std::collections::{BTreeSet, HashSet};
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use ::kube::api::{Api, ListParams};
use ::kube::runtime::WatchStreamExt;
use ::kube::runtime::reflector::{self, ObjectRef, Store};
use ::kube::runtime::watcher::{self, Event};
use ::kube::{Client, Resource};
use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use self::named::Named;
use self::relist::Relists;
use super::{ObjectKey, Snapshot};
use crate::compile::TLS_SECRET_TYPE;
use crate::crd::BalancerPolicy;

/// The label an EndpointSlice names its Service with.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// `kubectl apply` keeps the whole applied object here: for a Secret, the
/// private key a second time. Never cached.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// How often readiness asks whether the BalancerPolicy CRD is installed.
const CRD_PROBE_EVERY: Duration = Duration::from_secs(2);

/// What to watch.
#[derive(Clone, Debug, Default)]
pub struct WatchScope {
    /// Empty: every namespace.
    pub namespaces: Vec<String>,
    /// Restricts the cached TLS Secrets further by label.
    pub secret_label_selector: Option<String>,
    /// The Service whose addresses go into Ingress status, watched on its
    /// own: it may live outside the watched namespaces.
    pub publish_service: Option<ObjectKey>,
}

/// The caches of one kind, one per watched namespace (or one for all).
#[derive(Clone)]
pub struct Scoped<K: Resource<DynamicType = ()> + Clone + 'static> {
    stores: Vec<Store<K>>,
}

/// Every cache the compile step and the status writer read.
#[derive(Clone)]
pub struct Caches {
    pub ingresses: Scoped<Ingress>,
    pub ingress_classes: Scoped<IngressClass>,
    pub services: Scoped<Service>,
    pub endpoint_slices: Scoped<EndpointSlice>,
    /// The `kubernetes.io/tls` Secrets.
    pub secrets: Scoped<Secret>,
    /// The other Secrets, those annotations name (`auth-secret`).
    named_secrets: Arc<Named<Secret>>,
    /// The ConfigMaps annotations name.
    config_maps: Arc<Named<ConfigMap>>,
    pub balancer_policies: Scoped<BalancerPolicy>,
    /// `--publish-service`, when given.
    pub publish_service: Option<Store<Service>>,
    /// For asking whether the BalancerPolicy CRD is installed.
    policy_probe: Api<BalancerPolicy>,
}

/// The running reflectors: their caches, what changed, and the tasks (which
/// stop when this is dropped).
pub struct Watchers {
    pub caches: Caches,
    pub changes: Arc<Changes>,
    tasks: Vec<JoinHandle<()>>,
}

/// Changes not yet compiled, and a wake-up for the sync loop and the status
/// writer. Written by every reflector task, taken by the sync loop.
#[derive(Debug, Default)]
pub struct Changes {
    pending: Mutex<Pending>,
    compile: Notify,
    status: Notify,
    /// Relists asked for by the dashboard's reload.
    relists: Relists,
}

/// What happened since the last [`Changes::take`].
#[derive(Debug, Default)]
pub struct Pending {
    /// When the first change of this batch arrived.
    pub since: Option<Instant>,
    /// Something other than Ingresses and endpoints changed (or a cache was
    /// listed again): read every cache, compile.
    pub full: bool,
    /// The Ingresses that changed (or went): compile, reading only these
    /// from the cache.
    pub ingresses: HashSet<ObjectKey>,
    /// The EndpointSlices that changed (or went).
    pub slices: HashSet<ObjectKey>,
    /// The Services whose EndpointSlices changed: compile when a served
    /// route uses one of them.
    pub services: HashSet<ObjectKey>,
}

/// What one watch event means downstream.
#[derive(Debug, PartialEq, Eq)]
enum Change {
    /// Nothing the table or the status depends on.
    None,
    /// The table may change.
    Compile,
    /// Only status (written by this controller or its peers) changed:
    /// re-check what status should say, no recompile.
    Status,
    /// This Ingress changed in a way the table may depend on.
    Ingress(ObjectKey),
    /// This EndpointSlice changed; it belongs to these Services.
    Endpoints {
        slice: ObjectKey,
        services: Vec<ObjectKey>,
    },
}

/// A kind the reflectors cache.
trait Watched:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
    const KIND: &'static str;
    /// Whether a decoding error may be logged as it is: serde quotes the
    /// value it could not read, which for a Secret is key material.
    const LOG_DECODE_ERRORS: bool = true;

    /// What replacing `old` (absent for a new object) by `new` means.
    fn change(_old: Option<&Self>, _new: &Self) -> Change {
        Change::Compile
    }

    /// Drops what is never read before the object is cached.
    fn trim(&mut self) {
        let meta = self.meta_mut();
        meta.managed_fields = None;
        if let Some(annotations) = meta.annotations.as_mut() {
            annotations.remove(LAST_APPLIED);
        }
    }
}

impl Watched for Ingress {
    const KIND: &'static str = "Ingress";

    fn change(old: Option<&Self>, new: &Self) -> Change {
        // The status is what this controller writes: its own writes coming
        // back must not recompile the table.
        match old {
            Some(old) if same_but_status(old, new, |i| i.status = None) => Change::Status,
            _ => Change::Ingress(ObjectKey::of(&new.metadata)),
        }
    }
}

impl Watched for IngressClass {
    const KIND: &'static str = "IngressClass";
}

impl Watched for Service {
    const KIND: &'static str = "Service";
}

impl Watched for Secret {
    const KIND: &'static str = "Secret";
    const LOG_DECODE_ERRORS: bool = false;
}

impl Watched for ConfigMap {
    const KIND: &'static str = "ConfigMap";
}

impl Watched for EndpointSlice {
    const KIND: &'static str = "EndpointSlice";

    fn change(old: Option<&Self>, new: &Self) -> Change {
        let mut services: Vec<ObjectKey> = old
            .into_iter()
            .chain([new])
            .filter_map(slice_service)
            .collect();
        services.dedup();
        if services.is_empty() {
            // The compile step reads slices through their Service label only.
            Change::None
        } else {
            Change::Endpoints {
                slice: ObjectKey::of(&new.metadata),
                services,
            }
        }
    }
}

impl Watched for BalancerPolicy {
    const KIND: &'static str = "BalancerPolicy";

    fn change(old: Option<&Self>, new: &Self) -> Change {
        let Some(old) = old else {
            return Change::Compile;
        };
        // The spec has no `PartialEq`; compare it as the API server stores it.
        let same_spec =
            serde_json::to_value(&old.spec).ok() == serde_json::to_value(&new.spec).ok();
        let (o, n) = (&old.metadata, &new.metadata);
        if same_spec
            && o.generation == n.generation
            && o.labels == n.labels
            && o.annotations == n.annotations
            && o.deletion_timestamp == n.deletion_timestamp
        {
            Change::Status
        } else {
            Change::Compile
        }
    }
}

// === impl Scoped ===

impl<K: Resource<DynamicType = ()> + Clone + 'static> Scoped<K> {
    /// Every cached object, in every watched namespace.
    pub fn state(&self) -> impl Iterator<Item = Arc<K>> + '_ {
        self.stores.iter().flat_map(|s| s.state())
    }

    /// One object by `namespace/name` (`name` alone when cluster-scoped).
    pub fn get(&self, key: &ObjectKey) -> Option<Arc<K>> {
        let reference = if key.namespace.is_empty() {
            ObjectRef::new(&key.name)
        } else {
            ObjectRef::new(&key.name).within(&key.namespace)
        };
        self.stores.iter().find_map(|s| s.get(&reference))
    }

    /// Resolves once every cache of this kind has its first full list.
    async fn wait_until_ready(&self) -> Result<(), reflector::store::WriterDropped> {
        for store in &self.stores {
            store.wait_until_ready().await?;
        }
        Ok(())
    }
}

// === impl Caches ===

impl Caches {
    /// The objects as the compile step reads them. Objects are shared with
    /// the caches, not copied.
    pub fn snapshot(&self) -> Snapshot {
        let mut snapshot = Snapshot::default();
        for i in self.ingresses.state() {
            snapshot.ingresses.insert(ObjectKey::of(&i.metadata), i);
        }
        for c in self.ingress_classes.state() {
            let name = c.metadata.name.clone().unwrap_or_default();
            snapshot.ingress_classes.insert(name, c);
        }
        for s in self.services.state() {
            snapshot.services.insert(ObjectKey::of(&s.metadata), s);
        }
        for e in self.endpoint_slices.state() {
            snapshot
                .endpoint_slices
                .insert(ObjectKey::of(&e.metadata), e);
        }
        for s in self.secrets.state() {
            snapshot.secrets.insert(ObjectKey::of(&s.metadata), s);
        }
        for s in self.named_secrets.state() {
            snapshot.secrets.insert(ObjectKey::of(&s.metadata), s);
        }
        for c in self.config_maps.state() {
            snapshot.config_maps.insert(ObjectKey::of(&c.metadata), c);
        }
        for p in self.balancer_policies.state() {
            snapshot
                .balancer_policies
                .insert(ObjectKey::of(&p.metadata), p);
        }
        snapshot
    }

    /// Resolves once every reflector has listed its kind once, so that the
    /// first table is complete. A cluster without the BalancerPolicy CRD
    /// has no policies: that reflector keeps retrying (and picks the CRD up
    /// once installed) but does not hold readiness back.
    pub async fn wait_until_ready(&self) -> Result<(), reflector::store::WriterDropped> {
        self.ingresses.wait_until_ready().await?;
        self.ingress_classes.wait_until_ready().await?;
        self.services.wait_until_ready().await?;
        self.endpoint_slices.wait_until_ready().await?;
        self.secrets.wait_until_ready().await?;
        tokio::select! {
            ready = self.balancer_policies.wait_until_ready() => ready,
            () = self.policy_crd_missing() => {
                tracing::warn!(
                    "the BalancerPolicy CRD is not installed (`rust-strom crds | kubectl apply -f -`); \
                     serving without policies until it is"
                );
                Ok(())
            }
        }
    }

    /// Watches the Secrets and ConfigMaps the cached Ingresses name (and
    /// stops watching those no longer named), then waits for the first list
    /// of each new one. Says whether a watch started: the compile that
    /// follows must then read every cache.
    pub async fn watch_named(&self) -> bool {
        let mut secrets = BTreeSet::new();
        let mut config_maps = BTreeSet::new();
        for ingress in self.ingresses.state() {
            let named = crate::compile::named_objects(&ingress);
            secrets.extend(named.secrets);
            config_maps.extend(named.config_maps);
        }
        let new_secrets = self.named_secrets.want(&secrets);
        let new_maps = self.config_maps.want(&config_maps);
        if new_secrets.is_empty() && new_maps.is_empty() {
            return false;
        }
        let listed = named::first_lists(&new_secrets).await & named::first_lists(&new_maps).await;
        if !listed {
            tracing::warn!(
                wait = ?named::FIRST_LIST_WAIT,
                "Secrets or ConfigMaps named by Ingresses were not listed in time; \
                 the Ingresses naming them wait for the next compile"
            );
        }
        true
    }

    /// Resolves when the API server answers 404 for BalancerPolicies.
    async fn policy_crd_missing(&self) {
        loop {
            match self
                .policy_probe
                .list_metadata(&ListParams::default().limit(1))
                .await
            {
                Err(::kube::Error::Api(status)) if status.code == 404 => return,
                _ => tokio::time::sleep(CRD_PROBE_EVERY).await,
            }
        }
    }
}

// === impl Watchers ===

impl Watchers {
    /// Starts one reflector per kind and namespace. They run until dropped,
    /// retrying with kube's default backoff whatever the API server does.
    pub fn spawn(client: &Client, scope: &WatchScope) -> Self {
        let changes = Arc::new(Changes::default());
        let namespaces: Vec<Option<&str>> = if scope.namespaces.is_empty() {
            vec![None]
        } else {
            scope
                .namespaces
                .iter()
                .map(|ns| Some(ns.as_str()))
                .collect()
        };
        let mut spawner = Spawner {
            client,
            namespaces: &namespaces,
            changes: &changes,
            tasks: Vec::new(),
        };
        let all = watcher::Config::default;
        let ingresses = spawner.spawn::<Ingress>(all());
        let services = spawner.spawn::<Service>(all());
        let endpoint_slices = spawner.spawn::<EndpointSlice>(all());
        // Only TLS Secrets are ever cached: the controller has no business
        // holding service-account tokens or application passwords.
        let mut secret_config = all().fields(&format!("type={TLS_SECRET_TYPE}"));
        if let Some(labels) = &scope.secret_label_selector {
            secret_config = secret_config.labels(labels);
        }
        let secrets = spawner.spawn::<Secret>(secret_config);
        let balancer_policies = spawner.spawn::<BalancerPolicy>(all());
        let mut tasks = spawner.tasks;
        let named_secrets = Arc::new(Named::new(client.clone(), changes.clone()));
        let config_maps = Arc::new(Named::new(client.clone(), changes.clone()));

        // IngressClasses are cluster-scoped: one reflector whatever the scope.
        let (classes, writer) = reflector::store::<IngressClass>();
        tasks.push(tokio::spawn(reflect(
            Api::all(client.clone()),
            watcher::Config::default(),
            writer,
            changes.clone(),
        )));

        let publish_service = scope.publish_service.as_ref().map(|key| {
            let (store, writer) = reflector::store::<Service>();
            let config = watcher::Config::default().fields(&format!("metadata.name={}", key.name));
            tasks.push(tokio::spawn(reflect_published(
                Api::namespaced(client.clone(), &key.namespace),
                config,
                writer,
                changes.clone(),
            )));
            store
        });

        let policy_probe = match namespaces.first().copied().flatten() {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        Watchers {
            caches: Caches {
                ingresses,
                ingress_classes: Scoped {
                    stores: vec![classes],
                },
                services,
                endpoint_slices,
                secrets,
                named_secrets,
                config_maps,
                balancer_policies,
                publish_service,
                policy_probe,
            },
            changes,
            tasks,
        }
    }
}

impl Drop for Watchers {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts the reflectors of one namespaced kind over the watched scope.
struct Spawner<'a> {
    client: &'a Client,
    namespaces: &'a [Option<&'a str>],
    changes: &'a Arc<Changes>,
    tasks: Vec<JoinHandle<()>>,
}

impl Spawner<'_> {
    fn spawn<K: Watched<Scope = NamespaceResourceScope>>(
        &mut self,
        config: watcher::Config,
    ) -> Scoped<K> {
        let mut stores = Vec::new();
        for ns in self.namespaces {
            let api = match ns {
                Some(ns) => Api::namespaced(self.client.clone(), ns),
                None => Api::all(self.client.clone()),
            };
            let (store, writer) = reflector::store::<K>();
            self.tasks.push(tokio::spawn(reflect(
                api,
                config.clone(),
                writer,
                self.changes.clone(),
            )));
            stores.push(store);
        }
        Scoped { stores }
    }
}

/// Keeps one cache in step with the API server and records what each event
/// means. Never returns: errors are logged and retried with backoff.
async fn reflect<K: Watched>(
    api: Api<K>,
    config: watcher::Config,
    mut writer: reflector::store::Writer<K>,
    changes: Arc<Changes>,
) {
    let reader = writer.as_reader();
    let mut member = changes.relists.join();
    let watch = || Box::pin(watcher::watcher(api.clone(), config.clone()).default_backoff());
    let mut events = watch();
    loop {
        let event = tokio::select! {
            event = events.next() => match event {
                Some(event) => event,
                None => return,
            },
            Ok(()) = member.asked.changed() => {
                // A relist asked for: a new watch lists everything first.
                events = watch();
                continue;
            }
        };
        let event = match event {
            Ok(event) => event.modify(K::trim),
            Err(error) => {
                let error = describe::<K>(&error);
                tracing::warn!(kind = K::KIND, %error, "watch failed; retrying");
                continue;
            }
        };
        let change = match &event {
            Event::Apply(new) => {
                let old = reader.get(&ObjectRef::from_obj(new));
                K::change(old.as_deref(), new)
            }
            // A deletion always matters: as much as the object appearing.
            Event::Delete(old) => match K::change(Some(old), old) {
                Change::Status => K::change(None, old),
                other => other,
            },
            // A relist: the buffer is swapped in whole at InitDone.
            Event::Init | Event::InitApply(_) => Change::None,
            Event::InitDone => {
                tracing::debug!(kind = K::KIND, objects = reader.len(), "listed");
                Change::Compile
            }
        };
        writer.apply_watcher_event(&event);
        changes.record(change);
        if matches!(event, Event::InitDone) {
            // The first list, or a relist asked for.
            member.listed();
        }
    }
}

/// The `--publish-service` reflector: every change is a status change.
async fn reflect_published(
    api: Api<Service>,
    config: watcher::Config,
    mut writer: reflector::store::Writer<Service>,
    changes: Arc<Changes>,
) {
    let mut events = std::pin::pin!(watcher::watcher(api, config).default_backoff());
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => {
                writer.apply_watcher_event(&event.modify(Service::trim));
                changes.record(Change::Status);
            }
            Err(error) => {
                tracing::warn!(kind = "Service", %error, "watch of the published Service failed; retrying")
            }
        }
    }
}

// === impl Changes ===

impl Changes {
    fn record(&self, change: Change) {
        let compile = match change {
            Change::None => return,
            Change::Status => {
                self.status.notify_one();
                return;
            }
            Change::Compile => {
                let mut pending = self.pending.lock();
                pending.full = true;
                pending.since.get_or_insert_with(Instant::now);
                true
            }
            Change::Ingress(key) => {
                let mut pending = self.pending.lock();
                pending.ingresses.insert(key);
                pending.since.get_or_insert_with(Instant::now);
                true
            }
            Change::Endpoints { slice, services } => {
                let mut pending = self.pending.lock();
                pending.slices.insert(slice);
                pending.services.extend(services);
                pending.since.get_or_insert_with(Instant::now);
                true
            }
        };
        if compile {
            // A stored permit: a change between the loop's check and its
            // wait still wakes it.
            self.compile.notify_one();
        }
    }

    /// Waits until something is pending and returns when the first of it
    /// arrived (the start of the batch's debounce window).
    pub async fn wait(&self) -> Instant {
        loop {
            if let Some(since) = self.pending.lock().since {
                return since;
            }
            self.compile.notified().await;
        }
    }

    /// Takes everything pending.
    pub fn take(&self) -> Pending {
        std::mem::take(&mut *self.pending.lock())
    }

    /// Waits for a change that only status depends on (a status written by
    /// someone, the published Service).
    pub async fn status_changed(&self) {
        self.status.notified().await;
    }

    /// Asks the status writer to look again (after a publish).
    pub fn status_wanted(&self) {
        self.status.notify_one();
    }

    /// Relists every cache from the API server (the dashboard's reload):
    /// each reflector starts its watch again, listing first. Resolves
    /// `true` once every one has its new list, `false` when some had not
    /// within `wait`.
    pub async fn relist(&self, wait: Duration) -> bool {
        self.relists.relist(wait).await
    }
}

// === impl Pending ===

impl Pending {
    /// Whether the batch can change a table whose served routes use the
    /// Services in `routed`.
    pub fn needs_compile(&self, routed: &HashSet<ObjectKey>) -> bool {
        self.full || !self.ingresses.is_empty() || self.services.iter().any(|s| routed.contains(s))
    }

    /// Brings `snapshot`, read from `caches` when this batch began, up to
    /// date with them for an Ingress and endpoint batch: only the objects
    /// that changed are read again. A full batch needs
    /// [`Caches::snapshot`] instead.
    pub fn apply(&self, caches: &Caches, snapshot: &mut Snapshot) {
        for key in &self.ingresses {
            match caches.ingresses.get(key) {
                Some(ingress) => snapshot.ingresses.insert(key.clone(), ingress),
                None => snapshot.ingresses.remove(key),
            };
        }
        for key in &self.slices {
            match caches.endpoint_slices.get(key) {
                Some(slice) => snapshot.endpoint_slices.insert(key.clone(), slice),
                None => snapshot.endpoint_slices.remove(key),
            };
        }
    }
}

/// The Services the served Ingresses route to: an EndpointSlice of any
/// other Service cannot change the table.
pub fn routed_services(snapshot: &Snapshot, served: &[ObjectKey]) -> HashSet<ObjectKey> {
    let mut out = HashSet::new();
    for key in served {
        let Some(spec) = snapshot.ingresses.get(key).and_then(|i| i.spec.as_ref()) else {
            continue;
        };
        let rules = spec.rules.iter().flatten();
        let paths = rules.filter_map(|r| r.http.as_ref()).flat_map(|h| &h.paths);
        let backends = spec.default_backend.iter().chain(paths.map(|p| &p.backend));
        for backend in backends {
            if let Some(service) = &backend.service {
                out.insert(ObjectKey::new(key.namespace.clone(), service.name.clone()));
            }
        }
        if let Some(ingress) = snapshot.ingresses.get(key) {
            out.extend(crate::compile::annotation_services(ingress, snapshot));
        }
    }
    out
}

/// A watch error for the log. The API server's own messages never carry
/// object data; a decoding error may, and is withheld where it could.
fn describe<K: Watched>(error: &watcher::Error) -> String {
    let decoding = match error {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => matches!(e, ::kube::Error::SerdeError(_)),
        watcher::Error::WatchError(_) | watcher::Error::NoResourceVersion => false,
    };
    if decoding && !K::LOG_DECODE_ERRORS {
        format!(
            "a {} did not decode (details withheld: they may quote its data)",
            K::KIND
        )
    } else {
        error.to_string()
    }
}

fn slice_service(slice: &EndpointSlice) -> Option<ObjectKey> {
    let name = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    let key = ObjectKey::of(&slice.metadata);
    Some(ObjectKey::new(key.namespace, name.clone()))
}

/// Whether two versions differ in nothing but status and bookkeeping.
fn same_but_status<K: Resource + Clone + PartialEq>(
    old: &K,
    new: &K,
    clear: impl Fn(&mut K),
) -> bool {
    let strip = |k: &K| {
        let mut k = k.clone();
        clear(&mut k);
        let meta = k.meta_mut();
        meta.resource_version = None;
        meta.managed_fields = None;
        k
    };
    strip(old) == strip(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::networking::v1::{
        IngressLoadBalancerIngress, IngressLoadBalancerStatus, IngressStatus,
    };

    fn ingress(host: &str) -> Ingress {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "1"},
            "spec": {"rules": [{"host": host, "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}
            ]}}]}
        }))
        .unwrap()
    }

    #[test]
    fn an_ingress_status_write_is_not_a_routing_change() {
        let old = ingress("a.example");
        let mut new = old.clone();
        new.metadata.resource_version = Some("2".into());
        new.status = Some(IngressStatus {
            load_balancer: Some(IngressLoadBalancerStatus {
                ingress: Some(vec![IngressLoadBalancerIngress {
                    ip: Some("10.0.0.9".into()),
                    ..Default::default()
                }]),
            }),
        });
        assert_eq!(Ingress::change(Some(&old), &new), Change::Status);
        let key = ObjectKey::new("shop", "web");
        assert_eq!(
            Ingress::change(Some(&old), &ingress("b.example")),
            Change::Ingress(key.clone())
        );
        assert_eq!(Ingress::change(None, &old), Change::Ingress(key));
    }

    #[test]
    fn slices_name_their_service_and_routes_name_theirs() {
        let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-1", "namespace": "shop", "labels": {SERVICE_NAME_LABEL: "web"}},
            "addressType": "IPv4", "endpoints": []
        }))
        .unwrap();
        let web = ObjectKey::new("shop", "web");
        assert_eq!(
            EndpointSlice::change(None, &slice),
            Change::Endpoints {
                slice: ObjectKey::new("shop", "web-1"),
                services: vec![web.clone()]
            }
        );
        let mut unlabelled = slice.clone();
        unlabelled.metadata.labels = None;
        assert_eq!(EndpointSlice::change(None, &unlabelled), Change::None);

        let mut snapshot = Snapshot::default();
        let key = ObjectKey::new("shop", "web");
        snapshot
            .ingresses
            .insert(key.clone(), Arc::new(ingress("a.example")));
        let routed = routed_services(&snapshot, &[key]);
        assert_eq!(routed, HashSet::from([web.clone()]));

        let mut pending = Pending::default();
        pending.services.insert(ObjectKey::new("shop", "other"));
        assert!(!pending.needs_compile(&routed));
        pending.services.insert(web);
        assert!(pending.needs_compile(&routed));
    }

    #[test]
    fn trimming_drops_the_applied_copy() {
        let mut secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "tls", "annotations": {LAST_APPLIED: "{\"data\": \"key\"}", "keep": "me"}},
            "type": TLS_SECRET_TYPE
        }))
        .unwrap();
        secret.trim();
        let annotations = secret.metadata.annotations.unwrap();
        assert!(!annotations.contains_key(LAST_APPLIED));
        assert_eq!(annotations["keep"], "me");
    }

    #[test]
    fn secret_decode_errors_are_not_logged_as_they_are() {
        let bad = serde_json::from_str::<Secret>(r#"{"data": "-----BEGIN PRIVATE KEY-----"}"#)
            .unwrap_err();
        let error = watcher::Error::WatchFailed(::kube::Error::SerdeError(bad));
        assert!(
            error.to_string().contains("PRIVATE"),
            "what this guards against"
        );
        assert!(!describe::<Secret>(&error).contains("PRIVATE"));
        assert!(describe::<Service>(&error).contains("PRIVATE"));
    }

    #[tokio::test]
    async fn changes_batch_until_taken() {
        let changes = Changes::default();
        changes.record(Change::None);
        assert!(changes.take().since.is_none());
        changes.record(Change::Endpoints {
            slice: ObjectKey::new("a", "b-1"),
            services: vec![ObjectKey::new("a", "b")],
        });
        let first = changes.wait().await;
        changes.record(Change::Ingress(ObjectKey::new("a", "web")));
        let pending = changes.take();
        assert_eq!(pending.since, Some(first));
        assert!(!pending.full);
        assert!(pending.needs_compile(&HashSet::new()));
        assert_eq!(pending.ingresses.len(), 1);
        assert_eq!(pending.slices.len(), 1);
        assert_eq!(pending.services.len(), 1);
        changes.record(Change::Compile);
        assert!(changes.take().full);
        assert!(changes.take().since.is_none());
    }
}
