//! Create, get, list, update, patch and delete through `kube::Api`.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::{api_error, mk_ingress, mk_lease, mk_service, mk_slice, within};
use fake_apiserver::FakeApiServer;

#[tokio::test]
async fn typed_objects_round_trip() {
    within(async {
        let server = FakeApiServer::start().await.unwrap();
        let client = server.client().unwrap();
        let pp = PostParams::default();

        let ingresses: Api<Ingress> = Api::namespaced(client.clone(), "default");
        let created = ingresses
            .create(&pp, &mk_ingress("default", "web", "a.example"))
            .await
            .unwrap();
        let meta = &created.metadata;
        assert!(meta.uid.is_some() && meta.creation_timestamp.is_some());
        assert_eq!(meta.generation, Some(1));
        assert_eq!(ingresses.get("web").await.unwrap(), created);
        assert_eq!(
            ingresses.list(&ListParams::default()).await.unwrap().items,
            vec![created.clone()]
        );

        let services: Api<Service> = Api::namespaced(client.clone(), "default");
        services
            .create(&pp, &mk_service("default", "web", &[]))
            .await
            .unwrap();
        let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
        slices
            .create(&pp, &mk_slice("default", "web-abc", &["10.0.0.1"]))
            .await
            .unwrap();
        let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
        leases
            .create(&pp, &mk_lease("kube-system", "leader", "pod-a"))
            .await
            .unwrap();

        // Update: replace what was read.
        let mut slice = slices.get("web-abc").await.unwrap();
        slice.endpoints = Some(vec![]);
        let replaced = slices.replace("web-abc", &pp, &slice).await.unwrap();
        assert_eq!(replaced.endpoints, Some(vec![]));
        assert_ne!(
            replaced.metadata.resource_version,
            slice.metadata.resource_version
        );

        let mut lease = leases.get("leader").await.unwrap();
        lease.spec.as_mut().unwrap().holder_identity = Some("pod-b".into());
        let lease = leases.replace("leader", &pp, &lease).await.unwrap();
        assert_eq!(
            lease.spec.unwrap().holder_identity.as_deref(),
            Some("pod-b")
        );

        // The server's store sees what the client wrote.
        let stored: Ingress = server.store().get_as(Some("default"), "web").unwrap();
        assert_eq!(stored, created);

        // Services answer a delete with the object, Ingresses with a Status.
        let gone = services
            .delete("web", &DeleteParams::default())
            .await
            .unwrap();
        assert!(gone.is_left());
        let gone = ingresses
            .delete("web", &DeleteParams::default())
            .await
            .unwrap();
        assert!(gone.is_right());
        slices
            .delete("web-abc", &DeleteParams::default())
            .await
            .unwrap();
        leases
            .delete("leader", &DeleteParams::default())
            .await
            .unwrap();
        assert_eq!(
            api_error(ingresses.get("web").await),
            (404, "NotFound".into())
        );
        assert!(
            services
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .is_empty()
        );
    })
    .await;
}

#[tokio::test]
async fn errors_carry_kubernetes_codes_and_reasons() {
    within(async {
        let server = FakeApiServer::start().await.unwrap();
        let services: Api<Service> = Api::default_namespaced(server.client().unwrap());
        let pp = PostParams::default();
        services
            .create(&pp, &mk_service("default", "web", &[]))
            .await
            .unwrap();
        assert_eq!(
            api_error(
                services
                    .create(&pp, &mk_service("default", "web", &[]))
                    .await
            ),
            (409, "AlreadyExists".into())
        );
        assert_eq!(
            api_error(services.get("nope").await),
            (404, "NotFound".into())
        );
        assert_eq!(
            api_error(services.delete("nope", &DeleteParams::default()).await),
            (404, "NotFound".into())
        );
        assert_eq!(
            api_error(
                services
                    .create(&pp, &mk_service("default", "Bad_Name", &[]))
                    .await
            ),
            (422, "Invalid".into())
        );
        let other_ns = mk_service("other", "x", &[]);
        assert_eq!(api_error(services.create(&pp, &other_ns).await).0, 400);
    })
    .await;
}

#[tokio::test]
async fn a_stale_replace_is_a_conflict() {
    within(async {
        let server = FakeApiServer::start().await.unwrap();
        let ingresses: Api<Ingress> = Api::default_namespaced(server.client().unwrap());
        let pp = PostParams::default();
        let first = ingresses
            .create(&pp, &mk_ingress("default", "web", "a.example"))
            .await
            .unwrap();

        let mut fresh = first.clone();
        fresh.metadata.labels = Some([("v".to_string(), "2".to_string())].into());
        let second = ingresses.replace("web", &pp, &fresh).await.unwrap();
        assert_eq!(second.metadata.generation, Some(1), "labels are not spec");

        let mut stale = first.clone();
        stale.spec.as_mut().unwrap().ingress_class_name = Some("other".into());
        assert_eq!(
            api_error(ingresses.replace("web", &pp, &stale).await),
            (409, "Conflict".into())
        );

        // Without a resourceVersion the update is unconditional.
        stale.metadata.resource_version = None;
        let third = ingresses.replace("web", &pp, &stale).await.unwrap();
        assert_eq!(third.metadata.generation, Some(2), "spec changed");
    })
    .await;
}

#[tokio::test]
async fn patch_status_changes_only_status() {
    within(async {
        let server = FakeApiServer::start().await.unwrap();
        let ingresses: Api<Ingress> = Api::default_namespaced(server.client().unwrap());
        let created = ingresses
            .create(
                &PostParams::default(),
                &mk_ingress("default", "web", "a.example"),
            )
            .await
            .unwrap();

        let patch = json!({
            "spec": {"ingressClassName": "ignored"},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}},
        });
        let patched = ingresses
            .patch_status("web", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        let ip = patched
            .status
            .as_ref()
            .unwrap()
            .load_balancer
            .as_ref()
            .unwrap()
            .ingress
            .as_ref()
            .unwrap()[0]
            .ip
            .clone();
        assert_eq!(ip.as_deref(), Some("192.0.2.10"));
        assert_eq!(patched.spec, created.spec, "a status write ignores spec");
        assert_eq!(patched.metadata.generation, Some(1));
        let rv = |i: &Ingress| {
            i.metadata
                .resource_version
                .clone()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        };
        assert!(rv(&patched) > rv(&created));

        // And the main resource ignores status.
        let patch = json!({"status": {"loadBalancer": {}}, "metadata": {"labels": {"a": "b"}}});
        let main = ingresses
            .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        assert_eq!(main.status, patched.status);
        assert_eq!(main.metadata.generation, Some(1));

        // A patch that changes nothing stores nothing.
        let again = ingresses
            .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        assert_eq!(
            again.metadata.resource_version,
            main.metadata.resource_version
        );

        // JSON patch on the main resource: spec change bumps generation.
        let ops: json_patch::Patch = serde_json::from_value(json!([
            {"op": "test", "path": "/spec/ingressClassName", "value": "rust-strom"},
            {"op": "replace", "path": "/spec/ingressClassName", "value": "other"},
        ]))
        .unwrap();
        let jp = ingresses
            .patch("web", &PatchParams::default(), &Patch::Json::<()>(ops))
            .await
            .unwrap();
        assert_eq!(jp.metadata.generation, Some(2));
    })
    .await;
}

#[tokio::test]
async fn server_side_apply_creates_then_updates() {
    within(async {
        let server = FakeApiServer::start().await.unwrap();
        let services: Api<Service> = Api::default_namespaced(server.client().unwrap());
        let pp = PatchParams::apply("fake-test").force();
        let applied = json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"ports": [{"port": 80}]},
        });
        let created = services
            .patch("web", &pp, &Patch::Apply(&applied))
            .await
            .unwrap();
        assert!(created.metadata.uid.is_some());

        let applied = json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}},
            "spec": {"ports": [{"port": 8080}]},
        });
        let updated = services
            .patch("web", &pp, &Patch::Apply(&applied))
            .await
            .unwrap();
        assert_eq!(updated.metadata.uid, created.metadata.uid);
        assert_eq!(updated.metadata.labels.unwrap().len(), 2);
        assert_eq!(updated.spec.unwrap().ports.unwrap()[0].port, 8080);
        assert_eq!(updated.metadata.generation, Some(2));

        // Apply needs a field manager, as on a real server.
        let no_manager = PatchParams::default();
        let err = services
            .patch("web", &no_manager, &Patch::Apply(&applied))
            .await;
        assert!(err.is_err());
    })
    .await;
}

#[tokio::test]
async fn finalizers_hold_a_delete_until_removed() {
    within(async {
        let server = FakeApiServer::start().await.unwrap();
        let ingresses: Api<Ingress> = Api::default_namespaced(server.client().unwrap());
        let mut ing = mk_ingress("default", "web", "a.example");
        ing.metadata.finalizers = Some(vec!["ruststrom.io/cleanup".into()]);
        ingresses
            .create(&PostParams::default(), &ing)
            .await
            .unwrap();

        let pending = ingresses
            .delete("web", &DeleteParams::default())
            .await
            .unwrap();
        let pending = pending.left().expect("the object, still there");
        assert!(pending.metadata.deletion_timestamp.is_some());

        let patch = json!({"metadata": {"finalizers": null}});
        ingresses
            .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        assert_eq!(api_error(ingresses.get("web").await).0, 404);
    })
    .await;
}

#[tokio::test]
async fn deleting_a_namespace_deletes_what_it_holds() {
    within(async {
        let server = FakeApiServer::start().await.unwrap();
        let client = server.client().unwrap();
        let store = server.store();
        store.create(&mk_service("demo", "web", &[])).unwrap();
        store.create(&mk_service("default", "web", &[])).unwrap();
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        let ns = serde_json::from_value(json!({"metadata": {"name": "demo"}})).unwrap();
        let created = namespaces
            .create(&PostParams::default(), &ns)
            .await
            .unwrap();
        assert_eq!(created.status.unwrap().phase.as_deref(), Some("Active"));
        namespaces
            .delete("demo", &DeleteParams::default())
            .await
            .unwrap();
        let all: Api<Service> = Api::all(client);
        let left: Vec<_> = all
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|s| s.metadata.namespace.unwrap())
            .collect();
        assert_eq!(left, ["default"]);
    })
    .await;
}
