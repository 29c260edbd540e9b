// The console's pages beyond the static ones of index.html: each page module registers
// itself here, and the shell gives it a navigation button and a section, and shows it.
//
// A page is `{ id, label, mount(section), show(arg), reset() }`:
// - `id` names its section (`view-<id>`) and its address (`#/<id>/<arg>`);
// - `label` is its English name (translated with t());
// - `mount(section)` builds its DOM once, after sign-in of the first session;
// - `show(arg)` loads what it shows each time it is opened (`arg`: the part of the address
//   after its id, or "");
// - `reset()` forgets everything it showed (sign-out: the next operator starts clean).
// `nav: false` keeps a page out of the navigation (reached by links, e.g. a trip page).

const pages = [];

export function register(page) {
  if (pages.some((p) => p.id === page.id)) throw new Error("page " + page.id + " registered twice");
  pages.push({ nav: true, reset() {}, ...page });
}

export const registered = () => pages;
export const find = (id) => pages.find((p) => p.id === id);
