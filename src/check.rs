//! `rust-strom check`: load a manifests folder, compile it, and print the
//! table and every problem, as a CI step or before a deploy.

use std::fmt::Write as _;
use std::path::Path;

use crate::compile::{CompileOptions, Severity, compile};
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
    let compiled = compile(&snapshot, options, 1);
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
