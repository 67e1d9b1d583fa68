// RustStrom dashboard: a thin client of /api/. Everything from the network
// (hosts, paths, user agents) is written as text, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const FEED_ROWS = 200;
const SVG = "http://www.w3.org/2000/svg";

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : String(c ?? ""));
  return node;
}
function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}
const fmt = (n, d = 1) => (n == null ? "–" : Number(n).toFixed(d));
const pct = (r) => (r == null ? "–" : (100 * r).toFixed(2) + " %");

async function getJson(path) {
  const r = await fetch(path, { credentials: "same-origin" });
  if (r.status === 401) { location.href = "/login"; throw new Error("login needed"); }
  if (!r.ok) throw new Error(path + ": " + r.status);
  return r.json();
}

// --- summary: score, figures -------------------------------------------
function showSummary(s) {
  $("mode").textContent = s.mode + " mode";
  $("generation").textContent = "table #" + s.generation + " · " + s.routes + " routes · " +
    s.backends + " backends · " + s.rejected + " rejected";
  const h = s.health;
  const score = $("score");
  score.textContent = h.score;
  score.className = "score " + (h.score >= 90 ? "good" : h.score >= 70 ? "fair" : "poor");
  $("score-parts").textContent = "S " + fmt(h.success, 3) + " · L " + fmt(h.latency, 3) + " · E " + fmt(h.endpoints, 3);
  $("score-formula").textContent = h.formula;
  const t = s.traffic;
  $("now-rate").textContent = fmt(t.rate, 2);
  $("now-errors").textContent = pct(t.error_ratio);
  $("now-latency").textContent = fmt(t.p50_ms) + " / " + fmt(t.p95_ms) + " / " + fmt(t.p99_ms) + " ms";
  sampleEvery = s.feed.sample_every;
  showSampling();
}

// --- charts ---------------------------------------------------------------
function lineChart(node, series) {
  node.replaceChildren();
  const all = series.flat().filter((v) => v != null);
  const max = Math.max(1e-9, ...all);
  series.forEach((values, i) => {
    if (values.length === 0) return;
    // One point (the first 10 s) is drawn as a level line.
    if (values.length === 1) values = [values[0], values[0]];
    const step = 300 / (values.length - 1);
    const pts = values.map((v, j) => (j * step).toFixed(1) + "," + (78 - 76 * ((v ?? 0) / max)).toFixed(1));
    node.append(svg("polyline", { points: pts.join(" "), class: "l" + i }));
  });
  const label = svg("text", { x: 2, y: 10, "font-size": 9, fill: "#6a7380" });
  label.textContent = "max " + (max < 10 ? max.toFixed(3) : max.toFixed(0));
  node.append(label);
}

function statusChart(codes) {
  const node = $("status-chart");
  node.replaceChildren();
  const entries = Object.entries(codes).sort((a, b) => a[0].localeCompare(b[0]));
  const total = entries.reduce((s, [, n]) => s + n, 0);
  const rowH = 22;
  node.setAttribute("height", Math.max(1, entries.length) * rowH + 8);
  node.setAttribute("data-total", total);
  if (entries.length === 0) {
    const t = svg("text", { x: 10, y: 18 }); t.textContent = "no requests yet"; node.append(t);
    return;
  }
  const max = Math.max(1, ...entries.map(([, n]) => n));
  const width = node.clientWidth || 600;
  entries.forEach(([code, n], i) => {
    const y = 4 + i * rowH;
    const g = svg("g", { class: "status-bar", "data-code": code, "data-count": n });
    const label = svg("text", { x: 8, y: y + 15 }); label.textContent = code;
    const w = Math.max(2, (width - 220) * (n / max));
    const bar = svg("rect", { x: 50, y: y + 3, width: w, height: rowH - 8, rx: 3, class: "c" + code[0] });
    const count = svg("text", { x: 56 + w, y: y + 15 });
    count.textContent = n + " (" + (100 * n / total).toFixed(1) + " %)";
    g.append(label, bar, count);
    node.append(g);
  });
}

function showStats(s) {
  const p = s.points;
  lineChart($("chart-rate"), [p.map((x) => x.rate)]);
  lineChart($("chart-errors"), [p.map((x) => x.error_ratio)]);
  lineChart($("chart-latency"), [p.map((x) => x.p50_ms), p.map((x) => x.p95_ms), p.map((x) => x.p99_ms)]);
  statusChart(s.status_codes);
}

// --- backends -----------------------------------------------------------
function showBackends(rows) {
  const body = $("backends");
  body.replaceChildren(...rows.map((b) => {
    const eps = el("td");
    for (const e of b.endpoints) {
      eps.append(el("span", { class: "ep " + e.state, title: e.state + (e.ready ? "" : ", terminating") + ", " + e.in_flight + " in flight" }, e.address));
    }
    if (b.endpoints.length === 0) eps.append(el("span", { class: "ep unhealthy" }, "none"));
    return el("tr", { "data-backend": b.id },
      el("td", {}, b.id), eps,
      el("td", { class: "num" }, b.in_flight),
      el("td", { class: "num" }, fmt(b.rate, 2)),
      el("td", { class: "num requests" }, b.requests_total),
      el("td", { class: "num errors" }, b.errors_total),
      el("td", { class: "num" }, fmt(b.latency_mean_ms, 2)),
      el("td", { class: "num" }, fmt(b.latency_p95_ms, 2)),
      el("td", {}, b.algorithm), el("td", {}, b.policy));
  }));
  const select = $("filter-backend");
  const known = new Set([...select.options].map((o) => o.value));
  for (const b of rows) if (!known.has(b.id)) select.append(el("option", { value: b.id }, b.id));
}

// --- routing table --------------------------------------------------------
let routing = null;
function showRoutes() {
  if (!routing) return;
  const q = $("route-search").value.trim().toLowerCase();
  const hit = (...fields) => !q || fields.some((f) => String(f ?? "").toLowerCase().includes(q));
  $("routes").replaceChildren(...routing.routes
    .filter((r) => hit(r.host, r.path, r.backend, r.ingress, r.tls_secret))
    .map((r) => el("tr", {},
      el("td", {}, r.host), el("td", {}, r.path), el("td", {}, r.path_type),
      el("td", {}, r.backend), el("td", {}, r.ingress), el("td", {}, r.tls_secret ?? "–"),
      el("td", { class: r.certificate_days_left != null && r.certificate_days_left < 14 ? "soon" : "" },
        r.certificate_expires ? r.certificate_expires + " (" + r.certificate_days_left + " d)" : "–"))));
  const problems = routing.problems.filter((p) => hit(p.kind, p.object, p.message, p.severity));
  $("problems").replaceChildren(...(problems.length ? problems.map((p) => el("tr", {},
    el("td", { class: p.severity }, p.severity), el("td", {}, p.kind), el("td", {}, p.object), el("td", {}, p.message)))
    : [el("tr", {}, el("td", { colspan: 4, class: "muted" }, "none"))]));
}
async function refreshRoutes() {
  routing = await getJson("/api/routes");
  showRoutes();
}

// --- live feed -------------------------------------------------------------
let source = null;
let paused = false;
let sampleEvery = 1;
let lost = 0;
function showSampling() {
  $("sampling").textContent = sampleEvery > 1
    ? "high traffic: showing 1 request in " + sampleEvery
    : "showing every request";
  if (lost > 0) $("sampling").textContent += " · " + lost + " lost (page too slow)";
}
function feedFilter(r) {
  const host = $("filter-host").value.trim().toLowerCase();
  const status = $("filter-status").value;
  const backend = $("filter-backend").value;
  return (!host || String(r.host ?? "").toLowerCase().includes(host)) &&
    (!status || String(r.status)[0] === status) &&
    (!backend || r.backend === backend);
}
// Rows that do not match the filters are kept hidden, so changing a filter
// shows what already arrived.
function refilter() {
  for (const row of $("feed").rows) {
    const d = row.dataset;
    row.hidden = !feedFilter({ host: d.host, status: d.status, backend: d.backend });
  }
}
function addRecord(r) {
  const row = el("tr", { "data-status": r.status, "data-host": r.host ?? "", "data-path": r.path, "data-backend": r.backend ?? "" },
    el("td", {}, (r.time || "").slice(11, 23)), el("td", {}, r.client), el("td", {}, r.method),
    el("td", {}, r.host ?? "–"), el("td", { title: r.path }, r.path),
    el("td", { class: "s" + String(r.status)[0] }, r.status),
    el("td", { class: "num" }, fmt(r.duration_ms, 2)), el("td", { class: "num" }, r.bytes_out),
    el("td", {}, r.backend ?? "–"), el("td", {}, r.upstream ?? "–"));
  row.hidden = !feedFilter(r);
  const body = $("feed");
  body.prepend(row);
  while (body.rows.length > FEED_ROWS) body.lastElementChild.remove();
}
function connect() {
  source = new EventSource("/api/feed");
  source.addEventListener("request", (e) => addRecord(JSON.parse(e.data)));
  source.addEventListener("meta", (e) => {
    const m = JSON.parse(e.data);
    sampleEvery = m.sample_every; lost = m.lost; showSampling();
  });
  source.onopen = () => { $("feed-state").textContent = "live"; };
  source.onerror = () => { $("feed-state").textContent = "reconnecting…"; };
}
function setPaused(p) {
  paused = p;
  $("pause").textContent = p ? "Resume" : "Pause";
  $("pause").setAttribute("aria-pressed", String(p));
  if (p) {
    // Leaving the feed stops the proxy building records for this page.
    if (source) source.close();
    source = null;
    $("feed-state").textContent = "paused";
  } else {
    connect();
  }
}

// --- actions ---------------------------------------------------------------
async function reload() {
  const out = $("reload-result");
  out.hidden = false;
  out.textContent = "reloading…";
  try {
    const r = await fetch("/api/reload", { method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf } });
    const o = await r.json();
    if (!r.ok) { out.textContent = "reload failed: " + (o.error || r.status); return; }
    out.textContent = "reloaded (" + o.source + "): table #" + o.generation + ", " + o.routes + " routes, " +
      o.rejected + " rejected, " + fmt(o.took_ms, 1) + " ms" +
      (o.errors.length ? " · " + o.errors.length + " file errors: " + o.errors.join("; ") : "");
    out.setAttribute("data-generation", o.generation);
    await Promise.all([refreshRoutes(), tick()]);
  } catch (e) {
    out.textContent = "reload failed: " + e.message;
  }
}

// --- refresh loop ----------------------------------------------------------
async function tick() {
  const [summary, stats, backends] = await Promise.all([
    getJson("/api/summary"), getJson("/api/stats"), getJson("/api/backends")]);
  showSummary(summary);
  showStats(stats);
  showBackends(backends);
}
function every(ms, f) {
  const run = () => f().catch((e) => { $("feed-state").textContent = "update failed: " + e.message; });
  run();
  setInterval(run, ms);
}

$("pause").addEventListener("click", () => setPaused(!paused));
$("reload").addEventListener("click", reload);
$("route-search").addEventListener("input", showRoutes);
$("filter-host").addEventListener("input", refilter);
$("filter-status").addEventListener("change", refilter);
$("filter-backend").addEventListener("change", refilter);
every(2000, tick);
every(10000, refreshRoutes);
connect();
