//! Standalone mode wiring: listeners, the manifests folder, the publisher,
//! the admin port, and the drain on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::admin::{self, AdminState};
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::model::RoutingTable;
use crate::proxy::{self, Proxy};
use crate::publish::Publisher;
use crate::shutdown;
use crate::source::files::{self, ManifestDir};

/// Changes arriving within this window are applied as one reload (an editor
/// saving a file fires several events).
const DEBOUNCE: Duration = Duration::from_millis(100);

/// Serves the manifests folder until SIGINT/SIGTERM, then drains.
pub async fn standalone(settings: Settings) -> anyhow::Result<()> {
    let root = settings
        .manifests
        .clone()
        .context("standalone mode needs --manifests DIR")?;
    anyhow::ensure!(
        root.is_dir(),
        "--manifests {}: not a folder",
        root.display()
    );

    // Signals first: once the ports are announced, SIGTERM drains.
    let (_trigger, shutdown) = shutdown::on_signals();
    let http = bind(settings.http_addr, "HTTP proxy").await?;
    let admin_listener = bind(settings.metrics_addr, "metrics and health").await?;

    let metrics = Arc::new(Metrics::new()?);
    let ready = Arc::new(AtomicBool::new(false));
    let table = Arc::new(ArcSwap::from_pointee(RoutingTable::default()));
    let mut publisher = Publisher::new(
        table.clone(),
        metrics.clone(),
        ready.clone(),
        settings.compile.clone(),
    );

    // The first table is built before the first request is accepted.
    let mut dir = ManifestDir::new(&root);
    let noticed = Instant::now();
    let reload = dir.reload();
    report_file_errors(&reload.errors, &metrics);
    publisher.publish(&dir.snapshot(), noticed);

    let (changes, _watcher) = files::watch(&root);
    tokio::spawn(apply_changes(dir, publisher, changes, metrics.clone()));
    let admin_state = Arc::new(AdminState {
        metrics: metrics.clone(),
        ready,
    });
    let admin_task = tokio::spawn(admin::serve(admin_listener, admin_state, shutdown.clone()));

    let proxy = Arc::new(Proxy {
        table,
        client: proxy::upstream::client(),
        metrics,
        request_timeout: settings.request_timeout,
        tunnels: proxy::upgrade::Tunnels::new(),
    });
    proxy::listener::serve(http, proxy, shutdown, settings.shutdown_grace).await;
    admin_task.abort();
    tracing::info!("stopped");
    Ok(())
}

/// Binds a listener and logs where it listens (the real port when 0 was
/// asked for).
pub async fn bind(addr: SocketAddr, what: &'static str) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for {what}"))?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, "{what} listening");
    Ok(listener)
}

/// Reloads the folder on every change signal (debounced) and publishes a new
/// table when something changed. File I/O and compiling run on the blocking
/// pool, away from request handling.
async fn apply_changes(
    mut dir: ManifestDir,
    mut publisher: Publisher,
    mut changes: mpsc::Receiver<()>,
    metrics: Arc<Metrics>,
) {
    while changes.recv().await.is_some() {
        let noticed = Instant::now();
        tokio::time::sleep(DEBOUNCE).await;
        while changes.try_recv().is_ok() {}
        let worked = tokio::task::spawn_blocking(move || {
            let reload = dir.reload();
            if reload.changed {
                publisher.publish(&dir.snapshot(), noticed);
            }
            (dir, publisher, reload.errors)
        })
        .await;
        match worked {
            Ok((d, p, errors)) => {
                dir = d;
                publisher = p;
                report_file_errors(&errors, &metrics);
            }
            Err(error) => {
                // A panic in compile would be a bug; the last good table
                // keeps serving, but live updates stop, so say it loudly.
                tracing::error!(%error, "reloading the manifests failed; live updates stopped");
                return;
            }
        }
    }
}

fn report_file_errors(errors: &[files::FileError], metrics: &Metrics) {
    for error in errors {
        tracing::warn!(%error, "manifest not applied; its last good version stays");
        metrics.manifest_errors.inc();
    }
    if !errors.is_empty() {
        metrics.reloads.with_label_values(&["error"]).inc();
    }
}
