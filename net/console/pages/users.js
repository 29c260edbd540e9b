// Users (API.md "Back office"): search by a name prefix or the last 4+ digits of a phone
// (`GET /v1/admin/users?q=&role=&status=`), paged; a user's detail (a driver's stats);
// block / unblock with a reason; erase, confirmed by typing the user's id back.
//
// Guarantees: every change goes through a confirmation and `act()`; the API's refusals
// (staff are not blockable, an open trip delays an erasure) are shown as it words them.

import { act, api } from "../lib/api.js";
import { h } from "../lib/dom.js";
import { when } from "../lib/format.js";
import { strings, t } from "../lib/i18n.js";
import { register } from "../lib/pages.js";
import { alertBox, confirmDialog, facts, labelled, Pager, select, showError, table, tx } from "./office-kit.js";

strings("ar", {
  "Users": "المستخدمون",
  "Search": "بحث",
  "Name, or the last 4+ digits of a phone": "الاسم، أو آخر 4 أرقام أو أكثر من الهاتف",
  "Role": "الدور",
  "Status": "الحالة",
  "rider": "راكب", "driver": "سائق", "support": "دعم", "admin": "مدير",
  "active": "نشط", "blocked": "محظور", "erased": "ممسوح",
  "Name": "الاسم", "Phone": "الهاتف", "Email": "البريد الإلكتروني", "Created": "أُنشئ",
  "User": "المستخدم", "Id": "المعرّف", "Language": "اللغة", "Vehicle": "المركبة",
  "Blocked because": "سبب الحظر", "Erased at": "مُسح في",
  "Offers": "العروض", "Accepted": "المقبولة", "Declined": "المرفوضة", "Lapsed": "المنتهية",
  "Cancelled after accepting": "أُلغيت بعد القبول", "Acceptance rate": "نسبة القبول",
  "Cancel rate": "نسبة الإلغاء", "Online, last 7 days": "متصل، آخر 7 أيام", "Rating": "التقييم",
  "Block…": "حظر…", "Unblock…": "إلغاء الحظر…", "Erase…": "مسح…",
  "Block user {id}?": "حظر المستخدم {id}؟",
  "Unblock user {id}?": "إلغاء حظر المستخدم {id}؟",
  "Erase user {id}? Their name, phone, email, documents, chat and positions are removed for good; ledger entries keep the id.":
    "مسح المستخدم {id}؟ يُحذف اسمه وهاتفه وبريده ووثائقه ومحادثاته ومواقعه نهائيًا؛ تبقى قيود الدفتر بالمعرّف.",
  "Block": "حظر", "Unblock": "إلغاء الحظر", "Erase": "مسح",
  "Blocked.": "تم الحظر.", "Unblocked.": "أُلغي الحظر.", "Erased.": "تم المسح.",
  "Driver's record": "سجل السائق",
});

let section = null;
let pager = null;
let current = null;
const pct = (bps) => (bps == null ? "—" : (bps / 100).toFixed(2) + " %");
const hours = (s) => (s == null ? "—" : (s / 3600).toFixed(1) + " h");

function query() {
  const q = new URLSearchParams();
  for (const [k, sel] of [["q", ".users-q"], ["role", ".users-role"], ["status", ".users-status"]]) {
    const v = section.querySelector(sel).value.trim();
    if (v) q.set(k, v);
  }
  return q;
}

async function loadPage(q) {
  const err = section.querySelector(".users-error");
  err.textContent = "";
  for (const [k, v] of query()) q.set(k, v);
  try { return await api("GET", "/v1/admin/users?" + q); } catch (e) { showError(err, e); return null; }
}

function drawList(items) {
  section.querySelector(".users-list").replaceChildren(table(
    ["Name", "Phone", "Role", "Status", "Created"], items,
    (u) => [u.name || u.id, u.phone ?? "", t(u.role), t(u.status ?? "active"), when(u.created_at)],
    (u) => openUser(u.id)));
}

async function openUser(id) {
  const box = section.querySelector(".users-detail");
  const err = section.querySelector(".users-detail-error");
  err.textContent = "";
  try {
    current = await api("GET", "/v1/admin/users/" + encodeURIComponent(id));
  } catch (e) { showError(err, e); return; }
  drawUser(box);
}

function drawUser(box) {
  const u = current;
  if (!u) { box.replaceChildren(); box.hidden = true; return; }
  const s = u.stats;
  const v = u.vehicle;
  box.hidden = false;
  box.replaceChildren(
    h("h3", {}, t("User"), " ", h("span", { class: "mono" }, u.id)),
    facts([
      ["Id", h("span", { class: "mono user-id" }, u.id)],
      ["Name", u.name],
      ["Phone", u.phone],
      ["Email", u.email],
      ["Role", t(u.role)],
      ["Status", h("span", { class: "user-status" }, t(u.status ?? "active"))],
      u.blocked && ["Blocked because", h("span", {}, u.blocked.reason, " (", when(u.blocked.at), ")")],
      u.erased_at && ["Erased at", when(u.erased_at)],
      ["Language", u.language],
      v && ["Vehicle", [v.category, v.plate, v.make, v.model, v.color, v.year].filter((x) => x != null).join(" · ")],
      ["Created", when(u.created_at)],
    ]),
    ...(!s ? [] : [h("section", { class: "stats", "aria-label": t("Driver's record") },
      h("h4", {}, t("Driver's record")),
      facts([
        ["Offers", String(s.offers)], ["Accepted", String(s.accepted)], ["Declined", String(s.declined)],
        ["Lapsed", String(s.lapsed)], ["Cancelled after accepting", String(s.cancelled_after_accept)],
        ["Acceptance rate", pct(s.acceptance_rate_bps)], ["Cancel rate", pct(s.cancel_rate_bps)],
        ["Online, last 7 days", hours(s.online_s_7d)], ["Rating", s.rating == null ? "—" : String(s.rating)],
      ]))]),
    h("div", { class: "actions" },
      u.status === "blocked"
        ? h("button", { type: "button", class: "user-unblock", onclick: () => block(false) }, t("Unblock…"))
        : h("button", { type: "button", class: "user-block", disabled: u.status === "erased", onclick: () => block(true) }, t("Block…")),
      h("button", { type: "button", class: "user-erase danger", disabled: u.status === "erased", onclick: erase }, t("Erase…"))),
  );
}

async function block(on) {
  const u = current;
  const ok = await confirmDialog({ text: t(on ? "Block user {id}?" : "Unblock user {id}?", { id: u.id }), reason: "required", okLabel: on ? "Block" : "Unblock" });
  if (!ok) return;
  await change(u.id, on ? "block" : "unblock", { reason: ok.reason }, on ? "Blocked." : "Unblocked.");
}

async function erase() {
  const u = current;
  const text = t("Erase user {id}? Their name, phone, email, documents, chat and positions are removed for good; ledger entries keep the id.", { id: u.id });
  const ok = await confirmDialog({ text, typeBack: u.id, okLabel: "Erase" });
  if (!ok) return;
  await change(u.id, "erase", {}, "Erased.");
}

async function change(id, verb, body, done) {
  const err = section.querySelector(".users-detail-error");
  const note = section.querySelector(".users-note");
  err.textContent = ""; note.textContent = "";
  try {
    await act("POST", "/v1/admin/users/" + encodeURIComponent(id) + "/" + verb, body);
    note.textContent = t(done);
  } catch (e) { showError(err, e); return; }
  await openUser(id);
  pager.reload();
}

register({
  id: "users",
  label: "Users",
  mount(s) {
    section = s;
    pager = new Pager("users", loadPage, drawList);
    const search = h("input", { class: "users-q", type: "search", maxlength: 100, autocomplete: "off", "data-i18n-placeholder": "Name, or the last 4+ digits of a phone", placeholder: t("Name, or the last 4+ digits of a phone") });
    const form = h("form", { class: "toolbar", role: "search" },
      tx("h2", "Users"),
      labelled("Search", search),
      labelled("Role", select(["rider", "driver", "support", "admin"])),
      labelled("Status", select(["active", "blocked", "erased"])),
      tx("button", "Search", { type: "submit" }),
      pager.el);
    form.querySelectorAll("select")[0].classList.add("users-role");
    form.querySelectorAll("select")[1].classList.add("users-status");
    form.addEventListener("submit", (e) => { e.preventDefault(); pager.first(); });
    for (const sel of form.querySelectorAll(".users-role, .users-status")) sel.addEventListener("change", () => pager.first());
    s.append(form, alertBox("error users-error"), h("div", { class: "users-list" }),
      h("article", { class: "detail users-detail", hidden: true, "aria-live": "polite" }),
      alertBox("error users-detail-error"), h("p", { class: "users-note", role: "status" }));
  },
  // `#/users/<id>` (a search result's link) opens that user.
  show(arg) {
    pager.reload();
    if (arg && arg !== current?.id) openUser(decodeURIComponent(arg));
    else if (current) drawUser(section.querySelector(".users-detail"));
  },
  reset() {
    current = null; pager?.reset();
    section?.querySelector(".users-list")?.replaceChildren();
    const d = section?.querySelector(".users-detail"); if (d) { d.replaceChildren(); d.hidden = true; }
  },
});
