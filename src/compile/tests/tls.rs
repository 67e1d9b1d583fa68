//! TLS: Secrets become certificates by host, broken Secrets are reported on
//! the Secret and fall back to the default certificate without touching
//! anything else, and the HTTPS annotations become route policy.

use super::*;
use crate::compile::{FORCE_SSL_REDIRECT, HSTS, SSL_REDIRECT};
use crate::model::TlsTable;
use crate::source::ObjectKey;

/// A generated certificate for `names`, PEM, with its key.
pub(super) struct Pem {
    pub(super) cert: String,
    pub(super) key: String,
    der: Vec<u8>,
}

pub(super) fn pem(names: &[&str]) -> Pem {
    pem_until(names, (4096, 1, 1))
}

pub(super) fn pem_until(names: &[&str], (y, m, d): (i32, u8, u8)) -> Pem {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(names).unwrap();
    params.not_after = rcgen::date_time_ymd(y, m, d);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
        der: cert.der().to_vec(),
    }
}

/// A `kubernetes.io/tls` Secret with `data` (base64), as kubectl writes it.
pub(super) fn mk_secret(ns: &str, name: &str, p: &Pem) -> Object {
    mk_secret_raw(
        ns,
        name,
        "kubernetes.io/tls",
        p.cert.as_bytes(),
        p.key.as_bytes(),
    )
}

pub(super) fn mk_secret_raw(ns: &str, name: &str, ty: &str, cert: &[u8], key: &[u8]) -> Object {
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::Secret;
    let mut secret = Secret::default();
    secret.metadata.namespace = Some(ns.into());
    secret.metadata.name = Some(name.into());
    secret.type_ = Some(ty.into());
    secret.data = Some(
        [
            ("tls.crt".to_string(), ByteString(cert.to_vec())),
            ("tls.key".to_string(), ByteString(key.to_vec())),
        ]
        .into(),
    );
    Object::Secret(Arc::new(secret))
}

impl Ing {
    pub(super) fn tls(mut self, hosts: &[&str], secret: Option<&str>) -> Self {
        let mut entry = json!({"hosts": hosts});
        if let Some(secret) = secret {
            entry["secretName"] = json!(secret);
        }
        let tls = &mut self.0["spec"]["tls"];
        if tls.is_null() {
            *tls = json!([]);
        }
        tls.as_array_mut().unwrap().push(entry);
        self
    }
}

/// An Ingress in `shop` routing `hosts` to `web`, with one TLS entry.
fn tls_ingress(name: &str, hosts: &[&str], secret: Option<&str>) -> Ing {
    let mut ing = mk_ingress("shop", name);
    for host in hosts {
        ing = ing.rule(Some(host), &[("/", "Prefix", "web", "80")]);
    }
    ing.tls(hosts, secret)
}

/// The leaf certificate served for a server name, `None` for the default.
fn served(tls: &TlsTable, name: Option<&str>) -> Option<Vec<u8>> {
    tls.certificate(name).map(|c| c.cert[0].to_vec())
}

#[test]
fn each_host_gets_its_certificate_and_wildcards_cover_one_label() {
    let (a, b, wild) = (
        pem(&["a.shop.com"]),
        pem(&["b.shop.com"]),
        pem(&["*.wild.com"]),
    );
    let objects = [
        backends("shop", &["web"]),
        vec![
            mk_secret("shop", "a-tls", &a),
            mk_secret("shop", "b-tls", &b),
            mk_secret("shop", "wild-tls", &wild),
            tls_ingress("a", &["a.shop.com"], Some("a-tls")).build(),
            tls_ingress("b", &["b.shop.com"], Some("b-tls")).build(),
            tls_ingress("w", &["*.wild.com"], Some("wild-tls")).build(),
        ],
    ]
    .concat();
    let c = run(&objects);
    expect_problems(&c, &[]);
    let tls = c.table.tls();
    assert_eq!(served(tls, Some("a.shop.com")), Some(a.der.clone()));
    assert_eq!(served(tls, Some("b.shop.com")), Some(b.der.clone()));
    assert_eq!(served(tls, Some("x.wild.com")), Some(wild.der.clone()));
    assert_eq!(served(tls, Some("x.y.wild.com")), None);
    assert_eq!(served(tls, Some("other.com")), None);
    assert_eq!(served(tls, None), None);
    assert!(tls.has_tls("a.shop.com") && tls.has_tls("x.wild.com"));
    assert!(!tls.has_tls("wild.com"));
    let secrets: Vec<_> = tls
        .certificates()
        .iter()
        .map(|c| c.secret.clone())
        .collect();
    assert_eq!(secrets, ["shop/a-tls", "shop/b-tls", "shop/wild-tls"]);
}

#[test]
fn string_data_is_read_and_wins_over_data() {
    use k8s_openapi::api::core::v1::Secret;
    let good = pem(&["a.shop.com"]);
    let Object::Secret(secret) =
        mk_secret_raw("shop", "a-tls", "kubernetes.io/tls", b"junk", b"junk")
    else {
        unreachable!()
    };
    let mut secret: Secret = (*secret).clone();
    secret.string_data = Some(
        [
            ("tls.crt".to_string(), good.cert.clone()),
            ("tls.key".to_string(), good.key.clone()),
        ]
        .into(),
    );
    let objects = [
        backends("shop", &["web"]),
        vec![
            Object::Secret(Arc::new(secret)),
            tls_ingress("a", &["a.shop.com"], Some("a-tls")).build(),
        ],
    ]
    .concat();
    let c = run(&objects);
    expect_problems(&c, &[]);
    assert_eq!(served(c.table.tls(), Some("a.shop.com")), Some(good.der));
}

#[test]
fn broken_secrets_fall_back_to_the_default_and_affect_nothing_else() {
    let good = pem(&["good.shop.com"]);
    let bad = pem(&["bad.shop.com"]);
    let other = pem(&["bad.shop.com"]);
    let expired = pem_until(&["bad.shop.com"], (2025, 1, 1));
    let with = |secret: Object| -> Vec<Object> {
        [
            backends("shop", &["web"]),
            vec![
                mk_secret("shop", "good-tls", &good),
                tls_ingress("good", &["good.shop.com"], Some("good-tls"))
                    .created(OLD)
                    .build(),
                tls_ingress("bad", &["bad.shop.com"], Some("bad-tls")).build(),
                secret,
            ],
        ]
        .concat()
    };
    let raw = |ty: &str, cert: &[u8], key: &[u8]| mk_secret_raw("shop", "bad-tls", ty, cert, key);
    // (case, the Secret shop/bad-tls, reason in the message)
    #[rustfmt::skip]
    let cases: Vec<(&str, Vec<Object>, &str)> = vec![
        ("missing", with(mk_service("shop", "unrelated", &[])), "not found"),
        ("wrong type", with(raw("Opaque", bad.cert.as_bytes(), bad.key.as_bytes())), "type is \"Opaque\""),
        ("malformed certificate PEM", with(raw("kubernetes.io/tls", b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n", bad.key.as_bytes())), "no PEM certificate"),
        ("no certificate at all", with(raw("kubernetes.io/tls", b"hello", bad.key.as_bytes())), "no PEM certificate"),
        ("malformed key PEM", with(raw("kubernetes.io/tls", bad.cert.as_bytes(), b"nope")), "no PEM private key"),
        ("empty key", with(raw("kubernetes.io/tls", bad.cert.as_bytes(), b"")), "has no tls.key"),
        ("key of another certificate", with(raw("kubernetes.io/tls", bad.cert.as_bytes(), other.key.as_bytes())), "does not match"),
        ("expired", with(mk_secret("shop", "bad-tls", &expired)), "expired at 2025-01-01T00:00:00Z"),
    ];
    for (case, objects, reason) in cases {
        let c = run(&objects);
        let problems: Vec<_> = c.problems.iter().filter(|p| p.kind == "Secret").collect();
        assert_eq!(problems.len(), 1, "{case}: {:#?}", c.problems);
        let p = problems[0];
        assert_eq!(p.severity, Severity::Rejected, "{case}");
        assert_eq!(p.object.to_string(), "shop/bad-tls", "{case}");
        assert!(p.message.contains(reason), "{case}: {}", p.message);
        assert!(p.message.contains("bad.shop.com"), "{case}: {}", p.message);
        assert!(!p.message.contains("BEGIN"), "{case}: {}", p.message);
        let tls = c.table.tls();
        assert_eq!(served(tls, Some("bad.shop.com")), None, "{case}");
        assert!(tls.has_tls("bad.shop.com"), "{case}: still HTTPS");
        assert_eq!(
            served(tls, Some("good.shop.com")),
            Some(good.der.clone()),
            "{case}"
        );
        assert_eq!(
            hit(&c, "bad.shop.com", "/"),
            Some("shop/web:80".into()),
            "{case}"
        );
        // An expired certificate stays on the expiry metric.
        let on_metric = tls.expiry().contains_key("shop/bad-tls");
        assert_eq!(on_metric, case == "expired", "{case}");
        assert!(tls.expiry().contains_key("shop/good-tls"), "{case}");
    }
}

#[test]
fn default_certificate_from_a_secret() {
    let default = pem(&["ingress.local"]);
    let mut options = options();
    options.default_certificate = Some(ObjectKey::new("infra", "default-tls"));
    let objects = [mk_secret("infra", "default-tls", &default)];
    let c = run_with(&objects, &options);
    expect_problems(&c, &[]);
    assert_eq!(served(c.table.tls(), None), Some(default.der.clone()));
    assert_eq!(
        served(c.table.tls(), Some("unknown.com")),
        Some(default.der)
    );

    let c = run_with(&[], &options);
    expect_problems(
        &c,
        &[(
            Severity::Rejected,
            "infra/default-tls",
            "--default-ssl-certificate: not found",
        )],
    );
    assert_eq!(
        served(c.table.tls(), None),
        None,
        "the generated one answers"
    );
}

#[test]
fn the_oldest_ingress_keeps_a_tls_host() {
    let (one, two) = (pem(&["a.shop.com"]), pem(&["a.shop.com"]));
    let objects = [
        backends("shop", &["web"]),
        vec![
            mk_secret("shop", "one", &one),
            mk_secret("shop", "two", &two),
            tls_ingress("new", &["a.shop.com"], Some("two"))
                .created(NEW)
                .build(),
            tls_ingress("old", &["a.shop.com"], Some("one"))
                .created(OLD)
                .build(),
        ],
    ]
    .concat();
    let c = run(&objects);
    expect_problems(
        &c,
        &[(
            Severity::Warning,
            "shop/new",
            "the older Ingress shop/old serves it",
        )],
    );
    assert_eq!(served(c.table.tls(), Some("a.shop.com")), Some(one.der));
}

#[test]
fn odd_tls_entries_are_reported() {
    let wrong_name = pem(&["elsewhere.com"]);
    let objects = [
        backends("shop", &["web"]),
        vec![
            mk_secret("shop", "wrong", &wrong_name),
            tls_ingress("named", &["a.shop.com"], Some("wrong")).build(),
            tls_ingress("nohosts", &[], Some("wrong"))
                .rule(Some("n.shop.com"), &[("/", "Prefix", "web", "80")])
                .build(),
            mk_ingress("shop", "badhost")
                .rule(Some("ok.shop.com"), &[("/", "Prefix", "web", "80")])
                .tls(&["bad_host.com"], Some("wrong"))
                .build(),
            tls_ingress("nosecret", &["d.shop.com"], None).build(),
        ],
    ]
    .concat();
    let c = run(&objects);
    expect_problems(
        &c,
        &[
            (
                Severity::Warning,
                "shop/wrong",
                "does not name host a.shop.com",
            ),
            (
                Severity::Warning,
                "shop/nohosts",
                "spec.tls[0] lists no hosts",
            ),
            (
                Severity::Rejected,
                "shop/badhost",
                "spec.tls[0] host \"bad_host.com\": must be a DNS name",
            ),
        ],
    );
    let tls = c.table.tls();
    // Served all the same, as the warning says.
    assert_eq!(served(tls, Some("a.shop.com")), Some(wrong_name.der));
    // No secretName: HTTPS with the default certificate, no problem.
    assert!(tls.has_tls("d.shop.com"));
    assert_eq!(served(tls, Some("d.shop.com")), None);
}

#[test]
fn a_rejected_ingress_serves_no_tls() {
    let p = pem(&["a.shop.com"]);
    let objects = [
        backends("shop", &["web"]),
        vec![
            mk_secret("shop", "a-tls", &p),
            tls_ingress("a", &["a.shop.com"], Some("a-tls"))
                .rule(Some("a.shop.com"), &[("relative", "Prefix", "web", "80")])
                .build(),
        ],
    ]
    .concat();
    let c = run(&objects);
    assert!(c.table.tls().is_empty(), "{:?}", c.table.tls());
}

#[test]
fn annotations_set_the_https_policy_of_their_routes() {
    let objects = [
        backends("shop", &["web"]),
        vec![
            mk_ingress("shop", "plain")
                .rule(Some("plain.com"), &[("/", "Prefix", "web", "80")])
                .build(),
            mk_ingress("shop", "set")
                .annotate(SSL_REDIRECT, "False")
                .annotate(FORCE_SSL_REDIRECT, "true")
                .annotate(HSTS, "max-age=600; includeSubDomains")
                .rule(Some("set.com"), &[("/", "Prefix", "web", "80")])
                .build(),
            mk_ingress("shop", "odd")
                .annotate(SSL_REDIRECT, "nope")
                .annotate(HSTS, "forever")
                .rule(Some("odd.com"), &[("/", "Prefix", "web", "80")])
                .build(),
        ],
    ]
    .concat();
    let c = run(&objects);
    expect_problems(
        &c,
        &[
            // A value that does not parse rejects the Ingress (the first
            // one found is named).
            (
                Severity::Rejected,
                "shop/odd",
                "annotation ruststrom.io/ssl-redirect: \"nope\"",
            ),
        ],
    );
    let plain = &route(&c, "plain.com", "/").unwrap().https;
    assert!(plain.ssl_redirect && !plain.force_ssl_redirect && plain.hsts.is_none());
    let set = &route(&c, "set.com", "/").unwrap().https;
    assert!(!set.ssl_redirect && set.force_ssl_redirect);
    assert_eq!(set.hsts.as_ref().unwrap(), "max-age=600; includeSubDomains");
    assert!(route(&c, "odd.com", "/").is_none());
}
