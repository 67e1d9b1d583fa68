//! BalancerPolicies: which backend gets which policy (a Service's over an
//! Ingress's, the oldest of two on one target), what each policy's status
//! says, and that a policy RustStrom cannot use leaves the defaults in place.

use std::time::Duration;

use http::HeaderName;

use super::*;
use crate::compile::PolicyStatus;
use crate::model::{
    ActiveCheck, Algorithm, BackendPolicy, HashKey, PassiveCheck, RetryPolicy, StickyCookie,
};
use crate::source::ObjectKey;

// ---------------------------------------------------------------- fixtures

/// A BalancerPolicy under construction, as JSON.
#[derive(Clone)]
struct Pol(Value);

/// A BalancerPolicy in `ns` on `kind` (`Service` or `Ingress`, with the
/// group that goes with it) `target`, with nothing else set.
fn mk_policy(ns: &str, name: &str, kind: &str, target: &str) -> Pol {
    let group = if kind == "Ingress" {
        "networking.k8s.io"
    } else {
        ""
    };
    Pol(json!({
        "apiVersion": "ruststrom.io/v1alpha1",
        "kind": "BalancerPolicy",
        "metadata": {"namespace": ns, "name": name},
        "spec": {"targetRef": {"group": group, "kind": kind, "name": target}},
    }))
}

impl Pol {
    /// Sets `spec.<key>` (`loadBalancer`, `timeouts`, ...).
    fn spec(mut self, key: &str, value: Value) -> Self {
        self.0["spec"][key] = value;
        self
    }

    fn group(mut self, group: &str) -> Self {
        self.0["spec"]["targetRef"]["group"] = json!(group);
        self
    }

    fn created(mut self, timestamp: &str) -> Self {
        self.0["metadata"]["creationTimestamp"] = json!(timestamp);
        self
    }

    fn generation(mut self, generation: i64) -> Self {
        self.0["metadata"]["generation"] = json!(generation);
        self
    }

    fn build(self) -> Object {
        Object::BalancerPolicy(typed(self.0))
    }
}

/// Services `web` and `api` in `shop`, and the Ingress `shop/a` routing
/// `a.example/web` and `a.example/api` to them, and `shop/b` routing
/// `b.example/web` to `web`.
fn world() -> Vec<Object> {
    let mut objects = backends("shop", &["web", "api"]);
    objects.push(
        mk_ingress("shop", "a")
            .rule(
                Some("a.example"),
                &[
                    ("/web", "Prefix", "web", "http"),
                    ("/api", "Prefix", "api", "http"),
                ],
            )
            .build(),
    );
    objects.push(
        mk_ingress("shop", "b")
            .rule(Some("b.example"), &[("/web", "Prefix", "web", "http")])
            .build(),
    );
    objects
}

fn run_policies(policies: Vec<Pol>) -> Compiled {
    let mut objects = world();
    objects.extend(policies.into_iter().map(Pol::build));
    run(&objects)
}

/// The policy of the route at `host` `path`.
fn policy_at<'a>(c: &'a Compiled, host: &str, path: &str) -> &'a BackendPolicy {
    &route(c, host, path)
        .unwrap_or_else(|| panic!("no route {host}{path}; problems: {:#?}", c.problems))
        .backend
        .policy
}

fn status<'a>(c: &'a Compiled, policy: &str) -> &'a PolicyStatus {
    c.policies
        .iter()
        .find(|s| s.policy.to_string() == policy)
        .unwrap_or_else(|| panic!("no status for {policy}: {:#?}", c.policies))
}

/// Accepted, resolved, not conflicted.
fn assert_accepted(c: &Compiled, policy: &str) {
    let s = status(c, policy);
    assert_eq!(s.accepted, Ok(()), "{policy}");
    assert_eq!(s.resolved_refs, Ok(()), "{policy}");
    assert_eq!(s.conflicted_with, None, "{policy}");
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

// ---------------------------------------------------------------- targets

#[test]
fn a_service_policy_sets_the_backend_policy() {
    let policy = mk_policy("shop", "web-policy", "Service", "web")
        .generation(3)
        .spec("loadBalancer", json!({"algorithm": "LeastConnection", "slowStart": "20s"}))
        .spec(
            "timeouts",
            json!({"connect": "2s", "request": "30s", "idle": "1m", "read": "5m", "send": "10s"}),
        )
        .spec(
            "retries",
            json!({"attempts": 3, "perTryTimeout": "1.5s", "on": ["connect-failure", "timeout", 503, "504"], "budgetPercent": 10}),
        )
        .spec(
            "healthCheck",
            json!({
                "active": {"path": "/ready", "interval": "5s", "timeout": "1s", "slowThreshold": "300ms",
                           "healthyThreshold": 2, "unhealthyThreshold": 3},
                "passive": {"consecutiveFailures": 7, "ejectionTime": "1m", "maxEjectionPercent": 30},
            }),
        );
    let c = run_policies(vec![policy]);
    expect_problems(&c, &[]);
    assert_accepted(&c, "shop/web-policy");
    assert_eq!(status(&c, "shop/web-policy").generation, Some(3));

    let want = BackendPolicy {
        algorithm: Algorithm::LeastConnection,
        hash_key: None,
        sticky: None,
        slow_start: Some(secs(20)),
        connect_timeout: secs(2),
        request_timeout: Some(secs(30)),
        idle_timeout: secs(60),
        read_timeout: Some(secs(300)),
        send_timeout: Some(secs(10)),
        retries: RetryPolicy {
            attempts: 3,
            per_try_timeout: Some(millis(1500)),
            on_connect_failure: true,
            on_refused_stream: false,
            on_reset: false,
            on_timeout: true,
            on_status: vec![503, 504],
            budget_percent: 10,
        },
        active: Some(ActiveCheck {
            path: "/ready".into(),
            interval: secs(5),
            timeout: secs(1),
            slow_threshold: Some(millis(300)),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
        }),
        passive: Some(PassiveCheck {
            consecutive_failures: 7,
            ejection_time: secs(60),
            max_ejection_percent: 30,
        }),
        source: Some("shop/web-policy".into()),
    };
    // Every route to the Service, from either Ingress.
    assert_eq!(policy_at(&c, "a.example", "/web"), &want);
    assert_eq!(policy_at(&c, "b.example", "/web"), &want);
    // Not the other Service.
    assert_eq!(
        policy_at(&c, "a.example", "/api"),
        &BackendPolicy::default()
    );
}

#[test]
fn unset_fields_keep_their_defaults() {
    // Only the algorithm: timeouts, retries and checks stay as they were.
    let c = run_policies(vec![
        mk_policy("shop", "p", "Service", "web")
            .spec("loadBalancer", json!({"algorithm": "Random"})),
    ]);
    let want = BackendPolicy {
        algorithm: Algorithm::Random,
        source: Some("shop/p".into()),
        ..BackendPolicy::default()
    };
    assert_eq!(policy_at(&c, "a.example", "/web"), &want);

    // Retries with only the attempts: the rest as without a policy.
    let c = run_policies(vec![
        mk_policy("shop", "p", "Service", "web").spec("retries", json!({"attempts": 3})),
    ]);
    let want = RetryPolicy {
        attempts: 3,
        ..RetryPolicy::default()
    };
    assert_eq!(policy_at(&c, "a.example", "/web").retries, want);

    // An active check with only a path: the CRD's (and ActiveCheck's)
    // interval, timeout and thresholds.
    let c = run_policies(vec![mk_policy("shop", "p", "Service", "web").spec(
        "healthCheck",
        json!({"active": {"path": "/up"}, "passive": {}}),
    )]);
    let policy = policy_at(&c, "a.example", "/web");
    let active = ActiveCheck {
        path: "/up".into(),
        ..ActiveCheck::default()
    };
    assert_eq!(policy.active.as_ref(), Some(&active));
    assert_eq!(policy.passive, Some(PassiveCheck::default()));
}

#[test]
fn hash_keys_and_sticky_cookies() {
    let lb =
        |value: Value| vec![mk_policy("shop", "p", "Service", "web").spec("loadBalancer", value)];
    let cases: Vec<(Value, Algorithm, Option<HashKey>)> = vec![
        (
            json!({"algorithm": "ConsistentHash", "consistentHash": {"header": "X-User"}}),
            Algorithm::ConsistentHash,
            Some(HashKey::Header(HeaderName::from_static("x-user"))),
        ),
        (
            json!({"algorithm": "ConsistentHash", "consistentHash": {"cookie": "sid"}}),
            Algorithm::ConsistentHash,
            Some(HashKey::Cookie("sid".into())),
        ),
        (
            json!({"algorithm": "ConsistentHash", "consistentHash": {"sourceIP": true}}),
            Algorithm::ConsistentHash,
            Some(HashKey::SourceIp),
        ),
        (
            json!({"algorithm": "IPHash"}),
            Algorithm::IpHash,
            Some(HashKey::SourceIp),
        ),
        (json!({"algorithm": "PeakEWMA"}), Algorithm::PeakEwma, None),
        (
            json!({"algorithm": "WeightedRoundRobin"}),
            Algorithm::WeightedRoundRobin,
            None,
        ),
        (json!({}), Algorithm::RoundRobin, None),
    ];
    for (spec, algorithm, hash_key) in cases {
        let c = run_policies(lb(spec.clone()));
        expect_problems(&c, &[]);
        let policy = policy_at(&c, "a.example", "/web");
        assert_eq!(
            (policy.algorithm, &policy.hash_key),
            (algorithm, &hash_key),
            "{spec}"
        );
    }

    // A sticky cookie: the defaults for what is not set.
    let c = run_policies(lb(
        json!({"stickyCookie": {"ttl": "1h", "sameSite": "Strict"}}),
    ));
    let want = StickyCookie {
        name: "RUSTSTROM_SESSION".into(),
        ttl: Some(secs(3600)),
        secure: false,
        http_only: true,
        same_site: "Strict",
    };
    assert_eq!(policy_at(&c, "a.example", "/web").sticky, Some(want));
}

#[test]
fn an_ingress_policy_applies_to_every_backend_of_that_ingress_only() {
    let c = run_policies(vec![
        mk_policy("shop", "a-policy", "Ingress", "a")
            .spec("loadBalancer", json!({"algorithm": "Random"})),
    ]);
    expect_problems(&c, &[]);
    assert_accepted(&c, "shop/a-policy");
    for path in ["/web", "/api"] {
        let policy = policy_at(&c, "a.example", path);
        assert_eq!(policy.algorithm, Algorithm::Random, "{path}");
        assert_eq!(policy.source.as_deref(), Some("shop/a-policy"), "{path}");
    }
    // The same Service through the other Ingress keeps the defaults, on a
    // backend of its own.
    assert_eq!(
        policy_at(&c, "b.example", "/web"),
        &BackendPolicy::default()
    );
}

#[test]
fn a_service_policy_wins_over_an_ingress_policy() {
    let c = run_policies(vec![
        mk_policy("shop", "a-policy", "Ingress", "a")
            .created(OLD)
            .spec("loadBalancer", json!({"algorithm": "Random"})),
        mk_policy("shop", "web-policy", "Service", "web")
            .created(NEW)
            .spec("loadBalancer", json!({"algorithm": "PeakEWMA"})),
    ]);
    expect_problems(&c, &[]);
    assert_accepted(&c, "shop/a-policy");
    assert_accepted(&c, "shop/web-policy");
    let web = policy_at(&c, "a.example", "/web");
    assert_eq!(
        (web.algorithm, web.source.as_deref()),
        (Algorithm::PeakEwma, Some("shop/web-policy"))
    );
    let api = policy_at(&c, "a.example", "/api");
    assert_eq!(
        (api.algorithm, api.source.as_deref()),
        (Algorithm::Random, Some("shop/a-policy"))
    );
}

// ---------------------------------------------------------------- status

#[test]
fn of_two_policies_on_one_target_the_oldest_wins() {
    // The newer one sorts first by name: age decides, not the name.
    let c = run_policies(vec![
        mk_policy("shop", "a-newer", "Service", "web")
            .created(NEW)
            .spec("loadBalancer", json!({"algorithm": "Random"})),
        mk_policy("shop", "z-older", "Service", "web")
            .created(OLD)
            .spec("loadBalancer", json!({"algorithm": "LeastConnection"})),
    ]);
    expect_problems(
        &c,
        &[(
            Severity::Rejected,
            "shop/a-newer",
            "the older BalancerPolicy shop/z-older already targets shop/web",
        )],
    );
    assert_accepted(&c, "shop/z-older");
    let loser = status(&c, "shop/a-newer");
    assert!(loser.accepted.is_err(), "{loser:?}");
    assert_eq!(loser.resolved_refs, Ok(()));
    assert_eq!(
        loser.conflicted_with,
        Some(ObjectKey::new("shop", "z-older"))
    );
    assert_eq!(
        policy_at(&c, "a.example", "/web").algorithm,
        Algorithm::LeastConnection
    );

    // Without creation times (files), the name decides.
    let c = run_policies(vec![
        mk_policy("shop", "b", "Service", "web")
            .spec("loadBalancer", json!({"algorithm": "Random"})),
        mk_policy("shop", "a", "Service", "web")
            .spec("loadBalancer", json!({"algorithm": "IPHash"})),
    ]);
    assert_accepted(&c, "shop/a");
    assert_eq!(
        status(&c, "shop/b").conflicted_with,
        Some(ObjectKey::new("shop", "a"))
    );
    assert_eq!(
        policy_at(&c, "a.example", "/web").algorithm,
        Algorithm::IpHash
    );

    // A Service and an Ingress of the same name are different targets.
    let c = run_policies(vec![
        mk_policy("shop", "on-service", "Service", "a"),
        mk_policy("shop", "on-ingress", "Ingress", "a"),
    ]);
    assert_eq!(status(&c, "shop/on-ingress").conflicted_with, None);
    assert_eq!(status(&c, "shop/on-service").conflicted_with, None);
}

#[test]
fn a_policy_whose_target_does_not_exist_is_not_resolved() {
    let c = run_policies(vec![
        mk_policy("shop", "ghost-service", "Service", "ghost"),
        mk_policy("shop", "ghost-ingress", "Ingress", "ghost"),
        // Targets are looked up in the policy's own namespace.
        mk_policy("other", "elsewhere", "Service", "web")
            .spec("loadBalancer", json!({"algorithm": "Random"})),
    ]);
    expect_problems(
        &c,
        &[
            (
                Severity::Warning,
                "shop/ghost-service",
                "Service shop/ghost not found",
            ),
            (
                Severity::Warning,
                "shop/ghost-ingress",
                "Ingress shop/ghost not found",
            ),
            (
                Severity::Warning,
                "other/elsewhere",
                "Service other/web not found",
            ),
        ],
    );
    for (policy, reason) in [
        ("shop/ghost-service", "Service shop/ghost not found"),
        ("shop/ghost-ingress", "Ingress shop/ghost not found"),
        ("other/elsewhere", "Service other/web not found"),
    ] {
        let s = status(&c, policy);
        assert_eq!(s.resolved_refs, Err(reason.to_string()), "{policy}");
        assert_eq!(
            s.accepted,
            Ok(()),
            "{policy}: valid, only waiting for its target"
        );
    }
    assert_eq!(
        policy_at(&c, "a.example", "/web"),
        &BackendPolicy::default()
    );
}

#[test]
fn invalid_policies_from_files_are_rejected_and_the_defaults_apply() {
    // What the CRD's schema and CEL rules refuse, read from files that never
    // went through an API server: (case, spec key, value, reason).
    #[rustfmt::skip]
    let cases: Vec<(&str, &str, Value, &str)> = vec![
        ("hash without key", "loadBalancer", json!({"algorithm": "ConsistentHash"}),
            "algorithm ConsistentHash needs consistentHash"),
        ("two hash keys", "loadBalancer", json!({"algorithm": "ConsistentHash", "consistentHash": {"header": "X-User", "sourceIP": true}}),
            "set exactly one of header, cookie or sourceIP"),
        ("no hash key set", "loadBalancer", json!({"algorithm": "ConsistentHash", "consistentHash": {"sourceIP": false}}),
            "set exactly one of header, cookie or sourceIP"),
        ("hash key without ConsistentHash", "loadBalancer", json!({"algorithm": "Random", "consistentHash": {"header": "X-User"}}),
            "consistentHash is only used with algorithm ConsistentHash"),
        ("bad header name", "loadBalancer", json!({"algorithm": "ConsistentHash", "consistentHash": {"header": "X User"}}),
            "consistentHash.header \"X User\" is not a header name"),
        ("bad cookie name", "loadBalancer", json!({"stickyCookie": {"name": "a;b"}}),
            "stickyCookie.name \"a;b\" is not a cookie name"),
        ("negative duration", "timeouts", json!({"connect": "-5s"}),
            "timeouts.connect must not be negative"),
        ("zero duration", "timeouts", json!({"idle": "0s"}),
            "timeouts.idle must be greater than 0"),
        ("zero read timeout", "timeouts", json!({"read": "0s"}),
            "timeouts.read must be greater than 0"),
        ("zero interval", "healthCheck", json!({"active": {"interval": "0s"}}),
            "healthCheck.active.interval must be greater than 0"),
        ("negative ttl", "loadBalancer", json!({"stickyCookie": {"ttl": "-1h"}}),
            "stickyCookie.ttl must not be negative"),
        ("attempts 11", "retries", json!({"attempts": 11}),
            "retries.attempts must be at most 10"),
        ("budget over 100", "retries", json!({"budgetPercent": 101}),
            "retries.budgetPercent must be at most 100"),
        ("retry on 4xx", "retries", json!({"on": [429]}),
            "retries.on: \"429\" is not a retry condition"),
        ("retry on a typo", "retries", json!({"on": ["connect-failures"]}),
            "retries.on: \"connect-failures\" is not a retry condition"),
        ("timeout over interval", "healthCheck", json!({"active": {"interval": "5s", "timeout": "6s"}}),
            "healthCheck.active.timeout must not exceed interval"),
        ("timeout over the default interval", "healthCheck", json!({"active": {"timeout": "11s"}}),
            "healthCheck.active.timeout must not exceed interval"),
        ("slow threshold at timeout", "healthCheck", json!({"active": {"timeout": "1s", "slowThreshold": "1s"}}),
            "healthCheck.active.slowThreshold must be below timeout"),
        ("relative health path", "healthCheck", json!({"active": {"path": "healthz"}}),
            "healthCheck.active.path \"healthz\" must be an absolute path"),
        ("healthy threshold 0", "healthCheck", json!({"active": {"healthyThreshold": 0}}),
            "healthCheck.active.healthyThreshold must be between 1 and 100"),
        ("consecutive failures 0", "healthCheck", json!({"passive": {"consecutiveFailures": 0}}),
            "healthCheck.passive.consecutiveFailures must be between 1 and 1000"),
        ("max ejection over 100", "healthCheck", json!({"passive": {"maxEjectionPercent": 101}}),
            "healthCheck.passive.maxEjectionPercent must be at most 100"),
    ];
    for (case, key, value, reason) in cases {
        let c = run_policies(vec![
            mk_policy("shop", "bad", "Service", "web").spec(key, value),
        ]);
        expect_problems(&c, &[(Severity::Rejected, "shop/bad", reason)]);
        let s = status(&c, "shop/bad");
        assert!(
            s.accepted.as_ref().is_err_and(|e| e.contains(reason)),
            "{case}: {s:?}"
        );
        assert_eq!(
            policy_at(&c, "a.example", "/web"),
            &BackendPolicy::default(),
            "{case}"
        );
    }

    // The target's group must go with its kind.
    for (kind, group) in [
        ("Ingress", ""),
        ("Service", "networking.k8s.io"),
        ("Ingress", "extensions"),
    ] {
        let c = run_policies(vec![mk_policy("shop", "bad", kind, "a").group(group)]);
        let s = status(&c, "shop/bad");
        assert!(
            s.accepted
                .as_ref()
                .is_err_and(|e| e.contains("targetRef.group must be")),
            "{kind} {group:?}: {s:?}"
        );
    }

    // A rejected policy holds no target: a newer valid one takes it.
    let c = run_policies(vec![
        mk_policy("shop", "old-bad", "Service", "web")
            .created(OLD)
            .spec("retries", json!({"attempts": 11})),
        mk_policy("shop", "new-good", "Service", "web")
            .created(NEW)
            .spec("loadBalancer", json!({"algorithm": "Random"})),
    ]);
    assert_accepted(&c, "shop/new-good");
    assert_eq!(
        policy_at(&c, "a.example", "/web").algorithm,
        Algorithm::Random
    );
}

#[test]
fn without_a_policy_the_defaults_apply() {
    let c = run(&world());
    expect_problems(&c, &[]);
    assert!(c.policies.is_empty());
    for (host, path) in [
        ("a.example", "/web"),
        ("a.example", "/api"),
        ("b.example", "/web"),
    ] {
        let policy = policy_at(&c, host, path);
        assert_eq!(policy, &BackendPolicy::default());
        assert_eq!(policy.algorithm, Algorithm::RoundRobin);
        assert_eq!(policy.source, None);
        assert_eq!(policy.passive, Some(PassiveCheck::default()));
        assert_eq!(policy.active, None);
        assert!(policy.retries.on_connect_failure);
        assert_eq!(policy.retries.attempts, 2);
    }
    let passive = PassiveCheck::default();
    assert_eq!(
        (
            passive.consecutive_failures,
            passive.ejection_time,
            passive.max_ejection_percent
        ),
        (5, secs(30), 50)
    );
}
