// One chart per metric field, drawn by uPlot from the server's buckets: a min/max band so that no
// spike is ever hidden, the line through each bucket's last value, optional smoothing drawn over it,
// log scale, and zoom that asks the server again for the visible range (raw rows once the range
// holds at most two points per pixel).
import { html, useEffect, useRef, useState } from "./vendor/htm-preact-3.1.1.mjs";
import { api, num, runPath } from "./api.js";
import { setState } from "./state.js";

const RAW_LIMIT = 100000;  // the server's page cap

/** Points of ``field`` over indices [start, end): buckets, or rows when they are few enough. */
export async function fetchSeries(prefix, metric, field, start, end, pixels) {
  const base = runPath(prefix, "/metrics/" + encodeURIComponent(metric));
  const span = end - start;
  if (span <= Math.max(2 * pixels, 1) && span <= RAW_LIMIT) {
    const out = await api(`${base}?start=${start}&limit=${Math.max(1, span)}`);
    const xs = [], lo = [], hi = [], ys = [];
    for (const row of out.rows) {
      if (!(field in row.data)) continue;
      const v = num(row.data[field]);
      xs.push(row.index); ys.push(v); lo.push(v); hi.push(v);
    }
    return { xs, lo, hi, ys, raw: true };
  }
  const out = await api(`${base}?buckets=${Math.max(1, Math.floor(pixels))}&start=${start}&end=${end}`);
  const xs = [], lo = [], hi = [], ys = [];
  for (const b of out.buckets) {
    const f = b.fields[field];
    if (!f) continue;
    xs.push(b.last); lo.push(num(f.min)); hi.push(num(f.max)); ys.push(num(f.last));
  }
  return { xs, lo, hi, ys, raw: false };
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

export function Chart({ prefix, metric, field, rows, state }) {
  const box = useRef(null);
  const plot = useRef(null);
  const [info, setInfo] = useState("");
  const zoomKey = `z.${metric}.${field}`;
  const [start, end] = state[zoomKey] ? state[zoomKey].split(":").map(Number) : [0, rows];
  const smooth = Number(state.smooth || 0);
  const logScale = state.log === "1";
  useEffect(() => {
    let cancelled = false;
    const width = Math.max(200, box.current.clientWidth || 600);
    fetchSeries(prefix, metric, field, start, Math.min(end, rows), width).then((s) => {
      if (cancelled || !window.uPlot) return;
      const data = [s.xs, s.hi, s.lo, s.ys];
      const series = [{ label: "index" },
        { label: "max", stroke: "rgba(80,120,200,0.35)", width: 1 },
        { label: "min", stroke: "rgba(80,120,200,0.35)", width: 1 },
        { label: field, stroke: "rgb(40,90,200)", width: 1.5 }];
      if (smooth > 0) {
        data.push(ema(s.ys, Math.min(0.999, smooth)));
        series.push({ label: "smoothed", stroke: "rgb(230,120,30)", width: 2 });
      }
      const options = {
        width, height: 220, series, bands: [{ series: [1, 2], fill: "rgba(80,120,200,0.15)" }],
        scales: { x: { time: false }, y: logScale ? { distr: 3 } : {} },
        legend: { live: true },
        cursor: { drag: { x: true, y: false } },
        hooks: { setSelect: [(u) => {
          if (u.select.width < 2) return;
          const a = Math.max(0, Math.floor(u.posToVal(u.select.left, "x")));
          const b = Math.ceil(u.posToVal(u.select.left + u.select.width, "x")) + 1;
          setState({ [zoomKey]: `${a}:${b}` });
        }] },
      };
      if (plot.current) plot.current.destroy();
      box.current.textContent = "";
      plot.current = new window.uPlot(options, data, box.current);
      box.current.parentElement.__uplot = plot.current;  // for the browser tests and the console
      setInfo(`${s.raw ? "raw" : "min/max"} · ${s.xs.length} points · indices ${start}–${Math.min(end, rows) - 1}`);
    }).catch((e) => setInfo(e.message));
    return () => { cancelled = true; };
  }, [prefix, metric, field, start, end, rows, smooth, logScale]);
  useEffect(() => () => { if (plot.current) plot.current.destroy(); }, []);
  return html`<figure class="chart" data-metric=${metric} data-field=${field}>
    <figcaption>${metric} · ${field} <span class="muted">${info}</span>
      ${state[zoomKey] && html`<button class="link" onClick=${() => setState({ [zoomKey]: null })}>reset zoom</button>`}
    </figcaption>
    <div class="plot" ref=${box}></div>
  </figure>`;
}
