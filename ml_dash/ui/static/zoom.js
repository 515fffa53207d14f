// A chart's zoom: the index range [start, end) it shows, kept in the URL as "start:end"; from a
// selection dragged on the plot, and panned by half its width.

/** A zoom from the URL ("start:end", indices, end past start), or null for none or one that is not. */
export function zoomRange(text) {
  const m = /^(\d{1,15}):(\d{1,15})$/.exec(text || "");
  if (!m) return null;
  const [a, b] = [Number(m[1]), Number(m[2])];
  return b > a ? [a, b] : null;
}

/** The zoom ``[start, end)`` moved by half its width in ``direction`` (-1, 1), within [0, rows). */
export function panRange([start, end], rows, direction) {
  const span = end - start;
  const a = Math.max(0, Math.min(rows - span, start + direction * Math.ceil(span / 2)));
  return [a, a + span];
}

/** The index range of a selection from x ``lo`` to ``hi`` on the axis ``axis``: directly on the index
 * axis, else from the point holding its left edge to the one holding its right edge (``xs`` the x of
 * each point, ``firsts``/``lasts`` the indices each stands for). Null when no point is right of ``lo``. */
export function selectionRange(axis, lo, hi, { xs, firsts, lasts }) {
  if (axis === "index") return [Math.max(0, Math.floor(lo)), Math.ceil(hi) + 1];
  const a = xs.findIndex((v) => v >= lo);
  let b = xs.findIndex((v) => v > hi);
  if (a < 0) return null;
  if (b < 0) b = xs.length - 1;
  return [firsts[a], lasts[b] + 1];
}
