//! Command-line arguments. Every serving flag can also be set in the TOML
//! file given with `-c/--config`; a flag on the command line wins.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use ipnet::IpNet;

use crate::proxy::access_log::Format as AccessLogFormat;
use crate::proxy::normalize::EncodedSlashes;
use crate::source::ObjectKey;

/// A Kubernetes ingress controller and load balancer.
#[derive(Debug, Parser)]
#[command(name = "rust-strom", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once, at start
pub enum Command {
    /// Load a manifests folder, print the routing table and every problem;
    /// exit non-zero when an object was rejected or a file does not parse.
    Check(CheckArgs),
    /// Start three echo backends on loopback and route `demo.local` to them
    /// (manifests written to --manifests DIR, or to a temporary folder).
    Demo(ServeArgs),
    /// Print the CustomResourceDefinitions RustStrom reads (BalancerPolicy)
    /// as YAML, ready for `kubectl apply -f -`.
    Crds,
}

/// Flags for serving traffic.
#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// TOML file with any of the flags below, as `kebab-case = value`.
    #[arg(short = 'c', long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Standalone mode: serve the Kubernetes objects in the YAML/JSON files
    /// under DIR, and apply edits live.
    #[arg(long, value_name = "DIR")]
    pub manifests: Option<PathBuf>,
    /// Proxy listener [default: 0.0.0.0:8000]. Port 0 picks a free port.
    #[arg(long, value_name = "ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// HTTPS listener [default: 0.0.0.0:8443; a free port on the same IP
    /// when --http-addr asks for port 0].
    #[arg(long, value_name = "ADDR")]
    pub https_addr: Option<SocketAddr>,
    /// The port put in the Location of an HTTP -> HTTPS redirect: the port
    /// clients reach HTTPS on, outside any port mapping [default: 443, which
    /// the Location leaves out].
    #[arg(long, value_name = "PORT")]
    pub https_redirect_port: Option<u16>,
    /// Proxies or load balancers whose X-Forwarded-Proto and
    /// X-Forwarded-Port are believed, as CIDRs or addresses, comma-separated
    /// [default: none].
    #[arg(long, value_name = "CIDR,...", value_delimiter = ',', value_parser = parse_cidr)]
    pub trusted_proxies: Option<Vec<IpNet>>,
    /// `/metrics`, `/healthz` and `/readyz` [default: 0.0.0.0:9090].
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Time to the backend's response headers before 504 [default: 30s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub request_timeout: Option<Duration>,
    /// Time requests in flight get to finish on SIGINT/SIGTERM [default: 30s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub shutdown_grace: Option<Duration>,
    /// Runtime worker threads [default: one per CPU].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// One line per request on standard output: `json`, `text`
    /// (ingress-nginx's format) or `off` [default: json].
    #[arg(long, value_name = "FORMAT")]
    pub access_log: Option<AccessLogFormat>,
    /// Serve the dashboard [default: true].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub dashboard: Option<bool>,
    /// The dashboard's listener [default: 127.0.0.1:3000; 127.0.0.1:0 when
    /// --http-addr asks for port 0]. Any address but loopback needs
    /// --dashboard-token.
    #[arg(long, value_name = "ADDR")]
    pub dashboard_addr: Option<SocketAddr>,
    /// The token the dashboard asks for (as `Authorization: Bearer`, or in
    /// its login form) [default: none, loopback only].
    #[arg(
        long,
        value_name = "TOKEN",
        env = "RUST_STROM_DASHBOARD_TOKEN",
        hide_env_values = true
    )]
    pub dashboard_token: Option<String>,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub compile: CompileArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Limits at the front door: what one client, or one backend, may cost.
#[derive(Debug, Args, Default)]
pub struct LimitArgs {
    /// A new connection must send a whole request head within this; an
    /// HTTP/1.1 keep-alive connection idle this long is closed [default: 30s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub client_header_timeout: Option<Duration>,
    /// Longest pause between two pieces of a request body; then 408
    /// [default: 60s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub client_body_timeout: Option<Duration>,
    /// Longest a client may leave the answer unread before its connection
    /// is closed [default: 60s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub client_send_timeout: Option<Duration>,
    /// An HTTP/2 connection with no request open this long is closed
    /// [default: 60s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub http2_idle_timeout: Option<Duration>,
    /// HTTP/2 clients are pinged this often, and dropped when a ping is not
    /// answered within the same time [default: 20s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub http2_keepalive: Option<Duration>,
    /// Longest a backend may leave a request body unread; then 504
    /// [default: 60s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub proxy_send_timeout: Option<Duration>,
    /// Longest pause between two pieces of a backend's response body; then
    /// the answer is cut off [default: 60s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub proxy_read_timeout: Option<Duration>,
    /// A TLS client must finish its handshake within this [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub tls_handshake_timeout: Option<Duration>,
    /// Request line and headers together, in bytes (`64KiB` works); larger
    /// heads get 431 [default: 64KiB, at least 8KiB].
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub max_request_header_size: Option<usize>,
    /// Client connections served at once over both listeners; at the cap new
    /// ones wait in the kernel's backlog [default: 16384].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// `%2F` and `%5C` in paths: kept encoded (`keep`), decoded to `/`
    /// before routing (`decode`), or refused with 400 (`reject`)
    /// [default: keep].
    #[arg(long, value_name = "MODE")]
    pub encoded_slashes: Option<EncodedSlashes>,
    /// Send `Server: rust-strom` on every answer, replacing the backend's
    /// [default: true].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub server_header: Option<bool>,
    /// Compress answers (gzip, brotli, zstd, as the client accepts) on
    /// routes whose Ingress does not set `ruststrom.io/compression`
    /// [default: false].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub compression: Option<bool>,
    /// Peers in --trusted-proxies (a load balancer) must open each
    /// connection with a PROXY protocol header (v1 or v2) giving the
    /// client's address; others must not send one [default: false].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub proxy_protocol: Option<bool>,
}

/// Flags for cluster mode (no `--manifests`): where the API server is, what
/// to watch, how to report status, and the leader election.
#[derive(Debug, Args, Default)]
pub struct ClusterArgs {
    /// Kubeconfig file [default: the pod's service account in a cluster,
    /// else $KUBECONFIG, else ~/.kube/config].
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Watch only this namespace (repeat the flag, or comma-separate, for
    /// several) [default: all namespaces].
    #[arg(long, value_name = "NS", value_delimiter = ',')]
    pub watch_namespace: Option<Vec<String>>,
    /// Cache only the `kubernetes.io/tls` Secrets with these labels
    /// (`app=web,tier!=test`) [default: every TLS Secret].
    #[arg(long, value_name = "SELECTOR")]
    pub secret_label_selector: Option<String>,
    /// Changes arriving within this window are compiled as one table
    /// [default: 20ms].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub sync_debounce: Option<Duration>,
    /// The Service whose load-balancer addresses (else cluster IP) are
    /// written to the status of served Ingresses.
    #[arg(long, value_name = "NAMESPACE/NAME", value_parser = parse_object_key)]
    pub publish_service: Option<ObjectKey>,
    /// IPs or host names written to the status of served Ingresses,
    /// comma-separated (wins over --publish-service).
    #[arg(long, value_name = "ADDR,...", value_delimiter = ',')]
    pub publish_status_address: Option<Vec<String>>,
    /// Name of the Lease the replicas elect a status writer with
    /// [default: rust-strom-leader].
    #[arg(long, value_name = "NAME")]
    pub election_id: Option<String>,
    /// Namespace of that Lease [default: $POD_NAMESPACE, else the
    /// kubeconfig's or service account's namespace].
    #[arg(long, value_name = "NS")]
    pub election_namespace: Option<String>,
    /// How long a leader's Lease holds without renewal [default: 15s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub election_lease_duration: Option<Duration>,
    /// A leader that could not renew for this long stops writing [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub election_renew_deadline: Option<Duration>,
    /// How often the Lease is tried or renewed [default: 2s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub election_retry_period: Option<Duration>,
}

/// Flags that decide what is routed.
#[derive(Debug, Args, Default)]
pub struct CompileArgs {
    /// The ingress class served [default: rust-strom].
    #[arg(long, value_name = "NAME")]
    pub ingress_class: Option<String>,
    /// Also serve Ingresses that name no class [default: true with
    /// --manifests, false otherwise].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub watch_ingress_without_class: Option<bool>,
    /// Allow routes to `ExternalName` Services (off by default: it lets an
    /// Ingress author send traffic to any host name).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub allow_external_name: Option<bool>,
    /// The `kubernetes.io/tls` Secret that answers TLS clients sending no
    /// SNI or a name no Ingress lists [default: a self-signed certificate
    /// generated at start].
    #[arg(long, value_name = "NAMESPACE/NAME", value_parser = parse_object_key)]
    pub default_ssl_certificate: Option<ObjectKey>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The folder to check.
    #[arg(long, value_name = "DIR")]
    pub manifests: PathBuf,
    /// TOML file, as for serving (only the routing flags matter here).
    #[arg(short = 'c', long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub compile: CompileArgs,
}

/// `10.0.0.0/8`, `fd00::/8`, or one address (`10.0.0.7` is `10.0.0.7/32`).
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is not a CIDR (10.0.0.0/8) or an IP address"))
}

/// `namespace/name`, both parts present.
pub fn parse_object_key(s: &str) -> Result<ObjectKey, String> {
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(ObjectKey::new(ns, name))
        }
        _ => Err(format!("{s:?} is not NAMESPACE/NAME")),
    }
}

/// A byte count: `65536`, `64KiB`, `64k`, `1MiB`.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let scale: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        _ => return Err(format!("{s:?}: unknown unit (use bytes, KiB or MiB)")),
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("{s:?} is not a size such as 65536 or 64KiB"))
}

/// `500ms`, `10s`, `1m`, `1h 30m`.
pub fn parse_duration(s: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(s)
}
