// What the back-office pages share (issue 23, helper E): a cursor pager, the confirmation
// dialog every change goes through, error display, tables whose rows open a detail, the
// currencies' exponents, and the pages' style sheet (pages/office.css, linked once).
//
// Guarantees: a change is only sent after the operator confirmed it in a modal <dialog>
// (with a reason where the API takes one, and typing a name back where it cannot be
// undone); an error is shown as text in a role="alert" element, an answer to an earlier
// session (`Stale`) is dropped; API text only ever reaches the page as text.

import { api, ApiError, Stale } from "../lib/api.js";
import { h } from "../lib/dom.js";
import { strings, t } from "../lib/i18n.js";

strings("ar", {
  "Cancel": "إلغاء",
  "Confirm": "تأكيد",
  "Reason": "السبب",
  "Reason (optional)": "السبب (اختياري)",
  "Type {what} to confirm": "اكتب {what} للتأكيد",
  "First": "الأولى",
  "Previous": "السابقة",
  "Next page": "الصفحة التالية",
  "page {n}": "الصفحة {n}",
  "Per page": "لكل صفحة",
  "any": "أي",
  "Nothing to show.": "لا شيء لعرضه.",
  "Open": "فتح",
  "Close": "إغلاق",
  "Done.": "تم.",
  "minor units": "وحدات صغرى",
});

// The pages' own style sheet, linked once from here (no change to index.html needed).
if (!document.querySelector('link[href="/console/pages/office.css"]')) {
  document.head.append(h("link", { rel: "stylesheet", href: "/console/pages/office.css" }));
}

/** Shows `e` in `box` (a role="alert" element); answers to an old session are dropped. */
export function showError(box, e) {
  if (e instanceof Stale) return;
  box.textContent = e instanceof ApiError ? e.message : String(e?.message ?? e);
}

/** An empty role="alert" paragraph for a page's errors. */
export const alertBox = (cls = "error") => h("p", { class: cls, role: "alert" });

/** A `<select>` of `values` (value = label, translated), with "any" first when `any`. */
export function select(values, any = true) {
  const s = h("select", {});
  if (any) s.append(h("option", { value: "", "data-i18n": "any" }, t("any")));
  for (const v of values) s.append(h("option", { value: v, "data-i18n": v }, t(v)));
  return s;
}

/** Text that follows the language (lib/i18n.js `translate` redraws `data-i18n`). */
export const tx = (tag, key, attrs) => h(tag, { ...attrs, "data-i18n": key }, t(key));

/** A labelled control: `<label>Text <control></label>` (the text follows the language). */
export const labelled = (text, control) => h("label", {}, tx("span", text), " ", control);

/**
 * Cursor paging (API.md "Lists"): keeps the cursors of the pages before, so "Previous"
 * goes back exactly; only the answer to the latest load is drawn.
 * `load(query: URLSearchParams)` returns the page (`{items, next_cursor}`) or throws.
 */
export class Pager {
  constructor(name, load, draw, limits = [10, 25, 50, 100], initial = 25) {
    this.load = load; this.draw = draw; this.stack = []; this.next = null; this.seq = 0;
    this.limit = h("select", { id: name + "-limit" }, limits.map((n) => h("option", { value: n, selected: n === initial }, String(n))));
    this.limit.addEventListener("change", () => this.first());
    this.firstB = tx("button", "First", { type: "button", class: "pg-first", onclick: () => this.first() });
    this.prevB = tx("button", "Previous", { type: "button", class: "pg-prev", disabled: true, onclick: () => { this.stack.pop(); this.run(); } });
    this.nextB = tx("button", "Next page", { type: "button", class: "pg-next", disabled: true, onclick: () => { if (this.next) { this.stack.push(this.next); this.run(); } } });
    this.label = h("span", { class: "pg-n" });
    this.el = h("span", { class: "pager" }, labelled("Per page", this.limit), this.firstB, this.prevB, this.label, this.nextB);
  }
  first() { this.stack = []; return this.run(); }
  reload() { return this.run(); }
  reset() { this.stack = []; this.next = null; this.seq++; }
  async run() {
    const seq = ++this.seq;
    const q = new URLSearchParams({ limit: this.limit.value });
    const cursor = this.stack[this.stack.length - 1];
    if (cursor) q.set("cursor", cursor);
    const page = await this.load(q);
    if (seq !== this.seq || !page) return;
    this.next = page.next_cursor ?? null;
    this.nextB.disabled = !this.next;
    this.prevB.disabled = this.stack.length === 0;
    this.label.textContent = t("page {n}", { n: this.stack.length + 1 });
    this.draw(page.items ?? []);
  }
}

/**
 * A table: `cols` are English headings; `cells(item)` gives a row's cells (text or
 * nodes). With `open(item)`, the first cell is a button that opens the item.
 */
export function table(cols, items, cells, open) {
  const body = h("tbody", {});
  for (const it of items) {
    const cs = cells(it);
    const tr = h("tr", {});
    cs.forEach((c, i) => {
      const content = i === 0 && open ? h("button", { type: "button", class: "link", onclick: () => open(it) }, c) : c;
      tr.append(h("td", {}, content));
    });
    body.append(tr);
  }
  if (!items.length) body.append(h("tr", {}, h("td", { colspan: cols.length, class: "hint" }, t("Nothing to show."))));
  // Scrolled sideways on narrow screens: a focusable region, so the keyboard scrolls it too.
  return h("div", { class: "scroll", tabindex: 0, role: "region", "aria-label": cols.map((c) => t(c)).join(", ") }, h("table", {}, h("thead", {}, h("tr", {}, cols.map((c) => h("th", { scope: "col" }, t(c))))), body));
}

/** A definition list of `[English label, value]` pairs (values: text or nodes). */
export function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.filter((p) => p).flatMap(([k, v]) => [h("dt", {}, t(k)), h("dd", {}, v ?? "—")]));
}

/**
 * A modal confirmation. `reason`: "required", "optional" or absent; `typeBack`: text the
 * operator must type to enable Confirm (for what cannot be undone). Resolves to
 * `{ reason }` when confirmed, `null` when cancelled.
 */
export function confirmDialog({ text, reason, typeBack, okLabel = "Confirm" }) {
  return new Promise((resolve) => {
    const reasonIn = reason ? h("input", { class: "dlg-reason", required: reason === "required", maxlength: 500, autocomplete: "off" }) : null;
    const typed = typeBack ? h("input", { class: "dlg-typeback", autocomplete: "off", spellcheck: "false" }) : null;
    const ok = h("button", { type: "submit", class: "dlg-ok", disabled: !!typeBack }, t(okLabel));
    const back = h("button", { type: "button", class: "dlg-cancel" }, t("Cancel"));
    const form = h("form", { method: "dialog" },
      h("p", { class: "dlg-text" }, text),
      reasonIn && labelled(reason === "required" ? "Reason" : "Reason (optional)", reasonIn),
      typed && labelled(t("Type {what} to confirm", { what: typeBack }), typed),
      h("div", { class: "actions" }, back, ok));
    const d = h("dialog", { class: "office-dialog", "aria-label": t(okLabel) }, form);
    let answer = null;
    if (typed) typed.addEventListener("input", () => { ok.disabled = typed.value.trim() !== typeBack; });
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      if (typed && typed.value.trim() !== typeBack) return;
      if (reasonIn && reason === "required" && !reasonIn.value.trim()) { reasonIn.focus(); return; }
      answer = { reason: reasonIn ? reasonIn.value.trim() : "" };
      d.close();
    });
    back.addEventListener("click", () => d.close());
    d.addEventListener("close", () => { d.remove(); resolve(answer); });
    document.body.append(d);
    d.showModal();
    (reasonIn ?? typed ?? ok).focus();
  });
}

// ISO 4217 exponents of the currencies whose minor unit is not a hundredth; the zones'
// answers (`currency_exponent`) teach the rest. Lists without an exponent (payouts,
// reports) are shown with these.
const EXPONENTS = { EGP: 2, USD: 2, EUR: 2, GBP: 2, SAR: 2, AED: 2, QAR: 2, MAD: 2, NGN: 2, KES: 2, INR: 2, JPY: 0, KRW: 0, CLP: 0, ISK: 0, VND: 0, UGX: 0, XOF: 0, XAF: 0, KWD: 3, BHD: 3, OMR: 3, JOD: 3, TND: 3, LYD: 3, IQD: 3 };
const learned = {};
let zonesAsked = null;
/** Learns the exponents of the zones' currencies (once a session). */
export function learnExponents() {
  zonesAsked ??= api("GET", "/v1/zones").then((z) => {
    for (const zone of z?.items ?? z ?? []) if (zone.currency && Number.isInteger(zone.currency_exponent)) learned[zone.currency] = zone.currency_exponent;
  }).catch(() => { zonesAsked = null; });
  return zonesAsked;
}
/** The exponent of `cur`: what a zone said, or ISO 4217's; unknown: undefined (money() then says "minor units"). */
export function exponentOf(cur) {
  if (cur in learned) return learned[cur];
  return EXPONENTS[cur];
}
/** Forgets what the last session learned. */
export function forgetExponents() { zonesAsked = null; }
