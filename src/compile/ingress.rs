//! One Ingress: validated, then its rules and default backend added to the
//! table.

use std::sync::Arc;

use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};

use super::Problem;
use super::service::{PortRef, Resolver};
use crate::model::{Backend, HostMatch, PathMatch, Route, TableBuilder};
use crate::source::ObjectKey;

const KIND: &str = "Ingress";

/// A rule after validation, before its backend is resolved.
struct Rule<'a> {
    host: HostMatch,
    path: PathMatch,
    backend: &'a IngressBackend,
}

/// Validates an Ingress and adds it to the table. An invalid Ingress is
/// rejected whole (as the API server would refuse it); a rule whose backend
/// cannot be resolved is kept and answers 503, so traffic for that path never
/// falls through to a broader rule. Returns whether the Ingress was
/// accepted (its `spec.tls` is served only then).
pub(super) fn add(
    key: &ObjectKey,
    ingress: &Ingress,
    backends: &mut Resolver<'_>,
    builder: &mut TableBuilder,
    problems: &mut Vec<Problem>,
) -> bool {
    let spec = ingress.spec.as_ref();
    let rules = match validate(ingress) {
        Ok(rules) => rules,
        Err(reason) => {
            problems.push(Problem::rejected(KIND, key, reason));
            return false;
        }
    };
    // The uid too: an Ingress deleted and made again starts its limits
    // afresh, as in ingress-nginx.
    let owner = format!(
        "{key}#{}",
        ingress.metadata.uid.as_deref().unwrap_or_default()
    );
    let annotations = match super::annotations::parse(
        ingress.metadata.annotations.as_ref(),
        &key.namespace,
        &owner,
        backends.snapshot(),
    ) {
        Ok(parsed) => parsed,
        Err(reason) => {
            problems.push(Problem::rejected(KIND, key, reason));
            return false;
        }
    };
    let error_backend = match &annotations.default_backend {
        Some((annotation, name)) => match error_backend(key, name, backends) {
            Ok(backend) => Some(backend),
            Err(reason) => {
                problems.push(Problem::rejected(
                    KIND,
                    key,
                    format!("annotation {annotation}: {reason}"),
                ));
                return false;
            }
        },
        None => None,
    };
    // An auth-url naming a cluster Service: its backend, so the subrequest
    // goes through the pools (when it cannot be resolved, through DNS).
    let auth_backend = annotations
        .features
        .as_ref()
        .and_then(|f| f.ext_auth.as_ref())
        .and_then(|auth| {
            super::annotations::service_target(&auth.url, &key.namespace, backends.snapshot())
        })
        .and_then(|(service, port)| {
            backends
                .backend(key, &service, &PortRef::Number(i32::from(port)))
                .ok()
        });
    for notice in annotations.notices {
        problems.push(Problem::warning(KIND, key, notice));
    }
    let https = annotations.https;
    let features = annotations.features;
    let from_to_www = annotations.from_to_www;
    let aliases = annotations.aliases;
    let source = key.to_string();

    if let Some(default) = spec.and_then(|s| s.default_backend.as_ref()) {
        let backend = resolve(key, default, backends, problems, "defaultBackend");
        let route = Route {
            path: PathMatch::prefix("/"),
            backend,
            source: source.clone(),
            https: https.clone(),
            features: features.clone(),
            error_backend: error_backend.clone(),
            auth_backend: auth_backend.clone(),
        };
        if let Err(kept) = builder.set_default(route) {
            problems.push(Problem::warning(
                KIND,
                key,
                format!("defaultBackend ignored: the older Ingress {kept} already sets one"),
            ));
        }
    }

    let mut www_done = Vec::new();
    let mut aliases_done = Vec::new();
    for rule in rules {
        if !aliases.is_empty()
            && let HostMatch::Exact(name) = &rule.host
            && !aliases_done.contains(name)
        {
            if let Err(kept) = builder.add_aliases(name, &aliases, &source) {
                problems.push(Problem::warning(
                    KIND,
                    key,
                    format!("server-alias for {name} ignored: the older Ingress {kept} already gives it aliases"),
                ));
            }
            aliases_done.push(name.clone());
        }
        if from_to_www
            && let HostMatch::Exact(name) = &rule.host
            && !www_done.contains(name)
        {
            if let Some(twin) = super::annotations::www_twin(name) {
                builder.add_www(&twin, name);
            }
            www_done.push(name.clone());
        }
        let what = format!("rule {} {}", rule.host, rule.path);
        let backend = resolve(key, rule.backend, backends, problems, &what);
        let route = Route {
            path: rule.path,
            backend,
            source: source.clone(),
            https: https.clone(),
            features: features.clone(),
            error_backend: error_backend.clone(),
            auth_backend: auth_backend.clone(),
        };
        if let Err(kept) = builder.add(&rule.host, route) {
            let message = if kept == source {
                format!("{what} is given twice with different backends; the first is kept")
            } else {
                format!("{what} conflicts with the older Ingress {kept}, which keeps it")
            };
            problems.push(Problem::rejected(KIND, key, message));
        }
    }
    true
}

/// The hosts whose routes a valid Ingress adds to, once per rule path;
/// `None` when it is invalid (rejected whole, it adds nothing).
/// With `from-to-www-redirect`, the other name of each host too; with
/// `server-alias`, its names.
pub(super) fn rule_hosts(ingress: &Ingress) -> Option<Vec<HostMatch>> {
    let rules = validate(ingress).ok()?;
    let annotations = ingress.metadata.annotations.as_ref();
    let www = super::annotations::mentions_from_to_www(annotations);
    let mut hosts: Vec<HostMatch> = super::annotations::mentioned_aliases(annotations)
        .iter()
        .map(|name| HostMatch::from_rule(Some(name)))
        .collect();
    for rule in rules {
        if www
            && let HostMatch::Exact(name) = &rule.host
            && let Some(twin) = super::annotations::www_twin(name)
        {
            hosts.push(HostMatch::Exact(twin));
        }
        hosts.push(rule.host);
    }
    Some(hosts)
}

/// The backend of the `default-backend` annotation: the first port of the
/// named Service in the Ingress's namespace (ingress-nginx's choice). A
/// Service that does not exist, or has no port, rejects the Ingress: its
/// error pages would otherwise come from the backend it meant to hide.
fn error_backend(
    key: &ObjectKey,
    name: &str,
    backends: &mut Resolver<'_>,
) -> Result<Arc<Backend>, String> {
    let service = ObjectKey::new(key.namespace.clone(), name.to_string());
    let svc = backends
        .snapshot()
        .services
        .get(&service)
        .ok_or_else(|| format!("Service {service} does not exist"))?;
    let port = svc
        .spec
        .as_ref()
        .and_then(|spec| spec.ports.as_ref())
        .and_then(|ports| ports.first())
        .ok_or_else(|| format!("Service {service} has no port"))?
        .port;
    backends.backend(key, &service, &PortRef::Number(port))
}

/// The backend of a rule; when it cannot be resolved, a backend without
/// endpoints (503) and a problem saying why.
fn resolve(
    key: &ObjectKey,
    backend: &IngressBackend,
    backends: &mut Resolver<'_>,
    problems: &mut Vec<Problem>,
    what: &str,
) -> Arc<Backend> {
    // validate() guarantees a service backend with exactly one port form.
    let (service, port) = match service_ref(key, backend) {
        Ok(found) => found,
        Err(reason) => {
            problems.push(Problem::rejected(KIND, key, format!("{what}: {reason}")));
            return Arc::new(Backend::new(
                format!("{key}:invalid"),
                Vec::new(),
                Vec::new(),
            ));
        }
    };
    backends
        .backend(key, &service, &port)
        .unwrap_or_else(|reason| {
            problems.push(Problem::rejected(KIND, key, format!("{what}: {reason}")));
            Arc::new(Backend::new(
                format!("{service}:{port}"),
                Vec::new(),
                Vec::new(),
            ))
        })
}

fn service_ref(key: &ObjectKey, backend: &IngressBackend) -> Result<(ObjectKey, PortRef), String> {
    if backend.resource.is_some() {
        return Err("resource backends are not supported; use a service backend".into());
    }
    let svc = backend.service.as_ref().ok_or("backend names no service")?;
    if svc.name.is_empty() {
        return Err("backend service has no name".into());
    }
    let port = svc.port.as_ref().ok_or("backend service has no port")?;
    let port = match (port.number, port.name.as_deref()) {
        (Some(n), None) if (1..=65535).contains(&n) => PortRef::Number(n),
        (Some(n), None) => return Err(format!("port {n} is out of range")),
        (None, Some(name)) if !name.is_empty() => PortRef::Name(name.to_string()),
        _ => return Err("backend service port needs exactly one of number or name".into()),
    };
    Ok((
        ObjectKey::new(key.namespace.clone(), svc.name.clone()),
        port,
    ))
}

/// Checks what the API server would check, for objects that came from files
/// and never passed it.
fn validate(ingress: &Ingress) -> Result<Vec<Rule<'_>>, String> {
    let Some(spec) = ingress.spec.as_ref() else {
        return Err("spec is missing".into());
    };
    let no_rules = spec.rules.as_ref().is_none_or(|r| r.is_empty());
    if no_rules && spec.default_backend.is_none() {
        return Err("has neither rules nor defaultBackend".into());
    }
    let mut out = Vec::new();
    for rule in spec.rules.iter().flatten() {
        if let Some(host) = rule.host.as_deref() {
            validate_host(host).map_err(|e| format!("host {host:?}: {e}"))?;
        }
        let host = HostMatch::from_rule(rule.host.as_deref());
        let Some(http) = rule.http.as_ref() else {
            continue;
        };
        for p in &http.paths {
            let path = p.path.as_deref().unwrap_or("");
            let matcher = match p.path_type.as_str() {
                "Exact" => PathMatch::exact(path),
                "Prefix" => PathMatch::prefix(path),
                // Ours behaves as Prefix; an unset path means "everything".
                "ImplementationSpecific" => {
                    PathMatch::prefix(if path.is_empty() { "/" } else { path })
                }
                "" => return Err(format!("path {path:?}: pathType is required")),
                other => return Err(format!("path {path:?}: unknown pathType {other:?}")),
            };
            // The API server's rule: Exact and Prefix paths are absolute.
            let absolute = path.starts_with('/')
                || (p.path_type == "ImplementationSpecific" && path.is_empty());
            if !absolute {
                return Err(format!("path {path:?}: must be an absolute path"));
            }
            if matcher.path().contains(char::is_whitespace) {
                return Err(format!("path {path:?}: must not contain white space"));
            }
            out.push(Rule {
                host: host.clone(),
                path: matcher,
                backend: &p.backend,
            });
        }
    }
    Ok(out)
}

/// A DNS-1123 subdomain, optionally with `*.` as its whole first label. IP
/// addresses are not hosts in an Ingress rule.
pub(super) fn validate_host(host: &str) -> Result<(), &'static str> {
    let name = host.strip_prefix("*.").unwrap_or(host);
    if name.is_empty() || host.len() > 253 {
        return Err("must be a DNS name of at most 253 characters");
    }
    if name.contains('*') {
        return Err("a wildcard must be the whole first label, as in *.example.com");
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err("must be a DNS name: labels of letters, digits and '-'");
        }
    }
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Err("must be a DNS name, not an IP address");
    }
    Ok(())
}
