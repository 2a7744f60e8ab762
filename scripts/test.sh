#!/usr/bin/env bash
# The whole test suite: lint (ruff), types (mypy), tests (pytest). Sets itself up first.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/bootstrap.sh"
cd "$root"
echo "== ruff"
.venv/bin/ruff check gateway services tests bench scripts
.venv/bin/ruff format --check gateway services tests bench scripts
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
exec .venv/bin/python -m pytest "$@"
