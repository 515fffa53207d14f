// A run's files: path, size, checksum, download, and a preview fit for the kind of file: an image
// scaled to the panel, JSON laid out compactly, text as text, and for a binary file (a checkpoint, an
// array) no preview, only its size and kind: its bytes as text are mojibake.
import { html, useEffect, useState } from "./vendor/htm-preact-3.1.1.mjs";
import { api, fetchBlob, runPath, saveBlob } from "./api.js";
import { formatValue } from "./format.js";

const IMAGE = /\.(png|jpe?g|gif|webp|svg)$/i;
/** Kinds known to be binary: no preview is fetched for them. */
const BINARY = /\.(pth?|pt|ckpt|bin|safetensors|npy|npz|pkl|pickle|h5|hdf5|onnx|tflite|pb|zip|gz|tgz|bz2|xz|zst|tar|7z|so|dll|exe|whl|parquet|arrow|feather|mp4|mp3|wav|pdf)$/i;
const SNIFF_BYTES = 8192;
const PREVIEW_CHARS = 256000;  // a text preview shows its first 256,000 characters
const ONE_LINE = 80;  // JSON shorter than this stays on one line

/** Whether ``start`` (a file's first bytes) is binary: a NUL byte, or not UTF-8. */
export function looksBinary(start) {
  const bytes = start instanceof Uint8Array ? start : Uint8Array.from(start);
  if (bytes.includes(0)) return true;
  try {
    // a multi-byte character cut at the sniffed end is no sign of binary: decode in stream mode
    new TextDecoder("utf-8", { fatal: true }).decode(bytes, { stream: true });
    return false;
  } catch (_) {
    return true;
  }
}

/** ``value`` as JSON laid out compactly: what fits in ONE_LINE characters on one line, else one
 * member a line, indented. */
export function compactJson(value, indent = "") {
  const flat = JSON.stringify(value);
  if (flat === undefined || flat.length + indent.length <= ONE_LINE || value === null || typeof value !== "object") return flat;
  const inner = indent + "  ";
  if (Array.isArray(value)) return "[\n" + value.map((v) => inner + compactJson(v, inner)).join(",\n") + "\n" + indent + "]";
  return "{\n" + Object.entries(value).map(([k, v]) => inner + JSON.stringify(k) + ": " + compactJson(v, inner))
    .join(",\n") + "\n" + indent + "}";
}

/** Bytes as people read them: 512 B, 1.5 MB. */
export function formatBytes(n) {
  if (typeof n !== "number") return "";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let v = n, u = 0;
  while (v >= 1000 && u < units.length - 1) { v /= 1000; u++; }
  return `${u ? formatValue(Number(v.toPrecision(3))) : v} ${units[u]}`;
}

// A file's download and preview are fetched (with the token's header on ``ml-dash ui``, see token.js)
// and shown from blob: URLs: a plain link or <img src> would go without it and be refused.
export function Files({ prefix }) {
  const [files, setFiles] = useState(null);
  const [preview, setPreview] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => { api(runPath(prefix, "/files")).then((out) => setFiles(out.files)); }, [prefix]);
  useEffect(() => () => { if (preview && preview.image) URL.revokeObjectURL(preview.image); }, [preview]);
  if (!files || !files.length) return null;
  const href = (f, extra = "") => runPath(prefix, "/files/" + f.path.split("/").map(encodeURIComponent).join("/")) + extra;
  const show = async (f) => {
    setError(null);
    try {
      if (BINARY.test(f.path)) { setPreview({ path: f.path, binary: f.sizeBytes }); return; }
      const blob = await fetchBlob(href(f, "?preview=1"));
      if (IMAGE.test(f.path)) { setPreview({ path: f.path, image: URL.createObjectURL(blob) }); return; }
      if (looksBinary(new Uint8Array(await blob.slice(0, SNIFF_BYTES).arrayBuffer()))) {
        setPreview({ path: f.path, binary: f.sizeBytes });
        return;
      }
      const text = await blob.text();
      let shown = text.slice(0, PREVIEW_CHARS);
      if (/\.json$/i.test(f.path)) { try { shown = compactJson(JSON.parse(text)); } catch (_) { /* as text */ } }
      setPreview({ path: f.path, text: shown });
    } catch (err) {
      setError(err.message);
    }
  };
  const download = async (event, f) => {
    event.preventDefault();
    setError(null);
    try {
      saveBlob(f.path.split("/").pop(), await fetchBlob(href(f)));
    } catch (err) {
      setError(err.message);
    }
  };
  return html`<section class="files"><h3>Files</h3>
    <table><thead><tr><th>path</th><th>size</th><th>sha256</th><th></th></tr></thead><tbody>
    ${files.map((f) => html`<tr key=${f.path}><td>${f.path}</td><td title=${String(f.sizeBytes)}>${formatBytes(f.sizeBytes)}</td>
      <td class="mono">${String(f.checksum).slice(0, 16)}…</td>
      <td><a href="#" onClick=${(e) => download(e, f)}>download</a> <button class="link" onClick=${() => show(f)}>preview</button></td></tr>`)}
    </tbody></table>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${preview && html`<div class="preview"><h4>${preview.path}</h4>${preview.image
      ? html`<img src=${preview.image} alt=${preview.path} />`
      : preview.binary !== undefined ? html`<p class="muted binary">a binary file of ${formatBytes(preview.binary)}: no preview (download it)</p>`
        : html`<pre>${preview.text}</pre>`}</div>`}
  </section>`;
}

