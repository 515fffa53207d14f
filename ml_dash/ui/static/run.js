// One run: status, times, host, description and tags; params as a searchable table; a chart per
// metric field; logs (logs.js: tail, level filter, search); files (files.js: download and preview).
// A RUNNING run is polled every second, so new points, lines and the status show within 2 s: its
// document by ETag (a 304 while nothing changed), then only the new points and the new lines.
import { html, useEffect, useMemo, useState } from "./vendor/htm-preact-3.1.1.mjs";
import { api, restOfStreams, revalidatedGet, runPath, withStreams } from "./api.js";
import { setState } from "./state.js";
import { Chart } from "./chart.js";
import { ChartControls } from "./controls.js";
import { Logs } from "./logs.js";
import { Files } from "./files.js";
import { chartedFields, stepFieldOf } from "./xaxis.js";
import { StatusBadge } from "./runs.js";
import { ShowMore, ShownBar, useShown } from "./shown.js";
import { SYSTEM_METRIC, SystemSection } from "./system.js";
import { ProvenanceSection } from "./provenance.js";

const LIVE_MS = 1000;
const REST_MS = 30000;

/** The run's document, polled while it runs. A run of more than 1,000 streams has the rest after its
 * first page (``streams_next``): read page by page when the page opens and, while the run is live, again
 * at most every REST_MS when the document changed; the first page (the log and the first metrics) stays
 * live every second. */
function useRun(prefix) {
  const [doc, setDoc] = useState(null);
  const [rest, setRest] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    let timer = null, stopped = false, last = null, restAt = 0;
    setRest(null);
    const load = async () => {
      try {
        const e = await revalidatedGet(runPath(prefix));
        if (stopped) return;
        setDoc(e);  // the same object after a 304: nothing re-renders
        if (e.streams_next && (!restAt || (e !== last && Date.now() - restAt > REST_MS))) {
          restAt = Date.now();
          const more = await restOfStreams(prefix, e.streams_next);
          if (stopped) return;
          setRest(more);
        }
        last = e;
        if (e.status === "RUNNING") timer = setTimeout(load, LIVE_MS);
      } catch (err) {
        if (!stopped) setError(err.message);
      }
    };
    load();
    return () => { stopped = true; clearTimeout(timer); };
  }, [prefix]);
  const exp = useMemo(() => withStreams(doc, rest), [doc, rest]);
  return [exp, error];
}

function Params({ params, state }) {
  const q = (state.pq || "").toLowerCase();
  const rows = Object.entries(params || {}).filter(([k, v]) => !q || k.toLowerCase().includes(q)
    || String(JSON.stringify(v)).toLowerCase().includes(q)).sort(([a], [b]) => a.localeCompare(b));
  return html`<section class="params"><h3>Params</h3>
    <input placeholder="search params" value=${state.pq || ""} onInput=${(e) => setState({ pq: e.target.value }, { replace: true })} />
    <table><tbody>${rows.map(([k, v]) => html`<tr key=${k}><th>${k}</th>
      <td>${typeof v === "object" ? JSON.stringify(v) : String(v)}</td></tr>`)}</tbody></table>
  </section>`;
}

function MetricCharts({ prefix, metric, rows, state }) {
  const [fields, setFields] = useState(null);
  useEffect(() => {
    api(runPath(prefix, "/metrics/" + encodeURIComponent(metric) + "?buckets=1")).then((out) => {
      const names = new Set();
      for (const b of out.buckets) for (const k of Object.keys(b.fields)) names.add(k);
      // the step field (xaxis.js) is the charts' x, no chart of its own
      setFields({ charted: chartedFields([...names]), step: stepFieldOf([...names]) || "step" });
    });
  }, [prefix, metric, rows > 0]);
  if (!fields) return null;
  return html`${fields.charted.map((f) => html`<${Chart} key=${metric + "/" + f} prefix=${prefix} metric=${metric}
    field=${f} rows=${rows} state=${state} stepField=${fields.step} />`)}`;
}

/** A chart per field of each metric shown: a page of metrics at a time behind a filter (shown.js). */
function Charts({ prefix, metrics, state }) {
  const names = useMemo(() => Object.keys(metrics).sort(), [metrics]);
  const view = useShown(names, state, "m");
  return html`<${ShownBar} names=${names} view=${view} state=${state} keyName="m" what="metrics" />
    <section class="charts">${view.shown.map((m) => html`<${MetricCharts} key=${m} prefix=${prefix} metric=${m}
      rows=${metrics[m]} state=${state} />`)}</section>
    <${ShowMore} view=${view} keyName="m" what="metrics" />`;
}

export function RunPage({ prefix, state }) {
  const [exp, error] = useRun(prefix);
  const metrics = useMemo(() => Object.fromEntries(Object.entries(exp ? exp.streams || {} : {})
    .filter(([s]) => s.startsWith("metrics/") && s !== "metrics/" + SYSTEM_METRIC).map(([s, n]) => [s.slice(8), n])), [exp]);
  if (error) return html`<p class="error">${error}</p>`;
  if (!exp) return html`<p class="muted">Loading…</p>`;
  return html`<article class="run">
    <header><h2>${exp.name}</h2> <${StatusBadge} status=${exp.status} />
      ${(exp.tags || []).map((t) => html`<span class="tag">${t}</span>`)}</header>
    <dl class="facts">
      <dt>created</dt><dd>${exp.created_at || ""}</dd><dt>started</dt><dd>${exp.started_at || ""}</dd>
      <dt>ended</dt><dd>${exp.ended_at || ""}</dd><dt>host</dt><dd>${exp.hostname || ""}</dd>
      ${exp.status_reason && html`<dt>reason</dt><dd>${exp.status_reason}</dd>`}
    </dl>
    ${exp.description && html`<p class="description">${exp.description}</p>`}
    <${ProvenanceSection} exp=${exp} />
    ${Object.keys(metrics).length > 0 && html`<${ChartControls} state=${state} />`}
    <${Charts} prefix=${prefix} metrics=${metrics} state=${state} />
    <${SystemSection} prefix=${prefix} exp=${exp} state=${state} />
    <${Params} params=${exp.params} state=${state} />
    <${Logs} prefix=${prefix} count=${(exp.streams || {}).logs || 0} state=${state} />
    <${Files} prefix=${prefix} />
  </article>`;
}
