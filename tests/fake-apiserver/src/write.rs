//! The write verbs: create (POST), update (PUT), patch (PATCH), delete and
//! deletecollection (DELETE), on an object or its `/status`.

use http::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, success_status};
use crate::meta;
use crate::patch::{self, PatchKind};
use crate::query::Query;
use crate::resources::ResourceType;
use crate::respond::{self, Body};
use crate::routes::Target;
use crate::selector::Filter;
use crate::store::{Deleted, Preconditions, Store, Via};

/// The parts of `DeleteOptions` the server honours.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteOptions {
    #[serde(default)]
    preconditions: Option<PreconditionsBody>,
    #[serde(default)]
    dry_run: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PreconditionsBody {
    uid: Option<String>,
    resource_version: Option<String>,
}

/// POST to a collection: 201 with the stored object.
pub fn create(
    store: &Store,
    t: &Target,
    body: &[u8],
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    refuse_dry_run(q)?;
    let obj = respond::parse_json(body)?;
    let created = store.create_obj(&t.res, t.namespace.as_deref(), obj, Via::Api)?;
    Ok(respond::json(201, &created))
}

/// PUT on an object or its status.
pub fn update(
    store: &Store,
    t: &Target,
    name: &str,
    body: &[u8],
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    refuse_dry_run(q)?;
    let obj = respond::parse_json(body)?;
    let (updated, _) =
        store.write_obj(&t.res, t.namespace.as_deref(), name, via(t), false, |_| {
            Ok(obj)
        })?;
    Ok(respond::json(200, &updated))
}

/// PATCH on an object or its status, in any of the four formats.
pub fn patch(
    store: &Store,
    t: &Target,
    name: &str,
    content_type: &str,
    body: &[u8],
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    refuse_dry_run(q)?;
    let kind = PatchKind::from_content_type(content_type)?;
    let ns = t.namespace.as_deref();
    if kind != PatchKind::Apply {
        if q.flag("force")? {
            return Err(ApiError::invalid_options(
                "force: Forbidden: may not be specified for non-apply patch",
            ));
        }
        let (patched, _) = store.write_obj(&t.res, ns, name, via(t), false, |current| {
            let current = current.ok_or_else(|| ApiError::not_found(&t.res, name))?;
            patch::patch(kind, current, body)
        })?;
        return Ok(respond::json(200, &patched));
    }
    if q.get("fieldManager").is_none() {
        return Err(ApiError::invalid_options(
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        ));
    }
    let mut applied = patch::parse_apply(body)?;
    meta::check_type(&mut applied, &t.res)?;
    let given = meta::get_str(&applied, "name");
    if given != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({given}) does not match the name on the URL ({name})"
        )));
    }
    let (obj, created) = store.write_obj(&t.res, ns, name, via(t), true, |current| {
        Ok(patch::apply(current, &applied))
    })?;
    Ok(respond::json(if created { 201 } else { 200 }, &obj))
}

/// DELETE on an object: the object while finalizers hold it, else a
/// success `Status` (or the object, for kinds that return it).
pub fn delete(
    store: &Store,
    t: &Target,
    name: &str,
    body: &[u8],
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    refuse_dry_run(q)?;
    let pre = preconditions(body)?;
    match store.delete_obj(&t.res, t.namespace.as_deref(), name, &pre)? {
        Deleted::Pending(obj) => Ok(respond::json(200, &obj)),
        Deleted::Removed(obj) if t.res.returns_deleted_object => Ok(respond::json(200, &obj)),
        Deleted::Removed(obj) => {
            let uid = meta::get_str(&obj, "uid");
            Ok(respond::json(200, &success_status(&t.res, name, uid)))
        }
    }
}

/// DELETE on a collection: deletes what the selectors match and answers
/// with the list of deleted objects.
pub fn delete_collection(
    store: &Store,
    t: &Target,
    filter: &Filter,
    body: &[u8],
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    refuse_dry_run(q)?;
    let pre = preconditions(body)?;
    let snapshot = store.snapshot(&t.res, None)?;
    let mut items = Vec::new();
    for (key, obj) in &snapshot.items {
        if !filter.matches(obj) {
            continue;
        }
        let ns = t.res.namespaced.then_some(key.0.as_str());
        match store.delete_obj(&t.res, ns, &key.1, &pre) {
            Ok(Deleted::Removed(obj) | Deleted::Pending(obj)) => items.push(obj),
            // Deleted meanwhile by someone else: nothing left to do.
            Err(err) if err.is_not_found() => {}
            Err(err) => return Err(err),
        }
    }
    Ok(respond::json(
        200,
        &list_of(&t.res, store.current_rv(), items),
    ))
}

fn list_of(res: &ResourceType, rv: u64, items: Vec<Value>) -> Value {
    json!({
        "kind": format!("{}List", res.kind),
        "apiVersion": res.api_version(),
        "metadata": {"resourceVersion": rv.to_string()},
        "items": items,
    })
}

fn via(t: &Target) -> Via {
    if t.status { Via::Status } else { Via::Api }
}

fn preconditions(body: &[u8]) -> Result<Preconditions, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Preconditions::default());
    }
    let options: DeleteOptions = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?;
    if !options.dry_run.is_empty() {
        return Err(dry_run_unsupported());
    }
    let pre = options.preconditions.unwrap_or_default();
    Ok(Preconditions {
        uid: pre.uid,
        resource_version: pre.resource_version,
    })
}

/// Dry runs would need every write path to skip its commit; refusing them
/// is better than silently writing.
fn refuse_dry_run(q: &Query) -> Result<(), ApiError> {
    if q.has("dryRun") {
        Err(dry_run_unsupported())
    } else {
        Ok(())
    }
}

fn dry_run_unsupported() -> ApiError {
    ApiError::bad_request("dryRun is not supported by the fake API server")
}
