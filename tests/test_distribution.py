"""PyPI's ``ml-dash`` is another project that installs the package ``ml_dash`` too (ml_dash/_version.py):
pip must never take it for a newer release of this one, and a checkout imported over it says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import ml_dash
from ml_dash._version import EPOCH, OUR_SUMMARY, check_distribution, installed_version

UPSTREAM = "0.11.0"


def _upstream_metadata(site: Path) -> None:
    """What installing PyPI's ml-dash leaves in a site-packages folder: its metadata (its code is not needed)."""
    info = site / f"ml_dash-{UPSTREAM}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: ml-dash\nVersion: {UPSTREAM}\n\nupstream\n")


def _upstream_wheel(directory: Path) -> Path:
    """A wheel of PyPI's ml-dash as an index would offer it (metadata only), for pip to rank against ours."""
    wheel = directory / f"ml_dash-{UPSTREAM}-py3-none-any.whl"
    info = f"ml_dash-{UPSTREAM}.dist-info"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: ml-dash\nVersion: {UPSTREAM}\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
    return wheel


def test_our_version_ranks_above_every_upstream_release() -> None:
    from packaging.version import Version

    assert ml_dash.__version__.startswith(EPOCH)
    assert Version(ml_dash.__version__) > Version("99.0") > Version(UPSTREAM)


@pytest.mark.integration  # pip, in a subprocess
def test_pip_install_upgrade_ml_dash_keeps_this_one(tmp_path: Path) -> None:
    if installed_version() is None:
        pytest.skip("ml-dash is not installed in this environment (the tests run from a checkout)")
    _upstream_wheel(tmp_path)
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--report", "-",
                          "--no-index", "--find-links", str(tmp_path), "--upgrade", "ml-dash"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["install"] == []  # nothing to install: the installed ml-dash is newer


def test_a_checkout_imported_over_upstreams_ml_dash_names_the_conflict(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    _upstream_metadata(site)
    assert installed_version([str(site)]) == UPSTREAM
    with pytest.warns(RuntimeWarning) as warned:
        message = check_distribution([str(site)])
    assert message is not None and str(warned[0].message) == message
    assert f"the `ml-dash` distribution installed in this environment is {UPSTREAM}: PyPI's upstream" in message
    assert "pip install -e " in message


@pytest.mark.integration  # a fresh interpreter: the warning comes at `import ml_dash` itself
def test_the_warning_comes_at_import(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    _upstream_metadata(site)
    out = subprocess.run([sys.executable, "-c", "import ml_dash"], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(site)})
    assert out.returncode == 0
    assert "RuntimeWarning: ml_dash is imported from" in out.stderr and "PyPI's upstream" in out.stderr, out.stderr


def test_ours_and_no_installation_are_quiet(tmp_path: Path) -> None:
    ours = tmp_path / "site-packages" / f"ml_dash-{ml_dash.__version__}.dist-info"
    ours.mkdir(parents=True)
    (ours / "METADATA").write_text(f"Metadata-Version: 2.1\nName: ml-dash\nVersion: {ml_dash.__version__}\n")
    assert check_distribution([str(ours.parent)]) is None
    assert check_distribution([str(tmp_path / "nothing" / "site-packages")]) is None


def test_our_own_release_from_before_the_epoch_is_not_taken_for_upstreams(tmp_path: Path) -> None:
    old = tmp_path / "site-packages" / "ml_dash-0.1.0.dist-info"
    old.mkdir(parents=True)
    (old / "METADATA").write_text("Metadata-Version: 2.4\nName: ml-dash\nVersion: 0.1.0\nSummary: Experiment tracker "
                                  "whose logging never blocks training: an asynchronous buffered agent\n\nbody\n")
    assert installed_version([str(old.parent)]) == "0.1.0"
    assert check_distribution([str(old.parent)]) is None
    pyproject = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    assert f'description = "{OUR_SUMMARY}' in pyproject  # what our METADATA's Summary says
