"""Limits every message on the internal interface shares, SOAP and REST alike."""

from __future__ import annotations

from typing import Final

DEFAULT_MAX_MESSAGE_BYTES: Final = 10 * 1024 * 1024
"""X-Road's own default for a message on the internal interface; the whole body is held in memory,
hashed, signed and logged. Operators may change it (limits.max_message_bytes)."""
