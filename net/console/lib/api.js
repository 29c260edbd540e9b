// The API client of the console: the staff token (in this module's memory only, never in
// storage), one request function, and actions sent with an Idempotency-Key.
//
// Guarantees: an answer to an earlier session's request is dropped (`Stale`), never shown;
// a 401 ends the session through the handler `onUnauthorized` names; an action that has
// had no definite answer keeps its key, so sending it again does it once.

let token = null;
// Bumped at every sign-in and sign-out: answers to an earlier session's requests are dropped.
let session = 0;
let unauthorized = () => {};
// Idempotency keys of confirmed actions that have had no definite answer yet, by
// "METHOD path body": sending the same action again reuses its key, so it happens once.
const actionKeys = new Map();

export class ApiError extends Error {
  constructor(status, code, message, param) {
    super(code ? code + ": " + message : message || String(status));
    this.status = status; this.code = code; this.param = param;
  }
  // No definite answer: the request may or may not have been carried out.
  get retryable() { return this.status === 0 || this.status >= 500 || this.status === 429 || this.code === "idempotency_key_in_use"; }
}
// Answers to a previous session's requests.
export class Stale extends Error {}

/** Starts a session with `t` (or ends it with null). */
export function setToken(t) {
  token = t;
  session++;
  actionKeys.clear();
}
export const signedIn = () => token !== null;
export const currentToken = () => token;
/** What a 401 does (the shell signs out). */
export function onUnauthorized(f) { unauthorized = f; }

export async function request(method, path, body, headers) {
  const mine = session;
  let r;
  try {
    r = await fetch(path, {
      method,
      headers: { "Authorization": "Bearer " + token, "Content-Type": "application/json", ...(headers ?? {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    if (mine !== session) throw new Stale();
    throw new ApiError(0, "", "no answer from the server (" + e.message + ")");
  }
  const json = r.status === 204 ? null : await r.json().catch(() => null);
  if (mine !== session) throw new Stale();
  if (r.status === 401 && token !== null) unauthorized("your session has ended: sign in again");
  if (!r.ok) throw new ApiError(r.status, json?.error?.code, json?.error?.message ?? "", json?.error?.param);
  return { json, replayed: r.headers.get("Idempotent-Replayed") === "true", headers: r.headers };
}

export async function api(method, path, body) {
  return (await request(method, path, body)).json;
}

/** A binary answer (a document, a CSV) as a Blob, with the same session rules. */
export async function fetchBlob(path) {
  const mine = session;
  const r = await fetch(path, { headers: { "Authorization": "Bearer " + token } }).catch((e) => {
    throw new ApiError(0, "", "no answer from the server (" + e.message + ")");
  });
  if (mine !== session) throw new Stale();
  if (r.status === 401 && token !== null) unauthorized("your session has ended: sign in again");
  if (!r.ok) {
    const json = await r.json().catch(() => null);
    throw new ApiError(r.status, json?.error?.code, json?.error?.message ?? "");
  }
  return r.blob();
}

/**
 * Staff sign-in (API.md "Back office"): e-mail, password and the authenticator's code →
 * `{token, user, expires_at, expires_in_s}`. Sent without a token; a wrong part is a 401
 * (`ApiError`), a locked account a 429. The caller starts the session with the token.
 */
export async function staffLogin(email, password, totp) {
  let r;
  try {
    r = await fetch("/v1/auth/staff/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ email, password, totp }),
    });
  } catch (e) {
    throw new ApiError(0, "", "no answer from the server (" + e.message + ")");
  }
  const json = await r.json().catch(() => null);
  if (!r.ok) throw new ApiError(r.status, json?.error?.code, json?.error?.message ?? "", json?.error?.param);
  if (typeof json?.token !== "string") throw new ApiError(r.status, "", "the server's answer has no token");
  return json;
}

function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  // Pages served over plain http on a LAN are not a secure context: no randomUUID.
  return [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, "0")).join("");
}

// A confirmed action that changes things, sent with an Idempotency-Key. The key is
// kept while the action has no definite answer (no answer, 5xx, 429, a key in
// flight), so the same action sent again (a retry, a doubled click) is done once.
export async function act(method, path, body) {
  const what = method + " " + path + " " + JSON.stringify(body);
  let key = actionKeys.get(what);
  if (!key) { key = newKey(); actionKeys.set(what, key); }
  try {
    const r = await request(method, path, body, { "Idempotency-Key": key });
    actionKeys.delete(what);
    return r;
  } catch (e) {
    if (!(e instanceof ApiError) || !e.retryable) actionKeys.delete(what);
    throw e;
  }
}

// The socket signs in with a subprotocol, never with the token in its URL (where
// proxies and access logs would keep it): "bearer." and the token's bytes in lower-case
// hex (a subprotocol cannot hold every character a token may); the server answers
// "dispatch.v1" only.
export function socketProtocols() {
  const hex = Array.from(new TextEncoder().encode(token ?? ""), (b) => b.toString(16).padStart(2, "0")).join("");
  return ["dispatch.v1", "bearer." + hex];
}
