//! Sync latency at scale: how long one change takes to become the live
//! table, with 1,000 and 10,000 Ingresses loaded (`cargo bench --bench
//! sync`). Prints figures; asserts nothing about time.
//!
//! Each Ingress has 3 paths to its own Service, whose EndpointSlice holds 5
//! endpoints. Ingresses are spread over files of 100, as a GitOps repository
//! might hold them. Columns:
//!
//! - full compile: `compile()` of everything.
//! - 1 manifest change: standalone mode. One file rewritten with one path
//!   renamed; reload (stat every file, re-read the changed one, update the
//!   snapshot) + compile + swap: what the watcher does after its debounce.
//! - 1 Ingress change: cluster mode. One Ingress replaced in the snapshot
//!   (as the sync loop applies a watch event) + compile + swap.
//! - 1 endpoint change: cluster mode's endpoint-only path. One EndpointSlice
//!   changed, its backend refreshed in a copy of the live table.
//! - full publish: a Service changed, which takes a full compile + swap.
#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark fails loudly

mod fixtures;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rust_strom::compile::{CompileOptions, compile};
use rust_strom::metrics::Metrics;
use rust_strom::model::RoutingTable;
use rust_strom::publish::Publisher;
use rust_strom::source::ObjectKey;
use rust_strom::source::files::ManifestDir;

const PER_FILE: usize = 100;
const CHANGES: usize = 100;
/// Full compiles are slow: a few tell their cost.
const FULL_ROUNDS: usize = 5;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test` runs this as a smoke test
    // (a debug build at 10,000 Ingresses would only slow the suite down).
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick") || !args.iter().any(|a| a == "--bench");
    let sizes: &[usize] = if quick { &[1_000] } else { &[1_000, 10_000] };
    println!(
        "| ingresses | paths | endpoints | full compile | 1 manifest change p50 | p99 | max | 1 Ingress change p50 | p99 | 1 endpoint change p50 | p99 | full publish p50 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for &n in sizes {
        run(n, if quick { 10 } else { CHANGES });
    }
}

fn run(ingresses: usize, changes: usize) {
    let tmp = tempfile::tempdir().expect("temp dir");
    for file in 0..ingresses.div_ceil(PER_FILE) {
        write_file(tmp.path(), file, ingresses, 0);
    }
    let options = CompileOptions {
        ingress_class: "rust-strom".into(),
        watch_without_class: true,
        allow_external_name: false,
        default_certificate: None,
    };
    let mut dir = ManifestDir::new(tmp.path());
    dir.reload();
    let snapshot = dir.snapshot();
    let started = Instant::now();
    let compiled = compile(&snapshot, &options, 1, std::time::SystemTime::now());
    let full = started.elapsed();
    assert_eq!(compiled.table.len(), ingresses * 3, "every path compiled");
    assert!(
        compiled.problems.is_empty(),
        "{:?}",
        compiled.problems.first()
    );

    let table = Arc::new(ArcSwap::from_pointee(RoutingTable::default()));
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let mut publisher = Publisher::new(
        table.clone(),
        metrics,
        Arc::new(AtomicBool::new(false)),
        options,
    );
    publisher.publish(&snapshot, tokio::time::Instant::now());

    let mut samples = Vec::with_capacity(changes);
    for round in 1..=changes {
        let file = round % ingresses.div_ceil(PER_FILE);
        write_file(tmp.path(), file, ingresses, round);
        let started = Instant::now();
        let reload = dir.reload();
        assert!(reload.changed);
        publisher.publish(dir.current(), tokio::time::Instant::now());
        samples.push(started.elapsed());
        let probe = format!("/v{round}/p0");
        let host = format!("h{}.bench.local", file * PER_FILE);
        assert!(
            table.load().lookup(&host, &probe).is_some(),
            "the change is live"
        );
    }
    // Cluster mode: one Ingress changes in the snapshot the sync loop
    // keeps, and is compiled into the live table.
    let mut snapshot = dir.snapshot();
    let mut ingress_changes = Vec::with_capacity(changes);
    for round in 1..=changes {
        let i = (round * 7919) % ingresses;
        let key = ObjectKey::new("bench", format!("ing-{i}"));
        let mut ingress = (*snapshot.ingresses[&key]).clone();
        let rules = ingress.spec.as_mut().and_then(|s| s.rules.as_mut());
        let http = rules.and_then(|r| r[0].http.as_mut()).expect("paths");
        http.paths[0].path = Some(format!("/c{round}/p0"));
        let started = Instant::now();
        snapshot.ingresses.insert(key, Arc::new(ingress));
        publisher.publish(&snapshot, tokio::time::Instant::now());
        ingress_changes.push(started.elapsed());
        let host = format!("h{i}.bench.local");
        let probe = format!("/c{round}/p0");
        let live = table.load();
        let route = live.lookup(&host, &probe).expect("the change is live");
        assert_eq!(route.source, format!("bench/ing-{i}"));
    }

    // Cluster mode's endpoint-only path: one EndpointSlice changes, the
    // affected backend is refreshed in a copy of the live table.
    let mut refresh = Vec::with_capacity(changes);
    for round in 1..=changes {
        let i = (round * 7919) % ingresses;
        let key = ObjectKey::new("bench", format!("svc-{i}-a"));
        let mut slice = (*snapshot.endpoint_slices[&key]).clone();
        for ep in slice.endpoints.iter_mut().flatten() {
            ep.addresses = vec![format!("10.250.{}.{}", round % 250, i % 250)];
        }
        snapshot.endpoint_slices.insert(key, Arc::new(slice));
        let started = Instant::now();
        let refreshed = publisher.refresh_endpoints(&snapshot, tokio::time::Instant::now());
        refresh.push(started.elapsed());
        assert_eq!(refreshed, 1, "one backend refreshed");
    }

    // Anything but Ingresses and endpoints: a full compile.
    let mut full_publish = Vec::new();
    for round in 1..=FULL_ROUNDS {
        let key = ObjectKey::new("bench", format!("svc-{round}"));
        let mut service = (*snapshot.services[&key]).clone();
        service
            .metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert("round".into(), round.to_string());
        snapshot.services.insert(key, Arc::new(service));
        let started = Instant::now();
        publisher.publish(&snapshot, tokio::time::Instant::now());
        full_publish.push(started.elapsed());
    }

    let pct = |samples: &mut Vec<Duration>, p: f64| {
        samples.sort();
        samples[((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1]
    };
    println!(
        "| {ingresses} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        ingresses * 3,
        ingresses * 5,
        ms(full),
        ms(pct(&mut samples, 0.50)),
        ms(pct(&mut samples, 0.99)),
        ms(*samples.last().unwrap_or(&Duration::ZERO)),
        ms(pct(&mut ingress_changes, 0.50)),
        ms(pct(&mut ingress_changes, 0.99)),
        ms(pct(&mut refresh, 0.50)),
        ms(pct(&mut refresh, 0.99)),
        ms(pct(&mut full_publish, 0.50)),
    );
}

/// Writes file `file` with its 100 Ingresses; `version` renames the first
/// path of the first Ingress so that every write is a real change.
fn write_file(dir: &Path, file: usize, total: usize, version: usize) {
    let mut out = String::new();
    for i in file * PER_FILE..((file + 1) * PER_FILE).min(total) {
        let first = if i == file * PER_FILE && version > 0 {
            format!("/v{version}/p0")
        } else {
            "/p0".to_string()
        };
        fixtures::write_ingress(&mut out, i, &format!("h{i}.bench.local"), &first);
    }
    let path = dir.join(format!("ingresses-{file:04}.yaml"));
    let staged = dir.join(format!(".ingresses-{file:04}.tmp"));
    std::fs::write(&staged, out).expect("write manifest");
    std::fs::rename(&staged, &path).expect("rename manifest");
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
