"""The layers the imports obey (issue 15): what importing the server loads, and no import cycle.

- ``ml_dash.format`` holds the contracts: it imports nothing of the SDK, the engine or the server.
- The server (and its ingest workers) loads neither the SDK facades nor the agent's runtime nor torch.
- The agent (the engine) knows nothing of experiments, the CLI or the server.
- No module-level import cycle anywhere: the graph of module-level imports (``if TYPE_CHECKING``
  blocks and imports inside functions left out) has no strongly connected component of two or more.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SOURCES = {"ml_dash": REPO / "ml_dash", "ml_dash.agent": REPO / "agent"}


def _modules() -> dict[str, Path]:
    found = {}
    for package, root in SOURCES.items():
        for path in root.rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _module_level_imports(tree: ast.Module):
    """The import statements a module runs when it is imported."""
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and not _is_type_checking(node):
            pending.extend(node.body + node.orelse)
        elif isinstance(node, ast.Try):
            pending.extend(node.body + node.orelse + node.finalbody + [s for h in node.handlers for s in h.body])


def _targets(module: str, path: Path, node: ast.Import | ast.ImportFrom) -> set[str]:
    """The ml_dash modules one import statement loads (a submodule named in ``from pkg import sub``
    included)."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name in MODULES}
    if node.level:
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
        base = f"{base}.{node.module}" if node.module else base
    else:
        base = node.module or ""
    found = {base} if base in MODULES else set()
    found |= {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES}
    return found


def _with_parents(target: str, importer: str) -> set[str]:
    """Importing a.b.c runs a and a.b first, except the packages the importer is itself inside (those
    are already running: a package's __init__ importing its own submodules is no cycle)."""
    parts = target.split(".")
    chain = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return {m for m in chain if m in MODULES and not (importer == m or importer.startswith(m + "."))} | {target}


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        edges: set[str] = set()
        for node in _module_level_imports(ast.parse(path.read_text())):
            for target in _targets(module, path, node):
                edges |= _with_parents(target, module)
        graph[module] = edges - {module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of two or more modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_the_imports_it_checks() -> None:
    graph = import_graph()
    assert "ml_dash.format.values" in graph["ml_dash.format.wire"]
    assert "ml_dash.agent.upload.uploader" in graph["ml_dash.agent.upload.live_upload"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_level_import_cycle() -> None:
    assert cycles(import_graph()) == []


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, pending = set(), [start]
    while pending:
        node = pending.pop()
        if node not in seen:
            seen.add(node)
            pending.extend(graph.get(node, ()))
    return seen


@pytest.mark.parametrize("package, may_not_reach", [
    # the contracts stand alone
    ("ml_dash.format", ("ml_dash.analysis", "ml_dash.agent", "ml_dash.server", "ml_dash._run", "ml_dash.remote", "ml_dash.cli",
                        "ml_dash.experiment", "ml_dash.metrics", "ml_dash.logs", "ml_dash.files", "ml_dash.params")),
    # the engine moves events for named streams: no experiments, no commands, no server
    ("ml_dash.agent", ("ml_dash.analysis", "ml_dash.server", "ml_dash._run", "ml_dash.remote", "ml_dash.cli", "ml_dash.experiment",
                       "ml_dash.metrics", "ml_dash.logs", "ml_dash.files", "ml_dash.params", "ml_dash.run")),
    # the server: contracts and its own storage, never the SDK or the engine's runtime
    ("ml_dash.server", ("ml_dash.analysis", "ml_dash.experiment", "ml_dash.metrics", "ml_dash.logs", "ml_dash.files", "ml_dash.params",
                        "ml_dash.run", "ml_dash._run.session", "ml_dash.agent.runtime", "ml_dash.agent.rundir",
                        "ml_dash.agent.streams", "ml_dash.agent.upload", "ml_dash.remote", "ml_dash.cli")),
    # the DataFrame functions (issue 18): adapters over the run layout and the read API, never the server's
    # code, the engine or the SDK's writers
    ("ml_dash.analysis", ("ml_dash.server", "ml_dash.agent", "ml_dash.experiment", "ml_dash.metrics", "ml_dash.logs",
                          "ml_dash.files", "ml_dash.params", "ml_dash._run.session", "ml_dash.cli")),
])
def test_a_layer_does_not_import_the_layers_above_it(package: str, may_not_reach: tuple[str, ...]) -> None:
    graph = import_graph()
    wrong = []
    for module in sorted(m for m in graph if m == package or m.startswith(package + ".")):
        for reached in sorted(_reachable(graph, module)):
            if any(reached == bad or reached.startswith(bad + ".") for bad in may_not_reach):
                wrong.append(f"{module} -> {reached}")
    assert wrong == []


def _loaded_by(statement: str) -> list[str]:
    probe = f"import sys\n{statement}\nimport json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_importing_the_server_loads_no_sdk_no_agent_runtime_no_torch() -> None:
    loaded = _loaded_by("import ml_dash.server.app, ml_dash.server.serve")
    assert "ml_dash.server.app" in loaded
    assert [m for m in loaded if m in ("torch", "numpy", "ml_dash.experiment", "ml_dash._run.session",
                                       "ml_dash.agent.runtime", "ml_dash.agent.rundir", "ml_dash.metrics")] == []


def test_the_analysis_functions_load_pandas_and_pyarrow_only_when_called() -> None:
    loaded = _loaded_by("import ml_dash.analysis, ml_dash.analysis._search, ml_dash.analysis._history, "
                        "ml_dash.analysis._export, ml_dash.cli.export")
    assert "ml_dash.analysis._search" in loaded
    assert [m for m in loaded if m.split(".")[0] in ("pandas", "pyarrow", "numpy")] == []


def test_an_ingest_worker_imports_only_the_contracts_and_the_decoder() -> None:
    loaded = _loaded_by("import ml_dash.server.ingest.prepare")  # what a worker's start unpickles
    ours = [m for m in loaded if m.startswith("ml_dash")]
    assert "ml_dash.format.wire" in ours and "ml_dash.server.ingest.decode" in ours
    assert [m for m in loaded if m.split(".")[0] == "aiohttp"] == []  # HTTP is the server's: most of a worker's start
    assert [m for m in ours if not m.startswith(("ml_dash.format", "ml_dash.server.ingest", "ml_dash.server.errors",
                                                 "ml_dash.server.config",  # the ServerConfig a worker is given
                                                 "ml_dash.server.storage.records", "ml_dash.server.storage.errors",
                                                 "ml_dash.server.storage.chunks", "ml_dash.server.storage.replies",
                                                 "ml_dash.server.storage.buckets"))
            and m not in ("ml_dash", "ml_dash._version", "ml_dash._lazy", "ml_dash.errors", "ml_dash.server",
                          "ml_dash.server.storage")] == []
