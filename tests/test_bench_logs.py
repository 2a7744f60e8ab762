"""The message-log benches run (bench/logsize.py, bench/officerquery.py), at a small size: their
figures come from the real write and read paths, so a change that breaks those breaks them too.
The full-size runs (a million records) are for the bench, never the suite."""

from __future__ import annotations

import pytest

from bench import logsize, officerquery
from tests.conftest import pg_dsn


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend_url(request: pytest.FixtureRequest) -> str | None:
    return None if request.param == "sqlite" else pg_dsn()


def test_logsize_measures_bytes_per_exchange(backend_url: str | None) -> None:
    result = logsize.measure(backend_url, 120, signing_batch=4, stamp_every=100, show=False)
    assert 2_000 < result["bodies"] < 3_000  # two ~1.3 KB messages an exchange
    assert 0 < result["per_exchange"] < 20_000
    assert result["records_per_commit"] > 1


def test_officerquery_searches_each_filter_and_exports_genuine_records(backend_url: str | None) -> None:
    result = officerquery.run(backend_url, 400, export=20, rounds=2)
    assert result["records"] >= 400 and result["filler"] > 0
    assert set(result["searches"]) == set(officerquery.searches(officerquery.random.Random()).keys())
    assert all(p50 >= 0 and p95 >= p50 for p50, p95 in result["searches"].values())
    assert (result["containers"], result["failures"]) == (20, 0)
