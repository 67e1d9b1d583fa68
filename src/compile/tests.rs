//! Table-driven tests of the compile step: a snapshot of objects in, route
//! lookups and problems out. Fixtures and checks live here; the cases live in
//! [`routing`] (class, hosts, paths, merging, default backend), [`backends`]
//! (Services, EndpointSlices, ExternalName), [`invalid`] (bad objects),
//! [`tls`] (Secrets, certificates by host, HTTPS annotations) and [`policy`]
//! (BalancerPolicies). [`incremental`] checks that incremental compiles give
//! what a full compile gives.

mod annotations;
mod backends;
mod incremental;
mod invalid;
mod policy;
mod routing;
mod tls;

use std::sync::Arc;

use serde_json::{Value, json};

use super::{CONTROLLER_NAME, CompileOptions, Compiled, Severity, compile};
use crate::model::{Endpoint, EndpointAddr, Route, normalize_host};
use crate::source::{Object, Snapshot};

// ---------------------------------------------------------------- fixtures

const CLASS: &str = "ruststrom";
const OTHER_CONTROLLER: &str = "k8s.io/ingress-nginx";
const DEFAULT_CLASS: &str = "ingressclass.kubernetes.io/is-default-class";
const LEGACY_CLASS: &str = "kubernetes.io/ingress.class";
const OLD: &str = "2020-01-01T00:00:00Z";
const MID: &str = "2021-01-01T00:00:00Z";
const NEW: &str = "2022-01-01T00:00:00Z";

fn typed<T: serde::de::DeserializeOwned>(value: Value) -> Arc<T> {
    Arc::new(serde_json::from_value(value).expect("fixture must deserialize"))
}

/// Service ports as `(name, port, targetPort)`; an empty name is unnamed.
fn service_ports(ports: &[(&str, i32, i32)]) -> Value {
    ports
        .iter()
        .map(|&(name, port, target)| {
            let mut p = json!({"port": port, "targetPort": target});
            if !name.is_empty() {
                p["name"] = json!(name);
            }
            p
        })
        .collect()
}

fn mk_service(ns: &str, name: &str, ports: &[(&str, i32, i32)]) -> Object {
    Object::Service(typed(json!({
        "metadata": {"namespace": ns, "name": name},
        "spec": {"ports": service_ports(ports)},
    })))
}

fn mk_external_service(ns: &str, name: &str, host: &str, ports: &[(&str, i32, i32)]) -> Object {
    Object::Service(typed(json!({
        "metadata": {"namespace": ns, "name": name},
        "spec": {"type": "ExternalName", "externalName": host, "ports": service_ports(ports)},
    })))
}

/// An IPv4 EndpointSlice labelled for `service` (unlabelled when empty),
/// with ports as `(name, port)`.
fn mk_slice(
    ns: &str,
    name: &str,
    service: &str,
    ports: &[(&str, i32)],
    endpoints: Vec<Value>,
) -> Object {
    mk_slice_of("IPv4", ns, name, service, ports, endpoints)
}

fn mk_slice_of(
    address_type: &str,
    ns: &str,
    name: &str,
    service: &str,
    ports: &[(&str, i32)],
    endpoints: Vec<Value>,
) -> Object {
    let mut meta = json!({"namespace": ns, "name": name});
    if !service.is_empty() {
        meta["labels"] = json!({"kubernetes.io/service-name": service});
    }
    let ports: Value = ports
        .iter()
        .map(|&(name, port)| {
            let mut p = json!({"port": port});
            if !name.is_empty() {
                p["name"] = json!(name);
            }
            p
        })
        .collect();
    Object::EndpointSlice(typed(json!({
        "metadata": meta,
        "addressType": address_type,
        "ports": ports,
        "endpoints": endpoints,
    })))
}

/// An endpoint with the given conditions; unset ones are left out.
fn ep(addr: &str, ready: Option<bool>, serving: Option<bool>, terminating: Option<bool>) -> Value {
    let mut conditions = json!({});
    for (key, value) in [
        ("ready", ready),
        ("serving", serving),
        ("terminating", terminating),
    ] {
        if let Some(value) = value {
            conditions[key] = json!(value);
        }
    }
    json!({"addresses": [addr], "conditions": conditions})
}

fn ready(addr: &str) -> Value {
    ep(addr, Some(true), Some(true), Some(false))
}

fn mk_class(name: &str, controller: &str, is_default: bool) -> Object {
    let mut meta = json!({"name": name});
    if is_default {
        meta["annotations"] = json!({DEFAULT_CLASS: "true"});
    }
    Object::IngressClass(typed(
        json!({"metadata": meta, "spec": {"controller": controller}}),
    ))
}

/// For each name, a Service with port `http` 80 -> 8080 and a slice with one
/// ready endpoint, so routes to it resolve without problems.
fn backends(ns: &str, names: &[&str]) -> Vec<Object> {
    names
        .iter()
        .flat_map(|&name| {
            let endpoints = vec![ready("10.0.0.1")];
            [
                mk_service(ns, name, &[("http", 80, 8080)]),
                mk_slice(ns, &format!("{name}-1"), name, &[("http", 8080)], endpoints),
            ]
        })
        .collect()
}

/// An Ingress backend: a port that parses as a number is `port.number`,
/// anything else `port.name`.
fn backend(service: &str, port: &str) -> Value {
    let port = match port.parse::<i32>() {
        Ok(n) => json!({"number": n}),
        Err(_) => json!({"name": port}),
    };
    json!({"service": {"name": service, "port": port}})
}

/// One HTTPIngressPath; an empty `path` or `path_type` is left out.
fn path_json(path: &str, path_type: &str, backend: Value) -> Value {
    let mut p = json!({"backend": backend});
    if !path.is_empty() {
        p["path"] = json!(path);
    }
    if !path_type.is_empty() {
        p["pathType"] = json!(path_type);
    }
    p
}

/// `(path, pathType, service, port)`.
type PathRow<'a> = (&'a str, &'a str, &'a str, &'a str);

/// An Ingress under construction, as JSON. It starts with
/// `ingressClassName: ruststrom`.
#[derive(Clone)]
struct Ing(Value);

fn mk_ingress(ns: &str, name: &str) -> Ing {
    Ing(json!({
        "metadata": {"namespace": ns, "name": name},
        "spec": {"ingressClassName": CLASS},
    }))
}

impl Ing {
    fn class(mut self, class: &str) -> Self {
        self.0["spec"]["ingressClassName"] = json!(class);
        self
    }

    fn no_class(mut self) -> Self {
        self.0["spec"]
            .as_object_mut()
            .unwrap()
            .remove("ingressClassName");
        self
    }

    fn annotate(mut self, key: &str, value: &str) -> Self {
        self.0["metadata"]["annotations"][key] = json!(value);
        self
    }

    fn created(mut self, timestamp: &str) -> Self {
        self.0["metadata"]["creationTimestamp"] = json!(timestamp);
        self
    }

    fn rule(self, host: Option<&str>, paths: &[PathRow]) -> Self {
        let paths = paths
            .iter()
            .map(|&(path, ty, svc, port)| path_json(path, ty, backend(svc, port)))
            .collect();
        self.raw_rule(host, paths)
    }

    fn raw_rule(mut self, host: Option<&str>, paths: Vec<Value>) -> Self {
        let mut rule = json!({"http": {"paths": paths}});
        if let Some(host) = host {
            rule["host"] = json!(host);
        }
        let rules = &mut self.0["spec"]["rules"];
        if rules.is_null() {
            *rules = json!([]);
        }
        rules.as_array_mut().unwrap().push(rule);
        self
    }

    fn default_backend(mut self, service: &str, port: &str) -> Self {
        self.0["spec"]["defaultBackend"] = backend(service, port);
        self
    }

    fn build(self) -> Object {
        Object::Ingress(typed(self.0))
    }
}

// ---------------------------------------------------------------- running

fn options() -> CompileOptions {
    CompileOptions {
        ingress_class: CLASS.into(),
        watch_without_class: false,
        allow_external_name: false,
        default_certificate: None,
    }
}

/// The time every compile in these tests runs at: 2026-01-01T00:00:00Z.
fn now() -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_767_225_600)
}

fn run(objects: &[Object]) -> Compiled {
    run_with(objects, &options())
}

fn run_with(objects: &[Object], options: &CompileOptions) -> Compiled {
    let snapshot: Snapshot = objects.iter().collect();
    compile(&snapshot, options, 7, now())
}

// ---------------------------------------------------------------- checks

/// Looks a raw `Host` header up the way the proxy does.
fn route<'a>(c: &'a Compiled, host: &str, path: &str) -> Option<&'a Route> {
    c.table.lookup(&normalize_host(host), path)
}

fn hit(c: &Compiled, host: &str, path: &str) -> Option<String> {
    route(c, host, path).map(|r| r.backend.id.clone())
}

/// Checks every `(host, path, backend id)`, reporting all mismatches at once.
fn check_routes(c: &Compiled, cases: &[(&str, &str, Option<&str>)]) {
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|&(host, path, want)| {
            let got = hit(c, host, path);
            (got.as_deref() != want).then(|| format!("{host} {path}: got {got:?}, want {want:?}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{}\nproblems: {:#?}",
        failures.join("\n"),
        c.problems
    );
}

/// The problems must be exactly these `(severity, object, message part)`, in
/// any order.
fn expect_problems(c: &Compiled, want: &[(Severity, &str, &str)]) {
    let mut left: Vec<_> = c.problems.iter().collect();
    for &(severity, object, part) in want {
        let found = left.iter().position(|p| {
            p.severity == severity && p.object.to_string() == object && p.message.contains(part)
        });
        match found {
            Some(i) => {
                left.remove(i);
            }
            None => panic!(
                "no {severity:?} problem on {object} containing {part:?}; problems: {:#?}",
                c.problems
            ),
        }
    }
    assert!(left.is_empty(), "unexpected problems: {left:#?}");
}

fn addrs(endpoints: &[Endpoint]) -> Vec<String> {
    endpoints.iter().map(ToString::to_string).collect()
}

/// The Ingresses served, as `namespace/name`, oldest first.
fn keys(c: &Compiled) -> Vec<String> {
    c.ingresses.iter().map(ToString::to_string).collect()
}
