//! Store access for tests, without HTTP: objects are named by their
//! `apiVersion` and `kind`, and writes emit watch events like any other.
//! These writes are privileged: they may set `.status` directly.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ApiError;
use crate::meta;
use crate::resources::ResourceType;
use crate::store::{Deleted, Preconditions, Store, Via};

// === impl Store ===

impl Store {
    /// Creates an object (a `serde_json::Value` or any k8s-openapi type);
    /// a namespaced object without a namespace goes to `default`.
    pub fn create<T: Serialize>(&self, obj: &T) -> Result<Value, ApiError> {
        let (res, obj, ns) = self.resolve(obj)?;
        self.create_obj(&res, ns.as_deref(), obj, Via::Direct)
    }

    /// Replaces an existing object, status included. A resourceVersion in the
    /// object is a precondition (409 when stale), as with PUT.
    pub fn replace<T: Serialize>(&self, obj: &T) -> Result<Value, ApiError> {
        let (res, obj, ns) = self.resolve(obj)?;
        let name = meta::get_str(&obj, "name").to_string();
        self.write_obj(&res, ns.as_deref(), &name, Via::Direct, false, |_| Ok(obj))
            .map(|(v, _)| v)
    }

    /// Creates the object, or replaces it whatever its resourceVersion:
    /// what loading a manifest does.
    pub fn apply<T: Serialize>(&self, obj: &T) -> Result<Value, ApiError> {
        let (res, mut obj, ns) = self.resolve(obj)?;
        meta::metadata_mut(&mut obj)?.remove("resourceVersion");
        let name = meta::get_str(&obj, "name").to_string();
        self.write_obj(&res, ns.as_deref(), &name, Via::Direct, true, |_| Ok(obj))
            .map(|(v, _)| v)
    }

    /// Deletes an object and returns its last state. With finalizers it is
    /// only marked for deletion, and the marked object is returned.
    pub fn delete(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        let res = self.resource_for(api_version, kind)?;
        match self.delete_obj(&res, namespace, name, &Preconditions::default())? {
            Deleted::Removed(obj) | Deleted::Pending(obj) => Ok(obj),
        }
    }

    /// One object, if it exists.
    pub fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let res = self.resource_for(api_version, kind).ok()?;
        self.get_obj(&res, namespace, name).ok()
    }

    /// Every object of a kind, in one namespace or (None) all, sorted by
    /// namespace and name.
    pub fn list(&self, api_version: &str, kind: &str, namespace: Option<&str>) -> Vec<Value> {
        let Ok(res) = self.resource_for(api_version, kind) else {
            return Vec::new();
        };
        let Ok(snapshot) = self.snapshot(&res, None) else {
            return Vec::new();
        };
        snapshot
            .items
            .into_iter()
            .filter(|(key, _)| namespace.is_none_or(|ns| key.0 == ns))
            .map(|(_, obj)| (*obj).clone())
            .collect()
    }

    /// One object as a typed k8s-openapi value.
    pub fn get_as<K>(&self, namespace: Option<&str>, name: &str) -> Option<K>
    where
        K: kube::Resource<DynamicType = ()> + DeserializeOwned,
    {
        let obj = self.get(&K::api_version(&()), &K::kind(&()), namespace, name)?;
        serde_json::from_value(obj).ok()
    }

    /// Every object of a kind as typed values (see [`Store::list`]).
    pub fn list_as<K>(&self, namespace: Option<&str>) -> Vec<K>
    where
        K: kube::Resource<DynamicType = ()> + DeserializeOwned,
    {
        self.list(&K::api_version(&()), &K::kind(&()), namespace)
            .into_iter()
            .filter_map(|obj| serde_json::from_value(obj).ok())
            .collect()
    }

    /// The latest resourceVersion, as clients see it.
    pub fn resource_version(&self) -> String {
        self.current_rv().to_string()
    }

    fn resource_for(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Result<std::sync::Arc<ResourceType>, ApiError> {
        self.registry().by_kind(api_version, kind).ok_or_else(|| {
            ApiError::bad_request(format!(
                "no kind \"{kind}\" is registered for version \"{api_version}\""
            ))
        })
    }

    /// The type, JSON and namespace of an object handed in by a test.
    fn resolve<T: Serialize>(
        &self,
        obj: &T,
    ) -> Result<(std::sync::Arc<ResourceType>, Value, Option<String>), ApiError> {
        let obj = serde_json::to_value(obj)
            .map_err(|e| ApiError::bad_request(format!("object does not serialize: {e}")))?;
        let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        let res = self.resource_for(api_version, kind)?;
        let ns = match meta::get_str(&obj, "namespace") {
            "" if res.namespaced => Some("default".to_string()),
            "" => None,
            ns => Some(ns.to_string()),
        };
        Ok((res, obj, ns))
    }
}
