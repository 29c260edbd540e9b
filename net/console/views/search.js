// The header's search: one box for trips and users. A trip by its `ref` or id, users by a
// name prefix or the last 4+ digits of a phone (API.md "Back office"). Results are links:
// a trip opens its page, a user the users page (`#/users/<id>`).
//
// Guarantees: only the latest search's answers are shown; API text is set as text.

import { api, ApiError, Stale } from "../lib/api.js";
import { $, el, h } from "../lib/dom.js";
import { when, where } from "../lib/format.js";
import { t as tr } from "../lib/i18n.js";

let nav = { show() {}, userLink: (id) => el("a", id) };
/** The shell's navigation: `show(view, arg)` and `userLink(id)` (a link to a user). */
export function initSearch(shell) { nav = shell; }

let searchSeq = 0;
const TRIP_ID = /^trp_[0-9a-z]+$/i;
const TRIP_REF = /^[0-9a-z]{3}-?[0-9a-z]{3}$/i; // "7KQ-2M4" (API.md: 6 characters)
export async function search(q) {
  q = q.trim();
  const seq = ++searchSeq;
  $("search-query").textContent = "“" + q + "”";
  $("search-error").textContent = "";
  $("search-status").textContent = tr("Searching…");
  const list = $("search-results");
  list.replaceChildren();
  const found = [];
  const errors = [];
  const tryIt = async (f) => { try { await f(); } catch (e) { if (e instanceof Stale) throw e; if (!(e instanceof ApiError && e.status === 404)) errors.push(e.message); } };
  try {
    await Promise.all([
      tryIt(async () => {
        if (TRIP_ID.test(q)) { const t = await api("GET", "/v1/trips/" + encodeURIComponent(q)); found.push(["trip", t]); }
      }),
      tryIt(async () => {
        if (!TRIP_REF.test(q)) return;
        const ref = q.toUpperCase().replace(/^(...)-?(...)$/, "$1-$2");
        // A word of six letters looks like a ref: one the server says is not (400) finds nothing.
        const page = await api("GET", "/v1/admin/trips?limit=10&ref=" + encodeURIComponent(ref))
          .catch((e) => { if (e instanceof ApiError && e.status === 400) return { items: [] }; throw e; });
        for (const t of page.items ?? []) if (!found.some(([k, x]) => k === "trip" && x.id === t.id)) found.push(["trip", t]);
      }),
      tryIt(async () => {
        // A name prefix, or a phone's last digits (4 or more).
        const digits = q.replace(/[\s+()-]/g, "");
        if (/^\d+$/.test(digits) && digits.length < 4) return;
        const page = await api("GET", "/v1/admin/users?limit=20&q=" + encodeURIComponent(/^\d+$/.test(digits) ? digits : q));
        for (const u of page.items ?? []) found.push(["user", u]);
      }),
    ]);
  } catch (e) { if (e instanceof Stale) return; }
  if (seq !== searchSeq) return;
  for (const [kind, x] of found) {
    const li = el("li");
    li.dataset.kind = kind;
    li.dataset.id = x.id;
    if (kind === "trip") {
      const a = h("a", { href: "#/trips/" + encodeURIComponent(x.id) }, tr("Trip") + " " + (x.ref ?? x.id));
      a.addEventListener("click", (e) => { e.preventDefault(); nav.show("trips", x.id); });
      li.append(a, " · " + tr(x.status) + " · " + where(x.pickup) + " · ", when(x.created_at));
    } else {
      const a = nav.userLink(x.id);
      a.textContent = x.name ?? x.id;
      li.append(a, " · " + tr(x.role ?? "") + " · " + (x.phone ?? "") + " · " + x.id);
    }
    list.append(li);
  }
  $("search-error").textContent = errors.join(" · ");
  $("search-status").textContent = found.length === 0 ? tr("Nothing found.") : tr("{n} found", { n: found.length });
}

/** Forgets the results shown (sign-out); answers still on their way are dropped. */
export function resetSearch() {
  searchSeq++;
  for (const id of ["search-results", "search-query"]) $(id).replaceChildren();
  for (const id of ["search-error", "search-status"]) $(id).textContent = "";
  $("search").value = "";
}
