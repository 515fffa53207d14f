// The start page: the owners, and the runs last written to across every project (newest first), as
// W&B's home shows them. ``ml-dash ui`` over one owner's one project skips it for that project's run
// list: the runs are one click away, not three.
import { html, useEffect, useState } from "./vendor/htm-preact-3.1.1.mjs";
import { api } from "./api.js";
import { go, setState } from "./state.js";
import { StatusBadge } from "./runs.js";
import { exactTime, formatDuration, relativeTime, runSeconds, secondsOf } from "./format.js";

const RECENT = 20;
const ASKED = 100;  // per owner: the server's last written to, of which the RECENT last active are shown
const MAX_OWNERS = 40;  // the recent runs of the first 40 owners: one request each

/** When a run was last active: its end, else its last write. (``ml-dash ui`` indexes the runs it finds
 * together, so the last write it knows of an ended run is when it read it, not when the run wrote.) */
export function lastActive(run) {
  return secondsOf(run.ended_at) ?? run.last_seen;
}

/** The ``RECENT`` runs last active of ``owners`` (each owner's last written to, from the server), merged. */
async function recentRuns(owners) {
  const lists = await Promise.all(owners.slice(0, MAX_OWNERS).map((o) => api("/api/v1/experiments?" + new URLSearchParams(
    { owner: o.owner, order: "recent", limit: String(ASKED) }).toString()).then((out) => out.experiments)));
  return lists.flat().sort((a, b) => lastActive(b) - lastActive(a)).slice(0, RECENT);
}

function RecentRuns({ runs }) {
  if (!runs.length) return html`<p class="muted">no runs yet</p>`;
  const now = Date.now() / 1000;
  return html`<table class="recent"><thead><tr><th>run</th><th>project</th><th>status</th><th>updated</th><th>duration</th></tr></thead>
    <tbody>${runs.map((r) => html`<tr key=${r.prefix} data-recent=${r.prefix}>
      <td><a href="#" onClick=${(e) => { e.preventDefault(); go({ run: r.prefix }); }}>${r.name}</a></td>
      <td><a href="#" onClick=${(e) => { e.preventDefault(); go({ owner: r.owner, project: r.project }); }}>${r.owner + "/" + r.project}</a></td>
      <td><${StatusBadge} status=${r.status} /></td>
      <td title=${exactTime(new Date(lastActive(r) * 1000).toISOString())}>${relativeTime(new Date(lastActive(r) * 1000).toISOString(), now)}</td>
      <td>${formatDuration(runSeconds(r))}</td></tr>`)}</tbody></table>`;
}

/** The start page. With ``skipToRuns`` (the app's first view, no view asked for in the URL) and one
 * owner of one project, that project's run list instead (the history entry replaced: Back leaves). */
export function Home({ skipToRuns }) {
  const [owners, setOwners] = useState(null);
  const [recent, setRecent] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    let stop = false;
    api("/api/v1/owners").then(async (o) => {
      if (stop) return;
      if (skipToRuns && o.owners.length === 1) {
        const p = await api("/api/v1/projects?owner=" + encodeURIComponent(o.owners[0].owner));
        if (!stop && p.projects.length === 1) {
          setState({ owner: o.owners[0].owner, project: p.projects[0].project }, { replace: true });
          return;
        }
      }
      setOwners(o.owners);
      setRecent(await recentRuns(o.owners));
    }).catch((e) => { if (!stop) setError(e.message); });
    return () => { stop = true; };
  }, []);
  if (error) return html`<p class="error" role="alert">${error}</p>`;
  if (!owners) return html`<p class="muted">Loading…</p>`;
  return html`<section class="home"><h2>Owners</h2><ul class="list">
    ${owners.map((o) => html`<li key=${o.owner}><a href="#" onClick=${(e) => { e.preventDefault(); go({ owner: o.owner }); }}
      >${o.owner}</a> <span class="muted">${o.experiments} runs</span></li>`)}
  </ul>
  <h2>Recent runs</h2>${recent ? html`<${RecentRuns} runs=${recent} />` : html`<p class="muted">Loading…</p>`}</section>`;
}
