"""A small synchronous client of the registry's management API, for `xgate central ...` and scripts.

The HTTP side is the gateway's management client (`gateway.admin.client.AdminClient`: the
API key in X-Road's Authorization form, JSON errors as AdminApiError, no proxies); this adds
the registry's paths. Identifiers are taken in their text form (INSTANCE/CLASS/MEMBER...)
and written into paths in the API's colon form.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import quote

from gateway.admin.client import AdminClient, client_path
from gateway.ids import SecurityServerId

DEFAULT_URL: Final = "http://127.0.0.1:4400"
"""The management listener of config/central.example.toml."""

API_PREFIX: Final = "/api/v1"


def server_path(server_id: str) -> str:
    """A security server's text form as the API's path segment INSTANCE:CLASS:MEMBER:SERVER."""
    server = SecurityServerId.from_text(server_id)
    parts = (server.instance, server.member_class, server.member_code, server.server_code)
    return ":".join(quote(part, safe="") for part in parts)


def segment(value: str) -> str:
    return quote(value, safe="")


class RegistryClient:
    """The management API at `base_url`, called with `api_key`."""

    def __init__(
        self, base_url: str = DEFAULT_URL, api_key: str | None = None, *, timeout: float = 30.0
    ) -> None:
        self.http = AdminClient(base_url, api_key, timeout=timeout)

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        """`method` on API_PREFIX + `path`; the decoded answer (None for 204), or AdminApiError."""
        return self.http.request(method, API_PREFIX + path, json=body, params=params)

    def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        return self.call("GET", path, params=params)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.call("POST", path, body or {})

    def put(self, path: str, body: dict[str, Any]) -> Any:
        return self.call("PUT", path, body)

    def delete(self, path: str) -> Any:
        return self.call("DELETE", path)

    def openapi(self) -> dict[str, Any]:
        result: dict[str, Any] = self.http.request("GET", "/api/openapi.json")
        return result


__all__ = ["DEFAULT_URL", "RegistryClient", "client_path", "segment", "server_path"]
