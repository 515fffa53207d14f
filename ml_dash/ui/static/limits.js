// The server's caps (GET /api/v1/limits, server/routes/limits.py): rows in a page, buckets in a reply,
// runs in a comparison, the statuses a run may show. Read once when the app starts, so that the UI
// holds no copy of them that could drift from the server it talks to.
import { api } from "./api.js";

let held = null;
let pending = null;

/** Reads the caps from the server (once; a failed read is tried again on the next call). */
export function loadLimits() {
  if (!pending) {
    pending = api("/api/v1/limits").then((out) => { held = out; return out; },
      (e) => { pending = null; throw e; });
  }
  return pending;
}

/** The caps :func:`loadLimits` read: ``max_read_rows``, ``max_buckets``, ``max_compared_runs``,
 * ``max_compared_buckets``, ``statuses``. The app shows no view before they are read. */
export function limits() {
  if (held === null) throw new Error("the server's limits are not read yet (loadLimits)");
  return held;
}
