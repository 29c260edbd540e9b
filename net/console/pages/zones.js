// Zones (issue 23, helper G; API.md "Zones, pricing, coupons"): the list (`GET /v1/zones`),
// each opening its editor; a new zone. The editor draws the zone's outer ring on a Leaflet
// map (vendor/leaflet, canvas renderer, tiles only when config.json names a tile server;
// the other zones drawn faintly): a click adds a vertex, a vertex marker is dragged to move
// it, clicked (or focused) to select it, Delete removes it; a "lat,lng" text area per line
// is the keyboard's way and stays in sync both ways. The pricing form types amounts in
// major units (`parseMajor`) and sends minor units.
//
// Guarantees: nothing is sent until the page's checks pass (at least 3 vertices, each
// inside lat/lng bounds, no two consecutive the same, no edge crossing another, every
// field a valid number) and the operator confirmed in the dialog; "New zone" is `POST
// /v1/admin/zones`, "Save" `PUT /v1/admin/zones/{id}` with the spec whole — what the page
// does not edit (a category's parcel prices, free-cancel window, the polygon's holes and
// further polygons) is sent back as it came; the API's 400 is shown beside the field its
// `param` names (or the pricing field its message names), else in the alert.

import * as L from "../vendor/leaflet/leaflet-src.esm.js";
import { act, api } from "../lib/api.js";
import { h } from "../lib/dom.js";
import { money, parseMajor, when } from "../lib/format.js";
import { strings, t } from "../lib/i18n.js";
import { register } from "../lib/pages.js";
import { alertBox, confirmDialog, exponentOf, learnExponents, showError, table, tx } from "./office-kit.js";

strings("ar", {
  "Zones": "المناطق",
  "New zone": "منطقة جديدة",
  "Name": "الاسم", "Currency": "العملة", "Active": "فعّالة", "Vertices": "الرؤوس", "Updated": "حُدّث",
  "Categories": "الفئات", "yes": "نعم", "no": "لا",
  "Zone": "المنطقة", "New zone (not saved)": "منطقة جديدة (غير محفوظة)",
  "Area": "النطاق",
  "Click the map to add a vertex; drag a vertex to move it; click or focus a vertex and press Delete to remove it.":
    "انقر على الخريطة لإضافة رأس؛ اسحب رأسًا لتحريكه؛ انقر على رأس أو انتقل إليه واضغط Delete لحذفه.",
  "Remove last vertex": "حذف آخر رأس",
  "Remove selected vertex": "حذف الرأس المحدد",
  "Clear": "مسح",
  "Vertices, one \"lat,lng\" per line": "الرؤوس، سطر لكل \"خط العرض,خط الطول\"",
  "zone editor map: click to add a vertex": "خريطة تحرير المنطقة: انقر لإضافة رأس",
  "vertex {n}": "الرأس {n}",
  "{n} vertices": "{n} رؤوس",
  "Active (takes trips)": "فعّالة (تستقبل رحلات)",
  "Bidding allowed": "المزايدة مسموحة",
  "Surge pricing": "تسعير الذروة",
  "Surge cap (bps, 10000 = ×1.0)": "سقف تسعير الذروة (نقاط أساس، 10000 = ×1.0)",
  "Extra fee per trip": "رسم إضافي لكل رحلة",
  "Pricing": "التسعير",
  "Category": "الفئة",
  "Add category": "إضافة فئة",
  "Remove category": "حذف الفئة",
  "Base fare": "الأجرة الأساسية",
  "Per km": "لكل كم",
  "Per minute": "لكل دقيقة",
  "Minimum fare": "أدنى أجرة",
  "Booking fee": "رسم الحجز",
  "Cancellation fee": "رسم الإلغاء",
  "Waiting, per minute": "الانتظار، لكل دقيقة",
  "Free waiting (seconds)": "الانتظار المجاني (ثوانٍ)",
  "Commission (bps, 10000 = 100 %)": "العمولة (نقاط أساس، 10000 = 100 %)",
  "Amounts in major units ({cur}).": "المبالغ بالوحدات الكبرى ({cur}).",
  "Create zone…": "إنشاء المنطقة…",
  "Save…": "حفظ…",
  "Create": "إنشاء",
  "Save": "حفظ",
  "Create zone {name} with {n} vertices and {c} priced categories?": "إنشاء المنطقة {name} بـ {n} رؤوس و{c} فئات مسعّرة؟",
  "Replace zone {name} with what the form shows ({n} vertices, {c} priced categories)? Fares quoted from now on use it.":
    "استبدال المنطقة {name} بما يعرضه النموذج ({n} رؤوس، {c} فئات مسعّرة)؟ تُحسب الأجرات من الآن بها.",
  "Zone {name} created.": "أُنشئت المنطقة {name}.",
  "Zone {name} saved.": "حُفظت المنطقة {name}.",
  "Fix the fields marked before saving.": "صحّح الحقول المعلّمة قبل الحفظ.",
  "At least 3 vertices are needed.": "يلزم 3 رؤوس على الأقل.",
  "Vertex {n} is outside lat −90…90, lng −180…180.": "الرأس {n} خارج النطاق: العرض −90…90، الطول −180…180.",
  "Vertices {a} and {b} are the same point.": "الرأسان {a} و{b} نقطة واحدة.",
  "The outline crosses itself (edges {a} and {b}).": "الحدود تتقاطع مع نفسها (الضلعان {a} و{b}).",
  "The vertices are on one line: the zone has no area.": "الرؤوس على خط واحد: لا مساحة للمنطقة.",
  "Line {n} is not \"lat,lng\".": "السطر {n} ليس \"خط العرض,خط الطول\".",
  "1 to 100 characters.": "من 1 إلى 100 حرف.",
  "Three capital letters (ISO 4217), e.g. EGP.": "ثلاثة أحرف كبيرة (ISO 4217)، مثل EGP.",
  "This currency's minor unit is not known to the console.": "الوحدة الصغرى لهذه العملة غير معروفة للوحة التحكم.",
  "An amount, 0 or more, with at most {d} decimals.": "مبلغ، 0 أو أكثر، بما لا يزيد عن {d} منازل عشرية.",
  "A whole number, 0 or more.": "عدد صحيح، 0 أو أكثر.",
  "A whole number from 0 to 10000.": "عدد صحيح من 0 إلى 10000.",
  "A whole number from 10000 to 100000.": "عدد صحيح من 10000 إلى 100000.",
  "Lower-case letters, digits and _ (1 to 32).": "أحرف صغيرة وأرقام و_ (من 1 إلى 32).",
  "Already priced.": "مسعّرة بالفعل.",
  "A zone prices at most 32 categories.": "تسعّر المنطقة 32 فئة على الأكثر.",
  "Price at least one category.": "سعّر فئة واحدة على الأقل.",
  "Close": "إغلاق",
});

// A category's fields: [key, English label, kind]; "money" fields are typed in major units.
const PRICE_FIELDS = [
  ["base_minor", "Base fare", "money"],
  ["per_km_minor", "Per km", "money"],
  ["per_min_minor", "Per minute", "money"],
  ["minimum_minor", "Minimum fare", "money"],
  ["booking_fee_minor", "Booking fee", "money"],
  ["cancel_fee_minor", "Cancellation fee", "money"],
  ["wait_per_min_minor", "Waiting, per minute", "money"],
  ["free_wait_s", "Free waiting (seconds)", "int"],
  ["commission_bps", "Commission (bps, 10000 = 100 %)", "bps"],
];
const NEW_PRICING = { base_minor: 0, per_km_minor: 0, per_min_minor: 0, minimum_minor: 0, booking_fee_minor: 0, cancel_fee_minor: 0, wait_per_min_minor: 0, free_wait_s: 180, commission_bps: 1500 };

let section = null;
let zones = []; // the last list
let current = null; // the zone being edited (as the API sent it), or {} for a new one
let vertices = []; // [[lat, lng], ...]: the outer ring, open
let selected = -1;
let map = null, faint = null, shape = null, markers = null, config = null;
let fieldSeq = 0;

const round6 = (x) => Math.round(x * 1e6) / 1e6;

// ---------------------------------------------------------------------------------------
// The polygon checks (pure: also what the tests drive through the page).

function segmentsCross(p1, p2, p3, p4) {
  const o = (a, b, c) => Math.sign((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]));
  const on = (a, b, c) => Math.min(a[0], b[0]) <= c[0] && c[0] <= Math.max(a[0], b[0]) && Math.min(a[1], b[1]) <= c[1] && c[1] <= Math.max(a[1], b[1]);
  const d1 = o(p3, p4, p1), d2 = o(p3, p4, p2), d3 = o(p1, p2, p3), d4 = o(p1, p2, p4);
  if (d1 !== d2 && d3 !== d4 && d1 !== 0 && d2 !== 0 && d3 !== 0 && d4 !== 0) return true;
  return (d1 === 0 && on(p3, p4, p1)) || (d2 === 0 && on(p3, p4, p2)) || (d3 === 0 && on(p1, p2, p3)) || (d4 === 0 && on(p1, p2, p4));
}

/** Why `vs` (an open ring of [lat, lng]) is not a zone outline, as [English key, vars], or null. */
export function ringProblem(vs) {
  if (vs.length < 3) return ["At least 3 vertices are needed.", {}];
  for (let i = 0; i < vs.length; i++) {
    const [lat, lng] = vs[i];
    if (!Number.isFinite(lat) || !Number.isFinite(lng) || lat < -90 || lat > 90 || lng < -180 || lng > 180) return ["Vertex {n} is outside lat −90…90, lng −180…180.", { n: i + 1 }];
  }
  const n = vs.length;
  for (let i = 0; i < n; i++) {
    const j = (i + 1) % n;
    if (vs[i][0] === vs[j][0] && vs[i][1] === vs[j][1]) return ["Vertices {a} and {b} are the same point.", { a: i + 1, b: j + 1 }];
  }
  for (let i = 0; i < n; i++) {
    for (let k = i + 1; k < n; k++) {
      if (k === i + 1 || (i === 0 && k === n - 1)) continue; // neighbours share a vertex
      if (segmentsCross(vs[i], vs[(i + 1) % n], vs[k], vs[(k + 1) % n])) return ["The outline crosses itself (edges {a} and {b}).", { a: i + 1, b: k + 1 }];
    }
  }
  let area = 0;
  for (let i = 0; i < n; i++) { const a = vs[i], b = vs[(i + 1) % n]; area += a[1] * b[0] - b[1] * a[0]; }
  if (area === 0) return ["The vertices are on one line: the zone has no area.", {}];
  return null;
}

// ---------------------------------------------------------------------------------------
// The list.

async function load() {
  const err = section.querySelector(".zones-error");
  err.textContent = "";
  try {
    await learnExponents();
    const r = await api("GET", "/v1/zones");
    zones = r?.items ?? [];
  } catch (e) { showError(err, e); return; }
  drawList();
  drawFaint();
}

const ringOf = (z) => (z.polygon?.type === "MultiPolygon" ? z.polygon.coordinates?.[0]?.[0] : z.polygon?.coordinates?.[0]) ?? [];

function drawList() {
  section.querySelector(".zones-list").replaceChildren(table(
    ["Name", "Currency", "Active", "Categories", "Vertices", "Updated"], zones,
    (z) => [z.name, z.currency, t(z.active ? "yes" : "no"), Object.keys(z.pricing ?? {}).join(", "), String(Math.max(ringOf(z).length - 1, 0)), when(z.updated_at)],
    (z) => openZone(z)));
}

// ---------------------------------------------------------------------------------------
// The editor.

function field(param, label, control, hint) {
  const id = "zone-f" + (++fieldSeq);
  control.id = id;
  control.dataset.param = param;
  const msg = h("span", { class: "field-error", id: id + "-error", role: "alert" });
  control.setAttribute("aria-describedby", msg.id);
  return h("div", { class: "field" }, h("label", { for: id, "data-i18n": label }, t(label)), control, msg, hint ?? null);
}
const textIn = (value, attrs) => h("input", { type: "text", value: value ?? "", autocomplete: "off", ...attrs });
const check = (on) => h("input", { type: "checkbox", checked: !!on });
const major = (minor, exp) => (minor == null ? "" : money(minor, "", exp).trim());

function expOfForm() {
  const cur = section.querySelector('[data-param="currency"]')?.value.trim().toUpperCase();
  if (current?.currency === cur && Number.isInteger(current.currency_exponent)) return current.currency_exponent;
  return exponentOf(cur);
}

function categoryBox(cat, p, exp) {
  const box = h("fieldset", { class: "zone-category", "data-category": cat },
    h("legend", {}, tx("span", "Category"), " ", h("span", { class: "mono" }, cat)));
  for (const [key, label, kind] of PRICE_FIELDS) {
    const v = p?.[key];
    box.append(field("pricing." + cat + "." + key, label, textIn(kind === "money" ? major(v, exp) : String(v ?? ""), { inputmode: kind === "money" ? "decimal" : "numeric", size: 8, class: "price-" + key })));
  }
  box.append(h("div", { class: "actions" }, tx("button", "Remove category", { type: "button", class: "zone-cat-remove", onclick: () => box.remove() })));
  return box;
}

function openZone(z) {
  current = z ?? {};
  const fresh = !current.id;
  const exp = fresh ? 2 : current.currency_exponent;
  vertices = ringOf(current).map(([lng, lat]) => [lat, lng]);
  if (vertices.length > 1) { const a = vertices[0], b = vertices[vertices.length - 1]; if (a[0] === b[0] && a[1] === b[1]) vertices.pop(); }
  selected = -1;
  const box = section.querySelector(".zones-detail");
  box.hidden = false;
  section.querySelector(".zones-note").textContent = "";
  const cats = h("div", { class: "zone-categories" }, Object.entries(current.pricing ?? (fresh ? { economy: NEW_PRICING } : {})).map(([c, p]) => categoryBox(c, p, exp)));
  const newCat = textIn("", { class: "zone-newcat", size: 12, spellcheck: "false" });
  const coords = h("textarea", { class: "zone-coords", rows: 8, cols: 28, spellcheck: "false", dir: "ltr" });
  coords.addEventListener("input", () => fromText(coords.value));
  const mapBox = h("div", { class: "zones-map", tabindex: 0 });
  box.replaceChildren(h("form", { class: "zone-form", novalidate: true, onsubmit: (e) => { e.preventDefault(); save(); } },
    h("h3", {}, fresh ? tx("span", "New zone (not saved)") : [tx("span", "Zone"), " ", h("span", { class: "mono zone-id" }, current.id)]),
    alertBox("error zone-error"),
    field("name", "Name", textIn(current.name, { size: 30, maxlength: 100, class: "zone-name" })),
    field("currency", "Currency", textIn(current.currency ?? "EGP", { size: 4, maxlength: 3, class: "zone-currency", spellcheck: "false" })),
    h("fieldset", { class: "zone-area" }, tx("legend", "Area"),
      tx("p", "Click the map to add a vertex; drag a vertex to move it; click or focus a vertex and press Delete to remove it.", { class: "hint" }),
      h("div", { class: "zone-edit" },
        mapBox,
        h("div", { class: "zone-side" },
          h("label", {}, tx("span", "Vertices, one \"lat,lng\" per line"), coords),
          h("p", { class: "zone-count", role: "status" }),
          h("div", { class: "actions" },
            tx("button", "Remove last vertex", { type: "button", class: "zone-undo", onclick: () => removeVertex(vertices.length - 1) }),
            tx("button", "Remove selected vertex", { type: "button", class: "zone-remove", onclick: () => removeVertex(selected) }),
            tx("button", "Clear", { type: "button", class: "zone-clear", onclick: () => { vertices = []; selected = -1; redraw(true); } })))),
      h("p", { class: "field-error zone-poly-error", role: "alert", "data-param": "polygon" })),
    field("active", "Active (takes trips)", check(fresh || current.active)),
    field("bidding", "Bidding allowed", check(fresh || current.bidding !== false)),
    field("surge.enabled", "Surge pricing", check(current.surge?.enabled)),
    field("surge.max_bps", "Surge cap (bps, 10000 = ×1.0)", textIn(String(current.surge?.max_bps ?? 10000), { inputmode: "numeric", size: 8 })),
    field("extra_fee_minor", "Extra fee per trip", textIn(major(current.extra_fee_minor ?? 0, exp), { inputmode: "decimal", size: 8 })),
    h("fieldset", { class: "zone-pricing" }, tx("legend", "Pricing"),
      h("p", { class: "hint zone-units" }),
      cats,
      h("div", { class: "zone-addcat" }, field("newcat", "Category", newCat),
        tx("button", "Add category", { type: "button", class: "zone-cat-add", onclick: () => addCategory(newCat, cats) }))),
    h("div", { class: "actions" },
      tx("button", fresh ? "Create zone…" : "Save…", { type: "submit", class: "zone-save" }),
      tx("button", "Close", { type: "button", class: "zone-close", onclick: closeEditor }))));
  box.querySelector(".zone-currency").addEventListener("input", units);
  mountMap(mapBox);
  redraw(true);
  units();
  box.querySelector(".zone-name").focus();
}

function units() {
  const cur = section.querySelector(".zone-currency")?.value.trim().toUpperCase() || "—";
  const hint = section.querySelector(".zone-units");
  if (hint) hint.textContent = t("Amounts in major units ({cur}).", { cur });
}

function closeEditor() {
  current = null;
  const box = section.querySelector(".zones-detail");
  if (map) { map.remove(); map = null; }
  box.replaceChildren(); box.hidden = true;
}

function addCategory(input, cats) {
  const c = input.value.trim();
  clearErrors();
  if (!/^[a-z0-9_]{1,32}$/.test(c)) { markField("newcat", t("Lower-case letters, digits and _ (1 to 32).")); return; }
  if (cats.querySelector('[data-category="' + CSS.escape(c) + '"]')) { markField("newcat", t("Already priced.")); return; }
  if (cats.querySelectorAll(".zone-category").length >= 32) { markField("newcat", t("A zone prices at most 32 categories.")); return; }
  cats.append(categoryBox(c, NEW_PRICING, expOfForm() ?? 2));
  input.value = "";
}

// ---------------------------------------------------------------------------------------
// The map.

function mountMap(container) {
  if (map) { map.remove(); map = null; }
  map = L.map(container, {
    preferCanvas: true, renderer: L.canvas(), zoomAnimation: false, fadeAnimation: false, markerZoomAnimation: false,
    attributionControl: false, keyboard: true, minZoom: 2, maxZoom: 19, doubleClickZoom: false,
  });
  if (config?.tile_url) {
    L.tileLayer(config.tile_url, { maxZoom: 19, attribution: String(config.tile_attribution ?? "").replace(/[&<>"']/g, (c) => "&#" + c.charCodeAt(0) + ";") }).addTo(map);
    L.control.attribution({ prefix: false }).addTo(map);
  }
  L.control.scale({ imperial: false, position: "bottomleft" }).addTo(map);
  faint = L.layerGroup().addTo(map);
  markers = L.layerGroup().addTo(map);
  shape = null;
  container.setAttribute("role", "application");
  container.setAttribute("aria-label", t("zone editor map: click to add a vertex"));
  map.on("click", (e) => {
    vertices.push([round6(e.latlng.lat), round6(e.latlng.lng)]);
    selected = vertices.length - 1;
    redraw(true);
  });
  new ResizeObserver(() => { if (map && container.clientWidth > 0) map.invalidateSize({ pan: false }); }).observe(container);
  drawFaint();
  fit();
  window.__zoneMap = {
    point: (lat, lng) => { const p = map.latLngToContainerPoint([lat, lng]); return [p.x, p.y]; },
    latlng: (x, y) => { const ll = map.containerPointToLatLng([x, y]); return [ll.lat, ll.lng]; },
    view: (lat, lng, z) => { map.setView([lat, lng], z, { animate: false }); return true; },
    vertices: () => vertices.map((v) => v.slice()),
    problem: (vs) => ringProblem(vs)?.[0] ?? null, // the page's checks, for the model test
  };
}

function fit() {
  let b = null;
  const add = (lat, lng) => { b = b ? b.extend([lat, lng]) : L.latLngBounds([lat, lng], [lat, lng]); };
  if (vertices.length) vertices.forEach(([lat, lng]) => add(lat, lng));
  else for (const z of zones) for (const [lng, lat] of ringOf(z)) add(lat, lng);
  if (b) map.fitBounds(b.pad(0.15), { animate: false });
  else map.fitWorld({ animate: false });
}

function drawFaint() {
  if (!map || !faint) return;
  faint.clearLayers();
  for (const z of zones) {
    if (current?.id && z.id === current.id) continue;
    const rings = ringOf(z).map(([lng, lat]) => [lat, lng]);
    if (rings.length) L.polygon(rings, { color: "#889", weight: 1, dashArray: "4 4", fillColor: "#aab", fillOpacity: 0.08, interactive: false }).addTo(faint);
  }
}

const vertexIcon = (i) => L.divIcon({ className: "zone-vertex" + (i === selected ? " selected" : ""), iconSize: [16, 16] });

// Redraws the outline and the markers; `text`: rewrite the text area too (not while typing in it).
function redraw(text) {
  if (!map) return;
  if (shape) { shape.remove(); shape = null; }
  if (vertices.length >= 2) {
    const bad = !!ringProblem(vertices);
    shape = (vertices.length >= 3 ? L.polygon(vertices, { color: bad ? "#b00" : "#1c5fc4", weight: 2, fillOpacity: 0.15, interactive: false })
      : L.polyline(vertices, { color: "#1c5fc4", weight: 2, interactive: false })).addTo(map);
  }
  markers.clearLayers();
  vertices.forEach((v, i) => {
    const m = L.marker(v, { icon: vertexIcon(i), draggable: true, keyboard: true, title: t("vertex {n}", { n: i + 1 }) + ": " + v[0] + ", " + v[1] });
    m.on("click", () => { selected = i; redraw(false); focusVertex(i); });
    m.on("dragend", () => { const ll = m.getLatLng(); vertices[i] = [round6(ll.lat), round6(ll.lng)]; selected = i; redraw(true); });
    m.addTo(markers);
    const e = m.getElement();
    if (e) {
      e.setAttribute("aria-label", t("vertex {n}", { n: i + 1 }) + ": " + v[0] + ", " + v[1]);
      e.dataset.index = String(i);
      e.addEventListener("focus", () => {
        selected = i;
        for (const o of section.querySelectorAll(".zones-map .zone-vertex.selected")) o.classList.remove("selected");
        e.classList.add("selected");
      });
      e.addEventListener("keydown", (ev) => { if (ev.key === "Delete" || ev.key === "Backspace") { ev.preventDefault(); ev.stopPropagation(); removeVertex(i); } });
    }
  });
  const box = section.querySelector(".zones-detail");
  if (text) box.querySelector(".zone-coords").value = vertices.map(([lat, lng]) => lat + "," + lng).join("\n");
  box.querySelector(".zone-count").textContent = t("{n} vertices", { n: vertices.length });
  box.querySelector(".zones-map").dataset.vertices = String(vertices.length);
}

function removeVertex(i) {
  if (i < 0 || i >= vertices.length) return;
  vertices.splice(i, 1);
  selected = Math.min(i, vertices.length - 1);
  redraw(true);
  focusVertex(selected);
}

const focusVertex = (i) => section.querySelector('.zones-map .zone-vertex[data-index="' + i + '"]')?.focus();

// The text area, typed: every line "lat,lng" (blank lines skipped) becomes the ring.
function fromText(text) {
  const err = section.querySelector(".zone-poly-error");
  const vs = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (!line) continue;
    const m = /^(-?\d+(?:\.\d+)?)\s*[,\s]\s*(-?\d+(?:\.\d+)?)$/.exec(line);
    if (!m) { err.textContent = t("Line {n} is not \"lat,lng\".", { n: i + 1 }); return; }
    vs.push([Number(m[1]), Number(m[2])]);
  }
  err.textContent = "";
  vertices = vs;
  selected = -1;
  redraw(false);
}

// ---------------------------------------------------------------------------------------
// Saving.

function clearErrors() {
  for (const m of section.querySelectorAll(".zones-detail .field-error")) m.textContent = "";
  for (const c of section.querySelectorAll(".zones-detail [aria-invalid]")) c.removeAttribute("aria-invalid");
  const e = section.querySelector(".zone-error"); if (e) e.textContent = "";
}

function markField(param, message) {
  if (param === "polygon" || param.startsWith("polygon.")) { section.querySelector(".zone-poly-error").textContent = message; return true; }
  const control = section.querySelector('.zones-detail [data-param="' + CSS.escape(param) + '"]');
  if (!control) return false;
  control.setAttribute("aria-invalid", "true");
  document.getElementById(control.id + "-error").textContent = message;
  return true;
}

// An amount typed in major units as minor units (0 allowed), or null.
function amount(text, exp) {
  const s = String(text ?? "").trim();
  if (/^0*(\.0*)?$/.test(s.replace(/[,\s]/g, "")) && /\d/.test(s)) return 0;
  return parseMajor(s, exp);
}
const whole = (text) => (/^\d{1,9}$/.test(String(text).trim()) ? Number(String(text).trim()) : null);

/** The spec the form describes, or null (the fields at fault marked). */
function readForm() {
  clearErrors();
  const box = section.querySelector(".zones-detail");
  const val = (p) => box.querySelector('[data-param="' + p + '"]');
  let bad = false;
  const fail = (p, key, vars) => { markField(p, t(key, vars)); bad = true; };
  const name = val("name").value.trim();
  const chars = [...name].length; // the API counts characters, not UTF-16 units
  if (chars < 1 || chars > 100 || /\p{Cc}/u.test(name)) fail("name", "1 to 100 characters.");
  const currency = val("currency").value.trim().toUpperCase();
  let exp = null;
  if (!/^[A-Z]{3}$/.test(currency)) fail("currency", "Three capital letters (ISO 4217), e.g. EGP.");
  else {
    exp = currency === current.currency && Number.isInteger(current.currency_exponent) ? current.currency_exponent : exponentOf(currency);
    if (!Number.isInteger(exp)) fail("currency", "This currency's minor unit is not known to the console.");
  }
  const moneyOf = (p) => {
    if (!Number.isInteger(exp)) return null;
    const v = amount(val(p).value, exp);
    if (v == null) fail(p, "An amount, 0 or more, with at most {d} decimals.", { d: exp });
    return v;
  };
  const maxBps = whole(val("surge.max_bps").value);
  if (maxBps == null || maxBps < 10000 || maxBps > 100000) fail("surge.max_bps", "A whole number from 10000 to 100000.");
  const extra = moneyOf("extra_fee_minor");
  const pricing = {};
  const cats = [...box.querySelectorAll(".zone-category")];
  if (!cats.length) { markField("newcat", t("Price at least one category.")); bad = true; }
  for (const fs of cats) {
    const cat = fs.dataset.category;
    const p = { ...(current.pricing?.[cat] ?? {}) };
    for (const [key, , kind] of PRICE_FIELDS) {
      const param = "pricing." + cat + "." + key;
      if (kind === "money") { p[key] = moneyOf(param); continue; }
      const n = whole(val(param).value);
      if (n == null) fail(param, "A whole number, 0 or more.");
      else if (kind === "bps" && n > 10000) fail(param, "A whole number from 0 to 10000.");
      p[key] = n;
    }
    pricing[cat] = p;
  }
  const problem = ringProblem(vertices);
  if (problem) { markField("polygon", t(problem[0], problem[1])); bad = true; }
  if (bad) { box.querySelector(".zone-error").textContent = t("Fix the fields marked before saving."); return null; }
  const ring = vertices.map(([lat, lng]) => [lng, lat]);
  ring.push(ring[0].slice());
  let polygon;
  if (current.polygon?.type === "MultiPolygon") polygon = { type: "MultiPolygon", coordinates: [[ring, ...(current.polygon.coordinates[0] ?? []).slice(1)], ...current.polygon.coordinates.slice(1)] };
  else polygon = { type: "Polygon", coordinates: [ring, ...(current.polygon?.coordinates ?? []).slice(1)] };
  return {
    name, currency, active: val("active").checked, bidding: val("bidding").checked, polygon, pricing,
    surge: { enabled: val("surge.enabled").checked, max_bps: maxBps }, extra_fee_minor: extra,
  };
}

async function save() {
  const note = section.querySelector(".zones-note");
  note.textContent = "";
  const body = readForm();
  if (!body) return;
  const fresh = !current.id;
  const vars = { name: body.name, n: vertices.length, c: Object.keys(body.pricing).length };
  const ok = await confirmDialog({
    text: fresh ? t("Create zone {name} with {n} vertices and {c} priced categories?", vars)
      : t("Replace zone {name} with what the form shows ({n} vertices, {c} priced categories)? Fares quoted from now on use it.", vars),
    okLabel: fresh ? "Create" : "Save",
  });
  if (!ok) return;
  note.textContent = "";
  const err = section.querySelector(".zone-error");
  let saved;
  try {
    saved = (await act(fresh ? "POST" : "PUT", fresh ? "/v1/admin/zones" : "/v1/admin/zones/" + encodeURIComponent(current.id), body)).json;
  } catch (e) {
    showError(err, e);
    let param = e?.param;
    const m = /^(pricing\.[a-z0-9_]+): ([a-z_]+)/.exec(e?.message?.replace(/^[a-z_]+: /, "") ?? "");
    if (!param && m) param = m[1] + "." + m[2];
    if (!param && /polygon|ring|self-intersect/i.test(e?.message ?? "")) param = "polygon";
    if (param) markField(param, e.message);
    return;
  }
  await load();
  openZone(saved);
  section.querySelector(".zones-note").textContent = t(fresh ? "Zone {name} created." : "Zone {name} saved.", { name: saved.name });
}

register({
  id: "zones",
  label: "Zones",
  async mount(s) {
    section = s;
    if (!document.querySelector('link[href="/console/pages/zones.css"]')) document.head.append(h("link", { rel: "stylesheet", href: "/console/pages/zones.css" }));
    s.append(h("div", { class: "toolbar" }, tx("h2", "Zones"),
      tx("button", "New zone", { type: "button", class: "zones-new", onclick: () => openZone(null) })),
    alertBox("error zones-error"), h("div", { class: "zones-list" }),
    h("p", { class: "zones-note", role: "status" }),
    h("article", { class: "detail zones-detail", hidden: true }));
    try {
      const r = await fetch("/console/config.json", { cache: "no-cache" });
      if (r.ok) config = await r.json();
    } catch (_) { /* the offline map */ }
  },
  show() {
    load();
    // A new language: what carries numbers is written again (the rest follows data-i18n).
    if (map && current) { section.querySelector(".zones-map").setAttribute("aria-label", t("zone editor map: click to add a vertex")); redraw(false); units(); }
  },
  reset() {
    zones = []; section?.querySelector(".zones-list")?.replaceChildren();
    if (section?.querySelector(".zones-detail")) closeEditor();
  },
});
