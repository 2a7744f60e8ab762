"""The security officer's calls to a gateway's management API: the message log's reads.

What `xgate log` sends to a node (and `gateway.admin.client.AdminClient` offers too); the
node audits every one. The answers are those of gateway.messagelog.officer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

from gateway.apicli import JsonApiClient

DEFAULT_POLL_SECONDS: Final = 1.0
"""Between polls of a verification job: a progress line a second, a cheap request each."""


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

    def log_verify_start(self, node: str | None = None, *, full: bool = False) -> dict[str, Any]:
        """Start a background verification of the node's chains (or join the running one): the job."""
        body: dict[str, Any] = {"full": full}
        if node is not None:
            body["node"] = node
        result: dict[str, Any] = self._api("POST", "/message-log/verification-jobs", json=body)
        return result

    def log_verify_job(self, job_id: str) -> dict[str, Any]:
        """A verification job's progress, and its result (officer.verification_json) once done."""
        result: dict[str, Any] = self._api("GET", f"/message-log/verification-jobs/{job_id}")
        return result

    def log_verify(
        self,
        node: str | None = None,
        *,
        full: bool = False,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Start a verification and poll it to its end: the finished job (its `result` is the answer).

        Each poll is a short request: a long verification never holds one HTTP request open."""
        job = self.log_verify_start(node, full=full)
        while job["state"] == "running":
            if on_progress is not None:
                on_progress(job)
            time.sleep(poll_seconds)
            job = self.log_verify_job(job["id"])
        return job
