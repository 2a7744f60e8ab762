#!/usr/bin/env bash
# Sourced by the README's commands: makes .venv with xgate (editable, dev extras) and the
# command-line tools the tests compare against (xmlsec1, openssl, wrk) or run (nginx, the load
# balancer in front of two nodes in tests/test_two_nodes.py). Idempotent and quick
# when nothing changed: the install is redone only when pyproject.toml changes.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

need_tools=()
command -v xmlsec1 >/dev/null 2>&1 || need_tools+=(xmlsec1)
command -v openssl >/dev/null 2>&1 || need_tools+=(openssl)
command -v wrk >/dev/null 2>&1 || need_tools+=(wrk)
command -v jq >/dev/null 2>&1 || need_tools+=(jq)
# nginx lives in /usr/sbin, outside an ordinary user's PATH.
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_tools+=(nginx)
if [ ${#need_tools[@]} -gt 0 ]; then
    echo "bootstrap: installing ${need_tools[*]} (Debian packages)"
    if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
    # Packages with a service (nginx) must not start it: tests run their own, as the test
    # user on high ports. policy-rc.d's 101 tells the package scripts not to start services.
    policy=/usr/sbin/policy-rc.d
    made_policy=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
        $sudo chmod 755 "$policy"
        made_policy=1
    fi
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_tools[@]}" >/dev/null
    if [ -n "$made_policy" ]; then $sudo rm -f "$policy"; fi
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "bootstrap: creating .venv"
    "$python" -m venv .venv
fi
stamp=".venv/.xgate-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "bootstrap: installing xgate and its dependencies into .venv"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[dev]'
    echo "$want" > "$stamp"
fi
