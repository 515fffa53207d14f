// The columns a scatter plot or parallel coordinates can draw across runs ("param:lr",
// "metric:val/loss"): numeric in at least two runs and not constant (an axis of one value says nothing),
// never a metric's step field (xaxis.js); and how each is scaled: log where its values are log-spaced
// (a learning-rate sweep of 0.1, 0.01, 0.001), else linear.
import { num } from "./api.js";
import { valueOf } from "./runs.js";

/** The numbers of ``column`` across ``runs``, null where a run has none (or not a finite number). */
export function numbers(runs, column) {
  return runs.map((r) => { const v = num(valueOf(r, column)); return Number.isFinite(v) ? v : null; });
}

/** Of ``columns``, those worth an axis over ``runs``: at least two runs with a number, two values. */
export function plottableColumns(runs, columns) {
  return columns.filter((c) => {
    const present = numbers(runs, c).filter((v) => v !== null);
    return present.length >= 2 && present.some((v) => v !== present[0]);
  });
}

/** Whether ``values`` (nulls ignored) are log-spaced: all positive, over a decade or more, and most of
 * them crowded in the lowest fifth of a linear axis (as 0.1, 0.01, 0.001 are). */
export function isLogSpaced(values) {
  const present = values.filter((v) => v !== null).sort((a, b) => a - b);
  if (present.length < 2 || present[0] <= 0) return false;
  const lo = present[0], hi = present[present.length - 1];
  if (hi / lo < 10) return false;
  const median = present[Math.floor((present.length - 1) / 2)];
  return (median - lo) / (hi - lo) < 0.2;
}

/** ``values`` mapped into [0, 1] (log where ``log``); null stays null. */
export function normalised(values, log) {
  const f = log ? Math.log10 : (v) => v;
  const present = values.filter((v) => v !== null).map(f);
  const lo = Math.min(...present), hi = Math.max(...present);
  return values.map((v) => (v === null ? null : hi === lo ? 0.5 : (f(v) - lo) / (hi - lo)));
}

/** A column's name without its kind ("param:lr" -> "lr"). */
export function columnLabel(column) {
  return column.replace(/^(param|metric):/, "");
}
