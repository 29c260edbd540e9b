// Reports (API.md "Back office": `/v1/admin/reports/revenue` and `/trips`): a date range
// (UTC days, `to` exclusive), a grouping and a zone; the rows as a table, charts drawn with
// uPlot (vendor/uplot) with labelled axes and units, and a CSV of the rows shown.
//
// Guarantees: amounts stay integer minor units in the table and the CSV, written in major
// units as text by money() (never through a float); only the charts' y values are
// numbers (a chart draws positions, not money). The CSV is built from exactly the rows
// shown, offered as a `data:` URL download (nothing is fetched again).

import { api } from "../lib/api.js";
import { h } from "../lib/dom.js";
import { money, timeZone, when } from "../lib/format.js";
import { strings, t } from "../lib/i18n.js";
import { register } from "../lib/pages.js";
import uPlot from "../vendor/uplot/uPlot.esm.js";
import { alertBox, exponentOf, labelled, learnExponents, showError, table, tx } from "./office-kit.js";

strings("ar", {
  "Reports": "التقارير", "Report": "التقرير",
  "Revenue": "الإيرادات", "Trips": "الرحلات",
  "From": "من", "To (exclusive)": "إلى (غير مشمول)", "Group by": "التجميع حسب", "Zone": "المنطقة",
  "day": "يوم", "week": "أسبوع", "month": "شهر", "all zones": "كل المناطق", "Show": "عرض",
  "Currency": "العملة",
  "Period": "الفترة", "Trips completed": "الرحلات المكتملة", "Gross": "الإجمالي", "Commission": "العمولة",
  "Discounts": "الخصومات", "Refunded": "المسترد", "Cancellation fees": "رسوم الإلغاء",
  "Requested": "المطلوبة", "Completed": "المكتملة", "Cancelled by rider": "ألغاها الراكب",
  "Cancelled by driver": "ألغاها السائق", "Expired": "المنتهية", "Match p50 (s)": "وقت المطابقة p50 (ث)",
  "Match p95 (s)": "وقت المطابقة p95 (ث)",
  "Download CSV": "تنزيل CSV",
  "Revenue per period ({cur}, major units)": "الإيرادات لكل فترة ({cur}، بالوحدات الرئيسية)",
  "Trips per period": "الرحلات لكل فترة",
  "Time to match (seconds)": "وقت المطابقة (بالثواني)",
  "Amount ({cur})": "المبلغ ({cur})", "Trips (count)": "الرحلات (العدد)", "Seconds": "الثواني",
  "Period start ({zone})": "بداية الفترة ({zone})",
  "The range is empty: \"to\" must be after \"from\".": "النطاق فارغ: يجب أن يكون \"إلى\" بعد \"من\".",
});

let section = null;
let charts = [];
let lastRows = null;

const isoDay = (d) => d.toISOString().slice(0, 10);
const major = (minor, cur) => money(minor, "", exponentOf(cur)).trim();

const REVENUE = [
  ["gross_minor", "Gross", "#1c5fc4"],
  ["commission_minor", "Commission", "#1a8a3a"],
  ["discount_minor", "Discounts", "#e08000"],
  ["refunded_minor", "Refunded", "#c00"],
  ["cancel_fees_minor", "Cancellation fees", "#7a3cc4"],
];
const TRIPS = [
  ["requested", "Requested", "#1c5fc4"],
  ["completed", "Completed", "#1a8a3a"],
  ["cancelled_by_rider", "Cancelled by rider", "#e08000"],
  ["cancelled_by_driver", "Cancelled by driver", "#c00"],
  ["expired", "Expired", "#666"],
];
const MATCH = [["match_p50_s", "Match p50 (s)", "#1c5fc4"], ["match_p95_s", "Match p95 (s)", "#c00"]];

// The x range in seconds: the form's dates (UTC days), else the rows' first and last periods.
function spanOf(rows) {
  const times = rows.map((r) => Date.parse(r.period_start) / 1000);
  const from = lastRows?.from ? Date.parse(lastRows.from + "T00:00:00Z") / 1000 : Math.min(...times) - 86400;
  const to = lastRows?.to ? Date.parse(lastRows.to + "T00:00:00Z") / 1000 : Math.max(...times) + 86400;
  return [from, to];
}

function destroyCharts() { for (const c of charts) c.destroy(); charts = []; }

// A uPlot chart of `series` ([key, label, colour]) over `rows`, y values from `y(row, key)`.
function chart(title, yLabel, rows, series, y) {
  const span = spanOf(rows);
  const holder = h("div", { class: "uplot-holder", dir: "ltr" });
  const fig = h("figure", { class: "report-chart", role: "img", "aria-label": title }, h("figcaption", {}, title), holder);
  const width = Math.max(280, Math.min(900, section.querySelector(".reports-charts").clientWidth - 20));
  const data = [rows.map((r) => Date.parse(r.period_start) / 1000), ...series.map(([k]) => rows.map((r) => y(r, k)))];
  const zone = timeZone();
  const opts = {
    width, height: 240,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), zone),
    // The x axis spans the range asked for (one period alone would otherwise be
    // stretched over years); y starts at zero.
    scales: { x: { time: true, range: () => span }, y: { range: (u, min, max) => [0, Math.max(1, max ?? 0) * 1.05] } },
    axes: [
      { label: t("Period start ({zone})", { zone }), stroke: "#333" },
      { label: yLabel, stroke: "#333", size: 60 },
    ],
    series: [{ label: t("Period") }, ...series.map(([, label, colour]) => ({ label: t(label), stroke: colour, width: 2, points: { show: true } }))],
  };
  charts.push(new uPlot(opts, data, holder));
  return fig;
}

function csvCell(v) {
  const s = String(v ?? "");
  return /[",\n\r]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
}

function csvLink(kind, header, lines, from, to) {
  const csv = [header, ...lines].map((l) => l.map(csvCell).join(",")).join("\r\n") + "\r\n";
  return h("a", { class: "button csv-download", href: "data:text/csv;charset=utf-8," + encodeURIComponent(csv), download: kind + "-" + from + "-" + to + ".csv" }, t("Download CSV"));
}

async function load() {
  const err = section.querySelector(".reports-error");
  err.textContent = "";
  const kind = section.querySelector(".reports-kind").value;
  const from = section.querySelector(".reports-from").value;
  const to = section.querySelector(".reports-to").value;
  const group = section.querySelector(".reports-group").value;
  const zone = section.querySelector(".reports-zone").value;
  if (from && to && to <= from) { err.textContent = t("The range is empty: \"to\" must be after \"from\"."); return; }
  const q = new URLSearchParams({ group });
  if (from) q.set("from", from);
  if (to) q.set("to", to);
  if (zone) q.set("zone_id", zone);
  let rows;
  try {
    await learnExponents();
    rows = (await api("GET", "/v1/admin/reports/" + kind + "?" + q)).items ?? [];
  } catch (e) { showError(err, e); return; }
  lastRows = { kind, rows, from, to };
  draw();
}

function draw() {
  destroyCharts();
  const out = section.querySelector(".reports-charts");
  const tables = section.querySelector(".reports-tables");
  out.replaceChildren(); tables.replaceChildren();
  if (!lastRows) return;
  const { kind, rows, from, to } = lastRows;
  if (kind === "revenue") {
    const currencies = [...new Set(rows.map((r) => r.currency))];
    for (const cur of currencies) {
      const mine = rows.filter((r) => r.currency === cur);
      const exp = exponentOf(cur);
      out.append(chart(t("Revenue per period ({cur}, major units)", { cur }), t("Amount ({cur})", { cur }), mine, REVENUE,
        (r, k) => (Number.isInteger(exp) ? r[k] / 10 ** exp : r[k])));
    }
    const cols = ["Period", "Currency", "Trips completed", ...REVENUE.map(([, l]) => l)];
    tables.append(table(cols, rows, (r) => [when(r.period_start, false), r.currency, String(r.trips_completed),
      ...REVENUE.map(([k]) => h("span", { class: "amount" }, money(r[k], r.currency, exponentOf(r.currency))))]));
    tables.append(csvLink("revenue", ["period_start", "currency", "trips_completed", ...REVENUE.map(([k]) => k.replace(/_minor$/, ""))],
      rows.map((r) => [r.period_start, r.currency, r.trips_completed, ...REVENUE.map(([k]) => major(r[k], r.currency))]), from, to));
  } else {
    if (rows.length) {
      out.append(chart(t("Trips per period"), t("Trips (count)"), rows, TRIPS, (r, k) => r[k]));
      out.append(chart(t("Time to match (seconds)"), t("Seconds"), rows, MATCH, (r, k) => r[k] ?? null));
    }
    const cols = ["Period", ...TRIPS.map(([, l]) => l), ...MATCH.map(([, l]) => l)];
    tables.append(table(cols, rows, (r) => [when(r.period_start, false), ...TRIPS.map(([k]) => String(r[k])), ...MATCH.map(([k]) => (r[k] == null ? "—" : String(r[k])))]));
    tables.append(csvLink("trips", ["period_start", ...TRIPS.map(([k]) => k), ...MATCH.map(([k]) => k)],
      rows.map((r) => [r.period_start, ...TRIPS.map(([k]) => r[k]), ...MATCH.map(([k]) => r[k] ?? "")]), from, to));
  }
}

async function loadZones() {
  const sel = section.querySelector(".reports-zone");
  if (sel.options.length > 1) return;
  try {
    const z = await api("GET", "/v1/zones");
    for (const zone of z?.items ?? []) sel.append(h("option", { value: zone.id }, zone.name));
  } catch (_) { /* the list works without zone names */ }
}

register({
  id: "reports",
  label: "Reports",
  mount(s) {
    section = s;
    if (!document.querySelector('link[href="/console/vendor/uplot/uPlot.min.css"]')) {
      document.head.append(h("link", { rel: "stylesheet", href: "/console/vendor/uplot/uPlot.min.css" }));
    }
    const today = new Date();
    const monthAgo = new Date(today.getTime() - 30 * 86400e3);
    const tomorrow = new Date(today.getTime() + 86400e3);
    const kind = h("select", { class: "reports-kind" }, tx("option", "Revenue", { value: "revenue" }), tx("option", "Trips", { value: "trips" }));
    const group = h("select", { class: "reports-group" }, ["day", "week", "month"].map((g) => tx("option", g, { value: g })));
    const zone = h("select", { class: "reports-zone" }, tx("option", "all zones", { value: "" }));
    const form = h("form", { class: "toolbar" }, tx("h2", "Reports"),
      labelled("Report", kind),
      labelled("From", h("input", { class: "reports-from", type: "date", value: isoDay(monthAgo) })),
      labelled("To (exclusive)", h("input", { class: "reports-to", type: "date", value: isoDay(tomorrow) })),
      labelled("Group by", group), labelled("Zone", zone),
      tx("button", "Show", { type: "submit" }));
    form.addEventListener("submit", (e) => { e.preventDefault(); load(); });
    kind.addEventListener("change", load);
    s.append(form, alertBox("error reports-error"), h("div", { class: "reports-charts" }), h("div", { class: "reports-tables" }));
  },
  show() { loadZones(); if (lastRows) draw(); else load(); },
  reset() {
    destroyCharts(); lastRows = null;
    section?.querySelector(".reports-charts")?.replaceChildren();
    section?.querySelector(".reports-tables")?.replaceChildren();
    const z = section?.querySelector(".reports-zone"); while (z && z.options.length > 1) z.remove(1);
  },
});
