// The dashboard page: one Server-Sent Events stream of snapshots, drawn with the DOM and plain SVG.
// Text goes in with textContent only (labels and health strings are data, never markup).
// No data (null) is shown as "—", never 0, and as a gap in the timeline.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const DASH = "—";
const token = new URLSearchParams(location.search).get("token");
let state = null;
let clockOffset = 0; // server time minus this browser's time, in seconds
let lastRender = 0;

function api(path) {
  return token ? `${path}?token=${encodeURIComponent(token)}` : path;
}

function fmt(value, digits = 2) {
  return value === null || value === undefined ? DASH : Number(value).toFixed(digits);
}

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

function modalityClass(name) {
  return ["face", "voice", "eeg", "fused"].includes(name) ? `m-${name}` : "m-other";
}

function now() {
  return Date.now() / 1000 + clockOffset;
}

function ageOf(row) {
  return Math.max(0, row.age_s + (now() - state.now));
}

function isStale(row) {
  return ageOf(row) > state.stale_after_s;
}

function labelText(row) {
  if (!row) return DASH;
  if (row.label) return row.label;
  return row.uncertain ? "uncertain" : DASH;
}

function modalityOrder(names) {
  const rank = (name) => { const i = ["face", "voice", "eeg", "fused"].indexOf(name); return i < 0 ? 3.5 : i; };
  return [...names].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

function modalityNames() {
  const names = new Set(Object.keys(state.modalities));
  const health = state.health && state.health.summary.modalities;
  for (const name of Object.keys(health || {})) names.add(name);
  return modalityOrder(names);
}

function metric(name, value, digits) {
  const box = el("div", { class: "metric" });
  box.append(el("span", { class: "name" }, name), el("span", { class: "value", "data-field": name }, fmt(value, digits)));
  return box;
}

function renderCards() {
  const cards = document.getElementById("cards");
  cards.replaceChildren();
  const names = modalityNames();
  if (!names.length) cards.append(el("p", { class: "waiting" }, "waiting for data…"));
  for (const name of names) {
    const rows = (state.modalities[name] || { subjects: [] }).subjects;
    const primary = rows[0] || null;
    const card = el("section", { class: `card ${modalityClass(name)}`, "data-modality": name });
    if (primary && isStale(primary)) card.classList.add("stale");
    const head = el("h2");
    head.append(el("span", { class: "swatch" }), el("span", {}, name));
    head.append(el("span", { class: "subject", "data-field": "subject" }, primary ? primary.subject : DASH));
    card.append(head, el("div", { class: "label", "data-field": "label" }, labelText(primary)));
    const metrics = el("div", { class: "metrics" });
    metrics.append(metric("valence", primary && primary.valence), metric("arousal", primary && primary.arousal),
                   metric("confidence", primary && primary.confidence), metric("quality", primary && primary.quality));
    card.append(metrics);
    if (primary && primary.contributions !== undefined) {
      const all = primary.contributions || [];
      const parts = all.filter((c) => c.weight !== null && c.weight > 0).map((c) => `${c.name} ${fmt(c.weight)}`);
      const idle = all.filter((c) => ["stale", "zero_weight"].includes(c.status)).map((c) => `${c.name} ${c.status.replace("_", " ")}`);
      card.append(el("div", { class: "contributions", "data-field": "contributions" },
                     `from ${parts.length ? parts.join(" · ") : DASH}${idle.length ? ` (${idle.join(", ")})` : ""}`));
    }
    card.append(el("div", { class: "age", "data-field": "age" },
                   primary ? `${isStale(primary) ? "stale, " : ""}updated ${ageOf(primary).toFixed(0)} s ago` : "no data"));
    if (rows.length > 1) {
      const list = el("ul", { class: "others" });
      for (const row of rows.slice(1, 6)) {
        list.append(el("li", { "data-subject": row.subject },
                       `${row.subject}: ${labelText(row)} v ${fmt(row.valence)} a ${fmt(row.arousal)}`));
      }
      if (rows.length > 6) list.append(el("li", {}, `and ${rows.length - 6} more`));
      card.append(list);
    }
    cards.append(card);
  }
}

function renderCircumplex() {
  const plot = document.getElementById("circumplex");
  plot.replaceChildren();
  plot.append(svg("circle", { cx: 0, cy: 0, r: 1, class: "frame" }),
              svg("line", { x1: -1.1, y1: 0, x2: 1.1, y2: 0, class: "axis" }),
              svg("line", { x1: 0, y1: -1.1, x2: 0, y2: 1.1, class: "axis" }));
  const corners = [["excited", 0.72, -0.8], ["tense", -0.72, -0.8], ["sad", -0.72, 0.88], ["calm", 0.72, 0.88]];
  for (const [text, x, y] of corners) {
    const t = svg("text", { x, y, class: "quadrant" });
    t.textContent = text;
    plot.append(t);
  }
  for (const name of Object.keys(state.modalities)) {
    const row = state.modalities[name].subjects.find((r) => r.valence !== null && r.arousal !== null);
    if (!row) continue;
    const x = Math.max(-1, Math.min(1, row.valence)), y = -Math.max(-1, Math.min(1, row.arousal));
    const dot = svg("circle", { cx: x, cy: y, r: name === "fused" ? 0.09 : 0.06,
                                class: `dot ${modalityClass(name)}${isStale(row) ? " stale" : ""}`, "data-modality": name });
    const label = svg("text", { x: x + 0.1, y: y + (name === "fused" ? 0.16 : 0.04), class: "dot-label" });
    label.textContent = name;
    plot.append(dot, label);
  }
}

function renderTimeline(id, key) {
  const plot = document.getElementById(id);
  plot.replaceChildren();
  const width = 600, height = 120, history = state.history_s, end = now(), start = end - history;
  const gap = Math.max(state.stale_after_s, 3 * state.resolution_s);
  plot.append(svg("line", { x1: 0, y1: height / 2, x2: width, y2: height / 2, class: "axis" }));
  const x = (t) => ((t - start) / history) * width;
  const y = (v) => (height / 2) * (1 - v);
  for (const [name, series] of Object.entries(state.timeline)) {
    let segment = [], last = null;
    const flush = () => {
      if (segment.length === 1) segment.push(segment[0]);
      if (segment.length) {
        plot.append(svg("polyline", { points: segment.map((p) => `${p[0].toFixed(1)},${p[1].toFixed(1)}`).join(" "),
                                      class: `series ${modalityClass(name)}`, "data-modality": name }));
      }
      segment = [];
    };
    series.index.forEach((i, n) => {
      const t = series.start + i * series.step, value = series[key][n];
      if (value === null || t < start || (last !== null && t - last > gap)) flush();
      if (value !== null && t >= start) segment.push([x(t), y(value)]);
      last = t;
    });
    flush();
  }
}

function renderLegend() {
  const legend = document.getElementById("legend");
  legend.replaceChildren();
  for (const name of modalityOrder(Object.keys(state.timeline))) {
    const item = el("span", { class: `key ${modalityClass(name)}` });
    item.append(el("span", { class: "swatch" }), document.createTextNode(name));
    legend.append(item);
  }
  const minutes = state.history_s / 60;
  document.getElementById("history").textContent = minutes >= 1 ? `${minutes.toFixed(minutes % 1 ? 1 : 0)} min` : `${state.history_s} s`;
}

function row(cells, header = false) {
  const tr = el("tr");
  for (const cell of cells) tr.append(el(header ? "th" : "td", {}, cell === null || cell === undefined ? DASH : String(cell)));
  return tr;
}

function renderHealth() {
  const box = document.getElementById("health");
  const table = document.getElementById("health-rows");
  if (!state.health) return;
  const summary = state.health.summary;
  box.replaceChildren();
  const sources = el("table", { class: "sources" });
  sources.append(row(["modality", "rate /s", "latency ms", "dropped", "source"], true));
  for (const [name, m] of Object.entries(summary.modalities)) {
    const tr = row([name, fmt(m.rate, 1), fmt(m.latency_ms, 1), m.dropped, m.source]);
    tr.setAttribute("data-modality", name);
    if (m.source && !["running", "connected", "streaming", "open"].includes(m.source)) tr.classList.add("warn");
    sources.append(tr);
  }
  const facts = el("dl", { class: "facts" });
  const calibration = summary.calibration === null ? DASH : summary.calibration
    .map((c) => `${c.name}: ${c.state}${c.detail ? ` ${c.detail}` : ""}`)
    .join(", ");
  for (const [name, value, key] of [["broker", summary.broker ?? DASH, "broker"],
                                    ["spool depth", summary.spool_depth ?? DASH, "spool"],
                                    ["calibration", calibration, "calibration"],
                                    ["CPU temperature", summary.cpu_temp_c === null ? DASH : `${fmt(summary.cpu_temp_c, 1)} °C`, "cpu-temp"]]) {
    facts.append(el("dt", {}, name), el("dd", { "data-field": key }, String(value)));
  }
  box.append(sources, facts);
  if (summary.electrodes) {
    const electrodes = el("div", { class: "electrodes", "aria-label": "EEG signal quality" });
    for (const e of summary.electrodes) {
      const item = el("div", { class: `electrode ${e.status === "ok" ? "ok" : "bad"}`, "data-electrode": e.name });
      const bar = el("span", { class: "bar" });
      const fill = el("span", { class: "fill" });
      fill.style.width = `${e.score === null ? 0 : Math.round(e.score * 100)}%`;
      bar.append(fill);
      item.append(el("b", {}, e.name), bar, el("span", {}, `${e.status ?? DASH} ${fmt(e.score)}`));
      electrodes.append(item);
    }
    box.append(electrodes);
  }
  table.replaceChildren(...state.health.rows.map((r) => row(r)));
}

function renderHealthAge() {
  const age = document.getElementById("health-age");
  age.textContent = state.health && state.health.timestamp ? `${Math.max(0, now() - state.health.timestamp).toFixed(0)} s ago` : "";
}

function renderEvents() {
  const body = document.querySelector("#events tbody");
  body.replaceChildren(...state.events.map((e) => {
    const time = typeof e.timestamp === "string" ? e.timestamp.slice(11, 19) : DASH;
    const tr = row([time, e.modality, e.kind, e.subject, e.label, fmt(e.valence), fmt(e.arousal)]);
    tr.setAttribute("data-event", e.id || "");
    return tr;
  }));
}

// Controls: the runtime's own validated commands (edge/controls.py); the server refuses what is out of range.
let controlKeys = "";

function showControlError(key, text) {
  const box = document.getElementById("control-error");
  box.textContent = text ? `${key}: ${text}` : "";
  box.setAttribute("data-control", text ? key : "");
}

async function sendControl(key, payload) {
  const headers = { "Content-Type": "text/plain" };
  if (token) headers.Authorization = `Bearer ${token}`;
  try {
    // "same-origin" (not the document's no-referrer) so the browser sends the Origin header the server checks
    const response = await fetch(`/api/controls/${encodeURIComponent(key)}`, {
      method: "POST", body: String(payload), headers, referrerPolicy: "same-origin", cache: "no-store" });
    if (response.status === 204) {
      showControlError(key, "");
      const fresh = await fetch(api("/api/state"), { cache: "no-store" });
      if (fresh.ok) { state = await fresh.json(); render(); }
      return;
    }
    let reason = `HTTP ${response.status}`;
    try { reason = (await response.json()).error || reason; } catch (error) { /* not JSON: keep the status */ }
    showControlError(key, reason);
  } catch (error) {
    showControlError(key, "the device did not answer");
  }
  renderControls(true);  // back to the device's value
}

function controlValue(c) {
  return c.value === null || c.value === undefined ? DASH : String(c.value);
}

function buildControls(list) {
  const box = document.getElementById("control-list");
  box.replaceChildren();
  for (const c of list) {
    const item = el("label", { class: `control ${c.kind}` });
    item.append(el("span", { class: "name" }, c.name));
    if (c.kind === "switch") {
      const button = el("button", { type: "button", role: "switch", "data-control": c.key });
      button.addEventListener("click", () => {
        sendControl(c.key, button.getAttribute("aria-checked") === "true" ? "OFF" : "ON");
      });
      item.append(button);
    } else {
      const input = el("input", { type: "number", min: c.minimum, max: c.maximum, step: c.step, "data-control": c.key });
      input.addEventListener("change", () => sendControl(c.key, input.value));
      item.append(input);
      if (c.unit) item.append(el("span", { class: "unit" }, c.unit));
    }
    box.append(item);
  }
}

function renderControls(force = false) {
  const section = document.getElementById("controls");
  const list = state.controls || [];
  section.hidden = list.length === 0;
  const keys = list.map((c) => `${c.key}:${c.kind}`).join(",");
  if (keys !== controlKeys) { buildControls(list); controlKeys = keys; }
  for (const c of list) {
    const node = section.querySelector(`[data-control="${c.key}"]`);
    if (c.kind === "switch") {
      node.setAttribute("aria-checked", String(c.value === "ON"));
      node.textContent = controlValue(c);
    } else if (force || document.activeElement !== node) {  // never overwrite what someone is typing
      node.value = c.value === null ? "" : String(c.value);
    }
  }
}

function renderHeader() {
  document.getElementById("device").textContent = state.device || "";
  const faces = state.presence.faces;
  document.getElementById("faces").textContent = faces === null ? DASH : String(faces);
  document.getElementById("presence").setAttribute("data-present", faces === null ? "unknown" : String(faces > 0));
}

function render() {
  lastRender = performance.now();
  renderHeader();
  renderControls();
  renderCards();
  renderCircumplex();
  renderTimeline("timeline-valence", "valence");
  renderTimeline("timeline-arousal", "arousal");
  renderLegend();
  renderHealth();
  renderHealthAge();
  renderEvents();
}

function setStatus(kind, text) {
  const status = document.getElementById("status");
  status.setAttribute("data-state", kind);
  status.textContent = text;
}

function connect() {
  const source = new EventSource(api("/api/events"));
  source.onmessage = (message) => {
    state = JSON.parse(message.data);
    clockOffset = state.now - Date.now() / 1000;
    setStatus("live", "live");
    render();
    document.body.setAttribute("data-updates", String(Number(document.body.getAttribute("data-updates") || 0) + 1));
  };
  source.onerror = () => setStatus("lost", "reconnecting…");
}

// Between pushes only time moves: slide the timeline and refresh the ages once a second (not right after a push).
setInterval(() => {
  if (!state || performance.now() - lastRender < 900) return;
  lastRender = performance.now();
  renderCards();
  renderCircumplex();
  renderTimeline("timeline-valence", "valence");
  renderTimeline("timeline-arousal", "arousal");
  renderHealthAge();
}, 1000);

connect();
