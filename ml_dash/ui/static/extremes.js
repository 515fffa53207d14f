// The best values of the run list: a metric field's min or max over the whole run (a loss's best is its
// min, an accuracy's its max), next to its latest. The server's run list carries latest values only;
// each run's min and max come from the compare route's single bucket over the whole run (read from its
// summaries: no rows are read), for up to BATCH runs a request, only for the runs the table needs: those
// in view, or all of them while it is sorted by such a column.
import { useEffect } from "./vendor/htm-preact-3.1.1.mjs";
import { api } from "./api.js";
import { limits } from "./limits.js";

const KINDS = ["min", "max"];
const held = new Map();  // "prefix|metric" -> { field: [min, max] } (a run's fields with no number: absent)

/** ``column`` ("min:train/loss") as { kind, metric, field }, or null for another kind of column. */
export function extremeColumn(column) {
  const cut = column.indexOf(":");
  const kind = column.slice(0, cut);
  if (!KINDS.includes(kind)) return null;
  const name = column.slice(cut + 1);
  const slash = name.lastIndexOf("/");
  return slash > 0 ? { kind, metric: name.slice(0, slash), field: name.slice(slash + 1) } : null;
}

/** The run's min or max of the column's field, as read so far (undefined: not read yet or none). */
export function extremeOf(run, { kind, metric, field }) {
  const fields = held.get(run.prefix + "|" + metric);
  const pair = fields && fields[field];
  return pair ? pair[KINDS.indexOf(kind)] : undefined;
}

/** Reads the min and max of ``metric``'s fields for ``runs`` (those not read yet), BATCH a request. */
async function readExtremes(runs, metric, fields) {
  const batch = limits().max_compared_runs;
  const missing = runs.filter((r) => !held.has(r.prefix + "|" + metric));
  for (let i = 0; i < missing.length; i += batch) {
    const some = missing.slice(i, i + batch);
    const query = new URLSearchParams({ runs: some.map((r) => r.prefix).join(","), buckets: "1", fields: fields.join(",") });
    const out = await api(`/api/v1/compare/metrics/${encodeURIComponent(metric)}?${query.toString()}`);
    for (const r of some) {
      const fieldsOf = {};
      for (const b of out.runs[r.prefix] || []) {
        for (const [f, s] of Object.entries(b.fields)) if (typeof s.min === "number") fieldsOf[f] = [s.min, s.max];
      }
      held.set(r.prefix + "|" + metric, fieldsOf);
    }
  }
}

/** Keeps the min/max columns of ``columns`` read for ``runs``; ``onRead()`` after each metric's values
 * arrive (to redraw and re-sort with). */
export function useExtremes(runs, columns, onRead) {
  const wanted = {};
  for (const c of columns) {
    const e = extremeColumn(c);
    if (e) (wanted[e.metric] = wanted[e.metric] || new Set()).add(e.field);
  }
  const key = JSON.stringify(Object.entries(wanted).map(([m, f]) => [m, [...f].sort()]).sort());
  const prefixes = runs.map((r) => r.prefix).join(",");
  useEffect(() => {
    let stop = false;
    (async () => {
      for (const [metric, fields] of Object.entries(wanted)) {
        if (stop) return;
        await readExtremes(runs, metric, [...fields]);
        if (!stop) onRead();
      }
    })().catch(() => null);  // a failed read leaves the cells empty; the latest values still show
    return () => { stop = true; };
  }, [key, prefixes]);
}
