"""A small synchronous client of the management API, for the `xgate admin` command and scripts.

One method per operation of :mod:`gateway.admin.api`, each returning the decoded JSON answer
(None for 204). Errors the API reports come back as :class:`AdminApiError` with its status,
code and message; identifiers are taken in their usual text form (INSTANCE/CLASS/MEMBER[/SUB])
and written into paths in the API's colon form.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import quote

import requests

from gateway.ids import ClientId

DEFAULT_URL: Final = "http://127.0.0.1:5588"
"""The admin listener of config/gateway.example.toml."""

DEFAULT_TIMEOUT_SECONDS: Final = 60.0
"""Registering a large WSDL fetched by URL takes the gateway up to 30 s to fetch, then parsing."""

API_PREFIX: Final = "/api/v1"


class AdminApiError(Exception):
    """The API answered with an error (or something that is not the API answered at all)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def client_path(client_id: str) -> str:
    """A client's text form as the API's path segment, INSTANCE:CLASS:MEMBER[:SUBSYSTEM], URL-encoded."""
    client = ClientId.from_text(client_id)
    parts = (client.instance, client.member_class, client.member_code, client.subsystem_code)
    return ":".join(quote(part, safe="") for part in parts if part is not None)


def _segment(value: str) -> str:
    return quote(value, safe="")


def _version(version: str | None) -> dict[str, str]:
    return {"version": version} if version is not None else {}


class AdminClient:
    """The management API at `base_url`, called with `api_key` (sent as X-Road's Authorization form)."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()
        self.session.trust_env = False  # the admin listener is local: never through a proxy
        if api_key is not None:
            self.session.headers["Authorization"] = f"X-Road-ApiKey token={api_key}"

    def request(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        """Call `path` (absolute, e.g. /api/v1/keys); the decoded answer, or AdminApiError."""
        response = self.session.request(
            method,
            self.base_url + path,
            json=json,
            params=params,
            timeout=self.timeout,
            allow_redirects=False,
        )
        if response.status_code == 204:
            return None
        try:
            body = response.json()
        except ValueError:
            raise AdminApiError(
                response.status_code, "not_json", f"the answer is not JSON: {response.text[:200]!r}"
            ) from None
        if response.status_code >= 400:
            if isinstance(body, dict):
                raise AdminApiError(response.status_code, str(body.get("error")), str(body.get("message")))
            raise AdminApiError(response.status_code, "error", str(body))
        return body

    def _api(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, API_PREFIX + path, **kwargs)

    # --- meta

    def health(self) -> dict[str, Any]:
        response = self.session.get(self.base_url + "/health", timeout=self.timeout)
        result: dict[str, Any] = response.json()
        return result

    def openapi(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "/api/openapi.json")
        return result

    # --- subsystems

    def list_subsystems(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._api("GET", "/subsystems")["subsystems"]
        return result

    def add_subsystem(self, client_id: str, auth_mode: str | None = None) -> dict[str, Any]:
        body = {"client_id": client_id}
        if auth_mode is not None:
            body["auth_mode"] = auth_mode
        result: dict[str, Any] = self._api("POST", "/subsystems", json=body)
        return result

    def get_subsystem(self, client_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._api("GET", f"/subsystems/{client_path(client_id)}")
        return result

    def remove_subsystem(self, client_id: str) -> None:
        self._api("DELETE", f"/subsystems/{client_path(client_id)}")

    def set_auth_mode(self, client_id: str, auth_mode: str) -> dict[str, Any]:
        path = f"/subsystems/{client_path(client_id)}/auth-mode"
        result: dict[str, Any] = self._api("PUT", path, json={"auth_mode": auth_mode})
        return result

    def pin_certificate(self, client_id: str, certificate_pem: str) -> dict[str, Any]:
        path = f"/subsystems/{client_path(client_id)}/certificates"
        result: dict[str, Any] = self._api("POST", path, json={"certificate_pem": certificate_pem})
        return result

    def unpin_certificate(self, client_id: str, sha256: str) -> None:
        self._api("DELETE", f"/subsystems/{client_path(client_id)}/certificates/{_segment(sha256)}")

    # --- services

    def list_services(self, client_id: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._api("GET", f"/subsystems/{client_path(client_id)}/services")[
            "services"
        ]
        return result

    def add_wsdl(
        self, client_id: str, *, wsdl: str | None = None, url: str | None = None
    ) -> list[dict[str, Any]]:
        """Register every operation of a WSDL given as text or by URL (the gateway fetches it)."""
        body = {"wsdl": wsdl} if wsdl is not None else {"url": url}
        path = f"/subsystems/{client_path(client_id)}/service-descriptions/wsdl"
        result: list[dict[str, Any]] = self._api("POST", path, json=body)["services"]
        return result

    def add_openapi(
        self,
        client_id: str,
        service_code: str,
        *,
        document: str | None = None,
        url: str | None = None,
        service_version: str | None = None,
        backend_url: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"service_code": service_code}
        body.update({"document": document} if document is not None else {"url": url})
        if service_version is not None:
            body["service_version"] = service_version
        if backend_url is not None:
            body["backend_url"] = backend_url
        path = f"/subsystems/{client_path(client_id)}/service-descriptions/openapi"
        result: dict[str, Any] = self._api("POST", path, json=body)
        return result

    def _service_path(self, client_id: str, service_code: str) -> str:
        return f"/subsystems/{client_path(client_id)}/services/{_segment(service_code)}"

    def get_service(self, client_id: str, service_code: str, version: str | None = None) -> dict[str, Any]:
        path = self._service_path(client_id, service_code)
        result: dict[str, Any] = self._api("GET", path, params=_version(version))
        return result

    def set_backend(
        self, client_id: str, service_code: str, version: str | None = None, **settings: Any
    ) -> dict[str, Any]:
        """Settings: backend_url, timeout_seconds, tls_verify, tls_ca_pem (None clears it)."""
        path = self._service_path(client_id, service_code)
        result: dict[str, Any] = self._api("PATCH", path, json=settings, params=_version(version))
        return result

    def enable_service(self, client_id: str, service_code: str, version: str | None = None) -> dict[str, Any]:
        path = self._service_path(client_id, service_code) + "/enable"
        result: dict[str, Any] = self._api("POST", path, params=_version(version))
        return result

    def disable_service(
        self, client_id: str, service_code: str, version: str | None = None, notice: str | None = None
    ) -> dict[str, Any]:
        path = self._service_path(client_id, service_code) + "/disable"
        body = {"notice": notice} if notice is not None else {}
        result: dict[str, Any] = self._api("POST", path, json=body, params=_version(version))
        return result

    def remove_service(self, client_id: str, service_code: str, version: str | None = None) -> None:
        self._api("DELETE", self._service_path(client_id, service_code), params=_version(version))

    # --- access rights

    def list_access_rights(self, client_id: str, service_code: str) -> list[dict[str, Any]]:
        path = self._service_path(client_id, service_code) + "/access-rights"
        result: list[dict[str, Any]] = self._api("GET", path)["access_rights"]
        return result

    @staticmethod
    def _right(subject: str, subject_type: str, method: str | None, path: str | None) -> dict[str, str]:
        right = {"subject": subject, "subject_type": subject_type}
        if method is not None:
            right["method"] = method
        if path is not None:
            right["path"] = path
        return right

    def grant(
        self,
        client_id: str,
        service_code: str,
        subject: str,
        subject_type: str,
        method: str | None = None,
        path: str | None = None,
    ) -> dict[str, Any]:
        url = self._service_path(client_id, service_code) + "/access-rights"
        result: dict[str, Any] = self._api("POST", url, json=self._right(subject, subject_type, method, path))
        return result

    def revoke(
        self,
        client_id: str,
        service_code: str,
        subject: str,
        subject_type: str,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        url = self._service_path(client_id, service_code) + "/access-rights"
        self._api("DELETE", url, params=self._right(subject, subject_type, method, path))

    # --- local groups

    def list_local_groups(self, client_id: str) -> list[dict[str, Any]]:
        path = f"/subsystems/{client_path(client_id)}/local-groups"
        result: list[dict[str, Any]] = self._api("GET", path)["local_groups"]
        return result

    def add_local_group(self, client_id: str, code: str, description: str = "") -> dict[str, Any]:
        path = f"/subsystems/{client_path(client_id)}/local-groups"
        result: dict[str, Any] = self._api("POST", path, json={"code": code, "description": description})
        return result

    def _group_path(self, client_id: str, code: str) -> str:
        return f"/subsystems/{client_path(client_id)}/local-groups/{_segment(code)}"

    def remove_local_group(self, client_id: str, code: str) -> None:
        self._api("DELETE", self._group_path(client_id, code))

    def add_group_member(self, client_id: str, code: str, member_id: str) -> dict[str, Any]:
        path = self._group_path(client_id, code) + "/members"
        result: dict[str, Any] = self._api("POST", path, json={"client_id": member_id})
        return result

    def remove_group_member(self, client_id: str, code: str, member_id: str) -> None:
        self._api("DELETE", self._group_path(client_id, code) + f"/members/{client_path(member_id)}")

    # --- keys and certificates

    def list_keys(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._api("GET", "/keys")["keys"]
        return result

    def generate_key(
        self, usage: str, member_id: str | None = None, algorithm: str | None = None
    ) -> dict[str, Any]:
        body = {"usage": usage}
        if member_id is not None:
            body["member_id"] = member_id
        if algorithm is not None:
            body["algorithm"] = algorithm
        result: dict[str, Any] = self._api("POST", "/keys", json=body)
        return result

    def make_csr(
        self, key_id: int, subject: dict[str, str] | None = None, dns_names: list[str] | None = None
    ) -> str:
        body: dict[str, Any] = {"subject": subject or {}, "dns_names": dns_names or []}
        result: str = self._api("POST", f"/keys/{key_id}/csr", json=body)["csr_pem"]
        return result

    def import_certificate(self, certificate_pem: str) -> dict[str, Any]:
        result: dict[str, Any] = self._api("POST", "/certificates", json={"certificate_pem": certificate_pem})
        return result

    # --- API keys and audit log

    def list_api_keys(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._api("GET", "/api-keys")["api_keys"]
        return result

    def create_api_key(self, name: str, role: str) -> dict[str, Any]:
        """The new key's record with the key itself under "key": shown this once."""
        result: dict[str, Any] = self._api("POST", "/api-keys", json={"name": name, "role": role})
        return result

    def revoke_api_key(self, key_id: int) -> None:
        self._api("DELETE", f"/api-keys/{key_id}")

    def audit_log(
        self,
        *,
        limit: int | None = None,
        before_id: int | None = None,
        actor: str | None = None,
        action: str | None = None,
        since: str | None = None,
    ) -> dict[str, Any]:
        """One page, newest first: {"entries": [...], "next_before_id": id or None}."""
        params = {
            name: str(value)
            for name, value in (
                ("limit", limit),
                ("before_id", before_id),
                ("actor", actor),
                ("action", action),
                ("since", since),
            )
            if value is not None
        }
        result: dict[str, Any] = self._api("GET", "/audit-log", params=params)
        return result

    # --- the message log (security officer; every call is audited)

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
