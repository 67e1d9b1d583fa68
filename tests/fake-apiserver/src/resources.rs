//! The resource types the server serves, registered by group, version,
//! plural, kind and scope, so a new kind (a CRD) is one more entry.

use std::sync::Arc;

use parking_lot::RwLock;
use serde_json::{Value, json};

/// One kind the server stores and serves, e.g. `networking.k8s.io/v1 ingresses`.
#[derive(Debug, Clone)]
pub struct ResourceType {
    /// API group, `""` for the core group.
    pub group: String,
    /// The one version served (no conversion between versions).
    pub version: String,
    /// Lowercase plural used in paths: `ingresses`.
    pub plural: String,
    /// Lowercase singular: `ingress`.
    pub singular: String,
    /// `Ingress`.
    pub kind: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Whether `/status` is a subresource: then the main resource ignores
    /// `.status` and `/status` writes only `.status`.
    pub status_subresource: bool,
    /// What `.status` is set to on create (the real server's strategies
    /// reset it, e.g. a Namespace starts `Active`).
    pub initial_status: Option<Value>,
    /// `kubectl get ing` style names listed in discovery.
    pub short_names: Vec<String>,
    /// Field selector keys beyond `metadata.name` and `metadata.namespace`,
    /// as dotted paths into the object (`type` for Secrets).
    pub selectable_fields: Vec<String>,
    /// Built-in kinds omit `apiVersion`/`kind` on list items, as the real
    /// server does; custom resources keep them.
    pub builtin: bool,
    /// Whether a delete without finalizers answers with the deleted object
    /// (the real server's `ReturnDeletedObject`) rather than a `Status`.
    pub returns_deleted_object: bool,
}

/// The set of served types; new ones can be added while the server runs.
#[derive(Debug, Default)]
pub struct Registry {
    types: RwLock<Vec<Arc<ResourceType>>>,
}

// === impl ResourceType ===

impl ResourceType {
    /// A custom resource type (list items keep their `apiVersion`/`kind`).
    pub fn new(group: &str, version: &str, plural: &str, kind: &str, namespaced: bool) -> Self {
        Self {
            group: group.to_string(),
            version: version.to_string(),
            plural: plural.to_string(),
            singular: kind.to_lowercase(),
            kind: kind.to_string(),
            namespaced,
            status_subresource: false,
            initial_status: None,
            short_names: Vec::new(),
            selectable_fields: Vec::new(),
            builtin: false,
            returns_deleted_object: false,
        }
    }

    /// Adds a `/status` subresource.
    pub fn with_status(mut self) -> Self {
        self.status_subresource = true;
        self
    }

    /// Sets the `.status` every new object starts with.
    pub fn with_initial_status(mut self, status: Value) -> Self {
        self.initial_status = Some(status);
        self
    }

    /// Adds short names for discovery.
    pub fn with_short_names(mut self, names: &[&str]) -> Self {
        self.short_names = names.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Adds field selector keys (dotted paths into the object).
    pub fn with_fields(mut self, fields: &[&str]) -> Self {
        self.selectable_fields = fields.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Makes a delete answer with the deleted object instead of a `Status`.
    pub fn returning_deleted_object(mut self) -> Self {
        self.returns_deleted_object = true;
        self
    }

    fn builtin(mut self) -> Self {
        self.builtin = true;
        self
    }

    /// `v1` or `networking.k8s.io/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `ingresses.networking.k8s.io`, or `services` for the core group: the
    /// name error messages use.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The path prefix of this type's group version: `/api/v1` or `/apis/g/v`.
    pub fn group_version_path(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    /// Whether `field` may be used in a field selector.
    pub fn selectable(&self, field: &str) -> bool {
        field == "metadata.name"
            || field == "metadata.namespace"
            || self.selectable_fields.iter().any(|f| f == field)
    }
}

// === impl Registry ===

impl Registry {
    /// The kinds RustStrom reads and writes.
    pub fn with_defaults() -> Self {
        let registry = Self::default();
        for res in default_types() {
            registry.register(res);
        }
        registry
    }

    /// Adds a type, replacing one with the same group, version and plural.
    pub fn register(&self, res: ResourceType) {
        let mut types = self.types.write();
        types.retain(|t| {
            !(t.group == res.group && t.version == res.version && t.plural == res.plural)
        });
        types.push(Arc::new(res));
    }

    /// Every type, in registration order.
    pub fn all(&self) -> Vec<Arc<ResourceType>> {
        self.types.read().clone()
    }

    /// The type served at `group/version/plural`.
    pub fn by_plural(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.types
            .read()
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
            .cloned()
    }

    /// The type an object's `apiVersion` and `kind` name.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<Arc<ResourceType>> {
        self.types
            .read()
            .iter()
            .find(|t| t.api_version() == api_version && t.kind == kind)
            .cloned()
    }
}

fn default_types() -> Vec<ResourceType> {
    let core_event_fields = [
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ];
    let events_fields = [
        "regarding.kind",
        "regarding.namespace",
        "regarding.name",
        "regarding.uid",
        "reason",
        "reportingController",
        "type",
    ];
    vec![
        ResourceType::new("", "v1", "namespaces", "Namespace", false)
            .with_status()
            .with_initial_status(json!({"phase": "Active"}))
            .with_short_names(&["ns"])
            .with_fields(&["status.phase"])
            .builtin(),
        ResourceType::new("", "v1", "services", "Service", true)
            .with_status()
            .with_initial_status(json!({"loadBalancer": {}}))
            .with_short_names(&["svc"])
            .returning_deleted_object()
            .builtin(),
        ResourceType::new("", "v1", "secrets", "Secret", true)
            .with_fields(&["type"])
            .builtin(),
        ResourceType::new("", "v1", "configmaps", "ConfigMap", true)
            .with_short_names(&["cm"])
            .builtin(),
        ResourceType::new("", "v1", "events", "Event", true)
            .with_short_names(&["ev"])
            .with_fields(&core_event_fields)
            .builtin(),
        ResourceType::new(
            "discovery.k8s.io",
            "v1",
            "endpointslices",
            "EndpointSlice",
            true,
        )
        .builtin(),
        ResourceType::new("networking.k8s.io", "v1", "ingresses", "Ingress", true)
            .with_status()
            .with_initial_status(json!({"loadBalancer": {}}))
            .with_short_names(&["ing"])
            .builtin(),
        ResourceType::new(
            "networking.k8s.io",
            "v1",
            "ingressclasses",
            "IngressClass",
            false,
        )
        .builtin(),
        ResourceType::new("coordination.k8s.io", "v1", "leases", "Lease", true).builtin(),
        ResourceType::new("events.k8s.io", "v1", "events", "Event", true)
            .with_short_names(&["ev"])
            .with_fields(&events_fields)
            .builtin(),
    ]
}
