"""What the process remembers of a store by its URL, forgotten in one place.

A few caches spare a store round trips by remembering what it holds (the months made,
the watch matcher's watches). A store replaced under the same URL (a test's fresh copy, a
restore) makes them wrong; each is registered here as its module is imported, so
`forget_store` reaches every one, including any added later (tests/store/test_remembered.py
fails on a cache keyed by URL that is not registered)."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy.engine import URL, make_url

C = TypeVar("C", bound=dict[str, Any])

_caches: list[dict[str, Any]] = []


def remembered_by_url(cache: C) -> C:
    """Register a cache keyed by `str(engine.url)`; returns it, for the module's assignment."""
    _caches.append(cache)
    return cache


def forget_store(url: str | URL) -> None:
    """Forget all the process remembers of the store at this URL (given with its password
    or without: the caches' keys are `str(engine.url)`'s, which hides it)."""
    key = str(make_url(url))
    for cache in _caches:
        cache.pop(key, None)


def is_remembered(cache: object) -> bool:
    return any(cache is known for known in _caches)


__all__ = ["forget_store", "is_remembered", "remembered_by_url"]
