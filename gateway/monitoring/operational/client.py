"""Operational monitoring's calls to a gateway's management API (gateway/admin/monitoring.py).

What `xgate monitor` sends to a node; `gateway.admin.client.AdminClient` offers them too.
"""

from __future__ import annotations

from typing import Any

from gateway.apicli import JsonApiClient


class MonitoringClient(JsonApiClient):
    """A gateway's management API, for its operational monitoring records."""

    def monitoring_records(self, **filters: Any) -> dict[str, Any]:
        """A page of records; `filters` as the operation's parameters (None: not given)."""
        params = {name: str(value) for name, value in filters.items() if value is not None}
        result: dict[str, Any] = self._api("GET", "/monitoring/records", params=params)
        return result

    def monitoring_services(self, **filters: Any) -> dict[str, Any]:
        """Per-service statistics over a window (`window_seconds`, `service`, `role`)."""
        params = {name: str(value) for name, value in filters.items() if value is not None}
        result: dict[str, Any] = self._api("GET", "/monitoring/services", params=params)
        return result
