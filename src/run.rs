//! Standalone mode wiring: listeners, the manifests folder, the publisher,
//! the admin port, and the drain on shutdown. [`serve`] is the part cluster
//! mode ([`crate::cluster`]) shares.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::admin::{self, AdminState};
use crate::config::{DEFAULT_HTTPS_REDIRECT_PORT, Settings};
use crate::metrics::Metrics;
use crate::model::RoutingTable;
use crate::proxy::{self, Proxy, SharedTable};
use crate::publish::Publisher;
use crate::shutdown::{self, Shutdown};
use crate::source::files::{self, ManifestDir};

/// Changes arriving within this window are applied as one reload (an editor
/// saving a file fires several events).
const DEBOUNCE: Duration = Duration::from_millis(100);

/// Serves the manifests folder until SIGINT/SIGTERM, then drains.
pub async fn standalone(settings: Settings) -> anyhow::Result<()> {
    manifests_root(&settings)?;
    // Signals first: once the ports are announced, SIGTERM drains.
    let (_trigger, shutdown) = shutdown::on_signals();
    let listeners = Listeners::bind(&settings).await?;
    standalone_on(settings, listeners, shutdown).await
}

/// `--manifests`, which must be a folder.
fn manifests_root(settings: &Settings) -> anyhow::Result<std::path::PathBuf> {
    let root = settings
        .manifests
        .clone()
        .context("standalone mode needs --manifests DIR")?;
    anyhow::ensure!(
        root.is_dir(),
        "--manifests {}: not a folder",
        root.display()
    );
    Ok(root)
}

/// Standalone mode on listeners bound (and signals caught) by the caller:
/// the demo binds first to print the ports it really got.
pub async fn standalone_on(
    settings: Settings,
    listeners: Listeners,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let root = manifests_root(&settings)?;
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
    publisher.publish(dir.current(), noticed);

    let (changes, _watcher) = files::watch(&root);
    tokio::spawn(apply_changes(dir, publisher, changes, metrics.clone()));
    serve(&settings, listeners, table, metrics, ready, shutdown).await
}

/// The proxy, HTTPS and admin listeners, bound first so that their ports
/// are logged (and a taken port fails) before anything else starts.
pub struct Listeners {
    pub http: TcpListener,
    pub https: TcpListener,
    pub admin: TcpListener,
}

impl Listeners {
    pub async fn bind(settings: &Settings) -> anyhow::Result<Self> {
        Ok(Self {
            http: bind(settings.http_addr, "HTTP proxy").await?,
            https: bind(settings.https_addr, "HTTPS proxy").await?,
            admin: bind(settings.metrics_addr, "metrics and health").await?,
        })
    }
}

/// Serves traffic from whatever table is live, the admin port and the
/// health checks until `shutdown`, then drains. Both modes end here.
pub async fn serve(
    settings: &Settings,
    listeners: Listeners,
    table: SharedTable,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let Listeners { http, https, admin } = listeners;
    // Before the admin port answers, so no scrape sees the cap at 0.
    let connections = proxy::listener::ConnectionLimit::new(settings.limits.max_connections);
    metrics
        .connections_max
        .set(i64::try_from(connections.max()).unwrap_or(i64::MAX));
    let health_task = crate::health::spawn(table.clone(), metrics.clone());
    let reaper_task = proxy::upstream::spawn_reaper(table.clone());
    let admin_state = Arc::new(AdminState {
        metrics: metrics.clone(),
        ready,
    });
    let admin_task = tokio::spawn(admin::serve(admin, admin_state, shutdown.clone()));

    let acceptor = proxy::tls::acceptor(table.clone())?;
    let access_log = proxy::access_log::AccessLog::start(
        settings.access_log,
        Box::new(std::io::stdout()),
        metrics.access_log_dropped.clone(),
    )?;
    let proxy = Arc::new(Proxy {
        table,
        upstream: proxy::upstream::Upstream::new(
            metrics.backends.connections_opened.clone(),
            metrics.backends.connections_salvaged.clone(),
        ),
        metrics,
        request_timeout: settings.request_timeout,
        tunnels: proxy::upgrade::Tunnels::new(),
        https: proxy::redirect::HttpsSettings {
            redirect_port: settings
                .https_redirect_port
                .unwrap_or(DEFAULT_HTTPS_REDIRECT_PORT),
            trusted_proxies: settings.trusted_proxies.clone(),
        },
        limits: settings.limits.clone(),
        connections,
        access_log,
        auth: proxy::ext_auth::AuthClient::default(),
    });
    let grace = settings.shutdown_grace;
    tokio::join!(
        proxy::listener::serve(http, proxy.clone(), shutdown.clone(), grace, None),
        proxy::listener::serve(https, proxy, shutdown, grace, Some(acceptor)),
    );
    admin_task.abort();
    health_task.abort();
    reaper_task.abort();
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
/// table when something changed, or when a certificate it serves has expired
/// since. File I/O and compiling run on the blocking pool, away from request
/// handling.
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
            if reload.changed || publisher.certificate_expired(SystemTime::now()) {
                publisher.publish(dir.current(), noticed);
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
