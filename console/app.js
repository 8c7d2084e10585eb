// tenantry console: plain JavaScript, no build step, no dependencies.
//
// Tokens live in this tab's session storage only and are sent as `Authorization: Bearer`;
// never in a URL (live events are read with fetch streaming, exports downloaded through a blob).
// The server lists the routes it has in <meta name="tenantry-routes">: a feature whose route is
// missing is shown as unavailable instead of being called.
"use strict";

const API = "/api/v1";
const STORAGE_KEY = "tenantry.console.tokens";
const SESSIONS_PAGE = 50;
/** Delay before reconnecting a dropped live stream, ms. */
const RECONNECT_MS = 1000;
/** Poll interval for live events when the server has no stream route, ms. */
const POLL_MS = 500;
/** Pause after the replay slider moves before the state is fetched, ms. */
const REPLAY_DEBOUNCE_MS = 120;

const $ = (id) => document.getElementById(id);

const ROUTES = new Set(
  (document.querySelector('meta[name="tenantry-routes"]')?.content || "")
    .split(";")
    .filter(Boolean),
);
const has = (method, path) => ROUTES.has(`${method} ${API}${path}`);

// ---------------------------------------------------------------- state

const state = {
  tokens: [], // [{token, tenant, env, team}]
  current: -1,
  sessionsAfter: null,
  session: null, // {id, lastSeq, lastTenantSeq, replayReady}
  live: null, // AbortController of the live timeline
  replayTimer: null,
  replaySeq: 0, // the seq whose state is wanted (latest request wins)
};

// ---------------------------------------------------------------- errors

function showError(message) {
  const el = $("error");
  el.textContent = message;
  el.hidden = false;
}

function clearError() {
  const el = $("error");
  el.hidden = true;
  el.textContent = "";
}

/** Runs an async UI action, showing its error in the error element. */
function guarded(fn) {
  return async (...args) => {
    clearError();
    try {
      await fn(...args);
    } catch (e) {
      showError(e instanceof ApiError ? e.message : String(e && e.message ? e.message : e));
    }
  };
}

class ApiError extends Error {
  constructor(status, code, message, retryAfterS) {
    super(code ? `${message} (${code}, HTTP ${status})` : `HTTP ${status}: ${message}`);
    this.status = status;
    this.code = code;
    this.retryAfterS = retryAfterS;
  }
}

// ---------------------------------------------------------------- tokens

/** The claims of a JWT, read (not verified: the server does that) from its payload. */
function claimsOf(token) {
  const parts = token.split(".");
  if (parts.length !== 3) throw new Error("not a JWT (expected three dot-separated parts)");
  let json;
  try {
    const b64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const padded = b64 + "=".repeat((4 - (b64.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    json = JSON.parse(new TextDecoder().decode(bytes));
  } catch (_) {
    throw new Error("not a JWT: its payload is not base64url JSON");
  }
  if (typeof json.tenant !== "string" || typeof json.env !== "string") {
    throw new Error("not a tenantry token: the claims tenant and env are missing");
  }
  return json;
}

function saveTokens() {
  sessionStorage.setItem(STORAGE_KEY, JSON.stringify({ tokens: state.tokens, current: state.current }));
}

function loadTokens() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || "null");
    if (saved && Array.isArray(saved.tokens)) {
      state.tokens = saved.tokens;
      state.current = Math.min(saved.current ?? 0, saved.tokens.length - 1);
    }
  } catch (_) {
    sessionStorage.removeItem(STORAGE_KEY);
  }
}

function envLabel(t) {
  return `${t.tenant} / ${t.env}${t.team ? ` / ${t.team}` : ""}`;
}

function renderEnvSelect() {
  const select = $("env-select");
  select.replaceChildren(
    ...state.tokens.map((t, i) => {
      const option = document.createElement("option");
      option.value = String(i);
      option.textContent = envLabel(t);
      return option;
    }),
  );
  select.value = String(state.current);
}

function token() {
  return state.tokens[state.current];
}

/** Whether the current token may close and reset sessions: a token without `scope` may (as
 * before scopes), a scoped one only with `admin` (docs/http.md#scopes). */
function operator() {
  const scope = (token() && token().scope) || "";
  return scope === "" || scope.split(" ").includes("admin");
}

// ---------------------------------------------------------------- API

/** Request headers with `auth` (a token entry), or the current env's token. */
function headers(extra, auth) {
  const t = auth || token();
  const h = { Authorization: `Bearer ${t.token}`, "X-Tenant-ID": t.tenant };
  return Object.assign(h, extra || {});
}

async function failure(response) {
  let code = "";
  let message = response.statusText || "request failed";
  try {
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code;
      message = body.error.message;
    }
  } catch (_) {
    /* not JSON: keep the status text */
  }
  const retryAfter = Number(response.headers.get("Retry-After"));
  return new ApiError(response.status, code, message, Number.isFinite(retryAfter) ? retryAfter : 0);
}

/** A fetch of `API + path` as the current token; throws ApiError on a non-2xx answer. */
/** Fetches `path`; `init.auth` (a token entry) overrides the current env's token. */
async function call(path, init) {
  const { auth, ...rest } = init || {};
  const response = await fetch(API + path, Object.assign({}, rest, { headers: headers(rest.headers, auth) }));
  if (!response.ok) throw await failure(response);
  return response;
}

async function getJson(path) {
  return (await call(path)).json();
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== "" && v != null) q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
}

/** Reads a streamed body line by line; `onLine` gets each complete line. */
async function readLines(response, onLine) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let at;
    while ((at = buffer.indexOf("\n")) >= 0) {
      onLine(buffer.slice(0, at).replace(/\r$/, ""));
      buffer = buffer.slice(at + 1);
    }
  }
  buffer += decoder.decode();
  if (buffer) onLine(buffer);
}

// ---------------------------------------------------------------- login and envs

function showLogin(adding) {
  $("login").hidden = false;
  $("login-cancel").hidden = !adding;
  $("login-title").textContent = adding ? "Add a token (another env)" : "Log in";
  $("login-token").value = "";
  $("login-token").focus();
}

async function login(event) {
  event.preventDefault();
  const raw = $("login-token").value.trim();
  if (!raw) throw new Error("paste a token first");
  const claims = claimsOf(raw);
  const entry = {
    token: raw, tenant: claims.tenant, env: claims.env, team: claims.team || null,
    scope: typeof claims.scope === "string" ? claims.scope : "",
  };
  const same = state.tokens.findIndex((t) => t.tenant === entry.tenant && t.env === entry.env && t.team === entry.team);
  // Check the token against the server before keeping it. Until it is kept, everything else
  // (an open session's stream and refreshes) goes on with the current env's token.
  await call(`/sessions${query({ limit: 1 })}`, { auth: entry });
  closeSession();
  if (same >= 0) state.tokens[same] = entry;
  else state.tokens.push(entry);
  state.current = same >= 0 ? same : state.tokens.length - 1;
  saveTokens();
  $("login-token").value = "";
  await enterApp();
}

async function enterApp() {
  $("login").hidden = true;
  $("app").hidden = false;
  $("env-area").hidden = false;
  renderEnvSelect();
  closeSession();
  await Promise.all([loadSessions(false), loadUsage(), loadConnectors()]);
}

function logout() {
  closeSession();
  state.tokens = [];
  state.current = -1;
  sessionStorage.removeItem(STORAGE_KEY);
  $("app").hidden = true;
  $("env-area").hidden = true;
  $("session-list").replaceChildren();
  showLogin(false);
}

async function switchEnv() {
  state.current = Number($("env-select").value);
  saveTokens();
  closeSession();
  await Promise.all([loadSessions(false), loadUsage(), loadConnectors()]);
}

// ---------------------------------------------------------------- sessions list

function fmtTime(ms) {
  if (typeof ms !== "number") return "";
  return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c != null) node.append(c);
  return node;
}

function sessionRow(s) {
  const status = s.status || "";
  const button = el(
    "button",
    { type: "button", "data-session": s.session, "aria-current": "false" },
    el("span", { class: "session-id", text: s.session }),
    el(
      "span",
      { class: "session-meta" },
      `${s.user} · ${s.team}/${s.channel} · ${fmtTime(s.last_activity ?? s.started_at)} `,
      status ? el("span", { class: `badge ${status}`, text: status }) : null,
    ),
    s.last_message ? el("span", { class: "session-last", text: s.last_message }) : null,
  );
  button.addEventListener("click", guarded(() => openSession(s.session)));
  const li = el("li", { "data-testid": "session-row" }, button);
  if (status === "quarantined" && has("POST", "/sessions/{id}/reset") && operator()) {
    const reset = el("button", { type: "button", text: `Reset ${s.session.slice(0, 8)}…`, "aria-label": `Reset session ${s.session}` });
    reset.addEventListener("click", guarded(async () => {
      await resetSession(s.session);
      await loadSessions(false);
    }));
    li.append(reset);
  }
  return li;
}

async function loadSessions(more) {
  const params = {
    limit: SESSIONS_PAGE,
    q: $("filter-q").value.trim(),
    status: $("filter-status").value,
    since: $("filter-since").value,
  };
  if (more && state.sessionsAfter) params.after = state.sessionsAfter;
  const body = await getJson(`/sessions${query(params)}`);
  const list = $("session-list");
  // A session active again between two pages moves to the front and may come again: once only.
  const shown = new Set(more ? [...list.querySelectorAll("button[data-session]")].map((b) => b.dataset.session) : []);
  const rows = body.sessions.filter((s) => !shown.has(s.session)).map(sessionRow);
  if (more) list.append(...rows);
  else list.replaceChildren(...rows);
  state.sessionsAfter = body.next_after || null;
  $("sessions-more").hidden = !state.sessionsAfter;
  $("sessions-empty").hidden = list.children.length > 0;
  markCurrentRow();
}

function markCurrentRow() {
  for (const b of document.querySelectorAll("#session-list button[data-session]")) {
    b.setAttribute("aria-current", String(state.session !== null && b.dataset.session === state.session.id));
  }
}

// ---------------------------------------------------------------- one session

/** The pending summary refresh after a live event (see `refreshAfterEvent`). */
let summaryTimer = null;

function closeSession() {
  clearTimeout(summaryTimer);
  if (state.live) state.live.abort();
  state.live = null;
  state.session = null;
  $("session").hidden = true;
  $("timeline").replaceChildren();
  $("replay-state").replaceChildren();
  $("whatif-results").replaceChildren();
  $("whatif-summary").textContent = "";
  $("session-action-status").textContent = "";
  markCurrentRow();
}

async function openSession(id) {
  closeSession();
  state.session = { id, lastSeq: 0, lastTenantSeq: 0 };
  const live = new AbortController();
  state.live = live;
  $("session").hidden = false;
  $("session-title").textContent = `Session ${id}`;
  markCurrentRow();
  await refreshSummary();
  // The recorded events, page by page, then live.
  let from = 1;
  for (;;) {
    const page = await getJson(`/sessions/${encodeURIComponent(id)}/events${query({ from_seq: from })}`);
    if (live.signal.aborted) return;
    page.events.forEach(addEvent);
    if (!page.next_from_seq) break;
    from = page.next_from_seq;
  }
  setupReplay();
  followLive(live);
}

async function refreshSummary() {
  const id = state.session.id;
  const s = await getJson(`/sessions/${encodeURIComponent(id)}`);
  if (!state.session || state.session.id !== id) return;
  const ended = s.status === "ended" ? ` (${s.ended_reason})` : "";
  $("session-summary").textContent =
    `${s.tenant} / ${s.env} / ${s.team} / ${s.channel ?? "-"} · user ${s.user} · flow ${s.flow} ${s.flow_version} · ` +
    `${s.status}${ended} · ${s.messages_in} in, ${s.replies_out} out, ${s.flow_errors} flow errors`;
  $("session-close").disabled = s.status === "ended" || !has("POST", "/sessions/{id}/close") || !operator();
  $("session-reset").disabled = !has("POST", "/sessions/{id}/reset") || !operator();
}

function eventText(e) {
  const d = e.data || {};
  switch (e.kind) {
    case "SessionStarted": return `${d.user} started ${d.flow} ${d.flow_version}`;
    case "MessageReceived": return `${d.user}: ${d.text}`;
    case "ReplySent": return `bot (${d.node}): ${d.text}`;
    case "NodeEntered": return `node ${d.node}`;
    case "StateSet": return `${d.key} = ${d.value}`;
    case "AwaitingInput": return `awaiting ${d.key} at ${d.node}`;
    case "FlowFailed": return `failed at ${d.node}: ${d.error}`;
    case "SessionEnded": return `ended: ${d.reason}`;
    case "ConnectorRegistered":
      return `connector ${d.connector} registered: ${d.provider} ${d.version}${d.healed ? " (healed)" : ""}`;
    case "ConnectorStateChanged": return `connector ${d.connector}: ${d.from} -> ${d.to}`;
    default: return JSON.stringify(d);
  }
}

/** Appends an event to the open timeline, once (by seq). */
function addEvent(e) {
  const s = state.session;
  if (!s || e.session !== s.id || e.seq <= s.lastSeq) return;
  s.lastSeq = e.seq;
  s.lastTenantSeq = Math.max(s.lastTenantSeq, e.tenant_seq);
  const item = el(
    "li",
    { "data-testid": "timeline-event", "data-seq": String(e.seq) },
    el("span", { class: "ev-seq", text: `#${e.seq}` }),
    el("span", { class: "ev-kind", text: e.kind }),
    el("span", { class: "ev-time", text: fmtTime(e.at) }),
    el("span", { class: "ev-text", text: eventText(e) }),
  );
  const timeline = $("timeline");
  timeline.append(item);
  timeline.scrollTop = timeline.scrollHeight;
  const slider = $("replay-slider");
  const atEnd = Number(slider.value) === Number(slider.max);
  slider.max = String(s.lastSeq);
  if (atEnd) slider.value = String(s.lastSeq);
  $("replay-at").textContent = `${slider.value} of ${slider.max}`;
  // Following the latest state: show the new one.
  if (atEnd && s.replayReady && !slider.disabled) onReplayInput();
}

function setLive(text, live) {
  const badge = $("live-status");
  badge.textContent = text;
  badge.classList.toggle("live", live);
}

/** Keeps the open timeline up to date until `live` is aborted. */
async function followLive(live) {
  const id = state.session.id;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const stream = has("GET", "/sessions/{id}/events/stream");
  while (!live.signal.aborted) {
    let wait = RECONNECT_MS;
    try {
      if (stream) {
        await readStream(id, live);
      } else {
        setLive("polling", true);
        const page = await getJson(`/sessions/${encodeURIComponent(id)}/events${query({ from_seq: state.session.lastSeq + 1 })}`);
        if (!live.signal.aborted) page.events.forEach(addEvent);
        await sleep(POLL_MS);
        continue;
      }
    } catch (e) {
      if (live.signal.aborted) return;
      if (e instanceof ApiError && e.status < 500 && e.status !== 429) {
        setLive("stopped", false);
        showError(e.message);
        return;
      }
      // Busy (429) or unavailable: wait as long as the server asks.
      if (e instanceof ApiError && e.retryAfterS > 0) wait = Math.max(wait, e.retryAfterS * 1000);
    }
    if (live.signal.aborted) return;
    setLive("reconnecting", false);
    await sleep(wait);
  }
}

/** Reads the session's SSE stream (fetch streaming, so the token stays in a header), resuming
 * after the last event shown; returns when the stream ends. */
async function readStream(id, live) {
  const extra = { Accept: "text/event-stream" };
  if (state.session.lastTenantSeq > 0) extra["Last-Event-ID"] = String(state.session.lastTenantSeq);
  const response = await call(`/sessions/${encodeURIComponent(id)}/events/stream`, { headers: extra, signal: live.signal });
  setLive("live", true);
  let data = [];
  await readLines(response, (line) => {
    if (line === "") {
      if (data.length) {
        try {
          addEvent(JSON.parse(data.join("\n")));
          refreshAfterEvent();
        } catch (_) {
          /* not an event line: ignore */
        }
      }
      data = [];
    } else if (line.startsWith("data:")) {
      data.push(line.slice(5).replace(/^ /, ""));
    }
  });
}

function refreshAfterEvent() {
  clearTimeout(summaryTimer);
  const session = state.session;
  summaryTimer = setTimeout(() => {
    if (session && state.session === session) refreshSummary().catch(() => {});
  }, 300);
}

// ---------------------------------------------------------------- replay

function setupReplay() {
  const slider = $("replay-slider");
  const available = has("GET", "/sessions/{id}/state");
  slider.disabled = !available || state.session.lastSeq < 1;
  slider.min = "1";
  slider.max = String(Math.max(1, state.session.lastSeq));
  slider.value = slider.max;
  $("replay-at").textContent = `${slider.value} of ${slider.max}`;
  state.session.replayReady = true;
  if (!available) {
    $("replay-state").textContent = "Replay is not available: this server has no GET /api/v1/sessions/{id}/state.";
    return;
  }
  showReplay(Number(slider.value));
}

function onReplayInput() {
  const slider = $("replay-slider");
  $("replay-at").textContent = `${slider.value} of ${slider.max}`;
  clearTimeout(state.replayTimer);
  state.replayTimer = setTimeout(guarded(() => showReplay(Number(slider.value))), REPLAY_DEBOUNCE_MS);
}

async function showReplay(seq) {
  if (!state.session) return;
  state.replaySeq = seq;
  const id = state.session.id;
  const s = await getJson(`/sessions/${encodeURIComponent(id)}/state${query({ at_seq: seq })}`);
  if (!state.session || state.session.id !== id || state.replaySeq !== seq) return;
  const rows = [
    ["at seq", `${s.at_seq} of ${s.session_last_seq}`],
    ["status", s.status + (s.ended_reason ? ` (${s.ended_reason})` : "")],
    ["current node", s.current_node ?? "-"],
    ["cursor", s.cursor && s.cursor.at === "awaiting" ? `awaiting ${s.cursor.key} at ${s.cursor.node}` : "start"],
    ["messages in", String(s.messages_in)],
    ["replies out", String(s.replies_out)],
    ["flow errors", String(s.flow_errors)],
    ["last activity", fmtTime(s.last_activity)],
    ["vars", Object.keys(s.vars || {}).length ? Object.entries(s.vars).map(([k, v]) => `${k} = ${v}`).join(", ") : "(none)"],
  ];
  const dl = el("dl", { "data-at-seq": String(s.at_seq) });
  for (const [k, v] of rows) dl.append(el("dt", { text: k }), el("dd", { text: v }));
  $("replay-state").replaceChildren(dl);
}

// ---------------------------------------------------------------- what-if, close, reset

async function runWhatIf(event) {
  event.preventDefault();
  if (!state.session) return;
  const flow = $("whatif-flow").value;
  if (!flow.trim()) throw new Error("paste a flow (YAML) first");
  const id = state.session.id;
  const response = await call(`/sessions/${encodeURIComponent(id)}/what-if`, {
    method: "POST",
    headers: { "Content-Type": "application/yaml" },
    body: flow,
  });
  const r = await response.json();
  $("whatif-summary").textContent = r.identical
    ? `identical: ${r.messages} message(s) give the same replies and state with ${r.flow} ${r.flow_version}`
    : `${r.diverged} of ${r.messages} message(s) diverge with ${r.flow} ${r.flow_version}`;
  const outcome = (o) => {
    const parts = [...(o.replies || [])];
    const vars = Object.entries(o.vars || {}).map(([k, v]) => `${k} = ${v}`).join(", ");
    if (vars) parts.push(`vars: ${vars}`);
    if (o.ended) parts.push(`ended: ${o.ended}`);
    if (o.failed) parts.push(`failed: ${o.failed}`);
    return el("td", {}, ...parts.flatMap((p, i) => (i ? [el("br"), p] : [p])));
  };
  const table = el(
    "table",
    { class: "whatif" },
    el("caption", { class: "hint", text: "Recorded vs what-if, per message" }),
    el("thead", {}, el("tr", {}, ...["seq", "message", "recorded", "what-if", ""].map((h) => el("th", { scope: "col", text: h })))),
    el(
      "tbody",
      {},
      ...r.results.map((m) =>
        el(
          "tr",
          { class: m.diverged ? "diverged" : "" },
          el("td", { text: String(m.seq) }),
          el("td", { text: m.text }),
          outcome(m.recorded),
          outcome(m.what_if),
          el("td", { text: m.diverged ? "diverged" : "same" }),
        ),
      ),
    ),
  );
  $("whatif-results").replaceChildren(table);
}

async function closeCurrent() {
  if (!state.session) return;
  const r = await (await call(`/sessions/${encodeURIComponent(state.session.id)}/close`, { method: "POST" })).json();
  $("session-action-status").textContent = `closed at seq ${r.seq}`;
  await refreshSummary();
  await loadSessions(false);
}

async function resetSession(id) {
  const r = await (await call(`/sessions/${encodeURIComponent(id)}/reset`, { method: "POST" })).json();
  $("session-action-status").textContent = `${r.session}: quarantine lifted`;
}

// ---------------------------------------------------------------- wiring

function unavailable(id, method, path) {
  if (has(method, path)) return;
  const button = $(id);
  button.disabled = true;
  button.title = `this server has no ${method} ${API}${path}`;
}

function init() {
  $("login-form").addEventListener("submit", guarded(login));
  $("login-cancel").addEventListener("click", () => {
    $("login").hidden = true;
    clearError();
  });
  $("add-token").addEventListener("click", () => showLogin(true));
  $("logout").addEventListener("click", logout);
  $("env-select").addEventListener("change", guarded(switchEnv));
  $("filters").addEventListener("submit", guarded(async (e) => {
    e.preventDefault();
    await loadSessions(false);
  }));
  $("sessions-refresh").addEventListener("click", guarded(() => loadSessions(false)));
  $("sessions-more").addEventListener("click", guarded(() => loadSessions(true)));
  $("replay-slider").addEventListener("input", onReplayInput);
  $("whatif-form").addEventListener("submit", guarded(runWhatIf));
  $("session-close").addEventListener("click", guarded(closeCurrent));
  $("session-reset").addEventListener("click", guarded(async () => {
    await resetSession(state.session.id);
    await refreshSummary();
  }));
  $("usage-form").addEventListener("submit", guarded(loadUsage));
  $("usage-by").addEventListener("change", guarded(() => loadUsage()));
  $("connectors-refresh").addEventListener("click", guarded(loadConnectors));
  $("export-button").addEventListener("click", guarded(exportAudit));
  $("verify-button").addEventListener("click", guarded(verifyAudit));
  unavailable("verify-button", "GET", "/audit/verify");
  unavailable("whatif-run", "POST", "/sessions/{id}/what-if");
  unavailable("session-close", "POST", "/sessions/{id}/close");
  unavailable("session-reset", "POST", "/sessions/{id}/reset");
  loadTokens();
  if (state.tokens.length) guarded(enterApp)();
  else showLogin(false);
}

init();
