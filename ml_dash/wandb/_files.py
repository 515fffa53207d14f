"""``wandb.save(glob, base_path=, policy=)``: files kept with the run, under their path relative to
``base_path`` (W&B's rule: the glob's folder when the glob is absolute, else the working directory).

``policy="now"`` copies what matches now (a glob matching nothing raises ``FileNotFoundError``);
``"live"`` (W&B's default, which re-uploads a file as it changes) copies now and again when the run
finishes, so the final version is kept; ``"end"`` copies when the run finishes. A deferred glob that
matches nothing at the end is reported as a warning and a log line of the run, never skipped unseen.
The files written into ``run.dir`` are saved at the end too (W&B uploads that folder).
"""

from __future__ import annotations

import glob
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..experiment import Experiment

logger = logging.getLogger("ml_dash")
POLICIES = ("now", "live", "end")


@dataclass(frozen=True, slots=True)
class _Deferred:
    pattern: str
    base: str


class Saves:
    """The globs of one run that are copied again (or only) when it finishes."""

    def __init__(self) -> None:
        self._deferred: list[_Deferred] = []

    def save(self, experiment: Experiment, glob_str: str | os.PathLike, base_path: str | os.PathLike | None,
             policy: str) -> list[str]:
        """Apply one ``wandb.save``; the paths copied now."""
        if policy not in POLICIES:
            raise ValueError(f"wandb.save(policy={policy!r}): use 'now', 'live' or 'end'")
        pattern = os.fspath(glob_str)
        base = _base(pattern, base_path)
        if policy != "now":
            self._deferred.append(_Deferred(pattern, base))
        if policy == "end":
            return []
        copied = _copy_matches(experiment, pattern, base)
        if not copied and policy == "now":
            raise FileNotFoundError(f"wandb.save({pattern!r}, policy='now'): no file matches")
        return copied

    def at_end(self, experiment: Experiment, run_dir: Path) -> None:
        """Copy the deferred globs' files as they are now, and everything written into ``run_dir``."""
        for item in self._deferred:
            if not _copy_matches(experiment, item.pattern, item.base):
                text = f"wandb.save({item.pattern!r}): no file matched when the run finished; nothing was saved"
                logger.warning("ml-dash: %s", text)
                experiment.log(text, level="warn")
        if run_dir.is_dir():
            _copy_matches(experiment, str(run_dir / "**" / "*"), str(run_dir))


def _base(pattern: str, base_path: str | os.PathLike | None) -> str:
    if base_path is not None:
        return os.path.abspath(base_path)
    if os.path.isabs(pattern):
        fixed = pattern.split("*", 1)[0].split("?", 1)[0].split("[", 1)[0]
        return os.path.dirname(fixed)
    return os.getcwd()


def _copy_matches(experiment: Experiment, pattern: str, base: str) -> list[str]:
    full = pattern if os.path.isabs(pattern) else os.path.join(os.getcwd(), pattern)
    copied = []
    for path in sorted(glob.glob(full, recursive=True)):
        if not os.path.isfile(path):
            continue
        relative = os.path.relpath(path, base)
        if relative.startswith(".." + os.sep) or relative == "..":
            raise ValueError(f"wandb.save({pattern!r}): {path} is outside base_path {base}")
        experiment.files.upload(path, to=Path(relative).as_posix())
        copied.append(path)
    return copied
