"""The rings hold (tests/rings.py): every test is exactly one of unit, integration, browser; a test in two
stops the run; a unit test that starts a process fails; without torch every module collects and the
tests that need it are skipped, with the reason."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from .made_once import made_once
from .order import run_order
from .rings import RINGS, rings_of

ROOT = Path(__file__).resolve().parent.parent
NO_TORCH = Path(__file__).resolve().parent / "no_torch"  # its sitecustomize makes `import torch` fail


def _pytest(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:randomly", "-p", "no:cacheprovider",
                           "-p", "no:xdist", *args], cwd=ROOT, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=540)


def _alone(tmp_path: Path, source: str, *args: str) -> subprocess.CompletedProcess:
    """Run a test file of ``source`` with the rings' plugin and the project's settings, apart from the suite."""
    (tmp_path / "test_alone.py").write_text(textwrap.dedent(source))
    return _pytest("-q", "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(tmp_path), "-p", "tests.rings",
                   *args, str(tmp_path / "test_alone.py"), env={"PYTHONPATH": str(ROOT)})


def test_every_test_of_this_session_is_in_exactly_one_ring(request: pytest.FixtureRequest) -> None:
    items = request.session.items
    assert {item.nodeid: rings_of(item) for item in items if len(rings_of(item)) != 1} == {}
    by_id = {item.nodeid: rings_of(item) for item in items}
    assert by_id[request.node.nodeid] == ["unit"]
    starts_pytest = request.node.nodeid.replace(request.node.name, "test_a_unit_test_that_starts_a_process_fails_naming_it")
    if starts_pytest in by_id:  # through _alone and _pytest: subprocess
        assert by_id[starts_pytest] == ["integration"]
    if "tests/test_codec.py::test_metric_chunk_lines_have_the_upstream_shape" in by_id:  # not deselected
        assert by_id["tests/test_codec.py::test_metric_chunk_lines_have_the_upstream_shape"] == ["unit"]


def test_the_long_tests_run_first_and_xdist_hands_them_out_one_at_a_time(request: pytest.FixtureRequest) -> None:
    """tests/order.py: slow, then integration and browser, then unit (the workers of -n end together)."""
    ranks = [run_order(item) for item in request.session.items]
    assert ranks == sorted(ranks)
    assert run_order(request.node) == 2
    if request.config.pluginmanager.hasplugin("xdist") and "--maxschedchunk" not in request.config.invocation_params.args:
        assert request.config.option.maxschedchunk == 1


def test_n_auto_starts_two_workers_per_core_unless_the_environment_says(
        request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """tests/order.py: a worker waiting on a server or a throttled link leaves its core to another one."""
    xdist = pytest.importorskip("xdist.plugin")
    hook = request.config.hook.pytest_xdist_auto_num_workers
    monkeypatch.delenv("PYTEST_XDIST_AUTO_NUM_WORKERS", raising=False)
    assert hook(config=request.config) == 2 * xdist.pytest_xdist_auto_num_workers(request.config)
    monkeypatch.setenv("PYTEST_XDIST_AUTO_NUM_WORKERS", "5")
    assert hook(config=request.config) == 5  # xdist's variable still decides


def test_a_test_marked_with_two_rings_stops_the_run_naming_it(tmp_path: Path) -> None:
    out = _alone(tmp_path, """
        import pytest

        @pytest.mark.unit
        @pytest.mark.browser
        def test_both():
            pass

        def test_fine():
            pass
    """, "--collect-only")
    assert out.returncode != 0
    assert "exactly one of the rings" in out.stderr and "test_alone.py::test_both: ['unit', 'browser']" in out.stderr
    assert set(RINGS) == {"unit", "integration", "browser"}


def test_a_unit_test_that_starts_a_process_fails_naming_it(tmp_path: Path) -> None:
    """The rule reads names; a process started where it cannot see (a library's call) is caught running."""
    out = _alone(tmp_path, """
        import shutil
        import pytest

        def start():  # not test code the rule follows: outside the test package, as a library is
            return __import__("subprocess").run(["true"])

        def test_starts_one_behind_the_rule():
            start()

        @pytest.mark.integration
        def test_starts_one_marked():
            start()

        def test_starts_none():
            assert shutil.which("true")
    """)
    assert "1 failed, 2 passed" in out.stdout, out.stdout + out.stderr
    assert ("test_starts_one_behind_the_rule is in the unit ring but started a process: subprocess.Popen"
            in out.stdout), out.stdout


@pytest.mark.timeout(600)  # it collects the whole suite in a fresh interpreter
def test_without_torch_every_module_collects_and_the_torch_tests_are_skipped_with_the_reason() -> None:
    blocked = {"PYTHONPATH": os.pathsep.join([str(NO_TORCH), os.environ.get("PYTHONPATH", "")])}
    check = subprocess.run([sys.executable, "-c", "import torch"], env={**os.environ, **blocked},
                           capture_output=True, text=True, timeout=60)
    assert "ModuleNotFoundError" in check.stderr or "ImportError" in check.stderr  # the shim works
    # --assert=plain: what is checked is collection and skipping, and rewriting every module's asserts was
    # most of this test's time (where bytecode is not cached, PYTHONDONTWRITEBYTECODE)
    out = _pytest("-q", "-rs", "--assert=plain", "-m", "needs_torch", env=blocked)
    assert out.returncode == 0, out.stdout[-5000:] + out.stderr[-3000:]  # 2 would be an error of collection
    summary = out.stdout.strip().splitlines()[-1]
    assert "passed" not in summary and "failed" not in summary and "error" not in summary, summary
    assert int(summary.split(" skipped")[0].split()[-1]) > 20, summary
    assert "needs torch, which is not installed" in out.stdout
    assert "every test here is about torch tensors" in out.stdout  # tests/test_tensors.py, as a whole
    for needing in ("test_files.py:", "test_metrics.py:", "test_value_domain.py:", "test_spec_examples.py:",
                    "test_remote_files.py:"):
        assert needing in out.stdout, needing  # each module's torch tests are among the skipped


def test_data_made_once_per_run_is_made_once_and_each_caller_gets_a_copy_of_its_own(
        tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """tests/made_once.py, as two xdist workers of one run use it (the worker's name is what it reads)."""
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    made: list[Path] = []

    def make(directory: Path) -> None:
        made.append(directory)
        (directory / "data").write_text("made")

    name = f"check-{uuid.uuid4().hex}"  # outside xdist the shared directory is every run's: a name of its own
    try:
        first = made_once(tmp_path_factory, name, make)
        (first / "data").write_text("changed by its tests")
        second = made_once(tmp_path_factory, name, make)
        assert len(made) == 1 and first != second
        assert (second / "data").read_text() == "made" and sorted(p.name for p in second.iterdir()) == ["data"]
    finally:
        for directory in made:  # the shared one: not left in every run's directory
            shutil.rmtree(directory, ignore_errors=True)
            Path(f"{directory}.lock").unlink(missing_ok=True)
