// How the console writes amounts, places and times.
//
// Guarantees: money is integer minor units from the API to the screen and back (digits
// placed as text, never a float); a time is shown in the operator's time zone with the
// UTC instant on hover (`title`) and in `datetime`.

import { locale, t } from "./i18n.js";

// An amount in minor units, shown with its currency's ISO 4217 exponent (the API sends
// `currency_exponent` beside every currency: 6704 is "67.04 EGP", "6704 JPY", "6.704 KWD").
// Without an exponent, the minor units are shown as they are, said so, rather than guessed.
export function money(minor, cur, exp) {
  if (minor == null) return "";
  if (!Number.isInteger(exp) || exp < 0) return minor + " " + (cur ?? "") + " (" + t("minor units") + ")";
  let digits = String(Math.abs(minor));
  if (exp > 0) {
    digits = digits.padStart(exp + 1, "0");
    digits = digits.slice(0, -exp) + "." + digits.slice(-exp);
  }
  return (minor < 0 ? "-" : "") + digits + " " + (cur ?? "");
}

/**
 * An amount typed in major units ("12.5", "12.50", "1,200") as integer minor units for a
 * currency of exponent `exp`; `null` when it is not a positive amount with at most `exp`
 * decimals. Parsed as text, so "0.1" + "0.2" never meets binary fractions.
 */
export function parseMajor(text, exp) {
  const s = String(text ?? "").trim().replace(/[,\s]/g, "");
  const m = /^(\d+)(?:\.(\d*))?$/.exec(s);
  if (!m || !Number.isInteger(exp) || exp < 0) return null;
  const frac = m[2] ?? "";
  if (frac.length > exp) return null;
  const minor = Number(m[1] + frac.padEnd(exp, "0"));
  return Number.isSafeInteger(minor) && minor > 0 ? minor : null;
}

export const where = (p) => (p ? (p.address ?? p.lat + ", " + p.lng) : "");

let zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
try { zone = localStorage.getItem("dispatch.tz") || zone; } catch (_) { /* private mode */ }
/** The time zone times are shown in (the browser's, unless the operator chose another). */
export const timeZone = () => zone;
export function setTimeZone(z) {
  new Intl.DateTimeFormat("en", { timeZone: z }); // throws on an unknown zone
  zone = z;
  try { localStorage.setItem("dispatch.tz", z); } catch (_) { /* private mode */ }
}

/** `iso` (an RFC 3339 instant) as text in the operator's zone: "7 Dec 2026, 14:03:05". */
export function localTime(iso, withSeconds = true) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso ?? "");
  return new Intl.DateTimeFormat(locale(), {
    timeZone: zone, year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", ...(withSeconds ? { second: "2-digit" } : {}), hour12: false,
  }).format(d);
}

/** A `<time>` showing `iso` in the operator's zone, the UTC instant on hover. */
export function when(iso, withSeconds = true) {
  const e = document.createElement("time");
  if (iso == null) return e;
  e.dateTime = iso;
  e.textContent = localTime(iso, withSeconds);
  e.title = new Date(iso).toISOString?.() ?? String(iso);
  return e;
}
