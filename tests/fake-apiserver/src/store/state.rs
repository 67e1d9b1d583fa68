//! What one write does, under the store's lock: the checks (names,
//! namespaces, preconditions), the server-owned metadata, the status
//! subresource split, generation, finalizers, and the recorded change.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::Value;

use super::{Deleted, Preconditions, Via, obj_key, parse_own_rv};
use crate::error::ApiError;
use crate::history::{Change, ChangeKind, EventLog, ObjKey};
use crate::meta;
use crate::resources::ResourceType;

/// The objects, the resourceVersion counter and the change log, behind the
/// store's one lock.
#[derive(Debug)]
pub(super) struct State {
    pub(super) rv: u64,
    pub(super) objects: HashMap<String, BTreeMap<ObjKey, Arc<Value>>>,
    pub(super) log: EventLog,
}

// === impl State ===

impl State {
    pub(super) fn lookup(&self, res: &ResourceType, key: &ObjKey) -> Option<Arc<Value>> {
        self.objects.get(&res.group_resource())?.get(key).cloned()
    }

    pub(super) fn create(
        &mut self,
        res: &ResourceType,
        ns: Option<&str>,
        mut obj: Value,
        via: Via,
    ) -> Result<Value, ApiError> {
        meta::check_type(&mut obj, res)?;
        meta::check_namespace(&mut obj, res, ns)?;
        let name = meta::assign_name(&mut obj, res)?;
        if !meta::get_str(&obj, "resourceVersion").is_empty() {
            if via == Via::Direct {
                meta::metadata_mut(&mut obj)?.remove("resourceVersion");
            } else {
                // The real server's storage refuses this with a plain error,
                // which reaches the client as a 500.
                return Err(ApiError::internal(
                    "resourceVersion should not be set on objects to be created",
                ));
            }
        }
        let key = obj_key(res, ns, &name);
        if self.lookup(res, &key).is_some() {
            return Err(ApiError::already_exists(res, &name));
        }
        meta::stamp_create(&mut obj)?;
        if let Some(map) = obj.as_object_mut() {
            // The create strategies of kinds with a status subresource reset
            // whatever status the client sent.
            if res.status_subresource && via != Via::Direct {
                map.remove("status");
            }
            if let Some(initial) = &res.initial_status
                && !map.contains_key("status")
            {
                map.insert("status".into(), initial.clone());
            }
        }
        Ok(self.put(res, key, obj, ChangeKind::Added))
    }

    pub(super) fn update(
        &mut self,
        res: &ResourceType,
        key: &ObjKey,
        old: &Arc<Value>,
        mut new: Value,
        via: Via,
    ) -> Result<Value, ApiError> {
        let name = key.1.as_str();
        meta::check_type(&mut new, res)?;
        let given_name = meta::get_str(&new, "name");
        if given_name != name {
            return Err(name_mismatch(given_name, name));
        }
        meta::check_namespace(&mut new, res, ns_of(res, key))?;
        let old_rv = parse_own_rv(old);
        let given_rv = meta::get_str(&new, "resourceVersion");
        if !given_rv.is_empty() && meta::parse_rv(given_rv)? != old_rv {
            return Err(ApiError::stale(res, name));
        }
        let given_uid = meta::get_str(&new, "uid");
        let old_uid = meta::get_str(old, "uid");
        if !given_uid.is_empty() && given_uid != old_uid {
            return Err(ApiError::conflict(
                res,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {given_uid}, UID in object meta: {old_uid}"
                ),
            ));
        }
        meta::keep_server_owned(&mut new, old)?;
        match via {
            Via::Api if res.status_subresource => copy_status(&mut new, old),
            Via::Status => {
                let mut only_status = (**old).clone();
                copy_status(&mut only_status, &new);
                new = only_status;
            }
            _ => {}
        }
        if meta::spec_changed(&new, old) {
            meta::set_generation(&mut new, meta::generation(old) + 1)?;
        }
        meta::set_resource_version(&mut new, old_rv);
        // A write that changes nothing is not stored: no new
        // resourceVersion and no watch event, like the real server.
        if new == **old {
            return Ok(new);
        }
        if meta::is_deleting(&new) && !meta::has_finalizers(&new) {
            return Ok(self.remove(res, key.clone(), new));
        }
        Ok(self.put(res, key.clone(), new, ChangeKind::Modified))
    }

    pub(super) fn delete(
        &mut self,
        res: &ResourceType,
        key: &ObjKey,
        pre: &Preconditions,
        types: &[Arc<ResourceType>],
    ) -> Result<Deleted, ApiError> {
        let name = key.1.as_str();
        let Some(old) = self.lookup(res, key) else {
            return Err(ApiError::not_found(res, name));
        };
        if let Some(uid) = &pre.uid
            && uid != meta::get_str(&old, "uid")
        {
            let why = format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                meta::get_str(&old, "uid")
            );
            return Err(ApiError::conflict(res, name, &why));
        }
        if let Some(rv) = &pre.resource_version
            && rv != meta::get_str(&old, "resourceVersion")
        {
            let why = format!(
                "the ResourceVersion in the precondition ({rv}) does not match the ResourceVersion in record ({}). The object might have been modified",
                meta::get_str(&old, "resourceVersion")
            );
            return Err(ApiError::conflict(res, name, &why));
        }
        if meta::has_finalizers(&old) {
            if meta::is_deleting(&old) {
                return Ok(Deleted::Pending((*old).clone()));
            }
            let mut new = (*old).clone();
            let generation = meta::generation(&new) + 1;
            let m = meta::metadata_mut(&mut new)?;
            m.insert("deletionTimestamp".into(), Value::String(meta::now()));
            m.insert("deletionGracePeriodSeconds".into(), Value::from(0));
            m.insert("generation".into(), Value::from(generation));
            return Ok(Deleted::Pending(self.put(
                res,
                key.clone(),
                new,
                ChangeKind::Modified,
            )));
        }
        if res.group.is_empty() && res.plural == "namespaces" {
            self.empty_namespace(name, types);
        }
        Ok(Deleted::Removed(self.remove(
            res,
            key.clone(),
            (*old).clone(),
        )))
    }

    /// Deletes what a namespace holds. The real namespace controller does
    /// this asynchronously while the namespace is Terminating; here it is
    /// immediate (objects with finalizers are only marked).
    fn empty_namespace(&mut self, ns: &str, types: &[Arc<ResourceType>]) {
        for t in types.iter().filter(|t| t.namespaced) {
            let keys: Vec<ObjKey> = self
                .objects
                .get(&t.group_resource())
                .map(|m| m.keys().filter(|k| k.0 == ns).cloned().collect())
                .unwrap_or_default();
            for key in keys {
                // Errors cannot happen without preconditions; nothing to report.
                let _ = self.delete(t, &key, &Preconditions::default(), types);
            }
        }
    }

    fn put(&mut self, res: &ResourceType, key: ObjKey, mut obj: Value, kind: ChangeKind) -> Value {
        self.rv += 1;
        let rv = self.rv;
        meta::set_resource_version(&mut obj, rv);
        let obj = Arc::new(obj);
        let resource = res.group_resource();
        let prev = self
            .objects
            .entry(resource.clone())
            .or_default()
            .insert(key, obj.clone());
        self.log.record(Change {
            rv,
            resource,
            kind,
            object: obj.clone(),
            prev,
        });
        (*obj).clone()
    }

    fn remove(&mut self, res: &ResourceType, key: ObjKey, mut last: Value) -> Value {
        self.rv += 1;
        let rv = self.rv;
        meta::set_resource_version(&mut last, rv);
        let resource = res.group_resource();
        let prev = self.objects.get_mut(&resource).and_then(|m| m.remove(&key));
        let object = Arc::new(last.clone());
        self.log.record(Change {
            rv,
            resource,
            kind: ChangeKind::Deleted,
            object,
            prev,
        });
        last
    }
}
fn ns_of<'a>(res: &ResourceType, key: &'a ObjKey) -> Option<&'a str> {
    res.namespaced.then_some(key.0.as_str())
}

pub(super) fn name_mismatch(given: &str, url: &str) -> ApiError {
    ApiError::bad_request(format!(
        "the name of the object ({given}) does not match the name on the URL ({url})"
    ))
}

/// Sets `to.status` to `from.status` (removing it when `from` has none).
fn copy_status(to: &mut Value, from: &Value) {
    if let Some(map) = to.as_object_mut() {
        match from.get("status") {
            Some(status) => map.insert("status".into(), status.clone()),
            None => map.remove("status"),
        };
    }
}
