// Settings (API.md "Back office": `GET`/`PATCH /v1/admin/settings`): a form for the
// dispatch settings and each zone's (bidding, surge, matching mode), checked before sending, sent as
// the changed fields only after a confirmation listing them; applied at once by the API.
//
// Guarantees: a field the page finds wrong is not sent (its message beside it); the
// API's `400` names a field (`param`, e.g. `dispatch.offers_per_round`,
// `zones.<id>.surge.max_bps`) and its message is shown beside that field.

import { act, api } from "../lib/api.js";
import { h } from "../lib/dom.js";
import { strings, t } from "../lib/i18n.js";
import { register } from "../lib/pages.js";
import { alertBox, confirmDialog, showError, tx } from "./office-kit.js";

strings("ar", {
  "Settings": "الإعدادات",
  "Dispatch": "التوزيع",
  "Zones": "المناطق",
  "Offers per round": "العروض في كل جولة",
  "Offer lifetime (s)": "مدة صلاحية العرض (ث)",
  "Search timeout (s)": "مهلة البحث (ث)",
  "Search radius (m)": "نصف قطر البحث (م)",
  "Position too old after (s)": "عمر الموقع القديم (ث)",
  "Scheduled trips: search lead (s)": "مهلة الحجز المسبق (ث)",
  "Matching mode": "نمط المطابقة",
  "the city's": "نمط المدينة",
  "Batch window (ms)": "نافذة الدفعة (مللي ث)",
  "Learning: acceptance weight (%)": "وزن القبول في التعلّم (%)",
  "Learning: idle-time weight (%)": "وزن الخمول في التعلّم (%)",
  "greedy": "جشع", "batched": "دفعات",
  "Bidding": "المزايدة", "Surge pricing": "تسعير الذروة", "Surge cap (bps)": "حد الذروة (نقاط أساس)",
  "Save…": "حفظ…", "Save": "حفظ", "Reload": "إعادة التحميل",
  "Apply these changes at once?": "تطبيق هذه التغييرات فورًا؟",
  "Nothing changed.": "لم يتغير شيء.",
  "Saved: applied at once.": "حُفظ: طُبّق فورًا.",
  "a whole number, 0 or more": "عدد صحيح، 0 أو أكثر",
  "a whole number, 1 or more": "عدد صحيح، 1 أو أكثر",
  "a whole number from 0 to 100": "عدد صحيح من 0 إلى 100",
  "Some fields need fixing: see beside them.": "بعض الحقول تحتاج إلى تصحيح: انظر بجانبها.",
  "on": "مفعّل", "off": "معطّل",
});

// The dispatch settings' names, in English (API.md names them in the `param` of a 400).
const LABELS = {
  offers_per_round: "Offers per round",
  offer_ttl_s: "Offer lifetime (s)",
  timeout_s: "Search timeout (s)",
  search_radius_m: "Search radius (m)",
  stale_location_s: "Position too old after (s)",
  schedule_lead_s: "Scheduled trips: search lead (s)",
  mode: "Matching mode",
  batch_window_ms: "Batch window (ms)",
  learning_acceptance_pct: "Learning: acceptance weight (%)",
  learning_idle_pct: "Learning: idle-time weight (%)",
};
let section = null;
let loaded = null;
let zoneNames = {};

// A field: its control, the message slot beside it, and `param` (the API's name for it).
function field(param, label, control) {
  const id = "set-" + param.replace(/[^a-z0-9_]/gi, "-");
  control.id = id;
  control.dataset.param = param;
  const msg = h("span", { class: "field-error", id: id + "-error", role: "alert" });
  control.setAttribute("aria-describedby", msg.id);
  return h("div", { class: "field" }, h("label", { for: id }, label), control, msg);
}

function numberInput(value) {
  return h("input", { type: "text", inputmode: "numeric", value: String(value ?? ""), size: 8, autocomplete: "off" });
}

function draw() {
  const form = section.querySelector(".settings-form");
  const s = loaded;
  if (!s) { form.replaceChildren(); return; }
  const d = s.dispatch ?? {};
  const dispatch = h("fieldset", {}, h("legend", {}, t("Dispatch")));
  for (const [k, v] of Object.entries(d)) {
    let control;
    if (k === "mode") {
      control = h("select", {}, ["greedy", "batched"].map((m) => h("option", { value: m, selected: m === v }, t(m))));
    } else control = numberInput(v);
    dispatch.append(field("dispatch." + k, t(LABELS[k] ?? k), control));
  }
  const zones = h("fieldset", {}, h("legend", {}, t("Zones")));
  for (const [id, z] of Object.entries(s.zones ?? {})) {
    const box = h("fieldset", { class: "zone-settings" }, h("legend", {}, (zoneNames[id] ? zoneNames[id] + " · " : ""), h("span", { class: "mono" }, id)));
    box.append(
      field("zones." + id + ".bidding", t("Bidding"), h("input", { type: "checkbox", checked: !!z.bidding })),
      field("zones." + id + ".surge.enabled", t("Surge pricing"), h("input", { type: "checkbox", checked: !!z.surge?.enabled })),
      field("zones." + id + ".surge.max_bps", t("Surge cap (bps)"), numberInput(z.surge?.max_bps)),
      field("zones." + id + ".mode", t("Matching mode"),
        h("select", {}, ["city", "greedy", "batched"].map((m) => h("option", { value: m, selected: m === (z.mode ?? "city") }, t(m === "city" ? "the city's" : m))))));
    zones.append(box);
  }
  form.replaceChildren(dispatch, zones,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "settings-save" }, t("Save…")),
      h("button", { type: "button", onclick: load }, t("Reload"))));
}

// The value of a field, or an error message (English key) when it is not acceptable.
function read(param, control) {
  if (control.type === "checkbox") return { value: control.checked };
  if (control.tagName === "SELECT") return { value: control.value };
  const text = control.value.trim();
  const key = param.split(".").pop();
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) {
    return { error: key === "offers_per_round" ? "a whole number, 1 or more" : "a whole number, 0 or more" };
  }
  const n = Number(text);
  if (key === "offers_per_round" && n < 1) return { error: "a whole number, 1 or more" };
  if (key.startsWith("learning_") && n > 100) return { error: "a whole number from 0 to 100" };
  return { value: n };
}

function clearErrors() {
  for (const m of section.querySelectorAll(".field-error")) m.textContent = "";
  for (const c of section.querySelectorAll("[aria-invalid]")) c.removeAttribute("aria-invalid");
  section.querySelector(".settings-error").textContent = "";
  section.querySelector(".settings-note").textContent = "";
}

function markField(param, message) {
  const control = section.querySelector('[data-param="' + CSS.escape(param) + '"]');
  if (!control) return false;
  control.setAttribute("aria-invalid", "true");
  document.getElementById(control.id + "-error").textContent = message;
  return true;
}

// The changes between what was loaded and the form: a PATCH body and a list of lines.
function changes() {
  const body = {};
  const lines = [];
  let bad = false;
  for (const control of section.querySelectorAll(".settings-form [data-param]")) {
    const param = control.dataset.param;
    const r = read(param, control);
    if (r.error) { markField(param, t(r.error)); bad = true; continue; }
    const path = param.split(".");
    let was = loaded;
    for (const p of path) was = was?.[p];
    if (r.value === was) continue;
    let at = body;
    for (const p of path.slice(0, -1)) at = at[p] ??= {};
    at[path[path.length - 1]] = r.value;
    const show = (v) => (typeof v === "boolean" ? t(v ? "on" : "off") : String(v));
    lines.push(param + ": " + show(was) + " → " + show(r.value));
  }
  // A zone's surge is replaced whole: send both of its fields when one changed.
  for (const [id, z] of Object.entries(body.zones ?? {})) {
    if (z.surge) z.surge = { ...loaded.zones[id].surge, ...z.surge };
  }
  return { body, lines, bad };
}

async function save(e) {
  e.preventDefault();
  clearErrors();
  const { body, lines, bad } = changes();
  const err = section.querySelector(".settings-error");
  if (bad) { err.textContent = t("Some fields need fixing: see beside them."); return; }
  if (!lines.length) { section.querySelector(".settings-note").textContent = t("Nothing changed."); return; }
  const ok = await confirmDialog({ text: h("span", {}, t("Apply these changes at once?"), h("ul", {}, lines.map((l) => h("li", { class: "mono" }, l)))), okLabel: "Save" });
  if (!ok) return;
  try {
    await act("PATCH", "/v1/admin/settings", body);
    await load();
    section.querySelector(".settings-note").textContent = t("Saved: applied at once.");
  } catch (x) {
    showError(err, x);
    if (x.param) markField(x.param, x.message);
  }
}

async function load() {
  const err = section.querySelector(".settings-error");
  clearErrors();
  try {
    const [s, zones] = await Promise.all([api("GET", "/v1/admin/settings"), api("GET", "/v1/zones").catch(() => null)]);
    zoneNames = {};
    for (const z of zones?.items ?? zones ?? []) zoneNames[z.id] = z.name;
    loaded = s;
  } catch (x) { showError(err, x); return; }
  draw();
}

register({
  id: "settings",
  label: "Settings",
  mount(s) {
    section = s;
    const form = h("form", { class: "settings-form", novalidate: true });
    form.addEventListener("submit", save);
    s.append(h("div", { class: "toolbar" }, tx("h2", "Settings")),
      alertBox("error settings-error"), h("p", { class: "settings-note", role: "status" }), form);
  },
  // Redrawn from what was loaded (a language change keeps nothing typed, but loses no saved value).
  show() { load(); },
  reset() { loaded = null; zoneNames = {}; section?.querySelector(".settings-form")?.replaceChildren(); },
});
