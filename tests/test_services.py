"""The PostgreSQL service's side of the tests' services rule (tests/services/__init__.py): a PostgreSQL that
cannot start skips its tests, or fails them where ML_DASH_REQUIRE_SERVICES=1 (.ci/run), naming what is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from .services import missing, postgres


def test_a_missing_service_fails_where_services_are_required_and_skips_elsewhere(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_DASH_REQUIRE_SERVICES", "1")
    with pytest.raises(pytest.fail.Exception, match="PostgreSQL is not installed here .no initdb.; ML_DASH_REQUIRE"):
        missing("PostgreSQL", "no initdb")
    monkeypatch.delenv("ML_DASH_REQUIRE_SERVICES")
    with pytest.raises(pytest.skip.Exception, match="PostgreSQL is not installed here .no initdb."):
        missing("PostgreSQL", "no initdb")


def test_a_cluster_without_binaries_says_which_one_is_missing_and_how_to_get_it(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(postgres, "PG_BIN", tmp_path)
    with pytest.raises(FileNotFoundError, match="initdb.*apt-get install postgresql-15"):
        postgres.PostgresCluster.start()
