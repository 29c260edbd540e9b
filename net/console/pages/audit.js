// Audit trail (API.md "Back office": `GET /v1/admin/audit`): every staff action and
// settings change, newest first, filtered by actor, target and action, paged. Read only.

import { api } from "../lib/api.js";
import { h } from "../lib/dom.js";
import { when } from "../lib/format.js";
import { strings, t } from "../lib/i18n.js";
import { register } from "../lib/pages.js";
import { alertBox, labelled, Pager, showError, table, tx } from "./office-kit.js";

strings("ar", {
  "Audit": "سجل التدقيق",
  "Audit trail": "سجل التدقيق",
  "Actor": "المنفّذ", "Target": "الهدف", "Action": "الإجراء", "When": "الوقت",
  "Role": "الدور", "Request": "الطلب", "Details": "التفاصيل", "Filter": "تصفية", "Clear": "مسح",
  "usr_… or admin": "usr_… أو admin",
  "usr_…, trp_…, zon_… or settings": "usr_… أو trp_… أو zon_… أو settings",
  "user.block, trip.refund, settings.update…": "user.block، trip.refund، settings.update…",
});

let section = null;
let pager = null;

const FILTERS = [
  ["actor_id", "Actor", "usr_… or admin"],
  ["target_id", "Target", "usr_…, trp_…, zon_… or settings"],
  ["action", "Action", "user.block, trip.refund, settings.update…"],
];

async function loadPage(q) {
  const err = section.querySelector(".audit-error");
  err.textContent = "";
  for (const [k] of FILTERS) {
    const v = section.querySelector(".audit-" + k).value.trim();
    if (v) q.set(k, v);
  }
  try { return await api("GET", "/v1/admin/audit?" + q); } catch (e) { showError(err, e); return null; }
}

function details(d) {
  const entries = Object.entries(d ?? {});
  if (!entries.length) return "";
  return h("dl", { class: "inline" }, entries.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, typeof v === "string" ? v : JSON.stringify(v))]));
}

function drawList(items) {
  section.querySelector(".audit-list").replaceChildren(table(
    ["When", "Actor", "Role", "Action", "Target", "Details", "Request"], items,
    (a) => [when(a.at), h("span", { class: "mono" }, a.actor_id), a.actor_role, h("span", { class: "mono" }, a.action),
      h("span", { class: "mono" }, a.target_id), details(a.details), h("span", { class: "mono small" }, a.request_id)]));
}

register({
  id: "audit",
  label: "Audit",
  mount(s) {
    section = s;
    pager = new Pager("audit", loadPage, drawList, [25, 50, 100, 200], 50);
    const form = h("form", { class: "toolbar", role: "search" }, tx("h2", "Audit trail"),
      FILTERS.map(([k, label, hint]) => labelled(label, h("input", {
        class: "audit-" + k, type: "search", size: 18, maxlength: 100, autocomplete: "off",
        placeholder: t(hint), "data-i18n-placeholder": hint,
      }))),
      tx("button", "Filter", { type: "submit" }),
      tx("button", "Clear", { type: "button", onclick: () => { for (const i of form.querySelectorAll("input")) i.value = ""; pager.first(); } }),
      pager.el);
    form.addEventListener("submit", (e) => { e.preventDefault(); pager.first(); });
    s.append(form, alertBox("error audit-error"), h("div", { class: "audit-list" }));
  },
  show() { pager.reload(); },
  reset() { pager?.reset(); section?.querySelector(".audit-list")?.replaceChildren(); },
});
