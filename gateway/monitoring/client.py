"""The monitoring reads of a gateway's management API, for `xgate monitor` and scripts."""

from __future__ import annotations

from typing import Any

from gateway.apicli import JsonApiClient


class MonitorClient(JsonApiClient):
    """The management API at `base_url`, called with `api_key`, for what `xgate monitor` shows."""

    def environment(self) -> dict[str, Any]:
        """The node's machine, process, disks, versions and certificates (gateway.admin.environment)."""
        result: dict[str, Any] = self._api("GET", "/environment")
        return result
