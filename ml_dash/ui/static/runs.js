// A project's runs: a virtualised table with filter (name, status, tag, param conditions such as
// "lr < 0.01"), sort (newest first unless another is chosen), param and metric columns chosen by the
// user and grouping by a param (a header per group, which folds); all of it in the URL. Numbers and
// times are shown as people read them (format.js), the table as tall as the window.
import { html, useEffect, useMemo, useRef, useState } from "./vendor/htm-preact-3.1.1.mjs";
import { api } from "./api.js";
import { go, setState } from "./state.js";
import { parseConditions, unparsedConditions } from "./conditions.js";
import { limits } from "./limits.js";
import { exactTime, formatDuration, formatValue, relativeTime, runSeconds } from "./format.js";
import { stepFieldOf } from "./xaxis.js";
import { extremeColumn, extremeOf, useExtremes } from "./extremes.js";

const ROW_PX = 28;
const PAGE = 1000;
const MAX_PAGES = 100;  // 100,000 runs at most in one list
const DEFAULT_SORT = "created_at";  // newest first, as every tracker lists runs
const TIME_COLUMNS = new Set(["created_at", "started_at", "ended_at"]);

export function StatusBadge({ status }) {
  const known = limits().statuses.includes(status) ? status : "UNKNOWN";
  return html`<span class=${"badge badge-" + known.toLowerCase()}>${status}</span>`;
}

const MAX_NAMED_METRICS = 32;  // the server's cap on latest_metrics=
const METRIC_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.\-:@ ]*$/;  // as the server checks it (ml_dash/format/naming.py)

/** The metrics whose latest values the table needs besides the first few of each run (all the server
 * sends unasked, see the README): those of its metric columns, its sort and its conditions. */
export function wantedMetrics(state) {
  const keys = [...(state.cols ? state.cols.split(",") : []), state.sort || ""]
    .filter((c) => c.startsWith("metric:")).map((c) => c.slice(7));
  for (const c of parseConditions(state.where)) if (c.key.includes("/")) keys.push(c.key);
  const names = keys.map((k) => k.slice(0, k.lastIndexOf("/"))).filter((m) => METRIC_NAME.test(m));
  return [...new Set(names)].sort().slice(0, MAX_NAMED_METRICS).join(",");
}

/** The project's runs, page by page; ``onPage`` sees the list so far after each page, so the first
 * rows are painted while the rest load. Each run's ``latest`` holds its first few metrics and the
 * ``wanted`` ones (a comma-separated list). */
async function loadRuns(owner, project, wanted, onPage, cancelled) {
  let runs = [];
  for (let page = 0; page < MAX_PAGES && !cancelled(); page++) {
    const query = new URLSearchParams({ owner, project, limit: String(PAGE), offset: String(page * PAGE), latest: "1" });
    if (wanted) query.set("latest_metrics", wanted);
    const out = await api("/api/v1/experiments?" + query.toString());
    runs = runs.concat(out.experiments);
    if (!cancelled()) onPage(runs, out.experiments.length === PAGE);
    if (out.experiments.length < PAGE) break;
  }
}

/** A run's value for a column or condition key: "param:lr", "metric:train/loss", a field of the run;
 * a bare key in a condition is a param, else a metric ("train/loss"). */
export function valueOf(run, column) {
  if (column.startsWith("param:")) return (run.params || {})[column.slice(6)];
  if (column.startsWith("metric:")) {
    const name = column.slice(7);
    const cut = name.lastIndexOf("/");
    const fields = (run.latest || {})[name.slice(0, cut)];
    return fields ? fields[name.slice(cut + 1)] : undefined;
  }
  if (column === "duration") return runSeconds(run);
  const extreme = extremeColumn(column);  // "min:train/loss", "max:val/acc": over the whole run
  if (extreme) return extremeOf(run, extreme);
  return run[column];
}

/** The column the list is sorted by and whether downwards: the URL's, else the newest first. */
export function sortOf(state) {
  return state.sort ? [state.sort, state.desc === "1"] : [DEFAULT_SORT, true];
}

function holds(run, { key, op, value }) {
  let have = valueOf(run, "param:" + key);
  if (have === undefined && key.includes("/")) have = valueOf(run, "metric:" + key);
  if (have === undefined) return false;
  const number = Number(value);
  const a = typeof have === "number" && !Number.isNaN(number) ? have : String(have);
  const b = typeof have === "number" && !Number.isNaN(number) ? number : value;
  switch (op) {
    case "<": return a < b;
    case "<=": return a <= b;
    case ">": return a > b;
    case ">=": return a >= b;
    case "=": return a === b;
    case "!=": return a !== b;
  }
  return false;
}

function cell(run, column) {
  const v = valueOf(run, column);
  if (column === "duration") return formatDuration(v);
  return formatValue(v);
}

/** What a cell shows: a time relative to now with the exact one on hover, a badge, tags, or text. */
function Cell({ run, column, now }) {
  if (column === "status") return html`<${StatusBadge} status=${run.status} />`;
  if (column === "tags") return (run.tags || []).map((t) => html`<span class="tag">${t}</span>`);
  if (TIME_COLUMNS.has(column)) return html`<span title=${exactTime(run[column])}>${relativeTime(run[column], now)}</span>`;
  return cell(run, column);
}

const COLUMN_NAMES = { created_at: "created", duration: "duration" };

const collator = new Intl.Collator(undefined, { numeric: true });  // one, not one per comparison

function compare(a, b) {
  if (typeof a === "number" && typeof b === "number") return a - b;
  return collator.compare(String(a), String(b));
}

export function filterRuns(runs, state) {
  const q = (state.q || "").toLowerCase();
  const conditions = parseConditions(state.where);
  let out = runs.filter((r) => (!q || r.name.toLowerCase().includes(q))
    && (!state.status || r.status === state.status)
    && (!state.tag || (r.tags || []).includes(state.tag))
    && conditions.every((c) => holds(r, c)));
  const [sort, desc] = sortOf(state);
  const value = (r) => valueOf(r, sort) ?? "";
  out = out.slice().sort((a, b) => compare(value(a), value(b)) * (desc ? -1 : 1));
  if (state.group) {
    // the collator finds "1" and "01" (or é composed and decomposed) equal; the groups split on the
    // exact value, so equal-looking values are told apart here and each group stays in one piece
    const key = (r) => cell(r, "param:" + state.group);
    out.sort((a, b) => { const x = key(a), y = key(b); return compare(x, y) || (x < y ? -1 : x > y ? 1 : 0); });
  }
  return out;
}

/** The rows of the table: with ``group``, a header before each group's runs (its value, how many),
 * and the runs of the groups not in ``folded``. ``runs`` come sorted by the group's value. */
export function groupRows(runs, group, folded) {
  if (!group) return runs.map((run) => ({ run }));
  const out = [];
  for (let i = 0; i < runs.length;) {
    const value = cell(runs[i], "param:" + group);
    let j = i;
    while (j < runs.length && cell(runs[j], "param:" + group) === value) j++;
    out.push({ header: value, count: j - i });
    if (!folded.has(value)) for (let k = i; k < j; k++) out.push({ run: runs[k] });
    i = j;
  }
  return out;
}

function folds(state) {
  try {
    const list = JSON.parse(state.fold || "[]");
    return new Set(Array.isArray(list) ? list.map(String) : []);
  } catch (_) {
    return new Set();
  }
}

export function RunList({ owner, project, state }) {
  const [runs, setRuns] = useState(null);
  const [more, setMore] = useState(false);
  const [error, setError] = useState(null);
  const [scroll, setScroll] = useState(0);
  const [cursor, setCursor] = useState(0);
  const box = useRef(null);
  const wanted = wantedMetrics(state);
  const shownFor = useRef(null);
  useEffect(() => {
    let stop = false;
    // another project starts empty; more wanted metrics keep the rows shown until their values arrive
    if (shownFor.current !== owner + "/" + project) setRuns(null);
    shownFor.current = owner + "/" + project;
    loadRuns(owner, project, wanted, (list, pending) => { setRuns(list); setMore(pending); }, () => stop)
      .catch((e) => setError(e.message));
    return () => { stop = true; };
  }, [owner, project, wanted]);
  const [extremesRead, setExtremesRead] = useState(0);  // min/max values arrived: sort and draw again
  const matching = useMemo(() => (runs ? filterRuns(runs, state) : []), [runs, state.q, state.status, state.tag,
    state.where, state.sort, state.desc, state.group, extremesRead]);
  const folded = useMemo(() => folds(state), [state.fold]);
  const items = useMemo(() => groupRows(matching, state.group, folded), [matching, state.group, folded]);
  const shown = useMemo(() => (state.group ? items.filter((x) => x.run).map((x) => x.run) : matching), [items]);
  const paramKeys = useMemo(() => {
    const keys = new Set();
    for (const r of runs || []) for (const k of Object.keys(r.params || {})) keys.add(k);
    return [...keys].sort();
  }, [runs]);
  const metricKeys = useMemo(() => {
    const keys = new Set();
    for (const r of runs || []) {
      for (const [m, fields] of Object.entries(r.latest || {})) {
        const step = stepFieldOf(Object.keys(fields));  // the metric's x: no column of its own (xaxis.js)
        for (const f of Object.keys(fields)) if (f !== "_ts" && f !== step) keys.add(m + "/" + f);
      }
    }
    return [...keys].sort();
  }, [runs]);
  useEffect(() => {
    const move = (e) => setCursor((c) => Math.max(0, Math.min(shown.length - 1, c + e.detail)));
    const open = () => { if (shown[cursor]) go({ run: shown[cursor].prefix }); };
    window.addEventListener("ml-dash:move", move);
    window.addEventListener("ml-dash:open", open);
    return () => { window.removeEventListener("ml-dash:move", move); window.removeEventListener("ml-dash:open", open); };
  }, [shown, cursor]);
  const current = shown[cursor];
  const [height, setHeight] = useState(600);
  useEffect(() => {  // the table fills the window below its top: measured on opening and on each resize
    const fit = () => {
      if (!box.current) return;
      setHeight(Math.max(5 * ROW_PX, Math.floor(window.innerHeight - box.current.getBoundingClientRect().top - 16)));
    };
    fit();
    window.addEventListener("resize", fit);
    return () => window.removeEventListener("resize", fit);
  }, [runs !== null]);
  // min/max columns: read for the rows in view, or for every run while the list is sorted by one
  const inView = items.slice(Math.max(0, Math.floor(scroll / ROW_PX) - 10), Math.floor(scroll / ROW_PX) + Math.ceil(height / ROW_PX) + 20)
    .filter((x) => x.run).map((x) => x.run);
  useExtremes(extremeColumn(sortOf(state)[0]) ? runs || [] : inView, [...(state.cols ? state.cols.split(",") : []), state.sort || ""],
    () => setExtremesRead((n) => n + 1));
  useEffect(() => {  // j/k: the cursor's row stays in view
    const b = box.current;
    const at = items.findIndex((x) => x.run === current) * ROW_PX;
    if (!b || at < 0) return;
    if (at < b.scrollTop) b.scrollTop = at;
    else if (at + ROW_PX > b.scrollTop + b.clientHeight) b.scrollTop = at + ROW_PX - b.clientHeight;
  }, [cursor]);
  if (error) return html`<p class="error">${error}</p>`;
  if (!runs) return html`<p class="muted">Loading runs…</p>`;
  const columns = ["name", "status", "created_at", "duration", "tags", ...(state.cols ? state.cols.split(",") : [])];
  const [sorted, desc] = sortOf(state);
  const now = Date.now() / 1000;
  const selected = new Set(state.sel ? state.sel.split(",") : []);
  const maxCompared = limits().max_compared_runs;  // what the server's compare route takes
  const toggle = (prefix) => {
    const next = new Set(selected);
    if (next.has(prefix)) next.delete(prefix); else next.add(prefix);
    setState({ sel: [...next].join(",") }, { replace: true });
  };
  const sortBy = (column) => setState({ sort: column, desc: sorted === column && !desc ? "1" : null });
  const first = Math.max(0, Math.floor(scroll / ROW_PX) - 10);
  const visible = items.slice(first, first + Math.ceil(height / ROW_PX) + 20);
  const fold = (value) => {
    const next = new Set(folded);
    if (next.has(value)) next.delete(value); else next.add(value);
    setState({ fold: next.size ? JSON.stringify([...next]) : null }, { replace: true });
  };
  const addColumn = (e) => {
    const column = e.target.value;
    e.target.value = "";
    if (column) setState({ cols: [...new Set([...(state.cols ? state.cols.split(",") : []), column])].join(",") });
  };
  return html`<section class="runs">
    <div class="toolbar">
      <input data-search placeholder="filter by name (/)" value=${state.q || ""}
        onInput=${(e) => setState({ q: e.target.value }, { replace: true })} />
      <select value=${state.status || ""} onChange=${(e) => setState({ status: e.target.value })}>
        <option value="">any status</option>
        ${limits().statuses.map((s) => html`<option value=${s}>${s}</option>`)}
      </select>
      <input placeholder="tag" value=${state.tag || ""} onInput=${(e) => setState({ tag: e.target.value }, { replace: true })} />
      <input class="wide" placeholder="lr < 0.01, train/loss < 0.5" value=${state.where || ""}
        onInput=${(e) => setState({ where: e.target.value }, { replace: true })} />
      ${unparsedConditions(state.where).length > 0 && html`<span class="error not-understood">${"not a condition "
        + "(key op value; op: < <= > >= = !=): " + unparsedConditions(state.where).join(", ")}</span>`}
      <select class="columns" onChange=${addColumn}><option value="">+ column</option>
        ${paramKeys.map((k) => html`<option value=${"param:" + k}>${k}</option>`)}
        ${metricKeys.map((k) => html`<option value=${"metric:" + k}>${k} (latest)</option><option value=${"min:" + k}>${k} (min)</option>
          <option value=${"max:" + k}>${k} (max)</option>`)}</select>
      <select value=${state.group || ""} onChange=${(e) => setState({ group: e.target.value })}>
        <option value="">no grouping</option>${paramKeys.map((k) => html`<option value=${k}>group by ${k}</option>`)}
      </select>
      <span class="muted count">${matching.length} of ${runs.length}${more ? "+" : ""} runs</span>
      ${selected.size >= 2 && (selected.size <= maxCompared
        ? html`<button class="compare-button" onClick=${() => go({ compare: [...selected].join(",") })}>Compare ${selected.size}</button>`
        : html`<span class="error">${selected.size} runs ticked: compare at most ${maxCompared} at once</span>`)}
    </div>
    <div class="table" role="table">
      <div class="row head" role="row"><span class="c-select"></span>${columns.map((c) => html`<span role="columnheader" class=${"c c-" + c.split(":")[0]}
        onClick=${() => sortBy(c)}>${c.startsWith("param:") ? c.slice(6) : c.startsWith("metric:") ? c.slice(7) : extremeColumn(c) ? `${c.slice(4)} (${c.slice(0, 3)})` : COLUMN_NAMES[c] || c}${sorted === c ? (desc ? " ▼" : " ▲") : ""}</span>`)}</div>
      <div class="body" ref=${box} style=${{ height: height + "px" }} onScroll=${(e) => setScroll(e.target.scrollTop)}>
        <div style=${{ height: items.length * ROW_PX + "px", position: "relative" }}>
          ${visible.map(({ run: r, header, count }, i) => (r === undefined ? html`<div key=${"group:" + header}
            role="row" class="row group" data-group=${header} style=${{ top: (first + i) * ROW_PX + "px" }}
            onClick=${() => fold(header)}><span class="c-select">${folded.has(header) ? "▸" : "▾"}</span>
            <b>${state.group} = ${header === "" ? "(none)" : header}</b> <span class="muted">${count} run${count === 1 ? "" : "s"}</span>
          </div>` : html`<div key=${r.prefix} role="row" data-run=${r.prefix}
            class=${"row" + (r === current ? " cursor" : "")}
            style=${{ top: (first + i) * ROW_PX + "px" }} onClick=${() => go({ run: r.prefix })}>
            <span class="c-select" onClick=${(e) => e.stopPropagation()}><input type="checkbox" aria-label=${"select " + r.name}
              checked=${selected.has(r.prefix)} onChange=${() => toggle(r.prefix)} /></span>
            ${columns.map((c) => html`<span role="cell" class=${"c c-" + c.split(":")[0]}><${Cell} run=${r} column=${c} now=${now} /></span>`)}
          </div>`))}
        </div>
      </div>
    </div>
  </section>`;
}
