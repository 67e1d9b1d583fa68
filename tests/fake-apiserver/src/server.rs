//! The server handle: binding 127.0.0.1, the accept loop (one task per
//! connection, all stopped when the handle drops), kube clients and
//! kubeconfigs pointing at it, and fault injection.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use parking_lot::Mutex;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::faults::{Fault, Faults};
use crate::resources::{Registry, ResourceType};
use crate::respond::Body;
use crate::routes;
use crate::store::{Store, Via};
use crate::watch::WatchSettings;

/// How many requests [`FakeApiServer::requests`] remembers.
const MAX_RECORDED: usize = 10_000;

/// A running fake API server on 127.0.0.1. Dropping it stops the server and
/// ends every connection and watch.
#[derive(Debug)]
pub struct FakeApiServer {
    shared: Arc<Shared>,
}

/// Options for [`FakeApiServer::builder`].
#[derive(Debug, Clone)]
pub struct Builder {
    port: u16,
    bookmark_interval: Duration,
    watch_timeout: Duration,
    history_limit: usize,
    default_namespaces: bool,
    extra: Vec<ResourceType>,
}

/// One request as the server saw it, for tests that assert on traffic
/// (e.g. that a watcher relisted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, undecoded.
    pub path: String,
    /// The query string, undecoded ("" when none).
    pub query: String,
}

/// What every connection task shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub store: Arc<Store>,
    pub watch: WatchSettings,
    pub shutdown: CancellationToken,
    pub addr: SocketAddr,
    delay_ms: AtomicU64,
    pub(crate) faults: Faults,
    requests: Mutex<VecDeque<RecordedRequest>>,
}

// === impl Builder ===

impl Default for Builder {
    fn default() -> Self {
        Self {
            port: 0,
            bookmark_interval: Duration::from_secs(1),
            // The real server picks 30-60 minutes for watches that set no timeout.
            watch_timeout: Duration::from_secs(30 * 60),
            history_limit: 100_000,
            default_namespaces: true,
            extra: Vec::new(),
        }
    }
}

impl Builder {
    /// The port to bind on 127.0.0.1 (default 0: any free port).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// How often watches that allow bookmarks get one (default 1 s).
    pub fn bookmark_interval(mut self, interval: Duration) -> Self {
        self.bookmark_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// How long a watch without `timeoutSeconds` lasts (default 30 min).
    pub fn watch_timeout(mut self, timeout: Duration) -> Self {
        self.watch_timeout = timeout;
        self
    }

    /// How many changes are kept for watches to resume from; older ones
    /// are compacted away (default 100 000).
    pub fn history_limit(mut self, changes: usize) -> Self {
        self.history_limit = changes;
        self
    }

    /// Starts without the `default`, `kube-system`, `kube-public` and
    /// `kube-node-lease` namespaces a real cluster has.
    pub fn without_default_namespaces(mut self) -> Self {
        self.default_namespaces = false;
        self
    }

    /// Serves one more type (a CRD) from the start.
    pub fn resource(mut self, res: ResourceType) -> Self {
        self.extra.push(res);
        self
    }

    /// Binds 127.0.0.1 and starts serving on the current tokio runtime.
    pub async fn start(self) -> std::io::Result<FakeApiServer> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, self.port)).await?;
        let addr = listener.local_addr()?;
        let registry = Registry::with_defaults();
        for res in self.extra {
            registry.register(res);
        }
        let store = Arc::new(Store::new(Arc::new(registry), self.history_limit));
        if self.default_namespaces {
            for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
                let namespace =
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
                store
                    .create_obj(&namespace_type(&store), None, namespace, Via::Direct)
                    .map_err(std::io::Error::other)?;
            }
        }
        let shared = Arc::new(Shared {
            store,
            watch: WatchSettings {
                bookmark_interval: self.bookmark_interval,
                default_timeout: self.watch_timeout,
            },
            shutdown: CancellationToken::new(),
            addr,
            delay_ms: AtomicU64::new(0),
            faults: Faults::default(),
            requests: Mutex::new(VecDeque::new()),
        });
        tokio::spawn(accept_loop(listener, shared.clone()));
        tracing::info!(%addr, "fake API server listening");
        Ok(FakeApiServer { shared })
    }
}

fn namespace_type(store: &Store) -> Arc<ResourceType> {
    store
        .registry()
        .by_plural("", "v1", "namespaces")
        .unwrap_or_else(|| {
            Arc::new(ResourceType::new(
                "",
                "v1",
                "namespaces",
                "Namespace",
                false,
            ))
        })
}

// === impl FakeApiServer ===

impl FakeApiServer {
    /// Starts a server with the defaults on a free port of 127.0.0.1.
    pub async fn start() -> std::io::Result<Self> {
        Builder::default().start().await
    }

    /// Options for a server: port, bookmark interval, history size, CRDs.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.shared.addr.port()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// A kube config for this server, default namespace `default`.
    pub fn kube_config(&self) -> kube::Config {
        #[expect(clippy::expect_used, reason = "http://127.0.0.1:PORT always parses")]
        let uri = self.url().parse().expect("a valid URL");
        kube::Config::new(uri)
    }

    /// An unmodified kube client talking to this server.
    pub fn client(&self) -> kube::Result<kube::Client> {
        kube::Client::try_from(self.kube_config())
    }

    /// A kubeconfig document pointing at this server (context `fake`).
    pub fn kubeconfig_yaml(&self) -> String {
        crate::kubeconfig::render(&self.url())
    }

    /// Writes [`Self::kubeconfig_yaml`] to `path`, for a real binary or kubectl.
    pub fn write_kubeconfig(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml())
    }

    /// Direct access to the objects, without HTTP.
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// Serves one more type from now on (a CRD).
    pub fn register(&self, res: ResourceType) {
        self.shared.store.registry().register(res);
    }

    /// Compacts history: every resourceVersion handed out so far becomes too
    /// old, so watches resuming from one get a 410 `Expired` ERROR event, and
    /// paged or exact lists at one get 410. Open watches go on (as on a real
    /// server); pair with [`Self::drop_watches`] to force the resume.
    pub fn expire_history(&self) {
        self.shared.store.expire_history();
    }

    /// Ends every open watch stream cleanly, as an API server restart does;
    /// clients resume from their last resourceVersion.
    pub fn drop_watches(&self) {
        self.shared.store.drop_watches();
    }

    /// Delays every response (watch streams: their start) by `delay`.
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.shared.delay_ms.store(ms, Ordering::Relaxed);
    }

    /// Holds every request for one resource, by plural (`endpointslices`,
    /// `leases`): lists, watch starts, reads and writes wait until
    /// [`Self::resume`], as behind a stalled API server. Other resources
    /// are served as usual; watches already open keep streaming.
    pub fn hold(&self, plural: &str) {
        self.shared.faults.set(plural, Some(Fault::Hold));
    }

    /// Answers every request for one resource, by plural, with a 500
    /// `InternalError` until [`Self::resume`]; requests held by
    /// [`Self::hold`] are answered so too.
    pub fn fail(&self, plural: &str) {
        self.shared.faults.set(plural, Some(Fault::Fail));
    }

    /// Serves one resource as usual again after [`Self::hold`] or
    /// [`Self::fail`]; held requests go on.
    pub fn resume(&self, plural: &str) {
        self.shared.faults.set(plural, None);
    }

    /// The requests served so far (the last 10 000), oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests.lock().iter().cloned().collect()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.shared.requests.lock().clear();
    }

    /// Resolves when the server stops (it never does on its own; for `main`).
    pub async fn stopped(&self) {
        self.shared.shutdown.cancelled().await;
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}

// === impl Shared ===

impl Shared {
    async fn serve(&self, req: Request<Incoming>) -> http::Response<Body> {
        let recorded = RecordedRequest {
            method: req.method().to_string(),
            path: req.uri().path().to_string(),
            query: req.uri().query().unwrap_or("").to_string(),
        };
        tracing::debug!(method = %recorded.method, path = %recorded.path, query = %recorded.query, "request");
        {
            // Bounded, so a standalone server running for days stays small.
            let mut requests = self.requests.lock();
            if requests.len() == MAX_RECORDED {
                requests.pop_front();
            }
            requests.push_back(recorded);
        }
        let delay = self.delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        routes::handle(self, req).await
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    // Dropping the set when the loop ends aborts every connection task.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(serve_connection(stream, shared.clone()));
                }
                Err(err) => {
                    // Out of file descriptors and the like: back off, go on.
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(stream: tokio::net::TcpStream, shared: Arc<Shared>) {
    let shutdown = shared.shutdown.clone();
    let service = service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(shared.serve(req).await) }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        result = conn => {
            if let Err(err) = result {
                tracing::debug!(%err, "connection ended with an error");
            }
        }
        _ = shutdown.cancelled() => {}
    }
}
