// The x axis of a run's charts, as W&B users read them: a metric logged with ``step`` (or
// ``global_step``, ``epoch``) is drawn against it by default and that field is no chart of its own; the
// charts of one run on a shared axis (step, wall or relative time) share their x range, so a train
// series of 3,000 rows and a val series of 30 line up, and one hover cursor moves on all of them.

/** The fields that count training progress, in the order one is chosen as a metric's x. */
export const STEP_FIELDS = ["step", "global_step", "_step", "epoch"];  // _step: ml_dash.wandb's (W&B's) step

/** The chart x axes; ``step`` (the metric's step field, see :func:`stepFieldOf`) comes first: the default. */
export const X_AXES = ["step", "index", "wall", "relative"];

/** Fields never charted: the wall time each row carries. */
const HIDDEN_FIELDS = new Set(["_ts"]);

/** The step field of a metric with ``fields`` (names): the first of STEP_FIELDS it has, or null. */
export function stepFieldOf(fields) {
  return STEP_FIELDS.find((f) => fields.includes(f)) || null;
}

/** The fields of a metric drawn as charts, sorted: all but the wall time and its step field (unless
 * that is all it holds: a metric of steps alone still shows them). */
export function chartedFields(fields) {
  const named = fields.filter((f) => !HIDDEN_FIELDS.has(f));
  const step = stepFieldOf(named);
  const charted = named.filter((f) => f !== step);
  return (charted.length ? charted : named).sort();
}

/** Whether ``column`` of the run list or a comparison ("metric:train/step") is a metric's step field
 * (``fieldsOf(metric)``: the names of that metric's fields), so no column, axis or chart of its own. */
export function isStepColumn(column, fieldsOf) {
  if (!column.startsWith("metric:")) return false;
  const name = column.slice(7);
  const cut = name.lastIndexOf("/");
  const field = name.slice(cut + 1);
  return STEP_FIELDS.includes(field) && stepFieldOf(fieldsOf(name.slice(0, cut))) === field;
}

/** The axis the URL asks for (``x``), or the default: step. */
export function xAxisOf(state) {
  return X_AXES.includes(state.x) ? state.x : "step";
}

/** The x range shared by a group of charts (one run's page on one axis): each chart says the extent
 * of its points; each is drawn over the union of them all, and told when it widens. */
class SharedRange {
  constructor() {
    this.extents = new Map();  // chart id -> [min, max]
    this.listeners = new Map();  // chart id -> (range) => void
  }

  /** The union of every chart's extent, or null while none has points. */
  union() {
    let lo = Infinity, hi = -Infinity;
    for (const [a, b] of this.extents.values()) { lo = Math.min(lo, a); hi = Math.max(hi, b); }
    return lo <= hi ? [lo, hi] : null;
  }

  /** Chart ``id`` holds points over [min, max]: the others are told when the union widens. */
  set(id, min, max) {
    const before = JSON.stringify(this.union());
    if (Number.isFinite(min) && Number.isFinite(max)) this.extents.set(id, [min, max]);
    else this.extents.delete(id);
    const after = this.union();
    if (JSON.stringify(after) !== before) for (const [other, tell] of this.listeners) if (other !== id && after) tell(after);
  }

  listen(id, tell) { this.listeners.set(id, tell); }

  leave(id) {
    this.listeners.delete(id);
    this.set(id, NaN, NaN);
  }
}

const groups = new Map();

/** The shared range of the group ``key`` (made on first use; a run page's charts: its prefix and axis). */
export function sharedRange(key) {
  let group = groups.get(key);
  if (!group) { group = new SharedRange(); groups.set(key, group); }
  return group;
}

/** The extent [min, max] of the finite values of ``xs``, or null. */
export function extentOf(xs) {
  let lo = Infinity, hi = -Infinity;
  for (const x of xs) if (x !== null && Number.isFinite(x)) { if (x < lo) lo = x; if (x > hi) hi = x; }
  return lo <= hi ? [lo, hi] : null;
}
