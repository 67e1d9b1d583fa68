//! TLS helpers for the black-box tests: certificates generated per test,
//! `kubernetes.io/tls` Secrets and Ingresses with `tls:` as YAML, and a
//! rustls client that accepts any certificate so that a test can look at
//! which one the proxy presented.

use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme, SupportedProtocolVersion};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::{DEADLINE, Proxy, Resp, into_resp};

impl Proxy {
    /// The HTTPS listener's port, from the log line the binary writes
    /// before it reports its other ports.
    pub async fn https_port(&self) -> u16 {
        let lines = self.lines.lock().await;
        lines
            .iter()
            .find(|l| l.contains("HTTPS proxy listening"))
            .and_then(|l| super::listening_port(l))
            .expect("the HTTPS port is logged before the metrics port")
    }
}

// ---------------------------------------------------------------------------
// Certificates and manifests
// ---------------------------------------------------------------------------

/// A generated certificate: PEM for Secrets, DER to compare with what a
/// handshake presented.
pub struct TestCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

/// A self-signed ECDSA certificate for `names`, valid until 2099-01-01.
pub fn gen_cert(names: &[&str]) -> TestCert {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(names).expect("names");
    params.not_after = rcgen::date_time_ymd(2099, 1, 1);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("certificate");
    TestCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().to_vec(),
    }
}

/// 2099-01-01T00:00:00Z, the notAfter of [`gen_cert`] certificates.
pub const GEN_CERT_NOT_AFTER: i64 = 4_070_908_800;

/// A `kubernetes.io/tls` Secret with the certificate in `stringData`.
pub fn tls_secret(ns: &str, name: &str, cert: &TestCert) -> String {
    secret_with(ns, name, "kubernetes.io/tls", &cert.cert_pem, &cert.key_pem)
}

/// A Secret of any type with any `tls.crt` and `tls.key` text.
pub fn secret_with(ns: &str, name: &str, ty: &str, cert: &str, key: &str) -> String {
    let indent = |pem: &str| -> String { pem.lines().map(|l| format!("    {l}\n")).collect() };
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {ns}\ntype: {ty}\n\
         stringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(cert),
        indent(key)
    )
}

/// An Ingress routing each of `hosts` (`/`, Prefix) to Service `svc`, with
/// annotations, and one `tls:` entry per `(hosts, secretName)`.
pub fn tls_ingress(
    ns: &str,
    name: &str,
    hosts: &[&str],
    svc: &str,
    annotations: &[(&str, &str)],
    tls: &[(&[&str], &str)],
) -> String {
    let mut out = format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: {ns}\n"
    );
    if !annotations.is_empty() {
        out.push_str("  annotations:\n");
        for (k, v) in annotations {
            out.push_str(&format!("    {k}: \"{v}\"\n"));
        }
    }
    out.push_str("spec:\n  rules:\n");
    for host in hosts {
        out.push_str(&format!(
            "  - host: \"{host}\"\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        \
             backend:\n          service:\n            name: {svc}\n            port: {{name: http}}\n"
        ));
    }
    if !tls.is_empty() {
        out.push_str("  tls:\n");
        for (hosts, secret) in tls {
            let hosts: Vec<String> = hosts.iter().map(|h| format!("\"{h}\"")).collect();
            out.push_str(&format!(
                "  - hosts: [{}]\n    secretName: {secret}\n",
                hosts.join(", ")
            ));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------

/// Accepts whatever certificate the server presents: the tests check which
/// one it was, not who signed it.
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
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client offering `versions` and the ALPN protocols `alpn`.
pub fn client_config(
    versions: &[&'static SupportedProtocolVersion],
    alpn: &[&str],
) -> ClientConfig {
    let provider = rustls::crypto::ring::default_provider();
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider.clone()))
        .with_protocol_versions(versions)
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    config
}

/// Connects to 127.0.0.1:`port` and completes a handshake, sending `sni`
/// (none for `None`: the client names an IP address, which is never sent).
pub async fn tls_connect_with(
    port: u16,
    sni: Option<&str>,
    config: ClientConfig,
) -> TlsStream<TcpStream> {
    let name = match sni {
        Some(n) => ServerName::try_from(n.to_string()).expect("DNS name"),
        None => ServerName::from(std::net::Ipv4Addr::LOCALHOST),
    };
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the HTTPS port");
    let connect = TlsConnector::from(Arc::new(config)).connect(name, tcp);
    tokio::time::timeout(DEADLINE, connect)
        .await
        .expect("handshake in time")
        .expect("handshake")
}

/// A TLS 1.3 connection offering `h2` and `http/1.1`.
pub async fn tls_connect(port: u16, sni: Option<&str>) -> TlsStream<TcpStream> {
    let config = client_config(&[&rustls::version::TLS13], &["h2", "http/1.1"]);
    tls_connect_with(port, sni, config).await
}

/// The leaf certificate the server presents for `sni`.
pub async fn presented(port: u16, sni: Option<&str>) -> Vec<u8> {
    let stream = tls_connect(port, sni).await;
    leaf(&stream)
}

pub fn leaf(stream: &TlsStream<TcpStream>) -> Vec<u8> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .expect("a certificate")
        .to_vec()
}

/// Sends `req` over HTTP/1.1 on a TLS connection (ALPN `http/1.1`).
pub async fn https_send(port: u16, sni: &str, req: Request<Empty<Bytes>>) -> Resp {
    let config = client_config(&[&rustls::version::TLS13], &["http/1.1"]);
    let stream = tls_connect_with(port, Some(sni), config).await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = tokio::time::timeout(DEADLINE, sender.send_request(req))
        .await
        .expect("response in time")
        .expect("response");
    into_resp(resp).await
}

/// GET `path` with SNI and `Host` both `host`, over HTTP/1.1 and TLS.
pub async fn https_get(port: u16, host: &str, path: &str) -> Resp {
    https_send(port, host, super::get_req(host, path)).await
}

/// An HTTP/2 sender on a TLS connection that negotiated `h2`.
pub async fn h2_connect(
    port: u16,
    sni: &str,
) -> hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
    let stream = tls_connect(port, Some(sni)).await;
    assert_eq!(
        stream.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "h2 negotiated"
    );
    let (sender, conn) =
        hyper::client::conn::http2::handshake(super::executor(), TokioIo::new(stream))
            .await
            .expect("HTTP/2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

/// Sends on an HTTP/2 sender; the response with its body unread.
pub async fn h2_send(
    sender: &mut hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    req: Request<Empty<Bytes>>,
) -> http::Response<Incoming> {
    tokio::time::timeout(DEADLINE, sender.send_request(req))
        .await
        .expect("response in time")
        .expect("response")
}
