// The page of `mie serve`. Every text from the server or the user is put in the page with textContent
// (never as markup), so a caption, a report line or a chat answer can never become markup.
"use strict";

const $ = (id) => document.getElementById(id);

// An element with text and optional class, appended to parent when given.
function el(tag, text, cls, parent) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  if (parent) parent.appendChild(node);
  return node;
}

function say(id, text) { $(id).textContent = text || ""; }

// Which explanations the server offers (status.explain): image heat maps, token attributions.
let offered = { image: false, safety: false };

// fetch JSON; returns the parsed body or throws an Error carrying the server's message.
async function api(url, options) {
  let response;
  try {
    response = await fetch(url, options);
  } catch (err) {
    throw new Error("the server cannot be reached (" + err.message + ")");
  }
  let body = null;
  try { body = await response.json(); } catch (err) { body = null; }
  if (!response.ok) {
    throw new Error((body && body.error) || ("the server answered " + response.status));
  }
  return body;
}

function postJSON(url, payload) {
  return { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(payload) };
}

// ---- tabs and status --------------------------------------------------------------------------
function showTab(name) {
  for (const button of document.querySelectorAll("#tabs button")) {
    button.classList.toggle("active", button.dataset.tab === name);
    $("tab-" + button.dataset.tab).hidden = button.dataset.tab !== name;
  }
  if (name === "report" && !$("report-body").dataset.loaded) loadReport();
}

async function pollStatus() {
  let status;
  try {
    status = await api("/api/status");
  } catch (err) {
    say("status", err.message);
    $("status").classList.add("error");
    setTimeout(pollStatus, 2000);
    return;
  }
  say("source", status.source + " (" + status.kind + ")");
  offered = status.explain || offered;
  if (!document.querySelector("#tabs button.active")) {
    for (const button of document.querySelectorAll("#tabs button")) {
      button.hidden = !status.tabs.includes(button.dataset.tab);
    }
    showTab(status.tabs[0]);
  }
  $("status").classList.toggle("error", Boolean(status.error));
  if (status.error) {
    say("status", "loading failed: " + status.error);
  } else if (status.ready && status.safety_ready) {
    const images = status.images ? ", " + status.images + " images of " + status.split : "";
    say("status", status.progress + images + "; safety methods: " + status.methods.join(", "));
    if (status.tabs.includes("search") && status.tabs.includes("report")) showProbe(status.split);
    // A link such as /?q=a+red+circle runs that search once the model is ready.
    const query = new URLSearchParams(window.location.search).get("q");
    if (query && status.tabs.includes("search") && !$("query").dataset.asked) {
      $("query").dataset.asked = "1";
      $("query").value = query;
      $("search-form").requestSubmit();
    }
  } else {
    say("status", (status.ready ? "model ready; " : "") + "loading: " + status.progress + " …");
    setTimeout(pollStatus, 1000);
  }
}

// ---- search -----------------------------------------------------------------------------------
// The run's own shape/colour figures (results.json "shapes_probe", shapes data only) above the results.
async function showProbe(split) {
  if ($("search-figures").dataset.loaded) return;
  $("search-figures").dataset.loaded = "1";
  try {
    const data = await api("/api/report");
    const probes = (data.results && data.results.shapes_probe) || {};
    const probe = probes[split] || probes[Object.keys(probes)[0]];
    if (!probe) return;
    const pct = (v) => (100 * v).toFixed(1) + "%";
    const part = (label, r) => label + " " + pct(r.precision) + " (chance " + pct(r.chance) + ")";
    const k = probe.color_shape.k;
    let text = "This run on " + (probes[split] ? split : Object.keys(probes)[0]) + ", precision@" + k + ": " +
      part("colour-shape queries", probe.color_shape) + ", " + part("shape-only", probe.shape) + ", " +
      part("colour-only", probe.color);
    if (probe.example) text += "; “" + probe.example.query + "”: " + probe.example.hits + " of " + probe.example.k;
    say("search-figures", text);
  } catch (err) {
    say("search-figures");  // the figures are extra: a run without them still searches
  }
}

async function search(event) {
  event.preventDefault();
  say("search-message"); say("search-meta");
  const results = $("results");
  results.replaceChildren();
  try {
    const data = await api("/api/search", postJSON("/api/search", { query: $("query").value, k: Number($("k").value) }));
    say("search-meta", data.results.length + " best images of " + data.split + " for “" + data.query +
        "” (" + data.elapsed_ms + " ms)");
    const serial = ++searches;
    const method = $("map-method").value;
    const pending = [];
    for (const hit of data.results) {
      const figure = el("figure", null, null, results);
      const pair = el("div", null, "pair", figure);
      const img = el("img", null, null, pair);
      img.src = hit.image;
      img.alt = hit.name;
      el("figcaption", hit.rank + ". " + hit.score.toFixed(3) + " " + hit.name, null, figure);
      if (!offered.image || !method) continue;
      const item = { hit: hit, img: img, pair: pair, figure: figure, query: data.query, method: method };
      if (pending.length < AUTO_MAPS) pending.push(item);
      else {
        const button = el("button", "heat map", null, figure);
        button.type = "button";
        button.addEventListener("click", () => { button.remove(); showHeat(item); });
      }
    }
    // The first few maps are asked for one after another (each costs the server up to a few seconds);
    // a newer search stops the queue.
    for (const item of pending) {
      if (serial !== searches) return;
      await showHeat(item);
    }
  } catch (err) {
    say("search-message", err.message);
  }
}

// ---- caption ----------------------------------------------------------------------------------
function preview() {
  const file = $("upload").files[0];
  const img = $("preview");
  if (img.src) URL.revokeObjectURL(img.src);
  img.hidden = !file;
  if (file) img.src = URL.createObjectURL(file);
}

async function caption(event) {
  event.preventDefault();
  say("caption-message"); say("caption-meta");
  $("captions").replaceChildren();
  const file = $("upload").files[0];
  if (!file) { say("caption-message", "choose an image file first"); return; }
  try {
    const data = await api("/api/caption?k=5", { method: "POST", headers: { "content-type": "application/octet-stream" }, body: file });
    for (const hit of data.captions) el("li", hit.score.toFixed(3) + "  " + hit.text, null, $("captions"));
    say("caption-meta", data.width + "×" + data.height + " image, " + data.elapsed_ms + " ms");
  } catch (err) {
    say("caption-message", err.message);
  }
}

// ---- report: a small markdown reader (headings, tables, code blocks, lists, paragraphs) ---------
function inline(text, parent) {
  text.split("`").forEach((part, i) => {
    if (i % 2) el("code", part, null, parent); else parent.appendChild(document.createTextNode(part.replace(/\*\*/g, "")));
  });
}

function cells(line) { return line.trim().replace(/^\||\|$/g, "").split("|").map((c) => c.trim()); }

function renderMarkdown(markdown, root) {
  const lines = markdown.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.startsWith("```")) {
      const code = [];
      for (i++; i < lines.length && !lines[i].startsWith("```"); i++) code.push(lines[i]);
      el("pre", code.join("\n"), null, root);
    } else if (/^#{1,6} /.test(line)) {
      const level = Math.min(6, line.indexOf(" ") + 1);
      inline(line.slice(level), el("h" + level, null, null, root));
    } else if (line.trim().startsWith("|")) {
      const table = el("table", null, null, root);
      for (; i < lines.length && lines[i].trim().startsWith("|"); i++) {
        if (/^\|?[\s:|-]+\|?$/.test(lines[i].trim())) continue; // the header rule
        const row = el("tr", null, null, table);
        const tag = table.rows.length === 1 ? "th" : "td";
        for (const cell of cells(lines[i])) inline(cell, el(tag, null, null, row));
      }
      i--;
    } else if (/^\s*[-*] /.test(line)) {
      const list = el("ul", null, null, root);
      for (; i < lines.length && /^\s*[-*] /.test(lines[i]); i++) inline(lines[i].replace(/^\s*[-*] /, ""), el("li", null, null, list));
      i--;
    } else if (line.trim()) {
      inline(line, el("p", null, null, root));
    }
  }
}

async function loadReport() {
  say("report-message");
  const body = $("report-body");
  try {
    const data = await api("/api/report");
    body.dataset.loaded = "1";
    body.replaceChildren();
    $("plots").replaceChildren();
    for (const name of data.plots) {
      const img = el("img", null, null, $("plots"));
      img.src = "/api/plot/" + encodeURIComponent(name);
      img.alt = name;
    }
    if (data.markdown) renderMarkdown(data.markdown, body);
    else if (data.results) el("pre", JSON.stringify(data.results, null, 2), null, body);
    else say("report-message", "this run has no report.md or results.json yet");
  } catch (err) {
    say("report-message", err.message);
  }
}

// ---- safety verdicts --------------------------------------------------------------------------
// The verdicts, one row a principle; with the judged ``text`` and a server that runs the embedding
// classifier, each row has a "why?" button for its tokens' attributions (explain.js), and the first
// AUTO_WHY flagged rows show them at once.

function verdictTable(verdicts, parent, text) {
  const table = el("table", null, null, parent);
  const head = el("tr", null, null, table);
  const why = Boolean(text && offered.safety);
  for (const title of ["principle", "verdict", "score", "method", "reasons"]) el("th", title, null, head);
  if (why) el("th", "words", null, head);
  const flagged = [];
  for (const [name, v] of Object.entries(verdicts)) {
    const row = el("tr", null, v.flagged ? "flagged" : null, table);
    el("td", name, null, row);
    el("td", v.flagged ? "flagged" : "ok", null, row);
    el("td", v.score.toFixed(2), null, row);
    el("td", v.method, null, row);
    el("td", v.reasons.join("; "), null, row);
    if (!why) continue;
    const button = el("button", "why?", null, el("td", null, null, row));
    button.type = "button";
    const show = () => { button.disabled = true; return showWhy(row, name, text); };
    button.addEventListener("click", show);
    if (v.flagged) flagged.push(show);
  }
  (async () => { for (const show of flagged.slice(0, AUTO_WHY)) await show(); })();
  return table;
}

async function evaluate(event) {
  event.preventDefault();
  say("safety-message"); say("safety-meta");
  $("safety-result").replaceChildren();
  const text = $("safety-text").value;
  try {
    const data = await api("/api/evaluate", postJSON("/api/evaluate", { text: text }));
    say("safety-meta", (data.flagged ? "flagged" : "nothing flagged") + " — methods: " + data.methods.join(", ") +
        " (" + data.elapsed_ms + " ms)");
    verdictTable(data.verdicts, $("safety-result"), text);
  } catch (err) {
    say("safety-message", err.message);
  }
}

// ---- chat: server-sent events over a POST response ----------------------------------------------
let conversation = [];

function turn(role) {
  const box = el("div", null, "turn " + role, $("chat-log"));
  return { box: box, bubble: el("div", null, "bubble", box), side: el("div", null, "verdict", box) };
}

async function* sseEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) name = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      yield { name: name, data: JSON.parse(data || "{}") };
    }
  }
}

async function chat(event) {
  event.preventDefault();
  say("chat-message");
  const text = $("chat-input").value;
  if (!text.trim()) { say("chat-message", "the message is empty: type some text first"); return; }
  $("chat-button").disabled = true;
  const asked = conversation.concat([{ role: "user", content: text }]);
  try {
    const response = await fetch("/api/chat", postJSON("/api/chat", { messages: asked, filter: $("chat-filter").checked }));
    if (!response.ok) {
      let body = null;
      try { body = await response.json(); } catch (err) { body = null; }
      throw new Error((body && body.error) || ("the server answered " + response.status));
    }
    turn("user").bubble.textContent = text;
    $("chat-input").value = "";
    const answer = turn("assistant");
    let reply = "";
    for await (const ev of sseEvents(response)) {
      if (ev.name === "token") { reply += ev.data.text; answer.bubble.textContent = reply; }
      else if (ev.name === "refused") {
        answer.box.classList.add("refused");
        answer.bubble.textContent = ev.data.text;
        el("p", "blocked by the safety filter: " + ev.data.reasons.join("; "), null, answer.side);
      } else if (ev.name === "verdict") {
        el("p", "safety verdict on the " + ev.data.judged + ": " + (ev.data.flagged ? "flagged" : "ok") +
           (ev.data.filtered ? " (the filter changed the answer)" : ""), null, answer.side);
        verdictTable(ev.data.verdicts, answer.side, ev.data.judged === "question" ? text : reply);
      } else if (ev.name === "error") { say("chat-message", ev.data.error); }
      else if (ev.name === "done") { el("p", ev.data.tokens + " tokens, " + ev.data.elapsed_ms + " ms", "meta", answer.side); }
    }
    conversation = asked.concat([{ role: "assistant", content: reply }]);
  } catch (err) {
    say("chat-message", err.message);
  } finally {
    $("chat-button").disabled = false;
  }
}

// ---- wiring -----------------------------------------------------------------------------------
document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("#tabs button")) button.addEventListener("click", () => showTab(button.dataset.tab));
  $("search-form").addEventListener("submit", search);
  $("caption-form").addEventListener("submit", caption);
  $("upload").addEventListener("change", preview);
  $("safety-form").addEventListener("submit", evaluate);
  $("chat-form").addEventListener("submit", chat);
  $("chat-clear").addEventListener("click", () => { conversation = []; $("chat-log").replaceChildren(); });
  pollStatus();
});
