//! Watches through kube-runtime: event order, bookmarks, and recovery from
//! expired history and dropped streams (what an API server restart does);
//! slow responses and per-resource holds and failures.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher::Event;
use kube::runtime::{WatchStreamExt, reflector, watcher};

use crate::{eventually, mk_ingress, mk_service, within};
use fake_apiserver::FakeApiServer;

/// The next event that is not an error, skipping none silently: errors are
/// returned so tests can see them.
async fn next<K>(
    stream: &mut (impl futures::Stream<Item = watcher::Result<Event<K>>> + Unpin),
) -> watcher::Result<Event<K>> {
    stream.next().await.expect("the watcher stream never ends")
}

fn describe<K: kube::Resource>(event: &Event<K>) -> String {
    match event {
        Event::Init => "Init".into(),
        Event::InitApply(o) => format!("InitApply {}", o.meta().name.clone().unwrap_or_default()),
        Event::InitDone => "InitDone".into(),
        Event::Apply(o) => format!("Apply {}", o.meta().name.clone().unwrap_or_default()),
        Event::Delete(o) => format!("Delete {}", o.meta().name.clone().unwrap_or_default()),
    }
}

#[tokio::test]
async fn a_watcher_sees_changes_in_order() {
    within(async {
        let server = FakeApiServer::start().await.unwrap();
        let services: Api<Service> = Api::default_namespaced(server.client().unwrap());
        let pp = PostParams::default();
        services
            .create(&pp, &mk_service("default", "before", &[]))
            .await
            .unwrap();

        let mut stream = watcher(services.clone(), watcher::Config::default()).boxed();
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(describe(&next(&mut stream).await.unwrap()));
        }
        assert_eq!(got, ["Init", "InitApply before", "InitDone"]);

        services
            .create(&pp, &mk_service("default", "web", &[]))
            .await
            .unwrap();
        let mut svc = services.get("web").await.unwrap();
        svc.metadata.labels = Some([("a".to_string(), "b".to_string())].into());
        services.replace("web", &pp, &svc).await.unwrap();
        services
            .delete("web", &DeleteParams::default())
            .await
            .unwrap();

        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(describe(&next(&mut stream).await.unwrap()));
        }
        assert_eq!(got, ["Apply web", "Apply web", "Delete web"]);
    })
    .await;
}

#[tokio::test]
async fn a_watcher_relists_after_expired_history_and_dropped_watches() {
    within(async {
        // No bookmarks: they would move the watcher past the compaction.
        let server = FakeApiServer::builder()
            .bookmark_interval(Duration::from_secs(3600))
            .start()
            .await
            .unwrap();
        let services: Api<Service> = Api::default_namespaced(server.client().unwrap());
        services
            .create(&PostParams::default(), &mk_service("default", "a", &[]))
            .await
            .unwrap();
        let mut stream = watcher(services.clone(), watcher::Config::default()).boxed();
        while !matches!(next(&mut stream).await.unwrap(), Event::InitDone) {}

        server.expire_history();
        server.drop_watches();
        server
            .store()
            .create(&mk_service("default", "b", &[]))
            .unwrap();

        // The resumed watch gets the in-stream 410, and the watcher relists.
        let err = next(&mut stream).await.unwrap_err();
        assert!(
            matches!(&err, watcher::Error::WatchError(status) if status.code == 410),
            "{err:?}"
        );
        let mut got = Vec::new();
        loop {
            let event = next(&mut stream).await.unwrap();
            got.push(describe(&event));
            if matches!(event, Event::InitDone) {
                break;
            }
        }
        assert_eq!(got, ["Init", "InitApply a", "InitApply b", "InitDone"]);
        let lists = server
            .requests()
            .iter()
            .filter(|r| {
                r.method == "GET" && r.path.ends_with("/services") && !r.query.contains("watch")
            })
            .count();
        assert_eq!(lists, 2, "one initial list and one relist");

        // And it keeps watching.
        services
            .delete("a", &DeleteParams::default())
            .await
            .unwrap();
        assert_eq!(describe(&next(&mut stream).await.unwrap()), "Delete a");
    })
    .await;
}

#[tokio::test]
async fn a_reflector_converges_through_a_410() {
    within(async {
        let server = FakeApiServer::builder()
            .bookmark_interval(Duration::from_millis(200))
            .start()
            .await
            .unwrap();
        let ingresses: Api<Ingress> = Api::default_namespaced(server.client().unwrap());
        let pp = PostParams::default();
        for name in ["a", "b", "c"] {
            ingresses
                .create(
                    &pp,
                    &mk_ingress("default", name, &format!("{name}.example")),
                )
                .await
                .unwrap();
        }
        let (reader, writer) = reflector::store();
        let stream = reflector(
            writer,
            watcher(ingresses.clone(), watcher::Config::default()),
        )
        .default_backoff()
        .touched_objects();
        let task = tokio::spawn(stream.for_each(|_| async {}));
        reader.wait_until_ready().await.unwrap();

        let mut b = ingresses.get("b").await.unwrap();
        b.spec.as_mut().unwrap().ingress_class_name = Some("other".into());
        ingresses.replace("b", &pp, &b).await.unwrap();
        ingresses
            .delete("a", &DeleteParams::default())
            .await
            .unwrap();

        server.expire_history();
        server.drop_watches();
        let store = server.store();
        store
            .create(&mk_ingress("default", "d", "d.example"))
            .unwrap();
        let mut c: Ingress = store.get_as(Some("default"), "c").unwrap();
        c.metadata.labels = Some([("changed".to_string(), "yes".to_string())].into());
        store.replace(&c).unwrap();
        store
            .delete("networking.k8s.io/v1", "Ingress", Some("default"), "b")
            .unwrap();

        let versions = |items: Vec<Ingress>| -> BTreeMap<String, String> {
            items
                .into_iter()
                .map(|i| (i.name_any(), i.resource_version().unwrap_or_default()))
                .collect()
        };
        eventually(|| {
            let cached = versions(reader.state().iter().map(|i| (**i).clone()).collect());
            cached == versions(store.list_as::<Ingress>(Some("default")))
        })
        .await;
        let mut cached: Vec<String> = reader.state().iter().map(|i| i.name_any()).collect();
        cached.sort();
        assert_eq!(cached, ["c", "d"]);
        task.abort();
    })
    .await;
}

#[tokio::test]
async fn bookmarks_arrive_and_old_versions_expire_in_stream() {
    within(async {
        let server = FakeApiServer::builder()
            .bookmark_interval(Duration::from_millis(50))
            .start()
            .await
            .unwrap();
        let services: Api<Service> = Api::default_namespaced(server.client().unwrap());
        let created = services
            .create(&PostParams::default(), &mk_service("default", "a", &[]))
            .await
            .unwrap();
        let rv = created.resource_version().unwrap();
        server
            .store()
            .create(&mk_ingress("default", "other-kind", "x"))
            .unwrap();

        let wp = WatchParams::default().timeout(5);
        let mut events = services.watch(&wp, &rv).await.unwrap().boxed();
        let bookmark = match events.try_next().await.unwrap() {
            Some(WatchEvent::Bookmark(bm)) => bm,
            other => panic!("only a bookmark was due, got {other:?}"),
        };
        // The bookmark moves past the other kind's write.
        assert_eq!(
            bookmark.metadata.resource_version,
            server.store().resource_version()
        );
        assert_eq!(bookmark.types.kind, "Service");

        server.expire_history();
        let mut events = services.watch(&wp, &rv).await.unwrap().boxed();
        match events.try_next().await.unwrap() {
            Some(WatchEvent::Error(status)) => {
                assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
            }
            other => panic!("expected a 410 ERROR event, got {other:?}"),
        }
        assert!(
            events.try_next().await.unwrap().is_none(),
            "the stream ends after the error"
        );
    })
    .await;
}

#[tokio::test]
async fn streaming_lists_end_with_the_initial_events_bookmark() {
    within(async {
        let server = FakeApiServer::start().await.unwrap();
        let services: Api<Service> = Api::default_namespaced(server.client().unwrap());
        services
            .create(&PostParams::default(), &mk_service("default", "a", &[]))
            .await
            .unwrap();
        let config = watcher::Config::default().streaming_lists();
        let mut stream = watcher(services.clone(), config).boxed();
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(describe(&next(&mut stream).await.unwrap()));
        }
        assert_eq!(got, ["Init", "InitApply a", "InitDone"]);
        services
            .create(&PostParams::default(), &mk_service("default", "b", &[]))
            .await
            .unwrap();
        assert_eq!(describe(&next(&mut stream).await.unwrap()), "Apply b");
    })
    .await;
}

#[tokio::test]
async fn a_watch_by_label_sees_objects_enter_and_leave() {
    within(async {
        let server = FakeApiServer::start().await.unwrap();
        let services: Api<Service> = Api::default_namespaced(server.client().unwrap());
        let config = watcher::Config::default().labels("app=web");
        let mut stream = watcher(services.clone(), config).boxed();
        while !matches!(next(&mut stream).await.unwrap(), Event::InitDone) {}

        let store = server.store();
        store
            .create(&mk_service("default", "x", &[("app", "db")]))
            .unwrap();
        store
            .apply(&mk_service("default", "x", &[("app", "web")]))
            .unwrap();
        store
            .apply(&mk_service("default", "x", &[("app", "db")]))
            .unwrap();
        let mut got = Vec::new();
        for _ in 0..2 {
            got.push(describe(&next(&mut stream).await.unwrap()));
        }
        assert_eq!(got, ["Apply x", "Delete x"]);
    })
    .await;
}

#[tokio::test]
async fn slow_responses_still_arrive() {
    within(async {
        let server = FakeApiServer::start().await.unwrap();
        server.set_delay(Duration::from_millis(300));
        let services: Api<Service> = Api::default_namespaced(server.client().unwrap());
        let mut stream = watcher(services.clone(), watcher::Config::default()).boxed();
        assert!(matches!(next(&mut stream).await.unwrap(), Event::Init));
        assert!(matches!(next(&mut stream).await.unwrap(), Event::InitDone));
        server.set_delay(Duration::ZERO);
        services
            .create(&PostParams::default(), &mk_service("default", "a", &[]))
            .await
            .unwrap();
        assert_eq!(describe(&next(&mut stream).await.unwrap()), "Apply a");
    })
    .await;
}

#[tokio::test]
async fn one_resource_can_be_held_or_failed_alone() {
    within(async {
        let server = FakeApiServer::start().await.unwrap();
        let client = server.client().unwrap();
        let services: Api<Service> = Api::default_namespaced(client.clone());
        let leases: Api<Lease> = Api::default_namespaced(client);

        server.hold("services");
        let held = tokio::spawn({
            let services = services.clone();
            async move { services.list(&ListParams::default()).await }
        });
        // Other resources are served meanwhile.
        assert!(leases.list(&ListParams::default()).await.is_ok());
        eventually(|| {
            server
                .requests()
                .iter()
                .any(|r| r.path == "/api/v1/namespaces/default/services")
        })
        .await;
        assert!(!held.is_finished(), "a held request was answered");
        server.resume("services");
        assert!(held.await.unwrap().is_ok());

        server.fail("leases");
        let err = leases.list(&ListParams::default()).await.unwrap_err();
        assert!(
            matches!(&err, kube::Error::Api(s) if s.code == 500),
            "{err:?}"
        );
        assert!(services.list(&ListParams::default()).await.is_ok());
        server.resume("leases");
        assert!(leases.list(&ListParams::default()).await.is_ok());
    })
    .await;
}
