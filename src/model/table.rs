//! The routing table: host index, per-host route lists, default backend.

use std::collections::HashMap;
use std::sync::Arc;

use super::host::wildcard_suffix;
use super::{Backend, HostMatch, HttpsPolicy, PathMatch, RouteFeatures, TlsTable};

/// One path rule and where it sends traffic.
#[derive(Clone, Debug)]
pub struct Route {
    pub path: PathMatch,
    pub backend: Arc<Backend>,
    /// The Ingress that defined it, `namespace/name`.
    pub source: String,
    /// What that Ingress asks of plain HTTP and HTTPS (shared by its routes).
    pub https: Arc<HttpsPolicy>,
    /// What that Ingress's annotations ask on the request path; `None`
    /// when nothing (shared by its routes).
    pub features: Option<Arc<RouteFeatures>>,
    /// `default-backend`: answers for the route when its backend has no
    /// endpoint, and gives the error pages of `custom-http-errors`. Here
    /// rather than in `features` so that endpoint updates swap it like the
    /// route's backend.
    pub error_backend: Option<Arc<Backend>>,
    /// `auth-url` naming a cluster Service over plain HTTP: that Service's
    /// port, so the subrequest goes through the same pools, balancing and
    /// health as any backend (and endpoint updates swap it too).
    pub auth_backend: Option<Arc<Backend>>,
}

/// The routes of one host, in precedence order (longest path first, `Exact`
/// before `Prefix`), so lookup is the first match.
///
/// Shared (`Arc`), so that a new table which changes some hosts, or some
/// backends, copies pointers for all the others instead of their routes.
/// The slice lives in the `Arc`'s allocation: lookup follows no more
/// pointers than it would through a `Vec`.
#[derive(Clone, Debug, Default)]
pub struct HostRoutes {
    routes: Arc<[Route]>,
    /// `from-to-www-redirect`: this name has no routes of its own, and its
    /// requests are redirected to this host (the same name with or without
    /// `www.`).
    www: Option<Arc<str>>,
    /// `server-alias`: this name has no routes of its own, and is served by
    /// the routes (and certificate) of this exact host, looked up at
    /// request time so that it follows every change of that host.
    alias_of: Option<Arc<str>>,
}

/// An immutable, fully resolved routing table. Lookup cost depends on the
/// routes of the requested host, never on how many Ingresses exist.
#[derive(Debug, Default)]
pub struct RoutingTable {
    generation: u64,
    exact: HashMap<Arc<str>, HostRoutes>,
    wildcard: HashMap<Arc<str>, HostRoutes>,
    any: HostRoutes,
    default_backend: Option<Route>,
    /// Certificates by server name, swapped with the routes they serve;
    /// shared by tables whose TLS part did not change.
    tls: Arc<TlsTable>,
    /// Some exact host may be a `from-to-www-redirect` name: only then does
    /// a request look for one.
    has_www: bool,
    /// Some host entry may be a `server-alias` name.
    has_alias: bool,
}

/// Builds a table; refuses a rule that takes a host and path already taken
/// by another backend (the compile step adds the oldest Ingress first).
#[derive(Debug, Default)]
pub struct TableBuilder {
    generation: u64,
    exact: HashMap<String, Vec<Route>>,
    wildcard: HashMap<String, Vec<Route>>,
    any: Vec<Route>,
    default_backend: Option<Route>,
    tls: TlsTable,
    /// `from-to-www-redirect` names and their targets, first come first
    /// served; dropped at build for names that have routes.
    www: HashMap<String, String>,
    /// `server-alias` names and the exact host each serves, first come
    /// first served; dropped at build for names that have routes.
    aliases: HashMap<HostMatch, String>,
    /// The hosts whose aliases an Ingress has set, and which Ingress.
    aliased: HashMap<String, String>,
}

// === impl HostRoutes ===

impl HostRoutes {
    fn find(&self, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.path.matches(path))
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// A copy with the backends `replace` returns a substitute for swapped
    /// in; `None` when no route changes, so the caller keeps sharing this.
    fn with_backends(
        &self,
        replace: &mut impl FnMut(&Arc<Backend>) -> Option<Arc<Backend>>,
    ) -> Option<HostRoutes> {
        let mut copy: Option<Vec<Route>> = None;
        for (i, route) in self.routes.iter().enumerate() {
            if let Some(backend) = replace(&route.backend) {
                copy.get_or_insert_with(|| self.routes.to_vec())[i].backend = backend;
            }
            if let Some(backend) = route.error_backend.as_ref().and_then(&mut *replace) {
                copy.get_or_insert_with(|| self.routes.to_vec())[i].error_backend = Some(backend);
            }
            if let Some(backend) = route.auth_backend.as_ref().and_then(&mut *replace) {
                copy.get_or_insert_with(|| self.routes.to_vec())[i].auth_backend = Some(backend);
            }
        }
        copy.map(|routes| HostRoutes {
            routes: routes.into(),
            www: self.www.clone(),
            alias_of: self.alias_of.clone(),
        })
    }
}

/// Inserts in precedence order. An identical rule to the same backend is a
/// harmless duplicate; to another backend, or with other request-path
/// features (a newer Ingress's restriction must not vanish silently), it is
/// a conflict and the route already there (from an older Ingress) is
/// returned.
fn insert(routes: &mut Vec<Route>, route: Route) -> Result<(), &Route> {
    match routes.binary_search_by(|r| r.path.precedence(&route.path)) {
        Ok(i)
            if routes[i].backend.same_target(&route.backend)
                && routes[i].features == route.features
                && same_extra_backends(&routes[i], &route) =>
        {
            Ok(())
        }
        Ok(i) => Err(&routes[i]),
        Err(i) => {
            routes.insert(i, route);
            Ok(())
        }
    }
}

impl Route {
    /// Its backend, then its error and auth backends if it has them.
    pub fn backends(&self) -> impl Iterator<Item = &Arc<Backend>> {
        std::iter::once(&self.backend)
            .chain(self.error_backend.as_ref())
            .chain(self.auth_backend.as_ref())
    }
}

/// Whether two routes have the same error and auth backends.
fn same_extra_backends(a: &Route, b: &Route) -> bool {
    let same = |x: &Option<Arc<Backend>>, y: &Option<Arc<Backend>>| match (x, y) {
        (None, None) => true,
        (Some(x), Some(y)) => x.same_target(y),
        _ => false,
    };
    same(&a.error_backend, &b.error_backend) && same(&a.auth_backend, &b.auth_backend)
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
        if let Some(route) = self
            .exact
            .get(host)
            .and_then(|h| self.aliased(h).find(path))
        {
            return Some(route);
        }
        if !self.wildcard.is_empty()
            && let Some(route) = wildcard_suffix(host)
                .and_then(|s| self.wildcard.get(s))
                .and_then(|h| self.aliased(h).find(path))
        {
            return Some(route);
        }
        self.any.find(path).or(self.default_backend.as_ref())
    }

    /// The routes a host entry stands for: its own, or for a `server-alias`
    /// name those of the host it is an alias of.
    fn aliased<'t>(&'t self, entry: &'t HostRoutes) -> &'t HostRoutes {
        match &entry.alias_of {
            Some(target) if self.has_alias => self.exact.get(&**target).unwrap_or(entry),
            _ => entry,
        }
    }

    /// The host whose TLS settings a normalized request host uses: the host
    /// a `server-alias` name stands for, else the name itself.
    pub fn tls_host<'a>(&'a self, host: &'a str) -> &'a str {
        if !self.has_alias {
            return host;
        }
        let entry = self.exact.get(host).or_else(|| {
            wildcard_suffix(host)
                .and_then(|s| self.wildcard.get(s))
                .filter(|h| h.alias_of.is_some())
        });
        entry.and_then(|h| h.alias_of.as_deref()).unwrap_or(host)
    }

    /// Every `server-alias` name and the host it stands for, sorted.
    pub fn aliases(&self) -> Vec<(HostMatch, &str)> {
        let exact = self
            .exact
            .iter()
            .map(|(name, h)| (HostMatch::Exact(name.to_string()), h));
        let wildcard = self
            .wildcard
            .iter()
            .map(|(suffix, h)| (HostMatch::Wildcard(suffix.to_string()), h));
        let mut out: Vec<(HostMatch, &str)> = exact
            .chain(wildcard)
            .filter_map(|(name, h)| Some((name, h.alias_of.as_deref()?)))
            .collect();
        out.sort_unstable();
        out
    }

    pub fn default_backend(&self) -> Option<&Route> {
        self.default_backend.as_ref()
    }

    /// The host a `from-to-www-redirect` sends a normalized request host to,
    /// when that name has no routes of its own. Costs nothing when no
    /// Ingress asks for it.
    pub fn www_redirect(&self, host: &str) -> Option<&str> {
        if !self.has_www {
            return None;
        }
        self.exact.get(host)?.www.as_deref()
    }

    /// Every `from-to-www-redirect` name and its target, sorted.
    pub fn www_redirects(&self) -> Vec<(&str, &str)> {
        let mut out: Vec<(&str, &str)> = self
            .exact
            .iter()
            .filter_map(|(from, h)| Some((&**from, h.www.as_deref()?)))
            .collect();
        out.sort_unstable();
        out
    }

    /// The routes of one host entry (not what a lookup of that name would
    /// fall back to), in precedence order.
    pub fn host_routes(&self, host: &HostMatch) -> &[Route] {
        let routes = match host {
            HostMatch::Exact(h) => self.exact.get(h.as_str()),
            HostMatch::Wildcard(s) => self.wildcard.get(s.as_str()),
            HostMatch::Any => Some(&self.any),
        };
        routes.map_or(&[], |r| &r.routes)
    }

    /// The certificates and TLS hosts of this table.
    pub fn tls(&self) -> &TlsTable {
        &self.tls
    }

    /// A copy of this table as generation `generation`, with the backends
    /// `replace` returns a substitute for swapped in and everything else
    /// shared. Endpoint-only changes take this path instead of a full
    /// compile: hosts, paths, policies and certificates cannot change.
    ///
    /// Only the hosts with a replaced backend get new route lists; the
    /// others are shared with this table.
    pub fn with_backends(
        &self,
        generation: u64,
        replace: impl FnMut(&Arc<Backend>) -> Option<Arc<Backend>>,
    ) -> RoutingTable {
        let hosts: Vec<HostMatch> = self
            .exact
            .keys()
            .map(|h| HostMatch::Exact(h.to_string()))
            .chain(
                self.wildcard
                    .keys()
                    .map(|s| HostMatch::Wildcard(s.to_string())),
            )
            .chain(std::iter::once(HostMatch::Any))
            .collect();
        self.with_backends_in(generation, &hosts, true, replace)
    }

    /// [`RoutingTable::with_backends`] when the caller knows which hosts
    /// (and whether the default backend) can use a replaced backend: only
    /// those are looked at, so the cost follows them, not the table.
    pub fn with_backends_in<'h>(
        &self,
        generation: u64,
        hosts: impl IntoIterator<Item = &'h HostMatch>,
        default: bool,
        mut replace: impl FnMut(&Arc<Backend>) -> Option<Arc<Backend>>,
    ) -> RoutingTable {
        let mut exact = self.exact.clone();
        let mut wildcard = self.wildcard.clone();
        let mut any = self.any.clone();
        for host in hosts {
            let routes = match host {
                HostMatch::Exact(h) => exact.get_mut(h.as_str()),
                HostMatch::Wildcard(s) => wildcard.get_mut(s.as_str()),
                HostMatch::Any => Some(&mut any),
            };
            if let Some(routes) = routes
                && let Some(copy) = routes.with_backends(&mut replace)
            {
                *routes = copy;
            }
        }
        let mut default_backend = self.default_backend.clone();
        if default && let Some(route) = &mut default_backend {
            if let Some(backend) = replace(&route.backend) {
                route.backend = backend;
            }
            if let Some(backend) = route.error_backend.as_ref().and_then(&mut replace) {
                route.error_backend = Some(backend);
            }
            if let Some(backend) = route.auth_backend.as_ref().and_then(&mut replace) {
                route.auth_backend = Some(backend);
            }
        }
        RoutingTable {
            generation,
            exact,
            wildcard,
            any,
            default_backend,
            tls: self.tls.clone(),
            has_www: self.has_www,
            has_alias: self.has_alias,
        }
    }

    /// A copy of this table as generation `generation` in which the routes
    /// of `hosts`, and the default backend when `default` is set, are the
    /// ones `from` has for them (none where it has none), and the TLS part
    /// is `tls` (this table's when `None`). The incremental compile
    /// recompiles the hosts a change touched into `from` and splices them
    /// in this way: the routes of every other host are shared, not copied.
    pub fn splice<'h>(
        &self,
        generation: u64,
        from: &RoutingTable,
        hosts: impl IntoIterator<Item = &'h HostMatch>,
        default: bool,
        tls: Option<TlsTable>,
    ) -> RoutingTable {
        let mut exact = self.exact.clone();
        let mut wildcard = self.wildcard.clone();
        let mut any = self.any.clone();
        for host in hosts {
            let (map, from_map, name) = match host {
                HostMatch::Exact(h) => (&mut exact, &from.exact, h),
                HostMatch::Wildcard(s) => (&mut wildcard, &from.wildcard, s),
                HostMatch::Any => {
                    any = from.any.clone();
                    continue;
                }
            };
            match from_map.get_key_value(name.as_str()) {
                Some((key, routes)) => {
                    map.insert(key.clone(), routes.clone());
                }
                None => {
                    map.remove(name.as_str());
                }
            }
        }
        let default_backend = match default {
            true => from.default_backend.clone(),
            false => self.default_backend.clone(),
        };
        RoutingTable {
            generation,
            exact,
            wildcard,
            any,
            default_backend,
            tls: tls.map_or_else(|| self.tls.clone(), Arc::new),
            // Conservative: a stale `true` costs one lookup, never a wrong
            // answer.
            has_www: self.has_www || from.has_www,
            has_alias: self.has_alias || from.has_alias,
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
            .flat_map(Route::backends)
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
                    .map(|r| (HostMatch::Exact(host.to_string()), r)),
            );
        }
        let mut wildcard: Vec<_> = self.wildcard.iter().collect();
        wildcard.sort_by(|a, b| a.0.cmp(b.0));
        for (suffix, routes) in wildcard {
            out.extend(
                routes
                    .routes
                    .iter()
                    .map(|r| (HostMatch::Wildcard(suffix.to_string()), r)),
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
            generation,
            ..Self::default()
        }
    }

    /// Adds a rule. On conflict returns the `source` of the route that keeps
    /// the host and path.
    pub fn add(&mut self, host: &HostMatch, route: Route) -> Result<(), String> {
        let routes = match host {
            HostMatch::Exact(h) => self.exact.entry(h.clone()).or_default(),
            HostMatch::Wildcard(s) => self.wildcard.entry(s.clone()).or_default(),
            HostMatch::Any => &mut self.any,
        };
        insert(routes, route).map_err(|kept| kept.source.clone())
    }

    /// Sets the default backend unless an older Ingress already did; returns
    /// the source of the one kept when this one loses.
    pub fn set_default(&mut self, route: Route) -> Result<(), String> {
        match &self.default_backend {
            Some(kept) if kept.backend.same_target(&route.backend) => Ok(()),
            Some(kept) => Err(kept.source.clone()),
            None => {
                self.default_backend = Some(route);
                Ok(())
            }
        }
    }

    /// Redirects `from` (which must have no routes) to `to`, for
    /// `from-to-www-redirect`. The first Ingress to ask keeps the name.
    pub fn add_www(&mut self, from: &str, to: &str) {
        self.www
            .entry(from.to_string())
            .or_insert_with(|| to.to_string());
    }

    /// Makes `names` more names of the exact host `host`, for
    /// `server-alias`. As in ingress-nginx the first Ingress to give a host
    /// aliases keeps them (`Err` names it when another asks later), and a
    /// name is an alias of the first host that claims it.
    pub fn add_aliases(
        &mut self,
        host: &str,
        names: &[String],
        source: &str,
    ) -> Result<(), String> {
        match self.aliased.get(host) {
            Some(owner) if owner != source => return Err(owner.clone()),
            Some(_) => {}
            None => {
                self.aliased.insert(host.to_string(), source.to_string());
            }
        }
        for name in names.iter().filter(|n| n.as_str() != host) {
            self.aliases
                .entry(HostMatch::from_rule(Some(name)))
                .or_insert_with(|| host.to_string());
        }
        Ok(())
    }

    /// Sets the TLS part, compiled beside the routes.
    pub fn set_tls(&mut self, tls: TlsTable) {
        self.tls = tls;
    }

    pub fn build(mut self) -> RoutingTable {
        // As ingress-nginx: a name some Ingress has rules for is served by
        // them, never redirected.
        let www: Vec<(String, String)> = std::mem::take(&mut self.www)
            .into_iter()
            .filter(|(from, _)| !self.exact.contains_key(from))
            .collect();
        // Likewise for aliases; and an alias of a host without routes
        // would serve nothing.
        let aliases: Vec<(HostMatch, String)> = std::mem::take(&mut self.aliases)
            .into_iter()
            .filter(|(name, target)| {
                let taken = match name {
                    HostMatch::Exact(n) => self.exact.contains_key(n),
                    HostMatch::Wildcard(s) => self.wildcard.contains_key(s),
                    HostMatch::Any => true,
                };
                !taken && self.exact.contains_key(target)
            })
            .collect();
        let hosts = |map: HashMap<String, Vec<Route>>| -> HashMap<Arc<str>, HostRoutes> {
            map.into_iter()
                .map(|(host, routes)| {
                    let routes = HostRoutes {
                        routes: routes.into(),
                        www: None,
                        alias_of: None,
                    };
                    (Arc::from(host), routes)
                })
                .collect()
        };
        let mut exact = hosts(self.exact);
        let mut wildcard = hosts(self.wildcard);
        let has_alias = !aliases.is_empty();
        for (name, target) in aliases {
            let entry = HostRoutes {
                routes: Arc::from([]),
                www: None,
                alias_of: Some(Arc::from(target)),
            };
            match name {
                HostMatch::Exact(n) => exact.insert(Arc::from(n), entry),
                HostMatch::Wildcard(s) => wildcard.insert(Arc::from(s), entry),
                HostMatch::Any => None,
            };
        }
        let has_www = !www.is_empty();
        for (from, to) in www {
            let entry = HostRoutes {
                routes: Arc::from([]),
                www: Some(Arc::from(to)),
                alias_of: None,
            };
            // An alias keeps its name: it is a name of a served host.
            exact.entry(Arc::from(from)).or_insert(entry);
        }
        RoutingTable {
            generation: self.generation,
            exact,
            wildcard,
            any: HostRoutes {
                routes: self.any.into(),
                www: None,
                alias_of: None,
            },
            default_backend: self.default_backend,
            tls: Arc::new(self.tls),
            has_www,
            has_alias,
        }
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
            features: None,
            error_backend: None,
            auth_backend: None,
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
    fn swapped_backends_reach_error_and_auth_backends_too() {
        let with_errors = |id: &str| Route {
            error_backend: Some(Arc::new(Backend::new("errors".into(), vec![], vec![]))),
            auth_backend: Some(Arc::new(Backend::new("auth".into(), vec![], vec![]))),
            ..route(PathMatch::prefix("/"), id, "i")
        };
        let t = table(
            vec![(HostMatch::from_rule(Some("a.com")), with_errors("app"))],
            Some(with_errors("default")),
        );
        assert_eq!(
            t.backends().filter(|b| b.id == "errors").count(),
            2,
            "the error backend is among the table's backends"
        );
        let fresh = Arc::new(Backend::new("errors".into(), vec![], vec![]));
        let fresh_auth = Arc::new(Backend::new("auth".into(), vec![], vec![]));
        let swapped = t.with_backends(2, |b| match b.id.as_str() {
            "errors" => Some(fresh.clone()),
            "auth" => Some(fresh_auth.clone()),
            _ => None,
        });
        for host in ["a.com", "other"] {
            let route = swapped.lookup(host, "/").unwrap();
            let error_backend = route.error_backend.as_ref().unwrap();
            assert!(Arc::ptr_eq(error_backend, &fresh), "{host}");
            let auth_backend = route.auth_backend.as_ref().unwrap();
            assert!(Arc::ptr_eq(auth_backend, &fresh_auth), "{host}");
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
