"""ml-dash: an experiment tracker whose logging never blocks training.

    from ml_dash import Experiment

    exp = Experiment(prefix="alice/mnist/run-1")
    with exp.run:
        exp.params.set(batch_size=32)
        exp.metrics("train").log(loss=0.5, step=0)
"""

__version__ = "0.1.0"

from .errors import (
    ConfigurationError,
    MLDashError,
    RunConflictError,
    RunLockedError,
    RunStateError,
)
from .experiment import Experiment
from .run import RunStatus

__all__ = [
    "ConfigurationError",
    "Experiment",
    "MLDashError",
    "RunConflictError",
    "RunLockedError",
    "RunStateError",
    "RunStatus",
    "__version__",
]
