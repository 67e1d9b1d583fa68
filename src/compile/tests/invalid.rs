//! Bad objects: each is rejected with a clear reason on the right object,
//! and everything else keeps working.

use super::*;

#[test]
fn invalid_ingresses_are_rejected_whole() {
    // The bad Ingress is the older one and also claims ok.bad.com/, which the
    // good one serves: a rejected Ingress takes no route from anybody.
    let bad = || {
        mk_ingress("shop", "bad")
            .created(OLD)
            .rule(Some("ok.bad.com"), &[("/", "Prefix", "web", "80")])
    };
    let with_host = |host: &str| bad().rule(Some(host), &[("/", "Prefix", "web", "80")]);
    let with_path = |path: &str, ty: &str| bad().rule(Some("x.com"), &[(path, ty, "web", "80")]);
    // (case, Ingress shop/bad, reason in the message)
    #[rustfmt::skip]
    let cases: Vec<(&str, Ing, &str)> = vec![
        ("IPv4 address as host", with_host("10.0.0.1"), "not an IP address"),
        ("IPv6 address as host", with_host("fd00::1"), "must be a DNS name"),
        ("wildcard beyond the first label", with_host("*.*.foo"), "wildcard must be the whole first label"),
        ("wildcard inside a label", with_host("a*.foo.com"), "wildcard must be the whole first label"),
        ("underscore in host", with_host("foo_bar.com"), "must be a DNS name"),
        ("empty label in host", with_host("foo..com"), "must be a DNS name"),
        ("relative Prefix path", with_path("api", "Prefix"), "must be an absolute path"),
        ("relative Exact path", with_path("api/v1", "Exact"), "must be an absolute path"),
        ("relative ImplementationSpecific path", with_path("api", "ImplementationSpecific"),
            "must be an absolute path"),
        ("empty Prefix path", with_path("", "Prefix"), "must be an absolute path"),
        ("missing pathType", with_path("/api", ""), "pathType is required"),
        ("unknown pathType", with_path("/api", "Regex"), "unknown pathType"),
        ("no rules and no defaultBackend", mk_ingress("shop", "bad"), "neither rules nor defaultBackend"),
    ];
    for (case, ingress, reason) in cases {
        let objects = [
            backends("shop", &["web"]),
            backends("default", &["web"]),
            vec![
                ingress.build(),
                mk_ingress("default", "good")
                    .created(NEW)
                    .rule(Some("ok.bad.com"), &[("/", "Prefix", "web", "80")])
                    .rule(Some("good.com"), &[("/", "Prefix", "web", "80")])
                    .build(),
            ],
        ]
        .concat();
        let c = run(&objects);
        assert_eq!(c.problems.len(), 1, "{case}: {:#?}", c.problems);
        let p = &c.problems[0];
        assert_eq!(
            (p.severity, p.kind),
            (Severity::Rejected, "Ingress"),
            "{case}"
        );
        assert_eq!(p.object.to_string(), "shop/bad", "{case}");
        assert!(
            p.message.contains(reason),
            "{case}: {:?} lacks {reason:?}",
            p.message
        );
        #[rustfmt::skip]
        check_routes(&c, &[
            ("ok.bad.com", "/", Some("default/web:80")),
            ("good.com", "/x", Some("default/web:80")),
            ("x.com", "/api", None),
            ("10.0.0.1", "/", None),
        ]);
    }
}

#[test]
fn unresolvable_backends_answer_503_and_are_reported() {
    let resource =
        json!({"resource": {"apiGroup": "k8s.example.com", "kind": "Bucket", "name": "b"}});
    // (case, backend of the rule /x, reason in the message)
    #[rustfmt::skip]
    let cases = vec![
        ("missing service", backend("nope", "80"), "service shop/nope not found"),
        ("missing port number", backend("web", "81"), "service shop/web has no port 81"),
        ("missing port name", backend("web", "grpc"), "service shop/web has no port grpc"),
        ("resource backend", resource, "resource backends are not supported"),
        ("service without port", json!({"service": {"name": "web"}}), "backend service has no port"),
    ];
    for (case, broken, reason) in cases {
        let objects = [
            backends("shop", &["web"]),
            backends("default", &["other"]),
            vec![
                mk_ingress("shop", "bad")
                    .rule(Some("h.com"), &[("/", "Prefix", "web", "80")])
                    .raw_rule(Some("h.com"), vec![path_json("/x", "Prefix", broken)])
                    .build(),
                mk_ingress("default", "other")
                    .rule(Some("other.com"), &[("/", "Prefix", "other", "80")])
                    .build(),
            ],
        ]
        .concat();
        let c = run(&objects);
        expect_problems(&c, &[(Severity::Rejected, "shop/bad", reason)]);
        assert_eq!(c.problems[0].kind, "Ingress", "{case}");
        // The broken rule keeps its path and answers 503 rather than falling
        // through to the broader "/" rule.
        let r = route(&c, "h.com", "/x/y").unwrap_or_else(|| panic!("{case}: no route"));
        assert_ne!(r.backend.id, "shop/web:80", "{case}");
        assert!(
            r.backend.ready.is_empty() && r.backend.fallback.is_empty(),
            "{case}"
        );
        #[rustfmt::skip]
        check_routes(&c, &[
            ("h.com", "/", Some("shop/web:80")),
            ("other.com", "/", Some("default/other:80")),
        ]);
    }
}

#[test]
fn unresolved_backends_are_named_by_service_and_port() {
    let objects = [
        backends("shop", &["web"]),
        vec![
            mk_ingress("shop", "ing")
                .rule(Some("h.com"), &[("/a", "Prefix", "nope", "80")])
                .rule(Some("h.com"), &[("/b", "Prefix", "web", "grpc")])
                .build(),
        ],
    ]
    .concat();
    let c = run(&objects);
    #[rustfmt::skip]
    check_routes(&c, &[
        ("h.com", "/a", Some("shop/nope:80")),
        ("h.com", "/b", Some("shop/web:grpc")),
    ]);
}

#[test]
fn one_path_twice_in_one_ingress_keeps_the_first() {
    let objects = [
        backends("shop", &["a", "b"]),
        vec![
            mk_ingress("shop", "twice")
                .rule(
                    Some("x.com"),
                    &[
                        ("/api", "Prefix", "a", "80"),
                        ("/api/", "Prefix", "b", "80"),
                    ],
                )
                .build(),
        ],
    ]
    .concat();
    let c = run(&objects);
    check_routes(&c, &[("x.com", "/api", Some("shop/a:80"))]);
    expect_problems(
        &c,
        &[(
            Severity::Rejected,
            "shop/twice",
            "given twice with different backends",
        )],
    );
}
