//! Discovery documents: `/version`, `/api`, `/apis` and the resource lists of
//! each group version, built from the registry so new types show up.
//!
//! Both formats are served: the legacy documents, and aggregated discovery
//! (`apidiscovery.k8s.io/v2`, one `APIGroupDiscoveryList` for `/api` and one
//! for `/apis`) to clients whose Accept header asks for it, as kubectl and
//! kube's `Discovery::run_aggregated` do.

use serde_json::{Value, json};

use crate::resources::{Registry, ResourceType};

/// The Kubernetes version reported: the newest k8s-openapi's `latest` knows.
const MINOR: &str = "37";

/// The Content-Type of an aggregated discovery document.
pub const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether an Accept header asks for aggregated discovery v2.
pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|part| {
        let params: Vec<&str> = part.split(';').map(str::trim).collect();
        params.contains(&"g=apidiscovery.k8s.io")
            && params.contains(&"v=v2")
            && params.contains(&"as=APIGroupDiscoveryList")
    })
}

/// `/api` (`core`) or `/apis` as an aggregated `APIGroupDiscoveryList`.
pub fn aggregated(registry: &Registry, core: bool) -> Value {
    let types = registry.all();
    let mut groups: Vec<String> = Vec::new();
    for t in types.iter().filter(|t| t.group.is_empty() == core) {
        if !groups.contains(&t.group) {
            groups.push(t.group.clone());
        }
    }
    let items: Vec<Value> = groups
        .iter()
        .map(|group| {
            let mut versions: Vec<String> = Vec::new();
            for t in types.iter().filter(|t| &t.group == group) {
                if !versions.contains(&t.version) {
                    versions.push(t.version.clone());
                }
            }
            let versions: Vec<Value> = versions
                .iter()
                .map(|version| {
                    let resources: Vec<Value> = types
                        .iter()
                        .filter(|t| &t.group == group && &t.version == version)
                        .map(|t| aggregated_resource(t))
                        .collect();
                    json!({"version": version, "resources": resources, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": group}, "versions": versions})
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}

fn aggregated_resource(t: &ResourceType) -> Value {
    let kind = json!({"group": t.group, "version": t.version, "kind": t.kind});
    let mut entry = json!({
        "resource": t.plural,
        "responseKind": kind,
        "scope": if t.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": t.singular,
        "verbs": ALL_VERBS,
        "shortNames": t.short_names,
    });
    if t.status_subresource {
        entry["subresources"] = json!([{
            "subresource": "status",
            "responseKind": kind,
            "verbs": ["get", "patch", "update"],
        }]);
    }
    entry
}

/// Every verb a served type supports.
const ALL_VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// `/version`.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": MINOR,
        "gitVersion": format!("v1.{MINOR}.0-fake"),
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.25.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `/api`: the core group's versions.
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    })
}

/// `/apis`: every named group and its versions.
pub fn groups(registry: &Registry) -> Value {
    let mut names: Vec<String> = Vec::new();
    for t in registry.all() {
        if !t.group.is_empty() && !names.contains(&t.group) {
            names.push(t.group.clone());
        }
    }
    let groups: Vec<Value> = names
        .iter()
        .filter_map(|name| group_body(registry, name))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/{group}`, None for an unknown group.
pub fn group(registry: &Registry, name: &str) -> Option<Value> {
    let mut body = group_body(registry, name)?;
    body["kind"] = json!("APIGroup");
    body["apiVersion"] = json!("v1");
    Some(body)
}

/// `/api/v1` or `/apis/{group}/{version}`, None when nothing is served there.
pub fn resources(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let types: Vec<_> = registry
        .all()
        .into_iter()
        .filter(|t| t.group == group && t.version == version)
        .collect();
    if types.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for t in &types {
        resources.push(resource_entry(t));
        if t.status_subresource {
            resources.push(json!({
                "name": format!("{}/status", t.plural),
                "singularName": "",
                "namespaced": t.namespaced,
                "kind": t.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": types.first().map(|t| t.api_version()).unwrap_or_default(),
        "resources": resources,
    }))
}

fn resource_entry(t: &ResourceType) -> Value {
    let mut entry = json!({
        "name": t.plural,
        "singularName": t.singular,
        "namespaced": t.namespaced,
        "kind": t.kind,
        "verbs": ALL_VERBS,
    });
    if !t.short_names.is_empty() {
        entry["shortNames"] = json!(t.short_names);
    }
    entry
}

fn group_body(registry: &Registry, name: &str) -> Option<Value> {
    let mut versions: Vec<Value> = Vec::new();
    for t in registry.all().iter().filter(|t| t.group == name) {
        let gv = json!({"groupVersion": t.api_version(), "version": t.version});
        if !versions.contains(&gv) {
            versions.push(gv);
        }
    }
    let preferred = versions.first()?.clone();
    Some(json!({"name": name, "versions": versions, "preferredVersion": preferred}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_groups_and_subresources() {
        let registry = Registry::with_defaults();
        let groups = groups(&registry);
        let names: Vec<&str> = groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"networking.k8s.io") && names.contains(&"coordination.k8s.io"));

        let net = resources(&registry, "networking.k8s.io", "v1").unwrap();
        let names: Vec<&str> = net["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["ingresses", "ingresses/status", "ingressclasses"]);
        assert!(resources(&registry, "nope.io", "v1").is_none());
        assert_eq!(
            group(&registry, "discovery.k8s.io").unwrap()["preferredVersion"]["version"],
            "v1"
        );
    }

    #[test]
    fn aggregated_discovery_is_chosen_by_accept_header() {
        let kube_accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,\
                           application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,\
                           application/json";
        assert!(wants_aggregated(kube_accept));
        assert!(!wants_aggregated("application/json"));
        assert!(!wants_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
        ));

        let registry = Registry::with_defaults();
        let core = aggregated(&registry, true);
        assert_eq!(core["items"].as_array().unwrap().len(), 1);
        let apis = aggregated(&registry, false);
        let net = apis["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["metadata"]["name"] == "networking.k8s.io")
            .unwrap();
        let ingresses = &net["versions"][0]["resources"][0];
        assert_eq!(ingresses["resource"], "ingresses");
        assert_eq!(ingresses["subresources"][0]["subresource"], "status");
    }
}
