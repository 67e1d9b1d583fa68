//! Response bodies and request bodies: JSON in, JSON out.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use serde_json::Value;

use crate::error::ApiError;

/// Every response body: a whole JSON document or a watch stream.
pub type Body = BoxBody<Bytes, Infallible>;

/// The real server's request size limit.
const MAX_BODY: usize = 3 * 1024 * 1024;

/// A JSON response.
pub fn json(code: u16, value: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(bytes)).boxed());
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// A JSON response with a Content-Type other than `application/json`.
pub fn json_as(value: &Value, content_type: &'static str) -> Response<Body> {
    let mut resp = json(200, value);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    resp
}

/// A `Status` response for a failed request.
pub fn error(err: &ApiError) -> Response<Body> {
    let mut resp = json(err.code(), &err.to_status());
    if let Some(seconds) = err.retry_after() {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
    }
    resp
}

/// A plain-text response (`/healthz`).
pub fn text(code: u16, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())).boxed());
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Reads a request body, at most 3 MiB.
pub async fn read_body(body: hyper::body::Incoming) -> Result<Bytes, ApiError> {
    Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                ApiError::too_large()
            } else {
                ApiError::bad_request(format!("error reading the request body: {e}"))
            }
        })
}

/// Parses a JSON request body; an empty or malformed one is a 400.
pub fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
}
