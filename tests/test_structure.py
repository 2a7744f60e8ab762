"""The core/edge line, checked in a fresh interpreter: a sans-IO module must not load storage.

The import contract (`lint-imports`, pyproject.toml) checks the import graph statically; these
tests check what a real import loads, which also catches a package face re-exporting an edge.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

EDGE_LIBRARIES = ("sqlalchemy", "alembic")


def loaded_after_import(module: str, candidates: tuple[str, ...]) -> list[str]:
    code = f"import sys, {module}; print(' '.join(m for m in {candidates!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return result.stdout.split()


@pytest.mark.parametrize(
    "module",
    [
        "gateway.serverconf.model",
        "gateway.proxy.records",
        "gateway.messagelog.verify",
        "gateway.messagelog.asice",
        "gateway.central.requests",
    ],
)
def test_sans_io_module_loads_no_storage(module: str) -> None:
    assert loaded_after_import(module, EDGE_LIBRARIES) == []


def test_the_storage_edge_does_load_storage() -> None:
    """The check above can fail: the repository is where SQLAlchemy and Alembic come in."""
    assert loaded_after_import("gateway.serverconf.repository", EDGE_LIBRARIES) == list(EDGE_LIBRARIES)


def test_central_face_exports_nothing() -> None:
    import gateway.central

    assert not hasattr(gateway.central, "__all__")
    assert loaded_after_import("gateway.central", ("sqlalchemy", "requests", "gateway.central.client")) == []
