"""The tests' services rule (tests/services/__init__.py): a service that cannot start fails the tests in CI
and skips them, with the reason, elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from .services import postgres, service_missing


def test_a_missing_service_fails_in_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="PostgreSQL is required in CI.*no initdb"):
        service_missing("PostgreSQL", "no initdb")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="PostgreSQL is not usable here: no initdb"):
        service_missing("PostgreSQL", "no initdb")


def test_a_cluster_without_binaries_says_which_one_is_missing_and_how_to_get_it(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(postgres, "PG_BIN", tmp_path)
    with pytest.raises(FileNotFoundError, match="initdb.*apt-get install postgresql-15"):
        postgres.PostgresCluster.start()
