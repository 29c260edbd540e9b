// Notifications and webhooks (API.md "Notifications and outbound webhooks"): the
// notifications' outbox by status and user, paged; the webhook endpoints, and an
// endpoint's deliveries, paged, with "resend" on each (confirmed, through `act()`).

import { act, api } from "../lib/api.js";
import { h } from "../lib/dom.js";
import { when } from "../lib/format.js";
import { strings, t } from "../lib/i18n.js";
import { register } from "../lib/pages.js";
import { alertBox, confirmDialog, labelled, Pager, select, showError, table, tx } from "./office-kit.js";

strings("ar", {
  "Outbox": "صندوق الصادر",
  "Notifications": "الإشعارات",
  "Webhook endpoints": "نقاط نهاية الويب هوك",
  "Deliveries to {url}": "التسليمات إلى {url}",
  "pending": "قيد الانتظار", "sent": "أُرسل", "failed": "فشل", "delivered": "سُلّم",
  "push": "إشعار فوري", "sms": "رسالة نصية", "email": "بريد إلكتروني",
  "User id": "معرّف المستخدم", "Filter": "تصفية",
  "Created": "أُنشئ", "User": "المستخدم", "Channel": "القناة", "Kind": "النوع", "Status": "الحالة",
  "Attempts": "المحاولات", "Last error": "آخر خطأ", "URL": "العنوان", "Events": "الأحداث",
  "Description": "الوصف", "Event": "الحدث", "Type": "النوع", "Last answer": "آخر رد",
  "Next attempt": "المحاولة التالية", "Actions": "الإجراءات",
  "Deliveries": "التسليمات", "Resend…": "إعادة الإرسال…", "Resend": "إعادة الإرسال",
  "Send event {event} to {url} again?": "إرسال الحدث {event} إلى {url} مجددًا؟",
  "Event {event} queued to be sent again.": "أُدرج الحدث {event} لإعادة الإرسال.",
});

let section = null;
let notes = null;
let deliveries = null;
let endpoint = null;

async function loadNotes(q) {
  const err = section.querySelector(".notes-error");
  err.textContent = "";
  const status = section.querySelector(".notes-status").value;
  const user = section.querySelector(".notes-user").value.trim();
  if (status) q.set("status", status);
  if (user) q.set("user_id", user);
  try { return await api("GET", "/v1/admin/notifications?" + q); } catch (e) { showError(err, e); return null; }
}

function drawNotes(items) {
  section.querySelector(".notes-list").replaceChildren(table(
    ["Created", "User", "Channel", "Kind", "Status", "Attempts", "Last error"], items,
    (n) => [when(n.created_at), h("span", { class: "mono" }, n.user_id ?? "—"), t(n.channel), n.kind, t(n.status), String(n.attempts), n.last_error ?? ""]));
}

async function loadEndpoints() {
  const err = section.querySelector(".hooks-error");
  err.textContent = "";
  let list;
  try { list = await api("GET", "/v1/admin/webhook-endpoints"); } catch (e) { showError(err, e); return; }
  section.querySelector(".hooks-list").replaceChildren(table(
    ["URL", "Events", "Description", "Created"], list.items ?? [],
    (w) => [w.url, (w.events ?? []).join(", "), w.description ?? "", when(w.created_at)],
    (w) => { endpoint = w; deliveries.first(); }));
  if (endpoint && !(list.items ?? []).some((w) => w.id === endpoint.id)) endpoint = null;
  if (endpoint) deliveries.reload(); else section.querySelector(".deliveries").hidden = true;
}

async function loadDeliveries(q) {
  const err = section.querySelector(".deliveries-error");
  err.textContent = "";
  if (!endpoint) return null;
  try { return await api("GET", "/v1/admin/webhook-endpoints/" + encodeURIComponent(endpoint.id) + "/deliveries?" + q); } catch (e) { showError(err, e); return null; }
}

function drawDeliveries(items) {
  const box = section.querySelector(".deliveries");
  box.hidden = false;
  box.querySelector("h3").textContent = t("Deliveries to {url}", { url: endpoint.url });
  box.querySelector(".deliveries-list").replaceChildren(table(
    ["Event", "Type", "Status", "Attempts", "Last answer", "Next attempt", "Actions"], items,
    (d) => [h("span", { class: "mono" }, d.event_id), d.type, t(d.status), String(d.attempts),
      d.last_status_code != null ? String(d.last_status_code) : (d.last_error ?? ""),
      d.next_attempt_at ? when(d.next_attempt_at) : "—",
      // A pending delivery is still being tried by the server: the API refuses to resend it.
      d.status === "pending" ? "" : h("button", { type: "button", class: "delivery-resend", "aria-label": t("Resend") + " " + d.event_id, onclick: () => resend(d) }, t("Resend…"))]));
}

async function resend(d) {
  const ep = endpoint;
  const ok = await confirmDialog({ text: t("Send event {event} to {url} again?", { event: d.event_id, url: ep.url }), okLabel: "Resend" });
  if (!ok) return;
  const err = section.querySelector(".deliveries-error");
  const note = section.querySelector(".deliveries-note");
  err.textContent = ""; note.textContent = "";
  try {
    await act("POST", "/v1/admin/webhook-endpoints/" + encodeURIComponent(ep.id) + "/deliveries/" + encodeURIComponent(d.event_id) + "/resend", {});
    note.textContent = t("Event {event} queued to be sent again.", { event: d.event_id });
  } catch (e) { showError(err, e); return; }
  deliveries.reload();
}

register({
  id: "outbox",
  label: "Outbox",
  mount(s) {
    section = s;
    notes = new Pager("notes", loadNotes, drawNotes);
    deliveries = new Pager("deliveries", loadDeliveries, drawDeliveries);
    const status = select(["pending", "sent", "failed"]);
    status.classList.add("notes-status");
    status.addEventListener("change", () => notes.first());
    const form = h("form", { class: "toolbar", role: "search" }, tx("h2", "Notifications"), labelled("Status", status),
      labelled("User id", h("input", { class: "notes-user", type: "search", size: 20, maxlength: 40, autocomplete: "off", placeholder: "usr_…" })),
      tx("button", "Filter", { type: "submit" }), notes.el);
    form.addEventListener("submit", (e) => { e.preventDefault(); notes.first(); });
    s.append(form, alertBox("error notes-error"), h("div", { class: "notes-list" }),
      tx("h2", "Webhook endpoints"), alertBox("error hooks-error"), h("div", { class: "hooks-list" }),
      h("section", { class: "deliveries", hidden: true },
        h("div", { class: "toolbar" }, h("h3", {}), deliveries.el),
        alertBox("error deliveries-error"), h("p", { class: "deliveries-note", role: "status" }), h("div", { class: "deliveries-list" })));
  },
  show() { notes.reload(); loadEndpoints(); },
  reset() {
    endpoint = null; notes?.reset(); deliveries?.reset();
    for (const c of [".notes-list", ".hooks-list", ".deliveries-list"]) section?.querySelector(c)?.replaceChildren();
    const d = section?.querySelector(".deliveries"); if (d) d.hidden = true;
  },
});
