//! The request path: admit, route, pick an endpoint, forward, answer.
//!
//! In order: [`admission`] (method, one valid host, the path in normal
//! form), the route lookup, [`redirect`] to HTTPS, the route's annotation
//! [`features`] (none for most routes), the endpoint pick,
//! [`prepare`] (headers for the backend), then [`attempt`] under the
//! timers in [`until_response`], and the answer's headers on the way back.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, StatusCode, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use std::time::Duration;

use tokio::time::Instant;

use super::access_log::{Pending, Trace, Upstream};
use super::admission::{self, Admitted};
use super::attempt;
use super::body::{GaugeGuard, Tracked};
use super::compress::Encoder;
use super::error_page::{self, Intercept};
use super::ext_auth::Granted;
use super::headers::{self, ConnInfo};
use super::redirect::{self, Decision};
use super::upload::{Phase, Watch};
use super::{
    Proxy, ProxyError, compress, cookie, cors, features, route_redirect, source_range, upgrade,
};
use crate::balance::{hash_with, sticky_id};
use crate::model::{
    BackendPolicy, Encodings, Endpoint, HashKey, RouteFeatures, Slot, normalize_host,
};

/// `Server` on every answer (no version: it only helps an attacker).
static SERVER: HeaderValue = HeaderValue::from_static("rust-strom");

/// A backend's streamed body, or a small body the proxy wrote itself.
pub type ProxyBody = Either<Tracked, Full<Bytes>>;

/// Answers one request. Never fails: every error becomes a response here,
/// and every response is counted. When the access log or a dashboard
/// watcher wants it, also returns the request's record, finished once the
/// answer is sent.
pub async fn handle(
    proxy: &Proxy,
    conn: &ConnInfo,
    req: Request<Incoming>,
) -> (Response<ProxyBody>, Option<Box<Pending>>) {
    let start = Instant::now();
    let mut pending = proxy.records.begin(
        &req,
        || {
            source_range::client_address(conn, req.headers(), &proxy.https)
                .unwrap_or(conn.peer.ip())
        },
        conn.tls_info.clone(),
        start,
    );
    let mut trace = pending.as_ref().map(|_| Trace::default());
    let mut hsts = None;
    let mut cors = None;
    let mut response = match forward(proxy, conn, req, &mut hsts, &mut cors, &mut trace).await {
        Ok(response) => response,
        Err(error) => {
            let m = &proxy.metrics;
            if let ProxyError::RateLimited { kind, .. } = &error {
                m.count_rate_limited(*kind);
                tracing::debug!(%error, peer = %conn.peer, "request limited");
            }
            if error.is_backend_failure() {
                m.errors_total.inc();
                tracing::warn!(%error, peer = %conn.peer, "request failed");
            } else if let Some(reason) = error.client_fault() {
                m.count_client_error(reason);
                tracing::debug!(%error, peer = %conn.peer, "request refused");
            }
            if error.is_timeout() {
                m.timeouts_total.inc();
            }
            error.to_response()
        }
    };
    if let Some(value) = hsts {
        response
            .headers_mut()
            .insert(header::STRICT_TRANSPORT_SECURITY, value);
    }
    if let Some(cors) = &cors {
        cors.apply(response.headers_mut());
    }
    if proxy.limits.server_header {
        response
            .headers_mut()
            .insert(header::SERVER, SERVER.clone());
    }
    let m = &proxy.metrics;
    m.requests_total.inc();
    m.request_duration.observe(start.elapsed().as_secs_f64());
    m.count_status(response.status().as_u16());
    if let (Some(pending), Some(trace)) = (pending.as_mut(), trace) {
        pending.answered(response.status().as_u16(), trace);
    }
    (response, pending)
}

/// Routes and forwards; sets `hsts` when the route's Ingress asks for it on
/// a request that came over HTTPS, and `cors` when it enables CORS (the
/// caller adds them to any answer).
async fn forward(
    proxy: &Proxy,
    conn: &ConnInfo,
    mut req: Request<Incoming>,
    hsts: &mut Option<HeaderValue>,
    cors: &mut Option<cors::Pending>,
    trace: &mut Option<Trace>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let Admitted { host } = admission::admit(
        &mut req,
        proxy.limits.encoded_slashes,
        proxy.limits.max_request_header_size,
    )?;
    let (backend, features, slot, intercept, auth_backend) = {
        let table = proxy.table.load();
        let host_name = host.as_ref().and_then(|h| h.to_str().ok()).unwrap_or("");
        let host_name = normalize_host(host_name);
        if let Some(to) = table.www_redirect(&host_name) {
            return route_redirect::to_www_twin(to, conn, req.headers(), host.as_ref(), req.uri())
                .ok_or(ProxyError::BadRequest("the host cannot be redirected"));
        }
        let route = table
            .lookup(&host_name, req.uri().path())
            .ok_or(ProxyError::NoRoute)?;
        if let Some(trace) = trace.as_mut() {
            trace.ingress = Some(route.source.as_str().into());
            trace.backend = Some(route.backend.id.as_str().into());
        }
        if let Some(features) = &route.features {
            *cors = cors::Pending::new(features, req.headers());
        }
        let features = route.features.as_deref();
        if let Some(answer) =
            features.and_then(|f| features::redirect(f, conn, host.as_ref(), req.uri().path()))
        {
            return Ok(answer);
        }
        // A `server-alias` name follows its host's TLS settings.
        let tls_host = table.tls_host(&host_name);
        match redirect::decide(conn, req.headers(), tls_host, &route.https, table.tls()) {
            Decision::Redirect => {
                return redirect::to_https(&host_name, req.uri(), proxy.https.redirect_port).ok_or(
                    ProxyError::BadRequest("the host cannot be redirected to HTTPS"),
                );
            }
            Decision::Hsts(value) => *hsts = Some(value),
            Decision::Forward => {}
        }
        let slot = match features {
            Some(features) => features::admit(features, conn, req.headers(), &proxy.https)?,
            None => None,
        };
        if let Some(answer) = cors
            .as_ref()
            .and_then(|c| c.preflight(req.method(), req.headers()))
        {
            return Ok(answer);
        }
        let (backend, intercept) = match &route.error_backend {
            // `default-backend` answers for a Service without endpoints
            // (its own answers are not intercepted again).
            Some(fallback) if !route.backend.has_endpoints() && fallback.has_endpoints() => {
                (fallback.clone(), None)
            }
            _ => {
                let intercept = features.and_then(|f| f.custom_http_errors).map(|codes| {
                    (
                        codes,
                        route.error_backend.clone(),
                        route.backend.clone(),
                        route.source.clone(),
                    )
                });
                (route.backend.clone(), intercept)
            }
        };
        let auth_backend = route.auth_backend.clone();
        (
            backend,
            route.features.clone(),
            slot,
            intercept,
            auth_backend,
        )
    };
    let granted = match features.as_deref() {
        Some(f) => {
            features::authenticate(proxy, f, auth_backend.as_ref(), conn, &req, host.as_ref())
                .await?
        }
        None => None,
    };

    // Which endpoint: the one a valid sticky cookie names, else the
    // balancer's pick (keyed by the request for the hashing algorithms).
    let policy = &backend.policy;
    let hash = balance_key(policy, req.headers(), conn);
    let pinned = policy
        .sticky
        .as_ref()
        .and_then(|c| cookie::value(req.headers(), &c.name))
        .and_then(|v| backend.sticky(v));
    let picked =
        pinned
            .or_else(|| backend.pick(hash, None))
            .ok_or_else(|| ProxyError::NoEndpoint {
                backend: backend.id.clone(),
            })?;

    // Compression: the Ingress's annotation, else the global flag; read
    // from the request before it goes (a plain route tests two values).
    let compression =
        features
            .as_deref()
            .and_then(|f| f.compression)
            .unwrap_or(if proxy.limits.compression {
                Encodings::ALL
            } else {
                Encodings::NONE
            });
    let compress = compress::asked(compression, &req);

    let upgrade =
        headers::upgrade_protocol(req.headers()).filter(|_| req.version() == Version::HTTP_11);
    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
    // The request as the client sent it, for the error backend.
    let original = intercept.as_ref().map(|_| {
        let target = req.uri().path_and_query();
        let uri = target.and_then(|t| HeaderValue::from_str(t.as_str()).ok());
        (req.method().clone(), uri)
    });
    prepare(&mut req, conn, picked.endpoint, host, upgrade);
    let max_body = features.as_deref().and_then(|f| f.max_body);
    if let Some(features) = features.as_deref() {
        features::request_headers(features, granted.as_ref(), req.headers_mut());
    }
    // Sent upstream, returned to the client, and logged.
    let request_id = req.headers().get(&headers::X_REQUEST_ID).cloned();
    // Error pages: what the error backend will be told, kept only for
    // routes that have them.
    let intercept = intercept.zip(original).map(
        |((codes, backend, service, ingress), (method, original_uri))| Intercept {
            codes,
            backend,
            service,
            ingress,
            method,
            original_uri,
            headers: req.headers().clone(),
        },
    );
    let (req, upload) = attempt::into_upstream(req, proxy.limits.client_body_timeout, max_body);
    if let Some(trace) = trace.as_mut() {
        trace.request_id.clone_from(&request_id);
        trace.upload.clone_from(&upload);
    }

    let metrics = backend.metrics();
    let gauge = GaugeGuard::new(&metrics.in_flight);
    let started = Instant::now();
    let limit = policy.request_timeout.unwrap_or(proxy.request_timeout);
    // Boxed: the sending future is most of the request's state, and hyper
    // moves the request's future around whole; one allocation is cheaper.
    let attempt = Box::pin(attempt::send(
        &proxy.upstream,
        &backend,
        hash,
        req,
        upload.as_ref(),
        picked,
    ));
    let timers = Timers {
        response: limit,
        backend_reading: policy
            .send_timeout
            .unwrap_or(proxy.limits.proxy_send_timeout),
    };
    let Some(result) = until_response(attempt, upload.as_deref(), timers).await else {
        metrics.errors.inc();
        backend.record_failure(picked.state);
        return Err(ProxyError::Timeout {
            backend: backend.id.clone(),
            endpoint: picked.endpoint.to_string(),
        });
    };
    let sent = result.map_err(|failed| error_page::failure(&backend, failed))?;
    metrics
        .response_time
        .observe(started.elapsed().as_secs_f64());
    if let Some(trace) = trace.as_mut() {
        trace.upstream = Some(Upstream {
            endpoint: sent.endpoint.authority().to_string(),
            duration: started.elapsed(),
        });
        trace.retries = sent.retries;
    }
    let read_timeout = policy
        .read_timeout
        .unwrap_or(proxy.limits.proxy_read_timeout);

    let status = sent.response.status();
    if let Some(intercept) = intercept.filter(|i| i.wants(status)) {
        // The backend's answer is dropped unread: its connection is pooled
        // again once the rest comes in (or closed), as for a client that
        // went away.
        drop(Tracked::new(
            sent.response.into_body(),
            sent.in_flight,
            gauge,
            Some(sent.lease),
            read_timeout,
        ));
        let Some(mut response) = error_page::fetch(proxy, intercept, status).await? else {
            return Ok(error_page::own(status));
        };
        let encoder = last_headers(
            response.status(),
            response.headers_mut(),
            features.as_deref(),
            granted.as_ref(),
            request_id,
            compress,
        );
        return Ok(response.map(|body| outgoing(body, slot, encoder)));
    }

    let mut response = sent.response;
    let mut lease = Some(sent.lease);
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        // The connection now belongs to the tunnel.
        lease = None;
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
    // Pin (or re-pin, after a retry or when the pinned endpoint was gone)
    // a client of a sticky backend.
    if let Some(sticky) = &policy.sticky
        && (pinned.is_none() || sent.retries > 0)
        && let Some(value) = cookie::set_sticky(sticky, &sticky_id(sent.in_flight.state().key()))
    {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    let encoder = last_headers(
        status,
        response.headers_mut(),
        features.as_deref(),
        granted.as_ref(),
        request_id,
        compress,
    );
    Ok(response.map(|body| {
        let body = Tracked::new(body, sent.in_flight, gauge, lease, read_timeout);
        outgoing(body, slot, encoder)
    }))
}

/// The headers a forwarded request's answer gets last: the route's
/// response features, the request id, and compression's (which says
/// whether the body is compressed).
fn last_headers(
    status: StatusCode,
    head: &mut HeaderMap,
    features: Option<&RouteFeatures>,
    granted: Option<&Granted>,
    request_id: Option<HeaderValue>,
    compress: Option<compress::Asked>,
) -> Option<Encoder> {
    if let Some(features) = features {
        features::response_headers(features, granted, status, head);
    }
    if let Some(id) = request_id {
        head.insert(headers::X_REQUEST_ID.clone(), id);
    }
    compress.and_then(|c| compress::respond(c, status, head))
}

/// The answer's body on its way out: holding the client's
/// `limit-connections` slot, compressed when asked.
fn outgoing(body: Tracked, slot: Option<Slot>, encoder: Option<Encoder>) -> ProxyBody {
    let body = body.with_slot(slot);
    Either::Left(match encoder {
        Some(encoder) => body.compressed(encoder),
        None => body,
    })
}

/// How long each side may keep a request waiting for its response headers.
#[derive(Clone, Copy)]
struct Timers {
    /// From the request sent whole to the response headers
    /// (`--request-timeout`, or the policy's).
    response: Duration,
    /// The backend not taking more of the request body
    /// (`--proxy-send-timeout`).
    backend_reading: Duration,
}

/// Runs `attempt` to the response headers; `None` when the backend ran out
/// of time. A client slow to send its body is not the backend's fault: its
/// own pause limit runs in the [`Upload`](super::upload::Upload), and the
/// response timer starts once the body is sent.
async fn until_response<F: std::future::Future + Unpin>(
    mut attempt: F,
    upload: Option<&Watch>,
    timers: Timers,
) -> Option<F::Output> {
    let Some(watch) = upload else {
        return tokio::time::timeout(timers.response, attempt).await.ok();
    };
    loop {
        let now = Instant::now();
        let deadline = match watch.phase() {
            Phase::Sent(at) => at + timers.response,
            Phase::Backend(since) => since + timers.backend_reading,
            // The client's pace, or its fault: look again later.
            Phase::Client | Phase::Fault(_) => now + timers.backend_reading,
        };
        if deadline <= now {
            return None;
        }
        tokio::select! {
            out = &mut attempt => return Some(out),
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// The request's key for IPHash and ConsistentHash, if the policy has one
/// and the request carries it.
fn balance_key(policy: &BackendPolicy, headers: &HeaderMap, conn: &ConnInfo) -> Option<u64> {
    match policy.hash_key.as_ref()? {
        HashKey::SourceIp => Some(hash_with(conn.peer.ip(), 0)),
        HashKey::Header(name) => headers.get(name).map(|v| hash_with(v.as_bytes(), 0)),
        HashKey::Cookie(name) => cookie::value(headers, name).map(|v| hash_with(v.as_bytes(), 0)),
    }
}

/// Rewrites the client's request into the backend's: origin-form target,
/// HTTP/1.1, Host kept (the endpoint's address when the client sent none),
/// forwarding headers, hop-by-hop removed.
fn prepare<B>(
    req: &mut Request<B>,
    conn: &ConnInfo,
    endpoint: &Endpoint,
    host: Option<HeaderValue>,
    upgrade: Option<HeaderValue>,
) {
    // An HTTP/1.1 client's origin-form target goes out as it came; an
    // absolute-form one, or HTTP/2's, is cut down to path and query.
    if req.uri().scheme().is_some() || req.uri().authority().is_some() {
        let path = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::from(path);
    }
    // Only an HTTP/2 client gets trailers back through the proxy (HTTP/1.1
    // responses lose `Trailer` with the hop-by-hop headers), so only for one
    // is the backend asked for them.
    let trailers = req.version() == Version::HTTP_2 && headers::accepts_trailers(req.headers());
    *req.version_mut() = Version::HTTP_11;

    let headers = req.headers_mut();
    headers::strip_hop_by_hop(headers);
    if let Some(protocol) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol);
    } else if trailers {
        // TE is hop-by-hop, so it is asked again for this hop (RFC 9110,
        // 10.1.4): HTTP/1.1 servers such as hyper send trailers only then,
        // and gRPC clients need them (the proxy streams them through).
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("te"));
    }
    match &host {
        // From HTTP/1.1's Host header it is already there.
        Some(host) if headers.get(header::HOST) != Some(host) => {
            headers.insert(header::HOST, host.clone());
        }
        Some(_) => {}
        None => {
            if let Ok(authority) = HeaderValue::from_str(endpoint.authority().as_str()) {
                headers.insert(header::HOST, authority);
            }
        }
    }
    headers::add_forwarding(headers, conn, host.as_ref());
}
