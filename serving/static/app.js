// citywatch review page. Plain JavaScript, no build step: every page is a server-rendered shell and this
// script fills it from the JSON API with the bearer token kept in sessionStorage (never in a cookie).
"use strict";

const DATA = JSON.parse(document.getElementById("cw-data").textContent);
const T = DATA.strings;
const ACTORS = ["inspector", "supervisor", "admin"];
const KIND_COLORS = ["#2f6fde", "#e8112d", "#f0a202", "#1a9e57", "#8e44ad", "#00a3a3", "#d35400", "#7f8c8d",
  "#c0392b", "#2c3e50", "#16a085", "#b8860b"];

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "style" && value) Object.assign(node.style, value);  // CSSOM: allowed by the page's CSP
    else if (value !== null && value !== undefined && value !== false) node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function status(message, kind = "info") {
  const box = document.getElementById("status");
  box.textContent = message;
  box.className = "status " + kind;
}

function session() {
  return { token: sessionStorage.getItem("cw_token"), role: sessionStorage.getItem("cw_role"),
    user: sessionStorage.getItem("cw_user") };
}

function toLogin() {
  sessionStorage.clear();
  location.href = "/ui/login?next=" + encodeURIComponent(location.pathname + location.search);
}

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + session().token };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (response.status === 401) { toLogin(); throw new Error(T.login_failed); }
  const type = response.headers.get("content-type") || "";
  const payload = type.includes("json") ? await response.json() : null;
  if (!response.ok) throw new Error((payload && payload.detail) || response.status + " " + response.statusText);
  return payload;
}

const canAct = () => ACTORS.includes(session().role);
const kindName = (c) => DATA.lang === "zh" ? `${c.name_zh} · ${c.name_en}` : `${c.name_en} · ${c.name_zh}`;
const when = (iso) => iso ? new Date(iso).toLocaleString(DATA.lang === "zh" ? "zh-CN" : "en-GB",
  { hour12: false }) : "—";

function facts(list, pairs) {
  list.replaceChildren();
  for (const [label, value, cls] of pairs) {
    list.append(el("dt", { text: label }), el("dd", { text: value ?? "—", class: cls || null }));
  }
}

// -- login -----------------------------------------------------------------------------------------------------

function initLogin() {
  const form = document.getElementById("login-form");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = document.getElementById("login-error");
    error.hidden = true;
    const response = await fetch("/auth/token", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username: form.username.value, password: form.password.value }) });
    const payload = await response.json();
    if (!response.ok) {
      error.textContent = `${T.login_failed}: ${payload.detail}`;
      error.hidden = false;
      return;
    }
    sessionStorage.setItem("cw_token", payload.access_token);
    sessionStorage.setItem("cw_role", payload.role);
    sessionStorage.setItem("cw_user", form.username.value);
    const next = new URLSearchParams(location.search).get("next");
    location.href = next && next.startsWith("/ui/") ? next : "/ui/queue";
  });
}

function initHeader() {
  if (!session().token) { toLogin(); return false; }
  document.getElementById("who").textContent = `${session().user} (${session().role})`;
  document.getElementById("logout").addEventListener("click", async () => {
    try { await api("POST", "/auth/logout"); } finally { toLogin(); }
  });
  return true;
}

// -- review queue ----------------------------------------------------------------------------------------------

const QUEUE_STATES = ["auto_filed", "under_review", "reopened"];
const queue = { all: [], shown: [], images: {}, index: 0, selected: new Set(), last: null, busy: false, picker: null };

async function loadQueue(focusId) {
  const lists = await Promise.all(QUEUE_STATES.map((s) => api("GET", `/cases?state=${s}&limit=500`)));
  queue.all = lists.flatMap((l) => l.cases);
  const missing = queue.all.map((c) => c.id).filter((id) => !(id in queue.images));
  for (let i = 0; i < missing.length; i += 200) {
    Object.assign(queue.images, await api("GET", "/review/evidence?ids=" + missing.slice(i, i + 200).join(",")));
  }
  fillFilter("f-kind", queue.all.map((c) => [c.kind, `${c.code} ${DATA.lang === "zh" ? c.name_zh : c.name_en}`]));
  fillFilter("f-camera", queue.all.map((c) => [c.camera_id, c.camera_id]));
  applyFilters(focusId);
}

function fillFilter(id, pairs) {
  const select = document.getElementById(id);
  const current = select.value;
  const unique = new Map(pairs);
  select.replaceChildren(el("option", { value: "", text: T.all }),
    ...[...unique].sort().map(([value, label]) => el("option", { value, text: label })));
  select.value = unique.has(current) ? current : "";
}

function applyFilters(focusId) {
  const kind = document.getElementById("f-kind").value;
  const camera = document.getElementById("f-camera").value;
  const minConf = parseFloat(document.getElementById("f-conf").value) || 0;
  const sort = document.getElementById("f-sort").value;
  const order = {
    newest: (a, b) => b.id - a.id, oldest: (a, b) => a.id - b.id,
    conf_high: (a, b) => b.confidence - a.confidence, conf_low: (a, b) => a.confidence - b.confidence,
    camera: (a, b) => a.camera_id.localeCompare(b.camera_id) || b.id - a.id,
  }[sort];
  const currentId = focusId ?? queue.shown[queue.index]?.id;
  queue.shown = queue.all.filter((c) => (!kind || c.kind === kind) && (!camera || c.camera_id === camera)
    && c.confidence >= minConf).sort(order);
  const shownIds = new Set(queue.shown.map((c) => c.id));
  for (const id of [...queue.selected]) if (!shownIds.has(id)) queue.selected.delete(id);
  const found = queue.shown.findIndex((c) => c.id === currentId);
  queue.index = found >= 0 ? found : Math.min(queue.index, Math.max(queue.shown.length - 1, 0));
  renderQueue();
}

function renderQueue() {
  const cards = document.getElementById("cards");
  cards.replaceChildren(...queue.shown.map((c, i) => {
    const img = queue.images[c.id]?.annotated;
    const box = el("input", { type: "checkbox", "aria-label": T.select, tabindex: "-1" });
    box.checked = queue.selected.has(c.id);
    box.addEventListener("change", () => { toggleSelect(c.id); });
    const card = el("li", { class: "card" + (i === queue.index ? " current" : "") + (queue.selected.has(c.id) ? " selected" : ""),
      "data-case": c.id },
      box,
      img ? el("img", { src: img, alt: "", loading: "lazy" }) : el("div", { class: "noimg", text: T.no_evidence }),
      el("div", { class: "card-text" },
        el("b", { text: `#${c.id} ${c.code} ${DATA.lang === "zh" ? c.name_zh : c.name_en}` }),
        el("span", { text: `${c.camera_id} / ${c.preset_id ?? "—"} · ${(c.confidence * 100).toFixed(0)}%` }),
        el("span", { text: when(c.last_seen) })));
    card.addEventListener("click", (event) => { if (event.target !== box) { queue.index = i; renderQueue(); } });
    return card;
  }));
  document.getElementById("count").textContent = queue.shown.length;
  document.getElementById("selected-count").textContent = queue.selected.size;
  cards.querySelector(".current")?.scrollIntoView({ block: "nearest" });
  renderCurrent();
}

function renderCurrent() {
  const c = queue.shown[queue.index];
  document.getElementById("empty").hidden = !!c;
  document.getElementById("current-case").hidden = !c;
  if (!c) return;
  const images = queue.images[c.id] || {};
  const big = document.getElementById("cur-annotated");
  big.src = images.annotated || images.frame || "";
  const crop = document.getElementById("cur-crop");
  crop.src = images.crop || "";
  crop.hidden = !images.crop;
  facts(document.getElementById("cur-facts"), [
    [T.case, `#${c.id} (${c.state})`],
    [T.kind, kindName(c)], ["GB/T", c.code, "code"],
    [T.camera, c.camera_id], [T.preset, c.preset_id], [T.zone, c.zone],
    [T.time, when(c.last_seen)], [T.confidence, (c.confidence * 100).toFixed(1) + " %"],
    [T.observations, String(c.observations)], [T.model, c.model_version || "—"],
  ]);
  document.getElementById("open-detail").href = `/ui/cases/${c.id}`;
  // Preload the next cases' pictures so the next keypress shows them at once.
  for (const next of queue.shown.slice(queue.index + 1, queue.index + 3)) {
    for (const url of Object.values(queue.images[next.id] || {})) if (url) new Image().src = url;
  }
}

function move(step) {
  if (!queue.shown.length) return;
  queue.index = Math.max(0, Math.min(queue.shown.length - 1, queue.index + step));
  renderQueue();
}

function toggleSelect(id) {
  if (queue.selected.has(id)) queue.selected.delete(id); else queue.selected.add(id);
  renderQueue();
}

function targets(bulk) {
  if (bulk) return queue.shown.filter((c) => queue.selected.has(c.id));
  const c = queue.shown[queue.index];
  return c ? [c] : [];
}

async function decide(action, bulk, comment = "") {
  const cases = targets(bulk);
  if (!cases.length || queue.busy) return;
  if (!canAct()) { status(T.read_only, "error"); return; }
  queue.busy = true;
  let done = [];
  try {
    // One request for one case or a whole selection; each case is decided alone, refusals come back by case.
    const result = await api("POST", `/cases/actions/${action}`, { ids: cases.map((c) => c.id), comment });
    done = result.done;
    if (result.refused.length) {
      status(result.refused.map((r) => `#${r.id}: ${r.detail}`).join(" · "), "error");
    } else {
      status(`#${done.join(", #")} ${T["done_" + action]} — ${T.press_u}`, "ok");
    }
  } catch (error) {
    status(`${T.error}: ${error.message}`, "error");
  } finally {
    if (done.length) queue.last = { type: "decision", ids: done };
    for (const id of done) queue.selected.delete(id);
    const gone = new Set(done);
    const keepIndex = queue.index;
    queue.all = queue.all.filter((c) => !gone.has(c.id));
    queue.shown = queue.shown.filter((c) => !gone.has(c.id));
    queue.index = Math.min(keepIndex, Math.max(queue.shown.length - 1, 0));
    queue.busy = false;
    renderQueue();
  }
}

async function correctKind(kind) {
  const c = queue.shown[queue.index];
  if (!c || queue.busy || kind === c.kind) return;
  if (!canAct()) { status(T.read_only, "error"); return; }
  queue.busy = true;
  try {
    const updated = await api("POST", `/cases/${c.id}/kind`, { kind });
    queue.last = { type: "kind", id: c.id, kind: c.kind };
    Object.assign(c, updated);
    status(`#${c.id} ${T.done_kind}: ${kindName(updated)} — ${T.press_u}`, "ok");
  } catch (error) {
    status(`${T.error}: ${error.message}`, "error");
  } finally {
    queue.busy = false;
    renderQueue();
  }
}

async function undo() {
  const last = queue.last;
  if (!last) { status(T.nothing_to_undo); return; }
  if (queue.busy) return;
  queue.busy = true;
  try {
    if (last.type === "decision") {
      const result = await api("POST", "/cases/actions/undo", { ids: last.ids, comment: "" });
      if (result.refused.length) throw new Error(result.refused.map((r) => `#${r.id}: ${r.detail}`).join(" · "));
    } else {
      await api("POST", `/cases/${last.id}/kind`, { kind: last.kind, comment: "undo" });
    }
    queue.last = null;
    const ids = last.ids || [last.id];
    status(`#${ids.join(", #")} ${T.done_undo}`, "ok");
    queue.busy = false;
    await loadQueue(ids[0]);
  } catch (error) {
    status(`${T.error}: ${error.message}`, "error");
  } finally {
    queue.busy = false;
  }
}

function openPicker(title, options, onPick) {
  const box = document.getElementById("picker");
  document.getElementById("picker-title").textContent = title;
  const list = document.getElementById("picker-options");
  list.replaceChildren(...options.map((o, i) => {
    const item = el("li", { "data-value": o.value }, el("kbd", { text: i < 9 ? String(i + 1) : " " }), " " + o.label);
    item.addEventListener("click", () => { closePicker(); onPick(o.value); });
    return item;
  }));
  queue.picker = { options, onPick, index: 0 };
  highlightPicker();
  box.hidden = false;
}

function highlightPicker() {
  [...document.getElementById("picker-options").children].forEach((li, i) =>
    li.classList.toggle("current", i === queue.picker.index));
}

function closePicker() {
  document.getElementById("picker").hidden = true;
  queue.picker = null;
}

function pickerKey(event) {
  const picker = queue.picker;
  if (event.key === "Escape") { closePicker(); return; }
  if (event.key === "ArrowDown" || event.key === "j") picker.index = Math.min(picker.options.length - 1, picker.index + 1);
  else if (event.key === "ArrowUp" || event.key === "k") picker.index = Math.max(0, picker.index - 1);
  else if (event.key === "Enter" || /^[1-9]$/.test(event.key)) {
    const index = event.key === "Enter" ? picker.index : Number(event.key) - 1;
    const option = picker.options[index];
    if (!option) return;
    closePicker();
    picker.onPick(option.value);
    return;
  }
  highlightPicker();
}

function askReason(bulk) {
  if (!targets(bulk).length) return;
  if (!canAct()) { status(T.read_only, "error"); return; }
  const options = DATA.reasons.map((r) => ({ value: `${r.zh} / ${r.en}`, label: DATA.lang === "zh" ? r.zh : r.en }));
  openPicker(bulk ? `${T.bulk_reject} (${targets(true).length})` : T.pick_reason, options,
    (reason) => decide("reject", bulk, reason));
}

function askKind() {
  const c = queue.shown[queue.index];
  if (!c) return;
  if (!canAct()) { status(T.read_only, "error"); return; }
  const options = DATA.kinds.filter((k) => k.key !== c.kind)
    .map((k) => ({ value: k.key, label: `${k.code} ${kindName(k)}` }));
  openPicker(T.pick_kind, options, (kind) => correctKind(kind));
}

function queueKey(event) {
  if (queue.picker) { event.preventDefault(); pickerKey(event); return; }
  if (event.target.matches("input, select, textarea") || event.ctrlKey || event.metaKey || event.altKey) return;
  const key = event.key;
  const handlers = {
    j: () => move(1), ArrowDown: () => move(1), k: () => move(-1), ArrowUp: () => move(-1),
    c: () => decide("confirm", false), C: () => decide("confirm", true),
    r: () => askReason(false), R: () => askReason(true), t: () => askKind(),
    x: () => { const c = queue.shown[queue.index]; if (c) toggleSelect(c.id); },
    a: () => { queue.shown.forEach((c) => queue.selected.add(c.id)); renderQueue(); },
    u: () => undo(),
    Enter: () => { const c = queue.shown[queue.index]; if (c) location.href = `/ui/cases/${c.id}`; },
  };
  const handler = handlers[key];
  if (!handler) return;
  event.preventDefault();
  handler();
}

function initQueue() {
  if (!canAct()) {
    document.getElementById("actions").remove();  // a viewer gets no action buttons at all
    document.getElementById("readonly").hidden = false;
  } else {
    const click = { "btn-confirm": () => decide("confirm", false), "btn-reject": () => askReason(false),
      "btn-kind": askKind, "btn-bulk-confirm": () => decide("confirm", true), "btn-bulk-reject": () => askReason(true),
      "btn-undo": undo };
    for (const [id, handler] of Object.entries(click)) document.getElementById(id).addEventListener("click", handler);
  }
  document.getElementById("btn-prev").addEventListener("click", () => move(-1));
  document.getElementById("btn-next").addEventListener("click", () => move(1));
  for (const id of ["f-kind", "f-camera", "f-sort", "f-conf"]) {
    document.getElementById(id).addEventListener("change", () => { applyFilters(); document.activeElement.blur(); });
  }
  document.addEventListener("keydown", queueKey);
  loadQueue().then(() => document.body.setAttribute("data-ready", "1"),
    (error) => status(`${T.error}: ${error.message}`, "error"));
}

// -- case detail -----------------------------------------------------------------------------------------------

const NEEDS_COMMENT = new Set(["reject", "reopen"]);

async function loadCase() {
  const c = await api("GET", `/cases/${DATA.case_id}`);
  document.getElementById("case-title").textContent = `${T.case} #${c.id} · ${kindName(c)} · ${c.code}`;
  facts(document.getElementById("case-facts"), [
    [T.state, c.state, "state"], [T.camera, c.camera_id], [T.preset, c.preset_id], [T.zone, c.zone],
    [T.confidence, (c.confidence * 100).toFixed(1) + " %"], [T.observations, String(c.observations)],
    [T.first_seen, when(c.first_seen)], [T.last_seen, when(c.last_seen)], [T.model, c.model_version || "—"],
    [T.department, c.department, "department"],
  ]);
  // Evidence sets: the roles of one set share the frame's capture time.
  const sets = new Map();
  for (const e of c.evidence) {
    if (!sets.has(e.captured_at)) sets.set(e.captured_at, []);
    sets.get(e.captured_at).push(e);
  }
  const order = ["annotated", "crop", "frame"];
  document.getElementById("evidence-sets").replaceChildren(...[...sets].map(([at, items], i) =>
    el("figure", { class: "evidence-set" },
      el("figcaption", { text: `${T.evidence_set} ${i + 1} · ${when(at)}` }),
      ...items.filter((e) => order.includes(e.role)).sort((a, b) => order.indexOf(a.role) - order.indexOf(b.role))
        .map((e) => el("div", { class: "ev " + e.role },
          e.url ? el("img", { src: e.url, alt: T[e.role] || e.role, "data-role": e.role }) : el("div", { class: "noimg", text: "…" }),
          el("span", { text: T[e.role] || e.role }))))));
  const events = [
    { at: c.first_seen, text: T.first_seen },
    ...[...sets.keys()].map((at, i) => ({ at, text: `${T.evidence_set} ${i + 1}` })),
    ...c.audit.map((a) => ({ at: a.at, text: `${a.actor}: ${a.action}${a.to_state ? " → " + a.to_state : ""}${a.comment ? " — " + a.comment : ""}` })),
    { at: c.last_seen, text: `${T.last_seen} (${T.observations}: ${c.observations})` },
  ].sort((a, b) => new Date(a.at) - new Date(b.at));
  document.getElementById("timeline").replaceChildren(...events.map((e) =>
    el("li", {}, el("time", { text: when(e.at) }), " " + e.text)));
  document.getElementById("audit-rows").replaceChildren(...c.audit.map((a) => el("tr", {},
    el("td", { text: when(a.at) }), el("td", { text: a.actor }), el("td", { text: a.action }),
    el("td", { text: `${a.from_state ?? ""} → ${a.to_state ?? ""}` }),
    el("td", { text: [a.comment, a.details.target ? `→ ${a.details.target}` : ""].filter(Boolean).join(" ") }))));
  const form = document.getElementById("act-form");
  const actions = c.allowed_actions.filter((a) => a !== "undo");
  form.hidden = !actions.length;
  document.getElementById("no-actions").hidden = !!actions.length;
  const select = document.getElementById("act-action");
  select.replaceChildren(...actions.map((a) => el("option", { value: a, text: T[a] || a })));
  showTarget();
}

function showTarget() {
  document.getElementById("target-label").hidden = document.getElementById("act-action").value !== "dispatch";
}

function initCase() {
  document.getElementById("act-action").addEventListener("change", showTarget);
  document.getElementById("act-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const action = document.getElementById("act-action").value;
    const comment = document.getElementById("act-comment").value;
    const body = { comment };
    if (action === "dispatch") body.target = document.getElementById("act-target").value;
    if (NEEDS_COMMENT.has(action) && !comment.trim()) { status(`${T.comment}?`, "error"); return; }
    try {
      await api("POST", `/cases/${DATA.case_id}/actions/${action}`, body);
      status(`#${DATA.case_id} ${action}`, "ok");
      document.getElementById("act-comment").value = "";
      await loadCase();
    } catch (error) { status(`${T.error}: ${error.message}`, "error"); }
  });
  loadCase().then(() => document.body.setAttribute("data-ready", "1"),
    (error) => status(`${T.error}: ${error.message}`, "error"));
}

// -- charts: small SVG drawn here (no chart library, no network) -------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function stackedBars(container, labels, series, names) {
  const width = 600, height = 220, left = 34, bottom = 34, top = 8;
  const keys = Object.keys(series);
  const totals = labels.map((_, i) => keys.reduce((sum, k) => sum + series[k][i], 0));
  const max = Math.max(1, ...totals);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", class: "bars" });
  const band = (width - left) / labels.length;
  for (const tick of [0, Math.ceil(max / 2), max]) {
    const y = height - bottom - (tick / max) * (height - bottom - top);
    chart.append(svg("line", { x1: left, x2: width, y1: y, y2: y, class: "grid" }),
      svg("text", { x: left - 4, y: y + 4, "text-anchor": "end", class: "tick" }, String(tick)));
  }
  labels.forEach((label, i) => {
    let y = height - bottom;
    keys.forEach((k, j) => {
      const h = (series[k][i] / max) * (height - bottom - top);
      if (h > 0) {
        const rect = svg("rect", { x: left + i * band + 2, y: y - h, width: Math.max(1, band - 4), height: h,
          fill: KIND_COLORS[j % KIND_COLORS.length] });
        rect.append(svg("title", {}, `${names(k)} ${label}: ${series[k][i]}`));
        chart.append(rect);
      }
      y -= h;
    });
    if (labels.length <= 16 || i % 2 === 0) {
      chart.append(svg("text", { x: left + i * band + band / 2, y: height - bottom + 14, "text-anchor": "middle",
        class: "tick" }, label.slice(5)));
    }
  });
  const legend = el("ul", { class: "legend" }, ...keys.map((k, j) => el("li", {},
    el("i", { style: null, class: "swatch c" + (j % KIND_COLORS.length) }), names(k))));
  container.replaceChildren(chart, legend);
}

function rateBars(container, rows, label) {
  if (!rows.length) { container.replaceChildren(el("p", { class: "muted", text: "—" })); return; }
  const width = 600, rowHeight = 26, left = 250;
  const short = (text) => text.length > 30 ? text.slice(0, 29) + "…" : text;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${rows.length * rowHeight + 6}`, role: "img", class: "rates" });
  rows.forEach((row, i) => {
    const y = i * rowHeight + 4;
    const scale = (width - left - 110) / Math.max(1, row.decided);
    let x = left;
    chart.append(svg("text", { x: left - 6, y: y + 15, "text-anchor": "end", class: "tick" }, short(label(row))));
    for (const [part, cls] of [["confirmed", "good"], ["corrected", "warn"], ["rejected", "bad"]]) {
      const w = row[part] * scale;
      if (w > 0) {
        const rect = svg("rect", { x, y, width: w, height: rowHeight - 8, class: cls });
        rect.append(svg("title", {}, `${T[part]}: ${row[part]}`));
        chart.append(rect);
      }
      x += w;
    }
    const rate = row.confirmed_rate === null ? "—" : (row.confirmed_rate * 100).toFixed(0) + " %";
    chart.append(svg("text", { x: x + 6, y: y + 15, class: "tick strong" }, `${rate} (${row.confirmed}/${row.decided})`));
  });
  const legend = el("ul", { class: "legend" }, ...[["confirmed", "good"], ["corrected", "warn"], ["rejected", "bad"]]
    .map(([part, cls]) => el("li", {}, el("i", { class: "swatch " + cls }), T[part])));
  container.replaceChildren(chart, legend);
}

function tile(label, value, cls = "") {
  return el("div", { class: "tile " + cls }, el("b", { text: String(value) }), el("span", { text: label }));
}

async function initDashboard() {
  try {
    const [overview, fleet] = await Promise.all([api("GET", "/stats/overview?days=14"), api("GET", "/stats/fleet")]);
    const kindLabel = (k) => {
      const n = overview.kind_names[k];
      return n ? `${n.code} ${DATA.lang === "zh" ? n.name_zh : n.name_en}` : k;
    };
    const states = overview.states;
    document.getElementById("tiles").replaceChildren(
      tile(T.to_review, (states.auto_filed || 0) + (states.under_review || 0) + (states.reopened || 0)),
      tile(T.confirmed, states.confirmed || 0), tile(T.rejected, states.rejected || 0),
      tile(`${T.cameras} ${T.online}`, fleet.online, "good"), tile(`${T.cameras} ${T.offline}`, fleet.offline, fleet.offline ? "bad" : ""),
      tile(T.visits_done, fleet.visits_done), tile(T.visits_missed, fleet.visits_missed, fleet.visits_missed ? "warn" : ""));
    stackedBars(document.getElementById("chart-kind"), overview.days, overview.by_kind, kindLabel);
    stackedBars(document.getElementById("chart-camera"), overview.days, overview.by_camera, (k) => k);
    document.getElementById("tz-note").textContent = T.days_in.replace("{tz}", overview.timezone);
    rateBars(document.getElementById("chart-precision-kind"), overview.outcomes.by_kind, (r) => kindLabel(r.kind));
    rateBars(document.getElementById("chart-precision-model"), overview.outcomes.by_model, (r) => r.model_version);
    document.body.setAttribute("data-ready", "1");
  } catch (error) { status(`${T.error}: ${error.message}`, "error"); }
}

// -- cameras ---------------------------------------------------------------------------------------------------

const CAMERAS_REFRESH_MS = 30000;  // the fleet stores a preset's frame at most every 30 s by default

async function initCameras() {
  await refreshCameras();
  document.body.setAttribute("data-ready", "1");
  // A supervisor leaves this page open on a wall screen: keep it current, but not while the tab is hidden.
  setInterval(() => { if (!document.hidden) refreshCameras(); }, CAMERAS_REFRESH_MS);
}

async function refreshCameras() {
  try {
    const { cameras } = await api("GET", "/stats/cameras");
    const list = document.getElementById("camera-list");
    list.replaceChildren(...cameras.map(cameraSection));
    if (!cameras.length) list.append(el("p", { class: "muted", text: T.no_cameras }));
    document.getElementById("cameras-updated").textContent = `${T.updated}: ${when(new Date().toISOString())}`;
  } catch (error) { status(`${T.error}: ${error.message}`, "error"); }
}

function cameraSection(cam) {
  const h = cam.health;
  const badge = el("span", { class: "badge " + (h.online ? "good" : "bad"), text: h.online ? T.online : T.offline });
  const info = [`${T.last_frame}: ${when(h.last_frame_at)}`,
    h.offline_since ? `${T.offline_since}: ${when(h.offline_since)}` : "",
    `${T.visits_done}: ${h.visits}`, `${T.visits_missed}: ${h.missed}`,
    h.ptz ? "PTZ" : T.fixed_camera, h.stale ? T.report_stale : ""].filter(Boolean).join(" · ");
  return el("section", { class: "camera", "data-camera": cam.camera_id },
    el("h2", {}, cam.camera_id + " ", badge), el("p", { class: "muted", text: info }),
    h.last_error ? el("p", { class: "camera-error", text: h.last_error }) : "",
    el("div", { class: "presets" }, ...cam.presets.map(presetFigure)));
}

// A preset's latest frame with the zones it watches drawn over it (zones are fractions of the frame, so one
// 0..1 SVG stretched over the picture draws them at any size). Without a frame the zones still show their shape.
function presetFigure(p) {
  const view = el("div", { class: "view", style: { aspectRatio: `${p.width || 16} / ${p.height || 9}` } });
  view.append(p.picture ? el("img", { src: p.picture, alt: `${T.preset} ${p.preset_id}` })
    : el("div", { class: "noimg", text: T.no_frame }));
  const overlay = svg("svg", { viewBox: "0 0 1 1", preserveAspectRatio: "none", class: "zones" });
  for (const [name, polygon] of Object.entries(p.zones)) {
    overlay.append(svg("polygon", { points: polygon.map(([x, y]) => `${x},${y}`).join(" "), "data-zone": name }));
    const [cx, cy] = polygon.reduce(([sx, sy], [x, y]) => [sx + x / polygon.length, sy + y / polygon.length], [0, 0]);
    view.append(el("span", { class: "zone-label", text: name, style: { left: `${cx * 100}%`, top: `${cy * 100}%` } }));
  }
  view.append(overlay);
  const facts = [`${T.preset} ${p.preset_id}`, p.current ? T.here_now : "",
    `${T.frame_taken}: ${when(p.captured_at)}`, new Date(p.next_due) > Date.now() ? `${T.next_visit}: ${when(p.next_due)}` : "",
    p.detector ? `${T.detector}: ${p.detector}` : ""].filter(Boolean).join(" · ");
  return el("figure", { "data-preset": p.preset_id, class: p.current ? "here" : null }, view,
    el("figcaption", { text: facts }));
}

// -- start -----------------------------------------------------------------------------------------------------

if (DATA.page === "login") initLogin();
else if (initHeader()) {
  ({ queue: initQueue, case: initCase, dashboard: initDashboard, cameras: initCameras })[DATA.page]();
}
