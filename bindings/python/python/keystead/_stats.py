"""The shape of ``Stats.as_dict()``, for type checkers (a plain ``dict`` at run time)."""

from __future__ import annotations

from datetime import timedelta
from typing import TypedDict


class StatsDict(TypedDict):
    """``KeyStore.stats().as_dict()``: every field of ``Stats`` by name (docs/metrics.md)."""

    outcomes: dict[str, int]
    verifications: int
    verify_errors: int
    cache_hits: int
    cache_misses: int
    refreshes: int
    refresh_failures: int
    flushes: int
    flush_failures: int
    usage_pending: int
    last_refresh_age: timedelta | None
    cached_keys: int
