// The operators' console: the shell (sign-in with e-mail, password and TOTP code or with
// an API token, navigation with hash addresses, search, language and time zone, the live
// socket) and the views of index.html (map, trips and the trip page, drivers, alerts,
// health); the other pages are modules under pages/ (lib/pages.js). Plain DOM, no
// framework, nothing from another origin. The staff token lives in lib/api.js's memory
// only (never in storage) and the session ends when the token does. Text from the API is
// always set with textContent, never parsed as HTML; every time goes through when().
// The live map is lib/map.js, the trip's map lib/trailmap.js, the health charts and the
// search views/.

import { act, api, onUnauthorized, setToken, signedIn, socketProtocols, staffLogin, Stale } from "./lib/api.js";
import { $, cell, el, h } from "./lib/dom.js";
import { money, parseMajor, setTimeZone, timeZone, when, where } from "./lib/format.js";
import { onLangChange, preferred, setLang, t as tr } from "./lib/i18n.js";
import { find, registered } from "./lib/pages.js";
import * as liveMap from "./lib/map.js";
import { clearTrail, drawTrail } from "./lib/trailmap.js";
import "./pages/index.js";
import { drawCharts, fitPlots, resetHealth, sampleHealth } from "./views/health.js";
import { initSearch, resetSearch, search } from "./views/search.js";

const FINISHED = ["completed", "cancelled", "expired"];
let socket = null;
let timers = [];
let lastSnapshot = null;
let zones = [];
let openTrip = null;
let openTripData = null;
let knownTrips = new Set();
const openAlerts = new Map();
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
  resetHealth();
  resetSearch();
  openAlerts.clear();
  knownTrips = new Set();
  lastSnapshot = null;
  liveMap.clearMap();
  openTrip = null; openTripData = null;
  trips.reset(); drivers.reset();
  for (const id of ["trips", "drivers", "alerts", "map-info", "trip-facts", "trip-events", "trip-id", "trip-chat", "trip-ref"]) $(id).replaceChildren();
  for (const dl of document.querySelectorAll("#trip .card dl")) dl.replaceChildren();
  clearTrail($("trip-trail"));
  for (const id of ["trip-error", "trip-note", "drivers-error", "trip-trail-caption", "status", "trip-chat-error"]) $(id).textContent = "";
  $("trip-chat-text").value = "";
  $("ops-summary").textContent = "—";
  $("trip").hidden = true;
  drawAlerts();
  for (const p of registered()) p.reset();
}

let expiry = null; // the timer that ends a session when its token does
let operator = null; // the signed-in staff user's name (null: an API token)

function signOut(why) {
  setToken(null);
  clearTimeout(expiry); expiry = null;
  if (socket) { socket.onclose = null; socket.close(); socket = null; }
  timers.forEach(clearInterval); timers = [];
  clearSession();
  $("who").textContent = "";
  operator = null;
  // The address named what the last operator had open: the next one starts at the map.
  if (location.hash) window.history.replaceState(null, "", location.pathname + location.search);
  $("prefs-home").append($("prefs"));
  $("app").hidden = true;
  $("signin-view").hidden = false;
  $("signin-error").textContent = why ?? "";
  $("email").focus();
}

// A session with token `t`: `ttlS` seconds long when the server said so (a staff
// sign-in), then it ends by itself; `who` names the operator in the header.
async function signIn(t, ttlS, who) {
  setToken(t);
  try {
    zones = (await api("GET", "/v1/zones")).items ?? [];
    await api("GET", "/v1/admin/stats");
  } catch (e) {
    if (!(e instanceof Stale)) signOut(tr("Sign-in failed: {why}", { why: e.message }));
    return;
  }
  clearSession();
  clearTimeout(expiry);
  // setTimeout holds 24.8 days at most; staff tokens last 12 hours.
  if (Number.isInteger(ttlS) && ttlS > 0) expiry = setTimeout(() => signOut(tr("your session has ended: sign in again")), Math.min(ttlS, 2 ** 31 / 1000 - 1) * 1000);
  operator = who ?? null;
  $("who").textContent = operator ?? tr("API token");
  $("prefs-header").append($("prefs"));
  $("signin-view").hidden = true;
  $("app").hidden = false;
  $("signin-error").textContent = "";
  const zs = $("trip-zone");
  zs.replaceChildren(h("option", { value: "", "data-i18n": "any" }, tr("any")));
  for (const z of zones) { const o = el("option", z.name); o.value = z.id; zs.appendChild(o); }
  mountPages();
  // The address asked for (a link, a reload) is shown once the map is up.
  const wanted = location.hash;
  routing = true; // not an address of its own: the one asked for replaces it below
  try { show("map"); } finally { routing = false; }
  liveMap.setZones(zones);
  await liveMap.initMap($("map"), {
    onView: subscribeOps,
    onTrip: (id) => { show("trips", id); },
    onDriver: openDriverPanel,
    onFollow: followed,
    onNothing: () => $("map-info").replaceChildren(el("p", tr("Nothing under the crosshair: pan with the arrow keys, zoom with + and −, then Enter."))),
  });
  liveMap.wholeZones();
  if (!(wanted && wanted !== "#/map" && route(wanted))) window.history.replaceState(null, "", "#/map");
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
      $("nav-office").appendChild(b);
    }
  }
}

// Shows `view` (a view of index.html or a registered page's id); `arg` goes to a page's
// show() (for "trips", the trip to open; for "search", the query). The address follows:
// `#/<view>` or `#/<view>/<arg>`, one history entry each, so back and forward work.
const VIEWS = ["map", "trips", "drivers", "alerts", "health", "search"];
function show(view, arg = "") {
  if (!VIEWS.includes(view) && !find(view)) return false;
  for (const b of document.querySelectorAll("nav button")) b.setAttribute("aria-pressed", String(b.dataset.view === view));
  for (const s of document.querySelectorAll(".view")) s.hidden = s.id !== "view-" + view;
  document.body.dataset.view = view;
  address(view, arg);
  const page = find(view);
  if (page) page.show(arg);
  if (view === "drivers") drivers.reload();
  if (view === "trips") { trips.reload(); if (arg) openTripPage(arg); }
  if (view === "alerts") loadAlerts();
  if (view === "health") drawCharts();
  if (view === "search" && arg) search(arg);
  if (view === "map") { liveMap.shown(); if (lastSnapshot) liveMap.render(lastSnapshot); }
  return true;
}

// ---- addresses -----------------------------------------------------------------------
let routing = false; // showing what the address says: it is not pushed again
function address(view, arg = "") {
  if (routing) return;
  const hash = "#/" + view + (arg ? "/" + encodeURIComponent(arg) : "");
  if (location.hash === hash) return;
  // Opening a trip from the trips list replaces the list's entry: back leaves the page.
  if (view === "trips" && arg && location.hash === "#/trips") window.history.replaceState(null, "", hash);
  else window.history.pushState(null, "", hash);
}
// The part of the address after the view: `#/trips/<this>`.
function hashArg() {
  const m = /^#\/[\w-]+\/(.*)$/.exec(location.hash);
  try { return m ? decodeURIComponent(m[1]) : ""; } catch (_) { return ""; }
}
/** Shows what `hash` names (`#/trips/<id>`, `#/users/<id>`, `#/<page>`); false if nothing. */
function route(hash) {
  const m = /^#\/([\w-]+)(?:\/(.*))?$/.exec(hash ?? "");
  if (!m || !signedIn()) return false;
  let arg = "";
  try { arg = decodeURIComponent(m[2] ?? ""); } catch (_) { return false; }
  routing = true;
  try { return show(m[1], arg); } finally { routing = false; }
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
    $(this.name + "-page").textContent = tr("page {n}", { n: this.stack.length + 1 });
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
  socket.onopen = () => { $("status").textContent = tr("live"); subscribeOps(); };
  socket.onclose = () => {
    $("status").textContent = tr("reconnecting…");
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
      signOut(tr("not allowed: {code}", { code: f.code }));
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
      cell(row, t.id); cell(row, tr(t.status)); cell(row, t.pickup?.address ?? ""); row.appendChild(document.createElement("td")).appendChild(h("bdi", {}, money(t.fare?.final_minor ?? t.fare?.estimate_minor, t.fare?.currency, t.fare?.currency_exponent)));
      row.appendChild(document.createElement("td")).appendChild(when(t.created_at));
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
  if (!$("view-trips").hidden) address("trips", id);
  try {
    const t = await api("GET", "/v1/trips/" + encodeURIComponent(id));
    if (openTrip !== id) return;
    openTripData = t;
    $("trip-ref").textContent = t.ref ?? "";
    const facts = $("trip-facts");
    facts.replaceChildren();
    // `k` names the fact for the tests (data-fact); its label is translated.
    const fact = (k, label, v) => { const dd = el("dd"); dd.append(v ?? ""); dd.dataset.fact = k; facts.append(el("dt", tr(label)), dd); };
    const person = (name, uid) => uid ? (name ?? "—") + " · " + uid : "—";
    fact("status", "status", tr(t.status));
    fact("created", "created", when(t.created_at));
    if (t.scheduled_at) fact("scheduled", "scheduled for", when(t.scheduled_at));
    fact("rider", "rider", person(t.rider_name, t.rider_id));
    fact("driver", "driver", person(t.driver_name, t.driver_id));
    fact("pickup", "pickup", where(t.pickup));
    fact("dropoff", "drop-off", where(t.dropoff));
    fact("fare", "fare", h("bdi", {}, money(t.fare?.final_minor ?? t.fare?.estimate_minor, t.fare?.currency, t.fare?.currency_exponent)));
    fact("payment", "payment", tr(t.payment?.method ?? "") + " · " + tr(t.payment?.status ?? ""));
    if (t.cancellation) fact("cancelled", "cancelled", tr(t.cancellation.by) + ": " + (t.cancellation.reason ?? ""));
    drawCards(t);
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
      const parts = [tr(e.type), e.driver_id, e.outcome && "→ " + tr(e.outcome), e.by && tr("by {who}", { who: tr(e.by) }),
        e.method && tr(e.method), e.status && tr(e.status), e.final_minor != null && money(e.final_minor, t.fare?.currency, t.fare?.currency_exponent), e.reason && "— " + e.reason];
      const li = el("li");
      li.dataset.type = e.type ?? "";
      li.append(when(e.at), " ", parts.filter(Boolean).join(" "));
      list.appendChild(li);
    }
  } catch (e) { report("trip-error", e); }
}

// The trip page's two cards: the driver with the vehicle, and the rider (API.md v1.1:
// `driver` and `rider` objects; null until there is one).
function drawCards(t) {
  const card = (id, rows) => {
    const dl = $(id).querySelector("dl");
    dl.replaceChildren();
    if (rows.length === 0) { dl.append(el("dd", tr("none yet"), "hint")); return; }
    for (const [k, label, v] of rows) {
      const dd = el("dd");
      dd.dataset.field = k;
      dd.append(v);
      dl.append(el("dt", tr(label)), dd);
    }
  };
  const rating = (r) => r && r.average != null ? r.average.toFixed(2) + " (" + tr("{n} ratings", { n: r.count }) + ")" : tr("too few ratings");
  const d = t.driver, v = d?.vehicle;
  const vehicle = v ? [v.color, v.make, v.model].filter(Boolean).join(" ") : "";
  const driverLink = d?.id ?? t.driver_id;
  card("trip-driver-card", driverLink ? [
    // Staff see the full name (`driver_name`); `driver.name` is what riders see.
    ["name", "name", t.driver_name ?? d?.name ?? "—"],
    ["id", "id", userLink(driverLink)],
    ["rating", "rating", rating(d?.rating)],
    ...(vehicle ? [["vehicle", "vehicle", vehicle]] : []),
    ...(v ? [["plate", "plate", v.plate ?? "—"], ["category", "category", tr(v.category ?? "")]] : []),
    ...(d?.location ? [["position", "last position", when(d.location.at)]] : []),
  ] : []);
  const r = t.rider;
  const riderId = r?.id ?? t.rider_id;
  card("trip-rider-card", riderId ? [
    ["name", "name", t.rider_name ?? r?.first_name ?? "—"],
    ["id", "id", userLink(riderId)],
    ["rating", "rating", rating(r?.rating)],
  ] : []);
}
// A link to a user's page (the back office's users page, `#/users/<id>`).
function userLink(id) {
  const a = h("a", { href: "#/users/" + encodeURIComponent(id) }, id);
  a.addEventListener("click", (e) => { if (find("users")) { e.preventDefault(); show("users", id); } });
  return a;
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
    const who = el("span", undefined, "who");
    who.append(when(m.at), " · " + tr(m.from_role) + (m.from_user_id ? " " + m.from_user_id : ""));
    li.append(who, el("span", m.text, "text"));
    list.appendChild(li);
  }
  if (page.items.length === 0) list.appendChild(el("li", tr("no messages"), "hint"));
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

// A modal confirmation asking for a reason (and, for refunds, an amount typed in major
// units of a currency of exponent `amount.exp`, read with parseMajor: never a float).
// Confirmed, it runs `run` with them and stays open (its buttons disabled) until that is
// done, so a doubled click lands on a disabled button, not on the page behind.
function confirmAction(text, amount, run) {
  const d = $("confirm");
  const ok = $("confirm-ok"), back = $("confirm-back");
  $("confirm-text").textContent = text;
  $("confirm-reason").value = "";
  $("confirm-amount").value = "";
  $("confirm-amount-error").textContent = "";
  $("confirm-amount-label").hidden = !amount;
  $("confirm-amount").required = !!amount;
  $("confirm-amount-caption").textContent = amount ? tr("Amount in {cur}", { cur: amount.cur }) : "";
  let busy = false;
  const close = () => {
    d.close(); $("confirm-form").onsubmit = null; back.onclick = null; d.oncancel = null;
    ok.disabled = false; back.disabled = false; ok.textContent = tr("Confirm");
  };
  $("confirm-form").onsubmit = async (e) => {
    e.preventDefault();
    if (busy) return;
    let minor = null;
    if (amount) {
      minor = parseMajor($("confirm-amount").value, amount.exp);
      if (minor === null) {
        $("confirm-amount-error").textContent = tr("Type a positive amount in {cur} with at most {exp} decimals, e.g. {example}.",
          { cur: amount.cur, exp: amount.exp, example: money(1250, amount.cur, amount.exp) });
        $("confirm-amount").focus();
        return;
      }
    }
    busy = true;
    ok.disabled = true; back.disabled = true; ok.textContent = tr("Working…");
    try { await run({ reason: $("confirm-reason").value, amount: minor }); } finally { close(); }
  };
  back.onclick = () => { if (!busy) close(); };
  d.oncancel = (e) => { if (busy) e.preventDefault(); else close(); };
  d.showModal();
  (amount ? $("confirm-amount") : $("confirm-reason")).focus();
}

function cancelOpenTrip() {
  const id = openTrip;
  confirmAction(tr("Cancel trip {id}? No fee is charged; open offers are withdrawn.", { id }), null, async (c) => {
    try {
      const r = await act("POST", "/v1/admin/trips/" + encodeURIComponent(id) + "/cancel", { reason: c.reason });
      $("trip-error").textContent = "";
      $("trip-note").textContent = r.replayed ? tr("already cancelled by an earlier attempt") : tr("cancelled");
    } catch (e) { report("trip-error", e); }
    openTripPage(id);
    trips.first();
  });
}

function refundOpenTrip() {
  const id = openTrip;
  const cur = $("trip-refund").dataset.currency;
  const exp = Number.parseInt($("trip-refund").dataset.exponent, 10);
  if (!cur || !Number.isInteger(exp)) { $("trip-error").textContent = tr("This trip has no fare to refund."); return; }
  confirmAction(tr("Refund trip {id}? Type the amount in {cur}.", { id, cur }), { cur, exp }, async (c) => {
    try {
      const r = await act("POST", "/v1/admin/trips/" + encodeURIComponent(id) + "/refund", { amount_minor: c.amount, reason: c.reason });
      $("trip-error").textContent = "";
      const amount = money(r.json?.amount_minor, r.json?.currency, r.json?.currency_exponent);
      $("trip-note").textContent = r.replayed ? tr("this refund was already done (the server replayed its answer): {amount}", { amount })
        : tr("refunded {amount}", { amount });
    } catch (e) { report("trip-error", e); }
    openTripPage(id);
  });
}

// ---- drivers -------------------------------------------------------------------------
// "Suspend…" / "Unsuspend…" for the staff record `d`, confirmed with a reason.
function suspendButton(d, onError, after) {
  const b = el("button", d.suspended ? tr("Unsuspend…") : tr("Suspend…"));
  b.type = "button";
  b.className = "suspend";
  b.addEventListener("click", () => {
    const verb = d.suspended ? "unsuspend" : "suspend";
    const q = d.suspended ? "Unsuspend driver {id}?" : "Suspend driver {id}?";
    confirmAction(tr(q, { id: d.driver_id }), null, async (c) => {
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
      cell(row, d.driver_id); cell(row, tr(d.availability)); cell(row, tr(d.category));
      cell(row, d.location_age_s == null ? "—" : tr("{n} s", { n: d.location_age_s })); cell(row, d.suspended ? tr("yes") : tr("no"));
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
  $("alert-banner").textContent = n === 0 ? "" : tr(n > 1 ? "{n} open SOS alerts: see Alerts" : "{n} open SOS alert: see Alerts", { n });
  const list = $("alerts");
  list.replaceChildren();
  if (n === 0) list.appendChild(el("li", tr("No open alerts.")));
  // Newest first (by the last time each was raised): what just happened is on top.
  const last = (a) => a.last_raised_at ?? a.raised_at;
  const sorted = [...openAlerts.values()].sort((x, y) => (last(x) < last(y) ? 1 : last(x) > last(y) ? -1 : 0));
  for (const a of sorted) {
    const li = el("li", undefined, "alert");
    li.dataset.id = a.id;
    const text = el("span");
    text.append(when(a.raised_at), " · ", tr("trip {id}", { id: a.trip_id }));
    if (a.count > 1) text.append(" · ", tr("raised {n} times, last", { n: a.count }), " ", when(last(a)));
    text.append(" · " + (a.note ?? ""));
    li.append(text);
    const b = el("button", tr("Acknowledge"));
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

// ---- wiring --------------------------------------------------------------------------
// A module runs once the document is parsed: no need to wait for DOMContentLoaded.
{
  onUnauthorized((why) => signOut(tr(why)));
  initSearch({ show, userLink });
  setLang(preferred(), false);
  const langSel = $("lang");
  langSel.value = document.documentElement.lang;
  langSel.addEventListener("change", () => setLang(langSel.value));
  // What is drawn from the API is drawn again in the new language (or time zone).
  const redraw = () => {
    if (!signedIn()) return;
    const view = document.body.dataset.view;
    const page = find(view);
    if (page) page.show(hashArg());
    trips.shown(trips.next); drivers.shown(drivers.next);
    if (view === "trips") trips.reload();
    if (view === "drivers") drivers.reload();
    if (openTrip) openTripPage(openTrip);
    if (lastSnapshot) renderSnapshot(lastSnapshot); // the summary line and the driver panel's words
    drawAlerts();
    drawCharts();
    if (view === "search" && $("search").value) search($("search").value);
    if ($("status").textContent) $("status").textContent = tr(socket?.readyState === WebSocket.OPEN ? "live" : "reconnecting…");
    $("who").textContent = operator ?? tr("API token");
  };
  onLangChange(redraw);
  // The time zone: the browser's unless chosen (remembered like the language).
  const tzSel = $("tz");
  const zonesKnown = Intl.supportedValuesOf ? Intl.supportedValuesOf("timeZone") : [];
  for (const z of new Set(["UTC", ...zonesKnown, timeZone()])) tzSel.append(h("option", { value: z }, z));
  tzSel.value = timeZone();
  tzSel.addEventListener("change", () => {
    try { setTimeZone(tzSel.value); } catch (_) { tzSel.value = timeZone(); return; }
    redraw();
  });
  $("signin-staff").addEventListener("submit", async (e) => {
    e.preventDefault();
    const email = $("email").value.trim(), password = $("password").value, code = $("totp").value.trim();
    $("password").value = ""; $("totp").value = "";
    $("signin-error").textContent = tr("Signing in…");
    try {
      const r = await staffLogin(email, password, code);
      signIn(r.token, r.expires_in_s, r.user?.name ?? email);
    } catch (err) {
      $("signin-error").textContent = err.status === 401 ? tr("Wrong e-mail, password or code.")
        : err.status === 429 ? tr("Too many failed attempts: the account is locked for a while. Try again later.")
          : tr("Sign-in failed: {why}", { why: err.message });
      $("totp").focus();
    }
  });
  $("signin").addEventListener("submit", (e) => {
    e.preventDefault();
    const t = $("token").value;
    $("token").value = "";
    signIn(t, null, null);
  });
  $("search-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const q = $("search").value.trim();
    if (q) show("search", q);
  });
  // Back and forward, or an address typed in: show what it names.
  window.addEventListener("popstate", () => route(location.hash));
  $("signout").addEventListener("click", () => signOut(tr("signed out")));
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
  new ResizeObserver(fitPlots).observe($("charts"));
}
