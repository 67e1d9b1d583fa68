//! Which Ingresses are served and how their rules become routes: class
//! selection, hosts, paths, merging and conflicts, default backends.

use std::sync::Arc;

use super::*;

// ---------------------------------------------------------------- 1. class

#[test]
fn ingress_class_selection() {
    let ours = |name: &str, default: bool| mk_class(name, CONTROLLER_NAME, default);
    let theirs = |name: &str, default: bool| mk_class(name, OTHER_CONTROLLER, default);
    let ing = || mk_ingress("default", "ing");
    let legacy = |class: &str| ing().no_class().annotate(LEGACY_CLASS, class);
    // (case, watch_without_class, IngressClasses, Ingress, served)
    #[rustfmt::skip]
    let cases: Vec<(&str, bool, Vec<Object>, Ing, bool)> = vec![
        ("field names the flag", false, vec![], ing(), true),
        ("field names our IngressClass", false, vec![ours("mine", false)], ing().class("mine"), true),
        ("field names another controller's class", false, vec![theirs("nginx", false)], ing().class("nginx"), false),
        ("field names an unknown class", false, vec![ours("mine", false)], ing().class("other"), false),
        ("field set: the legacy annotation is not read", false, vec![],
            ing().class("other").annotate(LEGACY_CLASS, CLASS), false),
        ("field set: watch-without-class does not apply", true, vec![ours("mine", true)], ing().class("other"), false),
        ("legacy annotation names the flag", false, vec![], legacy(CLASS), true),
        ("legacy annotation names another class", false, vec![], legacy("nginx"), false),
        ("legacy annotation, another class, our default", false, vec![ours("mine", true)], legacy("nginx"), false),
        ("legacy annotation, another class, watch-without-class", true, vec![], legacy("nginx"), false),
        ("no class, no default class, no flag", false, vec![ours("mine", false)], ing().no_class(), false),
        ("no class, watch-without-class", true, vec![], ing().no_class(), true),
        ("no class, our class is the default", false, vec![ours("mine", true), theirs("nginx", false)],
            ing().no_class(), true),
        ("no class, only another controller's default", false, vec![ours("mine", false), theirs("nginx", true)],
            ing().no_class(), false),
    ];
    for (case, watch_without_class, classes, ingress, served) in cases {
        let mut objects = backends("default", &["web"]);
        objects.extend(classes);
        objects.push(
            ingress
                .rule(Some("foo.com"), &[("/", "Prefix", "web", "80")])
                .build(),
        );
        let options = CompileOptions {
            watch_without_class,
            ..options()
        };
        let c = run_with(&objects, &options);
        let want: Vec<String> = if served {
            vec!["default/ing".into()]
        } else {
            vec![]
        };
        assert_eq!(keys(&c), want, "{case}");
        let want = served.then_some("default/web:80");
        assert_eq!(hit(&c, "foo.com", "/").as_deref(), want, "{case}");
        assert!(c.problems.is_empty(), "{case}: {:#?}", c.problems);
    }
}

// ---------------------------------------------------------------- 2. hosts

#[test]
fn hosts_exact_wildcard_and_catch_all() {
    let objects = [
        backends("default", &["foo", "api", "wild", "other", "bar", "any"]),
        vec![
            mk_ingress("default", "hosts")
                .rule(Some("Foo.com"), &[("/", "Prefix", "foo", "80")])
                .rule(Some("api.foo.com"), &[("/v1", "Prefix", "api", "80")])
                .rule(Some("*.foo.com"), &[("/", "Prefix", "wild", "80")])
                .rule(Some("*.other.com"), &[("/", "Prefix", "other", "80")])
                .rule(Some("bar.com"), &[("/only", "Prefix", "bar", "80")])
                .rule(None, &[("/any", "Prefix", "any", "80")])
                .build(),
        ],
    ]
    .concat();
    let c = run(&objects);
    // An uppercase host is accepted.
    expect_problems(&c, &[]);
    #[rustfmt::skip]
    check_routes(&c, &[
        // Exact hosts: case-insensitive; port and trailing dot ignored.
        ("foo.com", "/", Some("default/foo:80")),
        ("FOO.COM:8000", "/x", Some("default/foo:80")),
        ("Foo.Com.", "/", Some("default/foo:80")),
        ("xfoo.com", "/", None),
        // Host rules beat the catch-all even where its path is longer.
        ("foo.com", "/any", Some("default/foo:80")),
        // A wildcard covers exactly one more label.
        ("bar.foo.com", "/", Some("default/wild:80")),
        ("BAR.Foo.com:443", "/x", Some("default/wild:80")),
        ("sub.other.com", "/", Some("default/other:80")),
        ("baz.bar.foo.com", "/", None),
        ("other.com", "/", None),
        ("baz.bar.foo.com", "/any", Some("default/any:80")),
        ("other.com", "/any/x", Some("default/any:80")),
        // The exact host first, then its wildcard when no exact path matches.
        ("api.foo.com", "/v1/users", Some("default/api:80")),
        ("api.foo.com", "/", Some("default/wild:80")),
        // The host matches but none of its paths: the catch-all rules.
        ("bar.com", "/only/x", Some("default/bar:80")),
        ("bar.com", "/any", Some("default/any:80")),
        ("bar.com", "/", None),
        // Other hosts only get the catch-all rules.
        ("unknown.org", "/any", Some("default/any:80")),
        ("unknown.org", "/anything", None),
        ("", "/any", Some("default/any:80")),
    ]);
}

// ---------------------------------------------------------------- 3. paths

#[test]
fn path_types_and_precedence() {
    let names = [
        "root",
        "exact",
        "case",
        "aaa",
        "bbb",
        "impl",
        "both-prefix",
        "both-exact",
    ];
    // Declared in an order that is not the precedence order.
    #[rustfmt::skip]
    let rules: &[PathRow] = &[
        ("/", "Prefix", "root", "80"),
        ("/exact", "Exact", "exact", "80"),
        ("/Case", "Exact", "case", "80"),
        ("/aaa", "Prefix", "aaa", "80"),
        ("/aaa/bbb/", "Prefix", "bbb", "80"),
        ("/impl", "ImplementationSpecific", "impl", "80"),
        ("/both", "Prefix", "both-prefix", "80"),
        ("/both", "Exact", "both-exact", "80"),
    ];
    let objects = [
        backends("default", &names),
        vec![
            mk_ingress("default", "paths")
                .rule(Some("p.com"), rules)
                .build(),
        ],
    ]
    .concat();
    let c = run(&objects);
    expect_problems(&c, &[]);
    #[rustfmt::skip]
    let cases = [
        ("/", "root"),
        ("/anything", "root"),
        // Exact: literal and case-sensitive.
        ("/exact", "exact"),
        ("/exact/", "root"),
        ("/exact/x", "root"),
        ("/EXACT", "root"),
        ("/Case", "case"),
        ("/case", "root"),
        // Prefix: whole path elements, case-sensitive.
        ("/aaa", "aaa"),
        ("/aaa/", "aaa"),
        ("/aaa/ccc", "aaa"),
        ("/aaaccc", "root"),
        ("/AAA", "root"),
        // The longest prefix wins; a trailing slash in a rule changes nothing.
        ("/aaa/bbb", "bbb"),
        ("/aaa/bbb/", "bbb"),
        ("/aaa/bbb/ccc", "bbb"),
        ("/aaa/bbbc", "aaa"),
        // ImplementationSpecific behaves as Prefix.
        ("/impl", "impl"),
        ("/impl/x", "impl"),
        ("/implx", "root"),
        // Equal paths: Exact before Prefix.
        ("/both", "both-exact"),
        ("/both/", "both-prefix"),
        ("/both/x", "both-prefix"),
    ];
    let ids: Vec<String> = cases
        .iter()
        .map(|(_, svc)| format!("default/{svc}:80"))
        .collect();
    let table: Vec<_> = cases
        .iter()
        .zip(&ids)
        .map(|(&(path, _), id)| ("p.com", path, Some(id.as_str())))
        .collect();
    check_routes(&c, &table);
}

// ---------------------------------------------------------------- 4. merging

#[test]
fn rules_for_one_host_merge_across_ingresses() {
    let objects = [
        backends("default", &["a", "b"]),
        backends("shop", &["c"]),
        vec![
            mk_ingress("default", "one")
                .created(OLD)
                .rule(Some("foo.com"), &[("/a", "Prefix", "a", "80")])
                .build(),
            mk_ingress("default", "two")
                .created(MID)
                .rule(Some("FOO.com"), &[("/b", "Prefix", "b", "80")])
                .build(),
            // Same host and path but another type: another rule, no conflict.
            mk_ingress("shop", "three")
                .created(NEW)
                .rule(Some("foo.com"), &[("/a", "Exact", "c", "80")])
                .build(),
        ],
    ]
    .concat();
    let c = run(&objects);
    expect_problems(&c, &[]);
    #[rustfmt::skip]
    check_routes(&c, &[
        ("foo.com", "/a", Some("shop/c:80")),
        ("foo.com", "/a/x", Some("default/a:80")),
        ("foo.com", "/b", Some("default/b:80")),
        ("foo.com", "/c", None),
    ]);
    assert_eq!(keys(&c), ["default/one", "default/two", "shop/three"]);
    assert_eq!(c.table.generation(), 7);
}

#[test]
fn conflicts_go_to_the_oldest_ingress() {
    // An Ingress as (namespace, name, created, path, service); each also has
    // a rule of its own at /own-<name>.
    type Side<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str);
    // (case, first, second, winning backend, keeper, loser)
    #[rustfmt::skip]
    let cases: Vec<(&str, Side, Side, &str, &str, &str)> = vec![
        ("older wins, whatever the names",
            ("default", "alpha", NEW, "/api", "young"), ("default", "zeta", OLD, "/api", "old"),
            "default/old:80", "default/zeta", "default/alpha"),
        ("older wins, whatever the namespaces",
            ("a", "x", NEW, "/api", "young"), ("z", "y", OLD, "/api", "old"),
            "z/old:80", "z/y", "a/x"),
        ("same age: namespace first",
            ("b", "a", MID, "/api", "one"), ("a", "z", MID, "/api", "two"),
            "a/two:80", "a/z", "b/a"),
        ("same age, same namespace: name first",
            ("default", "beta", MID, "/api", "one"), ("default", "alpha", MID, "/api", "two"),
            "default/two:80", "default/alpha", "default/beta"),
        ("Prefix /api/ and /api are the same rule",
            ("default", "first", OLD, "/api/", "one"), ("default", "second", NEW, "/api", "two"),
            "default/one:80", "default/first", "default/second"),
    ];
    for (case, first, second, winner, keeper, loser) in cases {
        let mut objects = Vec::new();
        for (ns, name, created, path, svc) in [first, second] {
            objects.extend(backends(ns, &[svc]));
            let own = format!("/own-{name}");
            let rules = [
                (path, "Prefix", svc, "80"),
                (own.as_str(), "Prefix", svc, "80"),
            ];
            objects.push(
                mk_ingress(ns, name)
                    .created(created)
                    .rule(Some("foo.com"), &rules)
                    .build(),
            );
        }
        let c = run(&objects);
        assert_eq!(
            hit(&c, "foo.com", "/api").as_deref(),
            Some(winner),
            "{case}"
        );
        assert_eq!(
            hit(&c, "foo.com", "/api/x").as_deref(),
            Some(winner),
            "{case}"
        );
        expect_problems(&c, &[(Severity::Rejected, loser, "conflicts")]);
        let p = &c.problems[0];
        assert_eq!(p.kind, "Ingress", "{case}");
        assert!(p.message.contains(keeper), "{case}: {p}");
        // The loser keeps its other rules.
        for (ns, name, _, _, svc) in [first, second] {
            let want = format!("{ns}/{svc}:80");
            assert_eq!(
                hit(&c, "foo.com", &format!("/own-{name}")),
                Some(want),
                "{case}"
            );
        }
        assert_eq!(keys(&c), [keeper, loser], "{case}: oldest first");
    }
}

#[test]
fn the_same_rule_to_the_same_backend_is_not_a_conflict() {
    let rule: &[PathRow] = &[("/api", "Prefix", "web", "80")];
    let objects = [
        backends("default", &["web"]),
        vec![
            mk_ingress("default", "one")
                .created(OLD)
                .rule(Some("foo.com"), rule)
                .build(),
            mk_ingress("default", "two")
                .created(NEW)
                .rule(Some("foo.com"), rule)
                .rule(Some("FOO.COM"), &[("/api/", "Prefix", "web", "80")])
                .build(),
        ],
    ]
    .concat();
    let c = run(&objects);
    expect_problems(&c, &[]);
    check_routes(&c, &[("foo.com", "/api", Some("default/web:80"))]);
    assert_eq!(c.table.len(), 1);
}

#[test]
fn a_port_by_name_and_by_number_is_the_same_backend() {
    let objects = [
        backends("default", &["web"]),
        vec![
            mk_ingress("default", "by-number")
                .created(OLD)
                .rule(Some("foo.com"), &[("/api", "Prefix", "web", "80")])
                .build(),
            mk_ingress("default", "by-name")
                .created(NEW)
                .rule(Some("foo.com"), &[("/api", "Prefix", "web", "http")])
                .rule(Some("bar.com"), &[("/", "Prefix", "web", "http")])
                .build(),
        ],
    ]
    .concat();
    let c = run(&objects);
    expect_problems(&c, &[]);
    let a = route(&c, "foo.com", "/api").unwrap();
    let b = route(&c, "bar.com", "/").unwrap();
    assert!(Arc::ptr_eq(&a.backend, &b.backend), "{a:?} vs {b:?}");
    assert_eq!(b.backend.id, "default/web:80");
}

// ---------------------------------------------------------------- 5. default backend

#[test]
fn default_backend_serves_what_no_rule_matches() {
    let objects = [
        backends("default", &["a", "fallback"]),
        vec![
            mk_ingress("default", "ing")
                .rule(Some("foo.com"), &[("/a", "Prefix", "a", "80")])
                .default_backend("fallback", "80")
                .build(),
        ],
    ]
    .concat();
    let c = run(&objects);
    expect_problems(&c, &[]);
    #[rustfmt::skip]
    check_routes(&c, &[
        ("foo.com", "/a", Some("default/a:80")),
        ("foo.com", "/b", Some("default/fallback:80")),
        ("other.com", "/", Some("default/fallback:80")),
        ("", "/a", Some("default/fallback:80")),
    ]);
}

#[test]
fn an_ingress_with_only_a_default_backend_is_valid() {
    let objects = [
        backends("default", &["fallback"]),
        vec![
            mk_ingress("default", "ing")
                .default_backend("fallback", "http")
                .build(),
        ],
    ]
    .concat();
    let c = run(&objects);
    expect_problems(&c, &[]);
    check_routes(&c, &[("any.com", "/x", Some("default/fallback:80"))]);
}

#[test]
fn the_oldest_default_backend_wins() {
    let objects = [
        backends("default", &["d-old", "d-mid", "d-new", "r"]),
        vec![
            mk_ingress("default", "a-new")
                .created(NEW)
                .default_backend("d-new", "80")
                .build(),
            mk_ingress("default", "z-old")
                .created(OLD)
                .default_backend("d-old", "80")
                .build(),
            mk_ingress("default", "m-mid")
                .created(MID)
                .rule(Some("foo.com"), &[("/r", "Prefix", "r", "80")])
                .default_backend("d-mid", "80")
                .build(),
        ],
    ]
    .concat();
    let c = run(&objects);
    #[rustfmt::skip]
    expect_problems(&c, &[
        (Severity::Warning, "default/a-new", "older Ingress default/z-old"),
        (Severity::Warning, "default/m-mid", "older Ingress default/z-old"),
    ]);
    #[rustfmt::skip]
    check_routes(&c, &[
        ("foo.com", "/", Some("default/d-old:80")),
        ("foo.com", "/r", Some("default/r:80")),
    ]);
}

#[test]
fn no_default_backend_and_no_match_is_none() {
    let objects = [
        backends("default", &["web"]),
        vec![
            mk_ingress("default", "ing")
                .rule(Some("foo.com"), &[("/a", "Exact", "web", "80")])
                .build(),
        ],
    ]
    .concat();
    let c = run(&objects);
    check_routes(&c, &[("foo.com", "/b", None), ("bar.com", "/a", None)]);
    assert!(c.table.default_backend().is_none());
    // Nothing at all compiles to an empty table.
    assert!(run(&[]).table.is_empty());
}

#[test]
fn an_ingress_class_object_decides_over_the_flag_name() {
    // Another controller owns an IngressClass named like our flag: not ours.
    let ing = mk_ingress("shop", "web").rule(Some("x.com"), &[("/", "Prefix", "web", "80")]);
    let objects = [
        backends("shop", &["web"]),
        vec![
            mk_class(CLASS, OTHER_CONTROLLER, false),
            ing.clone().build(),
        ],
    ]
    .concat();
    let c = run(&objects);
    assert!(keys(&c).is_empty(), "{:?}", keys(&c));

    // The same IngressClass owned by us: ours.
    let objects = [
        backends("shop", &["web"]),
        vec![mk_class(CLASS, CONTROLLER_NAME, false), ing.build()],
    ]
    .concat();
    assert_eq!(keys(&run(&objects)), ["shop/web"]);
}
