//! The dashboard tests' shop: `web.local` (TLS) -> two echo backends,
//! `fail.local` -> a backend answering 503, and an Ingress rejected for its
//! path; the API tests add a BalancerPolicy.

use std::path::Path;

use http::{Response, StatusCode};

use super::tls::{gen_cert, tls_ingress, tls_secret};
use super::{backend, backend_objects, docs, echo, full, ingress, write};

/// Writes the shop (plus `extra` documents) to `dir/routes.yaml` and
/// returns its documents.
pub async fn shop(dir: &Path, extra: &[String]) -> Vec<String> {
    let web = [echo("web-1").await, echo("web-2").await];
    let fail = backend(|_| async {
        let mut resp = Response::new(full("down"));
        *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        resp
    })
    .await;
    let cert = gen_cert(&["web.local"]);
    let mut parts = vec![
        tls_ingress(
            "shop",
            "web",
            &["web.local"],
            "web",
            &[("ruststrom.io/ssl-redirect", "false")],
            &[(&["web.local"], "web-tls")],
        ),
        tls_secret("shop", "web-tls", &cert),
        backend_objects("shop", "web", &web),
        ingress("shop", "fail", "fail.local", &[("/", "Prefix", "fail")]),
        backend_objects("shop", "fail", &[fail]),
        ingress(
            "shop",
            "bad-path",
            "bad.local",
            &[("no-slash", "Prefix", "web")],
        ),
    ];
    parts.extend(extra.iter().cloned());
    write(dir, "routes.yaml", &docs(&parts));
    parts
}
