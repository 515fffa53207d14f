// One chart per metric field, drawn by uPlot from the server's buckets: a min/max band so that no
// spike is ever hidden, the line through each bucket's last value, optional smoothing (EMA or running
// mean) drawn over it, log scale, and zoom and pan that ask the server again for the visible range
// (raw rows once the range holds at most two points per pixel). What it reads and when is series.js's;
// the smoothing, the zoom's arithmetic and the points' shape are plain modules beside it.
import { html, useEffect, useRef, useState } from "./vendor/htm-preact-3.1.1.mjs";
import { runPath, saveBlob, sharedGet } from "./api.js";
import { setState } from "./state.js";
import { limits } from "./limits.js";
import { useSeries } from "./series.js";
import { ema, runningMean } from "./smoothing.js";
import { panRange, selectionRange, zoomRange } from "./zoom.js";
import { X_AXES, extentOf, sharedRange, xAxisOf } from "./xaxis.js";
import { formatAxisValue } from "./format.js";


/** uPlot axes in the page's colours (light or dark, as the system is), the y axis as wide as its
 * longest tick label (100,000 is not cut to "0,000"). */
export function axes() {
  const css = getComputedStyle(document.documentElement);
  const text = css.getPropertyValue("--muted").trim() || "#666";
  const line = css.getPropertyValue("--line").trim() || "#ddd";
  const axis = { stroke: text, grid: { stroke: line, width: 1 }, ticks: { stroke: line, width: 1 } };
  const size = (u, values) => (values ? Math.max(44, 16 + 8 * Math.max(...values.map((v) => String(v).length))) : 50);
  // ticks as people write numbers (0.001, 1.5k): never uPlot's fixed decimals for a log or tiny scale
  const ticks = (u, splits) => splits.map((v) => (v === null ? "" : formatAxisValue(v)));
  return [{ ...axis }, { ...axis, size, values: ticks }];
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

/** [lo, hi] widened to the range shared with the other charts of the group (when there is one). */
function unionWith(group, lo, hi) {
  const union = group ? group.union() : null;
  if (!union) return [lo, hi];
  const a = Math.min(lo, union[0]), b = Math.max(hi, union[1]);
  return a === b ? [a - 1, b + 1] : [a, b];
}

function csvCell(v) {
  return v === null || v === undefined ? "" : String(v);
}

export function Chart({ prefix, metric, field, rows, state, stepField = "step" }) {
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
  const xAxis = xAxisOf(state);
  const asked = X_AXES.includes(state.x);  // chosen, not the default: a fallback is worth saying
  const chartId = useRef(Math.random()).current;
  const group = useRef(null);  // the charts of this run on this axis: one x range, one cursor
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
    const fallback = shownAxis !== xAxis && asked ? ` · no ordered ${xAxis} here: index` : "";
    const shared = live && shownAxis !== "index" ? sharedRange(`${prefix}|${shownAxis}`) : null;
    if (group.current && group.current !== shared) group.current.leave(chartId);
    group.current = shared;
    setInfo(`${s.raw ? "raw" : "min/max"} · ${s.idx.length} points · indices ${start}–${s.upto - 1}${fallback}`);
    const made = JSON.stringify([shownAxis, smooth, smoothing, logScale, field, shared !== null]);
    const extent = extentOf(xs);
    if (shared) shared.set(chartId, extent ? extent[0] : NaN, extent ? extent[1] : NaN);
    if (plot.current && drawnWith.current === made) {  // new points only: the plot stays, as do its cursor and legend
      plot.current.setData(data);
      return;
    }
    const xLabel = shownAxis === "step" ? stepField : shownAxis;
    const lines = [{ label: xLabel, value: shownAxis === "wall" ? (u, v) => (v === null ? "" : new Date(v * 1000).toISOString())
      : (u, v) => (v === null ? "" : formatAxisValue(v)) },
      { label: "max", stroke: "rgba(80,120,200,0.35)", width: 1 },
      { label: "min", stroke: "rgba(80,120,200,0.35)", width: 1 },
      { label: field, stroke: "rgb(40,90,200)", width: 1.5 }];
    if (smooth > 0) lines.push({ label: smoothing === "mean" ? "running mean" : "EMA", stroke: "rgb(230,120,30)", width: 2 });
    const options = {
      width: pixels(), height: 220, series: lines, axes: axes(), bands: [{ series: [1, 2], fill: "rgba(80,120,200,0.15)" }],
      // a shared axis spans every chart of the run (the union of their extents, group.current)
      scales: { x: { time: shownAxis === "wall", range: shared ? (u, lo, hi) => unionWith(group.current, lo, hi) : undefined },
        y: logScale ? { distr: 3 } : {} },
      legend: { live: true },
      cursor: { drag: { x: true, y: false }, sync: shared ? { key: `${prefix}|${shownAxis}` } : undefined },
      hooks: { setSelect: [(u) => {
        if (u.select.width < 2) return;
        const lo = u.posToVal(u.select.left, "x"), hi = u.posToVal(u.select.left + u.select.width, "x");
        const range = selectionRange(shownAxis, lo, hi, series.current);
        if (range === null) return;
        setState({ [zoomKey]: `${range[0]}:${range[1]}` });
      }] },
    };
    if (plot.current) plot.current.destroy();
    box.current.textContent = "";
    plot.current = new window.uPlot(options, data, box.current);
    drawnWith.current = made;
    if (shared) {
      shared.listen(chartId, (range) => { if (plot.current && group.current === shared) plot.current.setScale("x", { min: range[0], max: range[1] }); });
    }
    box.current.parentElement.__uplot = plot.current;  // for the browser tests and the console
  };

  // the whole visible range: on opening, zooming, and any change of how it is drawn; a zoomed range
  // is read again only while the series grows inside it; a live one follows the run's new points
  const zoomedEnd = live ? -1 : Math.min(end, rows);
  const source = { get: sharedGet, path: runPath(prefix, "/metrics/" + encodeURIComponent(metric)), limits: limits(), stepField };
  useSeries(source, field, { start, end, live, rows },
    [prefix, metric, field, start, zoomedEnd, smooth, smoothing, logScale, xAxis],
    { draw, pixels, fail: (e) => setInfo(e.message) });
  useEffect(() => () => {
    if (group.current) group.current.leave(chartId);
    if (plot.current) plot.current.destroy();
  }, []);
  const pan = (direction) => {  // by half the visible range, within the series
    const [a, b] = panRange([start, end], rows, direction);
    setState({ [zoomKey]: `${a}:${b}` });
  };
  const png = () => {
    if (!plot.current) return;
    plot.current.ctx.canvas.toBlob((blob) => saveBlob(`${metric}-${field}.png`, blob), "image/png");
  };
  const csv = () => {
    const s = series.current;
    if (!s) return;
    const lines = ["index_first,index_last,step,wall_time,min,max,last"];
    for (let i = 0; i < s.idx.length; i++) {
      lines.push([s.firsts[i], s.lasts[i], s.steps[i], s.times[i], s.lo[i], s.hi[i], s.ys[i]].map(csvCell).join(","));
    }
    saveBlob(`${metric}-${field}.csv`, new Blob([lines.join("\n") + "\n"], { type: "text/csv" }));
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
