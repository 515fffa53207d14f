// The run's "System" section: the metric ``system`` that capture samples (docs/capture.md): the latest
// value of every field, grouped by what it measures (GPUs, the process, CPU, memory, disk, network),
// and a chart of each headline field (CPU, the process's memory, each GPU's use and memory). The rest
// of the run page leaves this metric to this section.
import { html } from "./vendor/htm-preact-3.1.1.mjs";
import { Chart } from "./chart.js";

export const SYSTEM_METRIC = "system";
const HEADLINE = /^(cpu_percent|proc_cpu_percent|proc_rss_mib|mem_percent|gpu\d+_(util_percent|mem_used_mib))$/;
const GROUPS = [["GPU", /^gpu\d+_/], ["process", /^proc_/], ["CPU", /^cpu_/], ["memory", /^mem_/],
  ["disk", /^disk_/], ["network", /^net_/]];

function groupOf(field) {
  const found = GROUPS.find(([, re]) => re.test(field));
  return found ? found[0] : "other";
}

function shown(value) {
  if (typeof value !== "number") return String(value ?? "");
  return Math.abs(value) >= 100 ? value.toFixed(0) : value.toFixed(value % 1 ? 2 : 0);
}

/** The section, or nothing when the run has no ``system`` rows. ``exp`` is the run's document
 * (``streams``: rows per stream; ``latest``: each metric's latest field values). */
export function SystemSection({ prefix, exp, state }) {
  const rows = (exp.streams || {})["metrics/" + SYSTEM_METRIC] || 0;
  if (!rows) return null;
  const latest = (exp.latest || {})[SYSTEM_METRIC] || {};
  const fields = Object.keys(latest).filter((f) => f !== "_ts").sort();
  const order = GROUPS.map(([g]) => g).concat(["other"]);
  fields.sort((a, b) => order.indexOf(groupOf(a)) - order.indexOf(groupOf(b)) || a.localeCompare(b));
  return html`<section class="system" data-rows=${rows}>
    <h3>System <span class="muted">${rows} samples</span></h3>
    <table class="system-latest"><tbody>${fields.map((f) => html`<tr key=${f} data-field=${f}>
      <td class="muted">${groupOf(f)}</td><th>${f}</th><td class="num">${shown(latest[f])}</td></tr>`)}</tbody></table>
    <div class="charts">${fields.filter((f) => HEADLINE.test(f)).map((f) => html`<${Chart} key=${f} prefix=${prefix}
      metric=${SYSTEM_METRIC} field=${f} rows=${rows} state=${state} />`)}</div>
  </section>`;
}
