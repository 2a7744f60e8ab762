"""A small synchronous client of the registry's management API, for `xgate central ...` and scripts.

The HTTP side is the management CLIs' (`gateway.apicli.JsonApiClient`: the API key in X-Road's
Authorization form, JSON errors as ApiCallError, no proxies); this adds the registry's paths.
Identifiers are taken and written in their text form (INSTANCE/CLASS/MEMBER...), URL-encoded
into paths.
"""

from __future__ import annotations

from typing import Any, Final

from gateway.apicli import JsonApiClient, path_segment
from gateway.ids import ClientId, SecurityServerId, slash_form

DEFAULT_URL: Final = "http://127.0.0.1:4400"
"""The management listener of config/central.example.toml."""

API_PREFIX: Final = "/api/v1"


def client_path(client_id: str) -> str:
    """A client's path segment: its text form INSTANCE/CLASS/MEMBER[/SUBSYSTEM], URL-encoded
    (the colon form is accepted in `client_id` too)."""
    return path_segment(ClientId.from_text(slash_form(client_id)).to_text())


def server_path(server_id: str) -> str:
    """A security server's path segment: its text form INSTANCE/CLASS/MEMBER/SERVER, URL-encoded."""
    return path_segment(SecurityServerId.from_text(slash_form(server_id)).to_text())


segment = path_segment


class RegistryClient:
    """The management API at `base_url`, called with `api_key`."""

    def __init__(
        self, base_url: str = DEFAULT_URL, api_key: str | None = None, *, timeout: float = 30.0
    ) -> None:
        self.http = JsonApiClient(base_url, api_key, timeout=timeout)

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        """`method` on API_PREFIX + `path`; the decoded answer (None for 204), or ApiCallError."""
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
