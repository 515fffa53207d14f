"""W&B calls ml-dash does not carry: each raises ``NotImplementedError`` naming the call, so a script
learns at the call that something would not be recorded, never later from a missing chart.

In ``mode="disabled"`` (nothing is recorded anyway) they do nothing and return an inert object, as
W&B's disabled mode does, so a script switched off with ``WANDB_MODE=disabled`` still runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: Set by the package: whether the current run is disabled.
disabled_now: Callable[[], bool] = lambda: False

_HINTS = {
    "wandb.watch": "log gradient or weight norms yourself with wandb.log",
    "wandb.Image": "save the image as a file with wandb.save()",
    "wandb.Table": "log one row of scalars per step with wandb.log, or save a CSV with wandb.save()",
    "wandb.Histogram": "log summary statistics (mean, std, quantiles) with wandb.log",
    "wandb.Artifact": "save the files with wandb.save() (they are kept with the run)",
    "wandb.log_artifact": "save the files with wandb.save()",
    "wandb.define_metric": "ml-dash plots every field against the index, step or time without it",
}


def message(call: str) -> str:
    hint = _HINTS.get(call, "")
    return f"{call} is not supported by ml-dash's W&B-shaped API" + (f"; {hint}" if hint else "")


class Inert:
    """What an unsupported call gives in disabled mode: accepts any call, attribute or item."""

    def __call__(self, *args: Any, **kwargs: Any) -> Inert:
        return self

    def __getattr__(self, name: str) -> Inert:
        if name.startswith("__"):
            raise AttributeError(name)
        return self

    def __getitem__(self, key: Any) -> Inert:
        return self

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def __repr__(self) -> str:
        return "<disabled>"


def function(call: str) -> Callable[..., Any]:
    """A function that raises NotImplementedError naming ``call`` (inert when disabled)."""

    def unsupported(*args: Any, **kwargs: Any) -> Any:
        if disabled_now():
            return Inert()
        raise NotImplementedError(message(call))

    unsupported.__name__ = call.rsplit(".", 1)[-1]
    unsupported.__qualname__ = unsupported.__name__
    unsupported.__doc__ = f"Not supported: raises NotImplementedError ({call})."
    return unsupported


def media_type(call: str) -> type:
    """A class whose construction raises NotImplementedError naming ``call`` (inert when disabled)."""

    def __new__(cls: type, *args: Any, **kwargs: Any) -> Any:
        if disabled_now():
            return Inert()
        raise NotImplementedError(message(call))

    name = call.rsplit(".", 1)[-1]
    return type(name, (), {"__new__": __new__, "__doc__": f"Not supported: raises NotImplementedError ({call})."})


class Namespace:
    """A W&B submodule (``wandb.plot``): every attribute is an unsupported function."""

    def __init__(self, call: str) -> None:
        self._call = call

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("__"):
            raise AttributeError(name)
        return function(f"{self._call}.{name}")
