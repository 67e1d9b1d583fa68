//! TLS in the routing table: which certificate answers which server name,
//! and what each Ingress asks of plain HTTP (redirect, HSTS).
//!
//! Certificates are compiled from Secrets with the rest of the table and
//! swapped with it, so a renewed Secret reaches the next handshake without a
//! restart while connections already open keep the certificate they got.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use http::HeaderValue;
use rustls::sign::CertifiedKey;

use super::HostMatch;
use super::host::wildcard_suffix;

/// A certificate chain with its private key, and where it came from.
///
/// `Debug` is written by hand: it names the Secret, never the key.
#[derive(Clone)]
pub struct Certificate {
    pub key: Arc<CertifiedKey>,
    /// The Secret it came from, `namespace/name`, for logs and metrics.
    pub secret: String,
    /// The leaf's notAfter, in seconds since the Unix epoch.
    pub not_after: i64,
}

/// A server name listed in an Ingress's `spec.tls`.
#[derive(Clone)]
pub struct HostTls {
    /// `None` when the Secret is missing or broken: the default certificate
    /// answers for this host, and the problem is reported.
    pub certificate: Option<Certificate>,
    /// The Secret the Ingress names, `namespace/name` (empty when it names
    /// none, which means the default certificate on purpose).
    pub secret: String,
    /// The Ingress that listed the host, `namespace/name`.
    pub source: String,
}

/// What an Ingress asks of its routes regarding HTTPS, from its annotations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpsPolicy {
    /// `ruststrom.io/ssl-redirect` (default on): plain HTTP to a host that
    /// has TLS is redirected to HTTPS.
    pub ssl_redirect: bool,
    /// `ruststrom.io/force-ssl-redirect` (default off): redirect even when
    /// the host has no TLS here (TLS terminated by a load balancer in front).
    pub force_ssl_redirect: bool,
    /// `ruststrom.io/hsts`: the `Strict-Transport-Security` value added to
    /// HTTPS responses.
    pub hsts: Option<HeaderValue>,
}

/// Certificates by server name: exact names, then one-label wildcards, then
/// the default certificate.
#[derive(Clone, Default)]
pub struct TlsTable {
    exact: HashMap<String, HostTls>,
    wildcard: HashMap<String, HostTls>,
    /// From `--default-ssl-certificate`, when that Secret is usable. Without
    /// it the listener answers with the certificate it generated at start.
    default: Option<Certificate>,
    /// notAfter by Secret (`namespace/name`) of every certificate that
    /// could be read, served or expired: an expired one must stay visible
    /// to the alert that watches expiry.
    expiry: BTreeMap<String, i64>,
}

/// Builds a [`TlsTable`]; the first Ingress to list a host keeps it (the
/// compile step adds the oldest first).
#[derive(Default)]
pub struct TlsBuilder {
    table: TlsTable,
}

// === impl Certificate ===

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("secret", &self.secret)
            .field("not_after", &self.not_after)
            .field("chain_len", &self.key.cert.len())
            .finish_non_exhaustive()
    }
}

// === impl HostTls ===

impl fmt::Debug for HostTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostTls")
            .field("certificate", &self.certificate)
            .field("secret", &self.secret)
            .field("source", &self.source)
            .finish()
    }
}

// === impl HttpsPolicy ===

impl Default for HttpsPolicy {
    /// ingress-nginx's defaults: redirect hosts that have TLS, no HSTS.
    fn default() -> Self {
        Self {
            ssl_redirect: true,
            force_ssl_redirect: false,
            hsts: None,
        }
    }
}

// === impl TlsTable ===

impl TlsTable {
    /// What `spec.tls` says about a normalized host name (see
    /// [`super::normalize_host`]): the exact name first, then the wildcard
    /// covering it.
    pub fn host(&self, host: &str) -> Option<&HostTls> {
        if let Some(found) = self.exact.get(host) {
            return Some(found);
        }
        if self.wildcard.is_empty() {
            return None;
        }
        wildcard_suffix(host).and_then(|s| self.wildcard.get(s))
    }

    /// Whether a host is served with TLS (its Secret may still be broken:
    /// the host is meant to be HTTPS, so plain HTTP is still redirected).
    pub fn has_tls(&self, host: &str) -> bool {
        self.host(host).is_some()
    }

    /// The certificate for a server name, or `None` for the default one:
    /// no SNI, a name no Ingress lists, or a broken Secret.
    pub fn certificate(&self, server_name: Option<&str>) -> Option<&Arc<CertifiedKey>> {
        let found = server_name
            .and_then(|name| self.host(name))
            .and_then(|h| h.certificate.as_ref());
        found.or(self.default.as_ref()).map(|c| &c.key)
    }

    /// The `--default-ssl-certificate`, when its Secret is usable.
    pub fn default_certificate(&self) -> Option<&Certificate> {
        self.default.as_ref()
    }

    /// Every TLS host, in a stable order for display and tests.
    pub fn hosts(&self) -> Vec<(HostMatch, &HostTls)> {
        let mut out: Vec<_> = self
            .exact
            .iter()
            .map(|(h, t)| (HostMatch::Exact(h.clone()), t))
            .chain(
                self.wildcard
                    .iter()
                    .map(|(s, t)| (HostMatch::Wildcard(s.clone()), t)),
            )
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Every certificate served, once per Secret.
    pub fn certificates(&self) -> Vec<&Certificate> {
        let mut out: Vec<&Certificate> = self
            .exact
            .values()
            .chain(self.wildcard.values())
            .filter_map(|h| h.certificate.as_ref())
            .chain(self.default.as_ref())
            .collect();
        out.sort_by(|a, b| a.secret.cmp(&b.secret));
        out.dedup_by(|a, b| a.secret == b.secret);
        out
    }

    /// The earliest notAfter among the certificates served: once it has
    /// passed, the table must be compiled again so that the expired
    /// certificate is replaced by the default one and reported.
    pub fn next_expiry(&self) -> Option<i64> {
        self.certificates().iter().map(|c| c.not_after).min()
    }

    /// notAfter by Secret of every certificate read, served or expired.
    pub fn expiry(&self) -> &BTreeMap<String, i64> {
        &self.expiry
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty() && self.default.is_none()
    }

    /// How many TLS hosts there are, without listing them.
    pub fn host_count(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }

    /// A copy in which the entries of `hosts`, and the expiry records of
    /// `secrets` (`namespace/name`), are the ones `from` has (none where it
    /// has none). The incremental compile recompiles the TLS hosts and
    /// Secrets a change touched into `from` and splices them in this way.
    pub fn splice<'h>(
        &self,
        from: &TlsTable,
        hosts: impl IntoIterator<Item = &'h HostMatch>,
        secrets: impl IntoIterator<Item = String>,
    ) -> TlsTable {
        let mut out = self.clone();
        for host in hosts {
            let (map, from_map, name) = match host {
                HostMatch::Exact(h) => (&mut out.exact, &from.exact, h),
                HostMatch::Wildcard(s) => (&mut out.wildcard, &from.wildcard, s),
                HostMatch::Any => continue,
            };
            match from_map.get(name) {
                Some(tls) => map.insert(name.clone(), tls.clone()),
                None => map.remove(name),
            };
        }
        for secret in secrets {
            match from.expiry.get(&secret) {
                Some(not_after) => out.expiry.insert(secret, *not_after),
                None => out.expiry.remove(&secret),
            };
        }
        out
    }
}

impl fmt::Debug for TlsTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsTable")
            .field("hosts", &self.hosts())
            .field("default", &self.default)
            .finish()
    }
}

// === impl TlsBuilder ===

impl TlsBuilder {
    /// Adds a host. When an older Ingress already lists it with another
    /// Secret, returns that Ingress (`namespace/name`) and keeps its entry.
    pub fn add(&mut self, host: &HostMatch, tls: HostTls) -> Result<(), String> {
        let map = match host {
            HostMatch::Exact(h) => (&mut self.table.exact, h),
            HostMatch::Wildcard(s) => (&mut self.table.wildcard, s),
            // Certificates are for names; the compile step never adds `Any`.
            HostMatch::Any => return Ok(()),
        };
        match map.0.get(map.1) {
            Some(kept) if kept.secret == tls.secret => Ok(()),
            Some(kept) => Err(kept.source.clone()),
            None => {
                map.0.insert(map.1.clone(), tls);
                Ok(())
            }
        }
    }

    pub fn set_default(&mut self, certificate: Certificate) {
        self.table.default = Some(certificate);
    }

    /// Records a Secret's notAfter, for the expiry metric.
    pub fn record_expiry(&mut self, secret: String, not_after: i64) {
        self.table.expiry.insert(secret, not_after);
    }

    pub fn build(self) -> TlsTable {
        self.table
    }
}

impl fmt::Debug for TlsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.table.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use rustls::crypto::ring::sign::any_supported_type;
    use rustls::pki_types::PrivateKeyDer;

    fn cert(secret: &str) -> Certificate {
        let generated = rcgen::generate_simple_self_signed(vec!["x.test".to_string()]).unwrap();
        let key = PrivateKeyDer::Pkcs8(generated.signing_key.serialize_der().into());
        let key = any_supported_type(&key).unwrap();
        Certificate {
            key: Arc::new(CertifiedKey::new(vec![generated.cert.der().clone()], key)),
            secret: secret.into(),
            not_after: 100,
        }
    }

    fn host(secret: &str, source: &str, certificate: Option<Certificate>) -> HostTls {
        HostTls {
            certificate,
            secret: secret.into(),
            source: source.into(),
        }
    }

    fn served_by<'a>(
        t: &'a TlsTable,
        name: Option<&str>,
        certs: &'a [Certificate],
    ) -> Option<&'a str> {
        let key = t.certificate(name)?;
        certs
            .iter()
            .find(|c| Arc::ptr_eq(&c.key, key))
            .map(|c| c.secret.as_str())
    }

    #[test]
    fn exact_then_wildcard_then_default() {
        let certs = [cert("ns/a"), cert("ns/wild"), cert("ns/default")];
        let mut b = TlsBuilder::default();
        b.add(
            &HostMatch::from_rule(Some("a.foo.com")),
            host("ns/a", "ns/i", Some(certs[0].clone())),
        )
        .unwrap();
        b.add(
            &HostMatch::from_rule(Some("*.foo.com")),
            host("ns/wild", "ns/i", Some(certs[1].clone())),
        )
        .unwrap();
        b.add(
            &HostMatch::from_rule(Some("broken.foo.com")),
            host("ns/broken", "ns/i", None),
        )
        .unwrap();
        b.set_default(certs[2].clone());
        let t = b.build();
        for (name, want) in [
            (Some("a.foo.com"), "ns/a"),
            (Some("b.foo.com"), "ns/wild"),
            (Some("x.b.foo.com"), "ns/default"),
            (Some("foo.com"), "ns/default"),
            (Some("broken.foo.com"), "ns/default"),
            (None, "ns/default"),
        ] {
            assert_eq!(served_by(&t, name, &certs), Some(want), "{name:?}");
        }
        assert!(t.has_tls("broken.foo.com"));
        assert!(t.has_tls("z.foo.com"));
        assert!(!t.has_tls("foo.com"));
        assert_eq!(t.certificates().len(), 3);
        assert_eq!(t.next_expiry(), Some(100));
    }

    #[test]
    fn oldest_ingress_keeps_a_host_and_debug_hides_keys() {
        let mut b = TlsBuilder::default();
        let h = HostMatch::from_rule(Some("a.com"));
        b.add(&h, host("ns/one", "ns/old", Some(cert("ns/one"))))
            .unwrap();
        assert_eq!(
            b.add(&h, host("ns/two", "ns/new", None)),
            Err("ns/old".into())
        );
        b.add(&h, host("ns/one", "ns/same-secret", None)).unwrap();
        let t = b.build();
        assert_eq!(t.hosts().len(), 1);
        let text = format!("{t:?}");
        assert!(text.contains("ns/one"), "{text}");
        // Names and dates only: no key, no certificate bytes.
        assert!(
            !text.contains("CertifiedKey") && !text.contains("Der"),
            "{text}"
        );
        assert!(text.contains("not_after: 100"), "{text}");
        assert!(TlsTable::default().certificate(Some("a.com")).is_none());
    }
}
