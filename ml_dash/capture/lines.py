"""From what a program wrote to the lines a terminal ends up showing.

Writes arrive in pieces (``print`` writes the text, then ``"\n"``); progress bars (tqdm, Keras,
pip) redraw one line many times with carriage returns. A terminal shows each line in its final
state, so that is what is kept: ``"\r 10%|#  |\r 50%|### |\r100%|#####|\n"`` is the one line
``"100%|#####|"``, never a line per redraw. Terminal control sequences (colours, cursor moves) are
removed: the lines are read in a browser and searched as text.

Memory is bounded: an unfinished line keeps only its last redraw, and a line longer than
``max_line_chars`` is cut into lines of that length.
"""

from __future__ import annotations

import re

#: The longest line kept as one; a longer one (a dumped array with no newline) is cut in pieces.
MAX_LINE_CHARS = 64 * 1024

# CSI sequences (colours, cursor moves: ESC [ ... final byte), OSC sequences (titles, links:
# ESC ] ... BEL or ESC \), and the two-byte escapes.
_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")


def final_state(line: str) -> str:
    """What a terminal shows of ``line`` (no newline in it): its last non-empty redraw, without
    control sequences. A trailing ``"\r"`` is a Windows line end, not a redraw."""
    if "\x1b" in line:
        line = _CONTROL.sub("", line)
    if "\r" not in line:
        return line
    redraws = line.rstrip("\r").split("\r")
    for text in reversed(redraws):
        if text.strip():
            return text
    return ""


class LineAssembler:
    """Assembles one stream's writes into finished lines (not thread-safe: one drainer feeds it)."""

    def __init__(self, max_line_chars: int = MAX_LINE_CHARS) -> None:
        self._max = max_line_chars
        self._partial = ""

    def feed(self, text: str) -> list[str]:
        """The lines that ``text`` finishes, in order (collapsed to their final state)."""
        data = self._partial + text if self._partial else text
        *finished, rest = data.split("\n")
        lines = [final_state(line) for line in finished]
        self._partial = _last_redraw(rest)
        while len(self._partial) > self._max:
            lines.append(final_state(self._partial[: self._max]))
            self._partial = self._partial[self._max:]
        return lines

    def unfinished(self) -> str | None:
        """The line being written (a progress bar at its last redraw), or None when there is none."""
        shown = final_state(self._partial)
        return shown if shown else None


def _last_redraw(partial: str) -> str:
    """An unfinished line cut to its last redraw (the earlier ones can never be shown again), so a
    progress bar redrawn for hours holds one redraw in memory, not all of them."""
    cut = partial.rfind("\r", 0, len(partial) - 1)
    if cut < 0:
        return partial
    kept = partial[cut + 1:]
    if kept.strip("\r").strip():
        return kept
    return final_state(partial) + ("\r" if partial.endswith("\r") else "")
