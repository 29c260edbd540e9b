// Driver applications (API.md "Drivers: onboarding"): the list by status, paged; an
// application's details with its documents — images shown inline, PDFs offered as a
// download — and approve / reject with a reason.
//
// Guarantees: documents are fetched with the staff token (`fetchBlob`), never by a URL
// the browser loads by itself; an image is shown through a `data:` URL (the CSP allows
// `img-src data:`, not `blob:`) and only when its bytes are the type the API named; a PDF
// is never rendered, only downloaded.

import { act, api, fetchBlob } from "../lib/api.js";
import { h } from "../lib/dom.js";
import { when } from "../lib/format.js";
import { strings, t } from "../lib/i18n.js";
import { register } from "../lib/pages.js";
import { alertBox, confirmDialog, facts, labelled, Pager, select, showError, table, tx } from "./office-kit.js";

strings("ar", {
  "Applications": "طلبات الانضمام",
  "Driver applications": "طلبات السائقين",
  "draft": "مسودة", "submitted": "مُقدَّم", "approved": "مقبول", "rejected": "مرفوض",
  "Applicant": "المتقدّم", "Vehicle": "المركبة", "Submitted": "قُدّم", "Status": "الحالة",
  "Application": "الطلب", "Name": "الاسم", "Licence": "الرخصة", "Licence expires": "تنتهي الرخصة",
  "Missing": "الناقص", "Decision reason": "سبب القرار", "Decided": "تاريخ القرار", "Updated": "حُدّث",
  "Documents": "الوثائق",
  "license_front": "الرخصة (الوجه)", "license_back": "الرخصة (الظهر)", "id_card": "بطاقة الهوية",
  "vehicle_registration": "رخصة المركبة", "photo": "الصورة الشخصية",
  "not uploaded": "لم يُرفع",
  "Download {kind} (PDF)": "تنزيل {kind} (PDF)",
  "loading…": "جارٍ التحميل…",
  "Approve…": "قبول…", "Reject…": "رفض…", "Approve": "قبول", "Reject": "رفض",
  "Approve the application of {name}? They become a driver who can go online.": "قبول طلب {name}؟ يصبح سائقًا يمكنه الاتصال.",
  "Reject the application of {name}? They may correct it and submit again.": "رفض طلب {name}؟ يمكنه تصحيحه وتقديمه مجددًا.",
  "Approved.": "تم القبول.", "Rejected.": "تم الرفض.",
  "{kind}: the file is not the type its record names; not shown.": "{kind}: الملف ليس من النوع المسجّل؛ لم يُعرض.",
});

const KINDS = ["license_front", "license_back", "id_card", "vehicle_registration", "photo"];
let section = null;
let pager = null;
let current = null;
// Bumped at each opening: documents of an application no longer shown are not drawn.
let opening = 0;

async function loadPage(q) {
  const err = section.querySelector(".apps-error");
  err.textContent = "";
  const status = section.querySelector(".apps-status").value;
  if (status) q.set("status", status);
  try { return await api("GET", "/v1/admin/applications?" + q); } catch (e) { showError(err, e); return null; }
}

function drawList(items) {
  section.querySelector(".apps-list").replaceChildren(table(
    ["Applicant", "Vehicle", "Status", "Submitted"], items,
    (a) => [a.name || a.id, a.vehicle ? [a.vehicle.category, a.vehicle.plate].join(" · ") : "—", t(a.status), a.submitted_at ? when(a.submitted_at) : "—"],
    (a) => openApp(a.id)));
}

async function openApp(id) {
  const err = section.querySelector(".apps-detail-error");
  err.textContent = "";
  try { current = await api("GET", "/v1/admin/applications/" + encodeURIComponent(id)); } catch (e) { showError(err, e); return; }
  drawApp();
}

// Whether `bytes` begin as a file of `type` does (what the API checked at upload).
function looksLike(bytes, type) {
  const starts = (sig) => sig.every((b, i) => bytes[i] === b);
  if (type === "image/png") return starts([0x89, 0x50, 0x4e, 0x47]);
  if (type === "image/jpeg") return starts([0xff, 0xd8, 0xff]);
  if (type === "application/pdf") return starts([0x25, 0x50, 0x44, 0x46]);
  return false;
}

function dataUrl(type, bytes) {
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return "data:" + type + ";base64," + btoa(bin);
}

async function drawDocument(fig, appId, kind, doc, mine) {
  const err = section.querySelector(".apps-detail-error");
  try {
    const blob = await fetchBlob("/v1/admin/applications/" + encodeURIComponent(appId) + "/documents/" + kind);
    if (mine !== opening) return;
    const bytes = new Uint8Array(await blob.arrayBuffer());
    if (!looksLike(bytes, doc.media_type)) {
      fig.replaceChildren(h("figcaption", {}, t("{kind}: the file is not the type its record names; not shown.", { kind: t(kind) })));
      return;
    }
    const caption = h("figcaption", {}, t(kind), " · ", doc.media_type, " · ", Math.ceil(doc.size / 1024) + " KiB · ", when(doc.uploaded_at));
    if (doc.media_type === "application/pdf") {
      const link = h("a", { class: "button doc-download", href: dataUrl("application/pdf", bytes), download: appId + "-" + kind + ".pdf" },
        t("Download {kind} (PDF)", { kind: t(kind) }));
      fig.replaceChildren(link, caption);
    } else {
      fig.replaceChildren(h("img", { class: "doc-image", src: dataUrl(doc.media_type, bytes), alt: t(kind) }), caption);
    }
  } catch (e) { if (mine === opening) showError(err, e); }
}

function drawApp() {
  const box = section.querySelector(".apps-detail");
  const a = current;
  if (!a) { box.replaceChildren(); box.hidden = true; return; }
  const mine = ++opening;
  const v = a.vehicle;
  const docs = h("div", { class: "docs" });
  for (const kind of KINDS) {
    const doc = a.documents?.[kind];
    const fig = h("figure", { class: "doc", dataset: { kind } }, h("figcaption", {}, t(kind), " · ", doc ? t("loading…") : t("not uploaded")));
    docs.append(fig);
    if (doc) drawDocument(fig, a.id, kind, doc, mine);
  }
  const decidable = a.status === "submitted";
  box.hidden = false;
  box.replaceChildren(
    h("h3", {}, t("Application"), " ", h("span", { class: "mono" }, a.id)),
    facts([
      ["Name", a.name],
      ["Status", h("span", { class: "app-status" }, t(a.status))],
      v && ["Vehicle", [v.category, v.plate, v.make, v.model, v.color, v.year].filter((x) => x != null).join(" · ")],
      a.license && ["Licence", a.license.number],
      a.license && ["Licence expires", a.license.expires_on],
      a.missing?.length && ["Missing", a.missing.map((m) => t(m)).join(", ")],
      a.reason && ["Decision reason", a.reason],
      a.submitted_at && ["Submitted", when(a.submitted_at)],
      a.decided_at && ["Decided", when(a.decided_at)],
      ["Updated", when(a.updated_at)],
    ]),
    h("div", { class: "actions" },
      h("button", { type: "button", class: "app-approve", disabled: !decidable, onclick: () => decide(true) }, t("Approve…")),
      h("button", { type: "button", class: "app-reject", disabled: !decidable, onclick: () => decide(false) }, t("Reject…"))),
    h("h4", {}, t("Documents")),
    docs,
  );
}

async function decide(approve) {
  const a = current;
  const name = a.name || a.id;
  const ok = await confirmDialog({
    text: t(approve ? "Approve the application of {name}? They become a driver who can go online." : "Reject the application of {name}? They may correct it and submit again.", { name }),
    reason: approve ? "optional" : "required",
    okLabel: approve ? "Approve" : "Reject",
  });
  if (!ok) return;
  const err = section.querySelector(".apps-detail-error");
  const note = section.querySelector(".apps-note");
  err.textContent = ""; note.textContent = "";
  try {
    await act("POST", "/v1/admin/applications/" + encodeURIComponent(a.id) + "/" + (approve ? "approve" : "reject"), ok.reason ? { reason: ok.reason } : {});
    note.textContent = t(approve ? "Approved." : "Rejected.");
  } catch (e) { showError(err, e); return; }
  await openApp(a.id);
  pager.reload();
}

register({
  id: "applications",
  label: "Applications",
  mount(s) {
    section = s;
    pager = new Pager("apps", loadPage, drawList);
    const status = select(["submitted", "approved", "rejected", "draft"]);
    status.classList.add("apps-status");
    status.value = "submitted";
    status.addEventListener("change", () => pager.first());
    s.append(h("div", { class: "toolbar" }, tx("h2", "Driver applications"), labelled("Status", status), pager.el),
      alertBox("error apps-error"), h("div", { class: "apps-list" }),
      alertBox("error apps-detail-error"), h("p", { class: "apps-note", role: "status" }),
      h("article", { class: "detail apps-detail", hidden: true }));
  },
  show() { pager.reload(); if (current) drawApp(); },
  reset() {
    current = null; opening++; pager?.reset();
    section?.querySelector(".apps-list")?.replaceChildren();
    const d = section?.querySelector(".apps-detail"); if (d) { d.replaceChildren(); d.hidden = true; }
  },
});
