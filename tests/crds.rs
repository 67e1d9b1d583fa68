//! The committed CRD (`crds/`) and the examples (`examples/`) against it.
//!
//! - The committed file must be exactly what `rust-strom crds` prints.
//! - Its schema must be one the API server takes: structural, no `$ref`s,
//!   formats Kubernetes knows, CEL rules that compile, cost little and name
//!   only fields of the object they sit on.
//! - Every example is put through what the API server does with a
//!   BalancerPolicy (null pruning, the openAPIV3Schema, the CEL rules with
//!   defaults applied) and through what RustStrom does with one read from a
//!   file (`parse_manifest`, `compile`). Both must accept every valid example
//!   and refuse every invalid one, each for its expected reason.
//!
//! The schema is checked with the `jsonschema` crate (draft 4, the dialect
//! OpenAPI v3 schemas come from), after translating what is Kubernetes'
//! own: `nullable`, `x-kubernetes-int-or-string`, and unknown fields, which
//! `kubectl apply` refuses (strict field validation) where JSON Schema
//! would let them through.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use kube::core::cel::{ScopeContext, Validator, analyze_rule, compile_schema};
use rust_strom::compile::{CompileOptions, Compiled, compile};
use rust_strom::model::{BackendPolicy, normalize_host};
use rust_strom::source::{Object, ObjectKey, Snapshot, parse_manifest};
use serde_json::{Value, json};

const CRD_FILE: &str = "crds/ruststrom.io_balancerpolicies.yaml";
const REGENERATE: &str = "cargo run -q -- crds > crds/ruststrom.io_balancerpolicies.yaml";

/// Why each file in `examples/invalid/` is refused: `(where, what)` found
/// in one API-server error (`/json/pointer` for the schema, `dotted.path`
/// for CEL), and what RustStrom says when it reads the file itself.
const INVALID: &[(&str, (&str, &str), &str)] = &[
    (
        "consistent-hash-without-key.yaml",
        (
            "spec.loadBalancer",
            "algorithm ConsistentHash needs consistentHash",
        ),
        "algorithm ConsistentHash needs consistentHash",
    ),
    (
        "two-hash-keys.yaml",
        (
            "spec.loadBalancer.consistentHash",
            "set exactly one of header, cookie or sourceIP",
        ),
        "set exactly one of header, cookie or sourceIP",
    ),
    (
        "hash-key-without-consistent-hash.yaml",
        (
            "spec.loadBalancer",
            "consistentHash is only used with algorithm ConsistentHash",
        ),
        "consistentHash is only used with algorithm ConsistentHash",
    ),
    (
        "negative-duration.yaml",
        ("/spec/timeouts/connect", "does not match"),
        "timeouts.connect must not be negative",
    ),
    (
        "zero-duration.yaml",
        ("spec.healthCheck.active.interval", "must be greater than 0"),
        "healthCheck.active.interval must be greater than 0",
    ),
    (
        "malformed-duration.yaml",
        ("/spec/timeouts/request", "does not match"),
        "\"30 seconds\" is not a duration",
    ),
    (
        "unknown-algorithm.yaml",
        ("/spec/loadBalancer/algorithm", "is not one of"),
        "unknown variant `Fastest`",
    ),
    (
        "too-many-attempts.yaml",
        ("/spec/retries/attempts", "greater than the maximum of 10"),
        "retries.attempts must be at most 10",
    ),
    (
        "retry-on-4xx.yaml",
        ("/spec/retries/on/1", "less than the minimum of 500"),
        "\"429\" is not a retry condition",
    ),
    (
        "ingress-wrong-group.yaml",
        ("spec.targetRef", "group must be \"\" for a Service"),
        "targetRef.group must be",
    ),
    (
        "timeout-over-interval.yaml",
        (
            "spec.healthCheck.active",
            "timeout must not exceed interval",
        ),
        "healthCheck.active.timeout must not exceed interval",
    ),
    (
        "timeout-over-default-interval.yaml",
        (
            "spec.healthCheck.active",
            "timeout must not exceed interval",
        ),
        "healthCheck.active.timeout must not exceed interval",
    ),
    (
        "slow-threshold-over-timeout.yaml",
        (
            "spec.healthCheck.active",
            "slowThreshold must be below timeout",
        ),
        "healthCheck.active.slowThreshold must be below timeout",
    ),
];

// ---------------------------------------------------------------- the file

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn committed_text() -> String {
    std::fs::read_to_string(root().join(CRD_FILE))
        .unwrap_or_else(|e| panic!("{CRD_FILE}: {e}; create it with\n    {REGENERATE}"))
}

fn committed() -> Value {
    serde_norway::from_str(&committed_text()).expect("the committed CRD is YAML")
}

/// `spec.versions[0].schema.openAPIV3Schema` of the committed CRD.
fn committed_schema() -> Value {
    let crd = committed();
    let versions = crd["spec"]["versions"].as_array().expect("versions");
    assert_eq!(
        versions.len(),
        1,
        "one version: update these tests for more"
    );
    versions[0]["schema"]["openAPIV3Schema"].clone()
}

/// The line where two texts first differ, for the failure message.
fn first_difference(want: &str, got: &str) -> String {
    let (mut w, mut g) = (want.lines(), got.lines());
    for n in 1.. {
        match (w.next(), g.next()) {
            (None, None) => return "only in line endings".into(),
            (a, b) if a != b => {
                return format!("line {n}:\n  generated: {a:?}\n  committed: {b:?}");
            }
            _ => {}
        }
    }
    unreachable!()
}

#[test]
fn committed_crd_is_what_the_code_generates() {
    let want = rust_strom::crd::crds_yaml().unwrap();
    let got = committed_text();
    assert!(
        want == got,
        "{CRD_FILE} is not what src/crd.rs generates ({}); regenerate it with\n    {REGENERATE}",
        first_difference(&want, &got)
    );
}

#[test]
fn crds_subcommand_prints_one_document() {
    let out = Command::new(env!("CARGO_BIN_EXE_rust-strom"))
        .arg("crds")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.starts_with("---"), "{text}");
    assert_eq!(serde_norway::Deserializer::from_str(&text).count(), 1);
    assert_eq!(
        text,
        rust_strom::crd::crds_yaml().unwrap(),
        "`rust-strom crds` prints the generated CRD"
    );
}

// ---------------------------------------------------------------- structure

/// Formats the API server knows (k8s.io/apiextensions-apiserver
/// `supportedFormats`, plus the numeric ones); others only draw a warning
/// and validate nothing.
const KUBERNETES_FORMATS: &[&str] = &[
    "bsonobjectid",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
    "uuid3",
    "uuid4",
    "uuid5",
    "isbn",
    "isbn10",
    "isbn13",
    "creditcard",
    "ssn",
    "hexcolor",
    "rgbcolor",
    "byte",
    "password",
    "date",
    "duration",
    "datetime",
    "date-time",
    "int32",
    "int64",
    "float",
    "double",
];

/// Checks one schema node and its children against the structural-schema
/// rules; `path` is a JSON pointer into the schema, for messages.
fn check_structural(node: &Value, path: &str, errors: &mut Vec<String>) {
    let Some(obj) = node.as_object() else {
        errors.push(format!("{path}: not a schema object"));
        return;
    };
    for banned in [
        "$ref",
        "$schema",
        "definitions",
        "$defs",
        "anyOf",
        "oneOf",
        "allOf",
        "not",
        "uniqueItems",
        "additionalItems",
        "patternProperties",
        "dependencies",
        "const",
        "examples",
    ] {
        if obj.contains_key(banned) {
            errors.push(format!("{path}: has {banned}"));
        }
    }
    let flag = |key: &str| obj.get(key) == Some(&Value::Bool(true));
    let ty = obj.get("type").and_then(Value::as_str);
    let int_or_string = flag("x-kubernetes-int-or-string");
    match ty {
        Some("object" | "array" | "string" | "integer" | "number" | "boolean") => {
            if int_or_string {
                errors.push(format!("{path}: int-or-string with a type"));
            }
        }
        Some(other) => errors.push(format!("{path}: type {other:?}")),
        None if int_or_string || flag("x-kubernetes-preserve-unknown-fields") => {}
        None => errors.push(format!("{path}: no type")),
    }
    if obj.contains_key("nullable") && path != "/properties/status" {
        errors.push(format!(
            "{path}: nullable (an unset field is left out, and a null pruned)"
        ));
    }
    if let Some(format) = obj.get("format") {
        let known = format
            .as_str()
            .is_some_and(|f| KUBERNETES_FORMATS.contains(&f));
        if !known {
            errors.push(format!(
                "{path}: format {format} is not one Kubernetes knows"
            ));
        }
    }
    if let Some(values) = obj.get("enum").and_then(Value::as_array)
        && (ty != Some("string") || !values.iter().all(Value::is_string))
    {
        errors.push(format!("{path}: enum values must be strings of a string"));
    }
    if let Some(default) = obj.get("default") {
        let mut sub = node.clone();
        sub.as_object_mut().unwrap().remove("default");
        let errs = schema_errors(&to_json_schema(&sub, true), default);
        if !errs.is_empty() {
            errors.push(format!("{path}: default {default} is invalid: {errs:?}"));
        }
    }
    if let Some(rules) = obj.get("x-kubernetes-validations") {
        let props: Vec<&str> = obj
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().map(String::as_str).collect())
            .unwrap_or_default();
        for rule in rules.as_array().into_iter().flatten() {
            let text = rule["rule"].as_str().unwrap_or_default();
            if !rule["message"].is_string() {
                errors.push(format!("{path}: rule {text:?} has no message"));
            }
            // `self.x` must name a field of the object the rule sits on.
            for field in self_fields(text) {
                if !props.contains(&field) {
                    errors.push(format!(
                        "{path}: rule {text:?} reads self.{field}, not a field here"
                    ));
                }
            }
        }
    }
    if obj.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map") {
        let items = &obj["items"];
        let required: Vec<&Value> = items["required"].as_array().into_iter().flatten().collect();
        for key in obj["x-kubernetes-list-map-keys"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if !required.contains(&key) {
                errors.push(format!("{path}: list-map key {key} is not required"));
            }
        }
    }
    match ty {
        Some("object") => {
            let props = obj.get("properties").and_then(Value::as_object);
            for (name, child) in props.into_iter().flatten() {
                check_structural(child, &format!("{path}/properties/{name}"), errors);
            }
            for required in obj
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let name = required.as_str().unwrap_or_default();
                if !props.is_some_and(|p| p.contains_key(name)) {
                    errors.push(format!("{path}: required {name} is not a property"));
                }
            }
            if let Some(additional) = obj.get("additionalProperties") {
                if props.is_some() {
                    errors.push(format!("{path}: properties and additionalProperties"));
                }
                check_structural(additional, &format!("{path}/additionalProperties"), errors);
            }
        }
        Some("array") => match obj.get("items") {
            Some(items) => check_structural(items, &format!("{path}/items"), errors),
            None => errors.push(format!("{path}: array without items")),
        },
        _ => {}
    }
}

/// The `x` of every `self.x` in a CEL rule.
fn self_fields(rule: &str) -> Vec<&str> {
    rule.match_indices("self.")
        .filter(|(i, _)| !rule[..*i].ends_with(|c: char| c.is_alphanumeric() || c == '_'))
        .map(|(i, m)| {
            let rest = &rule[i + m.len()..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect()
}

#[test]
fn committed_crd_is_structural() {
    let crd = committed();
    let mut errors = Vec::new();
    check_structural(&committed_schema(), "", &mut errors);
    assert!(errors.is_empty(), "{}", errors.join("\n"));

    assert_eq!(crd["apiVersion"], "apiextensions.k8s.io/v1");
    assert_eq!(crd["kind"], "CustomResourceDefinition");
    assert_eq!(crd["metadata"]["name"], "balancerpolicies.ruststrom.io");
    assert_eq!(crd["spec"]["group"], "ruststrom.io");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(crd["spec"]["names"]["kind"], "BalancerPolicy");
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert_eq!(version["served"], true);
    assert_eq!(version["storage"], true);
    assert_eq!(version["subresources"]["status"], json!({}));
    let schema = &version["schema"]["openAPIV3Schema"];
    for path in [
        "/properties/spec/properties/targetRef",
        "/properties/status/properties/conditions",
    ] {
        assert!(schema.pointer(path).is_some(), "no {path}");
    }
}

#[test]
fn printer_columns_name_fields_of_the_schema() {
    let crd = committed();
    let version = &crd["spec"]["versions"][0];
    let schema = &version["schema"]["openAPIV3Schema"];
    let columns = version["additionalPrinterColumns"].as_array().unwrap();
    let names: Vec<&str> = columns
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Target", "Algorithm", "Accepted", "Age"]);
    for column in columns {
        let path = column["jsonPath"].as_str().unwrap();
        if path.starts_with(".metadata.") {
            continue;
        }
        // `.status.conditions[?(@.type=="Accepted")].status`: a filter
        // steps into the items.
        let mut node = schema;
        let mut rest = path;
        while let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            let field = &after[..end];
            node = &node["properties"][field];
            assert!(node.is_object(), "column {path}: no field {field}");
            rest = &after[end..];
            if rest.starts_with('[') {
                let close = rest.find("]").expect("a closed filter");
                rest = &rest[close + 1..];
                node = &node["items"];
            }
        }
        assert!(rest.is_empty(), "column {path}: cannot follow {rest}");
        assert_eq!(node["type"], column["type"], "column {path}");
    }
}

/// Every CEL rule compiles in the client-side evaluator and draws no scope
/// or cost warning.
#[test]
fn cel_rules_compile_within_the_cost_budget() {
    fn walk(
        node: &Value,
        compiled: &kube::core::cel::CompiledSchema,
        path: &str,
        seen: &mut usize,
        errors: &mut Vec<String>,
    ) {
        for error in compiled.compilation_errors() {
            errors.push(format!("{path}: {error}"));
        }
        for rule in node["x-kubernetes-validations"]
            .as_array()
            .into_iter()
            .flatten()
        {
            *seen += 1;
            let text = rule["rule"].as_str().unwrap();
            for warning in analyze_rule(text, compiled, ScopeContext::CrdValidation) {
                errors.push(format!("{path}: {text:?}: {}", warning.message));
            }
        }
        for (name, child) in node["properties"].as_object().into_iter().flatten() {
            let child_compiled = &compiled.properties[name];
            walk(
                child,
                child_compiled,
                &format!("{path}.{name}"),
                seen,
                errors,
            );
        }
        if let (Some(items), Some(compiled)) = (node.get("items"), &compiled.items) {
            walk(items, compiled, &format!("{path}[]"), seen, errors);
        }
    }
    let schema = committed_schema();
    let compiled = compile_schema(&schema);
    let (mut seen, mut errors) = (0, Vec::new());
    walk(&schema, &compiled, "", &mut seen, &mut errors);
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    assert!(
        seen >= 16,
        "only {seen} rules found: was the walk cut short?"
    );
}

// ---------------------------------------------------------------- the API server

/// The openAPIV3Schema as draft-4 JSON Schema: `nullable` and
/// `x-kubernetes-int-or-string` become types, and objects refuse unknown
/// fields. `top` adds what every object has besides its schema.
fn to_json_schema(node: &Value, top: bool) -> Value {
    let Value::Object(obj) = node else {
        return node.clone();
    };
    let mut out = serde_json::Map::new();
    for (key, value) in obj {
        match key.as_str() {
            "properties" => {
                let props = value.as_object().unwrap();
                let props = props
                    .iter()
                    .map(|(k, v)| (k.clone(), to_json_schema(v, false)))
                    .collect();
                out.insert(key.clone(), Value::Object(props));
            }
            "items" | "additionalProperties" => {
                out.insert(key.clone(), to_json_schema(value, false));
            }
            k if k.starts_with("x-kubernetes-") || k == "nullable" => {}
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    if obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        out.insert("type".into(), json!(["integer", "string"]));
    }
    if obj.get("nullable") == Some(&Value::Bool(true)) {
        let types = match out.remove("type") {
            Some(Value::Array(mut types)) => {
                types.push(json!("null"));
                types
            }
            Some(ty) => vec![ty, json!("null")],
            None => Vec::new(),
        };
        if !types.is_empty() {
            out.insert("type".into(), Value::Array(types));
        }
    }
    let preserve = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if obj.contains_key("properties") && !obj.contains_key("additionalProperties") && !preserve {
        out.insert("additionalProperties".into(), json!(false));
    }
    if top {
        let props = out
            .entry("properties")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .unwrap();
        props.insert("apiVersion".into(), json!({"type": "string"}));
        props.insert("kind".into(), json!({"type": "string"}));
        props.insert("metadata".into(), json!({"type": "object"}));
    }
    Value::Object(out)
}

/// The API server drops a `null` where the schema does not say `nullable`
/// (before defaulting and validation): such a field reads as unset.
fn prune_nulls(value: &mut Value, schema: &Value) {
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            map.retain(|key, v| {
                let child = props.and_then(|p| p.get(key));
                !(v.is_null() && child.is_some_and(|c| c.get("nullable") != Some(&json!(true))))
            });
            for (key, v) in map.iter_mut() {
                if let Some(child) = props.and_then(|p| p.get(key)) {
                    prune_nulls(v, child);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    prune_nulls(item, item_schema);
                }
            }
        }
        _ => {}
    }
}

fn schema_errors(json_schema: &Value, instance: &Value) -> Vec<String> {
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .should_validate_formats(false)
        .build(json_schema)
        .expect("the schema compiles as JSON Schema");
    validator
        .iter_errors(instance)
        .map(|e| format!("{} {}: {e}", e.instance_path(), e.kind().keyword()))
        .collect()
}

/// Everything the API server would say against `object`: schema errors
/// (`/json/pointer keyword: message`), then CEL errors (`dotted.path:
/// message`). Empty when it would store it.
fn api_server_errors(object: &Value) -> Vec<String> {
    let schema = committed_schema();
    let mut object = object.clone();
    prune_nulls(&mut object, &schema);
    let mut errors = schema_errors(&to_json_schema(&schema, true), &object);
    if let Err(cel) = Validator::new().validate(&schema, &object, None) {
        errors.extend(cel.iter().map(ToString::to_string));
    }
    errors
}

// ---------------------------------------------------------------- RustStrom

/// A Service `shop/web` with one ready endpoint, and an Ingress `shop/shop`
/// routing `shop.example.com` to it: what the examples target.
const TARGETS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: shop, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [10.0.0.1], conditions: {ready: true}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: shop, namespace: shop}
spec:
  ingressClassName: rust-strom
  rules:
  - host: shop.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
"#;

fn compile_with_targets(objects: &[Object]) -> Compiled {
    let mut all = parse_manifest(TARGETS).unwrap();
    all.extend(objects.iter().cloned());
    let snapshot: Snapshot = all.iter().collect();
    let options = CompileOptions {
        ingress_class: "rust-strom".into(),
        watch_without_class: false,
        allow_external_name: false,
        default_certificate: None,
    };
    compile(
        &snapshot,
        &options,
        1,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600),
    )
}

/// The policy of the route to `shop/web`.
fn web_policy(compiled: &Compiled) -> &BackendPolicy {
    let route = compiled
        .table
        .lookup(&normalize_host("shop.example.com"), "/")
        .expect("the fixture route");
    &route.backend.policy
}

/// What RustStrom does with a file: the policy's key and the compile for an
/// accepted policy, `Err(reason)` when the file does not parse or the policy
/// is refused.
fn ruststrom_verdict(text: &str) -> Result<(ObjectKey, Compiled), String> {
    let objects = parse_manifest(text).map_err(|e| e.to_string())?;
    let [Object::BalancerPolicy(policy)] = objects.as_slice() else {
        panic!("one BalancerPolicy per example: {objects:?}");
    };
    let key = ObjectKey::of(&policy.metadata);
    let compiled = compile_with_targets(&objects);
    let status = compiled
        .policies
        .iter()
        .find(|s| s.policy == key)
        .expect("a status for every policy")
        .clone();
    status.accepted.clone()?;
    assert_eq!(
        status.resolved_refs,
        Ok(()),
        "{key}: the fixture has every target"
    );
    assert_eq!(status.conflicted_with, None);
    Ok((key, compiled))
}

fn yaml_files(dir: &Path) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            files.insert(name, std::fs::read_to_string(&path).unwrap());
        }
    }
    files
}

fn as_json(text: &str) -> Value {
    serde_norway::from_str(text).expect("an example is one YAML document")
}

// ---------------------------------------------------------------- examples

/// The policy `e2e/kind.sh` applies in a real cluster: caught here, not
/// minutes into a kind run.
#[test]
fn the_e2e_policy_passes_the_api_server() {
    let text = std::fs::read_to_string(root().join("e2e/app.yaml")).unwrap();
    let policies: Vec<Value> = serde_norway::Deserializer::from_str(&text)
        .map(|doc| <Value as serde::Deserialize>::deserialize(doc).unwrap())
        .filter(|doc| doc["kind"] == "BalancerPolicy")
        .collect();
    assert_eq!(policies.len(), 1, "one BalancerPolicy in e2e/app.yaml");
    let errors = api_server_errors(&policies[0]);
    assert!(
        errors.is_empty(),
        "the API server would refuse it: {errors:#?}"
    );
}

#[test]
fn valid_examples_pass_the_api_server_and_compile() {
    let files = yaml_files(&root().join("examples"));
    let mut algorithms: Vec<String> = Vec::new();
    let mut failures = Vec::new();
    for (name, text) in &files {
        let object = as_json(text);
        let errors = api_server_errors(&object);
        if !errors.is_empty() {
            failures.push(format!(
                "{name}: the API server would refuse it: {errors:#?}"
            ));
        }
        match ruststrom_verdict(text) {
            Ok((key, compiled)) => {
                let on_policy: Vec<_> = compiled
                    .problems
                    .iter()
                    .filter(|p| p.object == key)
                    .collect();
                if !on_policy.is_empty() {
                    failures.push(format!("{name}: problems {on_policy:?}"));
                }
                // The policy reaches the backend (a Service's directly, an
                // Ingress's through its route).
                let source = web_policy(&compiled).source.clone();
                if source != Some(key.to_string()) {
                    failures.push(format!("{name}: the backend's policy came from {source:?}"));
                }
            }
            Err(reason) => failures.push(format!("{name}: RustStrom refuses it: {reason}")),
        }
        if let Some(a) = object
            .pointer("/spec/loadBalancer/algorithm")
            .and_then(Value::as_str)
        {
            algorithms.push(a.to_string());
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // One example per algorithm, and one for each feature.
    for algorithm in [
        "RoundRobin",
        "WeightedRoundRobin",
        "Random",
        "LeastConnection",
        "PeakEWMA",
        "IPHash",
        "ConsistentHash",
    ] {
        assert!(
            algorithms.iter().any(|a| a == algorithm),
            "no example for {algorithm}"
        );
    }
    let all = files.values().cloned().collect::<Vec<_>>().join("\n");
    for feature in [
        "stickyCookie",
        "active:",
        "passive:",
        "retries:",
        "kind: Ingress",
    ] {
        assert!(all.contains(feature), "no example with {feature}");
    }
}

#[test]
fn invalid_examples_are_refused_for_their_reason() {
    let files = yaml_files(&root().join("examples/invalid"));
    let listed: Vec<&str> = INVALID.iter().map(|(name, ..)| *name).collect();
    let on_disk: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(
        on_disk,
        {
            let mut l = listed.clone();
            l.sort_unstable();
            l
        },
        "INVALID lists every file in examples/invalid"
    );

    let mut failures = Vec::new();
    for (name, (at, api_reason), our_reason) in INVALID {
        let text = &files[*name];
        let errors = api_server_errors(&as_json(text));
        if !errors
            .iter()
            .any(|e| e.contains(at) && e.contains(api_reason))
        {
            failures.push(format!(
                "{name}: the API server should refuse it at {at} with {api_reason:?}; it says {errors:#?}"
            ));
        }
        match ruststrom_verdict(text) {
            Ok(_) => failures.push(format!("{name}: RustStrom accepts it")),
            Err(reason) if !reason.contains(our_reason) => failures.push(format!(
                "{name}: RustStrom should refuse it with {our_reason:?}; it says {reason:?}"
            )),
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// `on: [502, "503"]`: a status code is taken as a number (as YAML reads
/// `502`) or as a string, by the schema and by the parser alike.
#[test]
fn retry_codes_may_be_numbers_or_strings() {
    let text = std::fs::read_to_string(root().join("examples/retries.yaml")).unwrap();
    let object = as_json(&text);
    assert_eq!(object["spec"]["retries"]["on"][3], json!(502));
    assert_eq!(object["spec"]["retries"]["on"][4], json!("503"));
    assert_eq!(api_server_errors(&object), Vec::<String>::new());
    let (_, compiled) = ruststrom_verdict(&text).unwrap();
    let retries = &web_policy(&compiled).retries;
    assert_eq!(retries.on_status, [502, 503, 504]);
    assert_eq!(retries.attempts, 3);
    assert!(retries.on_connect_failure && retries.on_refused_stream && retries.on_reset);
    assert!(!retries.on_timeout);

    // Neither a boolean nor a status outside 5xx, in either spelling.
    for bad in [
        json!(true),
        json!(404),
        json!("404"),
        json!(600),
        json!("gateway-error"),
    ] {
        let mut object = object.clone();
        object["spec"]["retries"]["on"] = json!([bad]);
        assert!(
            !api_server_errors(&object).is_empty(),
            "on: [{bad}] passes the schema"
        );
    }
}

/// An explicit `null` for an optional field means "unset" to the API server
/// (no field is `nullable`, so it prunes the null) and to the parser alike,
/// so `has()` in a CEL rule never sees a null.
#[test]
fn null_fields_read_as_unset() {
    let text = r#"
apiVersion: ruststrom.io/v1alpha1
kind: BalancerPolicy
metadata: {name: nulls, namespace: shop}
spec:
  targetRef: {kind: Service, name: web}
  loadBalancer: {algorithm: RoundRobin, consistentHash: null, slowStart: null}
  healthCheck: {active: {timeout: null, interval: 5s}}
"#;
    assert_eq!(api_server_errors(&as_json(text)), Vec::<String>::new());
    let (_, compiled) = ruststrom_verdict(text).unwrap();
    let policy = web_policy(&compiled);
    assert_eq!(policy.hash_key, None);
    assert_eq!(policy.slow_start, None);
    assert_eq!(
        policy.active.as_ref().unwrap().interval,
        Duration::from_secs(5)
    );
}

/// The CEL rules' fallbacks for unset fields are RustStrom's defaults: a
/// check timeout exactly at the default interval passes both, one just
/// above fails both.
#[test]
fn cel_defaults_match_the_compiled_defaults() {
    let defaults = rust_strom::model::ActiveCheck::default();
    let policy = |active: Value| {
        json!({
            "apiVersion": "ruststrom.io/v1alpha1",
            "kind": "BalancerPolicy",
            "metadata": {"name": "edge", "namespace": "shop"},
            "spec": {"targetRef": {"kind": "Service", "name": "web"}, "healthCheck": {"active": active}},
        })
    };
    let ms = |d: Duration| format!("{}ms", d.as_millis());
    let cases = [
        (json!({"timeout": ms(defaults.interval)}), true),
        (
            json!({"timeout": ms(defaults.interval + Duration::from_millis(1))}),
            false,
        ),
        (json!({"interval": ms(defaults.timeout)}), true),
        (
            json!({"interval": ms(defaults.timeout - Duration::from_millis(1))}),
            false,
        ),
        (
            json!({"slowThreshold": ms(defaults.timeout - Duration::from_millis(1))}),
            true,
        ),
        (json!({"slowThreshold": ms(defaults.timeout)}), false),
    ];
    for (active, ok) in cases {
        let object = policy(active.clone());
        let api = api_server_errors(&object);
        assert_eq!(api.is_empty(), ok, "API server on {active}: {api:?}");
        let ours = ruststrom_verdict(&object.to_string()).map(|_| ());
        assert_eq!(ours.is_ok(), ok, "RustStrom on {active}: {ours:?}");
    }
}
