// The console's languages: English (the text in the code is the key) and Arabic (read
// right to left). `t("Sign out")` is the text in the chosen language; a string with no
// translation falls back to the English, never to nothing. Pages add their own strings
// with `strings("ar", {...})`, so every page owns its translations.
//
// The language is the operator's choice (remembered on this browser: a preference, not a
// secret) or else the browser's first language we have.

const LANGS = { en: { name: "English", dir: "ltr" }, ar: { name: "العربية", dir: "rtl" } };
const dicts = { en: {}, ar: {} };
const listeners = [];
let current = "en";

/** Adds translations for `lang`: `{ "English text": "translated", ... }`. */
export function strings(lang, dict) { Object.assign(dicts[lang] ??= {}, dict); }

/** The text of `key` in the current language, with `{name}` filled from `vars`. */
export function t(key, vars) {
  const s = dicts[current]?.[key] ?? key;
  return vars ? s.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m)) : s;
}

export const lang = () => current;
export const languages = () => Object.entries(LANGS).map(([id, l]) => ({ id, name: l.name }));
/** The locale to format numbers and dates with (Latin digits in both: ids and amounts are read aloud on the phone). */
export const locale = () => (current === "ar" ? "ar-u-nu-latn" : "en-GB");

/** Called with the new language after every change (pages redraw their text). */
export function onLangChange(f) { listeners.push(f); }

/** Sets the language: the page's `lang` and `dir`, every `data-i18n` text, then the listeners. */
export function setLang(l, remember = true) {
  if (!LANGS[l]) l = "en";
  current = l;
  if (remember) { try { localStorage.setItem("dispatch.lang", l); } catch (_) { /* private mode */ } }
  document.documentElement.lang = l;
  document.documentElement.dir = LANGS[l].dir;
  translate(document);
  for (const f of listeners) f(l);
}

/**
 * Translates the static text under `root`: an element with `data-i18n` shows t(its
 * English), kept in the attribute; `data-i18n-label` does the same for `aria-label`,
 * `data-i18n-title` for `title`, `data-i18n-placeholder` for `placeholder`.
 */
export function translate(root) {
  for (const e of root.querySelectorAll("[data-i18n]")) {
    if (!e.dataset.i18n) e.dataset.i18n = e.textContent.trim();
    e.textContent = t(e.dataset.i18n);
  }
  for (const [attr, data] of [["aria-label", "i18nLabel"], ["title", "i18nTitle"], ["placeholder", "i18nPlaceholder"]]) {
    for (const e of root.querySelectorAll("[data-" + data.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase()) + "]")) {
      if (!e.dataset[data]) e.dataset[data] = e.getAttribute(attr) ?? "";
      e.setAttribute(attr, t(e.dataset[data]));
    }
  }
}

/** The language this browser asked for before, or the first of its languages we have. */
export function preferred() {
  try {
    const saved = localStorage.getItem("dispatch.lang");
    if (saved && LANGS[saved]) return saved;
  } catch (_) { /* private mode */ }
  for (const l of navigator.languages ?? [navigator.language]) {
    const base = String(l).toLowerCase().split("-")[0];
    if (LANGS[base]) return base;
  }
  return "en";
}

strings("ar", {
  "dispatch operations": "عمليات dispatch",
  "Sign in": "تسجيل الدخول",
  "Sign out": "تسجيل الخروج",
  "Staff token": "رمز الموظف",
  "Map": "الخريطة",
  "Trips": "الرحلات",
  "Drivers": "السائقون",
  "Alerts": "التنبيهات",
  "Health": "الصحة",
  "Cluster": "العنقود",
  "Language": "اللغة",
  "Time zone": "المنطقة الزمنية",
  "live": "مباشر",
  "reconnecting…": "جارٍ إعادة الاتصال…",
  "any": "أي",
  "Back": "رجوع",
  "Confirm": "تأكيد",
  "Reason": "السبب",
  "First": "الأولى",
  "Previous": "السابقة",
  "Next page": "الصفحة التالية",
  "page {n}": "الصفحة {n}",
  "Per page": "لكل صفحة",
  "Status": "الحالة",
  "Zone": "المنطقة",
  "signed out": "تم تسجيل الخروج",
  "your session has ended: sign in again": "انتهت جلستك: سجّل الدخول مجددًا",
});
