// Payouts (API.md "Earnings and payouts"): drivers' payout requests by status, paged;
// approve (sent through the payment gateway) or reject (the held amount returns), each
// confirmed. Amounts are integer minor units shown with money().

import { act, api } from "../lib/api.js";
import { h } from "../lib/dom.js";
import { money, when } from "../lib/format.js";
import { strings, t } from "../lib/i18n.js";
import { register } from "../lib/pages.js";
import { alertBox, confirmDialog, exponentOf, forgetExponents, labelled, learnExponents, Pager, select, showError, table, tx } from "./office-kit.js";

strings("ar", {
  "Payouts": "المدفوعات للسائقين",
  "Driver payouts": "مدفوعات السائقين",
  "requested": "مطلوب", "processing": "قيد التنفيذ", "paid": "مدفوع", "failed": "فشل", "rejected": "مرفوض",
  "Payout": "الدفعة", "Driver": "السائق", "Amount": "المبلغ", "Status": "الحالة", "Requested": "طُلب",
  "Reason": "السبب", "Actions": "الإجراءات",
  "Approve…": "قبول…", "Reject…": "رفض…", "Approve": "قبول", "Reject": "رفض",
  "Pay {amount} to driver {driver}? It is sent through the {gateway} gateway.": "دفع {amount} للسائق {driver}؟ يُرسل عبر بوابة {gateway}.",
  "Reject the payout of {amount} to driver {driver}? The amount returns to their balance.": "رفض دفع {amount} للسائق {driver}؟ يعود المبلغ إلى رصيده.",
  "Payout {id} approved.": "قُبلت الدفعة {id}.", "Payout {id} rejected.": "رُفضت الدفعة {id}.",
});

let section = null;
let pager = null;
const amount = (p) => money(p.amount_minor, p.currency, exponentOf(p.currency));

async function loadPage(q) {
  const err = section.querySelector(".payouts-error");
  err.textContent = "";
  const status = section.querySelector(".payouts-status").value;
  if (status) q.set("status", status);
  try {
    await learnExponents();
    return await api("GET", "/v1/admin/payouts?" + q);
  } catch (e) { showError(err, e); return null; }
}

function drawList(items) {
  section.querySelector(".payouts-list").replaceChildren(table(
    ["Payout", "Driver", "Amount", "Status", "Requested", "Reason", "Actions"], items,
    (p) => [
      h("span", { class: "mono" }, p.id), h("span", { class: "mono" }, p.driver_id),
      h("span", { class: "amount" }, amount(p)), t(p.status), when(p.created_at), p.reason ?? "",
      p.status === "requested" ? h("span", { class: "actions" },
        h("button", { type: "button", class: "payout-approve", "aria-label": t("Approve") + " " + p.id, onclick: () => review(p, true) }, t("Approve…")),
        h("button", { type: "button", class: "payout-reject", "aria-label": t("Reject") + " " + p.id, onclick: () => review(p, false) }, t("Reject…"))) : "",
    ]));
}

async function review(p, approve) {
  const vars = { amount: amount(p), driver: p.driver_id, gateway: p.gateway };
  const ok = await confirmDialog({
    text: t(approve ? "Pay {amount} to driver {driver}? It is sent through the {gateway} gateway." : "Reject the payout of {amount} to driver {driver}? The amount returns to their balance.", vars),
    reason: approve ? "optional" : "required",
    okLabel: approve ? "Approve" : "Reject",
  });
  if (!ok) return;
  const err = section.querySelector(".payouts-error");
  const note = section.querySelector(".payouts-note");
  err.textContent = ""; note.textContent = "";
  try {
    await act("POST", "/v1/admin/payouts/" + encodeURIComponent(p.id) + "/" + (approve ? "approve" : "reject"), ok.reason ? { reason: ok.reason } : {});
    note.textContent = t(approve ? "Payout {id} approved." : "Payout {id} rejected.", { id: p.id });
  } catch (e) { showError(err, e); return; }
  pager.reload();
}

register({
  id: "payouts",
  label: "Payouts",
  mount(s) {
    section = s;
    pager = new Pager("payouts", loadPage, drawList);
    const status = select(["requested", "processing", "paid", "failed", "rejected"]);
    status.classList.add("payouts-status");
    status.value = "requested";
    status.addEventListener("change", () => pager.first());
    s.append(h("div", { class: "toolbar" }, tx("h2", "Driver payouts"), labelled("Status", status), pager.el),
      alertBox("error payouts-error"), h("p", { class: "payouts-note", role: "status" }), h("div", { class: "payouts-list" }));
  },
  show() { pager.reload(); },
  reset() { pager?.reset(); forgetExponents(); section?.querySelector(".payouts-list")?.replaceChildren(); },
});
