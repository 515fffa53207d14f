"""What a run records without being asked (as W&B and MLflow do): the family of capture sources.

* :mod:`.system`: the metric ``system`` (CPU, memory, disk, network; NVIDIA GPUs through :mod:`.gpu`),
  sampled on a thread of its own every ``ML_DASH_SYSTEM_METRICS_INTERVAL_S`` (default 10 s);
* :mod:`.console`: ``sys.stdout`` and ``sys.stderr`` as the run's log lines (progress bars collapsed,
  the traceback of a failing run kept whole), bounded;
* :mod:`.provenance`: git state, command line, platform, GPUs, packages, in the run's metadata.

:mod:`.settings` says what is on (``Experiment(system_metrics=, console=, provenance=)`` and the
environment); :mod:`.run_capture` starts and stops the sources with a run. Every source obeys the
same contract: it never runs on the training thread beyond a queue append, never grows memory without
bound, writes through the run's ordinary faces, and fails as one warning, never as an exception in
the training script. docs/capture.md is the user's page.
"""

from .run_capture import RunCapture, RunSinks, attach
from .settings import CaptureSettings

__all__ = ["CaptureSettings", "RunCapture", "RunSinks", "attach"]
