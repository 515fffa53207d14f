// A run's logs: the last lines (a tail that follows a live run), a level filter meaning "this level
// and above" (as every logging library reads a level), a search over the whole run, and each line's
// metadata shown beside it. Only the lines in view are in the page.
import { html, useEffect, useRef, useState } from "./vendor/htm-preact-3.1.1.mjs";
import { api, runPath } from "./api.js";
import { setState } from "./state.js";

const LOG_TAIL = 1000;
/** The levels, least severe first (ml_dash/format/vocabulary.py's LEVELS). */
export const LEVELS = ["debug", "info", "warn", "error", "fatal"];
const LINE_KEYS = new Set(["sequenceNumber", "timestamp", "level", "message", "metadata"]);

/** The levels a filter of ``level`` shows: it and those above; null for every line (none, or debug). */
export function levelsFrom(level) {
  const at = LEVELS.indexOf(level);
  return at <= 0 ? null : LEVELS.slice(at);
}

/** A captured console line's source ("stdout", "stderr": its metadata's ``source``), or "". */
export function sourceOf(line) {
  return line.metadata && typeof line.metadata === "object" && line.metadata.source ? String(line.metadata.source) : "";
}

/** A line's metadata (and any other field it carries) as compact JSON, or "" without any; the console's
 * ``source`` is shown on its own (sourceOf). */
export function metadataText(line) {
  const extra = {};
  for (const [k, v] of Object.entries(line)) if (!LINE_KEYS.has(k)) extra[k] = v;
  const meta = line.metadata && typeof line.metadata === "object" ? { ...line.metadata, ...extra } : extra;
  if (sourceOf(line)) delete meta.source;
  return Object.keys(meta).length ? JSON.stringify(meta) : "";
}

/** The last ``limit`` lines over several levels: each level's own last lines (the server filters one
 * level a request), merged in their order. The last ``limit`` of the union are among them. */
async function readLevels(prefix, levels, query, limit) {
  const pages = await Promise.all(levels.map((l) => {
    const q = new URLSearchParams(query);
    q.set("level", l);
    return api(runPath(prefix, "/logs?" + q.toString())).then((out) => out.logs);
  }));
  return pages.flat().sort((a, b) => a.sequenceNumber - b.sequenceNumber).slice(-limit);
}

const LINE_PX = 18;
const LINES_SHOWN = 24;

/** A line whole, for its hover (a long one is cut in the list). */
function lineText(l) {
  return [l.timestamp || "", l.level || "", sourceOf(l), String(l.message ?? ""), metadataText(l)].filter(Boolean).join(" ");
}

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
      title=${lineText(l)}><span class="muted">${l.timestamp || ""}</span> <b>${l.level || ""}</b>${sourceOf(l)
        ? html` <span class="muted source">${sourceOf(l)}</span>` : ""} ${String(l.message ?? "")}
      ${metadataText(l) && html` <span class="log-meta">${metadataText(l)}</span>`}</li>`)}</ol>
  </div>`;
}

export function Logs({ prefix, count, state }) {
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
    if (search) query.set("q", search);
    const levels = levelsFrom(level);
    const asked = count;
    const timer = setTimeout(() => {
      asking.current = view;
      (levels ? readLevels(prefix, levels, query, LOG_TAIL)
        : api(runPath(prefix, "/logs?" + query.toString())).then((out) => out.logs)).then((logs) => {
        if (asking.current !== view) return;  // another view was asked for meanwhile
        asking.current = null;
        const last = logs.length ? logs[logs.length - 1].sequenceNumber + 1 : from;
        read.current = { view, from: Math.max(last, asked) };  // the server held ``asked`` lines then
        setLines((old) => (more ? old.concat(logs).slice(-LOG_TAIL) : logs));
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
        ${LEVELS.slice(1).map((l) => html`<option value=${l}>${l} and above</option>`)}
      </select>
      <input placeholder="search all logs" value=${search} onInput=${(e) => setState({ lq: e.target.value }, { replace: true })} />
      ${error ? html`<span class="error" role="alert">${error}</span>` : html`<span class="muted">${lines.length === LOG_TAIL
        ? "the last " + LOG_TAIL + " matching" : lines.length + " matching"}</span>`}
    </div>
    <${LogLines} lines=${lines} />
  </section>`;
}

