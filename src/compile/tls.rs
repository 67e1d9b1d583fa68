//! TLS: the Secrets an Ingress names in `spec.tls` become certificates by
//! server name (its HTTPS annotations are read in [`super::annotations`]).
//!
//! A missing or broken Secret is reported once, with every host that falls
//! back to the default certificate because of it; nothing else is affected.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::Ingress;
use rustls::crypto::CryptoProvider;

use super::Problem;
use super::ingress::validate_host;
use super::secret::{self, SecretError};
use crate::model::{Certificate, HostMatch, HostTls, TlsBuilder, TlsTable};
use crate::source::{ObjectKey, Snapshot};

const INGRESS: &str = "Ingress";
const SECRET: &str = "Secret";

/// Collects the TLS hosts of the served Ingresses, loading each Secret once.
pub(super) struct Certificates<'a> {
    snapshot: &'a Snapshot,
    provider: CryptoProvider,
    now: i64,
    builder: TlsBuilder,
    loaded: BTreeMap<ObjectKey, Loaded>,
    problems: Vec<Problem>,
}

/// What [`Certificates::finish`] hands back.
pub(super) struct Finished {
    pub(super) tls: TlsTable,
    /// The problems not yet taken, in the order they were found.
    pub(super) problems: Vec<Problem>,
    /// One problem per broken Secret that some host uses, by Secret.
    pub(super) secrets: Vec<(ObjectKey, Problem)>,
    /// notAfter of every certificate that loaded: once it has passed, a
    /// compile would find the Secret expired.
    pub(super) valid_until: Vec<(ObjectKey, i64)>,
}

/// One Secret's outcome, and who depends on it.
struct Loaded {
    result: Result<Certificate, SecretError>,
    /// Hosts that use it, for the problem message when it is broken.
    hosts: Vec<String>,
}

// === impl Certificates ===

impl<'a> Certificates<'a> {
    /// `now` is seconds since the Unix epoch, as the caller read it.
    pub(super) fn new(snapshot: &'a Snapshot, now: i64) -> Self {
        Self {
            snapshot,
            provider: rustls::crypto::ring::default_provider(),
            now,
            builder: TlsBuilder::default(),
            loaded: BTreeMap::new(),
            problems: Vec::new(),
        }
    }

    /// Adds the `spec.tls` hosts of an accepted Ingress.
    pub(super) fn add(&mut self, key: &ObjectKey, ingress: &Ingress) {
        let entries = ingress.spec.as_ref().and_then(|s| s.tls.as_ref());
        let source = key.to_string();
        for (i, entry) in entries.into_iter().flatten().enumerate() {
            let hosts = entry.hosts.as_deref().unwrap_or_default();
            if hosts.is_empty() {
                self.problems.push(Problem::warning(
                    INGRESS,
                    key,
                    format!("spec.tls[{i}] lists no hosts and is ignored; name the hosts its certificate is for"),
                ));
                continue;
            }
            // No secretName: the default certificate, on purpose (as
            // ingress-nginx does); the hosts still count as HTTPS.
            let secret = entry
                .secret_name
                .as_deref()
                .filter(|n| !n.is_empty())
                .map(|name| ObjectKey::new(key.namespace.clone(), name));
            for host in hosts {
                if let Err(reason) = validate_host(host) {
                    self.problems.push(Problem::rejected(
                        INGRESS,
                        key,
                        format!("spec.tls[{i}] host {host:?}: {reason}"),
                    ));
                    continue;
                }
                let matcher = HostMatch::from_rule(Some(host));
                let certificate = secret.as_ref().and_then(|s| self.use_secret(s, &matcher));
                let tls = HostTls {
                    certificate,
                    secret: secret.as_ref().map(ToString::to_string).unwrap_or_default(),
                    source: source.clone(),
                };
                if let Err(kept) = self.builder.add(&matcher, tls) {
                    self.problems.push(Problem::warning(
                        INGRESS,
                        key,
                        format!("spec.tls host {matcher} ignored: the older Ingress {kept} serves it with another Secret"),
                    ));
                }
            }
        }
    }

    /// Sets `--default-ssl-certificate`; when it cannot be used the
    /// certificate generated at start answers instead.
    pub(super) fn set_default(&mut self, secret: Option<&ObjectKey>) {
        let Some(secret) = secret else { return };
        match self.load(secret) {
            Ok(certificate) => self.builder.set_default(certificate),
            Err(error) => self.problems.push(Problem::rejected(
                SECRET,
                secret,
                format!(
                    "--default-ssl-certificate: {error}; the generated certificate answers instead"
                ),
            )),
        }
    }

    /// The problems found since the last call (the incremental compile
    /// keeps them by the Ingress they were found on).
    pub(super) fn take_problems(&mut self) -> Vec<Problem> {
        std::mem::take(&mut self.problems)
    }

    /// The TLS table, and the problems found: one per broken Secret.
    pub(super) fn finish(self) -> (TlsTable, Vec<Problem>) {
        let mut finished = self.finish_by_secret();
        let secrets = finished.secrets.into_iter().map(|(_, p)| p);
        finished.problems.extend(secrets);
        (finished.tls, finished.problems)
    }

    /// [`Certificates::finish`], with the Secret problems apart, by Secret.
    pub(super) fn finish_by_secret(self) -> Finished {
        let mut secrets = Vec::new();
        let mut valid_until = Vec::new();
        for (key, loaded) in &self.loaded {
            if let Ok(certificate) = &loaded.result {
                valid_until.push((key.clone(), certificate.not_after));
            }
            // Only the default certificate uses it: reported by set_default.
            if loaded.hosts.is_empty() {
                continue;
            }
            if let Err(error) = &loaded.result {
                let problem = Problem::rejected(
                    SECRET,
                    key,
                    format!(
                        "{error}; {} use the default certificate",
                        loaded.hosts.join(", ")
                    ),
                );
                secrets.push((key.clone(), problem));
            }
        }
        Finished {
            tls: self.builder.build(),
            problems: self.problems,
            secrets,
            valid_until,
        }
    }

    /// The certificate of `secret` for `host`; records the host as a user
    /// of the Secret, and warns when the certificate does not name it.
    fn use_secret(&mut self, secret: &ObjectKey, host: &HostMatch) -> Option<Certificate> {
        let certificate = self.load(secret).ok();
        if let Some(loaded) = self.loaded.get_mut(secret) {
            loaded.hosts.push(host.to_string());
        }
        let certificate = certificate?;
        if secret::covers(&certificate, host) == Some(false) {
            // Served all the same: the author may know better (a client
            // pinning it, say), and every client rejects the default too.
            self.problems.push(Problem::warning(
                SECRET,
                secret,
                format!("the certificate does not name host {host}; clients will reject it"),
            ));
        }
        Some(certificate)
    }

    fn load(&mut self, key: &ObjectKey) -> Result<Certificate, SecretError> {
        if let Some(loaded) = self.loaded.get(key) {
            return loaded.result.clone();
        }
        let result = match self.snapshot.secrets.get(key) {
            Some(s) => secret::load(key, s, &self.provider, self.now),
            None => Err(SecretError::Missing),
        };
        match &result {
            Ok(c) => self.builder.record_expiry(key.to_string(), c.not_after),
            Err(SecretError::Expired { not_after }) => {
                self.builder.record_expiry(key.to_string(), *not_after);
            }
            Err(_) => {}
        }
        self.loaded.insert(
            key.clone(),
            Loaded {
                result: result.clone(),
                hosts: Vec::new(),
            },
        );
        result
    }
}
