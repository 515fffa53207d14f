"""Every walk-through of the README (and of each docs page holding ``<!-- walkthrough -->``) runs as written,
in order, in a fresh directory, against the real ``ml-dash`` command, a real server and a real ``ml-dash ui``
(tests/walkthrough.py). Seen: the README's remote section made a key for alice and then synced the quick
start's ``owner/...`` run, which the server refused (403); nothing had ever run the README."""

from __future__ import annotations

import json
import os
import shutil
import sys
import urllib.request
from pathlib import Path

import pytest

from .walkthrough import OPT_IN, Walkthrough, blocks

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted(p for p in (REPO / "docs").rglob("*.md") if OPT_IN in p.read_text())]


def _get(url: str, authorization: str) -> object:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, never a proxy
    with opener.open(urllib.request.Request(url, headers={"Authorization": authorization}), timeout=30) as reply:
        return json.loads(reply.read())


@pytest.fixture
def session(tmp_path: Path):
    if shutil.which("ml-dash", path=os.path.dirname(sys.executable)) is None:
        pytest.skip("the ml-dash command is not installed beside this interpreter (pip install -e .)")
    (tmp_path / "home").mkdir()
    (tmp_path / "scripts").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ML_DASH_", "DREAMLAKE_"))}
    walk = Walkthrough(tmp_path / "home", tmp_path / "scripts", env)
    yield walk
    walk.stop()


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO)) for p in PAGES])
def test_the_walkthrough_runs_as_written(page: Path, session: Walkthrough) -> None:
    session.run(page)
    assert session.outputs, f"{page}: no block ran"
    if page.name == "README.md" and page.parent == REPO:
        _readme_runs_are_in_the_ui_and_on_the_server(session)


def _readme_runs_are_in_the_ui_and_on_the_server(session: Walkthrough) -> None:
    """Where the README's walk-through leaves its reader: the quick start's run in ``ml-dash ui``, and on the
    server both it (synced) and the remote run, the pulled copy on disk."""
    ui = next(s for s in session.services if s.kind == "ui")
    opened = next(line for line in ui.banner if "open http" in line).split()[1]
    base, token = opened.split("/#token=")
    listed = _get(f"{base}/api/v1/experiments?owner=alice&project=mnist", f"token {token}")
    assert "alice/mnist/first-run" in {r["prefix"] for r in _runs(listed)}
    server = f"http://127.0.0.1:{session.ports['server']}"
    stored = _get(f"{server}/api/v1/experiments?owner=alice&project=mnist", f"Bearer {session.env['ML_DASH_API_KEY']}")
    assert {"alice/mnist/first-run", "alice/mnist/on-the-server"} <= {r["prefix"] for r in _runs(stored)}
    assert (session.cwd / "pulled/alice/mnist/first-run/metrics/train/data.jsonl").is_file()


def _runs(listed: object) -> list[dict]:
    runs = listed.get("experiments", listed) if isinstance(listed, dict) else listed
    assert isinstance(runs, list), listed
    return runs


def test_the_readme_keeps_its_user_sections_first_and_its_commands_where_ci_reads_them() -> None:
    text = (REPO / "README.md").read_text()
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings[:2] == ["## Install", "## Quick start"], headings
    assert headings[-1] == "## Development"
    shells = [b.text for b in blocks(REPO / "README.md") if b.language == "bash"]
    assert any('pip install -e ".[dev]"' in s and "python -m pytest -q -n auto" in s for s in shells)
    ci = (REPO / ".ci/run").read_text()
    assert 'pip install -e ".[dev]"' in ci and "python -m pytest -q -n auto" in ci
