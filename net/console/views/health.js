// The health view: samples of `GET /v1/admin/stats` every 5 s (five minutes kept), one
// uPlot chart per series with a time axis in the operator's time zone and a value axis
// labelled with its unit.
//
// Guarantees: a rate is only drawn between two samples of the same counter (none across a
// restart); the charts follow their boxes' width; `resetHealth()` forgets every sample (sign-out).

import { api } from "../lib/api.js";
import { $, el, h } from "../lib/dom.js";
import { timeZone } from "../lib/format.js";
import { locale, t as tr } from "../lib/i18n.js";
import uPlot from "../vendor/uplot/uPlot.esm.js";

const history = []; // health samples: {at (ms), s (the stats)}
const gauge = (get) => (_, cur) => get(cur.s) ?? null;
// Per second between two samples of a cumulative counter (none across a restart).
const rate = (name) => (prev, cur) => {
  const a = prev?.s.counters?.[name], b = cur.s.counters?.[name], dt = prev ? (cur.at - prev.at) / 1000 : 0;
  return a == null || b == null || b < a || dt <= 0 ? null : (b - a) / dt;
};
// [key, name, unit of the value axis, the value of a sample]
const SERIES = [
  ["queue_depth", "queue depth", "commands", gauge((s) => s.queue_depth)], ["batch", "batch size", "commands", gauge((s) => s.last_batch)],
  ["fsync_p99", "fsync p99", "µs", gauge((s) => s.fsync_p99_us)], ["sockets", "sockets", "open sockets", gauge((s) => s.sockets_open)],
  ["offers", "offers", "per second", rate("offers_sent")], ["accepts", "accepts", "per second", rate("accepts_won")],
  ["accepts_lost", "lost accepts", "per second", rate("accepts_lost")], ["rate_limited", "rate-limited requests", "per second", rate("rate_limited")],
  ["searching", "searching trips", "trips", gauge((s) => s.trips?.searching)], ["available", "available drivers", "drivers", gauge((s) => s.drivers?.available)],
];
const HISTORY = 60; // 5 minutes at one sample per 5 s
export async function sampleHealth() {
  try {
    const s = await api("GET", "/v1/admin/stats");
    history.push({ at: Date.now(), s });
    if (history.length > HISTORY + 1) history.shift(); // one more: the first rate needs a sample before it
    if (!$("view-health").hidden) drawCharts();
  } catch (_) { /* the next sample retries */ }
}
const fmt = (v) => v == null ? "—" : Number.isInteger(v) ? String(v) : v.toFixed(2);
const plots = [];
// The charts follow their boxes' width (the window, a scrollbar appearing).
export const fitPlots = () => {
  for (const p of plots) {
    const w = Math.max(200, Math.floor(p.box.getBoundingClientRect().width));
    if (Math.abs(w - p.width) >= 1) p.setSize({ width: w, height: 150 });
  }
};
// One uPlot chart per series: a time axis in the operator's time zone (uPlot's tzDate),
// a value axis labelled with its unit, drawn again at each sample, each language and
// each change of zone. The figure keeps `data-max` and `data-last` (read by the tests).
export function drawCharts() {
  const charts = $("charts");
  while (plots.length) plots.pop().destroy();
  charts.replaceChildren();
  if ($("view-health").hidden) return;
  const samples = history.slice(-HISTORY);
  const offset = history.length - samples.length;
  const xs = samples.map((h) => h.at / 1000);
  const zone = timeZone();
  const tzDate = (ts) => uPlot.tzDate(new Date(ts * 1000), zone);
  // Five minutes at most: the ticks say the second.
  const hms = new Intl.DateTimeFormat(locale(), { timeZone: zone, hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  const compact = new Intl.NumberFormat(locale(), { notation: "compact", maximumFractionDigits: 2 });
  for (const [key, name, unit, get] of SERIES) {
    const series = samples.map((h, i) => get(i + offset > 0 ? history[i + offset - 1] : null, h));
    const known = series.filter((v) => v != null);
    const max = Math.max(0, ...known);
    const last = known.length ? known[known.length - 1] : null;
    const fig = el("figure", undefined, "chart");
    fig.dataset.series = key;
    fig.dataset.max = String(max);
    fig.dataset.last = String(last ?? "");
    const caption = el("figcaption", tr(name) + ": " + fmt(last) + (known.length ? " (" + tr("max {v}", { v: fmt(max) }) + ")" : ""));
    const box = h("div", { class: "plot", role: "img", "aria-label": tr("{name} over the last five minutes, in {unit}", { name: tr(name), unit: tr(unit) }) });
    fig.append(caption, box);
    charts.appendChild(fig);
    const width = Math.max(200, Math.floor(box.getBoundingClientRect().width || 240));
    const plot = new uPlot({
      width, height: 150, tzDate,
      legend: { show: false }, cursor: { show: false },
      scales: { x: { time: true }, y: { range: (u, lo, hi) => [0, Math.max(hi ?? 0, 1)] } },
      series: [{}, { label: tr(name), stroke: "#1c5fc4", width: 1.5, spanGaps: false }],
      axes: [
        { stroke: "#333", grid: { stroke: "#e4e4e4" }, ticks: { stroke: "#ccc" }, space: 80,
          values: (u, splits) => splits.map((v) => hms.format(new Date(v * 1000))) },
        { stroke: "#333", grid: { stroke: "#e4e4e4" }, ticks: { stroke: "#ccc" }, label: tr(unit), size: 56, labelSize: 18,
          values: (u, splits) => splits.map((v) => compact.format(v)) },
      ],
    }, [xs, series], box);
    plots.push(plot);
    plot.box = box;
    // The axes' labels as uPlot holds them (drawn on the canvas, so read here by the tests).
    fig.dataset.axes = plot.axes.map((a) => a.label ?? "").join("|");
  }
}

/** Forgets every sample and chart (sign-out: the next operator starts clean). */
export function resetHealth() {
  history.length = 0;
  while (plots.length) plots.pop().destroy();
  $("charts").replaceChildren();
}
