#!/usr/bin/env bash
# The whole test suite: lint (ruff), types (mypy), the import contract (import-linter, see
# [tool.importlinter] in pyproject.toml), tests (pytest). Sets itself up first.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/bootstrap.sh"
cd "$root"
echo "== ruff"
.venv/bin/ruff check gateway services tests bench scripts
.venv/bin/ruff format --check gateway services tests bench scripts
echo "== mypy"
.venv/bin/mypy
echo "== import contract"
.venv/bin/lint-imports
echo "== pytest"
exec .venv/bin/python -m pytest "$@"
