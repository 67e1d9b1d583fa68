//! Resolved settings: command-line flags over the TOML config file over
//! defaults, validated once at start-up.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cli::{CompileArgs, ServeArgs, parse_duration};
use crate::compile::CompileOptions;

pub const DEFAULT_HTTP_ADDR: &str = "0.0.0.0:8000";
pub const DEFAULT_METRICS_ADDR: &str = "0.0.0.0:9090";
pub const DEFAULT_INGRESS_CLASS: &str = "rust-strom";
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Everything a running proxy needs to know, resolved.
#[derive(Clone, Debug)]
pub struct Settings {
    pub manifests: Option<PathBuf>,
    pub http_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub request_timeout: Duration,
    pub shutdown_grace: Duration,
    pub workers: usize,
    pub compile: CompileOptions,
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
    pub metrics_addr: Option<SocketAddr>,
    pub request_timeout: Option<String>,
    pub shutdown_grace: Option<String>,
    pub workers: Option<usize>,
    pub ingress_class: Option<String>,
    pub watch_ingress_without_class: Option<bool>,
    pub allow_external_name: Option<bool>,
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
        Ok(Self {
            compile: compile_options(&args.compile, &file, manifests.is_some()),
            manifests,
            http_addr: args
                .http_addr
                .or(file.http_addr)
                .unwrap_or(addr(DEFAULT_HTTP_ADDR)),
            metrics_addr: args
                .metrics_addr
                .or(file.metrics_addr)
                .unwrap_or(addr(DEFAULT_METRICS_ADDR)),
            request_timeout,
            shutdown_grace: duration(args.shutdown_grace, &file.shutdown_grace, "shutdown-grace")?
                .unwrap_or(DEFAULT_SHUTDOWN_GRACE),
            workers,
        })
    }

    /// The routing flags alone, for `check`.
    pub fn compile_only(
        args: &CompileArgs,
        config: Option<&Path>,
    ) -> Result<CompileOptions, ConfigError> {
        let file = FileConfig::load(config)?;
        Ok(compile_options(args, &file, true))
    }
}

fn compile_options(args: &CompileArgs, file: &FileConfig, standalone: bool) -> CompileOptions {
    CompileOptions {
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
    }
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
