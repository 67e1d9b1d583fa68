//! Backend resolution: an Ingress backend (Service and port) becomes the
//! endpoints from the Service's EndpointSlices.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::policy::Policies;
use super::{CompileOptions, Order, Problem};
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

/// What a backend is resolved for: the Service, and its [`PortKey`].
pub(super) type BackendKey = (ObjectKey, PortKey);

/// The port of a Service (by number when the Service has it) and the
/// address of the policy that applies.
pub(super) type PortKey = (PortRef, usize);

/// Backends resolved so far, by Service and by what else they were
/// resolved for. The incremental compile keeps them from one compile to
/// the next, so that routes it recompiles share the backends (and their
/// balancer state) of the routes it keeps, and finds the backends of a
/// Service whose endpoints changed without a pass over all of them.
pub(super) type BackendCache = HashMap<ObjectKey, HashMap<PortKey, Resolved>>;

/// One resolved backend.
#[derive(Debug)]
pub(super) struct Resolved {
    pub(super) result: Result<Arc<Backend>, String>,
    /// What resolving it found wrong in EndpointSlices.
    pub(super) problems: Vec<Problem>,
    /// The served Ingresses that resolve it, kept by the incremental
    /// compile: only backends in use report their problems, and their
    /// hosts are the ones to update when its endpoints change.
    pub(super) users: BTreeSet<Order>,
}

/// Resolves backends, sharing one [`Backend`] per Service port across every
/// route that uses it.
pub(super) struct Resolver<'a> {
    snapshot: &'a Snapshot,
    allow_external_name: bool,
    /// EndpointSlices by the (namespace, Service) they belong to; built on
    /// the first backend that is not in the cache, unless `index` says.
    slices: Option<SlicesByService<'a>>,
    /// The keys of the snapshot's slices by Service, when the caller keeps
    /// them from one compile to the next.
    index: Option<&'a SliceIndex>,
    policies: &'a Policies,
    cache: BackendCache,
    /// The keys asked for since the last [`Resolver::take_touched`], when
    /// recording.
    touched: Option<Vec<BackendKey>>,
    /// Backends of an earlier table, by id: one that comes out the same is
    /// taken instead of a new one, keeping its balancer state.
    reuse: HashMap<&'a str, Vec<Arc<Backend>>>,
}

type SlicesByService<'a> = HashMap<(&'a str, &'a str), Vec<(&'a ObjectKey, &'a EndpointSlice)>>;

/// The keys of the EndpointSlices of each Service, in key order: kept by
/// the incremental compile (building it takes a pass over every slice).
pub(super) type SliceIndex = HashMap<ObjectKey, BTreeSet<ObjectKey>>;

impl fmt::Display for PortRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortRef::Number(n) => n.fmt(f),
            PortRef::Name(n) => f.write_str(n),
        }
    }
}

impl<'a> Resolver<'a> {
    /// The snapshot it resolves from (annotations read Secrets from it).
    pub(super) fn snapshot(&self) -> &'a Snapshot {
        self.snapshot
    }

    pub(super) fn new(
        snapshot: &'a Snapshot,
        options: &CompileOptions,
        policies: &'a Policies,
    ) -> Self {
        Self::with_cache(snapshot, options, policies, HashMap::new())
    }

    /// A resolver that starts from backends already resolved against the
    /// same Services, EndpointSlices and `policies`.
    pub(super) fn with_cache(
        snapshot: &'a Snapshot,
        options: &CompileOptions,
        policies: &'a Policies,
        cache: BackendCache,
    ) -> Self {
        Self {
            snapshot,
            allow_external_name: options.allow_external_name,
            slices: None,
            index: None,
            policies,
            cache,
            touched: None,
            reuse: HashMap::new(),
        }
    }

    /// Offers `backends` (of the table being replaced) for reuse.
    pub(super) fn with_reuse(mut self, backends: impl Iterator<Item = &'a Arc<Backend>>) -> Self {
        for backend in backends {
            let candidates = self.reuse.entry(backend.id.as_str()).or_default();
            candidates.push(backend.clone());
        }
        self
    }

    /// Finds slices through `index`, which must list the snapshot's.
    pub(super) fn with_index(mut self, index: &'a SliceIndex) -> Self {
        self.index = Some(index);
        self
    }

    /// Starts recording the keys [`Resolver::backend`] is asked for.
    pub(super) fn record(&mut self) {
        self.touched = Some(Vec::new());
    }

    /// The keys asked for since the last call, each once.
    pub(super) fn take_touched(&mut self) -> Vec<BackendKey> {
        self.touched
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// The backends resolved, for the next compile.
    pub(super) fn into_cache(self) -> BackendCache {
        self.cache
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
        let key: PortKey = (port, Arc::as_ptr(&policy) as usize);
        if let Some(touched) = &mut self.touched
            && !touched.iter().any(|(s, k)| s == service && *k == key)
        {
            touched.push((service.clone(), key.clone()));
        }
        if let Some(hit) = self.cache.get(service).and_then(|ports| ports.get(&key)) {
            return hit.result.clone();
        }
        let mut problems = Vec::new();
        let result = self
            .resolve(service, &key.0, policy, &mut problems)
            .map(|backend| self.reused(backend));
        let resolved = Resolved {
            result: result.clone(),
            problems,
            users: BTreeSet::new(),
        };
        let ports = self.cache.entry(service.clone()).or_default();
        ports.insert(key, resolved);
        result
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
        Some(self.resolve(&key, &port, backend.policy.clone(), &mut Vec::new()))
    }

    /// Resolves `key` again from the current slices, keeping its policy;
    /// returns the backend and what resolving it found wrong.
    pub(super) fn re_resolve(
        &mut self,
        service: &ObjectKey,
        port: &PortRef,
        policy: Arc<BackendPolicy>,
    ) -> (Result<Backend, String>, Vec<Problem>) {
        let mut problems = Vec::new();
        let result = self.resolve(service, port, policy, &mut problems);
        (result, problems)
    }

    /// An offered backend equal to `backend` (each is taken once, so that
    /// backends are shared exactly as without reuse), or `backend`.
    fn reused(&mut self, backend: Backend) -> Arc<Backend> {
        let candidates = self.reuse.get_mut(backend.id.as_str());
        let same = |old: &Arc<Backend>| {
            old.service == backend.service
                && old.ready == backend.ready
                && old.fallback == backend.fallback
                && old.weights == backend.weights
                && old.policy == backend.policy
        };
        if let Some(candidates) = candidates
            && let Some(i) = candidates.iter().position(same)
        {
            return candidates.swap_remove(i);
        }
        Arc::new(backend)
    }

    /// Problems found in EndpointSlices along the way.
    pub(super) fn into_problems(self) -> Vec<Problem> {
        slice_problems(self.cache.values().flat_map(HashMap::values))
    }

    fn resolve(
        &mut self,
        key: &ObjectKey,
        port: &PortRef,
        policy: Arc<BackendPolicy>,
        problems: &mut Vec<Problem>,
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
        let snapshot = self.snapshot;
        let slices = match self.index {
            Some(index) => (index.get(key).into_iter().flatten())
                .filter_map(|k| snapshot.endpoint_slices.get_key_value(k))
                .map(|(k, slice)| (k, &**slice))
                .collect(),
            None => self
                .slices
                .get_or_insert_with(|| slices_by_service(snapshot))
                .get(&(key.namespace.as_str(), key.name.as_str()))
                .cloned()
                .unwrap_or_default(),
        };
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
                        Err(_) => problems.push(Problem::warning(
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

/// The problems of `resolved` backends, sorted by object and message, each
/// once.
pub(super) fn slice_problems<'r>(resolved: impl Iterator<Item = &'r Resolved>) -> Vec<Problem> {
    let mut problems: Vec<Problem> = resolved.flat_map(|r| r.problems.iter().cloned()).collect();
    problems.sort_by(|a, b| (&a.object, &a.message).cmp(&(&b.object, &b.message)));
    problems.dedup();
    problems
}

/// The labelled EndpointSlices of a snapshot, by (namespace, Service).
fn slices_by_service(snapshot: &Snapshot) -> SlicesByService<'_> {
    let mut slices: SlicesByService<'_> = HashMap::new();
    for (key, slice) in &snapshot.endpoint_slices {
        if let Some(service) = slice_service(slice) {
            slices
                .entry((key.namespace.as_str(), service))
                .or_default()
                .push((key, &**slice));
        }
    }
    slices
}

/// Indexes every labelled slice of a snapshot.
pub(super) fn index_slices(snapshot: &Snapshot) -> SliceIndex {
    let mut index = SliceIndex::new();
    for (key, slice) in &snapshot.endpoint_slices {
        index_slice(&mut index, key, slice, true);
    }
    index
}

/// Adds a slice to the index of its Service, or takes it out.
pub(super) fn index_slice(
    index: &mut SliceIndex,
    key: &ObjectKey,
    slice: &EndpointSlice,
    add: bool,
) {
    let Some(service) = slice_service(slice) else {
        return;
    };
    let service = ObjectKey::new(key.namespace.clone(), service);
    match add {
        true => {
            index.entry(service).or_default().insert(key.clone());
        }
        false => {
            if let Some(keys) = index.get_mut(&service) {
                keys.remove(key);
                if keys.is_empty() {
                    index.remove(&service);
                }
            }
        }
    }
}

/// The Service an EndpointSlice belongs to (in its namespace), by its label.
pub(super) fn slice_service(slice: &EndpointSlice) -> Option<&str> {
    slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SERVICE_NAME_LABEL))
        .map(String::as_str)
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
