//! `rust-strom demo`: three echo backends on loopback, example manifests
//! routing `demo.local` to them over HTTP and HTTPS (a certificate generated
//! into a `kubernetes.io/tls` Secret), and the proxy serving those manifests.

pub mod echo;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;

use crate::config::Settings;

/// The backends' names, which they answer with.
const BACKENDS: [&str; 3] = ["demo-1", "demo-2", "demo-3"];

/// Runs the demo until SIGINT/SIGTERM.
pub async fn run(mut settings: Settings) -> anyhow::Result<()> {
    let mut addrs = Vec::new();
    for name in BACKENDS {
        addrs.push(echo::spawn(name, SocketAddr::from(([127, 0, 0, 1], 0))).await?);
    }
    // A folder of our own (none given) is removed when the demo ends.
    let (dir, own_dir) = match settings.manifests.clone() {
        Some(dir) => (dir, false),
        None => (
            std::env::temp_dir().join(format!("rust-strom-demo-{}", std::process::id())),
            true,
        ),
    };
    write_manifests(&dir, &addrs)?;
    settings.manifests = Some(dir.clone());

    // Bound before the banner, so it names the ports really listened on
    // (port 0 picks free ones); signals first, as in standalone mode.
    let (_trigger, shutdown) = crate::shutdown::on_signals();
    let listeners = crate::run::Listeners::bind(&settings).await?;
    let port = listeners.http.local_addr()?.port();
    let https = listeners.https.local_addr()?.port();
    // Redirects from the demo's HTTP port go to its HTTPS port, not to 443.
    settings.https_redirect_port.get_or_insert(https);
    let metrics = listeners.admin.local_addr()?.port();
    let dashboard = match &listeners.dashboard {
        Some(listener) => format!("http://{}/", listener.local_addr()?),
        None => "off (--dashboard false)".to_string(),
    };
    println!(
        "\nRustStrom demo: demo.local -> {} echo backends ({})\n\
         manifests: {} (edit them: changes apply live)\n\
         dashboard: {dashboard} (live requests, backends, routes)\n\n\
         try:\n  curl -H 'Host: demo.local' http://localhost:{port}/\n  \
         for i in 1 2 3 4 5 6; do curl -s -H 'Host: demo.local' http://localhost:{port}/ | head -1; done\n  \
         curl -H 'Host: demo.local' http://localhost:{port}/api/orders?id=7\n  \
         curl -i -H 'Host: other.local' http://localhost:{port}/      # 404: no route\n  \
         curl -k --resolve demo.local:{https}:127.0.0.1 https://demo.local:{https}/   # HTTPS, HTTP/2\n  \
         curl http://localhost:{metrics}/metrics\n\n\
         Ctrl-C stops it.\n",
        BACKENDS.len(),
        addrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        dir.display(),
    );
    let served = crate::run::standalone_on(settings, listeners, shutdown).await;
    if own_dir && let Err(error) = std::fs::remove_dir_all(&dir) {
        tracing::warn!(%error, dir = %dir.display(), "cannot remove the demo's manifests folder");
    }
    served
}

/// Writes the Ingress and Service once (so edits survive a restart) and the
/// EndpointSlices every time (the backends' ports are new on each start).
fn write_manifests(dir: &Path, addrs: &[SocketAddr]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let ingress = dir.join("demo-ingress.yaml");
    if !ingress.exists() {
        std::fs::write(&ingress, DEMO_INGRESS)
            .with_context(|| format!("cannot write {}", ingress.display()))?;
    }
    let secret = dir.join("demo-tls.yaml");
    if !secret.exists() {
        std::fs::write(&secret, tls_secret()?)
            .with_context(|| format!("cannot write {}", secret.display()))?;
    }
    let mut slices = String::new();
    for (i, addr) in addrs.iter().enumerate() {
        let _ = write!(
            slices,
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: demo-{n}\n  namespace: demo\n  \
             labels: {{kubernetes.io/service-name: demo}}\naddressType: IPv4\nports: [{{name: http, port: {port}, protocol: TCP}}]\n\
             endpoints:\n- addresses: [\"{ip}\"]\n  conditions: {{ready: true}}\n",
            n = i + 1,
            port = addr.port(),
            ip = addr.ip(),
        );
    }
    let endpoints = dir.join("demo-endpoints.yaml");
    // Written beside and renamed, so the running proxy never reads half a file.
    let staged = dir.join(".demo-endpoints.yaml.tmp");
    std::fs::write(&staged, slices)
        .with_context(|| format!("cannot write {}", staged.display()))?;
    std::fs::rename(&staged, &endpoints)
        .with_context(|| format!("cannot write {}", endpoints.display()))?;
    Ok(())
}

/// A `kubernetes.io/tls` Secret with a new self-signed certificate for
/// `demo.local`, as cert-manager would write one.
fn tls_secret() -> anyhow::Result<String> {
    let generated = rcgen::generate_simple_self_signed(vec!["demo.local".to_string()])
        .context("cannot generate the demo certificate")?;
    let indent = |pem: &str| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    Ok(format!(
        "# The demo's certificate (self-signed, made at first start). Replace it\n\
         # and save: the next TLS handshake gets the new one.\n\
         apiVersion: v1\nkind: Secret\nmetadata:\n  name: demo-tls\n  namespace: demo\n\
         type: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(&generated.cert.pem()),
        indent(&generated.signing_key.serialize_pem()),
    ))
}

const DEMO_INGRESS: &str = r#"# The demo's routes. Edit and save: RustStrom applies changes live.
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: demo
  namespace: demo
  annotations:
    # Plain HTTP keeps working for the demo; remove this line and HTTP
    # requests get a 308 to HTTPS, as in production.
    ruststrom.io/ssl-redirect: "false"
spec:
  ingressClassName: rust-strom
  tls:
  - hosts: [demo.local]
    secretName: demo-tls
  rules:
  - host: demo.local
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: demo
            port: {name: http}
---
apiVersion: v1
kind: Service
metadata:
  name: demo
  namespace: demo
spec:
  ports:
  - name: http
    port: 80
    targetPort: http
"#;
