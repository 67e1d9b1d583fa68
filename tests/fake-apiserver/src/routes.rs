//! Request paths and verbs: which document or resource a request names, and
//! which handler answers it.
//!
//! Resource paths follow the real layout:
//! `/api/v1/namespaces/{ns}/{plural}[/{name}[/status]]`, `/api/v1/{plural}`
//! (every namespace, list and watch only), the same under
//! `/apis/{group}/{version}`, and `/{plural}/{name}[/status]` for
//! cluster-scoped kinds.

use std::sync::Arc;

use http::{Method, Request, Response, header};
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;

use crate::discovery;
use crate::error::ApiError;
use crate::list;
use crate::query::Query;
use crate::resources::{Registry, ResourceType};
use crate::respond::{self, Body};
use crate::selector::{FieldSelector, Filter, LabelSelector};
use crate::server::Shared;
use crate::watch;
use crate::write;

/// The resource a request names.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its type.
    pub res: Arc<ResourceType>,
    /// The namespace in the path (None: cluster-scoped or every namespace).
    pub namespace: Option<String>,
    /// The object name (None: the collection).
    pub name: Option<String>,
    /// Whether the path ends in `/status`.
    pub status: bool,
}

/// What a path names.
#[derive(Debug)]
enum Route {
    Version,
    Health,
    CoreVersions,
    Groups,
    Group(String),
    Resources(String, String),
    Resource(Target),
}

/// Answers one request; every failure becomes a `Status` response.
pub(crate) async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Body> {
    match dispatch(shared, req).await {
        Ok(resp) => resp,
        Err(err) => respond::error(&err),
    }
}

async fn dispatch(shared: &Shared, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let registry = shared.store.registry();
    let route = route(registry, req.uri().path())?;
    let is_get = req.method() == Method::GET;
    let aggregated = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(discovery::wants_aggregated);
    match route {
        Route::Resource(target) => resource(shared, target, req).await,
        _ if !is_get => Err(ApiError::method_not_allowed()),
        Route::Version => Ok(respond::json(200, &discovery::version())),
        Route::Health => Ok(respond::text(200, "ok")),
        Route::CoreVersions | Route::Groups if aggregated => {
            let core = matches!(route, Route::CoreVersions);
            let doc = discovery::aggregated(registry, core);
            Ok(respond::json_as(&doc, discovery::AGGREGATED_CONTENT_TYPE))
        }
        Route::CoreVersions => Ok(respond::json(
            200,
            &discovery::core_versions(&shared.addr.to_string()),
        )),
        Route::Groups => Ok(respond::json(200, &discovery::groups(registry))),
        Route::Group(g) => discovery::group(registry, &g)
            .map(|doc| respond::json(200, &doc))
            .ok_or_else(ApiError::no_such_path),
        Route::Resources(g, v) => discovery::resources(registry, &g, &v)
            .map(|doc| respond::json(200, &doc))
            .ok_or_else(ApiError::no_such_path),
    }
}

async fn resource(
    shared: &Shared,
    t: Target,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    shared.faults.check(&t.res.plural).await?;
    let q = Query::parse(req.uri().query());
    let method = req.method().clone();
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = if method == Method::GET {
        bytes::Bytes::new()
    } else {
        respond::read_body(req.into_body()).await?
    };
    let store = &shared.store;
    let all_namespaces = t.res.namespaced && t.namespace.is_none();

    match (&method, t.name.as_deref()) {
        (&Method::GET, name) if q.flag("watch")? && !t.status => {
            let filter = filter(&t, &q)?;
            let res = t.res.clone();
            watch::watch(store, res, filter, &q, &shared.watch, &shared.shutdown).inspect(|_| {
                tracing::debug!(resource = %t.res.group_resource(), ?name, "watch opened");
            })
        }
        (&Method::GET, None) => {
            let filter = filter(&t, &q)?;
            list::list(store, &t.res, &filter, &q).map(|doc| respond::json(200, &doc))
        }
        (&Method::GET, Some(name)) => store
            .get_obj(&t.res, t.namespace.as_deref(), name)
            .map(|obj| respond::json(200, &obj)),
        (&Method::POST, None) if !all_namespaces => write::create(store, &t, &body, &q),
        (&Method::PUT, Some(name)) => write::update(store, &t, name, &body, &q),
        (&Method::PATCH, Some(name)) => write::patch(store, &t, name, &content_type, &body, &q),
        (&Method::DELETE, Some(name)) if !t.status => write::delete(store, &t, name, &body, &q),
        (&Method::DELETE, None) if !all_namespaces => {
            let filter = filter(&t, &q)?;
            write::delete_collection(store, &t, &filter, &body, &q)
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// The namespace, selectors and (for a path naming an object) name a list
/// or watch keeps.
fn filter(t: &Target, q: &Query) -> Result<Filter, ApiError> {
    let labels = match q.get("labelSelector") {
        Some(text) => LabelSelector::parse(text)?,
        None => LabelSelector::default(),
    };
    let mut fields = match q.get("fieldSelector") {
        Some(text) => FieldSelector::parse(text, &t.res)?,
        None => FieldSelector::default(),
    };
    if let Some(name) = &t.name {
        fields = fields.and(FieldSelector::name(name));
    }
    Ok(Filter {
        namespace: t.namespace.clone(),
        labels,
        fields,
    })
}

fn route(registry: &Registry, path: &str) -> Result<Route, ApiError> {
    let segments: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    match segs.as_slice() {
        ["version"] => Ok(Route::Version),
        ["healthz" | "livez" | "readyz"] => Ok(Route::Health),
        ["api"] => Ok(Route::CoreVersions),
        ["api", "v1"] => Ok(Route::Resources(String::new(), "v1".into())),
        ["api", "v1", rest @ ..] => resource_route(registry, "", "v1", rest),
        ["apis"] => Ok(Route::Groups),
        ["apis", group] => Ok(Route::Group(group.to_string())),
        ["apis", group, version] => Ok(Route::Resources(group.to_string(), version.to_string())),
        ["apis", group, version, rest @ ..] => resource_route(registry, group, version, rest),
        _ => Err(ApiError::no_such_path()),
    }
}

fn resource_route(
    registry: &Registry,
    group: &str,
    version: &str,
    rest: &[&str],
) -> Result<Route, ApiError> {
    if rest.iter().any(|s| s.is_empty()) {
        return Err(ApiError::no_such_path());
    }
    let target = |res: Arc<ResourceType>, namespace: Option<&str>, tail: &[&str]| {
        let (name, status) = match tail {
            [] => (None, false),
            [name] => (Some(name.to_string()), false),
            [name, "status"] if res.status_subresource => (Some(name.to_string()), true),
            _ => return Err(ApiError::no_such_path()),
        };
        Ok(Route::Resource(Target {
            res,
            namespace: namespace.map(str::to_string),
            name,
            status,
        }))
    };
    if let ["namespaces", ns, plural, tail @ ..] = rest
        && let Some(res) = registry.by_plural(group, version, plural)
        && res.namespaced
    {
        return target(res, Some(ns), tail);
    }
    let [plural, tail @ ..] = rest else {
        return Err(ApiError::no_such_path());
    };
    let res = registry
        .by_plural(group, version, plural)
        .ok_or_else(ApiError::no_such_path)?;
    if res.namespaced && !tail.is_empty() {
        // Only list and watch exist across namespaces.
        return Err(ApiError::no_such_path());
    }
    target(res, None, tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(path: &str) -> Option<(String, Option<String>, Option<String>, bool)> {
        match route(&Registry::with_defaults(), path).ok()? {
            Route::Resource(t) => Some((t.res.plural.clone(), t.namespace, t.name, t.status)),
            _ => None,
        }
    }

    #[test]
    fn paths_name_the_right_resource() {
        let s = |v: &str| Some(v.to_string());
        let cases = [
            (
                "/api/v1/namespaces/default/services",
                Some(("services".into(), s("default"), None, false)),
            ),
            (
                "/api/v1/services",
                Some(("services".into(), None, None, false)),
            ),
            (
                "/api/v1/namespaces/default/services/web",
                Some(("services".into(), s("default"), s("web"), false)),
            ),
            (
                "/apis/networking.k8s.io/v1/namespaces/a/ingresses/b/status",
                Some(("ingresses".into(), s("a"), s("b"), true)),
            ),
            (
                "/apis/networking.k8s.io/v1/ingressclasses/c",
                Some(("ingressclasses".into(), None, s("c"), false)),
            ),
            (
                "/api/v1/namespaces/x",
                Some(("namespaces".into(), None, s("x"), false)),
            ),
            (
                "/api/v1/namespaces/x/status",
                Some(("namespaces".into(), None, s("x"), true)),
            ),
            (
                "/api/v1/namespaces",
                Some(("namespaces".into(), None, None, false)),
            ),
            ("/api/v1/namespaces/a/secrets/b/status", None),
            ("/api/v1/services/web", None),
            ("/api/v1/namespaces//services", None),
            ("/apis/nope.io/v1/things", None),
        ];
        for (path, want) in cases {
            assert_eq!(target(path), want, "{path}");
        }
    }
}
