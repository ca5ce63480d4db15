// The OpenPrem console (webapp/console): reads the /v1 API with a bearer token from POST /v1/users/login.
// No framework, no inline script (the page's Content-Security-Policy forbids it), text only through textContent.
"use strict";

(() => {
  const STORE_KEY = "openprem.console.session";
  const FLOW_KEY = "openprem.console.flow";
  const POLL_MS = 5000;
  const FLOW_KEEP_MS = 60 * 60 * 1000;
  const FLOW_MINUTES = 10;
  const LIST_LIMIT = 50;
  const SECRET_KEYS = new Set(["secret", "password", "token", "api_key"]);

  const $ = (id) => document.getElementById(id);
  let session = null; // {token, user, expires}
  let timer = null;
  let pendingNewPassword = false;

  // --- the session (sessionStorage: gone with the tab) ------------------------------------------------------

  function loadSession() {
    try {
      const saved = JSON.parse(sessionStorage.getItem(STORE_KEY) || "null");
      if (saved && saved.token && (!saved.expires || Date.parse(saved.expires) > Date.now())) return saved;
    } catch (_) { /* unreadable: log in again */ }
    sessionStorage.removeItem(STORE_KEY);
    return null;
  }

  function saveSession(value) {
    session = value;
    if (value) sessionStorage.setItem(STORE_KEY, JSON.stringify(value));
    else sessionStorage.removeItem(STORE_KEY);
  }

  // --- HTTP ---------------------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, body) {
      const first = (body && body.errors && body.errors[0]) || {};
      super(first.details || first.title || `HTTP ${status}`);
      this.status = status;
      this.code = first.code;
    }
  }

  function basic(user, password) {
    const bytes = new TextEncoder().encode(`${user}:${password}`);
    let binary = "";
    bytes.forEach((b) => { binary += String.fromCharCode(b); });
    return "Basic " + btoa(binary);
  }

  // credentials: "omit" — no cookies, and no browser login prompt on a 401 with WWW-Authenticate: Basic.
  async function request(method, path, body, authorization) {
    const headers = { Accept: "application/json" };
    if (authorization) headers.Authorization = authorization;
    const init = { method, headers, credentials: "omit", cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    let parsed = null;
    try { parsed = await response.json(); } catch (_) { parsed = null; }
    if (!response.ok) throw new ApiError(response.status, parsed);
    return parsed || {};
  }

  async function api(method, path, body) {
    if (!session) throw new ApiError(401, null);
    try {
      return await request(method, path, body, `Bearer ${session.token}`);
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) {
        endSession("The session ended (token expired or revoked): log in again.");
      }
      throw error;
    }
  }

  // --- DOM helpers ----------------------------------------------------------------------------------------

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function fillRows(table, rows, empty) {
    const body = table.tBodies[0];
    body.replaceChildren();
    if (rows.length === 0) {
      const tr = el("tr");
      const td = el("td", empty, "muted");
      td.colSpan = table.tHead.rows[0].cells.length;
      tr.append(td);
      body.append(tr);
      return;
    }
    for (const cells of rows) {
      const tr = el("tr");
      for (const cell of cells) tr.append(cell instanceof Node ? wrapCell(cell) : el("td", cell));
      body.append(tr);
    }
  }

  function wrapCell(node) {
    if (node.tagName === "TD") return node;
    const td = el("td");
    td.append(node);
    return td;
  }

  function fillList(dl, pairs) {
    dl.replaceChildren();
    for (const [name, value, className] of pairs) {
      dl.append(el("dt", name), el("dd", value, className));
    }
  }

  function sectionError(node, error) {
    const text = error instanceof ApiError && error.status === 403 ? "needs ROLE_ADMIN" : `unavailable: ${error.message}`;
    if (node.tagName === "TABLE") fillRows(node, [], text);
    else if (node.tagName === "DL") fillList(node, [["error", text, "bad"]]);
    else node.textContent = text;
  }

  const fmtTime = (iso) => (iso ? new Date(iso).toLocaleString() : "");
  const metric = (metrics, name, labels) => {
    const entry = metrics && metrics[name];
    if (!entry) return null;
    const match = entry.data.find((d) => Object.entries(labels || {}).every(([k, v]) => d.labels[k] === v));
    return match ? match.value : null;
  };
  const number = (value) => (value === null || value === undefined ? "–" : Number(value).toLocaleString("en-US"));

  // --- login ----------------------------------------------------------------------------------------------

  async function onLogin(event) {
    event.preventDefault();
    const user = $("login-user").value.trim();
    const password = $("login-password").value;
    const errorLine = $("login-error");
    errorLine.textContent = "";
    let body;
    if (pendingNewPassword) {
      const first = $("login-new-password").value;
      if (first !== $("login-new-password2").value) {
        errorLine.textContent = "The two new passwords differ.";
        return;
      }
      body = { new_password: first };
    }
    $("login-submit").disabled = true;
    try {
      const answer = await request("POST", "/v1/users/login", body, basic(user, password));
      const issued = answer.users[0];
      saveSession({ token: issued.token, user, expires: issued.expires_after });
      pendingNewPassword = false;
      $("login-form").reset();
      $("new-password-fields").hidden = true;
      $("login-new-password").required = false; // hidden and required would block the next login's submit
      $("login-new-password2").required = false;
      showDashboard();
    } catch (error) {
      if (error instanceof ApiError && error.code === 1024) {
        pendingNewPassword = true;
        $("new-password-fields").hidden = false;
        $("login-new-password").required = true;
        $("login-new-password2").required = true;
        $("login-new-password").focus();
        errorLine.textContent = "Set a new password to finish the first login.";
      } else {
        errorLine.textContent = error.message || "login failed";
      }
    } finally {
      $("login-submit").disabled = false;
    }
  }

  async function onLogout() {
    try { await api("POST", "/v1/users/logout"); } catch (_) { /* the token is dropped anyway */ }
    endSession("Logged out.");
  }

  function endSession(message) {
    saveSession(null);
    if (timer) clearInterval(timer);
    timer = null;
    $("dashboard").hidden = true;
    $("session").hidden = true;
    $("login-view").hidden = false;
    $("login-error").textContent = message || "";
    $("login-user").focus();
  }

  function showDashboard() {
    $("login-view").hidden = true;
    $("dashboard").hidden = false;
    $("session").hidden = false;
    $("whoami").textContent = session.user;
    refresh();
    if (timer) clearInterval(timer);
    timer = setInterval(() => { if (!document.hidden) refresh(); }, POLL_MS);
  }

  // --- the sections ---------------------------------------------------------------------------------------

  let refreshing = false;

  async function refresh() {
    if (!session || refreshing) return;
    refreshing = true;
    try {
      await Promise.allSettled([health(), account(), flowAndBacklog(), deadLetters(), deliveryLog(), settings()]);
      if (session) $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    } finally {
      refreshing = false;
    }
  }

  async function health() {
    const table = $("health-table");
    try {
      const answer = await api("GET", "/v1/health");
      const h = answer.health || {};
      // One coreapp: {"gateway_status", "errors"?}; a cluster (reference): {"<node>": {"gateway_status", "role"}}.
      const nodes = "gateway_status" in h ? [["coreapp", h]] : Object.entries(h);
      fillRows(table, nodes.map(([name, node]) => {
        const status = node.gateway_status || "unknown";
        const details = [node.role, ...(node.errors || []).map((e) => `${e.code} ${e.title}: ${e.details || ""}`)]
          .filter(Boolean).join("; ");
        return [name, el("td", status, status === "connected" ? "ok" : "bad"), details];
      }), "no nodes");
    } catch (error) {
      sectionError(table, error);
    }
  }

  async function account() {
    const list = $("account-list");
    try {
      const [support, shards] = await Promise.allSettled([api("GET", "/v1/support"), api("GET", "/v1/account/shards")]);
      if (support.status === "rejected") throw support.reason;
      const s = support.value.support;
      const core = s.coreapp;
      const pairs = [];
      if (core) {
        pairs.push(["registered", core.registered ? "yes" : "no", core.registered ? "ok" : "warn"]);
        pairs.push(["gateway", core.gateway_status]);
        pairs.push(["version", `${core.version} (client ${core.client_version})`]);
        pairs.push(["database / bus", `${core.db_engine} / ${core.bus}`]);
        pairs.push(["coreapp uptime", `${Math.round(core.uptime_s)} s`]);
      } else {
        pairs.push(["coreapp", s.coreapp_error || "did not answer", "bad"]);
      }
      pairs.push(["shards", shards.status === "fulfilled" ? shards.value.account.shards : "–"]);
      fillList(list, pairs);
    } catch (error) {
      sectionError(list, error);
    }
  }

  async function setTwoStep(event) {
    event.preventDefault();
    const pin = $("two-step-pin").value.trim();
    const line = $("two-step-status");
    try {
      await api("POST", "/v1/settings/account/two-step", { pin });
      line.textContent = `Two-step verification turned on at ${new Date().toLocaleTimeString()}.`;
      $("two-step-pin").value = "";
    } catch (error) {
      line.textContent = `Not changed: ${error.message}`;
    }
  }

  async function removeTwoStep() {
    const line = $("two-step-status");
    try {
      await api("DELETE", "/v1/settings/account/two-step");
      line.textContent = `Two-step verification turned off at ${new Date().toLocaleTimeString()}.`;
    } catch (error) {
      line.textContent = `Not changed: ${error.message}`;
    }
  }

  // The flow: /v1/stats/db counts stored outbound messages by status.  A message at "read" has also been
  // delivered and sent, so "reached sent" = sent + delivered + read, and so on; the per-minute figure is the
  // growth of those sums between samples (a GC run that deletes old messages never counts as negative).
  function loadFlow() {
    try {
      const samples = JSON.parse(sessionStorage.getItem(FLOW_KEY) || "[]");
      return Array.isArray(samples) ? samples : [];
    } catch (_) {
      return [];
    }
  }

  function recordFlow(sample) {
    const samples = loadFlow().filter((s) => s.t > sample.t - FLOW_KEEP_MS);
    samples.push(sample);
    sessionStorage.setItem(FLOW_KEY, JSON.stringify(samples));
    return samples;
  }

  function perMinute(samples, now) {
    const current = Math.floor(now / 60000);
    const rows = [];
    const before = (limit) => {
      let found = null;
      for (const s of samples) if (s.t < limit) found = s;
      return found;
    };
    for (let m = current - FLOW_MINUTES + 1; m <= current; m += 1) {
      const start = before(m * 60000) || samples.find((s) => s.t >= m * 60000 && s.t < (m + 1) * 60000);
      const end = before((m + 1) * 60000);
      if (!start || !end) {
        rows.push({ m, s: null, d: null, r: null });
        continue;
      }
      rows.push({ m, s: Math.max(0, end.s - start.s), d: Math.max(0, end.d - start.d), r: Math.max(0, end.r - start.r) });
    }
    return rows.reverse();
  }

  function bar(value, max, kind) {
    const wrap = el("td", null, "num");
    const b = el("span", null, `bar ${kind}`);
    b.style.width = `${max > 0 && value ? Math.max(2, Math.round((60 * value) / max)) : 0}px`; // CSSOM, allowed by the CSP
    wrap.append(b, document.createTextNode(number(value)));
    return wrap;
  }

  async function flowAndBacklog() {
    const [db, app] = await Promise.allSettled([api("GET", "/v1/stats/db"), api("GET", "/v1/stats/app")]);
    if (db.status === "fulfilled") {
      const data = (db.value.stats.db.db_messages || { data: [] }).data;
      const count = (direction, status) =>
        data.filter((d) => d.labels.direction === direction && d.labels.status === status).reduce((a, d) => a + d.value, 0);
      const read = count("out", "read");
      const delivered = count("out", "delivered") + read;
      const sent = count("out", "sent") + delivered;
      const samples = recordFlow({ t: Date.now(), s: sent, d: delivered, r: read });
      const rows = perMinute(samples, Date.now());
      const max = Math.max(0, ...rows.map((r) => Math.max(r.s || 0, r.d || 0, r.r || 0)));
      fillRows($("flow-table"), rows.map((r) => [
        new Date(r.m * 60000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hourCycle: "h23" }),
        bar(r.s, max, "sent"), bar(r.d, max, "delivered"), bar(r.r, max, "read"),
      ]), "no samples yet");
      const totals = data.filter((d) => d.value > 0)
        .sort((a, b) => (a.labels.direction + a.labels.status).localeCompare(b.labels.direction + b.labels.status))
        .map((d) => [d.labels.direction === "out" ? "outbound" : "inbound", d.labels.status, el("td", number(d.value), "num")]);
      fillRows($("totals-table"), totals, "no messages stored");
    } else {
      sectionError($("flow-table"), db.reason);
      sectionError($("totals-table"), db.reason);
    }
    if (app.status === "fulfilled") {
      const m = app.value.stats.app;
      const age = metric(m, "callback_oldest_pending_age_seconds");
      const dead = metric(m, "callback_dead_letters");
      const ok = (m.callback_requests_duration_ms_count || { data: [] }).data
        .filter((d) => d.labels.result === "success").reduce((a, d) => a + d.value, 0);
      const failed = (m.callback_requests_duration_ms_count || { data: [] }).data
        .filter((d) => d.labels.result !== "success").reduce((a, d) => a + d.value, 0);
      fillList($("backlog-list"), [
        ["queued", number(metric(m, "callback_queue_size"))],
        ["oldest waiting", age ? `${Number(age).toFixed(1)} s` : "–", age > 60 ? "warn" : ""],
        ["dead letters", number(dead), dead > 0 ? "bad" : ""],
        ["requests since start", `${number(ok)} ok, ${number(failed)} failed`],
        ["messages received", number(metric(m, "messages_received_total"))],
      ]);
    } else {
      sectionError($("backlog-list"), app.reason);
    }
  }

  async function deadLetters() {
    const table = $("dead-table");
    try {
      const answer = await api("GET", `/v1/webhooks/dead?limit=${LIST_LIMIT}`);
      const { dead, total } = answer.webhooks;
      $("replay-all").disabled = total === 0;
      fillRows(table, dead.map((d) => {
        const button = el("button", "Replay");
        button.type = "button";
        button.className = "replay";
        button.dataset.event = d.event_id;
        return [el("code", d.event_id), d.kind, d.attempts, d.reason, d.last_error || "", fmtTime(d.dead_at), button];
      }), "none");
    } catch (error) {
      $("replay-all").disabled = true;
      sectionError(table, error);
    }
  }

  async function replay(path, what) {
    const line = $("replay-result");
    try {
      const answer = await api("POST", path);
      const { replayed, remaining } = answer.webhooks;
      line.textContent = `${what}: ${replayed} queued again, ${remaining} still dead-lettered.`;
    } catch (error) {
      line.textContent = `${what}: ${error.message}`;
    }
    refresh();
  }

  function onDeadClick(event) {
    const button = event.target.closest("button.replay");
    if (!button) return;
    button.disabled = true;
    replay(`/v1/webhooks/dead/${encodeURIComponent(button.dataset.event)}/replay`, `Replay ${button.dataset.event}`);
  }

  async function deliveryLog() {
    const table = $("log-table");
    try {
      const answer = await api("GET", `/v1/webhooks/log?limit=${LIST_LIMIT}`);
      fillRows(table, answer.webhooks.log.map((e) => {
        const good = e.status !== null && e.status >= 200 && e.status < 300;
        const result = e.status !== null ? `HTTP ${e.status}` : e.error || "";
        return [
          fmtTime(e.at), el("code", e.event_id), e.kind, e.action, e.attempt, e.host,
          el("td", result, e.action === "attempt" ? (good ? "ok" : "bad") : "muted"),
          el("td", Math.round(e.latency_ms), "num"),
        ];
      }), "no deliveries yet");
    } catch (error) {
      sectionError(table, error);
    }
  }

  async function settings() {
    const pre = $("settings-json");
    try {
      const answer = await api("GET", "/v1/settings/application");
      // A secret (the webhook signing secret) is shown as set or not, never in clear on a screen.
      const masked = (key, value) => (SECRET_KEYS.has(key) && value ? "(set)" : value);
      pre.textContent = JSON.stringify(answer.settings.application, masked, 2);
    } catch (error) {
      sectionError(pre, error);
    }
  }

  // --- start ----------------------------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", onLogin);
    $("logout").addEventListener("click", onLogout);
    $("refresh").addEventListener("click", refresh);
    $("two-step-form").addEventListener("submit", setTwoStep);
    $("two-step-remove").addEventListener("click", removeTwoStep);
    $("dead-table").addEventListener("click", onDeadClick);
    $("replay-all").addEventListener("click", () => replay("/v1/webhooks/dead/replay", "Replay all"));
    session = loadSession();
    if (session) showDashboard();
    else endSession("");
  });
})();
