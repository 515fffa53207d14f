// Colours of runs in a comparison and of values in a colour scale. Twenty hand-picked distinguishable
// colours (Tableau's 10 and their light pairs, reordered so that neighbours differ), then hues spaced
// by the golden angle at alternating lightness: 50 runs (the server's cap) never share a colour.

const RUN_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
  "#bcbd22", "#17becf", "#0b3d91", "#b35900", "#145a14", "#8b0000", "#4b2c7a", "#c49c94", "#f7b6d2", "#3d3d3d",
  "#6b6b00", "#0e7c86"];

/** The colour of the ``i``-th run, as ``#rrggbb``. */
export function runColor(i) {
  if (i < RUN_COLORS.length) return RUN_COLORS[i];
  const hue = Math.round((i * 137.508) % 360);
  const light = [38, 55, 46][i % 3];
  return hslToHex(hue, 70, light);
}

function hslToHex(h, s, l) {
  const a = (s / 100) * Math.min(l / 100, 1 - l / 100);
  const f = (n) => {
    const k = (n + h / 30) % 12;
    const c = l / 100 - a * Math.max(-1, Math.min(k - 3, 9 - k, 1));
    return Math.round(255 * c).toString(16).padStart(2, "0");
  };
  return "#" + f(0) + f(8) + f(4);
}

// viridis at nine stops: perceptually even, readable by the colour-blind, on light and dark pages
const SCALE = [[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141], [39, 173, 129],
  [92, 200, 99], [170, 220, 50], [253, 231, 37]];

/** The colour of ``t`` in [0, 1] on the scale (viridis); grey for a missing value. */
export function scaleColor(t) {
  if (t === null || !Number.isFinite(t)) return "#9ca3af";
  const x = Math.max(0, Math.min(1, t)) * (SCALE.length - 1);
  const i = Math.min(SCALE.length - 2, Math.floor(x)), f = x - i;
  const mix = SCALE[i].map((c, k) => Math.round(c + f * (SCALE[i + 1][k] - c)));
  return `rgb(${mix[0]},${mix[1]},${mix[2]})`;
}

/** A colour (``#rrggbb`` or ``rgb(r,g,b)``) with alpha ``a`` (0..1). */
export function faded(color, a) {
  if (color.startsWith("rgb(")) return color.replace("rgb(", "rgba(").replace(")", `,${a})`);
  return color + Math.round(a * 255).toString(16).padStart(2, "0");
}
