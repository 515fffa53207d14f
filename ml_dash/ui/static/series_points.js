// A chart's points as arrays side by side (uPlot's shape): for each point its x on the index axis
// (``idx``), the index range it stands for (``firsts``/``lasts``), its step and wall time, and its
// min, max and last value (``lo``/``hi``/``ys``, the same three for a raw row). ``raw``: rows, not
// buckets; ``width``: the buckets' width in indices; ``upto``: the end of the index range read.
import { num } from "./api.js";

const COLUMNS = ["idx", "firsts", "lasts", "steps", "times", "lo", "hi", "ys"];

export function emptySeries(raw) {
  return { idx: [], firsts: [], lasts: [], steps: [], times: [], lo: [], hi: [], ys: [], raw, width: null, upto: 0 };
}

/** A series from the server's buckets of one metric (``fields`` of each holding min, max, last), of
 * the buckets that hold ``field``; each point's step is the last value of ``stepField`` in its bucket. */
export function seriesOfBuckets(buckets, field, stepField = "step") {
  const s = emptySeries(false);
  for (const b of buckets) {
    const f = b.fields[field];
    if (!f) continue;
    s.idx.push(b.last); s.firsts.push(b.first); s.lasts.push(b.last);
    s.steps.push(b.fields[stepField] ? num(b.fields[stepField].last) : null);
    s.times.push(b.fields._ts ? num(b.fields._ts.last) : null);
    s.lo.push(num(f.min)); s.hi.push(num(f.max)); s.ys.push(num(f.last));
  }
  return s;
}

/** ``s``'s first ``keep`` points then ``more``'s, read up to ``upto``. */
export function joinSeries(s, keep, more, upto) {
  const out = { ...s, upto };
  for (const k of COLUMNS) out[k] = s[k].slice(0, keep).concat(more[k]);
  return out;
}
