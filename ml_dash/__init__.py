"""ml-dash: an experiment tracker whose logging never blocks training.

    from ml_dash import Experiment

    exp = Experiment(prefix="alice/mnist/run-1")
    with exp.run:
        exp.params.set(batch_size=32)
        exp.metrics("train").log(loss=0.5, step=0)
"""

__version__ = "0.1.0"

from .errors import ConfigurationError, MLDashError, RunConflictError, RunLockedError, RunStateError  # noqa: E402
from .experiment import Experiment  # noqa: E402
from .run import RunStatus  # noqa: E402

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
