// The operators' console: plain DOM, no framework, nothing from another origin.
// The staff token lives in this closure only (never in storage). Text from the API is
// always set with textContent, never parsed as HTML.
"use strict";
(() => {
  const SVG = "http://www.w3.org/2000/svg";
  const FINISHED = ["completed", "cancelled", "expired"];
  let token = null;
  let socket = null;
  let timers = [];
  let box = null; // [min_lng, min_lat, max_lng, max_lat] shown by the map
  let lastSnapshot = null;
  let zones = [];
  let tripCursor = null;
  let tripPages = [];
  let openTrip = null;
  let knownTrips = new Set();
  const openAlerts = new Map();
  const history = [];
  // Milliseconds each ops_snapshot took to render (read by the browser tests).
  window.__renderTimes = [];
  // Whatever the Content-Security-Policy blocked (read by the browser tests: must stay empty).
  window.__cspViolations = [];
  document.addEventListener("securitypolicyviolation", (e) => window.__cspViolations.push(e.violatedDirective + " " + e.blockedURI));

  const $ = (id) => document.getElementById(id);
  const el = (tag, text, cls) => { const e = document.createElement(tag); if (text !== undefined) e.textContent = text ?? ""; if (cls) e.className = cls; return e; };
  const cell = (row, text) => row.appendChild(el("td", text));
  const money = (minor, cur) => minor == null ? "" : (minor / 100).toFixed(2) + " " + (cur ?? "");

  class ApiError extends Error {
    constructor(status, code, message) { super(code ? code + ": " + message : String(status)); this.status = status; }
  }

  async function api(method, path, body) {
    const r = await fetch(path, {
      method,
      headers: { "Authorization": "Bearer " + token, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = r.status === 204 ? null : await r.json().catch(() => null);
    if (r.status === 401 && !$("app").hidden) signOut("your session has ended: sign in again");
    if (!r.ok) throw new ApiError(r.status, json?.error?.code, json?.error?.message ?? "");
    return json;
  }

  // ---- sign-in -------------------------------------------------------------------------
  function signOut(why) {
    token = null;
    if (socket) { socket.onclose = null; socket.close(); socket = null; }
    timers.forEach(clearInterval); timers = [];
    openAlerts.clear();
    $("app").hidden = true;
    $("signin-view").hidden = false;
    $("signin-error").textContent = why ?? "";
    $("token").focus();
  }

  async function signIn(t) {
    token = t;
    try {
      zones = (await api("GET", "/v1/zones")).items ?? [];
      await api("GET", "/v1/admin/stats");
    } catch (e) {
      signOut("sign-in failed: " + e.message);
      return;
    }
    $("signin-view").hidden = true;
    $("app").hidden = false;
    $("signin-error").textContent = "";
    const zs = $("trip-zone");
    zs.replaceChildren(el("option", "any"));
    zs.firstChild.value = "";
    for (const z of zones) { const o = el("option", z.name); o.value = z.id; zs.appendChild(o); }
    show("map");
    box = initialBox();
    $("map").dataset.bbox = box.join(",");
    connect();
    loadTrips(null);
    loadAlerts();
    timers.push(setInterval(sampleHealth, 5000));
    sampleHealth();
  }

  // ---- views ---------------------------------------------------------------------------
  function show(view) {
    for (const b of document.querySelectorAll("nav button")) b.setAttribute("aria-pressed", String(b.dataset.view === view));
    for (const s of document.querySelectorAll(".view")) s.hidden = s.id !== "view-" + view;
    document.body.dataset.view = view;
    if (view === "drivers") loadDrivers();
    if (view === "trips") loadTrips(tripPages.length ? tripPages[tripPages.length - 1] : null);
    if (view === "alerts") loadAlerts();
    if (view === "health") drawCharts();
  }

  // ---- map -----------------------------------------------------------------------------
  function initialBox() {
    let b = [Infinity, Infinity, -Infinity, -Infinity];
    for (const z of zones) for (const ring of z.polygon?.coordinates ?? []) for (const [lng, lat] of ring) {
      b = [Math.min(b[0], lng), Math.min(b[1], lat), Math.max(b[2], lng), Math.max(b[3], lat)];
    }
    if (!isFinite(b[0])) return fitAspect([-180, -60, 180, 75]);
    const mx = (b[2] - b[0]) * 0.1 || 0.05, my = (b[3] - b[1]) * 0.1 || 0.05;
    return fitAspect([b[0] - mx, b[1] - my, b[2] + mx, b[3] + my]);
  }
  function clampBox(b) {
    return [Math.max(-180, b[0]), Math.max(-90, b[1]), Math.min(180, b[2]), Math.min(90, b[3])];
  }
  // The map's size in CSS pixels (its viewBox is in the same units).
  function mapSize() {
    const r = $("map").getBoundingClientRect();
    return [Math.max(1, r.width), Math.max(1, r.height)];
  }
  // Widens `b` so that its shape matches the map's (a degree of longitude is cos(lat) of
  // one of latitude): nothing is stretched, and what is subscribed to is what is seen.
  function fitAspect(b) {
    const [w, h] = mapSize();
    const k = Math.cos(((b[1] + b[3]) / 2) * Math.PI / 180) || 1;
    const spanX = (b[2] - b[0]) * k, spanY = b[3] - b[1];
    if (spanX / spanY < w / h) {
      const grow = (spanY * w / h / k - (b[2] - b[0])) / 2;
      return clampBox([b[0] - grow, b[1], b[2] + grow, b[3]]);
    }
    const grow = (spanX * h / w - spanY) / 2;
    return clampBox([b[0], b[1] - grow, b[2], b[3] + grow]);
  }
  function setBox(b) {
    box = fitAspect(b);
    $("map").dataset.bbox = box.join(",");
    subscribeOps();
  }
  function pan(dx, dy) { // fractions of the box
    const w = box[2] - box[0], h = box[3] - box[1];
    setBox([box[0] + dx * w, box[1] + dy * h, box[2] + dx * w, box[3] + dy * h]);
  }
  function zoom(f) {
    const cx = (box[0] + box[2]) / 2, cy = (box[1] + box[3]) / 2;
    const w = (box[2] - box[0]) * f / 2, h = (box[3] - box[1]) * f / 2;
    setBox([cx - w, cy - h, cx + w, cy + h]);
  }
  // Zooms to the drivers of the last snapshot, with a margin.
  function fitDrivers() {
    const items = lastSnapshot?.drivers.items ?? [];
    if (items.length === 0) return;
    let b = [Infinity, Infinity, -Infinity, -Infinity];
    for (const d of items) b = [Math.min(b[0], d.lng), Math.min(b[1], d.lat), Math.max(b[2], d.lng), Math.max(b[3], d.lat)];
    const mx = (b[2] - b[0]) * 0.1 || 0.01, my = (b[3] - b[1]) * 0.1 || 0.01;
    setBox([b[0] - mx, b[1] - my, b[2] + mx, b[3] + my]);
  }

  // The map's layers, drawn into from one snapshot to the next (a full snapshot is 2,000
  // drivers and 2,000 trips): trip markers are reused, only their attributes change.
  const layers = {};
  function layer(name) {
    if (!layers[name]) {
      const g = document.createElementNS(SVG, "g");
      g.setAttribute("class", "layer " + name);
      $("map").appendChild(g);
      layers[name] = g;
    }
    return layers[name];
  }
  // Makes `g` hold exactly `n` children made by `make`, reusing the ones it has.
  function pool(g, n, make) {
    while (g.childElementCount > n) g.lastChild.remove();
    while (g.childElementCount < n) g.appendChild(make());
    return g.children;
  }
  function makeTrip() {
    const t = document.createElementNS(SVG, "g");
    const r = document.createElementNS(SVG, "rect");
    r.setAttribute("width", "10"); r.setAttribute("height", "10");
    t.append(r, document.createElementNS(SVG, "text"));
    return t;
  }

  function renderSnapshot(f) {
    const t0 = performance.now();
    lastSnapshot = f;
    const svg = $("map");
    const [w, h] = mapSize();
    svg.setAttribute("viewBox", "0 0 " + w + " " + h);
    svg.dataset.bbox = box.join(",");
    const sx = w / (box[2] - box[0]), sy = h / (box[3] - box[1]);
    const x = (lng) => ((lng - box[0]) * sx).toFixed(1);
    const y = (lat) => ((box[3] - lat) * sy).toFixed(1);
    const zoneKey = box.join(",") + w + "x" + h;
    const zl = layer("zones");
    if (zl.dataset.key !== zoneKey) {
      zl.dataset.key = zoneKey;
      zl.replaceChildren();
      for (const z of zones) for (const ring of z.polygon?.coordinates ?? []) {
        const p = document.createElementNS(SVG, "polygon");
        p.setAttribute("points", ring.map(([lng, lat]) => x(lng) + "," + y(lat)).join(" "));
        p.setAttribute("class", "zone");
        zl.appendChild(p);
      }
    }
    // Drivers: one path per availability, a round dot ("M x y h0") per driver. Far
    // cheaper than an element each; clicks are matched to the nearest driver.
    const dots = {};
    for (const d of f.drivers.items) {
      (dots[d.availability] ??= []).push("M" + x(d.lng) + " " + y(d.lat) + "h0");
    }
    const dl = layer("drivers");
    for (const p of [...dl.children]) if (!dots[p.dataset.availability]) p.remove();
    for (const [availability, parts] of Object.entries(dots)) {
      let p = dl.querySelector('path[data-availability="' + CSS.escape(availability) + '"]');
      if (!p) {
        p = document.createElementNS(SVG, "path");
        p.dataset.availability = availability;
        p.setAttribute("class", "driver " + availability);
        dl.appendChild(p);
      }
      p.setAttribute("d", parts.join(""));
    }
    let unknown = false;
    const tl = pool(layer("trips"), f.trips.items.length, makeTrip);
    f.trips.items.forEach((t, i) => {
      if (!knownTrips.has(t.id)) unknown = true;
      const g = tl[i];
      const px = (t.pickup.lng - box[0]) * sx, py = (box[3] - t.pickup.lat) * sy;
      g.setAttribute("class", "trip " + t.status);
      g.dataset.id = t.id;
      g.firstChild.setAttribute("x", (px - 5).toFixed(1)); g.firstChild.setAttribute("y", (py - 5).toFixed(1));
      g.lastChild.setAttribute("x", (px + 8).toFixed(1)); g.lastChild.setAttribute("y", (py + 4).toFixed(1));
      g.lastChild.textContent = t.age_s + " s";
    });
    $("ops-summary").textContent = f.drivers.total + " drivers, " + f.trips.total + " open trips in view (" + f.at + ")";
    const ms = performance.now() - t0;
    performance.measure("ops_snapshot render", { start: t0, duration: ms });
    window.__renderTimes.push(ms);
    if (window.__renderTimes.length > 100) window.__renderTimes.shift();
    if (unknown) reloadTrips();
  }

  function mapClick(e) {
    const trip = e.target.closest(".trip[data-id]");
    if (trip) { show("trips"); openTripPage(trip.dataset.id); return; }
    // The driver nearest the click, within 8 px.
    const r = $("map").getBoundingClientRect();
    const lng = box[0] + (e.clientX - r.left) / r.width * (box[2] - box[0]);
    const lat = box[3] - (e.clientY - r.top) / r.height * (box[3] - box[1]);
    const px = r.width / (box[2] - box[0]), py = r.height / (box[3] - box[1]);
    let best = null, bestD = 64;
    for (const d of lastSnapshot?.drivers.items ?? []) {
      const dd = ((d.lng - lng) * px) ** 2 + ((d.lat - lat) * py) ** 2;
      if (dd < bestD) { best = d; bestD = dd; }
    }
    if (!best) return;
    $("map-info").replaceChildren(el("h2", "Driver"), el("p", best.id),
      el("p", best.availability + " · " + best.category + " · " + best.lat.toFixed(5) + ", " + best.lng.toFixed(5)));
  }

  // ---- socket --------------------------------------------------------------------------
  function subscribeOps() {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ type: "subscribe", channel: "ops", bbox: box }));
    }
  }
  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + "/v1/ws?token=" + encodeURIComponent(token));
    socket.onopen = () => { $("status").textContent = "live"; subscribeOps(); };
    socket.onclose = () => {
      $("status").textContent = "reconnecting…";
      if (token) setTimeout(() => { if (token) api("GET", "/v1/admin/stats").then(connect, () => {}); }, 1000);
    };
    socket.onmessage = (m) => {
      const f = JSON.parse(m.data);
      if (f.type === "ops_snapshot") renderSnapshot(f);
      else if (f.type === "sos_alert") { addAlert(f.alert); }
      else if (f.type === "trip_updated") {
        reloadTrips();
        if (openTrip && f.trip.id === openTrip) openTripPage(openTrip);
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
      loadTrips(tripPages.length ? tripPages[tripPages.length - 1] : null);
    }, Math.max(0, 500 - (performance.now() - lastReload)));
  }
  async function loadTrips(cursor) {
    const q = new URLSearchParams({ limit: "50" });
    if ($("trip-status").value) q.set("status", $("trip-status").value);
    if ($("trip-zone").value) q.set("zone_id", $("trip-zone").value);
    if (cursor) q.set("cursor", cursor);
    try {
      const page = await api("GET", "/v1/admin/trips?" + q);
      const body = $("trips");
      body.replaceChildren();
      for (const t of page.items) {
        knownTrips.add(t.id);
        const row = document.createElement("tr");
        row.dataset.id = t.id;
        row.tabIndex = 0;
        cell(row, t.id); cell(row, t.status); cell(row, t.pickup?.address ?? ""); cell(row, money(t.fare?.final_minor ?? t.fare?.estimate_minor, t.fare?.currency)); cell(row, t.created_at);
        row.addEventListener("click", () => openTripPage(t.id));
        row.addEventListener("keydown", (e) => { if (e.key === "Enter") openTripPage(t.id); });
        body.appendChild(row);
      }
      tripCursor = page.next_cursor;
      $("trips-next").disabled = !tripCursor;
    } catch (e) { $("trip-error").textContent = e.message; }
  }

  async function openTripPage(id) {
    if (openTrip !== id) $("trip-error").textContent = ""; // an action's error stays with its trip
    openTrip = id;
    $("trip").hidden = false;
    $("trip-id").textContent = id;
    try {
      const trips = await api("GET", "/v1/admin/trips?limit=200");
      const t = trips.items.find((x) => x.id === id);
      const facts = $("trip-facts");
      facts.replaceChildren();
      const fact = (k, v) => { facts.append(el("dt", k), el("dd", v)); };
      if (t) {
        fact("status", t.status);
        fact("rider", t.rider_id);
        fact("driver", t.driver_id ?? "—");
        fact("pickup", t.pickup?.address ?? (t.pickup?.lat + ", " + t.pickup?.lng));
        fact("dropoff", t.dropoff?.address ?? (t.dropoff?.lat + ", " + t.dropoff?.lng));
        fact("fare", money(t.fare?.final_minor ?? t.fare?.estimate_minor, t.fare?.currency));
        fact("payment", (t.payment?.method ?? "") + " · " + (t.payment?.status ?? ""));
        if (t.cancellation) fact("cancelled", t.cancellation.by + ": " + (t.cancellation.reason ?? ""));
        $("trip-cancel").disabled = FINISHED.includes(t.status);
        $("trip-refund").dataset.currency = t.fare?.currency ?? "";
      }
      const ev = await api("GET", "/v1/admin/trips/" + encodeURIComponent(id) + "/events");
      const list = $("trip-events");
      list.replaceChildren();
      for (const e of ev.items) {
        const parts = [e.at, e.type, e.driver_id, e.outcome && "→ " + e.outcome, e.by && "by " + e.by, e.status, e.reason && "— " + e.reason];
        list.appendChild(el("li", parts.filter(Boolean).join(" ")));
      }
    } catch (e) { $("trip-error").textContent = e.message; }
  }

  // A modal confirmation asking for a reason (and an amount for refunds).
  function confirmAction(text, withAmount) {
    return new Promise((resolve) => {
      const d = $("confirm");
      $("confirm-text").textContent = text;
      $("confirm-reason").value = "";
      $("confirm-amount").value = "";
      $("confirm-amount-label").hidden = !withAmount;
      $("confirm-amount").required = withAmount;
      const done = (v) => { d.close(); $("confirm-form").onsubmit = null; $("confirm-back").onclick = null; resolve(v); };
      $("confirm-form").onsubmit = (e) => { e.preventDefault(); done({ reason: $("confirm-reason").value, amount: Number($("confirm-amount").value) }); };
      $("confirm-back").onclick = () => done(null);
      d.oncancel = () => done(null);
      d.showModal();
      $("confirm-reason").focus();
    });
  }

  async function cancelOpenTrip() {
    const id = openTrip;
    const c = await confirmAction("Cancel trip " + id + "? No fee is charged; open offers are withdrawn.", false);
    if (!c) return;
    try {
      await api("POST", "/v1/admin/trips/" + encodeURIComponent(id) + "/cancel", { reason: c.reason });
      $("trip-error").textContent = "";
    } catch (e) { $("trip-error").textContent = e.message; }
    openTripPage(id);
    loadTrips(null);
  }

  async function refundOpenTrip() {
    const id = openTrip;
    const c = await confirmAction("Refund trip " + id + "?", true);
    if (!c) return;
    try {
      await api("POST", "/v1/admin/trips/" + encodeURIComponent(id) + "/refund", { amount_minor: c.amount, reason: c.reason });
      $("trip-error").textContent = "";
    } catch (e) { $("trip-error").textContent = e.message; }
    openTripPage(id);
  }

  // ---- drivers -------------------------------------------------------------------------
  async function loadDrivers() {
    const q = new URLSearchParams({ limit: "200" });
    if ($("driver-availability").value) q.set("availability", $("driver-availability").value);
    try {
      const page = await api("GET", "/v1/admin/drivers?" + q);
      const body = $("drivers");
      body.replaceChildren();
      for (const d of page.items) {
        const row = document.createElement("tr");
        row.dataset.id = d.driver_id;
        cell(row, d.driver_id); cell(row, d.availability); cell(row, d.category);
        cell(row, d.location_age_s == null ? "—" : d.location_age_s + " s"); cell(row, d.suspended ? "yes" : "no");
        const b = el("button", d.suspended ? "Unsuspend…" : "Suspend…");
        b.type = "button";
        b.addEventListener("click", async () => {
          const verb = d.suspended ? "unsuspend" : "suspend";
          const c = await confirmAction(verb[0].toUpperCase() + verb.slice(1) + " driver " + d.driver_id + "?", false);
          if (!c) return;
          try {
            await api("POST", "/v1/admin/drivers/" + encodeURIComponent(d.driver_id) + "/" + verb, { reason: c.reason });
            $("drivers-error").textContent = "";
          } catch (e) { $("drivers-error").textContent = e.message; }
          loadDrivers();
        });
        row.appendChild(document.createElement("td")).appendChild(b);
        body.appendChild(row);
      }
    } catch (e) { $("drivers-error").textContent = e.message; }
  }

  // ---- alerts --------------------------------------------------------------------------
  function beep() {
    try {
      const ctx = new AudioContext();
      const o = ctx.createOscillator();
      o.frequency.value = 880;
      o.connect(ctx.destination);
      o.start();
      o.stop(ctx.currentTime + 0.2);
    } catch (_) { /* no audio device */ }
  }
  function addAlert(a) {
    if (a.status !== "open") { openAlerts.delete(a.id); drawAlerts(); return; }
    if (!openAlerts.has(a.id)) beep();
    openAlerts.set(a.id, a);
    drawAlerts();
  }
  async function loadAlerts() {
    try {
      const list = await api("GET", "/v1/admin/alerts?status=open");
      const same = list.items.length === openAlerts.size && list.items.every((a) => openAlerts.has(a.id));
      if (same) return; // keep the list (and the focus in it) as it is
      openAlerts.clear();
      for (const a of list.items) openAlerts.set(a.id, a);
      drawAlerts();
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
    for (const a of openAlerts.values()) {
      const li = el("li", undefined, "alert");
      li.dataset.id = a.id;
      li.append(el("span", a.raised_at + " · trip " + a.trip_id + " · " + (a.note ?? "")));
      const b = el("button", "Acknowledge");
      b.type = "button";
      b.addEventListener("click", async () => {
        try {
          await api("POST", "/v1/admin/alerts/" + encodeURIComponent(a.id) + "/ack", {});
          openAlerts.delete(a.id);
          drawAlerts();
        } catch (e) { li.append(el("span", " " + e.message, "error")); }
      });
      li.append(b);
      list.appendChild(li);
    }
  }

  // ---- health --------------------------------------------------------------------------
  const SERIES = [
    ["queue depth", (s) => s.queue_depth], ["batch size", (s) => s.last_batch], ["fsync p99 µs", (s) => s.fsync_p99_us],
    ["sockets", (s) => s.sockets_open], ["searching trips", (s) => s.trips?.searching], ["available drivers", (s) => s.drivers?.available],
  ];
  async function sampleHealth() {
    try {
      const s = await api("GET", "/v1/admin/stats");
      history.push(s);
      if (history.length > 60) history.shift(); // 5 minutes at one sample per 5 s
      if (!$("view-health").hidden) drawCharts();
    } catch (_) { /* the next sample retries */ }
  }
  function drawCharts() {
    const box = $("charts");
    box.replaceChildren();
    for (const [name, get] of SERIES) {
      const values = history.map((s) => Number(get(s) ?? 0));
      const fig = el("figure", undefined, "chart");
      const svg = document.createElementNS(SVG, "svg");
      svg.setAttribute("viewBox", "0 0 200 50");
      const max = Math.max(1, ...values);
      const line = document.createElementNS(SVG, "polyline");
      line.setAttribute("points", values.map((v, i) => (i * 200 / 59).toFixed(1) + "," + (48 - v / max * 46).toFixed(1)).join(" "));
      svg.appendChild(line);
      fig.append(el("figcaption", name + ": " + (values.length ? values[values.length - 1] : "—")), svg);
      box.appendChild(fig);
    }
  }

  // ---- wiring --------------------------------------------------------------------------
  document.addEventListener("DOMContentLoaded", () => {
    $("signin").addEventListener("submit", (e) => {
      e.preventDefault();
      const t = $("token").value;
      $("token").value = "";
      signIn(t);
    });
    $("signout").addEventListener("click", () => signOut("signed out"));
    for (const b of document.querySelectorAll("nav button")) b.addEventListener("click", () => show(b.dataset.view));
    $("trip-status").addEventListener("change", () => { tripPages = []; loadTrips(null); });
    $("trip-zone").addEventListener("change", () => { tripPages = []; loadTrips(null); });
    $("trips-first").addEventListener("click", () => { tripPages = []; loadTrips(null); });
    $("trips-next").addEventListener("click", () => { if (tripCursor) { tripPages.push(tripCursor); loadTrips(tripCursor); } });
    $("trip-cancel").addEventListener("click", cancelOpenTrip);
    $("trip-refund").addEventListener("click", refundOpenTrip);
    $("driver-availability").addEventListener("change", loadDrivers);
    $("map-fit").addEventListener("click", fitDrivers);
    $("map-zones").addEventListener("click", () => setBox(initialBox()));
    const map = $("map");
    window.addEventListener("resize", () => { if (box) setBox(box); });
    map.addEventListener("click", mapClick);
    map.addEventListener("wheel", (e) => { e.preventDefault(); zoom(e.deltaY > 0 ? 1.25 : 0.8); }, { passive: false });
    map.addEventListener("keydown", (e) => {
      const k = { ArrowLeft: [-0.1, 0], ArrowRight: [0.1, 0], ArrowUp: [0, 0.1], ArrowDown: [0, -0.1] }[e.key];
      if (k) { e.preventDefault(); pan(k[0], k[1]); } else if (e.key === "+" || e.key === "=") zoom(0.8); else if (e.key === "-") zoom(1.25);
      else if (e.key === "f") fitDrivers(); else if (e.key === "z") setBox(initialBox());
    });
    let drag = null;
    map.addEventListener("pointerdown", (e) => { drag = [e.clientX, e.clientY]; });
    window.addEventListener("pointerup", (e) => {
      if (!drag) return;
      const r = map.getBoundingClientRect();
      const dx = (drag[0] - e.clientX) / r.width, dy = (e.clientY - drag[1]) / r.height;
      drag = null;
      if (Math.abs(dx) + Math.abs(dy) > 0.01) pan(dx, dy);
    });
  });
})();
