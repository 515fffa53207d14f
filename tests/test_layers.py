"""The layers the imports obey (issue 15): what importing the server loads, and no import cycle.

- ``ml_dash.format`` holds the contracts: it imports nothing of the SDK, the engine or the server.
- The server (and its ingest workers) loads neither the SDK facades nor the agent's runtime nor torch.
- The agent (the engine) knows nothing of experiments, the CLI or the server.
- The framework integrations (``ml_dash.integrations``) sit above the SDK: nothing below imports them, and
  neither ``import ml_dash`` nor ``import ml_dash.integrations`` loads a framework (each module imports its own).
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


#: The SDK and everything under it: the integrations are adapters above them (ARCHITECTURE.md decision 12).
BELOW_THE_INTEGRATIONS = ("ml_dash.experiment", "ml_dash.metrics", "ml_dash.logs", "ml_dash.files", "ml_dash.params",
                          "ml_dash.run", "ml_dash._run", "ml_dash.remote", "ml_dash.cli", "ml_dash.format",
                          "ml_dash.agent", "ml_dash.server", "ml_dash.errors", "ml_dash._lazy")


@pytest.mark.parametrize("package, may_not_reach", [
    # the contracts stand alone
    ("ml_dash.format", ("ml_dash.analysis", "ml_dash.agent", "ml_dash.server", "ml_dash._run", "ml_dash.remote", "ml_dash.cli",
                        "ml_dash.experiment", "ml_dash.metrics", "ml_dash.logs", "ml_dash.files", "ml_dash.params")),
    # the engine moves events for named streams: no experiments, no commands, no server
    ("ml_dash.agent", ("ml_dash.analysis", "ml_dash.server", "ml_dash._run", "ml_dash.remote", "ml_dash.cli", "ml_dash.experiment",
                       "ml_dash.metrics", "ml_dash.logs", "ml_dash.files", "ml_dash.params", "ml_dash.run")),
    # capture (system metrics, console, provenance) writes through the SDK's faces, given to it by the
    # Experiment: it never imports the Experiment, the engine's streams, the remote side or the server
    ("ml_dash.capture", ("ml_dash.experiment", "ml_dash.agent.streams", "ml_dash.agent.rundir", "ml_dash.agent.upload",
                         "ml_dash.remote", "ml_dash.server", "ml_dash.cli")),
    # the server: contracts and its own storage, never the SDK or the engine's runtime
    ("ml_dash.server", ("ml_dash.analysis", "ml_dash.experiment", "ml_dash.metrics", "ml_dash.logs", "ml_dash.files", "ml_dash.params",
                        "ml_dash.run", "ml_dash._run.session", "ml_dash.agent.runtime", "ml_dash.agent.rundir",
                        "ml_dash.agent.streams", "ml_dash.agent.upload", "ml_dash.remote", "ml_dash.cli")),
    # the DataFrame functions (issue 18): adapters over the run layout and the read API, never the server's
    # code, the engine or the SDK's writers
    ("ml_dash.analysis", ("ml_dash.server", "ml_dash.agent", "ml_dash.experiment", "ml_dash.metrics", "ml_dash.logs",
                          "ml_dash.files", "ml_dash.params", "ml_dash._run.session", "ml_dash.cli", "ml_dash.capture")),
    # the SDK and all below it never import the framework integrations
    *[(package, ("ml_dash.integrations",)) for package in BELOW_THE_INTEGRATIONS],
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


def test_creating_an_experiment_imports_no_psutil_no_nvml_and_starts_no_thread() -> None:
    """Capture's libraries load on its own thread when a run starts, never at import or creation."""
    loaded = _loaded_by("import threading\nfrom ml_dash import Experiment\nExperiment('a/b/c')\n"
                        "assert threading.active_count() == 1, threading.enumerate()")
    assert "ml_dash.capture" in loaded
    assert [m for m in loaded if m.split(".")[0] in ("psutil", "pynvml", "torch")] == []


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


FRAMEWORKS = ("torch", "transformers", "accelerate", "lightning", "pytorch_lightning", "lightning_fabric", "keras")


def test_importing_the_sdk_and_the_integrations_package_loads_no_framework() -> None:
    loaded = _loaded_by("import ml_dash, ml_dash.integrations\nfrom ml_dash import Experiment\nExperiment")
    assert "ml_dash.integrations" in loaded and "ml_dash.experiment" in loaded
    assert [m for m in loaded if m.split(".")[0] in FRAMEWORKS] == []


#: What the framework integrations (adapters, decision 12) import of ours: the public SDK and the contracts.
INTEGRATIONS_MAY_IMPORT = ("ml_dash", "ml_dash.errors", "ml_dash.experiment", "ml_dash.metrics", "ml_dash.run")


def test_the_integrations_sit_on_the_public_sdk() -> None:
    graph = import_graph()
    adapter = {m for m in graph if m == "ml_dash.integrations" or m.startswith("ml_dash.integrations.")}
    assert "ml_dash.integrations.transformers" in adapter  # the graph sees the package
    wrong = sorted(f"{module} -> {target}" for module in adapter for target in graph[module]
                   if target not in adapter and target not in INTEGRATIONS_MAY_IMPORT
                   and not target.startswith("ml_dash.format"))
    assert wrong == []


#: What the W&B-shaped API (an adapter, decision 12) may import directly: the public SDK, the contracts, and
#: the one home of the configuration's names (``ENV_API_URL``: which server ``mode="online"`` means).
WANDB_MAY_IMPORT = ("ml_dash", "ml_dash.errors", "ml_dash.experiment", "ml_dash.metrics", "ml_dash._run",
                    "ml_dash._run.config")


def test_the_wandb_api_sits_on_the_public_sdk_and_nothing_below_depends_on_it() -> None:
    graph = import_graph()
    adapter = {m for m in graph if m == "ml_dash.wandb" or m.startswith("ml_dash.wandb.")}
    assert "ml_dash.wandb._run" in adapter  # the graph sees the package
    wrong = sorted(f"{module} -> {target}" for module in adapter for target in graph[module]
                   if target not in adapter and target not in WANDB_MAY_IMPORT and not target.startswith("ml_dash.format"))
    assert wrong == []
    below = sorted(f"{module} -> {target}" for module in graph if module not in adapter
                   for target in graph[module] if target in adapter)
    assert below == []


def test_importing_the_wandb_api_loads_no_numpy_torch_pandas_nor_http() -> None:
    loaded = _loaded_by("import ml_dash.wandb")
    assert "ml_dash.experiment" in loaded
    assert [m for m in loaded if m.split(".")[0] in ("torch", "numpy", "pandas", "aiohttp", "wandb")
            or m.startswith(("ml_dash.server", "ml_dash.remote"))] == []
