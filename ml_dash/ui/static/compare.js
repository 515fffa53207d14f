// Comparing runs: their metrics overlaid (each run's line and min/max band), their params side by
// side with the differences marked, a param-vs-metric scatter and parallel coordinates.
import { html, useEffect, useMemo, useRef, useState } from "./vendor/htm-preact-3.1.1.mjs";
import { num, sharedGet, wholeRun } from "./api.js";
import { setState } from "./state.js";
import { axes } from "./chart.js";
import { limits } from "./limits.js";
import { StatusBadge, valueOf } from "./runs.js";
import { seriesOfBuckets } from "./series_points.js";
import { ShowMore, ShownBar, useShown } from "./shown.js";

const COLORS = ["#285ac8", "#d9480f", "#2b8a3e", "#862e9c", "#c2255c", "#e67700", "#0b7285", "#5c940d",
  "#364fc7", "#a61e4d"];
const color = (i) => COLORS[i % COLORS.length];
const fade = (hex) => hex + "26";  // the band: the run's colour, mostly transparent

function OverlayChart({ runs, metric, field, charted, state }) {
  const box = useRef(null);
  const plot = useRef(null);
  const [info, setInfo] = useState("");
  useEffect(() => {
    let cancelled = false;
    const width = Math.max(300, box.current.clientWidth || 700);
    // every run's buckets in one request, shared by the charts of the metric's fields
    // a bucket a pixel, within the server's caps: per run, and over all the runs of the request
    const { max_buckets: maxBuckets, max_compared_buckets: maxAll } = limits();
    const buckets = Math.max(1, Math.min(Math.floor(width), maxBuckets, Math.floor(maxAll / runs.length)));
    const query = new URLSearchParams({ runs: runs.map((r) => r.prefix).join(","), buckets: String(buckets),
      fields: charted.join(",") });
    sharedGet(`/api/v1/compare/metrics/${encodeURIComponent(metric)}?${query.toString()}`)
      .then((out) => runs.map((r) => seriesOfBuckets(out.runs[r.prefix] || [], field)))
      .then((all) => {
        if (cancelled || !window.uPlot) return;
        const tables = all.map((s) => [s.idx, s.ys, s.hi, s.lo]);
        const data = window.uPlot.join(tables);  // one x for every run; nulls where a run has no point
        const series = [{ label: "index" }];
        const bands = [];
        runs.forEach((r, i) => {
          const base = series.length;
          series.push({ label: r.name, stroke: color(i), width: 1.5, spanGaps: true });
          series.push({ label: r.name + " max", stroke: fade(color(i)), width: 1, spanGaps: true, show: true });
          series.push({ label: r.name + " min", stroke: fade(color(i)), width: 1, spanGaps: true });
          bands.push({ series: [base + 1, base + 2], fill: fade(color(i)) });
        });
        const options = { width, height: 260, series, bands, axes: axes(), scales: { x: { time: false },
          y: state.log === "1" ? { distr: 3 } : {} }, legend: { live: true } };
        if (plot.current) plot.current.destroy();
        box.current.textContent = "";
        plot.current = new window.uPlot(options, data, box.current);
        box.current.parentElement.__uplot = plot.current;
        setInfo(`${runs.length} runs · ${data[0].length} points`);
      }).catch((e) => setInfo(e.message));
    return () => { cancelled = true; };
  }, [runs, metric, field, state.log]);
  useEffect(() => () => { if (plot.current) plot.current.destroy(); }, []);
  return html`<figure class="chart overlay" data-metric=${metric} data-field=${field}>
    <figcaption>${metric} · ${field} <span class="muted">${info}</span></figcaption>
    <div class="plot" ref=${box}></div></figure>`;
}

function ParamsDiff({ runs, state }) {
  const keys = [...new Set(runs.flatMap((r) => Object.keys(r.params || {})))].sort();
  const shown = (v) => (v === undefined ? "—" : typeof v === "object" ? JSON.stringify(v) : String(v));
  const differs = (k) => new Set(runs.map((r) => shown((r.params || {})[k]))).size > 1;
  const onlyDiff = state.diff === "1";
  return html`<section class="diff"><h3>Params</h3>
    <label><input type="checkbox" checked=${onlyDiff} onChange=${(e) => setState({ diff: e.target.checked ? "1" : null })} />
      only the params that differ</label>
    <table><thead><tr><th></th>${runs.map((r, i) => html`<th style=${{ color: color(i) }}>${r.name}</th>`)}</tr></thead>
    <tbody>${keys.filter((k) => !onlyDiff || differs(k)).map((k) => html`<tr key=${k} class=${differs(k) ? "differs" : ""}>
      <th>${k}</th>${runs.map((r) => html`<td>${shown((r.params || {})[k])}</td>`)}</tr>`)}</tbody></table>
  </section>`;
}

/** Numbers of a column across runs ("param:lr", "metric:train/loss"), null where not a number. */
function numbers(runs, column) {
  return runs.map((r) => { const v = num(valueOf(r, column)); return Number.isFinite(v) ? v : null; });
}

function drawAxesScatter(canvas, xs, ys, labels) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 40;
  ctx.clearRect(0, 0, w, h);
  const pts = xs.map((x, i) => [x, ys[i], i]).filter(([x, y]) => x !== null && y !== null);
  if (!pts.length) return;
  const [x0, x1] = [Math.min(...pts.map((p) => p[0])), Math.max(...pts.map((p) => p[0]))];
  const [y0, y1] = [Math.min(...pts.map((p) => p[1])), Math.max(...pts.map((p) => p[1]))];
  const sx = (x) => pad + (x1 === x0 ? 0.5 : (x - x0) / (x1 - x0)) * (w - 2 * pad);
  const sy = (y) => h - pad - (y1 === y0 ? 0.5 : (y - y0) / (y1 - y0)) * (h - 2 * pad);
  ctx.strokeStyle = "#999"; ctx.strokeRect(pad, pad, w - 2 * pad, h - 2 * pad);
  ctx.fillStyle = "#666"; ctx.font = "11px sans-serif";
  ctx.fillText(String(x0), pad, h - pad + 14); ctx.fillText(String(x1), w - pad - 40, h - pad + 14);
  ctx.fillText(String(y1), 2, pad + 4); ctx.fillText(String(y0), 2, h - pad);
  for (const [x, y, i] of pts) {
    ctx.fillStyle = color(i);
    ctx.beginPath(); ctx.arc(sx(x), sy(y), 5, 0, 2 * Math.PI); ctx.fill();
    ctx.fillText(labels[i], sx(x) + 7, sy(y) - 4);  // canvas text: drawn, never parsed
  }
}

function Scatter({ runs, columns, state }) {
  const canvas = useRef(null);
  const x = state.sx || columns.find((c) => c.startsWith("param:")) || "";
  const y = state.sy || columns.find((c) => c.startsWith("metric:")) || "";
  useEffect(() => {
    if (canvas.current) drawAxesScatter(canvas.current, numbers(runs, x), numbers(runs, y), runs.map((r) => r.name));
  }, [runs, x, y]);
  return html`<section class="scatter"><h3>Scatter</h3>
    <select name="sx" value=${x} onChange=${(e) => setState({ sx: e.target.value })}>${columns.map((c) => html`<option value=${c}>${c}</option>`)}</select>
    against <select name="sy" value=${y} onChange=${(e) => setState({ sy: e.target.value })}>${columns.map((c) => html`<option value=${c}>${c}</option>`)}</select>
    <div><canvas ref=${canvas} width="520" height="320"></canvas></div></section>`;
}

function Parallel({ runs, columns }) {
  const canvas = useRef(null);
  const axes = columns.filter((c) => numbers(runs, c).some((v) => v !== null));
  useEffect(() => {
    const el = canvas.current;
    if (!el) return;
    const ctx = el.getContext("2d");
    const w = el.width, h = el.height, pad = 30;
    ctx.clearRect(0, 0, w, h);
    if (axes.length < 2) return;
    const step = (w - 2 * pad) / (axes.length - 1);
    const scaled = axes.map((c) => {
      const v = numbers(runs, c);
      const present = v.filter((x) => x !== null);
      const lo = Math.min(...present), hi = Math.max(...present);
      return v.map((x) => (x === null ? null : hi === lo ? 0.5 : (x - lo) / (hi - lo)));
    });
    ctx.font = "11px sans-serif";
    axes.forEach((c, a) => {
      ctx.strokeStyle = "#999"; ctx.beginPath(); ctx.moveTo(pad + a * step, pad); ctx.lineTo(pad + a * step, h - pad); ctx.stroke();
      ctx.fillStyle = "#666"; ctx.fillText(c.replace(/^(param|metric):/, ""), pad + a * step - 20, h - pad + 16);
    });
    runs.forEach((r, i) => {
      ctx.strokeStyle = color(i); ctx.lineWidth = 1.5; ctx.beginPath();
      let drawing = false;
      scaled.forEach((col, a) => {
        const v = col[i];
        if (v === null) { drawing = false; return; }
        const px = pad + a * step, py = h - pad - v * (h - 2 * pad);
        if (drawing) ctx.lineTo(px, py); else ctx.moveTo(px, py);
        drawing = true;
      });
      ctx.stroke();
    });
  }, [runs, axes.join(",")]);
  return html`<section class="parallel"><h3>Parallel coordinates</h3>
    <canvas ref=${canvas} width="900" height="300"></canvas></section>`;
}

/** An overlay chart per metric field: a page of them at a time behind a filter (shown.js). */
function OverlayCharts({ runs, fields, state }) {
  const view = useShown(fields, state, "f");
  return html`<${ShownBar} names=${fields} view=${view} state=${state} keyName="f" what="charts" />
    <section class="charts">${view.shown.map((f) => {
      const cut = f.lastIndexOf("/");
      const metric = f.slice(0, cut);
      // the metric's charted fields, the same for each of its charts: they share one request
      const charted = view.shown.filter((g) => g.slice(0, g.lastIndexOf("/")) === metric).map((g) => g.slice(g.lastIndexOf("/") + 1));
      return html`<${OverlayChart} key=${f} runs=${runs} metric=${metric} field=${f.slice(cut + 1)} charted=${charted}
        state=${state} />`;
    })}</section>
    <${ShowMore} view=${view} keyName="f" what="charts" />`;
}

export function Compare({ prefixes, state }) {
  const [runs, setRuns] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    const most = limits().max_compared_runs;
    if (prefixes.length > most) {
      setError(`${prefixes.length} runs in the URL: compare at most ${most} at once`);
      return;
    }
    Promise.all(prefixes.map((p) => wholeRun(p))).then(setRuns).catch((e) => setError(e.message));
  }, [prefixes.join(",")]);
  const fields = useMemo(() => {
    const out = new Set();
    for (const r of runs || []) for (const [m, f] of Object.entries(r.latest || {})) for (const k of Object.keys(f)) {
      if (k !== "_ts") out.add(m + "/" + k);
    }
    return [...out].sort();
  }, [runs]);
  if (error) return html`<p class="error">${error}</p>`;
  if (!runs) return html`<p class="muted">Loading…</p>`;
  const params = [...new Set(runs.flatMap((r) => Object.keys(r.params || {})))].sort().map((k) => "param:" + k);
  const columns = [...params, ...fields.map((f) => "metric:" + f)];
  return html`<article class="compare"><h2>Comparing ${runs.length} runs</h2>
    <ul class="legend">${runs.map((r, i) => html`<li key=${r.prefix}><span class="swatch" style=${{ background: color(i) }}></span>
      ${r.prefix} <${StatusBadge} status=${r.status} /></li>`)}</ul>
    <${OverlayCharts} runs=${runs} fields=${fields} state=${state} />
    <${ParamsDiff} runs=${runs} state=${state} />
    <${Scatter} runs=${runs} columns=${columns} state=${state} />
    <${Parallel} runs=${runs} columns=${columns} />
  </article>`;
}
