// The points of one chart, read from the server and kept current: the visible range read whole (raw
// rows once it holds at most two points per pixel, else min/max/last buckets), then, while a run is
// live, only its new points appended (the whole range again once they no longer fit as held).
//
// Plain JS over a ``source`` ({ get, path, limits, stepField }: a GET of the server's JSON by path, the
// metric's API path, the server's caps from limits.js, the field whose values are the points' steps), so that tests/test_ui_modules.py drives it in a
// browser with a fake ``get``; ``useSeries`` is the small hook by which the chart component uses it.
import { useEffect, useRef } from "./vendor/htm-preact-3.1.1.mjs";
import { num } from "./api.js";
import { emptySeries, joinSeries, seriesOfBuckets } from "./series_points.js";

/** Points of ``field`` over indices [start, end): buckets, or rows when they are few enough. Each
 * point keeps the index range it stands for (``firsts``/``lasts``) and its step and wall time. */
export async function fetchSeries(source, field, start, end, pixels) {
  const span = end - start;
  if (span <= Math.max(2 * pixels, 1) && span <= source.limits.max_read_rows) return fetchRows(source, field, start, end);
  const out = await source.get(`${source.path}?buckets=${Math.min(source.limits.max_buckets, Math.max(1, Math.floor(pixels)))}&start=${start}&end=${end}`);
  return { ...seriesOfBuckets(out.buckets, field, source.stepField), width: out.width, upto: end };
}

/** The raw points of ``field`` over indices [start, end). */
async function fetchRows(source, field, start, end) {
  const s = emptySeries(true);
  // a page of wide rows is cut short by the server's value budget and says where the rest starts
  // (``next``); bounded, as the range is at most max_read_rows rows
  for (let from = start, pages = 0; from < end && pages < 1000; pages++) {
    const out = await source.get(`${source.path}?start=${from}&limit=${Math.max(1, end - from)}`);
    for (const row of out.rows) {
      // a page skips set-aside indices and fills its limit past ``end``: those rows are the next read's
      if (row.index >= end) break;
      if (!(field in row.data)) continue;
      const v = num(row.data[field]);
      s.idx.push(row.index); s.firsts.push(row.index); s.lasts.push(row.index);
      s.steps.push(num(row.data[source.stepField || "step"])); s.times.push(num(row.data._ts));
      s.ys.push(v); s.lo.push(v); s.hi.push(v);
    }
    if (typeof out.next !== "number" || out.next <= from) break;
    from = out.next;
  }
  s.upto = end;
  return s;
}

/** ``s`` (over [start, s.upto)) extended to [start, end) with only the new points: the new rows, or
 * the last bucket again and the new ones at the width ``s`` holds. Null when the extended series
 * would no longer fit ``pixels`` as it is (past two points or two buckets a pixel; a fresh read holds
 * one bucket a pixel at most, so a series grows to twice or four times its length in between): the
 * caller fetches it whole. */
export async function extendSeries(source, s, field, start, end, pixels) {
  const { max_read_rows: maxRows, max_buckets: maxBuckets } = source.limits;
  if (s.raw) {
    if (end - start > Math.max(2 * pixels, 1) || end - start > maxRows) return null;
    return joinSeries(s, s.idx.length, await fetchRows(source, field, s.upto, end), end);
  }
  const held = s.firsts.length;
  const since = held ? Math.max(start, Math.floor(s.firsts[held - 1] / s.width) * s.width) : start;
  const more = (end - since) / s.width;
  if (more + held > 2 * pixels || more >= maxBuckets) return null;
  // shared: the charts of every field of the metric ask for the same buckets
  const out = await source.get(`${source.path}?buckets=${maxBuckets}&width=${s.width}&start=${since}&end=${end}`);
  const keep = s.firsts.findIndex((first) => first >= since);
  return joinSeries(s, keep < 0 ? held : keep, seriesOfBuckets(out.buckets, field, source.stepField), end);
}

/** One chart's series over its view, kept current. ``show`` reads a view whole; ``grow`` follows a
 * live run's new rows, one extension at a time, and again while more arrived meanwhile. Each ``show``
 * starts a new generation: a reply begun in an older one (a read of a view since left, an extension
 * of a series since replaced) is dropped, never drawn. ``on`` holds the chart's callbacks:
 * ``draw(series)``, ``fail(error)`` and ``pixels()`` (its width now). */
export class SeriesFollower {
  constructor(on) {
    this.on = on;
    this.generation = 0;
    this.view = null;  // { source, field, start, end, live }: what is shown, [start, end) in indices
    this.held = null;  // the series last drawn in this generation
    this.extending = false;
  }

  /** The view [start, end) read whole and drawn; with ``live``, followed as the run grows. */
  show(source, field, start, end, live) {
    const begun = ++this.generation;
    this.view = { source, field, start, end, live };
    this.held = null;  // nothing to extend until this view's own read is drawn
    fetchSeries(source, field, start, end, this.on.pixels())
      .then((s) => { if (this.generation === begun) { this.accept(s); this.catchUp(); } },
        (e) => { if (this.generation === begun) this.on.fail(e); });
  }

  /** The run now holds ``rows`` rows: a live view catches up to them. */
  grow(rows) {
    if (!this.view || !this.view.live) return;
    this.view.end = rows;
    this.catchUp();
  }

  /** Nothing begun before is drawn any more (the chart is gone). */
  close() {
    this.generation++;
    this.view = null;
    this.held = null;
  }

  accept(s) {
    this.held = s;
    this.on.draw(s);
  }

  catchUp() {
    const s = this.held, view = this.view;
    if (!view || !s || view.end <= s.upto || this.extending) return;  // a zoomed view's end never moves (grow)
    this.extending = true;
    const begun = this.generation;
    const { source, field, start, end } = view;
    extendSeries(source, s, field, start, end, this.on.pixels())
      .then((t) => t || (this.generation === begun ? fetchSeries(source, field, start, end, this.on.pixels()) : null))
      .then((t) => { if (t && this.generation === begun) this.accept(t); })
      .catch((e) => { if (this.generation === begun) this.on.fail(e); })
      .finally(() => {
        this.extending = false;
        if (this.held !== s) this.catchUp();  // rows that arrived while this one was read
      });
  }
}

/** The chart's side of a :class:`SeriesFollower`: the view read whole whenever ``keys`` change (the
 * view's range, or how it is drawn), followed while ``live`` as ``rows`` grows. ``on`` is the latest
 * render's, so a reply draws with the options the chart has when it arrives. */
export function useSeries(source, field, { start, end, live, rows }, keys, on) {
  const follower = useRef(null);
  if (follower.current === null) follower.current = new SeriesFollower(on);
  follower.current.on = on;
  useEffect(() => { follower.current.show(source, field, start, live ? rows : Math.min(end, rows), live); }, keys);
  useEffect(() => follower.current.grow(rows), [rows]);
  useEffect(() => () => follower.current.close(), []);
}
