//! Resolved settings: command-line flags over the TOML config file over
//! defaults, validated once at start-up.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use crate::cli::{
    ClusterArgs, CompileArgs, LimitArgs, ServeArgs, parse_cidr, parse_duration, parse_object_key,
    parse_size,
};
use crate::compile::CompileOptions;
use crate::proxy::access_log::Format as AccessLogFormat;
use crate::proxy::limits::{Limits, MIN_REQUEST_HEADER_SIZE};
use crate::proxy::normalize::EncodedSlashes;
use crate::source::ObjectKey;

pub const DEFAULT_HTTP_ADDR: &str = "0.0.0.0:8000";
pub const DEFAULT_METRICS_ADDR: &str = "0.0.0.0:9090";
pub const DEFAULT_HTTPS_ADDR: &str = "0.0.0.0:8443";
pub const DEFAULT_DASHBOARD_ADDR: &str = "127.0.0.1:3000";
/// The HTTPS port clients use in a cluster (a Service maps it to 8443); a
/// redirect Location to it names no port.
pub const DEFAULT_HTTPS_REDIRECT_PORT: u16 = 443;
pub const DEFAULT_INGRESS_CLASS: &str = "rust-strom";
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Short enough that one change is live well within 50 ms, long enough that
/// a rollout's burst of EndpointSlice updates compiles once.
pub const DEFAULT_SYNC_DEBOUNCE: Duration = Duration::from_millis(20);
pub const DEFAULT_ELECTION_ID: &str = "rust-strom-leader";
/// client-go's leader election timings.
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
pub const DEFAULT_RENEW_DEADLINE: Duration = Duration::from_secs(10);
pub const DEFAULT_RETRY_PERIOD: Duration = Duration::from_secs(2);

/// Everything a running proxy needs to know, resolved.
#[derive(Clone, Debug)]
pub struct Settings {
    pub manifests: Option<PathBuf>,
    pub http_addr: SocketAddr,
    pub https_addr: SocketAddr,
    /// `--https-redirect-port`; `None` means [`DEFAULT_HTTPS_REDIRECT_PORT`]
    /// (the demo puts its own HTTPS port there instead).
    pub https_redirect_port: Option<u16>,
    /// `--trusted-proxies`: peers whose `X-Forwarded-Proto` is believed.
    pub trusted_proxies: Vec<IpNet>,
    pub metrics_addr: SocketAddr,
    pub request_timeout: Duration,
    pub shutdown_grace: Duration,
    pub workers: usize,
    /// `--access-log`.
    pub access_log: AccessLogFormat,
    /// `--dashboard-addr`; `None` with `--dashboard false`.
    pub dashboard_addr: Option<SocketAddr>,
    /// `--dashboard-token`.
    pub dashboard_token: Option<Token>,
    /// The front door's timeouts and limits.
    pub limits: Limits,
    pub compile: CompileOptions,
    /// What cluster mode (no `--manifests`) needs; unused in standalone mode.
    pub cluster: ClusterSettings,
}

/// A secret from the settings: `Debug` never prints it.
#[derive(Clone)]
pub struct Token(pub String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

/// Cluster mode: the API server, the watched scope, status and election.
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    /// `--kubeconfig`; `None` infers (in-cluster, then `$KUBECONFIG`).
    pub kubeconfig: Option<PathBuf>,
    /// `--watch-namespace`: empty means every namespace.
    pub watch_namespaces: Vec<String>,
    /// `--secret-label-selector`, on top of `type=kubernetes.io/tls`.
    pub secret_label_selector: Option<String>,
    pub sync_debounce: Duration,
    /// `--publish-service`: whose addresses go into Ingress status.
    pub publish_service: Option<ObjectKey>,
    /// `--publish-status-address`: written as they are (wins over the Service).
    pub publish_status_address: Vec<String>,
    pub election: ElectionSettings,
}

/// The Lease that picks the one replica writing status and Events.
#[derive(Clone, Debug)]
pub struct ElectionSettings {
    pub id: String,
    /// `None`: `$POD_NAMESPACE`, else the client's default namespace.
    pub namespace: Option<String>,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

/// Why the settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML of the expected shape.
    #[error("config file {path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    /// A value is out of its range or malformed.
    #[error("{key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// The TOML config file: the same names as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FileConfig {
    pub manifests: Option<PathBuf>,
    pub http_addr: Option<SocketAddr>,
    pub https_addr: Option<SocketAddr>,
    pub https_redirect_port: Option<u16>,
    pub trusted_proxies: Option<Vec<String>>,
    pub metrics_addr: Option<SocketAddr>,
    pub request_timeout: Option<String>,
    pub shutdown_grace: Option<String>,
    pub workers: Option<usize>,
    pub access_log: Option<AccessLogFormat>,
    pub dashboard: Option<bool>,
    pub dashboard_addr: Option<SocketAddr>,
    pub dashboard_token: Option<String>,
    pub client_header_timeout: Option<String>,
    pub client_body_timeout: Option<String>,
    pub client_send_timeout: Option<String>,
    pub http2_idle_timeout: Option<String>,
    pub http2_keepalive: Option<String>,
    pub proxy_send_timeout: Option<String>,
    pub proxy_read_timeout: Option<String>,
    pub tls_handshake_timeout: Option<String>,
    pub max_request_header_size: Option<String>,
    pub max_connections: Option<usize>,
    pub encoded_slashes: Option<EncodedSlashes>,
    pub server_header: Option<bool>,
    pub compression: Option<bool>,
    pub proxy_protocol: Option<bool>,
    pub ingress_class: Option<String>,
    pub watch_ingress_without_class: Option<bool>,
    pub allow_external_name: Option<bool>,
    pub default_ssl_certificate: Option<String>,
    pub kubeconfig: Option<PathBuf>,
    pub watch_namespace: Option<Vec<String>>,
    pub secret_label_selector: Option<String>,
    pub sync_debounce: Option<String>,
    pub publish_service: Option<String>,
    pub publish_status_address: Option<Vec<String>>,
    pub election_id: Option<String>,
    pub election_namespace: Option<String>,
    pub election_lease_duration: Option<String>,
    pub election_renew_deadline: Option<String>,
    pub election_retry_period: Option<String>,
}

// === impl FileConfig ===

impl FileConfig {
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }
}

// === impl Settings ===

impl Settings {
    /// Flags win over the file; the file wins over defaults.
    pub fn resolve(args: &ServeArgs) -> Result<Self, ConfigError> {
        let file = FileConfig::load(args.config.as_deref())?;
        let manifests = args.manifests.clone().or(file.manifests.clone());
        let workers = args
            .workers
            .or(file.workers)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if workers == 0 {
            return Err(ConfigError::Invalid {
                key: "workers",
                reason: "must be at least 1".into(),
            });
        }
        let request_timeout = duration(
            args.request_timeout,
            &file.request_timeout,
            "request-timeout",
        )?
        .unwrap_or(DEFAULT_REQUEST_TIMEOUT);
        if request_timeout.is_zero() {
            return Err(ConfigError::Invalid {
                key: "request-timeout",
                reason: "must be more than 0".into(),
            });
        }
        let http_addr = args
            .http_addr
            .or(file.http_addr)
            .unwrap_or(addr(DEFAULT_HTTP_ADDR));
        // Asking for a free HTTP port means reading the ports from the log
        // (tests, several instances on one host): HTTPS takes a free port too
        // rather than a fixed one that a second instance would find taken.
        let https_addr = args.https_addr.or(file.https_addr).unwrap_or_else(|| {
            if http_addr.port() == 0 {
                SocketAddr::new(http_addr.ip(), 0)
            } else {
                addr(DEFAULT_HTTPS_ADDR)
            }
        });
        if https_addr == http_addr && https_addr.port() != 0 {
            return Err(ConfigError::Invalid {
                key: "https-addr",
                reason: format!("{https_addr} is also the HTTP address"),
            });
        }
        let dashboard_addr = args.dashboard.or(file.dashboard).unwrap_or(true).then(|| {
            args.dashboard_addr
                .or(file.dashboard_addr)
                .unwrap_or_else(|| {
                    // As for HTTPS: a free HTTP port asked for means a free
                    // dashboard port too, so instances never collide.
                    let default = addr(DEFAULT_DASHBOARD_ADDR);
                    if http_addr.port() == 0 {
                        SocketAddr::new(default.ip(), 0)
                    } else {
                        default
                    }
                })
        });
        let dashboard_token = args
            .dashboard_token
            .clone()
            .or(file.dashboard_token.clone())
            .filter(|t| !t.trim().is_empty())
            .map(Token);
        if let Some(addr) = dashboard_addr
            && !addr.ip().is_loopback()
            && dashboard_token.is_none()
        {
            return Err(ConfigError::Invalid {
                key: "dashboard-addr",
                reason: format!(
                    "{addr} is not loopback: set dashboard-token (or RUST_STROM_DASHBOARD_TOKEN), \
                     or bind 127.0.0.1"
                ),
            });
        }
        if dashboard_addr.is_some_and(|d| d == http_addr && d.port() != 0) {
            return Err(ConfigError::Invalid {
                key: "dashboard-addr",
                reason: "is also the HTTP address".into(),
            });
        }
        let https_redirect_port = args.https_redirect_port.or(file.https_redirect_port);
        if https_redirect_port == Some(0) {
            return Err(ConfigError::Invalid {
                key: "https-redirect-port",
                reason: "must be a port from 1 to 65535".into(),
            });
        }
        let trusted_proxies = match (&args.trusted_proxies, &file.trusted_proxies) {
            (Some(flag), _) => flag.clone(),
            (None, Some(file)) => file
                .iter()
                .map(|s| parse_cidr(s))
                .collect::<Result<_, _>>()
                .map_err(|reason| ConfigError::Invalid {
                    key: "trusted-proxies",
                    reason,
                })?,
            (None, None) => Vec::new(),
        };
        let limits = limits(&args.limits, &file)?;
        // Fail closed: with no trusted peer, no header would ever be taken,
        // and the flag would silently do nothing.
        if limits.proxy_protocol && trusted_proxies.is_empty() {
            return Err(ConfigError::Invalid {
                key: "proxy-protocol",
                reason: "needs trusted-proxies: the load balancers whose headers are believed"
                    .into(),
            });
        }
        Ok(Self {
            limits,
            compile: compile_options(&args.compile, &file, manifests.is_some())?,
            cluster: cluster_settings(&args.cluster, &file)?,
            manifests,
            http_addr,
            https_addr,
            https_redirect_port,
            trusted_proxies,
            metrics_addr: args
                .metrics_addr
                .or(file.metrics_addr)
                .unwrap_or(addr(DEFAULT_METRICS_ADDR)),
            request_timeout,
            shutdown_grace: duration(args.shutdown_grace, &file.shutdown_grace, "shutdown-grace")?
                .unwrap_or(DEFAULT_SHUTDOWN_GRACE),
            workers,
            access_log: args.access_log.or(file.access_log).unwrap_or_default(),
            dashboard_addr,
            dashboard_token,
        })
    }

    /// The routing flags alone, for `check`.
    pub fn compile_only(
        args: &CompileArgs,
        config: Option<&Path>,
    ) -> Result<CompileOptions, ConfigError> {
        let file = FileConfig::load(config)?;
        compile_options(args, &file, true)
    }
}

fn limits(args: &LimitArgs, file: &FileConfig) -> Result<Limits, ConfigError> {
    let d = Limits::default();
    // Every timeout must be above zero: zero would refuse every client.
    let timeout = |flag: Option<Duration>, file: &Option<String>, key, default| {
        let value = duration(flag, file, key)?.unwrap_or(default);
        if value.is_zero() {
            return Err(ConfigError::Invalid {
                key,
                reason: "must be more than 0".into(),
            });
        }
        Ok(value)
    };
    let max_request_header_size =
        match (args.max_request_header_size, &file.max_request_header_size) {
            (Some(flag), _) => flag,
            (None, Some(text)) => parse_size(text).map_err(|reason| ConfigError::Invalid {
                key: "max-request-header-size",
                reason,
            })?,
            (None, None) => d.max_request_header_size,
        };
    if max_request_header_size < MIN_REQUEST_HEADER_SIZE {
        return Err(ConfigError::Invalid {
            key: "max-request-header-size",
            reason: format!("must be at least {MIN_REQUEST_HEADER_SIZE} bytes"),
        });
    }
    let max_connections = args
        .max_connections
        .or(file.max_connections)
        .unwrap_or(d.max_connections);
    if max_connections == 0 {
        return Err(ConfigError::Invalid {
            key: "max-connections",
            reason: "must be at least 1".into(),
        });
    }
    Ok(Limits {
        client_header_timeout: timeout(
            args.client_header_timeout,
            &file.client_header_timeout,
            "client-header-timeout",
            d.client_header_timeout,
        )?,
        client_body_timeout: timeout(
            args.client_body_timeout,
            &file.client_body_timeout,
            "client-body-timeout",
            d.client_body_timeout,
        )?,
        client_send_timeout: timeout(
            args.client_send_timeout,
            &file.client_send_timeout,
            "client-send-timeout",
            d.client_send_timeout,
        )?,
        http2_idle_timeout: timeout(
            args.http2_idle_timeout,
            &file.http2_idle_timeout,
            "http2-idle-timeout",
            d.http2_idle_timeout,
        )?,
        http2_keepalive: timeout(
            args.http2_keepalive,
            &file.http2_keepalive,
            "http2-keepalive",
            d.http2_keepalive,
        )?,
        proxy_send_timeout: timeout(
            args.proxy_send_timeout,
            &file.proxy_send_timeout,
            "proxy-send-timeout",
            d.proxy_send_timeout,
        )?,
        proxy_read_timeout: timeout(
            args.proxy_read_timeout,
            &file.proxy_read_timeout,
            "proxy-read-timeout",
            d.proxy_read_timeout,
        )?,
        tls_handshake_timeout: timeout(
            args.tls_handshake_timeout,
            &file.tls_handshake_timeout,
            "tls-handshake-timeout",
            d.tls_handshake_timeout,
        )?,
        max_request_header_size,
        max_connections,
        encoded_slashes: args
            .encoded_slashes
            .or(file.encoded_slashes)
            .unwrap_or(d.encoded_slashes),
        server_header: args
            .server_header
            .or(file.server_header)
            .unwrap_or(d.server_header),
        compression: args
            .compression
            .or(file.compression)
            .unwrap_or(d.compression),
        proxy_protocol: args
            .proxy_protocol
            .or(file.proxy_protocol)
            .unwrap_or(d.proxy_protocol),
    })
}

fn compile_options(
    args: &CompileArgs,
    file: &FileConfig,
    standalone: bool,
) -> Result<CompileOptions, ConfigError> {
    let default_certificate = match (&args.default_ssl_certificate, &file.default_ssl_certificate) {
        (Some(flag), _) => Some(flag.clone()),
        (None, Some(file)) => {
            Some(
                parse_object_key(file).map_err(|reason| ConfigError::Invalid {
                    key: "default-ssl-certificate",
                    reason,
                })?,
            )
        }
        (None, None) => None,
    };
    Ok(CompileOptions {
        ingress_class: args
            .ingress_class
            .clone()
            .or(file.ingress_class.clone())
            .unwrap_or_else(|| DEFAULT_INGRESS_CLASS.to_string()),
        watch_without_class: args
            .watch_ingress_without_class
            .or(file.watch_ingress_without_class)
            .unwrap_or(standalone),
        allow_external_name: args
            .allow_external_name
            .or(file.allow_external_name)
            .unwrap_or(false),
        default_certificate,
    })
}

fn cluster_settings(args: &ClusterArgs, file: &FileConfig) -> Result<ClusterSettings, ConfigError> {
    let invalid = |key: &'static str, reason: String| ConfigError::Invalid { key, reason };
    let publish_service = match (&args.publish_service, &file.publish_service) {
        (Some(flag), _) => Some(flag.clone()),
        (None, Some(file)) => {
            Some(parse_object_key(file).map_err(|reason| invalid("publish-service", reason))?)
        }
        (None, None) => None,
    };
    let list = |flag: &Option<Vec<String>>, file: &Option<Vec<String>>| -> Vec<String> {
        flag.clone()
            .or_else(|| file.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let sync_debounce = duration(args.sync_debounce, &file.sync_debounce, "sync-debounce")?
        .unwrap_or(DEFAULT_SYNC_DEBOUNCE);
    if sync_debounce > Duration::from_secs(10) {
        return Err(invalid("sync-debounce", "must be at most 10s".into()));
    }
    let election = ElectionSettings {
        id: args
            .election_id
            .clone()
            .or(file.election_id.clone())
            .unwrap_or_else(|| DEFAULT_ELECTION_ID.to_string()),
        namespace: args
            .election_namespace
            .clone()
            .or(file.election_namespace.clone()),
        lease_duration: duration(
            args.election_lease_duration,
            &file.election_lease_duration,
            "election-lease-duration",
        )?
        .unwrap_or(DEFAULT_LEASE_DURATION),
        renew_deadline: duration(
            args.election_renew_deadline,
            &file.election_renew_deadline,
            "election-renew-deadline",
        )?
        .unwrap_or(DEFAULT_RENEW_DEADLINE),
        retry_period: duration(
            args.election_retry_period,
            &file.election_retry_period,
            "election-retry-period",
        )?
        .unwrap_or(DEFAULT_RETRY_PERIOD),
    };
    // As client-go insists: a leader must give up before its Lease can be
    // taken, and must get several tries before it gives up.
    if election.renew_deadline >= election.lease_duration {
        return Err(invalid(
            "election-renew-deadline",
            "must be shorter than election-lease-duration".into(),
        ));
    }
    if election.retry_period.is_zero() || election.retry_period >= election.renew_deadline {
        return Err(invalid(
            "election-retry-period",
            "must be more than 0 and shorter than election-renew-deadline".into(),
        ));
    }
    if election.lease_duration < Duration::from_secs(1) {
        return Err(invalid(
            "election-lease-duration",
            "must be at least 1s (the Lease counts whole seconds)".into(),
        ));
    }
    Ok(ClusterSettings {
        kubeconfig: args.kubeconfig.clone().or(file.kubeconfig.clone()),
        watch_namespaces: list(&args.watch_namespace, &file.watch_namespace),
        secret_label_selector: args
            .secret_label_selector
            .clone()
            .or(file.secret_label_selector.clone())
            .filter(|s| !s.trim().is_empty()),
        sync_debounce,
        publish_service,
        publish_status_address: list(&args.publish_status_address, &file.publish_status_address),
        election,
    })
}

fn duration(
    flag: Option<Duration>,
    file: &Option<String>,
    key: &'static str,
) -> Result<Option<Duration>, ConfigError> {
    if flag.is_some() {
        return Ok(flag);
    }
    file.as_deref()
        .map(|s| {
            parse_duration(s).map_err(|e| ConfigError::Invalid {
                key,
                reason: format!("{s:?}: {e}"),
            })
        })
        .transpose()
}

fn addr(s: &str) -> SocketAddr {
    // The defaults are constant, valid addresses.
    s.parse().unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    use crate::cli::Cli;

    fn settings(argv: &[&str]) -> Result<Settings, ConfigError> {
        let cli =
            Cli::try_parse_from(std::iter::once("rust-strom").chain(argv.iter().copied())).unwrap();
        Settings::resolve(&cli.serve)
    }

    #[test]
    fn defaults() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.http_addr, "0.0.0.0:8000".parse().unwrap());
        assert_eq!(s.metrics_addr, "0.0.0.0:9090".parse().unwrap());
        assert_eq!(s.request_timeout, Duration::from_secs(30));
        assert_eq!(s.shutdown_grace, Duration::from_secs(30));
        assert_eq!(s.compile.ingress_class, "rust-strom");
        assert!(!s.compile.watch_without_class);
        assert!(!s.compile.allow_external_name);
        assert!(s.workers >= 1);
        assert_eq!(s.https_addr, "0.0.0.0:8443".parse().unwrap());
        assert_eq!(s.https_redirect_port, None);
        assert!(s.trusted_proxies.is_empty());
        assert_eq!(s.compile.default_certificate, None);
        assert!(
            settings(&["--manifests", "x"])
                .unwrap()
                .compile
                .watch_without_class
        );
    }

    #[test]
    fn flags_win_over_the_file_which_wins_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "http-addr = \"127.0.0.1:1000\"\nrequest-timeout = \"500ms\"\nshutdown-grace = \"1m\"\n\
             ingress-class = \"from-file\"\nworkers = 3\nwatch-ingress-without-class = false\nmanifests = \"m\"\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let s = settings(&[
            "-c",
            path,
            "--http-addr",
            "127.0.0.1:2000",
            "--workers",
            "2",
        ])
        .unwrap();
        assert_eq!(s.http_addr, "127.0.0.1:2000".parse().unwrap());
        assert_eq!(s.request_timeout, Duration::from_millis(500));
        assert_eq!(s.shutdown_grace, Duration::from_secs(60));
        assert_eq!(s.compile.ingress_class, "from-file");
        assert_eq!(s.workers, 2);
        assert!(!s.compile.watch_without_class, "the file turned it off");
        let s = settings(&[
            "-c",
            path,
            "--watch-ingress-without-class",
            "--request-timeout",
            "10s",
        ])
        .unwrap();
        assert!(s.compile.watch_without_class);
        assert_eq!(s.request_timeout, Duration::from_secs(10));
    }

    #[test]
    fn dashboard_settings_from_flags_and_file() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.dashboard_addr, Some("127.0.0.1:3000".parse().unwrap()));
        assert!(s.dashboard_token.is_none());
        // A free HTTP port asked for: a free dashboard port too.
        let s = settings(&["--http-addr", "127.0.0.1:0"]).unwrap();
        assert_eq!(s.dashboard_addr, Some("127.0.0.1:0".parse().unwrap()));
        assert_eq!(
            settings(&["--dashboard", "false"]).unwrap().dashboard_addr,
            None
        );

        // Beyond loopback only with a token, which never shows in Debug.
        let err = settings(&["--dashboard-addr", "0.0.0.0:3000"]).unwrap_err();
        assert!(err.to_string().contains("dashboard-token"), "{err}");
        let s = settings(&[
            "--dashboard-addr",
            "0.0.0.0:3000",
            "--dashboard-token",
            "t0k3n",
        ])
        .unwrap();
        assert_eq!(s.dashboard_token.as_ref().unwrap().0, "t0k3n");
        assert!(!format!("{s:?}").contains("t0k3n"));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "dashboard-addr = \"0.0.0.0:3100\"\ndashboard-token = \"from-file\"\n",
        )
        .unwrap();
        let s = settings(&["-c", file.to_str().unwrap()]).unwrap();
        assert_eq!(s.dashboard_addr, Some("0.0.0.0:3100".parse().unwrap()));
        assert_eq!(s.dashboard_token.unwrap().0, "from-file");
        std::fs::write(&file, "dashboard = false\n").unwrap();
        let s = settings(&["-c", file.to_str().unwrap()]).unwrap();
        assert_eq!(s.dashboard_addr, None);
    }

    #[test]
    fn proxy_protocol_needs_trusted_proxies() {
        let err = settings(&["--proxy-protocol"]).unwrap_err().to_string();
        assert!(
            err.contains("proxy-protocol: needs trusted-proxies"),
            "{err}"
        );
        let s = settings(&["--proxy-protocol", "--trusted-proxies", "10.0.0.0/8"]).unwrap();
        assert!(s.limits.proxy_protocol);
        assert!(
            !settings(&[]).unwrap().limits.proxy_protocol,
            "off by default"
        );
    }

    #[test]
    fn tls_settings_from_flags_and_file() {
        let s = settings(&["--http-addr", "127.0.0.1:0"]).unwrap();
        assert_eq!(
            s.https_addr,
            "127.0.0.1:0".parse().unwrap(),
            "a free port too"
        );
        let s = settings(&[
            "--https-addr",
            "127.0.0.1:9443",
            "--https-redirect-port",
            "8443",
            "--trusted-proxies",
            "10.0.0.0/8, 192.168.1.7",
            "--default-ssl-certificate",
            "infra/default-tls",
        ])
        .unwrap();
        assert_eq!(s.https_addr, "127.0.0.1:9443".parse().unwrap());
        assert_eq!(s.https_redirect_port, Some(8443));
        let want: Vec<IpNet> = vec![
            "10.0.0.0/8".parse().unwrap(),
            "192.168.1.7/32".parse().unwrap(),
        ];
        assert_eq!(s.trusted_proxies, want);
        assert_eq!(
            s.compile.default_certificate.unwrap().to_string(),
            "infra/default-tls"
        );

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "https-addr = \"127.0.0.1:7443\"\nhttps-redirect-port = 4443\n\
             trusted-proxies = [\"fd00::/8\"]\ndefault-ssl-certificate = \"a/b\"\n",
        )
        .unwrap();
        let s = settings(&["-c", file.to_str().unwrap()]).unwrap();
        assert_eq!(s.https_addr, "127.0.0.1:7443".parse().unwrap());
        assert_eq!(s.https_redirect_port, Some(4443));
        assert_eq!(
            s.trusted_proxies,
            vec!["fd00::/8".parse::<IpNet>().unwrap()]
        );
        assert_eq!(s.compile.default_certificate.unwrap().to_string(), "a/b");

        for bad in [
            "trusted-proxies = [\"10.0.0.0/33\"]\n",
            "default-ssl-certificate = \"no-namespace\"\n",
            "https-redirect-port = 0\n",
            "http-addr = \"127.0.0.1:8000\"\nhttps-addr = \"127.0.0.1:8000\"\n",
        ] {
            std::fs::write(&file, bad).unwrap();
            assert!(
                matches!(
                    settings(&["-c", file.to_str().unwrap()]),
                    Err(ConfigError::Invalid { .. })
                ),
                "{bad}"
            );
        }
        assert!(Cli::try_parse_from(["rust-strom", "--trusted-proxies", "nope"]).is_err());
        assert!(Cli::try_parse_from(["rust-strom", "--default-ssl-certificate", "/x"]).is_err());
    }

    #[test]
    fn cluster_settings_from_flags_and_file() {
        let s = settings(&[]).unwrap().cluster;
        assert_eq!(s.kubeconfig, None);
        assert!(s.watch_namespaces.is_empty());
        assert_eq!(s.sync_debounce, Duration::from_millis(20));
        assert_eq!(s.election.id, "rust-strom-leader");
        assert_eq!(s.election.namespace, None);
        assert_eq!(s.election.lease_duration, Duration::from_secs(15));
        assert_eq!(s.election.renew_deadline, Duration::from_secs(10));
        assert_eq!(s.election.retry_period, Duration::from_secs(2));

        let s = settings(&[
            "--kubeconfig",
            "kc.yaml",
            "--watch-namespace",
            "a",
            "--watch-namespace",
            "b,c",
            "--secret-label-selector",
            "ingress=yes",
            "--sync-debounce",
            "5ms",
            "--publish-service",
            "infra/lb",
            "--publish-status-address",
            "10.0.0.9, lb.example",
            "--election-id",
            "mine",
            "--election-namespace",
            "ops",
        ])
        .unwrap()
        .cluster;
        assert_eq!(s.kubeconfig, Some(PathBuf::from("kc.yaml")));
        assert_eq!(s.watch_namespaces, ["a", "b", "c"]);
        assert_eq!(s.secret_label_selector.as_deref(), Some("ingress=yes"));
        assert_eq!(s.sync_debounce, Duration::from_millis(5));
        assert_eq!(s.publish_service.unwrap().to_string(), "infra/lb");
        assert_eq!(s.publish_status_address, ["10.0.0.9", "lb.example"]);
        assert_eq!(
            (s.election.id.as_str(), s.election.namespace.as_deref()),
            ("mine", Some("ops"))
        );

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "kubeconfig = \"/etc/kc\"\nwatch-namespace = [\"shop\"]\nsync-debounce = \"50ms\"\n\
             publish-service = \"infra/lb\"\npublish-status-address = [\"10.0.0.1\"]\n\
             election-id = \"f\"\nelection-namespace = \"n\"\nelection-lease-duration = \"4s\"\n\
             election-renew-deadline = \"3s\"\nelection-retry-period = \"500ms\"\n\
             secret-label-selector = \"a=b\"\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let s = settings(&["-c", path, "--election-id", "flag"])
            .unwrap()
            .cluster;
        assert_eq!(s.kubeconfig, Some(PathBuf::from("/etc/kc")));
        assert_eq!(s.watch_namespaces, ["shop"]);
        assert_eq!(s.sync_debounce, Duration::from_millis(50));
        assert_eq!(s.election.id, "flag", "the flag wins");
        assert_eq!(s.election.lease_duration, Duration::from_secs(4));
        assert_eq!(s.election.renew_deadline, Duration::from_secs(3));
        assert_eq!(s.election.retry_period, Duration::from_millis(500));

        for bad in [
            &["--election-renew-deadline", "15s"][..],
            &["--election-retry-period", "10s"],
            &["--election-retry-period", "0s"],
            &["--sync-debounce", "1m"],
        ] {
            assert!(
                matches!(settings(bad), Err(ConfigError::Invalid { .. })),
                "{bad:?}"
            );
        }
        std::fs::write(&file, "publish-service = \"no-namespace\"\n").unwrap();
        assert!(matches!(
            settings(&["-c", path]),
            Err(ConfigError::Invalid { .. })
        ));
        assert!(Cli::try_parse_from(["rust-strom", "--publish-service", "x"]).is_err());
    }

    #[test]
    fn limits_from_flags_and_file() {
        let l = settings(&[]).unwrap().limits;
        assert_eq!(l.client_header_timeout, Duration::from_secs(30));
        assert_eq!(l.client_body_timeout, Duration::from_secs(60));
        assert_eq!(l.http2_keepalive, Duration::from_secs(20));
        assert_eq!(l.max_request_header_size, 64 * 1024);
        assert_eq!(l.max_connections, 16_384);
        assert_eq!(l.encoded_slashes, EncodedSlashes::Keep);
        assert!(l.server_header);
        assert!(!l.compression, "off by default, as ingress-nginx");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "client-body-timeout = \"5s\"\nmax-request-header-size = \"32KiB\"\n\
             max-connections = 100\nencoded-slashes = \"reject\"\nserver-header = false\n\
             proxy-read-timeout = \"5m\"\ncompression = true\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let l = settings(&[
            "-c",
            path,
            "--max-connections",
            "7",
            "--encoded-slashes",
            "decode",
        ])
        .unwrap()
        .limits;
        assert_eq!(l.client_body_timeout, Duration::from_secs(5));
        assert_eq!(l.max_request_header_size, 32 * 1024);
        assert_eq!(l.max_connections, 7, "the flag wins");
        assert_eq!(l.encoded_slashes, EncodedSlashes::Decode);
        assert!(!l.server_header);
        assert_eq!(l.proxy_read_timeout, Duration::from_secs(300));
        assert!(l.compression);

        for bad in [
            &["--client-header-timeout", "0s"][..],
            &["--max-request-header-size", "4KiB"],
            &["--max-connections", "0"],
        ] {
            assert!(
                matches!(settings(bad), Err(ConfigError::Invalid { .. })),
                "{bad:?}"
            );
        }
        assert!(
            Cli::try_parse_from(["rust-strom", "--max-request-header-size", "64 parsecs"]).is_err()
        );
        assert!(Cli::try_parse_from(["rust-strom", "--encoded-slashes", "maybe"]).is_err());
    }

    #[test]
    fn bad_values_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "request-timeout = \"soon\"\n").unwrap();
        let err = settings(&["-c", file.to_str().unwrap()]).unwrap_err();
        assert!(
            err.to_string().starts_with("request-timeout: \"soon\""),
            "{err}"
        );

        std::fs::write(&file, "no-such-key = 1\n").unwrap();
        assert!(matches!(
            settings(&["-c", file.to_str().unwrap()]),
            Err(ConfigError::Parse { .. })
        ));
        assert!(matches!(
            settings(&["--workers", "0"]),
            Err(ConfigError::Invalid { .. })
        ));
        assert!(Cli::try_parse_from(["rust-strom", "--request-timeout", "10 parsecs"]).is_err());
    }
}
