// One chart per metric field, drawn by uPlot from the server's buckets: a min/max band so that no
// spike is ever hidden, the line through each bucket's last value, optional smoothing (EMA or running
// mean) drawn over it, log scale, and zoom and pan that ask the server again for the visible range
// (raw rows once the range holds at most two points per pixel).
import { html, useEffect, useRef, useState } from "./vendor/htm-preact-3.1.1.mjs";
import { num, runPath, sharedGet } from "./api.js";
import { setState } from "./state.js";

const RAW_LIMIT = 100000;  // the server's page cap
const MAX_BUCKETS = 10000;  // the server's cap on buckets in one reply

/** Points of ``field`` over indices [start, end): buckets, or rows when they are few enough. Each
 * point keeps the index range it stands for (``firsts``/``lasts``) and its step and wall time. */
export async function fetchSeries(prefix, metric, field, start, end, pixels) {
  const span = end - start;
  if (span <= Math.max(2 * pixels, 1) && span <= RAW_LIMIT) return fetchRows(prefix, metric, field, start, end);
  const out = await sharedGet(`${metricPath(prefix, metric)}?buckets=${Math.max(1, Math.floor(pixels))}&start=${start}&end=${end}`);
  return { ...seriesOfBuckets(out.buckets, field), width: out.width, upto: end };
}

function metricPath(prefix, metric) {
  return runPath(prefix, "/metrics/" + encodeURIComponent(metric));
}

function emptySeries(raw) {
  return { idx: [], firsts: [], lasts: [], steps: [], times: [], lo: [], hi: [], ys: [], raw, width: null, upto: 0 };
}

/** The raw points of ``field`` over indices [start, end). */
async function fetchRows(prefix, metric, field, start, end) {
  const s = emptySeries(true);
  // a page of wide rows is cut short by the server's value budget and says where the rest starts
  // (``next``); bounded, as the range is at most RAW_LIMIT rows
  for (let from = start, pages = 0; from < end && pages < 1000; pages++) {
    const out = await sharedGet(`${metricPath(prefix, metric)}?start=${from}&limit=${Math.max(1, end - from)}`);
    for (const row of out.rows) {
      // a page skips set-aside indices and fills its limit past ``end``: those rows are the next read's
      if (row.index >= end) break;
      if (!(field in row.data)) continue;
      const v = num(row.data[field]);
      s.idx.push(row.index); s.firsts.push(row.index); s.lasts.push(row.index);
      s.steps.push(num(row.data.step)); s.times.push(num(row.data._ts));
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
export async function extendSeries(s, prefix, metric, field, start, end, pixels) {
  if (s.raw) {
    if (end - start > Math.max(2 * pixels, 1) || end - start > RAW_LIMIT) return null;
    return joinSeries(s, s.idx.length, await fetchRows(prefix, metric, field, s.upto, end), end);
  }
  const held = s.firsts.length;
  const since = held ? Math.max(start, Math.floor(s.firsts[held - 1] / s.width) * s.width) : start;
  const more = (end - since) / s.width;
  if (more + held > 2 * pixels || more >= MAX_BUCKETS) return null;
  // shared: the charts of every field of the metric ask for the same buckets
  const out = await sharedGet(`${metricPath(prefix, metric)}?buckets=${MAX_BUCKETS}&width=${s.width}&start=${since}&end=${end}`);
  const keep = s.firsts.findIndex((first) => first >= since);
  return joinSeries(s, keep < 0 ? held : keep, seriesOfBuckets(out.buckets, field), end);
}

function joinSeries(s, keep, more, upto) {
  const out = { ...s, upto };
  for (const k of ["idx", "firsts", "lasts", "steps", "times", "lo", "hi", "ys"]) out[k] = s[k].slice(0, keep).concat(more[k]);
  return out;
}

/** A series (as :func:`fetchSeries` returns it) from the server's buckets of one metric. */
export function seriesOfBuckets(buckets, field) {
  const s = emptySeries(false);
  for (const b of buckets) {
    const f = b.fields[field];
    if (!f) continue;
    s.idx.push(b.last); s.firsts.push(b.first); s.lasts.push(b.last);
    s.steps.push(b.fields.step ? num(b.fields.step.last) : null);
    s.times.push(b.fields._ts ? num(b.fields._ts.last) : null);
    s.lo.push(num(f.min)); s.hi.push(num(f.max)); s.ys.push(num(f.last));
  }
  return s;
}

export const X_AXES = ["index", "step", "wall", "relative"];

/** uPlot axes in the page's colours (light or dark, as the system is), the y axis as wide as its
 * longest tick label (100,000 is not cut to "0,000"). */
export function axes() {
  const css = getComputedStyle(document.documentElement);
  const text = css.getPropertyValue("--muted").trim() || "#666";
  const line = css.getPropertyValue("--line").trim() || "#ddd";
  const axis = { stroke: text, grid: { stroke: line, width: 1 }, ticks: { stroke: line, width: 1 } };
  const size = (u, values) => (values ? Math.max(44, 16 + 8 * Math.max(...values.map((v) => String(v).length))) : 50);
  return [{ ...axis }, { ...axis, size }];
}

/** The x values of ``s`` for the axis ``x``, or null when the series cannot have it (a missing or
 * decreasing step or time: uPlot needs x in order). */
export function xValues(s, x) {
  if (x === "index") return s.idx;
  const source = x === "step" ? s.steps : s.times;
  if (!source.length || source.some((v, i) => v === null || (i && v < source[i - 1]))) return null;
  if (x === "relative") return source.map((v) => v - source[0]);
  return source;
}

function download(name, blob) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = name;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

function csvCell(v) {
  return v === null || v === undefined ? "" : String(v);
}

/** Running mean of the last ``n`` points up to each point. */
export function runningMean(ys, n) {
  const out = [];
  let sum = 0, count = 0;
  const recent = [];
  for (const y of ys) {
    if (y === null || !Number.isFinite(y)) { out.push(null); continue; }
    recent.push(y); sum += y; count++;
    if (recent.length > n) { sum -= recent.shift(); count--; }
    out.push(sum / count);
  }
  return out;
}

/** Exponential moving average (TensorBoard's debiased form) of ``ys`` with weight ``w`` in [0, 1). */
export function ema(ys, w) {
  const out = [];
  let last = 0, count = 0;
  for (const y of ys) {
    if (y === null || !Number.isFinite(y)) { out.push(null); continue; }
    last = last * w + (1 - w) * y;
    count++;
    out.push(last / (1 - Math.pow(w, count)));
  }
  return out;
}

/** A zoom from the URL ("start:end", indices, end past start), or null for none or one that is not. */
export function zoomRange(text) {
  const m = /^(\d{1,15}):(\d{1,15})$/.exec(text || "");
  if (!m) return null;
  const [a, b] = [Number(m[1]), Number(m[2])];
  return b > a ? [a, b] : null;
}

export function Chart({ prefix, metric, field, rows, state }) {
  const box = useRef(null);
  const plot = useRef(null);
  const series = useRef(null);
  const drawnWith = useRef(null);  // the options the plot was made with: the same ones take setData
  const [info, setInfo] = useState("");
  const zoomKey = `z.${metric}/${field}`;  // a metric name holds no "/": one key per chart
  const zoom = zoomRange(state[zoomKey]);
  const live = zoom === null;  // following the whole series as it grows
  const [start, end] = live ? [0, rows] : zoom;
  const smooth = Number(state.smooth || 0);
  const smoothing = state.sm === "mean" ? "mean" : "ema";
  const logScale = state.log === "1";
  const xAxis = X_AXES.includes(state.x) ? state.x : "index";
  const pixels = () => Math.max(200, box.current.clientWidth || 600);

  const draw = (s) => {
    if (!window.uPlot) return;
    let xs = xValues(s, xAxis);
    let shownAxis = xAxis;
    if (xs === null) { xs = s.idx; shownAxis = "index"; }
    series.current = { ...s, xs, axis: shownAxis };
    const data = [xs, s.hi, s.lo, s.ys];
    if (smooth > 0) {  // drawn over the line, never instead of it
      data.push(smoothing === "mean" ? runningMean(s.ys, Math.max(2, Math.round(1 / (1 - smooth))))
        : ema(s.ys, Math.min(0.999, smooth)));
    }
    const fallback = shownAxis !== xAxis ? ` · no ordered ${xAxis} here: index` : "";
    setInfo(`${s.raw ? "raw" : "min/max"} · ${s.idx.length} points · indices ${start}–${s.upto - 1}${fallback}`);
    const made = JSON.stringify([shownAxis, smooth, smoothing, logScale, field]);
    if (plot.current && drawnWith.current === made) {  // new points only: the plot stays, as do its cursor and legend
      plot.current.setData(data);
      return;
    }
    const lines = [{ label: shownAxis, value: shownAxis === "wall" ? (u, v) => (v === null ? "" : new Date(v * 1000).toISOString()) : undefined },
      { label: "max", stroke: "rgba(80,120,200,0.35)", width: 1 },
      { label: "min", stroke: "rgba(80,120,200,0.35)", width: 1 },
      { label: field, stroke: "rgb(40,90,200)", width: 1.5 }];
    if (smooth > 0) lines.push({ label: smoothing === "mean" ? "running mean" : "EMA", stroke: "rgb(230,120,30)", width: 2 });
    const options = {
      width: pixels(), height: 220, series: lines, axes: axes(), bands: [{ series: [1, 2], fill: "rgba(80,120,200,0.15)" }],
      scales: { x: { time: shownAxis === "wall" }, y: logScale ? { distr: 3 } : {} },
      legend: { live: true },
      cursor: { drag: { x: true, y: false } },
      hooks: { setSelect: [(u) => {
        if (u.select.width < 2) return;
        // the selection in x, back to an index range: directly on the index axis, else from the
        // point holding its left edge to the one holding its right edge
        const { xs: shown, firsts, lasts } = series.current;
        const lo = u.posToVal(u.select.left, "x"), hi = u.posToVal(u.select.left + u.select.width, "x");
        let range;
        if (shownAxis === "index") range = [Math.max(0, Math.floor(lo)), Math.ceil(hi) + 1];
        else {
          const a = shown.findIndex((v) => v >= lo);
          let b = shown.findIndex((v) => v > hi);
          if (a < 0) return;
          if (b < 0) b = shown.length - 1;
          range = [firsts[a], lasts[b] + 1];
        }
        setState({ [zoomKey]: `${range[0]}:${range[1]}` });
      }] },
    };
    if (plot.current) plot.current.destroy();
    box.current.textContent = "";
    plot.current = new window.uPlot(options, data, box.current);
    drawnWith.current = made;
    box.current.parentElement.__uplot = plot.current;  // for the browser tests and the console
  };

  // the whole visible range: on opening, zooming, and any change of how it is drawn; a zoomed range
  // is asked for again only while the series grows inside it
  const zoomedEnd = live ? -1 : Math.min(end, rows);
  const extending = useRef(false);
  const generation = useRef(0);  // one more for each whole fetch: an extension begun before it is dropped
  // the latest render's view and functions, for catch-ups an earlier render began (its own draw would
  // draw its own options)
  const latest = useRef(null);
  // a live run: only the new points, appended (or the whole range when they no longer fit as held),
  // and again while more arrived meanwhile
  const catchUp = () => {
    const s = series.current;
    const { rows: target, live: following, start: from } = latest.current;
    if (!following || !s || target <= s.upto || extending.current) return;
    extending.current = true;
    const begun = generation.current;
    extendSeries(s, prefix, metric, field, from, target, pixels())
      .then((t) => t || fetchSeries(prefix, metric, field, from, target, pixels()))
      .then((t) => { if (generation.current === begun) latest.current.draw(t); })  // only draws change the series
      .catch((e) => setInfo(e.message))
      .finally(() => { extending.current = false; if (series.current !== s) latest.current.catchUp(); });
  };
  latest.current = { rows, live, start, draw, catchUp };
  useEffect(() => {
    let cancelled = false;
    generation.current += 1;
    fetchSeries(prefix, metric, field, start, Math.min(end, rows), pixels())
      .then((s) => { if (!cancelled) { draw(s); latest.current.catchUp(); } })
      .catch((e) => setInfo(e.message));
    return () => { cancelled = true; };
  }, [prefix, metric, field, start, zoomedEnd, smooth, smoothing, logScale, xAxis]);
  useEffect(catchUp, [rows]);
  useEffect(() => () => { if (plot.current) plot.current.destroy(); }, []);
  const pan = (direction) => {  // by half the visible range, within the series
    const span = end - start;
    const a = Math.max(0, Math.min(rows - span, start + direction * Math.ceil(span / 2)));
    setState({ [zoomKey]: `${a}:${a + span}` });
  };
  const png = () => {
    if (!plot.current) return;
    plot.current.ctx.canvas.toBlob((blob) => download(`${metric}-${field}.png`, blob), "image/png");
  };
  const csv = () => {
    const s = series.current;
    if (!s) return;
    const lines = ["index_first,index_last,step,wall_time,min,max,last"];
    for (let i = 0; i < s.idx.length; i++) {
      lines.push([s.firsts[i], s.lasts[i], s.steps[i], s.times[i], s.lo[i], s.hi[i], s.ys[i]].map(csvCell).join(","));
    }
    download(`${metric}-${field}.csv`, new Blob([lines.join("\n") + "\n"], { type: "text/csv" }));
  };
  return html`<figure class="chart" data-metric=${metric} data-field=${field}>
    <figcaption>${metric} · ${field} <span class="muted">${info}</span>
      ${zoom && html`<button class="link" onClick=${() => pan(-1)} aria-label="pan left">◀</button><button
        class="link" onClick=${() => pan(1)} aria-label="pan right">▶</button><button class="link"
        onClick=${() => setState({ [zoomKey]: null })}>reset zoom</button>`}
      <button class="link" onClick=${png}>PNG</button><button class="link" onClick=${csv}>CSV</button>
    </figcaption>
    <div class="plot" ref=${box}></div>
  </figure>`;
}
