//! Command-line arguments. Every serving flag can also be set in the TOML
//! file given with `-c/--config`; a flag on the command line wins.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

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
pub enum Command {
    /// Load a manifests folder, print the routing table and every problem;
    /// exit non-zero when an object was rejected or a file does not parse.
    Check(CheckArgs),
    /// Start three echo backends on loopback and route `demo.local` to them
    /// (manifests written to --manifests DIR, or to a temporary folder).
    Demo(ServeArgs),
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
    #[command(flatten)]
    pub compile: CompileArgs,
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

/// `500ms`, `10s`, `1m`, `1h 30m`.
pub fn parse_duration(s: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(s)
}
