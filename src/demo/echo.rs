//! An echo backend: answers every request with its own name and what it saw
//! (method, path, Host, headers), as plain text. Used by the demo and tests.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// Starts an echo backend named `name` on `addr`; returns where it listens.
pub async fn spawn(name: &str, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let name: Arc<str> = name.into();
    tokio::spawn(async move {
        let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let name = name.clone();
            let builder = builder.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let name = name.clone();
                    async move { Ok::<_, Infallible>(echo(&name, req).await) }
                });
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(local)
}

async fn echo(name: &str, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body_len = body
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let mut text = format!(
        "backend: {name}\nmethod: {}\npath: {}\nhost: {host}\nbody: {body_len} bytes\nheaders:\n",
        parts.method,
        parts.uri.path_and_query().map_or("/", |p| p.as_str()),
    );
    for (k, v) in &parts.headers {
        let _ = writeln!(text, "  {k}: {}", String::from_utf8_lossy(v.as_bytes()));
    }
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.headers_mut().insert(
        "x-backend",
        header::HeaderValue::from_str(name).unwrap_or(header::HeaderValue::from_static("echo")),
    );
    resp
}
