//! Discovery, kubeconfigs, custom resources and malformed requests.

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::{Discovery, Scope};
use serde_json::json;

use crate::{api_error, mk_ingress, within};
use fake_apiserver::{FakeApiServer, ResourceType};

#[tokio::test]
async fn kube_discovery_finds_the_served_types() {
    within(async {
        let server = FakeApiServer::start().await.unwrap();
        let client = server.client().unwrap();
        let version = client.apiserver_version().await.unwrap();
        assert_eq!(version.major, "1");

        for discovery in [
            Discovery::new(client.clone()).run().await.unwrap(),
            Discovery::new(client.clone())
                .run_aggregated()
                .await
                .unwrap(),
        ] {
            let gvk = GroupVersionKind::gvk("networking.k8s.io", "v1", "Ingress");
            let (ar, caps) = discovery
                .resolve_gvk(&gvk)
                .expect("ingresses are discovered");
            assert_eq!(ar.plural, "ingresses");
            assert_eq!(caps.scope, Scope::Namespaced);
            assert!(
                caps.subresources
                    .iter()
                    .any(|(sub, _)| sub.plural == "ingresses/status" || sub.plural == "status")
            );
            let gvk = GroupVersionKind::gvk("networking.k8s.io", "v1", "IngressClass");
            assert_eq!(discovery.resolve_gvk(&gvk).unwrap().1.scope, Scope::Cluster);
            assert!(discovery.has_group("coordination.k8s.io"));
            assert!(
                discovery
                    .resolve_gvk(&GroupVersionKind::gvk("", "v1", "Secret"))
                    .is_some()
            );
        }
    })
    .await;
}

#[tokio::test]
async fn a_kubeconfig_file_reaches_the_server() {
    within(async {
        let server = FakeApiServer::start().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        server.write_kubeconfig(&path).unwrap();
        let kubeconfig = Kubeconfig::read_from(&path).unwrap();
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .unwrap();
        assert_eq!(config.default_namespace, "default");
        let client = kube::Client::try_from(config).unwrap();
        let namespaces: Api<Namespace> = Api::all(client);
        let names: Vec<String> = namespaces
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect();
        assert_eq!(
            names,
            ["default", "kube-node-lease", "kube-public", "kube-system"]
        );
    })
    .await;
}

#[tokio::test]
async fn a_registered_custom_resource_is_served() {
    within(async {
        let server = FakeApiServer::start().await.unwrap();
        server.register(
            ResourceType::new(
                "ruststrom.io",
                "v1alpha1",
                "balancerpolicies",
                "BalancerPolicy",
                true,
            )
            .with_status(),
        );
        let client = server.client().unwrap();
        let gvk = GroupVersionKind::gvk("ruststrom.io", "v1alpha1", "BalancerPolicy");
        let ar = ApiResource::from_gvk_with_plural(&gvk, "balancerpolicies");
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "ruststrom.io/v1alpha1",
            "kind": "BalancerPolicy",
            "metadata": {"name": "p"},
            "spec": {"algorithm": "p2c"},
        }))
        .unwrap();
        api.create(&PostParams::default(), &obj).await.unwrap();
        let list = api.list(&ListParams::default()).await.unwrap();
        assert_eq!(list.items.len(), 1);
        // Custom resources keep their type on list items.
        assert_eq!(list.items[0].types.as_ref().unwrap().kind, "BalancerPolicy");
        let discovery = Discovery::new(client).run().await.unwrap();
        assert!(discovery.resolve_gvk(&gvk).is_some());
    })
    .await;
}

#[tokio::test]
async fn malformed_requests_get_a_status_not_a_panic() {
    within(async {
        let server = FakeApiServer::start().await.unwrap();
        let client = server.client().unwrap();
        let send = |method: &str, path: &str, content_type: &str, body: &str| {
            let req = http::Request::builder()
                .method(method)
                .uri(path)
                .header("content-type", content_type)
                .body(body.as_bytes().to_vec())
                .unwrap();
            let client = client.clone();
            async move { api_error(client.request_text(req).await).0 }
        };
        let ing = "/apis/networking.k8s.io/v1/namespaces/default/ingresses";
        assert_eq!(send("POST", ing, "application/json", "{").await, 400);
        assert_eq!(send("POST", ing, "application/json", "[1]").await, 400);
        assert_eq!(
            send(
                "POST",
                ing,
                "application/json",
                r#"{"kind": "Service", "metadata": {"name": "x"}}"#
            )
            .await,
            400
        );
        assert_eq!(
            send(
                "POST",
                ing,
                "application/json",
                r#"{"metadata": {"name": "x", "resourceVersion": "5"}}"#
            )
            .await,
            500
        );
        assert_eq!(send("GET", &format!("{ing}?limit=lots"), "", "").await, 400);
        assert_eq!(
            send("GET", &format!("{ing}?continue=zzz"), "", "").await,
            400
        );
        assert_eq!(
            send("GET", &format!("{ing}?watch=maybe"), "", "").await,
            400
        );
        assert_eq!(
            send("GET", &format!("{ing}?watch=1&resourceVersion=abc"), "", "").await,
            400
        );
        assert_eq!(send("PUT", ing, "application/json", "{}").await, 405);
        assert_eq!(send("GET", "/apis/nope.io/v1/things", "", "").await, 404);
        assert_eq!(
            send("GET", "/api/v1/namespaces/default/ingresses", "", "").await,
            404
        );

        server
            .store()
            .create(&mk_ingress("default", "web", "a.example"))
            .unwrap();
        let web = format!("{ing}/web");
        assert_eq!(send("PATCH", &web, "text/plain", "{}").await, 415);
        assert_eq!(
            send("PATCH", &web, "application/merge-patch+json", "nope").await,
            400
        );
        assert_eq!(
            send(
                "PATCH",
                &web,
                "application/json-patch+json",
                r#"[{"op": "jump"}]"#
            )
            .await,
            400
        );
        assert_eq!(
            send(
                "PATCH",
                &web,
                "application/merge-patch+json",
                r#"{"metadata": {"name": "other"}}"#
            )
            .await,
            400
        );
        assert_eq!(
            send(
                "PUT",
                &web,
                "application/json",
                r#"{"metadata": {"name": "other"}}"#
            )
            .await,
            400
        );
        assert_eq!(send("DELETE", &web, "application/json", "{oops").await, 400);
        assert_eq!(
            send(
                "POST",
                &format!("{ing}?dryRun=All"),
                "application/json",
                "{}"
            )
            .await,
            400
        );

        // The server is still fine.
        let ingresses: Api<Ingress> = Api::default_namespaced(client.clone());
        assert_eq!(
            ingresses
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .len(),
            1
        );
    })
    .await;
}
