// Every view's state lives in the query string: reload or share the URL and the view comes back.
import { useEffect, useState } from "./vendor/htm-preact-3.1.1.mjs";

export function readState() {
  return Object.fromEntries(new URLSearchParams(window.location.search));
}

/** Merge ``patch`` into the URL (null or "" removes a key); a new history entry unless ``replace``. */
export function setState(patch, { replace = false } = {}) {
  const params = new URLSearchParams(window.location.search);
  for (const [key, value] of Object.entries(patch)) {
    if (value === null || value === undefined || value === "") params.delete(key);
    else params.set(key, String(value));
  }
  const query = params.toString();
  const url = window.location.pathname + (query ? "?" + query : "");
  if (replace) window.history.replaceState(null, "", url);
  else window.history.pushState(null, "", url);
  window.dispatchEvent(new Event("ml-dash:state"));
}

/** Navigate to a new view: the whole state replaced by ``state``. */
export function go(state) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(state)) if (value) params.set(key, value);
  window.history.pushState(null, "", window.location.pathname + "?" + params.toString());
  window.dispatchEvent(new Event("ml-dash:state"));
}

export function useUrlState() {
  const [state, setLocal] = useState(readState());
  useEffect(() => {
    const update = () => setLocal(readState());
    window.addEventListener("popstate", update);
    window.addEventListener("ml-dash:state", update);
    return () => {
      window.removeEventListener("popstate", update);
      window.removeEventListener("ml-dash:state", update);
    };
  }, []);
  return state;
}
