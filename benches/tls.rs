//! TLS 1.3 handshakes per second on loopback through the proxy's own server
//! configuration and certificate resolver (`cargo bench --bench tls`):
//! full handshakes, and resumed ones (session tickets), for an ECDSA P-256
//! certificate and, when the `openssl` command is there, an RSA-2048 one
//! (cert-manager's default). Prints figures; asserts nothing about time.
//!
//! Client and server run in this one process on the same cores, so the
//! figures include the client's work: a lower bound for the server alone.
//! Each connection does the handshake plus a one-byte round trip, which is
//! also what delivers the session ticket to the client. Under `cargo test`
//! (no `--bench` argument) it runs a few handshakes of each kind only.
#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark fails loudly

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rust_strom::model::{Certificate, HostMatch, HostTls, TableBuilder, TlsBuilder};
use rust_strom::proxy::tls::{acceptor, provider};
use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

const HOST: &str = "bench.local";

fn main() {
    let full_run = std::env::args().any(|a| a == "--bench");
    let (duration, max) = if full_run {
        (Duration::from_secs(3), usize::MAX)
    } else {
        (Duration::from_secs(1), 10)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!("| certificate | handshake | clients | handshakes/s | resumed |");
    println!("|---|---|---|---|---|");
    let mut certs = vec![("ECDSA P-256", ecdsa())];
    if let Some(rsa) = rsa() {
        certs.push(("RSA 2048", rsa));
    }
    for (name, (chain, key)) in certs {
        runtime.block_on(async {
            let port = server(&chain, &key).await;
            for resumed in [false, true] {
                for clients in [1, 4] {
                    let (rate, resumed_share) =
                        measure(port, &chain, resumed, clients, duration, max).await;
                    println!(
                        "| {name} | {} | {clients} | {rate:.0} | {:.0}% |",
                        if resumed { "resumed" } else { "full" },
                        resumed_share * 100.0
                    );
                    // Concurrent clients share the ticket cache, so a few of
                    // theirs may find no ticket left and start over in full.
                    if resumed {
                        assert!(resumed_share > 0.5, "tickets must resume sessions");
                    }
                }
            }
        });
    }
}

/// The proxy's TLS stack on a loopback port: each connection handshakes,
/// echoes one byte and closes.
async fn server(chain: &[CertificateDer<'static>], key: &PrivateKeyDer<'static>) -> u16 {
    let signing = provider()
        .key_provider
        .load_private_key(key.clone_key())
        .expect("key");
    let certificate = Certificate {
        key: Arc::new(CertifiedKey::new(chain.to_vec(), signing)),
        secret: "bench/tls".into(),
        not_after: i64::MAX,
    };
    let mut tls = TlsBuilder::default();
    tls.add(
        &HostMatch::Exact(HOST.into()),
        HostTls {
            certificate: Some(certificate),
            secret: "bench/tls".into(),
            source: "bench/ing".into(),
        },
    )
    .expect("host");
    let mut table = TableBuilder::new(1);
    table.set_tls(tls.build());
    let shared = Arc::new(ArcSwap::from_pointee(table.build()));
    let acceptor = acceptor(shared).expect("acceptor");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut byte = [0u8; 1];
                // TLS writes are buffered until flushed.
                if tls.read_exact(&mut byte).await.is_ok() && tls.write_all(&byte).await.is_ok() {
                    let _ = tls.flush().await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    port
}

/// Handshakes per second with `clients` concurrent connection loops, and
/// the share of them that resumed a session.
async fn measure(
    port: u16,
    chain: &[CertificateDer<'static>],
    resume: bool,
    clients: usize,
    duration: Duration,
    max: usize,
) -> (f64, f64) {
    let mut roots = RootCertStore::empty();
    roots.add(chain[0].clone()).expect("trust anchor");
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    if !resume {
        config.resumption = Resumption::disabled();
    }
    let connector = TlsConnector::from(Arc::new(config));
    // One full handshake first so that every measured one can resume.
    if resume {
        one(&connector, port).await;
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let connector = connector.clone();
        tasks.push(tokio::spawn(async move {
            let (mut done, mut resumed) = (0usize, 0usize);
            while started.elapsed() < duration && done < max {
                resumed += usize::from(one(&connector, port).await);
                done += 1;
            }
            (done, resumed)
        }));
    }
    let (mut done, mut resumed) = (0, 0);
    for task in tasks {
        let (d, r) = task.await.expect("client");
        done += d;
        resumed += r;
    }
    let secs = started.elapsed().as_secs_f64();
    (done as f64 / secs, resumed as f64 / done.max(1) as f64)
}

/// One connection: handshake, one byte there and back. Whether it resumed.
async fn one(connector: &TlsConnector, port: u16) -> bool {
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let name = ServerName::try_from(HOST).expect("name");
    let mut tls = connector.connect(name, tcp).await.expect("handshake");
    let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    tls.write_all(b"x").await.expect("write");
    tls.flush().await.expect("flush");
    let mut byte = [0u8; 1];
    tls.read_exact(&mut byte).await.expect("read");
    resumed
}

fn ecdsa() -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let generated =
        rcgen::generate_simple_self_signed(vec![HOST.to_string()]).expect("certificate");
    let key = PrivateKeyDer::Pkcs8(generated.signing_key.serialize_der().into());
    (vec![generated.cert.der().clone()], key)
}

/// An RSA-2048 certificate from the `openssl` command (ring cannot generate
/// RSA keys); `None` when the command is not there.
fn rsa() -> Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let dir = tempfile::tempdir().ok()?;
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    let status = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        // A leaf, not a CA: webpki refuses a CA certificate as a server's.
        .args(["-addext", "basicConstraints=critical,CA:FALSE", "-subj"])
        .arg(format!("/CN={HOST}"))
        .arg("-addext")
        .arg(format!("subjectAltName=DNS:{HOST}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .ok()?;
    if !status.success() {
        return None;
    }
    let chain = CertificateDer::pem_file_iter(&cert)
        .ok()?
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    let key = PrivateKeyDer::from_pem_file(&key).ok()?;
    Some((chain, key))
}
