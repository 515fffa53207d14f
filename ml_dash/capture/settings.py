"""What a run captures without being asked, from the Experiment's keywords and the environment.

A keyword given to ``Experiment`` wins over the environment; the environment over the defaults
(everything on, as W&B and MLflow do):

* ``ML_DASH_SYSTEM_METRICS_INTERVAL_S``: seconds between two rows of the ``system`` metric
  (default 10; ``0`` turns the sampler off). ``Experiment(system_metrics=False)`` turns it off,
  ``system_metrics=2.5`` samples every 2.5 s.
* ``ML_DASH_CONSOLE``: ``0`` turns the console capture off (``Experiment(console=False)``).
* ``ML_DASH_PROVENANCE``: ``0`` turns off the record of where the run came from (git, command line,
  platform, packages; ``Experiment(provenance=False)``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import ConfigurationError

#: Seconds between two samples of the system metrics when nothing says otherwise (W&B's default too).
DEFAULT_SYSTEM_INTERVAL_S = 10.0
#: The longest interval accepted (a day): a longer one is a typo, not a wish.
MAX_SYSTEM_INTERVAL_S = 86_400.0

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True, slots=True)
class CaptureSettings:
    """What to capture for one run: ``system_interval_s`` is 0 when the sampler is off."""

    system_interval_s: float = DEFAULT_SYSTEM_INTERVAL_S
    console: bool = True
    provenance: bool = True

    @property
    def anything(self) -> bool:
        return self.system_interval_s > 0 or self.console or self.provenance

    @classmethod
    def resolve(cls, system_metrics: bool | float | None = None, console: bool | None = None,
                provenance: bool | None = None) -> CaptureSettings:
        """The settings from the keywords (None: from the environment); a clear error names a bad value."""
        return cls(system_interval_s=_interval(system_metrics), console=_switch("console", console, "ML_DASH_CONSOLE"),
                   provenance=_switch("provenance", provenance, "ML_DASH_PROVENANCE"))


def _interval(keyword: bool | float | None) -> float:
    if keyword is None:
        raw = os.environ.get("ML_DASH_SYSTEM_METRICS_INTERVAL_S", "").strip()
        if not raw:
            return DEFAULT_SYSTEM_INTERVAL_S
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if not 0 <= value <= MAX_SYSTEM_INTERVAL_S:  # NaN fails this too
            raise ConfigurationError(f"ML_DASH_SYSTEM_METRICS_INTERVAL_S={raw!r} must be a number of seconds from 0 "
                                     f"(off) to {MAX_SYSTEM_INTERVAL_S:.0f}")
        return value
    if isinstance(keyword, bool):
        return _interval(None) or DEFAULT_SYSTEM_INTERVAL_S if keyword else 0.0
    if isinstance(keyword, (int, float)) and 0 <= keyword <= MAX_SYSTEM_INTERVAL_S:
        return float(keyword)
    raise ValueError(f"system_metrics={keyword!r} must be True, False or a number of seconds from 0 (off) to "
                     f"{MAX_SYSTEM_INTERVAL_S:.0f}")


def _switch(name: str, keyword: bool | None, variable: str) -> bool:
    if keyword is not None:
        if not isinstance(keyword, bool):
            raise TypeError(f"{name}= must be True or False, not {keyword!r}")
        return keyword
    raw = os.environ.get(variable, "").strip().lower()
    if not raw or raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigurationError(f"{variable}={raw!r} must be one of {', '.join(_TRUE + _FALSE)}")
