"""Where a UI test runs: a real ``ml-dash server`` (signed in with a key), or ``ml-dash ui`` over the
test's own ``.dash`` directory (signed in through the URL it printed, runs written in local mode). The
browser tests of the issue's rows take a ``site`` and run against both."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ml_dash import Experiment

from .server_process import LocalUi, Server


def wait_for_start_page(page: Any) -> None:
    """Until the start page shows: its owners, or the run list it opens instead when the site holds one
    owner's one project."""
    page.locator("h2:text-is('Owners'), section.runs").first.wait_for()


class ServerSite:
    """Runs upload to the server as ``owner`` (alice); the page signs in with their key."""

    def __init__(self, server: Server, owner: str = "alice") -> None:
        self.server = server
        self.key = server.key(owner)
        self.url = server.url

    def experiment(self, prefix: str, **fields: Any) -> Experiment:
        return Experiment(prefix=prefix, remote=self.url, api_key=self.key, **fields)

    def open(self, tab: Any) -> None:
        """The start page, signed in."""
        tab.page.goto(self.url + "/")
        tab.page.fill("input[name=api_key]", self.key)
        tab.page.click("button[type=submit]")
        wait_for_start_page(tab.page)

    def request(self, method: str, path: str) -> tuple[int, Any]:
        return self.server.request(method, path, key=self.key)

    def stop(self) -> None:
        """The server fixture stops the server."""


class LocalSite:
    """Runs are written to ``root`` in local mode; ``ml-dash ui root`` starts when the page first opens."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._ui: LocalUi | None = None

    def experiment(self, prefix: str, **fields: Any) -> Experiment:
        return Experiment(prefix=prefix, local_path=str(self.root), **fields)

    @property
    def url(self) -> str:
        if self._ui is None:
            self._ui = LocalUi(self.root)
        return self._ui.url

    def open(self, tab: Any) -> None:
        """The start page, signed in as a user does: by opening the URL ``ml-dash ui`` printed."""
        self.url  # noqa: B018  # started if it is not yet
        assert self._ui is not None
        tab.page.goto(self._ui.open_url)
        wait_for_start_page(tab.page)

    @property
    def token(self) -> str:
        assert self._ui is not None and self._ui.token is not None
        return self._ui.token

    @property
    def port(self) -> int:
        assert self._ui is not None
        return self._ui.port

    def request(self, method: str, path: str) -> tuple[int, Any]:
        self.url  # noqa: B018  # started if it is not yet
        assert self._ui is not None
        return self._ui.request(method, path)

    def stop(self) -> None:
        if self._ui is not None:
            self._ui.stop()


Site = ServerSite | LocalSite


@pytest.fixture(params=["server", "local"])
def site(request: pytest.FixtureRequest, workdir: Path) -> Iterator[Site]:
    """Each test of a row runs against a real server and against ``ml-dash ui`` on local runs."""
    # the server's app in this process (tests/app_server.py): these tests are about the pages, not the process
    chosen: Site = ServerSite(request.getfixturevalue("app_server")) if request.param == "server" else LocalSite(
        workdir / ".dash")
    yield chosen
    chosen.stop()
