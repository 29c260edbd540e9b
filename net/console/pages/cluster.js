// Cluster status (API.md "Cluster"): this node's role, the leader, how far it has applied
// the log. A standalone node has no cluster (`GET /v1/cluster` is 404): it says so.

import { api, ApiError, Stale } from "../lib/api.js";
import { h } from "../lib/dom.js";
import { strings, t } from "../lib/i18n.js";
import { register } from "../lib/pages.js";

strings("ar", {
  "Cluster status": "حالة العنقود",
  "This node": "هذه العقدة",
  "Role": "الدور",
  "Leader": "القائد",
  "Applied up to": "مطبّق حتى",
  "Stream's last record": "آخر سجل في التدفق",
  "Lag": "التأخر",
  "leader": "قائد",
  "follower": "تابع",
  "none (an election is under way)": "لا أحد (الانتخاب جارٍ)",
  "This node runs alone: no cluster is configured.": "تعمل هذه العقدة وحدها: لا عنقود مُعدّ.",
  "Refresh": "تحديث",
});

let section = null;

function row(label, value, key) {
  return [h("dt", { text: t(label) }), h("dd", { dataset: { key } }, value)];
}

async function load() {
  const out = section.querySelector(".cluster-body");
  const err = section.querySelector(".error");
  err.textContent = "";
  try {
    const c = await api("GET", "/v1/cluster");
    out.replaceChildren(h("dl", { class: "facts" },
      row("This node", c.node_id, "node_id"),
      row("Role", t(c.role), "role"),
      row("Leader", c.leader ? c.leader.node_id + " (" + c.leader.url + ")" : t("none (an election is under way)"), "leader"),
      row("Applied up to", String(c.applied_lsn), "applied_lsn"),
      row("Stream's last record", String(c.stream_last_lsn), "stream_last_lsn"),
      row("Lag", c.lag_ms + " ms", "lag_ms"),
    ));
  } catch (e) {
    if (e instanceof Stale) return;
    if (e instanceof ApiError && e.status === 404) {
      out.replaceChildren(h("p", { class: "standalone", text: t("This node runs alone: no cluster is configured.") }));
    } else err.textContent = e.message;
  }
}

register({
  id: "cluster",
  label: "Cluster",
  mount(s) {
    section = s;
    s.append(
      h("div", { class: "toolbar" },
        h("h2", { text: t("Cluster status"), "data-i18n": "Cluster status" }),
        h("button", { type: "button", onclick: load, "data-i18n": "Refresh", text: t("Refresh") })),
      h("p", { class: "error", role: "alert" }),
      h("div", { class: "cluster-body", "aria-live": "polite" }),
    );
  },
  show: load,
  reset() { section?.querySelector(".cluster-body")?.replaceChildren(); },
});
