"""Upgrades (issue 12 item 7): databases of the previous release migrate forward with their data in
place and are served; a node refuses a database a newer release migrated.

The previous release's schemas are serverconf 0004 (before the cache policies), message log 0005
(before the lean records) and cache 0001. Its databases are made here by building a federation at
head and taking each database back to those revisions with the migrations' own downgrades, rows
in place; then the gateways start on them (tests/inprocess.py migrates first, as node.serve does)
and serve a real call with the registrations the old database held.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Final

import pytest
import sqlalchemy as sa
from alembic import command
from click.testing import CliRunner

from gateway.cache import db as cache_db
from gateway.central import db as central_db
from gateway.cli import main
from gateway.config import load_config
from gateway.db import Migrations, SchemaTooNew
from gateway.messagelog import db as messagelog_db
from gateway.serverconf import db as serverconf_db
from tests.conftest import (
    BACKENDS,
    GET_PERSON,
    KNOWN_PERSON,
    POPULATION_NS,
    REPO,
    get_person_request,
    migrated_database,
    soap_body,
)
from tests.inprocess import Built, build_template, inprocess_federation

PREVIOUS_RELEASE: Final = {"serverconf": "0004", "messagelog": "0005", "cache": "0001"}
"""The revisions the previous release's databases are at."""

FUTURE_REVISION: Final = "9999_from_a_newer_release"

PACKAGES: Final[dict[str, tuple[Migrations, Callable[[str], None]]]] = {
    "serverconf": (serverconf_db.MIGRATIONS, serverconf_db.migrate),
    "messagelog": (messagelog_db.MIGRATIONS, messagelog_db.migrate),
    "cache": (cache_db.MIGRATIONS, cache_db.migrate),
    "central": (central_db.MIGRATIONS, central_db.migrate),
}


def version_column(migrations: Migrations) -> sa.ColumnClause[str]:
    return sa.table(migrations.version_table, sa.column("version_num", sa.String)).c.version_num


def revision_of(url: str, migrations: Migrations) -> str:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return str(connection.scalar(sa.select(version_column(migrations))))
    finally:
        engine.dispose()


def to_previous_release(url: str, package: str) -> None:
    """The database at `url` at the previous release's revision of `package`'s schema."""
    migrations, migrate = PACKAGES[package]
    migrate(url)  # a log or cache the build did not create yet starts at head, then goes back
    command.downgrade(migrations.alembic_config(url), PREVIOUS_RELEASE[package])
    assert revision_of(url, migrations) == PREVIOUS_RELEASE[package]


def set_revision(url: str, migrations: Migrations, revision: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            column = version_column(migrations)
            connection.execute(sa.update(column.table).values({column: revision}))
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def previous_release(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """A federation whose every gateway's databases are at the previous release's revisions."""
    built = build_template(tmp_path_factory.mktemp("previous") / "federation")
    for gw in built.description["gateways"]:
        config = load_config(Path(gw["config"]))
        to_previous_release(config.database_url, "serverconf")
        if config.messagelog is not None:
            to_previous_release(config.messagelog.database_url, "messagelog")
        if config.cache is not None:
            to_previous_release(config.cache.database_url, "cache")
    return built


async def test_databases_of_the_previous_release_are_migrated_and_served(
    previous_release: Built, tmp_path: Path
) -> None:
    gw_b_config = Path(
        next(gw["config"] for gw in previous_release.description["gateways"] if gw["name"] == "gw-b")
    )
    old_db = load_config(gw_b_config).database_url.removeprefix("sqlite:///")
    with sqlite3.connect(old_db) as old:
        services_before = old.execute("SELECT count(*) FROM services").fetchone()[0]
        rights_before = old.execute("SELECT count(*) FROM access_rights").fetchone()[0]
    assert services_before > 0 and rights_before > 0

    async with inprocess_federation(tmp_path / "federation", template=previous_release) as fed:
        response = await fed["gw-a"].post(
            "/",
            get_person_request(KNOWN_PERSON),
            {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'},
        )
        assert response.status_code == 200, response.text
        person = soap_body(response).find(f"{{{POPULATION_NS}}}person")
        assert person is not None
        config = fed["gw-b"].runtime.config
        snapshot = fed["gw-b"].runtime.repository.snapshot()
        assert snapshot.service(GET_PERSON) is not None
        assert len(snapshot.services) == services_before
        assert revision_of(config.database_url, serverconf_db.MIGRATIONS) == "0005"
        assert config.messagelog is not None
        assert revision_of(config.messagelog.database_url, messagelog_db.MIGRATIONS) == "0006"
        # The call was logged in the migrated log.
        log = config.messagelog.database_url.removeprefix("sqlite:///")
        with sqlite3.connect(log) as connection:
            assert connection.execute("SELECT count(*) FROM messagelog_records").fetchone()[0] >= 2


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_a_database_a_newer_release_migrated_is_refused_and_left_alone(
    backend: str, package: str, tmp_path: Path
) -> None:
    migrations, migrate = PACKAGES[package]
    with migrated_database(backend, tmp_path, f"{package}.db", migrate, "xgate_lifecycle") as url:
        set_revision(url, migrations, FUTURE_REVISION)

        with pytest.raises(SchemaTooNew, match=FUTURE_REVISION) as refused:
            migrate(url)

        assert refused.value.unknown == (FUTURE_REVISION,)
        assert "newer xgate" in str(refused.value)
        assert revision_of(url, migrations) == FUTURE_REVISION


def test_a_node_refuses_to_start_on_a_newer_schema(previous_release: Built, tmp_path: Path) -> None:
    directory = tmp_path / "federation"
    description = previous_release.copy_to(directory)
    config = Path(next(gw["config"] for gw in description["gateways"] if gw["name"] == "gw-a"))
    url = load_config(config).database_url
    serverconf_db.migrate(url)
    set_revision(url, serverconf_db.MIGRATIONS, FUTURE_REVISION)

    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "gateway", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )

    assert result.returncode == 1, result.stderr
    assert "cannot start" in result.stderr and FUTURE_REVISION in result.stderr
    assert "newer xgate" in result.stderr
    assert "Traceback" not in result.stderr
    migrated = CliRunner().invoke(main, ["gateway", "migrate", "--config", str(config)])
    assert migrated.exit_code == 1 and FUTURE_REVISION in migrated.output
    assert revision_of(url, serverconf_db.MIGRATIONS) == FUTURE_REVISION
