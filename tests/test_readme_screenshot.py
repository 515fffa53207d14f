"""The README's screenshot is made by a script from the README's own quick start (docs/images/quickstart.py):
it runs, and the picture it makes is the one committed. Seen: the README showed an image that did not exist."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from .browser import CHROMIUM, _missing

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "docs/images/quickstart.py"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _size(png: bytes) -> tuple[int, int]:
    assert png.startswith(PNG_SIGNATURE)
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")  # the IHDR chunk's width, height


def test_the_readme_shows_the_committed_screenshot() -> None:
    assert "](docs/images/quickstart-run.png)" in (REPO / "README.md").read_text()
    assert _size((REPO / "docs/images/quickstart-run.png").read_bytes()) == (1280, 800)


@pytest.mark.browser
def test_the_script_makes_the_screenshot_from_the_readmes_quick_start(tmp_path: Path) -> None:
    if importlib.util.find_spec("playwright") is None:
        _missing("playwright is not installed (pip install -e '.[dev]')")
    if not CHROMIUM.exists():
        _missing(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    spec = importlib.util.spec_from_file_location("quickstart_screenshot", SCRIPT)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert "exp.metrics(\"train\").log(loss=loss, step=step)" in script.quick_start()
    out = tmp_path / "run.png"
    script.screenshot(out)
    assert _size(out.read_bytes()) == (1280, 800)
    if os.environ.get("ML_DASH_SCREENSHOTS"):  # CI keeps it with the UI tests' screenshots
        Path(os.environ["ML_DASH_SCREENSHOTS"]).mkdir(parents=True, exist_ok=True)
        (Path(os.environ["ML_DASH_SCREENSHOTS"]) / "readme-quickstart-run.png").write_bytes(out.read_bytes())
