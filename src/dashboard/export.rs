//! The "export" action: the current stats and routing table as one JSON
//! document, or as CSV (one row per route, with its backend's figures) for
//! a spreadsheet.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::view::{BackendRow, RouteRow};

/// The JSON export: everything the API answers, in one document.
pub fn json(summary: Value, stats: Value, backends: &[BackendRow], routes: Value) -> Value {
    json!({
        "exported_at": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        "summary": summary,
        "stats": stats,
        "backends": backends,
        "routing": routes,
    })
}

const CSV_HEADER: &str = "host,path,path_type,backend,ingress,tls_secret,certificate_expires,\
endpoints,healthy,slow,unhealthy,ejected,algorithm,policy,in_flight,requests_total,errors_total,\
rate_per_second,error_ratio,latency_mean_ms\r\n";

/// The CSV export: one row per route.
pub fn csv(routes: &[RouteRow], backends: &[BackendRow]) -> String {
    let mut out = String::from(CSV_HEADER);
    for route in routes {
        let b = backends.iter().find(|b| b.id == route.backend);
        let count = |state: &str| {
            b.and_then(|b| b.endpoint_states.get(state))
                .copied()
                .unwrap_or(0)
                .to_string()
        };
        let cells = [
            route.host.clone(),
            route.path.clone(),
            route.path_type.to_string(),
            route.backend.clone(),
            route.ingress.clone(),
            route.tls_secret.clone().unwrap_or_default(),
            route.certificate_expires.clone().unwrap_or_default(),
            b.map_or(0, |b| b.endpoints.len()).to_string(),
            count("healthy"),
            count("slow"),
            count("unhealthy"),
            count("ejected"),
            b.map_or("", |b| b.algorithm).to_string(),
            b.map_or(String::new(), |b| b.policy.clone()),
            b.map_or(0, |b| b.in_flight).to_string(),
            b.map_or(0, |b| b.requests_total).to_string(),
            b.map_or(0, |b| b.errors_total).to_string(),
            b.map_or(String::new(), |b| format!("{:.3}", b.rate)),
            b.map_or(String::new(), |b| format!("{:.4}", b.error_ratio)),
            b.and_then(|b| b.latency_mean_ms)
                .map_or(String::new(), |ms| format!("{ms:.3}")),
        ];
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{}", cell_text(cell));
        }
        out.push_str("\r\n");
    }
    out
}

/// One CSV cell (RFC 4180 quoting). A cell a spreadsheet would run as a
/// formula (`=`, `+`, `-`, `@` first) gets a leading `'`: host names and
/// paths come from Ingress authors.
fn cell_text(cell: &str) -> String {
    let cell = if cell.starts_with(['=', '+', '-', '@']) {
        format!("'{cell}")
    } else {
        cell.to_string()
    };
    if cell.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_quoted_and_defused() {
        assert_eq!(cell_text("plain"), "plain");
        assert_eq!(cell_text("a,b"), "\"a,b\"");
        assert_eq!(cell_text("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell_text("=cmd()"), "'=cmd()");
    }

    #[test]
    fn one_row_per_route() {
        let route = RouteRow {
            host: "a.example".into(),
            path: "/".into(),
            path_type: "Prefix",
            backend: "ns/web:80".into(),
            ingress: "ns/web".into(),
            tls_secret: None,
            certificate_expires: None,
            certificate_days_left: None,
        };
        let text = csv(&[route], &[]);
        let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[1].starts_with("a.example,/,Prefix,ns/web:80,ns/web,"));
        assert_eq!(
            lines[0].split(',').count(),
            lines[1].split(',').count(),
            "{text}"
        );
    }
}
