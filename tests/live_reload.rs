//! Standalone mode applies edits to the manifests folder live: new, edited,
//! atomically replaced, broken-then-fixed and deleted files; and traffic
//! (including a keep-alive connection) keeps flowing while tables swap.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Empty;
use support::*;

const RELOAD: Duration = Duration::from_secs(8);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_changes_apply_live() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let one = echo("one").await;
    let two = echo("two").await;
    write(
        d,
        "backends.yaml",
        &docs(&[
            backend_objects("default", "one", &[one]),
            backend_objects("default", "two", &[two]),
        ]),
    );
    let route = |host: &str, svc: &str| ingress("default", "app", host, &[("/", "Prefix", svc)]);
    write(d, "app.yaml", &route("app.local", "one"));
    let proxy = Proxy::start(d, &[]).await;
    let port = proxy.http_port;
    assert!(routes_to(port, "app.local", "/", "one").await);
    assert_eq!(
        proxy.get("new.local", "/").await.status,
        StatusCode::NOT_FOUND
    );

    // A new file.
    write(
        d,
        "new.yaml",
        &ingress("default", "new", "new.local", &[("/", "Prefix", "two")]),
    );
    wait_until(RELOAD, "new file applied", || {
        routes_to(port, "new.local", "/", "two")
    })
    .await;

    // An edit in place: another host and another backend.
    write(d, "app.yaml", &route("app-edited.local", "two"));
    wait_until(RELOAD, "edit applied", || {
        routes_to(port, "app-edited.local", "/", "two")
    })
    .await;
    assert_eq!(
        proxy.get("app.local", "/").await.status,
        StatusCode::NOT_FOUND,
        "the old host must be gone with the edit"
    );

    // An atomic replace: a hidden temp file renamed over the file.
    write_atomic(d, "app.yaml", &route("app-renamed.local", "one"));
    wait_until(RELOAD, "atomic replace applied", || {
        routes_to(port, "app-renamed.local", "/", "one")
    })
    .await;
    assert_eq!(
        proxy.get("app-edited.local", "/").await.status,
        StatusCode::NOT_FOUND
    );

    // Broken YAML: the file's last good objects keep serving.
    assert_eq!(proxy.metric("manifest_errors_total").await, Some(0.0));
    write(
        d,
        "app.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: [broken\n",
    );
    wait_until(RELOAD, "manifest_errors_total >= 1", || async {
        proxy.metric("manifest_errors_total").await.unwrap_or(0.0) >= 1.0
    })
    .await;
    let stderr = proxy.stderr().await;
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("WARN") && l.contains("app.yaml")),
        "no warning naming the broken file:\n{stderr}"
    );
    for _ in 0..5 {
        assert!(
            routes_to(port, "app-renamed.local", "/", "one").await,
            "the last good version of a broken file must keep serving"
        );
        assert!(routes_to(port, "new.local", "/", "two").await);
    }

    // Fixed: applied.
    write(d, "app.yaml", &route("app-fixed.local", "two"));
    wait_until(RELOAD, "fixed file applied", || {
        routes_to(port, "app-fixed.local", "/", "two")
    })
    .await;
    assert_eq!(
        proxy.get("app-renamed.local", "/").await.status,
        StatusCode::NOT_FOUND
    );

    // Deleted: its routes go, the others stay.
    std::fs::remove_file(d.join("app.yaml")).unwrap();
    wait_until(RELOAD, "deleted file's route gone", || async {
        proxy.get("app-fixed.local", "/").await.status == StatusCode::NOT_FOUND
    })
    .await;
    assert!(routes_to(port, "new.local", "/", "two").await);

    // Hidden files and other extensions are not manifests.
    write(
        d,
        ".hidden.yaml",
        &ingress(
            "default",
            "hidden",
            "hidden.local",
            &[("/", "Prefix", "one")],
        ),
    );
    write(
        d,
        "notes.txt",
        &ingress("default", "txt", "txt.local", &[("/", "Prefix", "one")]),
    );
    write(
        d,
        "later.yml",
        &ingress("default", "later", "later.local", &[("/", "Prefix", "one")]),
    );
    wait_until(RELOAD, ".yml file applied", || {
        routes_to(port, "later.local", "/", "one")
    })
    .await;
    assert_eq!(
        proxy.get("hidden.local", "/").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        proxy.get("txt.local", "/").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_changes_apply_live() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = echo("ep-a").await;
    let b = echo("ep-b").await;
    write(
        d,
        "app.yaml",
        &ingress("default", "app", "ep.local", &[("/", "Prefix", "svc")]),
    );
    write(d, "svc.yaml", &service("default", "svc"));
    let proxy = Proxy::start(d, &[]).await;
    let port = proxy.http_port;
    assert_eq!(
        proxy.get("ep.local", "/").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    write_atomic(
        d,
        "slices.yaml",
        &slice("default", "svc-a", "svc", a.port()),
    );
    wait_until(RELOAD, "first endpoint live", || {
        routes_to(port, "ep.local", "/", "ep-a")
    })
    .await;

    // Swap the endpoint: all traffic moves to the new one.
    write_atomic(
        d,
        "slices.yaml",
        &slice("default", "svc-b", "svc", b.port()),
    );
    wait_until(RELOAD, "endpoint swapped", || {
        routes_to(port, "ep.local", "/", "ep-b")
    })
    .await;
    for _ in 0..4 {
        assert!(routes_to(port, "ep.local", "/", "ep-b").await);
    }

    // No endpoints left: 503.
    std::fs::remove_file(d.join("slices.yaml")).unwrap();
    wait_until(RELOAD, "endpoints gone", || async {
        proxy.get("ep.local", "/").await.status == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_keeps_flowing_during_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let addr = echo("steady").await;
    write(
        d,
        "steady.yaml",
        &docs(&[
            ingress(
                "default",
                "steady",
                "steady.local",
                &[("/", "Prefix", "steady")],
            ),
            backend_objects("default", "steady", &[addr]),
        ]),
    );
    let proxy = Proxy::start(d, &[]).await;
    let port = proxy.http_port;

    // One keep-alive connection, used before, during and after the reloads.
    let mut kept = connect::<Empty<Bytes>>(port).await;
    let resp = into_resp(
        kept.send_request(get_req("steady.local", "/before"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK);

    // Background load on new connections while tables swap.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let load = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let resp = get(port, "steady.local", "/load").await;
                if resp.status == StatusCode::OK && resp.backend() == Some("steady") {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    for i in 0..5 {
        let host = format!("extra-{i}.local");
        write_atomic(
            d,
            &format!("extra-{i}.yaml"),
            &ingress(
                "default",
                &format!("extra-{i}"),
                &host,
                &[("/", "Prefix", "steady")],
            ),
        );
        wait_until(RELOAD, "extra route applied", || {
            routes_to(port, &host, "/", "steady")
        })
        .await;
        // The same keep-alive connection, after each swap.
        assert!(kept.is_ready(), "the keep-alive connection was closed");
        let resp = into_resp(
            kept.send_request(get_req("steady.local", &format!("/during/{i}")))
                .await
                .expect("keep-alive connection survives a reload"),
        )
        .await;
        assert_eq!(resp.status, StatusCode::OK);
        assert_eq!(resp.backend(), Some("steady"));
    }
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during reloads"
    );
    assert!(ok.load(Ordering::Relaxed) > 0);
    let generation = proxy.metric("routing_table_generation").await.unwrap();
    assert!(generation >= 6.0, "generation {generation}");
}
