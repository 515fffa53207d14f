"""The package as installed: the built wheel holds every module of the tree, the agent as ml_dash.agent."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .made_once import made_once

REPO = Path(__file__).resolve().parent.parent


def _modules_in_tree() -> set[str]:
    """Every .py file of ml_dash/ and of the top-level agent/, as the path it has inside the wheel."""
    found = set()
    for top, installed in (("ml_dash", "ml_dash"), ("agent", "ml_dash/agent")):
        for path in (REPO / top).rglob("*.py"):
            relative = path.relative_to(REPO / top)
            found.add(f"{installed}/{relative.as_posix()}")
    return found


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """The wheel of this tree, built once per test run (tests/made_once.py)."""
    (built,) = made_once(tmp_path_factory, "wheel", _build_wheel).glob("ml_dash-*.whl")
    return zipfile.ZipFile(built)


def _build_wheel(out: Path) -> None:
    # no build isolation: setuptools comes from the dev extras, so nothing is fetched from the network
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                             "--no-cache-dir", "-q", "-w", str(out), str(REPO)],
                            capture_output=True, text=True, timeout=300, env={**os.environ, "PIP_NO_INDEX": "1"})
    assert result.returncode == 0, result.stderr


def test_row30_the_wheel_holds_every_module_of_the_tree(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    expected = _modules_in_tree()
    assert {"ml_dash/server/app.py", "ml_dash/agent/upload/uploader.py", "ml_dash/cli/main.py"} <= expected  # the walk saw them
    assert sorted(expected - names) == []


def test_the_agent_is_mapped_not_linked() -> None:
    """agent/ becomes ml_dash.agent through pyproject's package-dir: no symlink in the tree (a checkout
    without symlinks, git on Windows by default, must import), and this checkout's editable install
    imports the engine from agent/ itself."""
    links = [p for top in ("ml_dash", "agent") for p in (REPO / top).rglob("*") if p.is_symlink()]
    assert links == []
    from ml_dash.agent.upload import uploader

    assert Path(uploader.__file__).resolve() == REPO / "agent" / "upload" / "uploader.py"


def test_the_wheel_holds_the_web_ui_with_its_vendored_libraries(wheel: zipfile.ZipFile) -> None:
    ui = REPO / "ml_dash" / "ui"
    expected = {f"ml_dash/ui/{p.relative_to(ui).as_posix()}" for p in ui.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts}
    assert "ml_dash/ui/static/index.html" in expected and "ml_dash/ui/VENDORED.md" in expected
    assert sorted(expected - set(wheel.namelist())) == []


def test_the_wheel_names_the_cli_entry_point(wheel: zipfile.ZipFile) -> None:
    (entry_points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    assert "ml-dash = ml_dash.cli:main" in wheel.read(entry_points).decode()


def test_the_wheel_has_the_c_hot_path_when_a_compiler_built_it_here(wheel: zipfile.ZipFile) -> None:
    from ml_dash import metrics

    built_here = metrics.MetricLogger is not metrics.PyMetricLogger
    if not built_here and not os.environ.get("ML_DASH_REQUIRE_C"):
        pytest.skip("no C compiler here: the extension is optional")
    assert any(n.startswith("ml_dash/_fastlog.") and n.endswith(".so") for n in wheel.namelist())


def test_row30_every_module_imports_from_the_installed_wheel(wheel: zipfile.ZipFile, tmp_path: Path) -> None:
    """Installed (not editable), every module of the tree imports from the install, and the server's
    key commands run from there."""
    target = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                             "--target", str(target), wheel.filename], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    modules = sorted(name[:-3].replace("/", ".").removesuffix(".__init__") for name in _modules_in_tree()
                     if not name.endswith("/__main__.py"))  # a __main__ runs its command: checked below
    check = ("import importlib, sys\n"
             f"for name in {modules!r}:\n"
             "    module = importlib.import_module(name)\n"
             f"    assert module.__file__.startswith({str(target)!r}), (name, module.__file__)\n"
             "print(len(sys.modules))\n")
    env = {**os.environ, "PYTHONPATH": str(target)}  # ahead of the editable install of this checkout
    # ml_dash.integrations.keras imports keras, whose default backend (tensorflow) is not among the dev extras
    env.setdefault("KERAS_BACKEND", "torch")
    imported = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120,
                              env=env, cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    keys = subprocess.run([sys.executable, "-m", "ml_dash.cli", "keys", "create", "--owner", "alice",
                           "--data", str(tmp_path / "data")], capture_output=True, text=True, timeout=120,
                          env=env, cwd=tmp_path)
    assert keys.returncode == 0 and keys.stdout.strip().splitlines()[-1].startswith("mld_"), keys.stderr
