// The smoothed lines a chart draws over its points (never instead of them). Non-finite and missing
// values stay gaps and do not enter the average.

/** Running mean of the last ``n`` points up to each point. */
export function runningMean(ys, n) {
  const out = [];
  let sum = 0, count = 0;
  const recent = [];
  for (const y of ys) {
    if (y === null || !Number.isFinite(y)) { out.push(null); continue; }
    recent.push(y); sum += y; count++;
    if (recent.length > n) { sum -= recent.shift(); count--; }
    out.push(sum / count);
  }
  return out;
}

/** Exponential moving average (TensorBoard's debiased form) of ``ys`` with weight ``w`` in [0, 1). */
export function ema(ys, w) {
  const out = [];
  let last = 0, count = 0;
  for (const y of ys) {
    if (y === null || !Number.isFinite(y)) { out.push(null); continue; }
    last = last * w + (1 - w) * y;
    count++;
    out.push(last / (1 - Math.pow(w, count)));
  }
  return out;
}
