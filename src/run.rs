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
use crate::dashboard::{self, Dashboard, reload};
use crate::metrics::Metrics;
use crate::model::RoutingTable;
use crate::proxy::{self, Proxy, SharedTable};
use crate::publish::{Publisher, SharedReport};
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

    publisher.set_broken_files(broken_files(&dir));
    let (reloads_tx, reloads) = reload::channel();
    let control = Control {
        report: publisher.report(),
        mode: "standalone",
        reload: reloads_tx,
    };
    let (changes, _watcher) = files::watch(&root);
    tokio::spawn(apply_changes(
        dir,
        publisher,
        Triggers { changes, reloads },
        metrics.clone(),
    ));
    serve(
        &settings, listeners, table, metrics, ready, shutdown, control,
    )
    .await
}

/// What the dashboard needs from the mode that runs it.
pub struct Control {
    /// The last compile's report.
    pub report: SharedReport,
    /// `standalone` or `cluster`.
    pub mode: &'static str,
    /// Asks the mode's source loop to reload.
    pub reload: reload::Sender,
}

/// The proxy, HTTPS, dashboard and admin listeners, bound first so that
/// their ports are logged (and a taken port fails) before anything else
/// starts.
pub struct Listeners {
    pub http: TcpListener,
    pub https: TcpListener,
    /// `None` with `--dashboard false`.
    pub dashboard: Option<TcpListener>,
    pub admin: TcpListener,
}

impl Listeners {
    pub async fn bind(settings: &Settings) -> anyhow::Result<Self> {
        let http = bind(settings.http_addr, "HTTP proxy").await?;
        let https = bind(settings.https_addr, "HTTPS proxy").await?;
        let dashboard = match settings.dashboard_addr {
            Some(addr) => Some(bind(addr, "dashboard").await?),
            None => None,
        };
        Ok(Self {
            http,
            https,
            dashboard,
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
    control: Control,
) -> anyhow::Result<()> {
    let Listeners {
        http,
        https,
        dashboard,
        admin,
    } = listeners;
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
    // The dashboard's feed exists only with a dashboard; it costs requests
    // nothing until someone watches it.
    let feed = dashboard.as_ref().map(|_| proxy::feed::Feed::new());
    let mut dashboard_tasks = Vec::new();
    if let (Some(listener), Some(feed)) = (dashboard, &feed) {
        let guard = dashboard::auth::Guard::new(
            listener.local_addr()?,
            settings.dashboard_token.as_ref().map(|t| t.0.clone()),
        )?;
        let state = Arc::new(Dashboard {
            table: table.clone(),
            metrics: metrics.clone(),
            feed: feed.clone(),
            history: Arc::default(),
            report: control.report,
            reload: Some(control.reload),
            guard,
            mode: control.mode,
            started: Instant::now(),
        });
        dashboard_tasks.push(dashboard::spawn_history(state.clone()));
        dashboard_tasks.push(tokio::spawn(dashboard::serve(
            listener,
            state,
            shutdown.clone(),
        )));
    }
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
        records: Arc::new(proxy::records::Records {
            log: access_log,
            feed,
        }),
        auth: proxy::ext_auth::AuthClient::default(),
    });
    let grace = settings.shutdown_grace;
    let records = proxy.records.clone();
    tokio::join!(
        proxy::listener::serve(http, proxy.clone(), shutdown.clone(), grace, None),
        proxy::listener::serve(https, proxy, shutdown, grace, Some(acceptor)),
    );
    // Every request is answered: the access log's last lines go out.
    if let Some(log) = records.log.clone() {
        let _ = tokio::task::spawn_blocking(move || log.close()).await;
    }
    admin_task.abort();
    for task in dashboard_tasks {
        task.abort();
    }
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
    mut triggers: Triggers,
    metrics: Arc<Metrics>,
) {
    loop {
        // A reload asked for on the dashboard compiles even when no file
        // changed, and answers what came of it.
        let asked = tokio::select! {
            change = triggers.changes.recv() => match change {
                Some(()) => None,
                None => return,
            },
            asked = triggers.reloads.recv() => match asked {
                Some(asked) => Some(asked),
                None => return,
            },
        };
        let noticed = Instant::now();
        if asked.is_none() {
            tokio::time::sleep(DEBOUNCE).await;
        }
        while triggers.changes.try_recv().is_ok() {}
        let forced = asked.is_some();
        let worked = tokio::task::spawn_blocking(move || {
            let reload = dir.reload();
            let mut published = None;
            if forced || reload.changed || publisher.certificate_expired(SystemTime::now()) {
                published = Some(publisher.publish(dir.current(), noticed));
            }
            publisher.set_broken_files(broken_files(&dir));
            (dir, publisher, reload.errors, published)
        })
        .await;
        match worked {
            Ok((d, p, errors, published)) => {
                dir = d;
                publisher = p;
                report_file_errors(&errors, &metrics);
                if let (Some(asked), Some(published)) = (asked, published) {
                    let _ = asked.done.send(reload::Outcome {
                        source: "standalone",
                        generation: published.generation,
                        routes: published.routes,
                        rejected: published.rejected,
                        errors: errors.iter().map(ToString::to_string).collect(),
                        took_ms: noticed.elapsed().as_secs_f64() * 1e3,
                    });
                }
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

/// What wakes the folder's loop: a change seen in the folder, or a reload
/// asked for on the dashboard.
struct Triggers {
    changes: mpsc::Receiver<()>,
    reloads: reload::Receiver,
}

/// The files whose current version does not parse, for the dashboard.
fn broken_files(dir: &ManifestDir) -> Vec<(String, String)> {
    dir.broken_files()
        .into_iter()
        .map(|(path, error)| (path.display().to_string(), error.to_string()))
        .collect()
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
