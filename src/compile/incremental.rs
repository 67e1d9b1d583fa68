//! Incremental compiles: when only Ingresses (and EndpointSlices) changed
//! since the last compile, only the hosts those Ingresses touch, before and
//! after the change, are compiled again, and spliced into a copy of the last
//! table that shares the routes of every other host.
//!
//! What is compiled again is a closed set of Ingresses: every Ingress that
//! contributes to a touched host, then every Ingress that contributes to
//! another host of *those*, until no new one appears. Each host of the set
//! then gets exactly the routes, conflicts and problems a full compile gives
//! it (the oldest Ingress still wins, whatever changed). The default backend,
//! each TLS host and each Secret an Ingress names count as hosts here: they
//! are the other places where one Ingress's outcome depends on another's.
//!
//! Anything else that changed (Services, Secrets, ConfigMaps, IngressClasses,
//! BalancerPolicies, a certificate that expired since) takes a full compile.
//! EndpointSlices re-resolve the backends of their Service in place. Either
//! way the result is the one [`compile`](super::compile) gives for the same
//! snapshot: the tests compare the two over random sequences of edits.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::mem;
use std::sync::Arc;
use std::time::SystemTime;

use k8s_openapi::api::networking::v1::Ingress;

use super::class::Classes;
use super::policy::{Policies, PolicyStatus};
use super::service::{
    BackendCache, BackendKey, Resolver, SliceIndex, index_slice, index_slices, slice_problems,
    slice_service,
};
use super::tls::Certificates;
use super::{CompileOptions, Order, Problem, ingress, x509};
use crate::model::{Backend, HostMatch, Route, RoutingTable, TableBuilder};
use crate::source::{ObjectKey, Snapshot};

/// Compiles snapshot after snapshot, keeping what it needs to compile the
/// next one incrementally.
pub struct Compiler {
    options: CompileOptions,
    /// `None` before the first compile.
    state: Option<State>,
    /// What the last full compile replaced, until [`Compiler::retire`]:
    /// freeing it takes a while, better spent after the new table is live.
    retired: Option<State>,
}

/// What one compile gives: what [`super::Compiled`] holds, with the table
/// and the list of Ingresses shared with the compiler (the next compile
/// starts from them).
#[derive(Debug)]
pub struct Update {
    pub table: Arc<RoutingTable>,
    pub problems: Vec<Problem>,
    /// The Ingresses this controller serves, oldest first.
    pub ingresses: Arc<[ObjectKey]>,
    /// What each BalancerPolicy's status should say.
    pub policies: Vec<PolicyStatus>,
    /// How the table differs from the previous one; `None` after a full
    /// compile, whose table has nothing in common with the one before.
    pub delta: Option<Delta>,
    /// How many Ingresses were compiled (every served one when full).
    pub compiled: usize,
}

/// What an incremental compile changed, so that the caller's own upkeep
/// (binding backends to live state, metric series) can follow the change
/// instead of walking the whole table.
#[derive(Debug, Default)]
pub struct Delta {
    /// The backends of the routes taken out (and of the default backend,
    /// when it was replaced), once per route.
    pub removed: Vec<Arc<Backend>>,
    /// The backends of the routes put in, once per route.
    pub added: Vec<Arc<Backend>>,
    /// Backends given fresh endpoints: each replaces one with the same id
    /// in every route that used it.
    pub refreshed: Vec<Arc<Backend>>,
}

/// Everything kept from the last compile.
struct State {
    /// The objects compiled, shared with the snapshots (never deep copies):
    /// what the next snapshot is compared with.
    seen: Snapshot,
    /// Kept rather than resolved again: backends are cached by the address
    /// of their policy.
    policies: Policies,
    policy_statuses: Vec<PolicyStatus>,
    policy_problems: Vec<Problem>,
    /// Every backend a served Ingress resolves.
    backends: BackendCache,
    /// The EndpointSlices of `seen` by Service.
    slices: SliceIndex,
    /// Every served Ingress, oldest first.
    served: BTreeMap<Order, Unit>,
    /// Their keys, kept while the set does not change.
    ingresses: Arc<[ObjectKey]>,
    /// The served Ingresses that have problems: few, where `served` may
    /// hold thousands.
    troubled: BTreeSet<Order>,
    /// The Ingresses that contribute to each slot, oldest first.
    contributors: HashMap<Slot, BTreeSet<Order>>,
    /// The `--default-ssl-certificate` problem, if any.
    default_certificate_problems: Vec<Problem>,
    /// One problem per broken Secret that some TLS host uses.
    secret_problems: BTreeMap<ObjectKey, Problem>,
    /// notAfter of each certificate that loaded: once one has passed, a
    /// compile would find it expired, which takes a full compile.
    valid_until: BTreeMap<ObjectKey, i64>,
    /// Set when the table could not follow a change: the next compile is
    /// a full one.
    stale: bool,
    table: Arc<RoutingTable>,
}

/// A place where Ingresses meet: what one adds there can change what
/// another gets.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Slot {
    /// The routes of a host.
    Host(HostMatch),
    /// The default backend (the oldest Ingress that sets one wins).
    Default,
    /// A host of `spec.tls`.
    Tls(HostMatch),
    /// A Secret of `spec.tls`: its problem lists every host that uses it.
    Secret(ObjectKey),
}

/// What compiling one served Ingress gave.
struct Unit {
    slots: Vec<Slot>,
    /// The backends it resolves, each once.
    backends: Vec<BackendKey>,
    /// Found while adding its rules, in order.
    problems: Vec<Problem>,
    /// Found while adding its `spec.tls`, in order.
    tls_problems: Vec<Problem>,
}

/// What following the changed Ingresses asks to compile again.
struct Followed {
    /// The Ingresses to compile again: closed, oldest first.
    closure: BTreeSet<Order>,
    /// The slots whose contents they decide.
    slots: HashSet<Slot>,
    /// An Ingress was added or removed (served or not).
    keys_changed: bool,
    /// The served Ingresses, or their order, changed.
    served_changed: bool,
}

/// How a map of the snapshot differs from the one compiled.
struct Diff<K> {
    /// Added, removed or changed.
    changed: Vec<K>,
    /// Equal, but in a new `Arc` (a file read again, a relist): kept from
    /// the new snapshot so that the next comparison is by address again.
    renewed: Vec<K>,
}

// === impl Compiler ===

impl Compiler {
    pub fn new(options: CompileOptions) -> Self {
        Self {
            options,
            state: None,
            retired: None,
        }
    }

    /// Compiles `snapshot` as generation `generation`, checking
    /// certificates against `now`: incrementally when only Ingresses and
    /// EndpointSlices changed since the last compile, fully otherwise.
    pub fn compile(&mut self, snapshot: &Snapshot, generation: u64, now: SystemTime) -> Update {
        let now = x509::unix_seconds(now);
        if let Some(state) = self.state.as_mut()
            && let Some(update) = state.incremental(snapshot, &self.options, generation, now)
        {
            return update;
        }
        let previous = self.state.take();
        let state = State::full(snapshot, &self.options, generation, now, previous.as_ref());
        let update = state.update(None, state.served.len());
        self.state = Some(state);
        self.retired = previous;
        update
    }

    /// Frees what the last full compile replaced (otherwise freed by the
    /// next one): for the caller to do once the new table is live.
    pub fn retire(&mut self) {
        self.retired = None;
    }

    /// Gives the backends whose EndpointSlices changed since the last
    /// compile fresh endpoints, in a copy of the last table numbered
    /// `generation`, and returns it with the backends refreshed. Only
    /// EndpointSlices are looked at: any other change waits for the next
    /// [`Compiler::compile`]. `None` before the first compile.
    pub fn refresh_endpoints(
        &mut self,
        snapshot: &Snapshot,
        generation: u64,
    ) -> Option<(Arc<RoutingTable>, Vec<Arc<Backend>>)> {
        let state = self.state.as_mut()?;
        let slices = diff(
            &state.seen.endpoint_slices,
            &snapshot.endpoint_slices,
            PartialEq::eq,
        );
        let refreshed = state.refresh(snapshot, &self.options, &slices.changed, generation);
        renew(
            &mut state.seen.endpoint_slices,
            &snapshot.endpoint_slices,
            slices,
        );
        let (table, fresh) = refreshed.unwrap_or_else(|| {
            let unchanged = state
                .table
                .with_backends_in(generation, [], false, |_| None);
            (unchanged, Vec::new())
        });
        state.table = Arc::new(table);
        Some((state.table.clone(), fresh))
    }
}

impl std::fmt::Debug for Compiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiler")
            .field("options", &self.options)
            .field("served", &self.state.as_ref().map(|s| s.served.len()))
            .finish_non_exhaustive()
    }
}

// === impl State ===

impl State {
    /// Compiles everything, recording what each Ingress touched. Backends
    /// that come out the same as in `previous` are taken from it: they keep
    /// their balancer state, and need not be bound to live state again.
    fn full(
        snapshot: &Snapshot,
        options: &CompileOptions,
        generation: u64,
        now: i64,
        previous: Option<&State>,
    ) -> Self {
        let classes = Classes::new(snapshot, options);
        let mut ours: Vec<(Order, &Arc<Ingress>)> = snapshot
            .ingresses
            .iter()
            .filter(|(_, ing)| classes.is_ours(ing))
            .map(|(key, ing)| (order(key, ing), ing))
            .collect();
        ours.sort_by(|a, b| a.0.cmp(&b.0));

        let (policies, policy_statuses, policy_problems) = Policies::new(snapshot);
        let slices = index_slices(snapshot);
        let old = (previous.into_iter())
            .flat_map(|p| p.backends.values().flat_map(HashMap::values))
            .filter_map(|resolved| resolved.result.as_ref().ok());
        let mut resolver = Resolver::new(snapshot, options, &policies)
            .with_index(&slices)
            .with_reuse(old);
        resolver.record();
        let mut builder = TableBuilder::new(generation);
        let mut certificates = Certificates::new(snapshot, now);
        let mut served = BTreeMap::new();
        let mut troubled = BTreeSet::new();
        let mut contributors = HashMap::new();
        for (order, ingress) in ours {
            let mut unit = Unit {
                slots: slots(&order.1, ingress),
                backends: Vec::new(),
                problems: Vec::new(),
                tls_problems: Vec::new(),
            };
            unit.compile(
                &order.1,
                ingress,
                &mut resolver,
                &mut builder,
                &mut certificates,
            );
            link(&mut contributors, &order, &unit.slots);
            if unit.has_problems() {
                troubled.insert(order.clone());
            }
            served.insert(order, unit);
        }
        certificates.set_default(options.default_certificate.as_ref());
        let default_certificate_problems = certificates.take_problems();
        let finished = certificates.finish_by_secret();
        builder.set_tls(finished.tls);
        let mut backends = resolver.into_cache();
        for (order, unit) in &served {
            acquire(&mut backends, order, &unit.backends);
        }
        let ingresses = served.keys().map(|order| order.1.clone()).collect();
        Self {
            seen: snapshot.clone(),
            policies,
            policy_statuses,
            policy_problems,
            backends,
            slices,
            served,
            ingresses,
            troubled,
            contributors,
            default_certificate_problems,
            secret_problems: finished.secrets.into_iter().collect(),
            valid_until: finished.valid_until.into_iter().collect(),
            stale: false,
            table: Arc::new(builder.build()),
        }
    }

    /// Follows `snapshot` incrementally; `None` (with nothing changed) when
    /// it takes a full compile.
    fn incremental(
        &mut self,
        snapshot: &Snapshot,
        options: &CompileOptions,
        generation: u64,
        now: i64,
    ) -> Option<Update> {
        if self.stale || self.valid_until.values().any(|not_after| *not_after < now) {
            return None;
        }
        let seen = &self.seen;
        let classes = diff(
            &seen.ingress_classes,
            &snapshot.ingress_classes,
            PartialEq::eq,
        );
        let services = diff(&seen.services, &snapshot.services, PartialEq::eq);
        let secrets = diff(&seen.secrets, &snapshot.secrets, PartialEq::eq);
        let config_maps = diff(&seen.config_maps, &snapshot.config_maps, PartialEq::eq);
        // BalancerPolicy has no `PartialEq`: compared as the API server
        // stores it.
        let policies = diff(
            &seen.balancer_policies,
            &snapshot.balancer_policies,
            |a, b| serde_json::to_value(a).ok() == serde_json::to_value(b).ok(),
        );
        let unchanged = classes.changed.is_empty()
            && services.changed.is_empty()
            && secrets.changed.is_empty()
            && config_maps.changed.is_empty()
            && policies.changed.is_empty();
        if !unchanged {
            return None;
        }
        let slices = diff(
            &seen.endpoint_slices,
            &snapshot.endpoint_slices,
            PartialEq::eq,
        );
        let ingresses = diff(&seen.ingresses, &snapshot.ingresses, PartialEq::eq);

        // From here on the state follows the snapshot.
        renew(
            &mut self.seen.ingress_classes,
            &snapshot.ingress_classes,
            classes,
        );
        renew(&mut self.seen.services, &snapshot.services, services);
        renew(&mut self.seen.secrets, &snapshot.secrets, secrets);
        renew(
            &mut self.seen.config_maps,
            &snapshot.config_maps,
            config_maps,
        );
        renew(
            &mut self.seen.balancer_policies,
            &snapshot.balancer_policies,
            policies,
        );
        let refreshed = self.refresh(snapshot, options, &slices.changed, generation);
        renew(
            &mut self.seen.endpoint_slices,
            &snapshot.endpoint_slices,
            slices,
        );
        let (base, fresh) = match refreshed {
            Some((table, fresh)) => (Arc::new(table), fresh),
            None => (self.table.clone(), Vec::new()),
        };

        let followed = self.follow_ingresses(snapshot, options, &ingresses);
        renew(&mut self.seen.ingresses, &snapshot.ingresses, ingresses);
        if followed.keys_changed {
            // Whether a policy's target Ingress exists is part of its status.
            let (_, statuses, problems) = Policies::new(snapshot);
            self.policy_statuses = statuses;
            self.policy_problems = problems;
        }
        if followed.served_changed {
            self.ingresses = self.served.keys().map(|order| order.1.clone()).collect();
        }
        let closure = &followed.closure;
        let mut delta = self.recompile(
            snapshot,
            options,
            generation,
            now,
            &base,
            closure,
            &followed.slots,
        );
        delta.refreshed = fresh;
        Some(self.update(Some(delta), closure.len()))
    }

    /// Takes the changed Ingresses out of the state and puts their new
    /// versions in; says what to compile again.
    fn follow_ingresses(
        &mut self,
        snapshot: &Snapshot,
        options: &CompileOptions,
        ingresses: &Diff<ObjectKey>,
    ) -> Followed {
        let mut slots: HashSet<Slot> = HashSet::new();
        let mut closure = BTreeSet::new();
        let mut keys_changed = false;
        let mut removed = BTreeSet::new();
        for key in &ingresses.changed {
            let old = self.seen.ingresses.get(key);
            keys_changed |= old.is_some() != snapshot.ingresses.contains_key(key);
            let Some(old) = old else { continue };
            let old = order(key, old);
            if let Some(unit) = self.served.remove(&old) {
                self.troubled.remove(&old);
                unlink(&mut self.contributors, &old, &unit.slots);
                release(&mut self.backends, &old, &unit.backends);
                slots.extend(unit.slots);
                removed.insert(old);
            }
        }
        let classes = Classes::new(snapshot, options);
        for key in &ingresses.changed {
            let Some(new) = snapshot.ingresses.get(key) else {
                continue;
            };
            if !classes.is_ours(new) {
                continue;
            }
            let new_order = order(key, new);
            let unit = Unit {
                slots: self::slots(key, new),
                backends: Vec::new(),
                problems: Vec::new(),
                tls_problems: Vec::new(),
            };
            link(&mut self.contributors, &new_order, &unit.slots);
            slots.extend(unit.slots.iter().cloned());
            self.served.insert(new_order.clone(), unit);
            closure.insert(new_order);
        }
        // The same Ingresses in the same order: the list stays.
        let served_changed = removed != closure;

        // Close the set: whoever shares a slot with an Ingress in it is in.
        let mut queue: Vec<Slot> = slots.iter().cloned().collect();
        while let Some(slot) = queue.pop() {
            let Some(orders) = self.contributors.get(&slot) else {
                continue;
            };
            for order in orders {
                if !closure.insert(order.clone()) {
                    continue;
                }
                let Some(unit) = self.served.get(order) else {
                    continue;
                };
                for other in &unit.slots {
                    if slots.insert(other.clone()) {
                        queue.push(other.clone());
                    }
                }
            }
        }
        Followed {
            closure,
            slots,
            keys_changed,
            served_changed,
        }
    }

    /// Compiles the Ingresses of `closure` (a closed set) into a table of
    /// their own, and splices its `slots` into a copy of `base`. Returns
    /// the routes that went and came.
    #[allow(clippy::too_many_arguments)] // one call site, all of it state
    fn recompile(
        &mut self,
        snapshot: &Snapshot,
        options: &CompileOptions,
        generation: u64,
        now: i64,
        base: &RoutingTable,
        closure: &BTreeSet<Order>,
        slots: &HashSet<Slot>,
    ) -> Delta {
        for order in closure {
            if let Some(unit) = self.served.get_mut(order) {
                release(&mut self.backends, order, &mem::take(&mut unit.backends));
            }
        }
        let cache = mem::take(&mut self.backends);
        let mut resolver =
            Resolver::with_cache(snapshot, options, &self.policies, cache).with_index(&self.slices);
        resolver.record();
        let mut builder = TableBuilder::new(generation);
        let mut certificates = Certificates::new(snapshot, now);
        for order in closure {
            let (Some(unit), Some(ingress)) =
                (self.served.get_mut(order), snapshot.ingresses.get(&order.1))
            else {
                continue;
            };
            unit.compile(
                &order.1,
                ingress,
                &mut resolver,
                &mut builder,
                &mut certificates,
            );
            match unit.has_problems() {
                true => self.troubled.insert(order.clone()),
                false => self.troubled.remove(order),
            };
        }
        // The same as the full compile found: it depends on no Ingress.
        certificates.set_default(options.default_certificate.as_ref());
        let _ = certificates.take_problems();
        let finished = certificates.finish_by_secret();
        self.backends = resolver.into_cache();
        for order in closure {
            if let Some(unit) = self.served.get(order) {
                acquire(&mut self.backends, order, &unit.backends);
            }
        }
        // A full compile resolves only what some served Ingress uses.
        self.backends.retain(|_, ports| {
            ports.retain(|_, resolved| !resolved.users.is_empty());
            !ports.is_empty()
        });

        let mut hosts = Vec::new();
        let mut tls_hosts = Vec::new();
        let mut secrets = HashSet::new();
        let mut default = false;
        for slot in slots {
            match slot {
                Slot::Host(host) => hosts.push(host),
                Slot::Default => default = true,
                Slot::Tls(host) => tls_hosts.push(host),
                Slot::Secret(secret) => {
                    secrets.insert(secret);
                }
            }
        }
        let tls = (!tls_hosts.is_empty() || !secrets.is_empty()).then(|| {
            let names = secrets.iter().map(ToString::to_string);
            base.tls().splice(&finished.tls, tls_hosts, names)
        });
        builder.set_tls(finished.tls);
        let partial = builder.build();
        let mut delta = Delta::default();
        let backends = |routes: &[Route]| {
            routes
                .iter()
                .flat_map(Route::backends)
                .cloned()
                .collect::<Vec<_>>()
        };
        for host in &hosts {
            delta.removed.extend(backends(base.host_routes(host)));
            delta.added.extend(backends(partial.host_routes(host)));
        }
        if default {
            delta.removed.extend(
                base.default_backend()
                    .into_iter()
                    .flat_map(Route::backends)
                    .cloned(),
            );
            delta.added.extend(
                partial
                    .default_backend()
                    .into_iter()
                    .flat_map(Route::backends)
                    .cloned(),
            );
        }
        self.table = Arc::new(base.splice(generation, &partial, hosts, default, tls));

        self.secret_problems.retain(|key, _| !secrets.contains(key));
        self.valid_until.retain(|key, _| !secrets.contains(key));
        for (key, problem) in finished.secrets {
            if secrets.contains(&key) {
                self.secret_problems.insert(key, problem);
            }
        }
        for (key, not_after) in finished.valid_until {
            if secrets.contains(&key) {
                self.valid_until.insert(key, not_after);
            }
        }
        delta
    }

    /// Re-resolves the backends of the Services whose EndpointSlices are
    /// `changed`, and returns a copy of the table numbered `generation`
    /// with them swapped in, and the new backends.
    fn refresh(
        &mut self,
        snapshot: &Snapshot,
        options: &CompileOptions,
        changed: &[ObjectKey],
        generation: u64,
    ) -> Option<(RoutingTable, Vec<Arc<Backend>>)> {
        let mut services = HashSet::new();
        for key in changed {
            let old = self.seen.endpoint_slices.get(key);
            let new = snapshot.endpoint_slices.get(key);
            for (slice, add) in [(old, false), (new, true)] {
                let Some(slice) = slice else { continue };
                index_slice(&mut self.slices, key, slice, add);
                if let Some(service) = slice_service(slice) {
                    services.insert(ObjectKey::new(key.namespace.clone(), service));
                }
            }
        }
        let mut resolver =
            Resolver::new(snapshot, options, &self.policies).with_index(&self.slices);
        let mut fresh = HashMap::new();
        // The places whose routes may use one of the old backends.
        let mut slots = HashSet::new();
        for service in &services {
            let Some(ports) = self.backends.get_mut(service) else {
                continue;
            };
            for ((port, _), resolved) in ports {
                // Unresolvable for a reason of its Service, which did not
                // change.
                let Ok(old) = &resolved.result else { continue };
                match resolver.re_resolve(service, port, old.policy.clone()) {
                    (Ok(new), problems) => {
                        let new = Arc::new(new);
                        fresh.insert(Arc::as_ptr(old), new.clone());
                        resolved.result = Ok(new);
                        resolved.problems = problems;
                    }
                    // The Service changed after all: only a full compile
                    // can say what the table should be.
                    (Err(_), _) => self.stale = true,
                }
                let units = resolved.users.iter().filter_map(|o| self.served.get(o));
                slots.extend(units.flat_map(|u| &u.slots));
            }
        }
        if fresh.is_empty() {
            return None;
        }
        let hosts = slots.iter().filter_map(|slot| match slot {
            Slot::Host(host) => Some(host),
            _ => None,
        });
        let default = slots.contains(&Slot::Default);
        let table = self
            .table
            .with_backends_in(generation, hosts, default, |b| {
                fresh.get(&Arc::as_ptr(b)).cloned()
            });
        Some((table, fresh.into_values().collect()))
    }

    /// The result, assembled from what each Ingress and backend gave, in
    /// the order [`super::compile`] reports problems.
    fn update(&self, delta: Option<Delta>, compiled: usize) -> Update {
        let units = || self.troubled.iter().filter_map(|o| self.served.get(o));
        let mut problems: Vec<Problem> = units().flat_map(|u| u.problems.clone()).collect();
        problems.extend(slice_problems(
            self.backends.values().flat_map(HashMap::values),
        ));
        problems.extend(self.policy_problems.iter().cloned());
        problems.extend(units().flat_map(|u| u.tls_problems.clone()));
        problems.extend(self.default_certificate_problems.iter().cloned());
        problems.extend(self.secret_problems.values().cloned());
        Update {
            table: self.table.clone(),
            problems,
            ingresses: self.ingresses.clone(),
            policies: self.policy_statuses.clone(),
            delta,
            compiled,
        }
    }
}

// === impl Update ===

impl Update {
    /// Whether only part of the table was compiled again.
    pub fn incremental(&self) -> bool {
        self.delta.is_some()
    }
}

// === impl Unit ===

impl Unit {
    /// Adds the Ingress to the table and the certificates, as the full
    /// compile does, keeping what it found and which backends it uses.
    fn compile(
        &mut self,
        key: &ObjectKey,
        ingress: &Ingress,
        resolver: &mut Resolver<'_>,
        builder: &mut TableBuilder,
        certificates: &mut Certificates<'_>,
    ) {
        let mut problems = Vec::new();
        if ingress::add(key, ingress, resolver, builder, &mut problems) {
            certificates.add(key, ingress);
        }
        self.problems = problems;
        self.tls_problems = certificates.take_problems();
        self.backends = resolver.take_touched();
    }

    fn has_problems(&self) -> bool {
        !self.problems.is_empty() || !self.tls_problems.is_empty()
    }
}

fn order(key: &ObjectKey, ingress: &Ingress) -> Order {
    Arc::new((ingress.metadata.creation_timestamp.clone(), key.clone()))
}

/// Every slot an Ingress can add to, or lose, read from its spec the way
/// [`ingress::add`] and [`Certificates::add`] read it. More is harmless (a
/// larger set is compiled again); fewer would not be.
fn slots(key: &ObjectKey, ingress: &Ingress) -> Vec<Slot> {
    // Invalid: rejected whole, it adds nothing anywhere.
    let Some(hosts) = ingress::rule_hosts(ingress) else {
        return Vec::new();
    };
    let mut slots: Vec<Slot> = hosts.into_iter().map(Slot::Host).collect();
    let spec = ingress.spec.as_ref();
    if spec.is_some_and(|s| s.default_backend.is_some()) {
        slots.push(Slot::Default);
    }
    for entry in spec.and_then(|s| s.tls.as_ref()).into_iter().flatten() {
        let hosts = entry.hosts.as_deref().unwrap_or_default();
        if hosts.is_empty() {
            continue;
        }
        if let Some(name) = entry.secret_name.as_deref().filter(|n| !n.is_empty()) {
            slots.push(Slot::Secret(ObjectKey::new(key.namespace.clone(), name)));
        }
        for host in hosts {
            if ingress::validate_host(host).is_ok() {
                slots.push(Slot::Tls(HostMatch::from_rule(Some(host))));
            }
        }
    }
    slots.sort();
    slots.dedup();
    slots
}

fn link(contributors: &mut HashMap<Slot, BTreeSet<Order>>, order: &Order, slots: &[Slot]) {
    for slot in slots {
        contributors
            .entry(slot.clone())
            .or_default()
            .insert(order.clone());
    }
}

fn unlink(contributors: &mut HashMap<Slot, BTreeSet<Order>>, order: &Order, slots: &[Slot]) {
    for slot in slots {
        if let Some(orders) = contributors.get_mut(slot) {
            orders.remove(order);
            if orders.is_empty() {
                contributors.remove(slot);
            }
        }
    }
}

fn acquire(backends: &mut BackendCache, user: &Order, keys: &[BackendKey]) {
    for (service, port) in keys {
        if let Some(resolved) = backends.get_mut(service).and_then(|p| p.get_mut(port)) {
            resolved.users.insert(user.clone());
        }
    }
}

fn release(backends: &mut BackendCache, user: &Order, keys: &[BackendKey]) {
    for (service, port) in keys {
        if let Some(resolved) = backends.get_mut(service).and_then(|p| p.get_mut(port)) {
            resolved.users.remove(user);
        }
    }
}

/// Compares two versions of a map of the snapshot, by address first and by
/// value (`same`) where the addresses differ.
fn diff<K: Ord + Clone, V>(
    old: &BTreeMap<K, Arc<V>>,
    new: &BTreeMap<K, Arc<V>>,
    same: impl Fn(&V, &V) -> bool,
) -> Diff<K> {
    let mut out = Diff {
        changed: Vec::new(),
        renewed: Vec::new(),
    };
    let mut old = old.iter().peekable();
    let mut new = new.iter().peekable();
    loop {
        match (old.peek(), new.peek()) {
            (None, None) => break,
            (Some((key, _)), None) => {
                out.changed.push((*key).clone());
                old.next();
            }
            (None, Some((key, _))) => {
                out.changed.push((*key).clone());
                new.next();
            }
            (Some((ok, ov)), Some((nk, nv))) => match ok.cmp(nk) {
                std::cmp::Ordering::Less => {
                    out.changed.push((*ok).clone());
                    old.next();
                }
                std::cmp::Ordering::Greater => {
                    out.changed.push((*nk).clone());
                    new.next();
                }
                std::cmp::Ordering::Equal => {
                    if !Arc::ptr_eq(ov, nv) {
                        match same(ov, nv) {
                            true => out.renewed.push((*nk).clone()),
                            false => out.changed.push((*nk).clone()),
                        }
                    }
                    old.next();
                    new.next();
                }
            },
        }
    }
    out
}

/// Brings `seen` to `new` for the keys of `diff`.
fn renew<K: Ord + Clone, V>(
    seen: &mut BTreeMap<K, Arc<V>>,
    new: &BTreeMap<K, Arc<V>>,
    diff: Diff<K>,
) {
    for key in diff.changed.into_iter().chain(diff.renewed) {
        match new.get(&key) {
            Some(value) => seen.insert(key, value.clone()),
            None => seen.remove(&key),
        };
    }
}
