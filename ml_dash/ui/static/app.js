// The ml-dash web UI: sign in, then owners, projects, runs and a run's page. Every string from the
// server is rendered as text (preact escapes it); nothing is ever parsed as HTML.
import "./token.js";  // first: it takes ml-dash ui's token off the address bar before anything reads it
import { html, render, useEffect, useRef, useState } from "./vendor/htm-preact-3.1.1.mjs";
import { api } from "./api.js";
import { loadLimits } from "./limits.js";
import { go, readState, useUrlState } from "./state.js";
import { RunList } from "./runs.js";
import { RunPage } from "./run.js";
import { Compare } from "./compare.js";
import { installKeys } from "./keys.js";
import { Home } from "./recent.js";

function SignIn({ onSignedIn }) {
  const [key, setKey] = useState("");
  const [user, setUser] = useState("");
  const [error, setError] = useState(null);
  const submit = async (event) => {
    event.preventDefault();
    setError(null);
    try {
      if (!key && !user) throw new Error("enter an API key (or, on a development server, a user name)");
      const body = key ? { api_key: key } : { user };
      const out = await api("/api/v1/session", { method: "POST", body });
      onSignedIn(out.owner);
    } catch (err) {
      setError(err.message);
    }
  };
  return html`<form class="sign-in" onSubmit=${submit}>
    <h1>ml-dash</h1>
    <label>API key <input type="password" name="api_key" autocomplete="off" value=${key}
      onInput=${(e) => setKey(e.target.value)} placeholder="mld_..." /></label>
    <label>or user name (development servers) <input name="user" value=${user}
      onInput=${(e) => setUser(e.target.value)} /></label>
    <button type="submit">Sign in</button>
    ${error && html`<p class="error" role="alert">${error}</p>`}
  </form>`;
}

/** ``ml-dash ui`` refused this page for want of its token: say what to open (its words), no sign-in form. */
function Locked({ reason }) {
  return html`<section class="sign-in"><h1>ml-dash ui</h1><p class="error" role="alert">${reason}</p></section>`;
}

function Projects({ owner }) {
  const [projects, setProjects] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    setError(null);
    api("/api/v1/projects?owner=" + encodeURIComponent(owner)).then((p) => setProjects(p.projects),
      (e) => setError(e.message));
  }, [owner]);
  if (error) return html`<p class="error" role="alert">${error}</p>`;
  if (!projects) return html`<p class="muted">Loading…</p>`;
  return html`<section><h2>${owner}: projects</h2><ul class="list">
    ${projects.map((p) => html`<li key=${p.project}><a href="#"
      onClick=${(e) => { e.preventDefault(); go({ owner, project: p.project }); }}>${p.project}</a>
      <span class="muted">${p.experiments} runs</span></li>`)}
  </ul></section>`;
}

function Crumbs({ state }) {
  const parts = [];
  const shown = state.run || (state.compare && state.compare.split(",")[0]);  // a run, or the first compared
  const owner = state.owner || (shown && shown.split("/")[0]);
  const project = state.project || (shown && shown.split("/")[1]);
  parts.push(html`<a href="#" onClick=${(e) => { e.preventDefault(); go({}); }}>ml-dash</a>`);
  if (owner) parts.push(html`<a href="#" onClick=${(e) => { e.preventDefault(); go({ owner }); }}>${owner}</a>`);
  if (project) parts.push(html`<a href="#" onClick=${(e) => { e.preventDefault(); go({ owner, project }); }}>${project}</a>`);
  if (state.run) parts.push(html`<span>${state.run.split("/").slice(2).join("/")}</span>`);
  else if (state.compare) parts.push(html`<span>compare</span>`);
  return html`<nav class="crumbs">${parts.map((p, i) => html`${i ? html`<span class="sep">/</span>` : ""}${p}`)}</nav>`;
}

function App() {
  const state = useUrlState();
  const bare = useRef(Object.keys(readState()).length === 0);  // opened on no view: the start page may skip to the runs
  useEffect(() => { if (Object.keys(state).length) bare.current = false; }, [state]);
  const [who, setWho] = useState(undefined);  // undefined: asking; null: signed out
  const [locked, setLocked] = useState(null);  // ml-dash ui's refusal, when this page has no (right) token
  useEffect(() => {
    api("/api/v1/session").then((s) => setWho(s.owner || null)).catch((e) => {
      if (e.uiLocked) setLocked(e.message);
      setWho(null);
    });
  }, []);
  const [caps, setCaps] = useState(null);  // the server's limits (limits.js): read once signed in, before any view
  useEffect(() => {
    if (who && !caps) loadLimits().then(setCaps, (e) => setCaps(e.status === 401 ? null : { error: e.message }));  // 401: signed out again
  }, [who]);
  useEffect(() => installKeys(), []);
  useEffect(() => {  // a session that ended elsewhere (signed out in another tab, its key revoked)
    const ended = () => setWho((w) => (w === "local" ? w : null));
    window.addEventListener("ml-dash:unauthorized", ended);
    return () => window.removeEventListener("ml-dash:unauthorized", ended);
  }, []);
  if (who === undefined) return html`<p class="muted">Loading…</p>`;
  if (locked) return html`<${Locked} reason=${locked} />`;
  if (who === null) return html`<${SignIn} onSignedIn=${setWho} />`;
  if (!caps) return html`<p class="muted">Loading…</p>`;
  if (caps.error) return html`<p class="error" role="alert">${caps.error}</p>`;
  const signOut = async () => {
    await api("/api/v1/session", { method: "DELETE" }).catch(() => null);
    setWho(null);
  };
  let view;
  if (state.compare) view = html`<${Compare} prefixes=${state.compare.split(",")} state=${state} />`;
  else if (state.run) view = html`<${RunPage} prefix=${state.run} state=${state} />`;
  else if (state.owner && state.project) view = html`<${RunList} owner=${state.owner} project=${state.project} state=${state} />`;
  else if (state.owner) view = html`<${Projects} owner=${state.owner} />`;
  else view = html`<${Home} skipToRuns=${bare.current} />`;
  return html`<header class="top"><${Crumbs} state=${state} />
      <span class="who">${who === "local" ? "" : who} ${who !== "local" && html`<button class="link" onClick=${signOut}>Sign out</button>`}</span>
    </header>
    <main>${view}</main>`;
}

render(html`<${App} />`, document.getElementById("app"));
