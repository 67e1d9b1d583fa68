//! The annotation list against its docs table, and value parsing.

use std::collections::BTreeMap;

use super::list::{KNOWN, Known};
use super::*;

/// `docs/annotations.md`, the table users read.
const DOCS: &str = include_str!("../../../docs/annotations.md");

/// The status as the docs table writes it.
fn status_text(status: Status) -> String {
    match status {
        Status::Honoured => "honoured".into(),
        Status::Ignored => "accepted without effect".into(),
        Status::OnlyAs(values) => {
            let values: Vec<String> = values.iter().map(|v| format!("`{v}`")).collect();
            format!("accepted only as {}", values.join(", "))
        }
        Status::Refused => "refused".into(),
    }
}

/// The name as the docs table writes it: bare for names read under both
/// prefixes, with its prefix for RustStrom's own.
fn name_text(known: &Known) -> String {
    if known.nginx {
        format!("`{}`", known.name)
    } else {
        format!("`{RUSTSTROM}{}`", known.name)
    }
}

#[test]
fn the_docs_table_lists_every_name_with_its_status() {
    let mut documented = BTreeMap::new();
    for line in DOCS.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | name | status | why | type | default | example |
        if cells.len() == 8 && cells[1].starts_with('`') {
            assert!(!cells[3].is_empty(), "no reason given for {}", cells[1]);
            let before = documented.insert(cells[1].to_string(), cells[2].to_string());
            assert!(before.is_none(), "{} is documented twice", cells[1]);
        }
    }
    let mut code = BTreeMap::new();
    for known in KNOWN {
        let before = code.insert(name_text(known), status_text(known.status));
        assert!(before.is_none(), "{} is listed twice", known.name);
    }
    let missing: Vec<_> = code
        .iter()
        .filter(|(k, v)| documented.get(*k) != Some(v))
        .collect();
    let extra: Vec<_> = documented
        .iter()
        .filter(|(k, v)| code.get(*k) != Some(v))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "docs/annotations.md differs from the code's list.\nin the code, not so in the docs: {missing:#?}\nin the docs, not so in the code: {extra:#?}"
    );
}

fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn parsed(pairs: &[(&str, &str)]) -> Result<Parsed, String> {
    parse(
        Some(&annotations(pairs)),
        "default",
        "default/test#",
        &Snapshot::default(),
    )
}

#[test]
fn statuses_decide_acceptance() {
    // (annotations, Ok(number of notices) or Err(part of the reason))
    type Case<'a> = (&'a [(&'a str, &'a str)], Result<usize, &'a str>);
    let cases: &[Case] = &[
        (&[], Ok(0)),
        (
            &[("kubectl.kubernetes.io/last-applied-configuration", "{}")],
            Ok(0),
        ),
        (
            &[("nginx.ingress.kubernetes.io/proxy-buffering", "on")],
            Ok(1),
        ),
        (&[("ruststrom.io/proxy-buffer-size", "8k")], Ok(1)),
        (&[("nginx.ingress.kubernetes.io/not-a-thing", "x")], Ok(1)),
        (
            &[("nginx.ingress.kubernetes.io/enable-cors", "false")],
            Ok(0),
        ),
        (
            &[("nginx.ingress.kubernetes.io/cors-allow-origin", "*")],
            Ok(1),
        ),
        (&[("nginx.ingress.kubernetes.io/limit-rate", "100")], Ok(1)),
        (
            &[("nginx.ingress.kubernetes.io/limit-allowlist", "10.0.0.0/8")],
            Ok(1),
        ),
        (
            &[("nginx.ingress.kubernetes.io/backend-protocol", "HTTP")],
            Ok(1),
        ),
        (
            &[("nginx.ingress.kubernetes.io/ssl-redirect", "false")],
            Ok(0),
        ),
        (
            &[("nginx.ingress.kubernetes.io/auth-snippet", "deny all;")],
            Err("nginx.ingress.kubernetes.io/auth-snippet is refused"),
        ),
        (
            &[("nginx.ingress.kubernetes.io/auth-url", "http://auth/")],
            Ok(0),
        ),
        (
            &[
                ("nginx.ingress.kubernetes.io/auth-url", "http://auth/"),
                ("nginx.ingress.kubernetes.io/auth-keepalive", "10"),
            ],
            Ok(1),
        ),
        (
            &[("nginx.ingress.kubernetes.io/auth-signin", "https://login/")],
            Ok(1),
        ),
        (
            &[("nginx.ingress.kubernetes.io/auth-url", "http://auth/$nope")],
            Err("nginx.ingress.kubernetes.io/auth-url: \"http://auth/$nope\" uses $nope"),
        ),
        (
            &[
                ("nginx.ingress.kubernetes.io/auth-url", "http://auth/"),
                (
                    "nginx.ingress.kubernetes.io/auth-proxy-set-headers",
                    "missing",
                ),
            ],
            Err("names ConfigMap default/missing, which is not found"),
        ),
        (
            &[("nginx.ingress.kubernetes.io/auth-type", "basic")],
            Err("auth-type basic needs auth-secret"),
        ),
        (
            &[("nginx.ingress.kubernetes.io/auth-type", "digest")],
            Err("auth-type \"digest\" is refused"),
        ),
        (
            &[("nginx.ingress.kubernetes.io/auth-secret", "users")],
            Ok(1),
        ),
        (&[("nginx.ingress.kubernetes.io/limit-rps", "5")], Ok(0)),
        (
            &[("nginx.ingress.kubernetes.io/global-rate-limit", "5")],
            Err("global-rate-limit is refused"),
        ),
        (
            &[(
                "nginx.ingress.kubernetes.io/configuration-snippet",
                "deny all;",
            )],
            Err("configuration-snippet is refused"),
        ),
        (
            &[("nginx.ingress.kubernetes.io/some-future-snippet", "x")],
            Err("some-future-snippet is refused"),
        ),
        (
            &[("nginx.ingress.kubernetes.io/modsecurity-anything", "x")],
            Err("is refused"),
        ),
        (
            &[("nginx.ingress.kubernetes.io/lua-resty-waf", "active")],
            Err("lua-resty-waf is refused"),
        ),
        (
            &[("nginx.ingress.kubernetes.io/enable-modsecurity", "true")],
            Err("enable-modsecurity: \"true\" is refused"),
        ),
        (
            &[("nginx.ingress.kubernetes.io/backend-protocol", "GRPC")],
            Err("backend-protocol: \"GRPC\" is refused"),
        ),
        (
            &[("ruststrom.io/whitelist-source-rnage", "10.0.0.0/8")],
            Err("ruststrom.io/whitelist-source-rnage is unknown"),
        ),
        (
            &[("ruststrom.io/auth-snippet", "deny all;")],
            Err("ruststrom.io/auth-snippet is refused"),
        ),
        // RustStrom's own names are not read under nginx's prefix.
        (&[("nginx.ingress.kubernetes.io/hsts", "max-age=1")], Ok(1)),
        (&[("ruststrom.io/hsts", "max-age=1")], Ok(0)),
    ];
    for (pairs, want) in cases {
        let got = parsed(pairs).map(|p| p.notices.len());
        match (want, &got) {
            (Ok(n), Ok(got)) => assert_eq!(got, n, "{pairs:?}"),
            (Err(part), Err(reason)) => assert!(reason.contains(part), "{pairs:?}: {reason}"),
            _ => panic!("{pairs:?}: want {want:?}, got {got:?}"),
        }
    }
}

#[test]
fn values_that_do_not_parse_reject_naming_the_annotation() {
    for (key, value) in [
        ("ruststrom.io/ssl-redirect", "nope"),
        ("nginx.ingress.kubernetes.io/force-ssl-redirect", "yes"),
        ("ruststrom.io/hsts", "forever"),
        (
            "nginx.ingress.kubernetes.io/whitelist-source-range",
            "10.0.0.0/8, 300.1.1.1",
        ),
        ("nginx.ingress.kubernetes.io/allowlist-source-range", " , "),
        (
            "nginx.ingress.kubernetes.io/denylist-source-range",
            "10.0.0.0/33",
        ),
        ("nginx.ingress.kubernetes.io/proxy-body-size", "8mb"),
        ("nginx.ingress.kubernetes.io/proxy-body-size", "-1"),
        (
            "nginx.ingress.kubernetes.io/proxy-body-size",
            "99999999999999999g",
        ),
        ("nginx.ingress.kubernetes.io/proxy-body-size", ""),
        ("nginx.ingress.kubernetes.io/limit-rps", "abc"),
        ("nginx.ingress.kubernetes.io/limit-rps", "-1"),
        ("nginx.ingress.kubernetes.io/limit-rps", "2000000"),
        ("nginx.ingress.kubernetes.io/limit-rpm", "1.5"),
        ("ruststrom.io/limit-connections", "many"),
        ("nginx.ingress.kubernetes.io/limit-burst-multiplier", "-5"),
        ("nginx.ingress.kubernetes.io/limit-whitelist", "10.0.0.0/33"),
        ("nginx.ingress.kubernetes.io/enable-cors", "yes"),
        ("ruststrom.io/compression", "gzip, lzma"),
        ("ruststrom.io/compression", "x-gzip"),
        ("ruststrom.io/compression", ""),
        ("nginx.ingress.kubernetes.io/custom-http-errors", "404,399"),
        ("nginx.ingress.kubernetes.io/custom-http-errors", "600"),
        ("nginx.ingress.kubernetes.io/custom-http-errors", "40x"),
        ("nginx.ingress.kubernetes.io/custom-http-errors", " , "),
        (
            "nginx.ingress.kubernetes.io/default-backend",
            "other/errors",
        ),
        ("nginx.ingress.kubernetes.io/default-backend", "Errors"),
    ] {
        let reason = parsed(&[(key, value)]).unwrap_err();
        assert!(
            reason.starts_with(&format!("annotation {key}: ")),
            "{reason}"
        );
    }
}

#[test]
fn compression_and_error_codes() {
    use crate::model::{Encoding, Encodings};
    for (value, want) in [
        ("true", Encodings::ALL),
        ("on", Encodings::ALL),
        ("false", Encodings::NONE),
        ("OFF", Encodings::NONE),
    ] {
        let p = parsed(&[("ruststrom.io/compression", value)]).unwrap();
        assert_eq!(p.features.unwrap().compression, Some(want), "{value}");
    }
    let p = parsed(&[("ruststrom.io/compression", "gzip, br")]).unwrap();
    let set = p.features.unwrap().compression.unwrap();
    assert!(set.contains(Encoding::Gzip) && set.contains(Encoding::Brotli));
    assert!(!set.contains(Encoding::Zstd));
    // Only under ruststrom.io/: ingress-nginx has no such annotation.
    let p = parsed(&[("nginx.ingress.kubernetes.io/compression", "true")]).unwrap();
    assert!(p.features.is_none());

    let p = parsed(&[(
        "nginx.ingress.kubernetes.io/custom-http-errors",
        "404, 503,",
    )])
    .unwrap();
    let codes = p.features.unwrap().custom_http_errors.unwrap();
    for (code, want) in [(404, true), (503, true), (500, false), (200, false)] {
        assert_eq!(codes.contains(code), want, "{code}");
    }
    let p = parsed(&[("nginx.ingress.kubernetes.io/default-backend", " errors ")]).unwrap();
    assert_eq!(p.default_backend.unwrap().1, "errors");
}

#[test]
fn ruststrom_prefix_wins_over_nginx() {
    let p = parsed(&[
        ("nginx.ingress.kubernetes.io/ssl-redirect", "true"),
        ("ruststrom.io/ssl-redirect", "false"),
        ("nginx.ingress.kubernetes.io/proxy-body-size", "1m"),
        ("ruststrom.io/proxy-body-size", "2k"),
    ])
    .unwrap();
    assert!(!p.https.ssl_redirect);
    assert_eq!(p.features.unwrap().max_body, Some(2048));
    // The losing prefix is not read at all: its value does not matter.
    assert!(
        parsed(&[
            ("nginx.ingress.kubernetes.io/ssl-redirect", "maybe"),
            ("ruststrom.io/ssl-redirect", "false"),
        ])
        .is_ok_and(|p| !p.https.ssl_redirect)
    );
}

#[test]
fn typed_values() {
    let p = parsed(&[
        (
            "nginx.ingress.kubernetes.io/whitelist-source-range",
            "10.0.0.0/8, 192.168.1.7,fd00::/8",
        ),
        (
            "nginx.ingress.kubernetes.io/denylist-source-range",
            "10.1.2.3/16",
        ),
        ("nginx.ingress.kubernetes.io/proxy-body-size", "8M"),
    ])
    .unwrap();
    let f = p.features.unwrap();
    let ranges = f.source_ranges.as_ref().unwrap();
    let shown: Vec<String> = ranges.allow.iter().map(ToString::to_string).collect();
    assert_eq!(shown, ["10.0.0.0/8", "192.168.1.7/32", "fd00::/8"]);
    assert_eq!(ranges.deny[0].to_string(), "10.1.0.0/16");
    assert_eq!(f.max_body, Some(8 << 20));
    // allowlist- is the name, whitelist- its older alias: the name wins.
    let p = parsed(&[
        (
            "nginx.ingress.kubernetes.io/whitelist-source-range",
            "10.0.0.0/8",
        ),
        (
            "nginx.ingress.kubernetes.io/allowlist-source-range",
            "127.0.0.1",
        ),
    ])
    .unwrap();
    let f = p.features.unwrap();
    assert_eq!(f.source_ranges.as_ref().unwrap().allow.len(), 1);
    for (value, want) in [
        ("0", None),
        ("1", Some(1)),
        ("512k", Some(512 << 10)),
        ("1g", Some(1 << 30)),
        ("10b", Some(10)),
    ] {
        assert_eq!(body_size(value), Ok(want), "{value}");
    }
    // Nothing asked: the routes carry no features at all.
    let p = parsed(&[("nginx.ingress.kubernetes.io/proxy-body-size", "0")]).unwrap();
    assert!(p.features.is_none());
}

#[test]
fn hsts_values() {
    for ok in [
        "max-age=31536000",
        "max-age=0",
        "max-age=600; includeSubDomains",
        "max-age=600; includeSubDomains; preload",
    ] {
        assert_eq!(hsts(ok).unwrap(), ok);
    }
    for bad in [
        "",
        "max-age=",
        "max-age=soon",
        "includeSubDomains",
        "max-age=1; evil",
    ] {
        assert!(hsts(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn booleans_as_go_parses_them() {
    for (v, want) in [
        ("true", Some(true)),
        ("False", Some(false)),
        ("1", Some(true)),
        ("f", Some(false)),
        ("yes", None),
        ("", None),
    ] {
        assert_eq!(parse_bool(v), want, "{v:?}");
    }
}

#[test]
fn redirects() {
    let get = |pairs: &[(&str, &str)]| {
        let f = parsed(pairs).unwrap().features.unwrap();
        let r = f.redirect.clone().unwrap();
        (r.status.as_u16(), r.location.to_str().unwrap().to_string())
    };
    let p = "nginx.ingress.kubernetes.io/";
    let url = "https://example.com/new?a=1&b=2";
    assert_eq!(
        get(&[(&format!("{p}permanent-redirect"), url)]),
        (301, url.into())
    );
    assert_eq!(
        get(&[
            (&format!("{p}permanent-redirect"), url),
            (&format!("{p}permanent-redirect-code"), "308")
        ]),
        (308, url.into())
    );
    assert_eq!(
        get(&[(&format!("{p}temporal-redirect"), url)]),
        (302, url.into())
    );
    // temporal- wins over permanent-.
    assert_eq!(
        get(&[
            (&format!("{p}permanent-redirect"), "https://a.example/"),
            (&format!("{p}temporal-redirect"), url),
            (&format!("{p}temporal-redirect-code"), "307"),
        ]),
        (307, url.into())
    );
    for (name, value) in [
        ("permanent-redirect", "ftp://example.com/"),
        ("permanent-redirect", "/relative"),
        ("permanent-redirect", "https://example.com$request_uri"),
        ("permanent-redirect", "https://user@example.com/"),
        ("permanent-redirect", "https://example.com/a b"),
        ("temporal-redirect", "https://"),
        ("permanent-redirect-code", "200"),
        ("permanent-redirect-code", "309"),
        ("temporal-redirect-code", "308"),
        ("temporal-redirect-code", "soon"),
        ("app-root", "app"),
        ("app-root", "//evil.example/"),
        ("app-root", "https://example.com/app"),
        ("app-root", "/a\"b"),
    ] {
        let key = format!("{p}{name}");
        let reason = parsed(&[(&key, value)]).unwrap_err();
        assert!(
            reason.starts_with(&format!("annotation {key}: ")),
            "{reason}"
        );
    }
    let f = parsed(&[(&format!("{p}app-root"), "/app?x=1")])
        .unwrap()
        .features
        .unwrap();
    assert_eq!(f.app_root.as_ref().unwrap(), "/app?x=1");
}

#[test]
fn header_annotations() {
    let p = parsed(&[
        (
            "nginx.ingress.kubernetes.io/upstream-vhost",
            "internal.example.com:8080",
        ),
        ("nginx.ingress.kubernetes.io/x-forwarded-prefix", "/api"),
        (
            "ruststrom.io/request-headers",
            r#"{"set": {"X-Env": "prod"}, "remove": ["X-Debug"]}"#,
        ),
        (
            "ruststrom.io/response-headers",
            r#"{"set": {"Cache-Control": "no-store"}}"#,
        ),
    ])
    .unwrap();
    let f = p.features.unwrap();
    assert_eq!(
        f.upstream_vhost.as_ref().unwrap(),
        "internal.example.com:8080"
    );
    assert_eq!(f.forwarded_prefix.as_ref().unwrap(), "/api");
    let req = f.request_headers.as_ref().unwrap();
    assert_eq!(req.set[0].0, "x-env");
    assert_eq!(req.remove[0], "x-debug");
    assert_eq!(f.response_headers.as_ref().unwrap().set[0].1, "no-store");
    for (key, value) in [
        ("nginx.ingress.kubernetes.io/upstream-vhost", "$service.svc"),
        ("nginx.ingress.kubernetes.io/upstream-vhost", "user@host"),
        ("nginx.ingress.kubernetes.io/upstream-vhost", "a/b"),
        ("nginx.ingress.kubernetes.io/x-forwarded-prefix", "/$1"),
        ("nginx.ingress.kubernetes.io/x-forwarded-prefix", "/a b"),
        ("ruststrom.io/request-headers", "X-Env: prod"),
        (
            "ruststrom.io/request-headers",
            r#"{"add": {"X-Env": "prod"}}"#,
        ),
        (
            "ruststrom.io/request-headers",
            r#"{"set": {"Bad Name": "x"}}"#,
        ),
        (
            "ruststrom.io/request-headers",
            r#"{"set": {"X-Env": "line\nbreak"}}"#,
        ),
        (
            "ruststrom.io/request-headers",
            r#"{"set": {"X-Forwarded-For": "1.2.3.4"}}"#,
        ),
        ("ruststrom.io/request-headers", r#"{"remove": ["Host"]}"#),
        (
            "ruststrom.io/request-headers",
            r#"{"set": {"X-A": "1"}, "remove": ["x-a"]}"#,
        ),
        (
            "ruststrom.io/response-headers",
            r#"{"set": {"Transfer-Encoding": "chunked"}}"#,
        ),
        ("ruststrom.io/response-headers", r#"{}"#),
    ] {
        let reason = parsed(&[(key, value)]).unwrap_err();
        assert!(
            reason.starts_with(&format!("annotation {key}: ")),
            "{reason}"
        );
    }
    // The forwarding headers are the proxy's on requests only.
    assert!(
        parsed(&[(
            "ruststrom.io/response-headers",
            r#"{"set": {"X-Real-IP": "x"}}"#
        )])
        .is_ok()
    );
}

#[test]
fn named_objects_are_the_secrets_and_config_maps_of_the_ingress_namespace() {
    let ingress: Ingress = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "shop", "annotations": {
            "nginx.ingress.kubernetes.io/auth-secret": "users",
            "ruststrom.io/auth-secret": "shop/admins",
            "nginx.ingress.kubernetes.io/custom-headers": "shop/headers",
            "nginx.ingress.kubernetes.io/auth-proxy-set-headers": "other/headers",
        }}
    }))
    .unwrap();
    let named = named_objects(&ingress);
    // ruststrom.io/ wins; another namespace is never watched (the Ingress
    // is rejected for it when compiled).
    assert_eq!(named.secrets, [ObjectKey::new("shop", "admins")]);
    assert_eq!(named.config_maps, [ObjectKey::new("shop", "headers")]);
    assert_eq!(
        same_namespace("a/b/c", "a").unwrap_err(),
        "\"a/b/c\" is not a name or namespace/name"
    );
    assert!(same_namespace("other/x", "shop").is_err());
    assert_eq!(
        same_namespace(" x ", "shop").unwrap(),
        ObjectKey::new("shop", "x")
    );
}

#[test]
fn bad_cors_values_reject_naming_the_annotation() {
    for (name, value) in [
        ("cors-allow-origin", "example.com"),
        ("cors-allow-origin", "https://$host"),
        ("cors-allow-methods", "GET;DELETE"),
        ("cors-allow-headers", "X-A: 1"),
        ("cors-expose-headers", "X-\"A"),
        ("cors-allow-credentials", "sure"),
        ("cors-max-age", "-1"),
    ] {
        let key = format!("nginx.ingress.kubernetes.io/{name}");
        let reason = parsed(&[
            ("nginx.ingress.kubernetes.io/enable-cors", "true"),
            (&key, value),
        ])
        .unwrap_err();
        assert!(
            reason.starts_with(&format!("annotation {key}: ")),
            "{reason}"
        );
    }
}

#[test]
fn limits_and_cors_are_typed() {
    use crate::model::Origins;
    let p = parsed(&[
        ("nginx.ingress.kubernetes.io/limit-rps", "10"),
        ("nginx.ingress.kubernetes.io/limit-rpm", "0"),
        ("nginx.ingress.kubernetes.io/limit-burst-multiplier", "3"),
        ("nginx.ingress.kubernetes.io/limit-whitelist", "10.0.0.0/8"),
        ("ruststrom.io/limit-allowlist", "192.0.2.1"),
        ("nginx.ingress.kubernetes.io/enable-cors", "true"),
    ])
    .unwrap();
    let features = p.features.unwrap();
    let limits = features.limits.as_ref().unwrap();
    assert_eq!(limits.allow, vec!["192.0.2.1/32".parse().unwrap()]);
    let settings = limits.zone.settings();
    assert_eq!(settings.rps.map(|r| r.burst), Some(30));
    assert_eq!(settings.rpm, None);
    assert_eq!(settings.connections, None);
    let cors = features.cors.as_ref().unwrap();
    assert_eq!(cors.origins, Origins::Any);
    assert!(cors.credentials);
    assert_eq!(cors.methods, "GET, PUT, POST, DELETE, PATCH, OPTIONS");
    assert_eq!(cors.max_age, "1728000");
    assert_eq!(cors.expose, None);
    // A zero rate is no limit, as in ingress-nginx.
    let p = parsed(&[("nginx.ingress.kubernetes.io/limit-rps", "0")]).unwrap();
    assert!(p.features.is_none());
}

#[test]
fn an_auth_url_names_a_cluster_service_by_its_dns_names() {
    use k8s_openapi::api::core::v1::Service;
    let service = |ns: &str, name: &str, port: i32| -> Arc<Service> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": ns},
                "spec": {"ports": [{"port": port}]}
            }))
            .unwrap(),
        )
    };
    let mut snapshot = Snapshot::default();
    snapshot.services.insert(
        ObjectKey::new("auth", "oauth2-proxy"),
        service("auth", "oauth2-proxy", 4180),
    );
    snapshot.services.insert(
        ObjectKey::new("shop", "authz"),
        service("shop", "authz", 80),
    );
    let target = |url: &str| {
        let template = ext_auth::url_template(url).unwrap();
        service_target(&template, "shop", &snapshot)
    };
    let proxy = Some((ObjectKey::new("auth", "oauth2-proxy"), 4180));
    let authz = Some((ObjectKey::new("shop", "authz"), 80));
    for url in [
        "http://oauth2-proxy.auth.svc.cluster.local:4180/oauth2/auth",
        "http://oauth2-proxy.auth.svc:4180/oauth2/auth",
        "http://OAuth2-Proxy.auth:4180/oauth2/auth?rd=$escaped_request_uri",
    ] {
        assert_eq!(target(url), proxy, "{url}");
    }
    assert_eq!(target("http://authz/check"), authz);
    assert_eq!(target("http://authz.shop.svc.cluster.local/check"), authz);
    for url in [
        // Not a port of the Service, not plain HTTP, a host with variables,
        // not a Service, not a cluster name.
        "http://oauth2-proxy.auth.svc.cluster.local/oauth2/auth",
        "https://oauth2-proxy.auth.svc:4180/oauth2/auth",
        "http://$host/oauth2/auth",
        "http://nothing.auth/check",
        "http://auth.example.com/check",
    ] {
        assert_eq!(target(url), None, "{url}");
    }
}
