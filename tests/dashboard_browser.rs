//! The dashboard in a real browser: the real binary with real backends,
//! the page opened in headless Chromium, traffic sent with a plain HTTP
//! client. Checks that the feed shows those requests, pause stops it and
//! resume restarts it, the backend table and the status chart show the
//! real counts, export downloads the routing table, reload applies an
//! edited manifest, the token guard holds on a public address, and the page
//! logs no console error. Leaves a screenshot in
//! `target/tmp/dashboard-browser/dashboard.png`.
//!
//! Chromium is required: `scripts/tools` installs it; without it these
//! tests fail, they are never skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly

mod support;

use std::path::Path;
use std::time::Duration;

use http::StatusCode;
use serde_json::{Value, json};
use support::browser::{Browser, Page};
use support::*;

/// The shop (see `support::shop`).
async fn manifests(dir: &Path) -> Vec<String> {
    support::shop::shop(dir, &[]).await
}

/// How many rows of the feed show `path` (rows hidden by a filter not
/// counted).
fn rows_with(path: &str) -> String {
    format!(
        "[...document.querySelectorAll('#feed tr')].filter(r => !r.hidden && r.dataset.path === {}).length",
        json!(path)
    )
}

/// Sets a feed filter as a user would.
async fn filter(page: &Page<'_>, id: &str, value: &str) {
    page.eval(&format!(
        "(() => {{ const e = document.getElementById({id}); e.value = {value}; \
         e.dispatchEvent(new Event(e.tagName === 'SELECT' ? 'change' : 'input')); }})()",
        id = json!(id),
        value = json!(value)
    ))
    .await;
}

async fn count(page: &Page<'_>, expression: &str) -> u64 {
    page.eval(expression).await.as_u64().unwrap()
}

fn screenshot_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("dashboard-browser")
        .join("dashboard.png")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_live_traffic_and_its_actions_work() {
    let dir = tempfile::tempdir().unwrap();
    let mut parts = manifests(dir.path()).await;
    let proxy = Proxy::start(dir.path(), &["--access-log", "off"]).await;
    let dash = proxy.dashboard_port.unwrap();
    let browser = Browser::launch().await;
    let page = browser.page(1400, 1000).await;
    page.goto(&format!("http://127.0.0.1:{dash}/")).await;
    page.wait(
        "the feed connected",
        "document.getElementById('feed-state').textContent === 'live'",
    )
    .await;
    // What the first load cost: the page and its files, then the API.
    let sizes = page
        .eval(
            "(() => { const nav = performance.getEntriesByType('navigation')[0]; \
             const res = performance.getEntriesByType('resource'); \
             const files = res.filter(r => !r.name.includes('/api/')); \
             const api = res.filter(r => r.name.includes('/api/') && !r.name.includes('/api/feed')); \
             const sum = (l) => l.reduce((s, r) => s + r.transferSize, 0); \
             return {page: nav.transferSize + sum(files), files: files.length, api: sum(api)}; })()",
        )
        .await;
    eprintln!("first load: {sizes}");
    let page_bytes = sizes["page"].as_u64().unwrap();
    assert_eq!(
        sizes["files"], 2,
        "the page loads its script and style sheet only"
    );
    assert!(page_bytes > 10_000 && page_bytes < 32 * 1024, "{sizes}");

    // The feed shows the requests a plain client sends.
    for i in 0..6 {
        let resp = proxy.get("web.local", &format!("/shop/{i}")).await;
        assert_eq!(resp.status, StatusCode::OK);
    }
    for _ in 0..2 {
        let resp = proxy.get("fail.local", "/down").await;
        assert_eq!(resp.status, StatusCode::SERVICE_UNAVAILABLE);
    }
    page.wait(
        "eight requests in the feed",
        "document.querySelectorAll('#feed tr').length === 8",
    )
    .await;
    assert_eq!(count(&page, &rows_with("/shop/3")).await, 1);
    assert_eq!(count(&page, &rows_with("/down")).await, 2);
    let row = page
        .eval(
            "(() => { const r = [...document.querySelectorAll('#feed tr')].find(r => r.dataset.path === '/down'); \
             return [...r.cells].map(c => c.textContent); })()",
        )
        .await;
    assert_eq!(row[3], "fail.local", "{row}");
    assert_eq!(row[5], "503", "{row}");
    assert_eq!(row[8], "shop/fail:80", "{row}");

    // The filters: status class, host, backend; they apply to what arrives
    // and to what is already shown.
    filter(&page, "filter-status", "5").await;
    assert_eq!(count(&page, &rows_with("/shop/3")).await, 0);
    assert_eq!(count(&page, &rows_with("/down")).await, 2);
    proxy.get("web.local", "/filtered-out").await;
    proxy.get("fail.local", "/filtered-in").await;
    page.wait(
        "the 5xx request shown",
        &format!("{} === 1", rows_with("/filtered-in")),
    )
    .await;
    assert_eq!(count(&page, &rows_with("/filtered-out")).await, 0);
    filter(&page, "filter-status", "").await;
    assert_eq!(count(&page, &rows_with("/filtered-out")).await, 1);
    filter(&page, "filter-host", "WEB.lo").await;
    assert_eq!(count(&page, &rows_with("/down")).await, 0);
    assert_eq!(count(&page, &rows_with("/shop/3")).await, 1);
    filter(&page, "filter-host", "").await;
    page.wait(
        "the backend filter's choices",
        "[...document.getElementById('filter-backend').options].some(o => o.value === 'shop/fail:80')",
    )
    .await;
    filter(&page, "filter-backend", "shop/fail:80").await;
    assert_eq!(count(&page, &rows_with("/shop/3")).await, 0);
    assert_eq!(count(&page, &rows_with("/down")).await, 2);
    filter(&page, "filter-backend", "").await;

    // Pause: the page leaves the feed, and new requests do not appear.
    page.click("#pause").await;
    page.wait(
        "paused",
        "document.getElementById('pause').textContent === 'Resume'",
    )
    .await;
    wait_until(DEADLINE, "the feed has no watcher", || async {
        let summary = get(dash, "localhost", "/api/summary").await;
        serde_json::from_str::<Value>(&summary.body).unwrap()["feed"]["watchers"] == 0
    })
    .await;
    for _ in 0..3 {
        proxy.get("web.local", "/while-paused").await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(count(&page, &rows_with("/while-paused")).await, 0);

    // Resume: new requests appear again.
    page.click("#pause").await;
    page.wait(
        "live again",
        "document.getElementById('feed-state').textContent === 'live'",
    )
    .await;
    for _ in 0..2 {
        proxy.get("web.local", "/after-resume").await;
    }
    page.wait(
        "requests after resume",
        &format!("{} === 2", rows_with("/after-resume")),
    )
    .await;

    // The backend table and the status chart show the real counts:
    // web.local 6 + 1 + 3 + 2 = 12 answers, fail.local 2 + 1 = 3.
    let cell = |backend: &str, class: &str| {
        format!(
            "document.querySelector('#backends tr[data-backend=\"{backend}\"] td.{class}')?.textContent"
        )
    };
    page.wait(
        "the backend counts",
        &format!(
            "{} === '12' && {} === '3' && {} === '3'",
            cell("shop/web:80", "requests"),
            cell("shop/fail:80", "requests"),
            cell("shop/fail:80", "errors")
        ),
    )
    .await;
    let endpoints = page
        .eval("[...document.querySelectorAll('#backends tr[data-backend=\"shop/web:80\"] .ep')].map(e => e.className)")
        .await;
    assert_eq!(endpoints, json!(["ep healthy", "ep healthy"]));
    let bar = |code: &str| {
        format!(
            "document.querySelector('#status-chart .status-bar[data-code=\"{code}\"]')?.getAttribute('data-count')"
        )
    };
    page.wait(
        "the status chart",
        &format!("{} === '12' && {} === '3'", bar("200"), bar("503")),
    )
    .await;
    // 3 x 503 of 15: S = 0.8, L = E = 1 -> 90.
    page.wait(
        "the health score",
        "document.getElementById('score').textContent === '90'",
    )
    .await;
    let formula = page
        .eval("document.getElementById('score-formula').textContent")
        .await;
    assert!(formula.as_str().unwrap().contains("0.5·S"), "{formula}");

    // The routing table, its search, and the rejected Ingress.
    page.wait(
        "the routing table",
        "document.querySelectorAll('#routes tr').length === 2",
    )
    .await;
    let routes = page
        .eval("document.getElementById('routes').textContent")
        .await;
    assert!(
        routes.as_str().unwrap().contains("shop/web-tls"),
        "{routes}"
    );
    page.eval(
        "(() => { const s = document.getElementById('route-search'); s.value = 'fail'; \
         s.dispatchEvent(new Event('input')); })()",
    )
    .await;
    assert_eq!(
        count(&page, "document.querySelectorAll('#routes tr').length").await,
        1
    );
    page.eval(
        "(() => { const s = document.getElementById('route-search'); s.value = 'bad-path'; \
         s.dispatchEvent(new Event('input')); })()",
    )
    .await;
    let problems = page
        .eval("document.getElementById('problems').textContent")
        .await;
    assert!(
        problems.as_str().unwrap().contains("no-slash"),
        "{problems}"
    );
    page.eval(
        "(() => { const s = document.getElementById('route-search'); s.value = ''; \
         s.dispatchEvent(new Event('input')); })()",
    )
    .await;

    // Export downloads the stats and the routing table.
    let downloads = tempfile::tempdir().unwrap();
    browser.allow_downloads(downloads.path()).await;
    page.click("#export-json").await;
    page.click("#export-csv").await;
    let json_file = downloads.path().join("ruststrom-export.json");
    let csv_file = downloads.path().join("ruststrom-export.csv");
    wait_until(DEADLINE, "the exports downloaded", || async {
        json_file.exists() && csv_file.exists()
    })
    .await;
    let exported: Value =
        serde_json::from_str(&std::fs::read_to_string(&json_file).unwrap()).unwrap();
    let hosts: Vec<&str> = exported["routing"]["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["fail.local", "web.local"]);
    assert_eq!(exported["stats"]["status_codes"]["200"], 12);
    let csv = std::fs::read_to_string(&csv_file).unwrap();
    assert!(
        csv.lines()
            .any(|l| l.starts_with("web.local,/,Prefix,shop/web:80,")),
        "{csv}"
    );

    // Reload applies an edited manifest and says what it did.
    let before = count(
        &page,
        "Number(document.getElementById('generation').textContent.match(/#(\\d+)/)[1])",
    )
    .await;
    parts.push(ingress(
        "shop",
        "new",
        "new.local",
        &[("/", "Prefix", "web")],
    ));
    write_atomic(dir.path(), "routes.yaml", &docs(&parts));
    page.click("#reload").await;
    page.wait(
        "the reload's result",
        "document.getElementById('reload-result').hasAttribute('data-generation')",
    )
    .await;
    let result = page
        .eval("document.getElementById('reload-result').textContent")
        .await;
    let result = result.as_str().unwrap();
    assert!(result.starts_with("reloaded (standalone)"), "{result}");
    assert!(result.contains("3 routes, 1 rejected"), "{result}");
    let generation = count(
        &page,
        "Number(document.getElementById('reload-result').dataset.generation)",
    )
    .await;
    assert!(generation > before, "{generation} after {before}");
    // The page refreshed its routing table with the reload.
    page.wait(
        "the new route shown",
        "document.getElementById('routes').textContent.includes('new.local')",
    )
    .await;
    // And the proxy serves it (either echo backend answers).
    let new = proxy.get("new.local", "/").await;
    assert_eq!(new.status, StatusCode::OK, "{}", new.body);
    assert!(new.backend().unwrap().starts_with("web-"), "{new:?}");

    // A few more requests so the picture has a chart, then the artifact.
    for i in 0..20 {
        let host = ["web.local", "web.local", "web.local", "nowhere.local"][i % 4];
        proxy.get(host, &format!("/item/{i}")).await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let shot = screenshot_path();
    page.screenshot(&shot).await;
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);

    let errors = browser.errors();
    assert!(errors.is_empty(), "the page logged errors: {errors:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_dashboard_asks_the_browser_to_log_in() {
    let dir = tempfile::tempdir().unwrap();
    manifests(dir.path()).await;
    let args: Vec<String> = [
        "--manifests",
        &dir.path().display().to_string(),
        "--http-addr",
        "127.0.0.1:0",
        "--metrics-addr",
        "127.0.0.1:0",
        "--dashboard-addr",
        "0.0.0.0:0",
        "--access-log",
        "off",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let proxy =
        Proxy::start_args_env(&args, &[("RUST_STROM_DASHBOARD_TOKEN", "browser-token")]).await;
    let dash = proxy.dashboard_port.unwrap();
    // Without the token: refused.
    let bare = get(dash, "localhost", "/api/summary").await;
    assert_eq!(bare.status, StatusCode::UNAUTHORIZED);

    let browser = Browser::launch().await;
    let page = browser.page(1200, 800).await;
    page.goto(&format!("http://127.0.0.1:{dash}/")).await;
    assert_eq!(page.eval("location.pathname").await, "/login");
    page.eval(
        "document.getElementById('token').value = 'browser-token'; \
         document.querySelector('form').submit()",
    )
    .await;
    page.wait("the dashboard after login", "location.pathname === '/'")
        .await;
    page.wait(
        "the page's data",
        "/^\\d+$/.test(document.getElementById('score').textContent)",
    )
    .await;
    page.wait(
        "the feed connected",
        "document.getElementById('feed-state').textContent === 'live'",
    )
    .await;
    proxy.get("web.local", "/logged-in").await;
    page.wait(
        "a request in the feed",
        &format!("{} === 1", rows_with("/logged-in")),
    )
    .await;
    let errors = browser.errors();
    assert!(errors.is_empty(), "the page logged errors: {errors:#?}");
}
