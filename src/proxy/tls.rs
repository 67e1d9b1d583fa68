//! TLS termination: the rustls server configuration, the certificate
//! resolver that reads the live routing table on every handshake, and the
//! handshake itself, bounded in time and run in the connection's own task.
//!
//! Crypto provider: `ring`. aws-lc-rs is faster at RSA signing but needs
//! cmake and a C toolchain and builds far slower; ring needs neither and
//! its ECDSA and TLS 1.3 handshakes are quick (see `benches/tls.rs`).

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, ServerConfig};
use rustls::sign::CertifiedKey;
use rustls::{PeerIncompatible, version};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::SharedTable;
use crate::metrics::Metrics;
use crate::model::normalize_host;
use crate::shutdown::Shutdown;

/// A client that has not finished its handshake by then is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The name in the generated default certificate, as ingress-nginx's fake
/// certificate has `ingress.local`.
pub const GENERATED_CERTIFICATE_NAME: &str = "ingress.local";

/// Why the HTTPS listener cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The self-signed default certificate could not be generated.
    #[error("cannot generate the default certificate")]
    Generate(#[source] rcgen::Error),
    /// rustls refused the generated key or the protocol settings.
    #[error("TLS configuration refused")]
    Config(#[source] rustls::Error),
}

/// Picks the certificate for each handshake from the live table: SNI, then
/// the table's default certificate, then the one generated at start.
pub struct CertResolver {
    table: SharedTable,
    generated: Arc<CertifiedKey>,
}

// === impl CertResolver ===

impl CertResolver {
    pub fn new(table: SharedTable, generated: Arc<CertifiedKey>) -> Self {
        Self { table, generated }
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name().map(normalize_host);
        let table = self.table.load();
        // A `server-alias` name without TLS of its own is served with its
        // host's certificate, as nginx serves it from that host's server.
        let name = name.as_deref().map(|n| match table.tls().has_tls(n) {
            true => n,
            false => table.tls_host(n),
        });
        let found = table.tls().certificate(name);
        Some(found.unwrap_or(&self.generated).clone())
    }
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Certificates come from the table; nothing here to show but that.
        f.debug_struct("CertResolver").finish_non_exhaustive()
    }
}

/// ring with TLS 1.3 and TLS 1.2 AEAD suites only (ECDHE, AES-GCM and
/// ChaCha20-Poly1305): rustls offers nothing older, so this is its default
/// list, spelled out so that it stays this way.
pub fn provider() -> CryptoProvider {
    use rustls::crypto::ring::cipher_suite as cs;
    CryptoProvider {
        cipher_suites: vec![
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
        ..rustls::crypto::ring::default_provider()
    }
}

/// The server configuration: TLS 1.3 and 1.2, ALPN `h2` then `http/1.1`,
/// certificates from `table`, stateless session tickets for resumption.
pub fn server_config(table: SharedTable) -> Result<Arc<ServerConfig>, TlsError> {
    let generated = generate_default()?;
    let provider = Arc::new(provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&version::TLS13, &version::TLS12])
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(CertResolver::new(table, generated)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Tickets keep resumption state with the client, not in a bounded
    // server cache; keys rotate every 6 hours. 0-RTT stays off (replayable).
    config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(TlsError::Config)?;
    Ok(Arc::new(config))
}

/// The acceptor for the HTTPS listener.
/// The version and SNI a handshake settled, for the access log.
pub fn info(conn: &rustls::ServerConnection) -> super::access_log::TlsInfo {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "TLS",
    };
    super::access_log::TlsInfo {
        version,
        sni: conn.server_name().map(str::to_string),
    }
}

pub fn acceptor(table: SharedTable) -> Result<TlsAcceptor, TlsError> {
    server_config(table).map(TlsAcceptor::from)
}

/// A self-signed ECDSA P-256 certificate for [`GENERATED_CERTIFICATE_NAME`]:
/// what clients get until a Secret says otherwise. It is generated, never
/// stored, so no two processes share its key.
pub fn generate_default() -> Result<Arc<CertifiedKey>, TlsError> {
    let mut params = rcgen::CertificateParams::new(vec![GENERATED_CERTIFICATE_NAME.to_string()])
        .map_err(TlsError::Generate)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "RustStrom Default Certificate");
    let key = rcgen::KeyPair::generate().map_err(TlsError::Generate)?;
    let cert = params.self_signed(&key).map_err(TlsError::Generate)?;
    let der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let signing = provider()
        .key_provider
        .load_private_key(der)
        .map_err(TlsError::Config)?;
    Ok(Arc::new(CertifiedKey::new(
        vec![cert.der().clone()],
        signing,
    )))
}

/// Completes the handshake of one accepted connection, or gives up after
/// `limit` (`--tls-handshake-timeout`, [`HANDSHAKE_TIMEOUT`] by default) or
/// when shutdown begins. Runs in the connection's
/// own task, so a slow client delays nobody else. Counted either way.
pub(super) async fn handshake<I>(
    acceptor: &TlsAcceptor,
    stream: I,
    limit: Duration,
    metrics: &Metrics,
    mut shutdown: Shutdown,
) -> Option<TlsStream<I>>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let result = tokio::select! {
        result = tokio::time::timeout(limit, acceptor.accept(stream)) => result,
        () = shutdown.wait() => return None,
    };
    match result {
        Ok(Ok(stream)) => {
            metrics.tls_handshakes.inc();
            Some(stream)
        }
        Ok(Err(error)) => {
            let reason = reason(&error);
            // The peer's fault in all but name: debug, not warn.
            tracing::debug!(%error, reason, "TLS handshake failed");
            metrics.count_handshake_error(reason);
            None
        }
        Err(_) => {
            metrics.count_handshake_error("timeout");
            None
        }
    }
}

/// The `reason` label of a failed handshake (see
/// [`crate::metrics::HANDSHAKE_ERROR_REASONS`]).
fn reason(error: &io::Error) -> &'static str {
    let Some(tls) = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    else {
        return "io";
    };
    match tls {
        // signature_algorithms came with TLS 1.2: a hello without it is
        // from a TLS 1.0 or 1.1 client, refused before its version is read.
        rustls::Error::PeerIncompatible(
            PeerIncompatible::Tls12NotOffered
            | PeerIncompatible::Tls12NotOfferedOrEnabled
            | PeerIncompatible::SupportedVersionsExtensionRequired
            | PeerIncompatible::SignatureAlgorithmsExtensionRequired,
        ) => "version",
        rustls::Error::PeerIncompatible(_) => "incompatible",
        // What rustls says when a resolver finds nothing; ours always
        // answers, so this would be a bug worth seeing on a graph.
        rustls::Error::General(message) if message.contains("no server certificate") => {
            "no_certificate"
        }
        _ => "protocol",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use arc_swap::ArcSwap;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
    use rustls::{
        ClientConfig, ClientConnection, DigitallySignedStruct, ServerConnection, SignatureScheme,
    };

    use crate::model::{Certificate, HostMatch, HostTls, RoutingTable, TableBuilder, TlsBuilder};

    /// Accepts any server certificate: the tests look at which one came.
    #[derive(Debug)]
    struct AcceptAny(CryptoProvider);

    impl ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            let algs = &self.0.signature_verification_algorithms;
            rustls::crypto::verify_tls12_signature(message, cert, dss, algs)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            let algs = &self.0.signature_verification_algorithms;
            rustls::crypto::verify_tls13_signature(message, cert, dss, algs)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    fn certificate(name: &str, secret: &str) -> Certificate {
        let generated = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        let key = PrivateKeyDer::Pkcs8(generated.signing_key.serialize_der().into());
        let key = provider().key_provider.load_private_key(key).unwrap();
        Certificate {
            key: Arc::new(CertifiedKey::new(vec![generated.cert.der().clone()], key)),
            secret: secret.into(),
            not_after: i64::MAX,
        }
    }

    fn table(hosts: &[(&str, &Certificate)]) -> RoutingTable {
        let mut tls = TlsBuilder::default();
        for (host, cert) in hosts {
            let entry = HostTls {
                certificate: Some((*cert).clone()),
                secret: cert.secret.clone(),
                source: "ns/ing".into(),
            };
            tls.add(&HostMatch::from_rule(Some(host)), entry).unwrap();
        }
        let mut b = TableBuilder::new(1);
        b.set_tls(tls.build());
        b.build()
    }

    /// One handshake in memory: the leaf certificate the client got, and
    /// the protocol agreed.
    fn handshake(
        config: &Arc<ServerConfig>,
        sni: Option<&str>,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> (Vec<u8>, Option<Vec<u8>>, Option<rustls::ProtocolVersion>) {
        let mut client_config = ClientConfig::builder_with_provider(Arc::new(provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider())))
            .with_no_client_auth();
        client_config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let name = match sni {
            Some(n) => ServerName::try_from(n.to_string()).unwrap(),
            // An IP address is never sent as SNI.
            None => ServerName::from(std::net::Ipv4Addr::LOCALHOST),
        };
        let mut client = ClientConnection::new(Arc::new(client_config), name).unwrap();
        let mut server = ServerConnection::new(config.clone()).unwrap();
        for _ in 0..20 {
            if !client.is_handshaking() && !server.is_handshaking() {
                break;
            }
            let mut wire = Vec::new();
            client.write_tls(&mut wire).unwrap();
            let mut rd = &wire[..];
            while !rd.is_empty() {
                server.read_tls(&mut rd).unwrap();
                server.process_new_packets().unwrap();
            }
            let mut wire = Vec::new();
            server.write_tls(&mut wire).unwrap();
            let mut rd = &wire[..];
            while !rd.is_empty() {
                client.read_tls(&mut rd).unwrap();
                client.process_new_packets().unwrap();
            }
        }
        assert!(!client.is_handshaking(), "handshake did not finish");
        let leaf = client.peer_certificates().unwrap()[0].to_vec();
        (
            leaf,
            client.alpn_protocol().map(<[u8]>::to_vec),
            client.protocol_version(),
        )
    }

    #[test]
    fn the_resolver_picks_by_sni_and_follows_the_live_table() {
        let (a, b, wild) = (
            certificate("a.test", "ns/a"),
            certificate("b.test", "ns/b"),
            certificate("*.wild.test", "ns/wild"),
        );
        let live: SharedTable = Arc::new(ArcSwap::from_pointee(table(&[
            ("a.test", &a),
            ("b.test", &b),
            ("*.wild.test", &wild),
        ])));
        let config = server_config(live.clone()).unwrap();
        let tls13: &[&'static rustls::SupportedProtocolVersion] = &[&version::TLS13];
        let der = |c: &Certificate| c.key.cert[0].to_vec();

        let (leaf, alpn, version) = handshake(&config, Some("a.test"), tls13);
        assert_eq!(leaf, der(&a));
        assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
        assert_eq!(version, Some(rustls::ProtocolVersion::TLSv1_3));
        assert_eq!(handshake(&config, Some("B.Test"), tls13).0, der(&b));
        assert_eq!(handshake(&config, Some("x.wild.test"), tls13).0, der(&wild));

        // No SNI and unknown names: the certificate generated at start.
        let generated = handshake(&config, None, tls13).0;
        assert!(![der(&a), der(&b), der(&wild)].contains(&generated));
        assert_eq!(handshake(&config, Some("other.test"), tls13).0, generated);
        assert_eq!(
            handshake(&config, Some("x.y.wild.test"), tls13).0,
            generated
        );

        // TLS 1.2 still works.
        let (leaf, _, version) = handshake(&config, Some("a.test"), &[&version::TLS12]);
        assert_eq!(leaf, der(&a));
        assert_eq!(version, Some(rustls::ProtocolVersion::TLSv1_2));

        // A renewed certificate reaches the next handshake: same config,
        // new table.
        let renewed = certificate("a.test", "ns/a");
        live.store(Arc::new(table(&[("a.test", &renewed)])));
        assert_eq!(handshake(&config, Some("a.test"), tls13).0, der(&renewed));
        assert_eq!(handshake(&config, Some("b.test"), tls13).0, generated);
    }

    #[test]
    fn generated_certificate_loads_and_names_ingress_local() {
        let key = generate_default().unwrap();
        assert_eq!(key.cert.len(), 1);
        key.keys_match().unwrap();
        let leaf = webpki::EndEntityCert::try_from(&key.cert[0]).unwrap();
        let name = |n: &str| rustls::pki_types::ServerName::try_from(n.to_string()).unwrap();
        leaf.verify_is_valid_for_subject_name(&name("ingress.local"))
            .unwrap();
        assert!(
            leaf.verify_is_valid_for_subject_name(&name("other.local"))
                .is_err()
        );
        let table: SharedTable = Arc::new(ArcSwap::from_pointee(RoutingTable::default()));
        let config = server_config(table).unwrap();
        assert_eq!(config.alpn_protocols[0], b"h2");
        assert!(format!("{:?}", CertResolver::new(Arc::default(), key)).contains("CertResolver"));
    }

    #[test]
    fn handshake_errors_have_bounded_reasons() {
        let wrap = |e: rustls::Error| io::Error::new(io::ErrorKind::InvalidData, e);
        assert_eq!(reason(&io::Error::from(io::ErrorKind::UnexpectedEof)), "io");
        assert_eq!(
            reason(&wrap(rustls::Error::PeerIncompatible(
                PeerIncompatible::Tls12NotOffered
            ))),
            "version"
        );
        assert_eq!(
            reason(&wrap(rustls::Error::PeerIncompatible(
                PeerIncompatible::SignatureAlgorithmsExtensionRequired
            ))),
            "version"
        );
        assert_eq!(
            reason(&wrap(rustls::Error::PeerIncompatible(
                PeerIncompatible::NoCipherSuitesInCommon
            ))),
            "incompatible"
        );
        assert_eq!(
            reason(&wrap(rustls::Error::General(
                "no server certificate chain resolved".into()
            ))),
            "no_certificate"
        );
        assert_eq!(reason(&wrap(rustls::Error::DecryptError)), "protocol");
        for r in [
            "io",
            "version",
            "incompatible",
            "no_certificate",
            "protocol",
            "timeout",
        ] {
            assert!(crate::metrics::HANDSHAKE_ERROR_REASONS.contains(&r));
        }
    }
}
