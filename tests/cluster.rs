//! Cluster mode end to end: the real binary against the project's fake
//! Kubernetes API server, with echo backends on 127.0.0.1.
//!
//! Routing like standalone mode, live EndpointSlice changes, readiness only
//! after every kind's initial list, Ingress status and Events, BalancerPolicy
//! status, an API server restart with expired history (a relist dropping
//! what was deleted meanwhile), a slow API server, `--secret-label-selector`,
//! leader election between two replicas (a leader cut off from its Lease
//! stops writing; a Lease given up on SIGTERM is taken at once), RBAC
//! coverage of every call, and the request-path annotations (the Secrets
//! and ConfigMaps they name watched by name; auth, limits, CORS, error
//! pages, compression) as in standalone mode.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fake_apiserver::{FakeApiServer, RecordedRequest, ResourceType};
use http::{Request, StatusCode};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::networking::v1::Ingress;
use serde::Deserialize;
use serde_json::Value;
use support::*;
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Room for the watch, the debounce and the compile on a busy machine.
const LIVE: Duration = Duration::from_secs(10);

/// A fake API server and a kubeconfig pointing at it.
struct Cluster {
    server: FakeApiServer,
    dir: TempDir,
}

impl Cluster {
    async fn start() -> Cluster {
        let server = FakeApiServer::start().await.unwrap();
        server.register(
            ResourceType::new(
                "ruststrom.io",
                "v1alpha1",
                "balancerpolicies",
                "BalancerPolicy",
                true,
            )
            .with_status(),
        );
        let dir = tempfile::tempdir().unwrap();
        server
            .write_kubeconfig(dir.path().join("kubeconfig"))
            .unwrap();
        Cluster { server, dir }
    }

    /// The binary in cluster mode against this server, plus `extra` flags.
    async fn proxy(&self, extra: &[&str]) -> Proxy {
        self.proxy_env(extra, &[]).await
    }

    /// [`Self::proxy`] with more environment variables.
    async fn proxy_env(&self, extra: &[&str], env: &[(&str, &str)]) -> Proxy {
        let mut args: Vec<String> = vec![
            "--kubeconfig".into(),
            self.dir.path().join("kubeconfig").display().to_string(),
            "--http-addr".into(),
            "127.0.0.1:0".into(),
            "--metrics-addr".into(),
            "127.0.0.1:0".into(),
            "--workers".into(),
            "2".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Proxy::start_args_env(&args, env).await
    }

    /// Creates or replaces every object in a multi-document YAML text.
    fn apply(&self, yaml: &str) {
        for doc in serde_norway::Deserializer::from_str(yaml) {
            let value = Value::deserialize(doc).unwrap();
            if !value.is_null() {
                self.server.store().apply(&value).unwrap();
            }
        }
    }

    fn ingress(&self, name: &str) -> Ingress {
        self.server
            .store()
            .get_as(Some("default"), name)
            .unwrap_or_else(|| panic!("no Ingress {name}"))
    }

    /// The IPs in an Ingress's `status.loadBalancer.ingress`.
    fn status_ips(&self, name: &str) -> Vec<String> {
        self.ingress(name)
            .status
            .and_then(|s| s.load_balancer)
            .and_then(|lb| lb.ingress)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|a| a.ip)
            .collect()
    }

    /// The status writes sent for one Ingress.
    fn status_patches(&self, name: &str) -> usize {
        let path = format!("/namespaces/default/ingresses/{name}/status");
        self.server
            .requests()
            .iter()
            .filter(|r| r.method == "PATCH" && r.path.ends_with(&path))
            .count()
    }

    /// Warning Events about one Ingress.
    fn warnings(&self, name: &str) -> Vec<Value> {
        self.server
            .store()
            .list("events.k8s.io/v1", "Event", Some("default"))
            .into_iter()
            .filter(|e| e["regarding"]["name"] == name && e["type"] == "Warning")
            .collect()
    }
}

/// An Ingress of our class (`support::ingress` names none, which cluster
/// mode does not serve by default).
fn classed(yaml: String, class: &str) -> String {
    yaml.replacen(
        "spec:\n",
        &format!("spec:\n  ingressClassName: {class}\n"),
        1,
    )
}

fn web_ingress(host: &str, service: &str) -> String {
    classed(
        ingress("default", "web", host, &[("/", "Prefix", service)]),
        "rust-strom",
    )
}

async fn ready(proxy: &Proxy) -> bool {
    proxy.admin("/readyz").await.status == StatusCode::OK
}

async fn wait_ready(proxy: &Proxy) {
    wait_until(LIVE, "/readyz 200", || ready(proxy)).await;
}

/// Sends requests for `host` until stopped; returns (answered, failures).
fn keep_requesting(
    port: u16,
    host: &'static str,
    stop: Arc<AtomicBool>,
) -> JoinHandle<(usize, Vec<StatusCode>)> {
    tokio::spawn(async move {
        let (mut ok, mut failed) = (0, Vec::new());
        while !stop.load(Ordering::Relaxed) {
            let resp = get(port, host, "/").await;
            if resp.status == StatusCode::OK {
                ok += 1;
            } else {
                failed.push(resp.status);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (ok, failed)
    })
}

/// The objects of the routing test, as one YAML text both modes read.
fn shop(one: std::net::SocketAddr, two: std::net::SocketAddr) -> String {
    docs(&[
        backend_objects("default", "one", &[one]),
        backend_objects("default", "two", &[two]),
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: rust-strom}\n\
         spec: {controller: ruststrom.io/ingress-controller}\n"
            .to_string(),
        classed(
            ingress(
                "default",
                "shop",
                "shop.local",
                &[
                    ("/", "Prefix", "one"),
                    ("/api", "Prefix", "two"),
                    ("/exact", "Exact", "two"),
                ],
            ),
            "rust-strom",
        ),
        classed(
            ingress("default", "wild", "*.wild.local", &[("/", "Prefix", "two")]),
            "rust-strom",
        ),
        classed(default_backend("default", "fallback", "one"), "rust-strom"),
        // Another controller's: served by neither mode.
        classed(
            ingress(
                "default",
                "theirs",
                "theirs.local",
                &[("/", "Prefix", "one")],
            ),
            "nginx",
        ),
    ])
}

/// A cluster serving Ingress `web` (`app.local`) to the echo backend `one`.
async fn web_cluster() -> Cluster {
    let one = echo("one").await;
    let cluster = Cluster::start().await;
    cluster.apply(&docs(&[
        backend_objects("default", "one", &[one]),
        web_ingress("app.local", "one"),
    ]));
    cluster
}

/// Status address 10.0.0.9 and an election with this Lease duration and
/// renew deadline, retried every 250 ms.
fn election_flags(lease: &'static str, renew: &'static str) -> [&'static str; 8] {
    [
        "--publish-status-address",
        "10.0.0.9",
        "--election-lease-duration",
        lease,
        "--election-renew-deadline",
        renew,
        "--election-retry-period",
        "250ms",
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_like_standalone_mode_and_applies_endpoint_changes_live() {
    let one = echo("one").await;
    let two = echo("two").await;
    let three = echo("three").await;
    let objects = shop(one, two);

    let cluster = Cluster::start().await;
    cluster.apply(&objects);
    let proxy = cluster.proxy(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "shop.yaml", &objects);
    let standalone = Proxy::start(dir.path(), &["--watch-ingress-without-class=false"]).await;
    wait_ready(&proxy).await;

    let requests = [
        ("shop.local", "/"),
        ("shop.local", "/api/v1"),
        ("shop.local", "/apix"),
        ("shop.local", "/exact"),
        ("shop.local", "/exact/more"),
        ("a.wild.local", "/"),
        ("a.b.wild.local", "/"),
        ("theirs.local", "/"),
        ("nowhere.local", "/x"),
    ];
    for (host, path) in requests {
        let cluster_resp = proxy.get(host, path).await;
        let file_resp = standalone.get(host, path).await;
        assert_eq!(
            (cluster_resp.status, cluster_resp.backend()),
            (file_resp.status, file_resp.backend()),
            "{host}{path}: cluster mode and standalone mode differ"
        );
    }
    assert!(routes_to(proxy.http_port, "shop.local", "/api", "two").await);

    // The EndpointSlice of `one` now points at backend three.
    let changed = Instant::now();
    cluster.apply(&slice("default", "one-0", "one", three.port()));
    wait_until(LIVE, "the EndpointSlice change is live", || {
        routes_to(proxy.http_port, "shop.local", "/", "three")
    })
    .await;
    eprintln!(
        "EndpointSlice change live after {:?} (polled)",
        changed.elapsed()
    );
    let synced = proxy
        .metric("config_sync_duration_seconds_count")
        .await
        .unwrap();
    assert!(synced >= 2.0, "first table and the change: {synced}");
    // An endpoint-only change swaps fresh backends into the live table
    // instead of recompiling everything.
    let stderr = proxy.stderr().await;
    assert!(
        stderr.contains("endpoints refreshed without a recompile"),
        "{stderr}"
    );
    // Untouched routes keep working.
    assert!(routes_to(proxy.http_port, "shop.local", "/api", "two").await);
}

/// TLS from the API server: the Secret an Ingress names is served by SNI,
/// and a renewed Secret (as cert-manager writes it) reaches the next
/// handshake without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_secrets_from_the_api_server_are_served_and_rotated() {
    use support::tls::{gen_cert, https_get, presented, tls_ingress, tls_secret};

    let web = echo("secure").await;
    let first = gen_cert(&["secure.local"]);
    let cluster = Cluster::start().await;
    cluster.apply(&docs(&[
        classed(
            tls_ingress(
                "default",
                "secure",
                &["secure.local"],
                "web",
                &[],
                &[(&["secure.local"], "secure-tls")],
            ),
            "rust-strom",
        ),
        backend_objects("default", "web", &[web]),
        tls_secret("default", "secure-tls", &first),
    ]));
    let proxy = cluster.proxy(&[]).await;
    wait_ready(&proxy).await;
    let port = proxy.https_port().await;

    assert_eq!(presented(port, Some("secure.local")).await, first.der);
    let resp = https_get(port, "secure.local", "/").await;
    assert_eq!(
        (resp.status, resp.backend()),
        (StatusCode::OK, Some("secure"))
    );
    // Plain HTTP to a TLS host is redirected.
    let plain = proxy.get("secure.local", "/x").await;
    assert_eq!(plain.status, StatusCode::PERMANENT_REDIRECT);

    let renewed = gen_cert(&["secure.local"]);
    cluster.apply(&tls_secret("default", "secure-tls", &renewed));
    wait_until(LIVE, "the renewed certificate is served", || async {
        presented(port, Some("secure.local")).await == renewed.der
    })
    .await;
}

/// Readiness waits for every kind: with only the EndpointSlice list held
/// back, every other kind listed (its watch started) is not enough.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_and_not_routing_until_every_kind_is_listed() {
    let cluster = web_cluster().await;
    cluster.server.hold("endpointslices");
    let proxy = cluster.proxy(&[]).await;

    // A reflector watches once its list is done.
    wait_until(LIVE, "every other kind listed", || async {
        let requests = cluster.server.requests();
        let watching = |plural: &str| {
            requests
                .iter()
                .any(|r| r.path.ends_with(&format!("/{plural}")) && r.query.contains("watch=true"))
        };
        [
            "ingresses",
            "ingressclasses",
            "services",
            "secrets",
            "balancerpolicies",
        ]
        .iter()
        .all(|p| watching(p))
            && requests.iter().any(|r| r.path.ends_with("/endpointslices"))
    })
    .await;
    let resp = proxy.admin("/readyz").await;
    assert_eq!(
        resp.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        resp.body
    );
    assert_eq!(
        proxy.get("app.local", "/").await.status,
        StatusCode::NOT_FOUND,
        "nothing is routed before the first table"
    );

    cluster.server.resume("endpointslices");
    wait_ready(&proxy).await;
    assert!(routes_to(proxy.http_port, "app.local", "/", "one").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_status_is_written_once_and_cleared_when_no_longer_served() {
    let cluster = web_cluster().await;
    let proxy = cluster
        .proxy(&["--publish-status-address", "10.0.0.9"])
        .await;
    wait_until(LIVE, "status 10.0.0.9 written", || async {
        cluster.status_ips("web") == ["10.0.0.9"]
    })
    .await;

    // Unrelated changes recompile, but the status is not written again.
    // An edit as `kubectl apply` makes it: the spec changes, the status
    // stays (a direct store write would replace the status too).
    let mut edited = cluster.ingress("web");
    let rules = edited.spec.as_mut().unwrap().rules.as_mut().unwrap();
    rules[0].host = Some("app2.local".into());
    cluster.server.store().replace(&edited).unwrap();
    wait_until(LIVE, "the edit is live", || {
        routes_to(proxy.http_port, "app2.local", "/", "one")
    })
    .await;
    // The writer runs after each publish, one table after the other: once
    // the status of an Ingress added after the edit is written, the edited
    // table has been through it too.
    cluster.apply(&classed(
        ingress("default", "next", "next.local", &[("/", "Prefix", "one")]),
        "rust-strom",
    ));
    wait_until(LIVE, "status of the next Ingress written", || async {
        cluster.status_ips("next") == ["10.0.0.9"]
    })
    .await;
    assert_eq!(cluster.status_patches("web"), 1, "one write for one value");

    // Another class: no longer ours, so our address goes.
    let mut moved = cluster.ingress("web");
    moved.spec.as_mut().unwrap().ingress_class_name = Some("nginx".into());
    cluster.server.store().replace(&moved).unwrap();
    wait_until(LIVE, "no longer routed", || async {
        proxy.get("app2.local", "/").await.status == StatusCode::NOT_FOUND
    })
    .await;
    wait_until(LIVE, "status cleared", || async {
        cluster.status_ips("web").is_empty()
    })
    .await;
    assert_eq!(cluster.status_patches("web"), 2, "written, then cleared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_restart_with_expired_history_keeps_traffic_flowing() {
    let one = echo("one").await;
    let two = echo("two").await;
    let cluster = Cluster::start().await;
    cluster.apply(&docs(&[
        backend_objects("default", "one", &[one]),
        web_ingress("app.local", "one"),
    ]));
    let proxy = cluster.proxy(&[]).await;
    wait_ready(&proxy).await;
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = keep_requesting(proxy.http_port, "app.local", stop.clone());

    // Restart: every resourceVersion is too old and every watch ends, so
    // each reflector gets 410 Gone and lists again.
    cluster.server.expire_history();
    cluster.server.drop_watches();
    // Changes made while the watches are down.
    cluster.apply(&docs(&[
        backend_objects("default", "two", &[two]),
        classed(
            ingress("default", "new", "new.local", &[("/", "Prefix", "two")]),
            "rust-strom",
        ),
    ]));
    wait_until(LIVE, "changes made during the restart are live", || {
        routes_to(proxy.http_port, "new.local", "/", "two")
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = traffic.await.unwrap();
    assert!(ok > 0);
    assert!(
        failed.is_empty(),
        "requests failed during the restart: {failed:?}"
    );
    let relisted = cluster
        .server
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/ingresses") && !r.query.contains("watch=true"))
        .count();
    assert!(relisted >= 2, "Ingresses listed at start and after the 410");
}

/// A relist after `410 Gone` swaps the new list in whole: what was deleted
/// while the watches were down goes too, not only what was added stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relist_after_410_drops_objects_deleted_during_the_outage() {
    let one = echo("one").await;
    let two = echo("two").await;
    let cluster = Cluster::start().await;
    cluster.apply(&docs(&[
        backend_objects("default", "one", &[one]),
        backend_objects("default", "two", &[two]),
        web_ingress("app.local", "one"),
        classed(
            ingress("default", "gone", "gone.local", &[("/", "Prefix", "two")]),
            "rust-strom",
        ),
    ]));
    let proxy = cluster.proxy(&[]).await;
    wait_ready(&proxy).await;
    assert!(routes_to(proxy.http_port, "gone.local", "/", "two").await);

    // Every watch restart waits until the deletions are made, so they can
    // only arrive through the relist that follows the 410.
    let kinds = [
        "ingresses",
        "ingressclasses",
        "services",
        "endpointslices",
        "secrets",
        "balancerpolicies",
    ];
    for kind in kinds {
        cluster.server.hold(kind);
    }
    cluster.server.expire_history();
    cluster.server.drop_watches();
    let store = cluster.server.store();
    store
        .delete("networking.k8s.io/v1", "Ingress", Some("default"), "gone")
        .unwrap();
    store
        .delete(
            "discovery.k8s.io/v1",
            "EndpointSlice",
            Some("default"),
            "one-0",
        )
        .unwrap();
    for kind in kinds {
        cluster.server.resume(kind);
    }

    wait_until(LIVE, "the deleted Ingress is no longer routed", || async {
        proxy.get("gone.local", "/").await.status == StatusCode::NOT_FOUND
    })
    .await;
    wait_until(
        LIVE,
        "the deleted EndpointSlice is no longer used",
        || async { proxy.get("app.local", "/").await.status == StatusCode::SERVICE_UNAVAILABLE },
    )
    .await;
    let relisted = cluster
        .server
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/ingresses") && !r.query.contains("watch=true"))
        .count();
    assert!(relisted >= 2, "Ingresses listed at start and after the 410");
    assert!(ready(&proxy).await, "still ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_api_server_does_not_stop_traffic() {
    let one = echo("one").await;
    let two = echo("two").await;
    let cluster = Cluster::start().await;
    cluster.apply(&docs(&[
        backend_objects("default", "one", &[one]),
        web_ingress("app.local", "one"),
    ]));
    let proxy = cluster.proxy(&[]).await;
    wait_ready(&proxy).await;
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = keep_requesting(proxy.http_port, "app.local", stop.clone());

    // Every watch must start again, each start taking a second.
    cluster.server.set_delay(Duration::from_secs(1));
    cluster.server.drop_watches();
    cluster.apply(&slice("default", "one-0", "one", two.port()));
    wait_until(LIVE, "the change arrives through the slow server", || {
        routes_to(proxy.http_port, "app.local", "/", "two")
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = traffic.await.unwrap();
    assert!(ok > 0);
    assert!(failed.is_empty(), "requests failed: {failed:?}");
    assert!(ready(&proxy).await, "still ready");
}

/// A conflict goes to the older Ingress even when the younger one sorts
/// first by name; each rejection gets one Warning Event (`Conflict` for a
/// rule an older Ingress holds, `Rejected` for anything else).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oldest_ingress_wins_and_each_rejection_gets_one_warning_event() {
    let one = echo("one").await;
    let two = echo("two").await;
    let cluster = Cluster::start().await;
    cluster.apply(&docs(&[
        backend_objects("default", "one", &[one]),
        backend_objects("default", "two", &[two]),
        web_ingress("app.local", "one"),
    ]));
    // Status is written so that the writer's progress can be seen.
    let proxy = cluster
        .proxy(&["--publish-status-address", "10.0.0.9"])
        .await;
    wait_ready(&proxy).await;

    // Creation times count whole seconds: the younger Ingress is created
    // in a later second than `web`, and sorts before it by name.
    let created = |name: &str| {
        cluster
            .ingress(name)
            .metadata
            .creation_timestamp
            .unwrap()
            .0
            .as_second()
    };
    let web_created = created("web");
    wait_until(LIVE, "the clock moved past web's second", || async {
        k8s_openapi::jiff::Timestamp::now().as_second() > web_created
    })
    .await;
    // The same host and path as the older `web`, to another Service.
    cluster.apply(&classed(
        ingress(
            "default",
            "aa-young",
            "app.local",
            &[("/", "Prefix", "two")],
        ),
        "rust-strom",
    ));
    assert!(created("aa-young") > web_created);
    wait_until(LIVE, "a Warning Event on aa-young", || async {
        !cluster.warnings("aa-young").is_empty()
    })
    .await;
    let event = &cluster.warnings("aa-young")[0];
    assert_eq!(event["reason"], "Conflict", "{event}");
    assert!(
        event["note"]
            .as_str()
            .unwrap()
            .contains("conflicts with the older Ingress default/web"),
        "{event}"
    );
    assert!(routes_to(proxy.http_port, "app.local", "/", "one").await);
    assert!(cluster.warnings("web").is_empty());

    // Any other rejection: a route to a Service that does not exist.
    cluster.apply(&classed(
        ingress(
            "default",
            "broken",
            "broken.local",
            &[("/", "Prefix", "missing")],
        ),
        "rust-strom",
    ));
    wait_until(LIVE, "a Warning Event on broken", || async {
        !cluster.warnings("broken").is_empty()
    })
    .await;
    let event = &cluster.warnings("broken")[0];
    assert_eq!(event["reason"], "Rejected", "{event}");
    // aa-young (Conflict) and broken (Rejected) are left out of the table.
    assert_eq!(
        proxy.metric("routing_table_rejected_objects").await,
        Some(2.0)
    );
    assert!(
        event["note"].as_str().unwrap().contains("missing"),
        "{event}"
    );

    // More compiles with the problems still there (one touching the
    // conflicting host): no second Event.
    cluster.apply(&web_ingress("app.local", "one").replace("name: web", "name: web2"));
    for name in ["other", "other2"] {
        cluster.apply(&classed(
            ingress(
                "default",
                name,
                &format!("{name}.local"),
                &[("/", "Prefix", "two")],
            ),
            "rust-strom",
        ));
        // The writer handles one table after the other, Events after
        // status: once `other2`'s status is written, the table with
        // `other` (and every earlier one) was fully handled.
        wait_until(LIVE, "status of the next Ingress written", || async {
            cluster.status_ips(name) == ["10.0.0.9"]
        })
        .await;
    }
    for name in ["aa-young", "broken"] {
        let events = cluster.warnings(name);
        assert_eq!(events.len(), 1, "{events:?}");
        // A repeated Event would be the same object with a series count.
        assert!(events[0]["series"].is_null(), "{events:?}");
    }
    let stderr = proxy.stderr().await;
    assert!(stderr.contains("name=aa-young"), "logged with its name");
    assert!(stderr.contains("name=broken"), "logged with its name");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_balancer_policy_gets_accepted_and_a_second_one_conflicted() {
    let one = echo("one").await;
    let cluster = Cluster::start().await;
    let policy = |name: &str| {
        format!(
            "apiVersion: ruststrom.io/v1alpha1\nkind: BalancerPolicy\nmetadata: {{name: {name}, namespace: default}}\n\
             spec:\n  targetRef: {{kind: Service, name: one}}\n  loadBalancer: {{algorithm: LeastConnection}}\n"
        )
    };
    cluster.apply(&docs(&[
        backend_objects("default", "one", &[one]),
        web_ingress("app.local", "one"),
        policy("first"),
    ]));
    let proxy = cluster.proxy(&[]).await;
    wait_ready(&proxy).await;
    let condition = |name: &str, kind: &str| -> Option<(String, String, i64)> {
        let policy = cluster.server.store().get(
            "ruststrom.io/v1alpha1",
            "BalancerPolicy",
            Some("default"),
            name,
        )?;
        let conditions = policy["status"]["conditions"].as_array()?.clone();
        let c = conditions.iter().find(|c| c["type"] == kind)?;
        Some((
            c["status"].as_str()?.to_string(),
            c["reason"].as_str()?.to_string(),
            c["observedGeneration"].as_i64()?,
        ))
    };
    wait_until(LIVE, "first Accepted", || async {
        condition("first", "Accepted") == Some(("True".into(), "Accepted".into(), 1))
    })
    .await;
    assert_eq!(
        condition("first", "ResolvedRefs").map(|c| c.0),
        Some("True".into())
    );

    cluster.apply(&policy("second"));
    wait_until(LIVE, "second Conflicted", || async {
        condition("second", "Conflicted").map(|c| c.0) == Some("True".into())
    })
    .await;
    assert_eq!(
        condition("second", "Accepted").map(|c| (c.0, c.1)),
        Some(("False".into(), "Conflicted".into()))
    );
    assert!(routes_to(proxy.http_port, "app.local", "/", "one").await);
}

/// `identity=...` from the election's start-up log line.
async fn identity(proxy: &Proxy) -> String {
    let deadline = Instant::now() + LIVE;
    loop {
        let stderr = proxy.stderr().await;
        let found = stderr
            .lines()
            .find(|l| l.contains("leader election"))
            .and_then(|l| l.split("identity=").nth(1))
            .and_then(|rest| rest.split_whitespace().next());
        if let Some(id) = found {
            return id.to_string();
        }
        assert!(Instant::now() < deadline, "no identity logged:\n{stderr}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_writes_status_and_a_peer_takes_over() {
    let cluster = web_cluster().await;
    let flags = election_flags("3s", "2s");
    let a = cluster.proxy(&flags).await;
    let b = cluster.proxy(&flags).await;
    let (id_a, id_b) = (identity(&a).await, identity(&b).await);
    assert_ne!(id_a, id_b);
    wait_ready(&a).await;
    wait_ready(&b).await;
    // Every replica serves traffic.
    assert!(routes_to(a.http_port, "app.local", "/", "one").await);
    assert!(routes_to(b.http_port, "app.local", "/", "one").await);

    wait_until(LIVE, "status written", || async {
        cluster.status_ips("web") == ["10.0.0.9"]
    })
    .await;
    let holder = || {
        cluster
            .server
            .store()
            .get_as::<Lease>(Some("default"), "rust-strom-leader")
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
    };
    let leader_id = holder().expect("a holder");
    let (leader, follower, follower_id) = if leader_id == id_a {
        (a, b, id_b)
    } else {
        assert_eq!(leader_id, id_b);
        (b, a, id_a)
    };
    assert!(leader.stderr().await.contains("status updated"));
    assert!(
        !follower.stderr().await.contains("status updated"),
        "only the leader writes"
    );
    assert_eq!(leader.metric("leader_is_leader").await, Some(1.0));
    assert_eq!(follower.metric("leader_is_leader").await, Some(0.0));

    // The leader dies without giving the Lease up (SIGKILL).
    drop(leader);
    cluster.apply(&classed(
        ingress("default", "later", "later.local", &[("/", "Prefix", "one")]),
        "rust-strom",
    ));
    wait_until(LIVE, "the follower takes the Lease", || async {
        holder().as_deref() == Some(follower_id.as_str())
    })
    .await;
    wait_until(LIVE, "the new leader writes status", || async {
        cluster.status_ips("later") == ["10.0.0.9"]
    })
    .await;
    assert!(follower.stderr().await.contains("became the leader"));
    assert!(routes_to(follower.http_port, "later.local", "/", "one").await);
    wait_until(LIVE, "the new leader's leader_is_leader is 1", || async {
        follower.metric("leader_is_leader").await == Some(1.0)
    })
    .await;
}

/// The Lease holder's identity as the API server has it.
fn lease_holder(cluster: &Cluster) -> Option<String> {
    cluster
        .server
        .store()
        .get_as::<Lease>(Some("default"), "rust-strom-leader")
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

/// A live leader whose Lease requests fail (`cut` = fail) or hang (`cut`
/// = hold) stops writing status by itself, though status writes would
/// still go through, and writes again once it holds the Lease again.
async fn a_leader_cut_off_from_its_lease_stops_writing(cut: fn(&FakeApiServer)) {
    let cluster = web_cluster().await;
    let proxy = cluster
        .proxy(&[
            "--publish-status-address",
            "10.0.0.9",
            "--election-lease-duration",
            "3s",
            "--election-renew-deadline",
            "2s",
            "--election-retry-period",
            "250ms",
        ])
        .await;
    wait_until(LIVE, "status written by the leader", || async {
        cluster.status_ips("web") == ["10.0.0.9"]
    })
    .await;

    cut(&cluster.server);
    wait_until(LIVE, "the leader steps down", || async {
        proxy.stderr().await.contains("stopped being the leader")
    })
    .await;
    cluster.apply(&classed(
        ingress("default", "later", "later.local", &[("/", "Prefix", "one")]),
        "rust-strom",
    ));
    wait_until(LIVE, "the new Ingress is routed", || {
        routes_to(proxy.http_port, "later.local", "/", "one")
    })
    .await;
    // The writer wakes on every table; two more failed election attempts
    // give it ample time to (wrongly) write.
    let failed = |text: &str| text.matches("leader election attempt failed").count();
    let before = failed(&proxy.stderr().await);
    wait_until(LIVE, "two more failed election attempts", || async {
        failed(&proxy.stderr().await) >= before + 2
    })
    .await;
    assert_eq!(
        cluster.status_patches("later"),
        0,
        "a leader that cannot renew wrote status"
    );

    // Back: it takes the Lease again and catches up.
    cluster.server.resume("leases");
    wait_until(LIVE, "status written once leading again", || async {
        cluster.status_ips("later") == ["10.0.0.9"]
    })
    .await;
    assert_eq!(proxy.stderr().await.matches("became the leader").count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lease_requests_fail_stops_writing() {
    a_leader_cut_off_from_its_lease_stops_writing(|server| server.fail("leases")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lease_requests_hang_stops_writing() {
    a_leader_cut_off_from_its_lease_stops_writing(|server| server.hold("leases")).await;
}

/// A leader stopped with SIGTERM gives the Lease up: its peer takes over
/// long before the Lease (20 s) could run out. Identities come from
/// `$POD_NAME`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_takes_over_at_once_from_a_leader_stopped_with_sigterm() {
    let cluster = web_cluster().await;
    let flags = election_flags("20s", "15s");
    let a = cluster
        .proxy_env(&flags, &[("POD_NAME", "rust-strom-a")])
        .await;
    let b = cluster
        .proxy_env(&flags, &[("POD_NAME", "rust-strom-b")])
        .await;
    assert_eq!(identity(&a).await, "rust-strom-a");
    assert_eq!(identity(&b).await, "rust-strom-b");
    wait_until(LIVE, "status written", || async {
        cluster.status_ips("web") == ["10.0.0.9"]
    })
    .await;
    let (mut leader, follower, follower_id) = match lease_holder(&cluster).as_deref() {
        Some("rust-strom-a") => (a, b, "rust-strom-b"),
        Some("rust-strom-b") => (b, a, "rust-strom-a"),
        other => panic!("unexpected holder {other:?}"),
    };

    leader.signal("TERM");
    let status = leader.wait_exit(LIVE).await.expect("the leader exited");
    assert!(status.success(), "{status}");
    assert!(leader.stderr().await.contains("lease released"));
    // Bounded by LIVE (10 s), half the lease duration.
    wait_until(LIVE, "the peer holds the Lease", || async {
        lease_holder(&cluster).as_deref() == Some(follower_id)
    })
    .await;
    cluster.apply(&classed(
        ingress("default", "later", "later.local", &[("/", "Prefix", "one")]),
        "rust-strom",
    ));
    wait_until(LIVE, "the new leader writes status", || async {
        cluster.status_ips("later") == ["10.0.0.9"]
    })
    .await;
    assert!(follower.stderr().await.contains("became the leader"));
}

/// `--secret-label-selector`: Secrets without the labels are never asked
/// for, so their hosts get the default certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_label_selector_limits_the_secrets_served() {
    use support::tls::{gen_cert, presented, tls_ingress, tls_secret};

    let web = echo("web").await;
    let labelled = gen_cert(&["a.local"]);
    let unlabelled = gen_cert(&["b.local"]);
    let cluster = Cluster::start().await;
    cluster.apply(&docs(&[
        classed(
            tls_ingress(
                "default",
                "secure",
                &["a.local", "b.local"],
                "web",
                &[],
                &[(&["a.local"], "a-tls"), (&["b.local"], "b-tls")],
            ),
            "rust-strom",
        ),
        backend_objects("default", "web", &[web]),
        tls_secret("default", "a-tls", &labelled).replacen(
            "  name: a-tls\n",
            "  name: a-tls\n  labels: {ruststrom.io/serve: \"yes\"}\n",
            1,
        ),
        tls_secret("default", "b-tls", &unlabelled),
    ]));
    let proxy = cluster
        .proxy(&["--secret-label-selector", "ruststrom.io/serve=yes"])
        .await;
    wait_ready(&proxy).await;
    let port = proxy.https_port().await;

    assert_eq!(presented(port, Some("a.local")).await, labelled.der);
    let default = presented(port, Some("unknown.local")).await;
    assert_ne!(default, labelled.der);
    assert_eq!(
        presented(port, Some("b.local")).await,
        default,
        "an unlabelled Secret is not served"
    );
    let secret_requests: Vec<_> = cluster
        .server
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/secrets"))
        .collect();
    assert!(!secret_requests.is_empty());
    assert!(
        secret_requests
            .iter()
            .all(|r| r.query.contains("labelSelector=ruststrom.io%2Fserve%3Dyes")),
        "{secret_requests:?}"
    );
}

// ---------------------------------------------------------------------------
// RBAC: every call the controller makes is allowed by deploy/rust-strom.yaml
// ---------------------------------------------------------------------------

/// One RBAC rule, from a ClusterRole (any namespace) or a Role (its own).
#[derive(Debug)]
struct Rule {
    namespace: Option<String>,
    groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
}

/// What one API request needs: `(group, resource[/subresource], verb, namespace)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Access {
    group: String,
    resource: String,
    verb: String,
    namespace: Option<String>,
}

fn rbac_rules() -> Vec<Rule> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/rust-strom.yaml"
    ))
    .unwrap();
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    let mut rules = Vec::new();
    for doc in serde_norway::Deserializer::from_str(&text) {
        let doc = Value::deserialize(doc).unwrap();
        let namespace = match doc["kind"].as_str() {
            Some("ClusterRole") => None,
            Some("Role") => Some(doc["metadata"]["namespace"].as_str().unwrap().to_string()),
            _ => continue,
        };
        for rule in doc["rules"].as_array().unwrap() {
            rules.push(Rule {
                namespace: namespace.clone(),
                groups: strings(&rule["apiGroups"]),
                resources: strings(&rule["resources"]),
                verbs: strings(&rule["verbs"]),
            });
        }
    }
    rules
}

/// Maps a request to what RBAC checks; `None` for non-resource URLs.
fn access(r: &RecordedRequest) -> Option<Access> {
    let parts: Vec<&str> = r.path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        rest => (None, rest),
    };
    let (resource, name, sub) = match rest {
        [resource] => (*resource, None, None),
        [resource, name] => (*resource, Some(*name), None),
        [resource, name, sub] => (*resource, Some(*name), Some(*sub)),
        _ => return None,
    };
    let watching = r
        .query
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1");
    let verb = match (r.method.as_str(), name) {
        ("GET", _) if watching => "watch",
        ("GET", Some(_)) => "get",
        ("GET", None) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", Some(_)) => "delete",
        ("DELETE", None) => "deletecollection",
        _ => return None,
    };
    Some(Access {
        group: group.to_string(),
        resource: match sub {
            Some(sub) => format!("{resource}/{sub}"),
            None => resource.to_string(),
        },
        verb: verb.to_string(),
        namespace,
    })
}

fn allowed(rules: &[Rule], a: &Access) -> bool {
    let any = |list: &[String], want: &str| list.iter().any(|x| x == want || x == "*");
    rules.iter().any(|rule| {
        rule.namespace
            .as_ref()
            .is_none_or(|ns| a.namespace.as_ref() == Some(ns))
            && any(&rule.groups, &a.group)
            && any(&rule.resources, &a.resource)
            && any(&rule.verbs, &a.verb)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_call_is_covered_by_deploy_rbac() {
    let one = echo("one").await;
    let two = echo("two").await;
    let cluster = Cluster::start().await;
    cluster.apply(&docs(&[
        backend_objects("default", "one", &[one]),
        backend_objects("default", "two", &[two]),
        "apiVersion: v1\nkind: Service\nmetadata: {name: lb, namespace: rust-strom}\n\
         spec: {clusterIP: 10.96.0.10, ports: [{name: http, port: 80}]}\n"
            .to_string(),
        web_ingress("app.local", "one"),
        classed(
            ingress("default", "zz-late", "app.local", &[("/", "Prefix", "two")]),
            "rust-strom",
        ),
        "apiVersion: ruststrom.io/v1alpha1\nkind: BalancerPolicy\nmetadata: {name: p, namespace: default}\n\
         spec: {targetRef: {kind: Service, name: one}}\n"
            .to_string(),
        // The Secrets and ConfigMaps annotations name are watched by name.
        annotated_ingress(
            "named",
            "named.local",
            &[
                ("nginx.ingress.kubernetes.io/auth-type", "basic"),
                ("nginx.ingress.kubernetes.io/auth-secret", "users"),
                ("nginx.ingress.kubernetes.io/custom-headers", "extra"),
            ],
        ),
        opaque_secret("users", CAROL),
        config_map("extra", &[("X-Frame-Options", "DENY")]),
    ]));
    let mut proxy = cluster
        .proxy(&[
            "--publish-service",
            "rust-strom/lb",
            "--election-namespace",
            "rust-strom",
            "--election-retry-period",
            "250ms",
        ])
        .await;
    wait_until(
        LIVE,
        "status, policy status and an Event written",
        || async {
            let policy = cluster.server.store().get(
                "ruststrom.io/v1alpha1",
                "BalancerPolicy",
                Some("default"),
                "p",
            );
            cluster.status_ips("web") == ["10.96.0.10"]
                && !cluster.warnings("zz-late").is_empty()
                && policy.is_some_and(|p| p["status"]["conditions"].is_array())
        },
    )
    .await;
    wait_until(LIVE, "the Ingress naming a Secret served", || async {
        get(proxy.http_port, "named.local", "/").await.status == StatusCode::UNAUTHORIZED
    })
    .await;
    // A graceful stop also releases the Lease.
    proxy.signal("TERM");
    assert!(proxy.wait_exit(LIVE).await.is_some_and(|s| s.success()));

    let rules = rbac_rules();
    let mut seen = BTreeSet::new();
    let mut denied = BTreeSet::new();
    for request in cluster.server.requests() {
        let Some(a) = access(&request) else {
            panic!("a call RBAC cannot grant by resource: {request:?}");
        };
        if !allowed(&rules, &a) {
            denied.insert(a.clone());
        }
        seen.insert((a.resource.clone(), a.verb.clone()));
    }
    assert!(
        denied.is_empty(),
        "not allowed by deploy/rust-strom.yaml: {denied:#?}"
    );
    // Not a vacuous pass: each kind of call was made.
    for (resource, verb) in [
        ("ingresses", "watch"),
        ("ingresses/status", "patch"),
        ("secrets", "list"),
        ("balancerpolicies/status", "patch"),
        ("events", "create"),
        ("leases", "create"),
        ("leases", "update"),
    ] {
        assert!(
            seen.contains(&(resource.to_string(), verb.to_string())),
            "{verb} {resource} never happened: {seen:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_annotations_take_their_ingress_out_with_a_warning_event() {
    let one = echo("one").await;
    let cluster = Cluster::start().await;
    let snippet = classed(
        ingress("default", "snippet", "snippet.local", &[("/", "Prefix", "one")]),
        "rust-strom",
    )
    .replacen(
        "metadata:\n",
        "metadata:\n  annotations:\n    nginx.ingress.kubernetes.io/configuration-snippet: \"deny all;\"\n",
        1,
    );
    // A Secret an Ingress needs and does not find: refused, never served open.
    let basic = annotated_ingress(
        "basic",
        "basic.local",
        &[
            ("nginx.ingress.kubernetes.io/auth-type", "basic"),
            ("nginx.ingress.kubernetes.io/auth-secret", "nobody"),
        ],
    );
    cluster.apply(&docs(&[
        backend_objects("default", "one", &[one]),
        web_ingress("app.local", "one"),
        snippet,
        basic,
    ]));
    let proxy = cluster.proxy(&[]).await;
    wait_ready(&proxy).await;
    wait_until(LIVE, "a Warning Event on snippet", || async {
        !cluster.warnings("snippet").is_empty()
    })
    .await;
    let event = &cluster.warnings("snippet")[0];
    assert_eq!(event["reason"], "Rejected", "{event}");
    assert!(
        event["note"]
            .as_str()
            .unwrap()
            .contains("nginx.ingress.kubernetes.io/configuration-snippet is refused"),
        "{event}"
    );
    assert!(routes_to(proxy.http_port, "app.local", "/", "one").await);
    assert_eq!(
        get(proxy.http_port, "snippet.local", "/").await.status,
        StatusCode::NOT_FOUND
    );
    wait_until(LIVE, "a Warning Event on basic", || async {
        !cluster.warnings("basic").is_empty()
    })
    .await;
    let event = &cluster.warnings("basic")[0];
    assert!(
        event["note"]
            .as_str()
            .unwrap()
            .contains("auth-secret default/nobody: not found"),
        "{event}"
    );
    assert_eq!(
        get(proxy.http_port, "basic.local", "/").await.status,
        StatusCode::NOT_FOUND
    );
}

/// An Ingress of our class for `host` -> Service `one` with annotations.
fn annotated_ingress(name: &str, host: &str, annotations: &[(&str, &str)]) -> String {
    let mut meta = String::from("metadata:\n  annotations:\n");
    for (k, v) in annotations {
        meta.push_str(&format!("    {k}: \"{v}\"\n"));
    }
    classed(
        ingress("default", name, host, &[("/", "Prefix", "one")]),
        "rust-strom",
    )
    .replacen("metadata:\n", &meta, 1)
}

fn opaque_secret(name: &str, auth: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: default\n\
         type: Opaque\nstringData:\n  auth: \"{auth}\"\n"
    )
}

fn config_map(name: &str, data: &[(&str, &str)]) -> String {
    let mut yaml = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: default\ndata:\n"
    );
    for (k, v) in data {
        yaml.push_str(&format!("  {k}: \"{v}\"\n"));
    }
    yaml
}

/// `{SHA}` htpasswd entries (what `htpasswd -s` writes): carol's password
/// is `secret`, dave's `password`.
const CAROL: &str = "carol:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=";
const DAVE: &str = "dave:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=";

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

async fn get_as(port: u16, host: &str, authorization: Option<&str>) -> Resp {
    let mut req = get_req(host, "/");
    if let Some(value) = authorization {
        req.headers_mut()
            .insert(http::header::AUTHORIZATION, value.parse().unwrap());
    }
    send(port, req).await
}

// Cluster mode watches, by name, the Secrets and ConfigMaps annotations name
// (and no others), and applies their changes live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_and_config_maps_named_by_annotations_are_watched_by_name() {
    let one = echo("one").await;
    let cluster = Cluster::start().await;
    cluster.apply(&docs(&[
        backend_objects("default", "one", &[one]),
        annotated_ingress(
            "basic",
            "basic.local",
            &[
                ("nginx.ingress.kubernetes.io/auth-type", "basic"),
                ("nginx.ingress.kubernetes.io/auth-secret", "users"),
            ],
        ),
        annotated_ingress(
            "headers",
            "headers.local",
            &[(
                "nginx.ingress.kubernetes.io/custom-headers",
                "default/extra",
            )],
        ),
        opaque_secret("users", CAROL),
        // Not named by any Ingress: never read.
        opaque_secret("unrelated", DAVE),
        config_map("extra", &[("X-Frame-Options", "DENY")]),
        config_map("unrelated", &[("X-Other", "1")]),
    ]));
    let proxy = cluster.proxy(&[]).await;
    wait_ready(&proxy).await;

    // Served from the first table: the named objects were listed before it.
    let port = proxy.http_port;
    assert_eq!(
        get_as(port, "basic.local", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let carol = basic("carol", "secret");
    let resp = get_as(port, "basic.local", Some(&carol)).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let resp = get(port, "headers.local", "/").await;
    assert_eq!(resp.headers["x-frame-options"], "DENY");

    // Edits apply live: a new user list, a new header value.
    cluster.apply(&opaque_secret("users", DAVE));
    cluster.apply(&config_map("extra", &[("X-Frame-Options", "SAMEORIGIN")]));
    let dave = basic("dave", "password");
    wait_until(LIVE, "the new users and headers", || async {
        get_as(port, "basic.local", Some(&dave)).await.status == StatusCode::OK
            && get(port, "headers.local", "/").await.headers["x-frame-options"] == "SAMEORIGIN"
    })
    .await;
    assert_eq!(
        get_as(port, "basic.local", Some(&carol)).await.status,
        StatusCode::UNAUTHORIZED
    );

    // A Secret named for the first time after start is watched then.
    cluster.apply(&annotated_ingress(
        "late",
        "late.local",
        &[
            ("nginx.ingress.kubernetes.io/auth-type", "basic"),
            ("nginx.ingress.kubernetes.io/auth-secret", "late-users"),
        ],
    ));
    cluster.apply(&opaque_secret("late-users", CAROL));
    wait_until(LIVE, "the late Ingress with its users", || async {
        get_as(port, "late.local", Some(&carol)).await.status == StatusCode::OK
    })
    .await;
    assert_eq!(
        get_as(port, "late.local", None).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Only TLS Secrets are listed by type; the others only by name.
    let reads: Vec<RecordedRequest> = cluster
        .server
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/secrets") || r.path.contains("/configmaps"))
        .collect();
    assert!(!reads.is_empty());
    for r in &reads {
        let query = r.query.replace("%3D", "=").replace("%2F", "/");
        let by_type = query.contains("fieldSelector=type=kubernetes.io/tls");
        let by_name = query.contains("fieldSelector=metadata.name=");
        assert!(by_type || by_name, "an unselective read: {r:?}");
        assert!(!query.contains("unrelated"), "{r:?}");
    }
}

// The request-path annotations behave in cluster mode as in standalone mode
// (their own tests cover each in depth): limits keep their counters across
// recompiles driven by the API server, CORS preflights are answered here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotation_features_work_in_cluster_mode() {
    let one = echo("one").await;
    let cluster = Cluster::start().await;
    let n = |name: &str| format!("nginx.ingress.kubernetes.io/{name}");
    cluster.apply(&docs(&[
        backend_objects("default", "one", &[one]),
        annotated_ingress(
            "limited",
            "limited.local",
            &[(&n("limit-rpm"), "1"), (&n("limit-burst-multiplier"), "2")],
        ),
        annotated_ingress(
            "cors",
            "cors.local",
            &[
                (&n("enable-cors"), "true"),
                (&n("cors-allow-origin"), "https://app.example.com"),
            ],
        ),
        annotated_ingress(
            "closed",
            "closed.local",
            &[(&n("whitelist-source-range"), "192.0.2.0/24")],
        ),
        annotated_ingress("small", "small.local", &[(&n("proxy-body-size"), "1k")]),
        annotated_ingress(
            "moved",
            "moved.local",
            &[(&n("permanent-redirect"), "https://new.example.com/")],
        ),
        web_ingress("app.local", "one"),
    ]));
    let proxy = cluster.proxy(&[]).await;
    wait_ready(&proxy).await;
    let port = proxy.http_port;

    // limit-rpm 1 with a burst of 2: three pass at once, the fourth is
    // limited, also after the API server drives a recompile.
    for _ in 0..3 {
        assert_eq!(get(port, "limited.local", "/").await.status, StatusCode::OK);
    }
    let refused = get(port, "limited.local", "/").await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers.contains_key("retry-after"));
    cluster.apply(&web_ingress("app2.local", "one"));
    wait_until(LIVE, "the edit served", || async {
        routes_to(port, "app2.local", "/", "one").await
    })
    .await;
    assert_eq!(
        get(port, "limited.local", "/").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );

    // A preflight is answered by the proxy.
    let req = Request::options("/")
        .header("host", "cors.local")
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "PUT")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = send(port, req).await;
    assert_eq!(resp.status, StatusCode::NO_CONTENT, "{}", resp.body);
    assert_eq!(
        resp.headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert!(resp.backend().is_none(), "{}", resp.body);

    // Source ranges, the body limit and a redirect.
    assert_eq!(
        get(port, "closed.local", "/").await.status,
        StatusCode::FORBIDDEN
    );
    let req = Request::post("/")
        .header("host", "small.local")
        .body(http_body_util::Full::new(bytes::Bytes::from(vec![
            b'x';
            2048
        ])))
        .unwrap();
    assert_eq!(send(port, req).await.status, StatusCode::PAYLOAD_TOO_LARGE);
    let resp = get(port, "moved.local", "/").await;
    assert_eq!(resp.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(resp.headers["location"], "https://new.example.com/");
}

// External auth, error pages and compression in cluster mode. An auth-url
// naming a cluster Service goes to that Service's endpoints through the
// pools (no DNS needed), and endpoint changes of the auth and error
// Services reach the live table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_error_pages_and_compression_work_in_cluster_mode() {
    let one = echo("one").await;
    let errors = echo("errors").await;
    let auth_server = |user: &'static str| {
        backend(
            move |req: http::Request<hyper::body::Incoming>| async move {
                let ok = req.headers().get("x-let-me-in").is_some();
                let status = if ok {
                    StatusCode::OK
                } else {
                    StatusCode::UNAUTHORIZED
                };
                http::Response::builder()
                    .status(status)
                    .header("x-auth-request-user", user)
                    .body(full(""))
                    .unwrap()
            },
        )
    };
    let auth = auth_server("ada").await;
    let teapot = backend(|_req: http::Request<hyper::body::Incoming>| async move {
        http::Response::builder()
            .status(418)
            .body(full("the teapot's own page"))
            .unwrap()
    })
    .await;
    let page = backend(|_req: http::Request<hyper::body::Incoming>| async move {
        http::Response::builder()
            .header("content-type", "text/html")
            .body(full("<p>hello</p>".repeat(100)))
            .unwrap()
    })
    .await;
    let cluster = Cluster::start().await;
    let n = |name: &str| format!("nginx.ingress.kubernetes.io/{name}");
    let on = |name: &str, host: &str, svc: &str, annotations: &[(&str, &str)]| {
        annotated_ingress(name, host, annotations).replace("name: one", &format!("name: {svc}"))
    };
    cluster.apply(&docs(&[
        backend_objects("default", "one", &[one]),
        backend_objects("default", "errors", &[errors]),
        backend_objects("default", "page", &[page]),
        backend_objects("default", "auth", &[auth]),
        backend_objects("default", "teapot", &[teapot]),
        service("default", "empty"),
        on(
            "guarded",
            "guarded.local",
            "one",
            &[
                (
                    &n("auth-url"),
                    "http://auth.default.svc.cluster.local/check",
                ),
                (&n("auth-response-headers"), "X-Auth-Request-User"),
            ],
        ),
        on(
            "fallback",
            "fallback.local",
            "empty",
            &[(&n("default-backend"), "errors")],
        ),
        on(
            "pages",
            "pages.local",
            "teapot",
            &[
                (&n("default-backend"), "errors"),
                (&n("custom-http-errors"), "418"),
            ],
        ),
        on(
            "zipped",
            "zipped.local",
            "page",
            &[("ruststrom.io/compression", "gzip")],
        ),
    ]));
    let proxy = cluster.proxy(&[]).await;
    wait_ready(&proxy).await;
    let port = proxy.http_port;
    let let_in = || {
        Request::get("/")
            .header("host", "guarded.local")
            .header("x-let-me-in", "1")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap()
    };

    assert_eq!(
        get(port, "guarded.local", "/").await.status,
        StatusCode::UNAUTHORIZED
    );
    let resp = send(port, let_in()).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(
        resp.echoed("x-auth-request-user"),
        Some("ada"),
        "{}",
        resp.body
    );

    let resp = get(port, "fallback.local", "/").await;
    assert_eq!(resp.backend(), Some("errors"), "{}", resp.body);
    // A listed status: the error Service answers, told the code.
    let resp = get(port, "pages.local", "/x").await;
    assert_eq!(resp.backend(), Some("errors"), "{}", resp.body);
    assert_eq!(resp.echoed("x-code"), Some("418"), "{}", resp.body);
    assert_eq!(resp.echoed("x-original-uri"), Some("/x"), "{}", resp.body);

    let req = Request::get("/")
        .header("host", "zipped.local")
        .header("accept-encoding", "gzip")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = send(port, req).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.headers["content-encoding"], "gzip");
    assert_eq!(resp.headers["vary"], "Accept-Encoding");

    // The auth and error Services move to new endpoints: followed live.
    let auth2 = auth_server("grace").await;
    let errors2 = echo("errors2").await;
    cluster.apply(&slice("default", "auth-0", "auth", auth2.port()));
    cluster.apply(&slice("default", "errors-0", "errors", errors2.port()));
    wait_until(LIVE, "the new auth and error endpoints", || async {
        let auth_moved = send(port, let_in()).await.echoed("x-auth-request-user") == Some("grace");
        let errors_moved = get(port, "fallback.local", "/").await.backend() == Some("errors2");
        auth_moved && errors_moved
    })
    .await;
}
