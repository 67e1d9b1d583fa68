//! `app-root`, `permanent-redirect` and `temporal-redirect`: routes that
//! answer with a redirect instead of reaching their backend; and
//! `from-to-www-redirect`, a host name that only redirects to its twin.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::{Authority, Uri};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::{Either, Full};

use super::handler::ProxyBody;
use super::headers::ConnInfo;
use crate::model::RouteFeatures;

/// The redirect a route answers `path` with, if any: `app-root` for `/`
/// first, then the route's fixed redirect (as nginx, where the server's
/// `app-root` rule runs before the location's `return`).
pub fn answer(
    features: &RouteFeatures,
    tls: bool,
    host: Option<&HeaderValue>,
    path: &str,
) -> Option<Response<ProxyBody>> {
    if path == "/"
        && let Some(root) = &features.app_root
    {
        // nginx: `$scheme://$http_host<app-root>`; without a usable Host,
        // the path alone (clients resolve it against the request).
        let location = match host.and_then(plain_authority) {
            Some(authority) => {
                let scheme = if tls { "https" } else { "http" };
                let bytes = [
                    scheme.as_bytes(),
                    b"://",
                    authority.as_bytes(),
                    root.as_bytes(),
                ]
                .concat();
                HeaderValue::from_bytes(&bytes).unwrap_or_else(|_| root.clone())
            }
            None => root.clone(),
        };
        return Some(redirect(StatusCode::FOUND, location));
    }
    let fixed = features.redirect.as_ref()?;
    Some(redirect(fixed.status, fixed.location.clone()))
}

/// The 308 from a `from-to-www-redirect` name to `to` (its twin), with the
/// request's scheme (a trusted proxy's `X-Forwarded-Proto` included), the
/// port of its `Host` header, and its path and query.
pub fn to_www_twin(
    to: &str,
    conn: &ConnInfo,
    headers: &HeaderMap,
    host: Option<&HeaderValue>,
    uri: &Uri,
) -> Option<Response<ProxyBody>> {
    let https = conn.tls || (conn.trusted && super::redirect::forwarded_https(headers));
    let scheme = if https { "https" } else { "http" };
    let port = host
        .and_then(plain_authority)
        .and_then(|a| a.parse::<Authority>().ok())
        .and_then(|a| a.port_u16())
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    let path = uri
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| p.starts_with('/'))
        .unwrap_or("/");
    let location = HeaderValue::from_str(&format!("{scheme}://{to}{port}{path}")).ok()?;
    Some(redirect(StatusCode::PERMANENT_REDIRECT, location))
}

/// A `Host` header that is only a name or address and a port: nothing that
/// could make the Location point elsewhere (`@`, `/`, ...).
fn plain_authority(host: &HeaderValue) -> Option<&str> {
    let text = host.to_str().ok()?;
    let authority: Authority = text.parse().ok()?;
    let plain = !text.contains('@')
        && authority
            .host()
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    plain.then_some(text)
}

fn redirect(status: StatusCode, location: HeaderValue) -> Response<ProxyBody> {
    let body = format!(
        "{} {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Redirect")
    );
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from(body))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::LOCATION, location);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
