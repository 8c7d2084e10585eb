// tenantry console, its reports: the usage chart, the connectors list and the audit export and
// verification. Loaded before app.js (both deferred, so in order); its functions run only once
// app.js has wired them, and use app.js's state and API helpers.
"use strict";

// ---------------------------------------------------------------- usage chart

const SVG = "http://www.w3.org/2000/svg";

function svgEl(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text != null) node.textContent = text;
  return node;
}

function usageKey(row, by) {
  return by === "day" ? row.day : by === "channel" ? `${row.team}/${row.channel}` : row.team;
}

/** Draws one bar per group (messages in) into the chart's SVG. */
function drawChart(rows, by) {
  const chart = $("usage-chart");
  const title = $("usage-chart-title");
  title.textContent = `Messages per ${by}`;
  chart.replaceChildren(title);
  const W = 640, H = 240, left = 44, bottom = 44, top = 12;
  const max = Math.max(1, ...rows.map((r) => r.messages_in));
  const plotH = H - top - bottom;
  chart.append(svgEl("line", { class: "axis", x1: left, y1: top, x2: left, y2: H - bottom }));
  chart.append(svgEl("line", { class: "axis", x1: left, y1: H - bottom, x2: W - 4, y2: H - bottom }));
  chart.append(svgEl("text", { x: left - 6, y: top + 4, "text-anchor": "end" }, String(max)));
  chart.append(svgEl("text", { x: left - 6, y: H - bottom, "text-anchor": "end" }, "0"));
  if (!rows.length) {
    chart.append(svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "no messages"));
    return;
  }
  const slot = (W - left - 8) / rows.length;
  const width = Math.max(2, Math.min(48, slot * 0.7));
  rows.forEach((r, i) => {
    const h = (r.messages_in / max) * plotH;
    const x = left + 4 + i * slot + (slot - width) / 2;
    const label = usageKey(r, by);
    const rect = svgEl("rect", { class: "bar-rect", x, y: H - bottom - h, width, height: Math.max(h, 0), "data-group": label });
    rect.append(svgEl("title", {}, `${label}: ${r.messages_in} messages`));
    chart.append(rect);
    chart.append(svgEl("text", { x: x + width / 2, y: H - bottom - h - 3, "text-anchor": "middle" }, String(r.messages_in)));
    if (rows.length <= 16 || i % Math.ceil(rows.length / 16) === 0) {
      chart.append(svgEl("text", { x: x + width / 2, y: H - bottom + 14, "text-anchor": "middle" }, label.length > 14 ? `${label.slice(0, 13)}…` : label));
    }
  });
}

async function loadUsage(event) {
  if (event) event.preventDefault();
  const by = $("usage-by").value;
  const body = await getJson(`/usage${query({ by, since: $("usage-since").value, until: $("usage-until").value })}`);
  const rows = body.usage.slice().sort((a, b) => (usageKey(a, by) < usageKey(b, by) ? -1 : 1));
  drawChart(rows, by);
  $("usage-table").tBodies[0].replaceChildren(
    ...rows.map((r) =>
      el(
        "tr",
        {},
        el("th", { scope: "row", text: usageKey(r, by) }),
        ...[r.messages_in, r.replies_out, r.sessions_started, r.events].map((n) => el("td", { text: String(n) })),
      ),
    ),
  );
}

// ---------------------------------------------------------------- connectors

/** The env's connectors with their state; a token without the connectors (or admin) scope
 * gets a hint instead of an error: the rest of the console works without it. */
async function loadConnectors() {
  const body = $("connectors-table").tBodies[0];
  const status = $("connectors-status");
  if (!has("GET", "/connectors")) {
    body.replaceChildren();
    status.textContent = `this server has no GET ${API}/connectors`;
    return;
  }
  const words = (token().scope || "").split(" ");
  if (!words.includes("connectors") && !words.includes("admin")) {
    body.replaceChildren();
    status.textContent = "listing connectors needs a token whose scope names connectors or admin";
    return;
  }
  let listed;
  try {
    listed = await getJson("/connectors");
  } catch (e) {
    body.replaceChildren();
    if (e instanceof ApiError && e.code === "scope_required") {
      status.textContent = "listing connectors needs a token whose scope names connectors or admin";
      return;
    }
    throw e;
  }
  body.replaceChildren(
    ...listed.connectors.map((c) =>
      el(
        "tr",
        { "data-testid": "connector-row", "data-connector": c.id },
        el("th", { scope: "row", text: c.id }),
        el("td", { text: `${c.team} / ${c.channel}` }),
        el("td", { text: c.provider }),
        el("td", { text: c.version }),
        el("td", {}, el("span", { class: `badge ${c.state}`, "data-testid": "connector-state", text: c.state })),
      ),
    ),
  );
  status.textContent = `${listed.connectors.length} connector(s), heartbeat every ${listed.heartbeat_interval_s} s`;
}

// ---------------------------------------------------------------- audit

async function exportAudit() {
  const t = token();
  $("audit-status").textContent = "exporting…";
  const blob = await (await call(`/audit/export${query({ format: "jsonl" })}`)).blob();
  const url = URL.createObjectURL(blob);
  const a = el("a", { href: url, download: `audit-${t.tenant}-${t.env}.jsonl` });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
  $("audit-status").textContent = `exported ${blob.size} bytes (audit-${t.tenant}-${t.env}.jsonl)`;
}

async function verifyAudit() {
  const status = $("audit-status");
  const progress = $("verify-progress");
  status.textContent = "verifying…";
  progress.hidden = false;
  progress.removeAttribute("value");
  let result = null;
  try {
    const response = await call("/audit/verify");
    await readLines(response, (line) => {
      if (!line.trim()) return;
      const msg = JSON.parse(line);
      if (msg.progress) {
        status.textContent = `verifying… ${msg.progress.events} events checked (tenant seq ${msg.progress.tenant_seq})`;
      } else if (msg.result) {
        result = msg.result;
      }
    });
  } finally {
    progress.hidden = true;
  }
  if (!result) throw new Error("verify ended without a result line (the connection was cut)");
  if (result.ok) {
    status.textContent = `chain OK: ${result.events} events, head tenant seq ${result.head.tenant_seq} (${result.head.hash.slice(0, 16)}…)`;
  } else {
    status.textContent = `chain BROKEN after ${result.events} events: first bad tenant seq ${result.first_bad.tenant_seq}: ${result.first_bad.reason}`;
    showError(status.textContent);
  }
}
