// Where the run came from (``metadata.provenance``, recorded by capture: docs/capture.md): git commit,
// branch, dirty flag and remote, the command line, host, Python, platform, GPUs and torch. Every value
// is the run's own text and is rendered as text.
import { html } from "./vendor/htm-preact-3.1.1.mjs";

function quoted(arg) {
  const text = String(arg);
  return /^[\w@%+=:,./-]+$/.test(text) ? text : "'" + text.replace(/'/g, "'\\''") + "'";
}

function facts(p) {
  const git = p.git && typeof p.git === "object" ? p.git : null;
  const torch = p.torch && typeof p.torch === "object" ? p.torch : null;
  const python = p.python && typeof p.python === "object" ? p.python : {};
  return [
    ["commit", git && git.commit ? String(git.commit).slice(0, 12) : null],
    ["dirty", git && typeof git.dirty === "boolean" ? (git.dirty ? "yes" + (git.diff_file ? " (" + git.diff_file + ")" : "")
      : "no") : null],
    ["branch", git && git.branch], ["remote", git && git.remote],
    ["command", Array.isArray(p.command) ? p.command.map(quoted).join(" ") : null],
    ["cwd", p.cwd], ["host", p.hostname],
    ["python", [python.implementation, python.version].filter(Boolean).join(" ") || null],
    ["platform", p.platform],
    ["GPUs", Array.isArray(p.gpus) && p.gpus.length ? p.gpus.map(String).join(", ") : null],
    ["CUDA driver", p.cuda_driver],
    ["torch", torch ? [torch.version, torch.cuda ? "CUDA " + torch.cuda : null].filter(Boolean).join(", ") : null],
    ["packages", p.packages_file ? p.packages + " in " + p.packages_file : null],
  ].filter(([, v]) => v !== null && v !== undefined && v !== "");
}

/** The section, or nothing when the run has no provenance. */
export function ProvenanceSection({ exp }) {
  const metadata = exp.metadata && typeof exp.metadata === "object" ? exp.metadata : {};
  const p = metadata.provenance;
  if (!p || typeof p !== "object") return null;
  return html`<section class="provenance"><h3>Provenance</h3>
    <dl class="facts">${facts(p).map(([k, v]) => html`<dt>${k}</dt><dd data-fact=${k}>${String(v)}</dd>`)}</dl>
  </section>`;
}
