//! Backend resolution: Service ports, EndpointSlices, endpoint conditions,
//! sharing, and ExternalName Services.

use std::sync::Arc;

use super::*;

// ---------------------------------------------------------------- 6. backends

#[test]
fn endpoint_ports_follow_the_service_port_name() {
    // (case, Service ports, slice ports, Ingress port, ready endpoints)
    type Case<'a> = (
        &'a str,
        &'a [(&'a str, i32, i32)],
        &'a [(&'a str, i32)],
        &'a str,
        &'a [&'a str],
    );
    let two_ports: &[(&str, i32, i32)] = &[("http", 80, 8080), ("admin", 81, 9090)];
    let two_slice_ports: &[(&str, i32)] = &[("admin", 9090), ("http", 8080)];
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("by number", two_ports, two_slice_ports, "80", &["10.0.0.1:8080"]),
        ("by name", two_ports, two_slice_ports, "admin", &["10.0.0.1:9090"]),
        ("the other port by number", two_ports, two_slice_ports, "81", &["10.0.0.1:9090"]),
        ("the slice's number, not targetPort", &[("http", 80, 8080)], &[("http", 1234)], "80", &["10.0.0.1:1234"]),
        ("unnamed matches unnamed", &[("", 80, 8080)], &[("", 8080)], "80", &["10.0.0.1:8080"]),
        ("unnamed does not match named", &[("", 80, 8080)], &[("http", 8080)], "80", &[]),
        ("named does not match unnamed", &[("http", 80, 8080)], &[("", 8080)], "80", &[]),
        ("named does not match another name", &[("http", 80, 8080)], &[("web", 8080)], "80", &[]),
    ];
    for (case, svc_ports, slice_ports, port, want) in cases {
        let objects = [
            mk_service("default", "web", svc_ports),
            mk_slice(
                "default",
                "web-1",
                "web",
                slice_ports,
                vec![ready("10.0.0.1")],
            ),
            mk_ingress("default", "ing")
                .rule(Some("foo.com"), &[("/", "Prefix", "web", port)])
                .build(),
        ];
        let c = run(&objects);
        assert!(c.problems.is_empty(), "{case}: {:#?}", c.problems);
        let r = route(&c, "foo.com", "/").unwrap_or_else(|| panic!("{case}: no route"));
        assert!(
            r.backend.id.starts_with("default/web:"),
            "{case}: {}",
            r.backend.id
        );
        assert_eq!(addrs(&r.backend.ready), want, "{case}");
        assert!(r.backend.fallback.is_empty(), "{case}");
    }
}

#[test]
fn slices_are_found_by_label_in_the_same_namespace() {
    let port = &[("http", 8080)];
    let objects = [
        mk_service("default", "web", &[("http", 80, 8080)]),
        mk_slice("default", "web-abc", "web", port, vec![ready("10.0.0.1")]),
        mk_slice("default", "web-def", "web", port, vec![ready("10.0.0.5")]),
        mk_slice("other", "web-abc", "web", port, vec![ready("10.0.0.2")]),
        mk_slice("default", "api-abc", "api", port, vec![ready("10.0.0.3")]),
        // Named like the Service but not labelled for it: not its slice.
        mk_slice("default", "web", "", port, vec![ready("10.0.0.4")]),
        mk_ingress("default", "ing")
            .rule(Some("foo.com"), &[("/", "Prefix", "web", "80")])
            .build(),
    ];
    let c = run(&objects);
    expect_problems(&c, &[]);
    let r = route(&c, "foo.com", "/").unwrap();
    assert_eq!(addrs(&r.backend.ready), ["10.0.0.1:8080", "10.0.0.5:8080"]);
}

#[test]
fn endpoint_conditions_decide_ready_and_fallback() {
    let (t, f) = (Some(true), Some(false));
    // (endpoint with ready, serving, terminating; where it goes)
    #[rustfmt::skip]
    let cases = [
        (ep("10.0.1.1", t, t, f), "ready"),
        (ep("10.0.1.2", t, None, None), "ready"),
        (ep("10.0.1.3", None, None, None), "ready"),
        (json!({"addresses": ["10.0.1.4"]}), "ready"),
        (ep("10.0.1.5", None, t, t), "ready"),
        (ep("10.0.2.1", f, t, t), "fallback"),
        (ep("10.0.3.1", f, t, f), "none"),
        (ep("10.0.3.2", f, f, t), "none"),
        (ep("10.0.3.3", f, None, None), "none"),
        (ep("10.0.3.4", f, None, t), "none"),
        (ep("10.0.3.5", f, t, None), "none"),
        (ep("10.0.3.6", f, f, f), "none"),
    ];
    let want = |set: &str| -> Vec<String> {
        let addr = |e: &Value| format!("{}:8080", e["addresses"][0].as_str().unwrap());
        cases
            .iter()
            .filter(|(_, s)| *s == set)
            .map(|(e, _)| addr(e))
            .collect()
    };
    let endpoints = cases.iter().map(|(e, _)| e.clone()).collect();
    let objects = [
        mk_service("default", "web", &[("http", 80, 8080)]),
        mk_slice("default", "web-1", "web", &[("http", 8080)], endpoints),
        mk_ingress("default", "ing")
            .rule(Some("foo.com"), &[("/", "Prefix", "web", "80")])
            .build(),
    ];
    let c = run(&objects);
    expect_problems(&c, &[]);
    let r = route(&c, "foo.com", "/").unwrap();
    assert_eq!(addrs(&r.backend.ready), want("ready"));
    assert_eq!(addrs(&r.backend.fallback), want("fallback"));
}

#[test]
fn endpoints_are_deduplicated_and_fqdn_slices_ignored() {
    let port = &[("http", 8080)];
    let draining = |addr| ep(addr, Some(false), Some(true), Some(true));
    let first = vec![ready("10.0.0.2"), ready("10.0.0.1"), draining("10.0.0.9")];
    let second = vec![ready("10.0.0.1"), ready("10.0.0.3"), draining("10.0.0.9")];
    let objects = [
        mk_service("default", "web", &[("http", 80, 8080)]),
        mk_slice("default", "web-1", "web", port, first),
        mk_slice("default", "web-2", "web", port, second),
        mk_slice_of(
            "IPv6",
            "default",
            "web-3",
            "web",
            port,
            vec![ready("fd00::1")],
        ),
        mk_slice_of(
            "FQDN",
            "default",
            "web-4",
            "web",
            port,
            vec![ready("web.example.com")],
        ),
        mk_ingress("default", "ing")
            .rule(Some("foo.com"), &[("/", "Prefix", "web", "80")])
            .build(),
    ];
    let c = run(&objects);
    expect_problems(&c, &[]);
    let r = route(&c, "foo.com", "/").unwrap();
    assert_eq!(
        addrs(&r.backend.ready),
        [
            "10.0.0.1:8080",
            "10.0.0.2:8080",
            "10.0.0.3:8080",
            "[fd00::1]:8080"
        ]
    );
    assert_eq!(addrs(&r.backend.fallback), ["10.0.0.9:8080"]);
}

#[test]
fn routes_to_one_service_port_share_one_backend() {
    let endpoints = vec![ready("10.0.0.1")];
    let objects = [
        mk_service("default", "web", &[("http", 80, 8080), ("admin", 81, 8081)]),
        mk_slice(
            "default",
            "web-1",
            "web",
            &[("http", 8080), ("admin", 8081)],
            endpoints,
        ),
        mk_ingress("default", "a")
            .created(OLD)
            .rule(Some("a.com"), &[("/", "Prefix", "web", "80")])
            .default_backend("web", "80")
            .build(),
        mk_ingress("default", "b")
            .created(NEW)
            .rule(Some("b.com"), &[("/", "Prefix", "web", "80")])
            .rule(Some("b.com"), &[("/admin", "Prefix", "web", "81")])
            .build(),
    ];
    let c = run(&objects);
    expect_problems(&c, &[]);
    let a = &route(&c, "a.com", "/").unwrap().backend;
    let b = &route(&c, "b.com", "/").unwrap().backend;
    let default = &c.table.default_backend().unwrap().backend;
    let admin = &route(&c, "b.com", "/admin").unwrap().backend;
    assert!(Arc::ptr_eq(a, b));
    assert!(Arc::ptr_eq(a, default));
    assert!(!Arc::ptr_eq(a, admin));
    assert_eq!(addrs(&admin.ready), ["10.0.0.1:8081"]);
}

// ---------------------------------------------------------------- 7. ExternalName

fn external_name_objects() -> Vec<Object> {
    let rules = [
        ("/ext", "Prefix", "ext", "443"),
        ("/named", "Prefix", "ext", "https"),
    ];
    [
        backends("default", &["web"]),
        vec![
            mk_external_service("default", "ext", "api.example.com", &[("https", 443, 443)]),
            mk_ingress("default", "ing")
                .rule(Some("foo.com"), &rules)
                .default_backend("web", "80")
                .build(),
        ],
    ]
    .concat()
}

#[test]
fn external_name_services_are_refused_by_default() {
    let c = run(&external_name_objects());
    #[rustfmt::skip]
    expect_problems(&c, &[
        (Severity::Rejected, "default/ing", "ExternalName"),
        (Severity::Rejected, "default/ing", "ExternalName"),
    ]);
    // The routes stay, without endpoints (503): no fall-through to the default.
    for path in ["/ext", "/named/x"] {
        let r = route(&c, "foo.com", path).unwrap();
        assert!(
            r.backend.id.starts_with("default/ext:"),
            "{path}: {}",
            r.backend.id
        );
        assert!(
            r.backend.ready.is_empty() && r.backend.fallback.is_empty(),
            "{path}"
        );
    }
    check_routes(&c, &[("foo.com", "/other", Some("default/web:80"))]);
}

#[test]
fn external_name_services_with_allow_external_name() {
    let options = CompileOptions {
        allow_external_name: true,
        ..options()
    };
    let c = run_with(&external_name_objects(), &options);
    expect_problems(&c, &[]);
    for path in ["/ext", "/named"] {
        let r = route(&c, "foo.com", path).unwrap();
        let got: Vec<_> = r.backend.ready.iter().map(|e| e.addr.clone()).collect();
        let want = EndpointAddr::Name {
            host: "api.example.com".into(),
            port: 443,
        };
        assert_eq!(got, [want], "{path}");
        assert_eq!(
            r.backend.ready[0].authority().as_str(),
            "api.example.com:443"
        );
    }
}

#[test]
fn an_endpoint_ready_in_one_slice_and_draining_in_another_is_ready_only() {
    let draining = ep("10.0.0.9", Some(false), Some(true), Some(true));
    let objects = vec![
        mk_service("shop", "web", &[("http", 80, 8080)]),
        mk_slice(
            "shop",
            "web-a",
            "web",
            &[("http", 8080)],
            vec![ready("10.0.0.9")],
        ),
        mk_slice("shop", "web-b", "web", &[("http", 8080)], vec![draining]),
        mk_ingress("shop", "web")
            .rule(Some("x.com"), &[("/", "Prefix", "web", "80")])
            .build(),
    ];
    let c = run(&objects);
    let b = &route(&c, "x.com", "/").unwrap().backend;
    assert_eq!(addrs(&b.ready), ["10.0.0.9:8080"]);
    assert!(b.fallback.is_empty(), "{:?}", b.fallback);
}

#[test]
fn endpoint_only_changes_refresh_backends_in_a_copy_of_the_table() {
    let objects = [
        backends("shop", &["a", "b"]),
        vec![
            mk_ingress("shop", "web")
                .rule(
                    Some("x.com"),
                    &[("/a", "Prefix", "a", "80"), ("/b", "Prefix", "b", "80")],
                )
                .build(),
        ],
    ]
    .concat();
    let c = run(&objects);
    let a_before = route(&c, "x.com", "/a").unwrap().backend.clone();
    let b_before = route(&c, "x.com", "/b").unwrap().backend.clone();

    // Service a's slice now lists two other addresses.
    let mut changed = objects.clone();
    changed.push(mk_slice(
        "shop",
        "a-1",
        "a",
        &[("http", 8080)],
        vec![ready("10.9.0.1"), ready("10.9.0.2")],
    ));
    let snapshot: Snapshot = changed.iter().collect();
    let fresh =
        super::super::refresh_backends(&snapshot, &options(), std::slice::from_ref(&a_before));
    assert_eq!(fresh.len(), 1);
    let table = c.table.with_backends(8, |b| {
        fresh
            .iter()
            .find(|(old, _)| Arc::ptr_eq(old, b))
            .map(|(_, new)| new.clone())
    });
    let a_after = &table.lookup("x.com", "/a").unwrap().backend;
    assert_eq!(addrs(&a_after.ready), ["10.9.0.1:8080", "10.9.0.2:8080"]);
    assert_eq!(a_after.id, a_before.id);
    assert_eq!(a_after.policy, a_before.policy);
    // Everything else is shared with the old table, not rebuilt.
    assert!(Arc::ptr_eq(
        &table.lookup("x.com", "/b").unwrap().backend,
        &b_before
    ));
    assert_eq!(table.generation(), 8);
}
