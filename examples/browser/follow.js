// Follows one pattern of a bus broker with EventSource; see index.html for how to run it.
// ?broker=<url> (default http://127.0.0.1:2021) and ?pattern=<pattern> (default user.>).
"use strict";

const params = new URLSearchParams(location.search);
const broker = params.get("broker") || "http://127.0.0.1:2021";
const pattern = params.get("pattern") || "user.>";
const from = params.get("from") || "newest";
const MAX_ROWS = 200; // the page keeps the newest events only

const $ = (sel) => document.querySelector(sel);
$("#pattern").textContent = pattern;

const url = `${broker}/v1/stream?pattern=${encodeURIComponent(pattern)}&from=${encodeURIComponent(from)}`;
const es = new EventSource(url);

es.addEventListener("subscribed", () => {
  $("#status").textContent = `live from ${broker}`;
});

// Each event: its subject and payload, newest first. textContent only: payloads are data.
es.onmessage = (m) => {
  const event = JSON.parse(m.data);
  const li = document.createElement("li");
  li.dataset.id = event.id;
  const subject = document.createElement("span");
  subject.className = "subject";
  subject.textContent = event.subject;
  const payload = document.createElement("pre");
  payload.textContent = typeof event.payload === "string" ? event.payload : JSON.stringify(event.payload);
  li.append(subject, payload);
  $("#events").prepend(li);
  while ($("#events").children.length > MAX_ROWS) $("#events").lastElementChild.remove();
};

// Retention deleted events this page had not seen yet.
es.addEventListener("gap", (m) => {
  const g = JSON.parse(m.data);
  $("#status").textContent = `missed ${g.namespace} ${g.missed_from}–${g.resume_at - 1} (retention)`;
});

// A restart: the broker says so and closes; EventSource reconnects by itself (after the
// `retry:` the broker set, 1 s) and resumes after the last event it saw.
es.addEventListener("shutdown", () => {
  $("#status").textContent = "the broker is restarting; reconnecting…";
});
es.onerror = () => {
  if (es.readyState === EventSource.CONNECTING) $("#status").textContent = "reconnecting…";
  else $("#status").textContent = "stopped (refused: check --cors-origin and the pattern)";
};
