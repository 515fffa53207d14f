// How charts are drawn, the same on a run's page and in a comparison: smoothing (EMA or running mean),
// log scale and the x axis (the metric's step by default, xaxis.js). All of it in the URL.
import { html } from "./vendor/htm-preact-3.1.1.mjs";
import { setState } from "./state.js";
import { X_AXES, xAxisOf } from "./xaxis.js";

const AXIS_NAMES = { step: "step", index: "row index", wall: "wall time", relative: "relative time" };

export function ChartControls({ state }) {
  return html`<div class="toolbar chart-controls">
    <label>smoothing <input type="range" name="smooth" min="0" max="0.99" step="0.01" value=${state.smooth || 0}
      onInput=${(e) => setState({ smooth: e.target.value === "0" ? null : e.target.value }, { replace: true })} /></label>
    <select name="sm" value=${state.sm || "ema"} onChange=${(e) => setState({ sm: e.target.value === "ema" ? null : e.target.value })}>
      <option value="ema">EMA</option><option value="mean">running mean</option></select>
    <label><input type="checkbox" checked=${state.log === "1"} onChange=${(e) => setState({ log: e.target.checked ? "1" : null })} /> log scale</label>
    <label>x <select name="x" value=${xAxisOf(state)} onChange=${(e) => setState({ x: e.target.value === "step" ? null : e.target.value })}>
      ${X_AXES.map((x) => html`<option value=${x}>${AXIS_NAMES[x]}</option>`)}
    </select></label>
  </div>`;
}
