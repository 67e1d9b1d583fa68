//! The `BalancerPolicy` custom resource (`ruststrom.io/v1alpha1`): how the
//! traffic of a Service (or of every backend of an Ingress) is balanced,
//! health-checked, retried and timed out.
//!
//! Validation lives in the schema (enums, ranges, patterns) and in CEL rules
//! (`x-kubernetes-validations`) for what spans fields, so the API server
//! refuses a bad policy by itself, with no admission webhook. `rust-strom
//! crds` prints the CRD; `crds/` holds the committed copy.

use std::borrow::Cow;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use kube::core::Duration;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, de};
use serde_json::Value;

/// Attaches load-balancing, health-check, retry and timeout settings to a
/// Service or to every backend of an Ingress.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "ruststrom.io",
    version = "v1alpha1",
    kind = "BalancerPolicy",
    namespaced,
    status = "BalancerPolicyStatus",
    doc = "Load-balancing, health-check, retry and timeout settings for a Service or for every backend of an Ingress.",
    shortname = "bp",
    category = "ruststrom",
    printcolumn = r#"{"name":"Target","type":"string","jsonPath":".spec.targetRef.name"}"#,
    printcolumn = r#"{"name":"Algorithm","type":"string","jsonPath":".spec.loadBalancer.algorithm"}"#,
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = structural)]
pub struct BalancerPolicySpec {
    /// The Service (all its ports) or Ingress (every backend it routes to)
    /// this policy applies to, in the policy's namespace.
    pub target_ref: TargetRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<Timeouts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<Retries>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
}

/// A reference to the policy's target, in the policy's own namespace.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = structural)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.kind == 'Service' ? self.group == '' : self.group == 'networking.k8s.io'",
     "message": "group must be \"\" for a Service and \"networking.k8s.io\" for an Ingress"}
]))]
pub struct TargetRef {
    /// `""` for a Service, `networking.k8s.io` for an Ingress.
    #[serde(default)]
    #[schemars(length(max = 253))]
    pub group: String,
    pub kind: TargetKind,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// What a policy can target.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
pub enum TargetKind {
    #[default]
    Service,
    Ingress,
}

/// How endpoints are chosen.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = structural)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.algorithm) || self.algorithm != 'ConsistentHash' || has(self.consistentHash)",
     "message": "algorithm ConsistentHash needs consistentHash"},
    {"rule": "!has(self.consistentHash) || (has(self.algorithm) && self.algorithm == 'ConsistentHash')",
     "message": "consistentHash is only used with algorithm ConsistentHash"}
]))]
pub struct LoadBalancer {
    #[serde(default)]
    pub algorithm: Algorithm,
    /// The request key for `ConsistentHash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistent_hash: Option<ConsistentHash>,
    /// Pins a client to an endpoint with a cookie, on top of any algorithm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky_cookie: Option<StickyCookie>,
    /// New endpoints ramp their share of traffic up over this time.
    #[serde(
        default,
        deserialize_with = "go_duration",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "duration_schema")]
    pub slow_start: Option<Duration>,
}

/// Load-balancing algorithms.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum Algorithm {
    #[default]
    RoundRobin,
    /// Weights from the endpoint's `ruststrom.io/weight` annotation on its
    /// EndpointSlice, or from `weights` in a later version.
    WeightedRoundRobin,
    Random,
    /// Fewest requests in flight, ties broken at random.
    LeastConnection,
    /// Power of two choices over latency x load, as linkerd balances.
    #[serde(rename = "PeakEWMA")]
    PeakEwma,
    /// Maglev over the client's IP address.
    #[serde(rename = "IPHash")]
    IpHash,
    /// Maglev over `consistentHash`'s key.
    ConsistentHash,
}

/// The key of a request for consistent hashing: exactly one of these.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = structural)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "(has(self.header) ? 1 : 0) + (has(self.cookie) ? 1 : 0) + (has(self.sourceIP) && self.sourceIP ? 1 : 0) == 1",
     "message": "set exactly one of header, cookie or sourceIP: true"}
]))]
pub struct ConsistentHash {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 256),
        regex(pattern = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
    )]
    pub header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 256),
        regex(pattern = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
    )]
    pub cookie: Option<String>,
    #[serde(default, rename = "sourceIP", skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<bool>,
}

/// The session cookie that pins a client to an endpoint. Its value is an
/// opaque hash, never the endpoint's address.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = structural)]
pub struct StickyCookie {
    #[serde(default = "default_cookie_name")]
    #[schemars(
        length(min = 1, max = 256),
        regex(pattern = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
    )]
    pub name: String,
    /// Cookie lifetime; a session cookie when unset.
    #[serde(
        default,
        deserialize_with = "go_duration",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "duration_schema")]
    pub ttl: Option<Duration>,
    #[serde(default)]
    pub secure: bool,
    #[serde(default = "yes")]
    pub http_only: bool,
    #[serde(default)]
    pub same_site: SameSite,
}

/// The cookie's `SameSite` attribute.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    #[default]
    Lax,
    None,
}

/// Time limits for requests to the target.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = structural)]
pub struct Timeouts {
    /// Opening a connection to an endpoint.
    #[serde(
        default,
        deserialize_with = "go_duration",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "duration_schema")]
    pub connect: Option<Duration>,
    /// The whole request, retries included, to the response headers (504 after).
    #[serde(
        default,
        deserialize_with = "go_duration",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "duration_schema")]
    pub request: Option<Duration>,
    /// How long an idle pooled connection is kept.
    #[serde(
        default,
        deserialize_with = "go_duration",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "duration_schema")]
    pub idle: Option<Duration>,
    /// Longest pause between two pieces of the response body; the answer
    /// is cut off after it (overrides --proxy-read-timeout).
    #[serde(
        default,
        deserialize_with = "go_duration",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "duration_schema")]
    pub read: Option<Duration>,
    /// Longest the target may leave a request body unread; 504 after
    /// (overrides --proxy-send-timeout).
    #[serde(
        default,
        deserialize_with = "go_duration",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "duration_schema")]
    pub send: Option<Duration>,
}

/// When and how often a failed request is sent again.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = structural)]
pub struct Retries {
    /// Retries after the first try (0 turns retries off).
    #[serde(default = "default_attempts")]
    #[schemars(range(min = 0, max = 10))]
    pub attempts: u32,
    /// Limit for each try; the overall `timeouts.request` still applies.
    #[serde(
        default,
        deserialize_with = "go_duration",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "duration_schema")]
    pub per_try_timeout: Option<Duration>,
    /// What is retried: `connect-failure`, `refused-stream`, `reset`,
    /// `timeout` or a 5xx status code such as `503`. Status codes are retried
    /// only for idempotent methods or requests whose body was not sent.
    #[serde(default = "default_retry_on")]
    pub on: Vec<RetryOn>,
    /// Retries may add at most this share of the requests (retry budget), so
    /// a failing backend cannot multiply its load.
    #[serde(default = "default_budget")]
    #[schemars(range(min = 0, max = 100))]
    pub budget_percent: u32,
}

/// A condition that makes a request eligible for a retry: a name, or a
/// status code written as a string (`"503"`) or, as YAML invites, as a
/// number (`503`). Kept as a string either way.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct RetryOn(pub String);

/// Names and 5xx codes, as a string or (for codes) an integer.
const RETRY_ON_PATTERN: &str = r"^(connect-failure|refused-stream|reset|timeout|5[0-9][0-9])$";

impl JsonSchema for RetryOn {
    fn schema_name() -> Cow<'static, str> {
        "RetryOn".into()
    }

    fn inline_schema() -> bool {
        true
    }

    /// `x-kubernetes-int-or-string`: `pattern` checks the strings, the range
    /// the integers (each keyword only looks at values of its own type).
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "connect-failure, refused-stream, reset, timeout, or a 5xx status code (502 or \"502\").",
            "x-kubernetes-int-or-string": true,
            "pattern": RETRY_ON_PATTERN,
            "minimum": 500,
            "maximum": 599,
        })
    }
}

impl<'de> Deserialize<'de> for RetryOn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = RetryOn;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a retry condition: a name such as connect-failure, or a status code")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<RetryOn, E> {
                Ok(RetryOn(v.to_string()))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RetryOn, E> {
                Ok(RetryOn(v.to_string()))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RetryOn, E> {
                Ok(RetryOn(v.to_string()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Active and passive health checking of the target's endpoints.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = structural)]
pub struct HealthCheck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<ActiveHealthCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passive: Option<PassiveHealthCheck>,
}

/// Periodic `GET path` to every endpoint.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = structural)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "(has(self.timeout) ? duration(self.timeout) : duration('500ms')) <= (has(self.interval) ? duration(self.interval) : duration('10s'))",
     "message": "timeout must not exceed interval (defaults: timeout 500ms, interval 10s)"},
    {"rule": "!has(self.slowThreshold) || duration(self.slowThreshold) < (has(self.timeout) ? duration(self.timeout) : duration('500ms'))",
     "message": "slowThreshold must be below timeout (default 500ms)"}
]))]
pub struct ActiveHealthCheck {
    #[serde(default = "default_health_path")]
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"^/[^\s]*$"))]
    pub path: String,
    #[serde(
        default,
        deserialize_with = "go_duration",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "duration_schema")]
    pub interval: Option<Duration>,
    #[serde(
        default,
        deserialize_with = "go_duration",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "duration_schema")]
    pub timeout: Option<Duration>,
    /// A 2xx answer slower than this marks the endpoint Slow: it takes
    /// traffic only when no healthy endpoint is left.
    #[serde(
        default,
        deserialize_with = "go_duration",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "duration_schema")]
    pub slow_threshold: Option<Duration>,
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 100))]
    pub healthy_threshold: u32,
    #[serde(default = "two")]
    #[schemars(range(min = 1, max = 100))]
    pub unhealthy_threshold: u32,
}

/// Ejection of endpoints that fail real requests.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = structural)]
pub struct PassiveHealthCheck {
    /// Errors or timeouts in a row that eject an endpoint.
    #[serde(default = "default_consecutive_failures")]
    #[schemars(range(min = 1, max = 1000))]
    pub consecutive_failures: u32,
    #[serde(
        default,
        deserialize_with = "go_duration",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "duration_schema")]
    pub ejection_time: Option<Duration>,
    /// Never eject more than this share of a target's endpoints.
    #[serde(default = "default_max_ejection")]
    #[schemars(range(min = 0, max = 100))]
    pub max_ejection_percent: u32,
}

/// What the controller says about a policy.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = structural)]
pub struct BalancerPolicyStatus {
    /// `Accepted`, `ResolvedRefs` and `Conflicted`, each with
    /// `observedGeneration`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// A positive Go duration (`500ms`, `10s`, `1h30m`), as `metav1.Duration`
/// writes them but without a sign. No `format`: in JSON Schema `duration`
/// means ISO 8601, and Kubernetes' own `duration` format also takes `1d`
/// and spaces, which Go's `time.ParseDuration` (and [`Duration`]) refuse.
const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";

fn duration_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "maxLength": 64,
        "pattern": DURATION_PATTERN,
        "x-kubernetes-validations": [
            {"rule": "duration(self) > duration('0s')", "message": "must be greater than 0"}
        ],
    })
}

/// Reads an optional [`Duration`], naming the value when it is not one
/// (kube's own error says only "invalid float literal").
fn go_duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    let Some(text) = Option::<String>::deserialize(deserializer)? else {
        return Ok(None);
    };
    text.parse().map(Some).map_err(|e| {
        de::Error::custom(format!(
            "{text:?} is not a duration such as 500ms, 10s or 1h30m ({e})"
        ))
    })
}

/// Fits a struct's fields to a Kubernetes structural schema:
///
/// - an unset optional field is left out, never `null`: no `nullable`, so
///   the API server prunes an explicit `null` (as serde reads it: `None`)
///   instead of storing it, and a CEL `has()` is false for it;
/// - Kubernetes knows no `uint32` format: `u32` fields become `int32` (each
///   keeps its `minimum`, and every range here fits in an `i32`).
fn structural(schema: &mut Schema) {
    let Some(Value::Object(properties)) = schema.get_mut("properties") else {
        return;
    };
    for property in properties.values_mut() {
        let Value::Object(property) = property else {
            continue;
        };
        if let Some(Value::Array(types)) = property.get_mut("type") {
            types.retain(|t| t != "null");
            if let [only] = types.as_slice() {
                let only = only.clone();
                property.insert("type".into(), only);
            }
        }
        if property.get("format").and_then(Value::as_str) == Some("uint32") {
            property.insert("format".into(), "int32".into());
        }
    }
}

fn default_cookie_name() -> String {
    "RUSTSTROM_SESSION".to_string()
}
fn yes() -> bool {
    true
}
fn one() -> u32 {
    1
}
fn two() -> u32 {
    2
}
fn default_attempts() -> u32 {
    2
}
fn default_budget() -> u32 {
    20
}
/// What is retried without a `retries` block too (`RetryPolicy::default`):
/// setting only `attempts` changes only the attempts.
fn default_retry_on() -> Vec<RetryOn> {
    ["connect-failure", "refused-stream", "reset"]
        .into_iter()
        .map(|s| RetryOn(s.to_string()))
        .collect()
}
fn default_health_path() -> String {
    "/healthz".to_string()
}
fn default_consecutive_failures() -> u32 {
    5
}
fn default_max_ejection() -> u32 {
    50
}

/// The CustomResourceDefinitions RustStrom reads, as the YAML `rust-strom
/// crds` prints and `crds/ruststrom.io_balancerpolicies.yaml` holds.
pub fn crds_yaml() -> Result<String, serde_norway::Error> {
    use kube::CustomResourceExt;
    Ok(quote_yaml11_booleans(&serde_norway::to_string(
        &BalancerPolicy::crd(),
    )?))
}

/// Words YAML 1.1 reads as booleans. kubectl and Helm parse manifests as
/// YAML 1.1, so an unquoted `on:` key (the schema of `retries.on`) would
/// reach the API server as `"true"`; serde_norway writes YAML 1.2, where
/// these are plain strings, and leaves them unquoted.
const YAML11_BOOLEANS: [&str; 22] = [
    "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false",
    "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF",
];

/// Single-quotes every mapping key that YAML 1.1 would read as a boolean.
fn quote_yaml11_booleans(yaml: &str) -> String {
    let mut out = String::with_capacity(yaml.len() + 16);
    for line in yaml.split_inclusive('\n') {
        let body = line.trim_start_matches([' ', '-']);
        let indent = &line[..line.len() - body.len()];
        let quoted = body.split_once(':').and_then(|(key, rest)| {
            let plain_key = rest.is_empty() || rest.starts_with([' ', '\n']);
            (plain_key && YAML11_BOOLEANS.contains(&key)).then(|| format!("{indent}'{key}':{rest}"))
        });
        out.push_str(quoted.as_deref().unwrap_or(line));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_yaml11_reads_as_booleans_are_quoted() {
        let text = "a:\n  on:\n    type: array\n  - off: 1\n  only: on\n  no_key: 2\n";
        assert_eq!(
            quote_yaml11_booleans(text),
            "a:\n  'on':\n    type: array\n  - 'off': 1\n  only: on\n  no_key: 2\n"
        );
        let crd = crds_yaml().unwrap();
        assert!(crd.contains("'on':"), "{crd}");
        assert!(!crd.lines().any(|l| l.trim() == "on:"), "{crd}");
    }
}
