"""The security officer's calls to a gateway's management API: the message log's reads.

What `xgate log` sends to a node (and `gateway.admin.client.AdminClient` offers too); the
node audits every one. The answers are those of gateway.messagelog.officer.
"""

from __future__ import annotations

from typing import Any

from gateway.apicli import JsonApiClient


class MessageLogClient(JsonApiClient):
    """A gateway's management API, for its message log."""

    def log_search(self, params: dict[str, str]) -> dict[str, Any]:
        """One page of records, newest first; `params` as officer.SearchQuery.to_params gives them."""
        result: dict[str, Any] = self._api("GET", "/message-log/records", params=params)
        return result

    def log_show(self, ident: str) -> dict[str, Any]:
        """The exchanges an exchange id (or else a message id) names, each record verified."""
        result: dict[str, Any] = self._api("GET", "/message-log/exchange", params={"id": ident})
        return result

    def log_export(self, params: dict[str, str]) -> dict[str, Any]:
        """Containers (base64) for {"id": ...} or a search's filters, one page at a time."""
        result: dict[str, Any] = self._api("GET", "/message-log/containers", params=params)
        return result

    def log_verify(self, node: str | None = None) -> dict[str, Any]:
        """verify_log over the node's chains, with its global configuration's trust anchors."""
        params = {"node": node} if node is not None else {}
        result: dict[str, Any] = self._api("GET", "/message-log/verification", params=params)
        return result
