"""The tests' optional dependency: torch. Where it is not installed, ``torch`` and ``nn`` are None, a test
whose code uses them is skipped with the reason (tests/rings.py marks it ``needs_torch``), and a
parametrize case built from torch is :func:`torch_case`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

try:
    import torch
    from torch import nn
except ImportError:
    torch = None  # type: ignore[assignment]
    nn = None  # type: ignore[assignment]


def torch_case(make: Callable[[], Any], *rest: Any, id: str | None = None) -> Any:
    """A parametrize case whose first value needs torch: built by ``make`` where torch is installed, and
    a case marked ``needs_torch`` (skipped, with the reason) where it is not."""
    first = make() if torch is not None else None
    return pytest.param(first, *rest, marks=pytest.mark.needs_torch, id=id)
