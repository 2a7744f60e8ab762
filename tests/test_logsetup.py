"""The servers' logging (gateway.logsetup) and the access log (gateway.monitoring.accesslog).

Records go through the real queue and writer thread to a real stream; the access log is fed
hand-made exchange records, as the proxy hands them over (the end-to-end test,
tests/test_e2e_envlogs.py, runs real exchanges through a node logging JSON).
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gateway.central import config as central_config
from gateway.cli import main
from gateway.config import parse_config
from gateway.configfile import ConfigError
from gateway.logsetup import (
    FORMAT_ENV,
    LEVEL_ENV,
    Logging,
    LogSettings,
    LogSetupError,
    active_format,
    setup_logging,
)
from gateway.monitoring.accesslog import ACCESS_LOGGER, FIELDS, MAX_ID_CHARS, AccessLog, access_fields
from gateway.monitoring.exchange import ExchangeRecord, Role

RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def logged() -> Iterator[tuple[io.StringIO, list[Logging]]]:
    """A stream `setup_logging` writes to; every setup made is closed and the levels put back."""
    stream = io.StringIO()
    made: list[Logging] = []
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    touched = ["gateway.proxy", "gateway.noisy", ACCESS_LOGGER]
    levels = {name: logging.getLogger(name).level for name in touched}
    yield stream, made
    for running in made:
        running.close()
    root.handlers[:] = before[0]
    root.setLevel(before[1])
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_fields_and_one_traceback(logged: tuple[io.StringIO, list[Logging]]) -> None:
    stream, made = logged
    made.append(setup_logging(LogSettings(format="json"), stream=stream, environ={}))
    assert active_format() == "json"
    log = logging.getLogger("gateway.proxy.test")
    log.info("served %s in %d ms", "getPerson", 12, extra={"exchange_id": "abc", "status": 200})
    try:
        raise RuntimeError("broken\nacross lines")
    except RuntimeError:
        log.exception("internal error serving %s", "x")
    made[-1].close()  # writes what is queued
    assert active_format() is None
    first, second = _lines(stream)
    assert first["message"] == "served getPerson in 12 ms"
    assert (first["level"], first["logger"], first["exchange_id"], first["status"]) == (
        "INFO",
        "gateway.proxy.test",
        "abc",
        200,
    )
    assert RFC3339_MS.match(first["time"])
    assert "traceback" not in first
    assert second["level"] == "ERROR"
    assert second["traceback"].startswith("Traceback (most recent call last):")
    assert second["traceback"].count("Traceback") == 1
    assert "RuntimeError: broken\nacross lines" in second["traceback"]
    assert len(stream.getvalue().splitlines()) == 2  # the traceback's newlines stay inside its field


def test_text_is_the_line_xgate_always_wrote(logged: tuple[io.StringIO, list[Logging]]) -> None:
    stream, made = logged
    made.append(setup_logging(stream=stream, environ={}))
    logging.getLogger("gateway.node").warning("cannot %s", "start")
    made[-1].close()
    line = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING gateway.node: cannot start$"
    assert re.match(line, stream.getvalue())


def test_levels_per_component_and_the_environment_overrides(
    logged: tuple[io.StringIO, list[Logging]],
) -> None:
    stream, made = logged
    settings = LogSettings(format="text", level="WARNING", levels={"gateway.proxy": "DEBUG"})
    made.append(setup_logging(settings, stream=stream, environ={FORMAT_ENV: "json", LEVEL_ENV: "info"}))
    logging.getLogger("gateway.proxy.consumer").debug("detail")  # its component is at DEBUG
    logging.getLogger("gateway.noisy").debug("hidden")  # the root's INFO (from the environment)
    logging.getLogger("gateway.noisy").info("shown")
    made[-1].close()
    assert [line["message"] for line in _lines(stream)] == ["detail", "shown"]


@pytest.mark.parametrize(("variable", "value"), [(LEVEL_ENV, "LOUD"), (FORMAT_ENV, "xml")])
def test_a_bad_environment_value_is_refused(variable: str, value: str) -> None:
    with pytest.raises(LogSetupError, match=variable):
        LogSettings().with_environment({variable: value})


def test_a_second_setup_replaces_the_first(logged: tuple[io.StringIO, list[Logging]]) -> None:
    stream, made = logged
    first = io.StringIO()
    made.append(setup_logging(stream=first, environ={}))
    made.append(setup_logging(LogSettings(format="json"), stream=stream, environ={}))
    logging.getLogger("gateway.x").warning("once")
    made[-1].close()
    assert first.getvalue() == ""
    assert [line["message"] for line in _lines(stream)] == ["once"]
    assert sum(isinstance(h, logging.handlers.QueueHandler) for h in logging.getLogger().handlers) == 0


# --- configuration ---------------------------------------------------------------------------


def _node_doc(logging_table: dict[str, Any]) -> dict[str, Any]:
    return {
        "node": {"server_id": "DEV/GOV/1001/gw-a"},
        "globalconf": {"location": "http://127.0.0.1:1/globalconf", "anchor": "anchor.json"},
        "internal": {"http": {"port": 8080}},
        "external": {"port": 8443, "cert": "auth.pem", "key": "auth.key"},
        "admin": {"port": 5588},
        "logging": logging_table,
    }


def test_the_logging_table(tmp_path: Path) -> None:
    config = parse_config(
        _node_doc({"format": "json", "levels": {"aiohttp.access": "WARNING"}, "access_log": False}), tmp_path
    )
    assert config.logging == LogSettings("json", "INFO", {"aiohttp.access": "WARNING"}, access_log=False)
    assert parse_config(_node_doc({}), tmp_path).logging == LogSettings()
    with pytest.raises(ConfigError, match=r"logging\.levels\.gateway\.proxy"):
        parse_config(_node_doc({"levels": {"gateway.proxy": "LOUD"}}), tmp_path)
    with pytest.raises(ConfigError, match=r"logging\.format"):
        parse_config(_node_doc({"format": "xml"}), tmp_path)


# --- the access log -----------------------------------------------------------------------------

SECRET_TEXT = "Personal-Data-38001085718"


def _record(**changes: Any) -> ExchangeRecord:
    values: dict[str, Any] = {
        "role": Role.CLIENT,
        "exchange_id": "4f1c0d1e9a7b4c55",
        "protocol": "soap",
        "request_in": 1_765_000_000.0,
        "response_out": 1_765_000_000.0425,
        "steps": {"peer": 0.03},
        "client": "DEV/GOV/1001/benefits-office",
        "service": "DEV/GOV/1002/population/getPerson/v1",
        "message_id": "c3a6d1f2-0000-4000-8000-000000000001",
        "user_id": SECRET_TEXT,
        "rest_path": f"/persons/{SECRET_TEXT}",
        "request_size": 812,
        "response_size": 1790,
        "status": 200,
        "succeeded": True,
        "peer": "DEV/GOV/1002/gw-b",
    }
    values.update(changes)
    return ExchangeRecord(**values)


def test_the_access_line_holds_ids_status_and_time_only() -> None:
    fields = access_fields(
        _record(succeeded=False, status=500, fault_code="Server.ServiceFailed", fault_string=SECRET_TEXT)
    )
    assert list(fields) == list(FIELDS)
    assert fields["duration_ms"] == pytest.approx(42.5)
    assert (fields["role"], fields["status"], fields["fault_code"]) == ("Client", 500, "Server.ServiceFailed")
    assert SECRET_TEXT not in json.dumps(fields)  # no fault text, user id or REST path


def test_the_access_log_writes_one_line_per_exchange(logged: tuple[io.StringIO, list[Logging]]) -> None:
    stream, made = logged
    made.append(setup_logging(LogSettings(format="json"), stream=stream, environ={}))
    observer = AccessLog()
    observer.exchange_done(_record())
    forged = _record(role=Role.PRODUCER, served_from_cache="stale", message_id="a\nforged line")
    observer.exchange_done(forged)
    made[-1].close()
    first, second = _lines(stream)
    assert first["logger"] == ACCESS_LOGGER and first["level"] == "INFO"
    assert {key: first[key] for key in ("exchange_id", "client", "service", "status", "fault_code")} == {
        "exchange_id": "4f1c0d1e9a7b4c55",
        "client": "DEV/GOV/1001/benefits-office",
        "service": "DEV/GOV/1002/population/getPerson/v1",
        "status": 200,
        "fault_code": None,
    }
    assert first["message"] == "exchange 4f1c0d1e9a7b4c55"
    assert (second["role"], second["served_from_cache"], second["message_id"]) == (
        "Producer",
        "stale",
        "a\\nforged line",
    )
    assert SECRET_TEXT not in stream.getvalue()


def test_the_text_access_line_cannot_be_forged_or_flooded(logged: tuple[io.StringIO, list[Logging]]) -> None:
    stream, made = logged
    made.append(setup_logging(stream=stream, environ={}))
    AccessLog().exchange_done(_record(message_id="x\n2026-01-01 INFO forged" + "y" * 1000))
    made[-1].close()
    [line] = stream.getvalue().splitlines()
    assert " INFO xgate.access: exchange role=Client protocol=soap exchange_id=4f1c0d1e9a7b4c55 " in line
    assert "message_id=x\\n2026-01-01" in line
    assert "y" * MAX_ID_CHARS not in line


def test_no_access_line_above_info(logged: tuple[io.StringIO, list[Logging]]) -> None:
    stream, made = logged
    made.append(setup_logging(LogSettings(levels={ACCESS_LOGGER: "WARNING"}), stream=stream, environ={}))
    AccessLog().exchange_done(_record())
    made[-1].close()
    assert stream.getvalue() == ""


def test_a_server_with_a_bad_log_variable_says_so_in_one_line() -> None:
    example = Path(__file__).resolve().parents[1] / "config" / "gateway.example.toml"
    result = CliRunner().invoke(
        main, ["gateway", "serve", "--config", str(example)], env={FORMAT_ENV: "xml", LEVEL_ENV: ""}
    )
    assert result.exit_code == 1
    assert result.output.strip() == "Error: XGATE_LOG_FORMAT='xml': not one of text, json"


def test_the_registry_reads_its_logging_table_too(tmp_path: Path) -> None:
    doc = {
        "registry": {"instance": "DEV"},
        "logging": {"format": "json", "levels": {"gateway.central": "DEBUG"}},
    }
    assert central_config.parse_config(doc, tmp_path).logging == LogSettings(
        "json", "INFO", {"gateway.central": "DEBUG"}
    )
    with pytest.raises(ConfigError, match=r"logging\.access_log: unknown key"):
        central_config.parse_config({**doc, "logging": {"access_log": True}}, tmp_path)
