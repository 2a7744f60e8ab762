"""`xgate federation up|down` on directories they should not touch: one-line answers, no traceback."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from gateway.cli import main


def xgate(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def test_down_where_nothing_was_started(tmp_path: Path) -> None:
    code, output = xgate("federation", "down", "--dir", str(tmp_path / "missing"))
    assert code == 1 and "does not exist" in output
    code, output = xgate("federation", "down", "--dir", str(tmp_path))
    assert code == 0 and "already stopped" in output


def test_up_does_not_overwrite_a_federation(tmp_path: Path) -> None:
    (tmp_path / "pki").mkdir()
    code, output = xgate("federation", "up", "--dir", str(tmp_path))
    assert code == 1 and "already holds" in output and f"rm -rf {tmp_path}" in output
    (tmp_path / "pids.json").write_text("{}")
    code, output = xgate("federation", "up", "--dir", str(tmp_path))
    assert code == 1 and "already running" in output and "federation down" in output
    assert "Traceback" not in output
