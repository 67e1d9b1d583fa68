//! The objects the compile step reads, keyed by namespace and name.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::Object;
use crate::crd::BalancerPolicy;

/// `namespace/name` of an object (`name` alone for cluster-scoped kinds,
/// whose namespace is empty).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

/// Everything the compile step needs, as plain maps. Objects are shared
/// (`Arc`) so building a snapshot from a cache is cheap. `Debug` names
/// Secrets without printing their data.
#[derive(Clone, Default)]
pub struct Snapshot {
    pub ingresses: BTreeMap<ObjectKey, Arc<Ingress>>,
    pub ingress_classes: BTreeMap<String, Arc<IngressClass>>,
    pub services: BTreeMap<ObjectKey, Arc<Service>>,
    pub endpoint_slices: BTreeMap<ObjectKey, Arc<EndpointSlice>>,
    /// Secrets, read for the certificates Ingresses name in `spec.tls` and
    /// the users of `auth-secret`.
    pub secrets: BTreeMap<ObjectKey, Arc<Secret>>,
    /// ConfigMaps, read for the headers annotations name.
    pub config_maps: BTreeMap<ObjectKey, Arc<ConfigMap>>,
    pub balancer_policies: BTreeMap<ObjectKey, Arc<BalancerPolicy>>,
}

// === impl ObjectKey ===

impl ObjectKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// Key of a namespaced object; a missing namespace means `default`, as
    /// `kubectl apply` does.
    pub fn of(meta: &ObjectMeta) -> Self {
        Self {
            namespace: meta
                .namespace
                .clone()
                .filter(|ns| !ns.is_empty())
                .unwrap_or_else(|| "default".to_string()),
            name: meta.name.clone().unwrap_or_default(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

// === impl Snapshot ===

impl Snapshot {
    /// Adds or replaces one object. Kinds the compile step does not read are
    /// dropped here.
    pub fn insert(&mut self, object: &Object) {
        self.replace(object);
    }

    /// [`Snapshot::insert`], saying whether an object of the same kind and
    /// key was there.
    pub fn replace(&mut self, object: &Object) -> bool {
        match object {
            Object::Ingress(i) => (self.ingresses)
                .insert(ObjectKey::of(&i.metadata), i.clone())
                .is_some(),
            Object::IngressClass(c) => {
                let name = c.metadata.name.clone().unwrap_or_default();
                self.ingress_classes.insert(name, c.clone()).is_some()
            }
            Object::Service(s) => (self.services)
                .insert(ObjectKey::of(&s.metadata), s.clone())
                .is_some(),
            Object::EndpointSlice(e) => (self.endpoint_slices)
                .insert(ObjectKey::of(&e.metadata), e.clone())
                .is_some(),
            Object::Secret(s) => (self.secrets)
                .insert(ObjectKey::of(&s.metadata), s.clone())
                .is_some(),
            Object::BalancerPolicy(p) => (self.balancer_policies)
                .insert(ObjectKey::of(&p.metadata), p.clone())
                .is_some(),
            Object::ConfigMap(c) => (self.config_maps)
                .insert(ObjectKey::of(&c.metadata), c.clone())
                .is_some(),
        }
    }

    /// Whether an object of the same kind and key as `object` is here.
    pub fn contains(&self, object: &Object) -> bool {
        let key = object.key();
        match object {
            Object::Ingress(_) => self.ingresses.contains_key(&key),
            Object::IngressClass(_) => self.ingress_classes.contains_key(&key.name),
            Object::Service(_) => self.services.contains_key(&key),
            Object::EndpointSlice(_) => self.endpoint_slices.contains_key(&key),
            Object::Secret(_) => self.secrets.contains_key(&key),
            Object::BalancerPolicy(_) => self.balancer_policies.contains_key(&key),
            Object::ConfigMap(_) => self.config_maps.contains_key(&key),
        }
    }

    /// Removes the object of the same kind and key as `object`.
    pub fn remove(&mut self, object: &Object) {
        let key = object.key();
        match object {
            Object::Ingress(_) => drop(self.ingresses.remove(&key)),
            Object::IngressClass(_) => drop(self.ingress_classes.remove(&key.name)),
            Object::Service(_) => drop(self.services.remove(&key)),
            Object::EndpointSlice(_) => drop(self.endpoint_slices.remove(&key)),
            Object::Secret(_) => drop(self.secrets.remove(&key)),
            Object::BalancerPolicy(_) => drop(self.balancer_policies.remove(&key)),
            Object::ConfigMap(_) => drop(self.config_maps.remove(&key)),
        }
    }

    pub fn len(&self) -> usize {
        self.ingresses.len()
            + self.ingress_classes.len()
            + self.services.len()
            + self.endpoint_slices.len()
            + self.secrets.len()
            + self.balancer_policies.len()
            + self.config_maps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("ingresses", &self.ingresses)
            .field("ingress_classes", &self.ingress_classes)
            .field("services", &self.services)
            .field("endpoint_slices", &self.endpoint_slices)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field("balancer_policies", &self.balancer_policies)
            .field("config_maps", &self.config_maps)
            .finish()
    }
}

impl<'a> FromIterator<&'a Object> for Snapshot {
    fn from_iter<T: IntoIterator<Item = &'a Object>>(iter: T) -> Self {
        let mut snapshot = Snapshot::default();
        for object in iter {
            snapshot.insert(object);
        }
        snapshot
    }
}
