// Parallel coordinates across compared runs, on uPlot: an axis per param or metric that varies (a
// constant one says nothing; a metric's step is no axis), each scaled on its own (log where its values
// are log-spaced) with its tick values written beside it, a line per run coloured by its run or by a
// chosen metric, the run under the cursor named on hover, and brushing: a box dragged over axes keeps
// the runs within its range on each (the comparison's table then shows only those).
import { html, useEffect, useRef, useState } from "./vendor/htm-preact-3.1.1.mjs";
import { axes } from "./chart.js";
import { formatAxisValue, formatValue } from "./format.js";
import { faded } from "./palette.js";
import { columnLabel, isLogSpaced, normalised, numbers } from "./plotcolumns.js";
import { colorsOf, offset, showTip } from "./scatter.js";

const TICKS = 5;
const CHAR_PX = 7;  // an axis label is cut to the room between axes (its whole name on hover)

/** Tick values of an axis over [lo, hi]: round numbers (1, 2 or 5 times a power of ten) about
 * ``TICKS`` of them, or on a log axis its powers of ten (its ends where it spans less than a decade). */
export function niceTicks(lo, hi, log) {
  if (!(hi > lo)) return [lo];
  if (log) {
    const out = [];
    for (let p = Math.ceil(Math.log10(lo) - 1e-9); p <= Math.floor(Math.log10(hi) + 1e-9) && out.length < 40; p++) out.push(Math.pow(10, p));
    const step = Math.ceil(out.length / TICKS);
    const kept = out.filter((_, i) => i % step === 0);
    return kept.length >= 2 ? kept : [lo, hi];
  }
  const raw = (hi - lo) / (TICKS - 1);
  const power = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9 && out.length < 20; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/** Where ``v`` lies in [0, 1] on an axis over [lo, hi] (log: in decades). */
function positionOf(v, lo, hi, log) {
  if (hi === lo) return 0.5;
  return log ? (Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo)) : (v - lo) / (hi - lo);
}

/** A label cut to ``chars`` characters ("learning_r…"). */
function cut(text, chars) {
  return text.length <= chars ? text : text.slice(0, Math.max(1, chars - 1)) + "…";
}

export function Parallel({ runs, columns, colorBy, picked, onPick }) {
  const box = useRef(null);
  const tip = useRef(null);
  const plot = useRef(null);
  const [brushes, setBrushes] = useState({});  // axis column -> [lo, hi] in [0, 1]
  const brushed = useRef(brushes);  // the brushes whose runs were last picked
  const key = columns.join(",");
  useEffect(() => setBrushes({}), [key]);
  useEffect(() => {
    if (!window.uPlot || !box.current) return;
    box.current.textContent = "";
    if (plot.current) { plot.current.destroy(); plot.current = null; }
    if (columns.length < 2) return;
    const raw = columns.map((c) => numbers(runs, c));
    const logs = raw.map((v) => isLogSpaced(v));
    const scaled = raw.map((v, a) => normalised(v, logs[a]));
    const ranges = raw.map((v) => { const p = v.filter((x) => x !== null); return [Math.min(...p), Math.max(...p)]; });
    const colors = colorsOf(runs, colorBy);
    const within = (i) => Object.entries(brushes).every(([c, [lo, hi]]) => {
      const v = scaled[columns.indexOf(c)]?.[i];
      return v !== null && v !== undefined && v >= lo && v <= hi;
    });
    const drawAxes = (u) => {  // each axis: its line, its ticks (its own values), its brush
      const ctx = u.ctx, ratio = window.devicePixelRatio || 1;
      const css = getComputedStyle(document.documentElement);
      ctx.save();
      ctx.font = `${11 * ratio}px system-ui, sans-serif`;
      ctx.textBaseline = "middle";
      columns.forEach((c, a) => {
        const px = u.bbox.left + u.valToPos(a, "x") * ratio;
        ctx.strokeStyle = css.getPropertyValue("--muted").trim() || "#888";
        ctx.lineWidth = ratio;
        ctx.beginPath(); ctx.moveTo(px, u.bbox.top); ctx.lineTo(px, u.bbox.top + u.bbox.height); ctx.stroke();
        ctx.fillStyle = css.getPropertyValue("--fg").trim() || "#222";
        ctx.textAlign = a === columns.length - 1 ? "right" : "left";
        const [lo, hi] = ranges[a];
        for (const v of niceTicks(lo, hi, logs[a])) {
          const py = u.bbox.top + u.valToPos(positionOf(v, lo, hi, logs[a]), "y") * ratio;
          ctx.fillRect(px - 3 * ratio, py, 6 * ratio, ratio);  // the tick
          ctx.fillText(formatAxisValue(v), px + (a === columns.length - 1 ? -5 : 5) * ratio, py);
        }
        const b = brushes[c];
        if (b) {
          ctx.fillStyle = "rgba(40,90,200,0.2)";
          const top = u.bbox.top + u.valToPos(b[1], "y") * ratio, bottom = u.bbox.top + u.valToPos(b[0], "y") * ratio;
          ctx.fillRect(px - 6 * ratio, top, 12 * ratio, bottom - top);
        }
      });
      ctx.restore();
    };
    const hover = (u) => {  // the run whose line passes nearest the cursor on the nearest axis
      const { left, top } = u.cursor;
      if (left < 0) { showTip(tip.current, ""); box.current.dataset.hover = ""; return; }
      const a = Math.max(0, Math.min(columns.length - 1, Math.round(u.posToVal(left, "x"))));
      const t = u.posToVal(top, "y");
      let best = null;
      runs.forEach((r, i) => {
        const v = scaled[a][i];
        if (v !== null && Math.abs(v - t) < 0.05 && (best === null || Math.abs(v - t) < Math.abs(scaled[a][best] - t))) best = i;
      });
      box.current.dataset.hover = best === null ? "" : runs[best].prefix;
      showTip(tip.current, best === null ? "" : `${runs[best].name}\n${columnLabel(columns[a])} = ${formatValue(raw[a][best])}`,
        left + offset(u).left, top + offset(u).top);
    };
    const brush = (u) => {  // the axes under the dragged box keep the runs within its height
      const s = u.select;
      if (s.width < 1 && s.height < 3) return;
      const [x0, x1] = [u.posToVal(s.left, "x"), u.posToVal(s.left + s.width, "x")];
      const [lo, hi] = [u.posToVal(s.top + s.height, "y"), u.posToVal(s.top, "y")];
      const next = { ...brushes };
      columns.forEach((c, a) => { if (a >= x0 - 0.15 && a <= x1 + 0.15) next[c] = [lo, hi]; });
      setBrushes(next);
    };
    const width = Math.max(300, box.current.clientWidth || 900);
    const room = Math.floor(width / columns.length / CHAR_PX);
    const [xAxis] = axes();
    const series = [{ label: "axis" }, ...runs.map((r, i) => ({
      label: r.name, stroke: picked && !picked.has(r.prefix) ? faded(colors[i], 0.15) : colors[i],
      width: 1.5, points: { show: false } }))];
    const options = {
      width, height: 320, legend: { show: false },
      padding: [16, 40, 0, 40],
      scales: { x: { time: false, range: () => [-0.05, columns.length - 0.95] }, y: { range: () => [-0.03, 1.03] } },
      axes: [{ ...xAxis, grid: { show: false }, splits: () => columns.map((_, a) => a),
        values: (u, splits) => splits.map((a) => cut(columnLabel(columns[a]), room)) }, { show: false }],
      series,
      cursor: { points: { show: false }, drag: { x: true, y: true, setScale: false } },
      hooks: { draw: [drawAxes], setCursor: [hover], setSelect: [brush] },
    };
    const data = [columns.map((_, a) => a), ...runs.map((_, i) => scaled.map((col) => col[i]))];
    plot.current = new window.uPlot(options, data, box.current);
    box.current.parentElement.__uplot = plot.current;
    box.current.title = columns.map(columnLabel).join(" · ");  // every axis's whole name
    if (brushed.current !== brushes) {  // a new brush picks the runs it keeps (a cleared one: picks nothing)
      brushed.current = brushes;
      if (Object.keys(brushes).length) onPick(new Set(runs.filter((_, i) => within(i)).map((r) => r.prefix)));
    }
  }, [runs, key, colorBy, picked, brushes]);
  useEffect(() => () => { if (plot.current) plot.current.destroy(); }, []);
  return html`<section class="parallel"><h3>Parallel coordinates <span class="muted">${columns.length} axes</span>
      ${Object.keys(brushes).length > 0 && html`<button class="link" onClick=${() => { setBrushes({}); onPick(null); }}>clear brushes</button>`}</h3>
    <div class="plot-box"><div class="plot" ref=${box}></div><div class="tip" ref=${tip} hidden></div></div></section>`;
}
