//! The routing table: host index, per-host route lists, default backend.

use std::collections::HashMap;
use std::sync::Arc;

use super::host::wildcard_suffix;
use super::{Backend, HostMatch, HttpsPolicy, PathMatch, TlsTable};

/// One path rule and where it sends traffic.
#[derive(Clone, Debug)]
pub struct Route {
    pub path: PathMatch,
    pub backend: Arc<Backend>,
    /// The Ingress that defined it, `namespace/name`.
    pub source: String,
    /// What that Ingress asks of plain HTTP and HTTPS (shared by its routes).
    pub https: Arc<HttpsPolicy>,
}

/// The routes of one host, in precedence order (longest path first, `Exact`
/// before `Prefix`), so lookup is the first match.
#[derive(Debug, Default)]
pub struct HostRoutes {
    routes: Vec<Route>,
}

/// An immutable, fully resolved routing table. Lookup cost depends on the
/// routes of the requested host, never on how many Ingresses exist.
#[derive(Debug, Default)]
pub struct RoutingTable {
    generation: u64,
    exact: HashMap<String, HostRoutes>,
    wildcard: HashMap<String, HostRoutes>,
    any: HostRoutes,
    default_backend: Option<Route>,
    /// Certificates by server name, swapped with the routes they serve.
    tls: TlsTable,
}

/// Builds a table; refuses a rule that takes a host and path already taken
/// by another backend (the compile step adds the oldest Ingress first).
#[derive(Debug, Default)]
pub struct TableBuilder {
    table: RoutingTable,
}

// === impl HostRoutes ===

impl HostRoutes {
    fn find(&self, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.path.matches(path))
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Inserts in precedence order. An identical rule to the same backend is
    /// a harmless duplicate; to another backend it is a conflict and the
    /// route already there (from an older Ingress) is returned.
    fn insert(&mut self, route: Route) -> Result<(), &Route> {
        match self
            .routes
            .binary_search_by(|r| r.path.precedence(&route.path))
        {
            Ok(i) if self.routes[i].backend.same_target(&route.backend) => Ok(()),
            Ok(i) => Err(&self.routes[i]),
            Err(i) => {
                self.routes.insert(i, route);
                Ok(())
            }
        }
    }
}

// === impl RoutingTable ===

impl RoutingTable {
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Finds the backend for a normalized host (see
    /// [`super::normalize_host`]) and a request path without query.
    ///
    /// Order: the exact host's rules, then the wildcard covering it, then the
    /// rules without host, then the default backend.
    pub fn lookup(&self, host: &str, path: &str) -> Option<&Route> {
        if let Some(route) = self.exact.get(host).and_then(|h| h.find(path)) {
            return Some(route);
        }
        if !self.wildcard.is_empty()
            && let Some(route) = wildcard_suffix(host)
                .and_then(|s| self.wildcard.get(s))
                .and_then(|h| h.find(path))
        {
            return Some(route);
        }
        self.any.find(path).or(self.default_backend.as_ref())
    }

    pub fn default_backend(&self) -> Option<&Route> {
        self.default_backend.as_ref()
    }

    /// The certificates and TLS hosts of this table.
    pub fn tls(&self) -> &TlsTable {
        &self.tls
    }

    /// A copy of this table as generation `generation`, with the backends
    /// `replace` returns a substitute for swapped in and everything else
    /// shared. Endpoint-only changes take this path instead of a full
    /// compile: hosts, paths, policies and certificates cannot change.
    pub fn with_backends(
        &self,
        generation: u64,
        mut replace: impl FnMut(&Arc<Backend>) -> Option<Arc<Backend>>,
    ) -> RoutingTable {
        let mut route = |r: &Route| {
            let mut r = r.clone();
            if let Some(b) = replace(&r.backend) {
                r.backend = b;
            }
            r
        };
        let mut hosts = |map: &HashMap<String, HostRoutes>| {
            map.iter()
                .map(|(h, routes)| {
                    let routes = routes.routes.iter().map(&mut route).collect();
                    (h.clone(), HostRoutes { routes })
                })
                .collect::<HashMap<_, _>>()
        };
        let exact = hosts(&self.exact);
        let wildcard = hosts(&self.wildcard);
        RoutingTable {
            generation,
            exact,
            wildcard,
            any: HostRoutes {
                routes: self.any.routes.iter().map(&mut route).collect(),
            },
            default_backend: self.default_backend.as_ref().map(&mut route),
            tls: self.tls.clone(),
        }
    }

    /// Every route's backend (and the default backend's), without the
    /// hosts: a backend shared by several routes comes once per route.
    pub fn backends(&self) -> impl Iterator<Item = &Arc<Backend>> {
        self.exact
            .values()
            .chain(self.wildcard.values())
            .chain(std::iter::once(&self.any))
            .flat_map(|h| h.routes.iter())
            .chain(self.default_backend.as_ref())
            .map(|r| &r.backend)
    }

    /// Every route with its host, in a stable order for display and tests.
    pub fn routes(&self) -> Vec<(HostMatch, &Route)> {
        let mut out = Vec::new();
        let mut exact: Vec<_> = self.exact.iter().collect();
        exact.sort_by(|a, b| a.0.cmp(b.0));
        for (host, routes) in exact {
            out.extend(
                routes
                    .routes
                    .iter()
                    .map(|r| (HostMatch::Exact(host.clone()), r)),
            );
        }
        let mut wildcard: Vec<_> = self.wildcard.iter().collect();
        wildcard.sort_by(|a, b| a.0.cmp(b.0));
        for (suffix, routes) in wildcard {
            out.extend(
                routes
                    .routes
                    .iter()
                    .map(|r| (HostMatch::Wildcard(suffix.clone()), r)),
            );
        }
        out.extend(self.any.routes.iter().map(|r| (HostMatch::Any, r)));
        out
    }

    /// How many routes (host and path pairs) the table holds.
    pub fn len(&self) -> usize {
        self.exact.values().map(|h| h.routes.len()).sum::<usize>()
            + self
                .wildcard
                .values()
                .map(|h| h.routes.len())
                .sum::<usize>()
            + self.any.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0 && self.default_backend.is_none()
    }
}

// === impl TableBuilder ===

impl TableBuilder {
    pub fn new(generation: u64) -> Self {
        Self {
            table: RoutingTable {
                generation,
                ..RoutingTable::default()
            },
        }
    }

    /// Adds a rule. On conflict returns the `source` of the route that keeps
    /// the host and path.
    pub fn add(&mut self, host: &HostMatch, route: Route) -> Result<(), String> {
        let routes = match host {
            HostMatch::Exact(h) => self.table.exact.entry(h.clone()).or_default(),
            HostMatch::Wildcard(s) => self.table.wildcard.entry(s.clone()).or_default(),
            HostMatch::Any => &mut self.table.any,
        };
        routes.insert(route).map_err(|kept| kept.source.clone())
    }

    /// Sets the default backend unless an older Ingress already did; returns
    /// the source of the one kept when this one loses.
    pub fn set_default(&mut self, route: Route) -> Result<(), String> {
        match &self.table.default_backend {
            Some(kept) if kept.backend.same_target(&route.backend) => Ok(()),
            Some(kept) => Err(kept.source.clone()),
            None => {
                self.table.default_backend = Some(route);
                Ok(())
            }
        }
    }

    /// Sets the TLS part, compiled beside the routes.
    pub fn set_tls(&mut self, tls: TlsTable) {
        self.table.tls = tls;
    }

    pub fn build(self) -> RoutingTable {
        self.table
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: PathMatch, backend: &str, source: &str) -> Route {
        Route {
            path,
            backend: Arc::new(Backend::new(backend.into(), vec![], vec![])),
            source: source.into(),
            https: Arc::default(),
        }
    }

    fn table(rules: Vec<(HostMatch, Route)>, default: Option<Route>) -> RoutingTable {
        let mut b = TableBuilder::new(1);
        for (h, r) in rules {
            b.add(&h, r).unwrap();
        }
        if let Some(d) = default {
            b.set_default(d).unwrap();
        }
        b.build()
    }

    fn hit<'a>(t: &'a RoutingTable, host: &str, path: &str) -> Option<&'a str> {
        t.lookup(host, path).map(|r| r.backend.id.as_str())
    }

    #[test]
    fn exact_then_wildcard_then_any_then_default() {
        let t = table(
            vec![
                (
                    HostMatch::from_rule(Some("a.foo.com")),
                    route(PathMatch::prefix("/api"), "exact", "i"),
                ),
                (
                    HostMatch::from_rule(Some("*.foo.com")),
                    route(PathMatch::prefix("/"), "wild", "i"),
                ),
                (
                    HostMatch::Any,
                    route(PathMatch::prefix("/static"), "any", "i"),
                ),
            ],
            Some(route(PathMatch::prefix("/"), "default", "i")),
        );
        let cases = [
            ("a.foo.com", "/api/x", Some("exact")),
            ("a.foo.com", "/other", Some("wild")),
            ("b.foo.com", "/static", Some("wild")),
            ("x.b.foo.com", "/static", Some("any")),
            ("foo.com", "/static/x", Some("any")),
            ("foo.com", "/", Some("default")),
            ("other", "/nothing", Some("default")),
        ];
        for (host, path, want) in cases {
            assert_eq!(hit(&t, host, path), want, "{host}{path}");
        }
    }

    #[test]
    fn no_default_means_no_match() {
        let t = table(
            vec![(
                HostMatch::from_rule(Some("foo.com")),
                route(PathMatch::exact("/x"), "b", "i"),
            )],
            None,
        );
        assert_eq!(hit(&t, "foo.com", "/y"), None);
        assert_eq!(hit(&t, "bar.com", "/x"), None);
        assert_eq!(hit(&t, "foo.com", "/x"), Some("b"));
    }

    #[test]
    fn conflicts_keep_the_first_and_duplicates_merge() {
        let mut b = TableBuilder::new(1);
        let h = HostMatch::from_rule(Some("foo.com"));
        b.add(&h, route(PathMatch::prefix("/a"), "one", "ns/old"))
            .unwrap();
        assert_eq!(
            b.add(&h, route(PathMatch::prefix("/a/"), "two", "ns/new")),
            Err("ns/old".into())
        );
        b.add(&h, route(PathMatch::prefix("/a"), "one", "ns/dup"))
            .unwrap();
        b.add(&h, route(PathMatch::exact("/a"), "two", "ns/new"))
            .unwrap();
        let t = b.build();
        assert_eq!(t.len(), 2);
        assert_eq!(hit(&t, "foo.com", "/a"), Some("two"));
        assert_eq!(hit(&t, "foo.com", "/a/b"), Some("one"));
    }
}
