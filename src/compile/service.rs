//! Backend resolution: an Ingress backend (Service and port) becomes the
//! endpoints from the Service's EndpointSlices.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::policy::Policies;
use super::{CompileOptions, Problem};
use crate::model::{Backend, BackendPolicy, Endpoint, EndpointAddr};
use crate::source::{ObjectKey, Snapshot};

const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Endpoint weight for WeightedRoundRobin, on an EndpointSlice.
pub const WEIGHT_ANNOTATION: &str = "ruststrom.io/weight";
const MAX_WEIGHT: u32 = 1000;

/// A Service port as an Ingress names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum PortRef {
    Number(i32),
    Name(String),
}

/// Resolves backends, sharing one [`Backend`] per Service port across every
/// route that uses it.
pub(super) struct Resolver<'a> {
    snapshot: &'a Snapshot,
    allow_external_name: bool,
    /// EndpointSlices by the (namespace, Service) they belong to.
    slices: HashMap<(&'a str, &'a str), Vec<(&'a ObjectKey, &'a EndpointSlice)>>,
    policies: Policies,
    cache: HashMap<(ObjectKey, PortRef, usize), Result<Arc<Backend>, String>>,
    problems: Vec<Problem>,
}

impl fmt::Display for PortRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortRef::Number(n) => n.fmt(f),
            PortRef::Name(n) => f.write_str(n),
        }
    }
}

impl<'a> Resolver<'a> {
    pub(super) fn new(
        snapshot: &'a Snapshot,
        options: &CompileOptions,
        policies: Policies,
    ) -> Self {
        let mut slices: HashMap<_, Vec<_>> = HashMap::new();
        for (key, slice) in &snapshot.endpoint_slices {
            let service = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL));
            if let Some(service) = service {
                slices
                    .entry((key.namespace.as_str(), service.as_str()))
                    .or_default()
                    .push((key, &**slice));
            }
        }
        Self {
            snapshot,
            allow_external_name: options.allow_external_name,
            slices,
            policies,
            cache: HashMap::new(),
            problems: Vec::new(),
        }
    }

    /// The backend for a Service port, or why there is none.
    pub(super) fn backend(
        &mut self,
        ingress: &ObjectKey,
        service: &ObjectKey,
        port: &PortRef,
    ) -> Result<Arc<Backend>, String> {
        let policy = self.policies.for_backend(ingress, service).clone();
        // A Service port named and the same port numbered are one backend,
        // keyed (and labelled) by its number.
        let port = match self.snapshot.services.get(service) {
            Some(svc) => {
                find_port(svc, port).map_or_else(|| port.clone(), |p| PortRef::Number(p.port))
            }
            None => port.clone(),
        };
        // Routes to one Service port share a backend (and its balancer
        // state) unless policies from different Ingresses tell them apart.
        let key = (service.clone(), port, Arc::as_ptr(&policy) as usize);
        if let Some(hit) = self.cache.get(&key) {
            return hit.clone();
        }
        let resolved = self.resolve(service, &key.1, policy).map(Arc::new);
        self.cache.insert(key, resolved.clone());
        resolved
    }

    /// Re-resolves the endpoints of an existing backend (same Service port,
    /// same policy) from the current slices. `None` for a backend that was
    /// never resolved (an unresolvable rule's placeholder).
    pub(super) fn refresh(&mut self, backend: &Backend) -> Option<Result<Backend, String>> {
        let (namespace, name) = backend.service.split_once('/')?;
        let port = backend.id.rsplit_once(':')?.1;
        let port = match port.parse::<i32>() {
            Ok(n) => PortRef::Number(n),
            Err(_) => PortRef::Name(port.to_string()),
        };
        let key = ObjectKey::new(namespace, name);
        Some(self.resolve(&key, &port, backend.policy.clone()))
    }

    /// Problems found in EndpointSlices along the way.
    pub(super) fn into_problems(self) -> Vec<Problem> {
        let mut problems = self.problems;
        problems.sort_by(|a, b| (&a.object, &a.message).cmp(&(&b.object, &b.message)));
        problems.dedup();
        problems
    }

    fn resolve(
        &mut self,
        key: &ObjectKey,
        port: &PortRef,
        policy: Arc<BackendPolicy>,
    ) -> Result<Backend, String> {
        let svc = self
            .snapshot
            .services
            .get(key)
            .ok_or_else(|| format!("service {key} not found"))?;
        let spec = svc.spec.as_ref();
        let svc_port = find_port(svc, port);
        let id = format!("{key}:{port}");

        if spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
            let endpoint = self.external_name(svc, key, port, svc_port)?;
            return Ok(Backend::with_policy(
                id,
                key.to_string(),
                vec![endpoint],
                Vec::new(),
                vec![1],
                policy,
            ));
        }
        let svc_port = svc_port.ok_or_else(|| format!("service {key} has no port {port}"))?;
        let want_name = svc_port.name.as_deref().unwrap_or("");

        let mut ready = Vec::new();
        let mut fallback = Vec::new();
        let slices = self
            .slices
            .get(&(key.namespace.as_str(), key.name.as_str()))
            .cloned()
            .unwrap_or_default();
        for (slice_key, slice) in slices {
            if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
                continue;
            }
            let Some(number) = slice_port(slice, want_name, svc_port) else {
                continue;
            };
            let weight = slice_weight(slice);
            for ep in slice.endpoints.iter().flatten() {
                let cond = ep.conditions.as_ref();
                // `ready` unset means ready, as the EndpointSlice API says.
                let is_ready = cond.and_then(|c| c.ready).unwrap_or(true);
                let draining =
                    cond.is_some_and(|c| c.serving == Some(true) && c.terminating == Some(true));
                let set: &mut Vec<(Endpoint, u32)> = match (is_ready, draining) {
                    (true, _) => &mut ready,
                    (false, true) => &mut fallback,
                    (false, false) => continue,
                };
                for address in &ep.addresses {
                    match address.parse::<IpAddr>() {
                        Ok(ip) => {
                            let addr = EndpointAddr::Ip(SocketAddr::new(ip, number));
                            set.extend(Endpoint::new(addr).map(|e| (e, weight)));
                        }
                        Err(_) => self.problems.push(Problem::warning(
                            "EndpointSlice",
                            slice_key,
                            format!("address {address:?} is not an IP address; skipped"),
                        )),
                    }
                }
            }
        }
        for set in [&mut ready, &mut fallback] {
            set.sort_by(|a, b| a.0.addr.cmp(&b.0.addr));
            set.dedup_by(|a, b| a.0 == b.0);
        }
        // Ready in one slice and draining in another (mid-update): ready wins.
        fallback.retain(|e| ready.binary_search_by(|r| r.0.addr.cmp(&e.0.addr)).is_err());
        let (ready, weights): (Vec<_>, Vec<_>) = ready.into_iter().unzip();
        let fallback = fallback.into_iter().map(|(e, _)| e).collect();
        Ok(Backend::with_policy(
            id,
            key.to_string(),
            ready,
            fallback,
            weights,
            policy,
        ))
    }

    fn external_name(
        &self,
        svc: &Service,
        key: &ObjectKey,
        port: &PortRef,
        svc_port: Option<&ServicePort>,
    ) -> Result<Endpoint, String> {
        if !self.allow_external_name {
            return Err(format!(
                "service {key} is of type ExternalName, refused unless --allow-external-name is set"
            ));
        }
        let host = svc
            .spec
            .as_ref()
            .and_then(|s| s.external_name.clone())
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("service {key} is ExternalName without spec.externalName"))?;
        let number = match (svc_port, port) {
            (Some(p), _) => p.port,
            (None, PortRef::Number(n)) => *n,
            (None, PortRef::Name(_)) => return Err(format!("service {key} has no port {port}")),
        };
        let port = u16::try_from(number).map_err(|_| format!("port {number} is out of range"))?;
        Endpoint::new(EndpointAddr::Name { host, port })
            .ok_or_else(|| format!("service {key}: spec.externalName is not a valid host name"))
    }
}

/// The `ruststrom.io/weight` annotation of a slice (WeightedRoundRobin):
/// every endpoint of the slice gets it; 1 when unset or not a number.
fn slice_weight(slice: &EndpointSlice) -> u32 {
    slice
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(WEIGHT_ANNOTATION))
        .and_then(|w| w.trim().parse::<u32>().ok())
        .map_or(1, |w| w.min(MAX_WEIGHT))
}

fn find_port<'s>(svc: &'s Service, port: &PortRef) -> Option<&'s ServicePort> {
    let ports = svc.spec.as_ref()?.ports.as_ref()?;
    ports.iter().find(|p| match port {
        PortRef::Number(n) => p.port == *n,
        PortRef::Name(name) => p.name.as_deref() == Some(name.as_str()),
    })
}

/// The endpoint port for a Service port in one slice: the slice port with the
/// Service port's name (unnamed matches unnamed), TCP only.
fn slice_port(slice: &EndpointSlice, want_name: &str, svc_port: &ServicePort) -> Option<u16> {
    let port = slice.ports.as_ref()?.iter().find(|p| {
        p.name.as_deref().unwrap_or("") == want_name
            && p.protocol.as_deref().unwrap_or("TCP") == "TCP"
    })?;
    let number = match (port.port, &svc_port.target_port) {
        (Some(n), _) => n,
        // A slice port without a number: only a numeric targetPort can say.
        (None, Some(IntOrString::Int(n))) => *n,
        (None, _) => return None,
    };
    u16::try_from(number).ok().filter(|n| *n != 0)
}
