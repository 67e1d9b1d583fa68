//! An Ingress's annotations, under `ruststrom.io/` and
//! `nginx.ingress.kubernetes.io/`, checked and parsed once into the typed
//! policy of its routes.
//!
//! Fail closed: a refused annotation (one RustStrom cannot honour and whose
//! absence could open or misroute traffic), a value that does not parse, or
//! an unknown `ruststrom.io/` name rejects the whole Ingress. Annotations
//! without effect here are accepted with a notice.

mod basic_auth;
mod cors;
mod custom_headers;
mod ext_auth;
mod limits;
mod list;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use http::{HeaderName, HeaderValue, StatusCode, Uri};
use ipnet::IpNet;
use k8s_openapi::api::networking::v1::Ingress;

use list::Status;

use crate::model::{
    Encoding, Encodings, ErrorCodes, HeaderEdits, HttpsPolicy, Redirect, RouteFeatures,
    SourceRanges,
};
use crate::source::{ObjectKey, Snapshot};

pub(super) use ext_auth::service_target;

pub const RUSTSTROM: &str = "ruststrom.io/";
pub const NGINX: &str = "nginx.ingress.kubernetes.io/";

/// `"false"` keeps plain HTTP for hosts that have TLS.
pub const SSL_REDIRECT: &str = "ruststrom.io/ssl-redirect";
/// `"true"` redirects plain HTTP even for hosts without TLS here.
pub const FORCE_SSL_REDIRECT: &str = "ruststrom.io/force-ssl-redirect";
/// `"max-age=31536000; includeSubDomains"`: the `Strict-Transport-Security`
/// value for HTTPS responses.
pub const HSTS: &str = "ruststrom.io/hsts";

/// What an accepted Ingress's annotations ask of its routes.
#[derive(Debug, Default)]
pub(super) struct Parsed {
    pub(super) https: Arc<HttpsPolicy>,
    /// `None` when no request-path feature is asked.
    pub(super) features: Option<Arc<RouteFeatures>>,
    /// Accepted without effect: one line per annotation, for a warning.
    pub(super) notices: Vec<String>,
    /// `from-to-www-redirect`: the other name of each host (with or without
    /// `www.`) redirects to it.
    pub(super) from_to_www: bool,
    /// `default-backend`: the annotation's key and the Service it names,
    /// resolved by the caller.
    pub(super) default_backend: Option<(String, String)>,
    /// `server-alias`: more names for the Ingress's hosts, sorted, each
    /// once.
    pub(super) aliases: Vec<String>,
}

/// Checks every annotation and parses the honoured ones, reading the
/// Secrets they name in `namespace` from `snapshot`. `owner` names the
/// Ingress (namespace, name and uid): its rate limits keep their counters
/// across compiles under that name. `Err` is the reason the Ingress is
/// rejected, naming the annotation.
pub(super) fn parse(
    annotations: Option<&BTreeMap<String, String>>,
    namespace: &str,
    owner: &str,
    snapshot: &Snapshot,
) -> Result<Parsed, String> {
    let Some(annotations) = annotations else {
        return Ok(Parsed::default());
    };
    let mut notices = Vec::new();
    for (key, value) in annotations {
        check(key, value, &mut notices)?;
    }
    let read = Reader { annotations };
    let https = HttpsPolicy {
        ssl_redirect: read.bool("ssl-redirect")?.unwrap_or(true),
        force_ssl_redirect: read.bool("force-ssl-redirect")?.unwrap_or(false),
        hsts: read.parse("hsts", hsts)?,
    };
    let allow = match read.parse("allowlist-source-range", cidrs)? {
        Some(list) => Some(list),
        None => read.parse("whitelist-source-range", cidrs)?,
    };
    let deny = read.parse("denylist-source-range", cidrs)?;
    let source_ranges = (allow.is_some() || deny.is_some()).then(|| SourceRanges {
        allow: allow.unwrap_or_default(),
        deny: deny.unwrap_or_default(),
    });
    let basic_auth = match read.get("auth-type") {
        Some((key, auth_type)) => {
            let asked = basic_auth::Asked {
                auth_type,
                secret: read.get("auth-secret").map(|(_, v)| v),
                secret_type: read.get("auth-secret-type").map(|(_, v)| v),
                realm: read.get("auth-realm").map(|(_, v)| v),
            };
            let users = basic_auth::load(&asked, namespace, snapshot)
                .map_err(|why| format!("annotation {key}: {why}"))?;
            Some(users)
        }
        None => {
            // As ingress-nginx: without auth-type there is no authentication.
            for name in ["auth-secret", "auth-secret-type", "auth-realm"] {
                if let Some((key, _)) = read.get(name) {
                    notices.push(format!(
                        "annotation {key} has no effect without auth-type: basic"
                    ));
                }
            }
            None
        }
    };
    let limits = limits::parse(&read, owner, &mut notices)?;
    let cors = cors::parse(&read, &mut notices)?;
    let ext_auth = ext_auth::parse(&read, namespace, snapshot, &mut notices)?;
    let features = RouteFeatures {
        basic_auth,
        ext_auth,
        limits,
        cors,
        app_root: read.parse("app-root", app_root)?,
        redirect: redirect(&read)?,
        source_ranges,
        max_body: read.parse("proxy-body-size", body_size)?.flatten(),
        upstream_vhost: read.parse("upstream-vhost", upstream_vhost)?,
        forwarded_prefix: read.parse("x-forwarded-prefix", forwarded_prefix)?,
        custom_headers: match read.get("custom-headers") {
            Some((key, value)) => custom_headers::load(value, namespace, snapshot)
                .map_err(|why| format!("annotation {key}: {why}"))?,
            None => None,
        },
        request_headers: read.parse("request-headers", |v| header_edits(v, Side::Request))?,
        response_headers: read.parse("response-headers", |v| header_edits(v, Side::Response))?,
        compression: read.parse("compression", compression)?,
        custom_http_errors: read.parse("custom-http-errors", error_codes)?,
    };
    let default_backend = match read.get("default-backend") {
        Some((key, value)) => {
            let name =
                service_name(value).map_err(|why| format!("annotation {key}: {value:?} {why}"))?;
            Some((key, name))
        }
        None => None,
    };
    Ok(Parsed {
        https: Arc::new(https),
        features: (!features.is_empty()).then(|| Arc::new(features)),
        notices,
        from_to_www: read.bool("from-to-www-redirect")?.unwrap_or(false),
        default_backend,
        aliases: read
            .parse("server-alias", server_aliases)?
            .unwrap_or_default(),
    })
}

/// The Secrets and ConfigMaps an Ingress's annotations name, in its own
/// namespace (a name in another one is refused when the Ingress compiles).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct NamedObjects {
    pub secrets: Vec<ObjectKey>,
    pub config_maps: Vec<ObjectKey>,
}

/// What cluster mode must watch for an Ingress's annotations to compile:
/// `auth-secret`, `custom-headers`, `auth-proxy-set-headers`.
pub fn named_objects(ingress: &Ingress) -> NamedObjects {
    let mut named = NamedObjects::default();
    let Some(annotations) = ingress.metadata.annotations.as_ref() else {
        return named;
    };
    let namespace = ObjectKey::of(&ingress.metadata).namespace;
    let read = Reader { annotations };
    let key = |name: &str| {
        let (_, value) = read.get(name)?;
        same_namespace(value, &namespace).ok()
    };
    named.secrets.extend(key("auth-secret"));
    named.config_maps.extend(key("custom-headers"));
    named.config_maps.extend(key("auth-proxy-set-headers"));
    named
}

/// The Services an Ingress's annotations send requests to besides its
/// rules' (`default-backend`; an `auth-url` naming a cluster Service):
/// changes to their endpoints matter to the table as much as the rules'.
pub fn annotation_services(ingress: &Ingress, snapshot: &Snapshot) -> Vec<ObjectKey> {
    let mut out = Vec::new();
    let Some(annotations) = ingress.metadata.annotations.as_ref() else {
        return out;
    };
    let namespace = ObjectKey::of(&ingress.metadata).namespace;
    let read = Reader { annotations };
    if let Some((_, name)) = read.get("default-backend")
        && let Ok(key) = same_namespace(name, &namespace)
    {
        out.push(key);
    }
    if let Some((_, url)) = read.get("auth-url")
        && let Ok(template) = ext_auth::url_template(url)
        && let Some((key, _)) = service_target(&template, &namespace, snapshot)
    {
        out.push(key);
    }
    out
}

/// The key of an object an annotation names as `name` or `namespace/name`,
/// which must be the Ingress's own namespace (as ingress-nginx, which
/// refuses other namespaces unless told to allow them).
pub(super) fn same_namespace(value: &str, namespace: &str) -> Result<ObjectKey, String> {
    let value = value.trim();
    let (ns, name) = value.split_once('/').unwrap_or((namespace, value));
    if ns != namespace {
        return Err(format!(
            "{value:?} is in another namespace; it must be in {namespace:?}"
        ));
    }
    if name.is_empty() || name.contains('/') {
        return Err(format!("{value:?} is not a name or namespace/name"));
    }
    Ok(ObjectKey::new(namespace, name))
}

/// Whether an Ingress's annotations name `from-to-www-redirect` at all
/// (set or not, valid or not): the incremental compile counts the other
/// names as hosts it may add to. More is harmless there.
pub(super) fn mentions_from_to_www(annotations: Option<&BTreeMap<String, String>>) -> bool {
    annotations.is_some_and(|a| {
        a.contains_key(&format!("{RUSTSTROM}from-to-www-redirect"))
            || a.contains_key(&format!("{NGINX}from-to-www-redirect"))
    })
}

/// The `server-alias` names of an Ingress, whatever their value's faults
/// (unparsable names are left out): the incremental compile counts them as
/// hosts it may add to. More is harmless there.
pub(super) fn mentioned_aliases(annotations: Option<&BTreeMap<String, String>>) -> Vec<String> {
    let Some(annotations) = annotations else {
        return Vec::new();
    };
    let read = Reader { annotations };
    read.get("server-alias")
        .map(|(_, value)| {
            value
                .split(',')
                .map(|name| name.trim().to_ascii_lowercase())
                .filter(|name| super::ingress::validate_host(name).is_ok())
                .collect()
        })
        .unwrap_or_default()
}

/// `server-alias`: comma-separated host names (`*.` wildcards too), as the
/// rules' hosts are checked; duplicates and empty items dropped, sorted, as
/// ingress-nginx does.
fn server_aliases(value: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        super::ingress::validate_host(name).map_err(|why| format!("{name:?} {why}"))?;
        names.push(name.to_ascii_lowercase());
    }
    if names.len() > MAX_ALIASES {
        return Err(format!("at most {MAX_ALIASES} names"));
    }
    names.sort_unstable();
    names.dedup();
    Ok(names)
}

/// Bounds what one annotation can add to the host index.
const MAX_ALIASES: usize = 100;

/// The other name of a `from-to-www-redirect` host: without `www.` when it
/// has it, with it otherwise. `None` when that is not a valid host name.
pub(super) fn www_twin(host: &str) -> Option<String> {
    let twin = match host.strip_prefix("www.") {
        Some(bare) => bare.to_string(),
        None => format!("www.{host}"),
    };
    super::ingress::validate_host(&twin).ok()?;
    Some(twin)
}

/// Whether one annotation may be served, and with what notice.
fn check(key: &str, value: &str, notices: &mut Vec<String>) -> Result<(), String> {
    let (name, ours) = if let Some(name) = key.strip_prefix(RUSTSTROM) {
        (name, true)
    } else if let Some(name) = key.strip_prefix(NGINX) {
        (name, false)
    } else {
        // Other prefixes (kubectl's, kubernetes.io/ingress.class, ...) are
        // not about routing.
        return Ok(());
    };
    let known = list::find(name).filter(|k| ours || k.nginx);
    let Some(known) = known else {
        if let Some(why) = list::refused_pattern(name) {
            return Err(format!("annotation {key} is refused: {why}"));
        }
        if ours {
            return Err(format!(
                "annotation {key} is unknown (a misspelt name must not drop a setting); see docs/annotations.md"
            ));
        }
        notices.push(format!(
            "annotation {key} is not one RustStrom knows, and has no effect"
        ));
        return Ok(());
    };
    match known.status {
        Status::Honoured => Ok(()),
        Status::Ignored => {
            notices.push(format!(
                "annotation {key} has no effect here: {}",
                known.why
            ));
            Ok(())
        }
        Status::OnlyAs(allowed) if only_as(value, allowed) => {
            notices.push(format!(
                "annotation {key}: {value:?} is what RustStrom does anyway"
            ));
            Ok(())
        }
        Status::OnlyAs(allowed) => Err(format!(
            "annotation {key}: {value:?} is refused ({}); only {} is accepted",
            known.why,
            allowed.join(", ")
        )),
        Status::Refused => Err(format!("annotation {key} is refused: {}", known.why)),
    }
}

fn only_as(value: &str, allowed: &[&str]) -> bool {
    let value = value.trim();
    allowed.iter().any(|a| {
        a.eq_ignore_ascii_case(value) || (*a == "false" && parse_bool(value) == Some(false))
    })
}

/// Reads one name under both prefixes; `ruststrom.io/` wins.
struct Reader<'a> {
    annotations: &'a BTreeMap<String, String>,
}

impl Reader<'_> {
    /// The key that is set for `name`, and its value.
    fn get(&self, name: &str) -> Option<(String, &str)> {
        let known = list::find(name)?;
        let ours = format!("{RUSTSTROM}{name}");
        if let Some(v) = self.annotations.get(&ours) {
            return Some((ours, v));
        }
        if !known.nginx {
            return None;
        }
        let theirs = format!("{NGINX}{name}");
        self.annotations.get(&theirs).map(|v| (theirs, v.as_str()))
    }

    /// The parsed value, `None` when not set; a value `parse` refuses
    /// rejects the Ingress with its reason.
    fn parse<T>(
        &self,
        name: &str,
        parse: fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, String> {
        match self.get(name) {
            None => Ok(None),
            Some((key, value)) => parse(value)
                .map(Some)
                .map_err(|why| format!("annotation {key}: {value:?} {why}")),
        }
    }

    fn bool(&self, name: &str) -> Result<Option<bool>, String> {
        self.parse(name, |v| {
            parse_bool(v).ok_or_else(|| "is not \"true\" or \"false\"".into())
        })
    }
}

/// Go's `strconv.ParseBool`, which ingress-nginx uses, plus any case of
/// `true` and `false` (which RustStrom accepted before).
fn parse_bool(value: &str) -> Option<bool> {
    match value.trim() {
        "1" | "t" | "T" => Some(true),
        "0" | "f" | "F" => Some(false),
        v if v.eq_ignore_ascii_case("true") => Some(true),
        v if v.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// A `Strict-Transport-Security` value as RFC 6797 writes it.
fn hsts(value: &str) -> Result<HeaderValue, String> {
    const WANT: &str =
        "is not \"max-age=SECONDS\" with optional \"; includeSubDomains\" and \"; preload\"";
    let mut directives = value.split(';').map(str::trim);
    let max_age = directives
        .next()
        .and_then(|d| d.strip_prefix("max-age="))
        .ok_or(WANT)?;
    if max_age.is_empty() || !max_age.bytes().all(|b| b.is_ascii_digit()) {
        return Err(WANT.into());
    }
    let known = |d: &str| {
        d.is_empty()
            || d.eq_ignore_ascii_case("includeSubDomains")
            || d.eq_ignore_ascii_case("preload")
    };
    if !directives.all(known) {
        return Err(WANT.into());
    }
    HeaderValue::from_str(value.trim()).map_err(|_| WANT.into())
}

/// A comma-separated list of CIDRs or single addresses, as ingress-nginx
/// reads its source ranges. Every entry must parse (ingress-nginx drops the
/// bad ones when some parse; a typo must not widen or narrow a list here).
fn cidrs(value: &str) -> Result<Vec<IpNet>, String> {
    let mut out = Vec::new();
    for entry in value.split(',').map(str::trim) {
        if entry.is_empty() {
            continue;
        }
        let net = entry
            .parse::<IpNet>()
            .or_else(|_| entry.parse::<std::net::IpAddr>().map(IpNet::from))
            .map_err(|_| format!("has {entry:?}, which is neither an address nor a CIDR"))?;
        out.push(net.trunc());
    }
    if out.is_empty() {
        return Err("lists no address".into());
    }
    Ok(out)
}

/// `temporal-redirect` (302 by default), else `permanent-redirect` (301 by
/// default). Both codes are checked when set, used or not.
fn redirect(read: &Reader<'_>) -> Result<Option<Redirect>, String> {
    let temporal_code = read.parse("temporal-redirect-code", |v| code(v, 307))?;
    let permanent_code = read.parse("permanent-redirect-code", |v| code(v, 308))?;
    if let Some(location) = read.parse("temporal-redirect", redirect_url)? {
        let status = temporal_code.unwrap_or(StatusCode::FOUND);
        return Ok(Some(Redirect { status, location }));
    }
    Ok(read
        .parse("permanent-redirect", redirect_url)?
        .map(|location| Redirect {
            status: permanent_code.unwrap_or(StatusCode::MOVED_PERMANENTLY),
            location,
        }))
}

/// A redirect status from 300 to `max`.
fn code(value: &str, max: u16) -> Result<StatusCode, String> {
    let want = || format!("is not a redirect status from 300 to {max}");
    let n: u16 = value.trim().parse().map_err(|_| want())?;
    if !(300..=max).contains(&n) {
        return Err(want());
    }
    StatusCode::from_u16(n).map_err(|_| want())
}

/// The characters ingress-nginx allows in a redirect URL: no spaces, no
/// quotes, no nginx variables (`$`).
fn url_chars(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~/:,?&=".contains(&b))
}

/// An absolute `http` or `https` URL for a `Location`.
fn redirect_url(value: &str) -> Result<HeaderValue, String> {
    const WANT: &str = "is not an http or https URL of letters, digits and -._~/:,?&=";
    let value = value.trim();
    if !url_chars(value) {
        return Err(WANT.into());
    }
    let uri: Uri = value.parse().map_err(|_| WANT)?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    let host_ok = uri.host().is_some_and(|h| !h.is_empty());
    if !scheme_ok || !host_ok || value.contains('@') {
        return Err(WANT.into());
    }
    HeaderValue::from_str(value).map_err(|_| WANT.into())
}

/// An absolute path (with an optional query) to redirect `/` to.
fn app_root(value: &str) -> Result<HeaderValue, String> {
    const WANT: &str = "is not a path such as /app (letters, digits and -._~/:,?&=)";
    let value = value.trim();
    let path_ok = value.starts_with('/') && !value.starts_with("//") && url_chars(value);
    if !path_ok || value.parse::<http::uri::PathAndQuery>().is_err() {
        return Err(WANT.into());
    }
    HeaderValue::from_str(value).map_err(|_| WANT.into())
}

/// A host name or address, with an optional port, for the backend's `Host`.
fn upstream_vhost(value: &str) -> Result<HeaderValue, String> {
    const WANT: &str =
        "is not a host name with an optional port (nginx variables are not expanded)";
    let value = value.trim();
    let authority: http::uri::Authority = value.parse().map_err(|_| WANT)?;
    let plain = !value.contains('@')
        && !authority.host().is_empty()
        && authority
            .host()
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    if !plain {
        return Err(WANT.into());
    }
    HeaderValue::from_str(value).map_err(|_| WANT.into())
}

/// A path for `X-Forwarded-Prefix`.
fn forwarded_prefix(value: &str) -> Result<HeaderValue, String> {
    const WANT: &str =
        "is not a path of letters, digits and -._~/: (nginx variables are not expanded)";
    let value = value.trim();
    let ok = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~/:".contains(&b));
    if !ok {
        return Err(WANT.into());
    }
    HeaderValue::from_str(value).map_err(|_| WANT.into())
}

/// Which way a header edit goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Request,
    Response,
}

/// `{"set": {"Name": "value", ...}, "remove": ["Name", ...]}`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EditsSpec {
    #[serde(default)]
    set: BTreeMap<String, String>,
    #[serde(default)]
    remove: Vec<String>,
}

/// Headers an edit may not touch: the message's framing and connection
/// (the proxy owns them), and on requests the headers the proxy sets for
/// the backend to trust (`Host` is `upstream-vhost`'s).
fn owned_by_the_proxy(name: &HeaderName, side: Side) -> bool {
    let framing = matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
    ) || name.as_str().starts_with("proxy-");
    let forwarding = matches!(
        name.as_str(),
        "host"
            | "forwarded"
            | "x-forwarded-for"
            | "x-forwarded-proto"
            | "x-forwarded-host"
            | "x-forwarded-port"
            | "x-real-ip"
    );
    framing || (side == Side::Request && forwarding)
}

fn header_edits(value: &str, side: Side) -> Result<HeaderEdits, String> {
    let spec: EditsSpec = serde_json::from_str(value).map_err(|e| {
        format!("is not {{\"set\": {{\"Name\": \"value\"}}, \"remove\": [\"Name\"]}}: {e}")
    })?;
    let name = |raw: &str| {
        let name = HeaderName::from_bytes(raw.as_bytes())
            .map_err(|_| format!("names {raw:?}, which is not a header name"))?;
        if owned_by_the_proxy(&name, side) {
            return Err(format!("names {raw:?}, which the proxy sets itself"));
        }
        Ok(name)
    };
    let mut edits = HeaderEdits::default();
    for raw in &spec.remove {
        edits.remove.push(name(raw)?);
    }
    for (raw, v) in &spec.set {
        let header = name(raw)?;
        if edits.remove.contains(&header) {
            return Err(format!("both sets and removes {raw:?}"));
        }
        let v = HeaderValue::from_str(v)
            .map_err(|_| format!("sets {raw:?} to a value that is not a valid header value"))?;
        edits.set.push((header, v));
    }
    if edits.set.is_empty() && edits.remove.is_empty() {
        return Err("neither sets nor removes a header".into());
    }
    Ok(edits)
}

/// A comma-separated list of statuses from 400 to 599 (ingress-nginx's
/// rule); at least one.
fn error_codes(value: &str) -> Result<ErrorCodes, String> {
    let mut codes = ErrorCodes::default();
    for entry in value.split(',').map(str::trim) {
        if entry.is_empty() {
            continue;
        }
        let code: u16 = entry
            .parse()
            .map_err(|_| format!("has {entry:?}, which is not a status code"))?;
        if !codes.insert(code) {
            return Err(format!("has {code}, which is not from 400 to 599"));
        }
    }
    if codes.is_empty() {
        return Err("lists no status code".into());
    }
    Ok(codes)
}

/// The name of a Service (a DNS-1035 label: the annotation names a Service
/// of the Ingress's own namespace, never another's).
fn service_name(value: &str) -> Result<String, String> {
    const WANT: &str = "is not the name of a Service in the Ingress's namespace";
    let name = value.trim();
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok {
        return Err(WANT.into());
    }
    Ok(name.to_string())
}

/// `true` or `on` (every encoding), `false` or `off` (none, whatever
/// `--compression` says), or a comma-separated list of the encodings
/// allowed: `gzip`, `br`, `zstd`.
fn compression(value: &str) -> Result<Encodings, String> {
    const WANT: &str = "is not true, false, on, off, or a list of gzip, br and zstd";
    let on_off = match value.trim() {
        v if v.eq_ignore_ascii_case("on") => Some(true),
        v if v.eq_ignore_ascii_case("off") => Some(false),
        v => parse_bool(v),
    };
    if let Some(on) = on_off {
        return Ok(if on { Encodings::ALL } else { Encodings::NONE });
    }
    let mut set = Encodings::NONE;
    for token in value.split(',').map(str::trim) {
        // `x-gzip` is a request's name for gzip, not a setting.
        match Encoding::from_coding(token) {
            Some(encoding) if !token.eq_ignore_ascii_case("x-gzip") => set.insert(encoding),
            _ => return Err(WANT.into()),
        }
    }
    Ok(set)
}

/// nginx's size syntax (`\d+[bkmg]?`, any case, powers of 1024); `0` means
/// no limit (`None`).
fn body_size(value: &str) -> Result<Option<u64>, String> {
    const WANT: &str = "is not a size such as 512k, 8m or 1g (0 for no limit)";
    let value = value.trim();
    let (digits, unit) = match value.as_bytes().last() {
        Some(b) if b.is_ascii_alphabetic() => value.split_at(value.len() - 1),
        _ => (value, ""),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(WANT.into());
    }
    let n: u64 = digits.parse().map_err(|_| WANT)?;
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return Err(WANT.into()),
    };
    let bytes = n.checked_mul(scale).ok_or(WANT)?;
    Ok((bytes > 0).then_some(bytes))
}
