//! `auth-url` and its family (external authentication, as oauth2-proxy
//! users configure it), checked and parsed into an [`ExtAuth`].
//!
//! Every value that reaches a URL or a header is a [`Template`] whose
//! variables are known and whose fixed text is checked here; a bad value,
//! a missing ConfigMap or a bad header in it rejects the Ingress.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, Method, Uri};

use super::{Reader, Side, owned_by_the_proxy, parse_bool, same_namespace};
use crate::model::{AuthCache, CachePolicy, Context, ExtAuth, Template, Var, Vars};
use crate::source::{ObjectKey, Snapshot};

/// The names that only tune what `auth-url` does.
const FAMILY: [&str; 9] = [
    "auth-method",
    "auth-signin",
    "auth-signin-redirect-param",
    "auth-response-headers",
    "auth-request-redirect",
    "auth-proxy-set-headers",
    "auth-cache-key",
    "auth-cache-duration",
    "auth-always-set-cookie",
];

/// ingress-nginx's default `auth-cache-duration`.
const DEFAULT_CACHE_DURATION: &str = "200 202 401 5m";

/// The external authentication an Ingress asks for, `None` without
/// `auth-url`. `Err` names the annotation.
pub(super) fn parse(
    read: &Reader<'_>,
    namespace: &str,
    snapshot: &Snapshot,
    notices: &mut Vec<String>,
) -> Result<Option<ExtAuth>, String> {
    let Some((url_key, url)) = read.get("auth-url") else {
        for name in FAMILY {
            if let Some((key, _)) = read.get(name) {
                notices.push(format!("annotation {key} has no effect without auth-url"));
            }
        }
        return Ok(None);
    };
    let fail = |key: &str, value: &str, why: String| format!("annotation {key}: {value:?} {why}");
    let url_template = url_template(url).map_err(|why| fail(&url_key, url, why))?;
    let method = match read.get("auth-method") {
        None => Method::GET,
        Some((key, value)) => method(value).map_err(|why| fail(&key, value, why))?,
    };
    let param = match read.get("auth-signin-redirect-param") {
        None => "rd".to_string(),
        Some((key, value)) => {
            let value = value.trim();
            let ok = !value.is_empty()
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
            if !ok {
                return Err(fail(
                    &key,
                    value,
                    "is not a query parameter name (letters, digits and -._~)".into(),
                ));
            }
            value.to_string()
        }
    };
    let signin = match read.get("auth-signin") {
        None => None,
        Some((key, value)) => {
            Some(signin_template(value, &param).map_err(|why| fail(&key, value, why))?)
        }
    };
    let response_headers = match read.get("auth-response-headers") {
        None => Vec::new(),
        Some((key, value)) => header_list(value).map_err(|why| fail(&key, value, why))?,
    };
    let request_redirect = match read.get("auth-request-redirect") {
        None => None,
        Some((key, value)) => {
            Some(header_template(value.trim()).map_err(|why| fail(&key, value, why))?)
        }
    };
    let proxy_set_headers = match read.get("auth-proxy-set-headers") {
        None => Vec::new(),
        Some((key, value)) => {
            config_map_headers(value, namespace, snapshot).map_err(|why| fail(&key, value, why))?
        }
    };
    let cache = match read.get("auth-cache-key") {
        None => {
            if let Some((key, _)) = read.get("auth-cache-duration") {
                notices.push(format!(
                    "annotation {key} has no effect without auth-cache-key"
                ));
            }
            None
        }
        Some((key, value)) => {
            let template = Template::parse(value.trim()).map_err(|why| fail(&key, value, why))?;
            if !template.has_vars() {
                // A constant key would share one answer between all clients.
                return Err(fail(
                    &key,
                    value,
                    "uses no variable: every client would share one cached answer".into(),
                ));
            }
            let valid = match read.get("auth-cache-duration") {
                None => cache_durations(DEFAULT_CACHE_DURATION)?,
                Some((key, value)) => {
                    cache_durations(value).map_err(|why| fail(&key, value, why))?
                }
            };
            Some(CachePolicy {
                key: template,
                valid,
                store: Arc::new(AuthCache::default()),
            })
        }
    };
    let always_set_cookie = match read.get("auth-always-set-cookie") {
        None => false,
        Some((key, value)) => parse_bool(value)
            .ok_or_else(|| fail(&key, value, "is not \"true\" or \"false\"".into()))?,
    };
    Ok(Some(ExtAuth {
        url: url_template,
        method,
        signin,
        response_headers,
        request_redirect,
        proxy_set_headers,
        cache,
        always_set_cookie,
    }))
}

/// What a URL template may hold in its fixed text: RFC 3986's characters
/// without the fragment, quotes, spaces or backslashes.
fn url_chars(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~:/?[]@!&()*+,;=%".contains(&b))
}

/// An http or https URL, with variables: the scheme is fixed text, and the
/// URL parses (with a sample request) with a host and without user info.
pub(super) fn url_template(value: &str) -> Result<Template, String> {
    const WANT: &str =
        "is not an http or https URL (letters, digits, -._~:/?[]@!&()*+,;=% and nginx variables)";
    let value = value.trim();
    let template = Template::parse(value)?;
    if !template.literals().all(url_chars) {
        return Err(WANT.into());
    }
    let prefix = template.prefix().to_ascii_lowercase();
    if !(prefix.starts_with("http://") || prefix.starts_with("https://")) {
        return Err(
            "does not start with http:// or https:// (the scheme cannot be a variable)".into(),
        );
    }
    let uri = sample(&template)
        .parse::<Uri>()
        .map_err(|_| WANT.to_string())?;
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or("");
    if uri.host().is_none_or(str::is_empty) || authority.contains('@') {
        return Err("has no host, or has user info".into());
    }
    Ok(template)
}

/// The template expanded for a made-up request, to check its shape.
fn sample(template: &Template) -> String {
    let uri = Uri::from_static("/sample?x=1");
    let headers = http::HeaderMap::new();
    let vars = Vars {
        http_host: "sample.example",
        host: "sample.example",
        scheme: "https",
        uri: &uri,
        method: &Method::GET,
        headers: &headers,
        remote_addr: "192.0.2.1",
    };
    template.expand(&vars, Context::Url)
}

/// `auth-signin`, with `<param>=$scheme://$http_host$escaped_request_uri`
/// added unless its query already has that parameter (as ingress-nginx's
/// `buildAuthSignURL`).
fn signin_template(value: &str, param: &str) -> Result<Template, String> {
    let mut template = url_template(value)?;
    let text = value.trim();
    let query = text.split_once('?').map(|(_, q)| q);
    let has_param = query.is_some_and(|q| {
        q.split('&')
            .any(|pair| pair.split_once('=').map_or(pair, |(k, _)| k) == param)
    });
    if !has_param {
        let sep = if query.is_some() { '&' } else { '?' };
        template.push_literal(&format!("{sep}{param}="));
        template.push_var(Var::Scheme);
        template.push_literal("://");
        template.push_var(Var::HttpHost);
        template.push_var(Var::EscapedRequestUri);
    }
    Ok(template)
}

/// One of the methods the proxy forwards.
fn method(value: &str) -> Result<Method, String> {
    match value.trim() {
        m @ ("GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS") => {
            Method::from_bytes(m.as_bytes()).map_err(|_| "is not a method".into())
        }
        _ => Err("is not GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS".into()),
    }
}

/// A header name as ingress-nginx accepts one (letters, digits, `-`, `_`),
/// and not one the proxy owns.
fn header_name(raw: &str) -> Result<HeaderName, String> {
    let ok = !raw.is_empty()
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let name = HeaderName::from_bytes(raw.as_bytes())
        .ok()
        .filter(|_| ok)
        .ok_or_else(|| format!("names {raw:?}, which is not a header name"))?;
    if owned_by_the_proxy(&name, Side::Request) {
        return Err(format!("names {raw:?}, which the proxy sets itself"));
    }
    Ok(name)
}

/// `auth-response-headers`: comma-separated header names.
fn header_list(value: &str) -> Result<Vec<HeaderName>, String> {
    let mut out = Vec::new();
    for raw in value.split(',').map(str::trim).filter(|h| !h.is_empty()) {
        let name = header_name(raw)?;
        if !out.contains(&name) {
            out.push(name);
        }
    }
    if out.is_empty() {
        return Err("lists no header".into());
    }
    Ok(out)
}

/// A header value with variables: no control characters in the fixed text
/// (a value from the request is already a valid header value).
fn header_template(value: &str) -> Result<Template, String> {
    let template = Template::parse(value)?;
    if !template
        .literals()
        .all(|t| t.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f)))
    {
        return Err("has a control character".into());
    }
    Ok(template)
}

/// The headers of the ConfigMap `auth-proxy-set-headers` names (in the
/// Ingress's namespace, as ingress-nginx allows by default).
fn config_map_headers(
    value: &str,
    namespace: &str,
    snapshot: &Snapshot,
) -> Result<Vec<(HeaderName, Template)>, String> {
    let key = same_namespace(value, namespace)?;
    let map = snapshot
        .config_maps
        .get(&key)
        .ok_or_else(|| format!("names ConfigMap {key}, which is not found"))?;
    let mut out = Vec::new();
    for (raw, v) in map.data.iter().flatten() {
        let name = header_name(raw).map_err(|why| format!("(ConfigMap {key}) {why}"))?;
        let template = header_template(v)
            .map_err(|why| format!("(ConfigMap {key}) sets {raw:?} to a value that {why}"))?;
        out.push((name, template));
    }
    Ok(out)
}

/// `auth-cache-duration`: comma-separated entries of status codes and one
/// time, as nginx's `proxy_cache_valid` (`200 202 10m, 401 1m`).
fn cache_durations(value: &str) -> Result<Vec<(Vec<u16>, Duration)>, String> {
    const WANT: &str = "is not a list of status codes and a time, such as \"200 202 401 5m\"";
    let mut out = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let mut words: Vec<&str> = entry.split_whitespace().collect();
        let time = words.pop().ok_or(WANT)?;
        let ttl = nginx_time(time).ok_or(WANT)?;
        let mut codes = Vec::new();
        for word in words {
            if word.eq_ignore_ascii_case("any") {
                codes.extend(100..=599);
                continue;
            }
            let code: u16 = word.parse().map_err(|_| WANT)?;
            if !(100..=599).contains(&code) {
                return Err(WANT.into());
            }
            codes.push(code);
        }
        out.push((codes, ttl));
    }
    if out.is_empty() {
        return Err(WANT.into());
    }
    Ok(out)
}

/// nginx's time syntax: a number and a unit (`ms`, `s`, `m`, `h`, `d`,
/// `w`, `M`, `y`), or several (`1h30m`).
fn nginx_time(text: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (Duration::from_millis(1), 2)
        } else {
            let secs = match rest.as_bytes().first()? {
                b's' => 1,
                b'm' => 60,
                b'h' => 3600,
                b'd' => 86_400,
                b'w' => 7 * 86_400,
                b'M' => 30 * 86_400,
                b'y' => 365 * 86_400,
                _ => return None,
            };
            (Duration::from_secs(secs), 1)
        };
        rest = &rest[len..];
        total = total.checked_add(unit.checked_mul(u32::try_from(n).ok()?)?)?;
    }
    (!total.is_zero()).then_some(total)
}

/// The cluster Service an `auth-url` names, when it names one: a plain
/// `http://` URL whose fixed host is `svc.ns.svc.cluster.local`,
/// `svc.ns.svc`, `svc.ns`, or `svc` (the Ingress's namespace, as a pod's
/// DNS search path reads it), naming a Service of the snapshot with a port
/// of the URL's number (80 by default). Its subrequests then go to that
/// Service's endpoints through the upstream pools; any other URL is asked
/// through DNS. `https://` URLs always are (backends are spoken to in plain
/// HTTP).
pub(in crate::compile) fn service_target(
    url: &Template,
    namespace: &str,
    snapshot: &Snapshot,
) -> Option<(ObjectKey, u16)> {
    let rest = url.prefix().strip_prefix("http://")?;
    // The whole authority must be fixed text: it ends where the path or
    // the query starts, before any variable.
    let end = rest.find(['/', '?'])?;
    let authority: http::uri::Authority = rest[..end].parse().ok()?;
    let port = authority.port_u16().unwrap_or(80);
    let host = authority.host().to_ascii_lowercase();
    let labels: Vec<&str> = host.split('.').collect();
    let (service, ns) = match labels.as_slice() {
        [svc] => (*svc, namespace),
        [svc, ns] | [svc, ns, "svc"] | [svc, ns, "svc", "cluster", "local"] => (*svc, *ns),
        _ => return None,
    };
    let key = ObjectKey::new(ns, service);
    let spec = snapshot.services.get(&key)?.spec.as_ref()?;
    let has_port = spec
        .ports
        .iter()
        .flatten()
        .any(|p| p.port == i32::from(port));
    has_port.then_some((key, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_need_a_fixed_http_scheme_and_a_host() {
        for good in [
            "http://oauth2-proxy.auth.svc.cluster.local:4180/oauth2/auth",
            "https://$host/oauth2/auth",
            "https://auth.example.com/check?from=$escaped_request_uri",
        ] {
            assert!(url_template(good).is_ok(), "{good}");
        }
        for bad in [
            "ftp://x/",
            "$scheme://x/",
            "http://",
            "http://user:pw@x/",
            "http://x/ a",
            "http://x/\"",
            "http://x/$nope",
            "//x/",
        ] {
            assert!(url_template(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn signin_gets_the_redirect_parameter_unless_it_has_one() {
        let t =
            signin_template("https://$host/oauth2/start?rd=$escaped_request_uri", "rd").unwrap();
        assert_eq!(
            sample(&t),
            "https://sample.example/oauth2/start?rd=%2Fsample%3Fx%3D1"
        );
        let t = signin_template("https://login.example/start", "next").unwrap();
        assert_eq!(
            sample(&t),
            "https://login.example/start?next=https://sample.example%2Fsample%3Fx%3D1"
        );
        let t = signin_template("https://login.example/start?a=1", "rd").unwrap();
        assert!(sample(&t).starts_with("https://login.example/start?a=1&rd=https://"));
    }

    #[test]
    fn cache_durations_parse_as_nginx_does() {
        assert_eq!(
            cache_durations("200 202 401 5m").unwrap(),
            vec![(vec![200, 202, 401], Duration::from_secs(300))]
        );
        assert_eq!(
            cache_durations("200 10m, 401 30s").unwrap(),
            vec![
                (vec![200], Duration::from_secs(600)),
                (vec![401], Duration::from_secs(30))
            ]
        );
        assert_eq!(
            cache_durations("1h30m").unwrap(),
            vec![(vec![], Duration::from_secs(5400))]
        );
        for bad in ["", "200", "200 5x", "5m 200", "99 5m", "0s"] {
            assert!(cache_durations(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn header_names_are_checked() {
        assert_eq!(
            header_list("X-Auth-Request-User, X-Auth-Request-Email,")
                .unwrap()
                .len(),
            2
        );
        for bad in ["", "X Bad", "Host", "Content-Length", "X-Forwarded-For"] {
            assert!(header_list(bad).is_err(), "{bad}");
        }
    }

    use crate::source::ObjectKey;

    fn snapshot_with(data: &[(&str, &str)]) -> Snapshot {
        use k8s_openapi::api::core::v1::ConfigMap;
        let mut map = ConfigMap::default();
        map.metadata.name = Some("auth-headers".into());
        map.metadata.namespace = Some("shop".into());
        map.data = Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        let mut snapshot = Snapshot::default();
        snapshot
            .config_maps
            .insert(ObjectKey::new("shop", "auth-headers"), Arc::new(map));
        snapshot
    }

    #[test]
    fn config_map_headers_are_read_and_checked() {
        let snapshot = snapshot_with(&[("X-Team", "platform"), ("X-Host", "$host")]);
        let headers = config_map_headers("auth-headers", "shop", &snapshot).unwrap();
        assert_eq!(headers.len(), 2);
        assert!(config_map_headers("shop/auth-headers", "shop", &snapshot).is_ok());
        for (value, ns, why) in [
            ("other/auth-headers", "shop", "another namespace"),
            ("missing", "shop", "not found"),
            ("auth-headers", "web", "not found"),
        ] {
            let err = config_map_headers(value, ns, &snapshot).unwrap_err();
            assert!(err.contains(why), "{value}: {err}");
        }
        for (key, value) in [("Bad Name", "x"), ("Host", "x"), ("X-Ok", "$nope")] {
            let snapshot = snapshot_with(&[(key, value)]);
            assert!(
                config_map_headers("auth-headers", "shop", &snapshot).is_err(),
                "{key}: {value}"
            );
        }
    }

    #[test]
    fn a_cache_key_must_vary() {
        let annotations: std::collections::BTreeMap<String, String> = [
            ("nginx.ingress.kubernetes.io/auth-url", "http://auth/"),
            ("nginx.ingress.kubernetes.io/auth-cache-key", "constant"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let read = Reader {
            annotations: &annotations,
        };
        let err = parse(&read, "shop", &Snapshot::default(), &mut Vec::new()).unwrap_err();
        assert!(err.contains("uses no variable"), "{err}");
    }
}
