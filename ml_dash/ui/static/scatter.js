// A param-vs-metric scatter across compared runs, on uPlot: real axes with readable ticks, log where
// the values are log-spaced (or asked for), a point per run coloured by its run or by a chosen metric,
// the run under the cursor named on hover, and a dragged box that picks the runs inside it (the
// comparison's table then shows only those). Text is drawn on the canvas or set as textContent.
import { html, useEffect, useRef, useState } from "./vendor/htm-preact-3.1.1.mjs";
import { setState } from "./state.js";
import { axes } from "./chart.js";
import { formatAxisValue, formatValue } from "./format.js";
import { runColor, scaleColor } from "./palette.js";
import { columnLabel, isLogSpaced, normalised, numbers } from "./plotcolumns.js";

const HOVER_PX = 12;

/** Log or linear for an axis: the URL's choice ("1", "0"), else log where the values are log-spaced. */
export function logAxis(choice, values) {
  return choice === "1" ? values.every((v) => v === null || v > 0) : choice === "0" ? false : isLogSpaced(values);
}

/** uPlot axes with ticks as people write numbers, both of them, each named. */
export function plotAxes(xName, yName) {
  const [x, y] = axes();
  const ticks = (u, splits) => splits.map((v) => (v === null ? "" : formatAxisValue(v)));
  return [{ ...x, values: ticks, label: xName, labelSize: 18 }, { ...y, values: ticks, label: yName, labelSize: 18 }];
}

/** A scale's range: the values' own and 6% more on each side, so no point sits half outside the plot. */
export function padded(log) {
  return (u, lo, hi) => {
    if (lo === null || hi === null) return [0, 1];
    if (log) {
      const f = lo === hi ? 2 : Math.pow(hi / lo, 0.06);
      return [lo / f, hi * f];
    }
    const pad = lo === hi ? Math.abs(lo) || 1 : (hi - lo) * 0.06;
    return [lo - pad, hi + pad];
  };
}

/** The tooltip of a plot: a box over it whose text is set, never parsed. */
export function showTip(tip, text, left, top) {
  if (!tip) return;
  if (!text) { tip.hidden = true; return; }
  tip.hidden = false;
  tip.textContent = text;
  tip.style.left = left + 12 + "px";
  tip.style.top = top + 12 + "px";
}

/** Where the plot's area lies in the box around it (the tooltip's origin), in CSS pixels. */
export function offset(u) {
  const over = u.over.getBoundingClientRect(), outer = u.root.parentElement.parentElement.getBoundingClientRect();
  return { left: over.left - outer.left, top: over.top - outer.top };
}

/** The colours of the runs: each run's own, or by ``colorBy``'s value on the viridis scale. */
export function colorsOf(runs, colorBy) {
  if (!colorBy) return runs.map((_, i) => runColor(i));
  const values = numbers(runs, colorBy);
  return normalised(values, isLogSpaced(values)).map(scaleColor);
}

export function ColorChoice({ columns, state }) {
  return html`<label>colour by <select name="pc" value=${state.pc || ""} onChange=${(e) => setState({ pc: e.target.value || null })}>
    <option value="">run</option>${columns.filter((c) => c.startsWith("metric:")).map((c) => html`<option value=${c}>${columnLabel(c)}</option>`)}
  </select></label>`;
}

export function Scatter({ runs, columns, state, picked, onPick }) {
  const box = useRef(null);
  const tip = useRef(null);
  const plot = useRef(null);
  const [info, setInfo] = useState("");
  const x = columns.includes(state.sx) ? state.sx : columns.find((c) => c.startsWith("param:")) || columns[0] || "";
  const y = columns.includes(state.sy) ? state.sy : columns.find((c) => c.startsWith("metric:")) || columns[1] || "";
  const colorBy = columns.includes(state.pc) ? state.pc : "";
  useEffect(() => {
    if (!window.uPlot || !box.current || !x || !y) return;
    const xs = numbers(runs, x), ys = numbers(runs, y);
    const logX = logAxis(state.sxlog, xs), logY = logAxis(state.sylog, ys);
    const colors = colorsOf(runs, colorBy);
    // the runs with both values (a log axis takes positive ones only), by x: uPlot wants x in order
    const points = runs.map((r, i) => i).filter((i) => xs[i] !== null && ys[i] !== null
      && (!logX || xs[i] > 0) && (!logY || ys[i] > 0)).sort((a, b) => xs[a] - xs[b]);
    setInfo(`${points.length} of ${runs.length} runs${logX ? " · x log" : ""}${logY ? " · y log" : ""}`);
    const spot = (u, i) => [u.valToPos(xs[i], "x"), u.valToPos(ys[i], "y")];
    const draw = (u) => {  // a point per run, in its colour; runs outside a brush faded
      const ctx = u.ctx, ratio = window.devicePixelRatio || 1;
      ctx.save();
      for (const i of points) {
        const [px, py] = spot(u, i);
        ctx.globalAlpha = picked && !picked.has(runs[i].prefix) ? 0.2 : 0.9;
        ctx.fillStyle = colors[i];
        ctx.beginPath();
        ctx.arc(u.bbox.left + px * ratio, u.bbox.top + py * ratio, 5 * ratio, 0, 2 * Math.PI);
        ctx.fill();
      }
      ctx.restore();
    };
    const hover = (u) => {  // the run nearest the cursor, within HOVER_PX
      const { left, top } = u.cursor;
      let best = null, bestD = HOVER_PX * HOVER_PX;
      if (left >= 0) for (const i of points) {
        const [px, py] = spot(u, i);
        const d = (px - left) ** 2 + (py - top) ** 2;
        if (d < bestD) { best = i; bestD = d; }
      }
      box.current.dataset.hover = best === null ? "" : runs[best].prefix;
      showTip(tip.current, best === null ? "" : `${runs[best].name}\n${columnLabel(x)} = ${formatValue(xs[best])}\n`
        + `${columnLabel(y)} = ${formatValue(ys[best])}` + (colorBy ? `\n${columnLabel(colorBy)} = ${formatValue(numbers([runs[best]], colorBy)[0])}` : ""),
      left + offset(u).left, top + offset(u).top);
    };
    const brush = (u) => {  // the runs inside the dragged box are picked; a click (no box) picks all again
      const s = u.select;
      if (s.width < 3 && s.height < 3) return;
      const [x0, x1] = [u.posToVal(s.left, "x"), u.posToVal(s.left + s.width, "x")];
      const [y0, y1] = [u.posToVal(s.top + s.height, "y"), u.posToVal(s.top, "y")];
      onPick(new Set(points.filter((i) => xs[i] >= x0 && xs[i] <= x1 && ys[i] >= y0 && ys[i] <= y1).map((i) => runs[i].prefix)));
    };
    const width = Math.max(260, Math.min(box.current.clientWidth || 640, 720));
    const options = {
      width, height: 340, legend: { show: false },
      scales: { x: { time: false, distr: logX ? 3 : 1, range: padded(logX) }, y: { distr: logY ? 3 : 1, range: padded(logY) } },
      axes: plotAxes(columnLabel(x), columnLabel(y)),
      series: [{ label: columnLabel(x) }, { label: columnLabel(y), paths: () => null, points: { show: false } }],
      cursor: { points: { show: false }, drag: { x: true, y: true, setScale: false } },
      hooks: { draw: [draw], setCursor: [hover], setSelect: [brush] },
    };
    if (plot.current) plot.current.destroy();
    box.current.textContent = "";
    plot.current = new window.uPlot(options, [points.map((i) => xs[i]), points.map((i) => ys[i])], box.current);
    box.current.parentElement.__uplot = plot.current;
  }, [runs, x, y, colorBy, state.sxlog, state.sylog, picked]);
  useEffect(() => () => { if (plot.current) plot.current.destroy(); }, []);
  const option = (c) => html`<option value=${c}>${columnLabel(c)}</option>`;
  const logChoice = (key) => html`<select name=${key} value=${state[key] || ""} onChange=${(e) => setState({ [key]: e.target.value || null })}>
    <option value="">auto</option><option value="1">log</option><option value="0">linear</option></select>`;
  return html`<section class="scatter"><h3>Scatter <span class="muted">${info}</span></h3>
    <div class="toolbar">
      <label>x <select name="sx" value=${x} onChange=${(e) => setState({ sx: e.target.value })}>${columns.map(option)}</select></label>
      ${logChoice("sxlog")}
      <label>y <select name="sy" value=${y} onChange=${(e) => setState({ sy: e.target.value })}>${columns.map(option)}</select></label>
      ${logChoice("sylog")}
    </div>
    <div class="plot-box"><div class="plot" ref=${box}></div><div class="tip" ref=${tip} hidden></div></div></section>`;
}
