// The admin API, as the console calls it: a bearer token kept in sessionStorage (gone when
// the tab closes), JSON in and out, errors as ApiError with the fields the API named.

const TOKEN_KEY = "rostersync.token";
const TENANT_KEY = "rostersync.tenant";
//: Where the API is: the console's own origin unless the page names another.
const BASE = document.querySelector('meta[name="rostersync-api"]')?.content?.replace(/\/$/, "") || "";
//: Run statuses that mean the work is still going on.
const BUSY = new Set(["running", "committing", "queued", "pending", "starting"]);

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
    this.fields = Array.isArray(body?.errors) ? body.errors : [];
    this.runId = body?.run_id || null;
  }
}

export function isBusy(status) {
  return BUSY.has(status) || /ing$/.test(status || "");
}

function claimsOf(token) {
  const part = token.split(".")[1];
  if (!part) return null;
  try {
    const base64 = part.replaceAll("-", "+").replaceAll("_", "/");
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return null;
  }
}

/** The signed-in person, or null. The API checks the token; this only reads it. */
export function session() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return null;
  const claims = claimsOf(token) || {};
  if (claims.exp && claims.exp * 1000 < Date.now()) {
    signOut();
    return null;
  }
  const role = claims["custom:role"] || "viewer";
  const tenant = claims["custom:tenant"] || sessionStorage.getItem(TENANT_KEY) || "";
  return {
    token,
    role,
    tenant,
    who: claims.email || claims["cognito:username"] || claims.sub || "someone",
    expires: claims.exp ? new Date(claims.exp * 1000) : null,
    mayWrite: role !== "viewer",
  };
}

/** Keep a token (and, for the platform role, the tenant to act on); false if unreadable. */
export function signIn(token, tenant = "") {
  const claims = claimsOf(token.trim());
  if (!claims) return false;
  sessionStorage.setItem(TOKEN_KEY, token.trim());
  if (tenant) sessionStorage.setItem(TENANT_KEY, tenant.trim());
  else sessionStorage.removeItem(TENANT_KEY);
  return true;
}

export function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(TENANT_KEY);
}

export function tenantPath(rest = "") {
  const current = session();
  return `/tenants/${encodeURIComponent(current?.tenant || "")}${rest}`;
}

/** Call the API; the parsed body, or ApiError. A 401 signs out and goes to the sign-in. */
export async function call(path, { method = "GET", body, query, csv, file } = {}) {
  const current = session();
  const url = new URL(BASE + path, location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  const headers = { Accept: "application/json" };
  if (current) headers.Authorization = `Bearer ${current.token}`;
  let payload;
  if (file !== undefined) {
    headers["Content-Type"] = "application/zip";
    if (file.name) headers["X-Filename"] = file.name.replace(/[^\x20-\x7e]/g, "_");
    payload = file;
  } else if (csv !== undefined) {
    headers["Content-Type"] = "text/csv";
    payload = csv;
  } else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, { method, headers, body: payload });
  } catch {
    throw new ApiError(0, "The API could not be reached. Check the connection and try again.");
  }
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = { error: text };
  }
  if (response.status === 401) {
    signOut();
    sessionStorage.setItem("rostersync.signin-message", "Your sign-in has expired or was refused. Sign in again.");
    location.hash = "#/signin";
    throw new ApiError(401, "Signed out", parsed);
  }
  if (!response.ok) {
    const message =
      parsed?.error ||
      (Array.isArray(parsed?.errors)
        ? parsed.errors.map((e) => `${e.field}: ${e.message}`).join("; ")
        : `The API answered ${response.status}`);
    throw new ApiError(response.status, message, parsed);
  }
  return { status: response.status, body: parsed };
}

//: How long a download waits for a file written in the background (a Lambda function
//: runs at most 15 minutes).
const PREPARING_MS = 16 * 60 * 1000;

/** Fetch one of the API's files (issues.csv, actions.csv) with the token, then save it.
 * A file too large for an answer comes as a short-lived link, followed without the token.
 * A large run's actions.csv is written in the background: the API answers 202 (with
 * Retry-After) until it is written, and ``onWait`` hears of each such answer. */
export async function saveFile(path, filename, onWait) {
  const current = session();
  const url = new URL(BASE + path, location.origin);
  url.searchParams.set("link", "true");
  const giveUp = Date.now() + PREPARING_MS;
  let response;
  for (;;) {
    try {
      response = await fetch(url, {
        headers: { Authorization: `Bearer ${current?.token || ""}`, Accept: "text/csv" },
      });
    } catch {
      throw new ApiError(0, "The API could not be reached. Check the connection and try again.");
    }
    if (response.status !== 202) break;
    const preparing = await response.json().catch(() => ({}));
    if (Date.now() > giveUp) {
      throw new ApiError(202, `${filename} is still being written; try again in a few minutes.`, preparing);
    }
    onWait?.(preparing);
    const seconds = Number(response.headers.get("Retry-After")) || preparing.retry_after || 5;
    await new Promise((resolve) => setTimeout(resolve, Math.min(60, Math.max(1, seconds)) * 1000));
  }
  if (!response.ok) {
    let parsed = null;
    try {
      parsed = await response.json();
    } catch {
      parsed = null;
    }
    throw new ApiError(response.status, parsed?.error || `The API answered ${response.status}`, parsed);
  }
  if ((response.headers.get("Content-Type") || "").startsWith("application/json")) {
    const found = await response.json();
    follow(found.url, found.filename || filename);
    return found.size;
  }
  const blob = await response.blob();
  const saved = URL.createObjectURL(blob);
  follow(saved, filename);
  setTimeout(() => URL.revokeObjectURL(saved), 1000);
  return blob.size;
}

function follow(href, filename) {
  const link = document.createElement("a");
  link.href = href;
  link.download = filename;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
}

/** The API's OpenAPI document (public): the settings form is built from its schemas. */
export const openapiDocument = () => fetch(`${BASE}/openapi.json`).then((r) => r.json());

export const get = (path, query) => call(path, { query }).then((r) => r.body);
export const post = (path, body) => call(path, { method: "POST", body });

/** Every item of a paged directory entity (``next_offset`` until null). */
export async function allDirectory(entity) {
  const items = [];
  let offset = 0;
  while (offset !== null && offset !== undefined) {
    const page = await get(tenantPath(`/directory/${entity}`), { offset, limit: 1000 });
    items.push(...page.items);
    offset = page.next_offset;
  }
  return items;
}

/** Every action of a run matching ``filters`` (paged by ``total``). */
export async function allActions(runId, filters = {}) {
  const actions = [];
  for (let offset = 0; ; offset += 1000) {
    const page = await get(tenantPath(`/runs/${runId}/actions`), { ...filters, offset, limit: 1000 });
    actions.push(...page.actions);
    if (actions.length >= page.total || !page.actions.length) return actions;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Wait for a run to settle: poll it while its status is running or committing, telling
 * ``onProgress`` each time. The run and its report when it has settled.
 */
export async function settle(runId, onProgress = () => {}, { interval = 400, timeout = 600_000 } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const detail = await get(tenantPath(`/runs/${runId}`));
    onProgress(detail.run);
    if (!isBusy(detail.run.status)) return detail;
    if (Date.now() > deadline) throw new ApiError(0, `Run ${runId} is still ${detail.run.status}.`);
    await sleep(interval);
  }
}

/**
 * A decision (commit, approve, undo, a match decision) that the API answers at once (200)
 * or accepts to finish in the background (202): either way, wait for the run it names.
 */
export async function decide(path, body, runId, onProgress) {
  const answer = await post(path, body);
  const named = answer.body?.run_id || answer.body?.restaged_run || runId;
  if (!named) return { answer, detail: null };
  const detail = await settle(named, onProgress);
  return { answer, detail };
}
