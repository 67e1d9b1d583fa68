//! `rust-strom check`: load a manifests folder, compile it, and print the
//! table and every problem, as a CI step or before a deploy.

use std::fmt::Write as _;
use std::path::Path;
use std::time::SystemTime;

use crate::compile::{CompileOptions, Severity, compile, rfc3339};
use crate::model::RoutingTable;
use crate::source::files::ManifestDir;

/// The printed report and whether everything was accepted.
pub struct Report {
    pub text: String,
    pub ok: bool,
}

/// Checks the folder at `root`.
pub fn check(root: &Path, options: &CompileOptions) -> Report {
    let mut dir = ManifestDir::new(root);
    let reload = dir.reload();
    let snapshot = dir.snapshot();
    let compiled = compile(&snapshot, options, 1, SystemTime::now());
    let mut out = String::new();

    let _ = writeln!(
        out,
        "{} objects read; {} Ingresses served (class {:?}{})\n",
        snapshot.len(),
        compiled.ingresses.len(),
        options.ingress_class,
        if options.watch_without_class {
            ", and Ingresses without class"
        } else {
            ""
        },
    );
    let _ = writeln!(
        out,
        "{:<30} {:<30} {:<8} {:<30} ENDPOINTS",
        "HOST", "PATH", "TYPE", "BACKEND"
    );
    let rows = compiled.table.routes();
    let default = compiled.table.default_backend();
    for (host, route) in rows
        .iter()
        .map(|(h, r)| (h.to_string(), *r))
        .chain(default.map(|r| ("(default backend)".to_string(), r)))
    {
        let b = &route.backend;
        let mut endpoints: Vec<String> = b.ready.iter().map(ToString::to_string).collect();
        endpoints.extend(b.fallback.iter().map(|e| format!("{e} (terminating)")));
        let endpoints = if endpoints.is_empty() {
            "none: answers 503".to_string()
        } else {
            endpoints.join(", ")
        };
        let _ = writeln!(
            out,
            "{host:<30} {:<30} {:<8} {:<30} {endpoints}",
            route.path.path(),
            route.path.kind(),
            b.id
        );
    }
    if rows.is_empty() && default.is_none() {
        let _ = writeln!(out, "(no routes)");
    }
    write_tls(&mut out, &compiled.table);

    let mut rejected = 0;
    let problems = reload.errors.len() + compiled.problems.len();
    if problems > 0 {
        let _ = writeln!(out, "\n{problems} problem(s):");
    }
    for error in &reload.errors {
        rejected += 1;
        let _ = writeln!(out, "  rejected: file {error}");
    }
    for problem in &compiled.problems {
        rejected += usize::from(problem.severity == Severity::Rejected);
        let _ = writeln!(out, "  {problem}");
    }
    Report {
        text: out,
        ok: rejected == 0,
    }
}

/// The TLS hosts, the Secret each is served from, and when it expires.
fn write_tls(out: &mut String, table: &RoutingTable) {
    let tls = table.tls();
    let hosts = tls.hosts();
    if hosts.is_empty() && tls.default_certificate().is_none() {
        return;
    }
    let _ = writeln!(out, "\n{:<30} {:<30} EXPIRES", "TLS HOST", "SECRET");
    for (host, entry) in &hosts {
        let (secret, expires) = match (&entry.certificate, entry.secret.as_str()) {
            (Some(c), _) => (c.secret.as_str(), rfc3339(c.not_after)),
            (None, "") => ("(none named)", "default certificate".to_string()),
            (None, s) => (s, "unusable: default certificate".to_string()),
        };
        let _ = writeln!(out, "{:<30} {secret:<30} {expires}", host.to_string());
    }
    let (secret, expires) = match tls.default_certificate() {
        Some(c) => (c.secret.as_str(), rfc3339(c.not_after)),
        None => ("(generated at start)", "self-signed".to_string()),
    };
    let _ = writeln!(
        out,
        "{:<30} {secret:<30} {expires}",
        "(default certificate)"
    );
}
