//! Annotations through the whole compile: refused and malformed ones reject
//! their Ingress only, notices are warnings, and features stay on the routes
//! of the Ingress that asks for them when several share a host.

use super::*;

const NGINX: &str = "nginx.ingress.kubernetes.io/";

fn nginx(name: &str) -> String {
    format!("{NGINX}{name}")
}

#[test]
fn refused_and_malformed_annotations_reject_only_their_ingress() {
    let objects = [
        backends("shop", &["web", "admin"]),
        vec![
            mk_ingress("shop", "open")
                .rule(Some("shop.com"), &[("/", "Prefix", "web", "80")])
                .build(),
            mk_ingress("shop", "sso")
                .annotate(&nginx("auth-snippet"), "deny all;")
                .rule(Some("shop.com"), &[("/admin", "Prefix", "admin", "80")])
                .build(),
            mk_ingress("shop", "typo")
                .annotate("ruststrom.io/whitelist-source-rnage", "10.0.0.0/8")
                .rule(Some("typo.com"), &[("/", "Prefix", "admin", "80")])
                .build(),
            mk_ingress("shop", "bad")
                .annotate(&nginx("whitelist-source-range"), "10.0.0.0/8,10.0.0.300")
                .rule(Some("bad.com"), &[("/", "Prefix", "admin", "80")])
                .build(),
            mk_ingress("shop", "tuned")
                .annotate(&nginx("proxy-buffering"), "off")
                .rule(Some("tuned.com"), &[("/", "Prefix", "web", "80")])
                .build(),
        ],
    ]
    .concat();
    let c = run(&objects);
    expect_problems(
        &c,
        &[
            (
                Severity::Rejected,
                "shop/sso",
                "nginx.ingress.kubernetes.io/auth-snippet is refused",
            ),
            (
                Severity::Rejected,
                "shop/typo",
                "ruststrom.io/whitelist-source-rnage is unknown",
            ),
            (
                Severity::Rejected,
                "shop/bad",
                "nginx.ingress.kubernetes.io/whitelist-source-range: \"10.0.0.0/8,10.0.0.300\" has \"10.0.0.300\"",
            ),
            (
                Severity::Warning,
                "shop/tuned",
                "proxy-buffering has no effect here",
            ),
        ],
    );
    // /admin is not served at all, so it falls to the open Ingress's "/"
    // rule: that Ingress's own backend, never the protected one.
    check_routes(
        &c,
        &[
            ("shop.com", "/admin", Some("shop/web:80")),
            ("typo.com", "/", None),
            ("bad.com", "/", None),
            ("tuned.com", "/", Some("shop/web:80")),
        ],
    );
    assert!(!c.ingresses.is_empty());
}

#[test]
fn features_attach_to_the_routes_of_their_own_ingress() {
    let objects = [
        backends("shop", &["web", "upload"]),
        vec![
            mk_ingress("shop", "site")
                .rule(Some("shop.com"), &[("/", "Prefix", "web", "80")])
                .build(),
            mk_ingress("shop", "uploads")
                .annotate(&nginx("proxy-body-size"), "8m")
                .annotate(&nginx("whitelist-source-range"), "10.0.0.0/8")
                .rule(Some("shop.com"), &[("/upload", "Prefix", "upload", "80")])
                .build(),
        ],
    ]
    .concat();
    let c = run(&objects);
    expect_problems(&c, &[]);
    assert!(route(&c, "shop.com", "/").unwrap().features.is_none());
    let features = route(&c, "shop.com", "/upload/x")
        .unwrap()
        .features
        .clone()
        .unwrap();
    assert_eq!(features.max_body, Some(8 << 20));
    assert!(features.source_ranges.is_some());
}

#[test]
fn the_same_path_with_other_features_is_a_conflict_not_a_duplicate() {
    let objects = [
        backends("shop", &["web"]),
        vec![
            mk_ingress("shop", "old")
                .created(OLD)
                .rule(Some("shop.com"), &[("/", "Prefix", "web", "80")])
                .build(),
            mk_ingress("shop", "new")
                .created("2021-01-01T00:00:00Z")
                .annotate(&nginx("denylist-source-range"), "192.0.2.0/24")
                .rule(Some("shop.com"), &[("/", "Prefix", "web", "80")])
                .build(),
        ],
    ]
    .concat();
    let c = run(&objects);
    expect_problems(
        &c,
        &[(
            Severity::Rejected,
            "shop/new",
            "conflicts with the older Ingress shop/old",
        )],
    );
}

#[test]
fn from_to_www_redirects_the_twin_name_unless_it_has_rules() {
    let www = "nginx.ingress.kubernetes.io/from-to-www-redirect";
    let objects = [
        backends("shop", &["web"]),
        vec![
            mk_ingress("shop", "bare")
                .annotate(www, "true")
                .rule(Some("shop.com"), &[("/", "Prefix", "web", "80")])
                .rule(Some("*.wild.com"), &[("/", "Prefix", "web", "80")])
                .build(),
            mk_ingress("shop", "with-www")
                .annotate(www, "true")
                .rule(Some("www.blog.com"), &[("/", "Prefix", "web", "80")])
                .build(),
            mk_ingress("shop", "taken")
                .annotate(www, "true")
                .rule(Some("taken.com"), &[("/", "Prefix", "web", "80")])
                .build(),
            mk_ingress("shop", "owner")
                .rule(Some("www.taken.com"), &[("/x", "Prefix", "web", "80")])
                .build(),
            mk_ingress("shop", "off")
                .annotate(www, "false")
                .rule(Some("off.com"), &[("/", "Prefix", "web", "80")])
                .build(),
            mk_ingress("shop", "bad")
                .annotate(www, "sometimes")
                .rule(Some("bad.com"), &[("/", "Prefix", "web", "80")])
                .build(),
        ],
    ]
    .concat();
    let c = run(&objects);
    expect_problems(
        &c,
        &[(
            Severity::Rejected,
            "shop/bad",
            "from-to-www-redirect: \"sometimes\"",
        )],
    );
    assert_eq!(
        c.table.www_redirects(),
        [("blog.com", "www.blog.com"), ("www.shop.com", "shop.com")]
    );
    // A name with rules is served by them; the redirect is only for names
    // nothing else serves.
    assert_eq!(c.table.www_redirect("www.taken.com"), None);
    assert_eq!(c.table.www_redirect("www.shop.com"), Some("shop.com"));
    assert_eq!(c.table.www_redirect("shop.com"), None);
}

/// An Opaque Secret with these `data` keys.
fn opaque(ns: &str, name: &str, data: &[(&str, &str)]) -> Object {
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::Secret;
    let mut secret = Secret::default();
    secret.metadata.namespace = Some(ns.into());
    secret.metadata.name = Some(name.into());
    secret.data = Some(
        data.iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
            .collect(),
    );
    Object::Secret(Arc::new(secret))
}

#[test]
fn basic_auth_reads_its_secret_and_rejects_what_it_cannot_verify() {
    const SHA: &str = "{SHA}/vNB+F2HQ559kaLUZbmHHvZrXpg=";
    let auth = |name: &str, host: &str, pairs: &[(&str, &str)]| {
        let mut ing = mk_ingress("shop", name);
        for (k, v) in pairs {
            ing = ing.annotate(&nginx(k), v);
        }
        ing.rule(Some(host), &[("/", "Prefix", "web", "80")])
            .build()
    };
    let objects = [
        backends("shop", &["web"]),
        vec![
            opaque("shop", "file", &[("auth", &format!("carol:{SHA}\n"))]),
            opaque("shop", "map", &[("carol", SHA), ("dan", SHA)]),
            opaque("shop", "plain", &[("auth", "eve:hunter2\n")]),
            opaque("other", "file", &[("auth", &format!("carol:{SHA}\n"))]),
            auth(
                "file",
                "file.com",
                &[
                    ("auth-type", "basic"),
                    ("auth-secret", "file"),
                    ("auth-realm", "Staff only"),
                ],
            ),
            auth(
                "map",
                "map.com",
                &[
                    ("auth-type", "basic"),
                    ("auth-secret", "shop/map"),
                    ("auth-secret-type", "auth-map"),
                ],
            ),
            auth(
                "missing",
                "missing.com",
                &[("auth-type", "basic"), ("auth-secret", "nope")],
            ),
            auth(
                "elsewhere",
                "elsewhere.com",
                &[("auth-type", "basic"), ("auth-secret", "other/file")],
            ),
            auth(
                "plain",
                "plain.com",
                &[("auth-type", "basic"), ("auth-secret", "plain")],
            ),
            auth(
                "digest",
                "digest.com",
                &[("auth-type", "digest"), ("auth-secret", "file")],
            ),
            auth(
                "quote",
                "quote.com",
                &[
                    ("auth-type", "basic"),
                    ("auth-secret", "file"),
                    ("auth-realm", "say \"hi\""),
                ],
            ),
        ],
    ]
    .concat();
    let c = run(&objects);
    expect_problems(
        &c,
        &[
            (
                Severity::Rejected,
                "shop/missing",
                "auth-secret shop/nope: not found",
            ),
            (
                Severity::Rejected,
                "shop/elsewhere",
                "is in another namespace",
            ),
            (
                Severity::Rejected,
                "shop/plain",
                "line 1 (user \"eve\"): unsupported hash",
            ),
            (Severity::Rejected, "shop/digest", "\"digest\" is refused"),
            (Severity::Rejected, "shop/quote", "auth-realm"),
        ],
    );
    let users = |host: &str| {
        let f = route(&c, host, "/").unwrap().features.clone().unwrap();
        let auth = f.basic_auth.clone().unwrap();
        (
            auth.challenge.to_str().unwrap().to_string(),
            auth.users.keys().cloned().collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        users("file.com"),
        (
            "Basic realm=\"Staff only\"".into(),
            vec!["carol".to_string()]
        )
    );
    assert_eq!(
        users("map.com"),
        (
            "Basic realm=\"\"".into(),
            vec!["carol".to_string(), "dan".to_string()]
        )
    );
    for host in [
        "missing.com",
        "elsewhere.com",
        "plain.com",
        "digest.com",
        "quote.com",
    ] {
        assert!(route(&c, host, "/").is_none(), "{host}");
    }
    // No hash in any message.
    assert!(c.problems.iter().all(|p| !p.message.contains("hunter2")));
}

#[test]
fn server_alias_serves_the_host_routes_unless_the_name_has_rules() {
    let alias = "nginx.ingress.kubernetes.io/server-alias";
    let objects = [
        backends("shop", &["web", "api", "other"]),
        vec![
            mk_ingress("shop", "main")
                .created("2024-01-01T00:00:00Z")
                .annotate(
                    alias,
                    "shop.example, *.shop.example ,taken.example,, shop.example",
                )
                .rule(Some("shop.com"), &[("/", "Prefix", "web", "80")])
                .build(),
            // A second Ingress on the host: its routes are the alias's too.
            mk_ingress("shop", "api")
                .created("2024-01-02T00:00:00Z")
                .rule(Some("shop.com"), &[("/api", "Prefix", "api", "80")])
                .build(),
            // A name with rules is served by them.
            mk_ingress("shop", "owner")
                .created("2024-01-03T00:00:00Z")
                .rule(Some("taken.example"), &[("/", "Prefix", "other", "80")])
                .build(),
            // The host already has aliases from an older Ingress.
            mk_ingress("shop", "late")
                .created("2024-01-04T00:00:00Z")
                .annotate(alias, "late.example")
                .rule(Some("shop.com"), &[("/late", "Prefix", "web", "80")])
                .build(),
            mk_ingress("shop", "bad")
                .annotate(alias, "ok.example,not a host")
                .rule(Some("bad.com"), &[("/", "Prefix", "web", "80")])
                .build(),
        ],
    ]
    .concat();
    let c = run(&objects);
    expect_problems(
        &c,
        &[
            (
                Severity::Warning,
                "shop/late",
                "server-alias for shop.com ignored: the older Ingress shop/main",
            ),
            (
                Severity::Rejected,
                "shop/bad",
                "server-alias: \"ok.example,not a host\"",
            ),
        ],
    );
    check_routes(
        &c,
        &[
            ("shop.example", "/", Some("shop/web:80")),
            ("shop.example", "/api/v1", Some("shop/api:80")),
            ("a.shop.example", "/api", Some("shop/api:80")),
            ("taken.example", "/", Some("shop/other:80")),
            ("late.example", "/", None),
            ("ok.example", "/", None),
        ],
    );
    assert_eq!(
        c.table
            .aliases()
            .iter()
            .map(|(name, to)| format!("{name} -> {to}"))
            .collect::<Vec<_>>(),
        ["shop.example -> shop.com", "*.shop.example -> shop.com"]
    );
    assert_eq!(c.table.tls_host("a.shop.example"), "shop.com");
    assert_eq!(c.table.tls_host("taken.example"), "taken.example");
}
