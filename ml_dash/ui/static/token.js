// ``ml-dash ui``'s token (server/http/ui_token.py): the printed URL carries it in its fragment
// (``/#token=...``), which no server ever receives. At start this module moves it to localStorage,
// which the browser keeps per origin (scheme, host and port): a page served by another port of the
// same host, another account's included, cannot read it. A cookie would not do: cookies are kept per
// host and sent to every port of it. It then leaves the address bar, so a view's URL never holds it.
// On ``ml-dash server`` (keys and sessions) there is none, and no header is sent.

const KEY = "ml-dash-ui-token";
let memory = null;  // where storage is refused (a private window's settings): this page's life only

function fromFragment() {
  const hash = window.location.hash;
  if (!hash.startsWith("#")) return null;
  const params = new URLSearchParams(hash.slice(1));
  const token = params.get("token");
  if (token === null) return null;
  params.delete("token");
  const rest = params.toString();
  window.history.replaceState(window.history.state, "",
    window.location.pathname + window.location.search + (rest ? "#" + rest : ""));
  return token;
}

function store(token) {
  memory = token;
  try {
    window.localStorage.setItem(KEY, token);
  } catch (_) { /* kept in memory */ }
}

function stored() {
  try {
    return window.localStorage.getItem(KEY) || memory;
  } catch (_) {
    return memory;
  }
}

const given = fromFragment();
if (given) store(given);

/** The headers that carry the token, to merge into a request's (none when this page has no token). */
export function authorization() {
  const token = stored();
  return token ? { Authorization: "token " + token } : {};
}
