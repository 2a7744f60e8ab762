"""gateway.lru.BoundedLru: the one bounded cache the verifiers and parsers remember through."""

from __future__ import annotations

import pytest

from gateway.lru import BoundedLru


def test_the_least_recently_used_entry_goes_first() -> None:
    cache: BoundedLru[str, int] = BoundedLru(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recently used
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)


def test_remembered_computes_once_and_keeps_nothing_when_the_computation_fails() -> None:
    cache: BoundedLru[str, bool] = BoundedLru(4)
    calls: list[str] = []

    def verdict() -> bool:
        calls.append("computed")
        return False  # a remembered False is still an answer, not an absence

    assert cache.remembered("k", verdict) is False
    assert cache.remembered("k", verdict) is False
    assert calls == ["computed"]

    def failing() -> bool:
        raise ValueError("cannot tell")

    with pytest.raises(ValueError):
        cache.remembered("other", failing)
    assert cache.get("other") is None
