"""The one bounded cache: a thread-safe least-recently-used map.

Verifying a chain or a signed root, or parsing an identifier, costs far more than looking it
up, and the same few signers and services recur on every message; a bound keeps memory fixed
whatever the traffic. Worker threads share these caches, hence the lock.

Where the cached thing is a pure function of hashable arguments, `functools.lru_cache` is the
same bounded LRU, keyed by the arguments, and is used as it is; this map is for caches whose
key is built by the caller (a digest, an element's content) or that must be cleared or
filled from outside.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


class BoundedLru(Generic[_K, _V]):
    """At most `size` entries; putting one more drops the least recently used."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[_K, _V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: _K) -> _V | None:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def remembered(self, key: _K, compute: Callable[[], _V]) -> _V:
        """The value for `key`; computed (outside the lock: it may be slow) and kept when absent.
        A computation that raises keeps nothing."""
        found = self.get(key)
        if found is None:
            found = compute()
            self.put(key, found)
        return found

    def put(self, key: _K, value: _V) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def discard(self, key: _K) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
