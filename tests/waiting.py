"""Waiting for what the client or the server does in the background, and saying why when it never came.

``PATIENCE_S`` bounds a wait against a hang; it is no speed check (benchmarks/ measure speed, and a
loaded CI machine once took more than 30 s for a run's first upload). A wait that runs out fails
with the state of this process's ml-dash agent: its threads' stacks and its loop's tasks, so that a
stall on a machine we cannot log in to explains itself.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

PATIENCE_S = 120.0


def agent_state() -> str:
    """The ml-dash threads' stacks and the agent loop's tasks, as text."""
    from ml_dash.agent.runtime import Agent

    names = {t.ident: t.name for t in threading.enumerate()}
    out = []
    for ident, frame in sys._current_frames().items():
        name = names.get(ident, "?")
        if name.startswith("ml-dash"):
            out.append(f"--- thread {name}\n" + "".join(traceback.format_stack(frame, limit=12)))
    agent = Agent._instance
    if agent is not None:
        out.append(f"--- {len(agent.runs)} run(s) registered with the agent")
        try:
            tasks = list(asyncio.all_tasks(agent._loop))
        except RuntimeError:  # the loop changed its task set meanwhile: once more
            tasks = list(asyncio.all_tasks(agent._loop))
        for task in tasks:
            where = " <- ".join(f"{f.f_code.co_name}:{f.f_lineno}" for f in task.get_stack(limit=8))
            out.append(f"task {task.get_name()}: {where}")
    return "\n".join(out)


def wait_for(predicate: Callable[[], Any], what: str, *context: Any, timeout_s: float = PATIENCE_S) -> None:
    """Until ``predicate()`` holds; else fail naming ``what``, ``context`` (a proxy's counts, say; a callable
    is asked at the end) and the agent's state."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    if not predicate():
        details = "\n".join(str(c() if callable(c) else c) for c in context)  # a callable: what it says now
        raise AssertionError(f"{what}: not within {timeout_s:g} s\n{details}\n{agent_state()}")
