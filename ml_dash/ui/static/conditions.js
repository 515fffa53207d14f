// The run table's filter conditions ("lr < 0.01, model.depth >= 8, optimizer = adam"): parsed here,
// without the DOM, so that tests/test_ui_modules.py checks them in a browser on their own.

const CONDITION = /^([^<>=!]+?)\s*(<=|>=|!=|=|<|>)\s*(.+)$/;

/** Conditions "key op value" separated by commas: lr<0.01, model.depth>=8, optimizer=adam. */
export function parseConditions(text) {
  const out = [];
  for (const part of (text || "").split(",")) {
    const m = part.trim().match(CONDITION);
    if (m) out.push({ key: m[1].trim(), op: m[2], value: m[3].trim() });
  }
  return out;
}

/** The parts of ``text`` that are no condition (said beside the box, not silently ignored). */
export function unparsedConditions(text) {
  return (text || "").split(",").map((p) => p.trim()).filter((p) => p && !CONDITION.test(p));
}
