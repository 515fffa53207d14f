// Comparing runs: their metrics overlaid (each run's line and min/max band) with the run page's
// smoothing, log scale and x axis (controls.js), their params side by side with the differences marked,
// a param-vs-metric scatter (scatter.js) and parallel coordinates (parallel.js), whose brushing picks
// the runs the params table shows. Many runs stay told apart: 20 colours and more (palette.js), and
// legends that fold.
import { html, useEffect, useMemo, useRef, useState } from "./vendor/htm-preact-3.1.1.mjs";
import { sharedGet, wholeRun } from "./api.js";
import { setState } from "./state.js";
import { axes, xValues } from "./chart.js";
import { ChartControls } from "./controls.js";
import { limits } from "./limits.js";
import { StatusBadge } from "./runs.js";
import { seriesOfBuckets } from "./series_points.js";
import { ShowMore, ShownBar, useShown } from "./shown.js";
import { ema, runningMean } from "./smoothing.js";
import { formatAxisValue } from "./format.js";
import { faded, runColor } from "./palette.js";
import { plottableColumns } from "./plotcolumns.js";
import { Scatter, ColorChoice } from "./scatter.js";
import { Parallel } from "./parallel.js";
import { stepFieldOf, xAxisOf } from "./xaxis.js";

const color = runColor;
const fade = (hex) => faded(hex, 0.15);  // the band: the run's colour, mostly transparent
const FOLD_PAST = 8;  // more runs than this: the legends fold (a chart's own shows on demand)

/** ``ys`` smoothed as the controls ask (``state.smooth``, ``state.sm``), or as they are. */
function smoothed(ys, state) {
  const smooth = Number(state.smooth || 0);
  if (!(smooth > 0)) return ys;
  return state.sm === "mean" ? runningMean(ys, Math.max(2, Math.round(1 / (1 - smooth)))) : ema(ys, Math.min(0.999, smooth));
}

function OverlayChart({ runs, metric, field, charted, stepField, state }) {
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
      .then((out) => runs.map((r) => seriesOfBuckets(out.runs[r.prefix] || [], field, stepField)))
      .then((all) => {
        if (cancelled || !window.uPlot) return;
        // the axis asked for (the step by default), or the index where a run has no ordered one
        const asked = xAxisOf(state);
        const axis = all.every((s) => xValues(s, asked) !== null) ? asked : "index";
        // smoothed, as on the run page: the line is the smoothed one; the min/max band shows every spike
        const tables = all.map((s) => [xValues(s, axis), smoothed(s.ys, state), s.hi, s.lo]);
        const data = window.uPlot.join(tables);  // one x for every run; nulls where a run has no point
        const series = [{ label: axis === "step" ? stepField : axis,
          value: axis === "wall" ? (u, v) => (v === null ? "" : new Date(v * 1000).toISOString()) : (u, v) => (v === null ? "" : formatAxisValue(v)) }];
        const bands = [];
        runs.forEach((r, i) => {
          const base = series.length;
          series.push({ label: r.name, stroke: color(i), width: 1.5, spanGaps: true });
          series.push({ label: r.name + " max", stroke: fade(color(i)), width: 1, spanGaps: true, show: true });
          series.push({ label: r.name + " min", stroke: fade(color(i)), width: 1, spanGaps: true });
          bands.push({ series: [base + 1, base + 2], fill: fade(color(i)) });
        });
        // many runs: the legend folds below the chart (open on demand) instead of pushing it away
        const legendBox = box.current.parentElement.querySelector(".legend-fold");
        const options = { width, height: 260, series, bands, axes: axes(), scales: { x: { time: axis === "wall" },
          y: state.log === "1" ? { distr: 3 } : {} }, legend: { live: true } };
        if (runs.length > FOLD_PAST && legendBox) options.legend.mount = (u, el) => legendBox.appendChild(el);
        if (plot.current) plot.current.destroy();
        box.current.textContent = "";
        if (legendBox) legendBox.querySelectorAll(".u-legend").forEach((el) => el.remove());
        plot.current = new window.uPlot(options, data, box.current);
        box.current.parentElement.__uplot = plot.current;
        setInfo(`${runs.length} runs · ${data[0].length} points`);
      }).catch((e) => setInfo(e.message));
    return () => { cancelled = true; };
  }, [runs, metric, field, state.log, state.x, state.smooth, state.sm]);
  useEffect(() => () => { if (plot.current) plot.current.destroy(); }, []);
  return html`<figure class="chart overlay" data-metric=${metric} data-field=${field}>
    <figcaption>${metric} · ${field} <span class="muted">${info}</span></figcaption>
    <div class="plot" ref=${box}></div>
    ${runs.length > FOLD_PAST && html`<details class="legend-fold"><summary>legend (${runs.length} runs)</summary></details>`}</figure>`;
}

function ParamsDiff({ runs, state, colors }) {
  const keys = [...new Set(runs.flatMap((r) => Object.keys(r.params || {})))].sort();
  const shown = (v) => (v === undefined ? "—" : typeof v === "object" ? JSON.stringify(v) : String(v));
  const differs = (k) => new Set(runs.map((r) => shown((r.params || {})[k]))).size > 1;
  const onlyDiff = state.diff === "1";
  return html`<section class="diff"><h3>Params</h3>
    <label><input type="checkbox" checked=${onlyDiff} onChange=${(e) => setState({ diff: e.target.checked ? "1" : null })} />
      only the params that differ</label>
    <table><thead><tr><th></th>${runs.map((r, i) => html`<th style=${{ color: colors[i] }}>${r.name}</th>`)}</tr></thead>
    <tbody>${keys.filter((k) => !onlyDiff || differs(k)).map((k) => html`<tr key=${k} class=${differs(k) ? "differs" : ""}>
      <th>${k}</th>${runs.map((r) => html`<td>${shown((r.params || {})[k])}</td>`)}</tr>`)}</tbody></table>
  </section>`;
}

/** An overlay chart per metric field: a page of them at a time behind a filter (shown.js). */
function OverlayCharts({ runs, fields, steps, state }) {
  const view = useShown(fields, state, "f");
  return html`<${ShownBar} names=${fields} view=${view} state=${state} keyName="f" what="charts" />
    <section class="charts">${view.shown.map((f) => {
      const cut = f.lastIndexOf("/");
      const metric = f.slice(0, cut);
      // the metric's charted fields, the same for each of its charts: they share one request
      const charted = view.shown.filter((g) => g.slice(0, g.lastIndexOf("/")) === metric).map((g) => g.slice(g.lastIndexOf("/") + 1));
      return html`<${OverlayChart} key=${f} runs=${runs} metric=${metric} field=${f.slice(cut + 1)}
        charted=${[...charted, ...(steps[metric] ? [steps[metric]] : [])]} stepField=${steps[metric] || "step"} state=${state} />`;
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
  const [picked, setPicked] = useState(null);  // the runs a brush keeps (scatter, parallel), or null: all
  const [fields, steps] = useMemo(() => {  // every metric field but the step each metric is drawn against
    const out = new Set(), step = {};
    for (const r of runs || []) for (const [m, f] of Object.entries(r.latest || {})) {
      const s = stepFieldOf(Object.keys(f));
      if (s) step[m] = s;
      for (const k of Object.keys(f)) if (k !== "_ts" && k !== s) out.add(m + "/" + k);
    }
    return [[...out].sort(), step];
  }, [runs]);
  if (error) return html`<p class="error">${error}</p>`;
  if (!runs) return html`<p class="muted">Loading…</p>`;
  const params = [...new Set(runs.flatMap((r) => Object.keys(r.params || {})))].sort().map((k) => "param:" + k);
  // the axes worth drawing: numeric, varying across the runs (plotcolumns.js)
  const columns = plottableColumns(runs, [...params, ...fields.map((f) => "metric:" + f)]);
  const colors = runs.map((_, i) => color(i));
  const shown = picked ? runs.filter((r) => picked.has(r.prefix)) : runs;
  const legend = html`<ul class="legend">${runs.map((r, i) => html`<li key=${r.prefix} class=${picked && !picked.has(r.prefix) ? "unpicked" : ""}>
    <span class="swatch" style=${{ background: colors[i] }}></span>${r.prefix} <${StatusBadge} status=${r.status} /></li>`)}</ul>`;
  return html`<article class="compare"><h2>Comparing ${runs.length} runs</h2>
    ${runs.length > FOLD_PAST ? html`<details class="runs-legend"><summary>${runs.length} runs</summary>${legend}</details>` : legend}
    <${ChartControls} state=${state} />
    <${OverlayCharts} runs=${runs} fields=${fields} steps=${steps} state=${state} />
    ${picked && html`<p class="picked">${picked.size} of ${runs.length} runs picked by brushing
      <button class="link" onClick=${() => setPicked(null)}>show all</button></p>`}
    <${ParamsDiff} runs=${shown} state=${state} colors=${shown.map((r) => colors[runs.indexOf(r)])} />
    <div class="toolbar"><${ColorChoice} columns=${columns} state=${state} /></div>
    <${Scatter} runs=${runs} columns=${columns} state=${state} picked=${picked} onPick=${setPicked} />
    <${Parallel} runs=${runs} columns=${columns} colorBy=${columns.includes(state.pc) ? state.pc : ""} picked=${picked} onPick=${setPicked} />
  </article>`;
}
