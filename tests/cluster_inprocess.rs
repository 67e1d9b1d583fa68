//! Cluster mode's parts in process, with the kube client against the fake
//! API server: the reflectors and their snapshot, what a change costs, the
//! sync loop's latency, and leader election.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use arc_swap::ArcSwap;
use fake_apiserver::FakeApiServer;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use rust_strom::compile::CompileOptions;
use rust_strom::dashboard::reload;
use rust_strom::leader::{self, ElectionConfig, Leader};
use rust_strom::metrics::Metrics;
use rust_strom::model::RoutingTable;
use rust_strom::publish::Publisher;
use rust_strom::source::ObjectKey;
use rust_strom::source::kube::{WatchScope, Watchers};
use serde_json::{Value, json};
use tokio::time::Instant;
use tracing::instrument::WithSubscriber;

const DEADLINE: Duration = Duration::from_secs(10);

fn service(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
           "spec": {"ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})
}

fn slice(ns: &str, service: &str, port: u16) -> Value {
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"name": format!("{service}-0"), "namespace": ns,
                        "labels": {"kubernetes.io/service-name": service}},
           "addressType": "IPv4",
           "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
           "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}]})
}

fn ingress(ns: &str, name: &str, host: &str, service: &str) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
           "metadata": {"name": name, "namespace": ns},
           "spec": {"ingressClassName": "rust-strom", "rules": [{"host": host, "http": {"paths": [
               {"path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": service, "port": {"name": "http"}}}}]}}]}})
}

fn secret(ns: &str, name: &str, type_: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns},
           "type": type_, "data": {"tls.crt": "Y2VydA==", "tls.key": "a2V5"}})
}

async fn synced(server: &FakeApiServer, scope: &WatchScope) -> Watchers {
    let client = server.client().unwrap();
    let watchers = Watchers::spawn(&client, scope);
    tokio::time::timeout(DEADLINE, watchers.caches.wait_until_ready())
        .await
        .expect("caches ready in time")
        .unwrap();
    watchers
}

/// Runs the sync loop (20 ms window) on `watchers`, its log captured.
fn spawn_sync(
    publisher: Publisher,
    watchers: &Watchers,
) -> (
    tokio::task::JoinHandle<Result<(), rust_strom::sync::SyncError>>,
    Logs,
) {
    let (sync, logs, _reload) = spawn_sync_reloadable(publisher, watchers);
    (sync, logs)
}

/// [`spawn_sync`], with the dashboard's way to ask for a reload.
fn spawn_sync_reloadable(
    publisher: Publisher,
    watchers: &Watchers,
) -> (
    tokio::task::JoinHandle<Result<(), rust_strom::sync::SyncError>>,
    Logs,
    reload::Sender,
) {
    let (served, _served_rx) = tokio::sync::watch::channel(None);
    let (reload, reloads) = reload::channel();
    let logs = Logs::default();
    let sync = tokio::spawn(
        rust_strom::sync::run(
            publisher,
            watchers.caches.clone(),
            watchers.changes.clone(),
            Duration::from_millis(20),
            served,
            reloads,
        )
        .with_subscriber(logs.dispatch()),
    );
    (sync, logs, reload)
}

/// What a task logged, captured in memory: how a test sees that the sync
/// loop handled a batch that leaves no other trace.
#[derive(Clone, Default)]
struct Logs(Arc<parking_lot::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// A subscriber writing here, debug lines included.
    fn dispatch(&self) -> tracing::Dispatch {
        let logs = self.clone();
        tracing::Dispatch::new(
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::DEBUG)
                .with_ansi(false)
                .with_writer(move || logs.clone())
                .finish(),
        )
    }

    /// How many lines so far contain `text`.
    fn count(&self, text: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock())
            .matches(text)
            .count()
    }
}

/// The sync loop's line for a batch of endpoints no route uses.
const UNROUTED: &str = "endpoints of unrouted Services changed; no recompile";

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflectors_fill_the_snapshot_and_cache_only_tls_secrets() {
    // No BalancerPolicy CRD here: readiness must not wait for it.
    let server = FakeApiServer::start().await.unwrap();
    let store = server.store();
    store.create(&service("shop", "web")).unwrap();
    store.create(&slice("shop", "web", 8080)).unwrap();
    store
        .create(&ingress("shop", "web", "shop.local", "web"))
        .unwrap();
    store
        .create(&secret("shop", "web-tls", "kubernetes.io/tls"))
        .unwrap();
    store
        .create(&secret("shop", "db-password", "Opaque"))
        .unwrap();

    let watchers = synced(&server, &WatchScope::default()).await;
    let snapshot = watchers.caches.snapshot();
    assert_eq!(snapshot.ingresses.len(), 1);
    assert_eq!(snapshot.services.len(), 1);
    assert_eq!(snapshot.endpoint_slices.len(), 1);
    let secrets: Vec<String> = snapshot.secrets.keys().map(|k| k.to_string()).collect();
    assert_eq!(secrets, ["shop/web-tls"], "other Secrets are never cached");
    assert!(
        server
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/secrets"))
            .all(|r| r.query.contains("fieldSelector=type%3Dkubernetes.io%2Ftls")),
        "Secrets are only ever asked for by type"
    );

    // A new object reaches the cache and asks for a compile.
    store.create(&service("shop", "api")).unwrap();
    tokio::time::timeout(DEADLINE, watchers.changes.wait())
        .await
        .unwrap();
    eventually("the new Service is cached", || {
        watchers.caches.snapshot().services.len() == 2
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_namespaces_limit_what_is_cached() {
    let server = FakeApiServer::start().await.unwrap();
    for ns in ["a", "b", "c"] {
        server.store().create(&service(ns, "web")).unwrap();
        server
            .store()
            .create(&ingress(ns, "web", &format!("{ns}.local"), "web"))
            .unwrap();
    }
    let scope = WatchScope {
        namespaces: vec!["a".into(), "c".into()],
        ..WatchScope::default()
    };
    let watchers = synced(&server, &scope).await;
    let snapshot = watchers.caches.snapshot();
    let names: Vec<String> = snapshot.ingresses.keys().map(|k| k.to_string()).collect();
    assert_eq!(names, ["a/web", "c/web"]);
    assert_eq!(snapshot.services.len(), 2);
    assert!(
        !server
            .requests()
            .iter()
            .any(|r| r.path.contains("/namespaces/b/")),
        "namespace b is never asked for"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_writes_cost_no_compile_and_slices_name_their_service() {
    let server = FakeApiServer::start().await.unwrap();
    let store = server.store();
    store.create(&service("shop", "web")).unwrap();
    store.create(&slice("shop", "web", 8080)).unwrap();
    store
        .create(&ingress("shop", "web", "shop.local", "web"))
        .unwrap();
    let watchers = synced(&server, &WatchScope::default()).await;
    let _ = watchers.changes.take();

    // What the status writer does: only status changes.
    let mut ing = store
        .get("networking.k8s.io/v1", "Ingress", Some("shop"), "web")
        .unwrap();
    ing["status"] = json!({"loadBalancer": {"ingress": [{"ip": "10.0.0.9"}]}});
    store.replace(&ing).unwrap();
    let key = ObjectKey::new("shop", "web");
    eventually("the status reaches the cache", || {
        watchers
            .caches
            .ingresses
            .get(&key)
            .is_some_and(|i| i.status.is_some())
    })
    .await;
    // An endpoint change after it.
    store.apply(&slice("shop", "web", 9090)).unwrap();
    tokio::time::timeout(DEADLINE, watchers.changes.wait())
        .await
        .unwrap();
    let pending = watchers.changes.take();
    assert!(!pending.full, "neither change needs a full compile");
    assert_eq!(
        pending.services.into_iter().collect::<Vec<_>>(),
        [ObjectKey::new("shop", "web")]
    );
}

/// How long one EndpointSlice change takes to become the live table,
/// through the real reflectors and sync loop (printed, never asserted:
/// a shared 2-core machine makes times meaningless as a pass mark).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_latency_of_one_change() {
    let server = FakeApiServer::start().await.unwrap();
    let store = server.store();
    store.create(&service("shop", "web")).unwrap();
    store.create(&slice("shop", "web", 10_000)).unwrap();
    store
        .create(&ingress("shop", "web", "shop.local", "web"))
        .unwrap();
    let watchers = synced(&server, &WatchScope::default()).await;

    let metrics = Arc::new(Metrics::new().unwrap());
    let table = Arc::new(ArcSwap::from_pointee(RoutingTable::default()));
    let ready = Arc::new(AtomicBool::new(false));
    let options = CompileOptions {
        ingress_class: "rust-strom".into(),
        watch_without_class: false,
        allow_external_name: false,
        default_certificate: None,
    };
    let publisher = Publisher::new(table.clone(), metrics, ready.clone(), options);
    let (sync, logs) = spawn_sync(publisher, &watchers);
    eventually("the first table", || table.load().generation() == 1).await;

    let mut took = Vec::new();
    for i in 1..=30u16 {
        let generation = table.load().generation();
        let changed = Instant::now();
        store.apply(&slice("shop", "web", 10_000 + i)).unwrap();
        eventually("the change is live", || {
            table.load().generation() > generation
        })
        .await;
        took.push(changed.elapsed());
    }
    took.sort();
    eprintln!(
        "EndpointSlice change to live table: p50 {:?}, p90 {:?}, max {:?} (debounce 20ms)",
        took[took.len() / 2],
        took[took.len() * 9 / 10],
        took[took.len() - 1]
    );
    // An EndpointSlice of a Service no route uses: no new table, once the
    // loop has handled it.
    let generation = table.load().generation();
    let handled = logs.count(UNROUTED);
    store.create(&slice("shop", "unused", 7000)).unwrap();
    eventually("the loop handled the change", || {
        logs.count(UNROUTED) > handled
    })
    .await;
    assert_eq!(table.load().generation(), generation);
    sync.abort();
}

/// The dashboard's reload lists every kind again from the API server and
/// compiles, even with nothing changed, and answers what the table holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_relists_from_the_api_server_and_answers() {
    let server = FakeApiServer::start().await.unwrap();
    let store = server.store();
    store.create(&service("shop", "web")).unwrap();
    store.create(&slice("shop", "web", 10_000)).unwrap();
    store
        .create(&ingress("shop", "web", "shop.local", "web"))
        .unwrap();
    let watchers = synced(&server, &WatchScope::default()).await;
    let table = Arc::new(ArcSwap::from_pointee(RoutingTable::default()));
    let options = CompileOptions {
        ingress_class: "rust-strom".into(),
        watch_without_class: false,
        allow_external_name: false,
        default_certificate: None,
    };
    let publisher = Publisher::new(
        table.clone(),
        Arc::new(Metrics::new().unwrap()),
        Arc::new(AtomicBool::new(false)),
        options,
    );
    let (sync, _logs, reload) = spawn_sync_reloadable(publisher, &watchers);
    eventually("the first table", || table.load().generation() == 1).await;

    server.clear_requests();
    let (done, answer) = tokio::sync::oneshot::channel();
    reload.send(reload::Request { done }).await.unwrap();
    let outcome = tokio::time::timeout(DEADLINE, answer)
        .await
        .expect("an answer in time")
        .unwrap();
    assert_eq!(outcome.source, "cluster");
    assert_eq!(outcome.generation, 2);
    assert_eq!(outcome.routes, 1);
    assert_eq!(outcome.rejected, 0);
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    assert_eq!(table.load().generation(), 2);
    let lists: BTreeSet<String> = server
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && !r.query.contains("watch=true"))
        .filter_map(|r| r.path.rsplit('/').next().map(str::to_string))
        .collect();
    for kind in [
        "ingresses",
        "ingressclasses",
        "services",
        "endpointslices",
        "secrets",
        "balancerpolicies",
    ] {
        assert!(lists.contains(kind), "{kind} not listed again: {lists:?}");
    }
    sync.abort();
}

/// The sync loop keeps the snapshot it compiled and reads only what
/// changed into it: Ingress edits, deletions and creations reach the table,
/// and so do the endpoints of a Service no route used while they changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sync_loop_follows_ingress_and_slice_changes() {
    let server = FakeApiServer::start().await.unwrap();
    let store = server.store();
    for name in ["web", "later"] {
        store.create(&service("shop", name)).unwrap();
    }
    store.create(&slice("shop", "web", 10_000)).unwrap();
    store
        .create(&ingress("shop", "a", "a.local", "web"))
        .unwrap();
    store
        .create(&ingress("shop", "b", "b.local", "web"))
        .unwrap();
    let watchers = synced(&server, &WatchScope::default()).await;

    let metrics = Arc::new(Metrics::new().unwrap());
    let table = Arc::new(ArcSwap::from_pointee(RoutingTable::default()));
    let options = CompileOptions {
        ingress_class: "rust-strom".into(),
        watch_without_class: false,
        allow_external_name: false,
        default_certificate: None,
    };
    let publisher = Publisher::new(
        table.clone(),
        metrics,
        Arc::new(AtomicBool::new(false)),
        options,
    );
    let (sync, logs) = spawn_sync(publisher, &watchers);
    let routes = |host: &str| table.load().lookup(host, "/").is_some();
    let port = |host: &str| {
        let live = table.load();
        let route = live.lookup(host, "/")?;
        route.backend.ready.first().map(|e| e.to_string())
    };
    eventually("the first table", || routes("a.local") && routes("b.local")).await;

    store
        .apply(&ingress("shop", "a", "a2.local", "web"))
        .unwrap();
    store
        .delete("networking.k8s.io/v1", "Ingress", Some("shop"), "b")
        .unwrap();
    eventually("the edit and the deletion are live", || {
        routes("a2.local") && !routes("a.local") && !routes("b.local")
    })
    .await;

    // Endpoints of a Service no route uses yet: no compile, but kept. Each
    // change is handled before the next is made, so the Ingress comes in a
    // batch of its own.
    let generation = table.load().generation();
    for port in [7000, 7001] {
        let handled = logs.count(UNROUTED);
        store.apply(&slice("shop", "later", port)).unwrap();
        eventually("the loop handled the change", || {
            logs.count(UNROUTED) > handled
        })
        .await;
    }
    assert_eq!(table.load().generation(), generation, "no compile");
    store
        .create(&ingress("shop", "c", "c.local", "later"))
        .unwrap();
    eventually("the new Ingress routes to the latest endpoints", || {
        port("c.local").as_deref() == Some("127.0.0.1:7001")
    })
    .await;
    assert!(routes("a2.local"));
    sync.abort();
}

fn election(name: &str, id: &str) -> ElectionConfig {
    ElectionConfig {
        lease_name: name.into(),
        identity: id.into(),
        lease_duration: Duration::from_secs(2),
        renew_deadline: Duration::from_millis(1500),
        retry_period: Duration::from_millis(200),
    }
}

fn holder(server: &FakeApiServer, name: &str) -> Option<String> {
    server
        .store()
        .get_as::<Lease>(Some("default"), name)
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_at_a_time_and_a_takeover_after_a_crash() {
    let server = FakeApiServer::start().await.unwrap();
    let api = || Api::<Lease>::namespaced(server.client().unwrap(), "default");
    let (_stop_a, shutdown_a) = rust_strom::shutdown::on_signals();
    let (_stop_b, shutdown_b) = rust_strom::shutdown::on_signals();
    let (a, task_a) = leader::spawn(api(), election("lead", "a"), shutdown_a);
    let (b, task_b) = leader::spawn(api(), election("lead", "b"), shutdown_b);
    eventually("someone leads", || a.is_leader() || b.is_leader()).await;
    // Never two at once, over several renewals.
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        assert!(!(a.is_leader() && b.is_leader()), "two leaders");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (first, first_task, second, second_id): (Leader, _, Leader, _) = if a.is_leader() {
        (a, task_a, b, "b")
    } else {
        (b, task_b, a, "a")
    };
    assert_ne!(holder(&server, "lead").as_deref(), Some(second_id));

    // A crash: the task ends without giving the Lease up.
    first_task.abort();
    eventually("the crashed leader stops by its own clock", || {
        !first.is_leader()
    })
    .await;
    eventually("the other takes over after the lease runs out", || {
        second.is_leader()
    })
    .await;
    eventually("the Lease names it", || {
        holder(&server, "lead").as_deref() == Some(second_id)
    })
    .await;
    let lease: Lease = server.store().get_as(Some("default"), "lead").unwrap();
    assert_eq!(lease.spec.unwrap().lease_transitions, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_the_lease_up() {
    let server = FakeApiServer::start().await.unwrap();
    let api = Api::<Lease>::namespaced(server.client().unwrap(), "default");
    let (stop, shutdown) = rust_strom::shutdown::on_signals();
    let (leader, task) = leader::spawn(api, election("bye", "a"), shutdown);
    eventually("it leads", || leader.is_leader()).await;
    stop.send(true).unwrap();
    tokio::time::timeout(DEADLINE, task).await.unwrap().unwrap();
    assert!(!leader.is_leader(), "no writes once shutdown began");
    assert_eq!(
        holder(&server, "bye"),
        None,
        "released for a peer to take now"
    );
}
