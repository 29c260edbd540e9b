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
  // The shell: sign-in, header, search.
  "E-mail": "البريد الإلكتروني",
  "Password": "كلمة المرور",
  "Code from your authenticator app": "الرمز من تطبيق المصادقة",
  "Or with an API token": "أو برمز واجهة برمجية",
  "Sign in with the token": "الدخول بالرمز",
  "Signing in…": "جارٍ تسجيل الدخول…",
  "Sign-in failed: {why}": "تعذّر تسجيل الدخول: {why}",
  "Wrong e-mail, password or code.": "البريد الإلكتروني أو كلمة المرور أو الرمز غير صحيح.",
  "Too many failed attempts: the account is locked for a while. Try again later.": "محاولات فاشلة كثيرة: الحساب مقفل مؤقتًا. حاول لاحقًا.",
  "API token": "رمز واجهة برمجية",
  "not allowed: {code}": "غير مسموح: {code}",
  "Views": "الصفحات",
  "Live": "مباشر",
  "Back office": "المكتب الخلفي",
  "Search": "بحث",
  "Search trips and users": "ابحث في الرحلات والمستخدمين",
  "Trip ref or id, name, phone's last digits": "مرجع الرحلة أو معرّفها، اسم، آخر أرقام الهاتف",
  "Search results": "نتائج البحث",
  "Searching…": "جارٍ البحث…",
  "Nothing found.": "لم يُعثر على شيء.",
  "{n} found": "عُثر على {n}",
  // The map's toolbar and legend.
  "Fit to drivers (f)": "ملاءمة السائقين (f)",
  "Whole zones (z)": "المناطق كاملة (z)",
  "drag/arrows: pan · wheel/+/−: zoom · Enter: open at the crosshair": "السحب/الأسهم: تحريك · العجلة/+/−: تكبير · Enter: فتح ما تحت المؤشر",
  "live map of drivers and searching trips": "خريطة حية للسائقين والرحلات الباحثة",
  "available": "متاح",
  "on a trip": "في رحلة",
  "offline": "غير متصل",
  "on_trip": "في رحلة",
  "open trip (age)": "رحلة مفتوحة (العمر)",
  // Trips and the trip page.
  "scheduled": "مجدولة",
  "searching": "تبحث عن سائق",
  "accepted": "مقبولة",
  "arrived": "وصل السائق",
  "started": "بدأت",
  "in_progress": "جارية",
  "completed": "مكتملة",
  "cancelled": "ملغاة",
  "expired": "منتهية",
  "id": "المعرّف",
  "status": "الحالة",
  "pickup": "الالتقاط",
  "drop-off": "الوجهة",
  "fare": "الأجرة",
  "created": "أُنشئت",
  "scheduled for": "مجدولة في",
  "rider": "الراكب",
  "driver": "السائق",
  "payment": "الدفع",
  "Trip": "الرحلة",
  "trip {id}": "الرحلة {id}",
  "Driver": "السائق",
  "Rider": "الراكب",
  "name": "الاسم",
  "rating": "التقييم",
  "{n} ratings": "{n} تقييمات",
  "too few ratings": "تقييمات غير كافية",
  "vehicle": "المركبة",
  "plate": "اللوحة",
  "category": "الفئة",
  "last position": "آخر موقع",
  "none yet": "لا أحد بعد",
  "Cancel trip…": "إلغاء الرحلة…",
  "Refund…": "استرداد…",
  "Cancel trip {id}? No fee is charged; open offers are withdrawn.": "إلغاء الرحلة {id}؟ لا تُفرض رسوم وتُسحب العروض المفتوحة.",
  "Refund trip {id}? Type the amount in {cur}.": "استرداد للرحلة {id}؟ اكتب المبلغ بعملة {cur}.",
  "This trip has no fare to refund.": "لا أجرة لهذه الرحلة لتُسترد.",
  "Amount": "المبلغ",
  "Amount in {cur}": "المبلغ بعملة {cur}",
  "Type a positive amount in {cur} with at most {exp} decimals, e.g. {example}.": "اكتب مبلغًا موجبًا بعملة {cur} بما لا يزيد على {exp} خانات عشرية، مثل {example}.",
  "Working…": "جارٍ التنفيذ…",
  "already cancelled by an earlier attempt": "أُلغيت في محاولة سابقة",
  "refunded {amount}": "تم استرداد {amount}",
  "this refund was already done (the server replayed its answer): {amount}": "تم هذا الاسترداد من قبل (أعاد الخادم جوابه): {amount}",
  "driver's trail": "مسار السائق",
  "the driver's trail": "مسار السائق",
  "Chat": "المحادثة",
  "Message to the rider and driver": "رسالة إلى الراكب والسائق",
  "Send": "إرسال",
  "no messages": "لا رسائل",
  "Timeline": "التسلسل الزمني",
  "by {who}": "بواسطة {who}",
  "offered": "عُرضت",
  "declined": "رُفضت",
  "lapsed": "انقضت",
  "withdrawn": "سُحبت",
  "released": "أُفرج عنها",
  "pending": "معلّق",
  "authorized": "مفوَّض",
  "captured": "محصَّل",
  "voided": "ملغى",
  "partially_refunded": "مسترد جزئيًا",
  "refunded": "مسترد",
  "failed": "فشل",
  "payment_dead_letter": "دفعة متعثرة",
  "payment_mismatch": "عدم تطابق في الدفع",
  "cash": "نقدًا",
  "card": "بطاقة",
  "wallet": "المحفظة",
  "staff": "الموظفون",
  "system": "النظام",
  "support": "الدعم",
  "admin": "المسؤول",
  "economy": "اقتصادية",
  "comfort": "مريحة",
  // Drivers.
  "Availability": "التوفر",
  "availability": "التوفر",
  "position age": "عمر الموقع",
  "suspended": "موقوف",
  "actions": "الإجراءات",
  "yes": "نعم",
  "no": "لا",
  "{n} s": "{n} ث",
  "Suspend…": "إيقاف…",
  "Unsuspend…": "إلغاء الإيقاف…",
  "Suspend driver {id}?": "إيقاف السائق {id}؟",
  "Unsuspend driver {id}?": "إلغاء إيقاف السائق {id}؟",
  // Alerts.
  "No open alerts.": "لا تنبيهات مفتوحة.",
  "Acknowledge": "إقرار",
  "raised {n} times, last": "أُطلق {n} مرات، آخرها",
  "{n} open SOS alert: see Alerts": "{n} تنبيه استغاثة مفتوح: انظر التنبيهات",
  "{n} open SOS alerts: see Alerts": "{n} تنبيهات استغاثة مفتوحة: انظر التنبيهات",
  // Health.
  "The last five minutes, a sample every 5 s; rates are per second between samples. Times in your time zone.": "آخر خمس دقائق، عينة كل 5 ث؛ المعدلات في الثانية بين العينات. الأوقات بمنطقتك الزمنية.",
  "queue depth": "عمق الطابور",
  "batch size": "حجم الدفعة",
  "fsync p99": "fsync p99",
  "sockets": "المقابس",
  "offers": "العروض",
  "accepts": "القبولات",
  "lost accepts": "قبولات فائتة",
  "rate-limited requests": "طلبات محدودة المعدل",
  "searching trips": "رحلات تبحث",
  "available drivers": "سائقون متاحون",
  "commands": "أوامر",
  "µs": "ميكروثانية",
  "open sockets": "مقابس مفتوحة",
  "per second": "في الثانية",
  "trips": "رحلات",
  "drivers": "سائقون",
  "max {v}": "الأقصى {v}",
  "minor units": "وحدات صغرى",
  "{name} over the last five minutes, in {unit}": "{name} خلال آخر خمس دقائق، بوحدة {unit}",
});
