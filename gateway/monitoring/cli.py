"""`xgate monitor`: what a node does and how it fares, read through its management API.

Every command reads one operation of the node's management API (gateway.admin) with an API
key from an environment variable (XGATE_API_KEY unless --api-key-env names another), as
`xgate admin` does; --json prints the API's answer as it came.
"""

from __future__ import annotations

from typing import Any, Final

import click

from gateway.apicli import (
    GATEWAY_API_KEY_ENV,
    GATEWAY_API_URL,
    GATEWAY_API_URL_ENV,
    ApiGroup,
    ApiSettings,
    api_options,
    echo_json,
    format_table,
    json_option,
    terminal_width,
)
from gateway.messagelog.diskspace import size_text
from gateway.monitoring.client import MonitorClient


class MonitorSettings(ApiSettings[MonitorClient]):
    """Where a gateway's management API is and where its key comes from (as for `xgate admin`)."""

    def _connect(self, url: str, key: str) -> MonitorClient:
        return MonitorClient(url, key)


pass_settings = click.make_pass_decorator(MonitorSettings)


@click.group(name="monitor", cls=ApiGroup, context_settings={"help_option_names": ["-h", "--help"]})
@api_options(
    url_env=GATEWAY_API_URL_ENV,
    default_url=GATEWAY_API_URL,
    default_key_env=GATEWAY_API_KEY_ENV,
    url_help=f"The node's admin listener (or set {GATEWAY_API_URL_ENV}).",
)
@click.pass_context
def cli(ctx: click.Context, url: str, key_env: str) -> None:
    """Operational records, per-service statistics and the node's environment."""
    ctx.obj = MonitorSettings(url, key_env)


# --- the node's environment -------------------------------------------------------------------

_DISK_COLUMNS: Final = (
    ("role", "role"),
    ("free", "free"),
    ("total", "total"),
    ("free_percent", "free %"),
    ("path", "path"),
)
_CERTIFICATE_COLUMNS: Final = (
    ("role", "role"),
    ("member", "member"),
    ("serial", "serial"),
    ("not_after", "expires"),
    ("days_left", "days left"),
    ("ocsp_status", "ocsp"),
    ("subject", "subject"),
)


def size(count: int | None) -> str:
    return "-" if count is None else size_text(count)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}d {clock}" if days else clock


def environment_text(report: dict[str, Any], width: int | None = None) -> str:
    """The report for people: a few summary lines, then the disks and the certificates as tables."""
    system, process, versions = report["system"], report["process"], report["versions"]
    load = system.get("load_average")
    load_text = " ".join(f"{value:.2f}" for value in load) if load else "-"
    limit = process.get("open_files_limit")
    lines = [
        f"time:        {report['time']}",
        f"system:      {system['os']} {system['os_release']} {system['machine']}"
        + (f" ({system['distribution']})" if system.get("distribution") else ""),
        f"host:        {system['hostname']}, up {_duration(system.get('uptime_seconds'))}",
        f"cpu:         {system.get('cpu_count') or '-'} cores, load {load_text}",
        f"memory:      {size(system.get('memory_available_bytes'))} available"
        f" of {size(system.get('memory_total_bytes'))}",
        f"node:        pid {process['pid']}, up {_duration(process['uptime_seconds'])},"
        f" {size(process.get('memory_rss_bytes'))} resident, {process.get('threads') or '-'} threads",
        f"open files:  {process.get('open_files', '-')} of {limit if limit is not None else 'unlimited'}",
        f"versions:    xgate {versions['xgate'] or '-'}, Python {versions['python']},"
        f" {versions['openssl']}, SQLite {versions['sqlite']}",
        "",
    ]
    disks = [
        {**disk, "free": size(disk.get("free_bytes")), "total": size(disk.get("total_bytes"))}
        for disk in report["disks"]
    ]
    lines += [format_table(disks, _DISK_COLUMNS, width), ""]
    lines.append(format_table(report["certificates"], _CERTIFICATE_COLUMNS, width))
    return "\n".join(lines)


@cli.command("env")
@json_option
@pass_settings
def environment(settings: MonitorSettings, as_json: bool) -> None:
    """The node's environment: OS, load, memory, disks, open files, uptime, versions, certificates."""
    report = settings.client().environment()
    if as_json:
        echo_json(report)
    else:
        click.echo(environment_text(report, terminal_width()))
