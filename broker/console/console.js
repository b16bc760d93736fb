// The bus console: namespaces, consumers, a publish form and a live tail, on the broker's own
// HTTP API, from the broker's own origin. No framework, no build step, nothing from elsewhere
// (the Content-Security-Policy allows only this origin). Everything shown is set with
// textContent, never parsed as HTML: subjects and payloads come from anyone who may publish.
//
// Signing in: the token is sent once to POST /v1/session, which answers with the HttpOnly
// cookie every later request (and the EventSource) carries. The token itself stays in this
// page's memory only, so that a new session can be opened when the broker restarts (sessions
// live in the broker's memory); it is never written to storage.
"use strict";

const MAX_ROWS = 500; // events kept on the page; older ones are dropped from the bottom
const REFRESH_MS = 5000; // tables refresh period
const RETRY_MS = 1000; // wait before re-opening a closed stream

const state = {
  auth: null, // whether the broker runs with --auth (from /v1/whoami)
  token: null, // kept in memory only
  es: null, // the open EventSource
  pattern: null,
  cursor: null, // where the tail resumes: the last SSE id seen, or the start given
  paused: false,
  retry: null,
  seen: 0,
};

const $ = (sel) => document.querySelector(sel);

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function show(sel, yes) {
  $(sel).classList.toggle("hidden", !yes);
}

// A call of the API; throws an Error carrying the JSON error's code and message.
async function api(path, opts = {}) {
  const r = await fetch(path, { credentials: "same-origin", ...opts });
  const text = await r.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch (_) {
    body = text;
  }
  if (!r.ok) {
    const err = body && body.error;
    const e = new Error(err && err.code ? `${err.code}: ${err.message}` : `HTTP ${r.status}`);
    e.status = r.status;
    throw e;
  }
  return body;
}

async function whoami() {
  try {
    const me = await api("/v1/whoami");
    state.auth = me.auth;
    $("#who").textContent = me.auth ? `signed in as ${me.principal} (${me.credential})` : "no --auth: open to every client";
    show("#sign-out", me.auth && me.credential === "session");
    show("#sign-in-panel", false);
    show("#main", true);
    return true;
  } catch (e) {
    if (e.status !== 401) throw e;
    state.auth = true;
    $("#who").textContent = "not signed in";
    show("#sign-out", false);
    show("#main", false);
    show("#sign-in-panel", true);
    return false;
  }
}

async function openSession(token) {
  await api("/v1/session", { method: "POST", headers: { Authorization: `Bearer ${token}` } });
}

async function signIn(ev) {
  ev.preventDefault();
  const token = $("#token").value.trim();
  $("#token").value = "";
  $("#sign-in-error").textContent = "";
  try {
    await openSession(token);
    state.token = token;
    await whoami();
    refresh();
  } catch (e) {
    $("#sign-in-error").textContent = e.message;
  }
}

async function signOut() {
  stopTail();
  state.token = null;
  try {
    await api("/v1/session", { method: "DELETE" });
  } catch (_) {
    // Closed already.
  }
  await whoami();
}

function cell(tr, text) {
  tr.appendChild(el("td", null, String(text)));
}

async function refresh() {
  if ($("#main").classList.contains("hidden")) return;
  try {
    const list = await api("/v1/namespaces");
    const body = $("#namespaces tbody");
    body.replaceChildren();
    for (const n of list) {
      const tr = el("tr");
      cell(tr, n.name);
      cell(tr, n.events);
      cell(tr, n.bytes);
      cell(tr, `${n.first_sequence}–${n.last_sequence}`);
      cell(tr, n.segments);
      cell(tr, n.subscribers);
      cell(tr, n.read_only ? `${n.fsync} (read-only: ${n.read_only})` : n.fsync);
      body.appendChild(tr);
    }
    const consumers = await api("/v1/consumers");
    const cbody = $("#consumers tbody");
    cbody.replaceChildren();
    for (const c of consumers) {
      const tr = el("tr");
      cell(tr, c.name);
      cell(tr, c.kind);
      cell(tr, c.pattern);
      cell(tr, c.lag);
      cell(tr, c.pending);
      cell(tr, c.redelivered);
      cell(tr, c.members);
      cbody.appendChild(tr);
    }
  } catch (e) {
    if (e.status === 401) await reauthenticate();
  }
}

async function publish(ev) {
  ev.preventDefault();
  const subject = $("#pub-subject").value.trim();
  const text = $("#pub-payload").value;
  let type = "text/plain";
  try {
    JSON.parse(text);
    type = "application/json";
  } catch (_) {
    // Not JSON: sent as text.
  }
  try {
    const r = await api(`/v1/events/${encodeURIComponent(subject)}`, {
      method: "POST",
      headers: { "Content-Type": type },
      body: text,
    });
    $("#publish-result").textContent = `published ${r.subject} as ${r.id}${r.duplicate ? " (duplicate)" : ""}`;
    $("#publish-result").className = "muted";
  } catch (e) {
    $("#publish-result").textContent = e.message;
    $("#publish-result").className = "error";
  }
}

function pretty(event) {
  if (event.encoding === "base64") return `(binary, base64) ${event.payload}`;
  if (typeof event.payload === "string") return event.payload;
  return JSON.stringify(event.payload, null, 2);
}

function addRow(li) {
  const list = $("#events");
  list.prepend(li);
  while (list.children.length > MAX_ROWS) list.lastElementChild.remove();
}

function addEvent(event) {
  const li = el("li", "event");
  li.dataset.id = event.id;
  const meta = el("div", "meta");
  meta.appendChild(el("span", "subject", event.subject));
  meta.appendChild(el("span", null, `${event.id} · ${event.time}`));
  li.appendChild(meta);
  li.appendChild(el("pre", "payload", pretty(event)));
  addRow(li);
  state.seen += 1;
}

function note(text) {
  addRow(el("li", "note", text));
}

function status(text) {
  $("#tail-status").textContent = text;
}

function stopTail() {
  if (state.es) state.es.close();
  state.es = null;
  clearTimeout(state.retry);
}

function openTail() {
  stopTail();
  const url = `/v1/stream?pattern=${encodeURIComponent(state.pattern)}&from=${encodeURIComponent(state.cursor)}`;
  const es = new EventSource(url, { withCredentials: true });
  state.es = es;
  es.addEventListener("subscribed", (m) => {
    const s = JSON.parse(m.data);
    if (s.cursor) state.cursor = s.cursor;
    status(`following ${state.pattern}`);
  });
  es.onmessage = (m) => {
    if (m.lastEventId) state.cursor = m.lastEventId;
    addEvent(JSON.parse(m.data));
  };
  es.addEventListener("gap", (m) => note(`gap: ${m.data}`));
  es.addEventListener("shutdown", () => status("the broker is shutting down; reconnecting…"));
  es.addEventListener("error", (m) => {
    // A server-sent `event: error` (it has data) ends the stream with a reason; the
    // browser's own error event (no data) means the connection broke.
    if (m.data) {
      note(`stream ended: ${m.data}`);
      let code = null;
      try {
        const d = JSON.parse(m.data);
        code = (d.error || d).code;
      } catch (_) {
        // Not JSON: treated as a broken connection.
      }
      if (code === "forbidden" || code === "invalid_pattern" || code === "invalid_start") {
        // Retrying would be refused again.
        es.close();
        status(`stopped: ${code}`);
        return;
      }
    }
    if (es.readyState === EventSource.CLOSED || m.data) {
      es.close();
      status("disconnected; reconnecting…");
      state.retry = setTimeout(resumeTail, RETRY_MS);
    } else {
      status("reconnecting…");
    }
  });
}

// Re-opens the tail from where it stopped, opening a new session first when the broker
// forgot ours (it restarted) and the token is still in memory.
async function resumeTail() {
  if (state.paused || !state.pattern) return;
  try {
    await api("/v1/whoami");
  } catch (e) {
    if (e.status === 401 && !(await reauthenticate())) return;
    if (e.status !== 401) {
      state.retry = setTimeout(resumeTail, RETRY_MS);
      return;
    }
  }
  openTail();
}

async function reauthenticate() {
  if (!state.token) {
    await whoami();
    return false;
  }
  try {
    await openSession(state.token);
    return true;
  } catch (_) {
    state.retry = setTimeout(resumeTail, RETRY_MS);
    return false;
  }
}

function follow(ev) {
  ev.preventDefault();
  state.pattern = $("#pattern").value.trim();
  state.cursor = $("#from").value;
  state.paused = false;
  $("#events").replaceChildren();
  state.seen = 0;
  $("#pause").disabled = false;
  $("#pause").textContent = "Pause";
  openTail();
}

function togglePause() {
  state.paused = !state.paused;
  $("#pause").textContent = state.paused ? "Resume" : "Pause";
  if (state.paused) {
    // Closing keeps nothing buffered; resuming reads on from the cursor: no gap, no double.
    stopTail();
    status(`paused at ${state.cursor}`);
  } else {
    openTail();
  }
}

document.addEventListener("DOMContentLoaded", async () => {
  $("#sign-in-form").addEventListener("submit", signIn);
  $("#sign-out").addEventListener("click", signOut);
  $("#refresh").addEventListener("click", refresh);
  $("#publish-form").addEventListener("submit", publish);
  $("#tail-form").addEventListener("submit", follow);
  $("#pause").addEventListener("click", togglePause);
  try {
    if (await whoami()) refresh();
  } catch (e) {
    $("#who").textContent = `cannot reach the broker: ${e.message}`;
  }
  setInterval(refresh, REFRESH_MS);
});
