"""Maintenance mode: a node taken out from behind its load balancer while it goes on serving.

On: the health endpoint answers 503 "maintenance", so the load balancer sends no new
connections; the node still serves every request that reaches it (in flight, on kept-alive
connections, from clients that call it directly) until the operator sees it drained and stops
or upgrades it. Off: health answers from its checks again.

The switch is a small JSON file in the node's data directory, written atomically: it survives
a restart (a node restarted mid-maintenance must not rejoin the pool before its operator says
so) and it is per node, as a load balancer's pool members are; nodes sharing one database
are switched one by one.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from pathlib import Path
from typing import Final

from gateway.crypto.keys import write_file_atomically

log = logging.getLogger(__name__)

MAINTENANCE_FILE: Final = "maintenance.json"
MAX_REASON_LENGTH: Final = 500


class MaintenanceMode:
    """The switch of one node, kept in `data_dir`/maintenance.json."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / MAINTENANCE_FILE
        self._lock = threading.Lock()
        self._state: dict[str, object] | None = self._load()

    def _load(self) -> dict[str, object] | None:
        try:
            state = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            # Unreadable: stay out of the pool rather than rejoin it unasked.
            log.warning(
                "maintenance switch %s unreadable (%s): the node stays in maintenance", self.path, exc
            )
            return {"since": None, "by": None, "reason": f"unreadable switch file: {exc}"}
        if not isinstance(state, dict):
            return {"since": None, "by": None, "reason": "malformed switch file"}
        log.warning("node starts in maintenance mode (since %s): health answers 503", state.get("since"))
        return state

    @property
    def state(self) -> dict[str, object] | None:
        """Since when, by whom and why the node is in maintenance; None when it is not."""
        with self._lock:
            return dict(self._state) if self._state is not None else None

    def turn_on(self, by: str, reason: str | None = None) -> dict[str, object]:
        """On (kept as it was, with its first `since`, when already on)."""
        with self._lock:
            if self._state is None:
                state: dict[str, object] = {
                    "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    "by": by,
                    "reason": reason,
                }
                write_file_atomically(self.path, json.dumps(state).encode(), 0o600)
                self._state = state
                log.warning("maintenance mode on (by %s): health answers 503; requests are still served", by)
            return dict(self._state)

    def turn_off(self, by: str) -> None:
        with self._lock:
            if self._state is not None:
                self.path.unlink(missing_ok=True)
                self._state = None
                log.warning("maintenance mode off (by %s): health answers from its checks again", by)
