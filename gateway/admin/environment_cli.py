"""`xgate monitor env`: the node's environment (gateway.monitoring.environment), read through
the management API's GET /environment."""

from __future__ import annotations

from typing import Any, Final

import click

from gateway.admin.cli import AdminSettings, pass_settings
from gateway.apicli import echo_json, format_table, json_option, terminal_width
from gateway.messagelog.diskspace import size_text

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


@click.command("env")
@json_option
@pass_settings
def environment(settings: AdminSettings, as_json: bool) -> None:
    """The node's environment: OS, load, memory, disks, open files, uptime, versions, certificates."""
    report = settings.client().environment()
    if as_json:
        echo_json(report)
    else:
        click.echo(environment_text(report, terminal_width()))
