"""`xgate monitor records` and `xgate monitor services`: operational monitoring through the
management API (gateway/admin/monitoring.py), as a table for people or the API's JSON."""

from __future__ import annotations

from typing import Any, Final

import click

from gateway.admin.cli import AdminSettings, pass_settings
from gateway.apicli import (
    CLIENT_ID,
    SERVICE_ID,
    echo_next_page,
    emit,
    json_option,
    limit_option,
    page_options,
    rfc3339,
    with_next_page,
)
from gateway.timetext import EXAMPLES, TimeTextError, parse_duration

RECORDS_LISTING: Final = "monitor records"


_RECORD_COLUMNS: Final = (
    ("request_in", "at"),
    ("role", "role"),
    ("client", "client"),
    ("service", "service"),
    ("status", "status"),
    ("outcome", "outcome"),
    ("duration_ms", "ms"),
    ("peer", "peer"),
)
_SERVICE_COLUMNS: Final = (
    ("service", "service"),
    ("role", "role"),
    ("successes", "ok"),
    ("failures", "failed"),
    ("last_success", "last success"),
    ("last_failure", "last failure"),
    ("avg_ms", "avg ms"),
    ("max_ms", "max ms"),
)
_ROLE = click.Choice(["Client", "Producer"])


def _outcome(record: dict[str, Any]) -> str:
    """One word for people: ok, cache hit/stale, or the fault code."""
    if record["served_from_cache"]:
        return f"cache.{record['served_from_cache']}"
    return "ok" if record["succeeded"] else str(record["fault_code"] or "failed")


@click.command("records")
@click.option("--since", help=f"Requests from this time on: {EXAMPLES}.")
@click.option("--until", help="Requests before this time.")
@click.option("--client", type=CLIENT_ID, help="Only this client's exchanges.")
@click.option("--service", type=SERVICE_ID, help="Only exchanges with this service.")
@click.option("--role", type=_ROLE, help="Client: this gateway was the client's; Producer: the service's.")
@click.option("--outcome", type=click.Choice(["succeeded", "failed", "cached"]), help="Only these outcomes.")
@click.option("--fault-code", help="Only exchanges answered with this fault code.")
@click.option("--message-id", help="Only this message's exchanges.")
@limit_option("Records")
@page_options(RECORDS_LISTING, "--offset")
@json_option
@pass_settings
def records(
    settings: AdminSettings,
    since: str | None,
    until: str | None,
    client: str | None,
    service: str | None,
    role: str | None,
    outcome: str | None,
    fault_code: str | None,
    message_id: str | None,
    limit: int,
    page: int | None,
    as_json: bool,
) -> None:
    """Operational monitoring records, newest first: one per exchange, no bodies (audited)."""
    found = settings.client().monitoring_records(
        since=rfc3339(since),
        until=rfc3339(until),
        client=client,
        service=service,
        role=role,
        outcome=outcome,
        fault_code=fault_code,
        message_id=message_id,
        limit=limit,
        offset=page or 0,
    )
    if as_json:
        emit(with_next_page(found, RECORDS_LISTING, found["next_offset"]), True)
        return
    rows = [{**record, "outcome": _outcome(record)} for record in found["records"]]
    emit(rows, False, _RECORD_COLUMNS)
    echo_next_page(RECORDS_LISTING, found["next_offset"])


def _window(text: str) -> float:
    try:
        return parse_duration(text)
    except TimeTextError as exc:
        raise click.BadParameter(str(exc), param_hint="--window") from None


@click.command("services")
@click.option("--window", default="1h", show_default=True, help="The sliding window: 15m, 1h, 1d, ...")
@click.option("--service", type=SERVICE_ID, help="Only this service.")
@click.option("--role", type=_ROLE, help="Client or Producer side only.")
@json_option
@pass_settings
def services(
    settings: AdminSettings, window: str, service: str | None, role: str | None, as_json: bool
) -> None:
    """Per-service health over a sliding window: successes, failures, last of each, durations."""
    found = settings.client().monitoring_services(window_seconds=_window(window), service=service, role=role)
    if as_json:
        emit(found, True)
        return
    rows = [
        {**stats, "avg_ms": stats["duration_ms"]["avg"], "max_ms": stats["duration_ms"]["max"]}
        for stats in found["services"]
    ]
    click.echo(f"from {found['since']} to {found['until']}")
    emit(rows, False, _SERVICE_COLUMNS)
