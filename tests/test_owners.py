"""No part holds the object that owns it, and outcomes are enums, not strings (issue 15, point 2).

A part is given what it needs (a memory budget, settings, a clock, callbacks), never its owner: a
stream that holds the agent can reach every run, pool and setting of the process, and a test of the
stream needs a whole agent. These checks read the source (AST), so they hold for code paths no test
runs: the part's module must not name its owner's class at all (no import, no annotation, no
attribute typed with it), nor reach into the owner's private state.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

AGENT = Path(__file__).resolve().parent.parent / "agent"

#: part (source file under agent/) -> the classes of the objects that own it
OWNERS = {
    "streams.py": ("Agent", "RunWriter"),
    "budget.py": ("Agent",),
    "rundir.py": ("Agent",),
    "final_documents.py": ("RunWriter",),
    "lifecycle.py": ("Agent",),
    "upload/file_upload.py": ("RunUploader",),
}


def _names(tree: ast.AST) -> set[str]:
    """Every name a module uses: identifiers, attributes, imported names, string annotations."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.Attribute):
            found.add(node.attr)
        elif isinstance(node, ast.alias):
            found.add(node.asname or node.name.rsplit(".", 1)[-1])
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
            found.add(node.value)  # "Agent" as a quoted annotation
    return found


@pytest.mark.parametrize("part, owners", sorted(OWNERS.items()))
def test_a_part_never_names_the_class_that_owns_it(part: str, owners: tuple[str, ...]) -> None:
    used = _names(ast.parse((AGENT / part).read_text()))
    assert sorted(used & set(owners)) == []


@pytest.mark.parametrize("part", sorted(OWNERS))
def test_a_part_never_reaches_into_the_agents_singleton(part: str) -> None:
    # lifecycle once reset Agent._instance itself; the agent now registers a reset hook
    assert "_instance" not in _names(ast.parse((AGENT / part).read_text()))


def test_the_check_sees_an_owner_however_it_is_named() -> None:
    source = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .runtime import Agent\n"
              "class S:\n    def __init__(self, owner: 'Agent') -> None:\n        self.owner = owner\n")
    assert "Agent" in _names(ast.parse(source))
    assert "_instance" in _names(ast.parse("from .runtime import Agent as A\nA._instance = None\n"))


def test_a_stream_works_with_a_budget_alone() -> None:
    """The point of the budget: a stream is built and bounded without any agent (here a budget whose
    capacity is already spent and which never waits: the row is dropped and counted)."""
    from ml_dash.agent.budget import BufferBudget
    from ml_dash.agent.streams import RowStream

    wakes: list[int] = []
    budget = BufferBudget(1024, 0.0, buffered_bytes=lambda: 4096, request_drain=lambda: wakes.append(1))
    stream = RowStream(budget, "metrics/x", Path("unused"), "index", lambda rows, start, at: b"", 100, 1)
    stream.queue.append({"v": 1})
    stream.on_threshold(stream.queue[-1])
    assert len(stream.queue) == 0 and stream.counters.dropped == {"buffer_full": 1} and wakes == [1]


def test_the_budget_asks_its_owner_for_one_drain_at_a_time() -> None:
    from ml_dash.agent.budget import BufferBudget

    requests: list[int] = []
    budget = BufferBudget(1024, 0.0, buffered_bytes=lambda: 0, request_drain=lambda: requests.append(1))
    budget.wake()
    budget.wake()  # a second stream crossing its threshold before the drain started: no second request
    assert requests == [1]
    budget.drain_started()
    budget.wake()
    assert requests == [1, 1]


def _function(tree: ast.Module, cls: str, name: str) -> ast.AsyncFunctionDef | ast.FunctionDef:
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == cls:
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name == name:
                    return item
    raise AssertionError(f"{cls}.{name} not found")


def test_the_uploaders_next_step_is_an_enum_everywhere_it_is_made() -> None:
    from ml_dash.agent.upload.uploader import NextStep

    dispatch = _function(ast.parse((AGENT / "upload/uploader.py").read_text()), "RunUploader", "_dispatch")
    assert ast.unparse(dispatch.returns) == "NextStep"  # type: ignore[arg-type]
    made = {ast.unparse(node.value) for node in ast.walk(dispatch) if isinstance(node, ast.Return)}
    assert made and all("NextStep." in value for value in made), made
    assert {step.name for step in NextStep} == {"CONTINUE", "REBUILD", "STOP"}


def test_why_an_upload_stopped_is_an_enum_that_still_reads_as_its_word() -> None:
    from ml_dash.agent.upload.retry import STOPS, StopReason
    from ml_dash.agent.upload.uploader import UploadReport

    assert UploadReport.__annotations__["stopped"] == "StopReason | None"
    assert set(STOPS.values()) <= set(StopReason)
    assert StopReason.CONFLICT == "conflict" and f"{StopReason.AUTH}" == "auth"  # messages and JSON unchanged


def _assigned_to_stopped(node: ast.AST) -> list[ast.expr]:
    """The values an assignment gives to ``<x>.stopped`` (alone, or in a tuple assignment)."""
    if not isinstance(node, ast.Assign):
        return []
    values = []
    for target in node.targets:
        if isinstance(target, ast.Attribute) and target.attr == "stopped":
            values.append(node.value)
        elif isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
            values += [v for t, v in zip(target.elts, node.value.elts) if isinstance(t, ast.Attribute)
                       and t.attr == "stopped"]
    return values


def _has_string(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Constant) and isinstance(n.value, str) for n in ast.walk(node))


def test_no_one_sets_or_compares_a_stop_reason_as_a_string() -> None:
    root = AGENT.parent
    wrong = []
    for path in [*AGENT.rglob("*.py"), *(root / "ml_dash").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            compared = (isinstance(node, ast.Compare) and isinstance(node.left, ast.Attribute)
                        and node.left.attr == "stopped" and any(_has_string(c) for c in node.comparators))
            if compared or any(_has_string(value) for value in _assigned_to_stopped(node)):
                wrong.append(f"{path.relative_to(root)}:{node.lineno}")
    assert wrong == []


def test_the_stop_reason_check_sees_a_string_however_it_is_set() -> None:
    for source in ('r.stopped = "lost"', 'r.stopped, r.reason = "invalid", why',
                   'r.stopped, r.reason = STOPS.get(s, "invalid"), why'):
        assert any(_has_string(v) for v in _assigned_to_stopped(ast.parse(source).body[0])), source
    assert not _assigned_to_stopped(ast.parse('r.reason = "x"').body[0])
