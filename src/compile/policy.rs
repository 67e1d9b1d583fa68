//! BalancerPolicies: which backend gets which traffic policy, and what each
//! policy's status says (Accepted, ResolvedRefs, Conflicted).
//!
//! A policy on a Service applies to every route to that Service; a policy on
//! an Ingress to every backend of that Ingress. When both exist for one
//! backend the Service's wins: it is the more specific, and its owner knows
//! the backend (its health path, its idempotency). Two policies on one
//! target: the oldest wins, the other is `Conflicted`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;

use super::Problem;
use crate::crd::{self, BalancerPolicy, TargetKind};
use crate::model::{
    ActiveCheck, Algorithm, BackendPolicy, HashKey, PassiveCheck, RetryPolicy, StickyCookie,
};
use crate::source::{ObjectKey, Snapshot};

const KIND: &str = "BalancerPolicy";

/// What the controller reports on one policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyStatus {
    pub policy: ObjectKey,
    pub generation: Option<i64>,
    /// `Err(reason)` when the policy is invalid or lost a conflict.
    pub accepted: Result<(), String>,
    /// `Err(reason)` when its target does not exist (yet).
    pub resolved_refs: Result<(), String>,
    /// The older policy that holds the same target.
    pub conflicted_with: Option<ObjectKey>,
}

/// Policies by target, ready for backend resolution.
pub(super) struct Policies {
    default: Arc<BackendPolicy>,
    by_service: HashMap<ObjectKey, Arc<BackendPolicy>>,
    by_ingress: HashMap<ObjectKey, Arc<BackendPolicy>>,
}

impl Policies {
    /// No policies: every backend gets the defaults.
    pub(super) fn none() -> Self {
        Self {
            default: Arc::new(BackendPolicy::default()),
            by_service: HashMap::new(),
            by_ingress: HashMap::new(),
        }
    }

    /// Resolves every policy in the snapshot.
    pub(super) fn new(snapshot: &Snapshot) -> (Self, Vec<PolicyStatus>, Vec<Problem>) {
        let mut ordered: Vec<_> = snapshot.balancer_policies.iter().collect();
        ordered.sort_by(|a, b| {
            let created = |p: &BalancerPolicy| p.metadata.creation_timestamp.clone().map(|t| t.0);
            created(a.1).cmp(&created(b.1)).then_with(|| a.0.cmp(b.0))
        });

        let mut policies = Self {
            default: Arc::new(BackendPolicy::default()),
            by_service: HashMap::new(),
            by_ingress: HashMap::new(),
        };
        let mut owners: HashMap<(TargetKind, ObjectKey), ObjectKey> = HashMap::new();
        let mut statuses = Vec::new();
        let mut problems = Vec::new();
        for (key, policy) in ordered {
            let spec = &policy.spec;
            let target = ObjectKey::new(key.namespace.clone(), spec.target_ref.name.clone());
            let mut status = PolicyStatus {
                policy: key.clone(),
                generation: policy.metadata.generation,
                accepted: Ok(()),
                resolved_refs: Ok(()),
                conflicted_with: None,
            };
            let exists = match spec.target_ref.kind {
                TargetKind::Service => snapshot.services.contains_key(&target),
                TargetKind::Ingress => snapshot.ingresses.contains_key(&target),
            };
            if !exists {
                let reason = format!("{:?} {target} not found", spec.target_ref.kind);
                problems.push(Problem::warning(KIND, key, format!("target {reason}")));
                status.resolved_refs = Err(reason);
            }
            let resolved = match resolve(spec) {
                Ok(mut resolved) => {
                    resolved.source = Some(key.to_string());
                    resolved
                }
                Err(reason) => {
                    problems.push(Problem::rejected(KIND, key, reason.clone()));
                    status.accepted = Err(reason);
                    statuses.push(status);
                    continue;
                }
            };
            let slot = (spec.target_ref.kind, target.clone());
            if let Some(owner) = owners.get(&slot) {
                let reason = format!("the older BalancerPolicy {owner} already targets {target}");
                problems.push(Problem::rejected(KIND, key, reason.clone()));
                status.accepted = Err(reason);
                status.conflicted_with = Some(owner.clone());
                statuses.push(status);
                continue;
            }
            owners.insert(slot, key.clone());
            let map = match spec.target_ref.kind {
                TargetKind::Service => &mut policies.by_service,
                TargetKind::Ingress => &mut policies.by_ingress,
            };
            map.insert(target, Arc::new(resolved));
            statuses.push(status);
        }
        (policies, statuses, problems)
    }

    /// The policy for a route of `ingress` to `service`.
    pub(super) fn for_backend(
        &self,
        ingress: &ObjectKey,
        service: &ObjectKey,
    ) -> &Arc<BackendPolicy> {
        self.by_service
            .get(service)
            .or_else(|| self.by_ingress.get(ingress))
            .unwrap_or(&self.default)
    }
}

/// Checks a spec (the API server checks the same through the CRD schema;
/// files never passed it) and turns it into a [`BackendPolicy`].
fn resolve(spec: &crd::BalancerPolicySpec) -> Result<BackendPolicy, String> {
    let mut out = BackendPolicy::default();
    if spec.target_ref.name.is_empty() {
        return Err("targetRef.name is empty".into());
    }
    let group_ok = match spec.target_ref.kind {
        TargetKind::Service => spec.target_ref.group.is_empty(),
        TargetKind::Ingress => spec.target_ref.group == "networking.k8s.io",
    };
    if !group_ok {
        return Err(
            "targetRef.group must be \"\" for a Service and \"networking.k8s.io\" for an Ingress"
                .into(),
        );
    }

    if let Some(lb) = &spec.load_balancer {
        out.algorithm = match lb.algorithm {
            crd::Algorithm::RoundRobin => Algorithm::RoundRobin,
            crd::Algorithm::WeightedRoundRobin => Algorithm::WeightedRoundRobin,
            crd::Algorithm::Random => Algorithm::Random,
            crd::Algorithm::LeastConnection => Algorithm::LeastConnection,
            crd::Algorithm::PeakEwma => Algorithm::PeakEwma,
            crd::Algorithm::IpHash => Algorithm::IpHash,
            crd::Algorithm::ConsistentHash => Algorithm::ConsistentHash,
        };
        out.hash_key = match (lb.algorithm, &lb.consistent_hash) {
            (crd::Algorithm::IpHash, _) => Some(HashKey::SourceIp),
            (crd::Algorithm::ConsistentHash, Some(h)) => Some(hash_key(h)?),
            (crd::Algorithm::ConsistentHash, None) => {
                return Err("algorithm ConsistentHash needs consistentHash".into());
            }
            (_, Some(_)) => {
                return Err("consistentHash is only used with algorithm ConsistentHash".into());
            }
            (_, None) => None,
        };
        if let Some(c) = &lb.sticky_cookie {
            if !is_token(&c.name) {
                return Err(format!(
                    "stickyCookie.name {:?} is not a cookie name",
                    c.name
                ));
            }
            out.sticky = Some(StickyCookie {
                name: c.name.clone(),
                ttl: c.ttl.map(|d| positive("stickyCookie.ttl", d)).transpose()?,
                secure: c.secure,
                http_only: c.http_only,
                same_site: match c.same_site {
                    crd::SameSite::Strict => "Strict",
                    crd::SameSite::Lax => "Lax",
                    crd::SameSite::None => "None",
                },
            });
        }
        out.slow_start = lb
            .slow_start
            .map(|d| positive("slowStart", d))
            .transpose()?;
    }

    if let Some(t) = &spec.timeouts {
        if let Some(d) = t.connect {
            out.connect_timeout = positive("timeouts.connect", d)?;
        }
        out.request_timeout = t
            .request
            .map(|d| positive("timeouts.request", d))
            .transpose()?;
        if let Some(d) = t.idle {
            out.idle_timeout = positive("timeouts.idle", d)?;
        }
        out.read_timeout = t.read.map(|d| positive("timeouts.read", d)).transpose()?;
        out.send_timeout = t.send.map(|d| positive("timeouts.send", d)).transpose()?;
    }

    if let Some(r) = &spec.retries {
        if r.attempts > 10 {
            return Err("retries.attempts must be at most 10".into());
        }
        if r.budget_percent > 100 {
            return Err("retries.budgetPercent must be at most 100".into());
        }
        let mut retries = RetryPolicy {
            attempts: r.attempts,
            per_try_timeout: r
                .per_try_timeout
                .map(|d| positive("retries.perTryTimeout", d))
                .transpose()?,
            on_connect_failure: false,
            on_refused_stream: false,
            on_reset: false,
            on_timeout: false,
            on_status: Vec::new(),
            budget_percent: r.budget_percent,
        };
        for on in &r.on {
            match on.0.as_str() {
                "connect-failure" => retries.on_connect_failure = true,
                "refused-stream" => retries.on_refused_stream = true,
                "reset" => retries.on_reset = true,
                "timeout" => retries.on_timeout = true,
                code => match code.parse::<u16>() {
                    Ok(c) if (500..600).contains(&c) => retries.on_status.push(c),
                    _ => return Err(format!("retries.on: {code:?} is not a retry condition")),
                },
            }
        }
        out.retries = retries;
    }

    if let Some(h) = &spec.health_check {
        if let Some(a) = &h.active {
            if !a.path.starts_with('/') || a.path.contains(char::is_whitespace) {
                return Err(format!(
                    "healthCheck.active.path {:?} must be an absolute path",
                    a.path
                ));
            }
            let defaults = ActiveCheck::default();
            let check = ActiveCheck {
                path: a.path.clone(),
                interval: a
                    .interval
                    .map(|d| positive("healthCheck.active.interval", d))
                    .transpose()?
                    .unwrap_or(defaults.interval),
                timeout: a
                    .timeout
                    .map(|d| positive("healthCheck.active.timeout", d))
                    .transpose()?
                    .unwrap_or(defaults.timeout),
                slow_threshold: a
                    .slow_threshold
                    .map(|d| positive("healthCheck.active.slowThreshold", d))
                    .transpose()?,
                healthy_threshold: within(
                    "healthCheck.active.healthyThreshold",
                    a.healthy_threshold,
                    1,
                    100,
                )?,
                unhealthy_threshold: within(
                    "healthCheck.active.unhealthyThreshold",
                    a.unhealthy_threshold,
                    1,
                    100,
                )?,
            };
            if check.timeout > check.interval {
                return Err("healthCheck.active.timeout must not exceed interval".into());
            }
            if check
                .slow_threshold
                .is_some_and(|slow| slow >= check.timeout)
            {
                return Err("healthCheck.active.slowThreshold must be below timeout".into());
            }
            out.active = Some(check);
        }
        if let Some(p) = &h.passive {
            if p.max_ejection_percent > 100 {
                return Err("healthCheck.passive.maxEjectionPercent must be at most 100".into());
            }
            out.passive = Some(PassiveCheck {
                consecutive_failures: within(
                    "healthCheck.passive.consecutiveFailures",
                    p.consecutive_failures,
                    1,
                    1000,
                )?,
                ejection_time: p
                    .ejection_time
                    .map(|d| positive("healthCheck.passive.ejectionTime", d))
                    .transpose()?
                    .unwrap_or(PassiveCheck::default().ejection_time),
                max_ejection_percent: p.max_ejection_percent,
            });
        }
    }
    Ok(out)
}

fn hash_key(h: &crd::ConsistentHash) -> Result<HashKey, String> {
    let set = [
        h.header.is_some(),
        h.cookie.is_some(),
        h.source_ip == Some(true),
    ];
    if set.iter().filter(|s| **s).count() != 1 {
        return Err("consistentHash: set exactly one of header, cookie or sourceIP: true".into());
    }
    if let Some(header) = &h.header {
        return HeaderName::from_bytes(header.as_bytes())
            .map(HashKey::Header)
            .map_err(|_| format!("consistentHash.header {header:?} is not a header name"));
    }
    if let Some(cookie) = &h.cookie {
        if !is_token(cookie) {
            return Err(format!(
                "consistentHash.cookie {cookie:?} is not a cookie name"
            ));
        }
        return Ok(HashKey::Cookie(cookie.clone()));
    }
    Ok(HashKey::SourceIp)
}

/// A duration the CRD accepts: greater than zero (a zero interval would
/// make the health checker spin, a zero timeout fail every request).
fn positive(field: &str, d: kube::core::Duration) -> Result<Duration, String> {
    if d.is_negative() {
        return Err(format!("{field} must not be negative"));
    }
    let d = Duration::from(d);
    if d.is_zero() {
        return Err(format!("{field} must be greater than 0"));
    }
    Ok(d)
}

/// `n`, when the CRD's `minimum`/`maximum` allow it.
fn within(field: &str, n: u32, min: u32, max: u32) -> Result<u32, String> {
    if (min..=max).contains(&n) {
        Ok(n)
    } else {
        Err(format!("{field} must be between {min} and {max}"))
    }
}

/// An RFC 9110 token: what cookie and header names are made of.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
