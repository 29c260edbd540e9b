// Coupons (API.md "Zones, pricing, coupons"): the list, paged; a coupon's detail with its
// uses (`GET /v1/admin/coupons/{code}`); disable, confirmed (later bookings with it are
// `422 coupon_invalid`).

import { act, api } from "../lib/api.js";
import { h } from "../lib/dom.js";
import { money, when } from "../lib/format.js";
import { strings, t } from "../lib/i18n.js";
import { register } from "../lib/pages.js";
import { alertBox, confirmDialog, exponentOf, facts, learnExponents, Pager, showError, table, tx } from "./office-kit.js";

strings("ar", {
  "Coupons": "القسائم",
  "Code": "الرمز", "Uses": "مرات الاستخدام", "Created": "أُنشئت", "State": "الحالة",
  "active": "فعّالة", "disabled": "معطّلة",
  "Coupon": "القسيمة", "Discount": "الخصم", "Maximum discount": "أقصى خصم", "Minimum fare": "أدنى أجرة",
  "Valid from": "صالحة من", "Valid until": "صالحة حتى", "Most uses": "أقصى عدد استخدامات",
  "Most uses per rider": "أقصى استخدامات لكل راكب", "Disabled at": "عُطّلت في",
  "Disable…": "تعطيل…", "Disable": "تعطيل",
  "Disable coupon {code}? Bookings with it are refused from now on; trips already booked keep their discount.":
    "تعطيل القسيمة {code}؟ تُرفض الحجوزات بها من الآن؛ تحتفظ الرحلات المحجوزة بخصمها.",
  "Coupon {code} disabled.": "عُطّلت القسيمة {code}.",
});

let section = null;
let pager = null;
let current = null;

async function loadPage(q) {
  const err = section.querySelector(".coupons-error");
  err.textContent = "";
  try { await learnExponents(); return await api("GET", "/v1/admin/coupons?" + q); } catch (e) { showError(err, e); return null; }
}

function drawList(items) {
  section.querySelector(".coupons-list").replaceChildren(table(
    ["Code", "Uses", "State", "Created"], items,
    (c) => [c.code, String(c.uses ?? 0), t(c.disabled_at ? "disabled" : "active"), when(c.created_at)],
    (c) => openCoupon(c.code)));
}

async function openCoupon(code) {
  const err = section.querySelector(".coupons-detail-error");
  err.textContent = "";
  try { current = await api("GET", "/v1/admin/coupons/" + encodeURIComponent(code)); } catch (e) { showError(err, e); return; }
  drawCoupon();
}

function drawCoupon() {
  const box = section.querySelector(".coupons-detail");
  const c = current;
  if (!c) { box.replaceChildren(); box.hidden = true; return; }
  const m = (v) => (v == null ? null : money(v, c.currency, exponentOf(c.currency)));
  const discount = c.percent_bps != null ? (c.percent_bps / 100) + " %" : m(c.amount_minor);
  box.hidden = false;
  box.replaceChildren(
    h("h3", {}, t("Coupon"), " ", h("span", { class: "mono" }, c.code)),
    facts([
      ["Code", c.code],
      ["State", h("span", { class: "coupon-state" }, t(c.disabled_at ? "disabled" : "active"))],
      ["Uses", h("span", { class: "coupon-uses" }, String(c.uses ?? 0))],
      discount != null && ["Discount", discount],
      c.max_discount_minor != null && ["Maximum discount", m(c.max_discount_minor)],
      c.min_fare_minor != null && ["Minimum fare", m(c.min_fare_minor)],
      c.valid_from && ["Valid from", when(c.valid_from)],
      c.valid_until && ["Valid until", when(c.valid_until)],
      c.max_uses != null && ["Most uses", String(c.max_uses)],
      c.max_uses_per_rider != null && ["Most uses per rider", String(c.max_uses_per_rider)],
      ["Created", when(c.created_at)],
      c.disabled_at && ["Disabled at", when(c.disabled_at)],
    ]),
    h("div", { class: "actions" },
      h("button", { type: "button", class: "coupon-disable danger", disabled: !!c.disabled_at, onclick: disable }, t("Disable…"))),
  );
}

async function disable() {
  const c = current;
  const ok = await confirmDialog({ text: t("Disable coupon {code}? Bookings with it are refused from now on; trips already booked keep their discount.", { code: c.code }), okLabel: "Disable" });
  if (!ok) return;
  const err = section.querySelector(".coupons-detail-error");
  const note = section.querySelector(".coupons-note");
  err.textContent = ""; note.textContent = "";
  try {
    await act("POST", "/v1/admin/coupons/" + encodeURIComponent(c.code) + "/disable", {});
    note.textContent = t("Coupon {code} disabled.", { code: c.code });
  } catch (e) { showError(err, e); return; }
  await openCoupon(c.code);
  pager.reload();
}

register({
  id: "coupons",
  label: "Coupons",
  mount(s) {
    section = s;
    pager = new Pager("coupons", loadPage, drawList);
    s.append(h("div", { class: "toolbar" }, tx("h2", "Coupons"), pager.el),
      alertBox("error coupons-error"), h("div", { class: "coupons-list" }),
      alertBox("error coupons-detail-error"), h("p", { class: "coupons-note", role: "status" }),
      h("article", { class: "detail coupons-detail", hidden: true }));
  },
  show() { pager.reload(); if (current) drawCoupon(); },
  reset() {
    current = null; pager?.reset();
    section?.querySelector(".coupons-list")?.replaceChildren();
    const d = section?.querySelector(".coupons-detail"); if (d) { d.replaceChildren(); d.hidden = true; }
  },
});
