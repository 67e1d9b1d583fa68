//! `fake-apiserver`: the fake Kubernetes API server on its own, for trying
//! the controller or kubectl by hand.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use fake_apiserver::FakeApiServer;

/// A fake Kubernetes API server on 127.0.0.1 (plain HTTP, no auth).
#[derive(Debug, Parser)]
#[command(name = "fake-apiserver", version)]
struct Args {
    /// Port to listen on; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Write a kubeconfig pointing at the server to this file.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Load the YAML/JSON manifests under this folder at start.
    #[arg(long)]
    manifests: Option<PathBuf>,
    /// How often watches get BOOKMARK events.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    bookmark_interval: Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "fake_apiserver=info".into()),
        )
        .init();
    let args = Args::parse();
    let server = FakeApiServer::builder()
        .port(args.port)
        .bookmark_interval(args.bookmark_interval)
        .start()
        .await
        .with_context(|| format!("binding 127.0.0.1:{}", args.port))?;
    if let Some(dir) = &args.manifests {
        let loaded = fake_apiserver::manifests::load_dir(server.store(), dir)
            .with_context(|| format!("reading {}", dir.display()))?;
        println!("loaded {} objects from {}", loaded.applied, dir.display());
        for skipped in &loaded.skipped {
            println!("skipped {skipped}");
        }
    }
    if let Some(path) = &args.kubeconfig {
        server
            .write_kubeconfig(path)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("kubeconfig written to {}", path.display());
    }
    println!("fake API server listening on {}", server.url());
    tokio::select! {
        signal = tokio::signal::ctrl_c() => signal.context("waiting for Ctrl-C")?,
        _ = server.stopped() => {}
    }
    Ok(())
}
