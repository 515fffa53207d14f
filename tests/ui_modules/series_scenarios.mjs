// Scenarios of the chart's series logic (ml_dash/ui/static/series.js) over a fake ``get``: each
// says what happened as lines ("get <path>", "draw ...", "fail ..."), which tests/test_ui_modules.py
// compares with the lines it expects. The reads are scripted here; a SeriesFollower is driven by
// steps from the test's table (``follow``). Served to the page by the test at
// /test/series_scenarios.mjs; the modules under test come from the real server at /ui/.
import { SeriesFollower, extendSeries, fetchSeries } from "/ui/series.js";

const PATH = "/m";

/** A server that holds every request until the scenario answers it, in order of asking. */
function heldServer(log) {
  const pending = [];
  const get = (path) => {
    log.push(`get ${path}`);
    return new Promise((resolve, reject) => pending.push({ path, resolve, reject }));
  };
  return {
    get,
    // each after the requests begun so far are asked (one may wait on another promise first)
    async answer(payload) { await settle(); pending.shift().resolve(payload); await settle(); },
    async refuse(message) { await settle(); pending.shift().reject(new Error(message)); await settle(); },
    async answerAt(i, payload) { await settle(); pending.splice(i, 1)[0].resolve(payload); await settle(); },
    get waiting() { return pending.length; },
  };
}

/** A server that answers at once with ``reply(path)``. */
function quickServer(log, reply) {
  return { get: async (path) => { log.push(`get ${path}`); return reply(path); } };
}

/** Every promise callback queued so far run. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

function rowsOf(from, to, field = "loss") {
  const rows = [];
  for (let i = from; i < to; i++) rows.push({ index: i, data: { [field]: i / 10, step: 2 * i, _ts: 1000 + i } });
  return { rows };
}

function bucketsOf(from, to, width, field = "loss") {
  const buckets = [];
  for (let first = from; first < to; first += width) {
    const last = Math.min(first + width, to) - 1;
    buckets.push({ first, last, fields: { [field]: { min: first, max: last, last }, step: { last: 2 * last } } });
  }
  return { width, buckets };
}

function said(s) {
  if (s === null) return "null";
  const n = s.idx.length;
  return `${s.raw ? "raw" : "buckets"} ${n ? `${s.firsts[0]}..${s.lasts[n - 1]}` : "none"} n=${n} upto=${s.upto}`
    + (s.raw ? "" : ` width=${s.width}`);
}


const LIMITS = { max_read_rows: 100000, max_buckets: 10000, max_compared_runs: 50, max_compared_buckets: 200000 };
const source = (server, limits = LIMITS) => ({ get: server.get, path: PATH, limits });

export const scenarios = {
  // -- one read ---------------------------------------------------------------------------------
  async "few points: raw rows"(log) {
    const s = await fetchSeries(source(quickServer(log, () => rowsOf(0, 10))), "loss", 0, 10, 100);
    log.push(said(s), `ys ${s.ys.join(",")}`, `steps ${s.steps.join(",")}`);
  },
  async "rows past end and rows without the field are left out"(log) {
    const reply = rowsOf(0, 12);
    reply.rows[3].data = { other: 1 };
    const s = await fetchSeries(source(quickServer(log, () => reply)), "loss", 0, 10, 100);
    log.push(said(s), `idx ${s.idx.join(",")}`);
  },
  async "a page cut short says next: the rest is read from there"(log) {
    const server = quickServer(log, (path) => (path.includes("start=0&") ? { ...rowsOf(0, 4), next: 4 } : rowsOf(4, 10)));
    log.push(said(await fetchSeries(source(server), "loss", 0, 10, 100)));
  },
  async "a next that does not move on ends the read"(log) {
    const server = quickServer(log, () => ({ ...rowsOf(0, 4), next: 0 }));
    log.push(said(await fetchSeries(source(server), "loss", 0, 10, 100)));
  },
  async "many points: a bucket a pixel"(log) {
    const s = await fetchSeries(source(quickServer(log, () => bucketsOf(0, 1000, 10))), "loss", 0, 1000, 100);
    log.push(said(s), `lo ${s.lo.slice(0, 3).join(",")} hi ${s.hi.slice(0, 3).join(",")} steps ${s.steps.slice(0, 3).join(",")}`);
  },
  async "more rows than the server's page cap: buckets"(log) {
    const limits = { ...LIMITS, max_read_rows: 5 };
    log.push(said(await fetchSeries(source(quickServer(log, () => bucketsOf(0, 10, 1)), limits), "loss", 0, 10, 100)));
  },
  async "wider than the server's bucket cap: the cap"(log) {
    const limits = { ...LIMITS, max_buckets: 20 };
    log.push(said(await fetchSeries(source(quickServer(log, () => bucketsOf(0, 1000, 50)), limits), "loss", 0, 1000, 100)));
  },
  // -- extending ----------------------------------------------------------------------------------
  async "raw extended by the new rows only"(log) {
    const s = await fetchSeries(source(quickServer(log, () => rowsOf(0, 10))), "loss", 0, 10, 100);
    const t = await extendSeries(source(quickServer(log, () => rowsOf(10, 15))), s, "loss", 0, 15, 100);
    log.push(said(t), `held untouched: ${said(s)}`);
  },
  async "raw past two points a pixel: null, nothing asked"(log) {
    const s = await fetchSeries(source(quickServer(log, () => rowsOf(0, 10))), "loss", 0, 10, 5);
    log.push(said(await extendSeries(source(quickServer(log, () => rowsOf(10, 11))), s, "loss", 0, 11, 5)));
  },
  async "buckets extended from the last bucket at the width held"(log) {
    const s = await fetchSeries(source(quickServer(log, () => bucketsOf(0, 1000, 10))), "loss", 0, 1000, 100);
    const t = await extendSeries(source(quickServer(log, () => bucketsOf(990, 1025, 10))), s, "loss", 0, 1025, 100);
    log.push(said(t), `last ${t.firsts.slice(-4).join(",")}`);
  },
  async "buckets past two a pixel: null, nothing asked"(log) {
    const s = await fetchSeries(source(quickServer(log, () => bucketsOf(0, 1000, 10))), "loss", 0, 1000, 100);
    log.push(said(await extendSeries(source(quickServer(log, () => bucketsOf(990, 3000, 10))), s, "loss", 0, 3000, 100)));
  },
};

/** Each named scenario's lines (or the error it threw, as a line). */
export async function run(names) {
  const out = {};
  for (const name of names) {
    const log = [];
    try {
      if (!scenarios[name]) throw new Error("no such scenario");
      await scenarios[name](log);
    } catch (e) {
      log.push(`threw ${e}`);
    }
    out[name] = log;
  }
  return out;
}

/** What a SeriesFollower did under ``steps`` (the test's table): ["show", start, end, live],
 * ["grow", rows], ["close"], ["pixels", n]; the held server's answers to the oldest request waiting
 * (["rows", from, to], ["buckets", from, to, width], ["refuse", message]) or to the i-th
 * (["rowsAt", i, from, to]); ["settle"]; ["waiting"] (how many requests wait, as a line). */
export async function follow(steps) {
  const log = [];
  const server = heldServer(log);
  let pixels = 100;
  const f = new SeriesFollower({ pixels: () => pixels, draw: (s) => log.push(`draw ${said(s)}`),
    fail: (e) => log.push(`fail ${e.message}`) });
  const act = {
    show: (start, end, live) => f.show(source(server), "loss", start, end, live),
    grow: (rows) => f.grow(rows),
    close: () => f.close(),
    pixels: (n) => { pixels = n; },
    rows: (from, to) => server.answer(rowsOf(from, to)),
    rowsAt: (i, from, to) => server.answerAt(i, rowsOf(from, to)),
    buckets: (from, to, width) => server.answer(bucketsOf(from, to, width)),
    refuse: (message) => server.refuse(message),
    settle,
    waiting: () => log.push(`waiting ${server.waiting}`),
  };
  try {
    for (const [name, ...args] of steps) {
      if (!act[name]) throw new Error(`no step ${name}`);
      await act[name](...args);
    }
  } catch (e) {
    log.push(`threw ${e}`);
  }
  return log;
}
