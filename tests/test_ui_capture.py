"""The run page's capture sections (ml_dash/ui/static/system.js, provenance.js): the "System" section of
the metric ``system`` (GPUs from a fake NVML: no GPU here) and the provenance (git, command, host, Python),
every value rendered as text, and the console lines in the log view with their source; against a real
server and against ``ml-dash ui`` (tests/sites.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .browser import Tab
from .sites import Site
from .test_capture_system import FakeNvml
from .waiting import wait_for

XSS = '<img src=x onerror="window.__xss=1">'


def test_the_run_page_shows_system_metrics_provenance_and_console_lines(
        site: Site, tab: Tab, workdir: Path, capture_on: None, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"}
    for args in (["init", "-q", "-b", "feature-x"], ["commit", "-q", "--allow-empty", "-m", "first"]):
        subprocess.run(["git", *args], cwd=workdir, check=True, env={**env, "PATH": "/usr/bin:/bin"})
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(devices=1))
    monkeypatch.setattr(sys, "argv", ["train.py", "--note", XSS])
    exp = site.experiment("alice/cap/run", system_metrics=0.05)
    with exp.run:
        wait_for(lambda: exp.stats()["capture"]["system"]["rows"] >= 2, "two system rows")
        wait_for(lambda: exp.stats()["capture"]["provenance"]["recorded"], "the provenance")
        exp.metrics("train").log(loss=0.5, step=0)
        print("console token-UI1")
    site.open(tab)
    page = tab.page
    page.goto(site.url + "/?run=alice/cap/run")
    page.locator("section.system tr[data-field=gpu0_util_percent]").wait_for()
    section = page.locator("section.system")
    assert section.get_by_role("heading").inner_text().startswith("System")
    assert section.locator("tr[data-field=gpu0_util_percent] td.num").inner_text() == "40"
    assert section.locator("tr[data-field=proc_rss_mib]").count() == 1
    section.locator("figure.chart[data-field=cpu_percent] canvas").first.wait_for()
    # the metric system has its own section, not a chart among the script's metrics
    assert page.locator("section.charts").first.locator("figure.chart[data-field=cpu_percent]").count() == 0
    page.locator("figure.chart[data-field=loss] canvas").first.wait_for()
    facts = page.locator("section.provenance")
    assert facts.locator("[data-fact=branch]").inner_text() == "feature-x"
    assert facts.locator("[data-fact=dirty]").inner_text() == "no"  # the untracked .dash/ is no change
    assert len(facts.locator("[data-fact=commit]").inner_text()) == 12
    assert facts.locator("[data-fact=command]").inner_text() == f"train.py --note '{XSS}'"  # as text
    assert facts.locator("[data-fact=GPUs]").inner_text() == "NVIDIA Fake H000"
    assert facts.locator("[data-fact=host]").inner_text() and facts.locator("[data-fact=python]").inner_text()
    assert page.evaluate("window.__xss") is None and page.locator("img[src=x]").count() == 0
    line = page.locator(".log-lines li", has_text="console token-UI1")
    line.wait_for()
    assert line.locator(".source").inner_text() == "stdout"
    assert tab.errors == []
