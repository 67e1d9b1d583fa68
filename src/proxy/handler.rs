//! The request path: route, pick an endpoint, forward, answer.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::{PathAndQuery, Scheme, Uri};
use http::{Request, Response, StatusCode, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use tokio::time::Instant;

use super::headers::{self, ConnInfo};
use super::{Proxy, ProxyError, attempt, upgrade};
use crate::model::{Endpoint, normalize_host};

/// A backend's streamed body, or a small body the proxy wrote itself.
pub type ProxyBody = Either<Incoming, Full<Bytes>>;

/// Answers one request. Never fails: every error becomes a response here,
/// and every response is counted.
pub async fn handle(proxy: &Proxy, conn: &ConnInfo, req: Request<Incoming>) -> Response<ProxyBody> {
    let start = Instant::now();
    let response = match forward(proxy, conn, req).await {
        Ok(response) => response,
        Err(error) => {
            let m = &proxy.metrics;
            if error.is_backend_failure() {
                m.errors_total.inc();
                tracing::warn!(%error, peer = %conn.peer, "request failed");
            }
            if error.is_timeout() {
                m.timeouts_total.inc();
            }
            error.to_response()
        }
    };
    let m = &proxy.metrics;
    m.requests_total.inc();
    m.request_duration.observe(start.elapsed().as_secs_f64());
    m.count_status(response.status().as_u16());
    response
}

async fn forward(
    proxy: &Proxy,
    conn: &ConnInfo,
    mut req: Request<Incoming>,
) -> Result<Response<ProxyBody>, ProxyError> {
    // The URI's authority wins over Host: it is HTTP/2's `:authority`, and in
    // HTTP/1.1 an absolute-form target overrides Host (RFC 9112, 3.2.2).
    let host = match req.uri().authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => req.headers().get(header::HOST).cloned(),
    };
    let (backend, endpoint) = {
        let table = proxy.table.load();
        let host_name = host.as_ref().and_then(|h| h.to_str().ok()).unwrap_or("");
        let route = table
            .lookup(&normalize_host(host_name), req.uri().path())
            .ok_or(ProxyError::NoRoute)?;
        let backend = route.backend.clone();
        let endpoint = backend
            .pick()
            .cloned()
            .ok_or_else(|| ProxyError::NoEndpoint {
                backend: backend.id.clone(),
            })?;
        (backend, endpoint)
    };

    let upgrade =
        headers::upgrade_protocol(req.headers()).filter(|_| req.version() == Version::HTTP_11);
    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
    prepare(&mut req, conn, &endpoint, host, upgrade)?;

    let sent = Instant::now();
    let attempt = attempt::send(&proxy.client, req, &backend, endpoint.clone());
    let Ok((result, last)) = tokio::time::timeout(proxy.request_timeout, attempt).await else {
        return Err(ProxyError::Timeout {
            backend: backend.id.clone(),
            endpoint: endpoint.to_string(),
        });
    };
    let mut response = match result {
        Ok(response) => response,
        Err(source) if source.is_connect() => {
            return Err(ProxyError::Connect {
                backend: backend.id.clone(),
                endpoint: last.to_string(),
                source,
            });
        }
        Err(source) => {
            return Err(ProxyError::Upstream {
                backend: backend.id.clone(),
                endpoint: last.to_string(),
                source,
            });
        }
    };
    proxy
        .metrics
        .backend_response_time
        .with_label_values(&[&backend.id])
        .observe(sent.elapsed().as_secs_f64());

    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            let backend_upgrade = hyper::upgrade::on(&mut response);
            upgrade::tunnel(
                client_upgrade,
                backend_upgrade,
                backend.id.clone(),
                &proxy.tunnels,
            );
        }
        // Keep Connection/Upgrade: they are the point of a 101.
    } else {
        headers::strip_hop_by_hop(response.headers_mut());
    }
    Ok(response.map(Either::Left))
}

/// Rewrites the client's request into the backend's: absolute URI to the
/// endpoint, HTTP/1.1, Host kept, forwarding headers, hop-by-hop removed.
fn prepare(
    req: &mut Request<Incoming>,
    conn: &ConnInfo,
    endpoint: &Endpoint,
    host: Option<HeaderValue>,
    upgrade: Option<HeaderValue>,
) -> Result<(), ProxyError> {
    let path = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    *req.uri_mut() = Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(endpoint.authority().clone())
        .path_and_query(path)
        .build()
        .map_err(|_| ProxyError::BadRequest("the request target cannot be forwarded"))?;
    *req.version_mut() = Version::HTTP_11;

    let headers = req.headers_mut();
    headers::strip_hop_by_hop(headers);
    if let Some(protocol) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol);
    }
    if let Some(host) = &host {
        headers.insert(header::HOST, host.clone());
    }
    headers::add_forwarding(headers, conn, host.as_ref());
    Ok(())
}
