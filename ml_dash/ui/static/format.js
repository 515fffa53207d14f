// Numbers and times as people read them: 0.001, not 0.0010000 or 0.0010000000000000002; 12,345 with
// its grouping; 1e-8 where a fixed form would be all zeros; "3 min ago" with the exact time on hover;
// a run's duration as "1 h 4 min". One formatter of each, made once (they are slow to make).

const SIGNIFICANT = 5;
const numbers = new Intl.NumberFormat(undefined, { maximumSignificantDigits: SIGNIFICANT });
const integers = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const ticks = new Intl.NumberFormat(undefined, { maximumSignificantDigits: 4 });
const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });

/** Exponent form, trailing zeros dropped ("1.5e-8"): for magnitudes no fixed form shows well. */
function exponent(v, digits) {
  const [mantissa, power] = v.toExponential(digits - 1).split("e");
  return mantissa.replace(/\.?0+$/, "") + "e" + Number(power);
}

function readable(v, formatter, digits) {
  const size = Math.abs(v);
  if (size !== 0 && (size < 1e-4 || size >= 1e15)) return exponent(v, digits);
  return Number.isInteger(v) ? integers.format(v) : formatter.format(v);
}

/** A value of the run list or a comparison as text: numbers formatted for people, objects as JSON. */
export function formatValue(v) {
  if (v === null || v === undefined) return "";
  if (typeof v === "number") return Number.isFinite(v) ? readable(v, numbers, SIGNIFICANT) : String(v);
  if (typeof v === "string" && /^(NaN|-?Infinity)$/.test(v)) return v;  // non-finite floats come as their names
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

/** A tick or hover value of a chart axis: short (4 significant digits). */
export function formatAxisValue(v) {
  return Number.isFinite(v) ? readable(v, ticks, 4) : String(v);
}

/** Seconds of ISO text (a run's created_at ...), or null. */
export function secondsOf(iso) {
  const t = iso ? Date.parse(iso) : NaN;
  return Number.isNaN(t) ? null : t / 1000;
}

const UNITS = [["year", 31536000], ["month", 2592000], ["week", 604800], ["day", 86400], ["hour", 3600], ["minute", 60]];

/** ``iso`` relative to ``now`` (seconds): "3 minutes ago", "yesterday"; "" without a time. */
export function relativeTime(iso, now = Date.now() / 1000) {
  const t = secondsOf(iso);
  if (t === null) return "";
  const ago = t - now;
  for (const [unit, size] of UNITS) if (Math.abs(ago) >= size) return relative.format(Math.round(ago / size), unit);
  return relative.format(Math.round(ago), "second");
}

/** The exact local time of ``iso``, for the hover of a relative one ("2026-12-07 08:03:35 (UTC+1)"). */
export function exactTime(iso) {
  const t = secondsOf(iso);
  if (t === null) return "";
  const d = new Date(t * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  const offset = -d.getTimezoneOffset();
  const zone = "UTC" + (offset === 0 ? "" : (offset > 0 ? "+" : "-") + pad(Math.floor(Math.abs(offset) / 60)) + ":" + pad(Math.abs(offset) % 60));
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())} (${zone})`;
}

/** Seconds as a duration: "42 s", "3 min 5 s", "1 h 4 min", "2 d 3 h". */
export function formatDuration(seconds) {
  if (seconds === null || !Number.isFinite(seconds) || seconds < 0) return "";
  if (seconds < 9.95) return `${seconds.toFixed(1)} s`;  // a short run is not "0 s" (ml-dash show says 0.2 s too)
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

/** A run's duration in seconds: from its start (or creation) to its end, or to its last write while it
 * has none (a live run, or one that died without saying); null without a start. */
export function runSeconds(run) {
  const start = secondsOf(run.started_at) ?? secondsOf(run.created_at);
  if (start === null) return null;
  const end = secondsOf(run.ended_at) ?? (typeof run.last_seen === "number" ? run.last_seen : null);
  return end === null ? null : Math.max(0, end - start);
}
