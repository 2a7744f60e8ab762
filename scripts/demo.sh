#!/usr/bin/env bash
# The demo: a development federation on 127.0.0.1 and calls through it; then gw-b, the
# population register's gateway, is stopped and both calls are answered from gw-a's interface
# cache, marked (docs/cache.md), and gw-b is started again.
#   ./scripts/demo.sh        start (or restart) the federation in var/demo and call through it
#   ./scripts/demo.sh down   stop it
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/bootstrap.sh"
cd "$root"
dir="var/demo"
if [ -f "$dir/pids.json" ]; then
    .venv/bin/xgate federation down --dir "$dir"
fi
if [ "${1:-}" = "down" ]; then
    exit 0
fi
rm -rf "$dir"
.venv/bin/xgate federation up --dir "$dir"
.venv/bin/python scripts/demo_calls.py "$dir/federation.json"
echo
echo "The federation keeps running: $dir/federation.json describes it; logs are in $dir/logs/."
echo "Stop it with: ./scripts/demo.sh down"
