//! The Helm chart in `charts/rust-strom` against the real binary:
//!
//! - every flag and environment variable the chart gives the container is
//!   accepted: the chart is rendered with default values and with each
//!   values file in `charts/rust-strom/ci/`, and the binary started with the
//!   container's args and env against the fake API server until `/readyz`
//!   answers 200, and every API call it made is allowed by the RBAC that
//!   same rendering creates;
//! - the Grafana dashboard and the alert rules query only metric names the
//!   binary exports, compared with a scrape taken after real traffic;
//! - every key of `values.yaml` is documented in the chart's README.
//!
//! Rendering needs helm: `$HELM`, else `helm` on PATH. `scripts/test`
//! installs one and sets `HELM`; without one the rendering tests fail and
//! say how to get it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use fake_apiserver::{FakeApiServer, ResourceType};
use http::StatusCode;
use serde::Deserialize;
use serde_json::Value;
use support::tls::{gen_cert, tls_ingress, tls_secret};
use support::*;

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/rust-strom");
/// Room for the initial lists and the first compile on a busy machine.
const LIVE: Duration = Duration::from_secs(20);
const RELEASE: &str = "rust-strom";
const NAMESPACE: &str = "rust-strom";
/// What the test puts where the pod would read the dashboard's Secret.
const DASHBOARD_TOKEN: &str = "chart-dashboard-token";

// ---------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------

/// The helm binary, or a failure saying how to get one.
fn helm() -> PathBuf {
    if let Some(helm) = std::env::var_os("HELM").filter(|h| !h.is_empty()) {
        return PathBuf::from(helm);
    }
    let on_path = Command::new("helm")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        on_path,
        "helm not found: these tests render charts/rust-strom with it. \
         Run scripts/test (it installs helm and sets HELM), or \
         `source scripts/tools` and then `HELM=\"$HELM\" cargo test --test chart`"
    );
    PathBuf::from("helm")
}

/// Every values file the chart is checked with: none (the defaults), then
/// each file in `ci/`.
fn values_files() -> Vec<Option<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(Path::new(CHART).join("ci"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with("-values.yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "values files in ci/: {files:?}");
    std::iter::once(None)
        .chain(files.into_iter().map(Some))
        .collect()
}

/// `helm template` of the chart, one JSON value per document.
fn render(values: Option<&Path>) -> Vec<Value> {
    let mut cmd = Command::new(helm());
    cmd.args(["template", RELEASE, CHART, "--namespace", NAMESPACE]);
    if let Some(values) = values {
        cmd.arg("--values").arg(values);
    }
    let out = cmd.output().expect("cannot run helm");
    assert!(
        out.status.success(),
        "helm template failed ({values:?}):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// The controller container's args, and its env with the downward API
/// filled in as the kubelet would.
fn container(docs: &[Value]) -> (Vec<String>, Vec<(String, String)>) {
    let workload = docs
        .iter()
        .find(|d| d["kind"] == "Deployment" || d["kind"] == "DaemonSet")
        .expect("a Deployment or DaemonSet");
    let containers = workload["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    let controller = containers
        .iter()
        .find(|c| c["name"] == "controller")
        .unwrap();
    let args = controller["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().expect("args are strings").to_string())
        .collect();
    let env = controller["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let name = e["name"].as_str().unwrap().to_string();
            let value = match (&e["value"], &e["valueFrom"]["fieldRef"]["fieldPath"]) {
                (Value::String(v), _) => v.clone(),
                (_, Value::String(path)) if path == "metadata.name" => "rust-strom-7d9f-x2".into(),
                (_, Value::String(path)) if path == "metadata.namespace" => NAMESPACE.into(),
                // The one Secret the pod reads: the dashboard's token.
                _ if e["valueFrom"]["secretKeyRef"]["name"].is_string() => DASHBOARD_TOKEN.into(),
                other => panic!("env {name}: cannot fill in {other:?}"),
            };
            (name, value)
        })
        .collect();
    (args, env)
}

// ---------------------------------------------------------------------------
// RBAC of a rendering
// ---------------------------------------------------------------------------

/// Rules granted to the chart's ServiceAccount: `namespace` None for a
/// ClusterRoleBinding (everywhere), else the binding's namespace.
#[derive(Debug)]
struct Grant {
    namespace: Option<String>,
    groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
}

fn grants(docs: &[Value]) -> Vec<Grant> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    let role = |kind: &str, name: &str, namespace: Option<&str>| {
        docs.iter()
            .find(|d| {
                d["kind"] == kind
                    && d["metadata"]["name"] == name
                    && namespace.is_none_or(|ns| d["metadata"]["namespace"] == ns)
            })
            .unwrap_or_else(|| panic!("{kind} {name} is bound but not rendered"))
    };
    let mut out = Vec::new();
    for binding in docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRoleBinding" || d["kind"] == "RoleBinding")
    {
        let ours = binding["subjects"].as_array().unwrap().iter().any(|s| {
            s["kind"] == "ServiceAccount" && s["name"] == RELEASE && s["namespace"] == NAMESPACE
        });
        if !ours {
            continue;
        }
        let namespace = binding["metadata"]["namespace"].as_str();
        let role_kind = binding["roleRef"]["kind"].as_str().unwrap();
        let role_name = binding["roleRef"]["name"].as_str().unwrap();
        let role = role(
            role_kind,
            role_name,
            if role_kind == "Role" { namespace } else { None },
        );
        for rule in role["rules"].as_array().unwrap() {
            out.push(Grant {
                namespace: if binding["kind"] == "ClusterRoleBinding" {
                    None
                } else {
                    Some(namespace.unwrap().to_string())
                },
                groups: strings(&rule["apiGroups"]),
                resources: strings(&rule["resources"]),
                verbs: strings(&rule["verbs"]),
            });
        }
    }
    out
}

/// `(group, resource[/sub], verb, namespace)` of one request; `None` for
/// discovery and other non-resource paths.
fn access(
    path: &str,
    query: &str,
    method: &str,
) -> Option<(String, String, String, Option<String>)> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        rest => (None, rest),
    };
    let (resource, name) = match rest {
        [resource] => (resource.to_string(), None),
        [resource, name] => (resource.to_string(), Some(*name)),
        [resource, name, sub] => (format!("{resource}/{sub}"), Some(*name)),
        _ => return None,
    };
    if rest.is_empty() {
        return None;
    }
    let watching = query
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1");
    let verb = match (method, name) {
        ("GET", _) if watching => "watch",
        ("GET", Some(_)) => "get",
        ("GET", None) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", _) => "delete",
        _ => return None,
    };
    Some((group.to_string(), resource, verb.to_string(), namespace))
}

fn allowed(
    grants: &[Grant],
    (group, resource, verb, namespace): &(String, String, String, Option<String>),
) -> bool {
    let any = |list: &[String], want: &str| list.iter().any(|x| x == want || x == "*");
    grants.iter().any(|g| {
        g.namespace
            .as_ref()
            .is_none_or(|ns| namespace.as_ref() == Some(ns))
            && any(&g.groups, group)
            && any(&g.resources, resource)
            && any(&g.verbs, verb)
    })
}

// ---------------------------------------------------------------------------
// The binary accepts what the chart gives it
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_accepts_the_charts_args_and_env_and_its_rbac() {
    for values in values_files() {
        let docs = render(values.as_deref());
        let (args, env) = container(&docs);
        let which = values
            .as_deref()
            .map_or("default values".to_string(), |p| p.display().to_string());

        let server = FakeApiServer::start().await.unwrap();
        server.register(
            ResourceType::new(
                "ruststrom.io",
                "v1alpha1",
                "balancerpolicies",
                "BalancerPolicy",
                true,
            )
            .with_status(),
        );
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        server.write_kubeconfig(&kubeconfig).unwrap();

        // In the pod the service account is the API server, and the
        // listeners take the container ports; here a kubeconfig and free
        // ports on loopback. Nothing else is added or changed.
        for flag in [
            "--kubeconfig",
            "--http-addr",
            "--https-addr",
            "--metrics-addr",
        ] {
            assert!(
                !args.iter().any(|a| a.starts_with(flag)),
                "{which}: the chart passes {flag}, which this test replaces"
            );
        }
        // The dashboard keeps the address the chart gives it, on a free
        // port (the chart's is fixed, and tests run side by side).
        let mut full: Vec<String> = args
            .iter()
            .map(|a| match a.strip_prefix("--dashboard-addr=") {
                Some(addr) => {
                    let addr: std::net::SocketAddr = addr.parse().unwrap();
                    format!("--dashboard-addr={}:0", addr.ip())
                }
                None => a.clone(),
            })
            .collect();
        full.extend(
            [
                "--kubeconfig",
                kubeconfig.to_str().unwrap(),
                "--http-addr",
                "127.0.0.1:0",
                "--metrics-addr",
                "127.0.0.1:0",
            ]
            .map(String::from),
        );
        let mut proxy = Proxy::start_env(&full, &env).await;
        wait_until(LIVE, &format!("{which}: /readyz 200"), || async {
            proxy.admin("/readyz").await.status == StatusCode::OK
        })
        .await;
        // The dashboard: on (with the token from the chart's Secret when it
        // listens beyond loopback) or off, as the values say.
        let dashboard_on = !args.iter().any(|a| a == "--dashboard=false");
        assert_eq!(proxy.dashboard_port.is_some(), dashboard_on, "{which}");
        if let Some(port) = proxy.dashboard_port {
            let mut req = http::Request::get("/api/summary").header("host", "localhost");
            if env.iter().any(|(k, _)| k == "RUST_STROM_DASHBOARD_TOKEN") {
                req = req.header("authorization", format!("Bearer {DASHBOARD_TOKEN}"));
            }
            let resp = send(
                port,
                req.body(http_body_util::Empty::<bytes::Bytes>::new())
                    .unwrap(),
            )
            .await;
            assert_eq!(
                resp.status,
                StatusCode::OK,
                "{which}: dashboard {}",
                resp.body
            );
        }
        // Long enough for the first leader election round.
        wait_until(LIVE, &format!("{which}: a leader"), || async {
            proxy.metric("leader_is_leader").await == Some(1.0)
        })
        .await;
        proxy.signal("TERM");
        let exit = proxy.wait_exit(LIVE).await;
        assert!(
            exit.is_some_and(|s| s.success()),
            "{which}: no clean exit on SIGTERM ({exit:?}) with args {args:?}"
        );

        let grants = grants(&docs);
        let mut denied = BTreeSet::new();
        for r in server.requests() {
            if let Some(a) = access(&r.path, &r.query, r.method.as_str())
                && !allowed(&grants, &a)
            {
                denied.insert(a);
            }
        }
        assert!(
            denied.is_empty(),
            "{which}: calls the rendered RBAC does not allow: {denied:#?}"
        );
    }
}

#[test]
fn the_chart_passes_no_flag_the_binary_lacks() {
    // A quicker, clearer failure than the start above: every flag name the
    // chart renders appears in the binary's --help.
    let help = String::from_utf8(run_bin(&["--help"]).stdout).unwrap();
    for values in values_files() {
        let (args, _) = container(&render(values.as_deref()));
        for arg in &args {
            let flag = arg.split('=').next().unwrap();
            assert!(
                flag.starts_with("--") && help.contains(&format!("{flag} ")),
                "{values:?}: {flag} is not a flag of the binary:\n{help}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Dashboard and alerts use real metric names
// ---------------------------------------------------------------------------

/// Metric names in a PromQL expression: identifiers that are not
/// functions, keywords, label names (in `{}` or `by (...)`), durations or
/// strings.
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Aggregations read like functions but may put `by (...)` before
    // their parenthesis.
    const AGGREGATIONS: [&str; 12] = [
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    const KEYWORDS: [&str; 12] = [
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "offset",
        "inf",
    ];
    // Drop strings, label matchers and range selectors.
    let mut text = String::new();
    let mut skip_until: Option<char> = None;
    for c in expr.chars() {
        match skip_until {
            Some(end) if c == end => skip_until = None,
            Some(_) => {}
            None => match c {
                '"' => skip_until = Some('"'),
                '{' => skip_until = Some('}'),
                '[' => skip_until = Some(']'),
                c => text.push(c),
            },
        }
    }
    let chars: Vec<char> = text.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let mut after_grouping = false;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            let lower = word.to_ascii_lowercase();
            if [
                "by",
                "without",
                "on",
                "ignoring",
                "group_left",
                "group_right",
            ]
            .contains(&lower.as_str())
            {
                after_grouping = true;
            } else if next == Some(&'(')
                || KEYWORDS.contains(&lower.as_str())
                || AGGREGATIONS.contains(&lower.as_str())
            {
                // a function
            } else {
                names.insert(word);
            }
            continue;
        }
        if c == '(' && after_grouping {
            // Skip the label list.
            while i < chars.len() && chars[i] != ')' {
                i += 1;
            }
            after_grouping = false;
        } else if c.is_ascii_digit() || c == '.' {
            // A number (1e3, 0.99): skip it whole.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            continue;
        } else if !c.is_whitespace() {
            after_grouping = false;
        }
        i += 1;
    }
    names
}

#[test]
fn metric_names_are_read_from_promql() {
    assert_eq!(
        metric_names(
            r#"histogram_quantile(0.99, sum by (backend, le) (rate(backend_response_time_seconds_bucket{namespace=~"$ns"}[$__rate_interval]))) > 1e3"#
        ),
        BTreeSet::from(["backend_response_time_seconds_bucket".to_string()])
    );
    assert_eq!(
        metric_names(
            "min by (secret) (tls_certificate_expiry_timestamp_seconds) - time() < 14 * 86400 and on (namespace) up"
        ),
        BTreeSet::from([
            "tls_certificate_expiry_timestamp_seconds".to_string(),
            "up".to_string()
        ])
    );
}

/// Every `expr` in the dashboard and the alert rules.
fn queries() -> Vec<(String, String)> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr", Value::String(e)) => out.push(e.clone()),
                        // A Grafana variable: `label_values(METRIC, LABEL)`.
                        ("definition", Value::String(e)) => {
                            let inner = e.trim().strip_prefix("label_values(").unwrap_or(e);
                            out.push(inner.split(',').next().unwrap_or(inner).to_string());
                        }
                        _ => walk(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(CHART).join("files/dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut exprs = Vec::new();
    walk(&dashboard, &mut exprs);
    let mut out: Vec<(String, String)> = exprs
        .into_iter()
        .map(|e| ("dashboard.json".to_string(), e))
        .collect();
    let alerts: Value = serde_norway::from_str(
        &std::fs::read_to_string(Path::new(CHART).join("files/alerts.yaml")).unwrap(),
    )
    .unwrap();
    for group in alerts["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            out.push((
                format!("alerts.yaml {}", rule["alert"]),
                rule["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alerts_query_only_exported_metrics() {
    let web = echo("web").await;
    let dir = tempfile::tempdir().unwrap();
    let cert = gen_cert(&["secure.local"]);
    write(
        dir.path(),
        "app.yaml",
        &docs(&[
            backend_objects("shop", "web", &[web]),
            tls_secret("shop", "shop-tls", &cert),
            ingress("shop", "web", "shop.local", &[("/", "Prefix", "web")]),
            tls_ingress(
                "shop",
                "secure",
                &["secure.local"],
                "web",
                &[],
                &[(&["secure.local"], "shop-tls")],
            ),
            ingress(
                "shop",
                "broken",
                "broken.local",
                &[("/", "Prefix", "missing")],
            ),
        ]),
    );
    let proxy = Proxy::start(dir.path(), &[]).await;
    wait_until(DEADLINE, "routed", || {
        routes_to(proxy.http_port, "shop.local", "/", "web")
    })
    .await;
    for _ in 0..5 {
        proxy.get("shop.local", "/").await;
        proxy.get("nothing.local", "/").await;
    }
    // Endpoint states are published periodically, from the first request on.
    wait_until(DEADLINE, "backend_endpoints in the scrape", || async {
        proxy.metrics().await.contains("backend_endpoints{")
    })
    .await;
    let scrape = proxy.metrics().await;
    let exported: BTreeSet<&str> = scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();

    let queries = queries();
    assert!(queries.len() > 20, "too few queries found: {queries:?}");
    let mut unknown = Vec::new();
    for (source, expr) in &queries {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{source}: no metric in {expr}");
        for name in names {
            if !exported.contains(name.as_str()) {
                unknown.push(format!("{source}: {name}"));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "metric names the binary does not export: {unknown:#?}\nexported: {exported:#?}"
    );
}

// ---------------------------------------------------------------------------
// values.yaml is documented
// ---------------------------------------------------------------------------

/// Maps whose keys are the user's own (labels, annotations, resources):
/// documented as one value.
const FREE_FORM: [&str; 3] = ["labels", "annotations", "resources"];

fn value_keys(prefix: &str, value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                if FREE_FORM.contains(&k.as_str()) {
                    out.push(key);
                } else {
                    value_keys(&key, v, out);
                }
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

#[test]
fn every_value_is_documented_in_the_charts_readme() {
    let values: Value = serde_norway::from_str(
        &std::fs::read_to_string(Path::new(CHART).join("values.yaml")).unwrap(),
    )
    .unwrap();
    let readme = std::fs::read_to_string(Path::new(CHART).join("README.md")).unwrap();
    let mut keys = Vec::new();
    value_keys("", &values, &mut keys);
    assert!(keys.len() > 40, "{keys:?}");
    let missing: Vec<&String> = keys
        .iter()
        .filter(|k| !readme.contains(&format!("`{k}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "values.yaml keys not documented in charts/rust-strom/README.md: {missing:#?}"
    );
}
