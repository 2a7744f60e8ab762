"""nginx as the load balancer in front of a gateway's nodes (docs/deployment.md), run locally.

The configuration is the one docs/deployment.md shows: one upstream of the nodes' internal
interfaces, a short connect timeout, a request that could not reach a node passed to the next
(`proxy_next_upstream error timeout`: never one already sent, since an X-Road request is not
idempotent), and an X-Road SOAP fault, not nginx's HTML page, when no node answered. It runs
as the invoking user on 127.0.0.1, with every file (pid, logs, temporary bodies) under one
directory, in the foreground, so whoever started it stops it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

from gateway.dev.processes import HOST

NGINX_CANDIDATES: Final = ("nginx", "/usr/sbin/nginx")
START_SECONDS: Final = 10.0
STOP_SECONDS: Final = 10.0
CONNECT_TIMEOUT_SECONDS: Final = 1
"""A node that does not accept within this is taken as down for this request (the next is tried)."""
READ_TIMEOUT_SECONDS: Final = 60
"""Longer than a gateway's own deadlines: a node always answers first, with its own fault."""
FAIL_TIMEOUT_SECONDS: Final = 5
"""After a failure a node gets no requests for this long (nginx's passive health check)."""

NO_NODE_FAULT: Final = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Body>'
    "<SOAP-ENV:Fault><faultcode>Server.ClientProxy.NetworkError</faultcode>"
    "<faultstring>no gateway node answered (load balancer)</faultstring></SOAP-ENV:Fault>"
    "</SOAP-ENV:Body></SOAP-ENV:Envelope>"
)
"""What a client gets when no node could answer: an X-Road fault it already handles."""


def nginx_config(prefix: Path, port: int, nodes: Sequence[str]) -> str:
    """nginx.conf for a balancer on 127.0.0.1:`port` over `nodes` ("host:port" internal interfaces)."""
    servers = "\n".join(
        f"        server {node} max_fails=1 fail_timeout={FAIL_TIMEOUT_SECONDS}s;" for node in nodes
    )
    # Started as root, nginx would run its workers as `nobody`, which cannot use files in a
    # directory only its owner enters: keep them the starting user's.
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" if os.geteuid() == 0 else ""
    return f"""# The load balancer in front of one gateway's nodes (docs/deployment.md).
{user}worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{
    worker_connections 512;
}}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    client_max_body_size 10m;

    upstream gateway_internal {{
{servers}
    }}

    server {{
        listen {HOST}:{port};
        location / {{
            proxy_pass http://gateway_internal;
            proxy_connect_timeout {CONNECT_TIMEOUT_SECONDS}s;
            proxy_read_timeout {READ_TIMEOUT_SECONDS}s;
            proxy_send_timeout {READ_TIMEOUT_SECONDS}s;
            proxy_next_upstream error timeout;
            proxy_next_upstream_tries {len(nodes)};
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            error_page 502 503 504 = @no_node;
        }}
        location @no_node {{
            default_type "text/xml; charset=UTF-8";
            return 500 '{NO_NODE_FAULT}';
        }}
    }}
}}
"""


def nginx_binary() -> str | None:
    """nginx on PATH or in /usr/sbin (outside an ordinary user's PATH); None if not installed."""
    for candidate in NGINX_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def _free_port() -> int:
    # nginx binds its own listener (it takes no socket handed over), so a free port is looked up.
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def running_nginx(directory: Path, nodes: Sequence[str]) -> Iterator[str]:
    """nginx balancing over `nodes` until the block ends; yields its URL. Its files go to `directory`."""
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError("nginx is not installed (scripts/bootstrap.sh installs the Debian package)")
    directory.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    config = directory / "nginx.conf"
    config.write_text(nginx_config(directory, port, nodes))
    with (directory / "nginx.out").open("ab") as out:
        process = subprocess.Popen(
            [binary, "-p", str(directory), "-c", str(config), "-g", "daemon off;"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_SECONDS
        while not _accepts(port):
            if process.poll() is not None or time.monotonic() > deadline:
                log = (directory / "error.log").read_text() if (directory / "error.log").exists() else ""
                raise RuntimeError(f"nginx did not start: {log[-2000:]}")
            time.sleep(0.05)
        yield f"http://{HOST}:{port}"
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGQUIT)  # graceful: finish the requests it has
            try:
                process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
