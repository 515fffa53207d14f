"""A real headless Chromium for the UI tests, driven by Playwright (pinned in the dev extras) through
``executable_path``; nothing is downloaded. Debian's ``chromium-headless-shell`` where it is installed
(``.ci/run`` installs it): the same Chromium build without the desktop browser's layers, which is what
Playwright itself runs for headless tests, and about a fifth less CPU per UI test (test_ui.py on 2 cores:
33 CPU-s against 42 with the full browser, whose headless mode is the whole browser); else Debian's
``chromium``. Every request the page makes is routed through a check: one to anywhere but this machine
is aborted and fails the test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

CHROMIUM = Path("/usr/lib/chromium/chromium")
HEADLESS_SHELL = Path("/usr/lib/chromium/chromium-headless-shell")
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}


def _missing(what: str) -> None:
    if os.environ.get("ML_DASH_REQUIRE_BROWSER"):  # set by .ci/run: there, its absence is a failure
        pytest.fail(f"{what} (ML_DASH_REQUIRE_BROWSER is set)")
    pytest.skip(what)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium per test module. Not per session: Playwright's sync API keeps an asyncio loop
    running in this thread while it lives, and the suite's other tests call ``asyncio.run``."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[dev]')")
    executable = HEADLESS_SHELL if HEADLESS_SHELL.exists() else CHROMIUM
    if not executable.exists():
        _missing(f"no Chromium at {CHROMIUM} (apt-get install -y chromium-headless-shell, or chromium)")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(executable), headless=True)
        yield instance
        instance.close()


@dataclass
class Tab:
    """A page and what it did: every URL it asked for, the console's errors, uncaught exceptions."""

    page: Any
    requests: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@pytest.fixture
def tab(browser: Any, request: pytest.FixtureRequest) -> Iterator[Tab]:
    """A fresh browser context and page. With ``ML_DASH_SCREENSHOTS`` set (``.ci/run`` sets it), the
    page as each test leaves it is saved there, named after the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    seen = Tab(page)

    def route(r: Any) -> None:
        url = r.request.url
        seen.requests.append(url)
        host = urlsplit(url).hostname or ""
        if url.startswith(("data:", "blob:")) or host in LOCAL_HOSTS:
            r.continue_()
        else:
            seen.refused.append(url)
            r.abort()

    context.route("**/*", route)
    page.on("console", lambda m: seen.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: seen.errors.append(f"uncaught: {e}"))
    page.set_default_timeout(15_000)
    yield seen
    shots = os.environ.get("ML_DASH_SCREENSHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        name = "".join(c if c.isalnum() or c in "-_" else "_" for c in request.node.name)[:120]
        from playwright.sync_api import Error as PlaywrightError

        try:
            page.screenshot(path=str(Path(shots) / f"{name}.png"), full_page=True)
        except PlaywrightError as exc:  # a page the test closed or navigated away: no picture, no failure
            print(f"no screenshot of {name}: {exc}")
    context.close()
    assert seen.refused == [], f"requests left this machine: {seen.refused}"


def wait_for_chart(page: Any, field: str, text: str) -> None:
    """Until the chart of ``field`` says ``text`` in its caption (its points, its index range)."""
    page.wait_for_function("([field, text]) => (document.querySelector(`figure.chart[data-field=\"${CSS.escape(field)}\"]"
                           " figcaption`) || {}).textContent?.includes(text)", arg=[field, text])


def wait_for_status(page: Any, status: str) -> None:
    page.wait_for_function("(status) => (document.querySelector('.badge') || {}).textContent === status", arg=status)


def follow_a_live_run(page: Any, exp: Any, logged: int, more: int) -> None:
    """On the open page of ``exp``'s run (``logged`` rows so far, flushed): RUNNING and those rows
    shown; ``more`` rows logged then shown without a reload; the run's end shown."""
    wait_for_status(page, "RUNNING")
    wait_for_chart(page, "loss", f"indices 0–{logged - 1}")
    for i in range(logged, logged + more):
        exp.metrics("train").log(step=i, loss=2.0)
    exp.flush()
    wait_for_chart(page, "loss", f"indices 0–{logged + more - 1}")
    exp.run.complete()
    wait_for_status(page, "COMPLETED")
