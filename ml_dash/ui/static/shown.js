// A long list of charts shown a page at a time behind a name filter. A run of 20,000 metrics (per-layer
// statistics) must not draw 20,000 charts, each with its own request, at once: the page shows the first
// CHARTS_SHOWN that match, and more on demand. The filter and the count live in the URL, as every view's state.
import { html, useMemo } from "./vendor/htm-preact-3.1.1.mjs";
import { setState } from "./state.js";

export const CHARTS_SHOWN = 24;

/** The ``names`` matching the filter in ``state[key + "q"]`` and, of those, how many to show
 * (``state[key + "n"]``, a multiple of CHARTS_SHOWN). */
export function useShown(names, state, key) {
  const query = (state[key + "q"] || "").toLowerCase();
  const matching = useMemo(() => (query ? names.filter((n) => n.toLowerCase().includes(query)) : names), [names, query]);
  const count = Math.max(CHARTS_SHOWN, Number(state[key + "n"]) || CHARTS_SHOWN);
  return { matching, shown: matching.slice(0, count), count };
}

/** The filter box and "n of m shown" (only for lists longer than a page), and the "show more" button. */
export function ShownBar({ names, view, state, keyName, what }) {
  if (names.length <= CHARTS_SHOWN) return null;
  return html`<div class="toolbar shown-bar">
    <input class="wide" name=${keyName + "q"} placeholder=${"filter " + what} value=${state[keyName + "q"] || ""}
      onInput=${(e) => setState({ [keyName + "q"]: e.target.value, [keyName + "n"]: null }, { replace: true })} />
    <span class="muted" data-shown=${view.shown.length} data-matching=${view.matching.length}>
      ${view.shown.length} of ${view.matching.length} ${what} shown${view.matching.length < names.length
        ? " (" + names.length + " in all)" : ""}</span>
  </div>`;
}

export function ShowMore({ view, keyName, what }) {
  const left = view.matching.length - view.shown.length;
  if (left <= 0) return null;
  return html`<button class="show-more" onClick=${() => setState({ [keyName + "n"]: String(view.count + CHARTS_SHOWN) },
    { replace: true })}>show ${Math.min(CHARTS_SHOWN, left)} more ${what} (${left} not shown)</button>`;
}
