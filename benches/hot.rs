//! Micro-benchmarks of the hot pieces of the request path and the control
//! plane, with divan: `cargo bench --bench hot` (one group:
//! `cargo bench --bench hot -- lookup`). Prints figures; asserts nothing
//! about time.
//!
//! - `lookup`: `RoutingTable::lookup` in tables compiled from 10 and 10,000
//!   Ingresses (3 paths each, as `benches/sync.rs` builds them; every tenth
//!   Ingress has a wildcard host), for an exact host hit, a wildcard host
//!   hit and a miss. The cost should not grow with the number of Ingresses.
//! - `pick`: `Backend::pick` (the balancer behind every request) for each
//!   algorithm over 5 and 100 idle, healthy endpoints. The hashing ones get
//!   a fresh key each time, hashed as the handler hashes it.
//! - `headers`: `strip_hop_by_hop` + `add_forwarding` on a copy of a
//!   browser-like request header set (12 headers), as the handler rewrites
//!   a request for its backend.
//! - `compile_ingresses`: `compile::compile` of 100, 1,000 and 10,000
//!   Ingresses, each with its Service and a 5-endpoint EndpointSlice.
//! - `records`: what a request pays for its record (`Records::begin`, the
//!   record dropped unfinished): with the access log off and nobody
//!   watching the dashboard's feed (nothing is built), with a watcher, and
//!   with the access log on.
//!
//! `cargo test --benches` runs every benchmark once as a smoke test; there
//! (a debug build) the 10,000-Ingress cases are cut to 1,000.
#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark fails loudly

mod fixtures;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use divan::Bencher;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use rust_strom::balance::hash_with;
use rust_strom::compile::{CompileOptions, compile};
use rust_strom::model::{Algorithm, Backend, BackendPolicy, Endpoint, EndpointAddr, RoutingTable};
use rust_strom::proxy::headers::{ConnInfo, add_forwarding, strip_hop_by_hop};
use rust_strom::source::{Snapshot, parse_manifest};

fn main() {
    divan::main();
}

mod records {
    use super::*;
    use rust_strom::proxy::access_log::{AccessLog, Format};
    use rust_strom::proxy::feed::Feed;
    use rust_strom::proxy::records::Records;

    fn request() -> http::Request<()> {
        http::Request::get("/shop/cart?id=7")
            .header("host", "shop.example.com")
            .header("user-agent", "bench/1.0")
            .body(())
            .unwrap()
    }

    fn begin(bencher: Bencher, records: Arc<Records>) {
        let req = request();
        let start = tokio::time::Instant::now();
        bencher.bench(|| {
            divan::black_box(records.begin(
                divan::black_box(&req),
                || IpAddr::V4(Ipv4Addr::LOCALHOST),
                None,
                start,
            ))
        });
    }

    #[divan::bench]
    fn nobody_watching(bencher: Bencher) {
        let records = Arc::new(Records {
            log: None,
            feed: Some(Feed::new()),
        });
        begin(bencher, records);
    }

    #[divan::bench]
    fn one_watcher(bencher: Bencher) {
        let feed = Feed::new();
        let _watch = feed.watch().unwrap();
        let records = Arc::new(Records {
            log: None,
            feed: Some(feed),
        });
        begin(bencher, records);
    }

    #[divan::bench]
    fn access_log_on(bencher: Bencher) {
        let log = AccessLog::start(
            Format::Json,
            Box::new(std::io::sink()),
            prometheus::IntCounter::new("d", "d").unwrap(),
        )
        .unwrap();
        let records = Arc::new(Records {
            log,
            feed: Some(Feed::new()),
        });
        begin(bencher, records);
    }
}

/// `cargo bench` passes `--bench`; `cargo test --benches` does not.
fn bench_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// Ingress counts, with 10,000 cut to 1,000 outside `cargo bench`.
fn ingress_counts(counts: &[usize]) -> Vec<usize> {
    let mut out: Vec<usize> = counts
        .iter()
        .map(|&n| if bench_mode() { n } else { n.min(1_000) })
        .collect();
    out.dedup();
    out
}

// === lookup ===

mod lookup {
    use super::*;

    /// The request path: a prefix rule's subtree.
    const PATH: &str = "/p1/users/42";

    #[divan::bench(args = ingress_counts(&[10, 10_000]))]
    fn exact_host(bencher: Bencher, ingresses: usize) {
        let table = table(ingresses);
        // Ingress n/2 has an exact host (only every tenth is a wildcard).
        let host = format!("h{}.bench.local", ingresses / 2);
        let hit = table.lookup(&host, PATH).expect("exact host routed");
        assert_eq!(hit.source, format!("bench/ing-{}", ingresses / 2));
        bencher.bench(|| {
            table
                .lookup(divan::black_box(&host), divan::black_box(PATH))
                .is_some()
        });
    }

    #[divan::bench(args = ingress_counts(&[10, 10_000]))]
    fn wildcard_host(bencher: Bencher, ingresses: usize) {
        let table = table(ingresses);
        // The last Ingress's host is `*.w{n-1}.bench.local`.
        let host = format!("www.w{}.bench.local", ingresses - 1);
        let hit = table.lookup(&host, PATH).expect("wildcard host routed");
        assert_eq!(hit.source, format!("bench/ing-{}", ingresses - 1));
        bencher.bench(|| {
            table
                .lookup(divan::black_box(&host), divan::black_box(PATH))
                .is_some()
        });
    }

    /// An unknown host: every level (exact, wildcard, any, default) misses.
    #[divan::bench(args = ingress_counts(&[10, 10_000]))]
    fn miss(bencher: Bencher, ingresses: usize) {
        let table = table(ingresses);
        let host = "nope.example.org";
        assert!(table.lookup(host, PATH).is_none());
        bencher.bench(|| {
            table
                .lookup(divan::black_box(host), divan::black_box(PATH))
                .is_some()
        });
    }
}

// === pick ===

mod pick {
    use super::*;

    const ENDPOINTS: &[usize] = &[5, 100];

    #[divan::bench(args = ENDPOINTS)]
    fn round_robin(bencher: Bencher, endpoints: usize) {
        run(bencher, Algorithm::RoundRobin, endpoints);
    }

    #[divan::bench(args = ENDPOINTS)]
    fn weighted_round_robin(bencher: Bencher, endpoints: usize) {
        run(bencher, Algorithm::WeightedRoundRobin, endpoints);
    }

    #[divan::bench(args = ENDPOINTS)]
    fn random(bencher: Bencher, endpoints: usize) {
        run(bencher, Algorithm::Random, endpoints);
    }

    #[divan::bench(args = ENDPOINTS)]
    fn least_connection(bencher: Bencher, endpoints: usize) {
        run(bencher, Algorithm::LeastConnection, endpoints);
    }

    #[divan::bench(args = ENDPOINTS)]
    fn peak_ewma(bencher: Bencher, endpoints: usize) {
        run(bencher, Algorithm::PeakEwma, endpoints);
    }

    /// Maglev, keyed by the client IP.
    #[divan::bench(args = ENDPOINTS)]
    fn ip_hash(bencher: Bencher, endpoints: usize) {
        run(bencher, Algorithm::IpHash, endpoints);
    }

    /// Maglev, keyed by a header or cookie value.
    #[divan::bench(args = ENDPOINTS)]
    fn consistent_hash(bencher: Bencher, endpoints: usize) {
        run(bencher, Algorithm::ConsistentHash, endpoints);
    }

    fn run(bencher: Bencher, algorithm: Algorithm, endpoints: usize) {
        let ready: Vec<Endpoint> = (0..endpoints)
            .map(|i| {
                let ip = Ipv4Addr::new(10, 0, (i / 250) as u8, (i % 250) as u8);
                Endpoint::new(EndpointAddr::Ip((ip, 8080).into())).unwrap()
            })
            .collect();
        let weights = (0..endpoints).map(|i| 1 + (i % 3) as u32).collect();
        let policy = BackendPolicy {
            algorithm,
            ..BackendPolicy::default()
        };
        let backend = Backend::with_policy(
            "bench/svc:80".into(),
            "bench/svc".into(),
            ready,
            vec![],
            weights,
            Arc::new(policy),
        );
        // The balancers (Maglev's table too) are built on first use: here,
        // not in the measurement.
        assert!(backend.pick(Some(1), None).is_some());
        let sessions: Vec<String> = (0..256).map(|i| format!("session-{i:08x}")).collect();
        let mut k: u32 = 0;
        bencher.bench_local(|| {
            k = k.wrapping_add(1);
            let hash = match algorithm {
                Algorithm::IpHash => Some(hash_with(IpAddr::V4(Ipv4Addr::from(k)), 0)),
                Algorithm::ConsistentHash => {
                    Some(hash_with(sessions[k as usize % 256].as_bytes(), 0))
                }
                _ => None,
            };
            backend.pick(hash, None).map(|p| p.endpoint)
        });
    }
}

// === headers ===

mod headers {
    use super::*;

    /// A browser's navigation request, straight from the client. (A fixed
    /// sample size: divan tunes it on one cold first run, which here is
    /// slow enough to leave it at one call per timing, near the timer's
    /// precision.)
    #[divan::bench(sample_size = 64)]
    fn browser(bencher: Bencher) {
        rewrite(bencher, &[], false);
    }

    /// The same behind a trusted proxy that already added its forwarding
    /// headers and a request id.
    #[divan::bench(sample_size = 64)]
    fn behind_proxy(bencher: Bencher) {
        rewrite(
            bencher,
            &[
                ("x-forwarded-for", "203.0.113.7"),
                ("x-forwarded-proto", "https"),
                ("x-request-id", "4bf92f3577b34da6a3ce929d0e0e4736"),
            ],
            true,
        );
    }

    fn rewrite(bencher: Bencher, extra: &[(&'static str, &'static str)], trusted: bool) {
        let mut headers = HeaderMap::new();
        for (name, value) in BROWSER.iter().chain(extra) {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        let mut conn = ConnInfo::new(
            "198.51.100.23:53144".parse().unwrap(),
            "0.0.0.0:8000".parse().unwrap(),
            "http",
        );
        conn.trusted = trusted;
        let host = headers.get(http::header::HOST).cloned();
        bencher
            .with_inputs(|| headers.clone())
            .bench_local_refs(|h| {
                strip_hop_by_hop(h);
                add_forwarding(h, &conn, host.as_ref());
            });
    }

    const BROWSER: &[(&str, &str)] = &[
        ("host", "shop.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        ),
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
        ),
        ("accept-language", "en-US,en;q=0.9,de;q=0.8"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("referer", "https://shop.example.com/cart"),
        (
            "cookie",
            "session=6f1c2a9e8b7d4c3f; theme=dark; _ga=GA1.2.1234567890.1700000000",
        ),
        ("connection", "keep-alive"),
        ("upgrade-insecure-requests", "1"),
        ("sec-fetch-mode", "navigate"),
        ("sec-fetch-site", "same-origin"),
        ("cache-control", "max-age=0"),
    ];
}

// === compile ===

/// The whole compile step: classes, Services, EndpointSlices, routes.
#[divan::bench(args = ingress_counts(&[100, 1_000, 10_000]), sample_count = 30)]
fn compile_ingresses(bencher: Bencher, ingresses: usize) {
    let snapshot = snapshot(ingresses);
    let now = SystemTime::now();
    let compiled = compile(snapshot, &options(), 1, now);
    assert_eq!(compiled.table.len(), ingresses * 3, "every path compiled");
    assert!(
        compiled.problems.is_empty(),
        "{:?}",
        compiled.problems.first()
    );
    let options = options();
    bencher.bench(|| compile(snapshot, &options, 1, now));
}

// === fixtures ===

fn options() -> CompileOptions {
    CompileOptions {
        ingress_class: "rust-strom".into(),
        watch_without_class: true,
        allow_external_name: false,
        default_certificate: None,
    }
}

/// The snapshot of `ingresses` Ingresses, built once per size.
fn snapshot(ingresses: usize) -> &'static Snapshot {
    static SNAPSHOTS: [OnceLock<Snapshot>; 4] = [const { OnceLock::new() }; 4];
    cell(&SNAPSHOTS, ingresses).get_or_init(|| {
        let mut snapshot = Snapshot::default();
        for object in parse_manifest(&manifests(ingresses)).expect("manifests parse") {
            snapshot.insert(&object);
        }
        snapshot
    })
}

/// The compiled table of `ingresses` Ingresses, built once per size.
fn table(ingresses: usize) -> &'static RoutingTable {
    static TABLES: [OnceLock<RoutingTable>; 4] = [const { OnceLock::new() }; 4];
    cell(&TABLES, ingresses).get_or_init(|| {
        let compiled = compile(snapshot(ingresses), &options(), 1, SystemTime::now());
        assert_eq!(compiled.table.len(), ingresses * 3, "every path compiled");
        compiled.table
    })
}

/// The cached value for a size: sizes are powers of ten from 10 to
/// 10,000, one cell each.
fn cell<T>(cells: &'static [OnceLock<T>; 4], ingresses: usize) -> &'static OnceLock<T> {
    let i = ingresses.ilog10();
    assert!(
        (1..=4).contains(&i) && 10usize.pow(i) == ingresses,
        "{ingresses} Ingresses: not a power of ten from 10 to 10,000"
    );
    &cells[i as usize - 1]
}

/// `ingresses` Ingresses as `benches/sync.rs` writes them (3 paths to their
/// own Service, an EndpointSlice of 5 endpoints), except that every tenth
/// (`i % 10 == 9`) has the wildcard host `*.w{i}.bench.local` instead of
/// `h{i}.bench.local`.
fn manifests(ingresses: usize) -> String {
    let mut out = String::new();
    for i in 0..ingresses {
        let host = if i % 10 == 9 {
            format!("\"*.w{i}.bench.local\"")
        } else {
            format!("h{i}.bench.local")
        };
        fixtures::write_ingress(&mut out, i, &host, "/p0");
    }
    out
}
