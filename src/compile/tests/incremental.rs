//! Incremental compiles against full ones: random sequences of Ingress
//! edits (with EndpointSlice and Service changes and the clock moving in
//! between) go through one [`Compiler`]; after each, its table, problems,
//! served Ingresses and policy statuses must be exactly what [`compile`]
//! gives for the same snapshot. A few fixed cases check that the fast path
//! is the one taken, and that it shares what it did not recompile.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use proptest::sample::select;

use super::tls::{Pem, mk_secret, mk_secret_raw, pem, pem_until};
use super::*;
use crate::compile::{Compiler, Delta, HSTS, Update};
use crate::model::{Backend, RoutingTable};
use crate::source::ObjectKey;

// ---------------------------------------------------------------- world

/// Rule hosts, the valid ones more often than the invalid one.
const HOSTS: [Option<&str>; 10] = [
    None,
    Some("a.x.test"),
    Some("a.x.test"),
    Some("b.x.test"),
    Some("*.x.test"),
    Some("*.x.test"),
    Some("c.y.test"),
    Some("c.y.test"),
    Some("www.c.y.test"),
    Some("bad_host"),
];
/// `server-alias` values: names of their own, rule hosts, and one that
/// does not parse.
const ALIASES: [Option<&str>; 6] = [
    None,
    None,
    Some("alias.test, *.alias.test"),
    Some("b.x.test"),
    Some("www.c.y.test,alias.test"),
    Some("bad_alias"),
];
const PATHS: [&str; 5] = ["/", "/a", "/a/b", "/a/", "/c"];
/// Path types; an empty one (invalid: the Ingress is rejected) is rare.
const TYPES: [&str; 10] = [
    "Prefix",
    "Prefix",
    "Prefix",
    "Prefix",
    "Exact",
    "Exact",
    "Exact",
    "ImplementationSpecific",
    "ImplementationSpecific",
    "",
];
/// `c` has no slice, `bad` a slice with an address that is no IP, `gone`
/// does not exist.
const SERVICES: [&str; 5] = ["a", "b", "c", "bad", "gone"];
/// `81` exists only on `c`, and only while [`Op::Service`] says so.
const PORTS: [&str; 3] = ["80", "http", "81"];
const TLS_HOSTS: [&str; 5] = ["a.x.test", "b.x.test", "*.x.test", "c.y.test", "bad_host"];
/// `good` names a.x.test and *.x.test, `other` c.y.test, `soon` b.x.test
/// until mid-2026; `wrong` is no TLS Secret and `missing` does not exist.
const SECRETS: [Option<&str>; 6] = [
    Some("good"),
    Some("other"),
    Some("soon"),
    Some("wrong"),
    Some("missing"),
    None,
];
const CREATED: [Option<&str>; 4] = [None, Some(OLD), Some(MID), Some(NEW)];
const HSTS_VALUES: [Option<&str>; 3] = [None, Some("max-age=600"), Some("forever")];
/// Request-path annotations: none (most often), one that is honoured, one
/// whose value does not parse (the Ingress is rejected), error backends.
const FEATURES: [Option<(&str, &str)>; 6] = [
    None,
    None,
    Some((
        "nginx.ingress.kubernetes.io/whitelist-source-range",
        "10.0.0.0/8",
    )),
    Some(("nginx.ingress.kubernetes.io/proxy-body-size", "lots")),
    // An error backend: one that has slices that change, and one that
    // does not exist (the Ingress is rejected).
    Some(("nginx.ingress.kubernetes.io/default-backend", "b")),
    Some(("nginx.ingress.kubernetes.io/default-backend", "gone")),
];
/// Ingresses are named `i0` to `i5`: few, so that edits meet.
const NAMES: usize = 6;
/// A year: the `soon` certificate has expired a year after [`now`].
const YEAR: Duration = Duration::from_secs(365 * 86_400);

/// An Ingress, as the strategies generate it.
#[derive(Clone, Debug)]
struct Spec {
    created: Option<&'static str>,
    ours: bool,
    rules: Vec<(Option<&'static str>, Vec<PathRow<'static>>)>,
    default: Option<(&'static str, &'static str)>,
    tls: Vec<(Vec<&'static str>, Option<&'static str>)>,
    hsts: Option<&'static str>,
    features: Option<(&'static str, &'static str)>,
    /// `from-to-www-redirect: "true"`.
    www: bool,
    /// `server-alias`.
    alias: Option<&'static str>,
}

/// One change to the snapshot.
#[derive(Clone, Debug)]
enum Op {
    /// Creates or replaces Ingress `i<n>`.
    Put(usize, Spec),
    Delete(usize),
    /// New endpoints for Service `a`, `b` or `bad` (see [`change_slices`]).
    Slice(usize, u8),
    /// Service `c` with or without port 81: a full compile.
    Service(bool),
    /// The clock moves a year on: the `soon` certificate expires.
    Later,
}

/// Changes applied together, then compiled; with `refresh_first`, the
/// endpoint-only refresh runs before the compile.
#[derive(Clone, Debug)]
struct Step {
    ops: Vec<Op>,
    refresh_first: bool,
}

fn spec() -> impl Strategy<Value = Spec> {
    let path = (
        select(PATHS.to_vec()),
        select(TYPES.to_vec()),
        select(SERVICES.to_vec()),
        select(PORTS.to_vec()),
    );
    let rule = (select(HOSTS.to_vec()), prop::collection::vec(path, 1..3));
    let tls = (
        prop::collection::vec(select(TLS_HOSTS.to_vec()), 0..3),
        select(SECRETS.to_vec()),
    );
    (
        select(CREATED.to_vec()),
        prop::bool::weighted(0.9),
        prop::collection::vec(rule, 0..3),
        prop::option::weighted(0.25, (select(SERVICES.to_vec()), select(PORTS.to_vec()))),
        prop::collection::vec(tls, 0..2),
        select(HSTS_VALUES.to_vec()),
        select(FEATURES.to_vec()),
        prop::bool::weighted(0.3),
        select(ALIASES.to_vec()),
    )
        .prop_map(
            |(created, ours, rules, default, tls, hsts, features, www, alias)| Spec {
                created,
                ours,
                rules,
                default,
                tls,
                hsts,
                features,
                www,
                alias,
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..NAMES, spec()).prop_map(|(n, s)| Op::Put(n, s)),
        2 => (0..NAMES).prop_map(Op::Delete),
        3 => (0..3usize, any::<u8>()).prop_map(|(s, seed)| Op::Slice(s, seed)),
        1 => any::<bool>().prop_map(Op::Service),
        1 => Just(Op::Later),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    (prop::collection::vec(op(), 1..4), any::<bool>())
        .prop_map(|(ops, refresh_first)| Step { ops, refresh_first })
}

fn mk(name: usize, spec: &Spec) -> Object {
    let mut ing = mk_ingress("shop", &format!("i{name}"));
    if let Some(created) = spec.created {
        ing = ing.created(created);
    }
    if !spec.ours {
        ing = ing.class("other");
    }
    for (host, paths) in &spec.rules {
        let paths = paths
            .iter()
            .map(|&(path, ty, svc, port)| path_json(path, ty, backend(svc, port)))
            .collect();
        ing = ing.raw_rule(*host, paths);
    }
    if let Some((svc, port)) = spec.default {
        ing = ing.default_backend(svc, port);
    }
    for (hosts, secret) in &spec.tls {
        ing = ing.tls(hosts, *secret);
    }
    if let Some(hsts) = spec.hsts {
        ing = ing.annotate(HSTS, hsts);
    }
    if let Some((key, value)) = spec.features {
        ing = ing.annotate(key, value);
    }
    if spec.www {
        ing = ing.annotate("nginx.ingress.kubernetes.io/from-to-www-redirect", "true");
    }
    if let Some(alias) = spec.alias {
        ing = ing.annotate("nginx.ingress.kubernetes.io/server-alias", alias);
    }
    ing.build()
}

/// Certificates are slow to generate: once for every case.
fn pems() -> &'static [Pem; 3] {
    static PEMS: OnceLock<[Pem; 3]> = OnceLock::new();
    PEMS.get_or_init(|| {
        [
            pem(&["a.x.test", "*.x.test"]),
            pem(&["c.y.test"]),
            pem_until(&["b.x.test"], (2026, 6, 1)),
        ]
    })
}

fn service_c(port_81: bool) -> Object {
    let mut ports = vec![("http", 80, 8080)];
    if port_81 {
        ports.push(("", 81, 8081));
    }
    mk_service("shop", "c", &ports)
}

fn slice(service: usize, seed: u8) -> Object {
    let name = ["a", "b", "bad"][service];
    let mut endpoints = vec![ready(&format!("10.1.{}.{}", seed % 3, seed % 5))];
    if seed.is_multiple_of(4) {
        endpoints.push(ep("10.2.0.1", Some(false), Some(true), Some(true)));
    }
    if name == "bad" {
        // A different bad address, a different problem.
        endpoints.push(ready(["not-an-ip", "nope"][usize::from(seed % 2)]));
    }
    mk_slice(
        "shop",
        &format!("{name}-1"),
        name,
        &[("http", 8080)],
        endpoints,
    )
}

/// One EndpointSlice change for Service `a`, `b` or `bad`: new endpoints
/// mostly; now and then a second slice, the first one gone, or the first
/// one labelled for the next of these Services.
fn change_slices(snapshot: &mut Snapshot, service: usize, seed: u8) {
    let names = ["a", "b", "bad"];
    let name = names[service];
    let ports = [("http", 8080)];
    match seed % 8 {
        0 => {
            let first = ObjectKey::new("shop", format!("{name}-1"));
            snapshot.endpoint_slices.remove(&first);
        }
        1 => {
            let endpoints = vec![ready(&format!("10.3.0.{}", seed % 7))];
            let second = format!("{name}-2");
            snapshot.insert(&mk_slice("shop", &second, name, &ports, endpoints));
        }
        2 => {
            let next = names[(service + 1) % names.len()];
            let first = format!("{name}-1");
            let endpoints = vec![ready("10.4.0.1")];
            snapshot.insert(&mk_slice("shop", &first, next, &ports, endpoints));
        }
        _ => snapshot.insert(&slice(service, seed)),
    }
}

fn policy(name: &str, kind: &str, target: &str) -> Object {
    let group = if kind == "Ingress" {
        "networking.k8s.io"
    } else {
        ""
    };
    Object::BalancerPolicy(typed(json!({
        "apiVersion": "ruststrom.io/v1alpha1",
        "kind": "BalancerPolicy",
        "metadata": {"namespace": "shop", "name": name},
        "spec": {"targetRef": {"group": group, "kind": kind, "name": target}},
    })))
}

/// Everything but the Ingresses.
fn world() -> Snapshot {
    let [good, other, soon] = pems();
    let mut objects = backends("shop", &["a", "b"]);
    objects.extend([
        service_c(false),
        mk_service("shop", "bad", &[("http", 80, 8080)]),
        slice(2, 1),
        mk_secret("shop", "good", good),
        mk_secret("shop", "other", other),
        mk_secret("shop", "soon", soon),
        mk_secret_raw(
            "shop",
            "wrong",
            "Opaque",
            good.cert.as_bytes(),
            good.key.as_bytes(),
        ),
        policy("on-b", "Service", "b"),
        policy("on-i2", "Ingress", "i2"),
    ]);
    objects.iter().collect()
}

fn apply(snapshot: &mut Snapshot, op: &Op, later: &mut bool) {
    match op {
        Op::Put(name, spec) => snapshot.insert(&mk(*name, spec)),
        Op::Delete(name) => {
            snapshot
                .ingresses
                .remove(&ObjectKey::new("shop", format!("i{name}")));
        }
        Op::Slice(service, seed) => change_slices(snapshot, *service, *seed),
        Op::Service(port_81) => snapshot.insert(&service_c(*port_81)),
        Op::Later => *later = true,
    }
}

fn at(later: bool) -> SystemTime {
    if later { now() + YEAR } else { now() }
}

// ---------------------------------------------------------------- checks

/// Everything a table says, one line per route, TLS host and certificate.
fn describe(table: &RoutingTable) -> Vec<String> {
    let route = |host: String, r: &Route| {
        let b = &r.backend;
        format!(
            "{host} {} -> {} ({}) ready={:?} fallback={:?} weights={:?} policy={:?} from {} https={:?} features={:?} errors={:?}",
            r.path,
            b.id,
            b.service,
            addrs(&b.ready),
            addrs(&b.fallback),
            b.weights,
            b.policy,
            r.source,
            r.https,
            r.features,
            r.error_backend
                .as_ref()
                .map(|e| (&e.id, addrs(&e.ready), addrs(&e.fallback))),
        )
    };
    let mut out = vec![format!("generation {}", table.generation())];
    out.extend(
        table
            .routes()
            .into_iter()
            .map(|(host, r)| route(host.to_string(), r)),
    );
    out.extend(table.default_backend().map(|r| route("default".into(), r)));
    out.extend(
        table
            .www_redirects()
            .into_iter()
            .map(|(from, to)| format!("www {from} -> {to}")),
    );
    out.extend(
        table
            .aliases()
            .into_iter()
            .map(|(name, to)| format!("alias {name} -> {to}")),
    );
    let tls = table.tls();
    for (host, t) in tls.hosts() {
        let certificate = t.certificate.as_ref().map(|c| (&c.secret, c.not_after));
        out.push(format!(
            "tls {host} secret={} from {} certificate={certificate:?}",
            t.secret, t.source
        ));
    }
    let default = tls.default_certificate().map(|c| (&c.secret, c.not_after));
    out.push(format!("tls default={default:?} expiry={:?}", tls.expiry()));
    out
}

/// Which routes share a backend: for each route (then the default
/// backend), the first route with the same one.
fn sharing(table: &RoutingTable) -> Vec<usize> {
    let backends: Vec<_> = table
        .routes()
        .into_iter()
        .flat_map(|(_, r)| r.backends())
        .chain(
            table
                .default_backend()
                .into_iter()
                .flat_map(Route::backends),
        )
        .collect();
    backends
        .iter()
        .map(|b| backends.iter().position(|o| Arc::ptr_eq(o, b)).unwrap_or(0))
        .collect()
}

fn same_table(got: &RoutingTable, want: &RoutingTable) -> Result<(), TestCaseError> {
    prop_assert_eq!(describe(got), describe(want));
    prop_assert_eq!(sharing(got), sharing(want));
    Ok(())
}

/// Every backend of a table, once per route (and the default backend).
fn backends_of(table: &RoutingTable) -> Vec<Arc<Backend>> {
    table.backends().cloned().collect()
}

/// The delta of an incremental compile tells the caller everything it has
/// to follow: the backend ids of the new table are the old ones less the
/// removed, plus the added; every backend the old table did not have is
/// among the added or refreshed (so it gets bound to live state).
fn delta_follows(
    before: &RoutingTable,
    after: &RoutingTable,
    delta: &Delta,
) -> Result<(), TestCaseError> {
    let ids = |backends: &mut dyn Iterator<Item = &Arc<Backend>>| {
        let mut ids: Vec<String> = backends.map(|b| b.id.clone()).collect();
        ids.sort();
        ids
    };
    let old = backends_of(before);
    let new = backends_of(after);
    let mut expected = ids(&mut old.iter());
    for id in ids(&mut delta.removed.iter()) {
        let at = expected.iter().position(|e| *e == id);
        prop_assert!(at.is_some(), "removed {} was not there", id);
        expected.remove(at.unwrap_or_default());
    }
    expected.extend(ids(&mut delta.added.iter()));
    expected.sort();
    prop_assert_eq!(expected, ids(&mut new.iter()));
    let known = |b: &Arc<Backend>| {
        old.iter()
            .chain(&delta.added)
            .chain(&delta.refreshed)
            .any(|o| Arc::ptr_eq(o, b))
    };
    prop_assert!(new.iter().all(known), "a new backend is in no list");
    Ok(())
}

fn same(got: &Update, want: &Compiled) -> Result<(), TestCaseError> {
    same_table(&got.table, &want.table)?;
    prop_assert_eq!(&got.problems, &want.problems);
    prop_assert_eq!(&got.ingresses[..], &want.ingresses[..]);
    prop_assert_eq!(&got.policies, &want.policies);
    Ok(())
}

fn run_steps(
    initial: &[(usize, Spec)],
    steps: &[Step],
    default_certificate: bool,
) -> Result<(), TestCaseError> {
    let mut options = options();
    if default_certificate {
        options.default_certificate = Some(ObjectKey::new("shop", "good"));
    }
    let mut snapshot = world();
    for (name, spec) in initial {
        snapshot.insert(&mk(*name, spec));
    }
    let mut later = false;
    let mut compiler = Compiler::new(options.clone());
    let mut generation = 1;
    let first = compiler.compile(&snapshot, generation, at(later));
    prop_assert!(!first.incremental());
    same(&first, &compile(&snapshot, &options, generation, at(later)))?;
    let mut live = first.table;
    for step in steps {
        let mut only_slices = true;
        for op in &step.ops {
            only_slices &= matches!(op, Op::Slice(..));
            apply(&mut snapshot, op, &mut later);
        }
        if step.refresh_first {
            generation += 1;
            let refreshed = compiler.refresh_endpoints(&snapshot, generation);
            let (table, refreshed) = refreshed.ok_or_else(|| TestCaseError::fail("no state"))?;
            if only_slices {
                let want = compile(&snapshot, &options, generation, at(later));
                same_table(&table, &want.table)?;
            }
            let delta = Delta {
                refreshed,
                ..Delta::default()
            };
            delta_follows(&live, &table, &delta)?;
            live = table;
        }
        generation += 1;
        let got = compiler.compile(&snapshot, generation, at(later));
        same(&got, &compile(&snapshot, &options, generation, at(later)))?;
        if let Some(delta) = &got.delta {
            delta_follows(&live, &got.table, delta)?;
        }
        live = got.table;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// The incremental compile gives what the full one gives, after every
    /// step of a random sequence of edits.
    #[test]
    fn incremental_compiles_equal_full_compiles(
        initial in prop::collection::vec((0..NAMES, spec()), 0..NAMES),
        steps in prop::collection::vec(step(), 1..12),
        default_certificate in any::<bool>(),
    ) {
        run_steps(&initial, &steps, default_certificate)?;
    }
}

// ---------------------------------------------------------------- fixed cases

fn simple(name: &str, host: &str, service: &str) -> Object {
    mk_ingress("shop", name)
        .rule(Some(host), &[("/", "Prefix", service, "80")])
        .build()
}

#[test]
fn one_ingress_change_recompiles_its_hosts_and_shares_the_rest() {
    let mut snapshot = world();
    for (name, host) in [("i0", "a.x.test"), ("i1", "b.x.test"), ("i2", "c.y.test")] {
        snapshot.insert(&simple(name, host, "a"));
    }
    // i3 shares c.y.test with i2 (another path): both are compiled again.
    snapshot.insert(
        &mk_ingress("shop", "i3")
            .rule(Some("c.y.test"), &[("/c", "Prefix", "b", "80")])
            .build(),
    );
    let mut compiler = Compiler::new(options());
    let before = compiler.compile(&snapshot, 1, now());
    assert!(!before.incremental());
    assert_eq!(before.compiled, 4);

    snapshot.insert(&simple("i0", "a.x.test", "b"));
    let after = compiler.compile(&snapshot, 2, now());
    assert!(after.incremental());
    assert_eq!(after.compiled, 1);
    assert_eq!(hit_in(&after.table, "a.x.test", "/"), "shop/b:80");
    // The hosts not recompiled are the same routes, not copies.
    let kept = |t: &RoutingTable| t.lookup("b.x.test", "/").map(std::ptr::from_ref);
    assert_eq!(kept(&before.table), kept(&after.table));
    // The backend of the new route is the one other routes to b already use.
    let b = |t: &RoutingTable, host| t.lookup(host, "/c").map(|r| r.backend.clone());
    assert!(Arc::ptr_eq(
        &b(&after.table, "c.y.test").unwrap(),
        &after.table.lookup("a.x.test", "/").unwrap().backend
    ));

    snapshot.insert(&simple("i2", "c.y.test", "b"));
    let shared = compiler.compile(&snapshot, 3, now());
    assert!(shared.incremental());
    assert_eq!(shared.compiled, 2, "i2 and i3 share c.y.test");

    snapshot.ingresses.remove(&ObjectKey::new("shop", "i1"));
    let removed = compiler.compile(&snapshot, 4, now());
    assert!(removed.incremental());
    assert!(removed.table.lookup("b.x.test", "/").is_none());
    assert_eq!(removed.ingresses.len(), 3);
}

#[test]
fn other_changes_and_expired_certificates_take_a_full_compile() {
    let mut snapshot = world();
    snapshot.insert(
        &mk_ingress("shop", "i0")
            .rule(Some("b.x.test"), &[("/", "Prefix", "a", "80")])
            .tls(&["b.x.test"], Some("soon"))
            .build(),
    );
    let mut compiler = Compiler::new(options());
    let first = compiler.compile(&snapshot, 1, now());

    snapshot.insert(&service_c(true));
    let service = compiler.compile(&snapshot, 2, now());
    assert!(!service.incremental(), "a Service changed");
    // A backend that came out the same is the same one, balancer and all.
    let backend = |u: &Update| u.table.lookup("b.x.test", "/").unwrap().backend.clone();
    assert!(Arc::ptr_eq(&backend(&first), &backend(&service)));

    // The same objects in new `Arc`s (a relist) are no change at all.
    let relisted: Vec<Object> = snapshot
        .ingresses
        .values()
        .map(|i| Object::Ingress(Arc::new((**i).clone())))
        .chain(
            snapshot
                .services
                .values()
                .map(|s| Object::Service(Arc::new((**s).clone()))),
        )
        .chain(
            snapshot
                .endpoint_slices
                .values()
                .map(|s| Object::EndpointSlice(Arc::new((**s).clone()))),
        )
        .chain(snapshot.secrets.values().map(|s| Object::Secret(s.clone())))
        .chain(
            snapshot
                .balancer_policies
                .values()
                .map(|p| Object::BalancerPolicy(p.clone())),
        )
        .collect();
    let relisted: Snapshot = relisted.iter().collect();
    let same = compiler.compile(&relisted, 3, now());
    assert!(same.incremental());
    assert_eq!(same.compiled, 0);

    let expired = compiler.compile(&relisted, 4, now() + YEAR);
    assert!(
        !expired.incremental(),
        "the certificate of b.x.test expired"
    );
    assert!(
        expired
            .problems
            .iter()
            .any(|p| p.message.contains("expired")),
        "{:#?}",
        expired.problems
    );
}

#[test]
fn endpoint_changes_refresh_backends_in_place() {
    let mut snapshot = world();
    snapshot.insert(&simple("i0", "a.x.test", "a"));
    snapshot.insert(&simple("i1", "b.x.test", "b"));
    let mut compiler = Compiler::new(options());
    let before = compiler.compile(&snapshot, 1, now());

    snapshot.insert(&slice(0, 7));
    let (table, refreshed) = compiler.refresh_endpoints(&snapshot, 2).unwrap();
    assert_eq!(refreshed.len(), 1);
    let ready = |t: &RoutingTable, host| addrs(&t.lookup(host, "/").unwrap().backend.ready);
    assert_eq!(ready(&table, "a.x.test"), ["10.1.1.2:8080"]);
    let kept = |t: &RoutingTable| t.lookup("b.x.test", "/").map(std::ptr::from_ref);
    assert_eq!(kept(&before.table), kept(&table));

    // The compile after it finds nothing left to do.
    let after = compiler.compile(&snapshot, 3, now());
    assert!(after.incremental());
    let delta = after.delta.unwrap();
    assert_eq!(after.compiled, 0);
    assert!(delta.added.is_empty() && delta.removed.is_empty() && delta.refreshed.is_empty());
}

#[test]
fn endpoint_changes_refresh_error_backends_in_place() {
    let mut snapshot = world();
    let with_errors = mk_ingress("shop", "i0")
        .rule(Some("a.x.test"), &[("/", "Prefix", "a", "80")])
        .annotate("nginx.ingress.kubernetes.io/default-backend", "b")
        .build();
    snapshot.insert(&with_errors);
    let mut compiler = Compiler::new(options());
    let before = compiler.compile(&snapshot, 1, now());
    let errors = |t: &RoutingTable| {
        let route = t.lookup("a.x.test", "/").unwrap();
        addrs(&route.error_backend.as_ref().unwrap().ready)
    };
    let was = errors(&before.table);

    // Service `b` is only the error backend here.
    snapshot.insert(&slice(1, 7));
    let (table, refreshed) = compiler.refresh_endpoints(&snapshot, 2).unwrap();
    assert_eq!(refreshed.len(), 1);
    assert_ne!(errors(&table), was);
    assert_eq!(errors(&table), ["10.1.1.2:8080"]);
}

fn hit_in(table: &RoutingTable, host: &str, path: &str) -> String {
    table
        .lookup(host, path)
        .map(|r| r.backend.id.clone())
        .unwrap_or_default()
}
