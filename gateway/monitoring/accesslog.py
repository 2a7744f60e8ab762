"""The access log: one line per exchange on logger ``xgate.access`` (docs/logging.md).

What an operator greps for first when a partner says "your gateway failed my call": which
exchange, which client and service, what status and fault code, how long. It holds only what
the `ExchangeRecord` holds (gateway.monitoring.exchange: identifiers, sizes, times, never a
body, a header value beyond the X-Road ids, or a key), and less: not the fault's text (a
service's fault string may quote its input), not the user id (a person's identifier) and not
the REST path (it may carry one). The message id is the client's own text, so it is cut to
`MAX_ID_CHARS` and its control characters escaped: it cannot forge a line of the text format.

In the JSON format every field is a key of its own and the message only names the exchange; in
the text format the fields follow the message as ``key=value`` pairs, in the same order.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from gateway.logsetup import active_format
from gateway.monitoring.exchange import ExchangeRecord

ACCESS_LOGGER: Final = "xgate.access"

MAX_ID_CHARS: Final = 200
"""X-Road's message ids are UUIDs or short codes (36-64 characters); longer is not an id."""

FIELDS: Final = (
    "role",
    "protocol",
    "exchange_id",
    "message_id",
    "client",
    "service",
    "rest_method",
    "peer",
    "status",
    "succeeded",
    "fault_code",
    "duration_ms",
    "served_from_cache",
    "request_bytes",
    "response_bytes",
)
"""The access line's fields, in the order the text format writes them."""


def _id_text(value: str | None) -> str | None:
    """A client-supplied id as one safe token: at most MAX_ID_CHARS, no control characters."""
    if value is None:
        return None
    text = value[:MAX_ID_CHARS]
    if text.isprintable():
        return text
    return text.encode("unicode_escape").decode("ascii")


def access_fields(record: ExchangeRecord) -> dict[str, Any]:
    """What the access log keeps of `record` (the module docstring says what it leaves out)."""
    return {
        "role": record.role.value,
        "protocol": record.protocol,
        "exchange_id": _id_text(record.exchange_id),
        "message_id": _id_text(record.message_id),
        "client": record.client,
        "service": record.service,
        "rest_method": record.rest_method,
        "peer": record.peer,
        "status": record.status,
        "succeeded": record.succeeded,
        "fault_code": record.fault_code,
        "duration_ms": round(record.duration * 1000.0, 3),
        "served_from_cache": record.served_from_cache,
        "request_bytes": record.request_size,
        "response_bytes": record.response_size,
    }


def access_message(fields: dict[str, Any]) -> str:
    """The text form: `exchange key=value ...`, absent values left out."""
    pairs = " ".join(f"{name}={fields[name]}" for name in FIELDS if fields.get(name) is not None)
    return f"exchange {pairs}"


class AccessLog:
    """An `ExchangeObserver` writing the access line at INFO (or not at all below that level).

    The line goes to the logging queue of gateway.logsetup, so the event loop never waits on
    the terminal or the journal.
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or logging.getLogger(ACCESS_LOGGER)

    def exchange_done(self, record: ExchangeRecord) -> None:
        if not self._log.isEnabledFor(logging.INFO):
            return
        fields = access_fields(record)
        if active_format() == "json":  # the fields are keys of their own: not twice on the line
            self._log.info("exchange %s", fields["exchange_id"], extra=fields)
        else:
            self._log.info(access_message(fields), extra=fields)
