// The live map of the map view (issue 23), on Leaflet 1.9.4 (vendor/leaflet): the zones'
// polygons and a graticule on Leaflet's canvas renderer, the scale bar, the tile server
// of `[console] tile_url` when there is one (config.json; else nothing from another
// origin), and one canvas of its own for what an ops_snapshot brings (up to 2,000
// drivers and 2,000 trips, redrawn whole in a few ms: far cheaper than a layer each).
//
// Guarantees: what is subscribed to is what is seen (`onView` gets the visible bbox after
// every move); a snapshot is drawn at once and timed into `window.__renderTimes`; every
// driver of the snapshot is drawn, alone (with a heading arrow once it has moved) or
// counted in a bubble — never clustered from zoom INDIVIDUAL_ZOOM in; the container
// says what it drew (`data-drivers`, `data-dots`, `data-clusters`, `data-arrows`, `data-trips`,
// `data-bbox`, `data-zoom`, `data-follow`) and `window.__map` answers where a place is
// on screen, for the browser tests. The container is focusable: arrows pan, +/− zoom
// (Leaflet's keyboard), Enter opens what is under the crosshair, Esc stops following.

import * as L from "../vendor/leaflet/leaflet-src.esm.js";
import { strings, t } from "./i18n.js";

/** From this zoom in every driver is drawn on its own. */
export const INDIVIDUAL_ZOOM = 16;
const CELL = 44; // px: the clustering grid below INDIVIDUAL_ZOOM
const HIT = 12; // px: how near a click must be to a driver or a trip
const COLOURS = { available: "#1a8a3a", on_trip: "#1c5fc4", offline: "#888" };
const TRIP = "#e08000";

let map = null;
let box = null; // [min_lng, min_lat, max_lng, max_lat] seen
let zones = [];
let zoneLayer = null, gridLayer = null, canvas = null;
let last = null; // the last snapshot
let drawn = { dots: [], clusters: [], trips: [] }; // screen positions, for clicks
let following = null; // a driver's id
const headings = new Map(); // driver id → {lat, lng, heading (radians, clockwise from north) | null}
let hooks = { onView() {}, onTrip() {}, onDriver() {}, onFollow() {}, onNothing() {} };
let config = { tile_url: null, tile_attribution: "" }; // config.json: the tile server, if any

strings("ar", {
  "Fit to drivers (f)": "ملاءمة السائقين (f)",
  "Whole zones (z)": "كل المناطق (z)",
  "Stop following (Esc)": "إيقاف المتابعة (Esc)",
  "Follow": "متابعة",
  "Following {id}": "متابعة {id}",
  "drag/arrows: pan · wheel/+/−: zoom · Enter: open at the crosshair": "السحب/الأسهم: تحريك · العجلة/+/−: تكبير · Enter: فتح ما تحت التقاطع",
  "live map of drivers and open trips": "خريطة مباشرة للسائقين والرحلات المفتوحة",
  "available": "متاح",
  "on a trip": "في رحلة",
  "offline": "غير متصل",
  "open trip (age)": "رحلة مفتوحة (عمرها)",
  "drivers near each other (count)": "سائقون متقاربون (العدد)",
  "heading": "الاتجاه",
  "{d} drivers, {t} open trips in view": "{d} سائق، {t} رحلة مفتوحة في العرض",
  "Nothing under the crosshair: pan with the arrow keys, zoom with + and −, then Enter.": "لا شيء تحت التقاطع: حرّك بالأسهم وكبّر بـ + و −، ثم Enter.",
});

/** Creates the map in `container` (once); `h` are the callbacks (see `hooks`). */
export async function initMap(container, h) {
  hooks = { ...hooks, ...h };
  if (map) return;
  try {
    const r = await fetch("/console/config.json", { cache: "no-cache" });
    if (r.ok) config = await r.json();
  } catch (_) { /* the offline map */ }
  if (map) return;
  map = L.map(container, {
    preferCanvas: true, renderer: L.canvas(), zoomAnimation: false, fadeAnimation: false, markerZoomAnimation: false,
    attributionControl: false, keyboard: true, keyboardPanDelta: 120, worldCopyJump: false, minZoom: 2, maxZoom: 19,
    zoomSnap: 0.5,
  });
  if (config.tile_url) {
    L.tileLayer(config.tile_url, { maxZoom: 19, attribution: escapeHtml(config.tile_attribution ?? "") }).addTo(map);
    L.control.attribution({ prefix: false }).addTo(map);
    container.dataset.tiles = "on";
  }
  L.control.scale({ imperial: false, position: "bottomleft" }).addTo(map);
  zoneLayer = L.layerGroup().addTo(map);
  gridLayer = L.layerGroup().addTo(map);
  canvas = L.DomUtil.create("canvas", "live-layer", container);
  const cross = L.DomUtil.create("div", "crosshair", container);
  cross.setAttribute("aria-hidden", "true");
  map.on("moveend", moved);
  map.on("move resize", draw);
  map.on("click", (e) => pick(e.containerPoint));
  map.on("dragstart", () => follow(null));
  container.setAttribute("role", "application");
  container.dataset.i18nLabel = "live map of drivers and open trips";
  container.setAttribute("aria-label", t("live map of drivers and open trips"));
  container.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      const size = map.getSize();
      if (!pick(L.point(size.x / 2, size.y / 2))) hooks.onNothing();
    } else if (e.key === "Escape") follow(null);
    else if (e.key === "f") fitDrivers();
    else if (e.key === "z") wholeZones();
  });
  // Hidden (another view), the map keeps the size and the box it had: only a real size counts.
  new ResizeObserver(() => { if (container.clientWidth > 0) map.invalidateSize({ pan: false }); }).observe(container);
  window.__map = {
    point: (lat, lng) => { const p = map.latLngToContainerPoint([lat, lng]); return [p.x, p.y]; },
    view: (lat, lng, z) => { map.setView([lat, lng], z, { animate: false }); return true; },
    zoom: () => map.getZoom(),
    trips: () => (last?.trips.items ?? []).map((t) => t.id), // held: drawn now, or once shown
    follow: (id) => follow(id),
    bubbles: () => drawn.clusters.map((c) => { const ll = map.containerPointToLatLng([c.x, c.y]); return [ll.lat, ll.lng]; }),
    driver: (id) => { const d = last?.drivers.items.find((x) => x.id === id); return d ? [d.lat, d.lng] : null; },
  };
  setZones(zones);
  wholeZones();
}

/** The tile server of config.json (`tile_url`, `tile_attribution`), for the trip's map too. */
export const tiles = () => config;

const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => "&#" + c.charCodeAt(0) + ";");

/** The zones to draw (GeoJSON polygons, [lng, lat]). */
export function setZones(zs) {
  zones = zs ?? [];
  if (!zoneLayer) return;
  zoneLayer.clearLayers();
  for (const z of zones) {
    const rings = (z.polygon?.coordinates ?? []).map((ring) => ring.map(([lng, lat]) => [lat, lng]));
    if (rings.length) L.polygon(rings, { color: "#579", weight: 1.5, fillColor: "#9bc", fillOpacity: 0.18, interactive: false }).addTo(zoneLayer);
  }
  map.getContainer().dataset.zones = String(zones.length);
}

/** Shows every zone with a margin (the whole world when there is none). */
export function wholeZones() {
  if (!map) return;
  follow(null);
  let b = null;
  for (const z of zones) for (const ring of z.polygon?.coordinates ?? []) for (const [lng, lat] of ring) {
    b = b ? b.extend([lat, lng]) : L.latLngBounds([lat, lng], [lat, lng]);
  }
  if (b) map.fitBounds(b.pad(0.1), { animate: false });
  else map.fitWorld({ animate: false });
}

/** Zooms to the drivers of the last snapshot, with a margin. */
export function fitDrivers() {
  const items = last?.drivers.items ?? [];
  if (!map || items.length === 0) return;
  follow(null);
  const b = L.latLngBounds(items.map((d) => [d.lat, d.lng]));
  map.fitBounds(b.pad(0.1), { animate: false, maxZoom: 17 });
}

/** The bbox seen, [min_lng, min_lat, max_lng, max_lat], or null before the map is shown. */
export const bbox = () => box;

/** Keeps driver `id` centred as snapshots arrive (null stops). */
export function follow(id) {
  if (following === id) return;
  following = id;
  if (!map) return;
  const c = map.getContainer();
  if (id) c.dataset.follow = id; else delete c.dataset.follow;
  hooks.onFollow(id);
  if (id) {
    const d = last?.drivers.items.find((x) => x.id === id);
    if (d) map.panTo([d.lat, d.lng], { animate: false });
  }
}
export const followed = () => following;

/** Forgets the last session: nothing drawn, nothing followed. */
export function clearMap() {
  last = null; box = null;
  if (following) { following = null; hooks.onFollow(null); }
  headings.clear();
  drawn = { dots: [], clusters: [], trips: [] };
  if (!map) return;
  delete map.getContainer().dataset.follow;
  setZones([]);
  draw();
}

// The view changed: the new box is what is subscribed to, the graticule follows it.
function moved() {
  if (map.getContainer().clientWidth === 0) return; // hidden: the box seen stays
  const b = map.getBounds();
  const c = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
  box = [c(b.getWest(), -180, 180), c(b.getSouth(), -90, 90), c(b.getEast(), -180, 180), c(b.getNorth(), -90, 90)];
  const el = map.getContainer();
  el.dataset.bbox = box.join(",");
  el.dataset.zoom = String(map.getZoom());
  graticule();
  draw();
  hooks.onView(box);
}

// Lines every 1°, 0.1° or 0.01° (by zoom), over the view and a little around it.
function graticule() {
  gridLayer.clearLayers();
  const z = map.getZoom();
  const step = z >= 13 ? 0.01 : z >= 9 ? 0.1 : z >= 5 ? 1 : 10;
  const b = map.getBounds().pad(0.2);
  const s = Math.max(-85, b.getSouth()), n = Math.min(85, b.getNorth());
  const w = Math.max(-180, b.getWest()), e = Math.min(180, b.getEast());
  const opts = { color: "#8aa", weight: 1, opacity: 0.5, interactive: false };
  let lines = 0;
  for (let lng = Math.ceil(w / step) * step; lng <= e && lines < 400; lng += step, lines++) L.polyline([[s, lng], [n, lng]], opts).addTo(gridLayer);
  for (let lat = Math.ceil(s / step) * step; lat <= n && lines < 800; lat += step, lines++) L.polyline([[lat, w], [lat, e]], opts).addTo(gridLayer);
  map.getContainer().dataset.graticule = String(step);
}

/** Draws an ops_snapshot (and remembers it for redrawing), timing it. */
export function render(f) {
  const t0 = performance.now();
  last = f;
  // Hidden (another view shows): kept, drawn when the map is shown again.
  if (!map || map.getContainer().clientWidth === 0) return;
  // Headings from the last position seen of each driver (the snapshot has none).
  const seen = new Set();
  for (const d of f.drivers.items) {
    seen.add(d.id);
    const p = headings.get(d.id);
    if (!p) { headings.set(d.id, { lat: d.lat, lng: d.lng, heading: null }); continue; }
    const dy = d.lat - p.lat, dx = (d.lng - p.lng) * Math.cos(d.lat * Math.PI / 180);
    if (dx * dx + dy * dy > 1e-12) { p.heading = Math.atan2(dx, dy); p.lat = d.lat; p.lng = d.lng; }
  }
  if (headings.size > 2 * f.drivers.items.length + 100) for (const id of headings.keys()) if (!seen.has(id)) headings.delete(id);
  if (following) {
    const d = f.drivers.items.find((x) => x.id === following);
    if (d && map) map.panTo([d.lat, d.lng], { animate: false });
  }
  draw();
  const ms = performance.now() - t0;
  performance.measure("ops_snapshot render", { start: t0, duration: ms });
  window.__renderTimes.push(ms);
  if (window.__renderTimes.length > 100) window.__renderTimes.shift();
}

// Draws the last snapshot at the map's current view.
function draw() {
  if (!map || !canvas) return;
  const el = map.getContainer();
  if (!last) { // nothing to show (signed out): nothing drawn, even while hidden
    canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
    drawn = { dots: [], clusters: [], trips: [] };
    el.dataset.drivers = el.dataset.dots = el.dataset.clusters = el.dataset.arrows = el.dataset.trips = "0";
    return;
  }
  const size = map.getSize();
  if (size.x === 0 || size.y === 0) return; // hidden: drawn when shown
  const dpr = window.devicePixelRatio || 1;
  if (canvas.width !== Math.round(size.x * dpr) || canvas.height !== Math.round(size.y * dpr)) {
    canvas.width = Math.round(size.x * dpr); canvas.height = Math.round(size.y * dpr);
    canvas.style.width = size.x + "px"; canvas.style.height = size.y + "px";
  }
  const g = canvas.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, size.x, size.y);
  drawn = { dots: [], clusters: [], trips: [] };
  const zoom = map.getZoom();
  const pt = (lat, lng) => map.latLngToContainerPoint([lat, lng]);
  const inside = (p) => p.x >= -CELL && p.y >= -CELL && p.x <= size.x + CELL && p.y <= size.y + CELL;
  // Drivers: a grid of CELL px cells; a cell of two or more is one bubble with its count.
  const cells = new Map();
  let total = 0;
  for (const d of last.drivers.items) {
    const p = pt(d.lat, d.lng);
    if (!inside(p)) continue;
    total++;
    if (zoom >= INDIVIDUAL_ZOOM) { drawn.dots.push({ x: p.x, y: p.y, d }); continue; }
    const key = Math.floor(p.x / CELL) + ":" + Math.floor(p.y / CELL);
    const c = cells.get(key);
    if (c) c.push({ x: p.x, y: p.y, d }); else cells.set(key, [{ x: p.x, y: p.y, d }]);
  }
  for (const members of cells.values()) {
    if (members.length === 1) { drawn.dots.push(members[0]); continue; }
    let x = 0, y = 0;
    const by = {};
    for (const m of members) { x += m.x; y += m.y; by[m.d.availability] = (by[m.d.availability] ?? 0) + 1; }
    drawn.clusters.push({ x: x / members.length, y: y / members.length, members, by });
  }
  for (const c of drawn.clusters) bubble(g, c);
  let arrows = 0;
  for (const m of drawn.dots) {
    const heading = headings.get(m.d.id)?.heading ?? null;
    if (heading != null) arrows++;
    driverMark(g, m.x, m.y, m.d.availability, heading, m.d.id === following);
  }
  // Trips: an orange square at the pickup with its age beside it.
  g.font = "11px system-ui, sans-serif";
  g.textBaseline = "middle";
  g.textAlign = "left";
  for (const tr of last.trips.items) {
    const p = pt(tr.pickup.lat, tr.pickup.lng);
    if (!inside(p)) continue;
    drawn.trips.push({ x: p.x, y: p.y, id: tr.id });
    g.fillStyle = TRIP; g.strokeStyle = "#000"; g.lineWidth = 1;
    g.fillRect(p.x - 5, p.y - 5, 10, 10); g.strokeRect(p.x - 5, p.y - 5, 10, 10);
    g.fillStyle = "#222";
    g.fillText(tr.age_s + " s", p.x + 8, p.y);
  }
  el.dataset.drivers = String(total);
  el.dataset.dots = String(drawn.dots.length);
  el.dataset.clusters = String(drawn.clusters.length);
  el.dataset.arrows = String(arrows);
  el.dataset.trips = String(drawn.trips.length);
}

// A driver: a dot in its availability's colour, an arrow when its heading is known.
function driverMark(g, x, y, availability, heading, followed) {
  g.fillStyle = COLOURS[availability] ?? "#555";
  g.strokeStyle = "#fff";
  g.lineWidth = 1.5;
  if (heading == null) {
    g.beginPath(); g.arc(x, y, 5, 0, 2 * Math.PI); g.fill(); g.stroke();
  } else {
    const s = Math.sin(heading), c = Math.cos(heading); // screen: x east, y south
    const at = (f, r) => [x + f * s + r * c, y - f * c + r * s];
    g.beginPath();
    g.moveTo(...at(8, 0)); g.lineTo(...at(-6, 5.5)); g.lineTo(...at(-3, 0)); g.lineTo(...at(-6, -5.5)); g.closePath();
    g.fill(); g.stroke();
  }
  if (followed) { g.strokeStyle = "#c00"; g.lineWidth = 2.5; g.beginPath(); g.arc(x, y, 11, 0, 2 * Math.PI); g.stroke(); }
}

// A bubble of drivers: its size grows with the count; a ring in the colours of its mix.
function bubble(g, c) {
  const n = c.members.length;
  const r = Math.min(26, 11 + Math.log2(n) * 2.5);
  let a = -Math.PI / 2;
  for (const [k, v] of Object.entries(c.by)) {
    const span = 2 * Math.PI * v / n;
    g.beginPath(); g.strokeStyle = COLOURS[k] ?? "#555"; g.lineWidth = 4;
    g.arc(c.x, c.y, r, a, a + span); g.stroke();
    a += span;
  }
  g.beginPath(); g.fillStyle = "rgba(255,255,255,0.92)"; g.arc(c.x, c.y, r - 2, 0, 2 * Math.PI); g.fill();
  g.fillStyle = "#123"; g.font = "bold 12px system-ui, sans-serif"; g.textAlign = "center"; g.textBaseline = "middle";
  g.fillText(String(n), c.x, c.y);
}

// Opens what is at screen point `p`: a trip, else a driver, else zooms into a bubble.
// Whether anything was there.
function pick(p) {
  const near = (list, r) => {
    let best = null, bd = r * r;
    for (const it of list) { const dd = (it.x - p.x) ** 2 + (it.y - p.y) ** 2; if (dd <= bd) { best = it; bd = dd; } }
    return best;
  };
  const tr = near(drawn.trips, HIT);
  if (tr) { hooks.onTrip(tr.id); return true; }
  const d = near(drawn.dots, HIT);
  if (d) { hooks.onDriver(d.d); return true; }
  const c = near(drawn.clusters, 26);
  if (c) {
    const b = L.latLngBounds(c.members.map((m) => [m.d.lat, m.d.lng]));
    map.fitBounds(b.pad(0.5), { animate: false, maxZoom: Math.max(map.getZoom() + 2, Math.min(INDIVIDUAL_ZOOM, 18)) });
    return true;
  }
  return false;
}

/** Redraws at the current size (the view was shown again, or resized). */
export function shown() {
  if (!map || map.getContainer().clientWidth === 0) return;
  map.invalidateSize({ pan: false });
  if (!box) wholeZones(); else draw();
}
