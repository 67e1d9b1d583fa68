//! A `kubernetes.io/tls` Secret becomes a [`Certificate`]: PEM decoded, the
//! key loaded and matched against the certificate, the validity checked
//! against the time the caller passes in (the compile step reads no clock).
//!
//! Errors say what is wrong, never what the Secret holds.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, DnsName, PrivateKeyDer, ServerName};
use rustls::sign::CertifiedKey;

use super::x509;
use crate::model::{Certificate, HostMatch};
use crate::source::ObjectKey;

/// The Secret type that holds a certificate and its key.
pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";
const CERT_FIELD: &str = "tls.crt";
const KEY_FIELD: &str = "tls.key";

/// Why a Secret cannot be served.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// No Secret by that name in the Ingress's namespace.
    #[error("not found")]
    Missing,
    /// Another type than `kubernetes.io/tls` (an unset type is `Opaque`).
    #[error("type is {0:?}; a certificate needs type kubernetes.io/tls")]
    WrongType(String),
    /// `tls.crt` or `tls.key` is absent from both `data` and `stringData`.
    #[error("has no {0}")]
    MissingField(&'static str),
    /// `tls.crt` is not PEM, or holds no `CERTIFICATE` block.
    #[error("tls.crt holds no PEM certificate")]
    NoCertificate,
    /// `tls.key` is not a PEM private key.
    #[error("tls.key holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey,
    /// A key rustls cannot sign with (an unsupported algorithm or curve).
    #[error("tls.key: this kind of key is not supported (use RSA, ECDSA P-256/P-384 or Ed25519)")]
    UnsupportedKey,
    /// The key is not the one the certificate was issued for.
    #[error("tls.key does not match the certificate in tls.crt")]
    KeyMismatch,
    /// The first certificate cannot be read as X.509.
    #[error("tls.crt: the certificate cannot be read")]
    BadCertificate,
    /// The leaf certificate is past its notAfter (seconds since the epoch).
    #[error("the certificate expired at {}", x509::rfc3339(*not_after))]
    Expired { not_after: i64 },
}

/// Loads the certificate of `secret`, valid at `now` (seconds since the
/// epoch).
pub(super) fn load(
    key: &ObjectKey,
    secret: &Secret,
    provider: &CryptoProvider,
    now: i64,
) -> Result<Certificate, SecretError> {
    let kind = secret.type_.as_deref().unwrap_or("Opaque");
    if kind != TLS_SECRET_TYPE {
        return Err(SecretError::WrongType(kind.to_string()));
    }
    let cert_pem = field(secret, CERT_FIELD).ok_or(SecretError::MissingField(CERT_FIELD))?;
    let key_pem = field(secret, KEY_FIELD).ok_or(SecretError::MissingField(KEY_FIELD))?;

    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|_| SecretError::NoCertificate)?;
    let leaf = chain.first().ok_or(SecretError::NoCertificate)?;
    let validity = x509::validity(leaf).ok_or(SecretError::BadCertificate)?;

    let private = PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| SecretError::NoKey)?;
    let signing = provider
        .key_provider
        .load_private_key(private)
        .map_err(|_| SecretError::UnsupportedKey)?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) => {}
        // The key cannot tell its public half: nothing to compare, which
        // rustls's own keys never do.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => return Err(SecretError::KeyMismatch),
    }
    if validity.not_after < now {
        return Err(SecretError::Expired {
            not_after: validity.not_after,
        });
    }
    Ok(Certificate {
        key: Arc::new(certified),
        secret: key.to_string(),
        not_after: validity.not_after,
    })
}

/// Whether the leaf certificate names `host` (a wildcard host needs a
/// wildcard certificate). `None` when the certificate cannot be read.
pub(super) fn covers(certificate: &Certificate, host: &HostMatch) -> Option<bool> {
    let leaf = certificate.key.cert.first()?;
    let cert = webpki::EndEntityCert::try_from(leaf).ok()?;
    let name = match host {
        HostMatch::Exact(h) => h.clone(),
        // Any one label stands for the wildcard; only a `*.` name in the
        // certificate covers every one of them.
        HostMatch::Wildcard(suffix) => format!("wildcard-check.{suffix}"),
        HostMatch::Any => return Some(true),
    };
    let name = DnsName::try_from(name).ok()?;
    Some(
        cert.verify_is_valid_for_subject_name(&ServerName::DnsName(name))
            .is_ok(),
    )
}

/// A field from `stringData` (which wins, as the API server merges it over
/// `data`) or from `data` (base64, already decoded by the parser).
fn field<'a>(secret: &'a Secret, name: &str) -> Option<&'a [u8]> {
    let string = secret
        .string_data
        .as_ref()
        .and_then(|d| d.get(name))
        .map(String::as_bytes);
    string
        .or_else(|| {
            secret
                .data
                .as_ref()
                .and_then(|d| d.get(name))
                .map(|b| b.0.as_slice())
        })
        .filter(|bytes| !bytes.is_empty())
}
