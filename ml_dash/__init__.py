"""ml-dash: an experiment tracker whose logging never blocks training.

    from ml_dash import Experiment

    exp = Experiment(prefix="alice/mnist/run-1")
    with exp.run:
        exp.params.set(batch_size=32)
        exp.metrics("train").log(loss=0.5, step=0)
"""

from typing import TYPE_CHECKING

from ._lazy import lazy_attributes
from ._version import __version__, check_distribution
from .errors import (
    ConfigurationError,
    MLDashError,
    RunConflictError,
    RunLockedError,
    RunStateError,
)

if TYPE_CHECKING:
    from .analysis import history, search_runs
    from .experiment import Experiment
    from .run import RunStatus

# Experiment and RunStatus load the SDK (the agent, the run's machinery); a process that only needs a
# contract (the server, an ingest worker, ``ml_dash.format``) imports ``ml_dash`` without paying for it.
# search_runs and history (ml_dash/analysis) import pandas and pyarrow when called, never at import.
_LAZY = {"Experiment": ".experiment", "RunStatus": ".run", "search_runs": ".analysis", "history": ".analysis"}


__getattr__ = lazy_attributes(__name__, _LAZY)

# PyPI's `ml-dash` is another project that installs this package's name too (ml_dash/_version.py): say so
# at once when the environment's `ml-dash` is that one and this one is imported from a checkout over it.
check_distribution()


__all__ = [
    "ConfigurationError",
    "Experiment",
    "MLDashError",
    "RunConflictError",
    "RunLockedError",
    "RunStateError",
    "RunStatus",
    "__version__",
    "history",
    "search_runs",
]
