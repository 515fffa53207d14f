// One run: status, times, host, description and tags; params as a searchable table; a chart per
// metric field; logs (tail, level filter, search); files with size, checksum, download and preview.
// A RUNNING run is polled every second, so new points, lines and the status show within 2 s: its
// document by ETag (a 304 while nothing changed), then only the new points and the new lines.
import { html, useEffect, useMemo, useRef, useState } from "./vendor/htm-preact-3.1.1.mjs";
import { api, fetchBlob, restOfStreams, revalidatedGet, runPath, withStreams } from "./api.js";
import { setState } from "./state.js";
import { Chart, X_AXES } from "./chart.js";
import { StatusBadge } from "./runs.js";
import { ShowMore, ShownBar, useShown } from "./shown.js";
import { SYSTEM_METRIC, SystemSection } from "./system.js";
import { ProvenanceSection } from "./provenance.js";

const LIVE_MS = 1000;
const REST_MS = 30000;
const LOG_TAIL = 1000;
const HIDDEN_FIELDS = new Set(["_ts"]);

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
      for (const b of out.buckets) for (const k of Object.keys(b.fields)) if (!HIDDEN_FIELDS.has(k)) names.add(k);
      setFields([...names].sort());
    });
  }, [prefix, metric, rows > 0]);
  if (!fields) return null;
  return html`${fields.map((f) => html`<${Chart} key=${metric + "/" + f} prefix=${prefix} metric=${metric}
    field=${f} rows=${rows} state=${state} />`)}`;
}

const LINE_PX = 18;
const LINES_SHOWN = 24;

/** The lines, of which only those in view are in the page (a thousand rows of DOM cost 250 ms);
 * it starts scrolled to the end, as a tail does, and stays there while new lines arrive. */
function LogLines({ lines }) {
  const box = useRef(null);
  const [top, setTop] = useState(Number.MAX_SAFE_INTEGER);
  const following = useRef(true);  // scrolled to the end (as a tail starts): new lines keep it there
  const scrolled = (e) => {
    const b = e.target;
    following.current = b.scrollTop + b.clientHeight >= b.scrollHeight - LINE_PX;
    setTop(b.scrollTop);
  };
  useEffect(() => { if (box.current && following.current) box.current.scrollTop = lines.length * LINE_PX; }, [lines]);
  const first = Math.max(0, Math.min(lines.length - LINES_SHOWN, Math.floor(Math.min(top, lines.length * LINE_PX) / LINE_PX) - 8));
  const shown = lines.slice(Math.max(0, first), Math.max(0, first) + LINES_SHOWN + 16);
  if (!lines.length) return html`<p class="muted log-box" data-lines="0">no lines</p>`;
  return html`<div class="log-box" ref=${box} style=${{ height: Math.min(LINES_SHOWN, lines.length) * LINE_PX + 2 + "px" }}
      onScroll=${scrolled} data-lines=${lines.length}>
    <ol class="log-lines" style=${{ height: lines.length * LINE_PX + "px" }}>${shown.map((l, i) => html`<li
      key=${l.sequenceNumber} style=${{ top: (Math.max(0, first) + i) * LINE_PX + "px" }}
      class=${"log-" + String(l.level || "info").replace(/[^a-z]/g, "")}>
      <span class="muted">${l.timestamp || ""}</span> <b>${l.level || ""}</b>${l.metadata && l.metadata.source
        ? html` <span class="muted source">${String(l.metadata.source)}</span>` : ""} ${String(l.message ?? "")}</li>`)}</ol>
  </div>`;
}

function Logs({ prefix, count, state }) {
  const [lines, setLines] = useState([]);
  const [error, setError] = useState(null);  // the last read's failure, shown instead of "0 matching"
  const [again, setAgain] = useState(0);
  const read = useRef({ view: null, from: 0 });  // the lines below ``from`` were read for ``view``
  const asking = useRef(null);  // the view of the request in flight
  const latest = useRef(count);
  latest.current = count;
  const level = state.level || "";
  const search = state.lq || "";
  useEffect(() => {
    // the server filters the whole run: the last LOG_TAIL lines of that level holding the search
    // text; while the run logs, only those after the lines already read, one request at a time
    const view = JSON.stringify([prefix, level, search]);
    const more = read.current.view === view;
    if (more && (asking.current === view || count <= read.current.from)) return;
    const from = more ? read.current.from : 0;
    const query = new URLSearchParams({ tail: "1", limit: String(LOG_TAIL), start: String(from) });
    if (level) query.set("level", level);
    if (search) query.set("q", search);
    const asked = count;
    const timer = setTimeout(() => {
      asking.current = view;
      api(runPath(prefix, "/logs?" + query.toString())).then((out) => {
        if (asking.current !== view) return;  // another view was asked for meanwhile
        asking.current = null;
        const last = out.logs.length ? out.logs[out.logs.length - 1].sequenceNumber + 1 : from;
        read.current = { view, from: Math.max(last, asked) };  // the server held ``asked`` lines then
        setLines((old) => (more ? old.concat(out.logs).slice(-LOG_TAIL) : out.logs));
        setError(null);
        if (latest.current > read.current.from) setAgain((n) => n + 1);  // lines arrived meanwhile
      }, (e) => {
        if (asking.current !== view) return;
        asking.current = null;
        setError(e.message);
      });
    }, search && !more ? 50 : 0);  // typing: one request when it pauses
    return () => clearTimeout(timer);
  }, [prefix, count, level, search, again]);
  return html`<section class="logs"><h3>Logs <span class="muted">${count} lines</span></h3>
    <div class="toolbar">
      <select value=${level} onChange=${(e) => setState({ level: e.target.value })}>
        <option value="">all levels</option>
        ${["debug", "info", "warn", "error", "fatal"].map((l) => html`<option value=${l}>${l}</option>`)}
      </select>
      <input placeholder="search all logs" value=${search} onInput=${(e) => setState({ lq: e.target.value }, { replace: true })} />
      ${error ? html`<span class="error" role="alert">${error}</span>` : html`<span class="muted">${lines.length === LOG_TAIL
        ? "the last " + LOG_TAIL + " matching" : lines.length + " matching"}</span>`}
    </div>
    <${LogLines} lines=${lines} />
  </section>`;
}

function saveAs(name, blob) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = name;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

// A file's download and preview are fetched (with the token's header on ``ml-dash ui``, see token.js)
// and shown from blob: URLs: a plain link or <img src> would go without it and be refused.
function Files({ prefix }) {
  const [files, setFiles] = useState(null);
  const [preview, setPreview] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => { api(runPath(prefix, "/files")).then((out) => setFiles(out.files)); }, [prefix]);
  useEffect(() => () => { if (preview && preview.image) URL.revokeObjectURL(preview.image); }, [preview]);
  if (!files || !files.length) return null;
  const href = (f, extra = "") => runPath(prefix, "/files/" + f.path.split("/").map(encodeURIComponent).join("/")) + extra;
  const show = async (f) => {
    setError(null);
    try {
      const blob = await fetchBlob(href(f, "?preview=1"));
      if (/\.(png|jpe?g|gif|webp)$/i.test(f.path)) setPreview({ path: f.path, image: URL.createObjectURL(blob) });
      else {
        const text = await blob.text();
        let shown = text.slice(0, 200000);
        if (/\.json$/i.test(f.path)) { try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (_) { /* as text */ } }
        setPreview({ path: f.path, text: shown });
      }
    } catch (err) {
      setError(err.message);
    }
  };
  const download = async (event, f) => {
    event.preventDefault();
    setError(null);
    try {
      saveAs(f.path.split("/").pop(), await fetchBlob(href(f)));
    } catch (err) {
      setError(err.message);
    }
  };
  return html`<section class="files"><h3>Files</h3>
    <table><thead><tr><th>path</th><th>size</th><th>sha256</th><th></th></tr></thead><tbody>
    ${files.map((f) => html`<tr key=${f.path}><td>${f.path}</td><td>${f.sizeBytes}</td>
      <td class="mono">${String(f.checksum).slice(0, 16)}…</td>
      <td><a href="#" onClick=${(e) => download(e, f)}>download</a> <button class="link" onClick=${() => show(f)}>preview</button></td></tr>`)}
    </tbody></table>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${preview && html`<div class="preview"><h4>${preview.path}</h4>${preview.image
      ? html`<img src=${preview.image} alt=${preview.path} />` : html`<pre>${preview.text}</pre>`}</div>`}
  </section>`;
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
    <div class="toolbar">
      <label>smoothing <input type="range" name="smooth" min="0" max="0.99" step="0.01" value=${state.smooth || 0}
        onInput=${(e) => setState({ smooth: e.target.value === "0" ? null : e.target.value }, { replace: true })} /></label>
      <select name="sm" value=${state.sm || "ema"} onChange=${(e) => setState({ sm: e.target.value === "ema" ? null : e.target.value })}>
        <option value="ema">EMA</option><option value="mean">running mean</option></select>
      <label><input type="checkbox" checked=${state.log === "1"} onChange=${(e) => setState({ log: e.target.checked ? "1" : null })} /> log scale</label>
      <label>x <select name="x" value=${state.x || "index"} onChange=${(e) => setState({ x: e.target.value === "index" ? null : e.target.value })}>
        ${X_AXES.map((x) => html`<option value=${x}>${x === "wall" ? "wall time" : x === "relative" ? "relative time" : x}</option>`)}
      </select></label>
    </div>
    <${ProvenanceSection} exp=${exp} />
    <${Charts} prefix=${prefix} metrics=${metrics} state=${state} />
    <${SystemSection} prefix=${prefix} exp=${exp} state=${state} />
    <${Params} params=${exp.params} state=${state} />
    <${Logs} prefix=${prefix} count=${(exp.streams || {}).logs || 0} state=${state} />
    <${Files} prefix=${prefix} />
  </article>`;
}
