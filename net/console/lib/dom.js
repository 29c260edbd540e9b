// Building the page: elements made with their text set as text (never parsed as HTML),
// so nothing the API sends can become markup.

export const SVG = "http://www.w3.org/2000/svg";
export const $ = (id) => document.getElementById(id);
export const el = (tag, text, cls) => {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text ?? "";
  if (cls) e.className = cls;
  return e;
};
export const svgEl = (tag, attrs) => {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs ?? {})) e.setAttribute(k, v);
  return e;
};
export const cell = (row, text) => row.appendChild(el("td", text));

/**
 * `h("button", { type: "button", onclick: f, class: "x", "aria-label": "…" }, "text", child)`:
 * an element with attributes (`on…` functions become listeners, `class`/`text`/`hidden`
 * are properties) and children (strings become text nodes).
 */
export function h(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v == null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") e.addEventListener(k.slice(2), v);
    else if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k === "hidden") e.hidden = true;
    else if (k === "dataset") Object.assign(e.dataset, v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}
