"""Makes ``quickstart-run.png``, the README's screenshot: the README's own quick start, run in a fresh
directory, shown by ``ml-dash ui`` in headless Chromium (Debian's, through Playwright, as the UI tests do).

    python docs/images/quickstart.py            # rewrites docs/images/quickstart-run.png
    python docs/images/quickstart.py OUT.png    # elsewhere (tests/test_readme_screenshot.py)

Run it again after a change to the quick start or to the run page, and commit the picture: the README
then shows what its example makes. The example's random noise is seeded here, so two runs of the same
code draw the same picture.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/lib/chromium/chromium"
RUN = "alice/mnist/first-run"
VIEWPORT = {"width": 1280, "height": 800}


def quick_start() -> str:
    """The first Python block of the README's "Quick start" section, seeded."""
    section = (REPO / "README.md").read_text().split("## Quick start", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None, "README.md: no Python block under Quick start"
    return "import random; random.seed(0)\n" + code.group(1)


def start_ui(home: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """``ml-dash ui`` over ``home/.dash`` on a free port; its process and base URL."""
    log = home / "ui.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ml_dash.cli", "ui", "--port", "0"], cwd=home, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        found = re.search(r"listening on (http://\S+)", log.read_text())
        if found:
            return proc, found.group(1)
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"ml-dash ui did not start: {log.read_text()}")


def screenshot(out: Path) -> None:
    """Run the quick start, open its run in ml-dash ui, and save the page as ``out``."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        token = secrets.token_urlsafe(24)
        env = {**os.environ, "ML_DASH_QUIET": "1", "ML_DASH_UI_TOKEN": token}
        subprocess.run([sys.executable, "-c", quick_start()], cwd=home, env=env, check=True, timeout=300)
        proc, url = start_ui(home, env)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
                page = browser.new_page(viewport=VIEWPORT)
                page.goto(f"{url}/#token={token}")  # the page keeps the token, as a user's click on the URL does
                page.goto(f"{url}/?run={RUN}")
                page.wait_for_function("() => document.querySelectorAll('figure.chart canvas').length >= 2",
                                       timeout=60_000)
                page.wait_for_load_state("networkidle")
                page.screenshot(path=str(out))
                browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Make the README's screenshot from its quick start.")
    parser.add_argument("out", nargs="?", type=Path, default=Path(__file__).with_name("quickstart-run.png"),
                        help="where to write the PNG (default: docs/images/quickstart-run.png)")
    target = parser.parse_args().out
    screenshot(target)
    print(target)
