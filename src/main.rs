//! The `rust-strom` binary: parse flags, set up logging, run a mode.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use rust_strom::cli::{Cli, Command};
use rust_strom::config::Settings;

/// mimalloc: fewer instructions per allocation than glibc's malloc, and no
/// lock contention between workers (see the README's Performance section).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Some(Command::Check(args)) => {
            let options = Settings::compile_only(&args.compile, args.config.as_deref())?;
            anyhow::ensure!(
                args.manifests.is_dir(),
                "--manifests {}: not a folder",
                args.manifests.display()
            );
            let report = rust_strom::check::check(&args.manifests, &options);
            print!("{}", report.text);
            Ok(if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Some(Command::Crds) => {
            print!("{}", rust_strom::crd::crds_yaml()?);
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Demo(args)) => {
            let mut settings = Settings::resolve(&args)?;
            rust_strom::proxy::limits::fit_to_file_limit(&mut settings.limits);
            runtime(settings.workers)?.block_on(rust_strom::demo::run(settings))?;
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let mut settings = Settings::resolve(&cli.serve)?;
            rust_strom::proxy::limits::fit_to_file_limit(&mut settings.limits);
            let workers = settings.workers;
            if settings.manifests.is_some() {
                runtime(workers)?.block_on(rust_strom::run::standalone(settings))?;
            } else {
                // No folder: watch the Kubernetes API (cluster mode).
                runtime(workers)?.block_on(rust_strom::cluster::run(settings))?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// One worker gets tokio's single-threaded scheduler: the same one thread
/// serving everything, without the work-stealing bookkeeping (measurably
/// fewer instructions per request). More workers share tasks by stealing.
fn runtime(workers: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(workers);
        builder
    };
    Ok(builder.thread_name("rust-strom").enable_all().build()?)
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
