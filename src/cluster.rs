//! Cluster mode wiring (no `--manifests`): the kube client, the reflectors,
//! the sync loop, leader election and the status writer, in front of the
//! same data plane standalone mode serves.
//!
//! The listeners come up first and answer from an empty table (404) while
//! `/readyz` says 503; the first table goes live only once every kind has
//! been listed, so a pod never takes traffic with half its routes.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use arc_swap::ArcSwap;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use tokio::sync::watch;

use crate::config::{ClusterSettings, Settings};
use crate::dashboard::reload;
use crate::leader::{self, ElectionConfig};
use crate::metrics::Metrics;
use crate::model::RoutingTable;
use crate::publish::Publisher;
use crate::run::{self, Listeners};
use crate::shutdown;
use crate::source::kube::{WatchScope, Watchers};
use crate::status::{AddressConfig, StatusWriter};
use crate::sync;

/// Serves what the API server holds until SIGINT/SIGTERM, then drains.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let (_trigger, shutdown) = shutdown::on_signals();
    let listeners = Listeners::bind(&settings).await?;
    let cluster = &settings.cluster;
    let client = client(cluster).await?;
    tracing::info!(
        namespaces = %scope_text(&cluster.watch_namespaces),
        class = %settings.compile.ingress_class,
        "cluster mode: watching the Kubernetes API"
    );

    let metrics = Arc::new(Metrics::new()?);
    let ready = Arc::new(AtomicBool::new(false));
    let table = Arc::new(ArcSwap::from_pointee(RoutingTable::default()));
    let publisher = Publisher::new(
        table.clone(),
        metrics.clone(),
        ready.clone(),
        settings.compile.clone(),
    );
    let (reloads_tx, reloads) = reload::channel();
    let control = run::Control {
        report: publisher.report(),
        mode: "cluster",
        reload: reloads_tx,
    };

    let watchers = Watchers::spawn(
        &client,
        &WatchScope {
            namespaces: cluster.watch_namespaces.clone(),
            secret_label_selector: cluster.secret_label_selector.clone(),
            publish_service: cluster.publish_service.clone(),
        },
    );
    let (served_tx, served_rx) = watch::channel(None);
    let sync_task = tokio::spawn({
        let caches = watchers.caches.clone();
        let changes = watchers.changes.clone();
        let debounce = cluster.sync_debounce;
        async move {
            let run = sync::run(publisher, caches, changes, debounce, served_tx, reloads);
            if let Err(error) = run.await {
                tracing::error!(%error, "live updates stopped; the last table keeps serving");
            }
        }
    });

    let identity = leader::identity();
    let election = &cluster.election;
    let namespace = election
        .namespace
        .clone()
        .or_else(|| {
            std::env::var("POD_NAMESPACE")
                .ok()
                .filter(|ns| !ns.is_empty())
        })
        .unwrap_or_else(|| client.default_namespace().to_string());
    tracing::info!(%identity, lease = %election.id, %namespace, "leader election");
    let (leader, election_task) = leader::spawn(
        Api::namespaced(client.clone(), &namespace),
        ElectionConfig {
            lease_name: election.id.clone(),
            identity: identity.clone(),
            lease_duration: election.lease_duration,
            renew_deadline: election.renew_deadline,
            retry_period: election.retry_period,
        },
        shutdown.clone(),
    );
    let leader_gauge = tokio::spawn(leader_gauge(leader.clone(), metrics.clone()));
    let status_task = StatusWriter::new(
        client,
        watchers.caches.clone(),
        AddressConfig {
            fixed: cluster.publish_status_address.clone(),
            service: cluster.publish_service.clone(),
        },
        leader,
        identity,
    )
    .spawn(served_rx, watchers.changes.clone());

    let served = run::serve(
        &settings, listeners, table, metrics, ready, shutdown, control,
    )
    .await;
    // Status stops first; the elector has given the Lease up by now or
    // does within its release timeout.
    status_task.abort();
    sync_task.abort();
    leader_gauge.abort();
    let _ = election_task.await;
    drop(watchers);
    served
}

/// Keeps `leader_is_leader` at 1 while this replica leads. The elector
/// signals every renewal and every loss, so the gauge follows within a
/// retry period.
async fn leader_gauge(mut leader: leader::Leader, metrics: Arc<Metrics>) {
    loop {
        metrics.is_leader.set(i64::from(leader.is_leader()));
        if !leader.changed().await {
            metrics.is_leader.set(0);
            return;
        }
    }
}

/// The client: `--kubeconfig FILE`; else, in a pod, its service account
/// (a kubeconfig that happens to be in the image must not win over it);
/// else `$KUBECONFIG` or `~/.kube/config`.
async fn client(cluster: &ClusterSettings) -> anyhow::Result<Client> {
    let config = match &cluster.kubeconfig {
        Some(path) => from_file(path).await?,
        None if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() => {
            Config::incluster().context("cannot use the pod's service account")?
        }
        None => Config::infer().await.context(
            "no Kubernetes API to watch: not in a cluster and no kubeconfig found \
             (give --kubeconfig FILE, or --manifests DIR for standalone mode)",
        )?,
    };
    tracing::info!(server = %config.cluster_url, "Kubernetes API");
    Client::try_from(config).context("cannot build the Kubernetes client")
}

async fn from_file(path: &Path) -> anyhow::Result<Config> {
    let kubeconfig =
        Kubeconfig::read_from(path).with_context(|| format!("--kubeconfig {}", path.display()))?;
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("--kubeconfig {}", path.display()))
}

fn scope_text(namespaces: &[String]) -> String {
    if namespaces.is_empty() {
        "all".to_string()
    } else {
        namespaces.join(",")
    }
}
