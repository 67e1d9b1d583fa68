//! Lists: label and field selectors, and limit/continue paging over one
//! consistent snapshot.

use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::{Api, ListParams, PostParams, VersionMatch};
use kube::core::ObjectList;

use crate::{api_error, mk_service, within};
use fake_apiserver::FakeApiServer;

fn names<K: kube::Resource + Clone>(list: &ObjectList<K>) -> Vec<String> {
    list.items
        .iter()
        .map(|o| o.meta().name.clone().unwrap_or_default())
        .collect()
}

async fn seeded() -> (FakeApiServer, Api<Service>) {
    let server = FakeApiServer::start().await.unwrap();
    let services: Api<Service> = Api::default_namespaced(server.client().unwrap());
    for (i, tier) in ["front", "back", "front", "db", "back", "front", "none"]
        .iter()
        .enumerate()
    {
        let labels: &[(&str, &str)] = if *tier == "none" {
            &[]
        } else {
            &[("tier", tier), ("app", "shop")]
        };
        services
            .create(
                &PostParams::default(),
                &mk_service("default", &format!("svc-{i}"), labels),
            )
            .await
            .unwrap();
    }
    (server, services)
}

#[tokio::test]
async fn label_and_field_selectors_filter_lists() {
    within(async {
        let (server, services) = seeded().await;
        let list = |sel: &str| {
            let services = services.clone();
            let lp = ListParams::default().labels(sel);
            async move { names(&services.list(&lp).await.unwrap()) }
        };
        assert_eq!(list("tier=front").await, ["svc-0", "svc-2", "svc-5"]);
        assert_eq!(
            list("tier in (db, back)").await,
            ["svc-1", "svc-3", "svc-4"]
        );
        assert_eq!(list("tier notin (front,back)").await, ["svc-3", "svc-6"]);
        assert_eq!(list("!tier").await, ["svc-6"]);
        assert_eq!(list("app,tier!=front").await, ["svc-1", "svc-3", "svc-4"]);

        let by_name = ListParams::default().fields("metadata.name=svc-4");
        assert_eq!(names(&services.list(&by_name).await.unwrap()), ["svc-4"]);
        let all: Api<Service> = Api::all(server.client().unwrap());
        let not_default = ListParams::default().fields("metadata.namespace!=default");
        assert!(all.list(&not_default).await.unwrap().items.is_empty());
        let bad = ListParams::default().fields("spec.type=ClusterIP");
        assert_eq!(api_error(services.list(&bad).await).0, 400);
        let bad = ListParams::default().labels("tier in front");
        assert_eq!(api_error(services.list(&bad).await).0, 400);

        // Secrets also select on `type`.
        let secrets: Api<Secret> = Api::default_namespaced(server.client().unwrap());
        for (name, ty) in [("a", "Opaque"), ("b", "kubernetes.io/tls")] {
            let s = serde_json::from_value(serde_json::json!({
                "metadata": {"name": name}, "type": ty,
            }))
            .unwrap();
            secrets.create(&PostParams::default(), &s).await.unwrap();
        }
        let tls = ListParams::default().fields("type=kubernetes.io/tls");
        assert_eq!(names(&secrets.list(&tls).await.unwrap()), ["b"]);
    })
    .await;
}

#[tokio::test]
async fn pages_come_from_one_snapshot() {
    within(async {
        let (server, services) = seeded().await;
        let first = services
            .list(&ListParams::default().limit(3))
            .await
            .unwrap();
        assert_eq!(names(&first), ["svc-0", "svc-1", "svc-2"]);
        assert_eq!(first.metadata.remaining_item_count, Some(4));
        let rv = first.metadata.resource_version.clone();

        // Changes between pages do not show up in the rest of this list.
        services
            .create(&PostParams::default(), &mk_service("default", "svc-9", &[]))
            .await
            .unwrap();
        server
            .store()
            .delete("v1", "Service", Some("default"), "svc-4")
            .unwrap();

        let mut seen = names(&first);
        let mut token = first.metadata.continue_.clone();
        while let Some(t) = token.filter(|t| !t.is_empty()) {
            let page = services
                .list(&ListParams::default().limit(3).continue_token(&t))
                .await
                .unwrap();
            assert_eq!(page.metadata.resource_version, rv);
            seen.extend(names(&page));
            token = page.metadata.continue_.clone();
        }
        assert_eq!(seen, (0..7).map(|i| format!("svc-{i}")).collect::<Vec<_>>());

        // Paging with a selector.
        let lp = ListParams::default().labels("tier=front").limit(2);
        let page = services.list(&lp).await.unwrap();
        assert_eq!(names(&page), ["svc-0", "svc-2"]);
        assert_eq!(page.metadata.remaining_item_count, None);
        let rest = services
            .list(
                &lp.clone()
                    .continue_token(page.metadata.continue_.as_deref().unwrap()),
            )
            .await
            .unwrap();
        assert_eq!(names(&rest), ["svc-5"]);
        assert_eq!(rest.metadata.continue_, None);
    })
    .await;
}

#[tokio::test]
async fn resource_versions_in_lists_follow_the_rules() {
    within(async {
        let (server, services) = seeded().await;
        let first = services
            .list(&ListParams::default().limit(2))
            .await
            .unwrap();
        let old_rv = first.metadata.resource_version.clone().unwrap();
        services
            .create(&PostParams::default(), &mk_service("default", "late", &[]))
            .await
            .unwrap();

        // Exact: the state at that version, without the later object.
        let exact = ListParams::default()
            .at(&old_rv)
            .matching(VersionMatch::Exact);
        let at = services.list(&exact).await.unwrap();
        assert_eq!(at.items.len(), 7);
        assert_eq!(
            at.metadata.resource_version.as_deref(),
            Some(old_rv.as_str())
        );
        // NotOlderThan and "any" serve the latest.
        let newer = ListParams::default()
            .at(&old_rv)
            .matching(VersionMatch::NotOlderThan);
        assert_eq!(services.list(&newer).await.unwrap().items.len(), 8);
        let any = ListParams::default().match_any();
        assert_eq!(services.list(&any).await.unwrap().items.len(), 8);

        // After compaction, old versions and continue tokens expire.
        server.expire_history();
        assert_eq!(
            api_error(services.list(&exact).await),
            (410, "Expired".into())
        );
        assert_eq!(api_error(services.list(&newer).await).0, 410);
        let token = first.metadata.continue_.unwrap();
        let next = ListParams::default().limit(2).continue_token(&token);
        assert_eq!(
            api_error(services.list(&next).await),
            (410, "Expired".into())
        );
        // A version from the future times out. kube retries 504s with
        // backoff by default, as it would against a real server: not here.
        let mut config = server.kube_config();
        config.default_retry = false;
        let no_retry: Api<Service> =
            Api::default_namespaced(kube::Client::try_from(config).unwrap());
        let future = ListParams::default()
            .at("999999")
            .matching(VersionMatch::NotOlderThan);
        assert_eq!(
            api_error(no_retry.list(&future).await),
            (504, "Timeout".into())
        );
    })
    .await;
}
