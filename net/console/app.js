// The operators' console: the shell (sign-in, navigation, the live socket) and the views
// of index.html (map, trips, drivers, alerts, health); the other pages are modules under
// pages/ (lib/pages.js). Plain DOM, no framework, nothing from another origin. The staff
// token lives in lib/api.js's memory only (never in storage). Text from the API is always
// set with textContent, never parsed as HTML.

import { act, api, ApiError, onUnauthorized, request, setToken, signedIn, socketProtocols, Stale } from "./lib/api.js";
import { $, cell, el, h, svgEl } from "./lib/dom.js";
import { money, where } from "./lib/format.js";
import { onLangChange, preferred, setLang, t as tr } from "./lib/i18n.js";
import { find, registered } from "./lib/pages.js";
import * as liveMap from "./lib/map.js";
import { clearTrail, drawTrail } from "./lib/trailmap.js";
import "./pages/index.js";

const FINISHED = ["completed", "cancelled", "expired"];
let socket = null;
let timers = [];
let lastSnapshot = null;
let zones = [];
let openTrip = null;
let openTripData = null;
let knownTrips = new Set();
const openAlerts = new Map();
const history = []; // health samples: {at (ms), s (the stats)}
let audio = null; // one AudioContext for every alert cue
// Milliseconds each ops_snapshot took to render (read by the browser tests).
window.__renderTimes = [];
// Whatever the Content-Security-Policy blocked (read by the browser tests: must stay empty).
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => window.__cspViolations.push(e.violatedDirective + " " + e.blockedURI));

// Shows an error in `id`, unless it belongs to a session that has ended.
function report(id, e) {
  if (!(e instanceof Stale)) $(id).textContent = e.message;
}

// ---- sign-in -------------------------------------------------------------------------
// Forgets everything the last session saw: the next operator at this screen starts clean.
function clearSession() {
  history.length = 0;
  openAlerts.clear();
  knownTrips = new Set();
  lastSnapshot = null;
  liveMap.clearMap();
  openTrip = null; openTripData = null;
  trips.reset(); drivers.reset();
  for (const id of ["trips", "drivers", "alerts", "charts", "map-info", "trip-facts", "trip-events", "trip-id", "trip-chat"]) $(id).replaceChildren();
  clearTrail($("trip-trail"));
  for (const id of ["trip-error", "trip-note", "drivers-error", "trip-trail-caption", "status", "trip-chat-error"]) $(id).textContent = "";
  $("trip-chat-text").value = "";
  $("ops-summary").textContent = "—";
  $("trip").hidden = true;
  drawAlerts();
  for (const p of registered()) p.reset();
}

function signOut(why) {
  setToken(null);
  if (socket) { socket.onclose = null; socket.close(); socket = null; }
  timers.forEach(clearInterval); timers = [];
  clearSession();
  $("app").hidden = true;
  $("signin-view").hidden = false;
  $("signin-error").textContent = why ?? "";
  $("token").focus();
}

async function signIn(t) {
  setToken(t);
  try {
    zones = (await api("GET", "/v1/zones")).items ?? [];
    await api("GET", "/v1/admin/stats");
  } catch (e) {
    if (!(e instanceof Stale)) signOut("sign-in failed: " + e.message);
    return;
  }
  clearSession();
  $("signin-view").hidden = true;
  $("app").hidden = false;
  $("signin-error").textContent = "";
  const zs = $("trip-zone");
  zs.replaceChildren(el("option", "any"));
  zs.firstChild.value = "";
  for (const z of zones) { const o = el("option", z.name); o.value = z.id; zs.appendChild(o); }
  mountPages();
  show("map");
  liveMap.setZones(zones);
  await liveMap.initMap($("map"), {
    onView: subscribeOps,
    onTrip: (id) => { show("trips"); openTripPage(id); },
    onDriver: openDriverPanel,
    onFollow: followed,
    onNothing: () => $("map-info").replaceChildren(el("p", tr("Nothing under the crosshair: pan with the arrow keys, zoom with + and −, then Enter."))),
  });
  liveMap.wholeZones();
  connect();
  trips.first();
  loadAlerts();
  timers.push(setInterval(() => { sampleHealth(); refreshTrail(); }, 5000));
  sampleHealth();
}

// ---- views ---------------------------------------------------------------------------
// The pages of lib/pages.js get their button and section once, at the first sign-in.
let pagesMounted = false;
function mountPages() {
  if (pagesMounted) return;
  pagesMounted = true;
  for (const p of registered()) {
    const section = h("section", { id: "view-" + p.id, class: "view", hidden: true, "aria-label": p.label, "data-i18n-label": p.label });
    $("views").appendChild(section);
    p.mount(section);
    if (p.nav) {
      const b = h("button", { type: "button", "data-view": p.id, "aria-pressed": "false", "data-i18n": p.label }, tr(p.label));
      b.addEventListener("click", () => show(p.id));
      $("nav").appendChild(b);
    }
  }
}

// Shows `view` (a view of index.html or a registered page's id); `arg` goes to a page's show().
function show(view, arg = "") {
  for (const b of document.querySelectorAll("nav button")) b.setAttribute("aria-pressed", String(b.dataset.view === view));
  for (const s of document.querySelectorAll(".view")) s.hidden = s.id !== "view-" + view;
  document.body.dataset.view = view;
  const page = find(view);
  if (page) page.show(arg);
  if (view === "drivers") drivers.reload();
  if (view === "trips") trips.reload();
  if (view === "alerts") loadAlerts();
  if (view === "health") drawCharts();
  if (view === "map") { liveMap.shown(); if (lastSnapshot) liveMap.render(lastSnapshot); }
}

// Cursor paging of a table (`name`: the tbody's id; its buttons are `name`-first,
// -prev, -next, its page size `name`-limit): the cursors of the pages before are kept,
// so "previous" goes back exactly. Only the answer to the latest load is shown.
class Pager {
  constructor(name, load) { this.name = name; this.loadPage = load; this.stack = []; this.next = null; this.seq = 0; }
  current() { return this.stack.length ? this.stack[this.stack.length - 1] : null; }
  reset() { this.stack = []; this.next = null; this.seq++; this.shown(null); }
  first() { this.stack = []; return this.load(); }
  forward() { if (this.next) { this.stack.push(this.next); return this.load(); } }
  back() { this.stack.pop(); return this.load(); }
  reload() { return this.load(); }
  async load() {
    const seq = ++this.seq;
    const q = new URLSearchParams({ limit: $(this.name + "-limit").value });
    const cursor = this.current();
    if (cursor) q.set("cursor", cursor);
    const page = await this.loadPage(q, () => seq === this.seq);
    if (page && seq === this.seq) this.shown(page.next_cursor);
  }
  shown(next) {
    this.next = next ?? null;
    $(this.name + "-next").disabled = !this.next;
    $(this.name + "-prev").disabled = this.stack.length === 0;
    $(this.name + "-page").textContent = "page " + (this.stack.length + 1);
    $(this.name).dataset.cursor = this.current() ?? "";
  }
}

// ---- map -----------------------------------------------------------------------------
// The live map itself is lib/map.js (Leaflet); here: what a click on it opens.
function renderSnapshot(f) {
  lastSnapshot = f;
  liveMap.render(f);
  if (f.trips.items.some((t) => !knownTrips.has(t.id))) reloadTrips();
  $("ops-summary").textContent = tr("{d} drivers, {t} open trips in view", { d: f.drivers.total, t: f.trips.total });
}
function followed(id) {
  $("map-unfollow").hidden = !id;
  $("map-following").textContent = id ? tr("Following {id}", { id }) : "";
}

// A driver's panel beside the map: what the snapshot says, then its staff record
// (suspension, position age, trip) with the suspend / unsuspend action, and Follow.
async function openDriverPanel(d) {
  const info = $("map-info");
  info.dataset.driver = d.id;
  const facts = el("dl");
  const fact = (k, v) => facts.append(el("dt", k), el("dd", v));
  fact("availability", d.availability); fact("category", d.category);
  fact("position", d.lat.toFixed(5) + ", " + d.lng.toFixed(5));
  const err = el("p", "", "error");
  err.setAttribute("role", "alert");
  const follow = h("button", { type: "button", class: "follow", onclick: () => liveMap.follow(d.id) }, tr("Follow"));
  info.replaceChildren(el("h2", "Driver"), el("p", d.id, "id"), facts, h("div", { class: "actions" }, follow), err);
  try {
    const full = await api("GET", "/v1/admin/drivers/" + encodeURIComponent(d.id));
    if (info.dataset.driver !== d.id) return; // another one was opened meanwhile
    fact("position age", full.location_age_s == null ? "—" : full.location_age_s + " s");
    fact("suspended", full.suspended ? "yes" : "no");
    const actions = el("div", undefined, "actions");
    if (full.trip_id) {
      const b = el("button", "Open trip");
      b.type = "button";
      b.addEventListener("click", () => { show("trips"); openTripPage(full.trip_id); });
      actions.append(b);
    }
    actions.append(suspendButton(full, (e) => { if (!(e instanceof Stale)) err.textContent = e.message; }, () => openDriverPanel(d)));
    info.insertBefore(actions, err);
    actions.querySelector("button").focus();
  } catch (e) { if (!(e instanceof Stale)) err.textContent = e.message; }
}

// ---- socket --------------------------------------------------------------------------
function subscribeOps() {
  const box = liveMap.bbox();
  if (box && socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify({ type: "subscribe", channel: "ops", bbox: box }));
  }
}
function connect() {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  socket = new WebSocket(scheme + location.host + "/v1/ws", socketProtocols());
  socket.onopen = () => { $("status").textContent = "live"; subscribeOps(); };
  socket.onclose = () => {
    $("status").textContent = "reconnecting…";
    if (signedIn()) setTimeout(() => { if (signedIn()) api("GET", "/v1/admin/stats").then(connect, () => {}); }, 1000);
  };
  socket.onmessage = (m) => {
    const f = JSON.parse(m.data);
    if (f.type === "ops_snapshot") renderSnapshot(f);
    else if (f.type === "sos_alert") { addAlert(f.alert); }
    else if (f.type === "trip_updated") {
      reloadTrips();
      if (openTrip && f.trip.id === openTrip) openTripPage(openTrip);
    } else if (f.type === "chat_message") {
      if (openTrip && f.message.trip_id === openTrip) loadChat(openTrip).catch((e) => report("trip-chat-error", e));
    } else if (f.type === "error" && (f.code === "unauthorized" || f.code === "forbidden")) {
      signOut("not allowed: " + f.code);
    }
  };
}

// ---- trips ---------------------------------------------------------------------------
// Reloads the current page of the table, at most every 500 ms (a busy city sends many updates).
let reloadPending = false;
let lastReload = 0;
function reloadTrips() {
  if (reloadPending) return;
  reloadPending = true;
  setTimeout(() => {
    reloadPending = false;
    lastReload = performance.now();
    if (signedIn()) trips.reload();
  }, Math.max(0, 500 - (performance.now() - lastReload)));
}
const trips = new Pager("trips", async (q, current) => {
  if ($("trip-status").value) q.set("status", $("trip-status").value);
  if ($("trip-zone").value) q.set("zone_id", $("trip-zone").value);
  try {
    const page = await api("GET", "/v1/admin/trips?" + q);
    if (!current()) return null;
    const body = $("trips");
    body.replaceChildren();
    for (const t of page.items) {
      knownTrips.add(t.id);
      const row = document.createElement("tr");
      row.dataset.id = t.id;
      row.dataset.created = t.created_at;
      row.tabIndex = 0;
      cell(row, t.id); cell(row, t.status); cell(row, t.pickup?.address ?? ""); cell(row, money(t.fare?.final_minor ?? t.fare?.estimate_minor, t.fare?.currency, t.fare?.currency_exponent)); cell(row, t.created_at);
      row.addEventListener("click", () => openTripPage(t.id));
      row.addEventListener("keydown", (e) => { if (e.key === "Enter") openTripPage(t.id); });
      body.appendChild(row);
    }
    return page;
  } catch (e) { report("trip-error", e); return null; }
});

async function openTripPage(id) {
  if (openTrip !== id) { // an action's error and note stay with their trip
    $("trip-error").textContent = ""; $("trip-note").textContent = "";
    clearTrail($("trip-trail")); $("trip-trail-caption").textContent = "";
    $("trip-chat").replaceChildren(); $("trip-chat-error").textContent = "";
    openTripData = null;
    // Follow the trip: its chat messages come over the socket as they are posted.
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "subscribe", trip_id: id }));
  }
  openTrip = id;
  $("trip").hidden = false;
  $("trip-id").textContent = id;
  try {
    const t = await api("GET", "/v1/trips/" + encodeURIComponent(id));
    if (openTrip !== id) return;
    openTripData = t;
    const facts = $("trip-facts");
    facts.replaceChildren();
    const fact = (k, v) => { const dd = el("dd", v); dd.dataset.fact = k; facts.append(el("dt", k), dd); };
    const person = (name, uid) => uid ? (name ?? "—") + " · " + uid : "—";
    fact("status", t.status);
    fact("rider", person(t.rider_name, t.rider_id));
    fact("driver", person(t.driver_name, t.driver_id));
    fact("pickup", where(t.pickup));
    fact("dropoff", where(t.dropoff));
    fact("fare", money(t.fare?.final_minor ?? t.fare?.estimate_minor, t.fare?.currency, t.fare?.currency_exponent));
    fact("payment", (t.payment?.method ?? "") + " · " + (t.payment?.status ?? ""));
    if (t.cancellation) fact("cancelled", t.cancellation.by + ": " + (t.cancellation.reason ?? ""));
    $("trip-cancel").disabled = FINISHED.includes(t.status);
    $("trip-refund").dataset.currency = t.fare?.currency ?? "";
    $("trip-refund").dataset.exponent = String(t.fare?.currency_exponent ?? "");
    const [ev] = await Promise.all([
      api("GET", "/v1/admin/trips/" + encodeURIComponent(id) + "/events"),
      loadTrail(t),
      loadChat(id).catch((e) => report("trip-chat-error", e)),
    ]);
    if (openTrip !== id) return;
    const list = $("trip-events");
    list.replaceChildren();
    for (const e of ev.items) {
      const parts = [e.at, e.type, e.driver_id, e.outcome && "→ " + e.outcome, e.by && "by " + e.by,
        e.method, e.status, e.final_minor != null && money(e.final_minor, t.fare?.currency, t.fare?.currency_exponent), e.reason && "— " + e.reason];
      list.appendChild(el("li", parts.filter(Boolean).join(" ")));
    }
  } catch (e) { report("trip-error", e); }
}

// The open trip's chat, oldest first (the API pages newest first: the last 200 are shown).
async function loadChat(id) {
  const page = await api("GET", "/v1/trips/" + encodeURIComponent(id) + "/messages?limit=200");
  if (openTrip !== id) return;
  const list = $("trip-chat");
  list.replaceChildren();
  for (const m of page.items.slice().reverse()) {
    const li = el("li");
    li.dataset.id = m.id;
    li.append(el("span", m.at + " · " + m.from_role + (m.from_user_id ? " " + m.from_user_id : ""), "who"), el("span", m.text, "text"));
    list.appendChild(li);
  }
  if (page.items.length === 0) list.appendChild(el("li", "no messages", "hint"));
}
// Staff write to the trip's rider and driver (support may post at any time).
async function sendChat(e) {
  e.preventDefault();
  const id = openTrip, input = $("trip-chat-text");
  if (!id) return;
  $("trip-chat-send").disabled = true;
  try {
    await act("POST", "/v1/trips/" + encodeURIComponent(id) + "/messages", { text: input.value });
    $("trip-chat-error").textContent = "";
    input.value = "";
    await loadChat(id);
  } catch (err) { report("trip-chat-error", err); } finally { $("trip-chat-send").disabled = false; }
}

// The driver's trail of the open trip, with the trip's route and stops: a small map of
// its own (lib/trailmap.js).
async function loadTrail(t) {
  const trail = await api("GET", "/v1/admin/trips/" + encodeURIComponent(t.id) + "/trail");
  if (openTrip !== t.id) return;
  drawTrail($("trip-trail"), t, trail, liveMap.tiles());
  const n = trail.items.length;
  $("trip-trail-caption").textContent = n === 0
    ? (t.driver_id ? "no positions recorded yet" : "no driver yet")
    : n + " positions" + (trail.sampled ? " (an even sample of " + trail.recorded + ")" : "") +
      ", " + trail.items[0].at + " → " + trail.items[n - 1].at;
}
// While an open trip is under way its trail grows: redrawn with the health samples.
function refreshTrail() {
  const t = openTripData;
  if (!t || FINISHED.includes(t.status) || !t.driver_id || $("view-trips").hidden) return;
  loadTrail(t).catch((e) => report("trip-error", e));
}

// A modal confirmation asking for a reason (and an amount for refunds). Confirmed, it
// runs `run` with them and stays open (its buttons disabled) until that is done, so a
// doubled click lands on a disabled button, not on the page behind.
function confirmAction(text, withAmount, run) {
  const d = $("confirm");
  const ok = $("confirm-ok"), back = $("confirm-back");
  $("confirm-text").textContent = text;
  $("confirm-reason").value = "";
  $("confirm-amount").value = "";
  $("confirm-amount-label").hidden = !withAmount;
  $("confirm-amount").required = withAmount;
  let busy = false;
  const close = () => {
    d.close(); $("confirm-form").onsubmit = null; back.onclick = null; d.oncancel = null;
    ok.disabled = false; back.disabled = false; ok.textContent = "Confirm";
  };
  $("confirm-form").onsubmit = async (e) => {
    e.preventDefault();
    if (busy) return;
    busy = true;
    ok.disabled = true; back.disabled = true; ok.textContent = "Working…";
    try { await run({ reason: $("confirm-reason").value, amount: Number($("confirm-amount").value) }); } finally { close(); }
  };
  back.onclick = () => { if (!busy) close(); };
  d.oncancel = (e) => { if (busy) e.preventDefault(); else close(); };
  d.showModal();
  $("confirm-reason").focus();
}

function cancelOpenTrip() {
  const id = openTrip;
  confirmAction("Cancel trip " + id + "? No fee is charged; open offers are withdrawn.", false, async (c) => {
    try {
      const r = await act("POST", "/v1/admin/trips/" + encodeURIComponent(id) + "/cancel", { reason: c.reason });
      $("trip-error").textContent = "";
      $("trip-note").textContent = r.replayed ? "already cancelled by an earlier attempt" : "cancelled";
    } catch (e) { report("trip-error", e); }
    openTripPage(id);
    trips.first();
  });
}

function refundOpenTrip() {
  const id = openTrip;
  const cur = $("trip-refund").dataset.currency;
  const exp = Number.parseInt($("trip-refund").dataset.exponent, 10);
  const unit = Number.isInteger(exp) ? " (1 " + cur + " = " + (10 ** exp) + ")" : "";
  confirmAction("Refund trip " + id + "? The amount is in minor units of " + cur + unit + ".", true, async (c) => {
    try {
      const r = await act("POST", "/v1/admin/trips/" + encodeURIComponent(id) + "/refund", { amount_minor: c.amount, reason: c.reason });
      $("trip-error").textContent = "";
      $("trip-note").textContent = (r.replayed ? "this refund was already done (the server replayed its answer): " : "refunded ") +
        money(r.json?.amount_minor, r.json?.currency, r.json?.currency_exponent);
    } catch (e) { report("trip-error", e); }
    openTripPage(id);
  });
}

// ---- drivers -------------------------------------------------------------------------
// "Suspend…" / "Unsuspend…" for the staff record `d`, confirmed with a reason.
function suspendButton(d, onError, after) {
  const b = el("button", d.suspended ? "Unsuspend…" : "Suspend…");
  b.type = "button";
  b.className = "suspend";
  b.addEventListener("click", () => {
    const verb = d.suspended ? "unsuspend" : "suspend";
    confirmAction(verb[0].toUpperCase() + verb.slice(1) + " driver " + d.driver_id + "?", false, async (c) => {
      try {
        await act("POST", "/v1/admin/drivers/" + encodeURIComponent(d.driver_id) + "/" + verb, { reason: c.reason });
        onError({ message: "" });
      } catch (e) { onError(e); }
      after();
    });
  });
  return b;
}
const drivers = new Pager("drivers", async (q, current) => {
  if ($("driver-availability").value) q.set("availability", $("driver-availability").value);
  try {
    const page = await api("GET", "/v1/admin/drivers?" + q);
    if (!current()) return null;
    const body = $("drivers");
    body.replaceChildren();
    for (const d of page.items) {
      const row = document.createElement("tr");
      row.dataset.id = d.driver_id;
      cell(row, d.driver_id); cell(row, d.availability); cell(row, d.category);
      cell(row, d.location_age_s == null ? "—" : d.location_age_s + " s"); cell(row, d.suspended ? "yes" : "no");
      row.appendChild(document.createElement("td")).appendChild(suspendButton(d, (e) => report("drivers-error", e), () => drivers.reload()));
      body.appendChild(row);
    }
    return page;
  } catch (e) { report("drivers-error", e); return null; }
});

// ---- alerts --------------------------------------------------------------------------
function beep() {
  try {
    // One context for the page's life: browsers limit how many may exist.
    audio ??= new AudioContext();
    if (audio.state === "suspended") audio.resume().catch(() => {});
    const o = audio.createOscillator();
    o.frequency.value = 880;
    o.connect(audio.destination);
    o.start();
    o.stop(audio.currentTime + 0.2);
  } catch (_) { /* no audio device */ }
}
function addAlert(a) {
  if (a.status !== "open") { openAlerts.delete(a.id); drawAlerts(); return; }
  if (!openAlerts.has(a.id)) beep();
  openAlerts.set(a.id, a);
  drawAlerts();
}
// Every open alert, page by page (bounded: ALERT_PAGES pages of ALERT_PAGE), merged into
// what the page holds: an alert that arrived live while the pages were read is kept,
// never wiped; one that was open before the read and is not any more was acknowledged.
const ALERT_PAGE = 50, ALERT_PAGES = 200;
async function loadAlerts() {
  try {
    const before = new Set(openAlerts.keys());
    const fresh = new Map();
    let cursor = null;
    for (let page = 0; page < ALERT_PAGES; page++) {
      const q = "/v1/admin/alerts?status=open&limit=" + ALERT_PAGE + (cursor ? "&cursor=" + encodeURIComponent(cursor) : "");
      const list = await api("GET", q);
      for (const a of list.items) fresh.set(a.id, a);
      cursor = list.next_cursor;
      if (!cursor) break;
    }
    let changed = false;
    for (const id of before) if (!fresh.has(id)) { openAlerts.delete(id); changed = true; }
    for (const [id, a] of fresh) {
      const old = openAlerts.get(id);
      if (!old || old.count !== a.count) { openAlerts.set(id, a); changed = true; }
    }
    if (changed) drawAlerts(); // else keep the list (and the focus in it) as it is
  } catch (_) { /* shown on the next try */ }
}
function drawAlerts() {
  const n = openAlerts.size;
  $("alert-count").hidden = n === 0;
  $("alert-count").textContent = String(n);
  $("alert-banner").hidden = n === 0;
  $("alert-banner").textContent = n === 0 ? "" : n + " open SOS alert" + (n > 1 ? "s" : "") + ": see Alerts";
  const list = $("alerts");
  list.replaceChildren();
  if (n === 0) list.appendChild(el("li", "No open alerts."));
  // Newest first (by the last time each was raised): what just happened is on top.
  const last = (a) => a.last_raised_at ?? a.raised_at;
  const sorted = [...openAlerts.values()].sort((x, y) => (last(x) < last(y) ? 1 : last(x) > last(y) ? -1 : 0));
  for (const a of sorted) {
    const li = el("li", undefined, "alert");
    li.dataset.id = a.id;
    const times = a.count > 1 ? " · raised " + a.count + " times, last " + last(a) : "";
    li.append(el("span", a.raised_at + " · trip " + a.trip_id + times + " · " + (a.note ?? "")));
    const b = el("button", "Acknowledge");
    b.type = "button";
    b.addEventListener("click", async () => {
      try {
        await api("POST", "/v1/admin/alerts/" + encodeURIComponent(a.id) + "/ack", {});
        openAlerts.delete(a.id);
        drawAlerts();
      } catch (e) { if (!(e instanceof Stale)) li.append(el("span", " " + e.message, "error")); }
    });
    li.append(b);
    list.appendChild(li);
  }
}

// ---- health --------------------------------------------------------------------------
const gauge = (get) => (_, cur) => get(cur.s) ?? null;
// Per second between two samples of a cumulative counter (none across a restart).
const rate = (name) => (prev, cur) => {
  const a = prev?.s.counters?.[name], b = cur.s.counters?.[name], dt = prev ? (cur.at - prev.at) / 1000 : 0;
  return a == null || b == null || b < a || dt <= 0 ? null : (b - a) / dt;
};
const SERIES = [
  ["queue_depth", "queue depth", gauge((s) => s.queue_depth)], ["batch", "batch size", gauge((s) => s.last_batch)],
  ["fsync_p99", "fsync p99 µs", gauge((s) => s.fsync_p99_us)], ["sockets", "sockets", gauge((s) => s.sockets_open)],
  ["offers", "offers/s", rate("offers_sent")], ["accepts", "accepts/s", rate("accepts_won")],
  ["accepts_lost", "lost accepts/s", rate("accepts_lost")], ["rate_limited", "rate-limited/s", rate("rate_limited")],
  ["searching", "searching trips", gauge((s) => s.trips?.searching)], ["available", "available drivers", gauge((s) => s.drivers?.available)],
];
const HISTORY = 60; // 5 minutes at one sample per 5 s
async function sampleHealth() {
  try {
    const s = await api("GET", "/v1/admin/stats");
    history.push({ at: Date.now(), s });
    if (history.length > HISTORY + 1) history.shift(); // one more: the first rate needs a sample before it
    if (!$("view-health").hidden) drawCharts();
  } catch (_) { /* the next sample retries */ }
}
const fmt = (v) => v == null ? "—" : Number.isInteger(v) ? String(v) : v.toFixed(2);
function drawCharts() {
  const charts = $("charts");
  charts.replaceChildren();
  for (const [key, name, get] of SERIES) {
    const series = history.map((h, i) => get(i > 0 ? history[i - 1] : null, h)).slice(-HISTORY);
    const known = series.filter((v) => v != null);
    const max = Math.max(0, ...known);
    const fig = el("figure", undefined, "chart");
    fig.dataset.series = key;
    fig.dataset.max = String(max);
    fig.dataset.last = String(known.length ? known[known.length - 1] : "");
    const svg = svgEl("svg", { viewBox: "0 0 200 50", role: "img", "aria-label": name });
    const scale = Math.max(max, 1e-9);
    const pts = [];
    // Newest at the right edge; the chart fills leftwards over five minutes.
    series.forEach((v, i) => { if (v != null) pts.push((200 - (series.length - 1 - i) * 200 / (HISTORY - 1)).toFixed(1) + "," + (48 - v / scale * 46).toFixed(1)); });
    svg.appendChild(svgEl("polyline", { points: pts.join(" ") }));
    fig.append(el("figcaption", name + ": " + fmt(known.length ? known[known.length - 1] : null) + (known.length ? " (max " + fmt(max) + ")" : "")), svg);
    charts.appendChild(fig);
  }
}

// ---- wiring --------------------------------------------------------------------------
// A module runs once the document is parsed: no need to wait for DOMContentLoaded.
{
  onUnauthorized((why) => signOut(why));
  setLang(preferred(), false);
  const langSel = $("lang");
  langSel.value = document.documentElement.lang;
  langSel.addEventListener("change", () => setLang(langSel.value));
  // A page shows its text again in the new language.
  onLangChange(() => {
    const page = find(document.body.dataset.view);
    if (page && signedIn()) page.show("");
  });
  $("signin").addEventListener("submit", (e) => {
    e.preventDefault();
    const t = $("token").value;
    $("token").value = "";
    signIn(t);
  });
  $("signout").addEventListener("click", () => signOut("signed out"));
  for (const b of document.querySelectorAll("nav button")) b.addEventListener("click", () => show(b.dataset.view));
  for (const [pager, filters] of [[trips, ["trip-status", "trip-zone", "trips-limit"]], [drivers, ["driver-availability", "drivers-limit"]]]) {
    for (const f of filters) $(f).addEventListener("change", () => pager.first());
    $(pager.name + "-first").addEventListener("click", () => pager.first());
    $(pager.name + "-prev").addEventListener("click", () => pager.back());
    $(pager.name + "-next").addEventListener("click", () => pager.forward());
  }
  $("trip-cancel").addEventListener("click", cancelOpenTrip);
  $("trip-refund").addEventListener("click", refundOpenTrip);
  $("trip-chat-form").addEventListener("submit", sendChat);
  $("map-fit").addEventListener("click", liveMap.fitDrivers);
  $("map-zones").addEventListener("click", liveMap.wholeZones);
  $("map-unfollow").addEventListener("click", () => liveMap.follow(null));
}
