// The trip page's small map (issue 23): the pickup, the stops and the drop-off, the
// trip's route (its `route.polyline`, a Google encoded polyline at precision 5, when the
// trip has one; else straight dashed segments through the stops, as the fare's straight
// line), and the driver's trail (`GET /v1/admin/trips/{id}/trail`) with its last
// position. On Leaflet's canvas renderer, the same tiles as the live map (or none).
//
// Guarantees: one Leaflet map for the page's life, redrawn whole for each trip; the
// container says how many trail points it drew (`data-points`) and whether it drew a
// route (`data-route`: "polyline", "straight" or absent), and `window.__trail.points()`
// gives the trail's screen positions (north up) to the browser tests.

import * as L from "../vendor/leaflet/leaflet-src.esm.js";
import { strings, t } from "./i18n.js";

let map = null, layer = null, line = null;

strings("ar", {
  "the trip's route and the driver's trail": "مسار الرحلة وأثر السائق",
  "pickup": "نقطة الالتقاط",
  "drop-off": "نقطة الإنزال",
  "stop {n}": "توقف {n}",
  "the driver's last position": "آخر موقع للسائق",
});

/** Decodes a Google encoded polyline (precision 5) into [lat, lng] pairs; [] if malformed. */
export function decodePolyline(s) {
  const out = [];
  let i = 0, lat = 0, lng = 0;
  const next = () => {
    let shift = 0, result = 0, b;
    do {
      if (i >= s.length) return null;
      b = s.charCodeAt(i++) - 63;
      if (b < 0 || b > 63) return null;
      result |= (b & 0x1f) << shift;
      shift += 5;
    } while (b >= 0x20 && shift < 35);
    return result & 1 ? ~(result >> 1) : result >> 1;
  };
  while (i < s.length) {
    const a = next(), b = next();
    if (a == null || b == null) return [];
    lat += a; lng += b;
    out.push([lat / 1e5, lng / 1e5]);
  }
  return out;
}

/** Draws trip `trip` and its `trail` (the endpoint's answer) into `container`. */
export function drawTrail(container, trip, trail, tiles) {
  if (!map) {
    map = L.map(container, { preferCanvas: true, renderer: L.canvas(), zoomAnimation: false, fadeAnimation: false,
      attributionControl: false, scrollWheelZoom: false, maxZoom: 19 });
    if (tiles?.tile_url) L.tileLayer(tiles.tile_url, { maxZoom: 19 }).addTo(map);
    L.control.scale({ imperial: false, position: "bottomleft" }).addTo(map);
    layer = L.layerGroup().addTo(map);
    container.setAttribute("role", "region");
    container.dataset.i18nLabel = "the trip's route and the driver's trail";
    window.__trail = { points: () => (line ? line.getLatLngs().map((ll) => { const p = map.latLngToContainerPoint(ll); return [p.x, p.y]; }) : []) };
  }
  container.setAttribute("aria-label", t("the trip's route and the driver's trail"));
  map.invalidateSize({ pan: false });
  layer.clearLayers();
  const at = (p) => [p.lat, p.lng];
  const stops = (trip.stops ?? []).filter((s) => Number.isFinite(s?.lat) && Number.isFinite(s?.lng));
  const encoded = trip.route?.polyline ?? trip.polyline;
  const route = typeof encoded === "string" ? decodePolyline(encoded) : [];
  const all = [];
  if (route.length > 1) {
    L.polyline(route, { color: "#e08000", weight: 4, opacity: 0.7 }).addTo(layer);
    container.dataset.route = "polyline";
    all.push(...route);
  } else {
    const straight = [at(trip.pickup), ...stops.map(at), at(trip.dropoff)];
    L.polyline(straight, { color: "#e08000", weight: 2, opacity: 0.8, dashArray: "6 6" }).addTo(layer);
    container.dataset.route = "straight";
    all.push(...straight);
  }
  const pts = trail.items.map((p) => [p.lat, p.lng]);
  line = L.polyline(pts, { color: "#1c5fc4", weight: 3, lineJoin: "round" }).addTo(layer);
  all.push(...pts);
  const mark = (p, colour, label, r = 6) =>
    L.circleMarker(p, { radius: r, color: "#fff", weight: 2, fillColor: colour, fillOpacity: 1 }).bindTooltip(label).addTo(layer);
  stops.forEach((s, i) => mark(at(s), "#7a4", t("stop {n}", { n: i + 1 }), 5));
  mark(at(trip.pickup), "#e08000", t("pickup"));
  mark(at(trip.dropoff), "#123", t("drop-off"));
  if (pts.length) mark(pts[pts.length - 1], "#1c5fc4", t("the driver's last position"), 5);
  container.dataset.points = String(pts.length);
  container.dataset.stops = String(stops.length);
  const b = L.latLngBounds(all);
  if (b.isValid()) map.fitBounds(b.pad(0.15), { animate: false, maxZoom: 17 });
}

/** Forgets the drawing (the trip page closed, or the session ended). */
export function clearTrail(container) {
  if (layer) layer.clearLayers();
  line = null;
  delete container.dataset.points;
  delete container.dataset.route;
}
