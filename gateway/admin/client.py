"""A small synchronous client of the management API, for the `xgate admin` command and scripts.

One method per operation of :mod:`gateway.admin.api`, each returning the decoded JSON answer
(None for 204). Errors the API reports come back as :class:`AdminApiError` with its status,
code and message; identifiers are taken and written in their text form
(INSTANCE/CLASS/MEMBER[/SUB]), URL-encoded into paths.
"""

from __future__ import annotations

from typing import Any, Final

from gateway.apicli import GATEWAY_API_URL, ApiCallError, path_segment
from gateway.ids import ClientId, slash_form
from gateway.messagelog.apiclient import MessageLogClient
from gateway.monitoring.operational.client import MonitoringClient

DEFAULT_URL: Final = GATEWAY_API_URL
"""The admin listener of config/gateway.example.toml."""

AdminApiError = ApiCallError
"""The API answered with an error (gateway.apicli.ApiCallError)."""

_segment = path_segment


def client_path(client_id: str) -> str:
    """A client's path segment: its text form INSTANCE/CLASS/MEMBER[/SUBSYSTEM], URL-encoded.

    The colon form X-Road's management API uses is accepted in `client_id` too."""
    return path_segment(ClientId.from_text(slash_form(client_id)).to_text())


def _version(version: str | None) -> dict[str, str]:
    return {"version": version} if version is not None else {}


class AdminClient(MessageLogClient, MonitoringClient):
    """The management API at `base_url`, called with `api_key` (sent as X-Road's Authorization form)."""

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
        self,
        client_id: str,
        *,
        wsdl: str | None = None,
        url: str | None = None,
        ignore_warnings: bool = False,
    ) -> list[dict[str, Any]]:
        """Register every operation of a WSDL given as text or by URL (the gateway fetches it)."""
        body: dict[str, Any] = {"wsdl": wsdl} if wsdl is not None else {"url": url}
        if ignore_warnings:
            body["ignore_warnings"] = True
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
        ignore_warnings: bool = False,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"service_code": service_code}
        if ignore_warnings:
            body["ignore_warnings"] = True
        body.update({"document": document} if document is not None else {"url": url})
        if service_version is not None:
            body["service_version"] = service_version
        if backend_url is not None:
            body["backend_url"] = backend_url
        path = f"/subsystems/{client_path(client_id)}/service-descriptions/openapi"
        result: dict[str, Any] = self._api("POST", path, json=body)
        return result

    # --- whole service descriptions

    def list_descriptions(self, client_id: str) -> list[dict[str, Any]]:
        path = f"/subsystems/{client_path(client_id)}/service-descriptions"
        result: list[dict[str, Any]] = self._api("GET", path)["descriptions"]
        return result

    def refresh_description(
        self,
        client_id: str,
        url: str,
        *,
        new_url: str | None = None,
        ignore_warnings: bool = False,
        confirm_removal: bool = False,
    ) -> dict[str, Any]:
        """Fetch the description at `url` again (from `new_url`, which becomes its URL, if given)
        and reconcile its services; the report names what was added, changed and removed."""
        body: dict[str, Any] = {
            "url": url,
            "ignore_warnings": ignore_warnings,
            "confirm_removal": confirm_removal,
        }
        action = "refresh"
        if new_url is not None:
            body["new_url"], action = new_url, "change-url"
        path = f"/subsystems/{client_path(client_id)}/service-descriptions/{action}"
        result: dict[str, Any] = self._api("POST", path, json=body)
        return result

    def set_description_enabled(
        self, client_id: str, url: str, enabled: bool, notice: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"url": url}
        if notice is not None:
            body["notice"] = notice
        action = "enable" if enabled else "disable"
        path = f"/subsystems/{client_path(client_id)}/service-descriptions/{action}"
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
        """Settings: backend_url, timeout_seconds, tls_verify, tls_ca_pem (None clears it),
        tls_client_cert_path and tls_client_key_path (None clears both)."""
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
        *,
        force: bool = False,
    ) -> dict[str, Any]:
        """Grant the right; `force`: even to a subject the global configuration does not list."""
        url = self._service_path(client_id, service_code) + "/access-rights"
        body: dict[str, Any] = self._right(subject, subject_type, method, path)
        if force:
            body["force"] = True
        result: dict[str, Any] = self._api("POST", url, json=body)
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

    def audit_verify(self) -> dict[str, Any]:
        """The audit log's hash chain checked (adminstore.verify_audit_chain)."""
        result: dict[str, Any] = self._api("GET", "/audit-log/verify")
        return result

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

    # --- declarative configuration (gateway.admin.declarative)

    def export_config(self) -> dict[str, Any]:
        """Every registration as one declarative document."""
        result: dict[str, Any] = self._api("GET", "/config")
        return result

    def apply_config(self, document: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        """Make the registrations those of `document`; the changes planned (and made unless dry_run)."""
        params = {"dry_run": "true"} if dry_run else None
        result: dict[str, Any] = self._api("POST", "/config/apply", json=document, params=params)
        return result

    def config_schema(self) -> dict[str, Any]:
        result: dict[str, Any] = self._api("GET", "/config/schema")
        return result

    # --- the interface cache (gateway.admin.cache)

    def list_cache_policies(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._api("GET", "/cache/policies")["policies"]
        return result

    def get_cache_policy(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._api("GET", f"/cache/policies/{_segment(name)}")
        return result

    def set_cache_policy(self, name: str, document: dict[str, Any]) -> dict[str, Any]:
        """Create or replace policy `name` (its document without the name)."""
        body = {key: value for key, value in document.items() if key != "name"}
        result: dict[str, Any] = self._api("PUT", f"/cache/policies/{_segment(name)}", json=body)
        return result

    def remove_cache_policy(self, name: str) -> None:
        self._api("DELETE", f"/cache/policies/{_segment(name)}")

    def apply_cache_policies(self, policies: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """Replace every policy with `policies` (name: document), all or nothing."""
        result: dict[str, Any] = self._api("PUT", "/cache/policies", json={"policies": policies})
        return result

    def cache_entries(
        self,
        *,
        service: str | None = None,
        client: str | None = None,
        policy: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> dict[str, Any]:
        params = {
            name: str(value)
            for name, value in (
                ("service", service),
                ("client", client),
                ("policy", policy),
                ("limit", limit),
                ("offset", offset),
            )
            if value is not None
        }
        result: dict[str, Any] = self._api("GET", "/cache/entries", params=params)
        return result

    def cache_stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._api("GET", "/cache/stats")
        return result

    def purge_cache(self, **filters: Any) -> int:
        """Purge by service, client, key or policy (all given must match), or everything=True."""
        body = {name: value for name, value in filters.items() if value not in (None, False)}
        return int(self._api("POST", "/cache/purge", json=body)["purged"])

    def purge_cache_subject(self, subject: str) -> int:
        return int(self._api("POST", "/cache/purge-subject", json={"subject": subject})["purged"])

    def cache_runs(self, policy: str | None = None, limit: int | None = None) -> dict[str, Any]:
        params = {
            name: str(value) for name, value in (("policy", policy), ("limit", limit)) if value is not None
        }
        result: dict[str, Any] = self._api("GET", "/cache/runs", params=params)
        return result

    def start_cache_run(self, policy: str) -> dict[str, Any]:
        result: dict[str, Any] = self._api("POST", f"/cache/policies/{_segment(policy)}/runs")
        return result

    def maintenance(self) -> dict[str, Any]:
        result: dict[str, Any] = self._api("GET", "/maintenance")
        return result

    def set_maintenance(self, enabled: bool, reason: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"enabled": enabled}
        if reason is not None:
            body["reason"] = reason
        result: dict[str, Any] = self._api("PUT", "/maintenance", json=body)
        return result

    # --- the node's environment

    def environment(self) -> dict[str, Any]:
        """The node's machine, process, disks, versions and certificates (gateway.admin.environment)."""
        result: dict[str, Any] = self._api("GET", "/environment")
        return result
