// The server's read API, as the UI calls it: same origin, JSON both ways; the session cookie on
// ``ml-dash server``, the token's header on ``ml-dash ui`` (token.js). Every request goes through here.
import { authorization } from "./token.js";

export class ApiError extends Error {
  constructor(status, message, uiLocked = false) {
    super(message);
    this.status = status;
    this.uiLocked = uiLocked;  // refused by ``ml-dash ui`` for want of its token: no sign-in form helps
  }
}

/** The JSON of a reply, or an ApiError with the server's words. A 401 (but signing in's own) tells the
 * app that the session ended. */
async function payloadOf(path, response) {
  let payload = null;
  try {
    payload = await response.json();
  } catch (_) {
    payload = null;
  }
  if (!response.ok) {
    const uiLocked = response.status === 401 && /^token /i.test(response.headers.get("WWW-Authenticate") || "");
    if (response.status === 401 && path !== "/api/v1/session") window.dispatchEvent(new Event("ml-dash:unauthorized"));
    throw new ApiError(response.status, (payload && payload.error) || response.statusText, uiLocked);
  }
  return payload;
}

export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json", ...authorization() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return payloadOf(path, response);
}

/** A file's content (a download, a preview) as a Blob: fetched with the token's header, since a plain
 * link or ``<img src>`` could not carry it. */
export async function fetchBlob(path) {
  const response = await fetch(path, { headers: authorization(), credentials: "same-origin" });
  if (!response.ok) await payloadOf(path, response);  // throws the server's words
  return response.blob();
}

/** Save ``blob`` as the file ``name`` (a download the page made: a fetched file, a chart's PNG or CSV). */
export function saveBlob(name, blob) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = name;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

const held = new Map();  // path -> [ETag, payload] of the last answer to a revalidated GET

/** ``api(path)`` for a document polled while a run is live: it sends the ETag of the last answer,
 * and a 304 (nothing changed) gives that answer again, the same object, without a body. */
export async function revalidatedGet(path) {
  const last = held.get(path);
  const headers = { Accept: "application/json", ...authorization() };
  if (last) headers["If-None-Match"] = last[0];
  const response = await fetch(path, { headers, credentials: "same-origin", cache: "no-store" });
  if (response.status === 304 && last) return last[1];
  const payload = await payloadOf(path, response);
  const tag = response.headers.get("ETag");
  if (tag) held.set(path, [tag, payload]);
  return payload;
}

const shared = new Map();

/** ``api(path)`` for a GET that several views ask for at once (a metric's buckets feed one chart per
 * field): one request, its answer shared by every caller until shortly after it arrives. */
export function sharedGet(path) {
  let pending = shared.get(path);
  if (!pending) {
    pending = api(path);
    shared.set(path, pending);
    const forget = () => setTimeout(() => shared.delete(path), 500);
    pending.then(forget, forget);
  }
  return pending;
}

/** The API path of a run ("owner/project/name"), each part escaped. */
export function runPath(prefix, tail = "") {
  return "/api/v1/experiments/" + prefix.split("/").map(encodeURIComponent).join("/") + tail;
}

const MAX_STREAM_PAGES = 200;  // 200,000 streams: twice the most a run may hold on the server

/** A run's streams past its document's first page (the document's ``streams_next``), page by page
 * (``.../streams?after=``, 1,000 a page): ``{streams, latest}``, merged over the pages. */
export async function restOfStreams(prefix, after) {
  const streams = {}, latest = {};
  for (let page = 0; after && page < MAX_STREAM_PAGES; page++) {
    const out = await api(runPath(prefix, "/streams?" + new URLSearchParams({ after }).toString()));
    Object.assign(streams, out.streams);
    Object.assign(latest, out.latest || {});
    after = out.next;
  }
  return { streams, latest };
}

/** The run's document with ``rest`` (from restOfStreams) merged in: every stream and latest value. */
export function withStreams(doc, rest) {
  if (!doc || !rest || !doc.streams_next) return doc;
  return { ...doc, streams: { ...rest.streams, ...doc.streams }, latest: { ...rest.latest, ...doc.latest } };
}

/** A run's whole document: the first page of streams and, where it says more follow, the rest. */
export async function wholeRun(prefix) {
  const doc = await api(runPath(prefix));
  return doc.streams_next ? withStreams(doc, await restOfStreams(prefix, doc.streams_next)) : doc;
}

/** A number from the JSON the server writes (non-finite floats come as their names). */
export function num(value) {
  return typeof value === "number" ? value : null;
}
